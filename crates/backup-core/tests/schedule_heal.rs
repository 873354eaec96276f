//! A rotating scrub that heals: a scheduled `check` step with `read_data_subset = "50%"` and
//! `heal_from` heals the damage in the half it reads from the mirror (and only that half),
//! records it in the status file, and the next run heals the other half; damage the mirror
//! lacks too fails the job and is named in the status.

mod common;

use std::path::Path;
use std::sync::Arc;

use backup_core::conformance::small_options;
use backup_core::copy::{CopyOptions, copy};
use backup_core::ops::list_blobs;
use backup_core::schedule::{
    CheckStep, ManualClock, OpenRepository, SchedulePolicy, ScheduleStatus, Scheduler,
};
use backup_core::{Repository, StoreOptions};
use common::*;

/// 2026-12-06 10:20 UTC.
const DEC6_1020: i64 = 1_796_552_400;
const HOUR: i64 = 3600;

/// The part (1 or 2) of a half-and-half scrub a pack falls in: its id's first 32 bits mod 2.
fn part(pack: &Path) -> u32 {
    let name = pack.file_name().unwrap().to_str().unwrap();
    u32::from_str_radix(&name[..8], 16).unwrap() % 2 + 1
}

/// Snapshots of `work/src` in `work/repo` until packs lie in both halves, copied into
/// `work/mirror`; returns the latest snapshot's id and a kept copy of its source.
async fn repository_and_mirror(work: &Path) -> (String, std::path::PathBuf) {
    let src = work.join("src");
    let repo = init(&work.join("repo")).await;
    let mut round = 0;
    let id = loop {
        write_tree(&src, round);
        let id = backup(&repo, &src).await.unwrap();
        let parts: Vec<u32> = packs(&work.join("repo"))
            .iter()
            .map(|(p, _)| part(p))
            .collect();
        round += 1;
        if (parts.contains(&1) && parts.contains(&2)) || round == 20 {
            break id;
        }
    };
    let kept = work.join("kept");
    std::fs::create_dir(&kept).unwrap();
    keep_copy(&src, &kept);
    let options = small_options().with_params_from(&repo);
    let mirror = Repository::init(local(&work.join("mirror")), "mirror", &key(), options)
        .await
        .unwrap();
    copy(
        repo,
        Arc::new(mirror),
        &CopyOptions::builder().build().unwrap(),
    )
    .await
    .unwrap();
    (id, kept.join("src"))
}

/// Flips a byte in the middle of the largest frame of the largest pack of `half`.
async fn damage_half(repo_dir: &Path, half: u32) -> std::path::PathBuf {
    let (pack, _) = packs(repo_dir)
        .into_iter()
        .filter(|(p, _)| part(p) == half)
        .max_by_key(|(_, size)| *size)
        .expect("a pack in each half");
    let name = pack
        .strip_prefix(repo_dir)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let blobs = list_blobs(&*open(repo_dir).await).await.unwrap();
    let frame = blobs
        .iter()
        .filter(|b| b.pack == name)
        .max_by_key(|b| b.length)
        .unwrap();
    flip(&pack, (frame.offset + frame.length / 2) as usize);
    pack
}

fn scheduler(work: &Path, clock: Arc<ManualClock>) -> Scheduler {
    let text = format!(
        "[[job]]\nname = \"scrub\"\nat = \"hourly\"\n[[job.step]]\nkind = \"check\"\n\
         read_data_subset = \"50%\"\nheal_from = \"{}\"\n",
        work.join("mirror").display()
    );
    let policy = SchedulePolicy::parse(Path::new("policy.toml"), &text).unwrap();
    let location = work.join("repo").to_string_lossy().into_owned();
    let source = OpenRepository::new(StoreOptions::new(&location), key());
    Scheduler::builder(policy, work.join("state"), Arc::new(source))
        .with_clock(clock)
        .with_step(
            "check",
            Arc::new(CheckStep::default().with_mirror_key(key())),
        )
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotating_scrub_heals_the_half_it_reads_from_the_mirror() {
    let work = tempfile::tempdir().unwrap();
    let (id, kept) = repository_and_mirror(work.path()).await;
    let repo_dir = work.path().join("repo");
    let first = damage_half(&repo_dir, 1).await;
    let second = damage_half(&repo_dir, 2).await;
    let clock = Arc::new(ManualClock::new(DEC6_1020));
    let mut scheduler = scheduler(work.path(), clock.clone());
    for (hour, healed, untouched) in [(1, &first, Some(&second)), (2, &second, None)] {
        clock.set(DEC6_1020 + hour * HOUR);
        let runs = scheduler.run_due().await.unwrap();
        let scrub = &scheduler.status().jobs["scrub"];
        assert!(runs[0].ok, "{:?} {:?}", scrub.last_error, scrub.last_check);
        let check = scrub.last_check.as_ref().unwrap();
        assert_eq!(
            check.part.as_deref(),
            Some(["1/2", "2/2"][hour as usize - 1])
        );
        assert!(check.ok && check.problems > 0, "{check:?}");
        let heal = check.heal.as_ref().expect("the damage is healed");
        let name = healed.strip_prefix(&repo_dir).unwrap().to_str().unwrap();
        assert_eq!(heal.damaged_packs, [name], "{heal:?}");
        assert!(heal.lost.is_empty() && heal.error.is_none() && heal.remaining == 0);
        assert!(heal.blobs_from_mirror > 0, "{heal:?}");
        assert!(!healed.exists(), "the damaged pack is deleted");
        if let Some(untouched) = untouched {
            assert!(untouched.exists(), "the other half is not read this run");
        }
        // The status file says the same.
        let status = ScheduleStatus::read(&scheduler.status_path()).unwrap();
        assert_eq!(status.jobs["scrub"].last_check, scrub.last_check);
        assert!(
            scrub.last_summary[0].contains("healed from"),
            "{:?}",
            scrub.last_summary
        );
    }
    let repo = open(&repo_dir).await;
    let checked = check_all(repo.clone()).await;
    assert!(checked.is_ok(), "{:?}", checked.problems);
    let restored = restore_into(&repo, &id, work.path(), "src").await.unwrap();
    assert_same(&kept, &restored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_the_mirror_lacks_fails_the_job_and_is_named() {
    let work = tempfile::tempdir().unwrap();
    let _ = repository_and_mirror(work.path()).await;
    let repo_dir = work.path().join("repo");
    damage_half(&repo_dir, 1).await;
    for (pack, _) in packs(&work.path().join("mirror")) {
        std::fs::remove_file(pack).unwrap();
    }
    let clock = Arc::new(ManualClock::new(DEC6_1020 + HOUR));
    // The scheduler starts at 11:20; its first slot is 12:00.
    let mut scheduler = scheduler(work.path(), clock.clone());
    clock.set(DEC6_1020 + 2 * HOUR);
    let runs = scheduler.run_due().await.unwrap();
    assert!(!runs[0].ok);
    let scrub = &scheduler.status().jobs["scrub"];
    let check = scrub.last_check.as_ref().unwrap();
    assert_eq!(check.part.as_deref(), Some("1/2"));
    assert!(!check.ok);
    let heal = check.heal.as_ref().unwrap();
    assert!(!heal.lost.is_empty() && heal.remaining > 0, "{heal:?}");
    assert!(
        heal.lost.iter().all(|l| l.starts_with("snapshot ")),
        "{heal:?}"
    );
    let error = &scrub.last_error.as_ref().unwrap().message;
    assert!(
        error.contains("(check) found") && error.contains("lost"),
        "{error}"
    );
}

#[test]
fn heal_from_needs_a_data_read_and_a_key() {
    let build = |step: &str, with_key: bool| {
        let text = format!(
            "[[job]]\nname = \"s\"\nat = \"hourly\"\n[[job.step]]\nkind = \"check\"\n{step}\n"
        );
        let policy = SchedulePolicy::parse(Path::new("policy.toml"), &text).unwrap();
        let state = tempfile::tempdir().unwrap();
        let repo = futures::executor::block_on(backup_core::conformance::memory_repository());
        let source = Arc::new(backup_core::schedule::StaticRepository::new(repo));
        let mut builder = Scheduler::builder(policy, state.path(), source);
        if with_key {
            builder = builder.with_step(
                "check",
                Arc::new(CheckStep::default().with_mirror_key(key())),
            );
        }
        builder.build().err().map(|e| e.to_string())
    };
    let error = build("heal_from = \"/m\"", true).unwrap();
    assert!(error.contains("read_data"), "{error}");
    let error = build("read_data = true\nheal_from = \"/m\"", false).unwrap();
    assert!(error.contains("key"), "{error}");
    assert_eq!(build("read_data = true\nheal_from = \"/m\"", true), None);
}
