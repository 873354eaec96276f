//! Watch mode: uploads written in pieces are reported once they settle, once; new
//! subdirectories and files moved in are followed; with clamd, infected uploads are found.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::eicar;
use virusscan::watch::{WatchEvent, Watcher};
use virusscan::{Outcome, Scanner};

// Long enough that a loaded machine (CI) does not stall a writer past it between two pieces.
const SETTLE: Duration = Duration::from_millis(1000);

/// Collects events until `quiet` passes without one.
async fn events_until_quiet(watcher: &mut Watcher, quiet: Duration) -> Vec<WatchEvent> {
    let mut out = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(quiet, watcher.next()).await {
        out.push(event);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_settle_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    std::fs::create_dir(root.join("existing")).unwrap();
    let mut watcher = Watcher::builder([&root])
        .with_settle(SETTLE)
        .build()
        .unwrap();

    // Written in five pieces, each well within the settle time of the last.
    let slow = root.join("slow-upload.zip");
    let writer = {
        let slow = slow.clone();
        let root = root.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::File::create(&slow).unwrap();
            for _ in 0..5 {
                f.write_all(&[b'x'; 10_000]).unwrap();
                std::thread::sleep(SETTLE / 4);
            }
            drop(f);
            // A new directory with a file in it, and one moved in from outside.
            std::fs::create_dir_all(root.join("new/deeper")).unwrap();
            std::fs::write(root.join("new/deeper/a.php"), b"<?php ?>").unwrap();
            std::fs::write(root.join("existing/b.php"), b"<?php ?>").unwrap();
        })
    };
    let outside = tempfile::tempdir_in(root.parent().unwrap()).unwrap();
    std::fs::write(outside.path().join("moved.php"), b"moved").unwrap();
    std::fs::rename(outside.path().join("moved.php"), root.join("moved.php")).unwrap();
    let started = Instant::now();
    writer.join().unwrap();
    let events = events_until_quiet(&mut watcher, SETTLE * 4).await;
    let mut settled: Vec<PathBuf> = events
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Settled(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    settled.sort();
    let mut expected = vec![
        root.join("existing/b.php"),
        root.join("moved.php"),
        root.join("new/deeper/a.php"),
        slow.clone(),
    ];
    expected.sort();
    assert_eq!(settled, expected, "{events:?}");
    assert!(started.elapsed() >= SETTLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_scans_infected_uploads_once() {
    let Some(client) = common::unix_client() else {
        return;
    };
    let scanner: Arc<dyn Scanner> = Arc::new(client);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let watcher = Watcher::builder([&root])
        .with_settle(SETTLE)
        .build()
        .unwrap();
    let stop = watcher.stop_handle();
    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = reports.clone();
    let run = tokio::spawn(watcher.run(scanner, 2, move |r| {
        let what = match &r.outcome {
            Outcome::Clean => "clean".to_string(),
            Outcome::Infected { signature } => signature.clone(),
            other => format!("{other:?}"),
        };
        sink.lock().unwrap().push((r.path.clone(), what));
    }));
    // An infected upload written in pieces (the signature spans them), and a clean one.
    let mut f = std::fs::File::create(root.join("shell.php")).unwrap();
    let e = eicar();
    for piece in e.chunks(20) {
        f.write_all(piece).unwrap();
        f.flush().unwrap();
        tokio::time::sleep(SETTLE / 5).await;
    }
    drop(f);
    std::fs::write(root.join("photo.jpg"), b"\xff\xd8\xff not really a jpeg").unwrap();
    // Touching the clean file's name again without changing it does not rescan it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while reports.lock().unwrap().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("photo.jpg"))
        .unwrap();
    tokio::time::sleep(SETTLE * 3).await;
    stop.stop();
    run.await.unwrap().unwrap();
    let mut got = reports.lock().unwrap().clone();
    got.sort();
    assert_eq!(
        got,
        vec![
            (root.join("photo.jpg"), "clean".to_string()),
            (
                root.join("shell.php"),
                "Hostguard.Test.EICAR.UNOFFICIAL".to_string()
            ),
        ]
    );
}

/// Past `max_pending` files waiting to settle, the watcher gives them up for one Overflow
/// (the caller rescans the trees) instead of growing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_pending_files_become_one_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let mut watcher = Watcher::builder([dir.path()])
        .with_settle(SETTLE)
        .with_max_pending(3)
        .build()
        .unwrap();
    for i in 0..10 {
        std::fs::write(dir.path().join(format!("f{i}")), b"x").unwrap();
    }
    let events = events_until_quiet(&mut watcher, SETTLE * 4).await;
    assert!(events.contains(&WatchEvent::Overflow), "{events:?}");
    let settled = events
        .iter()
        .filter(|e| matches!(e, WatchEvent::Settled(_)))
        .count();
    assert!(settled <= 3, "{events:?}");
}

#[test]
fn builder_refuses_what_it_cannot_watch() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Watcher::builder(Vec::<PathBuf>::new()).build().is_err());
    assert!(
        Watcher::builder([dir.path().join("missing")])
            .build()
            .is_err()
    );
    std::fs::write(dir.path().join("file"), b"").unwrap();
    assert!(Watcher::builder([dir.path().join("file")]).build().is_err());
}
