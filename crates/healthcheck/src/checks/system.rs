//! Memory (MemAvailable), swap and load per core, from `/proc`.

use std::path::{Path, PathBuf};

use crate::check::{Check, Observation, Unit};
use crate::status::Reason;

async fn read_proc(root: &Path, file: &str) -> std::result::Result<String, Observation> {
    let path = root.join(file);
    tokio::fs::read_to_string(&path)
        .await
        .map_err(|e| Observation::unknown(Reason::CheckFailed, format!("{}: {e}", path.display())))
}

/// Values of `/proc/meminfo` in bytes, by key.
fn meminfo(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, rest) = line.split_once(':')?;
        if k != key {
            return None;
        }
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        Some(match parts.next() {
            Some("kB") => value.saturating_mul(1024),
            _ => value,
        })
    })
}

fn missing(key: &str) -> Observation {
    Observation::unknown(Reason::CheckFailed, format!("/proc/meminfo has no {key}"))
}

macro_rules! proc_check {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone)]
        pub struct $name {
            proc_root: PathBuf,
        }

        impl $name {
            /// A check reading `/proc`.
            pub fn new() -> $name {
                $name {
                    proc_root: PathBuf::from("/proc"),
                }
            }

            /// Reads another directory laid out as `/proc` (a container's, a test fixture).
            #[must_use]
            pub fn with_proc_root(mut self, root: impl Into<PathBuf>) -> Self {
                self.proc_root = root.into();
                self
            }
        }

        impl Default for $name {
            fn default() -> $name {
                $name::new()
            }
        }
    };
}

proc_check!(
    MemoryCheck,
    "Memory available for new work without swapping (`MemAvailable`). Metrics `available_percent`, `available_bytes`."
);
proc_check!(
    SwapCheck,
    "Swap in use. Metrics `free_percent` (100 without swap), `used_bytes`."
);
proc_check!(
    LoadCheck,
    "Load average divided by the number of cores. Metrics `load1_per_core`, `load5_per_core`, `load15_per_core`; thresholds apply to the 5-minute figure by default."
);

#[async_trait::async_trait]
impl Check for MemoryCheck {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn primary_metric(&self) -> Option<&'static str> {
        Some("available_percent")
    }

    async fn run(&self) -> Observation {
        let text = match read_proc(&self.proc_root, "meminfo").await {
            Ok(t) => t,
            Err(o) => return o,
        };
        let Some(total) = meminfo(&text, "MemTotal").filter(|t| *t > 0) else {
            return missing("MemTotal");
        };
        let Some(available) = meminfo(&text, "MemAvailable") else {
            return missing("MemAvailable");
        };
        let percent = available as f64 * 100.0 / total as f64;
        Observation::ok(format!(
            "{percent:.1} % available ({} of {})",
            crate::report::format_bytes(available),
            crate::report::format_bytes(total)
        ))
        .with_metric("available_percent", percent, Unit::Percent)
        .with_metric("available_bytes", available as f64, Unit::Bytes)
    }
}

#[async_trait::async_trait]
impl Check for SwapCheck {
    fn kind(&self) -> &'static str {
        "swap"
    }

    fn primary_metric(&self) -> Option<&'static str> {
        Some("free_percent")
    }

    async fn run(&self) -> Observation {
        let text = match read_proc(&self.proc_root, "meminfo").await {
            Ok(t) => t,
            Err(o) => return o,
        };
        let (Some(total), Some(free)) = (meminfo(&text, "SwapTotal"), meminfo(&text, "SwapFree"))
        else {
            return missing("SwapTotal/SwapFree");
        };
        let used = total.saturating_sub(free);
        let (percent, message) = if total == 0 {
            (100.0, "no swap configured".to_owned())
        } else {
            let p = free as f64 * 100.0 / total as f64;
            (
                p,
                format!("{p:.1} % free ({} used)", crate::report::format_bytes(used)),
            )
        };
        Observation::ok(message)
            .with_metric("free_percent", percent, Unit::Percent)
            .with_metric("used_bytes", used as f64, Unit::Bytes)
    }
}

#[async_trait::async_trait]
impl Check for LoadCheck {
    fn kind(&self) -> &'static str {
        "load"
    }

    fn primary_metric(&self) -> Option<&'static str> {
        Some("load5_per_core")
    }

    async fn run(&self) -> Observation {
        let text = match read_proc(&self.proc_root, "loadavg").await {
            Ok(t) => t,
            Err(o) => return o,
        };
        let loads: Vec<f64> = text
            .split_whitespace()
            .take(3)
            .filter_map(|v| v.parse().ok())
            .collect();
        let [l1, l5, l15] = loads[..] else {
            return Observation::unknown(Reason::CheckFailed, "/proc/loadavg is not three numbers");
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        Observation::ok(format!("load {l1:.2} {l5:.2} {l15:.2} on {cores} cores"))
            .with_metric("load1_per_core", l1 / cores, Unit::Number)
            .with_metric("load5_per_core", l5 / cores, Unit::Number)
            .with_metric("load15_per_core", l15 / cores, Unit::Number)
    }
}
