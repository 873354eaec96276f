//! `logban-regex`: run a fail2ban filter over a log, like `fail2ban-regex`.
//!
//! ```text
//! logban-regex [--json] [--filter-dir DIR] LOG FILTER
//! ```
//! LOG is a file (`-` for stdin) or, if no such file exists, a single log line. FILTER is a
//! filter file path or a name in the filter directory, with optional arguments
//! (`sshd[mode=aggressive]`). Prints totals, per-regex hits and the failures found; `--json`
//! prints one JSON object per failure and a final summary object instead.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use logban::fail2ban::load_filter;
use logban::filter::{FilterBuilder, FilterMatch};

#[derive(Parser)]
#[command(about = "Run a fail2ban filter over a log (like fail2ban-regex)")]
struct Args {
    /// Log file, `-` for stdin, or a single log line.
    log: String,
    /// Filter name (with `[args]`) in the filter directory, or a path to a filter file.
    filter: String,
    /// Directory of fail2ban filters.
    #[arg(
        long,
        env = "FAIL2BAN_FILTER_DIR",
        default_value = "/etc/fail2ban/filter.d"
    )]
    filter_dir: PathBuf,
    /// Machine-readable output: one JSON object per failure, then a summary object.
    #[arg(long)]
    json: bool,
    /// Also list matches that are not failures (`<F-NOFAIL>`, host names, pending sessions).
    #[arg(long)]
    all: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let def = load_filter(&args.filter_dir, &args.filter)
        .with_context(|| format!("loading filter {}", args.filter))?;
    let mut filter = FilterBuilder::new(def.clone())
        .with_check_all_regex(true)
        .build()
        .with_context(|| format!("compiling filter {}", args.filter))?;

    let input: Box<dyn Read> = if args.log == "-" {
        Box::new(std::io::stdin())
    } else if std::path::Path::new(&args.log).is_file() {
        Box::new(std::fs::File::open(&args.log).with_context(|| format!("opening {}", args.log))?)
    } else {
        Box::new(std::io::Cursor::new(args.log.clone().into_bytes()))
    };
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut line = Vec::with_capacity(4096);
    let (mut failures, mut not_banned) = (0u64, 0u64);
    let mut line_no = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        line_no += 1;
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        for m in filter.process_bytes(&line) {
            let is_failure = m.to_failure().is_some();
            if is_failure {
                failures += 1;
            } else if !m.nofail {
                not_banned += 1;
            }
            if is_failure || args.all {
                print_match(&mut out, &m, line_no, args.json)?;
            }
        }
    }
    let stats = filter.stats();
    if args.json {
        let summary = serde_json::json!({
            "summary": {
                "filter": def.name,
                "lines": stats.lines,
                "matched": stats.matched,
                "ignored": stats.ignored,
                "missed": stats.missed(),
                "failures": failures,
                "ids_not_addresses": not_banned,
                "failregex_hits": stats.failregex_hits,
                "ignoreregex_hits": stats.ignoreregex_hits,
            }
        });
        writeln!(out, "{summary}")?;
    } else {
        writeln!(out, "\nResults\n=======\n")?;
        writeln!(
            out,
            "Failregex: {} total",
            stats.failregex_hits.iter().sum::<u64>()
        )?;
        for (i, (re, hits)) in def.failregex.iter().zip(&stats.failregex_hits).enumerate() {
            if *hits > 0 {
                writeln!(out, "|  {:>2}) [{hits}] {re}", i + 1)?;
            }
        }
        writeln!(
            out,
            "\nIgnoreregex: {} total",
            stats.ignoreregex_hits.iter().sum::<u64>()
        )?;
        for (i, (re, hits)) in def
            .ignoreregex
            .iter()
            .zip(&stats.ignoreregex_hits)
            .enumerate()
        {
            if *hits > 0 {
                writeln!(out, "|  {:>2}) [{hits}] {re}", i + 1)?;
            }
        }
        writeln!(
            out,
            "\nLines: {} lines, {} ignored, {} matched, {} missed",
            stats.lines,
            stats.ignored,
            stats.matched,
            stats.missed()
        )?;
        writeln!(
            out,
            "Failures: {failures} with a valid address; {not_banned} matched ids that are not addresses (never banned)"
        )?;
    }
    out.flush()?;
    Ok(())
}

fn print_match(
    out: &mut impl Write,
    m: &FilterMatch,
    line_no: u64,
    json: bool,
) -> std::io::Result<()> {
    if json {
        let v = serde_json::json!({
            "line": line_no,
            "id": m.id,
            "addr": m.addr.map(|a| a.to_string()),
            "time": m.time,
            "regex": m.regex,
            "failure": m.to_failure().is_some(),
            "user": m.groups.get("user"),
            "attempts": m.attempts(),
        });
        writeln!(out, "{v}")
    } else {
        let time = m
            .time
            .and_then(|t| jiff::Timestamp::from_second(t as i64).ok())
            .map_or_else(|| "-".to_string(), |t| t.to_string());
        writeln!(
            out,
            "{line_no}: {} {time} (failregex {}){}",
            m.id.as_deref().unwrap_or("-"),
            m.regex + 1,
            if m.to_failure().is_some() {
                ""
            } else {
                " [not banned]"
            }
        )
    }
}
