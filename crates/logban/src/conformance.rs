//! The conformance suites (feature `conformance`): plain async functions every implementation's
//! tests run, like object_store's `integration` module. They panic on a violation.
//!
//! This module is the [`BanSink`] suite; [`source`] is the [`LogSource`](crate::source::LogSource)
//! suite.
//!
//! The suite uses jails `conf_a` and `conf-b` and documentation addresses (192.0.2.0/24,
//! 2001:db8::/32). It takes about three seconds (it waits for a timeout to run out).

use std::collections::BTreeSet;
use std::time::Duration;

use ipnet::IpNet;

use crate::sink::{BanAction, BanSink, SinkJail};

pub mod source;

fn net(text: &str) -> IpNet {
    crate::jail::parse_net(text).expect("conformance suite address")
}

async fn listed(sink: &dyn BanSink, jail: &str) -> BTreeSet<IpNet> {
    sink.list(jail)
        .await
        .expect("list must succeed")
        .into_iter()
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<IpNet> {
    items.iter().map(|s| net(s)).collect()
}

async fn prepare(sink: &dyn BanSink) {
    for name in ["conf_a", "conf-b"] {
        let jail = SinkJail::new(name).expect("valid jail name");
        sink.prepare(&jail).await.expect("prepare");
        // Preparing twice is harmless.
        sink.prepare(&jail).await.expect("prepare is idempotent");
    }
}

/// Runs every check, cleaning up before and after.
pub async fn run_all(sink: &dyn BanSink) {
    sink.cleanup().await.expect("cleanup before");
    ban_list_unban(sink).await;
    batch_applies_in_order(sink).await;
    jails_are_separate(sink).await;
    timeouts_expire_and_rebans_refresh(sink).await;
    cleanup_lifts_bans(sink).await;
}

/// Single bans of IPv4, IPv6 and an IPv6 prefix show up in `list`; unban removes them and is
/// idempotent.
pub async fn ban_list_unban(sink: &dyn BanSink) {
    prepare(sink).await;
    let long = Some(Duration::from_secs(600));
    sink.ban("conf_a", net("192.0.2.1"), long)
        .await
        .expect("ban v4");
    sink.ban("conf_a", net("2001:db8::1"), None)
        .await
        .expect("ban v6");
    sink.ban("conf_a", net("2001:db8:1:2::/64"), long)
        .await
        .expect("ban v6 prefix");
    assert_eq!(
        listed(sink, "conf_a").await,
        set(&["192.0.2.1", "2001:db8::1", "2001:db8:1:2::/64"])
    );
    sink.unban("conf_a", net("2001:db8::1"))
        .await
        .expect("unban");
    sink.unban("conf_a", net("2001:db8::1"))
        .await
        .expect("unbanning an absent target succeeds");
    sink.unban("conf_a", net("192.0.2.99"))
        .await
        .expect("unbanning a never-banned target succeeds");
    assert_eq!(
        listed(sink, "conf_a").await,
        set(&["192.0.2.1", "2001:db8:1:2::/64"])
    );
    sink.unban("conf_a", net("192.0.2.1")).await.expect("unban");
    sink.unban("conf_a", net("2001:db8:1:2::/64"))
        .await
        .expect("unban");
    assert!(listed(sink, "conf_a").await.is_empty());
}

/// A batch is applied in order: a ban followed by its unban leaves nothing.
pub async fn batch_applies_in_order(sink: &dyn BanSink) {
    prepare(sink).await;
    let ban = |t: &str| BanAction::Ban {
        jail: "conf_a".into(),
        target: net(t),
        timeout: Some(Duration::from_secs(600)),
    };
    let batch = [
        ban("192.0.2.10"),
        ban("192.0.2.11"),
        ban("2001:db8::10"),
        BanAction::Unban {
            jail: "conf_a".into(),
            target: net("192.0.2.11"),
        },
    ];
    sink.apply(&batch).await.expect("batch");
    assert_eq!(
        listed(sink, "conf_a").await,
        set(&["192.0.2.10", "2001:db8::10"])
    );
    sink.apply(&[]).await.expect("empty batch");
    let unbans: Vec<BanAction> = ["192.0.2.10", "2001:db8::10"]
        .iter()
        .map(|t| BanAction::Unban {
            jail: "conf_a".into(),
            target: net(t),
        })
        .collect();
    sink.apply(&unbans).await.expect("unban batch");
    assert!(listed(sink, "conf_a").await.is_empty());
}

/// Bans in one jail do not appear in another; unknown jails list as empty.
pub async fn jails_are_separate(sink: &dyn BanSink) {
    prepare(sink).await;
    sink.ban("conf_a", net("192.0.2.20"), None)
        .await
        .expect("ban a");
    sink.ban("conf-b", net("192.0.2.21"), None)
        .await
        .expect("ban b");
    assert_eq!(listed(sink, "conf_a").await, set(&["192.0.2.20"]));
    assert_eq!(listed(sink, "conf-b").await, set(&["192.0.2.21"]));
    assert!(listed(sink, "conf_never_prepared").await.is_empty());
    sink.unban("conf_a", net("192.0.2.20"))
        .await
        .expect("unban a");
    sink.unban("conf-b", net("192.0.2.21"))
        .await
        .expect("unban b");
}

/// A ban with a timeout disappears on its own; banning again refreshes the timeout.
pub async fn timeouts_expire_and_rebans_refresh(sink: &dyn BanSink) {
    prepare(sink).await;
    let short = Some(Duration::from_secs(1));
    sink.ban("conf_a", net("192.0.2.30"), short)
        .await
        .expect("ban");
    sink.ban("conf_a", net("2001:db8::30"), short)
        .await
        .expect("ban");
    sink.ban("conf_a", net("192.0.2.31"), short)
        .await
        .expect("ban");
    sink.ban("conf_a", net("192.0.2.31"), Some(Duration::from_secs(600)))
        .await
        .expect("re-ban");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(listed(sink, "conf_a").await, set(&["192.0.2.31"]));
    sink.unban("conf_a", net("192.0.2.30"))
        .await
        .expect("unbanning an expired target succeeds");
    sink.unban("conf_a", net("192.0.2.31"))
        .await
        .expect("unban");
}

/// `cleanup` lifts every ban; preparing again works afterwards.
pub async fn cleanup_lifts_bans(sink: &dyn BanSink) {
    prepare(sink).await;
    sink.ban("conf_a", net("192.0.2.40"), None)
        .await
        .expect("ban");
    sink.cleanup().await.expect("cleanup");
    assert!(listed(sink, "conf_a").await.is_empty());
    sink.cleanup().await.expect("cleanup is idempotent");
    prepare(sink).await;
    assert!(listed(sink, "conf_a").await.is_empty());
    sink.cleanup().await.expect("final cleanup");
}
