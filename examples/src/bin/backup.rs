//! `backup`: deduplicated, compressed, encrypted backups with backup-core.
//!
//! ```text
//! backup demo                                   # end-to-end demo, no configuration
//! backup -r /srv/repo init
//! backup -r /srv/repo backup /var/www --exclude '*.tmp' --tag nightly
//! backup -r s3://bucket/prefix snapshots
//! backup -r /srv/repo restore latest --target /tmp/restore [--path www/site]
//! backup -r /srv/repo ls latest | diff A B | stats [--json]
//! backup -r /srv/repo check [--read-data | --read-data-subset 1/7 | 10% | 2G] [--json]
//! backup -r /srv/repo key add | list | remove ID | passwd      # new password: BACKUP_NEW_PASSWORD
//! backup -r /srv/repo forget --keep-within 2d --keep-daily 14 --keep-monthly 12 [--dry-run]
//! backup -r /srv/repo prune [--max-unused 5%|100M|unlimited] [--max-repack-size 2G] [--dry-run]
//! backup -r /srv/repo unlock [--force]                 # stale locks only, unless forced
//! backup -r /srv/repo repair index [--dry-run] | repair snapshots [--read-data] [--dry-run]
//! backup -r /srv/repo repair from-mirror s3://bucket/mirror [--dry-run]  # heal from a mirror
//! backup -r /srv/repo repair from-source [--dry-run] [/var/www ...]  # rebuild from the files
//! backup -r /srv/repo repair config s3://bucket/mirror [--dry-run]  # a damaged config
//! backup -r /srv/repo blobs [--json]                           # where each chunk and tree is
//! backup -r s3://bucket/mirror init --copy-params-from /srv/repo   # a mirror sharing chunk keys
//! backup -r /srv/repo copy --to s3://bucket/mirror [SNAPSHOT...] [--host H] [--tag T]
//! backup -r /srv/repo --append-only backup /var/www   # forget, key remove, ... are refused
//! backup -r /srv/repo schedule --policy /etc/hostguard/backup-schedule.toml [--once]
//! backup schedule --policy FILE --run-now JOB | --status
//! ```
//!
//! Locks (see `backup_core::lock`): `backup` and `forget` take a shared lock; `prune` and
//! `key add|remove|passwd` take the exclusive one; reading commands take none.
//!
//! The other repository's key for `copy --to` and `init --copy-params-from` comes from
//! `BACKUP_TO_PASSWORD` / `--to-key-file` or `BACKUP_FROM_PASSWORD` / `--from-key-file`,
//! else it is the same as this repository's.
//!
//! The password comes from `BACKUP_PASSWORD`, or the key comes from `--key-file` (a
//! crypto-at-rest keyring file); only on a terminal is the password prompted for.
//!
//! Exit status: 0 on success, 1 on error, 3 when `backup` saved a snapshot but skipped files it
//! could not read (as restic) or `repair from-mirror|from-source` left something lost, 4 when
//! `check` found damage or `copy` left snapshots out
//! because their data is damaged in the source, 5 when `restore` restored everything else but
//! left out files or directories whose data is damaged in the repository (each named, with
//! the blob or tree and pack at fault, on stderr; in `damaged` with --json).
//! `ls` prints paths escaped (`\n`, `\\`, `\xNN`, ...), and `restore --path` takes a path as
//! `ls` prints it.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use backup_core::check::{CheckOptions, CheckReport, DataSubset};
use backup_core::copy::CopyOptions;
use backup_core::format::{NodeKind, Snapshot};
use backup_core::keys::KeyKind;
use backup_core::lock::{LockKind, LockOptions, RepositoryLock};
use backup_core::prune::{MaxUnused, PackAction, PruneOptions, PruneReport};
use backup_core::retention::{GroupBy, RetentionDuration, RetentionPolicy, RetentionPolicyBuilder};
use backup_core::schedule;
use backup_core::write_only::HostKey;
use backup_core::{
    BackupOptions, InitOptions, KeySource, Progress, Repository, RestoreOptions, StoreOptions, ops,
};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

const PASSWORD_ENV: &str = "BACKUP_PASSWORD";

#[derive(Parser)]
#[command(
    name = "backup",
    version,
    about = "Deduplicated, compressed, encrypted backups"
)]
struct Cli {
    /// Repository: a local directory or s3://bucket/prefix (S3 endpoint, region and credentials
    /// from AWS_ENDPOINT_URL, AWS_REGION / AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY).
    #[arg(short, long, env = "BACKUP_REPOSITORY", global = true)]
    repo: Option<String>,
    /// Key file (a crypto-at-rest keyring) instead of the BACKUP_PASSWORD password.
    #[arg(long, global = true)]
    key_file: Option<PathBuf>,
    /// Per-request timeout for remote stores, in seconds.
    #[arg(long, default_value_t = 300, global = true)]
    timeout: u64,
    /// Print machine-readable JSON instead of human summaries.
    #[arg(long, global = true)]
    json: bool,
    /// Worker threads for backup (per stage) and restore (default: from the core count; raise
    /// it for slow disks or remote stores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Open the repository append-only: backups, restores and checks work; anything that
    /// deletes or replaces objects (forget, key remove, key passwd) is refused.
    #[arg(long, global = true, env = "BACKUP_APPEND_ONLY")]
    append_only: bool,
    /// The owner's identity file (AGE-SECRET-KEY-1..., as age-keygen writes it): opens a
    /// write-only repository with full rights (restore, check --read-data, forget, prune, ls).
    #[arg(long, global = true, env = "BACKUP_IDENTITY", value_name = "FILE",
          conflicts_with_all = ["key_file", "host_key"])]
    identity: Option<PathBuf>,
    /// A write-only host's key file (made by `init --write-only`): adds backups to a
    /// write-only repository and reads nothing stored.
    #[arg(
        long,
        global = true,
        env = "BACKUP_HOST_KEY",
        value_name = "FILE",
        conflicts_with = "key_file"
    )]
    host_key: Option<PathBuf>,
    /// A write-only host's parent cache: its last backup's snapshot and trees, so the next
    /// backup skips unchanged files (default: the host key file's path + `.cache`).
    #[arg(
        long,
        global = true,
        env = "BACKUP_HOST_CACHE",
        value_name = "FILE",
        requires = "host_key"
    )]
    host_cache: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a repository (refuses to overwrite an existing one).
    Init {
        /// Share this repository's chunk keys, chunk sizes, pack size and compression level, so
        /// that `copy` can copy its snapshots here (its key: BACKUP_FROM_PASSWORD or
        /// --from-key-file, else the same as the new repository's).
        #[arg(long, value_name = "REPOSITORY")]
        copy_params_from: Option<String>,
        /// Key file of the --copy-params-from repository.
        #[arg(long, requires = "copy_params_from")]
        from_key_file: Option<PathBuf>,
        /// Target pack size (64K to 1G; default 8M): smaller packs, smaller losses when one
        /// is damaged (the damage campaigns use 1M).
        #[arg(long, value_parser = parse_size, conflicts_with = "copy_params_from")]
        pack_size: Option<u64>,
        /// Create a write-only repository, run on the host that backs up: only the owner's
        /// identity will read it. The host key is made at --host-key (or that existing file
        /// is used) and uploaded only sealed to the owner.
        #[arg(long, conflicts_with = "copy_params_from")]
        write_only: bool,
        /// The owner's public key (age1...), for --write-only.
        #[arg(long, value_name = "RECIPIENT", requires = "write_only")]
        owner_recipient: Option<String>,
        /// A file holding the owner's public key (age1...; `#` comments allowed), for
        /// --write-only.
        #[arg(
            long,
            value_name = "FILE",
            requires = "write_only",
            conflicts_with = "owner_recipient"
        )]
        owner_recipient_file: Option<PathBuf>,
    },
    /// Back up files and directories.
    Backup {
        /// Paths to back up.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Exclude paths matching this glob (`/abs/*.tmp` is anchored; `*.log` or `www/cache` match at any depth).
        #[arg(long)]
        exclude: Vec<String>,
        /// Skip directories containing a file with this name (e.g. CACHEDIR.TAG).
        #[arg(long)]
        exclude_if_present: Vec<String>,
        /// Do not cross file-system boundaries.
        #[arg(short = 'x', long)]
        one_file_system: bool,
        /// Parent snapshot (default: the latest of the same host and paths).
        #[arg(long)]
        parent: Option<String>,
        /// Read every file even if a parent snapshot says it is unchanged.
        #[arg(long)]
        no_parent: bool,
        /// Tag the snapshot (repeatable).
        #[arg(long)]
        tag: Vec<String>,
        /// Host name to record.
        #[arg(long)]
        host: Option<String>,
    },
    /// List snapshots.
    Snapshots,
    /// List the entries of a snapshot, one per line, paths escaped (`\n`, `\\`, `\xNN`); with
    /// --json also the ids of each file's blobs (`content`) and directory's tree (`subtree`).
    Ls {
        /// Snapshot id, unique prefix, or `latest`.
        snapshot: String,
    },
    /// Restore a snapshot (or a path inside it) into a directory. Files are written to
    /// temporary names `.NAME.restore-PID-N` and renamed into place; a rerun removes those that
    /// a killed restore left beside the files it restores. Files and directories whose data is
    /// damaged in the repository are left out and named, the rest restored (exit status 5).
    Restore {
        /// Snapshot id, unique prefix, or `latest`.
        snapshot: String,
        /// Target directory.
        #[arg(short, long)]
        target: PathBuf,
        /// Restore only this path inside the snapshot, as `ls` prints it (escaped).
        #[arg(long)]
        path: Option<OsString>,
        /// Leave all-zero blocks as holes (sparse files). By default every block is written,
        /// so a preallocated file comes back allocated.
        #[arg(long)]
        sparse: bool,
    },
    /// Show what changed between two snapshots.
    Diff {
        /// Older snapshot.
        a: String,
        /// Newer snapshot.
        b: String,
    },
    /// Logical size, stored size and deduplication ratio.
    Stats {
        /// Snapshots to count (default: all).
        snapshots: Vec<String>,
    },
    /// Forget snapshots by a retention policy (restic's rules, applied per group). Deletes
    /// snapshot objects only: their data stays in the repository until a prune.
    Forget {
        /// Keep the N newest snapshots.
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep_last: u32,
        /// Keep the newest snapshot of each of the last N hours that hold one.
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep_hourly: u32,
        /// Keep the newest snapshot of each of the last N days that hold one.
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep_daily: u32,
        /// Keep the newest snapshot of each of the last N ISO weeks that hold one.
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep_weekly: u32,
        /// Keep the newest snapshot of each of the last N months that hold one.
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep_monthly: u32,
        /// Keep the newest snapshot of each of the last N years that hold one.
        #[arg(long, default_value_t = 0, value_name = "N")]
        keep_yearly: u32,
        /// Keep every snapshot less than this before the group's newest (1y6m, 14d, 36h).
        #[arg(long, value_name = "DURATION")]
        keep_within: Option<RetentionDuration>,
        /// Keep one snapshot per hour within this duration of the group's newest.
        #[arg(long, value_name = "DURATION")]
        keep_within_hourly: Option<RetentionDuration>,
        /// Keep one snapshot per day within this duration of the group's newest.
        #[arg(long, value_name = "DURATION")]
        keep_within_daily: Option<RetentionDuration>,
        /// Keep one snapshot per ISO week within this duration of the group's newest.
        #[arg(long, value_name = "DURATION")]
        keep_within_weekly: Option<RetentionDuration>,
        /// Keep one snapshot per month within this duration of the group's newest.
        #[arg(long, value_name = "DURATION")]
        keep_within_monthly: Option<RetentionDuration>,
        /// Keep one snapshot per year within this duration of the group's newest.
        #[arg(long, value_name = "DURATION")]
        keep_within_yearly: Option<RetentionDuration>,
        /// Keep snapshots with this tag (repeatable).
        #[arg(long, value_name = "TAG")]
        keep_tag: Vec<String>,
        /// Look only at snapshots of this host (repeatable); others are left alone.
        #[arg(long, value_name = "HOST")]
        host: Vec<String>,
        /// Look only at snapshots with this tag (repeatable: any of them).
        #[arg(long, value_name = "TAG")]
        tag: Vec<String>,
        /// Look only at snapshots that include this path (repeatable: all of them).
        #[arg(long, value_name = "PATH")]
        path: Vec<String>,
        /// Group snapshots by these fields (comma-separated host, paths, tags; "" = one group).
        #[arg(long, default_value = "host,paths")]
        group_by: GroupBy,
        /// Only list what would be kept and removed, and why.
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Verify the repository: every index entry, tree and chunk in place (exit 4 when damage
    /// is found, naming the object and the snapshots and files it affects).
    Check {
        /// Also decrypt and verify every pack.
        #[arg(long)]
        read_data: bool,
        /// Decrypt and verify part of the packs: n/N (N runs with n = 1..N read everything), a
        /// percentage or a size (a different part each day, so that N daily runs read all).
        #[arg(long, value_name = "SUBSET", conflicts_with = "read_data")]
        read_data_subset: Option<DataSubset>,
    },
    /// Copy snapshots (all, or those named or matching --host/--tag) with their data into
    /// another repository made by `init --copy-params-from`; only what it lacks is sent, and
    /// snapshots it already holds are skipped.
    Copy {
        /// The destination repository (its key: BACKUP_TO_PASSWORD or --to-key-file, else the
        /// same as the source's).
        #[arg(long, value_name = "REPOSITORY")]
        to: String,
        /// Key file of the destination.
        #[arg(long)]
        to_key_file: Option<PathBuf>,
        /// Snapshots to copy (id, unique prefix or `latest`; default: all).
        snapshots: Vec<String>,
        /// Only snapshots of this host (repeatable).
        #[arg(long)]
        host: Vec<String>,
        /// Only snapshots with this tag (repeatable).
        #[arg(long)]
        tag: Vec<String>,
    },
    /// Run the jobs of a schedule policy (TOML): backups, forgets and check scrubs at their
    /// times (UTC), missed runs once after downtime, and runs requested with --run-now; the
    /// state and a JSON status file for health checks are kept in --state-dir.
    Schedule {
        /// The policy file.
        #[arg(long)]
        policy: PathBuf,
        /// Where the status file (status.json), the lock and run requests live.
        #[arg(
            long,
            env = "STATE_DIRECTORY",
            default_value = "/var/lib/hostguard-backup"
        )]
        state_dir: PathBuf,
        /// Ask the running scheduler to run this job now, beside the schedule, and exit (with
        /// --once, run it in this process).
        #[arg(long, value_name = "JOB")]
        run_now: Option<String>,
        /// Run requested and due jobs once and exit (exit 1 if one failed).
        #[arg(long)]
        once: bool,
        /// Print the status file and exit.
        #[arg(long, conflicts_with_all = ["run_now", "once"])]
        status: bool,
    },
    /// Manage the repository's keys (passphrases and key files); no data is rewritten.
    Key {
        #[command(subcommand)]
        action: KeyCommand,
    },
    /// Delete data no snapshot uses and repack packs that are partly unused, under the
    /// repository's exclusive lock (never beside a running backup).
    Prune {
        /// Unused data that may stay: a percentage of the packs, a size (100M), or unlimited
        /// (then only wholly unused packs are deleted).
        #[arg(long, default_value = "5%", value_name = "LIMIT")]
        max_unused: MaxUnused,
        /// Read at most this many bytes of packs to repack (2G, 500M).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_repack_size: Option<u64>,
        /// Only say what would be deleted and repacked (with --json, the decision per pack).
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Remove stale locks (their process is gone, or they were not refreshed for their stale
    /// age); with --force, every lock.
    Unlock {
        /// Remove every lock, even live ones (only when you know their holders are gone).
        #[arg(long)]
        force: bool,
    },
    /// End-to-end demo with no configuration: back up a directory into a temporary repository,
    /// restore it elsewhere, verify it is identical, and print the summary.
    Demo {
        /// Directory to back up (default: this workspace's source tree, else a generated one).
        dir: Option<PathBuf>,
    },
    /// Repair a damaged repository (run `check` first, and `repair index` before `repair
    /// snapshots`).
    Repair {
        #[command(subcommand)]
        what: RepairCommand,
    },
    /// List every blob the index holds: id, kind (data or tree), pack, offset and length.
    Blobs,
}

#[derive(Subcommand)]
enum RepairCommand {
    /// Rebuild the index from the pack headers; damaged packs are reported. The old index
    /// objects are deleted only after the new ones are written.
    Index {
        /// Only report what would be written and deleted.
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Rewrite snapshots whose trees or chunks are missing or damaged: the files and
    /// directories that cannot be read are dropped, the rest is saved as a new snapshot
    /// (tagged `repaired`) before the damaged one is deleted.
    Snapshots {
        /// Also read and verify every chunk (else only missing ones are found).
        #[arg(long)]
        read_data: bool,
        /// Only report what would be dropped.
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Heal damaged or missing packs, index objects, trees and snapshot objects from a mirror
    /// (made by `init --copy-params-from` and `copy`), under an exclusive lock. What the
    /// mirror lacks too is named by snapshot and path (exit code 3); `repair snapshots` can
    /// then drop it.
    FromMirror {
        /// The mirror repository (its key: BACKUP_MIRROR_PASSWORD or --mirror-key-file, else
        /// the same as this repository's).
        mirror: String,
        /// Key file of the mirror.
        #[arg(long)]
        mirror_key_file: Option<PathBuf>,
        /// Do not copy back snapshots the mirror holds and this repository lacks (forgotten
        /// here but not in the mirror).
        #[arg(long)]
        skip_missing_snapshots: bool,
        /// Rebuild what the mirror lacks too from the source files under this path (a path
        /// as given to `backup`; repeatable), as `repair from-source` does.
        #[arg(long, value_name = "PATH")]
        source: Vec<PathBuf>,
        /// Rebuild what the mirror lacks too from the source files at the paths each
        /// snapshot records.
        #[arg(long, conflicts_with = "source")]
        source_recorded: bool,
        /// Only report what would be healed.
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Rebuild a damaged or missing `config` from a mirror sharing this repository's keys
    /// (made by `init --copy-params-from`), when a key object here opens with this password
    /// or key file to the mirror's master secret. Key objects are not healed from a mirror
    /// (the mirror's are its own): replace a damaged one with `key passwd` through another key.
    Config {
        /// The mirror repository (its key: BACKUP_MIRROR_PASSWORD or --mirror-key-file, else
        /// the same as this repository's).
        mirror: String,
        /// Key file of the mirror.
        #[arg(long)]
        mirror_key_file: Option<PathBuf>,
        /// Only say whether the config would be rebuilt.
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
    /// Rebuild the chunks of damaged or missing packs from the source files where they still
    /// hold the same chunks (each file using a lost chunk is read again and cut with the
    /// repository's chunker), under an exclusive lock; sound frames are kept, a damaged
    /// index is rebuilt, and damaged packs are deleted once their blobs are stored again.
    /// What no file gives back (changed or gone; trees and snapshot objects) is named by
    /// snapshot and path (exit code 3), and `check` names it after.
    FromSource {
        /// The backed-up paths, as given to `backup` (each stands for the snapshot root entry
        /// of the same name); default: the paths each snapshot records.
        paths: Vec<PathBuf>,
        /// Only report what would be rebuilt (the source files are read).
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Add a key (another admin's): the new passphrase comes from BACKUP_NEW_PASSWORD (or a
    /// prompt), or the new key from --new-key-file.
    Add {
        /// The new key's keyring file instead of a new passphrase.
        #[arg(long)]
        new_key_file: Option<PathBuf>,
    },
    /// List the keys; `*` marks the one used now.
    List,
    /// Remove a key by id or unique prefix (not the one used now, never the last).
    Remove {
        /// Key id or unique prefix.
        id: String,
    },
    /// Replace the key used now by a new passphrase (BACKUP_NEW_PASSWORD or a prompt) or key
    /// file: the new key is written before the old one is removed.
    Passwd {
        /// The new key's keyring file instead of a new passphrase.
        #[arg(long)]
        new_key_file: Option<PathBuf>,
    },
}

const NEW_PASSWORD_ENV: &str = "BACKUP_NEW_PASSWORD";
/// The destination's password for `copy --to`.
const TO_PASSWORD_ENV: &str = "BACKUP_TO_PASSWORD";
/// The mirror's password for `repair from-mirror`.
const MIRROR_PASSWORD_ENV: &str = "BACKUP_MIRROR_PASSWORD";
/// The source's password for `init --copy-params-from`.
const FROM_PASSWORD_ENV: &str = "BACKUP_FROM_PASSWORD";

/// The new key of `key add` / `key passwd`.
fn new_key_source(key_file: Option<&Path>) -> Result<KeySource> {
    if let Some(path) = key_file {
        return Ok(KeySource::key_file(path)?);
    }
    if let Ok(p) = std::env::var(NEW_PASSWORD_ENV) {
        return Ok(KeySource::passphrase(p));
    }
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("new password: ")
            .context("reading the new password from the terminal")?;
        let again = rpassword::prompt_password("new password again: ")
            .context("reading the new password from the terminal")?;
        if p != again {
            bail!("the two new passwords differ");
        }
        return Ok(KeySource::passphrase(p));
    }
    bail!(
        "no new password: set {NEW_PASSWORD_ENV} or pass --new-key-file (no terminal to prompt on)"
    )
}

/// `key add|list|remove|passwd`.
async fn key(cli: &Cli, location: &str, action: &KeyCommand) -> Result<()> {
    let repo = open(cli, location).await?;
    // Two key changes at once could each remove the key the other opened with.
    let lock = match action {
        KeyCommand::List => None,
        _ => Some(take_lock(&repo, LockKind::Exclusive, "key").await?),
    };
    let result = key_locked(cli, &repo, action).await;
    release(lock).await;
    result
}

/// Takes a lock for `command`.
async fn take_lock(repo: &Repository, kind: LockKind, command: &str) -> Result<RepositoryLock> {
    Ok(repo
        .lock(&LockOptions::builder(kind, command).build()?)
        .await?)
}

/// Releases a lock; a failure only leaves it to go stale.
async fn release(lock: Option<RepositoryLock>) {
    if let Some(lock) = lock
        && let Err(e) = lock.release().await
    {
        eprintln!(
            "warning: could not remove the lock (it goes stale on its own): {}",
            backup_core::report(&e)
        );
    }
}

async fn key_locked(cli: &Cli, repo: &Repository, action: &KeyCommand) -> Result<()> {
    match action {
        KeyCommand::Add { new_key_file } => {
            let id = repo
                .add_key(&new_key_source(new_key_file.as_deref())?)
                .await?;
            if cli.json {
                println!("{}", json!({"added": id}));
            } else {
                println!("added key {id}");
            }
        }
        KeyCommand::List => {
            let keys = repo.list_keys().await?;
            if cli.json {
                println!("{}", serde_json::to_string(&keys)?);
            } else {
                for k in &keys {
                    let kind = match k.kind {
                        KeyKind::Passphrase => "passphrase",
                        KeyKind::KeyFile => "key file",
                        _ => "other",
                    };
                    println!(
                        "{} {} {kind:<10} {:<20} {:<16} {}",
                        if k.current { '*' } else { ' ' },
                        k.id,
                        k.created_ns.map_or("-".into(), time_of),
                        k.host.as_deref().unwrap_or("-"),
                        k.kdf.as_deref().unwrap_or("")
                    );
                }
            }
        }
        KeyCommand::Remove { id } => {
            repo.remove_key(id).await?;
            if cli.json {
                println!("{}", json!({"removed": id}));
            } else {
                println!("removed key {id}");
            }
        }
        KeyCommand::Passwd { new_key_file } => {
            let old = repo.current_key()?;
            let id = repo
                .change_key(&new_key_source(new_key_file.as_deref())?)
                .await?;
            if cli.json {
                println!("{}", json!({"added": id, "removed": old}));
            } else {
                println!("replaced key {old} by {id}");
            }
        }
    }
    Ok(())
}

/// Progress bar with bytes/s and ETA; hidden when stderr is not a terminal or with --json.
struct Bar(ProgressBar);

impl Bar {
    fn new(quiet: bool) -> Arc<Self> {
        let bar = if quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Arc::new(Bar(bar))
    }
}

impl Progress for Bar {
    fn start(&self, files: u64, bytes: u64) {
        self.0.set_length(bytes);
        self.0.set_message(format!("{files} files"));
    }
    fn found(&self, _path: &std::path::Path, bytes: u64) {
        // The total grows while the scan runs, then `start` sets it exactly.
        self.0.inc_length(bytes);
    }
    fn bytes_done(&self, bytes: u64) {
        self.0.inc(bytes);
    }
    fn problem(&self, path: &str, what: &str) {
        self.0.suspend(|| eprintln!("warning: {path}: {what}"));
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// The key of another repository (`copy --to`, `init --copy-params-from`): its key file, its
/// password variable, else this repository's key.
fn other_key_source(cli: &Cli, key_file: Option<&Path>, env: &str) -> Result<KeySource> {
    if let Some(path) = key_file {
        return Ok(KeySource::key_file(path)?);
    }
    if let Ok(p) = std::env::var(env) {
        return Ok(KeySource::passphrase(p));
    }
    key_source(cli)
}

fn key_source(cli: &Cli) -> Result<KeySource> {
    if let Some(path) = &cli.identity {
        return Ok(KeySource::owner_identity_file(path)?);
    }
    if let Some(path) = &cli.host_key {
        return Ok(KeySource::host_key_file(path)?);
    }
    if let Some(path) = &cli.key_file {
        return Ok(KeySource::key_file(path)?);
    }
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        return Ok(KeySource::passphrase(p));
    }
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("repository password: ")
            .context("reading the password from the terminal")?;
        return Ok(KeySource::passphrase(p));
    }
    bail!("no password: set {PASSWORD_ENV} or pass --key-file (no terminal to prompt on)")
}

/// Options for `init`: the pack size asked for, else the default.
fn init_options(pack_size: Option<u64>) -> Result<InitOptions> {
    let options = InitOptions::new();
    Ok(match pack_size {
        Some(size) => {
            options.with_pack_size(u32::try_from(size).context("--pack-size: at most 1G")?)
        }
        None => options,
    })
}

/// `init --write-only`: the host key at --host-key (made there if missing), the owner's
/// public key from the command line or a file.
async fn init_write_only(
    cli: &Cli,
    location: &str,
    recipient: Option<&str>,
    recipient_file: Option<&Path>,
    options: InitOptions,
) -> Result<()> {
    let Some(host_key_path) = &cli.host_key else {
        bail!("init --write-only needs --host-key FILE: where this host keeps its key");
    };
    let recipient = match (recipient, recipient_file) {
        (Some(text), _) => text.to_string(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the owner's recipient from {}", path.display()))?,
        (None, None) => {
            bail!(
                "init --write-only needs the owner's public key: --owner-recipient age1... or --owner-recipient-file FILE"
            )
        }
    };
    let owner = backup_core::write_only::parse_owner_recipient(&recipient)?;
    let (host_key, made) = if host_key_path.exists() {
        (HostKey::load(host_key_path)?, false)
    } else {
        let key = HostKey::generate()?;
        key.save_new(host_key_path)?;
        (key, true)
    };
    let store = StoreOptions::new(location)
        .with_timeout(Duration::from_secs(cli.timeout))
        .with_create(true)
        .build()?;
    let repo = Repository::init_write_only(store, location, &owner, &host_key, options).await?;
    let id = &repo.config().id;
    if cli.json {
        println!(
            "{}",
            json!({"location": location, "id": id, "write_only": true,
                   "host_key": host_key_path, "host_key_created": made})
        );
    } else {
        println!(
            "created write-only repository {id} at {location}\n{} host key {} (keep it on this host; it reads nothing back)",
            if made { "made" } else { "used" },
            host_key_path.display()
        );
    }
    Ok(())
}

/// The repository this run opened, so that the objects it skipped are reported even if the
/// command then fails.
static OPENED: OnceLock<Arc<Repository>> = OnceLock::new();

async fn open(cli: &Cli, location: &str) -> Result<Arc<Repository>> {
    let repo = open_with(cli, location, &key_source(cli)?).await?;
    let _ = OPENED.set(repo.clone());
    Ok(repo)
}

/// Opens `location` with `key` (append-only with --append-only).
async fn open_with(cli: &Cli, location: &str, key: &KeySource) -> Result<Arc<Repository>> {
    let store = StoreOptions::new(location)
        .with_timeout(Duration::from_secs(cli.timeout))
        .build()?;
    let mut repo = if cli.append_only {
        Repository::open_append_only(store, location, key).await?
    } else {
        Repository::open(store, location, key).await?
    };
    if let (KeySource::Host(_), Some(host_key)) = (key, &cli.host_key) {
        let cache = cli.host_cache.clone().unwrap_or_else(|| {
            let mut path = host_key.as_os_str().to_owned();
            path.push(".cache");
            PathBuf::from(path)
        });
        repo = repo.with_host_cache(cache)?;
    }
    Ok(Arc::new(repo))
}

/// Warns about damaged or foreign objects the repository skipped.
fn report_skipped_objects() {
    if let Some(repo) = OPENED.get() {
        for s in repo.skipped_objects() {
            eprintln!(
                "warning: skipped repository object {} (damaged or not a repository object): {}",
                s.object, s.reason
            );
        }
    }
}

fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

fn time_of(ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

fn snapshot_json(id: &str, s: &Snapshot) -> serde_json::Value {
    json!({
        "id": id, "time": time_of(s.time_ns), "host": s.host, "paths": s.paths, "tags": s.tags,
        "parent": s.parent, "tree": s.tree.to_hex(), "summary": s.summary,
        "skipped": s.skipped, "changed": s.changed,
    })
}

fn print_backup(json_out: bool, id: &str, s: &Snapshot) {
    if json_out {
        println!("{}", snapshot_json(id, s));
        return;
    }
    let m = &s.summary;
    println!(
        "snapshot {} saved: {} files, {} dirs, {} ({} read, {} files unchanged)",
        &id[..8],
        m.files,
        m.dirs,
        human_bytes(m.bytes),
        human_bytes(m.bytes_read),
        m.files_unchanged
    );
    println!(
        "  new: {} chunks, {} of data, {} stored; took {:.2} s",
        m.chunks_new,
        human_bytes(m.bytes_new),
        human_bytes(m.bytes_stored),
        m.duration_ms as f64 / 1000.0
    );
    for p in &s.skipped {
        println!("  skipped {}: {}", p.path, p.error);
    }
    for p in &s.changed {
        println!("  changed while read {}: {}", p.path, p.error);
    }
}

/// Re-executes this program with `MALLOC_ARENA_MAX=2` (and, for `backup`,
/// `MALLOC_MMAP_THRESHOLD_=262144`) unless `MALLOC_ARENA_MAX` is already set.
///
/// glibc gives threads that allocate concurrently their own malloc arenas and keeps freed
/// memory in each; with the pipeline's threads that added about 30 MiB to a restore's peak
/// (160 MiB instead of 128 MiB on the Rust toolchain tree) at no gain in speed. glibc also raises
/// its mmap threshold to the size of each large block freed, after which multi-megabyte buffers
/// come from (and fragment) the arenas: a fixed 256 KiB threshold took a cold backup's peak from
/// 110 MiB to 85 MiB, again at no cost in speed. (Not for restore: each decoded group of small
/// files is a fresh buffer, and mapping each anew made restores 30 % slower.) Setting the
/// variables needs no unsafe code, unlike `mallopt`; they must be set before the process starts.
fn tune_malloc(command: &Command) {
    use std::os::unix::process::CommandExt;
    if !cfg!(target_env = "gnu") || std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    // `exec` returns only on failure; then run on untuned.
    let mut again = std::process::Command::new(exe);
    again.arg0(arg0).args(args).env("MALLOC_ARENA_MAX", "2");
    if matches!(command, Command::Backup { .. }) {
        again.env("MALLOC_MMAP_THRESHOLD_", "262144");
    }
    let _ = again.exec();
}

/// Exit status of a backup that skipped unreadable files (restic's).
const EXIT_PARTIAL: i32 = 3;

/// Exit status of a `check` that found damage (1 stays "the check could not run").
const EXIT_DAMAGED: i32 = 4;

/// Exit status of a `restore` that left out damaged files or directories (and restored the rest).
const EXIT_RESTORE_DAMAGED: i32 = 5;

fn main() {
    let cli = Cli::parse();
    tune_malloc(&cli.command);
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run(cli)));
    report_skipped_objects();
    match result {
        Ok(status) => std::process::exit(status),
        Err(e) => {
            // Each cause once: the chain without the texts a message already repeats.
            eprintln!("backup: error: {}", backup_core::report(e.as_ref()));
            std::process::exit(1);
        }
    }
}

/// Runs the command; returns the exit status.
async fn run(cli: Cli) -> Result<i32> {
    if let Command::Demo { dir } = &cli.command {
        return demo(dir.clone(), cli.json).await.map(|()| 0);
    }
    if let Command::Schedule { .. } = &cli.command {
        return schedule(&cli).await;
    }
    let Some(location) = cli.repo.clone() else {
        bail!("no repository: pass --repo PATH|s3://bucket/prefix or set BACKUP_REPOSITORY");
    };
    match &cli.command {
        Command::Init {
            write_only: true,
            owner_recipient,
            owner_recipient_file,
            pack_size,
            ..
        } => {
            init_write_only(
                &cli,
                &location,
                owner_recipient.as_deref(),
                owner_recipient_file.as_deref(),
                init_options(*pack_size)?,
            )
            .await?;
        }
        Command::Init {
            copy_params_from,
            from_key_file,
            pack_size,
            ..
        } => {
            let mut options = init_options(*pack_size)?;
            if let Some(source) = copy_params_from {
                let key = other_key_source(&cli, from_key_file.as_deref(), FROM_PASSWORD_ENV)?;
                options = options.with_params_from(&*open_with(&cli, source, &key).await?);
            }
            let store = StoreOptions::new(&location)
                .with_timeout(Duration::from_secs(cli.timeout))
                .with_create(true)
                .build()?;
            let repo = Repository::init(store, &location, &key_source(&cli)?, options).await?;
            if cli.json {
                println!("{}", json!({"location": location, "id": repo.config().id}));
            } else {
                println!("created repository {} at {location}", repo.config().id);
            }
        }
        Command::Backup {
            paths,
            exclude,
            exclude_if_present,
            one_file_system,
            parent,
            no_parent,
            tag,
            host,
        } => {
            let repo = open(&cli, &location).await?;
            let mut options = BackupOptions::builder(paths.iter())
                .with_threads(cli.threads.unwrap_or(0))
                .with_one_file_system(*one_file_system)
                .with_auto_parent(!no_parent);
            for e in exclude {
                options = options.with_exclude(e);
            }
            for m in exclude_if_present {
                options = options.with_exclude_if_present(m);
            }
            for t in tag {
                options = options.with_tag(t);
            }
            if let (Some(p), false) = (parent, no_parent) {
                options = options.with_parent(p);
            }
            if let Some(h) = host {
                options = options.with_host(h);
            }
            let (id, snap) =
                backup_core::backup(repo, options.build()?, Bar::new(cli.json)).await?;
            print_backup(cli.json, &id, &snap);
            if !snap.skipped.is_empty() {
                eprintln!(
                    "warning: snapshot {} is incomplete: {} unreadable files skipped",
                    &id[..8],
                    snap.skipped.len()
                );
                return Ok(EXIT_PARTIAL);
            }
        }
        Command::Snapshots => {
            let repo = open(&cli, &location).await?;
            let all = repo.snapshots().await?;
            if cli.json {
                let v: Vec<_> = all.iter().map(|(id, s)| snapshot_json(id, s)).collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                println!(
                    "{:<10} {:<22} {:<16} {:>10}  paths / tags",
                    "id", "time", "host", "size"
                );
                for (id, s) in &all {
                    println!(
                        "{:<10} {:<22} {:<16} {:>10}  {} {}",
                        &id[..8],
                        time_of(s.time_ns),
                        s.host,
                        human_bytes(s.summary.bytes),
                        s.paths.join(" "),
                        s.tags.iter().map(|t| format!("[{t}]")).collect::<String>()
                    );
                }
                println!("{} snapshots", all.len());
            }
        }
        Command::Ls { snapshot } => {
            let repo = open(&cli, &location).await?;
            for e in ops::list(&repo, snapshot).await? {
                let n = &e.node;
                if cli.json {
                    // The blobs (content) and tree (subtree) ids, as `blobs` names them: which
                    // files a damaged pack range hits (the damage-restore campaign).
                    let content: Vec<String> = n.content.iter().map(|id| id.to_hex()).collect();
                    println!(
                        "{}",
                        json!({"path": e.escaped_path(), "type": n.kind, "mode": n.mode,
                               "uid": n.uid, "gid": n.gid, "size": n.size,
                               "mtime": time_of(n.mtime_ns), "content": content,
                               "subtree": n.subtree.map(|id| id.to_hex())})
                    );
                } else {
                    let t = match n.kind {
                        NodeKind::Dir => 'd',
                        NodeKind::Symlink => 'l',
                        NodeKind::File => '-',
                        _ => '?',
                    };
                    println!(
                        "{t}{:04o} {:>6}:{:<6} {:>10} {} {}",
                        n.mode,
                        n.uid,
                        n.gid,
                        n.size,
                        time_of(n.mtime_ns),
                        e.escaped_path()
                    );
                }
            }
        }
        Command::Restore {
            snapshot,
            target,
            path,
            sparse,
        } => {
            let repo = open(&cli, &location).await?;
            let mut options = RestoreOptions::builder(target)
                .with_threads(cli.threads.unwrap_or(0))
                .with_sparse(*sparse);
            if let Some(p) = path {
                let raw = ops::unescape_path(p.as_bytes())?;
                options = options.with_sub_path(PathBuf::from(OsString::from_vec(raw)));
            }
            let started = Instant::now();
            let s =
                backup_core::restore(repo, snapshot, options.build()?, Bar::new(cli.json)).await?;
            if cli.json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                println!(
                    "restored into {}: {} files written ({}), {} already correct, {} dirs, {} symlinks, {} hard links in {:.2} s",
                    target.display(),
                    s.files_restored,
                    human_bytes(s.bytes_written),
                    s.files_unchanged,
                    s.dirs,
                    s.symlinks,
                    s.hard_links,
                    started.elapsed().as_secs_f64()
                );
                if s.stale_temp_files_removed > 0 {
                    println!(
                        "  removed {} temporary files of earlier, killed restores",
                        s.stale_temp_files_removed
                    );
                }
                for w in &s.warnings {
                    println!("  warning: {w}");
                }
            }
            if !s.damaged.is_empty() {
                for d in &s.damaged {
                    eprintln!(
                        "backup: damaged, not restored: {} ({:?}): {}: {}",
                        d.path, d.kind, d.object, d.reason
                    );
                }
                eprintln!(
                    "backup: {} entries not restored: their data is damaged in the repository \
                     (repair from-mirror can heal it if a mirror has it)",
                    s.damaged.len()
                );
                return Ok(EXIT_RESTORE_DAMAGED);
            }
        }
        Command::Diff { a, b } => {
            let repo = open(&cli, &location).await?;
            let d = ops::diff(&repo, a, b).await?;
            if cli.json {
                println!("{}", serde_json::to_string(&d)?);
            } else {
                for e in &d {
                    let sign = match e.change {
                        ops::Change::Added => '+',
                        ops::Change::Removed => '-',
                        ops::Change::Modified => 'M',
                        ops::Change::Metadata => 'U',
                    };
                    println!("{sign} {}", e.path);
                }
                println!("{} changes", d.len());
            }
        }
        Command::Stats { snapshots } => {
            let repo = open(&cli, &location).await?;
            let s = ops::stats(&repo, snapshots).await?;
            if cli.json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                println!(
                    "{} snapshots, {} files: logical {}, stored {} (repository {}), deduplication ratio {:.2}",
                    s.snapshots,
                    s.files,
                    human_bytes(s.logical_bytes),
                    human_bytes(s.stored_bytes),
                    human_bytes(s.repository_bytes),
                    s.dedup_ratio
                );
            }
        }
        Command::Forget { .. } => forget(&cli, &location).await?,
        Command::Copy {
            to,
            to_key_file,
            snapshots,
            host,
            tag,
        } => {
            let source = open(&cli, &location).await?;
            let key = other_key_source(&cli, to_key_file.as_deref(), TO_PASSWORD_ENV)?;
            let destination = open_with(&cli, to, &key).await?;
            let options = snapshots
                .iter()
                .fold(CopyOptions::builder(), |b, s| b.with_snapshot(s));
            let options = host.iter().fold(options, |b, h| b.with_host(h));
            let options = tag.iter().fold(options, |b, t| b.with_tag(t)).build()?;
            let report = backup_core::copy::copy(source, destination, &options).await?;
            if cli.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                for id in &report.copied {
                    println!("copied snapshot {}", &id[..8.min(id.len())]);
                }
                for f in &report.failed {
                    println!(
                        "NOT copied: snapshot {}: {}",
                        &f.snapshot[..8.min(f.snapshot.len())],
                        f.error
                    );
                }
                println!(
                    "{} snapshots copied, {} already there, {} failed: {} blobs ({}) in {} packs sent to {to}",
                    report.copied.len(),
                    report.already_present.len(),
                    report.failed.len(),
                    report.blobs_copied,
                    human_bytes(report.bytes_copied),
                    report.packs_written
                );
            }
            if !report.failed.is_empty() {
                return Ok(EXIT_DAMAGED);
            }
        }
        Command::Schedule { .. } => unreachable!("handled above"),
        Command::Key { action } => key(&cli, &location, action).await?,
        Command::Check {
            read_data,
            read_data_subset,
        } => {
            let repo = open(&cli, &location).await?;
            let mut options = CheckOptions::builder();
            if let Some(subset) = read_data_subset {
                options = options.with_read_data(*subset);
            } else if *read_data {
                options = options.with_read_data(DataSubset::All);
            }
            let report = backup_core::check::check(repo, &options.build()?).await?;
            print_check(cli.json, &report)?;
            if !report.is_ok() {
                return Ok(EXIT_DAMAGED);
            }
        }
        Command::Prune {
            max_unused,
            max_repack_size,
            dry_run,
        } => {
            let repo = open(&cli, &location).await?;
            let mut options = PruneOptions::builder()
                .with_max_unused(*max_unused)
                .with_dry_run(*dry_run);
            if let Some(max) = max_repack_size {
                options = options.with_max_repack_size(*max);
            }
            let report = backup_core::prune::prune(repo, &options.build()?).await?;
            print_prune(cli.json, &report)?;
        }
        Command::Unlock { force } => {
            let repo = open(&cli, &location).await?;
            let removed = repo.unlock(*force).await?;
            if cli.json {
                println!("{}", serde_json::to_string(&removed)?);
            } else {
                for entry in &removed {
                    let holder = entry
                        .info
                        .as_ref()
                        .map_or("(does not open)".into(), |i| i.describe());
                    let why = entry.stale.as_deref().unwrap_or("forced");
                    println!("removed {}: {holder}: {why}", entry.object);
                }
                println!("removed {} locks", removed.len());
            }
        }
        Command::Repair {
            what: what @ (RepairCommand::FromMirror { .. } | RepairCommand::FromSource { .. }),
        } => return heal_from_mirror(&cli, &location, what).await,
        Command::Repair {
            what: what @ RepairCommand::Config { .. },
        } => heal_config(&cli, &location, what).await?,
        Command::Repair { what } => repair(&cli, &location, what).await?,
        Command::Blobs => {
            use std::io::Write;
            let repo = open(&cli, &location).await?;
            let mut out = std::io::stdout().lock();
            for b in ops::list_blobs(&repo).await? {
                if cli.json {
                    writeln!(out, "{}", serde_json::to_string(&b)?)?;
                } else {
                    let kind = match b.kind {
                        backup_core::format::BlobKind::Tree => "tree",
                        _ => "data",
                    };
                    writeln!(out, "{} {kind} {} {} {}", b.id, b.pack, b.offset, b.length)?;
                }
            }
        }
        Command::Demo { .. } => unreachable!("handled above"),
    }
    Ok(0)
}

fn parse_size(text: &str) -> std::result::Result<u64, String> {
    backup_core::prune::parse_size(text)
}

/// Prints what `prune` did or would do.
fn print_prune(json_out: bool, r: &PruneReport) -> Result<()> {
    if json_out {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let would = if r.dry_run { "would " } else { "" };
    println!(
        "{} snapshots use {} blobs; {} packs, {}, of which {} unused",
        r.snapshots,
        r.blobs_used,
        r.packs,
        human_bytes(r.bytes),
        human_bytes(r.unused_bytes)
    );
    println!(
        "{would}delete {} packs ({}; {} in no index), {would}repack {} packs ({}) into {} new ({}); unused left {}",
        r.packs_deleted,
        human_bytes(r.bytes_deleted),
        r.unindexed_deleted,
        r.packs_repacked,
        human_bytes(r.bytes_repacked),
        r.packs_written,
        human_bytes(r.bytes_written),
        human_bytes(r.unused_after)
    );
    if r.dry_run {
        for d in r.decisions.iter().filter(|d| d.action != PackAction::Keep) {
            let action = match d.action {
                PackAction::Repack => "repack",
                _ => "delete",
            };
            println!(
                "  {action} {} ({}): {}",
                d.pack,
                human_bytes(d.size),
                d.reason
            );
        }
    } else {
        println!(
            "replaced {} index objects by {}",
            r.index_deleted, r.index_written
        );
    }
    Ok(())
}

/// `schedule`: queue a manual run, print the status, or run the policy's jobs.
async fn schedule(cli: &Cli) -> Result<i32> {
    let Command::Schedule {
        policy,
        state_dir,
        run_now,
        once,
        status,
    } = &cli.command
    else {
        bail!("not a schedule command");
    };
    let status_path = state_dir.join(schedule::STATUS_FILE);
    if *status {
        let status = schedule::ScheduleStatus::read(&status_path)?;
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(0);
    }
    let policy = schedule::SchedulePolicy::load(policy)?;
    if let Some(job) = run_now {
        schedule::request_run(state_dir, &policy, job)?;
        if !once {
            println!("requested a run of {job}: the scheduler runs it within seconds");
            return Ok(0);
        }
    }
    let Some(location) = cli.repo.clone() else {
        bail!("no repository: pass --repo PATH|s3://bucket/prefix or set BACKUP_REPOSITORY");
    };
    let store = StoreOptions::new(&location).with_timeout(Duration::from_secs(cli.timeout));
    let source =
        schedule::OpenRepository::new(store, key_source(cli)?).with_append_only(cli.append_only);
    // A check step's `heal_from` mirror opens as `repair from-mirror`'s does (without a
    // second password prompt: with no key at hand, a policy naming a mirror is refused).
    let mut check = schedule::CheckStep::default();
    if std::env::var_os(MIRROR_PASSWORD_ENV).is_some()
        || std::env::var_os(PASSWORD_ENV).is_some()
        || cli.key_file.is_some()
    {
        check = check.with_mirror_key(other_key_source(cli, None, MIRROR_PASSWORD_ENV)?);
    }
    let mut scheduler = schedule::Scheduler::builder(policy, state_dir, Arc::new(source))
        .with_step("check", Arc::new(check))
        .build()?;
    let print = |record: &schedule::RunRecord, status: &schedule::JobStatus| {
        let how = if record.manual { "manual run" } else { "run" };
        match (&status.last_error, record.ok) {
            (Some(e), false) => eprintln!("job {}: {how} failed: {}", record.job, e.message),
            _ => println!(
                "job {}: {how} succeeded: {}",
                record.job,
                status.last_summary.join("; ")
            ),
        }
    };
    if *once {
        let mut records = scheduler.run_requested().await?;
        records.extend(scheduler.run_due().await?);
        for record in &records {
            print(record, &scheduler.status().jobs[&record.job]);
        }
        if cli.json {
            println!("{}", serde_json::to_string(scheduler.status())?);
        }
        return Ok(if records.iter().all(|r| r.ok) { 0 } else { 1 });
    }
    println!(
        "scheduler started: {} jobs, status in {}",
        scheduler.status().jobs.len(),
        status_path.display()
    );
    scheduler.run_forever(Duration::from_secs(2), print).await?;
    Ok(0)
}

/// Prints what `check` found.
fn print_check(json_out: bool, report: &CheckReport) -> Result<()> {
    if json_out {
        println!("{}", serde_json::to_string(report)?);
        return Ok(());
    }
    println!(
        "checked {} snapshots, {} trees, {} packs ({} headers compared with the index)",
        report.snapshots, report.trees, report.packs, report.headers_read
    );
    if let Some(part) = &report.part {
        println!(
            "read part {part} of the data: {} packs, {}, {} blobs verified",
            report.packs_read,
            human_bytes(report.bytes_read),
            report.blobs_verified
        );
    }
    if !report.unindexed_packs.is_empty() {
        println!(
            "note: {} packs are in no index (left by an interrupted backup)",
            report.unindexed_packs.len()
        );
    }
    for p in &report.problems {
        match (&p.snapshot, &p.path) {
            (Some(snapshot), Some(path)) => println!(
                "damage: snapshot {} {path}: {}: {}",
                &snapshot[..8.min(snapshot.len())],
                p.object,
                p.problem
            ),
            _ => println!("damage: {}: {}", p.object, p.problem),
        }
    }
    if report.is_ok() {
        println!("no damage found");
    } else {
        println!("{} problems found", report.problems.len());
    }
    Ok(())
}

/// `forget`: builds the policy from the flags, applies it and prints each decision.
async fn forget(cli: &Cli, location: &str) -> Result<()> {
    let Command::Forget {
        keep_last,
        keep_hourly,
        keep_daily,
        keep_weekly,
        keep_monthly,
        keep_yearly,
        keep_within,
        keep_within_hourly,
        keep_within_daily,
        keep_within_weekly,
        keep_within_monthly,
        keep_within_yearly,
        keep_tag,
        host,
        tag,
        path,
        group_by,
        dry_run,
    } = &cli.command
    else {
        bail!("not a forget command");
    };
    let mut policy = RetentionPolicy::builder()
        .with_keep_last(*keep_last)
        .with_keep_hourly(*keep_hourly)
        .with_keep_daily(*keep_daily)
        .with_keep_weekly(*keep_weekly)
        .with_keep_monthly(*keep_monthly)
        .with_keep_yearly(*keep_yearly)
        .with_group_by(*group_by);
    if let Some(d) = keep_within {
        policy = policy.with_keep_within(*d);
    }
    type Setter = fn(RetentionPolicyBuilder, RetentionDuration) -> RetentionPolicyBuilder;
    let within: [(&Option<RetentionDuration>, Setter); 5] = [
        (
            keep_within_hourly,
            RetentionPolicyBuilder::with_keep_within_hourly,
        ),
        (
            keep_within_daily,
            RetentionPolicyBuilder::with_keep_within_daily,
        ),
        (
            keep_within_weekly,
            RetentionPolicyBuilder::with_keep_within_weekly,
        ),
        (
            keep_within_monthly,
            RetentionPolicyBuilder::with_keep_within_monthly,
        ),
        (
            keep_within_yearly,
            RetentionPolicyBuilder::with_keep_within_yearly,
        ),
    ];
    for (duration, set) in within {
        if let Some(d) = duration {
            policy = set(policy, *d);
        }
    }
    let policy = keep_tag.iter().fold(policy, |p, t| p.with_keep_tag(t));
    let policy = host.iter().fold(policy, |p, h| p.with_only_host(h));
    let policy = tag.iter().fold(policy, |p, t| p.with_only_tag(t));
    let policy = path.iter().fold(policy, |p, path| p.with_only_path(path));
    let policy = policy.build()?;
    let repo = open(cli, location).await?;
    let lock = if *dry_run {
        None
    } else {
        Some(take_lock(&repo, LockKind::Shared, "forget").await?)
    };
    let groups = repo.forget(&policy, *dry_run).await;
    release(lock).await;
    let groups = groups?;
    if cli.json {
        println!("{}", json!({"dry_run": dry_run, "groups": groups}));
        return Ok(());
    }
    let mut removed = 0;
    for group in &groups {
        let k = &group.key;
        println!(
            "group: host {} paths {} tags {}",
            k.host.as_deref().unwrap_or("*"),
            k.paths.as_ref().map_or("*".into(), |p| p.join(" ")),
            k.tags.as_ref().map_or("*".into(), |t| t.join(",")),
        );
        for d in &group.decisions {
            println!(
                "  {} {} {}  {}",
                if d.keep { "keep  " } else { "remove" },
                &d.id[..8.min(d.id.len())],
                time_of(d.time_ns),
                d.reasons.join("; ")
            );
        }
        removed += group.removed().count();
    }
    if *dry_run {
        println!("dry run: would remove {removed} snapshots (data stays until a prune)");
    } else {
        println!("removed {removed} snapshots (data stays until a prune)");
    }
    Ok(())
}

/// The workspace's source tree if this binary runs from a checkout, else `None`.
fn default_demo_dir() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join("crates").is_dir().then_some(root)
}

/// Writes a small varied tree (text, binary, duplicates, symlink, hard link, empty file).
fn generate_sample(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir.join("docs/nested"))?;
    for i in 0..200u32 {
        let text = format!("line {i} of a generated sample file\n").repeat(50 + i as usize);
        std::fs::write(dir.join(format!("docs/file{i:03}.txt")), text)?;
    }
    let bin: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("docs/nested/blob.bin"), &bin)?;
    std::fs::write(dir.join("docs/nested/copy.bin"), &bin)?;
    std::fs::write(dir.join("empty"), b"")?;
    std::os::unix::fs::symlink("docs/file000.txt", dir.join("link"))?;
    std::fs::hard_link(dir.join("docs/file001.txt"), dir.join("hardlink.txt"))?;
    Ok(())
}

async fn demo(dir: Option<PathBuf>, json_out: bool) -> Result<()> {
    let work = tempfile::tempdir().context("creating a temporary directory")?;
    let source = match dir.or_else(default_demo_dir) {
        Some(d) => d
            .canonicalize()
            .with_context(|| format!("{}", d.display()))?,
        None => {
            let d = work.path().join("sample");
            generate_sample(&d)?;
            d
        }
    };
    let repo_dir = work.path().join("repository");
    let target = work.path().join("restored");
    let say = |s: String| {
        if !json_out {
            println!("{s}");
        }
    };
    say(format!("demo: backing up {}", source.display()));
    say(format!(
        "demo: repository {} (temporary, deleted at the end)",
        repo_dir.display()
    ));
    let location = repo_dir.to_string_lossy().into_owned();
    let store = StoreOptions::new(&location).with_create(true).build()?;
    let key = KeySource::passphrase("demo passphrase (use BACKUP_PASSWORD or --key-file for real)");
    let repo = Arc::new(Repository::init(store, &location, &key, InitOptions::new()).await?);
    // The checkout's build output and git objects are not source.
    let options = || {
        BackupOptions::builder([&source])
            .with_exclude("target")
            .with_exclude(".git")
            .with_exclude("target-*")
            .with_auto_parent(true)
    };

    let (id, first) =
        backup_core::backup(repo.clone(), options().build()?, Bar::new(json_out)).await?;
    if !json_out {
        print_backup(false, &id, &first);
    }
    let (id2, second) =
        backup_core::backup(repo.clone(), options().build()?, Bar::new(json_out)).await?;
    if !json_out {
        say(
            "demo: second backup (nothing changed, parent snapshot lets files skip reading):"
                .into(),
        );
        print_backup(false, &id2, &second);
    }

    let started = Instant::now();
    let restored = backup_core::restore(
        repo.clone(),
        &id,
        RestoreOptions::builder(&target).build()?,
        Bar::new(json_out),
    )
    .await?;
    let restore_secs = started.elapsed().as_secs_f64();
    let name = source.file_name().context("source has no name")?;
    let filter = options().build()?;
    let diffs =
        backup_core::compare_trees_ignoring(&source, &target.join(name), |p| filter.is_excluded(p))
            .context("comparing the restored tree")?;
    let stats = ops::stats(&repo, &[]).await?;
    if json_out {
        println!(
            "{}",
            json!({
                "source": source, "snapshot": snapshot_json(&id, &first),
                "second_snapshot": snapshot_json(&id2, &second), "restore": restored,
                "restore_seconds": restore_secs, "identical": diffs.is_empty(),
                "differences": diffs, "stats": stats,
            })
        );
    } else {
        say(format!(
            "demo: restored {} files ({}) into {} in {restore_secs:.2} s",
            restored.files_restored,
            human_bytes(restored.bytes_written),
            target.display()
        ));
        say(format!(
            "demo: repository holds {} for {} logical over 2 snapshots (deduplication ratio {:.2})",
            human_bytes(stats.repository_bytes),
            human_bytes(stats.logical_bytes),
            stats.dedup_ratio
        ));
        if diffs.is_empty() {
            say("demo: verified: the restored tree is identical (content, modes, owners, mtimes, links, xattrs)".into());
        }
    }
    if !diffs.is_empty() {
        bail!("restored tree differs from the source: {diffs:#?}");
    }
    Ok(())
}

/// `repair index` and `repair snapshots`.
async fn repair(cli: &Cli, location: &str, what: &RepairCommand) -> Result<()> {
    use backup_core::repair::{RepairOptions, repair_index, repair_snapshots};
    let repo = open(cli, location).await?;
    match what {
        RepairCommand::FromMirror { .. }
        | RepairCommand::FromSource { .. }
        | RepairCommand::Config { .. } => {}
        RepairCommand::Index { dry_run } => {
            let options = RepairOptions::builder().with_dry_run(*dry_run).build()?;
            let report = repair_index(repo, &options).await?;
            if cli.json {
                println!("{}", serde_json::to_string(&report)?);
                return Ok(());
            }
            let would = if report.dry_run { "would " } else { "" };
            println!(
                "{} packs in the store; the new index {would}list {} packs ({} blobs)",
                report.packs, report.packs_indexed, report.blobs
            );
            for pack in &report.packs_recovered {
                println!("recovered: {pack} (in no readable index object)");
            }
            for d in &report.damaged {
                println!("damaged: {}: {}", d.object, d.problem);
            }
            for pack in &report.kept_from_old_index {
                println!("kept: {pack}: its entries from the old index (header damaged)");
            }
            for pack in &report.missing_packs {
                println!("missing: {pack}: listed by the old index, not in the store");
            }
            println!(
                "{} index objects written, {} old ones {would}removed",
                report.written.len(),
                report.removed.len()
            );
        }
        RepairCommand::Snapshots { read_data, dry_run } => {
            let options = RepairOptions::builder()
                .with_dry_run(*dry_run)
                .with_read_data(*read_data)
                .build()?;
            let report = repair_snapshots(repo, &options).await?;
            if cli.json {
                println!("{}", serde_json::to_string(&report)?);
                return Ok(());
            }
            for r in &report.repaired {
                let short = &r.snapshot[..8.min(r.snapshot.len())];
                for d in &r.dropped {
                    println!(
                        "snapshot {short} {}: dropped: {}: {}",
                        d.path, d.object, d.problem
                    );
                }
                match (&r.new_snapshot, r.removed) {
                    (_, true) if report.dry_run => {
                        println!("snapshot {short}: nothing readable, would be removed")
                    }
                    (_, true) => println!("snapshot {short}: nothing readable, removed"),
                    (Some(new), _) => println!("snapshot {short}: replaced by {}", &new[..8]),
                    (None, _) => println!("snapshot {short}: would be rewritten"),
                }
            }
            for d in &report.unreadable {
                println!("unreadable (left alone): {}: {}", d.object, d.problem);
            }
            println!(
                "{} snapshots checked, {} damaged",
                report.snapshots,
                report.repaired.len()
            );
        }
    }
    Ok(())
}

/// `repair config MIRROR`.
async fn heal_config(cli: &Cli, location: &str, what: &RepairCommand) -> Result<()> {
    let RepairCommand::Config {
        mirror,
        mirror_key_file,
        dry_run,
    } = what
    else {
        bail!("not a repair config command");
    };
    let key = other_key_source(cli, mirror_key_file.as_deref(), MIRROR_PASSWORD_ENV)?;
    let mirror = open_with(cli, mirror, &key).await?;
    let store = StoreOptions::new(location)
        .with_timeout(Duration::from_secs(cli.timeout))
        .build()?;
    let key = key_source(cli)?;
    let report = backup_core::heal::heal_config(store, location, &key, &mirror, *dry_run).await?;
    if cli.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    match &report.damage {
        None => println!("config: opens; nothing to do"),
        Some(damage) => {
            let would = if report.dry_run { "would be " } else { "" };
            println!(
                "config: {damage}; {would}rebuilt from the mirror's parameters (vouched for by {})",
                report.vouched_by
            );
        }
    }
    Ok(())
}

/// `repair from-mirror` and `repair from-source`: exit code 0 when everything is healed, 3
/// when something is lost (in both repositories, and not in the source files).
async fn heal_from_mirror(cli: &Cli, location: &str, what: &RepairCommand) -> Result<i32> {
    use backup_core::heal::{HealOptions, SourceFiles, heal, heal_from_source};
    let sources = |paths: &[PathBuf], recorded: bool| match (paths, recorded) {
        ([], false) => None,
        ([], true) => Some(SourceFiles::Recorded),
        (paths, _) => Some(SourceFiles::Paths(paths.to_vec())),
    };
    let report = match what {
        RepairCommand::FromMirror {
            mirror,
            mirror_key_file,
            skip_missing_snapshots,
            source,
            source_recorded,
            dry_run,
        } => {
            let repo = open(cli, location).await?;
            let key = other_key_source(cli, mirror_key_file.as_deref(), MIRROR_PASSWORD_ENV)?;
            let mirror = open_with(cli, mirror, &key).await?;
            let mut options = HealOptions::builder()
                .with_dry_run(*dry_run)
                .with_missing_snapshots(!skip_missing_snapshots);
            if let Some(files) = sources(source, *source_recorded) {
                options = options.with_source_files(files);
            }
            heal(repo, mirror, &options.build()?).await?
        }
        RepairCommand::FromSource { paths, dry_run } => {
            let repo = open(cli, location).await?;
            let files = sources(paths, true).unwrap_or(SourceFiles::Recorded);
            let options = HealOptions::builder()
                .with_dry_run(*dry_run)
                .with_source_files(files)
                .build()?;
            heal_from_source(repo, &options).await?
        }
        _ => return Ok(2),
    };
    if cli.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let would = if report.dry_run { "would be " } else { "" };
        for name in &report.snapshots_restored {
            println!("{name}: {would}restored from the mirror");
        }
        for name in &report.snapshots_lost {
            println!("{name}: damaged, and no mirror holds it intact");
        }
        if report.index_rebuilt {
            println!("index: {would}rebuilt from the pack headers");
        }
        for pack in &report.damaged_packs {
            println!("{pack}: damaged, {would}replaced and deleted");
        }
        for lost in &report.lost {
            println!(
                "LOST: snapshot {} {}: {}: {}",
                &lost.snapshot[..8.min(lost.snapshot.len())],
                lost.path,
                lost.object,
                lost.problem
            );
        }
        println!(
            "{} blobs {would}stored again from the mirror, {} from sound frames here, {} from {} source files, in {} packs",
            report.blobs_from_mirror,
            report.blobs_salvaged,
            report.blobs_from_source,
            report.source_files_read,
            report.packs_written
        );
    }
    Ok(if report.is_healed() { 0 } else { 3 })
}
