"""Fault injection through FaultyIO (tests/faultyio.py): nothing acknowledged is
lost, nothing is acknowledged after a failure, and the store turns read-only
(fail-stop)."""

import errno
import os
import threading
import time

import pytest

import aerostore
from aerostore import FlightState
from aerostore.config import Config
from aerostore.errors import ReadOnlyError, StorageIOError
from aerostore.storage import DirectoryStorage, fileio
from faultyio import FaultyIO


def open_storage(path, io=None):
    s = DirectoryStorage(path, Config(), io=io)
    return s, s.recover()


def committed(path):
    s, rec = open_storage(path)
    csns = [c for c, _ in rec.records]
    s.close()
    return csns


def run_commits(s, first, n, acked, failed):
    for csn in range(first, first + n):
        try:
            s.log(csn, [("del", "T", str(csn))], acked.append).wait()
        except StorageIOError as e:
            failed.append((csn, e))


@pytest.mark.parametrize("op,err,partial", [
    ("write", errno.ENOSPC, 0), ("write", errno.ENOSPC, 17), ("write", errno.EIO, 0),
    ("fdatasync", errno.EIO, 0)])
@pytest.mark.parametrize("persistent", [False, True])
def test_failure_fails_the_commit_and_stops_the_log(tmp_path, op, err, partial, persistent):
    d = str(tmp_path / "db")
    io = FaultyIO()
    s, _ = open_storage(d, io)
    io.fail(op, nth=4, err=err, persistent=persistent, partial=partial)
    acked, failed = [], []
    run_commits(s, 1, 3, acked, failed)
    with pytest.raises(StorageIOError) as ei:
        s.log(4, [("del", "T", "4")], acked.append).wait()
    assert not isinstance(ei.value, ReadOnlyError)
    assert ei.value.code == ("AEROSTORE", "IO", errno.errorcode[err])
    with pytest.raises(ReadOnlyError) as ro:  # fail-stop, even when the fault was transient
        s.log(5, [])
    assert ro.value.code == ("AEROSTORE", "IO", "READONLY")
    with pytest.raises(ReadOnlyError):
        s.checkpoint(3, [])
    assert "errno" not in s.stats()["wal_failed"] and s.stats()["wal_failed"]
    s.close()
    assert acked == [1, 2, 3]
    # The healthy disk gives back exactly what was acknowledged (the failed group
    # was cut off, so it does not come back either).
    assert committed(d) == [1, 2, 3]
    assert not [f for f in os.listdir(d) if "torn" in f]


def test_failed_group_left_on_disk_is_set_aside_as_torn(tmp_path):
    """If even the clean-up truncate fails, the partial group is a torn tail on reopen."""
    d = str(tmp_path / "db")
    io = FaultyIO()
    s, _ = open_storage(d, io)
    s.log(1, []).wait()
    io.fail("write", err=errno.ENOSPC, partial=10)
    io.fail("truncate", err=errno.EIO)
    with pytest.raises(StorageIOError):
        s.log(2, []).wait()
    s.close()
    assert committed(d) == [1]
    torn = open(os.path.join(d, "wal.log.torn-1"), "rb").read()
    assert len(torn) >= 10 and not torn[10:].strip(b"\0")


def test_concurrent_committers_nothing_acknowledged_after_the_failure(tmp_path):
    d = str(tmp_path / "db")
    io = FaultyIO()
    s, _ = open_storage(d, io)
    io.fail("fdatasync", nth=30, persistent=True)
    lock = threading.Lock()
    acked, failed, order = [], [], []
    csn = [0]

    def worker():
        for _ in range(40):
            with lock:
                csn[0] += 1
                try:
                    t = s.log(csn[0], [("del", "T", "k")], acked.append)
                except ReadOnlyError as e:
                    failed.append(e)
                    return
            try:
                t.wait()
                order.append(("ok", t.csn))
            except StorageIOError as e:
                failed.append(e)
                order.append(("fail", t.csn))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s.close()
    ok = [c for kind, c in order if kind == "ok"]
    bad = [c for kind, c in order if kind == "fail"]
    assert ok and bad and max(ok) < min(bad)
    assert sorted(acked) == acked == sorted(ok)
    assert committed(d) == acked


def test_checkpoint_failure_keeps_the_store_writable(tmp_path):
    d = str(tmp_path / "db")
    for step in ("open", "write", "fdatasync", "rename", "fsync_dir"):
        io = FaultyIO()
        s, _ = open_storage(d, io)
        base = max(committed_in(s), 0)
        s.log(base + 1, [("del", "T", "x")]).wait()
        io.fail(step, err=errno.ENOSPC)
        with pytest.raises(StorageIOError) as ei:
            s.checkpoint(base + 1, [({"name": "T"}, [], iter([("a",)] * 5000))])
        assert not isinstance(ei.value, ReadOnlyError), step
        s.log(base + 2, [("del", "T", "y")]).wait()
        s.close()
        assert not os.path.exists(os.path.join(d, "checkpoint.dat.tmp"))
        assert committed(d)[-1] == base + 2


def committed_in(s):
    return s.stats()["durable_csn"]


def test_log_cut_failure_before_rename_keeps_the_old_log(tmp_path):
    d = str(tmp_path / "db")
    io = FaultyIO()
    s, _ = open_storage(d, io)
    for csn in range(1, 6):
        s.log(csn, [("del", "T", str(csn))]).wait()
    # checkpoint: open, write, fdatasync, rename, fsync_dir; then the cut's open fails
    io.fail("open", nth=2, err=errno.EMFILE)
    with pytest.raises(StorageIOError):
        s.checkpoint(3, [])
    s.log(6, []).wait()
    s.close()
    s, rec = open_storage(d)
    assert rec.checkpoint_csn == 3 and [c for c, _ in rec.records] == [4, 5, 6]
    s.close()


def test_directory_sync_failure_after_the_log_rename_stops_the_log(tmp_path):
    d = str(tmp_path / "db")
    io = FaultyIO()
    s, _ = open_storage(d, io)
    for csn in range(1, 6):
        s.log(csn, []).wait()
    io.fail("fsync_dir", nth=2)  # the checkpoint's passes, the log cut's fails
    with pytest.raises(StorageIOError):
        s.checkpoint(4, [])
    with pytest.raises(ReadOnlyError):
        s.log(6, [])
    s.close()
    s, rec = open_storage(d)
    assert rec.checkpoint_csn == 4 and [c for c, _ in rec.records] == [5]
    s.close()


def test_engine_reports_io_errors_and_turns_read_only(tmp_path, monkeypatch):
    io = FaultyIO()
    monkeypatch.setattr(fileio, "DEFAULT", io)
    d = str(tmp_path / "db")
    db = aerostore.open(d)
    t = db.create_table(FlightState)
    t.upsert(("A", 1.0, 2.0, 3, 4, 5))
    io.fail("fdatasync", err=errno.EIO)
    with pytest.raises(StorageIOError) as ei:
        t.upsert(("B", 1.0, 2.0, 3, 4, 5))
    assert ei.value.code[:2] == ("AEROSTORE", "IO")
    assert t.get("B") is None
    with pytest.raises(ReadOnlyError):
        t.upsert(("C", 1.0, 2.0, 3, 4, 5))
    db.close()
    monkeypatch.setattr(fileio, "DEFAULT", fileio.FileIO())
    db = aerostore.open(d)
    t = db.table("FlightState")
    assert t.get("A") == ("A", 1.0, 2.0, 3, 4, 5) and t.get("B") is None and t.count() == 1
    db.close()


class InterruptingIO(fileio.FileIO):
    """An fdatasync interrupted by KeyboardInterrupt in the thread doing it."""

    armed = False

    def fdatasync(self, fd):
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt
        super().fdatasync(fd)


def test_interrupted_flush_fails_its_commits_and_stops_the_log(tmp_path):
    d = str(tmp_path / "db")
    io = InterruptingIO()
    s, _ = open_storage(d, io)
    s.log(1, []).wait()
    io.armed = True
    t = s.log(2, [])
    with pytest.raises(KeyboardInterrupt):
        t.wait()  # this thread led the flush and was interrupted in it
    with pytest.raises(StorageIOError):
        t.wait()
    with pytest.raises(ReadOnlyError):
        s.log(3, [])
    s.close()
    assert committed(d) == [1]


def test_engine_with_synchronous_commit_off_stops_after_a_failed_flush(tmp_path, monkeypatch):
    """Nobody waits, so the failure shows on the next commit; nothing acknowledged
    before the failed flush is lost."""
    io = FaultyIO()
    monkeypatch.setattr(fileio, "DEFAULT", io)
    d = str(tmp_path / "db")
    db = aerostore.open(d, synchronous_commit=False, wal_flush_delay_ms=1)
    t = db.create_table(FlightState)
    t.upsert(("A", 1.0, 2.0, 3, 4, 5))
    db.close()
    db = aerostore.open(d, synchronous_commit=False, wal_flush_delay_ms=1)
    t = db.table("FlightState")
    io.fail("fdatasync", err=errno.EIO)
    t.upsert(("B", 1.0, 2.0, 3, 4, 5))  # acknowledged at once; its flush fails
    deadline = time.monotonic() + 5
    while not db.stats()["wal_failed"] and time.monotonic() < deadline:
        time.sleep(0.005)
    with pytest.raises(ReadOnlyError):
        t.upsert(("C", 1.0, 2.0, 3, 4, 5))
    db.close()
    monkeypatch.setattr(fileio, "DEFAULT", fileio.FileIO())
    db = aerostore.open(d)
    assert db.table("FlightState").query().keys() == ["A"]
    db.close()
