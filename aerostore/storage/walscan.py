"""Reading the write-ahead log: the recovery scan and the commits it found.

The file format is in walformat.py.  Recovery rule (``scan``): frames are
checked in order.  Where only zero bytes remain, the log ends cleanly.
Otherwise the first bad frame (short header, length past the end, bad checksum,
CSNs out of order) ends the log.  If any valid frame starts anywhere after it,
the file is damaged and ``CorruptError`` names the file and the bad frame's
offset.  Otherwise the rest of the file is a torn tail: a write that never
completed its fdatasync, so no commit in it was acknowledged (with
``synchronous_commit on``).  Reads only: setting a torn tail aside is
directory.py's job.
"""

from __future__ import annotations

import os
import zlib
from array import array
from bisect import bisect_right
from mmap import ACCESS_READ, mmap

from ..errors import CorruptError
from .framing import LEN, checksum, unpack
from .walformat import COUNTED, FRAME, FRAME_HEADER_SIZE, HEADER, HEADER_SIZE, MAGIC

__all__ = ["WalScan", "scan", "iter_commits"]


class WalScan:
    """What ``scan`` found in a log file.

    ``frame_ends``/``frame_last``/``frame_counts``: per valid frame, its end offset,
    last CSN and commit count.  ``end``: where the valid log ends.  ``torn``: the
    byte count of a torn tail after ``end`` (0 if none).  ``size``: file size.
    """

    def __init__(self, path: str, base_csn: int, size: int):
        self.path = path
        self.base_csn = base_csn
        self.size = size
        self.frame_ends = array("Q")
        self.frame_last = array("Q")
        self.frame_counts = array("Q")
        self.end = HEADER_SIZE
        self.torn = 0

    @property
    def commits(self) -> int:
        return sum(self.frame_counts)

    @property
    def last_csn(self) -> int:
        return self.frame_last[-1] if self.frame_last else self.base_csn


def _valid_frame(buf, pos: int, size: int, prev_last: int) -> int:
    """End offset of a valid frame at ``pos``, or 0."""
    if size - pos < FRAME_HEADER_SIZE:
        return 0
    length, crc, count, first, last = FRAME.unpack_from(buf, pos)
    end = pos + FRAME_HEADER_SIZE + length
    if length == 0 or end > size or count == 0 or count > length or first > last \
            or first <= prev_last:
        return 0
    if checksum(buf, pos, end) != crc:
        return 0
    return end


_ZERO_TO_ONE = bytes([1] + [0] * 255)  # bytes.translate table: 1 where the byte is 0


def _candidates(buf, start: int, size: int):
    """Offsets in ``[start, size)`` where a frame header could begin, cheaply.

    A header has a commit count of 1 .. 2^24-1 (a 32 MiB frame holds fewer) and
    CSNs below 2^56, so its bytes 8..10 are not all zero and bytes 11, 19 and 27
    are.  Bitwise operations on big integers (one byte per offset) test that for
    a whole chunk of offsets at C speed; only the survivors get the exact check.
    Without this, searching a torn tail of many megabytes would take seconds.
    """
    chunk = 1 << 22
    q0 = start
    while q0 <= size - FRAME_HEADER_SIZE:
        n = min(chunk, size - FRAME_HEADER_SIZE + 1 - q0)
        z = bytes(buf[q0:q0 + n + 27]).translate(_ZERO_TO_ONE)

        def col(k):
            return int.from_bytes(z[k:k + n], "little")

        hits = col(11) & col(19) & col(27) & ~(col(8) & col(9) & col(10))
        if hits:
            m = hits.to_bytes(n, "little")
            i = m.find(1)
            while i >= 0:
                yield q0 + i
                i = m.find(1, i + 1)
        q0 += n


def scan(path: str) -> WalScan:
    """Check every frame of the log at ``path``; see the module docstring for the rule.

    Raises ``CorruptError`` for a bad header or damage before the end.  Reads only.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < HEADER_SIZE:
            raise CorruptError(path, 0, f"file too short for a log header ({size} bytes)")
        with mmap(f.fileno(), 0, access=ACCESS_READ) as mm:
            buf = memoryview(mm)
            try:
                return _scan(path, buf, size)
            finally:
                buf.release()


def _scan(path: str, buf, size: int) -> WalScan:
    magic, base_csn, crc = HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise CorruptError(path, 0, "not an aerostore write-ahead log (bad magic)")
    if zlib.crc32(buf[:16]) != crc:
        raise CorruptError(path, 0, "log header checksum mismatch")
    wscan = WalScan(path, base_csn, size)
    pos, prev_last = HEADER_SIZE, 0
    ends, lasts, counts = wscan.frame_ends, wscan.frame_last, wscan.frame_counts
    while pos < size:
        end = _valid_frame(buf, pos, size, prev_last)
        if not end:
            break
        count, _, last = COUNTED.unpack_from(buf, pos + 8)
        ends.append(end)
        lasts.append(last)
        counts.append(count)
        prev_last = last
        pos = end
    wscan.end = pos
    # Past the last non-zero byte there is only preallocated space.
    used = pos + len(bytes(buf[pos:size]).rstrip(b"\0"))
    if pos < used:
        # A bad frame.  Damage if any valid frame starts after it; else a torn tail.
        if size - pos >= FRAME_HEADER_SIZE:
            length = LEN.unpack_from(buf, pos)[0]
            probe = pos + FRAME_HEADER_SIZE + length
            if probe < size and _valid_frame(buf, probe, size, prev_last):
                raise CorruptError(path, pos, "frame checksum mismatch before the end of the log")
        for q in _candidates(buf, pos + 1, min(size, used + FRAME_HEADER_SIZE)):
            if _valid_frame(buf, q, size, prev_last):
                raise CorruptError(path, pos, f"damaged frame; a valid frame follows at offset {q}")
        wscan.torn = size - pos
    return wscan


def iter_commits(path: str, wscan: WalScan, after_csn: int):
    """Yield ``(csn, ops)`` for every commit with ``csn > after_csn``, in CSN order.

    Ops are tuples as the engine logged them (values as tuples, schema maps as
    dicts with lists).  Only the frames ``wscan`` found valid are read.
    """
    i = bisect_right(wscan.frame_last, after_csn)
    if i == len(wscan.frame_ends):
        return
    start = wscan.frame_ends[i - 1] if i else HEADER_SIZE
    with open(path, "rb") as f, mmap(f.fileno(), 0, access=ACCESS_READ) as mm:
        buf = memoryview(mm)
        try:
            pos = start
            for end in wscan.frame_ends[i:]:
                try:
                    commits = unpack(buf[pos + FRAME_HEADER_SIZE:end])
                    ok = isinstance(commits, tuple) and all(
                        isinstance(c, tuple) and len(c) == 2 and isinstance(c[0], int)
                        for c in commits)
                except Exception:  # msgpack raises several unrelated types on bad input
                    ok = False
                if not ok:
                    raise CorruptError(path, pos, "frame payload is not a list of commits")
                pos = end
                for commit in commits:
                    if commit[0] > after_csn:
                        yield commit
        finally:
            buf.release()
