//! Scheduled backups, forgets and scrubs from a policy file, with manual runs on request and a
//! status file a health check can read.
//!
//! A policy (TOML) names jobs, each with a schedule and steps run in order:
//!
//! ```
//! use std::sync::Arc;
//! use backup_core::schedule::{ManualClock, SchedulePolicy, Scheduler, StaticRepository};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = SchedulePolicy::parse("policy.toml".as_ref(), r#"
//!     [[job]]
//!     name = "hourly"
//!     at = "hourly :15"
//!     [[job.step]]
//!     kind = "backup"
//!     paths = ["/srv/www"]
//!     tag = ["hourly"]
//!     [[job.step]]
//!     kind = "forget"
//!     tag = ["hourly"]
//!     keep_hourly = 48
//!
//!     [[job]]
//!     name = "scrub"
//!     at = "weekly sun 04:00"
//!     [[job.step]]
//!     kind = "check"
//!     read_data_subset = "25%"    # a different quarter of the data each run
//! "#)?;
//! let state = tempfile::tempdir()?;
//! let key = backup_core::KeySource::passphrase("correct horse battery staple");
//! let store = Arc::new(object_store::memory::InMemory::new());
//! let options = backup_core::InitOptions::new();
//! let repo = Arc::new(backup_core::Repository::init(store, "memory", &key, options).await?);
//! // 2026-12-06 10:20 UTC; the clock is injected so tests can move it.
//! let clock = Arc::new(ManualClock::new(1_796_552_400));
//! let mut scheduler = Scheduler::builder(policy, state.path(), Arc::new(StaticRepository::new(repo)))
//!     .with_clock(clock.clone())
//!     .build()?;
//! assert!(scheduler.run_due().await?.is_empty()); // a new job waits for its first slot
//! let status = scheduler.status();
//! assert_eq!(status.jobs["hourly"].next_run, Some(1_796_555_700)); // 11:15
//! # Ok(())
//! # }
//! ```
//!
//! # Schedules
//!
//! All times are UTC (a server's backups should not shift with daylight saving time):
//! `hourly` or `hourly :MM`; `daily HH:MM`; `weekly DAY HH:MM` (`mon` .. `sun`); `monthly D
//! HH:MM` (day 29-31 falls on the month's last day in shorter months); `every 15m` / `every
//! 2h` / `every 1d` (slots at multiples of the interval since 1970-01-01 00:00 UTC).
//!
//! # Runs, catch-up and manual runs
//!
//! Each job remembers the slot it last ran for (`last_slot`). A job is due when its next slot
//! after that has come. However many slots passed while the host was down or the job was
//! slow, a due job runs **once**, and records the latest slot that has come as its last: no
//! burst of missed runs after downtime. A job seen for the first time waits for its next slot.
//! Jobs run one at a time, in the order their slots came. A failed step ends its job's run
//! (later steps would act on a backup that did not happen), and the failure is recorded; the
//! job runs again at its next slot or, with `retry = "15m"` in its `[[job]]`, that long after
//! the failure, again and again until a run succeeds or the next slot comes. A run killed part-way (the scheduler was stopped or
//! crashed) has recorded no slot, so the job is due again at once when the scheduler starts,
//! and its status says it was interrupted; every step is safe to rerun (a backup whose
//! snapshot was not written leaves only data the next backup reuses).
//!
//! Manual runs: [`request_run`] (the tool's `backup schedule --run-now JOB`) drops a request
//! file in the state directory; the scheduler runs the job at its next poll (within seconds),
//! beside the schedule, without changing the job's slots. A request left while no scheduler
//! runs is served when one starts.
//!
//! # Steps
//!
//! A step is a [`Step`] registered under its kind: `backup`, `forget`, `check` and `prune`
//! are built in ([`BackupStep`], [`ForgetStep`], [`CheckStep`], [`PruneStep`]); more kinds are
//! added with [`SchedulerBuilder::with_step`]. A policy naming a kind that is
//! not registered is refused when the scheduler is built, as are parameters a step does not
//! know. Parameters are named as the tool's flags: backup `paths`, `exclude`,
//! `exclude_if_present`, `tag`, `host`, `one_file_system`; forget `keep_last`, `keep_hourly`,
//! `keep_daily`, `keep_weekly`, `keep_monthly`, `keep_yearly`, `keep_within` and
//! `keep_within_hourly` .. `keep_within_yearly` (durations such as `"14d"`), `keep_tag`,
//! `host`, `tag`, `path` (which snapshots to consider), `group_by` (`"host,paths"`); check
//! `read_data` (bool) or `read_data_subset` (`"1/7"`, `"15%"`, `"2G"`: a percentage or size
//! takes part `run mod N + 1`, where `run` counts the job's runs, so N scheduled runs read
//! everything: a rotating scrub), and `heal_from` (a mirror's location) with
//! `heal_from_key_file`, to heal what the scrub finds from a mirror (see [`CheckStep`]).
//!
//! # The status file
//!
//! `status.json` in the state directory, replaced atomically (written to a temporary file,
//! synced, renamed) after every change, so a reader never sees half a file:
//!
//! ```json
//! {"version": 1, "updated": "2026-12-06T10:35:02Z", "jobs": {"hourly": {
//!   "last_slot": "2026-12-06T10:15:00Z", "last_started": "2026-12-06T10:15:00Z",
//!   "last_finished": "2026-12-06T10:15:09Z", "last_success": "2026-12-06T10:15:09Z",
//!   "last_error": null, "last_check": {"time": "...", "ok": true, "problems": 0, "part": "3/7"},
//!   "next_run": "2026-12-06T11:15:00Z", "running_since": null, "retry_at": null,
//!   "runs": 12, "failures": 0,
//!   "last_summary": ["backup: snapshot 1a2b3c4d ...", "forget: removed 1 snapshots"]}}}
//! ```
//!
//! Times are RFC 3339 UTC. `last_error` is `{time, message}` of the latest failed run and is
//! cleared by the next success; `last_check` is the result of the latest `check` step. A
//! health check alerts when `last_success` is older than it should be, or `last_error` or a
//! failed `last_check` is set. The state directory is locked while a scheduler runs, so two
//! cannot act on one state.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::check::{CheckOptions, DataSubset};
use crate::error::{Error, Result};
use crate::retention::{
    GroupBy, RetentionDuration, RetentionPolicy, RetentionPolicyBuilder, civil_from_days,
    days_from_civil,
};
use crate::{BackupOptions, KeySource, NoProgress, Repository, StoreOptions};

/// Version of the status file's layout.
pub const STATUS_VERSION: u32 = 1;

/// The status file's name in the state directory.
pub const STATUS_FILE: &str = "status.json";

/// The directory of manual run requests in the state directory.
const REQUESTS: &str = "requests";

const DAY: i64 = 86_400;

// ---------------------------------------------------------------------------------------------
// Schedules

/// When a job runs (UTC); parsed from the policy's `at` (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Calendar {
    /// Every `period` seconds, at `phase` seconds past each multiple of it since the epoch
    /// (`hourly`, `daily`, `weekly` and `every` are this).
    Periodic {
        /// Seconds between slots.
        period: i64,
        /// Offset of the slots from multiples of the period.
        phase: i64,
    },
    /// Once a month, on `day` (clamped to the month's last day) at `seconds` past midnight.
    Monthly {
        /// Day of the month, 1 to 31.
        day: i64,
        /// Seconds past midnight.
        seconds: i64,
    },
}

impl Calendar {
    /// The latest slot at or before `t` (Unix seconds).
    pub fn latest_at_or_before(&self, t: i64) -> i64 {
        match *self {
            Calendar::Periodic { period, phase } => t - (t - phase).rem_euclid(period),
            Calendar::Monthly { .. } => {
                let (y, m, _) = civil_from_days(t.div_euclid(DAY));
                let this = self.month_slot(y, m);
                if this <= t {
                    this
                } else {
                    let (y, m) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
                    self.month_slot(y, m)
                }
            }
        }
    }

    /// The first slot after `t`.
    pub fn next_after(&self, t: i64) -> i64 {
        match *self {
            Calendar::Periodic { period, .. } => self.latest_at_or_before(t) + period,
            Calendar::Monthly { .. } => {
                let (y, m, _) = civil_from_days(t.div_euclid(DAY));
                let this = self.month_slot(y, m);
                if this > t {
                    this
                } else {
                    let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                    self.month_slot(y, m)
                }
            }
        }
    }

    /// This calendar's slot in month `m` of year `y` (monthly calendars only).
    fn month_slot(&self, y: i64, m: i64) -> i64 {
        let Calendar::Monthly { day, seconds } = *self else {
            return 0;
        };
        let first = days_from_civil(y, m, 1);
        let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
        let length = days_from_civil(ny, nm, 1) - first;
        (first + day.min(length) - 1) * DAY + seconds
    }
}

impl std::str::FromStr for Calendar {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let bad = || {
            format!(
                "schedule {text:?}: expected `hourly [:MM]`, `daily HH:MM`, `weekly DAY HH:MM`, `monthly D HH:MM` or `every 15m|2h|1d`"
            )
        };
        let time = |word: &str| -> std::result::Result<i64, String> {
            let (h, m) = word.split_once(':').ok_or_else(bad)?;
            let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
            if !(0..24).contains(&h) || !(0..60).contains(&m) || word.len() != 5 {
                return Err(bad());
            }
            Ok(h * 3600 + m * 60)
        };
        let periodic = |period, phase| Calendar::Periodic { period, phase };
        match words.as_slice() {
            ["hourly"] => Ok(periodic(3600, 0)),
            ["hourly", minute] => {
                let m: i64 = minute
                    .strip_prefix(':')
                    .filter(|m| m.len() == 2)
                    .and_then(|m| m.parse().ok())
                    .filter(|m| (0..60).contains(m))
                    .ok_or_else(bad)?;
                Ok(periodic(3600, m * 60))
            }
            ["daily", at] => Ok(periodic(DAY, time(at)?)),
            ["weekly", day, at] => {
                const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
                let index = DAYS
                    .iter()
                    .position(|d| d.eq_ignore_ascii_case(day))
                    .ok_or_else(bad)? as i64;
                // 1970-01-01 was a Thursday (index 3).
                Ok(periodic(
                    7 * DAY,
                    (index - 3).rem_euclid(7) * DAY + time(at)?,
                ))
            }
            ["monthly", day, at] => {
                let day: i64 = day
                    .parse()
                    .ok()
                    .filter(|d| (1..=31).contains(d))
                    .ok_or_else(bad)?;
                Ok(Calendar::Monthly {
                    day,
                    seconds: time(at)?,
                })
            }
            ["every", interval] => {
                let period = humantime::parse_duration(interval)
                    .map_err(|_| bad())?
                    .as_secs();
                if !(60..=366 * DAY as u64).contains(&period) {
                    return Err(format!(
                        "schedule {text:?}: the interval must be from 1 minute to a year"
                    ));
                }
                Ok(periodic(period as i64, 0))
            }
            _ => Err(bad()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Policies

/// A step's parameters from the policy, parsed by the step that runs it.
#[derive(Debug, Clone)]
pub struct StepParams {
    table: toml::Table,
    /// `job NAME step N (KIND)`, for messages.
    context: String,
    policy: PathBuf,
}

impl StepParams {
    /// Deserializes the parameters into `T` (use `#[serde(deny_unknown_fields)]` so a
    /// misspelled parameter is an error); errors name the policy file, job and step.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        toml::Value::Table(self.table.clone())
            .try_into()
            .map_err(|e| self.error(e.to_string()))
    }

    /// An [`Error::Schedule`] about this step.
    pub fn error(&self, reason: impl std::fmt::Display) -> Error {
        Error::Schedule {
            path: self.policy.clone(),
            reason: format!("{}: {reason}", self.context),
        }
    }
}

/// One step of a job: its kind and parameters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobStep {
    /// The step's kind (`backup`, `forget`, `check`, ...).
    pub kind: String,
    /// Its parameters.
    pub params: StepParams,
}

/// A scheduled job.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Job {
    /// The job's name (letters, digits, `-`, `_`).
    pub name: String,
    /// When it runs.
    pub at: Calendar,
    /// What it does, in order.
    pub steps: Vec<JobStep>,
    /// After a failed scheduled run, run again this many seconds later (until a run
    /// succeeds or the next slot comes); `retry = "15m"` in the policy.
    pub retry: Option<i64>,
}

/// A parsed policy file; see the module docs.
#[derive(Debug, Clone)]
pub struct SchedulePolicy {
    path: PathBuf,
    jobs: Vec<Job>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    job: Vec<RawJob>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: String,
    at: String,
    retry: Option<String>,
    #[serde(default)]
    step: Vec<toml::Table>,
}

impl SchedulePolicy {
    /// Reads and parses a policy file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(path, &text)
    }

    /// Parses a policy; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let error = |reason: String| Error::Schedule {
            path: path.to_path_buf(),
            reason,
        };
        let raw: RawPolicy = toml::from_str(text).map_err(|e| error(e.to_string()))?;
        if raw.job.is_empty() {
            return Err(error("no [[job]] in the policy".into()));
        }
        let mut names = HashSet::new();
        let mut jobs = Vec::new();
        for job in raw.job {
            let valid = !job.name.is_empty()
                && job.name.len() <= 64
                && job
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(error(format!(
                    "job name {:?}: use 1 to 64 letters, digits, '-' or '_'",
                    job.name
                )));
            }
            if !names.insert(job.name.clone()) {
                return Err(error(format!("job {} is defined twice", job.name)));
            }
            let at = job
                .at
                .parse()
                .map_err(|e| error(format!("job {}: {e}", job.name)))?;
            let retry = match &job.retry {
                None => None,
                Some(text) => {
                    let seconds = humantime::parse_duration(text)
                        .ok()
                        .map(|d| d.as_secs())
                        .filter(|s| (60..=DAY as u64).contains(s))
                        .ok_or_else(|| {
                            error(format!(
                                "job {}: retry {text:?}: give a duration from 1m to 1d",
                                job.name
                            ))
                        })?;
                    Some(seconds as i64)
                }
            };
            if job.step.is_empty() {
                return Err(error(format!("job {} has no [[job.step]]", job.name)));
            }
            let mut steps = Vec::new();
            for (n, mut table) in job.step.into_iter().enumerate() {
                let context = format!("job {} step {}", job.name, n + 1);
                let kind = match table.remove("kind") {
                    Some(toml::Value::String(kind)) => kind,
                    _ => return Err(error(format!("{context}: no `kind = \"...\"`"))),
                };
                steps.push(JobStep {
                    params: StepParams {
                        table,
                        context: format!("{context} ({kind})"),
                        policy: path.to_path_buf(),
                    },
                    kind,
                });
            }
            jobs.push(Job {
                name: job.name,
                at,
                steps,
                retry,
            });
        }
        Ok(SchedulePolicy {
            path: path.to_path_buf(),
            jobs,
        })
    }

    /// The jobs, in the policy's order.
    pub fn jobs(&self) -> &[Job] {
        &self.jobs
    }

    fn job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.name == name)
    }
}

// ---------------------------------------------------------------------------------------------
// Steps

/// What a step reports.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StepOutcome {
    /// One line for the status file.
    pub summary: String,
    /// Set by a step that checked the repository.
    pub check: Option<CheckStatus>,
}

impl StepOutcome {
    /// An outcome with this summary.
    pub fn new(summary: impl Into<String>) -> Self {
        StepOutcome {
            summary: summary.into(),
            check: None,
        }
    }
}

/// The run a step is part of.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StepContext {
    /// The job's name.
    pub job: String,
    /// When the run started (Unix seconds).
    pub started: i64,
    /// How many runs of the job came before this one (rotates scrubs).
    pub run: u64,
    /// Whether the run was requested by hand.
    pub manual: bool,
}

/// A kind of step a policy can name. Implement it to add kinds (prune, notifications, ...)
/// and register it with [`SchedulerBuilder::with_step`].
#[async_trait]
pub trait Step: Send + Sync {
    /// Checks the parameters when the policy is loaded, so a bad policy fails at start-up,
    /// not at 3 a.m.
    fn validate(&self, params: &StepParams) -> Result<()>;

    /// Runs the step on the repository. An error ends the job's run and is recorded.
    async fn run(
        &self,
        repo: Arc<Repository>,
        params: &StepParams,
        context: &StepContext,
    ) -> Result<StepOutcome>;
}

/// `kind = "backup"`: backs up `paths` (with the latest snapshot of the same host and paths
/// as parent).
#[derive(Debug, Default)]
pub struct BackupStep;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupParams {
    paths: Vec<PathBuf>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    exclude_if_present: Vec<String>,
    #[serde(default)]
    tag: Vec<String>,
    host: Option<String>,
    #[serde(default)]
    one_file_system: bool,
}

impl BackupStep {
    fn options(params: &StepParams) -> Result<BackupOptions> {
        let p: BackupParams = params.parse()?;
        let mut options = BackupOptions::builder(p.paths)
            .with_auto_parent(true)
            .with_one_file_system(p.one_file_system);
        for e in p.exclude {
            options = options.with_exclude(e);
        }
        for m in p.exclude_if_present {
            options = options.with_exclude_if_present(m);
        }
        for t in p.tag {
            options = options.with_tag(t);
        }
        if let Some(h) = p.host {
            options = options.with_host(h);
        }
        options.build().map_err(|e| params.error(crate::report(&e)))
    }
}

#[async_trait]
impl Step for BackupStep {
    fn validate(&self, params: &StepParams) -> Result<()> {
        Self::options(params).map(drop)
    }

    async fn run(
        &self,
        repo: Arc<Repository>,
        params: &StepParams,
        _: &StepContext,
    ) -> Result<StepOutcome> {
        let (id, snapshot) =
            crate::backup(repo, Self::options(params)?, Arc::new(NoProgress)).await?;
        let s = &snapshot.summary;
        let mut summary = format!(
            "backup: snapshot {id}: {} files, {} bytes, {} new chunks",
            s.files, s.bytes, s.chunks_new
        );
        if !snapshot.skipped.is_empty() {
            summary.push_str(&format!(
                "; {} unreadable files skipped",
                snapshot.skipped.len()
            ));
        }
        Ok(StepOutcome::new(summary))
    }
}

/// `kind = "forget"`: applies a retention policy (deletes snapshot objects only).
#[derive(Debug, Default)]
pub struct ForgetStep;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForgetParams {
    #[serde(default)]
    keep_last: u32,
    #[serde(default)]
    keep_hourly: u32,
    #[serde(default)]
    keep_daily: u32,
    #[serde(default)]
    keep_weekly: u32,
    #[serde(default)]
    keep_monthly: u32,
    #[serde(default)]
    keep_yearly: u32,
    keep_within: Option<String>,
    keep_within_hourly: Option<String>,
    keep_within_daily: Option<String>,
    keep_within_weekly: Option<String>,
    keep_within_monthly: Option<String>,
    keep_within_yearly: Option<String>,
    #[serde(default)]
    keep_tag: Vec<String>,
    #[serde(default)]
    host: Vec<String>,
    #[serde(default)]
    tag: Vec<String>,
    #[serde(default)]
    path: Vec<String>,
    group_by: Option<String>,
}

impl ForgetStep {
    fn policy(params: &StepParams) -> Result<RetentionPolicy> {
        let p: ForgetParams = params.parse()?;
        let mut policy = RetentionPolicy::builder()
            .with_keep_last(p.keep_last)
            .with_keep_hourly(p.keep_hourly)
            .with_keep_daily(p.keep_daily)
            .with_keep_weekly(p.keep_weekly)
            .with_keep_monthly(p.keep_monthly)
            .with_keep_yearly(p.keep_yearly);
        type Setter = fn(RetentionPolicyBuilder, RetentionDuration) -> RetentionPolicyBuilder;
        let within: [(&Option<String>, Setter); 6] = [
            (&p.keep_within, RetentionPolicyBuilder::with_keep_within),
            (
                &p.keep_within_hourly,
                RetentionPolicyBuilder::with_keep_within_hourly,
            ),
            (
                &p.keep_within_daily,
                RetentionPolicyBuilder::with_keep_within_daily,
            ),
            (
                &p.keep_within_weekly,
                RetentionPolicyBuilder::with_keep_within_weekly,
            ),
            (
                &p.keep_within_monthly,
                RetentionPolicyBuilder::with_keep_within_monthly,
            ),
            (
                &p.keep_within_yearly,
                RetentionPolicyBuilder::with_keep_within_yearly,
            ),
        ];
        for (text, set) in within {
            if let Some(text) = text {
                let duration = text.parse().map_err(|e| params.error(e))?;
                policy = set(policy, duration);
            }
        }
        if let Some(group_by) = &p.group_by {
            let group_by: GroupBy = group_by.parse().map_err(|e| params.error(e))?;
            policy = policy.with_group_by(group_by);
        }
        let policy = p.keep_tag.iter().fold(policy, |b, t| b.with_keep_tag(t));
        let policy = p.host.iter().fold(policy, |b, h| b.with_only_host(h));
        let policy = p.tag.iter().fold(policy, |b, t| b.with_only_tag(t));
        let policy = p.path.iter().fold(policy, |b, path| b.with_only_path(path));
        policy.build().map_err(|e| params.error(crate::report(&e)))
    }
}

#[async_trait]
impl Step for ForgetStep {
    fn validate(&self, params: &StepParams) -> Result<()> {
        Self::policy(params).map(drop)
    }

    async fn run(
        &self,
        repo: Arc<Repository>,
        params: &StepParams,
        _: &StepContext,
    ) -> Result<StepOutcome> {
        let groups = repo.forget(&Self::policy(params)?, false).await?;
        let removed: usize = groups.iter().map(|g| g.removed().count()).sum();
        let kept: usize = groups.iter().map(|g| g.kept().count()).sum();
        Ok(StepOutcome::new(format!(
            "forget: removed {removed} snapshots, kept {kept}"
        )))
    }
}

/// Runs the future `work` makes on a blocking thread of its own, driven by the runtime's
/// handle. `check`'s and `prune`'s futures are Send, but the compiler cannot prove it through
/// [`Step::run`]'s boxed future (higher-ranked lifetimes in their stream closures).
async fn on_blocking_thread<T, F, Fut>(what: &str, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>>,
{
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(work()))
        .await
        .map_err(|e| Error::Worker(format!("{what}: {e}")))?
}

/// `kind = "prune"`: deletes the data no snapshot uses any more (after a `forget` step), under
/// the repository's exclusive lock; `max_unused` (`"5%"`, the default, `"1G"` or
/// `"unlimited"`) and `max_repack_size` (`"2G"`) as the tool's flags.
#[derive(Debug, Default)]
pub struct PruneStep;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PruneParams {
    max_unused: Option<String>,
    max_repack_size: Option<String>,
}

impl PruneStep {
    fn options(params: &StepParams) -> Result<crate::prune::PruneOptions> {
        let p: PruneParams = params.parse()?;
        let mut options = crate::prune::PruneOptions::builder();
        if let Some(max) = &p.max_unused {
            let max = max
                .parse()
                .map_err(|e: Error| params.error(crate::report(&e)))?;
            options = options.with_max_unused(max);
        }
        if let Some(size) = &p.max_repack_size {
            let bytes = crate::prune::parse_size(size)
                .map_err(|e| params.error(format!("max_repack_size {size:?}: {e}")))?;
            options = options.with_max_repack_size(bytes);
        }
        options.build().map_err(|e| params.error(crate::report(&e)))
    }
}

#[async_trait]
impl Step for PruneStep {
    fn validate(&self, params: &StepParams) -> Result<()> {
        Self::options(params).map(drop)
    }

    async fn run(
        &self,
        repo: Arc<Repository>,
        params: &StepParams,
        _: &StepContext,
    ) -> Result<StepOutcome> {
        let options = Self::options(params)?;
        let report = on_blocking_thread("prune", move || async move {
            crate::prune::prune(repo, &options).await
        })
        .await?;
        Ok(StepOutcome::new(format!(
            "prune: {} packs deleted ({} bytes), {} repacked",
            report.packs_deleted, report.bytes_deleted, report.packs_repacked
        )))
    }
}

/// `kind = "check"`: checks the structure and, with `read_data` or `read_data_subset`, part
/// or all of the data (a scrub). Damage fails the job and is recorded in `last_check`.
///
/// With `heal_from = "<mirror location>"` (a repository made by `init --copy-params-from` and
/// filled by `copy`), a scrub that finds damage heals it from the mirror
/// ([`heal`](crate::heal::heal), under the repository's exclusive lock, verifying again only
/// the part of the data this run read), then checks that part again: the job succeeds when
/// nothing is left, and `last_check.heal` records what was found, healed and not. The mirror
/// is opened with the keyring file `heal_from_key_file`, else with the key given by
/// [`CheckStep::with_mirror_key`] (the tool's: `BACKUP_MIRROR_PASSWORD`, else the
/// repository's own key, as `repair from-mirror`).
#[derive(Debug, Default)]
pub struct CheckStep {
    mirror_key: Option<KeySource>,
}

impl CheckStep {
    /// Opens `heal_from` mirrors with `key` when a step names no `heal_from_key_file`.
    pub fn with_mirror_key(mut self, key: KeySource) -> Self {
        self.mirror_key = Some(key);
        self
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckParams {
    #[serde(default)]
    read_data: bool,
    read_data_subset: Option<String>,
    heal_from: Option<String>,
    heal_from_key_file: Option<PathBuf>,
}

/// A check step's options: what to check, and the mirror to heal from.
struct CheckPlan {
    check: CheckOptions,
    /// The data read, and the mirror's location and key file.
    heal: Option<(DataSubset, String, Option<PathBuf>)>,
}

impl CheckStep {
    fn options(&self, params: &StepParams, run: u64) -> Result<CheckPlan> {
        let p: CheckParams = params.parse()?;
        let mut options = CheckOptions::builder().with_run(run);
        let subset = match (p.read_data, p.read_data_subset) {
            (true, Some(_)) => {
                return Err(params.error("read_data and read_data_subset exclude each other"));
            }
            (true, None) => Some(DataSubset::All),
            (false, Some(subset)) => {
                Some(subset.parse::<DataSubset>().map_err(|e| params.error(e))?)
            }
            (false, None) => None,
        };
        if let Some(subset) = subset {
            options = options.with_read_data(subset);
        }
        let heal = match (p.heal_from, subset) {
            (None, _) => {
                if p.heal_from_key_file.is_some() {
                    return Err(params.error("heal_from_key_file without heal_from"));
                }
                None
            }
            (Some(_), None) => {
                return Err(params.error(
                    "heal_from heals what a scrub finds: give read_data or read_data_subset",
                ));
            }
            (Some(mirror), Some(subset)) => {
                if p.heal_from_key_file.is_none() && self.mirror_key.is_none() {
                    return Err(params.error(
                        "heal_from needs the mirror's key: give heal_from_key_file (the tool \
                         uses BACKUP_MIRROR_PASSWORD, else the repository's key)",
                    ));
                }
                Some((subset, mirror, p.heal_from_key_file))
            }
        };
        let check = options
            .build()
            .map_err(|e| params.error(crate::report(&e)))?;
        Ok(CheckPlan { check, heal })
    }

    /// Heals from the mirror what the check found; returns the heal's record and the check of
    /// the same part afterwards (none if the heal failed).
    async fn heal(
        &self,
        repo: Arc<Repository>,
        (subset, location, key_file): (DataSubset, String, Option<PathBuf>),
        check: CheckOptions,
        run: u64,
    ) -> (HealStatus, Option<crate::check::CheckReport>) {
        let mut status = HealStatus {
            mirror: location.clone(),
            ..HealStatus::default()
        };
        let file_key;
        let key = match (&key_file, &self.mirror_key) {
            (Some(path), _) => match KeySource::key_file(path) {
                Ok(key) => {
                    file_key = key;
                    &file_key
                }
                Err(e) => {
                    status.error = Some(crate::report(&e));
                    return (status, None);
                }
            },
            (None, Some(key)) => key,
            // Refused by `validate`.
            (None, None) => {
                status.error = Some("no key for the mirror".into());
                return (status, None);
            }
        };
        let mirror = match StoreOptions::new(&location).build() {
            Ok(store) => Repository::open(store, location.clone(), key).await,
            Err(e) => Err(e),
        };
        let mirror = match mirror {
            Ok(mirror) => Arc::new(mirror),
            Err(e) => {
                status.error = Some(format!("opening the mirror: {}", crate::report(&e)));
                return (status, None);
            }
        };
        let options = crate::heal::HealOptions::builder()
            .with_read_data(subset)
            .with_run(run)
            .build();
        let healed = on_blocking_thread("heal", move || async move {
            let report = crate::heal::heal(repo.clone(), mirror, &options?).await?;
            let after = crate::check::check(repo, &check).await?;
            Ok((report, after))
        })
        .await;
        match healed {
            Ok((report, after)) => {
                status.damaged_packs = report.damaged_packs;
                status.snapshots_restored = report.snapshots_restored;
                status.blobs_from_mirror = report.blobs_from_mirror;
                status.blobs_salvaged = report.blobs_salvaged;
                status.lost = report.snapshots_lost;
                status.lost.extend(report.lost.iter().map(|l| {
                    let snapshot = l.snapshot.get(..8).unwrap_or(&l.snapshot);
                    format!("snapshot {snapshot} {}: {}", l.path, l.object)
                }));
                status.remaining = after.problems.len();
                (status, Some(after))
            }
            Err(e) => {
                status.error = Some(crate::report(&e));
                (status, None)
            }
        }
    }
}

#[async_trait]
impl Step for CheckStep {
    fn validate(&self, params: &StepParams) -> Result<()> {
        self.options(params, 0).map(drop)
    }

    async fn run(
        &self,
        repo: Arc<Repository>,
        params: &StepParams,
        context: &StepContext,
    ) -> Result<StepOutcome> {
        let CheckPlan { check, heal } = self.options(params, context.run)?;
        let (checked, options) = (repo.clone(), check.clone());
        let report = on_blocking_thread("check", move || async move {
            crate::check::check(checked, &options).await
        })
        .await?;
        let mut summary = format!(
            "check: {} snapshots, {} packs, {} blobs verified",
            report.snapshots, report.packs, report.blobs_verified
        );
        if let Some(part) = &report.part {
            summary.push_str(&format!(" (data part {part})"));
        }
        if let Some(first) = report.problems.first() {
            summary.push_str(&format!(
                "; {} problems, first: {}: {}",
                report.problems.len(),
                first.object,
                first.problem
            ));
        }
        let mut ok = report.is_ok();
        let mut healed = None;
        if let Some(heal) = heal
            && !ok
        {
            let (status, after) = self.heal(repo, heal, check, context.run).await;
            ok = after.is_some_and(|after| after.is_ok());
            summary.push_str(&format!("; {}", status.describe()));
            healed = Some(status);
        }
        Ok(StepOutcome {
            summary,
            check: Some(CheckStatus {
                time: context.started,
                ok,
                problems: report.problems.len(),
                part: report.part.clone(),
                heal: healed,
            }),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Clock and repository

/// Where "now" comes from (Unix seconds); injected so tests can move time.
pub trait Clock: Send + Sync {
    /// The current time in seconds since the Unix epoch.
    fn now(&self) -> i64;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }
}

/// A clock that stays where it is set (for tests and examples).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock at `now` (Unix seconds).
    pub fn new(now: i64) -> Self {
        ManualClock(AtomicI64::new(now))
    }

    /// Moves the clock to `now`.
    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Opens the repository for each run (a fresh handle sees what other hosts wrote meanwhile).
#[async_trait]
pub trait RepositorySource: Send + Sync {
    /// Opens the repository.
    async fn open(&self) -> Result<Arc<Repository>>;
}

/// Opens a store location with a key, optionally append-only, for each run.
pub struct OpenRepository {
    store: StoreOptions,
    key: KeySource,
    append_only: bool,
}

impl std::fmt::Debug for OpenRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenRepository")
            .field("location", &self.store.location())
            .field("append_only", &self.append_only)
            .finish_non_exhaustive()
    }
}

impl OpenRepository {
    /// Opens `store` with `key`.
    pub fn new(store: StoreOptions, key: KeySource) -> Self {
        OpenRepository {
            store,
            key,
            append_only: false,
        }
    }

    /// Opens it with [`Repository::open_append_only`] (then a `forget` step fails).
    pub fn with_append_only(mut self, yes: bool) -> Self {
        self.append_only = yes;
        self
    }
}

#[async_trait]
impl RepositorySource for OpenRepository {
    async fn open(&self) -> Result<Arc<Repository>> {
        let location = self.store.location().to_string();
        let store = self.store.clone().build()?;
        let repo = if self.append_only {
            Repository::open_append_only(store, location, &self.key).await?
        } else {
            Repository::open(store, location, &self.key).await?
        };
        Ok(Arc::new(repo))
    }
}

/// Always the same open repository (for tests and examples).
#[derive(Debug)]
pub struct StaticRepository(Arc<Repository>);

impl StaticRepository {
    /// Hands out `repo` for every run.
    pub fn new(repo: Arc<Repository>) -> Self {
        StaticRepository(repo)
    }
}

#[async_trait]
impl RepositorySource for StaticRepository {
    async fn open(&self) -> Result<Arc<Repository>> {
        Ok(self.0.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Status

/// The result of a job's latest `check` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CheckStatus {
    /// When the run started.
    #[serde(with = "rfc3339")]
    pub time: i64,
    /// Whether no damage was found.
    pub ok: bool,
    /// How many problems were found.
    pub problems: usize,
    /// The part of the data read (`3/7`), if any.
    pub part: Option<String>,
    /// With `heal_from`, when damage was found: what the heal from the mirror did (then `ok`
    /// says whether the check of the same part passed afterwards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heal: Option<HealStatus>,
}

/// What a scrub's heal from a mirror did (a `check` step with `heal_from`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HealStatus {
    /// The mirror's location.
    pub mirror: String,
    /// Damaged or missing packs found again under the lock, replaced and deleted.
    pub damaged_packs: Vec<String>,
    /// Snapshot objects restored from the mirror.
    pub snapshots_restored: Vec<String>,
    /// Blobs stored again from the mirror.
    pub blobs_from_mirror: usize,
    /// Blobs of damaged packs stored again from their sound frames here.
    pub blobs_salvaged: usize,
    /// What the mirror lacks too: snapshot objects, and blobs by snapshot and path.
    pub lost: Vec<String>,
    /// Problems the check of the same part still found after the heal.
    pub remaining: usize,
    /// Why the heal could not run or failed (the mirror unreachable, the lock held, ...).
    pub error: Option<String>,
}

impl HealStatus {
    /// One line for the job's summary and failure message.
    pub fn describe(&self) -> String {
        if let Some(error) = &self.error {
            return format!("heal from {} failed: {error}", self.mirror);
        }
        format!(
            "healed from {}: {} damaged packs replaced, {} blobs from the mirror, {} salvaged, {} snapshots restored, {} lost, {} problems left",
            self.mirror,
            self.damaged_packs.len(),
            self.blobs_from_mirror,
            self.blobs_salvaged,
            self.snapshots_restored.len(),
            self.lost.len(),
            self.remaining
        )
    }
}

/// A failed run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunError {
    /// When it failed.
    #[serde(with = "rfc3339")]
    pub time: i64,
    /// What went wrong.
    pub message: String,
}

/// One job's state in the status file (times in Unix seconds, written as RFC 3339).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JobStatus {
    /// The scheduled slot the job last ran for.
    #[serde(with = "rfc3339_option", default)]
    pub last_slot: Option<i64>,
    /// When the latest run started.
    #[serde(with = "rfc3339_option", default)]
    pub last_started: Option<i64>,
    /// When the latest run ended.
    #[serde(with = "rfc3339_option", default)]
    pub last_finished: Option<i64>,
    /// When the latest successful run ended.
    #[serde(with = "rfc3339_option", default)]
    pub last_success: Option<i64>,
    /// The latest failure, cleared by the next success.
    #[serde(default)]
    pub last_error: Option<RunError>,
    /// The latest `check` step's result.
    #[serde(default)]
    pub last_check: Option<CheckStatus>,
    /// When the job runs next.
    #[serde(with = "rfc3339_option", default)]
    pub next_run: Option<i64>,
    /// Set while a run is in progress.
    #[serde(with = "rfc3339_option", default)]
    pub running_since: Option<i64>,
    /// When a failed run is retried (the job's `retry`), if before its next slot.
    #[serde(with = "rfc3339_option", default)]
    pub retry_at: Option<i64>,
    /// Runs so far (scheduled and manual).
    #[serde(default)]
    pub runs: u64,
    /// Failed runs so far.
    #[serde(default)]
    pub failures: u64,
    /// The steps' summaries of the latest run.
    #[serde(default)]
    pub last_summary: Vec<String>,
}

/// The status file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ScheduleStatus {
    /// [`STATUS_VERSION`].
    pub version: u32,
    /// When it was written.
    #[serde(with = "rfc3339_option", default)]
    pub updated: Option<i64>,
    /// Each job's state, by name.
    pub jobs: BTreeMap<String, JobStatus>,
}

impl ScheduleStatus {
    /// Reads a status file (as a health check does); a missing file is an empty status.
    pub fn read(path: &Path) -> Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let status: ScheduleStatus =
                    serde_json::from_slice(&bytes).map_err(|e| Error::Schedule {
                        path: path.to_path_buf(),
                        reason: format!("not a status file: {e}"),
                    })?;
                if status.version > STATUS_VERSION {
                    return Err(Error::Schedule {
                        path: path.to_path_buf(),
                        reason: format!(
                            "status version {} is newer than this build's {STATUS_VERSION}",
                            status.version
                        ),
                    });
                }
                Ok(status)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ScheduleStatus {
                version: STATUS_VERSION,
                ..Default::default()
            }),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Writes the status atomically: a temporary file beside it, synced, renamed over it, and
    /// the directory synced.
    fn write(&self, path: &Path) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let temp = dir.join(format!(".{STATUS_FILE}.{}", std::process::id()));
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Schedule {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let written = File::create(&temp)
            .and_then(|mut f| f.write_all(&json).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&temp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(Error::io(path, e));
        }
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))
    }
}

/// RFC 3339 (UTC, seconds) for Unix-second times.
mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn text(t: i64) -> String {
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
        humantime::format_rfc3339_seconds(time).to_string()
    }

    pub(super) fn parse(text: &str) -> Result<i64, String> {
        let time = humantime::parse_rfc3339_weak(text).map_err(|e| format!("{text:?}: {e}"))?;
        let secs = time
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| format!("{text:?} is before 1970"))?
            .as_secs();
        Ok(secs as i64)
    }

    pub(super) fn serialize<S: Serializer>(t: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&text(*t))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// [`rfc3339`] for optional times (`null` when unset).
mod rfc3339_option {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::rfc3339::text(*t)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| super::rfc3339::parse(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

// ---------------------------------------------------------------------------------------------
// The scheduler

/// Asks the scheduler using `state_dir` to run `job` at its next poll, beside the schedule
/// (the tool's `backup schedule --run-now JOB`). The job must be in `policy`.
pub fn request_run(state_dir: &Path, policy: &SchedulePolicy, job: &str) -> Result<()> {
    if policy.job(job).is_none() {
        return Err(Error::Schedule {
            path: policy.path.clone(),
            reason: format!("no job named {job:?}"),
        });
    }
    let dir = state_dir.join(REQUESTS);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    // The job name is checked by the policy (letters, digits, '-', '_'): a safe file name.
    let path = dir.join(job);
    File::create(&path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(&path, e))
}

/// One run, as [`Scheduler::run_due`] and [`Scheduler::run_requested`] report it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunRecord {
    /// The job.
    pub job: String,
    /// Whether it was requested by hand.
    pub manual: bool,
    /// Whether every step succeeded (and no check found damage).
    pub ok: bool,
}

/// Builder for [`Scheduler`].
pub struct SchedulerBuilder {
    policy: SchedulePolicy,
    state_dir: PathBuf,
    source: Arc<dyn RepositorySource>,
    clock: Arc<dyn Clock>,
    steps: BTreeMap<String, Arc<dyn Step>>,
}

/// Runs a [`SchedulePolicy`]'s jobs; see the module docs.
pub struct Scheduler {
    policy: SchedulePolicy,
    state_dir: PathBuf,
    source: Arc<dyn RepositorySource>,
    clock: Arc<dyn Clock>,
    steps: BTreeMap<String, Arc<dyn Step>>,
    status: ScheduleStatus,
    /// Held (locked) while this scheduler exists.
    _lock: File,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("state_dir", &self.state_dir)
            .field("jobs", &self.status.jobs.keys())
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler for `policy` keeping its state (status file, lock, requests) in
    /// `state_dir`, opening the repository from `source`; `backup`, `forget`, `check` and
    /// `prune` steps are registered.
    pub fn builder(
        policy: SchedulePolicy,
        state_dir: impl Into<PathBuf>,
        source: Arc<dyn RepositorySource>,
    ) -> SchedulerBuilder {
        let mut steps: BTreeMap<String, Arc<dyn Step>> = BTreeMap::new();
        steps.insert("backup".into(), Arc::new(BackupStep));
        steps.insert("forget".into(), Arc::new(ForgetStep));
        steps.insert("check".into(), Arc::new(CheckStep::default()));
        steps.insert("prune".into(), Arc::new(PruneStep));
        SchedulerBuilder {
            policy,
            state_dir: state_dir.into(),
            source,
            clock: Arc::new(SystemClock),
            steps,
        }
    }
}

impl SchedulerBuilder {
    /// Uses this clock instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Registers (or replaces) the step run for `kind`.
    pub fn with_step(mut self, kind: impl Into<String>, step: Arc<dyn Step>) -> Self {
        self.steps.insert(kind.into(), step);
        self
    }

    /// Checks every step of the policy, locks the state directory (creating it), reads the
    /// status file, records runs a killed scheduler left unfinished, and writes the status.
    pub fn build(self) -> Result<Scheduler> {
        for job in &self.policy.jobs {
            for step in &job.steps {
                let Some(runner) = self.steps.get(&step.kind) else {
                    let known: Vec<_> = self.steps.keys().map(String::as_str).collect();
                    return Err(step.params.error(format!(
                        "no step kind {:?} in this build (known: {})",
                        step.kind,
                        known.join(", ")
                    )));
                };
                runner.validate(&step.params)?;
            }
        }
        let dir = &self.state_dir;
        // The requests directory is made here, by the scheduler's user, so that a request
        // written by another user (root running `--run-now`) can be removed once served.
        let requests = dir.join(REQUESTS);
        std::fs::create_dir_all(&requests).map_err(|e| Error::io(&requests, e))?;
        let lock_path = dir.join("lock");
        let lock = File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(Error::Schedule {
                path: lock_path,
                reason: "another scheduler is running with this state directory".into(),
            });
        }
        let status_path = dir.join(STATUS_FILE);
        let mut status = ScheduleStatus::read(&status_path)?;
        status.version = STATUS_VERSION;
        let now = self.clock.now();
        // Jobs no longer in the policy would look stale to a health check forever.
        status
            .jobs
            .retain(|name, _| self.policy.job(name).is_some());
        for (name, job) in status.jobs.iter_mut() {
            if let Some(since) = job.running_since.take() {
                job.failures += 1;
                job.last_error = Some(RunError {
                    time: now,
                    message: format!(
                        "interrupted: the scheduler stopped while the run begun at {} was going on; it runs again now",
                        rfc3339::text(since)
                    ),
                });
                tracing::warn!("schedule: job {name} was interrupted; it runs again");
            }
        }
        let mut scheduler = Scheduler {
            policy: self.policy,
            state_dir: self.state_dir,
            source: self.source,
            clock: self.clock,
            steps: self.steps,
            status,
            _lock: lock,
        };
        for job in &scheduler.policy.jobs {
            let state = scheduler.status.jobs.entry(job.name.clone()).or_default();
            // A new job waits for its first slot; nothing was missed.
            state
                .last_slot
                .get_or_insert(job.at.latest_at_or_before(now));
        }
        scheduler.refresh();
        scheduler.status.write(&scheduler.status_path())?;
        Ok(scheduler)
    }
}

impl Scheduler {
    /// The current status (what the status file holds).
    pub fn status(&self) -> &ScheduleStatus {
        &self.status
    }

    /// The status file's path.
    pub fn status_path(&self) -> PathBuf {
        self.state_dir.join(STATUS_FILE)
    }

    /// The policy's jobs due now, in the order their slots came.
    pub fn due(&self) -> Vec<String> {
        let now = self.clock.now();
        let mut due: Vec<(i64, usize, &str)> = Vec::new();
        for (order, job) in self.policy.jobs.iter().enumerate() {
            let next = self.next_run(job);
            if next <= now {
                due.push((next, order, &job.name));
            }
        }
        due.sort();
        due.into_iter()
            .map(|(_, _, name)| name.to_string())
            .collect()
    }

    fn next_run(&self, job: &Job) -> i64 {
        let status = self.status.jobs.get(&job.name);
        let last = status.and_then(|s| s.last_slot);
        let slot = last.map_or_else(
            || job.at.next_after(self.clock.now()),
            |l| job.at.next_after(l),
        );
        match status.and_then(|s| s.retry_at) {
            Some(retry) if retry < slot => retry,
            _ => slot,
        }
    }

    /// The earliest next run of any job.
    pub fn next_wake(&self) -> Option<i64> {
        self.policy.jobs.iter().map(|j| self.next_run(j)).min()
    }

    /// Runs every due job once (however many of its slots passed), recording each run.
    pub async fn run_due(&mut self) -> Result<Vec<RunRecord>> {
        let mut records = Vec::new();
        for name in self.due() {
            records.push(self.run_job(&name, false).await?);
        }
        Ok(records)
    }

    /// Runs the jobs requested by hand ([`request_run`]), then removes their requests;
    /// requests for jobs no longer in the policy are removed with a warning.
    pub async fn run_requested(&mut self) -> Result<Vec<RunRecord>> {
        let dir = self.state_dir.join(REQUESTS);
        let listed = dir.clone();
        let names = blocking(move || {
            let entries = match std::fs::read_dir(&listed) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(Error::io(&listed, e)),
            };
            let mut names = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(&listed, e))?;
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
            names.sort();
            Ok(names)
        })
        .await?;
        let mut records = Vec::new();
        for name in names {
            if self.policy.job(&name).is_some() {
                records.push(self.run_job(&name, true).await?);
            } else {
                tracing::warn!("schedule: ignoring a run request for unknown job {name:?}");
            }
            let path = dir.join(&name);
            blocking(move || std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))).await?;
        }
        Ok(records)
    }

    /// Runs requested and due jobs, then sleeps until the next slot or `poll` (for requests),
    /// forever, calling `on_run` after each run with the job's status. Fails only when the
    /// state directory cannot be read or written.
    pub async fn run_forever(
        &mut self,
        poll: Duration,
        mut on_run: impl FnMut(&RunRecord, &JobStatus) + Send,
    ) -> Result<()> {
        loop {
            let mut records = self.run_requested().await?;
            records.extend(self.run_due().await?);
            for record in &records {
                if let Some(status) = self.status.jobs.get(&record.job) {
                    on_run(record, status);
                }
            }
            let now = self.clock.now();
            let wait = self.next_wake().map_or(poll, |at| {
                Duration::from_secs(at.saturating_sub(now).max(1) as u64)
            });
            tokio::time::sleep(wait.min(poll)).await;
        }
    }

    /// Runs one job now and records the run. Step failures are recorded, not returned;
    /// the error is only a failure to write the status file.
    async fn run_job(&mut self, name: &str, manual: bool) -> Result<RunRecord> {
        let Some(job) = self.policy.job(name).cloned() else {
            return Err(Error::Schedule {
                path: self.policy.path.clone(),
                reason: format!("no job named {name:?}"),
            });
        };
        let started = self.clock.now();
        let run = {
            let state = self.status.jobs.entry(job.name.clone()).or_default();
            state.running_since = Some(started);
            state.last_started = Some(started);
            state.runs
        };
        self.save().await?;
        tracing::info!(
            "schedule: job {name} starts{}",
            if manual { " (manual)" } else { "" }
        );
        let context = StepContext {
            job: job.name.clone(),
            started,
            run,
            manual,
        };
        let (summaries, check, failure) = self.run_steps(&job, &context).await;
        let finished = self.clock.now();
        let state = self.status.jobs.entry(job.name.clone()).or_default();
        state.running_since = None;
        state.last_finished = Some(finished);
        state.runs += 1;
        state.last_summary = summaries;
        if check.is_some() {
            state.last_check = check;
        }
        if !manual {
            state.last_slot = Some(job.at.latest_at_or_before(started));
            state.retry_at = match (&failure, job.retry) {
                (Some(_), Some(retry)) => Some(finished + retry),
                _ => None,
            };
        }
        let ok = failure.is_none();
        match failure {
            None => {
                state.last_success = Some(finished);
                state.last_error = None;
                state.retry_at = None;
                tracing::info!("schedule: job {name} succeeded");
            }
            Some(message) => {
                state.failures += 1;
                tracing::error!("schedule: job {name} failed: {message}");
                state.last_error = Some(RunError {
                    time: finished,
                    message,
                });
            }
        }
        self.save().await?;
        Ok(RunRecord {
            job: job.name,
            manual,
            ok,
        })
    }

    /// Runs a job's steps in order until one fails; returns the summaries, the check result
    /// and the failure.
    async fn run_steps(
        &self,
        job: &Job,
        context: &StepContext,
    ) -> (Vec<String>, Option<CheckStatus>, Option<String>) {
        let mut summaries = Vec::new();
        let mut check = None;
        let repo = match self.source.open().await {
            Ok(repo) => repo,
            Err(e) => {
                let failure = format!("opening the repository: {}", crate::report(&e));
                return (summaries, check, Some(failure));
            }
        };
        for (n, step) in job.steps.iter().enumerate() {
            let Some(runner) = self.steps.get(&step.kind) else {
                return (
                    summaries,
                    check,
                    Some(format!("no step kind {}", step.kind)),
                );
            };
            match runner.run(repo.clone(), &step.params, context).await {
                Ok(outcome) => {
                    summaries.push(outcome.summary);
                    if let Some(result) = outcome.check {
                        let damaged = !result.ok;
                        let problems = result.problems;
                        let healed = result.heal.as_ref().map(HealStatus::describe);
                        check = Some(result);
                        if damaged {
                            let failure = format!(
                                "step {} (check) found {problems} problems in the repository{}",
                                n + 1,
                                healed.map(|h| format!("; {h}")).unwrap_or_default()
                            );
                            return (summaries, check, Some(failure));
                        }
                    }
                }
                Err(e) => {
                    let failure = format!("step {} ({}): {}", n + 1, step.kind, crate::report(&e));
                    return (summaries, check, Some(failure));
                }
            }
        }
        (summaries, check, None)
    }

    /// Sets every job's next run and the time of update.
    fn refresh(&mut self) {
        let next: Vec<(String, i64)> = self
            .policy
            .jobs
            .iter()
            .map(|j| (j.name.clone(), self.next_run(j)))
            .collect();
        for (name, at) in next {
            self.status.jobs.entry(name).or_default().next_run = Some(at);
        }
        self.status.updated = Some(self.clock.now());
    }

    /// Writes the status file (from a blocking thread: it syncs to disk).
    async fn save(&mut self) -> Result<()> {
        self.refresh();
        let (status, path) = (self.status.clone(), self.status_path());
        blocking(move || status.write(&path)).await
    }
}

/// Runs file-system work on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Worker(format!("schedule state: {e}")))?
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    // Unix times of UTC dates, computed independently (Python's calendar.timegm).
    const DEC6_0230: i64 = 1_796_524_200; // 2026-12-06 02:30, a Sunday
    const DEC6_0400: i64 = 1_796_529_600;
    const DEC6_1015: i64 = 1_796_552_100;
    const DEC6_1020: i64 = 1_796_552_400;
    const DEC6_1030: i64 = 1_796_553_000;
    const DEC6_1100: i64 = 1_796_554_800;
    const DEC6_1115: i64 = 1_796_555_700;
    const DEC6_1200: i64 = 1_796_558_400;
    const DEC6_1600: i64 = 1_796_572_800;
    const DEC6_1645: i64 = 1_796_575_500;
    const DEC6_1650: i64 = 1_796_575_800;
    const DEC6_1700: i64 = 1_796_576_400;
    const DEC6_1730: i64 = 1_796_578_200;
    const DEC7_0230: i64 = 1_796_610_600;
    const DEC13_0400: i64 = 1_797_134_400;
    const DEC1_0000: i64 = 1_796_083_200;
    const JAN1_2027: i64 = 1_798_761_600;
    const FEB1_2027: i64 = 1_801_440_000;
    const FEB28_2027_0100: i64 = 1_803_776_400;
    const MAR15_2027: i64 = 1_805_068_800;
    const MAR31_2027_0100: i64 = 1_806_454_800;
    const FEB1_2028: i64 = 1_832_976_000;
    const FEB29_2028_0100: i64 = 1_835_398_800;
    const MON_JAN5_1970: i64 = 345_600;

    fn calendar(text: &str) -> Calendar {
        text.parse().unwrap()
    }

    #[test]
    fn calendars_find_their_slots() {
        let hourly = calendar("hourly :15");
        assert_eq!(hourly.next_after(DEC6_1020), DEC6_1115);
        assert_eq!(hourly.latest_at_or_before(DEC6_1020), DEC6_1015);
        assert_eq!(hourly.latest_at_or_before(DEC6_1015), DEC6_1015);
        assert_eq!(hourly.next_after(DEC6_1015), DEC6_1115);
        assert_eq!(calendar("hourly").next_after(DEC6_1020), DEC6_1100);
        let daily = calendar("daily 02:30");
        assert_eq!(daily.next_after(DEC6_1020), DEC7_0230);
        assert_eq!(daily.latest_at_or_before(DEC6_1020), DEC6_0230);
        let weekly = calendar("weekly SUN 04:00");
        assert_eq!(weekly.next_after(DEC6_1020), DEC13_0400);
        assert_eq!(weekly.latest_at_or_before(DEC6_1020), DEC6_0400);
        let monday = calendar("weekly mon 00:00");
        assert_eq!(monday.latest_at_or_before(MON_JAN5_1970), MON_JAN5_1970);
        assert_eq!(calendar("every 15m").next_after(DEC6_1020), DEC6_1030);
        // The 31st falls on the last day of shorter months, leap years included.
        let monthly = calendar("monthly 31 01:00");
        assert_eq!(monthly.next_after(FEB1_2027), FEB28_2027_0100);
        assert_eq!(monthly.next_after(FEB28_2027_0100), MAR31_2027_0100);
        assert_eq!(monthly.latest_at_or_before(MAR15_2027), FEB28_2027_0100);
        assert_eq!(monthly.next_after(FEB1_2028), FEB29_2028_0100);
        let first = calendar("monthly 1 00:00");
        assert_eq!(first.latest_at_or_before(JAN1_2027 - 1), DEC1_0000);
        assert_eq!(first.next_after(DEC1_0000), JAN1_2027);
    }

    #[test]
    fn bad_schedules_are_refused_with_the_forms_that_work() {
        for bad in [
            "",
            "daily",
            "daily 24:00",
            "daily 2:30",
            "daily 02:60",
            "hourly 15",
            "hourly :75",
            "weekly xyz 01:00",
            "monthly 0 01:00",
            "monthly 32 01:00",
            "every 10s",
            "every 2y",
            "yearly",
        ] {
            let err = bad.parse::<Calendar>().unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad:?}: {err}");
        }
    }

    /// A step that records its runs; `fail = true` fails it, `hang = true` never ends,
    /// `damage = true` reports a check that found damage.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, u64, bool)>>);

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RecorderParams {
        #[serde(default)]
        fail: bool,
        #[serde(default)]
        hang: bool,
        #[serde(default)]
        damage: bool,
    }

    impl Recorder {
        fn runs(&self) -> Vec<(String, u64, bool)> {
            self.0.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl Step for Recorder {
        fn validate(&self, params: &StepParams) -> Result<()> {
            params.parse::<RecorderParams>().map(drop)
        }

        async fn run(
            &self,
            _: Arc<Repository>,
            params: &StepParams,
            context: &StepContext,
        ) -> Result<StepOutcome> {
            let p: RecorderParams = params.parse()?;
            self.0
                .lock()
                .unwrap()
                .push((context.job.clone(), context.run, context.manual));
            if p.hang {
                futures::future::pending::<()>().await;
            }
            if p.fail {
                return Err(Error::Config("injected failure".into()));
            }
            let mut outcome = StepOutcome::new("recorded");
            if p.damage {
                outcome.check = Some(CheckStatus {
                    time: context.started,
                    ok: false,
                    problems: 2,
                    part: Some("1/7".into()),
                    heal: None,
                });
            }
            Ok(outcome)
        }
    }

    struct Fixture {
        state: tempfile::TempDir,
        clock: Arc<ManualClock>,
        recorder: Arc<Recorder>,
        repo: Arc<Repository>,
        policy: SchedulePolicy,
    }

    const POLICY: &str = r#"
        [[job]]
        name = "hourly"
        at = "hourly"
        [[job.step]]
        kind = "record"

        [[job]]
        name = "failing"
        at = "daily 02:30"
        [[job.step]]
        kind = "record"
        fail = true
        [[job.step]]
        kind = "record"

        [[job]]
        name = "scrub"
        at = "weekly sun 04:00"
        [[job.step]]
        kind = "record"
        damage = true
    "#;

    async fn fixture(policy: &str, now: i64) -> Fixture {
        let store = Arc::new(object_store::memory::InMemory::new());
        let key = KeySource::passphrase("schedule tests");
        let repo = Repository::init(store, "memory", &key, crate::InitOptions::new());
        Fixture {
            state: tempfile::tempdir().unwrap(),
            clock: Arc::new(ManualClock::new(now)),
            recorder: Arc::new(Recorder::default()),
            repo: Arc::new(repo.await.unwrap()),
            policy: SchedulePolicy::parse(Path::new("policy.toml"), policy).unwrap(),
        }
    }

    impl Fixture {
        fn scheduler(&self) -> Result<Scheduler> {
            let source = Arc::new(StaticRepository::new(self.repo.clone()));
            Scheduler::builder(self.policy.clone(), self.state.path(), source)
                .with_clock(self.clock.clone())
                .with_step("record", self.recorder.clone())
                .build()
        }
    }

    #[tokio::test]
    async fn missed_runs_after_downtime_run_once() {
        let f = fixture(POLICY, DEC6_1020).await;
        let mut scheduler = f.scheduler().unwrap();
        assert!(scheduler.due().is_empty(), "a new job waits for its slot");
        assert_eq!(scheduler.status().jobs["hourly"].next_run, Some(DEC6_1100));
        f.clock.set(DEC6_1100);
        let runs = scheduler.run_due().await.unwrap();
        assert_eq!(runs.len(), 1);
        assert!(runs[0].ok && runs[0].job == "hourly" && !runs[0].manual);
        let hourly = &scheduler.status().jobs["hourly"];
        assert_eq!(hourly.last_slot, Some(DEC6_1100));
        assert_eq!(hourly.next_run, Some(DEC6_1200));
        // Down from 11:00 to 16:45: five slots passed, one run.
        drop(scheduler);
        f.clock.set(DEC6_1645);
        let mut scheduler = f.scheduler().unwrap();
        assert_eq!(scheduler.due(), ["hourly"]);
        assert_eq!(scheduler.run_due().await.unwrap().len(), 1);
        f.clock.set(DEC6_1650);
        assert!(scheduler.run_due().await.unwrap().is_empty());
        let hourly = &scheduler.status().jobs["hourly"];
        assert_eq!(hourly.last_slot, Some(DEC6_1600));
        assert_eq!(hourly.next_run, Some(DEC6_1700));
        assert_eq!(hourly.runs, 2);
        // The runs counter is handed to the steps (for rotating scrubs).
        let runs: Vec<u64> = f.recorder.runs().iter().map(|r| r.1).collect();
        assert_eq!(runs, [0, 1]);
        // Persisted: a restart does not run it again until 17:00.
        drop(scheduler);
        let mut scheduler = f.scheduler().unwrap();
        assert!(scheduler.due().is_empty());
        f.clock.set(DEC6_1730);
        assert_eq!(scheduler.run_due().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn failures_and_damage_are_recorded_and_end_the_run() {
        // Sunday 10:20: "failing" (02:30) and "scrub" (04:00) ran last at their slots of
        // today; move to the next week's Sunday 04:00 to make both due.
        let f = fixture(POLICY, DEC6_1020).await;
        let mut scheduler = f.scheduler().unwrap();
        f.clock.set(DEC13_0400);
        let runs = scheduler.run_due().await.unwrap();
        let jobs: Vec<_> = runs.iter().map(|r| (r.job.as_str(), r.ok)).collect();
        // One run each, in the order their first missed slots came: hourly (12-06 11:00),
        // failing (12-07 02:30), scrub (12-13 04:00).
        assert_eq!(
            jobs,
            [("hourly", true), ("failing", false), ("scrub", false)]
        );
        let status = scheduler.status();
        let failing = &status.jobs["failing"];
        let error = failing.last_error.as_ref().unwrap();
        assert!(
            error.message.contains("step 1 (record)") && error.message.contains("injected failure"),
            "{error:?}"
        );
        assert_eq!((failing.last_success, failing.failures), (None, 1));
        // The second step never ran: one "failing" run recorded.
        let failing_runs = f
            .recorder
            .runs()
            .iter()
            .filter(|r| r.0 == "failing")
            .count();
        assert_eq!(failing_runs, 1);
        let scrub = &status.jobs["scrub"];
        let check = scrub.last_check.as_ref().unwrap();
        assert!(!check.ok && check.problems == 2, "{check:?}");
        let message = &scrub.last_error.as_ref().unwrap().message;
        assert!(message.contains("found 2 problems"), "{message}");
        assert!(status.jobs["hourly"].last_error.is_none());
        assert_eq!(status.jobs["hourly"].last_success, Some(DEC13_0400));
    }

    #[tokio::test]
    async fn failed_runs_are_retried_until_the_next_slot() {
        let policy = r#"
            [[job]]
            name = "flaky"
            at = "daily 02:30"
            retry = "15m"
            [[job.step]]
            kind = "record"
            fail = true
        "#;
        let f = fixture(policy, DEC6_1020).await;
        let mut scheduler = f.scheduler().unwrap();
        assert_eq!(scheduler.status().jobs["flaky"].next_run, Some(DEC7_0230));
        f.clock.set(DEC7_0230);
        assert!(!scheduler.run_due().await.unwrap()[0].ok);
        let retry = DEC7_0230 + 15 * 60;
        assert_eq!(scheduler.status().jobs["flaky"].next_run, Some(retry));
        f.clock.set(retry + 60);
        assert_eq!(scheduler.run_due().await.unwrap().len(), 1);
        assert_eq!(
            scheduler.status().jobs["flaky"].retry_at,
            Some(retry + 60 + 15 * 60)
        );
        // A day later the slot comes before any retry: one run, not one per missed retry.
        f.clock.set(DEC7_0230 + DAY + 5);
        assert_eq!(scheduler.run_due().await.unwrap().len(), 1);
        assert_eq!(f.recorder.runs().len(), 3);
        let bad =
            "[[job]]\nname = \"j\"\nat = \"hourly\"\nretry = \"5s\"\n[[job.step]]\nkind = \"x\"";
        let err = SchedulePolicy::parse(Path::new("p.toml"), bad).unwrap_err();
        assert!(err.to_string().contains("retry \"5s\""), "{err}");
    }

    #[tokio::test]
    async fn a_run_killed_part_way_is_reported_and_runs_again_once() {
        let policy = r#"
            [[job]]
            name = "stuck"
            at = "hourly"
            [[job.step]]
            kind = "record"
            hang = true
        "#;
        let f = fixture(policy, DEC6_1020).await;
        let mut scheduler = f.scheduler().unwrap();
        f.clock.set(DEC6_1100);
        // Dropping the run's future mid-step leaves the state a kill leaves. The run is dropped
        // once the status file says it is running (a fixed wait fails on a loaded machine).
        let status_path = f.state.path().join(STATUS_FILE);
        let on_disk = {
            let run = scheduler.run_due();
            tokio::pin!(run);
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                tokio::select! {
                    _ = &mut run => panic!("a hanging step finished"),
                    () = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
                let running = ScheduleStatus::read(&status_path).ok().filter(|status| {
                    status
                        .jobs
                        .get("stuck")
                        .is_some_and(|j| j.running_since.is_some())
                });
                if let Some(status) = running {
                    break status;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the run never said it was running"
                );
            }
        };
        drop(scheduler);
        assert_eq!(on_disk.jobs["stuck"].running_since, Some(DEC6_1100));
        f.clock.set(DEC6_1115);
        let scheduler = f.scheduler().unwrap();
        let stuck = &scheduler.status().jobs["stuck"];
        assert_eq!(stuck.running_since, None);
        let error = stuck.last_error.as_ref().unwrap();
        assert!(error.message.contains("interrupted"), "{error:?}");
        assert_eq!(
            scheduler.due(),
            ["stuck"],
            "the interrupted run is due again"
        );
    }

    #[tokio::test]
    async fn manual_runs_happen_beside_the_schedule() {
        let f = fixture(POLICY, DEC6_1020).await;
        let mut scheduler = f.scheduler().unwrap();
        let unknown = request_run(f.state.path(), &f.policy, "nightly").unwrap_err();
        assert!(unknown.to_string().contains("nightly"), "{unknown}");
        request_run(f.state.path(), &f.policy, "hourly").unwrap();
        let runs = scheduler.run_requested().await.unwrap();
        assert_eq!(runs.len(), 1);
        assert!(runs[0].manual && runs[0].ok);
        assert_eq!(f.recorder.runs(), [("hourly".to_string(), 0, true)]);
        let hourly = &scheduler.status().jobs["hourly"];
        assert_eq!(
            hourly.last_slot,
            Some(DEC6_1020 - 20 * 60),
            "slots unchanged"
        );
        assert_eq!(hourly.next_run, Some(DEC6_1100));
        assert!(scheduler.run_requested().await.unwrap().is_empty());
        assert!(
            std::fs::read_dir(f.state.path().join(REQUESTS))
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[tokio::test]
    async fn jobs_dropped_from_the_policy_leave_the_status() {
        let mut f = fixture(POLICY, DEC6_1020).await;
        drop(f.scheduler().unwrap());
        let only_hourly =
            "[[job]]\nname = \"hourly\"\nat = \"hourly\"\n[[job.step]]\nkind = \"record\"";
        f.policy = SchedulePolicy::parse(Path::new("p.toml"), only_hourly).unwrap();
        let scheduler = f.scheduler().unwrap();
        let jobs: Vec<_> = scheduler.status().jobs.keys().collect();
        assert_eq!(jobs, ["hourly"]);
    }

    #[tokio::test]
    async fn the_status_file_is_json_a_health_check_can_read() {
        let f = fixture(POLICY, DEC6_1020).await;
        let mut scheduler = f.scheduler().unwrap();
        f.clock.set(DEC6_1100);
        scheduler.run_due().await.unwrap();
        let path = f.state.path().join(STATUS_FILE);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(json["version"], 1);
        let hourly = &json["jobs"]["hourly"];
        assert_eq!(hourly["last_success"], "2026-12-06T11:00:00Z");
        assert_eq!(hourly["next_run"], "2026-12-06T12:00:00Z");
        assert_eq!(hourly["last_error"], serde_json::Value::Null);
        assert_eq!(hourly["runs"], 1);
        assert_eq!(json["jobs"]["scrub"]["next_run"], "2026-12-13T04:00:00Z");
        let names: Vec<_> = std::fs::read_dir(f.state.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with('.')),
            "temporary files left: {names:?}"
        );
        // A second scheduler on the same state is refused while this one runs.
        let second = f.scheduler().unwrap_err();
        assert!(second.to_string().contains("another scheduler"), "{second}");
        std::fs::write(&path, b"{ not json").unwrap();
        let damaged = ScheduleStatus::read(&path).unwrap_err();
        assert!(damaged.to_string().contains("status.json"), "{damaged}");
    }

    #[tokio::test]
    async fn policy_errors_name_the_problem() {
        let parse = |text: &str| SchedulePolicy::parse(Path::new("p.toml"), text);
        let job = |body: &str| format!("[[job]]\nname = \"j\"\nat = \"hourly\"\n{body}");
        for (text, expected) in [
            (String::new(), "no [[job]]".to_string()),
            (job(""), "has no [[job.step]]".into()),
            (job("[[job.step]]\npaths = []"), "no `kind".into()),
            (job("colour = 1\n"), "unknown field `colour`".into()),
            (
                "[[job]]\nname = \"a b\"\nat = \"hourly\"".into(),
                "job name".into(),
            ),
            (
                format!(
                    "{}\n{}",
                    job("[[job.step]]\nkind = \"x\""),
                    job("[[job.step]]\nkind = \"x\"")
                ),
                "defined twice".into(),
            ),
            (
                "[[job]]\nname = \"j\"\nat = \"daily\"\n[[job.step]]\nkind = \"x\"".into(),
                "schedule \"daily\"".into(),
            ),
        ] {
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.contains(&expected) && err.starts_with("p.toml"),
                "{err}"
            );
        }
        let f = fixture(POLICY, DEC6_1020).await;
        let source = Arc::new(StaticRepository::new(f.repo.clone()));
        let build = |text: &str| {
            let policy = parse(text).unwrap();
            Scheduler::builder(policy, f.state.path(), source.clone()).build()
        };
        let unknown = build(&job("[[job.step]]\nkind = \"vacuum\""));
        let err = unknown.unwrap_err().to_string();
        assert!(
            err.contains("step kind \"vacuum\"")
                && err.contains("known: backup, check, forget, prune"),
            "{err}"
        );
        for (step, expected) in [
            (
                "kind = \"backup\"\npathz = [\"/srv\"]",
                "unknown field `pathz`",
            ),
            ("kind = \"backup\"\npaths = []", "nothing to back up"),
            (
                "kind = \"forget\"\nkeep_within = \"7w\"",
                "job j step 1 (forget)",
            ),
            ("kind = \"forget\"", "keep"),
            ("kind = \"check\"\nread_data_subset = \"200%\"", "200%"),
            (
                "kind = \"check\"\nread_data = true\nread_data_subset = \"1/7\"",
                "exclude each other",
            ),
            (
                "kind = \"prune\"\nmax_unused = \"5 parsecs\"",
                "job j step 1 (prune)",
            ),
            (
                "kind = \"prune\"\nmax_repack_size = \"lots\"",
                "max_repack_size",
            ),
            (
                "kind = \"prune\"\nkeep_last = 3",
                "unknown field `keep_last`",
            ),
        ] {
            let err = build(&job(&format!("[[job.step]]\n{step}")))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{step}: {err}");
        }
        // A kind registered by the caller is accepted: steps are pluggable.
        let policy = parse(&job("[[job.step]]\nkind = \"vacuum\"")).unwrap();
        Scheduler::builder(policy, f.state.path(), source.clone())
            .with_step("vacuum", Arc::new(Recorder::default()))
            .build()
            .unwrap();
    }
}
