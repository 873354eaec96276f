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

/// A keyring, a file sealed under it with context "c", an age identity, the same plaintext as an
/// age file, and a damaged copy of each (one byte of the last chunk flipped).
fn sealed_files(d: &Path) -> Vec<u8> {
    let plain: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 253) as u8).collect();
    std::fs::write(d.join("plain"), &plain).expect("write");
    ok(crypt(d, &["init-keyring", "-k", "ring.txt"], &[]));
    ok(crypt(
        d,
        &["seal", "-k", "ring.txt", "-c", "c", "-o", "s.bin", "plain"],
        &[],
    ));
    ok(crypt(d, &["keygen", "-o", "key.txt"], &[]));
    let recipient = recipient_of(d, "key.txt");
    ok(crypt(
        d,
        &["age", "-r", &recipient, "-o", "f.age", "plain"],
        &[],
    ));
    for (from, to) in [("s.bin", "damaged.bin"), ("f.age", "damaged.age")] {
        let mut bytes = std::fs::read(d.join(from)).expect("read");
        let n = bytes.len();
        bytes[n - 20] ^= 1;
        std::fs::write(d.join(to), &bytes).expect("write");
    }
    plain
}

/// The failing commands: payload damage for `open` and `age -d`, and a wrong `--context`.
fn failing_commands(output: &str) -> Vec<Vec<String>> {
    let cmds: [&[&str]; 3] = [
        &["open", "-k", "ring.txt", "-c", "c", "damaged.bin"],
        &["open", "-k", "ring.txt", "-c", "wrong", "s.bin"],
        &["age", "-d", "-i", "key.txt", "damaged.age"],
    ];
    cmds.iter()
        .map(|c| {
            let mut v: Vec<String> = c.iter().map(|s| s.to_string()).collect();
            v.extend(["-o".to_owned(), output.to_owned()]);
            v
        })
        .collect()
}

fn mkfifo(d: &Path, name: &str) -> std::path::PathBuf {
    let fifo = d.join(name);
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success(), "mkfifo {}", fifo.display());
    fifo
}

fn run_strings(d: &Path, args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    crypt(d, &args, &[])
}

#[test]
fn a_failed_decryption_leaves_every_kind_of_output_path_as_it_was() {
    use std::os::unix::fs::FileTypeExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    sealed_files(d);

    // An existing file, and a symlink to one: untouched, the symlink still a symlink.
    std::fs::write(d.join("keep"), b"precious").expect("write");
    std::fs::write(d.join("target"), b"linked").expect("write");
    std::os::unix::fs::symlink("target", d.join("link")).expect("symlink");
    for name in ["keep", "link"] {
        for args in failing_commands(name) {
            assert!(!run_strings(d, &args).status.success(), "{args:?}");
        }
    }
    assert_eq!(std::fs::read(d.join("keep")).expect("read"), b"precious");
    assert!(
        std::fs::symlink_metadata(d.join("link"))
            .expect("link kept")
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read(d.join("target")).expect("read"), b"linked");
    // No temporary file is left behind either.
    let names: Vec<String> = std::fs::read_dir(d)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "left behind: {names:?}");

    // A FIFO is written directly and stays a FIFO (a reader drains it meanwhile).
    let fifo = mkfifo(d, "fifo");
    for args in failing_commands("fifo") {
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo).expect("read fifo").len())
        };
        assert!(!run_strings(d, &args).status.success(), "{args:?}");
        reader.join().expect("reader");
        let kind = std::fs::symlink_metadata(&fifo)
            .expect("fifo kept")
            .file_type();
        assert!(kind.is_fifo(), "{args:?} replaced the FIFO");
    }

    // A device node (a copy of /dev/null, made in the temporary directory) is never removed.
    let made = Command::new("mknod")
        .arg(d.join("null"))
        .args(["c", "1", "3"])
        .status()
        .is_ok_and(|s| s.success());
    if made {
        for args in failing_commands("null") {
            assert!(!run_strings(d, &args).status.success(), "{args:?}");
            let kind = std::fs::symlink_metadata(d.join("null"))
                .expect("device kept")
                .file_type();
            assert!(kind.is_char_device(), "{args:?} removed the device node");
        }
    } else {
        test_support::record_skip("mknod failed (not root): device-node case not run");
        eprintln!("SKIPPED: device-node case (mknod needs root)");
    }
}

#[test]
fn a_successful_decryption_replaces_the_file_a_symlink_names_and_writes_into_a_fifo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let plain = sealed_files(d);
    std::fs::write(d.join("target"), b"old").expect("write");
    std::os::unix::fs::symlink("target", d.join("link")).expect("symlink");
    ok(crypt(
        d,
        &["open", "-k", "ring.txt", "-c", "c", "-o", "link", "s.bin"],
        &[],
    ));
    assert!(
        std::fs::symlink_metadata(d.join("link"))
            .expect("link")
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read(d.join("target")).expect("read"), plain);

    let fifo = mkfifo(d, "fifo");
    let reader = std::thread::spawn(move || std::fs::read(fifo).expect("read fifo"));
    ok(crypt(
        d,
        &["age", "-d", "-i", "key.txt", "-o", "fifo", "f.age"],
        &[],
    ));
    assert_eq!(reader.join().expect("reader"), plain);
}

#[test]
fn an_output_naming_the_input_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    sealed_files(d);
    let recipient = recipient_of(d, "key.txt");
    std::fs::hard_link(d.join("s.bin"), d.join("s-hardlink.bin")).expect("hard link");
    std::fs::hard_link(d.join("f.age"), d.join("f-hardlink.age")).expect("hard link");
    std::os::unix::fs::symlink("plain", d.join("plain-link")).expect("symlink");
    let originals: Vec<(&str, Vec<u8>)> = ["s.bin", "f.age", "plain"]
        .into_iter()
        .map(|n| (n, std::fs::read(d.join(n)).expect("read")))
        .collect();
    let cases: [&[&str]; 8] = [
        &["open", "-k", "ring.txt", "-c", "c", "-o", "s.bin", "s.bin"],
        &[
            "open",
            "-k",
            "ring.txt",
            "-c",
            "c",
            "-o",
            "s-hardlink.bin",
            "s.bin",
        ],
        &["age", "-d", "-i", "key.txt", "-o", "f.age", "f.age"],
        &[
            "age",
            "-d",
            "-i",
            "key.txt",
            "-o",
            "./f-hardlink.age",
            "f.age",
        ],
        &["seal", "-k", "ring.txt", "-o", "plain", "plain"],
        &["seal", "-k", "ring.txt", "-o", "plain-link", "plain"],
        &["age", "-r", &recipient, "-o", "plain", "plain"],
        &["age", "-r", &recipient, "-o", "plain-link", "./plain"],
    ];
    for args in cases {
        fails_with(crypt(d, args, &[]), "is the input file");
    }
    for (name, bytes) in originals {
        assert_eq!(std::fs::read(d.join(name)).expect("read"), bytes, "{name}");
    }
}

#[test]
fn an_empty_passphrase_is_refused_from_every_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("plain"), b"notes").expect("write");
    std::fs::write(d.join("empty.txt"), "").expect("write");
    std::fs::write(d.join("blank-line.txt"), "\nsecond line\n").expect("write");
    let empty_env = [("CRYPT_PASSPHRASE", "")];
    fails_with(
        crypt(d, &["age", "-p", "-o", "p.age", "plain"], &empty_env),
        "empty passphrase",
    );
    for file in ["empty.txt", "blank-line.txt"] {
        fails_with(
            crypt(
                d,
                &[
                    "age",
                    "-p",
                    "--passphrase-file",
                    file,
                    "-o",
                    "p.age",
                    "plain",
                ],
                &[],
            ),
            "empty passphrase",
        );
        fails_with(
            crypt(
                d,
                &[
                    "init-keyring",
                    "-p",
                    "--passphrase-file",
                    file,
                    "-k",
                    "r.txt",
                ],
                &[],
            ),
            "empty passphrase",
        );
    }
    fails_with(
        crypt(d, &["init-keyring", "-p", "-k", "r.txt"], &empty_env),
        "empty passphrase",
    );
    assert!(!d.join("p.age").exists());
    assert!(!d.join("r.txt").exists());
}

/// The key id in a sealed file's header, read through the library.
fn key_id(path: &Path) -> u32 {
    let bytes = std::fs::read(path).expect("read");
    crypto_at_rest::Keyring::key_id_of(&bytes)
        .expect("header parses")
        .0
}

fn keyring_ids(d: &Path) -> Vec<u32> {
    let ring = crypto_at_rest::Keyring::load(&d.join("ring.txt")).expect("keyring loads");
    ring.ids().map(|id| id.0).collect()
}

#[test]
fn rotate_reports_every_failure_and_a_rerun_finishes_without_a_new_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let plain = sealed_files(d);
    for name in ["a.bin", "b.bin", "c.bin"] {
        std::fs::copy(d.join("s.bin"), d.join(name)).expect("copy");
    }
    std::fs::write(d.join("short.bin"), b"not sealed").expect("write");
    let files = ["a.bin", "short.bin", "b.bin", "missing.bin", "c.bin"];
    let mut args = vec!["rotate", "-k", "ring.txt"];
    args.extend(files);

    let out = crypt(d, &args, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for bad in ["short.bin", "missing.bin"] {
        assert!(stderr.contains(bad), "{bad} not reported: {stderr}");
    }
    assert!(stderr.contains("2 of 5 files"), "{stderr}");
    // Files after a failure were re-wrapped all the same.
    for good in ["a.bin", "b.bin", "c.bin"] {
        assert_eq!(key_id(&d.join(good)), 2, "{good}");
    }
    assert_eq!(keyring_ids(d), [1, 2]);

    // Rerunning (still failing) and then with the files fixed adds no key.
    assert!(!crypt(d, &args, &[]).status.success());
    assert_eq!(keyring_ids(d), [1, 2]);
    std::fs::copy(d.join("s.bin"), d.join("short.bin")).expect("copy");
    std::fs::copy(d.join("s.bin"), d.join("missing.bin")).expect("copy");
    ok(crypt(d, &args, &[]));
    assert_eq!(keyring_ids(d), [1, 2]);
    for name in files {
        assert_eq!(key_id(&d.join(name)), 2, "{name}");
        let out = ok(crypt(d, &["open", "-k", "ring.txt", "-c", "c", name], &[]));
        assert_eq!(out.stdout, plain, "{name}");
    }
    assert!(!d.join("ring.txt.rotating").exists());

    // Once finished, the next rotation adds a key again.
    ok(crypt(d, &args, &[]));
    assert_eq!(keyring_ids(d), [1, 2, 3]);
    assert_eq!(key_id(&d.join("c.bin")), 3);
}

#[test]
fn rotate_killed_at_any_point_leaves_files_that_open() {
    use crypto_at_rest::Keyring;
    let names: Vec<String> = (0..24).map(|i| format!("f{i}.bin")).collect();
    let mut args = vec!["rotate".to_owned(), "-k".into(), "ring.txt".into()];
    args.extend(names.iter().cloned());
    let setup = |d: &Path| {
        let plain = sealed_files(d);
        for name in &names {
            std::fs::copy(d.join("s.bin"), d.join(name)).expect("copy");
        }
        plain
    };
    let spawn_rotate = |d: &Path| {
        Command::new(env!("CARGO_BIN_EXE_crypt"))
            .current_dir(d)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn crypt")
    };
    // A whole run takes from a few ms (tmpfs) to ~100 ms (fsyncs on a loaded disk): time one on
    // the same file system, so the kill points spread over start-up, the rotation record, the
    // keyring save and the re-wraps wherever the test runs. The fastest of three runs: a single
    // one that met a cold cache or a busy disk made most kills land after the end.
    let whole_run = (0..3)
        .map(|_| {
            let calibration = tempfile::tempdir().expect("tempdir");
            setup(calibration.path());
            let started = std::time::Instant::now();
            assert!(
                spawn_rotate(calibration.path())
                    .wait()
                    .expect("wait")
                    .success()
            );
            started.elapsed()
        })
        .min()
        .expect("three runs");

    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let plain = setup(d);
    let mut killed = 0;
    for attempt in 0..60u32 {
        let mut child = spawn_rotate(d);
        std::thread::sleep(whole_run * attempt / 60);
        if child.try_wait().expect("try_wait").is_none() {
            killed += 1;
        }
        child.kill().ok();
        child.wait().expect("wait");
        let ring = Keyring::load(&d.join("ring.txt")).expect("the keyring stays whole");
        for name in &names {
            let file = std::fs::File::open(d.join(name)).expect("open");
            let mut out = Vec::new();
            ring.decrypt_stream(1, b"c", file, &mut out)
                .unwrap_or_else(|e| panic!("attempt {attempt}: {name} does not open: {e}"));
            assert_eq!(out, plain, "attempt {attempt}: {name}");
        }
    }
    assert!(killed > 10, "only {killed} of 60 runs were killed mid-way");
}

#[test]
fn a_failed_encryption_leaves_an_existing_output_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    sealed_files(d);
    let recipient = recipient_of(d, "key.txt");
    std::fs::create_dir(d.join("a-directory")).expect("mkdir");
    std::fs::write(d.join("keep"), b"precious").expect("write");
    // A directory opens but cannot be read: the encryption fails after the output is prepared.
    let cases: [&[&str]; 2] = [
        &["seal", "-k", "ring.txt", "-o", "keep", "a-directory"],
        &["age", "-r", &recipient, "-o", "keep", "a-directory"],
    ];
    for args in cases {
        assert!(!crypt(d, args, &[]).status.success(), "{args:?}");
        assert_eq!(std::fs::read(d.join("keep")).expect("read"), b"precious");
    }
}

#[test]
fn dev_stdout_is_written_directly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let plain = sealed_files(d);
    let out = ok(crypt(
        d,
        &["age", "-d", "-i", "key.txt", "-o", "/dev/stdout", "f.age"],
        &[],
    ));
    assert_eq!(out.stdout, plain);
    let out = ok(crypt(
        d,
        &[
            "open",
            "-k",
            "ring.txt",
            "-c",
            "c",
            "-o",
            "/dev/stdout",
            "s.bin",
        ],
        &[],
    ));
    assert_eq!(out.stdout, plain);
}
