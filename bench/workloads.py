"""The workloads and the figures they produce: names, units, what they measure.

One workload = one fresh ``tclsh`` per engine and repetition, running the
``wl_<name>`` proc of the engine's Tcl file (bench/tcl/).  A workload may print
more than one figure (ingest also reports resident memory per row).  Every figure
is a cost, lower is better, so "Aerostore / best peer" < 1 always means
Aerostore is ahead.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Figure:
    name: str
    title: str
    unit: str
    # (target value in `unit` at `rows`, text) from issue 6, or None.
    target: object = None
    rate: str = ""          # extra key holding the matching rate, e.g. rows_per_s


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    figures: tuple
    # The store the process starts from: "checkpointed" (all rows loaded, clean
    # shutdown), "crashed" (all rows loaded, process killed, everything still in
    # the log), or "" (an empty store).
    template: str = "checkpointed"
    scales_with_rows: bool = False


def _per_rows(rate):
    return lambda rows, peers: rows / rate


WORKLOADS = [
    Workload("ingest", "upsert every row of the TSV into an empty store (read + parse + insert, "
             "batches of --batch rows per transaction)",
             (Figure("ingest", "ingest N new rows", "s", (_per_rows(200_000), ">= 200k rows/s"),
                     "rows_per_s"),
              Figure("memory", "resident memory per row (VmRSS delta / rows)", "B/row",
                     (lambda rows, peers: 400, "<= 400 B/row"))),
             template="", scales_with_rows=True),
    Workload("update", "upsert a new value for every field of every row (a second TSV), same batches",
             (Figure("update", "update all N rows", "s", (_per_rows(100_000), ">= 100k rows/s"),
                     "rows_per_s"),), scales_with_rows=True),
    Workload("count_range", "count rows with altitude > 30000 (a third of them)",
             (Figure("count_range", "count altitude > 30000", "ms",
                     (lambda rows, peers: 0.05, "<= 0.05 ms")),)),
    Workload("top50", "altitude > 10000 sorted by lat, limit 50, binding each row to an array",
             (Figure("top50", "altitude > 10000 sort lat limit 50, rows bound", "ms",
                     (lambda rows, peers: peers.get("sqlite-mem"), "< SQLite's index walk")),)),
    Workload("range_offset", "10000 <= altitude < 20000 sorted by lat, limit 50 offset 100, rows bound",
             (Figure("range_offset", "altitude 10000..20000 sort lat limit 50 offset 100", "ms",
                     (lambda rows, peers: 0.5, "<= 0.5 ms")),)),
    Workload("scan", "count gs > 400 after dropping the gs index (a full scan on both sides)",
             (Figure("scan", "count gs > 400, no index", "ms",
                     (lambda rows, peers: 25, "<= 25 ms")),)),
    Workload("match", "count the keys matching the glob *77*, case-insensitive (Aerostore `match`, "
             "SQLite `LIKE '%77%'`); about 4.6% of the keys (3 letters + 7 digits) hold 77",
             (Figure("match", "count flight_id match *77*", "ms",
                     (lambda rows, peers: peers["sqlite-mem"] / 2 if peers.get("sqlite-mem") else None,
                      "<= half of SQLite's")),)),
    Workload("get", "fetch the whole row of each of up to 100k random existing keys",
             (Figure("get", "point get, per call", "us", (lambda rows, peers: 1, "<= 1 us")),)),
    Workload("commit1", "single-row update, one autocommit transaction per call, 1 thread",
             (Figure("commit1", "single-row commits, 1 thread, per commit", "us/commit",
                     (lambda rows, peers: peers.get("sqlite-wal"), ">= SQLite WAL FULL"),
                     "commits_per_s"),)),
    Workload("commit8", "the same from 8 Tcl threads (package Thread), disjoint keys; wall time / commits",
             (Figure("commit8", "single-row commits, 8 threads, wall time per commit", "us/commit",
                     (lambda rows, peers: 50, ">= 20,000/s"), "commits_per_s"),)),
    Workload("reopen", "open the store left by a clean shutdown (Aerostore: checkpointed) in a "
             "fresh process and answer one point get, then one indexed count",
             (Figure("reopen", "reopen after clean shutdown, to first answer", "s",
                     (lambda rows, peers: 2, "<= 2 s")),
              Figure("reopen_query", "reopen, to first indexed count (altitude > 30000)", "s",
                     (lambda rows, peers: 2, "<= 2 s")))),
    Workload("recover", "open the store left by kill -9 right after ingesting every row (all of it "
             "still in the log: Aerostore's WAL, SQLite's -wal file) and answer one point get, then one "
             "indexed count",
             (Figure("recover", "recovery after kill -9, to first answer", "s",
                     (lambda rows, peers: 2, "<= 2 s")),
              Figure("recover_query", "recovery, to first indexed count", "s",
                     (lambda rows, peers: 2, "<= 2 s"))), template="crashed"),
]

BY_NAME = {w.name: w for w in WORKLOADS}
FIGURES = [f for w in WORKLOADS for f in w.figures]
