"""Checkpoints: format, damage detection, the log cut, crashes at every step."""

import os
import shutil
import struct
import threading
import zlib

import msgpack
import numpy as np
import pytest

from aerostore.config import Config
from aerostore.database import index_entries
from aerostore.errors import CorruptError
from aerostore.schema import Schema
from aerostore.storage import DirectoryStorage, checkpoint, walscan
from aerostore.storage.checkpoint import read_checkpoint
from aerostore.storage.framing import frame
from faultyio import FaultyIO
from test_wal import replay

SCHEMA = {"name": "T", "fields": [{"name": "k", "kind": "str", "aliases": ["key"], "index": False,
                                   "nullable": False, "lo": None, "hi": None, "key": True},
                                  {"name": "v", "kind": "int", "aliases": [], "index": True,
                                   "nullable": True, "lo": 0, "hi": 100, "key": False}],
          "indexes": ["v"]}
U = dict(SCHEMA, name="U")
ENTRIES = index_entries(Schema.from_dict(SCHEMA))     # the engine's index arrays of T


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


def test_round_trip_many_rows_and_tables(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "SLICE_ROWS", 1000)     # several slices, several chunks each
    monkeypatch.setattr(checkpoint, "CHUNK_ROWS", 300)
    d = str(tmp_path / "db")
    s, _ = open_storage(d)
    rows_t = [(f"k{i}", i % 101 if i % 3 else None) for i in range(2 * 1000 + 17)]
    s.log(1, []).wait()
    n = s.checkpoint(1, [(SCHEMA, ["v"], iter(rows_t), ENTRIES), (U, [], iter([]))])
    assert n == len(rows_t)
    st = s.stats()
    s.close()
    assert st["checkpoints"] == 1 and st["last_checkpoint_rows"] == n and st["wal_records"] == 0
    csn, tables = read_checkpoint(os.path.join(d, "checkpoint.dat"))
    assert csn == 1
    assert [(t.schema, t.index_fields, t.rows) for t in tables] == [(SCHEMA, ["v"], rows_t), (U, [], [])]
    t = tables[0]
    assert t.n == len(rows_t) and t.columns[0] == [r[0] for r in rows_t]
    assert t.columns[1].dtype == np.int16 and list(t.nulls[1]) == [r[1] is None for r in rows_t]
    want = sorted((v << 32) | i for i, (_, v) in enumerate(rows_t) if v is not None)
    assert t.index_arrays["v"].tolist() == want
    assert tables[1].n == 0 and [len(c) for c in tables[1].columns] == [0, 0]
    assert [kind for _, kind, _, _ in frames(os.path.join(d, "checkpoint.dat"))].count("section") == 3 * 2 + 2
    assert oct(os.stat(os.path.join(d, "checkpoint.dat")).st_mode & 0o777) == "0o600"


def frames(path):
    """``(offset, kind, payload, name)`` of every frame, each checksum checked: kind
    "record" (payload decoded) or "section" (raw bytes, ``name`` the table and
    field or index and slice it belongs to)."""
    data = open(path, "rb").read()
    assert data[:8] == b"AEROCKP1"
    pos, out = 8, []
    todo = []                                   # names of the sections that follow
    table = fields = None
    slices = 0
    while pos < len(data):
        length, crc = struct.unpack_from("<II", data, pos)
        body = data[pos + 8:pos + 8 + length]
        assert crc == zlib.crc32(body, zlib.crc32(data[pos:pos + 4]))
        if todo:
            out.append((pos, "section", body, todo.pop(0)))
        else:
            rec = msgpack.unpackb(body)
            out.append((pos, "record", rec, None))
            if rec[0] == "table":
                table, fields, slices = rec[1]["name"], [f["name"] for f in rec[1].get("fields", ())], 0
            elif rec[0] == "slice":
                todo = [(table, f"field {f!r} slice {slices}") for f in fields]
                slices += 1
            elif rec[0] == "index":
                todo = [(table, f"index {rec[1]!r} slice {j}") for j in range(rec[4])]
        pos += 8 + length
    assert not todo
    return out


def make_checkpoint(d, rows=5000, index=True):
    s, _ = open_storage(d)
    s.log(3, []).wait()
    t = (SCHEMA, ["v"], iter((f"k{i}", i % 50 if i % 7 else None) for i in range(rows)))
    s.checkpoint(3, [t + (ENTRIES,) if index else t, (U, [], iter([("u1", 7), ("u\u00e9", None)]))])
    s.close()


def test_format_matches_the_documented_layout(tmp_path):
    d = str(tmp_path / "db")
    s, _ = open_storage(d)
    s.log(3, []).wait()
    rows = [("a", 5), ("b\u00e9", None), ("c", 2), ("d", 5)]
    s.checkpoint(3, [(SCHEMA, ["v"], iter(rows), ENTRIES), (U, [], iter([]))])
    s.close()
    fr = frames(os.path.join(d, "checkpoint.dat"))
    assert [(kind, payload) for _, kind, payload, _ in fr] == [
        ("record", ["checkpoint", 2, 3, 2]),
        ("record", ["table", SCHEMA, ["v"], ["str", "<i2"]]),     # 0..100: the narrowest int
        ("record", ["slice", 4]),
        ("section", b"\0" + "a\nb\u00e9\nc\nd".encode()),
        ("section", b"\x01" + bytes([0b0010]) + struct.pack("<4h", 5, 0, 2, 5)),
        ("record", ["index", "v", "<i8", 3, 1]),
        ("section", struct.pack("<3q", 2 << 32 | 2, 5 << 32 | 0, 5 << 32 | 3)),
        ("record", ["table", U, [], ["str", "<i2"]]),
        ("record", ["end", [4, 0]])]


def test_strings_with_newlines_nulls_and_lone_surrogates_round_trip(tmp_path):
    """The offsets form: a value holding a newline (the schema forbids it; the format does not)."""
    d = str(tmp_path / "db")
    s, _ = open_storage(d)
    s.log(1, []).wait()
    str_schema = {"name": "S", "fields": [SCHEMA["fields"][0],
                                          dict(SCHEMA["fields"][1], name="w", kind="str", lo=None, hi=None)],
                  "indexes": []}
    rows = [("a\nb", "x"), ("\ud800", None), ("", "y\n"), ("\U0001f600", "")]
    s.checkpoint(1, [(str_schema, [], iter(rows)), (SCHEMA, [], iter([("plain", None)]))])
    s.close()
    fr = frames(os.path.join(d, "checkpoint.dat"))
    secs = [payload for _, kind, payload, _ in fr if kind == "section"]
    assert secs[0][0] == 2 and secs[1][0] == 3         # offsets form; nulls too in the second
    assert secs[2][0] == 0                             # joined form
    _, tables = read_checkpoint(os.path.join(d, "checkpoint.dat"))
    assert tables[0].rows == rows and tables[1].rows == [("plain", None)]


def test_an_opaque_schema_map_keeps_its_rows_as_records(tmp_path):
    d = str(tmp_path / "db")
    s, _ = open_storage(d)
    s.log(1, []).wait()
    rows = [("a",), ("b",)] * 3000
    s.checkpoint(1, [({"name": "T"}, [], iter(rows))])
    s.close()
    fr = frames(os.path.join(d, "checkpoint.dat"))
    assert fr[1][2] == ["table", {"name": "T"}, [], None]
    assert [p[0] for _, _, p, _ in fr[2:-1]] == ["rows"] * 3
    _, tables = read_checkpoint(os.path.join(d, "checkpoint.dat"))
    assert tables[0].rows == rows and tables[0].columns is None


def flip(path, at):
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)[0]
        f.seek(at)
        f.write(bytes([b ^ 0x04]))


@pytest.mark.parametrize("where", ["magic", "header", "table", "slice", "index", "end"])
def test_damage_to_a_record_is_corrupt_with_the_frame_offset(tmp_path, where):
    d = str(tmp_path / "db")
    make_checkpoint(d)
    path = os.path.join(d, "checkpoint.dat")
    fr = frames(path)
    recs = {p[0]: off for off, kind, p, _ in reversed(fr) if kind == "record"}
    at = (0, 3) if where == "magic" else ({"header": recs["checkpoint"]}.get(where) or recs[where], 12)
    flip(path, at[0] + at[1])
    with pytest.raises(CorruptError) as ei:
        open_storage(d)
    assert ei.value.path == path and ei.value.offset == at[0]


def sections(path):
    return [(off, len(p), name) for off, kind, p, name in frames(path) if kind == "section"]


@pytest.mark.parametrize("part", ["payload", "first byte", "last byte", "length", "crc"])
def test_a_bit_flip_in_each_section_names_that_section(tmp_path, part):
    d = str(tmp_path / "db")
    make_checkpoint(d, rows=2500)
    path = os.path.join(d, "checkpoint.dat")
    pristine = open(path, "rb").read()
    secs = sections(path)
    assert len(secs) == 2 + 1 + 2          # T: key and v, its index; U: key and v
    for off, length, (table, what) in secs:
        with open(path, "wb") as f:
            f.write(pristine)
        at = {"payload": off + 8 + length // 2, "first byte": off + 8, "last byte": off + 7 + length,
              "length": off + 1, "crc": off + 5}[part]
        flip(path, at)
        with pytest.raises(CorruptError) as ei:
            open_storage(d)
        e = ei.value
        assert e.path == path and e.offset == off, (table, what, part)
        assert f"table {table!r} {what}" in e.what, e.what
    with open(path, "wb") as f:
        f.write(pristine)
    s, rec = open_storage(d)
    assert rec.tables[0].n == 2500
    s.close()


def test_a_torn_checkpoint_is_corrupt_wherever_it_ends(tmp_path):
    d = str(tmp_path / "db")
    make_checkpoint(d, rows=3000)
    path = os.path.join(d, "checkpoint.dat")
    pristine = open(path, "rb").read()
    cuts = {0, 5, 8, 9, 12, len(pristine) - 1, len(pristine) - 9}
    for off, kind, payload, _ in frames(path):
        cuts.update((off, off + 4, off + 8, off + 8 + len(payload) // 2, off + 7 + len(payload)))
    for cut in sorted(c for c in cuts if 0 <= c < len(pristine)):
        with open(path, "wb") as f:
            f.write(pristine[:cut])
        with pytest.raises(CorruptError):
            open_storage(d)


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


def write_v1(path, csn, tables):
    """A checkpoint of format version 1, byte for byte as the version 1 writer made it
    (``tables``: ``(schema, index_fields, rows)``)."""
    def rec(obj):
        payload = msgpack.packb(obj)
        return frame(len(payload), payload)
    out = bytearray(b"AEROCKP1") + rec(("checkpoint", 1, csn, len(tables)))
    counts = []
    for schema, index_fields, rows in tables:
        out += rec(("table", schema, list(index_fields)))
        rows = list(rows)
        for i in range(0, len(rows), 2048):
            out += rec(("rows", rows[i:i + 2048]))
        counts.append(len(rows))
    out += rec(("end", counts))
    with open(path, "wb") as f:
        f.write(out)


def test_version_1_is_still_read(tmp_path):
    d = str(tmp_path / "db")
    make_checkpoint(d)
    path = os.path.join(d, "checkpoint.dat")
    _, v2 = read_checkpoint(path)
    write_v1(path, 3, [(t.schema, t.index_fields, t.rows) for t in v2])
    assert frames_v1(path)[0] == ["checkpoint", 1, 3, 2]
    csn, v1 = read_checkpoint(path)
    assert csn == 3 and [tuple(t) for t in v1] == [tuple(t) for t in v2]
    assert all(t.columns is None for t in v1) and [t.n for t in v1] == [5000, 2]
    s, rec = open_storage(d)
    assert rec.checkpoint_csn == 3 and state_of(rec)["T"] == {r[0]: r for r in v2[0].rows}
    s.close()
    flip(path, frames_v1_offsets(path)[3] + 20)      # damage in a rows frame: refused as before
    with pytest.raises(CorruptError) as ei:
        open_storage(d)
    assert ei.value.offset == frames_v1_offsets(path)[3]


def frames_v1_offsets(path):
    data = open(path, "rb").read()
    pos, out = 8, []
    while pos < len(data):
        out.append(pos)
        pos += 8 + struct.unpack_from("<I", data, pos)[0]
    return out


def frames_v1(path):
    data = open(path, "rb").read()
    return [msgpack.unpackb(data[p + 8:p + 8 + struct.unpack_from("<I", data, p)[0]])
            for p in frames_v1_offsets(path)]


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
