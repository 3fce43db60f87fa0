"""``FaultyIO``: the file layer (aerostore/storage/fileio.py) with faults on demand.

The fault and crash tests pass it to ``DirectoryStorage(io=...)`` or put it in
``fileio.DEFAULT``; production code never uses it.
"""

from __future__ import annotations

import errno
import os

from aerostore.storage.fileio import FileIO

__all__ = ["FaultyIO"]


class FaultyIO(FileIO):
    """A ``FileIO`` that fails or crashes on chosen calls (for tests).

    ``fail(op, nth, err, persistent)``: the ``nth`` call of ``op`` (counted from
    now, 1-based; ``pwrite`` counts as ``write``) raises ``OSError(err)``; with
    ``persistent`` every later call of that op fails too.  A failing write may
    first write part of its data (``partial`` bytes), as a full disk does.  ``crash_at(n)`` ends the process
    with ``os._exit(exit_code)`` just before the n-th mutating call of any kind,
    which leaves the files exactly as a killed process would.  ``calls`` lists
    every mutating call made, as ``(op, detail)``.
    """

    def __init__(self):
        self.calls: list = []
        self._rules: list = []
        self._counts: dict = {}
        self._crash_at = None
        self._exit_code = 0

    def fail(self, op: str, nth: int = 1, err: int = errno.EIO, *, persistent: bool = False,
             partial: int = 0) -> None:
        start = self._counts.get(op, 0)
        self._rules.append((op, start + nth, err, persistent, partial))

    def crash_at(self, n: int, exit_code: int = 0) -> None:
        self._crash_at = n
        self._exit_code = exit_code

    def _step(self, op: str, detail) -> tuple | None:
        self.calls.append((op, detail))
        if self._crash_at is not None and len(self.calls) >= self._crash_at:
            os._exit(self._exit_code)
        n = self._counts[op] = self._counts.get(op, 0) + 1
        for rop, nth, err, persistent, partial in self._rules:
            if rop == op and (n == nth or (persistent and n > nth)):
                return err, partial
        return None

    @staticmethod
    def _raise(err: int):
        raise OSError(err, os.strerror(err))

    def open(self, path, flags, mode=0o600):
        fault = self._step("open", os.path.basename(path))
        if fault:
            self._raise(fault[0])
        return super().open(path, flags, mode)

    def write(self, fd, data):
        fault = self._step("write", len(data))
        if fault:
            err, partial = fault
            if partial:
                super().write(fd, memoryview(data)[:partial])
            self._raise(err)
        super().write(fd, data)

    def pwrite(self, fd, data, offset):
        fault = self._step("write", len(data))
        if fault:
            err, partial = fault
            if partial:
                super().pwrite(fd, memoryview(data)[:partial], offset)
            self._raise(err)
        super().pwrite(fd, data, offset)

    def fdatasync(self, fd):
        fault = self._step("fdatasync", fd)
        if fault:
            self._raise(fault[0])
        super().fdatasync(fd)

    def truncate(self, fd, length):
        fault = self._step("truncate", length)
        if fault:
            self._raise(fault[0])
        super().truncate(fd, length)

    def rename(self, src, dst):
        fault = self._step("rename", os.path.basename(dst))
        if fault:
            self._raise(fault[0])
        super().rename(src, dst)

    def unlink(self, path):
        fault = self._step("unlink", os.path.basename(path))
        if fault:
            self._raise(fault[0])
        super().unlink(path)

    def fsync_dir(self, path):
        fault = self._step("fsync_dir", path)
        if fault:
            self._raise(fault[0])
        super().fsync_dir(path)
