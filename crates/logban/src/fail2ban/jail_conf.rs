//! Importing jails from fail2ban's `jail.conf` / `jail.local` (and `jail.d/`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::time::Duration;

use super::ini::Config;
use crate::{BanIncrement, BanTime, Error, JailConfig, Result};

/// Options logban takes over from a fail2ban jail.
const KNOWN: &[&str] = &[
    "enabled",
    "filter",
    "logpath",
    "backend",
    "maxretry",
    "findtime",
    "bantime",
    "bantime.increment",
    "bantime.factor",
    "bantime.multipliers",
    "bantime.maxtime",
    "ignoreip",
    "port",
];

/// One jail from jail.conf/jail.local, with fail2ban's values (durations in seconds).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportedJail {
    /// Section name.
    pub name: String,
    /// `enabled`.
    pub enabled: bool,
    /// Filter spec with arguments, e.g. `sshd[mode=normal]` (pass to `load_filter`).
    pub filter: String,
    /// Log paths or globs, one per entry.
    pub logpath: Vec<String>,
    /// `backend` (`auto`, `systemd`, ...).
    pub backend: String,
    /// `maxretry`.
    pub maxretry: Option<u32>,
    /// `findtime`, seconds.
    pub findtime: Option<i64>,
    /// `bantime`, seconds (negative: permanent).
    pub bantime: Option<i64>,
    /// `bantime.increment`.
    pub bantime_increment: bool,
    /// `bantime.factor`.
    pub bantime_factor: Option<f64>,
    /// `bantime.multipliers`.
    pub bantime_multipliers: Vec<u64>,
    /// `bantime.maxtime`, seconds.
    pub bantime_maxtime: Option<i64>,
    /// `ignoreip`: addresses, CIDRs (host names are left to the caller, never resolved here).
    pub ignoreip: Vec<String>,
    /// `port`, as written (`ssh`, `http,https`, `0:65535`).
    pub port: Option<String>,
    /// Options set on this jail that logban does not use (actions, `bantime.formula`, ...).
    pub ignored_options: Vec<String>,
}

impl ImportedJail {
    /// The jail's counting and banning settings as a [`JailConfig`]. fail2ban's defaults fill
    /// what the files leave out; `ignoreip` entries that are not addresses or CIDRs (host
    /// names: never resolved) and ports that are neither numbers nor services are returned
    /// alongside, to report as ignored.
    pub fn jail_config(&self) -> Result<(JailConfig, Vec<String>)> {
        let mut skipped = Vec::new();
        let mut b = JailConfig::builder(self.name.clone());
        if let Some(m) = self.maxretry {
            b = b.with_maxretry(m);
        }
        if let Some(f) = self.findtime {
            b = b.with_findtime(Duration::from_secs(u64::try_from(f).unwrap_or(0)));
        }
        if let Some(t) = self.bantime {
            b = b.with_bantime(BanTime::from_secs(t));
        }
        if self.bantime_increment {
            let mut inc = BanIncrement::new();
            if let Some(f) = self.bantime_factor {
                inc = inc.with_factor(f);
            }
            let multipliers: Vec<u32> = self
                .bantime_multipliers
                .iter()
                .map(|&m| u32::try_from(m).unwrap_or(u32::MAX))
                .collect();
            if !multipliers.is_empty() {
                inc = inc.with_multipliers(multipliers);
            }
            if let Some(m) = self.bantime_maxtime.and_then(|m| u64::try_from(m).ok()) {
                inc = inc.with_maxtime(Duration::from_secs(m));
            }
            b = b.with_increment(inc);
        }
        let (nets, names): (Vec<&String>, Vec<&String>) = self.ignoreip.iter().partition(|e| {
            e.parse::<ipnet::IpNet>().is_ok() || e.parse::<std::net::IpAddr>().is_ok()
        });
        b = b.with_ignore(nets);
        skipped.extend(names.into_iter().map(|n| format!("ignoreip {n}")));
        if let Some(port) = &self.port {
            match crate::jail::parse_ports(port) {
                Ok(ports) => b = b.with_ports(ports),
                Err(_) => skipped.push(format!("port {port}")),
            }
        }
        Ok((b.build()?, skipped))
    }
}

/// Reads `jail.conf`, `jail.local` and `jail.d/*.conf|local` under `dir` (e.g. `/etc/fail2ban`).
pub fn import_jails(dir: &Path) -> Result<Vec<ImportedJail>> {
    let base = dir.join("jail.conf");
    let mut cfg = Config::read(&base)?;
    let mut extra: Vec<PathBuf> = std::fs::read_dir(dir.join("jail.d"))
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "conf" || e == "local"))
                .collect()
        })
        .unwrap_or_default();
    extra.sort();
    for p in extra {
        cfg.merge(Config::read(&p)?);
    }
    let names: Vec<String> = cfg
        .section_names()
        .filter(|n| *n != "INCLUDES" && *n != "Definition" && !n.starts_with("KNOWN/"))
        .map(str::to_string)
        .collect();
    let mut jails = Vec::new();
    for name in names {
        jails.push(jail_from(&cfg, &name)?);
    }
    Ok(jails)
}

fn jail_from(cfg: &Config, name: &str) -> Result<ImportedJail> {
    let mut vars = BTreeMap::new();
    vars.insert("__name__".to_string(), name.to_string());
    let get = |k: &str| -> Option<String> {
        cfg.get(name, k, &vars)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let bad = |k: &str, v: &str| Error::InvalidConfig {
        field: format!("{name}.{k}"),
        reason: format!("cannot read {v:?}"),
    };
    let duration = |k: &str| -> Result<Option<i64>> {
        get(k)
            .map(|v| parse_duration(&v).ok_or_else(|| bad(k, &v)))
            .transpose()
    };
    let maxretry = get("maxretry")
        .map(|v| v.parse::<u32>().map_err(|_| bad("maxretry", &v)))
        .transpose()?;
    let factor = get("bantime.factor")
        .map(|v| v.parse::<f64>().map_err(|_| bad("bantime.factor", &v)))
        .transpose()?;
    let multipliers = get("bantime.multipliers")
        .map(|v| {
            v.split_whitespace()
                .map(|m| m.parse::<u64>().map_err(|_| bad("bantime.multipliers", &v)))
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?
        .unwrap_or_default();
    let ignored_options = cfg
        .options(name)
        .into_iter()
        .filter(|o| !KNOWN.contains(&o.as_str()))
        .collect();
    Ok(ImportedJail {
        name: name.to_string(),
        enabled: get("enabled").is_some_and(|v| is_true(&v)),
        filter: get("filter").unwrap_or_else(|| name.to_string()),
        logpath: get("logpath")
            .map(|v| {
                v.split('\n')
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        backend: get("backend").unwrap_or_else(|| "auto".into()),
        maxretry,
        findtime: duration("findtime")?,
        bantime: duration("bantime")?,
        bantime_increment: get("bantime.increment").is_some_and(|v| is_true(&v)),
        bantime_factor: factor,
        bantime_multipliers: multipliers,
        bantime_maxtime: duration("bantime.maxtime")?,
        ignoreip: get("ignoreip")
            .map(|v| {
                v.split([' ', ',', '\n'])
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        port: get("port"),
        ignored_options,
    })
}

fn is_true(v: &str) -> bool {
    matches!(v.to_lowercase().as_str(), "true" | "yes" | "1" | "on")
}

/// fail2ban's time abbreviations: `600`, `10m`, `1h 30m`, `1d`, `1w`, `1mo`, `1y`, `-1`.
pub fn parse_duration(v: &str) -> Option<i64> {
    let v = v.trim();
    if let Ok(n) = v.parse::<i64>() {
        return Some(n);
    }
    let mut total: f64 = 0.0;
    let mut rest = v;
    let mut any = false;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].to_lowercase();
        rest = &rest[unit_len..];
        let mult = match unit.as_str() {
            "" | "s" | "sec" | "second" | "seconds" => 1.0,
            "m" | "mi" | "min" | "minute" | "minutes" => 60.0,
            "h" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            "w" | "week" | "weeks" => 604_800.0,
            "mo" | "month" | "months" => 2_629_800.0,
            "y" | "year" | "years" => 31_557_600.0,
            _ => return None,
        };
        total += num * mult;
        any = true;
    }
    any.then_some(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600"), Some(600));
        assert_eq!(parse_duration("10m"), Some(600));
        assert_eq!(parse_duration("1h 30m"), Some(5400));
        assert_eq!(parse_duration("-1"), Some(-1));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn jail_local_overrides_and_ignored_options() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("jail.conf"),
            "[DEFAULT]\nmaxretry = 5\nfindtime = 10m\nbantime = 10m\naction = %(action_)s\n\n[sshd]\nport = ssh\nlogpath = /var/log/auth.log\nbackend = %(sshd_backend)s\nsshd_backend = auto\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("jail.local"),
            "[sshd]\nenabled = true\nfilter = sshd[mode=aggressive]\nbantime.increment = true\nbantime.multipliers = 1 2 4\nignoreip = 127.0.0.1/8 ::1\naction = iptables\n",
        )
        .expect("write");
        let jails = import_jails(dir.path()).expect("imports");
        let sshd = jails.iter().find(|j| j.name == "sshd").expect("sshd");
        assert!(sshd.enabled);
        assert_eq!(sshd.filter, "sshd[mode=aggressive]");
        assert_eq!(sshd.maxretry, Some(5));
        assert_eq!(sshd.findtime, Some(600));
        assert_eq!(sshd.backend, "auto");
        assert_eq!(sshd.bantime_multipliers, vec![1, 2, 4]);
        assert_eq!(sshd.ignoreip, vec!["127.0.0.1/8", "::1"]);
        assert!(sshd.ignored_options.contains(&"action".to_string()));
        assert!(!sshd.ignored_options.contains(&"port".to_string()));

        let (cfg, skipped) = sshd.jail_config().expect("converts");
        assert_eq!(cfg.maxretry(), 5);
        assert_eq!(cfg.findtime(), std::time::Duration::from_secs(600));
        assert!(cfg.increment().is_some());
        assert_eq!(cfg.ignore().len(), 2);
        assert!(skipped.is_empty() || skipped.iter().all(|s| s.starts_with("port")));
    }
}
