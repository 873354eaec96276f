//! File freshness: how long ago a file was last modified (a backup's status file, a log).

use std::path::PathBuf;
use std::time::SystemTime;

use crate::check::{Check, Observation, Unit};
use crate::status::Reason;

/// Reports the age of a file's last modification (metric `age_seconds`); a missing file is
/// critical. Thresholds say how old is too old: `warn = "93600"` warns after 26 hours.
#[derive(Debug, Clone)]
pub struct FileFreshnessCheck {
    path: PathBuf,
}

impl FileFreshnessCheck {
    /// A check of `path`.
    pub fn new(path: impl Into<PathBuf>) -> FileFreshnessCheck {
        FileFreshnessCheck { path: path.into() }
    }
}

#[async_trait::async_trait]
impl Check for FileFreshnessCheck {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn primary_metric(&self) -> Option<&'static str> {
        Some("age_seconds")
    }

    async fn run(&self) -> Observation {
        let meta = match tokio::fs::metadata(&self.path).await {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Observation::critical(
                    Reason::Missing,
                    format!("{} does not exist", self.path.display()),
                );
            }
            Err(e) => {
                return Observation::unknown(
                    Reason::CheckFailed,
                    format!("{}: {e}", self.path.display()),
                );
            }
        };
        let modified = match meta.modified() {
            Ok(m) => m,
            Err(e) => {
                return Observation::unknown(
                    Reason::CheckFailed,
                    format!("{}: {e}", self.path.display()),
                );
            }
        };
        // A modification time in the future counts as age 0.
        let age = SystemTime::now()
            .duration_since(modified)
            .map_or(0.0, |d| d.as_secs_f64());
        Observation::ok(format!(
            "{} modified {} ago",
            self.path.display(),
            humantime::format_duration(std::time::Duration::from_secs(age as u64))
        ))
        .with_metric("age_seconds", age, Unit::Seconds)
    }
}
