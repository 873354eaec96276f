//! The repository conformance suite over every object store backup-core supports.

use std::sync::Arc;

use backup_core::conformance;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory() {
    conformance::run_all(Arc::new(InMemory::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    conformance::run_all(store).await;
}

/// The default local store (`StoreOptions` on a path): durable puts written around the page
/// cache, restores reading frames straight from the pack files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = backup_core::StoreOptions::new(dir.path().to_string_lossy())
        .build()
        .unwrap();
    conformance::run_all(store).await;
}

#[tokio::test(flavor = "current_thread")]
async fn current_thread_runtime_works() {
    conformance::backup_restore_roundtrip(Arc::new(InMemory::new())).await;
}

/// A fresh bucket on the loopback S3 server (moto) that scripts/test.sh starts.
async fn s3_bucket() -> Option<String> {
    let endpoint = test_support::require_env("HOSTGUARD_S3_ENDPOINT", "an S3 server on loopback")?;
    let bucket = format!("backup-core-{}", std::process::id());
    // moto creates a bucket on a plain PUT of the bucket URL.
    let status = std::process::Command::new("curl")
        .args(["-sf", "-X", "PUT", &format!("{endpoint}/{bucket}")])
        .status()
        .expect("curl runs");
    assert!(status.success(), "creating bucket {bucket} at {endpoint}");
    Some(format!("s3://{bucket}/repo"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_on_loopback() {
    let Some(location) = s3_bucket().await else {
        return;
    };
    let endpoint = std::env::var("HOSTGUARD_S3_ENDPOINT").unwrap();
    let store = backup_core::StoreOptions::new(location)
        .with_endpoint(endpoint)
        .build()
        .unwrap();
    conformance::run_all(store).await;
}

#[tokio::test]
async fn key_file_opens_and_another_does_not() {
    use backup_core::{Error, InitOptions, KeySource, Repository};
    use crypto_at_rest::{KeyId, Keyring};
    let dir = tempfile::tempdir().unwrap();
    let (mine, other) = (dir.path().join("mine.key"), dir.path().join("other.key"));
    Keyring::generate(KeyId(7)).unwrap().save(&mine).unwrap();
    Keyring::generate(KeyId(7)).unwrap().save(&other).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let key = KeySource::key_file(&mine).unwrap();
    Repository::init(store.clone(), "mem", &key, InitOptions::new())
        .await
        .unwrap();
    Repository::open(store.clone(), "mem", &key).await.unwrap();
    let wrong = Repository::open(store.clone(), "mem", &KeySource::key_file(&other).unwrap()).await;
    assert!(matches!(wrong, Err(Error::WrongKey)), "{wrong:?}");
    let passphrase = Repository::open(store, "mem", &KeySource::passphrase("x")).await;
    assert!(matches!(passphrase, Err(Error::WrongKey)), "{passphrase:?}");
    let missing = KeySource::key_file(&dir.path().join("absent.key")).unwrap_err();
    assert!(missing.to_string().contains("absent.key"), "{missing}");
}
