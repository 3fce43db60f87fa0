"""Columns: the settled rows of one table, the only copy of them: a typed numpy
array per numeric field, a list per string field.

Why: a settled row as a Python tuple of boxed values costs about 220 bytes (a
FlightState row); in typed arrays it costs the values' own bytes (the
decisions of 2026-11-29, fifth session).  And a predicate over Python tuples
costs a bytecode loop per row, with the GIL held throughout; over typed arrays
it is a few numpy expressions per chunk of rows, at C speed.  Under a live
feed every reader's filter work is time that the feed and the other readers
wait for (docs/architecture.md, "The live feed"), so scans and index walks
test the settled rows here, and only the few slots with a version chain in
Python.  A row is made a tuple again only when a reader returns it (``row``,
``rows_of``) or a writer gives it a new version.

Layout, per slot (the heap's slot numbers, heap.py):

- ``state[slot]`` (uint8): ``EMPTY`` (a free slot, or past the end),
  ``FROZEN`` (the columns hold the row, and it is visible to every snapshot:
  the heap's ``rows[slot]`` is a tuple), ``CHAIN`` (a version chain: the
  columns say nothing; read ``rows[slot]``);
- ``cols[pos][slot]``: the value of numeric field ``pos`` (float64, int8 for
  bools, and for ints the narrowest of int16, uint16, int32, uint32, int64 and
  uint64 that holds the field's range: ``column_dtype``), 0 where null;
- ``nulls[pos][slot]`` (bool): the field is null;
- ``strs[pos][slot]``: the value of string field ``pos`` (a str, None where
  null or the slot is not FROZEN), the key field excepted: the heap's
  ``rows[slot]`` is the key of a settled row (heap.py); an int field too
  wide for 64 bits (``column_dtype``) has such a list of ints.

The arrays have a capacity (grown by a quarter when a slot past it is
written: amortised O(1) per slot, and at most a quarter of them unused, where
doubling left up to half, 13 B a FlightState row at 1M rows); slots past ``n``
are EMPTY.

Writers (the heap, under the table's exclusive latch, one at a time) call
``thaw`` when a slot gets a chain, ``freeze`` when it settles, ``clear``
when it is freed, and ``load``/``adopt`` for a bulk replacement.  Only
``freeze`` and ``load`` write values, and the heap calls them only in a
writer section that bumps ``store.fseq`` (heap.py): a reader that reads
values with the same even ``fseq`` before and after read no write of them
(``TableStore.row_at`` and ``rows_at`` read rows so).  ``freeze``, ``load``
and ``clear`` also hold the read gate while they write (readgate.py: the Tcl
shim's ``get`` reads settled rows here without the GIL), and ``_publish``
tells it that the arrays were replaced.

Readers take no latch: they call ``marks`` with the terms ``vector_terms``
says it answers, which reads ``arrays`` (the state, columns, null arrays and
the row views, published together by one reference: a capacity change
replaces them all) once, and each slot's state before its values.  What a
reader of ``marks`` may meet, and why each is harmless (``s`` is its
snapshot, registered while it reads):

- a slot read ``FROZEN`` holds the values of the row every snapshot sees: a
  freeze writes the values before the state, and a slot it read ``FROZEN`` that
  a writer thaws meanwhile gets a version newer than ``s`` (the commit is not
  published yet), so the old values are still the row ``s`` sees;
- a slot read ``CHAIN`` is read from the heap (``rows[slot]``), which may by
  then be a tuple (frozen since) or None (freed since: the row was dead for
  ``s`` too); ``mvcc.visible`` takes both;
- arrays captured before a capacity change miss later writes: they show an
  older state of each slot, which is one of the two cases above;
- a slot past the captured capacity (allocated since) is marked ``CHAIN``.
"""

from __future__ import annotations

from operator import itemgetter

import numpy as np

from .readgate import changed as _gate_changed, hold as _gate_hold, release as _gate_release

__all__ = ["Columns", "EMPTY", "FROZEN", "CHAIN", "VECTOR_OPS", "column_dtype", "vector_terms",
           "view_layout", "view_reads", "value_list"]

EMPTY, FROZEN, CHAIN = 0, 1, 2

_MIN_CAP = 1024
_FEW_ROWS = 64      # fewer rows than this: rows_of makes them one by one

# ops a column answers exactly as query.py's generated predicate does
# (a null satisfies none of them but "null"); "true"/"false" on bool columns only
VECTOR_OPS = frozenset(("eq", "ne", "lt", "le", "gt", "ge", "range", "in", "null", "notnull"))


_F64, _I8, _I64, _U64 = (np.dtype(t) for t in (np.float64, np.int8, np.int64, np.uint64))
# an int field's column: the narrowest of these that holds its range (not int8:
# that is a bool's, as a checkpoint's column types say)
_INTS = [np.dtype(t) for t in (np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64)]
# the integer constants a comparison on an int column takes exactly
_INT_LIMITS = {dt: (int(np.iinfo(dt).min), int(np.iinfo(dt).max)) for dt in _INTS}


def column_dtype(field):
    """The numpy dtype of ``field``'s column, or None (a list of Python objects:
    strings, and the int fields whose range takes both negative values and
    values past 2^63 - 1, which no 64-bit type holds).  An int field gets the
    narrowest integer type that holds its range (FlightState's altitude, 32
    bits, and gs, 16: 10 bytes a row less than int64 columns)."""
    kind = field.kind
    if kind == "float":
        return _F64
    if kind == "bool":
        return _I8
    if kind == "int":
        lo, hi = field.lo, field.hi
        if lo is None or hi is None:
            return None if (lo is None or lo < 0) and (hi is None or hi >= 1 << 63) else (
                _U64 if lo is not None and lo >= 0 else _I64)
        for dt in _INTS:
            a, b = _INT_LIMITS[dt]
            if a <= lo and hi <= b:
                return dt
        return None
    return None


def vector_terms(schema, terms) -> tuple[list, list]:
    """Split ``terms`` into (those a Columns of ``schema`` answers exactly, the rest).  O(terms)."""
    vec, rest = [], []
    for t in terms:
        (vec if _answers(schema, t) else rest).append(t)
    return vec, rest


def _answers(schema, t) -> bool:
    p = t.pos
    if p == schema.key_pos:
        return False
    f = schema.fields[p]
    dt = column_dtype(f)
    if dt is None:
        return False
    op = t.op
    if op in ("true", "false"):
        return f.kind == "bool"
    if op not in VECTOR_OPS:
        return False
    if f.kind != "int" or op in ("null", "notnull"):
        return True
    # an integer constant outside the column's range has no numpy comparison
    # that agrees with Python's; such terms stay in Python
    lo, hi = _INT_LIMITS[dt]
    vals = t.values[0] if op == "in" else t.values
    return all(v.__class__ is int and lo <= v <= hi for v in vals)


class Columns:
    """Typed arrays of a table's settled rows; see the module docstring."""

    def __init__(self, schema):
        self.schema = schema
        self.key_pos = schema.key_pos
        self.dtypes = {}
        self.strpos = []
        for pos, f in enumerate(schema.fields):
            if pos == schema.key_pos:
                continue
            dt = column_dtype(f)
            if dt is not None:
                self.dtypes[pos] = dt
            else:
                self.strpos.append(pos)
        self._makers = {}               # frozenset of nullable fields -> row1 (``_row_maker``)
        self.nullable = set()           # numeric fields whose null array may hold a True
        self.n = 0                      # slots below n may be non-EMPTY
        self.cap = 0
        self.state = np.zeros(0, np.uint8)
        self.cols = {p: np.zeros(0, dt) for p, dt in self.dtypes.items()}
        self.nulls = {p: np.zeros(0, bool) for p in self.dtypes}
        self.strs = {p: [] for p in self.strpos}
        self._publish()

    def _publish(self) -> None:
        """Make the current arrays what readers read: one reference assignment.
        ``arrays[3]`` and ``arrays[4]`` are what ``row`` reads: per field after
        the key, in field order, a memoryview of its column and one of its
        nulls (indexing one gives a Python int, float or bool, in C), or a
        string field's list; and ``row1(slot, key, views)``, which reads the
        null arrays of the ``nullable`` fields only (a random row costs a cache
        miss per array read: about 0.1 us each on this machine)."""
        views = []
        for p in range(len(self.schema.fields)):
            if p in self.cols:
                views.append(memoryview(self.cols[p]))
                views.append(memoryview(self.nulls[p]))
            elif p in self.strs:
                views.append(self.strs[p])
        key = frozenset(self.nullable)
        row1 = self._makers.get(key)
        if row1 is None:
            row1 = self._makers[key] = _row_maker(self.schema, key)
        self.arrays = (self.state, self.cols, self.nulls, tuple(views), row1)
        _gate_changed()     # readers without the GIL (readgate.py) drop views of the old arrays

    def _nulls_in(self, fields) -> None:
        """Fields ``fields`` now hold a null somewhere: their nulls count from now on."""
        if not self.nullable.issuperset(fields):
            self.nullable.update(fields)
            self._publish()

    # -- writes (exclusive latch) ----------------------------------------------
    def _grow(self, n: int) -> None:
        """Capacity for slots below ``n``; O(n) when it grows, amortised O(1) per slot."""
        if n > self.n:
            self.n = n
        if n <= self.cap:
            return
        cap = max(_MIN_CAP, self.cap + (self.cap >> 2), n)
        state = np.zeros(cap, np.uint8)
        state[:self.cap] = self.state
        cols = {}
        nulls = {}
        for p, dt in self.dtypes.items():
            col = cols[p] = np.zeros(cap, dt)
            col[:self.cap] = self.cols[p]
            nul = nulls[p] = np.zeros(cap, bool)
            nul[:self.cap] = self.nulls[p]
        strs = {p: lst + [None] * (cap - self.cap) for p, lst in self.strs.items()}
        self.state, self.cols, self.nulls, self.strs = state, cols, nulls, strs
        self.cap = cap
        self._publish()

    def freeze(self, slots: list, rows: list) -> None:
        """The rows ``rows`` (tuples in field order) settle in ``slots``: write their
        values, then mark the slots FROZEN.  O(len * fields) in C (a Python loop per
        string field).  Only inside a writer section that bumps ``fseq``; holds the
        read gate while it writes (readgate.py)."""
        if not slots:
            return
        _gate_hold()
        try:
            self._freeze(slots, rows)
        finally:
            _gate_release()

    def _freeze(self, slots: list, rows: list) -> None:
        self._grow(max(slots) + 1)
        for p, lst in self.strs.items():
            for slot, r in zip(slots, rows):
                lst[slot] = r[p]
        if len(slots) == 1:
            slot, r = slots[0], rows[0]
            got = []
            for p, col in self.cols.items():
                v = r[p]
                if v is None:
                    col[slot] = 0
                    self.nulls[p][slot] = True
                    got.append(p)
                else:
                    col[slot] = v
                    self.nulls[p][slot] = False
            if got:
                self._nulls_in(got)
            self.state[slot] = FROZEN
            return
        idx = np.array(slots, np.intp)
        got = []
        for p, col in self.cols.items():
            vals, nul = field_array(rows, p, col.dtype)
            if nul is None:
                self.nulls[p][idx] = False
            else:
                self.nulls[p][idx] = nul
                got.append(p)
            col[idx] = vals
        if got:
            self._nulls_in(got)
        self.state[idx] = FROZEN

    def thaw(self, slots) -> None:
        """``slots`` now hold version chains (their column values no longer count)."""
        if len(slots) == 1:
            slot = slots[0]
            self._grow(slot + 1)
            self.state[slot] = CHAIN
            return
        if len(slots):
            idx = np.array(slots, np.intp)
            self._grow(int(idx.max()) + 1)
            self.state[idx] = CHAIN

    def clear(self, slots) -> None:
        """``slots`` are free (their strings are let go, under the read gate)."""
        if len(slots):
            _gate_hold()
            try:
                self.state[np.array(slots, np.intp)] = EMPTY
                for lst in self.strs.values():
                    for slot in slots:
                        lst[slot] = None
            finally:
                _gate_release()

    def load(self, rows: list) -> None:
        """Replace everything with the rows ``rows`` (tuples; slot i holds ``rows[i]``,
        None: a free slot).  O(n) in C, plus a Python pass over the rows when some
        are None.  Holds the read gate (readgate.py)."""
        _gate_hold()
        try:
            self._load(rows)
        finally:
            _gate_release()

    def _load(self, rows: list) -> None:
        n = len(rows)
        self.cap = 0
        self.n = 0
        self.state = np.zeros(0, np.uint8)
        self.cols = {p: np.zeros(0, dt) for p, dt in self.dtypes.items()}
        self.nulls = {p: np.zeros(0, bool) for p in self.dtypes}
        self.strs = {p: [] for p in self.strpos}
        self.nullable = set()
        self._publish()
        if not n:
            return
        self._grow(n)
        if None not in rows:
            self._freeze_range(rows)
            return
        settled = [i for i, r in enumerate(rows) if r is not None]
        self._freeze(settled, [rows[i] for i in settled])

    def _freeze_range(self, rows: list) -> None:
        """``load`` of rows without holes: slot i holds ``rows[i]``."""
        n = len(rows)
        got = []
        for p, col in self.cols.items():
            vals, nul = field_array(rows, p, col.dtype)
            if nul is not None:
                self.nulls[p][:n] = nul
                got.append(p)
            col[:n] = vals
        if got:
            self._nulls_in(got)
        for p, lst in self.strs.items():
            lst[:n] = map(itemgetter(p), rows)
        self.state[:n] = FROZEN

    @classmethod
    def adopt(cls, schema, n: int, cols, nulls) -> "Columns":
        """Columns of ``n`` settled rows without holes (slot i holds row i), from whole
        arrays (a checkpoint's): ``cols[pos]`` is numeric field ``pos``'s values (0 where
        null; converted when of another dtype) or string field ``pos``'s list (None
        where null), ``nulls[pos]`` a bool array or None (no nulls); lists or dicts by
        field position, the key field ignored.  Writable arrays of the column's dtype
        and the lists are taken over, not copied: the caller must not use them
        afterwards.  O(1), or O(n) per converted array."""
        c = cls(schema)
        if not n:
            return c
        c.n = c.cap = n
        c.state = np.full(n, FROZEN, np.uint8)
        for p, dt in c.dtypes.items():
            c.cols[p] = _own(cols[p], dt, n)
            nul = nulls[p]
            c.nulls[p] = np.zeros(n, bool) if nul is None else _own(nul, np.dtype(bool), n)
            if nul is not None and nul.any():
                c.nullable.add(p)
        for p in c.strpos:
            lst = cols[p]
            if len(lst) != n:
                raise ValueError(f"a column of {len(lst)} values for {n} rows")
            c.strs[p] = lst if lst.__class__ is list else list(lst)
        c._publish()
        return c

    # -- reads (no latch; see the module docstring) ------------------------------------
    def row(self, slot: int, key):
        """The settled row of ``slot`` (whose key is ``key``) as a tuple in field order.
        The caller makes sure that no ``freeze`` overlapped (``fseq``, heap.py).
        O(fields), no Python code per field: memoryview and list indexing in C."""
        a = self.arrays
        return a[4](slot, key, a[3])

    def rows_of(self, slots, keys: list) -> list:
        """The settled rows of ``slots`` (a numpy int array, or a ``slice`` of slots)
        whose keys are ``keys``, as tuples in field order; the caller makes sure that
        no ``freeze`` overlapped (``fseq``).  O(len * fields) in C: a gather per
        field, or below ``_FEW_ROWS`` rows ``row1`` per row (a gather's numpy call
        costs more than a few rows: 50 random rows took 18.7 us gathered, 11 us
        row by row; a single-row commit's install reads one)."""
        if len(keys) < _FEW_ROWS:
            a = self.arrays
            row1, views = a[4], a[3]
            at = range(slots.start, slots.start + len(keys)) if slots.__class__ is slice \
                else slots.tolist()
            return [row1(i, k, views) for i, k in zip(at, keys)]
        kp = self.key_pos
        return list(zip(*[keys if p == kp else self.values_of(p, slots)
                          for p in range(len(self.schema.fields))]))

    def values_of(self, pos: int, slots) -> list:
        """Field ``pos``'s values (Python objects, None where null) of the settled
        ``slots`` (a numpy int array or a ``slice``), not the key's.  O(len) in C."""
        _state, cols, nulls, _v, _r = self.arrays
        col = cols.get(pos)
        if col is None:
            lst = self.strs[pos]
            return lst[slots] if slots.__class__ is slice else list(map(lst.__getitem__, slots.tolist()))
        v = col[slots]
        vals = (v != 0).tolist() if v.dtype == _I8 else v.tolist()
        nul = nulls[pos][slots]
        if nul.any():
            for i in np.flatnonzero(nul).tolist():
                vals[i] = None
        return vals

    def marks(self, terms, slots=None, start: int = 0, stop: int | None = None):
        """(matching, chained): two bool arrays over ``slots`` (a numpy int array) in
        their order when given, else over the slots in [start, stop) (``stop``
        defaults to ``n``).  ``matching``: FROZEN and every term in ``terms`` (all
        answered here) holds; ``chained``: CHAIN, read the slot's row instead.

        One capture of ``arrays``; the state is read before the values.
        O(len * terms) in C; numpy releases the GIL for big arrays.
        """
        state, cols, nulls, _v, _r = self.arrays
        cap = len(state)
        if slots is None:
            stop = self.n if stop is None else stop
            stop = min(stop, cap)
            start = min(start, stop)
            st = state[start:stop].copy()     # one read: a writer may change it meanwhile
            get = _part(start, stop)
        elif len(slots) and int(slots.max()) >= cap:
            past = slots >= cap
            slots = np.where(past, 0, slots)
            st = state[slots]
            st[past] = CHAIN
            get = _gather(slots)
        else:
            st = state[slots]
            get = _gather(slots)
        m = st == FROZEN
        chain = st == CHAIN
        for t in terms:
            p = t.pos
            op = t.op
            nul = get(nulls[p])
            if op == "null":
                m &= nul
                continue
            col = get(cols[p])
            if op == "notnull":
                m &= ~nul
                continue
            if op == "true":
                m &= col != 0
            elif op == "false":
                m &= col == 0
            elif op == "eq":
                m &= col == t.values[0]
            elif op == "ne":
                m &= col != t.values[0]
            elif op == "lt":
                m &= col < t.values[0]
            elif op == "le":
                m &= col <= t.values[0]
            elif op == "gt":
                m &= col > t.values[0]
            elif op == "ge":
                m &= col >= t.values[0]
            elif op == "range":
                lo, hi = t.values
                m &= (col >= lo) & (col < hi)
            elif op == "in":
                vals = [v for v in t.values[0] if v is not None]
                m &= np.isin(col, np.array(vals, col.dtype)) if vals else False
            m &= ~nul
        return m, chain

    def _check(self, rows: list) -> None:
        """Assert that the columns agree with the heap's ``rows`` (tests): a free slot
        is EMPTY with no strings, a settled one (its key in ``rows``) FROZEN with
        values of its fields' types that ``row`` and ``rows_of`` read alike, a
        chained one CHAIN.  O(n)."""
        n = len(rows)
        assert self.n <= self.cap and len(self.state) == self.cap
        arrays = self.arrays
        assert arrays[0] is self.state and arrays[1] is self.cols and arrays[2] is self.nulls, \
            "the published arrays are not the current ones"
        want = []
        for p in range(len(self.schema.fields)):
            if p in self.cols:
                want += [self.cols[p], self.nulls[p]]
            elif p in self.strs:
                want.append(self.strs[p])
        got = [v.obj if v.__class__ is memoryview else v for v in arrays[3]]
        assert len(got) == len(want) and all(a is b for a, b in zip(got, want)), \
            "the published row views are not the current arrays"
        assert not self.state[max(n, self.n):].any(), "state set past the heap"
        for p, nul in self.nulls.items():
            assert p in self.nullable or not nul.any(), f"field {p} holds a null but is not nullable"
        assert arrays[4] is self._makers[frozenset(self.nullable)], "the published row1 is not current"
        for lst in self.strs.values():
            assert len(lst) == self.cap, "a string column's length is not the capacity"
        fields = self.schema.fields
        settled = []
        for slot in range(n):
            r = rows[slot]
            st = int(self.state[slot]) if slot < self.cap else EMPTY
            if r is None:
                assert st == EMPTY, f"slot {slot}: free in the heap, state {st}"
                for p, lst in self.strs.items():
                    assert slot >= self.cap or lst[slot] is None, f"slot {slot}: free but holds a string"
            elif r.__class__ is str:
                assert st == FROZEN, f"slot {slot}: settled in the heap, state {st}"
                settled.append(slot)
                row = self.row(slot, r)
                for p, f in enumerate(fields):
                    v = row[p]
                    assert v is None or v.__class__ is _PYTYPE[f.kind], \
                        f"slot {slot} field {p}: {v!r} is not a {f.kind}"
            else:
                assert st == CHAIN, f"slot {slot}: chain in the heap, state {st}"
        if settled:
            keys = [rows[i] for i in settled]
            assert self.rows_of(np.array(settled, np.intp), keys) == [
                self.row(i, k) for i, k in zip(settled, keys)], "row and rows_of disagree"


_PYTYPE = {"int": int, "float": float, "bool": bool, "str": str}


def value_list(col, nulls, is_bool: bool = False) -> list:
    """A column (a numpy array, or a list: returned as is) as a list of Python values,
    None where ``nulls`` (a bool array, or None) is set; ``is_bool``: an int8 column
    of a bool field.  At C speed but for one assignment per null."""
    if col.__class__ is list:
        return col
    vals = (col != 0).tolist() if is_bool else col.tolist()
    if nulls is not None:
        for i in np.flatnonzero(nulls).tolist():
            vals[i] = None
    return vals


def field_array(rows: list, p: int, dt) -> tuple:
    """(field ``p``'s values of the tuples ``rows`` as an array of ``dt``, 0 where null;
    a bool array of the nulls, or None when none is null).  One C pass
    (``np.fromiter``): three times faster than transposing the rows and
    converting each column (1M rows: 0.33 against 1.06 s for five fields).  A
    null makes it fail for an int (TypeError: then a pass that marks them) and
    reads as NaN for a float (a float field holds no NaN: schema.py)."""
    n = len(rows)
    try:
        a = np.fromiter(map(itemgetter(p), rows), dt, n)
    except TypeError:
        pass
    else:
        if dt != _F64:
            return a, None
        nul = np.isnan(a)           # numpy reads None as NaN; a float field is finite
        if not nul.any():
            return a, None
        a[nul] = 0.0
        return a, nul
    vals = list(map(itemgetter(p), rows))
    nul = np.fromiter((v is None for v in vals), bool, n)
    return np.array([0 if v is None else v for v in vals], dt), nul


def view_layout(schema) -> str:
    """Per field, how the row views (``Columns.arrays[3]``) hold it: "k" the key (not
    there), "n" a numeric column (its values, then its nulls), "b" a bool
    column (int8 values, then nulls), "s" a list.  Cached per schema object."""
    got = _layouts.get(id(schema))
    if got is None or got[0] is not schema:
        out = []
        for p, f in enumerate(schema.fields):
            if p == schema.key_pos:
                out.append("k")
            else:
                dt = column_dtype(f)
                out.append("s" if dt is None else ("b" if dt == _I8 else "n"))
        if len(_layouts) > 64:
            _layouts.clear()
        got = _layouts[id(schema)] = (schema, "".join(out))
    return got[1]


_layouts: dict = {}


def view_reads(layout: str, nullable) -> tuple[str, dict]:
    """How generated code reads a settled row's fields from the row views (the one
    home of it: ``row1`` here, the entry filters and row makers of query.py):
    the line unpacking ``views`` into names (v3, n3: field 3's values and
    nulls; s4: field 4's list), and per field but the key, (expression of its
    value at ``slot``, whether it may be None).  A bool column's int8 is
    compared with 0; a null array is read only for a ``nullable`` field."""
    names = []
    reads = {}
    for p, lay in enumerate(layout):
        if lay == "k":
            continue
        if lay == "s":
            names.append(f"s{p}")
            reads[p] = (f"s{p}[slot]", True)
        else:
            names += [f"v{p}", f"n{p}"]
            val = f"v{p}[slot] != 0" if lay == "b" else f"v{p}[slot]"
            if p in nullable:
                reads[p] = (f"None if n{p}[slot] else {val}", True)
            else:
                reads[p] = (val, False)
    unpack = f"{', '.join(names)}{',' if len(names) == 1 else ''} = views" if names else ""
    return unpack, reads


def _row_maker(schema, nullable: frozenset):
    """``row1(slot, key, views)``: the tuple of one settled row from the row views
    (``Columns.arrays[3]``), generated per schema and set of ``nullable`` fields
    (the others' null arrays hold no True: not read): one expression per
    field (``view_reads``), no loop and no call per field."""
    unpack, reads = view_reads(view_layout(schema), nullable)
    parts = ["key" if p == schema.key_pos else reads[p][0] for p in range(len(schema.fields))]
    body = f"    {unpack}\n" if unpack else ""
    src = f"def row1(slot, key, views):\n{body}    return ({', '.join(parts)},)\n"
    ns: dict = {}
    exec(compile(src, f"<aerostore row of {schema.name}>", "exec"), ns)
    return ns["row1"]


def _own(a, dt, n: int) -> np.ndarray:
    """``a`` (length ``n``) as a writable array of dtype ``dt`` that owns its memory."""
    if len(a) != n:
        raise ValueError(f"a column of {len(a)} values for {n} rows")
    if a.dtype != dt or not a.flags.writeable or not a.flags.owndata or not a.flags.c_contiguous:
        return a.astype(dt)
    return a


def _part(start: int, stop: int):
    return lambda a: a[start:stop]


def _gather(slots):
    return lambda a: a[slots]
