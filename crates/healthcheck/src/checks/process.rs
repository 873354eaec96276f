//! A process running, by name or by pidfile.

use std::path::{Path, PathBuf};

use crate::check::{Check, Observation, Unit};
use crate::status::Reason;

#[derive(Debug, Clone)]
enum Match {
    Name(String),
    Pidfile(PathBuf),
}

/// Looks for a process by its name (`/proc/PID/comm` or the base name of `argv[0]`) or by the
/// PID in a pidfile (alive and not a zombie). Metric `processes`.
#[derive(Debug, Clone)]
pub struct ProcessCheck {
    matching: Match,
    proc_root: PathBuf,
}

impl ProcessCheck {
    /// Processes named `name`.
    pub fn by_name(name: impl Into<String>) -> ProcessCheck {
        ProcessCheck {
            matching: Match::Name(name.into()),
            proc_root: PathBuf::from("/proc"),
        }
    }

    /// The process whose PID is in `pidfile`.
    pub fn by_pidfile(pidfile: impl Into<PathBuf>) -> ProcessCheck {
        ProcessCheck {
            matching: Match::Pidfile(pidfile.into()),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// True when `/proc/PID` exists and is not a zombie.
fn alive(proc_root: &Path, pid: u32) -> bool {
    match std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")) {
        // The state follows the last `)`, since the command name may contain one.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn count_named(proc_root: &Path, name: &str) -> std::io::Result<usize> {
    // comm is cut to 15 bytes by the kernel.
    let comm_name = name.get(..15).unwrap_or(name);
    let mut count = 0;
    for entry in std::fs::read_dir(proc_root)? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let argv0 = std::fs::read(dir.join("cmdline"))
            .ok()
            .and_then(|c| {
                c.split(|b| *b == 0)
                    .next()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
            })
            .unwrap_or_default();
        let base = argv0.rsplit('/').next().unwrap_or_default();
        if (comm.trim_end() == comm_name || base == name) && alive(proc_root, pid) {
            count += 1;
        }
    }
    Ok(count)
}

#[async_trait::async_trait]
impl Check for ProcessCheck {
    fn kind(&self) -> &'static str {
        "process"
    }

    fn primary_metric(&self) -> Option<&'static str> {
        Some("processes")
    }

    async fn run(&self) -> Observation {
        let matching = self.matching.clone();
        let root = self.proc_root.clone();
        let found = tokio::task::spawn_blocking(move || match &matching {
            Match::Name(name) => count_named(&root, name)
                .map(|n| (n, format!("{n} process(es) named {name}")))
                .map_err(|e| (Reason::CheckFailed, format!("{}: {e}", root.display()))),
            Match::Pidfile(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| (Reason::Missing, format!("pidfile {}: {e}", path.display())))?;
                let pid: u32 = text.trim().parse().map_err(|_| {
                    (
                        Reason::CheckFailed,
                        format!("pidfile {}: `{}` is not a PID", path.display(), text.trim()),
                    )
                })?;
                let n = usize::from(alive(&root, pid));
                Ok((
                    n,
                    format!(
                        "PID {pid} from {} {}",
                        path.display(),
                        if n == 1 {
                            "is running"
                        } else {
                            "is not running"
                        }
                    ),
                ))
            }
        })
        .await;
        match found {
            Ok(Ok((0, message))) => Observation::critical(Reason::NotRunning, message).with_metric(
                "processes",
                0.0,
                Unit::Count,
            ),
            Ok(Ok((n, message))) => {
                Observation::ok(message).with_metric("processes", n as f64, Unit::Count)
            }
            Ok(Err((Reason::Missing, message))) => {
                Observation::critical(Reason::NotRunning, message)
            }
            Ok(Err((reason, message))) => Observation::unknown(reason, message),
            Err(e) => {
                Observation::unknown(Reason::CheckFailed, format!("process scan failed: {e}"))
            }
        }
    }
}
