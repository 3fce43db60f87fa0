"""Readers without the latch: a writer section that overlaps a read is caught, and the
answer is still the snapshot's (planner.py's docstring has the argument).

Deterministic: the overlap is staged in one thread.  A reader takes no latch, so a
patched read step may commit and prune in the middle of a query, exactly where
another thread's writer section could fall; each test then compares the answer
with a brute-force filter of the same snapshot, and checks that the safe path
(the strict refilter, the retried or latched count) is what answered.
"""

import random

import numpy as np
import pytest

import aerostore
from aerostore import arrayindex, heap, planner, query
from aerostore.columns import CHAIN, Columns
from conftest import vacuum_now

N = 3000


@pytest.fixture
def flights():
    db = aerostore.open(":memory:")
    t = db.create_table(aerostore.FlightState)
    rnd = random.Random(11)
    t.upsert_many([(f"K{i:05d}", rnd.uniform(-90, 90), rnd.uniform(-180, 180), rnd.randrange(45000),
                    rnd.randrange(700), i) for i in range(N)])
    yield db, t
    db.close()


def _moved_then_read(db, t, keys, rnd):
    """Commit new values for ``keys`` while a snapshot holds their prune back, then begin
    the reader's transaction (it sees the new values) and let the prune go: calling
    ``vacuum_now(db)`` during the read freezes those slots under their new values and
    removes their old index entries, which an index read taken before still holds.
    Returns the reader's transaction."""
    db._maint.request_vacuum = lambda: None      # only the test prunes
    blocker = db.begin()
    t.upsert_many([(k, rnd.uniform(-90, 90), rnd.uniform(-180, 180), rnd.randrange(45000),
                    rnd.randrange(700), 7) for k in keys])
    txn = db.begin()
    blocker.rollback()
    assert db._prune_q
    return txn


def _brute(rows, lo, hi):
    return sorted((r for r in rows if r[3] is not None and lo <= r[3] < hi),
                  key=lambda r: (r[1], r[0]))


def _strict_compiles(monkeypatch) -> list:
    """A list that gets an item each time the planner compiles a strict entry filter
    (the one a chunk read under the latch uses)."""
    strict = []
    real_compile = query.compile_entry_filter

    def compile_spy(*a, **k):
        if k.get("strict"):
            strict.append(1)
        return real_compile(*a, **k)

    monkeypatch.setattr(planner, "compile_entry_filter", compile_spy)
    return strict


@pytest.mark.parametrize("tries", [1, 3])              # straight to the latch; a lock-free try first
@pytest.mark.parametrize("vec_min", [1 << 30, 1])     # the generated filter; the column filter
def test_a_chunk_older_than_the_rows_is_filtered_again(flights, monkeypatch, vec_min, tries):
    """A walk's chunk comes from the index as it was before a commit froze rows under new
    values: trusted as is, a moved row would show up under its old value (or twice).
    The chunk's fseq moved, so the try is dropped: the chunk is read again without the
    latch (heap.settled_read), or, once the lock-free tries are spent, filtered under
    the latch with every key checked."""
    db, t = flights
    monkeypatch.setattr(planner, "_VEC_MIN", vec_min)
    monkeypatch.setattr(heap, "_LOCKFREE_TRIES", tries)
    rnd = random.Random(5)
    st = t._st
    real_chunk = arrayindex.ArrayIndex.chunk
    strict = _strict_compiles(monkeypatch)
    staged = []

    def chunk(self, *a, **k):
        out = real_chunk(self, *a, **k)     # the entries before the prune below
        if self is st.indexes[3]:
            if not staged:
                vacuum_now(db)              # a writer section between the chunk and its rows
            staged.append(a)
        return out

    for sort in ("altitude", "-altitude"):
        staged.clear()
        txn = _moved_then_read(db, t, [f"K{i:05d}" for i in rnd.sample(range(N), 600)], rnd)
        try:
            tt = txn.table("FlightState")
            before = tt.query().rows()
            monkeypatch.setattr(arrayindex.ArrayIndex, "chunk", chunk)
            got = tt.query().range("altitude", 5000, 40000).sort_by(sort).limit(200).rows()
            monkeypatch.setattr(arrayindex.ArrayIndex, "chunk", real_chunk)
        finally:
            txn.rollback()
        assert staged, "the plan did not walk the altitude index"
        desc = sort.startswith("-")
        want = sorted((r for r in before if 5000 <= r[3] < 40000),
                      key=lambda r: (-r[3] if desc else r[3], r[0]))[:200]
        assert got == want
        assert len({r[0] for r in got}) == len(got)
        if tries > 1:                       # the overlapped try's chunk was read again
            assert staged[0] == staged[1], "the overlapped chunk was not read again"
    if tries == 1:
        assert strict, "the overlapped chunk was not filtered strictly"
    else:
        assert not strict, "a lock-free try was left out"
    t._check()


@pytest.mark.parametrize("vec_min", [1 << 30, 1])     # the generated filter; the column filter
def test_a_walk_that_starts_inside_a_freeze_reads_under_the_latch(flights, monkeypatch, vec_min):
    """fseq odd when a chunk is read (a freezing section runs): no lock-free try, the
    chunk is read and filtered strictly under the shared latch, and the walk answers
    what it answers otherwise."""
    db, t = flights
    monkeypatch.setattr(planner, "_VEC_MIN", vec_min)
    st = t._st
    q = t.query().range("altitude", 5000, 40000).sort_by("lat").limit(200)
    want = q.rows()
    strict = _strict_compiles(monkeypatch)
    st.fseq += 1                        # as inside ``with store.freezing:``
    try:
        got = q.rows()
    finally:
        st.fseq += 1
    assert got == want and strict
    t._check()


def test_an_install_between_a_chunk_and_its_rows_changes_nothing(flights, monkeypatch):
    """An install (no prune) between a walk's chunk and its rows: the rows it touches
    become chains, read at the snapshot; the answer is the snapshot's."""
    db, t = flights
    rnd = random.Random(8)
    st = t._st
    real_chunk = arrayindex.ArrayIndex.chunk
    staged = []

    def chunk(self, *a, **k):
        out = real_chunk(self, *a, **k)
        if not staged and self is st.indexes[3]:
            staged.append(1)
            t.upsert_many([(f"K{i:05d}", 0.0, 0.0, rnd.randrange(45000), 1, 9)
                           for i in rnd.sample(range(N), 800)])
        return out

    txn = db.begin()
    try:
        tt = txn.table("FlightState")
        before = tt.query().rows()
        monkeypatch.setattr(arrayindex.ArrayIndex, "chunk", chunk)
        got = tt.query().range("altitude", 5000, 40000).sort_by("altitude").limit(300).rows()
    finally:
        txn.rollback()
    assert staged
    assert got == sorted((r for r in before if 5000 <= r[3] < 40000), key=lambda r: (r[3], r[0]))[:300]
    t._check()


def test_a_count_meanwhile_reads_its_picture(flights, monkeypatch):
    """Prunes (which freeze and free chained slots) and installs inside an index-only
    count's window: the count reads the Picture of the last writer section's end
    (chain heads and index views), takes no latch and is the snapshot's."""
    db, t = flights
    rnd = random.Random(6)
    real_cb = arrayindex.ArrayIndex.count_between
    staged = []

    def count_between(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:                 # the count's own, after the plan's estimate
            staged.append(1)
            writing.append(1)               # (the writer's own conflict check may share the latch)
            try:
                vacuum_now(db)              # chained slots freeze or go, entries go
                t.upsert_many([(f"K{rnd.randrange(N):05d}", 0.0, 0.0, 31000 + rnd.randrange(99), 1, 8)
                               for _ in range(200)])        # and an install
            finally:
                writing.clear()
        return real_cb(self, *a, **k)

    writing = []
    shared = t._st.latch.shared

    class NoLatch:
        def __enter__(self):
            if not writing:
                raise AssertionError("an index-only count took the latch")
            return shared.__enter__()

        def __exit__(self, *exc):
            return shared.__exit__(*exc)

    for _ in range(3):
        staged.clear()
        calls = []
        txn = _moved_then_read(db, t, [f"K{i:05d}" for i in rnd.sample(range(N), 300)], rnd)
        try:
            tt = txn.table("FlightState")
            want = sum(1 for r in tt.query().rows() if r[3] > 30000)
            q = tt.query().gt("altitude", 30000)
            assert q.explain(count=True).startswith("index only count")
            assert t._st.picture.heads, "the picture holds no chains: nothing is tested"
            monkeypatch.setattr(arrayindex.ArrayIndex, "count_between", count_between)
            monkeypatch.setattr(t._st.latch, "shared", NoLatch())
            assert q.count() == want
        finally:
            monkeypatch.undo()
            txn.rollback()
        assert staged
    t._check()


def test_an_intersection_and_a_scan_meanwhile_see_their_snapshot(flights, monkeypatch):
    """Slot sets and column marks taken, then rows pruned (frozen, freed) and rewritten
    before the rows are read: each slot is judged by its row at the snapshot, once."""
    db, t = flights
    rnd = random.Random(7)
    real_marks = Columns.marks
    staged = []

    def marks(self, *a, **k):
        out = real_marks(self, *a, **k)
        if not staged:
            staged.append(1)
            vacuum_now(db)                  # slots marked chained freeze, others go
            t.upsert_many([(f"K{i:05d}", 0.0, 0.0, 1, 400, 9)        # slots marked settled get
                           for i in rnd.sample(range(N), 800)])      # versions newer than s
        return out

    for make, pick in [
        (lambda tt: tt.query().range("lat", -30, 30).range("lon", -90, 90),
         lambda r: -30 <= r[1] < 30 and -90 <= r[2] < 90),
        (lambda tt: tt.query().gt("gs", 350).le("altitude", 20000),
         lambda r: r[4] > 350 and r[3] <= 20000),
    ]:
        for counting in (False, True):
            staged.clear()
            txn = _moved_then_read(db, t, [f"K{i:05d}" for i in rnd.sample(range(N), 800)], rnd)
            try:
                tt = txn.table("FlightState")
                monkeypatch.setattr(Columns, "marks", real_marks)
                want = sorted(r for r in tt.query().rows() if pick(r))
                monkeypatch.setattr(Columns, "marks", marks)
                if counting:
                    assert make(tt).count() == len(want)
                else:
                    assert sorted(make(tt).rows()) == want
            finally:
                txn.rollback()
            assert staged
    t._check()


def test_marks_past_the_captured_capacity_are_chains():
    """A slot allocated after the arrays were captured (past their capacity) is read
    from the heap: marked chained, never matching on the columns."""
    from aerostore import FlightState
    c = Columns(FlightState)
    c.freeze([0, 1], [("a", 1.0, 2.0, 100, 5, 1), ("b", 1.0, 2.0, 200, 5, 1)])
    cap = len(c.arrays[0])
    m, chain = c.marks([], np.array([1, cap + 5, 0], np.intp))
    assert m.tolist() == [True, False, True]
    assert chain.tolist() == [False, True, False]
    assert CHAIN == 2


# -- property: a writer step injected at any point of any read ---------------------------------

from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402

_SHAPES = {
    "range count": (lambda q: q.range("altitude", 100, 600), "count",
                    lambda r: r[3] is not None and 100 <= r[3] < 600),
    "range rows": (lambda q: q.range("altitude", 100, 600), "rows",
                   lambda r: r[3] is not None and 100 <= r[3] < 600),
    "walk asc": (lambda q: q.gt("altitude", 200).sort_by("altitude").limit(40), "rows", None),
    "walk desc": (lambda q: q.sort_by("-lon").limit(30), "rows", None),
    "box count": (lambda q: q.range("lat", -5, 5).range("lon", -5, 5), "count",
                  lambda r: r[1] is not None and r[2] is not None and -5 <= r[1] < 5 and -5 <= r[2] < 5),
    "box rows": (lambda q: q.range("lat", -5, 5).range("lon", -5, 5), "rows",
                 lambda r: r[1] is not None and r[2] is not None and -5 <= r[1] < 5 and -5 <= r[2] < 5),
    "scan count": (lambda q: q.gt("gs", 3).le("updated_at", 700), "count",
                   lambda r: r[4] is not None and r[5] is not None and r[4] > 3 and r[5] <= 700),
    "nulls": (lambda q: q.null("altitude"), "rows", lambda r: r[3] is None),
}


def _walk_want(rows, shape):
    if shape == "walk asc":
        hit = [r for r in rows if r[3] is not None and r[3] > 200]
        return sorted(hit, key=lambda r: (r[3], r[0]))[:40]
    return sorted(rows, key=lambda r: (-r[2], r[0]))[:30]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=hs.integers(0, 1 << 30), shape=hs.sampled_from(sorted(_SHAPES)), at=hs.sampled_from([0, 0, 1, 1, 2, 3]),
       action=hs.sampled_from(["install", "prune", "both", "delete"]), vec_min=hs.sampled_from([1, 1 << 30]),
       chunk=hs.sampled_from([4, 64, 1024]), before=hs.booleans())
def test_any_writer_step_anywhere_in_a_read(seed, shape, at, action, vec_min, chunk, before):
    """A random query, with a writer step (an install, a pending prune run, both, or
    deletes then their prune) injected just before or after the ``at``-th read step
    (an index chunk, column marks, a slot set, a range count of an index, an
    index-only count): the answer is always the snapshot's."""
    rnd = random.Random(seed)
    db = aerostore.open(":memory:")
    saved = (planner._VEC_MIN, planner._CHUNK, arrayindex.ArrayIndex.chunk, Columns.marks,
             arrayindex.ArrayIndex.slots_between, arrayindex.ArrayIndex.count_between,
             planner.IndexRange._count_now)
    try:
        db._maint.request_vacuum = lambda: None
        t = db.create_table(aerostore.FlightState)
        n = 400

        def row(i, tag):
            return (f"K{i:04d}", rnd.choice([None, rnd.uniform(-10, 10)]), rnd.uniform(-10, 10),
                    rnd.choice([None] + list(range(0, 1000, 7))), rnd.randrange(8), tag)

        t.upsert_many([row(i, rnd.randrange(1000)) for i in range(n)])
        blocker = db.begin()                    # leaves chains and a pending prune behind
        for _ in range(3):
            t.upsert_many([row(rnd.randrange(n + 50), rnd.randrange(1000)) for _ in range(30)])
            with db.transaction() as txn:
                for i in rnd.sample(range(n), 5):
                    txn.table("FlightState").delete(f"K{i:04d}")
        txn = db.begin()
        blocker.rollback()
        fired = []

        def step():
            if action in ("install", "both"):
                vacuum = db._vacuum
                db._vacuum = lambda block=False: None     # an install alone: the commit's own
                try:                                      # prune would freeze slots too
                    t.upsert_many([row(rnd.randrange(n + 80), 5) for _ in range(40)])
                finally:
                    db._vacuum = vacuum
            if action == "delete":
                with db.transaction() as w:
                    for i in rnd.sample(range(n), 20):
                        w.table("FlightState").delete(f"K{i:04d}")
            if action in ("prune", "both", "delete"):
                vacuum_now(db)

        calls = []

        def hook(real):
            def f(*a, **k):
                calls.append(1)
                go = not fired and len(calls) > at
                if go and before:
                    fired.append(1)
                    step()
                out = real(*a, **k)
                if go and not before:
                    fired.append(1)
                    step()
                return out
            return f

        targets = [(arrayindex.ArrayIndex, "chunk"), (Columns, "marks"), (arrayindex.ArrayIndex, "slots_between"),
                   (arrayindex.ArrayIndex, "count_between"), (planner.IndexRange, "_count_now")]
        try:
            tt = txn.table("FlightState")
            before = tt.query().rows()
            planner._VEC_MIN = vec_min
            planner._CHUNK = chunk
            for cls, name in targets:
                setattr(cls, name, hook(getattr(cls, name)))
            make, how, pick = _SHAPES[shape]
            got = getattr(make(tt.query()), how)()
        finally:
            (planner._VEC_MIN, planner._CHUNK, arrayindex.ArrayIndex.chunk, Columns.marks,
             arrayindex.ArrayIndex.slots_between, arrayindex.ArrayIndex.count_between,
             planner.IndexRange._count_now) = saved
            txn.rollback()
        event(f"a writer step ran inside the read: {bool(fired)}")
        if pick is None:
            assert got == _walk_want(before, shape)
        elif how == "count":
            assert got == sum(1 for r in before if pick(r))
        else:
            assert sorted(got) == sorted(r for r in before if pick(r))
        vacuum_now(db)
        t._check()
    finally:
        db.close()
