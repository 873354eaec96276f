//! The engine following a real log file with saved positions: lines appended while it runs
//! ban, a restart resumes where it stopped (lines written while it was down are read, none
//! twice).

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use logban::{BanTime, Engine, Failure, JailConfig, MemorySink, StateStore};

fn matcher(line: &[u8]) -> Option<Failure> {
    let text = std::str::from_utf8(line).ok()?;
    let addr: IpAddr = text.strip_prefix("auth failure from ")?.parse().ok()?;
    Some(Failure::new(addr, now()))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn engine(sink: Arc<MemorySink>, state: &Path) -> Engine {
    Engine::builder(sink)
        .with_jail(
            JailConfig::builder("app")
                .with_maxretry(3)
                .with_bantime(BanTime::For(Duration::from_secs(600)))
                .with_ignore_self(false)
                .build()
                .expect("jail"),
        )
        .with_state(StateStore::open(state).expect("state"))
        .build()
        .await
        .expect("engine")
}

fn append(path: &Path, lines: &[&str]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    for line in lines {
        writeln!(f, "{line}").expect("write log");
    }
}

/// Follows `log` for jail `app` in a background task.
fn follow(engine: &Engine, log: &Path) -> tokio::task::JoinHandle<logban::Result<()>> {
    let source = engine.open_files(&[log.to_path_buf()]).expect("open");
    let engine = engine.clone();
    tokio::spawn(async move {
        engine
            .follow("app", &source, matcher, Duration::from_millis(20))
            .await
    })
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn file_following_bans_and_resumes_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    let state = dir.path().join("state.redb");
    // Lines present before the first start are history: not read (start at the end).
    append(&log, &["auth failure from 192.0.2.1"; 3]);

    let sink = Arc::new(MemorySink::new());
    let first = engine(sink.clone(), &state).await;
    let task = follow(&first, &log);
    tokio::time::sleep(Duration::from_millis(100)).await;
    append(&log, &["auth failure from 192.0.2.2"; 3]);
    wait_for("the ban of 192.0.2.2", || {
        sink.is_banned("app", "192.0.2.2".parse().expect("ip"))
    })
    .await;
    assert!(!sink.is_banned("app", "192.0.2.1".parse().expect("ip")));
    assert_eq!(first.metrics().jail("app").snapshot().lines, 3);
    task.abort();
    let _ = task.await;
    drop(first);

    // Written while the daemon is down: two failures of .3, one more after the restart.
    append(
        &log,
        &["auth failure from 192.0.2.3", "auth failure from 192.0.2.3"],
    );
    let sink = Arc::new(MemorySink::new());
    let second = engine(sink.clone(), &state).await;
    let task = follow(&second, &log);
    append(&log, &["auth failure from 192.0.2.3"]);
    wait_for("the ban of 192.0.2.3", || {
        sink.is_banned("app", "192.0.2.3".parse().expect("ip"))
    })
    .await;
    // Exactly the three new lines were read: nothing twice, nothing skipped.
    assert_eq!(second.metrics().jail("app").snapshot().lines, 3);
    // The saved ban of .2 came back with the restart.
    assert!(sink.is_banned("app", "192.0.2.2".parse().expect("ip")));
    task.abort();
}
