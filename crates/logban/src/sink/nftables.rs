//! The nftables sink: one `inet` table owned by logban, an IPv4 and an IPv6 set per jail with
//! kernel timeouts, and one input chain per jail that drops (or rejects) their members.
//!
//! Every change is one `nft -f -` transaction: the kernel applies all of a batch or none of it.
//! For jail `sshd` in table `logban` the sink creates
//!
//! ```text
//! table inet logban {
//!     set v4_sshd { type ipv4_addr; flags interval, timeout; }
//!     set v6_sshd { type ipv6_addr; flags interval, timeout; }
//!     chain jail_sshd {
//!         type filter hook input priority filter - 10; policy accept;
//!         tcp dport { 22 } ip saddr @v4_sshd drop
//!         tcp dport { 22 } ip6 saddr @v6_sshd drop
//!     }
//! }
//! ```
//!
//! nftables names cannot be quoted, so jail names are escaped: `-`, `.` and `_` become `_2d`,
//! `_2e` and `_5f` (`nginx-http-auth` → `v4_nginx_2dhttp_2dauth`), keeping names distinct.
//! Creation is idempotent (`add` of existing objects is a no-op, the jail chain is flushed and
//! refilled), unbanning an absent element is made harmless by adding it first in the same
//! transaction, and re-banning refreshes the timeout by deleting and re-adding.

use std::fmt::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;

use super::{BanAction, BanSink, SinkJail, run_argv, sink_error};
use crate::jail::Protocol;
use crate::{Error, Result};

/// What happens to packets from banned addresses.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NftVerdict {
    /// Silently dropped (the default).
    #[default]
    Drop,
    /// Rejected: TCP gets a reset (the client's connect fails at once), other protocols an
    /// ICMP port-unreachable.
    Reject,
}

/// Builder for [`NftablesSink`].
#[derive(Debug, Clone)]
pub struct NftablesSinkBuilder {
    table: String,
    command: Vec<String>,
    verdict: NftVerdict,
    priority: i32,
    timeout: Duration,
}

impl Default for NftablesSinkBuilder {
    fn default() -> Self {
        Self {
            table: "logban".to_owned(),
            command: vec!["nft".to_owned()],
            verdict: NftVerdict::Drop,
            priority: -10,
            timeout: Duration::from_secs(30),
        }
    }
}

impl NftablesSinkBuilder {
    /// The table's name (default `logban`); letters, digits and `_`.
    pub fn with_table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The command that runs `nft` (default `["nft"]`). A prefix such as
    /// `["ip", "netns", "exec", "web", "nft"]` targets another network namespace.
    pub fn with_command<S: AsRef<str>>(mut self, argv: impl IntoIterator<Item = S>) -> Self {
        self.command = argv.into_iter().map(|s| s.as_ref().to_owned()).collect();
        self
    }

    /// Shorthand for `with_command(["ip", "netns", "exec", netns, "nft"])`.
    pub fn with_netns(self, netns: &str) -> Self {
        self.with_command(["ip", "netns", "exec", netns, "nft"])
    }

    /// Drop (default) or reject.
    pub fn with_verdict(mut self, verdict: NftVerdict) -> Self {
        self.verdict = verdict;
        self
    }

    /// Priority of the jails' input chains (default -10: before the usual `filter` chains).
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// How long one `nft` run may take (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<NftablesSink> {
        let table_ok = !self.table.is_empty()
            && self.table.len() <= 64
            && self
                .table
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic())
            && self
                .table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !table_ok {
            return Err(Error::InvalidConfig {
                field: "nftables table".into(),
                reason: format!("`{}` must be letters, digits and `_`", self.table),
            });
        }
        if self.command.is_empty() {
            return Err(Error::InvalidConfig {
                field: "nftables command".into(),
                reason: "empty".into(),
            });
        }
        Ok(NftablesSink { config: self })
    }
}

/// Bans through nftables sets with kernel timeouts; see the module docs.
#[derive(Debug)]
pub struct NftablesSink {
    config: NftablesSinkBuilder,
}

/// Escapes a (validated) jail name into an nftables identifier fragment.
fn escape(jail: &str) -> String {
    let mut out = String::with_capacity(jail.len());
    for c in jail.chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' => out.push(c),
            other => {
                let _ = write!(out, "_{:02x}", u32::from(other));
            }
        }
    }
    out
}

fn set_name(jail: &str, target: &IpNet) -> String {
    match target {
        IpNet::V4(_) => format!("v4_{}", escape(jail)),
        IpNet::V6(_) => format!("v6_{}", escape(jail)),
    }
}

/// Longest timeout passed to the kernel; longer bans are re-applied by the engine's restore.
const MAX_TIMEOUT: Duration = Duration::from_secs(3650 * 86_400);

impl NftablesSink {
    /// Starts a builder.
    pub fn builder() -> NftablesSinkBuilder {
        NftablesSinkBuilder::default()
    }

    /// The table this sink owns.
    pub fn table(&self) -> &str {
        &self.config.table
    }

    async fn nft(&self, args: &[&str], stdin: Option<&str>) -> Result<Vec<u8>> {
        let mut argv = self.config.command.clone();
        argv.extend(args.iter().map(|s| (*s).to_owned()));
        run_argv(
            "nftables",
            &argv,
            stdin.map(str::as_bytes),
            self.config.timeout,
        )
        .await
    }

    /// Runs `script` as one transaction.
    async fn transaction(&self, script: &str) -> Result<()> {
        self.nft(&["-f", "-"], Some(script)).await.map(drop)
    }

    async fn list_set(&self, set: &str) -> Result<Vec<IpNet>> {
        let table = &self.config.table;
        let out = match self
            .nft(&["-j", "list", "set", "inet", table, set], None)
            .await
        {
            Ok(out) => out,
            // A jail that was never prepared (or was cleaned up) holds nothing.
            Err(Error::Sink { reason, .. }) if reason.contains("No such file or directory") => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let json: serde_json::Value = serde_json::from_slice(&out)
            .map_err(|e| sink_error("nftables", format!("unreadable `nft -j` output: {e}")))?;
        let mut nets = Vec::new();
        let sets = json["nftables"].as_array().into_iter().flatten();
        for elem in sets.filter_map(|o| o["set"]["elem"].as_array()).flatten() {
            // Elements with a timeout are wrapped: {"elem": {"val": ..., "timeout": ...}}.
            let val = elem.get("elem").map_or(elem, |e| &e["val"]);
            let net = if let Some(addr) = val.as_str() {
                addr.parse::<std::net::IpAddr>().ok().map(IpNet::from)
            } else {
                let prefix = &val["prefix"];
                let addr = prefix["addr"]
                    .as_str()
                    .and_then(|a| a.parse::<std::net::IpAddr>().ok());
                let len = prefix["len"].as_u64().and_then(|l| u8::try_from(l).ok());
                addr.zip(len).and_then(|(a, l)| IpNet::new(a, l).ok())
            };
            nets.push(
                net.ok_or_else(|| {
                    sink_error("nftables", format!("unexpected set element {elem}"))
                })?,
            );
        }
        Ok(nets)
    }
}

fn port_match(jail: &SinkJail) -> String {
    if jail.ports.is_empty() {
        return String::new();
    }
    let ports = super::join_ports(&jail.ports, "-", ", ");
    match jail.protocol {
        Protocol::Tcp => format!("tcp dport {{ {ports} }} "),
        Protocol::Udp => format!("udp dport {{ {ports} }} "),
        Protocol::TcpAndUdp => format!("meta l4proto {{ tcp, udp }} th dport {{ {ports} }} "),
    }
}

#[async_trait]
impl BanSink for NftablesSink {
    async fn apply(&self, actions: &[BanAction]) -> Result<()> {
        if actions.is_empty() {
            return Ok(());
        }
        let table = &self.config.table;
        // Each action fully decides its target's final state, so only the last action per
        // target matters; the kernel also rejects touching one interval element twice in a
        // transaction.
        let mut seen = std::collections::HashSet::new();
        let mut last: Vec<&BanAction> = Vec::with_capacity(actions.len());
        for action in actions.iter().rev() {
            crate::jail::validate_jail_name(action.jail())?;
            if seen.insert((action.jail(), action.target())) {
                last.push(action);
            }
        }
        last.reverse();
        let mut script = String::new();
        for action in last {
            let target = action.target();
            let set = set_name(action.jail(), &target);
            // Adding first makes the delete valid whether or not the element exists.
            let _ = writeln!(script, "add element inet {table} {set} {{ {target} }}");
            let _ = writeln!(script, "delete element inet {table} {set} {{ {target} }}");
            if let BanAction::Ban { timeout, .. } = action {
                let timeout = match timeout {
                    Some(t) => format!(" timeout {}s", t.min(&MAX_TIMEOUT).as_secs().max(1)),
                    None => String::new(),
                };
                let _ = writeln!(
                    script,
                    "add element inet {table} {set} {{ {target}{timeout} }}"
                );
            }
        }
        self.transaction(&script).await
    }

    async fn list(&self, jail: &str) -> Result<Vec<IpNet>> {
        crate::jail::validate_jail_name(jail)?;
        let esc = escape(jail);
        let mut nets = self.list_set(&format!("v4_{esc}")).await?;
        nets.extend(self.list_set(&format!("v6_{esc}")).await?);
        Ok(nets)
    }

    async fn prepare(&self, jail: &SinkJail) -> Result<()> {
        crate::jail::validate_jail_name(&jail.name)?;
        let table = &self.config.table;
        let esc = escape(&jail.name);
        let chain = format!("jail_{esc}");
        let priority = self.config.priority;
        let ports = port_match(jail);
        let mut script = format!(
            "add table inet {table}\n\
             add set inet {table} v4_{esc} {{ type ipv4_addr; flags interval, timeout; }}\n\
             add set inet {table} v6_{esc} {{ type ipv6_addr; flags interval, timeout; }}\n\
             add chain inet {table} {chain} {{ type filter hook input priority {priority}; policy accept; }}\n\
             flush chain inet {table} {chain}\n"
        );
        for family in ["ip saddr @v4", "ip6 saddr @v6"] {
            let rule = format!("add rule inet {table} {chain} {ports}{family}_{esc}");
            match self.config.verdict {
                NftVerdict::Drop => writeln!(script, "{rule} drop"),
                // A TCP reset makes connect() fail at once; other protocols get ICMP.
                NftVerdict::Reject => writeln!(
                    script,
                    "{rule} meta l4proto tcp reject with tcp reset\n{rule} reject"
                ),
            }
            .map_err(|e| sink_error("nftables", e.to_string()))?;
        }
        self.transaction(&script).await
    }

    async fn cleanup(&self) -> Result<()> {
        let table = &self.config.table;
        self.transaction(&format!(
            "add table inet {table}\ndelete table inet {table}\n"
        ))
        .await
    }

    fn name(&self) -> &str {
        "nftables"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jail_names_escape_to_distinct_identifiers() {
        assert_eq!(escape("sshd"), "sshd");
        assert_eq!(escape("nginx-http-auth"), "nginx_2dhttp_2dauth");
        assert_ne!(escape("a-b"), escape("a_b"));
        assert_ne!(escape("a.b"), escape("a_b"));
        assert!(
            NftablesSink::builder()
                .with_table("bad-name")
                .build()
                .is_err()
        );
        assert!(
            NftablesSink::builder()
                .with_command(Vec::<String>::new())
                .build()
                .is_err()
        );
    }

    #[test]
    fn ports_become_a_match() {
        let mut jail = SinkJail::new("web").expect("valid");
        assert_eq!(port_match(&jail), "");
        jail.ports = crate::jail::parse_ports("80,8000:8100").expect("ports");
        assert_eq!(port_match(&jail), "tcp dport { 80, 8000-8100 } ");
        jail.protocol = Protocol::TcpAndUdp;
        assert_eq!(
            port_match(&jail),
            "meta l4proto { tcp, udp } th dport { 80, 8000-8100 } "
        );
    }
}
