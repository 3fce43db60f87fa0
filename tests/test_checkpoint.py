"""Checkpoints: format, damage detection, the log cut, crashes at every step."""

import os
import shutil
import struct
import threading
import zlib

import msgpack
import pytest

from aerostore.config import Config
from aerostore.errors import CorruptError
from aerostore.storage import DirectoryStorage, walscan
from aerostore.storage.checkpoint import SLICE_ROWS, read_checkpoint
from faultyio import FaultyIO
from test_wal import replay

SCHEMA = {"name": "T", "fields": [{"name": "k", "kind": "str", "aliases": ["key"], "index": False,
                                   "nullable": False, "lo": None, "hi": None, "key": True},
                                  {"name": "v", "kind": "int", "aliases": [], "index": True,
                                   "nullable": True, "lo": 0, "hi": 100, "key": False}],
          "indexes": ["v"]}
U = dict(SCHEMA, name="U")


def open_storage(path, io=None):
    s = DirectoryStorage(path, Config(), io=io)
    try:
        return s, s.recover()
    except BaseException:
        s.close()
        raise


def state_of(rec):
    return replay(rec)[0]


class Model:
    """A workload of numbered commits and the state after each."""

    def __init__(self, n):
        self.commits = []
        state = {"T": {}}
        self.states = [{"T": {}}]
        for csn in range(1, n + 1):
            k = f"k{csn % 7}"
            if csn % 5 == 0:
                ops = [("del", "T", k)]
                state["T"].pop(k, None)
            else:
                ops = [("put", "T", k, (k, csn)), ("put", "T", f"n{csn}", (f"n{csn}", None))]
                state["T"][k] = (k, csn)
                state["T"][f"n{csn}"] = (f"n{csn}", None)
            self.commits.append((csn, ops))
            self.states.append({"T": dict(state["T"])})

    def tables_at(self, csn):
        return [(SCHEMA, ["v"], iter(self.states[csn]["T"].values()))]


def test_round_trip_many_rows_and_tables(tmp_path):
    d = str(tmp_path / "db")
    s, _ = open_storage(d)
    rows_t = [(f"k{i}", i % 101 if i % 3 else None) for i in range(SLICE_ROWS * 2 + 17)]
    s.log(1, []).wait()
    n = s.checkpoint(1, [(SCHEMA, ["v"], iter(rows_t)), (U, [], iter([]))])
    assert n == len(rows_t)
    st = s.stats()
    s.close()
    assert st["checkpoints"] == 1 and st["last_checkpoint_rows"] == n and st["wal_records"] == 0
    csn, tables = read_checkpoint(os.path.join(d, "checkpoint.dat"))
    assert csn == 1
    assert tables == [(SCHEMA, ["v"], rows_t), (U, [], [])]
    assert oct(os.stat(os.path.join(d, "checkpoint.dat")).st_mode & 0o777) == "0o600"


def frames(path):
    data = open(path, "rb").read()
    assert data[:8] == b"AEROCKP1"
    pos, out = 8, []
    while pos < len(data):
        length, crc = struct.unpack_from("<II", data, pos)
        body = data[pos + 8:pos + 8 + length]
        assert crc == zlib.crc32(body, zlib.crc32(data[pos:pos + 4]))
        out.append((pos, msgpack.unpackb(body)))
        pos += 8 + length
    return out


def make_checkpoint(d, rows=5000):
    s, _ = open_storage(d)
    s.log(3, []).wait()
    s.checkpoint(3, [(SCHEMA, ["v"], iter((f"k{i}", i % 50) for i in range(rows)))])
    s.close()


def test_format_matches_the_documented_layout(tmp_path):
    d = str(tmp_path / "db")
    make_checkpoint(d)
    fr = frames(os.path.join(d, "checkpoint.dat"))
    assert fr[0][1] == ["checkpoint", 1, 3, 1]
    assert fr[1][1] == ["table", SCHEMA, ["v"]]
    assert [f[1][0] for f in fr[2:-1]] == ["rows"] * 3
    assert sum(len(f[1][1]) for f in fr[2:-1]) == 5000
    assert fr[-1][1] == ["end", [5000]]


@pytest.mark.parametrize("where", ["magic", "header", "table", "rows", "end", "length"])
def test_damage_is_corrupt_with_the_frame_offset(tmp_path, where):
    d = str(tmp_path / "db")
    make_checkpoint(d)
    path = os.path.join(d, "checkpoint.dat")
    fr = frames(path)
    at = {"magic": (0, 3), "header": (fr[0][0], 12), "table": (fr[1][0], 20),
          "rows": (fr[3][0], 500), "end": (fr[-1][0], 9), "length": (fr[2][0], 1)}[where]
    with open(path, "r+b") as f:
        f.seek(at[0] + at[1])
        b = f.read(1)[0]
        f.seek(at[0] + at[1])
        f.write(bytes([b ^ 0x04]))
    with pytest.raises(CorruptError) as ei:
        open_storage(d)
    assert ei.value.path == path and ei.value.offset == at[0]


@pytest.mark.parametrize("how", ["truncate", "append", "short"])
def test_truncated_or_extended_checkpoint_is_corrupt(tmp_path, how):
    d = str(tmp_path / "db")
    make_checkpoint(d)
    path = os.path.join(d, "checkpoint.dat")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        if how == "truncate":
            f.truncate(size - 10)
        elif how == "short":
            f.truncate(5)
        else:
            f.seek(size)
            f.write(b"\0")
    with pytest.raises(CorruptError):
        open_storage(d)


def test_checkpoint_cuts_the_log_and_recovery_replays_only_later_commits(tmp_path):
    d = str(tmp_path / "db")
    m = Model(20)
    s, _ = open_storage(d)
    for csn, ops in m.commits[:12]:
        s.log(csn, ops).wait()
    before = s.stats()["wal_bytes"]
    s.checkpoint(8, m.tables_at(8))
    st = s.stats()
    assert st["wal_records"] == 4 and st["wal_bytes"] < before
    for csn, ops in m.commits[12:]:
        s.log(csn, ops).wait()
    assert s.checkpoint(7, m.tables_at(7)) == len(m.states[7]["T"])  # raced: not written
    assert s.stats()["last_checkpoint_csn"] == 8
    s.close()
    s, rec = open_storage(d)
    assert rec.checkpoint_csn == 8 and rec.last_csn == 20
    assert state_of(rec) == m.states[20]
    s.close()


def test_checkpoint_while_commits_continue(tmp_path):
    d = str(tmp_path / "db")
    s, _ = open_storage(d)
    lock = threading.Lock()
    csn = [0]
    acked = []
    stop = threading.Event()

    def committer():
        while not stop.is_set():
            with lock:
                csn[0] += 1
                t = s.log(csn[0], [("put", "T", f"c{csn[0]}", (f"c{csn[0]}", 1))], acked.append)
            t.wait()

    s.log(1, [("put", "T", "c1", ("c1", 1))]).wait()
    csn[0] = 1
    threads = [threading.Thread(target=committer, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        while len(acked) < 50:
            threading.Event().wait(0.005)
        with lock:
            at = csn[0]
        # The snapshot at ``at``; commits after it keep arriving during the checkpoint.
        big = [(f"r{i}", i % 100) for i in range(30000)]
        s.checkpoint(at, [(SCHEMA, ["v"], iter(big + [(f"c{c}", 1) for c in range(1, at + 1)]))])
        n = len(acked)
        while len(acked) < n + 50:
            threading.Event().wait(0.005)
    finally:
        stop.set()
        for t in threads:
            t.join()
    s.close()
    s, rec = open_storage(d)
    got = state_of(rec)["T"]
    assert rec.checkpoint_csn == at
    assert {f"c{c}" for c in acked} | {"c1"} <= set(got)
    assert len(got) == 30000 + max(acked)
    s.close()


def checkpoint_child(d, m, crash_step):
    """In a forked child: open, checkpoint at 12 while the log holds 1..15, crash at a step."""
    pid = os.fork()
    if pid == 0:
        try:
            io = FaultyIO()
            s, rec = open_storage(d, io)
            list(rec.records)
            io.crash_at(crash_step, exit_code=42)
            s.checkpoint(12, m.tables_at(12))
            os._exit(0)
        except BaseException:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_crash_at_every_step_of_a_checkpoint_recovers_the_same_state(tmp_path):
    m = Model(15)
    src = str(tmp_path / "src")
    s, _ = open_storage(src)
    for csn, ops in m.commits[:6]:
        s.log(csn, ops).wait()
    s.checkpoint(5, m.tables_at(5))  # an older checkpoint exists
    for csn, ops in m.commits[6:]:
        s.log(csn, ops).wait()
    s.close()
    # Count the mutating steps: opening is the same in every run, then the checkpoint.
    io = FaultyIO()
    probe = str(tmp_path / "probe")
    shutil.copytree(src, probe)
    s, rec = open_storage(probe, io)
    list(rec.records)
    first = len(io.calls) + 1
    s.checkpoint(12, m.tables_at(12))
    steps = [c[0] for c in io.calls[first - 1:]]
    s.close()
    assert steps[:2] == ["open", "write"] and "rename" in steps and steps[-1] == "fsync_dir"
    outcomes = set()
    for k in range(first, first + len(steps) + 1):
        d = str(tmp_path / f"crash{k}")
        shutil.copytree(src, d)
        code = checkpoint_child(d, m, k)
        assert code == (0 if k == first + len(steps) else 42), (k, code)
        s, rec = open_storage(d)
        outcomes.add(rec.checkpoint_csn)
        assert state_of(rec) == m.states[15], f"crash before step {k - first + 1}"
        assert rec.last_csn == 15
        s.close()
        assert not [f for f in os.listdir(d) if f.endswith(".tmp")]
        # and recovery is repeatable
        s, rec = open_storage(d)
        assert state_of(rec) == m.states[15]
        s.close()
        shutil.rmtree(d)
    assert outcomes == {5, 12}


def test_a_failing_row_iterator_leaves_no_temp_file(tmp_path):
    d = str(tmp_path / "db")
    s, _ = open_storage(d)
    s.log(1, []).wait()

    def rows():
        yield ("a", 1)
        raise KeyError("engine bug")

    with pytest.raises(KeyError):
        s.checkpoint(1, [(SCHEMA, [], rows())])
    assert sorted(os.listdir(d)) == ["lock", "wal.log"]
    s.log(2, []).wait()
    s.close()


@pytest.mark.parametrize("sync", ["on", "off"])
def test_repeated_checkpoints_while_committing_keep_the_log_index_right(tmp_path, sync):
    """Many cuts while commits flow: the writer's frame index must match the file."""
    d = str(tmp_path / "db")
    cfg = Config()
    cfg.set("aerostore.synchronous_commit", sync)
    cfg.set("aerostore.wal_flush_delay_ms", 2)
    s = DirectoryStorage(d, cfg)
    s.recover()
    lock = threading.Lock()
    csn = [0]
    model: dict = {}
    stop = threading.Event()

    def committer(k):
        while not stop.is_set():
            with lock:
                csn[0] += 1
                c = csn[0]
                key = f"k{c % 50}"
                model[key] = (key, c % 100)
                t = s.log(c, [("put", "T", key, (key, c % 100))])
            if sync == "on":
                t.wait()

    threads = [threading.Thread(target=committer, args=(k,), daemon=True) for k in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(8):
            threading.Event().wait(0.02)
            with lock:  # a consistent snapshot of the model at a CSN
                at, snap = csn[0], dict(model)
            s.checkpoint(at, [(SCHEMA, ["v"], iter(snap.values()))])
            # (a scan of the live log may see a write in progress as a torn tail)
            assert walscan.scan(os.path.join(d, "wal.log")).base_csn == at
    finally:
        stop.set()
        for t in threads:
            t.join()
    s.log(csn[0] + 1, []).wait()  # flushes anything still pending
    csn[0] += 1
    st = s.stats()
    wscan = walscan.scan(os.path.join(d, "wal.log"))
    assert wscan.torn == 0 and st["durable_csn"] == csn[0]
    assert (st["wal_bytes"], st["wal_records"], st["wal_frames"]) == (wscan.end, wscan.commits, len(wscan.frame_ends))
    assert list(wscan.frame_last) == list(s._writer._frame_last)
    assert list(wscan.frame_ends) == list(s._writer._frame_ends)
    s.close()
    s, rec = open_storage(d)
    assert state_of(rec)["T"] == model and rec.last_csn == csn[0]
    st = s.stats()
    assert (st["wal_bytes"], st["wal_records"], st["wal_frames"]) == (wscan.end, wscan.commits, len(wscan.frame_ends))
    s.close()


def test_a_checkpoint_with_nothing_new_is_not_rewritten_but_finishes_a_missed_cut(tmp_path):
    d = str(tmp_path / "db")
    io = FaultyIO()
    s, _ = open_storage(d, io)
    m = Model(5)
    for csn, ops in m.commits:
        s.log(csn, ops).wait()
    io.fail("open", nth=2)  # the checkpoint is written; opening the log copy fails
    with pytest.raises(Exception):
        s.checkpoint(5, m.tables_at(5))
    assert walscan.scan(os.path.join(d, "wal.log")).base_csn == 0
    mtime = os.stat(os.path.join(d, "checkpoint.dat")).st_mtime_ns
    assert s.checkpoint(5, m.tables_at(5)) == len(m.states[5]["T"])
    assert s.stats()["checkpoints"] == 1
    assert os.stat(os.path.join(d, "checkpoint.dat")).st_mtime_ns == mtime
    assert walscan.scan(os.path.join(d, "wal.log")).base_csn == 5
    s.close()
    s, rec = open_storage(d)
    assert state_of(rec) == m.states[5] and rec.checkpoint_csn == 5
    s.close()
