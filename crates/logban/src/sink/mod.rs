//! Ban sinks: where bans are applied (a firewall, a command, memory).
//!
//! [`BanSink`] has two required methods, [`apply`](BanSink::apply) (a batch of bans and unbans,
//! atomic where the backend allows) and [`list`](BanSink::list) (what the backend really holds);
//! the rest have defaults. Every sink runs the conformance suite in `logban::conformance`
//! (feature `conformance`).
//!
//! Contract shared by all sinks:
//! - banning a target that is already banned refreshes its timeout;
//! - unbanning a target that is not banned succeeds (expiry may have removed it first);
//! - a target banned with a timeout disappears from [`list`](BanSink::list) once it runs out;
//! - an `Err` from [`apply`](BanSink::apply) means the caller must not consider the batch
//!   applied (the engine retries it and reports the failure).

mod command;
mod memory;
mod nftables;

use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;

pub use command::{CommandSink, CommandSinkBuilder};
pub use memory::MemorySink;
pub use nftables::{NftVerdict, NftablesSink, NftablesSinkBuilder};

use crate::Result;
use crate::jail::{JailConfig, PortRange, Protocol};

/// What a sink needs to know about a jail to set it up.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkJail {
    /// The jail's (validated) name.
    pub name: String,
    /// Destination ports the bans apply to; empty means all traffic.
    pub ports: Vec<PortRange>,
    /// The protocol the ports apply to.
    pub protocol: Protocol,
}

impl SinkJail {
    /// A jail blocking all traffic from its banned addresses. The name must pass
    /// [`validate_jail_name`](crate::jail::validate_jail_name).
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        crate::jail::validate_jail_name(&name)?;
        Ok(SinkJail {
            name,
            ports: Vec::new(),
            protocol: Protocol::Tcp,
        })
    }
}

impl From<&JailConfig> for SinkJail {
    fn from(config: &JailConfig) -> Self {
        SinkJail {
            name: config.name().to_owned(),
            ports: config.ports().to_vec(),
            protocol: config.protocol(),
        }
    }
}

/// One change for a sink to apply.
///
/// Exhaustive on purpose: a sink must apply every kind of action, so a new kind is a breaking
/// change that each sink has to handle, not one it may skip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanAction {
    /// Ban `target` in `jail` for `timeout` (`None`: until unbanned).
    Ban {
        /// The jail.
        jail: String,
        /// The address or prefix.
        target: IpNet,
        /// How long the ban still lasts.
        timeout: Option<Duration>,
    },
    /// Lift the ban of `target` in `jail`.
    Unban {
        /// The jail.
        jail: String,
        /// The address or prefix.
        target: IpNet,
    },
}

impl BanAction {
    /// The jail the action belongs to.
    pub fn jail(&self) -> &str {
        match self {
            BanAction::Ban { jail, .. } | BanAction::Unban { jail, .. } => jail,
        }
    }

    /// The address or prefix the action is about.
    pub fn target(&self) -> IpNet {
        match self {
            BanAction::Ban { target, .. } | BanAction::Unban { target, .. } => *target,
        }
    }
}

/// Something that applies bans.
#[async_trait]
pub trait BanSink: Send + Sync + std::fmt::Debug {
    /// Applies `actions` in order as one batch (one transaction where the backend has them).
    async fn apply(&self, actions: &[BanAction]) -> Result<()>;

    /// The targets the backend currently bans in `jail` (empty for an unknown jail).
    async fn list(&self, jail: &str) -> Result<Vec<IpNet>>;

    /// Creates whatever the jail needs (idempotent: safe to call on every start).
    async fn prepare(&self, _jail: &SinkJail) -> Result<()> {
        Ok(())
    }

    /// Bans one target.
    async fn ban(&self, jail: &str, target: IpNet, timeout: Option<Duration>) -> Result<()> {
        self.apply(&[BanAction::Ban {
            jail: jail.to_owned(),
            target,
            timeout,
        }])
        .await
    }

    /// Unbans one target.
    async fn unban(&self, jail: &str, target: IpNet) -> Result<()> {
        self.apply(&[BanAction::Unban {
            jail: jail.to_owned(),
            target,
        }])
        .await
    }

    /// Removes everything the sink created (firewall tables, ...). Bans are lifted.
    async fn cleanup(&self) -> Result<()> {
        Ok(())
    }

    /// A short name for logs and errors.
    fn name(&self) -> &str {
        "sink"
    }
}

/// The address text of a target: `192.0.2.1` for a host, `2001:db8::/64` for a prefix.
pub fn target_text(target: &IpNet) -> String {
    if target.prefix_len() == target.max_prefix_len() {
        target.addr().to_string()
    } else {
        target.to_string()
    }
}

/// Renders ports as `22<sep>8000<range>8100`.
fn join_ports(ports: &[PortRange], range: &str, sep: &str) -> String {
    let texts: Vec<String> = ports
        .iter()
        .map(|p| {
            if p.first == p.last {
                p.first.to_string()
            } else {
                format!("{}{range}{}", p.first, p.last)
            }
        })
        .collect();
    texts.join(sep)
}

fn sink_error(sink: &str, reason: impl Into<String>) -> crate::Error {
    crate::Error::Sink {
        sink: sink.to_owned(),
        reason: reason.into(),
    }
}

/// Runs `argv` without a shell, feeding `stdin`, within `timeout`; returns stdout, or an error
/// carrying stderr.
async fn run_argv(
    sink: &str,
    argv: &[String],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Vec<u8>> {
    use tokio::io::AsyncWriteExt;
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| sink_error(sink, "empty command"))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| crate::Error::Spawn {
            program: program.clone(),
            source,
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input)
            .await
            .map_err(|source| crate::Error::Spawn {
                program: program.clone(),
                source,
            })?;
    }
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| sink_error(sink, format!("`{program}` timed out after {timeout:?}")))?
        .map_err(|source| crate::Error::Spawn {
            program: program.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr: String = stderr.trim().chars().take(2000).collect();
        Err(sink_error(
            sink,
            format!("`{}` failed ({}): {stderr}", argv.join(" "), output.status),
        ))
    }
}

/// Bans recorded per jail with their expiry, for sinks that cannot ask the firewall what it
/// holds (memory, commands): expired entries drop out like kernel set timeouts.
#[derive(Debug, Default)]
pub(crate) struct BanTable {
    bans: std::sync::Mutex<
        std::collections::HashMap<
            String,
            std::collections::HashMap<IpNet, Option<tokio::time::Instant>>,
        >,
    >,
}

impl BanTable {
    fn bans(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<
            String,
            std::collections::HashMap<IpNet, Option<tokio::time::Instant>>,
        >,
    > {
        self.bans.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records what `actions` did.
    pub(crate) fn apply(&self, actions: &[BanAction]) {
        let now = tokio::time::Instant::now();
        let mut bans = self.bans();
        for action in actions {
            let set = bans.entry(action.jail().to_owned()).or_default();
            match action {
                BanAction::Ban {
                    target, timeout, ..
                } => {
                    set.insert(*target, timeout.map(|t| now + t));
                }
                BanAction::Unban { target, .. } => {
                    set.remove(target);
                }
            }
        }
    }

    /// The live bans of `jail` (expired ones are dropped).
    pub(crate) fn list(&self, jail: &str) -> Vec<IpNet> {
        let now = tokio::time::Instant::now();
        self.bans().get_mut(jail).map_or_else(Vec::new, |set| {
            set.retain(|_, until| until.is_none_or(|u| u > now));
            set.keys().copied().collect()
        })
    }

    /// True if `addr` falls in a live ban of `jail`.
    pub(crate) fn covers(&self, jail: &str, addr: std::net::IpAddr) -> bool {
        let now = tokio::time::Instant::now();
        self.bans().get(jail).is_some_and(|set| {
            set.iter()
                .any(|(net, until)| net.contains(&addr) && until.is_none_or(|u| u > now))
        })
    }

    /// Forgets every ban.
    pub(crate) fn clear(&self) {
        self.bans().clear();
    }
}
