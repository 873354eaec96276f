//! `cf-ssl`: shows and enforces a zone's TLS settings: Full (strict), always HTTPS, a minimum
//! TLS version, TLS 1.3.
//!
//! ```text
//! cf-ssl show example.com
//! cf-ssl enforce example.com [--min-tls 1.2] [--dry-run]
//! ```
//!
//! Credentials: `CF_API_TOKEN` (or `CF_API_EMAIL` + `CF_API_KEY`); `--api-url`/`CF_API_URL`
//! overrides the API root.

use std::process::ExitCode;

use cf_client::ClientBuilder;
use cf_client::settings::{MinTls, TlsSettings};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Show and enforce a zone's SSL/TLS settings")]
struct Cli {
    /// The API root (default Cloudflare's).
    #[arg(long, env = "CF_API_URL", global = true)]
    api_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Shows ssl, always_use_https, min_tls_version and tls_1_3.
    Show {
        /// The zone's name.
        zone: String,
    },
    /// Sets Full (strict), always HTTPS, the minimum TLS version and TLS 1.3 on.
    Enforce {
        /// The zone's name.
        zone: String,
        /// The minimum TLS version (1.0, 1.1, 1.2, 1.3).
        #[arg(long, default_value = "1.2", value_parser = parse_min_tls)]
        min_tls: MinTls,
        /// Only show what would change.
        #[arg(long)]
        dry_run: bool,
    },
}

fn parse_min_tls(text: &str) -> Result<MinTls, String> {
    MinTls::parse(text).ok_or_else(|| format!("`{text}` is not one of 1.0, 1.1, 1.2, 1.3"))
}

const SETTINGS: [&str; 4] = ["ssl", "always_use_https", "min_tls_version", "tls_1_3"];

async fn run(cli: Cli) -> cf_client::Result<()> {
    let client = ClientBuilder::from_env()
        .with_base_url_override(cli.api_url)
        .build()?;
    match cli.command {
        Command::Show { zone } => {
            let zone = client.find_zone(&zone).await?;
            for setting in SETTINGS {
                let value = client.zone_setting(&zone.id, setting).await?.value;
                println!("{setting:<18} {value}");
            }
        }
        Command::Enforce {
            zone,
            min_tls,
            dry_run,
        } => {
            let zone = client.find_zone(&zone).await?;
            let wanted = TlsSettings::strict().with_min_tls_version(min_tls);
            if dry_run {
                for setting in SETTINGS {
                    let value = client.zone_setting(&zone.id, setting).await?.value;
                    println!("{setting:<18} {value}");
                }
                println!("(dry run: wanted {wanted:?})");
                return Ok(());
            }
            for check in client.ensure_tls_settings(&zone.id, &wanted).await? {
                if check.changed() {
                    println!("{:<18} {} -> {}", check.setting, check.before, check.after);
                } else {
                    println!("{:<18} {} (unchanged)", check.setting, check.after);
                }
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    cf_client::exit_code("cf-ssl", run(Cli::parse()).await)
}
