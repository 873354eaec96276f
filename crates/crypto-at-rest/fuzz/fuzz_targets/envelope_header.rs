//! Envelope headers, keyring text and passphrase-KDF settings from hostile bytes: never a panic,
//! and a sealed envelope damaged anywhere never opens.
#![no_main]

use crypto_at_rest::{KeyId, Keyring, PassphraseKdf, SecretKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = Keyring::new(KeyId(1), SecretKey::from_bytes([7; 32]));
    match mode % 4 {
        // Raw bytes as an envelope: open, read the key id, rewrap.
        0 => {
            let _ = keys.open(b"aad", rest);
            let _ = Keyring::key_id_of(rest);
            let mut copy = rest.to_vec();
            let _ = keys.rewrap(&mut copy);
        }
        // A genuine envelope with one bit flipped (position from the first two bytes): never opens.
        1 if rest.len() >= 2 => {
            let (pos, payload) = rest.split_at(2);
            let sealed = keys.seal(b"aad", payload).expect("seal");
            assert_eq!(keys.open(b"aad", &sealed).expect("round trip"), payload);
            let bit = usize::from(u16::from_le_bytes([pos[0], pos[1]])) % (sealed.len() * 8);
            let mut bad = sealed;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(keys.open(b"aad", &bad).is_err(), "a flipped bit opened");
        }
        2 => {
            let _ = Keyring::parse(&String::from_utf8_lossy(rest));
        }
        _ => {
            let _ = String::from_utf8_lossy(rest).parse::<PassphraseKdf>();
        }
    }
});
