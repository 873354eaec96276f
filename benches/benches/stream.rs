//! Streaming encryption of 256 MiB on one core against raw ring AES-256-GCM sealing the same
//! bytes in the same 64 KiB chunks, in the same run: the in-place `StreamSealer` (no copy, like
//! the baseline), and the `Read`-to-`Write` engine and the `Write` adapter, which both copy each
//! byte once into their chunk buffer.
//!
//! `cargo bench -p hostguard-benches --bench stream`; figures go to benches/results/crypto.md.

use std::hint::black_box;
use std::io::Write;

use criterion::{Criterion, Throughput, criterion_main};
use crypto_at_rest::{Algorithm, CipherConfig, KeyId, Keyring, SecretKey};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

const TOTAL: usize = 256 << 20;
const CHUNK: usize = 64 << 10;

fn plaintext() -> Vec<u8> {
    (0..TOTAL).map(|i| (i * 131 + i / 4099) as u8).collect()
}

/// The baseline: ring seals each 64 KiB chunk in place with a counter nonce. No copies, no
/// header, no I/O: the most an AES-256-GCM stream could reach on this core.
fn raw_ring(key: &LessSafeKey, buf: &mut [u8]) -> u64 {
    let mut tags = 0u64;
    for (i, chunk) in buf.chunks_mut(CHUNK).enumerate() {
        let mut nonce = [0u8; 12];
        nonce[3..11].copy_from_slice(&(i as u64).to_be_bytes());
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&[0u8; 32]),
                chunk,
            )
            .expect("seal");
        tags = tags.wrapping_add(u64::from(tag.as_ref()[0]));
    }
    tags
}

fn bench(c: &mut Criterion) {
    let data = plaintext();
    let keys = Keyring::new(KeyId(1), SecretKey::from_bytes([3; 32]));
    let one_core = CipherConfig::builder()
        .with_algorithm(Algorithm::Aes256Gcm)
        .with_chunk_size(CHUNK as u32)
        .with_threads(1)
        .build()
        .expect("config");
    let raw_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[3; 32]).expect("key"));
    let mut raw_buf = data.clone();

    let mut group = c.benchmark_group("encrypt_256MiB_aes256gcm_64KiB_one_core");
    group.throughput(Throughput::Bytes(TOTAL as u64));
    group.sample_size(10);
    group.bench_function("raw_ring_seal_in_place", |b| {
        b.iter(|| black_box(raw_ring(&raw_key, &mut raw_buf)))
    });
    let mut sealer_buf = data.clone();
    group.bench_function("stream_sealer_in_place", |b| {
        b.iter(|| {
            let mut sealer = keys.stream_sealer(&one_core, b"bench").expect("sealer");
            let mut sink = std::io::sink();
            sink.write_all(sealer.header()).expect("write");
            let chunks = sealer_buf.len().div_ceil(CHUNK);
            for (i, chunk) in sealer_buf.chunks_mut(CHUNK).enumerate() {
                let tag = sealer.seal_chunk(chunk, i + 1 == chunks).expect("seal");
                sink.write_all(chunk).expect("write");
                sink.write_all(&tag).expect("write");
            }
        })
    });
    group.bench_function("encrypt_stream_from_reader", |b| {
        b.iter(|| {
            keys.encrypt_stream(&one_core, b"bench", &data[..], std::io::sink())
                .expect("encrypt")
        })
    });
    group.bench_function("encrypt_writer_write_all", |b| {
        b.iter(|| {
            let mut w = keys
                .encrypt_writer(&one_core, b"bench", std::io::sink())
                .expect("writer");
            w.write_all(&data).expect("write");
            w.finish().expect("finish")
        })
    });
    group.finish();

    // The multi-threaded engine (what age-format files use too): ChaCha20-Poly1305, 64 KiB
    // chunks, one thread against all cores.
    let mut group = c.benchmark_group("chacha20poly1305_256MiB_64KiB_engine");
    group.throughput(Throughput::Bytes(TOTAL as u64));
    group.sample_size(10);
    let mut sealed = Vec::new();
    for threads in [1, 2] {
        let config = CipherConfig::builder()
            .with_algorithm(Algorithm::ChaCha20Poly1305)
            .with_threads(threads)
            .build()
            .expect("config");
        sealed.clear();
        keys.encrypt_stream(&config, b"bench", &data[..], &mut sealed)
            .expect("encrypt");
        group.bench_function(format!("encrypt_{threads}_threads"), |b| {
            b.iter(|| {
                keys.encrypt_stream(&config, b"bench", &data[..], std::io::sink())
                    .expect("encrypt")
            })
        });
        group.bench_function(format!("decrypt_{threads}_threads"), |b| {
            b.iter(|| {
                keys.decrypt_stream(threads, b"bench", &sealed[..], std::io::sink())
                    .expect("decrypt")
            })
        });
    }
    group.finish();
}

mod group {
    // criterion_group! defines an undocumented `pub fn`.
    #![allow(missing_docs)]
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);
