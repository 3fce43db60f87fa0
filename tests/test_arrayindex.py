"""ArrayIndex against a plain sorted-list model: every layer (main, delta, tomb, logs),
both encodings (narrow ints, wide complex), every read (count, chunk both ways)."""

import random

import numpy as np
import pytest

from aerostore import arrayindex
from aerostore.arrayindex import ArrayIndex, new_index
from aerostore.index import SortedIndex
from aerostore.schema import Bool, Float, Int, Str, UInt
from test_index import _check_reads     # reads of any index against a sorted model

FIELDS = {
    "float": (Float(), lambda r: r.choice([r.uniform(-1e6, 1e6), r.choice([0.0, 1.5, -2.25, 1e308, -1e308, 5e-324, -5e-324])])),
    "int32": (Int(bits=32), lambda r: r.choice([r.randrange(-50, 50), -(1 << 31), (1 << 31) - 1])),
    "uint32": (UInt(bits=32), lambda r: r.choice([r.randrange(0, 100), (1 << 32) - 1])),
    "int64": (Int(bits=64), lambda r: r.choice([r.randrange(-100, 100), -(1 << 63), (1 << 63) - 1, r.randrange(-(1 << 63), 1 << 63)])),
    "uint64": (UInt(bits=64), lambda r: r.choice([r.randrange(0, 100), (1 << 64) - 1, r.randrange(0, 1 << 64)])),
    "bool": (Bool(), lambda r: r.random() < 0.5),
}


def test_new_index_picks_the_encoding():
    assert new_index(0, Int(bits=16)).dtype.__name__ == "int64"
    assert new_index(0, UInt(bits=32)).dtype.__name__ == "uint64"
    assert new_index(0, Float()).wide and new_index(0, Int(bits=64)).wide and new_index(0, UInt(bits=64)).wide
    assert type(new_index(0, Str())) is SortedIndex


class Model:
    def __init__(self, ix):
        self.ix = ix
        self.present = set()            # (value, slot)

    def entries(self):
        ix = self.ix
        return sorted(ix.entry(ix.key(v), s) for v, s in self.present)

    def toggle(self, v, s):
        """Remove (v, s) if present, else add it: in the index and in the model."""
        if (v, s) in self.present:
            self.ix.remove(v, s)
            self.present.discard((v, s))
        else:
            self.ix.add(v, s)
            self.present.add((v, s))


@pytest.mark.parametrize("name", sorted(FIELDS))
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("delta_min,small_max", [(16, 256), (100000, 6)],
                         ids=["fold-often", "batch-layer"])
def test_array_index_matches_a_sorted_list(name, seed, delta_min, small_max, monkeypatch):
    # fold-often: most batches fold into main at once; batch-layer: batches of 16+
    # entries go to the numpy batch layer, and the small layer spills into it often
    monkeypatch.setattr(arrayindex, "_DELTA_MIN", delta_min)
    monkeypatch.setattr(arrayindex, "_SMALL_MAX", small_max)
    field, gen = FIELDS[name]
    rnd = random.Random(seed)
    ix = new_index(0, field)
    assert isinstance(ix, ArrayIndex)
    m = Model(ix)
    nslots = 400
    for step in range(300):
        op = rnd.random()
        if op < 0.35:            # single writes
            for _ in range(rnd.randrange(1, 6)):
                m.toggle(gen(rnd), rnd.randrange(nslots))
        elif op < 0.7:           # bulk writes, vectorised when >= 64
            n = rnd.choice([5, 70, 200])
            add_v, add_s, rm_v, rm_s = [], [], [], []
            pres = list(m.present)
            for _ in range(n):
                if pres and rnd.random() < 0.5:
                    v, s = pres.pop(rnd.randrange(len(pres)))
                    if (v, s) in m.present:
                        rm_v.append(v)
                        rm_s.append(s)
                        m.present.discard((v, s))
                else:
                    v, s = gen(rnd), rnd.randrange(nslots)
                    if (v, s) not in m.present:
                        add_v.append(v)
                        add_s.append(s)
                        m.present.add((v, s))
            ix.remove_many(rm_v, rm_s)
            ix.add_many(add_v, add_s)
        elif op < 0.85:
            ix._check()
            want = m.entries()
            assert ix.entries() == want
            assert len(ix) == len(want)
            _check_reads(ix, want, rnd)
        else:
            if rnd.random() < 0.5:
                ix.settle()
            else:                        # a background fold, with writes and reads in between
                job = ix.fold_start(force=True)
                if job is not None:
                    main = ix.fold_compute(job)
                    m.toggle(gen(rnd), rnd.randrange(nslots))
                    _check_reads(ix, m.entries(), rnd)
                    assert ix.fold_finish(job, main)
            ix._check()
            _check_reads(ix, m.entries(), rnd)
    ix.settle()
    ix._check()
    assert ix.entries() == m.entries()


def test_bulk_writes_that_cancel_and_repeat_net_out(monkeypatch):
    """add, remove, add of one entry between settles (the counting path)."""
    ix = new_index(0, Float())
    vals = [float(i) for i in range(100)]
    slots = list(range(100))
    ix.add_many(vals, slots)
    ix.remove_many(vals, slots)
    ix.add_many(vals, slots)
    ix.remove_many(vals[:50], slots[:50])
    ix.settle()
    ix._check()
    assert ix.entries() == [ix.entry(ix.key(v), s) for v, s in zip(vals[50:], slots[50:])]


def test_build_and_retire():
    ix = new_index(0, Int(bits=32))
    ix.build([3, None, -7, 3], [0, 1, 2, 3])
    assert ix.nulls == {1}
    assert ix.entries() == sorted([(3 << 32) | 0, (-7 << 32) | 2, (3 << 32) | 3])
    ix.retire()
    assert not ix.ready and len(ix) == 0
    ix.add(5, 1)                        # not logged while retired
    assert ix.pending == 0


@pytest.mark.parametrize("dtype", [np.int64, np.uint64, np.complex128])
def test_layer_merges_equal_a_sorted_union(dtype, monkeypatch):
    """_onto (in C: the hits taken out of one array, the rest merged into the other;
    an array left as it was is the same object), _merge (a fold, in C) and _sorted
    on random layers, entries past either end included."""
    from aerostore import arrayindex as ai
    rng = np.random.default_rng(5)
    for n, k in [(0, 3), (1, 1), (5, 40), (300, 100), (3000, 100), (100, 3000)]:
        pool = rng.choice(1 << 40, n + 2 * k + 1, replace=False)
        arr = np.sort(pool[:n].astype(dtype))
        xs = np.sort(pool[n:n + k].astype(dtype))
        other = np.sort(pool[n + k:n + 2 * k].astype(dtype))
        ix = ai.ArrayIndex(0, "int", dtype)
        gone = np.ascontiguousarray(arr[::3])
        assert ix._merge(arr, xs, gone).tolist() == np.sort(np.concatenate(
            (arr[~np.isin(arr, gone)], xs))).tolist()
        big = np.array([pool.max() + 1], dtype)      # past every entry
        probe = np.sort(np.concatenate((xs[: k // 2], arr[::7], big)))
        cancel, keep = ai._onto(arr, other, probe)
        hit = np.isin(probe, arr)
        assert cancel.tolist() == arr[~np.isin(arr, probe)].tolist()
        assert keep.tolist() == np.sort(np.concatenate((other, probe[~hit]))).tolist()
        assert cancel.dtype == keep.dtype == np.dtype(dtype)
        if not hit.any():
            assert cancel is arr
        same_c, same_k = ai._onto(arr, other, np.empty(0, dtype))
        assert same_c is arr and same_k is other
        shuffled = rng.permutation(pool[:n + k]).astype(dtype)
        assert ai._sorted(shuffled).tolist() == np.sort(pool[:n + k].astype(dtype)).tolist()
        monkeypatch.setattr(ai, "_HELD_SORT_MAX", 0)       # numpy's sort past it
        assert ai._sorted(shuffled[::-1]).tolist() == np.sort(shuffled).tolist()
        monkeypatch.setattr(ai, "_HELD_SORT_MAX", 1 << 30)
        ro = shuffled.copy()
        ro.flags.writeable = False
        assert ai._sorted(ro).tolist() == np.sort(ro).tolist() and not ro.flags.writeable
