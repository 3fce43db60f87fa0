"""Vacuum: versions no snapshot can see are reclaimed with their index entries.

Under a steady update workload (the same keys updated again and again, with
short readers in between) the number of versions, index entries (and the index
write logs not yet folded in) and slots stays flat; deleted keys' slots are
recycled for new keys; an old snapshot holds back exactly what it can see.
"""

import random
import threading

import pytest

import aerostore
from aerostore import FlightState
from conftest import vacuum_now

N = 300


def index_footprint(st):
    """Entries held by the indexes of a table store, folded in or still logged."""
    n = 0
    for ix in st.indexes.values():
        # entries, plus the removed ones an ArrayIndex still holds as tombstones
        n += len(ix) + len(ix.nulls) + ix.pending + 2 * len(getattr(ix, "tomb", ()))
    return n


@pytest.fixture
def t(flights):
    flights.upsert_many([(f"K{i:03d}", 1.0, 2.0, i, 100, 1700000000) for i in range(N)])
    return flights


def update_round(db, r, batch=50):
    for start in range(0, N, batch):
        with db.transaction() as txn:
            tt = txn.table("FlightState")
            for i in range(start, start + batch):
                # every indexed field changes, to a value never used before
                tt.set(f"K{i:03d}", {"alt": r * 1000 + i, "ts": 1700000000 + r * N + i,
                                     "lat": (r * N + i) / 1e4, "gs": (r + i) % 65536,
                                     "lon": -((r * N + i) / 1e4)})


def test_steady_updates_keep_versions_and_index_entries_flat(mem_db, t):
    """No index reads at all: the index write logs must not grow without bound either."""
    st = t._st
    rng = random.Random(1)
    peaks = []
    for r in range(40):
        reader = None
        if r % 3 == 0:
            reader = mem_db.begin()          # a short reader across part of the round
            reader.table("FlightState").get("K000")
        update_round(mem_db, r)
        if reader is not None:
            assert reader.table("FlightState").get("K000")[3] in (0, (r - 1) * 1000)
            reader.rollback()               # the maintainer prunes what it held back
            assert mem_db._maint.idle(10)
        t.get(f"K{rng.randrange(N):03d}")
        s = mem_db.stats()
        assert s["rows"] == N
        assert s["versions"] == N, f"round {r}: {s['versions']} versions for {N} rows"
        assert len(st.rows) == N
        peaks.append(index_footprint(st))
    # 5 indexes x N rows; the write logs may lag by a bounded amount, never grow with rounds
    assert max(peaks) <= 5 * N * 4 + 200_000, peaks
    assert max(peaks[20:]) <= max(peaks[:20]) * 1.5 + 1, peaks
    t._check()
    # what is left once settled: one entry per row and index (tombstones are bounded garbage)
    assert sum(len(ix) for ix in st.indexes.values()) == 5 * N
    assert t.query().range("altitude", 39000, 40000).count() == N


def test_concurrent_short_readers_then_everything_reclaimed(mem_db, t):
    stop = threading.Event()
    errors = []

    def reader():
        try:
            while not stop.is_set():
                with mem_db.transaction() as txn:
                    tt = txn.table("FlightState")
                    a = tt.get("K001")
                    assert tt.count() == N
                    assert tt.get("K001") == a
                    assert tt.query().ge("alt", 0).count() == N
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for th in threads:
        th.start()
    try:
        for r in range(25):
            update_round(mem_db, r, batch=25)
    finally:
        stop.set()
        for th in threads:
            th.join(60)
    assert not errors
    vacuum_now(mem_db)
    s = mem_db.stats()
    assert s["snapshots"] == 0 and s["pending_prune"] == 0
    assert s["versions"] == s["rows"] == N
    t._check()
    assert sum(len(ix) for ix in t._st.indexes.values()) == 5 * N
    assert len(t._st.rows) == N


def test_old_snapshot_holds_back_exactly_its_versions(mem_db, t):
    st = t._st
    old = mem_db.begin()
    for n in range(50):
        t.set("K007", {"gs": 1000 + n})
    assert mem_db.stats()["versions"] == N + 50
    assert old.table("FlightState").get("K007")[4] == 100
    assert old.table("FlightState").query().eq("gs", 1049).count() == 0
    t._check()
    mid = mem_db.begin()                 # sees gs 1049
    t.set("K007", {"gs": 7})
    old.rollback()                       # now only ``mid``'s version and the newest are needed
    assert mem_db._maint.idle(10)   # readers leave pruning to the maintainer
    s = mem_db.stats()
    assert s["versions"] == N + 1
    t._check()
    assert mid.table("FlightState").get("K007")[4] == 1049
    assert mid.table("FlightState").query().eq("gs", 1049).keys() == ["K007"]
    mid.rollback()
    assert mem_db._maint.idle(10)   # readers leave pruning to the maintainer
    assert mem_db.stats()["versions"] == N
    t._check()
    # what is left once settled: one entry per row and index (tombstones are bounded garbage)
    assert sum(len(ix) for ix in st.indexes.values()) == 5 * N


def test_deleted_slots_are_recycled(mem_db, t):
    st = t._st
    high = len(st.rows)
    next_key = 0
    for r in range(30):
        victims = t.query().sort_by("flight_id").limit(40).keys()
        with mem_db.transaction() as txn:
            tt = txn.table("FlightState")
            for k in victims:
                tt.delete(k)
        rows = [(f"N{next_key + i:05d}", 0.5, 0.5, r, 1, 1) for i in range(40)]
        next_key += 40
        t.upsert_many(rows)
        assert t.count() == N
        assert len(st.rows) <= high + 40, f"round {r}: {len(st.rows)} slots"
        assert mem_db.stats()["versions"] == N
    t._check()


def test_delete_and_insert_in_one_commit_recycle_later(mem_db, t):
    st = t._st
    high = len(st.rows)
    for r in range(30):
        with mem_db.transaction() as txn:
            tt = txn.table("FlightState")
            for k in tt.query().sort_by("-flight_id").limit(20).keys():
                tt.delete(k)
            for i in range(20):
                tt.upsert((f"M{r:02d}{i:02d}", 0.0, 0.0, i, i, i))
        assert len(st.rows) <= high + 20
    assert t.count() == N
    t._check()


def test_slots_of_deletes_seen_by_a_reader_wait_for_it(mem_db, t):
    st = t._st
    old = mem_db.begin()
    for i in range(100):
        t.delete(f"K{i:03d}")
    t.upsert_many([(f"X{i}", 0.0, 0.0, 0, 0, 0) for i in range(100)])
    assert len(st.rows) == N + 100       # the deleted rows are still visible to ``old``
    ot = old.table("FlightState")
    assert ot.count() == N and ot.get("K050") is not None and ot.get("X1") is None
    assert ot.query().lt("alt", 100).count() == 100
    old.rollback()
    assert mem_db._maint.idle(10)   # readers leave pruning to the maintainer
    t.upsert_many([(f"Y{i}", 0.0, 0.0, 0, 0, 0) for i in range(100)])
    assert len(st.rows) == N + 100       # Y* took the freed slots
    assert t.count() == N + 100
    assert mem_db.stats()["versions"] == N + 100
    t._check()


def test_the_unfrozen_set_shrinks_after_a_bulk_write(mem_db, flights):
    """A Python set keeps its largest table when emptied, and iterating it costs that
    table: after a bulk write the visibility map must be rebuilt small, or every
    later commit's conflict check (and index-only count) pays for the bulk."""
    import sys
    st = flights._st
    small = sys.getsizeof(set())
    flights.upsert_many([(f"B{i:05d}", 1.0, 2.0, i, 1, 1700000000) for i in range(20000)])
    vacuum_now(mem_db)
    assert len(st.unfrozen) == 0
    assert sys.getsizeof(st.unfrozen) == small
    flights.set("B00001", {"alt": 5})
    assert sys.getsizeof(st.unfrozen) == small
    flights._check()


def test_an_index_null_set_shrinks_when_its_nulls_are_filled(mem_db, flights):
    import sys
    flights.upsert_many([(f"N{i:05d}", 1.0, 2.0, i, None, 1700000000) for i in range(20000)])
    flights.upsert_many([(f"N{i:05d}", 1.0, 2.0, i, 7, 1700000000) for i in range(20000)])
    vacuum_now(mem_db)
    ix = flights._st.indexes[flights._st.schema.position("gs")]
    assert len(ix.nulls) == 0
    assert sys.getsizeof(ix.nulls) == sys.getsizeof(set())
    assert flights.query().null("gs").count() == 0
    flights._check()
