"""In-process engine benchmark (issue 2): 1M FlightState rows, 5 indexes, :memory:.

Usage: .venv/bin/python bench/engine_bench.py [--rows N] [--reps R] [--batch B]
Prints one line per figure: median and min-max over the repetitions.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
import tracemalloc

import aerostore


def make_rows(n, seed=7, tag=""):
    rnd = random.Random(seed)
    return [(f"F{i:07d}", rnd.uniform(-90, 90), rnd.uniform(-180, 180), rnd.randrange(0, 45000),
             rnd.randrange(0, 700), 1_700_000_000 + rnd.randrange(0, 86400)) for i in range(n)]


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def run(n, batch):
    res = {}
    rows = make_rows(n)
    db = aerostore.open(":memory:", synchronous_commit=False)
    t = db.create_table(aerostore.FlightState)

    def load(rs):
        for i in range(0, len(rs), batch):
            with db.transaction() as txn:
                txn.table("FlightState").upsert_checked(rs[i:i + batch])   # rows made valid; the ingest path

    dt, _ = timed(lambda: load(rows))
    res["insert rows/s"] = n / dt
    t._st.settle()
    upd = [(r[0], r[1] + 0.01, r[2] - 0.01, (r[3] + 100) % 45000, (r[4] + 1) % 700, r[5] + 1) for r in rows]
    dt, _ = timed(lambda: (load(upd), t._st.settle()))
    res["update rows/s"] = n / dt
    q = t.query().gt("altitude", 30000)
    q.count()
    res["count alt>30000 ms"] = _per(lambda: q.count(), 200) * 1e3
    q2 = t.query().gt("altitude", 10000).sort_by("lat").limit(50)
    res["top50 ms"] = _per(lambda: q2.rows(), 200) * 1e3
    q3 = t.query().range("altitude", 10000, 20000).sort_by("lat").limit(50).offset(100)
    res["range+sort+offset100 ms"] = _per(lambda: q3.rows(), 50) * 1e3
    q4 = t.query().gt("gs", 400)
    t.drop_index("gs")
    res["scan gs>400 count ms"] = _per(lambda: q4.count(), 5) * 1e3
    t.create_index("gs")
    keys = [r[0] for r in random.Random(1).sample(rows, 10000)]
    get = t.get
    res["get us"] = _per(lambda: [get(k) for k in keys], 20) / len(keys) * 1e6
    # a live table: single-row autocommits, then the top-50 again over their
    # not yet folded index writes (ArrayIndex delta/tombstones)
    rnd = random.Random(5)
    sets = [(rows[rnd.randrange(n)][0], {"lat": rnd.uniform(-90, 90), "altitude": rnd.randrange(45000)})
            for _ in range(10000)]
    dt, _ = timed(lambda: [t.set(k, v) for k, v in sets])
    res["autocommit set us"] = dt / len(sets) * 1e6
    res["top50 after 10k sets ms"] = _per(lambda: q2.rows(), 200) * 1e3
    db.close()
    return res


def _per(fn, reps):
    best = []
    for _ in range(max(3, reps // 10)):
        t = time.perf_counter()
        for _ in range(max(1, reps // 10)):
            fn()
        best.append((time.perf_counter() - t) / max(1, reps // 10))
    return statistics.median(best)


def memory_per_row(n):
    """Bytes the store holds per row: its rows (tuples and their values), key map and indexes.

    Traced from before the rows are made, so the row tuples the store keeps count
    too; the caller's list of them is dropped before measuring.
    """
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    rows = make_rows(n)
    db = aerostore.open(":memory:", synchronous_commit=False)
    t = db.create_table(aerostore.FlightState)
    for i in range(0, n, 10000):
        with db.transaction() as txn:
            txn.table("FlightState").upsert_checked(rows[i:i + 10000])
    t._st.settle()
    del rows
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    db.close()
    return used / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--no-memory", action="store_true")
    a = ap.parse_args()
    runs = [run(a.rows, a.batch) for _ in range(a.reps)]
    for k in runs[0]:
        vals = [r[k] for r in runs]
        print(f"{k:28s} median {statistics.median(vals):12.4f}   min {min(vals):12.4f}   max {max(vals):12.4f}")
    if not a.no_memory:
        print(f"{'bytes/row (tracemalloc)':28s} {memory_per_row(a.rows):12.1f}")


if __name__ == "__main__":
    main()
