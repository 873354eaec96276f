//! A damaged key object reads as damaged, naming it, never as "wrong password": whatever byte
//! of it is flipped, opening with its own password names it, and opening with another admin's
//! key reports it as skipped.

mod common;

use std::sync::Arc;

use backup_core::conformance::small_options;
use backup_core::{Error, KeySource, Repository};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flipped_byte_of_a_key_object_is_found_and_named() {
    let work = tempfile::tempdir().unwrap();
    let repo_dir = work.path().join("repo");
    let (first, second) = (
        KeySource::passphrase("first"),
        KeySource::passphrase("second"),
    );
    let repo = Repository::init(local(&repo_dir), "repo", &first, small_options())
        .await
        .unwrap();
    let second_id = repo.add_key(&second).await.unwrap();
    let first_id = repo.current_key().unwrap();
    drop(repo);
    let key_file = repo_dir.join("keys").join(&first_id);
    let pristine = std::fs::read(&key_file).unwrap();
    for at in (0..pristine.len()).step_by(5) {
        let mut damaged = pristine.clone();
        damaged[at] ^= 0x55;
        std::fs::write(&key_file, &damaged).unwrap();
        let name = format!("keys/{first_id}");
        match Repository::open(local(&repo_dir), "repo", &first).await {
            Err(Error::Corrupt { object, .. }) => assert_eq!(object, name, "byte {at}"),
            Err(e) => panic!("byte {at}: {}", backup_core::report(&e)),
            Ok(_) => panic!("byte {at}: the damaged key still opened"),
        }
        let other = Arc::new(
            Repository::open(local(&repo_dir), "repo", &second)
                .await
                .unwrap(),
        );
        assert_eq!(other.current_key().unwrap(), second_id);
        let report = check_all(other).await;
        assert!(
            report.problems.iter().any(|p| p.object == name),
            "byte {at}: {:?}",
            report.problems
        );
    }
    std::fs::write(&key_file, &pristine).unwrap();
    Repository::open(local(&repo_dir), "repo", &first)
        .await
        .unwrap();
}
