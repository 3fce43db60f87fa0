"""Plan choice and execution for queries.

A query reads top to bottom: ``execute`` (build the indexes the query can use,
run again if one was dropped) -> ``choose`` (the cheapest access path, as an
executor object) -> the executor's ``rows()``, ``count()`` or ``describe()``.
Each executor carries its store, query and access path; the generated
functions (query.py) it runs are compiled when it runs.

Access paths (``PlanKind``, one executor class each), chosen by exact
cardinality (a SortedIndex counts any range with two bisects, O(log n)):

- ``key`` (``KeyLookup``): ``=`` or ``in`` on the key field: hash lookups.
- ``index`` (``IndexRange``): the most selective index range (or set of
  ranges for ``in``); candidates are rechecked for visibility and the whole
  predicate.
- ``intersect`` (``Intersect``): ranges on two or more indexed fields (a
  lat/lon box): each index hands out the slots in its range as a numpy array,
  a bitmap keeps the slots every range holds, and only those are rechecked.
  Cost: the entries in the ranges at C speed, plus the expected matches (the
  smallest range times the other ranges' selectivities).
- ``walk`` (``Walk``): sort + limit with the first sort field indexed: walk
  that index in order, filter, stop after offset+limit rows (finishing the tie
  group).  Cost estimate: (offset+limit) * N / matches entries.  A settled
  row is tested on the columns and made a tuple only if returned (late
  materialization: the rows the terms reject or the offset skips cost none).
- ``scan`` (``Scan``): every row through one generated function.
- ``nulls`` (``Nulls``): ``null`` on an indexed field: the index's null slots.

Sorting what the path returns: a heap (``heapq.nsmallest``) when
offset+limit is small against the candidates, else a full sort.

``count()`` of a pure range on one indexed field is answered from the index
alone (index-only count), corrected for the slots that hold version chains
(the visibility map: every other slot is all-visible).

Readers take no latch on the common paths, so a reader never queues behind a
writer that waits for another reader (the convoy of docs/architecture.md,
"The live feed").  What makes that safe:

- an ArrayIndex (every numeric field) publishes its entries by one reference
  (``view``), and the columns their arrays (columns.py): a read sees a
  consistent version of each;
- every candidate is rechecked against the row its slot shows the snapshot:
  an entry may be stale (its version pruned since), so a chained slot counts
  only if its visible row carries the entry's key;
- a settled slot is trusted to carry the entry's key only when no writer
  section that freezes or frees slots (a prune) overlapped the read:
  ``store.fseq`` (heap.py) is read before a chunk and after its rows, and when
  it moved the chunk is filtered again with the key checked on every row
  (``_chunk``), a rare, bounded redo;
- a walk makes the rows of a tie group at its edges after the walk
  (``Walk._built``, through ``store.rows_at``): ``s`` is registered, so the
  row a slot shows ``s`` is still the one tested (a slot thawed since keeps it
  in its chain; no prune refreezes or frees it under another row meanwhile);
- an index-only count, whose correction for chained slots needs the index
  and the chains as of one moment, reads the store's ``Picture`` (heap.py):
  the chain heads and index views published at the end of the last writer
  section (chains are never cut in place).

A SortedIndex (str fields, wider ints) is still read under the shared latch
(``_guard``).  Point reads take no lock (see heap.py).
"""

from __future__ import annotations

import heapq
import threading
from contextlib import nullcontext
from enum import Enum
from itertools import compress, islice
from operator import eq, itemgetter
import weakref

import numpy as np

from ._heldops import intersect as held_intersect
from .columns import vector_terms
from .entries import EntryForm
from . import keyscan
from .index import Index
from .mvcc import visible
from .query import (compile_chain_fix, compile_entry_filter, compile_predicate, compile_row_maker,
                    compile_scan, sort_key_fn)

__all__ = ["execute"]

_RANGE_OPS = ("eq", "lt", "le", "gt", "ge", "range")
_SCAN_COST = 0.15     # per row, relative to one index candidate
_SLOT_COST = 0.02     # per entry handed out as a numpy slot array, relative to one candidate
_CHUNK = 1024
_PART = 1 << 16       # slots a column scan tests per step
_VEC_MIN = 256        # index entries from which a chunk is filtered on the columns
_SCAN_PART = 4096     # slots whose rows a scan with terms the columns do not answer reads at once
_PAGE_SLOTS = 4096    # the largest page Walk.page leaves slots in (the shim converts it whole)


# -- running a query -------------------------------------------------------------------

def execute(store, s: int, q, overlay: dict | None, mode: str):
    """Run ``q`` at snapshot ``s``; ``overlay`` is the transaction's own writes (key -> row|None).

    ``mode``: "rows", "count", "explain", "explain_count" or "page" (the Tcl
    search's rows: ``Plan.page``, settled rows of an ordered walk left as
    slots for the shim to read).  The result depends only on ``s``, so a run
    whose index went away is simply repeated.
    """
    wanted = q._positions()
    count_only = mode in ("count", "explain_count")
    skip = overlay if overlay else None
    while True:
        store.build_indexes(wanted)     # only the indexes this query can use
        try:
            plan = choose(store, q, count_only)
            if mode.startswith("explain"):
                # own writes (an overlay) rule out index-only counting: say what really runs
                return plan.describe(count_only and skip is None)
            if store.gate_queries and plan.kind is not KEY and not (
                    count_only and skip is None and plan.kind is INDEX and _index_only(plan, q)):
                store.latch.gate()      # a running writer section finishes first (latch.py)
            if count_only:
                return plan.count(s, skip)
            return plan.page(s, skip) if mode == "page" else plan.rows(s, skip)
        except _Stale:
            continue


class _Stale(Exception):
    """The plan's index was dropped (or dropped and re-created) since planning."""


_NO_LATCH = nullcontext()
_UNSET = object()       # a value not worked out yet


def _guard(store, ix):
    """The section a read of ``ix`` runs in: none for a lock-free index, else the
    table latch shared (``with _guard(store, ix):``)."""
    return _NO_LATCH if ix.lockfree else store.latch.shared


def _live(store, ix) -> Index:
    """``ix`` ready for reading, if it is still the table's index.

    A dropped index no longer follows prunes, so it keeps entries of versions
    that are gone (a frozen row would show up under an old value): plan again.
    """
    if store.indexes.get(ix.pos) is not ix or not ix.ready:
        raise _Stale
    return ix


# -- choosing ----------------------------------------------------------------------------

def _field_ranges(ix, terms):
    """Entry ranges [(lo_e, hi_e)] on ``ix`` implied by the terms on its field, or None.

    Intervals intersect; ``in`` gives one range per value.  Returns None when no
    term on that field bounds it.
    """
    p = ix.pos
    lo = None
    hi = None
    bounded = False
    ins = None
    key = ix.key
    for t in terms:
        if t.pos != p:
            continue
        op = t.op
        if op in _RANGE_OPS:
            bounded = True
            v = t.values
            if op == "eq":
                k = key(v[0])
                cand_lo, cand_hi = ix.lo_entry(k), ix.hi_entry(k)
            elif op == "lt":
                cand_lo, cand_hi = None, ix.lo_entry(key(v[0]))
            elif op == "le":
                cand_lo, cand_hi = None, ix.hi_entry(key(v[0]))
            elif op == "gt":
                cand_lo, cand_hi = ix.hi_entry(key(v[0])), None
            elif op == "ge":
                cand_lo, cand_hi = ix.lo_entry(key(v[0])), None
            else:
                cand_lo, cand_hi = ix.lo_entry(key(v[0])), ix.lo_entry(key(v[1]))
            if cand_lo is not None and (lo is None or cand_lo > lo):
                lo = cand_lo
            if cand_hi is not None and (hi is None or cand_hi < hi):
                hi = cand_hi
        elif op == "in":
            bounded = True
            ks = sorted({key(v) for v in t.values[0]})
            rs = [(ix.lo_entry(k), ix.hi_entry(k)) for k in ks]
            ins = rs if ins is None else [r for r in rs if r in ins]
    if not bounded:
        return None
    if ins is None:
        if lo is not None and hi is not None and lo >= hi:
            return []
        return [(lo, hi)]
    out = []
    for a, b in ins:
        a2 = a if lo is None or a > lo else lo
        b2 = b if hi is None or b < hi else hi
        if a2 < b2:
            out.append((a2, b2))
    return out


class PlanKind(str, Enum):
    """A plan's access path.  A str: equal to, hashing and formatting as its value."""

    KEY = "key"               # primary-key lookups
    INDEX = "index"           # one index's ranges
    INTERSECT = "intersect"   # the slots several indexes' ranges share
    WALK = "walk"             # an index walked in sort order until the limit
    SCAN = "scan"             # every slot
    NULLS = "nulls"           # one index's null slots

    __str__ = str.__str__
    __format__ = str.__format__


# The members as module globals: on Python 3.11 reading one costs a fifth of
# reading PlanKind.SCAN, and choose() compares the kind several times a query.
KEY, INDEX, INTERSECT, WALK, SCAN, NULLS = PlanKind


def _walk_sig(store, q) -> list | None:
    """What choose() reads that a run of ``q`` may find changed since the last,
    by identity: the store, its number of keys, and per field a term or the
    sort is on, its index (or None) and, an ArrayIndex being read lock-free,
    the index's published view (every write publishes a new one).  None when
    an index is latched or not ready (nothing remembered).  Ids, not the
    objects: a remembered query must not keep old index arrays alive.
    O(fields of the query)."""
    indexes = store.indexes
    sig = [id(store), len(store.slots)]
    for pos in q._positions():
        ix = indexes.get(pos)
        if ix is None:
            sig.append(None)
            continue
        if not ix.lockfree or not ix.ready:
            return None
        sig.append(id(ix))
        sig.append(id(ix.view))
    return sig


def choose(store, q, count_only: bool) -> Plan:
    """The cheapest access path for query ``q`` on ``store``, as its executor.

    A walk's choice is remembered on the query (``q._walk_memo``: the
    signature ``_walk_sig`` and the walk's arguments, its index by a weak
    reference, and its entry filters once compiled): run again with the same
    signature -- everything the choice read, unchanged -- the query walks
    again without weighing the paths or looking its filters up (a top-N
    search repeated by a Tcl loop).  The executor is new each run.  Ids
    may be reused once their objects are gone: the index is then checked to
    be the store's own (a dead or replaced one is a miss), and a view's id
    reused by a newer view only leaves the old estimate, which sizes the
    first chunk and nothing else."""
    memo = q._walk_memo
    if memo is not None and not count_only:
        sig = _walk_sig(store, q)
        est, ref, ranges, desc, filters = memo[1]
        ix = ref()
        if sig == memo[0] and ix is not None and store.indexes.get(ix.pos) is ix:
            w = Walk(store, q, est, ix, ranges, desc)
            w.filters = filters
            return w
    plan = _choose(store, q, count_only)
    if plan.kind is WALK:
        sig = _walk_sig(store, q)
        if sig is None:
            q._walk_memo = None
        else:
            plan.filters = {}
            q._walk_memo = (sig, (plan.est, weakref.ref(plan.ix), plan.ranges, plan.desc,
                                  plan.filters))
    elif not count_only:
        q._walk_memo = None
    return plan


def _choose(store, q, count_only: bool) -> Plan:
    schema = store.schema
    kp = schema.key_pos
    terms = q.terms
    n = len(store.slots)
    for t in terms:
        if t.pos == kp and t.op == "eq":
            return KeyLookup(store, q, 1, [t.values[0]])
    for t in terms:
        if t.pos == kp and t.op == "in":
            return KeyLookup(store, q, len(t.values[0]), sorted(t.values[0]))
    best = None
    ranged = []
    termed = {t.pos for t in terms}
    # an index of a field no term is on has nothing to offer here (the sort is below)
    indexes = [(pos, ix) for pos, ix in store.indexes.items() if pos in termed]
    latched = not all(ix.lockfree for _pos, ix in indexes)
    with store.latch.shared if latched else _NO_LATCH:
        for pos, ix in indexes:
            rs = _field_ranges(ix, terms)
            if rs is None:
                if any(t.pos == pos and t.op == "null" for t in terms):
                    est = len(_live(store, ix).nulls)
                    if best is None or est < best.est:
                        best = Nulls(store, q, est, ix)
                continue
            _live(store, ix)
            est = sum(ix.count_between(a, b) for a, b in rs)
            ranged.append((est, pos, ix, rs))
            if best is None or est < best.est:
                best = IndexRange(store, q, est, ix, rs)
    matches = best.est if best is not None else (n if not terms else n / 3)
    if len(ranged) > 1 and best.kind == INDEX and n:
        # ranges on several indexes: the matches are about the smallest range
        # times the others' selectivities; intersecting slot sets may beat one range
        ranged.sort(key=itemgetter(0, 1))
        out = float(ranged[0][0])
        for est, _pos, _ix, _rs in ranged[1:]:
            out *= est / n
        matches = out
        cost = sum(r[0] for r in ranged) * _SLOT_COST + out
        if cost < best.est and not (count_only and _index_only(best, q)):
            best = Intersect(store, q, cost, [(ix, rs, est) for est, _pos, ix, rs in ranged])
    sort = q.sort
    need = q.offset_n + q.limit_n
    if sort and q.limit_n and not count_only:
        pos, sign = sort[0]
        ix = store.indexes.get(pos)
        if ix is not None:
            desc = sign < 0 or (sign == 0 and q.descending)
            rs = _field_ranges(ix, terms)
            if rs is None or len(rs) == 1:
                walk_cost = min(n, need * n / max(matches, 1.0)) if n else 0
                other = best.est * 1.3 if best is not None else n * _SCAN_COST * 1.3
                if walk_cost <= other:
                    return Walk(store, q, walk_cost, ix, rs or [(None, None)], desc)
    if best is not None and (best.est <= n * _SCAN_COST
                             or (count_only and best.kind == INDEX and _index_only(best, q))):
        return best
    return Scan(store, q, n)


def _index_only(plan, q) -> bool:
    """Every term is a range (or ``in``) on the plan's index field: the index alone can count."""
    p = plan.ix.pos
    return all(t.pos == p and (t.op in _RANGE_OPS or t.op == "in") for t in q.terms)


# -- the executors ------------------------------------------------------------------------
#
# One object per run of a query: choose() makes one per candidate path (cost
# ``est``), the chosen one answers.  ``s`` is the snapshot; ``skip`` the
# transaction's own writes (key -> row|None) or None: a path leaves out the
# store's rows under those keys, and the overlay's rows that match are added.

class Plan:
    """An access path with the query it runs; base of the executors.

    rows(s, skip): the query's rows (the path's matches, then own writes),
    sorted, offset and limit applied.  count(s, skip): how many rows() would
    return.  describe(count_only): the one line of ``explain()``.
    """

    __slots__ = ("store", "q", "est", "pred")
    kind: PlanKind

    def __init__(self, store, q, est):
        self.store = store
        self.q = q
        self.est = est
        self.pred = None

    def predicate(self):
        """The query's terms as one generated function row -> bool; compiled once a run."""
        pred = self.pred
        if pred is None:
            pred = self.pred = compile_predicate(self.store.schema, self.q.terms)
        return pred

    def matches(self, s: int, skip, stop: int) -> list:
        """The visible rows at ``s`` on this path that satisfy the query, in no given order;
        ``stop`` > 0: a path may stop once it has that many (an unsorted limit)."""
        raise NotImplementedError

    def rows(self, s: int, skip) -> list:
        """The answer: matches, own writes, then sorted (a heap of offset+limit when that
        is under an eighth of them: O(m log k), else O(m log m)) and sliced."""
        q = self.q
        need = q.offset_n + q.limit_n if q.limit_n else 0
        rows = self.matches(s, skip, need if need and not q.sort else 0)
        if skip:
            rows.extend(self._own(skip))
        if q.sort:
            kf = sort_key_fn(self.store.schema, q.sort, q.descending)
            if need and need * 8 < len(rows):
                rows = heapq.nsmallest(need, rows, key=kf)
            else:
                rows.sort(key=kf)
        off = q.offset_n
        if need:
            return rows[off:need]
        return rows[off:] if off else rows

    def page(self, s: int, skip) -> tuple:
        """(rows(), None): the Tcl search's page (``Walk.page`` may leave slots in it)."""
        return self.rows(s, skip), None

    def count(self, s: int, skip) -> int:
        """How many rows rows() would return, without sorting.  O(matches)."""
        q = self.q
        n = len(self.matches(s, skip, _stop(q)))
        if skip:
            n += len(self._own(skip))
        return _clamp(n, q)

    def _own(self, skip) -> list:
        """The transaction's own rows (the overlay) that match.  O(own writes)."""
        pred = self.predicate()
        return [r for r in skip.values() if r is not None and pred(r)]

    def _then(self, count_only: bool) -> str:
        """How describe() ends: the sort after the path, if any."""
        q = self.q
        if q.sort and not count_only:
            return f", then heap top {q.offset_n + q.limit_n}" if q.limit_n else ", then sort"
        return ""


def _stop(q) -> int:
    """offset+limit of an unsorted limit (a path may stop after that many rows), else 0."""
    return q.offset_n + q.limit_n if q.limit_n and not q.sort else 0


def _clamp(c: int, q) -> int:
    """A count of matches after offset and limit."""
    c -= q.offset_n
    if c < 0:
        return 0
    return min(c, q.limit_n) if q.limit_n else c


class KeyLookup(Plan):
    """``key``: a hash lookup per key of an ``=`` or ``in`` term on the key field, each
    row rechecked against the whole predicate.  O(keys)."""

    __slots__ = ("keys",)
    kind = KEY

    def __init__(self, store, q, est, keys):
        Plan.__init__(self, store, q, est)
        self.keys = keys

    def matches(self, s, skip, stop):
        """The rows of the keys visible at ``s`` that satisfy the query (own writes' keys left out)."""
        pred = self.predicate()
        get = self.store.get
        rows = []
        for k in self.keys:
            if skip and k in skip:
                continue
            r = get(k, s)
            if r is not None and pred(r):
                rows.append(r)
        return rows

    def describe(self, count_only):
        n = len(self.keys)
        return f"key lookup ({n} key{'s' if n != 1 else ''})"


class Scan(Plan):
    """``scan``: every slot's row at ``s``, a part of ``_SCAN_PART`` slots at a time
    (``TableStore.rows_at``), through one generated loop (query.compile_scan)
    that checks the whole predicate.  O(slots), lock-free; an unsorted limit
    stops it early."""

    __slots__ = ()
    kind = SCAN

    def matches(self, s, skip, stop):
        """The visible rows at ``s`` that match, in slot order (at least ``stop`` if > 0)."""
        q = self.q
        if skip is None:
            vec, rest = vector_terms(self.store.schema, q.terms)
            kh = keyscan.hits(self.store, rest)
            if vec or kh:
                return self._column_rows(s, vec, kh.rest if kh else rest, stop, kh)
        scan = compile_scan(self.store.schema, q.terms, False, skip is not None, bool(stop))
        out = []
        for part in self._parts(s):
            out += scan(part, skip, stop - len(out) if stop else 0)
            if stop and len(out) >= stop:
                break
        return out

    def _parts(self, s):
        """The rows at ``s`` of every slot, a list per part of ``_SCAN_PART`` slots."""
        store = self.store
        a = 0
        while a < len(store.rows):
            b = a + _SCAN_PART
            yield store.rows_at(range(a, b), s)
            a = b

    def count(self, s, skip):
        """The count from the columns (numpy, no Python per settled row) when they
        answer every term, else from the generated counting loop.  O(slots)."""
        q = self.q
        if skip is None:
            vec, rest = vector_terms(self.store.schema, q.terms)
            kh = keyscan.hits(self.store, rest)
            if kh:
                rest = kh.rest
            if vec or kh:
                if rest:
                    return _clamp(len(self._column_rows(s, vec, rest, _stop(q), kh)), q)
                return _clamp(self._column_count(s, vec, kh), q)
        stop = _stop(q)
        scan = compile_scan(self.store.schema, q.terms, True, skip is not None, bool(stop))
        c = 0
        for part in self._parts(s):
            c += scan(part, skip, stop - c if stop else 0)
            if stop and c >= stop:
                break
        if skip:
            c += len(self._own(skip))
        return _clamp(c, q)

    def _each_part(self, fn) -> None:
        """``fn(cols, start, stop)`` per part of ``_PART`` slots, without the latch
        (columns.py says what a reader may meet), until ``fn`` returns True.  A
        slot is tested once, in one part: a settled row is what every registered
        snapshot sees, a chain is read at ``s``."""
        store = self.store
        start = 0
        while True:
            cols = store.columns
            n = cols.n
            if start >= n or fn(cols, start, min(start + _PART, n)):
                return
            start += _PART

    def _column_count(self, s, vec, kh=None) -> int:
        """Matches counted on the columns and ``kh`` (the key buffer's answer,
        keyscan.py); only chained slots in Python.  O(slots) in C."""
        pred = self.predicate()
        row_at = self.store.row_at
        c = [0]

        def part(cols, a, b):
            m, chain = cols.marks(vec, start=a, stop=b)
            if kh:
                kh.narrow(m, chain, a, b)
            n = int(np.count_nonzero(m))
            for slot in (np.flatnonzero(chain) + a).tolist():
                r = row_at(slot, s)
                if r is not None and pred(r):
                    n += 1
            c[0] += n

        self._each_part(part)
        return c[0]

    def _column_rows(self, s, vec, rest, stop, kh=None) -> list:
        """Matches in slot order: settled rows picked by the columns (``vec``) and
        the key buffer (``kh``), checked against ``rest`` in Python, chained slots
        read at ``s`` and checked against the whole predicate.  O(slots) in C +
        O(candidates) in Python."""
        pred = self.predicate()
        rest_pred = compile_predicate(self.store.schema, rest) if rest else None
        store = self.store
        out = []

        def part(cols, a, b):
            m, chain = cols.marks(vec, start=a, stop=b)
            if kh:
                kh.narrow(m, chain, a, b)
            _pick(store, s, chain, m, a, None, pred, rest_pred, out)
            return bool(stop) and len(out) >= stop

        self._each_part(part)
        return out

    def describe(self, count_only):
        vec, rest = vector_terms(self.store.schema, self.q.terms)
        keys, rest = keyscan.planned(self.store, rest)
        if vec or keys:
            how = " + ".join((["columns"] if vec else [])
                             + ([f"key buffer {'match' if len(keys) == 1 else f'{len(keys)} matches'}"] if keys else []))
            how += f" + {len(rest)} term{'s' if len(rest) != 1 else ''} compiled" if rest else ""
        else:
            how = "compiled predicate"
        return f"full scan ({self.est} rows, {how})" + self._then(count_only)


_marks = threading.local()


def _mark_buffer(n: int) -> np.ndarray:
    """This thread's mark buffer of at least ``n`` slots, uint8, all zeros (callers set
    marks and clear them again).  Why not a fresh ``np.zeros(n)`` per query: at 1M
    slots that is a new mapping (sysmem.map_big_arrays) that faults its pages in, 0.77 ms
    against 0.16 ms for the whole intersection of a lat/lon box on a kept one."""
    buf = getattr(_marks, "buf", None)
    if buf is None or len(buf) < n:
        buf = _marks.buf = np.zeros(n + (n >> 3), np.uint8)
    return buf


def _pick(store, s, chain, m, base, slots, pred, rest_pred, out) -> None:
    """Append to ``out``, in order, the rows of the positions that ``m`` (settled and
    matching on the columns) or ``chain`` (a version chain) mark.  Position i is
    slot ``slots[i]`` (a list), or ``base + i`` without ``slots``.  A settled
    row needs only ``rest_pred`` (None: nothing left to check); a chain's row at
    ``s`` needs ``pred``.  The rows are read by ``store.rows_at`` (one gather
    per field).

    No latch: a slot marked settled may have been thawed since (a writer's
    newer version, invisible at ``s``): its row at ``s`` is still the one the
    columns tested; one frozen since under another value is not the row the
    columns tested, but only a freeze does that, and a freeze overlapping
    ``marks`` is what ``fseq`` tells the caller of ``marks`` (planner's
    ``_chunk``; a scan's part reads each slot's state once, and a slot whose
    state changed since was CHAIN then: checked against ``pred``)."""
    if not chain.any():
        hits = np.flatnonzero(m)
        if not len(hits):
            return
        if slots is None:
            picked = store.rows_at((hits + base).tolist(), s)
        else:
            picked = store.rows_at(list(map(slots.__getitem__, hits.tolist())), s)
        out.extend(picked if rest_pred is None else filter(rest_pred, picked))
        return
    cand = np.flatnonzero(m | chain)
    settled = m[cand].tolist()
    at = (cand + base).tolist() if slots is None else list(map(slots.__getitem__, cand.tolist()))
    append = out.append
    for r, ok in zip(store.rows_at(at, s, keep_none=True), settled):
        if r is None:
            continue
        if ok:
            if rest_pred is None or rest_pred(r):
                append(r)
        elif pred(r):
            append(r)


class Intersect(Plan):
    """``intersect``: the slots that the ranges on several indexed fields all hold, then
    each rechecked against the whole predicate (a stale entry's slot is then
    judged by its row at ``s``, and each slot is kept once).  ``parts``: [(ix,
    ranges, entries)], fewest entries first.  O(entries in the ranges) in
    numpy, then O(slots kept) in Python."""

    __slots__ = ("parts",)
    kind = INTERSECT

    def __init__(self, store, q, est, parts):
        Plan.__init__(self, store, q, est)
        self.parts = parts

    def _slots(self) -> np.ndarray:
        """Slots (ascending, unique, int64, read-only) that every part's ranges hold (a
        superset: each is rechecked).  The slot sets meet in C (_heldops.c): as
        numpy calls (a mark buffer, a take, a unique) they gave the GIL up
        several times a query, and each time a feed took it the query waited up
        to a switch interval to go on.  O(slots in the ranges)."""
        store = self.store
        parts = []
        for ix, rs, _est in self.parts:
            with _guard(store, ix):
                _live(store, ix)
                parts.append([ix.slots_between(a, b) for a, b in rs])
        return np.frombuffer(held_intersect(parts, _mark_buffer(len(store.rows))), np.int64)

    def matches(self, s, skip, stop):
        """Visible rows at ``s`` among the intersected slots that satisfy the query.

        The rows are read lock-free like a scan: the versions ``s`` sees stay
        while ``s`` is registered, and a slot freed and reused meanwhile holds
        only versions newer than ``s``.
        """
        store = self.store
        pred = self.predicate()
        if skip is None:
            vec, rest = vector_terms(store.schema, self.q.terms)
            if vec:
                return self._column_rows(s, vec, rest)
        kp = store.key_pos
        return [r for r in store.rows_at(self._slots().tolist(), s)
                if (skip is None or r[kp] not in skip) and pred(r)]

    def _marks(self, vec):
        """(slots, settled and matching on the columns, chained) of the intersection."""
        slots = self._slots()
        return (slots,) + self.store.columns.marks(vec, slots)

    def _column_rows(self, s, vec, rest) -> list:
        """matches() with the settled candidates tested on the columns, in slot order."""
        store = self.store
        pred = self.predicate()
        rest_pred = compile_predicate(store.schema, rest) if rest else None
        out = []
        slots, m, chain = self._marks(vec)
        _pick(store, s, chain, m, 0, slots.tolist(), pred, rest_pred, out)
        return out

    def count(self, s, skip):
        """From the columns when they answer every term: the settled candidates counted
        in numpy, chained ones in Python.  Else matches() counted."""
        q = self.q
        store = self.store
        if skip is None:
            vec, rest = vector_terms(store.schema, q.terms)
            if vec and not rest:
                pred = self.predicate()
                slots, m, chain = self._marks(vec)
                c = int(np.count_nonzero(m))
                for r in store.rows_at(slots[chain].tolist(), s):
                    if pred(r):
                        c += 1
                return _clamp(c, q)
        return Plan.count(self, s, skip)

    def describe(self, count_only):
        names = self.store.schema.names
        parts = " & ".join(f"{names[ix.pos]} ({est} entries)" for ix, _rs, est in self.parts)
        return f"index intersect {parts}, ~{int(self.est)} rows rechecked" + self._then(count_only)


class _OnIndex(Plan):
    """A path through one index ``ix``."""

    __slots__ = ("ix", "colv")

    def __init__(self, store, q, est, ix):
        Plan.__init__(self, store, q, est)
        self.ix = ix
        self.colv = _UNSET

    def _null_rows(self, s, skip) -> list:
        """Visible rows at ``s`` with a null in the index's field that satisfy the query.

        The null set is copied in one C call (a superset of the slots whose row
        at ``s`` is null: a writer adds a slot before publishing its commit and
        removes it only once no retained version is null); the filtering reads
        slots lock-free like a scan (a slot freed and reused meanwhile holds
        versions newer than ``s``).  O(null slots).
        """
        store = self.store
        ix = self.ix
        pred = self.predicate()
        p = ix.pos
        kp = store.key_pos
        with _guard(store, ix):
            slots = list(_live(store, ix).nulls)
        return [r for r in store.rows_at(slots, s)
                if r[p] is None and (skip is None or r[kp] not in skip) and pred(r)]

    def _columns(self, skip):
        """(terms the columns answer, a predicate of the rest or None) when chunks of
        this index can be filtered on the columns, else None; worked out on the
        first chunk that is big enough (``_filter``), once a run."""
        colv = self.colv
        if colv is _UNSET:
            colv = self.colv = self._split_terms(skip)
        return colv

    def _split_terms(self, skip):
        if skip is not None or self.ix.entry_form is not EntryForm.PAIRS:
            return None
        store = self.store
        vec, rest = vector_terms(store.schema, self.q.terms)
        if not vec:
            return None
        return vec, (compile_predicate(store.schema, rest) if rest else None)

    def _chunk(self, lo, hi, after, size, reverse, filt, s, skip, out, ks=None, blo=0, bhi=0):
        """The next chunk of ``size`` entries of the index in [lo, hi) after ``after``,
        its matches appended to ``out`` (``_filter``; ``ks`` not None: a walk's,
        see ``Walk._walk``); returns the chunk.

        A lock-free index is read without the latch; when ``store.fseq`` shows that a
        writer section that freezes or frees slots (a prune) overlapped the read
        (the entries, the column values tested, the rows made), the entries may
        be older than the rows (a slot frozen since under another value), so the
        chunk is read and filtered again (``store.settled_read``: a few
        lock-free tries, then under the shared latch with every row's key
        checked, the generated strict filter).  Installs do not matter here
        (heap._Writing)."""
        store = self.store
        ix = self.ix
        if not ix.lockfree:
            with store.latch.shared:
                _live(store, ix)
                chunk = ix.chunk(lo, hi, after, size, reverse=reverse)
                if chunk:
                    self._filter(filt, chunk, s, skip, out, ks, blo, bhi)
                return chunk
        n0 = len(out)
        k0 = 0 if ks is None else len(ks)
        last = []           # the chunk read by the latest try

        def undo():         # a try starts from what the caller had
            del out[n0:]
            if ks is not None:
                del ks[k0:]

        def read():
            undo()
            _live(store, ix)
            chunk = ix.chunk(lo, hi, after, size, reverse=reverse)
            last[:] = [chunk]
            if chunk:
                self._filter(filt, chunk, s, skip, out, ks, blo, bhi)
            return chunk

        def strict():       # under the shared latch: every row's key checked
            undo()
            chunk = last[0] if last else _live(store, ix).chunk(lo, hi, after, size, reverse=reverse)
            if chunk:
                views = store.columns.arrays[3]
                if ks is None:
                    filt.get(True)(chunk, store.rows, s, visible, ix.key, skip, out, views)
                else:
                    filt.get(True)(chunk, store.rows, s, visible, ix.key, skip, out, views,
                                   ks, blo, bhi)
            return chunk

        return store.settled_read(read, strict)

    def _filter(self, filt, chunk, s, skip, out, ks=None, blo=0, bhi=0) -> None:
        """Append the matches among ``chunk``'s entries visible at ``s``, trusting a
        settled slot to carry its entry's key (``_chunk`` says when it may).

        A chunk of ``_VEC_MIN`` entries or more is tested on the columns (when
        ``_columns`` says it can be): settled slots in numpy, then ``rest`` on the rows
        that passed; a chained slot's row at ``s`` counts only if it carries
        the entry's key (else the entry is another version's) and matches.
        Smaller chunks go through the generated filter (``filt``, an
        ``_EntryFilters``).  ``ks`` None: the matches' rows are appended;
        else a walk's: see ``_walk_matches``.
        """
        store = self.store
        if len(chunk) < _VEC_MIN or (colv := self._columns(skip)) is None:
            views = store.columns.arrays[3]
            f = filt.get(False)
            if ks is None:
                f(chunk, store.rows, s, visible, self.ix.key, skip, out, views)
            else:
                f(chunk, store.rows, s, visible, self.ix.key, skip, out, views, ks, blo, bhi)
            return
        vec, rest_pred = colv
        slot_list = chunk.slots
        slots = chunk.slot_array
        if slots is None:
            slots = np.array(slot_list, np.intp)
        m, chain = store.columns.marks(vec, slots)
        if ks is not None:
            self._walk_matches(filt, chunk, m, chain, rest_pred, s, out, ks, blo, bhi)
            return
        if not chain.any():
            _pick(store, s, chain, m, 0, slot_list, None, rest_pred, out)
            return
        pred = self.predicate()
        p = self.ix.pos
        key = self.ix.key
        keys = chunk.keys
        append = out.append
        cand = np.flatnonzero(m | chain)
        settled = m[cand].tolist()
        at = cand.tolist()
        # a slot thawed since it was marked settled: its row at s is still the columns'
        for i, ok, r in zip(at, settled, store.rows_at([slot_list[i] for i in at], s, keep_none=True)):
            if r is None:
                continue
            if ok:
                if rest_pred is None or rest_pred(r):
                    append(r)
            elif r[p] is not None and key(r[p]) == keys[i] and pred(r):
                append(r)

    def _walk_matches(self, filt, chunk, m, chain, rest_pred, s, out, ks, blo, bhi) -> None:
        """``_filter``'s column test for a walk: append the matches of ``chunk`` (``m``:
        settled and matching on the columns, ``chain``: a version chain) in
        entry order, and each one's entry key to ``ks``, as the generated walk
        filter does (query.compile_entry_filter): a settled match goes in as
        its slot (an int), the rows at positions [blo, bhi) of ``out`` are made
        here (inside ``_chunk``'s check), the others only if the walk needs them
        (``_built``).  A chained slot's row at ``s`` must carry the entry's key
        and match; with terms the columns do not answer (``rest_pred``) a
        settled row is read and tested too.  O(entries) in numpy, then
        O(matches) in Python."""
        store = self.store
        slot_list = chunk.slots
        keys = chunk.keys
        n0 = len(out)
        if chain.any():
            cand = np.flatnonzero(m | chain).tolist()
            settled = m[cand].tolist()
        else:
            cand = m.nonzero()[0].tolist()
            settled = None
        if settled is None and rest_pred is None:
            if len(cand) > 1:
                pick = itemgetter(*cand)
                out.extend(pick(slot_list))
                ks.extend(pick(keys))
            elif cand:
                out.append(slot_list[cand[0]])
                ks.append(keys[cand[0]])
        else:
            pred = self.predicate()
            p = self.ix.pos
            key = self.ix.key
            if settled is None:
                settled = [True] * len(cand)
            read = cand if rest_pred is not None else [i for i, ok in zip(cand, settled) if not ok]
            # a slot thawed since it was marked settled: its row at s is still the columns'
            got = iter(store.rows_at([slot_list[i] for i in read], s, keep_none=True))
            append = out.append
            kappend = ks.append
            for i, ok in zip(cand, settled):
                if ok and rest_pred is None:
                    append(slot_list[i])
                else:
                    r = next(got)
                    if r is None:
                        continue
                    if ok:
                        if not rest_pred(r):
                            continue
                    elif r[p] is None or key(r[p]) != keys[i] or not pred(r):
                        continue
                    append(r)
                kappend(keys[i])
        a0 = max(blo, n0)
        b0 = min(bhi, len(out))
        if a0 < b0:
            views = store.columns.arrays[3]
            out[a0:b0] = filt.maker()(out[a0:b0], store.rows, views, visible, s)

    def _entry_filter(self, skip, walk: bool = False):
        """The generated filters of index entries for this run (an ``_EntryFilters``:
        ``get(strict)`` gives the one for the columns' current null state).
        A frozen slot is trusted to have exactly one entry (``_chunk`` filters
        again strictly when a writer overlapped); a chained slot may have
        several, so the filter checks that the entry's key equals the visible
        version's key.  One call per chunk, no call per entry."""
        return _EntryFilters(self.store, self.q.terms, self.ix, skip is not None, walk)


class _EntryFilters:
    """The generated entry filters (query.compile_entry_filter) and row maker of one
    query run on one index, compiled on first use for each null state of the
    columns: which numeric fields may hold a null (``Columns.nullable``, read
    in ``_chunk``'s check, after ``fseq``: a freeze that adds a null moves
    ``fseq``, so the state read matches the values read).  O(1) once compiled."""

    __slots__ = ("store", "terms", "ix", "skip_keys", "walk", "numeric", "made")

    def __init__(self, store, terms, ix, skip_keys: bool, walk: bool):
        self.store = store
        self.terms = terms
        self.ix = ix
        self.skip_keys = skip_keys
        self.walk = walk
        self.numeric = frozenset(store.columns.dtypes)
        self.made = {}

    def get(self, strict: bool):
        """The filter (``strict``: the one that checks every settled row's key)."""
        nk = self._nullable()
        f = self.made.get((strict, nk))
        if f is None:
            ix = self.ix
            f = self.made[strict, nk] = compile_entry_filter(
                self.store.schema, self.terms, ix.pos, ix.entry_form, self.skip_keys,
                strict=strict, walk=self.walk, nullable=nk)
        return f

    def maker(self):
        """The row maker (query.compile_row_maker) that reads rows as the filters do."""
        nk = self._nullable()
        f = self.made.get(("rows", nk))
        if f is None:
            f = self.made["rows", nk] = compile_row_maker(self.store.schema, nk)
        return f

    def _nullable(self) -> frozenset:
        nul = self.store.columns.nullable
        return self.numeric.intersection(nul) if nul else _NO_NULLS


_NO_NULLS = frozenset()


class Nulls(_OnIndex):
    """``nulls``: a ``null`` term on an indexed field: the index's null slots, each
    rechecked.  O(null slots), lock-free after copying the slot set."""

    __slots__ = ()
    kind = NULLS

    def matches(self, s, skip, stop):
        """The rows with a null in the field, visible at ``s``, that satisfy the query."""
        return self._null_rows(s, skip)

    def describe(self, count_only):
        return f"index nulls {self.store.schema.names[self.ix.pos]} (~{self.est} rows)" + self._then(count_only)


class IndexRange(_OnIndex):
    """``index``: the entries in one index's ``ranges`` (one per ``in`` value), read in
    chunks (``_chunk``) and rechecked by the generated entry filter.
    rows(): O(entries in the ranges), fewer with an unsorted limit.
    count(): of a pure range on the field, from the index alone: O(log n + chained slots)."""

    __slots__ = ("ranges",)
    kind = INDEX

    def __init__(self, store, q, est, ix, ranges):
        _OnIndex.__init__(self, store, q, est, ix)
        self.ranges = ranges

    def matches(self, s, skip, stop):
        """Visible rows behind the entries of the ranges that match, in index order
        (at least ``stop`` of them, if > 0)."""
        filt = self._entry_filter(skip)
        out = []
        for lo, hi in self.ranges:
            after = None
            while True:
                chunk = self._chunk(lo, hi, after, _CHUNK, False, filt, s, skip, out)
                if not chunk:
                    break
                if stop and len(out) >= stop:
                    return out
                if len(chunk) < _CHUNK:
                    break
                after = chunk[-1]
        return out

    def count(self, s, skip):
        """From the index alone when every term is on its field and there are no own
        writes (O(log n + chained slots)); else the matches counted (O(entries))."""
        q = self.q
        if skip is None and _index_only(self, q):
            c = self._index_only_count(s)
            if c is not None:
                return _clamp(c, q)
        return Plan.count(self, s, skip)

    def _index_only_count(self, s):
        """Exact count of visible rows in the ranges from the index alone, or None.

        The entries in the ranges count each frozen slot once; a slot with a version
        chain has an entry per distinct value of its chain, so for each such slot
        the chain's values in the ranges are taken off and its visible row put
        back if it matches.  Every term is on the index's field, so the
        predicate of a version's row says whether that version's value is in
        the ranges.  O(log n + chained slots).

        The entries and the chains must be read as of one moment: a lock-free
        index is counted on the store's ``Picture`` (heap.py: the chain heads and
        the index views at the end of the last writer section; no latch, nothing
        to validate), a latched one under the shared latch.
        """
        store = self.store
        ix = self.ix
        if ix.lockfree:
            pic = store.picture
            if pic is not None:
                got = pic.views.get(ix.pos)
                if got is not None and got[0] is ix:
                    _live(store, ix)
                    return self._count_now(s, ix, got[1], pic.heads)
        with store.latch.shared:
            _live(store, ix)
            rows = store.rows
            unfrozen = store.unfrozen
            return self._count_now(s, ix, None, [rows[slot] for slot in unfrozen]
                                   if len(unfrozen) <= 65536 else None)

    def _count_now(self, s, ix, view, heads):
        """``_index_only_count``'s arithmetic over ``view`` (None: the index's own) and the
        chain ``heads`` of the chained slots (None: too many, no count)."""
        if heads is None:
            return None
        q = self.q
        c = sum(ix.count_between(a, b, view) for a, b in self.ranges)
        return c + compile_chain_fix(self.store.schema, q.terms)(heads, s, ix.pos, visible, self.predicate())

    def describe(self, count_only):
        only = count_only and _index_only(self, self.q)
        name = self.store.schema.names[self.ix.pos]
        return f"index {'only count ' if only else 'range '}{name} ({self.est} entries)" + self._then(count_only)


class Walk(_OnIndex):
    """``walk``: sort + limit with the first sort field indexed: the index walked in sort
    order (``desc``: backwards) within its one range until offset+limit rows and
    their tie group.  Only for rows() (choose() never walks for a count).
    O(entries walked), not O(matches); nulls (last ascending, first descending)
    cost O(null slots) when the walk reaches them."""

    __slots__ = ("ranges", "desc", "filters")
    kind = WALK

    def __init__(self, store, q, est, ix, ranges, desc):
        _OnIndex.__init__(self, store, q, est, ix)
        self.ranges = ranges
        self.desc = desc
        self.filters = None     # choose(): a remembered walk's compiled entry filters (_EntryFilters.made)

    def rows(self, s, skip):
        """The rows at positions [offset, offset+limit) of the sort order; own writes
        are merged by a sort of the walked rows (all offset+limit) and theirs."""
        q = self.q
        need = q.offset_n + q.limit_n
        if not skip:
            return self._walk(s, None, need, q.offset_n)
        kf = self._sort_key()
        rows = self._walk(s, skip, need, 0)
        rows.extend(self._own(skip))
        if need * 8 < len(rows):
            rows = heapq.nsmallest(need, rows, key=kf)
        else:
            rows.sort(key=kf)
        return rows[q.offset_n:need]

    def page(self, s, skip):
        """rows() for the Tcl search (c_shim/search.c): (items, check), where a
        settled row of the answer may be left as its slot (an int; chained and
        null rows are tuples) and check is (store, fseq, s), ``fseq`` read after
        the walk while ``s`` is still registered (None: a page of rows(), as
        below).  No row tuple is made for a settled match: the shim reads it from
        the columns once the snapshot is released, which is sound while
        ``store.fseq`` still equals ``fseq``: no writer section froze or freed
        a slot since ``s`` was registered, so a slot still settled holds the
        row tested, and a slot thawed since keeps that row in its chain
        (``row_at(slot, s)``).  When ``fseq`` moved, the shim runs the search
        again (search.py).  Own writes, or a page over ``_PAGE_SLOTS`` rows
        (the shim converts a page whole): rows()."""
        q = self.q
        need = q.offset_n + q.limit_n
        if skip or need > _PAGE_SLOTS:
            return self.rows(s, skip), None
        store = self.store
        items = self._walk(s, None, need, q.offset_n, build=False)
        f = store.fseq
        if f & 1:
            # a freeze is running (a prune, in the background): the shim would find
            # fseq moved and run the search again; the rows are made now instead
            return self._built(items, s), None
        return items, (store, f, s)

    def _sort_key(self):
        """The query's sort key function (query.sort_key_fn); only some walks need it."""
        q = self.q
        return sort_key_fn(self.store.schema, q.sort, q.descending)

    def _walk(self, s, skip, need, off, build: bool = True) -> list:
        """The rows at positions [off, need) of the sort order: the index
        walked until ``need`` matches and their tie group (``build`` False:
        settled rows left as their slots, see ``page``, but for the rows of
        tie groups, which are sorted: ``_ties_ordered``).

        Late materialization: the walk collects a settled match as its slot
        (and every match's entry key, in ``ks``): only the rows it returns are
        made (the generated filter and ``_walk_matches`` make those at
        positions [off, need) as they go), and those of the tie groups that
        straddle ``off`` or ``need``, which are ordered by the remaining sort
        keys, then the key (when the walked field is the only sort key, walk
        order already is that order unless two rows tie).  Equal values have
        equal entry keys (a float's -0.0 and 0.0 too), so the groups are runs
        of equal keys.  A rejected or skipped (offset) row costs no tuple.
        """
        store = self.store
        ix = self.ix
        desc = self.desc
        lo, hi = self.ranges[0]
        out = []
        if desc and lo is None:
            nulls = self._null_rows(s, skip)
            if need * 8 < len(nulls):
                nulls = heapq.nsmallest(need, nulls, key=self._sort_key())
            else:
                nulls.sort(key=self._sort_key())
            if len(nulls) >= need:
                return nulls[off:need]
            out = nulls
        nnull = len(out)
        ks = []                 # the entry key of each walked match: out[nnull + i]'s is ks[i]
        entry_key = ix.entry_key
        filt = self._entry_filter(skip, walk=True)
        if skip is None and self.filters is not None:
            # a remembered walk: the filters its last runs compiled (same schema,
            # field and terms; plain functions that hold no index or store)
            filt.made = self.filters
        blo = off if build else need     # the filter makes the rows at [blo, need)
        after = None
        size = max(16, min(_CHUNK, int(self.est * 1.2) + 8))   # the expected walk, and a margin
        stop = None             # index in out where the matches past the boundary group start
        while stop is None:
            chunk = self._chunk(lo, hi, after, size, desc, filt, s, skip, out, ks, blo, need)
            m = len(out)
            if m >= need:
                # the boundary row's tie group must be whole
                bk = ks[need - 1 - nnull]
                j = need
                while j < m and ks[j - nnull] == bk:
                    j += 1
                if j < m or not chunk or entry_key(chunk[-1]) != bk:
                    stop = j
                    break
            if len(chunk) < size:
                break
            after = chunk[-1]
            size = min(size * 4, 16384)
        if stop is None:
            stop = len(out)
            if not desc and hi is None:
                # the index ran out: the null rows follow
                rows = self._built(out, s)
                rows.extend(self._null_rows(s, skip))
                rows.sort(key=self._sort_key())
                return rows[off:need]
        a = max(off, nnull)
        if a >= stop:
            return out[off:min(need, stop)]     # null rows only (tuples)
        ka = a - nnull
        while ka and ks[ka - 1] == ks[ka]:
            ka -= 1                             # to the start of the group at ``a``
        base = nnull + ka
        seg = out[base:stop]
        kseg = ks[ka:stop - nnull]
        # i where kseg[i] == kseg[i + 1] (a tie), found at C speed: ties are few
        ties = list(compress(range(len(kseg) - 1), map(eq, kseg, islice(kseg, 1, None))))
        if not build:
            if ties:
                seg = self._ties_ordered(seg, ties, s)
        else:
            if base < a or stop > need:
                # tie groups straddle off or need: their rows outside [off, need) are needed
                seg = self._built(seg, s)
            if ties:
                if len(self.q.sort) == 1:
                    # ties broken by key ascending: two stable C-speed sorts (by key, then by value)
                    seg.sort(key=itemgetter(store.key_pos))
                    seg.sort(key=itemgetter(ix.pos), reverse=desc)
                else:
                    seg.sort(key=self._sort_key())
        first = out[off:nnull] if off < nnull else []
        return first + seg[a - base:need - base] if first else seg[a - base:need - base]

    def _ties_ordered(self, seg: list, ties: list, s) -> list:
        """``seg`` (walk order, settled rows as slots) with each group of equal
        entry keys (``ties``: ascending, each i where seg[i] and seg[i + 1] have
        equal entry keys) put in the order of the remaining sort keys, then the
        key: a group's items are made rows when there are remaining sort keys,
        and stay as they are when the key alone orders them (a page keeps its
        slots: ``page``).  Walk order already is the order of the walked field,
        so ordering each group is ordering ``seg``.  O(len) plus the groups'
        rows."""
        groups = []             # (start, end) of each group of two or more
        for i in ties:
            if groups and groups[-1][1] == i + 1:
                groups[-1][1] = i + 2
            else:
                groups.append([i, i + 2])
        out = list(seg)
        if len(self.q.sort) == 1:
            # ordered by key alone: a settled slot's key is in ``rows`` (its head, or
            # its chain's if a write thawed it since: a slot keeps its key until it
            # is freed, and a freed slot moves fseq, so the page is redone), so the
            # items stay slots and no row is read
            rows = self.store.rows
            kp = self.store.key_pos

            def kf(x):
                if x.__class__ is not int:
                    return x[kp]
                h = rows[x]
                return h if h.__class__ is str else "" if h is None else h.values[kp]
        else:
            at = [p for a, b in groups for p in range(a, b)]
            for p, r in zip(at, self._built([seg[p] for p in at], s)):     # one read for all
                out[p] = r
            kf = self._sort_key()
        for a, b in groups:
            out[a:b] = sorted(out[a:b], key=kf)
        return out

    def _built(self, items: list, s) -> list:
        """``items`` (walked matches: rows, or settled slots as ints) as rows: each slot
        replaced by its row at ``s``, read by ``store.rows_at``.  That row is the
        one the walk tested: ``s`` is registered, so a slot's row at ``s`` stays
        (a thawed slot's chain holds it; no prune frees or refreezes it under
        another value meanwhile).  O(len) plus O(slots * fields) in C."""
        at = [x for x in items if x.__class__ is int]
        if not at:
            return items
        got = iter(self.store.rows_at(at, s, keep_none=True))
        return [next(got) if x.__class__ is int else x for x in items]

    def describe(self, count_only):
        q = self.q
        d = "desc" if self.desc else "asc"
        return (f"ordered walk {self.store.schema.names[self.ix.pos]} {d} (~{int(self.est)} entries), "
                f"stop at {q.offset_n + q.limit_n} rows")
