//! Passphrase recipients and identities: the scrypt stanza.

use zeroize::Zeroizing;

use super::format::{Stanza, decode_b64, encode_b64};
use super::{FileKey, Identity, Recipient, random_bytes, unwrap_file_key, wrap_file_key};
use crate::error::Error;

const TAG: &str = "scrypt";
const SALT_LABEL: &[u8] = b"age-encryption.org/v1/scrypt";
const SALT_LEN: usize = 16;
/// The work factor (log2 N) the `age` CLI uses when encrypting.
pub const DEFAULT_WORK_FACTOR: u8 = 18;
/// The highest work factor accepted when decrypting, as in the `age` CLI: above it a hostile
/// file could make decryption take minutes.
pub const MAX_WORK_FACTOR: u8 = 22;

fn derive(
    passphrase: &[u8],
    salt: &[u8; SALT_LEN],
    log_n: u8,
) -> Result<Zeroizing<[u8; 32]>, Error> {
    let mut full_salt = SALT_LABEL.to_vec();
    full_salt.extend_from_slice(salt);
    let params = scrypt::Params::new(log_n, 8, 1, 32)
        .map_err(|_| Error::AgeHeader("scrypt work factor out of range".into()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(passphrase, &full_salt, &params, &mut key[..])
        .expect("32 bytes is a valid scrypt output length");
    Ok(key)
}

/// Encrypts to a passphrase. An scrypt stanza must be the only one in its file.
#[derive(Clone)]
pub struct ScryptRecipient {
    passphrase: Zeroizing<Vec<u8>>,
    work_factor: u8,
}

impl ScryptRecipient {
    /// A recipient for `passphrase` with the default work factor (2^18, as the `age` CLI).
    pub fn new(passphrase: &[u8]) -> Self {
        Self {
            passphrase: Zeroizing::new(passphrase.to_vec()),
            work_factor: DEFAULT_WORK_FACTOR,
        }
    }

    /// Sets the work factor log2(N), from 1 to [`MAX_WORK_FACTOR`]; lower values are for tests.
    pub fn with_work_factor(mut self, log_n: u8) -> Result<Self, Error> {
        if !(1..=MAX_WORK_FACTOR).contains(&log_n) {
            return Err(Error::InvalidKey(format!(
                "scrypt work factor {log_n} is outside 1..={MAX_WORK_FACTOR}"
            )));
        }
        self.work_factor = log_n;
        Ok(self)
    }
}

impl std::fmt::Debug for ScryptRecipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScryptRecipient")
            .field("work_factor", &self.work_factor)
            .finish_non_exhaustive()
    }
}

impl Recipient for ScryptRecipient {
    fn wrap(&self, file_key: &FileKey) -> Result<Vec<Stanza>, Error> {
        let salt = random_bytes::<SALT_LEN>()?;
        let key = derive(&self.passphrase, &salt, self.work_factor)?;
        Ok(vec![Stanza {
            tag: TAG.into(),
            args: vec![encode_b64(&salt[..]), self.work_factor.to_string()],
            body: wrap_file_key(&key, file_key),
        }])
    }

    fn is_passphrase(&self) -> bool {
        true
    }
}

/// Decrypts files encrypted to a passphrase.
#[derive(Clone)]
pub struct ScryptIdentity {
    passphrase: Zeroizing<Vec<u8>>,
    max_work_factor: u8,
}

impl ScryptIdentity {
    /// An identity for `passphrase` that accepts work factors up to [`MAX_WORK_FACTOR`].
    pub fn new(passphrase: &[u8]) -> Self {
        Self {
            passphrase: Zeroizing::new(passphrase.to_vec()),
            max_work_factor: MAX_WORK_FACTOR,
        }
    }

    /// Lowers or raises the highest work factor accepted (at most 63).
    pub fn with_max_work_factor(mut self, log_n: u8) -> Self {
        self.max_work_factor = log_n.min(63);
        self
    }
}

impl std::fmt::Debug for ScryptIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScryptIdentity")
            .field("max_work_factor", &self.max_work_factor)
            .finish_non_exhaustive()
    }
}

/// Parses a work factor written in decimal without sign or leading zeros.
fn parse_work_factor(s: &str) -> Option<u8> {
    let canonical = s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
    if canonical { s.parse().ok() } else { None }
}

impl Identity for ScryptIdentity {
    fn unwrap(&self, stanza: &Stanza) -> Option<Result<FileKey, Error>> {
        if stanza.tag != TAG {
            return None;
        }
        let malformed = |what: &str| Some(Err(Error::AgeHeader(format!("scrypt stanza: {what}"))));
        let [salt, log_n] = stanza.args.as_slice() else {
            return malformed("wrong number of arguments");
        };
        let Some(salt) = decode_b64(salt).and_then(|s| <[u8; SALT_LEN]>::try_from(s).ok()) else {
            return malformed("salt is not 16 bytes of canonical base64");
        };
        let Some(log_n) = parse_work_factor(log_n) else {
            return malformed("work factor is not a canonical decimal number");
        };
        if log_n > self.max_work_factor {
            return malformed("work factor too high");
        }
        if stanza.body.len() != super::WRAPPED_LEN {
            return malformed("body has the wrong length");
        }
        match derive(&self.passphrase, &salt, log_n) {
            Ok(key) => unwrap_file_key(&key, &stanza.body).map(Ok),
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_factor_must_be_canonical_decimal() {
        assert_eq!(parse_work_factor("18"), Some(18));
        for bad in ["", "0", "018", "+18", "-1", "0x12", "18 ", "300"] {
            assert_eq!(parse_work_factor(bad), None, "{bad:?}");
        }
    }
}
