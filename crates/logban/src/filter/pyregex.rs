//! Python `re` patterns (as fail2ban writes them) translated for Rust engines.
//!
//! Most patterns become plain [`regex`] patterns (linear time). Constructs that need
//! backtracking (lookaround that no rewrite removes, backreferences, conditionals, atomic groups)
//! are compiled with [`fancy_regex`] under a backtrack budget; a blown budget is "no match" plus
//! a warning. See the crate README for the list of constructs and how each is handled.
//!
//! Capture extraction stays fast on long matches too: the `regex` crate decides a match with its
//! DFAs in linear time, but resolves capture groups with its PikeVM (about 300 ns per byte) once
//! a match is too long for its bounded backtracker. Two things avoid that:
//! - a pattern ending in `(?P<content>.+)$` (fail2ban's prefregex `<F-CONTENT>`) is split: its
//!   head plus one `.` is matched with captures (a short span), and the content is the rest of
//!   the line, which is exactly what `.+(?m:$)` takes;
//! - a pattern `X Y` whose leading items `X` have no capture group (domino-smtp's
//!   `^…smtp: (?:[^\[]+ )*` before `<HOST>…`) is split: once the match `s..e` is known, a
//!   reverse lazy DFA of `Y` lists where `Y` can start and end at `e` (a handful of places), a
//!   reverse lazy DFA of `X` keeps those where `X` spans exactly from `s`; when one place `p`
//!   remains, every parse goes through it and `Y`'s captures are resolved on `p..e` only;
//! - other matches longer than [`LONG_SPAN`] run `regex-automata`'s bounded backtracker (same
//!   leftmost-first semantics, linear in states times span thanks to its visited set) compiled
//!   without Unicode classes when the haystack is ASCII, where both mean the same; this keeps
//!   its visited set small.
//!
//! Short ASCII matches, the common case, run that ASCII backtracker too, and avoid it where
//! they can: a search is kept by the byte classes of the text it ran on ([`Memo`]: two texts
//! whose bytes are pairwise of one class take the same steps), a content head's first group
//! ([`PrefixGroup`]) and the head before a long tail without named groups ([`TailSplit`]) are
//! found by reverse lazy DFAs where their ends are unique ([`Split`]).

use std::sync::{Arc, OnceLock};

use regex_automata::hybrid::dfa::{Cache as LazyCache, DFA as LazyDfa, OverlappingState};
use regex_automata::nfa::thompson::backtrack::{self, BoundedBacktracker};
use regex_automata::nfa::thompson::{self, NFA};
use regex_automata::util::pool::Pool;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind};
use regex_syntax::hir::{Hir, HirKind, Look};

/// Matches longer than this (bytes) get their captures from [`BoundedBacktracker`].
pub(crate) const LONG_SPAN: usize = 4096;
/// Largest visited set (bytes) the long-span backtracker may use: 64 MiB.
const VISITED_CAPACITY: usize = 64 << 20;

/// Texts up to this long (bytes) get the captures of a pattern anchored at the text's start
/// from the anchored search alone.
const ANCHORED_TEXT: usize = 128;

/// Size limit of a compiled pattern (as the screen's set of all failregexes has).
const SIZE_LIMIT: usize = 256 << 20;

/// Visited-set bytes of the backtracker for short ASCII texts (as `regex-automata`'s default).
const SHORT_VISITED_CAPACITY: usize = 256 << 10;
/// The tail of a translated `<F-CONTENT>.+</F-CONTENT>$`.
const CONTENT_TAIL: &str = "(?P<content>.+)(?m:$)";

/// Steps a backtracking pattern may take on one haystack before it is abandoned; a long
/// haystack gets [`BACKTRACK_STEPS_PER_BYTE`] steps a byte when that is more.
pub const BACKTRACK_LIMIT: usize = 100_000;

/// Steps a backtracking pattern may take per byte of a long haystack, so that a pattern that
/// backtracks a bounded number of times per byte (sshd's `(?:(?! from ).)*?` runs, a few steps
/// a byte) decides lines of megabytes, as fail2ban does, while a catastrophic pattern still
/// stops after time linear in the line.
pub const BACKTRACK_STEPS_PER_BYTE: usize = 32;

/// Budgets above [`BACKTRACK_LIMIT`] double up to this many times (a 100 MB line at most).
const SCALED_BUDGETS: usize = 16;

/// Why a pattern could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    /// The original (Python) pattern.
    pub(crate) pattern: String,
    /// What went wrong.
    pub reason: String,
}

/// Rewrites of whole lookaround idioms into linear-time equivalents. fail2ban's date templates
/// bound words with `(?=^|\b|\W)` and `(?=\b|\W|$)`: both mean "not between two word characters",
/// which regex's half boundaries express. fail2ban's IPv6 pattern ends with `(?<=:):`, and every
/// token before it ends with `:`, so the lookbehind always holds.
const IDIOMS: &[(&str, &str)] = &[
    (r"(?=^|\b|\W)", r"(?:\b{start-half}|\b{end-half})"),
    (r"(?=\b|\W|$)", r"(?:\b{start-half}|\b{end-half})"),
    (r"(?<=:):", ":"),
];

/// The result of translating one Python pattern.
#[derive(Debug, Clone)]
pub(crate) struct Translated {
    /// Pattern in `regex` syntax (also accepted by fancy-regex).
    pub(crate) pattern: String,
    /// Constructs that need a backtracking engine, empty when `regex` can run it.
    pub(crate) backtracking: Vec<&'static str>,
}

/// Translates Python `re` syntax into `regex` syntax.
pub(crate) fn translate(py: &str) -> Result<Translated, String> {
    let chars: Vec<char> = py.chars().collect();
    let mut out = String::with_capacity(py.len() + 16);
    let mut backtracking = Vec::new();
    let mut i = 0;
    // Whether the last emitted item can take a quantifier (Python treats `{` after nothing as literal).
    let mut quantifiable = false;
    while i < chars.len() {
        if let Some((idiom, rust)) = IDIOMS
            .iter()
            .find(|(idiom, _)| starts_with(&chars[i..], idiom))
        {
            out.push_str(rust);
            i += idiom.chars().count();
            quantifiable = false;
            continue;
        }
        let c = chars[i];
        match c {
            '\\' => {
                let Some(&next) = chars.get(i + 1) else {
                    return Err("pattern ends with a lone backslash".into());
                };
                i += 2;
                quantifiable = true;
                match next {
                    '1'..='9' => {
                        backtracking.push("backreference");
                        out.push('\\');
                        out.push(next);
                    }
                    '0' => out.push_str(r"\x00"),
                    '<' | '>' => out.push(next),
                    'Z' => out.push_str(r"\z"),
                    'a' => out.push_str(r"\x07"),
                    'b' | 'B' | 'A' => {
                        out.push('\\');
                        out.push(next);
                        quantifiable = false;
                        // regex's own half boundaries (`\b{start-half}`), produced by IDIOMS.
                        for half in ["{start-half}", "{end-half}"] {
                            if next == 'b' && starts_with(&chars[i..], half) {
                                out.push_str(half);
                                i += half.len();
                            }
                        }
                    }
                    c if c.is_ascii_alphanumeric() => {
                        out.push('\\');
                        out.push(c);
                    }
                    c => push_literal(&mut out, c),
                }
            }
            '[' => {
                i = translate_class(&chars, i, &mut out)?;
                quantifiable = true;
            }
            '(' => {
                i = translate_group_open(&chars, i, &mut out, &mut backtracking)?;
                quantifiable = false;
            }
            ')' => {
                out.push(')');
                i += 1;
                quantifiable = true;
            }
            '{' => match parse_repeat(&chars[i..]) {
                Some((rust, len)) if quantifiable => {
                    out.push_str(&rust);
                    i += len;
                    quantifiable = false;
                }
                _ => {
                    out.push_str(r"\{");
                    i += 1;
                    quantifiable = true;
                }
            },
            '}' => {
                out.push_str(r"\}");
                i += 1;
                quantifiable = true;
            }
            // Python's `$` (no MULTILINE) also matches before a final newline, and fail2ban's
            // buffers always end with one: `(?m:$)` is the same there.
            '$' => {
                out.push_str("(?m:$)");
                i += 1;
                quantifiable = false;
            }
            '*' | '+' | '?' => {
                out.push(c);
                i += 1;
                // `x*?` stays quantifiable-free; `{` after a quantifier is literal in Python too.
                quantifiable = false;
                if chars.get(i) == Some(&'+') {
                    backtracking.push("possessive quantifier");
                    out.push('+');
                    i += 1;
                }
            }
            '|' | '^' => {
                out.push(c);
                i += 1;
                quantifiable = false;
            }
            c => {
                if c == '.' {
                    out.push('.');
                } else {
                    push_literal(&mut out, c);
                }
                i += 1;
                quantifiable = true;
            }
        }
    }
    Ok(Translated {
        pattern: collapse_nested_repeats(&out),
        backtracking,
    })
}

/// Rewrites `(?:C+x)*` as `(?:C+x)?` when the class `C` contains `x`: both match the same
/// strings with the same preference (longest first), but the starred form is ambiguous, which
/// makes capture extraction (and Python) slow on long token runs, e.g. domino-smtp's
/// `(?:[^\[]+ )*` (GHSA-33wh-ccjc-p397).
fn collapse_nested_repeats(pattern: &str) -> String {
    static NESTED: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let Some(nested) = NESTED
        .get_or_init(|| {
            regex::Regex::new(
                r"\(\?:(\[\^?(?:\\.|[^\]\\\[])+\]|\.|\\S|\\w|\\d)\+(\\.|[^\\()\[\]|*+?{}.^$])\)\*",
            )
            .ok()
        })
        .as_ref()
    else {
        return pattern.to_string();
    };
    nested
        .replace_all(pattern, |caps: &regex::Captures<'_>| {
            let whole = &caps[0];
            let lit = caps[2].trim_start_matches('\\');
            let contained = regex::Regex::new(&format!(r"\A(?:{})\z", &caps[1]))
                .is_ok_and(|class| class.is_match(lit));
            if contained {
                format!("{}?", &whole[..whole.len() - 1])
            } else {
                whole.to_string()
            }
        })
        .into_owned()
}

fn starts_with(chars: &[char], s: &str) -> bool {
    s.chars().enumerate().all(|(n, c)| chars.get(n) == Some(&c))
}

fn push_literal(out: &mut String, c: char) {
    if regex_syntax_meta(c) {
        out.push('\\');
    }
    out.push(c);
}

fn regex_syntax_meta(c: char) -> bool {
    matches!(
        c,
        '\\' | '.'
            | '+'
            | '*'
            | '?'
            | '('
            | ')'
            | '|'
            | '['
            | ']'
            | '{'
            | '}'
            | '^'
            | '$'
            | '#'
            | '&'
            | '-'
            | '~'
    )
}

/// Parses Python's `{m}`, `{m,}`, `{,n}`, `{m,n}` into regex syntax and its length; `None`
/// when the brace is a literal (as Python treats it).
fn parse_repeat(chars: &[char]) -> Option<(String, usize)> {
    let close = chars.iter().position(|&c| c == '}')?;
    let body: String = chars[1..close].iter().collect();
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let rust = match body.split_once(',') {
        None if !body.is_empty() && digits(&body) => format!("{{{body}}}"),
        Some((a, b)) if digits(a) && digits(b) => {
            let min = if a.is_empty() { "0" } else { a };
            format!("{{{min},{b}}}")
        }
        _ => return None,
    };
    Some((rust, close + 1))
}

fn translate_group_open(
    chars: &[char],
    i: usize,
    out: &mut String,
    backtracking: &mut Vec<&'static str>,
) -> Result<usize, String> {
    if chars.get(i + 1) != Some(&'?') {
        out.push('(');
        return Ok(i + 1);
    }
    let rest = &chars[i + 2..];
    let first = rest.first().copied();
    match first {
        Some('P') => match rest.get(1) {
            Some('<') => {
                let end = rest
                    .iter()
                    .position(|&c| c == '>')
                    .ok_or("unterminated group name")?;
                let name: String = rest[2..end].iter().collect();
                out.push_str("(?P<");
                out.push_str(&name);
                out.push('>');
                Ok(i + 2 + end + 1)
            }
            Some('=') => {
                let end = rest
                    .iter()
                    .position(|&c| c == ')')
                    .ok_or("unterminated backreference")?;
                let name: String = rest[2..end].iter().collect();
                backtracking.push("backreference");
                out.push_str("\\k<");
                out.push_str(&name);
                out.push('>');
                Ok(i + 2 + end + 1)
            }
            _ => Err("unknown (?P extension".into()),
        },
        Some(':') => {
            out.push_str("(?:");
            Ok(i + 3)
        }
        Some('#') => {
            let end = rest
                .iter()
                .position(|&c| c == ')')
                .ok_or("unterminated comment")?;
            Ok(i + 2 + end + 1)
        }
        Some('=') | Some('!') => {
            backtracking.push("lookahead");
            out.push_str("(?");
            out.push(first.unwrap_or('='));
            Ok(i + 3)
        }
        Some('<') if matches!(rest.get(1), Some('=') | Some('!')) => {
            backtracking.push("lookbehind");
            out.push_str("(?<");
            out.push(rest[1]);
            Ok(i + 4)
        }
        Some('<') => {
            // Python 3.12+ (?<name>...) named group, same in regex.
            out.push_str("(?<");
            Ok(i + 3)
        }
        Some('>') => {
            backtracking.push("atomic group");
            out.push_str("(?>");
            Ok(i + 3)
        }
        Some('(') => {
            // Python's `(?(name)yes|no)`; fancy-regex reads a bare name as a condition regex,
            // so group references become `(?(<name>)` / `(?(1)`.
            backtracking.push("conditional");
            let end = rest
                .iter()
                .position(|&c| c == ')')
                .ok_or("unterminated conditional")?;
            let cond: String = rest[1..end].iter().collect();
            if cond.chars().all(|c| c.is_ascii_digit()) {
                out.push_str(&format!("(?({cond})"));
            } else {
                out.push_str(&format!("(?(<{cond}>)"));
            }
            Ok(i + 2 + end + 1)
        }
        _ => {
            // Inline flags: (?aiLmsux) or (?flags:...) or (?flags-flags:...).
            let end = rest
                .iter()
                .position(|&c| c == ')' || c == ':')
                .ok_or("unterminated inline flags")?;
            let flags: String = rest[..end]
                .iter()
                .filter(|c| matches!(c, 'i' | 'm' | 's' | 'x' | '-'))
                .collect();
            let scoped = rest[end] == ':';
            let flags = flags.trim_end_matches('-');
            match (flags.is_empty(), scoped) {
                (true, true) => out.push_str("(?:"),
                (true, false) => {}
                (false, true) => {
                    out.push_str("(?");
                    out.push_str(flags);
                    out.push(':');
                }
                (false, false) => {
                    out.push_str("(?");
                    out.push_str(flags);
                    out.push(')');
                }
            }
            Ok(i + 2 + end + 1)
        }
    }
}

/// Translates a character class starting at `chars[start] == '['`; returns the index after it.
fn translate_class(chars: &[char], start: usize, out: &mut String) -> Result<usize, String> {
    let mut i = start + 1;
    out.push('[');
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    let mut first = true;
    // Whether the previous item was a single character (so a following `-` makes a range).
    let mut prev_single = false;
    let mut pending_range = false;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err("unterminated character class".into());
        };
        if c == ']' && !first {
            if pending_range {
                out.push_str(r"\-");
            }
            out.push(']');
            return Ok(i + 1);
        }
        first = false;
        let (item, single, len): (String, bool, usize) = match c {
            '\\' => {
                let Some(&next) = chars.get(i + 1) else {
                    return Err("unterminated character class".into());
                };
                match next {
                    'd' | 'D' | 'w' | 'W' | 's' | 'S' => (format!("\\{next}"), false, 2),
                    'b' => (r"\x08".into(), true, 2),
                    'n' | 't' | 'r' | 'f' | 'v' => (format!("\\{next}"), true, 2),
                    'a' => (r"\x07".into(), true, 2),
                    '0' => (r"\x00".into(), true, 2),
                    'x' | 'u' | 'U' => {
                        let digits = match next {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = chars[i + 2..].iter().take(digits).collect();
                        (format!("\\x{{{hex}}}"), true, 2 + digits)
                    }
                    c if c.is_ascii_alphanumeric() => {
                        return Err(format!("unsupported escape \\{c} in a class"));
                    }
                    c => (class_literal(c), true, 2),
                }
            }
            '-' if prev_single && !pending_range && chars.get(i + 1) != Some(&']') => {
                pending_range = true;
                i += 1;
                out.push('-');
                continue;
            }
            c => (class_literal(c), true, 1),
        };
        i += len;
        if pending_range {
            // Completed range `a-b`: the end is no start of another range.
            out.push_str(&item);
            pending_range = false;
            prev_single = false;
            if !single {
                return Err("bad range in character class".into());
            }
            continue;
        }
        out.push_str(&item);
        prev_single = single;
    }
}

fn class_literal(c: char) -> String {
    match c {
        '[' | ']' | '\\' | '-' | '&' | '~' | '^' => format!("\\{c}"),
        c => c.to_string(),
    }
}

thread_local! {
    /// How often a backtracking pattern gave up on this thread (its budget was blown).
    static GAVE_UP: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How often a backtracking pattern has given up on the current thread so far: a filter
/// compares it before and after a line to know that the line was not fully decided.
pub(crate) fn gave_up_count() -> u64 {
    GAVE_UP.with(std::cell::Cell::get)
}

fn gave_up(pattern: &str, error: &dyn std::fmt::Display) {
    GAVE_UP.with(|n| n.set(n.get() + 1));
    tracing::warn!(%pattern, %error, "regex gave up (backtrack budget); counted as no match");
}

/// A compiled pattern: linear-time when possible, else backtracking with a budget.
#[derive(Debug)]
pub(crate) struct Matcher {
    engine: Engine,
    names: Names,
    source: Arc<str>,
}

impl Clone for Matcher {
    /// A clone has names of its own: clones go to other threads (a filter for each worker),
    /// and every match takes the counts of the names it carries up and down, which two cores
    /// sharing them would pass back and forth between their caches.
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
            names: self
                .names
                .iter()
                .map(|n| n.as_deref().map(Arc::from))
                .collect(),
            source: self.source.clone(),
        }
    }
}

#[derive(Debug, Clone)]
enum Engine {
    Linear(Box<Linear>),
    Backtracking(Box<Backtracking>),
}

/// A backtracking pattern with its budget, and the same pattern with doubled budgets for long
/// haystacks, compiled on first use.
#[derive(Debug, Clone)]
struct Backtracking {
    re: fancy_regex::Regex,
    scaled: Arc<[OnceLock<Option<fancy_regex::Regex>>; SCALED_BUDGETS]>,
}

impl Backtracking {
    /// The pattern with a budget of at least [`BACKTRACK_STEPS_PER_BYTE`] steps a byte of a
    /// haystack of `len` bytes, when that is more than [`BACKTRACK_LIMIT`].
    fn scaled(&self, len: usize) -> Option<&fancy_regex::Regex> {
        let want = len.saturating_mul(BACKTRACK_STEPS_PER_BYTE);
        let shift = (1..=SCALED_BUDGETS).find(|&k| BACKTRACK_LIMIT << k >= want)?;
        self.scaled[shift - 1]
            .get_or_init(|| {
                fancy_regex::RegexBuilder::new(self.re.as_str())
                    .backtrack_limit(BACKTRACK_LIMIT << shift)
                    .build()
                    .ok()
            })
            .as_ref()
    }

    /// Runs `search` with the base budget, and again with a budget scaled to `hay_len` when
    /// the base budget ran out on a long haystack.
    fn run<T>(
        &self,
        hay_len: usize,
        search: impl Fn(&fancy_regex::Regex) -> fancy_regex::Result<T>,
    ) -> fancy_regex::Result<T> {
        match search(&self.re) {
            Err(fancy_regex::Error::RuntimeError(
                fancy_regex::RuntimeError::BacktrackLimitExceeded,
            )) if hay_len.saturating_mul(BACKTRACK_STEPS_PER_BYTE) > BACKTRACK_LIMIT => {
                match self.scaled(hay_len) {
                    Some(re) => search(re),
                    None => search(&self.re),
                }
            }
            found => found,
        }
    }
}

/// Makes the caches of a [`Split`]'s two DFAs (boxed, so that a pool of them has a nameable
/// type).
type MakeSplitCaches =
    Box<dyn Fn() -> SplitState + Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>;

/// Where a match of `X Y` known to span `start..end` splits between `X` and `Y`: a reverse lazy
/// DFA of `Y` lists where `Y` can start and end at `end` (a handful of places), a reverse lazy
/// DFA of `X` keeps those where `X` spans exactly from `start`. When one place remains, every
/// parse of the match goes through it.
struct Split {
    /// `X`, reversed, all matches.
    x_rev: LazyDfa,
    /// `Y`, reversed, all matches.
    y_rev: LazyDfa,
    /// The text every match of `X` ends with, and every match of `Y` starts with (their
    /// last and first literal items): a split is right after the one, before the other, so
    /// where one of them occurs once in the span, that is the split, found without the DFAs.
    x_suffix: Option<memchr::memmem::Finder<'static>>,
    y_prefix: Option<memchr::memmem::Finder<'static>>,
    caches: Pool<SplitState, MakeSplitCaches>,
}

/// The caches of a [`Split`]'s two DFAs, and its splits by the byte classes of the span (two
/// spans whose bytes are pairwise of one class of both DFAs split at the same offset: no
/// transition of either tells them apart).
type SplitState = (LazyCache, LazyCache, Memo<Option<usize>>);

impl std::fmt::Debug for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Split").finish_non_exhaustive()
    }
}

/// The longest span a [`Split`] keeps its result for.
const SPLIT_MEMO_SPAN: usize = 64;

/// At most this many places where `Y` may start are checked against `X`.
const MAX_SPLITS: usize = 16;

/// A pool of caches for a [`Split`]'s two DFAs.
fn split_states(x_rev: &LazyDfa, y_rev: &LazyDfa) -> Pool<SplitState, MakeSplitCaches> {
    let (x_rev, y_rev) = (x_rev.clone(), y_rev.clone());
    let make: MakeSplitCaches = Box::new(move || {
        (
            LazyCache::new(&x_rev),
            LazyCache::new(&y_rev),
            Memo::default(),
        )
    });
    Pool::new(make)
}

/// A clone has a pool of caches of its own (see [`Linear`]'s clones).
impl Clone for Split {
    fn clone(&self) -> Self {
        Self {
            caches: split_states(&self.x_rev, &self.y_rev),
            x_rev: self.x_rev.clone(),
            y_rev: self.y_rev.clone(),
            x_suffix: self.x_suffix.clone(),
            y_prefix: self.y_prefix.clone(),
        }
    }
}

impl Split {
    fn new(x: &Hir, y: &Hir) -> Option<Self> {
        let reverse = |h: &Hir| -> Option<LazyDfa> {
            let nfa: NFA = thompson::Compiler::new()
                .configure(
                    thompson::Config::new()
                        .reverse(true)
                        .which_captures(thompson::WhichCaptures::None),
                )
                .build_from_hir(h)
                .ok()?;
            LazyDfa::builder()
                .configure(LazyDfa::config().match_kind(MatchKind::All))
                .build_from_nfa(nfa)
                .ok()
        };
        let (x_rev, y_rev) = (reverse(x)?, reverse(y)?);
        let literal = |h: Option<&Hir>| match h.map(Hir::kind) {
            Some(HirKind::Literal(lit)) if !lit.0.is_empty() => {
                Some(memchr::memmem::Finder::new(&lit.0).into_owned())
            }
            _ => None,
        };
        let (x_suffix, y_prefix) = match (x.kind(), y.kind()) {
            (HirKind::Concat(xs), HirKind::Concat(ys)) => (literal(xs.last()), literal(ys.first())),
            (HirKind::Concat(xs), _) => (literal(xs.last()), literal(Some(y))),
            (_, HirKind::Concat(ys)) => (literal(Some(x)), literal(ys.first())),
            _ => (literal(Some(x)), literal(Some(y))),
        };
        Some(Self {
            caches: split_states(&x_rev, &y_rev),
            x_rev,
            y_rev,
            x_suffix,
            y_prefix,
        })
    }

    /// The split where `X`'s last literal or `Y`'s first occurs exactly once in the span
    /// `start..end` of a match of `X Y` (every split is at such an occurrence, and there is
    /// one).
    fn by_literal(&self, hay: &[u8], start: usize, end: usize) -> Option<usize> {
        // Places `at` in `lo..=hi` where `lit` starts, overlapping ones included: `Some` of
        // the place when there is exactly one.
        let once = |lit: &memchr::memmem::Finder<'_>| -> Option<usize> {
            let span = hay.get(start..end)?;
            let first = lit.find(span)?;
            // Overlapping places: look again one byte on.
            let second = span.get(first + 1..).and_then(|rest| lit.find(rest));
            second.is_none().then_some(start + first)
        };
        if let Some(p) = self.y_prefix.as_ref().and_then(once) {
            return Some(p);
        }
        let lit = self.x_suffix.as_ref()?;
        Some(once(lit)? + lit.needle().len())
    }

    /// The one place where every parse of `X Y` over `start..end` splits, if there is one.
    fn unique(&self, hay: &str, start: usize, end: usize) -> Option<usize> {
        if let Some(p) = self.by_literal(hay.as_bytes(), start, end) {
            return Some(p);
        }
        let mut caches = self.caches.get();
        let (x_cache, y_cache, memo) = &mut *caches;
        let classes = [self.x_rev.byte_classes(), self.y_rev.byte_classes()];
        // Short spans (a prefregex's prefix) repeat their classes; long ones (a tail of any
        // text) seldom do, and their keys would cost more than the searches.
        let memo_in_use =
            end - start <= SPLIT_MEMO_SPAN && memo.start_key(hay.as_bytes(), start, end, &classes);
        if memo_in_use && let Some(&split) = memo.lookup() {
            return split.map(|p| start + p);
        }
        let split = self.unique_by_search(hay, start, end, x_cache, y_cache);
        if memo_in_use {
            memo.keep(split.map(|p| p - start));
        }
        split
    }

    /// [`unique`](Self::unique) by the two DFAs' searches.
    fn unique_by_search(
        &self,
        hay: &str,
        start: usize,
        end: usize,
        x_cache: &mut LazyCache,
        y_cache: &mut LazyCache,
    ) -> Option<usize> {
        let span = Input::new(hay).span(start..end).anchored(Anchored::Yes);
        // Where `Y` can start, `Y` ending at `end`.
        let mut state = OverlappingState::start();
        let mut starts = [0; MAX_SPLITS];
        let mut found = 0;
        loop {
            self.y_rev
                .try_search_overlapping_rev(y_cache, &span, &mut state)
                .ok()?;
            match state.get_match() {
                Some(m) if found < MAX_SPLITS => {
                    starts[found] = m.offset();
                    found += 1;
                }
                Some(_) => return None,
                None => break,
            }
        }
        // Keep those where `X` spans exactly `start..p`: its leftmost start (all matches,
        // anchored at `p`) is `start`.
        let mut split = None;
        for &p in &starts[..found] {
            let input = Input::new(hay).span(start..p).anchored(Anchored::Yes);
            let x = self.x_rev.try_search_rev(x_cache, &input).ok()?;
            if x.is_some_and(|m| m.offset() == start) {
                if split.is_some_and(|q| q != p) {
                    return None;
                }
                split = Some(p);
            }
        }
        split
    }
}

/// A pattern split into a group-free head `X` and the rest `Y` (see the module docs).
#[derive(Debug)]
struct GroupFreeHead {
    split: Split,
    /// `Y` with its capture groups (numbered as in the whole pattern), run on `Y`'s short span.
    tail: BoundedBacktracker,
    tail_states: Pool<SearchState, MakeCache>,
}

/// A clone has pools of its own (see [`Linear`]'s clones).
impl Clone for GroupFreeHead {
    fn clone(&self) -> Self {
        Self {
            split: self.split.clone(),
            tail_states: search_states(&self.tail),
            tail: self.tail.clone(),
        }
    }
}

impl GroupFreeHead {
    fn new(pattern: &str, multiline: bool) -> Option<Self> {
        let config = syntax::Config::new().multi_line(multiline);
        let hir = syntax::parse_with(pattern, &config).ok()?;
        let HirKind::Concat(items) = hir.kind() else {
            return None;
        };
        let k = items
            .iter()
            .position(|h| h.properties().explicit_captures_len() > 0)?;
        if k == 0 {
            return None;
        }
        let head = Hir::concat(items[..k].to_vec());
        let tail = Hir::concat(items[k..].to_vec());
        let tail_bt = BoundedBacktracker::builder()
            .build_from_nfa(thompson::Compiler::new().build_from_hir(&tail).ok()?)
            .ok()?;
        Some(Self {
            split: Split::new(&head, &tail)?,
            tail_states: search_states(&tail_bt),
            tail: tail_bt,
        })
    }

    /// Captures of the match known to span `start..end`, if the split point is unique.
    fn captures(&self, hay: &str, start: usize, end: usize) -> Option<Spans> {
        let p = self.split.unique(hay, start, end)?;
        let mut state = self.tail_states.get();
        let (cache, caps, _) = &mut *state;
        self.tail
            .try_search(
                cache,
                &Input::new(hay).span(p..end).anchored(Anchored::Yes),
                caps,
            )
            .ok()?;
        if caps.get_match().map(|m| m.range()) != Some(p..end) {
            return None;
        }
        let mut spans: Vec<_> = (0..caps.group_len())
            .map(|i| caps.get_group(i).map(|s| (s.start, s.end)))
            .collect();
        *spans.first_mut()? = Some((start, end));
        Some(spans)
    }
}

/// A content head whose one group comes first and holds no other: `^(?P<g>X)Y` (sshd's
/// `^<F-MLFID>…</F-MLFID>%(__pref)s`). Once the head's DFA has found where the content starts,
/// the group ends where [`Split`] says `X` and `Y` meet: no capture search.
#[derive(Debug, Clone)]
struct PrefixGroup {
    split: Split,
}

impl PrefixGroup {
    /// For `head`, the content head without its last `.` (see [`Linear::content_head`]).
    fn new(head: &str, multiline: bool) -> Option<Self> {
        let config = syntax::Config::new().multi_line(multiline);
        let hir = syntax::parse_with(head, &config).ok()?;
        if hir.properties().explicit_captures_len() != 1 {
            return None;
        }
        let HirKind::Concat(items) = hir.kind() else {
            return None;
        };
        let k = items
            .iter()
            .position(|h| h.properties().explicit_captures_len() > 0)?;
        let HirKind::Capture(group) = items[k].kind() else {
            return None;
        };
        // The group's start is the match's: nothing before it may take text (`^` only).
        if items[..k]
            .iter()
            .any(|h| h.properties().maximum_len() != Some(0))
        {
            return None;
        }
        let mut x = items[..k].to_vec();
        x.push((*group.sub).clone());
        Some(Self {
            split: Split::new(&Hir::concat(x), &Hir::concat(items[k + 1..].to_vec()))?,
        })
    }

    /// The spans of `head.` (the whole match, the group) from `start`, `head` being the
    /// content head this was built for.
    fn captures(&self, head: &regex::Regex, hay: &str, start: usize) -> Option<Spans> {
        let m = head.find_at(hay, start)?;
        self.captures_of_head(hay, m.start(), m.end())
    }

    /// [`captures`](Self::captures) for a match of `head.` known to span `start..end`.
    fn captures_of_head(&self, hay: &str, start: usize, end: usize) -> Option<Spans> {
        let content_start = end - hay[..end].chars().next_back()?.len_utf8();
        let group_end = self.split.unique(hay, start, content_start)?;
        // Room for the content's span too (see `Linear::with_content`).
        let mut spans = Vec::with_capacity(3);
        spans.extend([Some((start, end)), Some((start, group_end))]);
        Some(spans)
    }
}

/// Capture spans by group index (`None`: the group did not take part).
type Spans = Vec<Option<(usize, usize)>>;

/// A backtracker's cache and captures, reused from search to search.
type SearchState = (
    backtrack::Cache,
    regex_automata::util::captures::Captures,
    Memo<Option<Spans>>,
);

/// A pool of [`SearchState`]s for `bt`.
fn search_states(bt: &BoundedBacktracker) -> Pool<SearchState, MakeCache> {
    let bt = bt.clone();
    let make: MakeCache =
        Box::new(move || (bt.create_cache(), bt.create_captures(), Memo::default()));
    Pool::new(make)
}

/// Search results by the byte classes of the text searched (see [`AsciiCaptures::search`]).
#[derive(Debug)]
struct Memo<V> {
    found: std::collections::HashMap<Box<[u8]>, V, foldhash::fast::RandomState>,
    /// The key being built.
    key: Vec<u8>,
    /// Searches since the memo was last weighed, and how many it answered.
    searches: u32,
    hits: u32,
    /// Set when too few searches were answered: the memo rests for [`MEMO_REST`] searches.
    resting: bool,
}

impl<V> Default for Memo<V> {
    fn default() -> Self {
        Self {
            found: Default::default(),
            key: Vec::new(),
            searches: 0,
            hits: 0,
            resting: false,
        }
    }
}

impl<V> Memo<V> {
    /// Starts the key of a search over `start..end` of `bytes`: whether the span touches the
    /// text's ends, then the class of each byte from the one before the span to the one after
    /// (where look-around sees them) by each of `classes`. `false` when the memo rests.
    fn start_key(
        &mut self,
        bytes: &[u8],
        start: usize,
        end: usize,
        classes: &[&regex_automata::util::alphabet::ByteClasses],
    ) -> bool {
        if !self.in_use() {
            return false;
        }
        self.key.clear();
        self.key
            .push(u8::from(start == 0) | (u8::from(end == bytes.len()) << 1));
        let around = &bytes[start.saturating_sub(1)..bytes.len().min(end + 1)];
        for &b in around {
            self.key.extend(classes.iter().map(|c| c.get(b)));
        }
        true
    }

    /// The result kept for the key just built.
    fn lookup(&mut self) -> Option<&V> {
        let found = self.found.get(self.key.as_slice());
        self.hits += u32::from(found.is_some());
        found
    }

    /// Keeps `value` for the key just built.
    fn keep(&mut self, value: V) {
        if self.found.len() >= MEMO_ENTRIES {
            self.found.clear();
        }
        self.found.insert(self.key.as_slice().into(), value);
    }

    /// Counts a search; true when the memo is to be used for it.
    fn in_use(&mut self) -> bool {
        self.searches += 1;
        if self.resting {
            if self.searches >= MEMO_REST {
                // Tried again with what it kept: texts seen before answer at once.
                (self.resting, self.searches, self.hits) = (false, 0, 0);
            }
            return false;
        }
        if self.searches >= MEMO_TRIAL {
            // Texts that seldom repeat their classes (access log lines with user agents):
            // building keys would cost more than the searches it saves.
            self.resting = self.hits < self.searches / 4;
            self.searches = 0;
            self.hits = 0;
        }
        !self.resting
    }
}

/// Results a [`Memo`] keeps before it starts over (a few MiB at most).
const MEMO_ENTRIES: usize = 4096;
/// Searches over which a [`Memo`] must answer a quarter to stay in use.
const MEMO_TRIAL: u32 = 4096;
/// Searches a [`Memo`] that answered too few sits out before it is tried again.
const MEMO_REST: u32 = 65_536;

/// Makes a [`SearchState`] (boxed, so that a pool of them has a nameable type).
type MakeCache =
    Box<dyn Fn() -> SearchState + Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>;

/// A pattern's ASCII-only backtracker with a pool of caches, for short ASCII haystacks: on
/// them the ASCII classes mean what the Unicode ones do, with far fewer NFA states, so the
/// visited set a search clears (states × bytes) is far smaller than `regex`'s own.
struct AsciiCaptures {
    bt: BoundedBacktracker,
    /// The pattern's capture groups, the whole match included.
    groups: usize,
    caches: Pool<SearchState, MakeCache>,
    /// Every match starts at the text's start (`^` without multi-line): the search itself is
    /// anchored, and needs no DFA pass to find the match first.
    starts_at_text_start: bool,
    /// Where the pattern ends in a long part without named groups.
    tail: Option<Box<TailSplit>>,
}

/// A pattern `A B Y` whose first items `A` and last items `Y` hold no named group, one of
/// them matching at least [`TAIL_SPLIT_LEN`] bytes (nginx-botsearch's
/// `^<HOST> \- \S+ \[\] "…" 404 .+$`, nginx-limit-req's `^\s*\[[a-z]+\] … client: <HOST>,`):
/// once a DFA has found a match, [`Split`]s find where `Y` (and `B`) start, and only `A B`
/// (or `B`) is searched with captures. Groups in `A` and `Y` are unnamed, which fail2ban never
/// reads: they are reported as not taking part. `B` alone is searched where a literal splits
/// it from `A`, or while the memo of `A B` rests: where `A B` repeats the classes of its text,
/// a memo's answer costs less than the split by DFAs.
#[derive(Clone)]
struct TailSplit {
    /// Between `A B` and `Y`, when `Y` is long enough to be worth it (else `Y` is in `head`).
    split: Option<Split>,
    /// `A B` (and `Y` without `split`).
    head: AsciiCaptures,
    /// Between `A` and `B`, and `B` (its groups numbered as in the whole pattern), when `A` is
    /// long enough to be worth it.
    lead: Option<(Split, AsciiCaptures)>,
}

/// See [`TailSplit`].
const TAIL_SPLIT_LEN: usize = 16;

impl TailSplit {
    fn new(hir: &Hir) -> Option<Self> {
        let HirKind::Concat(items) = hir.kind() else {
            return None;
        };
        let named = |h: &Hir| !capture_names(h).iter().all(Option::is_none);
        let long = |h: &Hir| h.properties().minimum_len().unwrap_or(0) >= TAIL_SPLIT_LEN;
        let k = items.iter().rposition(named)? + 1;
        let j = items.iter().position(named)?;
        let (lead, tail) = (
            Hir::concat(items[..j].to_vec()),
            Hir::concat(items[k..].to_vec()),
        );
        let head = Hir::concat(items[..k].to_vec());
        let split = match long(&tail) {
            true => Some(Split::new(&head, &tail)?),
            false => None,
        };
        // `B` runs up to the split, or to the end without one.
        let body = match split {
            Some(_) => Hir::concat(items[j..k].to_vec()),
            None => Hir::concat(items[j..].to_vec()),
        };
        let lead = match long(&lead) {
            true => Some((Split::new(&lead, &body)?, AsciiCaptures::from_hir(&body)?)),
            false => None,
        };
        if split.is_none() && lead.is_none() {
            return None;
        }
        let head = match &split {
            Some(_) => head,
            None => Hir::concat(vec![head, tail]),
        };
        Some(Self {
            split,
            head: AsciiCaptures::from_hir(&head)?,
            lead,
        })
    }
}

impl std::fmt::Debug for AsciiCaptures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsciiCaptures").finish_non_exhaustive()
    }
}

/// A clone has pools of its own (see [`Linear`]'s clones).
impl Clone for AsciiCaptures {
    fn clone(&self) -> Self {
        Self {
            bt: self.bt.clone(),
            groups: self.groups,
            caches: search_states(&self.bt),
            starts_at_text_start: self.starts_at_text_start,
            tail: self.tail.clone(),
        }
    }
}

impl AsciiCaptures {
    fn new(pattern: &str, multiline: bool) -> Option<Self> {
        let config = syntax::Config::new()
            .multi_line(multiline)
            .unicode(false)
            .utf8(false);
        let hir = syntax::parse_with(pattern, &config).ok()?;
        let mut captures = Self::from_hir(&hir)?;
        captures.tail = TailSplit::new(&hir).map(Box::new);
        Some(captures)
    }

    /// The backtracker of an ASCII-mode `hir`.
    fn from_hir(hir: &Hir) -> Option<Self> {
        let nfa = thompson::Compiler::new().build_from_hir(hir).ok()?;
        let bt = BoundedBacktracker::builder()
            // `regex`'s own default: a search whose visited set would be larger (many states
            // times a long span) is left to `regex` (its PikeVM), cheaper there.
            .configure(backtrack::Config::new().visited_capacity(SHORT_VISITED_CAPACITY))
            .build_from_nfa(nfa)
            .ok()?;
        Some(Self {
            caches: search_states(&bt),
            groups: bt
                .get_nfa()
                .group_info()
                .group_len(regex_automata::PatternID::ZERO),
            bt,
            starts_at_text_start: hir.properties().look_set_prefix().contains(Look::Start),
            tail: None,
        })
    }

    /// Captures of the leftmost-first match starting at `start` within `start..end` of an
    /// ASCII `hay`; `Err` when the span is too long for this engine.
    ///
    /// No transition and no look-around of the backtracker's NFA tells two bytes of one of its
    /// byte classes apart, so two texts of one length whose bytes are pairwise of one class
    /// (the byte before and after the span included, where the look-around sees them) take
    /// the same steps and give the same spans, relative to `start`. Results are kept by that
    /// class sequence: a flood's lines differ in a few digits and letters, most of which the
    /// pattern does not tell apart.
    fn search(&self, hay: &str, start: usize, end: usize) -> Result<Option<Spans>, ()> {
        self.search_with(hay, start, end, false).unwrap_or(Err(()))
    }

    /// [`search`](Self::search) while the memo is in use; `None` while it rests.
    fn search_memoized(
        &self,
        hay: &str,
        start: usize,
        end: usize,
    ) -> Option<Result<Option<Spans>, ()>> {
        self.search_with(hay, start, end, true)
    }

    /// [`search`](Self::search), or `None` when `only_memoized` and the memo rests.
    fn search_with(
        &self,
        hay: &str,
        start: usize,
        end: usize,
        only_memoized: bool,
    ) -> Option<Result<Option<Spans>, ()>> {
        if end - start > self.bt.max_haystack_len() {
            return Some(Err(()));
        }
        let mut state = self.caches.get();
        let (cache, caps, memo) = &mut *state;
        let classes = self.bt.get_nfa().byte_classes();
        let memo_in_use = memo.start_key(hay.as_bytes(), start, end, &[classes]);
        if only_memoized && !memo_in_use {
            return None;
        }
        // Kept relative to the span's start.
        let rebase = |kept: &Option<Spans>| {
            kept.as_ref().map(|spans| {
                spans
                    .iter()
                    .map(|g| g.map(|(s, e)| (s + start, e + start)))
                    .collect()
            })
        };
        if memo_in_use && let Some(found) = memo.lookup() {
            return Some(Ok(rebase(found)));
        }
        let input = Input::new(hay).span(start..end).anchored(Anchored::Yes);
        if self.bt.try_search(cache, &input, caps).is_err() {
            return Some(Err(()));
        }
        let found: Option<Spans> = caps.is_match().then(|| {
            (0..caps.group_len())
                .map(|i| caps.get_group(i).map(|s| (s.start, s.end)))
                .collect()
        });
        if !memo_in_use {
            return Some(Ok(found));
        }
        let kept: Option<Spans> = found.as_ref().map(|spans| {
            spans
                .iter()
                .map(|g| g.map(|(s, e)| (s - start, e - start)))
                .collect()
        });
        memo.keep(kept);
        Some(Ok(found))
    }

    /// Captures of the leftmost-first match from `start` of an ASCII `hay`, for a pattern whose
    /// matches start at the text's start; `Err` when the text is too long for this engine.
    fn captures_anchored(&self, hay: &str, start: usize) -> Result<Option<Spans>, ()> {
        self.search(hay, start, hay.len())
    }

    /// Captures (named groups and the whole match, see [`TailSplit`]) of the match known to
    /// span `start..end` of an ASCII `hay`, when the pattern ends in a long part without named
    /// groups and the split is unique.
    fn captures_split(&self, hay: &str, start: usize, end: usize) -> Option<Spans> {
        let tail = self.tail.as_ref()?;
        let split = match &tail.split {
            Some(s) => s.unique(hay, start, end)?,
            None => end,
        };
        let (from, found) = match &tail.lead {
            // A literal that splits `A` from `B` costs least; else, while the memo of `A B` is
            // in use, it answers; resting, the DFAs split `A` from `B`.
            Some((lead, body)) => match lead.by_literal(hay.as_bytes(), start, split) {
                Some(from) => (from, body.search(hay, from, split)),
                None => match tail.head.search_memoized(hay, start, split) {
                    Some(found) => (start, found),
                    None => {
                        let from = lead.unique(hay, start, split)?;
                        (from, body.search(hay, from, split))
                    }
                },
            },
            None => (start, tail.head.search(hay, start, split)),
        };
        let mut spans = found.ok()??;
        if spans.first().copied().flatten() != Some((from, split)) {
            return None;
        }
        spans[0] = Some((start, end));
        spans.resize(self.groups, None);
        Some(spans)
    }

    /// Captures of the match known to span `start..end` of an ASCII `hay`.
    fn captures(&self, hay: &str, start: usize, end: usize) -> Option<Spans> {
        let spans = self.search(hay, start, end).ok()??;
        (spans.first().copied().flatten() == Some((start, end))).then_some(spans)
    }
}

/// Capture spans of `re`'s leftmost-first match from `start`, like `regex::Regex::captures_at`:
/// on a short ASCII haystack, `re`'s DFA finds the match and `ascii` resolves its groups.
fn spans_of(
    re: &regex::Regex,
    ascii: &Compiled<Option<AsciiCaptures>>,
    multiline: bool,
    hay: &str,
    start: usize,
) -> Option<Vec<Option<(usize, usize)>>> {
    if hay.len() - start.min(hay.len()) <= LONG_SPAN
        && hay.is_ascii()
        && let Some(fast) = ascii.get_or_init(|| AsciiCaptures::new(re.as_str(), multiline))
    {
        // Where the match must start at the text's start, the anchored search alone decides
        // on a short text (on a long one, a DFA pass that finds where the match ends is
        // cheaper than a visited set over all the text; so is the split of a pattern with a
        // long tail, whatever the text).
        if fast.starts_at_text_start
            && fast.tail.is_none()
            && hay.len() - start <= ANCHORED_TEXT
            && let Ok(found) = fast.captures_anchored(hay, start)
        {
            return found;
        }
        let m = re.find_at(hay, start)?;
        if let Some(spans) = fast
            .captures_split(hay, m.start(), m.end())
            .or_else(|| fast.captures(hay, m.start(), m.end()))
        {
            return Some(spans);
        }
    }
    let caps = re.captures_at(hay, start)?;
    Some(
        caps.iter()
            .map(|g| g.map(|g| (g.start(), g.end())))
            .collect(),
    )
}

/// A `regex` pattern and the helpers that resolve its captures on long matches.
///
/// A clone (a filter for each worker thread) searches with pools of caches of its own (see
/// [`Compiled`]): a pool's first thread takes its cache without a lock, and the value it writes
/// sits next to what every other thread reads first (nginx-limit-req on two threads: a tenth
/// of the time went to that one cache line).
#[derive(Debug, Clone)]
struct Linear {
    /// The pattern (regex syntax), parsed when built.
    pattern: Arc<str>,
    /// Its capture group names, by index.
    names: Vec<Option<String>>,
    /// Compiled on first use: most of a filter's failregexes never run (the screen's set
    /// rejects their lines), and compiling each was most of a filter's start-up.
    re: Compiled<Result<regex::Regex, String>>,
    multiline: bool,
    /// For a pattern ending in [`CONTENT_TAIL`]: the head followed by one `.`.
    content_head: Option<regex::Regex>,
    /// Built on first use: the split at the first item with a capture group.
    split: Compiled<Option<GroupFreeHead>>,
    /// Built on first use: the ASCII-only backtracker (`None` if it does not compile).
    ascii: Compiled<Option<BoundedBacktracker>>,
    /// Built on first use: the Unicode backtracker.
    unicode: Compiled<Option<BoundedBacktracker>>,
    /// Built on first use: captures of short ASCII haystacks, for the pattern and its head.
    short_ascii: Compiled<Option<AsciiCaptures>>,
    head_short_ascii: Compiled<Option<AsciiCaptures>>,
    /// Built on first use: the content head's group found by DFAs (see [`PrefixGroup`]).
    prefix_group: Compiled<Option<PrefixGroup>>,
}

/// Built on first use, once for a pattern and all its clones (a prototype that no search
/// uses), and copied from it for each clone that searches: each copy has pools of caches of
/// its own, and nothing is compiled twice.
#[derive(Debug)]
struct Compiled<T> {
    prototype: Arc<OnceLock<T>>,
    own: OnceLock<T>,
}

impl<T> Default for Compiled<T> {
    fn default() -> Self {
        Self {
            prototype: Arc::default(),
            own: OnceLock::new(),
        }
    }
}

impl<T: Clone> Clone for Compiled<T> {
    fn clone(&self) -> Self {
        Self {
            prototype: Arc::clone(&self.prototype),
            own: self.own.clone(),
        }
    }
}

impl<T: Clone> Compiled<T> {
    fn get_or_init(&self, build: impl FnOnce() -> T) -> &T {
        self.own
            .get_or_init(|| self.prototype.get_or_init(build).clone())
    }
}

impl Linear {
    fn new(pattern: &str, multiline: bool) -> Result<Self, String> {
        // Parsing finds every syntax error; what is left to compiling is the size limit, which
        // the screen's set of all failregexes (with the same limit) has passed when it exists.
        let config = syntax::Config::new().multi_line(multiline);
        let hir = syntax::parse_with(pattern, &config).map_err(|e| e.to_string())?;
        let names = capture_names(&hir);
        // Exact only when the tail is the pattern's last top-level items: a top-level `|` in
        // the head, or an inline `(?s)` there (`.` crossing newlines), gives a different tree.
        let content_head = pattern.strip_suffix(CONTENT_TAIL).and_then(|head| {
            let wrapped = syntax::parse_with(&format!("(?:{head}){CONTENT_TAIL}"), &config).ok()?;
            if hir != wrapped {
                return None;
            }
            let head = regex::RegexBuilder::new(&format!("(?:{head})."))
                .multi_line(multiline)
                .size_limit(SIZE_LIMIT)
                .build()
                .ok()?;
            // The head must have the same groups, in the same order, minus `content`.
            let head_names: Vec<_> = head.capture_names().collect();
            (names
                .last()
                .is_some_and(|n| n.as_deref() == Some("content"))
                && names[..names.len() - 1]
                    .iter()
                    .map(Option::as_deref)
                    .eq(head_names.iter().copied()))
            .then_some(head)
        });
        Ok(Self {
            pattern: pattern.into(),
            names,
            re: Compiled::default(),
            multiline,
            content_head,
            split: Compiled::default(),
            ascii: Compiled::default(),
            unicode: Compiled::default(),
            short_ascii: Compiled::default(),
            head_short_ascii: Compiled::default(),
            prefix_group: Compiled::default(),
        })
    }

    /// The compiled pattern; `None` (with a warning, once) if it exceeds the size limit.
    fn regex(&self) -> Option<&regex::Regex> {
        self.compiled().as_ref().ok()
    }

    /// The pattern compiled, or why it does not compile (over the size limit).
    fn compiled(&self) -> &Result<regex::Regex, String> {
        self.re.get_or_init(|| {
            regex::RegexBuilder::new(&self.pattern)
                .multi_line(self.multiline)
                .size_limit(SIZE_LIMIT)
                .build()
                .map_err(|e| e.to_string())
                .inspect_err(|e| {
                    tracing::warn!(pattern = %self.pattern, error = %e, "regex does not compile; it matches nothing");
                })
        })
    }

    fn backtracker(&self, unicode: bool) -> Option<&BoundedBacktracker> {
        let cell = if unicode { &self.unicode } else { &self.ascii };
        cell.get_or_init(|| {
            BoundedBacktracker::builder()
                .syntax(
                    syntax::Config::new()
                        .multi_line(self.multiline)
                        .unicode(unicode)
                        .utf8(unicode),
                )
                .configure(backtrack::Config::new().visited_capacity(VISITED_CAPACITY))
                .build(&self.pattern)
                .ok()
        })
        .as_ref()
    }

    /// Capture spans of the leftmost-first match from `start`, like `regex::Regex::captures_at`.
    fn captures(&self, hay: &str, start: usize) -> Option<Vec<Option<(usize, usize)>>> {
        // Short haystacks go straight to the capture search (which runs its own DFA first);
        // on long ones the DFA finds the match span first, which decides how to resolve groups.
        let short = hay.len() - start.min(hay.len()) <= LONG_SPAN;
        let m = if short {
            None
        } else {
            Some(self.regex()?.find_at(hay, start)?)
        };
        if let Some(head) = &self.content_head {
            // `head.` is valid exactly where `head(?P<content>.+)(?m:$)` is: `.+` then takes
            // the rest of the line up to the next newline.
            let spans = match self
                .prefix_group()
                .and_then(|g| g.captures(head, hay, start))
            {
                Some(spans) => spans,
                None => spans_of(head, &self.head_short_ascii, self.multiline, hay, start)?,
            };
            return Self::with_content(spans, hay);
        }
        if let Some(m) = m.filter(|m| m.len() > LONG_SPAN) {
            let split = self
                .split
                .get_or_init(|| GroupFreeHead::new(&self.pattern, self.multiline));
            if let Some(spans) = split
                .as_ref()
                .and_then(|h| h.captures(hay, m.start(), m.end()))
            {
                return Some(spans);
            }
            if let Some(spans) = self.captures_long(hay, m.start(), m.end()) {
                return Some(spans);
            }
        }
        spans_of(self.regex()?, &self.short_ascii, self.multiline, hay, start)
    }

    /// The prefix group of a content head, when its end is found by a split.
    fn prefix_group(&self) -> Option<&PrefixGroup> {
        self.prefix_group
            .get_or_init(|| {
                let head = self.pattern.strip_suffix(CONTENT_TAIL)?;
                PrefixGroup::new(head, self.multiline)
            })
            .as_ref()
    }

    /// The spans of `head(?P<content>.+)(?m:$)` from those of `head.` (`spans`): `.+` takes the
    /// rest of the line up to the next newline.
    fn with_content(mut spans: Spans, hay: &str) -> Option<Spans> {
        let end = spans.first().copied().flatten()?.1;
        let content_start = end - hay[..end].chars().next_back()?.len_utf8();
        let content_end = hay[content_start..]
            .find('\n')
            .map_or(hay.len(), |p| content_start + p);
        spans[0] = spans[0].map(|(s, _)| (s, content_end));
        spans.push(Some((content_start, content_end)));
        Some(spans)
    }

    /// Captures of the match known to span `start..end`, by the bounded backtracker.
    fn captures_long(
        &self,
        hay: &str,
        start: usize,
        end: usize,
    ) -> Option<Vec<Option<(usize, usize)>>> {
        // On an ASCII haystack the ASCII classes mean what the Unicode ones do, with far fewer
        // NFA states (a smaller visited set to clear).
        let ascii = hay.is_ascii().then(|| self.backtracker(false)).flatten();
        let bt = ascii.or_else(|| self.backtracker(true))?;
        if end - start > bt.max_haystack_len() {
            return None;
        }
        let mut cache = bt.create_cache();
        let mut caps = bt.create_captures();
        let input = Input::new(hay).span(start..end).anchored(Anchored::Yes);
        bt.try_search(&mut cache, &input, &mut caps).ok()?;
        let spans: Vec<_> = (0..caps.group_len())
            .map(|i| caps.get_group(i).map(|s| (s.start, s.end)))
            .collect();
        (spans.first().copied().flatten() == Some((start, end))).then_some(spans)
    }
}

/// The capture group names of a parsed pattern, by group index (0 is the whole match).
fn capture_names(hir: &Hir) -> Vec<Option<String>> {
    fn walk(hir: &Hir, names: &mut Vec<Option<String>>) {
        match hir.kind() {
            HirKind::Capture(c) => {
                // A group under `{0}` is gone from the tree, its index with it: the compiled
                // regex has an unnamed group there.
                if let Ok(i) = usize::try_from(c.index) {
                    if names.len() <= i {
                        names.resize(i + 1, None);
                    }
                    names[i] = c.name.as_deref().map(str::to_string);
                }
                walk(&c.sub, names);
            }
            HirKind::Concat(items) | HirKind::Alternation(items) => {
                items.iter().for_each(|h| walk(h, names));
            }
            HirKind::Repetition(r) => walk(&r.sub, names),
            _ => {}
        }
    }
    let mut names = vec![None; hir.properties().explicit_captures_len() + 1];
    walk(hir, &mut names);
    names
}

/// Capture spans of one match, indexed like the pattern's groups.
#[derive(Debug, Clone)]
pub(crate) struct Captures {
    pub(crate) spans: Vec<Option<(usize, usize)>>,
    pub(crate) names: Names,
}

/// Capture group names by group index, shared by every match of a pattern (a match's groups
/// carry them without a copy).
pub(crate) type Names = Arc<[Option<Arc<str>>]>;

impl Captures {
    /// The span of the named group, if it took part.
    pub(crate) fn name(&self, name: &str) -> Option<(usize, usize)> {
        // A name may repeat across alternatives (see `rewrite`): the one that took part.
        self.names
            .iter()
            .zip(self.spans.iter())
            .find_map(|(n, s)| (n.as_deref() == Some(name)).then_some(*s).flatten())
    }

    /// Whole-match span.
    pub(crate) fn whole(&self) -> (usize, usize) {
        self.spans.first().copied().flatten().unwrap_or((0, 0))
    }
}

impl Matcher {
    /// Compiles a Python pattern; `multiline` is Python's `re.MULTILINE`.
    pub(crate) fn compile(py: &str, multiline: bool) -> Result<Self, TranslateError> {
        let err = |reason: String| TranslateError {
            pattern: py.to_string(),
            reason,
        };
        let translated = translate(py).map_err(err)?;
        Self::from_translated(py, &translated, multiline).map_err(err)
    }

    fn from_translated(py: &str, t: &Translated, multiline: bool) -> Result<Self, String> {
        if t.backtracking.is_empty() {
            let linear = Linear::new(&t.pattern, multiline)?;
            let names: Names = linear
                .names
                .iter()
                .map(|n| n.as_deref().map(|n| super::rewrite::base_name(n).into()))
                .collect();
            return Ok(Self {
                engine: Engine::Linear(Box::new(linear)),
                names,
                source: py.into(),
            });
        }
        let pattern = if multiline {
            format!("(?m){}", t.pattern)
        } else {
            t.pattern.clone()
        };
        let re = fancy_regex::RegexBuilder::new(&pattern)
            .backtrack_limit(BACKTRACK_LIMIT)
            .build()
            .map_err(|e| format!("{e} (needs {})", t.backtracking.join(", ")))?;
        let names: Names = re.capture_names().map(|n| n.map(Arc::from)).collect();
        Ok(Self {
            engine: Engine::Backtracking(Box::new(Backtracking {
                re,
                scaled: Arc::default(),
            })),
            names,
            source: py.into(),
        })
    }

    /// Compiles the pattern now (a linear one otherwise compiles on first use): `Err` when it
    /// cannot be compiled, for errors at load time.
    pub(crate) fn compile_now(&self) -> Result<(), String> {
        match &self.engine {
            Engine::Linear(l) => l.compiled().as_ref().map(|_| ()).map_err(Clone::clone),
            Engine::Backtracking(_) => Ok(()),
        }
    }

    /// True when the pattern runs on the backtracking engine.
    pub(crate) fn is_backtracking(&self) -> bool {
        matches!(self.engine, Engine::Backtracking(_))
    }

    /// The group names, by index.
    pub(crate) fn names(&self) -> &[Option<Arc<str>>] {
        &self.names
    }

    /// Searches `hay` (Python's `re.search`); a blown backtrack budget counts as no match.
    pub(crate) fn search(&self, hay: &str) -> Option<Captures> {
        self.search_at(hay, 0)
    }

    /// Searches `hay` from byte offset `start`.
    pub(crate) fn search_at(&self, hay: &str, start: usize) -> Option<Captures> {
        match &self.engine {
            Engine::Linear(l) => Some(Captures {
                spans: l.captures(hay, start)?,
                names: self.names.clone(),
            }),
            Engine::Backtracking(bt) => {
                match bt.run(hay.len(), |re| re.captures_from_pos(hay, start)) {
                    Ok(Some(caps)) => Some(Captures {
                        spans: (0..caps.len())
                            .map(|i| caps.get(i).map(|m| (m.start(), m.end())))
                            .collect(),
                        names: self.names.clone(),
                    }),
                    Ok(None) => None,
                    Err(e) => {
                        gave_up(&self.source, &e);
                        None
                    }
                }
            }
        }
    }

    /// [`search`](Self::search) for a pattern with a content head (see
    /// [`content_head_pattern`](Self::content_head_pattern)) whose `head.` a DFA found to
    /// match `hay` from its start up to the content's first character at `content_start`.
    pub(crate) fn search_with_content_at(
        &self,
        hay: &str,
        content_start: usize,
    ) -> Option<Captures> {
        if let Engine::Linear(l) = &self.engine
            && l.content_head.is_some()
            && let Some(first) = hay.get(content_start..).and_then(|c| c.chars().next())
            && let Some(spans) = l
                .prefix_group()
                .and_then(|g| g.captures_of_head(hay, 0, content_start + first.len_utf8()))
            && let Some(spans) = Linear::with_content(spans, hay)
        {
            return Some(Captures {
                spans,
                names: self.names.clone(),
            });
        }
        self.search(hay)
    }

    /// Span of the first match from `start`, without captures.
    pub(crate) fn find_at(&self, hay: &str, start: usize) -> Option<(usize, usize)> {
        match &self.engine {
            Engine::Linear(l) => l.regex()?.find_at(hay, start).map(|m| (m.start(), m.end())),
            Engine::Backtracking(_) => self.search_at(hay, start).map(|c| c.whole()),
        }
    }

    /// Whether the pattern ends in `<F-CONTENT>.+</F-CONTENT>$` and [`content_start`]
    /// (Self::content_start) finds the content with a DFA.
    pub(crate) fn has_content_head(&self) -> bool {
        matches!(&self.engine, Engine::Linear(l) if l.content_head.is_some())
    }

    /// `None` when the pattern does not match `hay`; else where its `<F-CONTENT>` starts, when
    /// [`has_content_head`](Self::has_content_head) (a DFA search, no captures).
    pub(crate) fn content_start(&self, hay: &str) -> Option<Option<usize>> {
        match &self.engine {
            Engine::Linear(l) => match &l.content_head {
                // `head.` matches exactly where the whole pattern does (see `Linear::captures`).
                Some(head) => {
                    let end = head.find(hay)?.end();
                    Some(Some(end - hay[..end].chars().next_back()?.len_utf8()))
                }
                None => l.regex()?.is_match(hay).then_some(None),
            },
            Engine::Backtracking(_) => self.is_match(hay).then_some(None),
        }
    }

    /// The translated pattern (regex syntax, or fancy-regex syntax when backtracking).
    pub(crate) fn pattern(&self) -> &str {
        match &self.engine {
            Engine::Linear(l) => &l.pattern,
            Engine::Backtracking(bt) => bt.re.as_str(),
        }
    }

    /// Names of the groups that take part in every match with a non-empty text (base names,
    /// see [`rewrite`](super::rewrite)); none for a backtracking pattern.
    pub(crate) fn always_nonempty_groups(&self) -> Vec<String> {
        fn walk(hir: &Hir, out: &mut Vec<String>) {
            match hir.kind() {
                HirKind::Capture(c) => {
                    if let Some(name) = &c.name
                        && c.sub.properties().minimum_len().is_some_and(|n| n > 0)
                    {
                        out.push(super::rewrite::base_name(name).to_string());
                    }
                    walk(&c.sub, out);
                }
                HirKind::Concat(items) => items.iter().for_each(|h| walk(h, out)),
                HirKind::Repetition(r) if r.min > 0 => walk(&r.sub, out),
                // Alternatives, optional and repeated parts may leave a group out.
                _ => {}
            }
        }
        let mut out = Vec::new();
        if let Engine::Linear(l) = &self.engine
            && let Ok(hir) =
                syntax::parse_with(&l.pattern, &syntax::Config::new().multi_line(l.multiline))
        {
            walk(&hir, &mut out);
        }
        out
    }

    /// The `regex` pattern when this runs on the linear engine (for a [`regex::RegexSet`]).
    pub(crate) fn linear_pattern(&self) -> Option<&str> {
        match &self.engine {
            Engine::Linear(l) => Some(&l.pattern),
            Engine::Backtracking(_) => None,
        }
    }

    /// True when the pattern matches somewhere in `hay`.
    pub(crate) fn is_match(&self, hay: &str) -> bool {
        match &self.engine {
            Engine::Linear(l) => l.regex().is_some_and(|re| re.is_match(hay)),
            Engine::Backtracking(bt) => match bt.run(hay.len(), |re| re.is_match(hay)) {
                Ok(m) => m,
                Err(e) => {
                    gave_up(&self.source, &e);
                    false
                }
            },
        }
    }

    /// The pattern [`content_start`](Self::content_start) searches, `(?:head).`, and whether
    /// it is multi-line, when [`has_content_head`](Self::has_content_head) (for the screen's
    /// own DFA).
    pub(crate) fn content_head_pattern(&self) -> Option<(&str, bool)> {
        match &self.engine {
            Engine::Linear(l) => l.content_head.as_ref().map(|h| (h.as_str(), l.multiline)),
            Engine::Backtracking(_) => None,
        }
    }

    /// The captures [`search_at`](Self::search_at)`(hay, start)` gives, for a match a DFA of
    /// this same pattern found at `start..end`: an ASCII span is resolved without searching
    /// for the match again.
    pub(crate) fn captures_of_match(
        &self,
        hay: &str,
        start: usize,
        end: usize,
    ) -> Option<Captures> {
        // The characters around the span count too (look-behind and look-ahead see them).
        let around = hay
            .as_bytes()
            .get(start.saturating_sub(1)..hay.len().min(end.saturating_add(1)));
        if let Engine::Linear(l) = &self.engine
            && l.content_head.is_none()
            && end.saturating_sub(start) <= LONG_SPAN
            && around.is_some_and(<[u8]>::is_ascii)
            && let Some(fast) = l
                .short_ascii
                .get_or_init(|| AsciiCaptures::new(&l.pattern, l.multiline))
            && let Some(spans) = fast
                .captures_split(hay, start, end)
                .or_else(|| fast.captures(hay, start, end))
        {
            return Some(Captures {
                spans,
                names: self.names.clone(),
            });
        }
        self.search_at(hay, start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_parts_are_built_once_for_all_clones_and_copied_for_each() {
        let builds = std::cell::Cell::new(0);
        let build = |value: u8| {
            builds.set(builds.get() + 1);
            vec![value]
        };
        let first: Compiled<Vec<u8>> = Compiled::default();
        let before_use = first.clone();
        assert_eq!(first.get_or_init(|| build(1)), &[1]);
        // A clone made before the first use copies the prototype instead of building.
        assert_eq!(before_use.get_or_init(|| build(2)), &[1]);
        let after_use = first.clone();
        assert_eq!(after_use.get_or_init(|| build(3)), &[1]);
        assert_eq!(builds.get(), 1);
        // Each copy is its own (its pools too, for the types that have them).
        assert!(!std::ptr::eq(
            first.get_or_init(|| build(4)),
            after_use.get_or_init(|| build(5))
        ));
        assert!(!std::ptr::eq(
            first.get_or_init(|| build(4)),
            before_use.get_or_init(|| build(5))
        ));
    }

    fn tr(p: &str) -> String {
        translate(p).expect("translates").pattern
    }

    #[test]
    fn python_only_syntax_is_rewritten() {
        assert_eq!(tr(r"a{,3}"), "a{0,3}");
        assert_eq!(tr(r"a{2}"), "a{2}");
        assert_eq!(tr(r"\<HOST\>"), "<HOST>");
        assert_eq!(tr(r"{DATE}x"), r"\{DATE\}x");
        assert_eq!(tr(r"(?iu)abc"), "(?i)abc");
        assert_eq!(tr(r"end$"), "end(?m:$)");
        assert_eq!(tr(r"[\w\-.^_]"), r"[\w\-.\^_]");
        assert_eq!(tr(r"[^\[]"), r"[^\[]");
        assert_eq!(tr(r"[]a]"), r"[\]a]");
        assert_eq!(tr(r"[a-z&&]"), r"[a-z\&\&]");
        assert_eq!(tr(r"(?:[^\[]+ )*\[?x"), r"(?:[^\[]+ )?\[?x");
        assert_eq!(tr(r"(?:[^ ]+ )*x"), r"(?:[^ ]+ )*x");
        assert!(
            translate(r"(?<=a)b")
                .expect("ok")
                .backtracking
                .contains(&"lookbehind")
        );
        assert!(
            translate(r"(?P<x>a)(?P=x)")
                .expect("ok")
                .backtracking
                .contains(&"backreference")
        );
    }

    #[test]
    fn fail2ban_ipv6_lookbehind_needs_no_backtracking() {
        let ip6 = r"(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|(?<=:):)";
        let t = translate(ip6).expect("ok");
        assert!(t.backtracking.is_empty(), "{:?}", t.backtracking);
        let m = Matcher::compile(&format!("^{ip6}$"), false).expect("compiles");
        for ok in ["2001:db8::1", "::1", "fe80::", "1:2:3:4:5:6:7:8"] {
            assert!(m.is_match(ok), "{ok}");
        }
        assert!(!m.is_match("1.2.3.4"));
    }

    #[test]
    fn dollar_matches_before_the_buffer_newline() {
        let m = Matcher::compile(r"^foo$", false).expect("compiles");
        assert!(m.is_match("foo\n"));
        assert!(!m.is_match("foo bar\n"));
    }

    /// The long-match capture paths give exactly what `regex`'s own captures give.
    #[test]
    fn long_match_captures_agree_with_regex() {
        let patterns = [
            // prefregex `<F-CONTENT>` split
            r"^(?P<mlfid>\S+ )?(?:x\[\d+\]: )?(?P<content>.+)(?m:$)",
            // group-free head split
            r"^\s*smtp: (?:[^\[]+ )*\[?(?P<ip4>(?:\d{1,3}\.){3}\d{1,3})\]? (?P<user>\w+)?\s*(?m:$)",
            // neither: bounded backtracker
            r"(?P<a>(?:ab|a)+)(?P<b>b*)c(?P<rest>.*)",
        ];
        let run = "ab a ".repeat(2_000);
        let lines = [
            format!("h x[1]: {run}tail\nnext"),
            format!("é x[1]: {run}\n"),
            format!("  smtp: {run}192.0.2.5 bob\n"),
            format!("  smtp: {run}[192.0.2.5]\n"),
            format!("zz{}bc{run}\n", "ab".repeat(3_000)),
            format!("zz{}bc{run}é\n", "ab".repeat(3_000)),
        ];
        for p in [r"a|b(?P<content>.+)(?m:$)", r"(?s)x(?P<content>.+)(?m:$)"] {
            assert!(
                Linear::new(p, false)
                    .expect("compiles")
                    .content_head
                    .is_none(),
                "{p}"
            );
        }
        assert!(
            Linear::new(patterns[0], false)
                .expect("compiles")
                .content_head
                .is_some()
        );
        let mut matched = 0;
        for p in patterns {
            let l = Linear::new(p, false).expect("compiles");
            for line in &lines {
                let want = l.regex().expect("compiles").captures(line).map(|c| {
                    c.iter()
                        .map(|g| g.map(|g| (g.start(), g.end())))
                        .collect::<Vec<_>>()
                });
                matched += usize::from(
                    want.as_ref()
                        .is_some_and(|w| w[0].is_some_and(|(s, e)| e - s > LONG_SPAN)),
                );
                assert_eq!(l.captures(line, 0), want, "{p} on {} bytes", line.len());
            }
        }
        assert!(matched >= 6, "{matched} long matches");
    }

    #[test]
    fn backtracking_budget_blown_is_no_match() {
        let m = Matcher::compile(r"^(a+)+\1$", false).expect("compiles");
        assert!(m.is_backtracking());
        let hostile = format!("{}b", "a".repeat(64));
        assert!(m.search(&hostile).is_none());
    }

    /// The names read from the parsed pattern (the pattern compiles only when first used) are
    /// the compiled regex's, index for index.
    #[test]
    fn capture_names_are_the_compiled_ones() {
        for p in [
            r"^(?P<a>x(?P<b>y)?)|(z)(?P<c>w){0}(?:(?P<d>\d)+)$",
            r"(?P<host>\S+) (?:(?P<ip4>\d+\.\d+)|(?P<ip6>[:\w]+))(?P<user>.*?)",
            r"no groups at all",
            r"((((?P<deep>a))))(?P<after>b)*",
        ] {
            let hir = syntax::parse_with(p, &syntax::Config::new()).expect("parses");
            let compiled: Vec<Option<String>> = regex::Regex::new(p)
                .expect("compiles")
                .capture_names()
                .map(|n| n.map(str::to_string))
                .collect();
            assert_eq!(capture_names(&hir), compiled, "{p}");
        }
    }

    /// A pattern anchored at the text's start gets its captures from the anchored search
    /// alone on short texts: the same as `regex`'s captures, and none where it cannot match.
    #[test]
    fn anchored_captures_agree_with_regex() {
        let p = r"^(?P<user>.*?) from (?P<ip>\d+(?:\.\d+){3})(?: port (?P<port>\d+))?\s*(?m:$)";
        let m = Matcher::compile(p, false).expect("compiles");
        let re = regex::Regex::new(p).expect("compiles");
        for hay in [
            "root from 192.0.2.1 port 22\n",
            "a from b from 192.0.2.1\n",
            " from 192.0.2.1\n",
            "x from 192.0.2\n",
            "no address here\n",
        ] {
            for start in [0, 1] {
                let want = re.captures_at(hay, start).map(|c| {
                    c.iter()
                        .map(|g| g.map(|g| (g.start(), g.end())))
                        .collect::<Vec<_>>()
                });
                let got = m.search_at(hay, start).map(|c| c.spans);
                assert_eq!(got, want, "{hay:?} from {start}");
            }
        }
    }

    /// sshd's prefregex (fail2ban 1.0.2's `sshd.conf`, translated): its `mlfid` group found by
    /// DFAs where the split is unique gives `regex`'s captures on every head shape, the
    /// ambiguous ones (`error: error: …`) included.
    #[test]
    fn prefix_group_captures_agree_with_regex() {
        let pattern = r"^(?P<mlfid>(?:\[\])?\s*(?:<[^.]+\.[^.]+>\s+)?(?:\S+\s+)?(?:kernel:\s?\[ *\d+\.\d+\]:?\s+)?(?:@vserver_\S+\s+)?(?:(?:(?:\[\d+\])?:\s+[\[(]?sshd(?:\(\S+\))?[\])]?:?|[\[(]?sshd(?:\(\S+\))?[\])]?:?(?:\[\d+\])?:?)\s+)?(?:\[ID \d+ \S+\]\s+)?)(?:(?:error|fatal): (?:PAM: )?)?(?P<content>.+)(?m:$)";
        let head = pattern.strip_suffix(CONTENT_TAIL).expect("content tail");
        assert!(PrefixGroup::new(head, false).is_some(), "the split applies");
        let m = Matcher::compile(pattern, false).expect("compiles");
        let re = regex::Regex::new(pattern).expect("compiles");
        // A group after text (`^a(?P<g>b)`): no split, the capture search.
        let consuming = r"^a(?P<g>b)(?P<content>.+)(?m:$)";
        assert!(
            PrefixGroup::new(consuming.strip_suffix(CONTENT_TAIL).expect("tail"), false).is_none()
        );
        let spans = Matcher::compile(consuming, false)
            .expect("compiles")
            .search("abc\n")
            .map(|c| c.spans);
        assert_eq!(spans, Some(vec![Some((0, 3)), Some((1, 2)), Some((2, 3))]));
        let heads = [
            " web1 sshd[3233]: ",
            " sshd[1]: ",
            " web1 sshd: ",
            "web1 sshd[3233]: ",
            " web1 kernel: [ 12.5]: sshd[9]: ",
            " <auth.info> web1 sshd[2]: ",
            " web1 sshd(pam_unix)[7]: ",
            " [] web1 sshd[7]: [ID 800047 auth.info] ",
            " web1 cron[5]: ",
            " ",
            "",
        ];
        let contents = [
            "Failed password for root from 192.0.2.1 port 22 ssh2",
            "error: maximum authentication attempts exceeded for x",
            "error: PAM: Authentication failure for x",
            "fatal: error: nested prefixes",
            "error: error: twice",
            "error:",
            "x",
            "sshd[1]: looks like a head",
            "web1 sshd[2]: error: head again",
            "é non-ASCII content",
        ];
        for h in heads {
            for c in contents {
                let hay = format!("{h}{c}\n");
                let want = re.captures(&hay).map(|c| {
                    c.iter()
                        .map(|g| g.map(|g| (g.start(), g.end())))
                        .collect::<Vec<_>>()
                });
                assert_eq!(m.search(&hay).map(|c| c.spans), want, "{hay:?}");
            }
        }
    }

    /// Captures answered from the memo of byte classes are the captures a search gives: on
    /// texts that repeat their classes with other digits and letters (hits), others (misses),
    /// word boundaries at the span's edges, and searches from inside the text.
    #[test]
    fn memoized_captures_agree_with_regex() {
        let patterns = [
            r"^(?P<user>\S+) from (?P<ip>\d{1,3}(?:\.\d{1,3}){3})(?: port (?P<port>\d+))?\s*(?m:$)",
            r"\bid=(?P<id>\w+)\b(?P<rest>.*)",
        ];
        let mut seed = 0x2545_f491_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for p in patterns {
            let m = Matcher::compile(p, false).expect("compiles");
            let re = regex::Regex::new(p).expect("compiles");
            for _ in 0..3 * MEMO_TRIAL {
                let hay = match next(4) {
                    0 => format!(
                        "u{} from 10.{}.{}.{} port {}\n",
                        next(10),
                        next(256),
                        next(10),
                        next(256),
                        next(99_999)
                    ),
                    1 => format!(
                        "xid={}{} tail {}\n",
                        next(10),
                        ["a", "_", "-"][next(3) as usize],
                        next(9)
                    ),
                    2 => format!("id={} from 1.2.3.{}\n", next(1000), next(10)),
                    _ => format!("{} from 1.2.3\n", next(100)),
                };
                for start in [0, 1, 2] {
                    let want = re.captures_at(&hay, start).map(|c| {
                        c.iter()
                            .map(|g| g.map(|g| (g.start(), g.end())))
                            .collect::<Vec<_>>()
                    });
                    assert_eq!(
                        m.search_at(&hay, start).map(|c| c.spans),
                        want,
                        "{p}: {hay:?} from {start}"
                    );
                }
            }
        }
    }

    /// Where `X`'s last literal or `Y`'s first occurs once in a match of `X Y`, the split is
    /// found there, and it is the one the DFAs find; where both occur more than once, the
    /// DFAs decide.
    #[test]
    fn a_split_at_a_literal_met_once_is_the_dfas_split() {
        let parse = |p: &str| {
            let config = syntax::Config::new().unicode(false).utf8(false);
            syntax::parse_with(p, &config).expect("parses")
        };
        let (x, y) = (r".*client: \S+", r", server: \S*, .*");
        let whole = regex::Regex::new(&format!("^(?:{x})(?:{y})$")).expect("compiles");
        let (x, y) = (parse(x), parse(y));
        let split = Split::new(&x, &y).expect("builds");
        let cases = [
            // Once: `, server: ` after the host.
            ("a client: 192.0.2.1, server: x, rest", Some(19)),
            // `client: ` twice, `, server: ` once.
            ("a client: b client: c, server: x, y", Some(21)),
            // `, server: ` twice, and `X` ends in no literal: the DFAs decide.
            ("a client: b, server: c, server: d, e", None),
        ];
        for (hay, by_literal) in cases {
            assert!(whole.is_match(hay), "a match of X Y: {hay}");
            let end = hay.len();
            assert_eq!(
                split.by_literal(hay.as_bytes(), 0, end),
                by_literal,
                "{hay}"
            );
            let mut caches = split.caches.get();
            let (x_cache, y_cache, _) = &mut *caches;
            let by_dfas = split.unique_by_search(hay, 0, end, x_cache, y_cache);
            if let Some(p) = by_literal {
                assert_eq!(by_dfas, Some(p), "{hay}");
            }
            assert_eq!(split.unique(hay, 0, end), by_dfas, "{hay}");
        }
    }

    /// A pattern starting with a long part without named groups (nginx-limit-req's) finds
    /// its named groups past the lead's split, where the split is unique, as `regex` does.
    #[test]
    fn lead_split_captures_agree_with_regex() {
        let p = r#"^\s*\[([a-z]+)\] \d+#\d+: \*\d+ limiting requests, excess: [\d\.]+ by zone "(?:[^"]+)", client: (?:(?P<ip4>\d+(?:\.\d+){3})|(?P<dns>[\w.-]*\w)),"#;
        let hays = [
            r#"[error] 2868#2868: *5630990 limiting requests, excess: 0.895 by zone "login", client: 192.0.2.7, server: x"#,
            r#"[warn] 1#1: *1 limiting requests, excess: 10.5 by zone "a", client: host.example, server: y"#,
            r#"[error] 1#1: *2 limiting requests, excess: 1.0 by zone "x", client: 10.0.0.1,", client: 192.0.2.9, s"#,
        ];
        let config = syntax::Config::new().unicode(false).utf8(false);
        let split =
            TailSplit::new(&syntax::parse_with(p, &config).expect("parses")).expect("split");
        let (lead, body) = split.lead.as_ref().expect("a lead split");
        assert!(split.split.is_none(), "the tail is short");
        let re = regex::Regex::new(p).expect("compiles");
        let names: Vec<Option<&str>> = re.capture_names().collect();
        let mut unique = 0;
        for hay in hays {
            let c = re.captures(hay).expect("matches");
            let (start, end) = (
                c.get(0).expect("whole").start(),
                c.get(0).expect("whole").end(),
            );
            let Some(from) = lead.unique(hay, start, end) else {
                continue;
            };
            unique += 1;
            let spans = body
                .search(hay, from, end)
                .expect("short")
                .expect("matches");
            assert_eq!(spans[0], Some((from, end)), "{hay}");
            for (i, name) in names.iter().enumerate().skip(1) {
                if name.is_some() {
                    let want = c.get(i).map(|g| (g.start(), g.end()));
                    assert_eq!(spans.get(i).copied().flatten(), want, "{hay}: group {i}");
                }
            }
        }
        assert_eq!(unique, hays.len(), "every lead splits at one place");
        // The whole search agrees too, whichever way it goes.
        let m = Matcher::compile(p, false).expect("compiles");
        for hay in hays {
            let c = re.captures(hay).expect("matches");
            let got = m.search(hay).expect("matches");
            for (i, name) in names.iter().enumerate() {
                if i == 0 || name.is_some() {
                    let want = c.get(i).map(|g| (g.start(), g.end()));
                    assert_eq!(got.spans[i], want, "{hay}: group {i}");
                }
            }
        }
    }

    /// A pattern ending in a long part without named groups gets its named groups and whole
    /// match from the split (unnamed groups in that part are not reported): the same as
    /// `regex`'s captures, on texts where the part can start at one place or at several.
    #[test]
    fn tail_split_captures_agree_with_regex() {
        let patterns = [
            r#"^(?:(?P<ip4>\d+(?:\.\d+){3})|(?P<dns>[\w.-]*\w)) \- \S+ \[\] "(GET|POST) /(admin|wp-login\.php)[^,]* \S+" 404 .+(?m:$)"#,
            r"^(?P<user>\S+) from (?P<ip>\S+)(?: on \S+)* port \d+ (?:on x)?.{16,}(?m:$)",
        ];
        let hays = [
            r#"192.0.2.7 - - [] "GET /admin/x, y HTTP/1.1" 404 512 "-" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
"#,
            r#"host.example - - [] "POST /wp-login.php HTTP/1.1" 404 0 "-" "curl/8.0 - - [] \"GET /admin HTTP/1.1\" 404 - ......................................................"
"#,
            r#"192.0.2.7 - - [] "GET /admin HTTP/1.1" 200 512 "-" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 ......"
"#,
            "alice from 192.0.2.1 on tty1 port 22 on x on y port 23 ............................................................................................\n",
            "bob from 192.0.2.1 port 22 port 23 port 24 ...................................................................................................................\n",
        ];
        for p in patterns {
            let m = Matcher::compile(p, false).expect("compiles");
            let re = regex::Regex::new(p).expect("compiles");
            let names: Vec<Option<&str>> = re.capture_names().collect();
            for hay in hays {
                assert!(hay.len() > ANCHORED_TEXT, "long enough for the split");
                let want = re.captures(hay).map(|c| {
                    (0..names.len())
                        .map(|i| match (i, names[i]) {
                            (0, _) | (_, Some(_)) => c.get(i).map(|g| (g.start(), g.end())),
                            _ => None,
                        })
                        .collect::<Vec<_>>()
                });
                let got = m.search(hay).map(|c| {
                    c.spans
                        .iter()
                        .enumerate()
                        .map(|(i, s)| {
                            if i == 0 || names[i].is_some() {
                                *s
                            } else {
                                None
                            }
                        })
                        .collect::<Vec<_>>()
                });
                assert_eq!(got, want, "{p}: {hay:?}");
            }
        }
        let tail = |p: &str| {
            let config = syntax::Config::new().unicode(false).utf8(false);
            TailSplit::new(&syntax::parse_with(p, &config).expect("parses")).is_some()
        };
        assert!(tail(patterns[0]) && tail(patterns[1]), "the split applies");
    }
}
