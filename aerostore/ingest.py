"""Bulk TSV ingest and export: batches, files, progress (the row format itself
is tsvcodec.py).

API used by Python programs (``Database.ingest_tsv``, ``ingest_file``,
``export_tsv``) and by the Tcl bridge (``FlightState ingest_tsv``,
``ingest_file``, ``write_tsv``)::

    ingest_tsv(db, table, data, batch_size=1024, *, txn=None, progress=None)  -> IngestResult
    ingest_file(db, table, path, batch_size=1024, *, txn=None, progress=None,
                hold_bytes=128 MiB)                                 -> IngestResult
    export_tsv(db, table, dest=None, *, query=None, txn=None)       -> str, or rows written
    str(IngestResult) == "rows_seen=N inserted=N updated=N batches=N elapsed_ms=F"
    progress(phase, rows, elapsed_s)      phase "validate" (files) or "apply"

Ingest is an upsert by key in batches of ``batch_size`` rows, each batch one
transaction (or, given ``txn``, all through that transaction, uncommitted); a
batch that loses a write conflict runs again (retry.py).  The whole input is
validated before the first batch commits; if a later batch fails (I/O error),
the error's ``ingested`` attribute counts what committed.  docs/ingest.md has
the full rules.
"""

from __future__ import annotations

import os
import secrets
import stat
import time
from functools import partial

from . import sysmem
from .errors import AerostoreError, UsageError
from .gcpause import paused
from .retry import run_in_transaction
from .rowblock import RowBlock
from .schema import surrogate_at
from .storage.fileio import NUL_IN_NAME, has_nul
from .tsvcodec import Codec, codec
from .words import show

__all__ = ["IngestResult", "ingest_tsv", "ingest_file", "export_tsv", "write_rows",
           "write_file_atomic"]

_READ_BYTES = 1 << 22           # file read size
_ENCODE_ROWS = 8192             # export write granularity


class IngestResult:
    """Counts of one ingest call; ``str()`` is the Tcl command's result."""

    __slots__ = ("rows_seen", "inserted", "updated", "batches", "elapsed_ms")

    def __init__(self, rows_seen=0, inserted=0, updated=0, batches=0, elapsed_ms=0.0):
        self.rows_seen = rows_seen
        self.inserted = inserted
        self.updated = updated
        self.batches = batches
        self.elapsed_ms = elapsed_ms

    def __str__(self):
        return (f"rows_seen={self.rows_seen} inserted={self.inserted} updated={self.updated} "
                f"batches={self.batches} elapsed_ms={self.elapsed_ms:.3f}")

    def __repr__(self):
        return f"<IngestResult {self}>"



# characters of TSV decoded at once before its rows are packed (rowblock.py): the
# row tuples of one chunk (about 20k FlightState rows) are all that is alive at once
_PACK_CHARS = 1 << 20


def _batch_size(batch_size) -> int:
    try:
        if isinstance(batch_size, bool):
            raise ValueError
        n = batch_size if isinstance(batch_size, int) else int(str(batch_size).strip(), 10)
    except (ValueError, TypeError):
        n = 0
    if n <= 0:
        raise UsageError(f'bad batch_size "{batch_size}": must be an integer > 0', "BATCHSIZE")
    return n


def _handle(db, table, txn):
    return txn.table(table) if txn is not None else db.table(table)


def _batches(row_lists, n):
    """Consecutive lists of ``n`` rows (the last may be shorter) across ``row_lists``."""
    buf = []
    for rows in row_lists:
        i = 0
        if buf:
            i = n - len(buf)
            buf.extend(rows[:i])
            if len(buf) < n:
                continue
            yield buf
            buf = []
        stop = len(rows) - n
        while i <= stop:
            yield rows[i:i + n]
            i += n
        buf = rows[i:]
    if buf:
        yield buf


class _Progress:
    """Calls ``fn(phase, rows, elapsed_s)`` at most every ``interval`` seconds, and at phase ends."""

    def __init__(self, fn, interval, t0):
        self.fn = fn
        self.interval = interval
        self.t0 = t0
        self.next = t0 + interval

    def tick(self, phase, rows, final=False):
        if self.fn is None:
            return
        now = time.perf_counter()
        if final or now >= self.next:
            self.next = now + self.interval
            self.fn(phase, rows, now - self.t0)


def _apply(db, name, row_lists, batch_size, txn, result, progress):
    """Upsert the rows in batches: each batch its own transaction (or all through ``txn``).

    If a batch fails (an I/O error, the store turned read-only, endless
    conflicts), the batches before it stay committed; the error carries their
    counts as ``err.ingested`` (an IngestResult).
    """
    try:
        _apply_batches(db, name, row_lists, batch_size, txn, result, progress)
    except AerostoreError as e:
        e.ingested = result
        raise


def _upsert(txn, name, batch):
    return txn.table(name).upsert_checked(batch)      # rows the decoder validated


def _apply_batches(db, name, row_lists, batch_size, txn, result, progress):
    """Each batch one transaction, run again on a write conflict (retry.py: an
    upsert does not depend on what it read); or all through ``txn``."""
    with paused():
        for batch in _batches(row_lists, batch_size):
            if txn is not None:
                ins, upd = _upsert(txn, name, batch)
            else:
                ins, upd = run_in_transaction(db, _upsert, name, batch)
            result.inserted += ins
            result.updated += upd
            result.batches += 1
            progress.tick("apply", result.inserted + result.updated)
    progress.tick("apply", result.inserted + result.updated, final=True)


def ingest_tsv(db, table, data, batch_size=1024, *, txn=None, progress=None,
               progress_interval: float = 1.0) -> IngestResult:
    """Upsert TSV ``data`` (str or UTF-8 bytes) into ``table`` (a name or Schema).

    The whole input is decoded and validated first (DecodeError: nothing
    applied); then batches of ``batch_size`` rows are upserted, each batch one
    transaction, retried on a write conflict (an upsert does not depend on what
    it read).  Given ``txn``, every batch goes through that transaction and
    nothing is committed here.  ``progress(phase, rows, elapsed_s)``, if given,
    is called with phase "apply".
    """
    t0 = time.perf_counter()
    n = _batch_size(batch_size)
    schema = _handle(db, table, txn).schema
    blocks = _packed(schema, codec(schema).decode_lists(data, 1, _PACK_CHARS))
    result = IngestResult(rows_seen=sum(map(len, blocks)))
    try:
        _apply(db, schema.name, blocks, n, txn, result, _Progress(progress, progress_interval, t0))
    finally:
        del blocks
        if result.rows_seen >= sysmem.TRIM_ROWS:
            sysmem.trim()
    result.elapsed_ms = (time.perf_counter() - t0) * 1000.0
    return result


def _packed(schema, row_lists) -> list:
    """The row lists, each packed (rowblock.py) once the next one is decoded; an input
    of one list (a feed's batch) stays as it is: packing pays only when tuples of
    several lists would be alive at once."""
    out = []
    for rows in row_lists:
        if out:
            out[-1] = RowBlock(schema, out[-1])
        out.append(rows)
    if len(out) > 1:
        out[-1] = RowBlock(schema, out[-1])
    return out


def _checked_path(path, verb: str) -> str:
    """``path`` as text; a name with a NUL character (storage.fileio's rule) is
    ``UsageError`` (``AEROSTORE USAGE FILE``), like any file that cannot be used."""
    text = os.fsdecode(path)
    if has_nul(text):
        raise UsageError(f'cannot {verb} "{show(text)}": {NUL_IN_NAME}', "FILE")
    return text


def _file_chunks(path, c: Codec):
    """Validated row lists of a TSV file, read in blocks of ``_READ_BYTES``."""
    with open(path, "rb") as f:
        yield from c.decode_blocks(iter(partial(f.read, _READ_BYTES), b""))


def ingest_file(db, table, path, batch_size=1024, *, txn=None, progress=None,
                progress_interval: float = 1.0, hold_bytes: int = 128 << 20) -> IngestResult:
    """Upsert a TSV file into ``table``, streaming it in blocks.

    Pass 1 reads and validates the whole file (DecodeError: nothing applied).
    Files up to ``hold_bytes`` keep their decoded rows from pass 1, packed
    (rowblock.py); larger ones are read again in pass 2 and applied block by
    block, so a file is never in memory twice.  ``progress(phase,
    rows, elapsed_s)`` is called with phase "validate", then "apply", at most
    every ``progress_interval`` seconds and at the end of each phase.
    """
    t0 = time.perf_counter()
    n = _batch_size(batch_size)
    schema = _handle(db, table, txn).schema
    _checked_path(path, "read")
    c = codec(schema)
    prog = _Progress(progress, progress_interval, t0)
    seen = 0
    try:
        hold = os.path.getsize(path) <= hold_bytes
        held = [] if hold else None
        for rows in _file_chunks(path, c):
            seen += len(rows)
            if hold:
                held.append(RowBlock(schema, rows))
            prog.tick("validate", seen)
        prog.tick("validate", seen, final=True)
        result = IngestResult(rows_seen=seen)
        _apply(db, schema.name, held if hold else _file_chunks(path, c), n, txn, result, prog)
    except OSError as e:
        raise UsageError(f'cannot read "{path}": {e.strerror or e}', "FILE") from None
    finally:
        held = None
        if seen >= sysmem.TRIM_ROWS:
            sysmem.trim()
    result.elapsed_ms = (time.perf_counter() - t0) * 1000.0
    return result


def export_tsv(db, table, dest=None, *, query=None, txn=None):
    """Write rows of ``table`` as TSV: all of them, or those ``query`` selects.

    ``dest``: None (return the text), a path (returns the number of rows), or
    an object with ``write(str)`` (returns the number of rows).  A path is
    written through a temporary file renamed into place (``write_file_atomic``),
    so a failed export leaves an existing file as it was.  Reads one snapshot
    (``txn``'s if given).  Ingesting the output reproduces the rows exactly
    (floats are written with repr).
    """
    h = _handle(db, table, txn)
    c = codec(h.schema)
    if query is None:
        query = h.query()
    elif getattr(query, "_schema", None) is not h.schema:
        raise UsageError(f"export_tsv: the query is not on table {h.name}")
    rows = query.rows()
    if dest is None:
        return c.encode(rows)
    if isinstance(dest, (str, bytes, os.PathLike)):
        write_file_atomic(dest, lambda f: write_rows(f.write, c, rows, encode=True))
    else:
        write_rows(dest.write, c, rows)
    return len(rows)


def write_rows(write, c: Codec, rows, *, encode: bool = False) -> None:
    """``write`` the TSV text of ``rows`` in pieces of ``_ENCODE_ROWS`` rows.

    ``encode``: pieces go out as UTF-8 bytes, else as str.  A row that UTF-8
    cannot encode (a lone surrogate: the entry points refuse them, but
    ``TxnTable.upsert_checked`` stores rows as given) raises UsageError naming the
    row and field, before its piece is written.
    """
    for i in range(0, len(rows), _ENCODE_ROWS):
        part = rows[i:i + _ENCODE_ROWS]
        text = c.encode(part, start=i == 0)
        if not text.isascii() and surrogate_at(text) >= 0:
            _unencodable(c.schema, part)
        write(text.encode("utf-8") if encode else text)


def _unencodable(schema, rows):
    """Raise the UsageError for the first row of ``rows`` holding a lone surrogate."""
    for row in rows:
        for f, v in zip(schema.fields, row):
            if isinstance(v, str) and surrogate_at(v) >= 0:
                raise UsageError(f'cannot export row "{show(row[schema.key_pos])}" of table '
                                 f'{schema.name}: field "{f.name}" holds a lone surrogate, which '
                                 "UTF-8 cannot encode; set the field to valid text or delete the row",
                                 "VALUE", f.name)
    raise AssertionError("no row holds a lone surrogate")  # pragma: no cover


def write_file_atomic(path, fill) -> None:
    """Replace the file at ``path`` with what ``fill(f)`` writes to a binary file ``f``.

    The data goes to a new temporary file in the same directory (created with
    mode 0666 less the umask, or the replaced file's mode), which is fsync'ed
    and then renamed over ``path`` (a symlink is followed: its target is
    replaced); the directory is fsync'ed after.  Until the rename nothing at
    ``path`` changes, so when anything fails (an unwritable directory, a full
    disk, an error raised by ``fill``) the old file is intact and the
    temporary file is removed.  An OSError becomes ``UsageError`` (errorCode
    ``AEROSTORE USAGE FILE``); errors raised by ``fill`` pass through.
    """
    shown = _checked_path(path, "write")
    try:
        target = os.path.realpath(shown)
        folder, base = os.path.split(target)
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except FileNotFoundError:
            mode = None
        fd, tmp = _create_temp(folder, base)
    except OSError as e:
        raise UsageError(f'cannot write "{shown}": {e.strerror or e}', "FILE") from None
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as f:
                fd = -1
                fill(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
            tmp = None
            _fsync_dir(folder)
        finally:
            if fd >= 0:
                os.close(fd)
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
    except OSError as e:
        raise UsageError(f'cannot write "{shown}": {e.strerror or e}', "FILE") from None


def _create_temp(folder: str, base: str) -> tuple:
    """A new file ``.<base>.<random>.tmp`` in ``folder``: (descriptor, path)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = os.path.join(folder, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {base}")


def _fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (best effort where directories cannot be opened)."""
    try:
        dfd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
