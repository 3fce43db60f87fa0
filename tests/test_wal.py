"""The write-ahead log: format, group commit, torn tails, bit flips (storage level)."""

import os
import random
import shutil
import struct
import threading
import time
import zlib

import msgpack
import pytest

from aerostore.config import Config
from aerostore.errors import CorruptError, UsageError
from aerostore import storage
from aerostore.storage import DirectoryStorage, walformat, walscan, walwriter

SCHEMA = {"name": "T", "fields": [{"name": "k", "kind": "str", "aliases": [], "index": False,
                                   "nullable": False, "lo": None, "hi": None, "key": True},
                                  {"name": "v", "kind": "int", "aliases": ["val"], "index": True,
                                   "nullable": True, "lo": 0, "hi": 2 ** 64 - 1, "key": False}],
          "indexes": ["v"]}


class State(storage.Sink):
    """{table: {key: values}} and the CSNs replayed; indexes are ignored."""

    def __init__(self, tables):
        self.state = {s["name"]: {r[0]: r for r in rows} for s, _, rows in tables}
        self.csns = []

    def create_table(self, csn, table, schema):
        self.state.setdefault(table, {})

    def put(self, csn, table, key, values):
        self.state.setdefault(table, {})[key] = values

    def delete(self, csn, table, key):
        self.state[table].pop(key, None)

    def create_index(self, csn, table, field):
        pass

    def drop_index(self, csn, table, field):
        pass

    def committed(self, csn):
        self.csns.append(csn)


def replay(rec):
    """The state a recovery describes: {table: {key: values}} plus the CSNs replayed."""
    sink = State(rec.tables)
    storage.replay(rec.records, sink)
    return sink.state, sink.csns


def reopen(path, **cfg):
    s = DirectoryStorage(path, Config(**cfg))
    try:
        return s, s.recover()
    except BaseException:
        s.close()
        raise


def fill(path, n, start=1):
    """A store whose log holds commits start..start+n-1, one frame each."""
    s, _ = reopen(path)
    for csn in range(start, start + n):
        ops = [("create_table", "T", SCHEMA)] if csn == 1 else []
        ops.append(("put", "T", f"k{csn}", (f"k{csn}", csn)))
        s.log(csn, ops).wait()
    s.close()


def frame_offsets(path):
    wscan = walscan.scan(os.path.join(path, "wal.log"))
    return [walformat.HEADER_SIZE] + list(wscan.frame_ends)


def test_format_matches_the_documented_layout(tmp_path):
    d = str(tmp_path / "db")
    fill(d, 2)
    data = open(os.path.join(d, "wal.log"), "rb").read()
    magic, base, crc = struct.unpack_from("<8sQI", data, 0)
    assert (magic, base, crc) == (b"AEROWAL1", 0, zlib.crc32(data[:16]))
    pos = 20
    for csn in (1, 2):
        length, crc, count, first, last = struct.unpack_from("<IIIQQ", data, pos)
        end = pos + 28 + length
        assert crc == zlib.crc32(data[pos + 8:end], zlib.crc32(data[pos:pos + 4]))
        assert (count, first, last) == (1, csn, csn)
        commits = msgpack.unpackb(data[pos + 28:end])
        assert commits[0][0] == csn and commits[0][1][-1] == ["put", "T", f"k{csn}", [f"k{csn}", csn]]
        pos = end
    assert data[pos:] == bytes(len(data) - pos)  # the rest is preallocated zeros


def test_values_round_trip(tmp_path):
    d = str(tmp_path / "db")
    s, _ = reopen(d)
    row = ("k\udc80é", 2 ** 64 - 1, -2 ** 63, 1.5, -0.0, None, True, False, "")
    s.log(1, [("create_table", "T", SCHEMA), ("put", "T", row[0], row),
              ("create_index", "T", "v"), ("drop_index", "T", "v"), ("del", "T", "gone")]).wait()
    s.log(2, [("put", "T", "x" * 100000, tuple(range(5000)))]).wait()
    s.close()
    s, rec = reopen(d)
    commits = list(rec.records)
    assert commits[0] == (1, (("create_table", "T", SCHEMA), ("put", "T", row[0], row),
                              ("create_index", "T", "v"), ("drop_index", "T", "v"),
                              ("del", "T", "gone")))
    assert commits[1][1][0][3] == tuple(range(5000))
    assert isinstance(commits[0][1][0][2]["fields"], list) and rec.last_csn == 2
    s.close()


def test_op_records_are_written_as_the_plain_arrays():
    row = ("k", 7)
    named = [walformat.CreateTable("create_table", "T", SCHEMA), walformat.Put("put", "T", "k", row),
             walformat.CreateIndex("create_index", "T", "v"), walformat.DropIndex("drop_index", "T", "v"),
             walformat.Del("del", "T", "k")]
    plain = [("create_table", "T", SCHEMA), ("put", "T", "k", row), ("create_index", "T", "v"),
             ("drop_index", "T", "v"), ("del", "T", "k")]
    assert walformat.encode_commit(3, named) == walformat.encode_commit(3, plain)


def test_replay_refuses_an_op_it_does_not_know():
    for bad in [("put", "T", "k"), ("merge", "T", "k"), (), 5, ("del", "T", "k", "extra")]:
        with pytest.raises(CorruptError) as ei:
            storage.replay([(1, ()), (2, (("create_table", "T", SCHEMA), bad))], State([]))
        assert "commit 2: unknown operation" in str(ei.value)


def test_commits_must_come_in_csn_order(tmp_path):
    s, _ = reopen(str(tmp_path / "db"))
    s.log(5, []).wait()
    with pytest.raises(UsageError):
        s.log(5, [])
    s.close()


def test_group_commit_shares_flushes_and_acks_in_csn_order(tmp_path):
    s, _ = reopen(str(tmp_path / "db"))
    lock = threading.Lock()
    acked, errors = [], []
    state = {"csn": 0}

    def committer():
        for _ in range(150):
            with lock:  # the engine's commit lock: CSN order == submission order
                state["csn"] += 1
                t = s.log(state["csn"], [("put", "T", "k", ("k", state["csn"]))], acked.append)
            try:
                t.wait()
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

    threads = [threading.Thread(target=committer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    st = s.stats()
    s.close()
    assert not errors
    assert acked == list(range(1, 1201))
    assert st["wal_commits_flushed"] == 1200 and st["wal_flushes"] < 1200
    assert st["wal_max_batch"] > 1
    s, rec = reopen(str(tmp_path / "db"))
    assert [c for c, _ in rec.records] == list(range(1, 1201))
    s.close()


def test_synchronous_commit_off_flushes_within_the_delay(tmp_path):
    cfg = Config()
    cfg.set("aerostore.synchronous_commit", "off")
    cfg.set("aerostore.wal_flush_delay_ms", 300)
    s = DirectoryStorage(str(tmp_path / "db"), cfg)
    s.recover()
    durable = []
    t0 = time.monotonic()
    tickets = [s.log(i, [("del", "T", str(i))], durable.append) for i in range(1, 51)]
    time.sleep(0.05)
    assert durable == [] or time.monotonic() - t0 > 0.25  # the group is still growing
    while len(durable) < 50 and time.monotonic() - t0 < 5:
        time.sleep(0.005)
    assert durable == list(range(1, 51)) and all(t.done for t in tickets)
    assert s.stats()["wal_flushes"] == 1
    cfg.set("aerostore.wal_flush_delay_ms", 60000)
    cfg.set("aerostore.synchronous_commit", "on")  # a sync commit is flushed at once
    t1 = time.monotonic()
    s.log(51, []).wait()
    assert time.monotonic() - t1 < 5
    cfg.set("aerostore.synchronous_commit", "off")
    t2 = s.log(52, [])
    t2.wait()  # waiting on an asynchronous commit flushes it
    assert s.stats()["durable_csn"] == 52
    s.close()


def test_a_sync_commit_nobody_waits_for_is_flushed_anyway(tmp_path):
    s = DirectoryStorage(str(tmp_path / "db"), Config())
    s.recover()
    t = s.log(1, [])
    deadline = time.monotonic() + 5
    while not t.done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert t.done and s.stats()["durable_csn"] == 1
    s.close()


def test_close_flushes_pending_async_commits(tmp_path):
    d = str(tmp_path / "db")
    s = DirectoryStorage(d, Config(synchronous_commit="off", wal_flush_delay_ms=10000))
    s.recover()
    for i in range(1, 11):
        s.log(i, [])
    s.close()
    s, rec = reopen(d)
    assert [c for c, _ in rec.records] == list(range(1, 11))
    s.close()


def test_torn_tail_at_every_offset_of_the_last_record(tmp_path):
    src = str(tmp_path / "src")
    fill(src, 3)
    offsets = frame_offsets(src)
    last_start, size = offsets[-2], offsets[-1]
    original = open(os.path.join(src, "wal.log"), "rb").read()
    for cut in range(last_start, size):
        d = str(tmp_path / f"cut{cut}")
        shutil.copytree(src, d)
        with open(os.path.join(d, "wal.log"), "r+b") as f:
            f.truncate(cut)
        s, rec = reopen(d)
        state, csns = replay(rec)
        assert csns == [1, 2] and set(state["T"]) == {"k1", "k2"}
        assert rec.torn_bytes == cut - last_start
        torn = os.path.join(d, "wal.log.torn-1")
        assert os.path.exists(torn) == (cut > last_start)
        if cut > last_start:
            assert open(torn, "rb").read() == original[last_start:cut]
        s.log(3, [("put", "T", "new", ("new", 3))]).wait()
        s.close()
        s, rec = reopen(d)
        state, csns = replay(rec)
        assert csns == [1, 2, 3] and set(state["T"]) == {"k1", "k2", "new"}
        s.close()
        shutil.rmtree(d)


def test_zeros_after_the_log_are_free_space_and_torn_files_are_numbered(tmp_path):
    d = str(tmp_path / "db")
    fill(d, 2)
    path = os.path.join(d, "wal.log")
    with open(path, "ab") as f:
        f.write(b"\0" * 4096)
    s, rec = reopen(d)
    assert replay(rec)[1] == [1, 2] and rec.torn_bytes == 0
    s.close()
    for n in (1, 2):
        end = walscan.scan(path).end
        with open(path, "r+b") as f:  # a write that never completed, in free space
            f.seek(end)
            f.write(b"\x05" * 100)
        s, rec = reopen(d)
        assert replay(rec)[1] == list(range(1, 2 + n)) and rec.torn_bytes > 0
        s.log(2 + n, []).wait()
        s.close()
        torn = open(os.path.join(d, f"wal.log.torn-{n}"), "rb").read()
        assert torn[:100] == b"\x05" * 100 and not torn[100:].strip(b"\0")


def flip(path, offset, bit=0x10):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([b ^ bit]))


def test_bit_flips_in_each_part_of_a_record_are_detected(tmp_path):
    src = str(tmp_path / "src")
    fill(src, 3)
    offsets = frame_offsets(src)
    start, end = offsets[1], offsets[2]  # the middle frame
    parts = {"length": range(start, start + 4), "crc": range(start + 4, start + 8),
             "count": range(start + 8, start + 12), "first_csn": range(start + 12, start + 20),
             "last_csn": range(start + 20, start + 28), "payload": range(start + 28, end)}
    for part, rng in parts.items():
        for off in rng:
            for bit in (0x01, 0x80):
                d = str(tmp_path / "d")
                shutil.copytree(src, d)
                flip(os.path.join(d, "wal.log"), off, bit)
                with pytest.raises(CorruptError) as ei:
                    reopen(d)
                assert ei.value.path.endswith("wal.log") and ei.value.offset == start, part
                assert ei.value.code[:2] == ("AEROSTORE", "CORRUPT")
                shutil.rmtree(d)


def test_bit_flip_in_the_header_is_corrupt(tmp_path):
    d = str(tmp_path / "db")
    fill(d, 1)
    for off in range(0, 20):
        flip(os.path.join(d, "wal.log"), off)
        with pytest.raises(CorruptError) as ei:
            reopen(d)
        assert ei.value.offset == 0
        flip(os.path.join(d, "wal.log"), off)


def test_bit_flip_in_the_last_record_is_set_aside_as_torn(tmp_path):
    d = str(tmp_path / "db")
    fill(d, 3)
    offsets = frame_offsets(d)
    flip(os.path.join(d, "wal.log"), offsets[-2] + 40)
    s, rec = reopen(d)
    assert replay(rec)[1] == [1, 2] and os.path.exists(os.path.join(d, "wal.log.torn-1"))
    s.close()


def test_wal_shorter_than_its_header_is_corrupt(tmp_path):
    d = str(tmp_path / "db")
    fill(d, 1)
    with open(os.path.join(d, "wal.log"), "r+b") as f:
        f.truncate(10)
    with pytest.raises(CorruptError):
        reopen(d)


def test_a_valid_frame_far_after_a_bad_one_is_found(tmp_path):
    """The search for valid frames after a bad one covers megabytes of garbage."""
    d = str(tmp_path / "db")
    fill(d, 3)
    path = os.path.join(d, "wal.log")
    data = open(path, "rb").read()
    o = frame_offsets(d)
    bad = bytearray(data[o[1]:o[2]])
    bad[0] ^= 0x40  # a length that points nowhere useful
    garbage = random.Random(7).randbytes(4 * 2 ** 20 + 12345)
    with open(path, "wb") as f:
        f.write(data[:o[1]] + bytes(bad) + garbage + data[o[2]:])
    with pytest.raises(CorruptError) as ei:
        reopen(d)
    assert ei.value.offset == o[1] and "valid frame follows" in ei.value.what
    with open(path, "wb") as f:  # without the later frame it is a torn tail
        f.write(data[:o[1]] + bytes(bad) + garbage)
    s, rec = reopen(d)
    assert replay(rec)[1] == [1] and rec.torn_bytes == len(bad) + len(garbage)
    s.close()


def test_asynchronous_commits_flush_themselves_when_the_writer_is_starved(tmp_path, monkeypatch):
    """A committer that never waits can keep the writer thread off the GIL; the
    commit that finds the oldest pending record past wal_flush_delay_ms flushes."""
    monkeypatch.setattr(walwriter.WalWriter, "_run", lambda self: None)  # a writer that never runs
    cfg = Config()
    cfg.set("aerostore.synchronous_commit", "off")
    cfg.set("aerostore.wal_flush_delay_ms", 20)
    s = DirectoryStorage(str(tmp_path / "db"), cfg)
    s.recover()
    durable = []
    s.log(1, [("del", "T", "a")], durable.append)
    assert durable == []                 # within the window: left for the writer
    time.sleep(0.03)                     # the window passes with no flush
    s.log(2, [("del", "T", "b")], durable.append)
    assert durable == [1, 2]             # flushed by the second committer, in order
    assert s.stats()["durable_csn"] == 2
    monkeypatch.undo()
    s.close()
