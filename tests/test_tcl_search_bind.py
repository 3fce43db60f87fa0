"""FlightState search tells Python its binding by the option's full name
(c_shim/search.c: the numbers stay in C), whatever prefix the script used;
and binds an ordered walk's page read from the columns in C as it binds row
tuples, at the search's snapshot."""

import contextlib
import random

import pytest

from aerostore import planner
from aerostore.tclbridge import search as search_mod
from aerostore.tclbridge import session, state
from test_tcl_get import mixed_table, reading
from test_tcl_support import ROWS, tsv_of


@pytest.fixture
def seen(tcl, monkeypatch):
    """The ``bind`` of each Search the shim starts."""
    got = []

    class Recording(session.Search):
        def __init__(self, sess, compare, sort, fields, desc, limit, offset, bind, *rest):
            got.append(bind)
            super().__init__(sess, compare, sort, fields, desc, limit, offset, bind, *rest)

    monkeypatch.setattr(session, "Search", Recording)
    tcl.call("FlightState", "ingest_tsv", tsv_of(ROWS))
    return got


@pytest.mark.parametrize("words,bind", [
    (["-get", "::v"], "-get"),
    (["-ge", "::v"], "-get"),
    (["-array_get", "::v"], "-array_get"),
    (["-array_get_w", "::v"], "-array_get_with_nulls"),
    (["-array", "::v"], "-array"),
    (["-get", "::v", "-get", "::w"], "-get"),
    (["-key", "::k"], None),
    ([], None),
])
def test_search_passes_the_binding_by_name(tcl, seen, words, bind):
    tcl.call("FlightState", "search", "-limit", "1", *words)
    assert seen == [bind]


def test_repeated_fields_bind_the_same_and_a_bad_field_errs_each_time(tcl):
    """search.py keeps each -fields text's binding; what it binds must not change."""
    tcl.call("FlightState", "ingest_tsv", tsv_of(ROWS))
    for _ in range(2):
        assert tcl.eval("FlightState search -compare {{= flight_id UAL1}} -fields {gs alt} "
                        "-get v -code {set ::g $v}; set ::g") == "450 35000"
        assert tcl.eval("FlightState search -compare {{= flight_id UAL1}} -fields {alt} "
                        "-array_get v -code {set ::g $v}; set ::g") == "altitude 35000"
        assert tcl.eval("FlightState search -compare {{= flight_id UAL1}} "
                        "-get v -code {set ::g $v}; set ::g") == "UAL1 40.5 -73.5 35000 450 1700000000"
        e = tcl.error("FlightState", "search", "-fields", "gs nosuch", "-get", "v")
        assert e.code.split()[:4] == ["AEROSTORE", "USAGE", "FIELD", "nosuch"]


# -- a walk's page: settled rows read from the columns in C ---------------------------
#
# An ordered walk (planner.Walk.page) hands the shim its settled rows as slots,
# which c_shim/search.c reads from the columns (rowget.c's readers) instead of
# converting Python tuples.  Each test compares that path with the tuple path
# (the same search with Walk.page answering rows()), and checks which path ran.

BINDINGS = (["-get", "v"], ["-array_get", "v"], ["-array_get_with_nulls", "v"], ["-array", "v"],
            ["-key", "k"])


@contextlib.contextmanager
def tuple_path(paged):
    """Walk.page answers rows() meanwhile: the tuple path."""
    paged.off_now = True
    try:
        yield
    finally:
        paged.off_now = False


class _Pages(list):
    off_now = False


@pytest.fixture
def paged(monkeypatch):
    """pages with a switch: the list of slots per page, ``with tuple_path(paged)``."""
    got = _Pages()
    real = planner.Walk.page

    def page(self, s, skip):
        if got.off_now:
            return self.rows(s, skip), None
        items, check = real(self, s, skip)
        got.append(None if check is None else sum(x.__class__ is int for x in items))
        return items, check

    monkeypatch.setattr(planner.Walk, "page", page)
    return got


def bound(t, words, query="-sort lat -limit 12"):
    """What a search binds, row after row (each binding as its Tcl text)."""
    var = words[1]
    body = f"lappend ::got [array get {var}]" if words[0] == "-array" else f"lappend ::got ${var}"
    if words[0] == "-array":
        body = f"lappend ::got [lsort -stride 2 [array get {var}]]; array unset {var}"
    t.eval(f"set ::got {{}}; unset -nocomplain {var}")
    n = t.eval(f"FlightState search {query} {' '.join(words)} -code {{{body}}}")
    return int(n), [str(x) for x in t.tk.splitlist(t.eval("set ::got"))]


def flight_rows(n=300, seed=5):
    rnd = random.Random(seed)
    return [(f"F{i:04d}", None if i % 11 == 0 else round(rnd.uniform(-90, 90), 4),
             None if i % 7 == 0 else rnd.uniform(-180, 180),
             None if i % 5 == 0 else rnd.randrange(-1000, 45000),
             None if i % 3 == 0 else rnd.randrange(700), (1 << 64) - 1 - i)
            for i in range(n)]


@pytest.mark.parametrize("words", BINDINGS, ids=lambda w: w[0])
def test_a_walks_page_binds_what_the_tuple_path_binds(tcl, paged, words):
    tcl.call("FlightState", "ingest_tsv", tsv_of(flight_rows()))
    for query in ("-sort lat -limit 12", "-sort updated_at -desc -limit 9 -offset 4",
                  "-compare {{> gs 100}} -sort lon -limit 20"):
        paged.clear()
        got = bound(tcl, words, query)
        assert paged and paged[0] > 0, query           # the page held slots
        with tuple_path(paged):
            assert bound(tcl, words, query) == got, query


Mixed = mixed_table("MixedSearch", ("ratio",))


MIXED = [
    (0.1, "m1", True, "hello", -5, (1 << 64) - 1, -128),
    (0.2, "m2", False, None, (1 << 64) - 1, 1 << 63, 127),
    (0.3, "m3", None, "\u00fcn\u00efc\u00f6d\u00e9 \u2708\U0001F600", 0, None, None),
    (0.4, "m4", False, "sp ace {br", 1 << 63, 0, 0),
]



def test_every_kind_of_column_binds_as_from_a_tuple(tcl, paged):
    mixed = state.database().create_table(Mixed)
    mixed.upsert_many([(r[0] + i, f"{r[1]}-{i}") + r[2:] for i in range(50) for r in MIXED])
    with reading(mixed):
        for words in BINDINGS:
            paged.clear()
            got = bound(tcl, words, "-sort ratio -limit 8")
            assert paged and paged[0] == 8, words
            with tuple_path(paged):
                assert bound(tcl, words, "-sort ratio -limit 8") == got, words
        got = bound(tcl, ["-get", "v"], "-sort ratio -limit 4")[1]
    assert [tcl.tk.splitlist(v) for v in got] == [
        ("0.1", "m1-0", "1", "hello", "-5", str((1 << 64) - 1), "-128"),
        ("0.2", "m2-0", "0", "", str((1 << 64) - 1), str(1 << 63), "127"),
        ("0.3", "m3-0", "", MIXED[2][3], "0", "", ""),
        ("0.4", "m4-0", "0", "sp ace {br", str(1 << 63), "0", "0")]


def test_chained_rows_bind_the_searchs_snapshot(tcl, paged):
    rows = flight_rows()
    tcl.call("FlightState", "ingest_tsv", tsv_of(rows))
    first = bound(tcl, ["-get", "v"])[1]
    k0, k1 = (tcl.tk.splitlist(v)[0] for v in first[:2])
    db = state.database()
    reader = db.begin()                        # its snapshot keeps chains
    try:
        reader.table("FlightState").get(k0)
        tcl.call("FlightState", "set", k0, "gs", "1")
        paged.clear()
        got = bound(tcl, ["-get", "v"])[1]
        assert tcl.tk.splitlist(got[0])[4] == "1"       # the latest, read through its chain
        assert paged[0] == 11                           # the chained row is a tuple
        # inside aerostore::transaction: the transaction's snapshot, before a
        # commit made meanwhile by another writer
        tcl.tk.createcommand("other_writer",
                             lambda: state.flights().set(k1, {"gs": 2}) and None)
        inside = tcl.eval("aerostore::transaction {set ::got {}; "
                          "FlightState search -sort lat -limit 12 -get v -code {lappend ::got $v}; "
                          "other_writer; "
                          "FlightState search -sort lat -limit 12 -get v -code {lappend ::got $v}; "
                          "set ::got}")
        inside = [str(x) for x in tcl.tk.splitlist(inside)]
        assert inside[:12] == inside[12:] == got
        assert tcl.tk.splitlist(bound(tcl, ["-get", "v"])[1][1])[4] == "2"
    finally:
        reader.rollback()


@pytest.fixture
def staged(monkeypatch):
    """``staged.action``, if set, runs after the search's page is made and
    before the shim reads it (at the end of Search.run); ``staged.redos``
    counts Search._redo calls and ``staged.row_at`` the slots read by
    TableStore.row_at."""
    class Staged:
        action = None
        redos = 0
        row_at = []
    st = Staged()
    real_plan = search_mod.Search._plan
    real_redo = search_mod.Search._redo

    def plan(self, *a, **kw):
        if st.action is not None:
            action, st.action = st.action, None
            action()
        return real_plan(self, *a, **kw)

    def redo(self):
        st.redos += 1
        return real_redo(self)

    monkeypatch.setattr(search_mod.Search, "_plan", plan)
    monkeypatch.setattr(search_mod.Search, "_redo", redo)
    real_row_at = type(state.flights()._st).row_at

    def row_at(self, slot, s):
        st.row_at.append(slot)
        return real_row_at(self, slot, s)

    monkeypatch.setattr(type(state.flights()._st), "row_at", row_at)
    return st


def test_a_row_thawed_before_the_shim_reads_it_is_the_snapshots(tcl, paged, staged):
    tcl.call("FlightState", "ingest_tsv", tsv_of(flight_rows()))
    before = bound(tcl, ["-get", "v"])
    k0 = tcl.tk.splitlist(before[1][0])[0]
    store = state.flights()._st
    db = state.database()
    reader = db.begin()                        # no freeze: the slot stays a chain
    try:
        reader.table("FlightState").get(k0)
        f = store.fseq

        def thaw():
            state.flights().set(k0, {"gs": 3, "lat": 89.0})
            assert store.fseq == f and store.rows[store.slots[k0]].__class__ is not str
            staged.row_at.clear()
        staged.action = thaw
        assert bound(tcl, ["-get", "v"]) == before      # the search's snapshot: the old row
        assert staged.row_at == [store.slots[k0]] and staged.redos == 0
    finally:
        reader.rollback()


@pytest.mark.parametrize("how", ["freeze", "running"])
def test_a_freeze_before_the_shim_reads_the_page_runs_the_search_again(tcl, paged, staged, how):
    tcl.call("FlightState", "ingest_tsv", tsv_of(flight_rows()))
    before = bound(tcl, ["-get", "v"])
    k0 = tcl.tk.splitlist(before[1][0])[0]
    store = state.flights()._st
    f = store.fseq

    def freeze():
        # the first row moves out of the page and is frozen at once (no snapshot
        # held): its slot's columns now hold a row the walk never tested
        state.flights().set(k0, {"lat": 89.0})
        assert store.fseq != f and store.rows[store.slots[k0]].__class__ is str

    def running():
        store.fseq += 1          # a freezing writer section is running

    staged.action = freeze if how == "freeze" else running
    try:
        got = bound(tcl, ["-get", "v"])
    finally:
        if how == "running":
            store.fseq -= 1
    assert staged.redos == 1
    with tuple_path(paged):
        assert got == bound(tcl, ["-get", "v"])
    if how == "freeze":
        assert k0 not in [tcl.tk.splitlist(v)[0] for v in got[1]]
    else:
        assert got == before


@pytest.mark.parametrize("body", [
    "",                         # nothing kept: the last row's dict is put into
    "lappend ::kept $v",        # each row's dict kept: it must never change after
    "dict set v extra 1",       # a key added: the next row has no such key
    "dict unset v gs",          # a key gone: the next row has it (if not null)
    "dict set v gs x",          # a value changed
    "set v [dict create gs 1 flight_id 2]",
])
def test_array_get_binds_a_fresh_dict_whatever_the_body_did_to_the_last(tcl, paged, body):
    """The shim may put a row's values into the dict it bound for the last row
    (search.c, reusable_dict); what the body sees must be as if each row's
    dict were new.  (What the body sees is read by ``dict keys`` and ``dict
    values``, which neither keep the dict nor change its type; the body ends
    with ``list``, so that its result does not hold the dict either.)"""
    tcl.call("FlightState", "ingest_tsv", tsv_of(flight_rows()))
    split = tcl.tk.splitlist
    for opt in ("-array_get", "-array_get_with_nulls"):
        want = bound(tcl, [opt, "v"])[1]
        tcl.eval("set ::kept {}; set ::seen {}")
        tcl.eval(f"FlightState search -sort lat -limit 12 {opt} v "
                 f"-code {{lappend ::seen [list [dict keys $v] [dict values $v]]; {body}; list}}")
        seen = [tuple(str(x) for x in split(k)) + tuple(str(x) for x in split(vs))
                for k, vs in (split(r) for r in split(tcl.eval("set ::seen")))]
        assert seen == [tuple(str(x) for x in split(w)[0::2]) + tuple(str(x) for x in split(w)[1::2])
                        for w in want], body
        if body.startswith("lappend"):
            assert [str(x) for x in tcl.tk.splitlist(tcl.eval("set ::kept"))] == want


def test_a_freeze_running_through_the_walk_makes_the_rows_there(tcl, paged, staged):
    """A background prune inside its freeze section (odd fseq) while the walk
    runs: Walk.page makes the rows while the snapshot is registered rather than
    leave slots the shim would refuse (a second search)."""
    tcl.call("FlightState", "ingest_tsv", tsv_of(flight_rows()))
    before = bound(tcl, ["-get", "v"])
    store = state.flights()._st
    store.fseq += 1
    try:
        paged.clear()
        assert bound(tcl, ["-get", "v"]) == before
    finally:
        store.fseq -= 1
    assert paged == [None] and staged.redos == 0
