"""Latch: the table's short-held lock, exclusive for writers, shared by the few
readers that need a still heap (a str index's reads), and a gate for the rest.

Most readers take no latch at all (planner.py); before a query runs, ``gate()``
waits for a running writer section to end, without taking anything.

Why shared: under CPython's GIL only one thread runs Python at a time, but a
thread that holds a lock keeps it while the interpreter switches to another
thread (every ``sys.getswitchinterval()``).  With one exclusive lock, a reader
switched out in the middle of an index chunk made every other reader queue
behind it, and each of them woke only to find the next holder switched out: a
convoy (40% of reader time was spent waiting there under a live feed).  Readers
only read, so they may overlap; writers (install, prune, index folds) exclude
everyone, in short parts.

Writers are preferred: once a writer waits, new readers wait behind it, so a
steady stream of queries cannot starve the feed.

- ``with latch:`` exclusive; reentrant for the thread that holds it.
- ``with latch.shared:`` shared; not reentrant (a reader section never takes
  the latch again), and a thread that holds the exclusive latch may enter it
  (it already excludes everyone).
- ``latch.gate()``: wait while a writer holds or waits for the latch.

Cost: one uncontended shared enter and exit is two ``threading.Lock`` round
trips plus a few attribute reads, about 1 us.
"""

from __future__ import annotations

import threading
from threading import get_ident

__all__ = ["Latch"]


class Latch:
    """A writer-preferring readers-writer lock; see the module docstring."""

    __slots__ = ("_mutex", "_cv", "_readers", "_owner", "_depth", "_writers_waiting", "shared")

    def __init__(self):
        self._mutex = threading.Lock()
        self._cv = threading.Condition(self._mutex)
        self._readers = 0
        self._owner = None              # ident of the thread holding it exclusively
        self._depth = 0
        self._writers_waiting = 0
        self.shared = _Shared(self)

    # -- exclusive ---------------------------------------------------------------
    def __enter__(self):
        me = get_ident()
        if self._owner == me:
            self._depth += 1
            return self
        with self._mutex:
            if self._owner is not None or self._readers:
                self._writers_waiting += 1
                try:
                    while self._owner is not None or self._readers:
                        self._cv.wait()
                finally:
                    self._writers_waiting -= 1
            self._owner = me
            self._depth = 1
        return self

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth == 0:
            with self._mutex:
                self._owner = None
                self._cv.notify_all()
        return False

    # -- shared ---------------------------------------------------------------------
    def _enter_shared(self) -> bool:
        """Take a shared hold; False when this thread holds it exclusively (nothing taken)."""
        mutex = self._mutex
        mutex.acquire()
        if self._owner is None and not self._writers_waiting:
            self._readers += 1
            mutex.release()
            return True
        try:
            if self._owner == get_ident():
                return False
            while self._owner is not None or self._writers_waiting:
                self._cv.wait()
            self._readers += 1
            return True
        finally:
            mutex.release()

    def _exit_shared(self) -> None:
        with self._mutex:
            self._readers -= 1
            if not self._readers and self._writers_waiting:
                self._cv.notify_all()

    def gate(self) -> None:
        """Wait while a writer holds the latch or waits for it; take nothing.

        Why: readers that take no latch still compete with a writer section for
        the GIL, so a feed's section took several times its CPU time while two
        readers ran, and the feed lost a third of its rate (docs/decisions.md).
        A query passes this gate once, before it runs (planner.execute; an
        index-only count and a key lookup, which are cheap, do not; nor any
        query with ``aerostore.readers_wait_for_writers off``): a running
        writer section finishes alone, and no writer ever waits for a reader.
        O(1) (two attribute reads) when no writer is about."""
        if self._owner is None and not self._writers_waiting:
            return
        if self._owner == get_ident():
            return
        with self._mutex:
            while self._owner is not None or self._writers_waiting:
                self._cv.wait()

    def held_exclusively(self) -> bool:
        """True if the calling thread holds the latch exclusively (assertions)."""
        return self._owner == get_ident()


class _Shared:
    """``with latch.shared:``; the per-thread record of whether anything was taken."""

    __slots__ = ("_latch", "_took")

    def __init__(self, latch: Latch):
        self._latch = latch
        self._took = threading.local()

    def __enter__(self):
        self._took.v = self._latch._enter_shared()
        return self

    def __exit__(self, *exc):
        if self._took.v:
            self._latch._exit_shared()
        return False
