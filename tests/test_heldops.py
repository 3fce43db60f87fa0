"""aerostore._heldops: the index array reads that keep the GIL answer what the
numpy expressions they replace answer (the searches exactly, as a bisect of the
ints), for every array an ArrayIndex stores, and refuse anything else.  (Why they exist: _heldops.c; that they keep the GIL
is what the live-feed benchmark measures, not a test.)"""

import random
from bisect import bisect_left, bisect_right
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from aerostore._heldops import bisect, fold, intersect, onto, slots, sort, split
from aerostore.entries import SLOT_BITS, SLOT_MASK

_M43 = (1 << 43) - 1


def _wide(entries):
    """complex128 entries as arrayindex.py stores a wide entry."""
    return np.array([complex(e >> 43, e & _M43) for e in sorted(entries)], np.complex128)


def _numpy_split(arr, key_dtype):
    """arrayindex.py's split before _heldops: keys, slots."""
    if arr.dtype != np.complex128:
        return (arr >> SLOT_BITS).tolist(), (arr & SLOT_MASK).astype(np.intp).tolist()
    lo = arr.imag.astype(np.int64)
    hi = arr.real.astype(key_dtype)
    return (((hi << 11) | (lo >> SLOT_BITS).astype(key_dtype)).tolist(),
            (lo & SLOT_MASK).astype(np.intp).tolist())


_KINDS = {
    # name: (array dtype, key dtype, key range)
    "int64": (np.int64, np.int64, (-(1 << 31), (1 << 31) - 1)),
    "uint64": (np.uint64, np.uint64, (0, (1 << 32) - 1)),
    "wide_signed": (np.complex128, np.int64, (-(1 << 63), (1 << 63) - 1)),
    "wide_unsigned": (np.complex128, np.uint64, (0, (1 << 64) - 1)),
}


def _entries(kind, keys, slot_list):
    dtype, _kd, _r = _KINDS[kind]
    es = sorted({(k << SLOT_BITS) | s for k, s in zip(keys, slot_list)})
    if dtype is np.complex128:
        return es, _wide(es)
    return es, np.array(es, dtype)


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(sorted(_KINDS)), data=st.data())
def test_split_slots_and_bisect_agree_with_numpy(kind, data):
    _dt, key_dtype, (lo, hi) = _KINDS[kind]
    edge = st.sampled_from([lo, hi, lo + 1, hi - 1, 0, -1 if lo < 0 else 1, 1 << 20])
    keys = data.draw(st.lists(st.one_of(edge, st.integers(lo, hi)), max_size=60))
    slot_list = data.draw(st.lists(st.integers(0, SLOT_MASK), min_size=len(keys), max_size=len(keys)))
    es, arr = _entries(kind, keys, slot_list)
    out = np.empty(len(arr), np.int64)
    got_keys, got_slots = split(arr, key_dtype == np.uint64, out)
    want_keys, want_slots = _numpy_split(arr, key_dtype)
    assert got_keys == want_keys == [e >> SLOT_BITS for e in es]
    assert got_slots == want_slots == out.tolist()
    assert slots(arr, np.empty(len(arr), np.int64)).tolist() == want_slots
    probes = data.draw(st.lists(st.sampled_from(es) if es else st.nothing(), max_size=5)) if es else []
    probes += [p + d for p in probes for d in (-1, 1)]
    for e in probes:
        if arr.dtype == np.complex128:
            if abs(e >> 43) > 1 << 53:
                continue
            key = complex(e >> 43, e & _M43)
        else:
            if not (np.iinfo(arr.dtype).min <= e <= np.iinfo(arr.dtype).max):
                continue
            key = e
        # exact, as Python's bisect on the ints; numpy's searchsorted is not always: it
        # compared a Python int with a uint64 array as float64 ([0, 2**53], 2**53 + 1 -> 1)
        assert bisect(arr, key, False) == bisect_left(es, e)
        assert bisect(arr, key, True) == bisect_right(es, e)


def test_empty_and_reversed_arrays():
    e = np.empty(0, np.int64)
    assert bisect(e, 5, False) == 0
    assert split(e, False, np.empty(0, np.int64)) == ([], [])
    arr = np.arange(10, dtype=np.int64) << SLOT_BITS
    with pytest.raises(ValueError, match="contiguous"):
        bisect(arr[::-1], 5, False)


@pytest.mark.parametrize("bad", [np.arange(4, dtype=np.float64), np.arange(4, dtype=np.int32),
                                 np.zeros((2, 2), np.int64), b"12345678", [1, 2, 3]])
def test_other_arrays_are_refused(bad):
    with pytest.raises((TypeError, ValueError)):
        bisect(bad, 1, False)
    with pytest.raises((TypeError, ValueError)):
        split(bad, False, np.empty(4, np.int64))


def test_out_must_be_a_writable_int64_array_of_the_length():
    arr = np.arange(4, dtype=np.int64)
    for out in (np.empty(3, np.int64), np.empty(4, np.float64), np.empty(4, np.int32)):
        with pytest.raises(TypeError, match="out must be"):
            slots(arr, out)
    ro = np.empty(4, np.int64)
    ro.flags.writeable = False
    with pytest.raises((TypeError, ValueError, BufferError)):
        split(arr, False, ro)


def test_keys_out_of_the_dtype_are_refused():
    with pytest.raises(OverflowError):
        bisect(np.arange(4, dtype=np.uint64), -1, False)
    with pytest.raises(OverflowError):
        bisect(np.arange(4, dtype=np.int64), 1 << 63, False)
    with pytest.raises(TypeError, match="complex"):
        bisect(np.zeros(4, np.complex128), 1, False)


def test_an_index_reads_through_them(monkeypatch):
    """ArrayIndex's chunks and slot sets go through _heldops (each call counted), and
    answer what a sorted list of the same entries answers."""
    import aerostore.arrayindex as ai
    from aerostore.schema import Float
    calls = {"split": 0, "slots": 0, "bisect": 0}
    for name in calls:
        real = getattr(ai, "held_" + name)

        def counted(*a, _real=real, _name=name):
            calls[_name] += 1
            return _real(*a)
        monkeypatch.setattr(ai, "held_" + name, counted)
    ix = ai.new_index(1, Float())
    r = random.Random(5)
    vals = [r.uniform(-90, 90) for _ in range(3000)]
    ix.build(vals, list(range(3000)))
    want = sorted((v, s) for s, v in enumerate(vals))
    lo_e, hi_e = ix.key(-10.0) << SLOT_BITS, ix.key(10.0) << SLOT_BITS
    got = ix.chunk(lo_e, hi_e, None, 5000)
    assert [s for _v, s in want if -10.0 <= _v < 10.0] == got.slots
    assert sorted(ix.slots_between(lo_e, hi_e).tolist()) == sorted(got.slots)
    assert ix.count_between(lo_e, hi_e) == len(got.slots)
    back = ix.chunk(lo_e, hi_e, None, 5000, reverse=True)
    assert back.slots == got.slots[::-1] and back.slot_array.tolist() == back.slots
    assert all(calls.values()), calls


def _spins_during(fn) -> int:
    """How far a thread spinning in Python gets while ``fn`` runs in this thread, which
    starts it holding the GIL, with the spinner waiting for it."""
    ticks = [0]
    running = threading.Event()
    stop = threading.Event()

    def spin():
        running.set()
        while not stop.is_set():
            ticks[0] += 1
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    th = threading.Thread(target=spin)
    try:
        th.start()
        running.wait()          # back with the GIL; the spinner waits for it
        before = ticks[0]
        fn()
        return ticks[0] - before
    finally:
        stop.set()
        sys.setswitchinterval(old)
        th.join()


def test_they_do_not_let_another_thread_run():
    """A thread waiting for the GIL gets it when a call releases it: across numpy's
    searchsorted it runs; across a batch of these calls (well inside the switch
    interval) it does not.  Scheduling may intervene once: three tries each."""
    arr = np.arange(1 << 20, dtype=np.int64)
    out = np.empty(4096, np.int64)

    def held():
        for i in range(100):
            bisect(arr, i * 997, i & 1)
            slots(arr[:4096], out)

    def numpy_search():
        for i in range(20):
            arr.searchsorted(i * 997)
    assert any(_spins_during(numpy_search) > 0 for _ in range(3))
    assert any(_spins_during(held) == 0 for _ in range(3))


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(sorted(_KINDS)), data=st.data())
def test_onto_and_sort_agree_with_sets(kind, data):
    """onto: the entries of xs in cancel leave it, the rest join keep; sort: numpy's
    order (a wide entry: real part, then imaginary part; many share a real part)."""
    dtype, _kd, (lo, hi) = _KINDS[kind]
    ent = st.builds(lambda k, s: (k << SLOT_BITS) | s,
                    st.one_of(st.sampled_from([lo, hi, 0 if lo <= 0 else lo, 7 if lo <= 7 else lo]),
                              st.integers(lo, hi)),
                    st.integers(0, 40))
    pool = sorted(set(data.draw(st.lists(ent, max_size=80))))
    which = data.draw(st.lists(st.sampled_from("ckxb-"), min_size=len(pool), max_size=len(pool)))
    c = [e for e, w in zip(pool, which) if w in "cb"]      # b: in cancel and in xs
    k = [e for e, w in zip(pool, which) if w == "k"]
    x = [e for e, w in zip(pool, which) if w in "xb"]

    def arr(es):
        return _wide(es) if dtype is np.complex128 else np.array(es, dtype)
    ca, ka, xa = arr(c), arr(k), arr(x)
    got_c, got_k = onto(ca, ka, xa)
    got_c = ca if got_c is ca else np.frombuffer(got_c, ca.dtype)
    got_k = ka if got_k is ka else np.frombuffer(got_k, ka.dtype)
    assert got_c.tolist() == arr(sorted(set(c) - set(x))).tolist()
    assert got_k.tolist() == arr(sorted(set(k) | (set(x) - set(c)))).tolist()
    shuffled = arr(pool)[np.random.default_rng(len(pool)).permutation(len(pool))]
    sort(shuffled)
    assert shuffled.tolist() == np.sort(arr(pool)).tolist()


def test_onto_and_sort_refuse_other_arrays():
    a = np.arange(4, dtype=np.int64)
    with pytest.raises(TypeError, match="one dtype"):
        onto(a, a.astype(np.uint64), a)
    with pytest.raises(TypeError):
        onto(a, a, a.astype(np.float64))
    ro = a.copy()
    ro.flags.writeable = False
    with pytest.raises((BufferError, ValueError)):
        sort(ro)
    with pytest.raises(TypeError):
        sort(np.arange(4, dtype=np.float64))


@settings(max_examples=150, deadline=None)
@given(parts=st.lists(st.lists(st.lists(st.integers(0, 199), max_size=40), min_size=1, max_size=3),
                      min_size=1, max_size=4))
def test_intersect_is_the_sorted_set_intersection(parts):
    mark = np.zeros(256, np.uint8)
    arrs = [[np.array(r, np.int64) for r in part] for part in parts]
    got = np.frombuffer(intersect(arrs, mark), np.int64).tolist()
    want = set.intersection(*[set(x for r in part for x in r) for part in parts])
    assert got == sorted(want)
    assert not mark.any(), "the mark buffer was left dirty"


def test_intersect_of_big_parts_without_the_gil():
    """Past 16,384 slots the work runs with the GIL let go: the same answer, the marks
    left clear."""
    rng = np.random.default_rng(3)
    a = [rng.integers(0, 200_000, 30_000), rng.integers(0, 200_000, 5_000)]
    b = [rng.integers(0, 200_000, 20_000)]
    mark = np.zeros(200_001, np.uint8)
    got = np.frombuffer(intersect([a, b], mark), np.int64)
    want = np.intersect1d(np.concatenate(a), b[0])
    assert got.tolist() == want.tolist()
    assert not mark.any()


def test_intersect_refuses_bad_input_and_leaves_the_marks_clear():
    mark = np.zeros(16, np.uint8)
    ok = np.arange(4, dtype=np.int64)
    with pytest.raises(IndexError, match="slot 99 outside"):
        intersect([[ok], [np.array([1, 99], np.int64)]], mark)
    assert not mark.any()
    with pytest.raises(IndexError, match="slot -1 outside"):
        intersect([[np.array([-1], np.int64)]], mark)
    big = np.arange(20_000, dtype=np.int64)
    with pytest.raises(IndexError):                 # the GIL-free path reports it too
        intersect([[big], [big]], mark)
    assert not mark.any()
    with pytest.raises(TypeError, match="int64"):
        intersect([[ok], [np.arange(4, dtype=np.int32)]], mark)
    assert not mark.any()
    with pytest.raises(TypeError, match="uint8"):
        intersect([[ok]], np.zeros(16, np.bool_))
    with pytest.raises(TypeError):
        intersect([], mark)
    with pytest.raises(TypeError):
        intersect([ok], mark)


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(sorted(_KINDS)), data=st.data())
def test_fold_is_main_minus_removes_plus_adds(kind, data):
    """fold: main without the removed entries and with the added ones, in order, for
    every entry encoding (many wide entries share a real part)."""
    dtype, _kd, (lo, hi) = _KINDS[kind]
    ent = st.builds(lambda k, s: (k << SLOT_BITS) | s,
                    st.one_of(st.sampled_from([lo, hi, 0 if lo <= 0 else lo]), st.integers(lo, hi)),
                    st.integers(0, 40))
    pool = sorted(set(data.draw(st.lists(ent, max_size=120))))
    which = data.draw(st.lists(st.sampled_from("mra"), min_size=len(pool), max_size=len(pool)))
    m = [e for e, w in zip(pool, which) if w in "mr"]      # r: in main, removed
    r = [e for e, w in zip(pool, which) if w == "r"]
    a = [e for e, w in zip(pool, which) if w == "a"]

    def arr(es):
        return _wide(es) if dtype is np.complex128 else np.array(es, dtype)
    out = np.empty(len(m) - len(r) + len(a), dtype)
    assert fold(arr(m), arr(a), arr(r), out) is out
    assert out.tolist() == arr(sorted(set(m) - set(r) | set(a))).tolist()


@pytest.mark.parametrize("dtype", [np.int64, np.complex128])
def test_a_big_fold_lets_other_threads_run_and_agrees_with_numpy(dtype):
    """Past 65,536 entries of main the merge runs with the GIL let go: a thread waiting
    for it runs meanwhile; the answer is numpy's."""
    rng = np.random.default_rng(11)
    pool = rng.choice(1 << 40, 420_000, replace=False)
    main = np.sort(pool[:400_000]).astype(dtype)
    rem = np.sort(rng.choice(main, 10_000, replace=False))
    add = np.sort(pool[400_000:]).astype(dtype)
    want = np.sort(np.concatenate((np.setdiff1d(main, rem), add)))
    out = np.empty(len(want), dtype)
    spins = [_spins_during(lambda: fold(main, add, rem, out)) for _ in range(3)]
    assert np.array_equal(out, want)
    assert any(spins), spins


def test_fold_refuses_what_is_not_a_fold():
    m = np.arange(0, 20, 2, dtype=np.int64)
    none = np.empty(0, np.int64)
    with pytest.raises(ValueError, match="a removed entry is not in main"):
        fold(m, none, np.array([3], np.int64), np.empty(9, np.int64))
    with pytest.raises(ValueError, match="a removed entry is not in main"):
        fold(m, none, np.array([100], np.int64), np.empty(9, np.int64))
    with pytest.raises(ValueError, match="an added entry is in main already"):
        fold(m, np.array([4], np.int64), none, np.empty(11, np.int64))
    with pytest.raises(TypeError, match="out has 10 entries, the fold makes 11"):
        fold(m, np.array([5], np.int64), none, np.empty(10, np.int64))
    with pytest.raises(TypeError, match="one dtype"):
        fold(m, none.astype(np.uint64), none, np.empty(10, np.int64))
    with pytest.raises(TypeError, match="one dtype"):
        fold(m, none, none, np.empty(10, np.uint64))
    ro = np.empty(10, np.int64)
    ro.flags.writeable = False
    with pytest.raises((BufferError, ValueError)):
        fold(m, none, none, ro)
