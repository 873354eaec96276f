//! The [`LogSource`] conformance suite: plain async functions every source's tests run. They
//! panic on a violation.
//!
//! Each function takes the source and `append`, which writes lines to the log the source reads
//! (a file, the journal through `systemd-cat`, a [`MemorySource`](crate::source::MemorySource)'s
//! queue). The source must be fresh and following an empty log. A source may add a prefix to
//! each line (the journal's `HOST IDENT[PID]: `), so lines are compared by their ends, which
//! carry a unique number.

use std::time::{Duration, Instant};

use crate::source::{LogBatch, LogLine, LogSource};

/// How long lines may take to arrive (a journal goes through journald).
const DEADLINE: Duration = Duration::from_secs(20);

/// Writes lines (without newlines) to the log a source reads.
pub type Append<'a> = &'a mut (dyn FnMut(&[String]) + Send);

fn text(line: &LogLine) -> String {
    String::from_utf8_lossy(&line.bytes).into_owned()
}

/// Polls until `want` lines arrived (or the deadline); returns them and the polls' sizes.
async fn collect(source: &dyn LogSource, want: usize) -> (Vec<LogLine>, Vec<usize>) {
    let mut got = Vec::new();
    let mut batches = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while got.len() < want && Instant::now() < deadline {
        let lines = source
            .poll()
            .await
            .expect("a healthy source polls without error");
        if lines.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        batches.push(lines.len());
        got.extend(lines);
    }
    (got, batches)
}

/// Asserts that `got` are the `expected` lines, in order (each may carry a source's prefix).
fn assert_lines(got: &[LogLine], expected: &[String]) {
    assert_eq!(
        got.len(),
        expected.len(),
        "every appended line arrives once (got {:?}...)",
        got.iter().take(3).map(text).collect::<Vec<_>>()
    );
    for (i, (line, want)) in got.iter().zip(expected).enumerate() {
        let line = text(line);
        assert!(
            line.ends_with(want.as_str()),
            "line {i}: expected {want:?}, got {line:?} (lost, reordered or changed)"
        );
    }
}

fn numbered(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "conformance {tag} {i:06} failure from 192.0.2.{}",
                i % 250 + 1
            )
        })
        .collect()
}

/// Runs every check in order on one source.
pub async fn run_all(source: &dyn LogSource, append: Append<'_>) {
    quiet_source_polls_nothing(source).await;
    lines_arrive_in_order_once(source, append).await;
    a_backlog_arrives_whole_in_order(source, append).await;
    checkpoint_moves_with_the_lines(source, append).await;
    batches_hold_the_lines_once(source, append).await;
}

/// A source following an empty log polls no lines and no error, reports no problem and is not
/// finished.
pub async fn quiet_source_polls_nothing(source: &dyn LogSource) {
    for _ in 0..3 {
        let lines = source.poll().await.expect("poll of a quiet source");
        assert!(lines.is_empty(), "nothing was written: {lines:?}");
    }
    assert!(
        source.problems().is_empty(),
        "a readable log reports no problem: {:?}",
        source.problems()
    );
    assert!(!source.is_finished(), "a followed log is never finished");
}

/// Appended lines arrive in order, each once, with their bytes; polling again gives nothing.
pub async fn lines_arrive_in_order_once(source: &dyn LogSource, append: Append<'_>) {
    let lines = numbered("order", 3);
    append(&lines);
    let (got, _) = collect(source, lines.len()).await;
    assert_lines(&got, &lines);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = source.poll().await.expect("poll");
    assert!(again.is_empty(), "lines delivered twice: {again:?}");
}

/// 2,000 lines appended at once arrive whole and in order, over one or more polls.
pub async fn a_backlog_arrives_whole_in_order(source: &dyn LogSource, append: Append<'_>) {
    let lines = numbered("backlog", 2000);
    append(&lines);
    let (got, batches) = collect(source, lines.len()).await;
    assert_lines(&got, &lines);
    assert!(batches.iter().all(|&n| n > 0), "{batches:?}");
}

/// A source that saves a checkpoint saves a new one once it has read new lines (a restart from
/// the old one would read them twice); one that saves nothing stays empty.
pub async fn checkpoint_moves_with_the_lines(source: &dyn LogSource, append: Append<'_>) {
    let before = source.checkpoint();
    let lines = numbered("checkpoint", 2);
    append(&lines);
    let (got, _) = collect(source, lines.len()).await;
    assert_lines(&got, &lines);
    let after = source.checkpoint();
    if !before.is_empty() {
        assert_ne!(before, after, "the checkpoint moves past lines read");
        let keys = |c: &[(String, Vec<u8>)]| c.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&before), keys(&after), "the same keys, new values");
    }
}

/// [`LogSource::poll_batch`] gives the appended lines in order, each once (a block's lines each
/// end in `\n`), and shares its position with [`LogSource::poll`]: what one returned the other
/// never returns again.
pub async fn batches_hold_the_lines_once(source: &dyn LogSource, append: Append<'_>) {
    let lines = numbered("batch", 500);
    append(&lines);
    let mut got = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while got.len() < lines.len() && Instant::now() < deadline {
        let batch = source
            .poll_batch()
            .await
            .expect("a healthy source polls without error");
        if let LogBatch::Block(block) = &batch {
            assert!(
                block.is_empty() || block.ends_with(b"\n"),
                "a block holds complete lines"
            );
        }
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        got.extend(batch.into_lines());
    }
    assert_lines(&got, &lines);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = source.poll().await.expect("poll");
    assert!(again.is_empty(), "lines delivered twice: {again:?}");
    assert!(
        source.poll_batch().await.expect("poll").is_empty(),
        "lines delivered twice"
    );
}
