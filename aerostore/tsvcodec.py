"""The TSV row format of any table (docs/ingest.md, 1. The TSV format): decode and encode.

Format: one row a line, the schema's fields in order, tab-separated (for
FlightState ``flight_id lat lon altitude gs updated_at``).  ``\\n`` or ``\\r\\n``
ends a line; empty lines are skipped; an empty column is null (the key may not
be empty); one leading UTF-8 byte-order mark is accepted and ignored.  Numbers
are plain ASCII decimals (``-12``, ``+7``, ``3.25``, ``1e-3``); no spaces,
underscores, ``nan`` or ``inf``; booleans are ``words.BOOL_WORDS``.  Anything
else -- a missing or extra column, a value that does not parse or is out of its
field's range, invalid UTF-8, a CR inside a line -- raises
``DecodeError(line, column, what)`` for the first bad line.

API (ingest.py moves rows between this format, files and tables)::

    codec(schema)                          -> Codec (cached per schema)
    Codec.decode(data, first_line=1)       -> list of validated row tuples (str or bytes)
    Codec.decode_chunks(data, ...)         -> the same, a list per chunk of whole lines
    Codec.decode_blocks(blocks)            -> the same, from byte blocks read one by one
    Codec.encode(rows, start=True)         -> str, one line per row (floats via repr)

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
import re
from itertools import repeat
from operator import itemgetter

from .errors import DecodeError, UsageError
from .gcpause import paused
from .schema import surrogate_at
from .words import BOOL_WORDS, parse_bool, show

__all__ = ["Codec", "codec"]

_BOM = "\ufeff"
_BOM_BYTES = b"\xef\xbb\xbf"
_CHUNK_CHARS = 1 << 22          # decode granularity (whole lines)
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
        out = []
        for rows in self.decode_lists(data, first_line):
            out.extend(rows)
        return out

    def decode_lists(self, data, first_line: int = 1, chunk_chars: int = 0):
        """``decode`` as a list of validated rows per chunk of about ``chunk_chars``
        characters of whole lines (0: the default chunk), yielded as each chunk is
        decoded.  The type of ``data`` is checked at once (UsageError)."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data)
            start = 3 if data.startswith(_BOM_BYTES) else 0
        elif isinstance(data, str):
            start = 1 if data.startswith(_BOM) else 0
        else:
            raise UsageError(f"TSV data must be str or bytes, not {type(data).__name__}")
        return self.decode_chunks(data, first_line, start, chunk_chars)

    def decode_chunks(self, data, first_line: int = 1, start: int = 0, chunk_chars: int = 0):
        """Yield lists of validated rows, one per chunk of whole lines of ``data``
        (str, or UTF-8 bytes) from offset ``start``, of about ``chunk_chars``
        characters each (0: ``_CHUNK_CHARS``)."""
        is_bytes = isinstance(data, bytes)
        nl = b"\n" if is_bytes else "\n"
        pos, n, line = start, len(data), first_line
        find = data.find
        step = chunk_chars or _CHUNK_CHARS
        while pos < n:
            end = find(nl, pos + step)
            end = n if end < 0 else end + 1
            chunk = data[pos:end]
            yield self.decode_text(self.text_of(chunk, line) if is_bytes else chunk, line)
            line += chunk.count(nl)
            pos = end

    def decode_blocks(self, blocks, first_line: int = 1):
        """Yield lists of validated rows from UTF-8 ``blocks`` read one after
        another (a file read piece by piece): a leading BOM in the first block
        is dropped, and a line cut between two blocks is decoded whole with the
        next one."""
        line = first_line
        first = True
        tail = b""
        for block in blocks:
            if first:
                first = False
                if block.startswith(_BOM_BYTES):
                    block = block[3:]
            if not block:
                continue
            block = tail + block
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                tail = block
                continue
            tail = block[cut:]
            yield self.decode_text(self.text_of(block[:cut], line), line)
            line += block.count(b"\n", 0, cut)
        if tail:
            yield self.decode_text(self.text_of(tail, line), line)

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
