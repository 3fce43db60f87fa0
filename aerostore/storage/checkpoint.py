"""Checkpoints: a consistent snapshot of every table in ``checkpoint.dat``.

File format of ``checkpoint.dat``, version 2 (integers little-endian)
---------------------------------------------------------------------
| offset | size | field |
|---|---|---|
| 0 | 8 | magic ``b"AEROCKP1"`` (the file's kind; the version is in the first frame) |
| 8 | ... | frames, back to back, to the end of the file |

A frame (framing.py) is ``length`` (4 bytes, >= 1), ``crc`` (4 bytes: CRC-32
of the length field, then of the payload) and ``length`` bytes of payload.
Two kinds of payload: a *record* is msgpack, an array whose first element
names it; a *section* is binary, one column (or index) of up to
``SLICE_ROWS`` rows, laid out as the record before it says.  The frames come
in this order:

1. record ``["checkpoint", 2, csn, table_count]``: format version 2; ``csn``
   is the snapshot the checkpoint holds (every commit with CSN <= csn, nothing
   after).
2. per table:

   a. record ``["table", schema_map, [index fields], [column type per field]]``
      (``schema_map`` is ``Schema.to_dict()``); a column type is ``"str"``
      (the key and Str fields) or the numpy type string of the field's column
      (``columns.column_dtype``): for an int the narrowest of ``"<i2"``,
      ``"<u2"``, ``"<i4"``, ``"<u4"``, ``"<i8"`` and ``"<u8"`` that holds its
      range (a reader converts a column written in another of them, as older
      checkpoints wrote ``"<i8"`` for every signed int), ``"<f8"`` (float),
      ``"|i1"`` (bool, 0 or 1).
      The list is nil when the schema map describes no typed fields (storage
      tests pass opaque ones) or an int field whose range no 64-bit type holds
      (from -2^63 to past 2^63 - 1): then b. and c. are replaced by zero or
      more records ``["rows", [[values...], ...]]`` of at most ``CHUNK_ROWS``
      rows, each row its values in field order.
   b. zero or more slices: record ``["slice", rows]`` (rows >= 1; the
      writer puts ``SLICE_ROWS`` = 2^20 rows in a slice, fewer in the last one
      and in one whose strings pass 256 MiB), then one section per field, in
      field order, each holding that field's values of the slice's rows.
      Row i of the table is row i of the slices in order; a reopened heap
      puts it in slot i.
   c. zero or more index records ``["index", field, entry type, count,
      sections]``, each followed by ``sections`` sections that together hold
      ``count`` entries of the index on ``field`` (at most ``SLICE_ROWS``
      entries a section, each section a whole number of entries): the sorted
      array of an ``ArrayIndex`` (arrayindex.py) over this table's rows, with
      slot = row number, in its storage type ``entry type`` (``"<i8"``,
      ``"<u8"`` or ``"<c16"``).  Computed from the rows written, not taken from
      the live index; a reader whose index would store entries differently
      ignores the record and builds that index from the rows.  Null values
      have no entries (the column's null bitmap lists them).
3. record ``["end", [row count per table]]``, which must end the file.

Numeric and string sections: colsection.py describes them field by field (the
log's ``putcols`` record holds the same).

Reading takes two passes: the first reads and checks the records and notes
where each section lies (so every table's row count is known before any
section is read), the second reads each section straight into its column or
index array, one read each, and checks its checksum.  Any deviation (short
file, bad checksum, frames out of order, a section whose size does not match
its record, counts that do not add up, bytes after the end frame) is
``CorruptError`` with the file, the offset of the frame at fault and, for a
section, its name (table, field or index, slice).  Because the file is only
ever replaced by rename after an fsync, a damaged checkpoint is real damage,
never a crash artefact, and the store refuses to open.

Version 1 (still read; no longer written): the same magic and frames, all
records: ``["checkpoint", 1, csn, table_count]``; per table ``["table",
schema_map, [index fields]]`` then zero or more ``["rows", [[values...],
...]]`` slices of at most 2048 rows, each row its values in field order;
``["end", [row count per table]]``.

Writing (``write_checkpoint``): the engine hands over each table's rows as
columns it copied from the heap (``heap.ColumnSnapshot``), cut into pieces of
``COLUMN_CHUNK_ROWS`` rows (numeric: the array slice; strings: joined UTF-8);
rows given as an iterator (tests, tools) are pulled ``CHUNK_ROWS`` at a time
and turned into such pieces.  Between pieces the thread sleeps for 0.1 ms,
which hands the GIL to any waiting thread so that Tcl and Python callers are
not stalled behind a long checkpoint.  A slice's sections are written once it is
full (or the rows end).  Index sections are computed by the caller's
``index_entries`` from the columns written.  Then the temp file is
fdatasync'ed, renamed over ``checkpoint.dat`` and the directory fsync'ed.  A
crash before the rename leaves the previous checkpoint in force (the temp file
is removed on the next open); a crash after it leaves the new one, and the log
still holds every commit either of them needs.
"""

from __future__ import annotations

import os
import time
import zlib
from itertools import islice

import numpy as np

from ..columns import value_list
from ..errors import AerostoreError, CorruptError, StorageIOError
from ..schema import Schema
from .colsection import NULLS, NUMERIC, U8, Slice, bitmap, column_types, strings, utf8
from .framing import HEAD, LEN, errno_name, frame, frame_head, pack, unpack

__all__ = ["MAGIC", "FILENAME", "TEMP_FILENAME", "VERSION", "SLICE_ROWS", "CHUNK_ROWS",
           "COLUMN_CHUNK_ROWS", "CheckpointTable", "write_checkpoint", "read_checkpoint"]

MAGIC = b"AEROCKP1"
FILENAME = "checkpoint.dat"
TEMP_FILENAME = "checkpoint.dat.tmp"
VERSION = 2
SLICE_ROWS = 1 << 20          # rows (or index entries) per section, at most
CHUNK_ROWS = 2048             # rows converted per step of the writer (GIL offered between)
COLUMN_CHUNK_ROWS = 32768     # the same, for rows given as columns (strings joined per step)
_SLICE_BYTES = 1 << 28        # a slice ends early once its strings pass this many bytes
_FLUSH_BYTES = 1 << 20
# Pause between chunks.  sleep(0) releases the GIL but takes it straight back
# before a waiting thread wakes (CPython hands it over only after the 5 ms switch
# interval), so the pause must be long enough for a waiter to get it.
_YIELD_SECS = 0.0001

_ENTRY_TYPES = {"<i8", "<u8", "<c16"}


class CheckpointTable:
    """One table of a checkpoint, as read.

    ``schema`` (the schema map), ``index_fields`` (names), ``n`` (rows).
    Version 2 also gives the columns: ``columns[p]`` is field ``p``'s values,
    a numpy array for a numeric field (its checkpoint type, 0 where null; bools
    as int8) or a list of str for a string field (None where null);
    ``nulls[p]`` a bool array (True: null) or None when no value is null; and
    ``index_arrays``: index field name -> its sorted entry array (see the
    module docstring).  For version 1 ``columns`` is None.  ``rows`` is a list
    of row tuples (built from the columns on first use for version 2).

    Iterating gives ``(schema, index_fields, rows)``, the triple of older callers.
    """

    __slots__ = ("schema", "index_fields", "n", "columns", "nulls", "index_arrays", "_rows")

    def __init__(self, schema: dict, index_fields: list, rows: list | None = None, *, n: int = 0,
                 columns: list | None = None, nulls: list | None = None,
                 index_arrays: dict | None = None):
        self.schema = schema
        self.index_fields = index_fields
        self._rows = rows
        self.n = len(rows) if rows is not None else n
        self.columns = columns
        self.nulls = nulls
        self.index_arrays = index_arrays or {}

    @property
    def rows(self) -> list:
        if self._rows is None:
            kinds = [f["kind"] for f in self.schema["fields"]]
            self._rows = list(zip(*(value_list(c, nul, k == "bool")
                                    for c, nul, k in zip(self.columns, self.nulls, kinds))))
        return self._rows

    def __iter__(self):
        return iter((self.schema, self.index_fields, self.rows))

    def __repr__(self):
        return f"CheckpointTable({self.schema.get('name')!r}, {self.n} rows)"


# -- writing ---------------------------------------------------------------------------
def _record(obj) -> bytes:
    payload = pack(obj)
    return frame(len(payload), payload)


class _Out:
    """Appends frames to the temp file through ``io``, in writes of about ``_FLUSH_BYTES``."""

    def __init__(self, io, fd: int):
        self.io, self.fd = io, fd
        self.buf = bytearray()
        self.written = 0

    def add(self, data) -> None:
        if len(data) >= _FLUSH_BYTES:
            self.flush()
            self.io.write(self.fd, data)
            self.written += len(data)
            return
        self.buf += memoryview(data)
        if len(self.buf) >= _FLUSH_BYTES:
            self.flush()

    def section(self, parts: list) -> None:
        """One frame whose payload is ``parts`` (bytes or uint8 arrays) back to back."""
        self.add(frame_head(parts))
        for p in parts:
            if len(p):
                self.add(p)

    def flush(self) -> None:
        if self.buf:
            self.io.write(self.fd, self.buf)
            self.written += len(self.buf)
            self.buf = bytearray()


def write_checkpoint(io, dirpath: str, csn: int, tables) -> tuple[int, int]:
    """Write ``tables`` as the checkpoint at ``csn``, atomically.  Returns ``(rows, bytes)``.

    Each table is ``(schema_dict, index_fields, row_iterable)`` or
    ``(schema_dict, index_fields, row_iterable, index_entries)``:
    ``index_entries(field, values, nulls)`` (values: the numeric column of an
    indexed field over every row written, as an array; nulls: a bool array or
    None) returns the sorted entry array of that index, slot = row number (see
    the module docstring), or None for no index section.  The rows may also
    come as columns: an object with ``n``, ``columns`` and ``nulls`` as
    ``heap.ColumnSnapshot`` has them (iterable as rows too, for a table written
    as row records); its sections are then cut from the arrays, no row built.

    Raises ``StorageIOError`` if any step fails; the temp file is removed and
    the previous checkpoint stays in force (unless only the final directory
    fsync failed: then either may be).  An error from a row iterator (or from
    ``index_entries``) propagates after the same clean-up.
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
        out = _Out(io, fd)
        out.add(MAGIC)
        out.add(_record(("checkpoint", VERSION, csn, len(tables))))
        counts = [_write_table(out, *t) for t in tables]
        out.add(_record(("end", counts)))
        out.flush()
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
    return sum(counts), out.written


def _write_table(out: _Out, schema: dict, index_fields, rows, index_entries=None) -> int:
    """The frames of one table; returns its row count."""
    try:
        fields = Schema.from_dict(schema).fields
    except (AerostoreError, LookupError, TypeError, ValueError, AttributeError):
        return _write_rows(out, schema, index_fields, rows)
    dtypes = column_types(fields)
    if dtypes is None:
        return _write_rows(out, schema, index_fields, rows)    # an int field wider than 64 bits
    names = [f.name for f in fields]
    out.add(_record(("table", schema, list(index_fields),
                     ["str" if dt is None else dt.str for dt in dtypes])))
    indexed = [p for p, f in enumerate(names) if index_entries is not None and f in index_fields
               and dtypes[p] is not None]
    kept = {p: ([], []) for p in indexed}     # the indexed columns over every slice
    n = 0
    sl = Slice(dtypes)
    snap = rows if getattr(rows, "columns", None) is not None else None
    it = iter(rows) if snap is None else None
    at = 0                                    # rows of ``snap`` taken so far
    while True:
        if snap is None:
            chunk = list(islice(it, min(CHUNK_ROWS, SLICE_ROWS - sl.n)))
            if chunk:
                sl.add(chunk)
        else:
            k = min(COLUMN_CHUNK_ROWS, SLICE_ROWS - sl.n, snap.n - at)
            chunk = k > 0
            if chunk:
                sl.add_columns([c[at:at + k] for c in snap.columns],
                               [None if nu is None else nu[at:at + k] for nu in snap.nulls], k)
                at += k
        if sl.n and (not chunk or sl.n >= SLICE_ROWS or sl.nbytes >= _SLICE_BYTES):
            out.add(_record(("slice", sl.n)))
            for p in range(len(dtypes)):
                if p in kept:
                    vals, nul = sl.column(p)
                    kept[p][0].append(vals)
                    kept[p][1].append(nul if nul is not None else np.zeros(len(vals), bool))
                    out.section(sl.section(p, vals, nul))
                else:
                    out.section(sl.section(p))
            n += sl.n
            sl = Slice(dtypes)
        if not chunk:
            break
        time.sleep(_YIELD_SECS)  # let waiting threads run between chunks
    for p, (vals, nuls) in kept.items():
        values = np.concatenate(vals) if vals else np.zeros(0, dtypes[p])
        nulls = np.concatenate(nuls) if nuls else None
        if nulls is not None and not nulls.any():
            nulls = None
        entries = index_entries(names[p], values, nulls)
        if entries is None:
            continue
        entries = np.ascontiguousarray(entries, entries.dtype.newbyteorder("<"))
        if entries.dtype.str not in _ENTRY_TYPES:
            raise ValueError(f"checkpoint: index entries of type {entries.dtype.str}")
        parts = [entries[i:i + SLICE_ROWS] for i in range(0, len(entries), SLICE_ROWS)]
        out.add(_record(("index", names[p], entries.dtype.str, len(entries), len(parts))))
        for part in parts:
            out.section([part.view(U8)])
    return n


def _write_rows(out: _Out, schema: dict, index_fields, rows) -> int:
    """A table whose schema map does not describe typed fields: its rows as records."""
    out.add(_record(("table", schema, list(index_fields), None)))
    n = 0
    it = iter(rows)
    while True:
        chunk = list(islice(it, CHUNK_ROWS))
        if not chunk:
            return n
        n += len(chunk)
        out.add(_record(("rows", chunk)))
        time.sleep(_YIELD_SECS)


# -- reading ---------------------------------------------------------------------------
def read_checkpoint(path: str) -> tuple[int, list]:
    """Load a checkpoint (version 1 or 2): ``(csn, [CheckpointTable, ...])``.

    Raises ``CorruptError`` on any damage.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        return _Reader(path, fd, os.fstat(fd).st_size).read()
    finally:
        os.close(fd)


class _Section:
    """Where a section is: the frame at ``pos`` (``length``, ``crc``) and its name."""

    __slots__ = ("pos", "length", "crc", "what")

    def __init__(self, pos: int, length: int, crc: int, what: str):
        self.pos, self.length, self.crc, self.what = pos, length, crc, what


class _Reader:
    """Reads a checkpoint in two passes: the records (checked and decoded) and where
    each section lies; then each section straight into its array, one read each."""

    def __init__(self, path: str, fd: int, size: int):
        self.path = path
        self.fd = fd
        self.size = size
        self.sections: list = []        # every _Section seen, in file order

    def fail(self, pos: int, what: str):
        return CorruptError(self.path, pos, what)

    def pread(self, pos: int, n: int) -> bytes:
        data = os.pread(self.fd, n, pos)
        while len(data) < n:                # a regular file reads short only at its end
            more = os.pread(self.fd, n - len(data), pos + len(data))
            if not more:
                raise self.fail(pos, "the file ends early (it shrank while being read)")
            data += more
        return data

    def read_into(self, pos: int, view) -> None:
        """Fill ``view`` (a byte memoryview) from the file at ``pos``."""
        while len(view):
            n = os.preadv(self.fd, [view], pos)
            if n <= 0:
                raise self.fail(pos, "the file ends early (it shrank while being read)")
            view = view[n:]
            pos += n

    def head(self, pos: int, what: str | None = None) -> tuple[int, int, int]:
        """``(length, crc, end)`` of the frame at ``pos``, its bounds checked."""
        if self.size - pos < HEAD.size:
            raise self.fail(pos, f"{what}: the file ends before it" if what
                            else "checkpoint ends before its end frame")
        length, crc = HEAD.unpack(self.pread(pos, HEAD.size))
        end = pos + HEAD.size + length
        if length == 0 or end > self.size:
            raise self.fail(pos, f"{what + ': ' if what else ''}frame length runs past the end "
                                 "of the file")
        return length, crc, end

    def record(self, pos: int):
        """``(decoded record, end)`` of the msgpack frame at ``pos``."""
        length, crc, end = self.head(pos)
        body = self.pread(pos + HEAD.size, length)
        if zlib.crc32(body, zlib.crc32(LEN.pack(length))) != crc:
            raise self.fail(pos, "frame checksum mismatch")
        try:
            payload = unpack(body)
            payload[0]
        except Exception:  # msgpack raises several unrelated types on bad input
            raise self.fail(pos, "frame payload does not decode") from None
        return payload, end

    def section(self, pos: int, what: str) -> tuple[_Section, int]:
        """Pass one: note the section at ``pos`` (bounds checked); returns it and its end."""
        length, crc, end = self.head(pos, what)
        sec = _Section(pos, length, crc, what)
        self.sections.append(sec)
        return sec, end

    def check(self, sec: _Section, parts) -> None:
        """Pass two: the section's checksum over its payload ``parts``."""
        crc = zlib.crc32(LEN.pack(sec.length))
        for part in parts:
            crc = zlib.crc32(part, crc)
        if crc != sec.crc:
            raise self.fail(sec.pos, f"{sec.what}: frame checksum mismatch")

    def check_sections(self) -> None:
        """Checksum every section noted so far (after pass one failed: damage in a
        section's length field shows as a bad frame after it; name the section)."""
        for sec in self.sections:
            self.check(sec, [self.pread(sec.pos + HEAD.size, sec.length)])

    def read(self) -> tuple[int, list]:
        if self.size < len(MAGIC):
            raise self.fail(0, f"file too short for a checkpoint ({self.size} bytes)")
        if self.pread(0, len(MAGIC)) != MAGIC:
            raise self.fail(0, "not an aerostore checkpoint (bad magic)")
        pos = len(MAGIC)
        head, end = self.record(pos)
        if head[0] != "checkpoint" or len(head) != 4 or head[1] not in (1, 2):
            raise self.fail(pos, "missing or unsupported checkpoint header frame")
        if head[1] == 1:
            return head[2], self._v1(end, head[3])
        try:
            tables = self._v2(end, head[3])
        except CorruptError:
            self.check_sections()
            raise
        return head[2], [t.load() for t in tables]

    def _end(self, pos: int, end: int, payload, tables: list, ntables: int) -> list:
        if end != self.size:
            raise self.fail(end, "bytes after the end frame")
        if len(tables) != ntables or list(payload[1]) != [t.n for t in tables]:
            raise self.fail(pos, "table or row counts do not match the end frame")
        return tables

    def _v1(self, pos: int, ntables: int) -> list:
        tables: list = []
        rows = None
        while True:
            payload, end = self.record(pos)
            kind = payload[0]
            if kind == "table" and len(payload) == 3 and isinstance(payload[1], dict):
                rows = []
                tables.append(CheckpointTable(payload[1], list(payload[2]), rows))
            elif kind == "rows" and rows is not None and len(payload) == 2:
                rows.extend(payload[1])
                tables[-1].n = len(rows)
            elif kind == "end" and len(payload) == 2:
                return self._end(pos, end, payload, tables, ntables)
            else:
                raise self.fail(pos, f"unexpected frame {kind!r}")
            pos = end

    def _v2(self, pos: int, ntables: int) -> list:
        """Pass one: the records, and where the sections of each table lie."""
        tables: list = []
        t = None
        while True:
            payload, end = self.record(pos)
            kind = payload[0]
            if kind == "table" and len(payload) == 4 and isinstance(payload[1], dict):
                t = _TableReader(self, pos, payload)
                tables.append(t)
                pos = end
            elif kind == "slice" and t is not None and t.types is not None and len(payload) == 2:
                pos = t.slice(pos, end, payload[1])
            elif kind == "rows" and t is not None and t.types is None and len(payload) == 2:
                t.rows.extend(payload[1])
                t.n = len(t.rows)
                pos = end
            elif kind == "index" and t is not None and t.types is not None and len(payload) == 5:
                pos = t.index(pos, end, payload)
            elif kind == "end" and len(payload) == 2:
                return self._end(pos, end, payload, tables, ntables)
            else:
                raise self.fail(pos, f"unexpected frame {kind!r}")


class _TableReader:
    """One table of a version 2 checkpoint: its records (pass one), then its sections
    read into whole columns (``load``, pass two)."""

    def __init__(self, r: _Reader, pos: int, payload):
        self.r = r
        schema, index_fields, types = payload[1], payload[2], payload[3]
        self.schema = schema
        self.index_fields = list(index_fields)
        self.n = 0
        self.rows = None
        self.types = None
        self.slices: list = []          # (first row, rows, [_Section per field])
        self.indexes: list = []         # (field, dtype, count, [_Section])
        if types is None:               # rows as records (a schema map of no typed fields)
            self.rows = []
            return
        try:
            fields = schema["fields"]
            self.name = schema["name"]
            self.names = [f["name"] for f in fields]
            self.kinds = [f["kind"] for f in fields]
            ok = (isinstance(types, (list, tuple)) and len(types) == len(fields)
                  and all((ty == "str") == (k == "str") and (ty == "str" or ty in NUMERIC)
                          for ty, k in zip(types, self.kinds)))
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise r.fail(pos, "table frame: unreadable schema or column types")
        self.types = [None if ty == "str" else np.dtype(ty) for ty in types]

    def _name(self, what: str) -> str:
        return f"section table {self.name!r} {what}"

    def slice(self, pos: int, end: int, rows) -> int:
        if rows.__class__ is not int or rows < 1:
            raise self.r.fail(pos, f"slice frame of table {self.name!r}: bad row count {rows!r}")
        first = self.n
        secs = []
        for p in range(len(self.types)):
            sec, end = self.r.section(end, self._name(
                f"field {self.names[p]!r} slice {len(self.slices)} (rows {first}..{first + rows - 1})"))
            secs.append(sec)
        self.slices.append((first, rows, secs))
        self.n += rows
        return end

    def index(self, pos: int, end: int, payload) -> int:
        _, field, ty, count, nsec = payload
        if (field not in self.names or ty not in _ENTRY_TYPES or count.__class__ is not int
                or nsec.__class__ is not int or count < 0 or nsec < 0 or nsec > count
                or any(field == x[0] for x in self.indexes)):
            raise self.r.fail(pos, f"index frame of table {self.name!r}: bad field, type or counts")
        secs = []
        for j in range(nsec):
            sec, end = self.r.section(end, self._name(f"index {field!r} slice {j}"))
            secs.append(sec)
        self.indexes.append((field, np.dtype(ty), count, secs, pos))
        return end

    def load(self) -> CheckpointTable:
        """Pass two: every section read (one read each, straight into its column), checked
        and decoded."""
        if self.types is None:
            return CheckpointTable(self.schema, self.index_fields, self.rows)
        r, n = self.r, self.n
        columns = [[] if dt is None else np.empty(n, dt) for dt in self.types]
        nulls = [None] * len(self.types)
        for first, rows, secs in self.slices:
            nb = (rows + 7) // 8
            for p, (dt, sec) in enumerate(zip(self.types, secs)):
                if dt is None:
                    body = r.pread(sec.pos + HEAD.size, sec.length)
                    r.check(sec, [body])
                    try:
                        vals, nul = strings(body, rows)
                    except ValueError as e:
                        raise r.fail(sec.pos, f"{sec.what}: {e}") from None
                    if columns[p]:
                        columns[p].extend(vals)
                    else:
                        columns[p] = vals
                else:
                    size = rows * dt.itemsize
                    lead = sec.length - size            # flags, and the null bitmap if any
                    if lead not in (1, 1 + nb):
                        raise r.fail(sec.pos, f"{sec.what}: {sec.length} bytes for {rows} rows "
                                              f"of {dt.str}")
                    head = r.pread(sec.pos + HEAD.size, lead)
                    out = columns[p][first:first + rows].view(U8)
                    r.read_into(sec.pos + HEAD.size + lead, memoryview(out))
                    r.check(sec, [head, out])
                    if head[0] != (NULLS if lead > 1 else 0):
                        raise r.fail(sec.pos, f"{sec.what}: flags {head[0]:#x} do not match its size")
                    nul = bitmap(head, 1, rows) if lead > 1 else None
                if nul is not None:
                    if nulls[p] is None:
                        nulls[p] = np.zeros(n, bool)
                    nulls[p][first:first + rows] = nul
        arrays = {}
        for field, dt, count, secs, pos in self.indexes:
            main = np.empty(count, dt)
            at = 0
            for sec in secs:
                k, rest = divmod(sec.length, dt.itemsize)
                if rest or at + k > count:
                    raise r.fail(sec.pos, f"{sec.what}: {sec.length} bytes do not hold whole "
                                          "entries of the count its record gives")
                out = main[at:at + k].view(U8)
                r.read_into(sec.pos + HEAD.size, memoryview(out))
                r.check(sec, [out])
                at += k
            if at != count:
                raise r.fail(pos, f"index frame of table {self.name!r}: its sections hold {at} "
                                  f"entries, not {count}")
            arrays[field] = main
        return CheckpointTable(self.schema, self.index_fields, n=n, columns=columns,
                               nulls=nulls, index_arrays=arrays)
