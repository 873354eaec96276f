//! `logban-follow-bench`: how fast the engine follows a growing log file, and how soon a ban
//! lands after the line that triggers it.
//!
//! ```text
//! logban-follow-bench [--filter-dir DIR] [--period-ms 50] [--bans 200] [--nftables] [LOG]
//! ```
//! Starts an engine with the stock sshd filter following an empty file in a temporary
//! directory (as the `logban` daemon does: `Engine::open_files` + `Engine::follow`). With LOG,
//! it appends every line of LOG as fast as it can and reports the lines per second until the
//! engine has counted them all. Then, `--bans` times, it appends one failure line stamped now
//! for a fresh address (jail maxretry 1) and measures the time until the ban is applied.
//!
//! The sink is the memory sink, or with `--nftables` the nftables sink in the current network
//! namespace (run it inside one: `ip netns exec NS logban-follow-bench --nftables`, as
//! benches/scripts/logban-ban-latency.sh does): a ban counts as landed when the `nft -f -`
//! transaction that adds the address to the jail's set has succeeded, and at the end every
//! timed address is checked to be in the set (`nft -j list set`); the table is removed after.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use ipnet::IpNet;
use logban::fail2ban::load_filter;
use logban::sink::{BanAction, SinkJail};
use logban::{BanSink, Engine, FilterBuilder, JailConfig, MemorySink, NftablesSink};

#[derive(Parser)]
#[command(about = "Measure how fast logban follows a growing log and how soon bans land")]
struct Args {
    /// Lines to append (an auth.log, e.g. from benches/scripts/gen-authlog.py); without it only
    /// ban latency is measured.
    log: Option<PathBuf>,
    /// Directory of fail2ban filters.
    #[arg(
        long,
        env = "FAIL2BAN_FILTER_DIR",
        default_value = "/etc/fail2ban/filter.d"
    )]
    filter_dir: PathBuf,
    /// How often the follower polls the file (the `logban` daemon uses 50 ms).
    #[arg(long, default_value_t = 50)]
    period_ms: u64,
    /// Bans to time.
    #[arg(long, default_value_t = 200)]
    bans: u32,
    /// Ban through nftables (in this process's network namespace) instead of memory.
    #[arg(long)]
    nftables: bool,
}

/// A sink that notes when each ban was applied by the sink it wraps.
#[derive(Debug)]
struct Timed {
    inner: Arc<dyn BanSink>,
    applied: Mutex<HashMap<IpNet, Instant>>,
}

impl Timed {
    fn applied_at(&self, target: &IpNet) -> Option<Instant> {
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(target)
            .copied()
    }
}

#[async_trait::async_trait]
impl BanSink for Timed {
    async fn apply(&self, actions: &[BanAction]) -> logban::Result<()> {
        self.inner.apply(actions).await?;
        let done = Instant::now();
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        for action in actions {
            if let BanAction::Ban { target, .. } = action {
                applied.entry(*target).or_insert(done);
            }
        }
        Ok(())
    }

    async fn list(&self, jail: &str) -> logban::Result<Vec<IpNet>> {
        self.inner.list(jail).await
    }

    async fn prepare(&self, jail: &SinkJail) -> logban::Result<()> {
        self.inner.prepare(jail).await
    }

    async fn cleanup(&self) -> logban::Result<()> {
        self.inner.cleanup().await
    }

    fn name(&self) -> &str {
        self.inner.name()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let def = load_filter(&args.filter_dir, "sshd").context("loading the sshd filter")?;
    let filter = FilterBuilder::new(def).build()?;
    let inner: Arc<dyn BanSink> = if args.nftables {
        Arc::new(NftablesSink::builder().build()?)
    } else {
        Arc::new(MemorySink::new())
    };
    let sink = Arc::new(Timed {
        inner,
        applied: Mutex::new(HashMap::new()),
    });
    let jail = JailConfig::builder("sshd")
        .with_maxretry(1)
        .with_ignore_self(false)
        .build()?;
    let engine = Engine::builder(sink.clone())
        .with_jail(jail)
        .build()
        .await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("auth.log");
    let mut file = std::fs::File::create(&path)?;
    let source = engine.open_files(std::slice::from_ref(&path))?;
    let period = Duration::from_millis(args.period_ms);
    let follower = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.follow("sshd", &source, filter, period).await })
    };

    if let Some(log) = &args.log {
        let input = std::fs::read(log).with_context(|| format!("reading {}", log.display()))?;
        let lines = input.iter().filter(|&&b| b == b'\n').count() as u64;
        let counted = || engine.metrics().jail("sshd").snapshot().lines;
        // Throughput: everything appended at once, in 1 MiB writes, while the follower reads.
        let started = Instant::now();
        let mut writer = file.try_clone()?;
        let writing = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            for chunk in input.chunks(1 << 20) {
                writer.write_all(chunk)?;
            }
            Ok(())
        });
        while counted() < lines {
            if follower.is_finished() {
                anyhow::bail!("the follower stopped: {:?}", follower.await);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let took = started.elapsed();
        writing.await??;
        println!(
            "followed {lines} lines in {:.2} s: {:.0} lines/s (poll period {} ms)",
            took.as_secs_f64(),
            lines as f64 / took.as_secs_f64(),
            args.period_ms
        );
    }

    // Ban latency: one failure line at a time, stamped now, for an address not seen before.
    let mut latencies = Vec::new();
    let mut timed = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for i in 0..args.bans {
        let addr: IpAddr = format!("2001:db8:f00::{:x}", i + 1).parse()?;
        let target = IpNet::from(addr);
        let stamp = jiff::Zoned::now().strftime("%b %e %H:%M:%S").to_string();
        let line = format!(
            "{stamp} web1 sshd[{}]: Failed password for root from {addr} port 22 ssh2\n",
            1000 + i
        );
        let written = Instant::now();
        file.write_all(line.as_bytes())?;
        let applied = loop {
            if let Some(at) = sink.applied_at(&target) {
                break at;
            }
            if written.elapsed() > Duration::from_secs(10) {
                anyhow::bail!("{addr} was not banned within 10 s");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        latencies.push(applied.saturating_duration_since(written));
        timed.push(target);
        // The next line comes at a random point of the poll period, as real failures do
        // (a fixed spacing would always just miss, or just catch, a poll).
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_micros(seed % (args.period_ms * 1000).max(1))).await;
    }
    let listed = sink.list("sshd").await?;
    let missing = timed.iter().filter(|t| !listed.contains(t)).count();
    anyhow::ensure!(
        missing == 0,
        "{missing} timed bans are not in the {} sink's set",
        sink.name()
    );
    latencies.sort();
    println!(
        "ban latency over {} bans (line written to ban applied by the {} sink, all {} verified listed): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        sink.name(),
        timed.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    follower.abort();
    if args.nftables {
        sink.cleanup().await?;
    }
    Ok(())
}
