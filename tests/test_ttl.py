"""The TTL sweeper: which rows expire, slices as transactions, snapshots, the thread."""

import threading
import time

import pytest

import aerostore
from aerostore.errors import UsageError, WriteConflict
from aerostore.flightstate import FlightState
from aerostore.ttl import TTLSweeper

NOW = 1_700_000_000


@pytest.fixture
def db():
    """A database whose own background sweeper is stopped: tests drive their own."""
    d = aerostore.open(":memory:")
    d.create_table(FlightState)
    d.ttl.stop()
    yield d
    d.close()


def wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def load(db, ages):
    """One row per age (seconds before NOW), key A<age>; None = null updated_at."""
    db.table("FlightState").upsert_many(
        [(f"A{a}", 1.0, 2.0, 3, 4, None if a is None else NOW - a) for a in ages])


def test_expires_exactly_rows_older_than_ttl(db):
    load(db, [0, 599, 600, 601, 10000, None])
    db.set_config("aerostore.ttl_secs", 600)
    sw = TTLSweeper(db, clock=lambda: NOW)
    assert sw.sweep() == 2
    assert sorted(db.table("FlightState").query().keys()) == ["A0", "A599", "A600", "ANone"]
    assert sw.sweep() == 0 and sw.sweeps == 2 and sw.deleted == 2


def test_fractional_clock(db):
    load(db, [600, 601])
    db.set_config("aerostore.ttl_secs", 600)
    # now - updated_at > 600 with now = NOW + 0.5: age 600 is 600.5 old
    assert TTLSweeper(db, clock=lambda: NOW + 0.5).sweep() == 2


def test_off_when_ttl_is_zero(db):
    load(db, [10 ** 6])
    assert TTLSweeper(db, clock=lambda: NOW).sweep() == 0
    assert db.table("FlightState").count() == 1


def test_sweep_now_argument_and_future_rows(db):
    load(db, [-50, 5])
    db.set_config("aerostore.ttl_secs", 10)
    sw = TTLSweeper(db, clock=lambda: 0)
    assert sw.sweep(now=NOW) == 0
    assert sw.sweep(now=NOW + 20) == 1
    assert sw.sweep(now=NOW + 61) == 1


def test_slices_are_separate_small_transactions(db):
    load(db, range(1000, 1095))
    load(db, [0])
    db.set_config("aerostore.ttl_secs", 100)
    commits = []
    db.add_publish_hook(lambda csn, changes: commits.append(sorted({c[1] for c in changes}) + [len(changes)]))
    assert TTLSweeper(db, clock=lambda: NOW, slice_rows=10).sweep() == 95
    assert commits == [["delete", 10]] * 9 + [["delete", 5]]
    assert db.table("FlightState").query().keys() == ["A0"]


def test_open_snapshots_still_see_swept_rows_and_watchers_see_deletes(db):
    load(db, [5000, 1])
    db.set_config("aerostore.ttl_secs", 100)
    sub = db.subscribe("FlightState")
    txn = db.begin()
    assert TTLSweeper(db, clock=lambda: NOW).sweep() == 1
    assert txn.table("FlightState").exists("A5000")
    assert not db.table("FlightState").exists("A5000")
    txn.rollback()
    ev = sub.get(timeout=1.0)
    assert (ev.op, ev.key, ev.after) == ("delete", "A5000", None)
    assert ev.before[5] == NOW - 5000


def test_only_tables_with_an_integer_updated_at(db):
    @aerostore.table
    class Other:
        k = aerostore.Key()
        updated_at = aerostore.Str()

    @aerostore.table
    class Plain:
        k = aerostore.Key()
        v = aerostore.Int()

    db.create_table(Other).upsert(("x", "0"))
    db.create_table(Plain).upsert(("y", 0))
    load(db, [10 ** 6])
    db.set_config("aerostore.ttl_secs", 1)
    assert TTLSweeper(db, clock=lambda: NOW).sweep() == 1
    assert db.table("Other").count() == db.table("Plain").count() == 1


def test_a_row_refreshed_concurrently_is_never_deleted(db):
    """Writers refresh expired rows while sweeps run: every refresh that committed
    survives (a sweep slice that raced it loses with a write conflict)."""
    keys = [f"A{a}" for a in range(1000, 1300)]
    load(db, range(1000, 1300))
    db.set_config("aerostore.ttl_secs", 100)
    sw = TTLSweeper(db, clock=lambda: NOW, slice_rows=7)
    refreshed = []
    stop = threading.Event()

    def writer():
        for k in keys:
            while True:
                try:
                    with db.transaction() as txn:
                        t = txn.table("FlightState")
                        found = t.exists(k)
                        if found:
                            t.set(k, {"updated_at": NOW})
                except WriteConflict:
                    continue
                if found:
                    refreshed.append(k)
                break
        stop.set()

    w = threading.Thread(target=writer)
    w.start()
    while not stop.is_set():
        sw.sweep()
    w.join()
    sw.sweep()
    t = db.table("FlightState")
    assert refreshed, "the writer should win some races"
    for k in refreshed:
        assert t.get(k)[5] == NOW
    assert t.count() == len(refreshed)


@pytest.fixture
def live_db(open_db):
    """A database whose background sweeper follows its settings (off by default),
    with two rows of which A1000000 is long expired."""
    d = open_db(":memory:")
    d.create_table(FlightState)
    load(d, [10 ** 6, 0])
    return d


def test_background_thread_starts_when_ttl_secs_is_set(live_db):
    ttl = live_db.ttl
    assert not ttl.running                        # TTL off by default
    live_db.set_config("aerostore.ttl_sweep_interval_ms", 10)
    assert not ttl.running
    live_db.set_config("aerostore.ttl_secs", 60)
    assert ttl.running
    assert wait_for(lambda: not live_db.table("FlightState").exists(f"A{10 ** 6}"))


@pytest.mark.parametrize("key", ["aerostore.ttl_secs", "aerostore.ttl_sweep_interval_ms"])
def test_background_thread_stops_when_a_setting_turns_0(live_db, key):
    live_db.set_config("aerostore.ttl_sweep_interval_ms", 10)
    live_db.set_config("aerostore.ttl_secs", 60)
    assert live_db.ttl.running
    live_db.set_config(key, 0)
    assert wait_for(lambda: not live_db.ttl.running)


def test_background_thread_stop_and_start_are_idempotent(live_db):
    live_db.set_config("aerostore.ttl_sweep_interval_ms", 10)
    live_db.set_config("aerostore.ttl_secs", 60)
    ttl = live_db.ttl
    ttl.stop()
    ttl.stop()
    assert not ttl.running
    ttl.start()
    ttl.start()
    assert ttl.running


def test_background_thread_ends_with_close_and_stays_ended(live_db):
    live_db.set_config("aerostore.ttl_sweep_interval_ms", 10)
    live_db.set_config("aerostore.ttl_secs", 60)
    ttl = live_db.ttl
    assert ttl.running
    live_db.close()
    assert not ttl.running
    live_db.config.set("aerostore.ttl_secs", 5)        # after close: no thread comes back
    assert not ttl.running


def test_stop_ends_a_long_pass_between_slices(db):
    load(db, range(1000, 21000))
    sw = db.ttl
    sw.start()
    sw.slice_rows = 20
    db.set_config("aerostore.ttl_sweep_interval_ms", 100000)
    db.set_config("aerostore.ttl_secs", 10)
    assert sw.running
    assert wait_for(lambda: db.table("FlightState").count() < 20000)
    sw.stop()
    assert not sw.running
    n = db.table("FlightState").count()
    time.sleep(0.05)
    assert db.table("FlightState").count() == n     # nothing runs after stop() returned


def test_bad_slice_rows(db):
    for bad in (0, -1, True, "5"):
        with pytest.raises(UsageError):
            TTLSweeper(db, slice_rows=bad)


def test_settings_at_open_start_the_sweeper(tmp_path):
    with aerostore.open(str(tmp_path / "d"), ttl_secs=60, ttl_sweep_interval_ms=10) as db:
        assert db.ttl.running
        db.create_table(FlightState)
        load(db, [0])                               # NOW is long ago: expired
        assert wait_for(lambda: db.table("FlightState").count() == 0)
    with aerostore.open(str(tmp_path / "d")) as db:  # the deletes were durable
        assert db.table("FlightState").count() == 0


def test_start_stop_from_many_threads_never_hangs(db):
    db.set_config("aerostore.ttl_sweep_interval_ms", 1)
    db.set_config("aerostore.ttl_secs", 60)
    load(db, range(1000, 1200))
    sw = db.ttl

    def flip(i):
        for j in range(30):
            (sw.start if (i + j) % 2 else sw.stop)()

    threads = [threading.Thread(target=flip, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    sw.stop()
    assert not sw.running
