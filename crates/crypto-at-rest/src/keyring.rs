//! Key-encryption keys by id, one primary; rotation; loading from files, environment variables
//! and passphrases.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use zeroize::{Zeroize, Zeroizing};

use crate::error::Error;
use crate::kdf::PassphraseKdf;

/// First line of a keyring file.
const KEYRING_MAGIC: &str = "hostguard-keyring v1";
/// First line of a passphrase-sealed keyring file.
const SEALED_KEYRING_MAGIC: &str = "hostguard-keyring-sealed v1";
/// Associated data binding a sealed keyring file's envelope to its purpose.
const SEALED_KEYRING_AAD: &[u8] = b"hostguard keyring file";

/// Identifies a key-encryption key inside a [`Keyring`]; stored in every envelope and stream
/// header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// 32 secret key bytes: zeroized on drop, never shown by `Debug` (and there is no `Display`).
#[derive(Clone)]
pub struct SecretKey(Zeroizing<[u8; 32]>);

impl SecretKey {
    /// Wraps key bytes (the caller's copy is not zeroized; prefer [`SecretKey::generate`]).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub(crate) fn from_zeroizing(bytes: Zeroizing<[u8; 32]>) -> Self {
        Self(bytes)
    }

    /// A fresh key from the system's secure random generator.
    pub fn generate() -> Result<Self, Error> {
        let mut key = Zeroizing::new([0u8; 32]);
        crate::random(&mut key[..])?;
        Ok(Self(key))
    }

    /// The key bytes, for handing to another library.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

/// Key-encryption keys by [`KeyId`], one of them primary.
///
/// New objects are sealed under the primary key; any key in the ring opens the objects sealed
/// under it. Rotation ([`Keyring::rotate`]) adds a new primary, and [`Keyring::rewrap`] moves an
/// object's data key to the primary without touching its payload.
///
/// # Text form (keyring files and environment variables)
///
/// ```text
/// hostguard-keyring v1
/// primary 2
/// key 1 <64 hex digits>
/// key 2 <64 hex digits>
/// ```
///
/// Lines may also be separated by `;` (handy in an environment variable); blank lines and lines
/// starting with `#` are ignored.
pub struct Keyring {
    keys: BTreeMap<KeyId, SecretKey>,
    primary: KeyId,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .field("primary", &self.primary)
            .finish()
    }
}

impl Keyring {
    /// A keyring holding one key, which is primary.
    pub fn new(id: KeyId, key: SecretKey) -> Self {
        Self {
            keys: BTreeMap::from([(id, key)]),
            primary: id,
        }
    }

    /// A keyring holding one fresh random key under `id`.
    pub fn generate(id: KeyId) -> Result<Self, Error> {
        Ok(Self::new(id, SecretKey::generate()?))
    }

    /// A one-key keyring whose key is derived from `passphrase` with `kdf`; store `kdf`'s text
    /// form beside whatever the key protects to derive it again.
    pub fn from_passphrase(
        id: KeyId,
        passphrase: &[u8],
        kdf: &PassphraseKdf,
    ) -> Result<Self, Error> {
        Ok(Self::new(id, kdf.derive(passphrase)?))
    }

    /// The primary key's id.
    pub fn primary(&self) -> KeyId {
        self.primary
    }

    /// The ids of all keys, ascending.
    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.keys().copied()
    }

    /// The key with `id`.
    pub(crate) fn key(&self, id: KeyId) -> Result<&SecretKey, Error> {
        self.keys.get(&id).ok_or(Error::UnknownKeyId(id.0))
    }

    /// The primary key and its id.
    pub(crate) fn primary_key(&self) -> (KeyId, &SecretKey) {
        (self.primary, &self.keys[&self.primary])
    }

    /// Adds a key that opens objects but does not become primary.
    pub fn insert(&mut self, id: KeyId, key: SecretKey) -> Result<(), Error> {
        if self.keys.contains_key(&id) {
            return Err(Error::InvalidKeyring(format!(
                "key id {id} is already in use"
            )));
        }
        self.keys.insert(id, key);
        Ok(())
    }

    /// Adds `key` under `id` and makes it primary; older keys still open their objects.
    pub fn rotate(&mut self, id: KeyId, key: SecretKey) -> Result<(), Error> {
        self.insert(id, key)?;
        self.primary = id;
        Ok(())
    }

    /// Adds a fresh random key under the next free id (one above the highest) and makes it
    /// primary; returns its id.
    pub fn rotate_generated(&mut self) -> Result<KeyId, Error> {
        let highest = self.keys.keys().next_back().map_or(0, |id| id.0);
        let id = KeyId(
            highest
                .checked_add(1)
                .ok_or_else(|| Error::InvalidKeyring("no key id left above the highest".into()))?,
        );
        self.rotate(id, SecretKey::generate()?)?;
        Ok(id)
    }

    /// Makes the key `id` primary.
    pub fn set_primary(&mut self, id: KeyId) -> Result<(), Error> {
        self.key(id)?;
        self.primary = id;
        Ok(())
    }

    /// Removes the key `id` (objects still sealed under it no longer open); the primary key
    /// cannot be removed.
    pub fn remove(&mut self, id: KeyId) -> Result<(), Error> {
        if id == self.primary {
            return Err(Error::InvalidKeyring(format!("key id {id} is primary")));
        }
        self.keys
            .remove(&id)
            .map(drop)
            .ok_or(Error::UnknownKeyId(id.0))
    }

    /// Parses the text form (see the type docs).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = |what: &str| Error::InvalidKeyring(what.to_string());
        let mut lines = text
            .split(['\n', ';'])
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        if lines.next() != Some(KEYRING_MAGIC) {
            return Err(bad("missing the `hostguard-keyring v1` first line"));
        }
        let mut keys = BTreeMap::new();
        let mut primary = None;
        for line in lines {
            let words: Vec<&str> = line.split_ascii_whitespace().collect();
            match words.as_slice() {
                ["primary", id] => {
                    let id = parse_id(id).ok_or_else(|| bad("primary: bad key id"))?;
                    if primary.replace(id).is_some() {
                        return Err(bad("more than one primary line"));
                    }
                }
                ["key", id, hex] => {
                    let id = parse_id(id).ok_or_else(|| bad("key: bad key id"))?;
                    let key = parse_hex::<32>(hex)
                        .ok_or_else(|| bad(&format!("key {id}: not 64 hex digits")))?;
                    if keys.insert(id, SecretKey::from_bytes(key)).is_some() {
                        return Err(bad(&format!("key id {id} appears twice")));
                    }
                }
                _ => {
                    let word = words.first().copied().unwrap_or_default();
                    return Err(bad(&format!("unexpected line starting with {word:?}")));
                }
            }
        }
        let primary = primary.ok_or_else(|| bad("no primary line"))?;
        if !keys.contains_key(&primary) {
            return Err(bad(&format!("primary key id {primary} has no key line")));
        }
        Ok(Self { keys, primary })
    }

    /// The text form (see the type docs); zeroized when dropped.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(format!("{KEYRING_MAGIC}\nprimary {}\n", self.primary));
        for (id, key) in &self.keys {
            let mut hex = hex_encode(key.expose());
            text.push_str(&format!("key {id} {}\n", hex.as_str()));
            hex.zeroize();
        }
        text
    }

    /// Reads a keyring file (plain text form).
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = Zeroizing::new(std::fs::read_to_string(path)?);
        Self::parse(&text)
    }

    /// Writes the text form to `path`, readable by its owner only (mode 0600 on Unix). The file
    /// is replaced atomically: a crash or a full disk leaves the old keyring, never a partial one.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        write_private(path, self.to_text().as_bytes())
    }

    /// Like [`Keyring::save`], sealed under `passphrase` with `kdf` (see
    /// [`Keyring::seal_with_passphrase`]).
    pub fn save_sealed(
        &self,
        path: &Path,
        passphrase: &[u8],
        kdf: crate::Kdf,
    ) -> Result<(), Error> {
        write_private(path, self.seal_with_passphrase(passphrase, kdf)?.as_bytes())
    }

    /// Whether a keyring file's text is the passphrase-sealed form (open it with
    /// [`Keyring::open_with_passphrase`]) rather than the plain one ([`Keyring::parse`]).
    pub fn is_sealed_file(text: &str) -> bool {
        text.lines().next() == Some(SEALED_KEYRING_MAGIC)
    }

    /// Reads the text form from the environment variable `var`.
    pub fn from_env(var: &str) -> Result<Self, Error> {
        let text = Zeroizing::new(
            std::env::var(var)
                .map_err(|e| Error::InvalidKeyring(format!("environment variable {var}: {e}")))?,
        );
        Self::parse(&text)
    }

    /// This keyring as a file sealed under `passphrase` with `kdf` (a fresh salt each time):
    /// a `hostguard-keyring-sealed v1` line, the [`PassphraseKdf`] line, then the text form
    /// sealed as an envelope under the derived key, in hex. An empty passphrase is refused
    /// ([`Error::InvalidKeyring`]): it would protect nothing.
    pub fn seal_with_passphrase(
        &self,
        passphrase: &[u8],
        kdf: crate::Kdf,
    ) -> Result<String, Error> {
        if passphrase.is_empty() {
            return Err(Error::InvalidKeyring(
                "refusing to seal a keyring under an empty passphrase".into(),
            ));
        }
        let kdf = PassphraseKdf::generate(kdf)?;
        let wrapping = Self::from_passphrase(KeyId(0), passphrase, &kdf)?;
        let sealed = wrapping.seal(SEALED_KEYRING_AAD, self.to_text().as_bytes())?;
        Ok(format!(
            "{SEALED_KEYRING_MAGIC}\n{kdf}\n{}\n",
            hex_encode(&sealed).as_str()
        ))
    }

    /// Opens a file made by [`seal_with_passphrase`](Self::seal_with_passphrase). A wrong
    /// passphrase and a damaged file both give [`Error::Authentication`].
    pub fn open_with_passphrase(file: &str, passphrase: &[u8]) -> Result<Self, Error> {
        let bad = |what: &str| Error::InvalidKeyring(format!("sealed keyring file: {what}"));
        let mut lines = file.lines();
        if lines.next() != Some(SEALED_KEYRING_MAGIC) {
            return Err(bad("missing the `hostguard-keyring-sealed v1` first line"));
        }
        let kdf: PassphraseKdf = lines.next().ok_or_else(|| bad("no KDF line"))?.parse()?;
        let sealed = lines
            .next()
            .and_then(hex_decode)
            .ok_or_else(|| bad("the sealed keyring is not hex"))?;
        if lines.any(|l| !l.trim().is_empty()) {
            return Err(bad("unexpected lines after the sealed keyring"));
        }
        let wrapping = Self::from_passphrase(KeyId(0), passphrase, &kdf)?;
        let text = Zeroizing::new(wrapping.open(SEALED_KEYRING_AAD, &sealed).map_err(
            |e| match e {
                Error::Authentication(_) => Error::Authentication(crate::Stage::KeyringFile),
                other => other,
            },
        )?);
        let text = std::str::from_utf8(&text).map_err(|_| bad("not UTF-8 inside"))?;
        Self::parse(text)
    }
}

/// Replaces `path` with `bytes` atomically, readable by its owner only (see
/// [`AtomicOutput::create_private`](crate::output::AtomicOutput::create_private)).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let mut out = crate::output::AtomicOutput::create_private(path)?;
    out.write_all(bytes)?;
    out.commit()?;
    Ok(())
}

fn parse_id(s: &str) -> Option<KeyId> {
    s.parse().ok().map(KeyId)
}

/// Decodes exactly `N` bytes of hex.
pub(crate) fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let bytes = Zeroizing::new(hex_decode(s)?);
    bytes.as_slice().try_into().ok()
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim().as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16);
            Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

fn hex_encode(bytes: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(bytes.len() * 2));
    for b in bytes {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}
