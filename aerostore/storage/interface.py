"""The Storage interface between the engine and its files, and MemoryStorage.

The engine (database.py) talks to storage through five calls; see
docs/architecture.md.  ``MemoryStorage`` is the ``:memory:`` store: nothing is
written, every commit is "durable" at once, nothing survives the process.
"""

from __future__ import annotations

__all__ = ["Storage", "Recovered", "Ticket", "DoneTicket", "MemoryStorage"]


class Recovered:
    """What recovery found: checkpoint tables and the WAL records after it."""

    def __init__(self, checkpoint_csn: int = 0, tables=(), records=()):
        self.checkpoint_csn = checkpoint_csn
        self.tables = list(tables)   # (schema_dict, index_fields, rows)
        self.records = records       # iterator of (csn, ops) in CSN order


class Ticket:
    """A commit's place in the log; ``wait()`` returns once it is on disk, or raises."""

    def wait(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class DoneTicket(Ticket):
    __slots__ = ()

    def wait(self) -> None:
        return None


_DONE = DoneTicket()


class Storage:
    """Interface; see docs/architecture.md for the contract of each call.

    ``log_lost``: True once the log file was removed or replaced under the
    running store; the store is read-only then, and only a checkpoint can save
    the commits since the last one (the engine writes one at close).
    """

    durable = False
    log_lost = False

    def recover(self) -> Recovered:  # pragma: no cover - interface
        raise NotImplementedError

    def log(self, csn: int, ops: list, on_durable) -> Ticket:  # pragma: no cover
        raise NotImplementedError

    def checkpoint(self, csn: int, tables) -> None:  # pragma: no cover
        raise NotImplementedError

    def stats(self) -> dict:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover
        raise NotImplementedError


class MemoryStorage(Storage):
    """No files: commits are acknowledged at once; nothing survives the process."""

    durable = False
    path = ":memory:"

    def recover(self) -> Recovered:
        return Recovered()

    def log(self, csn: int, ops: list, on_durable) -> Ticket:
        on_durable(csn)
        return _DONE

    def checkpoint(self, csn: int, tables) -> None:
        for _schema, _indexes, rows in tables:
            for _ in rows:
                pass

    def stats(self) -> dict:
        return {"wal_bytes": 0, "wal_records": 0, "checkpoints": 0}

    def close(self) -> None:
        pass
