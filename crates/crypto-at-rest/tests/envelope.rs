//! Envelopes: round trips, tampering, identity binding, key commitment, rotation and rewrap.

use crypto_at_rest::{Algorithm, CipherConfig, Error, KeyId, Keyring, SecretKey, Stage};
use proptest::prelude::*;

fn ring(id: u32, byte: u8) -> Keyring {
    Keyring::new(KeyId(id), SecretKey::from_bytes([byte; 32]))
}

fn chacha() -> CipherConfig {
    CipherConfig::builder()
        .with_algorithm(Algorithm::ChaCha20Poly1305)
        .build()
        .unwrap()
}

#[test]
fn every_bit_flip_fails_and_releases_nothing() {
    let keys = ring(7, 1);
    for config in [CipherConfig::default(), chacha()] {
        let sealed = keys
            .seal_with(&config, b"obj/1", b"hello, envelope")
            .unwrap();
        assert_eq!(sealed.len(), Keyring::HEADER_LEN + 15 + 16);
        for bit in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            // The API returns either the whole plaintext or an error: nothing partial.
            assert!(
                keys.open(b"obj/1", &bad).is_err(),
                "flipped bit {bit} opened"
            );
        }
        assert_eq!(keys.open(b"obj/1", &sealed).unwrap(), b"hello, envelope");
    }
}

#[test]
fn truncation_at_every_length_fails() {
    let keys = ring(1, 2);
    let sealed = keys.seal(b"a", &[9u8; 100]).unwrap();
    for len in 0..sealed.len() {
        assert!(
            keys.open(b"a", &sealed[..len]).is_err(),
            "length {len} opened"
        );
    }
    let mut longer = sealed.clone();
    longer.push(0);
    assert!(matches!(
        keys.open(b"a", &longer),
        Err(Error::Authentication(Stage::PayloadChunk))
    ));
}

#[test]
fn wrong_aad_and_wrong_key_are_opaque_authentication_errors() {
    let keys = ring(3, 3);
    let sealed = keys.seal(b"customer-1/db.sql", b"secret").unwrap();
    // Copied under another name.
    assert!(matches!(
        keys.open(b"customer-2/db.sql", &sealed),
        Err(Error::Authentication(Stage::PayloadChunk))
    ));
    // Same key id, other key bytes: the data key does not unwrap.
    assert!(matches!(
        ring(3, 4).open(b"customer-1/db.sql", &sealed),
        Err(Error::Authentication(Stage::DataKey))
    ));
    assert!(matches!(
        ring(4, 3).open(b"customer-1/db.sql", &sealed),
        Err(Error::UnknownKeyId(3))
    ));
}

#[test]
fn format_problems_are_named() {
    let keys = ring(1, 1);
    let sealed = keys.seal(b"", b"x").unwrap();
    let mut version = sealed.clone();
    version[4] = 9;
    assert!(matches!(
        keys.open(b"", &version),
        Err(Error::UnknownVersion(9))
    ));
    let mut alg = sealed.clone();
    alg[5] = 77;
    assert!(matches!(
        keys.open(b"", &alg),
        Err(Error::InvalidHeader("unknown algorithm"))
    ));
    assert!(matches!(
        keys.open(b"", &sealed[..40]),
        Err(Error::InvalidHeader("truncated header"))
    ));
    assert!(matches!(
        keys.open(b"", b"hg"),
        Err(Error::InvalidHeader("truncated header"))
    ));
    assert!(matches!(
        keys.open(b"", b"PK\x03\x04 zip file"),
        Err(Error::InvalidHeader(_))
    ));
    // A stream is not an envelope.
    let mut stream = Vec::new();
    keys.encrypt_stream(&CipherConfig::default(), b"", &b"x"[..], &mut stream)
        .unwrap();
    assert!(matches!(
        keys.open(b"", &stream),
        Err(Error::InvalidHeader(_))
    ));
}

#[test]
fn key_commitment_is_checked() {
    // Rewriting the commitment (with a correct wrap and payload otherwise) must fail, so the
    // header pins the one data key the payload opens under.
    let keys = ring(1, 1);
    let sealed = keys.seal(b"", b"committed").unwrap();
    let mut bad = sealed.clone();
    bad[50] ^= 1; // inside the commitment (bytes 42..74)
    assert!(matches!(
        keys.open(b"", &bad),
        Err(Error::Authentication(Stage::DataKey))
    ));
}

#[test]
fn rotation_and_rewrap_keep_payload_bytes() {
    let mut keys = ring(1, 1);
    let old = keys.seal(b"name", b"payload under key 1").unwrap();
    let new_id = keys.rotate_generated().unwrap();
    assert_eq!(new_id, KeyId(2));
    assert_eq!(keys.primary(), KeyId(2));
    // Old objects still open; new ones use the new primary.
    assert_eq!(keys.open(b"name", &old).unwrap(), b"payload under key 1");
    let fresh = keys.seal(b"name", b"new").unwrap();
    assert_eq!(Keyring::key_id_of(&fresh).unwrap(), KeyId(2));

    let mut moved = old.clone();
    assert_eq!(keys.rewrap(&mut moved).unwrap(), KeyId(1));
    assert_eq!(Keyring::key_id_of(&moved).unwrap(), KeyId(2));
    assert_eq!(
        moved[Keyring::HEADER_LEN..],
        old[Keyring::HEADER_LEN..],
        "payload was rewritten"
    );
    assert_eq!(moved[..74], old[..74], "fixed header bytes changed");
    keys.remove(KeyId(1)).unwrap();
    assert_eq!(keys.open(b"name", &moved).unwrap(), b"payload under key 1");
    assert!(matches!(
        keys.open(b"name", &old),
        Err(Error::UnknownKeyId(1))
    ));
    assert!(keys.remove(KeyId(2)).is_err(), "removed the primary");
}

#[test]
fn rewrap_works_on_a_stream_header_alone() {
    let mut keys = ring(1, 1);
    let mut stream = Vec::new();
    keys.encrypt_stream(
        &CipherConfig::default(),
        b"s",
        &[5u8; 1000][..],
        &mut stream,
    )
    .unwrap();
    keys.rotate(KeyId(9), SecretKey::generate().unwrap())
        .unwrap();
    let mut header = stream[..Keyring::HEADER_LEN].to_vec();
    keys.rewrap(&mut header).unwrap();
    stream[..Keyring::HEADER_LEN].copy_from_slice(&header);
    keys.remove(KeyId(1)).unwrap();
    let mut out = Vec::new();
    keys.decrypt_stream(1, b"s", &stream[..], &mut out).unwrap();
    assert_eq!(out, [5u8; 1000]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trips(data in proptest::collection::vec(any::<u8>(), 0..5000),
                   aad in proptest::collection::vec(any::<u8>(), 0..64),
                   chacha_alg in any::<bool>()) {
        let keys = ring(5, 5);
        let config = if chacha_alg { chacha() } else { CipherConfig::default() };
        let sealed = keys.seal_with(&config, &aad, &data).unwrap();
        prop_assert_eq!(keys.open(&aad, &sealed).unwrap(), data);
    }
}

#[test]
fn seal_to_appends_envelopes_that_open_on_their_own() {
    let keys = ring(3, 9);
    let mut out = b"prefix".to_vec();
    keys.seal_to(&CipherConfig::default(), b"a", b"first", &mut out)
        .unwrap();
    let first_end = out.len();
    keys.seal_to(&chacha(), b"b", b"second object", &mut out)
        .unwrap();
    assert_eq!(&out[..6], b"prefix");
    assert_eq!(first_end, 6 + Keyring::HEADER_LEN + 5 + 16);
    assert_eq!(keys.open(b"a", &out[6..first_end]).unwrap(), b"first");
    assert_eq!(
        keys.open(b"b", &out[first_end..]).unwrap(),
        b"second object"
    );
    assert!(keys.open(b"b", &out[6..first_end]).is_err());
}

#[test]
fn open_to_reuses_the_buffer_and_leaves_it_empty_on_failure() {
    let keys = ring(4, 5);
    let sealed = keys.seal(b"obj", b"payload").unwrap();
    let mut out = b"old contents that must go".to_vec();
    keys.open_to(b"obj", &sealed, &mut out).unwrap();
    assert_eq!(out, b"payload");
    let mut bad = sealed.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(keys.open_to(b"obj", &bad, &mut out).is_err());
    assert!(out.is_empty(), "a failed open released {out:?}");
}
