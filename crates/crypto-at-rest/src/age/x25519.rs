//! X25519 recipients (`age1...`) and identities (`AGE-SECRET-KEY-1...`).

use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32, Hrp};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::format::{Stanza, decode_b64, encode_b64, hkdf_sha256};
use super::{FileKey, Identity, Recipient, random_bytes, unwrap_file_key, wrap_file_key};
use crate::error::Error;

const TAG: &str = "X25519";
const LABEL: &[u8] = b"age-encryption.org/v1/X25519";
const RECIPIENT_HRP: &str = "age";
const IDENTITY_HRP: &str = "age-secret-key-";

/// Decodes a Bech32 (not Bech32m) string with human-readable part `hrp` into 32 bytes.
fn decode_key(s: &str, hrp: &str) -> Option<[u8; 32]> {
    let checked = CheckedHrpstring::new::<Bech32>(s).ok()?;
    if !checked.hrp().as_str().eq_ignore_ascii_case(hrp) {
        return None;
    }
    let bytes: Vec<u8> = checked.byte_iter().collect();
    <[u8; 32]>::try_from(bytes).ok()
}

fn encode_key(hrp: &str, bytes: &[u8; 32], upper: bool) -> String {
    let hrp = Hrp::parse(hrp).expect("static human-readable part is valid");
    let encoded = if upper {
        bech32::encode_upper::<Bech32>(hrp, bytes)
    } else {
        bech32::encode_lower::<Bech32>(hrp, bytes)
    };
    encoded.expect("a 32-byte key fits in a Bech32 string")
}

/// An X25519 public key that files can be encrypted to, written `age1...`.
#[derive(Clone, PartialEq, Eq)]
pub struct X25519Recipient(PublicKey);

impl std::str::FromStr for X25519Recipient {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        decode_key(s, RECIPIENT_HRP)
            .map(|bytes| Self(PublicKey::from(bytes)))
            .ok_or_else(|| Error::InvalidKey("not an age X25519 recipient (age1...)".into()))
    }
}

impl std::fmt::Display for X25519Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&encode_key(RECIPIENT_HRP, self.0.as_bytes(), false))
    }
}

impl std::fmt::Debug for X25519Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "X25519Recipient({self})")
    }
}

impl Recipient for X25519Recipient {
    fn wrap(&self, file_key: &FileKey) -> Result<Vec<Stanza>, Error> {
        let ephemeral = StaticSecret::from(*random_bytes::<32>()?);
        let share = PublicKey::from(&ephemeral);
        let shared = ephemeral.diffie_hellman(&self.0);
        if !shared.was_contributory() {
            return Err(Error::InvalidKey(
                "X25519 recipient is a low-order point".into(),
            ));
        }
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(share.as_bytes());
        salt[32..].copy_from_slice(self.0.as_bytes());
        let wrap_key = hkdf_sha256(&salt, shared.as_bytes(), LABEL);
        Ok(vec![Stanza {
            tag: TAG.into(),
            args: vec![encode_b64(share.as_bytes())],
            body: wrap_file_key(&wrap_key, file_key),
        }])
    }
}

/// An X25519 private key that decrypts files, written `AGE-SECRET-KEY-1...`.
///
/// Its `Debug` output never shows the key; [`X25519Identity::to_secret_string`] is the only way
/// to print it.
#[derive(Clone)]
pub struct X25519Identity {
    secret: StaticSecret,
    /// Computed once: every stanza's unwrap needs it.
    public: PublicKey,
}

impl X25519Identity {
    fn from_secret(secret: StaticSecret) -> Self {
        let public = PublicKey::from(&secret);
        Self { secret, public }
    }

    /// Generates a fresh identity from the system's random source.
    pub fn generate() -> Result<Self, Error> {
        Ok(Self::from_secret(
            StaticSecret::from(*random_bytes::<32>()?),
        ))
    }

    /// The recipient that files for this identity are encrypted to.
    pub fn to_public(&self) -> X25519Recipient {
        X25519Recipient(self.public)
    }

    /// The `AGE-SECRET-KEY-1...` encoding, as `age-keygen` writes it.
    pub fn to_secret_string(&self) -> Zeroizing<String> {
        Zeroizing::new(encode_key(IDENTITY_HRP, self.secret.as_bytes(), true))
    }
}

impl std::str::FromStr for X25519Identity {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        decode_key(s, IDENTITY_HRP)
            .map(|bytes| Self::from_secret(StaticSecret::from(bytes)))
            .ok_or_else(|| {
                Error::InvalidKey("not an age X25519 identity (AGE-SECRET-KEY-1...)".into())
            })
    }
}

impl std::fmt::Debug for X25519Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("X25519Identity")
            .field(&self.to_public())
            .finish()
    }
}

impl Identity for X25519Identity {
    fn unwrap(&self, stanza: &Stanza) -> Option<Result<FileKey, Error>> {
        if stanza.tag != TAG {
            return None;
        }
        let share = match stanza.args.as_slice() {
            [share] => decode_b64(share).and_then(|b| <[u8; 32]>::try_from(b).ok()),
            _ => None,
        };
        let Some(share) = share else {
            return Some(Err(Error::AgeHeader("malformed X25519 stanza".into())));
        };
        if stanza.body.len() != super::WRAPPED_LEN {
            return Some(Err(Error::AgeHeader(
                "X25519 stanza body has the wrong length".into(),
            )));
        }
        let share = PublicKey::from(share);
        let shared = self.secret.diffie_hellman(&share);
        if !shared.was_contributory() {
            return Some(Err(Error::AgeHeader(
                "X25519 share is a low-order point".into(),
            )));
        }
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(share.as_bytes());
        salt[32..].copy_from_slice(self.public.as_bytes());
        let wrap_key = hkdf_sha256(&salt, shared.as_bytes(), LABEL);
        unwrap_file_key(&wrap_key, &stanza.body).map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // From the age specification's test identity (CCTV vectors use it too).
    const IDENTITY: &str =
        "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0";

    #[test]
    fn keys_round_trip_through_their_encodings() {
        let identity: X25519Identity = IDENTITY.parse().expect("valid identity");
        assert_eq!(identity.to_secret_string().as_str(), IDENTITY);
        let recipient = identity.to_public();
        let text = recipient.to_string();
        assert!(text.starts_with("age1"));
        assert_eq!(text.parse::<X25519Recipient>().expect("valid"), recipient);
        assert!(!format!("{identity:?}").contains("SECRET"));
    }

    #[test]
    fn malformed_keys_are_rejected() {
        for bad in [
            "",
            "age1",
            &IDENTITY.to_lowercase().replace("age-secret-key-1", "age1"),
            &IDENTITY[..IDENTITY.len() - 1],
        ] {
            assert!(bad.parse::<X25519Recipient>().is_err(), "{bad}");
        }
        assert!("AGE-SECRET-KEY-1".parse::<X25519Identity>().is_err());
    }
}
