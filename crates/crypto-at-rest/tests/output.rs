//! `output::AtomicOutput`: what a path held is never lost to a failed write, whatever it names.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::Path;

use crypto_at_rest::output::AtomicOutput;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o7777
}

/// Names in `dir` starting with a dot: temporary files left behind.
fn hidden(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn an_uncommitted_output_leaves_the_old_file_and_no_temporary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data");
    std::fs::write(&path, b"old contents").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");

    let mut out = AtomicOutput::create(&path).expect("create");
    assert!(!out.is_direct());
    out.write_all(b"partial").expect("write");
    drop(out);
    assert_eq!(std::fs::read(&path).expect("read"), b"old contents");
    assert!(hidden(dir.path()).is_empty(), "{:?}", hidden(dir.path()));

    // Committed: replaced in one step, keeping the old permission bits exactly.
    let mut out = AtomicOutput::create(&path).expect("create");
    out.write_all(b"new contents").expect("write");
    out.commit().expect("commit");
    assert_eq!(std::fs::read(&path).expect("read"), b"new contents");
    assert_eq!(mode(&path), 0o640);
    assert!(hidden(dir.path()).is_empty());
}

#[test]
fn a_new_file_appears_only_on_commit_and_private_ones_are_0600() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new");
    let mut out = AtomicOutput::create(&path).expect("create");
    out.write_all(b"x").expect("write");
    assert!(!path.exists(), "visible before commit");
    out.commit().expect("commit");
    assert_eq!(std::fs::read(&path).expect("read"), b"x");

    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"old").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut out = AtomicOutput::create_private(&secret).expect("create");
    out.write_all(b"key").expect("write");
    out.commit().expect("commit");
    assert_eq!(mode(&secret), 0o600);
}

#[test]
fn a_symlink_stays_and_the_file_it_names_is_replaced_only_on_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::create_dir(d.join("real")).expect("mkdir");
    std::fs::write(d.join("real/target"), b"old").expect("write");
    std::os::unix::fs::symlink("real/target", d.join("link")).expect("symlink");

    let mut out = AtomicOutput::create(&d.join("link")).expect("create");
    out.write_all(b"partial").expect("write");
    drop(out);
    assert_eq!(std::fs::read(d.join("real/target")).expect("read"), b"old");

    let mut out = AtomicOutput::create(&d.join("link")).expect("create");
    out.write_all(b"new").expect("write");
    out.commit().expect("commit");
    let link = std::fs::symlink_metadata(d.join("link")).expect("link");
    assert!(link.file_type().is_symlink());
    assert_eq!(std::fs::read(d.join("real/target")).expect("read"), b"new");
    assert!(hidden(&d.join("real")).is_empty());

    // A symlink to nothing is an error, not a file created somewhere.
    std::os::unix::fs::symlink("nowhere/file", d.join("dangling")).expect("symlink");
    let err = AtomicOutput::create(&d.join("dangling")).expect_err("dangling symlink");
    assert!(err.to_string().contains("symlink to nothing"), "{err}");
}

#[test]
fn devices_and_fifos_are_written_directly_and_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).expect("read fifo"))
    };
    let mut out = AtomicOutput::create(&fifo).expect("create");
    assert!(out.is_direct());
    out.write_all(b"through the pipe").expect("write");
    drop(out);
    assert_eq!(reader.join().expect("reader"), b"through the pipe");
    let kind = std::fs::symlink_metadata(&fifo).expect("kept").file_type();
    assert!(kind.is_fifo());

    let mut out = AtomicOutput::create(Path::new("/dev/null")).expect("create");
    assert!(out.is_direct());
    out.write_all(b"gone").expect("write");
    drop(out);
    let null = std::fs::symlink_metadata("/dev/null").expect("/dev/null kept");
    assert!(null.file_type().is_char_device());
}

#[test]
fn the_same_file_is_recognised_through_any_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("input"), b"data").expect("write");
    std::fs::hard_link(d.join("input"), d.join("hard")).expect("hard link");
    std::os::unix::fs::symlink("input", d.join("soft")).expect("symlink");
    std::fs::write(d.join("other"), b"data").expect("write");
    let input = std::fs::File::open(d.join("input")).expect("open");
    for name in ["input", "hard", "soft", "./input"] {
        let out = AtomicOutput::create(&d.join(name)).expect("create");
        assert!(out.is_same_file(&input).expect("stat"), "{name}");
    }
    for name in ["other", "new"] {
        let out = AtomicOutput::create(&d.join(name)).expect("create");
        assert!(!out.is_same_file(&input).expect("stat"), "{name}");
    }
    let null = std::fs::File::open("/dev/null").expect("open");
    let out = AtomicOutput::create(Path::new("/dev/null")).expect("create");
    assert!(
        !out.is_same_file(&null).expect("stat"),
        "devices never count"
    );
}
