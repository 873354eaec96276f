//! The real firewall test: two network namespaces joined by a veth pair, a TCP server in one,
//! clients in the other. The engine reads log lines naming the client and bans it through the
//! nftables sink in the server's namespace; connections must then fail, work again after the
//! ban expires, and a restart with saved state must re-apply an unexpired ban.

mod netns;

use std::net::IpAddr;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use logban::jail::parse_ports;
use logban::sink::NftVerdict;
use logban::{BanTime, Engine, Failure, JailConfig, NftablesSink, StateStore};
use netns::Netns;

const SERVER_V4: &str = "198.51.100.1";
const CLIENT_V4: &str = "198.51.100.2";
const SERVER_V6: &str = "2001:db8::1";
const CLIENT_V6: &str = "2001:db8::2";
const PORT: &str = "8080";

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The client: exit 0 on "ok", 2 when refused, 3 on timeout or other errors.
const CLIENT: &str = "import socket, sys\n\
    try:\n    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1)\n\
    except ConnectionRefusedError:\n    sys.exit(2)\n\
    except OSError:\n    sys.exit(3)\n\
    sys.exit(0 if s.recv(2) == b'ok' else 1)\n";

/// How a connection attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Connect {
    Ok,
    /// Actively refused (a `reject` verdict, or nothing listening).
    Refused,
    /// No answer (a `drop` verdict).
    TimedOut,
}

struct Lab {
    server: Netns,
    client: Netns,
    _listener: Server,
}

fn lab() -> Option<Lab> {
    if !netns::can_make_namespaces() || test_support::require_program("python3").is_none() {
        return None;
    }
    let server = Netns::create("srv");
    let client = Netns::create("cli");
    netns::run(&[
        "ip",
        "-n",
        &server.name,
        "link",
        "add",
        "veth0",
        "type",
        "veth",
        "peer",
        "name",
        "veth1",
        "netns",
        &client.name,
    ]);
    for (ns, dev, v4, v6) in [
        (&server, "veth0", SERVER_V4, SERVER_V6),
        (&client, "veth1", CLIENT_V4, CLIENT_V6),
    ] {
        ns.exec(&["ip", "addr", "add", &format!("{v4}/24"), "dev", dev]);
        ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{v6}/64"),
            "dev",
            dev,
            "nodad",
        ]);
        ns.exec(&["ip", "link", "set", dev, "up"]);
    }
    // A dual-stack server answering "ok" to every connection.
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET6)\n\
         s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('::', {PORT}))\n\
         s.listen(16)\n\
         while True:\n    c, _ = s.accept()\n    c.sendall(b'ok')\n    c.close()\n"
    );
    let child = server
        .command(&["python3", "-c", &script])
        .stdout(Stdio::null())
        .spawn()
        .expect("start the server");
    let lab = Lab {
        server,
        client,
        _listener: Server(child),
    };
    // Wait until the server listens.
    for _ in 0..50 {
        if lab.connects(SERVER_V4) {
            return Some(lab);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the test server never answered");
}

impl Lab {
    /// True if a TCP connection from the client namespace to `server_addr` gets "ok" within 1 s.
    fn connects(&self, server_addr: &str) -> bool {
        self.try_connect(server_addr, PORT) == Connect::Ok
    }

    /// Connects from the client namespace to `server_addr:port` (1 s timeout).
    fn try_connect(&self, server_addr: &str, port: &str) -> Connect {
        let status = self
            .client
            .command(&["python3", "-c", CLIENT, server_addr, port])
            .stderr(Stdio::null())
            .status()
            .expect("run the client");
        match status.code() {
            Some(0) => Connect::Ok,
            Some(2) => Connect::Refused,
            _ => Connect::TimedOut,
        }
    }

    fn sink(&self) -> Arc<NftablesSink> {
        self.sink_with(NftVerdict::Drop)
    }

    fn sink_with(&self, verdict: NftVerdict) -> Arc<NftablesSink> {
        Arc::new(
            NftablesSink::builder()
                .with_netns(&self.server.name)
                .with_verdict(verdict)
                .build()
                .expect("valid sink"),
        )
    }
}

fn jail(bantime: u64) -> JailConfig {
    JailConfig::builder("web-auth")
        .with_maxretry(3)
        .with_bantime(BanTime::For(Duration::from_secs(bantime)))
        .with_ports(parse_ports(PORT).expect("port"))
        // The namespaces' documentation addresses may also be the test host's own (CI hosts
        // sit in 192.0.2.0/24 here), which the jail would otherwise rightly never ban.
        .with_ignore_self(false)
        .build()
        .expect("valid jail")
}

/// Parses the test's log lines: `<unix time> auth failure from <addr>`.
fn matcher(line: &[u8]) -> Option<Failure> {
    let text = std::str::from_utf8(line).ok()?;
    let (time, rest) = text.split_once(' ')?;
    let addr: IpAddr = rest.strip_prefix("auth failure from ")?.parse().ok()?;
    Some(Failure::new(addr, time.parse().ok()?))
}

async fn fail_three_times(engine: &Engine, addr: &str) -> usize {
    let mut m = matcher;
    let mut bans = 0;
    for _ in 0..3 {
        let line = format!("{} auth failure from {addr}", engine.now());
        bans += engine
            .feed_line("web-auth", line.as_bytes(), &mut m)
            .await
            .expect("feed")
            .len();
    }
    bans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_block_connections_until_they_expire() {
    let Some(lab) = lab() else { return };
    assert!(lab.connects(SERVER_V6));
    let engine = Engine::builder(lab.sink())
        .with_jail(jail(6))
        .build()
        .await
        .expect("engine");
    let ticker = engine.spawn_ticker(Duration::from_millis(200));

    assert_eq!(fail_three_times(&engine, CLIENT_V4).await, 1);
    assert_eq!(
        lab.try_connect(SERVER_V4, PORT),
        Connect::TimedOut,
        "a dropped client gets no answer"
    );
    assert!(
        lab.connects(SERVER_V6),
        "the client's IPv6 address is not banned"
    );
    assert_eq!(fail_three_times(&engine, CLIENT_V6).await, 1);
    assert!(
        !lab.connects(SERVER_V6),
        "banned IPv6 client still connects"
    );
    assert_eq!(engine.status()[0].bans.len(), 2);

    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(lab.connects(SERVER_V4), "IPv4 ban did not expire");
    assert!(lab.connects(SERVER_V6), "IPv6 ban did not expire");
    assert!(engine.status()[0].bans.is_empty());
    ticker.abort();
    engine.cleanup_sink().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_saved_state_reapplies_unexpired_ban() {
    let Some(lab) = lab() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("logban.redb");
    {
        let engine = Engine::builder(lab.sink())
            .with_jail(jail(120))
            .with_state(StateStore::open(&path).expect("state"))
            .build()
            .await
            .expect("engine");
        assert_eq!(fail_three_times(&engine, CLIENT_V4).await, 1);
        assert!(!lab.connects(SERVER_V4));
    }
    // The machine "reboots": the kernel's ruleset is gone, the state file is not.
    lab.server
        .exec(&["nft", "delete", "table", "inet", "logban"]);
    assert!(
        lab.connects(SERVER_V4),
        "ruleset removal did not lift the ban"
    );

    let engine = Engine::builder(lab.sink())
        .with_jail(jail(120))
        .with_state(StateStore::open(&path).expect("state"))
        .build()
        .await
        .expect("engine restarts");
    assert!(
        !lab.connects(SERVER_V4),
        "restart did not re-apply the saved ban"
    );
    let remaining = engine.status()[0].bans[0]
        .ban
        .remaining(engine.now())
        .expect("timed ban");
    assert!((100..=120).contains(&remaining), "remaining {remaining}");

    let lifted = engine
        .unban("web-auth", CLIENT_V4.parse().expect("ip"))
        .await
        .expect("unban");
    assert!(lifted.is_some());
    assert!(lab.connects(SERVER_V4), "manual unban did not lift the ban");
    engine.cleanup_sink().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_verdict_refuses_and_other_ports_stay_open() {
    let Some(lab) = lab() else { return };
    let engine = Engine::builder(lab.sink_with(NftVerdict::Reject))
        .with_jail(jail(60))
        .build()
        .await
        .expect("engine");
    engine
        .ban("web-auth", CLIENT_V6.parse().expect("ip"), None)
        .await
        .expect("ban");
    assert_eq!(lab.try_connect(SERVER_V6, PORT), Connect::Refused);
    assert!(
        lab.connects(SERVER_V4),
        "only the banned address is refused"
    );
    // The jail covers port 8080 only. On another port nothing listens, so the kernel refuses
    // the banned client itself: the packet passed the jail (a drop there would time out).
    assert_eq!(lab.try_connect(SERVER_V6, "8081"), Connect::Refused);
    engine.cleanup_sink().await.expect("cleanup");
}
