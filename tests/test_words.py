"""The shared words (aerostore/words.py): booleans, choices in messages,
values in messages; and that every caller uses them.  (Tcl's boolean rule is
checked against Tcl's own expr by tests/test_query_oracle.py, through
query.truth, which is words.parse_bool.)"""

from __future__ import annotations

import pytest

import aerostore
from aerostore.config import Config
from aerostore.errors import DecodeError, UsageError
from aerostore.query import truth
from aerostore.tsvcodec import codec
from aerostore.words import BOOL_WORDS, fmt_choices, parse_bool, show

WORDS = ["1", "0", "true", "false", "yes", "no", "on", "off"]


@aerostore.table
class Flags:
    name = aerostore.Key()
    flag = aerostore.Bool()


def test_file_format_words_any_case():
    assert list(BOOL_WORDS) == WORDS
    for w in WORDS:
        for v in (w, w.upper(), w.title(), w[:1] + w[1:].upper()):
            assert parse_bool(v, tcl=False) is BOOL_WORDS[w]


@pytest.mark.parametrize("text", ["", "t", "of", "2", "0x1", " yes", "yes ", "1.0", "none"])
def test_file_format_refuses_the_rest(text):
    assert parse_bool(text, tcl=False) is None


@pytest.mark.parametrize("text,value", [
    ("1", True), ("0", False), ("5", True), ("-1", True), ("0x0", False), ("true", True),
    ("FALSE", False), ("t", True), ("f", False), ("yes", True), ("n", False), ("on", True),
    ("off", False), ("of", False), (" 1 ", True), ("2.0", True), ("0.0", False), ("1e3", True),
    ("010", True), ("Inf", True), (1, True), (0, False), (True, True), (2.5, True)])
def test_tcl_rule(text, value):
    assert parse_bool(text) is value


@pytest.mark.parametrize("text", ["", "o", "maybe", "2.5x", "nope", "08", " on", "nan",
                                  float("nan"), None, b"1", [1]])
def test_tcl_rule_refuses(text):
    assert parse_bool(text) is None


def test_every_caller_reads_the_same_words():
    c = codec(Flags)
    for w in WORDS + [w.upper() for w in WORDS]:
        want = BOOL_WORDS[w.lower()]
        # the file format: TSV and a Bool field's text
        assert c.decode(f"k\t{w}\n") == [("k", want)]
        assert Flags.fields[1].coerce(w) is want
        # Tcl's rule: the settings and the true/false operators
        cfg = Config()
        cfg.set("aerostore.synchronous_commit", w)
        assert cfg.get("aerostore.synchronous_commit") is want
        assert truth(w) is want
    with pytest.raises(DecodeError, match=r"expected a boolean \(1 0 true false yes no on off\)"):
        c.decode("k\tt\n")
    with pytest.raises(UsageError, match="expected a boolean"):
        Flags.fields[1].coerce("t")
    assert Flags.fields[1].coerce(" yes ") is True     # a field's text may have spaces around
    cfg = Config()
    cfg.set("aerostore.synchronous_commit", "of")        # a prefix, as Tcl reads it
    assert cfg.get_text("aerostore.synchronous_commit") == "off"
    with pytest.raises(UsageError, match='bad value " on " for aerostore.synchronous_commit'):
        cfg.set("aerostore.synchronous_commit", " on ")


def test_fmt_choices_as_tcl():
    assert fmt_choices(["a"]) == "a"
    assert fmt_choices(("a", "b")) == "a or b"
    assert fmt_choices(["a", "b", "c"]) == "a, b, or c"
    assert fmt_choices({"x": 1, "y": 2}) == "x or y"


def test_two_fields_are_listed_as_tcl_does():
    with pytest.raises(UsageError) as ei:
        Flags.position("nope")
    assert str(ei.value) == 'bad field "nope": must be name or flag'


def test_show_shortens_and_escapes():
    assert show("plain") == "plain" and show(12) == "12"
    assert show("x" * 60) == "x" * 60
    assert show("x" * 61) == "x" * 57 + "..."
    assert show("a\tb\x00\ud800") == "a\\tb\\x00\\ud800"
