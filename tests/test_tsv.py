"""TSV decode/encode (aerostore.tsvcodec.Codec) for FlightState and a custom schema."""

import pytest
from hypothesis import given, settings, strategies as st

from aerostore import schema as S
from aerostore.errors import DecodeError
from aerostore.flightstate import FlightState
from aerostore.tsvcodec import codec

C = codec(FlightState)
GOOD = "UAL123\t40.5\t-73.25\t35000\t450\t1700000000"


def err(data):
    with pytest.raises(DecodeError) as ei:
        C.decode(data)
    return ei.value


def test_decode_basic_crlf_blank_lines_no_final_newline():
    rows = C.decode(GOOD + "\r\n\n\r\nDAL456\t\t\t\t\t\nAAL1\t1\t2\t-3\t0\t0")
    assert rows == [("UAL123", 40.5, -73.25, 35000, 450, 1700000000),
                    ("DAL456", None, None, None, None, None),
                    ("AAL1", 1.0, 2.0, -3, 0, 0)]
    assert isinstance(rows[2][1], float)


def test_empty_inputs():
    assert C.decode("") == []
    assert C.decode(b"") == []
    assert C.decode("\n\r\n\n") == []
    assert C.decode("\ufeff") == []


def test_bom_accepted_once_at_start():
    assert C.decode("\ufeff" + GOOD) == C.decode(GOOD)
    assert C.decode(b"\xef\xbb\xbf" + GOOD.encode()) == C.decode(GOOD)
    # only one is dropped; elsewhere a BOM is a character: in a number an error
    assert C.decode("\ufeff\ufeff" + GOOD)[0][0] == "\ufeffUAL123"
    assert C.encode([("\ufeffK", None, None, None, None, None)]) == "\ufeff\ufeffK\t\t\t\t\t\n"
    e = err(GOOD + "\nX\t\ufeff1\t2\t3\t4\t5")
    assert (e.line, e.column) == (2, 2)


def test_extreme_values_and_number_forms():
    rows = C.decode("K\t-0.0\t1e3\t+5\t65535\t18446744073709551615\n"
                    "L\t.5\t5.\t-2147483648\t0\t0\n"
                    "M\t1E-3\t-1.5e+2\t2147483647\t1\t1\n")
    assert rows[0] == ("K", 0.0, 1000.0, 5, 65535, 2**64 - 1)
    assert str(rows[0][1]) == "0.0"          # -0.0 is stored as 0.0
    assert rows[1] == ("L", 0.5, 5.0, -2**31, 0, 0)
    assert rows[2] == ("M", 0.001, -150.0, 2**31 - 1, 1, 1)


def test_unicode_keys_and_bytes():
    text = "Zürich✈\t1\t2\t3\t4\t5\n航班 1\t\t\t\t\t\n"
    assert C.decode(text) == C.decode(text.encode()) == [
        ("Zürich✈", 1.0, 2.0, 3, 4, 5), ("航班 1", None, None, None, None, None)]


BAD = [
    # (input, line, column, message tail)
    ("A\t1\t2\t3\t4", 1, 6, "expected 6 columns (flight_id lat lon altitude gs updated_at), got 5"),
    ("A\t1\t2\t3\t4\t5\t6", 1, 7, "expected 6 columns (flight_id lat lon altitude gs updated_at), got 7"),
    ("A", 1, 2, "expected 6 columns (flight_id lat lon altitude gs updated_at), got 1"),
    (GOOD + "\n\nA\tx\t2\t3\t4\t5", 3, 2, 'bad value "x" for field "lat": expected a finite number'),
    ("A\t1\t2\t3.5\t4\t5", 1, 4,
     'bad value "3.5" for field "altitude": expected an integer from -2147483648 to 2147483647'),
    ("A\t1\t2\t2147483648\t4\t5", 1, 4,
     'bad value "2147483648" for field "altitude": expected an integer from -2147483648 to 2147483647'),
    ("A\t1\t2\t-2147483649\t4\t5", 1, 4,
     'bad value "-2147483649" for field "altitude": expected an integer from -2147483648 to 2147483647'),
    ("A\t1\t2\t3\t65536\t5", 1, 5, 'bad value "65536" for field "gs": expected an integer from 0 to 65535'),
    ("A\t1\t2\t3\t-1\t5", 1, 5, 'bad value "-1" for field "gs": expected an integer from 0 to 65535'),
    ("A\t1\t2\t3\t4\t-1", 1, 6,
     'bad value "-1" for field "updated_at": expected an integer from 0 to 18446744073709551615'),
    ("A\t1\t2\t3\t4\t18446744073709551616", 1, 6,
     'bad value "18446744073709551616" for field "updated_at": expected an integer from 0 to '
     '18446744073709551615'),
    ("A\tnan\t2\t3\t4\t5", 1, 2, 'bad value "nan" for field "lat": expected a finite number'),
    ("A\t1\tinf\t3\t4\t5", 1, 3, 'bad value "inf" for field "lon": expected a finite number'),
    ("A\t1\t-Infinity\t3\t4\t5", 1, 3, 'bad value "-Infinity" for field "lon": expected a finite number'),
    ("A\t1e999\t2\t3\t4\t5", 1, 2, 'bad value "1e999" for field "lat": expected a finite number'),
    ("\t1\t2\t3\t4\t5", 1, 1, 'empty key (field "flight_id")'),
    ("A\t 1\t2\t3\t4\t5", 1, 2, 'bad value " 1" for field "lat": expected a finite number'),
    ("A\t1\t2\t1_000\t4\t5", 1, 4,
     'bad value "1_000" for field "altitude": expected an integer from -2147483648 to 2147483647'),
    ("A\t1\t2\t\u0661\t4\t5", 1, 4,
     'bad value "\u0661" for field "altitude": expected an integer from -2147483648 to 2147483647'),
    ("A\t1\t2\t0x10\t4\t5", 1, 4,
     'bad value "0x10" for field "altitude": expected an integer from -2147483648 to 2147483647'),
    (GOOD + "\rB\t1\t2\t3\t4\t5", 1, 6, "CR inside a line (only CRLF line endings are accepted)"),
    # a CR at the very end of the input ends no line: it is inside the last one
    (GOOD + "\r", 1, 6, "CR inside a line (only CRLF line endings are accepted)"),
    (GOOD + "\r\n" + GOOD + "\r", 2, 6, "CR inside a line (only CRLF line endings are accepted)"),
    (GOOD + "\n\r", 2, 1, "CR inside a line (only CRLF line endings are accepted)"),
    ((GOOD + "\r").encode(), 1, 6, "CR inside a line (only CRLF line endings are accepted)"),
    (GOOD + "\n\ud800X\t1\t2\t3\t4\t5", 2, 1, "invalid Unicode (lone surrogate)"),
    (b"A\t1\t2\t3\t4\t5\r\nB\t1\t2\t3\t4\t5\nC\xff\t1\t2\t3\t4\t5", 3, 1, "invalid UTF-8 (byte 0xff)"),
    (b"A\t1\t2\t3\t4\t\xc3", 1, 6, "invalid UTF-8 (byte 0xc3)"),
]


@pytest.mark.parametrize("data,line,column,what", BAD)
def test_bad_input(data, line, column, what):
    e = err(data)
    assert str(e) == f"decode error at line {line} column {column}: {what}"
    assert e.tcl_errorcode == ["AEROSTORE", "DECODE", str(line), str(column)]
    assert (e.line, e.column, e.what) == (line, column, what)


def test_first_bad_line_is_reported_among_many():
    lines = [f"K{i}\t1\t2\t3\t4\t5" for i in range(100000)]
    lines[70000] = "K\t1\t2\t3\t4"
    lines[90000] = "K\tx\t2\t3\t4\t5"
    e = err("\n".join(lines))
    assert (e.line, e.column) == (70001, 6)


def test_line_numbers_across_chunks(monkeypatch):
    import aerostore.tsvcodec as tsvcodec
    monkeypatch.setattr(tsvcodec, "_CHUNK_CHARS", 64)
    lines = [f"K{i}\t1\t2\t3\t4\t5" for i in range(50)]
    lines[37] = ""
    lines[41] = "K\t1\t2\t3\t99999\t5"
    e = err("\r\n".join(lines).encode())
    assert (e.line, e.column) == (42, 5)
    del lines[41]
    assert len(C.decode("\n".join(lines))) == 48


@S.table
class Mixed:
    name = S.Key()
    flag = S.Bool()
    note = S.Str()
    n = S.Int(bits=8)


def test_custom_schema_bool_str_and_bounds():
    m = codec(Mixed)
    rows = m.decode("a\t1\thello world\t-128\nb\tFALSE\t\t127\nc\tYes\t x_y \t\nd\toFF\tz\t0\n")
    assert rows == [("a", True, "hello world", -128), ("b", False, None, 127),
                    ("c", True, " x_y ", None), ("d", False, "z", 0)]
    assert m.decode(m.encode(rows)) == rows
    with pytest.raises(DecodeError, match=r"line 1 column 4: bad value \"128\" for field \"n\""):
        m.decode("a\t1\t\t128")
    with pytest.raises(DecodeError, match=r"line 1 column 2: .*expected a boolean"):
        m.decode("a\tmaybe\t\t1")


def test_encode_nulls_and_float_repr():
    rows = [("A", 1.5, None, 3, None, 5), ("B", 0.1, -2.0, None, 7, None),
            ("C", 1e-300, 123456789.123456789, -1, 0, 2**64 - 1)]
    text = C.encode(rows)
    assert text.splitlines()[:2] == ["A\t1.5\t\t3\t\t5", "B\t0.1\t-2.0\t\t7\t"]
    assert C.decode(text) == rows
    assert C.encode([]) == ""


finite = st.floats(allow_nan=False, allow_infinity=False)
key = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\r\n"),
              min_size=1, max_size=12)
row = st.tuples(key, st.none() | finite, st.none() | finite,
                st.none() | st.integers(-2**31, 2**31 - 1), st.none() | st.integers(0, 65535),
                st.none() | st.integers(0, 2**64 - 1))


@settings(max_examples=200, deadline=None)
@given(st.lists(row, max_size=30))
def test_roundtrip_encode_decode(rows):
    rows = [(r[0],) + tuple(v + 0.0 if isinstance(v, float) else v for v in r[1:]) for r in rows]
    text = C.encode(rows)
    assert C.decode(text) == rows
    assert C.decode(text.replace("\n", "\r\n").encode()) == rows


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="AB1-.e\t\r\n \ufeff\x00é", max_size=60))
def test_arbitrary_text_never_crashes(text):
    try:
        rows = C.decode(text)
    except DecodeError as e:
        assert e.line >= 1 and 1 <= e.column <= 7
    else:
        for r in rows:
            assert len(r) == 6 and r[0]


def test_lone_cr_at_the_end_of_a_file(tmp_path, mem_db, flights):
    """The file reader's last block (no final LF) follows the same rule."""
    db = mem_db
    p = tmp_path / "cr.tsv"
    p.write_bytes((GOOD + "\r\n" + GOOD.replace("UAL", "DAL") + "\r").encode())
    with pytest.raises(DecodeError) as ei:
        db.ingest_file("FlightState", str(p))
    assert (ei.value.line, ei.value.column) == (2, 6)
    assert db.table("FlightState").count() == 0
    p.write_bytes((GOOD + "\r\n").encode())
    assert db.ingest_file("FlightState", str(p)).inserted == 1


@pytest.mark.parametrize("data,line,column,what", [
    # found by tests/test_fuzz_tsv.py: bytes used to report invalid UTF-8 on line 2
    # before the short line 1 that str input reports
    (b"0\n\xed\xa0\x80\n", 1, 2, "expected 6 columns (flight_id lat lon altitude gs updated_at), got 1"),
    (b"A\t1\t2\t3\t4\t5\nB\t1\t2\tx\t4\t5\nC\t\xff\n", 2, 4,
     'bad value "x" for field "altitude": expected an integer from -2147483648 to 2147483647'),
    # within a line the leftmost of a CR and a bad character is reported
    (b"A\t\r\t\xff", 1, 2, "CR inside a line (only CRLF line endings are accepted)"),
    (b"A\t\xff\t\r", 1, 2, "invalid UTF-8 (byte 0xff)"),
    ("A\t\ud800\t\r", 1, 2, "invalid Unicode (lone surrogate)"),
    ("A\t\r\t\ud800", 1, 2, "CR inside a line (only CRLF line endings are accepted)"),
    (b"A\t1\t2\t3\t4\t\xed\xa0\x80", 1, 6, "invalid UTF-8 (byte 0xed)"),
])
def test_bytes_and_str_report_the_same_first_bad_line(data, line, column, what):
    e = err(data)
    assert (e.line, e.column, e.what) == (line, column, what)
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return
        s = err(text)
        assert (s.line, s.column) == (line, column)
