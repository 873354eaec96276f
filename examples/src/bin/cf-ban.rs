//! `cf-ban`: bans, unbans and lists addresses at Cloudflare's edge, in the account IP list
//! logban's Cloudflare sink uses (or in a zone's IP access rules with `--zone`).
//!
//! ```text
//! cf-ban --account ID ban 192.0.2.7 [--jail manual] [--for 3600]
//! cf-ban --account ID unban 192.0.2.7 [--jail manual]
//! cf-ban --account ID list [--jail manual]
//! cf-ban --zone example.com ban 2001:db8::7 --widen-ipv6
//! ```
//!
//! Credentials: `CF_API_TOKEN` (or `CF_API_EMAIL` + `CF_API_KEY`); `--api-url`/`CF_API_URL`
//! overrides the API root.

use std::process::ExitCode;
use std::time::Duration;

use cf_client::access::Scope;
use cf_client::sink::{CloudflareSink, EdgeTarget};
use cf_client::{ClientBuilder, Error};
use clap::{Parser, Subcommand};
use ipnet::IpNet;
use logban::BanSink;

#[derive(Parser)]
#[command(version, about = "Ban and unban addresses at Cloudflare's edge")]
struct Cli {
    /// The API root (default Cloudflare's).
    #[arg(long, env = "CF_API_URL", global = true)]
    api_url: Option<String>,
    /// The account whose IP list holds the bans.
    #[arg(long, env = "CF_ACCOUNT_ID", global = true)]
    account: Option<String>,
    /// The IP list's name.
    #[arg(long, default_value = "hostguard_bans", global = true)]
    list: String,
    /// Use this zone's IP access rules instead of the account list.
    #[arg(long, global = true)]
    zone: Option<String>,
    /// Ban IPv6 hosts as their /64.
    #[arg(long, global = true)]
    widen_ipv6: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bans an address or prefix.
    Ban {
        /// `192.0.2.7`, `2001:db8::/64`.
        target: String,
        /// The jail the ban belongs to.
        #[arg(long, default_value = "manual")]
        jail: String,
        /// Seconds until the ban lapses (default: never).
        #[arg(long = "for")]
        seconds: Option<u64>,
    },
    /// Lifts a ban.
    Unban {
        /// The address or prefix.
        target: String,
        /// The jail.
        #[arg(long, default_value = "manual")]
        jail: String,
    },
    /// Lists the bans of a jail.
    List {
        /// The jail.
        #[arg(long, default_value = "manual")]
        jail: String,
    },
}

fn parse_target(text: &str) -> Result<IpNet, Error> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| Error::InvalidConfig {
            field: "target".into(),
            reason: format!("`{text}` is not an IP address or prefix"),
        })
}

fn sink_error(e: logban::Error) -> Error {
    Error::InvalidConfig {
        field: "ban".into(),
        reason: e.to_string(),
    }
}

async fn run(cli: Cli) -> cf_client::Result<()> {
    let client = ClientBuilder::from_env()
        .with_base_url_override(cli.api_url.clone())
        .build()?;
    let target = match (&cli.zone, &cli.account) {
        (Some(zone), _) => EdgeTarget::AccessRules(Scope::Zone(client.find_zone(zone).await?.id)),
        (None, Some(account)) => EdgeTarget::IpList {
            account_id: account.clone(),
            name: cli.list.clone(),
        },
        (None, None) => {
            return Err(Error::InvalidConfig {
                field: "account".into(),
                reason: "give --account (or CF_ACCOUNT_ID) for the IP list, or --zone".into(),
            });
        }
    };
    let sink = CloudflareSink::builder(client, target)
        .with_ipv6_widened_to_64(cli.widen_ipv6)
        .build()?;
    match cli.command {
        Command::Ban {
            target,
            jail,
            seconds,
        } => {
            let net = parse_target(&target)?;
            let jail_config = logban::sink::SinkJail::new(&jail).map_err(sink_error)?;
            sink.prepare(&jail_config).await.map_err(sink_error)?;
            sink.ban(&jail, net, seconds.map(Duration::from_secs))
                .await
                .map_err(sink_error)?;
            println!("banned {} in {jail}", sink.edge_net(net));
        }
        Command::Unban { target, jail } => {
            let net = parse_target(&target)?;
            sink.unban(&jail, net).await.map_err(sink_error)?;
            println!("unbanned {} in {jail}", sink.edge_net(net));
        }
        Command::List { jail } => {
            for net in sink.list(&jail).await.map_err(sink_error)? {
                println!("{}", logban::sink::target_text(&net));
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    cf_client::exit_code("cf-ban", run(Cli::parse()).await)
}
