//! Exports against the mock Graph server: a directory tree, incremental runs, the manifest, name
//! mapping, dry runs, age encryption read back by the real `age` CLI, and a process killed
//! mid-export then resumed.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{MockGraph, UNIT, data, server_quickxor};
use onedrive::{
    DirectorySource, Drive, Error, ExportEvent, ExportJob, FileAction, MANIFEST_NAME, Manifest,
    NamePolicy, OneDriveClient, RemotePath,
};

fn client_for(graph_url: &str, token_url: &str, token_file: &Path) -> OneDriveClient {
    common::client_builder(graph_url, token_url, token_file)
        .build()
        .unwrap()
}

async fn logged_in(mock: &MockGraph, token_file: &Path) -> OneDriveClient {
    let client = client_for(&mock.graph_url(), &mock.token_url(), token_file);
    common::login(mock, &client).await;
    client
}

/// A mock, a logged-in client, and a temporary directory holding the token and `site/`.
async fn setup() -> (MockGraph, tempfile::TempDir, OneDriveClient, PathBuf) {
    let mock = MockGraph::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = logged_in(&mock, &dir.path().join("token.json")).await;
    let source = dir.path().join("site");
    (mock, dir, client, source)
}

/// Writes `files` under `root`; returns them by relative path.
fn tree(root: &Path, files: &[(&str, Vec<u8>)]) -> HashMap<String, Vec<u8>> {
    for (rel, content) in files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    files
        .iter()
        .map(|(p, c)| (p.to_string(), c.clone()))
        .collect()
}

fn job(client: &OneDriveClient, source: &Path, state: &Path) -> onedrive::ExportJobBuilder {
    ExportJob::builder(
        client.clone(),
        Drive::Me,
        RemotePath::parse("Exports/site").unwrap(),
        Arc::new(DirectorySource::new(source)),
    )
    .with_state_dir(state)
    .with_concurrency(3)
}

fn manifest(mock: &MockGraph) -> Manifest {
    let bytes = mock
        .file("drive-me", &format!("Exports/site/{MANIFEST_NAME}"))
        .expect("manifest uploaded");
    serde_json::from_slice(&bytes).expect("manifest parses")
}

fn uploads(mock: &MockGraph) -> usize {
    mock.with(|s| {
        s.requests
            .iter()
            .filter(|(m, p, _)| {
                (m == "PUT" && p.ends_with(":/content")) || p.ends_with("createUploadSession")
            })
            .count()
    })
}

#[tokio::test]
async fn directory_export_is_complete_incremental_and_listed_in_the_manifest() {
    let (mock, dir, client, source) = setup().await;
    let files = tree(
        &source,
        &[
            ("index.php", b"<?php echo 1;".to_vec()),
            ("empty.txt", Vec::new()),
            ("uploads/2026/photo.jpg", data(5 * UNIT as usize + 3, 1)),
            ("uploads/2026/doc.pdf", data(2 * UNIT as usize, 2)),
            ("db/dump.sql", data(UNIT as usize - 1, 3)),
        ],
    );
    let events = Arc::new(Mutex::new(Vec::new()));
    let e2 = events.clone();
    let summary = job(&client, &source, &dir.path().join("state"))
        .with_progress(Arc::new(move |event| e2.lock().unwrap().push(event)))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!((summary.uploaded, summary.skipped), (5, 0));
    for private in ["state", "state/sessions", "state/spool"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(private))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{private} is private");
    }
    let mut remote = mock.files_under("drive-me", "Exports/site");
    remote.remove(MANIFEST_NAME).expect("manifest present");
    assert_eq!(remote, files);
    let listed = manifest(&mock);
    assert!(!listed.encrypted);
    assert_eq!(listed.files.len(), 5);
    for entry in &listed.files {
        let content = &files[&entry.path];
        assert_eq!(entry.size, content.len() as u64, "{}", entry.path);
        assert_eq!(
            entry.quick_xor_hash,
            server_quickxor(content),
            "{}",
            entry.path
        );
        assert_eq!(entry.remote_path, entry.path);
    }
    {
        let events = events.lock().unwrap();
        assert!(matches!(
            events.first(),
            Some(ExportEvent::Listed { files: 5, .. })
        ));
        let done = events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    ExportEvent::FileDone {
                        action: FileAction::Upload,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(done, 5);
    }

    // Unchanged: everything is skipped, nothing is sent but the manifest.
    let before = uploads(&mock);
    let summary = job(&client, &source, &dir.path().join("state"))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!((summary.uploaded, summary.skipped), (0, 5));
    assert_eq!(uploads(&mock) - before, 1, "only the manifest is rewritten");

    // One file changed (same size): only it goes up.
    std::fs::write(source.join("db/dump.sql"), data(UNIT as usize - 1, 4)).unwrap();
    let planned = job(&client, &source, &dir.path().join("state"))
        .build()
        .unwrap()
        .plan()
        .await
        .unwrap();
    assert_eq!((planned.uploaded, planned.skipped), (1, 4));
    assert!(
        planned
            .files
            .contains(&("db/dump.sql".to_string(), FileAction::Upload))
    );
    let before = uploads(&mock);
    job(&client, &source, &dir.path().join("state"))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert_eq!(uploads(&mock) - before, 2);
    assert_eq!(
        mock.file("drive-me", "Exports/site/db/dump.sql").unwrap(),
        data(UNIT as usize - 1, 4)
    );
    mock.assert_clean();
}

#[tokio::test]
async fn a_dry_run_uploads_nothing() {
    let (mock, dir, client, source) = setup().await;
    tree(
        &source,
        &[("a", b"1".to_vec()), ("b/c", data(3 * UNIT as usize, 5))],
    );
    let summary = job(&client, &source, &dir.path().join("state"))
        .build()
        .unwrap()
        .plan()
        .await
        .unwrap();
    assert_eq!(
        (summary.uploaded, summary.skipped, summary.bytes_uploaded),
        (2, 0, 1 + 3 * UNIT)
    );
    assert_eq!(uploads(&mock), 0);
    assert!(mock.files_under("drive-me", "Exports").is_empty());
    mock.assert_clean();
}

#[tokio::test]
async fn names_onedrive_refuses_are_refused_or_mapped() {
    let (mock, dir, client, source) = setup().await;
    tree(
        &source,
        &[
            ("ok.txt", b"1".to_vec()),
            ("bad:name?.txt", b"2".to_vec()),
            ("CON/trail.", b"3".to_vec()),
        ],
    );
    let err = job(&client, &source, &dir.path().join("s1"))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    match err {
        Error::InvalidName { path, reason } => {
            assert!(
                path.contains("bad:name?.txt") || path.contains("CON"),
                "{path}"
            );
            assert!(!reason.is_empty());
        }
        other => panic!("expected InvalidName, got {other}"),
    }
    assert_eq!(
        uploads(&mock),
        0,
        "nothing is uploaded when a name is refused"
    );

    job(&client, &source, &dir.path().join("s2"))
        .with_name_policy(NamePolicy::Map)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let remote = mock.files_under("drive-me", "Exports/site");
    assert_eq!(remote["bad%3Aname%3F.txt"], b"2");
    assert_eq!(remote["%43ON/trail%2E"], b"3");
    let listed = manifest(&mock);
    let entry = listed
        .files
        .iter()
        .find(|e| e.path == "bad:name?.txt")
        .unwrap();
    assert_eq!(entry.remote_path, "bad%3Aname%3F.txt");
    assert_eq!(
        onedrive::unmap_name(&entry.remote_path).unwrap(),
        entry.path
    );
    mock.assert_clean();
}

#[tokio::test]
async fn encrypted_exports_decrypt_with_the_age_cli() {
    let (Some(age), Some(keygen)) = (
        test_support::require_program("age"),
        test_support::require_program("age-keygen"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("customer.key");
    let out = Command::new(&keygen).arg("-o").arg(&key).output().unwrap();
    assert!(out.status.success());
    let recipient = String::from_utf8(out.stderr)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Public key: ").map(str::to_owned))
        .expect("age-keygen prints the recipient");

    let mock = MockGraph::start().await;
    let client = logged_in(&mock, &dir.path().join("token.json")).await;
    let source = dir.path().join("site");
    let files = tree(
        &source,
        &[
            ("wp-config.php", b"define('DB_PASSWORD', 'x');".to_vec()),
            ("empty", Vec::new()),
            ("big/archive.tar", data(3 * UNIT as usize + 11, 6)),
        ],
    );
    let build = || {
        job(&client, &source, &dir.path().join("state"))
            .with_age_recipient(&recipient)
            .build()
            .unwrap()
    };
    let summary = build().run().await.unwrap();
    assert_eq!(summary.uploaded, 3);
    let remote = mock.files_under("drive-me", "Exports/site");
    for (rel, content) in &files {
        let encrypted = &remote[&format!("{rel}.age")];
        assert!(
            encrypted.starts_with(b"age-encryption.org/v1\n"),
            "{rel} is an age file"
        );
        let file = dir.path().join("download.age");
        std::fs::write(&file, encrypted).unwrap();
        let out = Command::new(&age)
            .arg("-d")
            .arg("-i")
            .arg(&key)
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "age -d {rel}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(&out.stdout, content, "{rel} decrypts to the original");
    }
    let listed = manifest(&mock);
    assert!(listed.encrypted);
    for entry in &listed.files {
        assert_eq!(entry.quick_xor_hash, server_quickxor(&files[&entry.path]));
        assert_eq!(
            entry.remote_quick_xor_hash,
            server_quickxor(&remote[&entry.remote_path])
        );
    }
    // Unchanged plain files are not re-encrypted and re-sent.
    let before = uploads(&mock);
    let summary = build().run().await.unwrap();
    assert_eq!((summary.uploaded, summary.skipped), (0, 3));
    assert_eq!(uploads(&mock) - before, 1);
    // A bad recipient is a configuration error.
    let err = job(&client, &source, &dir.path().join("state"))
        .with_age_recipient("age1notakey")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
    mock.assert_clean();
}

#[tokio::test]
async fn directory_source_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let files = tree(
        dir.path(),
        &[
            ("a", b"1".to_vec()),
            ("d/e/f", data(1000, 7)),
            ("d/empty", Vec::new()),
        ],
    );
    std::os::unix::fs::symlink("a", dir.path().join("link")).unwrap();
    let expected: Vec<(PathBuf, Vec<u8>)> = files
        .into_iter()
        .map(|(p, c)| (PathBuf::from(p), c))
        .collect();
    onedrive::conformance::run(&DirectorySource::new(dir.path()), &expected).await;
}

const CHILD_ENV: &str = "ONEDRIVE_EXPORT_CHILD";

/// The child process of the kill test: runs an export configured through the environment.
#[tokio::test]
#[ignore = "entry point of the child process that export_killed_mid_way_resumes kills"]
async fn export_child_process() {
    let Ok(config) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = config.split('\n').collect();
    let [graph, token_url, token_file, source, state] = parts[..] else {
        panic!("bad child config")
    };
    let client = client_for(graph, token_url, Path::new(token_file));
    job(&client, Path::new(source), Path::new(state))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
}

#[tokio::test]
async fn export_killed_mid_way_resumes_without_resending() {
    let mock = MockGraph::start().await;
    mock.with(|s| s.fragment_delay = Duration::from_millis(60));
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token.json");
    let client = logged_in(&mock, &token_file).await;
    let source = dir.path().join("site");
    let files = tree(
        &source,
        &[
            ("a.bin", data(12 * UNIT as usize + 1, 11)),
            ("b.bin", data(12 * UNIT as usize, 12)),
            ("c/c.bin", data(9 * UNIT as usize + 500, 13)),
            ("small.txt", b"small".to_vec()),
        ],
    );
    let session_bytes: u64 = files
        .values()
        .filter(|c| c.len() as u64 > UNIT)
        .map(|c| c.len() as u64)
        .sum();
    let state = dir.path().join("state");
    let config = [
        mock.graph_url(),
        mock.token_url(),
        token_file.display().to_string(),
        source.display().to_string(),
        state.display().to_string(),
    ]
    .join("\n");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "export_child_process",
            "--nocapture",
        ])
        .env(CHILD_ENV, config)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once a good part, but not all, of the data is acknowledged.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let accepted = mock.with(|s| s.bytes_accepted);
        if accepted >= 10 * UNIT {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child finished before it could be killed"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the child made no progress"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL: no cleanup runs
    child.wait().unwrap();
    let before = mock.with(|s| s.bytes_accepted);
    assert!(before < session_bytes, "killed before the end");
    assert!(
        mock.file("drive-me", &format!("Exports/site/{MANIFEST_NAME}"))
            .is_none()
    );

    mock.with(|s| s.fragment_delay = Duration::ZERO);
    job(&client, &source, &state)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let mut remote = mock.files_under("drive-me", "Exports/site");
    remote.remove(MANIFEST_NAME).expect("manifest present");
    assert_eq!(remote, files, "final files identical");
    let (accepted, repeats) = mock.with(|s| (s.bytes_accepted, s.repeats));
    assert_eq!(accepted, session_bytes, "every byte accepted exactly once");
    assert_eq!(repeats, 0, "no acknowledged range was sent again");
    assert!(mock.overlapping_accepted_ranges().is_empty());
    assert_eq!(manifest(&mock).files.len(), 4);
    mock.assert_clean();
}

#[tokio::test]
async fn status_checks_the_folder_against_its_manifest() {
    let (mock, dir, client, source) = setup().await;
    tree(
        &source,
        &[
            ("a", b"1".to_vec()),
            ("b/c", data(2 * UNIT as usize, 8)),
            ("d", b"4".to_vec()),
        ],
    );
    let folder = RemotePath::parse("Exports/site").unwrap();
    let none = onedrive::export_status(&client, &Drive::Me, &folder)
        .await
        .unwrap();
    assert!(none.manifest.is_none());
    job(&client, &source, &dir.path().join("state"))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let status = onedrive::export_status(&client, &Drive::Me, &folder)
        .await
        .unwrap();
    assert_eq!(
        (
            status.verified,
            status.missing.len(),
            status.mismatched.len()
        ),
        (3, 0, 0)
    );
    // Someone edits one file and deletes another in the customer's drive.
    mock.put_file("drive-me", "Exports/site/b/c", b"edited");
    mock.with(|s| {
        let nodes = s.drives.get_mut("drive-me").unwrap();
        let id = nodes.values().find(|n| n.name == "d").unwrap().id.clone();
        nodes.remove(&id);
    });
    let status = onedrive::export_status(&client, &Drive::Me, &folder)
        .await
        .unwrap();
    assert_eq!(status.verified, 1);
    assert_eq!(status.mismatched, ["b/c"]);
    assert_eq!(status.missing, ["d"]);
    mock.assert_clean();
}
