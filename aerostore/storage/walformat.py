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
[[values...], ...]]``, ``["del", table, key]``, ``["create_table", table,
schema_map]``, ``["create_index", table, field]``, ``["drop_index", table,
field]``.  Values are nil, int (to 2^64-1), float64, str (UTF-8; lone
surrogates pass through) or bool.  CSNs strictly increase through the file,
within and across frames.  A commit names each key at most once.

``putrows`` is how a commit of two or more rows to one table logs its puts
(an ``ingest_tsv`` or ``upsert_many`` batch, a feed's batch): the rows, each
whole in field order, its key at ``key_pos`` (the table's key field).  Per row
it saves the op's array header, its name, the table's name and the key again:
a 1M-row bulk load logs 40 bytes a row instead of 68 and replays in 40% less
decode time.  Logs written before it hold one ``put`` per row; both replay.

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

from ..errors import CorruptError, UsageError
from .framing import LEN, frame, pack

__all__ = ["MAGIC", "HEADER", "HEADER_SIZE", "FRAME", "FRAME_HEADER_SIZE", "COUNTED",
           "MAX_FRAME_PAYLOAD", "Commit", "Put", "PutRows", "Del", "CreateTable", "CreateIndex",
           "DropIndex", "OPS", "Sink", "replay", "putrows_checked", "encode_commit", "make_header",
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


# op name -> (record, the Sink method it replays through).  Every record has 3 or
# 4 fields; replay() spells out those two calls.
OPS = {"put": (Put, "put"), "putrows": (PutRows, "put_rows"), "del": (Del, "delete"),
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
    A ``putrows`` record goes to ``sink.put_rows`` whole; so does, to
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
            else:
                apply(csn, op[1], op[2])
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
