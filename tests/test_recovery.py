"""Recovery: the directory lock, permissions, clean-up, idempotence, and replay of
random workloads through the engine compared with a model."""

import os
import random
import shutil
import subprocess
import sys

import pytest

import aerostore
from aerostore.words import show
from aerostore import FlightState
from aerostore.config import Config
from aerostore.errors import CorruptError, LockedError
from aerostore.storage import DirectoryStorage, walscan
from faultyio import FaultyIO


def open_storage(path, io=None):
    s = DirectoryStorage(path, Config(), io=io)
    try:
        return s, s.recover()
    except BaseException:
        s.close()
        raise


def csns(path):
    s, rec = open_storage(path)
    out = [c for c, _ in rec.records]
    s.close()
    return out


def test_second_opener_gets_locked_error_until_the_first_closes(tmp_path):
    d = str(tmp_path / "db")
    s, _ = open_storage(d)
    with pytest.raises(LockedError) as ei:
        DirectoryStorage(d)
    assert ei.value.code == ("AEROSTORE", "LOCKED", os.path.abspath(d))
    assert "already open in this process" in str(ei.value)     # not "another process"
    code = ("import sys, aerostore\n"
            "try:\n aerostore.open(sys.argv[1])\n"
            "except aerostore.LockedError as e:\n print(' '.join(e.code[:2]), e); sys.exit(0)\n"
            "sys.exit(1)\n")
    r = subprocess.run([sys.executable, "-c", code, d], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("AEROSTORE LOCKED"), r.stderr
    assert f"another process (pid {os.getpid()})" in r.stdout
    s.close()
    s, _ = open_storage(d)
    s.close()


def test_directory_0700_and_files_0600(tmp_path):
    d = str(tmp_path / "new" / "db")
    old = os.umask(0)
    try:
        s, _ = open_storage(d)
        s.log(1, []).wait()
        s.checkpoint(1, [])
        s.close()
    finally:
        os.umask(old)
    with open(os.path.join(d, "wal.log"), "ab") as f:
        f.write(b"torn")
    s, _ = open_storage(d)
    s.close()
    assert os.stat(d).st_mode & 0o777 == 0o700
    names = sorted(os.listdir(d))
    assert names == ["checkpoint.dat", "lock", "wal.log", "wal.log.torn-1"]
    for n in names:
        assert os.stat(os.path.join(d, n)).st_mode & 0o777 == 0o600, n


def test_leftover_temp_files_are_removed_on_open(tmp_path):
    d = str(tmp_path / "db")
    s, _ = open_storage(d)
    s.log(1, []).wait()
    s.close()
    for n in ("checkpoint.dat.tmp", "wal.log.tmp"):
        with open(os.path.join(d, n), "wb") as f:
            f.write(b"half-written")
    s, rec = open_storage(d)
    assert [c for c, _ in rec.records] == [1]
    s.close()
    assert sorted(os.listdir(d)) == ["lock", "wal.log"]


def test_a_cut_log_without_its_checkpoint_is_corrupt(tmp_path):
    d = str(tmp_path / "db")
    s, _ = open_storage(d)
    for c in range(1, 4):
        s.log(c, []).wait()
    s.checkpoint(2, [])
    s.close()
    os.unlink(os.path.join(d, "checkpoint.dat"))
    with pytest.raises(CorruptError) as ei:
        open_storage(d)
    assert "checkpoint" in ei.value.what


def test_a_directory_that_cannot_be_created_is_a_usage_error(tmp_path):
    """Python and Tcl alike: AEROSTORE USAGE DIR dir, the path quoted (docs/tcl.md)."""
    (tmp_path / "file").write_text("x")
    where = str(tmp_path / "file" / "db")
    with pytest.raises(aerostore.UsageError) as ei:
        DirectoryStorage(where)
    assert ei.value.code == ("AEROSTORE", "USAGE", "DIR", where)
    assert str(ei.value) == f'cannot open data directory "{where}": Not a directory'


def test_a_data_directory_name_with_a_nul_is_a_usage_error(tmp_path, monkeypatch):
    """Not Python's ValueError: USAGE DIR with the name escaped, and nothing is made."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(aerostore.UsageError) as ei:
        aerostore.open("a\x00b")
    where = os.path.join(str(tmp_path), "a\x00b")       # made absolute, as every data directory
    assert ei.value.code == ("AEROSTORE", "USAGE", "DIR", where)
    assert str(ei.value) == (f'cannot open data directory "{show(where)}": '
                             "a file name may not contain a NUL character")
    assert "\x00" not in str(ei.value)
    assert os.listdir(tmp_path) == []


def test_not_a_directory(tmp_path):
    p = tmp_path / "file"
    p.write_text("x")
    with pytest.raises(aerostore.UsageError) as ei:
        DirectoryStorage(str(p))
    assert ei.value.code == ("AEROSTORE", "USAGE", "DIR", str(p))


def test_new_directories_and_their_parents_are_private(tmp_path):
    where = tmp_path / "a" / "b" / "db"
    DirectoryStorage(str(where)).close()
    for d in (tmp_path / "a", tmp_path / "a" / "b", where):
        assert (d.stat().st_mode & 0o777) == 0o700, d


def test_crash_during_recovery_then_recover_again(tmp_path):
    """Setting a torn tail aside is the only change recovery makes; crash at each step."""
    src = str(tmp_path / "src")
    s, _ = open_storage(src)
    for c in range(1, 6):
        s.log(c, [("del", "T", str(c))]).wait()
    s.close()
    end = walscan.scan(os.path.join(src, "wal.log")).end
    with open(os.path.join(src, "wal.log"), "r+b") as f:
        f.seek(end)
        f.write(b"\x07" * 100)
    probe = str(tmp_path / "probe")
    shutil.copytree(src, probe)
    io = FaultyIO()
    open_storage(probe, io)[0].close()
    nsteps = len(io.calls)
    assert [c[0] for c in io.calls[:4]] == ["open", "write", "fdatasync", "fsync_dir"]
    for k in range(1, nsteps + 1):
        d = str(tmp_path / f"k{k}")
        shutil.copytree(src, d)
        pid = os.fork()
        if pid == 0:
            try:
                fio = FaultyIO()
                fio.crash_at(k, exit_code=42)
                open_storage(d, fio)
            finally:
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 42
        assert csns(d) == [1, 2, 3, 4, 5]
        assert csns(d) == [1, 2, 3, 4, 5]
        torn = sorted(n for n in os.listdir(d) if ".torn-" in n)
        copies = [open(os.path.join(d, n), "rb").read() for n in torn]
        assert any(c[:100] == b"\x07" * 100 for c in copies)  # one whole copy of the tail
        assert all(c == (b"\x07" * 100 + bytes(len(c)))[:len(c)] for c in copies)
        shutil.rmtree(d)


# -- random workloads through the engine, against a model ------------------------------

KEYS = [f"F{i}" for i in range(40)]


def random_row(rng, key):
    return (key, rng.choice([None, rng.uniform(-90, 90)]), rng.uniform(-180, 180),
            rng.choice([None, rng.randrange(-1000, 45000)]), rng.randrange(0, 65536),
            rng.choice([0, 2 ** 64 - 1, rng.randrange(0, 2 ** 40)]))


def mixed_commit(db, rng, model, keys, n, p_put):
    """One transaction of ``n`` random upserts (probability ``p_put``) and deletes of
    ``keys``, mirrored in ``model``."""
    with db.transaction() as txn:
        tt = txn.table("FlightState")
        for _ in range(n):
            k = rng.choice(keys)
            if rng.random() < p_put:
                row = random_row(rng, k)
                tt.upsert(row)
                model[k] = row
            else:
                tt.delete(k)
                model.pop(k, None)


def check(db, model, indexes):
    t = db.table("FlightState")
    assert {r[0]: r for r in t.query().rows()} == model
    assert t.count() == len(model)
    assert t.indexed() == sorted(indexes, key=FlightState.names.index)


@pytest.mark.parametrize("seed", range(4))
def test_random_workload_replay_equals_model(tmp_path, seed):
    rng = random.Random(seed)
    d = str(tmp_path / "db")
    sync = seed % 2 == 0
    db = aerostore.open(d, synchronous_commit=sync)
    db.create_table(FlightState)
    model: dict = {}
    indexes = set(FlightState.default_indexes)
    for step in range(400):
        t = db.table("FlightState")
        r = rng.random()
        if r < 0.45:
            row = random_row(rng, rng.choice(KEYS))
            t.upsert(row)
            model[row[0]] = row
        elif r < 0.6:
            k = rng.choice(KEYS)
            assert t.delete(k) == (k in model)
            model.pop(k, None)
        elif r < 0.8:
            mixed_commit(db, rng, model, KEYS, rng.randrange(1, 6), 0.7)
        elif r < 0.85:
            f = rng.choice(["lat", "gs", "altitude", "updated_at", "lon"])
            if f in indexes:
                t.drop_index(f)
                indexes.discard(f)
            else:
                t.create_index(f)
                indexes.add(f)
        elif r < 0.9:
            db.checkpoint()
        else:
            db.close()
            db = aerostore.open(d, synchronous_commit=sync)
            check(db, model, indexes)
    db.close()
    db = aerostore.open(d)
    check(db, model, indexes)
    db.close()


def test_async_commits_reach_the_disk_at_exit_without_close(tmp_path):
    d = str(tmp_path / "db")
    code = ("import sys, aerostore\n"
            "db = aerostore.open(sys.argv[1], synchronous_commit=False, wal_flush_delay_ms=60000)\n"
            "t = db.create_table(aerostore.FlightState)\n"
            "for i in range(100):\n t.upsert((f'K{i}', 1.0, 2.0, i, 0, 0))\n")
    r = subprocess.run([sys.executable, "-c", code, d], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    db = aerostore.open(d)
    assert db.table("FlightState").count() == 100
    db.close()


@pytest.mark.parametrize("seed", range(6))
def test_bulk_and_single_commits_replay_to_each_keys_last_op(tmp_path, seed):
    """Recovery gathers the log's row ops per table and keeps each key's last one
    (database._Replay): bulk commits (one table, puts only) go in whole, others op
    by op; order matters per key across both kinds, with and without a checkpoint
    under the log, and for a table the log alone fills."""
    rng = random.Random(seed)
    d = str(tmp_path / "db")
    db = aerostore.open(d, synchronous_commit=False)
    db.create_table(FlightState)
    model: dict = {}
    if seed % 3 == 1:                       # a checkpoint with rows under the log
        rows = [random_row(rng, k) for k in KEYS[::2]]
        db.table("FlightState").upsert_many(rows)
        model.update((r[0], r) for r in rows)
        db.checkpoint()
    elif seed % 3 == 2:                     # a checkpoint of the empty table
        db.checkpoint()
    t = db.table("FlightState")
    for step in range(120):
        r = rng.random()
        if r < 0.35:                        # a bulk commit: puts only, some keys twice
            rows = [random_row(rng, rng.choice(KEYS)) for _ in range(rng.randrange(2, 12))]
            t.upsert_many(rows)
            model.update((r[0], r) for r in rows)
        elif r < 0.55:
            row = random_row(rng, rng.choice(KEYS))
            t.upsert(row)
            model[row[0]] = row
        elif r < 0.7:
            k = rng.choice(KEYS)
            t.delete(k)
            model.pop(k, None)
        else:                               # puts and deletes of the same keys, one commit
            mixed_commit(db, rng, model, KEYS[:8], rng.randrange(2, 6), 0.6)
    db.flush_log()
    db.close()
    db = aerostore.open(d)
    check(db, model, set(FlightState.default_indexes))
    db.table("FlightState")._check()
    for f in ("altitude", "lat"):           # the indexes answer what the rows say
        want = sorted(k for k, r in model.items() if r[FlightState.names.index(f)] is not None)
        got = sorted(r[0] for r in db.table("FlightState").query().ge(f, -1e9).rows())
        assert got == want
    db.close()


def test_replay_hands_a_bulk_commit_to_put_batch_and_others_op_by_op():
    from aerostore.storage import Sink, replay

    class Calls(Sink):
        def __init__(self):
            self.calls = []

        def put(self, csn, table, key, values):
            self.calls.append(("put", csn, table, key))

        def put_batch(self, csn, table, ops):
            self.calls.append(("batch", csn, table, [op[2] for op in ops]))

        def delete(self, csn, table, key):
            self.calls.append(("del", csn, table, key))

    row = ("k", 1)
    sink = Calls()
    replay([(1, (("put", "A", "a", row), ("put", "A", "b", row))),     # bulk
            (2, (("put", "A", "c", row),)),                            # one op
            (3, (("put", "A", "d", row), ("put", "B", "e", row))),     # two tables
            (4, (("put", "A", "f", row), ("del", "A", "f")))], sink)   # not puts only
    assert sink.calls == [("batch", 1, "A", ["a", "b"]), ("put", 2, "A", "c"),
                          ("put", 3, "A", "d"), ("put", 3, "B", "e"),
                          ("put", 4, "A", "f"), ("del", 4, "A", "f")]
    with pytest.raises(CorruptError, match="commit 5: unknown operation"):
        replay([(5, (("put", "A", "a", row), ("put", "A", "b")))], Calls())


@pytest.mark.parametrize("bad", [("k", 1.0), ["k", 1.0, 2.0, 3, 4, 5], 7])
def test_a_bulk_commit_with_a_row_of_the_wrong_shape_is_corrupt(tmp_path, bad):
    from aerostore.database import _Replay
    from aerostore.storage import replay
    db = aerostore.open(str(tmp_path / "db"))
    db.create_table(FlightState)
    good = ("F1", 1.0, 2.0, 3, 4, 5)
    with pytest.raises(CorruptError, match="commit 9: a put to 'FlightState' holds a row"):
        replay([(9, (("put", "FlightState", "F1", good), ("put", "FlightState", "F2", bad)))],
               _Replay(db))
    with pytest.raises(CorruptError, match="commit 9: a put to 'FlightState' holds a row"):
        replay([(9, (("put", "FlightState", "F2", bad),))], _Replay(db))
    db.close()


def test_replay_hands_a_putrows_record_to_put_rows_and_the_default_puts_each_row():
    from aerostore.storage import Sink, replay

    class Calls(Sink):
        def __init__(self):
            self.calls = []

        def put(self, csn, table, key, values):
            self.calls.append(("put", csn, table, key, values))

        def delete(self, csn, table, key):
            self.calls.append(("del", csn, table, key))

    a, b = ("x", "a"), ("y", "b")
    sink = Calls()
    replay([(1, (("putrows", "A", 1, (a, b)), ("del", "A", "c"))),
            (2, (("putrows", "A", 0, [a]),))], sink)
    assert sink.calls == [("put", 1, "A", "a", a), ("put", 1, "A", "b", b), ("del", 1, "A", "c"),
                          ("put", 2, "A", "x", a)]


@pytest.mark.parametrize("key_pos, rows", [
    (2, (("x", "a"),)),                 # no field at key_pos
    (-1, (("x", "a"),)),
    ("0", (("x", "a"),)),
    (0, ()),                            # no rows
    (0, ("xa",)),                       # a row that is not an array
    (0, "xa"),                          # rows that are not an array
    (0, (("x", "a"), 5)),
])
def test_a_putrows_record_of_the_wrong_shape_is_corrupt_for_the_default_sink(key_pos, rows):
    from aerostore.storage import Sink, replay

    class Puts(Sink):
        def put(self, csn, table, key, values):
            raise AssertionError("no row of a bad record is applied")

    with pytest.raises(CorruptError, match="commit 3: a putrows record for 'A'"):
        replay([(3, (("putrows", "A", key_pos, rows),))], Puts())


@pytest.mark.parametrize("key_pos, rows, says", [
    (1, (("F1", 1.0, 2.0, 3, 4, 5),), "that is not rows keyed on field 0"),
    (True, (("F1", 1.0, 2.0, 3, 4, 5),), "that is not rows keyed on field 0"),
    (0, "F1", "that is not rows keyed on field 0"),
    (0, (("F1", 1.0, 2.0, 3, 4, 5), ("F2", 1.0)), "holds a row that is not 6 values"),
    (0, (), "holds a row that is not 6 values"),
    (0, ((7, 1.0, 2.0, 3, 4, 5),), "with a key that is not a string"),
])
def test_a_putrows_record_that_does_not_fit_its_table_is_corrupt_on_recovery(tmp_path, key_pos,
                                                                              rows, says):
    from aerostore.database import _Replay
    from aerostore.storage import replay
    db = aerostore.open(str(tmp_path / "db"))
    db.create_table(FlightState)
    sink = _Replay(db)
    with pytest.raises(CorruptError, match=f"commit 9: a put.* {says}"):
        replay([(9, (("putrows", "FlightState", key_pos, rows),))], sink)
    db.close()


def _logged(path):
    """The op records of every commit in the log at ``path``, in order."""
    from aerostore.storage.walscan import iter_commits, scan
    wal = os.path.join(path, "wal.log")
    return [ops for _, ops in iter_commits(wal, scan(wal), 0)]


def test_a_batch_is_logged_as_one_putrows_record_and_recovers_beside_old_put_records(tmp_path):
    d = str(tmp_path / "db")
    db = aerostore.open(d)
    t = db.create_table(FlightState)
    rows = [(f"F{i}", 1.0 + i, 2.0, 300 * i, 4, 1700000000 + i) for i in range(6)]
    t.upsert_many(rows[:4])                                     # four new rows
    t.upsert_many([rows[0][:3] + (9, 9, 9), rows[4]])           # an update and a new row
    t.set("F5", dict(zip(FlightState.names, rows[5])))          # one row
    # what a log written before putrows holds: one put per row of a batch
    db._storage.log(db._csn + 1, [("put", "FlightState", "F6", ("F6", 0.5, 0.5, 6, 6, 6)),
                                  ("put", "FlightState", "F0", ("F0", 0.0, 0.0, 0, 0, 0))]).wait()
    db.close()
    logged = [op for ops in _logged(d) for op in ops if op[0] != "create_table"]
    assert logged[0] == ("putrows", "FlightState", 0, tuple(rows[:4]))
    assert sorted(logged[1][3]) == [rows[0][:3] + (9, 9, 9), rows[4]] and logged[1][:3] == (
        "putrows", "FlightState", 0)
    assert logged[2][0] == "put" and logged[2][2] == "F5"
    db = aerostore.open(d)
    t = db.table("FlightState")
    assert t.get("F0") == ("F0", 0.0, 0.0, 0, 0, 0) and t.get("F4") == rows[4]
    assert t.get("F6") == ("F6", 0.5, 0.5, 6, 6, 6) and t.get("F3") == rows[3]
    assert t.query().count() == 7
    t._check()
    db.close()
