//! Linear rewrites of failregexes that fail2ban writes with conditionals and lookaheads, so
//! that they run on the DFA engines (linear time, any line length) instead of backtracking.
//!
//! The stock sshd filter's "Failed ..." failregexes (`cmnfailre`, and
//! `cmnfailre-failed-pub-invalid`) have this shape:
//!
//! ```text
//! PRE(?P<cond_inv>INV)?<F-USER>(?P<cond_user>\S+)|(?(cond_inv)(?:(?! from ).)*?|ELSE)</F-USER>MID(?(cond_user): |(?:(?:(?! from ).)*)$)
//! PRE<F-USER>(?P<cond_user>\S+)|(?:(?! from ).)*?</F-USER>MID(?(cond_user): |(?:(?:(?! from ).)*)$)
//! ```
//!
//! where `MID` starts with ` from `. A backtracking engine tries its choices in order: with
//! `cond_inv` (greedy `?`) before without, `cond_user`'s branch before the other. The rewrite
//! spells out those four (or two) cases as alternatives in the same order, each with its
//! conditionals decided, so a leftmost-first engine makes the same choices and reports the same
//! groups. Names repeat across the alternatives; they are numbered (`user__dup1`) for the
//! regex crate, and [`base_name`] folds them back (only one alternative takes part in a match).
//!
//! The lookaheads become exact regular languages over the line (`.` is any character but
//! `\n`):
//! - `(?:(?! from ).)*` up to the end of the line is a text without ` from ` ([`NO_FROM`],
//!   the states of a matcher of ` from ` written out);
//! - `(?:(?! from ).)*?` followed by ` from ` is a text without ` from ` that does not end in
//!   ` from` (whose last five characters and the next ` ` would be an earlier ` from `); there
//!   is exactly one such text before the ` from ` that follows, so lazy or greedy is the same
//!   ([`USER_NO_FROM`]).
//!
//! The rewrite is checked against fancy-regex (the original patterns) on generated lines by the
//! tests below.

/// `(?!…)`-free regex (Python syntax) for "no ` from ` in the text": every path of a ` from `
/// matcher that returns to its start, then the states short of a full match.
const NO_FROM: &str = concat!(
    r"(?:[^ \n]| (?:(?:fro|fr|f)? )*(?:[^ f\n]|f[^ r\n]|fr[^ o\n]|fro[^ m\n]|from[^ \n]))*",
    r"(?: (?:(?:fro|fr|f)? )*(?:fro|from|fr|f)?)?"
);

/// As [`NO_FROM`], and not ending in ` from` (see the module docs).
const USER_NO_FROM: &str = concat!(
    r"(?:[^ \n]| (?:(?:fro|fr|f)? )*(?:[^ f\n]|f[^ r\n]|fr[^ o\n]|fro[^ m\n]|from[^ \n]))*",
    r"(?: (?:(?:fro|fr|f)? )*(?:fro|fr|f)?)?"
);

const LAZY_NO_FROM: &str = r"(?:(?! from ).)*?";
const TAIL: &str = r"(?(cond_user): |(?:(?:(?! from ).)*)$)";
const USER_OPEN: &str = r"<F-USER>(?P<cond_user>\S+)|";
const INV_OPEN: &str = "(?P<cond_inv>";
const COND_INV: &str = "(?(cond_inv)";

/// The linear rewrite of `failregex` (fail2ban syntax, tags not yet resolved), when it has one
/// of the shapes of the module docs; its group names repeat (see [`number_duplicate_groups`]).
pub(crate) fn linear_conditionals(failregex: &str) -> Option<String> {
    let head = failregex.strip_suffix(TAIL)?;
    let (before_user, user_and_mid) = head.split_once(USER_OPEN)?;
    let (user_alt, mid) = user_and_mid.split_once("</F-USER>")?;
    let plain = |s: &str| !s.contains("cond_") && !s.contains("(?(") && !s.contains("F-USER");
    if !mid.starts_with(" from ") || !plain(mid) || has_top_level_bar(mid) {
        return None;
    }
    let branch = |user: &str, tail: &str| format!("<F-USER>{user}</F-USER>{mid}{tail}");
    let with_user = branch(r"(?P<cond_user>\S+)", ": ");
    let no_from_end = format!("(?:{NO_FROM})$");
    if user_alt == LAZY_NO_FROM {
        if !plain(before_user) {
            return None;
        }
        let without = branch(USER_NO_FROM, &no_from_end);
        return Some(format!("{before_user}(?:{with_user}|{without})"));
    }
    let else_branch = user_alt
        .strip_prefix(COND_INV)?
        .strip_prefix(LAZY_NO_FROM)?
        .strip_prefix('|')?
        .strip_suffix(')')?;
    let (pre, inv) = before_user.strip_suffix(")?")?.split_once(INV_OPEN)?;
    let simple = |s: &str| plain(s) && !s.contains(['(', ')', '|']);
    if !plain(pre) || !simple(inv) || !simple(else_branch) {
        return None;
    }
    let invalid = branch(USER_NO_FROM, &no_from_end);
    let other = branch(else_branch, &no_from_end);
    Some(format!(
        "{pre}(?:{INV_OPEN}{inv})(?:{with_user}|{invalid})|(?:{with_user}|{other}))"
    ))
}

/// Whether `pattern` has a `|` outside any group or class (then it would not stay one piece
/// inside an alternative).
fn has_top_level_bar(pattern: &str) -> bool {
    let (mut depth, mut class, mut escaped) = (0i32, false, false);
    for c in pattern.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '[' => class = true,
            ']' => class = false,
            '(' if !class => depth += 1,
            ')' if !class => depth -= 1,
            '|' if !class && depth <= 0 => return true,
            _ => {}
        }
    }
    depth != 0
}

/// Numbers the second and later groups of the same name (`(?P<user>` → `(?P<user__dup1>`).
pub(crate) fn number_duplicate_groups(pattern: &str) -> String {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut out = String::with_capacity(pattern.len() + 64);
    let mut rest = pattern;
    while let Some(at) = rest.find("(?P<") {
        let (before, group) = rest.split_at(at + 4);
        out.push_str(before);
        let Some(end) = group.find('>') else {
            rest = group;
            continue;
        };
        let name = &group[..end];
        out.push_str(name);
        let n = seen.entry(name).or_insert(0);
        if *n > 0 {
            out.push_str(&format!("{DUP}{n}"));
        }
        *n += 1;
        rest = &group[end..];
    }
    out.push_str(rest);
    out
}

const DUP: &str = "__dup";

/// A group's name with the number [`number_duplicate_groups`] gave it removed.
pub(crate) fn base_name(name: &str) -> &str {
    match name.rsplit_once(DUP) {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::super::pyregex::Matcher;
    use super::super::{UseDns, resolve_tags};
    use super::*;

    /// sshd 1.0.2's two failregexes, as `load_filter` interpolates them (mode normal).
    const FAILED: &str = r"^Failed (?:<F-NOFAIL>publickey</F-NOFAIL>|\S+) for (?P<cond_inv>invalid user )?<F-USER>(?P<cond_user>\S+)|(?(cond_inv)(?:(?! from ).)*?|[^:]+)</F-USER> from <HOST>(?: (?:port \d+|on \S+)){0,2}(?: ssh\d*)?(?(cond_user): |(?:(?:(?! from ).)*)$)";
    const FAILED_PUB: &str = r"^Failed publickey for invalid user <F-USER>(?P<cond_user>\S+)|(?:(?! from ).)*?</F-USER> from <HOST>(?: (?:port \d+|on \S+)){0,2}(?: ssh\d*)?(?(cond_user): |(?:(?:(?! from ).)*)$)";

    /// Named groups that took part, by base name.
    fn groups(m: &Matcher, line: &str) -> Option<Vec<(String, (usize, usize))>> {
        let caps = m.search(line)?;
        let mut out: Vec<_> = caps
            .names
            .iter()
            .zip(&caps.spans)
            .filter_map(|(n, s)| Some((base_name(n.as_deref()?).to_string(), (*s)?)))
            .collect();
        out.sort();
        Some(out)
    }

    fn lines() -> Vec<String> {
        let mut out = Vec::new();
        let users = [
            "root",
            "a b",
            "x from y",
            "a:b",
            " from",
            "from",
            "a from",
            "x fro",
            "",
            "a  from b",
            "ünï",
            "a: b",
            "x from",
            "a fromb",
            " ",
            "from from",
        ];
        let hosts = ["192.0.2.1", "2001:db8::1", "host.example"];
        let ports = ["", " port 22", " port 22 on eth0", " on x port 1"];
        let tails = [
            "",
            ": x",
            " from 1.2.3.4",
            " extra",
            ": ",
            " [preauth]",
            " fro",
            " from",
            " ssh2",
        ];
        for method in ["password", "publickey", "keyboard-interactive/pam"] {
            for inv in ["invalid user ", ""] {
                for user in users {
                    for host in hosts {
                        for port in ports {
                            for ssh in ["", " ssh2"] {
                                for tail in tails {
                                    out.push(format!(
                                        "Failed {method} for {inv}{user} from {host}{port}{ssh}{tail}\n"
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn agree(failregex: &str) {
        let original = Matcher::compile(&resolve_tags(failregex, UseDns::Report), false)
            .expect("original compiles");
        assert!(original.is_backtracking());
        let rewritten = linear_conditionals(failregex).expect("the shape is recognised");
        let rewritten = number_duplicate_groups(&resolve_tags(&rewritten, UseDns::Report));
        let rewritten = Matcher::compile(&rewritten, false).expect("rewrite compiles");
        assert!(!rewritten.is_backtracking(), "the rewrite is linear");
        let (mut matched, mut total) = (0, 0);
        for line in lines() {
            let want = groups(&original, &line);
            assert_eq!(groups(&rewritten, &line), want, "{line:?}");
            total += 1;
            matched += usize::from(want.is_some());
        }
        assert!(
            matched > 100 && matched < total,
            "{matched} of {total} match"
        );
    }

    #[test]
    fn sshd_failed_rewrite_agrees_with_the_backtracking_original() {
        agree(FAILED);
    }

    #[test]
    fn sshd_failed_publickey_rewrite_agrees_with_the_backtracking_original() {
        agree(FAILED_PUB);
    }

    #[test]
    fn other_shapes_are_left_alone() {
        assert!(linear_conditionals(r"^Failed for <F-USER>\S+</F-USER> from <HOST>").is_none());
        let odd_mid = FAILED_PUB.replace(" from <HOST>", " by <HOST>");
        assert!(linear_conditionals(&odd_mid).is_none());
    }

    #[test]
    fn duplicate_groups_are_numbered_and_folded_back() {
        let p = number_duplicate_groups("(?P<a>x)|(?P<a>y)(?P<b>z)(?P<a>w)");
        assert_eq!(p, "(?P<a>x)|(?P<a__dup1>y)(?P<b>z)(?P<a__dup2>w)");
        assert_eq!(base_name("a__dup2"), "a");
        assert_eq!(base_name("a__dupx"), "a__dupx");
        assert_eq!(base_name("user"), "user");
    }
}
