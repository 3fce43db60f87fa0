"""Index reads in chunks while writers commit: every plan agrees with a scan of the same snapshot.

Index ranges and ordered walks release the table latch between chunks, so
writers (updates that move rows across the range, deletes, inserts, index DDL)
commit in between.  Readers compare, inside one transaction, the indexed plans
with a brute-force filter of a full scan taken in the same snapshot.
"""

import random
import threading

import aerostore
from aerostore import FlightState
from conftest import vacuum_now

N = 6000
RUN_SECS = 3.0


def brute(rows, lo, hi):
    return sorted((r for r in rows if r[3] is not None and lo <= r[3] < hi), key=lambda r: r[0])


def walk_order(rows, desc):
    if desc:
        return sorted(rows, key=lambda r: (r[3] is not None, -(r[3] or 0), r[0]))
    return sorted(rows, key=lambda r: (r[3] is None, r[3] or 0, r[0]))


def test_chunked_index_reads_under_concurrent_writes(mem_db, flights):
    rng0 = random.Random(5)
    flights.upsert_many([(f"F{i:05d}", rng0.uniform(-80, 80), rng0.uniform(-170, 170),
                          rng0.choice([None, rng0.randrange(0, 40000)]), i % 500, i) for i in range(N)])
    stop = threading.Event()
    errors = []
    counts = {"reads": 0, "writes": 0}

    def writer(seed):
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                try:
                    with mem_db.transaction() as txn:
                        tt = txn.table("FlightState")
                        for _ in range(rng.randrange(1, 60)):
                            k = f"F{rng.randrange(N + 500):05d}"
                            x = rng.random()
                            if x < 0.7:
                                tt.set(k, {"alt": rng.choice([None, rng.randrange(0, 40000)])})
                            elif x < 0.85:
                                tt.delete(k)
                            else:
                                tt.upsert((k, 1.0, 1.0, rng.randrange(0, 40000), 1, 1))
                    counts["writes"] += 1
                except aerostore.WriteConflict:
                    pass
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            stop.set()

    def ddl():
        try:
            while not stop.wait(0.2):
                flights.drop_index("gs")
                flights.create_index("gs")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            stop.set()

    def reader(seed):
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                with mem_db.transaction() as txn:
                    tt = txn.table("FlightState")
                    allrows = tt.query().rows()
                    lo = rng.randrange(0, 30000)
                    hi = lo + rng.choice([500, 5000, 20000])
                    want = brute(allrows, lo, hi)
                    got = sorted(tt.query().range("alt", lo, hi).rows(), key=lambda r: r[0])
                    assert got == want
                    assert tt.query().range("alt", lo, hi).count() == len(want)
                    desc = rng.random() < 0.5
                    lim = rng.choice([10, 200, 3000])
                    q = tt.query().sort_by("-alt" if desc else "alt").limit(lim)
                    assert q.rows() == walk_order(allrows, desc)[:lim]
                    assert tt.query().range("gs", 100, 200).count() == sum(
                        1 for r in allrows if r[4] is not None and 100 <= r[4] < 200)
                    assert tt.count() == len(allrows)
                counts["reads"] += 1
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    threads += [threading.Thread(target=reader, args=(10 + i,)) for i in range(2)]
    threads.append(threading.Thread(target=ddl))
    for th in threads:
        th.start()
    stop.wait(RUN_SECS)
    stop.set()
    for th in threads:
        th.join(60)
    assert not any(th.is_alive() for th in threads)
    if errors:
        raise errors[0]
    assert counts["reads"] > 0 and counts["writes"] > 0, counts
    vacuum_now(mem_db)
    flights._check()
    s = mem_db.stats()
    assert s["versions"] == s["rows"]
