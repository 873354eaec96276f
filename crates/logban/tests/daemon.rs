//! The daemon wired from its TOML config in-process (`logban::daemon`): memory sink, a fail2ban
//! filter file, a state database and the control socket. Configured logs that are missing or a
//! directory are counted in `unreadable_logs` (and logged); a missing file is read from its
//! start when it appears, and its failures ban.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use logban::config::DaemonConfig;
use logban::control::{Request, request};
use logban::daemon::Daemon;

fn config(dir: &Path, logpaths: &[&Path]) -> DaemonConfig {
    let filters = dir.join("filter.d");
    std::fs::create_dir_all(&filters).expect("mkdir");
    std::fs::write(
        filters.join("app.conf"),
        "[Definition]\nfailregex = ^auth failure from <HOST>$\n",
    )
    .expect("write filter");
    let paths: Vec<String> = logpaths
        .iter()
        .map(|p| format!("\"{}\"", p.display()))
        .collect();
    let text = format!(
        "[daemon]\nsocket = \"{}\"\nstate = \"{}\"\nfilter_dir = \"{}\"\n\n[sink]\nkind = \"memory\"\n\n\
         [[jail]]\nname = \"app\"\nlogpath = [{}]\nmaxretry = 2\nignoreself = false\n",
        dir.join("logban.sock").display(),
        dir.join("state/state.redb").display(),
        filters.display(),
        paths.join(", ")
    );
    DaemonConfig::from_toml(&text, Path::new("test.toml")).expect("valid config")
}

async fn wait_for(what: &str, socket: &Path, mut done: impl FnMut(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let response = request(socket, &Request::Status).await.expect("status");
        let json = serde_json::to_value(&response.jails).expect("json");
        if done(&json) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {json}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_logs_are_counted_and_picked_up_when_they_appear() {
    let dir = tempfile::tempdir().expect("tmp");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("mkdir");
    let log = logs.join("app.log");
    let config = config(dir.path(), &[&log, &logs]);
    let daemon = Daemon::start(&config)
        .await
        .expect("starts without its logs");
    let socket = daemon.socket().to_path_buf();
    assert!(socket.exists());
    wait_for("two unreadable logs", &socket, |j| {
        j[0]["counters"]["unreadable_logs"] == 2
    })
    .await;

    let mut file = std::fs::File::create(&log).expect("create log");
    file.write_all(b"auth failure from 198.51.100.7\nauth failure from 198.51.100.7\n")
        .expect("append");
    wait_for("the ban from the file that appeared", &socket, |j| {
        j[0]["bans"][0]["ban"]["target"] == "198.51.100.7/32"
    })
    .await;
    let counters = daemon.engine().metrics().jail("app").snapshot();
    assert_eq!(counters.lines, 2, "read from its start");
    assert_eq!(
        counters.unreadable_logs, 1,
        "the directory is still not a log"
    );
    assert_eq!(counters.cut_lines, 0);

    // A line over 1 MiB is cut, and counted.
    file.write_all(&[b'x'; 1_200_000]).expect("append");
    file.write_all(b"\n").expect("append");
    wait_for("the cut line", &socket, |j| {
        j[0]["counters"]["cut_lines"] == 1
    })
    .await;

    daemon.stop().await.expect("stops");
    assert!(!socket.exists(), "the socket is removed");
}

#[tokio::test]
async fn a_bad_filter_is_an_error_naming_the_jail_before_anything_starts() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = config(dir.path(), &[&dir.path().join("x.log")]);
    config.daemon.filter_dir = dir.path().join("nowhere");
    let err = Daemon::start(&config).await.expect_err("no filter");
    let text = logban::control::error_chain(&err);
    assert!(
        text.contains("jail app") && text.contains("filter app"),
        "{text}"
    );
    assert!(!dir.path().join("logban.sock").exists(), "nothing bound");
}
