//! The quarantine: records, exact restores, refusals, and a kill -9 campaign in which a helper
//! process (this test binary again) is killed at many points while it quarantines and restores,
//! after which recovery must leave every file in place or quarantined with its record.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use virusscan::{FileIdentity, Quarantine};

fn sha256sum(path: &Path) -> String {
    // Through stdin: sha256sum escapes names with newlines in its output.
    let out = std::process::Command::new("sha256sum")
        .stdin(std::fs::File::open(path).unwrap())
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Sets owner (when root), mode and mtime on `path`.
fn dress(path: &Path, mode: u32, mtime_secs: u64) {
    if is_root() {
        std::os::unix::fs::chown(path, Some(1234), Some(5678)).unwrap();
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    let t = SystemTime::UNIX_EPOCH + Duration::new(mtime_secs, 123_456_789);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn check_restored(path: &Path, content: &[u8], mode: u32, mtime_secs: u64) {
    assert_eq!(std::fs::read(path).unwrap(), content, "{}", path.display());
    let meta = std::fs::symlink_metadata(path).unwrap();
    assert_eq!(meta.mode() & 0o7777, mode, "{}", path.display());
    assert_eq!(
        (meta.mtime(), meta.mtime_nsec()),
        (mtime_secs as i64, 123_456_789)
    );
    if is_root() {
        assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    }
}

fn round_trip(files: &Path, qdir: &Path, expect_method: &str) {
    let (q, recovered) = Quarantine::open(qdir).unwrap();
    assert!(recovered.is_empty());
    let names: [&OsStr; 3] = [
        OsStr::new("shell.php"),
        OsStr::new("new\nline.php"),
        OsStr::from_bytes(b"\xff\xfeinvalid.php"),
    ];
    let mut ids = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let path = files.join(name);
        let content = format!("infected content {i}").into_bytes();
        std::fs::write(&path, &content).unwrap();
        dress(&path, 0o4750, 1_700_000_000 + i as u64);
        let hash = sha256sum(&path);
        let record = q
            .quarantine(&path, "Hostguard.Test.EICAR.UNOFFICIAL", None)
            .unwrap();
        assert!(!path.exists() && std::fs::symlink_metadata(&path).is_err());
        // The record on disk, read as plain JSON.
        let json: serde_json::Value = serde_json::from_slice(
            &std::fs::read(qdir.join(format!("{}.json", record.id))).unwrap(),
        )
        .unwrap();
        assert_eq!(json["state"], "quarantined");
        assert_eq!(json["signature"], "Hostguard.Test.EICAR.UNOFFICIAL");
        assert_eq!(json["sha256"], hash.as_str());
        assert_eq!(json["mode"], 0o4750);
        assert_eq!(json["method"], expect_method);
        assert_eq!(json["original_path"], path.to_string_lossy().as_ref());
        assert_eq!(
            json["original_path_hex"],
            hex_of(path.as_os_str().as_bytes())
        );
        assert_eq!(json["size"], content.len());
        assert!(json["quarantined_at"].as_u64().unwrap() > 1_700_000_000);
        if is_root() {
            assert_eq!(
                (json["uid"].as_u64(), json["gid"].as_u64()),
                (Some(1234), Some(5678))
            );
        }
        let data = qdir.join(format!("{}.data", record.id));
        assert_eq!(
            std::fs::metadata(&data).unwrap().mode() & 0o7777,
            0,
            "quarantined data is mode 000"
        );
        assert_eq!(sha256sum(&data), hash);
        ids.push((record.id, path, content, i));
    }
    assert_eq!(q.list().unwrap().len(), 3);
    for (id, path, content, i) in ids {
        assert_eq!(q.restore(&id).unwrap(), path);
        check_restored(&path, &content, 0o4750, 1_700_000_000 + i as u64);
    }
    assert!(q.list().unwrap().is_empty());
    let left: Vec<_> = std::fs::read_dir(qdir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [".lock"]);
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn quarantine_and_restore_exactly_same_file_system() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("files")).unwrap();
    round_trip(
        &dir.path().join("files"),
        &dir.path().join("quarantine"),
        "rename",
    );
}

/// /dev/shm is a tmpfs: renames into it fail with EXDEV, so the copy path runs.
#[test]
fn quarantine_and_restore_exactly_across_file_systems() {
    let files = tempfile::tempdir().unwrap();
    let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
        return test_support::missing("/dev/shm (a second file system)");
    };
    if std::fs::metadata(files.path()).unwrap().dev()
        == std::fs::metadata(shm.path()).unwrap().dev()
    {
        return test_support::missing("a second file system beside the temporary directory");
    }
    round_trip(files.path(), &shm.path().join("q"), "copy");
}

#[test]
fn refusals_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = Quarantine::open(dir.path().join("q")).unwrap();
    let path = dir.path().join("upload.php");
    std::fs::write(&path, b"first").unwrap();
    let scanned = FileIdentity::of(&std::fs::File::open(&path).unwrap()).unwrap();
    std::fs::write(&path, b"second, longer").unwrap();
    // Changed since the scan: not quarantined.
    assert!(q.quarantine(&path, "Sig", Some(&scanned)).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
    // Relative paths, symlinks, directories and missing files are refused.
    assert!(q.quarantine(Path::new("upload.php"), "Sig", None).is_err());
    std::os::unix::fs::symlink(&path, dir.path().join("link")).unwrap();
    assert!(q.quarantine(&dir.path().join("link"), "Sig", None).is_err());
    assert!(
        dir.path()
            .join("link")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(q.quarantine(dir.path(), "Sig", None).is_err());
    assert!(
        q.quarantine(&dir.path().join("missing"), "Sig", None)
            .is_err()
    );
    // A restore over a file that appeared since is refused; both stay.
    let record = q.quarantine(&path, "Sig", None).unwrap();
    std::fs::write(&path, b"a new upload").unwrap();
    assert!(q.restore(&record.id).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"a new upload");
    assert_eq!(q.list().unwrap().len(), 1);
    assert!(q.restore("../../etc/passwd").is_err());
    assert!(q.restore("0-0000000000000000").is_err());
    std::fs::remove_file(&path).unwrap();
    q.restore(&record.id).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
}

#[test]
fn corrupt_record_is_reported_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let qdir = dir.path().join("q");
    drop(Quarantine::open(&qdir).unwrap());
    std::fs::write(qdir.join("1-00000000000000aa.json"), b"{not json").unwrap();
    let err = Quarantine::open(&qdir).unwrap_err().to_string();
    assert!(err.contains("1-00000000000000aa.json"), "{err}");
}

const FILES: usize = 6;

/// The helper: quarantines and restores the files in a loop until killed.
fn crash_helper(files: &Path, qdir: &Path) {
    let (q, _) = Quarantine::open(qdir).expect("open");
    loop {
        for i in 0..FILES {
            let path = files.join(format!("f{i}.php"));
            if path.exists() {
                let _ = q.quarantine(&path, "Hostguard.Test.EICAR.UNOFFICIAL", None);
            }
        }
        for record in q.list().expect("list") {
            let _ = q.restore(&record.id);
        }
    }
}

fn content(i: usize) -> Vec<u8> {
    format!("file {i} ").repeat(1000 + i * 3000).into_bytes()
}

fn kill_campaign(files: &Path, qdir: &Path, rounds: u32) {
    for i in 0..FILES {
        let path = files.join(format!("f{i}.php"));
        std::fs::write(&path, content(i)).unwrap();
        dress(&path, 0o640, 1_600_000_000 + i as u64);
    }
    let mut seen_quarantined = 0;
    let mut seen_recovery = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..rounds {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "kill_minus_nine_same_file_system", "--nocapture"])
            .env(
                "VIRUSSCAN_CRASH_HELPER",
                format!("{}\n{}", files.display(), qdir.display()),
            )
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Spread the kills: 5 ms to ~160 ms into the helper's run.
        std::thread::sleep(Duration::from_micros(
            5_000 + u64::from(round) * 7_919 % 155_000,
        ));
        child.kill().unwrap();
        child.wait().unwrap();

        let (q, actions) = Quarantine::open(qdir).unwrap();
        for (_, action) in &actions {
            let kind = format!("{action:?}");
            *seen_recovery
                .entry(kind.split('(').next().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        let records = q.list().unwrap();
        seen_quarantined += records.len();
        for i in 0..FILES {
            let path = files.join(format!("f{i}.php"));
            let held: Vec<_> = records
                .iter()
                .filter(|r| r.original_path().unwrap() == path)
                .collect();
            match (path.exists(), held.len()) {
                (true, 0) => assert_eq!(
                    std::fs::read(&path).unwrap(),
                    content(i),
                    "round {round}: f{i} in place but altered"
                ),
                (false, 1) => {
                    let data = qdir.join(format!("{}.data", held[0].id));
                    assert_eq!(
                        sha256sum(&data),
                        held[0].sha256,
                        "round {round}: f{i} quarantined but altered"
                    );
                }
                (exists, n) => {
                    panic!("round {round}: f{i} exists={exists} with {n} records: {actions:?}")
                }
            }
        }
        // Only the lock, records and data are left in quarantine; no temporary beside files.
        for entry in std::fs::read_dir(qdir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                name == ".lock" || name.ends_with(".json") || name.ends_with(".data"),
                "round {round}: {name} left"
            );
        }
        let stray: Vec<_> = std::fs::read_dir(files)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.as_bytes().starts_with(b"."))
            .collect();
        assert!(stray.is_empty(), "round {round}: {stray:?}");
    }
    // Restore what is left and check every file exactly.
    let (q, _) = Quarantine::open(qdir).unwrap();
    for record in q.list().unwrap() {
        q.restore(&record.id).unwrap();
    }
    for i in 0..FILES {
        check_restored(
            &files.join(format!("f{i}.php")),
            &content(i),
            0o640,
            1_600_000_000 + i as u64,
        );
    }
    eprintln!(
        "{rounds} kills: {seen_quarantined} files found quarantined, recovery actions {seen_recovery:?}"
    );
    assert!(
        seen_quarantined > 0,
        "the kills never caught a file in quarantine"
    );
}

fn helper_args() -> Option<(PathBuf, PathBuf)> {
    let spec = std::env::var("VIRUSSCAN_CRASH_HELPER").ok()?;
    let (files, qdir) = spec.split_once('\n')?;
    Some((files.into(), qdir.into()))
}

#[test]
fn kill_minus_nine_same_file_system() {
    if let Some((files, qdir)) = helper_args() {
        return crash_helper(&files, &qdir);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("files")).unwrap();
    kill_campaign(&dir.path().join("files"), &dir.path().join("q"), 60);
}

#[test]
fn kill_minus_nine_across_file_systems() {
    if helper_args().is_some() {
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
        return test_support::missing("/dev/shm (a second file system)");
    };
    if std::fs::metadata(files.path()).unwrap().dev()
        == std::fs::metadata(shm.path()).unwrap().dev()
    {
        return test_support::missing("a second file system beside the temporary directory");
    }
    kill_campaign(files.path(), &shm.path().join("q"), 60);
}
