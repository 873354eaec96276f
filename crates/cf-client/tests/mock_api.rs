//! The client against the local mock Cloudflare API, which enforces the protocol and validates
//! every body against the OpenAPI subset.

use std::time::Duration;

use cf_client::access::{AccessFilter, AccessMode, AccessTarget, Scope};
use cf_client::dns::{DnsFilter, RecordData, RecordSpec};
use cf_client::lists::NewItem;
use cf_client::mock::{Fault, MOCK_ACCOUNT, MOCK_TOKEN, MockCloudflare};
use cf_client::plan::{self, ApplyMode, DesiredZone};
use cf_client::rulesets::RateLimitRule;
use cf_client::settings::{MinTls, TlsSettings};
use cf_client::{Client, Error};
use futures::TryStreamExt;
use serde_json::json;

const ZONE: &str = "example.com";

async fn mock() -> MockCloudflare {
    MockCloudflare::builder()
        .with_zone(ZONE)
        .with_zone("example.org")
        .start()
        .await
        .expect("mock starts")
}

fn client(mock: &MockCloudflare) -> Client {
    Client::builder()
        .with_token(MOCK_TOKEN)
        .with_base_url(mock.url())
        .with_backoff(Duration::from_millis(10), Duration::from_millis(200))
        .with_timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

fn assert_clean(mock: &MockCloudflare) {
    let violations = mock.violations();
    assert!(violations.is_empty(), "spec violations: {violations:#?}");
}

fn a(ip: &str) -> RecordData {
    RecordData::A(ip.parse().expect("ip"))
}

fn desired(count: usize) -> DesiredZone {
    let mut records: Vec<RecordSpec> = (0..count)
        .map(|i| {
            RecordSpec::new(
                format!("host{i}.{ZONE}"),
                a(&format!("192.0.2.{}", i % 250 + 1)),
            )
            .with_ttl(300)
        })
        .collect();
    records.push(RecordSpec::new(
        ZONE,
        RecordData::Caa {
            flags: 0,
            tag: "issue".into(),
            value: "letsencrypt.org".into(),
        },
    ));
    records.push(
        RecordSpec::new(format!("www.{ZONE}"), RecordData::Cname(ZONE.into())).with_proxied(true),
    );
    records.push(RecordSpec::new(
        ZONE,
        RecordData::Mx {
            priority: 10,
            exchange: format!("mail.{ZONE}"),
        },
    ));
    DesiredZone::new(ZONE, records)
}

/// No two records of the zone have the same type, name and value.
fn assert_no_duplicates(mock: &MockCloudflare, expected: usize) {
    let records = mock.records(ZONE);
    let mut keys: Vec<String> = records
        .iter()
        .map(|r| format!("{} {} {} {}", r["type"], r["name"], r["content"], r["data"]))
        .collect();
    keys.sort();
    let before = keys.len();
    keys.dedup();
    assert_eq!(before, keys.len(), "duplicate records at the mock");
    assert_eq!(records.len(), expected, "record count");
}

#[tokio::test]
async fn bad_tokens_and_legacy_keys() {
    let mock = MockCloudflare::builder()
        .with_zone(ZONE)
        .with_legacy_key("ops@example.com", "legacy-global-key")
        .start()
        .await
        .expect("mock");
    assert_eq!(
        client(&mock).verify_token().await.expect("verify"),
        "active"
    );
    let bad = Client::builder()
        .with_token("wrong-token-secret")
        .with_base_url(mock.url())
        .build()
        .expect("client");
    let err = bad.find_zone(ZONE).await.expect_err("bad token fails");
    assert!(err.is_auth(), "{err}");
    assert!(err.has_code(10000), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("wrong-token-secret"));
    let legacy = Client::builder()
        .with_legacy_key("ops@example.com", "legacy-global-key")
        .with_base_url(mock.url())
        .build()
        .expect("client");
    assert_eq!(legacy.find_zone(ZONE).await.expect("zone").name, ZONE);
    let wrong = Client::builder()
        .with_legacy_key("ops@example.com", "not-the-key")
        .with_base_url(mock.url())
        .build()
        .expect("client");
    assert!(
        wrong
            .find_zone(ZONE)
            .await
            .expect_err("wrong key")
            .is_auth()
    );
    let missing = client(&mock).find_zone("missing.example").await;
    assert!(matches!(missing, Err(Error::NotFound { kind: "zone", .. })));
    assert_clean(&mock);
}

#[tokio::test]
async fn plan_apply_is_idempotent_and_leaves_unmanaged_records() {
    let mock = mock().await;
    let client = client(&mock);
    // Made in the dashboard: an unknown type, and a record set the file does not mention.
    mock.insert_record(
        ZONE,
        json!({"type": "SSHFP", "name": format!("ssh.{ZONE}"), "content": "4 2 abcd",
               "data": {"algorithm": 4, "type": 2, "fingerprint": "abcd"}}),
    );
    mock.insert_record(
        ZONE,
        json!({"type": "TXT", "name": format!("keep.{ZONE}"), "content": "hand made"}),
    );
    let listed = client
        .list_dns_records(&mock.zone_id(ZONE).expect("zone"), &DnsFilter::all())
        .await
        .expect("listing with an unknown type works");
    assert!(
        listed
            .iter()
            .any(|r| matches!(&r.spec.data, RecordData::Other { kind, .. } if kind == "SSHFP"))
    );
    let want = desired(20);
    let plan = client.plan_dns(&want).await.expect("plan");
    assert_eq!(plan.summary().create, 23);
    assert_eq!(plan.summary().delete, 0);
    assert!(
        plan.to_string()
            .contains("+ example.com CAA 0 issue \"letsencrypt.org\"")
    );
    // The dry run changed nothing.
    assert_eq!(mock.records(ZONE).len(), 2);
    let report = plan::apply(&client, &want, ApplyMode::OneByOne, 3)
        .await
        .expect("apply");
    assert_eq!(report.done.create, 23);
    assert_no_duplicates(&mock, 25);
    assert!(client.plan_dns(&want).await.expect("plan").is_empty());
    // A changed TTL and a removed record.
    let mut changed = want.clone();
    changed.records[0].ttl = Some(600);
    changed.records.remove(1);
    let plan = client.plan_dns(&changed).await.expect("plan");
    let s = plan.summary();
    assert_eq!((s.update, s.delete, s.create), (1, 0, 0), "{plan}");
    // host1's set is no longer mentioned, so it is unmanaged and stays; prune deletes it and
    // the hand-made records, never the apex NS.
    let pruned = changed.clone().with_prune(true);
    let plan = client.plan_dns(&pruned).await.expect("plan");
    assert_eq!(plan.summary().delete, 3, "{plan}");
    plan::apply(&client, &pruned, ApplyMode::Batch { size: 200 }, 3)
        .await
        .expect("apply pruned");
    assert_no_duplicates(&mock, 22);
    assert!(client.plan_dns(&pruned).await.expect("plan").is_empty());
    assert_clean(&mock);
}

#[tokio::test]
async fn batch_apply_splits_and_validates() {
    let mock = mock().await;
    let client = client(&mock);
    let want = desired(450);
    plan::apply(&client, &want, ApplyMode::Batch { size: 200 }, 3)
        .await
        .expect("apply");
    assert_no_duplicates(&mock, 453);
    let batches = mock
        .stats()
        .by_route
        .get("POST /zones/{zone_id}/dns_records")
        .copied()
        .unwrap_or(0);
    assert_eq!(
        batches, 0,
        "batches do not go through the single-record route"
    );
    assert!(client.plan_dns(&want).await.expect("plan").is_empty());
    // An oversized batch is refused by the mock as Cloudflare does.
    let err = plan::apply(&client, &desired(700), ApplyMode::Batch { size: 300 }, 0)
        .await
        .expect_err("too large");
    assert!(err.to_string().contains("200"), "{err}");
    assert_clean(&mock);
}

#[tokio::test]
async fn dns_error_codes_are_kept() {
    let mock = mock().await;
    let client = client(&mock);
    let zone = mock.zone_id(ZONE).expect("zone");
    let spec = RecordSpec::new(format!("a.{ZONE}"), a("192.0.2.1"));
    let created = client
        .create_dns_record(&zone, &spec)
        .await
        .expect("create");
    let err = client
        .create_dns_record(&zone, &spec)
        .await
        .expect_err("dup");
    assert_eq!(err.codes(), vec![81058], "{err}");
    let cname = RecordSpec::new(format!("a.{ZONE}"), RecordData::Cname(ZONE.into()));
    let err = client
        .create_dns_record(&zone, &cname)
        .await
        .expect_err("conflict");
    assert_eq!(err.codes(), vec![81057], "{err}");
    client
        .delete_dns_record(&zone, &created.id)
        .await
        .expect("delete");
    let err = client
        .delete_dns_record(&zone, &created.id)
        .await
        .expect_err("gone");
    assert_eq!(err.codes(), vec![81044]);
    // The schema makes PATCH carry the record's type, name and content.
    let mut fields = serde_json::Map::new();
    fields.insert("type".into(), json!("A"));
    fields.insert("name".into(), json!(format!("a.{ZONE}")));
    fields.insert("content".into(), json!("192.0.2.1"));
    fields.insert("ttl".into(), json!(300));
    let err = client
        .update_dns_record(&zone, &created.id, fields)
        .await
        .expect_err("gone");
    assert_eq!(err.codes(), vec![81044]);
    let filtered = client
        .list_dns_records(&zone, &DnsFilter::all().with_type("A"))
        .await
        .expect("list");
    assert!(filtered.is_empty());
    assert_clean(&mock);
}

#[tokio::test]
async fn page_and_cursor_pagination() {
    let mut builder = MockCloudflare::builder();
    for i in 0..120 {
        builder = builder.with_zone(&format!("zone{i}.example"));
    }
    let mock = builder.start().await.expect("mock");
    let client = client(&mock);
    let zones: Vec<_> = client.zones().try_collect().await.expect("zones");
    assert_eq!(zones.len(), 120);
    assert_eq!(mock.stats().by_route["GET /zones"], 3);
    assert_eq!(
        client.find_zone("zone77.example").await.expect("find").name,
        "zone77.example"
    );
    let list = client
        .ensure_ip_list(MOCK_ACCOUNT, "paging", "test")
        .await
        .expect("list");
    let items: Vec<NewItem> = (0..1200)
        .map(|i| NewItem::new(format!("198.51.{}.{}", i / 250, i % 250 + 1), None))
        .collect();
    client
        .add_list_items(MOCK_ACCOUNT, &list.id, &items)
        .await
        .expect("add");
    let got = client
        .all_list_items(MOCK_ACCOUNT, &list.id)
        .await
        .expect("items");
    assert_eq!(got.len(), 1200);
    assert_eq!(
        mock.stats().by_route["GET /accounts/{account_id}/rules/lists/{list_id}/items"],
        3
    );
    assert_clean(&mock);
}

async fn budget_mock() -> MockCloudflare {
    MockCloudflare::builder()
        .with_zone(ZONE)
        .with_budget(10, Duration::from_secs(2))
        .start()
        .await
        .expect("mock")
}

fn limited_client(mock: &MockCloudflare, requests: u32) -> Client {
    Client::builder()
        .with_token(MOCK_TOKEN)
        .with_base_url(mock.url())
        .with_rate_limit(requests, Duration::from_secs(2))
        .with_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .expect("client")
}

#[tokio::test]
async fn over_budget_gets_429_and_the_client_waits() {
    let mock = budget_mock().await;
    // A client allowed more than the mock's budget runs into 429s and honours retry-after.
    let eager = limited_client(&mock, 1000);
    let start = std::time::Instant::now();
    for _ in 0..15 {
        eager.verify_token().await.expect("verify eventually");
    }
    assert!(eager.stats().rate_limited >= 1);
    assert!(mock.stats().over_budget >= 1);
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "waited for retry-after"
    );
    // A client whose limiter is below the budget never sees one.
    let mock = budget_mock().await;
    let careful = limited_client(&mock, 9);
    for _ in 0..15 {
        careful.verify_token().await.expect("verify");
    }
    assert_eq!(careful.stats().rate_limited, 0);
    assert_eq!(mock.stats().over_budget, 0);
    assert!(mock.stats().max_in_window <= 10);
}

#[tokio::test]
async fn apply_converges_through_faults_without_duplicates() {
    for mode in [ApplyMode::OneByOne, ApplyMode::Batch { size: 50 }] {
        let mock = mock().await;
        let client = Client::builder()
            .with_token(MOCK_TOKEN)
            .with_base_url(mock.url())
            .with_backoff(Duration::from_millis(5), Duration::from_millis(50))
            .with_timeout(Duration::from_millis(300))
            .build()
            .expect("client");
        mock.inject(Fault::ServerError, 3, Some("POST"));
        mock.inject(Fault::DropAfter, 2, Some("POST"));
        mock.inject(Fault::Slow(Duration::from_millis(600)), 2, Some("POST"));
        mock.inject(Fault::RateLimited, 4, None);
        mock.inject(Fault::DropBefore, 2, Some("GET"));
        let want = desired(120);
        let report = plan::apply(&client, &want, mode, 10)
            .await
            .expect("converges");
        assert!(
            report.replans >= 1,
            "{mode:?}: the lost answers forced a re-plan"
        );
        assert_no_duplicates(&mock, 123);
        assert!(client.plan_dns(&want).await.expect("plan").is_empty());
        assert!(client.stats().retries >= 5, "{:?}", client.stats());
        assert_clean(&mock);
    }
}

#[tokio::test]
async fn tls_settings_are_ensured_and_reported() {
    let mock = mock().await;
    let client = client(&mock);
    let zone = mock.zone_id(ZONE).expect("zone");
    let report = client
        .ensure_tls_settings(&zone, &TlsSettings::strict())
        .await
        .expect("ensure");
    assert_eq!(report.iter().filter(|c| c.changed()).count(), 4);
    assert_eq!(mock.setting(ZONE, "ssl"), Some(json!("strict")));
    assert_eq!(mock.setting(ZONE, "min_tls_version"), Some(json!("1.2")));
    let again = client
        .ensure_tls_settings(&zone, &TlsSettings::strict())
        .await
        .expect("ensure");
    assert!(again.iter().all(|c| !c.changed()));
    let stricter = TlsSettings::strict().with_min_tls_version(MinTls::V1_3);
    let report = client
        .ensure_tls_settings(&zone, &stricter)
        .await
        .expect("ensure");
    let changed: Vec<_> = report.iter().filter(|c| c.changed()).collect();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].setting, "min_tls_version");
    assert_eq!(changed[0].before, json!("1.2"));
    assert_clean(&mock);
}

#[tokio::test]
async fn rate_limit_rules_are_managed_by_ref() {
    let mock = mock().await;
    let client = client(&mock);
    let zone = mock.zone_id(ZONE).expect("zone");
    let login = RateLimitRule::login_limit("hostguard_login", "/wp-login.php", 10, 60, 600);
    let report = client
        .ensure_rate_limit_rules(&zone, "hostguard_", std::slice::from_ref(&login))
        .await
        .expect("ensure");
    assert_eq!(report.added, vec!["hostguard_login".to_owned()]);
    let again = client
        .ensure_rate_limit_rules(&zone, "hostguard_", std::slice::from_ref(&login))
        .await
        .expect("ensure");
    assert!(again.is_unchanged(), "{again:?}");
    let writes =
        mock.stats().by_route["PUT /zones/{zone_id}/rulesets/phases/{ruleset_phase}/entrypoint"];
    assert_eq!(writes, 1, "an unchanged ensure writes nothing");
    let mut tighter = login.clone();
    tighter.requests_per_period = 5;
    let report = client
        .ensure_rate_limit_rules(&zone, "hostguard_", &[tighter])
        .await
        .expect("ensure");
    assert_eq!(report.updated, vec!["hostguard_login".to_owned()]);
    let rules = mock.rate_limit_rules(ZONE);
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["ratelimit"]["requests_per_period"], 5);
    let report = client
        .ensure_rate_limit_rules(&zone, "hostguard_", &[])
        .await
        .expect("ensure");
    assert_eq!(report.removed, vec!["hostguard_login".to_owned()]);
    assert!(mock.rate_limit_rules(ZONE).is_empty());
    assert_clean(&mock);
}

#[tokio::test]
async fn access_rules_and_list_operations() {
    let mock = mock().await;
    let client = client(&mock);
    let zone = Scope::Zone(mock.zone_id(ZONE).expect("zone"));
    let account = Scope::Account(MOCK_ACCOUNT.into());
    for scope in [&zone, &account] {
        let target = AccessTarget::for_net(&"2001:db8:1:2::/64".parse().expect("net"));
        assert_eq!(target.target, "ip_range");
        let rule = client
            .create_access_rule(scope, AccessMode::Block, &target, "abuse")
            .await
            .expect("create");
        let host = AccessTarget::for_net(&"192.0.2.9/32".parse().expect("net"));
        client
            .create_access_rule(scope, AccessMode::Challenge, &host, "other")
            .await
            .expect("create");
        let found = client
            .list_access_rules(scope, &AccessFilter::default().with_notes("abuse"))
            .await
            .expect("list");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].configuration.value, "2001:db8:1:2::/64");
        client
            .delete_access_rule(scope, &rule.id)
            .await
            .expect("delete");
        assert_eq!(
            client
                .list_access_rules(scope, &AccessFilter::default())
                .await
                .expect("list")
                .len(),
            1
        );
    }
    // A bulk operation that fails is reported with Cloudflare's message.
    let small = MockCloudflare::builder()
        .with_max_list_items(3)
        .start()
        .await
        .expect("mock");
    let c = self::client(&small);
    let list = c
        .ensure_ip_list(MOCK_ACCOUNT, "small", "")
        .await
        .expect("list");
    let items: Vec<NewItem> = (1..=4)
        .map(|i| NewItem::new(format!("192.0.2.{i}"), None))
        .collect();
    let err = c
        .add_list_items(MOCK_ACCOUNT, &list.id, &items)
        .await
        .expect_err("too many");
    assert!(matches!(&err, Error::Operation { reason, .. } if reason.contains("maximum")));
    // Two writers at once: the second gets 429 while the first's operation runs (800 ms
    // here), and retries after `retry-after`.
    let slow = MockCloudflare::builder()
        .with_operation_time(Duration::from_millis(800))
        .start()
        .await
        .expect("mock");
    let c = self::client(&slow);
    let shared = c
        .ensure_ip_list(MOCK_ACCOUNT, "shared", "")
        .await
        .expect("list")
        .id;
    let first = [NewItem::new("192.0.2.1", None)];
    let second = [NewItem::new("192.0.2.2", None)];
    let (r1, r2) = tokio::join!(c.add_list_items(MOCK_ACCOUNT, &shared, &first), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.add_list_items(MOCK_ACCOUNT, &shared, &second).await
    });
    r1.expect("first");
    r2.expect("second");
    assert_eq!(slow.list_items("shared").len(), 2);
    assert!(c.stats().rate_limited >= 1);
    assert_clean(&slow);
    assert_clean(&mock);
    assert_clean(&small);
}
