//! The `logban` daemon and its client subcommands, end to end (memory sink, real socket and
//! state file).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_logban");

struct Daemon(Child);

impl Daemon {
    fn start(config: &Path, socket: &Path) -> Daemon {
        let child = Command::new(BIN)
            .args(["daemon", "--config"])
            .arg(config)
            .spawn()
            .expect("start daemon");
        let daemon = Daemon(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "daemon did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    fn stop(mut self) {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let status = self.0.wait().expect("wait");
        assert!(status.success(), "daemon exited with {status}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn client(socket: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run client")
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let socket = dir.join("logban.sock");
    let config = dir.join("logban.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nsocket = \"{}\"\nstate = \"{}\"\n\n[sink]\nkind = \"memory\"\n\n\
             [[jail]]\nname = \"sshd\"\nbantime = \"10m\"\nignoreip = [\"192.0.2.0/24\"]\n",
            socket.display(),
            dir.join("state/logban.redb").display()
        ),
    )
    .expect("write config");
    (config, socket)
}

#[test]
fn daemon_serves_ban_status_unban_and_keeps_bans_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, socket) = setup(dir.path());
    let daemon = Daemon::start(&config, &socket);

    let out = stdout_of(&client(&socket, &["ban", "sshd", "198.51.100.7"]));
    assert_eq!(out, "banned 198.51.100.7/32 in sshd\n");
    let out = stdout_of(&client(
        &socket,
        &["ban", "sshd", "2001:db8::1", "--bantime", "-1"],
    ));
    assert_eq!(out, "banned 2001:db8::1/128 in sshd\n");
    let out = stdout_of(&client(&socket, &["ban", "sshd", "198.51.100.7"]));
    assert_eq!(out, "198.51.100.7 was already banned in sshd\n");

    let status = stdout_of(&client(&socket, &["status"]));
    assert!(status.starts_with("sshd: 0 lines"), "{status}");
    assert!(status.contains("2 bans (2 current)"), "{status}");
    assert!(status.contains("permanent"), "{status}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout_of(&client(&socket, &["status", "sshd", "--json"])))
            .expect("json");
    assert_eq!(json[0]["bans"].as_array().map(Vec::len), Some(2));

    let out = stdout_of(&client(&socket, &["unban", "sshd", "198.51.100.7"]));
    assert_eq!(out, "unbanned 198.51.100.7/32 in sshd\n");
    let failed = client(&socket, &["unban", "nojail", "198.51.100.7"]);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("nojail"));
    assert!(!client(&socket, &["status", "nojail"]).status.success());
    daemon.stop();
    assert!(!socket.exists(), "socket left behind");

    // The permanent ban comes back after a restart; the lifted one does not.
    let daemon = Daemon::start(&config, &socket);
    let json: serde_json::Value =
        serde_json::from_str(&stdout_of(&client(&socket, &["status", "--json"]))).expect("json");
    let bans = json[0]["bans"].as_array().expect("bans");
    assert_eq!(bans.len(), 1, "{json}");
    assert_eq!(bans[0]["ban"]["target"], "2001:db8::1/128");
    daemon.stop();
}

#[test]
fn bad_config_and_missing_daemon_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[sink]\nkind = \"memory\"\n[[jail]]\nname = \"x\"\nmaxretry = \"many\"\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["daemon", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml"));

    let out = client(&dir.path().join("none.sock"), &["status"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the daemon running"));
}

/// A config with one jail `app` reading `log` through `filters/app.conf`; returns its path and
/// the socket's.
fn app_config(dir: &Path, filters: &Path, log: &Path, maxretry: u32) -> (PathBuf, PathBuf) {
    let socket = dir.join("logban.sock");
    let config = dir.join("logban.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nsocket = \"{}\"\nfilter_dir = \"{}\"\n\n[sink]\nkind = \"memory\"\n\n\
             [[jail]]\nname = \"app\"\nlogpath = [\"{}\"]\nmaxretry = {maxretry}\nignoreself = false\n",
            socket.display(),
            filters.display(),
            log.display()
        ),
    )
    .expect("write config");
    (config, socket)
}

#[test]
fn daemon_follows_a_log_through_a_fail2ban_filter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let filters = dir.path().join("filter.d");
    std::fs::create_dir(&filters).expect("mkdir");
    std::fs::write(
        filters.join("app.conf"),
        "[Definition]\nfailregex = auth failure for \\S+ from <HOST>$\nignoreregex =\n",
    )
    .expect("write filter");
    let log = dir.path().join("app.log");
    std::fs::write(&log, "").expect("create log");
    let (config, socket) = app_config(dir.path(), &filters, &log, 2);
    let daemon = Daemon::start(&config, &socket);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let lines = format!(
        "{now} auth failure for root from 198.51.100.44\n\
         {now} auth failure for 203.0.113.9 from 198.51.100.44\n"
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, lines.as_bytes()))
        .expect("append");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let json: serde_json::Value =
            serde_json::from_str(&stdout_of(&client(&socket, &["status", "--json"])))
                .expect("json");
        if json[0]["bans"].as_array().is_some_and(|b| !b.is_empty()) {
            assert_eq!(
                json[0]["bans"][0]["ban"]["target"], "198.51.100.44/32",
                "{json}"
            );
            assert_eq!(json[0]["counters"]["lines"], 2, "{json}");
            assert_eq!(json[0]["counters"]["bans"], 1, "{json}");
            break;
        }
        assert!(Instant::now() < deadline, "no ban from the log: {json}");
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.stop();
}

/// A configured log that does not exist yet: the daemon starts, warns on stderr, shows it in
/// `status`, and reads the file from its start once it appears.
#[test]
fn a_missing_log_is_warned_about_counted_and_read_when_it_appears() {
    let dir = tempfile::tempdir().expect("tempdir");
    let filters = dir.path().join("filter.d");
    std::fs::create_dir(&filters).expect("mkdir");
    std::fs::write(
        filters.join("app.conf"),
        "[Definition]\nfailregex = ^auth failure from <HOST>$\n",
    )
    .expect("write filter");
    let log = dir.path().join("later.log");
    let (config, socket) = app_config(dir.path(), &filters, &log, 1);
    let stderr = dir.path().join("stderr.txt");
    let child = Command::new(BIN)
        .args(["daemon", "--config"])
        .arg(&config)
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("start daemon");
    let daemon = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = || -> serde_json::Value {
        serde_json::from_str(&stdout_of(&client(&socket, &["status", "--json"]))).expect("json")
    };
    while !socket.exists() || status()[0]["counters"]["unreadable_logs"] != 1 {
        assert!(Instant::now() < deadline, "the missing log is not counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(&log, "auth failure from 198.51.100.9\n").expect("the log appears");
    loop {
        let json = status();
        if json[0]["bans"][0]["ban"]["target"] == "198.51.100.9/32" {
            assert_eq!(json[0]["counters"]["unreadable_logs"], 0, "{json}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the appeared log was not read: {json}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon.stop();
    let text = std::fs::read_to_string(&stderr).expect("stderr");
    assert!(
        text.contains("WARN")
            && text.contains(&log.display().to_string())
            && text.contains("does not exist"),
        "{text}"
    );
    assert!(text.contains("can be read now"), "{text}");
}
