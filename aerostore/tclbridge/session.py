"""The Python side of the Tcl commands: one ``Session`` per Tcl interpreter.

The C shim checks subcommands and argument counts, converts the arguments in C
(strings, or numbers for pure Tcl numbers) and calls one method here:
``FlightState get k f`` -> ``session.t_get(k, f)``, ``aerostore::init d`` ->
``session.a_init(d)``.  A method's return value becomes the Tcl result (None
is the empty string, tuples and lists are Tcl lists, dicts flat key/value
lists).  Errors are raised as ``AerostoreError``s; ``tcl_error`` turns any
exception into (message, errorCode, errorInfo) for the shim.

A Session holds what belongs to its interpreter: the open
``aerostore::transaction`` (FlightState commands read and write through it)
and its watches.  The engine itself is process-wide (``state``).
"""

from __future__ import annotations

import traceback
from functools import partial

from .. import ingest
from ..errors import AerostoreError, UsageError
from . import state
from .search import Search, term_query
from .tclstyle import install_tcl_rules, split_list

__all__ = ["Session", "install_shim", "tcl_error", "shutdown"]

_post_event = None        # post_event(capsule, (callback, words)): queue to the interp's thread
_call_tcl = None          # call_tcl(capsule, words): run now, on the interp's thread
_durable = None           # durable(capsule, number, csn, ok): the commit waited for is done


class DurableWait(int):
    """What a write command returns to the shim instead of waiting for its
    commit's flush itself: the number of this wait (the session's own
    sequence).  The shim gives the GIL back and waits in C until the
    ticket's waker, ``durable(capsule, number, csn, ok)``, says the commit
    is durable and published; the command's result is then empty, or, if
    ``ok`` is false, the error of ``t_durable_failed``.  Why: a thread woken
    from a Python lock must take the GIL again before it can return to Tcl;
    on 2 cores that hand-off cost about as much as the commit's own Python
    (docs/decisions.md)."""

    __slots__ = ()


def install_shim(split_list_fn, post_event_fn, call_tcl_fn, durable_fn=None) -> None:
    """Called once by the shim with its C helpers."""
    global _post_event, _call_tcl, _durable
    install_tcl_rules(split_list_fn)
    _post_event = post_event_fn
    _call_tcl = call_tcl_fn
    _durable = durable_fn


def tcl_error(exc: BaseException) -> tuple:
    """(message, errorCode words, extra errorInfo or None) for an exception."""
    if isinstance(exc, AerostoreError):
        return str(exc), exc.tcl_errorcode, None
    name = type(exc).__name__
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return (f"aerostore: internal error: {name}: {exc}", ["AEROSTORE", "INTERNAL", name],
            "\n    (Python traceback)\n" + tb.rstrip())


def shutdown() -> None:
    """Tcl's exit handler: close the store, idempotently."""
    state.shutdown()


_positions_cache: tuple = (None, {})


def _field_positions(schema) -> dict:
    """name or alias -> position, for the current FlightState schema (cached)."""
    global _positions_cache
    cached, positions = _positions_cache
    if cached is not schema:
        positions = {}
        for i, f in enumerate(schema.fields):
            for name in (f.name,) + f.aliases:
                positions[name] = i
        _positions_cache = (schema, positions)
    return positions


def _pairs(names, row, with_nulls: bool) -> list:
    out = []
    for name, v in zip(names, row):
        if v is not None or with_nulls:
            out.append(name)
            out.append(v)
    return out


class _Watch:
    """One ``FlightState watch`` as its queued events see it.  An event queued
    to the interp's thread reads ``callback`` when it runs there: after
    ``end`` it is None and the event is dropped, so ``unwatch`` also stops the
    events already queued (a callback may unwatch itself)."""

    __slots__ = ("callback", "sub")

    def __init__(self, callback: str):
        self.callback = callback
        self.sub = None              # the engine's Subscription

    def end(self) -> None:
        self.callback = None
        self.sub.close()


class Session:
    """The commands of one Tcl interpreter.  ``safe``: a safe interpreter
    (the shim then offers only read-only subcommands).

    Slots, not a ``__dict__``: the shim's ``get`` (c_shim/rowget.c) reads
    ``_txn_table`` on every call straight from its slot."""

    __slots__ = ("safe", "_capsule", "_txn", "_txn_table", "_watches", "_queries",
                 "_queries_table", "_ticket", "_waits", "__weakref__")

    def __init__(self, safe: bool, capsule):
        self.safe = bool(safe)
        self._capsule = capsule      # the interp, for post_event
        self._txn = None             # the aerostore::transaction in progress
        self._txn_table = None
        self._watches: dict = {}     # id -> _Watch
        self._queries: dict = {}     # search options -> Query, see search.py
        self._queries_table = None   # the table those queries are on
        self._ticket = None          # (db, ticket) of the commit the shim waits for
        self._waits = 0              # DurableWait numbers

    def close(self) -> None:
        """The interpreter is being deleted: end its transaction and watches."""
        for watch in list(self._watches.values()):
            watch.end()
        self._watches.clear()
        self._queries.clear()
        self._queries_table = None
        txn, self._txn, self._txn_table = self._txn, None, None
        if txn is not None:
            txn.rollback()
        self._capsule = None

    # -- where reads and writes go -------------------------------------------
    def _table(self):
        """The FlightState table, or the same through the open transaction."""
        return self._txn_table or state.current or state.flights()

    @staticmethod
    def _schema():
        return state.flights().schema

    def _positions(self, fields) -> list:
        schema = self._schema()
        return [schema.position(f) for f in fields]

    # -- aerostore:: ---------------------------------------------------------
    def a_init(self, data_dir=state.DEFAULT_DIR):
        return f"aerostore ready (dir={state.open_store(str(data_dir))})"

    def a_set_config(self, key, value):
        state.set_config(str(key), value)
        return "ok"

    def a_get_config(self, key):
        return state.get_config(str(key))

    def a_checkpoint_now(self):
        return f"checkpoint rows={state.database().checkpoint()}"

    def a_stats(self):
        return state.database().stats()

    def a_close(self):
        if self._txn is not None:
            raise UsageError("aerostore::close is not allowed inside aerostore::transaction",
                             "TRANSACTION")
        state.close()
        self._queries.clear()
        self._queries_table = None
        return ""

    def txn_begin(self):
        if self._txn is not None:
            raise UsageError("aerostore::transaction: a transaction is already open in this "
                             "interpreter (they do not nest)", "NESTED")
        txn = state.database().begin()
        self._txn = txn
        self._txn_table = txn.table(state.TABLE)

    def txn_commit(self):
        txn, self._txn, self._txn_table = self._txn, None, None
        if txn is not None:
            txn.commit()

    def txn_rollback(self):
        txn, self._txn, self._txn_table = self._txn, None, None
        if txn is not None:
            txn.rollback()

    # -- FlightState ---------------------------------------------------------
    def t_get(self, key, *fields):
        # The hottest command: no helper calls on the way to Table.get.
        row = (self._txn_table or state.current or state.flights()).get(key)
        if row is None or not fields:
            return row
        pos = _field_positions(state.current.schema)
        try:
            if len(fields) == 1:
                return (row[pos[fields[0]]],)
            return tuple([row[pos[f]] for f in fields])
        except (KeyError, TypeError):
            for f in fields:
                state.current.schema.position(f)    # raises the Tcl-style error
            raise

    def _named(self, key, fields, with_nulls):
        row = self._table().get(key)
        if row is None:
            return None
        schema = self._schema()
        if fields:
            pos = self._positions(fields)
            return _pairs([schema.names[p] for p in pos], [row[p] for p in pos], with_nulls)
        return _pairs(schema.names, row, with_nulls)

    def t_array_get(self, key, *fields):
        return self._named(key, fields, False)

    def t_array_get_with_nulls(self, key, *fields):
        return self._named(key, fields, True)

    def t_exists(self, key):
        return self._table().exists(key)

    def t_delete(self, key):
        return self._table().delete(key)

    def t_count(self):
        return self._table().count()

    def t_fields(self):
        return self._schema().names

    def c_set(self, key, *pairs):
        """``FlightState set`` as the shim's combiner runs it (c_shim/durable.c),
        in whichever Tcl thread combines: ``t_set`` that leaves the flush and
        the prune to ``c_done``, called once the combiner has run every queued
        command."""
        return self._set(key, pairs, False)

    @staticmethod
    def c_done(flush):
        """The end of a combiner's group (c_shim/durable.c): flush its commits
        (``flush``: some wait for their flush) as one group, in this thread,
        then prune what the group's commits left behind, in one pass."""
        db = state.current and state.database()
        if db is not None:
            if flush:
                db.flush_log()
            db._vacuum()
        return None

    def t_set(self, key, *pairs):
        return self._set(key, pairs, True)

    def _set(self, key, pairs, lead):
        """``set`` of ``pairs`` (field value ...) on ``key``; ``lead``: this
        call flushes and prunes its own commit, else ``c_done`` does."""
        schema = self._schema()
        values = {}
        for i in range(0, len(pairs), 2):
            p = schema.position(pairs[i])
            if p == schema.key_pos:
                raise UsageError(f'field "{schema.key_name}" is the key: it cannot be set',
                                 "FIELD", schema.key_name)
            values[schema.names[p]] = pairs[i + 1]
        key = schema.coerce_key(key)
        if self._txn_table is not None:
            self._txn_table.set(key, values)
            return None
        table = state.current or state.flights()
        db = table._db
        # an autocommit set: one commit that cannot conflict (Database._commit_set)
        ticket = db._commit_set(table._st, key, values, _durable is None, lead)
        return self._deferred(db, ticket, lead)

    def _deferred(self, db, ticket, lead=True):
        """What a write command returns for its commit's ``ticket``: None when
        it is done (or raise its error), else a ``DurableWait`` for the shim.
        ``lead``: flush here if no flush runs; else leave it to ``c_done``."""
        if ticket is None:
            return None
        n = self._waits = self._waits + 1
        if ticket.defer(partial(_durable, self._capsule, n), lead):
            self._ticket = (db, ticket)
            return DurableWait(n)
        db.wait_durable(ticket)
        return None

    def t_durable_failed(self):
        """The shim's call when the commit it waited for failed: raises its error."""
        pending, self._ticket = self._ticket, None
        if pending is not None:
            pending[0].wait_durable(pending[1])
        return None

    def t_index_indexed(self):
        return state.flights().indexed()

    def t_index_create(self, field):
        state.flights().create_index(str(field))
        return None

    def t_index_drop(self, field):
        state.flights().drop_index(str(field))
        return None

    def t_search(self, *options):
        """The options as the shim read them (c_shim/search.c); see search.Search."""
        return Search(self, *options).run()

    def t_ingest_tsv(self, data, batch_size=1024):
        return str(ingest.ingest_tsv(state.database(), state.TABLE, str(data), batch_size,
                                     txn=self._txn))

    def t_ingest_file(self, path, batch_size, progress_command):
        """``path ?batch_size? ?-progress command?`` (None: not given): the command
        is called as ``{*}command phase rows elapsed_s`` about once a second
        (phase validate, then apply)."""
        progress = None
        if progress_command is not None:
            words = split_list(progress_command, "-progress command")
            capsule, call = self._capsule, _call_tcl

            def progress(phase, rows, elapsed_s):
                call(capsule, words + [phase, rows, round(elapsed_s, 3)])
        return str(ingest.ingest_file(state.database(), state.TABLE, str(path),
                                      1024 if batch_size is None else batch_size,
                                      txn=self._txn, progress=progress))

    def t_write_tsv(self, compare, path):
        """``?-compare terms? ?-file path?`` (None: not given)."""
        query = term_query(self._table(), compare) if compare is not None else None
        return ingest.export_tsv(state.database(), state.TABLE, dest=None if path is None else str(path),
                                 query=query, txn=self._txn)

    def t_watch(self, compare, key, callback):
        """``?-key key? ?-compare terms? callback`` (None: not given); the shim
        read the options (a last word naming an option is that option without
        its value)."""
        if key is not None:
            key = state.flights().schema.coerce_key(key)
        where = term_query(state.flights(), compare) if compare is not None else None
        split_list(callback, "callback")
        names = self._schema().names
        capsule = self._capsule
        post = _post_event

        watch = _Watch(str(callback))

        def deliver(ev):
            post(capsule, (watch, [ev.op, ev.key, _pairs(names, ev.row, False)]))

        watch.sub = state.database().subscribe(state.TABLE, key=key, where=where, callback=deliver)
        self._watches[watch.sub.id] = watch
        return watch.sub.id

    def t_unwatch(self, wid):
        try:
            watch = self._watches.pop(int(wid))
        except (KeyError, ValueError):
            raise UsageError(f'no watch "{wid}" in this interpreter', "WATCH", str(wid)) from None
        watch.end()
        return None
