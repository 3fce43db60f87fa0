"""The Storage interface between the engine and its files, and MemoryStorage.

The engine (database.py) talks to storage through the calls of ``Storage``;
their contract is written on the methods below (in the manner of ZODB's
``IStorage``).  ``MemoryStorage`` is the ``:memory:`` store: nothing is written,
every commit is "durable" at once, nothing survives the process.
``directory.DirectoryStorage`` is the durable one.
"""

from __future__ import annotations

__all__ = ["Storage", "Recovered", "Ticket", "DoneTicket", "MemoryStorage"]


class Recovered:
    """What ``Storage.recover()`` found.

    ``checkpoint_csn``: the CSN the checkpoint holds (0 if none).

    ``tables``: a ``checkpoint.CheckpointTable`` per table of the checkpoint,
    in creation order: ``schema``, ``index_fields``, ``n`` (rows) and either
    the columns (``columns``, ``nulls``, ``index_arrays``: format version 2)
    or ``columns`` None and the rows (version 1); ``rows`` is a list of row
    tuples either way (built from the columns on first use).  Iterating one
    gives ``(schema_dict, index_fields, rows)``.

    ``records``: an iterator of ``(csn, ops)`` pairs (``walformat.Commit``)
    with ``csn > checkpoint_csn``, in CSN order; each op is a tuple in the
    layout of the op records (``walformat.Put`` ...), to be applied with
    ``walformat.replay``.  Read lazily: iterating raises ``CorruptError`` if a
    frame does not decode.

    ``last_csn``: the highest CSN the storage holds (the checkpoint's, or the
    last logged commit's), so the next commit is ``last_csn + 1``.

    ``torn_bytes``: the size of a torn log tail recovery set aside (0 if none).
    """

    def __init__(self, checkpoint_csn: int = 0, tables=(), records=(), last_csn: int | None = None,
                 torn_bytes: int = 0):
        self.checkpoint_csn = checkpoint_csn
        self.tables = list(tables)
        self.records = records
        self.last_csn = checkpoint_csn if last_csn is None else last_csn
        self.torn_bytes = torn_bytes


class Ticket:
    """A commit's place in the log, returned by ``Storage.log()``."""

    def wait(self) -> None:  # pragma: no cover - interface
        """Block until the commit is durable, then return None.

        Raises ``StorageIOError`` if its write or fdatasync failed (the store
        is read-only from then on), or ``ReadOnlyError`` if the log had
        stopped before the commit could be written.  Either way the commit
        was not applied (the log cuts a failed group off its file, once, on a
        best-effort basis).
        """
        raise NotImplementedError

    def defer(self, waker, lead: bool = True) -> bool:
        """Wait without blocking this thread: False if the commit is finished
        already (``wait()`` then returns or raises at once); otherwise True,
        and ``waker(csn, ok)`` is called once it is finished (``ok``: durable;
        False: failed, ``wait()`` raises).  The waker runs in the thread that
        finished the flush, with the GIL, after the commit was published; it
        must be quick and may be called more than once (callers ignore
        repeats).  It may return a callable, the wake-up proper: it is called
        once after the wakers of all the commits finished together ran, so
        one call can wake many threads.  With ``lead`` the caller flushes
        here if no flush runs, as in ``wait()`` (a lone committer pays no
        thread hand-off); without, the caller must see to the flush itself
        (``Storage.flush``), as a batch of such commits does once."""
        return False




class DoneTicket(Ticket):
    """The ticket of a commit that is durable already."""

    __slots__ = ()

    def wait(self) -> None:
        return None


_DONE = DoneTicket()


class Storage:
    """What the engine needs from storage.  One instance per data directory;
    ``recover()`` runs first and once, ``close()`` last.

    ``durable``: True when commits survive the process.

    ``log_lost``: True once the log file was removed or replaced under the
    running store; the store is read-only then, and only a checkpoint can save
    the commits since the last one (the engine writes one at close).
    """

    durable = False
    log_lost = False

    def recover(self) -> Recovered:  # pragma: no cover - interface
        """Load what the storage holds and make it ready for ``log()``.

        Returns a ``Recovered``; its ``records`` must be consumed before the
        first ``log()``.  Raises ``CorruptError`` if a file is damaged (the
        storage is then unusable: close it), ``StorageIOError`` if reading
        fails, ``UsageError`` if called twice, ``ClosedError`` after ``close()``.
        """
        raise NotImplementedError

    def log(self, csn: int, ops: list, on_durable=None) -> Ticket:  # pragma: no cover
        """Queue commit ``csn``, whose ``ops`` are op records (``walformat.Put`` ...,
        or tuples of the same layout).  Returns its ``Ticket``.

        Called under the engine's commit lock, so submission order is CSN
        order; ``csn`` must exceed every CSN logged or recovered before.
        ``on_durable(csn)``, if given, is called once the commit is durable, in
        CSN order, from the log writer's thread or from a committer leading a
        flush inside ``Ticket.wait()`` (``MemoryStorage``: before ``log()``
        returns); it must be quick and must not need the commit lock.
        Consecutive commits of one flush that pass the same callback object
        get one call, with the highest of their CSNs: such a callback takes
        ``csn`` as "every commit up to ``csn``" (the engine's publish does).

        Raises ``UsageError`` if a value cannot be stored, if ``csn`` is out of
        order or if ``recover()`` has not run; ``ReadOnlyError`` once the log has
        stopped (a write failed); ``ClosedError`` after ``close()``.  Nothing is
        logged then.
        """
        raise NotImplementedError

    def flush(self) -> None:  # pragma: no cover
        """Write and sync what ``log()`` queued, in the calling thread, unless a
        flush runs already (then it, or the log's own thread after it, takes
        the rest).  For commits queued without a waiter leading their flush
        (``Ticket.defer(lead=False)``), and for a committer that must see
        another commit durable (a write conflict's winner).  Errors reach the
        commits' tickets, not the caller."""
        raise NotImplementedError

    def checkpoint(self, csn: int, tables) -> int:  # pragma: no cover
        """Store the snapshot at ``csn`` so the log before it is no longer needed.

        ``tables``: ``(schema_dict, index_fields, rows)`` per table, the rows
        visible at ``csn`` (an iterator of tuples, or the engine's copy as
        columns, ``heap.ColumnSnapshot``, which iterates as rows too),
        optionally with a fourth item ``index_entries``
        (``checkpoint.write_checkpoint``: the sorted entry array of an index
        over the rows written, so that a reopen need not build it); every
        iterator is consumed, while commits go on.
        Writes the checkpoint atomically, then drops the log's commits with
        CSN <= ``csn``.  A checkpoint at or before the one held already is not
        written.  Returns the number of rows the iterators yielded.

        Raises ``StorageIOError`` if the checkpoint cannot be written (the store
        stays writable; the previous checkpoint and the log are intact), or if
        cutting the log finds it removed or replaced (the store is then
        read-only, the checkpoint written first); ``ReadOnlyError`` once the
        log has stopped; ``UsageError`` if ``recover()`` has not run;
        ``ClosedError`` after ``close()``; and whatever a row iterator raises.
        """
        raise NotImplementedError

    def stats(self) -> dict:  # pragma: no cover
        """Counters: at least ``wal_bytes``, ``wal_records`` and ``checkpoints``
        (ints); a durable storage adds ``wal_failed`` (str: why the log stopped,
        "" while it runs) and the counters of its log and checkpoints."""
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover
        """Make pending commits durable (unless the log stopped), stop background
        threads and release the directory.  Idempotent."""
        raise NotImplementedError


class MemoryStorage(Storage):
    """No files: commits are acknowledged at once; nothing survives the process."""

    durable = False
    path = ":memory:"

    def recover(self) -> Recovered:
        return Recovered()

    def log(self, csn: int, ops: list, on_durable=None) -> Ticket:
        if on_durable is not None:
            on_durable(csn)
        return _DONE

    def flush(self) -> None:
        pass

    def checkpoint(self, csn: int, tables) -> int:
        return sum(sum(1 for _ in t[2]) for t in tables)

    def stats(self) -> dict:
        return {"wal_bytes": 0, "wal_records": 0, "checkpoints": 0}

    def close(self) -> None:
        pass
