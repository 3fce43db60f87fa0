"""Deterministic interleavings of a reader or a DDL call with a concurrent vacuum.

Each test stops one thread at a precise point (by wrapping the engine method it
is about to call, or the table latch it is about to take) and runs the other
thread's work there, so the race happens on every run.
"""

import threading

import pytest

import aerostore
from aerostore import FlightState
from conftest import vacuum_now


@pytest.fixture
def t(flights):
    flights.upsert_many([(f"K{i}", 1.0, 1.0, i, 1, 1) for i in range(5)])
    return flights


def meddle(db, t):
    """Between a reader's watermark read and its row access: commits and a vacuum.

    Leaves K1's chain as V(c2) -> V(c1): nothing in it is visible at the
    watermark the reader read before, although K1 existed at every point.
    Returns a transaction that must stay open until the reader is done.
    """
    r0 = db.begin()                 # a reader from before c1
    t.set("K1", {"gs": 2})          # c1
    r1 = db.begin()                 # a reader at c1
    t.set("K1", {"gs": 3})          # c2
    r0.rollback()                   # vacuum up to c1
    return r1


def meddle_before(db, t, name):
    """Make the table store's method ``name`` run ``meddle`` once, just before it
    reads; returns the original method (restored on that first call)."""
    st = t._st
    orig = getattr(st, name)

    def wrapped(*args):
        setattr(st, name, orig)
        r1 = meddle(db, t)
        try:
            return orig(*args)
        finally:
            r1.rollback()

    setattr(st, name, wrapped)
    return orig


def test_autocommit_count_during_vacuum(mem_db, t):
    """Table.count() read the watermark without registering it (it returned 4 of 5 rows)."""
    orig = meddle_before(mem_db, t, "count")
    assert t.count() == 5
    assert t._st.count is orig


def test_autocommit_get_during_vacuum(mem_db, t):
    """Table.get() read the watermark without registering it (it returned None for K1)."""
    st = t._st
    # Frozen rows are answered lock-free before st.get; give K1 a version chain,
    # left for the next vacuum, so get() takes the path under test.
    s = mem_db._snaps.take()
    t.set("K1", {"gs": 1})
    mem_db._snaps.release(s)
    assert st.rows[st.slots["K1"]].__class__ is not tuple

    orig = meddle_before(mem_db, t, "get")
    got = t.get("K1")
    assert got is not None and got[4] in (1, 2, 3)
    assert st.get is orig


def test_autocommit_get_never_returns_another_keys_row(mem_db, t):
    """A recycled slot: K2 deleted and vacuumed, its slot reused by a new key meanwhile."""
    st = t._st
    orig = st.get
    slot_k2 = st.slots["K2"]

    def get(key, s):
        st.get = orig
        t.delete("K2")
        t.upsert(("NEW", 5.0, 5.0, 5, 5, 5))
        t.upsert(("NEW2", 5.0, 5.0, 5, 5, 5))
        return orig(key, s) if key != "K2" else _stale_slot_read(s)

    def _stale_slot_read(s):
        # what TableStore.get does after looking the slot up before the delete
        from aerostore.mvcc import visible
        head = st.rows[slot_k2]
        return None if head is None else visible(head, s)

    st.get = get
    got = t.get("K2")
    assert got is None or got[0] == "K2"


def test_stats_snapshot_is_registered(mem_db, t):
    meddle_before(mem_db, t, "count")
    assert mem_db.stats()["rows"] == 5
    assert mem_db.stats()["snapshots"] == 0


class SpyLatch:
    """The table latch, announcing when another thread is about to take it."""

    def __init__(self, inner):
        self.inner = inner
        self.owner = threading.current_thread()
        self.other_waiting = threading.Event()

    def __enter__(self):
        if threading.current_thread() is not self.owner:
            self.other_waiting.set()
        self.inner.__enter__()
        return self

    def __exit__(self, *exc):
        return self.inner.__exit__(*exc)

    @property
    def shared(self):
        return self.inner.shared


def test_create_index_while_vacuum_waits_for_the_latch(mem_db, t):
    """prune() captured the list of indexes before taking the latch: an index created
    in between kept entries of the versions that prune dropped."""
    t.drop_index("gs")
    st = t._st
    holder = mem_db.begin()
    t.set("K1", {"gs": 100})        # pruning of this commit waits for ``holder``
    t.delete("K3")
    spy = SpyLatch(st.latch)
    st.latch = spy
    errors = []

    def release_holder():
        try:
            holder.rollback()
            mem_db._vacuum(block=True)        # prunes K1 and K3 (or the maintainer does, just as well)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    with spy:
        th = threading.Thread(target=release_holder)
        th.start()
        assert spy.other_waiting.wait(30)
        t.create_index("gs")        # builds from the chains as they are now
    th.join(30)
    assert not th.is_alive() and not errors
    st.latch = spy.inner
    vacuum_now(mem_db)
    t._check()
    assert t.query().eq("gs", 1).count() == 3
    assert sorted(t.query().ge("gs", 0).keys()) == ["K0", "K1", "K2", "K4"]
    assert t.query().range("gs", 0, 1000).count() == 4


def test_drop_index_while_vacuum_waits_for_the_latch(mem_db, t):
    st = t._st
    holder = mem_db.begin()
    t.set("K1", {"gs": 100})
    spy = SpyLatch(st.latch)
    st.latch = spy

    def release_holder():
        holder.rollback()
        mem_db._vacuum(block=True)

    with spy:
        th = threading.Thread(target=release_holder)
        th.start()
        assert spy.other_waiting.wait(30)
        t.drop_index("gs")
        t.create_index("gs")
    th.join(30)
    st.latch = spy.inner
    vacuum_now(mem_db)
    t._check()
    assert t.query().eq("gs", 100).keys() == ["K1"]


def test_transaction_finalizer_inside_the_registry_lock(mem_db, flights):
    """A garbage-collected open transaction releases its snapshot from __del__; a GC
    pass can run that finalizer in a thread that already holds the snapshot
    registry's (non-reentrant) lock, e.g. inside horizon(): that must not deadlock."""
    txn = mem_db.begin()
    snaps = mem_db._snaps
    assert snaps.active() == 1
    done = threading.Event()

    def run():
        with snaps._lock:
            txn.__del__()
        done.set()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    assert done.wait(10), "Transaction.__del__ deadlocked on the snapshot registry lock"
    assert txn.closed
    assert snaps.active() == 0
    flights.upsert(("A", 1, 1, 1, 1, 1))
    assert mem_db.stats()["versions"] == 1


class HookLatch:
    """The table latch; runs ``hook`` (once) when the ``at``-th reader section starts."""

    def __init__(self, inner, at, hook):
        self.inner = inner
        self.at = at
        self.hook = hook
        self.n = 0
        self.busy = False
        self.shared = self

    def _fire(self):
        self.busy = True
        try:
            self.hook()
        finally:
            self.busy = False
            self.hook = None

    def __enter__(self):
        if not self.busy and self.hook is not None:
            self.n += 1
            if self.n == self.at:
                self._fire()
        self.inner.shared.__enter__()
        return self

    def __exit__(self, *exc):
        return self.inner.shared.__exit__(*exc)

    def gate(self):
        """planner.execute's gate, between planning and reading: the hook runs here
        (lock-free reads take no section to hook)."""
        if not self.busy and self.hook is not None:
            self._fire()
        return self.inner.gate()


@pytest.mark.parametrize("mode", ["rows", "count", "walk"])
def test_index_dropped_and_recreated_between_plan_and_read(mem_db, flights, mode):
    """A query planned on an index that is dropped (and re-created) before it reads
    it: the dropped index no longer sees prunes, so it keeps entries of versions
    that are gone.  Reading it returned a row under a value it no longer has
    (and counted it)."""
    flights.upsert_many([(f"Z{i:03d}", 1.0, 1.0, 1, 20000 + i, 1) for i in range(400)])
    flights.upsert(("X", 1.0, 1.0, 1, 100, 1))
    holder = mem_db.begin()
    flights.set("X", {"gs": 120})             # chain 120 -> 100, both indexed
    txn = mem_db.begin()
    tt = txn.table("FlightState")
    st = flights._st

    def ddl_and_vacuum():
        st.latch = st.latch.inner             # the DDL and the prune take it exclusively
        try:
            flights.drop_index("gs")
            flights.create_index("gs")
            holder.rollback()
            mem_db._vacuum(block=True)                  # prunes X to a frozen 120
        finally:
            st.latch = hook

    hook = st.latch = HookLatch(st.latch, 2, ddl_and_vacuum)   # 1st: planning, 2nd: reading
    try:
        if mode == "rows":
            assert tt.query().range("gs", 50, 130).keys() == ["X"]
        elif mode == "count":
            assert tt.query().range("gs", 50, 110).count() == 0
        else:
            got = tt.query().lt("gs", 20003).sort_by("gs").limit(3).keys()
            assert got == ["X", "Z000", "Z001"]
        if mode != "count":                     # (an index-only count passes no gate)
            assert hook.hook is None, "the DDL did not run between planning and reading"
    finally:
        st.latch = st.latch.inner
        txn.rollback()
    flights._check()


def test_null_rows_do_not_hold_the_latch_while_filtering(mem_db, flights, monkeypatch):
    """Readers never block writers: a descending walk visits every null of its field
    first; it used to filter them all under the table latch, so a commit waited
    for the whole pass.  Here the first predicate call runs a commit in another
    thread and waits for it."""
    import aerostore.planner as planner
    flights.upsert_many([(f"K{i:03d}", 1.0, 1.0, None if i % 2 else i, 1, 1) for i in range(200)])
    finished = []
    writers = []
    orig = planner.compile_predicate

    def compile_predicate(schema, terms):
        pred = orig(schema, terms)

        def spy(r):
            if not finished:
                th = threading.Thread(target=lambda: flights.set("K000", {"gs": 9}))
                writers.append(th)
                th.start()
                th.join(5)
                finished.append(not th.is_alive())
            return pred(r)
        return spy

    monkeypatch.setattr(planner, "compile_predicate", compile_predicate)
    q = flights.query().sort_by("-alt").limit(5)
    assert q.explain().startswith("ordered walk altitude desc")
    assert q.keys() == ["K001", "K003", "K005", "K007", "K009"]
    for th in writers:
        th.join()
    assert finished == [True], "a commit waited for a reader's pass over the nulls"
    assert flights.get("K000")[4] == 9
