"""Issue 10, items 1 and 2: background threads that fail never die silently
or strand a waiter, a log removed or replaced under a running store turns it
read-only, and checkpoint failures say truthfully whether it still is writable.

Every call that could hang runs in a helper thread joined with a timeout, so a
regression fails the test instead of hanging the suite.  No timing asserts.
"""

import errno
import os
import shutil
import threading
import time

import pytest

import aerostore
from aerostore import FlightState
from aerostore.config import Config
from aerostore.database import _Checkpointer
from aerostore.errors import ReadOnlyError, StorageIOError
from aerostore.storage import DirectoryStorage, walwriter
from aerostore.ttl import TTLSweeper
from faultyio import FaultyIO
from conftest import within

TIMEOUT = 20.0


def row(key, updated_at=5):
    return (key, 1.0, 2.0, 3, 4, updated_at)


def wait_for(cond, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.005)


def keys(path):
    db = aerostore.open(path)
    try:
        return db.table("FlightState").query().keys()
    finally:
        db.close()


# -- 1. the WAL writer thread ---------------------------------------------------------------

def test_writer_dying_in_its_wait_keeps_acknowledged_commits_and_stops_loudly(tmp_path, monkeypatch):
    """The reported failure, injected past the range check: the writer's wait
    overflows.  The acknowledged (synchronous_commit off) commit is written
    anyway, the store turns read-only with the reason in stats, and neither
    checkpoint nor close hangs."""
    d = str(tmp_path / "db")
    db = aerostore.open(d)
    t = db.create_table(FlightState)
    db.set_config("aerostore.synchronous_commit", "off")
    monkeypatch.setattr(db._storage._writer, "_settings", lambda: (False, 10 ** 13))
    t.upsert(row("A"))                              # acknowledged; the writer then dies
    wait_for(lambda: db.stats()["readonly"])
    reason = db.stats()["read_only_reason"]
    assert "OverflowError" in reason and "read-only" in reason
    with pytest.raises(ReadOnlyError) as ei:
        t.upsert(row("B"))
    assert "OverflowError" in str(ei.value)
    with pytest.raises(ReadOnlyError):
        within(db.checkpoint)
    within(db.close)
    monkeypatch.undo()
    assert keys(d) == ["A"]


@pytest.fixture
def writer_fault(monkeypatch):
    """``fail[0]``: how many more frames the WAL writer *thread* fails to build
    (a bug in its loop); committers leading their own flush are unaffected."""
    fail = [0]
    real = walwriter.build_frames

    def build_frames(records):
        if fail[0] and threading.current_thread().name == "aerostore-wal":
            fail[0] -= 1
            raise RuntimeError("injected writer fault")
        return real(records)

    monkeypatch.setattr(walwriter, "build_frames", build_frames)
    return fail


def test_writer_fault_writes_the_acknowledged_then_stops(tmp_path, writer_fault):
    d = str(tmp_path / "db")
    db = aerostore.open(d, synchronous_commit=False, wal_flush_delay_ms=1)
    t = db.create_table(FlightState)
    t.upsert(row("A"))
    wait_for(lambda: db.stats()["durable_csn"] >= db.stats()["csn"])
    writer_fault[0] = 1
    t.upsert_many([row("B"), row("C")])             # acknowledged; its flush meets the fault
    wait_for(lambda: db.stats()["readonly"])
    assert "RuntimeError: injected writer fault" in db.stats()["read_only_reason"]
    wait_for(lambda: db.stats()["durable_csn"] == db.stats()["csn"])  # the last-gasp flush
    with pytest.raises(ReadOnlyError) as ei:
        t.upsert(row("D"))
    assert ei.value.code == ("AEROSTORE", "IO", "READONLY") and "injected" in str(ei.value)
    with pytest.raises(ReadOnlyError):
        within(db.checkpoint)
    within(db.close)
    assert keys(d) == ["A", "B", "C"]


def test_writer_fault_that_persists_fails_waiters_instead_of_stranding_them(tmp_path, writer_fault):
    d = str(tmp_path / "db")
    cfg = Config(synchronous_commit=False, wal_flush_delay_ms=1)
    s = DirectoryStorage(d, cfg)
    s.recover()
    s.log(1, []).wait()
    writer_fault[0] = 2                             # the commit's flush and the last gasp
    ticket = s.log(2, [("del", "T", "x")])
    wait_for(lambda: s.stats()["wal_failed"])
    with pytest.raises(StorageIOError) as ei:
        within(ticket.wait)
    assert ei.value.code == ("AEROSTORE", "IO", "INTERNAL")
    with pytest.raises(ReadOnlyError):
        s.log(3, [])
    with pytest.raises(ReadOnlyError):
        within(s.checkpoint, 1, [])
    within(s.close)
    s = DirectoryStorage(d, Config())
    assert [c for c, _ in s.recover().records] == [1]   # nothing reported failed comes back
    s.close()


def test_a_fault_in_a_committer_leading_its_flush_is_typed_and_stops_the_log(tmp_path, monkeypatch):
    d = str(tmp_path / "db")
    db = aerostore.open(d)
    t = db.create_table(FlightState)
    t.upsert(row("A"))
    real = walwriter.build_frames
    fail = [1]

    def build_frames(records):
        if fail[0]:
            fail[0] -= 1
            raise RuntimeError("injected leader fault")
        return real(records)

    monkeypatch.setattr(walwriter, "build_frames", build_frames)
    with pytest.raises(StorageIOError) as ei:
        within(t.upsert, row("B"))                  # this thread leads its own flush
    assert ei.value.code == ("AEROSTORE", "IO", "INTERNAL")
    assert t.get("B") is None
    with pytest.raises(ReadOnlyError):
        t.upsert(row("C"))
    within(db.close)
    monkeypatch.undo()
    assert keys(d) == ["A"]


def test_writer_fault_during_a_log_cut_fails_the_checkpoint_not_hangs_it(tmp_path, monkeypatch):
    d = str(tmp_path / "db")
    db = aerostore.open(d)
    t = db.create_table(FlightState)
    t.upsert_many([row(f"K{i}") for i in range(10)])

    def broken(self, job):
        raise RuntimeError("injected cut fault")

    monkeypatch.setattr(walwriter.WalWriter, "_finish_cut", broken)
    with pytest.raises(ReadOnlyError) as ei:
        within(db.checkpoint)
    assert "injected cut fault" in str(ei.value)
    assert "injected cut fault" in db.stats()["read_only_reason"]
    with pytest.raises(ReadOnlyError):
        t.upsert(row("X"))
    within(db.close)
    monkeypatch.undo()
    assert keys(d) == [f"K{i}" for i in range(10)]
    assert not os.path.exists(os.path.join(d, "wal.log.tmp"))


# -- 1. the TTL sweeper and the checkpointer restart -------------------------------------------

def test_ttl_sweeper_reports_a_failed_pass_and_sweeps_again(tmp_path, monkeypatch):
    fail = [1]
    real = TTLSweeper._tables

    def tables(self):
        if fail[0]:
            fail[0] -= 1
            raise RuntimeError("injected sweep fault")
        return real(self)

    monkeypatch.setattr(TTLSweeper, "_tables", tables)
    db = aerostore.open(str(tmp_path / "db"))
    try:
        t = db.create_table(FlightState)
        t.upsert(row("OLD", updated_at=1000))
        db.set_config("aerostore.ttl_sweep_interval_ms", 5)
        db.set_config("aerostore.ttl_secs", 60)
        wait_for(lambda: t.get("OLD") is None)      # a later pass did the work
        s = db.stats()
        assert s["ttl_errors"] == 1 and "injected sweep fault" in s["ttl_last_error"]
        assert db.ttl.running
    finally:
        within(db.close)


def test_ttl_sweeper_loop_failing_in_its_wait_restarts(tmp_path):
    """The reported failure (the wait overflowing) injected past the range check."""
    db = aerostore.open(str(tmp_path / "db"))
    try:
        t = db.create_table(FlightState)
        sweeper = db.ttl
        real = sweeper._wake

        class FlakyCondition:
            failures = 1

            def wait(self, timeout=None):
                if self.failures and threading.current_thread().name == "aerostore-ttl":
                    self.failures -= 1
                    raise OverflowError("timestamp out of range")
                return real.wait(timeout)

            def notify_all(self):
                real.notify_all()

        sweeper._wake = FlakyCondition()
        db.set_config("aerostore.ttl_sweep_interval_ms", 5)
        db.set_config("aerostore.ttl_secs", 60)
        wait_for(lambda: sweeper.errors == 1)
        t.upsert(row("OLD", updated_at=1000))
        wait_for(lambda: t.get("OLD") is None)      # the loop went on after the failure
        assert sweeper.running and isinstance(sweeper.last_error, OverflowError)
        assert "OverflowError" in db.stats()["ttl_last_error"]
    finally:
        within(db.close)


def test_checkpointer_reports_a_failed_checkpoint_and_tries_again(tmp_path, monkeypatch):
    monkeypatch.setattr(_Checkpointer, "POLL_SECS", 0.01)
    fail = [1]
    real = aerostore.Database.checkpoint

    def checkpoint(self):
        if fail[0] and threading.current_thread().name == "aerostore-checkpointer":
            fail[0] -= 1
            raise RuntimeError("injected checkpoint fault")
        return real(self)

    monkeypatch.setattr(aerostore.Database, "checkpoint", checkpoint)
    db = aerostore.open(str(tmp_path / "db"), checkpoint_interval_secs=1)
    try:
        db.create_table(FlightState).upsert(row("A"))
        wait_for(lambda: db.stats()["checkpoints"] >= 1)
        s = db.stats()
        assert s["checkpoint_errors"] == 1
        assert s["checkpoint_last_error"] == "RuntimeError: injected checkpoint fault"
        assert not s["readonly"]
    finally:
        within(db.close)


# -- 2. the log removed or replaced under a running store --------------------------------------

def test_removed_log_then_checkpoint_turns_the_store_read_only(tmp_path):
    """The reported repro: delete wal.log, then checkpoint_now."""
    d = str(tmp_path / "db")
    db = aerostore.open(d)
    t = db.create_table(FlightState)
    t.upsert(row("A"))
    os.unlink(os.path.join(d, "wal.log"))
    with pytest.raises(StorageIOError) as ei:
        within(db.checkpoint)
    assert ei.value.code == ("AEROSTORE", "IO", "ENOENT")
    assert "now read-only" in str(ei.value)
    s = db.stats()
    assert s["readonly"] == 1 and "removed" in s["read_only_reason"]
    with pytest.raises(ReadOnlyError) as ro:
        t.upsert(row("B"))
    assert "removed" in str(ro.value)
    within(db.close)
    assert keys(d) == ["A"]                         # the checkpoint holds it


def test_removed_log_fails_the_next_commit_and_close_saves_the_rest(tmp_path):
    d = str(tmp_path / "db")
    db = aerostore.open(d)
    t = db.create_table(FlightState)
    t.upsert(row("A"))
    os.unlink(os.path.join(d, "wal.log"))
    with pytest.raises(StorageIOError) as ei:
        t.upsert(row("B"))
    assert not isinstance(ei.value, ReadOnlyError)
    assert ei.value.code == ("AEROSTORE", "IO", "ENOENT")
    assert t.get("B") is None                       # not acknowledged, not visible
    with pytest.raises(ReadOnlyError):
        t.upsert(row("C"))
    within(db.close)                                # writes a checkpoint: A lives only in memory
    assert keys(d) == ["A"]


def test_replaced_log_is_noticed_by_the_next_flush(tmp_path):
    d = str(tmp_path / "db")
    db = aerostore.open(d)
    t = db.create_table(FlightState)
    t.upsert(row("A"))
    log = os.path.join(d, "wal.log")
    shutil.copyfile(log, log + ".copy")
    os.replace(log + ".copy", log)                  # same bytes, another file
    with pytest.raises(StorageIOError) as ei:
        t.upsert(row("B"))
    assert ei.value.code == ("AEROSTORE", "IO", "ESTALE")
    assert "replaced" in db.stats()["read_only_reason"]
    within(db.close)
    assert keys(d) == ["A"]


def test_removed_log_with_synchronous_commit_off_loses_nothing_acknowledged(tmp_path):
    d = str(tmp_path / "db")
    db = aerostore.open(d, synchronous_commit=False, wal_flush_delay_ms=1)
    t = db.create_table(FlightState)
    t.upsert(row("A"))
    wait_for(lambda: db.stats()["durable_csn"] >= db.stats()["csn"])
    os.unlink(os.path.join(d, "wal.log"))
    t.upsert(row("B"))                              # acknowledged at once; its flush finds no log
    wait_for(lambda: db.stats()["readonly"])
    with pytest.raises(ReadOnlyError):
        t.upsert(row("C"))
    within(db.close)
    assert keys(d) == ["A", "B"]


# -- 2. checkpoint failures say whether the store is still writable ----------------------------

@pytest.mark.parametrize("op,nth", [
    ("open", 1), ("write", 1), ("fdatasync", 1), ("rename", 1), ("fsync_dir", 1),   # checkpoint.dat
    ("open", 2), ("write", 2), ("fdatasync", 2), ("rename", 2),                     # the log cut
    ("fsync_dir", 2)])                                                              # after the cut's rename
def test_a_checkpoint_failure_message_matches_what_the_store_does(tmp_path, op, nth):
    d = str(tmp_path / "db")
    io = FaultyIO()
    s = DirectoryStorage(d, Config(), io=io)
    s.recover()
    for csn in range(1, 6):
        s.log(csn, [("del", "T", str(csn))]).wait()
    io.fail(op, nth=nth, err=errno.ENOSPC)
    with pytest.raises(StorageIOError) as ei:
        within(s.checkpoint, 3, [({"name": "T"}, [], iter([("a",)] * 10))])
    says_read_only = "read-only" in str(ei.value)
    try:
        s.log(6, []).wait()
        writable = True
    except ReadOnlyError:
        writable = False
    assert says_read_only == (not writable), str(ei.value)
    assert writable == ((op, nth) != ("fsync_dir", 2))
    if writable:
        # nth 1 failed writing checkpoint.dat, nth 2 cutting the log: either way
        # the log is as it was, and the cut's message also says the store stays writable
        assert "the log is intact" in str(ei.value)
        assert ("the store stays writable" in str(ei.value)) == (nth == 2)
    s.close()
    s = DirectoryStorage(d, Config())
    rec = s.recover()
    assert max([rec.checkpoint_csn] + [c for c, _ in rec.records]) == (6 if writable else 5)
    s.close()
