"""Running a transaction again after a write conflict: the one retry policy.

First committer wins (mvcc.py), so a transaction that lost must run again on a
fresh snapshot.  Two things make a naive loop spin: the winner's commit is
installed at once but becomes visible only after its WAL flush (a durable
commit: one fdatasync, milliseconds), so a retry started before then takes a
snapshot that still misses it and conflicts again; and on a hot key several
losers retrying in lockstep keep colliding.  The first is handled where the
conflict is raised: ``Transaction.commit`` raises ``WriteConflict`` only once
the winner (``WriteConflict.csn``) is visible, so any retry loop, this one or
a user's own, starts on a snapshot that sees it.  Here, after a conflict:

1. from the second conflict in a row on, sleep a random time up to
   ``_BACKOFF_BASE * 2**attempt``, at most ``_BACKOFF_CAP`` (full jitter), so
   that the losers spread out;
2. run the whole function again in a new transaction.

Retrying is bounded by time, not by a count: ``timeout`` seconds (default
``DEFAULT_TIMEOUT``) after the first attempt, the last ``WriteConflict`` is
raised.  Every other exception rolls the transaction back and propagates.
"""

from __future__ import annotations

import random
import time

from .errors import UsageError, WriteConflict

__all__ = ["run_in_transaction", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 30.0       # seconds of retrying before a conflict is reported
_BACKOFF_BASE = 50e-6        # seconds
_BACKOFF_CAP = 5e-3


def run_in_transaction(db, fn, *args, timeout: float | None = None, **kw):
    """``fn(txn, *args, **kw)`` in a transaction that commits when ``fn`` returns;
    run again on a write conflict (see the module docstring).  Returns ``fn``'s result.

    Raises ``WriteConflict`` when conflicts go on past ``timeout`` seconds, and
    whatever ``fn`` or the commit raises otherwise (the transaction is rolled
    back; nothing of it is applied).
    """
    return _run(db, fn, args, kw, timeout)


def _run(db, fn, args, kw, timeout):
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    elif not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout < 0:
        raise UsageError(f'bad timeout "{timeout}": expected a number of seconds >= 0')
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        txn = db.begin()
        try:
            out = fn(txn, *args, **kw)
            txn.commit()
            return out
        except WriteConflict:
            if time.monotonic() >= deadline:
                raise
            if attempt:
                time.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * (1 << min(attempt, 16)))))
            attempt += 1
        finally:
            txn.rollback()
