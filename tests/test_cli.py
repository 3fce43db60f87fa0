"""python -m aerostore verify | stats | checkpoint | export."""

import io
import os
import subprocess
import sys

import pytest

import aerostore
from aerostore import FlightState, wal
from aerostore.__main__ import main

ROWS = [("UAL1", 40.5, -73.25, 35000, 450, 1700000000),
        ("DAL2", 33.0, -84.0, None, 300, 1700000001),
        ("AAL3", -1.5, 2.0, -50, 0, 2 ** 64 - 1)]


def run(*argv):
    out = io.StringIO()
    code = main(list(argv), out)
    return code, out.getvalue()


@pytest.fixture
def store(tmp_path):
    d = str(tmp_path / "db")
    db = aerostore.open(d)
    t = db.create_table(FlightState)
    for r in ROWS:
        t.upsert(r)
    db.checkpoint()
    t.delete("DAL2")
    t.upsert(("DAL2", 1.0, 2.0, 3, 4, 5))
    t.upsert(("ZZZ9", 0.0, 0.0, None, None, None))
    t.delete("ZZZ9")
    db.close()
    return d


def test_verify(store):
    code, out = run("verify", store)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("checkpoint.dat: csn 4, ")
    assert lines[1].startswith("wal.log: base csn 4, 4 frames, 4 records")
    assert "table FlightState: 3 rows, indexes altitude gs lat lon updated_at" in lines
    assert lines[-4:] == ["rows 3", "records 4", "last commit 8", "ok"]


def test_export_is_tsv_sorted_by_key(store):
    code, out = run("export", store)
    assert code == 0
    assert out == ("AAL3\t-1.5\t2.0\t-50\t0\t18446744073709551615\n"
                   "DAL2\t1.0\t2.0\t3\t4\t5\n"
                   "UAL1\t40.5\t-73.25\t35000\t450\t1700000000\n")
    assert run("export", store, "FlightState") == (0, out)
    assert run("export", store, "Nope")[0] == 2


def test_stats(store):
    code, out = run("stats", store)
    stats = dict(line.split(" ", 1) for line in out.splitlines())
    assert code == 0
    assert stats["checkpoint_csn"] == "4" and stats["last_csn"] == "8"
    assert stats["wal_records"] == "4" and stats["rows"] == "3" and stats["rows.FlightState"] == "3"


def test_checkpoint_folds_the_log(store):
    code, out = run("checkpoint", store)
    assert (code, out) == (0, "checkpoint rows=3 csn=8\n")
    code, out = run("verify", store)
    assert "checkpoint.dat: csn 8" in out and "records 0" in out and "rows 3" in out
    db = aerostore.open(store)
    assert db.table("FlightState").count() == 3
    db.close()


def test_damage_exits_1_and_names_the_file(store):
    with open(os.path.join(store, "wal.log"), "r+b") as f:
        f.seek(30)
        b = f.read(1)
        f.seek(30)
        f.write(bytes([b[0] ^ 1]))
    r = subprocess.run([sys.executable, "-m", "aerostore", "verify", store],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "CORRUPT" in r.stderr and "wal.log" in r.stderr and "offset 20" in r.stderr


def test_torn_tail_is_reported_not_changed(store):
    path = os.path.join(store, "wal.log")
    end = wal.scan(path).end
    with open(path, "r+b") as f:
        f.seek(end)
        f.write(b"\1\2\3")
    size = os.path.getsize(path)
    code, out = run("verify", store)
    assert code == 0 and f"torn tail of {size - end} bytes at offset {end}" in out
    assert os.path.getsize(os.path.join(store, "wal.log")) == size


def test_locked_and_usage(store, tmp_path):
    db = aerostore.open(store)
    assert run("verify", store)[0] == 3
    assert run("checkpoint", store)[0] == 3
    db.close()
    assert run("verify")[0] == 2
    assert run("frobnicate", store)[0] == 2
    assert run("verify", str(tmp_path))[0] == 2
    assert run("verify", store, "extra")[0] == 2
