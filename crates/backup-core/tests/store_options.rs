//! `StoreOptions::build` changes no process-wide state and creates no path it was not asked to.
//! (Its own test binary: the installed rustls provider is global to the process.)

use backup_core::{Error, StoreOptions};
use object_store::ObjectStoreExt;

#[tokio::test(flavor = "current_thread")]
async fn s3_store_installs_no_process_wide_crypto_provider() {
    for endpoint in ["https://127.0.0.1:1", "http://127.0.0.1:1"] {
        let store = StoreOptions::new("s3://bucket/prefix")
            .with_endpoint(endpoint)
            .build()
            .expect("an S3 store builds");
        // A request goes through the client (and its TLS configuration for https): nothing
        // listens on port 1, so it fails, but it must not panic for want of a provider.
        let got = store.get(&object_store::path::Path::from("config")).await;
        assert!(got.is_err(), "{endpoint}: nothing listens there");
    }
    assert!(
        rustls::crypto::CryptoProvider::get_default().is_none(),
        "StoreOptions::build installed a process-wide rustls crypto provider"
    );
}

#[test]
fn a_missing_local_directory_is_not_created_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/repo");
    let err = StoreOptions::new(missing.to_string_lossy())
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::NoRepository { .. }), "{err:?}");
    assert!(!dir.path().join("no").exists(), "a parent was created");

    StoreOptions::new(missing.to_string_lossy())
        .with_create(true)
        .build()
        .unwrap();
    assert!(missing.is_dir());
}

#[test]
fn a_regular_file_is_refused_with_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a repository").unwrap();
    for create in [false, true] {
        let err = StoreOptions::new(file.to_string_lossy())
            .with_create(create)
            .build()
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("not a directory"), "{text}");
        assert_eq!(text.matches("file").count(), 1, "{text}");
    }
}
