"""Columns: the settled rows of one table as typed numpy arrays, one per numeric field.

Why: a predicate over Python tuples costs a bytecode loop per row, with the
GIL held throughout; over typed arrays it is a few numpy expressions per chunk
of rows, at C speed.  Under a live feed every reader's filter work is time
that the feed and the other readers wait for (docs/architecture.md, "The live
feed"), so scans and index walks test the settled rows here, and only the few
slots with a version chain in Python.

Layout, per slot (the heap's slot numbers, heap.py):

- ``state[slot]`` (uint8): ``EMPTY`` (a free slot, or past the end),
  ``FROZEN`` (the columns hold the row, and it is visible to every snapshot:
  the heap's ``rows[slot]`` is a tuple), ``CHAIN`` (a version chain: the
  columns say nothing; read ``rows[slot]``);
- ``cols[pos][slot]``: the value of numeric field ``pos`` (int64, uint64 for
  unsigned 64-bit ranges, float64, or int8 for bools), 0 where null;
- ``nulls[pos][slot]`` (bool): the field is null.

Only int, float and bool fields have columns; strings stay in the tuples.
The arrays have a capacity (doubled when a slot past it is written: amortised
O(1) per slot); slots past ``n`` are EMPTY.

Writers (the heap, under the table's exclusive latch, one at a time) call
``thaw`` when a slot gets a chain, ``freeze`` when it settles into a tuple,
``clear`` when it is freed, and ``load`` for a bulk replacement.  Readers take
no latch: they call ``marks`` with the terms ``vector_terms`` says it answers,
which reads ``arrays`` (the state, columns and null arrays, published together
by one reference: a capacity change replaces them all) once, and each slot's
state before its values.  What a reader may meet, and why each is harmless
(``s`` is its snapshot, registered while it reads):

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

import numpy as np

__all__ = ["Columns", "EMPTY", "FROZEN", "CHAIN", "VECTOR_OPS", "column_dtype", "vector_terms"]

EMPTY, FROZEN, CHAIN = 0, 1, 2

_MIN_CAP = 1024

# ops a column answers exactly as query.py's generated predicate does
# (a null satisfies none of them but "null"); "true"/"false" on bool columns only
VECTOR_OPS = frozenset(("eq", "ne", "lt", "le", "gt", "ge", "range", "in", "null", "notnull"))


_F64, _I8, _I64, _U64 = (np.dtype(t) for t in (np.float64, np.int8, np.int64, np.uint64))
# the integer constants a comparison on an int column takes exactly
_INT_LIMITS = {_I64: (-(1 << 63), (1 << 63) - 1), _U64: (0, (1 << 64) - 1)}


def column_dtype(field):
    """The numpy dtype of ``field``'s column, or None (no column: strings)."""
    kind = field.kind
    if kind == "float":
        return _F64
    if kind == "bool":
        return _I8
    if kind == "int":
        if field.lo is not None and field.lo >= 0 and field.hi is not None and field.hi >= 1 << 63:
            return _U64
        return _I64
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
        self.dtypes = {}
        for pos, f in enumerate(schema.fields):
            dt = column_dtype(f)
            if dt is not None and pos != schema.key_pos:
                self.dtypes[pos] = dt
        self.n = 0                      # slots below n may be non-EMPTY
        self.cap = 0
        self.state = np.zeros(0, np.uint8)
        self.cols = {p: np.zeros(0, dt) for p, dt in self.dtypes.items()}
        self.nulls = {p: np.zeros(0, bool) for p in self.dtypes}
        self._publish()

    def _publish(self) -> None:
        """Make the current arrays what readers read: one reference assignment."""
        self.arrays = (self.state, self.cols, self.nulls)

    # -- writes (exclusive latch) ----------------------------------------------
    def _grow(self, n: int) -> None:
        """Capacity for slots below ``n``; O(n) when it doubles, amortised O(1) per slot."""
        if n > self.n:
            self.n = n
        if n <= self.cap:
            return
        cap = max(_MIN_CAP, self.cap * 2, n)
        state = np.zeros(cap, np.uint8)
        state[:self.cap] = self.state
        cols = {}
        nulls = {}
        for p, dt in self.dtypes.items():
            col = cols[p] = np.zeros(cap, dt)
            col[:self.cap] = self.cols[p]
            nul = nulls[p] = np.zeros(cap, bool)
            nul[:self.cap] = self.nulls[p]
        self.state, self.cols, self.nulls = state, cols, nulls
        self.cap = cap
        self._publish()

    def freeze(self, slots: list, rows: list) -> None:
        """The settled tuples ``rows`` now hold ``slots``: write their values.  O(len * fields) in C."""
        if not slots:
            return
        self._grow(max(slots) + 1)
        if len(slots) == 1:
            slot, r = slots[0], rows[0]
            for p, col in self.cols.items():
                v = r[p]
                if v is None:
                    col[slot] = 0
                    self.nulls[p][slot] = True
                else:
                    col[slot] = v
                    self.nulls[p][slot] = False
            self.state[slot] = FROZEN
            return
        idx = np.array(slots, np.intp)
        values = list(zip(*rows))
        for p, col in self.cols.items():
            vals = values[p]
            if None in vals:
                self.nulls[p][idx] = np.array([v is None for v in vals], bool)
                vals = [0 if v is None else v for v in vals]
            else:
                self.nulls[p][idx] = False
            col[idx] = np.array(vals, col.dtype)
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
        """``slots`` are free."""
        if len(slots):
            self.state[np.array(slots, np.intp)] = EMPTY

    def load(self, rows: list, all_settled: bool = False) -> None:
        """Replace everything from a heap's ``rows`` (slot i holds ``rows[i]``: a
        settled tuple, a version chain, or None); ``all_settled``: every one is a
        tuple.  O(n) in C, plus a Python pass when some slots are not tuples."""
        n = len(rows)
        self.cap = 0
        self.n = 0
        self.state = np.zeros(0, np.uint8)
        self.cols = {p: np.zeros(0, dt) for p, dt in self.dtypes.items()}
        self.nulls = {p: np.zeros(0, bool) for p in self.dtypes}
        self._publish()
        if not n:
            return
        self._grow(n)
        if all_settled:
            self.freeze_range(rows)
            return
        settled = [i for i, r in enumerate(rows) if r.__class__ is tuple]
        self.freeze(settled, [rows[i] for i in settled])
        self.thaw([i for i, r in enumerate(rows) if r is not None and r.__class__ is not tuple])

    def freeze_range(self, rows: list) -> None:
        """``load`` of rows without holes: slot i holds ``rows[i]``."""
        n = len(rows)
        values = list(zip(*rows))
        for p, col in self.cols.items():
            vals = values[p]
            if None in vals:
                self.nulls[p][:n] = np.array([v is None for v in vals], bool)
                vals = [0 if v is None else v for v in vals]
            col[:n] = np.array(vals, col.dtype)
        self.state[:n] = FROZEN

    @classmethod
    def adopt(cls, schema, n: int, cols, nulls) -> "Columns":
        """Columns of ``n`` settled rows without holes (slot i holds row i), from whole
        arrays (a checkpoint's): ``cols[pos]`` is numeric field ``pos``'s values (0 where
        null; converted when of another dtype), ``nulls[pos]`` a bool array or None (no
        nulls); lists or dicts by field position, other fields ignored.  Writable arrays
        of the column's dtype are taken over, not copied: the caller must not use them
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
        c._publish()
        return c

    # -- reads (no latch; see the module docstring) ------------------------------------
    def marks(self, terms, slots=None, start: int = 0, stop: int | None = None):
        """(matching, chained): two bool arrays over ``slots`` (a numpy int array) in
        their order when given, else over the slots in [start, stop) (``stop``
        defaults to ``n``).  ``matching``: FROZEN and every term in ``terms`` (all
        answered here) holds; ``chained``: CHAIN, read the slot's row instead.

        One capture of ``arrays``; the state is read before the values.
        O(len * terms) in C; numpy releases the GIL for big arrays.
        """
        state, cols, nulls = self.arrays
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
        """Assert that the columns agree with the heap's ``rows`` (tests)."""
        n = len(rows)
        assert self.n <= self.cap and len(self.state) == self.cap
        assert self.arrays[0] is self.state and self.arrays[1] is self.cols and self.arrays[2] is self.nulls, \
            "the published arrays are not the current ones"
        assert not self.state[max(n, self.n):].any(), "state set past the heap"
        for slot in range(n):
            r = rows[slot]
            st = int(self.state[slot]) if slot < self.cap else EMPTY
            if r is None:
                assert st == EMPTY, f"slot {slot}: free in the heap, state {st}"
            elif r.__class__ is tuple:
                assert st == FROZEN, f"slot {slot}: frozen in the heap, state {st}"
                for p, col in self.cols.items():
                    v = r[p]
                    if v is None:
                        assert self.nulls[p][slot], f"slot {slot} field {p}: null not marked"
                    else:
                        assert not self.nulls[p][slot], f"slot {slot} field {p}: marked null"
                        assert col[slot] == v, f"slot {slot} field {p}: {col[slot]!r} != {v!r}"
            else:
                assert st == CHAIN, f"slot {slot}: chain in the heap, state {st}"


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
