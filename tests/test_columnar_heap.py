"""Settled rows live only in the columns (heap.py, columns.py): the heap holds a
settled slot's key, reads build rows from the columns, a read that a freeze
overlapped is done again under the latch, a reopen builds no row, ingest packs
its rows between decoding and applying (rowblock.py)."""

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aerostore
from aerostore import FlightState
from aerostore.columns import FROZEN
from aerostore.rowblock import RowBlock
from aerostore.schema import INT_MAX, INT_MIN, Bool, Float, Int, Key, Str, UInt, table


@table
class Mixed:
    k = Key()
    i = Int(bits=32)
    u = UInt(bits=64)
    f = Float()
    b = Bool()
    s = Str()
    w = Int(lo=INT_MIN, hi=INT_MAX)


values = st.tuples(
    st.one_of(st.none(), st.integers(-(1 << 31), (1 << 31) - 1)),
    st.one_of(st.none(), st.integers(0, (1 << 64) - 1)),
    st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
    st.one_of(st.none(), st.booleans()),
    st.one_of(st.none(), st.text(alphabet="abc\u00e9", max_size=4)),
    st.one_of(st.none(), st.integers(INT_MIN, INT_MAX)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(values, max_size=30), st.data())
def test_a_row_block_gives_back_the_rows_it_packed(vals, data):
    rows = [(f"k{i}",) + v for i, v in enumerate(vals)]
    block = RowBlock(Mixed, rows)
    assert len(block) == len(rows)
    a = data.draw(st.integers(0, len(rows)))
    b = data.draw(st.integers(a, len(rows)))
    got = block[a:b]
    assert got == rows[a:b]
    assert [[type(x) for x in r] for r in got] == [[type(x) for x in r] for r in rows[a:b]]


def test_settled_slots_hold_their_keys_and_the_rows_come_from_the_columns(mem_db):
    t = mem_db.create_table(Mixed)
    rows = [(f"k{i}", i, (1 << 64) - 1 - i, i / 3, i % 2 == 0, None if i % 3 else f"s{i}",
             INT_MAX - i if i % 2 else INT_MIN + i) for i in range(50)]
    t.upsert_many(rows)
    st_ = t._st
    assert all(h.__class__ is str for h in st_.rows)
    assert all(st_.rows[st_.slots[r[0]]] is not None for r in rows)
    assert sorted(t.query().rows()) == sorted(rows)
    assert [t.get(r[0]) for r in rows] == rows
    assert t.query().gt("w", 0).count() == 25          # a wide int: compared in Python
    assert t.query().eq("s", "s0").rows() == [rows[0]]
    t._check()


def test_a_read_that_a_freeze_overlapped_is_read_again_under_the_latch(mem_db, monkeypatch):
    """``row_at``/``rows_at`` trust a settled read only with the same even ``fseq`` before
    and after; here a freeze is staged inside the read: the answer is the one read
    again under the shared latch, not the torn one."""
    t = mem_db.create_table(FlightState)
    t.upsert(("a", 1.0, 2.0, 100, 5, 7))
    st_ = t._st
    cols = st_.columns
    real_row, real_rows_of = cols.row, cols.rows_of
    staged = []

    def torn(*args):
        if not staged:                  # the first read meets a freeze: a wrong answer
            staged.append(1)
            st_.fseq += 2
            return ("a", 9.0, 9.0, 9, 9, 9)
        return real_row(*args)

    def torn_many(*args):
        if not staged:
            staged.append(1)
            st_.fseq += 2
            return [("a", 9.0, 9.0, 9, 9, 9)]
        return real_rows_of(*args)

    monkeypatch.setattr(cols, "row", torn)
    assert st_.row_at(st_.slots["a"], 0) == ("a", 1.0, 2.0, 100, 5, 7)
    assert staged
    staged.clear()
    monkeypatch.setattr(cols, "rows_of", torn_many)
    assert st_.rows_at([st_.slots["a"]], 0) == [("a", 1.0, 2.0, 100, 5, 7)]
    assert staged
    staged.clear()
    st_.fseq += 1                       # odd: a freeze runs; read under the latch at once
    try:
        monkeypatch.setattr(cols, "row", real_row)
        st_.latch.__enter__()           # held by "the writer": the reader must wait
        import threading
        got = []
        th = threading.Thread(target=lambda: got.append(st_.row_at(st_.slots["a"], 0)))
        th.start()
        th.join(0.2)
        assert th.is_alive() and not got
        st_.fseq += 1
        st_.latch.__exit__(None, None, None)
        th.join(5)
        assert got == [("a", 1.0, 2.0, 100, 5, 7)]
    finally:
        st_.fseq += st_.fseq & 1


def test_a_reopen_builds_no_row(tmp_path):
    """From a checkpoint of columns the heap takes the key list as ``rows`` and the
    columns as they are: every slot holds its key, none a tuple; replayed commits
    settle into the columns at the end of recovery."""
    path = str(tmp_path / "db")
    rng = random.Random(3)
    rows = {f"F{i:04d}": (f"F{i:04d}", rng.uniform(-90, 90), rng.uniform(-180, 180),
                          rng.randint(0, 45000), rng.randint(0, 600), 1000 + i) for i in range(3000)}
    with aerostore.open(path) as db:
        t = db.create_table(FlightState)
        t.upsert_many(list(rows.values()))
        db.checkpoint()
        for k in list(rows)[:40]:                   # in the log after the checkpoint
            rows[k] = rows[k][:3] + (1, 2, 3)
            t.upsert(rows[k])
        t.delete("F0100")
        del rows["F0100"]
        t.upsert(("new", None, 1.5, None, 7, 8))
        rows["new"] = ("new", None, 1.5, None, 7, 8)
    with aerostore.open(path) as db:
        t = db.table("FlightState")
        st_ = t._st
        assert all(h is None or h.__class__ is str for h in st_.rows)
        assert not any(h.__class__ is tuple for h in st_.rows)
        assert sorted(t.query().rows()) == sorted(rows.values())
        assert t.query().eq("altitude", 1).count() == 40
        assert int(np.count_nonzero(st_.columns.state == FROZEN)) == len(rows)
        t._check()


@pytest.mark.parametrize("checkpointed", [True, False])
def test_a_table_the_log_fills_from_empty_settles_whole(tmp_path, checkpointed):
    """Rows only in the log (after a checkpoint of the empty table, or with none): the
    recovery loads them into the columns at once and the indexes build on first
    read; every query agrees with the rows."""
    path = str(tmp_path / "db")
    rows = [(f"F{i:04d}", i / 7, -i / 9, i * 10, i % 600, i) for i in range(2000)]
    with aerostore.open(path) as db:
        t = db.create_table(FlightState)
        if checkpointed:
            db.checkpoint()
        t.upsert_many(rows)
        t.delete("F0005")
        db.flush_log()
    want = [r for r in rows if r[0] != "F0005"]
    with aerostore.open(path) as db:
        t = db.table("FlightState")
        assert not any(h.__class__ is tuple for h in t._st.rows)
        assert t.query().gt("altitude", 10000).count() == sum(1 for r in want if r[3] > 10000)
        assert t.query().range("lat", 10, 20).count() == sum(1 for r in want if 10 <= r[1] < 20)
        assert sorted(t.query().rows()) == want
        t._check()


def test_an_int_field_wider_than_64_bits_checkpoints_and_reopens(tmp_path):
    """A field from -2^63 to 2^64 - 1 has no 64-bit column: it is a list in memory and
    its table is written as row records in a checkpoint (storage/checkpoint.py)."""
    @table
    class Wide:
        k = Key()
        r = Int(lo=INT_MIN, hi=INT_MAX)
        x = Float()
    path = str(tmp_path / "w")
    rows = [("a", INT_MAX, 1.0), ("b", INT_MIN, None), ("c", None, 2.5), ("d", 5, 0.0)]
    with aerostore.open(path) as db:
        t = db.create_table(Wide)
        t.upsert_many(rows)
        assert sorted(t.query().gt("r", 0).rows()) == [rows[0], rows[3]]
        db.checkpoint()
    with aerostore.open(path) as db:
        t = db.table("Wide")
        assert sorted(t.query().rows()) == sorted(rows)
        assert t.query().lt("r", 0).rows() == [rows[1]]
        t._check()


@pytest.mark.parametrize("n", [10, 70_000])
def test_ingest_packs_its_rows_and_applies_them_unchanged(mem_db, n):
    """Big enough for several packed blocks and a trim at the end (ingest.py)."""
    t = mem_db.create_table(FlightState)
    rng = random.Random(n)
    rows = [(f"K{i:06d}", round(rng.uniform(-90, 90), 5), None if i % 7 == 0 else 1.25 * i,
             rng.randint(0, 45000), rng.randint(0, 600), (1 << 64) - 1 - i) for i in range(n)]
    text = "".join("\t".join("" if v is None else repr(v) if isinstance(v, float) else str(v)
                             for v in r) + "\n" for r in rows)
    res = mem_db.ingest_tsv("FlightState", text, batch_size=4096)
    assert res.rows_seen == n and res.inserted == n
    got = {r[0]: r for r in t.query().rows()}
    assert got == {r[0]: r for r in rows}
    if n < 100:
        t._check()


def test_a_checkpoint_of_64_bit_int_columns_reopens_into_the_narrow_ones(tmp_path, monkeypatch):
    """Checkpoints written before int columns were narrowed hold every signed int as
    ``<i8``: a reopen converts each to the field's column type (columns.column_dtype)."""
    from aerostore import columns as columns_mod
    from aerostore.storage import checkpoint as checkpoint_mod, colsection as colsection_mod
    path = str(tmp_path / "db")
    rows = [(f"F{i}", i / 3, -i / 3, 30000 + i, i % 600, i) for i in range(500)] + [
        ("nul", None, None, None, None, None)]
    wide = {"int": lambda f: np.dtype(np.uint64) if f.lo >= 0 and f.hi >= 1 << 63 else np.dtype(np.int64)}
    real = columns_mod.column_dtype
    monkeypatch.setattr(colsection_mod, "column_dtype",
                        lambda f: wide[f.kind](f) if f.kind in wide else real(f))
    with aerostore.open(path) as db:
        t = db.create_table(FlightState)
        t.upsert_many(rows)
        db.checkpoint()
    monkeypatch.undo()
    import os
    _csn, tables = checkpoint_mod.read_checkpoint(os.path.join(path, "checkpoint.dat"))
    assert tables[0].columns[3].dtype == np.int64 and tables[0].columns[4].dtype == np.int64
    with aerostore.open(path) as db:
        t = db.table("FlightState")
        cols = t._st.columns
        assert cols.cols[3].dtype == np.int32 and cols.cols[4].dtype == np.uint16
        assert sorted(t.query().rows(), key=lambda r: r[0]) == sorted(rows, key=lambda r: r[0])
        assert t.query().ge("altitude", 30400).count() == 100
        t._check()
