"""python -m aerostore verify | stats | checkpoint | export."""

import io
import os
import subprocess
import sys

import pytest

import aerostore
from aerostore import FlightState
from aerostore.__main__ import main
from aerostore.storage import walscan

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
    with aerostore.open(d) as db:             # closed before the test: the CLI takes the lock
        t = db.create_table(FlightState)
        for r in ROWS:
            t.upsert(r)
        db.checkpoint()
        t.delete("DAL2")
        t.upsert(("DAL2", 1.0, 2.0, 3, 4, 5))
        t.upsert(("ZZZ9", 0.0, 0.0, None, None, None))
        t.delete("ZZZ9")
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
    with aerostore.open(store) as db:
        assert db.table("FlightState").count() == 3


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
    end = walscan.scan(path).end
    with open(path, "r+b") as f:
        f.seek(end)
        f.write(b"\1\2\3")
    size = os.path.getsize(path)
    code, out = run("verify", store)
    assert code == 0 and f"torn tail of 3 bytes at offset {end}" in out
    assert os.path.getsize(os.path.join(store, "wal.log")) == size
    if size > end + 3:          # the rest is the log's preallocated zeros
        assert f"{size - end - 3} bytes of zero padding at offset {end + 3} (preallocated" in out
    stats = dict(line.split(" ", 1) for line in run("stats", store)[1].splitlines())
    assert stats["wal_torn_bytes"] == "3"
    assert int(stats["wal_padding_bytes"]) == size - end - 3


def test_zero_padding_is_not_a_torn_tail(store):
    """Preallocated zeros after the last frame are free space: reported as padding."""
    path = os.path.join(store, "wal.log")
    end = walscan.scan(path).end
    with open(path, "ab") as f:
        f.write(bytes(61489))
    size = os.path.getsize(path)
    code, out = run("verify", store)
    assert code == 0 and "torn" not in out
    assert f"wal.log: {size - end} bytes of zero padding at offset {end} (preallocated space" in out


def test_a_store_open_elsewhere_exits_3(store):
    with aerostore.open(store):
        assert run("verify", store)[0] == 3
        assert run("checkpoint", store)[0] == 3


@pytest.mark.parametrize("argv", [["verify"], ["frobnicate", "STORE"], ["verify", "TMP"],
                                  ["verify", "STORE", "extra"]])
def test_usage_errors_exit_2(store, tmp_path, argv):
    argv = [{"STORE": store, "TMP": str(tmp_path)}.get(a, a) for a in argv]
    assert run(*argv)[0] == 2


# -- argument parsing, pipes, several tables, atomic output ---------------------------------------

def cli(*argv, **kw):
    return subprocess.run([sys.executable, "-m", "aerostore", *argv], capture_output=True,
                          text=True, timeout=60, **kw)


def test_help_exits_0():
    for argv in (["--help"], ["-h"], ["export", "--help"], ["verify", "-h"]):
        r = cli(*argv)
        assert r.returncode == 0, argv
        assert "usage: python -m aerostore" in r.stdout and r.stderr == ""
    assert "verify" in cli("--help").stdout and "-o FILE" in cli("export", "-h").stdout


def test_usage_errors_exit_2_with_the_usage_on_stderr(store):
    for argv in ([], ["frobnicate", store], ["verify"], ["verify", store, "extra"],
                 ["export", store, "A", "B"]):
        r = cli(*argv)
        assert r.returncode == 2, argv
        assert "usage: python -m aerostore" in r.stderr and r.stdout == ""


def test_main_returns_the_exit_code():
    assert run("--help")[0] == 0 and run("export")[0] == 2


@pytest.fixture
def big_store(tmp_path):
    d = str(tmp_path / "big")
    with aerostore.open(d) as db:
        db.create_table(FlightState).ingest_tsv(
            "".join(f"K{i:06d}\t1.5\t2.5\t{i}\t{i % 600}\t{i}\n" for i in range(20000)))
    return d


def test_export_into_a_closed_pipe_is_quiet(big_store):
    """`export DIR | head -1`: no "Broken pipe" message, ended like a Unix tool (SIGPIPE)."""
    r = subprocess.run(f"{sys.executable} -m aerostore export {big_store} | head -1; "
                       "echo \"status=${PIPESTATUS[0]}\"", shell=True, executable="/bin/bash",
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.splitlines() == ["K000000\t1.5\t2.5\t0\t0\t0", "status=141"]
    assert r.stderr == ""
    p = subprocess.Popen([sys.executable, "-m", "aerostore", "export", big_store],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.close()
    assert p.wait(timeout=60) == -13                 # ended by SIGPIPE
    assert p.stderr.read() == b""
    p.stderr.close()


def test_export_with_several_tables_needs_the_table(tmp_path):
    d = str(tmp_path / "two")

    @aerostore.table
    class Gate:
        gate = aerostore.Key()
        flight = aerostore.Str()
    with aerostore.open(d) as db:
        db.create_table(FlightState).upsert(("UAL1", 1.0, 2.0, 3, 4, 5))
        db.create_table(Gate).upsert(("A1", "UAL1"))
    r = cli("export", d)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == f"{d} holds 2 tables: name the one to export: FlightState Gate\n"
    assert run("export", d, "Gate") == (0, "A1\tUAL1\n")
    assert run("export", d, "FlightState") == (0, "UAL1\t1.0\t2.0\t3\t4\t5\n")
    r = cli("export", d, "Nope")
    assert r.returncode == 2 and "its tables: FlightState Gate" in r.stderr


@pytest.fixture
def target(tmp_path):
    """tmp_path/out.tsv, holding "old contents", mode 0640."""
    t = tmp_path / "out.tsv"
    t.write_text("old contents\n")
    os.chmod(t, 0o640)
    return t


def test_export_to_a_file_replaces_it_whole(store, target):
    assert run("export", store, "-o", str(target)) == (0, "")
    assert target.read_text() == run("export", store)[1]
    assert os.stat(target).st_mode & 0o777 == 0o640          # the replaced file's mode is kept
    assert sorted(os.listdir(target.parent)) == ["db", "out.tsv"]   # no temporary files left


def test_a_failed_export_leaves_the_file_as_it_was(store, target):
    code, _ = run("export", store, "Nope", "--output", str(target))
    assert code == 2 and target.read_text() == "old contents\n"
    assert sorted(os.listdir(target.parent)) == ["db", "out.tsv"]


def test_export_into_a_missing_directory(store, tmp_path):
    r = cli("export", store, "-o", str(tmp_path / "no" / "such" / "dir.tsv"))
    assert r.returncode == 2 and "cannot write" in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["db"]


def test_export_of_a_lone_surrogate_is_an_error_not_a_traceback(tmp_path):
    """The log can hold a lone surrogate (surrogatepass) that a transaction's
    unchecked upsert_checked stored; TSV cannot: a clear error, no traceback."""
    d = str(tmp_path / "surrogate")
    with aerostore.open(d) as db:
        t = db.create_table(FlightState)
        t.upsert(("OK1", 1.0, 2.0, 3, 4, 5))
        with db.transaction() as txn:        # the unchecked bulk path
            txn.table("FlightState").upsert_checked([("bad\ud800", None, None, None, None, None)])
    target = tmp_path / "out.tsv"
    target.write_text("keep\n")
    for argv in (["export", d], ["export", d, "-o", str(target)]):
        r = cli(*argv)
        assert r.returncode == 2, argv
        assert "Traceback" not in r.stderr
        assert 'cannot export row "bad\\ud800" of table FlightState: field "flight_id" holds a ' \
               "lone surrogate" in r.stderr
    assert target.read_text() == "keep\n"
