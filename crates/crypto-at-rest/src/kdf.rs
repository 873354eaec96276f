//! Passphrase key derivation: Argon2id or scrypt, with parameters stored beside the salt.

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroizing;

use crate::error::Error;
use crate::keyring::SecretKey;

/// Salt length for passphrase derivation, in bytes.
const SALT_LEN: usize = 16;

/// A passphrase key-derivation function and its cost parameters.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kdf {
    /// Argon2id (RFC 9106), version 0x13.
    Argon2id {
        /// Memory in KiB.
        memory_kib: u32,
        /// Passes over memory.
        iterations: u32,
        /// Lanes.
        parallelism: u32,
    },
    /// scrypt (RFC 7914).
    Scrypt {
        /// log2 of the CPU/memory cost N.
        log_n: u8,
        /// Block size r.
        r: u32,
        /// Parallelism p.
        p: u32,
    },
}

impl Kdf {
    /// Argon2id with OWASP's 2023 password-storage parameters: m = 19456 KiB, t = 2, p = 1.
    pub const ARGON2ID_OWASP_2023: Kdf = Kdf::Argon2id {
        memory_kib: 19456,
        iterations: 2,
        parallelism: 1,
    };

    /// scrypt with OWASP's 2023 password-storage parameters: N = 2^17, r = 8, p = 1.
    pub const SCRYPT_OWASP_2023: Kdf = Kdf::Scrypt {
        log_n: 17,
        r: 8,
        p: 1,
    };

    /// Rejects parameters no sane file carries (which also bounds the work a hostile file can
    /// demand: at most 4 GiB of memory and bounded passes).
    fn check(self) -> Result<Self, Error> {
        let ok = match self {
            Kdf::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => {
                (1..=16).contains(&parallelism)
                    && (8 * parallelism..=1 << 22).contains(&memory_kib)
                    && (1..=64).contains(&iterations)
            }
            Kdf::Scrypt { log_n, r, p } => {
                // Memory is 128·r·2^ln bytes and work grows with p·r·2^ln: bound the products,
                // not only each factor (ln 22 with r 32 alone would be 16 GiB).
                let memory = (128 * u64::from(r)) << log_n;
                let work = (u64::from(r) * u64::from(p)) << log_n;
                (1..=22).contains(&log_n)
                    && (1..=32).contains(&r)
                    && (1..=16).contains(&p)
                    && memory <= 4 << 30
                    && work <= 32 << 22
            }
        };
        if ok {
            Ok(self)
        } else {
            Err(Error::InvalidConfig(format!(
                "passphrase KDF parameters out of range: {self}"
            )))
        }
    }
}

impl fmt::Display for Kdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Kdf::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => write!(f, "argon2id m={memory_kib} t={iterations} p={parallelism}"),
            Kdf::Scrypt { log_n, r, p } => write!(f, "scrypt ln={log_n} r={r} p={p}"),
        }
    }
}

/// A [`Kdf`] and a random salt: everything needed, beside the passphrase, to derive a key.
///
/// Its text form, stored beside whatever the key protects, is
/// `argon2id m=19456 t=2 p=1 salt=<32 hex digits>` or `scrypt ln=17 r=8 p=1 salt=<32 hex digits>`.
///
/// ```
/// use crypto_at_rest::{Kdf, PassphraseKdf};
/// let kdf = PassphraseKdf::generate(Kdf::ARGON2ID_OWASP_2023)?;
/// let stored = kdf.to_string();
/// assert!(stored.starts_with("argon2id m=19456 t=2 p=1 salt="));
/// assert_eq!(stored.parse::<PassphraseKdf>()?, kdf);
/// # Ok::<(), crypto_at_rest::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassphraseKdf {
    kdf: Kdf,
    salt: [u8; SALT_LEN],
}

impl PassphraseKdf {
    /// `kdf` with a fresh random salt.
    pub fn generate(kdf: Kdf) -> Result<Self, Error> {
        let mut salt = [0u8; SALT_LEN];
        crate::random(&mut salt)?;
        Ok(Self {
            kdf: kdf.check()?,
            salt,
        })
    }

    /// The function and parameters.
    pub fn kdf(&self) -> Kdf {
        self.kdf
    }

    /// Derives a 32-byte key from `passphrase`.
    pub fn derive(&self, passphrase: &[u8]) -> Result<SecretKey, Error> {
        let mut out = Zeroizing::new([0u8; 32]);
        match self.kdf {
            Kdf::Argon2id {
                memory_kib,
                iterations,
                parallelism,
            } => {
                let params = argon2::Params::new(memory_kib, iterations, parallelism, Some(32))
                    .map_err(|e| Error::InvalidConfig(format!("argon2id parameters: {e}")))?;
                argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                    .hash_password_into(passphrase, &self.salt, &mut out[..])
                    .map_err(|e| Error::InvalidConfig(format!("argon2id: {e}")))?;
            }
            Kdf::Scrypt { log_n, r, p } => {
                let params = scrypt::Params::new(log_n, r, p, 32)
                    .map_err(|e| Error::InvalidConfig(format!("scrypt parameters: {e}")))?;
                scrypt::scrypt(passphrase, &self.salt, &params, &mut out[..])
                    .map_err(|e| Error::InvalidConfig(format!("scrypt: {e}")))?;
            }
        }
        Ok(SecretKey::from_zeroizing(out))
    }
}

impl fmt::Display for PassphraseKdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} salt=", self.kdf)?;
        self.salt.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl FromStr for PassphraseKdf {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::InvalidConfig(format!("not a passphrase KDF setting: {s:?}"));
        let mut words = s.split_ascii_whitespace();
        let name = words.next().ok_or_else(bad)?;
        let mut fields = [None; 3];
        let mut salt = None;
        let keys: [&str; 3] = match name {
            "argon2id" => ["m", "t", "p"],
            "scrypt" => ["ln", "r", "p"],
            _ => return Err(bad()),
        };
        for word in words {
            let (key, value) = word.split_once('=').ok_or_else(bad)?;
            if key == "salt" {
                salt = Some(crate::keyring::parse_hex::<SALT_LEN>(value).ok_or_else(bad)?);
                continue;
            }
            let slot = keys.iter().position(|k| *k == key).ok_or_else(bad)?;
            fields[slot] = Some(value.parse::<u32>().map_err(|_| bad())?);
        }
        let [Some(a), Some(b), Some(c)] = fields else {
            return Err(bad());
        };
        let kdf = if name == "argon2id" {
            Kdf::Argon2id {
                memory_kib: a,
                iterations: b,
                parallelism: c,
            }
        } else {
            Kdf::Scrypt {
                log_n: u8::try_from(a).map_err(|_| bad())?,
                r: b,
                p: c,
            }
        };
        Ok(Self {
            kdf: kdf.check()?,
            salt: salt.ok_or_else(bad)?,
        })
    }
}
