//! The built-in steps on a real repository, driven by an injected clock: hourly backups with
//! a forget keep the newest two, a rotating scrub reads a different half each run, and a
//! forget through an append-only handle fails the job with a clear error, and a forget then a
//! prune step reclaim what the forgotten snapshots alone used.

use std::path::Path;
use std::sync::Arc;

use backup_core::conformance::{small_options, write_sample_tree};
use backup_core::schedule::{
    ManualClock, OpenRepository, SchedulePolicy, Scheduler, StaticRepository,
};
use backup_core::{KeySource, Repository, StoreOptions};

/// 2026-12-06 10:20 UTC (Python's calendar.timegm).
const DEC6_1020: i64 = 1_796_552_400;
const HOUR: i64 = 3600;

fn policy(src: &Path) -> SchedulePolicy {
    let text = format!(
        r#"
        [[job]]
        name = "hourly"
        at = "hourly"
        [[job.step]]
        kind = "backup"
        paths = ["{}"]
        tag = ["hourly"]
        [[job.step]]
        kind = "forget"
        tag = ["hourly"]
        keep_last = 2
        [[job.step]]
        kind = "check"
        read_data_subset = "50%"
        "#,
        src.display()
    );
    SchedulePolicy::parse(Path::new("policy.toml"), &text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hourly_backups_forget_and_a_rotating_scrub() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("site");
    std::fs::create_dir(&src).unwrap();
    write_sample_tree(&src);
    let store = Arc::new(object_store::memory::InMemory::new());
    let key = KeySource::passphrase("pw");
    let repo = Repository::init(store, "memory", &key, small_options());
    let repo = Arc::new(repo.await.unwrap());
    let clock = Arc::new(ManualClock::new(DEC6_1020));
    let source = Arc::new(StaticRepository::new(repo.clone()));
    let mut scheduler = Scheduler::builder(policy(&src), dir.path().join("state"), source)
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let mut parts = Vec::new();
    for hour in 1..=3 {
        clock.set(DEC6_1020 + hour * HOUR);
        let runs = scheduler.run_due().await.unwrap();
        assert_eq!(runs.len(), 1);
        let hourly = &scheduler.status().jobs["hourly"];
        assert!(runs[0].ok, "{:?}", hourly.last_error);
        let check = hourly.last_check.as_ref().unwrap();
        assert!(check.ok && check.problems == 0, "{check:?}");
        parts.push(check.part.clone().unwrap());
        assert_eq!(hourly.last_summary.len(), 3, "{:?}", hourly.last_summary);
        assert!(hourly.last_summary[0].starts_with("backup: snapshot "));
    }
    assert_eq!(parts, ["1/2", "2/2", "1/2"]);
    let snapshots = repo.snapshots().await.unwrap();
    assert_eq!(snapshots.len(), 2, "forget keeps the newest two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_through_an_append_only_handle_fails_the_job_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("site");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("index.php"), "<?php").unwrap();
    let location = dir.path().join("repo").to_string_lossy().into_owned();
    let key = KeySource::passphrase("pw");
    let store = StoreOptions::new(&location)
        .with_create(true)
        .build()
        .unwrap();
    let repo = Repository::init(store, &location, &key, small_options());
    repo.await.unwrap();
    let source = OpenRepository::new(StoreOptions::new(&location), key).with_append_only(true);
    let clock = Arc::new(ManualClock::new(DEC6_1020));
    let mut scheduler =
        Scheduler::builder(policy(&src), dir.path().join("state"), Arc::new(source))
            .with_clock(clock.clone())
            .build()
            .unwrap();
    for hour in 1..=3 {
        clock.set(DEC6_1020 + hour * HOUR);
        let runs = scheduler.run_due().await.unwrap();
        assert!(!runs[0].ok);
    }
    let hourly = &scheduler.status().jobs["hourly"];
    let error = &hourly.last_error.as_ref().unwrap().message;
    assert!(
        error.contains("step 2 (forget)") && error.contains("append-only"),
        "{error}"
    );
    assert_eq!(hourly.failures, 3);
    // The backups themselves went in; nothing was forgotten.
    let store = StoreOptions::new(&location).build().unwrap();
    let key = KeySource::passphrase("pw");
    let repo = Repository::open(store, &location, &key).await.unwrap();
    assert_eq!(repo.snapshots().await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_forgets_then_prunes_what_no_snapshot_uses() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("site");
    std::fs::create_dir(&src).unwrap();
    let text = format!(
        "[[job]]\nname = \"hourly\"\nat = \"hourly\"\n[[job.step]]\nkind = \"backup\"\n\
         paths = [\"{}\"]\n[[job.step]]\nkind = \"forget\"\nkeep_last = 1\n\
         [[job.step]]\nkind = \"prune\"\nmax_unused = \"0%\"\n",
        src.display()
    );
    let policy = SchedulePolicy::parse(Path::new("policy.toml"), &text).unwrap();
    let store = Arc::new(object_store::memory::InMemory::new());
    let key = KeySource::passphrase("pw");
    let repo = Repository::init(store, "memory", &key, small_options());
    let repo = Arc::new(repo.await.unwrap());
    let clock = Arc::new(ManualClock::new(DEC6_1020));
    let source = Arc::new(StaticRepository::new(repo.clone()));
    let mut scheduler = Scheduler::builder(policy, dir.path().join("state"), source)
        .with_clock(clock.clone())
        .build()
        .unwrap();
    let mut summaries = Vec::new();
    for hour in 1..=2_i64 {
        // Each hour's file replaces the last one's: its data is garbage an hour later.
        let _ = std::fs::remove_file(src.join(format!("hour-{}.bin", hour - 1)));
        let content: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(hour as u32 * 97) >> 13) as u8)
            .collect();
        std::fs::write(src.join(format!("hour-{hour}.bin")), content).unwrap();
        clock.set(DEC6_1020 + hour * HOUR);
        let runs = scheduler.run_due().await.unwrap();
        let hourly = &scheduler.status().jobs["hourly"];
        assert!(runs[0].ok, "{:?}", hourly.last_error);
        summaries.push(hourly.last_summary[2].clone());
    }
    assert_eq!(summaries[0], "prune: 0 packs deleted (0 bytes), 0 repacked");
    assert!(
        summaries[1].starts_with("prune: ") && summaries[1] != summaries[0],
        "the first hour's data is deleted or repacked: {summaries:?}"
    );
    assert_eq!(repo.snapshots().await.unwrap().len(), 1);
    let options = backup_core::check::CheckOptions::builder().build().unwrap();
    let report = backup_core::check::check(repo, &options).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
