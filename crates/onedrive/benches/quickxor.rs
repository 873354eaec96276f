//! QuickXorHash throughput on one core (goal: at least 3 GB/s), against a byte-at-a-time
//! implementation of the published description (the straightforward port, as peer).
//!
//! `cargo bench -p onedrive --bench quickxor`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use onedrive::QuickXorHash;

/// Byte-at-a-time: each byte XORed into the 160-bit state at offset 11*i mod 160, as Microsoft's
/// reference code does per byte.
fn bytewise(data: &[u8]) -> [u8; 20] {
    let mut state = [0u8; 20];
    let mut offset = 0usize;
    for &byte in data {
        let spread = u16::from(byte) << (offset % 8);
        state[offset / 8] ^= spread as u8;
        state[(offset / 8 + 1) % 20] ^= (spread >> 8) as u8;
        offset = (offset + 11) % 160;
    }
    for (t, l) in state[12..]
        .iter_mut()
        .zip((data.len() as u64).to_le_bytes())
    {
        *t ^= l;
    }
    state
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("quickxor");
    for size in [64 << 10, 64 << 20] {
        let data: Vec<u8> = (0..size)
            .map(|i: usize| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        assert_eq!(QuickXorHash::digest_base64(&data).len(), 28);
        let mut ours = QuickXorHash::new();
        ours.update(&data);
        assert_eq!(ours.finalize(), bytewise(&data), "implementations disagree");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("folded", size), &data, |b, data| {
            b.iter(|| {
                let mut hash = QuickXorHash::new();
                hash.update(std::hint::black_box(data));
                hash.finalize()
            })
        });
        group.bench_with_input(BenchmarkId::new("bytewise", size), &data, |b, data| {
            b.iter(|| bytewise(std::hint::black_box(data)))
        });
    }
    group.finish();
}

mod groups {
    // criterion_group! defines undocumented `pub fn`s.
    #![allow(missing_docs)]
    criterion::criterion_group!(benches, super::bench);
}

criterion_main!(groups::benches);
