//! Property tests for age files: round trips over random sizes, write patterns, armor and thread
//! counts; any single bit flip is an error, and readers release only a prefix of the plaintext.

use std::io::{Read, Write};

use crypto_at_rest::age::{Decryptor, Encryptor, Identity, X25519Identity};
use proptest::prelude::*;

fn encrypt(identity: &X25519Identity, plain: &[u8], armored: bool, piece: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = Encryptor::new(&[&identity.to_public()])
        .expect("encryptor")
        .armored(armored)
        .wrap_output(&mut out)
        .expect("header");
    for part in plain.chunks(piece) {
        w.write_all(part).expect("write");
    }
    w.finish().expect("finish");
    out
}

/// Decrypts with the streaming reader; returns the released plaintext and whether it failed.
fn decrypt_streaming(identity: &X25519Identity, file: &[u8]) -> (Vec<u8>, bool) {
    let ids: [&dyn Identity; 1] = [identity];
    let Ok(mut reader) = Decryptor::new(&ids).decrypt(file) else {
        return (Vec::new(), true);
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return (out, false),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, true),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn round_trips(
        len in prop_oneof![0usize..200, 65_000usize..200_000],
        piece in 1usize..100_000,
        armored: bool,
        threads in 1usize..4,
    ) {
        let identity = X25519Identity::generate().expect("identity");
        let plain: Vec<u8> = (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8).collect();
        let file = encrypt(&identity, &plain, armored, piece);
        let (opened, failed) = decrypt_streaming(&identity, &file);
        prop_assert!(!failed);
        prop_assert_eq!(&opened, &plain);
        let ids: [&dyn Identity; 1] = [&identity];
        let mut out = Vec::new();
        Decryptor::new(&ids).decrypt_all(&file[..], &mut out, threads).expect("decrypt_all");
        prop_assert_eq!(out, plain);
    }

    #[test]
    fn any_bit_flip_fails_and_releases_only_a_prefix(
        len in 0usize..150_000,
        position in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let identity = X25519Identity::generate().expect("identity");
        let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut file = encrypt(&identity, &plain, false, 1 << 16);
        let at = position.index(file.len());
        file[at] ^= 1 << bit;
        let (released, failed) = decrypt_streaming(&identity, &file);
        prop_assert!(failed, "flip at byte {} of {} went unnoticed", at, file.len());
        prop_assert!(plain.starts_with(&released));
    }
}
