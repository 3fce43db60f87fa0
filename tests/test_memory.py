"""memory.table_memory / Database.memory: a table's bytes per part, checked three ways.

- against tracemalloc: the total's growth for loading 20k rows equals the
  traced growth, once CPython's int padding is added (see ``int_pad``);
- against a plain reference walk (``reference``) that dedups every object by
  id: the refcount shortcut of memory.py must count exactly the same;
- part by part: ``columns`` is its arrays and grows with their capacity, and
  holds a string field's strings; updates held back by an open snapshot grow
  ``version_chains``, which a vacuum after the snapshot ends shrinks back;
  shared objects count once, where documented; key copies count as keys.
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


def _chain(v):
    """The versions of the chain whose head is ``v``, newest first."""
    while v is not None:
        yield v
        v = v.prev


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
    b = a.base
    if isinstance(b, np.ndarray):
        n += _array_ref(b, seen)
    elif isinstance(b, bytes) and id(b) not in seen:     # np.frombuffer of C's result (arrayindex._onto)
        seen.add(id(b))
        n += getsizeof(b)
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
    out["key_dict"] = getsizeof(st.slots)          # a KeyMap holds no int objects
    out["rows"] = getsizeof(st.rows) + getsizeof(st.free) + sum(map(obj, st.free))
    out["keys"] += sum(obj(r) for r in st.rows if r.__class__ is str)
    c = st.columns
    views = c.arrays[3]
    out["columns"] = (getsizeof(c) + sum(map(getsizeof, (c.cols, c.nulls, c.strs, c.dtypes, c.strpos, c.arrays, views)))
                      + sum(_array_ref(a, seen) for a in chain([c.state], c.cols.values(), c.nulls.values()))
                      + sum(getsizeof(v) for v in views if isinstance(v, memoryview))
                      + sum(getsizeof(lst) + sum(map(obj, lst)) for lst in c.strs.values()))
    n = getsizeof(st.unfrozen) + sum(map(obj, st.unfrozen))
    for slot in st.unfrozen:
        v = st.rows[slot]
        while v is not None:
            n += obj(v) + obj(v.values)
            for p, x in enumerate(v.values):
                if p == kp:
                    out["keys"] += obj(x)
                else:
                    n += obj(x)
            v = v.prev
    n += getsizeof(st.live) + sum(obj(e) + sum(map(obj, e)) for e in st.live)
    out["version_chains"] = n
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
    assert m["rows"] > 0 and m["indexes"] > 0
    # an empty table's columns: their objects and empty arrays, no data yet
    assert flights._st.columns.cap == 0 and 0 < m["columns"] < 8192
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
    # the table's int objects: the values of any version still held (the columns
    # hold numbers unboxed, the key map its slots)
    versions = [v for slot in st.unfrozen for v in _chain(st.rows[slot])]
    ints = {id(x) for v in versions for x in v.values if x.__class__ is int and not _interpreter_owned(x)}
    want = m1["total"] - m0["total"] + pad * len(ints)
    assert abs(traced - want) <= 0.002 * traced + 4096, (traced, want, m1)
    # and a row costs what docs/architecture.md says, within reason: its key,
    # key-map entry, index entries and columns (by capacity), no row tuple
    assert 150 < m1["total"] / N < 230


def test_matches_reference_walk(mem_db, loaded):
    st = loaded._st
    assert table_memory(st) == reference(st)
    assert loaded.query().gt("altitude", 1000).lt("gs", 300).count() > 0
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


def test_columns_grow_by_their_arrays(mem_db, flights):
    """``columns`` is the Columns' arrays by capacity: an empty table's holds their
    headers only; loading rows grows it by the arrays' data and nothing else."""
    st = flights._st
    m0 = table_memory(st)
    c = st.columns
    assert c.cap == 0
    empty = [c.state, *c.cols.values(), *c.nulls.values()]
    assert len(empty) == 11 and not any(a.nbytes for a in empty)
    # the Columns object, its dicts, the arrays' headers and the published views
    assert sum(map(getsizeof, empty)) < m0["columns"] < 8192
    for i in range(0, N, 5000):
        flights.upsert_many(make_rows(5000, seed=i, start=i))
    vacuum_now(mem_db)
    assert not st.unfrozen
    c = st.columns
    assert c.cap >= N
    arrays = [c.state, *c.cols.values(), *c.nulls.values()]
    assert all(len(a) == c.cap and a.base is None for a in arrays)
    nbytes = sum(a.nbytes for a in arrays)
    # state, and 5 numeric columns (lat, lon, updated_at: 8 bytes; altitude, 32 bits: 4;
    # gs, 16 bits: 2) with their null flags
    assert nbytes == c.cap * (1 + 8 * 3 + 4 + 2 + 5)
    grown = table_memory(st)["columns"] - m0["columns"]
    assert grown == nbytes


def test_version_chains_grow_under_a_snapshot_and_shrink_after_vacuum(mem_db, loaded):
    st = loaded._st
    vacuum_now(mem_db)
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
    # per updated row at least: two Versions, the old tuple (made from the columns), the new one
    head = st.rows[st.slots[keys[1]]]
    assert head.__class__ is Version and head.prev.prev is None
    tup = getsizeof(head.values)
    per = 2 * getsizeof(Version(0, 0, (), None)) + 2 * tup
    assert m1["version_chains"] - m0["version_chains"] >= len(keys) * per
    # the slots keep their places in rows and in the columns (which no longer count for them)
    assert all(m1[p] == m0[p] for p in ("keys", "key_dict", "rows", "columns"))
    reader.rollback()
    vacuum_now(mem_db)
    assert not st.unfrozen
    m2 = table_memory(st)
    # the new rows settled into the columns: the chains are gone, nothing else moved
    assert m2["version_chains"] == m0["version_chains"]
    assert all(m2[p] == m0[p] for p in ("keys", "key_dict", "rows", "columns"))


@table(indexes=("s",))
class Shared:
    k = Key()
    f = Float()
    s = Str()


def _columns_fixed(c) -> int:
    """The bytes of ``c`` (a Columns) but for the objects its string lists hold."""
    views = c.arrays[3]
    return (getsizeof(c) + sum(map(getsizeof, (c.cols, c.nulls, c.strs, c.dtypes, c.strpos, c.arrays, views)))
            + sum(getsizeof(a) for a in chain([c.state], c.cols.values(), c.nulls.values()))
            + sum(getsizeof(v) for v in views if isinstance(v, memoryview))
            + sum(map(getsizeof, c.strs.values())))


def test_str_field_counts_its_strings_under_columns(mem_db):
    """A Str field's strings are the columns' (their only copy once settled), as are
    those the string index's entries hold; each string counts once."""
    t = mem_db.create_table(Shared)
    st = t._st
    n = 2000
    t.upsert_many([(f"key{i:05d}", float(i), f"value number {i}") for i in range(n)])
    vacuum_now(mem_db)
    assert not st.unfrozen
    c = st.columns
    strs = c.strs[2]
    assert len(strs) == c.cap and sum(x is not None for x in strs) == n
    m = table_memory(st)
    assert m == reference(st)
    strings = sum(getsizeof(x) for x in strs if x is not None)
    assert m["columns"] == _columns_fixed(c) + strings
    assert m["columns"] > 2 * c.cap * 8 + strings          # the float column and its nulls, besides
    entries = st.indexes[2].entries()
    assert len(entries) == n and all(strs[slot] is v for v, slot in entries)
    # an update held back by a snapshot: the old version's string is the one the
    # columns still hold for the slot, and stays counted there, not in the chain
    reader = mem_db.begin()
    reader.table("Shared").get("nope")
    t.upsert_many([(f"key{i:05d}", -1.0, strs[st.slots[f"key{i:05d}"]]) for i in range(1, 200, 2)])
    vacuum_now(mem_db)
    old = st.rows[st.slots["key00001"]].prev
    assert old.values[2] is strs[st.slots["key00001"]]
    mc = table_memory(st)
    assert mc == reference(st)
    assert mc["columns"] == m["columns"]
    assert mc["version_chains"] > m["version_chains"]
    reader.rollback()
    vacuum_now(mem_db)
    assert table_memory(st)["columns"] == m["columns"]
    # freed slots let go of their strings
    with mem_db.transaction() as txn:
        txn.table("Shared").delete_many([f"key{i:05d}" for i in range(0, n, 2)])
    vacuum_now(mem_db)
    m1 = table_memory(st)
    assert m1 == reference(st)
    assert m1["columns"] == _columns_fixed(c) + sum(getsizeof(x) for x in strs if x is not None)
    assert m["columns"] - m1["columns"] > strings / 3


def test_shared_objects_count_once(mem_db):
    """One string held by every row counts once: in columns once the rows settle,
    in version_chains while versions hold them; the string index's (value, slot)
    tuples count in indexes, its values (the columns', the versions') do not; row
    tuples the caller still holds count in full, while versions hold them."""
    t = mem_db.create_table(Shared)
    st = t._st
    f = float("1234.5")
    s = "shared-" + "value"
    n = 1000
    rows = [(f"key{i:05d}", f, s) for i in range(n)]
    reader = mem_db.begin()
    reader.table("Shared").get("nope")              # holds the new versions back
    with mem_db.transaction() as txn:
        txn.table("Shared").upsert_checked(rows)       # the tuples as they are (upsert_many copies)
    vacuum_now(mem_db)
    assert len(st.unfrozen) == n
    m = table_memory(st)
    assert m == reference(st)
    heads = [st.rows[slot] for slot in st.unfrozen]
    assert all(v.values is mine for v, mine in zip(sorted(heads, key=lambda v: v.values[0]), rows))
    keys = list(st.slots)
    assert m["keys"] == sum(map(getsizeof, keys))
    assert m["key_dict"] == getsizeof(st.slots)
    assert m["rows"] == getsizeof(st.rows) + getsizeof(st.free)
    assert m["columns"] == _columns_fixed(st.columns)        # chained slots hold no strings there
    # a Version and the caller's tuple per row, the unfrozen set and its ints, f and s once; and
    # the live counts
    chains = n * (getsizeof(heads[0]) + getsizeof(rows[0])) + getsizeof(st.unfrozen) + getsizeof(f) + getsizeof(s)
    chains += sum(getsizeof(x) for x in st.unfrozen if x > 256)     # the set's slot ints
    assert chains < m["version_chains"] <= chains + 2048
    ix = st.indexes[2]
    entries = ix.entries()
    assert len(entries) == n and all(e[0] is s for e in entries)
    assert m["indexes"] >= n * getsizeof(entries[0])
    reader.rollback()
    vacuum_now(mem_db)
    assert not st.unfrozen
    m1 = table_memory(st)
    assert m1 == reference(st)
    c = st.columns
    assert sum(x is s for x in c.strs[2]) == n
    assert m1["columns"] == _columns_fixed(c) + getsizeof(s)
    assert all(e[0] is s for e in ix.entries()) and m1["indexes"] >= n * getsizeof(entries[0])


def test_key_copies_count_as_keys(mem_db):
    """A row that arrives with its own (equal) key string: both objects are keys, while
    a version holds the copy, and when a settled slot keeps it (``rows``)."""
    t = mem_db.create_table(Shared)
    st = t._st
    t.upsert_many([("key-" + str(i), 1.0, "a string") for i in range(10)])
    vacuum_now(mem_db)
    m0 = table_memory(st)
    reader = mem_db.begin()
    reader.table("Shared").get("key-0")       # holds the update's versions back
    k = "".join(["key-", "3"])                 # equal to the dict's key, another object
    t.upsert_many([(k, 2.0, "a string")])
    vacuum_now(mem_db)
    mine = next(x for x in st.slots if x == k)
    assert mine is not k
    head = st.rows[st.slots[k]]
    assert head.__class__ is Version and head.values[0] is k
    m1 = table_memory(st)
    assert m1 == reference(st)
    assert m1["keys"] == m0["keys"] + getsizeof(k)
    reader.rollback()
    vacuum_now(mem_db)
    # settled: the slot keeps the key map's string (the oldest version's), the copy is gone
    assert st.rows[st.slots[k]] is mine
    m2 = table_memory(st)
    assert m2 == reference(st) and m2["keys"] == m0["keys"]
    # a new key written twice in one transaction: the write set keeps the first
    # string (the key map's), the row the second, which the settled slot keeps
    a, b = ("".join(["new-", "key"]) for _ in range(2))
    assert a == b and a is not b
    t.upsert_many([(a, 1.0, "x1"), (b, 2.0, "x2")])
    vacuum_now(mem_db)
    slot = st.slots[a]
    assert next(x for x in st.slots if x == a) is a and st.rows[slot] is b
    m3 = table_memory(st)
    assert m3 == reference(st)
    assert m3["keys"] == m0["keys"] + getsizeof(a) + getsizeof(b)
