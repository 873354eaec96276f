//! Known answers that pin the on-disk formats: envelopes, streams and keyring files written once
//! by this crate (commit 2026-12-06, format version 1) and committed in tests/data/fixtures/.
//! Every round-trip test would pass after a format change that made stored data unreadable;
//! these open the committed bytes and compare the plaintext with SHA-256 values computed
//! independently of this crate (see `content` for the recipe).
//!
//! A format change must add a version and keep these opening. The fixtures are never rewritten:
//! `write_fixtures` (ignored, and it refuses to overwrite) made them once, with
//! `HOSTGUARD_WRITE_FIXTURES=1 cargo test -p crypto-at-rest --test fixtures -- --ignored`.

use std::io::Read;
use std::path::{Path, PathBuf};

use crypto_at_rest::{Algorithm, CipherConfig, Kdf, KeyId, Keyring};

/// The passphrase the sealed keyring fixtures are sealed under.
const PASSPHRASE: &str = "correct horse battery staple";

/// The known plaintexts: byte `i` of fixture `seed`'s content is `(31 i + 7 seed) mod 251`.
/// The SHA-256 values below were computed from that recipe in Python
/// (`hashlib.sha256(bytes((i*31 + seed*7) % 251 for i in range(len)))`), not by this crate.
fn content(len: usize, seed: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + seed * 7) % 251) as u8)
        .collect()
}

#[derive(Clone, Copy)]
enum Kind {
    Envelope,
    /// A stream with this chunk size.
    Stream(u32),
}

struct Fixture {
    name: &'static str,
    kind: Kind,
    algorithm: Algorithm,
    key: u32,
    len: usize,
    seed: usize,
    sha256: &'static str,
}

const AES: Algorithm = Algorithm::Aes256Gcm;
const CHACHA: Algorithm = Algorithm::ChaCha20Poly1305;

#[rustfmt::skip]
const FIXTURES: &[Fixture] = &[
    Fixture { name: "envelope-aes-empty", kind: Kind::Envelope, algorithm: AES, key: 2, len: 0, seed: 1,
        sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
    Fixture { name: "envelope-aes-small", kind: Kind::Envelope, algorithm: AES, key: 2, len: 13, seed: 2,
        sha256: "dc0113bd5443ef9749099306eea1363678e393b53c8c7e5464eb3f42a73951c1" },
    Fixture { name: "envelope-chacha-1000", kind: Kind::Envelope, algorithm: CHACHA, key: 2, len: 1000, seed: 3,
        sha256: "495513a0bfc42a00beefc26f10b9bd1357c5f660818532288d6c7c79b3edbab6" },
    Fixture { name: "envelope-aes-100000-key1", kind: Kind::Envelope, algorithm: AES, key: 1, len: 100_000, seed: 4,
        sha256: "88c500bb1e9698d0a678afb6dc315c7f3ac2d134543fd0511cfd2bfe3038cfe2" },
    Fixture { name: "stream-aes-c16-0", kind: Kind::Stream(16), algorithm: AES, key: 2, len: 0, seed: 5,
        sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
    Fixture { name: "stream-aes-c16-48", kind: Kind::Stream(16), algorithm: AES, key: 2, len: 48, seed: 6,
        sha256: "367e998bafe93f0b976d500e072c4ea7cb03a8dc3e9f0327fc227dac729adca9" },
    Fixture { name: "stream-chacha-c1-7", kind: Kind::Stream(1), algorithm: CHACHA, key: 2, len: 7, seed: 7,
        sha256: "94f7b614aa5dfc966faeae4f3571997cf71bb9fbd411e3c3d98fa9c69fabbf14" },
    Fixture { name: "stream-aes-c4096-10000", kind: Kind::Stream(4096), algorithm: AES, key: 2, len: 10_000, seed: 8,
        sha256: "2d7b6019af4266a3dd5b9ee76d18d4a53ce2d8ba625c9c3e7cfa1f98f7f5bbbd" },
    Fixture { name: "stream-chacha-c4096-10000", kind: Kind::Stream(4096), algorithm: CHACHA, key: 2, len: 10_000, seed: 9,
        sha256: "25f3715edbba720143182e15bed613e5fc1f36be37c0effa9c1eedbec0451231" },
    Fixture { name: "stream-aes-c65536-200000", kind: Kind::Stream(65536), algorithm: AES, key: 2, len: 200_000, seed: 10,
        sha256: "29419f7fca5eed10152405d9af681c04ac1c531f304a131f7bb51930927c00ef" },
    Fixture { name: "stream-chacha-c65536-131072-key1", kind: Kind::Stream(65536), algorithm: CHACHA, key: 1, len: 131_072, seed: 11,
        sha256: "17c143dfcd97e891574f5272275f6a219c5f414ac84ea6d5b5aac55ded1869cd" },
    Fixture { name: "stream-aes-c1048576-100", kind: Kind::Stream(1 << 20), algorithm: AES, key: 2, len: 100, seed: 12,
        sha256: "9dc13e2c5bc6ab5694b3886fb2eb22fba822f3a686af6ae9fde87b4beca369a5" },
];

/// The keyring files: the plain text form, and the same keyring sealed under [`PASSPHRASE`]
/// with each KDF at the parameters the `crypt` tool and backup-core use.
const KEYRING: &str = "keyring.txt";
const SEALED_KEYRINGS: [(&str, Kdf); 2] = [
    ("keyring-scrypt.sealed", Kdf::SCRYPT_OWASP_2023),
    ("keyring-argon2id.sealed", Kdf::ARGON2ID_OWASP_2023),
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fixtures")
}

/// The associated data each fixture is bound to.
fn aad(name: &str) -> Vec<u8> {
    format!("hostguard fixture {name}").into_bytes()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

fn read(name: &str) -> Vec<u8> {
    let path = dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn keyring() -> Keyring {
    let text = String::from_utf8(read(KEYRING)).expect("UTF-8 keyring");
    Keyring::parse(&text).expect("the keyring fixture parses")
}

/// Opens a fixture with `keys` and checks its header fields and plaintext.
fn check(keys: &Keyring, f: &Fixture) {
    let bytes = read(f.name);
    // Header fields at the offsets FORMAT.md gives.
    let (magic, chunk) = match f.kind {
        Kind::Envelope => (b"hgEV", 0),
        Kind::Stream(chunk) => (b"hgST", chunk),
    };
    assert_eq!(&bytes[..4], magic, "{}: magic", f.name);
    assert_eq!(bytes[4], 1, "{}: version", f.name);
    assert_eq!(bytes[5], f.algorithm.id(), "{}: algorithm", f.name);
    assert_eq!(bytes[6..10], chunk.to_be_bytes(), "{}: chunk size", f.name);
    assert_eq!(bytes[74..78], f.key.to_be_bytes(), "{}: key id", f.name);
    assert_eq!(Keyring::key_id_of(&bytes).expect("header"), KeyId(f.key));

    let aad = aad(f.name);
    let plain = match f.kind {
        Kind::Envelope => keys.open(&aad, &bytes).expect(f.name),
        Kind::Stream(_) => {
            let mut parallel = Vec::new();
            keys.decrypt_stream(2, &aad, &bytes[..], &mut parallel)
                .expect(f.name);
            let mut sequential = Vec::new();
            keys.decrypt_reader(&aad, &bytes[..])
                .expect(f.name)
                .read_to_end(&mut sequential)
                .expect(f.name);
            assert_eq!(parallel, sequential, "{}", f.name);
            parallel
        }
    };
    assert_eq!(plain.len(), f.len, "{}: length", f.name);
    assert_eq!(sha256_hex(&plain), f.sha256, "{}: SHA-256", f.name);
    let other_name = match f.kind {
        Kind::Envelope => keys.open(b"another name", &bytes).map(drop),
        Kind::Stream(_) => keys
            .decrypt_stream(1, b"another name", &bytes[..], std::io::sink())
            .map(drop),
    };
    assert!(other_name.is_err(), "{}: opens under another name", f.name);
}

#[test]
fn committed_envelopes_and_streams_open_to_their_known_content() {
    let keys = keyring();
    assert_eq!(keys.primary(), KeyId(2));
    assert_eq!(keys.ids().collect::<Vec<_>>(), [KeyId(1), KeyId(2)]);
    for f in FIXTURES {
        check(&keys, f);
    }
}

#[test]
fn committed_sealed_keyrings_open_with_their_passphrase() {
    let plain = keyring();
    for (name, _) in SEALED_KEYRINGS {
        let text = String::from_utf8(read(name)).expect("UTF-8");
        assert!(Keyring::is_sealed_file(&text), "{name}");
        let keys = Keyring::open_with_passphrase(&text, PASSPHRASE.as_bytes()).expect(name);
        assert_eq!(keys.primary(), plain.primary(), "{name}");
        assert_eq!(*keys.to_text(), *plain.to_text(), "{name}");
        assert!(
            Keyring::open_with_passphrase(&text, b"wrong").is_err(),
            "{name}"
        );
        // The keyring opened from the sealed file opens the data too.
        check(&keys, &FIXTURES[3]);
    }
}

/// Writes the fixtures once. Ignored, gated by `HOSTGUARD_WRITE_FIXTURES=1`, and it refuses
/// to overwrite a fixture: the committed files are the reference, never regenerated.
#[test]
#[ignore = "writes the committed fixtures once; never part of a test run"]
fn write_fixtures() {
    if std::env::var_os("HOSTGUARD_WRITE_FIXTURES").is_none_or(|v| v != "1") {
        panic!("set HOSTGUARD_WRITE_FIXTURES=1 to write new fixtures");
    }
    let dir = dir();
    std::fs::create_dir_all(&dir).expect("fixture directory");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        assert!(
            !path.exists(),
            "{} exists: fixtures are never rewritten",
            path.display()
        );
        std::fs::write(&path, bytes).expect("write fixture");
    };
    let mut old = Keyring::generate(KeyId(1)).expect("key");
    let old_text = old.to_text();
    old.rotate_generated().expect("rotate");
    let keys = old;
    write(KEYRING, keys.to_text().as_bytes());
    for (name, kdf) in SEALED_KEYRINGS {
        let sealed = keys
            .seal_with_passphrase(PASSPHRASE.as_bytes(), kdf)
            .expect("seal keyring");
        write(name, sealed.as_bytes());
    }
    let key1 = Keyring::parse(&old_text).expect("key 1 alone");
    for f in FIXTURES {
        let sealer = if f.key == 1 { &key1 } else { &keys };
        let plain = content(f.len, f.seed);
        assert_eq!(sha256_hex(&plain), f.sha256, "{}: recipe", f.name);
        let aad = aad(f.name);
        let bytes = match f.kind {
            Kind::Envelope => {
                let config = CipherConfig::builder()
                    .with_algorithm(f.algorithm)
                    .build()
                    .expect("config");
                sealer.seal_with(&config, &aad, &plain).expect("seal")
            }
            Kind::Stream(chunk) => {
                let config = CipherConfig::builder()
                    .with_algorithm(f.algorithm)
                    .with_chunk_size(chunk)
                    .build()
                    .expect("config");
                let mut out = Vec::new();
                sealer
                    .encrypt_stream(&config, &aad, &plain[..], &mut out)
                    .expect("seal stream");
                out
            }
        };
        write(f.name, &bytes);
    }
}
