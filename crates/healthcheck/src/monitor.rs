//! Running checks: each under its own timeout, all at once; thresholds, flap damping, history
//! and alerts on a change of state.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::alert::{Alert, AlertSink};
use crate::check::{Check, Metric, Observation};
use crate::error::{Result, invalid};
use crate::range::Thresholds;
use crate::status::{Reason, Status};

/// How many past runs each check keeps for the HTML charts (bounded memory).
pub const HISTORY_LEN: usize = 60;

/// Flap damping: a new state is reported once `needed` of the last `window` runs had it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlapDamping {
    needed: usize,
    window: usize,
}

impl FlapDamping {
    /// `needed` of the last `window` runs (`1 <= needed <= window <= 100`).
    pub fn new(needed: usize, window: usize) -> Result<FlapDamping> {
        if needed == 0 || needed > window || window > 100 {
            return Err(invalid(
                "flap",
                format!("need 1 <= needed <= window <= 100, got {needed} of {window}"),
            ));
        }
        Ok(FlapDamping { needed, window })
    }

    /// No damping: every run's state is reported.
    pub fn none() -> FlapDamping {
        FlapDamping {
            needed: 1,
            window: 1,
        }
    }
}

impl Default for FlapDamping {
    fn default() -> FlapDamping {
        FlapDamping::none()
    }
}

/// A check with its name, timeout, thresholds and damping, as the monitor runs it.
#[derive(Clone)]
pub struct CheckEntry {
    name: String,
    check: Arc<dyn Check>,
    timeout: Duration,
    thresholds: Vec<(&'static str, Thresholds)>,
    flap: FlapDamping,
}

impl std::fmt::Debug for CheckEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckEntry")
            .field("name", &self.name)
            .field("kind", &self.check.kind())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl CheckEntry {
    /// Starts an entry for `check` named `name` (letters, digits, `_`, `-`, `.`).
    pub fn builder(name: impl Into<String>, check: Arc<dyn Check>) -> CheckEntryBuilder {
        CheckEntryBuilder {
            name: name.into(),
            check,
            timeout: Duration::from_secs(5),
            thresholds: Vec::new(),
            flap: FlapDamping::none(),
        }
    }

    /// The entry's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The check.
    pub fn check(&self) -> &Arc<dyn Check> {
        &self.check
    }

    /// The timeout of one run.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Builds a [`CheckEntry`].
#[must_use]
pub struct CheckEntryBuilder {
    name: String,
    check: Arc<dyn Check>,
    timeout: Duration,
    thresholds: Vec<(Option<&'static str>, Thresholds)>,
    flap: FlapDamping,
}

impl CheckEntryBuilder {
    /// The timeout of one run (default 5 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Thresholds on the check's primary metric.
    pub fn with_thresholds(mut self, thresholds: Thresholds) -> Self {
        self.thresholds.push((None, thresholds));
        self
    }

    /// Thresholds on metric `metric`.
    pub fn with_metric_thresholds(mut self, metric: &'static str, thresholds: Thresholds) -> Self {
        self.thresholds.push((Some(metric), thresholds));
        self
    }

    /// Flap damping (default none).
    pub fn with_flap_damping(mut self, flap: FlapDamping) -> Self {
        self.flap = flap;
        self
    }

    /// Checks the name, timeout and that thresholds name a metric.
    pub fn build(self) -> Result<CheckEntry> {
        validate_name(&self.name)?;
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(3600) {
            return Err(invalid(
                "timeout",
                format!("check `{}`: must be between 1 ms and 1 h", self.name),
            ));
        }
        let mut thresholds = Vec::new();
        for (metric, t) in self.thresholds {
            let metric = match metric.or_else(|| self.check.primary_metric()) {
                Some(m) => m,
                None => {
                    return Err(invalid(
                        "metric",
                        format!(
                            "check `{}` ({}) has no primary metric; name the metric its thresholds apply to",
                            self.name,
                            self.check.kind()
                        ),
                    ));
                }
            };
            thresholds.push((metric, t));
        }
        Ok(CheckEntry {
            name: self.name,
            check: self.check,
            timeout: self.timeout,
            thresholds,
            flap: self.flap,
        })
    }
}

pub(crate) fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            format!("`{name}`: use 1-128 letters, digits, `_`, `-` or `.`"),
        ))
    }
}

/// One past run, for history charts.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HistoryPoint {
    /// Unix time of the run, seconds.
    pub at: u64,
    /// The run's own (undamped) state.
    pub status: Status,
    /// How long the run took, seconds.
    pub duration: f64,
    /// The primary (or first) metric's value, if any.
    pub value: Option<f64>,
}

/// A metric with the thresholds that applied to it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeasuredMetric {
    /// The metric.
    #[serde(flatten)]
    pub metric: Metric,
    /// Warning range, as written.
    pub warn: Option<String>,
    /// Critical range, as written.
    pub crit: Option<String>,
}

/// One check's result in a report.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    /// The entry's name.
    pub name: String,
    /// The kind of check.
    pub kind: &'static str,
    /// The reported state after flap damping.
    pub status: Status,
    /// This run's own state after thresholds (before damping).
    pub raw_status: Status,
    /// Why.
    pub reason: Reason,
    /// One line for a person.
    pub message: String,
    /// Measured values with their thresholds.
    pub metrics: Vec<MeasuredMetric>,
    /// How long the run took, seconds.
    pub duration: f64,
    /// The last runs, oldest first (this one included).
    pub history: Vec<HistoryPoint>,
}

/// The result of one run of every check.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The host's name (from the configuration or `/etc/hostname`).
    pub host: String,
    /// Unix time the run started, seconds.
    pub started: u64,
    /// Wall time of the whole run, seconds.
    pub duration: f64,
    /// The worst reported state.
    pub status: Status,
    /// Every check, in configuration order.
    pub checks: Vec<CheckResult>,
    /// State changes of this run (what alert sinks were sent).
    pub alerts: Vec<Alert>,
}

#[derive(Default)]
struct Tracker {
    window: VecDeque<Status>,
    reported: Option<Status>,
    history: VecDeque<HistoryPoint>,
}

impl Tracker {
    /// Records a run's state; returns the previous reported state when it changes.
    fn record(&mut self, raw: Status, flap: FlapDamping) -> (Status, Option<Option<Status>>) {
        self.window.push_back(raw);
        while self.window.len() > flap.window {
            self.window.pop_front();
        }
        let seen = self.window.iter().filter(|s| **s == raw).count();
        let previous = self.reported;
        let next = match previous {
            None => raw,
            Some(current) if current != raw && seen >= flap.needed => raw,
            Some(current) => current,
        };
        self.reported = Some(next);
        let changed = previous != Some(next);
        (next, changed.then_some(previous))
    }
}

/// Runs checks, keeps their state between runs and sends alerts on changes of state.
///
/// All checks of a run start at once; each is bounded by its own timeout, so the run takes as long
/// as the slowest timeout at most.
pub struct Monitor {
    host: String,
    entries: Vec<CheckEntry>,
    sinks: Vec<Arc<dyn AlertSink>>,
    trackers: Mutex<Vec<Tracker>>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("host", &self.host)
            .field("entries", &self.entries)
            .field("sinks", &self.sinks.len())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Monitor`].
#[must_use]
#[derive(Default)]
pub struct MonitorBuilder {
    host: Option<String>,
    entries: Vec<CheckEntry>,
    sinks: Vec<Arc<dyn AlertSink>>,
}

impl MonitorBuilder {
    /// The host name in reports (default: `/etc/hostname`, else `localhost`).
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Adds a check.
    pub fn with_check(mut self, entry: CheckEntry) -> Self {
        self.entries.push(entry);
        self
    }

    /// Adds an alert sink.
    pub fn with_sink(mut self, sink: Arc<dyn AlertSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Checks that names are unique.
    pub fn build(self) -> Result<Monitor> {
        let mut names: Vec<&str> = self.entries.iter().map(|e| e.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid("name", format!("two checks are named `{}`", w[0])));
        }
        let host = self.host.unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".to_owned())
        });
        let trackers = self.entries.iter().map(|_| Tracker::default()).collect();
        Ok(Monitor {
            host,
            entries: self.entries,
            sinks: self.sinks,
            trackers: Mutex::new(trackers),
        })
    }
}

impl Monitor {
    /// Starts a monitor.
    pub fn builder() -> MonitorBuilder {
        MonitorBuilder::default()
    }

    /// The checks.
    pub fn entries(&self) -> &[CheckEntry] {
        &self.entries
    }

    /// Runs every check once (concurrently, each under its timeout), updates states and history,
    /// and sends an alert to every sink for each change of reported state.
    ///
    /// A sink that fails is logged (`tracing`) and does not fail the run. Alerts are delivered
    /// before this returns (the report's `duration` does not include them), so a webhook that is
    /// down delays the return by its attempts and backoff.
    pub async fn run(&self) -> Report {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let clock = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (index, entry) in self.entries.iter().enumerate() {
            let check = entry.check.clone();
            let timeout = entry.timeout;
            tasks.spawn(async move {
                let begun = Instant::now();
                let observation = match tokio::time::timeout(timeout, check.run()).await {
                    Ok(o) => o,
                    Err(_) => Observation::critical(
                        Reason::Timeout,
                        format!("no answer within {}", humantime::format_duration(timeout)),
                    ),
                };
                (index, observation, begun.elapsed())
            });
        }
        let mut observed: Vec<Option<(Observation, Duration)>> = vec![None; self.entries.len()];
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((index, observation, took)) => observed[index] = Some((observation, took)),
                Err(e) => tracing::error!("a check task failed: {e}"),
            }
        }
        let mut checks = Vec::with_capacity(self.entries.len());
        let mut alerts = Vec::new();
        {
            let mut trackers = self.trackers.lock().unwrap_or_else(|p| p.into_inner());
            for ((entry, slot), tracker) in
                self.entries.iter().zip(observed).zip(trackers.iter_mut())
            {
                let (observation, took) = slot.unwrap_or_else(|| {
                    (
                        Observation::unknown(Reason::CheckFailed, "the check panicked"),
                        Duration::ZERO,
                    )
                });
                let result = evaluate(
                    entry,
                    observation,
                    took,
                    started,
                    tracker,
                    &mut alerts,
                    &self.host,
                );
                checks.push(result);
            }
        }
        let status = checks.iter().fold(Status::Ok, |acc, c| acc.worst(c.status));
        let report = Report {
            host: self.host.clone(),
            started,
            duration: clock.elapsed().as_secs_f64(),
            status,
            checks,
            alerts,
        };
        for alert in &report.alerts {
            for sink in &self.sinks {
                if let Err(e) = sink.send(alert).await {
                    tracing::warn!(check = %alert.check, "alert not delivered: {e}");
                }
            }
        }
        report
    }
}

fn evaluate(
    entry: &CheckEntry,
    observation: Observation,
    took: Duration,
    started: u64,
    tracker: &mut Tracker,
    alerts: &mut Vec<Alert>,
    host: &str,
) -> CheckResult {
    let mut raw = observation.status;
    let mut reason = observation.reason;
    let mut message = observation.message;
    let metrics: Vec<MeasuredMetric> = observation
        .metrics
        .into_iter()
        .map(|metric| {
            let mut measured = MeasuredMetric {
                metric,
                warn: None,
                crit: None,
            };
            for (name, t) in &entry.thresholds {
                if *name == measured.metric.name {
                    measured.warn = t.warn.map(|r| r.to_string());
                    measured.crit = t.crit.map(|r| r.to_string());
                    let s = t.status(measured.metric.value);
                    if s.severity() > raw.severity() {
                        raw = s;
                        reason = Reason::Threshold;
                        message = format!(
                            "{message}; {} = {} is {}",
                            measured.metric.name,
                            crate::report::format_value(measured.metric.value),
                            s
                        );
                    }
                }
            }
            measured
        })
        .collect();
    let (status, change) = tracker.record(raw, entry.flap);
    let primary = entry
        .thresholds
        .first()
        .map(|(n, _)| *n)
        .or_else(|| entry.check.primary_metric());
    let value = metrics
        .iter()
        .find(|m| Some(m.metric.name) == primary)
        .or(metrics.first())
        .map(|m| m.metric.value);
    tracker.history.push_back(HistoryPoint {
        at: started,
        status: raw,
        duration: took.as_secs_f64(),
        value,
    });
    while tracker.history.len() > HISTORY_LEN {
        tracker.history.pop_front();
    }
    if let Some(previous) = change {
        // The first run of a check alerts only when it is not OK.
        if previous.is_some() || status != Status::Ok {
            alerts.push(Alert {
                host: host.to_owned(),
                check: entry.name.clone(),
                kind: entry.check.kind(),
                previous,
                status,
                reason,
                message: message.clone(),
                at: started,
            });
        }
    }
    CheckResult {
        name: entry.name.clone(),
        kind: entry.check.kind(),
        status,
        raw_status: raw,
        reason,
        message,
        metrics,
        duration: took.as_secs_f64(),
        history: tracker.history.iter().copied().collect(),
    }
}
