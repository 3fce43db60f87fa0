"""Model-based test of MVCC: the engine against a plain dict model (hypothesis stateful).

The model keeps every committed state (a dict key -> row) in a list; a
transaction's snapshot is an index into that list, its pending writes a dict.
Commit follows first committer wins: a transaction conflicts when any key it
wrote (put or delete) was written by a commit after its snapshot.  After every
step ``_check()`` asserts the engine's invariants (indexes equal a recomputation
from the version chains, at most one live version per key, xmin < xmax, ...), and
every open transaction's view (get, count, queries) is compared to the model.
"""

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import aerostore
from aerostore import arrayindex, heap
from aerostore.query import glob_to_regex
from conftest import vacuum_now

KEYS = ["a", "b", "c", "d", "e", "f"]
A_VALUES = [None, -1, 0, 1, 2, 7]
B_VALUES = [None, "x", "X", "y", "zz"]
KEY_PATTERNS = ["*", "[a-c]", "?", "A", "[!-b]*", "*e", "d*", "[A-C]", "b", "*[df]"]


@aerostore.table(indexes=("a", "b"))
class KV:
    k = aerostore.Key()
    a = aerostore.Int(bits=16)
    b = aerostore.Str()
    c = aerostore.Int()


MAX_OPEN = 4
keys = st.sampled_from(KEYS)
slots = st.integers(0, MAX_OPEN - 1)
rows = st.tuples(st.sampled_from(A_VALUES), st.sampled_from(B_VALUES), st.integers(-3, 3) | st.none())


class MVCCMachine(RuleBasedStateMachine):

    @initialize(idx_a=st.booleans(), idx_c=st.booleans())
    def setup(self, idx_a, idx_c):
        self.db = aerostore.open(":memory:")
        self.t = self.db.create_table(KV)
        if not idx_a:
            self.t.drop_index("a")
        if idx_c:
            self.t.create_index("c")
        self.history = [{}]            # committed states, oldest first
        self.last_write = {}           # key -> index in history of the commit that last wrote it
        self.open = [None] * MAX_OPEN  # slot -> (txn, snapshot index, pending writes)

    def teardown(self):
        db = getattr(self, "db", None)
        if db is not None:
            for o in self.open:
                if o is not None:
                    o[0].rollback()
            db.close()

    # -- model helpers -------------------------------------------------------------------
    def view(self, slot):
        txn, snap, writes = self.open[slot]
        state = dict(self.history[snap])
        for k, r in writes.items():
            if r is None:
                state.pop(k, None)
            else:
                state[k] = r
        return state

    def commit_model(self, writes):
        state = dict(self.history[-1])
        for k, r in writes.items():
            if r is None:
                state.pop(k, None)
            else:
                state[k] = r
        self.history.append(state)
        n = len(self.history) - 1
        for k in writes:
            self.last_write[k] = n

    # -- rules ---------------------------------------------------------------------------------
    @rule(slot=slots)
    def begin(self, slot):
        if self.open[slot] is None:
            self.open[slot] = (self.db.begin(), len(self.history) - 1, {})

    @precondition(lambda self: any(o is not None for o in self.open))
    @rule(slot=slots, key=keys)
    def read(self, slot, key):
        o = self.open[slot]
        if o is None:
            return
        assert o[0].table("KV").get(key) == self.view(slot).get(key)

    @precondition(lambda self: any(o is not None for o in self.open))
    @rule(slot=slots, key=keys, vals=rows, how=st.sampled_from(["upsert", "set", "set_a"]))
    def write(self, slot, key, vals, how):
        o = self.open[slot]
        if o is None:
            return
        tt = o[0].table("KV")
        cur = self.view(slot).get(key)
        if how == "upsert":
            row = (key,) + vals
            assert tt.upsert(row) is (cur is None)
        elif how == "set":
            assert tt.set(key, {"a": vals[0], "b": vals[1], "c": vals[2]}) is (cur is None)
            row = (key,) + vals
        else:
            assert tt.set(key, {"a": vals[0]}) is (cur is None)
            base = cur or (key, None, None, None)
            row = (key, vals[0]) + base[2:]
        o[2][key] = row

    @precondition(lambda self: any(o is not None for o in self.open))
    @rule(slot=slots, key=keys)
    def delete(self, slot, key):
        o = self.open[slot]
        if o is None:
            return
        existed = key in self.view(slot)
        assert o[0].table("KV").delete(key) is existed
        if existed:
            o[2][key] = None

    @precondition(lambda self: any(o is not None for o in self.open))
    @rule(slot=slots)
    def commit(self, slot):
        o = self.open[slot]
        if o is None:
            return
        txn, snap, writes = o
        self.open[slot] = None
        conflict = any(self.last_write.get(k, 0) > snap for k in writes)
        if conflict:
            try:
                txn.commit()
            except aerostore.WriteConflict:
                pass
            else:
                raise AssertionError("commit should have raised WriteConflict")
        else:
            txn.commit()
            if writes:
                self.commit_model(writes)

    @precondition(lambda self: any(o is not None for o in self.open))
    @rule(slot=slots)
    def abort(self, slot):
        o = self.open[slot]
        if o is None:
            return
        self.open[slot] = None
        o[0].rollback()

    @rule(key=keys, vals=rows, delete=st.booleans())
    def autocommit_write(self, key, vals, delete):
        if delete:
            existed = key in self.history[-1]
            assert self.t.delete(key) is existed
            if existed:
                self.commit_model({key: None})
        else:
            self.t.upsert((key,) + vals)
            self.commit_model({key: (key,) + vals})

    @rule(lo=st.sampled_from(A_VALUES[1:]), hi=st.sampled_from(A_VALUES[1:]))
    def autocommit_query_delete(self, lo, hi):
        state = self.history[-1]
        gone = [k for k, r in state.items() if r[1] is not None and lo <= r[1] < hi]
        assert self.t.query().range("a", lo, hi).delete() == len(gone)
        if gone:
            self.commit_model({k: None for k in gone})

    @rule()
    def vacuum(self):
        vacuum_now(self.db)

    @rule(field=st.sampled_from(["a", "c"]), create=st.booleans())
    def index_ddl(self, field, create):
        if create:
            self.t.create_index(field)
        else:
            self.t.drop_index(field)

    @precondition(lambda self: any(o is not None for o in self.open))
    @rule(slot=slots, lo=st.sampled_from(A_VALUES[1:]), hi=st.sampled_from(A_VALUES[1:]),
          b=st.sampled_from(B_VALUES[1:]), limit=st.integers(0, 3), desc=st.booleans())
    def query(self, slot, lo, hi, b, limit, desc):
        o = self.open[slot]
        if o is None:
            return
        tt = o[0].table("KV")
        state = self.view(slot)
        want = sorted(k for k, r in state.items() if r[1] is not None and lo <= r[1] < hi)
        assert sorted(tt.query().range("a", lo, hi).keys()) == want
        assert tt.query().range("a", lo, hi).count() == len(want)
        want_b = sorted(k for k, r in state.items() if r[2] is not None and r[2].lower() == b.lower())
        assert sorted(tt.query().match("b", b).keys()) == want_b
        assert tt.query().eq("b", b).count() == sum(1 for r in state.values() if r[2] == b)
        # sort on a (nulls greatest), ties by key, with a limit: ordered walk or heap

        if desc:   # nulls first (null is greatest), ties by key ascending
            order = sorted(state.values(), key=lambda r: (r[1] is not None, -(r[1] or 0), r[0]))
        else:
            order = sorted(state.values(), key=lambda r: (r[1] is None, r[1] or 0, r[0]))
        q = tt.query().sort_by("-a" if desc else "a")
        if limit:
            q.limit(limit)
            order = order[:limit]
        assert q.rows() == order

    @rule(slot=st.integers(-1, MAX_OPEN - 1), pattern=st.sampled_from(KEY_PATTERNS),
          op=st.sampled_from(["match", "notmatch", "match_case", "notmatch_case"]))
    def key_match(self, slot, pattern, op):
        # glob terms on the key: the key buffer (keyscan.py) while slots are freed and reused
        if slot < 0:
            tt, state = self.t, self.history[-1]
        elif self.open[slot] is not None:
            tt, state = self.open[slot][0].table("KV"), self.view(slot)
        else:
            return
        fm = glob_to_regex(pattern, op in ("match", "notmatch"))
        want = sorted(k for k in state if (fm(k) is not None) != op.startswith("not"))
        assert sorted(getattr(tt.query(), op)("k", pattern).keys()) == want
        assert getattr(tt.query(), op)("k", pattern).count() == len(want)

    # -- invariants ------------------------------------------------------------------------------
    @invariant()
    def engine_invariants(self):
        if not hasattr(self, "t"):
            return
        self.t._check()
        store = self.t._st
        if store.keyscan is not None:
            store.keyscan._check(store)

    @invariant()
    def views_match_model(self):
        if not hasattr(self, "t"):
            return
        latest = self.history[-1]
        assert self.t.count() == len(latest)
        assert {r[0]: r for r in self.t.query().rows()} == latest
        for slot, o in enumerate(self.open):
            if o is None:
                continue
            tt = o[0].table("KV")
            state = self.view(slot)
            assert tt.count() == len(state)
            assert {r[0]: r for r in tt.query().rows()} == state
            for k in KEYS:
                assert tt.get(k) == state.get(k)
        if all(o is None for o in self.open):
            vacuum_now(self.db)
            st_ = self.db.stats()
            assert st_["snapshots"] == 0
            assert st_["versions"] == st_["rows"] == len(latest)


MVCCMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=45, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestMVCCModel = MVCCMachine.TestCase


class TinyArraysMachine(MVCCMachine):
    """The same machine with every ArrayIndex write folded into its numpy array at
    once by the writer (no delta/tombstone layer): the fold paths under version
    chains, for a narrow (a) and a wide (c) index."""

    def __init__(self):
        self._saved = arrayindex._DELTA_MIN
        arrayindex._DELTA_MIN = 0
        super().__init__()

    def teardown(self):
        try:
            super().teardown()
        finally:
            arrayindex._DELTA_MIN = self._saved


class SteppedMaintainer:
    """A maintainer the state machine drives by hand: requests wait in a list."""

    def __init__(self):
        self.requests = []

    def request(self, store, ix):
        if (store, ix) not in self.requests:
            self.requests.append((store, ix))


class MaintenanceMachine(MVCCMachine):
    """The same machine with background folds interleaved at any step (and writers
    taking the latch per two rows): an index's
    layers are frozen (fold_start), transactions read and write while the fold is
    computed, and the new array replaces main later (fold_finish), or the fold is
    dropped because a writer folded everything meanwhile."""

    def __init__(self):
        self._saved = arrayindex._DELTA_MIN, heap._PART
        arrayindex._DELTA_MIN = 1
        heap._PART = 2                  # writers take the latch per two rows
        self.jobs = []
        super().__init__()

    @initialize(idx_a=st.booleans(), idx_c=st.booleans())
    def setup(self, idx_a, idx_c):
        super().setup(idx_a, idx_c)
        self.maint = SteppedMaintainer()
        self.t._st.maintainer = self.maint

    def teardown(self):
        try:
            super().teardown()
        finally:
            arrayindex._DELTA_MIN, heap._PART = self._saved

    @rule()
    def fold_start(self):
        reqs = self.maint.requests
        if reqs:
            store, ix = reqs.pop(0)
            with store.latch:
                job = ix.fold_start()
            if job is not None:
                self.jobs.append((store, ix, job, ix.fold_compute(job)))

    @rule(which=st.integers(0, 3))
    def fold_finish(self, which):
        if self.jobs:
            store, ix, job, main = self.jobs.pop(which % len(self.jobs))
            with store.latch:
                ix.fold_finish(job, main)

    @rule()
    def writer_folds_everything(self):
        self.t._st.settle()


TinyArraysMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=45, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestMVCCModelTinyArrays = TinyArraysMachine.TestCase

MaintenanceMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestMVCCModelMaintenance = MaintenanceMachine.TestCase
