//! The LogSource conformance suite run by every source: memory, files, and the journal (a real
//! `systemd-journald` in a private mount namespace the test makes, read by `journalctl -f`
//! through `nsenter`).

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use logban::source::{FileSource, JournalConfig, JournalSource, MemorySource, StartAt};

#[tokio::test]
async fn memory_source_conforms() {
    let source = MemorySource::new();
    let mut append = |lines: &[String]| {
        for line in lines {
            source.push(line.as_bytes()).expect("room in the queue");
        }
    };
    logban::conformance::source::run_all(&source, &mut append).await;
}

#[tokio::test]
async fn file_source_conforms() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("app.log");
    std::fs::write(&log, "").expect("empty log");
    let source = FileSource::new([log.clone()], StartAt::End).expect("opens");
    let mut append = |lines: &[String]| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("open log");
        for line in lines {
            writeln!(f, "{line}").expect("write log");
        }
    };
    logban::conformance::source::run_all(&source, &mut append).await;
}

/// journald in a private mount namespace; stdin closed = stop it.
const JOURNALD: &str = r#"set -e
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/log
mkdir -p /run/systemd/journal /var/log/journal
/lib/systemd/systemd-journald &
J=$!
for i in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done
# A first entry creates the journal file: `journalctl -f -n 0` started before any file exists
# would seek to the end of the first entries written.
echo "journald up" | systemd-cat -t setup
sleep 0.2
echo ready
read _ || true
kill $J; wait $J 2>/dev/null || true
"#;

struct Journald {
    child: Child,
}

impl Journald {
    fn start(dir: &Path) -> Self {
        let script = dir.join("journald.sh");
        std::fs::write(&script, JOURNALD).expect("script");
        let mut child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh"])
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare runs");
        let mut ready = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().expect("stdout")),
            &mut ready,
        )
        .expect("journald starts");
        assert_eq!(ready.trim(), "ready", "journald in a private namespace");
        Self { child }
    }

    /// `nsenter` arguments that run a program in journald's mount namespace.
    fn nsenter(&self) -> Vec<String> {
        vec![
            "nsenter".into(),
            "-t".into(),
            self.child.id().to_string(),
            "-m".into(),
        ]
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn journal_source_conforms() {
    let (Some(_), Some(_), Some(_), Some(_), Some(_)) = (
        test_support::require_program("unshare"),
        test_support::require_program("nsenter"),
        test_support::require_program("systemd-cat"),
        test_support::require_program("journalctl"),
        test_support::require_path("/lib/systemd/systemd-journald", "systemd-journald"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let journald = Journald::start(dir.path());
    let nsenter = journald.nsenter();
    // `journalctl` run inside journald's namespace.
    let wrapper = dir.path().join("journalctl");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec {} journalctl \"$@\"\n", nsenter.join(" ")),
    )
    .expect("wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let mut config = JournalConfig::default();
    config.program = Some(wrapper);
    config.follow = true;
    config.matches = vec!["SYSLOG_IDENTIFIER=conformance".into()];
    let source = JournalSource::spawn(&config).expect("journalctl starts");
    // `journalctl -f -n 0` prints nothing until it is following: give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut append = |lines: &[String]| {
        let mut cat = Command::new(&nsenter[0])
            .args(&nsenter[1..])
            .args(["systemd-cat", "-t", "conformance"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("systemd-cat runs");
        let mut stdin = cat.stdin.take().expect("stdin");
        for line in lines {
            writeln!(stdin, "{line}").expect("write to systemd-cat");
        }
        drop(stdin);
        assert!(cat.wait().expect("systemd-cat").success());
    };
    logban::conformance::source::run_all(&source, &mut append).await;
}
