//! Requests and wall time against the local mock (Cloudflare's budget of 1,200 requests per
//! 5 minutes enforced): a DNS plan/apply of 1,000 records one request per change and with
//! the batch endpoint, and banning 10,000 addresses into an IP list through the ban sink; and,
//! with the budget scaled down to 120 requests per 30 s, 300 records one by one with the
//! client's limiter on and off, to show the limiter keeping work larger than the budget under
//! it.
//!
//! `cargo bench -p cf-client --bench cf_figures` (prints a Markdown table; `CF_BENCH_RUNS`
//! sets the runs per scenario, default 3).

use std::time::{Duration, Instant};

use cf_client::Client;
use cf_client::dns::{RecordData, RecordSpec};
use cf_client::mock::{MOCK_ACCOUNT, MOCK_TOKEN, MockCloudflare};
use cf_client::plan::{self, ApplyMode, DesiredZone};
use cf_client::sink::{CloudflareSink, EdgeTarget};
use logban::{BanAction, BanSink};

const ZONE: &str = "bench.example";

struct Row {
    scenario: &'static str,
    run: usize,
    requests: u64,
    retries: u64,
    rate_limited: u64,
    max_in_window: u64,
    over_budget: u64,
    wall: Duration,
}

fn desired(count: u32) -> DesiredZone {
    let records = (0..count)
        .map(|i| {
            let ip = std::net::Ipv4Addr::from(0xc633_6400u32 + i); // 198.51.100.0 upwards
            RecordSpec::new(format!("host{i}.{ZONE}"), RecordData::A(ip)).with_ttl(300)
        })
        .collect();
    DesiredZone::new(ZONE, records)
}

/// A budget scaled down (120 requests per 30 s) so that work larger than the budget runs in
/// seconds instead of many 5-minute windows.
const SCALED_WINDOW: Duration = Duration::from_secs(30);

async fn run_dns(scenario: &'static str, mode: ApplyMode, run: usize) -> Row {
    let mock = MockCloudflare::builder()
        .with_zone(ZONE)
        .start()
        .await
        .expect("mock");
    // The client's defaults: 1,100 requests per 5 minutes, under Cloudflare's 1,200.
    let client = Client::builder()
        .with_token(MOCK_TOKEN)
        .with_base_url(mock.url())
        .build()
        .expect("client");
    apply_records(scenario, mode, run, &mock, &client, 1000).await
}

/// 300 records one by one against a budget of 120 requests per 30 s, with the client's
/// limiter at 110 per 30 s (`limited`) or effectively off.
async fn run_scaled(scenario: &'static str, limited: bool, run: usize) -> Row {
    let mock = MockCloudflare::builder()
        .with_zone(ZONE)
        .with_budget(120, SCALED_WINDOW)
        .start()
        .await
        .expect("mock");
    let client = Client::builder()
        .with_token(MOCK_TOKEN)
        .with_base_url(mock.url())
        .with_rate_limit(if limited { 110 } else { 1_000_000 }, SCALED_WINDOW)
        .with_max_retries(20)
        .build()
        .expect("client");
    apply_records(scenario, ApplyMode::OneByOne, run, &mock, &client, 300).await
}

async fn apply_records(
    scenario: &'static str,
    mode: ApplyMode,
    run: usize,
    mock: &MockCloudflare,
    client: &Client,
    count: u32,
) -> Row {
    let want = desired(count);
    let start = Instant::now();
    let plan = client.plan_dns(&want).await.expect("plan");
    assert_eq!(plan.summary().create, count as usize);
    let report = plan::apply(client, &want, mode, 3).await.expect("apply");
    assert_eq!(report.done.create, count as usize);
    let wall = start.elapsed();
    assert_eq!(mock.records(ZONE).len(), count as usize);
    assert!(mock.violations().is_empty(), "{:?}", mock.violations());
    row(scenario, run, client, mock, wall)
}

async fn run_bans(run: usize) -> Row {
    let mock = MockCloudflare::builder().start().await.expect("mock");
    let client = Client::builder()
        .with_token(MOCK_TOKEN)
        .with_base_url(mock.url())
        .build()
        .expect("client");
    let sink = CloudflareSink::builder(
        client.clone(),
        EdgeTarget::IpList {
            account_id: MOCK_ACCOUNT.into(),
            name: "hostguard_bans".into(),
        },
    )
    .build()
    .expect("sink");
    let start = Instant::now();
    // Ten batches of 1,000, as an engine flushing a flood would send them.
    for chunk in 0..10u32 {
        let actions: Vec<BanAction> = (0..1000u32)
            .map(|i| BanAction::Ban {
                jail: "nginx-limit".into(),
                target: ipnet::IpNet::from(std::net::IpAddr::from(std::net::Ipv4Addr::from(
                    0x0a00_0000u32 + chunk * 1000 + i,
                ))),
                timeout: Some(Duration::from_secs(3600)),
            })
            .collect();
        sink.apply(&actions).await.expect("apply");
    }
    let wall = start.elapsed();
    assert_eq!(mock.list_items("hostguard_bans").len(), 10_000);
    assert!(mock.violations().is_empty(), "{:?}", mock.violations());
    row(
        "ban 10,000 addresses (10 batches)",
        run,
        &client,
        &mock,
        wall,
    )
}

fn row(
    scenario: &'static str,
    run: usize,
    client: &Client,
    mock: &MockCloudflare,
    wall: Duration,
) -> Row {
    let stats = client.stats();
    let mock_stats = mock.stats();
    Row {
        scenario,
        run,
        requests: stats.requests,
        retries: stats.retries,
        rate_limited: stats.rate_limited,
        max_in_window: mock_stats.max_in_window,
        over_budget: mock_stats.over_budget,
        wall,
    }
}

fn main() {
    let runs: usize = std::env::var("CF_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = Vec::new();
    rt.block_on(async {
        for run in 1..=runs {
            rows.push(
                run_dns(
                    "DNS apply 1,000 records, one by one",
                    ApplyMode::OneByOne,
                    run,
                )
                .await,
            );
            rows.push(
                run_dns(
                    "DNS apply 1,000 records, batch endpoint (200/batch)",
                    ApplyMode::Batch { size: 200 },
                    run,
                )
                .await,
            );
            rows.push(run_bans(run).await);
            rows.push(
                run_scaled(
                    "scaled budget 120/30 s: 300 records one by one, limiter 110/30 s",
                    true,
                    run,
                )
                .await,
            );
            rows.push(
                run_scaled(
                    "scaled budget 120/30 s: 300 records one by one, limiter off (peer)",
                    false,
                    run,
                )
                .await,
            );
        }
    });
    println!(
        "| scenario | run | requests | retries | 429s | max requests in any window (mock) | over budget (mock) | wall time |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.2} s |",
            r.scenario,
            r.run,
            r.requests,
            r.retries,
            r.rate_limited,
            r.max_in_window,
            r.over_budget,
            r.wall.as_secs_f64()
        );
    }
}
