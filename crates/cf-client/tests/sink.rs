//! The Cloudflare ban sink runs logban's sink conformance suite against the mock, and
//! converges through faults without duplicate items.

use std::time::Duration;

use cf_client::Client;
use cf_client::access::Scope;
use cf_client::mock::{Fault, MOCK_ACCOUNT, MOCK_TOKEN, MockCloudflare};
use cf_client::sink::{CloudflareSink, EdgeTarget};
use ipnet::IpNet;
use logban::BanSink;

fn client(mock: &MockCloudflare) -> Client {
    Client::builder()
        .with_token(MOCK_TOKEN)
        .with_base_url(mock.url())
        .with_backoff(Duration::from_millis(5), Duration::from_millis(100))
        .with_timeout(Duration::from_millis(500))
        .build()
        .expect("client")
}

fn list_target() -> EdgeTarget {
    EdgeTarget::IpList {
        account_id: MOCK_ACCOUNT.into(),
        name: "hostguard_bans".into(),
    }
}

fn net(text: &str) -> IpNet {
    text.parse().expect("net")
}

#[tokio::test]
async fn ip_list_sink_conforms() {
    let mock = MockCloudflare::builder().start().await.expect("mock");
    let sink = CloudflareSink::builder(client(&mock), list_target())
        .build()
        .expect("sink");
    logban::conformance::run_all(&sink).await;
    assert!(mock.violations().is_empty(), "{:#?}", mock.violations());
}

#[tokio::test]
async fn access_rule_sink_conforms() {
    let mock = MockCloudflare::start_with_zone("example.com")
        .await
        .expect("mock");
    let zone = mock.zone_id("example.com").expect("zone");
    // Access rules take IPv6 hosts and /64 prefixes, which is all the suite bans.
    let sink = CloudflareSink::builder(client(&mock), EdgeTarget::AccessRules(Scope::Zone(zone)))
        .build()
        .expect("sink");
    logban::conformance::run_all(&sink).await;
    assert!(mock.violations().is_empty(), "{:#?}", mock.violations());
}

#[tokio::test]
async fn ipv6_hosts_widen_to_their_64_and_foreign_items_stay() {
    let mock = MockCloudflare::builder().start().await.expect("mock");
    let client = client(&mock);
    let list = client
        .ensure_ip_list(MOCK_ACCOUNT, "hostguard_bans", "")
        .await
        .expect("list");
    client
        .add_list_items(
            MOCK_ACCOUNT,
            &list.id,
            &[cf_client::lists::NewItem::new(
                "203.0.113.7",
                Some("added by hand".into()),
            )],
        )
        .await
        .expect("foreign item");
    let narrow = CloudflareSink::builder(client.clone(), list_target())
        .build()
        .expect("sink");
    let err = narrow
        .ban("sshd", net("2001:db8:5:6::/96"), None)
        .await
        .expect_err("a /96 is refused by Cloudflare");
    assert!(err.to_string().contains("/64"), "{err}");
    let sink = CloudflareSink::builder(client, list_target())
        .with_ipv6_widened_to_64(true)
        .build()
        .expect("sink");
    sink.ban("sshd", net("2001:db8:5:6::1/128"), None)
        .await
        .expect("ban");
    assert_eq!(
        sink.list("sshd").await.expect("list"),
        vec![net("2001:db8:5:6::/64")]
    );
    // The same /64 from another jail shares the item.
    sink.ban("nginx", net("2001:db8:5:6::2/128"), None)
        .await
        .expect("ban");
    let items = mock.list_items("hostguard_bans");
    assert_eq!(items.len(), 2, "{items:?}");
    sink.unban("sshd", net("2001:db8:5:6::1/128"))
        .await
        .expect("unban");
    assert!(sink.list("sshd").await.expect("list").is_empty());
    assert_eq!(sink.list("nginx").await.expect("list").len(), 1);
    sink.cleanup().await.expect("cleanup");
    assert_eq!(
        mock.list_items("hostguard_bans"),
        vec![("203.0.113.7".to_owned(), Some("added by hand".to_owned()))]
    );
    assert!(mock.violations().is_empty(), "{:#?}", mock.violations());
}

#[tokio::test]
async fn bans_converge_through_faults() {
    let mock = MockCloudflare::builder().start().await.expect("mock");
    let sink = CloudflareSink::builder(client(&mock), list_target())
        .build()
        .expect("sink");
    let targets: Vec<IpNet> = (1..=200)
        .map(|i| net(&format!("198.51.100.{}/32", i % 250)))
        .collect();
    mock.inject(Fault::RateLimited, 5, None);
    mock.inject(Fault::ServerError, 2, Some("GET"));
    mock.inject(Fault::DropAfter, 1, Some("POST"));
    mock.inject(Fault::Slow(Duration::from_millis(800)), 1, Some("GET"));
    let actions: Vec<logban::BanAction> = targets
        .iter()
        .map(|t| logban::BanAction::Ban {
            jail: "sshd".into(),
            target: *t,
            timeout: Some(Duration::from_secs(600)),
        })
        .collect();
    // The engine retries a failed batch; do the same until it goes through.
    let mut attempts = 0;
    while let Err(e) = sink.apply(&actions).await {
        attempts += 1;
        assert!(attempts < 5, "does not converge: {e}");
    }
    let mut listed = sink.list("sshd").await.expect("list");
    listed.sort();
    let mut expected = targets.clone();
    expected.sort();
    expected.dedup();
    assert_eq!(listed, expected);
    let items = mock.list_items("hostguard_bans");
    assert_eq!(items.len(), expected.len(), "no duplicate items");
    assert!(mock.violations().is_empty(), "{:#?}", mock.violations());
}

#[tokio::test]
async fn single_bans_reuse_the_listing_and_other_servers_are_seen() {
    let mock = MockCloudflare::builder().start().await.expect("mock");
    let sink = CloudflareSink::builder(client(&mock), list_target())
        .build()
        .expect("sink");
    let items_route = "GET /accounts/{account_id}/rules/lists/{list_id}/items";
    assert!(sink.list("sshd").await.expect("list").is_empty());
    let listings = mock.stats().by_route[items_route];
    for i in 1..=20 {
        sink.ban("sshd", net(&format!("192.0.2.{i}/32")), None)
            .await
            .expect("ban");
    }
    // Unbanning an item this sink added needs its id: one listing.
    sink.unban("sshd", net("192.0.2.1/32"))
        .await
        .expect("unban");
    assert_eq!(mock.stats().by_route[items_route], listings + 1);
    // Another server bans into the same list; a sink that always lists keeps both jails.
    let other = CloudflareSink::builder(client(&mock), list_target())
        .with_cache_age(Duration::ZERO)
        .build()
        .expect("sink");
    other
        .ban("nginx", net("192.0.2.2/32"), None)
        .await
        .expect("ban");
    assert_eq!(sink.list("sshd").await.expect("list").len(), 19);
    assert_eq!(
        sink.list("nginx").await.expect("list"),
        vec![net("192.0.2.2/32")]
    );
    assert!(mock.violations().is_empty(), "{:#?}", mock.violations());
}
