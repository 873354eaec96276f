//! Helpers shared by hostguard's test suites (a dev-dependency only; never published).
//!
//! Tests that need a real tool or service call [`require_program`] or [`require_env`]. Outside
//! CI a missing tool makes the test skip with a printed reason; under `CI=true` (which CI sets) it
//! is a failure, so a missing install step can never pass silently.
//!
//! ```
//! if let Some(sh) = test_support::require_program("sh") {
//!     assert!(sh.is_file());
//! }
//! ```

use std::path::{Path, PathBuf};

/// True when running under CI (`CI=true`), where every service-backed test must run.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Reports that a test cannot run because `what` is missing: skips (returns) outside CI, fails under CI.
///
/// # Panics
/// Under `CI=true`, always: a missing service there is a failure.
pub fn missing(what: &str) {
    if in_ci() {
        panic!("CI=true but {what} is missing; scripts/test.sh should have provided it");
    }
    eprintln!("SKIPPED: {what} is missing (run scripts/test.sh to install and start it)");
    record_skip(&format!("{what} is missing"));
}

/// Appends a skipped test and its reason to the file named by `HOSTGUARD_SKIP_LOG`, if set.
///
/// `cargo test` hides the standard error of passing tests, so a skip would look like `ok`;
/// `scripts/test.sh` sets the variable and lists every line of that file at the end of the run.
/// The test is named by its thread, which libtest names after the test.
pub fn record_skip(reason: &str) {
    use std::io::Write;
    let Some(log) = std::env::var_os("HOSTGUARD_SKIP_LOG") else {
        return;
    };
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed thread>")
        .to_owned();
    // `cargo test` sets the package name at run time; the binary names the test target.
    let package = std::env::var("CARGO_PKG_NAME").unwrap_or_default();
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| {
            stem.rsplit_once('-')
                .map_or(stem.clone(), |(name, _hash)| name.to_owned())
        })
        .unwrap_or_default();
    let line = format!("{package} ({binary}) {test}: {reason}\n");
    // One write of a short line to an O_APPEND file: lines from parallel tests do not interleave.
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = file.write_all(line.as_bytes());
    }
}

/// Finds `name` on `PATH`, or reports it [`missing`] and returns `None`.
pub fn require_program(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    });
    if found.is_none() {
        missing(&format!("program `{name}`"));
    }
    found
}

/// Reads environment variable `name`, or reports it [`missing`] and returns `None`.
///
/// `why` says what the variable points at, for the skip message.
pub fn require_env(name: &str, why: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            missing(&format!("{why} (environment variable {name})"));
            None
        }
    }
}

/// Returns `path` if it exists, or reports it [`missing`] and returns `None`.
pub fn require_path(path: impl AsRef<Path>, why: &str) -> Option<PathBuf> {
    let path = path.as_ref();
    if path.exists() {
        Some(path.to_path_buf())
    } else {
        missing(&format!("{why} ({})", path.display()));
        None
    }
}

/// The workspace's root directory (where the root Cargo.toml is).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The standard output of a command that must have succeeded (its standard error in the
/// failure message otherwise).
pub fn success_stdout(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Copies the directory tree `from` to `to` (regular files and directories): a test works on
/// a copy of committed data (a format fixture), so nothing it does can change the files.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's directory");
    for entry in std::fs::read_dir(from).expect("read the directory to copy") {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy a file");
        }
    }
}

/// `len` pseudo-random bytes (xorshift64 from `seed`): incompressible test data that does not
/// repeat, so it cannot hide chunk mix-ups or be shrunk by compression.
///
/// ```
/// let a = test_support::noise(1000, 1);
/// assert_eq!(a, test_support::noise(1000, 1));
/// assert_ne!(a, test_support::noise(1000, 2));
/// ```
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
