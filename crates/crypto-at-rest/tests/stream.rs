//! The stream format: round trips over sizes and chunk sizes, every kind of tampering, random
//! access, and the tokio adapters.

use std::io::{Cursor, Read, Write};

use crypto_at_rest::{Algorithm, CipherConfig, Error, KeyId, Keyring, SecretKey, Stage};
use proptest::prelude::*;

const TAG: usize = 16;

fn keys() -> Keyring {
    Keyring::new(KeyId(1), SecretKey::from_bytes([42; 32]))
}

fn config(chunk: u32, threads: usize, chacha: bool) -> CipherConfig {
    let alg = if chacha {
        Algorithm::ChaCha20Poly1305
    } else {
        Algorithm::Aes256Gcm
    };
    CipherConfig::builder()
        .with_algorithm(alg)
        .with_chunk_size(chunk)
        .with_threads(threads)
        .build()
        .unwrap()
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Seals with the Write adapter, in uneven pieces.
fn seal(keys: &Keyring, cfg: &CipherConfig, aad: &[u8], pt: &[u8]) -> Vec<u8> {
    let mut w = keys.encrypt_writer(cfg, aad, Vec::new()).unwrap();
    for piece in pt.chunks(1000) {
        w.write_all(piece).unwrap();
    }
    w.finish().unwrap()
}

/// Opens with the Read adapter: the plaintext released and the error, if any.
fn open(keys: &Keyring, aad: &[u8], sealed: &[u8]) -> (Vec<u8>, Option<Error>) {
    let mut out = Vec::new();
    let mut r = match keys.decrypt_reader(aad, sealed) {
        Ok(r) => r,
        Err(e) => return (out, Some(e)),
    };
    let mut buf = vec![0u8; 777];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Some(Error::from_io(e))),
        }
    }
}

/// Opens with the whole-stream engine too and checks it agrees with the reader.
fn open_both(keys: &Keyring, aad: &[u8], sealed: &[u8]) -> (Vec<u8>, Option<Error>) {
    let (got, err) = open(keys, aad, sealed);
    let mut out = Vec::new();
    let res = keys.decrypt_stream(2, aad, sealed, &mut out);
    assert_eq!(out, got, "engine and reader released different plaintext");
    assert_eq!(res.is_err(), err.is_some());
    (got, err)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn round_trips_over_sizes_and_chunk_sizes(
        len in 0usize..20_000,
        chunk in 1u32..3000,
        threads in 1usize..4,
        chacha in any::<bool>(),
        aad in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let keys = keys();
        let cfg = config(chunk, threads, chacha);
        let pt = data(len);
        let sealed = seal(&keys, &cfg, &aad, &pt);
        let chunks = len.div_ceil(chunk as usize).max(1);
        prop_assert_eq!(sealed.len(), Keyring::HEADER_LEN + len + chunks * TAG);
        let mut engine = Vec::new();
        keys.encrypt_stream(&cfg, &aad, &pt[..], &mut engine).unwrap();
        prop_assert_eq!(engine.len(), sealed.len());
        for s in [&sealed, &engine] {
            let (got, err) = open_both(&keys, &aad, s);
            prop_assert!(err.is_none());
            prop_assert_eq!(&got, &pt);
        }
        // Random access over a few ranges.
        let mut rr = keys.range_reader(&aad, Cursor::new(&engine)).unwrap();
        prop_assert_eq!(rr.plaintext_len(), len as u64);
        for (start, n) in [(0, len), (len / 3, 1 + len / 5), (len.saturating_sub(1), 10)] {
            let end = (start + n).min(len);
            prop_assert_eq!(rr.read_range(start as u64, n).unwrap(), &pt[start.min(end)..end]);
        }
    }
}

#[test]
fn every_bit_flip_in_header_or_body_fails() {
    let keys = keys();
    let pt = data(3 * 64 + 10);
    let sealed = seal(&keys, &config(64, 1, false), b"id", &pt);
    let body_start = Keyring::HEADER_LEN;
    for bit in 0..sealed.len() * 8 {
        let mut bad = sealed.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let (got, err) = open_both(&keys, b"id", &bad);
        assert!(err.is_some(), "flipped bit {bit} opened");
        // Only chunks before the damaged one are released, and they are genuine.
        let byte = bit / 8;
        let released_max = if byte < body_start {
            0
        } else {
            (byte - body_start) / (64 + TAG) * 64
        };
        assert!(
            got.len() <= released_max,
            "bit {bit}: released {} bytes",
            got.len()
        );
        assert_eq!(got, pt[..got.len()]);
    }
}

#[test]
fn truncation_at_every_chunk_boundary_fails() {
    let keys = keys();
    for len in [5 * 100, 5 * 100 - 1] {
        let pt = data(len);
        let sealed = seal(&keys, &config(100, 1, true), b"", &pt);
        for cut in (Keyring::HEADER_LEN..sealed.len())
            .step_by(100 + TAG)
            .chain([0, 10, sealed.len() - 1])
        {
            let (got, err) = open_both(&keys, b"", &sealed[..cut]);
            assert!(err.is_some(), "len {len}: cut at {cut} opened");
            assert_eq!(got, pt[..got.len()]);
            assert!(keys.range_reader(b"", Cursor::new(&sealed[..cut])).is_err());
        }
    }
}

#[test]
fn swapped_duplicated_and_appended_chunks_fail() {
    let keys = keys();
    let pt = data(4 * 50);
    let sealed = seal(&keys, &config(50, 1, false), b"", &pt);
    let h = Keyring::HEADER_LEN;
    let s = 50 + TAG;
    let chunk = |i: usize| &sealed[h + i * s..h + (i + 1) * s];
    let rebuild = |order: &[usize]| {
        let mut out = sealed[..h].to_vec();
        for &i in order {
            out.extend_from_slice(chunk(i));
        }
        out
    };
    for order in [
        &[1, 0, 2, 3][..],
        &[0, 2, 1, 3],
        &[0, 1, 3, 2],
        &[0, 0, 1, 2, 3],
        &[0, 1, 2, 2, 3],
        &[0, 1, 2, 3, 3],
        &[0, 1, 3],
    ] {
        let (got, err) = open_both(&keys, b"", &rebuild(order));
        assert!(err.is_some(), "order {order:?} opened");
        assert_eq!(got, pt[..got.len()]);
    }
    let mut appended = sealed.clone();
    appended.extend_from_slice(b"more");
    let (got, err) = open_both(&keys, b"", &appended);
    assert_eq!(
        got, pt,
        "the genuine last chunk is released before the error"
    );
    assert!(matches!(
        err,
        Some(Error::MalformedPayload("data follows the last chunk"))
    ));
}

#[test]
fn wrong_aad_wrong_key_and_other_streams_fail() {
    let keys = keys();
    let sealed = seal(
        &keys,
        &CipherConfig::default(),
        b"backup/2026-11-24",
        &data(100_000),
    );
    let (got, err) = open_both(&keys, b"backup/2026-11-25", &sealed);
    assert!(got.is_empty());
    assert!(matches!(
        err,
        Some(Error::Authentication(Stage::PayloadChunk))
    ));
    let other = Keyring::new(KeyId(1), SecretKey::from_bytes([43; 32]));
    let (got, err) = open_both(&other, b"backup/2026-11-24", &sealed);
    assert!(got.is_empty());
    assert!(matches!(err, Some(Error::Authentication(Stage::DataKey))));
    // A body spliced onto another stream's header fails at its first chunk.
    let second = seal(
        &keys,
        &CipherConfig::default(),
        b"backup/2026-11-24",
        &data(100_000),
    );
    let mut spliced = second[..Keyring::HEADER_LEN].to_vec();
    spliced.extend_from_slice(&sealed[Keyring::HEADER_LEN..]);
    let (got, err) = open_both(&keys, b"backup/2026-11-24", &spliced);
    assert!(got.is_empty() && err.is_some());
}

#[test]
fn range_reads_verify_only_covering_chunks() {
    /// Counts the bytes read, to show a range read touches only its chunks.
    struct Counting {
        inner: Cursor<Vec<u8>>,
        read: usize,
    }
    impl crypto_at_rest::RandomAccess for Counting {
        fn size(&mut self) -> std::io::Result<u64> {
            Ok(self.inner.get_ref().len() as u64)
        }
        fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
            self.read += buf.len();
            self.inner.set_position(offset);
            self.inner.read_exact(buf)
        }
    }
    let keys = keys();
    let pt = data(1 << 20);
    let sealed = seal(&keys, &config(4096, 1, false), b"r", &pt);
    let mut rr = keys
        .range_reader(
            b"r",
            Counting {
                inner: Cursor::new(sealed.clone()),
                read: 0,
            },
        )
        .unwrap();
    let opened = rr.read_range(10_000, 5000).unwrap();
    assert_eq!(opened, &pt[10_000..15_000]);
    // Small sequential reads inside the chunk opened last (chunk 3) read nothing more.
    for start in (12_288..16_384).step_by(512) {
        assert_eq!(
            rr.read_range(start, 512).unwrap(),
            &pt[start as usize..start as usize + 512]
        );
    }
    // Header + last chunk at open, then chunks 2 and 3 (bytes 8192..16384).
    let expect = Keyring::HEADER_LEN + 2 * (4096 + TAG) + (4096 + TAG);
    assert_eq!(rr.into_inner().read, expect);
    // Damage a chunk outside the range: still readable; inside: an error.
    let mut bad = sealed.clone();
    bad[Keyring::HEADER_LEN + 100 * (4096 + TAG) + 5] ^= 1;
    let mut rr = keys.range_reader(b"r", Cursor::new(bad)).unwrap();
    assert_eq!(rr.read_range(0, 100).unwrap(), &pt[..100]);
    assert!(matches!(
        rr.read_range(100 * 4096, 1),
        Err(Error::Authentication(Stage::PayloadChunk))
    ));
}

#[test]
fn parallel_engine_handles_large_streams() {
    let keys = keys();
    let pt = data(9 << 20 | 12345);
    for threads in [1, 2, 4] {
        let cfg = config(65536, threads, threads % 2 == 0);
        let mut sealed = Vec::new();
        keys.encrypt_stream(&cfg, b"big", &pt[..], &mut sealed)
            .unwrap();
        let mut out = Vec::new();
        assert_eq!(
            keys.decrypt_stream(threads, b"big", &sealed[..], &mut out)
                .unwrap(),
            pt.len() as u64
        );
        assert!(out == pt);
        // Damage late in the stream: everything before the damaged chunk is released.
        let at = sealed.len() - 3 * (65536 + TAG);
        sealed[at] ^= 0x80;
        let mut out = Vec::new();
        assert!(
            keys.decrypt_stream(threads, b"big", &sealed[..], &mut out)
                .is_err()
        );
        let chunk = (at - Keyring::HEADER_LEN) / (65536 + TAG);
        assert_eq!(out.len(), chunk * 65536);
        assert!(out[..] == pt[..out.len()]);
    }
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn tokio_adapters_round_trip_and_fail_like_the_std_ones() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let keys = keys();
    let pt = data(300_000);
    let cfg = config(10_000, 1, false);
    let mut w = keys
        .encrypt_async_writer(&cfg, b"a", Vec::new())
        .await
        .unwrap();
    for piece in pt.chunks(4097) {
        w.write_all(piece).await.unwrap();
    }
    w.shutdown().await.unwrap();
    let sealed = w.into_inner();
    // Interoperable with the std reader.
    let (got, err) = open(&keys, b"a", &sealed);
    assert!(err.is_none() && got == pt);
    let mut r = keys.decrypt_async_reader(b"a", &sealed[..]).await.unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    assert!(out == pt);
    let mut bad = sealed.clone();
    bad[Keyring::HEADER_LEN + 5 * (10_000 + TAG)] ^= 1;
    let mut r = keys.decrypt_async_reader(b"a", &bad[..]).await.unwrap();
    let mut out = Vec::new();
    let err = r.read_to_end(&mut out).await.unwrap_err();
    assert!(matches!(
        Error::from_io(err),
        Error::Authentication(Stage::PayloadChunk)
    ));
    assert!(out[..] == pt[..5 * 10_000]);
}

#[cfg(feature = "tokio")]
#[tokio::test]
async fn tokio_adapters_survive_backpressure() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A 100-byte pipe forces partial reads and writes and Pending on both sides.
    let keys = std::sync::Arc::new(keys());
    let pt = data(50_000);
    let (sealed_tx, sealed_rx) = tokio::io::duplex(100);
    let writer = {
        let (keys, pt) = (keys.clone(), pt.clone());
        tokio::spawn(async move {
            let cfg = config(3000, 1, true);
            let mut w = keys
                .encrypt_async_writer(&cfg, b"p", sealed_tx)
                .await
                .unwrap();
            for piece in pt.chunks(333) {
                w.write_all(piece).await.unwrap();
            }
            w.shutdown().await.unwrap();
        })
    };
    let mut r = keys.decrypt_async_reader(b"p", sealed_rx).await.unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    writer.await.unwrap();
    assert!(out == pt);
}

#[test]
fn in_place_sealer_matches_the_format_and_enforces_chunk_rules() {
    let keys = keys();
    let cfg = config(100, 1, false);
    let pt = data(250);
    let mut sealer = keys.stream_sealer(&cfg, b"in place").unwrap();
    let mut sealed = sealer.header().to_vec();
    let mut buf = pt.clone();
    let mut chunks = buf.chunks_mut(100).peekable();
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let tag = sealer.seal_chunk(chunk, last).unwrap();
        sealed.extend_from_slice(chunk);
        sealed.extend_from_slice(&tag);
    }
    assert!(
        sealer.seal_chunk(&mut [1], true).is_err(),
        "sealed after the last chunk"
    );
    let (got, err) = open_both(&keys, b"in place", &sealed);
    assert!(err.is_none() && got == pt);

    let mut sealer = keys.stream_sealer(&cfg, b"").unwrap();
    assert!(
        sealer.seal_chunk(&mut [0; 99], false).is_err(),
        "short non-last chunk"
    );
    assert!(
        sealer.seal_chunk(&mut [0; 101], true).is_err(),
        "oversized last chunk"
    );
    sealer.seal_chunk(&mut [0; 100], false).unwrap();
    assert!(
        sealer.seal_chunk(&mut [], true).is_err(),
        "empty last chunk after others"
    );
}
