#!/usr/bin/env python3
"""Writes cache-v1.bin, the fixture pinning the scan cache's file format (see src/cache.rs).

Written independently of the Rust code so the test compares the encoder with the spec, not with
itself. Run from this directory: python3 make-cache-fixture.py
"""
import hashlib
import struct

version = b"ClamAV 1.4.3/27480/Mon Dec  1 09:00:00 2026"
records = [  # dev, ino, size, mtime_ns, ctime_ns -- sorted by (dev, ino)
    (2049, 12, 0, 1764579600000000000, 1764579600123456789),
    (2049, 4096, 68, 1764579601500000000, 1764579601500000001),
    (64768, 7, 1 << 33, -1000000000, 1764579602000000000),
]
body = b"HGVSCAC1" + struct.pack("<I", len(version)) + version + struct.pack("<Q", len(records))
for dev, ino, size, mtime, ctime in records:
    body += struct.pack("<QQQqq", dev, ino, size, mtime, ctime)
with open("cache-v1.bin", "wb") as f:
    f.write(body + hashlib.sha256(body).digest()[:8])
