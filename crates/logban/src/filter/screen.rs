//! Reject first: DFA passes decide that no failregex can match a line, before any capture,
//! copy or allocation.
//!
//! Each failregex `R` gets a *superset* pattern `R'` that matches every string `R` matches, and
//! runs on the regex crate's DFAs: lookaround becomes empty, backreferences, atomic groups and
//! other backtracking constructs become `(?s:.*)`, and a conditional `(?(c)yes|no)` becomes
//! `c yes|yes|no`. The supersets form one [`regex::RegexSet`].
//!
//! Where the failregexes run on the prefregex's `<F-CONTENT>` (fail2ban's usual
//! `^…<F-CONTENT>.+</F-CONTENT>$`), the prefregex's head is found with a DFA (no captures),
//! which gives where the content starts, and the supersets run anchored on the content exactly
//! as the failregexes would. Otherwise they run on the whole text with their anchors and word
//! boundaries dropped too (still a superset on any substring). A line the screen rejects yields
//! nothing, exactly as the full path would.

use std::sync::Arc;

use fancy_regex::{Assertion, Expr};

use super::pyregex::Matcher;

/// Texts up to this long go straight to the overlapping set search.
const SHORT_TEXT: usize = 256;

/// The screen of one filter.
#[derive(Debug, Clone)]
pub(crate) struct Screen {
    /// The failregexes' supersets, anchors kept: for the content, or the whole text without a
    /// prefregex.
    anchored: regex::RegexSet,
    /// The supersets without anchors, for a prefregex whose content is not found by a DFA.
    unanchored: Option<regex::RegexSet>,
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
        let unanchored = match prefregex {
            Some(p) if !p.has_content_head() => Some(set(&widened(false)?)?),
            _ => None,
        };
        Some(Self {
            anchored: set(&widened(true)?)?,
            unanchored,
        })
    }

    /// False only when no failregex can match `text` (the line without its date, plus `\n`).
    #[cfg(test)]
    pub(crate) fn may_match(&self, prefregex: Option<&Matcher>, text: &str) -> bool {
        !matches!(self.verdict(prefregex, text), Verdict::Reject)
    }

    /// What one DFA pass over `text` (the line without its date, plus `\n`) tells.
    pub(crate) fn verdict(&self, prefregex: Option<&Matcher>, text: &str) -> Verdict {
        let candidates = |hay: &str| {
            // One pattern: no set to tell apart. A long text: the plain search, which may stop
            // early, rejects most lines before the overlapping one (which runs to the end).
            if (self.anchored.len() == 1 || hay.len() > SHORT_TEXT) && !self.anchored.is_match(hay)
            {
                return Verdict::Reject;
            }
            if self.anchored.len() == 1 {
                return Verdict::Any;
            }
            let found = self.anchored.matches(hay);
            if found.matched_any() {
                Verdict::Candidates(found)
            } else {
                Verdict::Reject
            }
        };
        let Some(prefregex) = prefregex else {
            return candidates(text);
        };
        match prefregex.content_start(text) {
            None => Verdict::Reject,
            Some(Some(start)) => candidates(&text[start..]),
            Some(None) => match &self.unanchored {
                Some(set) if !set.is_match(text) => Verdict::Reject,
                _ => Verdict::MayMatch,
            },
        }
    }
}

/// The screen's answer for one line.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// No failregex can match the line.
    Reject,
    /// Only these failregexes (by index) can match the text they run on: the prefregex's
    /// content, or the whole text without a prefregex, which is exactly what the screen saw.
    Candidates(regex::SetMatches),
    /// As `Candidates`, with every failregex a candidate.
    Any,
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
        let s = screen(None, &fail);
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
        let s = screen(
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
