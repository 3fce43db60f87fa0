"""The Python API's edges found by probing it as a new user would (issue 10):
lone surrogates, non-str text, field declarations, `in` terms, sort keys,
dict rows in upsert_many, and the messages that must match the docs."""

import os

import pytest

import aerostore
from aerostore import FlightState
from aerostore.errors import UsageError
from aerostore.schema import INT_MAX, INT_MIN, as_text, show, surrogate_at


@aerostore.table
class Note:
    k = aerostore.Key()
    body = aerostore.Str()
    n = aerostore.Int(bits=16)


@pytest.fixture
def notes(mem_db):
    return mem_db.create_table(Note)


# -- lone surrogates: one rule, every entry point -------------------------------------------------

def test_surrogate_at():
    assert surrogate_at("") == -1 and surrogate_at("plain") == -1
    assert surrogate_at("Zürich ✈ 𝄞") == -1
    assert surrogate_at("bad\ud800") == 3 and surrogate_at("\udfff") == 0
    assert surrogate_at("é\udc80x\ud800") == 1


@pytest.mark.parametrize("call", [
    lambda t: t.set("bad\ud800", {"body": "x"}),                 # a key
    lambda t: t.upsert(("bad\ud800", "x", 1)),
    lambda t: t.upsert({"k": "ok", "body": "b\udc80d"}),          # a Str value
    lambda t: t.set("ok", {"body": "\ud83d"}),
    lambda t: t.upsert_many([("ok", "x", 1), ("ok2", "\ud800", 2)]),
    lambda t: t.query().eq("body", "bad\ud800"),                  # query values and patterns
    lambda t: t.query().in_values("k", ["a", "bad\ud800"]),
    lambda t: t.query().match("body", "*\ud800*"),
    lambda t: t.query().notmatch_case("k", "\udfff"),
])
def test_lone_surrogates_are_refused_everywhere(notes, call):
    with pytest.raises(UsageError, match=r"invalid Unicode \(lone surrogate\)") as ei:
        call(notes)
    assert ei.value.code[:3] == ("AEROSTORE", "USAGE", "VALUE")
    str(ei.value).encode("utf-8")               # the message itself is printable, escaped
    assert notes.count() == 0


def test_surrogates_through_flightstate_and_tsv(flights, mem_db):
    with pytest.raises(UsageError, match=r'bad value "bad\\ud800" for field "flight_id"'):
        flights.set("bad\ud800", {"alt": 1})
    with pytest.raises(aerostore.DecodeError, match="lone surrogate"):
        mem_db.ingest_tsv("FlightState", "bad\ud800\t1\t2\t3\t4\t5\n")
    flights.set("Zürich\U0001d11e", {"alt": 1})                 # real non-BMP text is fine
    assert mem_db.export_tsv("FlightState") == "Zürich\U0001d11e\t\t\t1\t\t\n"


# -- Str fields take text, not anything ------------------------------------------------------------

@pytest.mark.parametrize("value,kind", [
    (b"xy", "bytes"), (bytearray(b"xy"), "bytearray"), ([1, 2], "list"), ((1,), "tuple"),
    ({"a": 1}, "dict"), (True, "bool"), (float("nan"), "float"), (float("inf"), "float"),
    (object(), "object"),
])
def test_str_fields_refuse_non_text(notes, value, kind):
    with pytest.raises(UsageError) as ei:
        notes.set("K", {"body": value})
    assert str(ei.value) == f'bad value of type {kind} for field "body": expected a string'
    assert ei.value.code == ("AEROSTORE", "USAGE", "VALUE", "body")
    with pytest.raises(UsageError, match=f'type {kind} for field "k"'):
        notes.upsert((value, "x", 1))
    assert notes.count() == 0


def test_str_fields_take_numbers_as_their_text(notes):
    """How the Tcl bridge passes Tcl's pure numbers ([expr {40+2}])."""
    notes.upsert((42, 1.5, 7))
    assert notes.get("42") == ("42", "1.5", 7)
    assert notes.get(42) == ("42", "1.5", 7)
    assert as_text(-3, "x") == "-3" and as_text(0.1, "x") == "0.1"

    class Sub(str):
        pass
    notes.set(Sub("sub"), {"body": Sub("text")})
    assert type(notes.get("sub")[1]) is str


def test_empty_string_is_null_and_the_docs_say_so(notes):
    notes.set("K", {"body": ""})
    assert notes.get("K") == ("K", None, None)
    assert notes.query().null("body").keys() == ["K"]
    assert '""' in aerostore.Str.__doc__ and "null" in aerostore.Str.__doc__
    with open(_doc("python.md")) as f:
        assert '`""` is null' in f.read()


# -- declarations: bounds only on integers, integers within 64 bits -------------------------------

@pytest.mark.parametrize("make", [
    lambda: aerostore.Float(lo=0.0, hi=1.0), lambda: aerostore.Float(hi=1),
    lambda: aerostore.Str(lo=1), lambda: aerostore.Bool(lo=0, hi=1),
])
def test_bounds_on_non_integer_fields_are_refused(make):
    with pytest.raises(UsageError, match=r"only Int and UInt fields take bounds") as ei:
        make()
    assert ei.value.code == ("AEROSTORE", "USAGE", "SCHEMA")


@pytest.mark.parametrize("make,what", [
    (lambda: aerostore.Int(bits=65), "bits=65"),
    (lambda: aerostore.UInt(bits=128), "bits=128"),
    (lambda: aerostore.Int(bits=0), "bits=0"),
    (lambda: aerostore.Int(bits="64"), "bits='64'"),
    (lambda: aerostore.Int(lo=0, hi=2 ** 64), "hi=18446744073709551616"),
    (lambda: aerostore.Int(lo=-(2 ** 63) - 1), "lo=-9223372036854775809"),
    (lambda: aerostore.UInt(hi=2 ** 70), "hi=1180591620717411303424"),
])
def test_integer_fields_wider_than_64_bits_are_refused_when_declared(make, what):
    with pytest.raises(UsageError) as ei:
        make()
    msg = str(ei.value)
    assert what in msg and "64 bits" in msg
    assert ei.value.code == ("AEROSTORE", "USAGE", "SCHEMA")


def test_the_widest_integer_fields_work_on_disk(tmp_path):
    @aerostore.table
    class Wide:
        k = aerostore.Key()
        s = aerostore.Int(bits=64)
        u = aerostore.UInt(bits=64)
        r = aerostore.Int(lo=INT_MIN, hi=INT_MAX)
    assert (INT_MIN, INT_MAX) == (-(2 ** 63), 2 ** 64 - 1)
    d = str(tmp_path / "wide")
    with aerostore.open(d) as db:
        t = db.create_table(Wide)
        t.upsert(("a", INT_MIN, INT_MAX, INT_MIN))
        t.upsert(("b", 2 ** 63 - 1, 0, INT_MAX))
    with aerostore.open(d) as db:
        t = db.table("Wide")
        assert t.get("a") == ("a", INT_MIN, INT_MAX, INT_MIN)
        assert t.get("b") == ("b", 2 ** 63 - 1, 0, INT_MAX)


def test_other_declaration_mistakes():
    with pytest.raises(UsageError, match="lo must not be above hi"):
        aerostore.Int(lo=5, hi=1)
    with pytest.raises(UsageError, match="use Int for negative"):
        aerostore.UInt(lo=-1)
    u = aerostore.UInt(lo=10, hi=20)
    assert (u.lo, u.hi) == (10, 20)
    assert (aerostore.UInt(bits=16).lo, aerostore.UInt(bits=16).hi) == (0, 65535)


# -- messages match docs/tcl.md and docs/ingest.md ------------------------------------------------

@pytest.mark.parametrize("field,value,message", [
    ("gs", "70000", 'bad value "70000" for field "gs": expected an integer from 0 to 65535'),
    ("gs", -1, 'bad value "-1" for field "gs": expected an integer from 0 to 65535'),
    ("lat", float("inf"), 'bad value "inf" for field "lat": expected a finite number'),
    ("lat", "nan", 'bad value "nan" for field "lat": expected a finite number'),
])
def test_range_messages_say_expected(field, value, message):
    with pytest.raises(UsageError) as ei:
        FlightState.fields[FlightState.position(field)].coerce(value)
    assert str(ei.value) == message


def test_show_escapes_what_cannot_be_printed():
    assert show("plain") == "plain" and show(12) == "12"
    assert show("a\tb\x00\ud800") == "a\\tb\\x00\\ud800"
    assert show("x" * 100) == "x" * 57 + "..."


# -- in terms ------------------------------------------------------------------------------------

@pytest.fixture
def t(flights):
    flights.upsert_many([("A", 1.0, 1.0, 100, 5, 1), ("B", 2.0, 2.0, 200, 6, 2),
                         ("C", 3.0, 3.0, 300, 7, 3), ("abc", 4.0, 4.0, 400, 8, 4)])
    return flights


@pytest.mark.parametrize("bare", ["abc", b"abc", bytearray(b"ab"), 5])
def test_in_values_refuses_a_bare_string(t, bare):
    with pytest.raises(UsageError, match=r'bad value for "in" on field "flight_id": expected a list') as ei:
        t.query().in_values("flight_id", bare)
    assert ei.value.code == ("AEROSTORE", "USAGE", "VALUE", "flight_id")
    with pytest.raises(UsageError, match="expected a list"):
        t.query().where("in", "flight_id", bare)
    assert t.query().in_values("flight_id", ["abc"]).keys() == ["abc"]


def test_in_values_message_shows_the_fix(t):
    with pytest.raises(UsageError) as ei:
        t.query().in_values("ident", "UAL1")
    assert str(ei.value) == ('bad value for "in" on field "ident": expected a list of values, '
                             'not a str (one value: ["UAL1"])')


@pytest.mark.parametrize("field,values,keys", [
    ("alt", (100, 300, 999), ["A", "C"]),
    ("ident", ("A", "abc"), ["A", "abc"]),
    ("gs", ([5, 6],), ["A", "B"]),
    ("gs", ((5, 6),), ["A", "B"]),
    ("gs", ("6", "7"), ["B", "C"]),
])
def test_where_in_takes_the_values_themselves_or_one_list(t, field, values, keys):
    assert sorted(t.query().where("in", field, *values).keys()) == keys


def test_in_values_takes_an_iterator(t):
    assert t.query().in_values("gs", iter([8])).keys() == ["abc"]


def test_where_in_without_values(t):
    with pytest.raises(UsageError) as ei:
        t.query().where("in", "gs")
    assert str(ei.value) == 'wrong # args: should be "in field list" or "in field value value ?value ...?"'


def test_where_in_with_a_bad_value_names_the_field(t):
    with pytest.raises(UsageError, match='field "gs"'):
        t.query().where("in", "gs", 5, "fast")


# -- sort keys -------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", [("lat", "asc", 1), ("lat",), (), ["lat", "asc", "x"]])
def test_sort_by_malformed_tuples_are_usage_errors(t, key):
    with pytest.raises(UsageError, match=r"bad sort key .*expected") as ei:
        t.query().sort_by(key)
    assert ei.value.code == ("AEROSTORE", "USAGE", "SORT")


def test_sort_by_a_list(t):
    assert t.query().sort_by(["alt", "desc"]).keys() == ["abc", "C", "B", "A"]


@pytest.mark.parametrize("key,match", [(("lat", "up"), 'bad sort direction "up"'),
                                       (("nosuch", "asc"), "bad field")])
def test_sort_by_bad_direction_or_field(t, key, match):
    with pytest.raises(UsageError, match=match):
        t.query().sort_by(key)


def test_where_with_an_operator_that_is_not_a_str(t):
    with pytest.raises(UsageError, match="bad operator"):
        t.query().where(["="], "alt", 1)


# -- rows: dicts in upsert_many, messages that say what a row is -----------------------------------

def test_upsert_many_takes_dict_rows_like_upsert(flights):
    assert flights.upsert_many([{"flight_id": "A", "alt": 100}, ("B", 1, 2, 3, 4, 5),
                                {"ident": "C", "gs": "7", "ts": 9}]) == (3, 0)
    assert flights.get("A") == ("A", None, None, 100, None, None)
    assert flights.get("C") == ("C", None, None, None, 7, 9)


def test_upsert_many_dict_row_replaces_the_whole_row(flights):
    flights.upsert_many([{"flight_id": "A", "alt": 100}])
    assert flights.upsert_many([{"flight_id": "A", "lat": 1}]) == (0, 1)
    assert flights.get("A") == ("A", 1.0, None, None, None, None)     # a whole row, as upsert


@pytest.mark.parametrize("row,match", [({"flight_id": "D", "speed": 1}, 'bad field "speed"'),
                                       ({"alt": 1}, "the key")])
def test_upsert_many_refuses_a_bad_dict_row(flights, row, match):
    with pytest.raises(UsageError, match=match):
        flights.upsert_many([row])
    assert flights.count() == 0


def test_row_shape_messages_say_what_a_row_is(flights):
    with pytest.raises(UsageError) as ei:
        flights.upsert_many([("A", 1.0)])
    assert str(ei.value) == ("a FlightState row has 6 fields (flight_id lat lon altitude gs "
                             "updated_at), got 2: give a tuple in field order, or a dict by field name")
    for bad in ("A\t1\t2\t3\t4\t5", 17, None, b"abcdef"):
        with pytest.raises(UsageError, match="expected a tuple in field order"):
            flights.upsert(bad)
    with pytest.raises(UsageError, match="expected a dict"):
        flights.set("A", [("alt", 1)])


def _doc(name):
    import os
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", name)


# -- docs/python.md's examples run as written ------------------------------------------------------

def _python_blocks(path):
    """The ```python blocks of a Markdown file, in order, with their first line numbers."""
    blocks, cur, start = [], None, 0
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if cur is None and line.strip() == "```python":
                cur, start = [], n + 1
            elif cur is not None and line.strip() == "```":
                blocks.append((start, "".join(cur)))
                cur = None
            elif cur is not None:
                cur.append(line)
    return blocks


def test_python_md_code_blocks_run(tmp_path, monkeypatch):
    """Every ```python block of docs/python.md, in order, in one namespace (in an
    empty directory), runs without an error: the examples stay true."""
    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks(_doc("python.md"))
    assert len(blocks) >= 5
    ns = {"__name__": "docs_python_md"}
    try:
        for start, src in blocks:
            code = compile("\n" * (start - 1) + src, _doc("python.md"), "exec")
            exec(code, ns)
        # (not fs.get: the examples turn the TTL sweeper on, and UAL123's timestamp
        # is old enough for it to delete the row at any moment after that)
        assert ns["ev"].key == "UAL123" and ns["ev"].after[4] == 470
        assert os.path.isdir(tmp_path / "flights") and os.path.isfile(tmp_path / "out.tsv")
    finally:
        db = ns.get("db")
        if db is not None:
            db.close()


def test_tcl_set_search_and_write_tsv_refuse_lone_surrogates(tcl, tmp_path):
    """Through the Tcl commands (the issue's repro: `set "bad\\ud800"` then write_tsv).
    The surrogates are made by Tcl's own backslash escapes: tkinter cannot carry them."""
    out = tmp_path / "out.tsv"
    tcl.tk.call("set", "::_out", str(out))
    got = tcl.eval(r'''
        set r {}
        lappend r [catch {FlightState set "bad\ud800" alt 1} m] $m $::errorCode
        lappend r [catch {FlightState search -compare {{= flight_id "a\ud800"}} -countOnly 1} m] $::errorCode
        lappend r [catch {FlightState search -compare {{match flight_id "*\udfff"}} -countOnly 1} m] $::errorCode
        FlightState set ok alt 1
        lappend r [FlightState write_tsv -file $::_out] [FlightState count]
    ''')
    assert tcl.tk.splitlist(got) == (
        "1", r'bad value "bad\ud800" for field "flight_id": invalid Unicode (lone surrogate)',
        "AEROSTORE USAGE VALUE flight_id", "1", "AEROSTORE USAGE VALUE flight_id",
        "1", "AEROSTORE USAGE VALUE flight_id", "1", "1")
    assert out.read_text() == "ok\t\t\t1\t\t\n"
