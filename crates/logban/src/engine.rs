//! The engine wires the pipeline: lines → [`LineMatcher`] (a filter) → [`Jail`] → [`BanSink`],
//! with saved state ([`StateStore`]) and counters ([`Metrics`]).
//!
//! Sink calls are serialized and retried ([`EngineBuilder::with_retries`]). A change that still
//! fails stays queued, is retried on every [`Engine::tick`], is counted in `sink_errors`, and the
//! caller gets the error; its ban is saved with `applied: false` and shown so by
//! [`Engine::status`], never as applied.
//!
//! On [`EngineBuilder::build`] every jail is prepared on the sink and saved bans that have not
//! run out are put back into their jails and re-applied with their remaining time; expired
//! ones are dropped. Expiry continues through [`Engine::tick`] (or [`Engine::spawn_ticker`]).

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;

use crate::jail::{Ban, BanTime, Jail, JailConfig, Verdict};
use crate::metrics::{JailCounters, Metrics};
use crate::sink::{BanAction, BanSink, SinkJail};
use crate::source::LogLine;
use crate::state::{Record, StateStore, StoredBan};
use crate::{Error, Failure, Result};

/// What a filter found in one line.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineOutcome {
    /// How many failregex matches the line produced (including ids that are not addresses).
    pub matches: u32,
    /// The failures with valid addresses.
    pub failures: Vec<Failure>,
}

/// Turns log lines into failures: logban's [`Filter`](crate::Filter), or any closure
/// `FnMut(&[u8]) -> Option<Failure>`.
pub trait LineMatcher: Send {
    /// Looks at one line (without its newline).
    fn match_line(&mut self, line: &[u8]) -> LineOutcome;

    /// Looks at a line whose time is already known (a journal entry's timestamp, Unix
    /// seconds). By default the time is ignored.
    fn match_line_at(&mut self, line: &[u8], _time: f64) -> LineOutcome {
        self.match_line(line)
    }

    /// Lines looked at so far on which matching gave up undecided (a failregex's backtrack
    /// budget ran out, see [`FilterStats::undecided`](crate::filter::FilterStats::undecided));
    /// the engine counts the increase in the jail's `undecided_lines`. Default: 0.
    fn undecided_lines(&self) -> u64 {
        0
    }

    /// Looks at a batch of lines in order (a poll's worth), with the same results as one call
    /// per line; a [`Filter`](crate::Filter) scans large batches on all cores.
    fn match_lines(&mut self, lines: &[LogLine]) -> Vec<LineOutcome> {
        lines
            .iter()
            .map(|l| match l.time {
                Some(time) => self.match_line_at(&l.bytes, time),
                None => self.match_line(&l.bytes),
            })
            .collect()
    }

    /// Looks at a block of complete lines (each ending in `\n`, a
    /// [`LogBatch::Block`](crate::source::LogBatch::Block)), with the same results as
    /// [`match_line`](Self::match_line) on each line without its `\n`; a
    /// [`Filter`](crate::Filter) scans large blocks on all cores without copying the lines.
    fn match_block(&mut self, block: &[u8]) -> Vec<LineOutcome> {
        crate::source::block_lines(block)
            .map(|line| self.match_line(line))
            .collect()
    }
}

/// A filter's matches as failures; a match without a timestamp counts at `now`, the time it
/// is read (as fail2ban does).
fn outcome(found: &[crate::FilterMatch], now: i64) -> LineOutcome {
    LineOutcome {
        matches: u32::try_from(found.iter().filter(|m| !m.nofail).count()).unwrap_or(u32::MAX),
        failures: found.iter().filter_map(|m| m.to_failure_at(now)).collect(),
    }
}

impl<F: FnMut(&[u8]) -> Option<Failure> + Send> LineMatcher for F {
    fn match_line(&mut self, line: &[u8]) -> LineOutcome {
        let failures: Vec<Failure> = self(line).into_iter().collect();
        LineOutcome {
            matches: u32::from(!failures.is_empty()),
            failures,
        }
    }
}

impl LineMatcher for crate::Filter {
    fn undecided_lines(&self) -> u64 {
        self.stats().undecided
    }

    fn match_line(&mut self, line: &[u8]) -> LineOutcome {
        let found = self.process_bytes(line);
        outcome(&found, self.now())
    }

    fn match_line_at(&mut self, line: &[u8], time: f64) -> LineOutcome {
        let found = self.process_line_at(&String::from_utf8_lossy(line), time);
        outcome(&found, self.now())
    }

    fn match_lines(&mut self, lines: &[LogLine]) -> Vec<LineOutcome> {
        let parallel = lines.len() >= PARALLEL_BATCH
            && lines
                .iter()
                // The scan splits at newlines and drops a final `\r`: lines it would change
                // keep the line-by-line path.
                .all(|l| {
                    l.time.is_none() && !l.bytes.contains(&b'\n') && !l.bytes.ends_with(b"\r")
                });
        if !parallel {
            return lines
                .iter()
                .map(|l| match l.time {
                    Some(time) => self.match_line_at(&l.bytes, time),
                    None => self.match_line(&l.bytes),
                })
                .collect();
        }
        let mut data = Vec::with_capacity(lines.iter().map(|l| l.bytes.len() + 1).sum());
        for line in lines {
            data.extend_from_slice(&line.bytes);
            data.push(b'\n');
        }
        self.scan_outcomes(&data, lines.len())
    }

    fn match_block(&mut self, block: &[u8]) -> Vec<LineOutcome> {
        let lines = memchr::memchr_iter(b'\n', block).count();
        // The scan drops a `\r` before `\n` (`match_line` keeps it): such blocks, and blocks
        // that break the format, keep the line-by-line path.
        if lines < PARALLEL_BATCH
            || !block.ends_with(b"\n")
            || memchr::memmem::find(block, b"\r\n").is_some()
        {
            return crate::source::block_lines(block)
                .map(|line| self.match_line(line))
                .collect();
        }
        self.scan_outcomes(block, lines)
    }
}

impl crate::Filter {
    /// The outcomes of `lines` complete lines in `data`, scanned on all cores. Matches without
    /// a timestamp count at the time the scan starts (the "now" it reads once).
    fn scan_outcomes(&mut self, data: &[u8], lines: usize) -> Vec<LineOutcome> {
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let now = self.now();
        let mut outcomes = vec![LineOutcome::default(); lines];
        // Each match becomes its count and failure on the worker that found it. Reading from
        // memory cannot fail.
        let _ = self.scan_reader_map(
            data,
            threads,
            |m| (u32::from(!m.nofail), m.to_failure_at(now)),
            |line, (matches, failure)| {
                // Line numbers count from 1 within the batch.
                if let Some(slot) = usize::try_from(line - 1)
                    .ok()
                    .and_then(|i| outcomes.get_mut(i))
                {
                    slot.matches = slot.matches.saturating_add(matches);
                    slot.failures.extend(failure);
                }
            },
        );
        outcomes
    }
}

/// Batches of at least this many lines (a backlog) are scanned on all cores.
const PARALLEL_BATCH: usize = 32_768;

/// How often (seconds) [`Engine::tick`] prunes ban history.
const PRUNE_EVERY: i64 = 3600;

/// Unix seconds, from the engine's clock (set with [`EngineBuilder::with_clock`]).
type NowFn = Arc<dyn Fn() -> i64 + Send + Sync>;

fn system_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Builder for [`Engine`].
pub struct EngineBuilder {
    sink: Arc<dyn BanSink>,
    jails: Vec<JailConfig>,
    state: Option<StateStore>,
    clock: NowFn,
    retries: u32,
    retry_delay: Duration,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("sink", &self.sink)
            .field("jails", &self.jails)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// Adds a jail.
    pub fn with_jail(mut self, config: JailConfig) -> Self {
        self.jails.push(config);
        self
    }

    /// Persists bans and restores them from `state`.
    pub fn with_state(mut self, state: StateStore) -> Self {
        self.state = Some(state);
        self
    }

    /// Replaces the clock (Unix seconds); tests use a manual one.
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Sink calls are retried `retries` times, waiting `delay`, then twice as long, ...
    /// (default 2 retries from 200 ms).
    pub fn with_retries(mut self, retries: u32, delay: Duration) -> Self {
        self.retries = retries;
        self.retry_delay = delay;
        self
    }

    /// Prepares the jails on the sink and restores saved bans.
    pub async fn build(self) -> Result<Engine> {
        let mut jails = BTreeMap::new();
        for config in self.jails {
            if jails.contains_key(config.name()) {
                return Err(Error::InvalidConfig {
                    field: "jail".into(),
                    reason: format!("two jails are called `{}`", config.name()),
                });
            }
            self.sink.prepare(&SinkJail::from(&config)).await?;
            jails.insert(config.name().to_owned(), Jail::new(config));
        }
        let engine = Engine {
            inner: Arc::new(Inner {
                jails: Mutex::new(jails),
                sink: self.sink,
                state: self.state,
                metrics: Metrics::new(),
                clock: self.clock,
                retries: self.retries,
                retry_delay: self.retry_delay,
                next_prune: AtomicI64::new(i64::MIN),
                queue: tokio::sync::Mutex::new(Vec::new()),
                unapplied: Mutex::new(HashSet::new()),
            }),
        };
        let restored = engine.restore()?;
        if !restored.is_empty()
            && let Err(e) = engine.apply(restored).await
        {
            tracing::error!("re-applying saved bans failed, will retry: {e}");
        }
        Ok(engine)
    }
}

/// A change waiting for the sink.
#[derive(Debug, Clone)]
enum Change {
    Ban(Ban),
    Unban { jail: String, target: IpNet },
}

struct Inner {
    jails: Mutex<BTreeMap<String, Jail>>,
    sink: Arc<dyn BanSink>,
    state: Option<StateStore>,
    metrics: Metrics,
    clock: NowFn,
    retries: u32,
    retry_delay: Duration,
    /// When [`Engine::tick`] next prunes ban history (Unix seconds).
    next_prune: AtomicI64,
    /// Changes not yet applied; held while applying, which also serializes sink calls.
    queue: tokio::sync::Mutex<Vec<Change>>,
    unapplied: Mutex<HashSet<(String, IpNet)>>,
}

/// A jail's state for status displays.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JailStatus {
    /// The jail.
    pub name: String,
    /// Its counters.
    pub counters: JailCounters,
    /// Addresses with failures that are not banned (yet).
    pub tracked: usize,
    /// Active bans, and whether the sink has applied each.
    pub bans: Vec<StoredBan>,
}

/// The running pipeline; cheap to clone (clones share everything).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("sink", &self.inner.sink)
            .finish_non_exhaustive()
    }
}

fn unknown_jail(jail: &str) -> Error {
    Error::InvalidConfig {
        field: "jail".into(),
        reason: format!("no jail called `{jail}`"),
    }
}

impl Engine {
    /// Starts a builder applying bans through `sink`.
    pub fn builder(sink: Arc<dyn BanSink>) -> EngineBuilder {
        EngineBuilder {
            sink,
            jails: Vec::new(),
            state: None,
            clock: Arc::new(system_clock),
            retries: 2,
            retry_delay: Duration::from_millis(200),
        }
    }

    /// The engine's current time (Unix seconds).
    pub fn now(&self) -> i64 {
        (self.inner.clock)()
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The state database, if any: sources keep their log positions there
    /// ([`StateStore::position`], [`StateStore::set_position`]).
    pub fn state(&self) -> Option<&StateStore> {
        self.inner.state.as_ref()
    }

    /// The sink.
    pub fn sink(&self) -> &Arc<dyn BanSink> {
        &self.inner.sink
    }

    /// The names of the jails.
    pub fn jail_names(&self) -> Vec<String> {
        self.jails().keys().cloned().collect()
    }

    fn jails(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Jail>> {
        self.inner.jails.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_jail<T>(&self, jail: &str, f: impl FnOnce(&mut Jail) -> T) -> Result<T> {
        let mut jails = self.jails();
        let j = jails.get_mut(jail).ok_or_else(|| unknown_jail(jail))?;
        Ok(f(j))
    }

    fn restore(&self) -> Result<Vec<Change>> {
        let Some(state) = &self.inner.state else {
            return Ok(Vec::new());
        };
        let now = self.now();
        let mut changes = Vec::new();
        let mut jails = self.jails();
        for (name, jail) in jails.iter_mut() {
            for (target, count, end) in state.ban_counts(name)? {
                jail.set_ban_count(target, count, end.unwrap_or(now));
            }
        }
        for stored in state.bans()? {
            let ban = stored.ban;
            match jails.get_mut(&ban.jail) {
                Some(jail) if ban.remaining(now) != Some(0) => {
                    jail.restore(ban.clone());
                    changes.push(Change::Ban(ban));
                }
                _ => state.remove_ban(&ban.jail, &ban.target)?,
            }
        }
        for (name, jail) in jails.iter() {
            self.inner
                .metrics
                .jail(name)
                .set_current_bans(jail.bans().count() as u64);
        }
        Ok(changes)
    }

    /// Feeds one line of `jail`'s log through `matcher`; returns the bans it caused.
    pub async fn feed_line(
        &self,
        jail: &str,
        line: &[u8],
        matcher: &mut dyn LineMatcher,
    ) -> Result<Vec<Ban>> {
        let before = matcher.undecided_lines();
        let outcome = matcher.match_line(line);
        self.count_undecided(jail, matcher.undecided_lines().saturating_sub(before));
        self.count_and_report(jail, outcome).await
    }

    /// Counts lines a matcher gave up on (and warns: they may hide failures).
    pub(crate) fn count_undecided(&self, jail: &str, lines: u64) {
        if lines > 0 && self.jails().contains_key(jail) {
            tracing::warn!(
                jail,
                lines,
                "a failregex gave up on lines (backtrack budget; very long lines?): they may hold failures that were not counted"
            );
            self.inner.metrics.jail(jail).add_undecided(lines);
        }
    }

    /// Like [`feed_line`](Self::feed_line) for a line whose time is known (journal entries).
    pub async fn feed_line_at(
        &self,
        jail: &str,
        line: &[u8],
        time: f64,
        matcher: &mut dyn LineMatcher,
    ) -> Result<Vec<Ban>> {
        let before = matcher.undecided_lines();
        let outcome = matcher.match_line_at(line, time);
        self.count_undecided(jail, matcher.undecided_lines().saturating_sub(before));
        self.count_and_report(jail, outcome).await
    }

    /// Counts the lines a matcher already looked at (a poll's batch) and reports their
    /// failures to `jail`; the bans they cause go to the sink as one batch.
    pub(crate) async fn feed_outcomes(
        &self,
        jail: &str,
        outcomes: Vec<LineOutcome>,
    ) -> Result<Vec<Ban>> {
        if !self.jails().contains_key(jail) {
            return Err(unknown_jail(jail));
        }
        let metrics = self.inner.metrics.jail(jail);
        metrics.add_lines(outcomes.len() as u64);
        let mut bans = Vec::new();
        for outcome in outcomes {
            metrics.add_matches(u64::from(outcome.matches));
            bans.extend(self.decide(jail, &outcome.failures)?);
        }
        self.start_bans(bans).await
    }

    async fn count_and_report(&self, jail: &str, outcome: LineOutcome) -> Result<Vec<Ban>> {
        self.feed_outcomes(jail, vec![outcome]).await
    }

    /// Hands failures to `jail`; returns the bans they caused (applied, or queued on error).
    pub async fn report(&self, jail: &str, failures: &[Failure]) -> Result<Vec<Ban>> {
        let bans = self.decide(jail, failures)?;
        self.start_bans(bans).await
    }

    /// Counts failures in `jail`; returns the bans they cause (not applied yet).
    fn decide(&self, jail: &str, failures: &[Failure]) -> Result<Vec<Ban>> {
        if failures.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let metrics = self.inner.metrics.jail(jail);
        self.with_jail(jail, |j| {
            failures
                .iter()
                .filter_map(|f| match j.record(f, now) {
                    Verdict::Ignored => {
                        metrics.add_ignored(1);
                        None
                    }
                    Verdict::Banned(ban) => {
                        metrics.add_failures(1);
                        Some(ban)
                    }
                    Verdict::Counted(_) | Verdict::AlreadyBanned => {
                        metrics.add_failures(1);
                        None
                    }
                    Verdict::Stale => None,
                })
                .collect()
        })
    }

    /// Counts and applies new bans as one sink batch.
    async fn start_bans(&self, bans: Vec<Ban>) -> Result<Vec<Ban>> {
        if bans.is_empty() {
            return Ok(bans);
        }
        for ban in &bans {
            tracing::info!(jail = %ban.jail, target = %ban.target, until = ?ban.until, "ban");
            self.inner.metrics.jail(&ban.jail).ban_started();
        }
        self.apply(bans.iter().cloned().map(Change::Ban).collect())
            .await?;
        Ok(bans)
    }

    /// Bans `addr` in `jail` by hand (ignore lists do not apply). `bantime` overrides the
    /// jail's. Returns `None` if it was already banned.
    pub async fn ban(
        &self,
        jail: &str,
        addr: IpAddr,
        bantime: Option<BanTime>,
    ) -> Result<Option<Ban>> {
        let now = self.now();
        let ban = self.with_jail(jail, |j| j.ban(addr, now, bantime))?;
        if let Some(ban) = &ban {
            tracing::info!(jail, target = %ban.target, "manual ban");
            self.inner.metrics.jail(jail).ban_started();
            self.apply(vec![Change::Ban(ban.clone())]).await?;
        }
        Ok(ban)
    }

    /// Lifts the ban covering `addr` in `jail`; returns it (`None` if it was not banned).
    pub async fn unban(&self, jail: &str, addr: IpAddr) -> Result<Option<Ban>> {
        let ban = self.with_jail(jail, |j| j.unban(addr))?;
        if let Some(ban) = &ban {
            tracing::info!(jail, target = %ban.target, "manual unban");
            self.inner.metrics.jail(jail).ban_ended();
            self.apply(vec![Change::Unban {
                jail: jail.to_owned(),
                target: ban.target,
            }])
            .await?;
        }
        Ok(ban)
    }

    /// Lifts expired bans and retries queued changes. Call it about once a second. Once an
    /// hour it also prunes ban history older than each jail's
    /// [`ban_history`](crate::JailConfig::ban_history), in memory and (on a blocking thread) in
    /// the state database.
    pub async fn tick(&self) -> Result<()> {
        let now = self.now();
        let mut changes = Vec::new();
        let prune = now >= self.inner.next_prune.load(Ordering::Relaxed);
        let mut cutoffs = Vec::new();
        if prune {
            self.inner
                .next_prune
                .store(now + PRUNE_EVERY, Ordering::Relaxed);
        }
        for (name, jail) in self.jails().iter_mut() {
            if prune {
                jail.prune_ban_history(now);
                let age = i64::try_from(jail.config().ban_history().as_secs()).unwrap_or(i64::MAX);
                cutoffs.push((name.clone(), now.saturating_sub(age)));
            }
            for ban in jail.expire(now) {
                self.inner.metrics.jail(name).ban_ended();
                changes.push(Change::Unban {
                    jail: ban.jail,
                    target: ban.target,
                });
            }
        }
        if let (Some(state), false) = (self.inner.state.clone(), cutoffs.is_empty()) {
            let pruned = tokio::task::spawn_blocking(move || {
                cutoffs.iter().try_for_each(|(jail, cutoff)| {
                    state.prune_ban_counts(jail, *cutoff, now).map(drop)
                })
            })
            .await;
            match pruned {
                Ok(Err(e)) => tracing::warn!("pruning ban history: {e}"),
                Err(e) => tracing::warn!("pruning ban history: {e}"),
                Ok(Ok(())) => {}
            }
        }
        self.apply(changes).await
    }

    /// Runs [`tick`](Self::tick) every `period` in a background task (errors are logged).
    pub fn spawn_ticker(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                if let Err(e) = engine.tick().await {
                    tracing::warn!("sink still failing: {e}");
                }
            }
        })
    }

    /// Feeds lines from `lines` to `jail` until the channel closes. Sink errors are logged
    /// (the changes stay queued), never fatal.
    pub async fn run_lines(
        &self,
        jail: &str,
        mut matcher: impl LineMatcher,
        mut lines: tokio::sync::mpsc::Receiver<Vec<u8>>,
    ) -> Result<()> {
        if !self.jails().contains_key(jail) {
            return Err(unknown_jail(jail));
        }
        while let Some(line) = lines.recv().await {
            match self.feed_line(jail, &line, &mut matcher).await {
                Ok(_) | Err(Error::Sink { .. } | Error::Spawn { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Every jail's counters, tracked addresses and bans.
    pub fn status(&self) -> Vec<JailStatus> {
        let unapplied = self
            .inner
            .unapplied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.jails()
            .iter()
            .map(|(name, jail)| {
                let mut bans: Vec<StoredBan> = jail
                    .bans()
                    .map(|ban| StoredBan {
                        applied: !unapplied.contains(&(name.clone(), ban.target)),
                        ban: ban.clone(),
                    })
                    .collect();
                bans.sort_by_key(|b| (b.ban.start, b.ban.target));
                JailStatus {
                    name: name.clone(),
                    counters: self.inner.metrics.jail(name).snapshot(),
                    tracked: jail.tracked(),
                    bans,
                }
            })
            .collect()
    }

    /// Removes everything the sink created (lifting all bans there; saved state is kept).
    pub async fn cleanup_sink(&self) -> Result<()> {
        let _queue = self.inner.queue.lock().await;
        self.inner.sink.cleanup().await
    }

    /// Queues `changes` behind earlier unapplied ones and applies the queue as one batch.
    async fn apply(&self, changes: Vec<Change>) -> Result<()> {
        let mut queue = self.inner.queue.lock().await;
        queue.extend(changes);
        if queue.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let actions: Vec<BanAction> = queue
            .iter()
            .map(|change| match change {
                Change::Ban(ban) => BanAction::Ban {
                    jail: ban.jail.clone(),
                    target: ban.target,
                    timeout: ban.remaining(now).map(|s| Duration::from_secs(s.max(1))),
                },
                Change::Unban { jail, target } => BanAction::Unban {
                    jail: jail.clone(),
                    target: *target,
                },
            })
            .collect();
        let mut delay = self.inner.retry_delay;
        let mut attempt = 0;
        let result = loop {
            match self.inner.sink.apply(&actions).await {
                Ok(()) => break Ok(()),
                Err(e) if attempt >= self.inner.retries => break Err(e),
                Err(e) => {
                    tracing::warn!(
                        "{} sink failed (attempt {}): {e}",
                        self.inner.sink.name(),
                        attempt + 1
                    );
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                }
            }
        };
        let applied = result.is_ok();
        let changes: Vec<Change> = if applied {
            std::mem::take(&mut *queue)
        } else {
            queue.clone()
        };
        // Recorded while the queue is held, so records land in the order the sink saw them.
        let recorded = self.record(&changes, applied).await;
        drop(queue);
        recorded?;
        if let Err(e) = result {
            let jails: HashSet<&str> = actions.iter().map(BanAction::jail).collect();
            for jail in jails {
                self.inner.metrics.jail(jail).sink_error();
            }
            tracing::error!(
                "{} sink failed after {} attempts; {} changes queued: {e}",
                self.inner.sink.name(),
                attempt + 1,
                changes.len()
            );
            return Err(e);
        }
        Ok(())
    }

    /// Saves the outcome of a batch: bans with their applied flag, removals of unbanned ones,
    /// in one database transaction on a blocking thread (its commit waits for an fsync).
    async fn record(&self, changes: &[Change], applied: bool) -> Result<()> {
        {
            let mut unapplied = self
                .inner
                .unapplied
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for change in changes {
                match change {
                    Change::Ban(ban) => {
                        let key = (ban.jail.clone(), ban.target);
                        if applied {
                            unapplied.remove(&key);
                        } else {
                            unapplied.insert(key);
                        }
                    }
                    Change::Unban { jail, target } => {
                        unapplied.remove(&(jail.clone(), *target));
                    }
                }
            }
        }
        let Some(state) = self.inner.state.clone() else {
            return Ok(());
        };
        let records: Vec<Record> = changes
            .iter()
            .map(|change| match change {
                Change::Ban(ban) => Record::Save(StoredBan {
                    ban: ban.clone(),
                    applied,
                }),
                Change::Unban { jail, target } => Record::Remove(jail.clone(), *target),
            })
            .collect();
        crate::follow::blocking(move || state.record(&records)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::MemorySink;

    fn jail(name: &str, maxretry: u32, bantime: u64) -> JailConfig {
        JailConfig::builder(name)
            .with_maxretry(maxretry)
            .with_bantime(BanTime::For(Duration::from_secs(bantime)))
            .with_ignore_self(false)
            .with_ignore(["198.51.100.0/24"])
            .build()
            .expect("valid jail")
    }

    /// "fail <addr>" lines; the time comes from the shared test clock.
    fn matcher(clock: Arc<AtomicI64>) -> impl LineMatcher {
        move |line: &[u8]| {
            let text = std::str::from_utf8(line).ok()?;
            let addr = text.strip_prefix("fail ")?.parse().ok()?;
            Some(Failure {
                addr,
                time: clock.load(Ordering::SeqCst),
                user: None,
                attempts: 1,
            })
        }
    }

    struct Setup {
        engine: Engine,
        sink: Arc<MemorySink>,
        clock: Arc<AtomicI64>,
    }

    async fn setup(state: Option<StateStore>, sink: Arc<MemorySink>) -> Setup {
        let clock = Arc::new(AtomicI64::new(1_000_000));
        let c = Arc::clone(&clock);
        let mut builder = Engine::builder(sink.clone())
            .with_jail(jail("sshd", 3, 60))
            .with_clock(move || c.load(Ordering::SeqCst))
            .with_retries(1, Duration::from_millis(1));
        if let Some(state) = state {
            builder = builder.with_state(state);
        }
        Setup {
            engine: builder.build().await.expect("engine"),
            sink,
            clock,
        }
    }

    #[tokio::test]
    async fn lines_to_bans_to_sink_and_expiry() {
        let s = setup(None, Arc::new(MemorySink::new())).await;
        let mut m = matcher(Arc::clone(&s.clock));
        let attacker: IpAddr = "192.0.2.66".parse().expect("ip");
        for line in [
            "noise",
            "fail 192.0.2.66",
            "fail 198.51.100.1",
            "fail 192.0.2.66",
        ] {
            assert!(
                s.engine
                    .feed_line("sshd", line.as_bytes(), &mut m)
                    .await
                    .expect("feed")
                    .is_empty()
            );
        }
        let bans = s
            .engine
            .feed_line("sshd", b"fail 192.0.2.66", &mut m)
            .await
            .expect("feed");
        assert_eq!(bans.len(), 1);
        assert!(s.sink.is_banned("sshd", attacker));
        let counters = s.engine.metrics().jail("sshd").snapshot();
        assert_eq!(
            (
                counters.lines,
                counters.matches,
                counters.failures,
                counters.ignored
            ),
            (5, 4, 3, 1)
        );
        assert_eq!((counters.bans, counters.current_bans), (1, 1));
        // Expiry lifts the ban in the sink.
        s.clock.fetch_add(59, Ordering::SeqCst);
        s.engine.tick().await.expect("tick");
        assert!(s.sink.is_banned("sshd", attacker));
        s.clock.fetch_add(1, Ordering::SeqCst);
        s.engine.tick().await.expect("tick");
        assert!(s.sink.list("sshd").await.expect("list").is_empty());
        assert_eq!(s.engine.metrics().jail("sshd").snapshot().current_bans, 0);
        assert!(matches!(
            s.engine.feed_line("nope", b"fail 192.0.2.1", &mut m).await,
            Err(Error::InvalidConfig { .. })
        ));
        assert!(matches!(
            s.engine.feed_line("nope", b"noise", &mut m).await,
            Err(Error::InvalidConfig { .. })
        ));
        let jails: Vec<String> = s.engine.metrics().snapshot().into_keys().collect();
        assert_eq!(jails, ["sshd"], "an unknown jail gets no counters");
    }

    #[tokio::test]
    async fn failing_sink_is_retried_reported_and_never_marked_applied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateStore::open(dir.path().join("s.redb")).expect("state");
        let s = setup(Some(state.clone()), Arc::new(MemorySink::new())).await;
        let addr: IpAddr = "192.0.2.7".parse().expect("ip");
        // One retry is allowed: two failures make the call fail.
        s.sink.fail_next(2);
        let err = s
            .engine
            .ban("sshd", addr, None)
            .await
            .expect_err("sink down");
        assert!(matches!(err, Error::Sink { .. }));
        assert!(!s.sink.is_banned("sshd", addr));
        let status = s.engine.status();
        assert!(!status[0].bans[0].applied);
        assert_eq!(status[0].counters.sink_errors, 1);
        assert!(!state.bans().expect("bans")[0].applied);
        // A transient failure is absorbed by the retry, and the queue goes first.
        s.sink.fail_next(1);
        s.engine.tick().await.expect("retry succeeds");
        assert!(s.sink.is_banned("sshd", addr));
        assert!(s.engine.status()[0].bans[0].applied);
        assert!(state.bans().expect("bans")[0].applied);
    }

    #[tokio::test]
    async fn restart_restores_unexpired_bans_with_remaining_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let first = setup(
            Some(StateStore::open(&path).expect("state")),
            Arc::new(MemorySink::new()),
        )
        .await;
        first
            .engine
            .ban("sshd", "192.0.2.1".parse().expect("ip"), None)
            .await
            .expect("ban");
        first.clock.fetch_add(30, Ordering::SeqCst);
        first
            .engine
            .ban("sshd", "192.0.2.2".parse().expect("ip"), None)
            .await
            .expect("ban");
        first
            .engine
            .ban(
                "sshd",
                "2001:db8::9".parse().expect("ip"),
                Some(BanTime::Permanent),
            )
            .await
            .expect("ban");
        drop(first);

        // 40 s later: the first ban (60 s) has 20 s left, the second 50 s.
        let sink = Arc::new(MemorySink::new());
        let second = setup(
            Some(StateStore::open(&path).expect("state")),
            Arc::clone(&sink),
        )
        .await;
        second.clock.store(1_000_040, Ordering::SeqCst);
        let mut listed = sink.list("sshd").await.expect("list");
        listed.sort();
        assert_eq!(listed.len(), 3);
        let status = &second.engine.status()[0];
        assert_eq!(status.counters.current_bans, 3);
        let until: Vec<Option<i64>> = status.bans.iter().map(|b| b.ban.until).collect();
        assert_eq!(until, vec![Some(1_000_060), Some(1_000_090), None]);
        second.clock.store(1_000_061, Ordering::SeqCst);
        second.engine.tick().await.expect("tick");
        assert_eq!(sink.list("sshd").await.expect("list").len(), 2);
        drop(second);

        // Much later everything timed is over and not restored; the permanent ban is.
        let sink = Arc::new(MemorySink::new());
        let clock = Arc::new(AtomicI64::new(2_000_000));
        let c = Arc::clone(&clock);
        let third = Engine::builder(sink.clone())
            .with_jail(jail("sshd", 3, 60))
            .with_state(StateStore::open(&path).expect("state"))
            .with_clock(move || c.load(Ordering::SeqCst))
            .build()
            .await
            .expect("engine");
        assert_eq!(
            sink.list("sshd").await.expect("list"),
            vec!["2001:db8::9/128".parse::<IpNet>().expect("net")]
        );
        // Ban counts survive for incremental bans.
        assert_eq!(
            third
                .with_jail("sshd", |j| j
                    .ban_count("192.0.2.1/32".parse().expect("net")))
                .expect("jail"),
            1
        );
    }

    #[tokio::test]
    async fn run_lines_consumes_a_channel() {
        let s = setup(None, Arc::new(MemorySink::new())).await;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let engine = s.engine.clone();
        let m = matcher(Arc::clone(&s.clock));
        let task = tokio::spawn(async move { engine.run_lines("sshd", m, rx).await });
        for _ in 0..3 {
            tx.send(b"fail 2001:db8::5".to_vec()).await.expect("send");
        }
        drop(tx);
        task.await.expect("join").expect("run");
        assert!(s.sink.is_banned("sshd", "2001:db8::5".parse().expect("ip")));
    }
}
