"""Write contention: many threads on one key, default settings, a durable store.

Every call succeeds (retries wait for the winning commit to become visible and
back off, retry.py) and the final state is what the successful calls add up to.
"""

import threading

import pytest

import aerostore
from aerostore import retry
from aerostore.errors import UsageError, WriteConflict


def _run_threads(n, target):
    errors = []

    def body(i):
        try:
            target(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ths = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(120)
    assert not any(th.is_alive() for th in ths), "a thread hung"
    assert not errors, errors[:3]


@pytest.fixture
def durable(tmp_path):
    db = aerostore.open(str(tmp_path / "d"))
    yield db
    db.close()


@pytest.mark.parametrize("threads", [2, 4, 8])
def test_autocommit_sets_on_one_key_all_succeed(durable, threads):
    t = durable.create_table(aerostore.FlightState)
    per = 40

    def work(i):
        for j in range(per):
            t.set("hot", {"gs": i * 1000 + j, "alt": i})

    _run_threads(threads, work)
    row = t.get("hot")
    assert row[4] % 1000 == per - 1 and row[3] == row[4] // 1000   # some thread's last write, whole
    assert durable.stats()["commits"] >= threads * per
    t._check()


@pytest.mark.parametrize("threads", [2, 4, 8])
def test_read_modify_write_increments_are_never_lost(durable, threads):
    t = durable.create_table(aerostore.FlightState)
    t.set("hot", {"gs": 0})
    per = 25

    def inc(txn):
        tt = txn.table("FlightState")
        tt.set("hot", {"gs": tt.get("hot")[4] + 1})

    _run_threads(threads, lambda i: [durable.run_in_transaction(inc) for _ in range(per)])
    assert t.get("hot")[4] == threads * per
    t._check()


def test_bank_transfers_between_four_threads(durable):
    @aerostore.table()
    class Acct:
        k = aerostore.Key()
        bal = aerostore.Int()
    t = durable.create_table(Acct)
    keys = [f"a{i}" for i in range(4)]
    t.upsert_many([(k, 100) for k in keys])

    def transfer(txn, a, b):
        tt = txn.table("Acct")
        tt.set(a, {"bal": tt.get(a)[1] - 1})
        tt.set(b, {"bal": tt.get(b)[1] + 1})

    def work(i):
        for j in range(30):
            durable.run_in_transaction(transfer, keys[(i + j) % 4], keys[(i + j + 1) % 4])

    _run_threads(4, work)
    assert sum(r[1] for r in t.query().rows()) == 400
    t._check()


def test_the_retry_waits_for_the_winner_instead_of_spinning(durable, monkeypatch):
    """A conflict names the winning commit and is raised once that commit is visible,
    so the second attempt sees it and succeeds: two attempts, one wait."""
    t = durable.create_table(aerostore.FlightState)
    t.set("k", {"gs": 1})
    waits = []
    real = durable._snaps.wait_published
    monkeypatch.setattr(durable._snaps, "wait_published",
                        lambda csn, timeout: waits.append(csn) or real(csn, timeout))
    attempts = []

    def fn(txn):
        attempts.append(1)
        tt = txn.table("FlightState")
        tt.get("k")
        if len(attempts) == 1:
            t.set("k", {"gs": 2})        # another commit wins meanwhile
        tt.set("k", {"gs": tt.get("k")[4] + 10})

    durable.run_in_transaction(fn)
    assert len(attempts) == 2 and len(waits) == 1
    assert waits[0] == durable.stats()["csn"] - 1
    assert t.get("k")[4] == 12


def test_conflicts_past_the_timeout_are_reported(durable):
    t = durable.create_table(aerostore.FlightState)
    t.set("k", {"gs": 1})

    def always_loses(txn):
        txn.table("FlightState").set("k", {"gs": 5})
        t.set("k", {"gs": 6})            # a new winner every attempt

    with pytest.raises(WriteConflict) as ei:
        durable.run_in_transaction(always_loses, timeout=0.2)
    assert ei.value.csn > 0
    with pytest.raises(UsageError):
        durable.run_in_transaction(always_loses, timeout=-1)


def test_other_errors_propagate_and_roll_back(durable):
    t = durable.create_table(aerostore.FlightState)

    def boom(txn):
        txn.table("FlightState").set("k", {"gs": 5})
        raise KeyError("mine")

    with pytest.raises(KeyError):
        durable.run_in_transaction(boom)
    assert t.get("k") is None
    assert retry.DEFAULT_TIMEOUT > 0
