"""Deterministic FlightState benchmark data, written once into a cache directory.

Why a file: every workload runs in a fresh ``tclsh`` and both engines must read
byte-identical input, so the data is generated once per (rows, seed) and reused by
every engine, workload and repetition (and by later runs).

Three files per data set, all plain text:

* ``flights-<rows>-s<seed>.tsv``: the rows to ingest, in the TSV format of docs/ingest.md
  (``flight_id lat lon altitude gs updated_at``), keys in random order;
* ``updates-<rows>-s<seed>.tsv``: a new value for every field of every key, in a
  different random order (the "update all rows" workload);
* ``keys-<rows>-s<seed>.txt``: up to 100,000 existing keys in random order (point
  gets and single-row commits).

Value distributions are chosen so the query workloads select the fractions
docs/benchmarks.md describes (Data): altitude uniform in 0..44999
(``altitude > 30000`` selects a third), gs uniform in 0..599 (``gs > 400`` a
third), lat/lon uniform over the globe with 4-6 decimals, updated_at a fixed epoch
plus up to a day (fixed so a run never depends on the clock).
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass

EPOCH = 1_700_000_000
MAX_KEYS = 100_000


@dataclass(frozen=True)
class DataSet:
    rows: int
    seed: int
    flights: str
    updates: str
    keys: str


def _key(n: int) -> str:
    # Airline-like idents: 3 letters + number; unique because the number is n.
    a = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return f"{a[n % 26]}{a[(n // 26) % 26]}{a[(n // 676) % 26]}{n:07d}"


def _row(rng: random.Random, key: str) -> str:
    lat = round(rng.uniform(-90.0, 90.0), rng.choice((4, 5, 6)))
    lon = round(rng.uniform(-180.0, 180.0), rng.choice((4, 5, 6)))
    alt = rng.randrange(45_000)
    gs = rng.randrange(600)
    ts = EPOCH + rng.randrange(86_400)
    return f"{key}\t{lat!r}\t{lon!r}\t{alt}\t{gs}\t{ts}\n"


def _write(path: str, lines) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii", newline="\n") as f:
        f.writelines(lines)
    os.replace(tmp, path)  # a half-written file never looks complete


def ensure(cache_dir: str, rows: int, seed: int = 42) -> DataSet:
    """Return the data set for (rows, seed), generating any missing file."""
    os.makedirs(cache_dir, exist_ok=True)
    stem = f"{rows}-s{seed}"
    ds = DataSet(rows, seed,
                 os.path.join(cache_dir, f"flights-{stem}.tsv"),
                 os.path.join(cache_dir, f"updates-{stem}.tsv"),
                 os.path.join(cache_dir, f"keys-{stem}.txt"))
    if all(os.path.exists(p) for p in (ds.flights, ds.updates, ds.keys)):
        return ds
    rng = random.Random(seed)
    keys = [_key(n) for n in range(rows)]
    rng.shuffle(keys)
    _write(ds.flights, (_row(rng, k) for k in keys))
    order = keys[:]
    rng.shuffle(order)
    _write(ds.updates, (_row(rng, k) for k in order))
    sample = rng.sample(keys, min(rows, MAX_KEYS))
    _write(ds.keys, (k + "\n" for k in sample))
    return ds


if __name__ == "__main__":
    import sys
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    print(ensure(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache", "data"), n))
