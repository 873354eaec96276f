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

/// The read-only `shared/` directory beside the checkout (test vectors, schemas, bench tools).
///
/// `HOSTGUARD_SHARED` overrides it.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("HOSTGUARD_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
