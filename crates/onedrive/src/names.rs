//! OneDrive's name rules, checked before anything is uploaded, and a reversible mapping of local
//! names onto names OneDrive accepts.
//!
//! OneDrive refuses the characters `" * : < > ? / \ |`, leading and trailing spaces, a trailing
//! dot, the names `CON PRN AUX NUL COM0-9 LPT0-9` (with or without an extension), `.lock`,
//! `desktop.ini`, names starting with `_vti_`, and paths of 400 characters or more.
//!
//! [`NamePolicy::Map`] escapes what breaks a rule as `%XX` (the UTF-8 byte in hexadecimal) and
//! escapes `%` itself, so [`unmap_name`] restores the original exactly; bytes that are not UTF-8
//! are escaped the same way. Path length cannot be mapped away and is always refused.
//!
//! ```
//! use onedrive::{NamePolicy, map_name, unmap_name};
//!
//! let mapped = map_name("report: Q1?.txt", NamePolicy::Map)?;
//! assert_eq!(mapped, "report%3A Q1%3F.txt");
//! assert_eq!(unmap_name(&mapped).as_deref(), Some("report: Q1?.txt"));
//! assert!(map_name("CON.txt", NamePolicy::Refuse).is_err());
//! assert_eq!(map_name("CON.txt", NamePolicy::Map)?, "%43ON.txt");
//! # Ok::<(), onedrive::Error>(())
//! ```

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::error::{Error, Result};

/// Longest remote path OneDrive accepts, in characters (it refuses 400 and more).
pub const MAX_PATH_CHARS: usize = 399;

/// What to do with a name OneDrive would refuse.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NamePolicy {
    /// Refuse with [`Error::InvalidName`] naming the rule (the default: nothing surprising
    /// appears in the customer's drive).
    #[default]
    Refuse,
    /// Escape offending characters as `%XX` (and `%` as `%25`), reversibly.
    Map,
}

const FORBIDDEN: &[char] = &['"', '*', ':', '<', '>', '?', '/', '\\', '|'];

/// Why `name` breaks OneDrive's rules, or `None` if it is accepted.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("empty name".into());
    }
    if name == "." || name == ".." {
        return Some(format!("`{name}` is not a file name"));
    }
    if let Some(c) = name.chars().find(|c| FORBIDDEN.contains(c)) {
        return Some(format!("contains the character `{c}`"));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Some(format!("contains the control character U+{:04X}", c as u32));
    }
    if name.starts_with(' ') {
        return Some("starts with a space".into());
    }
    if name.ends_with(' ') {
        return Some("ends with a space".into());
    }
    if name.ends_with('.') {
        return Some("ends with a dot".into());
    }
    if is_reserved(name) {
        return Some(format!("`{name}` is a reserved name"));
    }
    None
}

fn is_reserved(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if lower == ".lock" || lower == "desktop.ini" || lower.starts_with("_vti_") {
        return true;
    }
    let stem = lower.split('.').next().unwrap_or("");
    matches!(stem, "con" | "prn" | "aux" | "nul")
        || (stem.len() == 4
            && (stem.starts_with("com") || stem.starts_with("lpt"))
            && stem.as_bytes()[3].is_ascii_digit())
}

fn push_escaped(out: &mut String, bytes: &[u8]) {
    for byte in bytes {
        out.push_str(&format!("%{byte:02X}"));
    }
}

/// Maps one local name (any bytes) to a name OneDrive accepts, or refuses it.
pub fn map_os_name(name: &OsStr, policy: NamePolicy) -> Result<String> {
    let bytes = name.as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(text) => map_name(text, policy),
        Err(_) if policy == NamePolicy::Refuse => Err(Error::InvalidName {
            path: name.to_string_lossy().into_owned(),
            reason: "not valid UTF-8".into(),
        }),
        Err(_) => {
            let mut out = String::new();
            for chunk in bytes.utf8_chunks() {
                out.push_str(&escape_text(chunk.valid()));
                push_escaped(&mut out, chunk.invalid());
            }
            // The escaped form may still break a positional rule (a trailing dot, say).
            map_name_escaped(out)
        }
    }
}

/// Maps one UTF-8 name to a name OneDrive accepts, or refuses it (see the module docs).
pub fn map_name(name: &str, policy: NamePolicy) -> Result<String> {
    match policy {
        NamePolicy::Refuse => match name_problem(name) {
            None => Ok(name.to_owned()),
            Some(reason) => Err(Error::InvalidName {
                path: name.to_owned(),
                reason,
            }),
        },
        NamePolicy::Map => {
            if name.is_empty() || name == "." || name == ".." {
                return Err(Error::InvalidName {
                    path: name.to_owned(),
                    reason: "not a file name".into(),
                });
            }
            map_name_escaped(escape_text(name))
        }
    }
}

/// Escapes `%`, forbidden and control characters.
fn escape_text(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c == '%' || FORBIDDEN.contains(&c) || c.is_control() {
            let mut buf = [0u8; 4];
            push_escaped(&mut out, c.encode_utf8(&mut buf).as_bytes());
        } else {
            out.push(c);
        }
    }
    out
}

/// Fixes the positional rules of an already character-escaped name.
fn map_name_escaped(mut name: String) -> Result<String> {
    if name.starts_with(' ') {
        name.replace_range(..1, "%20");
    }
    if name.ends_with(' ') || name.ends_with('.') {
        let last = name.pop().map_or(0, |c| c as u8);
        push_escaped(&mut name, &[last]);
    }
    if is_reserved(&name) {
        // Escaping the first character breaks every reserved pattern.
        let first = name.as_bytes()[0];
        name.replace_range(..1, &format!("%{first:02X}"));
    }
    match name_problem(&name) {
        None => Ok(name),
        Some(reason) => Err(Error::InvalidName { path: name, reason }),
    }
}

/// Reverses [`map_name`] under [`NamePolicy::Map`]: decodes every `%XX`. `None` if the result is
/// not UTF-8 (use [`unmap_name_bytes`]) or an escape is malformed.
pub fn unmap_name(mapped: &str) -> Option<String> {
    String::from_utf8(unmap_name_bytes(mapped)?).ok()
}

/// Reverses [`map_os_name`]: the original name's bytes.
pub fn unmap_name_bytes(mapped: &str) -> Option<Vec<u8>> {
    let bytes = mapped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = mapped.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// A path inside a drive, relative to its root: names that each pass OneDrive's rules, joined
/// by `/`, under [`MAX_PATH_CHARS`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RemotePath(Vec<String>);

impl RemotePath {
    /// The drive's root.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// Parses `a/b/c` (leading and trailing slashes ignored); every name must pass the rules.
    pub fn parse(path: &str) -> Result<Self> {
        let mut out = Self::root();
        for name in path.split('/').filter(|n| !n.is_empty()) {
            out = out.join(name)?;
        }
        Ok(out)
    }

    /// This path with one more name (which must pass the rules) at the end.
    pub fn join(&self, name: &str) -> Result<Self> {
        if let Some(reason) = name_problem(name) {
            return Err(Error::InvalidName {
                path: format!("{self}/{name}"),
                reason,
            });
        }
        let mut names = self.0.clone();
        names.push(name.to_owned());
        let joined = Self(names);
        let chars = joined.to_string().chars().count();
        if chars > MAX_PATH_CHARS {
            return Err(Error::InvalidName {
                path: joined.to_string(),
                reason: format!(
                    "path is {chars} characters; OneDrive takes at most {MAX_PATH_CHARS}"
                ),
            });
        }
        Ok(joined)
    }

    /// The names, root first.
    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// True for the drive's root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The last name, if any.
    pub fn file_name(&self) -> Option<&str> {
        self.0.last().map(String::as_str)
    }

    /// The path without its last name (the root's parent is the root).
    pub fn parent(&self) -> Self {
        let mut names = self.0.clone();
        names.pop();
        Self(names)
    }

    /// The path with each name percent-encoded, as Graph's `root:/...:` addressing takes it.
    pub fn encoded(&self) -> String {
        // Everything but unreserved characters is encoded, so `#`, `%`, `+` and spaces survive.
        const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        self.0
            .iter()
            .map(|n| percent_encoding::utf8_percent_encode(n, SEGMENT).to_string())
            .collect::<Vec<_>>()
            .join("/")
    }
}

impl std::fmt::Display for RemotePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}
