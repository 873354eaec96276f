//! `healthreport`: one health report of the whole host, or a periodic monitor serving it.
//!
//! ```text
//! healthreport -c /etc/healthreport.toml                      # aligned text (coloured on a terminal)
//! healthreport -c FILE --format json|prometheus|openmetrics|nagios|html [-o FILE]
//! healthreport -c FILE --periodic [--listen 127.0.0.1:9108] [--interval 30s]
//! healthreport -c FILE --check-config                        # read and check the config only
//! ```
//!
//! The configuration format is `healthcheck::config`. One-shot mode exits with the Nagios code of
//! the report's state (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN), in every format; a bad
//! configuration exits 3 with the line and key at fault. `-o` replaces the file atomically
//! (a Prometheus textfile collector never reads half a report). Periodic mode runs the checks
//! every interval, sends alerts on changes of state, and serves `/metrics` (Prometheus, or
//! OpenMetrics when asked by `Accept`), `/` (the HTML page) and `/report.json` until SIGTERM.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use healthcheck::{Config, report};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
    Prometheus,
    Openmetrics,
    Nagios,
    Html,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Colour {
    Auto,
    Always,
    Never,
}

#[derive(Parser)]
#[command(
    version,
    about = "Server health report: checks, thresholds, alerts, every output format"
)]
struct Cli {
    /// The TOML configuration.
    #[arg(long, short, env = "HEALTHREPORT_CONFIG")]
    config: PathBuf,
    /// Output format of a one-shot report.
    #[arg(long, short, value_enum, default_value = "text")]
    format: Format,
    /// Write the report to this file (replaced atomically) instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Colours in text output.
    #[arg(long, value_enum, default_value = "auto")]
    colour: Colour,
    /// Run every interval and serve /metrics and the HTML page.
    #[arg(long)]
    periodic: bool,
    /// Address to serve on in periodic mode (default: the config's `serve.listen`).
    #[arg(long)]
    listen: Option<String>,
    /// Interval in periodic mode (`30s`, `5m`; default: the config's `serve.interval`).
    #[arg(long, value_parser = humantime::parse_duration)]
    interval: Option<Duration>,
    /// Only read and check the configuration (like `nginx -t`), running no check.
    #[arg(long)]
    check_config: bool,
}

fn main() {
    let cli = Cli::parse();
    let code = match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            // UNKNOWN, as a Nagios plugin that cannot check.
            eprintln!("healthreport: {e:#}");
            3
        }
    };
    std::process::exit(code);
}

fn run(cli: &Cli) -> Result<i32> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Config::load(&cli.config, provider)?;
    if cli.check_config {
        println!(
            "{}: {} checks, {} alert sinks",
            cli.config.display(),
            config.checks.len(),
            config.sinks.len()
        );
        return Ok(0);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let monitor = config.monitor()?;
    if cli.periodic {
        let listen = cli.listen.clone().unwrap_or_else(|| config.listen.clone());
        let interval = cli.interval.unwrap_or(config.interval);
        runtime.block_on(async {
            let listener = healthcheck::serve::bind(&listen).await?;
            eprintln!(
                "healthreport: {} checks every {}, serving http://{}/ and /metrics",
                monitor.entries().len(),
                humantime::format_duration(interval),
                listener
                    .local_addr()
                    .map_or(listen.clone(), |a| a.to_string())
            );
            healthcheck::serve::serve(Arc::new(monitor), listener, interval, shutdown_signal())
                .await?;
            anyhow::Ok(())
        })?;
        return Ok(0);
    }
    let report = runtime.block_on(monitor.run());
    let colour = match cli.colour {
        Colour::Always => true,
        Colour::Never => false,
        Colour::Auto => {
            cli.output.is_none()
                && std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none()
        }
    };
    let text = match cli.format {
        Format::Text => report::text(&report, colour),
        Format::Json => report::json(&report) + "\n",
        Format::Prometheus => report::prometheus(&report),
        Format::Openmetrics => report::openmetrics(&report),
        Format::Nagios => report::nagios(&report).0 + "\n",
        Format::Html => report::html(&report),
    };
    match &cli.output {
        Some(path) => write_atomically(path, text.as_bytes())?,
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .context("cannot write the report")?,
    }
    Ok(report.status.exit_code())
}

/// Writes beside the target and renames over it, so readers see the old or the new report.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // Readable by a metrics collector running as another user, like any report file.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .with_context(|| format!("cannot set the mode of {}", tmp.path().display()))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
