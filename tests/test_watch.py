"""Subscriptions on a real database: commit order, exactly once, never aborted changes."""

import threading
import time

import pytest

import aerostore
from aerostore.errors import ClosedError, WriteConflict
from aerostore.flightstate import FlightState
from aerostore.watch import Lagged


@pytest.fixture
def new_db(open_db, tmp_path):
    """new_db(durable=False): a database with the FlightState table, in memory or
    in tmp_path/data; closed after the test."""
    def make(durable=False):
        db = open_db(str(tmp_path / "data") if durable else ":memory:")
        db.create_table(FlightState)
        return db
    return make


def collect(sub, n, timeout=10.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        ev = sub.get(timeout=0.1)
        if ev is not None:
            out.append(ev)
    return out


@pytest.mark.parametrize("durable", [False, True])
def test_concurrent_writers_with_watchers(new_db, durable):
    """Writers race on shared keys (conflicts abort some transactions, others
    roll back on purpose); every watcher sees exactly the committed writes, in
    commit order, each once."""
    db = new_db(durable)
    queued = db.subscribe("FlightState", maxsize=100000)
    called = []
    db.subscribe("FlightState", callback=called.append)
    one_key = db.subscribe(FlightState, key="K3", maxsize=100000)
    committed, aborted, conflicts = [], [], []
    lock = threading.Lock()

    def writer(w):
        for i in range(60):
            stamp = w * 1000 + i                         # unique per write: gs
            keys = [f"K{(w + i) % 5}", f"K{(w * 7 + i) % 5}"]
            try:
                with db.transaction() as txn:
                    t = txn.table("FlightState")
                    for k in dict.fromkeys(keys):
                        t.set(k, {"gs": stamp, "altitude": w})
                        time.sleep(0.0005)              # let the others interleave
                    if i % 7 == 3:
                        raise KeyboardInterrupt         # roll back on purpose
            except WriteConflict:
                with lock:
                    aborted.append(stamp)
                    conflicts.append(stamp)
            except KeyboardInterrupt:
                with lock:
                    aborted.append(stamp)
            else:
                with lock:
                    committed.append((stamp, tuple(dict.fromkeys(keys))))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert conflicts, "the writers should have conflicted"
    expected = sum(len(keys) for _, keys in committed)
    events = collect(queued, expected)
    assert queued.get(timeout=0.1) is None                   # nothing more
    assert len(events) == expected and called[:expected] == events
    assert called == events

    # commit order: csn never decreases; one csn = one transaction's writes
    csns = [e.csn for e in events]
    assert csns == sorted(csns)
    by_csn = {}
    for e in events:
        by_csn.setdefault(e.csn, []).append(e)
    stamps = [evs[0].after[4] for evs in by_csn.values()]
    assert all(e.after[4] == evs[0].after[4] for evs in by_csn.values() for e in evs)
    assert sorted(stamps) == sorted(s for s, _ in committed)             # exactly once each
    assert not set(stamps) & set(aborted)                                 # never an aborted one
    assert {evs[0].after[4]: sorted(e.key for e in evs) for evs in by_csn.values()} == {
        s: sorted(keys) for s, keys in committed}

    # each key's events chain: before == previous after; the last after is the table
    last = {}
    for e in events:
        assert e.before == last.get(e.key)
        assert e.op == ("insert" if e.before is None else "update")
        last[e.key] = e.after
    for k, row in last.items():
        assert db.table("FlightState").get(k) == row
    assert [e for e in events if e.key == "K3"] == collect(one_key, sum(e.key == "K3" for e in events))


def test_slow_subscriber_never_blocks_writers_and_learns_what_it_missed(new_db):
    db = new_db()
    slow = db.subscribe("FlightState", maxsize=10)
    t0 = time.monotonic()
    db.ingest_tsv("FlightState", "".join(f"K{i}\t1\t2\t3\t4\t5\n" for i in range(5000)), 100)
    assert time.monotonic() - t0 < 30
    got = slow.drain()
    assert [e.key for e in got[:10]] == [f"K{i}" for i in range(10)]
    assert got[10:] == [Lagged(4990)]
    assert slow.missed_total == 4990
    db.table("FlightState").delete("K0")
    ev = slow.get(timeout=1)
    assert (ev.op, ev.key) == ("delete", "K0")


def test_where_query_filter_and_deletes_by_query(new_db):
    db = new_db()
    flights = db.table("FlightState")
    high = db.subscribe("FlightState", where=flights.query().gt("altitude", 10000))
    db.ingest_tsv("FlightState", "LOW\t1\t2\t500\t4\t5\nHIGH\t1\t2\t30000\t4\t5\nNUL\t\t\t\t\t\n")
    flights.set("LOW", {"alt": 20000})          # enters the set
    flights.set("HIGH", {"alt": 100})           # leaves the set: still reported
    flights.set("HIGH", {"gs": 1})              # outside before and after: not reported
    assert flights.query().lt("altitude", 25000).delete() == 2
    evs = collect(high, 4)
    assert [(e.op, e.key) for e in evs] == [("insert", "HIGH"), ("update", "LOW"), ("update", "HIGH"),
                                            ("delete", "LOW")]
    assert high.get(timeout=0.05) is None


def test_rolled_back_and_conflicting_transactions_publish_nothing(new_db):
    db = new_db()
    sub = db.subscribe("FlightState")
    t1 = db.begin()
    t2 = db.begin()
    t1.table("FlightState").set("X", {"gs": 1})
    t2.table("FlightState").set("X", {"gs": 2})
    t1.commit()
    with pytest.raises(WriteConflict):
        t2.commit()
    t3 = db.begin()
    t3.table("FlightState").set("Y", {"gs": 3})
    t3.rollback()
    evs = collect(sub, 1)
    assert [(e.op, e.key, e.after[4]) for e in evs] == [("insert", "X", 1)]
    assert sub.get(timeout=0.05) is None


def test_subscription_starts_after_subscribe_and_close_ends_it(new_db):
    db = new_db()
    db.table("FlightState").set("A", {"gs": 1})
    sub = db.subscribe("FlightState")
    db.table("FlightState").set("B", {"gs": 1})
    assert [e.key for e in collect(sub, 1)] == ["B"]
    assert sub.get(timeout=0.05) is None
    db.close()
    assert sub.closed and sub.get() is None
    with pytest.raises(ClosedError):
        db.subscribe("FlightState")


@pytest.mark.parametrize("sync", [False, True])
def test_a_callback_may_read_the_database(sync):
    with aerostore.open(":memory:", synchronous_commit=sync) as db:
        t = db.create_table(FlightState)
        seen = []
        db.subscribe("FlightState", callback=lambda ev: seen.append(
            (t.get(ev.key), t.count(), t.query().gt("gs", 0).count())))
        t.upsert(("A", 1.0, 2.0, 3, 4, 5))
        db.ingest_tsv("FlightState", "B\t1\t2\t3\t4\t5\n")
        assert seen == [(("A", 1.0, 2.0, 3, 4, 5), 1, 1), (("B", 1.0, 2.0, 3, 4, 5), 2, 2)]
