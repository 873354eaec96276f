#!/usr/bin/python3
"""A FUSE file system whose statfs never answers, like an NFS mount of a dead server.

Usage: hang_statfs.py MOUNTPOINT  (foreground; needs Debian's python3-fusepy and /dev/fuse).
Written for healthcheck's tests; prints "mounted" once the mount is up.
"""
import errno
import os
import stat
import sys
import threading
import time

import fusepy


class HangingStatfs(fusepy.Operations):
    def getattr(self, path, fh=None):
        if path != "/":
            raise fusepy.FuseOSError(errno.ENOENT)
        now = time.time()
        return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, "st_ctime": now, "st_mtime": now, "st_atime": now}

    def readdir(self, path, fh):
        return [".", ".."]

    def statfs(self, path):
        threading.Event().wait()  # never answers


def announce(mountpoint):
    for _ in range(200):
        with open("/proc/self/mounts") as mounts:
            if any(line.split()[1] == mountpoint for line in mounts):
                print("mounted", flush=True)
                return
        time.sleep(0.05)


if __name__ == "__main__":
    mountpoint = os.path.realpath(sys.argv[1])
    threading.Thread(target=announce, args=(mountpoint,), daemon=True).start()
    fusepy.FUSE(HangingStatfs(), mountpoint, foreground=True, nothreads=False)
