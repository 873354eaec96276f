//! Per-jail counters, updated lock-free by the engine and readable at any time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Live counters of one jail.
#[derive(Debug, Default)]
pub struct JailMetrics {
    lines: AtomicU64,
    matches: AtomicU64,
    failures: AtomicU64,
    ignored: AtomicU64,
    bans: AtomicU64,
    unbans: AtomicU64,
    current_bans: AtomicU64,
    sink_errors: AtomicU64,
    unreadable_logs: AtomicU64,
    undecided_lines: AtomicU64,
    cut_lines: AtomicU64,
}

/// A snapshot of [`JailMetrics`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JailCounters {
    /// Log lines seen.
    pub lines: u64,
    /// Lines a failregex matched (including ids that are not addresses).
    pub matches: u64,
    /// Failures counted by the jail (valid addresses, not ignored).
    pub failures: u64,
    /// Failures from ignored addresses (ignoreip, the host's own).
    pub ignored: u64,
    /// Bans started (automatic and manual).
    pub bans: u64,
    /// Bans lifted (expired or manual).
    pub unbans: u64,
    /// Bans active now.
    pub current_bans: u64,
    /// Failed sink calls (after retries).
    pub sink_errors: u64,
    /// Configured logs that cannot be read now (missing, a directory, a glob matching
    /// nothing); a missing file is read once it appears.
    #[serde(default)]
    pub unreadable_logs: u64,
    /// Lines on which a failregex gave up (its backtrack budget ran out, e.g. on a very long
    /// line): they may hold failures that were not counted.
    #[serde(default)]
    pub undecided_lines: u64,
    /// Lines longer than the source keeps (1 MiB for files), cut: a failure beyond their first
    /// part is not seen.
    #[serde(default)]
    pub cut_lines: u64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl JailMetrics {
    /// Counts `n` lines read.
    pub fn add_lines(&self, n: u64) {
        add(&self.lines, n);
    }
    /// Counts `n` filter matches.
    pub fn add_matches(&self, n: u64) {
        add(&self.matches, n);
    }
    /// Counts `n` failures the jail counted.
    pub fn add_failures(&self, n: u64) {
        add(&self.failures, n);
    }
    /// Counts `n` ignored failures.
    pub fn add_ignored(&self, n: u64) {
        add(&self.ignored, n);
    }
    /// Counts a new ban.
    pub fn ban_started(&self) {
        add(&self.bans, 1);
        add(&self.current_bans, 1);
    }
    /// Counts a lifted ban.
    pub fn ban_ended(&self) {
        add(&self.unbans, 1);
        // Saturating: a restored ban may end before any start was counted in this process.
        let _ = self
            .current_bans
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
    /// Sets the number of active bans (after restoring state).
    pub fn set_current_bans(&self, n: u64) {
        self.current_bans.store(n, Ordering::Relaxed);
    }
    /// Sets how many configured logs cannot be read now.
    pub fn set_unreadable_logs(&self, n: u64) {
        self.unreadable_logs.store(n, Ordering::Relaxed);
    }
    /// Counts `n` lines a failregex gave up on.
    pub fn add_undecided(&self, n: u64) {
        add(&self.undecided_lines, n);
    }
    /// Counts `n` lines a source cut.
    pub fn add_cut_lines(&self, n: u64) {
        add(&self.cut_lines, n);
    }
    /// Counts a failed sink call.
    pub fn sink_error(&self) {
        add(&self.sink_errors, 1);
    }

    /// The counters now.
    pub fn snapshot(&self) -> JailCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        JailCounters {
            lines: get(&self.lines),
            matches: get(&self.matches),
            failures: get(&self.failures),
            ignored: get(&self.ignored),
            bans: get(&self.bans),
            unbans: get(&self.unbans),
            current_bans: get(&self.current_bans),
            sink_errors: get(&self.sink_errors),
            unreadable_logs: get(&self.unreadable_logs),
            undecided_lines: get(&self.undecided_lines),
            cut_lines: get(&self.cut_lines),
        }
    }
}

/// Counters of all jails.
#[derive(Debug, Default)]
pub struct Metrics {
    jails: RwLock<BTreeMap<String, Arc<JailMetrics>>>,
}

impl Metrics {
    /// No jails yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters of `jail`, created on first use.
    pub fn jail(&self, jail: &str) -> Arc<JailMetrics> {
        if let Some(m) = self
            .jails
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(jail)
        {
            return Arc::clone(m);
        }
        let mut jails = self.jails.write().unwrap_or_else(|e| e.into_inner());
        Arc::clone(jails.entry(jail.to_owned()).or_default())
    }

    /// A snapshot of every jail's counters.
    pub fn snapshot(&self) -> BTreeMap<String, JailCounters> {
        self.jails
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, m)| (name.clone(), m.snapshot()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_accumulate_per_jail() {
        let metrics = Metrics::new();
        let sshd = metrics.jail("sshd");
        sshd.add_lines(10);
        sshd.add_matches(4);
        sshd.add_failures(3);
        sshd.add_ignored(1);
        sshd.ban_started();
        sshd.ban_started();
        sshd.ban_ended();
        metrics.jail("sshd").sink_error();
        metrics.jail("web").add_lines(2);
        metrics.jail("web").set_unreadable_logs(2);
        let snap = metrics.snapshot();
        assert_eq!(
            snap["sshd"],
            JailCounters {
                lines: 10,
                matches: 4,
                failures: 3,
                ignored: 1,
                bans: 2,
                unbans: 1,
                current_bans: 1,
                sink_errors: 1,
                unreadable_logs: 0,
                undecided_lines: 0,
                cut_lines: 0,
            }
        );
        assert_eq!((snap["web"].lines, snap["web"].unreadable_logs), (2, 2));
        metrics.jail("web").ban_ended();
        assert_eq!(metrics.jail("web").snapshot().current_bans, 0);
    }
}
