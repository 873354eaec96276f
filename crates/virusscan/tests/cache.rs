//! The scan cache's file format, pinned by a committed fixture (tests/data/cache-v1.bin).

use virusscan::{FileIdentity, ScanCache};

const FIXTURE: &[u8] = include_bytes!("data/cache-v1.bin");

fn id(dev: u64, ino: u64, size: u64, mtime_ns: i64, ctime_ns: i64) -> FileIdentity {
    FileIdentity {
        dev,
        ino,
        size,
        mtime_ns,
        ctime_ns,
    }
}

fn fixture_entries() -> Vec<FileIdentity> {
    vec![
        id(2049, 12, 0, 1764579600000000000, 1764579600123456789),
        id(2049, 4096, 68, 1764579601500000000, 1764579601500000001),
        id(64768, 7, 1 << 33, -1000000000, 1764579602000000000),
    ]
}

#[test]
fn fixture_decodes_to_the_documented_entries() {
    let cache = ScanCache::decode(FIXTURE).unwrap();
    assert_eq!(
        cache.signature_version(),
        "ClamAV 1.4.3/27480/Mon Dec  1 09:00:00 2026"
    );
    assert_eq!(cache.len(), 3);
    for e in fixture_entries() {
        assert!(cache.is_clean(&e), "{e:?}");
        // Any change of size, mtime or ctime is a different version of the file.
        assert!(!cache.is_clean(&FileIdentity {
            size: e.size + 1,
            ..e
        }));
        assert!(!cache.is_clean(&FileIdentity {
            mtime_ns: e.mtime_ns + 1,
            ..e
        }));
        assert!(!cache.is_clean(&FileIdentity {
            ctime_ns: e.ctime_ns + 1,
            ..e
        }));
    }
}

#[test]
fn encoder_writes_the_fixture_byte_for_byte() {
    let mut cache = ScanCache::new("ClamAV 1.4.3/27480/Mon Dec  1 09:00:00 2026");
    for e in fixture_entries().into_iter().rev() {
        cache.insert_clean(&e);
    }
    assert_eq!(cache.encode(), FIXTURE);
}

#[test]
fn corrupt_caches_are_refused_with_a_reason() {
    assert!(ScanCache::decode(b"").unwrap_err().contains("too short"));
    let mut bad_magic = FIXTURE.to_vec();
    bad_magic[0] = b'X';
    assert!(ScanCache::decode(&bad_magic).unwrap_err().contains("magic"));
    for cut in [FIXTURE.len() - 1, FIXTURE.len() - 40, 30] {
        assert!(ScanCache::decode(&FIXTURE[..cut]).is_err(), "cut at {cut}");
    }
    let mut flipped = FIXTURE.to_vec();
    flipped[70] ^= 1;
    assert!(
        ScanCache::decode(&flipped)
            .unwrap_err()
            .contains("checksum")
    );
}

#[test]
fn other_signatures_mean_an_empty_cache() {
    let cache = ScanCache::decode(FIXTURE).unwrap();
    assert_eq!(
        cache
            .clone()
            .for_signatures("ClamAV 1.4.3/27480/Mon Dec  1 09:00:00 2026")
            .len(),
        3
    );
    assert!(
        cache
            .for_signatures("ClamAV 1.4.3/27481/Tue Dec  2 09:00:00 2026")
            .is_empty()
    );
}

#[test]
fn saving_replaces_atomically_and_loading_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scan.cache");
    assert!(ScanCache::load(&path).unwrap().is_none());
    std::fs::write(&path, FIXTURE).unwrap();
    let mut cache = ScanCache::load(&path).unwrap().unwrap();
    cache.insert_clean(&id(1, 2, 3, 4, 5));
    cache.save(&path).unwrap();
    assert_eq!(ScanCache::load(&path).unwrap().unwrap(), cache);
    // No temporary file left beside it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // A corrupt file is an error naming the file, not an empty cache.
    std::fs::write(&path, b"garbage").unwrap();
    let err = ScanCache::load(&path).unwrap_err().to_string();
    assert!(err.contains("scan.cache"), "{err}");
}

proptest::proptest! {
    /// Arbitrary bytes and damaged fixtures never panic the decoder.
    #[test]
    fn decoding_garbage_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let _ = ScanCache::decode(&bytes);
        let mut damaged = FIXTURE.to_vec();
        for (i, b) in bytes.iter().enumerate() {
            let at = (i * 37 + usize::from(*b)) % damaged.len();
            damaged[at] ^= b | 1;
        }
        let _ = ScanCache::decode(&damaged);
        let _ = ScanCache::decode(&damaged[..bytes.len().min(damaged.len())]);
    }
}
