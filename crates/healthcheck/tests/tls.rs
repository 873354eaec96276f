//! TLS certificate checks against servers with generated certificates: each failure mode gives
//! its own verdict and the right days left.

mod support;

use std::time::{Duration as StdDuration, SystemTime, UNIX_EPOCH};

use healthcheck::checks::{HttpCheck, TlsCheck};
use healthcheck::conformance::check_suite;
use healthcheck::tls::Roots;
use healthcheck::{Check, Reason, Status};
use support::{Ca, assert_verdict, hung_server, provider, refused_addr, tls_server};
use time::Duration;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn check(addr: std::net::SocketAddr, ca: &Ca, name: &str) -> TlsCheck {
    TlsCheck::builder(addr.to_string(), provider())
        .with_server_name(name)
        .with_roots(Roots::from_pem(ca.pem().as_bytes()).unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn valid_leaf_reports_days_left() {
    let ca = Ca::new("hostguard test CA");
    let leaf = ca.leaf("web.test", Duration::hours(-1), Duration::hours(36));
    let not_after = leaf.not_after;
    let addr = tls_server(leaf).await;
    let c = check(addr, &ca, "web.test");
    let o = c.run().await;
    assert_verdict(&o, Status::Ok, Reason::Ok);
    let days = o.metric("days_left").unwrap();
    let expected = (not_after - now()) as f64 / 86_400.0;
    assert!(
        (days - expected).abs() < 0.01,
        "days_left {days}, expected {expected}"
    );
    assert!(
        days > 1.49 && days <= 1.5,
        "36 hours is 1.5 days, got {days}"
    );
    assert!(o.message.contains("valid for 1 more days"), "{}", o.message);
    check_suite(&c, StdDuration::from_secs(5)).await;
}

#[tokio::test]
async fn expired_leaf_is_expired_with_its_dates() {
    let ca = Ca::new("hostguard test CA");
    let leaf = ca.leaf(
        "web.test",
        Duration::days(-100),
        Duration::days(-3) - Duration::hours(2),
    );
    let addr = tls_server(leaf).await;
    let c = check(addr, &ca, "web.test");
    let o = c.run().await;
    assert_verdict(&o, Status::Critical, Reason::CertExpired);
    let days = o
        .metric("days_left")
        .expect("an expired certificate's dates are still read");
    assert!(days < -3.0 && days > -3.1, "{days}");
    assert!(o.message.contains("expired 3 days ago"), "{}", o.message);
    check_suite(&c, StdDuration::from_secs(5)).await;
}

#[tokio::test]
async fn future_leaf_is_not_yet_valid() {
    let ca = Ca::new("hostguard test CA");
    let leaf = ca.leaf("web.test", Duration::days(2), Duration::days(90));
    let addr = tls_server(leaf).await;
    let o = check(addr, &ca, "web.test").run().await;
    assert_verdict(&o, Status::Critical, Reason::CertNotYetValid);
    let days = o.metric("days_left").unwrap();
    assert!((days - 90.0).abs() < 0.01, "{days}");
}

#[tokio::test]
async fn leaf_of_another_ca_is_untrusted() {
    let ca = Ca::new("hostguard test CA");
    let other = Ca::new("someone else's CA");
    let leaf = other.leaf("web.test", Duration::hours(-1), Duration::days(10));
    let addr = tls_server(leaf).await;
    let o = check(addr, &ca, "web.test").run().await;
    assert_verdict(&o, Status::Critical, Reason::CertUntrusted);
    let days = o.metric("days_left").unwrap();
    assert!(days > 9.99 && days <= 10.0, "{days}");
}

#[tokio::test]
async fn leaf_for_another_name_is_a_name_mismatch() {
    let ca = Ca::new("hostguard test CA");
    let leaf = ca.leaf("other.test", Duration::hours(-1), Duration::hours(36));
    let addr = tls_server(leaf).await;
    let o = check(addr, &ca, "web.test").run().await;
    assert_verdict(&o, Status::Critical, Reason::CertNameMismatch);
    assert!(
        o.message.contains("not valid for web.test"),
        "{}",
        o.message
    );
    assert!(o.metric("days_left").unwrap() > 1.49);
}

#[tokio::test]
async fn hung_refused_and_dead_name_each_have_their_verdict() {
    let ca = Ca::new("hostguard test CA");
    let hung = check(hung_server().await, &ca, "web.test");
    let o = tokio::time::timeout(StdDuration::from_millis(300), hung.run()).await;
    assert!(
        o.is_err(),
        "a hung TLS server never answers; the monitor's timeout ends the run"
    );

    let o = check(refused_addr(), &ca, "web.test").run().await;
    assert_verdict(&o, Status::Critical, Reason::Refused);
    let c = TlsCheck::builder("nonexistent.invalid:443", provider())
        .with_roots(Roots::from_pem(ca.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let o = c.run().await;
    assert_verdict(&o, Status::Critical, Reason::Dns);
}

/// HTTPS through reqwest on the same rustls gives the same certificate verdicts.
#[tokio::test]
async fn https_check_with_private_ca() {
    let ca = Ca::new("hostguard test CA");
    let roots = || Roots::from_pem(ca.pem().as_bytes()).unwrap();
    let good = tls_server(ca.leaf("localhost", Duration::hours(-1), Duration::days(30))).await;
    let c = HttpCheck::builder(format!("https://localhost:{}/", good.port()), provider())
        .with_roots(roots())
        .with_body_contains("hello over tls")
        .build()
        .unwrap();
    let o = c.run().await;
    assert_verdict(&o, Status::Ok, Reason::Ok);
    check_suite(&c, StdDuration::from_secs(5)).await;

    let expired = tls_server(ca.leaf("localhost", Duration::days(-40), Duration::days(-1))).await;
    let o = HttpCheck::builder(format!("https://localhost:{}/", expired.port()), provider())
        .with_roots(roots())
        .build()
        .unwrap()
        .run()
        .await;
    assert_verdict(&o, Status::Critical, Reason::CertExpired);
    // Without the private CA the system roots do not trust it.
    let o = HttpCheck::builder(format!("https://localhost:{}/", good.port()), provider())
        .build()
        .unwrap()
        .run()
        .await;
    assert_verdict(&o, Status::Critical, Reason::CertUntrusted);
}
