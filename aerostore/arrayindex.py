"""ArrayIndex: a SortedIndex whose settled entries live in one sorted numpy array.

Why: as Python ints in a SortedList an entry costs 36-48 bytes (the int object
and its list pointer); here it costs 8 or 16, and folding a big batch of writes
in is a C-speed sort, ``searchsorted``, ``delete`` and ``insert`` instead of a
Python-level filter and sort of every entry.  (numpy is a dependency for this.)

Entries are the packed ints of index.py, ``e = key << 32 | slot``, stored as:

- **narrow** (the key fits 32 bits: an int field with -2**31 <= lo, hi < 2**31,
  or bool): ``e`` itself, int64; an int field with 0 <= lo, hi < 2**32: uint64.
- **wide** (the key fits 64 bits: floats, 64-bit ints): complex128
  ``(e >> 43) + (e & (2**43 - 1))j``.  Both parts are below 2**53 in magnitude,
  so exact in a double, and numpy orders complex numbers by real part, then
  imaginary part: exactly the order of ``e``.

Layers hold the entries:

- ``main``: sorted, unique numpy array;
- ``delta``: SortedList of entries not in ``main`` (recent adds);
- ``tomb``: SortedList of entries of ``main`` that are removed;
- ``frozen``: while a fold runs, the (delta, tomb) pair being folded; the
  active ``delta``/``tomb`` then hold the writes made since, relative to
  ``(main - frozen tomb) | frozen delta``.

Writers apply their entries at once, under the table latch (the commit path,
before the commit is published; pruning, before the slot is freed or frozen),
O(log n) each into ``delta``/``tomb``.  A batch of at least ``budget``
entries (a bulk load) is folded into ``main`` by the writer at C speed
instead.  Once ``delta`` and ``tomb`` pass the budget (1/32 of ``main``, at
least 4096 entries), the table's maintainer (maintainer.py) folds them into a
new ``main`` in three steps: ``fold_start`` (under the latch, O(1): the layers
are frozen and fresh ones take the writes), ``fold_compute`` (no latch: numpy
sorts, deletes and inserts, O(n), mostly without the GIL), ``fold_finish``
(under the latch, O(1): the new array replaces ``main``).  Readers never fold:
a range count is a few bisects per layer; a walk looks only at the delta and
tomb entries inside the stretch it returns.

Not thread-safe by itself: the owning TableStore's latch guards every call.
"""

from __future__ import annotations

import time
from heapq import merge

import numpy as np
from sortedcontainers import SortedList

from .index import SLOT_BITS, SortedIndex

__all__ = ["ArrayIndex", "new_index"]

_M43 = (1 << 43) - 1
_M63 = (1 << 63) - 1
_HI_LIMIT = 1 << 53          # |real part| of any wide entry is at most this
_DELTA_MIN = 4096            # delta + tomb entries kept before folding into main
_SLICE = 4096                # entries converted per slice in a fold (the GIL is yielded between)


def _map_big_arrays() -> None:
    """Have glibc map every allocation of 1 MiB or more on its own (M_MMAP_THRESHOLD).

    Why: folding writes into ``main`` allocates and frees arrays of 8-16 MB per
    million entries.  glibc's default threshold rises to 32 MB after the first
    such free, so those arrays then come from the heap and their freed space
    stays resident: about 100 bytes per row at 1M rows.  Mapped on their own,
    they go back to the system when freed.  Only allocations of 1 MiB and more
    are affected; elsewhere (not glibc) this does nothing.
    """
    global _mapped
    if _mapped:
        return
    _mapped = True
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 1 << 20)           # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


_mapped = False


def new_index(pos: int, field) -> SortedIndex:
    """The index for ``field``: an ArrayIndex when its keys fit 64 bits, else a SortedIndex."""
    _map_big_arrays()
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
    so no Python int wider than 64 bits is made per entry.
    """

    __slots__ = ("keys", "slots")

    def __init__(self, keys: list, slots: list):
        self.keys = keys
        self.slots = slots

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


class ArrayIndex(SortedIndex):
    """Sorted (value, slot) entries of one numeric field; see the module docstring."""

    def __init__(self, pos: int, kind: str, dtype, key_dtype=None):
        super().__init__(pos, kind)
        self.sl = None                      # the SortedList of the base class is not used
        self.entry_form = "pairs"
        self.dtype = dtype
        self.wide = dtype is np.complex128
        self.key_dtype = key_dtype if self.wide else dtype
        self.main = np.empty(0, dtype)
        self.budget = _DELTA_MIN            # layer entries before a fold is due; see _set_main
        self.delta = SortedList()
        self.tomb = SortedList()
        self.frozen = None                  # (delta, tomb) being folded, or None
        self.on_due = None                  # called with self once a fold is due (the table's maintainer)
        self._requested = False
        self._gen = 0                       # bumped when main is replaced: stale fold jobs are dropped
        self.folds = 0                      # folds into main so far (tests count them)
        info = np.iinfo(dtype) if not self.wide else None
        self._lim = (int(info.min), int(info.max)) if info else None

    # -- conversions --------------------------------------------------------------
    def _to_np(self, entries: list):
        """numpy array of packed-int entries (any order)."""
        if not self.wide:
            return np.array(entries, dtype=self.dtype)
        out = np.empty(len(entries), np.complex128)
        out.real = [e >> 43 for e in entries]
        out.imag = [e & _M43 for e in entries]
        return out

    def _to_np_sliced(self, sl) -> np.ndarray:
        """``_to_np`` of a SortedList nobody writes any more, a slice at a time,
        yielding the GIL between slices (a fold runs beside readers)."""
        n = len(sl)
        out = np.empty(n, self.dtype)
        for i in range(0, n, _SLICE):
            out[i:i + _SLICE] = self._to_np(sl[i:i + _SLICE])
            time.sleep(0)
        return out

    def _to_ints(self, arr) -> list:
        """Packed-int entries of a numpy array, in its order."""
        if not self.wide:
            return arr.tolist()
        hs = arr.real.astype(np.int64).tolist()
        ls = arr.imag.astype(np.int64).tolist()
        return [(h << 43) | l for h, l in zip(hs, ls)]

    def _split(self, arr) -> Chunk:
        """A Chunk of a slice of ``main``, split into keys and slots at C speed."""
        if not self.wide:
            return Chunk((arr >> SLOT_BITS).tolist(), (arr & 0xFFFFFFFF).tolist())
        lo = arr.imag.astype(np.int64)
        hi = arr.real.astype(self.key_dtype)
        keys = (hi << 11) | (lo >> SLOT_BITS).astype(self.key_dtype)
        return Chunk(keys.tolist(), (lo & 0xFFFFFFFF).tolist())

    def _np_entries(self, values: list, slots: list):
        """Entries of non-null ``values`` at ``slots``, vectorised (no per-row Python)."""
        s = np.array(slots, dtype=np.int64)
        if not self.wide:
            if self.kind == "bool":
                k = np.array(values, dtype=np.int64)
            else:
                k = np.array(values, dtype=self.dtype)
            return (k << SLOT_BITS) | s.astype(k.dtype)
        if self.kind == "float":
            i = np.array(values, dtype=np.float64).view(np.int64)
            k = np.where(i >= 0, i, -(i & _M63))
        else:
            k = np.array(values, dtype=self.key_dtype)
        out = np.empty(len(k), np.complex128)
        out.real = k >> 11
        out.imag = ((k & 2047).astype(np.int64) << SLOT_BITS) | s
        return out

    def _pos(self, e, right: bool = False) -> int:
        """Position in ``main`` of packed-int entry ``e`` (bisect left, or right)."""
        main = self.main
        side = "right" if right else "left"
        if not self.wide:
            lo, hi = self._lim
            if e < lo:
                return 0
            if e > hi:
                return len(main)
            return int(main.searchsorted(e, side))
        h = e >> 43
        if h < -_HI_LIMIT:
            return 0
        if h > _HI_LIMIT:
            return len(main)
        return int(main.searchsorted(complex(h, e & _M43), side))

    # -- writes (at once, under the table latch) -------------------------------------
    def add(self, value, slot: int) -> None:
        """Record that ``slot`` has a version with ``value`` (absent before).  O(log n)."""
        if not self.ready:
            return
        if value is None:
            self.nulls.add(slot)
            return
        e = self.entry(self.key(value), slot)
        tomb = self.tomb
        if e in tomb:
            tomb.remove(e)
        else:
            self.delta.add(e)
            self._after_write()

    def remove(self, value, slot: int) -> None:
        """Record that no retained version of ``slot`` has ``value`` any more.  O(log n)."""
        if not self.ready:
            return
        if value is None:
            self.nulls.discard(slot)
            return
        e = self.entry(self.key(value), slot)
        delta = self.delta
        if e in delta:
            delta.remove(e)
        else:
            self.tomb.add(e)
            self._after_write()

    def _after_write(self) -> None:
        """Tell the owner once the layers pass the budget.  O(1)."""
        if (not self._requested and self.frozen is None
                and len(self.delta) + len(self.tomb) > self.budget):
            self._requested = True
            if self.on_due is not None:
                self.on_due(self)

    def _apply(self, adds, rms) -> None:
        """Add entries ``adds`` (each absent) and remove ``rms`` (each present).  O(log n) each.

        An entry removed from ``main`` (or from the frozen delta) becomes a
        tombstone, one added back cancels it; an entry not in the base becomes
        a delta entry, and removing it again takes it out.
        """
        if len(adds) + len(rms) >= self.budget:
            self._fold_now(self._to_np(list(adds)) if adds else None,
                           self._to_np(list(rms)) if rms else None)
            return
        delta, tomb = self.delta, self.tomb
        for e in rms:
            if e in delta:
                delta.remove(e)
            else:
                tomb.add(e)
        for e in adds:
            if e in tomb:
                tomb.remove(e)
            else:
                delta.add(e)
        self._after_write()

    def _add_many(self, values: list, slots: list) -> None:
        if len(values) >= self.budget:
            self._fold_now(self._np_entries(values, slots), None)
        else:
            self._apply(self._entries(values, slots), ())

    def _remove_many(self, values: list, slots: list) -> None:
        if len(values) >= self.budget:
            self._fold_now(None, self._np_entries(values, slots))
        else:
            self._apply((), self._entries(values, slots))

    def _set_main(self, main) -> None:
        """Replace ``main``; the layer budget follows its size (1/32, at least _DELTA_MIN)."""
        self.main = main
        self.budget = max(_DELTA_MIN, len(main) >> 5)

    @property
    def pending(self) -> int:
        """Entries in the layers in front of ``main`` (what a fold would take in)."""
        n = len(self.delta) + len(self.tomb)
        if self.frozen is not None:
            n += len(self.frozen[0]) + len(self.frozen[1])
        return n

    def wants_fold(self) -> bool:
        """True when the layers in front of ``main`` passed the budget and no fold runs.  O(1)."""
        return self.frozen is None and len(self.delta) + len(self.tomb) > self.budget

    def fold_start(self, force: bool = False):
        """Freeze the layers for a fold; the job for ``fold_compute``, or None (nothing due,
        or a fold already runs; ``force``: any layer at all is due).  Latch held, O(1)."""
        if self.frozen is not None or not (self.delta or self.tomb):
            return None
        if not force and not self.wants_fold():
            return None
        self.frozen = (self.delta, self.tomb)
        self.delta = SortedList()
        self.tomb = SortedList()
        self._requested = False
        self._gen += 1
        return (self._gen, self.main, self.frozen)

    def fold_compute(self, job) -> np.ndarray:
        """The new ``main``: the job's main with its frozen layers folded in.  No latch needed:
        nothing of the job is written any more.  O(n) at C speed."""
        _gen, main, (delta, tomb) = job
        A = self._to_np_sliced(delta)
        R = self._to_np_sliced(tomb)
        return self._merge(main, A, R)

    def fold_finish(self, job, main) -> bool:
        """Install a ``fold_compute`` result; False if ``main`` was replaced meanwhile.  Latch held, O(1)."""
        if job[0] != self._gen or self.frozen is not job[2]:
            return False
        self._set_main(main)
        self.frozen = None
        self._gen += 1
        self.folds += 1
        return True

    def settle(self) -> None:
        """Fold every layer into ``main`` now, in the caller's thread.  O(n)."""
        if self.delta or self.tomb or self.frozen is not None:
            self._fold_now(None, None)

    def _fold_now(self, A, R) -> None:
        """Fold every layer, plus sorted-or-not entry arrays ``A`` (absent) and ``R`` (present),
        into ``main`` in this thread; a fold running in the maintainer is dropped.  O(n)."""
        main = self.main
        if self.frozen is not None:
            d0, t0 = self.frozen
            main = self._merge(main, self._to_np(list(d0)), self._to_np(list(t0)))
        main = self._merge(main, self._to_np(list(self.delta)), self._to_np(list(self.tomb)))
        if A is not None or R is not None:
            empty = np.empty(0, self.dtype)
            main = self._merge(main, np.sort(A) if A is not None else empty,
                               np.sort(R) if R is not None else empty)
        self.delta = SortedList()
        self.tomb = SortedList()
        self.frozen = None
        self._requested = False
        self._set_main(main)
        self._gen += 1
        self.folds += 1

    def _merge(self, main, A, R):
        """``main`` without the entries ``R`` (all in it) and with ``A`` (none in it).  O(n)."""
        if len(R):
            R = np.sort(R)
            at = np.searchsorted(main, R)
            if len(at) and (at[-1] >= len(main) or not (main[at] == R).all()):
                raise AssertionError(f"index on field {self.pos}: removing entries it does not hold")
            main = np.delete(main, at)
        if len(A):
            A = np.sort(A)
            main = np.insert(main, np.searchsorted(main, A), A) if len(main) else A.astype(self.dtype)
        return main

    def retire(self) -> None:
        self.nulls = set()
        self.ready = False
        self._set_main(np.empty(0, self.dtype))
        self.delta = SortedList()
        self.tomb = SortedList()
        self.frozen = None
        self._requested = False
        self._gen += 1

    def build(self, values: list, slots: list) -> None:
        """Replace everything with entries for (values[i], slots[i]).  O(n log n) in C."""
        self.retire()
        values, slots, nulls = self._split_nulls(values, slots)
        self.nulls = set(nulls)
        self._set_main(np.sort(self._np_entries(values, slots)) if values else np.empty(0, self.dtype))
        self.ready = True

    # -- reads (the caller holds the table latch) ---------------------------------------
    def _layers(self):
        """The (delta, tomb) layers in front of ``main``, oldest first."""
        if self.frozen is None:
            return ((self.delta, self.tomb),)
        return (self.frozen, (self.delta, self.tomb))

    def __len__(self):
        n = len(self.main)
        for d, t in self._layers():
            n += len(d) - len(t)
        return n

    def entries(self) -> list:
        """Every present entry, sorted.  O(n)."""
        out = self._to_ints(self.main)
        for d, t in self._layers():
            if t:
                gone = set(t)
                out = [e for e in out if e not in gone]
            if d:
                out = list(merge(out, d))
        return out

    def count_between(self, lo_e, hi_e) -> int:
        i = self._pos(lo_e) if lo_e is not None else 0
        j = self._pos(hi_e) if hi_e is not None else len(self.main)
        c = j - i if j > i else 0
        for d, t in self._layers():
            for sl, sign in ((d, 1), (t, -1)):
                if sl:
                    a = sl.bisect_left(lo_e) if lo_e is not None else 0
                    b = sl.bisect_left(hi_e) if hi_e is not None else len(sl)
                    if b > a:
                        c += sign * (b - a)
        return c

    def chunk(self, lo_e, hi_e, after, n: int, reverse: bool = False) -> Chunk:
        """Up to ``n`` entries in [lo_e, hi_e), strictly after ``after`` in walk order (a Chunk).

        O(log n + n) when no recent write (delta, tomb) falls among the entries
        returned; otherwise those few are merged in (see ``_merged``).
        """
        main = self.main
        i = self._pos(lo_e) if lo_e is not None else 0
        j = self._pos(hi_e) if hi_e is not None else len(main)
        layered = bool(self.delta) or bool(self.tomb) or self.frozen is not None
        if not reverse:
            lo_b = lo_e
            if after is not None:
                i = max(i, self._pos(after, right=True))
                lo_b = after + 1 if lo_e is None else max(lo_e, after + 1)
            if not layered:
                return self._split(main[i:min(j, i + n)]) if i < j else _EMPTY
            return self._merged(i, j, lo_b, hi_e, n, False)
        hi_b = hi_e
        if after is not None:
            j = min(j, self._pos(after))
            hi_b = after if hi_e is None else min(hi_e, after)
        if not layered:
            return self._split(main[max(i, j - n):j][::-1]) if i < j else _EMPTY
        return self._merged(i, j, lo_e, hi_b, n, True)

    def slots_between(self, lo_e, hi_e) -> np.ndarray:
        """Slots of the entries in [lo_e, hi_e), as int64, a superset: tombstoned entries are
        kept (the caller rechecks every slot against its row).  O(log n + k) at C speed."""
        i = self._pos(lo_e) if lo_e is not None else 0
        j = self._pos(hi_e) if hi_e is not None else len(self.main)
        win = self.main[i:j] if j > i else self.main[:0]
        out = (win.imag.astype(np.int64) if self.wide else win.astype(np.int64)) & 0xFFFFFFFF
        extra = []
        for d, _t in self._layers():
            if d:
                extra.extend(e & 0xFFFFFFFF for e in d.irange(lo_e, hi_e, (True, False)))
        if extra:
            out = np.concatenate((out, np.array(extra, np.int64)))
        return out

    def _dead(self, wlo: int, whi: int) -> list:
        """Entries of ``main`` in [wlo, whi] that are removed, sorted."""
        if self.frozen is None:
            return list(self.tomb.irange(wlo, whi)) if self.tomb else []
        d0, t0 = self.frozen
        out = list(t0.irange(wlo, whi)) if t0 else []
        if self.tomb:
            # a tombstone of the active layer removes a main entry, or a frozen delta one
            out.extend(e for e in self.tomb.irange(wlo, whi) if e not in d0)
            out.sort()
        return out

    def _added(self, lo_e, hi_e, n: int, reverse: bool) -> list:
        """Up to ``n`` present entries not in ``main`` in [lo_e, hi_e), from the low or the high end."""
        if self.frozen is None:
            return _take(self.delta, lo_e, hi_e, n, reverse)
        d0 = self.frozen[0]
        tomb = self.tomb
        want = n
        while True:
            got = _take(d0, lo_e, hi_e, want, reverse)
            live = [e for e in got if e not in tomb] if tomb else got
            if len(live) >= n or len(got) < want:
                break
            want += n - len(live)
        out = live[:n] + _take(self.delta, lo_e, hi_e, n, reverse)
        out.sort(reverse=reverse)
        return out[:n]

    def _merged(self, i: int, j: int, lo_b, hi_b, n: int, reverse: bool) -> Chunk:
        """``chunk`` over main[i:j] (the entries in [lo_b, hi_b)) with the layers in front.

        Takes a window of main from the walk's start, widened until it holds
        ``n`` entries not removed (or reaches the end); only the tombstones and
        delta entries inside that window are looked at, so the cost does not
        grow with the number of recent writes elsewhere in the index.
        """
        main = self.main
        m = n
        while True:
            a, b = (max(i, j - m), j) if reverse else (i, min(j, i + m))
            win = main[a:b]
            if not len(win):
                dead, wlo, whi = (), None, None
                break
            wlo, whi = self._to_ints(win[[0, -1]])
            dead = self._dead(wlo, whi)
            live = len(win) - len(dead)
            whole = a <= i if reverse else b >= j
            if live >= n or whole:
                break
            m += n - live
        if reverse:
            # delta entries below the window come after its n live entries
            d = self._added(wlo if wlo is not None and a > i else lo_b, hi_b, n, True)
        else:
            d = self._added(lo_b, whi + 1 if whi is not None and b < j else hi_b, n, False)
        if not dead and not d:
            return self._split(win[::-1] if reverse else win)
        # split at C speed, then drop the dead and insert the delta entries by position
        ch = self._split(win)
        keys, slots = ch.keys, ch.slots
        if dead:
            at = win.searchsorted(self._to_np(dead))
            for p in reversed(at.tolist()):
                del keys[p]
                del slots[p]
            win = np.delete(win, at)
        if d:
            d = sorted(d)
            for k, (p, e) in enumerate(zip(win.searchsorted(self._to_np(d)).tolist(), d)):
                keys.insert(p + k, e >> SLOT_BITS)
                slots.insert(p + k, e & 0xFFFFFFFF)
        if reverse:
            keys.reverse()
            slots.reverse()
        return Chunk(keys[:n], slots[:n])

    def _check(self) -> None:
        main = self.main
        assert main.dtype == self.dtype, f"index on field {self.pos}: main has dtype {main.dtype}"
        if len(main) > 1:
            assert (main[1:] > main[:-1]).all(), f"index on field {self.pos}: main not strictly sorted"
        base = set(self._to_ints(main))
        for d, t in self._layers():
            d._check()
            t._check()
            assert not (set(d) & base), f"index on field {self.pos}: a delta entry is already present"
            assert set(t) <= base, f"index on field {self.pos}: a tombstone for an absent entry"
            base = (base - set(t)) | set(d)
        head = main[:64]
        assert self._to_np(self._to_ints(head)).tolist() == head.tolist(), "entry encoding does not round-trip"
        vals = self.entries()
        assert len(vals) == len(self) == len(set(vals)) == len(base), "duplicate index entries"
        assert set(vals) == base, f"index on field {self.pos}: reads disagree with the layers"


def _take(sl, lo_e, hi_e, n: int, reverse: bool) -> list:
    """Up to ``n`` entries of SortedList ``sl`` in [lo_e, hi_e), from the low or the high end."""
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
