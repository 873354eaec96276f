//! `compare_trees` decides whether a restore is faithful: it must see a difference in each
//! attribute it claims to compare (entries, type, content, mode, owner, mtime, symlink target,
//! xattrs, hard-link groups), and none between identical trees.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use filetime::FileTime;

/// Builds the same small tree at `root` every time: files, a directory, a symlink, a hard link,
/// fixed modes and mtimes.
fn build(root: &Path) {
    std::fs::create_dir_all(root.join("dir")).unwrap();
    std::fs::write(root.join("dir/file"), b"same bytes").unwrap();
    std::fs::write(root.join("other"), b"other bytes").unwrap();
    std::fs::write(root.join("single"), b"one name").unwrap();
    std::os::unix::fs::symlink("dir/file", root.join("link")).unwrap();
    std::fs::hard_link(root.join("other"), root.join("dir/other-link")).unwrap();
    for (path, mode) in [
        ("dir/file", 0o640),
        ("other", 0o600),
        ("single", 0o644),
        ("dir", 0o755),
    ] {
        std::fs::set_permissions(root.join(path), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let time = FileTime::from_unix_time(1_600_000_000, 123_456_789);
    for path in ["dir/file", "other", "single", "link", "dir", ""] {
        filetime::set_symlink_file_times(root.join(path), time, time).unwrap();
    }
}

/// Builds two identical trees, changes the second with `change`, and returns the differences.
fn differences(change: impl FnOnce(&Path)) -> Vec<String> {
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    build(&a);
    build(&b);
    assert_eq!(
        backup_core::compare_trees(&a, &b).unwrap(),
        Vec::<String>::new()
    );
    change(&b);
    backup_core::compare_trees(&a, &b).unwrap()
}

/// `change` makes `compare_trees` report a difference naming `what`.
fn detects(what: &str, change: impl FnOnce(&Path)) {
    let diffs = differences(change);
    assert!(
        diffs.iter().any(|d| d.contains(what)),
        "{what}: not detected in {diffs:?}"
    );
}

/// Sets the fixed mtime on `path` again after a change moved it.
fn keep_mtime(path: &Path) {
    let time = FileTime::from_unix_time(1_600_000_000, 123_456_789);
    filetime::set_symlink_file_times(path, time, time).unwrap();
}

#[test]
fn identical_trees_have_no_differences() {
    assert!(differences(|_| {}).is_empty());
}

#[test]
fn a_missing_or_extra_entry_is_detected() {
    detects("the list of entries", |b| {
        std::fs::remove_file(b.join("single")).unwrap()
    });
    detects("the list of entries", |b| {
        std::fs::write(b.join("dir/new"), b"").unwrap()
    });
}

#[test]
fn a_changed_type_is_detected() {
    detects("single: type", |b| {
        std::fs::remove_file(b.join("single")).unwrap();
        std::fs::create_dir(b.join("single")).unwrap();
    });
}

#[test]
fn changed_content_is_detected_at_equal_and_different_lengths() {
    detects("dir/file: content", |b| {
        std::fs::write(b.join("dir/file"), b"SAME bytes").unwrap();
        keep_mtime(&b.join("dir/file"));
    });
    detects("dir/file: content", |b| {
        std::fs::write(b.join("dir/file"), b"same bytes!").unwrap();
        keep_mtime(&b.join("dir/file"));
    });
}

#[test]
fn a_changed_mode_is_detected() {
    detects("single: mode", |b| {
        std::fs::set_permissions(b.join("single"), std::fs::Permissions::from_mode(0o755)).unwrap();
    });
}

#[test]
fn a_changed_owner_is_detected() {
    // chown to another user needs root; as anyone else there is no other owner to give.
    let probe = tempfile::NamedTempFile::new().unwrap();
    if std::os::unix::fs::MetadataExt::uid(&probe.as_file().metadata().unwrap()) != 0 {
        test_support::missing("root (to chown a file to another user)");
        return;
    }
    detects("single: owner", |b| {
        std::os::unix::fs::lchown(b.join("single"), Some(65534), None).unwrap();
    });
    detects("link: owner", |b| {
        std::os::unix::fs::lchown(b.join("link"), None, Some(65534)).unwrap();
    });
}

#[test]
fn a_changed_mtime_is_detected_to_the_nanosecond() {
    detects("single: mtime", |b| {
        let time = FileTime::from_unix_time(1_600_000_000, 123_456_788);
        filetime::set_symlink_file_times(b.join("single"), time, time).unwrap();
    });
    detects("link: mtime", |b| {
        let time = FileTime::from_unix_time(1_600_000_001, 123_456_789);
        filetime::set_symlink_file_times(b.join("link"), time, time).unwrap();
    });
}

#[test]
fn a_changed_symlink_target_is_detected() {
    detects("link: symlink target", |b| {
        std::fs::remove_file(b.join("link")).unwrap();
        std::os::unix::fs::symlink("dir/other-link", b.join("link")).unwrap();
        keep_mtime(&b.join("link"));
    });
}

#[test]
fn changed_xattrs_are_detected() {
    let probe = tempfile::NamedTempFile::new().unwrap();
    if xattr::set(probe.path(), "user.probe", b"1").is_err() {
        test_support::missing("user xattr support on the temporary directory's file system");
        return;
    }
    detects("single: xattrs", |b| {
        xattr::set(b.join("single"), "user.added", b"1").unwrap();
    });
    detects("dir: xattrs", |b| {
        xattr::set(b.join("dir"), "user.added", b"1").unwrap();
        keep_mtime(&b.join("dir"));
    });
}

#[test]
fn changed_hard_link_groups_are_detected() {
    // The same names and contents, but `dir/other-link` a copy instead of a link.
    detects("hard-link groups", |b| {
        std::fs::remove_file(b.join("dir/other-link")).unwrap();
        std::fs::write(b.join("dir/other-link"), b"other bytes").unwrap();
        std::fs::set_permissions(
            b.join("dir/other-link"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        keep_mtime(&b.join("dir/other-link"));
        keep_mtime(&b.join("dir"));
    });
    // Two separate symlinks where the source has one symlink with two names.
    let diffs = {
        let work = tempfile::tempdir().unwrap();
        let (a, b) = (work.path().join("a"), work.path().join("b"));
        for root in [&a, &b] {
            std::fs::create_dir(root).unwrap();
            std::os::unix::fs::symlink("t", root.join("l1")).unwrap();
        }
        std::fs::hard_link(a.join("l1"), a.join("l2")).unwrap();
        std::os::unix::fs::symlink("t", b.join("l2")).unwrap();
        let time = FileTime::from_unix_time(1_600_000_000, 0);
        for root in [&a, &b] {
            for p in ["l1", "l2", ""] {
                filetime::set_symlink_file_times(root.join(p), time, time).unwrap();
            }
        }
        backup_core::compare_trees(&a, &b).unwrap()
    };
    assert_eq!(diffs, ["hard-link groups differ"]);
}
