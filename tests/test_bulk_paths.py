"""The bulk write paths at C speed, against the row-by-row paths they shortcut.

``TxnTable._upsert_fresh`` (an ingest batch into an empty write set),
``TableStore._install_updates`` (a commit whose rows all update settled rows)
and ``heap._settle_all`` (a prune whose slots each hold one live version over
at most one older one) make the same versions, records, index entries and
counts as the loops they stand in for; a bulk part leaves no ``Picture``.
Each test checks that the path under test ran, and compares the store, after
every step, with a twin database fed the same rows one transaction per row
(the loops) and with a model.
"""

import random
import threading

import pytest

import aerostore
from aerostore import FlightState, heap

FIELDS = ("flight_id", "lat", "lon", "altitude", "gs", "updated_at")


@pytest.fixture
def taken(monkeypatch):
    """How often each bulk path ran (and returned a result, for ``_settle_all``)."""
    got = {"install": 0, "settle": 0, "settle_declined": 0}
    install = heap.TableStore._install_updates
    settle = heap._settle_all

    def counting_install(self, *a):
        got["install"] += 1
        return install(self, *a)

    def counting_settle(*a):
        out = settle(*a)
        got["settle" if out is not None else "settle_declined"] += 1
        return out

    monkeypatch.setattr(heap.TableStore, "_install_updates", counting_install)
    monkeypatch.setattr(heap, "_settle_all", counting_settle)
    return got


def _row(rng, key):
    return FlightState.check_row((key, round(rng.uniform(-90, 90), 3), round(rng.uniform(-180, 180), 3),
                                  rng.choice((None, rng.randint(0, 45000))), rng.randint(0, 600),
                                  rng.randint(1, 50)))


def _contents(t):
    return sorted(t.query().rows())


def _answers(t):
    """The same questions through each index: counts, and a sorted walk."""
    q = t.query
    return (q().gt("altitude", 20000).count(), q().lt("gs", 300).count(),
            q().range("lat", -10, 40).count(), q().ge("updated_at", 25).count(),
            q().gt("lon", 0).sort_by("lat").limit(7).keys(), q().null("altitude").count())


def test_bulk_batches_match_one_row_per_commit(taken):
    rng = random.Random(7)
    bulk, single = aerostore.open(":memory:"), aerostore.open(":memory:")
    try:
        tb, ts = bulk.create_table(FlightState), single.create_table(FlightState)
        model = {}
        keys = [f"K{i:03d}" for i in range(300)]
        for step in range(12):
            held = bulk.begin() if step % 4 == 3 else None      # an old snapshot: chains grow
            seen = {k: tuple(v) for k, v in model.items()}
            if step % 6 == 3:
                batch = [_row(rng, k) for k in rng.sample(sorted(set(keys) - set(model)), 30)]  # inserts
            elif step % 3 == 0:
                batch = [_row(rng, k) for k in rng.sample(keys, 60)]          # inserts and updates
            else:
                batch = [_row(rng, k) for k in rng.sample(sorted(model), 40)]  # updates only
                if step % 3 == 2:
                    batch += [_row(rng, batch[0][0])]            # a key twice: the last row wins
                    keep = batch[1]                             # a row equal to its old one but a field
                    batch[1] = model[keep[0]][:4] + (keep[4],) + model[keep[0]][5:]
            want_ins = len({r[0] for r in batch} - set(model))
            with bulk.transaction() as txn:
                got = txn.table("FlightState").upsert_checked(batch)
            assert got == (want_ins, len(batch) - want_ins)
            for r in batch:
                with single.transaction() as txn:
                    txn.table("FlightState").upsert_checked([r])
                model[r[0]] = r
            if held is not None:
                assert sorted(held.table("FlightState").query().rows()) == sorted(seen.values())
                tb._check()
                held.rollback()
            if step % 4 == 1:
                doomed = rng.sample(sorted(model), 5)
                for db in (bulk, single):
                    with db.transaction() as txn:
                        for k in doomed:
                            txn.table("FlightState").delete(k)
                for k in doomed:
                    del model[k]
            assert bulk._maint.idle(10) and single._maint.idle(10)
            tb._check()
            ts._check()
            assert _contents(tb) == _contents(ts) == sorted(model.values())
            assert _answers(tb) == _answers(ts)
        assert taken["install"] >= 4 and taken["settle"] >= 8
    finally:
        bulk.close()
        single.close()


def test_an_old_snapshot_reads_the_rows_a_bulk_update_replaced(mem_db, taken):
    t = mem_db.create_table(FlightState)
    rng = random.Random(3)
    first = [_row(rng, f"K{i:02d}") for i in range(40)]
    t.upsert_many(first)
    assert mem_db._maint.idle(10)
    old = mem_db.begin()
    sub = mem_db.subscribe("FlightState")
    second = [_row(rng, f"K{i:02d}") for i in range(40)]
    t.upsert_many(second)
    assert taken["install"] == 1
    events = [sub.get(timeout=10) for _ in second]
    assert [(e.op, e.key, e.before, e.after) for e in events] == [
        ("update", a[0], b, a) for b, a in zip(first, second)]
    sub.close()
    mid = mem_db.begin()
    third = [_row(rng, f"K{i:02d}") for i in range(40)]
    t.upsert_many(third)
    assert sorted(old.table("FlightState").query().rows()) == sorted(first)
    assert old.table("FlightState").query().gt("gs", 300).count() == sum(r[4] > 300 for r in first)
    assert sorted(mid.table("FlightState").query().rows()) == sorted(second)
    t._check()
    old.rollback()
    mid.rollback()
    assert mem_db._maint.idle(10)
    t._check()
    assert mem_db.stats()["versions"] == 40
    assert sorted(t.query().rows()) == sorted(third)
    # the chains of three versions settled through the loop, the others at C speed
    assert taken["settle_declined"] >= 1 and taken["settle"] >= 1


def test_a_bulk_part_leaves_no_picture_and_counts_stay_exact(mem_db, monkeypatch):
    t = mem_db.create_table(FlightState)
    st = t._st
    rng = random.Random(5)
    n = heap._WHOLE + 10
    t.upsert_many([_row(rng, f"K{i:05d}") for i in range(n)])
    t.query().gt("gs", 0).count()                  # the indexes are built
    assert mem_db._maint.idle(10)
    old = mem_db.begin()                           # keeps the next commit's chains
    published = []                                 # by this thread (a background fold may too)
    real = heap.TableStore._publish_picture
    monkeypatch.setattr(heap.TableStore, "_publish_picture", lambda self: (
        published.append(threading.current_thread()), real(self))[1])
    t.upsert_many([_row(rng, f"K{i:05d}") for i in range(n)])
    assert threading.current_thread() not in published and len(st.unfrozen) == n
    st.picture = None                              # as the bulk section left it
    fresh = sorted(t.query().rows())
    assert t.query().gt("gs", 300).count() == sum(r[4] > 300 for r in fresh)
    assert old.table("FlightState").query().gt("gs", 300).count() == sum(
        r[4] > 300 for r in old.table("FlightState").query().rows())
    t.set("K00001", {"gs": 1})                     # a small section publishes again
    assert st.picture is not None and len(st.picture.heads) == len(st.unfrozen)
    old.rollback()
    assert mem_db._maint.idle(10)
    t._check()
