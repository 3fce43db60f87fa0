"""In-process live feed: one writer thread upserting 100-row batches at a target
rate into a durable store while reader threads query; Python only (no Tcl).

Usage: .venv/bin/python bench/feed_inproc.py [--rows N] [--rate R] [--readers K] [--secs S]
Prints the feed's achieved rate and commit latency, and p50/p99/max per query
kind.  A quick loop for engine work; `make bench` has the Tcl workload with peers.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time

import aerostore


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=20_000)
    ap.add_argument("--readers", type=int, default=2)
    ap.add_argument("--secs", type=float, default=10)
    ap.add_argument("--switch", type=float, default=0, help="sys.setswitchinterval (s), 0 = leave")
    a = ap.parse_args()
    if a.switch:
        sys.setswitchinterval(a.switch)
    d = tempfile.mkdtemp(prefix="feed")
    try:
        db = aerostore.open(d)
        t = db.create_table(aerostore.FlightState)
        rnd = random.Random(7)
        n = a.rows
        keys = [f"F{i:07d}" for i in range(n)]
        rows = [(k, rnd.uniform(-90, 90), rnd.uniform(-180, 180), rnd.randrange(0, 45000),
                 rnd.randrange(0, 700), 1_700_000_000 + rnd.randrange(0, 86400)) for k in keys]
        for i in range(0, n, 10000):
            with db.transaction() as txn:
                txn.table("FlightState").upsert_many(rows[i:i + 10000])
        del rows
        for f in ("altitude", "lat", "lon", "gs", "updated_at"):
            t.query().gt(f, 0).sort_by(f).limit(1).rows()
        qs = {
            "get": None,
            "count": t.query().gt("altitude", 30000),
            "top50": t.query().gt("altitude", 10000).sort_by("lat").limit(50),
            "box": t.query().range("lat", 30, 35).range("lon", -100, -95),
            "boxtop": t.query().range("lat", 30, 35).range("lon", -100, -95).sort_by(("altitude", "desc")).limit(20),
            "offset": t.query().range("altitude", 10000, 20000).sort_by("lat").limit(50).offset(100),
        }
        lat = {k: [] for k in qs}
        commit = []
        stop = threading.Event()

        def reader(seed):
            r = random.Random(seed)
            while not stop.is_set():
                for k, q in qs.items():
                    t0 = time.perf_counter()
                    if k == "get":
                        t.get(keys[r.randrange(n)])
                    elif k in ("count", "box"):
                        q.count()
                    else:
                        q.rows()
                    lat[k].append(time.perf_counter() - t0)

        def feed():
            r = random.Random(3)
            nb = 0
            t0 = time.perf_counter()
            new = n
            while not stop.is_set():
                due = t0 + nb * 100 / a.rate
                now = time.perf_counter()
                if due > now:
                    time.sleep(due - now)
                batch = []
                for j in range(100):
                    if r.random() < 0.02:
                        k = f"N{new:07d}"
                        new += 1
                    else:
                        k = keys[r.randrange(n)]
                    batch.append((k, r.uniform(-90, 90), r.uniform(-180, 180), r.randrange(0, 45000),
                                  r.randrange(0, 700), 1_700_100_000 + nb))
                c0 = time.perf_counter()
                t.upsert_many(batch)
                commit.append(time.perf_counter() - c0)
                nb += 1
            feed.rate = nb * 100 / (time.perf_counter() - t0)

        ths = [threading.Thread(target=reader, args=(i,)) for i in range(a.readers)]
        fth = threading.Thread(target=feed)
        for th in ths:
            th.start()
        fth.start()
        time.sleep(a.secs)
        stop.set()
        fth.join()
        for th in ths:
            th.join()
        print(f"feed {feed.rate:9.0f} rows/s  commit p50 {pct(commit,50)*1e3:7.2f} p99 {pct(commit,99)*1e3:7.2f} "
              f"max {max(commit)*1e3:7.2f} ms")
        for k, xs in lat.items():
            print(f"{k:8s} n={len(xs):7d} p50 {pct(xs,50)*1e3:8.3f} p99 {pct(xs,99)*1e3:8.3f} max {max(xs)*1e3:8.3f} ms")
        db.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
