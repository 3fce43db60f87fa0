"""Typed errors of Aerostore.

Every failure the engine reports is one of the classes below; never a bare
``Exception``.  Each class carries ``code``, the machine-readable words that the
Tcl bridge puts in ``errorCode`` (first word always ``AEROSTORE``), so Python and
Tcl users see the same classification (docs/tcl.md, ERRORS).

Hierarchy::

    AerostoreError
    ├── UsageError            AEROSTORE USAGE ...      wrong arguments, unknown names, bad values
    │   └── ClosedError       AEROSTORE USAGE CLOSED   use of a closed database or finished transaction
    ├── DecodeError           AEROSTORE DECODE L C     TSV input; nothing of the call applied
    ├── TransientError                                 retrying the transaction is safe
    │   └── WriteConflict     AEROSTORE CONFLICT       first committer won
    ├── StorageIOError        AEROSTORE IO ...         a file operation failed, or the log was lost
    │   └── ReadOnlyError     AEROSTORE IO READONLY    the store stopped after such a failure; reopen it
    ├── CorruptError          AEROSTORE CORRUPT file offset   damaged data files; refuses to open
    └── LockedError           AEROSTORE LOCKED dir     another process owns the data directory
"""

from __future__ import annotations

__all__ = [
    "AerostoreError", "UsageError", "ClosedError", "DecodeError", "TransientError",
    "WriteConflict", "StorageIOError", "ReadOnlyError", "CorruptError", "LockedError",
]


class AerostoreError(Exception):
    """Base of every Aerostore error.  ``code`` is a tuple of words."""

    code: tuple = ("AEROSTORE",)

    def __init__(self, message: str, *detail):
        super().__init__(message)
        self.message = message
        if detail:
            self.code = type(self).code + tuple(str(d) for d in detail)

    @property
    def tcl_errorcode(self) -> list:
        """The errorCode list the Tcl bridge sets."""
        return list(self.code)


class UsageError(AerostoreError):
    """Wrong arguments, unknown subcommand/option/field/operator, or a bad value.

    Fix the call; nothing was changed.
    """

    code = ("AEROSTORE", "USAGE")


class ClosedError(UsageError):
    """A closed database, or a transaction that already ended, was used."""

    code = ("AEROSTORE", "USAGE", "CLOSED")


class DecodeError(AerostoreError):
    """TSV input that does not parse; ``line`` and ``column`` are 1-based.

    Nothing of the call that raised it was applied.
    """

    code = ("AEROSTORE", "DECODE")

    def __init__(self, line: int, column: int, what: str):
        super().__init__(f"decode error at line {line} column {column}: {what}", line, column)
        self.line = line
        self.column = column
        self.what = what


class TransientError(AerostoreError):
    """Base of errors after which retrying the whole transaction is safe."""

    code = ("AEROSTORE", "TRANSIENT")


class WriteConflict(TransientError):
    """Another transaction committed a write to the same key first.

    Nothing of this transaction was applied; run it again.
    """

    code = ("AEROSTORE", "CONFLICT")
    csn: int | None = None      # the commit that won; retry.py waits until it is visible


class StorageIOError(AerostoreError):
    """Writing or syncing the data files failed (disk full, EIO), the log file
    was removed or replaced under the running store (``ENOENT``, ``ESTALE``), or
    the log writer failed (``INTERNAL``).

    The commit that got this error was not acknowledged and is not applied.
    The store turns read-only (fail-stop): close and reopen it once the disk is
    healthy; everything acknowledged before is recovered.  A failed checkpoint
    that left the log intact is the exception: the store stays writable, and
    the message says which of the two happened.
    """

    code = ("AEROSTORE", "IO")


class ReadOnlyError(StorageIOError):
    """The store stopped accepting writes after a ``StorageIOError``; the message
    names it (so does ``stats()["read_only_reason"]``).  Reopen the store."""

    code = ("AEROSTORE", "IO", "READONLY")


class CorruptError(AerostoreError):
    """A data file is damaged; the store refuses to open rather than guess.

    ``path`` and ``offset`` say where.  Restore the file from a backup, or run
    ``python -m aerostore verify DIR`` for details.
    """

    code = ("AEROSTORE", "CORRUPT")

    def __init__(self, path: str, offset: int, what: str):
        super().__init__(f"{path}: corrupt at offset {offset}: {what}", path, offset)
        self.path = path
        self.offset = offset
        self.what = what


class LockedError(AerostoreError):
    """Another process owns the data directory (one process at a time)."""

    code = ("AEROSTORE", "LOCKED")
