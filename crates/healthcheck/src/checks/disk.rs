//! Disk space available to non-root users, free inodes, and read-only mounts.
//!
//! `statvfs` can hang forever on a dead NFS server, so it runs on a thread of its own; the
//! monitor's timeout abandons the wait. While a probe is still running, later runs wait for its
//! answer instead of starting another thread, so a hung mount costs one thread, not one per run.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use rustix::fs::StatVfsMountFlags;

use crate::check::{Check, Observation, Unit};
use crate::status::Reason;

/// Checks the filesystem holding a path. Metrics `free_percent` and `free_bytes` (space
/// available to non-root users), `inodes_free_percent`; a read-only mount is critical unless
/// expected.
#[derive(Debug, Clone)]
pub struct DiskCheck {
    path: PathBuf,
    expect_read_only: bool,
    in_flight: Arc<Mutex<Option<Probe>>>,
}

/// The answer of a running probe, `None` until it comes.
type Probe = watch::Receiver<Option<Result<Figures, (std::io::ErrorKind, String)>>>;

#[derive(Debug, Clone, Copy)]
struct Figures {
    free_bytes: u64,
    free_percent: f64,
    inodes_free_percent: f64,
    read_only: bool,
}

impl DiskCheck {
    /// A check of the filesystem holding `path`.
    pub fn new(path: impl Into<PathBuf>) -> DiskCheck {
        DiskCheck {
            path: path.into(),
            expect_read_only: false,
            in_flight: Arc::new(Mutex::new(None)),
        }
    }

    /// Accepts a read-only mount (for example a mounted snapshot).
    #[must_use]
    pub fn with_read_only_expected(mut self, expected: bool) -> Self {
        self.expect_read_only = expected;
        self
    }
}

fn statvfs(path: &Path) -> std::io::Result<Figures> {
    let s = rustix::fs::statvfs(path)?;
    let percent = |part: u64, whole: u64| {
        if whole == 0 {
            100.0
        } else {
            part as f64 * 100.0 / whole as f64
        }
    };
    Ok(Figures {
        free_bytes: s.f_bavail.saturating_mul(s.f_frsize),
        // Non-root users see f_bavail of f_blocks (root's reserve is neither free nor theirs).
        free_percent: percent(s.f_bavail, s.f_blocks),
        inodes_free_percent: percent(s.f_favail, s.f_files),
        read_only: s.f_flag.contains(StatVfsMountFlags::RDONLY),
    })
}

impl DiskCheck {
    /// The running probe, or a new one on its own thread.
    fn probe(&self) -> std::io::Result<Probe> {
        let mut slot = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = slot.as_ref() {
            return Ok(running.clone());
        }
        let (tx, rx) = watch::channel(None);
        let path = self.path.clone();
        let in_flight = self.in_flight.clone();
        std::thread::Builder::new()
            .name("healthcheck-statvfs".into())
            .spawn(move || {
                let result = statvfs(&path).map_err(|e| (e.kind(), e.to_string()));
                // Later runs start a fresh probe; runs already waiting still get this answer.
                *in_flight.lock().unwrap_or_else(|p| p.into_inner()) = None;
                let _ = tx.send(Some(result));
            })?;
        *slot = Some(rx.clone());
        Ok(rx)
    }
}

#[async_trait::async_trait]
impl Check for DiskCheck {
    fn kind(&self) -> &'static str {
        "disk"
    }

    fn primary_metric(&self) -> Option<&'static str> {
        Some("free_percent")
    }

    async fn run(&self) -> Observation {
        let mut probe = match self.probe() {
            Ok(p) => p,
            Err(e) => {
                return Observation::unknown(
                    Reason::CheckFailed,
                    format!("cannot start a thread: {e}"),
                );
            }
        };
        let answer = match probe.wait_for(Option::is_some).await {
            Ok(answer) => answer.clone(),
            Err(_) => None,
        };
        let figures = match answer {
            Some(Ok(f)) => f,
            Some(Err((std::io::ErrorKind::NotFound, e))) => {
                return Observation::critical(
                    Reason::Missing,
                    format!("{}: {e}", self.path.display()),
                );
            }
            Some(Err((_, e))) => {
                return Observation::unknown(
                    Reason::CheckFailed,
                    format!("{}: {e}", self.path.display()),
                );
            }
            None => {
                return Observation::unknown(Reason::CheckFailed, "the statvfs thread died");
            }
        };
        let mut observation = if figures.read_only && !self.expect_read_only {
            Observation::critical(
                Reason::ReadOnly,
                format!("{} is mounted read-only", self.path.display()),
            )
        } else {
            Observation::ok(format!(
                "{}: {:.1} % free ({}), {:.1} % inodes free",
                self.path.display(),
                figures.free_percent,
                crate::report::format_bytes(figures.free_bytes),
                figures.inodes_free_percent
            ))
        };
        observation.metrics = vec![
            crate::check::Metric::new("free_percent", figures.free_percent, Unit::Percent),
            crate::check::Metric::new("free_bytes", figures.free_bytes as f64, Unit::Bytes),
            crate::check::Metric::new(
                "inodes_free_percent",
                figures.inodes_free_percent,
                Unit::Percent,
            ),
        ];
        observation
    }
}
