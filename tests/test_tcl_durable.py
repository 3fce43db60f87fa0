"""`FlightState set` with `synchronous_commit on` returns only once its commit
is durable and visible, also when it waits for another thread's flush in C,
without the GIL (c_shim/durable.c, Session._deferred): from 8 Tcl threads
(then the process is killed -9 and a second one finds every commit), and in
process with a flush held open, for success and for a failed fdatasync."""

from __future__ import annotations

import errno
import threading
import time

import pytest

from aerostore.storage import fileio, walwriter
from aerostore.tclbridge import state
from test_group_commit import GatedIO
from test_tcl_support import tclsh, tclsh_can


def test_eight_tcl_threads_commits_are_durable_and_visible_when_they_return(shim, tmp_path):
    ok, why = tclsh_can("package require Thread")
    if not ok:
        pytest.skip(why)
    d = tmp_path / "store"
    script = f"""
package require Thread
package require aerostore
aerostore::init {d}
set work {{
    package require aerostore
    aerostore::init {d}
    proc run {{id}} {{
        for {{set j 1}} {{$j <= 150}} {{incr j}} {{
            FlightState set T${{id}}_[expr {{$j % 50}}] alt $j gs $id
            # visible to this thread as soon as the set returned
            if {{[FlightState get T${{id}}_[expr {{$j % 50}}] alt] != $j}} {{ error "not visible: $id $j" }}
        }}
        return ok
    }}
}}
set tids {{}}
for {{set i 0}} {{$i < 8}} {{incr i}} {{
    set t [thread::create]
    thread::send $t $work
    lappend tids $t
}}
set n 0
foreach t $tids {{
    thread::send -async $t [list run $n] ::result($t)
    incr n
}}
while {{[array size ::result] < 8}} {{ vwait ::result }}
foreach t $tids {{ puts $::result($t) }}
set s [aerostore::stats]
puts "[dict get $s wal_commits_flushed] [dict get $s wal_flushes]"
flush stdout
exec kill -9 [pid]
"""
    p = tclsh(script, timeout=120, check=False)
    lines = p.stdout.split("\n")
    assert lines[:8] == ["ok"] * 8, p.stderr
    flushed, flushes = map(int, lines[8].split())
    assert flushed >= 1200 and flushes < 1200      # 1200 commits shared fdatasyncs
    # killed without closing: what the sets acknowledged must be on disk
    p = tclsh(f"package require aerostore\naerostore::init {d}\n"
              f"puts [FlightState count]\n"
              f"for {{set i 0}} {{$i < 8}} {{incr i}} {{\n"
              f"  for {{set k 0}} {{$k < 50}} {{incr k}} {{ puts [FlightState get T${{i}}_$k alt gs] }}\n"
              f"}}\nexit\n")
    lines = p.stdout.splitlines()
    assert lines[0] == "400"
    # T<id>_<k> was last set with j = 150 (k = 0) or 100 + k
    assert lines[1:] == [f"{150 if k == 0 else 100 + k} {i}" for i in range(8) for k in range(50)]


@pytest.fixture
def held(bare_tcl, tmp_path, monkeypatch):
    """A Tcl interp on a directory store whose next fdatasync is held, and a
    Python thread whose commit is stopped inside it; records Ticket.defer's
    answers."""
    io = GatedIO()
    monkeypatch.setattr(fileio, "DEFAULT", io)
    bare_tcl.call("aerostore::init", str(tmp_path / "db"))
    deferred = []
    real = walwriter.Ticket.defer

    def defer(ticket, waker, lead=True):
        out = real(ticket, waker, lead)
        deferred.append(out)
        return out

    monkeypatch.setattr(walwriter.Ticket, "defer", defer)
    db = state.database()
    io.hold()
    raised = []

    def lead():
        try:
            db.table("FlightState").set("A", {"altitude": 1})
        except Exception as e:  # noqa: BLE001 - the failure test expects one
            raised.append(e)

    th = threading.Thread(target=lead)
    th.start()
    assert io.entered.wait(20)
    yield bare_tcl, io, db, deferred, raised, th
    th.join(20)


def _release_when_queued(db, io, err=None):
    """Release the held flush once another commit waits behind it."""
    def run():
        deadline = time.monotonic() + 20
        while db.stats()["wal_pending"] < 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        io.release(err)
    th = threading.Thread(target=run)
    th.start()
    return th


def test_a_set_waits_without_the_gil_for_a_flush_another_thread_runs(held):
    tcl, io, db, deferred, raised, leader = held
    rel = _release_when_queued(db, io)
    assert tcl.call("FlightState", "set", "B", "alt", "5") == ""
    rel.join()
    assert deferred == [True]                  # the set's commit waited in C
    assert tcl.call("FlightState", "get", "B", "alt") == "5"
    leader.join(20)
    assert not raised


def test_a_set_whose_flush_fails_raises_the_io_error(held):
    tcl, io, db, deferred, raised, leader = held
    rel = _release_when_queued(db, io, errno.EIO)
    e = tcl.error("FlightState", "set", "B", "alt", "5")
    rel.join()
    leader.join(20)
    assert deferred == [True]
    assert e.code.startswith("AEROSTORE IO"), e.code
    assert raised and tcl.call("FlightState", "get", "B", "alt") == ""
    assert db.stats()["readonly"] == 1


def test_a_set_waiting_in_c_when_the_store_closes_returns(held):
    """The store starts closing while a set waits in C for its flush (held): close
    waits for that flush, the set returns durable, and nothing waits for ever."""
    tcl, io, db, deferred, raised, leader = held
    closer = []

    def run():
        _wait_pending(db)                       # the set's commit is queued
        th = threading.Thread(target=db.close)  # close: joins the writer, behind the flush
        th.start()
        closer.append(th)
        time.sleep(0.05)
        io.release()

    rel = threading.Thread(target=run)
    rel.start()
    assert tcl.call("FlightState", "set", "B", "alt", "5") == ""
    rel.join(20)
    closer[0].join(20)
    assert not closer[0].is_alive(), "close did not finish"
    assert deferred == [True]
    leader.join(20)
    assert not raised


def _wait_pending(db):
    deadline = time.monotonic() + 20
    while db.stats()["wal_pending"] < 1 and time.monotonic() < deadline:
        time.sleep(0.001)
