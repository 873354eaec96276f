//! The journal source against a real journald: the test starts `systemd-journald` in a private
//! mount namespace (`unshare -m`, tmpfs over /run and /var/log), writes lines with
//! `systemd-cat`, copies the journal file out, and reads it through `journalctl --file` with
//! journal matches and a saved cursor; the stock sshd filter (journal mode) finds the failures.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use logban::fail2ban::load_filter;
use logban::filter::FilterBuilder;
use logban::source::{JournalConfig, JournalEntry, JournalSource, LogSource};

const SCRIPT: &str = r#"set -e
OUT=$1
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/log
mkdir -p /run/systemd/journal /var/log/journal
/lib/systemd/systemd-journald &
JPID=$!
for i in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done
echo "Failed password for root from 192.0.2.44 port 22 ssh2" | systemd-cat -t sshd
echo "pam_unix(cron:session): session opened for user root from 192.0.2.99" | systemd-cat -t cron
echo "Failed password for invalid user 203.0.113.66 from 192.0.2.45 port 22 ssh2" | systemd-cat -t sshd
sleep 0.5
kill $JPID; wait $JPID 2>/dev/null || true
find /run/log/journal /var/log/journal -name '*.journal' -exec cp {} "$OUT"/ \;
"#;

fn read_all(config: &JournalConfig) -> (Vec<JournalEntry>, Option<String>) {
    drain(JournalSource::spawn(config).expect("journalctl starts"))
}

/// Polls `src` until `journalctl` has exited and everything was read.
fn drain(src: JournalSource) -> (Vec<JournalEntry>, Option<String>) {
    let mut entries = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !src.is_finished() && Instant::now() < deadline {
        entries.extend(src.poll_entries().expect("journalctl succeeds"));
        std::thread::sleep(Duration::from_millis(20));
    }
    entries.extend(src.poll_entries().expect("journalctl succeeds"));
    (entries, src.cursor())
}

/// Writes an executable stand-in for `journalctl`.
fn write_program(path: &Path, script: &str) {
    std::fs::write(path, script).expect("script");
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
}

fn journal_file(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "journal"))
}

#[test]
fn journal_entries_with_matches_and_cursor() {
    let (Some(_), Some(_), Some(_), Some(_), Some(filter_dir)) = (
        test_support::require_program("unshare"),
        test_support::require_program("systemd-cat"),
        test_support::require_program("journalctl"),
        test_support::require_path("/lib/systemd/systemd-journald", "systemd-journald"),
        test_support::require_env("FAIL2BAN_FILTER_DIR", "fail2ban's filter.d"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let script = dir.path().join("journald.sh");
    std::fs::write(&script, SCRIPT).expect("script");
    let status = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh"])
        .arg(&script)
        .arg(dir.path())
        .status()
        .expect("unshare runs");
    assert!(
        status.success(),
        "journald in a private namespace: {status}"
    );
    let journal = journal_file(dir.path()).expect("journald wrote a journal file");

    let mut config = JournalConfig::default();
    config.matches = vec!["SYSLOG_IDENTIFIER=sshd".into()];
    config.files = vec![journal.clone()];
    config.follow = false;
    let (entries, cursor) = read_all(&config);
    assert_eq!(entries.len(), 2, "only the sshd entries match");
    assert_eq!(cursor.as_deref(), Some(entries[1].cursor.as_str()));

    let def = load_filter(Path::new(&filter_dir), "sshd[logtype=journal]").expect("sshd loads");
    let mut filter = FilterBuilder::new(def).build().expect("builds");
    let mut found = Vec::new();
    for e in &entries {
        for m in filter.process_line_at(&e.line, e.time) {
            if let Some(f) = m.to_failure() {
                assert_eq!(f.time, e.time as i64);
                found.push(f.addr.to_string());
            }
        }
    }
    // The injected address in the second user name is never the failure.
    assert_eq!(found, ["192.0.2.44", "192.0.2.45"]);

    // A saved cursor resumes after that entry.
    config.after_cursor = Some(entries[0].cursor.clone());
    let (rest, _) = read_all(&config);
    assert_eq!(rest.len(), 1);
    assert!(rest[0].line.contains("192.0.2.45"));
}

/// The reader queues at most `queue` entries ahead of `poll`: with nobody polling, a fast
/// journal is held back (here a stand-in `journalctl` blocks on its full pipe and never reaches
/// its end marker), and every entry still arrives, in order, once polled.
#[test]
fn the_read_ahead_queue_is_bounded_and_loses_nothing() {
    let Some(sh) = test_support::require_program("sh") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let marker = dir.path().join("printed-everything");
    let program = dir.path().join("journalctl");
    let message = "x".repeat(4000);
    write_program(
        &program,
        &format!(
            "#!{}\ni=0\nwhile [ $i -lt 100 ]; do\n  printf '{{\"__CURSOR\":\"c%d\",\"__REALTIME_TIMESTAMP\":\"1700000000000000\",\"_HOSTNAME\":\"h\",\"SYSLOG_IDENTIFIER\":\"t\",\"MESSAGE\":\"%d {message}\"}}\\n' $i $i\n  i=$((i+1))\ndone\ntouch '{}'\n",
            sh.display(),
            marker.display()
        ),
    );
    let mut config = JournalConfig::default();
    config.program = Some(program);
    config.queue = 4;
    let src = JournalSource::spawn(&config).expect("starts");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !marker.exists(),
        "400 KB printed with nobody polling: the queue is not bounded"
    );
    let (entries, _) = drain(src);
    assert_eq!(entries.len(), 100);
    for (i, e) in entries.iter().enumerate() {
        assert!(
            e.line.starts_with(&format!("h t: {i} ")),
            "entry {i} in order"
        );
    }
    assert!(marker.exists());
}

/// A `journalctl` that fails is reported by a poll (named, with its status), not taken for the
/// end of the journal.
#[test]
fn a_failing_journalctl_is_an_error() {
    let Some(sh) = test_support::require_program("sh") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let program = dir.path().join("journalctl");
    write_program(
        &program,
        &format!(
            "#!{}\necho 'Failed to add match: Invalid argument' >&2\nexit 1\n",
            sh.display()
        ),
    );
    let mut config = JournalConfig::default();
    config.program = Some(program);
    let src = JournalSource::spawn(&config).expect("starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    let err = loop {
        match src.poll_entries() {
            Err(e) => break e,
            Ok(entries) => assert!(entries.is_empty()),
        }
        assert!(Instant::now() < deadline, "the failure was never reported");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        matches!(&err, logban::Error::LogSource { reason, .. } if reason.contains("exit status: 1")),
        "{err}"
    );
    assert!(src.is_finished());
}
