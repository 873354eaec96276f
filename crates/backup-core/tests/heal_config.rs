//! `heal_config`: a damaged or deleted `config` is rebuilt from a mirror made with
//! `init --copy-params-from` when a key here vouches for it, after which the repository opens,
//! passes `check --read-data` and restores byte-identical; a mirror with other keys, or a
//! repository whose only key is damaged too, is refused and nothing is written.

mod common;

use std::path::Path;
use std::sync::Arc;

use backup_core::heal::heal_config;
use backup_core::{Error, KeySource, Repository, conformance::small_options};
use common::*;

/// A repository `work/repo` with two snapshots and a mirror `work/mirror` sharing its keys
/// under another passphrase.
async fn repository_and_mirror(work: &Path) -> (Vec<String>, Vec<std::path::PathBuf>) {
    let (repo, ids, copies) = two_snapshots(work).await;
    let options = small_options().with_params_from(&repo);
    Repository::init(
        local(&work.join("mirror")),
        "mirror",
        &mirror_key(),
        options,
    )
    .await
    .unwrap();
    (ids, copies)
}

fn mirror_key() -> KeySource {
    KeySource::passphrase("the mirror's own passphrase")
}

async fn mirror(work: &Path) -> Repository {
    Repository::open(local(&work.join("mirror")), "mirror", &mirror_key())
        .await
        .unwrap()
}

async fn heal(
    work: &Path,
    dry_run: bool,
) -> backup_core::Result<backup_core::heal::ConfigHealReport> {
    let store = local(&work.join("repo"));
    heal_config(store, "repo", &key(), &mirror(work).await, dry_run).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_deleted_config_is_rebuilt_from_the_mirror() {
    let work = tempfile::tempdir().unwrap();
    let (ids, copies) = repository_and_mirror(work.path()).await;
    let config = work.path().join("repo/config");
    let id_before = open(&work.path().join("repo")).await.config().id.clone();
    for delete in [false, true] {
        if delete {
            std::fs::remove_file(&config).unwrap();
        } else {
            flip(&config, 40);
        }
        let damaged = std::fs::read(&config).ok();
        let err = Repository::open(local(&work.path().join("repo")), "repo", &key()).await;
        assert!(err.is_err(), "the damaged config stops every open");
        let dry = heal(work.path(), true).await.unwrap();
        assert!(dry.restored && dry.damage.is_some(), "{dry:?}");
        assert_eq!(
            std::fs::read(&config).ok(),
            damaged,
            "a dry run writes nothing"
        );
        let report = heal(work.path(), false).await.unwrap();
        assert!(report.restored && report.vouched_by.starts_with("keys/"));
        let expected = if delete {
            "missing"
        } else {
            "fails authentication"
        };
        assert!(
            report.damage.as_deref().unwrap().contains(expected),
            "{report:?}"
        );
        let repo = open(&work.path().join("repo")).await;
        // The mirror's parameters, under an id of its own.
        let there = mirror(work.path()).await;
        assert_eq!(repo.config().chunker, there.config().chunker);
        assert_eq!(repo.config().pack_size, there.config().pack_size);
        assert_ne!(repo.config().id, there.config().id);
        assert_ne!(repo.config().id, id_before);
        let checked = check_all(repo.clone()).await;
        assert!(checked.is_ok(), "{:?}", checked.problems);
        for (id, expected) in ids.iter().zip(&copies) {
            let restored = restore_into(&repo, id, work.path(), "src").await.unwrap();
            assert_same(expected, &restored);
        }
        // A sound config is left alone.
        let bytes = std::fs::read(&config).unwrap();
        let again = heal(work.path(), false).await.unwrap();
        assert!(again.damage.is_none() && !again.restored);
        assert_eq!(std::fs::read(&config).unwrap(), bytes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_of_another_repository_or_a_damaged_only_key_is_refused() {
    let work = tempfile::tempdir().unwrap();
    repository_and_mirror(work.path()).await;
    let config = work.path().join("repo/config");
    flip(&config, 40);
    let damaged = std::fs::read(&config).unwrap();
    // Another repository with the same passphrase: its master secret is its own.
    let other = init(&work.path().join("other")).await;
    let store = local(&work.path().join("repo"));
    let err = heal_config(store.clone(), "repo", &key(), &other, false).await;
    assert!(matches!(err, Err(Error::KeysDiffer { .. })), "{err:?}");
    // The only key here damaged: nothing vouches for the mirror.
    let keys = names(&work.path().join("repo/keys"));
    assert_eq!(keys.len(), 1);
    flip(&work.path().join("repo/keys").join(&keys[0]), 20);
    let err = heal(work.path(), false).await;
    match err {
        Err(Error::Corrupt { object, .. }) => assert_eq!(object, format!("keys/{}", keys[0])),
        other => panic!("{other:?}"),
    }
    // A wrong password is no key at all.
    let mirror = Arc::new(mirror(work.path()).await);
    let err = heal_config(
        store,
        "repo",
        &KeySource::passphrase("wrong"),
        &mirror,
        false,
    )
    .await;
    assert!(
        matches!(err, Err(Error::WrongKey) | Err(Error::Corrupt { .. })),
        "{err:?}"
    );
    assert_eq!(
        std::fs::read(&config).unwrap(),
        damaged,
        "nothing is written"
    );
}
