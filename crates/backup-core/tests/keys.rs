//! Keys: a second admin's key, a changed passphrase, removals refused where they would lock
//! the repository, and no data rewritten by any of it.

use std::collections::BTreeMap;
use std::sync::Arc;

use backup_core::conformance::small_options;
use backup_core::keys::KeyKind;
use backup_core::{BackupOptions, Error, KeySource, NoProgress, Repository};
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::memory::InMemory;

/// Every object but the key objects, with its size and e-tag.
async fn non_key_objects(store: &dyn ObjectStore) -> BTreeMap<String, (u64, Option<String>)> {
    let all: Vec<_> = store.list(None).try_collect().await.unwrap();
    all.into_iter()
        .filter(|m| !m.location.as_ref().starts_with("keys/"))
        .map(|m| (m.location.to_string(), (m.size, m.e_tag)))
        .collect()
}

fn now_ns() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    i64::try_from(since.unwrap().as_nanos()).unwrap()
}

async fn open(store: &Arc<InMemory>, pass: &str) -> backup_core::Result<Repository> {
    Repository::open(store.clone(), "memory", &KeySource::passphrase(pass)).await
}

#[tokio::test]
async fn add_passwd_and_remove_keys_without_rewriting_data() {
    let store = Arc::new(InMemory::new());
    let alice = KeySource::passphrase("alice's passphrase");
    let repo = Arc::new(
        Repository::init(store.clone(), "memory", &alice, small_options())
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"data").unwrap();
    let options = BackupOptions::builder([dir.path()]).build().unwrap();
    let (snapshot, _) = backup_core::backup(repo.clone(), options, Arc::new(NoProgress))
        .await
        .unwrap();
    let data_before = non_key_objects(store.as_ref()).await;

    let alice_id = repo.current_key().unwrap();
    let bob_id = repo
        .add_key(&KeySource::passphrase("bob's passphrase"))
        .await
        .unwrap();
    assert!(matches!(
        repo.add_key(&KeySource::passphrase("")).await,
        Err(Error::Config(_))
    ));
    let keys = repo.list_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    for k in &keys {
        assert_eq!(k.kind, KeyKind::Passphrase);
        assert!(k.kdf.as_deref().unwrap().starts_with("argon2id"), "{k:?}");
        assert_eq!(k.current, k.id == alice_id);
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(k.host.as_deref(), Some(host.trim()));
        let age = now_ns() - k.created_ns.unwrap();
        assert!((0..600_000_000_000).contains(&age), "created {age} ns ago");
    }
    assert!(keys.iter().any(|k| k.id == bob_id));

    // Bob opens the repository and reads Alice's snapshot.
    let as_bob = open(&store, "bob's passphrase").await.unwrap();
    assert_eq!(as_bob.current_key().unwrap(), bob_id);
    assert_eq!(as_bob.find_snapshot("latest").await.unwrap().0, snapshot);

    // Nobody removes the key they opened with; Bob removes Alice's.
    let refused = as_bob.remove_key(&bob_id).await.unwrap_err();
    assert!(
        matches!(refused, Error::KeyRemovalRefused { .. }),
        "{refused}"
    );
    assert!(matches!(
        as_bob.remove_key("ffff").await,
        Err(Error::NotFound { .. })
    ));
    as_bob.remove_key(&alice_id[..8]).await.unwrap();
    assert!(matches!(
        open(&store, "alice's passphrase").await,
        Err(Error::WrongKey)
    ));
    let refused = as_bob.remove_key(&bob_id).await.unwrap_err();
    assert!(refused.to_string().contains("last key"), "{refused}");

    // Bob changes his passphrase: the old one stops working, the new one opens.
    let new_id = as_bob
        .change_key(&KeySource::passphrase("bob's new passphrase"))
        .await
        .unwrap();
    assert_ne!(new_id, bob_id);
    assert_eq!(as_bob.current_key().unwrap(), new_id);
    assert!(matches!(
        open(&store, "bob's passphrase").await,
        Err(Error::WrongKey)
    ));
    let reopened = open(&store, "bob's new passphrase").await.unwrap();
    assert_eq!(reopened.list_keys().await.unwrap().len(), 1);
    assert_eq!(reopened.find_snapshot("latest").await.unwrap().0, snapshot);
    assert_eq!(
        non_key_objects(store.as_ref()).await,
        data_before,
        "data rewritten"
    );
}

#[tokio::test]
async fn a_key_file_is_added_beside_a_passphrase_and_listed_as_one() {
    use crypto_at_rest::{KeyId, Keyring};
    let store = Arc::new(InMemory::new());
    let repo = Repository::init(
        store.clone(),
        "memory",
        &KeySource::passphrase("admin"),
        small_options(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("ops.key");
    Keyring::generate(KeyId(3))
        .unwrap()
        .save(&key_file)
        .unwrap();
    let id = repo
        .add_key(&KeySource::key_file(&key_file).unwrap())
        .await
        .unwrap();
    let listed = repo.list_keys().await.unwrap();
    let added = listed.iter().find(|k| k.id == id).unwrap();
    assert_eq!(
        (added.kind, added.kdf.as_deref(), added.current),
        (KeyKind::KeyFile, None, false)
    );
    let with_file = Repository::open(
        store.clone(),
        "memory",
        &KeySource::key_file(&key_file).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(with_file.config().id, repo.config().id);
    assert_eq!(with_file.current_key().unwrap(), id);
}
