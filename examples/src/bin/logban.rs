//! `logban`: the log-scanning banning daemon and its client, like fail2ban-server and
//! fail2ban-client in one binary.
//!
//! ```text
//! logban daemon --config /etc/logban.toml      # run (config format: logban::config)
//! logban status [JAIL] [--json]                # counters and bans
//! logban ban JAIL ADDR [--bantime 1h|-1]       # manual ban
//! logban unban JAIL ADDR                       # manual unban
//! ```
//!
//! Clients talk to the daemon over its Unix control socket (`--socket`, default
//! `/run/logban.sock`, mode 0600).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use logban::JailStatus;
use logban::config::{DaemonConfig, parse_seconds};
use logban::control::{self, Request, Response};
use logban::daemon::Daemon;

#[derive(Parser)]
#[command(version, about = "Log-scanning IP banning: daemon and client")]
struct Cli {
    /// The daemon's control socket (the daemon defaults to its config's `daemon.socket`).
    #[arg(long, short, env = "LOGBAN_SOCKET", global = true)]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the daemon.
    Daemon {
        /// The TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Shows jails, counters and bans.
    Status {
        /// Only this jail.
        jail: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Bans an address by hand.
    Ban {
        /// The jail.
        jail: String,
        /// The address.
        addr: IpAddr,
        /// Ban time (`600`, `10m`, `1h`, `-1` for permanent); default: the jail's.
        #[arg(long, allow_hyphen_values = true)]
        bantime: Option<String>,
    },
    /// Lifts a ban.
    Unban {
        /// The jail.
        jail: String,
        /// The address.
        addr: IpAddr,
    },
}

const DEFAULT_SOCKET: &str = "/run/logban.sock";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let client_socket = cli
        .socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    match cli.command {
        Command::Daemon { config } => daemon(&config, cli.socket).await,
        Command::Status { jail, json } => {
            let response = ask(&client_socket, &Request::Status).await?;
            let jails: Vec<JailStatus> = response
                .jails
                .into_iter()
                .filter(|j| jail.as_ref().is_none_or(|name| &j.name == name))
                .collect();
            if let Some(name) = jail.filter(|_| jails.is_empty()) {
                bail!("no jail called `{name}`");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&jails)?);
            } else {
                print_status(&jails);
            }
            Ok(())
        }
        Command::Ban {
            jail,
            addr,
            bantime,
        } => {
            let bantime = bantime
                .map(|b| parse_seconds(&b))
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let response = ask(
                &client_socket,
                &Request::Ban {
                    jail: jail.clone(),
                    addr,
                    bantime,
                },
            )
            .await?;
            match response.ban {
                Some(ban) => println!("banned {} in {jail}", ban.target),
                None => println!("{addr} was already banned in {jail}"),
            }
            Ok(())
        }
        Command::Unban { jail, addr } => {
            let response = ask(
                &client_socket,
                &Request::Unban {
                    jail: jail.clone(),
                    addr,
                },
            )
            .await?;
            match response.ban {
                Some(ban) => println!("unbanned {} in {jail}", ban.target),
                None => println!("{addr} was not banned in {jail}"),
            }
            Ok(())
        }
    }
}

/// Sends a request; a refusal by the daemon becomes an error.
async fn ask(socket: &Path, request: &Request) -> anyhow::Result<Response> {
    let response = control::request(socket, request)
        .await
        .with_context(|| format!("is the daemon running? (socket {})", socket.display()))?;
    if !response.ok {
        bail!(
            "{}",
            response.error.unwrap_or_else(|| "request failed".into())
        );
    }
    Ok(response)
}

fn print_status(jails: &[JailStatus]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for jail in jails {
        let c = &jail.counters;
        println!(
            "{}: {} lines, {} matches, {} failures ({} ignored), {} tracked, {} bans ({} current), {} sink errors, {} unreadable logs, {} undecided lines, {} cut lines",
            jail.name,
            c.lines,
            c.matches,
            c.failures,
            c.ignored,
            jail.tracked,
            c.bans,
            c.current_bans,
            c.sink_errors,
            c.unreadable_logs,
            c.undecided_lines,
            c.cut_lines
        );
        for stored in &jail.bans {
            let left = match stored.ban.remaining(now) {
                None => "permanent".to_owned(),
                Some(s) => format!("{s} s left"),
            };
            let applied = if stored.applied {
                ""
            } else {
                " (NOT applied yet: sink failing)"
            };
            println!(
                "  {:<40} ban #{}, {left}{applied}",
                logban::sink::target_text(&stored.ban.target),
                stored.ban.count
            );
        }
    }
}

async fn daemon(config_path: &Path, socket: Option<PathBuf>) -> anyhow::Result<()> {
    // Warnings (unreadable logs, sink failures) and bans go to stderr (the journal, under
    // systemd); RUST_LOG is not read: info and above.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .init();
    let mut config = DaemonConfig::load(config_path)?;
    if let Some(socket) = socket {
        config.daemon.socket = socket;
    }
    let daemon = Daemon::start(&config).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    daemon
        .run_until(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        })
        .await?;
    Ok(())
}
