//! The retrying store against the fault-injecting one: transient faults are retried away,
//! persistent ones fail at once naming the object, a store that never answers times out, and a
//! backup under faults either succeeds or fails cleanly, leaving a repository that passes
//! `check --read-data` and restores every earlier snapshot.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_core::conformance::small_options;
use backup_core::faults::{FaultConfig, FaultStore};
use backup_core::retry::{RetryPolicy, RetryingStore};
use backup_core::{KeySource, Repository};
use common::*;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};

fn quick_policy(retries: u32) -> RetryPolicy {
    RetryPolicy::new()
        .with_max_retries(retries)
        .with_backoff(Duration::from_millis(1), Duration::from_millis(20))
        .with_timeout(Duration::from_secs(5))
}

/// `faults` in front of `inner`, and retries in front of them.
fn faulty(
    inner: Arc<dyn ObjectStore>,
    faults: FaultConfig,
    policy: RetryPolicy,
) -> (Arc<FaultStore>, Arc<dyn ObjectStore>) {
    let faults = Arc::new(FaultStore::new(inner, faults.build().unwrap()));
    let retrying = Arc::new(RetryingStore::new(faults.clone(), policy.build().unwrap()));
    (faults, retrying)
}

#[tokio::test]
async fn cut_downloads_resume_and_partial_writes_are_reconciled() {
    let faults = FaultConfig::new(11)
        .with_cut_rate(0.15)
        .with_partial_write_rate(0.15)
        .with_error_rate(0.1);
    let (injected, store) = faulty(Arc::new(InMemory::new()), faults, quick_policy(12));
    let mut objects = Vec::new();
    for i in 0..40u64 {
        let name = ObjectPath::from(format!("objects/{i}"));
        let data = noise(i + 100, 50_000 + i as usize * 997);
        let create = PutOptions::from(PutMode::Create);
        store
            .put_opts(&name, data.clone().into(), create)
            .await
            .unwrap_or_else(|e| panic!("put {name}: {}", backup_core::report(&e)));
        objects.push((name, data));
    }
    for (name, data) in &objects {
        let got = store.get(name).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], &data[..], "{name}");
        // What the inner store holds is whole, not a truncated attempt.
        let inner = injected
            .inner()
            .get(name)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(inner.len(), data.len(), "{name}");
    }
    let counts = injected.injected();
    assert!(counts.cuts > 5, "{counts:?}");
    assert!(counts.partial_writes > 5, "{counts:?}");
    assert!(counts.errors > 5, "{counts:?}");
    // A create-only put of another payload under an existing name is still refused.
    let err = store
        .put_opts(
            &objects[0].0,
            b"other".to_vec().into(),
            PutOptions::from(PutMode::Create),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::AlreadyExists { .. }),
        "{err}"
    );
}

/// A put applied but answered with an error (the reply lost): its retry meets its own object,
/// which counts as done, for create-only puts and for conditional updates (lock refreshes).
#[tokio::test]
async fn lost_replies_of_creates_and_updates_count_as_done() {
    let faults = FaultConfig::new(21).with_lost_reply_rate(0.5);
    let (injected, store) = faulty(Arc::new(InMemory::new()), faults, quick_policy(10));
    for i in 0..20u64 {
        let name = ObjectPath::from(format!("locks/{i}"));
        let create = PutOptions::from(PutMode::Create);
        store
            .put_opts(&name, noise(i, 300).into(), create)
            .await
            .unwrap();
        let meta = store.head(&name).await.unwrap();
        let version = object_store::UpdateVersion {
            e_tag: meta.e_tag,
            version: meta.version,
        };
        let update = PutOptions::from(PutMode::Update(version));
        store
            .put_opts(&name, noise(i + 100, 300).into(), update)
            .await
            .unwrap();
        let stored = injected.inner().get(&name).await.unwrap().bytes().await;
        assert_eq!(stored.unwrap(), noise(i + 100, 300), "{name}");
    }
    assert!(
        injected.injected().lost_replies > 10,
        "{:?}",
        injected.injected()
    );
}

#[tokio::test]
async fn the_same_seed_injects_the_same_faults() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let faults = FaultConfig::new(5).with_error_rate(0.3).with_cut_rate(0.3);
        let (injected, store) = faulty(Arc::new(InMemory::new()), faults, quick_policy(20));
        for i in 0..30 {
            let name = ObjectPath::from(format!("o/{i}"));
            store.put(&name, noise(i, 1000).into()).await.unwrap();
            store.get(&name).await.unwrap().bytes().await.unwrap();
        }
        runs.push(injected.injected());
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].errors > 0 && runs[0].cuts > 0, "{:?}", runs[0]);
}

#[tokio::test]
async fn a_store_that_never_answers_times_out_naming_the_object() {
    let faults = FaultConfig::new(1).with_hang_rate(1.0);
    let policy = quick_policy(1).with_timeout(Duration::from_millis(200));
    let (injected, store) = faulty(Arc::new(InMemory::new()), faults, policy);
    let started = Instant::now();
    let key = KeySource::passphrase("pw");
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        Repository::init(store, "hanging", &key, small_options()),
    )
    .await
    .expect("init hung despite the timeouts")
    .unwrap_err();
    let text = backup_core::report(&err);
    assert!(text.contains("config"), "{text}");
    assert!(text.contains("no answer within"), "{text}");
    assert!(text.contains("gave up after 2 attempts"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(injected.injected().hangs >= 2);
}

#[tokio::test]
async fn persistent_errors_fail_at_once_naming_the_object() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    write_tree(&src, 0);
    let faults = FaultConfig::new(3).with_persistent_failure("data/");
    let (injected, store) = faulty(local(&work.path().join("repo")), faults, quick_policy(5));
    let key = KeySource::passphrase("pw");
    let repo = Arc::new(
        Repository::init(store, "repo", &key, small_options())
            .await
            .unwrap(),
    );
    let err = backup(&repo, &src).await.unwrap_err();
    let text = backup_core::report(&err);
    assert!(text.contains("data/"), "names the pack: {text}");
    assert!(text.contains("injected persistent failure"), "{text}");
    // Not retried: a handful of pack puts (one per upload thread), not six times as many.
    assert!(
        injected.injected().persistent <= 4,
        "{:?}",
        injected.injected()
    );
    // Nothing was committed: no snapshot, no index.
    assert!(names(&work.path().join("repo/snapshots")).is_empty());
}

/// Backups under faults, run after run: each succeeds or fails with an error, and afterwards
/// the repository (read without faults from `plain()`) passes `check --read-data` and every
/// snapshot saved so far restores identically.
async fn backups_under_faults(plain: impl Fn() -> Arc<dyn ObjectStore>, runs: u64) {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let reopen = || async { Arc::new(Repository::open(plain(), "repo", &key()).await.unwrap()) };
    Repository::init(plain(), "repo", &key(), small_options())
        .await
        .unwrap();
    let mut saved: Vec<(String, std::path::PathBuf)> = Vec::new();
    let (mut succeeded, mut failed, mut faults_injected) = (0, 0, 0);
    for seed in 0..runs {
        write_tree(&src, seed);
        // Few retries, and many faults every other run, so that some backups do fail.
        let rate = if seed % 2 == 0 { 0.04 } else { 0.2 };
        let faults = FaultConfig::new(seed)
            .with_error_rate(rate)
            .with_cut_rate(rate)
            .with_partial_write_rate(rate)
            .with_lost_reply_rate(rate)
            .with_latency(0.2, Duration::from_millis(5));
        let (injected, store) = faulty(plain(), faults, quick_policy(2));
        let opened = Repository::open(store, "repo", &key()).await;
        let outcome = match opened {
            Ok(repo) => backup(&Arc::new(repo), &src).await,
            Err(e) => Err(e),
        };
        let counts = injected.injected();
        faults_injected +=
            counts.errors + counts.cuts + counts.partial_writes + counts.lost_replies;
        match outcome {
            Ok(id) => {
                succeeded += 1;
                let copy = work.path().join(format!("state{seed}"));
                std::fs::create_dir(&copy).unwrap();
                keep_copy(&src, &copy);
                saved.push((id, copy.join("src")));
            }
            Err(e) => {
                failed += 1;
                let text = backup_core::report(&e);
                assert!(text.contains("injected"), "seed {seed}: {text}");
            }
        }
        let repo = reopen().await;
        let report = check_all(repo.clone()).await;
        assert!(report.is_ok(), "seed {seed}: {:?}", report.problems);
        for (id, expected) in &saved {
            let restored = restore_into(&repo, id, work.path(), "src").await.unwrap();
            assert_same(expected, &restored);
        }
    }
    // Object names are random, so which calls fail varies from run to run; at these rates
    // both outcomes come up (each with a probability far above 99 %).
    assert!(
        succeeded >= 1 && failed >= 1,
        "{succeeded} ok, {failed} failed"
    );
    assert!(faults_injected > 2 * runs, "{faults_injected}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_under_faults_succeed_or_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    backups_under_faults(|| local(&repo_dir), 10).await;
}

/// The same on S3 (moto on loopback, which enforces create-only puts): partial writes there
/// meet real conditional puts when retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_under_faults_on_s3_succeed_or_fail_cleanly() {
    let Some(endpoint) =
        test_support::require_env("HOSTGUARD_S3_ENDPOINT", "an S3 server on loopback")
    else {
        return;
    };
    let bucket = format!("backup-core-faults-{}", std::process::id());
    // moto creates a bucket on a plain PUT of the bucket URL.
    let status = std::process::Command::new("curl")
        .args(["-sf", "-X", "PUT", &format!("{endpoint}/{bucket}")])
        .status()
        .expect("curl runs");
    assert!(status.success(), "creating bucket {bucket} at {endpoint}");
    let location = format!("s3://{bucket}/repo");
    let store = backup_core::StoreOptions::new(location)
        .with_endpoint(endpoint)
        .build()
        .unwrap();
    backups_under_faults(|| store.clone(), 6).await;
}

#[test]
fn stores_built_from_options_retry_and_time_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = backup_core::StoreOptions::new(dir.path().to_string_lossy())
        .with_retry(RetryPolicy::new().with_max_retries(2))
        .build()
        .unwrap();
    assert!(store.to_string().starts_with("RetryingStore("), "{store}");
    let bad = backup_core::StoreOptions::new(dir.path().to_string_lossy())
        .with_timeout(Duration::ZERO)
        .build();
    assert!(bad.is_err());
}
