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

Three layers hold the settled entries:

- ``main``: sorted, unique numpy array;
- ``delta``: SortedList of entries not in ``main`` (recent adds);
- ``tomb``: SortedList of entries of ``main`` that are removed.

The present entries are ``(main - tomb) | delta``.  A small settle (single-row
commits) touches only ``delta``/``tomb``, O(log n) per entry; once they hold
more than ``len(main) / 32`` entries (at least 4096), or a settle brings a big
batch, everything is folded into ``main``: O(n) at C speed, amortised O(1) per
write.  Reads combine the layers: a range count is three pairs of bisects; a
walk looks only at the delta and tomb entries inside the stretch it returns.
The cost of the trade: the fold is O(n) at once (13 ms for a narrow index of
1M entries, 28 ms for a wide one, measured here), paid by the first reader of
that index after the budget is passed, not spread over the writes.

Not thread-safe by itself: the owning TableStore's latch guards every call.
"""

from __future__ import annotations

from heapq import merge

import numpy as np
from sortedcontainers import SortedList

from .index import SLOT_BITS, SortedIndex, net_writes

__all__ = ["ArrayIndex", "new_index"]

_M43 = (1 << 43) - 1
_M63 = (1 << 63) - 1
_HI_LIMIT = 1 << 53          # |real part| of any wide entry is at most this
_DELTA_MIN = 4096            # delta + tomb entries kept before folding into main
_BULK = 64                   # add_many/remove_many of at least this many go vectorised


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
        self.delta = SortedList()
        self.tomb = SortedList()
        self._adds_np: list = []            # vectorised log chunks (numpy arrays of entries)
        self._rms_np: list = []
        self._n_rms_np = 0
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

    # -- writes (lazy, as in SortedIndex) ---------------------------------------------
    def _log_adds(self, values: list, slots: list) -> None:
        if len(values) < _BULK:
            self.adds.extend(self._entries(values, slots))
        else:
            self._adds_np.append(self._np_entries(values, slots))

    def _log_rms(self, values: list, slots: list) -> None:
        if len(values) < _BULK:
            self.rms.extend(self._entries(values, slots))
        else:
            self._rms_np.append(self._np_entries(values, slots))
            self._n_rms_np += len(values)

    def _logged_rms(self) -> int:
        return self._n_rms_np + len(self.rms)

    @property
    def pending(self) -> int:
        return (len(self.adds) + len(self.rms) + sum(map(len, self._adds_np))
                + self._n_rms_np)

    def settle(self) -> None:
        """Fold the logged writes in: into delta/tomb when few, else into main.

        Set semantics make each entry's logged writes alternate, so the net
        effect per entry is in {-1, 0, +1} (see SortedIndex.settle).
        """
        if not self._adds_np and not self._rms_np:
            adds, rms = self.adds, self.rms
            if not adds and not rms:
                return
            self.adds = []
            self.rms = []
            A, R = net_writes(adds, rms)
            if len(A) + len(R) + len(self.delta) + len(self.tomb) <= self._budget():
                self._apply_small(A, R)
            else:
                self._fold(np.sort(self._to_np(A)), np.sort(self._to_np(list(R))))
            return
        parts_a = self._adds_np
        parts_r = self._rms_np
        if self.adds:
            parts_a.append(self._to_np(self.adds))
        if self.rms:
            parts_r.append(self._to_np(self.rms))
        self.adds = []
        self.rms = []
        self._adds_np = []
        self._rms_np = []
        self._n_rms_np = 0
        A = np.sort(np.concatenate(parts_a)) if parts_a else np.empty(0, self.dtype)
        R = np.sort(np.concatenate(parts_r)) if parts_r else np.empty(0, self.dtype)
        if (len(A) > 1 and (A[1:] == A[:-1]).any()) or (len(R) > 1 and (R[1:] == R[:-1]).any()):
            # an entry written more than twice since the last settle: net by counting
            a, r = net_writes(self._to_ints(A), self._to_ints(R))
            A = np.sort(self._to_np(a))
            R = np.sort(self._to_np(list(r)))
        elif len(A) and len(R):
            A, R = _cancel(A, R)
        self._fold(A, R)

    def _budget(self) -> int:
        return max(_DELTA_MIN, len(self.main) >> 5)

    def _apply_small(self, A, R) -> None:
        """Apply net adds ``A`` and removals ``R`` (packed ints) to delta/tomb.  O(log n) each."""
        delta, tomb = self.delta, self.tomb
        for e in R:
            if e in delta:
                delta.remove(e)
            else:
                tomb.add(e)
        for e in A:
            if e in tomb:
                tomb.remove(e)
            else:
                delta.add(e)

    def _fold(self, A, R) -> None:
        """Fold sorted net adds ``A`` and removals ``R`` (numpy), delta and tomb into main.  O(n)."""
        dt = self.dtype
        if self.delta:
            D = self._to_np(list(self.delta))
            if len(R):
                D, R = _cancel(D, R)
            A = np.concatenate((A, D)) if len(A) else D
        if self.tomb:
            T = self._to_np(list(self.tomb))
            if len(A):
                A, T = _cancel(A, T)
            R = np.concatenate((R, T)) if len(R) else T
        self.delta = SortedList()
        self.tomb = SortedList()
        main = self.main
        if len(R):
            R = np.sort(R)
            at = np.searchsorted(main, R)
            if len(at) and (at[-1] >= len(main) or not (main[at] == R).all()):
                raise AssertionError(f"index on field {self.pos}: removing entries it does not hold")
            main = np.delete(main, at)
        if len(A):
            A = np.sort(A)
            main = np.insert(main, np.searchsorted(main, A), A) if len(main) else A.astype(dt)
        self.main = main

    def retire(self) -> None:
        self.adds = []
        self.rms = []
        self.nulls = set()
        self.ready = False
        self.main = np.empty(0, self.dtype)
        self.delta = SortedList()
        self.tomb = SortedList()
        self._adds_np = []
        self._rms_np = []
        self._n_rms_np = 0

    def build(self, values: list, slots: list) -> None:
        """Replace everything with entries for (values[i], slots[i]).  O(n log n) in C."""
        self.retire()
        values, slots, nulls = self._split_nulls(values, slots)
        self.nulls = set(nulls)
        self.main = np.sort(self._np_entries(values, slots)) if values else np.empty(0, self.dtype)
        self.ready = True

    # -- reads (call settle() first) ------------------------------------------------------
    def __len__(self):
        return len(self.main) + len(self.delta) - len(self.tomb)

    def entries(self) -> list:
        """Every present entry, sorted.  O(n)."""
        out = self._to_ints(self.main)
        if self.tomb:
            t = set(self.tomb)
            out = [e for e in out if e not in t]
        if self.delta:
            out = list(merge(out, self.delta))
        return out

    def count_between(self, lo_e, hi_e) -> int:
        i = self._pos(lo_e) if lo_e is not None else 0
        j = self._pos(hi_e) if hi_e is not None else len(self.main)
        c = j - i if j > i else 0
        for sl, sign in ((self.delta, 1), (self.tomb, -1)):
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
        layered = bool(self.delta) or bool(self.tomb)
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

    def _merged(self, i: int, j: int, lo_b, hi_b, n: int, reverse: bool) -> Chunk:
        """``chunk`` over main[i:j] (the entries in [lo_b, hi_b)) with delta and tomb.

        Takes a window of main from the walk's start, widened until it holds
        ``n`` entries not in ``tomb`` (or reaches the end); only the tombs and
        delta entries inside that window are looked at, so the cost does not
        grow with the number of recent writes elsewhere in the index.
        """
        main, delta, tomb = self.main, self.delta, self.tomb
        m = n
        while True:
            a, b = (max(i, j - m), j) if reverse else (i, min(j, i + m))
            win = main[a:b]
            if not len(win):
                dead, wlo, whi = (), None, None
                break
            wlo, whi = self._to_ints(win[[0, -1]])
            dead = list(tomb.irange(wlo, whi)) if tomb else ()
            live = len(win) - len(dead)
            whole = a <= i if reverse else b >= j
            if live >= n or whole:
                break
            m += n - live
        if reverse:
            # delta entries below the window come after its n live entries
            d = _take(delta, wlo if wlo is not None and a > i else lo_b, hi_b, n, True)
        else:
            d = _take(delta, lo_b, whi + 1 if whi is not None and b < j else hi_b, n, False)
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
        self.delta._check()
        self.tomb._check()
        if self.delta:
            d = self._to_np(list(self.delta))
            at = np.searchsorted(main, d)
            inside = at < len(main)
            assert not (main[at[inside]] == d[inside]).any(), "delta entry also in main"
        if self.tomb:
            t = self._to_np(list(self.tomb))
            at = np.searchsorted(main, t)
            assert (at < len(main)).all() and (main[np.minimum(at, len(main) - 1)] == t).all(), \
                "tombstone for an entry main does not hold"
        assert len(self.delta) + len(self.tomb) <= max(self._budget(), 2 * _DELTA_MIN), "delta not folded"
        head = main[:64]
        assert self._to_np(self._to_ints(head)).tolist() == head.tolist(), "entry encoding does not round-trip"
        vals = self.entries()
        assert len(vals) == len(self) == len(set(vals)), "duplicate index entries"


def _cancel(A, R):
    """Sorted unique arrays A and R without their common entries."""
    at = np.searchsorted(R, A)
    at_c = np.minimum(at, len(R) - 1)
    hit = R[at_c] == A
    if not hit.any():
        return A, R
    keep_r = np.ones(len(R), bool)
    keep_r[at_c[hit]] = False
    return A[~hit], R[keep_r]


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
