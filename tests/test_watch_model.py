"""Model-based test of subscriptions: random commits, rollbacks, conflicts and
ingests; every subscriber's events equal the model's committed changes, commit
by commit, in order, each once."""

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import aerostore
from aerostore.errors import WriteConflict
from aerostore.flightstate import FlightState

KEYS = st.sampled_from(["K0", "K1", "K2", "K3"])
GS = st.integers(0, 10)


def row(key, gs):
    return (key, None, None, None, gs, None)


class WatchModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.db = aerostore.open(":memory:", synchronous_commit=False)
        self.t = self.db.create_table(FlightState)
        self.model = {}
        self.commits = []                       # expected: list of sets of changes
        self.all = self.db.subscribe("FlightState", maxsize=100000)
        self.k1 = self.db.subscribe("FlightState", key="K1", maxsize=100000)
        self.big = self.db.subscribe("FlightState", where=lambda r: (r[4] or 0) > 5, maxsize=100000)
        self.got = {"all": [], "k1": [], "big": []}
        self._written = set()                   # keys the commit being recorded wrote

    def commit(self, new):
        """Record a commit that changed the model from self.model to ``new``."""
        changes = set()
        for k in set(self.model) | set(new):
            b, a = self.model.get(k), new.get(k)
            if b != a or (b is not None and k in self._written):
                op = "insert" if b is None else "delete" if a is None else "update"
                changes.add((op, k, b, a))
        if changes:
            self.commits.append(changes)
        self.model = new

    @rule(key=KEYS, gs=GS)
    def upsert(self, key, gs):
        self._written = {key}
        self.t.upsert(row(key, gs))
        self.commit({**self.model, key: row(key, gs)})

    @rule(key=KEYS)
    def delete(self, key):
        self._written = {key}
        self.t.delete(key)
        new = dict(self.model)
        new.pop(key, None)
        self.commit(new)

    @rule(pairs=st.lists(st.tuples(KEYS, GS), max_size=6), batch=st.integers(1, 4))
    def ingest(self, pairs, batch):
        self.db.ingest_tsv("FlightState", "".join(f"{k}\t\t\t\t{g}\t\n" for k, g in pairs), batch)
        for i in range(0, len(pairs), batch):
            part = pairs[i:i + batch]
            self._written = {k for k, _ in part}
            new = dict(self.model)
            for k, g in part:
                new[k] = row(k, g)
            self.commit(new)

    @rule(key=KEYS, gs=GS)
    def rolled_back(self, key, gs):
        txn = self.db.begin()
        txn.table("FlightState").upsert(row(key, gs))
        txn.table("FlightState").delete("K2")
        txn.rollback()

    @rule(key=KEYS, g1=GS, g2=GS)
    def conflict(self, key, g1, g2):
        t1, t2 = self.db.begin(), self.db.begin()
        t1.table("FlightState").upsert(row(key, g1))
        t2.table("FlightState").upsert(row(key, g2))
        t1.commit()
        self._written = {key}
        self.commit({**self.model, key: row(key, g1)})
        try:
            t2.commit()
            raise AssertionError("the second committer should have lost")
        except WriteConflict:
            pass

    @invariant()
    def events_match_the_model(self):
        for name, sub in (("all", self.all), ("k1", self.k1), ("big", self.big)):
            self.got[name].extend(sub.drain())
        by_csn = {}
        for e in self.got["all"]:
            by_csn.setdefault(e.csn, set()).add((e.op, e.key, e.before, e.after))
        csns = [e.csn for e in self.got["all"]]
        assert csns == sorted(csns)
        assert list(by_csn.values()) == self.commits
        flat = [(e.op, e.key, e.before, e.after) for e in self.got["all"]]
        assert [(e.op, e.key, e.before, e.after) for e in self.got["k1"]] == [c for c in flat if c[1] == "K1"]

        def big(r):
            return r is not None and (r[4] or 0) > 5
        assert [(e.op, e.key, e.before, e.after) for e in self.got["big"]] == [
            c for c in flat if big(c[2]) or big(c[3])]
        assert {k: self.t.get(k) for k in self.model} == self.model
        assert self.t.count() == len(self.model)

    def teardown(self):
        self.db.close()


WatchModel.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
TestWatchModel = WatchModel.TestCase
