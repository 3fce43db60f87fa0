"""Bank-transfer invariant: concurrent transfers with retries; every snapshot sees the same total.

Four threads move random amounts between random accounts in transactions and
retry on WriteConflict; reader threads check, in every snapshot they take, that
the total (summed from get() of every key, from a query, from an ordered index
walk) is the initial total, that no balance is negative and that the index
counts every account.  Bounded by wall time (a few seconds), asserts no timing.
"""

import random
import threading
import time

import aerostore
from conftest import vacuum_now

N_ACCOUNTS = 16
START = 1000
TOTAL = N_ACCOUNTS * START
RUN_SECS = 3.0


@aerostore.table(indexes=("balance",))
class Account:
    acct = aerostore.Key()
    balance = aerostore.Int()


KEYS = [f"acct{i:02d}" for i in range(N_ACCOUNTS)]


def run_bank(db, n_writers=4, n_readers=2, secs=RUN_SECS):
    accounts = db.table("Account")
    stop = threading.Event()
    errors = []
    stats = {"transfers": 0, "conflicts": 0, "snapshots": 0, "autocommit": 0}
    lock = threading.Lock()

    def bump(k, n=1):
        with lock:
            stats[k] += n

    def transfer(rng):
        a, b = rng.sample(KEYS, 2)
        amount = rng.randint(1, 300)
        while not stop.is_set():
            try:
                with db.transaction() as txn:
                    t = txn.table("Account")
                    if rng.random() < 0.2:
                        # take from the richest: found through an ordered index walk
                        a = t.query().sort_by("-balance").limit(1).keys()[0]
                        if a == b:
                            b = next(k for k in KEYS if k != a)
                    ra, rb = t.get(a), t.get(b)
                    if ra[1] < amount:
                        return
                    t.set(a, {"balance": ra[1] - amount})
                    t.upsert((b, rb[1] + amount))
                bump("transfers")
                return
            except aerostore.WriteConflict:
                bump("conflicts")

    def writer(seed):
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                transfer(rng)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            stop.set()

    def check_txn():
        with db.transaction() as txn:
            t = txn.table("Account")
            by_get = [t.get(k)[1] for k in KEYS]
            assert sum(by_get) == TOTAL, by_get
            assert min(by_get) >= 0
            rows = t.query().rows()
            assert sum(r[1] for r in rows) == TOTAL
            assert sorted(r[1] for r in rows) == sorted(by_get)   # same snapshot
            assert sum(r[1] for r in t.query().sort_by("balance").limit(N_ACCOUNTS).rows()) == TOTAL
            assert t.query().range("balance", 0, TOTAL + 1).count() == N_ACCOUNTS
            assert t.query().lt("balance", 0).count() == 0
            assert t.count() == N_ACCOUNTS
            top = t.query().sort_by("-balance").limit(3).rows()
            assert [r[1] for r in top] == sorted(by_get, reverse=True)[:3]

    def check_autocommit():
        # each autocommit query is its own snapshot: totals hold within one call
        assert sum(r[1] for r in accounts.query().rows()) == TOTAL
        assert accounts.query().ge("balance", 0).count() == N_ACCOUNTS
        assert accounts.count() == N_ACCOUNTS
        for k in KEYS[:4]:
            assert accounts.get(k) is not None

    def reader():
        try:
            while not stop.is_set():
                check_txn()
                bump("snapshots")
                check_autocommit()
                bump("autocommit")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n_writers)]
    threads += [threading.Thread(target=reader) for _ in range(n_readers)]
    for th in threads:
        th.start()
    stop.wait(secs)
    stop.set()
    for th in threads:
        th.join(60)
    assert not any(th.is_alive() for th in threads)
    if errors:
        raise errors[0]
    return stats


def setup(db):
    t = db.create_table(Account)
    t.upsert_many([(k, START) for k in KEYS])
    return t


def test_bank_transfers_keep_every_snapshot_total(mem_db):
    t = setup(mem_db)
    stats = run_bank(mem_db)
    assert stats["transfers"] > 0 and stats["snapshots"] > 0
    assert sum(r[1] for r in t.query().rows()) == TOTAL
    t._check()
    vacuum_now(mem_db)
    s = mem_db.stats()
    assert s["snapshots"] == 0 and s["pending_prune"] == 0
    assert s["versions"] == s["rows"] == N_ACCOUNTS


def test_bank_with_synchronous_commit_off(tmp_path, open_db):
    """The same invariant on a durable store with asynchronous commit (group flushes)."""
    db = open_db(str(tmp_path / "bank"), synchronous_commit=False)
    t = setup(db)
    stats = run_bank(db, n_writers=3, n_readers=1, secs=1.5)
    assert stats["transfers"] > 0
    t._check()
    db.close()
    db = open_db(str(tmp_path / "bank"))
    t = db.table("Account")
    assert sum(t.get(k)[1] for k in KEYS) == TOTAL
    t._check()


def test_conflicts_are_retried_to_completion(mem_db):
    """Hammer one hot account from all writers: every transfer lands exactly once."""
    t = setup(mem_db)
    done = []
    errors = []

    def worker(seed):
        rng = random.Random(seed)
        n = 0
        try:
            for _ in range(60):
                other = rng.choice(KEYS[1:])
                while True:
                    try:
                        with mem_db.transaction() as txn:
                            tt = txn.table("Account")
                            hot = tt.get(KEYS[0])[1]
                            o = tt.get(other)[1]
                            tt.set(KEYS[0], {"balance": hot + 1})
                            tt.set(other, {"balance": o - 1})
                        n += 1
                        break
                    except aerostore.WriteConflict:
                        time.sleep(0)
            done.append(n)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors
    assert sum(done) == 240
    assert t.get(KEYS[0])[1] == START + 240
    assert sum(r[1] for r in t.query().rows()) == TOTAL
    t._check()
