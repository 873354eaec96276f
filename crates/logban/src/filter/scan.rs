//! Scanning a log on all cores with the results of a sequential scan.
//!
//! The log is read in chunks of complete lines (about 2 MiB each, 4 MiB for a filter with
//! sessions, whose warm-up below is longer) that worker threads scan while the caller's thread
//! reads ahead, merges the chunks' results in log order and hands out the matches: a pipeline,
//! so no core waits for another's chunk, the reading or the caller's `on_match`. At most
//! `threads + 2` chunks (`threads + 1` of 4 MiB) are in flight (read, queued, being scanned, or
//! waiting to be merged), so memory stays at about `(threads + 2) × 2 MiB` (`(threads + 1) ×
//! 4 MiB`) plus the matches of those chunks (a match with its groups and lines takes a few hundred bytes: about
//! 10 MiB for a chunk of the stock sshd filter on an auth.log where half the lines match; with
//! [`Filter::scan_reader_map`] only what the caller's map keeps of each), whatever the log's
//! size. Chunk `k` goes to worker `k % threads`.
//!
//! A filter carries state from line to line (the multi-line buffer, `<F-MLFID>` sessions, the
//! last date for lines without one, the date template that matched last), so a chunk's results
//! depend on the lines before it. A worker's job therefore starts with a copy of the last lines
//! of the previous chunk: it scans them without keeping anything (its warm-up) and notes the
//! state it reached at the chunk's first line. When the chunks are merged in log order, a chunk
//! whose noted state is the state the previous chunk ended in has exactly the results of a
//! sequential scan (a filter is deterministic given its state and the lines); otherwise it is
//! scanned again on the caller's thread from the true state (while the workers go on with later
//! chunks). The first chunk starts from the true state and needs no warm-up.
//!
//! The warm-up is half of [`WARMUP_LINES`] (1024 lines) for filters with multi-line state
//! (`maxlines` > 1 or `<F-MLFID>` sessions), whose sessions reach back far; a filter whose only
//! state is the last date and the date template starts with 64 lines. Either doubles (up to
//! [`WARMUP_LINES`]) after each chunk it did not bring to the true state, so a log that needs a
//! longer warm-up gets it after a rescan or two. On the stock sshd filter over an auth.log
//! (about 37,000 lines a chunk) the warm-up is about 2.7 % of the work and no chunk is scanned
//! again; on the HTTP filters it is well under 1 %.
//!
//! Lines are split with `memchr`, and each chunk is checked to be UTF-8 once: lines of a valid
//! chunk go to the filter as `&str` without any copy; only a chunk with invalid bytes takes the
//! line-by-line path of [`Filter::process_bytes`] (invalid bytes replaced).
//!
//! The scan reads "now" once, at its start, for every thread (fail2ban's session cache and the
//! time of lines without a date depend on it), as a replay of the same lines would.

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::{Carry, FilterMatch, FilterState, FilterStats};
use crate::Filter;

/// The most lines a worker scans before its chunk to reach the state a sequential scan has
/// there: the cap of every warm-up (filters with multi-line state start at half of it).
pub const WARMUP_LINES: usize = 2048;

/// The first warm-up of a filter whose only line-to-line state is the date.
const SHORT_WARMUP_LINES: usize = 64;

/// Bytes of complete lines per chunk (a line longer than that is one chunk); twice that for
/// filters with sessions (see [`Filter::scan_parallel`]).
const CHUNK_BYTES: usize = 2 << 20;

/// Chunks read ahead beyond one per worker; one for filters with sessions, whose chunks are
/// twice as long.
const READ_AHEAD: usize = 2;

/// One failregex match and the line it was found on.
#[derive(Debug, Clone, PartialEq)]
pub struct LineMatch {
    /// Line number in the scanned input, from 1.
    pub line: u64,
    /// The match, as [`Filter::process_bytes`] reports it.
    pub found: FilterMatch,
}

/// The lines of `data` (complete lines, each ending in `\n`) as `(start, end)` byte offsets,
/// without the `\n` or trailing `\r`s.
fn line_ranges(data: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut start = 0;
    memchr::memchr_iter(b'\n', data).map(move |nl| {
        let from = start;
        start = nl + 1;
        let mut end = nl;
        while end > from && data[end - 1] == b'\r' {
            end -= 1;
        }
        (from, end)
    })
}

/// Where the last `n` lines of `data` (complete lines) start.
fn last_lines(data: &[u8], n: usize) -> usize {
    if n == 0 {
        return data.len();
    }
    let body = &data[..data.len().saturating_sub(1)];
    memchr::memrchr_iter(b'\n', body)
        .nth(n - 1)
        .map_or(0, |nl| nl + 1)
}

/// Processes the complete lines of `data` in order, handing each match with its line number
/// (from 1) to `each`; returns the number of lines. A chunk that is valid UTF-8 (checked once)
/// is processed as `&str` lines; another takes [`Filter::process_bytes`] line by line.
fn scan_lines(filter: &mut Filter, data: &[u8], mut each: impl FnMut(u64, FilterMatch)) -> u64 {
    let text = std::str::from_utf8(data).ok();
    let mut n = 0;
    for (from, to) in line_ranges(data) {
        n += 1;
        // The offsets are next to ASCII bytes, so always on character boundaries.
        let found = match text.and_then(|t| t.get(from..to)) {
            Some(line) => filter.process_line(line),
            None => filter.process_bytes(&data[from..to]),
        };
        for m in found {
            each(n, m);
        }
    }
    n
}

/// Where a worker's scan of a chunk started from.
enum Start {
    /// The true state (handed over with the job).
    True,
    /// The state the warm-up reached: exact if it is the state the previous chunk ended in.
    Reached(FilterState),
    /// Unknown (date templates were reordered by hit counts the warm-up does not have, or the
    /// worker failed): the chunk is scanned again.
    Unknown,
}

/// A worker's pass over one chunk; `T` is what the caller's map made of each match.
struct Chunk<T> {
    start: Start,
    /// The state after the chunk.
    end: Carry,
    /// The chunk's counters.
    stats: FilterStats,
    /// Matches (mapped) with their line numbers within the chunk.
    found: Vec<(u64, T)>,
    lines: u64,
}

impl<T> Chunk<T> {
    fn unknown() -> Self {
        Self {
            start: Start::Unknown,
            end: Carry::default(),
            stats: FilterStats::default(),
            found: Vec::new(),
            lines: 0,
        }
    }
}

/// A chunk for a worker: `data[..from]` to warm up on (empty with `carry`), `data[from..]` to
/// scan.
struct Job<T> {
    seq: u64,
    data: Arc<Vec<u8>>,
    from: usize,
    /// The true state at the chunk's start, when it is known as the job is sent.
    carry: Option<Carry>,
    /// An emptied list of an earlier chunk's, to fill again.
    found: Vec<(u64, T)>,
}

/// What the caller makes of each match, on the worker that found it.
type Map<'a, T> = &'a (dyn Fn(FilterMatch) -> T + Sync);

/// Scans a job's chunk after its warm-up (or from its true state).
fn scan_chunk<T>(filter: &mut Filter, job: &mut Job<T>, map: Map<'_, T>) -> Chunk<T> {
    let reached = match &job.carry {
        Some(carry) => {
            filter.set_carry(carry);
            None
        }
        None => {
            scan_lines(filter, &job.data[..job.from], |_, _| ());
            Some(filter.state())
        }
    };
    filter.stats = FilterStats::zeroed_like(&filter.stats);
    let weighings = filter.dates.weighings();
    let mut found = std::mem::take(&mut job.found);
    found.clear();
    // Each match is mapped (and dropped) at once, on this thread: only what the caller needs
    // crosses to its thread.
    let lines = scan_lines(filter, &job.data[job.from..], |line, m| {
        found.push((line, map(m)));
    });
    let start = match reached {
        None => Start::True,
        Some(state) if filter.dates.weighings() == weighings => Start::Reached(state),
        // Date templates reordered by hit counts the warm-up does not have: not exact.
        Some(_) => Start::Unknown,
    };
    Chunk {
        start,
        end: filter.carry(),
        stats: filter.stats.clone(),
        found,
        lines,
    }
}

/// A worker thread: scans its jobs with its own copy of the filter (its lazy DFAs stay warm
/// from chunk to chunk) until its queue closes.
fn work<T>(
    mut filter: Filter,
    jobs: &Receiver<Job<T>>,
    done: &SyncSender<(u64, Chunk<T>)>,
    map: Map<'_, T>,
) {
    for mut job in jobs {
        // A panic (a bug) leaves the chunk to the caller's thread, which scans it again.
        let chunk =
            std::panic::catch_unwind(AssertUnwindSafe(|| scan_chunk(&mut filter, &mut job, map)))
                .unwrap_or_else(|_| Chunk::unknown());
        let seq = job.seq;
        drop(job);
        if done.send((seq, chunk)).is_err() {
            return;
        }
    }
}

/// A reader cut into runs of complete lines.
struct Blocks<R> {
    reader: R,
    /// The start of an incomplete line read after the last run.
    rest: Vec<u8>,
    eof: bool,
    chunk_bytes: usize,
}

impl<R: Read> Blocks<R> {
    /// The next run of complete lines (about `chunk_bytes`; a last line without `\n` gets one),
    /// in `buf` (emptied first: a buffer to reuse) after a copy of `prefix`; returns the buffer
    /// and where the run starts, `None` at the end.
    fn next(
        &mut self,
        prefix: &[u8],
        mut buf: Vec<u8>,
    ) -> std::io::Result<Option<(Vec<u8>, usize)>> {
        if self.eof && self.rest.is_empty() {
            return Ok(None);
        }
        buf.clear();
        buf.reserve(prefix.len() + self.rest.len() + self.chunk_bytes + 1);
        buf.extend_from_slice(prefix);
        let from = buf.len();
        buf.append(&mut self.rest);
        loop {
            if !self.eof {
                self.eof = fill(&mut self.reader, &mut buf, self.chunk_bytes)?;
            }
            if self.eof {
                if buf.len() > from && buf.last() != Some(&b'\n') {
                    buf.push(b'\n');
                }
                break;
            }
            if let Some(nl) = memchr::memrchr(b'\n', &buf[from..]) {
                let end = from + nl + 1;
                self.rest.extend_from_slice(&buf[end..]);
                buf.truncate(end);
                break;
            }
            // A line longer than a chunk: read on.
        }
        Ok((buf.len() > from).then_some((buf, from)))
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

    /// Reads `reader` to its end and [`scan`](Self::scan)s it on `threads` threads (one: on the
    /// calling thread only), handing matches to `on_match` in log order, on the calling thread,
    /// while the workers go on scanning; a last line without `\n` is processed too. Returns the
    /// number of lines.
    ///
    /// The log is cut into chunks of about 2 MiB of lines (4 MiB for a filter with sessions).
    /// Worker threads scan them, each after a warm-up on the lines before its chunk, while the
    /// calling thread reads ahead, checks each chunk's starting state against the state the
    /// previous chunk ended in (scanning it again when they differ) and hands out its matches.
    /// Memory stays at about `(threads + 2) × 2 MiB` (`(threads + 1) × 4 MiB` with sessions)
    /// plus the matches of the chunks in flight.
    ///
    /// The worker threads live as long as the call, each with its own copy of the filter, so
    /// their lazy DFAs stay warm from chunk to chunk.
    pub fn scan_reader(
        &mut self,
        reader: impl Read,
        threads: usize,
        mut on_match: impl FnMut(LineMatch),
    ) -> std::io::Result<u64> {
        self.scan_blocks(reader, threads, CHUNK_BYTES, &|m| m, &mut |line, found| {
            on_match(LineMatch { line, found });
        })
    }

    /// [`scan_reader`](Self::scan_reader) for callers that need less than the whole match:
    /// `map` turns each match into what the caller needs, on the worker thread that found it
    /// (so that work is parallel, and the match is freed by the thread that allocated it: a
    /// match crossing threads costs cache misses and, with glibc's malloc, slow frees), and
    /// `on_item` gets the results with their line numbers in log order, on the calling thread.
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
    /// let mut addrs = Vec::new();
    /// filter.scan_reader_map(log.as_bytes(), 2, |m| m.addr, |line, addr| addrs.push((line, addr)))?;
    /// assert_eq!(addrs[7], (8, Some("192.0.2.0".parse().unwrap())));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn scan_reader_map<T: Send>(
        &mut self,
        reader: impl Read,
        threads: usize,
        map: impl Fn(FilterMatch) -> T + Sync,
        mut on_item: impl FnMut(u64, T),
    ) -> std::io::Result<u64> {
        self.scan_blocks(reader, threads, CHUNK_BYTES, &map, &mut on_item)
    }

    fn scan_blocks<T: Send>(
        &mut self,
        reader: impl Read,
        threads: usize,
        chunk_bytes: usize,
        map: Map<'_, T>,
        on_item: &mut dyn FnMut(u64, T),
    ) -> std::io::Result<u64> {
        let original_clock = self.clock.clone();
        if self.clock.fixed_now.is_none() {
            self.clock.fixed_now = Some(self.clock.now());
        }
        let mut blocks = Blocks {
            reader,
            rest: Vec::new(),
            eof: false,
            chunk_bytes: chunk_bytes.max(1),
        };
        let result = if threads <= 1 {
            self.scan_here(&mut blocks, map, on_item)
        } else {
            self.scan_parallel(&mut blocks, threads, map, on_item)
        };
        self.clock = original_clock;
        result
    }

    /// The sequential scan, on the calling thread.
    fn scan_here<R: Read, T>(
        &mut self,
        blocks: &mut Blocks<R>,
        map: Map<'_, T>,
        on_item: &mut dyn FnMut(u64, T),
    ) -> std::io::Result<u64> {
        let mut lines = 0u64;
        let mut buf = Vec::new();
        while let Some((data, from)) = blocks.next(&[], buf)? {
            let base = lines;
            lines += scan_lines(self, &data[from..], |line, found| {
                on_item(base + line, map(found));
            });
            buf = data;
        }
        Ok(lines)
    }

    /// True when the filter carries more than the date from line to line (a multi-line
    /// buffer or `<F-MLFID>` sessions): its warm-up starts long.
    fn has_sessions(&self) -> bool {
        self.maxlines > 1
            || self
                .def
                .prefregex
                .iter()
                .chain(&self.def.failregex)
                .any(|re| re.contains("F-MLFID"))
    }

    /// The pipelined scan: `threads` workers scan chunks (chunk `k` on worker `k % threads`)
    /// while this thread reads ahead, merges in log order and hands out the matches.
    fn scan_parallel<R: Read, T: Send>(
        &mut self,
        blocks: &mut Blocks<R>,
        threads: usize,
        map: Map<'_, T>,
        on_item: &mut dyn FnMut(u64, T),
    ) -> std::io::Result<u64> {
        // A filter with sessions warms up on 1024 lines: about 5 % of a 2 MiB chunk of an
        // auth.log, 2.7 % of a 4 MiB one (sshd, 1,000,000 lines: 3 % less CPU for 9 MiB more
        // memory, as one chunk less is read ahead). Others warm up on 64 lines (well under 1 %).
        let (mut warm_lines, in_flight) = if self.has_sessions() {
            blocks.chunk_bytes = blocks.chunk_bytes.saturating_mul(2);
            (WARMUP_LINES / 2, threads + READ_AHEAD - 1)
        } else {
            (SHORT_WARMUP_LINES, threads + READ_AHEAD)
        };
        std::thread::scope(|scope| {
            // Never full: at most `in_flight` jobs are out at a time.
            let (done_tx, done_rx) = sync_channel::<(u64, Chunk<T>)>(in_flight);
            let workers: Vec<SyncSender<Job<T>>> = (0..threads)
                .map(|_| {
                    let (job_tx, job_rx) = sync_channel::<Job<T>>(in_flight);
                    let (done, filter) = (done_tx.clone(), self.clone());
                    scope.spawn(move || work(filter, &job_rx, &done, map));
                    job_tx
                })
                .collect();
            drop(done_tx);
            // Chunks read and not merged yet, in log order.
            let mut queued: VecDeque<Queued> = VecDeque::new();
            let mut last: Option<(Arc<Vec<u8>>, usize)> = None;
            let mut ready = BTreeMap::new();
            // Buffers and match lists of merged chunks, to reuse.
            let mut spare_data: Vec<Vec<u8>> = Vec::new();
            let mut spare_found: Vec<Vec<(u64, T)>> = Vec::new();
            let (mut sent, mut merged, mut lines) = (0u64, 0u64, 0u64);
            loop {
                while queued.len() < in_flight {
                    // With nothing in flight the true state is known: no warm-up.
                    let known = sent == merged;
                    let prefix = match (&last, known) {
                        (Some((data, from)), false) => {
                            let chunk = &data[*from..];
                            &chunk[last_lines(chunk, warm_lines)..]
                        }
                        _ => &[][..],
                    };
                    let buf = spare_data.pop().unwrap_or_default();
                    let Some((data, from)) = blocks.next(prefix, buf)? else {
                        break;
                    };
                    let data = Arc::new(data);
                    let worker = usize::try_from(sent % threads as u64).unwrap_or(0);
                    let job = Job {
                        seq: sent,
                        data: Arc::clone(&data),
                        from,
                        carry: known.then(|| self.carry()),
                        found: spare_found.pop().unwrap_or_default(),
                    };
                    // A worker that is gone (it never stops before its queue closes) leaves the
                    // chunk to the rescan below.
                    let scanned = workers[worker].send(job).is_ok();
                    last = Some((Arc::clone(&data), from));
                    queued.push_back(Queued {
                        data,
                        from,
                        scanned,
                    });
                    sent += 1;
                }
                let Some(next) = queued.pop_front() else {
                    break;
                };
                let chunk = loop {
                    if !next.scanned {
                        break None;
                    }
                    if let Some(chunk) = ready.remove(&merged) {
                        break Some(chunk);
                    }
                    match done_rx.recv() {
                        Ok((seq, chunk)) => {
                            ready.insert(seq, chunk);
                        }
                        Err(_) => break None,
                    }
                };
                merged += 1;
                let exact = chunk.as_ref().is_some_and(|c| match &c.start {
                    Start::True => true,
                    Start::Reached(state) => *state == self.state(),
                    Start::Unknown => false,
                });
                lines += match chunk {
                    Some(mut c) if exact => {
                        self.set_carry(&c.end);
                        self.stats.add(&c.stats);
                        for (line, item) in c.found.drain(..) {
                            on_item(lines + line, item);
                        }
                        spare_found.push(c.found);
                        c.lines
                    }
                    _ => {
                        // The warm-up did not reach the true state: scan the chunk again from
                        // it, and warm up longer from now on.
                        warm_lines = (warm_lines * 2).min(WARMUP_LINES);
                        let base = lines;
                        scan_lines(self, &next.data[next.from..], |line, found| {
                            on_item(base + line, map(found));
                        })
                    }
                };
                // The worker has dropped its copy; the last chunk read is still a prefix.
                if let Ok(buf) = Arc::try_unwrap(next.data) {
                    spare_data.push(buf);
                }
            }
            drop(workers);
            Ok(lines)
        })
    }
}

/// A chunk read and sent to a worker, until it is merged.
struct Queued {
    data: Arc<Vec<u8>>,
    /// Where the chunk starts in `data` (after its warm-up lines).
    from: usize,
    /// False when the worker was gone: the chunk is scanned here.
    scanned: bool,
}

/// Reads into `buf` until it holds `want` more bytes or the reader ends; true at the end.
fn fill(reader: &mut impl Read, buf: &mut Vec<u8>, want: usize) -> std::io::Result<bool> {
    // `read_to_end` reads into the spare capacity without zeroing it first.
    let want = u64::try_from(want).unwrap_or(u64::MAX);
    let read = reader.take(want).read_to_end(buf)?;
    Ok((read as u64) < want)
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
                // Chunks of 256 KiB (twice 128 KiB, for a filter with sessions): about ten,
                // more than are in flight at a time.
                parallel
                    .scan_blocks(
                        text.as_bytes(),
                        threads,
                        1 << 17,
                        &|m| m,
                        &mut |line, found_| {
                            found.push(LineMatch {
                                line,
                                found: found_,
                            })
                        },
                    )
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
                .scan_blocks(
                    text.as_bytes(),
                    threads,
                    1 << 18,
                    &|m| m.time.map(f64::to_bits),
                    &mut |line, time| found.push((line, time)),
                )
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
            .scan_reader_map(text.as_bytes(), 2, |_| (), |line, ()| lines.push(line))
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
    fn lines_are_split_at_newlines_without_trailing_returns() {
        let data = b"aa\r\n\nbbbb\r\r\ncc\rx\ndddddd\n";
        let lines: Vec<&[u8]> = line_ranges(data).map(|(s, e)| &data[s..e]).collect();
        assert_eq!(lines, [&b"aa"[..], b"", b"bbbb", b"cc\rx", b"dddddd"]);
        assert_eq!(line_ranges(b"").count(), 0);
        let data = b"aa\nbbbb\ncc\n";
        assert_eq!(last_lines(data, 1), 8);
        assert_eq!(last_lines(data, 2), 3);
        assert_eq!(last_lines(data, 3), 0);
        assert_eq!(last_lines(data, 5), 0);
        assert_eq!(last_lines(data, 0), data.len());
    }

    /// Chunks with invalid UTF-8, `\r\n` line ends, comment lines and a line longer than a
    /// chunk: the same matches and counters as `process_bytes` on each line.
    #[test]
    fn parallel_scans_of_odd_bytes_equal_the_sequential_scan() {
        let mut def = FilterDefinition::new("odd");
        def.failregex = vec![r"fail from <ADDR>( user \S+)?$".into()];
        let filter = || {
            FilterBuilder::new(def.clone())
                .with_clock(Clock::fixed(jiff::tz::TimeZone::UTC, 1_800_000_000))
                .with_comment_lines_skipped(true)
                .build()
                .expect("builds")
        };
        let mut text = Vec::new();
        for i in 0..40_000u32 {
            let stamp = format!("Mar  1 10:{:02}:{:02} ", i / 60 % 60, i % 60);
            text.extend_from_slice(stamp.as_bytes());
            match i % 97 {
                0 => text.extend_from_slice(b"fail from 192.0.2.1 user \xff\xfeX"),
                1 => text.extend_from_slice(b"# fail from 192.0.2.2"),
                2 => text.extend_from_slice(b"fail from 192.0.2.3\r"),
                3 if i == 20_000 => {
                    text.extend_from_slice(&vec![b'x'; 300_000]);
                    text.extend_from_slice(b" fail from 192.0.2.4");
                }
                _ => text.extend_from_slice(format!("fail from 192.0.2.{}", i % 200).as_bytes()),
            }
            text.push(b'\n');
        }
        // Valid UTF-8 only in the second half: both paths are taken.
        let valid_from = text.len() / 2;
        for b in &mut text[valid_from..] {
            if *b >= 0x80 {
                *b = b'?';
            }
        }
        let mut sequential = filter();
        let mut expected = Vec::new();
        for (i, line) in text.split(|&b| b == b'\n').enumerate().take(40_000) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            for found in sequential.process_bytes(line) {
                expected.push(LineMatch {
                    line: i as u64 + 1,
                    found,
                });
            }
        }
        assert!(
            expected
                .iter()
                .any(|m| m.found.addr == Some("192.0.2.4".parse().unwrap()))
        );
        for threads in [1, 2, 3] {
            let mut parallel = filter();
            let mut found = Vec::new();
            let lines = parallel
                .scan_blocks(&text[..], threads, 1 << 17, &|m| m, &mut |line, found_| {
                    found.push(LineMatch {
                        line,
                        found: found_,
                    })
                })
                .expect("reads");
            assert_eq!(lines, 40_000);
            assert!(found == expected, "{threads} threads: same matches");
            assert_eq!(parallel.stats(), sequential.stats(), "{threads}");
            assert!(parallel.state() == sequential.state(), "{threads}");
        }
    }
}
