"""TableStore: the in-memory heap of one table, its version chains and indexes.

Layout (designed for 1M+ rows):

- ``slots``: key -> slot number, a ``KeyMap`` (keymap.py; hash lookup, O(1));
- ``rows[slot]``: the key (a str) of a settled row, visible to every snapshot,
  whose values are in the ``columns`` (columns.py: their only copy); the
  newest ``Version`` of a chain (see mvcc.py), whose versions hold their rows
  as tuples; or None (a free slot);
- ``columns``: the settled rows' values, typed arrays per field;
- ``indexes``: field position -> SortedIndex or ArrayIndex, entries ``(value, slot)``;
- ``unfrozen``: the slots that hold a Version chain (the "visibility map":
  every other slot is all-visible), ``n_frozen`` counts settled slots; rebuilt
  when a bulk write leaves it mostly empty (``index.compacted``).

Writers install whole transactions (``install``) and later ``prune`` the slots
they touched once the vacuum horizon allows, which frees dead versions and their
index entries and freezes the surviving version back into a tuple.  Both apply
their index entries at once, in the same latch section (index.py), so readers
find the indexes exact and never do writers' work; an index whose recent-write
layers grew past their budget is handed to the ``maintainer`` (maintainer.py),
which folds them in the background.  ``live`` keeps the number of visible rows
after each recent commit, so a count is O(1).

Reading a row: ``row_at(slot, s)`` and ``rows_at(slots, s)`` are the one
home of it.  A settled row is read from the columns without a lock; only a
writer section that bumps ``fseq`` (a prune freezing slots, a bulk load)
writes column values, so a read with the same even ``fseq`` before and after
is whole, and a read that a freeze overlapped is done again under the shared
latch.  A thread holding the latch (a writer) reads ``columns`` directly.

Concurrency: writers change the heap in writer sections (``with
store.writing:`` / ``store.freezing:``, see ``_Writing``: ``latch`` held
exclusively, in parts).  Readers take no lock: replacing ``rows[slot]`` is
atomic, pruning only drops versions no registered snapshot can see and never
cuts a chain in place, column values are read as above, and the indexes and
columns publish what readers read by one reference; planner.py says how a reader copes with entries older than
the rows (``fseq``), and an index-only count reads the ``Picture`` a writer
section leaves.  The latch is still shared by the reads of a str index.
"""

from __future__ import annotations

from collections import deque
from itertools import compress, repeat
from operator import attrgetter, itemgetter, ne
from typing import NamedTuple

import numpy as np

from .arrayindex import new_index
from .columns import FROZEN, Columns, field_array, value_list
from .index import Index, compacted
from .keymap import KeyMap
from .latch import Latch
from .mvcc import INF, Version, visible
from .readgate import changed as _gate_changed
from .storage.colsection import column_types
from .storage.walformat import PUTCOLS_MIN, putcols_record

__all__ = ["TableStore", "Installed", "ColumnSnapshot"]

_FEW = 8  # below this many rows, index writes go one by one instead of in batches
# Writers take the latch per part of this many rows, so a reader waits for one
# part (a feed's 100-row batch: one part, about 0.2 ms), not a whole bulk
# commit; from _WHOLE rows on (bulk loads, folded into the index arrays at C
# speed) one part takes everything.
_PART = 128
_WHOLE = 4096
_LOCKFREE_TRIES = 3     # lock-free tries of a settled read before the shared latch (settled_read)


def _chain_values(v, pos: int) -> set:
    """Distinct values of field ``pos`` along a version chain."""
    out = set()
    while v is not None:
        out.add(v.values[pos])
        v = v.prev
    return out


def _cut(head, last):
    """A copy of the chain from ``head`` down to ``last`` (inclusive), ending there.

    Why a copy: prune never cuts a chain in place, so a reader holding a head
    taken earlier (an index-only count's ``Picture``) still finds every version
    whose index entries its picture holds.  O(versions kept), usually one or two.
    """
    kept = []
    v = head
    while v is not last:
        kept.append(v)
        v = v.prev
    kept.append(last)
    out = None
    for x in reversed(kept):
        out = Version(x.xmin, x.xmax, x.values, out)
    return out


class Picture(NamedTuple):
    """What an index-only count reads (planner.py), as of the end of the last writer
    section, published by one reference (``TableStore.picture``): ``heads``, a
    list of the head of every chained slot's version chain, in no order (chains
    are never cut in place, and a head's only later change is the ``xmax`` an
    install sets, which no snapshot the picture serves looks at), and ``views``,
    field position -> (the lock-free index, its ``view``) then."""
    heads: list
    views: dict


def _index_writes(idx, pairs, vals: dict, slots: dict, add: bool) -> None:
    """Add to (or remove from) each index: for every (slot, row, other) in ``pairs``,
    ``row``'s value where it differs from ``other``'s; then the values already
    collected per field in ``vals``/``slots``.  Batched per index, except for a
    few rows (single-row commits), which go one by one without batch set-up.
    The batch path does its per-row work in C (map, itemgetter, compress)."""
    idx = [ix for ix in idx if ix.ready]   # an index built on first read logs nothing
    if not idx:
        return
    if len(pairs) < _FEW:
        for slot, r, o in pairs:
            for ix in idx:
                p = ix.pos
                if r[p] != o[p]:
                    if add:
                        ix.add(r[p], slot)
                    else:
                        ix.remove(r[p], slot)
        pairs = ()
    pair_arr = None
    if pairs:
        pair_slots = list(map(_first, pairs))
        news = list(zip(*map(_second, pairs)))   # columns of the rows, at C speed
        olds = list(zip(*map(_third, pairs)))
    for ix in idx:
        p = ix.pos
        if pairs:
            nv = news[p]
            diff = list(map(ne, nv, olds[p]))
            if all(diff):
                if not vals[p] and ix.takes_slot_array:
                    # every row's value changed (a bulk update): one slot array for all
                    if pair_arr is None:
                        pair_arr = np.array(pair_slots, np.int64)
                    if add:
                        ix.add_many(nv, pair_arr)
                    else:
                        ix.remove_many(nv, pair_arr)
                    continue
                vals[p].extend(nv)
                slots[p].extend(pair_slots)
            elif any(diff):
                vals[p].extend(compress(nv, diff))
                slots[p].extend(compress(pair_slots, diff))
        if vals[p]:
            if add:
                ix.add_many(vals[p], slots[p])
            else:
                ix.remove_many(vals[p], slots[p])


_first, _second, _third = itemgetter(0), itemgetter(1), itemgetter(2)
_xmin, _xmax, _prev, _values = (attrgetter("xmin"), attrgetter("xmax"), attrgetter("prev"),
                                attrgetter("values"))


def _settle_all(rows: list, slot_list, h: int, kp: int, want_simple: bool):
    """``_prune_part``'s common case at C speed: every slot of ``slot_list`` holds a
    live version committed at or below the horizon ``h`` over at most one older
    version (a batch of inserts and of updates of settled rows), so each settles.

    Returns what the loop of ``_prune_part`` makes of them: (the slots, their live
    rows, their keys -- the oldest version's string, the key map's --, and
    ``(slot, old row, new row)`` per update if ``want_simple``); or None when any
    slot has another shape (then the loop takes them all).  O(len) in C, with one
    Python filter per row when inserts and updates mix."""
    heads = list(map(rows.__getitem__, slot_list))
    try:
        if max(map(_xmin, heads)) > h or list(map(_xmax, heads)).count(INF) != len(heads):
            return None
        prevs = list(map(_prev, heads))
    except AttributeError:          # a free slot (None) or a settled one (its key)
        return None
    new_rows = list(map(_values, heads))
    getkey = itemgetter(kp)
    n_fresh = prevs.count(None)
    if n_fresh == len(prevs):
        return list(slot_list), new_rows, list(map(getkey, new_rows)), []
    olds = [v for v in prevs if v is not None] if n_fresh else prevs
    if list(map(_prev, olds)).count(None) != len(olds):
        return None                 # a longer chain: versions to drop by value
    if n_fresh:
        firsts = [v if v is not None else hd for v, hd in zip(prevs, heads)]
        keys = list(map(getkey, map(_values, firsts)))
        simple = ([(slot, v.values, r) for slot, v, r in zip(slot_list, prevs, new_rows)
                   if v is not None] if want_simple else [])
    else:
        keys = list(map(getkey, map(_values, prevs)))
        simple = list(zip(slot_list, map(_values, prevs), new_rows)) if want_simple else []
    return list(slot_list), new_rows, keys, simple


def _newer_csn(head) -> int:
    """The CSN of the newest commit on a chain (its delete, else its head's insert)."""
    return head.xmax if head.xmax < INF else head.xmin


class ColumnSnapshot:
    """The rows of one table at a snapshot, as columns (``TableStore.snapshot_columns``):
    ``n`` rows; ``columns[p]`` field ``p``'s values, a numpy array of its column type
    (0 where null; bools as int8) or a list (the key, strings, ints wider than 64
    bits); ``nulls[p]`` a bool array (True: null) or None when none is.  What
    ``storage.checkpoint`` writes section by section; iterating gives the row
    tuples, for a storage that wants rows."""

    __slots__ = ("schema", "n", "columns", "nulls")

    def __init__(self, schema, n: int, columns: list, nulls: list):
        self.schema, self.n, self.columns, self.nulls = schema, n, columns, nulls

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        fields = self.schema.fields
        return zip(*(value_list(c, nul, f.kind == "bool")
                     for c, nul, f in zip(self.columns, self.nulls, fields)))


def log_puts(ops: list, tname: str, key_pos: int, rows: list, types) -> None:
    """Append to ``ops`` the WAL record of ``rows`` (whole rows of table ``tname``,
    distinct keys, at least one) put (storage/walformat.py): a ``put`` for a
    single row, a ``putcols`` record from ``PUTCOLS_MIN`` rows on when the table
    has column ``types`` (``colsection.column_types``; None: an int field too
    wide), else one ``putrows``.  ``rows`` becomes a putrows record's: the
    caller does not change it afterwards.  Never raises for rows a putrows
    record holds: it runs after the rows are installed, so a value the column
    types refuse (none that the schema lets through) logs the rows as putrows,
    whose encoding reports what the log cannot store as the commit's error."""
    n = len(rows)
    if n == 1:
        row = rows[0]
        ops.append(("put", tname, row[key_pos], row))
        return
    if n >= PUTCOLS_MIN and types is not None:
        try:
            ops.append(putcols_record(tname, key_pos, types, rows))
            return
        except (TypeError, ValueError, OverflowError):
            pass
    ops.append(("putrows", tname, key_pos, rows))


class Installed(NamedTuple):
    """What ``TableStore.install`` made of one table's write set, in write-set order."""
    ops: list         # WAL records (storage/walformat.py): "put", "putrows", "putcols", "del"
    changes: list     # change records for the publish hooks: (table, op, key, old, new)
    touched: list     # the slots to prune once the vacuum horizon allows


class _Writing:
    """``with store.writing:`` a writer section: the latch held exclusively; at its end
    the store's ``Picture`` is published (index-only counts read it).  ``with
    store.writing_bulk:`` the same for a section that writes a bulk part (at least
    ``_WHOLE`` rows): it leaves no picture, whose O(chained slots) would be paid
    for each bulk part (0.7 s of a 1M-row update), and counts take the shared
    latch until the next section publishes one.

    ``with store.freezing:`` a writer section that may also freeze or free slots
    (prune, a bulk load): ``store.fseq`` is odd inside, bumped again at the end.
    Only such a section can leave a settled row under a value that an index
    read taken before it still lists for the slot; an install only adds
    versions and entries (a reader's chunk that holds an install's entry was
    read after the install had already made the slot a chain).  A lock-free
    reader that reads the same even ``fseq`` before and after a chunk and its
    rows may trust settled rows (planner.py, ``_chunk``)."""

    __slots__ = ("store", "freezes", "pictures")

    def __init__(self, store, freezes: bool, pictures: bool = True):
        self.store = store
        self.freezes = freezes
        self.pictures = pictures

    def __enter__(self):
        st = self.store
        st.latch.__enter__()
        if self.freezes:
            st.fseq += 1
        return self

    def __exit__(self, *exc):
        st = self.store
        try:
            if self.pictures:
                st._publish_picture()
            else:
                st.picture = None
        finally:
            if self.freezes:
                st.fseq += 1
            st.latch.__exit__(*exc)
        return False


class TableStore:
    """Heap, key map, version chains and indexes of one table."""

    def __init__(self, schema):
        self.schema = schema
        self.key_pos = schema.key_pos
        self.wal_types = column_types(schema.fields)    # how the log holds a bulk write's columns
        self.slots = KeyMap()
        self.rows: list = []
        self.free: list = []
        # (csn, visible rows after that commit), oldest first; the first entry is
        # at or below every registered snapshot (prune drops older ones)
        self.live: deque = deque([(0, 0)])
        self.maintainer = None          # folds index layers in the background; None: inline
        self.indexes: dict[int, Index] = {}
        self.unfrozen: set = set()
        self.n_frozen = 0
        self.latch = Latch()
        # odd while a writer section that freezes or frees slots runs (``_Writing``)
        self.fseq = 0
        self.writing = _Writing(self, False)
        self.writing_bulk = _Writing(self, False, pictures=False)
        self.freezing = _Writing(self, True)
        self.picture: Picture | None = None     # see Picture; None: count under the latch
        # queries pass latch.gate() first (aerostore.readers_wait_for_writers, config.py)
        self.gate_queries = True
        # the settled rows' values (columns.py): their only copy
        self.columns = Columns(schema)
        # the key buffer of glob matches on the key (keyscan.py), made by the first
        # query that can use it; writers tell it which slots they reuse
        self.keyscan = None

    # -- reads -------------------------------------------------------------------
    def get(self, key, s: int):
        """The row of ``key`` visible to snapshot ``s``, or None.  O(1), no lock."""
        slot = self.slots.get(key)
        if slot is None:
            return None
        r = self.row_at(slot, s)
        # the slot may have been freed and reused between the two lookups
        return r if r is not None and r[self.key_pos] == key else None

    def row_at(self, slot: int, s: int):
        """The row tuple of ``slot`` visible to snapshot ``s`` (registered, or the
        watermark with the caller's own checks), or None.  O(fields) for a settled
        row, O(chain) for a chain; no lock unless a freeze overlapped the read.
        Not for a thread that holds the latch (it would wait for itself)."""
        f = self.fseq
        head = self.rows[slot]
        if head.__class__ is not str:
            return None if head is None else visible(head, s)
        r = self.columns.row(slot, head)
        if f == self.fseq and not f & 1:
            return r
        return self.settled_read(lambda: self._row_at(slot, s))

    def _row_at(self, slot: int, s: int):
        head = self.rows[slot]
        if head.__class__ is not str:
            return None if head is None else visible(head, s)
        return self.columns.row(slot, head)

    def rows_at(self, slots, s: int, keep_none: bool = False) -> list:
        """The rows visible to ``s`` of ``slots`` (a list of slot numbers, or a
        ``range`` with step 1), in order; a slot with none is left out
        (``keep_none``: None in its place).  Settled rows are read from the
        columns in one gather (or slice) per field, as ``row_at`` says.
        O(len * fields) in C, plus O(chain) per chained slot in Python."""
        return self.settled_read(lambda: self._rows_at(slots, s, keep_none))

    def settled_read(self, read, latched=None):
        """``read()``'s result from a read that no freeze overlapped: the rule every
        lock-free reader of settled rows follows (the module docstring).

        ``read`` runs without the latch, between two reads of ``fseq``; when they
        differ (a prune froze or freed slots meanwhile) and no writer section is
        inside, it runs again without the latch, up to ``_LOCKFREE_TRIES``
        times; then (or at once, while a freezing section runs) ``latched()``
        (default: ``read``) runs under the shared latch.  Why retry before
        taking the latch: a feed prunes every few milliseconds, so a query of a
        few milliseconds often overlaps one; the next try rarely does, and the
        latch makes the reader wait behind the next writer section (writers
        are preferred, latch.py) and for the GIL the writer gives up inside it.
        ``read`` and ``latched`` may run after a dropped try: each starts by
        undoing what an earlier one left (appended rows).  An IndexError from
        ``read`` counts as an overlap (a slot settled past the columns'
        capacity it read).  Not for a thread that holds the latch."""
        for _ in range(_LOCKFREE_TRIES):
            f = self.fseq
            if f & 1:
                break
            try:
                out = read()
            except IndexError:
                continue
            if f == self.fseq:
                return out
        with self.latch.shared:
            return (latched or read)()

    def _rows_at(self, slots, s: int, keep_none: bool) -> list:
        rows = self.rows
        if slots.__class__ is range:
            heads = rows[slots.start:slots.stop]
            if heads and heads[0].__class__ is str and len(set(map(type, heads))) == 1:
                return self.columns.rows_of(slice(slots.start, slots.start + len(heads)), heads)
            slots = range(slots.start, slots.start + len(heads))
        else:
            heads = list(map(rows.__getitem__, slots))
            if heads and heads[0].__class__ is str and len(set(map(type, heads))) == 1:
                return self.columns.rows_of(np.array(slots, np.intp), heads)
        at = [i for i, h in enumerate(heads) if h.__class__ is str]
        if at:
            got = self.columns.rows_of(np.array([slots[i] for i in at], np.intp), [heads[i] for i in at])
            for i, r in zip(at, got):
                heads[i] = r
        out = [h if h.__class__ is tuple else (None if h is None else visible(h, s)) for h in heads]
        return out if keep_none else [r for r in out if r is not None]

    def count(self, s: int) -> int:
        """Rows visible to snapshot ``s`` (registered, or the watermark).  O(commits since s), no lock.

        ``list(live)`` copies the deque in one C call, during which no other
        thread runs, so a concurrent append (install) or popleft (prune) is
        either in the copy or not; prune never drops the newest entry at or
        below a registered snapshot.
        """
        live = list(self.live)
        for csn, n in reversed(live):
            if csn <= s:
                return n
        raise AssertionError(f"count at snapshot {s}, older than the oldest kept ({live[0][0]})")

    def settle(self) -> None:
        """Fold every index's recent-write layers into its main structure now (tests, benchmarks)."""
        with self.latch:
            for ix in self.indexes.values():
                if ix.ready:
                    ix.settle()
            self._publish_picture()

    def _fold_due(self, ix) -> None:
        """``ix``'s layers passed their budget: hand it to the maintainer (inline without one)."""
        m = self.maintainer
        if m is None:
            ix.settle()
        else:
            m.request(self, ix)

    def _new_index(self, pos: int):
        ix = new_index(pos, self.schema.fields[pos])
        ix.on_due = self._fold_due
        return ix

    def snapshot_columns(self, s: int, step: int = 32768) -> "ColumnSnapshot":
        """A copy of the rows visible to ``s`` (registered by the caller) as columns: what a
        checkpoint writes, taken in a fraction of the time it takes to write, so the
        snapshot that holds back the vacuum is released early.

        Slot by slot in slices of ``step``: the settled ones gathered from the columns
        under the shared latch (a few ms per slice: writers wait that long, then run
        between slices), the chained ones read as ``rows_at`` reads them.  Each slot
        is read once, and what it holds for ``s`` does not change while ``s`` is
        registered, so the slices add up to the snapshot.  Row order: by slice,
        settled rows first.  O(n) at C speed, plus O(chain) per chained slot."""
        cols = self.columns
        kp = self.key_pos
        nfields = len(self.schema.fields)
        parts = [[] for _ in range(nfields)]            # per field: arrays or lists, per piece
        nparts = [[] for _ in range(nfields)]           # per numeric field: bool arrays
        chained = []
        start = 0
        while True:
            with self.latch.shared:
                cols = self.columns
                rows = self.rows
                stop = min(start + step, len(rows))
                if start >= stop:
                    break
                state = cols.state[start:min(stop, cols.cap)]
                fro = np.flatnonzero(state == FROZEN)
                chain = np.flatnonzero(state != FROZEN)
                fro += start
                fl = fro.tolist()
                parts[kp].append(list(map(rows.__getitem__, fl)))
                for p, col in cols.cols.items():
                    parts[p].append(col[fro])
                    nparts[p].append(cols.nulls[p][fro])
                for p, lst in cols.strs.items():
                    parts[p].append(list(map(lst.__getitem__, fl)))
                cl = (chain + start).tolist()
                cl.extend(range(start + len(state), stop))     # past the columns' capacity
            if cl:
                chained.extend(self.rows_at(cl, s))
            start = stop
        if chained:
            for p in range(nfields):
                if p in cols.cols:
                    vals, nul = field_array(chained, p, cols.cols[p].dtype)
                    parts[p].append(vals)
                    nparts[p].append(nul if nul is not None else np.zeros(len(chained), bool))
                else:
                    parts[p].append(list(map(itemgetter(p), chained)))
        columns, nulls = [], []
        for p in range(nfields):
            if p in cols.cols:
                columns.append(np.concatenate(parts[p]) if parts[p] else cols.cols[p][:0].copy())
                nul = np.concatenate(nparts[p]) if nparts[p] else None
                nulls.append(nul if nul is not None and nul.any() else None)
            else:
                columns.append([v for part in parts[p] for v in part] if len(parts[p]) != 1
                               else parts[p][0])
                nulls.append(None)
        return ColumnSnapshot(self.schema, len(columns[kp]), columns, nulls)

    # -- writes --------------------------------------------------------------------
    def check_conflicts(self, keys, s: int):
        """``(key, csn)`` for the first of ``keys`` (a dict or set) whose newest version is
        newer than snapshot ``s``, with the CSN of the commit that made it; or None.

        O(min(len(keys), unfrozen slots)).

        First committer wins: a key created, updated or deleted by a commit the
        snapshot does not see is a write-write conflict.
        """
        rows = self.rows
        if len(self.unfrozen) < len(keys):
            # only a slot with a version chain can be newer than a snapshot; a
            # prune meanwhile only freezes (caller holds the commit lock: no installs)
            kp = self.key_pos
            with self.latch.shared:
                cand = list(self.unfrozen)
            for slot in cand:
                head = rows[slot]
                if head.__class__ is str or head is None:
                    continue
                if (head.xmin > s or s < head.xmax < INF) and head.values[kp] in keys:
                    return head.values[kp], _newer_csn(head)
            return None
        slots = self.slots
        for key in keys:
            slot = slots.get(key)
            if slot is None:
                continue
            head = rows[slot]
            if head.__class__ is str or head is None:
                continue
            if head.xmin > s or s < head.xmax < INF:
                return key, _newer_csn(head)
        return None

    def install(self, ws: dict, csn: int, tname: str) -> Installed:
        """Install a committed write set (key -> row tuple, or None to delete) as CSN ``csn``.

        Returns the WAL ops, the change records and the slots to prune later
        (``Installed``).  Caller holds the commit lock.  O(len(ws)); index
        entries are applied at once, batched per index (index.py).  The latch
        is taken per part of ``_PART`` rows, each row's heap change and index
        entries in one part, so readers wait for at most one part; the commit
        is not published yet, so no reader needs the parts done before its own.
        """
        ops: list = []
        changes: list = []
        touched: list = []
        put: list = []                  # the rows put, for one WAL record (log_puts)
        idx = list(self.indexes.values())
        n = len(ws)
        if n <= _PART or n >= _WHOLE:
            n_live = self._install_part(ws.items(), csn, tname, changes, ops, put, touched, idx)
        else:
            items = list(ws.items())
            n_live = 0
            for i in range(0, n, _PART):
                n_live += self._install_part(items[i:i + _PART], csn, tname, changes, ops, put,
                                             touched, idx)
        if put:
            log_puts(ops, tname, self.key_pos, put, self.wal_types)
        # no latch: count() copies the deque in one C call; installs are serialised
        # by the commit lock, and prune only pops from the other end
        live = self.live
        live.append((csn, live[-1][1] + n_live))
        return Installed(ops, changes, touched)

    def _install_part(self, items, csn: int, tname: str, changes: list, ops: list, put: list,
                      touched: list, idx: list) -> int:
        """``install`` of some of the write set, under the latch: appends to
        ``changes``, ``ops`` (deletes), ``put`` (the rows put) and ``touched``;
        the change in live rows."""
        slots = self.slots
        rows = self.rows
        fresh_keys = []
        fresh_vals = []
        add_vals = {ix.pos: [] for ix in idx}
        add_slots = {ix.pos: [] for ix in idx}
        cappend = changes.append
        oappend = ops.append
        tappend = touched.append
        simple = []
        simple_append = simple.append
        thawed = []
        pappend = put.append
        n_live = 0
        cols = self.columns
        with self.writing if len(items) < _WHOLE else self.writing_bulk:
            unfrozen = self.unfrozen      # under the latch: prune may replace it
            # the settled rows this part updates or deletes, read from the columns in one
            # gather per field (the latch keeps them whole)
            settled = {}
            at = list(map(slots.get, map(_first, items)))
            sl = [s for s in at if s is not None]
            if sl:
                sk = [(s, h) for s, h in zip(sl, map(rows.__getitem__, sl)) if h.__class__ is str]
                if sk:
                    ss, ks = zip(*sk)
                    curs = cols.rows_of(np.array(ss, np.intp), list(ks))
                    if len(ss) == len(at) >= _FEW:
                        vals = list(map(_second, items))
                        if None not in vals:
                            # every row an update of a settled row (a bulk update), at C speed
                            self._install_updates(at, vals, curs, list(map(_first, items)), csn,
                                                  tname, changes, put, touched, idx)
                            return 0
                    settled = dict(zip(ss, curs))
            for (key, values), slot in zip(items, at):
                if slot is None:
                    if values is not None:
                        fresh_keys.append(key)
                        fresh_vals.append(values)
                    continue
                head = rows[slot]
                tappend(slot)
                if head.__class__ is str:
                    cur = settled[slot]
                    old = Version(0, csn, cur, None)
                    thawed.append(slot)
                    unfrozen.add(slot)
                    rows[slot] = old
                else:
                    old = head
                    cur = head.values if head.xmax == INF else None
                    if cur is not None:
                        head.xmax = csn
                if values is None:
                    if cur is not None:
                        n_live -= 1
                        cappend((tname, "delete", key, cur, None))
                        oappend(("del", tname, key))
                    continue
                if cur is None:
                    n_live += 1
                rows[slot] = Version(csn, INF, values, old)
                if old.prev is None and cur is not None:
                    # the common case: one old version, whose values are ``cur``
                    simple_append((slot, values, cur))
                else:
                    for ix in idx:
                        p = ix.pos
                        nv = values[p]
                        if nv not in _chain_values(old, p):
                            add_vals[p].append(nv)
                            add_slots[p].append(slot)
                cappend((tname, "update" if cur is not None else "insert", key, cur, values))
                pappend(values)
            self.n_frozen -= len(thawed)
            if thawed:
                cols.thaw(thawed)
            if fresh_keys:
                n = len(fresh_keys)
                new_slots = self._alloc(n)
                cols.thaw(new_slots)
                deque(map(rows.__setitem__, new_slots,
                          map(Version, repeat(csn, n), repeat(INF, n), fresh_vals, repeat(None, n))), 0)
                slots.update(zip(fresh_keys, new_slots))
                unfrozen.update(new_slots)
                touched.extend(new_slots)
                if idx:
                    fields = list(zip(*fresh_vals))         # the new rows' columns, at C speed
                    slot_arr = None
                    for ix in idx:
                        p = ix.pos
                        if not simple and not add_vals[p] and ix.takes_slot_array and n >= _FEW:
                            # inserts only (an ingest batch): one slot array for every index
                            if slot_arr is None:
                                slot_arr = np.array(new_slots, np.int64)
                            add_vals[p], add_slots[p] = fields[p], slot_arr
                        else:
                            add_vals[p].extend(fields[p])
                            add_slots[p].extend(new_slots)
                changes.extend(zip(repeat(tname, n), repeat("insert", n), fresh_keys, repeat(None, n),
                                   fresh_vals))
                put.extend(fresh_vals)
            _index_writes(idx, simple, add_vals, add_slots, True)
        return n_live + len(fresh_keys)

    def _install_updates(self, at: list, vals: list, curs: list, keys: list, csn: int, tname: str,
                         changes: list, put: list, touched: list, idx: list) -> None:
        """``_install_part`` when every row updates a settled row: slot ``at[i]`` (settled,
        its row ``curs[i]``) gets ``vals[i]`` for ``keys[i]``.  The same versions,
        records and index entries as the loop there, made by ``map`` and ``zip``
        (two ``Version`` calls per row are all the Python).  Writer section held."""
        n = len(at)
        olds = list(map(Version, repeat(0, n), repeat(csn, n), curs, repeat(None, n)))
        deque(map(self.rows.__setitem__, at, map(Version, repeat(csn, n), repeat(INF, n), vals, olds)), 0)
        self.unfrozen.update(at)
        self.n_frozen -= n
        self.columns.thaw(at)
        touched.extend(at)
        changes.extend(zip(repeat(tname, n), repeat("update", n), keys, curs, vals))
        put.extend(vals)
        _index_writes(idx, list(zip(at, vals, curs)), {ix.pos: [] for ix in idx},
                      {ix.pos: [] for ix in idx}, True)

    def _alloc(self, n: int) -> list:
        """``n`` free slot numbers: recycled ones first, then new ones."""
        free = self.free
        out = []
        if free:
            take = min(n, len(free))
            out = free[-take:]
            del free[-take:]
            if self.keyscan is not None:
                self.keyscan.reused(out)     # these slots get other keys (keyscan.py)
        rest = n - len(out)
        if rest:
            base = len(self.rows)
            self.rows.extend([None] * rest)
            out.extend(range(base, base + rest))
        return out

    def prune(self, slot_list, h: int) -> None:
        """Drop versions invisible to every snapshot >= ``h``; freeze what is all-visible.

        Index entries of dropped versions are removed in one batch per index
        and part: the latch is taken per part of ``_PART`` slots, each slot's
        versions and entries changed in one part.
        """
        n = len(slot_list)
        if n <= _PART or n >= _WHOLE:
            self._prune_part(slot_list, h)
        else:
            for i in range(0, n, _PART):
                self._prune_part(slot_list[i:i + _PART], h)

    def _prune_part(self, slot_list, h: int) -> None:
        rows = self.rows
        simple = []
        simple_append = simple.append
        settled = []
        settled_rows = []
        settled_keys = []
        freed = []
        kp = self.key_pos
        with self.freezing:
            unfrozen = self.unfrozen
            # the index list under the latch: create_index may run while we wait for it
            idx = list(self.indexes.values())
            rm_vals = {ix.pos: [] for ix in idx}
            rm_slots = {ix.pos: [] for ix in idx}
            fast = _settle_all(rows, slot_list, h, kp, bool(idx)) if len(slot_list) >= _FEW else None
            if fast is not None:
                settled, settled_rows, settled_keys, simple = fast
                slot_list = ()
            for slot in slot_list:
                head = rows[slot]
                if head is None or head.__class__ is str:
                    continue
                newer = None
                v = head
                while v is not None and v.xmin > h:
                    newer = v
                    v = v.prev
                if v is None:
                    continue
                if v.xmax <= h:
                    dropped = v
                    if newer is None:
                        # the key is dead for everyone: free the slot
                        for ix in idx:
                            p = ix.pos
                            for val in _chain_values(v, p):
                                rm_vals[p].append(val)
                                rm_slots[p].append(slot)
                        del self.slots[v.values[self.key_pos]]
                        rows[slot] = None
                        unfrozen.discard(slot)
                        freed.append(slot)
                        continue
                    kept = rows[slot] = _cut(head, newer)
                else:
                    dropped = v.prev
                    if newer is None and v.xmax == INF:
                        kept = None             # settles below, into the columns
                        settled.append(slot)
                        settled_rows.append(v.values)
                        # the key string of the chain's oldest version: the key map's own
                        # when the row was settled before (an install made that version
                        # from ``rows[slot]``), so an update's copy of the key is not kept
                        o = v
                        while o.prev is not None:
                            o = o.prev
                        settled_keys.append(o.values[kp])
                    elif dropped is None:
                        continue                # nothing to drop, nothing to settle
                    else:
                        kept = rows[slot] = _cut(head, v)
                if dropped is None or not idx:
                    continue
                if head is v and dropped.prev is None:
                    # the common case: one dropped version under a single survivor
                    simple_append((slot, dropped.values, v.values))
                    continue
                for ix in idx:
                    p = ix.pos
                    keep = {v.values[p]} if kept is None else _chain_values(kept, p)
                    for val in _chain_values(dropped, p) - keep:
                        rm_vals[p].append(val)
                        rm_slots[p].append(slot)
            self.n_frozen += len(settled)
            cols = self.columns
            if settled:
                # values first, then the key in ``rows``: a settled slot's columns are whole
                cols.freeze(settled, settled_rows)
                deque(map(rows.__setitem__, settled, settled_keys), 0)
                unfrozen.difference_update(settled)
            if freed:
                cols.clear(freed)
            self.unfrozen = compacted(unfrozen)
            _index_writes(idx, simple, rm_vals, rm_slots, False)
            # entries of freed slots are gone (applied above): they can be reused at once
            self.free.extend(freed)
            live = self.live
            while len(live) > 1 and live[1][0] <= h:
                live.popleft()

    # -- bulk load, indexes -----------------------------------------------------------
    def load(self, rows_iter, keys: list | None = None, slots: KeyMap | None = None) -> None:
        """Replace the contents with settled rows (recovery: a checkpoint that holds
        rows, not columns, or the rows the log alone gave a table): slot i holds
        row i, whose key is ``keys[i]`` (default: the row's key field); ``slots``,
        if given, is ``KeyMap.from_keys(keys)`` already built (keys distinct).

        Indexes are emptied and rebuilt lazily, each on its first read
        (``ready_index``): recovery is ready for key access at once, and an
        index nobody queries costs nothing.
        """
        rows = rows_iter if rows_iter.__class__ is list else list(rows_iter)
        cols = Columns(self.schema)
        cols.load(rows)
        if keys is None:
            keys = list(map(itemgetter(self.key_pos), rows))
        self._adopt(keys, cols, slots)
        for ix in self.indexes.values():
            ix.retire()

    def _adopt(self, keys: list, cols: Columns, slots: KeyMap | None = None) -> None:
        """The heap of settled rows whose keys are ``keys`` (slot i: ``keys[i]``) and
        whose values are in ``cols``; ``slots``: ``KeyMap.from_keys(keys)`` if already
        built.  O(n) in C for the key map (ValueError if a key is given twice)."""
        n = len(keys)
        if slots is None:
            slots = KeyMap.from_keys(keys)  # before the section: a refusal changes nothing
        with self.freezing:
            self.rows = keys
            self.slots = slots
            self.free = []
            self.unfrozen = set()
            self.n_frozen = n
            self.live = deque([(0, n)])
            self.columns = cols
            _gate_changed()             # readers without the GIL drop views of the old ones

    def load_columns(self, n: int, columns: list, nulls: list, index_arrays: dict,
                     slots: KeyMap | None = None) -> None:
        """``load`` from whole columns (recovery from a checkpoint of format 2): slot i
        holds row i, for i < ``n``.

        ``columns[p]``: field ``p``'s values, a numpy array for a numeric field (0
        where null; bools as 0/1) or a list for a string field (None where null);
        ``nulls[p]``: a bool array (True: null) or None when no value is null;
        ``index_arrays``: field position -> the sorted entry array of the index on
        it over these rows (``ArrayIndex.export_main``).  The columns are taken
        over, not copied, and the key list becomes ``rows``: no row is built.  An
        index with an array adopts it as is, the others build on first read as
        after ``load``.  ``slots``: ``KeyMap.from_keys`` of the key column, if built
        already.  O(n) in C for the key map, O(1) else.
        """
        keys = columns[self.key_pos]
        cols = Columns.adopt(self.schema, n, columns, nulls)
        self._adopt(keys if keys.__class__ is list else list(keys), cols, slots)
        with self.latch:
            for pos, ix in self.indexes.items():
                main = index_arrays.get(pos)
                nul = nulls[pos]
                null_slots = nul.nonzero()[0].tolist() if nul is not None else ()
                if (main is None or not hasattr(ix, "adopt_main")
                        or len(main) + len(null_slots) != n or not ix.adopt_main(main, null_slots)):
                    ix.retire()

    def replay_put(self, key, values: tuple) -> None:
        """Recovery only (single-threaded, no reader, indexes retired or caught up by
        ``settle_replayed``): upsert a settled row.  The slot holds the tuple
        until ``settle_replayed`` writes it into the columns."""
        kp = self.key_pos
        slot = self.slots.get(key)
        if slot is None:
            slot = self.free.pop() if self.free else len(self.rows)
            if slot == len(self.rows):
                self.rows.append(values)
            else:
                self.rows[slot] = values
            self.slots[values[kp]] = slot         # the key string the row keeps
            self.n_frozen += 1
            self.live[-1] = (0, self.n_frozen)
        else:
            head = self.rows[slot]
            k = head if head.__class__ is str else head[kp]
            if values[kp] is not k:               # keep the key map's string, not a copy
                values = values[:kp] + (k,) + values[kp + 1:]
            self.rows[slot] = values

    def replay_del(self, key) -> None:
        """Recovery only: delete a settled row (``settle_replayed`` clears its columns)."""
        slot = self.slots.pop(key, None)
        if slot is not None:
            self.rows[slot] = None
            self.free.append(slot)
            self.n_frozen -= 1
            self.live[-1] = (0, self.n_frozen)

    def settle_replayed(self, slots) -> None:
        """End of recovery: the replayed rows go into the columns.  ``slots`` (a sorted
        numpy int array) are every slot a replayed commit put or freed (each holds a
        tuple or None).  Caller holds ``freezing``, or is the only thread.
        O(len(slots))."""
        rows = self.rows
        kp = self.key_pos
        cols = self.columns
        new = [rows[s] for s in slots.tolist()]
        live = [s for s, r in zip(slots.tolist(), new) if r is not None]
        got = [r for r in new if r is not None]
        cols.freeze(live, got)
        gone = slots[np.fromiter((r is None for r in new), bool, len(new))]
        cols.clear(gone[gone < cols.cap].tolist())
        for s, r in zip(live, got):
            rows[s] = r[kp]

    def add_retired_index(self, pos: int) -> None:
        """Declare an index that builds on its first read (recovery)."""
        if pos not in self.indexes:
            ix = self._new_index(pos)
            ix.retire()
            self.indexes[pos] = ix

    def ready_index(self, ix: Index) -> Index:
        """``ix`` ready for reading (built on first use after recovery).  Caller holds the latch
        exclusively (a reader calls ``build_indexes`` first and finds every index built)."""
        if not ix.ready:
            self._fill(ix)
        return ix

    def build_indexes(self, positions) -> None:
        """Build those of the indexes on ``positions`` that recovery left unbuilt (each on
        the first query that can use it after a reopen).  O(len(positions)) when they
        are built; else O(n log n) per index, under the exclusive latch."""
        indexes = self.indexes
        for p in positions:             # a plain loop: this runs once per query
            ix = indexes.get(p)
            if ix is not None and not ix.ready:
                break
        else:
            return
        with self.latch:
            for p in positions:
                ix = indexes.get(p)
                if ix is not None and not ix.ready:
                    self._fill(ix)
            self._publish_picture()

    def create_index(self, pos: int) -> bool:
        """Build an index on field ``pos``; False if it exists.  O(n log n)."""
        with self.latch:
            if pos in self.indexes:
                return False
            ix = self._new_index(pos)
            self._fill(ix)
            self.indexes[pos] = ix
            self._publish_picture()
            return True

    def drop_index(self, pos: int) -> bool:
        with self.latch:
            gone = self.indexes.pop(pos, None) is not None
            self._publish_picture()
            return gone

    def _fill(self, ix: Index) -> None:
        """Build ``ix`` from every retained version in the heap.  Caller holds the
        latch.  O(n log n), C-speed sort; settled values read from the columns."""
        pos = ix.pos
        rows = self.rows
        cols = self.columns
        n = len(rows)
        if pos in cols.cols and hasattr(ix, "build_arrays"):
            # straight from the column: no Python object per entry
            sl = (np.arange(n) if self.n_frozen == n
                  else np.flatnonzero(cols.state[:n] == FROZEN))
            ix.build_arrays(cols.cols[pos][sl], sl, cols.nulls[pos][sl])
        elif self.n_frozen == n:
            ix.build(rows if pos == self.key_pos else cols.values_of(pos, slice(0, n)),
                     list(range(n)))
        else:
            sl = np.flatnonzero(cols.state[:n] == FROZEN)
            slots = sl.tolist()
            ix.build(list(map(rows.__getitem__, slots)) if pos == self.key_pos
                     else cols.values_of(pos, sl), slots)
        for slot in self.unfrozen:
            for val in _chain_values(rows[slot], pos):
                ix.add(val, slot)

    def _publish_picture(self) -> None:
        """Publish the ``Picture`` of now (a writer section's end, an index built or
        dropped).  Caller holds the latch exclusively.  O(chained slots) at C speed;
        None past 65,536 of them (counts then take the latch)."""
        u = self.unfrozen
        if len(u) > 65536:
            self.picture = None
            return
        self.picture = Picture(list(map(self.rows.__getitem__, u)),
                               {pos: (ix, ix.view) for pos, ix in self.indexes.items()
                                if ix.lockfree and ix.ready})

    # -- invariants ----------------------------------------------------------------------
    def _check(self) -> None:
        """Assert every invariant; O(n).  Tests call it after every step."""
        with self.latch:
            kp = self.key_pos
            rows = self.rows
            n_frozen = 0
            unfrozen = set()
            for slot, head in enumerate(rows):
                if head is None:
                    continue
                if head.__class__ is str:
                    n_frozen += 1
                    key = head
                else:
                    unfrozen.add(slot)
                    key = head.values[kp]
                    v = head
                    while v is not None:
                        assert v.xmin < v.xmax, f"xmin >= xmax in slot {slot}"
                        assert v.values[kp] == key, f"chain of slot {slot} mixes keys"
                        if v is not head:
                            assert v.xmax != INF, f"two live versions in slot {slot}"
                        if v.prev is not None:
                            assert v.prev.xmin < v.xmin, f"chain of slot {slot} out of order"
                            assert v.prev.xmax <= v.xmin, f"overlapping versions in slot {slot}"
                        v = v.prev
                assert self.slots.get(key) == slot, f"key map disagrees for slot {slot}"
            self.slots._check()
            assert len(self.slots) == n_frozen + len(unfrozen), "key map has extra keys"
            assert n_frozen == self.n_frozen, "n_frozen is off"
            assert unfrozen == self.unfrozen, "unfrozen set is off"
            for s in self.free:
                assert rows[s] is None, f"free slot {s} is in use"
            assert self.live[-1][1] == len(self.slots) - sum(
                1 for slot in unfrozen if rows[slot].xmax != INF), "live row count is off"
            cols = self.columns
            cols._check(rows)
            for pos, ix in self.indexes.items():
                self.ready_index(ix)
                ix._check()
                want = set()
                nulls = set()
                for slot, head in enumerate(rows):
                    if head is None:
                        continue
                    vals = ({cols.row(slot, head)[pos]} if head.__class__ is str
                            else _chain_values(head, pos))
                    for val in vals:
                        if val is None:
                            nulls.add(slot)
                        else:
                            want.add(ix.entry(ix.key(val), slot))
                assert set(ix.entries()) == want, f"index on field {pos} differs from the rows"
                assert ix.nulls == nulls, f"null set of index {pos} differs from the rows"
