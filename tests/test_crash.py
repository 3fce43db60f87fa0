"""The crash loop: a child process commits batches and reports each acknowledgement;
SIGKILL at a random moment; reopen; every acknowledged batch is there whole and no
batch is there in part.

Rounds: ``AEROSTORE_CRASH_ROUNDS`` (default 4 per mode).  Run as a script, this file
is the child: ``python tests/test_crash.py DIR ROUND SYNC``.
"""

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

import aerostore
from aerostore import FlightState

ROUNDS = int(os.environ.get("AEROSTORE_CRASH_ROUNDS", "4"))
BATCH = 12


def child(path: str, rnd: int, sync: bool) -> None:
    """Commit batches forever (until killed), checkpointing now and then."""
    db = aerostore.open(path, synchronous_commit=sync)
    db.create_table(FlightState)

    def checkpointer():
        while True:
            time.sleep(0.15)
            db.checkpoint()

    threading.Thread(target=checkpointer, daemon=True).start()
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    i = 0
    while True:
        i += 1
        with db.transaction() as txn:
            t = txn.table("FlightState")
            for j in range(BATCH):
                t.upsert((f"r{rnd}b{i}k{j}", 1.0, 2.0, i, j, rnd))
            t.upsert(("latest", 0.0, 0.0, i, 0, rnd))
            if i > 3:
                t.delete(f"r{rnd}b{i - 3}k0")  # deletes are part of batches too
        out.write(f"ack {i}\n")
        out.flush()


def run_round(path: str, rnd: int, sync: bool, rng: random.Random) -> list:
    proc = subprocess.Popen([sys.executable, __file__, path, str(rnd), "1" if sync else "0"],
                            stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(
                                os.path.abspath(__file__)))))
    assert proc.stdout.readline() == "ready\n"
    time.sleep(rng.uniform(0.05, 0.5))
    proc.send_signal(signal.SIGKILL)
    rest = proc.stdout.read()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return [int(line.split()[1]) for line in rest.splitlines() if line.startswith("ack ")]


def batches_present(db, rnd: int) -> dict:
    """batch number -> set of row indexes j present (of keys r{rnd}b{i}k{j})."""
    out: dict = {}
    prefix = f"r{rnd}b"
    for key in db.table("FlightState").query().keys():
        if key.startswith(prefix):
            b, j = key[len(prefix):].split("k")
            out.setdefault(int(b), set()).add(int(j))
    return out


def check_round(db, rnd: int, acked: list, sync: bool) -> int:
    present = batches_present(db, rnd)
    top = max(present) if present else 0
    for b in range(1, top + 1):
        # whole: rows 1..BATCH-1 always; row 0 deleted by batch b+3 if that committed
        want = set(range(BATCH)) if b + 3 > top else set(range(1, BATCH))
        assert present.get(b) == want, f"round {rnd} batch {b} partial: {present.get(b)}"
    latest = db.table("FlightState").get("latest")
    if top:
        assert latest[3] == top and latest[5] == rnd  # the batch's own write of "latest"
    if sync:
        assert not acked or top >= max(acked), f"acknowledged batch {max(acked)} lost (have {top})"
    return top


def check_indexes(db) -> None:
    """The reopened heap, its columns and every index (adopted from the checkpoint and
    caught up with the log, or built) agree: ``_check``, and a count through each
    index equals the rows."""
    t = db.table("FlightState")
    t._check()
    n = t.count()
    for f in ("lat", "lon", "altitude", "gs", "updated_at"):
        assert t.query().ge(f, -1e9 if f in ("lat", "lon") else 0).count() == n, f


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
def test_crash_loop(tmp_path, sync):
    rng = random.Random(int(os.environ.get("AEROSTORE_CRASH_SEED", time.time_ns())))
    d = str(tmp_path / "db")
    tops = []
    for rnd in range(1, ROUNDS + 1):
        acked = run_round(d, rnd, sync, rng)
        db = aerostore.open(d)
        try:
            tops.append(check_round(db, rnd, acked, sync))
            for earlier in range(1, rnd):  # earlier rounds are untouched
                assert max(batches_present(db, earlier), default=0) == tops[earlier - 1]
            check_indexes(db)
        finally:
            db.close()
    assert sum(tops) > 0


if __name__ == "__main__":
    child(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1")
