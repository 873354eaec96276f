//! Compatibility with fail2ban's configuration: filter files (`filter.d/*.conf`) and
//! jail imports (`jail.conf` / `jail.local`).

mod ini;
mod jail_conf;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use ini::Config;
pub use jail_conf::{ImportedJail, import_jails, parse_duration};

use crate::filter::FilterDefinition;
use crate::{Error, Result};

/// The Definition options a filter file provides.
const FILTER_OPTIONS: &[&str] = &[
    "prefregex",
    "failregex",
    "ignoreregex",
    "maxlines",
    "datepattern",
    "journalmatch",
];

/// Splits `name[opt=val, opt2="v, 2"]` into the name and its options.
pub fn parse_filter_spec(spec: &str) -> Result<(String, BTreeMap<String, String>)> {
    let spec = spec.trim();
    let Some(open) = spec.find('[') else {
        return Ok((spec.to_string(), BTreeMap::new()));
    };
    let bad = |reason: &str| Error::Fail2banConfig {
        path: PathBuf::from(spec),
        reason: reason.to_string(),
    };
    let inner = spec[open + 1..]
        .strip_suffix(']')
        .ok_or_else(|| bad("filter options must end with `]`"))?;
    let mut opts = BTreeMap::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        let mut value = String::new();
        match chars.peek().copied() {
            Some(q @ ('"' | '\'')) => {
                chars.next();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == q {
                        closed = true;
                        break;
                    }
                    value.push(c);
                }
                if !closed {
                    return Err(bad("unterminated quote in filter options"));
                }
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
                value = value.trim().to_string();
            }
        }
        let key = key.trim().to_lowercase();
        if key.is_empty() {
            return Err(bad("empty option name in filter options"));
        }
        opts.insert(key, value);
    }
    Ok((spec[..open].trim().to_string(), opts))
}

/// Finds a filter file: a path to a `.conf`, or a name in `filter_dir`.
pub fn filter_path(filter_dir: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.extension().is_some_and(|e| e == "conf" || e == "local") || p.is_absolute() {
        p.to_path_buf()
    } else {
        filter_dir.join(format!("{name}.conf"))
    }
}

/// Loads a fail2ban filter by spec (`sshd`, `sshd[mode=aggressive]`, or a path with options).
pub fn load_filter(filter_dir: &Path, spec: &str) -> Result<FilterDefinition> {
    let (name, args) = parse_filter_spec(spec)?;
    load_filter_with(&filter_path(filter_dir, &name), &args)
}

/// Loads a filter file with explicit arguments (what `[...]` after a filter name gives).
pub fn load_filter_with(path: &Path, args: &BTreeMap<String, String>) -> Result<FilterDefinition> {
    let cfg = Config::read(path)?;
    if !cfg.has_section("Definition") {
        return Err(Error::Fail2banConfig {
            path: path.to_path_buf(),
            reason: "no [Definition] section".into(),
        });
    }
    let pvars: BTreeMap<String, String> = args
        .iter()
        .map(|(k, v)| (k.to_lowercase(), v.clone()))
        .collect();
    let mut combined: BTreeMap<String, String> = BTreeMap::new();
    for opt in FILTER_OPTIONS {
        if let Some(v) = cfg.get("Definition", opt, &pvars) {
            // fail2ban (Python's configparser) refuses a reference to nothing.
            if let Some(name) = undefined_reference(&v) {
                return Err(Error::Fail2banConfig {
                    path: path.to_path_buf(),
                    reason: format!("[Definition] {opt}: `%({name})s` is not defined"),
                });
            }
            combined.insert((*opt).to_string(), v);
        }
    }
    let mut init = pvars.clone();
    for opt in cfg.options("Init") {
        let Some(v) = cfg.get("Init", &opt, &BTreeMap::new()) else {
            continue;
        };
        init.insert(format!("known/{opt}"), v.clone());
        init.entry(opt).or_insert(v);
    }
    combined.extend(init);
    let resolve = |key: &str| -> Option<String> {
        let value = combined.get(key)?;
        Some(substitute_tags(value, &combined, &|tag| {
            cfg.get_ex("Definition", tag, &pvars)
        }))
    };
    let lines = |v: Option<String>| -> Vec<String> {
        v.map(|v| {
            v.split('\n')
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
    };
    let maxlines = match resolve("maxlines") {
        Some(v) if !v.trim().is_empty() => v.trim().parse().map_err(|_| Error::Fail2banConfig {
            path: path.to_path_buf(),
            reason: format!("maxlines is not a number: {v:?}"),
        })?,
        _ => 1,
    };
    Ok(FilterDefinition {
        name: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        prefregex: resolve("prefregex").filter(|p| !p.trim().is_empty()),
        failregex: lines(resolve("failregex")),
        ignoreregex: lines(resolve("ignoreregex")),
        datepattern: resolve("datepattern").filter(|p| !p.trim().is_empty()),
        maxlines,
        journalmatch: lines(resolve("journalmatch")),
    })
}

/// The first `%(name)s` left in an interpolated value (interpolation keeps what it cannot
/// resolve).
fn undefined_reference(value: &str) -> Option<&str> {
    let start = value.find("%(")? + 2;
    let len = value[start..].find(")s")?;
    Some(&value[start..start + len])
}

/// fail2ban's `substituteRecursiveTags` for one value: `<tag>` replaced from `tags`, then
/// from `fallback`; unknown tags (`<HOST>`, `<F-USER>`) stay.
fn substitute_tags(
    value: &str,
    tags: &BTreeMap<String, String>,
    fallback: &dyn Fn(&str) -> Option<String>,
) -> String {
    let mut value = value.to_string();
    let mut from = 0;
    let mut replacements = 0;
    while let Some((start, tag)) = next_tag(&value, from) {
        let repl = tags.get(&tag).cloned().or_else(|| {
            if tag.chars().any(|c| c.is_ascii_uppercase()) && !tag.contains('/') {
                // configparser lower-cases keys: `<HOST>` would look up `host`; fail2ban's
                // filters never define those, so keep upper-case tags as tags.
                None
            } else {
                fallback(&tag)
            }
        });
        match repl {
            Some(r) if replacements < 200 => {
                value = value.replace(&format!("<{tag}>"), &r);
                replacements += 1;
                // Nested tags (`<lt_<logtype>/x>`) resolve from the inside out: rescan.
                from = 0;
            }
            _ => from = start + tag.len() + 2,
        }
    }
    value
}

/// Finds `<tag>` (no spaces or angle brackets inside) at or after `from`.
fn next_tag(value: &str, from: usize) -> Option<(usize, String)> {
    let mut search = from;
    loop {
        let lt = value.get(search..)?.find('<')? + search;
        let rest = &value[lt + 1..];
        let end = rest.find(['<', '>', ' ']);
        match end {
            Some(e) if rest.as_bytes()[e] == b'>' && e > 0 => {
                return Some((lt, rest[..e].to_string()));
            }
            _ => search = lt + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_spec_options() {
        let (name, opts) =
            parse_filter_spec(r#"sshd[mode=aggressive, logtype="journal, x"]"#).expect("ok");
        assert_eq!(name, "sshd");
        assert_eq!(opts["mode"], "aggressive");
        assert_eq!(opts["logtype"], "journal, x");
        assert!(parse_filter_spec("sshd[mode=x").is_err());
    }

    #[test]
    fn tags_resolve_nested() {
        let mut tags = BTreeMap::new();
        tags.insert("logtype".to_string(), "file".to_string());
        let out = substitute_tags("<lt_<logtype>/x> <HOST>", &tags, &|t| {
            (t == "lt_file/x").then(|| "FILE".to_string())
        });
        assert_eq!(out, "FILE <HOST>");
    }

    #[test]
    fn an_undefined_reference_is_refused_with_its_file_section_and_name() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("typo.conf");
        std::fs::write(
            &path,
            "[Definition]\n_daemon = sshd\nfailregex = ^%(_deamon)s: bad <HOST>\n",
        )
        .expect("write");
        let err = load_filter(dir.path(), "typo")
            .expect_err("refused")
            .to_string();
        assert!(err.contains("typo.conf"), "{err}");
        assert!(err.contains("[Definition] failregex"), "{err}");
        assert!(err.contains("%(_deamon)s"), "{err}");
        std::fs::write(
            &path,
            "[Definition]\n_daemon = sshd\nfailregex = ^%(_daemon)s: bad <HOST>\n",
        )
        .expect("write");
        let def = load_filter(dir.path(), "typo").expect("loads");
        assert_eq!(def.failregex, ["^sshd: bad <HOST>"]);
    }
}
