"""Shared by the backup campaign scripts' Python parts (imported from benches/scripts)."""

import os


def objects(root, prefix):
    """The objects below ROOT/PREFIX (`data`, `index`, ...), as paths relative to ROOT, sorted."""
    out = []
    for dirpath, _, names in os.walk(os.path.join(root, prefix)):
        for name in names:
            out.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(out)


def regular_files(top):
    """The regular files below TOP (symlinks not followed), as paths relative to TOP."""
    out = set()
    for dirpath, _, names in os.walk(top):
        for name in names:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                out.add(os.path.relpath(path, top))
    return out


def damage(rng, path, offset, length, mode):
    """Damages the object at PATH within bytes [OFFSET, OFFSET + LENGTH) by MODE (`delete`,
    `truncate` at a random point of that range, or `flip` a random byte of it with a random
    non-zero mask); returns the damaged byte range (start, end) and a description."""
    if mode == "delete":
        os.remove(path)
        return 0, 1 << 62, "deleted"
    if mode == "truncate":
        cut = offset + rng.randrange(length)
        os.truncate(path, cut)
        return cut, 1 << 62, f"truncated to {cut}"
    with open(path, "rb") as f:
        data = bytearray(f.read())
    at = offset + rng.randrange(length)
    data[at] ^= rng.randrange(1, 256)
    with open(path, "wb") as f:
        f.write(bytes(data))
    return at, at + 1, f"byte {at} flipped"
