"""The fast decoder never accepts what the reference (slow) decoder rejects,
and both produce the same rows: a differential test on near-valid input."""

import math

from hypothesis import given, settings, strategies as st

from aerostore import schema as S
from aerostore.errors import DecodeError
from aerostore.flightstate import FlightState
from aerostore.tsvcodec import codec

TOKENS = ["0", "1", "-1", "+5", "007", "65535", "65536", "-0", "-0.0", "0.0", "-.0", "1.5", ".5", "5.",
          "1e3", "1E-3", "-1.5e+2", "1e999", "-1e999", "nan", "NaN", "inf", "-inf", "Infinity", " 1",
          "1 ", "1_0", "0x10", "\u0661", "\u00b2", "1\x0b", "\x1c1", "", "-", ".", "e5", "1e", "+",
          "2147483647", "2147483648", "-2147483648", "-2147483649", "18446744073709551615",
          "18446744073709551616", "A", "Zürich", "\ufeff", "x y", "true", "no"]
cell = st.sampled_from(TOKENS)
line = st.lists(cell, min_size=5, max_size=7).map("\t".join)
text = st.lists(line, max_size=8).map("\n".join)


def same(a, b):
    """Rows equal, floats compared bit for bit (0.0 vs -0.0 matters)."""
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        for x, y in zip(ra, rb):
            if isinstance(x, float) or isinstance(y, float):
                if not (type(x) is type(y) and math.copysign(1, x) == math.copysign(1, y) and x == y):
                    return False
            elif x != y or type(x) is not type(y):
                return False
    return True


def check(c, t):
    fast = c._fast(t)
    try:
        slow = c._slow(t, 1)
    except DecodeError:
        assert fast is None, f"fast path accepted what the reference rejects: {t!r}"
        return
    if fast is not None:
        assert same(fast, slow), t


FLOATS = ["0", "-0", "-0.0", "0.0", "-.0", "1.5", ".5", "5.", "1e3", "1E-3", "-1.5e+2", "+2", ""]
UINTS = ["0", "1", "+5", "007", "65535", ""]
valid_line = st.tuples(st.sampled_from(["A", "Zürich", "x y", "\ufeffK", "a_b", "1e999"]),
                       st.sampled_from(FLOATS), st.sampled_from(FLOATS), st.sampled_from(UINTS + ["-1"]),
                       st.sampled_from(UINTS), st.sampled_from(UINTS)).map("\t".join)


@settings(max_examples=400, deadline=None)
@given(text)
def test_fast_and_reference_decoders_agree_flightstate(t):
    check(codec(FlightState), t)


@settings(max_examples=400, deadline=None)
@given(st.lists(valid_line, max_size=8).map("\n".join), st.lists(line, max_size=2))
def test_mostly_valid_input_agrees_and_is_accepted(valid, fuzz):
    c = codec(FlightState)
    assert c._fast(valid) is not None           # valid input never needs the slow path
    check(c, valid)
    check(c, "\n".join([valid] + fuzz))


@S.table
class Wide:
    k = S.Key()
    b = S.Bool()
    s = S.Str()
    i = S.Int(bits=8)
    f = S.Float()
    req = S.Int(nullable=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(cell, min_size=5, max_size=7).map("\t".join), max_size=6).map("\n".join))
def test_fast_and_reference_decoders_agree_custom_schema(t):
    check(codec(Wide), t)
