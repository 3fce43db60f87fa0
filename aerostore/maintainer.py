"""The index maintainer: one background thread per database that folds indexes'
recent-write layers into their sorted arrays, so that neither readers nor the
commit path pay the O(n) fold.

Writers apply index entries at once into small sorted layers (arrayindex.py);
when an index's layers pass their budget, the writer calls ``request(store,
ix)`` (O(1), under the table latch).  The thread then runs the fold in three
steps: ``fold_start`` under the latch (O(1): the layers are frozen, fresh ones
take new writes), ``fold_compute`` without the latch (O(n) in C, without the
GIL: the feed and the readers run beside it), ``fold_finish`` under the latch
(O(1)).
Readers keep reading throughout: the frozen layers stay readable until the new
array replaces them.

It also vacuums for readers: a reader that ends while pruning waits for its
snapshot calls ``request_vacuum()`` (O(1)) instead of pruning itself, and the
thread runs the database's vacuum.

A failure is never silent: the exception is kept (``error``), the database is
told through ``on_error`` (it turns read-only, with the reason in ``stats``),
and the thread stops; reads stay correct because a fold that failed leaves the
frozen layers in place.
"""

from __future__ import annotations

import threading
import traceback

__all__ = ["Maintainer"]


class Maintainer:
    """Folds indexes' layers in a background thread; see the module docstring."""

    def __init__(self, on_error=None, vacuum=None, name: str = "aerostore-maintainer"):
        self._cv = threading.Condition(threading.Lock())
        self._queue: dict = {}          # id(ix) -> (store, ix), in request order
        self._vacuum = vacuum           # the database's vacuum, run on request_vacuum()
        self._vacuum_wanted = False
        self._busy = False
        self._stop = False
        self._on_error = on_error
        self.error: BaseException | None = None
        self.folds = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def request(self, store, ix) -> None:
        """Ask for a fold of ``ix`` (an index of ``store``).  O(1); never blocks on a fold."""
        with self._cv:
            if self._stop or self.error is not None:
                return
            if id(ix) not in self._queue:
                self._queue[id(ix)] = (store, ix)
                self._cv.notify()

    def request_vacuum(self) -> None:
        """Ask for a vacuum in the background.  O(1)."""
        if self._vacuum_wanted or self._vacuum is None:
            return
        with self._cv:
            self._vacuum_wanted = True
            self._cv.notify()

    def idle(self, timeout: float | None = None) -> bool:
        """Wait until no fold or vacuum is queued or running; False on timeout (tests)."""
        with self._cv:
            return self._cv.wait_for(
                lambda: (not self._queue and not self._vacuum_wanted and not self._busy)
                or self._stop or self.error is not None, timeout)

    def _run(self) -> None:
        cv = self._cv
        while True:
            with cv:
                cv.wait_for(lambda: self._queue or self._vacuum_wanted or self._stop)
                if self._stop:
                    return
                if self._vacuum_wanted:
                    self._vacuum_wanted = False
                    job = self._vacuum
                else:
                    key = next(iter(self._queue))
                    store, ix = self._queue.pop(key)
                    job = lambda: self._fold(store, ix)  # noqa: E731
                self._busy = True
            try:
                job()
            except BaseException as e:  # noqa: BLE001 - reported, never silent
                self._fail(e)
                return
            finally:
                with cv:
                    self._busy = False
                    cv.notify_all()

    def _fold(self, store, ix) -> None:
        with store.latch:
            if store.indexes.get(ix.pos) is not ix:
                return                  # dropped meanwhile
            job = ix.fold_start()
        if job is None:
            return
        main = ix.fold_compute(job)
        with store.latch:
            if ix.fold_finish(job, main):
                self.folds += 1
                store._publish_picture()    # (the old picture would keep the old arrays alive)

    def _fail(self, e: BaseException) -> None:
        """Report ``e`` (stderr, the owner's ``on_error``), then stop taking work."""
        traceback.print_exception(e)
        try:
            if self._on_error is not None:
                self._on_error(e)
        finally:
            with self._cv:
                self.error = e
                self._queue.clear()
                self._cv.notify_all()

    def stop(self) -> None:
        """Stop the thread (a fold under way finishes first).  Idempotent."""
        with self._cv:
            self._stop = True
            self._queue.clear()
            self._cv.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
