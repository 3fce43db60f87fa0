"""The thin file layer under the WAL and checkpoints.

Every call that changes the data directory (open, write/pwrite, fdatasync,
truncate, rename, unlink, directory fsync) goes through a ``FileIO`` object, so
tests can swap in a faulty one (tests/faultyio.py) and make the N-th write fail
with ENOSPC, an fdatasync fail with EIO, once or for good, or end the process at
an exact step (a crash).
Reads are not routed through here: recovery reads with plain ``os``/``mmap``,
and a read error surfaces as ``OSError`` from the open path.

Why a layer and not monkeypatching ``os``: the storage code names exactly the
steps that matter for durability, and the fault tests count those steps.
"""

from __future__ import annotations

import os

__all__ = ["FileIO", "DEFAULT", "NUL_IN_NAME", "has_nul"]

# No file system takes a NUL in a name; Python raises ValueError for one.  The
# callers that name a file or directory a user gave turn it into their UsageError.
NUL_IN_NAME = "a file name may not contain a NUL character"


def has_nul(path) -> bool:
    """True if ``path`` (str or bytes) holds a NUL character."""
    return "\0" in os.fsdecode(path)


class FileIO:
    """Plain POSIX file operations on descriptors (no buffering, no retries)."""

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        return os.open(path, flags, mode)

    def write(self, fd: int, data) -> None:
        """Write all of ``data``; a short write continues, an error raises OSError."""
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    def pwrite(self, fd: int, data, offset: int) -> None:
        """Write all of ``data`` at ``offset`` (the file position does not move)."""
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, offset)
            view = view[n:]
            offset += n

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def truncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def fsync_dir(self, path: str) -> None:
        """Make renames and new names in directory ``path`` durable."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self, fd: int) -> None:
        os.close(fd)


DEFAULT = FileIO()
