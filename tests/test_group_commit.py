"""Group commit: commits queued during a flush share the next fdatasync, and a
commit's waiter can be told instead of blocking (``Ticket.defer``, the path the
Tcl shim waits on without the GIL).  Counted with a file layer whose
fdatasync can be held; no timings."""

from __future__ import annotations

import errno
import threading

import pytest

from aerostore.config import Config
from aerostore.errors import StorageIOError
from aerostore.storage import DirectoryStorage, fileio, walwriter


class GatedIO(fileio.FileIO):
    """Counts fdatasyncs; ``hold()`` makes the next one wait for ``release()``
    (and fail with ``err`` if given)."""

    def __init__(self):
        self.syncs = 0
        self._held = False
        self.entered = threading.Event()
        self._go = threading.Event()
        self._err = None

    def hold(self):
        self._held = True
        self.entered.clear()
        self._go.clear()

    def release(self, err=None):
        self._err = err
        self._go.set()

    def fdatasync(self, fd):
        self.syncs += 1
        if self._held:
            self._held = False
            self.entered.set()
            assert self._go.wait(20), "the test never released the held fdatasync"
            if self._err is not None:
                raise OSError(self._err, "injected")
        super().fdatasync(fd)


def _put(csn):
    return [("put", "T", f"k{csn}", (f"k{csn}", csn))]


@pytest.fixture
def gated(tmp_path):
    io = GatedIO()
    s = DirectoryStorage(str(tmp_path / "db"), Config(), io=io)
    s.recover()
    yield s, io
    s.close()


def _hold_a_flush(s, io, csn=1, published=None):
    """Commit ``csn`` and lead its flush in a thread, stopped inside fdatasync;
    returns the thread (it ends once the flush is released) and a list that
    gets what its wait raised."""
    io.hold()
    t = s.log(csn, _put(csn), None if published is None else published.append)
    raised = []

    def lead():
        try:
            t.wait()
        except StorageIOError as e:
            raised.append(e)

    th = threading.Thread(target=lead)
    th.start()
    assert io.entered.wait(20)
    return th, raised


def test_commits_queued_during_a_flush_share_the_next_fdatasync(gated):
    s, io = gated
    leader, _ = _hold_a_flush(s, io)
    tickets = [s.log(c, _put(c)) for c in range(2, 9)]   # 7 commits while the flush runs
    before = io.syncs
    io.release()
    for t in tickets:
        t.wait()
    leader.join()
    assert io.syncs - before == 1                         # the 7 shared one fdatasync
    st = s.stats()
    assert st["wal_flushes"] == 2 and st["wal_commits_flushed"] == 8 and st["wal_max_batch"] == 7


def test_a_deferred_waiter_is_told_after_the_commit_is_durable_and_published(gated):
    s, io = gated
    published, told = [], []
    before = io.syncs
    leader, _ = _hold_a_flush(s, io, 1, published)
    t = s.log(2, _put(2), published.append)

    def waker(csn, ok):
        told.append((csn, ok, list(published), t.done))

    assert t.defer(waker) is True        # a flush runs: the waiter is told later
    assert told == [] and not t.done
    io.release()
    leader.join()
    t.wait()
    # told once or more (repeats allowed), each time after its commit was published
    assert told and all(x == (2, True, [1, 2], True) for x in told)
    assert io.syncs - before == 2


def test_defer_leads_the_flush_when_none_runs(gated):
    s, io = gated
    t = s.log(1, _put(1))
    told = []
    before = io.syncs
    assert t.defer(lambda csn, ok: told.append(csn)) is False    # flushed it itself
    assert t.done and io.syncs - before == 1 and told == []
    t.wait()


def test_a_deferred_waiter_of_a_failed_flush_is_told_not_ok(gated):
    s, io = gated
    leader, raised = _hold_a_flush(s, io)
    t = s.log(2, _put(2))
    told = []
    assert t.defer(lambda csn, ok: told.append((csn, ok))) is True
    io.release(errno.EIO)
    leader.join()
    assert raised and told and set(told) == {(2, False)}
    with pytest.raises(StorageIOError):
        t.wait()


def test_a_finished_ticket_is_not_deferred(gated):
    s, _ = gated
    t = s.log(1, _put(1))
    t.wait()
    assert t.defer(lambda csn, ok: pytest.fail("told about a finished commit")) is False


def test_commits_deferred_without_leading_are_flushed_as_one_group_by_flush(gated, monkeypatch):
    monkeypatch.setattr(walwriter, "_BACKSTOP_SECS", 60.0)  # the writer thread's own look
    s, io = gated
    with s._writer._cond:
        s._writer._cond.notify()            # let the idle writer wait again, with the new period
    tickets = [s.log(c, _put(c)) for c in range(1, 6)]
    told = []
    for t in tickets:
        assert t.defer(lambda csn, ok: told.append(csn), lead=False) is True
    before = io.syncs
    assert told == [] and s.stats()["wal_pending"] == 5     # nobody flushed them
    s.flush()                                                # the caller's one group
    assert io.syncs - before == 1 and sorted(set(told)) == [1, 2, 3, 4, 5]
    assert all(t.done for t in tickets)
