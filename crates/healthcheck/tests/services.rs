//! Checks against real services that scripts/services/healthcheck.sh starts on loopback:
//! nginx (stub_status and a page), PHP-FPM (status through nginx), MariaDB (greeting and an
//! authenticated ping); and each network check's verdicts for a hung target, a refused port and
//! a dead DNS name.

mod support;

use std::sync::Arc;
use std::time::Duration;

use healthcheck::checks::{
    HttpCheck, MysqlCheck, NginxStatusCheck, PhpFpmStatusCheck, ProcessCheck, TcpCheck,
};
use healthcheck::conformance::check_suite;
use healthcheck::{Check, CheckEntry, Monitor, Reason, Status};
use support::{assert_verdict, hung_server, provider, refused_addr};
use test_support::require_env;

const WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn nginx_stub_status() {
    let Some(url) = require_env("HOSTGUARD_NGINX_STATUS_URL", "nginx with stub_status") else {
        return;
    };
    let check = NginxStatusCheck::new(&url, provider(), None).unwrap();
    let first = check.run().await;
    assert_eq!(
        (first.status, first.reason),
        (Status::Ok, Reason::Ok),
        "{}",
        first.message
    );
    // Our own request is active while nginx writes the page.
    assert!(first.metric("active_connections").unwrap() >= 1.0);
    assert!(first.metric("writing").unwrap() >= 1.0);
    let second = check.run().await;
    assert!(second.metric("requests_total").unwrap() > first.metric("requests_total").unwrap());
    check_suite(&check, WITHIN).await;
    // A page that is not stub_status is a protocol verdict, not a crash.
    let page = require_env("HOSTGUARD_NGINX_URL", "nginx").unwrap();
    let o = NginxStatusCheck::new(&page, provider(), None)
        .unwrap()
        .run()
        .await;
    assert_eq!(o.reason, Reason::Protocol, "{}", o.message);
}

#[tokio::test]
async fn php_fpm_status_through_nginx() {
    let Some(url) = require_env(
        "HOSTGUARD_PHPFPM_STATUS_URL",
        "PHP-FPM status through nginx",
    ) else {
        return;
    };
    let check = PhpFpmStatusCheck::new(&url, provider(), None).unwrap();
    let o = check.run().await;
    assert_verdict(&o, Status::Ok, Reason::Ok);
    assert!(o.message.starts_with("pool hostguard:"), "{}", o.message);
    // pm = static with two children: the one serving this request is active.
    assert_eq!(
        o.metric("active_processes").unwrap() + o.metric("idle_processes").unwrap(),
        2.0
    );
    assert!(o.metric("active_processes").unwrap() >= 1.0);
    assert_eq!(o.metric("listen_queue"), Some(0.0));
    check_suite(&check, WITHIN).await;
}

#[tokio::test]
async fn http_status_latency_and_body() {
    let Some(url) = require_env("HOSTGUARD_NGINX_URL", "nginx") else {
        return;
    };
    let ok = HttpCheck::builder(url.clone(), provider())
        .with_body_contains("hostguard health page")
        .build()
        .unwrap();
    let o = ok.run().await;
    assert_verdict(&o, Status::Ok, Reason::Ok);
    assert_eq!(o.metric("status_code"), Some(200.0));
    assert_eq!(
        o.metric("body_bytes"),
        Some("hostguard health page\n".len() as f64)
    );
    check_suite(&ok, WITHIN).await;
    let tcp = TcpCheck::new(url.trim_start_matches("http://").trim_end_matches('/')).unwrap();
    let o = tcp.run().await;
    assert_verdict(&o, Status::Ok, Reason::Ok);
    check_suite(&tcp, WITHIN).await;

    let o = HttpCheck::builder(url.clone(), provider())
        .with_body_contains("something else")
        .build()
        .unwrap()
        .run()
        .await;
    assert_verdict(&o, Status::Critical, Reason::BodyMismatch);
    let o = HttpCheck::builder(format!("{url}missing"), provider())
        .build()
        .unwrap()
        .run()
        .await;
    assert_verdict(&o, Status::Critical, Reason::HttpStatus);
    assert_eq!(o.metric("status_code"), Some(404.0));
    let o = HttpCheck::builder(format!("{url}missing"), provider())
        .with_expect_status([404])
        .build()
        .unwrap()
        .run()
        .await;
    assert_eq!(o.status, Status::Ok, "{}", o.message);
}

#[tokio::test]
async fn mariadb_greeting_without_credentials() {
    let Some(addr) = require_env("HOSTGUARD_MARIADB_ADDR", "MariaDB on loopback") else {
        return;
    };
    let check = MysqlCheck::new(&addr).unwrap();
    let o = check.run().await;
    assert_verdict(&o, Status::Ok, Reason::Ok);
    // Debian 12 ships MariaDB 10.11; the `5.5.5-` prefix it sends is removed.
    assert!(o.message.contains("MariaDB 10.11."), "{}", o.message);
    assert!(!o.message.contains("5.5.5-"), "{}", o.message);
    let v = o.metric("server_version").unwrap();
    assert!((101_100.0..101_200.0).contains(&v), "{v}");
    assert_eq!(o.metric("ping_seconds"), None);
    check_suite(&check, WITHIN).await;
}

#[tokio::test]
async fn mariadb_authenticated_ping() {
    let (Some(addr), Some(user), Some(password)) = (
        require_env("HOSTGUARD_MARIADB_ADDR", "MariaDB on loopback"),
        require_env("HOSTGUARD_MARIADB_USER", "a MariaDB test user"),
        require_env(
            "HOSTGUARD_MARIADB_PASSWORD",
            "the MariaDB test user's password",
        ),
    ) else {
        return;
    };
    let check = MysqlCheck::new(&addr)
        .unwrap()
        .with_credentials(user.clone(), password.clone());
    let o = check.run().await;
    assert_verdict(&o, Status::Ok, Reason::Ok);
    assert!(o.metric("ping_seconds").is_some());
    check_suite(&check, WITHIN).await;

    let wrong = MysqlCheck::new(&addr)
        .unwrap()
        .with_credentials(user.clone(), "not the password");
    let o = wrong.run().await;
    assert_verdict(&o, Status::Critical, Reason::AuthFailed);
    assert!(o.message.contains("error 1045"), "{}", o.message);
    assert!(
        !format!("{wrong:?}").contains("not the password"),
        "Debug must not show the password"
    );
    let o = MysqlCheck::new(&addr)
        .unwrap()
        .with_credentials("nobody", "")
        .run()
        .await;
    assert_eq!(o.reason, Reason::AuthFailed, "{}", o.message);
}

#[tokio::test]
async fn nginx_process_by_pidfile_and_name() {
    let Some(pidfile) = require_env("HOSTGUARD_NGINX_PIDFILE", "nginx's pidfile") else {
        return;
    };
    let check = ProcessCheck::by_pidfile(&pidfile);
    let o = check.run().await;
    assert_verdict(&o, Status::Ok, Reason::Ok);
    check_suite(&check, WITHIN).await;
    let by_name = ProcessCheck::by_name("nginx");
    let o = by_name.run().await;
    assert!(
        o.metric("processes").unwrap() >= 2.0,
        "master and worker: {}",
        o.message
    );
    check_suite(&by_name, WITHIN).await;
}

/// Each network check gives its own verdict for a hung target (through the monitor's timeout),
/// a refused port and a dead DNS name.
#[tokio::test]
async fn hung_refused_and_dead_name_for_every_network_check() {
    let hung = hung_server().await;
    let refused = refused_addr();
    type Make = fn(&str) -> Arc<dyn Check>;
    let kinds: [(&str, Make); 4] = [
        ("tcp", |a| Arc::new(TcpCheck::new(a).unwrap())),
        ("http", |a| {
            Arc::new(
                HttpCheck::builder(format!("http://{a}/"), provider())
                    .build()
                    .unwrap(),
            )
        }),
        ("nginx", |a| {
            Arc::new(
                NginxStatusCheck::new(&format!("http://{a}/nginx-status"), provider(), None)
                    .unwrap(),
            )
        }),
        ("mysql", |a| Arc::new(MysqlCheck::new(a).unwrap())),
    ];
    let mut builder = Monitor::builder();
    for (kind, make) in kinds {
        for (case, addr) in [
            ("hung", hung.to_string()),
            ("refused", refused.to_string()),
            ("dns", "nonexistent.invalid:80".into()),
        ] {
            builder = builder.with_check(
                CheckEntry::builder(format!("{kind}-{case}"), make(&addr))
                    .with_timeout(Duration::from_millis(400))
                    .build()
                    .unwrap(),
            );
        }
    }
    let monitor = builder.build().unwrap();
    let begun = std::time::Instant::now();
    let report = monitor.run().await;
    assert!(
        begun.elapsed() < Duration::from_secs(3),
        "{:?}",
        begun.elapsed()
    );
    for c in &report.checks {
        let want = if c.name.ends_with("-hung") {
            // TCP connects fine to a hung server: accepting is all it asks.
            if c.name == "tcp-hung" {
                Reason::Ok
            } else {
                Reason::Timeout
            }
        } else if c.name.ends_with("-refused") {
            Reason::Refused
        } else {
            Reason::Dns
        };
        assert_eq!(c.reason, want, "{}: {}", c.name, c.message);
        assert!(c.duration < 1.0, "{} took {}", c.name, c.duration);
    }
}
