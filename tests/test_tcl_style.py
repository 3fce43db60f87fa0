"""Tcl's argument conventions in Python (aerostore.tclbridge.tclstyle).

Lists, integers and booleans are read by Tcl itself, through helpers the shim
installs when a Tcl interpreter loads it: the tests that need them load it.
"""

from __future__ import annotations

import pytest

from aerostore.errors import UsageError
from aerostore.tclbridge.tclstyle import choose, fmt_choices, option_value, to_bool, to_int

from test_tcl_support import Interp


@pytest.fixture(scope="module")
def rules(shim):
    """The shim loaded into this process, so tclstyle has Tcl's readers."""
    Interp()


def test_fmt_choices():
    assert fmt_choices(["a"]) == "a"
    assert fmt_choices(["a", "b"]) == "a or b"
    assert fmt_choices(["a", "b", "c"]) == "a, b, or c"


OPTS = ("-limit", "-list", "-offset")


@pytest.mark.parametrize("word,chosen", [("-limit", "-limit"), ("-o", "-offset"), ("-lim", "-limit")])
def test_choose_an_exact_word_or_a_unique_prefix(word, chosen):
    assert choose(word, OPTS, "option") == chosen


def test_choose_an_ambiguous_prefix():
    with pytest.raises(UsageError) as ei:
        choose("-li", OPTS, "option")
    assert str(ei.value) == 'ambiguous option "-li": must be -limit, -list, or -offset'
    assert ei.value.tcl_errorcode == ["AEROSTORE", "USAGE", "OPTION", "-li"]


def test_choose_a_bad_word():
    with pytest.raises(UsageError) as ei:
        choose("-x", OPTS, "option")
    assert str(ei.value) == 'bad option "-x": must be -limit, -list, or -offset'


def test_choose_the_empty_word():
    with pytest.raises(UsageError):
        choose("", OPTS, "option")


def test_choose_exact_refuses_a_prefix():
    with pytest.raises(UsageError):
        choose("-o", OPTS, "option", exact=True)


@pytest.mark.parametrize("text,value", [
    ("1", True), ("0", False), ("5", True), ("-1", True), ("0x0", False), ("true", True),
    ("FALSE", False), ("t", True), ("f", False), ("yes", True), ("n", False), ("on", True),
    ("off", False), (" 1 ", True), (1, True), (0, False), (True, True), ("2.0", True),
    ("0.0", False), ("1e3", True), ("010", True)])
def test_to_bool(rules, text, value):
    assert to_bool(text, "-x") is value


@pytest.mark.parametrize("text", ["", "o", "maybe", "2.5x", "nope", "08"])
def test_to_bool_rejects(rules, text):
    with pytest.raises(UsageError) as ei:
        to_bool(text, "-countOnly")
    assert ei.value.tcl_errorcode[:3] == ["AEROSTORE", "USAGE", "VALUE"]


@pytest.mark.parametrize("text,value", [
    ("10", 10), (" 7 ", 7), ("0x10", 16), ("0o17", 15), ("0b101", 5), ("-3", -3),
    ("010", 8), (12, 12), (True, 1), (2 ** 70, 2 ** 70)])
def test_to_int(rules, text, value):
    assert to_int(text, "-limit") == value


@pytest.mark.parametrize("text", ["", "x", "1.5", "1_000", "1e3", "2.0", "0x", "08",
                                  "123456789012345678901234567890"])
def test_to_int_rejects(rules, text):
    with pytest.raises(UsageError) as ei:
        to_int(text, "-limit")
    assert str(ei.value).startswith('expected integer but got "')


def test_to_int_minimum(rules):
    assert to_int("0", "-offset", 0) == 0
    with pytest.raises(UsageError) as ei:
        to_int("-1", "-offset", 0)
    assert str(ei.value) == 'bad -offset "-1": must be an integer >= 0'


def test_option_value_names_the_option():
    assert option_value(["-file", "x"], 0, "-file") == "x"
    with pytest.raises(UsageError) as ei:
        option_value(["-compare"], 0, "-compare")
    assert str(ei.value) == '"-compare" option requires an additional argument'
    assert ei.value.tcl_errorcode == ["AEROSTORE", "USAGE", "OPTION", "-compare"]
