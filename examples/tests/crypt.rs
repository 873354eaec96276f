//! End-to-end tests of the `crypt` binary: round trips and the errors an operator sees.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn crypt(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crypt"));
    cmd.current_dir(dir)
        .args(args)
        .env_remove("CRYPT_PASSPHRASE")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("crypt runs")
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn fails_with(out: Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure");
    assert!(
        stderr.contains(needle),
        "stderr {stderr:?} lacks {needle:?}"
    );
}

fn recipient_of(dir: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(dir.join(key)).expect("key file");
    let line = text
        .lines()
        .find(|l| l.starts_with("# public key: "))
        .expect("public key line");
    line["# public key: ".len()..].to_owned()
}

#[test]
fn age_round_trip_and_operator_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let plain: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(d.join("plain"), &plain).expect("write");
    ok(crypt(d, &["keygen", "-o", "key.txt"], &[]));
    ok(crypt(d, &["keygen", "-o", "other.txt"], &[]));
    let recipient = recipient_of(d, "key.txt");

    for armor in [false, true] {
        let mut args = vec!["age", "-r", &recipient, "-o", "file.age", "plain"];
        if armor {
            args.push("-a");
        }
        ok(crypt(d, &args, &[]));
        // A renamed file still opens: nothing path-dependent is bound.
        std::fs::rename(d.join("file.age"), d.join("renamed.age")).expect("rename");
        let out = ok(crypt(
            d,
            &["age", "-d", "-i", "key.txt", "renamed.age"],
            &[],
        ));
        assert_eq!(out.stdout, plain);
    }

    fails_with(
        crypt(d, &["age", "-d", "-i", "key.txt", "missing.age"], &[]),
        "missing.age",
    );
    fails_with(
        crypt(
            d,
            &["age", "-d", "-i", "other.txt", "-o", "out", "renamed.age"],
            &[],
        ),
        "no identity matched",
    );
    assert!(
        !d.join("out").exists(),
        "a wrong key must not create the output"
    );

    let mut damaged = std::fs::read(d.join("renamed.age")).expect("read");
    let n = damaged.len();
    damaged[n - 200] ^= b'A' ^ b'B';
    std::fs::write(d.join("damaged.age"), &damaged).expect("write");
    fails_with(
        crypt(
            d,
            &["age", "-d", "-i", "key.txt", "-o", "out", "damaged.age"],
            &[],
        ),
        "damaged or truncated",
    );
    assert!(
        !d.join("out").exists(),
        "a damaged file must not leave partial output"
    );
}

#[test]
fn age_passphrase_from_env_and_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("plain"), b"secret notes").expect("write");
    std::fs::write(d.join("pass.txt"), "hunter2\n").expect("write");
    let env = [("CRYPT_PASSPHRASE", "hunter2")];
    ok(crypt(d, &["age", "-p", "-o", "p.age", "plain"], &env));
    let out = ok(crypt(
        d,
        &["age", "-d", "--passphrase-file", "pass.txt", "p.age"],
        &[],
    ));
    assert_eq!(out.stdout, b"secret notes");
    fails_with(
        crypt(d, &["age", "-d", "p.age"], &[("CRYPT_PASSPHRASE", "wrong")]),
        "wrong passphrase",
    );
    // No terminal, no variable, no file: the error names the ways to give one.
    fails_with(crypt(d, &["age", "-d", "p.age"], &[]), "CRYPT_PASSPHRASE");
}

#[test]
fn seal_open_rotate_with_a_keyring() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let plain: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(d.join("plain"), &plain).expect("write");
    ok(crypt(d, &["init-keyring", "-k", "ring.txt"], &[]));
    fails_with(
        crypt(d, &["init-keyring", "-k", "ring.txt"], &[]),
        "already exists",
    );
    ok(crypt(
        d,
        &[
            "seal",
            "-k",
            "ring.txt",
            "-c",
            "customer-42",
            "-o",
            "s.bin",
            "plain",
        ],
        &[],
    ));
    std::fs::rename(d.join("s.bin"), d.join("moved.bin")).expect("rename");
    let out = ok(crypt(
        d,
        &["open", "-k", "ring.txt", "-c", "customer-42", "moved.bin"],
        &[],
    ));
    assert_eq!(
        out.stdout, plain,
        "a renamed file opens with the same context"
    );
    fails_with(
        crypt(
            d,
            &[
                "open",
                "-k",
                "ring.txt",
                "-c",
                "customer-7",
                "-o",
                "out",
                "moved.bin",
            ],
            &[],
        ),
        "wrong --context",
    );
    assert!(!d.join("out").exists());

    let before = std::fs::read(d.join("moved.bin")).expect("read");
    ok(crypt(d, &["rotate", "-k", "ring.txt", "moved.bin"], &[]));
    let after = std::fs::read(d.join("moved.bin")).expect("read");
    assert_eq!(before.len(), after.len());
    assert_ne!(before, after, "the header was re-wrapped");
    let ring = std::fs::read_to_string(d.join("ring.txt")).expect("keyring");
    assert!(ring.contains("primary 2"), "{ring}");
    let out = ok(crypt(
        d,
        &["open", "-c", "customer-42", "moved.bin"],
        &[("CRYPT_KEYRING", &ring)],
    ));
    assert_eq!(
        out.stdout, plain,
        "opens after rotation, keyring from the environment"
    );

    let mut damaged = after;
    let n = damaged.len();
    damaged[n - 5] ^= 1;
    std::fs::write(d.join("damaged.bin"), &damaged).expect("write");
    fails_with(
        crypt(
            d,
            &["open", "-k", "ring.txt", "-c", "customer-42", "damaged.bin"],
            &[],
        ),
        "damaged or truncated",
    );
    fails_with(
        crypt(d, &["open", "-k", "nope.txt", "moved.bin"], &[]),
        "nope.txt",
    );

    // A keyring without the file's key (id 2 since the rotation) leaves an existing output file
    // untouched.
    ok(crypt(d, &["init-keyring", "-k", "other-ring.txt"], &[]));
    std::fs::write(d.join("keep"), b"precious").expect("write");
    fails_with(
        crypt(
            d,
            &[
                "open",
                "-k",
                "other-ring.txt",
                "-c",
                "customer-42",
                "-o",
                "keep",
                "moved.bin",
            ],
            &[],
        ),
        "the keyring lacks its key",
    );
    assert_eq!(std::fs::read(d.join("keep")).expect("read"), b"precious");
}
