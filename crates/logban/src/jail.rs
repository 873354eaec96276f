//! Jails: count failures per address within `findtime`, decide bans, track them until they expire.
//!
//! A [`Jail`] is plain synchronous state driven by the engine; it never talks to a firewall. It
//! returns [`Ban`] decisions that the engine hands to a [`BanSink`](crate::BanSink).
//!
//! Counting follows fail2ban's `FailManager`: an address's counting window opens at its first
//! failure and starts over when that first failure is older than `findtime`; `maxretry`
//! failures inside the window ban it. Failures older than `findtime` (relative to the engine's
//! clock) are ignored, like fail2ban ignores old lines.
//!
//! Tracked state is capped ([`JailConfigBuilder::with_max_tracked`]): when the cap is reached,
//! expired windows go first, then the entries with the fewest failures and the oldest activity.
//! A flood of one-shot addresses therefore evicts other one-shot addresses, while an attacker
//! who keeps failing holds a higher count and survives until it is banned.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::{Error, Failure, Result};

/// How long a ban lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanTime {
    /// Banned for this long, then released.
    For(Duration),
    /// Banned until unbanned by hand (fail2ban's `bantime = -1`).
    Permanent,
}

impl BanTime {
    /// fail2ban's convention: a negative number of seconds means permanent.
    pub fn from_secs(secs: i64) -> Self {
        match u64::try_from(secs) {
            Ok(secs) => BanTime::For(Duration::from_secs(secs)),
            Err(_) => BanTime::Permanent,
        }
    }
}

/// Incremental bans (fail2ban's `bantime.increment`): repeat offenders are banned longer.
///
/// The `n`-th ban of an address (with `n - 1` earlier bans, `count = n - 1`) lasts
/// `bantime * multiplier(count) * factor`, capped at `maxtime`; the first ban lasts `bantime`.
/// `multiplier(count)` is `multipliers[min(count, len - 1)]` when multipliers are given, else
/// `2^min(count, 20)` (fail2ban's default formula; arbitrary formulas are never evaluated).
#[derive(Debug, Clone, PartialEq)]
pub struct BanIncrement {
    factor: f64,
    multipliers: Vec<u32>,
    maxtime: Option<Duration>,
}

impl Default for BanIncrement {
    fn default() -> Self {
        Self {
            factor: 1.0,
            multipliers: Vec::new(),
            maxtime: None,
        }
    }
}

impl BanIncrement {
    /// The default increment: doubling, factor 1, no cap.
    pub fn new() -> Self {
        Self::default()
    }

    /// `bantime.factor`.
    pub fn with_factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// `bantime.multipliers` (e.g. `1 2 4 8 16 32 64`).
    pub fn with_multipliers(mut self, multipliers: impl Into<Vec<u32>>) -> Self {
        self.multipliers = multipliers.into();
        self
    }

    /// `bantime.maxtime`: no ban lasts longer.
    pub fn with_maxtime(mut self, maxtime: Duration) -> Self {
        self.maxtime = Some(maxtime);
        self
    }

    /// The length of a ban after `previous` earlier bans, starting from `bantime`.
    pub fn ban_duration(&self, bantime: Duration, previous: u32) -> Duration {
        if previous == 0 {
            return self.cap(bantime);
        }
        let multiplier = match self.multipliers.len() {
            0 => f64::from(1u32 << previous.min(20)),
            len => f64::from(self.multipliers[(previous as usize).min(len - 1)]),
        };
        let secs = bantime.as_secs_f64() * multiplier * self.factor;
        // Saturate instead of panicking on absurd products.
        let secs = if secs.is_finite() {
            secs.min(u64::MAX as f64 / 2.0)
        } else {
            u64::MAX as f64 / 2.0
        };
        self.cap(Duration::from_secs_f64(secs.max(0.0)))
    }

    fn cap(&self, d: Duration) -> Duration {
        match self.maxtime {
            Some(max) => d.min(max),
            None => d,
        }
    }

    fn validate(&self) -> Result<()> {
        if !(self.factor.is_finite() && self.factor > 0.0) {
            return Err(invalid("bantime.factor", "must be a positive number"));
        }
        if self.multipliers.contains(&0) {
            return Err(invalid("bantime.multipliers", "must all be positive"));
        }
        Ok(())
    }
}

/// Which transport protocol a jail's ports apply to.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// TCP only (fail2ban's default).
    #[default]
    Tcp,
    /// UDP only.
    Udp,
    /// Both TCP and UDP.
    TcpAndUdp,
}

/// An inclusive range of ports (a single port has `first == last`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

impl PortRange {
    /// Parses fail2ban's port syntax: `22`, `8000:8100` (or `8000-8100`), or a service name from
    /// `/etc/services` (`ssh`). Several ports are separated by commas; see [`parse_ports`].
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let bad = || {
            invalid(
                "port",
                format!("`{text}` is not a port, range or known service"),
            )
        };
        if let Some((a, b)) = text.split_once([':', '-']) {
            let first = a.trim().parse::<u16>().map_err(|_| bad())?;
            let last = b.trim().parse::<u16>().map_err(|_| bad())?;
            if first > last || first == 0 {
                return Err(bad());
            }
            return Ok(PortRange { first, last });
        }
        let port = match text.parse::<u16>() {
            Ok(p) => p,
            Err(_) => service_port(text).ok_or_else(bad)?,
        };
        if port == 0 {
            return Err(bad());
        }
        Ok(PortRange {
            first: port,
            last: port,
        })
    }
}

/// Parses a comma-separated port list (`ssh,80,8000:8100`).
pub fn parse_ports(text: &str) -> Result<Vec<PortRange>> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(PortRange::parse)
        .collect()
}

fn service_port(name: &str) -> Option<u16> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return None;
    }
    let services = std::fs::read_to_string("/etc/services").ok()?;
    services.lines().find_map(|line| {
        let line = line.split('#').next()?;
        let mut fields = line.split_whitespace();
        let service = fields.next()?;
        let port = fields.next()?.split('/').next()?.parse::<u16>().ok()?;
        (service == name || fields.any(|alias| alias == name)).then_some(port)
    })
}

/// A jail's configuration; build it with [`JailConfig::builder`].
#[derive(Debug, Clone)]
pub struct JailConfig {
    name: String,
    maxretry: u32,
    findtime: Duration,
    bantime: BanTime,
    increment: Option<BanIncrement>,
    ignore: Vec<IpNet>,
    ignore_self: bool,
    ipv4_prefix: u8,
    ipv6_prefix: u8,
    ports: Vec<PortRange>,
    protocol: Protocol,
    max_tracked: usize,
    ban_history: Duration,
}

/// Builder for [`JailConfig`]. Defaults follow fail2ban: maxretry 5, findtime 10 min, bantime
/// 10 min, ignore the host's own addresses, one address per ban (no prefix grouping), all ports.
#[derive(Debug, Clone)]
pub struct JailConfigBuilder {
    config: JailConfig,
    ignore_text: Vec<String>,
}

/// Ban counts are remembered this long after a target's last ban (fail2ban's `dbpurgeage`).
const DEFAULT_BAN_HISTORY: Duration = Duration::from_secs(86_400);

/// Default cap on tracked (not yet banned) addresses per jail: about 15 MiB of state.
pub const DEFAULT_MAX_TRACKED: usize = 200_000;

impl JailConfig {
    /// Starts a builder for a jail called `name` (letters, digits, `-`, `_`, `.`; at most 32 bytes,
    /// because firewall object names derive from it).
    pub fn builder(name: impl Into<String>) -> JailConfigBuilder {
        JailConfigBuilder {
            config: JailConfig {
                name: name.into(),
                maxretry: 5,
                findtime: Duration::from_secs(600),
                bantime: BanTime::For(Duration::from_secs(600)),
                increment: None,
                ignore: Vec::new(),
                ignore_self: true,
                ipv4_prefix: 32,
                ipv6_prefix: 128,
                ports: Vec::new(),
                protocol: Protocol::Tcp,
                max_tracked: DEFAULT_MAX_TRACKED,
                ban_history: DEFAULT_BAN_HISTORY,
            },
            ignore_text: Vec::new(),
        }
    }

    /// The jail's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Failures within `findtime` that trigger a ban.
    pub fn maxretry(&self) -> u32 {
        self.maxretry
    }
    /// The counting window.
    pub fn findtime(&self) -> Duration {
        self.findtime
    }
    /// The base ban length.
    pub fn bantime(&self) -> BanTime {
        self.bantime
    }
    /// Incremental ban settings, if enabled.
    pub fn increment(&self) -> Option<&BanIncrement> {
        self.increment.as_ref()
    }
    /// Addresses and networks never banned.
    pub fn ignore(&self) -> &[IpNet] {
        &self.ignore
    }
    /// Whether the host's own addresses are never banned.
    pub fn ignore_self(&self) -> bool {
        self.ignore_self
    }
    /// Prefix length IPv6 attackers are grouped by (128: no grouping).
    pub fn ipv6_prefix(&self) -> u8 {
        self.ipv6_prefix
    }
    /// Prefix length IPv4 attackers are grouped by (32: no grouping).
    pub fn ipv4_prefix(&self) -> u8 {
        self.ipv4_prefix
    }
    /// Ports the ban applies to (empty: all traffic).
    pub fn ports(&self) -> &[PortRange] {
        &self.ports
    }
    /// Protocol the ports apply to.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }
    /// Cap on tracked addresses.
    pub fn max_tracked(&self) -> usize {
        self.max_tracked
    }
    /// How long a target's ban count is remembered after its last ban ended.
    pub fn ban_history(&self) -> Duration {
        self.ban_history
    }

    /// The ban target for `addr`: the address itself, or its prefix when grouping is on.
    pub fn target(&self, addr: IpAddr) -> IpNet {
        let len = match addr {
            IpAddr::V4(_) => self.ipv4_prefix,
            IpAddr::V6(_) => self.ipv6_prefix,
        };
        // Lengths were validated by the builder, so `new` cannot fail; fall back to the host net.
        IpNet::new(addr, len)
            .map(|n| n.trunc())
            .unwrap_or_else(|_| IpNet::from(addr))
    }

    /// The length of the ban that follows `previous` earlier bans.
    pub fn ban_time_after(&self, previous: u32) -> BanTime {
        match (self.bantime, &self.increment) {
            (BanTime::For(base), Some(inc)) => BanTime::For(inc.ban_duration(base, previous)),
            (bantime, _) => bantime,
        }
    }
}

/// Checks a jail name: it ends up in firewall object names and command arguments.
pub fn validate_jail_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            format!("jail name `{name}` must be 1-32 letters, digits, `-`, `_` or `.`"),
        ))
    }
}

impl JailConfigBuilder {
    /// `maxretry` (at least 1).
    pub fn with_maxretry(mut self, maxretry: u32) -> Self {
        self.config.maxretry = maxretry;
        self
    }
    /// `findtime`.
    pub fn with_findtime(mut self, findtime: Duration) -> Self {
        self.config.findtime = findtime;
        self
    }
    /// `bantime`.
    pub fn with_bantime(mut self, bantime: BanTime) -> Self {
        self.config.bantime = bantime;
        self
    }
    /// `bantime.increment` with its settings.
    pub fn with_increment(mut self, increment: BanIncrement) -> Self {
        self.config.increment = Some(increment);
        self
    }
    /// Adds `ignoreip` entries: addresses or CIDR networks, IPv4 or IPv6 (parsed by `build`).
    pub fn with_ignore<S: AsRef<str>>(mut self, entries: impl IntoIterator<Item = S>) -> Self {
        self.ignore_text
            .extend(entries.into_iter().map(|s| s.as_ref().to_owned()));
        self
    }
    /// Adds already parsed networks to the ignore list.
    pub fn with_ignore_nets(mut self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        self.config.ignore.extend(nets);
        self
    }
    /// Whether the host's own addresses (and loopback) are never banned (default: true).
    pub fn with_ignore_self(mut self, ignore_self: bool) -> Self {
        self.config.ignore_self = ignore_self;
        self
    }
    /// Groups IPv6 attackers by this prefix length (e.g. 64); 128 disables grouping.
    pub fn with_ipv6_prefix(mut self, len: u8) -> Self {
        self.config.ipv6_prefix = len;
        self
    }
    /// Groups IPv4 attackers by this prefix length (e.g. 24); 32 disables grouping.
    pub fn with_ipv4_prefix(mut self, len: u8) -> Self {
        self.config.ipv4_prefix = len;
        self
    }
    /// Restricts bans to these destination ports (default: all traffic is blocked).
    pub fn with_ports(mut self, ports: impl Into<Vec<PortRange>>) -> Self {
        self.config.ports = ports.into();
        self
    }
    /// The protocol the ports apply to.
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.config.protocol = protocol;
        self
    }
    /// Cap on tracked, not yet banned addresses (at least 16).
    pub fn with_max_tracked(mut self, max: usize) -> Self {
        self.config.max_tracked = max;
        self
    }
    /// How long a target's ban count (for incremental bans) is remembered after its last ban
    /// ended; older history is pruned, so it does not grow forever. Default one day, as
    /// fail2ban's `dbpurgeage`.
    pub fn with_ban_history(mut self, age: Duration) -> Self {
        self.config.ban_history = age;
        self
    }

    /// Validates and returns the configuration.
    pub fn build(mut self) -> Result<JailConfig> {
        let c = &mut self.config;
        validate_jail_name(&c.name)?;
        if c.maxretry == 0 {
            return Err(invalid("maxretry", "must be at least 1"));
        }
        if c.findtime.is_zero() {
            return Err(invalid("findtime", "must be positive"));
        }
        if let Some(inc) = &c.increment {
            inc.validate()?;
        }
        if !(8..=32).contains(&c.ipv4_prefix) || !(16..=128).contains(&c.ipv6_prefix) {
            return Err(invalid(
                "prefix",
                "IPv4 grouping must be /8../32 and IPv6 grouping /16../128",
            ));
        }
        if c.max_tracked < 16 {
            return Err(invalid("max_tracked", "must be at least 16"));
        }
        for entry in &self.ignore_text {
            c.ignore.push(parse_net(entry)?);
        }
        Ok(self.config)
    }
}

/// Parses an address or CIDR network (`192.0.2.1`, `2001:db8::/32`); mapped IPv6 becomes IPv4.
pub fn parse_net(text: &str) -> Result<IpNet> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(crate::canonical_addr(addr)));
    }
    text.parse::<IpNet>().map(|n| n.trunc()).map_err(|_| {
        invalid(
            "ignoreip",
            format!("`{text}` is not an address or CIDR network"),
        )
    })
}

fn invalid(field: &str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// The host's own addresses plus loopback, read from the system's interfaces.
pub fn host_addresses() -> Vec<IpNet> {
    let mut nets: Vec<IpNet> = vec![
        IpNet::V4("127.0.0.0/8".parse().expect("static CIDR")),
        IpNet::V6("::1/128".parse().expect("static CIDR")),
    ];
    match if_addrs::get_if_addrs() {
        Ok(ifaces) => nets.extend(
            ifaces
                .into_iter()
                .map(|i| IpNet::from(crate::canonical_addr(i.ip()))),
        ),
        Err(e) => tracing::warn!("cannot read the host's interface addresses: {e}"),
    }
    nets
}

/// An active (or just decided) ban.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ban {
    /// The jail that banned.
    pub jail: String,
    /// The banned address or prefix.
    pub target: IpNet,
    /// When the ban started (unix seconds).
    pub start: i64,
    /// When it ends (unix seconds); `None` for permanent bans.
    pub until: Option<i64>,
    /// Which ban of this target this is (1 for the first).
    pub count: u32,
}

impl Ban {
    /// Seconds left at `now`: `None` if permanent, `Some(0)` if expired.
    pub fn remaining(&self, now: i64) -> Option<u64> {
        self.until
            .map(|until| u64::try_from(until.saturating_sub(now)).unwrap_or(0))
    }
}

/// What a jail did with a failure.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The address is on an ignore list (or is the host's own).
    Ignored,
    /// The failure is older than `findtime` (or its ban would already be over).
    Stale,
    /// The target is already banned.
    AlreadyBanned,
    /// Counted; this many failures are now inside the window.
    Counted(u32),
    /// The failure completed `maxretry`: ban this.
    Banned(Ban),
}

#[derive(Debug, Clone, Copy)]
struct Tracker {
    window_start: i64,
    count: u32,
    /// Insertion order of the last failure, for eviction.
    seq: u64,
}

/// One jail's live state. Not thread-safe by itself; the engine owns it.
#[derive(Debug)]
pub struct Jail {
    config: JailConfig,
    own: Vec<IpNet>,
    trackers: HashMap<IpNet, Tracker>,
    seq: u64,
    bans: HashMap<IpNet, Ban>,
    /// Bans so far of each target, and when its last ban ends (`i64::MAX`: permanent).
    ban_counts: HashMap<IpNet, (u32, i64)>,
    evicted: u64,
}

impl Jail {
    /// A jail with empty state. Reads the host's addresses now if `ignore_self` is on.
    pub fn new(config: JailConfig) -> Self {
        let own = if config.ignore_self {
            host_addresses()
        } else {
            Vec::new()
        };
        Jail {
            config,
            own,
            trackers: HashMap::new(),
            seq: 0,
            bans: HashMap::new(),
            ban_counts: HashMap::new(),
            evicted: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &JailConfig {
        &self.config
    }

    /// Re-reads the host's addresses (after interfaces changed).
    pub fn refresh_host_addresses(&mut self) {
        if self.config.ignore_self {
            self.own = host_addresses();
        }
    }

    /// True if `addr` must never be banned by this jail.
    pub fn is_ignored(&self, addr: IpAddr) -> bool {
        let addr = crate::canonical_addr(addr);
        self.config.ignore.iter().any(|n| n.contains(&addr))
            || self.own.iter().any(|n| n.contains(&addr))
    }

    /// Counts one failure seen at engine time `now` (unix seconds).
    pub fn record(&mut self, failure: &Failure, now: i64) -> Verdict {
        let addr = crate::canonical_addr(failure.addr);
        if self.is_ignored(addr) {
            return Verdict::Ignored;
        }
        let findtime = secs(self.config.findtime);
        if failure.time < now.saturating_sub(findtime) {
            return Verdict::Stale;
        }
        let target = self.config.target(addr);
        if self.bans.contains_key(&target) {
            return Verdict::AlreadyBanned;
        }
        self.seq += 1;
        let seq = self.seq;
        let attempts = failure.attempts.max(1);
        let tracker = self.trackers.entry(target).or_insert(Tracker {
            window_start: failure.time,
            count: 0,
            seq,
        });
        if tracker.window_start < failure.time.saturating_sub(findtime) {
            tracker.window_start = failure.time;
            tracker.count = 0;
        }
        tracker.count = tracker.count.saturating_add(attempts);
        tracker.seq = seq;
        let count = tracker.count;
        if count < self.config.maxretry {
            if self.trackers.len() > self.config.max_tracked {
                self.shrink(now);
            }
            return Verdict::Counted(count);
        }
        self.trackers.remove(&target);
        // The ban runs from the failure (like fail2ban), never from a future-dated line. One that
        // would already be over (an old burst replayed) is not recorded at all, so it does not
        // lengthen the next ban either.
        let ban = self.plan_ban(target, failure.time.min(now), None);
        if ban.remaining(now) == Some(0) {
            return Verdict::Stale;
        }
        Verdict::Banned(self.commit(ban))
    }

    /// The ban `target` would get starting at `start` (its ban time incremented by its earlier
    /// bans unless `bantime` overrides it), without recording it.
    fn plan_ban(&self, target: IpNet, start: i64, bantime: Option<BanTime>) -> Ban {
        let previous = self.ban_count(target);
        let until = match bantime.unwrap_or_else(|| self.config.ban_time_after(previous)) {
            BanTime::For(d) => Some(start.saturating_add(secs(d))),
            BanTime::Permanent => None,
        };
        Ban {
            jail: self.config.name.clone(),
            target,
            start,
            until,
            count: previous.saturating_add(1),
        }
    }

    /// Records a planned ban as active and counts it.
    fn commit(&mut self, ban: Ban) -> Ban {
        self.ban_counts
            .insert(ban.target, (ban.count, ban.until.unwrap_or(i64::MAX)));
        self.bans.insert(ban.target, ban.clone());
        ban
    }

    /// Bans `addr` by hand (the ignore lists do not apply: the operator asked). Returns `None`
    /// if its target is already banned. `bantime` overrides the jail's (incremented) ban time.
    pub fn ban(&mut self, addr: IpAddr, now: i64, bantime: Option<BanTime>) -> Option<Ban> {
        let target = self.config.target(crate::canonical_addr(addr));
        if self.bans.contains_key(&target) {
            return None;
        }
        self.trackers.remove(&target);
        let ban = self.plan_ban(target, now, bantime);
        Some(self.commit(ban))
    }

    /// Lifts the ban covering `addr` (an address, or the banned prefix's address); returns it.
    pub fn unban(&mut self, addr: IpAddr) -> Option<Ban> {
        let target = self.config.target(crate::canonical_addr(addr));
        self.bans.remove(&target)
    }

    /// Removes and returns the bans that are over at `now`.
    pub fn expire(&mut self, now: i64) -> Vec<Ban> {
        let over: Vec<IpNet> = self
            .bans
            .values()
            .filter(|b| b.remaining(now) == Some(0))
            .map(|b| b.target)
            .collect();
        over.iter().filter_map(|t| self.bans.remove(t)).collect()
    }

    /// Puts back a ban loaded from saved state (it keeps its original end time).
    pub fn restore(&mut self, ban: Ban) {
        let entry = self.ban_counts.entry(ban.target).or_insert((0, i64::MIN));
        entry.0 = entry.0.max(ban.count);
        entry.1 = entry.1.max(ban.until.unwrap_or(i64::MAX));
        self.bans.insert(ban.target, ban);
    }

    /// Sets how many times `target` was banned before and when its last ban ended (from saved
    /// history), for increments.
    pub fn set_ban_count(&mut self, target: IpNet, count: u32, last_end: i64) {
        self.ban_counts.insert(target, (count, last_end));
    }

    /// How many times `target` has been banned.
    pub fn ban_count(&self, target: IpNet) -> u32 {
        self.ban_counts.get(&target).map_or(0, |c| c.0)
    }

    /// Forgets the ban counts of targets whose last ban ended longer than
    /// [`ban_history`](JailConfig::ban_history) before `now`; returns how many.
    pub fn prune_ban_history(&mut self, now: i64) -> usize {
        let cutoff = now.saturating_sub(secs(self.config.ban_history));
        let before = self.ban_counts.len();
        let bans = &self.bans;
        self.ban_counts
            .retain(|target, (_, last_end)| *last_end >= cutoff || bans.contains_key(target));
        before - self.ban_counts.len()
    }

    /// Active bans.
    pub fn bans(&self) -> impl Iterator<Item = &Ban> {
        self.bans.values()
    }

    /// The active ban of `target`, if any.
    pub fn ban_of(&self, target: IpNet) -> Option<&Ban> {
        self.bans.get(&target)
    }

    /// Addresses currently tracked (failed, not yet banned).
    pub fn tracked(&self) -> usize {
        self.trackers.len()
    }

    /// Failures of `addr` inside its current window.
    pub fn failures_of(&self, addr: IpAddr) -> u32 {
        let target = self.config.target(crate::canonical_addr(addr));
        self.trackers.get(&target).map_or(0, |t| t.count)
    }

    /// How many tracked addresses were dropped by the cap so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Brings the tracker map down to three quarters of the cap: expired windows first, then
    /// the lowest (count, last activity). Amortized O(1) per failure.
    fn shrink(&mut self, now: i64) {
        let before = self.trackers.len();
        let oldest_live = now.saturating_sub(secs(self.config.findtime));
        self.trackers.retain(|_, t| t.window_start >= oldest_live);
        let low_water = self.config.max_tracked / 4 * 3;
        if self.trackers.len() > low_water {
            let excess = self.trackers.len() - low_water;
            let mut keys: Vec<(u32, u64)> =
                self.trackers.values().map(|t| (t.count, t.seq)).collect();
            let (_, &mut threshold, _) = keys.select_nth_unstable(excess - 1);
            self.trackers.retain(|_, t| (t.count, t.seq) > threshold);
        }
        self.evicted += (before - self.trackers.len()) as u64;
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(addr: &str, time: i64) -> Failure {
        Failure {
            addr: addr.parse().expect("test address"),
            time,
            user: None,
            attempts: 1,
        }
    }

    fn jail(b: JailConfigBuilder) -> Jail {
        Jail::new(b.with_ignore_self(false).build().expect("valid config"))
    }

    #[test]
    fn bans_after_maxretry_within_findtime() {
        let mut j = jail(
            JailConfig::builder("sshd")
                .with_maxretry(3)
                .with_findtime(Duration::from_secs(60))
                .with_bantime(BanTime::For(Duration::from_secs(100))),
        );
        assert_eq!(
            j.record(&fail("192.0.2.1", 1000), 1000),
            Verdict::Counted(1)
        );
        assert_eq!(
            j.record(&fail("192.0.2.1", 1010), 1010),
            Verdict::Counted(2)
        );
        assert_eq!(
            j.record(&fail("192.0.2.2", 1010), 1010),
            Verdict::Counted(1)
        );
        let Verdict::Banned(ban) = j.record(&fail("192.0.2.1", 1020), 1020) else {
            panic!("third failure must ban");
        };
        assert_eq!(ban.target, "192.0.2.1/32".parse::<IpNet>().expect("net"));
        assert_eq!((ban.start, ban.until, ban.count), (1020, Some(1120), 1));
        assert_eq!(
            j.record(&fail("192.0.2.1", 1021), 1021),
            Verdict::AlreadyBanned
        );
        assert!(j.expire(1119).is_empty());
        assert_eq!(j.expire(1120).len(), 1);
        assert_eq!(j.bans().count(), 0);
        // Counting starts over after the ban.
        assert_eq!(
            j.record(&fail("192.0.2.1", 1130), 1130),
            Verdict::Counted(1)
        );
    }

    #[test]
    fn window_resets_after_findtime() {
        let mut j = jail(
            JailConfig::builder("w")
                .with_maxretry(2)
                .with_findtime(Duration::from_secs(60)),
        );
        assert_eq!(j.record(&fail("192.0.2.1", 0), 0), Verdict::Counted(1));
        assert_eq!(j.record(&fail("192.0.2.1", 61), 61), Verdict::Counted(1));
        assert!(matches!(
            j.record(&fail("192.0.2.1", 100), 100),
            Verdict::Banned(_)
        ));
        // Old lines (relative to the engine clock) are not counted.
        assert_eq!(j.record(&fail("192.0.2.9", 0), 1000), Verdict::Stale);
    }

    #[test]
    fn a_ban_already_over_is_stale_and_does_not_lengthen_the_next() {
        let mut j = jail(
            JailConfig::builder("inc")
                .with_maxretry(1)
                .with_findtime(Duration::from_secs(600))
                .with_bantime(BanTime::For(Duration::from_secs(60)))
                .with_increment(BanIncrement::default()),
        );
        // A failure 100 s old: within findtime, but its 60 s ban would already be over.
        assert_eq!(j.record(&fail("192.0.2.1", 900), 1000), Verdict::Stale);
        assert_eq!(j.bans().count(), 0);
        let Verdict::Banned(ban) = j.record(&fail("192.0.2.1", 1000), 1000) else {
            panic!("a fresh failure bans");
        };
        assert_eq!(
            (ban.count, ban.until),
            (1, Some(1060)),
            "first ban, base time"
        );
    }

    /// A repeat offender's count is kept while its history is young (the next ban is longer),
    /// and forgotten once its last ban ended longer ago than `ban_history`.
    #[test]
    fn ban_history_is_pruned_by_age() {
        let mut j = jail(
            JailConfig::builder("h")
                .with_maxretry(1)
                .with_bantime(BanTime::For(Duration::from_secs(100)))
                .with_increment(BanIncrement::default())
                .with_ban_history(Duration::from_secs(1000)),
        );
        let target = |b: &Verdict| match b {
            Verdict::Banned(b) => b.clone(),
            other => panic!("not banned: {other:?}"),
        };
        let first = target(&j.record(&fail("192.0.2.1", 10), 10));
        assert_eq!((first.count, first.until), (1, Some(110)));
        assert_eq!(j.expire(200).len(), 1);
        assert_eq!(j.prune_ban_history(1_000), 0, "ended 890 s ago: kept");
        let second = target(&j.record(&fail("192.0.2.1", 1_000), 1_000));
        assert_eq!(second.count, 2, "a repeat offender");
        assert_eq!(j.expire(1_300).len(), 1);
        assert_eq!(second.until, Some(1_200), "twice as long");
        assert_eq!(
            j.prune_ban_history(1_200 + 1_000),
            0,
            "ended 1000 s ago: kept"
        );
        assert_eq!(
            j.prune_ban_history(1_200 + 1_001),
            1,
            "ended more than 1000 s ago"
        );
        assert_eq!(j.ban_count(second.target), 0);
        let third = target(&j.record(&fail("192.0.2.1", 3_000), 3_000));
        assert_eq!(third.count, 1, "counting starts again");
    }

    #[test]
    fn attempts_weigh_failures() {
        let mut j = jail(JailConfig::builder("w").with_maxretry(3));
        let mut f = fail("192.0.2.1", 10);
        f.attempts = 3;
        assert!(matches!(j.record(&f, 10), Verdict::Banned(_)));
    }

    #[test]
    fn ignore_lists_cover_addresses_and_cidr() {
        let mut j = jail(JailConfig::builder("i").with_maxretry(1).with_ignore([
            "192.0.2.0/24",
            "2001:db8::/32",
            "198.51.100.7",
        ]));
        for a in [
            "192.0.2.200",
            "2001:db8:1::5",
            "198.51.100.7",
            "::ffff:192.0.2.3",
        ] {
            assert_eq!(j.record(&fail(a, 5), 5), Verdict::Ignored, "{a}");
        }
        assert!(matches!(
            j.record(&fail("198.51.100.8", 5), 5),
            Verdict::Banned(_)
        ));
        assert!(matches!(
            j.record(&fail("2001:db9::1", 5), 5),
            Verdict::Banned(_)
        ));
    }

    #[test]
    fn host_addresses_and_loopback_are_never_banned() {
        let config = JailConfig::builder("self")
            .with_maxretry(1)
            .build()
            .expect("valid");
        let mut j = Jail::new(config);
        assert_eq!(j.record(&fail("127.0.0.1", 5), 5), Verdict::Ignored);
        assert_eq!(j.record(&fail("::1", 5), 5), Verdict::Ignored);
        for own in if_addrs::get_if_addrs().expect("interfaces") {
            let f = Failure {
                addr: own.ip(),
                time: 5,
                user: None,
                attempts: 1,
            };
            assert_eq!(j.record(&f, 5), Verdict::Ignored, "{}", own.ip());
        }
    }

    #[test]
    fn ipv6_attackers_group_by_prefix() {
        let mut j = jail(
            JailConfig::builder("v6")
                .with_maxretry(3)
                .with_ipv6_prefix(64),
        );
        assert_eq!(
            j.record(&fail("2001:db8:0:1::1", 1), 1),
            Verdict::Counted(1)
        );
        assert_eq!(
            j.record(&fail("2001:db8:0:1::2", 1), 1),
            Verdict::Counted(2)
        );
        assert_eq!(
            j.record(&fail("2001:db8:0:2::1", 1), 1),
            Verdict::Counted(1)
        );
        let Verdict::Banned(ban) = j.record(&fail("2001:db8:0:1:ffff::3", 2), 2) else {
            panic!("third failure in the /64 must ban");
        };
        assert_eq!(
            ban.target,
            "2001:db8:0:1::/64".parse::<IpNet>().expect("net")
        );
        assert_eq!(
            j.record(&fail("2001:db8:0:1::77", 3), 3),
            Verdict::AlreadyBanned
        );
        // IPv4 stays per address.
        assert_eq!(
            j.config()
                .target("192.0.2.9".parse().expect("ip"))
                .prefix_len(),
            32
        );
        assert!(j.unban("2001:db8:0:1::9".parse().expect("ip")).is_some());
    }

    #[test]
    fn incremental_bans_grow_and_cap() {
        let inc = BanIncrement::new();
        let base = Duration::from_secs(60);
        assert_eq!(inc.ban_duration(base, 0), base);
        assert_eq!(inc.ban_duration(base, 1), Duration::from_secs(120));
        assert_eq!(inc.ban_duration(base, 3), Duration::from_secs(480));
        let inc = BanIncrement::new()
            .with_factor(2.0)
            .with_multipliers([1, 5, 30])
            .with_maxtime(Duration::from_secs(3000));
        assert_eq!(inc.ban_duration(base, 1), Duration::from_secs(600));
        assert_eq!(inc.ban_duration(base, 2), Duration::from_secs(3000));
        assert_eq!(inc.ban_duration(base, 9), Duration::from_secs(3000));
        assert_eq!(
            BanIncrement::new().ban_duration(base, u32::MAX),
            Duration::from_secs(60 << 20)
        );

        let mut j = jail(
            JailConfig::builder("inc")
                .with_maxretry(1)
                .with_bantime(BanTime::For(base))
                .with_increment(BanIncrement::new()),
        );
        let mut now = 0;
        for expected in [60, 120, 240] {
            let Verdict::Banned(ban) = j.record(&fail("192.0.2.5", now), now) else {
                panic!("maxretry 1 bans at once");
            };
            assert_eq!(ban.until, Some(now + expected));
            now += expected;
            assert_eq!(j.expire(now).len(), 1);
        }
    }

    #[test]
    fn permanent_and_manual_bans() {
        let mut j = jail(
            JailConfig::builder("perm")
                .with_maxretry(1)
                .with_bantime(BanTime::from_secs(-1))
                .with_ignore(["192.0.2.0/24"]),
        );
        let Verdict::Banned(ban) = j.record(&fail("198.51.100.1", 0), 0) else {
            panic!("must ban");
        };
        assert_eq!(ban.until, None);
        assert_eq!(ban.remaining(i64::MAX), None);
        assert!(j.expire(i64::MAX).is_empty());
        // Manual bans bypass ignore lists and take an explicit time.
        let manual = j
            .ban(
                "192.0.2.1".parse().expect("ip"),
                100,
                Some(BanTime::For(Duration::from_secs(5))),
            )
            .expect("not yet banned");
        assert_eq!(manual.until, Some(105));
        assert!(j.ban("192.0.2.1".parse().expect("ip"), 101, None).is_none());
        assert_eq!(j.unban("192.0.2.1".parse().expect("ip")), Some(manual));
        assert!(j.unban("192.0.2.1".parse().expect("ip")).is_none());
        assert_eq!(j.bans().count(), 1);
    }

    #[test]
    fn builder_rejects_bad_config() {
        for b in [
            JailConfig::builder("bad name"),
            JailConfig::builder(""),
            JailConfig::builder("x").with_maxretry(0),
            JailConfig::builder("x").with_findtime(Duration::ZERO),
            JailConfig::builder("x").with_ipv6_prefix(129),
            JailConfig::builder("x").with_ignore(["300.1.1.1"]),
            JailConfig::builder("x").with_increment(BanIncrement::new().with_factor(f64::NAN)),
            JailConfig::builder("x").with_increment(BanIncrement::new().with_multipliers([1, 0])),
            JailConfig::builder("x").with_max_tracked(1),
        ] {
            assert!(
                matches!(b.build(), Err(Error::InvalidConfig { .. })),
                "accepted bad config"
            );
        }
    }

    #[test]
    fn ports_parse() {
        let ports = parse_ports("22, 8000:8100,443-444").expect("valid");
        assert_eq!(
            ports,
            vec![
                PortRange {
                    first: 22,
                    last: 22
                },
                PortRange {
                    first: 8000,
                    last: 8100
                },
                PortRange {
                    first: 443,
                    last: 444
                },
            ]
        );
        assert!(parse_ports("0").is_err());
        assert!(parse_ports("9:1").is_err());
        assert!(parse_ports("no-such-service-x").is_err());
        if std::path::Path::new("/etc/services").exists() {
            assert_eq!(parse_ports("ssh").expect("known")[0].first, 22);
        }
    }

    /// The cap keeps state bounded while an attacker that keeps failing inside a flood of
    /// one-shot addresses is still banned (the full 10M flood is tests/flood.rs, ignored).
    #[test]
    fn capped_state_still_bans_attacker_in_flood() {
        let mut j = jail(
            JailConfig::builder("flood")
                .with_maxretry(5)
                .with_findtime(Duration::from_secs(3600))
                .with_max_tracked(1000),
        );
        let attacker: IpAddr = "2001:db8::bad".parse().expect("ip");
        let mut banned = false;
        for i in 0u32..100_000 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0A00_0000 + i));
            let f = Failure {
                addr,
                time: 100,
                user: None,
                attempts: 1,
            };
            assert!(!matches!(j.record(&f, 100), Verdict::Banned(_)));
            assert!(j.tracked() <= 1001);
            // The attacker fails once every 600 flood lines: under the cap's reach.
            if i % 600 == 0 {
                let f = Failure {
                    addr: attacker,
                    time: 100,
                    user: None,
                    attempts: 1,
                };
                if let Verdict::Banned(ban) = j.record(&f, 100) {
                    assert_eq!(ban.target, IpNet::from(attacker));
                    banned = true;
                }
            }
        }
        assert!(banned, "attacker inside the flood was not banned");
        assert!(j.evicted() > 90_000);
    }
}

#[cfg(test)]
mod proptests {
    use std::collections::{HashMap, HashSet};

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Against a simple model (one window, no expiry): an address is banned exactly when its
        /// attempts reach maxretry, ignored addresses never are, and state never passes the cap.
        #[test]
        fn jail_matches_the_counting_model(
            maxretry in 1u32..6,
            events in proptest::collection::vec((0u8..40, 1u32..3), 1..400),
        ) {
            let mut j = Jail::new(
                JailConfig::builder("p")
                    .with_maxretry(maxretry)
                    .with_ignore(["192.0.2.0/29"])
                    .with_ignore_self(false)
                    .with_max_tracked(1000)
                    .build()
                    .expect("valid"),
            );
            let mut counts: HashMap<u8, u32> = HashMap::new();
            let mut banned: HashSet<u8> = HashSet::new();
            for (host, attempts) in events {
                let f = Failure {
                    addr: IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, host)),
                    time: 50,
                    user: None,
                    attempts,
                };
                let verdict = j.record(&f, 50);
                if host < 8 {
                    prop_assert_eq!(verdict, Verdict::Ignored);
                    continue;
                }
                if banned.contains(&host) {
                    prop_assert_eq!(verdict, Verdict::AlreadyBanned);
                    continue;
                }
                let count = counts.entry(host).or_insert(0);
                *count += attempts;
                if *count >= maxretry {
                    prop_assert!(matches!(verdict, Verdict::Banned(_)), "{:?}", verdict);
                    banned.insert(host);
                } else {
                    prop_assert_eq!(verdict, Verdict::Counted(*count));
                }
                prop_assert!(j.tracked() <= 1000);
            }
            prop_assert_eq!(j.bans().count(), banned.len());
        }
    }
}
