//! zstd compression of blobs, skipping data that does not compress.
//!
//! A blob's plaintext (before sealing) ends with one flag byte: 0 = stored as is, 1 = zstd. (At
//! the end, so zstd writes straight into the buffer that is then sealed.)

const RAW: u8 = 0;
const ZSTD: u8 = 1;
/// Compresses `data` at `level` unless it does not shrink by at least 1/32.
#[cfg(test)]
pub(crate) fn encode(data: &[u8], level: i32) -> Vec<u8> {
    let mut out = Vec::new();
    BlobCompressor::new(level).encode_into(data, &mut out);
    out
}

/// A thread's zstd context, reused from blob to blob: creating a context per blob cost about
/// 6 % of a backup's CPU time.
///
/// There is no compressibility probe: zstd's fast strategy skips ahead through data without
/// matches and runs at about 3.7 GB/s per core over random bytes, so compressing an
/// incompressible chunk whole costs less than a reader takes to produce it, while a 64 KiB
/// probe cost every compressible chunk about 6 % more zstd work.
pub(crate) struct BlobCompressor {
    level: i32,
    context: Option<zstd::bulk::Compressor<'static>>,
}

impl BlobCompressor {
    /// A context for `level`, made on first use.
    pub(crate) fn new(level: i32) -> Self {
        BlobCompressor {
            level,
            context: None,
        }
    }

    /// Writes the encoded form of `data` into `out` (cleared first): zstd at the repository's
    /// level unless the data does not shrink by at least 1/32, else stored as is.
    pub(crate) fn encode_into(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.compress(data, out) && out.len() + out.len() / 32 < data.len() {
            out.push(ZSTD);
            return;
        }
        out.clear();
        out.extend_from_slice(data);
        out.push(RAW);
    }

    /// Compresses `data` into `out`; false if zstd failed (the caller then stores the data raw).
    fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        if self.context.is_none() {
            self.context = zstd::bulk::Compressor::new(self.level).ok();
        }
        let Some(compressor) = &mut self.context else {
            return false;
        };
        out.clear();
        // One more byte for the flag, so pushing it never reallocates.
        out.reserve(zstd::zstd_safe::compress_bound(data.len()) + 1);
        compressor.compress_to_buffer(data, out).is_ok()
    }
}

/// Compresses a metadata object (index, snapshot, pack header) of unknown decoded size, at
/// level 1: these are mostly random ids, which level 3 compressed no better at twice the cost.
pub(crate) fn encode_object(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    BlobCompressor::new(1).encode_into(data, &mut out);
    out
}

/// Reverses [`encode_object`]. Objects are authenticated before this runs, so only a key holder
/// could make one decompress to something huge.
pub(crate) fn decode_object(plain: &[u8]) -> Result<Vec<u8>, String> {
    match plain.split_last() {
        Some((&RAW, body)) => Ok(body.to_vec()),
        Some((&ZSTD, body)) => zstd::stream::decode_all(body)
            .map_err(|e| format!("zstd data does not decompress: {e}")),
        Some((flag, _)) => Err(format!("unknown compression flag {flag}")),
        None => Err("empty object".into()),
    }
}

/// Reverses [`encode`]; `raw_length` (from the index) bounds the output.
#[cfg(test)]
pub(crate) fn decode(plain: &[u8], raw_length: usize) -> Result<Vec<u8>, String> {
    let mut decoder = BlobDecoder {
        plain: plain.to_vec(),
        ..BlobDecoder::default()
    };
    decoder.decode(raw_length).map(<[u8]>::to_vec)
}

/// Largest blob plaintext a reader accepts: chunks are at most 64 MiB (FastCDC's maximum),
/// groups at most twice the average chunk, trees about 200 bytes per directory entry.
const MAX_BLOB: usize = 256 << 20;

/// A thread's reusable decoding state (opened plaintext, decompressed output, zstd context), so
/// a restore allocates nothing per blob.
#[derive(Default)]
pub(crate) struct BlobDecoder {
    /// The opened (decrypted) blob, flag included.
    pub(crate) plain: Vec<u8>,
    decoded: Vec<u8>,
    context: Option<zstd::bulk::Decompressor<'static>>,
}

impl BlobDecoder {
    /// Decodes the blob in `self.plain` (see [`encode`]); `raw_length` (from the index) bounds
    /// the output.
    pub(crate) fn decode(&mut self, raw_length: usize) -> Result<&[u8], String> {
        if raw_length > MAX_BLOB {
            // Checked before reserving: an index entry cannot make a reader ask for gigabytes.
            return Err(format!(
                "index says {raw_length} bytes, more than any blob this crate writes ({MAX_BLOB})"
            ));
        }
        let BlobDecoder {
            plain,
            decoded,
            context,
        } = self;
        match plain.split_last() {
            Some((&RAW, body)) if body.len() == raw_length => Ok(body),
            Some((&RAW, body)) => Err(format!(
                "stored as {} bytes, index says {raw_length}",
                body.len()
            )),
            Some((&ZSTD, body)) => {
                if context.is_none() {
                    *context = zstd::bulk::Decompressor::new().ok();
                }
                let context = context.as_mut().ok_or("no zstd decompression context")?;
                decoded.clear();
                decoded.reserve(raw_length);
                let len = context
                    .decompress_to_buffer(body, decoded)
                    .map_err(|e| format!("zstd data does not decompress: {e}"))?;
                if len == raw_length {
                    Ok(decoded)
                } else {
                    Err(format!(
                        "decompressed to {len} bytes, index says {raw_length}"
                    ))
                }
            }
            Some((flag, _)) => Err(format!("unknown compression flag {flag}")),
            None => Err("empty blob".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_compresses_and_round_trips() {
        let data = b"hello hostguard ".repeat(20_000);
        let enc = encode(&data, 3);
        assert_eq!(enc.last(), Some(&ZSTD));
        assert!(enc.len() < data.len() / 10);
        assert_eq!(decode(&enc, data.len()).unwrap(), data);
    }

    #[test]
    fn random_data_is_stored_raw() {
        let mut data = vec![0u8; 300_000];
        blake3::Hasher::new().finalize_xof().fill(&mut data);
        let enc = encode(&data, 3);
        assert_eq!(enc.last(), Some(&RAW));
        assert_eq!(decode(&enc, data.len()).unwrap(), data);
    }

    #[test]
    fn lying_lengths_and_flags_are_errors() {
        let enc = encode(&b"abc".repeat(1000), 3);
        assert!(decode(&enc, 10).is_err());
        assert!(decode(&[9, 1, 2], 2).is_err());
        let huge = decode(&enc, u32::MAX as usize).unwrap_err();
        assert!(huge.contains("more than any blob"), "{huge}");
        assert!(decode(&[], 0).is_err());
    }
}
