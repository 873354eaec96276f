#!/usr/bin/env python3
"""Write a deterministic tree of about MB mebibytes under ROOT for the backup campaigns.

Usage: gen-backup-tree.py ROOT MB [SEED]

Files of 50 B to 1.5 MB in 40 x 7 directories, half compressible text, half noise, so a backup
has grouped small files, single chunks and several packs.
"""
import os
import random
import sys

if len(sys.argv) < 3:
    sys.exit(__doc__)
root, mb = sys.argv[1], int(sys.argv[2])
r = random.Random(sys.argv[3] if len(sys.argv) > 3 else "1")
total = 0
n = 0
while total < mb << 20:
    sub = os.path.join(root, f"d{n % 40}", f"s{n % 7}")
    os.makedirs(sub, exist_ok=True)
    size = r.choice([50, 700, 4000, 30000, 200000, 1500000])
    if r.random() < 0.5:
        data = (f"line {n} " * (size // 8 + 1)).encode()[:size]
    else:
        data = r.randbytes(size)
    with open(os.path.join(sub, f"f{n}.bin"), "wb") as f:
        f.write(data)
    total += size
    n += 1
