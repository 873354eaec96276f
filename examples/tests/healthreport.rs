//! `healthreport` end to end: one-shot reports in every format with Nagios exit codes, a bad
//! configuration named by line and key, and periodic mode serving /metrics and the page.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_healthreport");

fn config(dir: &Path, open_port: u16, closed_port: u16) -> std::path::PathBuf {
    let status = dir.join("backup-status.json");
    std::fs::write(&status, "{}").unwrap();
    let path = dir.join("health.toml");
    std::fs::write(
        &path,
        format!(
            r#"host = "test-host"
timeout = "1s"

[[check]]
name = "open-port"
kind = "tcp"
address = "127.0.0.1:{open_port}"

[[check]]
name = "backup-status"
kind = "file"
path = "{}"
warn = "93600"

[[check]]
name = "memory"
kind = "memory"

[[check]]
name = "closed-port"
kind = "tcp"
address = "127.0.0.1:{closed_port}"
"#,
            status.display()
        ),
    )
    .unwrap();
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn one_shot_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = config(dir.path(), open.local_addr().unwrap().port(), closed_port());
    let cfg = cfg.to_str().unwrap();

    let out = run(&["-c", cfg, "--format", "nagios"]);
    let line = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(2), "{line}");
    assert!(
        line.starts_with("CRITICAL - 1 of 4 checks not OK: closed-port CRITICAL: "),
        "{line}"
    );
    assert!(line.contains("connection refused"), "{line}");
    assert!(line.contains(" | open-port.connect_seconds="), "{line}");
    assert_eq!(line.lines().count(), 1);

    let out = run(&["-c", cfg, "--format", "text", "--colour", "never"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("CRITICAL test-host: 4 checks in "),
        "{text}"
    );
    assert!(text.contains("OK       open-port      tcp"), "{text}");

    let out = run(&["-c", cfg, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["checks"][3]["reason"], "refused");
    assert_eq!(v["alerts"][0]["check"], "closed-port");

    let metrics = dir.path().join("health.prom");
    let out = run(&[
        "-c",
        cfg,
        "--format",
        "prometheus",
        "-o",
        metrics.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(prom.contains("healthcheck_status{host=\"test-host\",check=\"closed-port\",kind=\"tcp\",reason=\"refused\"} 2"), "{prom}");
    let out = run(&["-c", cfg, "--format", "openmetrics"]);
    assert!(String::from_utf8(out.stdout).unwrap().ends_with("# EOF\n"));
    let out = run(&["-c", cfg, "--format", "html"]);
    let html = String::from_utf8(out.stdout).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("closed-port"));
}

#[test]
fn bad_config_exits_unknown_naming_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[[check]]\nname = \"disk\"\nkind = \"disk\"\npath = \"/\"\nwarn = \"20:10\"\n",
    )
    .unwrap();
    let out = run(&["-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("line 5: key `warn`: `20:10`: start is greater than end"),
        "{err}"
    );
    // A failed write leaves an existing report alone.
    let report = dir.path().join("kept.prom");
    std::fs::write(&report, "old").unwrap();
    let out = run(&["-c", cfg.to_str().unwrap(), "-o", report.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(std::fs::read_to_string(&report).unwrap(), "old");
}

fn get(port: u16, path: &str, accept: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn periodic_mode_serves_metrics_and_page() {
    let dir = tempfile::tempdir().unwrap();
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = config(dir.path(), open.local_addr().unwrap().port(), closed_port());
    let port = closed_port();
    let mut child = Command::new(BIN)
        .args([
            "-c",
            cfg.to_str().unwrap(),
            "--periodic",
            "--interval",
            "200ms",
            "--listen",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "healthreport did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(700));
    let prom = get(port, "/metrics", "text/plain");
    assert!(
        prom.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4"),
        "{prom}"
    );
    assert!(
        prom.contains("healthcheck_up{host=\"test-host\",check=\"open-port\",kind=\"tcp\"} 1"),
        "{prom}"
    );
    assert!(!prom.contains("# EOF"));
    let om = get(
        port,
        "/metrics",
        "application/openmetrics-text; version=1.0.0",
    );
    assert!(
        om.contains("Content-Type: application/openmetrics-text") && om.ends_with("# EOF\n"),
        "{om}"
    );
    let page = get(port, "/", "text/html");
    assert!(
        page.contains("Content-Type: text/html") && page.contains("<svg"),
        "{page}"
    );
    // Several runs happened: the history strip has more than one bar per check.
    let bars = page.matches("<rect").count();
    assert!(bars > 4, "{bars} bars");
    assert!(get(port, "/nope", "*/*").starts_with("HTTP/1.1 404"));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn shipped_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/healthreport.toml");
    // Only the configuration is judged (its hosts do not exist here); the MySQL password comes
    // from the environment, as in the systemd unit.
    let out = Command::new(BIN)
        .args(["-c", example, "--check-config"])
        .env("HEALTHREPORT_MYSQL_PASSWORD", "x")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .ends_with("healthreport.toml: 12 checks, 2 alert sinks\n")
    );
    let out = Command::new(BIN)
        .args(["-c", example, "--check-config"])
        .env_remove("HEALTHREPORT_MYSQL_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "key `password_env`: environment variable `HEALTHREPORT_MYSQL_PASSWORD` is not set"
        ),
        "{err}"
    );
}
