//! `cf-dns`: plans and applies a zone's DNS records from a TOML or JSON file
//! (format: `cf_client::plan::DesiredZone`).
//!
//! ```text
//! cf-dns plan zone.toml                     # dry run: the diff, nothing changed
//! cf-dns apply zone.toml [--prune] [--no-batch] [--dry-run]
//! ```
//!
//! Credentials: `CF_API_TOKEN` (or `CF_API_EMAIL` + `CF_API_KEY`); `--api-url`/`CF_API_URL`
//! overrides the API root.

use std::path::PathBuf;
use std::process::ExitCode;

use cf_client::ClientBuilder;
use cf_client::plan::{self, ApplyMode, DesiredZone};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Plan and apply a zone's DNS records from a file")]
struct Cli {
    /// The API root (default Cloudflare's).
    #[arg(long, env = "CF_API_URL", global = true)]
    api_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Shows what applying would change (a dry run).
    Plan {
        /// The desired records.
        file: PathBuf,
        /// Also delete records the file does not mention.
        #[arg(long)]
        prune: bool,
    },
    /// Applies the file (idempotent: running it again changes nothing).
    Apply {
        /// The desired records.
        file: PathBuf,
        /// Also delete records the file does not mention.
        #[arg(long)]
        prune: bool,
        /// One request per change instead of the batch endpoint.
        #[arg(long)]
        no_batch: bool,
        /// Only show the plan.
        #[arg(long)]
        dry_run: bool,
    },
}

async fn run(cli: Cli) -> cf_client::Result<()> {
    let client = ClientBuilder::from_env()
        .with_base_url_override(cli.api_url)
        .build()?;
    let (file, prune, apply_mode) = match cli.command {
        Command::Plan { file, prune } => (file, prune, None),
        Command::Apply {
            file,
            prune,
            no_batch,
            dry_run,
        } => {
            let mode = if no_batch {
                ApplyMode::OneByOne
            } else {
                ApplyMode::Batch { size: 200 }
            };
            (file, prune, (!dry_run).then_some(mode))
        }
    };
    let desired = DesiredZone::from_file(&file)?;
    let desired = if prune {
        desired.with_prune(true)
    } else {
        desired
    };
    let plan = client.plan_dns(&desired).await?;
    print!("{plan}");
    if let Some(mode) = apply_mode {
        if plan.is_empty() {
            println!("nothing to do");
        } else {
            let report = plan::apply(&client, &desired, mode, 5).await?;
            println!(
                "applied: {} created, {} updated, {} deleted ({} requests)",
                report.done.create,
                report.done.update,
                report.done.delete,
                client.stats().requests
            );
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    cf_client::exit_code("cf-dns", run(Cli::parse()).await)
}
