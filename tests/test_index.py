"""The index contract (index.Index) that SortedIndex and ArrayIndex both meet: the
shared key/entry/null code, SortedIndex against a plain model, and ``_check``."""

import bisect
import random

import numpy as np
import pytest

from aerostore.arrayindex import ArrayIndex, new_index
from aerostore.entries import SLOT_BITS, EntryForm
from aerostore.index import Index, SortedIndex
from aerostore.schema import Bool, Float, Int, Str, UInt

WIDE = Int(lo=-(1 << 63), hi=(1 << 64) - 1)      # keys past 64 bits: a SortedIndex of packed ints

FIELDS = {
    "str": (Str(), lambda r: r.choice(["", "a", "b", "ab", "zz", "\u00e9", f"k{r.randrange(40)}"])),
    "wide-int": (WIDE, lambda r: r.choice([r.randrange(-50, 50), -(1 << 63), (1 << 64) - 1,
                                           r.randrange(-(1 << 63), 1 << 64)])),
    "int32": (Int(bits=32), lambda r: r.randrange(-50, 50)),
    "float": (Float(), lambda r: r.choice([r.uniform(-1e3, 1e3), 0.0, -2.5, 1e308])),
    "bool": (Bool(), lambda r: r.random() < 0.5),
    "uint64": (UInt(bits=64), lambda r: r.choice([r.randrange(100), (1 << 64) - 1])),
}


def test_both_kinds_are_indexes_and_only_hold_their_own_storage():
    s = new_index(0, Str())
    w = new_index(1, WIDE)
    a = new_index(2, Float())
    assert type(s) is SortedIndex and type(w) is SortedIndex and type(a) is ArrayIndex
    assert all(isinstance(ix, Index) for ix in (s, w, a))
    assert not isinstance(a, SortedIndex)
    assert not hasattr(a, "sl")
    assert not hasattr(s, "main") and not hasattr(s, "delta")
    assert (s.entry_form, w.entry_form, a.entry_form) == (EntryForm.TUPLE, EntryForm.PACKED, EntryForm.PAIRS)
    with pytest.raises(TypeError):
        Index(0, "int", EntryForm.PACKED)             # abstract: the contract only


def test_the_entry_encoding_is_shared():
    """An ArrayIndex and a SortedIndex of one kind map values and entries alike."""
    for field, kind in ((Int(bits=32), "int"), (Float(), "float"), (Bool(), "bool")):
        a, s = new_index(0, field), SortedIndex(0, kind)
        for v in ([-3, 0, 7] if kind == "int" else [-1.5, 0.0, 2.25] if kind == "float" else [False, True]):
            k = a.key(v)
            assert k == s.key(v) and a.keys([v]) == s.keys([v]) == [k]
            for slot in (0, 5, (1 << SLOT_BITS) - 1):
                e = a.entry(k, slot)
                assert e == s.entry(k, slot) == (k << SLOT_BITS) | slot
                assert a.entry_key(e) == k and a.lo_entry(k) <= e < a.hi_entry(k)
    s = new_index(0, Str())
    assert s.entry(s.key("x"), 3) == ("x", 3) and s.entry_key(("x", 3)) == "x"
    assert s.lo_entry("x") <= ("x", 0) < ("x", (1 << SLOT_BITS) - 1) < s.hi_entry("x") < ("x\0", 0)


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_nulls_and_retire_behave_alike(name):
    field, gen = FIELDS[name]
    rnd = random.Random(1)
    ix = new_index(0, field)
    vals = [gen(rnd) for _ in range(40)]
    ix.build(vals[:10] + [None, None], list(range(12)))
    assert ix.nulls == {10, 11} and ix.ready
    ix.add_many([None, vals[12], None], [12, 13, 14])
    ix.add(None, 15)
    assert ix.nulls == {10, 11, 12, 14, 15}
    ix.remove_many([None, vals[12]], [10, 13])
    ix.remove(None, 15)
    assert ix.nulls == {11, 12, 14}
    ix._check()
    assert len(ix) == len(ix.entries()) == len({(ix.key(v), s) for v, s in zip(vals[:10], range(10))})
    ix.retire()
    assert not ix.ready and len(ix) == 0 and not ix.nulls and ix.entries() == []
    ix.add(vals[0], 1)
    ix.add_many([None, vals[1]], [2, 3])
    assert len(ix) == 0 and not ix.nulls and ix.pending == 0
    ix._check()
    ix.build([], [])
    assert ix.ready and len(ix) == 0
    ix._check()


def _check_reads(ix, want, rnd):
    cands = want[:] + [None]
    if ix.packed:
        cands += [e + d for e in want[:20] for d in (-1, 1)]
    for _ in range(15):
        lo, hi = rnd.choice(cands), rnd.choice(cands)
        a = bisect.bisect_left(want, lo) if lo is not None else 0
        b = bisect.bisect_left(want, hi) if hi is not None else len(want)
        inside = want[a:b] if b > a else []
        assert ix.count_between(lo, hi) == len(inside)
        slots = ix.slots_between(lo, hi)
        assert slots.dtype == np.int64
        assert set(slots.tolist()) >= {e[1] if not ix.packed else e & ((1 << SLOT_BITS) - 1) for e in inside}
        after = rnd.choice(cands)
        n = rnd.choice([1, 3, 50])
        assert list(ix.chunk(lo, hi, after, n)) == [e for e in inside if after is None or e > after][:n]
        assert list(ix.chunk(lo, hi, after, n, reverse=True)) == \
            [e for e in reversed(inside) if after is None or e < after][:n]


@pytest.mark.parametrize("name", ["str", "wide-int"])
@pytest.mark.parametrize("seed", range(3))
def test_sorted_index_matches_a_model(name, seed):
    field, gen = FIELDS[name]
    rnd = random.Random(seed)
    ix = new_index(0, field)
    assert type(ix) is SortedIndex
    present = set()

    def want():
        return sorted(ix.entry(ix.key(v), s) for v, s in present)

    for _ in range(250):
        op = rnd.random()
        if op < 0.4:
            v, s = gen(rnd), rnd.randrange(300)
            if (v, s) in present:
                ix.remove(v, s)
                present.discard((v, s))
            else:
                ix.add(v, s)
                present.add((v, s))
        elif op < 0.7:               # batches: small ones entry by entry, big ones rebuild the list
            pres = list(present)
            rnd.shuffle(pres)
            rm = pres[:rnd.choice([1, 5, 60])]
            ix.remove_many([v for v, _ in rm], [s for _, s in rm])
            present.difference_update(rm)
            add = {(gen(rnd), rnd.randrange(300)) for _ in range(rnd.choice([2, 40]))} - present
            ix.add_many([v for v, _ in add], [s for _, s in add])
            present |= add
        elif op < 0.75:
            ix.build([v for v, _ in present], [s for _, s in present])
        else:
            ix._check()
            assert ix.entries() == want() and len(ix) == len(present)
            _check_reads(ix, want(), rnd)
        assert ix.pending == 0 and not ix.wants_fold() and ix.fold_start(force=True) is None
    ix.settle()
    ix._check()
    assert ix.entries() == want()


def test_check_catches_broken_entries():
    s = new_index(0, Str())
    s.build(["a", "b"], [1, 2])
    s._check()
    s.sl.add(("c", 1 << SLOT_BITS))                   # a slot past SLOT_BITS
    with pytest.raises(AssertionError):
        s._check()
    a = new_index(0, Int(bits=32))
    a.build([1, 2], [1, 2])
    a._check()
    a.ready = False                                   # retired yet holding entries
    with pytest.raises(AssertionError):
        a._check()
    a = new_index(0, Int(bits=32))
    a.add(5, 1)
    e = a.entry(a.key(5), 1) + 1
    a.delta = a.delta.plus(e)                         # a delta entry ...
    a.tomb = a.tomb.plus(e)                           # ... and its tombstone in one layer: absent below
    a._publish()
    with pytest.raises(AssertionError):
        a._check()
    a = new_index(0, Int(bits=32))
    a.add(5, 1)
    a.delta = a.delta.plus(a.entry(a.key(6), 2))      # written but not published: readers miss it
    with pytest.raises(AssertionError):
        a._check()
