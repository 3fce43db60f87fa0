"""Pausing Python's cyclic garbage collector around bulk work.

Why: a table keeps its rows in a few huge containers (the heap list, index
sublists) that every full collection traverses: about 140 ms at 1M rows.  A
bulk commit allocates tens of thousands of short-lived tracked objects (write
sets, versions, WAL records); with the collector on they survive a few young
collections, get promoted, and trigger a full collection almost every batch.
Measured on 200k-row updates: 35 full collections, 2.0 s of a 3.7 s run.

Aerostore's own structures hold no reference cycles, so nothing leaks while the
collector pauses; reference counting still frees everything at once.  The
pause is process-wide but short (one bulk call) and nests across threads: the
collector is re-enabled when the last pauser leaves, and only if it was enabled
when the first one arrived.

When the last pauser leaves, the objects that exist then are moved to the
collector's permanent generation (``gc.freeze()``, O(1)).  Why: a full
collection walks every tracked container, and the heap's row list alone is a
million pointers whose targets sit all over memory: 124 ms at 1M rows, with
the GIL held, so every reader and the feed stall behind it (p99s of 100+ ms
under a live feed).  Frozen objects are skipped.  The cost: objects frozen
then are never collected if they later become cyclic garbage (reference
counting still frees all others).  Aerostore's structures have no cycles; a
host program that builds cyclic garbage out of objects that existed before a
bulk load keeps that memory until it calls ``gc.unfreeze()``.

Small commits (a feed's 100-row batches) do not pause the collector, and
there the opposite trap opens: each update allocates a new row tuple and
frees the old one (frozen, or untracked), so the youngest generation's count,
allocations minus deallocations, hardly grows and its collection, which is
what untracks such tuples, hardly runs, while the tuples pile up in it.  When a
burst of other allocations (a reader's query) finally triggers it, it walks
the whole pile with the GIL held: about 1 us a tuple, 25-36 ms after one or
two seconds of a 20k rows/s feed, the slowest commits of the live feed.
``young(n)`` counts the rows commits write and collects the youngest
generation every ``YOUNG_ROWS`` of them, so each such collection walks a few
hundred tuples (well under a millisecond).
"""

from __future__ import annotations

import gc
import threading

__all__ = ["paused", "young", "BULK", "YOUNG_ROWS"]

BULK = 512  # rows from which a call pauses the collector
YOUNG_ROWS = 500  # rows written between the collections of the youngest generation

_lock = threading.Lock()
_depth = 0
_was_enabled = False
_young = 0      # rows written since the last young collection (racy updates are harmless)


class _Paused:
    __slots__ = ()

    def __enter__(self):
        global _depth, _was_enabled
        with _lock:
            if _depth == 0:
                _was_enabled = gc.isenabled()
                gc.disable()
            _depth += 1

    def __exit__(self, *exc):
        global _depth
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.freeze()
                gc.enable()
        return False


_PAUSED = _Paused()


class _Nothing:
    __slots__ = ()

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


_NOTHING = _Nothing()


def paused(n: int = BULK):
    """Context manager: pause the collector if ``n`` (rows of work) reaches BULK."""
    return _PAUSED if n >= BULK else _NOTHING


def young(n: int) -> None:
    """A commit wrote ``n`` rows: collect the youngest generation once
    ``YOUNG_ROWS`` have been written since the last time (see the module
    docstring), unless the collector is off (a pause, or the host's choice).
    O(1), or a young collection: O(objects allocated since the last one)."""
    global _young
    _young += n
    if _young >= YOUNG_ROWS:
        _young = 0
        if _depth == 0 and gc.isenabled():
            gc.collect(0)
