#!/usr/bin/env python3
"""Generates a web-root-like tree for the virusscan benchmark (deterministic, seed 16).

    python3 virusscan-tree.py DEST [FILES]

FILES (default 24,000) files in nested site/year/month directories: PHP, JS, CSS and HTML text
made of code-like tokens (log-normal sizes around 4 KiB, at most 256 KiB), 5 % binary "images"
(16-200 KiB of random bytes), and three files holding the EICAR test string (written from
halves, so this script is not itself a test file). Prints the file count and total bytes.
"""
import os
import random
import sys

dest = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 24000
rng = random.Random(16)
tokens = ("<?php", "echo", "$_GET", "function", "return", "array(", ");", "{", "}", "if", "else",
          "foreach", "as", "=>", "$this->", "var", "const", "let", "document.", "querySelector",
          "color:", "margin:", "0px;", "<div>", "</div>", "class=", "\"wp-block\"", "null", "true")
eicar = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-" + b"STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
exts = (".php", ".php", ".php", ".js", ".css", ".html")
total = 0
for i in range(count):
    d = os.path.join(dest, f"site{i % 20:02d}", f"20{20 + i % 7}", f"{1 + i % 12:02d}")
    os.makedirs(d, exist_ok=True)
    if i % 20 == 7:
        path = os.path.join(d, f"img{i:06d}.jpg")
        data = rng.randbytes(rng.randint(16 << 10, 200 << 10))
    else:
        path = os.path.join(d, f"file{i:06d}{exts[i % len(exts)]}")
        size = min(int(rng.lognormvariate(8.3, 1.0)), 256 << 10)
        words = []
        n = 0
        while n < size:
            w = rng.choice(tokens)
            words.append(w)
            n += len(w) + 1
        data = " ".join(words).encode()
        if i in (1000, 12345, count - 5):
            data = data[: len(data) // 2] + eicar + data[len(data) // 2:]
    with open(path, "wb") as f:
        f.write(data)
    total += len(data)
print(count, total)
