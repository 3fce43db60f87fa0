"""The key buffer (aerostore/keyscan.py): glob matches on the key over all keys at once.

Checked against query.glob_to_regex applied key by key (the per-row path, whose
Tcl semantics test_query_oracle.py checks): every line answer of a buffer, for
random patterns full of regex and glob special characters, both cases; then
through the planner while slots are freed and reused, with version chains, old
snapshots, rebuilds, a non-ASCII key, and a writer thread running meanwhile.
"""

import random
import threading

import numpy as np
import pytest

import aerostore
from aerostore.latch import Latch
from aerostore import keyscan
from aerostore.query import glob_to_regex
from conftest import vacuum_now

ALPHA = "aAbBzZ09.*?[]-\\^$+(){}|!_ "
PAT_ALPHA = ALPHA + "**??"


def rand_key(rng):
    return "".join(rng.choice(ALPHA) for _ in range(rng.randrange(1, 7)))


def rand_pattern(rng):
    return "".join(rng.choice(PAT_ALPHA) for _ in range(rng.randrange(0, 7)))


def per_row(keys, pattern, nocase):
    fm = glob_to_regex(pattern, nocase)
    return [k is not None and fm(k) is not None for k in keys]


def buffer_of(keys):
    """A Buffer over ``keys`` (None: a free slot), as ``KeyScan._build`` makes it."""
    rows = list(keys)           # a settled slot holds its key (heap.py)

    class Store:
        key_pos = 0
        latch = Latch()

    st = Store()
    st.rows = rows
    return keyscan.KeyScan()._build(st)


def test_every_line_agrees_with_the_per_row_regex():
    rng = random.Random(1)
    for _ in range(40):
        keys = [None if rng.random() < 0.1 else rand_key(rng) for _ in range(rng.randrange(1, 300))]
        buf = buffer_of(keys)
        assert buf.usable and buf.n == len(keys)
        for _ in range(60):
            p = rand_pattern(rng)
            for nocase in (True, False):
                got = buf.term_hits(p, nocase).tolist()
                want = per_row(keys, p, nocase)
                assert [g for g, k in zip(got, keys) if k is not None] == \
                       [w for w, k in zip(want, keys) if k is not None], (p, nocase)


@pytest.mark.parametrize("pattern", [
    "*77*", "77*", "*77", "77", "*", "", "**", "?", "*7?7*", "[7]7*", "*[0-7]7", "UA*7", "ua*77*",
    "\\*", "*\\[*", "a.b*", "*(*", "^*", "*$", "[!-~]*", "[Z-a]*", "*.*", "\n", "*\n*", "a\\",
    "[a-", "-[", "*a*b*c*", "u?l*", "*l7?", "[u][a][l]*", "??", "?*?", "?????", "*??", "[\n-\r]*",
])
@pytest.mark.parametrize("nocase", [True, False])
def test_chosen_patterns(pattern, nocase):
    """Each path of ``term_hits``: a literal with stars at its ends (anchored or not),
    a literal run as a prefilter, the whole-buffer regex, every key, no key."""
    keys = ["UAL77", "ual177", "77", "770", "a77b7", "7", "UA7", "u.l77", "a.b", "a*b", "x[y",
            "^x$", "(p)", "7a7", "Zal77", "ab c", "aXbYc", "azb"] + [None, "UAL1"]
    buf = buffer_of(keys)
    got = buf.term_hits(pattern, nocase).tolist()
    want = per_row(keys, pattern, nocase)
    assert [g for g, k in zip(got, keys) if k is not None] == [w for w, k in zip(want, keys) if k is not None]


def test_non_ascii_keys_leave_matches_to_the_per_row_path(mem_db):
    @aerostore.table
    class T:
        k = aerostore.Key()
        v = aerostore.Int()

    t = mem_db.create_table(T)
    t.upsert_many([("\u00e9t\u00e9", 1), ("ETE", 2), ("ete", 3), ("\u212a", 4), ("k", 5)])
    assert sorted(t.query().match("k", "*t*").keys()) == ["ETE", "ete", "\u00e9t\u00e9"]
    assert sorted(t.query().match("k", "k").keys()) == ["k", "\u212a"]   # Python's case folding, as per row
    assert t.query().match("k", "*t*").count() == 3
    ks = t._st.keyscan
    assert ks is not None and not ks.buf.usable
    assert t.query().match("k", "*").explain() == "full scan (5 rows, compiled predicate)"


@aerostore.table
class KV:
    k = aerostore.Key()
    a = aerostore.Int()


def _check(t):
    t._check()
    ks = t._st.keyscan
    if ks is not None:
        ks._check(t._st)


def _want(state, pattern, nocase, neg=False):
    fm = glob_to_regex(pattern, nocase)
    return sorted(k for k in state if (fm(k) is not None) != neg)


PATTERNS = ["*1*", "k1*", "K1*", "*[0-3]", "*.*", "x*y*", "?2*", "*", "\\**", "k??", "*[a-c]*", "[!-/]*"]


def _compare(view, state, rng, n=12, numeric=True):
    """Key globs (and, with ``numeric``, a term on ``a`` too, which builds the columns)."""
    for _ in range(n):
        p = rng.choice(PATTERNS)
        op = rng.choice(["match", "notmatch", "match_case", "notmatch_case"])
        want = _want(state, p, op in ("match", "notmatch"), op.startswith("not"))
        q = getattr(view.query(), op)("k", p)
        assert sorted(q.keys()) == want, (op, p)
        assert getattr(view.query(), op)("k", p).count() == len(want), (op, p)
        if not numeric:
            continue
        lo = rng.randrange(0, 50)
        want2 = sorted(k for k in want if state[k][1] is not None and state[k][1] >= lo)
        assert getattr(view.query(), op)("k", p).ge("a", lo).count() == len(want2), (op, p, lo)
        assert sorted(getattr(view.query(), op)("k", p).ge("a", lo).keys()) == want2


def _key(rng):
    return rng.choice(["k", "K", "x", "x.y", "*", "a"]) + str(rng.randrange(400)) + rng.choice(["", "b", "Z", "*"])


@pytest.mark.parametrize("numeric", [True, False])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_queries_through_deletes_inserts_and_slot_reuse(mem_db, seed, numeric, monkeypatch):
    """Between queries: deletes (slots freed by vacuum), inserts (freed slots reused with
    other keys), updates (chains), an old snapshot holding chains; every answer
    against a model, through the buffer (which must be used and rebuilt), alone or
    with a numeric term (the columns' marks too)."""
    monkeypatch.setattr(keyscan, "_STALE_MIN", 8)
    built = []
    build = keyscan.KeyScan._build
    monkeypatch.setattr(keyscan.KeyScan, "_build", lambda self, st: built.append(1) or build(self, st))
    narrowed = []
    narrow = keyscan.KeyHits.narrow
    monkeypatch.setattr(keyscan.KeyHits, "narrow", lambda self, *a: narrowed.append(1) or narrow(self, *a))
    rng = random.Random(seed)
    t = mem_db.create_table(KV)
    state = {}
    while len(state) < 300:
        k = _key(rng)
        state[k] = (k, rng.randrange(50))
    t.upsert_many(list(state.values()))
    _compare(t, state, rng, numeric=numeric)
    for step in range(12):
        old = mem_db.begin() if step % 3 == 0 else None
        old_state = dict(state)
        for k in rng.sample(sorted(state), 40):
            assert t.delete(k)
            del state[k]
        if old is None:
            vacuum_now(mem_db)                  # frees the slots: the inserts below reuse them
        for _ in range(40):
            k = _key(rng)
            r = (k, None if rng.random() < 0.2 else rng.randrange(50))
            t.upsert(r)
            state[k] = r
        for k in rng.sample(sorted(state), 10):
            r = (k, rng.randrange(50))
            t.upsert(r)
            state[k] = r
        _check(t)
        _compare(t, state, rng, numeric=numeric)
        if old is not None:
            _compare(old.table("KV"), old_state, rng, 6, numeric=numeric)
            old.rollback()
            vacuum_now(mem_db)
            _compare(t, state, rng, 4, numeric=numeric)
        _check(t)
    assert len(built) >= 2 and narrowed


def test_unsure_slots_go_the_per_row_way(mem_db, monkeypatch):
    """Without rebuilds, reused slots' lines are stale: the stamps must send them to the
    per-row path (a stale line that matched, or a new key that matches)."""
    monkeypatch.setattr(keyscan, "_STALE_MIN", 10 ** 9)
    t = mem_db.create_table(KV)
    t.upsert_many([(f"old{i}", i) for i in range(100)])
    assert t.query().match("k", "old*").count() == 100      # the buffer is built
    buf = t._st.keyscan.buf
    for i in range(0, 100, 2):
        t.delete(f"old{i}")
    vacuum_now(mem_db)
    t.upsert_many([(f"new{i}", i) for i in range(0, 100, 2)])       # into the freed slots
    t.upsert_many([(f"new{i}", i) for i in range(100, 120)])        # past the buffer
    vacuum_now(mem_db)
    assert t._st.keyscan.buf is buf
    assert t.query().match("k", "old*").count() == 50
    assert t.query().match("k", "new*").count() == 70
    assert sorted(t.query().match("k", "new1*").keys()) == sorted(
        [f"new{i}" for i in range(0, 100, 2) if str(i).startswith("1")] + [f"new{i}" for i in range(100, 120)])
    assert t.query().notmatch("k", "old*").count() == 70
    _check(t)


@pytest.mark.parametrize("numeric", [True, False])
def test_a_reader_meanwhile_writers_reuse_slots(mem_db, numeric):
    """A writer thread deletes, vacuums and inserts (reusing slots) while readers count
    matches in one snapshot: the buffer's answer equals the per-row answer of the
    same snapshot (with ``numeric``, also with a numeric term, on the columns)."""
    t = mem_db.create_table(KV)
    t.upsert_many([(f"k{i}", i % 50) for i in range(3000)])
    t.query().match("k", "*1*").count()
    stop = threading.Event()
    errors = []

    def writer():
        rng = random.Random(5)
        live = list(range(3000))
        n = 3000
        try:
            for _ in range(2000):       # bounded: the readers stop it sooner
                if stop.is_set():
                    break
                gone = [live.pop(rng.randrange(len(live))) for _ in range(50)]
                with mem_db.transaction() as txn:
                    tt = txn.table("KV")
                    for i in gone:
                        assert tt.delete(f"k{i}")
                mem_db._vacuum(block=True)
                t.upsert_many([(f"k{i}", i % 50) for i in range(n, n + 50)])   # into freed slots
                live.extend(range(n, n + 50))
                n += 50
        except Exception as e:          # noqa: BLE001 - reported below
            errors.append(e)

    th = threading.Thread(target=writer)
    th.start()
    try:
        for _ in range(25):
            txn = mem_db.begin()
            try:
                tt = txn.table("KV")
                for p in ("*1*", "k2?", "*[05]", "k1*"):
                    got = tt.query().match("k", p).count()
                    fm = glob_to_regex(p, True)
                    want = sum(1 for r in tt.query().rows() if fm(r[0]) is not None)
                    assert got == want, p
                    if not numeric:
                        continue
                    assert tt.query().match("k", p).ge("a", 25).count() == sum(
                        1 for r in tt.query().rows() if fm(r[0]) is not None and r[1] >= 25)
            finally:
                txn.rollback()
    finally:
        stop.set()
        th.join()
    assert not errors, errors
    _check(t)


def test_stamps_grow_and_the_writer_call_is_cheap():
    ks = keyscan.KeyScan()
    ks.reused([])
    assert ks.n_reused == 0 and len(ks.stamps) == 0
    ks.gen = 3
    ks.reused([5])
    ks.reused([2000, 7])
    assert ks.stamps[5] == ks.stamps[7] == ks.stamps[2000] == 3 and ks.n_reused == 3
    assert len(ks.stamps) >= 2001 and not ks.stamps[:5].any()
    np.testing.assert_array_equal(np.flatnonzero(ks.stamps), [5, 7, 2000])


def test_each_way_of_answering_a_pattern(monkeypatch):
    """On 5,000 keys of the benchmark's shape: the literal search (anchored or not),
    the lines holding a rare literal run rechecked by one regex each, the whole
    buffer through one regex, lengths; each against the per-row regex."""
    rng = random.Random(3)
    a = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    keys = [f"{rng.choice(a)}{rng.choice(a)}{rng.choice(a)}{rng.randrange(10 ** 6):06d}" for _ in range(5000)]
    keys[7] = None
    buf = buffer_of(keys)
    compiled = []
    real = keyscan.re.compile
    monkeypatch.setattr(keyscan.re, "compile",          # the bytes regexes term_hits compiles
                        lambda src, *f: (isinstance(src, bytes) and compiled.append(src)) or real(src, *f))
    ways = {"*77*": "literal", "UA*": "literal", "*123": "literal", "abc000001": "literal",
            "*12?45*": "lines", "u[a-c]?00*": "lines", "*[0-1]7": "buffer", "?A?0*": "buffer",
            "????*": "lengths", "?????????": "lengths"}
    for p, way in ways.items():
        for nocase in (True, False):
            del compiled[:]
            got = buf.term_hits(p, nocase).tolist()
            want = per_row(keys, p, nocase)
            assert [g for g, k in zip(got, keys) if k is not None] == \
                   [w for w, k in zip(want, keys) if k is not None], (p, nocase)
            seen = ("buffer" if any(s.startswith(b"\n") for s in compiled)
                    else "lines" if compiled else None)
            assert seen == (way if way in ("buffer", "lines") else None), (p, nocase, compiled)
