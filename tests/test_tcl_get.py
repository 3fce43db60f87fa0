"""``FlightState get key``: the settled-row path the shim reads in C from the
typed columns (c_shim/rowget.c) against the general one (Session.t_get ->
Table.get).

Each test counts the calls that reach ``Session.t_get``: a settled row must be
answered without one, and everything the C path may not decide (a miss, a
version chain, a transaction, an int key, a closed store, a freeze running,
columns of another layout) must reach it.  The answers are compared with the
general path's (``get key`` with every field named always takes it) and with
the engine's own ``Table.get``: every kind of value (nulls, bools, floats
whose text matters, unsigned 64-bit values past 2^63, wide ints, strings) must
read as the same Tcl text on both paths.
"""

from __future__ import annotations

import contextlib

import pytest

from aerostore import readgate
from aerostore.schema import Bool, Float, Int, Key, Str, UInt, table
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


def test_a_miss_is_answered_without_python(loaded, calls):
    assert loaded.call("FlightState", "get", "NOPE") == ""      # before any view: GIL path
    assert calls == ["NOPE"]
    loaded.call("FlightState", "get", "UAL1")                   # makes the view
    calls.clear()
    assert loaded.call("FlightState", "get", "NOPE") == ""      # the read gate's path
    assert calls == []


def test_fields_are_read_in_c_once_there_is_a_view(loaded, calls):
    assert loaded.list("FlightState", "get", "UAL1", "gs", "alt") == ["450", "35000"]
    assert calls == ["UAL1"]                                     # no view yet: Python
    assert loaded.list("FlightState", "get", "UAL1", "gs", "alt") == ["450", "35000"]
    assert calls == ["UAL1"]                                     # the read gate's path
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
    # map no longer has DAL2, and the reused slot's heap entry and column
    # values are the new key's
    st = state.flights()._st
    slot = st.slots["DAL2"]
    loaded.call("FlightState", "delete", "DAL2")
    loaded.call("FlightState", "ingest_tsv", "NEW9\t1.5\t\t3\t4\t5\n")
    assert st.slots["NEW9"] == slot
    calls.clear()
    assert loaded.call("FlightState", "get", "DAL2") == ""
    assert loaded.list("FlightState", "get", "NEW9") == ["NEW9", "1.5", "", "3", "4", "5"]
    assert loaded.list("FlightState", "get", "NEW9") == expected("NEW9")
    assert calls == ["DAL2"]


def answered_in_c(t, calls, key) -> list:
    """``get key``'s words, checked to come from the C path and to be the
    general path's and Table.get's."""
    calls.clear()
    got = t.list("FlightState", "get", key)
    assert calls == [], f"{key}: not answered in C"
    assert t.call("FlightState", "get", key) == general(t, key)
    row = state.flights().get(key)
    assert len(got) == len(row)
    for word, v in zip(got, row):
        # Tcl's text of a double is not always Python's repr (2.5e-5, 1e+16)
        assert (float(word) == v) if v.__class__ is float else word == ("" if v is None else str(v))
    calls.clear()
    return got


def test_nulls_in_each_numeric_field(tcl, calls):
    rows = []
    for i in range(1, len(FIELDS)):
        row = ["N%d" % i, "1.5", "-2.5", "-7", "8", "9"]
        row[i] = ""
        rows.append(row)
    rows.append(["NALL", "", "", "", "", ""])
    tcl.call("FlightState", "ingest_tsv", "".join("\t".join(r) + "\n" for r in rows))
    for r in rows:
        assert answered_in_c(tcl, calls, r[0]) == r


@pytest.mark.parametrize("value", ["0", "9223372036854775807", "9223372036854775808",
                                   "18446744073709551614", "18446744073709551615"])
def test_unsigned_64_bit_values(tcl, calls, value):
    tcl.call("FlightState", "set", "U64", "updated_at", value)
    assert answered_in_c(tcl, calls, "U64")[5] == value
    # the text is the number: Tcl reads it back as the same integer
    assert tcl.eval("expr {[lindex [FlightState get U64] 5] == %s}" % value) == "1"


def test_integer_limits(tcl, calls):
    tcl.call("FlightState", "set", "LO", "alt", "-2147483648", "gs", "0")
    tcl.call("FlightState", "set", "HI", "alt", "2147483647", "gs", "65535")
    assert answered_in_c(tcl, calls, "LO")[3:5] == ["-2147483648", "0"]
    assert answered_in_c(tcl, calls, "HI")[3:5] == ["2147483647", "65535"]


@pytest.mark.parametrize("value", ["0.1", "1e-300", "-0.0", "0.30000000000000004", "1e16",
                                   "123456789012345.67", "1.7976931348623157e308", "5e-324",
                                   "-2.5", "3", "1e22", "2.5e-05"])
def test_float_text_is_the_general_paths(tcl, calls, value):
    tcl.call("FlightState", "set", "F", "lat", value, "lon", "-" + value.lstrip("-"))
    got = answered_in_c(tcl, calls, "F")
    assert float(got[1]) == float(value) and float(got[2]) == -abs(float(value))
    # and Tcl reads the text back as the same double
    assert tcl.eval("expr {[lindex [FlightState get F] 1] == %s}" % value) == "1"


def test_minus_zero_reads_as_zero(tcl, calls):
    tcl.call("FlightState", "set", "Z", "lat", "-0.0", "lon", "0.0")
    got = answered_in_c(tcl, calls, "Z")
    assert got[1:3] == [general_word(tcl, 0.0)] * 2


def general_word(t, value) -> str:
    """The general path's Tcl text of a Python float (through a row's field)."""
    t.call("FlightState", "set", "_W", "lat", repr(value))
    return t.list("FlightState", "get", "_W", "lat")[0]


def test_rows_that_settle_after_updates(loaded, calls):
    steps = [("gs", "1"), ("lat", ""), ("lat", "0.1"), ("updated_at", "18446744073709551615"),
             ("alt", ""), ("alt", "-1"), ("gs", ""), ("lon", "1e-300")]
    for field, value in steps:
        loaded.call("FlightState", "set", "UAL1", field, value)
        assert answered_in_c(loaded, calls, "UAL1")[state.flights().schema.position(field)] == value
    # several rows changed at once settle too
    loaded.eval("aerostore::transaction {FlightState set DAL2 gs 2; FlightState set AAL3 lat 1.25}")
    for row in ROWS:
        answered_in_c(loaded, calls, row[0])


def test_a_freeze_running_goes_to_python(loaded, calls):
    # an odd fseq: a writer section that freezes or frees slots is running, and
    # may be writing column values (with the GIL released inside numpy)
    # (and it holds the read gate: gets without the GIL wait, then come here)
    st = state.flights()._st
    loaded.call("FlightState", "get", "UAL1")       # a view for the path without the GIL
    calls.clear()
    assert st.fseq % 2 == 0
    st.fseq += 1
    readgate.hold()
    try:
        assert loaded.list("FlightState", "get", "UAL1") == expected("UAL1")
        assert calls == ["UAL1"]
    finally:
        readgate.release()
        st.fseq -= 1
    answered_in_c(loaded, calls, "UAL1")


def _views_of(cols, change):
    """``cols.arrays`` with each memoryview of the row views replaced by
    ``change(memoryview)``."""
    arrays = cols.arrays
    views = tuple(change(v) if v.__class__ is memoryview else v for v in arrays[3])
    return arrays[:3] + (views,) + arrays[4:]


def _float32(v):
    a = v.obj
    return memoryview(a.astype("float32")) if a.dtype.kind == "f" else v


def _short(v):
    return v[:1]


def _released(v):
    m = memoryview(v.obj)
    m.release()
    return m


@pytest.mark.parametrize("change", [_float32, _short, _released])
def test_columns_of_another_layout_go_to_python(loaded, calls, change):
    # the C path reads only the layout Columns publishes (float64, int64,
    # uint64 and int8 values, bool nulls, the slot within every array, views not
    # released); anything else is the general path's to answer or refuse
    cols = state.flights()._st.columns
    arrays = cols.arrays
    cols.arrays = _views_of(cols, change)
    readgate.changed()          # as Columns._publish does
    try:
        try:
            want = expected("ASA7")
        except Exception as e:         # the general path cannot read it either
            want = e
        if isinstance(want, list):
            assert loaded.list("FlightState", "get", "ASA7") == want
        else:
            e = loaded.error("FlightState", "get", "ASA7")
            assert e.code.split()[:2] == ["AEROSTORE", "INTERNAL"]
        assert calls == ["ASA7"]
    finally:
        cols.arrays = arrays
        readgate.changed()
    answered_in_c(loaded, calls, "ASA7")


# -- other layouts: the C path reads whatever table ``state.fast_get`` names ----

def mixed_table(name: str, indexes=()):
    """A table of every column kind, the key second (test_tcl_search_bind uses it too)."""
    class Mixed:
        ratio = Float()
        name = Key()
        flag = Bool()
        note = Str()
        wide = Int(lo=-5, hi=(1 << 64) - 1)       # too wide for 64 bits: a list of ints
        big = UInt(bits=64)
        small = Int(bits=8)
    return table(name=name, indexes=indexes)(Mixed)


Mixed = mixed_table("MixedGet")


@table(name="KeyLastGet")
class KeyLast:
    on = Bool()
    k = Key()


MIXED = [
    (0.1, "m1", True, "hello", -5, (1 << 64) - 1, -128),
    (None, "m2", False, None, (1 << 64) - 1, 1 << 63, 127),
    (1e300, "m3", None, "\u00fcn\u00efc\u00f6d\u00e9 \u2708\U0001F600", 0, None, None),
    (-2.5, "m4", False, "sp ace {br", 1 << 63, 0, 0),
]


@contextlib.contextmanager
def reading(tbl):
    """``tbl`` as the table both paths read (the C path through
    ``state.fast_get``, the general one through ``state.current``); restored
    afterwards."""
    old = state.current, state.fast_get
    state.current, state.fast_get = tbl, state._fast_get(tbl)
    readgate.changed()      # as state.py does: views of the other table are stale
    try:
        yield
    finally:
        state.current, state.fast_get = old
        readgate.changed()


def as_table(t, tbl, calls, keys):
    """``get key``'s words for each key of ``tbl``, checked to come from the C
    path and to equal the general path's."""
    names = [f.name for f in tbl.schema.fields]
    out = []
    with reading(tbl):
        for k in keys:
            calls.clear()
            got = t.call("FlightState", "get", k)
            assert calls == [], f"{k}: not answered in C"
            assert got == t.call("FlightState", "get", k, *names)
            out.append([str(x) for x in t.tk.splitlist(got)])
    return out


def test_bools_strings_wide_ints_and_the_key_anywhere(tcl, calls):
    db = state.database()
    mixed = db.create_table(Mixed)
    for r in MIXED:
        mixed.upsert(r)
    got = as_table(tcl, mixed, calls, [r[1] for r in MIXED])
    assert got[0] == ["0.1", "m1", "1", "hello", "-5", str((1 << 64) - 1), "-128"]
    assert got[1] == ["", "m2", "0", "", str((1 << 64) - 1), str(1 << 63), "127"]
    assert got[2][1:] == ["m3", "", MIXED[2][3], "0", "", ""]
    assert got[3][2:] == ["0", "sp ace {br", str(1 << 63), "0", "0"]
    last = db.create_table(KeyLast)
    last.upsert((True, "t"))
    last.upsert((False, "f"))
    last.upsert((None, "n"))
    assert as_table(tcl, last, calls, ["t", "f", "n"]) == [["1", "t"], ["0", "f"], ["", "n"]]


def test_a_string_column_shorter_than_the_slot_is_not_read(tcl, calls):
    # not a layout Columns makes: the C path must not index past a list's end
    mixed = state.database().create_table(Mixed)
    for r in MIXED:
        mixed.upsert(r)
    cols = mixed._st.columns
    arrays = cols.arrays
    cols.arrays = arrays[:3] + (tuple(v[:1] if v.__class__ is list else v for v in arrays[3]),) \
        + arrays[4:]
    try:
        with reading(mixed):
            calls.clear()
            e = tcl.error("FlightState", "get", "m4")    # the general path cannot read it either
            assert e.code.split()[:2] == ["AEROSTORE", "INTERNAL"]
            assert calls == ["m4"]
    finally:
        cols.arrays = arrays
    assert as_table(tcl, mixed, calls, ["m4"])[0][1] == "m4"


def test_a_row_of_many_fields(tcl, calls):
    # more fields than the C path's arrays on the stack hold
    fields = {"k": Key()}
    fields.update((f"f{i}", Int() if i % 3 else Float()) for i in range(200))
    wide = state.database().create_table(table(name="WideGet")(type("WideGet", (), fields)))
    row = ("w",) + tuple(float(i) / 4 if i % 3 == 0 else (None if i % 7 == 0 else -i)
                         for i in range(200))
    wide.upsert(row)
    assert as_table(tcl, wide, calls, ["w"]) == [["w"] + ["" if v is None else repr(v) if
                                                         isinstance(v, float) else str(v)
                                                         for v in row[1:]]]
