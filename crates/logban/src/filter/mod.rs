//! Filters: turn log lines into failures, with fail2ban's semantics.
//!
//! A [`Filter`] is built from a [`FilterDefinition`] (failregex, ignoreregex, prefregex,
//! datepattern, maxlines), usually loaded from a fail2ban filter file with
//! [`crate::fail2ban::load_filter`]. Feed it lines with [`Filter::process_line`] (dates detected
//! in the line) or [`Filter::process_line_at`] (journal entries, time known); it returns
//! [`FilterMatch`]es, and [`FilterMatch::to_failure`] keeps only validated addresses.
//!
//! Dependencies, and why: `regex-automata` and `regex-syntax` (the engines under `regex`) resolve
//! capture groups of very long matches (200 KB lines of repeated tokens) in a few milliseconds,
//! through reverse lazy DFAs and a bounded backtracker, where `regex`'s own captures fall back to
//! its PikeVM at about 300 ns per byte. `foldhash` hashes the per-line maps (the capture memo's
//! class sequences, the session cache's ids) in a fraction of std's SipHash time, still seeded
//! per process, so that hostile lines cannot aim at one bucket.

mod date;
mod pyregex;
mod rewrite;
mod scan;
mod screen;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

pub use date::{Clock, DateDetector, FoundDate, parse_logtimezone};

pub use pyregex::{BACKTRACK_LIMIT, BACKTRACK_STEPS_PER_BYTE, TranslateError};
use pyregex::{Captures, Matcher};
pub use scan::{LineMatch, WARMUP_LINES};
use screen::{Screen, Screened, Verdict};

use crate::{Error, Failure, Result, canonical_addr};

/// The raw parts of a filter, in fail2ban's (Python regex) syntax.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterDefinition {
    /// Name, for messages.
    pub name: String,
    /// Failure patterns; each needs a failure id (`<HOST>`, `<ADDR>`, `<F-ID>`, ...).
    pub failregex: Vec<String>,
    /// Lines matching one of these are never failures.
    pub ignoreregex: Vec<String>,
    /// Pre-filter every line must match; its `<F-CONTENT>` is what failregexes then see.
    pub prefregex: Option<String>,
    /// Date templates (one per line); `None` means fail2ban's defaults.
    pub datepattern: Option<String>,
    /// Lines kept together for multi-line regexes.
    pub maxlines: usize,
    /// systemd journal matches (`_SYSTEMD_UNIT=sshd.service + _COMM=sshd`), one alternative each.
    pub journalmatch: Vec<String>,
}

impl FilterDefinition {
    /// An empty definition called `name`; set the fields that the filter uses.
    ///
    /// ```
    /// let mut def = logban::FilterDefinition::new("demo");
    /// def.failregex.push(r"login failed from <HOST>".into());
    /// assert!(logban::FilterBuilder::new(def).build().is_ok());
    /// ```
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// How `<HOST>` treats host names (never resolved by logban).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UseDns {
    /// `<HOST>` also matches host names; they are reported as ids but never banned.
    #[default]
    Report,
    /// `<HOST>` matches addresses only (fail2ban's `usedns = no`).
    No,
}

/// Builds a [`Filter`].
#[derive(Debug, Clone)]
pub struct FilterBuilder {
    def: FilterDefinition,
    clock: Clock,
    check_all_regex: bool,
    use_dns: UseDns,
    skip_comments: bool,
    keep_lines: bool,
}

impl FilterBuilder {
    /// Starts from a definition.
    pub fn new(def: FilterDefinition) -> Self {
        Self {
            def,
            clock: Clock::default(),
            check_all_regex: false,
            use_dns: UseDns::default(),
            skip_comments: false,
            keep_lines: true,
        }
    }

    /// Clock and time zone for dates without year or zone (default: system).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Try every failregex on each line instead of stopping at the first match (fail2ban-regex
    /// and its test suite do this).
    pub fn with_check_all_regex(mut self, yes: bool) -> Self {
        self.check_all_regex = yes;
        self
    }

    /// Skip lines that start with `#`, and empty lines, without counting them (fail2ban-regex
    /// does this with the comments of its annotated sample logs); off by default, since a `#`
    /// line of a real log is data.
    pub fn with_comment_lines_skipped(mut self, yes: bool) -> Self {
        self.skip_comments = yes;
        self
    }

    /// Whether a one-line match keeps a copy of its line in [`FilterMatch::lines`] (on by
    /// default). Off, its `lines` stay empty and [`FilterMatch::attempts`] still counts it:
    /// a flood's matches then copy no line (the daemon and `logban-regex` read no match's
    /// lines). Multi-line sessions (`<F-MLFID>`, `maxlines`) keep their lines either way.
    pub fn with_matched_lines(mut self, yes: bool) -> Self {
        self.keep_lines = yes;
        self
    }

    /// Whether `<HOST>` matches host names.
    pub fn with_use_dns(mut self, use_dns: UseDns) -> Self {
        self.use_dns = use_dns;
        self
    }

    /// Compiles every regex.
    pub fn build(self) -> Result<Filter> {
        let maxlines = self.def.maxlines.max(1);
        let multiline = maxlines > 1;
        let compile = |py: &str, multiline: bool| -> Result<Matcher> {
            let resolved = resolve_tags(py, self.use_dns);
            Matcher::compile(&resolved, multiline).map_err(|e| Error::Regex {
                pattern: py.to_string(),
                reason: e.reason,
            })
        };
        let prefregex = match self.def.prefregex.as_deref() {
            Some(p) if !p.trim().is_empty() => Some(compile(p, false)?),
            _ => None,
        };
        let pref_has_id = prefregex
            .as_ref()
            .is_some_and(|p| has_failure_id(p.names()));
        let mut failregex = Vec::new();
        for r in &self.def.failregex {
            if r.trim().is_empty() {
                continue;
            }
            // sshd's conditional failregexes run linear when rewritten (see `rewrite`).
            let linear = rewrite::linear_conditionals(r).and_then(|p| {
                let resolved = rewrite::number_duplicate_groups(&resolve_tags(&p, self.use_dns));
                Matcher::compile(&resolved, multiline)
                    .ok()
                    .filter(|m| !m.is_backtracking())
            });
            let m = match linear {
                Some(m) => m,
                None => compile(r, multiline)?,
            };
            if !pref_has_id && !has_failure_id(m.names()) {
                return Err(Error::Regex {
                    pattern: r.clone(),
                    reason: "no failure-id group (<HOST>, <ADDR>, <F-ID>, ...)".into(),
                });
            }
            failregex.push(m);
        }
        let ignoreregex = self
            .def
            .ignoreregex
            .iter()
            .filter(|r| !r.trim().is_empty())
            .map(|r| compile(r, false))
            .collect::<Result<Vec<_>>>()?;
        // Linear patterns compile on first use; those that always run, and the failregexes
        // when no screen's set (which has the same size limit) took them all, compile now so
        // that one that cannot is a load error.
        let compile_now = |m: &Matcher, py: &str| {
            m.compile_now().map_err(|reason| Error::Regex {
                pattern: py.to_string(),
                reason,
            })
        };
        if let (Some(m), Some(py)) = (&prefregex, self.def.prefregex.as_deref()) {
            compile_now(m, py)?;
        }
        for (m, py) in ignoreregex
            .iter()
            .zip(self.def.ignoreregex.iter().filter(|r| !r.trim().is_empty()))
        {
            compile_now(m, py)?;
        }
        let dates = match self.def.datepattern.as_deref() {
            Some(p) if !p.trim().is_empty() => {
                DateDetector::from_datepattern(p).map_err(|reason| Error::Regex {
                    pattern: p.to_string(),
                    reason,
                })?
            }
            _ => DateDetector::default_templates(),
        };
        // Reject first: only for one-line filters (a multi-line buffer is matched as a whole)
        // whose ignoreregexes run after a failregex matched.
        let early_ignore = !ignoreregex.is_empty() && ignoreregex.len() + 2 < failregex.len();
        let screen = (maxlines == 1 && !early_ignore)
            .then(|| {
                let fail: Vec<&str> = failregex.iter().map(Matcher::pattern).collect();
                Screen::new(prefregex.as_ref(), &fail)
            })
            .flatten();
        if screen.is_none() {
            for (m, py) in failregex
                .iter()
                .zip(self.def.failregex.iter().filter(|r| !r.trim().is_empty()))
            {
                compile_now(m, py)?;
            }
        }
        Ok(Filter {
            screen,
            scratch: String::new(),
            text: String::new(),
            stats: FilterStats {
                failregex_hits: vec![0; failregex.len()],
                ignoreregex_hits: vec![0; ignoreregex.len()],
                ..FilterStats::default()
            },
            def: self.def,
            // Built when first needed: the screen's set usually says which regexes can match.
            fail_set: Arc::default(),
            ends_session: failregex.iter().map(ends_session).collect(),
            failregex,
            ignoreregex,
            prefregex,
            dates,
            maxlines,
            clock: self.clock,
            check_all_regex: self.check_all_regex,
            skip_comments: self.skip_comments,
            keep_lines: self.keep_lines,
            buffer: Vec::new(),
            mlfid: MlfidCache::default(),
            last_date: None,
        })
    }
}

/// Whether every match of `failregex` ends its `<F-MLFID>` session and is not a failure, taking
/// no id of its own: `<F-MLFFORGET>` and `<F-NOFAIL>` (or `<F-MLFGAINED>`) take part in every
/// match with some text, and no group names the session. Such a match of a line whose session
/// is not cached only counts (fail2ban's `_mergeFailure` then drops the match), whatever the
/// other groups hold.
fn ends_session(failregex: &Matcher) -> bool {
    let always = failregex.always_nonempty_groups();
    let always = |name: &str| always.iter().any(|a| a == name);
    !failregex
        .names()
        .iter()
        .flatten()
        .any(|name| name.contains("mlfid"))
        && always("mlfforget")
        && (always("nofail") || always("mlfgained"))
}

fn has_failure_id(names: &[Option<Arc<str>>]) -> bool {
    names
        .iter()
        .flatten()
        .any(|n| matches!(&**n, "fid" | "ip4" | "ip6" | "dns" | "mlfid"))
}

const IP4: &str = r"(?:\d{1,3}\.){3}\d{1,3}";
const IP6: &str = r"(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|(?<=:):)";

/// Expands fail2ban's tags (`<HOST>`, `<ADDR>`, `<F-USER>…</F-USER>`, `<SKIPLINES>`, ...).
fn resolve_tags(regex: &str, use_dns: UseDns) -> String {
    let ipv4 = format!("(?:::f{{4,6}}:)?(?P<ip4>{IP4})");
    let ipv6 = format!("(?P<ip6>{IP6})");
    let dns = r"(?P<dns>[\w\-.^_]*\w)";
    let addr = format!(r"\[?(?:{ipv4}|{ipv6})\]?");
    let host = match use_dns {
        UseDns::Report => format!("(?:{addr}|{dns})"),
        UseDns::No => addr.clone(),
    };
    let cidr = r"(?P<cidr>\d+)";
    let subnet = format!(r"\[?(?:{ipv4}|{ipv6})(?:/{cidr})?\]?");
    let mut out = String::with_capacity(regex.len() * 2);
    let mut open: BTreeSet<String> = BTreeSet::new();
    let mut skiplines = 0;
    let mut rest = regex;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let tail = &rest[lt..];
        let end = tail[1..].find(['<', '>']).map(|e| e + 1);
        let Some(end) = end.filter(|&e| tail.as_bytes()[e] == b'>') else {
            out.push('<');
            rest = &tail[1..];
            continue;
        };
        let tag = &tail[..=end];
        let name = &tag[1..tag.len() - 1];
        let valid = {
            let n = name.trim_start_matches('/').trim_end_matches('/');
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
        };
        let repl: Option<String> = if !valid {
            None
        } else {
            match name {
                "HOST" => Some(host.clone()),
                "ADDR" | "F-ADDR/" => Some(addr.clone()),
                "IP4" | "F-IP4/" => Some(ipv4.clone()),
                "IP6" | "F-IP6/" => Some(ipv6.clone()),
                "DNS" | "F-DNS/" => Some(dns.to_string()),
                "CIDR" | "F-CIDR/" => Some(cidr.to_string()),
                "SUBNET" | "F-SUBNET/" => Some(subnet.clone()),
                "F-ID/" => Some(r"(?P<fid>\S+)".into()),
                "F-PORT/" => Some(r"(?P<fport>\w+)".into()),
                "SKIPLINES" => {
                    let r = format!(r"\n(?P<skiplines{skiplines}>(?:(?:.*\n)*?))");
                    skiplines += 1;
                    Some(r)
                }
                _ => {
                    let (closing, n) = match name.strip_prefix('/') {
                        Some(n) => (true, n),
                        None => (false, name),
                    };
                    match n.strip_prefix("F-") {
                        Some(t)
                            if t.chars().all(|c| {
                                c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '-'
                            }) =>
                        {
                            if closing {
                                open.remove(t).then(|| ")".to_string())
                            } else {
                                open.insert(t.to_string());
                                Some(format!("(?P<{}>", group_name(t)))
                            }
                        }
                        _ => None,
                    }
                }
            }
        };
        match repl {
            Some(r) => out.push_str(&r),
            None => out.push_str(tag),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

/// fail2ban's tag-to-group mapping (`F-ID` → `fid`, `F-PORT` → `fport`, else lower case).
fn group_name(tag: &str) -> String {
    let lower = tag.to_lowercase().replace('-', "_");
    match lower.as_str() {
        "id" => "fid".into(),
        "port" => "fport".into(),
        _ => lower,
    }
}

/// Counters of one filter, like fail2ban-regex's summary.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterStats {
    /// Lines fed in.
    pub lines: u64,
    /// Lines where a date was found.
    pub dated: u64,
    /// Lines (or buffers) that matched a failregex.
    pub matched: u64,
    /// Lines dropped by an ignoreregex.
    pub ignored: u64,
    /// Hits per failregex, by index.
    pub failregex_hits: Vec<u64>,
    /// Hits per ignoreregex, by index.
    pub ignoreregex_hits: Vec<u64>,
    /// Lines that nothing matched but that were not fully decided: a failregex that needs the
    /// backtracking engine gave up on them (its budget, 100,000 steps a search or
    /// [`BACKTRACK_STEPS_PER_BYTE`] a byte of a longer line, is spent: the pattern backtracks
    /// more than linearly on that line).
    /// They may hold failures that were not found; they are never silently "missed".
    pub undecided: u64,
}

impl FilterStats {
    /// All zero, with as many per-regex counters as `like`.
    fn zeroed_like(like: &FilterStats) -> Self {
        Self {
            failregex_hits: vec![0; like.failregex_hits.len()],
            ignoreregex_hits: vec![0; like.ignoreregex_hits.len()],
            ..Self::default()
        }
    }

    /// Adds another run's counters (same filter).
    fn add(&mut self, other: &FilterStats) {
        self.lines += other.lines;
        self.dated += other.dated;
        self.matched += other.matched;
        self.ignored += other.ignored;
        self.undecided += other.undecided;
        for (a, b) in self.failregex_hits.iter_mut().zip(&other.failregex_hits) {
            *a += b;
        }
        for (a, b) in self
            .ignoreregex_hits
            .iter_mut()
            .zip(&other.ignoreregex_hits)
        {
            *a += b;
        }
    }

    /// Lines neither matched nor ignored (a line can be both when every regex is tried).
    pub fn missed(&self) -> u64 {
        self.lines
            .saturating_sub(self.matched)
            .saturating_sub(self.ignored)
    }
}

/// The named groups of a match (fail2ban's match dict): each name once, in name order.
///
/// Names are shared with the pattern and values between a match and its cached session, so
/// that copies cost no text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups(Vec<(Arc<str>, Arc<str>)>);

impl Groups {
    /// The text of group `name`, if it took part.
    pub fn get(&self, name: &str) -> Option<&str> {
        let i = self.find(name).ok()?;
        Some(&self.0[i].1)
    }

    /// `(name, text)` pairs, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (&**n, &**v))
    }

    /// How many groups there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Where `name` is, or would go (a match has a handful of groups: a linear walk).
    fn find(&self, name: &str) -> std::result::Result<usize, usize> {
        for (i, (n, _)) in self.0.iter().enumerate() {
            match (**n).cmp(name) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return Ok(i),
                std::cmp::Ordering::Greater => return Err(i),
            }
        }
        Err(self.0.len())
    }

    /// Sets `name` to `value`.
    fn insert(&mut self, name: Arc<str>, value: Arc<str>) {
        match self.find(&name) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (name, value)),
        }
    }

    /// Sets `name` to `value` unless it has a value.
    fn insert_absent(&mut self, name: Arc<str>, value: Arc<str>) {
        if let Err(i) = self.find(&name) {
            self.0.insert(i, (name, value));
        }
    }

    /// The text of group `name`, shared.
    fn shared(&self, name: &str) -> Option<Arc<str>> {
        let i = self.find(name).ok()?;
        Some(self.0[i].1.clone())
    }

    fn remove(&mut self, name: &str) -> Option<Arc<str>> {
        let i = self.find(name).ok()?;
        Some(self.0.remove(i).1)
    }

    fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.0.retain(|(n, _)| keep(n));
    }
}

/// One failregex match, as fail2ban reports it before any ban decision.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub struct FilterMatch {
    /// Index of the failregex that matched.
    pub regex: usize,
    /// The failure id as captured (address text, host name, `<F-ID>` value); `None` while a
    /// multi-line failure waits for its id.
    pub id: Option<String>,
    /// The id as a validated canonical address, if it is one. Host names and malformed
    /// addresses (leading zeros...) stay `None` and are never banned.
    pub addr: Option<IpAddr>,
    /// Time of the failure (Unix seconds, fractional for epoch dates), if a date was found.
    pub time: Option<f64>,
    /// Not (yet) a failure: `<F-NOFAIL>` or a multi-line session still pending.
    pub nofail: bool,
    /// Named groups (`user`, `fport`, custom `<F-*>` tags) with their text.
    pub groups: Groups,
    /// Distinct users seen in a multi-line session (`<F-MLFID>`).
    pub users: Vec<String>,
    /// Lines that make up this failure; their count is the attempt count.
    pub lines: Vec<Arc<str>>,
}

impl FilterMatch {
    /// How many failures this match counts for (fail2ban's `len(matches)`, at least 1).
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.lines.len()).unwrap_or(u32::MAX).max(1)
    }

    /// Whether [`to_failure`](Self::to_failure) gives a failure (without building it).
    pub fn is_failure(&self) -> bool {
        !self.nofail && self.addr.is_some() && self.time.is_some()
    }

    /// The [`Failure`] for a jail, if this match is one, its id is a valid address and the line
    /// had a timestamp (see [`to_failure_at`](Self::to_failure_at) for lines without one).
    pub fn to_failure(&self) -> Option<Failure> {
        self.time.and_then(|t| self.to_failure_at(t as i64))
    }

    /// The [`Failure`] for a jail, if this match is one and its id is a valid address; a match
    /// whose line had no timestamp fails at `now` (Unix seconds), the time it was read, as
    /// fail2ban counts it.
    pub fn to_failure_at(&self, now: i64) -> Option<Failure> {
        if self.nofail {
            return None;
        }
        Some(Failure {
            addr: self.addr?,
            time: self.time.map_or(now, |t| t as i64),
            user: self.groups.get("user").map(str::to_string),
            attempts: self.attempts(),
        })
    }
}

/// Parses a failure id into a canonical address; anything else is not an address.
pub fn parse_addr(id: &str) -> Option<IpAddr> {
    let id = id.trim_start_matches('[').trim_end_matches(']');
    if let Some(v4) = dotted_quad(id.as_bytes()) {
        return Some(IpAddr::V4(v4));
    }
    let addr: IpAddr = id.parse().ok()?;
    Some(canonical_addr(addr))
}

/// A dotted quad as the standard library reads it (four octets of one to three decimal
/// digits, no leading zero, none above 255), read without its general parser: most failure
/// ids are one, and this runs for every failure of a flood.
fn dotted_quad(text: &[u8]) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let (mut octet, mut value, mut digits) = (0, 0u16, 0);
    for &b in text {
        if b.is_ascii_digit() {
            // A fourth digit, or a digit after a leading zero.
            if digits == 3 || digits == 1 && value == 0 {
                return None;
            }
            value = value * 10 + u16::from(b - b'0');
            digits += 1;
        } else if b == b'.' && digits > 0 && octet < 3 {
            *octets.get_mut(octet)? = u8::try_from(value).ok()?;
            (octet, value, digits) = (octet + 1, 0, 0);
        } else {
            return None;
        }
    }
    if digits == 0 || octet != 3 {
        return None;
    }
    octets[3] = u8::try_from(value).ok()?;
    Some(std::net::Ipv4Addr::from(octets))
}

/// A line split around its date: the regexes see `pre + post`.
#[derive(Debug, Clone, PartialEq)]
struct TupleLine {
    pre: String,
    date: String,
    post: String,
}

impl TupleLine {
    fn text(&self) -> String {
        let mut s = String::with_capacity(self.pre.len() + self.post.len());
        s.push_str(&self.pre);
        s.push_str(&self.post);
        s
    }

    fn full(&self) -> String {
        let mut s = String::with_capacity(self.pre.len() + self.date.len() + self.post.len());
        s.push_str(&self.pre);
        s.push_str(&self.date);
        s.push_str(&self.post);
        s
    }
}

/// A line split around its date, borrowed from the line read (see [`TupleLine`]).
#[derive(Debug, Clone, Copy)]
struct LineParts<'a> {
    /// The whole line: `pre`, `date` and `post` one after the other.
    line: &'a str,
    pre: &'a str,
    date: &'a str,
    post: &'a str,
}

impl LineParts<'_> {
    fn to_tuple(self) -> TupleLine {
        TupleLine {
            pre: self.pre.to_string(),
            date: self.date.to_string(),
            post: self.post.to_string(),
        }
    }
}

fn buffer_text(lines: &[TupleLine]) -> String {
    let mut s = String::new();
    buffer_text_into(lines, &mut s);
    s
}

/// What the regexes see of `lines`: each without its date, joined and ended by `\n`.
fn buffer_text_into(lines: &[TupleLine], s: &mut String) {
    s.clear();
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        s.push_str(&l.pre);
        s.push_str(&l.post);
    }
    s.push('\n');
}

/// The failure being built for one regex match (fail2ban's `fail` dict).
#[derive(Debug, Clone, Default, PartialEq)]
struct Fail {
    groups: Groups,
    matches: Option<Vec<Arc<str>>>,
    nofail_matches: Option<Vec<Arc<str>>>,
    users: Option<BTreeSet<String>>,
    mlfpending: bool,
}

impl Fail {
    fn truthy(&self, k: &str) -> bool {
        self.groups.get(k).is_some_and(|v| !v.is_empty())
    }

    fn pop_truthy(&mut self, k: &str) -> bool {
        self.groups.remove(k).is_some_and(|v| !v.is_empty())
    }

    fn update_users(&mut self) -> Option<BTreeSet<String>> {
        if let Some(user) = self.groups.get("user").filter(|u| !u.is_empty()) {
            let user = user.to_string();
            self.users.get_or_insert_with(BTreeSet::new).insert(user);
        }
        self.users.clone()
    }
}

/// The linear failregexes as one set, with their indexes among all failregexes.
#[derive(Debug, Clone)]
struct FailSet {
    set: regex::RegexSet,
    index: Vec<usize>,
}

impl FailSet {
    /// One DFA pass over a line tells which failregexes can match; only those run captures.
    fn new(failregex: &[Matcher], multiline: bool) -> Option<Self> {
        let linear: Vec<(usize, &str)> = failregex
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.linear_pattern().map(|p| (i, p)))
            .collect();
        regex::RegexSetBuilder::new(linear.iter().map(|(_, p)| *p))
            .multi_line(multiline)
            .size_limit(256 << 20)
            .dfa_size_limit(64 << 20)
            .build()
            .ok()
            .map(|set| FailSet {
                set,
                index: linear.iter().map(|(i, _)| *i).collect(),
            })
    }

    /// Which failregexes may match `text`: set members that match, plus every regex that is
    /// not in the set (backtracking ones).
    fn candidates(&self, text: &str, total: usize) -> Vec<bool> {
        let mut out = vec![true; total];
        for &i in &self.index {
            out[i] = false;
        }
        for m in self.set.matches(text).iter() {
            out[self.index[m]] = true;
        }
        out
    }
}

/// The failregexes a text may match: every one (of this many), the screen's candidates, or
/// the fallback set's (no allocation for the first two, a line's common cases).
enum CandidateSet {
    All(usize),
    Screened(screen::Candidates),
    Listed(Vec<bool>),
}

impl CandidateSet {
    fn contains(&self, i: usize) -> bool {
        match self {
            Self::All(total) => i < *total,
            Self::Screened(found) => found.contains(i),
            Self::Listed(may) => may.get(i).copied().unwrap_or(false),
        }
    }

    /// Whether one after failregex `i` may match.
    fn any_after(&self, i: usize) -> bool {
        match self {
            Self::All(total) => i + 1 < *total,
            Self::Screened(found) => found.any_after(i),
            Self::Listed(may) => may.get(i + 1..).is_some_and(|rest| rest.contains(&true)),
        }
    }
}

/// fail2ban's multi-line session cache: at most 100 sessions, the oldest evicted first, each
/// kept 5 minutes (`Utils.Cache(maxCount=100, maxTime=5*60)`).
///
/// `order` lists insertions oldest first with a sequence number; an entry whose key was removed
/// (or removed and inserted again, with a newer number) is stale and skipped, so a `put` costs
/// no scan; stale entries are swept when they outnumber live ones.
#[derive(Debug, Clone, Default)]
struct MlfidCache {
    map: HashMap<Arc<str>, (Fail, i64, u64), foldhash::fast::RandomState>,
    order: std::collections::VecDeque<(u64, Arc<str>)>,
    seq: u64,
}

impl MlfidCache {
    const MAX: usize = 100;
    const TTL: i64 = 300;

    /// The live session `key`, taken out of its entry: the caller puts it back (same age) or
    /// removes the entry.
    fn take(&mut self, key: &str, now: i64) -> Option<Fail> {
        match self.map.get_mut(key) {
            Some((f, exp, _)) if *exp > now => Some(std::mem::take(f)),
            Some(_) => {
                self.map.remove(key);
                None
            }
            None => None,
        }
    }

    fn remove(&mut self, key: &str) {
        self.map.remove(key);
    }

    /// Whether `key` is a live session at `now` (what [`take`](Self::take) would return).
    fn has_live(&self, key: &str, now: i64) -> bool {
        self.map.get(key).is_some_and(|(_, exp, _)| *exp > now)
    }

    /// The live sessions, oldest first: all that decides what the cache does next.
    fn live(&self) -> Vec<(String, Fail, i64)> {
        let mut live: Vec<_> = self.map.iter().collect();
        live.sort_unstable_by_key(|(_, (_, _, seq))| *seq);
        live.into_iter()
            .map(|(k, (f, exp, _))| (k.to_string(), f.clone(), *exp))
            .collect()
    }

    fn is_live(&self, seq: u64, key: &str) -> bool {
        self.map.get(key).is_some_and(|e| e.2 == seq)
    }

    /// Updates a session in place (same age), or adds it, evicting the oldest when full.
    fn put(&mut self, key: &Arc<str>, fail: Fail, now: i64) {
        if let Some(entry) = self.map.get_mut(&**key) {
            entry.0 = fail;
            return;
        }
        while self.map.len() >= Self::MAX {
            let Some((seq, old)) = self.order.pop_front() else {
                break;
            };
            if self.is_live(seq, &old) {
                self.map.remove(&old);
            }
        }
        if self.order.len() > 2 * Self::MAX {
            let order = std::mem::take(&mut self.order);
            self.order = order
                .into_iter()
                .filter(|(seq, k)| self.is_live(*seq, k))
                .collect();
        }
        self.seq += 1;
        self.order.push_back((self.seq, key.clone()));
        self.map
            .insert(key.clone(), (fail, now + Self::TTL, self.seq));
    }
}

/// A copy of what a filter carries from one line to the next, to move between threads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Carry {
    buffer: Vec<TupleLine>,
    mlfid: MlfidCache,
    last_date: Option<f64>,
    dates: date::DateState,
}

/// What a filter carries from one line to the next, compared (see [`Filter::state`]).
#[derive(Debug, PartialEq)]
pub(crate) struct FilterState {
    buffer: Vec<TupleLine>,
    last_date: Option<u64>,
    date_template: date::SelectionState,
    fixed_now: Option<i64>,
    sessions: Vec<(String, Fail, i64)>,
}

/// A compiled filter with its multi-line state.
#[derive(Debug, Clone)]
pub struct Filter {
    def: FilterDefinition,
    /// One DFA pass that rejects lines no failregex can match (see [`screen`]).
    screen: Option<Screen>,
    /// The screened text (line without its date, `\n`), reused from line to line.
    scratch: String,
    /// The text the regexes run on (see [`Filter::find_failures`]), reused from line to line.
    text: String,
    fail_set: Arc<OnceLock<Option<FailSet>>>,
    /// By failregex: whether each of its matches is a not-a-failure that ends its session
    /// (see [`ends_session`]).
    ends_session: Vec<bool>,
    failregex: Vec<Matcher>,
    ignoreregex: Vec<Matcher>,
    prefregex: Option<Matcher>,
    dates: DateDetector,
    maxlines: usize,
    clock: Clock,
    check_all_regex: bool,
    skip_comments: bool,
    /// See [`FilterBuilder::with_matched_lines`].
    keep_lines: bool,
    buffer: Vec<TupleLine>,
    mlfid: MlfidCache,
    last_date: Option<f64>,
    stats: FilterStats,
}

impl Filter {
    /// The definition this filter was built from.
    pub fn definition(&self) -> &FilterDefinition {
        &self.def
    }

    /// The filter's clock's "now", Unix seconds.
    pub(crate) fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Counters so far.
    pub fn stats(&self) -> &FilterStats {
        &self.stats
    }

    /// A copy of the line-to-line state.
    pub(crate) fn carry(&self) -> Carry {
        Carry {
            buffer: self.buffer.clone(),
            mlfid: self.mlfid.clone(),
            last_date: self.last_date,
            dates: self.dates.state_copy(),
        }
    }

    /// Takes the line-to-line state of a filter with the same definition.
    pub(crate) fn set_carry(&mut self, carry: &Carry) {
        self.buffer.clone_from(&carry.buffer);
        self.mlfid.clone_from(&carry.mlfid);
        self.last_date = carry.last_date;
        self.dates.set_state(&carry.dates);
    }

    /// The line-to-line state: given the same lines from now on, two filters of the same
    /// definition in equal states report the same matches (counters aside).
    pub(crate) fn state(&self) -> FilterState {
        FilterState {
            // A one-line filter replaces its buffer on every line.
            buffer: if self.maxlines == 1 {
                Vec::new()
            } else {
                self.buffer.clone()
            },
            last_date: self.last_date.map(f64::to_bits),
            date_template: self.dates.state(),
            fixed_now: self.clock.fixed_now,
            sessions: self.mlfid.live(),
        }
    }

    /// Indexes of failregexes that run on the backtracking engine (with a budget).
    pub fn backtracking_regexes(&self) -> Vec<usize> {
        (0..self.failregex.len())
            .filter(|&i| self.failregex[i].is_backtracking())
            .collect()
    }

    /// Processes one log line (date detected in the line).
    pub fn process_line(&mut self, line: &str) -> Vec<FilterMatch> {
        let gave_up = pyregex::gave_up_count();
        let found = self.process_one_line(line);
        self.count_undecided(gave_up, &found);
        found
    }

    /// Counts the line as undecided when nothing matched it and a pattern gave up on it.
    fn count_undecided(&mut self, gave_up_before: u64, found: &[FilterMatch]) {
        if found.is_empty() && pyregex::gave_up_count() != gave_up_before {
            self.stats.undecided += 1;
        }
    }

    fn process_one_line(&mut self, line: &str) -> Vec<FilterMatch> {
        if self.skip_comments && (line.is_empty() || line.starts_with('#')) {
            return Vec::new();
        }
        self.stats.lines += 1;
        let found = self.dates.find(line, &self.clock);
        let mut screened = None;
        if let Some(screen) = &mut self.screen {
            let (s, e) = found.map_or((0, 0), |f| f.span);
            match screen.verdict(
                self.prefregex.as_ref(),
                &line[..s],
                &line[e..],
                &mut self.scratch,
            ) {
                Verdict::Reject => {
                    self.rejected(found);
                    return Vec::new();
                }
                Verdict::Found(found) => screened = Some(found),
                Verdict::MayMatch => {}
            }
        }
        let (parts, date) = match found {
            Some(f) => {
                self.stats.dated += 1;
                let (s, e) = f.span;
                let parts = LineParts {
                    line,
                    pre: &line[..s],
                    date: &line[s..e],
                    post: &line[e..],
                };
                let date = if s == e {
                    // Empty date ({NONE}): last known if recent, else now.
                    match self.last_date {
                        Some(t) if t > (self.clock.now() - 60) as f64 => Some(t),
                        _ => Some(self.clock.now() as f64),
                    }
                } else {
                    f.time
                };
                if let Some(t) = date.filter(|_| s != e) {
                    self.last_date = Some(t);
                }
                (parts, date)
            }
            None => (
                LineParts {
                    line,
                    pre: "",
                    date: "",
                    post: line,
                },
                None,
            ),
        };
        let date = date.or_else(|| {
            self.last_date
                .filter(|t| *t > (self.clock.now() - 60) as f64)
        });
        self.find_failures(parts, date, screened)
    }

    /// The bookkeeping of a line the screen rejected: what the full path would have done to the
    /// counters and the last known date, without building the line's buffers.
    fn rejected(&mut self, found: Option<FoundDate>) {
        self.buffer.clear();
        if let Some(f) = found {
            self.stats.dated += 1;
            if f.span.0 != f.span.1
                && let Some(t) = f.time
            {
                self.last_date = Some(t);
            }
        }
    }

    /// Processes raw bytes (invalid UTF-8 is replaced, like fail2ban's `errors=replace`).
    pub fn process_bytes(&mut self, line: &[u8]) -> Vec<FilterMatch> {
        // `from_utf8` is the fast check; the lossy copy only for lines with invalid bytes.
        match std::str::from_utf8(line) {
            Ok(text) => self.process_line(text),
            Err(_) => self.process_line(&String::from_utf8_lossy(line)),
        }
    }

    /// Processes a line whose time is already known (a journal entry).
    pub fn process_line_at(&mut self, line: &str, time: f64) -> Vec<FilterMatch> {
        let gave_up = pyregex::gave_up_count();
        let found = self.process_one_line_at(line, time);
        self.count_undecided(gave_up, &found);
        found
    }

    fn process_one_line_at(&mut self, line: &str, time: f64) -> Vec<FilterMatch> {
        self.stats.lines += 1;
        self.stats.dated += 1;
        let parts = LineParts {
            line,
            pre: "",
            date: "",
            post: line,
        };
        self.last_date = Some(time);
        self.find_failures(parts, Some(time), None)
    }

    /// Convenience: the failures (validated addresses only) a line yields.
    pub fn failures(&mut self, line: &str) -> Vec<Failure> {
        self.process_line(line)
            .iter()
            .filter_map(FilterMatch::to_failure)
            .collect()
    }

    /// Whether an ignoreregex matches `buf` (counting the hit; the caller counts the line once).
    fn ignored(&mut self, buf: &str) -> bool {
        for (i, re) in self.ignoreregex.iter().enumerate() {
            if re.is_match(buf) {
                self.stats.ignoreregex_hits[i] += 1;
                return true;
            }
        }
        false
    }

    /// Matches the buffer with `tuple` added; `screened` is what the screen found on the text
    /// the failregexes run on (the content, or the line without a prefregex).
    fn find_failures(
        &mut self,
        line: LineParts<'_>,
        date: Option<f64>,
        screened: Option<Screened>,
    ) -> Vec<FilterMatch> {
        // The text the regexes see is built in a buffer kept from line to line.
        let mut text = std::mem::take(&mut self.text);
        let out = self.find_failures_in(line, date, screened, &mut text);
        self.text = text;
        out
    }

    /// [`find_failures`](Self::find_failures) with `text` to build the regexes' text in.
    fn find_failures_in(
        &mut self,
        line: LineParts<'_>,
        date: Option<f64>,
        mut screened: Option<Screened>,
        text: &mut String,
    ) -> Vec<FilterMatch> {
        let mut out = Vec::new();
        let match_end = screened.and_then(|s| s.match_end);
        let content_start = screened.and_then(|s| s.content_start);
        // The buffered lines of a multi-line filter; a one-line filter has only `line`, and
        // its buffer lives for this line only: what the loop below reads of it, it sets first
        // (the content, the unmatched lines).
        let org: Vec<TupleLine> = if self.maxlines > 1 {
            self.buffer.push(line.to_tuple());
            let excess = self.buffer.len().saturating_sub(self.maxlines);
            self.buffer.drain(..excess);
            self.buffer.clone()
        } else {
            self.buffer.clear();
            Vec::new()
        };
        if org.is_empty() {
            text.clear();
            text.push_str(line.pre);
            text.push_str(line.post);
            text.push('\n');
        } else {
            buffer_text_into(&org, text);
        }
        if !self.ignoreregex.is_empty()
            && self.ignoreregex.len() + 2 < self.failregex.len()
            && self.ignored(text)
        {
            self.stats.ignored += 1;
            return out;
        }
        // Whether `text` must be rebuilt from `self.buffer` (which a match changed).
        let mut stale = false;
        let mut pre_groups = Groups::default();
        if let Some(pref) = &self.prefregex {
            // The screen saw this very text (one line) and found where the content starts.
            let caps = match content_start.filter(|_| org.is_empty()) {
                Some(start) => pref.search_with_content_at(text, start),
                None => pref.search(text),
            };
            let Some(caps) = caps else {
                return out;
            };
            pre_groups = groups_of(&caps, text, Some("content"));
            let content = caps.name("content").filter(|(s, e)| e > s);
            if content.is_none() {
                // The screen saw the content, which this text is not.
                screened = None;
            }
            if let Some((start, end)) = content {
                if org.is_empty() {
                    // One line: its text becomes the content and `\n`, in place.
                    text.truncate(end);
                    text.drain(..start);
                    text.push('\n');
                } else {
                    self.buffer = vec![TupleLine {
                        pre: String::new(),
                        date: String::new(),
                        post: text[start..end].to_string(),
                    }];
                    stale = true;
                }
            }
        }
        let mut matched_any = false;
        let mut ignored_any = false;
        let total = self.failregex.len();
        let mut candidates: Option<CandidateSet> = None;
        // Candidates from the screen on this very text: for a failregex the screen holds
        // exactly, being one means matching.
        let mut from_screen = screened.is_some();
        for idx in 0..total {
            if stale {
                buffer_text_into(&self.buffer, text);
                stale = false;
                candidates = None;
                from_screen = false;
            }
            let text: &str = text;
            let fail_set = || {
                self.fail_set
                    .get_or_init(|| FailSet::new(&self.failregex, self.maxlines > 1))
                    .as_ref()
            };
            let cands = candidates.get_or_insert_with(|| match screened.take() {
                Some(Screened {
                    candidates: None, ..
                }) => CandidateSet::All(total),
                Some(Screened {
                    candidates: Some(found),
                    ..
                }) => CandidateSet::Screened(found),
                None => match fail_set() {
                    Some(set) => CandidateSet::Listed(set.candidates(text, total)),
                    None => CandidateSet::All(total),
                },
            });
            if !cands.contains(idx) {
                continue;
            }
            if self.ends_session[idx]
                && self.maxlines == 1
                && !self.check_all_regex
                && self.ignoreregex.is_empty()
                && let Some(key) = pre_groups.get("mlfid")
                && !self.mlfid.has_live(key, self.clock.now())
                && (from_screen && self.screen_is_exact(idx) || self.failregex[idx].is_match(text))
            {
                // A not-a-failure match that ends a session nobody cached: whatever its
                // groups hold, the full path below only counts it (and drops an expired
                // session), so its captures are not needed.
                self.mlfid.take(key, self.clock.now());
                self.stats.failregex_hits[idx] += 1;
                return out;
            }
            let caps = match match_end.filter(|_| from_screen && self.screen_is_exact(idx)) {
                // The screen's search found this very match: its groups are all that is left.
                Some(end) => self.failregex[idx].captures_of_match(text, 0, end),
                None => self.failregex[idx].search(text),
            };
            let Some(caps) = caps else {
                continue;
            };
            let (matched_lines, unmatched) = if org.len() <= 1 {
                (Vec::new(), Vec::new())
            } else {
                self.split_matched(&caps, text, &org)
            };
            let matched_lines: &[TupleLine] = if org.len() <= 1 { &org } else { &matched_lines };
            let mut groups = groups_of(&caps, text, None);
            if !self.ignoreregex.is_empty() {
                let ignore_buf = if self.maxlines > 1 {
                    buffer_text(matched_lines)
                } else {
                    text.to_string()
                };
                if self.ignored(&ignore_buf) {
                    ignored_any = true;
                    // A one-line buffer stays the same text.
                    if self.maxlines > 1 {
                        self.buffer = unmatched;
                        stale = true;
                    }
                    if !self.check_all_regex {
                        break;
                    }
                    continue;
                }
            }
            if !self.check_all_regex || self.maxlines > 1 {
                self.buffer = unmatched;
                stale = true;
            }
            matched_any = true;
            self.stats.failregex_hits[idx] += 1;
            if !pre_groups.is_empty() {
                // The prefregex's groups, where the failregex has none of that name; they go
                // to the last regex that can match without a copy.
                let last = idx + 1 == total || (self.maxlines == 1 && !cands.any_after(idx));
                let pre = if last {
                    std::mem::take(&mut pre_groups)
                } else {
                    pre_groups.clone()
                };
                for (name, value) in pre.0 {
                    groups.insert_absent(name, value);
                }
            }
            let matched_text = || -> Vec<Arc<str>> {
                if org.is_empty() {
                    vec![line.line.into()]
                } else {
                    matched_lines.iter().map(|l| l.full().into()).collect()
                }
            };
            let mut fail = Fail {
                groups,
                ..Fail::default()
            };
            let mlfid = fail.groups.shared("mlfid");
            let mut keep_in_cache = false;
            match &mlfid {
                Some(id) => {
                    keep_in_cache = self.merge_failure(id, &mut fail, matched_text());
                    if fail.truthy("nofail") && !self.check_all_regex {
                        if keep_in_cache {
                            self.mlfid.put(id, fail, self.clock.now());
                        }
                        return out;
                    }
                }
                // A one-line match without its line still counts one attempt.
                None if !self.keep_lines && org.is_empty() => {}
                None => {
                    fail.matches
                        .get_or_insert_with(Vec::new)
                        .extend(matched_text());
                }
            }
            // The id: `fid`, else `ip4`, `ip6`, `dns`; the address: `ip4`, else `ip6`. One
            // pass over the groups (a match has a handful) instead of six searches by name.
            let [mut fid, mut ip4, mut ip6, mut dns] = [None; 4];
            for (name, value) in fail.groups.iter() {
                match name {
                    "fid" => fid = Some(value),
                    "ip4" => ip4 = Some(value),
                    "ip6" => ip6 = Some(value),
                    "dns" => dns = Some(value),
                    _ => {}
                }
            }
            let id = fid.or(ip4).or(ip6).or(dns).map(str::to_string);
            let addr = ip4.or(ip6).and_then(parse_addr);
            if id.is_none() {
                fail.mlfpending = true;
            }
            let nofail = fail.truthy("nofail") || id.is_none();
            let users = fail.users.iter().flatten().cloned().collect();
            let (groups, lines) = match (&mlfid, keep_in_cache) {
                (Some(key), true) => {
                    let found = (fail.groups.clone(), fail.matches.clone());
                    self.mlfid.put(key, fail, self.clock.now());
                    found
                }
                _ => (fail.groups, fail.matches),
            };
            let mut groups = groups;
            groups.retain(|k| !k.starts_with("skiplines"));
            out.push(FilterMatch {
                regex: idx,
                id,
                addr,
                time: date,
                nofail,
                groups,
                users,
                lines: lines.unwrap_or_default(),
            });
            if !self.check_all_regex {
                break;
            }
        }
        if matched_any {
            self.stats.matched += 1;
        }
        if ignored_any {
            self.stats.ignored += 1;
        }
        out
    }

    /// Whether the screen's answer for failregex `idx` is the failregex's own `is_match`.
    fn screen_is_exact(&self, idx: usize) -> bool {
        !self.failregex[idx].is_backtracking()
            && self.screen.as_ref().is_some_and(|s| s.is_exact(idx))
    }

    /// Splits the buffer into the lines a match covers and the rest (fail2ban's
    /// matched/unmatched tuple lines, with `<SKIPLINES>` lines moved to the rest).
    fn split_matched(
        &self,
        caps: &Captures,
        text: &str,
        org: &[TupleLine],
    ) -> (Vec<TupleLine>, Vec<TupleLine>) {
        if org.len() <= 1 {
            return (org.to_vec(), Vec::new());
        }
        let (start, end) = caps.whole();
        // Byte searches: `start + 1` and `end - 1` may fall inside a multi-byte character,
        // which slicing the `str` there would panic on (a hostile log line could do that).
        let bytes = text.as_bytes();
        let line_start = bytes[..(start + 1).min(bytes.len())]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let from = end.saturating_sub(1).min(bytes.len());
        let line_end = bytes[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |p| from + p + 1);
        let newlines = |upto: usize| bytes[..upto].iter().filter(|&&b| b == b'\n').count();
        let c1 = newlines(line_start).min(org.len());
        let c2 = newlines(line_end).clamp(c1, org.len());
        let mut matched: Vec<TupleLine> = org[c1..c2].to_vec();
        let mut unmatched: Vec<TupleLine> = org[..c1].to_vec();
        let skipped: Vec<String> = caps
            .names
            .iter()
            .enumerate()
            .filter(|(_, n)| n.as_deref().is_some_and(|n| n.starts_with("skiplines")))
            .filter_map(|(i, _)| caps.spans.get(i).copied().flatten())
            .flat_map(|(s, e)| text[s..e].lines().map(str::to_string).collect::<Vec<_>>())
            .collect();
        let mut n = 0;
        for sk in skipped {
            if let Some(m) = matched[n.min(matched.len())..]
                .iter()
                .position(|l| l.text() == sk)
            {
                unmatched.push(matched.remove(n + m));
                n += m;
            }
        }
        unmatched.extend_from_slice(&org[c2..]);
        (matched, unmatched)
    }

    /// fail2ban's `_mergeFailure`: joins the lines of one multi-line session (`<F-MLFID>`).
    /// Returns whether `fail` is (still) the session's cached state.
    fn merge_failure(&mut self, mlfid: &str, fail: &mut Fail, matched: Vec<Arc<str>>) -> bool {
        let mut flags = 0u8;
        if fail.truthy("mlfgained") {
            flags |= 8 | 1;
            if !fail.truthy("nofail") {
                let v = fail.groups.shared("mlfgained").unwrap_or_else(|| "".into());
                fail.groups.insert("nofail".into(), v);
            }
        } else if fail.truthy("nofail") {
            flags |= 1;
        }
        if fail.pop_truthy("mlfforget") {
            flags |= 2;
        }
        let users;
        let cached;
        if let Some(mut prev) = self.mlfid.take(mlfid, self.clock.now()) {
            if let Some(user) = fail.groups.get("user").filter(|u| !u.is_empty()) {
                prev.users
                    .get_or_insert_with(BTreeSet::new)
                    .insert(user.to_string());
            }
            users = prev.users.clone();
            if prev.pop_truthy("nofail") {
                flags |= 4;
            }
            if prev.pop_truthy("mlfgained") {
                flags |= 4;
            }
            if flags & 8 != 0 {
                prev.mlfpending = false;
            }
            if flags & 4 == 0 && !prev.mlfpending {
                prev.matches = None;
            }
            for (k, v) in std::mem::take(&mut fail.groups).0 {
                prev.groups.insert(k, v);
            }
            *fail = prev;
            cached = flags & 2 == 0;
            if !cached {
                self.mlfid.remove(mlfid);
            }
        } else if flags & 2 == 0 {
            users = fail.update_users();
            cached = true;
        } else {
            users = None;
            cached = false;
        }
        let was_pending = std::mem::take(&mut fail.mlfpending);
        if was_pending || users.as_ref().is_some_and(|u| u.len() > 1) {
            fail.groups.remove("nofail");
            fail.groups.remove("mlfgained");
            flags &= !(8 | 1);
        }
        if flags & 1 == 0 {
            let mut m = fail.nofail_matches.take().unwrap_or_default();
            m.extend(fail.matches.take().unwrap_or_default());
            if flags & 8 == 0 {
                m.extend(matched);
            }
            fail.matches = Some(m);
        } else if flags & 3 == 1 {
            fail.nofail_matches
                .get_or_insert_with(Vec::new)
                .extend(matched);
        }
        cached
    }
}

/// Named groups that took part (but `skip`), with fail2ban's `alt_` groups folded into their
/// base name.
fn groups_of(caps: &Captures, text: &str, skip: Option<&str>) -> Groups {
    // Room for the groups that took part, and the prefregex's that may join them.
    let took_part = caps.spans.iter().skip(1).filter(|s| s.is_some()).count();
    let mut out = Groups(Vec::with_capacity(took_part + 2));
    let mut alts = Vec::new();
    for (i, name) in caps.names.iter().enumerate() {
        let (Some(name), Some((s, e))) = (name, caps.spans.get(i).copied().flatten()) else {
            continue;
        };
        if skip == Some(&**name) {
            continue;
        }
        let value: Arc<str> = text[s..e].into();
        if let Some(base) = name.strip_prefix("alt_") {
            let base = base.trim_end_matches(|c: char| c.is_ascii_digit());
            let base = base.strip_suffix('_').unwrap_or(base);
            alts.push((name.clone(), group_name(base), value.clone()));
        }
        out.insert(name.clone(), value);
    }
    alts.sort();
    for (_, base, value) in alts {
        if !value.is_empty() && out.get(&base).is_none_or(str::is_empty) {
            out.insert(base.into(), value);
        }
    }
    // fail2ban's `tuple_` groups: `id`, `tuple_id`, `tuple_id_2`, ... (in name order) combine
    // into one value, the tuple `(id, tuple_id, ...)` written as Python writes it.
    let mut tuples: Vec<(&str, String)> = caps
        .names
        .iter()
        .flatten()
        .filter_map(|name| {
            let rest = name.strip_prefix("tuple_")?;
            let base = match rest.rsplit_once('_') {
                Some((b, n)) if !b.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => b,
                _ => rest,
            };
            Some((&**name, group_name(base)))
        })
        .collect();
    tuples.sort();
    let mut combined: BTreeMap<String, Vec<Option<&str>>> = BTreeMap::new();
    for (name, base) in tuples {
        let value = out.get(name);
        combined
            .entry(base.clone())
            .or_insert_with(|| vec![out.get(&base)])
            .push(value);
    }
    let combined: Vec<(String, String)> = combined
        .into_iter()
        .map(|(base, items)| (base, python_tuple(&items)))
        .collect();
    for (base, tuple) in combined {
        out.insert(base.into(), tuple.into());
    }
    out
}

/// A tuple of strings (or `None`s) as Python's `repr` writes it: `('a', None)`.
fn python_tuple(items: &[Option<&str>]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|item| match item {
            // Python quotes with `"` when the text has a `'` and no `"`.
            Some(v) if v.contains('\'') && !v.contains('"') => {
                format!("\"{}\"", v.replace('\\', "\\\\"))
            }
            Some(v) => format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'")),
            None => "None".to_string(),
        })
        .collect();
    format!("({})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_matched_lines_a_match_is_the_same_but_its_lines() {
        let def = FilterDefinition {
            failregex: vec![r"^\s*fail from <HOST>( user (?P<user>\S+))?$".into()],
            ..FilterDefinition::default()
        };
        let lines = [
            "2026-03-01 10:00:00 fail from 192.0.2.7",
            "2026-03-01 10:00:01 fail from 2001:db8::7 user bob",
            "2026-03-01 10:00:02 nothing here",
        ];
        let clock = Clock::fixed(jiff::tz::TimeZone::UTC, 1_772_400_000);
        let build = |keep: bool| {
            FilterBuilder::new(def.clone())
                .with_clock(clock.clone())
                .with_matched_lines(keep)
                .build()
                .expect("filter")
        };
        let (mut with, mut without) = (build(true), build(false));
        let mut matched = 0;
        for line in lines {
            let (kept, bare) = (with.process_line(line), without.process_line(line));
            assert_eq!(kept.len(), bare.len(), "{line}");
            for (kept, mut bare) in kept.into_iter().zip(bare) {
                assert_eq!(kept.lines, [Arc::<str>::from(line)]);
                assert!(bare.lines.is_empty());
                assert_eq!((kept.attempts(), bare.attempts()), (1, 1));
                bare.lines = kept.lines.clone();
                assert_eq!(kept, bare);
                matched += 1;
            }
        }
        assert_eq!(matched, 2);
    }

    proptest::proptest! {
        #[test]
        fn dotted_quads_read_as_the_standard_library_reads_them(
            text in "[0-9.]{0,16}|([0-9]{1,3}\\.){3}[0-9]{1,3}|0[0-9.]{0,8}",
        ) {
            proptest::prop_assert_eq!(dotted_quad(text.as_bytes()), text.parse().ok());
        }
    }

    fn filter(failregex: &[&str]) -> Filter {
        FilterBuilder::new(FilterDefinition {
            name: "t".into(),
            failregex: failregex.iter().map(|s| s.to_string()).collect(),
            ..FilterDefinition::default()
        })
        .with_clock(Clock::fixed(jiff::tz::TimeZone::UTC, 1_124_013_600))
        .build()
        .expect("builds")
    }

    /// A filter of one failregex takes its match's end from the screen; its groups are still
    /// those of the leftmost-first match (a lazy group at the end stays empty), never of a
    /// longer parse.
    #[test]
    fn the_screens_match_end_is_the_leftmost_first_one() {
        let mut f = filter(&[r"^\s*login from <HOST><F-TAIL>.*?</F-TAIL>(?: again)??"]);
        assert!(
            f.screen.is_some(),
            "screened, so the end comes from the screen"
        );
        for line in [
            "Aug 14 11:00:00 login from 192.0.2.1 trailing words",
            "Aug 14 11:00:01 login from 192.0.2.2 again",
        ] {
            let found = f.process_line(line);
            assert_eq!(found.len(), 1, "{line}");
            assert_eq!(found[0].groups.get("tail"), Some(""), "{line}");
            assert!(found[0].id.as_deref().is_some_and(|id| line.contains(id)));
        }
    }

    /// fail2ban's `tuple_` groups combine into one id: `(<F-ID>, <F-TUPLE_ID>, ...)`; the
    /// expected ids are what `fail2ban-regex -o row` 1.0.2 prints for the same regex and lines.
    #[test]
    fn tuple_groups_combine_into_one_id() {
        let mut f = filter(&[
            r"^\s*login <F-ID>\S+</F-ID> on <F-TUPLE_ID>\S+</F-TUPLE_ID>(?: from <F-TUPLE_ID_2>\S+</F-TUPLE_ID_2>)?$",
        ]);
        let found = f.process_line("Aug 14 11:59:59 login alice on tty1");
        assert_eq!(found[0].id.as_deref(), Some("('alice', 'tty1', None)"));
        let found = f.process_line("Aug 14 11:59:59 login bob on pts/0 from x'y");
        assert_eq!(found[0].id.as_deref(), Some(r#"('bob', 'pts/0', "x'y")"#));
        assert!(found[0].addr.is_none(), "a tuple is never an address");
    }

    #[test]
    fn a_line_is_counted_ignored_once_however_many_regexes_match_it() {
        let mut f = FilterBuilder::new(FilterDefinition {
            name: "t".into(),
            failregex: vec![r"fail from <HOST>".into(), r"from <HOST>$".into()],
            ignoreregex: vec![r"trusted".into()],
            ..FilterDefinition::default()
        })
        .with_check_all_regex(true)
        .build()
        .expect("builds");
        assert!(
            f.process_line("Aug 14 11:00:00 srv x: trusted fail from 192.0.2.7")
                .is_empty()
        );
        let stats = f.stats();
        assert_eq!((stats.lines, stats.matched, stats.ignored), (1, 0, 1));
        assert_eq!(stats.ignoreregex_hits, [2]);
        assert_eq!(stats.missed(), 0);
    }

    #[test]
    fn host_and_user_are_captured() {
        let mut f = filter(&[
            r"^\s*\S+ sshd\[\d+\]: Failed password for <F-USER>\S+</F-USER> from <HOST> port \d+",
        ]);
        let m = f.process_line("Aug 14 11:00:00 srv sshd[1]: Failed password for root from ::ffff:192.0.2.7 port 22 ssh2");
        assert_eq!(m.len(), 1);
        let fail = m[0].to_failure().expect("failure");
        assert_eq!(fail.addr, "192.0.2.7".parse::<IpAddr>().expect("ip"));
        assert_eq!(fail.user.as_deref(), Some("root"));
        assert_eq!(fail.time, 1_124_017_200);
    }

    #[test]
    fn hostnames_are_reported_not_banned() {
        let mut f = filter(&[r"^\s*\S+ x: fail from <HOST>$"]);
        let m = f.process_line("Aug 14 11:00:00 srv x: fail from evil.example.com");
        assert_eq!(m[0].id.as_deref(), Some("evil.example.com"));
        assert!(m[0].to_failure().is_none());
    }

    /// Sessions ended by a not-a-failure match (`<F-NOFAIL><F-MLFFORGET>`): of a session nobody
    /// cached, the match only counts (the short way, see [`ends_session`]); of a pending session
    /// or one with two users, it is a failure. The expected failures are what
    /// `fail2ban-regex -o row` 1.0.2 prints for the same filter and lines.
    #[test]
    fn session_ends_count_or_fail_as_fail2ban_does() {
        let mut f = FilterBuilder::new(FilterDefinition {
            name: "sessions".into(),
            prefregex: Some(
                r"^\s*<F-MLFID>\S+ s\[\d+\]:</F-MLFID> <F-CONTENT>.+</F-CONTENT>$".into(),
            ),
            failregex: vec![
                r"^fail <F-USER>\S+</F-USER> from <HOST>$".into(),
                r"^<F-NOFAIL><F-MLFFORGET>bye</F-MLFFORGET></F-NOFAIL> from <HOST>$".into(),
                r"^<F-NOFAIL>hello <F-USER>\S+</F-USER></F-NOFAIL>$".into(),
                r"^auth <F-USER>\S+</F-USER>$".into(),
            ],
            ..FilterDefinition::default()
        })
        .with_clock(Clock::fixed(jiff::tz::TimeZone::UTC, 1_800_000_000))
        .build()
        .expect("builds");
        assert_eq!(f.ends_session, [false, true, false, false]);
        let log = [
            "Mar  1 00:00:01 h s[1]: bye from 192.0.2.1",
            "Mar  1 00:00:02 h s[2]: hello alice",
            "Mar  1 00:00:03 h s[2]: bye from 192.0.2.7",
            "Mar  1 00:00:04 h s[2]: bye from 192.0.2.8",
            "Mar  1 00:00:05 h s[3]: fail bob from 192.0.2.9",
            "Mar  1 00:00:06 h s[4]: auth carol",
            "Mar  1 00:00:07 h s[4]: bye from 192.0.2.10",
            "Mar  1 00:00:08 h s[5]: hello dave",
            "Mar  1 00:00:09 h s[5]: hello erin",
            "Mar  1 00:00:10 h s[5]: bye from 192.0.2.11",
        ];
        let mut failures = Vec::new();
        for line in log {
            for found in f.process_line(line) {
                assert_eq!(found.is_failure(), found.to_failure().is_some(), "{line}");
                if let Some(failure) = found.to_failure() {
                    failures.push((failure.addr.to_string(), found.users));
                }
            }
        }
        let users = |u: &[&str]| u.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        assert_eq!(
            failures,
            [
                ("192.0.2.9".to_string(), users(&["bob"])),
                ("192.0.2.10".to_string(), users(&["carol"])),
                ("192.0.2.11".to_string(), users(&["dave", "erin"])),
            ]
        );
        assert_eq!(f.stats().failregex_hits, [1, 5, 3, 1]);
    }

    #[test]
    fn session_cache_evicts_the_oldest_live_session() {
        let mut c = MlfidCache::default();
        for i in 0..MlfidCache::MAX {
            c.put(&format!("k{i}").into(), Fail::default(), 0);
        }
        c.remove("k0");
        c.put(&"k0".into(), Fail::default(), 0);
        // Full: the oldest live session (k1, not the re-inserted k0) goes.
        c.put(&"new".into(), Fail::default(), 0);
        assert!(c.take("k1", 0).is_none());
        assert!(c.take("k0", 0).is_some() && c.take("k2", 0).is_some());
        for i in 0..10 * MlfidCache::MAX {
            c.put(&format!("x{i}").into(), Fail::default(), 0);
            c.remove(&format!("x{i}"));
        }
        assert!(c.order.len() <= 2 * MlfidCache::MAX + 1);
        assert!(c.take("k0", 0).is_some());
    }

    /// A pattern too large to compile is a load error, as before patterns compiled on first use.
    #[test]
    fn a_pattern_too_large_to_compile_is_a_load_error() {
        for (prefregex, failregex) in [
            (None, r"^(?:\w{500}){500} <HOST>$"),
            (
                Some(r"^(?:\w{500}){500} <F-CONTENT>.+</F-CONTENT>$"),
                r"^x <HOST>$",
            ),
        ] {
            let err = FilterBuilder::new(FilterDefinition {
                prefregex: prefregex.map(str::to_string),
                failregex: vec![failregex.into()],
                ..FilterDefinition::default()
            })
            .build()
            .expect_err("does not compile");
            assert!(
                matches!(&err, Error::Regex { pattern, .. } if pattern.contains(r"\w{500}")),
                "{err}"
            );
        }
    }

    #[test]
    fn missing_failure_id_is_rejected() {
        let err = FilterBuilder::new(FilterDefinition {
            failregex: vec!["no id here".into()],
            ..FilterDefinition::default()
        })
        .build();
        assert!(matches!(err, Err(Error::Regex { .. })));
    }
}
