//! The C2SP CCTV age v1 test vectors (copied into tests/data/age-cctv, see its README): every
//! vector without a post-quantum identity gives its expected result, with the SHA-256 of the
//! released plaintext. The vectors live in this crate, so the test never skips; it fails if the
//! directory is missing or holds fewer vectors than the README counts.

use std::io::Read;
use std::path::Path;

use crypto_at_rest::Error;
use crypto_at_rest::Stage;
use crypto_at_rest::age::{ArmorMode, Decryptor, Identity, ScryptIdentity, X25519Identity};

/// Vectors run and skipped, as the vectors' README counts them.
const EXPECTED_RUN: usize = 124;
const EXPECTED_SKIPPED: usize = 19;

struct Vector {
    expect: String,
    payload: Option<String>,
    identities: Vec<String>,
    passphrases: Vec<String>,
    armored: bool,
    file: Vec<u8>,
}

fn parse_vector(path: &Path) -> Vector {
    let bytes = std::fs::read(path).expect("readable vector");
    let split = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("vector has a blank line after its fields");
    let fields = std::str::from_utf8(&bytes[..split]).expect("ASCII fields");
    let mut file = bytes[split + 2..].to_vec();
    let mut v = Vector {
        expect: String::new(),
        payload: None,
        identities: Vec::new(),
        passphrases: Vec::new(),
        armored: false,
        file: Vec::new(),
    };
    let mut compressed = false;
    for line in fields.lines() {
        let (key, value) = line.split_once(": ").expect("key: value");
        match key {
            "expect" => v.expect = value.to_owned(),
            "payload" => v.payload = Some(value.to_owned()),
            "identity" => v.identities.push(value.to_owned()),
            "passphrase" => v.passphrases.push(value.to_owned()),
            "armored" => v.armored = value == "yes",
            "compressed" => {
                assert_eq!(value, "zlib");
                compressed = true;
            }
            "file key" | "comment" => {}
            other => panic!("unknown vector field {other:?} in {}", path.display()),
        }
    }
    if compressed {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(&file[..])
            .read_to_end(&mut out)
            .expect("valid zlib");
        file = out;
    }
    v.file = file;
    v
}

/// The expectation category an error falls in, with age's names.
fn category(e: &Error) -> &'static str {
    match e {
        Error::Armor(_) => "armor failure",
        Error::AgeHeader(_) => "header failure",
        Error::NoMatchingIdentity => "no match",
        Error::Authentication(Stage::HeaderMac) => "HMAC failure",
        Error::Authentication(Stage::PayloadChunk) | Error::MalformedPayload(_) => {
            "payload failure"
        }
        other => panic!("unexpected error kind: {other:?}"),
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

/// Decrypts, returning the released plaintext and the failure category, if any.
fn run(v: &Vector) -> (Vec<u8>, Option<&'static str>) {
    let x25519: Vec<X25519Identity> = v
        .identities
        .iter()
        .map(|s| s.parse().expect("valid X25519 identity"))
        .collect();
    let scrypt: Vec<ScryptIdentity> = v
        .passphrases
        .iter()
        .map(|p| ScryptIdentity::new(p.as_bytes()))
        .collect();
    let identities: Vec<&dyn Identity> = x25519
        .iter()
        .map(|i| i as &dyn Identity)
        .chain(scrypt.iter().map(|i| i as &dyn Identity))
        .collect();
    let mode = if v.armored {
        ArmorMode::Armored
    } else {
        ArmorMode::Binary
    };
    let mut reader = match Decryptor::new(&identities)
        .with_armor(mode)
        .decrypt(&v.file[..])
    {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(category(&e))),
    };
    let mut released = Vec::new();
    let mut buf = vec![0u8; 10_000];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return (released, None),
            Ok(n) => released.extend_from_slice(&buf[..n]),
            Err(e) => {
                let inner = e
                    .get_ref()
                    .and_then(|i| i.downcast_ref::<Error>())
                    .expect("payload errors carry a crate Error");
                return (released, Some(category(inner)));
            }
        }
    }
}

#[test]
fn cctv_age_vectors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/age-cctv");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("vector directory {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n != "README.md" && n != ".gitattributes")
        })
        .collect();
    assert_eq!(
        names.len(),
        EXPECTED_RUN + EXPECTED_SKIPPED,
        "vector files in {}",
        dir.display()
    );
    names.sort();
    let (mut run_count, mut skipped) = (0, 0);
    let mut failures = Vec::new();
    for path in &names {
        let name = path.file_name().expect("file name").to_string_lossy();
        let v = parse_vector(path);
        if v.identities
            .iter()
            .any(|i| i.starts_with("AGE-SECRET-KEY-PQ-"))
        {
            skipped += 1;
            continue;
        }
        run_count += 1;
        let (released, failure) = run(&v);
        let got = failure.unwrap_or("success");
        if got != v.expect {
            failures.push(format!("{name}: expected {}, got {got}", v.expect));
            continue;
        }
        if let Some(payload) = &v.payload
            && &sha256_hex(&released) != payload
        {
            failures.push(format!("{name}: released plaintext has the wrong SHA-256"));
        }
    }
    assert!(run_count > 0, "no vector ran");
    assert!(
        failures.is_empty(),
        "{} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!((run_count, skipped), (EXPECTED_RUN, EXPECTED_SKIPPED));
}
