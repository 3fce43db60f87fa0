"""The write-ahead log's file format, its op records, and ``replay``.

File format of ``wal.log`` (all integers little-endian)
------------------------------------------------------
Header, 20 bytes, written once (the file is created as ``wal.log.tmp``, synced,
then renamed, so a ``wal.log`` always has a whole header):

| offset | size | field |
|---|---|---|
| 0 | 8 | magic ``b"AEROWAL1"`` |
| 8 | 8 | ``base_csn``: the checkpoint CSN this log continues from (0 = none) |
| 16 | 4 | CRC-32 of bytes 0..15 |

Then frames, back to back, then zero bytes to the end of the file: the log is
preallocated in steps (see ``walwriter.PREALLOC_MIN``), and a group overwrites
zeros.  A frame is one group flush: the commits the writer wrote with one
``write()`` and made durable with one ``fdatasync`` (the writer splits very
large groups into several frames, all in the same write).  Its first 8 bytes are
the frame head every file shares (framing.py):

| offset | size | field |
|---|---|---|
| 0 | 4 | ``length``: payload bytes (>= 1) |
| 4 | 4 | ``crc``: CRC-32 of the length field, then of bytes 8..end of the frame |
| 8 | 4 | ``count``: commits in the frame (>= 1) |
| 12 | 8 | ``first_csn``: CSN of the first commit |
| 20 | 8 | ``last_csn``: CSN of the last commit |
| 28 | length | payload: a msgpack array of ``count`` commits |

Each commit is the msgpack array ``[csn, ops]`` (``Commit``); ``ops`` is an
array of operations, each an array whose first element names it (the op
records below, written field by field in this order):
``["put", table, key, [values...]]``, ``["putrows", table, key_pos,
[[values...], ...]]``, ``["putcols", table, key_pos, n, [type...],
[section...]]``, ``["del", table, key]``, ``["create_table", table,
schema_map]``, ``["create_index", table, field]``, ``["drop_index", table,
field]``.  Values are nil, int (to 2^64-1), float64, str (UTF-8; lone
surrogates pass through) or bool.  CSNs strictly increase through the file,
within and across frames.  A commit names each key at most once.

``putrows`` is how a commit of two or more rows to one table logs its puts
(a feed's batch): the rows, each whole in field order, its key at
``key_pos`` (the table's key field).  Per row it saves the op's array header,
its name, the table's name and the key again.

``["putcols", table, key_pos, n, [type per field], [section per field]]`` is
how a commit of ``PUTCOLS_MIN`` rows or more to one table logs them (an
``ingest_tsv`` or ``upsert_many`` batch): the ``n`` rows as columns, each a
binary column section (colsection.py: the checkpoint's format; a type is
``"str"`` or a numpy type string), the key column at ``key_pos``.  A numeric
column replays as one array over the payload, with no Python object per value:
a 1M-row FlightState bulk load logs 41 bytes a row (68 as puts, 40 as
putrows) and recovers in 0.2-0.3 s (0.8 s as putrows, 1.2-1.5 s as puts).  Its
encoding costs more than putrows' (3.0 against 2.3 ms for 10,000 rows, 46
against 14 us for 100), hence the minimum: a feed's small batches stay
putrows.  A table whose int field no 64-bit type holds logs putrows.  Logs
written before these records hold one ``put`` per row; all replay.

Why frames are per flush and not per commit: a crash during an unsynced write
may persist the pages of that write in any order, so a later commit of the
group can survive while an earlier one is lost.  Because the whole group shares
one checksum, such a group is dropped as a unit; and because the writer never
starts a write before the previous one is synced, a valid frame after a bad one
proves the bad one had been synced: that is damage, not a torn write
(walscan.py reads the file by that rule; walwriter.py writes it).
"""

from __future__ import annotations

import struct
import zlib
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np

from ..errors import CorruptError, UsageError
from .colsection import NUMERIC, Slice, numeric, strings
from .framing import LEN, frame, pack

__all__ = ["MAGIC", "HEADER", "HEADER_SIZE", "FRAME", "FRAME_HEADER_SIZE", "COUNTED",
           "MAX_FRAME_PAYLOAD", "Commit", "Put", "PutRows", "PutCols", "Del", "CreateTable",
           "CreateIndex", "DropIndex", "OPS", "Sink", "replay", "putrows_checked", "PUTCOLS_MIN",
           "putcols_record", "putcols_columns", "columns_rows", "encode_commit", "make_header",
           "build_frames"]

MAGIC = b"AEROWAL1"
HEADER = struct.Struct("<8sQI")
HEADER_SIZE = HEADER.size  # 20
FRAME = struct.Struct("<IIIQQ")
FRAME_HEADER_SIZE = FRAME.size  # 28
COUNTED = struct.Struct("<IQQ")  # count, first_csn, last_csn: bytes 8..27 of a frame
MAX_FRAME_PAYLOAD = 32 << 20  # the writer starts a new frame beyond this (see walscan._candidates)


# -- records ---------------------------------------------------------------------
# NamedTuples: msgpack writes them as the arrays above (a decoded op is a plain
# tuple of the same fields).  The first field names the op.

class Commit(NamedTuple):
    """``[csn, ops]``: one commit, as logged and as ``Recovered.records`` yields it."""
    csn: int
    ops: Any      # a sequence of the op records below


class Put(NamedTuple):
    """``["put", table, key, [values...]]``: row ``key`` of ``table`` is now ``values``."""
    kind: str     # "put"
    table: str
    key: str
    values: tuple  # the whole row, in field order


class PutRows(NamedTuple):
    """``["putrows", table, key_pos, [[values...], ...]]``: each row of ``rows`` (the
    whole row, in field order) is now the row of its key ``row[key_pos]``."""
    kind: str     # "putrows"
    table: str
    key_pos: int  # the table's key field
    rows: Any     # a sequence of rows, each a tuple in field order


class PutCols(NamedTuple):
    """``["putcols", table, key_pos, n, [type...], [section...]]``: ``n`` whole rows of
    ``table`` as column sections (colsection.py), field ``key_pos`` the key."""
    kind: str     # "putcols"
    table: str
    key_pos: int
    n: int
    types: Any    # per field "str" or a numpy type string (colsection.NUMERIC)
    sections: Any  # per field its column section (bytes)


class Del(NamedTuple):
    """``["del", table, key]``: row ``key`` of ``table`` is deleted."""
    kind: str     # "del"
    table: str
    key: str


class CreateTable(NamedTuple):
    """``["create_table", table, schema_map]``: the table is created (with its
    default indexes), unless it exists.  ``schema`` is ``Schema.to_dict()``."""
    kind: str     # "create_table"
    table: str
    schema: dict


class CreateIndex(NamedTuple):
    """``["create_index", table, field]``."""
    kind: str     # "create_index"
    table: str
    field: str


class DropIndex(NamedTuple):
    """``["drop_index", table, field]``."""
    kind: str     # "drop_index"
    table: str
    field: str


# op name -> (record, the Sink method it replays through).  replay() spells out
# the calls for records of 3 and 4 fields.
OPS = {"put": (Put, "put"), "putrows": (PutRows, "put_rows"), "putcols": (PutCols, "put_cols"),
       "del": (Del, "delete"),
       "create_table": (CreateTable, "create_table"), "create_index": (CreateIndex, "create_index"),
       "drop_index": (DropIndex, "drop_index")}


class Sink:
    """What ``replay`` applies the log to.  Each op method gets the commit's CSN and
    the op's fields (the record's fields after ``kind``), in commit order, then
    ``committed(csn)`` once the commit's ops are applied.

    A method raises ``corrupt(csn, what)`` for an op that makes no sense here
    (a table never created, a row of the wrong width); ``replay`` raises it for
    an op it does not know.  The default names no offset; a sink that knows
    where the commit lives in its file says so.
    """

    def create_table(self, csn: int, table: str, schema: dict) -> None:
        raise NotImplementedError

    def put(self, csn: int, table: str, key: str, values) -> None:
        raise NotImplementedError

    def put_batch(self, csn: int, table: str, ops) -> None:
        """The ops of one commit that are all puts to ``table`` (each a record of 4
        fields, in commit order).  The default applies them one by one through
        ``put``; a sink that can take them at once (recovery) overrides it."""
        put = self.put
        for op in ops:
            put(csn, table, op[2], op[3])

    def put_rows(self, csn: int, table: str, key_pos: int, rows) -> None:
        """A ``putrows`` record: each row of ``rows`` put under its key ``row[key_pos]``.
        The default checks the record's shape (``corrupt`` if ``rows`` is not a
        sequence of tuples that all have a field ``key_pos``) and applies the rows
        one by one through ``put``; recovery takes them at once."""
        put = self.put
        for row in putrows_checked(self, csn, table, key_pos, rows):
            put(csn, table, row[key_pos], row)

    def put_cols(self, csn: int, table: str, key_pos: int, n: int, types, sections) -> None:
        """A ``putcols`` record: its ``n`` rows put, each under its key.  The default
        decodes the sections (``putcols_columns``: ``corrupt`` if they do not fit)
        and applies the rows one by one through ``put``; recovery takes the
        columns as they are."""
        cols, nulls = putcols_columns(self, csn, table, key_pos, n, types, sections)
        put = self.put
        for row in columns_rows(types, cols, nulls):
            put(csn, table, row[key_pos], row)

    def delete(self, csn: int, table: str, key: str) -> None:
        raise NotImplementedError

    def create_index(self, csn: int, table: str, field: str) -> None:
        raise NotImplementedError

    def drop_index(self, csn: int, table: str, field: str) -> None:
        raise NotImplementedError

    def committed(self, csn: int) -> None:
        pass

    def corrupt(self, csn: int, what: str) -> CorruptError:
        return CorruptError("wal.log", -1, f"commit {csn}: {what}")


def replay(records, sink: Sink) -> None:
    """Apply ``records`` (``(csn, ops)`` pairs, in CSN order) to ``sink``.

    The one reading of the op records: the engine's recovery (database.py), the
    command-line tools (``__main__.Image``) and the tests all replay through it.
    A ``putrows`` record goes to ``sink.put_rows`` whole, a ``putcols`` record
    to ``sink.put_cols``; so does, to
    ``sink.put_batch``, a commit of several ops that are all ``put`` records to
    one table (a batch in a log written before ``putrows``).
    Raises ``sink.corrupt(csn, ...)`` for an op it does not know or of the
    wrong length, and whatever the sink raises.
    """
    handlers = {kind: (len(rec._fields), getattr(sink, method))
                for kind, (rec, method) in OPS.items()}
    committed = sink.committed
    put_batch = sink.put_batch
    for csn, ops in records:
        if len(ops) > 1:
            table = _puts_to_one_table(ops)
            if table is not None:      # a bulk commit: handed over whole
                put_batch(csn, table, ops)
                committed(csn)
                continue
        for op in ops:
            try:
                n, apply = handlers[op[0]]
            except (KeyError, IndexError, TypeError):  # not an op, or not one we know
                n = -1
            if n < 0 or len(op) != n:
                raise sink.corrupt(csn, f"unknown operation {op!r:.80}")
            if n == 4:  # not apply(csn, *op[1:]): no slice per op on recovery's hot path
                apply(csn, op[1], op[2], op[3])
            elif n == 3:
                apply(csn, op[1], op[2])
            else:
                apply(csn, *op[1:])
        committed(csn)


def putrows_checked(sink, csn: int, table, key_pos, rows):
    """``rows`` of a ``putrows`` record if its shape is sound: a non-empty tuple (or
    list) of tuples, ``key_pos`` an int below every row's length; else raises
    ``sink.corrupt``.  Whether the rows fit the table (its width, its key
    field) is the sink's to check.  O(rows) at C speed."""
    try:
        ok = (key_pos.__class__ is int and key_pos >= 0 and rows.__class__ in (tuple, list)
              and set(map(type, rows)) == {tuple} and min(map(len, rows)) > key_pos)
    except TypeError:
        ok = False
    if not ok:
        raise sink.corrupt(csn, f"a putrows record for {table!r:.80} that is not rows with a key at "
                                f"{key_pos!r:.20}")
    return rows


PUTCOLS_MIN = 256   # rows of one commit to one table from which they are logged as putcols


def putcols_record(table: str, key_pos: int, types: list, rows: list) -> tuple:
    """The ``putcols`` record of ``rows`` (whole rows of ``table``, distinct keys), whose
    column types are ``types`` (``colsection.column_types``: per field a dtype, or
    None for a string).  O(rows) at C speed: one pass into a record array, then
    a section per field (colsection.Slice)."""
    sl = Slice(types)
    sl.add(rows)
    return ("putcols", table, key_pos, len(rows), ["str" if dt is None else dt.str for dt in types],
            [b"".join(sl.section(p)) for p in range(len(types))])


def putcols_columns(sink, csn: int, table, key_pos, n, types, sections) -> tuple:
    """``(columns, nulls)`` of a ``putcols`` record: per field a read-only array over its
    section (numeric) or a list (strings, None where null), and a bool array of
    its nulls or None.  Raises ``sink.corrupt`` naming the field when the record
    does not hold ``n`` > 0 rows of one column per type, the key column of
    strings without a null at ``key_pos``."""
    what = f"a putcols record for {table!r:.80}"
    if not (n.__class__ is int and n > 0 and key_pos.__class__ is int
            and types.__class__ in (tuple, list) and sections.__class__ in (tuple, list)
            and len(types) == len(sections) and 0 <= key_pos < len(types)
            and types[key_pos] == "str"):
        raise sink.corrupt(csn, f"{what} that is not n rows of typed columns keyed at a string field")
    cols, nulls = [], []
    for p, (ty, sec) in enumerate(zip(types, sections)):
        try:
            if sec.__class__ is not bytes:
                raise ValueError("not bytes")
            if ty == "str":
                vals, nul = strings(sec, n)
            elif ty.__class__ is str and ty in NUMERIC:
                vals, nul = numeric(sec, n, np.dtype(ty))
            else:
                raise ValueError(f"unknown column type {ty!r:.20}")
        except ValueError as e:
            raise sink.corrupt(csn, f"{what}: field {p}: {e}") from None
        cols.append(vals)
        nulls.append(nul)
    if nulls[key_pos] is not None:
        raise sink.corrupt(csn, f"{what}: a null key")
    return cols, nulls


def columns_rows(types, cols: list, nulls: list) -> list:
    """The row tuples of ``putcols_columns``' columns: Python values as a put's row
    holds them (a ``"|i1"`` column's as bools), None where null.  O(rows * fields)
    at C speed."""
    lists = []
    for ty, c, nul in zip(types, cols, nulls):
        vals = c if ty == "str" else (c.astype(bool) if ty == "|i1" else c).tolist()
        if nul is not None and ty != "str":
            for i in np.flatnonzero(nul).tolist():
                vals[i] = None
        lists.append(vals)
    return list(zip(*lists))


def _puts_to_one_table(ops):
    """The table when every op of ``ops`` is a put record of 4 fields and all name
    the same table; else None (also for ops that are not records at all: the
    per-op path then says which is wrong).  Three passes at C speed, so a bulk
    commit costs no Python step per op here."""
    try:
        if set(map(len, ops)) != {4} or set(map(_KIND, ops)) != {"put"}:
            return None
        tables = set(map(_TABLE, ops))
    except (TypeError, KeyError, IndexError):   # an op without len, or unhashable fields
        return None
    return next(iter(tables)) if len(tables) == 1 else None


_KIND = itemgetter(0)
_TABLE = itemgetter(1)


# -- encoding ----------------------------------------------------------------------
def encode_commit(csn: int, ops) -> bytes:
    """The msgpack record ``[csn, ops]``; called in the committer's thread."""
    try:
        return pack(Commit(csn, ops))
    except (TypeError, ValueError, OverflowError) as e:
        raise UsageError(f"commit {csn} holds a value the log cannot store: {e}") from None


def make_header(base_csn: int) -> bytes:
    head = struct.pack("<8sQ", MAGIC, base_csn)
    return head + LEN.pack(zlib.crc32(head))


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _frame(records: list) -> bytes:
    """One frame holding consecutive encoded commits."""
    n = len(records)
    body = b"".join([COUNTED.pack(n, records[0].csn, records[-1].csn), _array_header(n),
                     *[r.payload for r in records]])
    return frame(len(body) - COUNTED.size, body)


def build_frames(records: list) -> list:
    """Encode a group of encoded commits (items with ``csn`` and ``payload``, such as
    ``walwriter.Pending``) as frames.

    Returns the frames; a group whose payloads pass ``MAX_FRAME_PAYLOAD`` is split.
    """
    if len(records) == 1:
        return [_frame(records)]
    frames = []
    start, size = 0, 0
    for i, r in enumerate(records):
        size += len(r.payload)
        if size >= MAX_FRAME_PAYLOAD or i == len(records) - 1:
            frames.append(_frame(records[start:i + 1]))
            start, size = i + 1, 0
    return frames
