"""Change subscriptions: committed inserts, updates and deletes, in commit order.

The database calls ``WatchHub.publish(csn, changes)`` once per commit, in
commit-sequence order, right after the commit becomes visible (its publish hook,
see docs/architecture.md).  Aborted transactions never publish, so subscribers
only ever see committed changes, each exactly once, in commit order.

API (Python programs use ``db.subscribe``; the Tcl bridge's ``watch`` uses the
callback mode)::

    hub = WatchHub(db)        # registers its publish and close hooks; the database's is db.watch
    sub = hub.subscribe("FlightState")                       # queue mode
    sub = hub.subscribe("FlightState", key="UAL123")         # one key
    sub = hub.subscribe("FlightState", where=flights.query().gt("altitude", 10000))
    sub = hub.subscribe("FlightState", where=lambda row: row[4] > 400)
    sub = hub.subscribe("FlightState", callback=fn)          # fn(event) on the committing thread

    ev = sub.get(timeout=1.0)    # Event, Lagged, or None on timeout / after close
    for ev in sub: ...           # blocks; ends when the subscription is closed
    sub.drain()                  # everything queued now, without waiting
    sub.close()                  # or hub.unsubscribe(sub.id); also a context manager

    Event(csn, table, op, key, before, after)   op: "insert" | "update" | "delete";
                                                before/after: row tuples or None
    Lagged(missed)                              op == "lagged"

Queue mode: each subscription has a bounded queue (``maxsize`` events).  A
full queue never blocks the committing thread: further events are counted, not
queued, and once the subscriber makes room it reads one ``Lagged(missed)`` in
their place, then the events that follow.  So a slow subscriber learns exactly
how many events it lost, and where.

Callback mode: ``callback(event)`` is called on the publishing thread, in
commit order, while commits wait; it must be quick (enqueue and return; the Tcl
bridge queues a Tcl event for the interp's thread).  It runs inside the commit
pipeline (under the commit lock, or on the thread flushing the log), so it
cannot write: a commit, index change, checkpoint or close made from a callback
raises ``UsageError`` instead of waiting for itself (hand such work to another
thread, e.g. through a queue subscription).  Reading is fine.  An exception from it is
counted in ``sub.errors`` (the last kept in ``sub.last_error``) and does not
stop delivery; so is one from a ``where`` function (the event then does not match).

Filters: ``key`` matches the row's key exactly; ``where`` (a Query on the same
table, or a function of a row tuple) matches an event if it holds for the row
before or the row after, so a subscriber also sees a row leave its set.  A
subscription sees every commit published after ``subscribe`` returns; events
carry the commit sequence number (``csn``) to line them up with snapshots.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from itertools import count
from typing import NamedTuple

from .errors import UsageError
from .query import compile_predicate

__all__ = ["Event", "Lagged", "Subscription", "WatchHub"]

DEFAULT_MAXSIZE = 10000


class Event(NamedTuple):
    """One committed change of one row."""

    csn: int
    table: str
    op: str
    key: str
    before: tuple | None
    after: tuple | None

    @property
    def row(self):
        """The row as it is now (after), or as it was (before) for a delete."""
        return self.after if self.after is not None else self.before


class Lagged(NamedTuple):
    """In place of ``missed`` events dropped because the queue was full."""

    missed: int
    op: str = "lagged"


class Subscription:
    """One subscriber: its filter, and its bounded queue or its callback."""

    def __init__(self, hub, sid, table, key, pred, callback, maxsize):
        self._hub = hub
        self.id = sid
        self.table = table
        self.key = key
        self.callback = callback
        self.maxsize = maxsize
        self._pred = pred
        self._q = deque()
        self._cv = threading.Condition(threading.Lock())
        self._missed = 0            # dropped since the last Lagged was queued
        self.missed_total = 0       # dropped over the subscription's life
        self.errors = 0             # callback exceptions
        self.last_error = None
        self.closed = False

    # -- publisher side (called by WatchHub.publish, under its lock) ------------
    def _matches(self, before, after) -> bool:
        pred = self._pred
        try:
            return bool((before is not None and pred(before)) or
                        (after is not None and pred(after)))
        except Exception as e:  # a failing filter matches nothing; commits go on
            self.errors += 1
            self.last_error = e
            return False

    def _deliver(self, events) -> None:
        cb = self.callback
        if cb is not None:
            for ev in events:
                if self.closed:         # a callback ended it meanwhile
                    return
                try:
                    cb(ev)
                except Exception as e:  # a subscriber's bug must not stop commits
                    self.errors += 1
                    self.last_error = e
            return
        with self._cv:
            if self.closed:
                return
            q = self._q
            room = self.maxsize - len(q)
            if room <= 0:
                self._missed += len(events)
                self.missed_total += len(events)
                return
            if self._missed:
                q.append(Lagged(self._missed))
                self._missed = 0
            if len(events) > room:
                dropped = len(events) - room
                self._missed += dropped
                self.missed_total += dropped
                events = events[:room]
            q.extend(events)
            self._cv.notify_all()

    # -- subscriber side ----------------------------------------------------------
    def get(self, timeout: float | None = None):
        """The next Event (or Lagged); None on timeout or once closed and drained."""
        if self.callback is not None:
            raise UsageError("get() on a callback subscription: events go to its callback")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while True:
                if self._q:
                    return self._q.popleft()
                if self._missed:
                    missed, self._missed = self._missed, 0
                    return Lagged(missed)
                if self.closed:
                    return None
                if deadline is None:
                    self._cv.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    self._cv.wait(left)

    def drain(self) -> list:
        """Everything queued now (a Lagged included), without waiting."""
        with self._cv:
            out = list(self._q)
            self._q.clear()
            if self._missed:
                out.append(Lagged(self._missed))
                self._missed = 0
            return out

    def __iter__(self):
        while True:
            ev = self.get()
            if ev is None:
                return
            yield ev

    def close(self) -> None:
        """Stop receiving; a blocked get() returns what is left, then None.  Idempotent."""
        self._hub.unsubscribe(self)

    def _closed(self) -> None:
        with self._cv:
            self.closed = True
            self._cv.notify_all()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        what = f" key={self.key!r}" if self.key is not None else ""
        mode = "callback" if self.callback is not None else f"queued={len(self._q)}"
        return f"<Subscription {self.id} {self.table}{what} {mode}>"


class _TableSubs:
    """The subscriptions of one table, split for a quick publish."""

    __slots__ = ("by_key", "other")

    def __init__(self, by_key, other):
        self.by_key = by_key    # key -> tuple of subs (key filter, maybe also where)
        self.other = other      # tuple of subs without a key filter


class WatchHub:
    """Routes each commit's changes to the subscriptions that want them.

    Structures are copy-on-write: subscribe/unsubscribe build new ones and swap
    them in, so ``publish`` reads them without copying.  One reentrant lock
    orders subscribe against publish (a callback may unsubscribe itself).
    """

    def __init__(self, db=None):
        self._lock = threading.RLock()
        self._ids = count(1)
        self._subs: dict = {}          # id -> Subscription
        self._tables: dict = {}        # table name -> _TableSubs
        self.last_csn = 0              # the last commit published
        if db is not None:
            db.add_publish_hook(self.publish)
            db.add_close_hook(self.close)

    def subscribe(self, table: str, *, key: str | None = None, where=None, callback=None,
                  maxsize: int = DEFAULT_MAXSIZE) -> Subscription:
        """A new subscription to ``table`` (its name); see the module docstring."""
        if not isinstance(table, str) or not table:
            raise UsageError("subscribe: the table name must be a non-empty string")
        if key is not None and not isinstance(key, str):
            raise UsageError("subscribe: key must be a string")
        if callback is not None and not callable(callback):
            raise UsageError("subscribe: callback must be callable")
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize <= 0:
            raise UsageError(f'bad maxsize "{maxsize}": must be an integer > 0')
        pred = _predicate(table, where)
        with self._lock:
            sub = Subscription(self, next(self._ids), table, key, pred, callback, maxsize)
            self._subs[sub.id] = sub
            self._rebuild(table)
        return sub

    def unsubscribe(self, sub) -> bool:
        """End a subscription (a Subscription or its id); False if it was not active."""
        with self._lock:
            sid = sub.id if isinstance(sub, Subscription) else sub
            s = self._subs.pop(sid, None)
            if s is None:
                return False
            self._rebuild(s.table)
        s._closed()
        return True

    def subscriptions(self) -> list:
        return list(self._subs.values())

    def close(self) -> None:
        """End every subscription (the database is closing)."""
        for s in list(self._subs.values()):
            self.unsubscribe(s)

    def _rebuild(self, table):
        subs = [s for s in self._subs.values() if s.table == table]
        tables = dict(self._tables)
        if not subs:
            tables.pop(table, None)
        else:
            by_key: dict = {}
            for s in subs:
                if s.key is not None:
                    by_key[s.key] = by_key.get(s.key, ()) + (s,)
            tables[table] = _TableSubs(by_key, tuple(s for s in subs if s.key is None))
        self._tables = tables

    def publish(self, csn: int, changes) -> None:
        """The database's publish hook: one call per commit, in commit order."""
        with self._lock:
            self.last_csn = csn
            tables = self._tables
            if not tables:
                return
            pending: dict = {}          # sub -> its events of this commit, in order
            for tname, op, key, before, after in changes:
                ts = tables.get(tname)
                if ts is None:
                    continue
                ev = None
                for group in (ts.other, ts.by_key.get(key, ())):
                    for sub in group:
                        if sub._pred is not None and not sub._matches(before, after):
                            continue
                        if ev is None:
                            ev = Event(csn, tname, op, key, before, after)
                        evs = pending.get(sub)
                        if evs is None:
                            pending[sub] = [ev]
                        else:
                            evs.append(ev)
            for sub, evs in pending.items():
                sub._deliver(evs)


def _predicate(table, where):
    """A function row -> bool from a Query or a callable (None: no filter)."""
    if where is None or callable(where):
        return where
    terms = getattr(where, "terms", None)
    schema = getattr(where, "_schema", None)
    if terms is None or schema is None:
        raise UsageError("subscribe: where must be a Query or a function of a row")
    if schema.name != table:
        raise UsageError(f'subscribe: the query is on table "{schema.name}", not "{table}"')
    return compile_predicate(schema, terms)
