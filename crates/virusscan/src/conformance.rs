//! The [`Scanner`] conformance suite (feature `conformance`): plain async functions over
//! `&dyn Scanner` that every implementation runs against a real engine.
//!
//! ```no_run
//! # async fn demo(scanner: &dyn virusscan::Scanner) {
//! let samples = virusscan::conformance::Samples::new(b"hello".to_vec(), b"<infected>".to_vec());
//! virusscan::conformance::run_all(scanner, &samples).await;
//! # }
//! ```

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use crate::fsutil::FileIdentity;
use crate::scanner::{Scanner, Verdict};

/// Inputs the suite scans, provided by the implementation's test.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Samples {
    /// Data the scanner must find clean.
    pub clean: Vec<u8>,
    /// Data the scanner must find infected.
    pub infected: Vec<u8>,
    /// The end of the signature name the infected sample must be reported with.
    pub signature_suffix: Option<String>,
    /// Data over the scanner's stream size limit, if it has one.
    pub too_large: Option<Vec<u8>>,
}

impl Samples {
    /// Samples with a clean and an infected input.
    pub fn new(clean: Vec<u8>, infected: Vec<u8>) -> Self {
        Samples {
            clean,
            infected,
            signature_suffix: None,
            too_large: None,
        }
    }

    /// The infected sample's signature must end with `suffix`.
    pub fn with_signature_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.signature_suffix = Some(suffix.into());
        self
    }

    /// Data over the scanner's size limit.
    pub fn with_too_large(mut self, data: Vec<u8>) -> Self {
        self.too_large = Some(data);
        self
    }
}

/// Runs every check.
pub async fn run_all(scanner: &dyn Scanner, samples: &Samples) {
    ping_and_version(scanner).await;
    every_input_kind_agrees(scanner, samples).await;
    trickled_reader_still_detects(scanner, samples).await;
    empty_input_is_clean(scanner).await;
    failing_reader_is_an_error(scanner, samples).await;
    if samples.too_large.is_some() {
        too_large_is_not_clean(scanner, samples).await;
    }
}

/// `ping` succeeds and the signature version is non-empty and stable.
pub async fn ping_and_version(scanner: &dyn Scanner) {
    scanner.ping().await.expect("ping");
    let first = scanner
        .signature_version()
        .await
        .expect("signature version");
    assert!(!first.is_empty(), "empty signature version");
    let second = scanner
        .signature_version()
        .await
        .expect("signature version");
    assert_eq!(first, second, "signature version changed between two calls");
}

fn check_infected(verdict: &Verdict, samples: &Samples, how: &str) {
    let Verdict::Infected { signature } = verdict else {
        panic!("{how}: infected sample reported as {verdict:?}");
    };
    if let Some(suffix) = &samples.signature_suffix {
        assert!(
            signature.ends_with(suffix.as_str()),
            "{how}: signature {signature:?} does not end with {suffix:?}"
        );
    }
}

/// Bytes, readers, open files and paths give the same verdicts.
pub async fn every_input_kind_agrees(scanner: &dyn Scanner, samples: &Samples) {
    assert_eq!(
        scanner.scan_bytes(&samples.clean).await.expect("bytes"),
        Verdict::Clean,
        "clean bytes"
    );
    check_infected(
        &scanner.scan_bytes(&samples.infected).await.expect("bytes"),
        samples,
        "bytes",
    );
    let mut reader = &samples.infected[..];
    check_infected(
        &scanner.scan_reader(&mut reader).await.expect("reader"),
        samples,
        "reader",
    );

    let dir = tempfile::tempdir().expect("tempdir");
    for (name, data, infected) in [
        ("clean", &samples.clean, false),
        ("infected", &samples.infected, true),
    ] {
        let path = dir.path().join(name);
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(data).expect("write");
        drop(f);
        let file = std::fs::File::open(&path).expect("open");
        // A file whose offset is not at the start is still scanned whole.
        let mut moved = &file;
        std::io::Read::read(&mut moved, &mut [0u8; 3]).expect("read");
        let by_file = scanner.scan_file(&file).await.expect("file");
        let identity = FileIdentity::of(&file).expect("fstat");
        let by_identity = scanner
            .scan_file_with_identity(&file, &identity)
            .await
            .expect("file with identity");
        let by_path = scanner.scan_path(&path).await.expect("path");
        if infected {
            check_infected(&by_file, samples, "file");
            check_infected(&by_identity, samples, "file with identity");
            check_infected(&by_path, samples, "path");
        } else {
            assert_eq!(by_file, Verdict::Clean, "clean file");
            assert_eq!(by_identity, Verdict::Clean, "clean file with identity");
            assert_eq!(by_path, Verdict::Clean, "clean path");
        }
    }
    // A symlink is not a file to scan.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(dir.path().join("infected"), &link).expect("symlink");
    assert!(
        scanner.scan_path(&link).await.is_err(),
        "scan_path followed a symlink"
    );
}

/// A reader yielding one byte at a time is scanned like the whole buffer.
pub async fn trickled_reader_still_detects(scanner: &dyn Scanner, samples: &Samples) {
    let mut reader = Trickle {
        data: &samples.infected,
        fail_at: None,
    };
    check_infected(
        &scanner
            .scan_reader(&mut reader)
            .await
            .expect("trickled reader"),
        samples,
        "trickled reader",
    );
}

/// No data is clean data.
pub async fn empty_input_is_clean(scanner: &dyn Scanner) {
    assert_eq!(
        scanner.scan_bytes(b"").await.expect("empty"),
        Verdict::Clean
    );
}

/// A reader that fails part-way is an error, never a verdict.
pub async fn failing_reader_is_an_error(scanner: &dyn Scanner, samples: &Samples) {
    let mut reader = Trickle {
        data: &samples.clean,
        fail_at: Some(samples.clean.len() / 2),
    };
    let result = scanner.scan_reader(&mut reader).await;
    assert!(result.is_err(), "a failing reader gave {result:?}");
    // The scanner is still usable afterwards.
    assert_eq!(
        scanner
            .scan_bytes(&samples.clean)
            .await
            .expect("after failure"),
        Verdict::Clean
    );
}

/// Data over the size limit is reported too large (never clean), by bytes and by file.
pub async fn too_large_is_not_clean(scanner: &dyn Scanner, samples: &Samples) {
    let Some(big) = &samples.too_large else {
        return;
    };
    let verdict = scanner.scan_bytes(big).await.expect("too large bytes");
    assert!(
        matches!(verdict, Verdict::TooLarge { .. }),
        "oversized bytes gave {verdict:?}"
    );
    let mut file = tempfile::tempfile().expect("tempfile");
    file.write_all(big).expect("write");
    let verdict = scanner.scan_file(&file).await.expect("too large file");
    assert!(
        matches!(verdict, Verdict::TooLarge { .. }),
        "oversized file gave {verdict:?}"
    );
    let identity = FileIdentity::of(&file).expect("fstat");
    let verdict = scanner
        .scan_file_with_identity(&file, &identity)
        .await
        .expect("too large file with identity");
    assert!(
        matches!(verdict, Verdict::TooLarge { .. }),
        "oversized file with identity gave {verdict:?}"
    );
    assert_eq!(
        scanner
            .scan_bytes(&samples.clean)
            .await
            .expect("after too large"),
        Verdict::Clean
    );
}

/// Yields one byte per read; fails with an I/O error at `fail_at`.
struct Trickle<'a> {
    data: &'a [u8],
    fail_at: Option<usize>,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(at) = self.fail_at {
            if at == 0 {
                return Poll::Ready(Err(std::io::Error::other("source failed")));
            }
            self.fail_at = Some(at - 1);
        }
        if let Some((&first, rest)) = self.data.split_first() {
            buf.put_slice(&[first]);
            self.data = rest;
        }
        // Wake again so that readers yielding Pending in between are exercised too.
        cx.waker().wake_by_ref();
        Poll::Ready(Ok(()))
    }
}
