//! Finding and parsing the date of a log line, the way fail2ban's date detector does.
//!
//! Default templates cover syslog without a year, ISO 8601, CLF (`14/Aug/2005:12:00:00 +0200`),
//! Unix epoch (plain, `[epoch]`, SELinux `audit(epoch:serial)`), TAI64N and more. A filter's own
//! `datepattern` uses strptime fields (`%Y`, `%b`, fail2ban's `%Ex*` strict variants), `{^LN-BEG}`,
//! `{DATE}` (default templates wrapped by a pre-match), `EPOCH`, `LEPOCH`, `TAI64N`, `{NONE}`.
//!
//! Which template gives the date follows fail2ban 1.0.2's `DateDetector.matchTime` (see
//! [`DateDetector`]). A date without a year is completed as fail2ban's `reGroupDictStrptime`
//! does: the current year of the clock's zone, or the year before when the date would then be
//! more than a day after now (compared after any zone offset in the line, whose moved hour is
//! kept while the line's month and day come back, as fail2ban's `datetime.replace` does).
//! fail2ban 1.0.2 never moves a date forward a year: a `Jan  1 00:00:01` line read on Dec 31
//! at 23:59 is dated Jan 1 of the year that is ending.

use std::sync::{Arc, OnceLock};

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson::{self, NFA, State};
use regex_automata::util::primitives::StateID;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind};

use super::pyregex::{Captures, Matcher};

/// The clock and zone used to complete dates: syslog dates have no year, times have no zone.
///
/// logban's only clock type: the [`Engine`](crate::Engine) takes a plain `Fn() -> i64` for its
/// own time (see [`EngineBuilder::with_clock`](crate::EngineBuilder::with_clock)).
///
/// ```
/// let clock = logban::filter::Clock::fixed(jiff::tz::TimeZone::UTC, 1_700_000_000);
/// assert_eq!(clock.now(), 1_700_000_000);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct Clock {
    /// Zone of log times that carry none (fail2ban uses the host's local zone).
    pub zone: TimeZone,
    /// A fixed "now" in Unix seconds (tests, replays), or `None` for the system clock.
    pub fixed_now: Option<i64>,
}

impl Default for Clock {
    fn default() -> Self {
        Self {
            zone: TimeZone::system(),
            fixed_now: None,
        }
    }
}

impl Clock {
    /// The system clock, with log times that carry no zone read in `zone`.
    pub fn system(zone: TimeZone) -> Self {
        Self {
            zone,
            fixed_now: None,
        }
    }

    /// A clock stopped at `now` (Unix seconds), for tests and replays; zone-less times in `zone`.
    pub fn fixed(zone: TimeZone, now: i64) -> Self {
        Self {
            zone,
            fixed_now: Some(now),
        }
    }

    /// Current time, Unix seconds.
    pub fn now(&self) -> i64 {
        self.fixed_now
            .unwrap_or_else(|| jiff::Timestamp::now().as_second())
    }
}

/// A clock's "now" in its zone, and a day later (`None` past the last date): what completing
/// a date compares with. The day later, costly in calendar arithmetic, is kept for the last
/// "now".
#[derive(Debug, Clone, Default)]
struct LocalNow(Option<(DateTime, Option<DateTime>)>);

impl LocalNow {
    fn get(&mut self, clock: &Clock) -> (DateTime, Option<DateTime>) {
        let ts = jiff::Timestamp::from_second(clock.now()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let local = clock.zone.to_datetime(ts);
        match self.0 {
            Some((last, later)) if last == local => (local, later),
            _ => {
                let later = local.checked_add(jiff::Span::new().days(1)).ok();
                self.0 = Some((local, later));
                (local, later)
            }
        }
    }
}

/// Parses fail2ban's `logtimezone`: `UTC` (or `Z`, `GMT`), a fixed offset `UTC+HH`, `UTC+HHMM`,
/// `UTC-HH:MM` (or the same without `UTC`), or an IANA zone name (`Europe/Paris`).
///
/// ```
/// use logban::filter::parse_logtimezone;
/// let paris = parse_logtimezone("UTC+0200").unwrap();
/// assert_eq!(paris.to_offset(jiff::Timestamp::UNIX_EPOCH).seconds(), 7200);
/// assert!(parse_logtimezone("Mars/Olympus").is_err());
/// ```
pub fn parse_logtimezone(text: &str) -> Result<TimeZone, String> {
    let t = text.trim();
    let upper = t.to_ascii_uppercase();
    if matches!(upper.as_str(), "UTC" | "Z" | "GMT") {
        return Ok(TimeZone::UTC);
    }
    let offset = upper
        .strip_prefix("UTC")
        .or_else(|| upper.strip_prefix("GMT"))
        .unwrap_or(&upper);
    if let Some((sign, digits)) = offset
        .strip_prefix('+')
        .map(|d| (1, d))
        .or_else(|| offset.strip_prefix('-').map(|d| (-1, d)))
    {
        let digits: String = digits.chars().filter(|c| *c != ':').collect();
        let (h, m) = match digits.len() {
            1 | 2 => (digits.as_str(), "0"),
            4 => digits.split_at(2),
            _ => return Err(format!("`{text}` is not a zone offset (UTC+HHMM)")),
        };
        let (h, m): (i32, i32) = match (h.parse(), m.parse()) {
            (Ok(h), Ok(m)) if h <= 23 && m <= 59 => (h, m),
            _ => return Err(format!("`{text}` is not a zone offset (UTC+HHMM)")),
        };
        let seconds = sign * (h * 3600 + m * 60);
        return jiff::tz::Offset::from_seconds(seconds)
            .map(TimeZone::fixed)
            .map_err(|e| format!("`{text}`: {e}"));
    }
    TimeZone::get(t).map_err(|e| format!("`{text}` is not a time zone: {e}"))
}

// strptime fields, as fail2ban's `timeRE` has them (with its own overrides).
const FIELDS: &[(&str, &str)] = &[
    ("ExY", r"(?P<Y>20[0-3]\d)"),
    ("Exy", r"(?P<y>\d{2})"),
    ("Exm", r"(?P<m>0[1-9]|1[0-2])"),
    ("Exd", r"(?P<d>[1-2]\d|0[1-9]|3[0-1])"),
    ("ExH", r"(?P<H>[0-1]\d|2[0-3])"),
    ("ExM", r"(?P<M>[0-5]\d)"),
    ("ExS", r"(?P<S>[0-5]\d|6[0-1])"),
    ("Exk", r" ?(?P<H>[0-1]?\d|2[0-3])"),
    ("Exl", r" ?(?P<I>1[0-2]|\d)"),
    ("ExZ", r"(?P<Z>[A-Z](?:[A-Z]{2,4})?)"),
    (
        "Exz",
        r"(?P<z>(?:[A-Z](?:[A-Z]{2,4})?)?[+-][01]\d(?::?\d{2})?|[A-Z](?:[A-Z]{2,4})?)",
    ),
    ("%", "%"),
    (
        "A",
        r"(?P<A>wednesday|thursday|saturday|tuesday|monday|friday|sunday)",
    ),
    (
        "B",
        r"(?P<B>september|february|november|december|january|october|august|march|april|june|july|may)",
    ),
    ("H", r"(?P<H>[0-1]?\d|2[0-3])"),
    ("I", r"(?P<I>1[0-2]|0[1-9]|[1-9])"),
    ("M", r"(?P<M>[0-5]?\d)"),
    ("S", r"(?P<S>[0-5]?\d|6[0-1])"),
    ("Y", r"(?P<Y>\d{4})"),
    ("Z", r"(?P<Z>Z|[A-Z]{3,5})"),
    ("a", r"(?P<a>mon|tue|wed|thu|fri|sat|sun)"),
    (
        "b",
        r"(?P<b>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)",
    ),
    ("d", r"(?P<d>[1-2]\d|[0 ]?[1-9]|3[0-1])"),
    ("f", r"(?P<f>[0-9]{1,6})"),
    (
        "j",
        r"(?P<j>36[0-6]|3[0-5]\d|[1-2]\d\d|0[1-9]\d|00[1-9]|[1-9]\d|0[1-9]|[1-9])",
    ),
    ("k", r" ?(?P<H>[0-2]?\d)"),
    ("l", r" ?(?P<I>1?\d)"),
    ("m", r"(?P<m>0?[1-9]|1[0-2])"),
    ("p", r"(?P<p>am|pm)"),
    ("y", r"(?P<y>\d\d)"),
    ("z", r"(?P<z>Z|UTC|GMT|[+-][01]\d(?::?\d{2})?)"),
];

/// fail2ban's default templates, in its order.
const DEFAULT_TEMPLATES: &[&str] = &[
    r"%ExY(?P<_sep>[-/.])%m(?P=_sep)%d(?:T|  ?)%H:%M:%S(?:[.,]%f)?(?:\s*%z)?",
    r"(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"(?:%a )?%b %d %ExY %k:%M:%S(?:\.%f)?",
    r"%d(?P<_sep>[-/])%m(?P=_sep)(?:%ExY|%Exy) %k:%M:%S",
    r"%d(?P<_sep>[-/])%b(?P=_sep)%ExY[ :]?%H:%M:%S(?:\.%f)?(?: %z)?",
    r"%m/%d/%ExY:%H:%M:%S",
    r"%m-%d-%ExY %k:%M:%S(?:\.%f)?",
    "EPOCH",
    r"{^LN-BEG}%H:%M:%S",
    r"^<%m/%d/%Exy@%H:%M:%S>",
    r"%Exy%Exm%Exd  ?%H:%M:%S",
    r"%b %d, %ExY %I:%M:%S %p",
    r"^%b-%d-%Exy %k:%M:%S",
    r"%ExY%Exm%Exd(?:T|  ?)%ExH%ExM%ExS(?:[.,]%f)?(?:\s*%z)?",
    r"(?:%Z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"(?:%z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    "TAI64N",
];

const EPOCH_RE: &str = r"\d{10,11}\b(?:\.\d{3,6})?";
const LEPOCH_RE: &str = r"\d{10,11}(?:\d{3}(?:\.\d{1,6}|\d{3})?)?";
const BOUND: &str = r"(?:\b{start-half}|\b{end-half})";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fields,
    Epoch {
        long: bool,
    },
    Tai64n,
    /// `{NONE}`: matches empty at the line start; the date is "now".
    None,
}

/// One compiled date template.
#[derive(Debug, Clone)]
struct Template {
    matcher: Matcher,
    kind: Kind,
    /// Group holding the value (epoch/TAI64N); group 1 is always the date text.
    value_group: usize,
    line_anchored: bool,
    /// The regex ends at the line's end (`$`): with `line_anchored`, fail2ban's
    /// `LINE_BEGIN|LINE_END` flags, which make a match win at once wherever it is.
    line_end: bool,
    /// fail2ban's template weight in its reordering: 100 for the line-anchored copies of the
    /// default templates (so they bubble up), 1 otherwise.
    weight: f64,
    /// Two separators that must be equal (`(?P<_sep>…)…(?P=_sep)`).
    sep_check: bool,
    /// For `^[^X]*X({DATE})` (fail2ban's nginx and Apache access-log pattern, X = `[`): the
    /// date starts right after the line's first X and ends the match, so a line whose text
    /// there equals the last date has that date (see [`DateDetector::find`]).
    date_after: Option<u8>,
    /// The groups of each strptime field, by [`FIELD_NAMES`] index (a name may repeat).
    fields: Arc<[Vec<usize>]>,
    /// Built on first use: the pattern's lazy DFA, when every match starts at the line start.
    walker: Arc<OnceLock<Option<DFA>>>,
    /// Built on first use: the pattern's ASCII NFA.
    ascii_nfa: Arc<OnceLock<Option<NFA>>>,
}

/// The group names of the strptime fields [`fields_to_time`] reads, in [`Field`] order.
const FIELD_NAMES: [&str; 13] = [
    "Y", "y", "m", "b", "B", "d", "H", "I", "p", "M", "S", "z", "Z",
];

/// A strptime field, as an index into [`FIELD_NAMES`].
#[derive(Debug, Clone, Copy)]
enum Field {
    Year,
    ShortYear,
    Month,
    MonthAbbr,
    MonthName,
    Day,
    Hour,
    Hour12,
    AmPm,
    Minute,
    Second,
    Offset,
    Zone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WordBegin {
    No,
    Yes,
    Start,
}

impl Template {
    fn from_pattern(pattern: &str) -> Result<Self, String> {
        let key = if pattern.contains('%') {
            pattern.to_string()
        } else {
            pattern.to_uppercase()
        };
        let stripped = key
            .strip_prefix("{^LN-BEG}")
            .or_else(|| key.strip_prefix('^'))
            .unwrap_or(&key);
        let anchored_key = stripped.len() != key.len();
        match stripped {
            "EPOCH" | "LEPOCH" => {
                let long = stripped == "LEPOCH";
                let num = if long { LEPOCH_RE } else { EPOCH_RE };
                let re = if anchored_key {
                    format!(r"^(?:\W{{0,2}})?({num}){BOUND}")
                } else {
                    // fail2ban's conditionals `(?(selinux)..)|(?(square)..)` always let one
                    // branch pass: neither the `]` nor the `:serial)` is required there.
                    format!(r"^({num}){BOUND}|^\[({num}){BOUND}|\baudit\(({num}){BOUND}")
                };
                return Self::build(&re, Kind::Epoch { long }, 1, anchored_key, false);
            }
            "TAI64N" => {
                let re = if anchored_key {
                    format!(r"^(?:\W{{0,2}})?(@[0-9a-f]{{24}}){BOUND}")
                } else {
                    format!(r"(@[0-9a-f]{{24}}){BOUND}")
                };
                return Self::build(&re, Kind::Tai64n, 1, anchored_key, false);
            }
            "{NONE}" => return Self::build("^()", Kind::None, 1, true, false),
            _ => {}
        }
        if regex_epoch_tag(pattern) {
            let long = pattern.to_uppercase().contains("{LEPOCH}");
            let num = if long { LEPOCH_RE } else { EPOCH_RE };
            let replaced = pattern
                .replace("{LEPOCH}", &format!("({num})"))
                .replace("{EPOCH}", &format!("({num})"));
            let (re, anchored) = bound_regex(&format!("({replaced})"), WordBegin::Yes, true);
            return Self::build(&re, Kind::Epoch { long }, 2, anchored, false);
        }
        let mut pattern = pattern.to_string();
        let (mut word_begin, mut word_end) = (WordBegin::Yes, true);
        if let Some(rest) = pattern.strip_prefix("{UNB}") {
            pattern = rest.to_string();
            word_begin = WordBegin::No;
            word_end = false;
        }
        if word_begin != WordBegin::No
            && let Some(rest) = pattern.strip_prefix("{^LN-BEG}")
        {
            pattern = rest.to_string();
            word_begin = WordBegin::Start;
        }
        let alpha = has_alpha_field(&pattern);
        let mut regex = substitute_fields(&pattern)?;
        if alpha {
            regex = format!("(?i){regex}");
        }
        let (mut regex, anchored) = bound_regex(&regex, word_begin, word_end);
        let sep_check = regex.contains("(?P=_sep)");
        if sep_check {
            let class = regex
                .split_once("(?P<_sep>")
                .and_then(|(_, rest)| rest.split_once(')'))
                .map(|(class, _)| class.to_string())
                .ok_or("backreference to a missing _sep group")?;
            regex = regex.replace("(?P=_sep)", &format!("(?P<_sep2>{class})"));
        }
        Self::build(&regex, Kind::Fields, 1, anchored, sep_check)
    }

    fn build(
        re: &str,
        kind: Kind,
        value_group: usize,
        line_anchored: bool,
        sep_check: bool,
    ) -> Result<Self, String> {
        let matcher = Matcher::compile(re, false).map_err(|e| e.reason)?;
        let fields = FIELD_NAMES
            .iter()
            .map(|f| {
                let names = matcher.names().iter().enumerate();
                names
                    .filter(|(_, n)| n.as_deref() == Some(*f))
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        // fail2ban's RE_LINE_BOUND_END: `$` or `$)` at the end, not escaped nor after `|`.
        let tail = re.strip_suffix(')').unwrap_or(re);
        let line_end = tail
            .strip_suffix('$')
            .is_some_and(|r| !r.ends_with(['\\', '|']));
        Ok(Self {
            matcher,
            kind,
            value_group,
            line_anchored,
            line_end,
            weight: 1.0,
            sep_check,
            date_after: None,
            fields,
            walker: Arc::default(),
            ascii_nfa: Arc::default(),
        })
    }

    /// The pattern's ASCII NFA, the one [`Matcher::captures_of_match`] resolves ASCII spans
    /// with (see [`same_path_bytes`]).
    fn ascii_nfa(&self) -> Option<&NFA> {
        self.ascii_nfa
            .get_or_init(|| {
                thompson::Compiler::new()
                    .syntax(syntax::Config::new().unicode(false).utf8(false))
                    .build(self.matcher.linear_pattern()?)
                    .ok()
            })
            .as_ref()
    }

    /// The lazy DFA of a pattern whose matches all start at the line start (`None` for
    /// others, or a backtracking pattern).
    fn walker(&self) -> Option<&DFA> {
        self.walker
            .get_or_init(|| {
                let dfa = DFA::builder()
                    .configure(
                        DFA::config()
                            .match_kind(MatchKind::LeftmostFirst)
                            .unicode_word_boundary(true),
                    )
                    .syntax(syntax::Config::new())
                    .build(self.matcher.linear_pattern()?)
                    .ok()?;
                dfa.get_nfa().is_always_start_anchored().then_some(dfa)
            })
            .as_ref()
    }

    /// fail2ban's `LINE_BEGIN|LINE_END` flags: such a template wins as soon as it matches.
    fn anchored(&self) -> bool {
        self.line_anchored || self.line_end
    }

    /// The span fail2ban's match has (`match.start()`, `match.end()`), which its selection
    /// compares: the whole match, but only the number for the unanchored epoch template, whose
    /// `[` `]` and `audit(` `:serial)` fail2ban matches by look-around.
    fn match_span(&self, caps: &Captures, date: (usize, usize)) -> (usize, usize) {
        if matches!(self.kind, Kind::Epoch { .. }) && self.value_group == 1 && !self.line_anchored {
            date
        } else {
            caps.whole()
        }
    }

    /// Searches only `line[from..to]` (Python's `search(line, pos, endpos)`: look-behind sees
    /// what is before `from`, `$` and look-ahead see `to` as the end).
    fn find_within(
        &self,
        line: &str,
        from: usize,
        to: usize,
    ) -> Option<(Captures, (usize, usize))> {
        let to = to.min(line.len());
        if from > to || !line.is_char_boundary(from) || !line.is_char_boundary(to) {
            return None;
        }
        self.find_from(&line[..to], from)
    }

    /// Finds this template in `line`: the captures and the span of the date text.
    fn find(&self, line: &str) -> Option<(Captures, (usize, usize))> {
        self.find_from(line, 0)
    }

    /// Whether the two separators of a `(?P<_sep>…)…(?P=_sep)` template are equal.
    fn seps_agree(&self, line: &str, caps: &Captures) -> bool {
        !self.sep_check || {
            let a = caps.name("_sep").map(|(s, e)| &line[s..e]);
            let b = caps.name("_sep2").map(|(s, e)| &line[s..e]);
            a == b
        }
    }

    /// Date text: group 1, or the first participating value group (epoch alternatives).
    fn date_span(caps: &Captures) -> (usize, usize) {
        (1..caps.spans.len())
            .find_map(|i| caps.spans[i])
            .unwrap_or_else(|| caps.whole())
    }

    /// [`find`](Self::find) for a template whose DFA ([`walker`](Self::walker)) found its
    /// match at `0..end` (`None`: no match).
    /// `reused`: captures known to be those of that match (see [`LastDate::same_captures`]).
    fn find_walked(
        &self,
        line: &str,
        end: Option<usize>,
        reused: Option<Captures>,
    ) -> Option<(Captures, (usize, usize))> {
        let caps = match reused {
            Some(caps) => caps,
            None => self.matcher.captures_of_match(line, 0, end?)?,
        };
        if !self.seps_agree(line, &caps) {
            // Separators that differ: the search goes on as `find_from` does.
            return self.find(line);
        }
        let span = Self::date_span(&caps);
        Some((caps, span))
    }

    fn find_from(&self, line: &str, mut from: usize) -> Option<(Captures, (usize, usize))> {
        loop {
            let caps = self.matcher.search_at(line, from)?;
            if self.seps_agree(line, &caps) {
                let span = Self::date_span(&caps);
                return Some((caps, span));
            }
            let start = caps.whole().0;
            from = start + line[start..].chars().next().map_or(1, char::len_utf8);
            if from > line.len() {
                return None;
            }
        }
    }

    fn value(
        &self,
        line: &str,
        caps: &Captures,
        clock: &Clock,
        local_now: &mut LocalNow,
    ) -> Option<f64> {
        match self.kind {
            Kind::None => Some(clock.now() as f64),
            Kind::Epoch { long } => {
                let span = if self.value_group == 2 {
                    caps.spans.get(2).copied().flatten()
                } else {
                    (1..caps.spans.len()).find_map(|i| caps.spans[i])
                }?;
                let text = &line[span.0..span.1];
                let mut v: f64 = text.parse().ok()?;
                if long && text.len() >= 13 {
                    v /= if text.len() >= 16 && !text.contains('.') {
                        1_000_000.0
                    } else {
                        1000.0
                    };
                }
                Some(v)
            }
            Kind::Tai64n => {
                let (s, e) = caps.spans.get(1).copied().flatten()?;
                let hex = line.get(s + 2..e.min(s + 17))?;
                i64::from_str_radix(hex, 16).ok().map(|v| v as f64)
            }
            Kind::Fields => fields_to_time(line, caps, &self.fields, clock, local_now),
        }
    }
}

/// `X` when `pattern` is `^[^X]*X({DATE})` for one ASCII punctuation character X (written
/// escaped or not): the date then starts right after the line's first X.
fn delimited_date(pattern: &str) -> Option<u8> {
    let rest = pattern.trim().strip_prefix("^[^")?;
    let unescape = |t: &str| -> Option<(u8, usize)> {
        let b = t.as_bytes();
        match b.first()? {
            b'\\' => Some((*b.get(1)?, 2)),
            &c => Some((c, 1)),
        }
    };
    let (x, n) = unescape(rest)?;
    let rest = rest[n..].strip_prefix("]*")?;
    let (y, n) = unescape(rest)?;
    (x == y && x.is_ascii_punctuation() && &rest[n..] == "({DATE})").then_some(x)
}

fn regex_epoch_tag(pattern: &str) -> bool {
    let up = pattern.to_uppercase();
    (up.contains("{EPOCH}") || up.contains("{LEPOCH}")) && !pattern.contains("\\{")
}

fn has_alpha_field(pattern: &str) -> bool {
    let b = pattern.as_bytes();
    b.windows(2)
        .enumerate()
        .any(|(i, w)| w[0] == b'%' && b"aAbBpc".contains(&w[1]) && (i == 0 || b[i - 1] != b'%'))
}

/// Replaces `%X` strptime fields with their regexes.
fn substitute_fields(pattern: &str) -> Result<String, String> {
    let mut out = String::with_capacity(pattern.len() * 4);
    let mut rest = pattern;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (key, re) = FIELDS
            .iter()
            .find(|(k, _)| after.starts_with(k))
            .ok_or_else(|| format!("unknown date field in {pattern:?}"))?;
        out.push_str(re);
        rest = &after[key.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

/// fail2ban's `DateTemplate.setRegex`: group the date, add word or line boundaries.
fn bound_regex(regex: &str, word_begin: WordBegin, word_end: bool) -> (String, bool) {
    let mut regex = regex.trim().to_string();
    // Global flags go first again at the end.
    let mut flags = String::new();
    if let Some(start) = regex.find("(?") {
        let tail = &regex[start + 2..];
        let n = tail.chars().take_while(|c| c.is_ascii_lowercase()).count();
        if n > 0 && tail[n..].starts_with(')') {
            flags = regex[start..start + 2 + n + 1].to_string();
            regex.replace_range(start..start + 2 + n + 1, "");
        }
    }
    let no_begin = {
        let r = regex.trim_start_matches('(');
        r.starts_with('^') || r.starts_with("**") || r.starts_with("?:^")
    };
    let no_end = {
        let r = regex.trim_end_matches(')');
        (regex.ends_with('$') || regex.ends_with("$)")) && !regex.ends_with("\\$")
            || regex.ends_with("\\b")
            || regex.ends_with("\\s")
            || r.strip_suffix("**").is_some_and(|h| !h.ends_with('\\'))
    };
    let bound_begin = word_begin != WordBegin::No && !no_begin;
    let bound_end = word_end && !no_end;
    if !has_plain_group(&regex) {
        // `^(?:flags)?^?` prefix and `$?` suffix stay outside the group.
        let (pre, body) = match regex.strip_prefix('^') {
            Some(b) => ("^", b.to_string()),
            None => ("", regex.clone()),
        };
        let (body, post) = match body.strip_suffix('$') {
            Some(b) if !b.ends_with('\\') => (b.to_string(), "$"),
            _ => (body, ""),
        };
        regex = format!("{pre}({body}){post}");
    }
    let mut anchored = false;
    if bound_begin {
        if word_begin == WordBegin::Start {
            regex = format!(r"^(?:\W{{0,2}})?{regex}");
            anchored = true;
        } else {
            regex = format!("(?=^|\\b|\\W){regex}");
        }
    }
    if bound_end {
        regex.push_str(r"(?=\b|\W|$)");
    }
    {
        let r = regex.trim_start_matches("(?:");
        if r.starts_with('^') || r.starts_with("(^") {
            anchored = true;
        }
    }
    // `**` disables a boundary; drop the markers (only those, not an escaped `\**`).
    let regex = drop_star_markers(&regex);
    (format!("{flags}{regex}"), anchored)
}

/// fail2ban's `RE_DEL_WRD_BOUNDS`: removes `**` after the leading `(`s (and a flags group) and
/// `**` before the trailing `)`s unless escaped.
fn drop_star_markers(regex: &str) -> String {
    let mut regex = regex.to_string();
    let body = regex.trim_end_matches(')');
    if let Some(head) = body.strip_suffix("**")
        && !head.ends_with('\\')
    {
        let at = head.len();
        regex.replace_range(at..at + 2, "");
    }
    let mut rest = regex.trim_start_matches('(');
    if let Some(after) = rest.strip_prefix("(?")
        && let Some(close) = after.find(')')
        && close > 0
        && after[..close].chars().all(char::is_alphanumeric)
    {
        rest = after[close + 1..].trim_start_matches('(');
    }
    if rest.starts_with("**") {
        let at = regex.len() - rest.len();
        regex.replace_range(at..at + 2, "");
    }
    regex
}

/// True when `regex` has a capturing group `(` not followed by `?` (and not escaped).
fn has_plain_group(regex: &str) -> bool {
    let b = regex.as_bytes();
    (0..b.len())
        .any(|i| b[i] == b'(' && b.get(i + 1) != Some(&b'?') && (i == 0 || b[i - 1] != b'\\'))
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// The month (1-12) of a month name: the first of [`MONTHS`] it equals (`full`: starts with)
/// once lowercased.
fn month_of(name: &str, full: bool) -> Option<i32> {
    let found = if name.is_ascii() {
        // No allocation: what `to_lowercase` gives on ASCII (every name has three letters).
        let b = name.as_bytes();
        let head = if full { b.get(..3)? } else { b };
        let key = match head {
            [x, y, z] => [x, y, z].map(u8::to_ascii_lowercase),
            _ => return None,
        };
        MONTHS.iter().position(|m| m.as_bytes() == key)
    } else {
        let b = name.to_lowercase();
        MONTHS
            .iter()
            .position(|m| if full { b.starts_with(m) } else { *m == b })
    };
    found.map(|i| i as i32 + 1)
}

/// A field's number, as `trim().parse::<i32>()` gives it (plain digits read directly).
fn number(text: &str) -> Option<i32> {
    let b = text.as_bytes();
    if !b.is_empty() && b.len() <= 9 && b.iter().all(u8::is_ascii_digit) {
        return Some(b.iter().fold(0, |n, d| n * 10 + i32::from(d - b'0')));
    }
    text.trim().parse().ok()
}

fn fields_to_time(
    line: &str,
    caps: &Captures,
    fields: &[Vec<usize>],
    clock: &Clock,
    local_now: &mut LocalNow,
) -> Option<f64> {
    // The first group of the field that took part (`Captures::name` without the names).
    let get = |field: Field| {
        let (s, e) = fields
            .get(field as usize)?
            .iter()
            .find_map(|g| caps.spans.get(*g).copied().flatten())?;
        Some(&line[s..e])
    };
    let num = |field: Field| get(field).and_then(number);
    let mut year = num(Field::Year);
    if year.is_none() {
        year = num(Field::ShortYear).map(|y| if y <= 2000 { y + 2000 } else { y });
    }
    let month = num(Field::Month)
        .or_else(|| get(Field::MonthAbbr).and_then(|b| month_of(b, false)))
        .or_else(|| get(Field::MonthName).and_then(|b| month_of(b, true)));
    let day = num(Field::Day);
    let mut hour = num(Field::Hour).unwrap_or(0);
    if let Some(h) = num(Field::Hour12) {
        let pm = get(Field::AmPm).map(str::to_lowercase);
        hour = match pm.as_deref() {
            Some("pm") if h != 12 => h + 12,
            Some("pm") => h,
            _ if h == 12 => 0,
            _ => h,
        };
    }
    let minute = num(Field::Minute).unwrap_or(0);
    let second = num(Field::Second).unwrap_or(0);
    // A zone fail2ban does not know gives no date there (its ValueError or KeyError).
    let tz_offset = match get(Field::Offset).or_else(|| get(Field::Zone)) {
        Some(z) => Some(zone_offset_minutes(z)?),
        None => None,
    };

    let (now, day_later) = local_now.get(clock);
    let assume_year = year.is_none();
    let year = year.unwrap_or(i32::from(now.year()));
    let (month, day, assume_today) = match (month, day) {
        (Some(m), Some(d)) => (m, d, false),
        (None, None) => (i32::from(now.month()), i32::from(now.day()), true),
        _ => return None,
    };
    let civil = |y: i32| -> Option<DateTime> {
        DateTime::new(
            i16::try_from(y).ok()?,
            i8::try_from(month).ok()?,
            i8::try_from(day).ok()?,
            i8::try_from(hour).ok()?,
            i8::try_from(minute).ok()?,
            i8::try_from(second.min(59)).ok()?,
            0,
        )
        .ok()
    };
    let mut dt = civil(year)?;
    if let Some(off) = tz_offset {
        dt = dt.checked_sub(jiff::Span::new().minutes(off)).ok()?;
    }
    if assume_today && dt > now {
        dt = dt.checked_sub(jiff::Span::new().days(1)).ok()?;
    }
    if assume_year && dt > day_later? {
        // fail2ban: `date_result.replace(year=year-1, month=month, day=day)` on the date
        // already moved by the zone offset: the line's month and day come back, the hour
        // stays as moved (a Feb 29 that the year before lacks is no date).
        dt = DateTime::new(
            i16::try_from(year - 1).ok()?,
            i8::try_from(month).ok()?,
            i8::try_from(day).ok()?,
            dt.hour(),
            dt.minute(),
            dt.second(),
            0,
        )
        .ok()?;
    }
    let ts = match tz_offset {
        Some(_) => TimeZone::UTC.to_timestamp(dt).ok()?,
        None => clock.zone.to_ambiguous_timestamp(dt).compatible().ok()?,
    };
    Some(ts.as_second() as f64)
}

/// Offset in minutes of `Z`, `UTC`, `+hh[:]mm`, `CET`, `CEST+01` and the like: fail2ban's
/// `validateTimeZone` (`FIXED_OFFSET_TZ_RE`, an abbreviation of its table, case-sensitive, and
/// an offset of hours 00-19). `None` for anything else, where fail2ban gets no date (an error).
fn zone_offset_minutes(z: &str) -> Option<i64> {
    if matches!(z, "Z" | "UTC" | "GMT") {
        return Some(0);
    }
    let split = z.find(['+', '-']).unwrap_or(z.len());
    let (abbr, off) = z.split_at(split);
    let base = if abbr.is_empty() {
        0
    } else {
        abbr_offset(abbr)?
    };
    if off.is_empty() {
        return Some(base);
    }
    let sign = if off.starts_with('-') { -1 } else { 1 };
    let b = &off.as_bytes()[1..];
    let two = |i: usize| -> Option<i64> {
        let d = b.get(i..i + 2)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| i64::from(d[0] - b'0') * 10 + i64::from(d[1] - b'0'))
    };
    let h = two(0).filter(|h| *h <= 19)?;
    let m = match b.len() {
        2 => 0,
        4 => two(2)?,
        5 if b[2] == b':' => two(3)?,
        _ => return None,
    };
    Some(base + sign * (h * 60 + m))
}

/// fail2ban's `TZ_STR` table (strptime.py): abbreviation, offset in minutes.
const TZ_ABBR: &[(&str, i64)] = &[
    ("Y", -720),
    ("X", -660),
    ("NUT", -660),
    ("SST", -660),
    ("W", -600),
    ("CKT", -600),
    ("HAST", -600),
    ("HST", -600),
    ("TAHT", -600),
    ("TKT", -600),
    ("V", -540),
    ("AKST", -540),
    ("GAMT", -540),
    ("GIT", -540),
    ("HADT", -540),
    ("HNY", -540),
    ("U", -480),
    ("AKDT", -480),
    ("CIST", -480),
    ("HAY", -480),
    ("HNP", -480),
    ("PST", -480),
    ("PT", -480),
    ("T", -420),
    ("HAP", -420),
    ("HNR", -420),
    ("MST", -420),
    ("PDT", -420),
    ("S", -360),
    ("CST", -360),
    ("EAST", -360),
    ("GALT", -360),
    ("HAR", -360),
    ("HNC", -360),
    ("MDT", -360),
    ("R", -300),
    ("CDT", -300),
    ("COT", -300),
    ("EASST", -300),
    ("ECT", -300),
    ("EST", -300),
    ("ET", -300),
    ("HAC", -300),
    ("HNE", -300),
    ("PET", -300),
    ("Q", -240),
    ("AST", -240),
    ("BOT", -240),
    ("CLT", -240),
    ("COST", -240),
    ("EDT", -240),
    ("FKT", -240),
    ("GYT", -240),
    ("HAE", -240),
    ("HNA", -240),
    ("PYT", -240),
    ("P", -180),
    ("ADT", -180),
    ("ART", -180),
    ("BRT", -180),
    ("CLST", -180),
    ("FKST", -180),
    ("GFT", -180),
    ("HAA", -180),
    ("PMST", -180),
    ("PYST", -180),
    ("SRT", -180),
    ("UYT", -180),
    ("WGT", -180),
    ("O", -120),
    ("BRST", -120),
    ("FNT", -120),
    ("PMDT", -120),
    ("UYST", -120),
    ("WGST", -120),
    ("N", -60),
    ("AZOT", -60),
    ("CVT", -60),
    ("EGT", -60),
    ("Z", 0),
    ("EGST", 0),
    ("GMT", 0),
    ("UTC", 0),
    ("WET", 0),
    ("WT", 0),
    ("A", 60),
    ("CET", 60),
    ("DFT", 60),
    ("WAT", 60),
    ("WEDT", 60),
    ("WEST", 60),
    ("B", 120),
    ("CAT", 120),
    ("CEDT", 120),
    ("CEST", 120),
    ("EET", 120),
    ("SAST", 120),
    ("WAST", 120),
    ("C", 180),
    ("EAT", 180),
    ("EEDT", 180),
    ("EEST", 180),
    ("IDT", 180),
    ("MSK", 180),
    ("D", 240),
    ("AMT", 240),
    ("AZT", 240),
    ("GET", 240),
    ("GST", 240),
    ("KUYT", 240),
    ("MSD", 240),
    ("MUT", 240),
    ("RET", 240),
    ("SAMT", 240),
    ("SCT", 240),
    ("E", 300),
    ("AMST", 300),
    ("AQTT", 300),
    ("AZST", 300),
    ("HMT", 300),
    ("MAWT", 300),
    ("MVT", 300),
    ("PKT", 300),
    ("TFT", 300),
    ("TJT", 300),
    ("TMT", 300),
    ("UZT", 300),
    ("YEKT", 300),
    ("F", 360),
    ("ALMT", 360),
    ("BIOT", 360),
    ("BTT", 360),
    ("IOT", 360),
    ("KGT", 360),
    ("NOVT", 360),
    ("OMST", 360),
    ("YEKST", 360),
    ("G", 420),
    ("CXT", 420),
    ("DAVT", 420),
    ("HOVT", 420),
    ("ICT", 420),
    ("KRAT", 420),
    ("NOVST", 420),
    ("OMSST", 420),
    ("THA", 420),
    ("WIB", 420),
    ("H", 480),
    ("ACT", 480),
    ("AWST", 480),
    ("BDT", 480),
    ("BNT", 480),
    ("CAST", 480),
    ("HKT", 480),
    ("IRKT", 480),
    ("KRAST", 480),
    ("MYT", 480),
    ("PHT", 480),
    ("SGT", 480),
    ("ULAT", 480),
    ("WITA", 480),
    ("WST", 480),
    ("I", 540),
    ("AWDT", 540),
    ("IRKST", 540),
    ("JST", 540),
    ("KST", 540),
    ("PWT", 540),
    ("TLT", 540),
    ("WDT", 540),
    ("WIT", 540),
    ("YAKT", 540),
    ("K", 600),
    ("AEST", 600),
    ("ChST", 600),
    ("PGT", 600),
    ("VLAT", 600),
    ("YAKST", 600),
    ("YAPT", 600),
    ("L", 660),
    ("AEDT", 660),
    ("LHDT", 660),
    ("MAGT", 660),
    ("NCT", 660),
    ("PONT", 660),
    ("SBT", 660),
    ("VLAST", 660),
    ("VUT", 660),
    ("M", 720),
    ("ANAST", 720),
    ("ANAT", 720),
    ("FJT", 720),
    ("GILT", 720),
    ("MAGST", 720),
    ("MHT", 720),
    ("NZST", 720),
    ("PETST", 720),
    ("PETT", 720),
    ("TVT", 720),
    ("WFT", 720),
    ("FJST", 780),
    ("NZDT", 780),
    ("NFT", 690),
    ("ACDT", 630),
    ("LHST", 630),
    ("ACST", 570),
    ("CCT", 390),
    ("MMT", 390),
    ("NPT", 345),
    ("SLT", 330),
    ("AFT", 270),
    ("IRDT", 270),
    ("IRST", 210),
    ("HAT", -150),
    ("NDT", -150),
    ("HNT", -210),
    ("NST", -210),
    ("NT", -210),
    ("HLV", -270),
    ("VET", -270),
    ("MART", -570),
    ("MIT", -570),
];

fn abbr_offset(abbr: &str) -> Option<i64> {
    TZ_ABBR.iter().find(|(a, _)| *a == abbr).map(|(_, o)| *o)
}

/// A found date: where its text is in the line and its Unix time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FoundDate {
    /// Byte span of the date text in the line (removed before failregexes run).
    pub span: (usize, usize),
    /// Unix time in seconds (fractional for epoch dates).
    pub time: Option<f64>,
}

/// A set of date templates, chosen among the way fail2ban's `DateDetector.matchTime` does.
///
/// fail2ban does not take the first template that matches. It tries the template that won the
/// last line first, and keeps it when it matches at the same place (same start and end, for a
/// template not anchored to the line); otherwise it searches all templates in their current
/// order, where a match further into the line than that template's last match (or than the
/// last date) is only a candidate, and the candidate closest to the line start wins unless a
/// later template matches without that "distance collision". The winner's hits grow and it
/// bubbles up the list (fail2ban's `_reorderTemplate`: weighted by hits over distance, the
/// line-anchored copies of the defaults weighing 100). All of that is state carried from line
/// to line, kept here as fail2ban keeps it (times of use come from the [`Clock`]).
///
/// A date without a year gets the current year in the clock's zone, or the year before when
/// it would otherwise be more than a day after now; fail2ban 1.0.2 never moves one forward, so
/// a `Jan  1 00:00:01` line read on Dec 31 at 23:59 is dated Jan 1 of the ending year.
///
/// ```
/// use logban::filter::{Clock, DateDetector};
/// // 2027-01-01 00:00:30 UTC: last night's line is from 2026.
/// let clock = Clock::fixed(jiff::tz::TimeZone::UTC, 1_798_761_630);
/// let mut dd = DateDetector::default_templates();
/// let found = dd.find("Dec 31 23:59:59 host sshd[1]: x", &clock).unwrap();
/// assert_eq!(found.time, Some(1_798_761_599.0));
/// // Two dates: fail2ban takes the one nearer the line start when the other template
/// // would match further in than it did before.
/// let line = "some free text 030324  0:03:59 -- 2003-03-07 17:05:01 ...";
/// let found = dd.find(line, &clock).unwrap();
/// assert_eq!(&line[found.span.0..found.span.1], "030324  0:03:59");
/// ```
#[derive(Debug, Clone)]
pub struct DateDetector {
    templates: Vec<Template>,
    sel: Selection,
    /// The last date found: whole match text, date span relative to the match, time. Busy logs
    /// repeat the same timestamp on many lines; a DFA-only match then skips parsing.
    cache: Option<LastDate>,
    /// Reorderings decided by hit counts or times of use (see [`Self::weighings`]).
    weighings: u64,
    /// The lazy DFA cache of the last date's template (by index), which reads lines from
    /// their start to tell where that template matches.
    walk_cache: Option<(usize, Cache)>,
    /// The clock's last "now", in its zone.
    local_now: LocalNow,
}

/// fail2ban's `DateDetectorTemplate` counters of one template.
#[derive(Debug, Clone, Copy)]
struct Usage {
    /// Lines this template won (`hits`).
    hits: u64,
    /// It matched some line, winning or not (fail2ban's `DateTemplate.hits > 0`).
    matched: bool,
    /// Clock seconds of its last win, 0 before (`lastUsed`).
    last_used: i64,
    /// Start of its last winning match (`distance`).
    distance: usize,
}

/// fail2ban's "not yet" distance, `0x7fffffff`.
const FAR: usize = 0x7fff_ffff;

/// The end kept after an anchored winner: fail2ban compares it only after an unanchored one.
const ANCHORED_END: Edge = (0, None, None);

/// A position in the last winning line and the characters around it (`None`: no character,
/// or not kept because the winner was anchored and its neighbours are never compared).
type Edge = (usize, Option<char>, Option<char>);

/// The selection state of `DateDetector.matchTime`.
#[derive(Debug, Clone, Default)]
struct Selection {
    /// Template indexes in the order they are tried (fail2ban reorders its list).
    order: Vec<usize>,
    /// Counters by template index.
    usage: Vec<Usage>,
    /// Position in `order` of the last winner (`__lastTemplIdx`).
    last: Option<usize>,
    /// Start of the last winning match, the characters before and at it (`__lastPos`).
    last_pos: Edge,
    /// End of the last winning match, the characters before and at it (`__lastEndPos`).
    last_end: Edge,
    /// First position whose template never won (`__firstUnused`).
    first_unused: usize,
}

impl Selection {
    fn new(n: usize) -> Self {
        Self {
            order: (0..n).collect(),
            usage: vec![
                Usage {
                    hits: 0,
                    matched: false,
                    last_used: 0,
                    distance: FAR,
                };
                n
            ],
            last: None,
            last_pos: (1, None, None),
            last_end: (FAR, None, None),
            first_unused: 0,
        }
    }

    /// fail2ban's boundary check before it searches the last template only between the last
    /// date's start and end: the characters outside are equal, or those inside are equal and
    /// not alphanumeric.
    fn edges_agree(&self, line: &str) -> bool {
        let (d, before, at) = self.last_pos;
        let (e, end_before, end_at) = self.last_end;
        // Past the line's end there is no character (Python's slices are empty there).
        let (d, e) = (
            byte_pos(line, d).unwrap_or(usize::MAX),
            byte_pos(line, e).unwrap_or(usize::MAX),
        );
        let left = char_before(line, d) == before
            || (at.is_some_and(|c| !c.is_alphanumeric()) && char_at(line, d) == at);
        let right = char_at(line, e) == end_at
            || (end_before.is_some_and(|c| !c.is_alphanumeric())
                && char_before(line, e) == end_before);
        left && right
    }
}

/// Byte offset of character `i` of `line` (the line's length for its end), `None` past it.
/// fail2ban's positions count characters; they equal byte offsets on ASCII lines.
fn byte_pos(line: &str, i: usize) -> Option<usize> {
    if i <= line.len() && line.is_char_boundary(i) && line[..i].is_ascii() {
        return Some(i);
    }
    line.char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(line.len()))
        .nth(i)
}

/// A byte span as fail2ban's character positions.
fn chars_span(line: &str, (s, e): (usize, usize)) -> (usize, usize) {
    (char_pos(line, s), char_pos(line, e))
}

/// Character index of byte offset `b` (a character boundary) of `line`.
fn char_pos(line: &str, b: usize) -> usize {
    let head = &line.as_bytes()[..b];
    if head.is_ascii() {
        b
    } else {
        line[..b].chars().count()
    }
}

/// The character ending at byte `i` (Python's `line[i-1:i]`, empty at 0 or past the end).
fn char_before(line: &str, i: usize) -> Option<char> {
    line.get(..i)?.chars().next_back()
}

/// The character starting at byte `i` (Python's `line[i:i+1]`).
fn char_at(line: &str, i: usize) -> Option<char> {
    line.get(i..)?.chars().next()
}

/// What of the selection state decides future choices, for comparing two detectors: the order,
/// the last winner and its position, and which templates won or matched with their distances.
/// Hit counts and times of use only matter when a reordering weighs them, which
/// [`DateDetector::weighings`] counts.
#[derive(Debug, PartialEq)]
pub(crate) struct SelectionState {
    order: Vec<usize>,
    last: Option<usize>,
    last_pos: Edge,
    last_end: Edge,
    first_unused: usize,
    used: Vec<(bool, bool, usize)>,
}

/// A detector's state, moved between copies of one filter.
#[derive(Debug, Clone, Default)]
pub(crate) struct DateState {
    sel: Selection,
    cache: Option<LastDate>,
}

#[derive(Debug, Clone)]
struct LastDate {
    template: usize,
    whole: String,
    span: (usize, usize),
    time: Option<f64>,
    /// The bytes the template's DFA read before it died, from the line start (after the first
    /// X for a `date_after` template, where the DFA's state is always the same): a line that
    /// starts with them has the same match (empty: not known).
    decided: Vec<u8>,
    /// The captures of the match (from the line start), when the text they were resolved on,
    /// `around` (the match and the byte after it), is ASCII.
    caps: Option<Captures>,
    around: Vec<u8>,
    /// For each byte of `around`, the bytes the template's ASCII NFA takes the same paths on
    /// there (see [`same_path_bytes`]), as bits; empty when not known.
    masks: Vec<u128>,
}

/// Whether each byte of `text` is in its mask (`masks` as long as `text`, never when empty).
fn fits(masks: &[u128], text: &[u8]) -> bool {
    !masks.is_empty()
        && masks.len() == text.len()
        && text
            .iter()
            .zip(masks)
            .all(|(b, m)| *b < 128 && m >> b & 1 == 1)
}

/// The ASCII bytes from `start` to `end` (inclusive), as bits.
fn byte_range(start: u8, end: u8) -> u128 {
    if start > 127 || start > end {
        return 0;
    }
    let hi = match end {
        127.. => u128::MAX,
        e => (1u128 << (e + 1)) - 1,
    };
    hi & !((1u128 << start) - 1)
}

/// The ASCII bytes no look-around tells apart from `b`: word characters or not, `\n` or not,
/// `\r` or not (what every assertion of an ASCII NFA reads of a byte).
fn look_alike(b: u8) -> u128 {
    let word = byte_range(b'0', b'9') | byte_range(b'A', b'Z') | byte_range(b'a', b'z') | 1 << b'_';
    let side = |set: u128| {
        if b < 128 && set >> b & 1 == 1 {
            set
        } else {
            !set
        }
    };
    side(word) & side(1 << b'\n') & side(1 << b'\r')
}

/// For each byte of `text[from..]` (ASCII), the ASCII bytes (as bits) on which `nfa`, run
/// anchored from `text`'s start, takes the same paths: every transition of every state that
/// some path over `text` reaches there takes the byte exactly when it takes `text`'s own, and
/// no look-around tells the two apart ([`look_alike`]).
///
/// A text of the same length whose bytes are each in these sets (and which reaches the same
/// states at `from`) then has exactly the paths `text` has, position by position: the same
/// states, the same matches, and among the paths of a match ending at the same place the
/// same one first in leftmost-first order, so the same captures. `None` for a text that is
/// not ASCII.
fn same_path_bytes(nfa: &NFA, text: &[u8], from: usize) -> Option<Vec<u128>> {
    if !text.is_ascii() {
        return None;
    }
    let looks = !nfa.look_set_any().is_empty();
    let matcher = nfa.look_matcher();
    let mut seen = vec![false; nfa.states().len()];
    let (mut visited, mut steps) = (Vec::new(), Vec::new());
    let mut stack = vec![nfa.start_anchored()];
    let mut out = Vec::with_capacity(text.len().saturating_sub(from));
    for (at, &b) in text.iter().enumerate() {
        // The states the paths reach at `at` (the closure over empty steps that hold here).
        steps.clear();
        while let Some(id) = stack.pop() {
            if std::mem::replace(seen.get_mut(id.as_usize())?, true) {
                continue;
            }
            visited.push(id);
            match nfa.state(id) {
                State::Look { look, next } => {
                    if matcher.matches(*look, text, at) {
                        stack.push(*next);
                    }
                }
                State::Union { alternates } => stack.extend(alternates.iter().copied()),
                State::BinaryUnion { alt1, alt2 } => stack.extend([*alt1, *alt2]),
                State::Capture { next, .. } => stack.push(*next),
                State::ByteRange { .. } | State::Sparse(_) | State::Dense(_) => steps.push(id),
                State::Fail | State::Match { .. } => {}
            }
        }
        for id in visited.drain(..) {
            seen[id.as_usize()] = false;
        }
        let mut mask = if looks { look_alike(b) } else { u128::MAX };
        // A range: the bytes on `b`'s side of it; whether `b` is in it.
        let take = |mask: &mut u128, start: u8, end: u8| {
            let range = byte_range(start, end);
            let inside = (start..=end).contains(&b);
            *mask &= if inside { range } else { !range };
            inside
        };
        for &id in &steps {
            match nfa.state(id) {
                State::ByteRange { trans } => {
                    let inside = take(&mut mask, trans.start, trans.end);
                    if inside {
                        stack.push(trans.next);
                    }
                }
                State::Sparse(sparse) => {
                    for t in sparse.transitions.iter() {
                        if take(&mut mask, t.start, t.end) {
                            stack.push(t.next);
                        }
                    }
                }
                State::Dense(dense) => {
                    let next = *dense.transitions.get(usize::from(b))?;
                    for (c, to) in dense.transitions.iter().take(128).enumerate() {
                        if *to != next {
                            mask &= !(1u128 << c);
                        }
                    }
                    if next != StateID::ZERO {
                        stack.push(next);
                    }
                }
                _ => {}
            }
        }
        if at >= from {
            out.push(mask);
        }
    }
    Some(out)
}

impl LastDate {
    /// The captures of the match `0..end` that `template`'s DFA found in `line`, when they are
    /// those of the last date: a text of the same length (the byte after the match included)
    /// whose bytes each take the same paths through the template's NFA as the last date's
    /// (see [`same_path_bytes`]): a new second `00:00:08` after `00:00:07`, or `00:01:00`
    /// after `00:00:59`, most often, which the capture search cannot tell apart.
    ///
    /// For `^[^X]*X({DATE})`, what is compared starts after the line's first X: the search
    /// goes through the text before it the one way it can, and its captures there shift with it.
    fn same_captures(&self, template: &Template, line: &str, end: usize) -> Option<Captures> {
        let (last_base, base) = self.same_paths(template, line, end)?;
        let mut caps = self.caps.clone()?;
        shift(&mut caps, end, last_base, base)?;
        Some(caps)
    }

    /// Whether `line`, whose match by `template`'s DFA is `0..end`, takes the same paths as
    /// the last date and so has its captures (see [`same_captures`](Self::same_captures)),
    /// shifted: where the compared bytes start in the last date's line, and in this one.
    fn same_paths(&self, template: &Template, line: &str, end: usize) -> Option<(usize, usize)> {
        self.caps.as_ref()?;
        let text = line.as_bytes().get(..line.len().min(end.checked_add(1)?))?;
        // Where the compared bytes start, in this line and in the last date's.
        let (base, last_base) = match template.date_after {
            Some(x) => (text.iter().position(|b| *b == x)? + 1, self.span.0),
            None => (0, 0),
        };
        let around = text.get(base..)?;
        if end.checked_sub(base)? != self.whole.len().checked_sub(last_base)?
            || around.len() != self.around.len()
            || !text.is_ascii()
        {
            return None;
        }
        fits(&self.masks, around).then_some((last_base, base))
    }
}

/// Moves the last date's captures to a line whose match is `0..end` and whose compared
/// bytes start at `base` (at `last_base` in the last date's line); `None` (the captures
/// left half moved) when a group starts before the compared bytes.
fn shift(caps: &mut Captures, end: usize, last_base: usize, base: usize) -> Option<()> {
    for (i, span) in caps.spans.iter_mut().enumerate() {
        *span = match *span {
            Some(_) if i == 0 => Some((0, end)),
            Some((s, e)) if s >= last_base => Some((s - last_base + base, e - last_base + base)),
            Some(_) => return None,
            None => None,
        };
    }
    Some(())
}

/// What the last date's template's DFA read of a line: the end of its match (from the line
/// start), and the bytes it read before it died (`None`: it read the whole line).
type Walk = (Option<usize>, Option<usize>);

/// The last date's template (by index), where its DFA found its match from the line start,
/// and the captures of that match when they are known.
type LastWalk = (usize, (Option<usize>, Option<Captures>));

/// A cache hit: the whole match, the date span, the time.
type Hit = ((usize, usize), (usize, usize), Option<f64>);

/// Runs `dfa` (leftmost-first, anchored) over `line` from its start, as far as it goes.
fn walk(dfa: &DFA, cache: &mut Cache, line: &str) -> Option<Walk> {
    let input = Input::new(line).anchored(Anchored::Yes);
    let mut sid = dfa.start_state_forward(cache, &input).ok()?;
    let mut end = None;
    for (at, &b) in line.as_bytes().iter().enumerate() {
        sid = dfa.next_state(cache, sid, b).ok()?;
        if sid.is_tagged() {
            // Match states come one byte late: the match ended before this byte.
            if sid.is_match() {
                end = Some(at);
            } else if sid.is_dead() {
                return Some((end, Some(at + 1)));
            } else if sid.is_quit() {
                return None;
            }
        }
    }
    sid = dfa.next_eoi_state(cache, sid).ok()?;
    if sid.is_match() {
        end = Some(line.len());
    }
    Some((end, None))
}

/// A match of one template: captures, date span (bytes), fail2ban's match span (characters),
/// position in the order.
type Candidate = (Captures, (usize, usize), (usize, usize), usize);

impl DateDetector {
    fn with_templates(templates: Vec<Template>) -> Self {
        Self {
            sel: Selection::new(templates.len()),
            templates,
            cache: None,
            weighings: 0,
            walk_cache: None,
            local_now: LocalNow::default(),
        }
    }

    /// fail2ban's default templates (line-anchored variants first).
    pub fn default_templates() -> Self {
        // Compiled once per process (about 30 regexes) and cloned into each filter.
        static DEFAULTS: std::sync::LazyLock<Vec<Template>> = std::sync::LazyLock::new(|| {
            let mut templates = Vec::new();
            for p in DEFAULT_TEMPLATES {
                if !p.starts_with('^')
                    && !p.starts_with("{^LN-BEG}")
                    && let Ok(mut t) = Template::from_pattern(&format!("{{^LN-BEG}}{p}"))
                {
                    // fail2ban's DateDetectorCache: anchored copies bubble up first.
                    t.weight = 100.0;
                    templates.push(t);
                }
            }
            templates.extend(
                DEFAULT_TEMPLATES
                    .iter()
                    .filter_map(|p| Template::from_pattern(p).ok()),
            );
            templates
        });
        Self::with_templates(DEFAULTS.clone())
    }

    /// Templates from a filter's `datepattern` (one per line).
    pub fn from_datepattern(value: &str) -> Result<Self, String> {
        let mut templates = Vec::new();
        for pattern in value.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let key = if pattern.contains('%') {
                pattern.to_string()
            } else {
                pattern.to_uppercase()
            };
            if key == "{^LN-BEG}" || key == "{DEFAULT}" {
                let all = Self::default_templates().templates;
                templates.extend(
                    all.into_iter()
                        .filter(|t| key == "{DEFAULT}" || t.line_anchored),
                );
            } else if key.contains("{DATE}") {
                let date_after = delimited_date(pattern);
                for p in DEFAULT_TEMPLATES {
                    let unbound = p.strip_prefix("{^LN-BEG}").unwrap_or(p);
                    let wrapped = match *p {
                        "EPOCH" => pattern.replacen("{DATE}", "{EPOCH}", 1),
                        "TAI64N" => continue,
                        _ => pattern.replacen("{DATE}", unbound, 1),
                    };
                    let mut template = Template::from_pattern(&wrapped)?;
                    // Epoch templates have their own groups; the default ones group the date.
                    if *p != "EPOCH" {
                        template.date_after = date_after;
                    }
                    templates.push(template);
                }
            } else {
                templates.push(Template::from_pattern(pattern)?);
            }
        }
        Ok(Self::with_templates(templates))
    }

    /// What decides which template later lines get (see [`SelectionState`]); the cache of
    /// the last date only saves work.
    pub(crate) fn state(&self) -> SelectionState {
        let sel = &self.sel;
        SelectionState {
            order: sel.order.clone(),
            last: sel.last,
            last_pos: sel.last_pos,
            last_end: sel.last_end,
            first_unused: sel.first_unused,
            used: sel
                .usage
                .iter()
                .map(|u| (u.hits > 0, u.matched, u.distance))
                .collect(),
        }
    }

    /// How many times a reordering compared templates that had both won (by hits over
    /// distance, or by time of last use). Two detectors in equal [`state`](Self::state)s make
    /// the same choices on the same lines until one of them weighs.
    pub(crate) fn weighings(&self) -> u64 {
        self.weighings
    }

    /// A copy of the state (and the cached date), for a detector with the same templates.
    pub(crate) fn state_copy(&self) -> DateState {
        DateState {
            sel: self.sel.clone(),
            cache: self.cache.clone(),
        }
    }

    /// Takes a state from [`state_copy`](Self::state_copy) (a state of other templates resets
    /// the selection).
    pub(crate) fn set_state(&mut self, state: &DateState) {
        if state.sel.order.len() == self.templates.len() {
            self.sel.clone_from(&state.sel);
            self.cache.clone_from(&state.cache);
        } else {
            self.sel = Selection::new(self.templates.len());
            self.cache = None;
        }
    }

    /// Finds the date in `line`, choosing among the templates as fail2ban does (see
    /// [`DateDetector`]).
    ///
    /// The last date found is reused, without captures or parsing, when the template that
    /// found it (anchored to the line start, so it wins whenever it matches) matches the same
    /// text again: the whole match for a line-anchored template (syslog's `Mar  1 00:00:00 `
    /// prefix), or for `^[^\[]*\[({DATE})` the date text after the first `[`, where the match
    /// must end (access logs, whose lines start with varying client addresses).
    pub fn find(&mut self, line: &str, clock: &Clock) -> Option<FoundDate> {
        let (hit, walked) = self.cached(line);
        if let Some((whole, span, time)) = hit {
            // The last winner, anchored: fail2ban takes it at once; only its hits grow
            // (its time of use is that of the last parsed line with this text).
            let template = self.cache.as_ref().map_or(0, |c| c.template);
            let distance = char_pos(line, whole.0);
            let sel = &mut self.sel;
            let u = &mut sel.usage[template];
            u.hits += 1;
            u.distance = distance;
            sel.last_pos = (distance, None, None);
            sel.last_end = ANCHORED_END;
            return Some(FoundDate { span, time });
        }
        if let Some(found) = self.same_paths(line, walked, clock) {
            return Some(found);
        }
        let last = self.cache.as_ref().map(|c| c.template);
        let reused = match (&self.cache, walked) {
            (Some(c), Some((Some(end), _))) => {
                c.same_captures(&self.templates[c.template], line, end)
            }
            _ => None,
        };
        let walked_last = last.zip(walked.map(|w| (w.0, reused)));
        let (caps, span, whole, pos) = self.choose(line, walked_last)?;
        let idx = self.sel.order[pos];
        let now = clock.now();
        self.won(pos, line, whole, now);
        let t = &self.templates[idx];
        let time = t.value(line, &caps, clock, &mut self.local_now);
        // What the DFA read tells later lines when the same template wins again, there.
        let decided = walked
            .filter(|w| Some(idx) == last && caps.whole().0 == 0 && w.0 == Some(caps.whole().1))
            .and_then(|w| w.1);
        self.remember(idx, line, caps, span, time, decided);
        Some(FoundDate { span, time })
    }

    /// A new date whose text takes the same paths through the last date's template as the
    /// last date (see [`same_path_bytes`]), the template's DFA having found its match from
    /// the line start (`walked`): the template wins at once (anchored, as in `cached`), with
    /// the last date's captures moved to this line, without copying or searching them.
    /// What [`find`](Self::find) does then, step by step: `choose` takes the last winner,
    /// `won` counts it where it is, `value` reads the fields, `remember` keeps the date.
    fn same_paths(&mut self, line: &str, walked: Option<Walk>, clock: &Clock) -> Option<FoundDate> {
        let (Some(end), died) = walked? else {
            return None;
        };
        let pos = self.sel.last?;
        let c = self.cache.as_mut()?;
        let idx = c.template;
        let t = &self.templates[idx];
        if self.sel.order.get(pos) != Some(&idx) || !t.anchored() || t.kind != Kind::Fields {
            return None;
        }
        let (last_base, base) = c.same_paths(t, line, end)?;
        let caps = c.caps.as_mut()?;
        if shift(caps, end, last_base, base).is_none() || !t.seps_agree(line, caps) {
            // Not these captures after all: the full path, which finds them again.
            c.caps = None;
            return None;
        }
        let time = fields_to_time(line, caps, &t.fields, clock, &mut self.local_now);
        // `choose` and `won`: the last winner, anchored and at the line start, where it was.
        let sel = &mut self.sel;
        let u = &mut sel.usage[idx];
        u.matched = true;
        u.hits += 1;
        u.last_used = clock.now();
        u.distance = 0;
        if sel.first_unused == pos {
            sel.first_unused += 1;
        }
        sel.last_pos = (0, None, None);
        sel.last_end = ANCHORED_END;
        // `remember`: the same template, captures, paths; this line's text and time.
        let span = (c.span.0 - last_base + base, c.span.1 - last_base + base);
        let bytes = line.as_bytes();
        c.decided.clear();
        if let Some(d) = died.filter(|d| *d > base) {
            c.decided.extend_from_slice(&bytes[base..d]);
        }
        c.around.clear();
        c.around
            .extend_from_slice(&bytes[base..bytes.len().min(end + 1)]);
        c.whole.clear();
        c.whole.push_str(&line[..end]);
        c.span = span;
        c.time = time;
        Some(FoundDate { span, time })
    }

    /// The last date again, when its template (anchored to the line start, so it wins whenever
    /// it matches) matches the same text: the whole match for a line-anchored template
    /// (syslog's `Mar  1 00:00:00 ` prefix), or for `^[^\[]*\[({DATE})` the date text after the
    /// first `[`, where the match must end (access logs, whose lines start with varying client
    /// addresses). Else what the template's DFA read of the line, if it ran.
    fn cached(&mut self, line: &str) -> (Option<Hit>, Option<Walk>) {
        let Some(c) = self.cache.as_mut() else {
            return (None, None);
        };
        let t = &self.templates[c.template];
        // Where the DFA's decisive bytes start: the line start, or after the first X.
        let base = match t.date_after {
            Some(x) => match line.bytes().position(|b| b == x) {
                Some(at) => at + 1,
                None => return (None, None),
            },
            None if t.line_anchored && t.kind != Kind::None => 0,
            None => return (None, None),
        };
        // The match (whole, date span) the last date's text gives, ending at `end`.
        let same = |c: &LastDate, end: usize| -> Option<((usize, usize), (usize, usize))> {
            if t.date_after.is_some() {
                let date = &c.whole[c.span.0..c.span.1];
                (end == base + date.len() && line[base..].starts_with(date))
                    .then_some(((0, end), (base, end)))
            } else {
                (line.get(..end) == Some(c.whole.as_str()))
                    .then_some(((0, end), (c.span.0, c.span.1)))
            }
        };
        let tail = &line.as_bytes()[base..];
        if !c.decided.is_empty() && tail.starts_with(&c.decided) {
            // The DFA reads these bytes as it did on the line that had this date, and dies:
            // the same match, the same date.
            let hit = if t.date_after.is_some() {
                let end = base + (c.span.1 - c.span.0);
                ((0, end), (base, end), c.time)
            } else {
                ((0, c.whole.len()), c.span, c.time)
            };
            return (Some(hit), None);
        }
        let walked = match t.walker() {
            Some(dfa) => {
                let cache = match &mut self.walk_cache {
                    Some((i, cache)) if *i == c.template => cache,
                    slot => &mut slot.insert((c.template, dfa.create_cache())).1,
                };
                walk(dfa, cache, line)
            }
            None => None,
        };
        let found = match walked {
            Some((end, died)) => {
                let found = end.and_then(|end| same(c, end));
                if found.is_some() {
                    c.decided.clear();
                    if let Some(d) = died.filter(|d| *d > base) {
                        c.decided.extend_from_slice(&line.as_bytes()[base..d]);
                    }
                }
                found
            }
            // No DFA (or it cannot read this line): the regex search.
            None => t.matcher.find_at(line, 0).and_then(|(s, e)| {
                if s != 0 {
                    return None;
                }
                same(c, e)
            }),
        };
        (found.map(|(w, sp)| (w, sp, c.time)), walked)
    }

    /// fail2ban's `matchTime` up to the winner: the last template first, then all in order.
    ///
    /// `walked`: what the DFA of the last date's template found.
    fn choose(&mut self, line: &str, walked: Option<LastWalk>) -> Option<Candidate> {
        let n = self.templates.len();
        let mut reserve: Option<Candidate> = None;
        let mut skip = usize::MAX;
        if let Some(i) = self.sel.last {
            let idx = self.sel.order[i];
            let t = &self.templates[idx];
            let found = if t.anchored() {
                skip = i;
                match walked {
                    Some((w, (end, reused))) if w == idx => t.find_walked(line, end, reused),
                    _ => t.find(line),
                }
            } else if self.sel.edges_agree(line) {
                // Only between the last date's start and end (character positions).
                match byte_pos(line, self.sel.last_pos.0) {
                    Some(from) => {
                        let to = byte_pos(line, self.sel.last_end.0).unwrap_or(line.len());
                        t.find_within(line, from, to)
                    }
                    None => None,
                }
            } else {
                skip = i;
                t.find(line)
            };
            if let Some((caps, span)) = found {
                self.sel.usage[idx].matched = true;
                let whole = chars_span(line, t.match_span(&caps, span));
                let same = whole.0 == self.sel.last_pos.0 && whole.1 == self.sel.last_end.0;
                if n == 1 || t.anchored() || same {
                    return Some((caps, span, whole, i));
                }
                // Same template elsewhere: a pattern change, keep it as the best so far.
                reserve = Some((caps, span, whole, i));
            }
        }
        for i in 0..n {
            if i == skip {
                continue;
            }
            let idx = self.sel.order[i];
            let t = &self.templates[idx];
            let Some((caps, span)) = t.find(line) else {
                continue;
            };
            self.sel.usage[idx].matched = true;
            let whole = chars_span(line, t.match_span(&caps, span));
            let distance = whole.0;
            let u = self.sel.usage[idx];
            let wins = i + 1 >= n
                || t.anchored()
                // It won before at the line start while the next one never matched anything.
                || (distance == 0 && u.hits > 0 && !self.sel.usage[self.sel.order[i + 1]].matched)
                // No "distance collision": not further than its last date, nor the line's.
                || !(distance > u.distance || distance > self.sel.last_pos.0);
            if wins {
                return Some((caps, span, whole, i));
            }
            if reserve.as_ref().is_none_or(|r| distance < r.2.0) {
                reserve = Some((caps, span, whole, i));
            }
        }
        reserve
    }

    /// Records the winner at position `pos` (fail2ban: hits, time of use, distance, first
    /// unused, last positions, and the bubbling up of `_reorderTemplate`).
    fn won(&mut self, pos: usize, line: &str, whole: (usize, usize), now: i64) {
        let idx = self.sel.order[pos];
        let anchored = self.templates[idx].anchored();
        let sel = &mut self.sel;
        let u = &mut sel.usage[idx];
        u.hits += 1;
        u.last_used = now;
        u.distance = whole.0;
        if sel.first_unused == pos {
            sel.first_unused += 1;
        }
        // The characters around an anchored winner are never compared: not kept, so that
        // states compare equal whether the date came from the cache or not.
        let (s, e) = whole;
        let around = |i: usize| {
            let b = byte_pos(line, i).unwrap_or(usize::MAX);
            (i, char_before(line, b), char_at(line, b))
        };
        sel.last_pos = if anchored { (s, None, None) } else { around(s) };
        sel.last_end = if anchored { ANCHORED_END } else { around(e) };
        let mut pos = pos;
        if pos != 0 && Some(pos) != sel.last {
            pos = self.reorder(pos);
        }
        self.sel.last = Some(pos);
    }

    /// fail2ban's `_reorderTemplate`: moves the winner at `num` up, to the first unused place
    /// or half-way, or else one place, when it weighs more (hits over distance, times the
    /// template's weight) or the template there went unused for 5 minutes.
    fn reorder(&mut self, num: usize) -> usize {
        let n = self.templates.len();
        let idx = self.sel.order[num];
        let untime = self.sel.usage[idx].last_used - 300;
        let weight = self.weight(idx);
        let mut pos = if self.sel.first_unused < num {
            self.sel.first_unused
        } else {
            num / 2
        };
        let moveable = |this: &mut Self, pos: usize| {
            let other = this.sel.order[pos];
            let u = this.sel.usage[other];
            if u.hits > 0 {
                this.weighings += 1;
            }
            weight > this.weight(other) || untime > u.last_used
        };
        if !moveable(self, pos) {
            if pos == num - 1 {
                return num;
            }
            pos = num - 1;
            if !moveable(self, pos) {
                return num;
            }
        }
        let sel = &mut self.sel;
        let moved = sel.order.remove(num);
        sel.order.insert(pos, moved);
        while sel.first_unused < n && sel.usage[sel.order[sel.first_unused]].hits > 0 {
            sel.first_unused += 1;
        }
        pos
    }

    /// fail2ban's `DateDetectorTemplate.weight`: hits times weight over distance.
    fn weight(&self, idx: usize) -> f64 {
        let u = &self.sel.usage[idx];
        u.hits as f64 * self.templates[idx].weight / u.distance.max(1) as f64
    }

    fn remember(
        &mut self,
        template: usize,
        line: &str,
        caps: Captures,
        span: (usize, usize),
        time: Option<f64>,
        decided: Option<usize>,
    ) {
        let (s, e) = caps.whole();
        if let Some(x) = self.templates[template].date_after {
            // Only a date that starts after the first X and ends the match can be recognised
            // again by its text alone.
            let first = line.bytes().position(|b| b == x).map(|i| i + 1);
            if first != Some(span.0) || span.1 != e {
                self.cache = None;
                return;
            }
        }
        // The decisive bytes start where `cached` looks for them.
        let base = if self.templates[template].date_after.is_some() {
            span.0
        } else {
            0
        };
        // The last date's buffers are reused.
        let mut last = self.cache.take().unwrap_or_else(|| LastDate {
            template,
            whole: String::new(),
            span,
            time,
            decided: Vec::new(),
            caps: None,
            around: Vec::new(),
            masks: Vec::new(),
        });
        last.decided.clear();
        if let Some(d) = decided.filter(|d| *d > base && s == 0) {
            last.decided.extend_from_slice(&line.as_bytes()[base..d]);
        }
        // Captures worth keeping: of a line-start match that the DFA can find again.
        let t = &self.templates[template];
        let around = line.as_bytes().get(..line.len().min(e.saturating_add(1)));
        // The paths the last text took are those of this one when its bytes fit them.
        let same_paths = last.template == template
            && around.is_some_and(|a| a.get(base..).is_some_and(|a| fits(&last.masks, a)));
        last.around.clear();
        last.caps = None;
        if let Some(around) = around
            && s == 0
            && t.kind == Kind::Fields
            && around.is_ascii()
            && t.walker().is_some()
        {
            if !same_paths {
                last.masks = t
                    .ascii_nfa()
                    .and_then(|nfa| same_path_bytes(nfa, around, base))
                    .unwrap_or_default();
            }
            last.around.extend_from_slice(&around[base..]);
            last.caps = Some(caps);
        } else {
            last.masks.clear();
        }
        last.template = template;
        last.whole.clear();
        last.whole.push_str(&line[s..e]);
        last.span = (span.0 - s, span.1 - s);
        last.time = time;
        self.cache = Some(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_clock() -> Clock {
        Clock::fixed(
            TimeZone::posix("CET-01CEST-02,M3.5.0,M10.5.0").expect("tz"),
            1_124_013_600,
        )
    }

    fn iso(ts: f64) -> String {
        jiff::Timestamp::from_second(ts as i64)
            .expect("ts")
            .to_string()
    }

    #[test]
    fn default_formats() {
        let clock = test_clock();
        let mut dd = DateDetector::default_templates();
        let cases = [
            ("Aug 14 11:59:59 host sshd[1]: x", "2005-08-14T09:59:59Z"),
            // Year-less date after "now" belongs to the previous year.
            ("Dec 31 23:00:00 host x", "2004-12-31T22:00:00Z"),
            ("2005-08-14T12:00:00+02:00 x", "2005-08-14T10:00:00Z"),
            ("2005-08-14 12:00:00 x", "2005-08-14T10:00:00Z"),
            (
                r#"1.2.3.4 - - [14/Aug/2005:12:00:00 +0200] "GET / HTTP/1.1""#,
                "2005-08-14T10:00:00Z",
            ),
            ("1124013600 x", "2005-08-14T10:00:00Z"),
            ("[1124013600] x", "2005-08-14T10:00:00Z"),
            (
                "type=USER_AUTH msg=audit(1124013600.123:27): x",
                "2005-08-14T10:00:00Z",
            ),
        ];
        for (line, want) in cases {
            let found = dd
                .find(line, &clock)
                .unwrap_or_else(|| panic!("no date in {line}"));
            assert_eq!(iso(found.time.expect("time")), want, "{line}");
        }
    }

    #[test]
    fn access_log_dates_are_reused_by_their_text_and_only_there() {
        assert_eq!(delimited_date(r"^[^\[]*\[({DATE})"), Some(b'['));
        assert_eq!(delimited_date(r"^[^\[]*\[({DATE}) x"), None);
        assert_eq!(delimited_date(r"^[^\[]*\](({DATE})"), None);
        let clock = test_clock();
        let mut dd = DateDetector::from_datepattern(r"^[^\[]*\[({DATE})").expect("ok");
        let lines = [
            r#"192.0.2.1 - - [14/Aug/2005:12:00:00 +0200] "GET / HTTP/1.1""#,
            // Same date text after another address: reused.
            r#"2001:db8::77 - bob [14/Aug/2005:12:00:00 +0200] "GET /x HTTP/1.1""#,
            // A longer date (with a fraction): parsed.
            r#"192.0.2.1 - - [14/Aug/2005:12:00:00.5 +0200] "GET / HTTP/1.1""#,
            r#"192.0.2.1 - - [14/Aug/2005:12:00:01 +0200] "GET / HTTP/1.1""#,
            // The same text, but not after the first `[`: not from the cache.
            r#"192.0.2.1 [x] - [14/Aug/2005:12:00:01 +0200] "GET / HTTP/1.1""#,
        ];
        for line in lines {
            // A detector without the last date gives the same answer.
            let mut uncached = dd.clone();
            uncached.cache = None;
            let parsed = uncached.find(line, &clock);
            assert_eq!(dd.find(line, &clock), parsed, "{line}");
            // And the same template state (what decides the next lines' template).
            assert!(dd.state() == uncached.state(), "{line}");
            assert_eq!(dd.sel.usage[0].hits, uncached.sel.usage[0].hits, "{line}");
        }
        // The reuse happens: a marked cached time comes back for the second line.
        dd.find(lines[0], &clock).expect("date");
        if let Some(c) = dd.cache.as_mut() {
            c.time = Some(1.0);
        }
        assert_eq!(dd.find(lines[1], &clock).expect("date").time, Some(1.0));
        assert_ne!(dd.find(lines[3], &clock).expect("date").time, Some(1.0));
        let span = dd.find(lines[1], &clock).expect("date").span;
        assert_eq!(&lines[1][span.0..span.1], "14/Aug/2005:12:00:00 +0200");
        // A new date of the same byte classes after another address: the last captures,
        // shifted, are those a search gives.
        let a = r#"192.0.2.1 - - [14/Aug/2005:12:00:07 +0200] "GET / HTTP/1.1""#;
        let b = r#"2001:db8::77 - bob [14/Aug/2005:12:00:08 +0200] "GET /x HTTP/1.1""#;
        let found = dd.find(a, &clock);
        let c = dd.cache.as_ref().expect("cached");
        let t = &dd.templates[c.template];
        let (_, end) = t.matcher.find_at(b, 0).expect("match");
        let reused = c.same_captures(t, b, end).expect("reused");
        assert_eq!(
            reused.spans,
            t.matcher.search_at(b, 0).expect("captures").spans
        );
        // `60` takes another path than `07` (`6[0-1]`, not `[0-5]\d`).
        let sixty = a.replace(":07 ", ":60 ");
        let (_, sixty_end) = t.matcher.find_at(&sixty, 0).expect("match");
        assert!(c.same_captures(t, &sixty, sixty_end).is_none());
        let mut uncached = dd.clone();
        uncached.cache = None;
        assert_ne!(dd.find(b, &clock), found);
        assert_eq!(dd.find(b, &clock), uncached.find(b, &clock));
    }

    #[test]
    fn captures_are_reused_only_for_texts_that_take_the_same_paths() {
        let clock = test_clock();
        let mut dd = DateDetector::from_datepattern("{^LN-BEG}").expect("ok");
        // Each line, and whether the last line's captures are its own (the same length, the
        // byte after the date included, and at each byte the same transitions taken: a
        // seconds' first digit 4 or 5 is on the same side of `[0-5]`, `\d` and `6`).
        let lines = [
            ("Aug 14 11:59:47 x", false),
            ("Aug 14 11:59:48 x", true),
            ("Aug 14 11:59:49 x", true),
            ("Aug 14 11:59:50 x", true),
            ("Aug 14 11:59:51 x", true),
            // Longer: the fraction.
            ("Aug 14 11:59:51.5 x", false),
            ("Aug 14 11:59:51 x", false),
            // A tab after the date is not the space that may start ` %ExY`.
            ("Aug 14 11:59:51\tx", false),
            ("Aug 14 11:59:53 2005 x", false),
            ("Aug 14 11:59:54 2005 x", true),
            ("Aug 14 11:59:55 2005 x", true),
            // A year that goes on (`\b` fails after it) is no year: the date ends at the
            // seconds, followed by a space, on both lines.
            ("Aug 14 11:59:56 20050 x", false),
            ("Aug 14 11:59:56 2005x x", true),
            // The byte after the seconds continues the date (a year now): longer.
            ("Aug 14 11:59:57 2005 x", false),
            // `Aug  9` (a space) and `Aug 10` (a digit) take other paths.
            ("Aug  9 23:59:59 x", false),
            ("Aug 10 00:00:00 x", false),
            ("Aug 10 00:00:01 x", true),
            ("Aug 10 09:59:59 x", true),
            ("Aug 10 10:00:00 x", true),
            // `2` is not `[0-1]`... but `%k` is ` ?[0-2]?\d`: 1 and 2 take one path.
            ("Aug 10 20:00:00 x", true),
        ];
        for (line, reused) in lines {
            let same = dd.cache.as_ref().and_then(|c| {
                let t = &dd.templates[c.template];
                let (_, end) = t.matcher.find_at(line, 0)?;
                c.same_captures(t, line, end)
            });
            assert_eq!(same.is_some(), reused, "{line}");
            // What the detector finds is what one without the last date finds.
            let mut uncached = dd.clone();
            uncached.cache = None;
            let parsed = uncached.find(line, &clock);
            assert_eq!(dd.find(line, &clock), parsed, "{line}");
            assert!(dd.state() == uncached.state(), "{line}");
        }
    }

    #[test]
    fn month_names_read_as_lowercasing_does() {
        let reference = |name: &str, full: bool| {
            let b = name.to_lowercase();
            let i = MONTHS
                .iter()
                .position(|m| if full { b.starts_with(m) } else { *m == b });
            i.map(|i| i as i32 + 1)
        };
        for name in [
            "Mar",
            "MAR",
            "mAr",
            "March",
            "Ma",
            "Marc",
            "Jun",
            "june",
            "Dec",
            "Decx",
            "xyz",
            "M4r",
            "Mär",
            "",
            "Sep ",
            " Sep",
            "SEPTEMBER",
        ] {
            for full in [false, true] {
                assert_eq!(month_of(name, full), reference(name, full), "{name} {full}");
            }
        }
    }

    #[test]
    fn field_numbers_read_as_parse_does() {
        for text in [
            "0",
            "07",
            "123456789",
            "1234567890",
            " 7",
            "7 ",
            "+7",
            "-7",
            "",
            "x",
            "٣",
        ] {
            assert_eq!(number(text), text.trim().parse::<i32>().ok(), "{text:?}");
        }
    }

    #[test]
    fn zones_are_those_of_fail2bans_table_and_offsets() {
        // strptime.py's TZ_STR and FIXED_OFFSET_TZ_RE (hours 00-19, case-sensitive).
        let cases = [
            ("HKT", Some(480)),
            ("NPT", Some(345)),
            ("CET+0130", Some(150)),
            ("CEST-01", Some(60)),
            ("-10:45", Some(-645)),
            ("+19", Some(1140)),
            ("+20", None),
            ("+0100x", None),
            ("IST", None),
            ("Sun", None),
            ("cet", None),
        ];
        for (zone, want) in cases {
            assert_eq!(zone_offset_minutes(zone), want, "{zone}");
        }
    }

    #[test]
    fn custom_datepattern() {
        let clock = test_clock();
        let mut dd = DateDetector::from_datepattern(r"^\[%d/%b/%Y %H:%M:%S\]").expect("ok");
        let f = dd.find("[14/Aug/2005 12:00:00] x", &clock).expect("found");
        assert_eq!(iso(f.time.expect("t")), "2005-08-14T10:00:00Z");
        assert_eq!(f.span, (0, 22));
    }

    /// The leftmost-first captures of `re` on `text` (the whole text is the haystack).
    fn spans(re: &regex::Regex, text: &[u8]) -> Option<Vec<Option<(usize, usize)>>> {
        let text = std::str::from_utf8(text).ok()?;
        let caps = re.captures(text)?;
        Some(
            caps.iter()
                .map(|m| m.map(|m| (m.start(), m.end())))
                .collect(),
        )
    }

    #[test]
    fn bytes_that_take_the_same_paths_give_the_same_captures() {
        // Every single-byte change that `same_path_bytes` allows leaves the captures as they
        // were; the sets are not trivial (a digit may become most other digits).
        let cases = [
            (r"^(\d+?)(\d*)x", "123x"),
            (r"^(?:(a)|(ab))(c|bcd)?", "abcd"),
            (
                r"^(?:\W{0,2})?(\d{2}):(\d{2})(?:\.(\d+))?(?:\b|\W|$)",
                "12:34 x",
            ),
            (r"^([0-5]?\d|6[0-1]) (\w+)\b", "59 ab "),
            (r"^(?i)(mon|mar)(?:ch)? ( ?\d)", "mar  7"),
            (r"^(20[0-3]\d)(?P<s>[-/.])(\d\d)(?P<t>[-/.])", "2026/03/"),
        ];
        for (pattern, text) in cases {
            let nfa = thompson::Compiler::new()
                .syntax(syntax::Config::new().unicode(false).utf8(false))
                .build(pattern)
                .expect("nfa");
            let re = regex::Regex::new(pattern).expect("re");
            let text = text.as_bytes();
            let masks = same_path_bytes(&nfa, text, 0).expect("ascii");
            assert_eq!(masks.len(), text.len());
            let want = spans(&re, text);
            assert!(want.is_some(), "{pattern} matches");
            for (i, mask) in masks.iter().enumerate() {
                assert!(
                    mask >> text[i] & 1 == 1,
                    "{pattern}: a byte takes its own paths"
                );
                for c in (0..128u8).filter(|c| mask >> c & 1 == 1) {
                    let mut other = text.to_vec();
                    other[i] = c;
                    assert_eq!(spans(&re, &other), want, "{pattern}: {:?}", other);
                }
            }
        }
        let nfa = thompson::Compiler::new()
            .build(r"^(\d\d):(\d\d)")
            .expect("nfa");
        let masks = same_path_bytes(&nfa, b"12:34", 0).expect("ascii");
        assert_eq!(masks[0], byte_range(b'0', b'9'));
        assert_eq!(masks[2], 1 << b':');
        assert!(same_path_bytes(&nfa, "12:é".as_bytes(), 0).is_none());
    }

    /// Every template's counters: hits, matched, time of last use, distance.
    fn usage(dd: &DateDetector) -> Vec<(u64, bool, i64, usize)> {
        let u = dd.sel.usage.iter();
        u.map(|u| (u.hits, u.matched, u.last_used, u.distance))
            .collect()
    }

    #[test]
    fn separators_that_differ_leave_the_same_paths_to_the_full_search() {
        // `-` and `/` take the same paths through `[-/.]`, but `(?P=_sep)` wants them equal.
        let clock = test_clock();
        let mut dd = DateDetector::from_datepattern("{^LN-BEG}").expect("ok");
        for line in [
            "2005/08/14 11:59:47 [error] x",
            "2005/08/14 11:59:48 [error] x",
            "2005-08/14 11:59:49 [error] x",
            "2005/08/14 11:59:50 [error] x",
            "2005-08-14 11:59:51 [error] x",
            "2005-08-14 11:59:52 [error] x",
        ] {
            let mut uncached = dd.clone();
            uncached.cache = None;
            let found = dd.find(line, &clock);
            assert_eq!(found, uncached.find(line, &clock), "{line}");
            assert!(dd.state() == uncached.state(), "{line}");
            assert_eq!(usage(&dd), usage(&uncached), "{line}");
            let date = found.map(|f| &line[f.span.0..f.span.1]);
            if line.starts_with("2005-08/") {
                assert_ne!(date, Some("2005-08/14 11:59:49"), "{line}");
            } else {
                assert_eq!(date, Some(&line[..19]), "{line}");
            }
        }
    }

    #[test]
    fn a_day_of_log_lines_gets_the_dates_a_detector_without_the_last_date_gets() {
        // Lines of three layouts a few seconds apart across hour, day and month ends; each
        // date (from the last date's text, its captures reused, or parsed) is the one a
        // detector that forgot the last date finds, with the same template state. The clock
        // goes on a second a line (times of use), past the dates (the years before).
        type Layout = fn(&DateTime, usize) -> String;
        let layouts: [(&str, Layout); 3] = [
            ("{^LN-BEG}", |t, i| {
                format!("{} web1 sshd[{i}]: x", t.strftime("%b %e %H:%M:%S"))
            }),
            ("{^LN-BEG}", |t, i| {
                format!("{} [error] {i}#0: x", t.strftime("%Y/%m/%d %H:%M:%S"))
            }),
            (r"^[^\[]*\[({DATE})", |t, i| {
                let host = if i % 3 == 0 {
                    "2001:db8::7"
                } else {
                    "192.0.2.1"
                };
                format!(
                    r#"{host} - - [{} +0000] "GET /{i}""#,
                    t.strftime("%d/%b/%Y:%H:%M:%S")
                )
            }),
        ];
        for (pattern, layout) in layouts {
            let mut dd = DateDetector::from_datepattern(pattern).expect("ok");
            let mut t = jiff::civil::date(2005, 7, 31).at(22, 59, 0, 0);
            let (mut reused, mut repeated) = (0, false);
            for i in 0..4000 {
                let line = layout(&t, i);
                let clock = Clock::fixed(test_clock().zone, 1_124_013_600 + i as i64);
                let mut uncached = dd.clone();
                uncached.cache = None;
                if let Some(c) = &dd.cache {
                    let tmpl = &dd.templates[c.template];
                    if let Some((0, end)) = tmpl.matcher.find_at(&line, 0)
                        && let Some(caps) = c.same_captures(tmpl, &line, end)
                    {
                        let searched = tmpl.matcher.search_at(&line, 0).expect("caps");
                        assert_eq!(caps.spans, searched.spans, "{line}");
                        reused += 1;
                    }
                }
                assert_eq!(
                    dd.find(&line, &clock),
                    uncached.find(&line, &clock),
                    "{line}"
                );
                assert!(dd.state() == uncached.state(), "{line}");
                let (mut cached, mut parsed) = (usage(&dd), usage(&uncached));
                if repeated {
                    // The last date's text again: its time of use stays that of the line
                    // that parsed it (see `find`).
                    for u in cached.iter_mut().chain(parsed.iter_mut()) {
                        u.2 = 0;
                    }
                }
                assert_eq!(cached, parsed, "{line}");
                // 0 to 3 seconds on, then sometimes an hour or a day.
                let step = match i % 97 {
                    0 => 3600,
                    50 => 86_400 - 7,
                    _ => (i % 4) as i64,
                };
                repeated = step == 0;
                t = t
                    .checked_add(jiff::Span::new().seconds(step))
                    .expect("time");
            }
            // Most new seconds reuse the last captures.
            assert!(reused > 1000, "{pattern}: {reused}");
        }
    }
}
