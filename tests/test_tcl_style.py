"""Tcl's argument conventions, read by Tcl itself in the shim (c_shim/options.c):
option words with unique prefixes and Tcl's messages, integers by
Tcl_GetWideIntFromObj, booleans by Tcl_GetBooleanFromObj, on the caller's own
Tcl values."""

from __future__ import annotations

import pytest

ROWS = 20


@pytest.fixture(scope="module")
def t(module_tcl):
    """An interpreter on a store of ROWS rows."""
    for i in range(ROWS):
        module_tcl.call("FlightState", "set", f"K{i:02d}", "alt", str(i))
    return module_tcl


def visits(t, *options) -> int:
    """How many rows a search's -code runs for, with these options."""
    t.eval("set ::n 0")
    t.call("FlightState", "search", *options, "-key", "::k", "-code", "incr ::n")
    return int(t.eval("set ::n"))


SEARCH_OPTIONS = ("-array, -array_get, -array_get_with_nulls, -asc, -code, -compare, -countOnly, "
                  "-delete, -desc, -fields, -get, -key, -limit, -offset, or -sort")


def test_options_take_unique_prefixes(t):
    assert visits(t, "-lim", "3") == 3
    assert visits(t, "-l", "4", "-o", "18") == 2
    assert t.call("FlightState", "search", "-countO", "1") == str(ROWS)


@pytest.mark.parametrize("word,kind", [("-c", "ambiguous"), ("-a", "ambiguous"), ("", "ambiguous"),
                                       ("-x", "bad"), ("limit", "bad")])
def test_bad_and_ambiguous_options(t, word, kind):
    e = t.error("FlightState", "search", word, "1")
    assert e.message == f'{kind} option "{word}": must be {SEARCH_OPTIONS}'
    assert e.code == f"AEROSTORE USAGE OPTION {{{word}}}" if not word else \
        e.code == f"AEROSTORE USAGE OPTION {word}"


def test_two_options_are_listed_as_tcl_does(t):
    e = t.error("FlightState", "write_tsv", "-x", "1")
    assert e.message == 'bad option "-x": must be -compare or -file'
    assert e.code == "AEROSTORE USAGE OPTION -x"


def test_operators_are_exact(t):
    e = t.error("FlightState", "search", "-compare", "{matc flight_id x}")
    assert e.message.startswith('bad operator "matc": must be =, ==, !=, <>, <, <=, >, >=, range, in, ')
    assert e.code == "AEROSTORE USAGE OPERATOR matc"


@pytest.mark.parametrize("value,counts", [
    ("1", True), ("0", False), ("5", True), ("-1", True), ("0x0", False), ("true", True),
    ("FALSE", False), ("t", True), ("f", False), ("yes", True), ("n", False), ("on", True),
    ("off", False), ("of", False), (" 1 ", True), ("2.0", True), ("0.0", False), ("1e3", True),
    ("010", True), ("[expr {2.0}]", True), ("[expr {0}]", False), ("[expr {3 > 2}]", True)])
def test_booleans_as_tcl_reads_them(t, value, counts):
    t.eval("set ::n 0")
    t.eval(f"FlightState search -countOnly {value} -key ::k -code {{incr ::n}}")
    assert int(t.eval("set ::n")) == (0 if counts else ROWS)


@pytest.mark.parametrize("value", ["", "o", "maybe", "2.5x", "nope", "08", " on"])
def test_booleans_refused(t, value):
    e = t.error("FlightState", "search", "-countOnly", value)
    assert e.message == f'expected boolean value but got "{value}" for -countOnly'
    assert e.code == "AEROSTORE USAGE VALUE -countOnly"


@pytest.mark.parametrize("value,n", [
    ("10", 10), (" 7 ", 7), ("0x10", 16), ("0o17", 15), ("0b101", 5), ("010", 8), ("0", ROWS),
    ("[expr {12}]", 12), ("[expr {3 * 1}]", 3)])
def test_integers_as_tcl_reads_them(t, value, n):
    t.eval("set ::n 0")
    t.eval(f"FlightState search -limit {value} -key ::k -code {{incr ::n}}")
    assert int(t.eval("set ::n")) == n


@pytest.mark.parametrize("value", ["", "x", "1.5", "1_000", "1e3", "2.0", "0x", "08",
                                   "123456789012345678901234567890"])
def test_integers_refused(t, value):
    e = t.error("FlightState", "search", "-limit", value)
    assert e.message == f'expected integer but got "{value}" for -limit'
    assert e.code == "AEROSTORE USAGE VALUE -limit"


def test_integer_bounds(t):
    assert visits(t, "-offset", "0") == ROWS
    e = t.error("FlightState", "search", "-offset", "-1")
    assert e.message == 'bad -offset "-1": must be an integer >= 0'
    assert e.code == "AEROSTORE USAGE VALUE -offset"
    e = t.error("FlightState", "search", "-limit", "-0x2")
    assert e.message == 'bad -limit "-2": must be an integer >= 0 (0 = no limit)'


def test_a_long_value_is_shortened_in_the_message(t):
    e = t.error("FlightState", "search", "-limit", "y" * 70)
    assert e.message == f'expected integer but got "{"y" * 57}..." for -limit'
    assert t.error("FlightState", "search", "-limit", "y" * 60).message == \
        f'expected integer but got "{"y" * 60}" for -limit'


@pytest.mark.parametrize("words,option", [
    (("write_tsv", "-compare"), "-compare"), (("search", "-limit"), "-limit"),
    (("search", "-asc", "-key"), "-key"), (("watch", "-key"), "-key"),
    (("watch", "-compare", "{}", "-k"), "-key"), (("ingest_file", "/nonexistent", "-prog"), "-progress")])
def test_an_option_without_its_value(t, words, option):
    e = t.error("FlightState", *words)
    assert e.message == f'"{option}" option requires an additional argument'
    assert e.code == f"AEROSTORE USAGE OPTION {option}"


def test_later_options_override_earlier_ones(t):
    assert visits(t, "-limit", "2", "-limit", "5") == 5
    assert t.list("FlightState", "search", "-sort", "alt", "-desc", "-asc", "-limit", "1",
                  "-get", "::g") == ["1"]
    assert t.eval("lindex $::g 0") == "K00"
    assert t.call("FlightState", "write_tsv", "-compare", "{= alt 1}", "-compare", "{= alt 2}") \
        .startswith("K02\t")


def test_one_binding_option(t):
    e = t.error("FlightState", "search", "-get", "a", "-array", "b")
    assert e.message == "only one of -get, -array_get, -array_get_with_nulls and -array may be given"
    assert e.code == "AEROSTORE USAGE OPTION -array"
    assert visits(t, "-get", "a", "-get", "b") == ROWS
