//! Scanning a log on all cores with the results of a sequential scan.
//!
//! A block of complete lines is cut at line boundaries into one chunk per thread. A filter
//! carries state from line to line (the multi-line buffer, `<F-MLFID>` sessions, the last date
//! for lines without one, the date template that matched last), so a chunk's results depend on
//! the lines before it. Each thread therefore starts [`WARMUP_LINES`] lines before its chunk,
//! scans them without keeping anything, and notes the state it reached at the chunk's first
//! line. The chunks are then taken in log order: when the state the previous chunk ended in is
//! the one a thread started its chunk from, that thread's results are exactly those of a
//! sequential scan (a filter is deterministic given its state and the lines); otherwise the
//! chunk is scanned again on one thread from the true state. Sessions and buffers are short, so
//! the warm-up almost always reaches the true state and the rescan is a rare fallback.
//!
//! The scan reads "now" once, at its start, for every thread (fail2ban's session cache and the
//! time of lines without a date depend on it), as a replay of the same lines would.

use std::io::Read;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::{Carry, Clock, FilterMatch, FilterState, FilterStats};
use crate::Filter;

/// Lines each thread scans before its chunk to reach the state a sequential scan has there.
pub const WARMUP_LINES: usize = 2048;

/// Lines (complete, `\n`-terminated) a thread is given at least; smaller blocks use one thread.
const MIN_CHUNK_LINES: usize = 4 * WARMUP_LINES;

/// Bytes read per block by [`Filter::scan_reader`].
const BLOCK_BYTES: usize = 4 << 20;

/// One failregex match and the line it was found on.
#[derive(Debug, Clone, PartialEq)]
pub struct LineMatch {
    /// Line number in the scanned input, from 1.
    pub line: u64,
    /// The match, as [`Filter::process_bytes`] reports it.
    pub found: FilterMatch,
}

/// The lines of `data` (without `\n` or trailing `\r`), in order.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    data.split(|&b| b == b'\n').map(|line| {
        let mut line = line;
        while let Some(rest) = line.strip_suffix(b"\r") {
            line = rest;
        }
        line
    })
}

/// Byte offsets where `data` is cut into `parts` chunks of whole lines (first is 0, last is the
/// length), and the line count before each cut.
fn cuts(data: &[u8], parts: usize) -> Vec<usize> {
    let mut out = vec![0];
    for i in 1..parts {
        let target = data.len() * i / parts;
        let Some(nl) = data[target..].iter().position(|&b| b == b'\n') else {
            break;
        };
        let cut = target + nl + 1;
        if cut > *out.last().unwrap_or(&0) && cut < data.len() {
            out.push(cut);
        }
    }
    out.push(data.len());
    out
}

/// Start of the line `n` lines before `at` (a line start), or 0.
fn back_lines(data: &[u8], at: usize, n: usize) -> usize {
    let mut seen = 0;
    let mut i = at.saturating_sub(1);
    while i > 0 {
        i -= 1;
        if data[i] == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    0
}

/// A thread's pass over one chunk.
struct Chunk {
    /// The state the thread reached at the chunk's start (`None` for the first chunk, which
    /// starts from the true state).
    start: Option<FilterState>,
    /// The state after the chunk.
    end: Carry,
    /// The chunk's counters.
    stats: FilterStats,
    found: Vec<(u64, FilterMatch)>,
    lines: u64,
}

/// A chunk for a worker thread: `block[warm..from]` to warm up on, `block[from..to]` to scan.
struct Job {
    block: Arc<Vec<u8>>,
    warm: usize,
    from: usize,
    to: usize,
    clock: Clock,
}

fn scan_lines(filter: &mut Filter, data: &[u8], found: &mut Vec<(u64, FilterMatch)>) -> u64 {
    let mut n = 0;
    for line in lines(data) {
        n += 1;
        for m in filter.process_bytes(line) {
            found.push((n, m));
        }
    }
    n
}

/// Scans `data[from..to]` with `filter`, from the state `start` (the true state, for the first
/// chunk) or else from what `data[warm..from]` leads to.
fn scan_chunk(filter: &mut Filter, data: &[u8], warm: usize, from: usize, to: usize) -> Chunk {
    scan_lines(filter, &data[warm..from], &mut Vec::new());
    let start = (warm < from).then(|| filter.state());
    filter.stats = FilterStats::zeroed_like(&filter.stats);
    let mut found = Vec::new();
    let weighings = filter.dates.weighings();
    let lines = scan_lines(filter, &data[from..to], &mut found);
    Chunk {
        // Date templates reordered by hit counts the warm-up does not have: not exact.
        start: start.filter(|_| filter.dates.weighings() == weighings),
        end: filter.carry(),
        stats: filter.stats.clone(),
        found,
        lines,
    }
}

impl Filter {
    /// Processes `data`, a run of complete lines, on up to `threads` threads, with exactly the
    /// results (matches, counters, state afterwards) of [`process_bytes`](Self::process_bytes)
    /// on each line in order. Matches come in log order with their line number within `data`.
    ///
    /// ```
    /// use logban::filter::{Clock, FilterBuilder, FilterDefinition};
    ///
    /// let mut def = FilterDefinition::new("demo");
    /// def.failregex.push(r"^ web1 demo\[\d+\]: bad login from <HOST>".into());
    /// let mut filter = FilterBuilder::new(def)
    ///     .with_clock(Clock::fixed(jiff::tz::TimeZone::UTC, 1_800_000_000))
    ///     .build()?;
    /// let log: String = (0..50_000)
    ///     .map(|i| format!("Mar  1 00:00:{:02} web1 demo[{i}]: bad login from 192.0.2.{}\n", i % 60, i % 7))
    ///     .collect();
    /// let found = filter.scan(log.as_bytes(), 2);
    /// assert_eq!(found.len(), 50_000);
    /// assert_eq!(found[7].line, 8);
    /// assert_eq!(found[7].found.addr, Some("192.0.2.0".parse().unwrap()));
    /// # Ok::<(), logban::Error>(())
    /// ```
    pub fn scan(&mut self, data: &[u8], threads: usize) -> Vec<LineMatch> {
        let mut out = Vec::new();
        // Reading from memory cannot fail.
        let _ = self.scan_reader(data, threads, |m| out.push(m));
        out
    }

    /// Reads `reader` to its end in blocks and [`scan`](Self::scan)s each, handing matches to
    /// `on_match` in log order; a last line without `\n` is processed too. Memory stays at a
    /// block (4 MiB) plus the matches of one block. Returns the number of lines.
    ///
    /// The worker threads live as long as the call, each with its own copy of the filter, so
    /// their lazy DFAs stay warm from block to block.
    pub fn scan_reader(
        &mut self,
        reader: impl Read,
        threads: usize,
        on_match: impl FnMut(LineMatch),
    ) -> std::io::Result<u64> {
        self.scan_blocks(reader, threads, BLOCK_BYTES, on_match)
    }

    fn scan_blocks(
        &mut self,
        mut reader: impl Read,
        threads: usize,
        block_bytes: usize,
        mut on_match: impl FnMut(LineMatch),
    ) -> std::io::Result<u64> {
        let original_clock = self.clock.clone();
        if self.clock.fixed_now.is_none() {
            self.clock.fixed_now = Some(self.clock.now());
        }
        let result = std::thread::scope(|scope| {
            let mut first = self.clone();
            let workers: Vec<_> = (1..threads.max(1))
                .map(|_| {
                    let (job_tx, job_rx) = sync_channel::<Job>(1);
                    let (done_tx, done_rx) = sync_channel::<Chunk>(1);
                    let mut filter = self.clone();
                    scope.spawn(move || {
                        for job in job_rx {
                            filter.clock = job.clock;
                            let chunk =
                                scan_chunk(&mut filter, &job.block, job.warm, job.from, job.to);
                            drop(job.block);
                            if done_tx.send(chunk).is_err() {
                                break;
                            }
                        }
                    });
                    (job_tx, done_rx)
                })
                .collect();
            let mut line_base = 0u64;
            let mut carry: Vec<u8> = Vec::new();
            loop {
                let mut block = Vec::with_capacity(block_bytes + carry.len());
                block.append(&mut carry);
                let eof = fill(&mut reader, &mut block, block_bytes)?;
                let end = if eof {
                    if block.last().is_some_and(|&b| b != b'\n') {
                        block.push(b'\n');
                    }
                    block.len()
                } else {
                    block.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1)
                };
                carry.extend_from_slice(&block[end..]);
                block.truncate(end);
                if !block.is_empty() {
                    line_base +=
                        self.scan_block(block, &mut first, &workers, line_base, &mut on_match);
                }
                if eof {
                    return Ok(line_base);
                }
            }
        });
        self.clock = original_clock;
        result
    }

    /// Scans a block of complete lines, its first chunk on this thread and the others on
    /// `workers`; returns how many lines there were.
    fn scan_block(
        &mut self,
        block: Vec<u8>,
        first: &mut Filter,
        workers: &[(SyncSender<Job>, Receiver<Chunk>)],
        line_base: u64,
        on_match: &mut dyn FnMut(LineMatch),
    ) -> u64 {
        let approx_lines = block.len() / 64 + 1;
        let parts = (workers.len() + 1).min(approx_lines / MIN_CHUNK_LINES + 1);
        let cuts = cuts(&block, parts);
        let block = Arc::new(block);
        let mut sent = 0;
        for (i, w) in cuts.windows(2).enumerate().skip(1) {
            let job = Job {
                block: Arc::clone(&block),
                warm: back_lines(&block, w[0], WARMUP_LINES),
                from: w[0],
                to: w[1],
                clock: self.clock.clone(),
            };
            if workers[i - 1].0.send(job).is_ok() {
                sent += 1;
            }
        }
        first.set_carry(&self.carry());
        first.clock.clone_from(&self.clock);
        let mut chunks = vec![scan_chunk(first, &block, cuts[0], cuts[0], cuts[1])];
        // A worker that is gone (it panicked) leaves its chunk to the rescan below.
        chunks.extend(workers[..sent].iter().map(|(_, done)| {
            done.recv().unwrap_or_else(|_| Chunk {
                start: None,
                end: Carry::default(),
                stats: FilterStats::default(),
                found: Vec::new(),
                lines: 0,
            })
        }));
        let mut seen = 0u64;
        let mut stats = self.stats.clone();
        for (i, window) in cuts.windows(2).enumerate() {
            let chunk = chunks.get_mut(i);
            let exact = chunk.as_ref().is_some_and(|c| {
                (i == 0 || c.start.is_some()) && c.start.as_ref().is_none_or(|s| *s == self.state())
            });
            let (found, lines) = match chunk {
                Some(c) if exact => {
                    self.set_carry(&c.end);
                    stats.add(&c.stats);
                    (std::mem::take(&mut c.found), c.lines)
                }
                _ => {
                    // The warm-up did not reach the true state: scan the chunk again from it.
                    self.stats = FilterStats::zeroed_like(&stats);
                    let mut found = Vec::new();
                    let lines = scan_lines(self, &block[window[0]..window[1]], &mut found);
                    stats.add(&self.stats);
                    (found, lines)
                }
            };
            for (line, found) in found {
                on_match(LineMatch {
                    line: line_base + seen + line,
                    found,
                });
            }
            seen += lines;
        }
        self.stats = stats;
        seen
    }
}

/// Reads into `buf` until it holds `want` more bytes or the reader ends; true at the end.
fn fill(reader: &mut impl Read, buf: &mut Vec<u8>, want: usize) -> std::io::Result<bool> {
    let target = buf.len() + want;
    while buf.len() < target {
        let filled = buf.len();
        buf.resize(target, 0);
        match reader.read(&mut buf[filled..]) {
            Ok(0) => {
                buf.truncate(filled);
                return Ok(true);
            }
            Ok(n) => buf.truncate(filled + n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => buf.truncate(filled),
            Err(e) => {
                buf.truncate(filled);
                return Err(e);
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{Clock, FilterBuilder, FilterDefinition};

    /// A multi-line filter with sessions: state that crosses chunk boundaries.
    fn session_filter() -> Filter {
        let mut def = FilterDefinition::new("sessions");
        def.prefregex =
            Some(r"^\s*<F-MLFID>\S+ s\[\d+\]:</F-MLFID> <F-CONTENT>.+</F-CONTENT>$".into());
        def.failregex = vec![
            r"^user <F-NOFAIL><F-USER>\S+</F-USER></F-NOFAIL>$".into(),
            r"^fail from <ADDR>$".into(),
            r"^kill <F-MLFFORGET>x</F-MLFFORGET>$".into(),
        ];
        FilterBuilder::new(def)
            .with_clock(Clock::fixed(jiff::tz::TimeZone::UTC, 1_800_000_000))
            .with_check_all_regex(true)
            .build()
            .expect("builds")
    }

    /// Random sessions of `pids` processes, plus session 999 that starts on the first line and
    /// fails on line 50,001. With fewer than 100 processes (the session cache's size) it is
    /// still cached there, far beyond any warm-up, so its chunk must be scanned again.
    fn log(lines: usize, pids: u64) -> String {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        (0..lines)
            .map(|i| {
                let pid = next() % pids;
                let stamp = if next() % 50 == 0 {
                    String::new()
                } else {
                    format!(
                        "Mar  1 {:02}:{:02}:{:02} ",
                        i / 3600 % 24,
                        i / 60 % 60,
                        i % 60
                    )
                };
                if i == 0 {
                    return format!("{stamp}h s[999]: user early\n");
                }
                if i == 50_000 {
                    return format!("{stamp}h s[999]: fail from 192.0.2.254\n");
                }
                match next() % 4 {
                    0 => format!("{stamp}h s[{pid}]: user u{}\n", next() % 5),
                    1 => format!("{stamp}h s[{pid}]: fail from 192.0.2.{}\n", next() % 250),
                    2 => format!("{stamp}h s[{pid}]: kill x\n"),
                    _ => format!("{stamp}h cron[{pid}]: nothing\n"),
                }
            })
            .collect()
    }

    #[test]
    fn parallel_scans_equal_the_sequential_scan() {
        // 300 processes: the warm-up reaches the true state; 60: it cannot (session 999).
        for pids in [300, 60] {
            let text = log(60_000, pids);
            let mut sequential = session_filter();
            let mut expected = Vec::new();
            for (i, line) in text.lines().enumerate() {
                for found in sequential.process_bytes(line.as_bytes()) {
                    expected.push(LineMatch {
                        line: i as u64 + 1,
                        found,
                    });
                }
            }
            assert!(expected.iter().any(|m| m.found.users.len() > 1));
            let long = expected.iter().find(|m| m.line == 50_001).expect("matched");
            let early = long.found.users.iter().any(|u| u == "early");
            assert_eq!(
                early,
                pids < 100,
                "{pids} processes: session 999 still cached"
            );
            for threads in [1, 2, 3, 7] {
                let mut parallel = session_filter();
                let mut found = Vec::new();
                // Blocks of 1 MiB: the log is three blocks of up to three chunks.
                parallel
                    .scan_blocks(text.as_bytes(), threads, 1 << 20, |m| found.push(m))
                    .expect("reads");
                assert_eq!(found.len(), expected.len(), "{pids}/{threads}");
                assert!(found == expected, "{pids}/{threads}: same matches in order");
                assert_eq!(parallel.stats(), sequential.stats(), "{pids}/{threads}");
                assert!(parallel.state() == sequential.state(), "{pids}/{threads}");
            }
        }
    }

    /// Date formats changing along the log, some lines with two dates: fail2ban's template
    /// selection reorders the templates by hits and remembers which ever matched, which a
    /// warm-up may not reproduce; such chunks (and those in which a reordering weighed hit
    /// counts) are scanned again, and the results stay the sequential ones.
    #[test]
    fn parallel_scans_follow_the_sequential_date_template_choice() {
        let formats = [
            "Mar  1 10:00:{s:02}",
            "2026-03-01 10:00:{s:02}",
            "x 01/03/2026 10:00:{s:02}",
            "host app: 260301 10:00:{s:02}",
            "[1772359{s:03}]",
        ];
        let mut seed = 7_u64;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % n
        };
        let mut text = String::new();
        for i in 0..40_000_u64 {
            // Long runs of one format, then a stretch where every line picks one.
            let f = if i % 10_000 < 7_000 {
                (i / 10_000) % 5
            } else {
                next(5)
            };
            let s = next(60);
            let date = formats[f as usize].replace("{s:02}", &format!("{s:02}"));
            let date = date.replace("{s:03}", &format!("{:03}", s * 10));
            let tail = if next(7) == 0 {
                " then 2025-02-03 04:05:06"
            } else {
                ""
            };
            text.push_str(&format!("{date} fail from 192.0.2.{}{tail}\n", next(250)));
        }
        let filter = || {
            let mut def = FilterDefinition::new("dates");
            def.failregex = vec![r"fail from <ADDR>".into()];
            FilterBuilder::new(def)
                .with_clock(Clock::fixed(jiff::tz::TimeZone::UTC, 1_800_000_000))
                .build()
                .expect("builds")
        };
        let mut sequential = filter();
        let mut expected = Vec::new();
        for (i, line) in text.lines().enumerate() {
            for found in sequential.process_bytes(line.as_bytes()) {
                expected.push((i as u64 + 1, found.time.map(f64::to_bits)));
            }
        }
        assert!(sequential.dates.weighings() > 0, "templates were weighed");
        for threads in [2, 5] {
            let mut parallel = filter();
            let mut found = Vec::new();
            parallel
                .scan_blocks(text.as_bytes(), threads, 1 << 18, |m| {
                    found.push((m.line, m.found.time.map(f64::to_bits)));
                })
                .expect("reads");
            assert!(found == expected, "{threads} threads: same dates");
            assert!(parallel.state() == sequential.state(), "{threads}");
        }
    }

    #[test]
    fn a_reader_scan_numbers_lines_across_blocks_and_takes_the_last_unterminated_line() {
        let mut text = log(30_000, 300);
        text.push_str("Mar  1 00:00:00 h s[1]: fail from 192.0.2.9");
        let mut filter = session_filter();
        let mut lines = Vec::new();
        let total = filter
            .scan_reader(text.as_bytes(), 2, |m| lines.push(m.line))
            .expect("reads");
        assert_eq!(total, 30_001);
        text.push('\n');
        let mut filter = session_filter();
        let total = filter
            .scan_reader(text.as_bytes(), 2, |_| ())
            .expect("reads");
        assert_eq!(
            total, 30_001,
            "a final newline ends the last line, adds none"
        );
        assert_eq!(filter.stats().lines, 30_001);
        assert_eq!(lines.last(), Some(&30_001));
        assert!(lines.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn cuts_fall_after_newlines() {
        let data = b"aa\nbbbb\ncc\ndddddd\n";
        let c = cuts(data, 3);
        assert_eq!(c.first(), Some(&0));
        assert_eq!(c.last(), Some(&data.len()));
        for cut in &c[1..c.len() - 1] {
            assert_eq!(data[cut - 1], b'\n');
        }
        assert_eq!(back_lines(data, 11, 1), 8);
        assert_eq!(back_lines(data, 11, 2), 3);
        assert_eq!(back_lines(data, 11, 5), 0);
    }
}
