"""Issue 10, item 4: a subscription callback that commits (or checkpoints,
changes an index, closes) gets ``UsageError`` instead of deadlocking on the
commit that is delivering its event.  Calls that could hang run in a helper
thread joined with a timeout, so a regression fails instead of hanging."""

import threading

import pytest

import aerostore
from aerostore import FlightState
from aerostore.errors import UsageError
from conftest import within

TIMEOUT = 20.0


def row(key, updated_at=5):
    return (key, 1.0, 2.0, 3, 4, updated_at)


@pytest.fixture(params=["memory", "sync", "async"])
def any_db(request, tmp_path):
    if request.param == "memory":
        db = aerostore.open(":memory:")
    else:
        db = aerostore.open(str(tmp_path / "db"), synchronous_commit=request.param == "sync")
    yield db
    within(db.close)


def test_a_callback_that_commits_gets_usage_error_instead_of_deadlocking(any_db):
    t = any_db.create_table(FlightState)
    seen = []

    def callback(ev):
        seen.append(ev.key)
        t.upsert(row("ECHO-" + ev.key))

    sub = t.subscribe(callback=callback)
    within(t.upsert, row("A"))
    assert seen == ["A"] and sub.errors == 1
    assert isinstance(sub.last_error, UsageError)
    assert "not allowed inside a subscription callback" in str(sub.last_error)
    assert t.get("ECHO-A") is None and t.get("A") == row("A")
    within(t.upsert, row("B"))                      # commits still work afterwards
    assert t.get("B") == row("B") and sub.errors == 2


def test_a_callback_may_read_but_not_checkpoint_index_or_close(any_db):
    t = any_db.create_table(FlightState)
    results = []

    def callback(ev):
        results.append(t.get(ev.key))
        for call in (any_db.checkpoint, lambda: t.create_index("gs"), any_db.close,
                     lambda: any_db.create_table(FlightState)):
            try:
                call()
                results.append("allowed")
            except UsageError as e:
                results.append(type(e).__name__)

    t.subscribe(callback=callback)
    within(t.upsert, row("A"))
    assert results == [row("A")] + ["UsageError"] * 4
    assert not any_db.closed


def test_a_callback_can_hand_its_write_to_another_thread(any_db):
    t = any_db.create_table(FlightState)
    sub = t.subscribe(key="A")
    done = threading.Event()

    def echo():
        ev = sub.get(timeout=TIMEOUT)
        t.upsert(row("ECHO-" + ev.key))
        done.set()

    worker = threading.Thread(target=echo, daemon=True)
    worker.start()
    within(t.upsert, row("A"))
    assert done.wait(TIMEOUT) and t.get("ECHO-A") == row("ECHO-A")
