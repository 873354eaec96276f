"""Shared by the backup campaign scripts' Python parts (imported from benches/scripts)."""

import os


def objects(root, prefix):
    """The objects below ROOT/PREFIX (`data`, `index`, ...), as paths relative to ROOT, sorted."""
    out = []
    for dirpath, _, names in os.walk(os.path.join(root, prefix)):
        for name in names:
            out.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(out)
