//! The one boundary between the repository and encryption: crypto-at-rest envelopes.
//!
//! Every object the repository writes goes through [`RepoCipher::seal`] with associated data that
//! names the object (its kind and id), and comes back through [`RepoCipher::open`] with the same
//! associated data, so an object copied under another name fails to open. Each envelope carries
//! its own data key wrapped under the repository's key-encryption key, and commits to that key.

use crypto_at_rest::{CipherConfig, Kdf, KeyId, Keyring, PassphraseKdf, SecretKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Length of the repository master secret.
pub(crate) const MASTER_LEN: usize = 32;

/// The key id of the repository's key-encryption key inside its keyring.
const DATA_KEK_ID: KeyId = KeyId(1);

/// Where the master key comes from when opening or creating a repository.
pub enum KeySource {
    /// A passphrase, stretched with Argon2id (OWASP 2023 parameters, stored in the key object).
    Passphrase(Zeroizing<String>),
    /// A crypto-at-rest keyring (key file); its primary key wraps the master secret.
    Keyring(Keyring),
    /// The owner's X25519 identity (`AGE-SECRET-KEY-1…`): opens a write-only repository with
    /// full rights (see [`crate::write_only`]).
    OwnerIdentity(crypto_at_rest::age::X25519Identity),
    /// A write-only host's key: adds backups to a write-only repository, reads nothing stored
    /// (see [`crate::write_only`]).
    Host(crate::write_only::HostKey),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeySource::Passphrase(_) => "KeySource::Passphrase(..)",
            KeySource::Keyring(_) => "KeySource::Keyring(..)",
            KeySource::OwnerIdentity(_) => "KeySource::OwnerIdentity(..)",
            KeySource::Host(_) => "KeySource::Host(..)",
        })
    }
}

/// What a `keys/<id>` object holds: the master secret sealed under a key from the key source.
#[derive(Serialize, Deserialize)]
pub(crate) struct KeyObject {
    /// `PassphraseKdf` text (function, parameters, salt) for passphrase keys; `None` for key files.
    pub(crate) kdf: Option<String>,
    /// Envelope of the master secret, associated data = the object's name.
    #[serde(with = "serde_bytes")]
    wrapped_master: Vec<u8>,
    /// When the key was added, ns since the epoch (absent in keys written before 2026-12-06).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) created_ns: Option<i64>,
    /// The host it was added on (absent in keys written before 2026-12-06).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) host: Option<String>,
    /// The first 16 bytes of the BLAKE3 hash of this object's CBOR without `sum` (absent in
    /// keys written before it was added on 2026-12-06): a key object is not sealed as a whole, and a damaged
    /// one must read as damaged, not as another admin's key.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    sum: Option<Vec<u8>>,
}

impl KeyObject {
    /// The checksum of this object's fields other than `sum`.
    fn checksum(&self) -> Vec<u8> {
        let unsummed = KeyObject {
            kdf: self.kdf.clone(),
            wrapped_master: self.wrapped_master.clone(),
            created_ns: self.created_ns,
            host: self.host.clone(),
            sum: None,
        };
        blake3::hash(&crate::format::encode(&unsummed)).as_bytes()[..16].to_vec()
    }

    fn with_sum(mut self) -> Self {
        self.sum = Some(self.checksum());
        self
    }

    /// Decodes key object `name` and checks it is exactly as written: it must encode back to
    /// the same bytes (a damaged field name or length reads differently) and match its
    /// checksum. Damage is [`Error::Corrupt`].
    pub(crate) fn decode(name: &str, bytes: &[u8]) -> Result<KeyObject> {
        let object: KeyObject = crate::format::decode(name, bytes)?;
        if crate::format::encode(&object) != bytes {
            return Err(Error::corrupt(name, "damaged: does not decode exactly"));
        }
        if let Some(sum) = &object.sum
            && *sum != object.checksum()
        {
            return Err(Error::corrupt(name, "damaged: checksum mismatch"));
        }
        Ok(object)
    }
}

impl KeySource {
    /// A passphrase key source.
    pub fn passphrase(p: impl Into<String>) -> Self {
        KeySource::Passphrase(Zeroizing::new(p.into()))
    }

    /// A key-file key source: a crypto-at-rest keyring file (`hostguard-keyring v1` text).
    pub fn key_file(path: &std::path::Path) -> Result<Self> {
        Keyring::load(path)
            .map(KeySource::Keyring)
            .map_err(|source| Error::Crypto {
                what: format!("key file {}", path.display()),
                source,
            })
    }

    /// True for a passphrase that is empty: `init` refuses to protect a repository with it.
    pub(crate) fn is_empty_passphrase(&self) -> bool {
        matches!(self, KeySource::Passphrase(p) if p.is_empty())
    }

    /// Wraps `master` for storage in the `keys/` object `name`.
    pub(crate) fn wrap(&self, master: &[u8; MASTER_LEN], name: &str) -> Result<KeyObject> {
        let crypto = |source| Error::Crypto {
            what: format!("sealing {name}"),
            source,
        };
        match self {
            KeySource::Passphrase(p) => {
                let kdf = PassphraseKdf::generate(Kdf::ARGON2ID_OWASP_2023).map_err(crypto)?;
                let ring =
                    Keyring::from_passphrase(KeyId(0), p.as_bytes(), &kdf).map_err(crypto)?;
                Ok(KeyObject {
                    kdf: Some(kdf.to_string()),
                    wrapped_master: ring.seal(name.as_bytes(), master).map_err(crypto)?,
                    created_ns: now_ns(),
                    host: Some(crate::backup::hostname()),
                    sum: None,
                }
                .with_sum())
            }
            KeySource::Keyring(ring) => Ok(KeyObject {
                kdf: None,
                wrapped_master: ring.seal(name.as_bytes(), master).map_err(crypto)?,
                created_ns: now_ns(),
                host: Some(crate::backup::hostname()),
                sum: None,
            }
            .with_sum()),
            KeySource::OwnerIdentity(_) | KeySource::Host(_) => Err(Error::Config(
                "a write-only repository has no password or key-file keys to add".into(),
            )),
        }
    }

    /// Whether this opens write-only repositories (owner identity or host key).
    pub(crate) fn is_write_only(&self) -> bool {
        matches!(self, KeySource::OwnerIdentity(_) | KeySource::Host(_))
    }

    /// Recovers the master secret from the `keys/` object `name`, or `None` if this key source
    /// does not open it.
    pub(crate) fn unwrap(
        &self,
        object: &KeyObject,
        name: &str,
    ) -> Result<Option<Zeroizing<[u8; MASTER_LEN]>>> {
        let opened = match (self, &object.kdf) {
            (KeySource::Passphrase(p), Some(kdf)) => {
                let kdf: PassphraseKdf = kdf
                    .parse()
                    .map_err(|e| Error::corrupt(name, format!("KDF line: {e}")))?;
                let ring = Keyring::from_passphrase(KeyId(0), p.as_bytes(), &kdf)
                    .map_err(|e| Error::corrupt(name, format!("KDF parameters: {e}")))?;
                ring.open(name.as_bytes(), &object.wrapped_master)
            }
            (KeySource::Keyring(ring), None) => ring.open(name.as_bytes(), &object.wrapped_master),
            _ => return Ok(None),
        };
        let Ok(plain) = opened else {
            return Ok(None);
        };
        let plain = Zeroizing::new(plain);
        let master: [u8; MASTER_LEN] = plain
            .as_slice()
            .try_into()
            .map_err(|_| Error::corrupt(name, "master secret has the wrong length"))?;
        Ok(Some(Zeroizing::new(master)))
    }
}

/// Now, ns since the epoch (`None` before 1970 or after 2262).
fn now_ns() -> Option<i64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
}

/// Seals and opens repository objects under the repository's key-encryption key.
pub(crate) struct RepoCipher {
    keyring: Keyring,
    /// Write-only repositories: pack frames, pack headers and snapshots are sealed to the
    /// owner's public key instead ([`crate::write_only::is_owner_object`]).
    pub(crate) owner: Option<crate::write_only::OwnerSeal>,
}

impl RepoCipher {
    /// The cipher for a repository master secret.
    pub(crate) fn from_master(master: &[u8; MASTER_LEN]) -> Self {
        let kek = blake3::derive_key("hostguard backup-core data key-encryption key", master);
        RepoCipher {
            keyring: Keyring::new(DATA_KEK_ID, SecretKey::from_bytes(kek)),
            owner: None,
        }
    }

    /// Seals `plaintext`, binding `aad` (the object's identity).
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        if let Some(owner) = self.owner_for(aad) {
            let mut out = Vec::new();
            owner.seal_append(aad, plaintext, &mut out)?;
            return Ok(out);
        }
        self.keyring
            .seal(aad, plaintext)
            .map_err(|source| Error::Crypto {
                what: "sealing a repository object".into(),
                source,
            })
    }

    /// Length of what [`RepoCipher::seal`] makes of `plaintext_len` bytes.
    /// (An upper bound for objects sealed to a write-only repository's owner, whose overhead
    /// is smaller.)
    pub(crate) fn sealed_len(plaintext_len: usize) -> usize {
        const _: () = assert!(crate::write_only::OWNER_OVERHEAD <= Keyring::ENVELOPE_OVERHEAD);
        plaintext_len + Keyring::ENVELOPE_OVERHEAD
    }

    /// The owner's seal when `aad` names an object a write-only repository seals to its owner.
    fn owner_for(&self, aad: &[u8]) -> Option<&crate::write_only::OwnerSeal> {
        self.owner
            .as_ref()
            .filter(|_| crate::write_only::is_owner_object(aad))
    }

    /// Like [`RepoCipher::seal`], appended to `out`, so packs are sealed into in place.
    pub(crate) fn seal_append(
        &self,
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        if let Some(owner) = self.owner_for(aad) {
            return owner.seal_append(aad, plaintext, out);
        }
        self.keyring
            .seal_to(&CipherConfig::default(), aad, plaintext, out)
            .map_err(|source| Error::Crypto {
                what: "sealing a repository object".into(),
                source,
            })
    }

    /// Opens what [`RepoCipher::seal`] produced with the same `aad`.
    ///
    /// The error is opaque; callers wrap it with the object's name.
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if let Some(owner) = self.owner_for(aad) {
            let mut out = Vec::new();
            owner.open_into(aad, sealed, &mut out)?;
            return Ok(out);
        }
        self.keyring.open(aad, sealed).map_err(|_| OpenError)
    }

    /// Like [`RepoCipher::open`], into `out` (cleared first), so a thread reuses one buffer.
    pub(crate) fn open_into(
        &self,
        aad: &[u8],
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), OpenError> {
        if let Some(owner) = self.owner_for(aad) {
            return owner.open_into(aad, sealed, out);
        }
        self.keyring
            .open_to(aad, sealed, out)
            .map_err(|_| OpenError)
    }
}

/// An object failed to open: wrong key, wrong associated data, or damaged bytes (never says which).
#[derive(Debug)]
pub(crate) struct OpenError;
