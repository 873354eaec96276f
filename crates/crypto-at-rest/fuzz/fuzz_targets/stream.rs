//! Stream decoding from hostile bytes (reader, multi-threaded engine, random access) never
//! panics, and a genuine stream damaged anywhere releases only genuine plaintext and fails.
#![no_main]

use std::io::{Cursor, Read};

use crypto_at_rest::{CipherConfig, KeyId, Keyring, SecretKey};
use libfuzzer_sys::fuzz_target;

fn read_all(keys: &Keyring, sealed: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let ok = match keys.decrypt_reader(b"aad", sealed) {
        Ok(mut r) => r.read_to_end(&mut out).is_ok(),
        Err(_) => false,
    };
    (out, ok)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = Keyring::new(KeyId(1), SecretKey::from_bytes([7; 32]));
    if mode % 2 == 0 {
        // Raw bytes as a stream.
        let _ = read_all(&keys, rest);
        let _ = keys.decrypt_stream(2, b"aad", rest, std::io::sink());
        if let Ok(mut rr) = keys.range_reader(b"aad", Cursor::new(rest)) {
            let _ = rr.read_range(u64::from(mode), 1000);
        }
        return;
    }
    // A genuine stream (chunk size from the input), then one bit flipped.
    if rest.len() < 3 {
        return;
    }
    let (params, payload) = rest.split_at(3);
    let chunk = u32::from(params[0]) + 1;
    let config = CipherConfig::builder()
        .with_chunk_size(chunk)
        .with_threads(1 + usize::from(mode >> 7))
        .build()
        .expect("config");
    let mut sealed = Vec::new();
    keys.encrypt_stream(&config, b"aad", payload, &mut sealed).expect("seal");
    assert_eq!(read_all(&keys, &sealed), (payload.to_vec(), true));
    let bit = usize::from(u16::from_le_bytes([params[1], params[2]])) % (sealed.len() * 8);
    sealed[bit / 8] ^= 1 << (bit % 8);
    let (released, ok) = read_all(&keys, &sealed);
    assert!(!ok, "a flipped bit opened");
    assert!(payload.starts_with(&released), "released plaintext that was not sealed");
    let mut out = Vec::new();
    assert!(keys.decrypt_stream(2, b"aad", &sealed[..], &mut out).is_err());
    assert_eq!(out, released);
});
