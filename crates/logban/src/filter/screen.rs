//! Reject first: DFA passes decide that no failregex can match a line, before any capture,
//! copy or allocation.
//!
//! Each failregex `R` gets a *superset* pattern `R'` that matches every string `R` matches, and
//! runs on the regex crate's DFAs: lookaround becomes empty, backreferences, atomic groups and
//! other backtracking constructs become `(?s:.*)`, and a conditional `(?(c)yes|no)` becomes
//! `c yes|yes|no`. The supersets form one multi-pattern lazy DFA (regex-automata's `hybrid`,
//! with its cache owned by the screen), searched anchored when they all start with `^` (so the
//! DFA stops where no pattern can go on) and overlapping (so it says which can match).
//!
//! Where the failregexes run on the prefregex's `<F-CONTENT>` (fail2ban's usual
//! `^…<F-CONTENT>.+</F-CONTENT>$`), the prefregex's head is found with a lazy DFA of its own
//! (no captures), which gives where the content starts, and the supersets run anchored on the
//! content exactly as the failregexes would. Otherwise they run on the whole text with their
//! anchors and word boundaries dropped too (still a superset on any substring). A line the
//! screen rejects yields nothing, exactly as the full path would.

use std::sync::Arc;

use fancy_regex::{Assertion, Expr};
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind, PatternSet};

use super::pyregex::Matcher;

/// Room for the states of the supersets' lazy DFA (built as lines need them, kept from line to
/// line): what the `RegexSet` it replaces had.
const SET_CACHE: usize = 16 << 20;

/// Room for the states of the content head's lazy DFA: what `regex` gives a pattern.
const HEAD_CACHE: usize = 2 << 20;

/// A lazy DFA with its own cache: no pool to take a cache from, no prefilter, no reverse
/// search, which on the screen's short searches cost more than the DFA's own steps.
#[derive(Debug, Clone)]
struct Lazy {
    dfa: DFA,
    cache: Cache,
    /// Every pattern starts with `^`: searched anchored, the DFA stops as soon as no pattern
    /// can go on (unanchored, it would run to the end of the text).
    anchored: Anchored,
}

impl Lazy {
    fn new<P: AsRef<str>>(
        patterns: &[P],
        kind: MatchKind,
        multiline: bool,
        cache: usize,
    ) -> Option<Self> {
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    .match_kind(kind)
                    .unicode_word_boundary(true)
                    .cache_capacity(cache),
            )
            .syntax(syntax::Config::new().multi_line(multiline))
            .thompson(thompson::Config::new().nfa_size_limit(Some(256 << 20)))
            .build_many(patterns)
            .ok()?;
        let anchored = if dfa.get_nfa().is_always_start_anchored() {
            Anchored::Yes
        } else {
            Anchored::No
        };
        Some(Self {
            cache: dfa.create_cache(),
            dfa,
            anchored,
        })
    }

    fn input<'h>(&self, hay: &'h str) -> Input<'h> {
        Input::new(hay).anchored(self.anchored)
    }
}

/// The screen of one filter.
#[derive(Debug, Clone)]
pub(crate) struct Screen {
    /// The failregexes' supersets, anchors kept (for the content, or the whole text without a
    /// prefregex): every match, for the overlapping search that says which can match.
    set: Lazy,
    /// The prefregex's content head followed by one `.` (leftmost-first), when it has one.
    head: Option<Lazy>,
    /// The supersets without anchors, for a prefregex whose content is not found by a DFA.
    unanchored: Option<regex::RegexSet>,
    /// The overlapping search's answer, reused from line to line.
    found: PatternSet,
    /// By failregex (below 128): its pattern is its own superset, so the set's answer for it is
    /// the failregex's own `is_match` on the same text.
    exact: u128,
    /// Where the last verdict found the prefregex's content to start, when its anchored head
    /// DFA found it (the prefregex's match then starts at the text's start).
    content_start: Option<usize>,
}

fn set(patterns: &[String]) -> Option<regex::RegexSet> {
    regex::RegexSetBuilder::new(patterns)
        .size_limit(256 << 20)
        .dfa_size_limit(16 << 20)
        .build()
        .ok()
}

impl Screen {
    /// Builds the screen from translated failregexes (regex or fancy-regex syntax), or `None`
    /// when a pattern cannot be turned into a superset (the filter then runs every line fully).
    pub(crate) fn new(prefregex: Option<&Matcher>, failregex: &[&str]) -> Option<Self> {
        let widened = |keep_anchors: bool| -> Option<Vec<String>> {
            failregex
                .iter()
                .map(|p| superset(p, keep_anchors))
                .collect()
        };
        let head =
            prefregex
                .and_then(Matcher::content_head_pattern)
                .and_then(|(head, multiline)| {
                    Lazy::new(&[head], MatchKind::LeftmostFirst, multiline, HEAD_CACHE)
                });
        let unanchored = match prefregex {
            Some(p) if !p.has_content_head() => Some(set(&widened(false)?)?),
            _ => None,
        };
        let supersets = widened(true)?;
        let exact = supersets
            .iter()
            .zip(failregex)
            .take(128)
            .enumerate()
            .filter(|(_, (wide, p))| wide == *p)
            .fold(0, |bits, (i, _)| bits | 1 << i);
        // One pattern is searched leftmost-first, which gives its match end too (see
        // `candidates`); several, for every match.
        let kind = if supersets.len() == 1 {
            MatchKind::LeftmostFirst
        } else {
            MatchKind::All
        };
        let set = Lazy::new(&supersets, kind, false, SET_CACHE)?;
        Some(Self {
            found: PatternSet::new(set.dfa.pattern_len()),
            set,
            head,
            unanchored,
            exact,
            content_start: None,
        })
    }

    /// Whether a [`Verdict::Candidates`] or [`Verdict::Any`] naming failregex `i` means that it
    /// matches the text it runs on (no superset was widened for it).
    pub(crate) fn is_exact(&self, i: usize) -> bool {
        i < 128 && self.exact & (1 << i) != 0
    }

    /// False only when no failregex can match `text` (the line without its date, plus `\n`).
    #[cfg(test)]
    pub(crate) fn may_match(&mut self, prefregex: Option<&Matcher>, text: &str) -> bool {
        !matches!(self.verdict(prefregex, text), Verdict::Reject)
    }

    /// Where the last [`verdict`](Self::verdict) found the prefregex's content to start, from
    /// the text's start (see [`Matcher::search_with_content_at`]).
    pub(crate) fn content_start(&self) -> Option<usize> {
        self.content_start
    }

    /// What the DFA passes over `text` (the line without its date, plus `\n`) tell.
    pub(crate) fn verdict(&mut self, prefregex: Option<&Matcher>, text: &str) -> Verdict {
        self.content_start = None;
        let Some(prefregex) = prefregex else {
            return self.candidates(text);
        };
        let start = match &mut self.head {
            Some(head) => {
                let input = head.input(text);
                match head.dfa.try_search_fwd(&mut head.cache, &input) {
                    Ok(None) => return Verdict::Reject,
                    // `head.` matches exactly where the whole prefregex does, and its `.` is
                    // the content's first character (see `Matcher::content_start`).
                    Ok(Some(m)) => {
                        let start = text[..m.offset()]
                            .chars()
                            .next_back()
                            .map(|c| m.offset() - c.len_utf8());
                        if head.anchored == Anchored::Yes {
                            self.content_start = start;
                        }
                        start
                    }
                    Err(_) => prefregex.content_start(text).flatten(),
                }
            }
            None => match prefregex.content_start(text) {
                None => return Verdict::Reject,
                Some(start) => start,
            },
        };
        match start {
            Some(start) => self.candidates(&text[start..]),
            None => match &self.unanchored {
                Some(set) if !set.is_match(text) => Verdict::Reject,
                _ => Verdict::MayMatch,
            },
        }
    }

    /// Which supersets match `hay` (the content, or the whole text without a prefregex).
    fn candidates(&mut self, hay: &str) -> Verdict {
        let set = &mut self.set;
        let input = set.input(hay);
        if set.dfa.pattern_len() == 1 {
            // One pattern: no set to tell apart. Searched leftmost-first to its end, it gives
            // the failregex's own match when it is exact and anchored (its match starts where
            // the search does), which the captures then need not search for again.
            let known = self.exact & 1 != 0 && set.anchored == Anchored::Yes;
            return match set.dfa.try_search_fwd(&mut set.cache, &input) {
                Ok(None) => Verdict::Reject,
                Ok(Some(m)) => Verdict::Any(known.then_some(m.offset())),
                Err(_) => Verdict::MayMatch,
            };
        }
        let found = &mut self.found;
        found.clear();
        match set
            .dfa
            .try_which_overlapping_matches(&mut set.cache, &input, found)
        {
            Ok(()) if found.is_empty() => Verdict::Reject,
            Ok(()) if found.capacity() <= 128 => Verdict::Candidates(Candidates(
                found.iter().fold(0, |bits, p| bits | 1 << p.as_usize()),
            )),
            Ok(()) => Verdict::Any(None),
            Err(_) => Verdict::MayMatch,
        }
    }
}

/// The failregexes (by index, below 128) that may match the text they run on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidates(u128);

impl Candidates {
    /// The indexes, in increasing order.
    pub(crate) fn iter(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            let i = bits.trailing_zeros() as usize;
            bits &= bits.checked_sub(1)?;
            Some(i)
        })
    }
}

/// The screen's answer for one line.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// No failregex can match the line.
    Reject,
    /// Only these failregexes can match the text they run on: the prefregex's content, or the
    /// whole text without a prefregex, which is exactly what the screen saw.
    Candidates(Candidates),
    /// As `Candidates`, with every failregex a candidate; for a filter of one failregex, where
    /// its match (starting at the text's start) ends, when the screen knows it exactly.
    Any(Option<usize>),
    /// Some failregex may match; which, the screen cannot tell.
    MayMatch,
}

/// A pattern matching a superset of what `pattern` matches, in regex syntax; without
/// `keep_anchors`, line and text anchors and word boundaries are dropped too.
fn superset(pattern: &str, keep_anchors: bool) -> Option<String> {
    // Parsing tells whether the regex crate takes the pattern as it is (compiling it here
    // would double the filter's start-up; the set below compiles it).
    if keep_anchors && regex_syntax::Parser::new().parse(pattern).is_ok() {
        return Some(pattern.to_string());
    }
    let tree = Expr::parse_tree(pattern).ok()?;
    let expr = widen(tree.expr, keep_anchors);
    let mut out = String::new();
    expr.to_str(&mut out, 0);
    Some(out)
}

fn any_text() -> Expr {
    Expr::Repeat {
        child: Box::new(Expr::Any {
            newline: true,
            crlf: false,
        }),
        lo: 0,
        hi: usize::MAX,
        greedy: true,
    }
}

/// Rewrites `expr` into a linear expression that matches at least every string it matches.
fn widen(expr: Expr, keep_anchors: bool) -> Expr {
    let w = |e: Expr| widen(e, keep_anchors);
    match expr {
        // Only the assertions the regex crate has (and `to_str` prints) are kept.
        Expr::Assertion(
            a @ (Assertion::StartText
            | Assertion::EndText
            | Assertion::StartLine { crlf: false }
            | Assertion::EndLine { crlf: false }
            | Assertion::WordBoundary
            | Assertion::NotWordBoundary
            | Assertion::LeftWordHalfBoundary
            | Assertion::RightWordHalfBoundary),
        ) if keep_anchors => Expr::Assertion(a),
        Expr::Empty | Expr::Assertion(_) | Expr::LookAround(..) => Expr::Empty,
        e @ (Expr::Any { .. } | Expr::Literal { .. } | Expr::Delegate { .. }) => e,
        Expr::Concat(items) => Expr::Concat(items.into_iter().map(w).collect()),
        Expr::Alt(items) => Expr::Alt(items.into_iter().map(w).collect()),
        Expr::Group(inner) => Expr::Group(Arc::new(w(Arc::unwrap_or_clone(inner)))),
        Expr::Repeat {
            child,
            lo,
            hi,
            greedy,
        } => Expr::Repeat {
            child: Box::new(w(*child)),
            lo,
            hi,
            greedy,
        },
        Expr::AtomicGroup(inner) => w(*inner),
        Expr::Conditional {
            condition,
            true_branch,
            false_branch,
        } => {
            let yes = w(*true_branch);
            Expr::Alt(vec![
                Expr::Concat(vec![w(*condition), yes.clone()]),
                yes,
                w(*false_branch),
            ])
        }
        // Backreferences and every other construct: any text at all.
        _ => any_text(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn screen(pref: Option<&Matcher>, fail: &[&str]) -> Screen {
        Screen::new(pref, fail).expect("screen builds")
    }

    #[test]
    fn lookaround_backrefs_and_conditionals_widen_to_supersets() {
        let fail = [
            r"^user (?P<u>\w+)(?! from ) from (?:(?P<ip>\d+)|x) \1",
            r"^(?P<a>a)?(?(a)b|c)d(?m:$)",
        ];
        let mut s = screen(None, &fail);
        assert!(s.may_match(None, "user bob from 12 12\n"));
        assert!(s.may_match(None, "user bob from 12 99\n"), "a superset");
        assert!(s.may_match(None, "abd\n") && s.may_match(None, "cd\n"));
        assert!(
            !s.may_match(None, "prefix user bob from 12 12\n"),
            "anchored"
        );
        assert!(!s.may_match(None, "nothing like it\n"));
        for p in fail {
            assert!(!superset(p, false).expect("widens").contains('^'));
        }
    }

    #[test]
    fn the_prefregex_must_match_and_the_failregexes_run_on_its_content() {
        let pref = Matcher::compile(r"^host sshd\[\d+\]: (?P<content>.+)$", false).expect("pref");
        assert!(pref.has_content_head());
        let mut s = screen(
            Some(&pref),
            &[r"^Failed password for \S+ from \d+", r"^Invalid user"],
        );
        assert!(s.may_match(Some(&pref), "host sshd[1]: Failed password for x from 1\n"));
        assert!(s.may_match(Some(&pref), "host sshd[1]: Invalid user x\n"));
        assert!(!s.may_match(Some(&pref), "host sshd[1]: Accepted key\n"));
        assert!(!s.may_match(Some(&pref), "host sshd[1]: x Invalid user x\n"));
        assert!(!s.may_match(Some(&pref), "host cron[1]: Invalid user x\n"));
    }
}
