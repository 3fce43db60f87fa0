"""The TTL sweeper: deletes rows whose ``now - updated_at`` exceeds ``aerostore.ttl_secs``.

Settings (config.py): ``aerostore.ttl_secs`` (0 = off) and
``aerostore.ttl_sweep_interval_ms`` (0 = off).  The database creates one sweeper
at open (``db.ttl``) and starts it; the sweeper stops itself at ``db.close()``
(a close hook) and follows config changes by itself: its background thread
exists only while it is started and both settings are non-zero.

Which rows: in every table that has an integer field named ``updated_at``
(epoch seconds), the rows with ``updated_at < now - ttl_secs`` (exactly
``now - updated_at > ttl_secs`` for integer times).  A null ``updated_at`` never
expires.

How: a pass finds the expired keys of a table in one snapshot (one range of
the updated_at index), then deletes them through ordinary transactions of at
most ``slice_rows`` rows each, so deletes are logged, watchers see them, open
snapshots keep seeing the rows, and no caller waits behind a long commit.
Each slice re-reads its rows in its own snapshot and skips any refreshed since;
a slice that loses a write conflict (a row refreshed meanwhile) is retried with
a fresh snapshot, so a row refreshed concurrently is never deleted.

A failure never ends the thread: an ``AerostoreError`` in a pass (the store
turned read-only, say) is kept in ``last_error``; any other exception, in a
pass or in the loop around it, is a bug, so it is also counted in ``errors``
and printed with its traceback.  Then the loop goes on: the next interval
sweeps again (``stats`` shows ``ttl_errors`` and ``ttl_last_error``).

API::

    sweeper = TTLSweeper(db, clock=time.time, slice_rows=500)
    sweeper.start(); sweeper.stop()        # both idempotent
    sweeper.sweep(now=None) -> rows deleted (one full pass, in the caller's thread)
    sweeper.running, .sweeps, .deleted, .errors, .last_error
"""

from __future__ import annotations

import math
import sys
import threading
import time
import traceback

from .errors import AerostoreError, ClosedError, TransientError, UsageError
from .retry import run_in_transaction

__all__ = ["TTLSweeper", "TTL_FIELD"]

TTL_FIELD = "updated_at"
_KEYS = ("aerostore.ttl_secs", "aerostore.ttl_sweep_interval_ms")
_CONFLICT_SECS = 1.0            # a slice retries conflicts this long, then waits for the next pass
_RETRY_SECS = 0.1       # pause after the loop itself failed, so a persistent fault cannot spin


class TTLSweeper:
    """Background deletion of expired rows; ``clock()`` returns epoch seconds."""

    def __init__(self, db, *, clock=time.time, slice_rows: int = 500):
        if isinstance(slice_rows, bool) or not isinstance(slice_rows, int) or slice_rows <= 0:
            raise UsageError(f'bad slice_rows "{slice_rows}": must be an integer > 0')
        self._db = db
        self.clock = clock
        self.slice_rows = slice_rows
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._started = False
        self._thread = None
        self._gen = 0               # bumped by stop(): a thread of an older generation ends
        self.sweeps = 0             # completed passes
        self.deleted = 0            # rows deleted over the sweeper's life
        self.errors = 0             # background passes that failed with an unexpected exception
        self.last_error = None      # the last exception a background pass hit
        db.config.on_change(self._config_changed)
        db.add_close_hook(self.stop)

    # -- control ------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while the background thread exists (started and TTL on)."""
        return self._thread is not None

    def start(self) -> None:
        """Sweep in the background whenever the settings say so.  Idempotent."""
        with self._lock:
            self._started = True
            self._reconcile()

    def stop(self) -> None:
        """Stop the background thread and wait for it (a pass ends at its next slice)."""
        with self._lock:
            self._started = False
            self._gen += 1
            t, self._thread = self._thread, None
            self._wake.notify_all()
        if t is not None and t is not threading.current_thread():
            t.join()

    def _settings(self):
        cfg = self._db.config
        return cfg.get(_KEYS[0]), cfg.get(_KEYS[1])

    def _wanted(self) -> bool:
        ttl, interval = self._settings()
        return self._started and ttl > 0 and interval > 0

    def _reconcile(self) -> None:
        """Under the lock: start the thread if wanted; wake it to re-read otherwise."""
        if self._wanted() and self._thread is None:
            self._thread = threading.Thread(target=self._run, args=(self._gen,),
                                            name="aerostore-ttl", daemon=True)
            self._thread.start()
        self._wake.notify_all()

    def _config_changed(self, key, value) -> None:
        if key in _KEYS:
            with self._lock:
                self._reconcile()

    def _run(self, gen) -> None:
        me = threading.current_thread()
        try:
            while True:
                try:
                    if not self._pass(gen):
                        return
                except Exception as e:  # noqa: BLE001 - the loop itself failed: report, go on
                    self._report(e)
                    time.sleep(_RETRY_SECS)
        finally:
            with self._lock:
                if self._thread is me:
                    self._thread = None

    def _pass(self, gen) -> bool:
        """One background sweep and the wait after it; False once the thread should end."""
        with self._lock:
            if gen != self._gen or not self._wanted():
                return False
        try:
            self._sweep(None, gen)
        except ClosedError:
            return False
        except AerostoreError as e:     # e.g. the store went read-only: try again later
            self.last_error = e
        except Exception as e:          # noqa: BLE001 - a bug: report it, sweep again later
            self._report(e)
        with self._lock:
            if gen == self._gen and self._wanted():
                self._wake.wait(self._settings()[1] / 1000.0)
        return True

    def _report(self, e: Exception) -> None:
        self.errors += 1
        self.last_error = e
        traceback.print_exc(file=sys.stderr)

    # -- the work -----------------------------------------------------------------
    def sweep(self, now: float | None = None) -> int:
        """Delete every expired row now, in slices; returns how many were deleted.

        Uses the current ``aerostore.ttl_secs`` (nothing happens while it is 0).
        """
        return self._sweep(now, None)

    def _sweep(self, now, gen) -> int:
        """A pass; ``gen``: the background thread's generation (it stops between
        slices once stop() bumps it), None in the caller's thread."""
        ttl = self._db.config.get(_KEYS[0])
        if ttl <= 0:
            return 0
        if now is None:
            now = self.clock()
        cutoff = math.ceil(now - ttl)       # u < now - ttl  <=>  u < ceil(now - ttl)
        deleted = 0
        if cutoff > 0:
            for name in self._tables():
                deleted += self._sweep_table(name, cutoff, gen)
        self.sweeps += 1
        self.deleted += deleted
        return deleted

    def _tables(self) -> list:
        db = self._db
        out = []
        for name in db.tables:
            schema = db.table(name).schema
            if TTL_FIELD in schema.names and schema.fields[schema.position(TTL_FIELD)].kind == "int":
                out.append(name)
        return out

    def _sweep_table(self, name, cutoff, gen) -> int:
        """Find the expired keys in one snapshot (one index range), then delete
        them in slices, each slice a transaction that re-checks its rows."""
        db = self._db
        n = self.slice_rows
        pos = db.table(name).schema.position(TTL_FIELD)
        keys = db.table(name).query().lt(TTL_FIELD, cutoff).keys()
        deleted = 0
        for i in range(0, len(keys), n):
            if gen is not None and gen != self._gen:
                break
            deleted += self._delete_slice(name, keys[i:i + n], pos, cutoff)
            time.sleep(0)                   # let other threads in between slices
        return deleted

    def _delete_slice(self, name, keys, pos, cutoff) -> int:
        """Delete those of ``keys`` still expired, in one transaction.

        A row refreshed since the keys were found is skipped; one refreshed
        after this transaction's snapshot makes it conflict, and the retry
        (retry.py: with a fresh snapshot, once the refresh is visible) skips it.
        """
        def run(txn):
            t = txn.table(name)
            get = t.get
            doomed = []
            for k in keys:
                r = get(k)
                if r is not None and r[pos] is not None and r[pos] < cutoff:
                    doomed.append(k)
            if doomed:
                t.delete_many(doomed)
            return len(doomed)

        try:
            return run_in_transaction(self._db, run, timeout=_CONFLICT_SECS)
        except TransientError:
            return 0                        # busy rows: the next pass tries again
