"""Checkpoint format 2 through the engine: a reopen loads the columns and adopts the
numeric index arrays (no rebuild), replays the log after them, and equals the
store that was checkpointed; version 1 files still reopen the same; a crash at
each step of a checkpoint recovers the same state."""

import os
import random
import shutil

import pytest

import aerostore
from aerostore import FlightState
from aerostore.arrayindex import ArrayIndex
from aerostore.heap import TableStore
from aerostore.index import Index
from aerostore.schema import Bool, Float, Int, Key, Str, UInt, table
from aerostore.storage import DirectoryStorage
from aerostore.storage.checkpoint import read_checkpoint

from faultyio import FaultyIO
from test_checkpoint import frames, write_v1
from test_query_oracle import check_queries, make_rows, mutate
from test_cli import run


@table(indexes=("n32", "u64", "f", "b", "name"))
class Mixed:
    k = Key()
    name = Str()
    n32 = Int(bits=32)
    u64 = UInt(bits=64)
    f = Float()
    b = Bool()
    i64 = Int()


@table(indexes=("v",))
class Empty:
    k = Key()
    v = Int(bits=16)


WORDS = ["plain", "caf\u00e9", "\u65e5\u672c", "\U0001f600 smile", "x" * 300, None]


def mixed_row(rng, key):
    return (key, rng.choice(WORDS), rng.choice([None, rng.randrange(-2 ** 31, 2 ** 31)]),
            rng.choice([None, 0, 2 ** 64 - 1, rng.randrange(2 ** 64)]),
            rng.choice([None, -0.5, 0.0, 1e300, rng.uniform(-1e6, 1e6)]),
            rng.choice([None, True, False]), rng.choice([None, -2 ** 63, 2 ** 63 - 1, rng.randrange(-9, 9)]))


def fill(db, rng, n=600):
    """A Mixed table of ``n`` rows with holes (deleted keys), updated rows, an empty
    table; returns the model {key: row}."""
    t = db.create_table(Mixed)
    db.create_table(Empty)
    model = {}
    for i in range(n):
        key = f"k{i}\u00e9" if i % 5 == 0 else f"k{i}"
        model[key] = mixed_row(rng, key)
    t.upsert_many(list(model.values()))
    for key in list(model)[::7]:                        # deleted slots before the checkpoint
        t.delete(key)
        del model[key]
    for key in list(model)[::11]:
        model[key] = mixed_row(rng, key)
        t.upsert(model[key])
    return model


def same(db, model):
    """The Mixed table equals ``model``: rows, scans, index queries, invariants."""
    t = db.table("Mixed")
    assert t.count() == len(model)
    assert {r[0]: r for r in t.query().rows()} == model
    for key, row in model.items():
        assert t.get(key) == row
    pos = {f: i for i, f in enumerate(["k", "name", "n32", "u64", "f", "b", "i64"])}
    for field, lo in (("n32", 0), ("u64", 2 ** 63), ("f", 0.0), ("i64", 0)):
        p = pos[field]
        want = sorted(k for k, r in model.items() if r[p] is not None and r[p] >= lo)
        assert sorted(t.query().ge(field, lo).keys()) == want, field
        assert t.query().ge(field, lo).count() == len(want), field
        assert t.query().null(field).count() == sum(r[p] is None for r in model.values())
    assert t.query().true("b").count() == sum(r[5] is True for r in model.values())
    assert t.query().eq("name", "caf\u00e9").count() == sum(r[1] == "caf\u00e9" for r in model.values())
    assert db.table("Empty").count() == 0
    assert db.table("Empty").query().gt("v", 0).count() == 0


class Rebuilds:
    """Counts index builds from the heap (``TableStore._fill``) per field position."""

    def __init__(self, monkeypatch):
        self.filled = []
        orig = TableStore._fill

        def fill(st, ix):
            self.filled.append((st.schema.name, ix.pos, type(ix).__name__))
            return orig(st, ix)

        monkeypatch.setattr(TableStore, "_fill", fill)
        self.built = 0
        orig_build = Index.build

        def build(ix, values, slots):
            self.built += 1
            return orig_build(ix, values, slots)

        monkeypatch.setattr(Index, "build", build)

    def numeric(self):
        return [f for f in self.filled if f[2] == "ArrayIndex"]


@pytest.mark.parametrize("seed", [1, 2])
def test_reopen_equals_the_store_with_nulls_unicode_holes_and_an_empty_table(tmp_path, open_db,
                                                                         monkeypatch, seed):
    rng = random.Random(seed)
    path = str(tmp_path / "db")
    db = open_db(path)
    model = fill(db, rng)
    db.checkpoint()
    db.close()
    assert frames(os.path.join(path, "checkpoint.dat"))[0][2] == ["checkpoint", 2, db._csn, 2]
    rebuilds = Rebuilds(monkeypatch)
    db = open_db(path)
    st = db._stores["Mixed"]
    assert st.columns is not None and st.columns.n == len(model)
    assert all(ix.ready for ix in st.indexes.values() if isinstance(ix, ArrayIndex))
    same(db, model)
    assert rebuilds.numeric() == [] and rebuilds.built == 1     # the Str index only
    db.table("Mixed")._check()
    db.table("Empty")._check()
    assert rebuilds.numeric() == []


@pytest.mark.parametrize("seed", [3, 4])
def test_the_log_after_the_checkpoint_is_replayed_onto_the_adopted_columns_and_indexes(
        tmp_path, open_db, monkeypatch, seed):
    rng = random.Random(seed)
    path = str(tmp_path / "db")
    db = open_db(path)
    model = fill(db, rng)
    db.checkpoint()
    t = db.table("Mixed")
    keys = list(model)
    for key in keys[::3]:                                   # frees checkpoint slots
        t.delete(key)
        del model[key]
    for i in range(150):                                     # new keys reuse them, and append
        key = f"new{i}"
        model[key] = mixed_row(rng, key)
        t.upsert(model[key])
    for key in list(model)[::4]:
        model[key] = mixed_row(rng, key)
        t.upsert(model[key])
    t.delete("new3")
    del model["new3"]
    t.upsert(mixed_row(rng, "gone"))
    t.delete("gone")
    db.table("Empty").upsert(("e1", 5))
    db.close()                                               # no checkpoint: the log holds it all
    rebuilds = Rebuilds(monkeypatch)
    db = open_db(path)
    same_but_empty = dict(model)
    t = db.table("Mixed")
    assert {r[0]: r for r in t.query().rows()} == same_but_empty
    assert db.table("Empty").get("e1") == ("e1", 5)
    for field in ("n32", "u64", "f", "b"):
        t.query().ge(field, 0).count()
    assert rebuilds.numeric() == []
    t._check()
    db.table("Empty")._check()
    db.table("Empty").delete("e1")
    same(db, model)
    # Mixed's indexes were caught up, none rebuilt; Empty's checkpoint held no row,
    # so the log's rows were loaded whole, like a table the log created, and its
    # index built on its first read
    assert rebuilds.numeric() == [("Empty", 1, "ArrayIndex")]


@pytest.mark.parametrize("seed", [5, 6])
def test_flightstate_queries_after_reopen_match_the_oracle(tmp_path, open_db, monkeypatch, seed):
    rng = random.Random(seed)
    path = str(tmp_path / "db")
    db = open_db(path)
    t = db.create_table(FlightState)
    data = make_rows(rng, 500)
    t.upsert_many(list(data.values()))
    mutate(rng, t, data, 150)
    db.checkpoint()
    mutate(rng, t, data, 100)                                # in the log only
    db.close()
    rebuilds = Rebuilds(monkeypatch)
    db = open_db(path)
    t = db.table("FlightState")
    old = db.begin()
    before = dict(data)
    mutate(rng, t, data, 80)
    check_queries(t, data, rng, 80)
    check_queries(old.table("FlightState"), before, rng, 40)
    old.rollback()
    assert rebuilds.numeric() == []
    t._check()


def test_a_reopen_does_not_rebuild_numeric_indexes_even_after_a_bulk_log(tmp_path, open_db,
                                                                        monkeypatch):
    path = str(tmp_path / "db")
    db = open_db(path)
    t = db.create_table(FlightState)
    rows = [(f"F{i:05d}", i / 7.0, -i / 9.0, i * 3 + 10, i % 700, 1_700_000_000 + i) for i in range(20000)]
    t.upsert_many(rows)
    db.checkpoint()
    t.upsert_many([(f"F{i:05d}", 1.0, 2.0, 3, 4, 5) for i in range(0, 20000, 2)])   # a bulk fold
    db.close()
    rebuilds = Rebuilds(monkeypatch)
    db = open_db(path)
    t = db.table("FlightState")
    assert t.query().eq("altitude", 3).count() == 10000
    assert t.query().lt("lat", 1.5).count() == 10000 + sum(1 for i in range(1, 20000, 2) if i / 7.0 < 1.5)
    for f in ("gs", "lon", "updated_at"):
        assert t.query().ge(f, -1e9 if f == "lon" else 0).count() == 20000
    assert rebuilds.filled == [] and rebuilds.built == 0
    t._check()


def test_a_checkpoint_while_writes_continue_stores_index_arrays_that_match_its_rows(tmp_path, open_db):
    import threading
    path = str(tmp_path / "db")
    db = open_db(path)
    t = db.create_table(FlightState)
    t.upsert_many([(f"F{i:05d}", 1.0, 2.0, i, i % 700, i) for i in range(30000)])
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            t.upsert_many([(f"F{(i * 37 + j) % 40000:05d}", 3.0, 4.0, -i, j, i) for j in range(50)])
            t.delete(f"F{(i * 53) % 30000:05d}")
            i += 1

    th = threading.Thread(target=writer)
    th.start()
    try:
        for _ in range(3):
            db.checkpoint()
    finally:
        stop.set()
        th.join()
    snapshot = {r[0]: r for r in t.query().rows()}
    db.close()
    db = open_db(path)
    t = db.table("FlightState")
    assert {r[0]: r for r in t.query().rows()} == snapshot
    t._check()


def to_v1(path):
    """Rewrite a store's checkpoint.dat in format version 1 (the rows it holds, same CSN)."""
    ck = os.path.join(path, "checkpoint.dat")
    csn, tables = read_checkpoint(ck)
    write_v1(ck, csn, [(t.schema, t.index_fields, t.rows) for t in tables])
    assert frames_v1_header(ck) == ["checkpoint", 1, csn, len(tables)]


def frames_v1_header(ck):
    from test_checkpoint import frames_v1
    return frames_v1(ck)[0]


def test_a_version_1_store_reopens_the_same_and_its_next_checkpoint_is_version_2(tmp_path, open_db,
                                                                               monkeypatch):
    rng = random.Random(9)
    path = str(tmp_path / "db")
    db = open_db(path)
    model = fill(db, rng)
    db.checkpoint()
    t = db.table("Mixed")
    key = next(iter(model))
    model[key] = mixed_row(rng, key)
    t.upsert(model[key])                                    # and one commit in the log
    db.close()
    to_v1(path)
    rebuilds = Rebuilds(monkeypatch)
    db = open_db(path)
    assert db._stores["Mixed"].columns.n == len(model)      # version 1: rows, into the columns
    same(db, model)
    assert sorted(f[1] for f in rebuilds.filled if f[0] == "Mixed") == [1, 2, 3, 4, 5]
    db.table("Mixed")._check()
    db.checkpoint()
    db.close()
    assert frames(os.path.join(path, "checkpoint.dat"))[0][2][:2] == ["checkpoint", 2]
    db = open_db(path)
    same(db, model)


def test_cli_verify_and_export_read_both_versions(tmp_path):
    path = str(tmp_path / "db")
    with aerostore.open(path) as db:
        t = db.create_table(FlightState)
        t.upsert_many([("UAL1", 40.5, -73.25, 35000, 450, 1700000000),
                       ("DAL2", 33.0, -84.0, None, 300, 1700000001),
                       ("AAL3", -1.5, 2.0, -50, 0, 2 ** 64 - 1)])
        db.checkpoint()
        t.delete("DAL2")
    outs = []
    for version in (2, 1):
        if version == 1:
            to_v1(path)
        code, verify = run("verify", path)
        assert code == 0 and verify.splitlines()[-1] == "ok"
        code, export = run("export", path)
        assert code == 0
        outs.append((verify.splitlines()[1:], export))
    assert outs[0] == outs[1]
    assert outs[0][1] == ("AAL3\t-1.5\t2.0\t-50\t0\t18446744073709551615\n"
                          "UAL1\t40.5\t-73.25\t35000\t450\t1700000000\n")
    assert run("checkpoint", path)[0] == 0                   # folds the log: version 2 again
    assert frames(os.path.join(path, "checkpoint.dat"))[0][2][:2] == ["checkpoint", 2]
    assert any(p[0] == "index" for _, kind, p, _ in frames(os.path.join(path, "checkpoint.dat"))
               if kind == "record")
    assert run("export", path) == (0, outs[0][1])


def checkpoint_child(path, crash_step):
    """In a forked child: open the store (FaultyIO), checkpoint, crash before step ``crash_step``."""
    pid = os.fork()
    if pid == 0:
        try:
            io = FaultyIO()
            db = aerostore.Database(path, storage=DirectoryStorage(path, io=io))
            io.crash_at(len(io.calls) + crash_step, exit_code=42)
            db.checkpoint()
            os._exit(0)
        except BaseException:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_crash_at_each_step_of_a_checkpoint_recovers_the_same_store(tmp_path, monkeypatch):
    from aerostore.storage import checkpoint
    monkeypatch.setattr(checkpoint, "_FLUSH_BYTES", 4096)       # several writes per checkpoint
    rng = random.Random(12)
    src = str(tmp_path / "src")
    with aerostore.open(src) as db:
        model = fill(db, rng, 400)
        db.checkpoint()
        t = db.table("Mixed")
        for key in list(model)[::5]:
            model[key] = mixed_row(rng, key)
            t.upsert(model[key])
    probe = str(tmp_path / "probe")
    shutil.copytree(src, probe)
    io = FaultyIO()
    db = aerostore.Database(probe, storage=DirectoryStorage(probe, io=io))
    first = len(io.calls)
    db.checkpoint()
    steps = [c[0] for c in io.calls[first:]]
    db.close()
    assert steps.count("write") >= 5 and "rename" in steps
    for k in range(1, len(steps) + 2):
        d = str(tmp_path / f"crash{k}")
        shutil.copytree(src, d)
        code = checkpoint_child(d, k)
        assert code == (0 if k == len(steps) + 1 else 42), (k, code)
        with aerostore.open(d) as db:
            same(db, model)
            db.table("Mixed")._check()
        assert not [f for f in os.listdir(d) if f.endswith(".tmp")]
        shutil.rmtree(d)


class _WritesBetweenSlices:
    """Stands in for a store's latch: after each shared section (one slice of
    ``snapshot_columns``) it runs ``between()``, i.e. writers run between slices."""

    def __init__(self, latch, between):
        self._latch = latch
        self.between = between
        self.shared = self
        self.busy = False           # the writes' own shared sections run nothing

    def __enter__(self):
        return self._latch.shared.__enter__()

    def __exit__(self, *exc):
        out = self._latch.shared.__exit__(*exc)
        if not self.busy:
            self.busy = True
            try:
                self.between()
            finally:
                self.busy = False
        return out


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_snapshot_columns_is_the_snapshot_while_writes_run_between_its_slices(tmp_path, open_db,
                                                                               seed):
    rng = random.Random(seed)
    db = open_db(str(tmp_path / "db"))
    model = fill(db, rng, 300)
    t = db.table("Mixed")
    for key in list(model)[::5]:                    # some rows in version chains at s
        model[key] = mixed_row(rng, key)
        t.upsert(model[key])
    st = db._stores["Mixed"]
    s = db._snaps.take()
    new = iter(range(10 ** 6))

    def between():                                  # updates, deletes, inserts, reused slots
        for _ in range(rng.randrange(1, 6)):
            r = rng.random()
            key = rng.choice(list(model))
            if r < 0.5:
                t.upsert(mixed_row(rng, key))
            elif r < 0.7:
                t.delete(key)
            else:
                key = f"new{next(new)}"
                t.upsert(mixed_row(rng, key))
        db._vacuum(True)                            # prune what no snapshot needs
    st.latch = _WritesBetweenSlices(st.latch, between)
    try:
        snap = st.snapshot_columns(s, step=rng.choice([1, 7, 64]))
    finally:
        st.latch = st.latch._latch
        db._snaps.release(s)
    got = list(snap)
    assert len(got) == snap.n == len(model)
    assert {r[0]: r for r in got} == model
    for p, f in enumerate(Mixed.fields):
        col = snap.columns[p]
        assert (col.__class__ is list) == (f.kind == "str" or p == Mixed.key_pos)
    t._check()


def test_a_checkpoint_releases_its_snapshot_before_it_writes(tmp_path, open_db, monkeypatch):
    """The rows are copied first; while the file is written no snapshot holds back the
    vacuum, so the versions a feed makes meanwhile are pruned as usual."""
    db = open_db(str(tmp_path / "db"))
    model = fill(db, random.Random(3))
    storage = db._storage
    seen = []
    real = storage.checkpoint

    def checking(csn, tables):
        seen.append(db._snaps.active())
        t = db.table("Mixed")
        key = next(iter(model))
        t.upsert(mixed_row(random.Random(4), key))   # a write during the checkpoint...
        db._vacuum(True)
        seen.append(db._stores["Mixed"].unfrozen.copy())   # ...is pruned at once
        return real(csn, tables)
    monkeypatch.setattr(storage, "checkpoint", checking)
    assert db.checkpoint() == len(model)
    assert seen == [0, set()]
