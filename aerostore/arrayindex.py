"""ArrayIndex: an index (index.py's ``Index``) whose settled entries live in one sorted numpy array.

Why: as Python ints in a SortedList an entry costs 36-48 bytes (the int object
and its list pointer); here it costs 8 or 16, and folding a big batch of writes
in is a C-speed sort, ``searchsorted``, ``delete`` and ``insert`` instead of a
Python-level filter and sort of every entry.  (numpy is a dependency for this.)

Entries are the packed ints of entries.py, ``e = key << SLOT_BITS | slot``, stored as:

- **narrow** (the key fits 32 bits: an int field with -2**31 <= lo, hi < 2**31,
  or bool): ``e`` itself, int64; an int field with 0 <= lo, hi < 2**32: uint64.
- **wide** (the key fits 64 bits: floats, 64-bit ints): complex128
  ``(e >> 43) + (e & (2**43 - 1))j``.  Both parts are below 2**53 in magnitude,
  so exact in a double, and numpy orders complex numbers by real part, then
  imaginary part: exactly the order of ``e``.

Layers hold the entries, each relative to everything below it:

- ``main``: sorted, unique numpy array;
- the batch layer: at most ``_MAX_RUNS`` runs (``runs``, oldest first), each a
  (delta, tomb) pair of sorted numpy arrays (``Run``): entries absent below
  (recent adds) and entries present below that are removed;
- the small layer ``delta``/``tomb``: two sorted Python lists on top (``Small``),
  for writes of a few entries (single-row commits), at most ``_SMALL_MAX``
  entries, copied on write;
- ``frozen``: while the maintainer folds, the runs it is folding, between
  ``main`` and the batch layer that takes the writes meanwhile.

An entry's presence is [in main] + its delta memberships - its tomb
memberships, always 0 or 1, so counts add up layer by layer.

Writers apply their entries at once, under the table latch (the commit path,
before the commit is published; pruning, before the slot is freed or frozen):
a write of fewer than ``_VEC`` entries goes into the small layer, O(log n)
each; a larger one (a 100-row feed batch) becomes a new run of the batch
layer with a few vectorised numpy calls, no Python per entry, merged into the
run below while that one is less than ``_FANOUT`` times bigger: a run is
copied again only once it has grown by that factor, not on every write (a
feed batch cost 0.6 ms per index with one batch array of 60k entries, 0.16 ms
with runs); a full small layer moves into the batch layer the same way.  A write of at least
``budget`` entries (a bulk load) is folded into ``main`` by the writer.  Once
the layers pass the budget (1/32 of ``main``, at least 4096 entries), the
table's maintainer (maintainer.py) folds them into a new ``main`` in three
steps: ``fold_start`` (under the latch, O(small layer): the runs are frozen,
fresh ones take the writes), ``fold_compute`` (no latch: numpy deletes and
inserts, O(n)), ``fold_finish`` (under the latch, O(1)).  Readers
never fold: a range count is a few bisects per layer; a walk looks only at
the layer entries inside the stretch it returns.

Readers take no latch.  No array or layer is written once readers can see it:
a writer builds new ones and publishes them all by one reference assignment
(``view``, a ``View``: ``main`` and the layers), last in every write method.
A read method takes ``view`` once, so it sees the entries before or after a
write, never half of one.  Writers are serialised by the owning TableStore's
latch (exclusive).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

import numpy as np

from ._heldops import (bisect as held_bisect, fold as held_fold, onto as held_onto, slots as held_slots,
                       sort as held_sort, split as held_split)
from .entries import SLOT_BITS, SLOT_MASK, EntryForm, np_float_keys
from .index import Index, SortedIndex
from .sysmem import map_big_arrays

__all__ = ["ArrayIndex", "new_index"]

_M43 = (1 << 43) - 1
_HI_LIMIT = 1 << 53          # |real part| of any wide entry is at most this
_DELTA_MIN = 4096            # layer entries kept before folding into main (at least)
_VEC = 16                    # a write of this many entries or more goes to the batch layer, vectorised
_SMALL_MAX = 256             # the small layer moves into the batch layer past this size
_FANOUT = 8                  # a batch-layer run merges into the one below unless that is 8x bigger
_MAX_RUNS = 2                # at most this many runs (readers bisect each)
_HELD_SORT_MAX = 1024        # a write's entries sorted holding the GIL up to this many (30 us)


def new_index(pos: int, field) -> Index:
    """The index for ``field``: an ArrayIndex when its keys fit 64 bits, else a SortedIndex."""
    map_big_arrays()
    kind = field.kind
    if kind == "bool":
        return ArrayIndex(pos, kind, np.int64)
    if kind == "float":
        return ArrayIndex(pos, kind, np.complex128, np.int64)
    if kind == "int":
        lo, hi = field.lo, field.hi
        if lo is not None and hi is not None:
            if lo >= -(1 << 31) and hi < (1 << 31):
                return ArrayIndex(pos, kind, np.int64)
            if lo >= 0 and hi < (1 << 32):
                return ArrayIndex(pos, kind, np.uint64)
            if lo >= -(1 << 63) and hi < (1 << 63):
                return ArrayIndex(pos, kind, np.complex128, np.int64)
            if lo >= 0 and hi < (1 << 64):
                return ArrayIndex(pos, kind, np.complex128, np.uint64)
    return SortedIndex(pos, kind)


class Chunk:
    """Consecutive entries as parallel lists of keys and slots (``entry_form`` "pairs").

    Indexing yields packed-int entries, as the planner needs for ``after`` and
    the last entry's key; the generated filters read ``keys``/``slots`` directly,
    so no Python int wider than 64 bits is made per entry.  ``slot_array``: the
    slots as the numpy array they were split from (intp), or None (a chunk
    merged in Python): the planner's column filter takes it as is.
    """

    __slots__ = ("keys", "slots", "slot_array")

    def __init__(self, keys: list, slots: list, slot_array=None):
        self.keys = keys
        self.slots = slots
        self.slot_array = slot_array

    def __len__(self):
        return len(self.slots)

    def __getitem__(self, i):
        return (self.keys[i] << SLOT_BITS) | self.slots[i]

    def __iter__(self):
        for k, s in zip(self.keys, self.slots):
            yield (k << SLOT_BITS) | s

    def __eq__(self, other):
        return list(self) == list(other)

    def __repr__(self):
        return f"Chunk({list(self)!r})"


_EMPTY = Chunk([], [])


class Small(list):
    """The small layer's delta or tomb: a sorted list of packed-int entries behind the
    read API of a SortedList (``bisect_left``, ``irange``, slicing, ``in``).

    Never written once published: a writer makes a new one (``plus``/``minus``,
    O(len) copies of at most ``_SMALL_MAX`` entries), so a reader holding an
    old one reads a consistent layer without the latch.
    """

    __slots__ = ()

    def bisect_left(self, e) -> int:
        return bisect_left(self, e)

    def bisect_right(self, e) -> int:
        return bisect_right(self, e)

    def irange(self, lo=None, hi=None, inclusive=(True, True)) -> list:
        i = 0 if lo is None else (bisect_left if inclusive[0] else bisect_right)(self, lo)
        j = len(self) if hi is None else (bisect_right if inclusive[1] else bisect_left)(self, hi)
        return list.__getitem__(self, slice(i, j)) if j > i else []

    def __contains__(self, e) -> bool:
        i = bisect_left(self, e)
        return i < len(self) and list.__getitem__(self, i) == e

    def plus(self, e) -> "Small":
        """A copy with ``e`` (absent) inserted.  O(len)."""
        out = Small(self)
        out.insert(bisect_left(out, e), e)
        return out

    def minus(self, e) -> "Small":
        """A copy without ``e`` (present).  O(len)."""
        out = Small(self)
        del out[bisect_left(out, e)]
        return out


_NO_SMALL = Small()


class View:
    """What readers read of an ArrayIndex, published by one reference (``ArrayIndex.view``):
    ``main`` and ``layers``, the non-empty (delta, tomb) layers in front of it, oldest
    first (Runs and Smalls, none ever written).  A reader takes ``ix.view`` once per
    call and sees one consistent set of entries, without the table latch."""

    __slots__ = ("main", "layers")

    def __init__(self, main, layers: tuple):
        self.main = main
        self.layers = layers


class Run:
    """A sorted, unique numpy array of entries behind the read API of a SortedList of
    packed ints (``bisect_left``, ``irange``, slicing, ``in``, iteration), so that
    reads treat array layers and SortedList layers alike.  Never written: a writer
    replaces the whole Run."""

    __slots__ = ("a", "ix")

    def __init__(self, a, ix: "ArrayIndex"):
        self.a = a
        self.ix = ix

    def __len__(self):
        return len(self.a)

    def bisect_left(self, e) -> int:
        return self.ix._pos_in(self.a, e)

    def bisect_right(self, e) -> int:
        return self.ix._pos_in(self.a, e, True)

    def irange(self, lo=None, hi=None, inclusive=(True, True)) -> list:
        i = 0 if lo is None else self.ix._pos_in(self.a, lo, not inclusive[0])
        j = len(self.a) if hi is None else self.ix._pos_in(self.a, hi, inclusive[1])
        return self.ix._to_ints(self.a[i:j]) if j > i else []

    def __getitem__(self, part: slice) -> list:
        return self.ix._to_ints(self.a[part])

    def __contains__(self, e) -> bool:
        i = self.ix._pos_in(self.a, e)
        return i < len(self.a) and self.ix._to_ints(self.a[i:i + 1])[0] == e

    def __iter__(self):
        return iter(self.ix._to_ints(self.a))


class ArrayIndex(Index):
    """Sorted (value, slot) entries of one numeric field; see the module docstring.

    ``dtype``: how ``main`` and the batch layer store an entry (int64 or uint64:
    the packed int itself; complex128: wide); ``key_dtype``: a wide field's keys.
    """

    lockfree = True     # readers read ``view``; see the module docstring
    takes_slot_array = True

    def __init__(self, pos: int, kind: str, dtype, key_dtype=None):
        super().__init__(pos, kind, EntryForm.PAIRS)
        self.dtype = dtype
        self.wide = dtype is np.complex128
        self.key_dtype = key_dtype if self.wide else dtype
        self._unsigned_keys = np.dtype(self.key_dtype) == np.uint64
        info = np.iinfo(dtype) if not self.wide else None
        self._lim = (int(info.min), int(info.max)) if info else None
        self._empty = np.empty(0, dtype)
        self.main = self._empty
        self.budget = _DELTA_MIN            # layer entries before a fold is due; see _set_main
        self._set_runs(())                  # self.runs: the batch layer's runs, oldest first
        self.delta = _NO_SMALL              # the small layer, on top of the batch layer
        self.tomb = _NO_SMALL
        self.frozen = None                  # the runs being folded by the maintainer, or None
        self.view = View(self.main, ())     # what readers read; see _publish
        self._requested = False
        self._gen = 0                       # bumped when main is replaced: stale fold jobs are dropped
        self.folds = 0                      # folds into main so far (tests count them)

    # -- conversions --------------------------------------------------------------
    def _to_np(self, entries: list):
        """numpy array of packed-int entries (any order)."""
        if not self.wide:
            return np.array(entries, dtype=self.dtype)
        out = np.empty(len(entries), np.complex128)
        out.real = [e >> 43 for e in entries]
        out.imag = [e & _M43 for e in entries]
        return out

    def _to_ints(self, arr) -> list:
        """Packed-int entries of a numpy array, in its order."""
        if not self.wide:
            return arr.tolist()
        hs = arr.real.astype(np.int64).tolist()
        ls = arr.imag.astype(np.int64).tolist()
        return [(h << 43) | l for h, l in zip(hs, ls)]

    def _slots_of(self, arr) -> np.ndarray:
        """The slots of an array of entries, as int64.  O(n), holding the GIL (_heldops.c)."""
        return held_slots(arr, np.empty(len(arr), np.int64))

    def _split(self, arr) -> Chunk:
        """A Chunk of a slice of ``main``, split into keys and slots at C speed, holding
        the GIL (_heldops.c).  O(n)."""
        s = np.empty(len(arr), np.intp)
        if arr.strides[0] < 0:          # a backward walk's window: split it forward, then turn
            keys, slots = held_split(arr[::-1], self._unsigned_keys, s)
            keys.reverse()
            slots.reverse()
            return Chunk(keys, slots, s[::-1])
        keys, slots = held_split(arr, self._unsigned_keys, s)
        return Chunk(keys, slots, s)

    def _np_entries(self, values: list, slots: list):
        """Entries of non-null ``values`` at ``slots`` (a list, or an int64 array),
        vectorised (no per-row Python)."""
        s = slots if slots.__class__ is np.ndarray else np.array(slots, dtype=np.int64)
        if not self.wide:
            if self.kind == "bool":
                k = np.array(values, dtype=np.int64)
            else:
                k = np.array(values, dtype=self.dtype)
            return (k << SLOT_BITS) | s.astype(k.dtype)
        if self.kind == "float":
            k = np_float_keys(values)
        else:
            k = np.array(values, dtype=self.key_dtype)
        out = np.empty(len(k), np.complex128)
        out.real = k >> 11
        out.imag = ((k & 2047).astype(np.int64) << SLOT_BITS) | s
        return out

    def _pos_in(self, arr, e, right: bool = False) -> int:
        """Position in sorted entry array ``arr`` of packed-int entry ``e`` (bisect left, or
        right).  O(log n), holding the GIL (_heldops.c says why not searchsorted)."""
        if not self.wide:
            lo, hi = self._lim
            if e < lo:
                return 0
            if e > hi:
                return len(arr)
            return held_bisect(arr, e, right)
        h = e >> 43
        if h < -_HI_LIMIT:
            return 0
        if h > _HI_LIMIT:
            return len(arr)
        return held_bisect(arr, complex(h, e & _M43), right)

    # -- writes (at once, under the table latch) -------------------------------------
    def add(self, value, slot: int) -> None:
        """Record that ``slot`` has a version with ``value`` (absent before).  O(log n)."""
        if not self.ready:
            return
        if value is None:
            self.nulls.add(slot)
            return
        self._small_add(self.entry(self.key(value), slot))
        self._publish()

    def _small_add(self, e) -> None:
        """Entry ``e`` (absent) into the small layer; not published yet.  O(small layer)."""
        tomb = self.tomb
        if e in tomb:
            self.tomb = tomb.minus(e)
        else:
            self.delta = self.delta.plus(e)
            self._after_small()

    def remove(self, value, slot: int) -> None:
        """Record that no retained version of ``slot`` has ``value`` any more.  O(log n)."""
        if not self.ready:
            return
        if value is None:
            self.nulls.discard(slot)
            return
        self._small_remove(self.entry(self.key(value), slot))
        self._publish()

    def _small_remove(self, e) -> None:
        """Entry ``e`` (present) out through the small layer; not published yet."""
        delta = self.delta
        if e in delta:
            self.delta = delta.minus(e)
        else:
            self.tomb = self.tomb.plus(e)
            self._after_small()

    def _after_small(self) -> None:
        """Move a full small layer into the batch layer (vectorised), then check the budget."""
        if len(self.delta) + len(self.tomb) > _SMALL_MAX:
            self._merge_small()
        self._after_write()

    def _after_write(self) -> None:
        """Tell the owner once the layers pass the budget.  O(1)."""
        if (not self._requested and self.frozen is None
                and self._layer_size() > self.budget):
            self._requested = True
            if self.on_due is not None:
                self.on_due(self)

    def _layer_size(self) -> int:
        return self._batch_n + len(self.delta) + len(self.tomb)

    def _set_runs(self, runs) -> None:
        """Replace the batch layer's runs: (delta, tomb) pairs of Runs, oldest first."""
        self.runs = tuple(runs)
        self._batch_n = sum(len(d) + len(t) for d, t in self.runs)

    def _publish(self) -> None:
        """Make the current layers what readers read (``view``): one reference
        assignment, so a reader sees the entries before or after a write, never
        half of one.  Every public write calls it last.  O(1)."""
        layers = list(self.frozen) if self.frozen is not None else []
        layers.extend(self.runs)
        if self.delta or self.tomb:
            layers.append((self.delta, self.tomb))
        self.view = View(self.main, tuple(layers))

    def _add_many(self, values: list, slots: list) -> None:
        n = len(values)
        if n >= self.budget:
            self._fold_now(self._np_entries(values, slots), None)
        elif n >= _VEC:
            self._merge_small()
            self._batch_write(self._np_entries(values, slots), None)
        else:
            entry, key = self.entry, self.key
            for v, s in zip(values, slots if slots.__class__ is list else slots.tolist()):
                self._small_add(entry(key(v), s))
        self._publish()

    def _remove_many(self, values: list, slots: list) -> None:
        n = len(values)
        if n >= self.budget:
            self._fold_now(None, self._np_entries(values, slots))
        elif n >= _VEC:
            self._merge_small()
            self._batch_write(None, self._np_entries(values, slots))
        else:
            entry, key = self.entry, self.key
            for v, s in zip(values, slots if slots.__class__ is list else slots.tolist()):
                self._small_remove(entry(key(v), s))
        self._publish()

    def _merge_small(self) -> None:
        """Move the small layer into the batch layer (``_batch_write``)."""
        if self.delta or self.tomb:
            A = self._to_np(list(self.delta)) if self.delta else None
            R = self._to_np(list(self.tomb)) if self.tomb else None
            self.delta = self.tomb = _NO_SMALL
            self._batch_write(A, R)

    def _batch_write(self, A, R) -> None:
        """Write entry arrays ``A`` (each absent) and ``R`` (each present) to the batch layer
        as a new run on top of it, then merge the top runs while the one below is
        less than ``_FANOUT`` times bigger (or there are ``_MAX_RUNS``): a run is
        copied again only when it has grown by a factor, so a 100-entry write copies
        the small recent runs, not the whole batch layer (``_apply``).  The small
        layer must be empty.  O(k log k + the runs merged), vectorised."""
        A = _sorted(A) if A is not None and len(A) else self._empty
        R = _sorted(R) if R is not None and len(R) else self._empty
        if len(A) or len(R):
            runs = list(self.runs)
            d, t = A, R
            while runs:
                ld, lt = runs[-1][0].a, runs[-1][1].a
                if len(runs) < _MAX_RUNS and (len(d) + len(t)) * _FANOUT < len(ld) + len(lt):
                    break
                runs.pop()
                d, t = _apply(ld, lt, d, t)
            if len(d) or len(t):
                runs.append((Run(d, self), Run(t, self)))
            self._set_runs(runs)
        self._after_write()

    def _set_main(self, main) -> None:
        """Replace ``main``; the layer budget follows its size (1/32, at least _DELTA_MIN)."""
        self.main = main
        self.budget = max(_DELTA_MIN, len(main) >> 5)

    @property
    def pending(self) -> int:
        """Entries in the layers in front of ``main`` (what folds would take in)."""
        n = self._layer_size()
        if self.frozen is not None:
            n += sum(len(d) + len(t) for d, t in self.frozen)
        return n

    def wants_fold(self) -> bool:
        """True when the layers in front of ``main`` passed the budget and no fold runs.  O(1)."""
        return self.frozen is None and self._layer_size() > self.budget

    def fold_start(self, force: bool = False):
        """Freeze the layers for a fold; the job for ``fold_compute``, or None (nothing due,
        or a fold already runs; ``force``: any layer at all is due).  Latch held; O(small layer)."""
        if self.frozen is not None or not self._layer_size():
            return None
        if not force and not self.wants_fold():
            return None
        self._merge_small()
        self.frozen = self.runs
        self._set_runs(())
        self._requested = False
        self._gen += 1
        self._publish()
        return (self._gen, self.main, self.frozen)

    def fold_compute(self, job) -> np.ndarray:
        """The new ``main``: the job's main with its frozen runs folded in.  No latch needed:
        nothing of the job is written any more.  O(n) in C, without the GIL (``_merge``)."""
        _gen, main, runs = job
        d, t = _collapse(runs, self._empty)
        return self._merge(main, d, t)

    def fold_finish(self, job, main) -> bool:
        """Install a ``fold_compute`` result; False if ``main`` was replaced meanwhile.  Latch held, O(1)."""
        if job[0] != self._gen or self.frozen is not job[2]:
            return False
        self._set_main(main)
        self.frozen = None
        self._gen += 1
        self.folds += 1
        self._publish()
        return True

    def settle(self) -> None:
        """Fold every layer into ``main`` now, in the caller's thread.  O(n)."""
        if self.pending:
            self._fold_now(None, None)
            self._publish()

    def _fold_now(self, A, R) -> None:
        """Fold every layer, plus entry arrays ``A`` (absent) and ``R`` (present), into
        ``main`` in this thread; a fold running in the maintainer is dropped.  O(n)."""
        self._requested = True              # folded here: nothing to ask the maintainer for
        self._merge_small()
        if A is not None or R is not None:
            self._batch_write(A, R)
        d, t = _collapse((self.frozen or ()) + self.runs, self._empty)
        main = self._merge(self.main, d, t)
        self._set_runs(())
        self.frozen = None
        self._requested = False
        self._set_main(main)
        self._gen += 1
        self.folds += 1

    def _merge(self, main, A, R):
        """``main`` without the sorted entries ``R`` (all in it) and with ``A`` (none in it).

        O(n) in C (``_heldops.fold``: memcpy runs between the layer's entries),
        without the GIL past 65,536 entries: a 1M-entry fold is a few ms that the
        feed and the readers run beside, where numpy slices held the GIL for
        10-20 ms in all (docs/decisions.md).
        """
        n = len(main)
        if not len(R) and not len(A):
            return main
        if not n:
            return A.astype(self.dtype)
        dt = self.dtype
        try:
            return held_fold(main, A.astype(dt, copy=False), R.astype(dt, copy=False),
                             np.empty(n - len(R) + len(A), dt))
        except ValueError as e:
            raise AssertionError(f"index on field {self.pos}: {e}") from None

    def _clear(self) -> None:
        """Drop every layer and ``main``; a fold running in the maintainer goes stale."""
        self._set_main(self._empty)
        self._set_runs(())
        self.delta = self.tomb = _NO_SMALL
        self.frozen = None
        self._requested = False
        self._gen += 1
        self._publish()

    def _build(self, values: list, slots: list) -> None:
        """``main`` from the entries of ``values`` at ``slots``, no layers.  O(n log n) in C."""
        self._clear()
        self._set_main(np.sort(self._np_entries(values, slots)) if values else self._empty)
        self._publish()

    def build_arrays(self, values, slots, nulls=None) -> None:
        """``build`` from numpy arrays (a table's columns): ``values[i]`` at ``slots[i]``,
        null where ``nulls`` (a bool array, or None) is set; ready after.  O(n log n)
        in C, no Python object per entry."""
        null_slots = ()
        if nulls is not None and nulls.any():
            null_slots = slots[nulls].tolist()
            keep = ~nulls
            values, slots = values[keep], slots[keep]
        self._clear()
        self._set_main(np.sort(self._np_entries(values, slots)) if len(values) else self._empty)
        self._publish()
        self.nulls = set(null_slots)
        self.ready = True

    def export_main(self, values, nulls=None) -> np.ndarray:
        """The ``main`` an index of a whole column holds: slot i has ``values[i]`` (a
        numeric array), null where ``nulls`` (a bool array, or None) is set; what a
        checkpoint stores.  Uses nothing of this index but its encoding.  O(n log n) in C."""
        slots = np.arange(len(values)) if nulls is None else np.flatnonzero(~nulls)
        if not len(slots):
            return self._empty
        return np.sort(self._np_entries(values if nulls is None else values[slots], slots))

    def adopt_main(self, main, nulls) -> bool:
        """Replace everything with ``main`` (an ``export_main`` result) and the null slots
        ``nulls``; ready after.  False (nothing changed) if ``main`` is not stored as this
        index stores entries.  O(1), or O(n) to convert its byte order."""
        if main.dtype.newbyteorder("=") != self.dtype:
            return False
        self._clear()
        self._set_main(main.astype(self.dtype, copy=False))
        self._publish()
        self.nulls = set(nulls)
        self.ready = True
        return True

    def write_columns(self, rm_values, rm_slots, add_values, add_slots) -> None:
        """Remove the entries of non-null ``rm_values`` at ``rm_slots`` (numeric arrays;
        each present) and add those of ``add_values`` at ``add_slots`` (each absent), as
        one write to the batch layer (a bulk catch-up from columns, in recovery; the
        maintainer folds it when due).  Nulls are the caller's (``nulls``).
        O(batch layer + k log k) in C."""
        self._merge_small()
        self._batch_write(self._np_entries(add_values, add_slots) if len(add_slots) else None,
                          self._np_entries(rm_values, rm_slots) if len(rm_slots) else None)
        self._publish()

    # -- reads (no latch: each call reads one published ``view``) -------------------------
    def __len__(self):
        v = self.view
        n = len(v.main)
        for d, t in v.layers:
            n += len(d) - len(t)
        return n

    def entries(self) -> list:
        """Every present entry, sorted.  O(n)."""
        v = self.view
        out = set(self._to_ints(v.main))
        for d, t in v.layers:
            out.difference_update(t)
            out.update(d)
        return sorted(out)

    def count_between(self, lo_e, hi_e, view=None) -> int:
        """Entries e with lo_e <= e < hi_e: bisects of ``main`` and of each layer.  O(log n).
        ``view``: count in that published ``View`` (a ``Picture``'s) instead of the latest."""
        v = view if view is not None else self.view
        main = v.main
        pos_in = self._pos_in
        i = pos_in(main, lo_e) if lo_e is not None else 0
        j = pos_in(main, hi_e) if hi_e is not None else len(main)
        c = j - i if j > i else 0
        for d, t in v.layers:
            for sl, sign in ((d, 1), (t, -1)):
                if len(sl):
                    a = sl.bisect_left(lo_e) if lo_e is not None else 0
                    b = sl.bisect_left(hi_e) if hi_e is not None else len(sl)
                    if b > a:
                        c += sign * (b - a)
        return c

    def slots_between(self, lo_e, hi_e) -> np.ndarray:
        """Slots of the entries in [lo_e, hi_e), as int64, a superset: tombstoned entries are
        kept (the caller rechecks every slot against its row).  O(log n + k) at C speed."""
        v = self.view
        main = v.main
        i = self._pos_in(main, lo_e) if lo_e is not None else 0
        j = self._pos_in(main, hi_e) if hi_e is not None else len(main)
        parts = [self._slots_of(main[i:j] if j > i else self._empty)]
        for d, _t in v.layers:
            if isinstance(d, Run):
                a = d.bisect_left(lo_e) if lo_e is not None else 0
                b = d.bisect_left(hi_e) if hi_e is not None else len(d)
                if b > a:
                    parts.append(self._slots_of(d.a[a:b]))
            elif d:
                parts.append(np.array([e & SLOT_MASK for e in d.irange(lo_e, hi_e, (True, False))],
                                      np.int64))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def chunk(self, lo_e, hi_e, after, n: int, reverse: bool = False) -> Chunk:
        """Up to ``n`` entries in [lo_e, hi_e), strictly after ``after`` in walk order (a Chunk).

        O(log n + n) when no recent write falls among the entries returned;
        otherwise those few are merged in (see ``_merged``).
        """
        v = self.view
        main = v.main
        pos_in = self._pos_in
        i = pos_in(main, lo_e) if lo_e is not None else 0
        j = pos_in(main, hi_e) if hi_e is not None else len(main)
        layers = v.layers
        if not reverse:
            lo_b = lo_e
            if after is not None:
                i = max(i, pos_in(main, after, True))
                lo_b = after + 1 if lo_e is None else max(lo_e, after + 1)
            if not layers:
                return self._split(main[i:min(j, i + n)]) if i < j else _EMPTY
            return self._merged(main, layers, i, j, lo_b, hi_e, n, False)
        hi_b = hi_e
        if after is not None:
            j = min(j, pos_in(main, after))
            hi_b = after if hi_e is None else min(hi_e, after)
        if not layers:
            return self._split(main[max(i, j - n):j][::-1]) if i < j else _EMPTY
        return self._merged(main, layers, i, j, lo_e, hi_b, n, True)

    @staticmethod
    def _dead(layers, wlo: int, whi: int) -> list:
        """Entries of ``main`` in [wlo, whi] that are removed, sorted (net count -1)."""
        if len(layers) == 1:
            return list(layers[0][1].irange(wlo, whi))
        net = {}
        for d, t in layers:
            for e in t.irange(wlo, whi):
                net[e] = net.get(e, 0) - 1
            for e in d.irange(wlo, whi):
                net[e] = net.get(e, 0) + 1
        return sorted(e for e, c in net.items() if c < 0)

    @staticmethod
    def _added(layers, lo_e, hi_e, n: int, reverse: bool) -> list:
        """Up to ``n`` present entries not in ``main`` in [lo_e, hi_e), from the low or the
        high end (net count +1).  Takes ``want`` entries of each layer's delta; past the
        nearest edge where a layer may hold more, nothing is known yet: widen and retry."""
        if len(layers) == 1:
            return _take(layers[0][0], lo_e, hi_e, n, reverse)
        want = n
        while True:
            edge = None
            cands = []
            for d, _t in layers:
                got = _take(d, lo_e, hi_e, want, reverse)
                cands.extend(got)
                if len(got) == want:        # this layer may hold more beyond its last
                    last = got[-1]
                    if edge is None or (last > edge if reverse else last < edge):
                        edge = last
            if reverse:
                lo, hi = (edge if edge is not None else lo_e), hi_e
                cands = [e for e in cands if edge is None or e >= edge]
            else:
                lo, hi = lo_e, (edge + 1 if edge is not None else hi_e)
                cands = [e for e in cands if edge is None or e <= edge]
            net = {}
            for e in cands:
                net[e] = net.get(e, 0) + 1
            for _d, t in layers:
                for e in t.irange(lo, hi, (True, False)):
                    if e in net:
                        net[e] -= 1
            out = sorted((e for e, c in net.items() if c > 0), reverse=reverse)
            if len(out) >= n or edge is None:
                return out[:n]
            want *= 2

    def _merged(self, main, layers, i: int, j: int, lo_b, hi_b, n: int, reverse: bool) -> Chunk:
        """``chunk`` over main[i:j] (the entries in [lo_b, hi_b)) with the layers in front.

        Takes a window of main from the walk's start, widened until it holds
        ``n`` entries not removed (or reaches the end); only the tombstones and
        delta entries inside that window are looked at, so the cost does not
        grow with the number of recent writes elsewhere in the index.
        """
        m = n
        while True:
            a, b = (max(i, j - m), j) if reverse else (i, min(j, i + m))
            win = main[a:b]
            if not len(win):
                dead, wlo, whi = (), None, None
                break
            wlo, whi = self._to_ints(win[[0, -1]])
            dead = self._dead(layers, wlo, whi)
            live = len(win) - len(dead)
            whole = a <= i if reverse else b >= j
            if live >= n or whole:
                break
            m += n - live
        if reverse:
            # delta entries below the window come after its n live entries
            d = self._added(layers, wlo if wlo is not None and a > i else lo_b, hi_b, n, True)
        else:
            d = self._added(layers, lo_b, whi + 1 if whi is not None and b < j else hi_b, n, False)
        if not dead and not d:
            return self._split(win[::-1] if reverse else win)
        # split at C speed, then drop the dead and insert the delta entries by position
        # (each a bisect of the window that keeps the GIL: they are few)
        ch = self._split(win)
        keys, slots = ch.keys, ch.slots
        pos_in = self._pos_in
        at = [pos_in(win, e) for e in dead]         # ascending: dead is sorted
        for p in reversed(at):
            del keys[p]
            del slots[p]
        if d:
            d = sorted(d)
            for k, e in enumerate(d):
                p = pos_in(win, e)                  # in the window, less the dead before it
                p -= bisect_left(at, p)
                keys.insert(p + k, e >> SLOT_BITS)
                slots.insert(p + k, e & SLOT_MASK)
        if reverse:
            keys.reverse()
            slots.reverse()
        return Chunk(keys[:n], slots[:n])

    def _check(self) -> None:
        """Every array strictly sorted in ``dtype``; each layer's deltas absent and tombstones
        present below it; the encoding round-trips; reads agree with the layers; and every
        ``Index`` invariant of the entries."""
        main = self.main
        assert main.dtype == self.dtype, f"index on field {self.pos}: main has dtype {main.dtype}"
        runs = [r for layer in self.runs + (self.frozen or ()) for r in layer]
        for arr in [main] + [r.a for r in runs]:
            assert arr.dtype == self.dtype, f"index on field {self.pos}: an array has dtype {arr.dtype}"
            if len(arr) > 1:
                assert (arr[1:] > arr[:-1]).all(), f"index on field {self.pos}: an array is not strictly sorted"
        assert len(self.delta) + len(self.tomb) <= _SMALL_MAX, "small layer past its size"
        v = self.view
        assert len(self.runs) <= _MAX_RUNS, f"index on field {self.pos}: {len(self.runs)} runs"
        assert all(len(d) or len(t) for d, t in self.runs), f"index on field {self.pos}: an empty run"
        want_layers = list(self.frozen or ()) + list(self.runs)
        if self.delta or self.tomb:
            want_layers.append((self.delta, self.tomb))
        assert v.main is main and list(v.layers) == want_layers, \
            f"index on field {self.pos}: the published view is not the current layers"
        base = set(self._to_ints(main))
        for d, t in v.layers:
            if isinstance(d, Small):
                assert all(a < b for a, b in zip(d, d[1:])), "small delta not strictly sorted"
                assert all(a < b for a, b in zip(t, t[1:])), "small tomb not strictly sorted"
            assert not (set(d) & base), f"index on field {self.pos}: a delta entry is already present"
            assert set(t) <= base, f"index on field {self.pos}: a tombstone for an absent entry"
            base = (base - set(t)) | set(d)
        head = main[:64]
        assert self._to_np(self._to_ints(head)).tolist() == head.tolist(), "entry encoding does not round-trip"
        vals = self.entries()
        assert len(vals) == len(self) == len(base), "entry counts disagree"
        assert set(vals) == base, f"index on field {self.pos}: reads disagree with the layers"
        assert self.entry_form == EntryForm.PAIRS and self.packed
        assert self._batch_n == sum(len(d) + len(t) for d, t in self.runs), "batch layer size is off"
        assert self.frozen is None or not self._requested, "a fold is requested while one runs"
        self._check_entries(vals)


def _apply(d, t, A, R):
    """The layer (``d``, ``t``) with the layer (``A``, ``R``) on top of it, as one layer
    relative to what is below ``d``/``t``: a removal takes a delta entry out or
    becomes a tombstone, an addition cancels a tombstone or becomes a delta entry.
    All four sorted; returns the new (delta, tomb).  O(len(d) + len(t) + k log n)."""
    d, t = _onto(d, t, R)
    t, d = _onto(t, d, A)
    return d, t


def _onto(cancel, keep, xs):
    """``xs`` (sorted) applied to a layer's two arrays: each one present in ``cancel``
    takes it out, the others join ``keep``.  Returns (cancel, keep), read-only
    where new.  O(len(cancel) + len(keep) + len(xs)) in C, holding the GIL
    (_heldops.c: this runs inside a writer section, and each numpy call that
    gave the GIL up there let a reader in for up to a switch interval while
    the section held the latch)."""
    if len(xs):
        c, k = held_onto(cancel, keep, xs)
        if c.__class__ is bytes:
            cancel = np.frombuffer(c, xs.dtype)
        if k.__class__ is bytes:
            keep = np.frombuffer(k, xs.dtype)
    return cancel, keep


def _sorted(arr):
    """``arr`` (entries, distinct) sorted: up to ``_HELD_SORT_MAX`` entries in place,
    holding the GIL (_heldops.c; a read-only array is copied first), beyond by
    numpy (a bulk write: its sort is twice as fast, and worth letting other
    threads run meanwhile).  O(k log k)."""
    if len(arr) > _HELD_SORT_MAX:
        return np.sort(arr)
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = arr.copy()
    held_sort(arr)
    return arr


def _collapse(runs, empty):
    """The (delta, tomb) arrays of ``runs`` (pairs of Runs, oldest first) as one layer."""
    d = t = empty
    for rd, rt in runs:
        d, t = _apply(d, t, rd.a, rt.a)
    return d, t


def _take(sl, lo_e, hi_e, n: int, reverse: bool) -> list:
    """Up to ``n`` entries of layer ``sl`` (a Run or a Small) in [lo_e, hi_e), from the low or the high end."""
    if not sl:
        return []
    a = sl.bisect_left(lo_e) if lo_e is not None else 0
    b = sl.bisect_left(hi_e) if hi_e is not None else len(sl)
    if a >= b:
        return []
    if reverse:
        out = sl[max(a, b - n):b]
        out.reverse()
        return out
    return sl[a:min(b, a + n)]
