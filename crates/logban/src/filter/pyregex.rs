//! Python `re` patterns (as fail2ban writes them) translated for Rust engines.
//!
//! Most patterns become plain [`regex`] patterns (linear time). Constructs that need
//! backtracking (lookaround that no rewrite removes, backreferences, conditionals, atomic groups)
//! are compiled with [`fancy_regex`] under a backtrack budget; a blown budget is "no match" plus
//! a warning. See the crate README for the list of constructs and how each is handled.

use std::sync::Arc;

/// Steps a backtracking pattern may take on one haystack before it is abandoned.
pub const BACKTRACK_LIMIT: usize = 100_000;

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

/// A compiled pattern: linear-time when possible, else backtracking with a budget.
#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    engine: Engine,
    names: Arc<[Option<String>]>,
    source: Arc<str>,
}

#[derive(Debug, Clone)]
enum Engine {
    Linear(regex::Regex),
    Backtracking(Box<fancy_regex::Regex>),
}

/// Capture spans of one match, indexed like the pattern's groups.
#[derive(Debug, Clone)]
pub(crate) struct Captures {
    pub(crate) spans: Vec<Option<(usize, usize)>>,
    pub(crate) names: Arc<[Option<String>]>,
}

impl Captures {
    /// The span of the named group, if it took part.
    pub(crate) fn name(&self, name: &str) -> Option<(usize, usize)> {
        let idx = self.names.iter().position(|n| n.as_deref() == Some(name))?;
        self.spans.get(idx).copied().flatten()
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
            let re = regex::RegexBuilder::new(&t.pattern)
                .multi_line(multiline)
                .size_limit(64 << 20)
                .build()
                .map_err(|e| e.to_string())?;
            let names: Arc<[Option<String>]> =
                re.capture_names().map(|n| n.map(str::to_string)).collect();
            return Ok(Self {
                engine: Engine::Linear(re),
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
        let names: Arc<[Option<String>]> =
            re.capture_names().map(|n| n.map(str::to_string)).collect();
        Ok(Self {
            engine: Engine::Backtracking(Box::new(re)),
            names,
            source: py.into(),
        })
    }

    /// True when the pattern runs on the backtracking engine.
    pub(crate) fn is_backtracking(&self) -> bool {
        matches!(self.engine, Engine::Backtracking(_))
    }

    /// The group names, by index.
    pub(crate) fn names(&self) -> &[Option<String>] {
        &self.names
    }

    /// Searches `hay` (Python's `re.search`); a blown backtrack budget counts as no match.
    pub(crate) fn search(&self, hay: &str) -> Option<Captures> {
        self.search_at(hay, 0)
    }

    /// Searches `hay` from byte offset `start`.
    pub(crate) fn search_at(&self, hay: &str, start: usize) -> Option<Captures> {
        match &self.engine {
            Engine::Linear(re) => {
                // The DFA rejects most lines without allocating capture slots.
                re.find_at(hay, start)?;
                let caps = re.captures_at(hay, start)?;
                Some(Captures {
                    spans: (0..caps.len())
                        .map(|i| caps.get(i).map(|m| (m.start(), m.end())))
                        .collect(),
                    names: self.names.clone(),
                })
            }
            Engine::Backtracking(re) => match re.captures_from_pos(hay, start) {
                Ok(Some(caps)) => Some(Captures {
                    spans: (0..caps.len())
                        .map(|i| caps.get(i).map(|m| (m.start(), m.end())))
                        .collect(),
                    names: self.names.clone(),
                }),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(pattern = %self.source, error = %e, "regex gave up (backtrack budget); counted as no match");
                    None
                }
            },
        }
    }

    /// Span of the first match from `start`, without captures.
    pub(crate) fn find_at(&self, hay: &str, start: usize) -> Option<(usize, usize)> {
        match &self.engine {
            Engine::Linear(re) => re.find_at(hay, start).map(|m| (m.start(), m.end())),
            Engine::Backtracking(_) => self.search_at(hay, start).map(|c| c.whole()),
        }
    }

    /// The `regex` pattern when this runs on the linear engine (for a [`regex::RegexSet`]).
    pub(crate) fn linear_pattern(&self) -> Option<&str> {
        match &self.engine {
            Engine::Linear(re) => Some(re.as_str()),
            Engine::Backtracking(_) => None,
        }
    }

    /// True when the pattern matches somewhere in `hay`.
    pub(crate) fn is_match(&self, hay: &str) -> bool {
        match &self.engine {
            Engine::Linear(re) => re.is_match(hay),
            Engine::Backtracking(re) => match re.is_match(hay) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(pattern = %self.source, error = %e, "regex gave up (backtrack budget); counted as no match");
                    false
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn backtracking_budget_blown_is_no_match() {
        let m = Matcher::compile(r"^(a+)+\1$", false).expect("compiles");
        assert!(m.is_backtracking());
        let hostile = format!("{}b", "a".repeat(64));
        assert!(m.search(&hostile).is_none());
    }
}
