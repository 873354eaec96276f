//! The BanSink conformance suite against real nftables, inside a network namespace the test makes.

mod netns;

use logban::sink::{NftVerdict, NftablesSink, SinkJail};

#[tokio::test]
async fn nftables_sink_conforms_in_a_namespace() {
    if !netns::can_make_namespaces() {
        return;
    }
    let ns = netns::Netns::create("conf");
    let sink = NftablesSink::builder()
        .with_netns(&ns.name)
        .build()
        .expect("valid sink");
    logban::conformance::run_all(&sink).await;
    // After the suite's cleanup the table is gone.
    let out = ns.exec(&["nft", "list", "tables"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("logban"));
}

#[tokio::test]
async fn nftables_ruleset_has_ports_and_reject() {
    if !netns::can_make_namespaces() {
        return;
    }
    let ns = netns::Netns::create("rules");
    let sink = NftablesSink::builder()
        .with_netns(&ns.name)
        .with_table("hg_test")
        .with_verdict(NftVerdict::Reject)
        .build()
        .expect("valid sink");
    let mut jail = SinkJail::new("nginx-http-auth").expect("valid");
    jail.ports = logban::jail::parse_ports("80,443").expect("ports");
    use logban::BanSink;
    sink.prepare(&jail).await.expect("prepare");
    sink.prepare(&jail).await.expect("prepare again");
    let out = ns.exec(&["nft", "list", "table", "inet", "hg_test"]);
    let ruleset = String::from_utf8_lossy(&out.stdout);
    // Re-preparing does not duplicate rules: per family one TCP-reset rule and one ICMP rule,
    // both restricted to the jail's ports.
    for set in [
        "ip saddr @v4_nginx_2dhttp_2dauth",
        "ip6 saddr @v6_nginx_2dhttp_2dauth",
    ] {
        let reset = format!("tcp dport {{ 80, 443 }} {set} meta l4proto tcp reject with tcp reset");
        assert_eq!(ruleset.matches(&reset).count(), 1, "{ruleset}");
        let icmp = format!("tcp dport {{ 80, 443 }} {set} reject with icmp");
        assert_eq!(ruleset.matches(&icmp).count(), 1, "{ruleset}");
    }
    assert_eq!(ruleset.matches("reject").count(), 4, "{ruleset}");
    assert!(ruleset.contains("flags interval,timeout"), "{ruleset}");
    sink.cleanup().await.expect("cleanup");
}
