"""TSV decode/encode for any table (SPEC section 1), and bulk ingest/export.

Format: one row a line, the schema's fields in order, tab-separated (for
FlightState ``flight_id lat lon altitude gs updated_at``).  ``\\n`` or ``\\r\\n``
ends a line; empty lines are skipped; an empty column is null (the key may not
be empty); one leading UTF-8 byte-order mark is accepted and ignored.  Numbers
are plain ASCII decimals (``-12``, ``+7``, ``3.25``, ``1e-3``); no spaces,
underscores, ``nan`` or ``inf``.  Anything else -- a missing or extra column, a
value that does not parse or is out of its field's range, invalid UTF-8, a CR
inside a line -- raises ``DecodeError(line, column, what)`` for the first bad
line, and nothing of that call is applied.

API used by Python programs and by the Tcl bridge (``FlightState ingest_tsv``,
``ingest_file``, ``write_tsv``)::

    codec(schema)                         -> Codec (cached per schema)
    Codec.decode(data, first_line=1)      -> list of validated row tuples (str or bytes)
    Codec.encode(rows)                    -> str, one line per row (floats via repr)
    ingest_tsv(db, table, data, batch_size=1024, *, txn=None, progress=None)  -> IngestResult
    ingest_file(db, table, path, batch_size=1024, *, txn=None, progress=None,
                hold_bytes=128 MiB)                                 -> IngestResult
    export_tsv(db, table, dest=None, *, query=None, txn=None)       -> str, or rows written
    str(IngestResult) == "rows_seen=N inserted=N updated=N batches=N elapsed_ms=F"
    progress(phase, rows, elapsed_s)      phase "validate" (files) or "apply"

Ingest is an upsert by key in batches of ``batch_size`` rows, each batch one
transaction (or, given ``txn``, all through that transaction, uncommitted).
The whole input is validated before the first batch commits; if a later batch
fails (I/O error), the error's ``ingested`` attribute counts what committed.
docs/ingest.md has the full rules.

Speed: decoding works on chunks of whole lines with C-speed builtins
(``str.split`` mapped over lines, one generated comprehension converting a
chunk, min/max/sum over columns for range and finiteness checks).  Only when
that fast path rejects a chunk does a per-line reference decoder run, to find
the exact line and column (or to accept what the fast path was too strict
about).
"""

from __future__ import annotations

import math
import os
import re
import secrets
import stat
import time
from itertools import repeat
from operator import itemgetter

from .errors import AerostoreError, DecodeError, UsageError
from .gcpause import paused
from .retry import run_in_transaction
from .schema import surrogate_at
from .words import BOOL_WORDS, parse_bool, show

__all__ = ["Codec", "codec", "IngestResult", "ingest_tsv", "ingest_file", "export_tsv",
           "write_rows", "write_file_atomic"]

_BOM = "\ufeff"
_BOM_BYTES = b"\xef\xbb\xbf"
_CHUNK_CHARS = 1 << 22          # decode granularity (whole lines)
_READ_BYTES = 1 << 22           # file read size
_ENCODE_ROWS = 8192             # export write granularity
# What int()/float() accept but TSV does not: whitespace, digit separators,
# non-ASCII digits.  A chunk free of these (and ASCII) needs no per-cell check.
_LENIENT_CHARS = (" ", "_", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f")
_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class Codec:
    """The TSV decoder and encoder of one schema.

    The fast paths are generated code (one comprehension per schema), so a
    row costs one tuple build with inline conversions and no Python calls.
    """

    def __init__(self, schema):
        self.schema = schema
        self.width = schema.width
        fields = schema.fields
        self._ints = [(i, f.lo, f.hi) for i, f in enumerate(fields) if f.kind == "int"]
        self._floats = [i for i, f in enumerate(fields) if f.kind == "float"]
        self._numeric = [i for i, f in enumerate(fields) if f.kind in ("int", "float")]
        # str fields (the key among them) whose empty cell is an error, not null
        self._nonempty = [i for i, f in enumerate(fields) if f.kind == "str" and not f.nullable]
        # -0.0 must become 0.0 ("+ 0.0" does it); chunks without a float zero,
        # most of them, skip that per-value addition
        self._convert_zero = self._compile_convert(fix_zero=True)
        self._convert = self._compile_convert(fix_zero=False) if self._floats else self._convert_zero
        self._encode_fast, self._encode_slow = self._compile_encode()

    # -- code generation ---------------------------------------------------
    def _compile_convert(self, fix_zero: bool):
        bool_fast = {}
        for word, val in BOOL_WORDS.items():
            for w in (word, word.upper(), word.title()):
                bool_fast[w] = val
        bool_nonnull = dict(bool_fast)
        bool_fast[""] = None
        names = [f"v{i}" for i in range(self.width)]
        exprs = []
        for i, f in enumerate(self.schema.fields):
            v = names[i]
            # a non-nullable number has no "if empty" branch: int('') fails,
            # and the slow path reports the empty cell
            null = f" if {v} else None" if f.nullable else ""
            if f.kind == "int":
                exprs.append(f"_int({v}){null}")
            elif f.kind == "float":
                exprs.append(f"_float({v}){' + 0.0' if fix_zero else ''}{null}")
            elif f.kind == "bool":
                exprs.append(f"_bool[{v}]" if f.nullable else f"_bool_nonnull[{v}]")
            else:
                exprs.append(f"{v} or None" if f.nullable else v)
        target = ", ".join(names) + ("," if self.width == 1 else "")
        src = (f"def convert(cells):\n"
               f"    return [({', '.join(exprs)},) for {target} in cells]\n")
        ns = {"_int": int, "_float": float, "_bool": bool_fast, "_bool_nonnull": bool_nonnull}
        exec(src, ns)
        return ns["convert"]

    def _compile_encode(self):
        names = [f"v{i}" for i in range(self.width)]
        parts = []
        for i, f in enumerate(self.schema.fields):
            if f.kind == "float":
                parts.append("{%s!r}" % names[i])
            elif f.kind == "bool":
                parts.append("{%s:d}" % names[i])
            else:
                parts.append("{%s}" % names[i])
        fmt = "\\t".join(parts) + "\\n"
        target = ", ".join(names) + ("," if self.width == 1 else "")
        src = (f"def encode(rows, _slow):\n"
               f"    return [f\"{fmt}\" if None not in r else _slow(r)\n"
               f"            for r in rows for {target} in (r,)]\n")
        ns = {}
        exec(src, ns)
        to_text = [f.to_text for f in self.schema.fields]

        def encode_slow(row):
            return "\t".join([t(v) for t, v in zip(to_text, row)]) + "\n"

        return ns["encode"], encode_slow

    # -- encode --------------------------------------------------------------
    def encode(self, rows, start: bool = True) -> str:
        """TSV text of row tuples (field order), one line each, ``\\n``-terminated.

        ``start``: the text begins a document; if its first key starts with a
        BOM, a BOM is put before it, since decoding drops one leading BOM.
        """
        text = "".join(self._encode_fast(rows, self._encode_slow))
        return _BOM + text if start and text.startswith(_BOM) else text

    # -- decode --------------------------------------------------------------
    def decode(self, data, first_line: int = 1) -> list:
        """Validated row tuples of a whole TSV input (str, or UTF-8 bytes).

        A leading BOM is dropped.  Raises DecodeError for the first bad line.
        Works chunk by chunk, so bytes are never decoded into one big str.
        """
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data)
            chunks = self.decode_chunks(data, first_line, 3 if data.startswith(_BOM_BYTES) else 0)
        elif isinstance(data, str):
            chunks = self.decode_chunks(data, first_line, 1 if data.startswith(_BOM) else 0)
        else:
            raise UsageError(f"TSV data must be str or bytes, not {type(data).__name__}")
        out = []
        for rows in chunks:
            out.extend(rows)
        return out

    def decode_chunks(self, data, first_line: int = 1, start: int = 0):
        """Yield lists of validated rows, one per chunk of whole lines of ``data``
        (str, or UTF-8 bytes) from offset ``start``."""
        is_bytes = isinstance(data, bytes)
        nl = b"\n" if is_bytes else "\n"
        pos, n, line = start, len(data), first_line
        find = data.find
        while pos < n:
            end = find(nl, pos + _CHUNK_CHARS)
            end = n if end < 0 else end + 1
            chunk = data[pos:end]
            yield self.decode_text(self.text_of(chunk, line) if is_bytes else chunk, line)
            line += chunk.count(nl)
            pos = end

    def text_of(self, data: bytes, first_line: int = 1) -> str:
        """UTF-8 bytes (whole lines) as str.

        Invalid UTF-8 raises DecodeError, but for the first bad line, as str
        input would: the bytes are decoded again with each invalid byte kept as
        a lone surrogate (``surrogateescape``) and checked line by line, so a
        bad line before the invalid byte is reported first.
        """
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            self._slow(data.decode("utf-8", "surrogateescape"), first_line, from_bytes=True)
            raise AssertionError("invalid UTF-8 that no line check found") from None  # pragma: no cover

    def decode_text(self, text: str, first_line: int = 1) -> list:
        """Validated rows of ``text`` (whole lines, no BOM handling); line numbers
        start at ``first_line``."""
        with paused():
            rows = self._fast(text)
        if rows is None:
            rows = self._slow(text, first_line)
        return rows

    def _fast(self, text: str):
        """Rows, or None if anything looks wrong (the slow path then decides)."""
        if "\r" in text:
            text = text.replace("\r\n", "\n")
            if "\r" in text:
                return None
        clean = text.isascii()
        if not clean:
            if surrogate_at(text) >= 0:
                return None
        else:
            for ch in _LENIENT_CHARS:
                if ch in text:
                    clean = False
                    break
        lines = text.split("\n")
        if "" in lines:
            lines = [ln for ln in lines if ln]
        if not lines:
            return []
        # the conversion's tuple unpacking checks the column count (ValueError)
        cells = map(str.split, lines, repeat("\t"))
        if not clean:
            cells = list(cells)
            try:
                for i in self._numeric:
                    col = "\t".join(map(itemgetter(i), cells))
                    if not col.isascii():
                        return None
                    for ch in _LENIENT_CHARS:
                        if ch in col:
                            return None
            except IndexError:      # a short line
                return None
        try:
            rows = self._convert(cells)
        except (ValueError, KeyError):
            return None
        for i in self._nonempty:
            if "" in map(itemgetter(i), rows):
                return None
        for i, lo, hi in self._ints:
            col = list(map(itemgetter(i), rows))
            if None in col:
                col = [v for v in col if v is not None]
                if not col:
                    continue
            if min(col) < lo or max(col) > hi:
                return None
        zero = False
        for i in self._floats:
            col = list(map(itemgetter(i), rows))
            if None in col:
                col = [v for v in col if v is not None]
            if not math.isfinite(sum(col)):
                return None
            zero = zero or 0.0 in col
        if zero and self._convert is not self._convert_zero:
            rows = self._convert_zero(map(str.split, lines, repeat("\t")))
        return rows

    def _slow(self, text: str, first_line: int, from_bytes: bool = False) -> list:
        """The reference decoder, line by line; raises DecodeError at the first bad line.

        A CR is part of a line ending only before an LF: at the very end of
        the input (the last piece after the last LF) it is a CR inside a line.
        ``from_bytes``: see ``decode_line``.
        """
        rows = []
        append = rows.append
        decode_line = self.decode_line
        lines = text.split("\n")
        last = first_line + len(lines) - 1
        for n, line in enumerate(lines, first_line):
            if line.endswith("\r") and n != last:
                line = line[:-1]
            if line:
                append(decode_line(line, n, from_bytes))
        return rows

    def decode_line(self, line: str, lineno: int, from_bytes: bool = False) -> tuple:
        """One line (without its line ending) as a validated row.

        Checks in this order: a CR or a lone surrogate (whichever comes first),
        the column count, then the values left to right.  ``from_bytes``: the
        line was decoded from bytes with ``surrogateescape``, so a surrogate
        U+DC80..U+DCFF is an invalid byte, reported as invalid UTF-8.
        """
        cr = line.find("\r")
        bad = surrogate_at(line)
        if bad >= 0 and (cr < 0 or bad < cr):
            ch = ord(line[bad])
            what = (f"invalid UTF-8 (byte 0x{ch - 0xDC00:02x})" if from_bytes and 0xDC80 <= ch <= 0xDCFF
                    else "invalid Unicode (lone surrogate)")
            raise DecodeError(lineno, line.count("\t", 0, bad) + 1, what)
        if cr >= 0:
            raise DecodeError(lineno, line.count("\t", 0, cr) + 1,
                              "CR inside a line (only CRLF line endings are accepted)")
        cells = line.split("\t")
        width = self.width
        if len(cells) != width:
            col = min(len(cells), width) + 1
            raise DecodeError(lineno, col, f"expected {width} columns "
                              f"({' '.join(self.schema.names)}), got {len(cells)}")
        row = []
        for col, (f, s) in enumerate(zip(self.schema.fields, cells), 1):
            if not s:
                if f.is_key:
                    raise DecodeError(lineno, col, f'empty key (field "{f.name}")')
                if not f.nullable:
                    raise DecodeError(lineno, col, f'empty value for field "{f.name}", which may not be null')
                row.append(None)
                continue
            kind = f.kind
            if kind == "int":
                try:
                    v = int(s) if _INT_RE.fullmatch(s) else None
                except ValueError:      # more digits than int() converts
                    v = None
                if v is None or not f.lo <= v <= f.hi:
                    raise DecodeError(lineno, col, f'bad value "{show(s)}" for field "{f.name}": '
                                                   f"expected an integer from {f.lo} to {f.hi}")
            elif kind == "float":
                v = float(s) + 0.0 if _FLOAT_RE.fullmatch(s) else None
                if v is None or not math.isfinite(v):
                    raise DecodeError(lineno, col, f'bad value "{show(s)}" for field "{f.name}": '
                                                   "expected a finite number")
            elif kind == "bool":
                v = parse_bool(s, tcl=False)
                if v is None:
                    raise DecodeError(lineno, col, f'bad value "{show(s)}" for field "{f.name}": '
                                                   f"expected a boolean ({' '.join(BOOL_WORDS)})")
            else:
                v = s
            row.append(v)
        return tuple(row)


_CODECS: dict = {}


def codec(schema) -> Codec:
    """The (cached) Codec of a schema."""
    c = _CODECS.get(schema)
    if c is None or c.schema is not schema:
        c = _CODECS[schema] = Codec(schema)
    return c


# -- ingest and export -------------------------------------------------------------

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
    return txn.table(name).upsert_many(batch)


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
    rows = codec(schema).decode(data)
    result = IngestResult(rows_seen=len(rows))
    _apply(db, schema.name, (rows,), n, txn, result, _Progress(progress, progress_interval, t0))
    result.elapsed_ms = (time.perf_counter() - t0) * 1000.0
    return result


def _file_chunks(path, c: Codec):
    """Validated row lists of a TSV file, read in blocks of whole lines."""
    line = 1
    first = True
    with open(path, "rb") as f:
        tail = b""
        while True:
            block = f.read(_READ_BYTES)
            if first:
                first = False
                if block.startswith(_BOM_BYTES):
                    block = block[3:]
            if not block:
                break
            block = tail + block
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                tail = block
                continue
            tail = block[cut:]
            yield c.decode_text(c.text_of(block[:cut], line), line)
            line += block.count(b"\n", 0, cut)
        if tail:
            yield c.decode_text(c.text_of(tail, line), line)


def ingest_file(db, table, path, batch_size=1024, *, txn=None, progress=None,
                progress_interval: float = 1.0, hold_bytes: int = 128 << 20) -> IngestResult:
    """Upsert a TSV file into ``table``, streaming it in blocks.

    Pass 1 reads and validates the whole file (DecodeError: nothing applied).
    Files up to ``hold_bytes`` keep their decoded rows from pass 1 (they become
    the table's rows anyway); larger ones are read again in pass 2 and applied
    block by block, so a file is never in memory twice.  ``progress(phase,
    rows, elapsed_s)`` is called with phase "validate", then "apply", at most
    every ``progress_interval`` seconds and at the end of each phase.
    """
    t0 = time.perf_counter()
    n = _batch_size(batch_size)
    schema = _handle(db, table, txn).schema
    c = codec(schema)
    prog = _Progress(progress, progress_interval, t0)
    try:
        hold = os.path.getsize(path) <= hold_bytes
        held = [] if hold else None
        seen = 0
        for rows in _file_chunks(path, c):
            seen += len(rows)
            if hold:
                held.append(rows)
            prog.tick("validate", seen)
        prog.tick("validate", seen, final=True)
        result = IngestResult(rows_seen=seen)
        _apply(db, schema.name, held if hold else _file_chunks(path, c), n, txn, result, prog)
    except OSError as e:
        raise UsageError(f'cannot read "{path}": {e.strerror or e}', "FILE") from None
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
    ``TxnTable.upsert_many`` stores rows as given) raises UsageError naming the
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
    shown = os.fsdecode(path)
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
