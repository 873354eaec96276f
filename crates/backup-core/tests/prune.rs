//! Prune: unused data goes, used data stays, repacked data restores byte-identical, a dry run
//! changes nothing, the thresholds are honoured, garbage of killed runs is reclaimed, and a
//! damaged repository is refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use backup_core::check::{CheckOptions, DataSubset};
use backup_core::conformance::small_options;
use backup_core::format::{ChunkId, NodeKind};
use backup_core::prune::{MaxUnused, PackAction, PruneOptions, PruneReport};
use backup_core::{BackupOptions, Error, KeySource, NoProgress, Repository, RestoreOptions};
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

fn key() -> KeySource {
    KeySource::passphrase("prune tests")
}

/// `len` pseudo-random (incompressible) bytes from `seed`.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

struct Fixture {
    store: Arc<InMemory>,
    repo: Arc<Repository>,
    work: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Fixture {
        let store = Arc::new(InMemory::new());
        let repo = Repository::init(store.clone(), "memory", &key(), small_options())
            .await
            .unwrap();
        Fixture {
            store,
            repo: Arc::new(repo),
            work: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes `files` (name, seed, length) into a fresh source directory named `name`, backs
    /// it up and returns the snapshot id.
    async fn backup(&self, name: &str, files: &[(&str, u64, usize)]) -> String {
        let dir = self.work.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, seed, len) in files {
            std::fs::write(dir.join(file), noise(*seed, *len)).unwrap();
        }
        let options = BackupOptions::builder([&dir]).build().unwrap();
        let (id, _) = backup_core::backup(self.repo.clone(), options, Arc::new(NoProgress))
            .await
            .unwrap();
        id
    }

    async fn prune(&self, options: PruneOptions) -> PruneReport {
        backup_core::prune::prune(self.repo.clone(), &options)
            .await
            .unwrap()
    }

    /// Prune with `--max-unused 0%`: every partly used pack is repacked.
    async fn prune_all(&self) -> PruneReport {
        let options = options().with_max_unused(MaxUnused::Percent(0.0));
        self.prune(options.build().unwrap()).await
    }

    async fn objects(&self) -> BTreeMap<String, u64> {
        let all: Vec<_> = self.store.list(None).try_collect().await.unwrap();
        all.into_iter()
            .map(|m| (m.location.to_string(), m.size))
            .collect()
    }

    async fn forget(&self, id: &str) {
        self.store
            .delete(&ObjectPath::from(format!("snapshots/{id}")))
            .await
            .unwrap();
    }

    /// `check --read-data` on a freshly opened repository finds nothing and no unindexed pack.
    async fn assert_sound(&self) {
        let repo = Arc::new(
            Repository::open(self.store.clone(), "memory", &key())
                .await
                .unwrap(),
        );
        let options = CheckOptions::builder()
            .with_read_data(DataSubset::All)
            .build()
            .unwrap();
        let report = backup_core::check::check(repo, &options).await.unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        assert!(report.unindexed_packs.is_empty(), "{report:?}");
    }

    /// Restores snapshot `id` from a freshly opened repository and compares it with `source`.
    async fn assert_restores(&self, id: &str, source: &str) {
        let repo = Arc::new(
            Repository::open(self.store.clone(), "memory", &key())
                .await
                .unwrap(),
        );
        let target = self.work.path().join(format!("restored-{id}"));
        let options = RestoreOptions::builder(&target).build().unwrap();
        backup_core::restore(repo, id, options, Arc::new(NoProgress))
            .await
            .unwrap();
        let differences =
            backup_core::compare_trees(&self.work.path().join(source), &target.join(source))
                .unwrap();
        assert!(differences.is_empty(), "{differences:?}");
    }
}

/// The chunk ids of file `name` at the top of snapshot `id`.
async fn chunks_of(repo: &Repository, id: &str, name: &str) -> Vec<ChunkId> {
    let (_, snapshot) = repo.find_snapshot(id).await.unwrap();
    let root = repo.load_tree(&snapshot.tree).await.unwrap();
    let dir = repo
        .load_tree(&root.nodes[0].subtree.unwrap())
        .await
        .unwrap();
    let node = dir
        .nodes
        .iter()
        .find(|n| n.name == name.as_bytes())
        .unwrap();
    assert_eq!(node.kind, NodeKind::File);
    node.content.clone()
}

fn options() -> backup_core::prune::PruneOptionsBuilder {
    PruneOptions::builder()
}

#[tokio::test]
async fn unused_data_goes_and_used_data_stays() {
    let f = Fixture::new().await;
    let old = f
        .backup("a", &[("gone", 1, 600_000), ("shared", 2, 500_000)])
        .await;
    let gone = chunks_of(&f.repo, &old, "gone").await;
    let new = f
        .backup("b", &[("shared", 2, 500_000), ("new", 3, 400_000)])
        .await;
    let before: u64 = f.objects().await.values().sum();
    f.forget(&old).await;
    let report = f.prune_all().await;
    assert_eq!(report.snapshots, 1);
    assert!(
        report.bytes_deleted + report.bytes_repacked > 500_000,
        "{report:?}"
    );
    let after: u64 = f.objects().await.values().sum();
    assert!(
        after + 500_000 < before,
        "{before} bytes before, {after} after"
    );
    for id in &gone {
        let loaded = f.repo.load_blob(id).await;
        assert!(matches!(loaded, Err(Error::NotFound { .. })), "{loaded:?}");
    }
    f.assert_sound().await;
    f.assert_restores(&new, "b").await;
    assert!(
        !f.objects().await.keys().any(|k| k.starts_with("locks/")),
        "the lock was released"
    );
}

#[tokio::test]
async fn repacked_data_restores_byte_identical() {
    let f = Fixture::new().await;
    // Many small and large files in few packs; then half of them are dropped.
    let files: Vec<(String, u64, usize)> = (0..24)
        .map(|i| (format!("f{i:02}"), 100 + i, 20_000 + 7_000 * i as usize))
        .collect();
    let all: Vec<(&str, u64, usize)> = files.iter().map(|(n, s, l)| (n.as_str(), *s, *l)).collect();
    let first = f.backup("a", &all).await;
    for (name, _, _) in all.iter().step_by(2) {
        std::fs::remove_file(f.work.path().join("a").join(name)).unwrap();
    }
    let second = f.backup("a", &[]).await;
    f.forget(&first).await;
    let report = f.prune_all().await;
    assert!(report.packs_repacked > 0, "{report:?}");
    assert!(report.packs_written > 0, "{report:?}");
    assert_eq!(report.unused_after, 0, "{report:?}");
    assert!(
        report.index_written > 0 && report.index_deleted > 0,
        "{report:?}"
    );
    f.assert_sound().await;
    f.assert_restores(&second, "a").await;
    // A second prune finds nothing more to do.
    let again = f.prune_all().await;
    assert_eq!(
        (
            again.packs_deleted,
            again.packs_repacked,
            again.index_written
        ),
        (0, 0, 0),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_says_what_it_would_do() {
    let f = Fixture::new().await;
    let old = f.backup("a", &[("x", 1, 700_000), ("y", 2, 300_000)]).await;
    f.backup("b", &[("y", 2, 300_000)]).await;
    f.forget(&old).await;
    let before = f.objects().await;
    let report = f
        .prune(
            options()
                .with_max_unused(MaxUnused::Percent(0.0))
                .with_dry_run(true)
                .build()
                .unwrap(),
        )
        .await;
    assert!(report.dry_run);
    assert_eq!(f.objects().await, before, "a dry run changed the store");
    assert!(
        report.packs_deleted + report.packs_repacked > 0,
        "{report:?}"
    );
    assert_eq!(report.packs_written, 0);
    // Every pack of the store has a decision, and the sums agree with them.
    let packs: Vec<&String> = before.keys().filter(|k| k.starts_with("data/")).collect();
    assert_eq!(report.decisions.len(), packs.len());
    let deleted: u64 = report
        .decisions
        .iter()
        .filter(|d| d.action == PackAction::Delete)
        .map(|d| d.size)
        .sum();
    assert_eq!(deleted, report.bytes_deleted);
    for d in &report.decisions {
        assert_eq!(before[&d.pack], d.size, "{d:?}");
        assert!(!d.reason.is_empty(), "{d:?}");
    }
    // What the dry run announced is what the real run does.
    let real = f.prune_all().await;
    assert_eq!(
        (real.packs_deleted, real.packs_repacked, real.bytes_deleted),
        (
            report.packs_deleted,
            report.packs_repacked,
            report.bytes_deleted
        )
    );
}

/// Three snapshots leave packs partly used; what each threshold repacks.
async fn partly_used() -> (Fixture, String) {
    let f = Fixture::new().await;
    let files: Vec<(String, u64, usize)> = (0..12)
        .map(|i| (format!("f{i:02}"), 200 + i, 60_000))
        .collect();
    let all: Vec<(&str, u64, usize)> = files.iter().map(|(n, s, l)| (n.as_str(), *s, *l)).collect();
    let first = f.backup("a", &all).await;
    for (name, _, _) in all.iter().take(4) {
        std::fs::remove_file(f.work.path().join("a").join(name)).unwrap();
    }
    let second = f.backup("a", &[]).await;
    f.forget(&first).await;
    (f, second)
}

#[tokio::test]
async fn thresholds_are_honoured() {
    let (f, _) = partly_used().await;
    let dry = |o: backup_core::prune::PruneOptionsBuilder| o.with_dry_run(true).build().unwrap();
    let zero = f
        .prune(dry(options().with_max_unused(MaxUnused::Percent(0.0))))
        .await;
    assert!(zero.packs_repacked > 0, "{zero:?}");
    assert_eq!(zero.unused_after, 0);
    // Unlimited: nothing is repacked.
    let unlimited = f
        .prune(dry(options().with_max_unused(MaxUnused::Unlimited)))
        .await;
    assert_eq!(unlimited.packs_repacked, 0, "{unlimited:?}");
    // What stays unused is what was unused less the unused data of the packs deleted whole
    // (counted by their frames: a pack's size also holds its header, so `bytes_deleted` is
    // more whenever thread timing left a pack that no snapshot uses).
    let deleted_unused: u64 = unlimited
        .decisions
        .iter()
        .filter(|d| d.action == PackAction::Delete)
        .map(|d| d.unused)
        .sum();
    assert_eq!(unlimited.unused_after, zero.unused_bytes - deleted_unused);
    // A size limit at what is unused anyway: nothing to repack.
    let size = f
        .prune(dry(
            options().with_max_unused(MaxUnused::Size(unlimited.unused_after))
        ))
        .await;
    assert_eq!(size.packs_repacked, 0, "{size:?}");
    // A percentage: the unused data left is within it.
    let percent = f
        .prune(dry(options().with_max_unused(MaxUnused::Percent(10.0))))
        .await;
    let used = percent.bytes - percent.unused_bytes;
    assert!(
        percent.unused_after as f64 <= 0.1 * (used + percent.unused_after) as f64 + 1.0,
        "{percent:?}"
    );
    // A repack budget smaller than any pack: nothing is repacked, and the reason says why.
    let capped = f
        .prune(dry(options()
            .with_max_unused(MaxUnused::Percent(0.0))
            .with_max_repack_size(1)))
        .await;
    assert_eq!(capped.packs_repacked, 0, "{capped:?}");
    assert!(
        capped
            .decisions
            .iter()
            .any(|d| d.reason.contains("max-repack-size")),
        "{capped:?}"
    );
    // The budget bounds the bytes read.
    let budget = zero.bytes_repacked / 2;
    let half = f
        .prune(dry(options()
            .with_max_unused(MaxUnused::Percent(0.0))
            .with_max_repack_size(budget)))
        .await;
    assert!(half.bytes_repacked <= budget, "{half:?}");
}

#[test]
fn limits_parse() {
    assert_eq!("5%".parse::<MaxUnused>().unwrap(), MaxUnused::Percent(5.0));
    assert_eq!("100%".parse::<MaxUnused>().unwrap(), MaxUnused::Unlimited);
    assert_eq!(
        "unlimited".parse::<MaxUnused>().unwrap(),
        MaxUnused::Unlimited
    );
    assert_eq!(
        "100M".parse::<MaxUnused>().unwrap(),
        MaxUnused::Size(100 << 20)
    );
    assert_eq!(
        "2GiB".parse::<MaxUnused>().unwrap(),
        MaxUnused::Size(2 << 30)
    );
    for bad in ["", "x%", "101%", "-1%", "5X", "99999999999T"] {
        let e = bad.parse::<MaxUnused>().unwrap_err();
        assert!(e.to_string().contains("max-unused"), "{bad}: {e}");
    }
}

#[tokio::test]
async fn garbage_of_killed_runs_is_reclaimed() {
    let f = Fixture::new().await;
    let id = f.backup("a", &[("x", 1, 300_000)]).await;
    // What a backup or prune killed after uploading a pack but before indexing it leaves.
    let stray = "data/ab/ab0123456789abcdef0123456789abcd";
    f.store
        .put(&ObjectPath::from(stray), noise(9, 50_000).into())
        .await
        .unwrap();
    let report = f.prune(options().build().unwrap()).await;
    assert_eq!(report.unindexed_deleted, 1, "{report:?}");
    assert!(!f.objects().await.contains_key(stray));
    f.assert_sound().await;
    f.assert_restores(&id, "a").await;
}

#[tokio::test]
async fn a_damaged_index_or_snapshot_is_refused_and_nothing_deleted() {
    for damaged in ["index/", "snapshots/"] {
        let f = Fixture::new().await;
        let old = f.backup("a", &[("x", 1, 300_000)]).await;
        f.backup("b", &[("y", 2, 300_000)]).await;
        f.forget(&old).await;
        let objects = f.objects().await;
        let victim = objects
            .keys()
            .find(|k| k.starts_with(damaged))
            .unwrap()
            .clone();
        let mut bytes = f
            .store
            .get(&ObjectPath::from(victim.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        f.store
            .put(&ObjectPath::from(victim.as_str()), bytes.into())
            .await
            .unwrap();
        let before = f.objects().await;
        let error = backup_core::prune::prune(f.repo.clone(), &options().build().unwrap())
            .await
            .unwrap_err();
        let text = backup_core::report(&error);
        assert!(text.contains(&victim) && text.contains("refuses"), "{text}");
        let after: BTreeMap<_, _> = f
            .objects()
            .await
            .into_iter()
            .filter(|(k, _)| !k.starts_with("locks/"))
            .collect();
        assert_eq!(after, before, "prune changed a damaged repository");
    }
}

/// A repository handle opened before a prune deduplicates against what the prune left, not
/// against the packs it deleted.
#[tokio::test]
async fn a_backup_through_a_handle_opened_before_a_prune_stays_restorable() {
    let f = Fixture::new().await;
    let first = f.backup("a", &[("x", 1, 300_000), ("y", 2, 300_000)]).await;
    let early = Arc::new(
        Repository::open(f.store.clone(), "memory", &key())
            .await
            .unwrap(),
    );
    std::fs::remove_file(f.work.path().join("a/x")).unwrap();
    f.backup("a", &[]).await;
    f.forget(&first).await;
    f.prune_all().await;
    // The early handle's index still lists the deleted and repacked packs.
    let dir = f.work.path().join("a");
    std::fs::write(dir.join("x"), noise(1, 300_000)).unwrap();
    let options = BackupOptions::builder([&dir]).build().unwrap();
    let (id, _) = backup_core::backup(early, options, Arc::new(NoProgress))
        .await
        .unwrap();
    f.assert_sound().await;
    f.assert_restores(&id, "a").await;
}
