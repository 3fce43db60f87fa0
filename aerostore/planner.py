"""Plan choice and execution for queries.

Access paths, chosen by exact cardinality (a SortedIndex counts any range with
two bisects, O(log n)):

- ``key``: ``=`` or ``in`` on the key field: hash lookups.
- ``index``: the most selective index range (or set of ranges for ``in``);
  candidates are rechecked for visibility and the whole predicate.
- ``intersect``: ranges on two or more indexed fields (a lat/lon box): each
  index hands out the slots in its range as a numpy array, a bitmap keeps the
  slots every range holds, and only those are rechecked.  Cost: the entries in
  the ranges at C speed, plus the expected matches (the smallest range times
  the other ranges' selectivities).
- ``walk``: sort + limit with the first sort field indexed: walk that index in
  order, filter, stop after offset+limit rows (finishing the tie group).  Cost
  estimate: (offset+limit) * N / matches entries.
- ``scan``: every row through one generated function.

Sorting what the path returns: a heap (``heapq.nsmallest``) when
offset+limit is small against the candidates, else a full sort.

``count()`` of a pure range on one indexed field is answered from the index
alone (index-only count), corrected for the slots that hold version chains
(the visibility map: every other slot is all-visible).

Index reads happen in chunks under the table latch, shared with other readers
(microseconds each);
scans and point reads take no lock (see heap.py).
"""

from __future__ import annotations

import heapq
from enum import Enum
from operator import itemgetter

import numpy as np

from .index import SortedIndex
from .mvcc import visible
from .query import compile_entry_filter, compile_predicate, compile_scan, sort_key_fn

__all__ = ["execute"]

_RANGE_OPS = ("eq", "lt", "le", "gt", "ge", "range")
_SCAN_COST = 0.15     # per row, relative to one index candidate
_SLOT_COST = 0.02     # per entry handed out as a numpy slot array, relative to one candidate
_CHUNK = 1024


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
# reading PlanKind.SCAN, and execute() compares the kind several times a query.
KEY, INDEX, INTERSECT, WALK, SCAN, NULLS = PlanKind


class Plan:
    __slots__ = ("kind", "ix", "ranges", "keys", "est", "desc", "parts")

    def __init__(self, kind, est, ix=None, ranges=None, keys=None, desc=False, parts=None):
        self.kind = kind
        self.est = est
        self.ix = ix
        self.ranges = ranges
        self.keys = keys
        self.desc = desc
        self.parts = parts      # intersect: [(ix, ranges, entries)], fewest entries first


def choose(store, q, count_only: bool) -> Plan:
    """The cheapest access path for query ``q`` on ``store``."""
    schema = store.schema
    kp = schema.key_pos
    terms = q.terms
    n = len(store.slots)
    for t in terms:
        if t.pos == kp and t.op == "eq":
            return Plan(KEY, 1, keys=[t.values[0]])
    for t in terms:
        if t.pos == kp and t.op == "in":
            return Plan(KEY, len(t.values[0]), keys=sorted(t.values[0]))
    best = None
    ranged = []
    with store.latch.shared:
        for pos, ix in store.indexes.items():
            rs = _field_ranges(ix, terms)
            if rs is None:
                if any(t.pos == pos and t.op == "null" for t in terms):
                    est = len(_live(store, ix).nulls)
                    if best is None or est < best.est:
                        best = Plan(NULLS, est, ix=ix)
                continue
            _live(store, ix)
            est = sum(ix.count_between(a, b) for a, b in rs)
            ranged.append((est, pos, ix, rs))
            if best is None or est < best.est:
                best = Plan(INDEX, est, ix=ix, ranges=rs)
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
            best = Plan(INTERSECT, cost, parts=[(ix, rs, est) for est, _pos, ix, rs in ranged])
    sort = q.sort
    need = q.offset_n + q.limit_n
    if sort and q.limit_n and not count_only:
        pos, sign = sort[0]
        ix = store.indexes.get(pos)
        if ix is not None:
            desc = sign < 0 or (sign == 0 and q.descending)
            with store.latch.shared:
                rs = _field_ranges(ix, terms)
            if rs is None or len(rs) == 1:
                walk_cost = min(n, need * n / max(matches, 1.0)) if n else 0
                other = best.est * 1.3 if best is not None else n * _SCAN_COST * 1.3
                if walk_cost <= other:
                    return Plan(WALK, walk_cost, ix=ix, ranges=rs or [(None, None)], desc=desc)
    if best is not None and (best.est <= n * _SCAN_COST
                             or (count_only and best.kind == INDEX and _index_only(best, q))):
        return best
    return Plan(SCAN, n)


def _intersect_slots(store, plan):
    """Slots (a Python list, ascending) that every part's ranges hold; latch held.  O(entries) in numpy."""
    cand = None
    for ix, rs, _est in plan.parts:
        _live(store, ix)
        arrs = [ix.slots_between(a, b) for a, b in rs]
        slots = arrs[0] if len(arrs) == 1 else np.concatenate(arrs)
        if cand is None:
            cand = slots
            continue
        mark = np.zeros(len(store.rows), np.bool_)
        mark[slots] = True
        cand = cand[mark[cand]]
        if not len(cand):
            break
    return np.unique(cand).tolist()


def _intersect_rows(store, plan, s, pred, skip) -> list:
    """Visible rows at ``s`` among the intersected slots that satisfy ``pred``.

    The slot set is taken under the latch; the rows are read lock-free like a
    scan: the versions ``s`` sees stay while ``s`` is registered, and a slot
    freed and reused meanwhile holds only versions newer than ``s``.
    """
    with store.latch.shared:
        slots = _intersect_slots(store, plan)
    rows = store.rows
    kp = store.key_pos
    out = []
    append = out.append
    for slot in slots:
        head = rows[slot]
        if head is None:
            continue
        r = head if head.__class__ is tuple else visible(head, s)
        if r is not None and (skip is None or r[kp] not in skip) and pred(r):
            append(r)
    return out


def describe(store, plan: Plan, q, count_only: bool) -> str:
    names = store.schema.names
    if plan.kind == KEY:
        return f"key lookup ({len(plan.keys)} key{'s' if len(plan.keys) != 1 else ''})"
    if plan.kind == INTERSECT:
        parts = " & ".join(f"{names[ix.pos]} ({est} entries)" for ix, _rs, est in plan.parts)
        s = f"index intersect {parts}, ~{int(plan.est)} rows rechecked"
        if q.sort and not count_only:
            s += f", then heap top {q.offset_n + q.limit_n}" if q.limit_n else ", then sort"
        return s
    if plan.kind == SCAN:
        s = f"full scan ({plan.est} rows, compiled predicate)"
    elif plan.kind == NULLS:
        s = f"index nulls {names[plan.ix.pos]} (~{plan.est} rows)"
    elif plan.kind == INDEX:
        only = count_only and _index_only(plan, q)
        s = f"index {'only count ' if only else 'range '}{names[plan.ix.pos]} ({plan.est} entries)"
    else:
        d = "desc" if plan.desc else "asc"
        return (f"ordered walk {names[plan.ix.pos]} {d} (~{int(plan.est)} entries), "
                f"stop at {q.offset_n + q.limit_n} rows")
    if q.sort and not count_only:
        need = q.offset_n + q.limit_n
        s += f", then heap top {need}" if q.limit_n else ", then sort"
    return s


def _index_only(plan, q) -> bool:
    p = plan.ix.pos
    return all(t.pos == p and (t.op in _RANGE_OPS or t.op == "in") for t in q.terms)


class _Stale(Exception):
    """The plan's index was dropped (or dropped and re-created) since planning."""


def _live(store, ix) -> SortedIndex:
    """``ix`` ready for reading, if it is still the table's index; caller holds the latch.

    A dropped index no longer follows prunes, so it keeps entries of versions
    that are gone (a frozen row would show up under an old value): plan again.
    """
    if store.indexes.get(ix.pos) is not ix or not ix.ready:
        raise _Stale
    return ix


def execute(store, s: int, q, overlay: dict | None, mode: str):
    """Run ``q`` at snapshot ``s``; ``overlay`` is the transaction's own writes (key -> row|None).

    The result depends only on ``s``, so a run whose index went away is simply repeated.
    """
    wanted = {t.pos for t in q.terms}
    wanted.update(pos for pos, _sign in q.sort)
    while True:
        store.build_indexes(wanted)     # only the indexes this query can use
        try:
            return _execute(store, s, q, overlay, mode)
        except _Stale:
            continue


def _execute(store, s: int, q, overlay: dict | None, mode: str):
    schema = store.schema
    count_only = mode in ("count", "explain_count")
    plan = choose(store, q, count_only)
    if mode.startswith("explain"):
        # own writes (an overlay) rule out index-only counting: say what really runs
        return describe(store, plan, q, count_only and not overlay)
    skip = overlay if overlay else None
    terms = q.terms
    need = q.offset_n + q.limit_n if q.limit_n else 0

    if count_only and not skip and plan.kind == INDEX and _index_only(plan, q):
        c = _index_only_count(store, plan, s, compile_predicate(schema, terms))
        if c is not None:
            return _clamp(c, q)
    stop = need if need and not q.sort else 0     # an unsorted limit: stop early
    if count_only and plan.kind == SCAN:
        c = compile_scan(schema, terms, True, skip is not None, bool(stop))(store.rows, s, visible, skip, stop)
        if skip:
            pred = compile_predicate(schema, terms)
            c += sum(1 for r in overlay.values() if r is not None and pred(r))
        return _clamp(c, q)

    kf = sort_key_fn(schema, q.sort, q.descending) if q.sort else None
    if plan.kind == WALK:
        rows = _walk(store, plan, s, compile_predicate(schema, terms),
                     _entry_filter(schema, terms, plan.ix, skip), skip, need, kf, len(q.sort) == 1)
    elif plan.kind == SCAN:
        rows = compile_scan(schema, terms, False, skip is not None, bool(stop))(store.rows, s, visible, skip, stop)
    elif plan.kind == KEY:
        pred = compile_predicate(schema, terms)
        rows = []
        for k in plan.keys:
            if skip and k in skip:
                continue
            r = store.get(k, s)
            if r is not None and pred(r):
                rows.append(r)
    elif plan.kind == NULLS:
        rows = _null_rows(store, plan.ix, s, compile_predicate(schema, terms), skip)
    elif plan.kind == INTERSECT:
        rows = _intersect_rows(store, plan, s, compile_predicate(schema, terms), skip)
    else:
        rows = _index_rows(store, plan, s, _entry_filter(schema, terms, plan.ix, skip), skip, stop)
    if skip:
        pred = compile_predicate(schema, terms)
        rows.extend(r for r in overlay.values() if r is not None and pred(r))
    if count_only:
        return _clamp(len(rows), q)
    if kf is not None and (plan.kind != WALK or skip):
        if need and need * 8 < len(rows):
            rows = heapq.nsmallest(need, rows, key=kf)
        else:
            rows.sort(key=kf)
    off = q.offset_n
    if need:
        return rows[off:need]
    return rows[off:] if off else rows


def _clamp(c: int, q) -> int:
    c -= q.offset_n
    if c < 0:
        return 0
    return min(c, q.limit_n) if q.limit_n else c


def _index_rows(store, plan, s, filt, skip, stop: int = 0) -> list:
    """Visible rows behind the entries of ``plan.ranges`` that pass ``filt`` (at least ``stop``, if given)."""
    ix = plan.ix
    out = []
    for lo, hi in plan.ranges:
        after = None
        while True:
            with store.latch.shared:
                _live(store, ix)
                chunk = ix.chunk(lo, hi, after, _CHUNK)
                if not chunk:
                    break
                _filter_entries(store, ix, chunk, s, filt, skip, out)
            if stop and len(out) >= stop:
                return out
            if len(chunk) < _CHUNK:
                break
            after = chunk[-1]
    return out


def _filter_entries(store, ix, chunk, s, filt, skip, out):
    """Append to ``out`` the rows of ``chunk`` visible at ``s`` that match (see compile_entry_filter).

    A frozen slot has exactly one entry (the latch is held, the index is
    settled); a chained slot may have several, so the generated filter checks
    that the entry's key equals the visible version's key.
    """
    filt(chunk, store.rows, s, visible, ix.key, skip, out)


def _null_rows(store, ix, s, pred, skip) -> list:
    """Visible rows with a null in ``ix``'s field that satisfy ``pred``.

    Only the copy of the slot set takes the latch: the filtering reads slots
    lock-free like a scan (a slot freed and reused meanwhile holds versions
    newer than ``s``), so writers never wait for a pass over many nulls.
    """
    p = ix.pos
    kp = store.key_pos
    with store.latch.shared:
        slots = list(_live(store, ix).nulls)
    rows = store.rows
    out = []
    for slot in slots:
        head = rows[slot]
        if head is None:
            continue
        r = head if head.__class__ is tuple else visible(head, s)
        if r is not None and r[p] is None and (skip is None or r[kp] not in skip) and pred(r):
            out.append(r)
    return out


def _entry_filter(schema, terms, ix, skip):
    return compile_entry_filter(schema, terms, ix.pos, ix.entry_form, skip is not None)


def _walk(store, plan, s, pred, filt, skip, need, kf, sole_key=False) -> list:
    """Ordered index walk: rows in index order until ``need`` rows and their tie group.

    Nulls sort last ascending, first descending.  The result is sorted by ``kf``
    (ties within the boundary group by the remaining keys, then the key); with
    ``sole_key`` (the walked field is the only sort key) walk order already is
    that order unless two rows tie.
    O(entries walked), not O(matches).
    """
    ix = plan.ix
    desc = plan.desc
    lo, hi = plan.ranges[0]
    out = []
    if desc and lo is None:
        nulls = _null_rows(store, ix, s, pred, skip)
        if need * 8 < len(nulls):
            nulls = heapq.nsmallest(need, nulls, key=kf)
        else:
            nulls.sort(key=kf)
        out.extend(nulls)
        if len(out) >= need:
            return out[:need]
    nnull = len(out)
    p = ix.pos
    entry_key = ix.entry_key
    after = None
    size = max(16, min(_CHUNK, int(plan.est * 1.2) + 8))   # the expected walk, and a margin
    stop = None             # index in out where the rows past the boundary group start
    while stop is None:
        with store.latch.shared:
            _live(store, ix)
            chunk = ix.chunk(lo, hi, after, size, reverse=desc)
            if chunk:
                _filter_entries(store, ix, chunk, s, filt, skip, out)
        if len(out) >= need:
            # the boundary row's tie group (equal values have equal keys) must be whole
            bv = out[need - 1][p]
            j = need
            m = len(out)
            while j < m and out[j][p] == bv:
                j += 1
            if j < m or not chunk or entry_key(chunk[-1]) != ix.key(bv):
                stop = j
                break
        if len(chunk) < size:
            break
        after = chunk[-1]
        size = min(size * 4, 16384)
    if stop is not None:
        del out[stop:]
    elif not desc and hi is None:
        out.extend(_null_rows(store, ix, s, pred, skip))
        out.sort(key=kf)
        return out
    if sole_key:
        # walk order is the sort order but for ties, broken by key ascending:
        # if any, two stable C-speed sorts (by key, then by value) order them
        walked = out[nnull:]
        vals = [r[p] for r in walked]
        if len(set(vals)) == len(vals):
            return out
        walked.sort(key=itemgetter(store.key_pos))
        walked.sort(key=itemgetter(p), reverse=desc)
        out[nnull:] = walked
        return out
    out.sort(key=kf)
    return out


def _index_only_count(store, plan, s, pred):
    """Exact count of visible rows in the plan's ranges from the index alone, or None.

    The entries in the ranges count each frozen slot once; a slot with a version
    chain has an entry per distinct value of its chain, so for each such slot
    the chain's values in the ranges are taken off and its visible row put
    back if it matches.  Every term is on the index's field, so ``pred`` of a
    version's row says whether that version's value is in the ranges.
    O(log n + chained slots).
    """
    ix = plan.ix
    rs = plan.ranges
    p = ix.pos
    with store.latch.shared:
        _live(store, ix)
        unfrozen = store.unfrozen
        if len(unfrozen) > 65536:
            return None
        c = sum(ix.count_between(a, b) for a, b in rs)
        if not unfrozen:
            return c
        rows = store.rows
        for slot in unfrozen:
            head = rows[slot]
            v = head
            hit = None
            while v is not None:
                vals = v.values
                if pred(vals):
                    val = vals[p]
                    if hit is None:
                        hit = [val]
                        c -= 1
                    elif val not in hit:
                        hit.append(val)
                        c -= 1
                v = v.prev
            r = visible(head, s)
            if r is not None and pred(r):
                c += 1
        return c
        rows = store.rows
        key = ix.key
        entry = ix.entry
        for slot in unfrozen:
            head = rows[slot]
            v = head
            seen = set()
            while v is not None:
                val = v.values[p]
                if val is not None and val not in seen:
                    seen.add(val)
                    e = entry(key(val), slot)
                    for a, b in rs:
                        if (a is None or e >= a) and (b is None or e < b):
                            c -= 1
                            break
                v = v.prev
            r = visible(head, s)
            if r is not None and pred(r):
                c += 1
        return c
