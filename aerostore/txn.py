"""Transactions and table handles.

``Transaction``: one snapshot (taken at begin) plus a private write set per
table (key -> row tuple, or None for a delete).  Reads look in the write set
first, then at the snapshot, so a transaction sees its own writes and nothing
committed after it began.  ``commit()`` hands the write set to the database
(first committer wins); ``rollback()`` drops it.  A transaction belongs to one
thread at a time.

``TxnTable``: a table seen through a transaction.  ``Table`` (database.py's
autocommit handle) offers the same methods, each its own transaction.

Isolation is snapshot isolation: dirty reads, non-repeatable reads, phantoms and
lost updates cannot happen; write skew can (two transactions that read
overlapping data and write disjoint keys both commit).  Guard an invariant that
spans keys by writing a common key in both transactions.
"""

from __future__ import annotations

from operator import itemgetter

from .errors import ClosedError, UsageError, WriteConflict
from .gcpause import BULK, paused
from .planner import execute
from .query import Query

__all__ = ["Transaction", "TxnTable", "set_row"]

_WINNER_WAIT = 5.0   # seconds a conflicting commit waits for the winner to become visible


class Transaction:
    """A snapshot-isolated transaction; use as a context manager or commit()/rollback()."""

    def __init__(self, db):
        self._db = db
        self.snapshot = db._snaps.take()
        self._writes: dict[str, dict] = {}
        self._open = True

    @property
    def closed(self) -> bool:
        return not self._open

    def table(self, name) -> "TxnTable":
        """The table ``name`` (a string or a Schema) seen through this transaction."""
        self._check()
        return TxnTable(self, self._db._store(name))

    def commit(self) -> None:
        """Make the writes durable and visible, or raise (WriteConflict, StorageIOError).

        A ``WriteConflict`` is raised only once the commit that won is visible
        (it may still be waiting for its flush), so a transaction run again
        right away sees it, instead of conflicting with it again.
        """
        self._check()
        try:
            self._db._commit(self)
        except WriteConflict as e:
            if e.csn is not None:
                # the winner may be queued with no thread leading its flush
                # (a commit of the Tcl combiner's batch): flush it here
                self._db.flush_log()
                self._db._snaps.wait_published(e.csn, _WINNER_WAIT)
            raise
        finally:
            self._end()

    def rollback(self) -> None:
        """Drop the writes; safe to call twice."""
        if self._open:
            self._end()

    def _end(self):
        wrote = any(self._writes.values())
        self._open = False
        self._writes = {}
        self._db._snaps.release(self.snapshot)
        if wrote:
            self._db._vacuum()          # writers prune what their commits left behind
        elif self._db._prune_q:
            self._db._maint.request_vacuum()   # readers leave it to the maintainer

    def _check(self):
        if not self._open:
            raise ClosedError("transaction already ended: begin a new one")
        self._db._check_open()

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if not self._open:
            return False
        if et is None:
            self.commit()
        else:
            self.rollback()
        return False

    def __del__(self):
        if getattr(self, "_open", False):
            try:
                self._open = False
                self._db._snaps.release_later(self.snapshot)
            except Exception:  # noqa: BLE001 - interpreter shutdown
                pass


def set_row(schema, key: str, cur, values: dict) -> tuple:
    """The row ``set(key, values)`` writes: ``values`` (``{field: value}``,
    coerced here) over ``cur``, the row it replaces (None: a new row, its other
    fields null).  ``key`` is coerced already.  ``UsageError`` for a bad value
    or an attempt to change the key.  The one home of ``set``'s rule, for a
    transaction's ``set`` and the autocommit one (``Database._commit_set``)."""
    if cur is None:
        base = [None] * schema.width
        base[schema.key_pos] = key
        cur = tuple(base)
    row = schema.make_row(values, cur)
    if row[schema.key_pos] != key:
        raise UsageError(f'cannot change the key "{key}" with set: delete and insert instead', "KEY")
    return row


class TxnTable:
    """One table through a transaction: reads see the snapshot plus own writes."""

    __slots__ = ("_txn", "_st", "schema", "name")

    def __init__(self, txn: Transaction, st):
        self._txn = txn
        self._st = st
        self.schema = st.schema
        self.name = st.schema.name

    def _ws(self) -> dict:
        txn = self._txn
        txn._check()
        ws = txn._writes.get(self.name)
        if ws is None:
            ws = txn._writes[self.name] = {}
        return ws

    # -- reads ---------------------------------------------------------------------
    def get(self, key):
        """The row tuple of ``key``, or None."""
        ws = self._ws()
        if key in ws:
            return ws[key]
        if key.__class__ is not str:
            key = self.schema.coerce_key(key)
            if key in ws:
                return ws[key]
        return self._st.get(key, self._txn.snapshot)

    def exists(self, key) -> bool:
        return self.get(key) is not None

    def count(self) -> int:
        ws = self._ws()
        s = self._txn.snapshot
        st = self._st
        n = st.count(s)
        for k, r in ws.items():
            n += (r is not None) - (st.get(k, s) is not None)
        return n

    def query(self) -> Query:
        return Query(self)

    def _run(self, q, mode):
        ws = self._ws()
        return execute(self._st, self._txn.snapshot, q, ws, mode)

    # -- writes --------------------------------------------------------------------
    def upsert(self, row) -> bool:
        """Insert or replace a whole row (sequence in field order, or dict); True if inserted."""
        schema = self.schema
        if isinstance(row, dict):
            row = schema.make_row(row)
        else:
            row = schema.check_row(row)
        key = row[schema.key_pos]
        inserted = self.get(key) is None
        self._ws()[key] = row
        return inserted

    def set(self, key, values: dict) -> bool:
        """Set some fields of ``key``'s row (insert it, others null, if absent); True if inserted."""
        schema = self.schema
        key = schema.coerce_key(key)
        cur = self.get(key)
        self._ws()[key] = set_row(schema, key, cur, values)
        return cur is None

    def delete(self, key) -> bool:
        """Delete ``key``; True if it existed."""
        if key.__class__ is not str:
            key = self.schema.coerce_key(key)
        existed = self.get(key) is not None
        if existed:
            self._ws()[key] = None
        return existed

    def upsert_many(self, rows) -> tuple[int, int]:
        """Upsert many rows (each a sequence in field order or a ``{field: value}`` dict,
        validated like ``upsert``; a bad one raises UsageError and nothing is written);
        returns (inserted, updated)."""
        check = self.schema.check_row
        return self.upsert_checked([check(r) for r in rows])

    def upsert_checked(self, rows) -> tuple[int, int]:
        """``upsert_many`` of rows already validated by this schema (tuples, as
        ``Schema.check_row`` or the TSV decoder makes them): the ingest path, with
        no second check per value.  Returns (inserted, updated)."""
        with paused(len(rows) if hasattr(rows, "__len__") else BULK):
            return self._upsert_many(rows)

    def _upsert_many(self, rows) -> tuple[int, int]:
        ws = self._ws()
        if not ws and rows.__class__ is list:
            return self._upsert_fresh(rows)
        st = self._st
        s = self._txn.snapshot
        get = st.get
        slots = st.slots
        heap = st.rows
        kp = self.schema.key_pos
        ins = 0
        n = 0
        for r in rows:
            k = r[kp]
            n += 1
            if k in ws:
                if ws[k] is None:
                    ins += 1
            else:
                # TableStore.get inlined for the common case, a settled row (only
                # whether the key exists counts here, not its values)
                slot = slots.get(k)
                if slot is None:
                    ins += 1
                else:
                    head = heap[slot]
                    if head.__class__ is str and head == k:
                        pass
                    elif get(k, s) is None:
                        ins += 1
            ws[k] = r
        return ins, n - ins

    def _upsert_fresh(self, rows: list) -> tuple[int, int]:
        """``_upsert_many`` into an empty write set (an ingest batch: a transaction of
        its own), with its per-row work in C: the write set in one ``dict.update``
        (a key given twice keeps its last row, as one by one), then the inserts
        counted from one key-map lookup per distinct key and one compare of the
        settled slots' keys; a chained slot asks ``get``.  O(len(rows))."""
        ws = self._ws()
        ws.update(zip(map(itemgetter(self.schema.key_pos), rows), rows))
        st = self._st
        at = list(map(st.slots.get, ws))
        ins = at.count(None)
        if ins == len(at):
            return ins, len(rows) - ins
        found = [(k, slot) for k, slot in zip(ws, at) if slot is not None] if ins else list(zip(ws, at))
        ks, sl = zip(*found)
        heads = list(map(st.rows.__getitem__, sl))
        if heads != list(ks):           # not all settled under their key: check those one by one
            s = self._txn.snapshot
            get = st.get
            for k, head in zip(ks, heads):
                if not (head.__class__ is str and head == k) and get(k, s) is None:
                    ins += 1
        return ins, len(rows) - ins

    def delete_many(self, keys) -> int:
        n = 0
        for k in keys:
            n += self.delete(k)
        return n

    def _delete_query(self, q) -> int:
        kp = self.schema.key_pos
        rows = q.rows()
        ws = self._ws()
        for r in rows:
            ws[r[kp]] = None
        return len(rows)
