//! Conformance suite for [`RandomAccess`] implementations (feature `conformance`): every source
//! given to [`Keyring::range_reader`](crate::Keyring::range_reader) should pass it.

use std::io::ErrorKind;

use crate::stream_format::RandomAccess;

/// Checks that `source`, which must hold exactly `contents`, reports its size and reads any
/// range, and that a read past the end fails with `UnexpectedEof`.
///
/// # Panics
/// On the first behaviour that does not conform, naming it.
pub fn random_access(source: &mut dyn RandomAccess, contents: &[u8]) {
    let len = contents.len();
    assert_eq!(
        source.size().expect("size"),
        len as u64,
        "size() is not the length"
    );
    let mut whole = vec![0u8; len];
    source
        .read_exact_at(0, &mut whole)
        .expect("read everything");
    assert!(whole == contents, "reading everything gave other bytes");
    for (offset, n) in [
        (0, 1),
        (len / 2, len / 3),
        (len.saturating_sub(7), 7),
        (len, 0),
    ] {
        let (offset, n) = (offset.min(len), n.min(len - offset.min(len)));
        let mut buf = vec![0u8; n];
        source
            .read_exact_at(offset as u64, &mut buf)
            .expect("read a range");
        assert_eq!(
            buf,
            contents[offset..offset + n],
            "range {offset}+{n} differs"
        );
    }
    // Reading backwards after forwards must work too (no hidden cursor dependence).
    if len > 0 {
        let mut first = [0u8];
        source
            .read_exact_at(0, &mut first)
            .expect("read the first byte again");
        assert_eq!(first[0], contents[0]);
    }
    let mut past = [0u8; 2];
    let err = source
        .read_exact_at(len.saturating_sub(1) as u64, &mut past)
        .expect_err("a read past the end succeeded");
    assert_eq!(
        err.kind(),
        ErrorKind::UnexpectedEof,
        "a read past the end: {err}"
    );
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    #[test]
    fn cursors_and_files_conform() {
        let contents: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        super::random_access(&mut Cursor::new(contents.clone()), &contents);
        super::random_access(&mut Cursor::new(Vec::new()), &[]);
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(&contents).expect("write");
        super::random_access(&mut file, &contents);
    }
}
