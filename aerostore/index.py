"""SortedIndex: one sorted secondary index over one field of one table.

Entries are ordered by (field value, slot).  For int, bool and float fields an
entry is one packed Python int, ``key << SLOT_BITS | slot`` (entries.py): cheaper
to store and compare than a tuple.  The float key is the IEEE-754 bit pattern made
order-preserving (negative numbers mirrored), so ranges and sorts on floats are
integer bisects.  For str fields an entry is the tuple ``(value, slot)``.  Null
values are not entries: their slots sit in ``nulls`` (nulls sort after every
value).

Index semantics are a set per slot: a slot has one entry for each distinct value
among the versions its chain retains, so readers recheck every candidate against
the version their snapshot sees (the entry's key must equal that version's key).

Writes are applied at once, by the writer, under the table latch: the commit
path installs a transaction's entries before the commit is published, and
pruning removes a dead version's entries in the same latch section that frees
or freezes its slot.  So whenever the latch is free the entries are exact, and a
reader never has writes to fold in before it can read (``add``/``remove``
O(log n); ``add_many``/``remove_many`` rebuild the sorted list at C speed when
the batch is large against the index, amortised O(1) per entry).

This class stores the entries in a SortedList; it serves str fields and int
fields whose declared range spans more than 64 bits (from below 0 to 2**63 or
more).  Numeric fields get an ArrayIndex (arrayindex.py): the same
entries and reads, stored in a numpy array (8-16 bytes an entry instead of
36-48) with small sorted layers of recent writes in front, which a background
maintainer folds into the array.  ``arrayindex.new_index`` picks the class for
a field.

Not thread-safe by itself: the owning TableStore's latch guards every call.
"""

from __future__ import annotations

from sys import getsizeof

import numpy as np
from sortedcontainers import SortedList

from .entries import SLOT_BITS, SLOT_MASK, EntryForm, float_key, float_keys

__all__ = ["SortedIndex"]

_STR_SLOT_END = 1 << SLOT_BITS  # larger than any slot
# A batch at least 1/_REBUILD of the index is merged by one C-speed sort of the
# whole list instead of entry by entry.
_REBUILD = 16


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


class SortedIndex:
    """Sorted (value, slot) entries of one field; see the module docstring."""

    def __init__(self, pos: int, kind: str):
        self.pos = pos
        self.kind = kind
        self.packed = kind != "str"
        self.entry_form = EntryForm.PACKED if self.packed else EntryForm.TUPLE   # what chunk() returns
        self.sl = SortedList()
        self.nulls: set = set()
        self.on_due = None     # ArrayIndex calls it once a background fold is due
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

    # -- writes (applied at once; the caller holds the table latch) ------------
    def add(self, value, slot: int) -> None:
        """Record that ``slot`` has a version with ``value`` (absent before).  O(log n)."""
        if not self.ready:
            return
        if value is None:
            self.nulls.add(slot)
        else:
            self._apply((self.entry(self.key(value), slot),), ())

    def remove(self, value, slot: int) -> None:
        """Record that no retained version of ``slot`` has ``value`` any more.  O(log n)."""
        if not self.ready:
            return
        if value is None:
            self.nulls.discard(slot)
        else:
            self._apply((), (self.entry(self.key(value), slot),))

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
        """``add`` for many pairs (each absent before); keys computed in bulk."""
        if not self.ready:
            return
        values, slots, nulls = self._split_nulls(values, slots)
        if nulls:
            self.nulls.update(nulls)
        if values:
            self._add_many(values, slots)

    def remove_many(self, values: list, slots: list) -> None:
        """``remove`` for many pairs (each present before)."""
        if not self.ready:
            return
        values, slots, nulls = self._split_nulls(values, slots)
        if nulls:
            self.nulls.difference_update(nulls)
            self.nulls = compacted(self.nulls)
        if values:
            self._remove_many(values, slots)

    def _add_many(self, values: list, slots: list) -> None:
        self._apply(self._entries(values, slots), ())

    def _remove_many(self, values: list, slots: list) -> None:
        self._apply((), self._entries(values, slots))

    def _apply(self, adds, rms) -> None:
        """Add entries ``adds`` (absent) and remove ``rms`` (present).

        One by one when few, O(log n) each; a batch of at least 1/16 of the
        index by one C-speed sort of the whole list, O(n).
        """
        sl = self.sl
        if (len(adds) + len(rms)) * _REBUILD < len(sl):
            for e in rms:
                sl.remove(e)
            for e in adds:
                sl.add(e)
            return
        if rms:
            gone = set(rms)
            vals = [e for e in sl if e not in gone]
            if len(vals) != len(sl) - len(gone):
                raise AssertionError(f"index on field {self.pos}: removing entries it does not hold")
        else:
            vals = list(sl)
        vals.extend(adds)
        vals.sort()
        self.sl = SortedList(vals)

    @property
    def pending(self) -> int:
        """Writes not yet in the main sorted structure (none here; see ArrayIndex)."""
        return 0

    def settle(self) -> None:
        """Fold recent writes into the main structure now (nothing to do here; see ArrayIndex)."""

    def wants_fold(self) -> bool:
        """True when a background fold is due (never here; see ArrayIndex)."""
        return False

    def retire(self) -> None:
        """Forget every entry; the owner rebuilds from the heap before the next read."""
        self.sl = SortedList()
        self.nulls = set()
        self.ready = False

    def build(self, values: list, slots: list) -> None:
        """Replace everything with entries for (values[i], slots[i]).  O(n log n) at C speed."""
        values, slots, nulls = self._split_nulls(values, slots)
        self.nulls = set(nulls)
        vals = self._entries(values, slots)
        vals.sort()
        self.sl = SortedList(vals)
        self.ready = True

    # -- reads (the caller holds the table latch) ---------------------------------
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

    def slots_between(self, lo_e, hi_e):
        """Slots of the entries in [lo_e, hi_e) as an int64 numpy array.  O(log n + k)."""
        it = self.sl.irange(lo_e, hi_e, (True, False))
        if self.packed:
            return np.fromiter((e & SLOT_MASK for e in it), np.int64)
        return np.fromiter((e[1] for e in it), np.int64)

    def _check(self) -> None:
        """Assert internal invariants (tests call this after every step)."""
        sl = self.sl
        sl._check()
        vals = list(sl)
        assert len(set(vals)) == len(vals), "duplicate index entries"
        if self.packed:
            assert all(isinstance(e, int) for e in vals)
