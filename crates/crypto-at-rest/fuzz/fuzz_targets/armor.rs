//! Fuzzes the armor decoder: any input decodes or fails cleanly, and whatever decodes re-armors
//! into text that decodes to the same bytes.
#![no_main]

use std::io::{Read, Write};

use crypto_at_rest::age::{ArmoredReader, ArmoredWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut decoded = Vec::new();
    if ArmoredReader::new(data).read_to_end(&mut decoded).is_err() {
        return;
    }
    let mut writer = ArmoredWriter::new(Vec::new()).expect("writing to a Vec");
    writer.write_all(&decoded).expect("writing to a Vec");
    let text = writer.finish().expect("writing to a Vec");
    let mut again = Vec::new();
    ArmoredReader::new(&text[..])
        .read_to_end(&mut again)
        .expect("our own armor decodes");
    assert_eq!(again, decoded);
});
