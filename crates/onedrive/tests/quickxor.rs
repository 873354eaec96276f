//! QuickXorHash against an independent bit-by-bit implementation of Microsoft's description
//! (every length 0..=1024, streaming splits, a large input) and against rclone's vectors.

use base64::Engine as _;
use onedrive::QuickXorHash;

/// Bit by bit, straight from the description: bit `k` of input byte `i` flips bit
/// `(11 * i + k) mod 160` of the state; the state is read out little-endian (bit `b` of the
/// state is bit `b % 8` of byte `b / 8`), and the length (64-bit little endian) is XORed into
/// the last 8 bytes.
fn bit_by_bit(data: &[u8]) -> [u8; 20] {
    let mut bits = [false; 160];
    for (i, &byte) in data.iter().enumerate() {
        for k in 0..8 {
            if byte >> k & 1 == 1 {
                let b = ((i as u128 * 11 + k as u128) % 160) as usize;
                bits[b] = !bits[b];
            }
        }
    }
    let mut out = [0u8; 20];
    for (b, &set) in bits.iter().enumerate() {
        if set {
            out[b / 8] |= 1 << (b % 8);
        }
    }
    let len = (data.len() as u64).to_le_bytes();
    for i in 0..8 {
        out[12 + i] ^= len[i];
    }
    out
}

/// A non-repeating pattern (xorshift), so offset mix-ups cannot cancel out.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ seed;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn one_shot(data: &[u8]) -> [u8; 20] {
    let mut hash = QuickXorHash::new();
    hash.update(data);
    hash.finalize()
}

#[test]
fn every_length_up_to_1024_matches_bit_by_bit() {
    let data = pattern(1024, 1);
    for len in 0..=1024 {
        assert_eq!(
            one_shot(&data[..len]),
            bit_by_bit(&data[..len]),
            "length {len}"
        );
    }
}

#[test]
fn all_ones_and_all_zeros_match_bit_by_bit() {
    for len in [1, 159, 160, 161, 319, 320, 321, 1000] {
        for byte in [0x00, 0xff, 0x80, 0x01] {
            let data = vec![byte; len];
            assert_eq!(
                one_shot(&data),
                bit_by_bit(&data),
                "{len} bytes of {byte:#x}"
            );
        }
    }
}

#[test]
fn streaming_splits_give_the_same_digest() {
    let data = pattern(5000, 2);
    let expected = bit_by_bit(&data);
    // Every single split point, then many uneven piece sizes.
    for split in 0..=data.len() {
        let mut hash = QuickXorHash::new();
        hash.update(&data[..split]);
        hash.update(&data[split..]);
        assert_eq!(hash.finalize(), expected, "split at {split}");
    }
    for piece in [1, 2, 3, 7, 19, 20, 21, 159, 160, 161, 333, 1024] {
        let mut hash = QuickXorHash::new();
        for chunk in data.chunks(piece) {
            hash.update(chunk);
        }
        assert_eq!(hash.finalize(), expected, "pieces of {piece}");
        assert_eq!(hash.len(), data.len() as u64);
    }
}

#[test]
fn large_input_matches_bit_by_bit() {
    // 3 MiB + 77 bytes: many blocks and an odd tail.
    let data = pattern((3 << 20) + 77, 3);
    let expected = bit_by_bit(&data);
    assert_eq!(one_shot(&data), expected);
    let mut hash = QuickXorHash::new();
    for chunk in data.chunks(65_537) {
        hash.update(chunk);
    }
    assert_eq!(hash.finalize(), expected);
}

#[test]
fn rclone_vectors() {
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = include_str!("data/quickxor-vectors.txt");
    let mut checked = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let fields: Vec<&str> = line.split('\t').collect();
        let size: usize = fields[0].parse().expect("size");
        let input = b64.decode(fields[1]).expect("input base64");
        assert_eq!(input.len(), size);
        assert_eq!(
            QuickXorHash::digest_base64(&input),
            fields[2],
            "vector of size {size}"
        );
        assert_eq!(
            b64.encode(bit_by_bit(&input)),
            fields[2],
            "the test's own bit-by-bit, size {size}"
        );
        checked += 1;
    }
    assert_eq!(checked, 12);
}
