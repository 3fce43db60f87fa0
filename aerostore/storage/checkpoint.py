"""Checkpoints: a consistent snapshot of every table in ``checkpoint.dat``.

File format of ``checkpoint.dat`` (integers little-endian)
----------------------------------------------------------
| offset | size | field |
|---|---|---|
| 0 | 8 | magic ``b"AEROCKP1"`` |
| 8 | ... | frames, back to back, to the end of the file |

A frame (framing.py) is ``length`` (4 bytes, >= 1), ``crc`` (4 bytes: CRC-32
of the length field, then of the payload) and ``length`` bytes of msgpack
payload, an array whose first element names it.  The frames come in this order:

1. ``["checkpoint", 1, csn, table_count]``: format version 1; ``csn`` is the
   snapshot the checkpoint holds (every commit with CSN <= csn, nothing after).
2. per table: ``["table", schema_map, [index fields]]`` (``schema_map`` is
   ``Schema.to_dict()``), then zero or more ``["rows", [[values...], ...]]``
   slices of at most ``SLICE_ROWS`` rows, each row its values in field order.
3. ``["end", [row count per table]]``, which must end the file.

Any deviation (short file, bad checksum, frames out of order, counts that do
not add up, bytes after the end frame) is ``CorruptError`` with the file and
the offset of the frame at fault.  Because the file is only ever replaced by
rename after an fsync, a damaged checkpoint is real damage, never a crash
artefact, and the store refuses to open.

Writing (``write_checkpoint``): rows are pulled from the engine's snapshot
iterators in slices, packed and appended to ``checkpoint.dat.tmp``; between
slices the thread sleeps for 0.1 ms, which hands the GIL to any waiting thread
so that Tcl and Python callers are not stalled behind a long checkpoint.  Then
the temp file is fdatasync'ed, renamed over ``checkpoint.dat`` and the directory
fsync'ed.  A crash before the rename leaves the previous checkpoint in force
(the temp file is removed on the next open); a crash after it leaves the new
one, and the log still holds every commit either of them needs.
"""

from __future__ import annotations

import os
import time
from itertools import islice

from ..errors import CorruptError, StorageIOError
from .framing import HEAD, checksum, errno_name, frame, pack, unpack

__all__ = ["MAGIC", "FILENAME", "TEMP_FILENAME", "SLICE_ROWS", "write_checkpoint",
           "read_checkpoint"]

MAGIC = b"AEROCKP1"
FILENAME = "checkpoint.dat"
TEMP_FILENAME = "checkpoint.dat.tmp"
SLICE_ROWS = 2048
_FLUSH_BYTES = 1 << 20
# Pause between slices.  sleep(0) releases the GIL but takes it straight back
# before a waiting thread wakes (CPython hands it over only after the 5 ms switch
# interval), so the pause must be long enough for a waiter to get it.
_YIELD_SECS = 0.0001


def _frame(obj) -> bytes:
    payload = pack(obj)
    return frame(len(payload), payload)


def write_checkpoint(io, dirpath: str, csn: int, tables) -> tuple[int, int]:
    """Write ``tables`` (``(schema_dict, index_fields, row_iterable)`` each) as the
    checkpoint at ``csn``, atomically.  Returns ``(rows, bytes)``.

    Raises ``StorageIOError`` if any step fails; the temp file is removed and
    the previous checkpoint stays in force (unless only the final directory
    fsync failed: then either may be).  An error from a row iterator propagates
    after the same clean-up.
    """
    tmp = os.path.join(dirpath, TEMP_FILENAME)
    final = os.path.join(dirpath, FILENAME)
    fd = None
    step = "creating"
    try:
        if os.path.exists(tmp):
            io.unlink(tmp)
        fd = io.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        step = "writing"
        buf = bytearray(MAGIC)
        buf += _frame(("checkpoint", 1, csn, len(tables)))
        counts, written = [], 0
        for schema, index_fields, rows in tables:
            buf += _frame(("table", schema, list(index_fields)))
            n = 0
            it = iter(rows)
            while True:
                chunk = list(islice(it, SLICE_ROWS))
                if not chunk:
                    break
                n += len(chunk)
                buf += _frame(("rows", chunk))
                if len(buf) >= _FLUSH_BYTES:
                    io.write(fd, buf)
                    written += len(buf)
                    buf = bytearray()
                time.sleep(_YIELD_SECS)  # let waiting threads run between slices
            counts.append(n)
        buf += _frame(("end", counts))
        io.write(fd, buf)
        written += len(buf)
        step = "syncing"
        io.fdatasync(fd)
        io.close(fd)
        fd = None
        step = "renaming"
        io.rename(tmp, final)
        step = "syncing the directory of"
        io.fsync_dir(dirpath)
    except BaseException as e:  # an I/O error, or the row iterator failing: clean up
        if fd is not None:
            try:
                io.close(fd)
            except OSError:
                pass
        if step != "syncing the directory of":
            try:
                if os.path.exists(tmp):
                    io.unlink(tmp)
            except OSError:
                pass
        if not isinstance(e, OSError):
            raise
        raise StorageIOError(f"checkpoint: {step} {tmp} failed: {e.strerror or e}; "
                             "the log is intact, so every commit is still recoverable",
                             errno_name(e)) from None
    return sum(counts), written


def read_checkpoint(path: str) -> tuple[int, list]:
    """Load a checkpoint: ``(csn, [(schema_dict, index_fields, rows), ...])``.

    ``rows`` is a list of tuples.  Raises ``CorruptError`` on any damage.
    """
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < len(MAGIC):
        raise CorruptError(path, 0, f"file too short for a checkpoint ({len(data)} bytes)")
    return _read(path, memoryview(data), len(data))


def _read(path: str, buf, size: int) -> tuple[int, list]:
    if bytes(buf[:len(MAGIC)]) != MAGIC:
        raise CorruptError(path, 0, "not an aerostore checkpoint (bad magic)")
    pos = len(MAGIC)
    csn = None
    ntables = 0
    tables: list = []
    rows = None
    while True:
        if size - pos < HEAD.size:
            raise CorruptError(path, pos, "checkpoint ends before its end frame")
        length, crc = HEAD.unpack_from(buf, pos)
        end = pos + HEAD.size + length
        if length == 0 or end > size:
            raise CorruptError(path, pos, "frame length runs past the end of the file")
        if checksum(buf, pos, end) != crc:
            raise CorruptError(path, pos, "frame checksum mismatch")
        try:
            payload = unpack(buf[pos + HEAD.size:end])
            kind = payload[0]
        except Exception:  # msgpack raises several unrelated types on bad input
            raise CorruptError(path, pos, "frame payload does not decode") from None
        if csn is None:
            if kind != "checkpoint" or len(payload) != 4 or payload[1] != 1:
                raise CorruptError(path, pos, "missing or unsupported checkpoint header frame")
            csn, ntables = payload[2], payload[3]
        elif kind == "table" and len(payload) == 3 and isinstance(payload[1], dict):
            rows = []
            tables.append((payload[1], list(payload[2]), rows))
        elif kind == "rows" and rows is not None and len(payload) == 2:
            rows.extend(payload[1])
        elif kind == "end" and len(payload) == 2:
            if end != size:
                raise CorruptError(path, end, "bytes after the end frame")
            if len(tables) != ntables or list(payload[1]) != [len(t[2]) for t in tables]:
                raise CorruptError(path, pos, "table or row counts do not match the end frame")
            return csn, tables
        else:
            raise CorruptError(path, pos, f"unexpected frame {kind!r}")
        pos = end
