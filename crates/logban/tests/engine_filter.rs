//! The engine driven by a real fail2ban filter (Debian's stock sshd filter): lines in, bans
//! out, with the counters an operator reads, and injected addresses never banned.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use logban::filter::Clock;
use logban::{BanTime, Engine, FilterBuilder, JailConfig, MemorySink};

/// 2027-01-15 10:00:00 UTC, the fixed "now" of filter and engine.
const NOW: i64 = 1_800_007_200;

/// A filter and an engine with one jail (maxretry 3, 10-minute bans), both at [`NOW`].
async fn filter_and_engine(
    definition: logban::FilterDefinition,
    jail: &str,
) -> (logban::Filter, Engine, Arc<MemorySink>) {
    let filter = FilterBuilder::new(definition)
        .with_clock(Clock::fixed(jiff::tz::TimeZone::UTC, NOW))
        .build()
        .expect("filter builds");
    let sink = Arc::new(MemorySink::new());
    let engine = Engine::builder(sink.clone())
        .with_jail(
            JailConfig::builder(jail)
                .with_maxretry(3)
                .with_bantime(BanTime::For(Duration::from_secs(600)))
                .with_ignore_self(false)
                .build()
                .expect("jail"),
        )
        .with_clock(|| NOW)
        .build()
        .await
        .expect("engine");
    (filter, engine, sink)
}

#[tokio::test]
async fn sshd_filter_lines_ban_the_attacker_only() {
    let Some(dir) = test_support::require_env("FAIL2BAN_FILTER_DIR", "fail2ban's filter.d") else {
        return;
    };
    let definition = logban::fail2ban::load_filter(Path::new(&dir), "sshd").expect("sshd filter");
    let (mut filter, engine, sink) = filter_and_engine(definition, "sshd").await;

    let lines = [
        // Injection attempts: the address sits in the user name (CVE-2013-2178-style).
        "Jan 15 09:59:00 web sshd[100]: Failed password for invalid user 198.51.100.99 from 192.0.2.5 port 4242 ssh2",
        "Jan 15 09:59:01 web sshd[101]: Invalid user from 198.51.100.98 from 192.0.2.5 port 4243",
        "Jan 15 09:59:02 web sshd[102]: Accepted publickey for deploy from 203.0.113.1 port 5000 ssh2",
        "Jan 15 09:59:03 web sshd[103]: Failed password for root from 192.0.2.5 port 4244 ssh2",
        "Jan 15 09:59:04 web sshd[104]: Failed password for root from 2001:db8::77 port 4245 ssh2",
    ];
    let mut bans = Vec::new();
    for line in lines {
        bans.extend(
            engine
                .feed_line("sshd", line.as_bytes(), &mut filter)
                .await
                .expect("feed"),
        );
    }
    let attacker = "192.0.2.5".parse().expect("ip");
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(bans[0].target.addr(), attacker);
    assert!(sink.is_banned("sshd", attacker));
    for injected in ["198.51.100.99", "198.51.100.98", "203.0.113.1"] {
        assert!(
            !sink.is_banned("sshd", injected.parse().expect("ip")),
            "{injected}"
        );
    }
    let c = engine.metrics().jail("sshd").snapshot();
    assert_eq!(
        (c.lines, c.matches, c.failures, c.bans),
        (5, 4, 4, 1),
        "{c:?}"
    );
    assert_eq!(
        engine.status()[0].tracked,
        1,
        "2001:db8::77 has one failure"
    );

    // Journal-style entries carry their time beside the message, as fail2ban formats them.
    let mut journal_bans = Vec::new();
    for pid in 0..3 {
        let line =
            format!("web sshd[{pid}]: Failed password for root from 2001:db8::99 port 22 ssh2");
        journal_bans.extend(
            engine
                .feed_line_at("sshd", line.as_bytes(), (NOW - 5) as f64, &mut filter)
                .await
                .expect("feed"),
        );
    }
    assert_eq!(journal_bans.len(), 1, "{journal_bans:?}");
    assert_eq!(journal_bans[0].start, NOW - 5);
}

/// A line the filter matches but that carries no timestamp (fail2ban's asterisk, murmur and
/// named-refused samples have such lines) counts as a failure at the time it is read.
#[tokio::test]
async fn matches_without_a_timestamp_count_when_they_are_read() {
    let mut def = logban::FilterDefinition::new("undated");
    def.failregex
        .push(r"^Registration from '\S+' failed for '<HOST>'".into());
    let (mut filter, engine, sink) = filter_and_engine(def, "voip").await;
    let line = b"Registration from '<sip:1@x>' failed for '192.0.2.77' - Wrong password";
    for _ in 0..3 {
        engine
            .feed_line("voip", line, &mut filter)
            .await
            .expect("feed");
    }
    assert!(sink.is_banned("voip", "192.0.2.77".parse().expect("ip")));
    assert_eq!(engine.metrics().jail("voip").snapshot().failures, 3);
}

/// A poll's batch of lines (a backlog) is matched on all cores with the results of one line at
/// a time, in order.
#[test]
fn a_large_batch_matches_like_one_line_at_a_time() {
    use logban::LineMatcher;
    use logban::source::LogLine;
    let mut def = logban::FilterDefinition::new("batch");
    def.prefregex = Some(r"^\s*<F-MLFID>\S+ s\[\d+\]:</F-MLFID> <F-CONTENT>.+</F-CONTENT>$".into());
    def.failregex = vec![
        r"^user <F-NOFAIL><F-USER>\S+</F-USER></F-NOFAIL>$".into(),
        r"^fail from <ADDR>$".into(),
    ];
    let filter = FilterBuilder::new(def)
        .with_clock(Clock::fixed(jiff::tz::TimeZone::UTC, NOW))
        .build()
        .expect("builds");
    let lines: Vec<LogLine> = (0..40_000u32)
        .map(|i| {
            let body = if i % 3 == 0 {
                format!("user u{}", i % 7)
            } else {
                format!("fail from 192.0.2.{}", i % 200)
            };
            LogLine {
                bytes: format!(
                    "Jan 15 09:{:02}:{:02} h s[{}]: {body}",
                    i / 60 % 60,
                    i % 60,
                    i % 150
                )
                .into_bytes(),
                time: None,
            }
        })
        .collect();
    let mut one_by_one = filter.clone();
    let expected: Vec<_> = lines
        .iter()
        .map(|l| one_by_one.match_line(&l.bytes))
        .collect();
    let mut blocked = filter.clone();
    let mut batched = filter;
    let got = batched.match_lines(&lines);
    let failures: usize = expected.iter().map(|o| o.failures.len()).sum();
    assert!(failures > 20_000, "{failures} failures");
    assert!(got == expected, "same outcomes, line by line");
    assert_eq!(batched.stats(), one_by_one.stats());
    // The same lines as one block, as a file source hands them over.
    let block: Vec<u8> = lines
        .iter()
        .flat_map(|l| l.bytes.iter().copied().chain([b'\n']))
        .collect();
    assert!(blocked.match_block(&block) == expected, "a block: the same");
    assert_eq!(blocked.stats(), one_by_one.stats());
}

/// A block of lines with `\r\n` ends and invalid UTF-8 (which the scan would treat
/// differently from one line at a time, or must replace) matches like one line at a time.
#[test]
fn a_block_with_returns_and_invalid_bytes_matches_like_one_line_at_a_time() {
    use logban::LineMatcher;
    let mut def = logban::FilterDefinition::new("odd");
    def.failregex = vec![r"fail from <ADDR>(?: user \S+)?$".into()];
    let filter = FilterBuilder::new(def)
        .with_clock(Clock::fixed(jiff::tz::TimeZone::UTC, NOW))
        .build()
        .expect("builds");
    for with_returns in [false, true] {
        let mut block = Vec::new();
        let mut lines = Vec::new();
        for i in 0..40_000u32 {
            let mut line = format!(
                "Jan 15 09:{:02}:{:02} h app: fail from 192.0.2.{}",
                i / 60 % 60,
                i % 60,
                i % 200
            )
            .into_bytes();
            if i % 101 == 0 {
                line.extend_from_slice(b" user \xff\xfeu");
            }
            if with_returns && i % 103 == 0 {
                line.push(b'\r');
            }
            block.extend_from_slice(&line);
            block.push(b'\n');
            lines.push(line);
        }
        let mut one_by_one = filter.clone();
        let expected: Vec<_> = lines.iter().map(|l| one_by_one.match_line(l)).collect();
        let failures = expected.iter().filter(|o| o.failures.len() == 1).count();
        assert!(failures > 39_000, "{failures}");
        let mut blocked = filter.clone();
        assert!(blocked.match_block(&block) == expected, "{with_returns}");
        assert_eq!(blocked.stats(), one_by_one.stats());
    }
}

/// A backtracking failregex's budget grows with the line: a lookahead run over a 200 KB line
/// (a few steps a byte) is decided and fails; a line on which the same failregex needs steps
/// quadratic in its length (20,000 starts, each running to the end of a 220 KB line) gives up,
/// and is counted in the jail's `undecided_lines`, not silently dropped.
#[tokio::test]
async fn lines_a_failregex_gave_up_on_are_counted() {
    let mut def = logban::FilterDefinition::new("lookahead");
    def.failregex
        .push(r"Failed for (?:(?! from ).)*? from <HOST>$".into());
    let (mut filter, engine, _sink) = filter_and_engine(def, "app").await;
    let long = format!("Failed for {} from 192.0.2.2", "y".repeat(200_000));
    // The DFA screen lets it through (a superset without the lookahead matches it).
    let quadratic = format!("{}x from from 192.0.2.3", "Failed for ".repeat(20_000));
    for line in ["Failed for short from 192.0.2.1", long.as_str(), &quadratic] {
        engine
            .feed_line("app", line.as_bytes(), &mut filter)
            .await
            .expect("fed");
    }
    let counters = engine.metrics().jail("app").snapshot();
    assert_eq!(
        (counters.lines, counters.failures, counters.undecided_lines),
        (3, 2, 1)
    );
}
