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
//!
//! Each byte a walk reads costs a table lookup that waits for the one before, so the literals
//! of the patterns are not walked: where the DFA can go on with one byte only, then one only
//! again (`limiting requests, excess: `), the walk compares those bytes at once and jumps to
//! the state after them (nginx-limit-req: 10 % less CPU a line). The walks read a table of
//! their own (see `Table`), whose entries flag where they must stop.

use std::sync::Arc;

use fancy_regex::{Assertion, Expr};
use regex_automata::hybrid::LazyStateID;
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson;
use regex_automata::util::{start, syntax};
use regex_automata::{Anchored, MatchKind};

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
    /// The transitions met so far, and the literal runs.
    table: Table,
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
            anchored,
            table: Table::new(&dfa),
            dfa,
        })
    }

    /// Runs the DFA over the text `body[from..]` followed by `\n` (a text of its own, nothing
    /// behind its start), as the regex crate's forward searches do: from the start state (of
    /// the search's anchoring), byte by byte, then the end of the text. Each match state is
    /// handed to `on_match` with the end of the match it tells (match states come one byte
    /// late), which says whether to stop there; a dead state stops the run.
    ///
    /// `Err` where the DFA gives up (a quit byte: non-ASCII under a Unicode word boundary,
    /// or a cache that fills too often), as the searches' errors.
    ///
    /// The searches' own loops, on lines of 50 to 200 bytes, spend more on their set-up, their
    /// per-byte bookkeeping and (overlapping) one call for each match than on the DFA's
    /// steps; the `\n` is read here without copying the line to append it; and the walk
    /// goes through the [`Table`] of transitions met so far, which jumps over literal runs.
    fn run(
        &mut self,
        body: &[u8],
        from: usize,
        mut on_match: impl FnMut(&DFA, &Cache, LazyStateID, usize) -> bool,
    ) -> Result<(), ()> {
        let rest = body.get(from..).ok_or(())?;
        let (dfa, cache, table) = (&self.dfa, &mut self.cache, &mut self.table);
        let mut state = table.start(dfa, cache, self.anchored)?;
        let mut at = 0;
        loop {
            // The common case: known transitions to states that are neither tagged nor the
            // start of a run.
            while let Some(&b) = rest.get(at) {
                let next = table.next(state, b);
                if next & SLOW != 0 {
                    break;
                }
                state = next;
                at += 1;
            }
            let Some(&b) = rest.get(at) else { break };
            state = table.next_slow(dfa, cache, state, b)?;
            let info = table.info(state);
            let sid = info.lazy;
            if sid.is_match() && on_match(dfa, cache, sid, at) || sid.is_dead() {
                return Ok(());
            }
            if sid.is_quit() {
                return Err(());
            }
            at += 1;
            if let Some(run) = &info.run {
                let end = at + run.bytes.len();
                match rest.get(at..end) {
                    Some(bytes) if bytes == &run.bytes[..] => {
                        state = run.end;
                        at = end;
                    }
                    // Every other byte leads to the dead state.
                    Some(_) => return Ok(()),
                    // The text ends inside the run: walked byte by byte.
                    None => {}
                }
            }
        }
        // The `\n` and the end of the text, on the lazy DFA itself.
        let mut sid = table.info(state).lazy;
        for (unit, at) in [(Some(b'\n'), rest.len()), (None, rest.len() + 1)] {
            sid = match unit {
                Some(b) => dfa.next_state(cache, sid, b),
                None => dfa.next_eoi_state(cache, sid),
            }
            .map_err(drop)?;
            table.check_clears(cache)?;
            if sid.is_match() && on_match(dfa, cache, sid, at) || sid.is_dead() {
                return Ok(());
            }
            if sid.is_quit() {
                return Err(());
            }
        }
        Ok(())
    }
}

/// The transitions of a lazy DFA met so far, in a table of its own whose entries flag the
/// states a walk must stop at (tagged ones: match, dead, quit; and the starts of literal
/// runs), so the common step is one lookup and one test, as in the lazy DFA's own loop.
///
/// A literal run: from a state where one byte alone does not lead to the dead state, then
/// another such state, and so on (a literal of the pattern, such as
/// `limiting requests, excess: `); the walk compares its bytes at once and goes to the state
/// after them, instead of one dependent lookup for each byte.
///
/// The table keeps the lazy DFA's state ids, which its cache renumbers when it is cleared:
/// the table is emptied then (and the walk gives up on that line).
#[derive(Debug, Clone)]
struct Table {
    /// By byte: its class in the lazy DFA.
    classes: Box<[u8; 256]>,
    /// By byte class: whether it holds one byte alone.
    single: Vec<bool>,
    /// Entries a state takes in `trans` (log 2).
    stride2: u32,
    /// By state (its number shifted by `stride2`) and byte class: the next state's number,
    /// with [`SLOW`] when the walk stops there; [`UNKNOWN`] when not computed yet.
    trans: Vec<u32>,
    /// By state number shifted by `stride2`.
    states: Vec<StateInfo>,
    /// The numbers of the lazy DFA's states met.
    numbers: std::collections::HashMap<LazyStateID, u32, foldhash::fast::RandomState>,
    /// The start state's number (a lazy DFA is searched with one anchoring).
    start: Option<u32>,
    /// The lazy DFA cache's clear count when the table was filled.
    clears: usize,
}

/// What the table knows of one state.
#[derive(Debug, Clone)]
struct StateInfo {
    lazy: LazyStateID,
    run: Option<Run>,
}

/// One literal run: its bytes and the state after them.
#[derive(Debug, Clone)]
struct Run {
    bytes: Box<[u8]>,
    end: u32,
}

/// In a table entry: the walk stops at this state (tagged, or the start of a run).
const SLOW: u32 = 1 << 31;

/// A table entry not computed yet.
const UNKNOWN: u32 = u32::MAX;

/// Runs shorter than this are walked byte by byte (a comparison costs more).
const MIN_RUN: usize = 3;

/// Runs stop at this length (the next one takes over).
const MAX_RUN: usize = 64;

/// The most entries in a table, 16 MiB (beyond, it is emptied and filled again): the room
/// the set's lazy DFA has.
const MAX_ENTRIES: usize = 4 << 20;

impl Table {
    fn new(dfa: &DFA) -> Self {
        let byte_classes = dfa.byte_classes();
        let mut classes = Box::new([0u8; 256]);
        let mut sizes = vec![0u16; 256];
        for b in 0..=255u8 {
            let class = byte_classes.get(b);
            classes[usize::from(b)] = class;
            sizes[usize::from(class)] += 1;
        }
        let stride = byte_classes.alphabet_len().next_power_of_two();
        Self {
            classes,
            single: sizes.iter().map(|&n| n == 1).collect(),
            stride2: stride.trailing_zeros(),
            trans: Vec::new(),
            states: Vec::new(),
            numbers: Default::default(),
            start: None,
            clears: 0,
        }
    }

    /// The entry for `b` from the state numbered `state` (never flagged).
    #[inline]
    fn next(&self, state: u32, b: u8) -> u32 {
        let class = self.classes[usize::from(b)];
        self.trans
            .get(state as usize + usize::from(class))
            .copied()
            .unwrap_or(UNKNOWN)
    }

    fn info(&self, state: u32) -> &StateInfo {
        &self.states[(state >> self.stride2) as usize]
    }

    /// Empties the table when the cache was cleared since it was filled: `Err`, as the
    /// states a walk holds are gone.
    fn check_clears(&mut self, cache: &Cache) -> Result<(), ()> {
        if cache.clear_count() == self.clears {
            return Ok(());
        }
        self.clear();
        self.clears = cache.clear_count();
        Err(())
    }

    fn clear(&mut self) {
        self.trans.clear();
        self.states.clear();
        self.numbers.clear();
        self.start = None;
    }

    /// The number of the start state for `anchored`, the same at every call.
    fn start(&mut self, dfa: &DFA, cache: &mut Cache, anchored: Anchored) -> Result<u32, ()> {
        if let Some(state) = self.start {
            return Ok(state);
        }
        let config = start::Config::new().anchored(anchored);
        let sid = dfa.start_state(cache, &config).map_err(drop)?;
        self.check_clears(cache)?;
        let state = self.number(dfa, cache, sid)? & !SLOW;
        self.start = Some(state);
        Ok(state)
    }

    /// The next state's number for `b` from `state` (without its flag), computing the entry
    /// when unknown.
    fn next_slow(&mut self, dfa: &DFA, cache: &mut Cache, state: u32, b: u8) -> Result<u32, ()> {
        let index = state as usize + usize::from(self.classes[usize::from(b)]);
        let entry = self.trans.get(index).copied().ok_or(())?;
        if entry != UNKNOWN {
            return Ok(entry & !SLOW);
        }
        let sid = dfa
            .next_state(cache, self.info(state).lazy, b)
            .map_err(drop)?;
        self.check_clears(cache)?;
        let next = self.number(dfa, cache, sid)?;
        if let Some(e) = self.trans.get_mut(index) {
            *e = next;
        }
        Ok(next & !SLOW)
    }

    /// The number of the lazy DFA's state `sid` in the table, with [`SLOW`] when a walk
    /// stops there; a state met for the first time gets its row (and its run).
    fn number(&mut self, dfa: &DFA, cache: &mut Cache, sid: LazyStateID) -> Result<u32, ()> {
        if let Some(&n) = self.numbers.get(&sid) {
            return Ok(n);
        }
        if self.trans.len() + (1 << self.stride2) > MAX_ENTRIES {
            // Emptied: the walk that holds states gives up.
            self.clear();
            return Err(());
        }
        let state = u32::try_from(self.trans.len()).map_err(drop)?;
        self.trans
            .resize(self.trans.len() + (1 << self.stride2), UNKNOWN);
        self.states.push(StateInfo {
            lazy: sid,
            run: None,
        });
        let mut number = state;
        if sid.is_tagged() {
            number |= SLOW;
        } else if let Some((bytes, end)) = self.run_from(dfa, cache, sid)? {
            // The run's end gets its number after this state has its own.
            self.numbers.insert(sid, number | SLOW);
            let end = self.number(dfa, cache, end)? & !SLOW;
            if let Some(info) = self.states.get_mut((state >> self.stride2) as usize) {
                info.run = Some(Run {
                    bytes: bytes.into(),
                    end,
                });
            }
            return Ok(number | SLOW);
        }
        self.numbers.insert(sid, number);
        Ok(number)
    }

    /// The literal run from the untagged state `sid` and the state after it, if at least
    /// [`MIN_RUN`] bytes long; it stops before a tagged state.
    fn run_from(
        &mut self,
        dfa: &DFA,
        cache: &mut Cache,
        sid: LazyStateID,
    ) -> Result<Option<(Vec<u8>, LazyStateID)>, ()> {
        let mut bytes = Vec::new();
        let mut end = sid;
        while bytes.len() < MAX_RUN {
            match self.only_byte(dfa, cache, end)? {
                Some((b, next)) if !next.is_tagged() => {
                    bytes.push(b);
                    end = next;
                }
                _ => break,
            }
        }
        Ok((bytes.len() >= MIN_RUN).then_some((bytes, end)))
    }

    /// The one byte that does not lead from the untagged state `sid` to the dead state, with
    /// the state it leads to; `None` when there are several (or a class of several bytes, or
    /// the quit state).
    fn only_byte(
        &mut self,
        dfa: &DFA,
        cache: &mut Cache,
        sid: LazyStateID,
    ) -> Result<Option<(u8, LazyStateID)>, ()> {
        let classes = dfa.byte_classes();
        let mut found = None;
        for unit in classes.representatives(..) {
            let Some(b) = unit.as_u8() else { continue };
            let next = dfa.next_state(cache, sid, b).map_err(drop)?;
            self.check_clears(cache)?;
            if next.is_dead() {
                continue;
            }
            let single = self.single.get(usize::from(classes.get(b)));
            if found.is_some() || next.is_quit() || single != Some(&true) {
                return Ok(None);
            }
            found = Some((b, next));
        }
        Ok(found)
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
    /// By failregex (below 128): its pattern is its own superset, so the set's answer for it is
    /// the failregex's own `is_match` on the same text.
    exact: u128,
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
            set,
            head,
            unanchored,
            exact,
        })
    }

    /// Whether a [`Verdict::Found`] naming failregex `i` among its candidates means that it
    /// matches the text it runs on (no superset was widened for it).
    pub(crate) fn is_exact(&self, i: usize) -> bool {
        i < 128 && self.exact & (1 << i) != 0
    }

    /// False only when no failregex can match `text` (the line without its date, plus `\n`).
    #[cfg(test)]
    pub(crate) fn may_match(&mut self, prefregex: Option<&Matcher>, text: &str) -> bool {
        let body = text.strip_suffix('\n').unwrap_or(text);
        let verdict = self.verdict(prefregex, "", body, &mut String::new());
        !matches!(verdict, Verdict::Reject)
    }

    /// What the DFA passes tell of a line whose date was found between `pre` and `post`
    /// (without a date, `pre` is empty and `post` the line): they read the text the
    /// failregexes see, `pre`, `post` and a `\n`, copied into `buf` only when `pre` is not
    /// empty or a fallback needs it whole.
    pub(crate) fn verdict(
        &mut self,
        prefregex: Option<&Matcher>,
        pre: &str,
        post: &str,
        buf: &mut String,
    ) -> Verdict {
        if pre.is_empty() {
            return self.verdict_on(prefregex, post.as_bytes(), move || {
                buf.clear();
                buf.push_str(post);
                buf.push('\n');
                buf
            });
        }
        buf.clear();
        buf.push_str(pre);
        buf.push_str(post);
        let body = buf.len();
        buf.push('\n');
        let text: &str = buf;
        self.verdict_on(prefregex, &text.as_bytes()[..body], move || text)
    }

    /// [`verdict`](Self::verdict) on the text `body` and `\n`; `text` gives that text whole
    /// (for the regex searches that the DFA passes fall back on).
    fn verdict_on<'t>(
        &mut self,
        prefregex: Option<&Matcher>,
        body: &[u8],
        text: impl FnOnce() -> &'t str,
    ) -> Verdict {
        let Some(prefregex) = prefregex else {
            return self.candidates(body, 0).unwrap_or(Verdict::MayMatch);
        };
        let start = match &mut self.head {
            Some(head) => {
                // Leftmost-first: the end of the last match before the DFA dies.
                let mut end = None;
                let walked = head.run(body, 0, |_, _, _, at| {
                    end = Some(at);
                    false
                });
                match (walked, end) {
                    (Ok(()), None) => return Verdict::Reject,
                    // `head.` matches exactly where the whole prefregex does, and its `.` is
                    // the content's first character (see `Matcher::content_start`).
                    (Ok(()), Some(end)) => Ok(Some((
                        char_start(body, end),
                        head.anchored == Anchored::Yes,
                    ))),
                    (Err(()), _) => Err(()),
                }
            }
            None => Err(()),
        };
        let start = match start {
            Ok(start) => start,
            Err(()) => {
                // The regex search instead, on the whole text (`body` and `\n`).
                let text = text();
                let body = &text.as_bytes()[..text.len().saturating_sub(1)];
                return match (self.head.is_some(), prefregex.content_start(text)) {
                    (false, None) => Verdict::Reject,
                    (_, Some(Some(start))) => {
                        self.candidates(body, start).unwrap_or(Verdict::MayMatch)
                    }
                    // Where the head's DFA gave up, no match goes to the set without anchors.
                    (true, None) | (_, Some(None)) => self.unanchored_verdict(text),
                };
            }
        };
        match start {
            Some((start, anchored)) => match self.candidates(body, start) {
                // An anchored head's match starts at the text's start: the prefregex's
                // captures can start from its content.
                Ok(Verdict::Found(found)) if anchored => Verdict::Found(Screened {
                    content_start: Some(start),
                    ..found
                }),
                Ok(verdict) => verdict,
                Err(()) => Verdict::MayMatch,
            },
            None => self.unanchored_verdict(text()),
        }
    }

    /// The supersets without anchors on the whole text, for a prefregex whose content the
    /// screen does not find.
    fn unanchored_verdict(&self, text: &str) -> Verdict {
        match &self.unanchored {
            Some(set) if !set.is_match(text) => Verdict::Reject,
            _ => Verdict::MayMatch,
        }
    }

    /// Which supersets match the text `body[from..]` and `\n` (the content, or the whole
    /// text without a prefregex); `Err` where the DFA gives up.
    fn candidates(&mut self, body: &[u8], from: usize) -> Result<Verdict, ()> {
        let known_end = self.exact & 1 != 0 && self.set.anchored == Anchored::Yes;
        let set = &mut self.set;
        let n = set.dfa.pattern_len();
        if n == 1 {
            // One pattern: no set to tell apart. Searched leftmost-first to its end, it gives
            // the failregex's own match when it is exact and anchored (its match starts where
            // the search does), which the captures then need not search for again.
            let mut end = None;
            set.run(body, from, |_, _, _, at| {
                end = Some(at);
                false
            })?;
            return Ok(match end {
                Some(end) => Verdict::Found(Screened {
                    candidates: None,
                    match_end: known_end.then_some(end),
                    content_start: None,
                }),
                None => Verdict::Reject,
            });
        }
        // Every pattern of each match state (once for a state met again), until all are in.
        let all = if n >= 128 { u128::MAX } else { (1 << n) - 1 };
        let mut bits = 0u128;
        let mut last = None;
        set.run(body, from, |dfa, cache, sid, _| {
            if last != Some(sid) {
                last = Some(sid);
                for i in 0..dfa.match_len(cache, sid) {
                    let p = dfa.match_pattern(cache, sid, i).as_usize();
                    bits |= 1u128.checked_shl(p as u32).unwrap_or(1 << 127);
                }
            }
            bits == all
        })?;
        Ok(match bits {
            0 => Verdict::Reject,
            bits => Verdict::Found(Screened {
                candidates: (n <= 128).then_some(Candidates(bits)),
                match_end: None,
                content_start: None,
            }),
        })
    }
}

/// Where the character that ends at `end` of the text `body` and `\n` starts.
fn char_start(body: &[u8], end: usize) -> usize {
    if end > body.len() {
        return body.len();
    }
    let mut at = end.saturating_sub(1);
    // Back over UTF-8 continuation bytes (`body` is text: at most three).
    while at > 0 && body.get(at).is_some_and(|b| b & 0xC0 == 0x80) {
        at -= 1;
    }
    at
}

/// The failregexes (by index, below 128) that may match the text they run on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidates(u128);

impl Candidates {
    /// Whether failregex `i` is one.
    pub(crate) fn contains(self, i: usize) -> bool {
        u32::try_from(i)
            .ok()
            .and_then(|i| self.0.checked_shr(i))
            .is_some_and(|bits| bits & 1 != 0)
    }

    /// Whether one after failregex `i` is.
    pub(crate) fn any_after(self, i: usize) -> bool {
        u32::try_from(i + 1)
            .ok()
            .and_then(|i| self.0.checked_shr(i))
            .is_some_and(|bits| bits != 0)
    }
}

/// What the screen found on the text the failregexes run on (the prefregex's content, or the
/// whole text without a prefregex), for a line it did not reject.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Screened {
    /// The failregexes that may match; `None`: every one.
    pub(crate) candidates: Option<Candidates>,
    /// For a filter of one failregex, where its match (starting at the text's start) ends,
    /// when the screen knows it exactly.
    pub(crate) match_end: Option<usize>,
    /// Where the prefregex's content starts, when its anchored head's DFA found it (the
    /// prefregex's match then starts at the text's start; see
    /// [`Matcher::search_with_content_at`]).
    pub(crate) content_start: Option<usize>,
}

/// The screen's answer for one line.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// No failregex can match the line.
    Reject,
    /// Some may (see [`Screened`]).
    Found(Screened),
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

    /// The patterns the screen says may match `pre`, `post` and `\n`: all of them for `Any`,
    /// none for `Reject`.
    fn screened(s: &mut Screen, pref: Option<&Matcher>, pre: &str, post: &str) -> Vec<usize> {
        let n = s.set.dfa.pattern_len();
        match s.verdict(pref, pre, post, &mut String::new()) {
            Verdict::Reject => Vec::new(),
            Verdict::Found(Screened {
                candidates: Some(c),
                ..
            }) => (0..n).filter(|&i| c.contains(i)).collect(),
            Verdict::Found(_) | Verdict::MayMatch => (0..n).collect(),
        }
    }

    #[test]
    fn the_dfa_walk_reads_the_newline_and_tells_exactly_which_patterns_match() {
        // Linear patterns are screened as they are: the candidates are exactly the patterns
        // the regex crate matches on the text (`pre`, `post`, `\n`), whether the `\n` and the
        // end of the text decide (`\s`, `$`, `\b`) or a byte before.
        let fail = [
            r"^foo\s",
            r"^foo$",
            r"^foo\b",
            r"^fo+ bar",
            r"^\w+ (?:bar|baz)\n",
            r"^caf\S+",
            r"^x+",
        ];
        let regexes: Vec<_> = fail
            .iter()
            .map(|p| regex::Regex::new(p).expect("re"))
            .collect();
        let mut several = screen(None, &fail);
        let lines = [
            ("", "foo"),
            ("", "foo bar"),
            ("fo", "o baz"),
            ("foo ", "bar"),
            ("", "café x"),
            ("", "xxxx"),
            ("", ""),
            ("x", ""),
            ("", "fooo barbaz"),
            ("", "foo\u{e9}"),
        ];
        for (pre, post) in lines {
            let text = format!("{pre}{post}\n");
            let want: Vec<usize> = (0..fail.len())
                .filter(|i| regexes[*i].is_match(&text))
                .collect();
            let got = screened(&mut several, None, pre, post);
            if text.is_ascii() {
                assert_eq!(got, want, "{text:?}");
            } else {
                // The DFA gives up on a non-ASCII byte under `\b`: all may match.
                assert!(want.iter().all(|i| got.contains(i)), "{text:?}");
            }
            // A set of one pattern takes the first match.
            for (i, p) in fail.iter().enumerate() {
                let mut one = screen(None, &[p]);
                let found = !screened(&mut one, None, pre, post).is_empty();
                assert!(
                    found == want.contains(&i) || found && !text.is_ascii(),
                    "{p} on {text:?}"
                );
            }
        }
    }

    #[test]
    fn the_content_starts_after_the_prefregex_head_wherever_the_date_was() {
        let pref =
            Matcher::compile(r"^h (?:\S+ )?d\[\d+\]: (?P<content>.+)$", false).expect("pref");
        let mut s = screen(Some(&pref), &[r"^Failed \S+\n$", r"^Failed", r"^é\s"]);
        // The date removed from the line start, or from its middle (`pre` and `post`).
        assert_eq!(
            screened(&mut s, Some(&pref), "", "h d[1]: Failed x"),
            [0, 1]
        );
        assert_eq!(
            screened(&mut s, Some(&pref), "h d[1]: Fai", "led x"),
            [0, 1]
        );
        assert_eq!(
            screened(&mut s, Some(&pref), "h ", "x d[1]: Failed x y"),
            [1]
        );
        assert_eq!(screened(&mut s, Some(&pref), "h d[1]: ", "é"), [2]);
        assert!(screened(&mut s, Some(&pref), "", "h d[1]: Accepted").is_empty());
        assert!(screened(&mut s, Some(&pref), "", "h c[1]: Failed x").is_empty());
        assert!(screened(&mut s, Some(&pref), "", "").is_empty());
    }

    #[test]
    fn candidates_say_which_failregexes_and_whether_one_comes_later() {
        let found = Candidates(1 | 1 << 5 | 1 << 127);
        let listed: Vec<usize> = (0..200).filter(|&i| found.contains(i)).collect();
        assert_eq!(listed, [0, 5, 127]);
        assert!(found.any_after(0) && found.any_after(5) && found.any_after(126));
        assert!(!found.any_after(127) && !found.any_after(500));
        assert!(!Candidates(1 << 3).any_after(3) && Candidates(1 << 3).any_after(2));
    }

    /// The limit_req failregex of the stock nginx-limit-req filter, `<HOST>` shortened.
    const LIMIT_REQ: &str = r#"^\s*\[[a-z]+\] \d+#\d+: \*\d+ limiting requests, excess: [\d\.]+ by zone "(?:[^"]+)", client: (?:(?P<ip4>(?:\d{1,3}\.){3}\d{1,3})|(?P<dns>[\w\-.^_]*\w)),"#;

    #[test]
    fn literal_runs_are_compared_at_once_and_a_cleared_cache_forgets_them() {
        let mut s = screen(None, &[LIMIT_REQ]);
        let line = r#" [error] 1079#1079: *17 limiting requests, excess: 29.557 by zone "login", client: 91.54.45.86, server: x"#;
        let end = line.find(", server").map(|e| e + 1);
        for _ in 0..2 {
            match s.candidates(line.as_bytes(), 0) {
                Ok(Verdict::Found(found)) => assert_eq!(found.match_end, end),
                other => panic!("{:?}", other.map(|_| ())),
            }
        }
        let table = &s.set.table;
        let runs: Vec<_> = table
            .states
            .iter()
            .filter_map(|state| Some(&state.run.as_ref()?.bytes[..]))
            .collect();
        assert_eq!(
            runs,
            [
                &b"limiting requests, excess: "[..],
                b"by zone \"",
                b", client: "
            ]
        );
        // As after a clear of the cache (its count moved on): the next walk that asks the
        // lazy DFA (a transition not in the table) gives up, and the table is emptied.
        s.set.table.clears = usize::MAX;
        assert!(
            s.candidates(b" [warn] 1#1: *1 delaying request", 0)
                .is_err()
        );
        assert!(s.set.table.states.is_empty() && s.set.table.numbers.is_empty());
        assert!(matches!(
            s.candidates(line.as_bytes(), 0),
            Ok(Verdict::Found(_))
        ));
    }

    proptest::proptest! {
        /// Texts cut from the pattern's literals and other bytes: partial runs, runs cut by
        /// the text's end, bytes that differ inside a run. The screen's verdict and match end
        /// are the regex crate's.
        #[test]
        fn walks_with_literal_runs_find_what_the_regex_crate_finds(
            lead in proptest::bool::ANY,
            parts in proptest::collection::vec(0usize..12, 0..12),
            cut in 0usize..4,
        ) {
            const PARTS: [&str; 12] = [
                " [error] 1#2: *3 ", "limiting requests, excess: ", "limiting req", "1.5 ",
                "by zone \"", "by zonE \"", "z\", client: ", "\", clie", "10.0.0.1,", "h-st,",
                "x", "\u{e9}",
            ];
            let regex = regex::Regex::new(LIMIT_REQ).expect("re");
            let mut s = screen(None, &[LIMIT_REQ]);
            for round in 0..2 {
                let lead = if lead { &[0, 1, 3, 4][..] } else { &[] };
                let mut text: String = lead.iter().chain(&parts).map(|&i| PARTS[i]).collect();
                let keep = text.len().saturating_sub(cut * round);
                while !text.is_char_boundary(keep.min(text.len())) { text.pop(); }
                text.truncate(keep.min(text.len()));
                let want = regex.find(&format!("{text}\n")).map(|m| m.end());
                match s.candidates(text.as_bytes(), 0) {
                    Ok(Verdict::Found(found)) => proptest::prop_assert_eq!(found.match_end, want),
                    Ok(Verdict::Reject) => proptest::prop_assert_eq!(None, want),
                    // Gave up (a non-ASCII byte under `\w`): the caller searches instead.
                    Ok(Verdict::MayMatch) | Err(()) => proptest::prop_assert!(!text.is_ascii()),
                }
            }
        }
    }
}
