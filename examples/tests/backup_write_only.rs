//! End to end, as deployed: a host holding only the owner's public key (made by the real
//! `age-keygen`) backs up to a write-only, append-only repository and reads nothing back;
//! elsewhere, the owner's identity restores byte-identical, checks every byte, forgets and
//! prunes.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use test_support::success_stdout as ok;

/// `backup --repo REPO ARGS...` with no password in the environment.
fn backup(repo: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_backup"))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env_remove("BACKUP_PASSWORD")
        .env_remove("BACKUP_REPOSITORY")
        .env_remove("BACKUP_IDENTITY")
        .env_remove("BACKUP_HOST_KEY")
        .env_remove("BACKUP_APPEND_ONLY")
        .stdin(Stdio::null())
        .output()
        .expect("backup runs")
}

fn json(out: Output) -> serde_json::Value {
    let text = ok(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn write_site(src: &Path, round: u8) {
    std::fs::create_dir_all(src.join("www/img")).unwrap();
    std::fs::write(src.join("www/index.php"), format!("<?php echo {round};")).unwrap();
    std::fs::write(
        src.join("www/img/logo.bin"),
        test_support::noise(3 << 20, 7),
    )
    .unwrap();
    std::fs::write(
        src.join("db.sql"),
        b"INSERT INTO t VALUES (1);\n".repeat(5000),
    )
    .unwrap();
}

fn assert_same_files(expected: &Path, restored: &Path) {
    for name in ["www/index.php", "www/img/logo.bin", "db.sql"] {
        assert_eq!(
            std::fs::read(expected.join(name)).unwrap(),
            std::fs::read(restored.join(name)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn a_host_with_only_the_public_key_backs_up_and_the_owner_restores_elsewhere() {
    let Some(keygen) = test_support::require_program("age-keygen") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (owner_dir, host_dir) = (work.path().join("owner"), work.path().join("host"));
    std::fs::create_dir_all(&owner_dir).unwrap();
    std::fs::create_dir_all(&host_dir).unwrap();
    let identity = owner_dir.join("owner.key");
    let made = Command::new(&keygen)
        .arg("-o")
        .arg(&identity)
        .output()
        .unwrap();
    assert!(made.status.success());
    let recipient = Command::new(&keygen)
        .arg("-y")
        .arg(&identity)
        .output()
        .unwrap();
    assert!(recipient.status.success());
    // The host gets the public key only.
    std::fs::write(host_dir.join("owner.pub"), &recipient.stdout).unwrap();
    let repo = work.path().join("repo");
    let host_key = host_dir.join("host.key");
    let (host_key, owner_pub) = (host_key.to_str().unwrap(), host_dir.join("owner.pub"));
    let on_host = |args: &[&str]| {
        let all = [&["--host-key", host_key, "--append-only"][..], args].concat();
        backup(&repo, &all)
    };
    let init = json(backup(
        &repo,
        &[
            "--host-key",
            host_key,
            "--json",
            "init",
            "--write-only",
            "--owner-recipient-file",
            owner_pub.to_str().unwrap(),
        ],
    ));
    assert_eq!(init["write_only"], true);
    assert_eq!(init["host_key_created"], true);

    let src = host_dir.join("site");
    write_site(&src, 0);
    let src_arg = src.to_str().unwrap();
    let first = json(on_host(&["--json", "backup", src_arg]));
    assert!(first["summary"]["bytes_new"].as_u64().unwrap() > 3 << 20);
    let kept = work.path().join("kept0");
    std::fs::create_dir(&kept).unwrap();
    for name in ["www/img", "www"] {
        std::fs::create_dir_all(kept.join(name)).unwrap();
    }
    for name in ["www/index.php", "www/img/logo.bin", "db.sql"] {
        std::fs::copy(src.join(name), kept.join(name)).unwrap();
    }
    // Unchanged: nothing is read (the host's own parent cache) and nothing new is stored.
    let second = json(on_host(&["--json", "backup", src_arg]));
    assert_eq!(second["summary"]["chunks_new"], 0);
    assert_eq!(second["summary"]["bytes_stored"], 0);
    assert_eq!(second["summary"]["bytes_read"], 0);
    assert_eq!(second["parent"], first["id"]);
    write_site(&src, 1);
    let third = json(on_host(&["--json", "backup", src_arg]));
    assert!(third["summary"]["bytes_new"].as_u64().unwrap() < 1 << 20);

    // Every reading command on the host says what is needed, never a crypto error.
    let first_id = first["id"].as_str().unwrap();
    let target = work.path().join("host-restore");
    for args in [
        vec!["snapshots"],
        vec!["ls", first_id],
        vec!["restore", first_id, "--target", target.to_str().unwrap()],
        vec!["check"],
        vec!["check", "--read-data"],
        vec!["repair", "index"],
        vec!["repair", "snapshots"],
        vec!["stats"],
    ] {
        let out = on_host(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded on the host");
        assert!(
            stderr.contains("is write-only") && stderr.contains("--identity"),
            "{args:?}: {stderr}"
        );
    }
    assert!(!target.exists());
    // Deleting is refused on the host (append-only), before anything is read.
    let out = on_host(&["forget", "--keep-last", "1"]);
    assert!(!out.status.success());
    // The host's state is its key file and its parent cache, and the key is nowhere in the
    // repository.
    let mut state: Vec<String> = std::fs::read_dir(&host_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    state.sort();
    assert_eq!(state, ["host.key", "host.key.cache", "owner.pub", "site"]);
    let key_text = std::fs::read_to_string(host_key).unwrap();
    let secret_hex = key_text
        .lines()
        .find_map(|l| l.strip_prefix("secret "))
        .unwrap();
    let secret: Vec<u8> = (0..secret_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&secret_hex[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(secret.len(), 32);
    for object in walk(&repo) {
        let bytes = std::fs::read(&object).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_slice())
                && !bytes
                    .windows(secret_hex.len())
                    .any(|w| w == secret_hex.as_bytes()),
            "{} holds the host secret in clear",
            object.display()
        );
    }

    // Elsewhere: the owner's identity reads everything.
    let as_owner = |args: &[&str]| {
        let all = [&["--identity", identity.to_str().unwrap()][..], args].concat();
        backup(&repo, &all)
    };
    let listed = json(as_owner(&["--json", "snapshots"]));
    assert_eq!(listed.as_array().unwrap().len(), 3);
    let restored = work.path().join("restored");
    ok(as_owner(&[
        "restore",
        first_id,
        "--target",
        restored.to_str().unwrap(),
    ]));
    assert_same_files(&kept, &restored.join("site"));
    let restored = work.path().join("restored-latest");
    ok(as_owner(&[
        "restore",
        "latest",
        "--target",
        restored.to_str().unwrap(),
    ]));
    assert_same_files(&src, &restored.join("site"));
    let listing = ok(as_owner(&["ls", first_id]));
    assert!(listing.contains("logo.bin"), "{listing}");
    ok(as_owner(&["check", "--read-data"]));
    ok(as_owner(&["forget", "--keep-last", "1"]));
    ok(as_owner(&["prune"]));
    ok(as_owner(&["check", "--read-data"]));
    // The host still backs up after the owner's prune, and dedups against what is left.
    let fourth = json(on_host(&["--json", "backup", src_arg]));
    assert_eq!(fourth["summary"]["chunks_new"], 0);
    assert_eq!(fourth["summary"]["bytes_read"], 0);
    // A wrong identity is "wrong key", not a crypto error.
    let other = owner_dir.join("other.key");
    assert!(
        Command::new(&keygen)
            .arg("-o")
            .arg(&other)
            .output()
            .unwrap()
            .status
            .success()
    );
    let out = backup(&repo, &["--identity", other.to_str().unwrap(), "snapshots"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wrong"), "{stderr}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
