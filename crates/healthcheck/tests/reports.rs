//! Reports: Nagios and Prometheus output against hand-written expectations, `promtool check
//! metrics` on both exposition formats, text alignment, JSON, and the HTML page in headless
//! Chromium (no console error; a screenshot kept as an artifact).

use std::io::Write;
use std::sync::Arc;

use healthcheck::{
    Check, CheckEntry, Monitor, Observation, Reason, Report, Thresholds, Unit, report,
};

/// A check that always observes the same thing.
struct Fixed(fn() -> Observation);

#[async_trait::async_trait]
impl Check for Fixed {
    fn kind(&self) -> &'static str {
        "fixed"
    }
    fn primary_metric(&self) -> Option<&'static str> {
        None
    }
    async fn run(&self) -> Observation {
        (self.0)()
    }
}

fn entry(
    name: &str,
    run: fn() -> Observation,
    metric: &'static str,
    warn: Option<&str>,
    crit: Option<&str>,
) -> CheckEntry {
    let mut b = CheckEntry::builder(name, Arc::new(Fixed(run)));
    if warn.is_some() || crit.is_some() {
        b = b.with_metric_thresholds(metric, Thresholds::parse(warn, crit).unwrap());
    }
    b.build().unwrap()
}

/// Three checks (OK, CRITICAL, WARNING by threshold), run `runs` times; times fixed afterwards.
async fn sample(runs: usize) -> Report {
    let monitor = Monitor::builder()
        .with_host("web\"1\\")
        .with_check(entry(
            "disk-root",
            || Observation::ok("/: 42.5 % free").with_metric("free_percent", 42.5, Unit::Percent),
            "free_percent",
            Some("10:"),
            Some("5:"),
        ))
        .with_check(entry(
            "cert",
            || {
                Observation::critical(Reason::CertExpired, "example.org:443: expired 3 days ago")
                    .with_metric("days_left", -3.25, Unit::Days)
            },
            "days_left",
            None,
            None,
        ))
        .with_check(entry(
            "queue",
            || {
                Observation::ok("7 queued <b>now</b> | piped").with_metric(
                    "listen_queue",
                    7.0,
                    Unit::Count,
                )
            },
            "listen_queue",
            Some("5"),
            None,
        ))
        .build()
        .unwrap();
    let mut report = monitor.run().await;
    for _ in 1..runs {
        report = monitor.run().await;
    }
    report.duration = 0.25;
    report.started = 1_700_000_000;
    for (i, c) in report.checks.iter_mut().enumerate() {
        c.duration = (i + 1) as f64 / 1000.0;
    }
    report
}

#[tokio::test]
async fn nagios_line_and_exit_code() {
    let (line, code) = report::nagios(&sample(1).await);
    assert_eq!(
        line,
        "CRITICAL - 2 of 3 checks not OK: cert CRITICAL: example.org:443: expired 3 days ago; \
queue WARNING: 7 queued <b>now</b> / piped; listen_queue = 7 is WARNING \
| disk-root.free_percent=42.5%;10:;5: cert.days_left=-3.25 queue.listen_queue=7;5"
    );
    assert_eq!(code, 2);
    assert!(!line.contains('\n'));
}

const PROMETHEUS: &str = r#"# HELP healthcheck_status Reported state of the check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
# TYPE healthcheck_status gauge
healthcheck_status{host="web\"1\\",check="disk-root",kind="fixed",reason="ok"} 0
healthcheck_status{host="web\"1\\",check="cert",kind="fixed",reason="cert_expired"} 2
healthcheck_status{host="web\"1\\",check="queue",kind="fixed",reason="threshold"} 1
# HELP healthcheck_up 1 when the check's reported state is OK.
# TYPE healthcheck_up gauge
healthcheck_up{host="web\"1\\",check="disk-root",kind="fixed"} 1
healthcheck_up{host="web\"1\\",check="cert",kind="fixed"} 0
healthcheck_up{host="web\"1\\",check="queue",kind="fixed"} 0
# HELP healthcheck_check_duration_seconds Wall time of the check's last run.
# TYPE healthcheck_check_duration_seconds gauge
healthcheck_check_duration_seconds{host="web\"1\\",check="disk-root",kind="fixed"} 0.001
healthcheck_check_duration_seconds{host="web\"1\\",check="cert",kind="fixed"} 0.002
healthcheck_check_duration_seconds{host="web\"1\\",check="queue",kind="fixed"} 0.003
# HELP healthcheck_value A value the check measured; the metric label names it and unit its unit.
# TYPE healthcheck_value gauge
healthcheck_value{host="web\"1\\",check="disk-root",kind="fixed",metric="free_percent",unit="percent"} 42.5
healthcheck_value{host="web\"1\\",check="cert",kind="fixed",metric="days_left",unit="days"} -3.25
healthcheck_value{host="web\"1\\",check="queue",kind="fixed",metric="listen_queue",unit="count"} 7
# HELP healthcheck_report_duration_seconds Wall time of the whole report.
# TYPE healthcheck_report_duration_seconds gauge
healthcheck_report_duration_seconds{host="web\"1\\"} 0.25
"#;

#[tokio::test]
async fn prometheus_and_openmetrics_text() {
    let r = sample(1).await;
    assert_eq!(report::prometheus(&r), PROMETHEUS);
    assert_eq!(report::openmetrics(&r), format!("{PROMETHEUS}# EOF\n"));
}

fn promtool(text: &str) -> (bool, String) {
    let Some(promtool) = test_support::require_program("promtool") else {
        return (true, String::new());
    };
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn promtool_accepts_both_formats() {
    let r = sample(3).await;
    for text in [report::prometheus(&r), report::openmetrics(&r)] {
        let (ok, said) = promtool(&text);
        assert!(ok, "promtool check metrics: {said}\n{text}");
        assert!(
            said.trim().is_empty(),
            "promtool found lint problems: {said}"
        );
    }
    // promtool does reject a broken exposition, so its approval above means something.
    let (ok, said) = promtool("# TYPE x gauge\nx{a=\"1\" 1\n");
    if test_support::require_program("promtool").is_some() {
        assert!(!ok, "promtool accepted a broken line: {said}");
    }
}

#[tokio::test]
async fn text_is_aligned_and_coloured_only_when_asked() {
    let r = sample(1).await;
    let plain = report::text(&r, false);
    let lines: Vec<&str> = plain.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(
        lines[0].starts_with("CRITICAL web\"1\\: 3 checks in 250 ms"),
        "{plain}"
    );
    assert_eq!(
        lines[1],
        "OK       disk-root  fixed       1.0 ms  /: 42.5 % free"
    );
    assert_eq!(
        lines[2],
        "CRITICAL cert       fixed       2.0 ms  example.org:443: expired 3 days ago"
    );
    assert!(
        lines[3].starts_with("WARNING  queue      fixed       3.0 ms  7 queued"),
        "{plain}"
    );
    assert!(!plain.contains('\x1b'));
    let coloured = report::text(&r, true);
    assert!(
        coloured.contains("\x1b[1;31mCRITICAL\x1b[0m")
            && coloured.contains("\x1b[32mOK      \x1b[0m")
    );
}

#[tokio::test]
async fn json_carries_every_field() {
    let r = sample(2).await;
    let v: serde_json::Value = serde_json::from_str(&report::json(&r)).unwrap();
    assert_eq!(v["status"], "CRITICAL");
    assert_eq!(v["checks"][1]["reason"], "cert_expired");
    assert_eq!(v["checks"][1]["metrics"][0]["name"], "days_left");
    assert_eq!(v["checks"][1]["metrics"][0]["value"], -3.25);
    assert_eq!(v["checks"][2]["metrics"][0]["warn"], "5");
    assert_eq!(v["checks"][2]["status"], "WARNING");
    assert_eq!(v["checks"][0]["history"].as_array().unwrap().len(), 2);
    // The second run changed nothing: no alert.
    assert_eq!(v["alerts"].as_array().unwrap().len(), 0);
}

/// Where tests keep artifacts (screenshots): `HOSTGUARD_ARTIFACT_DIR`, else the target dir.
fn artifact_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("HOSTGUARD_ARTIFACT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| test_support::workspace_root().join("target"))
                .join("test-artifacts")
        });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn html_page_in_headless_chromium() {
    let r = sample(12).await;
    let page = report::html(&r);
    // Self-contained: no script, no external reference of any kind.
    for banned in [
        "<script", "http://", "https://", " src=", "href=", "@import", "url(",
    ] {
        assert!(!page.contains(banned), "the page contains `{banned}`");
    }
    assert!(
        page.contains("7 queued &lt;b&gt;now&lt;/b&gt;"),
        "messages are escaped"
    );
    assert!(page.contains("web&quot;1\\: CRITICAL"));
    // 1_700_000_000 is 2023-11-14 22:13:20 UTC.
    assert!(
        page.contains("run at 2023-11-14 22:13:20 UTC"),
        "the run's time, for people"
    );
    assert_eq!(page.matches("<svg").count(), 6, "two charts per check");
    assert_eq!(
        page.matches("<rect").count(),
        3 * 12,
        "one bar per run in the state strip"
    );

    let Some(chromium) = test_support::require_program("chromium") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    std::fs::write(&html, &page).unwrap();
    let shot = artifact_dir().join("healthcheck-report.png");
    let _ = std::fs::remove_file(&shot);
    let url = format!("file://{}", html.display());
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-extensions",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (dom, log) = run(&["--dump-dom"]);
    // Console messages (script errors, CSP violations, failed loads) are logged as CONSOLE lines.
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Refused to") || l.contains("Uncaught"))
        .collect();
    assert!(console.is_empty(), "console errors: {console:#?}");
    assert!(
        dom.contains("<svg class=\"strip\""),
        "Chromium did not render the page: {log}"
    );
    assert!(dom.contains("cert_expired"));
    let (_, log) = run(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1200,900",
        "--hide-scrollbars",
    ]);
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}): {log}"));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    eprintln!("screenshot kept at {}", shot.display());
}
