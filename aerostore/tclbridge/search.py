"""``FlightState search``: options (docs/tcl.md, SEARCH) -> one query on one snapshot.

The shim reads the options (c_shim/search.c, with Tcl's own API) and calls
``Session.t_search``, which runs ``Search(session, ...).run()``.  The answer is
either a number (nothing to bind or run) or the plan tuple that
c_shim/search.c loops over::

    (count, rows, key_pos, positions, names, finish, check)

``rows`` are row tuples, except that a settled row of an ordered walk's page
may be its slot (an int: planner.Walk.page), which the shim reads from the
columns, converting the page to Tcl values at once; ``check`` is then
``(store, fseq, s, redo)``: the shim trusts those slots only while
``store.fseq`` is still ``fseq`` (a slot no longer settled is read by
``store.row_at(slot, s)``), and else calls ``redo()``, which runs the search
again and answers ``(count, rows)`` of tuples only.
``check`` is None when every row is a tuple.

Decisions written down in docs/tcl.md: -asc and -desc are flags (no value);
-countOnly 1 only counts (no binding, no -code); without -code the bound
variables hold the last row; -delete 1 deletes the rows the search visits (all
of them, or up to the row where -code said break), in one transaction, after
the visit -- an error in -code deletes nothing.  Inside
``aerostore::transaction`` everything goes through that transaction.
"""

from __future__ import annotations

from .. import query as _query
from ..errors import UsageError
from ..words import fmt_choices
from . import state
from .tclstyle import split_list

__all__ = ["Search", "term_query", "OPERATORS"]

# operator -> number of values after the field (query.OPERATORS is the home)
OPERATORS = {op: n for op, (_, n) in _query.OPERATORS.items()}
_TERM_USAGE = {0: "field", 1: "field value", 2: "field lo hi"}


_PARSED: dict = {}          # -compare text -> its terms as (op, field, values); bounded
_PARSED_MAX = 512


def _parse_terms(compare) -> tuple:
    """The terms of a ``-compare`` list, checked for shape (not yet for fields
    and values, which the query checks); repeated searches reuse the parse."""
    terms = _PARSED.get(compare) if isinstance(compare, str) else None
    if terms is not None:
        return terms
    out = []
    for term in split_list(compare, "-compare list"):
        words = split_list(term, "-compare term")
        if not words:
            raise UsageError('bad -compare term "": must be {op field ?value ...?}', "TERM")
        op = words[0]
        nvalues = OPERATORS.get(op)
        if nvalues is None:
            raise UsageError(f'bad operator "{op}": must be {fmt_choices(OPERATORS)}',
                             "OPERATOR", op)
        if len(words) != 2 + nvalues:
            raise UsageError(f'wrong # args: should be "{op} {_TERM_USAGE[nvalues]}"',
                             "TERM", op)
        values = tuple(words[2:])
        if op == "in":
            values = (tuple(split_list(values[0], "in list")),)
        out.append((op, words[1], values))
    terms = tuple(out)
    if isinstance(compare, str):
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[compare] = terms
    return terms


def term_query(table, compare):
    """A query on ``table`` (a Table or a transaction's table) with the
    ``-compare`` terms ``{{op field ?value ...?} ...}`` applied (AND)."""
    q = table.query()
    for op, field, values in _parse_terms(compare):
        q.where(op, field, *values)
    return q


_QUERIES_MAX = 64      # Query objects a session keeps for repeated searches
_BINDINGS: dict = {}   # -fields text (None: all fields) -> (schema, binding); bounded


class Search:
    """One search: the options the shim read (c_shim/search.c).

    ``compare``, ``sort``, ``fields``: the values given, or None; ``bind``
    the binding option given, by its full name (``-get``, ``-array_get``,
    ``-array_get_with_nulls`` or ``-array``: only the shim tells them apart),
    or None; ``key``, ``code``: whether -key and -code were given.
    """

    def __init__(self, session, compare, sort, fields, desc, limit, offset, bind, key, code,
                 count_only, delete):
        if delete and session.safe:
            raise UsageError("search -delete is not allowed in a safe interpreter", "SAFE")
        if delete and count_only:
            raise UsageError("-countOnly and -delete cannot be combined", "OPTION", "-delete")
        self.session = session
        self.compare = compare
        self.sort = sort
        self.fields = fields
        self.desc = desc
        self.limit = limit
        self.offset = offset
        self.bind = bind
        self.key = key
        self.code = code
        self.count_only = count_only
        self.delete = delete

    # -- building the query ----------------------------------------------------
    def _query(self, table):
        """The Query of these options on ``table``; the session keeps the last
        ones built (per interpreter, so never shared between threads): a
        search repeated in a loop skips coercing its terms again.  Sound
        because a Query is only a description, run on a fresh snapshot by
        each ``rows()``/``count()``."""
        # only the autocommit table: a transaction's table lives as long as the transaction
        cacheable = (self.compare is None or isinstance(self.compare, str)) and table is state.flights()
        if cacheable:
            session = self.session
            queries = session._queries
            if session._queries_table is not table:
                # the store was opened again: drop the old table's queries, which
                # would keep the closed store's rows alive
                queries.clear()
                session._queries_table = table
            ck = (self.compare, self.sort, self.desc, self.offset, self.limit)
            q = queries.get(ck)
            if q is not None:
                return q
        q = self._build_query(table)
        if cacheable:
            if len(queries) >= _QUERIES_MAX:
                queries.clear()
            queries[ck] = q
        return q

    def _build_query(self, table):
        q = term_query(table, self.compare) if self.compare is not None else table.query()
        if self.sort is not None:
            keys = []
            for word in split_list(self.sort, "-sort list"):
                if word.startswith("-") and len(word) > 1:
                    keys.append((word[1:], "desc"))
                else:
                    keys.append((word, "desc" if self.desc else "asc"))
            if keys:
                q.sort_by(*keys)
        if self.offset:
            q.offset(self.offset)
        if self.limit:
            q.limit(self.limit)
        return q

    def _binding(self):
        """(key position, positions, names) of the fields to bind, in the
        schema of the table searched; repeated searches reuse it (one per
        -fields text and schema)."""
        schema = self.session._table().schema
        fields = self.fields
        cacheable = fields is None or fields.__class__ is str
        if cacheable:
            hit = _BINDINGS.get(fields)
            if hit is not None and hit[0] is schema:
                return hit[1]
        if fields is None:
            positions = tuple(range(len(schema.names)))
        else:
            positions = tuple(schema.position(f) for f in split_list(fields, "-fields list"))
        binding = (schema.key_pos, positions, tuple(schema.names[p] for p in positions))
        if cacheable:
            if len(_BINDINGS) >= _PARSED_MAX:
                _BINDINGS.clear()
            _BINDINGS[fields] = (schema, binding)
        return binding

    def _plan(self, count, rows, finish=None, check=None):
        key_pos, positions, names = self._binding()
        if self.bind is None:                # only -key/-code: convert no field values
            positions = names = ()
        return (count, rows, key_pos, positions, names, finish, check)

    def _redo(self):
        """(count, rows) of the search run again, every row a tuple, on a new
        snapshot (inside aerostore::transaction: the transaction's again): the
        shim's way out when the slots of a page can no longer be trusted (a
        freeze ran since the page's snapshot was released)."""
        rows = self._query(self.session._table()).rows()
        return len(rows), (rows if self.code else rows[-1:])

    # -- running -----------------------------------------------------------------
    def run(self):
        binds = self.key or self.bind is not None or self.code
        if self.delete:
            return self._run_delete(binds)
        q = self._query(self.session._table())
        if self.count_only or not binds:
            if self.fields is not None:
                self._binding()              # -fields is checked even when unused
            return q.count()
        rows, check = q._page()
        if check is not None:
            check = check + (self._redo,)
        if not self.code:
            return self._plan(len(rows), rows[-1:], None, check)
        return self._plan(len(rows), rows, None, check)

    def _run_delete(self, binds):
        session = self.session
        own = session._txn is None
        txn = state.database().begin() if own else session._txn
        try:
            table = txn.table(state.TABLE)
            q = self._query(table)
            rows = q.rows()
            key_pos = state.flights().schema.key_pos
        except BaseException:
            if own:
                txn.rollback()
            raise

        def finish(visited, completed):
            if not completed:
                if own:
                    txn.rollback()
                return 0
            try:
                for row in rows[:visited]:
                    table.delete(row[key_pos])
                if own:
                    txn.commit()
            except BaseException:
                if own:
                    txn.rollback()
                raise
            return visited

        if not binds:
            return finish(len(rows), True)
        if not self.code:
            # Nothing to run per row: bind the last row, delete them all.
            return self._plan(len(rows), rows[-1:], lambda visited, ok: finish(len(rows), ok))
        return self._plan(len(rows), rows, finish)
