//! Short forms of the kill and corruption campaigns (benches/scripts/backup-*-campaign.sh),
//! driving this build's `backup` binary: 5 kills spread over backup, forget and key changes;
//! 3 kills, one each during copy, repair from-mirror and a scheduled run; 14 flipped bytes, two
//! in an object of each kind; 8 damaged objects healed from a mirror; 6 damaged packs whose
//! data is rebuilt from the source files (truncated and deleted ones with their trees from a
//! mirror that lacks the data too), one with a changed file named; 6 damaged objects restored
//! without a mirror, the damaged files named exactly. The full campaigns and their results are
//! in benches/results/backup-campaigns.md, benches/results/backup-heal.md,
//! benches/results/backup-heal-source.md and benches/results/backup-damage-restore.md.

use std::path::PathBuf;
use std::process::Command;

fn script(name: &str) -> PathBuf {
    test_support::workspace_root()
        .join("benches/scripts")
        .join(name)
}

fn run_campaign(name: &str, vars: &[(&str, &str)]) {
    if test_support::require_program("python3").is_none() {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let output = Command::new("bash")
        .arg(script(name))
        .env("BACKUP_BIN", env!("CARGO_BIN_EXE_backup"))
        .env("WORK", work.path())
        .envs(vars.iter().copied())
        .env_remove("BACKUP_PASSWORD")
        .env_remove("BACKUP_REPOSITORY")
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{name} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("campaign:"), "{stdout}");
}

#[test]
fn five_kills_leave_a_repository_that_checks_restores_and_reruns() {
    run_campaign(
        "backup-kill-campaign.sh",
        &[("KILLS", "5"), ("TREE_MB", "8"), ("SEED", "2")],
    );
}

#[test]
fn kills_during_copy_repair_and_a_scheduled_run_leave_repositories_that_check_and_rerun() {
    run_campaign(
        "backup-kill-campaign.sh",
        &[
            ("KILLS", "3"),
            ("MIN_KILLS_PER_PHASE", "1"),
            ("POINTS", "12"),
            ("PHASES", "copy heal schedule"),
            ("TREE_MB", "8"),
            ("SEED", "2"),
        ],
    );
}

#[test]
fn fourteen_flipped_bytes_are_all_found_and_no_restore_writes_corrupt_data() {
    run_campaign(
        "backup-corruption-campaign.sh",
        &[("RUNS", "14"), ("TREE_MB", "3"), ("SEED", "2")],
    );
}

#[test]
fn eight_damaged_objects_are_healed_from_the_mirror_and_restore_byte_identical() {
    run_campaign(
        "backup-heal-campaign.sh",
        &[("RUNS", "8"), ("TREE_MB", "2"), ("SEED", "2")],
    );
}

#[test]
fn six_damaged_packs_are_rebuilt_from_the_source_files_and_a_changed_file_is_named() {
    run_campaign(
        "backup-heal-source-campaign.sh",
        &[("RUNS", "6"), ("TREE_MB", "8"), ("SEED", "2")],
    );
}

#[test]
fn six_damaged_objects_without_a_mirror_name_exactly_the_affected_files_and_restore_the_rest() {
    run_campaign(
        "backup-damage-restore-campaign.sh",
        &[("RUNS", "6"), ("TREE_MB", "12"), ("SEED", "2")],
    );
}
