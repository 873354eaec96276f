//! Fuzzes the age decryptor from the header on: any input must give a clean error or plaintext,
//! never a panic, and only under a key that opens a stanza.
#![no_main]

use std::io::Read;

use crypto_at_rest::age::{ArmorMode, Decryptor, Identity, ScryptIdentity, X25519Identity};
use libfuzzer_sys::fuzz_target;

// The CCTV vectors' identity and passphrase, so seeds from them reach the payload; the scrypt
// work factor is capped low to keep executions fast.
const IDENTITY: &str = "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0";

fuzz_target!(|data: &[u8]| {
    let x25519: X25519Identity = IDENTITY.parse().expect("valid identity");
    let scrypt = ScryptIdentity::new(b"password").with_max_work_factor(10);
    let identities: [&dyn Identity; 2] = [&x25519, &scrypt];
    for mode in [ArmorMode::Binary, ArmorMode::Detect] {
        if let Ok(mut reader) = Decryptor::new(&identities).with_armor(mode).decrypt(data) {
            let mut out = Vec::new();
            let _ = reader.read_to_end(&mut out);
            assert!(out.len() <= data.len(), "more plaintext than input");
        }
    }
});
