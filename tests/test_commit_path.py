"""The autocommit write path of the Tcl bridge (``Database._commit_set``) and
the vacuum that prunes a group of commits at once (``Database._vacuum``).

``FlightState set`` commits one key without a transaction: the row is built
under the commit lock over the newest installed version, published or not, so
it never conflicts; the Tcl combiner prunes once per group of commits
(``Session.c_done``), and one prune takes each slot once however many of the
group's commits wrote it.
"""

import pytest

import aerostore
from aerostore import FlightState
from aerostore.errors import UsageError
from conftest import within


def _versions(db) -> int:
    return db.stats()["versions"]


def test_a_set_builds_on_a_commit_still_waiting_for_its_flush(tmp_path, open_db):
    # the first commit is installed and logged, not flushed (not published): a
    # second set of the same key must keep its field, and both are durable
    db = open_db(str(tmp_path / "d"))
    st = db.create_table(FlightState)._st
    t1 = db._commit_set(st, "K1", {"altitude": 100}, wait=False)
    assert t1 is not None and db._snaps.watermark < db._csn      # not visible yet
    t2 = db._commit_set(st, "K1", {"gs": 7}, wait=False)
    db.flush_log()
    db.wait_durable(t1)
    db.wait_durable(t2)
    row = db.table(FlightState).get("K1")
    assert row[FlightState.position("altitude")] == 100 and row[FlightState.position("gs")] == 7
    db.close()
    again = open_db(str(tmp_path / "d"))
    row = again.table(FlightState).get("K1")
    assert row[FlightState.position("altitude")] == 100 and row[FlightState.position("gs")] == 7


def test_a_set_with_a_bad_value_commits_nothing(mem_db):
    st = mem_db.create_table(FlightState)._st
    mem_db._commit_set(st, "K1", {"altitude": 1})
    csn, commits = mem_db._csn, mem_db._commits
    with pytest.raises(UsageError):
        mem_db._commit_set(st, "K1", {"altitude": "high"})
    with pytest.raises(UsageError):
        mem_db._commit_set(st, "K1", {"flight_id": "K2"})     # the key cannot change
    assert (mem_db._csn, mem_db._commits) == (csn, commits)
    assert mem_db.table(FlightState).get("K1")[FlightState.position("altitude")] == 1


def test_a_set_inside_a_subscription_callback_is_refused(mem_db):
    flights = mem_db.create_table(FlightState)
    st = flights._st
    seen = []

    def callback(ev):
        try:
            mem_db._commit_set(st, "K2", {"altitude": 2})
        except UsageError as e:
            seen.append(e)

    sub = mem_db.subscribe(FlightState, callback=callback)
    within(mem_db._commit_set, st, "K1", {"altitude": 1})     # not a hang
    sub.close()
    assert len(seen) == 1 and "subscription callback" in str(seen[0])
    assert flights.get("K2") is None


def test_one_vacuum_prunes_a_group_of_commits_each_slot_once(mem_db):
    flights = mem_db.create_table(FlightState)
    st = flights._st
    for k in ("K1", "K2", "K3"):
        flights.set(k, {"altitude": 1})
    # a group as the Tcl combiner makes it: commits that leave their prune,
    # two of them to the same slot
    for k, alt in (("K1", 2), ("K2", 2), ("K1", 3), ("K3", 2), ("K1", 4)):
        mem_db._commit_set(st, k, {"altitude": alt}, vacuum=False)
    assert _versions(mem_db) > 3
    mem_db._vacuum()
    assert _versions(mem_db) == 3 and not mem_db._prune_q
    st._check()
    alt = FlightState.position("altitude")
    assert [flights.get(k)[alt] for k in ("K1", "K2", "K3")] == [4, 2, 2]
    assert flights.query().where("==", "altitude", 4).keys() == ["K1"]


def test_tcl_sets_leave_no_old_versions(tcl):
    # synchronous_commit on or off, each combiner's group is pruned when it ends
    for sync in ("1", "0"):
        tcl.eval(f"aerostore::set_config aerostore.synchronous_commit {sync}")
        for i in range(5):
            tcl.eval(f"FlightState set K{i % 2} altitude {i}")
        db = aerostore.tclbridge.state.database()
        assert _versions(db) == db.stats()["rows"] == 2
    assert tcl.eval("FlightState get K0 altitude") == "4"
