//! Tree scans against the real clamd: findings, hostile trees (symlink loops and escapes,
//! FIFOs, unreadable files, names with newlines and invalid UTF-8, files changing or vanishing
//! during the scan) and the incremental cache.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use common::eicar;
use tokio::io::AsyncRead;
use virusscan::{ClamdClient, Outcome, ScanCache, Scanner, TreeScanner, TreeSummary, Verdict};

/// Each file's path and a short name of its outcome.
async fn scan(
    scanner: Arc<dyn Scanner>,
    root: &Path,
    cache: Option<ScanCache>,
) -> (TreeSummary, BTreeMap<PathBuf, String>, Option<ScanCache>) {
    let mut seen = BTreeMap::new();
    let tree = TreeScanner::builder(scanner)
        .with_concurrency(4)
        .build()
        .unwrap();
    let (summary, cache) = tree
        .scan(root, cache, |r| {
            let what = match &r.outcome {
                Outcome::Clean => "clean".to_string(),
                Outcome::Unchanged => "unchanged".into(),
                Outcome::Infected { signature } => format!("infected {signature}"),
                Outcome::TooLarge { .. } => "too large".into(),
                Outcome::Failed(e) => format!("failed {e}"),
                Outcome::Skipped(reason) => format!("skipped {reason:?}"),
                _ => "other".into(),
            };
            assert!(
                seen.insert(r.path.clone(), what).is_none(),
                "{} reported twice",
                r.path.display()
            );
        })
        .await
        .unwrap();
    (summary, seen, cache)
}

fn client() -> Option<Arc<dyn Scanner>> {
    common::unix_client().map(|c| Arc::new(c) as Arc<dyn Scanner>)
}

#[tokio::test]
async fn hostile_tree() {
    let Some(scanner) = client() else { return };
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("outside-virus.php"), eicar()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::write(root.join("index.php"), b"<?php echo 1; ?>").unwrap();
    std::fs::write(root.join("a/b/c/deep.txt"), b"deep and clean").unwrap();
    std::fs::write(root.join("a/shell.php"), eicar()).unwrap();
    // A name with a newline, and one that is not UTF-8, both infected.
    let newline = root.join("a/evil\nname.php");
    std::fs::write(&newline, eicar()).unwrap();
    let invalid = root.join(OsStr::from_bytes(b"a/b/\xff\xfe-latin1-\xe9.php"));
    std::fs::write(&invalid, eicar()).unwrap();
    // Symlink loops, and links out of the tree to an infected file and directory.
    std::os::unix::fs::symlink("..", root.join("a/b/loop")).unwrap();
    std::os::unix::fs::symlink(root, root.join("a/b/c/root-loop")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("outside-virus.php"),
        root.join("escape.php"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("escape-dir")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/dangling", root.join("dangling")).unwrap();
    // A FIFO must not hang the scan.
    let status = std::process::Command::new("mkfifo")
        .arg(root.join("a/pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    // Too large for clamd's MaxFileSize (the test clamd's is 1 MiB).
    std::fs::write(root.join("big.bin"), vec![b'z'; 3 << 20]).unwrap();

    let (summary, seen, _) = scan(scanner, root, None).await;
    let expect = |p: PathBuf, what: &str| {
        assert_eq!(
            seen.get(&p).map(String::as_str),
            Some(what),
            "{}: {seen:#?}",
            p.display()
        );
    };
    let sig = "infected Hostguard.Test.EICAR.UNOFFICIAL";
    expect(root.join("index.php"), "clean");
    expect(root.join("a/b/c/deep.txt"), "clean");
    expect(root.join("a/shell.php"), sig);
    expect(newline, sig);
    expect(invalid, sig);
    expect(root.join("a/b/loop"), "skipped Symlink");
    expect(root.join("a/b/c/root-loop"), "skipped Symlink");
    expect(root.join("escape.php"), "skipped Symlink");
    expect(root.join("escape-dir"), "skipped Symlink");
    expect(root.join("dangling"), "skipped Symlink");
    expect(root.join("a/pipe"), "skipped Special");
    expect(root.join("big.bin"), "too large");
    assert_eq!(
        (
            summary.clean,
            summary.infected,
            summary.too_large,
            summary.failed,
            summary.skipped
        ),
        (2, 3, 1, 0, 6)
    );
    assert!(!seen.keys().any(|p| p.starts_with(outside.path())));
    assert!(!summary.all_clean());
}

#[tokio::test]
async fn root_must_be_a_directory_not_a_link() {
    let Some(scanner) = client() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(dir.path(), dir.path().join("link")).unwrap();
    let tree = TreeScanner::builder(scanner).build().unwrap();
    assert!(
        tree.scan(&dir.path().join("link"), None, |_| {})
            .await
            .is_err()
    );
    assert!(
        tree.scan(&dir.path().join("missing"), None, |_| {})
            .await
            .is_err()
    );
}

/// Delegates to clamd, and runs `before_scan` on each file first (to change or delete files
/// while the scan runs), or reports another signature version.
#[derive(Debug)]
struct Meddling {
    inner: ClamdClient,
    version_suffix: String,
    before_scan: fn(&std::fs::File, &AtomicBool),
    fired: AtomicBool,
}

#[async_trait]
impl Scanner for Meddling {
    async fn scan_reader(
        &self,
        reader: &mut (dyn AsyncRead + Unpin + Send),
    ) -> virusscan::Result<Verdict> {
        self.inner.scan_reader(reader).await
    }
    async fn signature_version(&self) -> virusscan::Result<String> {
        Ok(format!(
            "{}{}",
            self.inner.signature_version().await?,
            self.version_suffix
        ))
    }
    async fn scan_file(&self, file: &std::fs::File) -> virusscan::Result<Verdict> {
        (self.before_scan)(file, &self.fired);
        self.inner.scan_file(file).await
    }
}

fn meddling(
    version_suffix: &str,
    before_scan: fn(&std::fs::File, &AtomicBool),
) -> Option<Arc<dyn Scanner>> {
    Some(Arc::new(Meddling {
        inner: common::unix_client()?,
        version_suffix: version_suffix.into(),
        before_scan,
        fired: AtomicBool::new(false),
    }))
}

#[tokio::test]
async fn files_changing_during_the_scan_are_not_cached() {
    let append = |file: &std::fs::File, _: &AtomicBool| {
        // Another process appending while clamd reads: through /proc, as the file is open.
        let path = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(file)
        ))
        .unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        std::io::Write::write_all(&mut f, b" more").unwrap();
    };
    let Some(scanner) = meddling("", append) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        std::fs::write(dir.path().join(format!("f{i}")), b"growing").unwrap();
    }
    let version = scanner.signature_version().await.unwrap();
    let (summary, _, cache) = scan(scanner, dir.path(), Some(ScanCache::new(version))).await;
    assert_eq!(summary.changed_during_scan, 5);
    assert_eq!(summary.clean, 5);
    assert!(
        cache.unwrap().is_empty(),
        "files that changed while scanned must not be cached"
    );
}

#[tokio::test]
async fn files_vanishing_during_the_scan_are_skipped_not_failed() {
    let wipe = |file: &std::fs::File, fired: &AtomicBool| {
        if fired.swap(true, Ordering::SeqCst) {
            return;
        }
        let path = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(file)
        ))
        .unwrap();
        for entry in std::fs::read_dir(path.parent().unwrap()).unwrap() {
            let _ = std::fs::remove_file(entry.unwrap().path());
        }
    };
    let Some(scanner) = meddling("", wipe) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for i in 0..2000 {
        std::fs::write(dir.path().join(format!("file-{i:04}")), b"soon gone").unwrap();
    }
    let (summary, seen, _) = scan(scanner, dir.path(), None).await;
    assert_eq!(summary.failed, 0, "{seen:#?}");
    assert!(
        seen.values()
            .all(|v| v == "clean" || v == "skipped Vanished"),
        "{seen:#?}"
    );
    assert!(
        seen.values().any(|v| v == "skipped Vanished"),
        "the listing was expected to outrun the deletion"
    );
    assert!(summary.scanned >= 1);
}

#[tokio::test]
async fn rescans_skip_unchanged_clean_files_until_signatures_change() {
    let Some(scanner) = client() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for i in 0..50 {
        std::fs::write(
            root.join(format!("clean-{i}.php")),
            format!("<?php echo {i}; ?>"),
        )
        .unwrap();
    }
    std::fs::write(root.join("virus.php"), eicar()).unwrap();
    let (first, _, cache) = scan(scanner.clone(), root, Some(ScanCache::new(""))).await;
    assert_eq!(
        (first.scanned, first.clean, first.infected, first.unchanged),
        (51, 50, 1, 0)
    );
    let cache = cache.unwrap();
    assert_eq!(cache.len(), 50, "only clean files are cached");
    // Through the file format, as the tool does between runs.
    let cache_file = root.join("../cache.bin");
    cache.save(&cache_file).unwrap();
    let cache = ScanCache::load(&cache_file).unwrap().unwrap();
    std::fs::remove_file(&cache_file).unwrap();

    let (second, seen, cache) = scan(scanner.clone(), root, Some(cache)).await;
    assert_eq!(
        (second.scanned, second.unchanged, second.infected),
        (1, 50, 1),
        "{seen:#?}"
    );

    // Rewritten content with the old size and a forged old mtime: ctime still differs.
    let victim = root.join("clean-7.php");
    let old = std::fs::metadata(&victim).unwrap().modified().unwrap();
    std::fs::write(&victim, &eicar()[..16]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_modified(old)
        .unwrap();
    // Replaced by an infected file with a new inode.
    std::fs::remove_file(root.join("clean-8.php")).unwrap();
    std::fs::write(root.join("clean-8.php"), eicar()).unwrap();
    let (third, seen, cache) = scan(scanner.clone(), root, cache).await;
    assert_eq!(
        (third.scanned, third.unchanged, third.infected),
        (3, 48, 2),
        "{seen:#?}"
    );
    assert_eq!(seen[&victim], "clean");

    // New signatures: everything is scanned again.
    let Some(renewed) = meddling(" db:new", |_, _| {}) else {
        return;
    };
    let (fourth, _, _) = scan(renewed, root, cache).await;
    assert_eq!((fourth.scanned, fourth.unchanged), (51, 0));
}

/// Unreadable files and directories are failures, never clean. Root reads everything, so as
/// root the scan runs in a child (this test binary again) under uid/gid 65534.
#[tokio::test]
async fn unreadable_files_are_failures() {
    if let Ok(tree) = std::env::var("VIRUSSCAN_UNREADABLE_TREE") {
        return unreadable_child(Path::new(&tree)).await;
    }
    let Some(_) = client() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("locked")).unwrap();
    std::fs::write(root.join("locked/inside.php"), eicar()).unwrap();
    std::fs::write(root.join("secret.php"), eicar()).unwrap();
    std::fs::write(root.join("open.php"), b"<?php ?>").unwrap();
    use std::os::unix::fs::PermissionsExt;
    for (p, mode) in [
        ("locked", 0o000),
        ("secret.php", 0o000),
        ("open.php", 0o644),
        (".", 0o755),
    ] {
        std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    if rustix::process::geteuid().is_root() {
        let Some(setpriv) = test_support::require_program("setpriv") else {
            return;
        };
        let out = std::process::Command::new(setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", "unreadable_files_are_failures", "--nocapture"])
            .env("VIRUSSCAN_UNREADABLE_TREE", root)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("unreadable child checked"), "{text}");
    } else {
        unreadable_child(root).await;
    }
}

async fn unreadable_child(root: &Path) {
    let scanner = client().expect("clamd");
    let (summary, seen, _) = scan(scanner, root, None).await;
    assert!(
        seen[&root.join("secret.php")].starts_with("failed"),
        "{seen:#?}"
    );
    assert!(
        seen[&root.join("locked")].starts_with("failed"),
        "{seen:#?}"
    );
    assert_eq!(seen[&root.join("open.php")], "clean");
    assert_eq!((summary.failed, summary.clean), (2, 1));
    println!("unreadable child checked");
}
