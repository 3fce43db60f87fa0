"""Secondary indexes: the interface every index satisfies (``Index``) and SortedIndex.

An index holds sorted (field value, slot) entries of one field of one table.
For int, bool and float fields an entry is one packed Python int,
``key << SLOT_BITS | slot`` (entries.py): cheaper to store and compare than a
tuple.  The float key is the IEEE-754 bit pattern made order-preserving
(negative numbers mirrored), so ranges and sorts on floats are integer bisects.
For str fields an entry is the tuple ``(value, slot)``.  Null values are not
entries: their slots sit in ``nulls`` (nulls sort after every value).

Index semantics are a set per slot: a slot has one entry for each distinct value
among the versions its chain retains, so readers recheck every candidate against
the version their snapshot sees (the entry's key must equal that version's key).

Writes are applied at once, by the writer, under the table latch: the commit
path installs a transaction's entries before the commit is published, and
pruning removes a dead version's entries in the same latch section that frees
or freezes its slot.  So whenever the latch is free the entries are exact, and a
reader never has writes to fold in before it can read.

Two classes store the entries; ``arrayindex.new_index`` picks one for a field:

- ``SortedIndex`` (here): a SortedList; str fields, and int fields whose
  declared range spans more than 64 bits (from below 0 to 2**63 or more).
- ``ArrayIndex`` (arrayindex.py): numeric fields; a sorted numpy array (8-16
  bytes an entry instead of 36-48) with small sorted layers of recent writes in
  front, which a background maintainer folds into the array.

Both derive from ``Index``, which holds no entries: it states the contract
every index meets (the docstrings below) and does, once, what does not depend
on the storage: a field value's key, the entry encoding, the null set, and the
null split of batch writes, builds and retires.

Writers are serialised by the owning TableStore's latch; readers of a
SortedIndex share it, readers of a ``lockfree`` index (ArrayIndex) take none.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from sys import getsizeof

import numpy as np
from sortedcontainers import SortedList

from .entries import SLOT_BITS, SLOT_MASK, EntryForm, float_key, float_keys

__all__ = ["Index", "SortedIndex", "compacted"]

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


class Index(ABC):
    """The contract of a secondary index over field ``pos`` of a table, and what
    every index does alike.  Holds no entries; see the module docstring.

    Attributes every index has:

    - ``pos``: the field's position; ``kind``: its kind ("int", "bool",
      "float" or "str");
    - ``packed``: entries are packed ints (every kind but "str"), else
      ``(value, slot)`` tuples;
    - ``entry_form``: what ``chunk`` returns (an ``EntryForm``);
    - ``nulls``: the set of slots with a retained version whose value is null;
    - ``ready``: False after ``retire`` until ``build``: writes are ignored
      (the owner rebuilds the index from the heap before the next read);
    - ``on_due``: None, or called with the index once a background fold is due
      (the table's maintainer then runs ``fold_start``/``fold_compute``/``fold_finish``);
    - ``folds``: folds into the main structure so far.

    Entries compare in (key, slot) order; ``None`` for a bound means unbounded.
    Writes run under the table latch, held exclusively; reads share it, or take
    none when the class is ``lockfree``; an index never changes its entries on
    a read.
    """

    folds = 0          # an index whose writes never wait for a fold keeps 0
    # True: reads take no latch (every read sees one published version of the
    # entries, and writers never change what they published); False: readers
    # hold the table latch shared while they read
    lockfree = False
    # True: ``add_many``/``remove_many`` also take the slots as an int64 numpy array
    # (a batch's slots converted once for every index, not once per index)
    takes_slot_array = False

    def __init__(self, pos: int, kind: str, entry_form: EntryForm):
        self.pos = pos
        self.kind = kind
        self.packed = kind != "str"
        self.entry_form = entry_form
        self.nulls: set = set()
        self.on_due = None
        self.ready = True

    # -- keys and entries (shared: the encoding of entries.py) ------------------------
    def key(self, value):
        """The sort key of a non-null field value.  O(1)."""
        if self.kind == "float":
            return float_key(value)
        if self.kind == "bool":
            return int(value)
        return value

    def keys(self, values: list) -> list:
        """Keys of many non-null values (the float bit casts at C speed).  O(k)."""
        if self.kind == "float":
            if len(values) < 16:
                return [float_key(v) for v in values]
            return float_keys(values)
        if self.kind == "bool":
            return [int(v) for v in values]
        return values

    def entry(self, key, slot: int):
        """The entry of ``slot`` with ``key``.  O(1)."""
        return (key << SLOT_BITS) | slot if self.packed else (key, slot)

    def lo_entry(self, key):
        """Smallest possible entry with this key.  O(1)."""
        return key << SLOT_BITS if self.packed else (key,)

    def hi_entry(self, key):
        """Smallest possible entry with a key greater than this one.  O(1)."""
        return (key + 1) << SLOT_BITS if self.packed else (key, _STR_SLOT_END)

    def entry_key(self, e):
        """The key of entry ``e``.  O(1)."""
        return e >> SLOT_BITS if self.packed else e[0]

    def _entries(self, values: list, slots: list) -> list:
        """Entries for (value, slot) pairs of non-null values, as a list.  O(k)."""
        ks = self.keys(values)
        if self.packed:
            return [(k << SLOT_BITS) | s for k, s in zip(ks, slots)]
        return list(zip(ks, slots))

    @staticmethod
    def _split_nulls(values: list, slots: list):
        """(non-null values, their slots, slots with null).  O(k)."""
        if None not in values:
            return values, slots, ()
        if slots.__class__ is not list:
            slots = slots.tolist()
        nulls = [s for v, s in zip(values, slots) if v is None]
        pairs = [(v, s) for v, s in zip(values, slots) if v is not None]
        return [p[0] for p in pairs], [p[1] for p in pairs], nulls

    # -- writes (applied at once; the caller holds the table latch) -----------------
    @abstractmethod
    def add(self, value, slot: int) -> None:
        """Record that ``slot`` has a version with ``value``; the pair must be absent.

        A null value goes to ``nulls``; nothing happens while not ``ready``.
        O(log n).  (Each class writes this in full: a shared prologue would be
        one more call per row on the commit path.)
        """

    @abstractmethod
    def remove(self, value, slot: int) -> None:
        """Record that no retained version of ``slot`` has ``value`` any more; the
        pair must be present.  Null and not ``ready`` as for ``add``.  O(log n)."""

    def add_many(self, values: list, slots) -> None:
        """``add`` for the pairs (values[i], slots[i]), each absent before; ``slots``: a
        list, or an int64 numpy array where ``takes_slot_array``.

        Keys are computed in bulk; O(k log n), or amortised O(1) per entry for a
        batch that is large against the index.
        """
        if not self.ready:
            return
        values, slots, nulls = self._split_nulls(values, slots)
        if nulls:
            self.nulls.update(nulls)
        if values:
            self._add_many(values, slots)

    def remove_many(self, values: list, slots) -> None:
        """``remove`` for the pairs (values[i], slots[i]), each present before.  As ``add_many``."""
        if not self.ready:
            return
        values, slots, nulls = self._split_nulls(values, slots)
        if nulls:
            self.nulls.difference_update(nulls)
            self.nulls = compacted(self.nulls)
        if values:
            self._remove_many(values, slots)

    @abstractmethod
    def _add_many(self, values: list, slots: list) -> None:
        """``add_many`` of non-null values (the index is ready)."""

    @abstractmethod
    def _remove_many(self, values: list, slots: list) -> None:
        """``remove_many`` of non-null values (the index is ready)."""

    def build(self, values: list, slots: list) -> None:
        """Replace everything with the entries for (values[i], slots[i]); ready after.
        O(n log n) at C speed."""
        values, slots, nulls = self._split_nulls(values, slots)
        self._build(values, slots)
        self.nulls = set(nulls)
        self.ready = True

    def retire(self) -> None:
        """Forget every entry and null; not ready until the owner calls ``build``."""
        self._clear()
        self.nulls = set()
        self.ready = False

    @abstractmethod
    def _build(self, values: list, slots: list) -> None:
        """Replace every entry with those of non-null ``values`` at ``slots``."""

    @abstractmethod
    def _clear(self) -> None:
        """Drop every entry (and any fold in progress)."""

    # -- background folds (the defaults: writes go straight into the main structure) ----
    @property
    def pending(self) -> int:
        """Entries written but not yet folded into the main structure.  O(1)."""
        return 0

    def settle(self) -> None:
        """Fold every pending write into the main structure now, in the caller's thread.  O(n)."""

    def wants_fold(self) -> bool:
        """True when a background fold is due and none runs.  O(1)."""
        return False

    def fold_start(self, force: bool = False):
        """Freeze the pending writes for a fold: the job for ``fold_compute``, or None when no
        fold is due (``force``: when nothing is pending) or one already runs.  Latch held."""
        return None

    def fold_compute(self, job):
        """The new main structure for ``job``; runs without the latch.  O(n)."""
        raise AssertionError(f"index on field {self.pos} never folds")

    def fold_finish(self, job, main) -> bool:
        """Install a ``fold_compute`` result; False when the job went stale meanwhile (the
        index was rebuilt or settled).  Latch held, O(1)."""
        raise AssertionError(f"index on field {self.pos} never folds")

    # -- reads (the caller holds the table latch shared, unless the class is lockfree) ----
    @abstractmethod
    def __len__(self) -> int:
        """The number of entries (nulls not counted)."""

    @abstractmethod
    def entries(self) -> list:
        """Every entry, sorted, as entries (``entry_form`` aside).  O(n)."""

    @abstractmethod
    def count_between(self, lo_e, hi_e, view=None) -> int:
        """The number of entries e with lo_e <= e < hi_e.  O(log n).  ``view``: of a
        lock-free index, a version it published earlier (``view``) to count in; else None."""

    @abstractmethod
    def chunk(self, lo_e, hi_e, after, n: int, reverse: bool = False):
        """Up to ``n`` entries in [lo_e, hi_e), strictly after ``after`` in walk order
        (descending when ``reverse``), in ``entry_form``: a list of entries, or a
        ``Chunk`` of parallel keys and slots that yields entries when indexed.

        Walking by value (not by position) makes a walk whose latch is released
        between chunks immune to concurrent inserts and removals.  O(log n + n).
        """

    @abstractmethod
    def slots_between(self, lo_e, hi_e) -> np.ndarray:
        """The slots of the entries in [lo_e, hi_e), as an int64 numpy array, in no given
        order; may hold more (the caller rechecks every slot against its row).  O(log n + k)."""

    @abstractmethod
    def _check(self) -> None:
        """Assert every invariant of the index (tests call this after every step).  O(n)."""

    def _check_entries(self, vals: list) -> None:
        """Assert what holds of any index whose entries are ``vals`` (``entries()``)."""
        assert all(a < b for a, b in zip(vals, vals[1:])), \
            f"index on field {self.pos}: entries not strictly sorted"
        key_of, entry, lo_entry, hi_entry = self.entry_key, self.entry, self.lo_entry, self.hi_entry
        if self.packed:
            assert all(type(e) is int for e in vals), f"index on field {self.pos}: an entry is no int"
            pairs = [(e, e >> SLOT_BITS, e & SLOT_MASK) for e in vals]
        else:
            assert all(type(e) is tuple and len(e) == 2 and isinstance(e[0], str) for e in vals), \
                f"index on field {self.pos}: an entry is no (str, slot) tuple"
            pairs = [(e, e[0], e[1]) for e in vals]
        for e, k, s in pairs:
            assert type(s) is int and 0 <= s <= SLOT_MASK, f"index on field {self.pos}: slot {s} out of range"
            assert key_of(e) == k and entry(k, s) == e and lo_entry(k) <= e < hi_entry(k), \
                f"index on field {self.pos}: entry {e!r} does not round-trip"
        assert all(type(s) is int and 0 <= s <= SLOT_MASK for s in self.nulls), \
            f"index on field {self.pos}: a null slot out of range"
        assert self.ready or (not vals and not self.nulls), f"index on field {self.pos}: retired, not empty"


class SortedIndex(Index):
    """Sorted (value, slot) entries of a str or wide int field in a SortedList ``sl``.

    Writes go straight into the list: ``add``/``remove`` O(log n);
    ``add_many``/``remove_many`` rebuild the list at C speed when the batch is
    at least 1/16 of the index, amortised O(1) per entry.  Nothing is ever
    pending, so the fold methods keep the ``Index`` defaults.
    """

    def __init__(self, pos: int, kind: str):
        super().__init__(pos, kind, EntryForm.PACKED if kind != "str" else EntryForm.TUPLE)
        self.sl = SortedList()

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

    def _build(self, values: list, slots: list) -> None:
        vals = self._entries(values, slots)
        vals.sort()
        self.sl = SortedList(vals)

    def _clear(self) -> None:
        self.sl = SortedList()

    # -- reads (the caller holds the table latch) ---------------------------------
    def __len__(self):
        return len(self.sl)

    def entries(self) -> list:
        """Every entry, sorted.  O(n)."""
        return list(self.sl)

    def count_between(self, lo_e, hi_e, view=None) -> int:
        """Entries e with lo_e <= e < hi_e (None = unbounded).  O(log n).  (No views:
        readers hold the latch.)"""
        sl = self.sl
        i = sl.bisect_left(lo_e) if lo_e is not None else 0
        j = sl.bisect_left(hi_e) if hi_e is not None else len(sl)
        return j - i if j > i else 0

    def chunk(self, lo_e, hi_e, after, n: int, reverse: bool = False) -> list:
        """Up to ``n`` entries in [lo_e, hi_e), strictly after ``after`` in walk order (a list)."""
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

    def slots_between(self, lo_e, hi_e) -> np.ndarray:
        """Slots of the entries in [lo_e, hi_e), exactly, in entry order.  O(log n + k)."""
        it = self.sl.irange(lo_e, hi_e, (True, False))
        if self.packed:
            return np.fromiter((e & SLOT_MASK for e in it), np.int64)
        return np.fromiter((e[1] for e in it), np.int64)

    def _check(self) -> None:
        """The SortedList's own invariants and every ``Index`` invariant of its entries."""
        sl = self.sl
        sl._check()
        assert self.entry_form == (EntryForm.PACKED if self.packed else EntryForm.TUPLE)
        self._check_entries(list(sl))
