//! `logban-regex`: run a fail2ban filter over a log, like `fail2ban-regex`.
//!
//! ```text
//! logban-regex [--json] [--filter-dir DIR] LOG FILTER
//! ```
//! LOG is a file (`-` for stdin) or a single log line (text with spaces); a directory or a
//! missing file is an error. Lines starting with `#` and empty lines are skipped, as
//! fail2ban-regex skips the comments of its sample logs. FILTER is a
//! filter file path or a name in the filter directory, with optional arguments
//! (`sshd[mode=aggressive]`). Prints totals, per-regex hits and the failures found; `--json`
//! prints one JSON object per failure and a final summary object instead. Lines on which a
//! backtracking failregex gave up (its budget spent on a very long line) are counted and
//! reported as undecided, never silently missed.

use std::io::{BufWriter, Read, Write};
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
    /// Zone of log times that carry none (fail2ban's `logtimezone`: `UTC`, `UTC+0200`,
    /// `Europe/Paris`); default the host's zone.
    #[arg(long)]
    logtimezone: Option<String>,
    /// Threads scanning the log (default: all cores); the results are those of one thread.
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let def = load_filter(&args.filter_dir, &args.filter)
        .with_context(|| format!("loading filter {}", args.filter))?;
    let zone = match args.logtimezone.as_deref() {
        Some(text) => logban::filter::parse_logtimezone(text)
            .map_err(|e| anyhow::anyhow!("--logtimezone: {e}"))?,
        None => jiff::tz::TimeZone::system(),
    };
    let mut filter = FilterBuilder::new(def.clone())
        .with_clock(logban::filter::Clock::system(zone))
        .with_check_all_regex(true)
        .with_comment_lines_skipped(true)
        .build()
        .with_context(|| format!("compiling filter {}", args.filter))?;

    let path = std::path::Path::new(&args.log);
    let input: Box<dyn Read> = if args.log == "-" {
        Box::new(std::io::stdin())
    } else if path.is_file() {
        Box::new(std::fs::File::open(path).with_context(|| format!("opening {}", args.log))?)
    } else if path.is_dir() {
        anyhow::bail!("{} is a directory, not a log file", args.log);
    } else if !args.log.contains(char::is_whitespace) {
        // A log line has spaces; a word without any is a path that does not exist.
        anyhow::bail!("{}: no such log file", args.log);
    } else {
        Box::new(std::io::Cursor::new(args.log.clone().into_bytes()))
    };
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let (mut failures, mut not_banned, mut undated) = (0u64, 0u64, 0u64);
    let mut write_error = None;
    filter
        .scan_reader_by_ref(input, threads, |found| {
            let m = &found.found;
            let is_failure = m.to_failure().is_some();
            if is_failure {
                failures += 1;
            } else if !m.nofail && m.addr.is_none() {
                not_banned += 1;
            } else if !m.nofail {
                undated += 1;
            }
            if (is_failure || args.all) && write_error.is_none() {
                write_error = print_match(&mut out, m, found.line, args.json).err();
            }
        })
        .with_context(|| format!("reading {}", args.log))?;
    if let Some(e) = write_error {
        return Err(e).context("writing the results");
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
                "without_timestamp": undated,
                "undecided": stats.undecided,
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
        if stats.undecided > 0 {
            writeln!(
                out,
                "Undecided: {} lines (counted as missed) on which a failregex gave up: its backtrack budget ran out (a very long line?); they may hold failures that were not found",
                stats.undecided
            )?;
        }
        if undated > 0 {
            writeln!(
                out,
                "Matched without a timestamp: {undated} (valid addresses; not listed above; a daemon counts them at the time it reads them)"
            )?;
        }
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
        // Written field by field: no JSON tree per match (the values are escaped by serde_json).
        write!(out, "{{\"line\":{line_no},\"id\":")?;
        serde_json::to_writer(&mut *out, &m.id)?;
        write!(out, ",\"addr\":")?;
        serde_json::to_writer(&mut *out, &m.addr.map(|a| a.to_string()))?;
        write!(out, ",\"time\":")?;
        serde_json::to_writer(&mut *out, &m.time)?;
        write!(
            out,
            ",\"regex\":{},\"failure\":{},\"user\":",
            m.regex,
            m.to_failure().is_some()
        )?;
        serde_json::to_writer(&mut *out, &m.groups.get("user"))?;
        writeln!(out, ",\"attempts\":{}}}", m.attempts())
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
