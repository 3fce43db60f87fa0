"""``FlightState get key``: the settled-row path the shim reads in C
(c_shim/rowget.c) against the general one (Session.t_get -> Table.get).

Each test counts the calls that reach ``Session.t_get``: a settled row must be
answered without one, and everything the C path may not decide (a miss, a
version chain, a transaction, an int key, a closed store) must reach it.  The
answers are compared with the general path's (``get key`` with every field
named always takes it) and with the engine's own ``Table.get``.
"""

from __future__ import annotations

import pytest

from aerostore.tclbridge import session as session_mod
from aerostore.tclbridge import state
from test_tcl_support import ROWS, TclError, tsv_of

FIELDS = ("flight_id", "lat", "lon", "altitude", "gs", "updated_at")


@pytest.fixture
def calls(monkeypatch):
    """The keys Session.t_get was called with (it still answers)."""
    seen = []
    real = session_mod.Session.t_get

    def counting(self, key, *fields):
        seen.append(key)
        return real(self, key, *fields)

    monkeypatch.setattr(session_mod.Session, "t_get", counting)
    return seen


@pytest.fixture
def loaded(tcl):
    tcl.call("FlightState", "ingest_tsv", tsv_of(ROWS))
    return tcl


def general(t, key) -> str:
    """The general path's answer (every field named: never the C path)."""
    return t.call("FlightState", "get", key, *FIELDS)


def expected(key) -> list:
    """Table.get's row as the Tcl words it converts to (None: the empty string)."""
    row = state.flights().get(key)
    return [] if row is None else ["" if v is None else repr(v) if isinstance(v, float) else str(v)
                                   for v in row]


def test_settled_rows_are_answered_in_c(loaded, calls):
    for row in ROWS:
        k = row[0]
        assert loaded.list("FlightState", "get", k) == expected(k)
    assert calls == []
    for row in ROWS:
        assert loaded.call("FlightState", "get", row[0]) == general(loaded, row[0])


def test_the_key_element_has_the_keys_bytes(loaded):
    loaded.call("set", "::k", "UAL1")
    assert loaded.eval("lindex [FlightState get $::k] 0") == "UAL1"
    # the list survives the key variable changing (it holds a value, not the variable)
    assert loaded.eval("set r [FlightState get $::k]; set ::k x; lindex $r 0") == "UAL1"


def test_a_miss_goes_to_python(loaded, calls):
    assert loaded.call("FlightState", "get", "NOPE") == ""
    assert calls == ["NOPE"]


def test_fields_go_to_python(loaded, calls):
    assert loaded.list("FlightState", "get", "UAL1", "gs", "alt") == ["450", "35000"]
    assert calls == ["UAL1"]
    e = loaded.error("FlightState", "get", "UAL1", "nosuch")
    assert e.code.split()[:4] == ["AEROSTORE", "USAGE", "FIELD", "nosuch"]


def test_chained_rows_go_to_python_and_see_the_latest(loaded, calls):
    db = state.database()
    reader = db.begin()                        # its snapshot keeps the old versions: chains
    try:
        reader.table("FlightState").get("UAL1")
        loaded.call("FlightState", "set", "UAL1", "gs", "451")
        loaded.call("FlightState", "delete", "DAL2")
        calls.clear()
        assert loaded.list("FlightState", "get", "UAL1")[4] == "451"
        assert loaded.call("FlightState", "get", "DAL2") == ""
        assert calls == ["UAL1", "DAL2"]
        assert reader.table("FlightState").get("UAL1")[4] == 450
    finally:
        reader.rollback()


def test_rows_settle_back_into_the_c_path(loaded, calls):
    loaded.call("FlightState", "set", "UAL1", "gs", "452")     # no snapshot held: frozen at once
    calls.clear()
    assert loaded.list("FlightState", "get", "UAL1") == expected("UAL1")
    assert loaded.list("FlightState", "get", "UAL1")[4] == "452"
    assert calls == []


def test_inside_a_transaction_the_own_writes_are_read(loaded, calls):
    got = loaded.eval("aerostore::transaction {FlightState set UAL1 gs 7; "
                      "set ::r [FlightState get UAL1]; set ::d [FlightState get DAL2]}; "
                      "list $::r $::d")
    r, d = loaded.tk.splitlist(got)
    assert loaded.tk.splitlist(r)[4] == "7"
    assert loaded.tk.splitlist(d)[0] == "DAL2"
    assert calls == ["UAL1", "DAL2"]
    assert loaded.list("FlightState", "get", "UAL1")[4] == "7"


def test_a_rolled_back_transaction_leaves_the_c_path_on(loaded, calls):
    loaded.eval("catch {aerostore::transaction {FlightState get UAL1; error boom}}")
    calls.clear()
    loaded.call("FlightState", "get", "UAL1")
    assert calls == []


def test_an_integer_key_goes_to_python(tcl, calls):
    tcl.call("FlightState", "ingest_tsv", "12\t1.5\t2.5\t100\t10\t5\n")
    assert tcl.eval("lindex [FlightState get [expr {6 * 2}]] 0") == "12"
    assert calls == [12]
    assert tcl.eval("lindex [FlightState get 12] 0") == "12"       # a string: the C path
    assert calls == [12]


@pytest.mark.parametrize("key", ["Ünïcödé", "a\0b", "\u2708\U0001F600", "sp ace", "{br", ""])
def test_unusual_keys_read_the_same_on_both_paths(tcl, calls, key):
    if not key:
        assert tcl.call("FlightState", "get", key) == ""
        return
    tcl.call("FlightState", "set", key, "alt", "5")
    assert tcl.call("FlightState", "get", key) == general(tcl, key)
    tcl.call("set", "::k", key)
    assert tcl.eval("string equal [lindex [FlightState get $::k] 0] "
                    "[lindex [FlightState get $::k alt flight_id] 1]") == "1"


def test_keys_round_trip_in_tclsh(shim):
    from test_tcl_support import tclsh
    p = tclsh("""package require aerostore
aerostore::init :memory:
foreach k [list "a\\0b" "\\u2708x" "pl\\u00e4in" UAL1] {
    FlightState set $k alt 5
    puts [string equal [lindex [FlightState get $k] 0] $k]
}
""")
    assert p.stdout.split() == ["1"] * 4


def test_a_closed_store_is_an_error_on_both_paths(loaded, calls):
    loaded.call("FlightState", "get", "UAL1")
    loaded.call("aerostore::close")
    e = loaded.error("FlightState", "get", "UAL1")
    assert e.code.split()[:3] == ["AEROSTORE", "USAGE", "NOTOPEN"]
    assert calls == ["UAL1"]


def test_a_database_closed_by_the_host_is_not_read(bare_tcl, calls):
    import aerostore
    db = aerostore.open(":memory:")
    state.use(db)
    try:
        bare_tcl.call("FlightState", "ingest_tsv", tsv_of(ROWS))
        assert bare_tcl.list("FlightState", "get", "UAL1")[0] == "UAL1"
        assert calls == []
        db.close()
        with pytest.raises(TclError) as ei:
            bare_tcl.call("FlightState", "get", "UAL1")
        assert ei.value.code.split()[0] == "AEROSTORE"
        assert calls == ["UAL1"]
    finally:
        state.close()


def test_a_reopened_store_is_read_not_the_old_one(loaded, calls):
    loaded.call("FlightState", "get", "UAL1")
    loaded.call("aerostore::close")
    loaded.call("aerostore::init", ":memory:")
    assert loaded.call("FlightState", "get", "UAL1") == ""
    loaded.call("FlightState", "ingest_tsv", "UAL1\t1.25\t2.5\t3\t4\t5\n")
    calls.clear()
    assert loaded.list("FlightState", "get", "UAL1") == ["UAL1", "1.25", "2.5", "3", "4", "5"]
    assert calls == []


def test_a_reused_slot_is_not_read_for_another_key(loaded, calls):
    # DAL2's slot is freed by its delete and taken by the next insert; the key
    # map no longer has DAL2, and the reused slot's tuple names the new key
    loaded.call("FlightState", "delete", "DAL2")
    loaded.call("FlightState", "ingest_tsv", "NEW9\t1.5\t2.5\t3\t4\t5\n")
    calls.clear()
    assert loaded.call("FlightState", "get", "DAL2") == ""
    assert loaded.list("FlightState", "get", "NEW9")[0] == "NEW9"
    assert calls == ["DAL2"]
