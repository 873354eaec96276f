//! A flood of failures from millions of distinct addresses, through the engine: memory stays
//! bounded (the jail's tracker is capped and aged) and real attackers inside the flood are
//! still banned.
//!
//! `flood_ten_million_addresses_stays_under_256_mib` is the full campaign (ignored by default;
//! run by `benches/scripts/logban-flood.sh`, which records its figures); the small test runs in
//! CI.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use logban::{BanTime, Engine, Failure, JailConfig, MemorySink};

const NOW: i64 = 1_800_000_000;

/// Flood address `i`: alternately from 10.0.0.0/8 and 2001:db8::/32, all distinct.
fn flood_addr(i: u64) -> IpAddr {
    if i.is_multiple_of(2) {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i / 2) as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i)))
    }
}

fn parse(line: &[u8]) -> Option<Failure> {
    let text = std::str::from_utf8(line).ok()?;
    let addr = text.strip_prefix("auth failure from ")?.parse().ok()?;
    Some(Failure::new(addr, NOW))
}

/// Peak resident set size of this process, in KiB (VmHWM).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Outcome {
    seconds: f64,
    tracked: usize,
    attackers_banned: usize,
    flood_bans: u64,
}

/// Feeds `total` flood lines; attacker `k` fails every `every` lines, starting at line
/// `k * every / attackers`.
async fn flood(total: u64, max_tracked: usize, attackers: &[IpAddr], every: u64) -> Outcome {
    let sink = Arc::new(MemorySink::new());
    let engine = Engine::builder(sink.clone())
        .with_jail(
            JailConfig::builder("flood")
                .with_maxretry(5)
                .with_findtime(Duration::from_secs(3600))
                .with_bantime(BanTime::For(Duration::from_secs(3600)))
                .with_ignore_self(false)
                .with_max_tracked(max_tracked)
                .build()
                .expect("jail"),
        )
        .with_clock(|| NOW)
        .build()
        .await
        .expect("engine");
    let mut matcher = parse;
    let started = Instant::now();
    let mut line = String::with_capacity(64);
    for i in 0..total {
        line.clear();
        line.push_str("auth failure from ");
        line.push_str(&flood_addr(i).to_string());
        engine
            .feed_line("flood", line.as_bytes(), &mut matcher)
            .await
            .expect("feed");
        for (k, attacker) in attackers.iter().enumerate() {
            if (i + k as u64 * every / attackers.len() as u64).is_multiple_of(every) {
                let line = format!("auth failure from {attacker}");
                engine
                    .feed_line("flood", line.as_bytes(), &mut matcher)
                    .await
                    .expect("feed");
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let status = &engine.status()[0];
    Outcome {
        seconds,
        tracked: status.tracked,
        attackers_banned: attackers
            .iter()
            .filter(|a| sink.is_banned("flood", **a))
            .count(),
        flood_bans: status.counters.bans
            - attackers.len().min(status.counters.bans as usize) as u64,
    }
}

fn attackers() -> Vec<IpAddr> {
    ["192.0.2.66", "198.51.100.9", "2001:db8:ffff::bad"]
        .iter()
        .map(|a| a.parse().expect("ip"))
        .collect()
}

#[tokio::test]
async fn capped_engine_bans_attackers_inside_a_flood() {
    let out = flood(300_000, 20_000, &attackers(), 10_000).await;
    assert_eq!(out.attackers_banned, 3);
    assert_eq!(out.flood_bans, 0);
    assert!(out.tracked <= 20_000, "tracked {}", out.tracked);
}

#[tokio::test]
#[ignore = "10 million lines: run by benches/scripts/logban-flood.sh"]
async fn flood_ten_million_addresses_stays_under_256_mib() {
    let total = std::env::var("LOGBAN_FLOOD_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let before = peak_rss_kib().expect("VmHWM");
    // Attackers fail every 100,000 flood lines: five failures take 500,000 lines.
    let out = flood(
        total,
        logban::jail::DEFAULT_MAX_TRACKED,
        &attackers(),
        100_000,
    )
    .await;
    let peak = peak_rss_kib().expect("VmHWM");
    println!(
        "FLOOD lines={total} seconds={:.2} lines_per_sec={:.0} tracked={} attackers_banned={}/3 \
         flood_bans={} peak_rss_kib={peak} rss_before_kib={before}",
        out.seconds,
        total as f64 / out.seconds,
        out.tracked,
        out.attackers_banned,
        out.flood_bans
    );
    assert_eq!(out.attackers_banned, 3);
    assert_eq!(out.flood_bans, 0);
    assert!(peak < 256 * 1024, "peak RSS {peak} KiB");
}
