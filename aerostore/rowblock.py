"""RowBlock: validated rows held as columns between decoding and applying an ingest.

Why: ``ingest_tsv`` decodes and checks the whole input before it writes
anything (SPEC: a bad line writes nothing), so every row exists before the
first batch commits.  As row tuples of boxed values (about 700 bytes a
FlightState row) they are short-lived: a settled row lives in the table's
columns (columns.py), and its tuple is freed once it settles.  But CPython's
small-object allocator returns an arena to the system only when every object
in it is freed, and the key strings that the table keeps were allocated among
those tuples: a million decoded rows left about 270 bytes a row resident
after the ingest (the decisions of 2026-11-29, fifth session).  Packed into a
RowBlock as soon as a chunk is decoded, a chunk's tuples die before the next
chunk is decoded, so the next chunk reuses their memory and the resident size
follows what the table keeps.

A block holds ``n`` rows: per numeric field (``columns.column_dtype``) a numpy
array (0 where null) and a bool array of nulls (None when no value is null);
per other field (the key, strings, the widest ints) the list of values.
``block[i:j]`` gives rows i..j-1 as tuples again, equal to the decoded ones
(bools as bools, None for nulls).  Packing and unpacking are O(rows * fields)
in C.
"""

from __future__ import annotations

from operator import itemgetter

import numpy as np

from .columns import column_dtype, field_array

__all__ = ["RowBlock"]

_I8 = np.dtype(np.int8)


class RowBlock:
    """Rows of one schema as columns; ``len(block)`` and ``block[i:j]`` (a list of tuples)."""

    __slots__ = ("n", "cols", "nulls")

    def __init__(self, schema, rows: list):
        """Pack ``rows`` (tuples in ``schema``'s field order, already validated)."""
        self.n = len(rows)
        self.cols = []
        self.nulls = []
        for p, f in enumerate(schema.fields):
            dt = column_dtype(f)
            if dt is None:
                col, nul = list(map(itemgetter(p), rows)), None
            else:
                col, nul = field_array(rows, p, dt)
            self.cols.append(col)
            self.nulls.append(nul)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, sl: slice) -> list:
        """Rows ``sl`` (a slice with step 1) as tuples in field order.  O(rows * fields) in C."""
        lists = []
        for col, nul in zip(self.cols, self.nulls):
            part = col[sl]
            if part.__class__ is list:
                lists.append(part)
                continue
            vals = (part != 0).tolist() if part.dtype == _I8 else part.tolist()
            if nul is not None:
                n = nul[sl]
                if n.any():
                    for i in np.flatnonzero(n).tolist():
                        vals[i] = None
            lists.append(vals)
        return list(zip(*lists))
