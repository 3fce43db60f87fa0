"""columns.Columns: typed arrays of settled rows answer terms exactly as the generated predicate does."""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aerostore.columns import CHAIN, EMPTY, FROZEN, Columns, vector_terms
from aerostore.query import Query, compile_predicate
from aerostore.schema import Bool, Float, Int, Key, Str, UInt, table


@table
class Wide:
    k = Key()
    i32 = Int(bits=32)
    u64 = UInt(bits=64)
    f = Float()
    b = Bool()
    s = Str()


S = Wide
U64_MAX = (1 << 64) - 1

ints = st.one_of(st.none(), st.integers(-(1 << 31), (1 << 31) - 1))
u64s = st.one_of(st.none(), st.sampled_from([0, 1, 7, 1 << 40, (1 << 63) - 1, 1 << 63, U64_MAX]),
                 st.integers(0, U64_MAX))
floats = st.one_of(st.none(), st.sampled_from([0.0, -0.0, 1.5, -2.25]),
                   st.floats(allow_nan=False, allow_infinity=False, width=64))
bools = st.one_of(st.none(), st.booleans())
rows_st = st.lists(st.tuples(ints, u64s, floats, bools), min_size=0, max_size=40)


def _rows(vals):
    return [(f"k{i}", a, b, c, d, "x") for i, (a, b, c, d) in enumerate(vals)]


def _term_st():
    cmp_ops = st.sampled_from(["=", "!=", "<", "<=", ">", ">="])
    return st.one_of(
        st.tuples(cmp_ops, st.just("i32"), st.integers(-(1 << 31), (1 << 31) - 1)),
        st.tuples(cmp_ops, st.just("u64"), st.integers(0, U64_MAX)),
        st.tuples(cmp_ops, st.just("f"), st.floats(allow_nan=False, allow_infinity=False)),
        st.tuples(st.just("range"), st.just("f"), st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)),
        st.tuples(st.just("range"), st.just("i32"), st.integers(-100, 100), st.integers(-100, 100)),
        st.tuples(st.just("in"), st.just("i32"), st.lists(st.integers(-5, 5), max_size=4)),
        st.tuples(st.just("in"), st.just("u64"), st.lists(st.sampled_from([0, 7, U64_MAX]), max_size=3)),
        st.tuples(st.sampled_from(["null", "notnull"]), st.sampled_from(["i32", "u64", "f", "b"])),
        st.tuples(st.sampled_from(["true", "false"]), st.just("b")),
        st.tuples(st.just("="), st.just("b"), st.booleans()),
    )


def _query(terms):
    q = Query(SimpleNamespace(schema=S))
    for t in terms:
        op, field, *vals = t
        if op == "in":
            q.where("in", field, vals[0])
        else:
            q.where(op, field, *vals)
    return q


@settings(max_examples=300, deadline=None)
@given(rows_st, st.lists(_term_st(), min_size=1, max_size=3), st.data())
def test_mask_agrees_with_the_predicate(vals, terms, data):
    rows = _rows(vals)
    states = data.draw(st.lists(st.sampled_from([EMPTY, FROZEN, CHAIN]), min_size=len(rows),
                                max_size=len(rows)))
    c = Columns(S)
    c.load(rows)
    c.thaw([i for i, s in enumerate(states) if s == CHAIN])
    c.clear([i for i, s in enumerate(states) if s == EMPTY])
    q = _query(terms)
    vec, rest = vector_terms(S, q.terms)
    assert not rest, f"every generated term has a column answer: {rest}"
    pred = compile_predicate(S, q.terms)
    want = [states[i] == FROZEN and bool(pred(r)) for i, r in enumerate(rows)]
    assert c.marks(vec)[0].tolist() == want
    if rows:
        slots = np.array(data.draw(st.lists(st.integers(0, len(rows) - 1), max_size=10)), np.intp)
        assert c.marks(vec, slots)[0].tolist() == [want[s] for s in slots]


def test_terms_without_a_column_answer_stay_in_python():
    c = Columns(S)
    q = _query([("match", "s", "a*"), ("true", "i32"), (">", "i32", 3), ("match", "i32", "1*")])
    vec, rest = vector_terms(S, q.terms)
    assert [t.op for t in vec] == ["gt"]
    assert [t.op for t in rest] == ["match", "true", "match"]


@settings(max_examples=200, deadline=None)
@given(rows_st, st.data())
def test_rows_read_back_exactly_as_frozen(vals, data):
    """``row`` and ``rows_of`` give back each frozen tuple: the same values of the same
    types (None for nulls, bools as bools, the u64 extremes, -0.0), gathered or sliced."""
    rows = [r[:5] + (None if i % 3 else f"s{i}",) for i, r in enumerate(_rows(vals))]
    c = Columns(S)
    c.load(rows)
    keys = [r[0] for r in rows]
    for i, r in enumerate(rows):
        got = c.row(i, keys[i])
        assert got == r and [type(v) for v in got] == [type(v) for v in r]
    assert c.rows_of(slice(0, len(rows)), keys) == rows
    if rows:
        pick = data.draw(st.lists(st.integers(0, len(rows) - 1), max_size=12))
        got = c.rows_of(np.array(pick, np.intp), [keys[i] for i in pick])
        assert got == [rows[i] for i in pick]
        assert [[type(v) for v in r] for r in got] == [[type(v) for v in rows[i]] for i in pick]


class _Chain:
    """Stands for a version chain in a heap (anything but a str or None)."""


def test_freeze_thaw_clear_follow_the_heap():
    c = Columns(S)
    rows = _rows([(1, 2, 3.0, True), (None, None, None, None), (5, U64_MAX, -0.0, False)])
    c.load(rows)
    heap = [r[0] for r in rows]             # a settled slot holds its key (heap.py)
    c._check(heap)
    c.thaw([1])
    heap[1] = _Chain()
    c._check(heap)
    c.clear([0])
    heap[0] = None
    c._check(heap)
    new = ("k9", -7, 9, 2.5, None, None)
    c.freeze([1], [new])
    heap[1] = "k9"
    c._check(heap)
    assert c.row(1, "k9") == new and c.row(2, "k2") == rows[2]
    more = [("k%d" % i, i, i, float(i), i % 2 == 0, None) for i in range(3, 3000)]
    c.freeze(list(range(3, 3000)), more)      # grows past the capacity
    c._check(heap + [r[0] for r in more])
    assert c.row(2999, "k2999") == more[-1] and c.row(2, "k2") == rows[2]
    assert c.marks(_query([(">", "i32", 2990)]).terms)[0].sum() == 9


def test_check_catches_a_state_that_disagrees_with_the_heap():
    c = Columns(S)
    rows = _rows([(1, 2, 3.0, True), (4, 5, 6.0, False)])
    c.load(rows)
    heap = [r[0] for r in rows]
    c.state[1] = CHAIN
    with pytest.raises(AssertionError, match="slot 1: settled in the heap"):
        c._check(heap)
    c.state[1] = FROZEN
    c.clear([0])
    c.strs[5][0] = "left"
    with pytest.raises(AssertionError, match="slot 0: free but holds a string"):
        c._check([None, heap[1]])


def test_an_int_field_wider_than_64_bits_is_a_list():
    """A range from -2^63 to past 2^63 - 1 fits no 64-bit type: its values stay Python
    ints in a list, its terms in Python."""
    @table
    class W:
        k = Key()
        r = Int(lo=-(1 << 63), hi=U64_MAX)
    c = Columns(W)
    rows = [("a", U64_MAX), ("b", -(1 << 63)), ("c", None)]
    c.load(rows)
    assert 1 not in c.cols and [c.row(i, r[0]) for i, r in enumerate(rows)] == rows
    vec, rest = vector_terms(W, Query(SimpleNamespace(schema=W)).where(">", "r", 5).terms)
    assert not vec and len(rest) == 1


def test_value_writes_hold_the_read_gate_and_new_arrays_change_the_layout():
    # readers without the GIL (readgate.py) read values and states: only
    # freeze, load and clear write them (or let strings go), each inside a
    # hold; a thaw writes a state only; replacing the arrays moves the layout on
    from aerostore import readgate
    c = Columns(S)
    rows = _rows([(1, 2, 1.5, True), (3, 4, 2.5, None)])

    def moved(fn):
        s0 = readgate.stats()
        fn()
        s1 = readgate.stats()
        assert s1["depth"] == 0 and s1["seq"] % 2 == 0
        return s1["holds"] - s0["holds"], s1["layout"] - s0["layout"]

    holds, layout = moved(lambda: c.load(rows))              # new arrays
    assert holds == 1 and layout >= 1
    assert moved(lambda: c.thaw([0])) == (0, 0)
    assert moved(lambda: c.freeze([0], [rows[0]])) == (1, 0)
    assert moved(lambda: c.clear([1])) == (1, 0)
    holds, layout = moved(lambda: c.freeze([5000], [rows[0]]))    # past the capacity: it grows
    assert holds == 1 and layout >= 1
