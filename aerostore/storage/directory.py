"""``DirectoryStorage``: the durable ``Storage`` (interface.py) over a data directory.

A data directory holds (see docs/durability.md):

| file | what |
|---|---|
| ``lock`` | flock'ed by the owning process; holds its pid (for the error message) |
| ``checkpoint.dat`` | the last checkpoint (checkpoint.py) |
| ``wal.log`` | commits after (or around) that checkpoint (walformat.py) |
| ``wal.log.torn-N`` | torn tails set aside by recovery, kept as evidence |
| ``*.tmp`` | a checkpoint or log cut in progress; removed on open |

The directory is created 0700 and every file 0600: the data is the user's.
Opening takes the lock (a second opener, in this or another process, gets
``LockedError``); ``recover()`` loads the checkpoint, checks the log, sets a
torn tail aside and starts the log writer; ``log()``, ``checkpoint()``,
``stats()`` and ``close()`` follow.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import os
import threading
import time
import weakref

from ..config import Config
from ..errors import ClosedError, CorruptError, LockedError, StorageIOError, UsageError
from . import fileio
from .checkpoint import FILENAME as CHECKPOINT, TEMP_FILENAME as CHECKPOINT_TMP
from .checkpoint import read_checkpoint, write_checkpoint
from ..words import show
from .framing import errno_name
from .interface import Recovered, Storage
from .walformat import encode_commit, make_header
from .walscan import WalScan, iter_commits, scan
from .walwriter import Ticket, WalWriter

__all__ = ["DirectoryStorage", "WAL", "LOCK", "lock_directory"]

WAL = "wal.log"
LOCK = "lock"

# Stores still open at interpreter exit are closed then, so commits made with
# synchronous_commit off reach the disk even if the program never closed them.
_open_stores: "weakref.WeakSet[DirectoryStorage]" = weakref.WeakSet()


@atexit.register
def _close_open_stores() -> None:
    for store in list(_open_stores):
        store.close()


def directory_error(path: str, err: int, reason: str = "") -> UsageError:
    """The error of a data directory that cannot be used: ``AEROSTORE USAGE DIR path``;
    the reason is ``os.strerror(err)`` unless given."""
    shown = path if path.isprintable() else show(path)     # a NUL, a control character
    return UsageError(f'cannot open data directory "{shown}": {reason or os.strerror(err)}',
                      "DIR", path)


def prepare_directory(path: str, io: "fileio.FileIO | None" = None) -> None:
    """Make ``path`` and its missing parents (mode 0700, each new name fsynced into
    its parent), and check that it is a directory this process can write; else
    ``directory_error``.  An existing directory keeps its mode."""
    if fileio.has_nul(path):
        raise directory_error(path, errno.EINVAL, fileio.NUL_IN_NAME)
    missing = []
    p = path
    while not os.path.lexists(p):
        missing.append(p)
        p = os.path.dirname(p)
    try:
        for d in reversed(missing):
            try:
                os.mkdir(d, 0o700)
            except FileExistsError:
                continue            # made meanwhile by someone else: theirs to set
            os.chmod(d, 0o700)      # exactly 0700, whatever the umask
            (io or fileio.DEFAULT).fsync_dir(os.path.dirname(d))
        if not os.path.isdir(path):
            raise directory_error(path, errno.ENOTDIR)
        if not os.access(path, os.W_OK | os.X_OK):
            raise directory_error(path, errno.EACCES)
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            raise directory_error(path, errno.EROFS)
    except OSError as e:
        raise directory_error(path, e.errno or errno.EIO) from None


def lock_directory(path: str, exclusive: bool = True) -> int:
    """Take the directory's lock file; returns its descriptor or raises ``LockedError``.

    ``exclusive=False`` takes a shared lock (the read-only command-line tools),
    which still excludes an owner.
    """
    lock_path = os.path.join(path, LOCK)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            os.close(fd)
            raise
        try:
            pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        finally:
            os.close(fd)
        if pid == str(os.getpid()):
            raise LockedError(f'data directory "{path}" is already open in this process; close it '
                              f'(db.close()) before opening it again', path) from None
        raise LockedError(f'data directory "{path}" is in use by another process (pid {pid}); '
                          "one process at a time may open it", path) from None
    if exclusive:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class DirectoryStorage(Storage):
    """The durable storage of one data directory (see the module docstring).

    ``config`` is the database's ``Config``; ``aerostore.synchronous_commit`` and
    ``aerostore.wal_flush_delay_ms`` are read at every commit.  ``io`` is the
    file layer (``fileio.DEFAULT``; the fault tests pass their ``FaultyIO``).
    """

    durable = True

    def __init__(self, path: str, config: Config | None = None, *, io: fileio.FileIO | None = None):
        self.path = os.path.abspath(path)
        self._config = config if config is not None else Config()
        self._io = io if io is not None else fileio.DEFAULT
        prepare_directory(self.path, self._io)
        try:
            self._lock_fd = lock_directory(self.path)
        except OSError as e:
            raise directory_error(self.path, e.errno or errno.EIO) from None
        self._wal_path = os.path.join(self.path, WAL)
        self._ckpt_path = os.path.join(self.path, CHECKPOINT)
        self._writer: WalWriter | None = None
        self._closed = False
        self._ckpt_lock = threading.Lock()
        self._ckpt_csn = 0
        self._ckpt_rows = 0
        self._checkpoints = 0
        self._last_ckpt_ms = 0.0
        self._last_ckpt_bytes = 0
        self._torn_set_aside = 0
        self._recovery_ms = 0.0
        try:
            for name in (CHECKPOINT_TMP, WAL + ".tmp"):
                p = os.path.join(self.path, name)
                if os.path.exists(p):
                    self._io.unlink(p)
        except OSError as e:
            self._release_lock()
            raise StorageIOError(f"removing a leftover temp file in {self.path} failed: "
                                 f"{e.strerror or e}", errno_name(e)) from None

    # -- recovery ------------------------------------------------------------
    def recover(self) -> Recovered:
        """Load the checkpoint, check the log, set a torn tail aside, start the writer
        (see ``Storage.recover``)."""
        if self._closed:
            raise ClosedError("the store is closed")
        if self._writer is not None:
            raise UsageError("recover() runs once")
        t0 = time.perf_counter()
        try:
            return self._recover(t0)
        except OSError as e:
            raise StorageIOError(f"opening {self.path} failed: {e.strerror or e}",
                                 errno_name(e)) from None

    def _recover(self, t0: float) -> Recovered:
        ckpt_csn, tables = 0, []
        if os.path.exists(self._ckpt_path):
            ckpt_csn, tables = read_checkpoint(self._ckpt_path)
        self._ckpt_csn = ckpt_csn
        self._ckpt_rows = sum(t.n for t in tables)
        if not os.path.exists(self._wal_path):
            self._create_wal(ckpt_csn)
        wscan = scan(self._wal_path)
        if wscan.base_csn > ckpt_csn:
            raise CorruptError(self._ckpt_path if os.path.exists(self._ckpt_path) else self._wal_path, 0,
                               f"{WAL} continues from checkpoint {wscan.base_csn} but {CHECKPOINT} "
                               f"holds only up to {ckpt_csn} (checkpoint missing or replaced)")
        torn = wscan.torn
        if torn:
            self._set_torn_tail_aside(wscan)
        fd = self._io.open(self._wal_path, os.O_WRONLY)
        last = max(ckpt_csn, wscan.last_csn)
        self._writer = WalWriter(self._wal_path, self._io, fd, wscan, self._settings, last)
        _open_stores.add(self)
        self._recovery_ms = (time.perf_counter() - t0) * 1000.0
        return Recovered(ckpt_csn, tables, iter_commits(self._wal_path, wscan, ckpt_csn), last, torn)

    def _create_wal(self, base_csn: int) -> None:
        tmp = self._wal_path + ".tmp"
        io = self._io
        fd = io.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            io.write(fd, make_header(base_csn))
            io.fdatasync(fd)
        finally:
            io.close(fd)
        io.rename(tmp, self._wal_path)
        io.fsync_dir(self.path)

    def _set_torn_tail_aside(self, wscan: WalScan) -> None:
        """Copy the torn tail to ``wal.log.torn-N`` (synced), then cut it off the log."""
        io = self._io
        n = 1
        while os.path.exists(f"{self._wal_path}.torn-{n}"):
            n += 1
        with open(self._wal_path, "rb") as f:
            f.seek(wscan.end)
            tail = f.read(wscan.torn)
        # Keep it up to the 4 KiB block of its last non-zero byte: the zeros after
        # that are preallocated space, not evidence.
        last = len(tail.rstrip(b"\0"))
        tail = tail[:min(len(tail), -(-(wscan.end + last) // 4096) * 4096 - wscan.end)]
        fd = io.open(f"{self._wal_path}.torn-{n}", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            io.write(fd, tail)
            io.fdatasync(fd)
        finally:
            io.close(fd)
        io.fsync_dir(self.path)
        fd = io.open(self._wal_path, os.O_WRONLY)
        try:
            io.truncate(fd, wscan.end)
            io.fdatasync(fd)
        finally:
            io.close(fd)
        wscan.size = wscan.end
        self._torn_set_aside = wscan.torn

    def _settings(self) -> tuple:
        c = self._config
        return c.get("aerostore.synchronous_commit"), c.get("aerostore.wal_flush_delay_ms")

    # -- commits -------------------------------------------------------------
    def log(self, csn: int, ops, on_durable=None) -> Ticket:
        """Queue commit ``csn`` for the log writer (see ``Storage.log``).  Call under
        the commit lock."""
        w = self._writer
        if w is None:
            raise ClosedError("the store is closed") if self._closed else \
                UsageError("recover() must run before log()")
        return w.submit(csn, encode_commit(csn, ops), on_durable,
                        self._config.get("aerostore.synchronous_commit"))

    def flush(self) -> None:
        """``Storage.flush``: the log writer's ``lead`` in the calling thread."""
        w = self._writer
        if w is not None:
            w.lead()

    # -- checkpoints -----------------------------------------------------------
    def checkpoint(self, csn: int, tables) -> int:
        """Write the checkpoint of snapshot ``csn``, then cut the log.  Returns its row count.

        ``tables``: ``(schema_dict, index_fields, row_iterator[, index_entries])``
        per table, the rows visible at ``csn`` (see ``Storage.checkpoint``);
        every iterator is consumed.  Commits continue
        meanwhile.  A checkpoint at or before the one on disk (nothing new, or
        two racing) is counted but not written.  Raises ``StorageIOError`` if
        the checkpoint cannot be written (the store stays writable; the old
        checkpoint and the log are intact), ``ReadOnlyError`` after a log
        failure, and ``StorageIOError`` (the store now read-only) if the cut
        finds ``wal.log`` removed or replaced.

        Once ``wal.log`` is lost the commits since the last checkpoint live
        only in memory, so a checkpoint is still written then (and the log not
        cut): reopening the store recovers every commit it holds.
        """
        with self._ckpt_lock:
            w = self._writer
            if w is None:
                raise ClosedError("the store is closed") if self._closed else \
                    UsageError("recover() must run before checkpoint()")
            if w.failed is not None and w.lost is None:
                raise w.read_only_error()
            if csn <= self._ckpt_csn:
                # Nothing committed since the checkpoint on disk, or two checkpoints
                # raced and the newer one finished first: that one covers this one
                # (and writing an older one now would lose the commits between).
                if csn == self._ckpt_csn and w.base_csn < csn and w.lost is None:
                    w.cut(csn)  # a crash came between the last checkpoint and its cut
                return sum(sum(1 for _ in t[2]) for t in tables)
            t0 = time.perf_counter()
            rows, nbytes = write_checkpoint(self._io, self.path, csn, tables)
            self._ckpt_csn, self._ckpt_rows = csn, rows
            self._last_ckpt_bytes = nbytes
            self._checkpoints += 1
            self._last_ckpt_ms = (time.perf_counter() - t0) * 1000.0
            if w.base_csn < csn and w.lost is None:
                try:
                    w.cut(csn)
                except StorageIOError as e:
                    if w.lost is not e:
                        raise
                    raise StorageIOError(f"{e.message}; the checkpoint of commit {csn} was "
                                         "written first, so reopening recovers every commit "
                                         "up to it", *e.code[2:]) from None
            return rows

    # -- reporting and shutdown ------------------------------------------------
    @property
    def log_lost(self) -> bool:
        """True once ``wal.log`` was found removed or replaced (see ``Storage``)."""
        w = self._writer
        return w is not None and w.lost is not None

    def stats(self) -> dict:
        """Counters of the log and the checkpoints (all ints or floats, plus data_dir)."""
        s = {"data_dir": self.path, "checkpoints": self._checkpoints,
             "last_checkpoint_csn": self._ckpt_csn, "last_checkpoint_rows": self._ckpt_rows,
             "last_checkpoint_ms": round(self._last_ckpt_ms, 3),
             "last_checkpoint_bytes": self._last_ckpt_bytes,
             "recovery_ms": round(self._recovery_ms, 3), "torn_bytes_set_aside": self._torn_set_aside}
        if self._writer is not None:
            s.update(self._writer.stats())
        return s

    def close(self) -> None:
        """Flush pending commits (unless the log failed), stop the writer, unlock.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        _open_stores.discard(self)
        with self._ckpt_lock:
            w, self._writer = self._writer, None
            if w is not None:
                w.close()
            self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
