//! The daemon's TOML configuration: where its socket and state live, one sink, and jails.
//!
//! ```toml
//! [daemon]
//! socket = "/run/logban.sock"           # control socket (default)
//! state = "/var/lib/logban/state.redb"  # optional; without it bans do not survive restarts
//! filter_dir = "/etc/fail2ban/filter.d" # where `filter = "sshd"` is looked up (default)
//!
//! [sink]
//! kind = "nftables"      # or "command" (ban/unban argv templates) or "memory"
//! table = "logban"
//! verdict = "drop"       # or "reject"
//!
//! [[jail]]
//! name = "sshd"
//! filter = "sshd[mode=aggressive]"
//! logpath = ["/var/log/auth.log"]
//! maxretry = 5
//! findtime = "10m"       # seconds, or a number with s/m/h/d/w
//! bantime = "1h"         # -1: permanent
//! ignoreip = ["192.0.2.0/24", "2001:db8::/32"]
//! ports = "ssh"
//! ipv6_prefix = 64
//! increment = { factor = 1.0, multipliers = [1, 2, 4, 8], maxtime = "1w" }
//! ```
//!
//! Unknown keys are errors, so a typo never silently changes what gets banned.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::jail::{BanIncrement, BanTime, JailConfig, Protocol, parse_ports};
use crate::sink::{BanSink, CommandSink, MemorySink, NftVerdict, NftablesSink};
use crate::{Error, Result};

/// The whole configuration file.
#[non_exhaustive]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Paths of the daemon itself.
    #[serde(default)]
    pub daemon: DaemonSection,
    /// Where bans go.
    pub sink: SinkConfig,
    /// The jails (`[[jail]]` tables).
    #[serde(default, rename = "jail")]
    pub jails: Vec<JailSection>,
}

/// `[daemon]`.
#[non_exhaustive]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSection {
    /// The control socket.
    pub socket: PathBuf,
    /// The state database; none keeps state in memory only.
    pub state: Option<PathBuf>,
    /// Where fail2ban filter files are looked up.
    pub filter_dir: PathBuf,
    /// Remove the firewall table when the daemon stops (default false: bans outlive it).
    pub cleanup_on_exit: bool,
}

impl Default for DaemonSection {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/logban.sock"),
            state: None,
            filter_dir: PathBuf::from("/etc/fail2ban/filter.d"),
            cleanup_on_exit: false,
        }
    }
}

/// `[sink]`.
#[non_exhaustive]
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    /// The nftables sink.
    Nftables {
        /// Table name (default `logban`).
        table: Option<String>,
        /// Run `nft` inside this network namespace.
        netns: Option<String>,
        /// `drop` (default) or `reject`.
        verdict: Option<String>,
    },
    /// The argv command sink.
    Command {
        /// Run once per jail at start.
        prepare: Option<Vec<String>>,
        /// Bans one target.
        ban: Vec<String>,
        /// Unbans one target.
        unban: Vec<String>,
        /// Run per jail by cleanup.
        cleanup: Option<Vec<String>>,
    },
    /// Bans kept in memory (testing, dry runs).
    Memory,
}

/// A duration: seconds, or text such as `"90"`, `"10m"`, `"1h"`, `"2d"`, `"1w"`, `"-1"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub i64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        /// What TOML may hold there: an integer or a duration text.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Integer(i64),
            Text(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected seconds or a duration like \"10m\""))?
        {
            Raw::Integer(n) => Ok(Seconds(n)),
            Raw::Text(s) => parse_seconds(&s)
                .map(Seconds)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Parses a duration into seconds with fail2ban's abbreviations (`90`, `10m`, `1h 30m`, `2d`,
/// `1w`, `1mo`, `1y`, also `-1`), so TOML and imported `jail.conf` files accept the same.
pub fn parse_seconds(text: &str) -> std::result::Result<i64, String> {
    crate::fail2ban::parse_duration(text)
        .ok_or_else(|| format!("`{text}` is not a duration (use e.g. 90, 10m, 1h 30m, 2d, 1w)"))
}

/// `increment = { ... }` of a jail.
#[non_exhaustive]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementSection {
    /// `bantime.factor`.
    pub factor: Option<f64>,
    /// `bantime.multipliers`.
    #[serde(default)]
    pub multipliers: Vec<u32>,
    /// `bantime.maxtime`.
    pub maxtime: Option<Seconds>,
}

/// One `[[jail]]`.
#[non_exhaustive]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JailSection {
    /// The jail's name.
    pub name: String,
    /// Disabled jails are skipped (default: enabled).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// fail2ban filter spec, e.g. `sshd[mode=aggressive]` (default: the jail's name).
    pub filter: Option<String>,
    /// Log files (globs allowed where the file source supports them).
    #[serde(default)]
    pub logpath: Vec<String>,
    /// Read the systemd journal instead of files.
    #[serde(default)]
    pub journal: bool,
    /// `maxretry`.
    pub maxretry: Option<u32>,
    /// `findtime`.
    pub findtime: Option<Seconds>,
    /// `bantime` (-1: permanent).
    pub bantime: Option<Seconds>,
    /// Incremental bans.
    pub increment: Option<IncrementSection>,
    /// `ignoreip`.
    #[serde(default)]
    pub ignoreip: Vec<String>,
    /// `ignoreself` (default true).
    pub ignoreself: Option<bool>,
    /// Group IPv6 attackers by this prefix length.
    pub ipv6_prefix: Option<u8>,
    /// `port`, fail2ban syntax (`ssh,8000:8100`).
    pub ports: Option<String>,
    /// `tcp` (default), `udp` or `all` (TCP and UDP).
    pub protocol: Option<String>,
    /// Cap on tracked addresses.
    pub max_tracked: Option<usize>,
    /// fail2ban's `logtimezone`: the zone of log times that carry none (`UTC`, `UTC+0200`,
    /// `Europe/Paris`); default the host's zone.
    pub logtimezone: Option<String>,
}

fn yes() -> bool {
    true
}

fn positive(field: &str, s: Seconds) -> Result<Duration> {
    u64::try_from(s.0)
        .ok()
        .filter(|&n| n > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| Error::InvalidConfig {
            field: field.to_owned(),
            reason: format!("{} must be a positive duration", s.0),
        })
}

impl JailSection {
    /// The clock for this jail's filter: the host's clock, with log times that carry no zone in
    /// `logtimezone` (default the host's zone).
    pub fn filter_clock(&self) -> Result<crate::filter::Clock> {
        let zone = match self.logtimezone.as_deref() {
            Some(text) => {
                crate::filter::parse_logtimezone(text).map_err(|reason| Error::InvalidConfig {
                    field: format!("jail {}: logtimezone", self.name),
                    reason,
                })?
            }
            None => jiff::tz::TimeZone::system(),
        };
        Ok(crate::filter::Clock::system(zone))
    }

    /// The filter spec to load (`filter`, or the jail's name).
    pub fn filter_spec(&self) -> &str {
        self.filter.as_deref().unwrap_or(&self.name)
    }

    /// Builds the jail's [`JailConfig`].
    pub fn to_jail_config(&self) -> Result<JailConfig> {
        let mut b = JailConfig::builder(&self.name).with_ignore(&self.ignoreip);
        if let Some(n) = self.maxretry {
            b = b.with_maxretry(n);
        }
        if let Some(s) = self.findtime {
            b = b.with_findtime(positive("findtime", s)?);
        }
        if let Some(s) = self.bantime {
            b = b.with_bantime(BanTime::from_secs(s.0));
        }
        if let Some(inc) = &self.increment {
            let mut i = BanIncrement::new().with_multipliers(inc.multipliers.clone());
            if let Some(f) = inc.factor {
                i = i.with_factor(f);
            }
            if let Some(m) = inc.maxtime {
                i = i.with_maxtime(positive("increment.maxtime", m)?);
            }
            b = b.with_increment(i);
        }
        if let Some(v) = self.ignoreself {
            b = b.with_ignore_self(v);
        }
        if let Some(p) = self.ipv6_prefix {
            b = b.with_ipv6_prefix(p);
        }
        if let Some(p) = &self.ports {
            b = b.with_ports(parse_ports(p)?);
        }
        if let Some(p) = &self.protocol {
            b = b.with_protocol(match p.as_str() {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "all" => Protocol::TcpAndUdp,
                other => {
                    return Err(Error::InvalidConfig {
                        field: "protocol".into(),
                        reason: format!("`{other}`: use tcp, udp or all"),
                    });
                }
            });
        }
        if let Some(m) = self.max_tracked {
            b = b.with_max_tracked(m);
        }
        b.build()
    }
}

impl SinkConfig {
    /// Builds the sink.
    pub fn build(&self) -> Result<Arc<dyn BanSink>> {
        Ok(match self {
            SinkConfig::Nftables {
                table,
                netns,
                verdict,
            } => {
                let mut b = NftablesSink::builder();
                if let Some(t) = table {
                    b = b.with_table(t);
                }
                if let Some(ns) = netns {
                    b = b.with_netns(ns);
                }
                b = b.with_verdict(match verdict.as_deref() {
                    None | Some("drop") => NftVerdict::Drop,
                    Some("reject") => NftVerdict::Reject,
                    Some(other) => {
                        return Err(Error::InvalidConfig {
                            field: "sink.verdict".into(),
                            reason: format!("`{other}`: use drop or reject"),
                        });
                    }
                });
                Arc::new(b.build()?)
            }
            SinkConfig::Command {
                prepare,
                ban,
                unban,
                cleanup,
            } => {
                let mut b = CommandSink::builder().with_ban(ban).with_unban(unban);
                if let Some(p) = prepare {
                    b = b.with_prepare(p);
                }
                if let Some(c) = cleanup {
                    b = b.with_cleanup(c);
                }
                Arc::new(b.build()?)
            }
            SinkConfig::Memory => Arc::new(MemorySink::new()),
        })
    }
}

impl DaemonConfig {
    /// Parses TOML text; `path` is only used in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self> {
        let config: DaemonConfig = toml::from_str(text).map_err(|source| Error::Toml {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        // Validate every enabled jail now, so that a bad one is reported before starting.
        for jail in config.enabled_jails() {
            jail.to_jail_config()?;
            jail.filter_clock()?;
        }
        Ok(config)
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// The enabled jails.
    pub fn enabled_jails(&self) -> impl Iterator<Item = &JailSection> {
        self.jails.iter().filter(|j| j.enabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[daemon]
socket = "/tmp/x.sock"
state = "/tmp/state.redb"

[sink]
kind = "nftables"
table = "logban"
verdict = "reject"

[[jail]]
name = "sshd"
filter = "sshd[mode=aggressive]"
logpath = ["/var/log/auth.log"]
maxretry = 3
findtime = "10m"
bantime = "1h"
ignoreip = ["192.0.2.0/24", "2001:db8::/32"]
ports = "22,2222"
ipv6_prefix = 64
increment = { factor = 2.0, multipliers = [1, 2, 4], maxtime = "1w" }

[[jail]]
name = "off"
enabled = false
bantime = -1
"#;

    #[test]
    fn example_config_parses_into_jails_and_sink() {
        let config = DaemonConfig::from_toml(EXAMPLE, Path::new("x.toml")).expect("valid");
        assert_eq!(config.daemon.socket, PathBuf::from("/tmp/x.sock"));
        let jails: Vec<&JailSection> = config.enabled_jails().collect();
        assert_eq!(jails.len(), 1);
        assert_eq!(jails[0].filter_spec(), "sshd[mode=aggressive]");
        let jail = jails[0].to_jail_config().expect("jail");
        assert_eq!(jail.maxretry(), 3);
        assert_eq!(jail.findtime(), Duration::from_secs(600));
        assert_eq!(jail.bantime(), BanTime::For(Duration::from_secs(3600)));
        assert_eq!(
            jail.ban_time_after(1),
            BanTime::For(Duration::from_secs(3600 * 2 * 2))
        );
        assert_eq!(jail.ports().len(), 2);
        assert_eq!(jail.ipv6_prefix(), 64);
        assert_eq!(
            config.jails[1].to_jail_config().expect("jail").bantime(),
            BanTime::Permanent
        );
        assert_eq!(config.sink.build().expect("sink").name(), "nftables");
    }

    #[test]
    fn mistakes_are_reported() {
        for bad in [
            "[sink]\nkind = \"nftables\"\ntabel = \"x\"\n",
            "[sink]\nkind = \"iptables\"\n",
            "[sink]\nkind = \"memory\"\n[[jail]]\nname = \"a\"\nmaxretry = 0\n",
            "[sink]\nkind = \"memory\"\n[[jail]]\nname = \"a\"\nfindtime = \"5 parsecs\"\n",
            "[sink]\nkind = \"memory\"\n[[jail]]\nname = \"a b\"\n",
            "[sink]\nkind = \"memory\"\n[[jail]]\nname = \"a\"\nignoreip = [\"nonsense\"]\n",
            "[sink]\nkind = \"memory\"\n[[jail]]\nname = \"a\"\nlogtimezone = \"Mars/Olympus\"\n",
        ] {
            assert!(
                DaemonConfig::from_toml(bad, Path::new("bad.toml")).is_err(),
                "accepted: {bad}"
            );
        }
        assert_eq!(parse_seconds("90"), Ok(90));
        assert_eq!(parse_seconds("2d"), Ok(172_800));
        assert_eq!(parse_seconds("-1"), Ok(-1));
        assert_eq!(parse_seconds("1h 30m"), Ok(5400));
        assert_eq!(parse_seconds("1y"), Ok(31_557_600));
        assert!(parse_seconds("soon").is_err());
        assert!(parse_seconds("10 parsecs").is_err());
    }

    /// The parser's message (with its place in the file) stays reachable through `source()`,
    /// although its type is not part of the API; a bad duration names the field and the value.
    #[test]
    fn toml_errors_keep_the_parsers_message() {
        let text = "[sink]\nkind = \"memory\"\n[[jail]]\nname = \"a\"\nfindtime = \"5 parsecs\"\n";
        let err = DaemonConfig::from_toml(text, Path::new("bad.toml")).expect_err("bad duration");
        assert!(matches!(err, Error::Toml { .. }), "{err:?}");
        let detail = std::error::Error::source(&err)
            .expect("a source")
            .to_string();
        assert!(
            detail.contains("5 parsecs") && detail.contains("findtime"),
            "{detail}"
        );
        assert!(detail.contains("line 5"), "{detail}");
    }
}
