"""memory.table_memory / Database.memory: a table's bytes per part, checked three ways.

- against tracemalloc: the total's growth for loading 20k rows equals the
  traced growth, once CPython's int padding is added (see ``int_pad``);
- against a plain reference walk (``reference``) that dedups every object by
  id: the refcount shortcut of memory.py must count exactly the same;
- part by part: building columns grows ``columns`` by the arrays; updates held
  back by an open snapshot grow ``version_chains``, which a vacuum after the
  snapshot ends shrinks back; shared objects count once, where documented.
"""

import gc
import random
import tracemalloc
from itertools import chain
from sys import getsizeof

import numpy as np
import pytest

import aerostore
from aerostore import FlightState
from aerostore.memory import PARTS, _interpreter_owned, table_memory
from aerostore.mvcc import Version
from aerostore.schema import Float, Key, Str, table
from conftest import vacuum_now

N = 20_000


def make_rows(n, seed=7, start=0):
    rnd = random.Random(seed)
    return [(f"F{i:07d}", rnd.uniform(-90, 90), rnd.uniform(-180, 180), rnd.randrange(0, 45000),
             rnd.randrange(0, 700), 1_700_000_000 + rnd.randrange(0, 86400))
            for i in range(start, start + n)]


def int_pad() -> int:
    """Bytes tracemalloc sees per int object beyond ``sys.getsizeof``: CPython 3.11
    allocates ``sizeof(PyLongObject)``, padded to 32, for a 28-byte one-digit int
    (and 4 bytes more per digit from there), so 4; 0 where the two agree."""
    gc.collect()
    tracemalloc.start()
    try:
        a = tracemalloc.get_traced_memory()[0]
        xs = [10 ** 6 + i for i in range(1000)] + [2 ** 40 + i for i in range(1000)]
        used = tracemalloc.get_traced_memory()[0] - a
    finally:
        tracemalloc.stop()
    return round((used - getsizeof(xs) - sum(map(getsizeof, xs))) / len(xs))


def _array_ref(a, seen) -> int:
    if a is None or id(a) in seen:
        return 0
    seen.add(id(a))
    n = getsizeof(a)
    if isinstance(a.base, np.ndarray):
        n += _array_ref(a.base, seen)
    return n


def reference(st) -> dict:
    """The parts of memory.py, walked naively: one set of the ids of every object counted."""
    seen = set()

    def obj(o):
        if _interpreter_owned(o) or id(o) in seen:
            return 0
        seen.add(id(o))
        return getsizeof(o)

    def sorted_list(sl):
        n = getsizeof(sl) + getsizeof(sl._lists) + sum(map(getsizeof, sl._lists))
        n += getsizeof(sl._maxes) + getsizeof(sl._index)
        for e in chain(chain.from_iterable(sl._lists), sl._maxes, sl._index):
            n += obj(e)
            if e.__class__ is tuple:
                n += sum(map(obj, e))
        return n

    out = dict.fromkeys(PARTS, 0)
    kp = st.key_pos
    out["keys"] = sum(map(obj, st.slots))
    out["key_dict"] = getsizeof(st.slots) + sum(map(obj, st.slots.values()))
    out["rows"] = getsizeof(st.rows) + getsizeof(st.free) + sum(map(obj, st.free))
    for r in st.rows:
        if r.__class__ is tuple:
            out["rows"] += obj(r)
            for p, v in enumerate(r):
                out["keys" if p == kp else "rows"] += obj(v)
    n = getsizeof(st.unfrozen) + sum(map(obj, st.unfrozen))
    for slot in st.unfrozen:
        v = st.rows[slot]
        while v is not None:
            n += obj(v) + obj(v.values) + sum(map(obj, v.values))
            v = v.prev
    n += getsizeof(st.live) + sum(obj(e) + sum(map(obj, e)) for e in st.live)
    out["version_chains"] = n
    c = st.columns
    if c is not None:
        out["columns"] = getsizeof(c) + getsizeof(c.cols) + getsizeof(c.nulls) + getsizeof(c.dtypes) + sum(
            _array_ref(a, seen) for a in chain([c.state], c.cols.values(), c.nulls.values()))
    n = getsizeof(st.indexes)
    for ix in st.indexes.values():
        n += getsizeof(ix) + getsizeof(ix.nulls) + sum(map(obj, ix.nulls))
        if hasattr(ix, "main"):
            n += _array_ref(ix.main, seen) + _array_ref(ix._empty, seen)
            for runs in (ix.runs, ix.frozen or ()):
                n += getsizeof(runs) + sum(getsizeof(layer) + sum(getsizeof(r) + _array_ref(r.a, seen) for r in layer)
                                           for layer in runs)
            n += sum(getsizeof(sm) + sum(map(obj, sm)) for sm in (ix.delta, ix.tomb))
            n += getsizeof(ix.view) + getsizeof(ix.view.layers)
        else:
            n += sorted_list(ix.sl)
    out["indexes"] = n
    out["total"] = sum(out[p] for p in PARTS)
    return out


@pytest.fixture
def loaded(mem_db, flights):
    for i in range(0, N, 5000):
        flights.upsert_many(make_rows(5000, seed=i, start=i))
    flights._st.settle()
    return flights


def test_api_parts_and_closed_db(mem_db, flights):
    m = mem_db.memory("FlightState")
    assert list(m) == list(PARTS) + ["total"]
    assert m["total"] == sum(m[p] for p in PARTS)
    assert m == mem_db.memory(FlightState) == table_memory(flights._st)
    assert m["rows"] > 0 and m["indexes"] > 0 and m["columns"] == 0
    with pytest.raises(aerostore.UsageError):
        mem_db.memory("Nope")
    mem_db.close()
    with pytest.raises(aerostore.AerostoreError):
        mem_db.memory("FlightState")


def test_total_matches_tracemalloc(mem_db, flights):
    """Loading 20k rows: the growth of the total equals what tracemalloc traced.

    Tolerance 0.2% + 4 KiB: what the load leaves behind that is not the table
    (the commit path's counters, the maintainer's and the snapshot registry's
    state, numpy's cached dimension blocks) is a few KiB whatever the size; the
    int padding is added exactly; the tuple free lists are full before tracing
    starts (the warm-up), so freeing the load's temporaries traces no growth."""
    warm = aerostore.open(":memory:")
    warm.create_table(FlightState).upsert_many(make_rows(3000, seed=1))
    warm.close()
    del warm
    pad = int_pad()
    st = flights._st
    m0 = mem_db.memory("FlightState")
    gc.collect()
    tracemalloc.start()
    try:
        b = tracemalloc.get_traced_memory()[0]
        rows = make_rows(N)
        for i in range(0, N, 5000):
            flights.upsert_many(rows[i:i + 5000])
        st.settle()
        del rows
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - b
    finally:
        tracemalloc.stop()
    m1 = mem_db.memory("FlightState")
    ints = ({id(v) for r in st.rows for v in r if v.__class__ is int and not _interpreter_owned(v)}
            | {id(s) for s in st.slots.values() if s > 256})
    want = m1["total"] - m0["total"] + pad * len(ints)
    assert abs(traced - want) <= 0.002 * traced + 4096, (traced, want, m1)
    # and a row costs what docs/architecture.md says, within reason
    assert 300 < m1["total"] / N < 500


def test_matches_reference_walk(mem_db, loaded):
    st = loaded._st
    assert table_memory(st) == reference(st)
    loaded.query().gt("altitude", 1000).lt("gs", 300).count()      # builds the columns
    reader = mem_db.begin()
    reader.table("FlightState").get("F0000001")
    with mem_db.transaction() as txn:
        tt = txn.table("FlightState")
        for i in range(0, N, 7):
            tt.set(f"F{i:07d}", {"alt": 123456, "lat": 1.5})       # shared values
        for i in range(1, N, 97):
            tt.delete(f"F{i:07d}")
    for i in range(2, 200, 3):
        loaded.set(f"F{i:07d}", {"gs": 40000 + i})                    # small index layers
    m = table_memory(st)
    assert m == reference(st)
    assert m["version_chains"] > 0 and m["columns"] > 0
    reader.rollback()
    vacuum_now(mem_db)
    assert table_memory(st) == reference(st)


def test_columns_grow_by_their_arrays(loaded):
    st = loaded._st
    m0 = table_memory(st)
    assert m0["columns"] == 0 and st.columns is None
    assert loaded.query().gt("altitude", 1000).lt("gs", 300).count() > 0
    c = st.columns
    assert c is not None
    arrays = [c.state, *c.cols.values(), *c.nulls.values()]
    m1 = table_memory(st)
    grown = m1["columns"] - m0["columns"]
    nbytes = sum(a.nbytes for a in arrays)
    assert nbytes >= N * (1 + 5 * 9)          # state, and 5 numeric columns with their null flags
    # beyond the data: the array headers, the two dicts and the Columns object
    assert nbytes < grown <= nbytes + 200 * len(arrays) + 2048
    assert {p: m1[p] for p in PARTS if p != "columns"} == {p: m0[p] for p in PARTS if p != "columns"}


def test_version_chains_grow_under_a_snapshot_and_shrink_after_vacuum(mem_db, loaded):
    st = loaded._st
    m0 = table_memory(st)
    assert not st.unfrozen
    reader = mem_db.begin()
    reader.table("FlightState").get("F0000001")       # holds the old versions back
    keys = [f"F{i:07d}" for i in range(0, N, 10)]
    rnd = random.Random(3)
    with mem_db.transaction() as txn:
        tt = txn.table("FlightState")
        for k in keys:
            tt.set(k, {"lat": rnd.uniform(-90, 90)})
    vacuum_now(mem_db)
    assert len(st.unfrozen) == len(keys)
    m1 = table_memory(st)
    # per updated row at least: two Versions, the old tuple (moved out of rows), the new one
    tup = getsizeof(st.rows[st.slots["F0000002"]])
    per = 2 * getsizeof(Version(0, 0, (), None)) + 2 * tup
    assert m1["version_chains"] - m0["version_chains"] >= len(keys) * per
    # the old tuples left rows, with the values only they hold
    assert m0["rows"] - m1["rows"] >= len(keys) * tup
    assert m1["keys"] == m0["keys"] and m1["key_dict"] == m0["key_dict"]
    reader.rollback()
    vacuum_now(mem_db)
    assert not st.unfrozen
    m2 = table_memory(st)
    assert m2["version_chains"] == m0["version_chains"]
    # the new tuples settled back into rows: a new float each instead of the old one
    assert m2["rows"] == m0["rows"]
    assert m2["keys"] == m0["keys"] and m2["key_dict"] == m0["key_dict"]


@table(indexes=("s",))
class Shared:
    k = Key()
    f = Float()
    s = Str()


def test_shared_objects_count_once(mem_db):
    """One float and one string held by every row count once, in rows; the string index's
    (value, slot) tuples count in indexes, its values (the rows') do not; row tuples the
    caller still holds count in full."""
    t = mem_db.create_table(Shared)
    st = t._st
    f = float("1234.5")
    s = "shared-" + "value"
    n = 1000
    rows = [(f"key{i:05d}", f, s) for i in range(n)]
    with mem_db.transaction() as txn:
        txn.table("Shared").upsert_checked(rows)       # the tuples as they are (upsert_many copies)
    vacuum_now(mem_db)
    m = table_memory(st)
    assert m == reference(st)
    assert all(r is mine for r, mine in zip(st.rows, rows))
    assert all(r[1] is f and r[2] is s for r in st.rows)
    keys = list(st.slots)
    assert m["keys"] == sum(map(getsizeof, keys))
    assert m["key_dict"] == getsizeof(st.slots) + sum(getsizeof(v) for v in st.slots.values() if v > 256)
    tuples = sum(getsizeof(r) for r in st.rows)
    assert m["rows"] == getsizeof(st.rows) + getsizeof(st.free) + tuples + getsizeof(f) + getsizeof(s)
    ix = st.indexes[2]
    entries = ix.entries()
    assert len(entries) == n and all(e[0] is s for e in entries)
    assert m["indexes"] >= n * getsizeof(entries[0])


def test_key_copies_in_rows_count_as_keys(mem_db):
    """A row that arrives with its own (equal) key string: both objects are keys."""
    t = mem_db.create_table(Shared)
    st = t._st
    t.upsert_many([("key-" + str(i), 1.0, "a string") for i in range(10)])
    m0 = table_memory(st)
    k = "".join(["key-", "3"])                 # equal to the dict's key, another object
    t.upsert_many([(k, 2.0, "a string")])
    vacuum_now(mem_db)
    row = st.rows[st.slots[k]]
    assert row.__class__ is tuple
    m1 = table_memory(st)
    assert m1 == reference(st)
    assert row[0] is k and next(x for x in st.slots if x == k) is not k
    assert m1["keys"] == m0["keys"] + getsizeof(k)
