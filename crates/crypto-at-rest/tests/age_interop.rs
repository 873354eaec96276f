//! Interop with the real `age` CLI (X25519, armored and binary, sizes around chunk boundaries)
//! and with pyrage (passphrases), both ways.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crypto_at_rest::age::{self, Decryptor, Encryptor, Identity, ScryptIdentity, ScryptRecipient};

const SIZES: [usize; 6] = [0, 1, 65535, 65536, 65537, 5 << 20];

fn data(len: usize) -> Vec<u8> {
    // A cheap non-repeating pattern (a repeated one could hide chunk mix-ups).
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ len as u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Runs `program` with `args`, feeding `stdin`; returns stdout, failing on a non-zero exit.
fn run(program: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || input.write_all(&stdin));
    let out = child.wait_with_output().expect("wait");
    feeder.join().expect("feeder thread").expect("write stdin");
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn age_cli_interop_both_ways() {
    let (Some(age_cli), Some(keygen)) = (
        test_support::require_program("age"),
        test_support::require_program("age-keygen"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("key.txt");
    run(
        &keygen,
        &["-o", key_file.to_str().expect("utf-8 path")],
        b"",
    );
    let identities =
        age::parse_identities(&std::fs::read_to_string(&key_file).expect("key file")).expect("key");
    let identity = &identities[0];
    let recipient = identity.to_public().to_string();
    let key_path = key_file.to_str().expect("utf-8 path");

    for armored in [false, true] {
        for size in SIZES {
            let plain = data(size);
            let what = format!("size {size}, armored {armored}");

            // Ours -> age -d.
            let mut ours = Vec::new();
            let mut w = Encryptor::new(&[&identity.to_public()])
                .expect("encryptor")
                .armored(armored)
                .wrap_output(&mut ours)
                .expect("header");
            w.write_all(&plain).expect("write");
            w.finish().expect("finish");
            assert_eq!(ours.starts_with(b"-----BEGIN"), armored, "{what}");
            assert_eq!(
                run(&age_cli, &["-d", "-i", key_path], &ours),
                plain,
                "{what}: age -d"
            );

            // age -r -> ours, streaming and on two threads.
            let mut args = vec!["-r", recipient.as_str()];
            if armored {
                args.push("-a");
            }
            let theirs = run(&age_cli, &args, &plain);
            let ids: [&dyn Identity; 1] = [identity];
            let mut opened = Vec::new();
            Decryptor::new(&ids)
                .decrypt(&theirs[..])
                .expect("header from age")
                .read_to_end(&mut opened)
                .expect("payload from age");
            assert_eq!(opened, plain, "{what}: ours streaming");
            let mut opened = Vec::new();
            Decryptor::new(&ids)
                .decrypt_all(&theirs[..], &mut opened, 2)
                .expect("age file opens on two threads");
            assert_eq!(opened, plain, "{what}: ours on two threads");
        }
    }
}

const PYRAGE: &str = r#"
import sys
from pyrage import passphrase
mode, pw = sys.argv[1], sys.argv[2]
data = sys.stdin.buffer.read()
out = passphrase.encrypt(data, pw) if mode == "encrypt" else passphrase.decrypt(data, pw)
sys.stdout.buffer.write(out)
"#;

#[test]
fn pyrage_passphrase_interop_both_ways() {
    let Some(python) = test_support::require_env("HOSTGUARD_PYTHON", "python with pyrage") else {
        return;
    };
    let python = Path::new(&python);
    let pass = "correct horse battery staple";
    for size in [0, 65536, 100_000] {
        let plain = data(size);
        // Ours -> pyrage, at the CLI's default work factor.
        let mut ours = Vec::new();
        let mut w = Encryptor::new(&[&ScryptRecipient::new(pass.as_bytes())])
            .expect("encryptor")
            .wrap_output(&mut ours)
            .expect("header");
        w.write_all(&plain).expect("write");
        w.finish().expect("finish");
        let decrypted = run(python, &["-c", PYRAGE, "decrypt", pass], &ours);
        assert_eq!(decrypted, plain, "size {size}: pyrage decrypt");

        // pyrage -> ours; the wrong passphrase is no match.
        let theirs = run(python, &["-c", PYRAGE, "encrypt", pass], &plain);
        let right = ScryptIdentity::new(pass.as_bytes());
        let ids: [&dyn Identity; 1] = [&right];
        let mut opened = Vec::new();
        Decryptor::new(&ids)
            .decrypt(&theirs[..])
            .expect("header from pyrage")
            .read_to_end(&mut opened)
            .expect("payload from pyrage");
        assert_eq!(opened, plain, "size {size}: ours");
        let wrong = ScryptIdentity::new(b"wrong");
        let ids: [&dyn Identity; 1] = [&wrong];
        assert!(matches!(
            Decryptor::new(&ids).decrypt(&theirs[..]),
            Err(crypto_at_rest::Error::NoMatchingIdentity)
        ));
    }
}
