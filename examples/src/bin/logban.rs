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
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use logban::config::{DaemonConfig, parse_seconds};
use logban::control::{self, Request, Response};
use logban::source::JournalConfig;
use logban::{Engine, FilterBuilder, JailStatus, StateStore};

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
            "{}: {} lines, {} matches, {} failures ({} ignored), {} tracked, {} bans ({} current), {} sink errors",
            jail.name,
            c.lines,
            c.matches,
            c.failures,
            c.ignored,
            jail.tracked,
            c.bans,
            c.current_bans,
            c.sink_errors
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

/// Starts one task per jail that reads its logs (files or journal) through its fail2ban filter.
fn start_readers(
    engine: &Engine,
    config: &DaemonConfig,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut readers = Vec::new();
    for jail in config.enabled_jails() {
        if jail.logpath.is_empty() && !jail.journal {
            continue;
        }
        let spec = jail.filter_spec();
        let definition = logban::fail2ban::load_filter(&config.daemon.filter_dir, spec)
            .with_context(|| format!("jail {}: filter {spec}", jail.name))?;
        let journalmatch = definition.journalmatch.clone();
        let filter = FilterBuilder::new(definition)
            .with_clock(jail.filter_clock()?)
            .build()
            .with_context(|| format!("jail {}: filter {spec}", jail.name))?;
        let (engine, name) = (engine.clone(), jail.name.clone());
        // Polls are cheap (a stat and a read); 50 ms keeps a ban within about 55 ms of its line
        // at p99 (benches/results/logban-daemon.md), where 250 ms gave 247 ms.
        let period = Duration::from_millis(50);
        let task = if jail.journal {
            let mut journal = JournalConfig::default();
            journal.matches = journalmatch;
            journal.follow = true;
            tokio::spawn(async move {
                let result = engine.follow_journal(&name, journal, filter, period).await;
                report_reader_end(&name, result);
            })
        } else {
            let paths: Vec<PathBuf> = jail.logpath.iter().map(PathBuf::from).collect();
            let files = engine
                .open_files(&paths)
                .with_context(|| format!("jail {}: logpath", jail.name))?;
            for (path, why) in files.unreadable() {
                eprintln!(
                    "logban: warning: jail {}: log {} {why}",
                    jail.name,
                    path.display()
                );
            }
            tokio::spawn(async move {
                let result = engine.follow_files(&name, files, filter, period).await;
                report_reader_end(&name, result);
            })
        };
        readers.push(task);
    }
    Ok(readers)
}

fn report_reader_end(jail: &str, result: logban::Result<()>) {
    match result {
        Ok(()) => eprintln!("logban: jail {jail}: log source ended"),
        Err(e) => eprintln!(
            "logban: jail {jail}: stopped reading logs: {}",
            control::error_chain(&e)
        ),
    }
}

async fn daemon(config_path: &Path, socket: Option<PathBuf>) -> anyhow::Result<()> {
    let config = DaemonConfig::load(config_path)?;
    let socket = socket.unwrap_or_else(|| config.daemon.socket.clone());
    let sink = config.sink.build()?;
    let mut builder = Engine::builder(Arc::clone(&sink));
    for jail in config.enabled_jails() {
        builder = builder.with_jail(jail.to_jail_config()?);
    }
    if let Some(state) = &config.daemon.state {
        if let Some(dir) = state.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        builder = builder.with_state(StateStore::open(state)?);
    }
    let engine = builder.build().await?;
    let ticker = engine.spawn_ticker(Duration::from_secs(1));
    let readers = start_readers(&engine, &config)?;
    let listener = control::bind(&socket).await?;
    eprintln!(
        "logban: {} jails, {} sink, control socket {}",
        engine.jail_names().len(),
        sink.name(),
        socket.display()
    );
    let server = tokio::spawn(control::serve(engine.clone(), listener, socket.clone()));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        result = server => {
            result.context("control server")??;
        }
    }
    ticker.abort();
    for reader in readers {
        reader.abort();
    }
    let _ = std::fs::remove_file(&socket);
    if config.daemon.cleanup_on_exit {
        engine.cleanup_sink().await?;
        eprintln!("logban: removed the sink's rules");
    }
    eprintln!("logban: stopped");
    Ok(())
}
