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
