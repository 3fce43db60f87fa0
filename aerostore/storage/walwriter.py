"""Writing the write-ahead log: group commit, failures, and the log cut.

The file format is in walformat.py.

Group commit (``WalWriter``): committers encode their record in their own thread
and enqueue it under the engine's commit lock (so queue order is CSN order).
One flusher at a time takes everything pending, writes it with one ``write()``,
calls ``fdatasync`` once, then runs each commit's ``on_durable(csn)`` in CSN
order (once per run of commits that pass the same callback) and releases the
committers' tickets.  The flusher is whoever gets there
first (leader/follower): a committer waiting in ``Ticket.wait()`` while no flush
runs leads the flush itself, so a lone committer pays the disk and no thread
hand-offs; commits that arrive during a flush wait, and the writer thread
flushes them as one group when it ends.  When every pending commit was made
with ``synchronous_commit off`` nobody waits: the writer thread lets the group
grow for up to ``aerostore.wal_flush_delay_ms`` before flushing it.  A leader
that saw bigger groups lately yields the GIL briefly before taking its group,
so that committers about to enqueue join it (8 threads: 8 commits per flush).
So ``on_durable`` runs in the writer thread or in a waiting committer's thread;
it must be quick and must not need a lock the waiting committer holds.
A committer may also not wait at all (``Ticket.defer``): it leads the flush if
none runs, else leaves a waker that the flusher calls once the commit is
published; the Tcl shim waits on that in C, without the GIL.

Failures: any write or fdatasync error fails every commit of that group with
``StorageIOError`` and the log turns fail-stop: it never writes again, never
retries the fsync (after a failed fsync the kernel may have dropped the dirty
pages; the data is not safe), and every later commit gets ``ReadOnlyError``.
It does try, once, to cut the failed group off the file, so that commits
reported as failed do not reappear on the next open.

The log also stops when ``wal.log`` is no longer the file the writer appends
to (removed, or replaced by another file): commits written on would land in a
file recovery never reads.  Each flush compares the open file's device and
inode (read once per file) with the path's (one ``stat``) after its fdatasync
and before it acknowledges anything; so does each log cut.  And it stops when the writer
thread meets an unexpected exception (a bug): it first tries once more to write
what is pending, so that commits already acknowledged (``synchronous_commit
off``) are not lost, then fails every waiter; nobody is left waiting on a dead
thread.
"""

from __future__ import annotations

import errno
import os
import threading
import time
import traceback
from array import array
from bisect import bisect_right
from typing import Callable, NamedTuple, Optional

from ..errors import ClosedError, ReadOnlyError, StorageIOError, UsageError
from . import interface
from .framing import errno_name
from .walformat import COUNTED, HEADER_SIZE, build_frames, make_header
from .walscan import WalScan

__all__ = ["Ticket", "Pending", "WalWriter", "PREALLOC_MIN", "PREALLOC_MAX"]

# The log grows in steps of zero bytes, written and synced with a group, so that
# later groups overwrite allocated space: their fdatasync then has no file size
# to journal (about 1.5x the commits per second of appending).  A step is the
# log's size, between these bounds, so small stores stay small; at most 2 MiB,
# because the group that carries a step waits for it: 16 MiB of zeros and their
# fdatasync took 20-70 ms, the slowest commit of a live feed (2 MiB: 2-3 ms;
# the zeros are written once either way).  Groups of PREALLOC_MIN bytes or more
# just append: for them the zeros would double the bytes written while the size
# update is noise.
PREALLOC_MIN, PREALLOC_MAX = 64 << 10, 2 << 20
# The idle writer thread looks for pending commits this often even unnotified: a
# synchronous commit whose committer never waits is still flushed.
_BACKSTOP_SECS = 0.2


_UNFINISHED = object()  # a Ticket's error before it is finished


class Ticket(interface.Ticket):
    """A commit's claim on durability.  ``wait()`` returns once the record is on
    disk, or raises ``StorageIOError`` (``ReadOnlyError`` if the log had already
    stopped) when it never will be."""

    __slots__ = ("csn", "_lock", "_error", "_writer", "_waker")

    def __init__(self, csn: int, writer=None):
        self.csn = csn
        self._error = _UNFINISHED
        self._writer = writer
        self._waker = None
        self._lock = threading.Lock()
        self._lock.acquire()

    def _finish(self, error=None):
        """Finish with ``error`` (None: durable).  Returns what the waker
        returned (see ``defer``): call it through ``_finish_all``, which runs
        those wake-ups once the whole group is finished."""
        self._error = error
        self._lock.release()
        waker = self._waker   # read after _error is set: see defer()
        if waker is not None:
            try:
                return waker(self.csn, error is None)
            except Exception:  # a broken waker must not keep the others waiting
                traceback.print_exc()
        return None

    @property
    def done(self) -> bool:
        """True once finished (durable, or failed)."""
        return self._error is not _UNFINISHED

    def defer(self, waker, lead: bool = True) -> bool:
        """``interface.Ticket.defer``: leads the flush if none runs (``lead``),
        then, if still unfinished, hands ``waker`` to ``_finish``.  At least once: ``_finish`` sets
        ``_error`` before it reads ``_waker`` and this sets ``_waker`` before
        it reads ``_error``, so one of them sees the other's write (both may:
        the waker is told twice)."""
        if lead and self._error is _UNFINISHED and self._writer is not None:
            self._writer.lead()
        if self._error is not _UNFINISHED:
            return False
        self._waker = waker
        if self._error is not _UNFINISHED:
            wake = waker(self.csn, self._error is None)
            if wake is not None:
                wake()
        return True

    def wait(self) -> None:
        """Block until durable.  If no flush is running, the caller does the flush
        itself (a leader, as in leader/follower group commit): a lone committer then
        pays no thread hand-offs, only the disk."""
        if self._lock.locked() and self._writer is not None:
            self._writer.lead()
        with self._lock:
            pass
        if self._error is not None:
            raise self._error


def _finish_all(items, error=None, errors=None) -> None:
    """Finish the tickets of ``items`` (``Pending``s) not finished yet with
    ``error``, or each with ``errors()`` if given, then run each distinct
    wake-up their wakers returned, once: one call wakes every Tcl thread
    waiting in the shim, however many commits the group held."""
    wakes = []
    for item in items:
        ticket = item.ticket
        if ticket._error is _UNFINISHED:
            wake = ticket._finish(errors() if errors is not None else error)
            if wake is not None and wake not in wakes:
                wakes.append(wake)
    for wake in wakes:
        try:
            wake()
        except Exception:  # noqa: BLE001 - the log goes on; report it
            traceback.print_exc()


def _identity(st: os.stat_result) -> tuple:
    """What tells one file from another: (device, inode)."""
    return st.st_dev, st.st_ino


def _io_error(what: str, path: str, e: OSError, stops_log: bool = True) -> StorageIOError:
    """The error of a failed file operation.  ``stops_log``: the failure stopped
    the log (the message says the store is read-only); otherwise the log is intact
    and the store stays writable, and the message says that instead."""
    if stops_log:
        tail = "the store is now read-only, reopen it once the disk is healthy"
    else:
        tail = "the log is intact and the store stays writable"
    return StorageIOError(f"{what} {path} failed: {e.strerror or e}; {tail}", errno_name(e))


class Pending(NamedTuple):
    """A commit queued for the log; a group flush writes a batch of them, in CSN order."""
    csn: int
    payload: bytes                # walformat.encode_commit(csn, ops)
    on_durable: Optional[Callable[[int], None]]  # run with csn once on disk (or None)
    ticket: Ticket                # finished once durable, or failed


class _CutJob:
    """A log cut handed from the checkpoint thread to the writer (see ``WalWriter.cut``)."""

    def __init__(self, fd: int, tmp: str, csn: int, cut_off: int, copied_to: int, frames: int):
        self.fd, self.tmp, self.csn = fd, tmp, csn
        self.cut_off, self.copied_to, self.frames = cut_off, copied_to, frames
        self.error = None
        self.done = threading.Event()


class WalWriter:
    """Appends commits to an open log with group commit; one thread does all writes.

    ``fd`` is open for appending at offset ``wscan.end`` of the log described by ``wscan``.
    ``settings()`` returns ``(synchronous_commit, wal_flush_delay_ms)`` and is
    read on every group, so configuration changes apply at once.  ``last_csn``
    is the highest CSN recovered; commits must come after it.
    """

    def __init__(self, path: str, io, fd: int, wscan: WalScan, settings, last_csn: int):
        self.path = path
        self._dir = os.path.dirname(path) or "."
        self._io = io
        self._fd = fd
        self._settings = settings
        self._end = wscan.end
        self._allocated = wscan.size  # the file's size: zeros after _end are preallocated
        self._frame_ends = array("Q", wscan.frame_ends)
        self._frame_last = array("Q", wscan.frame_last)
        self._frame_counts = array("Q", wscan.frame_counts)
        self._records = wscan.commits
        self._ident = _identity(os.fstat(fd))  # the file we append to: (device, inode)
        self.base_csn = wscan.base_csn
        self._last_logged = last_csn
        self.durable_csn = last_csn
        self._cond = threading.Condition(threading.Lock())
        self._pending: list = []
        self._pending_since = 0.0
        self._urgent = False     # a synchronous commit is pending
        self._scheduled = False  # the writer thread was told about the pending group
        self._flushing = False   # one flusher at a time: the writer thread or a leader
        self._stopping = False
        self._failed: StorageIOError | None = None
        self._lost: StorageIOError | None = None  # why the log file is no longer ours
        self._cut: _CutJob | None = None
        self.flushes = 0
        self.commits_flushed = 0
        self.max_batch = 0
        self._last_batch = 1
        self._sync_secs = 0.0
        self._thread = threading.Thread(target=self._run, name="aerostore-wal", daemon=True)
        self._thread.start()

    # -- committer side ---------------------------------------------------
    def submit(self, csn: int, payload: bytes, on_durable, sync: bool) -> Ticket:
        """Queue an encoded commit; called under the engine's commit lock."""
        ticket = Ticket(csn, self)
        with self._cond:
            if self._failed is not None:
                raise self._read_only()
            if self._stopping:
                raise ClosedError("the store is closed")
            if csn <= self._last_logged:
                raise UsageError(f"commit {csn} logged after commit {self._last_logged}")
            self._last_logged = csn
            pending = self._pending
            pending.append(Pending(csn, payload, on_durable, ticket))
            if len(pending) == 1:
                self._pending_since = time.monotonic()
            if sync:
                self._urgent = True  # its committer will lead the flush in Ticket.wait()
                overdue = False
            else:
                if not self._scheduled:
                    self._scheduled = True
                    self._cond.notify()
                # A committer that never waits can starve the writer thread of the GIL
                # and of this lock; then the commits themselves keep the promised
                # window (wal_flush_delay_ms) by flushing here.
                overdue = (not self._flushing and
                           time.monotonic() - self._pending_since >= self._settings()[1] / 1000.0)
        if overdue:
            self.lead(gather=False)
        return ticket

    def lead(self, gather: bool = True) -> None:
        """Flush everything pending in the calling thread, unless a flush is running
        (then the running flusher, or the writer thread after it, takes it).

        When the previous group was larger than what is pending now, other
        committers are probably about to enqueue: the leader claims the flush,
        then (``gather``) yields the GIL so they can join its group instead of
        waiting for the next flush, until the group is as big as the last one
        or as long as the last fdatasync took.  Why that bound: while a flush
        syncs, the commits that miss it queue for the next one, so waiting
        longer than a sync only delays both (a disk's 0.1-0.2 ms: 8 Tcl
        threads fill their group; tmpfs: no wait, the groups pipeline).
        """
        with self._cond:
            if self._flushing or not self._pending or self._cut or self._stopping:
                return
            self._flushing = True
            expect = self._last_batch if gather else 0
        try:
            if expect:
                # no longer than the last fdatasync took: waiting longer than
                # a flush lasts would be slower than a second flush
                end = time.monotonic() + self._sync_secs
                while len(self._pending) < expect and time.monotonic() < end:
                    time.sleep(0)
            with self._cond:
                batch, self._pending = self._pending, []
                self._urgent = self._scheduled = False
            try:
                self._flush(batch)
            except Exception as e:  # not an I/O error (_flush handles those): a bug
                traceback.print_exc()
                self._abandon(self._internal(e), batch)  # the waiters get it, typed
            except BaseException as e:  # KeyboardInterrupt: its thread sees it too
                self._abandon(self._internal(e), batch)
                raise
        finally:
            with self._cond:
                self._flushing = False
                if self._pending or self._cut or self._stopping:
                    self._cond.notify()

    # -- writer thread -----------------------------------------------------
    def _run(self) -> None:
        cond = self._cond
        batch, job = [], None
        try:
            while True:
                with cond:
                    while self._flushing or not (self._pending or self._stopping or self._cut):
                        cond.wait(_BACKSTOP_SECS)
                    if self._pending and not (self._urgent or self._stopping or self._cut):
                        deadline = self._pending_since + self._settings()[1] / 1000.0
                        while not (self._urgent or self._stopping or self._cut):
                            left = deadline - time.monotonic()
                            if left <= 0:
                                break
                            cond.wait(left)
                        while self._flushing:  # a leader took the group meanwhile
                            cond.wait()
                    batch, self._pending = self._pending, []
                    self._urgent = self._scheduled = False
                    job, self._cut = self._cut, None
                    stopping = self._stopping
                    self._flushing = True
                try:
                    if batch:
                        self._flush(batch)
                    if job is not None:
                        self._finish_cut(job)
                finally:
                    with cond:
                        self._flushing = False
                        done = stopping and not self._pending
                if done:
                    return
                batch, job = [], None
        except BaseException as e:  # a bug: never end silently, never strand a waiter
            self._crashed(e, batch, job)

    def _crashed(self, e: BaseException, batch: list, job) -> None:
        """The writer thread met an unexpected exception: stop the log, as after an
        I/O error.  First write, once more, whatever is pending (commits made with
        ``synchronous_commit off`` were acknowledged already), then fail every
        waiter and any log cut in progress.  The traceback goes to stderr."""
        traceback.print_exc()
        err = self._internal(e)
        with self._cond:
            while self._flushing:  # a leader's flush finishes first
                self._cond.wait(_BACKSTOP_SECS)
            if self._failed is None:
                self._failed = err  # no new commits or cuts from here on
            rest, self._pending = self._pending, []
            queued, self._cut = self._cut, None
            self._flushing = True
        left = [item for item in batch if not item.ticket.done] + rest
        try:
            if left:
                self._flush(left)
        except BaseException:  # noqa: BLE001 - the thread is ending; report below
            traceback.print_exc()
        finally:
            with self._cond:
                self._flushing = False
            self._abandon(err, left)
            for j in (job, queued):
                if j is not None and not j.done.is_set():
                    if j.fd != self._fd:
                        self._discard(j.fd, j.tmp)
                    j.error = self._read_only()
                    j.done.set()

    def _internal(self, e: BaseException) -> StorageIOError:
        return StorageIOError(f"{self.path}: the log writer failed ({type(e).__name__}: {e}); "
                              "the store is now read-only, reopen it", "INTERNAL")

    def _abandon(self, err: StorageIOError, items: list) -> None:
        """Stop the log with ``err`` (unless it stopped already) and fail every
        ticket of ``items`` not yet finished, and everything queued."""
        with self._cond:
            if self._failed is None:
                self._failed = err
            rest, self._pending = self._pending, []
        _finish_all(items, err)
        self._fail_pending(rest)

    def _flush(self, batch: list) -> None:
        frames = build_frames(batch)
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        need = self._end + len(data)
        allocated = self._allocated
        if need > allocated:
            if len(data) < PREALLOC_MIN:  # extend the file with zeros in the same write
                allocated = need + min(PREALLOC_MAX, max(PREALLOC_MIN, need))
                data += bytes(allocated - need)
            else:  # a big group: its data dwarfs the size update; zeros would double it
                allocated = need
        try:
            self._io.pwrite(self._fd, data, self._end)
            t0 = time.monotonic()
            self._io.fdatasync(self._fd)
            self._sync_secs = time.monotonic() - t0
        except OSError as e:
            self._fail(_io_error("writing", self.path, e), batch)
            return
        except BaseException:  # e.g. KeyboardInterrupt in a leading thread: state unknown
            self._fail(_io_error("writing", self.path,
                                 OSError(errno.EINTR, "interrupted while writing")), batch)
            raise
        lost = self._log_lost()
        if lost is not None:  # synced, but into a file recovery will never read
            self._lost = lost
            self._fail(lost, batch)
            return
        with self._cond:
            pos = self._end
            for f in frames:
                pos += len(f)
                count, _, last = COUNTED.unpack_from(f, 8)
                self._frame_ends.append(pos)
                self._frame_last.append(last)
                self._frame_counts.append(count)
            self._end = pos
            self._allocated = allocated
            self._records += len(batch)
            self.durable_csn = batch[-1].csn
            self.flushes += 1
            self.commits_flushed += len(batch)
            self._last_batch = len(batch)
            if len(batch) > self.max_batch:
                self.max_batch = len(batch)
        try:
            last = len(batch) - 1
            for i, (csn, _, on_durable, _) in enumerate(batch):
                # one call per run of commits that share a callback (interface.Storage.log)
                if on_durable is not None and (i == last or batch[i + 1].on_durable is not on_durable):
                    try:
                        on_durable(csn)
                    except Exception:  # a broken callback must not stop the log
                        traceback.print_exc()
        finally:  # the commits are durable: release every committer, come what may
            _finish_all(batch)

    def _fail(self, err: StorageIOError, batch: list) -> None:
        """Stop the log with ``err``: it fails ``batch`` (the group just written),
        and every later commit gets ``ReadOnlyError``.  The first reason stays."""
        with self._cond:
            if self._failed is None:
                self._failed = err
            rest, self._pending = self._pending, []
        _finish_all(batch, err)
        self._fail_pending(rest)
        # Best effort: cut the failed group off so it cannot reappear on reopen.
        try:
            self._io.truncate(self._fd, self._end)
            self._io.fdatasync(self._fd)
        except OSError:
            pass

    def _fail_pending(self, items: list) -> None:
        _finish_all(items, errors=self._read_only)

    def _read_only(self) -> ReadOnlyError:
        """What a write gets once the log has stopped; names the reason."""
        return ReadOnlyError(f"the store is read-only: {self._failed.message}")

    def _log_lost(self) -> StorageIOError | None:
        """The error to stop with if ``wal.log`` is no longer the file this writer
        appends to (removed, or replaced by another file), else None.  Commits
        written from then on would land in a file recovery never reads.  Costs
        one ``stat`` (the descriptor's own device and inode never change: read
        once, when the writer starts on a file)."""
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            what, name = "was removed", "ENOENT"
        except OSError as e:
            what, name = f"cannot be checked ({e.strerror or e})", errno_name(e)
        else:
            if _identity(now) == self._ident:
                return None
            what, name = "was replaced by another file", "ESTALE"
        return StorageIOError(f"{self.path} {what} while the store was running, so the log "
                              "cannot be continued; the store is now read-only, reopen it", name)

    def _stop(self, err: StorageIOError, lost: bool = False) -> None:
        """Stop the log with ``err`` outside a flush (``lost``: a log cut found the
        log file removed or replaced)."""
        if lost:
            self._lost = err
        with self._cond:
            if self._failed is None:
                self._failed = err
            rest, self._pending = self._pending, []
        self._fail_pending(rest)

    # -- cutting the log after a checkpoint ----------------------------------
    def cut(self, csn: int) -> None:
        """Drop the frames whose commits all have CSN <= ``csn``, while commits go on.

        The bulk of the surviving frames is copied into ``wal.log.tmp`` by the
        calling thread; the writer then copies what it appended meanwhile,
        syncs, renames the copy over ``wal.log``, syncs the directory and
        continues in the new file.  A crash at any point leaves either the old
        log or the new one, both complete.  Raises ``StorageIOError`` if the copy
        cannot be made (the old log then stays in use) and ``ReadOnlyError`` if
        the log has stopped.
        """
        with self._cond:
            if self._failed is not None:
                raise self._read_only()
            i = bisect_right(self._frame_last, csn)
            cut_off = self._frame_ends[i - 1] if i else HEADER_SIZE
            copied_to = self._end
        lost = self._log_lost()  # the copy must come from the file we append to
        if lost is not None:
            self._stop(lost, lost=True)
            raise lost
        tmp = self.path + ".tmp"
        io = self._io
        fd = None
        try:
            if os.path.exists(tmp):
                io.unlink(tmp)
            fd = io.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            io.write(fd, make_header(csn))
            self._copy(fd, cut_off, copied_to)
        except OSError as e:
            self._discard(fd, tmp)
            lost = self._log_lost()
            if lost is not None:
                self._stop(lost, lost=True)
                raise lost from None
            raise _io_error("checkpoint: copying the log to", tmp, e, stops_log=False) from None
        job = _CutJob(fd, tmp, csn, cut_off, copied_to, i)
        with self._cond:
            if self._failed is not None or self._stopping:
                self._discard(fd, tmp)
                if self._failed is not None:
                    raise self._read_only()
                raise ClosedError("the store is closed")
            self._cut = job
            self._cond.notify()
        job.done.wait()
        if job.error is not None:
            raise job.error

    def _copy(self, fd: int, start: int, stop: int) -> None:
        with open(self.path, "rb") as src:
            src.seek(start)
            left = stop - start
            while left > 0:
                chunk = src.read(min(left, 4 << 20))
                if not chunk:
                    raise OSError(5, "log shorter than expected")
                self._io.write(fd, chunk)
                left -= len(chunk)

    def _discard(self, fd, tmp: str) -> None:
        try:
            if fd is not None:
                self._io.close(fd)
            self._io.unlink(tmp)
        except OSError:
            pass

    def _finish_cut(self, job: _CutJob) -> None:
        """Writer side of ``cut``: runs between groups, so nothing is in flight."""
        io = self._io
        lost = None if self._failed is not None else self._log_lost()
        if lost is not None:
            self._stop(lost, lost=True)
        if self._failed is not None:
            self._discard(job.fd, job.tmp)
            job.error = lost or self._read_only()
            job.done.set()
            return
        try:
            self._copy(job.fd, job.copied_to, self._end)
            io.fdatasync(job.fd)
            ident = _identity(os.fstat(job.fd))
            io.rename(job.tmp, self.path)
        except OSError as e:
            self._discard(job.fd, job.tmp)
            lost = self._log_lost()
            if lost is not None:
                self._stop(lost, lost=True)
            job.error = lost or _io_error("checkpoint: replacing", self.path, e, stops_log=False)
            job.done.set()
            return
        old, self._fd, self._ident = self._fd, job.fd, ident
        try:
            io.close(old)
        except OSError:
            pass
        shift = job.cut_off - HEADER_SIZE
        with self._cond:
            n = job.frames
            self._records -= sum(self._frame_counts[:n])
            self._frame_ends = array("Q", (e - shift for e in self._frame_ends[n:]))
            self._frame_last = self._frame_last[n:]
            self._frame_counts = self._frame_counts[n:]
            self._end -= shift
            self._allocated = self._end
            self.base_csn = job.csn
        try:
            io.fsync_dir(self._dir)
        except OSError as e:
            # The new name may not be durable: appending would risk acknowledged
            # commits landing in a file a crash forgets.  Stop.
            err = _io_error("syncing the directory of", self.path, e)
            self._stop(err)
            job.error = err
        job.done.set()

    # -- reporting and shutdown -----------------------------------------------
    @property
    def failed(self) -> StorageIOError | None:
        """Why the log stopped (the store is read-only), or None."""
        return self._failed

    @property
    def lost(self) -> StorageIOError | None:
        """Set when the log stopped because ``wal.log`` was removed or replaced."""
        return self._lost

    def read_only_error(self) -> ReadOnlyError:
        """The ``ReadOnlyError`` for a write after the log stopped."""
        return self._read_only()

    def stats(self) -> dict:
        with self._cond:
            return {"wal_bytes": self._end, "wal_records": self._records,
                    "wal_frames": len(self._frame_ends), "wal_flushes": self.flushes,
                    "wal_commits_flushed": self.commits_flushed,
                    "wal_max_batch": self.max_batch, "wal_pending": len(self._pending),
                    "durable_csn": self.durable_csn,
                    "wal_failed": self._failed.message if self._failed else ""}

    def close(self) -> None:
        """Flush what is pending (unless failed), stop the thread, close the file."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()
        try:
            self._io.close(self._fd)
        except OSError:
            pass
