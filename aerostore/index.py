"""SortedIndex: one sorted secondary index over one field of one table.

Entries are ordered by (field value, slot).  For int, bool and float fields an
entry is one packed Python int, ``key << 32 | slot``: cheaper to store and
compare than a tuple (NOTES-perf: 545k/s adds against 151k/s for tuples).  The
float key is the IEEE-754 bit pattern made order-preserving (negative numbers
mirrored), so ranges and sorts on floats are integer bisects.  For str fields an
entry is the tuple ``(value, slot)``.  Null values are not entries: their slots
sit in ``nulls`` (nulls sort after every value).

Index semantics are a set per slot: a slot has one entry for each distinct value
among the versions its chain retains, so readers recheck every candidate against
the version their snapshot sees (the entry's key must equal that version's key).

Writes are lazy: ``add``/``remove`` append the entry to a log (O(1), no
per-row sorted-list work, no hashing); ``settle()`` folds the logs into the
SortedList before any read, per item when they are small, otherwise by one
C-speed merge sort of the whole index (amortised O(1) per write).  This is how
bulk ingest and updates avoid the per-row SortedList floors (150k adds/s,
56k remove+add/s).

This class stores the entries in a SortedList; it serves str fields and ints
wider than 64 bits.  Numeric fields get an ArrayIndex (arrayindex.py): the same
entries, logs and reads, stored in a numpy array (8-16 bytes an entry instead
of 36-48).  ``arrayindex.new_index`` picks the class for a field.

Not thread-safe by itself: the owning TableStore's latch guards every call.
"""

from __future__ import annotations

from array import array
from collections import Counter
from itertools import chain
from struct import Struct
from sys import getsizeof

from sortedcontainers import SortedList

__all__ = ["SortedIndex", "SLOT_BITS", "SLOT_MASK"]

SLOT_BITS = 32
SLOT_MASK = (1 << SLOT_BITS) - 1
_M63 = (1 << 63) - 1
_PACK_D = Struct("<d").pack
_UNPACK_Q = Struct("<q").unpack
_STR_SLOT_END = 1 << SLOT_BITS  # larger than any slot
# Logged removals are folded in once they outnumber the list (and this floor), so
# a steady update workload with no index reads keeps the logs bounded; amortised O(1).
_LOG_FLOOR = 1024


def float_key(x: float) -> int:
    """Order-preserving int for a finite float (0.0 and -0.0 share a key)."""
    i = _UNPACK_Q(_PACK_D(x))[0]
    return i if i >= 0 else -(i & _M63)


def float_keys(xs) -> list:
    """``float_key`` over a sequence of floats, at C speed for the bit casts."""
    q = array("q")
    q.frombytes(array("d", xs).tobytes())
    return [i if i >= 0 else -(i & _M63) for i in q]


def compacted(s: set) -> set:
    """``s``, or a copy of it when its hash table is far bigger than its contents.

    A Python set never shrinks its table when elements go, and iterating or
    copying it costs the table: after a bulk write the visibility map (and a
    null set) would keep charging every later reader for the bulk.  O(1) when
    nothing is to be done (``sys.getsizeof`` reports the table).
    """
    if getsizeof(s) > 256 * len(s) + 4096:   # a healthy set takes at most ~130 bytes an element
        return set(s)
    return s


def net_writes(adds: list, rms: list):
    """(net adds: list, net removals: set or ()) of two entry logs.

    The callers keep set semantics, so the logged writes of one entry
    alternate and its net effect is (#adds - #removes) in {-1, 0, +1}: an
    entry in both logs once cancels out.  O(n) hashing; Counter only when an
    entry was written more than twice.
    """
    if not rms:
        return adds, ()
    A = set(adds)
    R = set(rms)
    if len(A) == len(adds) and len(R) == len(rms):
        both = A & R
        if both:
            A -= both
            R -= both
        return list(A), R
    net = Counter(adds)
    net.subtract(rms)
    return [e for e, d in net.items() if d > 0], {e for e, d in net.items() if d < 0}


class SortedIndex:
    """Sorted (value, slot) entries of one field; see the module docstring."""

    def __init__(self, pos: int, kind: str):
        self.pos = pos
        self.kind = kind
        self.packed = kind != "str"
        self.entry_form = "packed" if self.packed else "tuple"   # what chunk() returns
        self.sl = SortedList()
        self.adds: list = []   # logged writes, folded in by settle()
        self.rms: list = []
        self.nulls: set = set()
        self.ready = True      # False: not built yet (after recovery); writes are not logged

    # -- keys and entries ----------------------------------------------------
    def key(self, value):
        """The sort key of a non-null field value."""
        if self.kind == "float":
            return float_key(value)
        if self.kind == "bool":
            return int(value)
        return value

    def keys(self, values: list) -> list:
        """Keys of many non-null values."""
        if self.kind == "float":
            if len(values) < 16:
                return [float_key(v) for v in values]
            return float_keys(values)
        if self.kind == "bool":
            return [int(v) for v in values]
        return values

    def entry(self, key, slot: int):
        return (key << SLOT_BITS) | slot if self.packed else (key, slot)

    def lo_entry(self, key):
        """Smallest possible entry with this key."""
        return key << SLOT_BITS if self.packed else (key,)

    def hi_entry(self, key):
        """Smallest possible entry with a key greater than this one."""
        return (key + 1) << SLOT_BITS if self.packed else (key, _STR_SLOT_END)

    def entry_key(self, e):
        return e >> SLOT_BITS if self.packed else e[0]

    # -- writes (lazy) ---------------------------------------------------------
    def add(self, value, slot: int) -> None:
        """Record that ``slot`` has a version with ``value``.  O(1)."""
        if not self.ready:
            return
        if value is None:
            self.nulls.add(slot)
        else:
            self.adds.append(self.entry(self.key(value), slot))

    def remove(self, value, slot: int) -> None:
        """Record that no retained version of ``slot`` has ``value`` any more.  O(1)."""
        if not self.ready:
            return
        if value is None:
            self.nulls.discard(slot)
        else:
            self.rms.append(self.entry(self.key(value), slot))

    def _entries(self, values: list, slots: list) -> list:
        """Entries for (value, slot) pairs of non-null values."""
        ks = self.keys(values)
        if self.packed:
            return [(k << SLOT_BITS) | s for k, s in zip(ks, slots)]
        return list(zip(ks, slots))

    def _split_nulls(self, values: list, slots: list):
        """(non-null values, their slots, slots with null)."""
        if None not in values:
            return values, slots, ()
        nulls = [s for v, s in zip(values, slots) if v is None]
        pairs = [(v, s) for v, s in zip(values, slots) if v is not None]
        return [p[0] for p in pairs], [p[1] for p in pairs], nulls

    def add_many(self, values: list, slots: list) -> None:
        """``add`` for many pairs; keys computed in bulk.  O(n), no hashing."""
        if not self.ready:
            return
        values, slots, nulls = self._split_nulls(values, slots)
        if nulls:
            self.nulls.update(nulls)
        if values:
            self._log_adds(values, slots)

    def remove_many(self, values: list, slots: list) -> None:
        """``remove`` for many pairs."""
        if not self.ready:
            return
        values, slots, nulls = self._split_nulls(values, slots)
        if nulls:
            self.nulls.difference_update(nulls)
            self.nulls = compacted(self.nulls)
        if values:
            self._log_rms(values, slots)
            n = self._logged_rms()
            if n > _LOG_FLOOR and n > len(self):
                self.settle()

    # the write logs; ArrayIndex keeps big batches as arrays instead
    def _log_adds(self, values: list, slots: list) -> None:
        self.adds.extend(self._entries(values, slots))

    def _log_rms(self, values: list, slots: list) -> None:
        self.rms.extend(self._entries(values, slots))

    def _logged_rms(self) -> int:
        return len(self.rms)

    @property
    def pending(self) -> int:
        """Number of logged writes not yet in the sorted list."""
        return len(self.adds) + len(self.rms)

    def settle(self) -> None:
        """Fold the logged writes into the sorted list.  Amortised O(1) per write.

        The callers keep set semantics (an entry is added only when absent and
        removed only when present), so the writes of one entry alternate and
        their net effect is (#adds - #removes) in {-1, 0, +1}.
        """
        adds = self.adds
        rms = self.rms
        if not adds and not rms:
            return
        self.adds = []
        self.rms = []
        adds, R = net_writes(adds, rms)
        sl = self.sl
        if (len(adds) + len(R)) * 16 < len(sl):
            for e in R:
                sl.remove(e)
            for e in adds:
                sl.add(e)
            return
        if R:
            vals = [e for e in chain.from_iterable(sl._lists) if e not in R]
        else:
            vals = list(chain.from_iterable(sl._lists))
        vals.extend(adds)
        vals.sort()
        self._reload(vals)

    def _reload(self, vals: list) -> None:
        """Replace the contents with the sorted list ``vals`` (sortedcontainers 2.x layout)."""
        sl = self.sl
        sl.clear()
        load = sl._load
        lists = sl._lists
        lists.extend(vals[i:i + load] for i in range(0, len(vals), load))
        sl._maxes.extend(sub[-1] for sub in lists)
        sl._len = len(vals)

    def retire(self) -> None:
        """Forget every entry; the owner rebuilds from the heap before the next read."""
        self.sl.clear()
        self.adds = []
        self.rms = []
        self.nulls = set()
        self.ready = False

    def build(self, values: list, slots: list) -> None:
        """Replace everything with entries for (values[i], slots[i]).  O(n log n) at C speed."""
        self.sl.clear()
        self.adds = []
        self.rms = []
        values, slots, nulls = self._split_nulls(values, slots)
        self.nulls = set(nulls)
        vals = self._entries(values, slots)
        vals.sort()
        self._reload(vals)
        self.ready = True

    # -- reads (call settle() first) ---------------------------------------------
    def __len__(self):
        return len(self.sl)

    def entries(self) -> list:
        """Every entry, sorted.  O(n)."""
        return list(self.sl)

    def count_between(self, lo_e, hi_e) -> int:
        """Entries e with lo_e <= e < hi_e (None = unbounded).  O(log n)."""
        sl = self.sl
        i = sl.bisect_left(lo_e) if lo_e is not None else 0
        j = sl.bisect_left(hi_e) if hi_e is not None else len(sl)
        return j - i if j > i else 0

    def chunk(self, lo_e, hi_e, after, n: int, reverse: bool = False) -> list:
        """Up to ``n`` entries in [lo_e, hi_e), strictly after ``after`` in walk order.

        Walking by value (not by position) makes a walk whose latch is released
        between chunks immune to concurrent inserts and removals.
        """
        sl = self.sl
        if not reverse:
            i = sl.bisect_left(lo_e) if lo_e is not None else 0
            if after is not None:
                i = max(i, sl.bisect_right(after))
            j = sl.bisect_left(hi_e) if hi_e is not None else len(sl)
            if i >= j:
                return []
            return sl[i:min(j, i + n)]
        i = sl.bisect_left(lo_e) if lo_e is not None else 0
        j = sl.bisect_left(hi_e) if hi_e is not None else len(sl)
        if after is not None:
            j = min(j, sl.bisect_left(after))
        if i >= j:
            return []
        out = sl[max(i, j - n):j]
        out.reverse()
        return out

    def _check(self) -> None:
        """Assert internal invariants (tests call this after every step)."""
        sl = self.sl
        sl._check()
        vals = list(sl)
        assert len(set(vals)) == len(vals), "duplicate index entries"
        if self.packed:
            assert all(isinstance(e, int) for e in vals)
