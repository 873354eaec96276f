//! `cf-dns`, `cf-ssl` and `cf-ban` run against the local mock Cloudflare API.

use cf_client::mock::{MOCK_ACCOUNT, MOCK_TOKEN, MockCloudflare};

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn run(tool: &str, mock: &MockCloudflare, token: &str, args: &[&str]) -> Output {
    let exe = match tool {
        "cf-dns" => env!("CARGO_BIN_EXE_cf-dns"),
        "cf-ssl" => env!("CARGO_BIN_EXE_cf-ssl"),
        _ => env!("CARGO_BIN_EXE_cf-ban"),
    };
    let out = tokio::process::Command::new(exe)
        .args(args)
        .env("CF_API_URL", mock.url())
        .env("CF_API_TOKEN", token)
        .env_remove("CF_ACCOUNT_ID")
        .output()
        .await
        .expect("tool runs");
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn mock() -> MockCloudflare {
    MockCloudflare::start_with_zone("example.com")
        .await
        .expect("mock")
}

#[tokio::test(flavor = "multi_thread")]
async fn cf_dns_plans_applies_and_reports_bad_input() {
    let mock = mock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("zone.toml");
    std::fs::write(
        &file,
        r#"zone = "example.com"

[[record]]
name = "www"
type = "A"
content = "192.0.2.10"
ttl = 300

[[record]]
name = "@"
type = "CAA"
data = { flags = 0, tag = "issue", value = "letsencrypt.org" }
"#,
    )
    .expect("write");
    let path = file.to_str().expect("utf-8 path");
    let plan = run("cf-dns", &mock, MOCK_TOKEN, &["plan", path]).await;
    assert!(plan.ok, "{}", plan.stderr);
    assert!(
        plan.stdout
            .contains("+ www.example.com A 192.0.2.10 ttl=300"),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("2 to create"), "{}", plan.stdout);
    assert!(mock.records("example.com").is_empty(), "plan is a dry run");
    let dry = run("cf-dns", &mock, MOCK_TOKEN, &["apply", "--dry-run", path]).await;
    assert!(dry.ok && mock.records("example.com").is_empty());
    let apply = run("cf-dns", &mock, MOCK_TOKEN, &["apply", path]).await;
    assert!(apply.ok, "{}", apply.stderr);
    assert!(apply.stdout.contains("2 created"), "{}", apply.stdout);
    assert_eq!(mock.records("example.com").len(), 2);
    let again = run("cf-dns", &mock, MOCK_TOKEN, &["apply", path]).await;
    assert!(again.stdout.contains("nothing to do"), "{}", again.stdout);

    let bad_token = run("cf-dns", &mock, "not-the-token", &["plan", path]).await;
    assert!(!bad_token.ok);
    assert!(
        bad_token.stderr.contains("Authentication error (10000)"),
        "{}",
        bad_token.stderr
    );
    assert!(
        bad_token
            .stderr
            .contains("hint: Cloudflare refused the credentials")
    );
    assert!(!bad_token.stderr.contains("not-the-token"));

    std::fs::write(&file, "zone = \"missing.example\"\n").expect("write");
    let missing = run("cf-dns", &mock, MOCK_TOKEN, &["plan", path]).await;
    assert!(!missing.ok);
    assert!(
        missing.stderr.contains("zone `missing.example` not found"),
        "{}",
        missing.stderr
    );

    std::fs::write(
        &file,
        "zone = \"example.com\"\n[[record]]\nname = \"x\"\ntype = \"A\"\ncontent = \"nope\"\n",
    )
    .expect("write");
    let malformed = run("cf-dns", &mock, MOCK_TOKEN, &["plan", path]).await;
    assert!(!malformed.ok);
    assert!(
        malformed
            .stderr
            .contains("record #1: A record `x.example.com`"),
        "{}",
        malformed.stderr
    );
    assert!(mock.violations().is_empty(), "{:?}", mock.violations());
}

#[tokio::test(flavor = "multi_thread")]
async fn cf_ssl_shows_and_enforces() {
    let mock = mock().await;
    let show = run("cf-ssl", &mock, MOCK_TOKEN, &["show", "example.com"]).await;
    assert!(show.ok, "{}", show.stderr);
    assert!(
        show.stdout.contains("ssl                \"flexible\""),
        "{}",
        show.stdout
    );
    let enforce = run("cf-ssl", &mock, MOCK_TOKEN, &["enforce", "example.com"]).await;
    assert!(enforce.ok, "{}", enforce.stderr);
    assert!(
        enforce
            .stdout
            .contains("ssl                \"flexible\" -> \"strict\""),
        "{}",
        enforce.stdout
    );
    assert_eq!(
        mock.setting("example.com", "min_tls_version"),
        Some(serde_json::json!("1.2"))
    );
    let again = run("cf-ssl", &mock, MOCK_TOKEN, &["enforce", "example.com"]).await;
    assert_eq!(
        again.stdout.matches("(unchanged)").count(),
        4,
        "{}",
        again.stdout
    );
    let missing = run("cf-ssl", &mock, MOCK_TOKEN, &["show", "nope.example"]).await;
    assert!(
        !missing.ok && missing.stderr.contains("hint: no zone of that name"),
        "{}",
        missing.stderr
    );
    let bad = run(
        "cf-ssl",
        &mock,
        MOCK_TOKEN,
        &["enforce", "example.com", "--min-tls", "1.5"],
    )
    .await;
    assert!(
        !bad.ok && bad.stderr.contains("not one of 1.0, 1.1, 1.2, 1.3"),
        "{}",
        bad.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cf_ban_bans_lists_and_unbans() {
    let mock = mock().await;
    let acct = ["--account", MOCK_ACCOUNT];
    let ban = run(
        "cf-ban",
        &mock,
        MOCK_TOKEN,
        &[&acct[..], &["ban", "192.0.2.7", "--for", "600"]].concat(),
    )
    .await;
    assert!(ban.ok, "{}", ban.stderr);
    let ban6 = run(
        "cf-ban",
        &mock,
        MOCK_TOKEN,
        &[&acct[..], &["--widen-ipv6", "ban", "2001:db8::7"]].concat(),
    )
    .await;
    assert!(ban6.ok, "{}", ban6.stderr);
    assert!(ban6.stdout.contains("2001:db8::/64"), "{}", ban6.stdout);
    let list = run(
        "cf-ban",
        &mock,
        MOCK_TOKEN,
        &[&acct[..], &["list"]].concat(),
    )
    .await;
    assert_eq!(list.stdout, "192.0.2.7\n2001:db8::/64\n");
    assert_eq!(mock.list_items("hostguard_bans").len(), 2);
    let unban = run(
        "cf-ban",
        &mock,
        MOCK_TOKEN,
        &[&acct[..], &["unban", "192.0.2.7"]].concat(),
    )
    .await;
    assert!(unban.ok, "{}", unban.stderr);
    assert_eq!(mock.list_items("hostguard_bans").len(), 1);
    let zone = run(
        "cf-ban",
        &mock,
        MOCK_TOKEN,
        &["--zone", "example.com", "ban", "198.51.100.9"],
    )
    .await;
    assert!(zone.ok, "{}", zone.stderr);
    assert_eq!(mock.access_rules(Some("example.com")).len(), 1);
    let bad = run(
        "cf-ban",
        &mock,
        MOCK_TOKEN,
        &[&acct[..], &["ban", "not-an-ip"]].concat(),
    )
    .await;
    assert!(
        !bad.ok && bad.stderr.contains("`not-an-ip` is not an IP address"),
        "{}",
        bad.stderr
    );
    let none = run("cf-ban", &mock, MOCK_TOKEN, &["list"]).await;
    assert!(
        !none.ok && none.stderr.contains("--account"),
        "{}",
        none.stderr
    );
    assert!(mock.violations().is_empty(), "{:?}", mock.violations());
}
