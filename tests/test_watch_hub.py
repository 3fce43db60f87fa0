"""WatchHub routing, bounded queues and lag reporting, driven by a fake publisher."""

import threading

import pytest

from aerostore.errors import UsageError
from aerostore.watch import Event, Lagged, WatchHub


class FakeDB:
    def __init__(self):
        self.hooks = []
        self.csn = 0

    def add_publish_hook(self, fn):
        self.hooks.append(fn)

    def add_close_hook(self, fn):
        pass

    def commit(self, *changes):
        self.csn += 1
        for h in self.hooks:
            h(self.csn, list(changes))
        return self.csn


def ins(key, row=None, table="T"):
    return (table, "insert", key, None, row or (key, 1))


def upd(key, before, after, table="T"):
    return (table, "update", key, before, after)


@pytest.fixture
def db():
    return FakeDB()


@pytest.fixture
def hub(db):
    return WatchHub(db)


def test_table_key_and_where_filters(db, hub):
    everything = hub.subscribe("T")
    one = hub.subscribe("T", key="b")
    big = hub.subscribe("T", where=lambda r: r[1] > 10)
    other = hub.subscribe("U")
    db.commit(ins("a", ("a", 1)), ins("b", ("b", 20)))
    db.commit(upd("a", ("a", 1), ("a", 11)), ("T", "delete", "b", ("b", 20), None))
    db.commit(upd("a", ("a", 11), ("a", 5)))            # leaves big's set: still seen
    db.commit(upd("a", ("a", 5), ("a", 6)))             # outside big's set before and after
    assert [(e.csn, e.op, e.key) for e in everything.drain()] == [
        (1, "insert", "a"), (1, "insert", "b"), (2, "update", "a"), (2, "delete", "b"),
        (3, "update", "a"), (4, "update", "a")]
    assert [(e.op, e.key, e.before, e.after) for e in one.drain()] == [
        ("insert", "b", None, ("b", 20)), ("delete", "b", ("b", 20), None)]
    assert [(e.csn, e.op, e.key) for e in big.drain()] == [
        (1, "insert", "b"), (2, "update", "a"), (2, "delete", "b"), (3, "update", "a")]
    assert other.drain() == []
    assert hub.last_csn == 4


def test_event_row_property():
    assert Event(1, "T", "delete", "k", ("k", 1), None).row == ("k", 1)
    assert Event(1, "T", "update", "k", ("k", 1), ("k", 2)).row == ("k", 2)


def test_overflow_reports_lag_and_never_blocks(db, hub):
    sub = hub.subscribe("T", maxsize=3)
    for i in range(10):
        db.commit(ins(f"k{i}"))
    assert sub.missed_total == 7
    assert [e.key for e in (sub.get(0), sub.get(0), sub.get(0))] == ["k0", "k1", "k2"]
    assert sub.get(0) == Lagged(7)
    assert sub.get(0) is None
    db.commit(ins("k10"), ins("k11"), ins("k12"), ins("k13"))   # 4 into room 3
    db.commit(ins("k14"))
    assert [getattr(e, "key", e) for e in sub.drain()] == ["k10", "k11", "k12", Lagged(2)]
    db.commit(ins("k15"))
    assert [e.key for e in sub.drain()] == ["k15"]
    assert sub.missed_total == 9


def test_lag_marker_sits_where_events_were_lost(db, hub):
    sub = hub.subscribe("T", maxsize=2)
    db.commit(ins("a"), ins("b"), ins("c"))
    assert sub.get(0).key == "a"
    db.commit(ins("d"))                     # room for one: Lagged(1) goes before d
    assert [getattr(e, "key", e) for e in sub.drain()] == ["b", Lagged(1), "d"]
    assert Lagged(1).op == "lagged"


def test_callback_mode_runs_on_publishing_thread(db, hub):
    seen = []
    sub = hub.subscribe("T", callback=lambda ev: seen.append((threading.get_ident(), ev.key)))
    db.commit(ins("a"), ins("b"))
    assert seen == [(threading.get_ident(), "a"), (threading.get_ident(), "b")]
    with pytest.raises(UsageError):
        sub.get(0)


def test_failing_callback_and_filter_do_not_break_publish(db, hub):
    def boom(ev):
        raise RuntimeError("subscriber bug")

    bad_cb = hub.subscribe("T", callback=boom)
    bad_filter = hub.subscribe("T", where=lambda r: 1 / 0)
    good = hub.subscribe("T")
    db.commit(ins("a"), ins("b"))
    assert bad_cb.errors == 2 and isinstance(bad_cb.last_error, RuntimeError)
    assert bad_filter.errors == 2 and bad_filter.drain() == []
    assert [e.key for e in good.drain()] == ["a", "b"]


def test_callback_may_unsubscribe_itself(db, hub):
    got = []

    def once(ev):
        got.append(ev.key)
        hub.unsubscribe(sub)

    sub = hub.subscribe("T", callback=once)
    db.commit(ins("a"), ins("a2"))
    db.commit(ins("b"))
    assert got == ["a"]
    assert hub.subscriptions() == []

    # one callback ends another subscription: that one gets nothing more,
    # not even the rest of the commit being delivered
    victim_got = []
    hub.subscribe("T", callback=lambda ev: hub.unsubscribe(victim))
    victim = hub.subscribe("T", callback=lambda ev: victim_got.append(ev.key))
    db.commit(ins("c"), ins("d"))
    assert victim_got == []


def test_close_wakes_a_blocked_reader_and_iteration_ends(db, hub):
    sub = hub.subscribe("T")
    got = []
    t = threading.Thread(target=lambda: got.extend(e.key for e in sub))
    t.start()
    db.commit(ins("a"))
    db.commit(ins("b"))
    sub.close()
    t.join(5)
    assert not t.is_alive() and got == ["a", "b"]
    db.commit(ins("c"))
    assert sub.get(0) is None
    assert hub.unsubscribe(sub) is False
    sub.close()                                         # idempotent


def test_context_manager_and_hub_close(db, hub):
    with hub.subscribe("T") as sub:
        db.commit(ins("a"))
        assert sub.get(1).key == "a"
    assert sub.closed
    s2 = hub.subscribe("T", key="x")
    hub.close()
    assert s2.closed and hub.subscriptions() == []


def test_get_timeout_returns_none(hub):
    sub = hub.subscribe("T")
    assert sub.get(timeout=0.01) is None


def test_bad_arguments(hub):
    for kw in ({"maxsize": 0}, {"maxsize": True}, {"key": 5}, {"callback": 3}, {"where": 42}):
        with pytest.raises(UsageError):
            hub.subscribe("T", **kw)
    with pytest.raises(UsageError):
        hub.subscribe("")


def test_publish_without_subscribers_is_cheap_and_records_csn(db, hub):
    db.commit(*[ins(f"k{i}") for i in range(1000)])
    assert hub.last_csn == 1
