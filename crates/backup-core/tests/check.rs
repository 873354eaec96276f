//! `check` on a real local repository: a sound one passes, parts cover every pack once, and
//! flipped bytes or a lost pack are found and named by pack, snapshot and file path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::check::{CheckOptions, CheckReport, DataSubset, Problem, check};
use backup_core::conformance::small_options;
use backup_core::{BackupOptions, KeySource, NoProgress, Repository, StoreOptions};

struct Fixture {
    _dir: tempfile::TempDir,
    repo_dir: PathBuf,
    repo: Arc<Repository>,
    snapshot: String,
}

/// A repository with one snapshot of `src/a/big.bin` (1.5 MiB that does not compress, so its
/// chunks fill whole 256 KiB packs) and `src/b.txt`.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let big: Vec<u8> = (0..3 << 19)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(src.join("a/big.bin"), big).unwrap();
    std::fs::write(src.join("b.txt"), b"small").unwrap();
    let repo_dir = dir.path().join("repo");
    let store = StoreOptions::new(repo_dir.to_string_lossy())
        .with_create(true)
        .build()
        .unwrap();
    let key = KeySource::passphrase("pw");
    let repo = Repository::init(store, "repo", &key, small_options())
        .await
        .unwrap();
    let repo = Arc::new(repo);
    let options = BackupOptions::builder([&src]).build().unwrap();
    let (snapshot, _) = backup_core::backup(repo.clone(), options, Arc::new(NoProgress))
        .await
        .unwrap();
    // Reopen, as a scheduled check would.
    let store = StoreOptions::new(repo_dir.to_string_lossy())
        .build()
        .unwrap();
    let repo = Arc::new(Repository::open(store, "repo", &key).await.unwrap());
    Fixture {
        _dir: dir,
        repo_dir,
        repo,
        snapshot,
    }
}

fn packs(repo_dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(repo_dir.join("data")).unwrap() {
        for pack in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let pack = pack.unwrap();
            out.push((pack.path(), pack.metadata().unwrap().len()));
        }
    }
    out.sort();
    out
}

fn relative(repo_dir: &Path, pack: &Path) -> String {
    pack.strip_prefix(repo_dir)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The problem reported for `path` of the snapshot (which must be there).
fn problem_at<'r>(report: &'r CheckReport, path: &str) -> &'r Problem {
    report
        .problems
        .iter()
        .find(|p| p.path.as_deref() == Some(path))
        .unwrap_or_else(|| panic!("{path} not named: {:?}", report.problems))
}

fn read_all() -> CheckOptions {
    CheckOptions::builder()
        .with_read_data(DataSubset::All)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_sound_repository_passes_and_parts_cover_every_pack_once() {
    let f = fixture().await;
    let on_disk = packs(&f.repo_dir);
    assert!(on_disk.len() >= 5, "expected several packs: {on_disk:?}");
    let total: u64 = on_disk.iter().map(|(_, size)| size).sum();

    let structure = check(f.repo.clone(), &CheckOptions::builder().build().unwrap())
        .await
        .unwrap();
    assert!(structure.is_ok(), "{:?}", structure.problems);
    assert_eq!(structure.snapshots, 1);
    assert_eq!(structure.packs, on_disk.len());
    assert_eq!(structure.packs_read, 0);
    assert_eq!(structure.headers_read, on_disk.len());
    assert!(structure.trees >= 3, "root, src and a: {}", structure.trees);

    let all = check(f.repo.clone(), &read_all()).await.unwrap();
    assert!(all.is_ok(), "{:?}", all.problems);
    assert_eq!(all.packs_read, on_disk.len());
    assert_eq!(all.bytes_read, total);
    assert!(all.blobs_verified >= 6, "{}", all.blobs_verified);

    for of in [2u32, 3, 7] {
        let (mut packs_read, mut bytes_read) = (0, 0);
        for n in 1..=of {
            let options = CheckOptions::builder()
                .with_read_data(DataSubset::Part { n, of })
                .build()
                .unwrap();
            let part = check(f.repo.clone(), &options).await.unwrap();
            assert!(part.is_ok());
            assert_eq!(part.part.as_deref(), Some(format!("{n}/{of}").as_str()));
            packs_read += part.packs_read;
            bytes_read += part.bytes_read;
        }
        assert_eq!(
            (packs_read, bytes_read),
            (on_disk.len(), total),
            "{of} parts"
        );
    }
    // 25 % on runs 0..4 is parts 1/4..4/4: everything once.
    let mut packs_read = 0;
    for run in 0..4 {
        let options = CheckOptions::builder()
            .with_read_data("25%".parse().unwrap())
            .with_run(run)
            .build()
            .unwrap();
        packs_read += check(f.repo.clone(), &options).await.unwrap().packs_read;
    }
    assert_eq!(packs_read, on_disk.len());
}

#[tokio::test]
async fn flipped_bytes_are_found_by_read_data_and_named_by_file() {
    let f = fixture().await;
    let mut damaged = Vec::new();
    for (path, size) in packs(&f.repo_dir) {
        // Full packs hold big.bin's chunks (incompressible, at least 200 KiB each) and maybe,
        // depending on thread timing, b.txt's few bytes: the middle byte is inside a big chunk.
        if size >= 200 * 1024 {
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x40;
            std::fs::write(&path, bytes).unwrap();
            damaged.push(relative(&f.repo_dir, &path));
        }
    }
    assert!(!damaged.is_empty());
    let report = check(f.repo.clone(), &read_all()).await.unwrap();
    assert!(!report.is_ok());
    for pack in &damaged {
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.object.starts_with(pack.as_str()) && p.snapshot.is_none()),
            "{pack} not named: {:?}",
            report.problems
        );
    }
    let by_file = problem_at(&report, "/src/a/big.bin");
    assert_eq!(by_file.snapshot.as_deref(), Some(f.snapshot.as_str()));
    assert!(
        by_file.problem.contains("fails authentication"),
        "{by_file:?}"
    );
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.path.as_deref() != Some("/src/b.txt")),
        "b.txt is intact: {:?}",
        report.problems
    );
}

#[tokio::test]
async fn a_lost_pack_is_found_by_the_structure_check() {
    let f = fixture().await;
    // Any big pack holds a chunk of big.bin; depending on thread timing it may also hold the
    // trees above it or b.txt, and then the walk rightly names those too. Lose each big pack
    // in turn until one names the file.
    let mut named_file = false;
    for (path, _) in packs(&f.repo_dir)
        .into_iter()
        .filter(|(_, size)| *size >= 200 * 1024)
    {
        let aside = path.with_extension("aside");
        std::fs::rename(&path, &aside).unwrap();
        let lost = relative(&f.repo_dir, &path);
        let report = check(f.repo.clone(), &CheckOptions::builder().build().unwrap())
            .await
            .unwrap();
        std::fs::rename(&aside, &path).unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.object == lost && p.problem.contains("missing from the store")),
            "{:?}",
            report.problems
        );
        let named: Vec<&Problem> = report
            .problems
            .iter()
            .filter(|p| p.path.is_some())
            .collect();
        assert!(!named.is_empty(), "no path named: {:?}", report.problems);
        for problem in named {
            assert!(problem.object.starts_with(&lost), "{problem:?}");
            assert_eq!(problem.snapshot.as_deref(), Some(f.snapshot.as_str()));
            let path = problem.path.as_deref().unwrap();
            assert!(
                ["/", "/src", "/src/a", "/src/a/big.bin", "/src/b.txt"].contains(&path),
                "{problem:?}"
            );
            named_file |= path == "/src/a/big.bin";
        }
    }
    assert!(named_file, "no lost pack was named by big.bin's path");
}

#[tokio::test]
async fn a_damaged_index_object_is_named_with_the_files_it_made_unreachable() {
    let f = fixture().await;
    let index_dir = f.repo_dir.join("index");
    let index = std::fs::read_dir(&index_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    let mut bytes = std::fs::read(&index).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&index, bytes).unwrap();
    let name = relative(&f.repo_dir, &index);

    let store = StoreOptions::new(f.repo_dir.to_string_lossy())
        .build()
        .unwrap();
    let repo = Repository::open(store, "repo", &KeySource::passphrase("pw")).await;
    // The only index object is damaged: nothing is reachable, and check says why.
    let repo = Arc::new(repo.unwrap());
    let report = check(repo, &CheckOptions::builder().build().unwrap())
        .await
        .unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.object == name && p.problem.contains("fails authentication")),
        "{:?}",
        report.problems
    );
    let root = problem_at(&report, "/");
    assert_eq!(root.snapshot.as_deref(), Some(f.snapshot.as_str()));
    assert_eq!(report.unindexed_packs.len(), report.packs);
}

#[tokio::test]
async fn a_damaged_pack_header_is_found_without_reading_the_data() {
    let f = fixture().await;
    let (pack, _) = packs(&f.repo_dir).into_iter().next().unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let near_end = bytes.len() - 10;
    bytes[near_end] ^= 0x80;
    std::fs::write(&pack, bytes).unwrap();
    let name = relative(&f.repo_dir, &pack);
    let report = check(f.repo.clone(), &CheckOptions::builder().build().unwrap())
        .await
        .unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let p = &report.problems[0];
    assert_eq!(p.object, format!("{name} (header)"));
    assert_eq!(p.problem, "its header fails authentication");
    assert_eq!((p.snapshot.as_deref(), p.path.as_deref()), (None, None));
}

#[tokio::test]
async fn a_damaged_snapshot_object_is_named() {
    let f = fixture().await;
    let object = f.repo_dir.join("snapshots").join(&f.snapshot);
    let mut bytes = std::fs::read(&object).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&object, bytes).unwrap();
    let report = check(f.repo.clone(), &CheckOptions::builder().build().unwrap())
        .await
        .unwrap();
    assert_eq!(report.snapshots, 0);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(
        report.problems[0].object,
        format!("snapshots/{}", f.snapshot)
    );
    assert!(report.problems[0].problem.contains("fails authentication"));
}
