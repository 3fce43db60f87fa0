"""Where a table's memory goes: bytes per part of one TableStore, walked exactly.

``table_memory(store)`` (``Database.memory(table)`` is the public door) walks
the table's structures with ``sys.getsizeof`` (which includes the GC header of
tracked objects and a list's, dict's or set's spare capacity) and counts each
numpy array's header and data buffer.  ``tracemalloc`` traces the same, plus
the 4 bytes CPython 3.11 pads each int object with (tests/test_memory.py
checks both); resident memory adds the allocator's rounding of small objects
up to 16 bytes.

Parts, in the order they claim objects (an object held by several parts
counts once, in the first that reaches it):

- ``keys``: the key strings: every key of the key map (the same objects are
  the settled slots' entries in ``rows``), and any other key string object a
  slot or a version holds (an equal copy, brought by the write that made it);
- ``key_dict``: the key map ``slots`` (keymap.py: its table and its key array;
  it holds no int objects);
- ``rows``: the heap's ``rows`` list (a pointer a slot, with spare capacity:
  a settled slot's key string, a chain's head Version, or None) and the
  free-slot list with its ints;
- ``columns``: ``TableStore.columns`` (columns.py: the only copy of the
  settled rows' values): the ``state`` array and per numeric field its values
  and null arrays (their capacity, not just the slots in use), per str field
  (or int field too wide for 64 bits) its list (capacity too: None past the
  rows and in free or chained slots) and the str (or int) objects it holds,
  the dicts of these, and the published ``arrays`` tuple with its row views
  (a memoryview per numeric array, the lists themselves);
- ``version_chains``: the ``Version`` objects of the slots in ``unfrozen``,
  the row tuples they hold, the values only those tuples hold (a value a
  chained slot's columns still hold, such as the old string of an update,
  counts in columns), the ``unfrozen`` set (and its slot ints) and the per-commit row counts
  (``live``);
- ``indexes``: per index its object, its numpy arrays (``main``, the batch
  layer's runs, the ``frozen`` runs being folded), the small layers of an
  ArrayIndex (``Small`` lists of packed ints) and its published ``view``, the
  SortedList of a SortedIndex (its packed ints or ``(value, slot)`` tuples: the
  value strings are the columns', counted there) and its null set;
- ``total``: the sum of the parts.

Not counted: objects the interpreter owns whatever the table holds (None,
True, False, the small ints -5..256, the empty tuple and string, one-letter
Latin-1 strings: CPython allocates them once), the TableStore object, its
schema, latch, maintainer, index-only count ``picture`` and key buffer
(``keyscan``, docs/architecture.md says its size), the attribute storage of
index objects (a few hundred bytes per index), and the buffer records behind
the columns' memoryviews (about 200 bytes per memoryview, two per numeric
field).  An object the table shares with a caller (a row tuple the
application still holds, in a version) counts in full: the table keeps it
alive.

How sharing is found without a set of every object's id (which would double
the table's size at a million rows): an object whose reference count shows
one holder is held only by the container the walk reached it through, so
nothing else can reach it; only objects with more holders are recorded (by
id), except the key map's key strings (``rows`` and the versions hold them
too), recognised through a list by slot instead.
The walk takes the table latch shared, so writers wait for it (0.65 s at 1M
settled FlightState rows): it is O(n), mostly in C calls with a Python step
per shared object and per version, for diagnostics, not for a hot path.
"""

from __future__ import annotations

from collections import deque
from itertools import chain, compress, repeat
from operator import attrgetter, gt, is_not, itemgetter, lt
from sys import getrefcount, getsizeof

import numpy as np

__all__ = ["PARTS", "table_memory"]

PARTS = ("keys", "key_dict", "rows", "columns", "version_chains", "indexes")


def _calibrate() -> int:
    """The reference count ``_Walk.count`` sees for an object with one holder."""
    home = [float(len(PARTS))]          # a fresh float, held by ``home`` only
    objs = list(home)
    return list(map(getrefcount, objs))[0]


_ONE_HOLDER = _calibrate()


def _interpreter_owned(o) -> bool:
    """Objects CPython allocates once, whatever holds them: they cost a table nothing."""
    c = o.__class__
    if c is int:
        return -5 <= o <= 256
    if c is str:
        return len(o) < 2 and (not o or ord(o) < 256)
    if c is tuple:
        return not o
    return o is None or c is bool


def table_memory(store) -> dict:
    """Bytes per part of ``store`` (a heap.TableStore), plus ``"total"``; see the module
    docstring for what each part holds.  O(rows + versions + values in string
    columns + index entries in SortedLists), mostly in C, under the table's
    shared latch."""
    with store.latch.shared:
        return _Walk(store).run()


class _Walk:
    """One walk over one table: the ids of the shared objects counted so far, and
    the key map's keys by slot (to recognise them without ids)."""

    def __init__(self, store):
        self.store = store
        self.seen: set = set()
        slots = store.slots
        n = len(store.rows)
        self.dkeys = dk = [None] * n
        deque(map(dk.__setitem__, slots.values(), slots.keys()), maxlen=0)

    def run(self) -> dict:
        out = dict.fromkeys(PARTS, 0)
        st = self.store
        # keys, key map: every key is distinct, so no dedup needed
        keys = st.slots.keys()
        out["keys"] = sum(map(getsizeof, keys)) - sum(map(getsizeof, compress(
            keys, map(lt, map(len, keys), repeat(2)))))     # one-letter keys: the interpreter's
        del keys
        out["key_dict"] = getsizeof(st.slots)
        self._rows(out)
        out["columns"] = self._columns()
        self._chains(out)
        out["indexes"] = self._indexes()
        out["total"] = sum(out[p] for p in PARTS)
        return out

    # -- counting ----------------------------------------------------------------
    def count(self, objs: list) -> tuple[int, set]:
        """(bytes of the objects in ``objs`` not counted before, ids of those skipped).

        ``objs`` is a fresh list; the walk holds no other reference to them, so an
        object with ``_ONE_HOLDER`` references has one holder besides ``objs``:
        the container it was taken from.  O(len) in C, plus Python for the shared."""
        if not objs:
            return 0, set()
        total = sum(map(getsizeof, objs))
        rcs = list(map(getrefcount, objs))
        shared = list(compress(objs, map(gt, rcs, repeat(_ONE_HOLDER))))
        del rcs
        skipped = set()
        if not shared:
            return total, skipped
        seen, dk, slots = self.seen, self.dkeys, self.store.slots
        for o in shared:
            i = id(o)
            if i in seen:
                skipped.add(i)
                total -= getsizeof(o)
                continue
            c = o.__class__
            s = slots.get(o) if c is str else None
            if _interpreter_owned(o) or (s is not None and dk[s] is o):
                skipped.add(i)      # the interpreter's, or counted by the keys part
                total -= getsizeof(o)
                continue
            seen.add(i)
        return total, skipped

    def count_all(self, objs: list) -> int:
        return self.count(objs)[0]

    def _tuples(self, tups: list, slots_of=None) -> tuple[int, int]:
        """(bytes of the row tuples ``tups`` and their non-key values, bytes of their key
        strings that are not the key map's).  ``slots_of``: each tuple's slot, or None
        when tuple i sits in slot i."""
        n, skipped = self.count(tups)
        if skipped:
            keep = [id(t) not in skipped for t in tups]
            tups = list(compress(tups, keep))
            if slots_of is not None:
                slots_of = list(compress(slots_of, keep))
            else:
                slots_of = list(compress(range(len(keep)), keep))
        if not tups:
            return n, 0
        kp = self.store.key_pos
        keys = 0
        for p in range(len(tups[0])):
            col = list(map(itemgetter(p), tups))
            if p == kp:
                dk = self.dkeys if slots_of is None else list(map(self.dkeys.__getitem__, slots_of))
                own = list(compress(col, map(is_not, col, dk)))
                del col, dk                 # ``own`` the only extra holder left
                keys += self.count_all(own)
                del own
            else:
                n += self.count_all(col)
                del col
        return n, keys

    # -- parts ---------------------------------------------------------------------
    def _rows(self, out: dict) -> None:
        st = self.store
        rows = st.rows
        out["rows"] = getsizeof(rows) + getsizeof(st.free) + self.count_all(list(st.free))
        # a settled slot holds the key map's string (the common case, skipped at C
        # speed); the rest are Versions, None, and key copies
        other = list(compress(rows, map(is_not, rows, self.dkeys)))
        copies = [r for r in other if r.__class__ is str]
        del other                           # ``copies`` the only extra holder left
        out["keys"] += self.count_all(copies)

    def _chains(self, out: dict) -> None:
        st = self.store
        rows = st.rows
        unfrozen = list(st.unfrozen)
        n = getsizeof(st.unfrozen) + self.count_all(unfrozen)
        versions, vslots = [], []
        for slot in unfrozen:
            v = rows[slot]
            if v is None or v.__class__ is str:
                continue
            while v is not None:
                versions.append(v)
                vslots.append(slot)
                v = v.prev
        del unfrozen
        n += self.count_all(versions)
        vt = list(map(attrgetter("values"), versions))
        del versions
        b, keys = self._tuples(vt, vslots)
        live = list(st.live)
        n += getsizeof(st.live) + self.count_all(live) + self.count_all(list(chain.from_iterable(live)))
        out["version_chains"] = n + b
        out["keys"] += keys

    def _array(self, a) -> int:
        """An ndarray's header, and its data buffer once (a view's, through its base)."""
        if a is None or id(a) in self.seen:
            return 0
        self.seen.add(id(a))
        n = getsizeof(a)            # includes the data when ``a`` owns it
        b = a.base
        if b is not None:
            if isinstance(b, np.ndarray):
                n += self._array(b)
            elif id(b) not in self.seen:
                self.seen.add(id(b))
                n += getsizeof(b) if isinstance(b, (bytes, bytearray)) else a.nbytes
        return n

    def _columns(self) -> int:
        c = self.store.columns
        views = c.arrays[3]
        n = getsizeof(c) + sum(map(getsizeof, (c.cols, c.nulls, c.strs, c.dtypes, c.strpos, c.arrays, views)))
        n += self._array(c.state)
        for a in chain(c.cols.values(), c.nulls.values()):
            n += self._array(a)
        n += sum(getsizeof(v) for v in views if v.__class__ is memoryview)
        for lst in c.strs.values():
            vals = list(compress(lst, map(is_not, lst, repeat(None))))
            n += getsizeof(lst) + self.count_all(vals)
            del vals
        return n

    def _sorted_list(self, sl) -> int:
        """A SortedList: its object, its lists, its entries (ints or tuples and theirs)."""
        lists = sl._lists
        n = getsizeof(sl) + getsizeof(lists) + sum(map(getsizeof, lists))
        n += getsizeof(sl._maxes) + getsizeof(sl._index)
        entries = list(chain.from_iterable(lists))
        b, skipped = self.count(entries)
        n += b
        tups = [e for e in entries if e.__class__ is tuple and id(e) not in skipped]
        del entries
        for p in range(len(tups[0]) if tups else 0):
            col = list(map(itemgetter(p), tups))
            n += self.count_all(col)
            del col
        return n + self.count_all(list(sl._maxes)) + self.count_all(list(sl._index))

    def _small(self, sl) -> int:
        """A small layer (arrayindex.Small): the list and its int entries."""
        b, _skipped = self.count(list(sl))
        return getsizeof(sl) + b

    def _run(self, r) -> int:
        return getsizeof(r) + self._array(r.a)

    def _indexes(self) -> int:
        st = self.store
        n = getsizeof(st.indexes)
        for ix in st.indexes.values():
            n += getsizeof(ix) + getsizeof(ix.nulls) + self.count_all(list(ix.nulls))
            if hasattr(ix, "main"):         # ArrayIndex
                n += self._array(ix.main) + self._array(ix._empty)
                for runs in (ix.runs, ix.frozen or ()):
                    n += getsizeof(runs) + sum(getsizeof(layer) + sum(map(self._run, layer)) for layer in runs)
                n += self._small(ix.delta) + self._small(ix.tomb)
                n += getsizeof(ix.view) + getsizeof(ix.view.layers)
            else:                           # SortedIndex
                n += self._sorted_list(ix.sl)
        return n
