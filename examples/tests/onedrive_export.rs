//! `onedrive-export` end to end against the onedrive crate's mock Graph server: the login step
//! (redirect address pasted on stdin), a dry run, an export, an unchanged re-run, and status.

#[allow(missing_docs)]
#[path = "../../crates/onedrive/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn tool() -> Command {
    Command::new(env!("CARGO_BIN_EXE_onedrive-export"))
}

/// The tool, signed in through `token` and pointed at the mock.
fn authed(mock: &common::MockGraph, token: &Path) -> Command {
    let mut cmd = tool();
    cmd.args(["--client-id", common::CLIENT_ID, "--token-file"])
        .arg(token)
        .args([
            "--graph-url",
            &mock.graph_url(),
            "--token-url",
            &mock.token_url(),
        ]);
    cmd
}

fn run(mock: &common::MockGraph, token: &Path, args: &[&str]) -> Output {
    let out = authed(mock, token)
        .args(args)
        .output()
        .expect("run onedrive-export");
    assert!(
        out.status.success(),
        "onedrive-export {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn login_export_dry_run_and_status() {
    let mock = common::MockGraph::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token.json");

    // login: read the URL it prints, play the browser, paste the redirect address back.
    let mut child = tool()
        .args(["--client-id", common::CLIENT_ID, "--token-file"])
        .arg(&token)
        .args(["--token-url", &mock.token_url(), "login"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = url::Url::parse(line.trim()).expect("login prints the sign-in URL");
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    mock.with(|s| {
        s.codes
            .insert("the-code".into(), query["code_challenge"].clone())
    });
    writeln!(
        child.stdin.take().unwrap(),
        "http://localhost/?code=the-code&state={}",
        query["state"]
    )
    .unwrap();
    assert!(child.wait().unwrap().success(), "login succeeds");
    assert!(token.exists());

    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("wp-content")).unwrap();
    std::fs::write(site.join("index.php"), b"<?php").unwrap();
    std::fs::write(site.join("wp-content/big.bin"), common::data(3 << 20, 1)).unwrap();
    let state = dir.path().join("state");
    let export = |extra: &[&str]| {
        let mut args = vec![
            "export",
            "--quiet",
            "--dir",
            site.to_str().unwrap(),
            "--to",
            "Exports/site",
            "--state-dir",
            state.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        String::from_utf8(run(&mock, &token, &args).stdout).unwrap()
    };
    let dry = export(&["--dry-run"]);
    assert!(
        dry.contains("upload index.php") && dry.contains("upload wp-content/big.bin"),
        "{dry}"
    );
    assert!(
        mock.files_under("drive-me", "Exports").is_empty(),
        "a dry run uploads nothing"
    );

    let done = export(&[]);
    assert!(done.contains("done: 2 files"), "{done}");
    assert_eq!(
        mock.file("drive-me", "Exports/site/wp-content/big.bin")
            .unwrap(),
        common::data(3 << 20, 1)
    );
    let again = export(&[]);
    assert!(
        again.contains("0 files") && again.contains("2 unchanged"),
        "{again}"
    );

    let status =
        String::from_utf8(run(&mock, &token, &["status", "--to", "Exports/site"]).stdout).unwrap();
    assert!(
        status.contains("2 files") && status.contains("verified (size and quickXorHash): 2"),
        "{status}"
    );
    // A changed remote file makes status fail, naming it.
    mock.put_file("drive-me", "Exports/site/index.php", b"tampered");
    let out = authed(&mock, &token)
        .args(["status", "--to", "Exports/site"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("changed: index.php"));

    // From a backup snapshot (made by the `backup` tool) instead of a directory.
    let repo = dir.path().join("repo");
    for args in [vec!["init"], vec!["backup", site.to_str().unwrap()]] {
        let out = Command::new(env!("CARGO_BIN_EXE_backup"))
            .arg("--repo")
            .arg(&repo)
            .args(&args)
            .env("BACKUP_PASSWORD", "pw")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "backup {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = authed(&mock, &token)
        .args([
            "export",
            "--quiet",
            "--repo",
            repo.to_str().unwrap(),
            "--snapshot",
            "latest",
        ])
        .args([
            "--sub-path",
            "site/wp-content",
            "--to",
            "Exports/snap",
            "--state-dir",
        ])
        .arg(dir.path().join("state-snap"))
        .env("BACKUP_PASSWORD", "pw")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        mock.file("drive-me", "Exports/snap/site/wp-content/big.bin")
            .unwrap(),
        common::data(3 << 20, 1)
    );
    assert!(
        mock.file("drive-me", "Exports/snap/site/index.php")
            .is_none(),
        "--sub-path limits the export"
    );
    mock.assert_clean();
}
