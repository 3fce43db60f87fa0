"""Database: the facade that owns tables, configuration and the commit pipeline.

Commit pipeline (``_commit``), under the commit lock:
  1. check each written key against the transaction's snapshot (first committer wins);
  2. take the next commit sequence number (CSN);
  3. install the new versions (invisible: xmin = CSN > the published watermark);
  4. hand the WAL record to storage (group commit happens there).
Then, with ``synchronous_commit on``, wait for the flush; the WAL writer
publishes in CSN order (advances the watermark, runs the publish hooks).  With
it off, the commit publishes at once.  Finally the committer prunes what the
vacuum horizon allows.

The publish hooks (change subscriptions) run inside that pipeline: in the
committer's thread under the commit lock, or in the thread that flushed the
log, which the commit waits for.  A hook (a subscription callback) that tried
to commit, change an index, checkpoint or close would wait for itself, so those
calls raise ``UsageError`` when made from a hook.

Background threads never end silently.  The WAL writer (storage/walwriter.py) and the index
maintainer (maintainer.py) turn the store read-only (``stats`` gives
``read_only_reason``; later writes get ``ReadOnlyError`` naming it); the
checkpointer here and the TTL sweeper (ttl.py) report the error
(``checkpoint_last_error``, ``ttl_last_error``) and try again next time.

One ``Database`` per directory per process (storage takes a lock file).
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections import deque
from itertools import chain, repeat
from operator import itemgetter
from threading import get_ident

import numpy as np

from .config import Config
from .errors import (AerostoreError, ClosedError, CorruptError, ReadOnlyError,
                     StorageIOError, UsageError, WriteConflict)
from .mvcc import SnapshotRegistry
from .planner import execute
from .query import Query
from .schema import Schema
from .storage import DirectoryStorage, MemoryStorage, Sink, replay
from .storage.walformat import columns_rows, putcols_columns
from .gcpause import paused, young
from .arrayindex import ArrayIndex, new_index
from .heap import TableStore
from .keymap import KeyMap
from .maintainer import Maintainer
from .retry import run_in_transaction
from .switching import adopt as _adopt_switch_interval
from .txn import Transaction, TxnTable, set_row
from . import ingest, readgate
from .ttl import TTLSweeper
from .watch import WatchHub

_GATE_KEY = "aerostore.readers_wait_for_writers"   # lives in each TableStore (gate_queries)

__all__ = ["Database", "Table", "open"]


def open(path: str | None = ":memory:", **config) -> "Database":  # noqa: A001 - the library's verb
    """Open (or create) a database: a directory, or ``":memory:"`` for no durability.

    Keyword arguments are settings (``synchronous_commit=False`` or
    ``**{"aerostore.ttl_secs": 60}``); see aerostore.config.
    """
    return Database(path, **config)


class Database:
    """A set of tables with snapshot-isolated transactions; see the module docstring."""

    def __init__(self, path: str | None = ":memory:", *, storage=None, **config):
        self.config = Config(**config)
        self.config.on_change(self._config_changed)     # (runs only on later changes)
        _adopt_switch_interval()
        if storage is None:
            if path in (None, ":memory:"):
                storage = MemoryStorage()
            else:
                storage = DirectoryStorage(path, self.config)
        self._storage = storage
        self.path = getattr(storage, "path", path)
        self._snaps = SnapshotRegistry()
        self._commit_lock = threading.Lock()
        self._pub_lock = threading.Lock()
        self._vac_lock = threading.Lock()
        self._stores: dict[str, TableStore] = {}
        self._tables: dict[str, Table] = {}
        self._hooks: list = []
        self._close_hooks: list = []
        self._pending_pub: deque = deque()
        # one callback object for every commit: the log calls it once per flush
        # with the flush's last CSN (storage.interface.Storage.log)
        self._on_durable = self._publish
        self._prune_q: deque = deque()
        self._csn = 0
        self._commits = 0
        self._failed: StorageIOError | None = None
        self._hook_thread = None    # the thread running the publish hooks, while it does
        self._closed = False
        self._checkpointer = None
        self._maint = Maintainer(on_error=self._maintainer_failed, vacuum=self._vacuum)
        try:
            with paused():
                self._recover()
        except BaseException:
            self._maint.stop()
            storage.close()
            raise
        if storage.durable:
            self._checkpointer = _Checkpointer(self)
        self.watch = WatchHub(self)         # change subscriptions (watch.py)
        self.ttl = TTLSweeper(self)         # TTL sweeper (ttl.py); stops itself at close
        self.ttl.start()

    # -- recovery ------------------------------------------------------------------
    def _recover(self) -> None:
        """Load the checkpoint into the heaps, replay the WAL on them.

        A checkpoint of format 2 hands over its columns and numeric index arrays
        (``TableStore.load_columns``).  The replay reduces the log to each key's
        last row (``_Replay``) and writes that into the heaps at the end
        (``_Replay.apply``; ``_catch_up`` brings the columns and the indexes a
        checkpoint handed over up to date).  Other indexes build lazily, on
        first read.
        """
        rec = self._storage.recover()
        stores = self._stores
        loaded = {}
        for t in rec.tables:
            schema = Schema.from_dict(t.schema)
            st = stores[schema.name] = self._new_store(schema)
            for f in t.index_fields:
                st.add_retired_index(schema.position(f))
            try:
                if t.columns is None:
                    st.load(t.rows)
                else:
                    st.load_columns(t.n, t.columns, t.nulls,
                                    {schema.position(f): a for f, a in t.index_arrays.items()})
            except ValueError as e:         # the key map's: a key the checkpoint holds twice
                raise CorruptError(getattr(self._storage, "path", "checkpoint"), 0,
                                   f"the checkpoint's table {schema.name!r}: {e}") from None
            loaded[schema.name] = len(st.rows)
        t = rec.tables = None           # the heaps hold what they need: free the rest now
        sink = _Replay(self)
        replay(rec.records, sink)
        sink.apply(loaded)
        self._csn = rec.last_csn
        self._snaps.watermark = rec.last_csn

    # -- tables ----------------------------------------------------------------------
    def create_table(self, schema: Schema) -> "Table":
        """Create a table (with its default indexes); the existing one if the schema is equal."""
        self._check_open()
        if not isinstance(schema, Schema):
            raise UsageError("create_table needs a Schema (declare it with @aerostore.table)")
        self._check_not_in_hook("create_table")
        with self._commit_lock:
            st = self._stores.get(schema.name)
            if st is not None:
                if st.schema.to_dict()["fields"] != schema.to_dict()["fields"]:
                    raise UsageError(f'table "{schema.name}" exists with another schema')
                return self.table(schema.name)
            self._check_writable()
            st = self._new_store(schema)
            for f in schema.default_indexes:
                st.create_index(schema.position(f))
            ticket = self._log_ddl([("create_table", schema.name, schema.to_dict())])
            self._stores[schema.name] = st
        self._wait(ticket)
        return self.table(schema.name)

    def _new_store(self, schema: Schema) -> TableStore:
        st = TableStore(schema)
        st.maintainer = self._maint
        st.gate_queries = self.config.get(_GATE_KEY)
        return st

    def _config_changed(self, key: str, value) -> None:
        """A setting changed: the one that lives in the stores goes to each of them."""
        if key == _GATE_KEY:
            for st in list(self._stores.values()):
                st.gate_queries = value

    def _maintainer_failed(self, e: BaseException) -> None:
        """The index maintainer stopped on ``e``: fail loudly (read-only, reason in stats)."""
        self._failed = StorageIOError(f"the index maintainer stopped: {type(e).__name__}: {e}")

    def table(self, name) -> "Table":
        """The autocommit handle of table ``name`` (a string or a Schema)."""
        st = self._store(name)
        t = self._tables.get(st.schema.name)
        if t is None:
            t = self._tables[st.schema.name] = Table(self, st)
        return t

    @property
    def tables(self) -> list:
        return sorted(self._stores)

    def _store(self, name) -> TableStore:
        self._check_open()
        if isinstance(name, Schema):
            name = name.name
        st = self._stores.get(name)
        if st is None:
            have = ", ".join(sorted(self._stores)) or "none"
            raise UsageError(f'no table "{name}" (tables: {have}); create it with create_table', "TABLE", str(name))
        return st

    def _index_ddl(self, st: TableStore, field: str, create: bool) -> bool:
        pos = st.schema.position(field)
        fname = st.schema.names[pos]
        self._check_not_in_hook("create_index" if create else "drop_index")
        with self._commit_lock:
            self._check_writable()
            changed = st.create_index(pos) if create else st.drop_index(pos)
            if not changed:
                return False
            ticket = self._log_ddl([("create_index" if create else "drop_index", st.schema.name, fname)])
        self._wait(ticket)
        return True

    def _log_ddl(self, ops):
        """Log a schema change as its own commit (caller holds the commit lock)."""
        self._csn += 1
        csn = self._csn
        self._pending_pub.append((csn, []))
        try:
            ticket = self._storage.log(csn, ops, self._on_durable)
        except StorageIOError as e:
            self._failed = e
            raise
        if not self.config.get("aerostore.synchronous_commit"):
            self._publish(csn)
        return ticket

    # -- transactions --------------------------------------------------------------------
    def begin(self) -> Transaction:
        """A new transaction at the current snapshot."""
        self._check_open()
        return Transaction(self)

    def transaction(self) -> Transaction:
        """``with db.transaction() as txn:`` commits on exit, rolls back on an exception."""
        return self.begin()

    def run_in_transaction(self, fn, *args, timeout: float | None = None, **kw):
        """``fn(txn, *args, **kw)`` in a transaction, run again after a write conflict.

        Waits for the winning commit to become visible before each retry and
        backs off on repeated conflicts (retry.py); ``fn`` must be safe to run
        more than once (it sees a fresh snapshot each time).  Returns ``fn``'s
        result; raises ``WriteConflict`` after ``timeout`` seconds of conflicts
        (default 30), or what ``fn`` or the commit raised.
        """
        self._check_open()
        return run_in_transaction(self, fn, *args, timeout=timeout, **kw)

    def _commit(self, txn: Transaction) -> None:
        """Commit ``txn``'s writes (the pipeline in the module docstring); returns
        once the commit is durable (``synchronous_commit on``) and visible."""
        writes = txn._writes
        if not any(writes.values()):
            return
        if self._hook_thread == get_ident():
            self._check_not_in_hook("a commit")
        stores = self._stores
        n = sum(map(len, writes.values()))
        with paused(n):
            ticket = self._commit_locked(txn, writes, stores)
        young(n)
        # the transaction's end (Transaction._end) releases its snapshot and vacuums
        if ticket is not None:
            self._wait(ticket)

    def _commit_locked(self, txn, writes, stores):
        """Check, install and log ``txn``'s writes under the commit lock; the Ticket
        of a synchronous commit, else None."""
        with self._commit_lock:
            self._check_writable()
            s = txn.snapshot
            for tname, ws in writes.items():
                if ws:
                    hit = stores[tname].check_conflicts(ws, s)
                    if hit is not None:
                        k, won = hit
                        e = WriteConflict(
                            f'write conflict on key "{k}" in {tname}: another transaction committed it '
                            f'first; run the transaction again')
                        e.csn = won
                        raise e
            self._csn += 1
            csn = self._csn
            changes: list = []
            ops: list = []
            for tname, ws in writes.items():
                if ws:
                    st = stores[tname]
                    done = st.install(ws, csn, tname)
                    self._prune_q.append((csn, st, done.touched))
                    if ops:                     # a second table: its records after the first's
                        ops += done.ops
                        changes += done.changes
                    else:
                        ops, changes = done.ops, done.changes
            return self._log_locked(csn, ops, changes)

    def _log_locked(self, csn: int, ops: list, changes: list):
        """The end of every commit, under the commit lock, once its versions
        are installed: queue its changes for publication, hand its records to
        the log, and, with ``synchronous_commit off``, publish it at once.
        Returns the Ticket of a synchronous commit (the caller waits on it or
        hands it on), else None."""
        self._pending_pub.append((csn, changes))
        sync = self.config.get("aerostore.synchronous_commit")
        try:
            ticket = self._storage.log(csn, ops, self._on_durable)
        except StorageIOError as e:
            # the log stopped (an earlier flush failed): fail-stop; the versions
            # just installed stay invisible (their CSN is never published)
            self._failed = e
            raise
        self._commits += 1
        if not sync:
            self._publish(csn)
            return None
        return ticket

    def _commit_set(self, st: TableStore, key: str, values: dict, wait: bool = True,
                    vacuum: bool = True):
        """``set(key, values)`` on ``st`` as one commit, without a transaction:
        the autocommit write of the Tcl bridge (``FlightState set``).  ``key``
        is coerced already.

        The row is built under the commit lock over the newest installed
        version of ``key`` (published, or still waiting for its flush), so
        the commit cannot conflict: no snapshot to register, no write set, no
        retry (a transaction's ``set`` costs about twice the Python).  Building on
        an unpublished version is safe: the log makes commits durable and
        visible in CSN order and stops at its first failure, so if that
        commit fails, this later one fails with it.

        Returns as ``_commit``: the Ticket of a synchronous commit when
        ``wait`` is False, else None once it is durable.  ``vacuum`` False
        leaves the prune of this commit's old version to the caller (the Tcl
        combiner prunes once per group: ``Session.c_done``)."""
        if self._hook_thread == get_ident():
            self._check_not_in_hook("a commit")
        with self._commit_lock:
            self._check_writable()
            row = set_row(st.schema, key, st.get(key, self._csn), values)
            self._csn += 1
            csn = self._csn
            done = st.install({key: row}, csn, st.schema.name)
            self._prune_q.append((csn, st, done.touched))
            ticket = self._log_locked(csn, done.ops, done.changes)
        young(1)
        if ticket is not None and wait:
            self._wait(ticket)
            ticket = None
        if vacuum:
            self._vacuum()
        return ticket

    def flush_log(self) -> None:
        """Write and sync the commits queued in the log now, in this thread,
        unless a flush runs already (``Storage.flush``): what makes the commits
        the Tcl bridge made without waiting (``_commit_set``) durable when
        nobody waits on them."""
        self._storage.flush()

    def wait_durable(self, ticket) -> None:
        """Block until the commit of ``ticket`` (from ``_commit_set``)
        is durable and visible.  Raises ``StorageIOError`` if its flush failed
        (the store is read-only from then on)."""
        self._wait(ticket)

    def _wait(self, ticket) -> None:
        try:
            ticket.wait()
        except StorageIOError as e:
            self._failed = e
            raise

    def _publish(self, csn: int) -> None:
        """Make commits up to ``csn`` visible and run the publish hooks, in CSN order, once."""
        with self._pub_lock:
            if not self._snaps.advance(csn):
                return
            q = self._pending_pub
            hooks = self._hooks
            self._hook_thread = get_ident()
            try:
                while q and q[0][0] <= csn:
                    c, changes = q.popleft()
                    if changes:
                        for fn in hooks:
                            try:
                                fn(c, changes)
                            except Exception:  # noqa: BLE001 - a hook must not break commits
                                traceback.print_exc(file=sys.stderr)
            finally:
                self._hook_thread = None

    def _check_not_in_hook(self, what: str) -> None:
        """``UsageError`` if the calling thread is running the publish hooks (a
        subscription callback): ``what`` would wait for the very commit that is
        delivering the event, and hang."""
        if self._hook_thread == get_ident():
            raise UsageError(f"{what} is not allowed inside a subscription callback: the callback "
                             "runs inside the commit that delivers its event, so this would wait "
                             "for itself; hand the work to another thread")

    def add_publish_hook(self, fn) -> None:
        """``fn(csn, changes)`` after each commit becomes visible, in CSN order; must be quick."""
        self._hooks.append(fn)

    def remove_publish_hook(self, fn) -> None:
        try:
            self._hooks.remove(fn)
        except ValueError:
            pass

    def _vacuum(self, block: bool = False) -> None:
        """Prune the slots of commits every registered snapshot now sees.

        Writers call it after each commit (the Tcl combiner once per group of
        commits), the maintainer for readers; when a vacuum already runs,
        return at once (``block``: wait for it, then go on).  The slots of all
        the commits ready go to one ``prune`` per table, each slot once: a
        prune's fixed cost (its latch section, the readers' picture) is paid
        once for a group of single-row commits, not per commit.
        """
        q = self._prune_q
        if not q or not self._vac_lock.acquire(blocking=block):
            return
        try:
            h = self._snaps.horizon()
            ready: dict = {}                # id(store) -> (store, [slots of its commits])
            while q and q[0][0] <= h:
                _csn, st, slots = q.popleft()
                have = ready.get(id(st))
                if have is None:
                    ready[id(st)] = (st, [slots])
                else:
                    have[1].append(slots)
            for st, parts in ready.values():
                # a slot twice in one prune would be pruned twice: each once, in order
                slots = parts[0] if len(parts) == 1 else \
                    list(dict.fromkeys(chain.from_iterable(parts)))
                with paused(len(slots)):
                    st.prune(slots, h)
        finally:
            self._vac_lock.release()

    # -- bulk TSV and change subscriptions (ingest.py, watch.py) ----------------------------
    def ingest_tsv(self, table, data, batch_size=1024, **kw) -> "ingest.IngestResult":
        """Upsert TSV text/bytes in batches; see aerostore.ingest.ingest_tsv."""
        return ingest.ingest_tsv(self, table, data, batch_size, **kw)

    def ingest_file(self, table, path, batch_size=1024, **kw) -> "ingest.IngestResult":
        """Upsert a TSV file, streamed; see aerostore.ingest.ingest_file."""
        return ingest.ingest_file(self, table, path, batch_size, **kw)

    def export_tsv(self, table, dest=None, **kw):
        """Rows as TSV (text, or written to a path/file); see aerostore.ingest.export_tsv."""
        return ingest.export_tsv(self, table, dest, **kw)

    def subscribe(self, table, **kw):
        """Subscribe to a table's committed changes; see aerostore.watch."""
        self._check_open()
        return self.watch.subscribe(table.name if isinstance(table, Schema) else table, **kw)

    # -- configuration, maintenance ------------------------------------------------------
    def set_config(self, key: str, value) -> None:
        self._check_open()
        self.config.set(key, value)

    def get_config(self, key: str):
        return self.config.get(key)

    def get_config_text(self, key: str) -> str:
        return self.config.get_text(key)

    def checkpoint(self) -> int:
        """Write a checkpoint of the current snapshot while writers continue; rows written.

        The snapshot's rows are first copied out of each heap as columns
        (``TableStore.snapshot_columns``: about 0.1 s at 1M rows, writers running
        between its slices), then the snapshot is released and the file written
        from the copy.  A snapshot held for the whole write (seconds) would keep
        every version the feed makes meanwhile: the chains, the readers'
        picture and the index layers would grow, and the prune after it would
        stall writers and readers.  Costs a transient copy of the columns."""
        self._check_open()
        self._check_not_in_hook("checkpoint")
        s = self._snaps.take()
        try:
            tables = []
            for st in list(self._stores.values()):
                names = st.schema.names
                tables.append((st.schema.to_dict(), [names[p] for p in list(st.indexes)],
                               st.snapshot_columns(s), index_entries(st.schema)))
        finally:
            self._snaps.release(s)
        try:
            self._storage.checkpoint(s, tables)
            return sum(t[2].n for t in tables)
        finally:
            self._vacuum()

    def stats(self) -> dict:
        """Counters: rows, versions, commits, csn, wal_bytes, ... (values are ints or strs)."""
        self._check_open()
        s = self._snaps.take()      # registered: a vacuum may not prune under the count
        rows = 0
        versions = 0
        try:
            for st in self._stores.values():
                rows += st.count(s)
                with st.latch.shared:
                    versions += st.n_frozen
                    for slot in st.unfrozen:
                        v = st.rows[slot]
                        while v is not None:
                            versions += 1
                            v = v.prev
        finally:
            self._snaps.release(s)
        storage = self._storage.stats()
        reason = storage.get("wal_failed") or (self._failed.message if self._failed else "")
        out = {"rows": rows, "versions": versions, "commits": self._commits, "csn": self._csn,
               "tables": len(self._stores), "snapshots": self._snaps.active(),
               "pending_prune": len(self._prune_q),
               "readonly": int(bool(reason)), "read_only_reason": reason,
               "durable": int(self._storage.durable),
               "ttl_errors": self.ttl.errors, "ttl_last_error": _message(self.ttl.last_error)}
        cp = self._checkpointer
        if cp is not None:
            out["checkpoint_errors"] = cp.errors
            out["checkpoint_last_error"] = _message(cp.last_error)
        for k, v in storage.items():
            out.setdefault(k, v)
        gate = readgate.stats()         # the process's, not this database's: see readgate.py
        for k in ("answered", "fell_back", "waited", "holds"):
            out["readgate_" + k] = gate[k]
        return out

    def memory(self, table) -> dict:
        """Bytes ``table`` (a name or Schema) holds per part: keys, key_dict, rows,
        columns, version_chains, indexes, and their total (aerostore/memory.py says
        what each part holds).  O(rows) in Python, under the table's shared latch
        (writers wait, about 0.7 s at 1M rows): for diagnostics, not a hot path."""
        from .memory import table_memory
        return table_memory(self._store(table))

    # -- lifecycle ------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("database is closed: open it again")

    def _check_writable(self) -> None:
        self._check_open()
        f = self._failed
        if f is not None:
            raise ReadOnlyError(f.message if isinstance(f, ReadOnlyError) else
                                f"the store is read-only: {f.message}")

    def add_close_hook(self, fn) -> None:
        """``fn()`` runs first in close() (background threads stop there)."""
        self._close_hooks.append(fn)

    def close(self) -> None:
        """Flush, stop background threads, release the directory.  Idempotent."""
        if self._closed:
            return
        self._check_not_in_hook("close")
        if self._storage.log_lost:
            # The log is gone: the commits since the last checkpoint are only in
            # memory (and acknowledged); a checkpoint is what makes them recoverable.
            try:
                self.checkpoint()
            except AerostoreError:
                traceback.print_exc(file=sys.stderr)
        self._closed = True
        readgate.changed()      # the shim's readers without the GIL stop reading this store
        for fn in self._close_hooks:
            try:
                fn()
            except Exception:  # noqa: BLE001 - closing must finish
                traceback.print_exc(file=sys.stderr)
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self._maint.stop()
        self._storage.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return f"<aerostore.Database {self.path!r}{' closed' if self._closed else ''}>"


def _message(e) -> str:
    """An error as ``stats`` shows it ("" for none)."""
    if e is None:
        return ""
    return e.message if isinstance(e, AerostoreError) else f"{type(e).__name__}: {e}"


def index_entries(schema: Schema):
    """The ``index_entries`` of a checkpoint of a ``schema`` table (storage/checkpoint.py):
    the ``main`` array an ArrayIndex on a field would hold over the rows written, or
    None for a field whose index is of another kind."""
    def entries(field: str, values, nulls):
        pos = schema.position(field)
        ix = new_index(pos, schema.fields[pos])
        return ix.export_main(values, nulls) if isinstance(ix, ArrayIndex) else None
    return entries


def _catch_up(st: TableStore, n: int, keys, freed: set) -> None:
    """After the log's replay on a heap loaded from a checkpoint (``n`` rows, n > 0):
    bring its columns and its ready indexes, exact for the checkpoint's rows, up to
    the heap.

    ``keys``: the keys the replay put; ``freed``: the slots whose key it deleted.
    Those slots below ``n`` still hold the checkpoint's values in the columns:
    they are read out, the columns take the replayed rows
    (``TableStore.settle_replayed``), and each index loses the entries of the
    values that changed and gains the new ones, in one batch per index (into
    its batch layer: the maintainer folds it into ``main`` in the background).
    O(changed slots) at C speed (numpy).
    """
    rows = st.rows
    slots = freed
    slots.update(map(st.slots.get, keys))
    slots.discard(None)
    S = np.array(sorted(slots), np.int64)
    if not len(S):
        return
    cols = st.columns
    with st.freezing:                       # a writer section: readers' pictures follow
        idx = []
        for ix in st.indexes.values():      # the ready ones are the adopted ArrayIndexes
            if ix.ready and (ix.pos not in cols.cols or not hasattr(ix, "write_columns")):
                ix.retire()                 # (never so; were it, a rebuild on first read)
            elif ix.ready:
                idx.append(ix)
        live = np.fromiter((rows[s] is not None for s in S.tolist()), bool, len(S))
        was = S < n                         # slots that held a checkpoint row
        So = S[was]
        old = {ix.pos: (cols.cols[ix.pos][So], cols.nulls[ix.pos][So]) for ix in idx}
        Sl = S[live]
        st.settle_replayed(S)
        both = live[was]                    # among So: live now
        fresh = ~was[live]                  # among Sl: beyond the checkpoint's rows
        for ix in idx:
            p = ix.pos
            ov, on = old[p]
            nv, nn = cols.cols[p][Sl], cols.nulls[p][Sl]
            # a checkpoint slot still live keeps its entry when its value did not change
            ov_live, on_live = ov[both], on[both]
            nv_old, nn_old = nv[~fresh], nn[~fresh]
            same = (on_live == nn_old) & (on_live | (ov_live == nv_old))
            gone = np.ones(len(So), bool)
            gone[both] = ~same
            came = np.ones(len(Sl), bool)
            came[~fresh] = ~same
            rm = gone & ~on
            add = came & ~nn
            ix.write_columns(ov[rm], So[rm], nv[add], Sl[add])
            ix.nulls.difference_update(So[gone & on].tolist())
            ix.nulls.update(Sl[came & nn].tolist())


class _Replay(Sink):
    """Recovery: the log's row ops gathered per table, applied once at the end.

    ``ops[table]`` is a pair of lists in log order, the keys the commits wrote
    and for each the row put, or None for a delete; a bulk commit's puts are
    appended with two ``list.extend`` (``put_rows``, ``put_batch``), so replay
    costs no Python step per row.  A ``putcols`` record's rows stay columns
    (``cols[table]``: (start in the lists, the columns, their nulls), the
    rows' places holding ``_IN_COLS``) until ``apply``: a table whose every
    row came so, into a heap that holds none, is loaded from the columns
    (``TableStore.load_columns``) without a row tuple made; otherwise the
    rows are made first.  ``apply`` keeps each key's last op (one dict build:
    the key map the heap needs anyway) and writes that into the heap: the
    log's order only matters per key, and no reader runs during recovery.
    Indexes stay retired until their first read builds them, except those a
    checkpoint handed over, which ``_catch_up`` brings up to date."""

    def __init__(self, db: Database):
        self._db = db
        self._stores = db._stores
        self.ops: dict = {}
        self.cols: dict = {}

    def _ops(self, csn: int, table: str) -> tuple:
        ops = self.ops.get(table)
        if ops is None:
            if table not in self._stores:
                raise self.corrupt(csn, f"table {table!r} does not exist")
            ops = self.ops[table] = ([], [])
        return ops

    def _width(self, table: str) -> int:
        return len(self._stores[table].schema.fields)

    def _width_checked(self, csn: int, table: str, rows) -> None:
        """Raise ``corrupt`` unless every row of ``rows`` is a tuple (as the log's
        decoder gives an array) of the table's width."""
        width = self._width(table)
        try:
            ok = set(map(len, rows)) == {width} and set(map(type, rows)) == {tuple}
        except TypeError:
            ok = False
        if not ok:
            raise self.corrupt(csn, f"a put to {table!r} holds a row that is not {width} values")

    def create_table(self, csn: int, table: str, schema: dict) -> None:
        if table not in self._stores:
            sch = Schema.from_dict(schema)
            st = self._stores[table] = self._db._new_store(sch)
            for f in sch.default_indexes:
                st.add_retired_index(sch.position(f))

    def put(self, csn: int, table: str, key: str, values) -> None:
        keys, rows = self.ops.get(table) or self._ops(csn, table)
        if values.__class__ is not tuple or len(values) != self._width(table):
            self._width_checked(csn, table, (values,))      # raises
        keys.append(key)
        rows.append(values)

    def put_batch(self, csn: int, table: str, ops) -> None:
        keys, rows = self.ops.get(table) or self._ops(csn, table)
        new = list(map(_OP_VALUES, ops))
        self._width_checked(csn, table, new)
        keys.extend(map(_OP_KEY, ops))
        rows.extend(new)

    def put_rows(self, csn: int, table: str, key_pos: int, rows) -> None:
        keys, log_rows = self.ops.get(table) or self._ops(csn, table)
        kp = self._stores[table].schema.key_pos
        if key_pos.__class__ is not int or key_pos != kp or rows.__class__ not in (tuple, list):
            raise self.corrupt(csn, f"a putrows record for {table!r} that is not rows keyed "
                                    f"on field {kp}")
        self._width_checked(csn, table, rows)
        new = list(map(itemgetter(key_pos), rows))
        if set(map(type, new)) - {str}:
            raise self.corrupt(csn, f"a putrows record for {table!r} with a key that is not a string")
        keys.extend(new)
        log_rows.extend(rows)

    def put_cols(self, csn: int, table: str, key_pos: int, n: int, types, sections) -> None:
        keys, rows = self.ops.get(table) or self._ops(csn, table)
        st = self._stores[table]
        want = st.wal_types         # what the writer logs: the table's own column types
        if (key_pos != st.schema.key_pos or types.__class__ not in (tuple, list) or want is None
                or list(types) != ["str" if dt is None else dt.str for dt in want]):
            raise self.corrupt(csn, f"a putcols record for {table!r} whose columns are not "
                                    f"the table's fields")
        cols, nulls = putcols_columns(self, csn, table, key_pos, n, types, sections)
        self.cols.setdefault(table, []).append((len(rows), types, cols, nulls))
        keys.extend(cols[key_pos])
        rows.extend(repeat(_IN_COLS, n))

    def delete(self, csn: int, table: str, key: str) -> None:
        keys, rows = self.ops.get(table) or self._ops(csn, table)
        keys.append(key)
        rows.append(None)

    def create_index(self, csn: int, table: str, field: str) -> None:
        st = self._stores.get(table)
        if st is None:
            raise self.corrupt(csn, f"table {table!r} does not exist")
        st.add_retired_index(st.schema.position(field))

    def drop_index(self, csn: int, table: str, field: str) -> None:
        st = self._stores.get(table)
        if st is None:
            raise self.corrupt(csn, f"table {table!r} does not exist")
        st.indexes.pop(st.schema.position(field), None)

    def apply(self, loaded: dict) -> None:
        """Write each table's ops into its heap.  ``loaded``: table name -> the rows
        its checkpoint loaded.  A heap that holds no row takes the last row of
        each key whole (``TableStore.load``: the columns filled at C speed, the
        key map the one built here, indexes built on first read); one that does
        takes each key's last op, then ``_catch_up`` brings its columns and
        handed-over indexes up to date.  O(ops) at C speed, plus O(distinct
        keys) in Python for a table a checkpoint filled."""
        for name, (keys, rows) in self.ops.items():
            st = self._stores[name]
            last = KeyMap.from_keys(keys, last=True)   # key -> its last op
            batches = self.cols.pop(name, ())
            if batches and not loaded.get(name, 0) and sum(len(b[2][0]) for b in batches) == len(rows):
                _load_batches(st, batches, last, len(keys))
                continue
            for start, types, cols, nulls in batches:     # rows beside other ops: made
                made = columns_rows(types, cols, nulls)
                rows[start:start + len(made)] = made
            if not loaded.get(name, 0):
                if len(last) != len(keys) or None in rows:   # a key written twice, or deleted
                    at = [i for i in last.values() if rows[i] is not None]    # in op order
                    keys = list(map(keys.__getitem__, at))
                    rows = list(map(rows.__getitem__, at))
                    last = KeyMap.from_keys(keys)
                st.load(rows, keys, last)
                continue
            put, freed = [], set()
            replay_put, replay_del, slots = st.replay_put, st.replay_del, st.slots
            for key, i in last.items():
                values = rows[i]
                if values is None:
                    slot = slots.get(key)
                    if slot is not None:
                        freed.add(slot)
                        replay_del(key)
                else:
                    put.append(key)
                    replay_put(key, values)
            _catch_up(st, loaded[name], put, freed)
        self.ops = {}                       # the replayed rows are in the heaps now


_OP_KEY = itemgetter(2)
_OP_VALUES = itemgetter(3)
_IN_COLS = ()           # a row of ops' lists that is in a putcols batch's columns


def _load_batches(st: TableStore, batches: list, last: KeyMap, n_ops: int) -> None:
    """Recovery of a table whose every row came from putcols records, into an empty
    heap: the batches' columns joined, each key's last row kept (``last``: key ->
    its place among the ``n_ops`` rows), loaded as whole columns.  O(rows) in C;
    no row tuple is made."""
    width = len(batches[0][1])
    cols, nulls = [], []
    for p in range(width):
        parts = [b[2][p] for b in batches]
        if parts[0].__class__ is list:
            col = parts[0] if len(parts) == 1 else [v for part in parts for v in part]
        else:
            col = np.concatenate(parts)
        nul = None
        if any(b[3][p] is not None for b in batches):
            nul = np.concatenate([np.zeros(len(b[2][p]), bool) if b[3][p] is None else b[3][p]
                                  for b in batches])
        cols.append(col)
        nulls.append(nul)
    slots = last                            # each key once: its place is its slot
    if len(last) != n_ops:                  # a key written more than once: its last row
        at = np.fromiter(last.values(), np.intp, len(last))
        cols = [list(map(c.__getitem__, at.tolist())) if c.__class__ is list else c[at]
                for c in cols]
        nulls = [None if nu is None else nu[at] for nu in nulls]
        slots = None
    st.load_columns(len(last), cols, nulls, {}, slots)


class Table:
    """Autocommit handle of one table: every call is its own transaction.

    Reads see the latest published state; writes retry automatically on a write
    conflict (each call is self-contained, so a retry is always safe).
    """

    def __init__(self, db: Database, st: TableStore):
        self._db = db
        self._st = st
        self.schema = st.schema
        self.name = st.schema.name

    def _latest(self) -> int:
        self._db._check_open()
        return self._db._snaps.watermark

    def get(self, key):
        """The row tuple of ``key`` (latest committed), or None.  O(1).

        Lock-free: the watermark is not registered, so a vacuum running meanwhile
        may drop the version this read was walking to, or recycle the slot.  That
        needs a horizon above ``s``, i.e. the watermark moved: then (only when the
        answer is None; ``TableStore.get`` refuses another key's row) read again
        under a registered snapshot.
        """
        db = self._db
        if key.__class__ is not str:
            key = self.schema.coerce_key(key)
        st = self._st
        slot = st.slots.get(key)
        if slot is not None and not db._closed:
            # fast path: a settled row is the latest version and visible to every
            # snapshot (row_at reads it whole)
            # TableStore.row_at inlined for a settled row: the same even fseq before and after
            f = st.fseq
            head = st.rows[slot]
            if head.__class__ is str and not f & 1 and head == key:
                a = st.columns.arrays
                r = a[4](slot, head, a[3])
                if st.fseq == f:
                    return r
        s = self._latest()
        r = st.get(key, s)
        if r is None and db._snaps.watermark != s:
            snaps = db._snaps
            s = snaps.take()
            try:
                r = st.get(key, s)
            finally:
                snaps.release(s)
        return r

    def exists(self, key) -> bool:
        return self.get(key) is not None

    def count(self) -> int:
        """Visible rows at the latest snapshot (registered: a vacuum may not prune under it)."""
        db = self._db
        db._check_open()
        s = db._snaps.take()
        try:
            return self._st.count(s)
        finally:
            db._snaps.release(s)

    def query(self) -> Query:
        return Query(self)

    def _run(self, q, mode):
        db = self._db
        db._check_open()
        s = db._snaps.take()
        try:
            return execute(self._st, s, q, None, mode)
        finally:
            db._snaps.release(s)
            if db._prune_q:
                db._maint.request_vacuum()

    def _write(self, fn):
        """``fn(TxnTable)`` as its own transaction, run again on a conflict (retry.py)."""
        st = self._st
        return run_in_transaction(self._db, lambda txn: fn(TxnTable(txn, st)))

    def upsert(self, row) -> bool:
        return self._write(lambda t: t.upsert(row))

    def set(self, key, values: dict) -> bool:
        return self._write(lambda t: t.set(key, values))

    def delete(self, key) -> bool:
        return self._write(lambda t: t.delete(key))

    def upsert_many(self, rows) -> tuple[int, int]:
        """Upsert many rows (sequences in field order) in one transaction -> (inserted, updated).

        Rows are validated like ``upsert`` (a bad value raises UsageError, nothing applied);
        ``TxnTable.upsert_checked`` takes pre-validated tuples (the ingest path).
        """
        check = self.schema.check_row
        rows = [check(r) for r in rows]
        return self._write(lambda t: t.upsert_checked(rows))

    def _delete_query(self, q) -> int:
        def run(t):
            q._view = t
            try:
                return t._delete_query(q)
            finally:
                q._view = self
        return self._write(run)

    def ingest_tsv(self, data, batch_size=1024, **kw):
        """``db.ingest_tsv`` on this table."""
        return self._db.ingest_tsv(self.name, data, batch_size, **kw)

    def ingest_file(self, path, batch_size=1024, **kw):
        """``db.ingest_file`` on this table."""
        return self._db.ingest_file(self.name, path, batch_size, **kw)

    def export_tsv(self, dest=None, **kw):
        """``db.export_tsv`` on this table."""
        return self._db.export_tsv(self.name, dest, **kw)

    def subscribe(self, **kw):
        """``db.subscribe`` on this table."""
        return self._db.subscribe(self.name, **kw)

    def create_index(self, field: str) -> bool:
        """Create a sorted index on ``field``; False if it exists.  O(n log n)."""
        return self._db._index_ddl(self._st, field, True)

    def drop_index(self, field: str) -> bool:
        return self._db._index_ddl(self._st, field, False)

    def indexed(self) -> list:
        """Names of the indexed fields, in field order."""
        names = self.schema.names
        return [names[p] for p in sorted(self._st.indexes)]

    def _check(self) -> None:
        self._st._check()

    def __repr__(self):
        return f"<aerostore.Table {self.name}>"


class _Checkpointer:
    """Background thread: a checkpoint every ``aerostore.checkpoint_interval_secs`` (0 = never).

    A failed checkpoint does not end it: the error is counted (``errors``, the
    last in ``last_error``; ``stats`` shows both), an unexpected one is printed
    with its traceback, and the next interval tries again.  Only closing the
    database ends it.
    """

    POLL_SECS = 0.5     # how often it looks at the clock and the setting

    def __init__(self, db: Database):
        self._db = db
        self._stop = threading.Event()
        self._last = time.monotonic()
        self.errors = 0
        self.last_error = None
        self._thread = threading.Thread(target=self._run, name="aerostore-checkpointer", daemon=True)
        self._thread.start()

    def _run(self):
        db = self._db
        while not self._stop.wait(self.POLL_SECS):
            try:
                iv = db.config.get("aerostore.checkpoint_interval_secs")
                if iv and time.monotonic() - self._last >= iv:
                    self._last = time.monotonic()
                    db.checkpoint()
            except ClosedError:
                return
            except Exception as e:  # noqa: BLE001 - report it and try again next interval
                self.errors += 1
                self.last_error = e
                if not isinstance(e, AerostoreError):
                    traceback.print_exc(file=sys.stderr)

    def stop(self):
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
