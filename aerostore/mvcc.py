"""Multi-version concurrency control: versions, snapshots, visibility, horizon.

Rule (PostgreSQL's, with commit sequence numbers in place of txids): a version
with ``xmin``/``xmax`` is visible to snapshot ``s`` iff ``xmin <= s < xmax``.
``xmin`` is the CSN of the commit that created it, ``xmax`` the CSN of the commit
that superseded or deleted it (``INF`` while it is the live version).

Uncommitted writes never enter shared structures (they wait in the
transaction's private write set), so a snapshot is a single integer: the
published watermark, the highest CSN whose commit is acknowledged.  Commits are
published in CSN order, so the "in progress" set of a PostgreSQL snapshot is
always empty here.

A slot of a table holds either a plain tuple (a *frozen* row: visible to every
snapshot, no version header, the common case) or the newest ``Version`` of a
chain linked newest-first through ``prev``.  Freezing is the last step of
pruning, once no registered snapshot can see an older version.
"""

from __future__ import annotations

import threading

__all__ = ["INF", "Version", "visible", "SnapshotRegistry"]

INF = 1 << 62  # xmax of a live version: larger than any CSN


class Version:
    """One version of a row.  Chains are newest first; ``xmin`` strictly decreases along ``prev``."""

    __slots__ = ("xmin", "xmax", "values", "prev")

    def __init__(self, xmin: int, xmax: int, values: tuple, prev):
        self.xmin = xmin
        self.xmax = xmax
        self.values = values
        self.prev = prev

    def __repr__(self):
        return f"Version(xmin={self.xmin}, xmax={'INF' if self.xmax == INF else self.xmax}, {self.values!r})"


def visible(head, s: int):
    """The row tuple of slot ``head`` visible to snapshot ``s``, or None.  O(chain length)."""
    if head.__class__ is tuple:
        return head
    v = head
    while v is not None:
        if v.xmin <= s:
            return v.values if s < v.xmax else None
        v = v.prev
    return None


class SnapshotRegistry:
    """Registered snapshots define the vacuum horizon.

    ``take()`` reads the watermark and registers it atomically, so a concurrent
    prune never computes a horizon above a snapshot being taken.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._published = threading.Condition(self._lock)   # notified when the watermark moves
        self._counts: dict[int, int] = {}
        self._orphans: list = []    # released by finalizers, applied under the lock
        self.watermark = 0

    def _drain(self) -> None:
        """Apply ``release_later`` calls.  Caller holds the lock."""
        o = self._orphans
        c = self._counts
        while o:
            s = o.pop()
            n = c[s] - 1
            if n:
                c[s] = n
            else:
                del c[s]

    def release_later(self, s: int) -> None:
        """``release`` for finalizers: never takes the lock (a GC pass may run the
        finalizer in a thread that holds it); the next registry call applies it."""
        self._orphans.append(s)

    def take(self) -> int:
        with self._lock:
            if self._orphans:
                self._drain()
            s = self.watermark
            c = self._counts
            c[s] = c.get(s, 0) + 1
            return s

    def release(self, s: int) -> None:
        with self._lock:
            if self._orphans:
                self._drain()
            c = self._counts
            n = c[s] - 1
            if n:
                c[s] = n
            else:
                del c[s]

    def horizon(self) -> int:
        """The oldest snapshot any reader may still use (<= watermark)."""
        with self._lock:
            if self._orphans:
                self._drain()
            c = self._counts
            return min(c) if c else self.watermark

    def advance(self, csn: int) -> bool:
        """Publish up to ``csn``; False if already published."""
        with self._lock:
            if csn <= self.watermark:
                return False
            self.watermark = csn
            self._published.notify_all()
            return True

    def wait_published(self, csn: int, timeout: float) -> bool:
        """Block until commit ``csn`` is visible (the watermark reaches it); False on timeout.

        Why: a write conflict names a commit that is installed but waits for its
        flush; a retry before it is visible would conflict with it again.
        """
        with self._lock:
            return self._published.wait_for(lambda: self.watermark >= csn, timeout)

    def active(self) -> int:
        with self._lock:
            if self._orphans:
                self._drain()
            return sum(self._counts.values())
