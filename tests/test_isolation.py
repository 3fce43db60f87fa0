"""Snapshot isolation, PostgreSQL isolation-spec style.

Each test spells out one interleaving of two or three transactions (T1, T2, T3)
step by step, all from one thread, so every run takes the same path.  Anomalies
that snapshot isolation prevents (dirty read, non-repeatable read, phantom, lost
update) must not happen; write skew is allowed and documented (txn.py).
"""

import threading

import pytest

import aerostore
from aerostore import FlightState
from conftest import vacuum_now


def row(key, lat=40.0, lon=-73.0, alt=30000, gs=400, ts=1700000000):
    return (key, lat, lon, alt, gs, ts)


@pytest.fixture
def db(mem_db, flights):
    flights.upsert_many([row(f"F{i:02d}", lat=i, alt=1000 * i, gs=100 + i) for i in range(20)])
    return mem_db


def tbl(txn):
    return txn.table("FlightState")


def state(t):
    """Everything a table handle shows: all rows by key."""
    return {r[0]: r for r in t.query().rows()}


# -- dirty read ------------------------------------------------------------------------

def test_dirty_read_prevented(db):
    t1 = db.begin()
    t2 = db.begin()
    tbl(t1).set("F05", {"alt": 99999})
    tbl(t1).upsert(row("NEW1", alt=99999))
    tbl(t1).delete("F06")
    # T2 sees none of T1's pending writes, whatever the access path
    assert tbl(t2).get("F05")[3] == 5000
    assert tbl(t2).get("NEW1") is None
    assert tbl(t2).get("F06") is not None
    assert tbl(t2).query().eq("altitude", 99999).count() == 0
    assert tbl(t2).query().ge("altitude", 99999).rows() == []
    assert tbl(t2).count() == 20
    # nor does an autocommit read
    flights = db.table("FlightState")
    assert flights.get("F05")[3] == 5000
    assert flights.get("NEW1") is None
    assert flights.count() == 20
    assert flights.query().eq("alt", 99999).count() == 0
    t1.commit()
    # T2 keeps its snapshot; a new transaction sees the commit
    assert tbl(t2).get("F05")[3] == 5000
    assert tbl(t2).get("NEW1") is None
    t3 = db.begin()
    assert tbl(t3).get("F05")[3] == 99999
    assert tbl(t3).get("F06") is None
    assert sorted(tbl(t3).query().eq("altitude", 99999).keys()) == ["F05", "NEW1"]
    t2.rollback()
    t3.rollback()
    flights._check()


# -- non-repeatable read -------------------------------------------------------------------

def test_non_repeatable_read_prevented(db):
    t1 = db.begin()
    before = tbl(t1).get("F03")
    before_q = tbl(t1).query().range("gs", 100, 110).sort_by("-gs").rows()
    t2 = db.begin()
    tbl(t2).set("F03", {"gs": 500, "lat": -1.5})
    tbl(t2).delete("F04")
    t2.commit()
    vacuum_now(db)
    assert tbl(t1).get("F03") == before
    assert tbl(t1).get("F04") is not None
    assert tbl(t1).query().range("gs", 100, 110).sort_by("-gs").rows() == before_q
    assert tbl(t1).query().eq("gs", 103).keys() == ["F03"]
    assert tbl(t1).query().eq("gs", 500).keys() == []
    assert tbl(t1).query().sort_by("lat").limit(1).keys() == ["F00"]
    # autocommit sees the new state
    flights = db.table("FlightState")
    assert flights.get("F03")[4] == 500
    assert flights.query().sort_by("lat").limit(1).keys() == ["F03"]
    t1.rollback()
    flights._check()


# -- phantom through an index range --------------------------------------------------------

def test_phantom_prevented_through_index_range(db):
    flights = db.table("FlightState")
    # filler far outside the range, so that the planner picks the altitude index
    flights.upsert_many([row(f"Z{i:03d}", alt=200000 + i) for i in range(400)])
    q = lambda t: t.query().range("altitude", 5000, 10000)  # noqa: E731
    assert "index" in q(flights).explain()
    t1 = db.begin()
    keys0 = q(tbl(t1)).keys()
    assert sorted(keys0) == ["F05", "F06", "F07", "F08", "F09"]
    assert q(tbl(t1)).count() == 5
    # T2 inserts into the range, moves a row into it, moves one out, deletes one
    t2 = db.begin()
    tbl(t2).upsert(row("P1", alt=7500))
    tbl(t2).set("F15", {"alt": 5001})
    tbl(t2).set("F06", {"alt": 50})
    tbl(t2).delete("F07")
    t2.commit()
    vacuum_now(db)
    # T1: same rows by every path: index range, count (index only), walk, scan
    assert q(tbl(t1)).keys() == keys0
    assert q(tbl(t1)).count() == 5
    assert q(tbl(t1)).sort_by("altitude").limit(3).keys() == ["F05", "F06", "F07"]
    assert q(tbl(t1)).sort_by("-altitude").limit(2).keys() == ["F09", "F08"]
    assert q(tbl(t1)).match("flight_id", "F*").count() == 5
    assert tbl(t1).query().ge("altitude", 5000).lt("altitude", 10000).count() == 5
    assert tbl(t1).query().in_values("altitude", [7500, 5001, 50, 7000]).keys() == ["F07"]
    assert tbl(t1).count() == 420
    # a new snapshot sees T2's world
    assert sorted(q(flights).keys()) == ["F05", "F08", "F09", "F15", "P1"]
    assert q(flights).count() == 5
    t1.rollback()
    flights._check()


def test_phantom_prevented_for_index_only_count_with_pending_prune(db):
    """Index-only counting must correct for version chains an old snapshot still needs."""
    flights = db.table("FlightState")
    flights.upsert_many([row(f"Z{i:03d}", gs=20000 + i) for i in range(400)])
    t1 = db.begin()
    q = lambda t: t.query().range("gs", 100, 120)  # noqa: E731
    assert "index only count" in q(flights).explain(count=True)
    assert q(tbl(t1)).count() == 20
    for i in range(20):
        flights.set(f"F{i:02d}", {"gs": 1000 + i})
    flights.upsert(row("X", gs=101))
    assert q(flights).count() == 1
    assert q(tbl(t1)).count() == 20
    assert q(tbl(t1)).offset(5).limit(10).count() == 10
    t1.rollback()
    assert q(flights).count() == 1
    assert flights.query().range("gs", 1000, 1020).count() == 20
    flights._check()


# -- lost update ---------------------------------------------------------------------------

def test_lost_update_prevented(db):
    t1 = db.begin()
    t2 = db.begin()
    g1 = tbl(t1).get("F01")[4]
    g2 = tbl(t2).get("F01")[4]
    tbl(t1).set("F01", {"gs": g1 + 10})
    tbl(t2).set("F01", {"gs": g2 + 20})
    t1.commit()
    with pytest.raises(aerostore.WriteConflict) as ei:
        t2.commit()
    assert isinstance(ei.value, aerostore.TransientError)
    assert ei.value.tcl_errorcode == ["AEROSTORE", "CONFLICT"]
    assert "F01" in str(ei.value)
    assert t2.closed
    # the retry sees the winner's write and applies on top of it
    with db.transaction() as t3:
        g3 = tbl(t3).get("F01")[4]
        tbl(t3).set("F01", {"gs": g3 + 20})
    assert db.table("FlightState").get("F01")[4] == 101 + 10 + 20
    db.table("FlightState")._check()


@pytest.mark.parametrize("first,second", [
    ("update", "update"), ("update", "delete"), ("delete", "update"), ("delete", "delete"),
    ("insert", "insert"), ("insert", "update"),
])
def test_first_committer_wins_every_write_kind(db, first, second):
    key = "NEWKEY" if first == "insert" else "F02"
    t1 = db.begin()
    t2 = db.begin()

    def do(t, kind, alt):
        if kind == "delete":
            assert tbl(t).delete(key)
        elif kind == "insert":
            assert tbl(t).upsert(row(key, alt=alt)) is True
        else:
            tbl(t).set(key, {"alt": alt})

    do(t1, first, 111)
    do(t2, second, 222)
    t1.commit()
    with pytest.raises(aerostore.WriteConflict):
        t2.commit()
    got = db.table("FlightState").get(key)
    if first == "delete":
        assert got is None
    else:
        assert got[3] == 111
    db.table("FlightState")._check()


def test_insert_then_delete_by_another_still_conflicts(db):
    """A key created and deleted after my snapshot was still written by someone else."""
    t1 = db.begin()
    with db.transaction() as t2:
        tbl(t2).upsert(row("GHOST"))
    with db.transaction() as t3:
        tbl(t3).delete("GHOST")
    tbl(t1).upsert(row("GHOST", alt=1))
    with pytest.raises(aerostore.WriteConflict):
        t1.commit()
    assert db.table("FlightState").get("GHOST") is None


def test_three_transactions_conflict_depends_on_snapshot(db):
    t1 = db.begin()                     # before T2's commit
    t2 = db.begin()
    tbl(t2).set("F09", {"gs": 1})
    t2.commit()
    t3 = db.begin()                     # after T2's commit
    tbl(t1).set("F09", {"gs": 2})
    tbl(t3).set("F09", {"gs": 3})
    t3.commit()                         # T3 saw T2: no conflict
    with pytest.raises(aerostore.WriteConflict):
        t1.commit()                     # T1 did not
    assert db.table("FlightState").get("F09")[4] == 3


def test_disjoint_writers_both_commit(db):
    t1 = db.begin()
    t2 = db.begin()
    tbl(t1).set("F01", {"gs": 1})
    tbl(t2).set("F02", {"gs": 2})
    t2.commit()
    t1.commit()
    f = db.table("FlightState")
    assert (f.get("F01")[4], f.get("F02")[4]) == (1, 2)


# -- write skew: allowed -------------------------------------------------------------------

def test_write_skew_is_allowed(db):
    """Documented behaviour (aerostore/txn.py module docstring): snapshot isolation, not serializable.

    Invariant "at least one of F10/F11 has gs 0" is kept by each transaction on its
    own snapshot, yet both commit (they write disjoint keys), and it breaks.  Users
    guard such invariants by also writing a common key in both transactions.
    """
    f = db.table("FlightState")
    f.set("F10", {"gs": 0})
    f.set("F11", {"gs": 0})
    t1 = db.begin()
    t2 = db.begin()
    if tbl(t1).query().eq("gs", 0).count() >= 2:
        tbl(t1).set("F10", {"gs": 1})
    if tbl(t2).query().eq("gs", 0).count() >= 2:
        tbl(t2).set("F11", {"gs": 1})
    t1.commit()
    t2.commit()                         # no WriteConflict: write skew happens
    assert f.query().eq("gs", 0).count() == 0

    # the documented guard: both also write a common key -> the second one conflicts
    f.set("F10", {"gs": 0})
    f.set("F11", {"gs": 0})
    t1 = db.begin()
    t2 = db.begin()
    for t, k in ((t1, "F10"), (t2, "F11")):
        if tbl(t).query().eq("gs", 0).count() >= 2:
            tbl(t).set(k, {"gs": 1})
            tbl(t).set("F19", {"updated_at": 1})
    t1.commit()
    with pytest.raises(aerostore.WriteConflict):
        t2.commit()
    assert f.query().eq("gs", 0).keys() == ["F11"]


# -- own writes ----------------------------------------------------------------------------

def test_transaction_sees_its_own_writes(db):
    f = db.table("FlightState")
    t = db.begin()
    tt = tbl(t)
    tt.upsert(row("A1", lat=-5, alt=4500, gs=7))
    tt.upsert(row("A2", lat=None, alt=None, gs=8))
    tt.set("F04", {"alt": 100})          # moved down
    tt.set("F18", {"alt": 4600})         # moved into the middle
    assert tt.delete("F03")
    assert not tt.delete("NOPE")
    tt.set("A1", {"gs": 9})              # update of an own insert
    assert tt.get("A1") == ("A1", -5.0, -73.0, 4500, 9, 1700000000)
    assert tt.get("F03") is None
    assert tt.exists("A2") and not tt.exists("F03")
    assert tt.count() == 21
    assert tt.query().count() == 21
    assert tt.query().lt("altitude", 5000).sort_by("altitude").keys() == [
        "F00", "F04", "F01", "F02", "A1", "F18"]
    assert tt.query().sort_by("-altitude").limit(2).keys() == ["A2", "F19"]
    assert tt.query().sort_by("altitude").limit(3).offset(1).keys() == ["F04", "F01", "F02"]
    assert tt.query().sort_by("lat").limit(1).keys() == ["A1"]
    assert tt.query().null("lat").keys() == ["A2"]
    assert tt.query().range("altitude", 4000, 5000).count() == 2
    assert tt.query().eq("flight_id", "F03").count() == 0
    assert sorted(tt.query().in_values("flight_id", ["F03", "A1", "F04"]).keys()) == ["A1", "F04"]
    assert tt.query().eq("gs", 103).count() == 0
    # outside the transaction: nothing yet
    assert f.get("A1") is None and f.get("F03") is not None and f.count() == 20
    t.commit()
    assert f.get("A1")[4] == 9 and f.get("F03") is None and f.count() == 21
    f._check()


def test_delete_then_reinsert_in_one_transaction(db):
    f = db.table("FlightState")
    with db.transaction() as t:
        tt = tbl(t)
        assert tt.delete("F01")
        assert tt.get("F01") is None
        assert tt.upsert(row("F01", alt=-7)) is True
        assert tt.query().lt("altitude", 0).keys() == ["F01"]
        assert tt.count() == 20
    assert f.get("F01")[3] == -7
    f._check()


def test_query_delete_inside_transaction(db):
    f = db.table("FlightState")
    t = db.begin()
    tt = tbl(t)
    assert tt.query().lt("altitude", 3000).delete() == 3
    assert tt.count() == 17
    assert tt.query().lt("altitude", 3000).count() == 0
    assert f.count() == 20
    t.commit()
    assert f.count() == 17
    assert f.query().lt("altitude", 3000).delete() == 0
    assert f.query().sort_by("-altitude").limit(2).delete() == 2
    assert f.count() == 15
    f._check()


# -- rollback and abort --------------------------------------------------------------------

def snapshot_of(db):
    f = db.table("FlightState")
    st = db.stats()
    return (state(f), f.count(), st["rows"], st["commits"],
            f.query().range("altitude", 0, 10 ** 6).count(), sorted(f.query().null("lat").keys()))


def test_rollback_leaves_no_trace(db):
    before = snapshot_of(db)
    t = db.begin()
    tt = tbl(t)
    tt.upsert(row("R1"))
    tt.set("F01", {"lat": None})
    tt.delete("F02")
    t.rollback()
    t.rollback()  # twice is fine
    assert snapshot_of(db) == before
    with pytest.raises(aerostore.ClosedError):
        tt.get("F01")
    with pytest.raises(RuntimeError):
        with db.transaction() as t:
            tbl(t).upsert(row("R2"))
            raise RuntimeError("boom")
    assert snapshot_of(db) == before
    db.table("FlightState")._check()


def test_abort_after_conflict_leaves_no_trace(db):
    t1 = db.begin()
    t2 = db.begin()
    tbl(t1).set("F01", {"gs": 1})
    tbl(t2).set("F01", {"gs": 2})
    tbl(t2).upsert(row("ONLY_T2"))
    tbl(t2).delete("F05")
    tbl(t2).set("F06", {"alt": -1})
    t1.commit()
    before = snapshot_of(db)
    with pytest.raises(aerostore.WriteConflict):
        t2.commit()
    assert snapshot_of(db) == before
    assert db.stats()["versions"] == db.stats()["rows"]
    f = db.table("FlightState")
    assert f.get("ONLY_T2") is None and f.get("F05") is not None and f.get("F06")[3] == 6000
    with pytest.raises(aerostore.ClosedError):
        t2.commit()
    with pytest.raises(aerostore.ClosedError):
        tbl(t2)
    f._check()


# -- readers never block writers --------------------------------------------------------------

def test_long_reader_does_not_block_writers(db):
    f = db.table("FlightState")
    reader = db.begin()
    seen = state(tbl(reader))
    errors = []

    def writer():
        try:
            for n in range(200):
                with db.transaction() as t:
                    tbl(t).set(f"F{n % 20:02d}", {"gs": n})
                f.upsert(row(f"W{n}", alt=n))
                if n % 3 == 0:
                    f.delete(f"W{n}")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    th = threading.Thread(target=writer)
    th.start()
    th.join(timeout=60)
    assert not th.is_alive(), "a writer blocked behind an open reader"
    assert not errors
    # the reader still sees its snapshot, by every path
    assert state(tbl(reader)) == seen
    assert tbl(reader).count() == 20
    assert tbl(reader).query().range("gs", 0, 1000).count() == 20
    assert tbl(reader).query().sort_by("gs").limit(3).keys() == ["F00", "F01", "F02"]
    assert f.count() == 20 + 200 - 67
    f._check()
    versions_open = db.stats()["versions"]
    reader.rollback()
    assert db._maint.idle(10)   # readers leave pruning to the maintainer
    f._check()
    assert db.stats()["versions"] == f.count() < versions_open


# -- several tables in one transaction -------------------------------------------------------

@aerostore.table
class Ledger:
    entry = aerostore.Key()
    flight = aerostore.Str(index=True)
    amount = aerostore.Int()


def test_multi_table_transaction_is_atomic(db):
    led = db.create_table(Ledger)
    f = db.table("FlightState")
    t1 = db.begin()
    t2 = db.begin()
    tbl(t1).set("F01", {"gs": 1})
    t1.table("Ledger").upsert(("e1", "F01", 10))
    t2.table("Ledger").upsert(("e2", "F02", 20))
    t2.table("Ledger").upsert(("e1", "F02", 30))        # conflicts with t1's e1
    tbl(t2).set("F02", {"gs": 2})
    reader = db.begin()
    t1.commit()
    assert reader.table("Ledger").count() == 0 and tbl(reader).get("F01")[4] == 101
    with pytest.raises(aerostore.WriteConflict) as ei:
        t2.commit()
    assert "Ledger" in str(ei.value)
    assert f.get("F02")[4] == 102 and led.get("e2") is None        # nothing of t2 applied
    assert led.query().eq("flight", "F01").keys() == ["e1"] and f.get("F01")[4] == 1
    reader.rollback()
    led._check()
    f._check()
