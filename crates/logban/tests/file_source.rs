//! Following files on a real filesystem: appends, partial lines, rename rotation, copytruncate,
//! start at the end or a saved position, globs picking up new files.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use logban::source::{FileSource, FileTail, LogSource, StartAt};

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("write");
}

fn texts(lines: Vec<logban::source::LogLine>) -> Vec<String> {
    lines
        .into_iter()
        .map(|l| String::from_utf8(l.bytes).expect("utf8"))
        .collect()
}

#[test]
fn follows_appends_and_partial_lines_from_the_end() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("auth.log");
    append(&log, "old line\n");
    let mut tail = FileTail::open(&log, StartAt::End).expect("open");
    assert!(tail.poll().expect("poll").is_empty());
    append(&log, "one\ntw");
    assert_eq!(texts(tail.poll().expect("poll")), ["one"]);
    append(&log, "o\nthree\n");
    assert_eq!(texts(tail.poll().expect("poll")), ["two", "three"]);
}

#[test]
fn survives_rename_rotation_and_copytruncate() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("auth.log");
    append(&log, "");
    let mut tail = FileTail::open(&log, StartAt::Beginning).expect("open");
    append(&log, "a\n");
    assert_eq!(texts(tail.poll().expect("poll")), ["a"]);

    // logrotate's default: the writer still appends to the renamed file, a new file appears.
    append(&log, "b\n");
    std::fs::rename(&log, dir.path().join("auth.log.1")).expect("rename");
    append(&dir.path().join("auth.log.1"), "c\n");
    append(&log, "d\n");
    assert_eq!(texts(tail.poll().expect("poll")), ["b", "c", "d"]);

    // copytruncate: same inode, emptied, written from the start again.
    append(&log, "e\n");
    assert_eq!(texts(tail.poll().expect("poll")), ["e"]);
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .expect("truncate");
    append(&log, "f\n");
    assert_eq!(texts(tail.poll().expect("poll")), ["f"]);
}

#[test]
fn resumes_at_a_saved_position_unless_rotated() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("auth.log");
    append(&log, "1\n2\n");
    let mut tail = FileTail::open(&log, StartAt::Beginning).expect("open");
    assert_eq!(texts(tail.poll().expect("poll")), ["1", "2"]);
    let saved = tail.position();
    drop(tail);

    append(&log, "3\n");
    let mut resumed = FileTail::open(&log, StartAt::Saved(saved)).expect("open");
    assert_eq!(texts(resumed.poll().expect("poll")), ["3"]);

    // Rotated while down: the new file is read from its start.
    std::fs::rename(&log, dir.path().join("auth.log.1")).expect("rename");
    append(&log, "4\n");
    let mut fresh = FileTail::open(&log, StartAt::Saved(saved)).expect("open");
    assert_eq!(texts(fresh.poll().expect("poll")), ["4"]);
}

#[test]
fn globs_pick_up_new_files_and_missing_files_appear_later() {
    let dir = tempfile::tempdir().expect("tmp");
    append(&dir.path().join("a.log"), "a0\n");
    let src = FileSource::new(
        [dir.path().join("*.log"), dir.path().join("later.txt")],
        StartAt::End,
    )
    .expect("source");
    append(&dir.path().join("a.log"), "a1\n");
    append(&dir.path().join("b.log"), "b1\n");
    append(&dir.path().join("later.txt"), "l1\n");
    append(&dir.path().join("skip.txt"), "no\n");
    let mut got: Vec<String> = src
        .poll_blocking()
        .expect("poll")
        .into_iter()
        .map(|l| String::from_utf8(l.bytes).expect("utf8"))
        .collect();
    got.sort();
    assert_eq!(got, ["a1", "b1", "l1"]);
    assert_eq!(src.positions().len(), 3);
}

#[test]
fn overlong_lines_are_cut_not_buffered_forever() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("big.log");
    append(&log, "");
    let mut tail = FileTail::open(&log, StartAt::Beginning).expect("open");
    append(&log, &"x".repeat(3 << 20));
    append(&log, "\nnext\n");
    let lines = tail.poll().expect("poll");
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].bytes.len(), 1 << 20);
    assert_eq!(lines[1].bytes, b"next");
    assert_eq!(tail.cut_lines(), 1, "the cut is counted, not silent");
}

#[test]
fn a_large_backlog_comes_over_several_bounded_polls() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("backlog.log");
    append(&log, "");
    let mut tail = FileTail::open(&log, StartAt::Beginning).expect("open");
    let line = "y".repeat(1023);
    let count = 20 * 1024; // 20 MiB of 1 KiB lines
    append(&log, &format!("{line}\n").repeat(count));
    let mut polls = Vec::new();
    loop {
        let got = tail.poll().expect("poll");
        if got.is_empty() {
            break;
        }
        assert!(got.iter().all(|l| l.bytes == line.as_bytes()));
        polls.push(got.len());
    }
    assert!(polls.len() >= 3, "{polls:?}");
    assert!(polls.iter().all(|&n| n <= 8 * 1024 + 64), "{polls:?}");
    assert_eq!(polls.iter().sum::<usize>(), count);
}

/// Paths that give nothing to read are named with why, so a daemon can warn; a missing file is
/// picked up once it appears.
#[test]
fn missing_files_directories_and_empty_globs_are_reported() {
    let dir = tempfile::tempdir().expect("tmp");
    let present = dir.path().join("present.log");
    append(&present, "x\n");
    let missing = dir.path().join("missing.log");
    let glob = dir.path().join("sub").join("*.log");
    std::fs::create_dir(dir.path().join("sub")).expect("sub");
    let src = FileSource::new(
        [
            present.clone(),
            missing.clone(),
            dir.path().to_path_buf(),
            glob.clone(),
        ],
        StartAt::End,
    )
    .expect("opens");
    let reported: Vec<_> = src.problems().into_iter().map(|p| p.input).collect();
    let shown = |p: &Path| p.display().to_string();
    assert_eq!(reported, [shown(&missing), shown(dir.path()), shown(&glob)]);
    assert!(src.problems()[1].why.contains("directory"));
    assert!(src.problems()[0].why.contains("does not exist"));
    append(&missing, "appeared\n");
    assert_eq!(texts(src.poll_blocking().expect("poll")), ["appeared"]);
    assert_eq!(src.problems().len(), 2, "the file is no longer reported");
}
