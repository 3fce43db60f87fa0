"""Readers do no writers' work: no index fold, no prune or freeze, whatever the query.

Deterministic: the maintainer is replaced by one that only records requests, the
index layers are past their fold budget and commits wait to be pruned; then every
kind of query runs, and the counters must not move.
"""

import random

import pytest

import aerostore
from aerostore import arrayindex
from aerostore.heap import TableStore


class Recorder:
    def __init__(self):
        self.requests = 0

    def request(self, store, ix):
        self.requests += 1


@pytest.fixture
def loaded(monkeypatch):
    monkeypatch.setattr(arrayindex, "_DELTA_MIN", 64)
    db = aerostore.open(":memory:")
    t = db.create_table(aerostore.FlightState)
    rnd = random.Random(3)
    t.upsert_many([(f"K{i:05d}", rnd.uniform(-90, 90), rnd.uniform(-180, 180), rnd.randrange(45000),
                    rnd.randrange(700), i) for i in range(5000)])
    st = t._st
    assert db._maint.idle(10)               # nothing of the load is still being folded
    st.maintainer = Recorder()
    db._maint._vacuum = None                # readers' vacuum requests go nowhere
    holder = db.begin()                     # keeps versions (and the prune queue) alive
    for b in range(30):
        t.upsert_many([(f"K{rnd.randrange(5000):05d}", rnd.uniform(-90, 90), rnd.uniform(-180, 180),
                        rnd.randrange(45000), rnd.randrange(700), 9) for _ in range(20)])
    holder.rollback()
    assert st.maintainer.requests > 0       # folds are due, nobody ran them
    assert db._prune_q and st.unfrozen      # prunes are due too
    yield db, t
    db.close()


def test_queries_fold_and_prune_nothing(loaded, monkeypatch):
    db, t = loaded
    st = t._st
    pruned = []
    monkeypatch.setattr(TableStore, "prune", lambda self, *a: pruned.append(a))
    monkeypatch.setattr(db._maint, "request_vacuum", lambda: None)
    arrays = {pos: (ix.main, ix.folds, len(ix.delta), len(ix.tomb))
              for pos, ix in st.indexes.items()}
    unfrozen = set(st.unfrozen)
    q = t.query
    queries = [
        q().gt("altitude", 30000),                                       # index-only count
        q().gt("altitude", 10000).sort_by("lat").limit(50),              # ordered walk
        q().range("lat", 10, 30).range("lon", -100, -60),                # intersect
        q().range("lat", 10, 30).range("lon", -100, -60).sort_by("-altitude").limit(5),
        q().range("altitude", 10000, 20000).sort_by("lat").limit(50).offset(100),
        q().gt("gs", 400).lt("updated_at", 5),                           # index range
        q().match("flight_id", "K00*"),                                  # full scan
    ]
    plans = {qq.explain() for qq in queries}
    assert any(p.startswith("index intersect") for p in plans), plans
    for qq in queries:
        qq.rows()
        qq.count()
    t.get("K00001")
    t.count()
    with db.transaction() as txn:
        tt = txn.table("FlightState")
        tt.query().gt("altitude", 30000).count()
        tt.get("K00002")
    assert pruned == []
    assert set(st.unfrozen) == unfrozen
    for pos, ix in st.indexes.items():
        main, folds, nd, nt = arrays[pos]
        assert ix.main is main and ix.folds == folds, f"a reader folded index {pos}"
        assert (len(ix.delta), len(ix.tomb)) == (nd, nt)


def test_the_maintainer_does_the_folds_and_the_vacuum(loaded):
    db, t = loaded
    st = t._st
    st.maintainer = db._maint
    db._maint._vacuum = db._vacuum
    for ix in st.indexes.values():
        if ix.wants_fold():
            db._maint.request(st, ix)
    db._maint.request_vacuum()
    assert db._maint.idle(30)
    assert not any(ix.wants_fold() for ix in st.indexes.values())
    assert not db._prune_q and not st.unfrozen
    assert db._maint.folds > 0
    t._check()


def test_a_failing_fold_turns_the_store_read_only_loudly(loaded, monkeypatch, capsys):
    db, t = loaded
    st = t._st
    want = sorted(t.query().gt("altitude", 20000).rows())

    def broken(self, job):
        raise RuntimeError("simulated fold bug")
    monkeypatch.setattr(arrayindex.ArrayIndex, "fold_compute", broken)
    st.maintainer = db._maint
    ix = next(ix for ix in st.indexes.values() if ix.wants_fold())
    db._maint.request(st, ix)
    assert db._maint.idle(30)
    assert isinstance(db._maint.error, RuntimeError)
    s = db.stats()
    assert s["readonly"] == 1 and "simulated fold bug" in s["read_only_reason"]
    with pytest.raises(aerostore.ReadOnlyError):
        t.set("K00001", {"gs": 1})
    # the frozen layers stay in place: reads are still right
    assert sorted(t.query().gt("altitude", 20000).rows()) == want
    t._check()
    assert "simulated fold bug" in capsys.readouterr().err
