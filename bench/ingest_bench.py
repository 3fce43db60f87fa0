"""Ingest benchmark (issue 5): TSV ingest of N FlightState rows (5 default indexes).

Usage: .venv/bin/python bench/ingest_bench.py [--rows N] [--batch B] [--only NAME ...]

Writes two TSV files (N new rows; the same keys with every field changed), then
runs each scenario in its own child process so that its peak RSS is its own:

  memory        :memory:, ingest_file of the new rows, then of the updates
                (a file within hold_bytes, 128 MiB: validated once, rows held)
  memory-text   :memory:, ingest_tsv of the whole text (already in memory)
  memory-stream :memory:, ingest_file with hold_bytes=0 (validate, then read again)
  durable       a data directory, synchronous_commit on, new rows then updates
  durable-async the same with synchronous_commit off
  durable-1024  durable, batch size 1024 (the Tcl default)
  ttl           worst get/set latency of a client thread while the TTL sweeper
                deletes N/10 expired rows out of N/5 (durable)

Figures: rows/s of the ingest call itself (wall clock, and per CPU second of
the process: on a shared, loaded machine the latter is the steadier one), and
with the deferred index work folded in ("settled": the first query after the
ingest would pay it); peak RSS of the child, and its RSS before the ingest
(interpreter + the store so far).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import aerostore  # noqa: E402
from aerostore.flightstate import FlightState  # noqa: E402

SCENARIOS = ("memory", "memory-text", "memory-stream", "durable", "durable-async", "durable-1024", "ttl")


def write_files(n, folder):
    rnd = random.Random(5)
    paths = []
    for name, base in (("new.tsv", 1_700_000_000), ("upd.tsv", 1_700_086_400)):
        p = os.path.join(folder, name)
        with open(p, "w") as f:
            for start in range(0, n, 100_000):
                f.write("".join(
                    f"F{i:07d}\t{rnd.uniform(-90, 90)!r}\t{rnd.uniform(-180, 180)!r}\t"
                    f"{rnd.randrange(0, 45000)}\t{rnd.randrange(0, 700)}\t{base + rnd.randrange(0, 86400)}\n"
                    for i in range(start, min(n, start + 100_000))))
        paths.append(p)
    return paths


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def settle(db):
    st = db.table("FlightState")._st
    t = time.perf_counter()
    st.settle()
    return time.perf_counter() - t


def ingest_phase(db, label, path, batch, text=False, hold_bytes=None):
    before = rss_mb()
    if text:
        with open(path, encoding="utf-8") as f:
            data = f.read()
        t, c = time.perf_counter(), time.process_time()
        r = db.ingest_tsv("FlightState", data, batch)
        del data
    else:
        t, c = time.perf_counter(), time.process_time()
        kw = {} if hold_bytes is None else {"hold_bytes": hold_bytes}
        r = db.ingest_file("FlightState", path, batch, **kw)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    st = settle(db)
    return {"phase": label, "rows": r.rows_seen, "inserted": r.inserted, "updated": r.updated,
            "batches": r.batches, "secs": round(dt, 3), "rows_per_s": round(r.rows_seen / dt),
            "cpu_secs": round(dc, 3), "rows_per_cpu_s": round(r.rows_seen / dc),
            "settled_rows_per_s": round(r.rows_seen / (dt + st)), "rss_before_mb": round(before),
            "peak_rss_mb": round(peak_mb())}


def child(name, new, upd, batch, folder):
    out = []
    if name == "ttl":
        return ttl_latency(new, folder)
    cfg = {}
    if name.startswith("memory"):
        path = ":memory:"
    else:
        path = os.path.join(folder, f"data-{name}")
        cfg["synchronous_commit"] = name != "durable-async"
    if name == "durable-1024":
        batch = 1024
    db = aerostore.open(path, **cfg)
    db.create_table(FlightState)
    text = name == "memory-text"
    hold = 0 if name == "memory-stream" else None          # None: the default
    out.append(ingest_phase(db, "new rows", new, batch, text, hold))
    out.append(ingest_phase(db, "updates", upd, batch, text, hold))
    db.close()
    return out


def ttl_latency(new, folder):
    """Worst latency of single-row calls from a client thread while the sweeper deletes."""
    n_total = sum(1 for _ in open(new)) // 5
    n_old = n_total // 2
    now = int(time.time())
    db = aerostore.open(os.path.join(folder, "data-ttl"))
    flights = db.create_table(FlightState)
    rows = [(f"T{i:07d}", 1.0, 2.0, 3000, 400, now - (100_000 if i < n_old else 0)) for i in range(n_total)]
    db.ingest_tsv("FlightState", "".join(f"{r[0]}\t1.0\t2.0\t3000\t400\t{r[5]}\n" for r in rows), 10000)
    settle(db)
    keys = [r[0] for r in rows[n_old:]]
    stop = threading.Event()
    lat = []

    def client():
        rnd = random.Random(3)
        while not stop.is_set():
            k = rnd.choice(keys)
            t = time.perf_counter()
            flights.get(k)
            flights.set(k, {"gs": rnd.randrange(700)})
            lat.append(time.perf_counter() - t)

    def measure(seconds):
        lat.clear()
        stop.clear()
        th = threading.Thread(target=client)
        th.start()
        time.sleep(seconds)
        stop.set()
        th.join()
        return sorted(lat)

    base = measure(1.0)
    th = threading.Thread(target=client)
    lat.clear()
    stop.clear()
    th.start()
    t = time.perf_counter()
    db.set_config("aerostore.ttl_sweep_interval_ms", 50)
    db.set_config("aerostore.ttl_secs", 3600)
    while flights.count() > n_total - n_old:
        time.sleep(0.01)
    sweep_secs = time.perf_counter() - t
    stop.set()
    th.join()
    during = sorted(lat)
    db.close()

    def pct(xs, p):
        return round(xs[min(len(xs) - 1, int(len(xs) * p))] * 1e3, 3) if xs else None

    return [{"phase": f"ttl sweep of {n_old} of {n_total} rows", "sweep_secs": round(sweep_secs, 3),
             "deleted_per_s": round(n_old / sweep_secs),
             "calls_during": len(during), "p50_ms": pct(during, 0.5), "p99_ms": pct(during, 0.99),
             "max_ms": pct(during, 1.0), "baseline_p99_ms": pct(base, 0.99), "baseline_max_ms": pct(base, 1.0)}]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--only", nargs="*", choices=SCENARIOS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        new, upd = (os.path.join(a.folder, f) for f in ("new.tsv", "upd.tsv"))
        print(json.dumps(child(a.child, new, upd, a.batch, a.folder)))
        return
    with tempfile.TemporaryDirectory(prefix="aerostore-ingest-bench-") as folder:
        t = time.perf_counter()
        new, _ = write_files(a.rows, folder)
        print(f"# {a.rows} rows, batch {a.batch}; files written in {time.perf_counter() - t:.1f} s "
              f"({os.path.getsize(new) / 2**20:.0f} MiB each)", flush=True)
        for name in a.only or SCENARIOS:
            p = subprocess.run([sys.executable, __file__, "--child", name, "--folder", folder,
                                "--batch", str(a.batch)], capture_output=True, text=True)
            if p.returncode != 0:
                print(f"{name}: FAILED\n{p.stderr}", flush=True)
                continue
            for fig in json.loads(p.stdout.strip().splitlines()[-1]):
                print(f"{name:14s} " + " ".join(f"{k}={v}" for k, v in fig.items()), flush=True)


if __name__ == "__main__":
    main()
