"""The column section: how the checkpoint and the log's ``putcols`` record hold
many rows of one field as one binary payload.

A numeric section (``rows`` rows of a column of type T, size S bytes):

| offset | size | field |
|---|---|---|
| 0 | 1 | ``flags``: 1 = a null bitmap follows (some value is null); other bits 0 |
| 1 | ceil(rows / 8) if flags & 1 | null bitmap: bit i % 8 (least significant first) of byte i // 8 is set when row i is null |
| ... | rows * S | the values, the raw array of T (little-endian); 0 where null |

A string section:

| offset | size | field |
|---|---|---|
| 0 | 1 | ``flags``: 1 = a null bitmap follows; 2 = offsets form (below); other bits 0 |
| 1 | ceil(rows / 8) if flags & 1 | null bitmap, as above |
| ... | ... | joined form (flags & 2 clear): the values joined by ``"\\n"``, in UTF-8 (a null as ``""``); used when no value holds a newline, which the schema forbids anyway |
| ... | 8 * rows | offsets form (flags & 2): ``u64`` end offset of each value in the bytes that follow |
| ... | ... | offsets form: the UTF-8 values, back to back |

Strings may hold lone surrogates (written and read with ``surrogatepass``).
Column types are named by their numpy type string: ``"str"`` (the key and Str
fields) or one of ``NUMERIC`` (``columns.column_dtype``: the narrowest int
type that holds the field's range, ``"<f8"``, ``"|i1"`` for a bool).

``Slice`` builds the sections of rows given chunk by chunk (as tuples or as
columns); ``numeric`` and ``strings`` read one back, raising ValueError for a
payload that does not fit its type and row count (the caller names where).
"""

from __future__ import annotations

import numpy as np

from ..columns import column_dtype

__all__ = ["NULLS", "OFFSETS", "NUMERIC", "U8", "utf8", "column_types", "Slice", "bitmap",
           "numeric", "strings"]

NULLS, OFFSETS = 1, 2
NUMERIC = {"<i8", "<u8", "<i4", "<u4", "<i2", "<u2", "<f8", "|i1"}
U8 = np.dtype(np.uint8)


def column_types(fields) -> list | None:
    """Per field of a schema (``Schema.fields``), its column's numpy dtype
    (little-endian), or None for a string field; None for the whole when an
    int field's range fits no 64-bit type (such a table is kept as rows)."""
    dtypes = [None if f.kind == "str" else column_dtype(f) for f in fields]
    if any(dt is None and f.kind != "str" for dt, f in zip(dtypes, fields)):
        return None
    return [None if dt is None else dt.newbyteorder("<") for dt in dtypes]


def utf8(s: str) -> bytes:
    """``s`` in UTF-8, lone surrogates (which Tcl can produce) passed through."""
    try:
        return s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogatepass")


class Slice:
    """The sections of some rows, one per field, built chunk by chunk (``add``: row
    tuples; ``add_columns``: column pieces), then read out per field
    (``section``: its payload parts, to be written back to back).  ``dtypes``:
    ``column_types``.  ``nbytes`` counts the strings' bytes so far (a checkpoint
    cuts a slice past a limit)."""

    def __init__(self, dtypes: list):
        self.dtypes = dtypes
        self.n = 0
        self.nbytes = 0
        self.sizes = []                         # rows per chunk
        self.parts = [[] for _ in dtypes]       # per chunk: numeric, an array; str, joined bytes or [bytes]
        self.nulls = [[] for _ in dtypes]       # per chunk: a bool array, or None when no value is null
        self.records = np.dtype([(f"f{p}", "O" if dt is None else dt) for p, dt in enumerate(dtypes)])

    def add(self, chunk: list) -> None:
        k = len(chunk)
        cols = None
        if self.records is not None:
            # one C pass over the rows into a record array: a third faster than zip(*chunk)
            # and a conversion per column; a null in an int field makes it fail (then
            # this slice transposes with zip)
            try:
                rec = np.array(chunk, self.records)
            except (TypeError, ValueError, OverflowError):
                self.records = None
            else:
                cols = [rec[f"f{p}"] for p in range(len(self.dtypes))]
        if cols is None:
            cols = list(zip(*chunk))
            if len(cols) != len(self.dtypes):
                raise ValueError(f"a row of {len(cols)} values for {len(self.dtypes)} "
                                 "fields")
        for p, dt in enumerate(self.dtypes):
            vals = cols[p]
            nul = None
            if dt is not None:
                # the fast path converts, and fails (ints) or gives NaN (floats) on a null
                try:
                    arr = np.array(vals, dt)
                except TypeError:
                    arr = None
                if arr is None or (dt.kind == "f" and np.isnan(arr).any()):
                    vals = [r[p] for r in chunk]            # the values as given
                    nul = np.fromiter((v is None for v in vals), bool, k)
                    if nul.any():
                        arr = np.array([0 if v is None else v for v in vals], dt)
                    else:
                        nul = None
                        if arr is None:
                            arr = np.array(vals, dt)        # raises the conversion's error
                self.nulls[p].append(nul)
                self.parts[p].append(arr)
                continue
            self._add_strs(p, vals.tolist() if vals.__class__ is np.ndarray else vals, k)
        self.sizes.append(k)
        self.n += k

    def add_columns(self, cols: list, nulls: list, k: int) -> None:
        """The next ``k`` rows, given as columns (``heap.ColumnSnapshot`` slices: an
        array of the field's type, or a list; a bool array of nulls, or None)."""
        for p, dt in enumerate(self.dtypes):
            if dt is None:
                self._add_strs(p, cols[p], k)
                continue
            nul = nulls[p]
            self.parts[p].append(np.ascontiguousarray(cols[p], dt))
            self.nulls[p].append(nul if nul is not None and nul.any() else None)
        self.sizes.append(k)
        self.n += k

    def _add_strs(self, p: int, vals: list, k: int) -> None:
        """String field ``p``'s piece of the next ``k`` rows (None: null): joined by newlines."""
        nul = None
        try:
            joined = "\n".join(vals)
        except TypeError:
            nul = np.fromiter((v is None for v in vals), bool, k)
            vals = ["" if v is None else v for v in vals]
            joined = "\n".join(vals)
        self.nulls[p].append(nul)
        if joined.count("\n") == k - 1:
            data = utf8(joined)
            self.nbytes += len(data)
        else:                                   # a value holds a newline: offsets form
            data = [utf8(v) for v in vals]
            self.nbytes += sum(map(len, data))
        self.parts[p].append(data)

    def column(self, p: int):
        """``(values, nulls)`` of numeric field ``p`` over the slice (nulls: None if none)."""
        return np.concatenate(self.parts[p]), self._nulls(p)

    def _nulls(self, p: int):
        ns = self.nulls[p]
        if all(x is None for x in ns):
            return None
        return np.concatenate([np.zeros(k, bool) if x is None else x for x, k in zip(ns, self.sizes)])

    def section(self, p: int, vals=None, nulls=None) -> list:
        """The payload parts of field ``p``'s section (``vals``, ``nulls``: ``column(p)``)."""
        if self.dtypes[p] is not None:
            if vals is None:
                vals, nulls = self.column(p)
            if nulls is None:
                return [bytes([0]), vals.view(U8)]
            return [bytes([NULLS]), np.packbits(nulls, bitorder="little"), vals.view(U8)]
        nulls = self._nulls(p)
        parts = self.parts[p]
        flags = 0
        out = []
        if nulls is not None:
            flags |= NULLS
            out.append(np.packbits(nulls, bitorder="little"))
        if all(part.__class__ is bytes for part in parts):
            out.append(b"\n".join(parts))
        else:
            flags |= OFFSETS
            values = []
            for part in parts:
                values.extend(part.split(b"\n") if part.__class__ is bytes else part)
            ends = np.cumsum(np.fromiter(map(len, values), np.int64, len(values)), dtype="<u8")
            out.append(ends.view(U8))
            out.append(b"".join(values))
        return [bytes([flags])] + out


def bitmap(body, at: int, rows: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(body, U8, (rows + 7) // 8, at), count=rows,
                         bitorder="little").view(bool)


def strings(body: bytes, rows: int):
    """``(values, nulls)`` of a string section's payload (checksum already checked)."""
    flags = body[0]
    at = 1
    nul = None
    if flags & ~(NULLS | OFFSETS):
        raise ValueError(f"unknown flags {flags:#x}")
    if flags & NULLS:
        nb = (rows + 7) // 8
        if len(body) < at + nb:
            raise ValueError("section too short for its null bitmap")
        nul = bitmap(body, at, rows)
        at += nb
    try:
        if flags & OFFSETS:
            if len(body) < at + 8 * rows:
                raise ValueError("section too short for its offsets")
            ends = np.frombuffer(body, "<u8", rows, at).astype(np.int64)
            data = body[at + 8 * rows:]
            if int(ends[-1]) != len(data) or (np.diff(ends) < 0).any() or ends[0] < 0:
                raise ValueError("offsets do not match the string bytes")
            vals = [data[a:b].decode("utf-8", "surrogatepass")
                    for a, b in zip([0] + ends[:-1].tolist(), ends.tolist())]
        else:
            vals = body[at:].decode("utf-8", "surrogatepass").split("\n")
            if len(vals) != rows:
                raise ValueError(f"{len(vals)} strings for {rows} rows")
    except UnicodeDecodeError:
        raise ValueError("a string is not valid UTF-8") from None
    if nul is not None:
        for i in np.flatnonzero(nul).tolist():
            vals[i] = None
    return vals, nul


def numeric(body, rows: int, dt):
    """``(values, nulls)`` of a numeric section of ``rows`` values of type ``dt``
    (``body``: its payload, bytes-like): the values a read-only array over
    ``body`` (no copy), nulls a bool array or None.  ValueError if the payload's
    size or flags do not fit."""
    size = rows * dt.itemsize
    lead = len(body) - size                     # flags, and the null bitmap if any
    nb = (rows + 7) // 8
    if lead not in (1, 1 + nb):
        raise ValueError(f"{len(body)} bytes for {rows} rows of {dt.str}")
    if body[0] != (NULLS if lead > 1 else 0):
        raise ValueError(f"flags {body[0]:#x} do not match its size")
    nul = bitmap(body, 1, rows) if lead > 1 else None
    return np.frombuffer(body, dt, rows, lead), nul
