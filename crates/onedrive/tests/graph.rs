//! The client against the mock Graph server: OAuth2, addressing, folders, conflicts, uploads
//! (simple and sessions), throttling, faults and resumption.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{CLIENT_ID, CLIENT_SECRET, MockGraph, Target, UNIT, data, login, server_quickxor};
use onedrive::{
    AbortHandle, Conflict, Drive, Error, ItemRef, NamePolicy, OAuthConfig, OneDriveClient, Pkce,
    RemotePath, RetryPolicy, Secret, map_name, name_problem, unmap_name,
};

fn builder(mock: &MockGraph, dir: &Path) -> onedrive::OneDriveClientBuilder {
    common::client_builder(
        &mock.graph_url(),
        &mock.token_url(),
        &dir.join("token.json"),
    )
}

async fn connect(mock: &MockGraph, dir: &Path) -> OneDriveClient {
    let client = builder(mock, dir).build().expect("client");
    login(mock, &client).await;
    client
}

fn path(p: &str) -> RemotePath {
    RemotePath::parse(p).expect("path")
}

#[tokio::test]
async fn login_stores_tokens_privately_and_rejects_a_foreign_state() {
    let mock = MockGraph::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = connect(&mock, dir.path()).await;
    let token_file = dir.path().join("token.json");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "token file mode");
    let stored = std::fs::read_to_string(&token_file).unwrap();
    let latest = mock.with(|s| s.refresh_tokens.clone());
    assert_eq!(latest.len(), 1);
    assert!(
        stored.contains(&latest[0]),
        "the issued refresh token is stored"
    );
    assert!(
        client
            .get_item(&Drive::Me, &ItemRef::Path(RemotePath::root()))
            .await
            .unwrap()
            .is_some()
    );

    // A redirect from another login attempt is refused before any code is redeemed.
    let pkce = Pkce::generate().unwrap();
    let err = client
        .authenticator()
        .complete_login("http://localhost/?code=x&state=forged", &pkce)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err}");
    // The PKCE verifier is checked by the server: a code bound to another challenge fails.
    mock.with(|s| s.codes.insert("code-2".into(), "another-challenge".into()));
    let err = client
        .authenticator()
        .complete_login(
            &format!("http://localhost/?code=code-2&state={}", pkce.state()),
            &pkce,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("code_verifier"), "{err}");
    mock.assert_clean();
}

#[tokio::test]
async fn tokens_refresh_before_expiry_and_every_new_refresh_token_is_stored() {
    let mock = MockGraph::start().await;
    // Tokens that live 200 s are inside the five-minute margin: each use refreshes.
    mock.with(|s| s.token_lifetime = 200);
    let dir = tempfile::tempdir().unwrap();
    let client = connect(&mock, dir.path()).await;
    for _ in 0..3 {
        client
            .get_item(&Drive::Me, &ItemRef::Path(RemotePath::root()))
            .await
            .unwrap();
    }
    let (valid, used, grants) = mock.with(|s| {
        (
            s.refresh_tokens.clone(),
            s.used_refresh_tokens.clone(),
            s.token_requests.clone(),
        )
    });
    assert_eq!(
        grants.iter().filter(|g| *g == "refresh_token").count(),
        3,
        "{grants:?}"
    );
    assert_eq!(valid.len(), 1, "rotation leaves one valid refresh token");
    assert_eq!(used.len(), 3);
    let stored = std::fs::read_to_string(dir.path().join("token.json")).unwrap();
    assert!(
        stored.contains(&valid[0]),
        "the newest refresh token is stored"
    );
    for old in &used {
        assert!(
            !stored.contains(old.as_str()),
            "an old refresh token is still stored"
        );
    }
    // A second process (a new client on the same token file) picks up the stored chain.
    mock.with(|s| s.token_lifetime = 3600);
    let again = builder(&mock, dir.path()).build().unwrap();
    again
        .get_item(&Drive::Me, &ItemRef::Path(RemotePath::root()))
        .await
        .unwrap();
    mock.assert_clean();
}

#[tokio::test]
async fn a_revoked_access_token_is_refreshed_once() {
    let mock = MockGraph::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = connect(&mock, dir.path()).await;
    mock.with(|s| s.access_tokens.clear());
    assert!(
        client
            .get_item(&Drive::Me, &ItemRef::Path(RemotePath::root()))
            .await
            .unwrap()
            .is_some()
    );
    // Without a token file there is nothing to refresh: a clear error names the consent step.
    let empty = tempfile::tempdir().unwrap();
    let fresh = builder(&mock, empty.path()).build().unwrap();
    let err = fresh
        .get_item(&Drive::Me, &ItemRef::Path(RemotePath::root()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("consent"), "{err}");
}

#[tokio::test]
async fn client_credentials_address_a_users_drive_and_never_leak_the_secret() {
    let mock = MockGraph::start().await;
    let config = |secret: &str| {
        OAuthConfig::client_credentials("contoso.example", CLIENT_ID, Secret::new(secret))
            .with_token_url(mock.token_url())
            .build()
            .unwrap()
    };
    let good = OneDriveClient::builder(config(CLIENT_SECRET))
        .with_graph_url(mock.graph_url())
        .build()
        .unwrap();
    let drive = Drive::User("alice@example.com".into());
    let item = good
        .put_small(&drive, &path("hello.txt"), b"hi".to_vec(), Conflict::Fail)
        .await
        .unwrap();
    assert_eq!(
        mock.file("drive-b", "hello.txt").as_deref(),
        Some(&b"hi"[..])
    );
    // The same drive by id.
    let by_id = good
        .get_item(&Drive::Id("drive-b".into()), &ItemRef::Id(item.id.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_id.name, "hello.txt");
    assert_eq!(
        by_id.quick_xor_hash.as_deref(),
        Some(server_quickxor(b"hi").as_str())
    );

    let bad = OneDriveClient::builder(config("wrong-secret-value"))
        .with_graph_url(mock.graph_url())
        .build()
        .unwrap();
    let err = bad
        .get_item(&drive, &ItemRef::Path(RemotePath::root()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err}");
    let shown = format!("{err} {err:?} {bad:?} {:?}", config(CLIENT_SECRET));
    assert!(
        !shown.contains("wrong-secret-value") && !shown.contains(CLIENT_SECRET),
        "{shown}"
    );
    mock.assert_clean();
}

#[tokio::test]
async fn paths_are_percent_encoded_and_folders_created_recursively() {
    let mock = MockGraph::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = connect(&mock, dir.path()).await;
    let folder = path("Exports/site #1/100% done/ü ñ");
    let created = client.ensure_folder(&Drive::Me, &folder).await.unwrap();
    assert!(created.is_folder);
    // Idempotent.
    assert_eq!(
        client.ensure_folder(&Drive::Me, &folder).await.unwrap().id,
        created.id
    );
    let file = folder.join("a+b&c=d.txt").unwrap();
    client
        .put_small(&Drive::Me, &file, b"x".to_vec(), Conflict::Fail)
        .await
        .unwrap();
    assert_eq!(
        mock.file("drive-me", "Exports/site #1/100% done/ü ñ/a+b&c=d.txt")
            .as_deref(),
        Some(&b"x"[..])
    );
    let children = client
        .list_children(&Drive::Me, &ItemRef::Id(created.id))
        .await
        .unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].name, "a+b&c=d.txt");
    // A file where a folder is needed is an error, not a silent overwrite.
    let err = client
        .ensure_folder(&Drive::Me, &file.join("sub").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    mock.assert_clean();
}

#[tokio::test]
async fn children_are_listed_across_pages() {
    let mock = MockGraph::start().await;
    mock.with(|s| s.page_size = 2);
    for i in 0..5 {
        mock.put_file("drive-me", &format!("many/f{i}"), b"1");
    }
    let dir = tempfile::tempdir().unwrap();
    let client = connect(&mock, dir.path()).await;
    let mut names: Vec<String> = client
        .list_children(&Drive::Me, &ItemRef::Path(path("many")))
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    names.sort();
    assert_eq!(names, ["f0", "f1", "f2", "f3", "f4"]);
    mock.assert_clean();
}

#[tokio::test]
async fn conflict_behaviour_fail_replace_rename() {
    let mock = MockGraph::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = connect(&mock, dir.path()).await;
    let local = dir.path().join("big.bin");
    let content = data(3 * UNIT as usize + 10, 1);
    std::fs::write(&local, &content).unwrap();
    mock.put_file("drive-me", "c/small.txt", b"old");
    mock.put_file("drive-me", "c/big.bin", b"old");
    let small = path("c/small.txt");
    let err = client
        .put_small(&Drive::Me, &small, b"new".to_vec(), Conflict::Fail)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    let err = client
        .upload_file(&Drive::Me, &path("c/big.bin"), &local)
        .with_conflict(Conflict::Fail)
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    assert_eq!(
        mock.file("drive-me", "c/big.bin").as_deref(),
        Some(&b"old"[..])
    );

    let renamed = client
        .put_small(&Drive::Me, &small, b"new".to_vec(), Conflict::Rename)
        .await
        .unwrap();
    assert_eq!(renamed.name, "small 1.txt");
    let renamed = client
        .upload_file(&Drive::Me, &path("c/big.bin"), &local)
        .with_conflict(Conflict::Rename)
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.name, "big 1.bin");
    assert_eq!(mock.file("drive-me", "c/big 1.bin").unwrap(), content);

    client
        .put_small(&Drive::Me, &small, b"new".to_vec(), Conflict::Replace)
        .await
        .unwrap();
    assert_eq!(
        mock.file("drive-me", "c/small.txt").as_deref(),
        Some(&b"new"[..])
    );
    client
        .upload_file(&Drive::Me, &path("c/big.bin"), &local)
        .send()
        .await
        .unwrap();
    assert_eq!(mock.file("drive-me", "c/big.bin").unwrap(), content);
    let folder = client
        .create_folder(
            &Drive::Me,
            &ItemRef::Path(path("c")),
            "small.txt",
            Conflict::Rename,
        )
        .await
        .unwrap();
    assert_eq!(folder.name, "small 2.txt");
    mock.assert_clean();
}

#[tokio::test]
async fn zero_byte_and_small_files_go_in_one_put_and_are_verified() {
    let mock = MockGraph::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = connect(&mock, dir.path()).await;
    for (name, len) in [("empty", 0usize), ("one", 1), ("unit", UNIT as usize)] {
        let local = dir.path().join(name);
        std::fs::write(&local, data(len, 2)).unwrap();
        let item = client
            .upload_file(&Drive::Me, &path(name), &local)
            .send()
            .await
            .unwrap();
        assert_eq!(item.size, len as u64);
        assert_eq!(mock.file("drive-me", name).unwrap(), data(len, 2));
    }
    assert_eq!(
        mock.with(|s| s.sessions_created),
        0,
        "small files never open a session"
    );
    // A hash that does not match what the server reports fails the upload.
    let local = dir.path().join("one");
    let err = client
        .upload_file(&Drive::Me, &path("one"), &local)
        .with_known_hash(1, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into())
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::VerificationFailed { .. }), "{err}");
    mock.assert_clean();
}

async fn session_upload(
    mock: &MockGraph,
    client: &OneDriveClient,
    dir: &Path,
    len: usize,
) -> Vec<u8> {
    let local = dir.join("session.bin");
    let content = data(len, len as u64);
    std::fs::write(&local, &content).unwrap();
    let item = client
        .upload_file(&Drive::Me, &path("s/session.bin"), &local)
        .send()
        .await
        .unwrap();
    assert_eq!(item.size, len as u64);
    assert_eq!(
        item.quick_xor_hash.as_deref(),
        Some(server_quickxor(&content).as_str())
    );
    assert_eq!(
        mock.file("drive-me", "s/session.bin").unwrap(),
        content,
        "final file identical"
    );
    assert!(
        mock.overlapping_accepted_ranges().is_empty(),
        "acknowledged ranges sent again"
    );
    content
}

#[tokio::test]
async fn sessions_send_aligned_fragments_in_order_without_authorization() {
    let mock = MockGraph::start().await;
    mock.put_file("drive-me", "s/keep", b"");
    let dir = tempfile::tempdir().unwrap();
    let client = connect(&mock, dir.path()).await;
    session_upload(&mock, &client, dir.path(), 7 * UNIT as usize + 1234).await;
    let (fragments, uploads_with_auth) = mock.with(|s| {
        (
            s.fragments.clone(),
            s.requests
                .iter()
                .filter(|(_, p, auth)| p.starts_with("/upload/") && *auth)
                .count(),
        )
    });
    assert_eq!(fragments.len(), 8);
    assert_eq!(uploads_with_auth, 0);
    for (i, f) in fragments.iter().enumerate() {
        assert_eq!(f.start, i as u64 * UNIT);
    }
    // A larger fragment size is a multiple of 320 KiB; a bad one is refused at build time.
    assert!(
        builder(&mock, dir.path())
            .with_fragment_size(UNIT + 1)
            .build()
            .is_err()
    );
    assert!(
        builder(&mock, dir.path())
            .with_fragment_size(192 * UNIT)
            .build()
            .is_err()
    );
    mock.assert_clean();
}

#[tokio::test]
async fn throttling_honours_retry_after_on_api_and_upload_urls() {
    let mock = MockGraph::start().await;
    mock.put_file("drive-me", "s/keep", b"");
    let dir = tempfile::tempdir().unwrap();
    let client = connect(&mock, dir.path()).await;
    mock.with(|s| {
        s.throttle.push((Target::Api, 429, 1));
        s.throttle.push((Target::Upload, 503, 1));
    });
    let started = Instant::now();
    session_upload(&mock, &client, dir.path(), 3 * UNIT as usize).await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "both Retry-After waits honoured"
    );
    assert_eq!(mock.with(|s| s.throttled), 2);
    // Other transient failures (500, 502, 504) are retried with backoff.
    mock.with(|s| {
        s.throttle.push((Target::Api, 500, 0));
        s.throttle.push((Target::Api, 502, 0));
        s.throttle.push((Target::Api, 504, 0));
    });
    assert!(
        client
            .get_item(&Drive::Me, &ItemRef::Path(RemotePath::root()))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(mock.with(|s| s.throttled), 5);
    // A Retry-After beyond the policy's limit fails instead of hanging.
    let strict = builder(&mock, dir.path())
        .with_retry(RetryPolicy::default().with_max_retry_after(Duration::from_secs(5)))
        .build()
        .unwrap();
    mock.with(|s| s.throttle.push((Target::Api, 429, 3600)));
    let err = strict
        .get_item(&Drive::Me, &ItemRef::Path(RemotePath::root()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Api { status: 429, .. }), "{err}");
    mock.assert_clean();
}

#[tokio::test]
async fn connections_cut_mid_fragment_resume_from_next_expected_ranges() {
    let mock = MockGraph::start().await;
    mock.put_file("drive-me", "s/keep", b"");
    let dir = tempfile::tempdir().unwrap();
    let client = connect(&mock, dir.path()).await;
    mock.with(|s| {
        s.cut_fragments = 2;
        s.fail_fragments = 1;
    });
    let content_len = 6 * UNIT as usize + 77;
    session_upload(&mock, &client, dir.path(), content_len).await;
    let (cuts, repeats, accepted, created) =
        mock.with(|s| (s.cuts, s.repeats, s.bytes_accepted, s.sessions_created));
    assert_eq!(cuts, 2);
    assert_eq!(repeats, 0, "no acknowledged range was sent again");
    assert_eq!(accepted, content_len as u64, "each byte accepted once");
    assert_eq!(created, 1, "the same session carried on");
    mock.assert_clean();
}

#[tokio::test]
async fn a_lost_or_expired_session_is_replaced_by_a_new_one() {
    let mock = MockGraph::start().await;
    mock.put_file("drive-me", "s/keep", b"");
    let dir = tempfile::tempdir().unwrap();
    let client = connect(&mock, dir.path()).await;
    mock.with(|s| s.forget_sessions_after_fragments = Some(2));
    session_upload(&mock, &client, dir.path(), 4 * UNIT as usize).await;
    assert_eq!(mock.with(|s| s.sessions_created), 2);

    let mock = MockGraph::start().await;
    mock.put_file("drive-me", "s/keep", b"");
    let dir = tempfile::tempdir().unwrap();
    let second = connect(&mock, dir.path()).await;
    mock.with(|s| s.expire_after_fragments = Some(3));
    session_upload(&mock, &second, dir.path(), 5 * UNIT as usize).await;
    assert_eq!(mock.with(|s| s.sessions_created), 2);
    mock.assert_clean();
}

#[tokio::test]
async fn a_persisted_session_resumes_after_a_crash_without_resending() {
    let mock = MockGraph::start().await;
    mock.put_file("drive-me", "s/keep", b"");
    mock.with(|s| s.fragment_delay = Duration::from_millis(30));
    let dir = tempfile::tempdir().unwrap();
    let client = connect(&mock, dir.path()).await;
    let local = dir.path().join("crash.bin");
    let content = data(10 * UNIT as usize + 5, 9);
    std::fs::write(&local, &content).unwrap();
    let record = dir.path().join("session.json");
    let task = {
        let (client, local, record) = (client.clone(), local.clone(), record.clone());
        tokio::spawn(async move {
            client
                .upload_file(&Drive::Me, &path("s/crash.bin"), &local)
                .with_session_file(&record)
                .send()
                .await
        })
    };
    while mock.with(|s| s.fragments.len()) < 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    task.abort(); // the "crash": no cleanup code runs
    let _ = task.await;
    let sent_before = mock.with(|s| s.bytes_accepted);
    assert!(sent_before >= 4 * UNIT && sent_before < content.len() as u64);
    assert_eq!(
        std::fs::metadata(&record).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!std::fs::read_to_string(&record).unwrap().is_empty());

    client
        .upload_file(&Drive::Me, &path("s/crash.bin"), &local)
        .with_session_file(&record)
        .send()
        .await
        .unwrap();
    assert_eq!(mock.file("drive-me", "s/crash.bin").unwrap(), content);
    let (accepted, created, repeats) =
        mock.with(|s| (s.bytes_accepted, s.sessions_created, s.repeats));
    assert_eq!(created, 1, "the persisted session was resumed");
    assert_eq!(
        accepted,
        content.len() as u64,
        "acknowledged bytes were not sent again"
    );
    assert_eq!(repeats, 0);
    assert!(mock.overlapping_accepted_ranges().is_empty());
    assert!(!record.exists(), "the record is removed once done");
    mock.assert_clean();
}

#[tokio::test]
async fn abort_cancels_the_session() {
    let mock = MockGraph::start().await;
    mock.put_file("drive-me", "s/keep", b"");
    let dir = tempfile::tempdir().unwrap();
    let client = connect(&mock, dir.path()).await;
    let local = dir.path().join("abort.bin");
    std::fs::write(&local, data(6 * UNIT as usize, 4)).unwrap();
    let abort = AbortHandle::new();
    let seen = Arc::new(AtomicU64::new(0));
    let (a2, s2) = (abort.clone(), seen.clone());
    let record = dir.path().join("abort.json");
    let err = client
        .upload_file(&Drive::Me, &path("s/abort.bin"), &local)
        .with_session_file(&record)
        .with_abort(abort)
        .with_progress(Arc::new(move |done| {
            s2.store(done, Ordering::SeqCst);
            if done >= 2 * UNIT {
                a2.abort();
            }
        }))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Aborted), "{err}");
    assert_eq!(
        mock.with(|s| (s.sessions_deleted, s.sessions.len())),
        (1, 0)
    );
    assert!(mock.file("drive-me", "s/abort.bin").is_none());
    assert!(!record.exists());
    mock.assert_clean();
}

#[test]
fn names_onedrive_refuses_are_mapped_reversibly_or_refused() {
    let bad = [
        "a:b",
        "what?",
        "x*y",
        "<tag>",
        "pipe|",
        "quote\"",
        "back\\slash",
        " lead",
        "trail ",
        "dot.",
        "CON",
        "con.txt",
        "Lpt1",
        "COM9.log",
        "AUX",
        ".lock",
        "desktop.ini",
        "_vti_cnf",
        "50% off",
        "%41",
    ];
    for name in bad {
        let mapped = map_name(name, NamePolicy::Map).unwrap();
        assert_eq!(name_problem(&mapped), None, "{name} -> {mapped}");
        assert_eq!(
            unmap_name(&mapped).as_deref(),
            Some(name),
            "{name} -> {mapped}"
        );
        if name.contains('%') {
            continue; // `%` is allowed by OneDrive; only the mapping escapes it
        }
        let err = map_name(name, NamePolicy::Refuse).unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{name}: {err}");
    }
    for good in ["index.php", "con-fig", "COM", "lpt", "a.lock", ". hidden"] {
        assert_eq!(map_name(good, NamePolicy::Refuse).unwrap(), good);
    }
    // Not-UTF-8 names map reversibly too.
    use std::os::unix::ffi::OsStrExt;
    let raw = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    let mapped = onedrive::map_os_name(raw, NamePolicy::Map).unwrap();
    assert_eq!(onedrive::unmap_name_bytes(&mapped).unwrap(), b"caf\xe9.txt");
    assert!(onedrive::map_os_name(raw, NamePolicy::Refuse).is_err());
    // Path length cannot be mapped away.
    let long = "d".repeat(200);
    let err = RemotePath::parse(&format!("{long}/{long}")).unwrap_err();
    assert!(
        err.to_string().contains("400") || err.to_string().contains("399"),
        "{err}"
    );
}

#[tokio::test]
async fn https_with_rustls_trusts_a_given_root_and_nothing_else() {
    let mock = MockGraph::start_tls().await;
    assert!(mock.graph_url().starts_with("https://"));
    let dir = tempfile::tempdir().unwrap();
    let client = builder(&mock, dir.path())
        .with_root_certificate_der(MockGraph::TLS_CERT)
        .build()
        .unwrap();
    login(&mock, &client).await;
    let local = dir.path().join("tls.bin");
    let content = data(2 * UNIT as usize + 5, 31);
    std::fs::write(&local, &content).unwrap();
    client
        .upload_file(&Drive::Me, &path("tls.bin"), &local)
        .send()
        .await
        .unwrap();
    assert_eq!(mock.file("drive-me", "tls.bin").unwrap(), content);

    // Without the root the handshake fails: an error, never a silent fallback to plain HTTP.
    let untrusting = builder(&mock, dir.path())
        .with_retry(RetryPolicy::default().with_max_attempts(1))
        .build()
        .unwrap();
    let err = untrusting
        .get_item(&Drive::Me, &ItemRef::Path(RemotePath::root()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err}");
    assert!(
        builder(&mock, dir.path())
            .with_root_certificate_der(b"not DER".to_vec())
            .build()
            .is_err()
    );
    mock.assert_clean();
}
