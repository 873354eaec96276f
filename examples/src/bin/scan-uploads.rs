//! `scan-uploads`: scans upload directories and web roots with clamd, once or watching,
//! quarantines what is infected, and lists or restores quarantined files.
//!
//! ```text
//! scan-uploads scan DIR... [--quarantine Q] [--cache FILE] [--watch] [--socket S | --tcp H:P]
//! scan-uploads list --quarantine Q [--json]
//! scan-uploads restore ID... --quarantine Q
//! ```
//!
//! Exit status of `scan`, as clamdscan's: 0 all clean, 1 something infected, 2 errors (a file
//! that could not be scanned or was too large to scan counts as an error).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use virusscan::watch::Watcher;
use virusscan::{
    ClamdClient, FileReport, Outcome, Quarantine, ScanCache, Scanner, TreeScanner, TreeSummary,
};

#[derive(Parser)]
#[command(
    version,
    about = "Scan uploads with clamd; quarantine what is infected"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Clamd {
    /// clamd's unix socket (files are passed by descriptor, as `clamdscan --fdpass`).
    #[arg(
        long,
        env = "CLAMD_SOCKET",
        default_value = "/run/clamav/clamd.ctl",
        conflicts_with = "tcp"
    )]
    socket: PathBuf,
    /// clamd's TCP address instead (`127.0.0.1:3310`); files are streamed (zINSTREAM).
    #[arg(long, env = "CLAMD_TCP")]
    tcp: Option<String>,
    /// clamd's StreamMaxLength in bytes, so a stream cut off past it is reported too large.
    #[arg(long, default_value_t = 100 << 20)]
    stream_max_length: u64,
    /// clamd's MaxFileSize in bytes (Debian's default 25 MiB; 0: no limit here): a larger file
    /// is reported too large instead of sent, since clamd would skip it and, without
    /// `AlertExceedsMax yes`, call it clean.
    #[arg(long, default_value_t = 25 << 20)]
    max_file_size: u64,
    /// clamd's DatabaseDirectory: its files' names and times join the signature version, so
    /// new unofficial signatures invalidate the cache.
    #[arg(long)]
    database_dir: Option<PathBuf>,
    /// Files in flight at once (1-256): with --socket, descriptors queued for clamd on one
    /// session (for whole trees use more than clamd queues at once, e.g. 128, so its threads
    /// stay busy while this tool waits for a CPU); with --tcp, streams, one connection each
    /// (at most 64).
    #[arg(long, short = 'j', default_value_t = 4)]
    jobs: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Scans directories (and with --watch keeps watching them).
    Scan {
        /// Directories to scan.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        #[command(flatten)]
        clamd: Clamd,
        /// Move infected files into this quarantine directory.
        #[arg(long, short)]
        quarantine: Option<PathBuf>,
        /// The incremental scan cache: files found clean are not rescanned until they change
        /// or the signatures do.
        #[arg(long)]
        cache: Option<PathBuf>,
        /// After the first scan, watch the directories (inotify) and scan new uploads.
        #[arg(long)]
        watch: bool,
        /// With --watch: a file is scanned once unchanged for this long.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        settle: Duration,
        /// Do not descend into other file systems.
        #[arg(long, short = 'x')]
        one_file_system: bool,
        /// Print every file, not only findings.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Lists quarantined files.
    List {
        /// The quarantine directory.
        #[arg(long, short)]
        quarantine: PathBuf,
        /// One JSON record per line.
        #[arg(long)]
        json: bool,
    },
    /// Restores quarantined files to their original paths (owner, mode and times included).
    Restore {
        /// Ids as `list` shows them.
        #[arg(required = true)]
        ids: Vec<String>,
        /// The quarantine directory.
        #[arg(long, short)]
        quarantine: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // One thread: the work is clamd's; the client only passes descriptors and reads replies,
    // and on one thread it wakes no other threads to do so (the walk has its own thread).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scan-uploads: cannot start the runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("scan-uploads: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::List { quarantine, json } => {
            let (q, recovered) = open_quarantine(&quarantine)?;
            report_recovery(&recovered);
            for r in q.list()? {
                if json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    let when = jiff::Timestamp::from_second(r.quarantined_at as i64)
                        .map(|t| t.to_string())
                        .unwrap_or_default();
                    println!(
                        "{}  {}  {}  {}",
                        r.id,
                        when,
                        r.signature,
                        r.original_path.escape_debug()
                    );
                }
            }
            Ok(0)
        }
        Command::Restore { ids, quarantine } => {
            let (q, recovered) = open_quarantine(&quarantine)?;
            report_recovery(&recovered);
            let mut failed = false;
            for id in ids {
                match q.restore(&id) {
                    Ok(path) => println!(
                        "restored {id} to {}",
                        path.display().to_string().escape_debug()
                    ),
                    Err(e) => {
                        eprintln!("scan-uploads: {id}: {e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { 2 } else { 0 })
        }
        Command::Scan {
            dirs,
            clamd,
            quarantine,
            cache,
            watch,
            settle,
            one_file_system,
            verbose,
        } => {
            let client = client(&clamd)?;
            client.ping().await.context("clamd does not answer")?;
            let scanner: Arc<dyn Scanner> = Arc::new(client);
            let quarantine = match &quarantine {
                Some(dir) => {
                    let (q, recovered) = open_quarantine(dir)?;
                    report_recovery(&recovered);
                    Some(q)
                }
                None => None,
            };
            let dirs: Vec<PathBuf> = dirs
                .iter()
                .map(|d| std::path::absolute(d).with_context(|| format!("{}", d.display())))
                .collect::<anyhow::Result<_>>()?;
            let mut handler = Handler {
                quarantine: quarantine.as_ref(),
                verbose,
                quarantined: 0,
                quarantine_failed: 0,
            };
            let code = scan_once(
                &dirs,
                &scanner,
                &clamd,
                cache.as_deref(),
                one_file_system,
                &mut handler,
            )
            .await?;
            if !watch {
                return Ok(code);
            }
            eprintln!(
                "scan-uploads: watching {} director{} (settle {settle:?})",
                dirs.len(),
                if dirs.len() == 1 { "y" } else { "ies" }
            );
            let watcher = Watcher::builder(dirs.iter().cloned())
                .with_settle(settle)
                .build()?;
            let stop = watcher.stop_handle();
            tokio::spawn(async move {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
                }
                stop.stop();
            });
            watcher
                .run(scanner, clamd.jobs, |r| handler.file(r))
                .await?;
            eprintln!(
                "scan-uploads: stopped; {} quarantined while watching",
                handler.quarantined
            );
            Ok(0)
        }
    }
}

fn client(c: &Clamd) -> anyhow::Result<ClamdClient> {
    let builder = match &c.tcp {
        Some(addr) => ClamdClient::tcp(addr.clone()),
        None => ClamdClient::unix(c.socket.clone()),
    };
    let mut builder = builder
        .with_max_connections(c.jobs.min(64))
        .with_pipeline_depth(c.jobs)
        .with_stream_max_length(c.stream_max_length);
    if c.max_file_size > 0 {
        builder = builder.with_max_file_size(c.max_file_size);
    }
    if let Some(dir) = &c.database_dir {
        builder = builder.with_database_dir(dir.clone());
    }
    Ok(builder.build()?)
}

fn open_quarantine(
    dir: &Path,
) -> anyhow::Result<(Quarantine, Vec<(String, virusscan::RecoveryAction)>)> {
    Quarantine::open(dir).with_context(|| format!("quarantine {}", dir.display()))
}

fn report_recovery(actions: &[(String, virusscan::RecoveryAction)]) {
    for (id, action) in actions {
        eprintln!("scan-uploads: recovered interrupted quarantine entry {id}: {action:?}");
    }
}

/// What to do with each file's report: print findings, quarantine infected files.
struct Handler<'a> {
    quarantine: Option<&'a Quarantine>,
    verbose: bool,
    quarantined: u64,
    quarantine_failed: u64,
}

impl Handler<'_> {
    fn file(&mut self, r: &FileReport) {
        if !self.verbose
            && matches!(
                r.outcome,
                Outcome::Clean | Outcome::Unchanged | Outcome::Skipped(_)
            )
        {
            return;
        }
        let path = r.path.display().to_string().escape_debug().to_string();
        match &r.outcome {
            Outcome::Infected { signature } => {
                println!("{path}: {signature} FOUND");
                if let Some(q) = self.quarantine {
                    match q.quarantine(&r.path, signature, r.identity.as_ref()) {
                        Ok(rec) => {
                            self.quarantined += 1;
                            println!("{path}: quarantined as {}", rec.id);
                        }
                        Err(e) => {
                            self.quarantine_failed += 1;
                            eprintln!("scan-uploads: {path}: not quarantined: {e}");
                        }
                    }
                }
            }
            Outcome::TooLarge { reason } => println!("{path}: too large to scan ({reason})"),
            Outcome::Failed(e) => println!("{path}: ERROR {e}"),
            Outcome::Clean | Outcome::Unchanged if self.verbose => println!("{path}: OK"),
            Outcome::Skipped(reason) if self.verbose => println!("{path}: skipped ({reason:?})"),
            _ => {}
        }
    }
}

async fn scan_once(
    dirs: &[PathBuf],
    scanner: &Arc<dyn Scanner>,
    clamd: &Clamd,
    cache_path: Option<&Path>,
    one_fs: bool,
    handler: &mut Handler<'_>,
) -> anyhow::Result<u8> {
    let started = Instant::now();
    let old = cache_path.map(|path| match ScanCache::load(path) {
        Ok(Some(c)) => c,
        Ok(None) => ScanCache::new(""),
        Err(e) => {
            eprintln!("scan-uploads: {e}; starting with an empty cache");
            ScanCache::new("")
        }
    });
    let tree = TreeScanner::builder(scanner.clone())
        .with_concurrency(clamd.jobs)
        .with_one_file_system(one_fs)
        .build()?;
    let progress = AtomicU64::new(0);
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let mut total = TreeSummary::default();
    let mut merged: Option<ScanCache> = None;
    for dir in dirs {
        let (summary, fresh) = tree
            .scan(dir, old.clone(), |r| {
                handler.file(r);
                let n = progress.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(bar) = &bar
                    && n.is_multiple_of(256)
                {
                    bar.set_message(format!("{n} files"));
                }
            })
            .await
            .with_context(|| format!("scanning {}", dir.display()))?;
        total.add(&summary);
        // Several trees share one cache file: it keeps the clean files of all of them.
        merged = match (merged, fresh) {
            (Some(mut all), Some(tree)) => {
                all.merge(tree);
                Some(all)
            }
            (all, tree) => all.or(tree),
        };
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    // Rewritten (and fsync'ed) only when something changed: an unchanged tree costs no write.
    if let (Some(path), Some(cache)) = (cache_path, merged)
        && old.as_ref() != Some(&cache)
    {
        cache.save(path)?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "scanned {} files ({:.1} MiB) in {secs:.2} s: {} clean, {} infected, {} too large, {} errors; {} unchanged since the last scan; {} skipped (links, special files); {} quarantined{}",
        total.scanned,
        total.bytes_scanned as f64 / (1 << 20) as f64,
        total.clean,
        total.infected,
        total.too_large,
        total.failed,
        total.unchanged,
        total.skipped,
        handler.quarantined,
        if handler.quarantine_failed > 0 {
            format!(", {} could not be quarantined", handler.quarantine_failed)
        } else {
            String::new()
        },
    );
    Ok(
        if total.failed > 0 || total.too_large > 0 || handler.quarantine_failed > 0 {
            2
        } else if total.infected > 0 {
            1
        } else {
            0
        },
    )
}
