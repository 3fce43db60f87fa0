"""Fuzz targets, run by every `make test` on a bounded budget: the TSV decoder
(aerostore/tsvcodec.py) and the `-compare` term parser (tclbridge/search.py, through
a real Tcl interpreter and the C shim), plus the Query builder it feeds.

What must hold for any input:

* TSV: ``decode`` returns rows or raises ``DecodeError`` (a line and a column
  inside the input); nothing else ever escapes.  Rows it returns are valid
  (types, ranges, the key), re-encode and decode to the same rows, and are
  what the reference decoder returns.  The same text as UTF-8 bytes, or
  decoded in small chunks, gives the same outcome (the same rows, or an error
  at the same line and column).
* ``-compare``: ``search -compare X -countOnly 1`` answers a count or raises a
  Tcl error whose errorCode is ``AEROSTORE USAGE ...``; never ``AEROSTORE
  INTERNAL``.  Where the parse succeeds, the count is the count of the same
  terms given to ``Query.where`` in Python.

Budget: about 10 s in all by default.  ``AEROSTORE_FUZZ_SCALE=N`` multiplies
every target's example count (a nightly or local long run: ``=20``).  Hypothesis
keeps failing examples in ``.hypothesis/`` and replays them first.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import aerostore
import aerostore.tsvcodec as tsvcodec
from aerostore import FlightState
from aerostore.errors import DecodeError, UsageError

SCALE = max(1, int(os.environ.get("AEROSTORE_FUZZ_SCALE", "1")))


def fuzz_settings(examples: int):
    return settings(max_examples=examples * SCALE, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


@aerostore.table
class Odd:
    """A schema with every kind and the awkward declarations: a non-nullable
    Str, a narrow Int range, a small UInt, a Bool."""
    k = aerostore.Key()
    flag = aerostore.Bool()
    note = aerostore.Str(nullable=False)
    small = aerostore.Int(lo=-5, hi=5)
    byte = aerostore.UInt(bits=8)
    x = aerostore.Float()


SCHEMAS = [FlightState, Odd]

# -- TSV ----------------------------------------------------------------------------------------

# characters that matter to the decoder: separators, line ends, signs, digits,
# exponent and decimal point, whitespace int()/float() would accept, non-ASCII
# digits and letters, a BOM, NUL, lone surrogates, a non-BMP character
NASTY = ("\t\r\n+-.eE0123456789 _\x0b\x0c\x1c\u00a0\u0661\uff10\ufeff\x00aAéZ"
         "\ud800\udfff\U0001d11e")
number_words = st.sampled_from([
    "0", "-0", "+0", "-0.0", "007", "1e3", "1E-3", ".5", "5.", "-.5e+2", "nan", "NaN", "inf",
    "-Infinity", "1e999", "-1e-400", "1_000", " 1", "1 ", "0x10", "1e", "e1", ".", "-", "+",
    "2147483647", "2147483648", "-2147483648", "-2147483649", "65535", "65536", "255", "256",
    "18446744073709551615", "18446744073709551616", "9" * 30, "5", "-5", "6", "-6",
    "true", "FALSE", "Yes", "no", "oN", "off", "maybe", "1.0",
])
cells = st.one_of(number_words, st.text(NASTY, max_size=6),
                  st.text(st.characters(blacklist_characters="\t\r\n"), max_size=8))


def valid_cell(f):
    """Text a field accepts, in the spellings TSV allows (signs, leading zeros,
    exponents, any letter case), or the empty (null) cell."""
    if f.kind == "int":
        ints = st.integers(f.lo, f.hi)
        text = st.one_of(ints.map(str), ints.filter(lambda v: v >= 0).map(lambda v: "+0" + str(v)))
    elif f.kind == "float":
        fin = st.floats(allow_nan=False, allow_infinity=False)
        text = st.one_of(fin.map(repr), fin.map(lambda v: f"{v:e}"), st.integers(-999, 999).map(str),
                         st.sampled_from([".5", "5.", "-0.0", "+1E-3", "0e0"]))
    elif f.kind == "bool":
        text = st.sampled_from(["1", "0", "true", "FALSE", "Yes", "no", "oN", "Off"])
    else:
        text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\r\n"),
                       min_size=1, max_size=8)
    return text | st.just("") if f.nullable else text


@st.composite
def tsv_texts(draw, schema=None):
    """Line-shaped input, each cell valid for its field most of the time and
    otherwise nasty, sometimes a column short or long; sometimes raw text; any
    mix of line endings and an optional BOM."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(NASTY, max_size=80))
    schema = schema or draw(st.sampled_from(SCHEMAS))
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        row = [draw(cells) if draw(st.integers(0, 59)) == 0 else draw(valid_cell(f))
               for f in schema.fields]
        shape = draw(st.integers(0, 39))
        if shape == 0:
            row = row[:-1]
        elif shape == 1:
            row.append(draw(cells))
        lines.append("\t".join(row) + draw(st.sampled_from(["\n"] * 12 + ["\r\n"] * 6 + ["\r", ""])))
    bom = draw(st.sampled_from(["", "", "", "\ufeff", "\ufeff\ufeff"]))
    return bom + "".join(lines)


def outcome(c, data):
    """``("rows", rows)`` or ``("error", line, column)``; anything but a DecodeError propagates."""
    try:
        return ("rows", c.decode(data))
    except DecodeError as e:
        return ("error", e.line, e.column)


@contextmanager
def small_chunks(n):
    old = tsvcodec._CHUNK_CHARS
    tsvcodec._CHUNK_CHARS = n
    try:
        yield
    finally:
        tsvcodec._CHUNK_CHARS = old


def assert_inside(schema, data, got):
    """An error's line exists in ``data`` and its column is one of that line's
    cells, or the first missing one."""
    _, line, column = got
    nl, tab = (b"\n", b"\t") if isinstance(data, bytes) else ("\n", "\t")
    lines = data.split(nl)
    assert 1 <= line <= len(lines)
    assert 1 <= column <= max(lines[line - 1].count(tab) + 1, schema.width + 1)


def check_rows(schema, rows):
    for r in rows:
        assert type(r) is tuple and len(r) == schema.width
        for f, v in zip(schema.fields, r):
            if v is None:
                assert f.nullable and not f.is_key
            elif f.kind == "int":
                assert type(v) is int and f.lo <= v <= f.hi
            elif f.kind == "float":
                assert type(v) is float and v == v and v not in (float("inf"), float("-inf"))
            elif f.kind == "bool":
                assert type(v) is bool
            else:
                assert type(v) is str and v and "\t" not in v and "\r" not in v and "\n" not in v
                v.encode("utf-8")                      # no lone surrogate


@fuzz_settings(600)
@given(st.sampled_from(SCHEMAS).flatmap(lambda sc: st.tuples(st.just(sc), tsv_texts(sc))))
def test_decode_returns_valid_rows_or_a_decode_error(case):
    schema, text = case
    c = tsvcodec.codec(schema)
    got = outcome(c, text)
    event(f"{got[0]} {len(got[1]) if got[0] == 'rows' else ''}")
    if got[0] == "error":
        assert_inside(schema, text, got)
    else:
        rows = got[1]
        check_rows(schema, rows)
        assert c.decode(c.encode(rows)) == rows                    # round trip
        assert c.decode(c.encode(rows).replace("\n", "\r\n").encode()) == rows
        body = text[1:] if text.startswith("\ufeff") else text
        assert c._slow(body, 1) == rows                            # the reference decoder agrees
    # the same input as UTF-8 bytes (lone surrogates become invalid UTF-8 at the same place)
    assert outcome(c, text.encode("utf-8", "surrogatepass")) == got
    with small_chunks(7):
        assert outcome(c, text) == got


@fuzz_settings(300)
@given(st.sampled_from(SCHEMAS), st.binary(max_size=60) | tsv_texts().map(
    lambda t: t.encode("utf-8", "surrogatepass")))
def test_decode_of_bytes_never_crashes(schema, data):
    c = tsvcodec.codec(schema)
    got = outcome(c, data)
    if got[0] == "rows":
        check_rows(schema, got[1])
    else:
        assert_inside(schema, data, got)


def test_decode_refuses_what_is_not_text():
    for data in (None, 17, ["a\t1"], object()):
        with pytest.raises(UsageError, match="must be str or bytes"):
            tsvcodec.codec(FlightState).decode(data)


# -- Query.where, the -compare parser's target ---------------------------------------------------

OPS = ["=", "==", "!=", "<>", "<", "<=", ">", ">=", "range", "in", "match", "notmatch",
       "match_case", "notmatch_case", "null", "notnull", "true", "false", "eq", "like", ""]
FIELDS = ["flight_id", "ident", "lat", "lon", "altitude", "alt", "gs", "updated_at", "ts",
          "nope", ""]
py_values = st.one_of(
    number_words, cells, st.integers(-(2 ** 70), 2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.none(), st.booleans(),
    st.binary(max_size=4), st.lists(st.one_of(number_words, st.integers(-9, 9)), max_size=3),
    st.tuples(number_words), st.text(NASTY, max_size=5))
good_values = st.one_of(st.integers(-100, 70000), st.integers(-100, 70000).map(str),
                        st.floats(-200, 200), st.sampled_from(["UAL1", "NUL5", "ASA7", "1e3", "U*",
                                                               "*[0-9]", "?SA?", "a\\*"]))


@st.composite
def where_terms(draw):
    """``(op, field, values)``: mostly the operator's arity and plausible values."""
    from aerostore.query import OPERATORS
    op = draw(st.sampled_from(OPS[:-3]) if draw(st.integers(0, 5)) else st.sampled_from(OPS))
    field = draw(st.sampled_from(FIELDS[:-2]) if draw(st.integers(0, 5)) else st.sampled_from(FIELDS))
    if draw(st.integers(0, 4)) == 0:
        return op, field, draw(st.lists(py_values, max_size=4))
    n = OPERATORS.get(op, ("", 1))[1]
    if op == "in":
        return op, field, draw(st.sampled_from([
            [draw(st.lists(good_values, max_size=4))], draw(st.lists(good_values, min_size=2, max_size=4))]))
    return op, field, draw(st.lists(good_values, min_size=n, max_size=n))


@pytest.fixture(scope="module")
def store():
    db = aerostore.open(":memory:")
    t = db.create_table(FlightState)
    t.upsert_many([("UAL1", 40.5, -73.5, 35000, 450, 1700000000), ("NUL5", None, None, None, None, None),
                   ("ASA7", 47.4, -122.3, -50, 0, 0), ("1e3", 0.0, 0.0, 0, 65535, 2 ** 64 - 1)])
    yield t
    db.close()


@fuzz_settings(1000)
@given(st.lists(where_terms(), max_size=4))
def test_query_where_answers_or_refuses_with_usage_error(store, terms):
    q = store.query()
    try:
        for op, field, values in terms:
            q.where(op, field, *values)
    except UsageError:
        event("refused")
        return
    event("answered")
    n = q.count()
    assert n == len(q.rows()) and 0 <= n <= 4


# -- -compare through Tcl ------------------------------------------------------------------------

# tkinter (CPython 3.11) crashes on a tuple holding a lone surrogate, so none
# goes through it: the marker SURR becomes U+D800 on the Tcl side instead.
SURR = "@S@"
TCL_NASTY = NASTY.replace("\x00", "").replace("\ud800", "").replace("\udfff", "")
tcl_words = st.one_of(st.sampled_from(OPS), st.sampled_from(FIELDS), number_words.filter(str.isascii),
                      st.text(TCL_NASTY + "@", max_size=5),
                      st.sampled_from(["{", "}", '"', "\\", "{}", "{{}", "[exit]", "$x", ";",
                                       SURR, "a" + SURR, SURR + "*"]))


@st.composite
def compare_args(draw):
    """A ``-compare`` value: usually a list of well-formed-looking terms (built
    with Tcl's ``list``), sometimes raw text that may not even be a list."""
    if draw(st.integers(0, 4)) == 0:
        return ("raw", draw(st.text(TCL_NASTY + "{}\"\\[]$ ", max_size=40)))
    terms = []
    for _ in range(draw(st.integers(0, 3))):
        op, field, values = draw(where_terms())
        if draw(st.integers(0, 3)) == 0:
            values = draw(st.lists(tcl_words, max_size=3))
        else:
            values = [list(map(_tcl_word, v)) if isinstance(v, (list, tuple)) else _tcl_word(v)
                      for v in values]
        terms.append([op, field] + values)
    return ("terms", terms)


def _tcl_word(v) -> str:
    """A Python value as the Tcl word a script would write for it (ASCII-safe
    for tkinter: no lone surrogates, no NUL)."""
    if isinstance(v, bytes):
        v = v.decode("latin-1")
    s = repr(v) if isinstance(v, float) else "" if v is None else str(v)
    return "".join(ch for ch in s if ch != "\x00" and not 0xD800 <= ord(ch) <= 0xDFFF)


@pytest.fixture(scope="module")
def interp(module_tcl):
    from test_tcl_support import ROWS, tsv_of
    module_tcl.call("FlightState", "ingest_tsv", tsv_of(ROWS))
    return module_tcl


_SEARCH = r"""
    set v $::_fz
    if {[string first @S@ $v] >= 0} { set v [string map [list @S@ [format %c 0xD800]] $v] }
    set c [catch {FlightState search -compare $v -countOnly 1} r o]
    if {$c == 0} { list ok $r } elseif {[string match {AEROSTORE USAGE*} [dict get $o -errorcode]]} {
        list usage
    } else {
        list bad [encoding convertto utf-8 "[dict get $o -errorcode]\n[dict get $o -errorinfo]"]
    }
"""


@fuzz_settings(800)
@given(compare_args())
def test_compare_parser_answers_or_refuses_with_usage_error(interp, arg):
    from aerostore.tclbridge import state
    kind, value = arg
    if kind == "terms":
        tcl_value = interp.tk.call("list", *[interp.tk.call("list", *[
            interp.tk.call("list", *w) if isinstance(w, list) else w for w in term]) for term in value])
    else:
        tcl_value = value
    interp.tk.call("set", "::_fz", tcl_value)          # never a lone surrogate through tkinter
    res = interp.tk.splitlist(interp.eval(_SEARCH))
    event(f"{kind} {res[0]}")
    # Either outcome can be right: the input is arbitrary, and whether it is a
    # valid -compare list depends on it.  The invariant is that nothing else
    # happens (no internal error, no crash); below, the Python Query builder
    # must give the same count where both answer.
    assert res[0] in ("ok", "usage"), (arg, res[1] if len(res) > 1 else res)
    got = int(res[1]) if res[0] == "ok" else None
    if kind != "terms" or SURR in str(tcl_value):
        return
    # the same terms through the Python Query builder: the same answer, or also refused
    q = state.flights().query()
    try:
        for op, field, *values in value:
            if op == "in" and len(values) == 1:
                v = values[0]
                values = [tuple(v) if isinstance(v, list) else tuple(interp.tk.splitlist(v))]
            q.where(op, field, *values)
        want = q.count()
    except UsageError:
        want = None
    except Exception as e:                       # an "in" list that Tcl cannot split
        if type(e).__name__ != "TclError":
            raise
        want = None
    if want is not None and got is not None:
        assert got == want, (value, got, want)
