"""In-process engine benchmark (issue 2): 1M FlightState rows, 5 indexes, :memory:.

Usage: .venv/bin/python bench/engine_bench.py [--rows N] [--reps R] [--batch B] [--no-memory]
       .venv/bin/python bench/engine_bench.py --split-only [--rows N | --tsv FILE] [--json OUT]
Prints one line per figure: median and min-max over the repetitions; then the
bytes a row holds (tracemalloc) and their split by part (``Database.memory``),
after the load and after a query that builds the columns.  ``--split-only``
prints only the split (no tracemalloc, no timings), of generated rows or of a
TSV file ingested as the Tcl harness does (``make bench`` runs it that way on
its data set, for the split table of latest.md: ``split_in_subprocess``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time
import tracemalloc

import aerostore
from aerostore.memory import PARTS


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


def build_table(n=None, tsv=None, batch=10_000):
    """A :memory: database and its FlightState table holding ``n`` rows of ``make_rows``,
    or the rows of the TSV file ``tsv`` (``ingest_file``: the decoder the Tcl harness's
    ``ingest_tsv`` uses); index layers folded.  -> (db, table, rows)."""
    db = aerostore.open(":memory:", synchronous_commit=False)
    t = db.create_table(aerostore.FlightState)
    if tsv is not None:
        db.ingest_file("FlightState", tsv, batch_size=batch)
    else:
        rows = make_rows(n)
        for i in range(0, n, batch):
            with db.transaction() as txn:
                txn.table("FlightState").upsert_checked(rows[i:i + batch])
        del rows
    t._st.settle()
    return db, t, t.count()


def memory_split(db, t, n) -> dict:
    """Bytes per row of each part (``Database.memory``) after the load (the settled
    rows are in the columns: a query adds nothing)."""
    t0 = time.perf_counter()
    load = db.memory("FlightState")
    walk = time.perf_counter() - t0
    return {"rows": n, "walk_secs": round(walk, 2),
            "after_load": {k: v / n for k, v in load.items()}}


def memory_per_row(n, batch=10_000):
    """(bytes the store holds per row as tracemalloc traces them, ``memory_split``).

    Traced from before the rows are made, so everything the store keeps counts;
    the caller's list of row tuples is dropped before measuring.  The split is
    taken after tracing stops: its total is the traced figure less what CPython
    pads each int object with (4 B on 3.11; tests/test_memory.py).
    """
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    db, t, rows = build_table(n, batch=batch)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    split = memory_split(db, t, rows)
    db.close()
    return used / n, split


def print_split(split) -> None:
    print(f"bytes/row by part (Database.memory, {split['rows']:,} rows; walk {split['walk_secs']} s):")
    print(f"  {'part':16s} {'after load':>12s}")
    for p in PARTS + ("total",):
        print(f"  {p:16s} {split['after_load'][p]:12.1f}")


def split_in_subprocess(tsv, batch, timeout=1200.0) -> dict:
    """``memory_split`` of the rows of ``tsv`` in a fresh interpreter (its memory is
    its own: the caller's heap and allocator state do not mix in); on failure
    ``{"error": ...}``.  For bench/run.py's report."""
    cmd = [sys.executable, os.path.abspath(__file__), "--split-only", "--tsv", tsv,
           "--batch", str(batch), "--json", "-"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if p.returncode != 0:
        tail = (p.stderr.strip() or "no output").splitlines()[-1]
        return {"error": f"exit {p.returncode}: {tail}"}
    return json.loads(p.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--split-only", action="store_true",
                    help="only the split of memory by part (no timings, no tracemalloc)")
    ap.add_argument("--tsv", help="with --split-only: ingest this TSV file instead of generated rows")
    ap.add_argument("--json", help="with --split-only: write the split as JSON to this file ('-': stdout)")
    a = ap.parse_args()
    if a.split_only:
        db, t, n = build_table(a.rows, a.tsv, a.batch)
        split = memory_split(db, t, n)
        db.close()
        if a.json == "-":
            json.dump(split, sys.stdout)
        else:
            if a.json:
                with open(a.json, "w") as f:
                    json.dump(split, f, indent=1)
            print_split(split)
        return
    runs = [run(a.rows, a.batch) for _ in range(a.reps)]
    for k in runs[0]:
        vals = [r[k] for r in runs]
        print(f"{k:28s} median {statistics.median(vals):12.4f}   min {min(vals):12.4f}   max {max(vals):12.4f}")
    if not a.no_memory:
        per_row, split = memory_per_row(a.rows, a.batch)
        print(f"{'bytes/row (tracemalloc)':28s} {per_row:12.1f}")
        print_split(split)


if __name__ == "__main__":
    main()
