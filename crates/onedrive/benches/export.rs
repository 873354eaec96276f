//! Export throughput of the `onedrive-export` tool to the mock Graph server on loopback, with the
//! tool's peak RSS (it runs as its own process under `/usr/bin/time`; the mock runs here).
//!
//! `bash benches/scripts/onedrive-export.sh` builds the tool in release and runs this; or
//! `ONEDRIVE_EXPORT_BIN=path cargo bench -p onedrive --bench export`.
//! Settings: `EXPORT_BENCH_MIB` (default 512, in 8 large files plus 2,000 files of 4 KiB),
//! `EXPORT_BENCH_RUNS` (default 3).

#[allow(missing_docs)]
#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn make_source(root: &Path, mib: u64) -> u64 {
    let mut total = 0;
    let large = 8;
    for i in 0..large {
        let len = (mib << 20) / large;
        let content = common::data(len as usize, i);
        std::fs::write(root.join(format!("large-{i}.bin")), &content).expect("write");
        total += len;
    }
    let small = root.join("small");
    for i in 0..2000u64 {
        let dir = small.join(format!("d{}", i / 100));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(format!("f{i}.txt")), common::data(4096, 1000 + i)).expect("write");
        total += 4096;
    }
    total
}

/// Runs the tool once; returns (seconds, peak RSS in KiB).
fn run_tool(bin: &Path, args: &[String]) -> (f64, u64) {
    let times = tempfile::NamedTempFile::new().expect("temp");
    let started = Instant::now();
    let status = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(times.path())
        .arg(bin)
        .args(args)
        .status()
        .expect("run onedrive-export under /usr/bin/time");
    let seconds = started.elapsed().as_secs_f64();
    assert!(status.success(), "onedrive-export failed");
    let rss = std::fs::read_to_string(times.path())
        .expect("time output")
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("peak RSS");
    (seconds, rss)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this too: only run when asked.
    let Some(bin) = std::env::var_os("ONEDRIVE_EXPORT_BIN").map(PathBuf::from) else {
        eprintln!("export bench: set ONEDRIVE_EXPORT_BIN (see benches/scripts/onedrive-export.sh)");
        return;
    };
    let mib = env_or("EXPORT_BENCH_MIB", 512);
    let runs = env_or("EXPORT_BENCH_RUNS", 3);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let work = tempfile::tempdir().expect("tempdir");
    let source = work.path().join("site");
    std::fs::create_dir_all(&source).expect("mkdir");
    let total = make_source(&source, mib);
    let recipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    println!("| variant | concurrency | fragment | run | seconds | MB/s | peak RSS |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (variant, encrypt, concurrency, units) in [
        ("plain", false, 4, 32),
        ("plain", false, 1, 32),
        ("age", true, 4, 32),
    ] {
        for run in 1..=runs {
            // A fresh mock (the export is a first, full upload) and fresh state each run.
            let mock = runtime.block_on(common::MockGraph::start());
            let dir = tempfile::tempdir().expect("tempdir");
            let token = dir.path().join("token.json");
            let client = common::client_builder(&mock.graph_url(), &mock.token_url(), &token)
                .build()
                .expect("client");
            runtime.block_on(common::login(&mock, &client));
            let mut args: Vec<String> = [
                "--client-id",
                common::CLIENT_ID,
                "--token-file",
                &token.display().to_string(),
                "--graph-url",
                &mock.graph_url(),
                "--token-url",
                &mock.token_url(),
                "export",
                "--dir",
                &source.display().to_string(),
                "--to",
                "Exports/bench",
                "--state-dir",
                &dir.path().join("state").display().to_string(),
                "--concurrency",
                &concurrency.to_string(),
                "--fragment-units",
                &units.to_string(),
                "--quiet",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if encrypt {
                args.extend(["--age-recipient".to_string(), recipient.to_string()]);
            }
            let (seconds, rss) = run_tool(&bin, &args);
            let uploaded = mock.files_under("drive-me", "Exports/bench").len();
            assert_eq!(uploaded, 2008 + 1, "every file and the manifest arrived");
            println!(
                "| {variant} | {concurrency} | {} MiB | {run} | {seconds:.2} | {:.0} | {:.1} MiB |",
                units * 320 / 1024,
                total as f64 / seconds / 1e6,
                rss as f64 / 1024.0
            );
        }
    }
    println!("\n{total} bytes per run ({mib} MiB in 8 files, 2,000 files of 4 KiB)");
}
