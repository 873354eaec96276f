//! fail2ban's configuration dialect: Python `configparser` with `[INCLUDES]`, `.local`
//! overrides, `%(var)s` / `%(section/var)s` / `%(known/var)s` interpolation.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

type Section = BTreeMap<String, String>;

/// A merged set of fail2ban config files.
#[derive(Debug, Clone, Default)]
pub struct Config {
    defaults: Section,
    sections: HashMap<String, Section>,
    /// Section order of first appearance.
    order: Vec<String>,
    /// Files read, in order.
    pub files: Vec<PathBuf>,
}

const MAX_DEPTH: usize = 10;

fn err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Fail2banConfig {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Parses one file's text into (defaults, sections in order).
fn parse_text(path: &Path, text: &str) -> Result<(Section, Vec<(String, Section)>)> {
    let mut defaults = Section::new();
    let mut sections: Vec<(String, Section)> = Vec::new();
    let mut current: Option<String> = None;
    let mut last_key: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            // Blank lines end nothing in configparser (empty_lines_in_values), but fail2ban's
            // values never need them; keep continuation going.
            continue;
        }
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let indented = line.starts_with(' ') || line.starts_with('\t');
        if indented && let Some(key) = &last_key {
            let value = strip_inline_comment(trimmed);
            let target = match &current {
                Some(s) if s != "DEFAULT" => sections
                    .iter_mut()
                    .rev()
                    .find(|(n, _)| n == s)
                    .map(|(_, sec)| sec),
                _ => Some(&mut defaults),
            };
            if let Some(v) = target.and_then(|sec| sec.get_mut(key)) {
                v.push('\n');
                v.push_str(value);
            }
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            let name = name.to_string();
            if name != "DEFAULT" && !sections.iter().any(|(n, _)| *n == name) {
                sections.push((name.clone(), Section::new()));
            }
            current = Some(name);
            last_key = None;
            continue;
        }
        let Some(pos) = trimmed.find(['=', ':']) else {
            return Err(err(
                path,
                format!("line {}: expected `key = value`: {trimmed:?}", n + 1),
            ));
        };
        let key = trimmed[..pos].trim().to_lowercase();
        let value = strip_inline_comment(trimmed[pos + 1..].trim()).to_string();
        let Some(cur) = &current else {
            return Err(err(
                path,
                format!("line {}: option outside a section", n + 1),
            ));
        };
        let sec = if cur == "DEFAULT" {
            &mut defaults
        } else {
            match sections.iter_mut().rev().find(|(n, _)| n == cur) {
                Some((_, s)) => s,
                None => return Err(err(path, "section vanished")),
            }
        };
        sec.insert(key.clone(), value);
        last_key = Some(key);
    }
    Ok((defaults, sections))
}

/// configparser's `inline_comment_prefixes = ";"`: a `;` after whitespace starts a comment.
fn strip_inline_comment(value: &str) -> &str {
    let b = value.as_bytes();
    for i in 1..b.len() {
        if b[i] == b';' && b[i - 1].is_ascii_whitespace() {
            return value[..i].trim_end();
        }
    }
    value
}

impl Config {
    /// Reads `path` with its includes (`before`, the file, its `.local`, `after`).
    pub fn read(path: &Path) -> Result<Self> {
        let mut files = Vec::new();
        collect_includes(path, &mut Vec::new(), &mut files)?;
        let mut cfg = Config::default();
        for f in &files {
            let text = std::fs::read_to_string(f).map_err(|source| Error::Io {
                path: f.clone(),
                source,
            })?;
            let (defaults, sections) = parse_text(f, &text)?;
            cfg.defaults.extend(defaults);
            for (name, sec) in sections {
                cfg.merge_section(name, sec);
            }
        }
        cfg.files = files;
        Ok(cfg)
    }

    fn merge_section(&mut self, name: String, sec: Section) {
        match self.sections.get_mut(&name) {
            Some(existing) => {
                let known: Section = existing
                    .iter()
                    .filter(|(k, _)| sec.contains_key(*k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                existing.extend(sec);
                self.sections
                    .entry(format!("KNOWN/{name}"))
                    .or_default()
                    .extend(known);
            }
            None => {
                self.order.push(name.clone());
                self.sections.insert(name, sec);
            }
        }
    }

    /// Layers `other` over this config (later files win, like fail2ban's jail.d).
    pub fn merge(&mut self, other: Config) {
        self.defaults.extend(other.defaults);
        for name in other.order {
            if let Some(sec) = other.sections.get(&name) {
                self.merge_section(name.clone(), sec.clone());
            }
        }
        self.files.extend(other.files);
    }

    /// True when the section exists.
    pub fn has_section(&self, name: &str) -> bool {
        self.sections.contains_key(name)
    }

    /// Section names in file order (without `DEFAULT` and `KNOWN/*`).
    pub fn section_names(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }

    /// Option names of a section (own options only).
    pub fn options(&self, section: &str) -> Vec<String> {
        self.sections
            .get(section)
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Raw (uninterpolated) value: vars, then the section, then `[DEFAULT]`.
    pub fn raw(&self, section: &str, key: &str, vars: &BTreeMap<String, String>) -> Option<String> {
        let key = key.to_lowercase();
        vars.get(&key)
            .or_else(|| self.sections.get(section).and_then(|s| s.get(&key)))
            .or_else(|| self.defaults.get(&key))
            .cloned()
    }

    /// fail2ban's `get_ex`: `sec/opt` names look in that section (`known/` in overridden values).
    pub fn get_ex(
        &self,
        section: &str,
        key: &str,
        vars: &BTreeMap<String, String>,
    ) -> Option<String> {
        if let Some((sec, opt)) = key.split_once('/') {
            let lookup = match sec.to_lowercase().as_str() {
                "known" => vec![format!("KNOWN/{section}"), section.to_string()],
                "default" => vec!["DEFAULT".to_string()],
                _ => vec![sec.to_string()],
            };
            for s in lookup {
                if let Some(v) = self.get(&s, opt, &BTreeMap::new()) {
                    return Some(v);
                }
            }
        }
        self.get(section, key, vars)
    }

    /// Interpolated value of `key` in `section`.
    pub fn get(&self, section: &str, key: &str, vars: &BTreeMap<String, String>) -> Option<String> {
        let raw = if section == "DEFAULT" {
            self.defaults.get(&key.to_lowercase()).cloned()
        } else {
            self.raw(section, key, vars)
        }?;
        Some(self.interpolate(section, &raw, vars, 0))
    }

    fn interpolate(
        &self,
        section: &str,
        value: &str,
        vars: &BTreeMap<String, String>,
        depth: usize,
    ) -> String {
        if depth > MAX_DEPTH || !value.contains('%') {
            return value.to_string();
        }
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(p) = rest.find('%') {
            out.push_str(&rest[..p]);
            let tail = &rest[p..];
            if let Some(after) = tail.strip_prefix("%%") {
                out.push('%');
                rest = after;
            } else if let Some(end) = tail.strip_prefix("%(").and_then(|t| t.find(")s")) {
                let name = &tail[2..2 + end];
                let resolved = self.lookup_ref(section, name, vars);
                match resolved {
                    Some(v) => out.push_str(&self.interpolate(section, &v, vars, depth + 1)),
                    None => out.push_str(&tail[..2 + end + 2]),
                }
                rest = &tail[2 + end + 2..];
            } else {
                out.push('%');
                rest = &tail[1..];
            }
        }
        out.push_str(rest);
        out
    }

    fn lookup_ref(
        &self,
        section: &str,
        name: &str,
        vars: &BTreeMap<String, String>,
    ) -> Option<String> {
        let lname = name.to_lowercase();
        if let Some(v) = vars.get(&lname) {
            return Some(v.clone());
        }
        if let Some((sec, opt)) = name.split_once('/') {
            let opt = opt.to_lowercase();
            let v = match sec.to_lowercase().as_str() {
                "default" => None,
                "known" => self
                    .sections
                    .get(&format!("KNOWN/{section}"))
                    .and_then(|s| s.get(&opt)),
                _ => self.sections.get(sec).and_then(|s| s.get(&opt)),
            };
            return v.or_else(|| self.defaults.get(&opt)).cloned();
        }
        self.sections
            .get(section)
            .and_then(|s| s.get(&lname))
            .or_else(|| self.defaults.get(&lname))
            .cloned()
    }
}

fn collect_includes(path: &Path, seen: &mut Vec<PathBuf>, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut candidates = vec![path.to_path_buf()];
    let local = path.with_extension("local");
    if local != path && local.is_file() {
        candidates.push(local);
    }
    for file in candidates {
        if seen.contains(&file) {
            continue;
        }
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(_) if file != path => continue,
            Err(source) => return Err(Error::Io { path: file, source }),
        };
        let (_, sections) = parse_text(&file, &text)?;
        let includes = sections
            .iter()
            .find(|(n, _)| n == "INCLUDES")
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        seen.push(file.clone());
        let mut include = |key: &str, out: &mut Vec<PathBuf>| -> Result<()> {
            if let Some(list) = includes.get(key) {
                for inc in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    let p = dir.join(inc);
                    if seen.contains(&p) {
                        continue;
                    }
                    if p.is_file() {
                        collect_includes(&p, seen, out)?;
                    }
                }
            }
            Ok(())
        };
        include("before", out)?;
        out.push(file.clone());
        include("after", out)?;
        seen.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_locals_and_interpolation() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("common.conf"),
            "[DEFAULT]\n_daemon = \\S*\n__prefix = %(_daemon)s: \n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("f.conf"),
            "[INCLUDES]\nbefore = common.conf\n[Definition]\n_daemon = sshd\nfailregex = ^%(__prefix)s bad <HOST>\n            ^two <HOST> ; comment\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("f.local"),
            "[Definition]\n_daemon = other\n",
        )
        .expect("write");
        let cfg = Config::read(&dir.path().join("f.conf")).expect("reads");
        let fr = cfg
            .get("Definition", "failregex", &BTreeMap::new())
            .expect("present");
        assert_eq!(fr, "^other: bad <HOST>\n^two <HOST>");
        assert_eq!(
            cfg.get_ex("Definition", "known/_daemon", &BTreeMap::new())
                .as_deref(),
            Some("sshd")
        );
    }
}
