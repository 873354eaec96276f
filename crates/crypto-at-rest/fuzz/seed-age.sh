#!/bin/sh
# Seeds the age_header and armor fuzz corpora from the CCTV age vectors: each vector's age file
# (after the blank line, inflated when `compressed: zlib`); armored ones go to both targets.
#   fuzz/seed-age.sh [VECTOR_DIR]     (default the vectors copied into tests/data/age-cctv)
set -eu
cd "$(dirname "$0")"
vectors=${1:-../tests/data/age-cctv}
mkdir -p corpus/age_header corpus/armor
python3 - "$vectors" <<'PY'
import pathlib, sys, zlib
for path in sorted(pathlib.Path(sys.argv[1]).iterdir()):
    if path.name == "README.md":
        continue
    fields, body = path.read_bytes().split(b"\n\n", 1)
    if b"compressed: zlib" in fields:
        body = zlib.decompress(body)
    targets = ["age_header"] + (["armor"] if b"armored: yes" in fields else [])
    for target in targets:
        (pathlib.Path("corpus") / target / path.name).write_bytes(body)
PY
echo "seeded: $(ls corpus/age_header | wc -l) age_header, $(ls corpus/armor | wc -l) armor"
