//! `logban-regex` end to end: a stock filter over a small log, text and `--json` output.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_logban-regex");

const LOG: &str = "\
Mar  1 00:00:00 web1 sshd[3233]: Invalid user root from 61.243.232.105 port 39070
Mar  1 00:00:01 web1 kernel: [UFW BLOCK] IN=eth0 OUT= SRC=141.217.75.8 DST=192.0.2.10
Mar  1 00:00:02 web1 sshd[4000]: Failed password for invalid user 203.0.113.66 from 192.0.2.45 port 22 ssh2
Mar  1 00:00:03 web1 sshd[4001]: Invalid user x from evil.example.com port 1
";

/// The `--json` rows of a successful run.
fn json_rows(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn prints_failures_totals_and_json() {
    let Some(dir) = test_support::require_env("FAIL2BAN_FILTER_DIR", "fail2ban's filter.d") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let log = tmp.path().join("auth.log");
    std::fs::write(&log, LOG).expect("log");

    let out = Command::new(BIN)
        .args(["--json", "--all", "--filter-dir", &dir])
        .arg(&log)
        .arg("sshd[mode=aggressive]")
        .output()
        .expect("runs");
    let rows = json_rows(&out);
    let failures: Vec<&str> = rows
        .iter()
        .filter(|r| r["failure"] == true)
        .filter_map(|r| r["addr"].as_str())
        .collect();
    assert_eq!(failures, ["61.243.232.105", "192.0.2.45"]);
    // The host name matched but is reported, not a failure.
    assert!(
        rows.iter()
            .any(|r| r["id"] == "evil.example.com" && r["failure"] == false)
    );
    let summary = &rows.last().expect("summary")["summary"];
    assert_eq!(summary["lines"], 4);
    assert_eq!(summary["failures"], 2);

    let text = Command::new(BIN)
        .args(["--filter-dir", &dir])
        .arg(&log)
        .arg("sshd")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("Lines: 4 lines"), "{text}");
    assert!(text.contains("Failregex: 3 total"), "{text}");

    let bad = Command::new(BIN)
        .args(["--filter-dir", &dir, "-", "no-such-filter"])
        .output()
        .expect("runs");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no-such-filter"));
}

/// A filter file written for the test (no stock filter needed).
fn custom_filter(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("custom.conf");
    std::fs::write(&path, body).expect("filter");
    path
}

#[test]
fn missing_files_and_directories_are_errors_not_log_lines() {
    let tmp = tempfile::tempdir().expect("tmp");
    let filter = custom_filter(tmp.path(), "[Definition]\nfailregex = ^bad <HOST>$\n");
    for (log, says) in [
        (tmp.path().join("nope.log"), "no such log file"),
        (tmp.path().to_path_buf(), "is a directory"),
    ] {
        let out = Command::new(BIN)
            .arg(&log)
            .arg(&filter)
            .output()
            .expect("runs");
        assert!(!out.status.success(), "{}", log.display());
        assert!(String::from_utf8_lossy(&out.stderr).contains(says));
    }
    // A line with spaces is still a log line.
    let out = Command::new(BIN)
        .args(["--json", "bad 192.0.2.1"])
        .arg(&filter)
        .output()
        .expect("runs");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#""without_timestamp":1"#));
}

/// Comment lines of a sample log stay out of multi-line buffers (fail2ban-regex skips them), and
/// matches without a timestamp are reported as such, not as ids that are not addresses.
#[test]
fn comment_lines_are_skipped_and_undated_matches_are_named() {
    let tmp = tempfile::tempdir().expect("tmp");
    let filter = custom_filter(
        tmp.path(),
        "[Definition]\nfailregex = ^\\s*login begin\\n\\s*login from <HOST> failed$\nmaxlines = 2\n",
    );
    let log = tmp.path().join("sample.log");
    std::fs::write(
        &log,
        "# failJSON: { \"match\": true }\n\
         2026-03-01 10:00:00 login begin\n\
         # failJSON: a comment between the two lines of one failure\n\
         2026-03-01 10:00:01 login from 192.0.2.8 failed\n\
         login begin\n\
         login from 192.0.2.9 failed\n",
    )
    .expect("log");
    let out = Command::new(BIN)
        .arg(&log)
        .arg(&filter)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("192.0.2.8"), "{text}");
    assert!(text.contains("Lines: 4 lines"), "{text}");
    assert!(
        text.contains("Failures: 1 with a valid address; 0 matched ids"),
        "{text}"
    );
    assert!(text.contains("Matched without a timestamp: 1"), "{text}");
}

/// `--logtimezone` (fail2ban's `logtimezone`) sets the zone of log times that carry none.
#[test]
fn logtimezone_sets_the_zone_of_zoneless_times() {
    let tmp = tempfile::tempdir().expect("tmp");
    let filter = custom_filter(tmp.path(), "[Definition]\nfailregex = ^\\s*bad <HOST>$\n");
    let time = |zone: &str| -> f64 {
        let out = Command::new(BIN)
            .args([
                "--json",
                "--logtimezone",
                zone,
                "2026-03-01 10:00:00 bad 192.0.2.1",
            ])
            .arg(&filter)
            .output()
            .expect("runs");
        json_rows(&out)[0]["time"].as_f64().expect("time")
    };
    assert_eq!(time("UTC"), 1_772_359_200.0, "2026-03-01T10:00:00Z");
    assert_eq!(time("UTC+0200"), 1_772_352_000.0);
    assert_eq!(time("Europe/Paris"), 1_772_355_600.0, "CET in March");
    let bad = Command::new(BIN)
        .args(["--logtimezone", "Mars/Olympus", "x y"])
        .arg(&filter)
        .output()
        .expect("runs");
    assert!(!bad.status.success());
}

/// A failregex that needs the backtracking engine (a lookahead): a 200 KB line it can decide in
/// a few steps a byte matches (the budget grows with the line); a line on which it needs steps
/// quadratic in the length (20,000 starts, each running to the end of the line) gives up and is
/// reported as undecided (text and JSON), not silently missed; short lines still match.
#[test]
fn lines_a_failregex_gave_up_on_are_reported() {
    let tmp = tempfile::tempdir().expect("tmp");
    let filter = custom_filter(
        tmp.path(),
        "[Definition]\nfailregex = Failed for (?:(?! from ).)*? from <HOST>$\n",
    );
    let log = tmp.path().join("long.log");
    std::fs::write(
        &log,
        format!(
            "1700000000 Failed for short from 192.0.2.1\n1700000001 Failed for {} from 192.0.2.2\n1700000002 {}x from from 192.0.2.3\n",
            "y".repeat(200_000),
            "Failed for ".repeat(20_000)
        ),
    )
    .expect("log");
    let out = Command::new(BIN)
        .arg("--json")
        .arg(&log)
        .arg(&filter)
        .output()
        .expect("runs");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(r#""undecided":1"#), "{stdout}");
    assert!(stdout.contains(r#""failures":2"#), "{stdout}");
    let out = Command::new(BIN)
        .arg(&log)
        .arg(&filter)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Undecided: 1 lines"), "{stdout}");
}
