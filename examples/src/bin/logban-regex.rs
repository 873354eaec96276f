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

/// jemalloc rather than glibc's malloc: the scan's worker threads allocate each match and the
/// calling thread frees what they hand over, which glibc's per-thread arenas make slow (locks,
/// a full thread cache). Measured on 1,000,000 sshd lines (benches/results/logban.md): user CPU
/// on two threads 1.31 s against 1.53 s (one thread: 1.17 s against 1.26 s), peak RSS 52 MiB
/// against 44 MiB; mimalloc was as fast on one thread, slower on two, and twice the memory. A
/// library must leave the allocator to the program; a tool may choose it.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Machine-readable output: one JSON object per failure, then a summary object. As with
    /// `fail2ban-regex -o`, a line stops at its first matching failregex (unless `--all`).
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
        // Rows (`--json`) follow `fail2ban-regex -o`, which stops at a line's first matching
        // failregex; the report and `--all` try every failregex, as `fail2ban-regex` does.
        .with_check_all_regex(!args.json || args.all)
        .with_comment_lines_skipped(true)
        // No output shows a match's lines: a flood's matches copy none.
        .with_matched_lines(false)
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
    let (json, all) = (args.json, args.all);
    // Each match is classified and formatted (all but its line number) on the scanning thread
    // that found it; this thread counts and writes in log order.
    let describe = |m: FilterMatch| {
        let is_failure = m.is_failure();
        let kind = if is_failure {
            Kind::Failure
        } else if !m.nofail && m.addr.is_none() {
            Kind::NotBanned
        } else if !m.nofail {
            Kind::Undated
        } else {
            Kind::NoFail
        };
        let text = (is_failure || all).then(|| match_text(&m, json));
        (kind, text)
    };
    filter
        .scan_reader_map(input, threads, describe, |line, (kind, text)| {
            match kind {
                Kind::Failure => failures += 1,
                Kind::NotBanned => not_banned += 1,
                Kind::Undated => undated += 1,
                Kind::NoFail => {}
            }
            if let Some(text) = text
                && write_error.is_none()
            {
                write_error = write_match(&mut out, line, &text, json).err();
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

/// What a match counts as in the summary.
enum Kind {
    Failure,
    NotBanned,
    Undated,
    NoFail,
}

/// A match's output line after its line number (`"id":...}` in JSON, `ID TIME (failregex N)`
/// in text), with its newline.
fn match_text(m: &FilterMatch, json: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    if json {
        // Written field by field, numbers and strings by serde_json (no JSON tree per match,
        // no `fmt` machinery: this runs for every failure of a flood). Writing to a Vec
        // cannot fail.
        out.extend_from_slice(b"\"id\":");
        let _ = serde_json::to_writer(&mut out, &m.id);
        out.extend_from_slice(b",\"addr\":");
        match m.addr {
            Some(std::net::IpAddr::V4(addr)) => {
                // Dotted octets need no escaping.
                for (i, octet) in addr.octets().iter().enumerate() {
                    out.extend_from_slice(if i == 0 { b"\"" } else { b"." });
                    let _ = serde_json::to_writer(&mut out, octet);
                }
                out.push(b'"');
            }
            Some(std::net::IpAddr::V6(addr)) => {
                out.push(b'"');
                write_v6(&mut out, addr);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"time\":");
        write_time(&mut out, m.time);
        out.extend_from_slice(b",\"regex\":");
        let _ = serde_json::to_writer(&mut out, &m.regex);
        out.extend_from_slice(if m.is_failure() {
            b",\"failure\":true,\"user\":"
        } else {
            b",\"failure\":false,\"user\":"
        });
        let _ = serde_json::to_writer(&mut out, &m.groups.get("user"));
        out.extend_from_slice(b",\"attempts\":");
        let _ = serde_json::to_writer(&mut out, &m.attempts());
        out.extend_from_slice(b"}\n");
    } else {
        let time = m
            .time
            .and_then(|t| jiff::Timestamp::from_second(t as i64).ok())
            .map_or_else(|| "-".to_string(), |t| t.to_string());
        let _ = writeln!(
            out,
            "{} {time} (failregex {}){}",
            m.id.as_deref().unwrap_or("-"),
            m.regex + 1,
            if m.is_failure() { "" } else { " [not banned]" }
        );
    }
    out
}

/// Writes a match's output line: its line number, then [`match_text`].
/// An IPv6 address as the standard library writes it (the longest run of two or more zero
/// groups, the first of equals, as `::`; groups in lower-case hex), without its formatting
/// machinery: a fifth of a flood's addresses may be IPv6.
fn write_v6(out: &mut Vec<u8>, addr: std::net::Ipv6Addr) {
    if addr.to_ipv4_mapped().is_some() {
        let _ = write!(out, "{addr}");
        return;
    }
    let groups = addr.segments();
    let (mut zeros, mut run) = ((0, 0), (0, 0));
    for (i, &g) in groups.iter().enumerate() {
        run = if g != 0 {
            (i + 1, 0)
        } else {
            (run.0, run.1 + 1)
        };
        if run.1 > zeros.1 {
            zeros = run;
        }
    }
    let write_groups = |out: &mut Vec<u8>, groups: &[u16]| {
        for (i, &g) in groups.iter().enumerate() {
            if i > 0 {
                out.push(b':');
            }
            let digits = (16 - g.leading_zeros()).div_ceil(4).max(1);
            for d in (0..digits).rev() {
                out.push(b"0123456789abcdef"[usize::from(g >> (d * 4) & 0xf)]);
            }
        }
    };
    let (start, len) = zeros;
    if len > 1 {
        write_groups(out, &groups[..start]);
        out.extend_from_slice(b"::");
        write_groups(out, &groups[start + len..]);
    } else {
        write_groups(out, &groups);
    }
}

/// A line's time as serde_json writes it: whole seconds (all but sub-second dates) as an
/// integer and `.0`, cheaper to write than the float's shortest form.
fn write_time(out: &mut Vec<u8>, time: Option<f64>) {
    match time {
        Some(t) if (1.0..1e15).contains(&t) && t.fract() == 0.0 => {
            let _ = serde_json::to_writer(&mut *out, &(t as u64));
            out.extend_from_slice(b".0");
        }
        other => {
            let _ = serde_json::to_writer(out, &other);
        }
    }
}

fn write_match(out: &mut impl Write, line_no: u64, text: &[u8], json: bool) -> std::io::Result<()> {
    if json {
        out.write_all(b"{\"line\":")?;
        serde_json::to_writer(&mut *out, &line_no)?;
        out.write_all(b",")?;
    } else {
        write!(out, "{line_no}: ")?;
    }
    out.write_all(text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ipv6_addresses_are_written_as_the_standard_library_writes_them() {
        // Every placement of zero groups, with groups of one to four hex digits.
        for zeros in 0u32..256 {
            for digits in [0x1, 0xab, 0xf00, 0xbeef] {
                let groups: Vec<u16> = (0..8u16)
                    .map(|i| if zeros & (1 << i) != 0 { 0 } else { digits + i })
                    .collect();
                let mut segments = [0u16; 8];
                segments.copy_from_slice(&groups);
                let addr = std::net::Ipv6Addr::from(segments);
                let mut out = Vec::new();
                super::write_v6(&mut out, addr);
                assert_eq!(String::from_utf8(out).expect("ascii"), addr.to_string());
            }
        }
        let mapped: std::net::Ipv6Addr = "::ffff:192.0.2.1".parse().expect("ip");
        let mut out = Vec::new();
        super::write_v6(&mut out, mapped);
        assert_eq!(out, b"::ffff:192.0.2.1");
    }

    #[test]
    fn times_are_written_as_serde_json_writes_them() {
        for time in [
            None,
            Some(0.0),
            Some(-0.0),
            Some(1.0),
            Some(1_772_323_201.0),
            Some(1_772_323_201.25),
            Some(-3.0),
            Some(9.99e14),
            Some(1e15),
            Some(1e16),
        ] {
            let mut out = Vec::new();
            super::write_time(&mut out, time);
            assert_eq!(out, serde_json::to_vec(&time).expect("json"), "{time:?}");
        }
    }
}
