"""FlightState search tells Python its binding by the option's full name
(c_shim/search.c: the numbers stay in C), whatever prefix the script used."""

import pytest

from aerostore.tclbridge import session
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
