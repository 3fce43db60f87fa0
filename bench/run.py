#!/usr/bin/env python3
"""Aerostore vs SQLite (Tcl binding) benchmark driver: `make bench`, `make bench-quick`.

    python bench/run.py [--rows N | --quick] [--reps R] [--engines a,b] [--workloads x,y]

Generates (once) the deterministic data set, then for every repetition, workload
and engine starts a fresh tclsh running bench/tcl/harness.tcl, collects the JSON
lines it prints, and writes bench/results/latest.{md,json,png}.  See
docs/benchmarks.md for what each workload does and how fairness is kept.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import datagen                                   # noqa: E402
import engine_bench                              # noqa: E402
import machine                                   # noqa: E402
import report                                    # noqa: E402
from engines import BENCH, ENGINES, BY_NAME as ENGINE_BY_NAME, availability  # noqa: E402
from runner import Scratch                       # noqa: E402
from workloads import WORKLOADS, BY_NAME as WORKLOAD_BY_NAME  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows in the data set (default 1M)")
    ap.add_argument("--quick", action="store_true", help="100k rows (same as --rows 100000)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per workload and engine")
    ap.add_argument("--engines", default=",".join(e.name for e in ENGINES),
                    help="comma-separated subset of: " + ", ".join(e.name for e in ENGINES))
    ap.add_argument("--workloads", default=",".join(w.name for w in WORKLOADS),
                    help="comma-separated subset of: " + ", ".join(w.name for w in WORKLOADS))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--batch", type=int, default=10_000,
                    help="rows per ingest batch (Aerostore ingest_tsv batch_size = SQLite transaction)")
    ap.add_argument("--commits", type=int, default=2000,
                    help="single-row commits per commit workload (capped by --max-secs)")
    ap.add_argument("--max-secs", type=float, default=10.0,
                    help="time cap of one commit workload")
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds before a tclsh is killed")
    ap.add_argument("--cache", default=os.path.join(BENCH, ".cache"))
    ap.add_argument("--out", default=os.path.join(BENCH, "results"))
    a = ap.parse_args(argv)
    if a.quick:
        a.rows = 100_000
    a.engines = [x for x in a.engines.split(",") if x]
    a.workloads = [x for x in a.workloads.split(",") if x]
    for x in a.engines:
        if x not in ENGINE_BY_NAME:
            ap.error(f"unknown engine {x!r}")
    for x in a.workloads:
        if x not in WORKLOAD_BY_NAME:
            ap.error(f"unknown workload {x!r}")
    if a.rows < 1 or a.reps < 1 or a.batch < 1:
        ap.error("--rows, --reps and --batch must be positive")
    return a


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    a = parse_args(argv)
    t_start = time.monotonic()
    mach = machine.describe()
    log(f"machine: {mach['cpu']}, {mach['cores']} cores, load {mach['loadavg_start']}")
    ds = datagen.ensure(os.path.join(a.cache, "data"), a.rows, a.seed)
    engines = [ENGINE_BY_NAME[n] for n in a.engines]
    workloads = [WORKLOAD_BY_NAME[n] for n in a.workloads]
    avail = availability({e.kind for e in engines})
    commits = min(a.commits, a.rows, datagen.MAX_KEYS)
    scratch = Scratch(a.cache, ds, a.batch, a.timeout)
    results = report.Results(a.engines)
    for rep in range(a.reps):
        for w in workloads:
            for e in engines:        # engines interleaved, so drift in load hits all alike
                if avail[e.kind]:
                    results.na_all(w, e.name, avail[e.kind])
                    continue
                out = scratch.run(e, w, rep, commits, a.max_secs)
                results.add(w, e.name, out)
                shown = ", ".join(f"{k}={r['value']:.4g} {r['unit']}" if r.get("value") is not None
                                  else f"{k}=n/a" for k, r in out.figures.items())
                log(f"rep {rep + 1}/{a.reps} {w.name:<13} {e.name:<19} "
                    f"{out.error and 'ERROR ' + out.error or shown}  [{out.seconds:.1f} s]")
    mach["loadavg_end"] = machine.loadavg()
    config = {"rows": a.rows, "reps": a.reps, "seed": a.seed, "batch": a.batch,
              "commits": commits, "max_secs": a.max_secs, "engines": a.engines,
              "workloads": a.workloads, "wall_seconds": round(time.monotonic() - t_start, 1),
              "unavailable": {k: v for k, v in avail.items() if v}}
    split = None
    if "ingest" in a.workloads and any(e.is_aerostore and not avail[e.kind] for e in engines):
        log("memory by part: the same TSV in-process (engine_bench.py --split-only)")
        split = engine_bench.split_in_subprocess(ds.flights, a.batch, a.timeout)
    report.write(a.out, mach, config, results, split)
    log(f"wrote {os.path.join(a.out, 'latest.md')} (.json, .png) in {config['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
