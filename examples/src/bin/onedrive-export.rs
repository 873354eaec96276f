//! `onedrive-export`: exports a directory, or files of a backup snapshot, to a customer's OneDrive.
//!
//! `login` runs the one-time consent step (prints a URL, reads back the address the browser was
//! sent to); `export` uploads what changed (`--dry-run` only says what would go), optionally
//! age-encrypted to the customer's recipient; `status` checks the export folder against its
//! manifest. The logic lives in the onedrive crate (snapshots through its `backup-core` feature);
//! this tool parses arguments, opens the repository and shows progress. See examples/README.md.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use backup_core::{KeySource, Repository, StoreOptions};
use clap::{Args, Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use onedrive::snapshot::SnapshotSource;
use onedrive::{
    DirectorySource, Drive, ExportEvent, ExportJob, ExportSource, FileAction, NamePolicy,
    OAuthConfig, OneDriveClient, Pkce, RemotePath, Secret,
};

/// Environment variable with the client secret (client credentials).
const SECRET_ENV: &str = "ONEDRIVE_CLIENT_SECRET";
/// Environment variable with the backup repository's password.
const PASSWORD_ENV: &str = "BACKUP_PASSWORD";

/// Export data to a customer's own OneDrive (Microsoft Graph).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    auth: AuthArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct AuthArgs {
    /// The application (client) id registered in Entra ID.
    #[arg(long, global = true, env = "ONEDRIVE_CLIENT_ID")]
    client_id: Option<String>,
    /// Token file for delegated access (written by `login`, mode 0600).
    #[arg(long, global = true, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Use client credentials (OneDrive for Business) instead of a token file; the secret comes
    /// from ONEDRIVE_CLIENT_SECRET.
    #[arg(long, global = true)]
    client_credentials: bool,
    /// Tenant: common, consumers, organizations, or a tenant id or domain.
    #[arg(long, global = true, default_value = "common")]
    tenant: String,
    /// Microsoft Graph base URL (national clouds, tests).
    #[arg(long, global = true, hide = true)]
    graph_url: Option<String>,
    /// Token endpoint (national clouds, tests).
    #[arg(long, global = true, hide = true)]
    token_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One-time consent: prints a sign-in URL, then reads the address the browser ended on.
    Login,
    /// Upload what changed to the export folder, then its manifest.
    Export(ExportArgs),
    /// Check the export folder against its manifest.
    Status(Target),
}

#[derive(Debug, Args)]
struct Target {
    /// The drive: `me`, `id:DRIVE_ID` or `user:UPN`.
    #[arg(long, default_value = "me")]
    drive: String,
    /// The export folder, from the drive's root (e.g. `Exports/example.com`).
    #[arg(long)]
    to: String,
}

#[derive(Debug, Args)]
struct ExportArgs {
    #[command(flatten)]
    target: Target,
    /// Export this directory.
    #[arg(long, conflicts_with = "repo", required_unless_present = "repo")]
    dir: Option<PathBuf>,
    /// Export from this backup repository (a directory or s3://bucket/prefix); needs --snapshot.
    #[arg(long, requires = "snapshot")]
    repo: Option<String>,
    /// Snapshot id (or unique prefix, or `latest`).
    #[arg(long)]
    snapshot: Option<String>,
    /// Only files under this path of the snapshot.
    #[arg(long, value_name = "PATH")]
    sub_path: Option<PathBuf>,
    /// Repository key file (else the password from BACKUP_PASSWORD).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Local state: upload sessions, journal, encrypted spool files (one per export target).
    #[arg(long)]
    state_dir: PathBuf,
    /// Encrypt every file to this age recipient (age1...); may be repeated.
    #[arg(long = "age-recipient", value_name = "RECIPIENT")]
    age_recipients: Vec<String>,
    /// Map names OneDrive refuses (`%XX` escapes, reversible) instead of failing.
    #[arg(long)]
    map_names: bool,
    /// Parallel uploads.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Fragment size in units of 320 KiB (memory: about concurrency x fragment).
    #[arg(long, default_value_t = 32)]
    fragment_units: u64,
    /// Only list what would be uploaded and skipped.
    #[arg(long)]
    dry_run: bool,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
}

fn parse_drive(text: &str) -> Result<Drive> {
    Ok(match text.split_once(':') {
        None if text == "me" => Drive::Me,
        Some(("id", id)) if !id.is_empty() => Drive::Id(id.into()),
        Some(("user", upn)) if !upn.is_empty() => Drive::User(upn.into()),
        _ => bail!("--drive must be `me`, `id:DRIVE_ID` or `user:UPN`, not `{text}`"),
    })
}

fn client(auth: &AuthArgs, fragment_units: u64) -> Result<OneDriveClient> {
    let client_id = auth
        .client_id
        .clone()
        .context("--client-id (or ONEDRIVE_CLIENT_ID) is required")?;
    let mut oauth = if auth.client_credentials {
        let secret = std::env::var(SECRET_ENV)
            .with_context(|| format!("client credentials need the secret in {SECRET_ENV}"))?;
        OAuthConfig::client_credentials(&auth.tenant, client_id, Secret::new(secret))
    } else {
        let token_file = auth
            .token_file
            .clone()
            .context("--token-file is required (or --client-credentials)")?;
        OAuthConfig::delegated(client_id, token_file).with_tenant(&auth.tenant)
    };
    if let Some(url) = &auth.token_url {
        oauth = oauth.with_token_url(url);
    }
    let mut builder = OneDriveClient::builder(oauth.build()?)
        .with_fragment_size(fragment_units.saturating_mul(onedrive::FRAGMENT_UNIT));
    if let Some(url) = &auth.graph_url {
        builder = builder.with_graph_url(url);
    }
    Ok(builder.build()?)
}

async fn login(auth: &AuthArgs) -> Result<()> {
    if auth.client_credentials {
        bail!("client credentials need no login");
    }
    let client = client(auth, 32)?;
    let pkce = Pkce::generate()?;
    eprintln!("1. Open this URL in a browser on any machine, sign in and accept:\n");
    println!("{}", client.authenticator().authorization_url(&pkce));
    eprintln!(
        "\n2. The browser then fails to load http://localhost/?code=... — that is expected.\n   \
         Copy that whole address from the address bar and paste it here:"
    );
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the redirect address")?;
    client
        .authenticator()
        .complete_login(line.trim(), &pkce)
        .await?;
    eprintln!("Signed in; tokens stored in the token file (mode 0600).");
    Ok(())
}

/// Progress bars: one for the whole export, one per file in flight.
struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    files: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn new(quiet: bool) -> Arc<Self> {
        let multi = MultiProgress::new();
        if quiet {
            multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let total = multi.add(ProgressBar::new(0));
        total.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} files, {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        total.set_message("export");
        Arc::new(Self {
            multi,
            total,
            files: Mutex::new(HashMap::new()),
        })
    }

    fn event(&self, event: ExportEvent) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            ExportEvent::Listed { files: n, .. } => self.total.set_length(n),
            ExportEvent::Progress { path, done, size } => {
                let bar = files.entry(path.clone()).or_insert_with(|| {
                    let bar = self.multi.add(ProgressBar::new(size));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "  {msg:40!} {bytes}/{total_bytes} {binary_bytes_per_sec}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.set_message(path);
                    bar
                });
                bar.set_position(done);
            }
            ExportEvent::FileDone { path, .. } => {
                if let Some(bar) = files.remove(&path) {
                    bar.finish_and_clear();
                }
                self.total.inc(1);
            }
            _ => {}
        }
    }
}

async fn export(auth: &AuthArgs, args: ExportArgs) -> Result<()> {
    let client = client(auth, args.fragment_units)?;
    let drive = parse_drive(&args.target.drive)?;
    let folder = RemotePath::parse(&args.target.to)?;
    let source: Arc<dyn ExportSource> = match (&args.dir, &args.repo) {
        (Some(dir), _) => Arc::new(DirectorySource::new(dir)),
        (None, Some(repo)) => Arc::new(snapshot_source(&args, repo).await?),
        (None, None) => bail!("give --dir or --repo with --snapshot"),
    };
    let bars = Bars::new(args.quiet);
    let b2 = bars.clone();
    let mut job = ExportJob::builder(client, drive, folder, source)
        .with_state_dir(&args.state_dir)
        .with_concurrency(args.concurrency)
        .with_progress(Arc::new(move |event| b2.event(event)));
    if args.map_names {
        job = job.with_name_policy(NamePolicy::Map);
    }
    for recipient in &args.age_recipients {
        job = job.with_age_recipient(recipient);
    }
    let job = job.build()?;
    let summary = if args.dry_run {
        job.plan().await?
    } else {
        job.run().await?
    };
    bars.total.finish_and_clear();
    if args.dry_run {
        for (path, action) in &summary.files {
            let what = match action {
                FileAction::Upload => "upload",
                _ => "skip  ",
            };
            println!("{what} {path}");
        }
    }
    println!(
        "{}: {} files ({}) {}, {} unchanged",
        if args.dry_run { "dry run" } else { "done" },
        summary.uploaded,
        indicatif::HumanBytes(summary.bytes_uploaded),
        if args.dry_run {
            "to upload"
        } else {
            "uploaded"
        },
        summary.skipped
    );
    Ok(())
}

async fn status(auth: &AuthArgs, target: Target) -> Result<()> {
    let client = client(auth, 32)?;
    let drive = parse_drive(&target.drive)?;
    let folder = RemotePath::parse(&target.to)?;
    let status = onedrive::export_status(&client, &drive, &folder).await?;
    let Some(manifest) = &status.manifest else {
        bail!("{folder}: no export manifest ({})", onedrive::MANIFEST_NAME);
    };
    let bytes: u64 = manifest.files.iter().map(|f| f.size).sum();
    println!(
        "{folder}: {} files, {}, {}",
        manifest.files.len(),
        indicatif::HumanBytes(bytes),
        if manifest.encrypted {
            "age-encrypted"
        } else {
            "plain"
        }
    );
    println!("verified (size and quickXorHash): {}", status.verified);
    for path in &status.missing {
        println!("missing: {path}");
    }
    for path in &status.mismatched {
        println!("changed: {path}");
    }
    if !status.missing.is_empty() || !status.mismatched.is_empty() {
        bail!(
            "{} missing and {} changed files",
            status.missing.len(),
            status.mismatched.len()
        );
    }
    Ok(())
}

async fn snapshot_source(args: &ExportArgs, location: &str) -> Result<SnapshotSource> {
    let key = match (&args.key_file, std::env::var(PASSWORD_ENV)) {
        (Some(path), _) => KeySource::key_file(path)?,
        (None, Ok(password)) => KeySource::passphrase(password),
        (None, Err(_)) => bail!("give --key-file or set {PASSWORD_ENV}"),
    };
    let store = StoreOptions::new(location).build()?;
    let repo = Arc::new(Repository::open(store, location, &key).await?);
    let wanted = args.snapshot.as_deref().unwrap_or("latest");
    Ok(SnapshotSource::new(repo, wanted, args.sub_path.as_deref()).await?)
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Login => login(&cli.auth).await,
        Command::Export(args) => export(&cli.auth, args).await,
        Command::Status(target) => status(&cli.auth, target).await,
    }
}
