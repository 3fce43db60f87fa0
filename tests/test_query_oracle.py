"""Every query operator, sort, limit, offset and count() against a brute-force oracle.

Random FlightState data with nulls and many ties; queries built at random through
``Query.where`` (every Tcl operator name) and the named methods; run with and
without indexes, over frozen rows, over version chains kept alive by an old
snapshot, and inside a transaction with its own pending writes.

The oracle follows docs/tcl.md (search), written independently of the engine:
nulls never satisfy a comparison, range, in or match term; ``range`` is
lo <= x < hi; ``match`` is a Tcl glob, case-insensitive (``match_case``
case-sensitive); in sorts null is greater than every value (so first when
descending); ties are broken by the key ascending; count() is the number of rows
left after offset and limit.
"""

import functools
import random
import re

import pytest

import aerostore
from aerostore import FlightState, planner
from aerostore.columns import Columns

FIELDS = FlightState.names            # flight_id lat lon altitude gs updated_at
ALIASES = {"flight_id": ["flight", "ident"], "lat": ["latitude"], "lon": ["long", "longitude"],
           "altitude": ["alt"], "gs": ["groundspeed"], "updated_at": ["updated", "ts"]}
KINDS = {"flight_id": "str", "lat": "float", "lon": "float", "altitude": "int", "gs": "int",
         "updated_at": "int"}
POS = {f: i for i, f in enumerate(FIELDS)}

PREFIXES = ["UAL", "ual", "Dal", "DAL", "swa", "N", "aal", "Q",
            "a.b", "x*y", "[q]", "^$(", "\\z", "Q?", "A+|"]    # regex and glob special characters
COMMON = {
    "lat": [-33.5, -0.5, 0.0, 12.25, 40.0, 40.5, 51.47, 89.9],
    "lon": [-179.5, -73.25, -0.0, 0.0, 2.35, 151.2],
    "altitude": [-2 ** 31, -200, 0, 1000, 35000, 41000, 2 ** 31 - 1],
    "gs": [0, 1, 250, 450, 451, 65535],
    "updated_at": [0, 1, 1700000000, 1700000001, 2 ** 63, 2 ** 64 - 1],
}
NULL_RATE = 0.2


# -- the oracle ------------------------------------------------------------------------------

def glob_match(pattern, text, nocase):
    """Tcl ``string match``: * ? [chars] [a-z] \\x; written without regular expressions."""
    if nocase:
        pattern, text = pattern.lower(), text.lower()

    @functools.lru_cache(maxsize=None)
    def m(pi, si):
        while pi < len(pattern):
            c = pattern[pi]
            if c == "*":
                while pi < len(pattern) and pattern[pi] == "*":
                    pi += 1
                if pi == len(pattern):
                    return True
                return any(m(pi, k) for k in range(si, len(text) + 1))
            if si >= len(text):
                return False
            ch = text[si]
            if c == "?":
                pass
            elif c == "[" and "]" in pattern[pi + 1:]:
                end = pattern.index("]", pi + 1)
                body = pattern[pi + 1:end]
                ok = False
                k = 0
                while k < len(body):
                    if k + 2 < len(body) and body[k + 1] == "-":
                        a, b = sorted((body[k], body[k + 2]))
                        ok = ok or a <= ch <= b
                        k += 3
                    else:
                        ok = ok or body[k] == ch
                        k += 1
                if not ok:
                    return False
                pi = end
            elif c == "\\" and pi + 1 < len(pattern):
                pi += 1
                if pattern[pi] != ch:
                    return False
            elif c != ch:
                return False
            pi += 1
            si += 1
        return si == len(text)

    return m(0, 0)


def text_of(v):
    if isinstance(v, bool):
        return "1" if v else "0"    # as Tcl shows a boolean field
    return str(v)  # ints as digits, floats in their shortest round-trip form


TCL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False}


def truth(v):
    """Tcl's boolean of a value: words or their unique prefixes, or a (decimal) number."""
    if v is None:
        return None
    if isinstance(v, str):
        w = v.lower()
        words = [word for word in TCL_WORDS if w and word.startswith(w)]
        if len(words) == 1:
            return TCL_WORDS[words[0]]
        if re.fullmatch(r"\s*[+-]?(0|[1-9][0-9]*)(\.[0-9]*)?\s*", v):
            return float(v) != 0
        return None
    return v != 0


def holds(op, v, args):
    if op == "null":
        return v is None
    if op == "notnull":
        return v is not None
    if op == "true":
        return truth(v) is True
    if op == "false":
        return truth(v) is False
    if v is None:
        return False        # a null never satisfies a comparison, range, in or match
    if op == "eq":
        return v == args[0]
    if op == "ne":
        return v != args[0]
    if op == "lt":
        return v < args[0]
    if op == "le":
        return v <= args[0]
    if op == "gt":
        return v > args[0]
    if op == "ge":
        return v >= args[0]
    if op == "range":
        return args[0] <= v < args[1]
    if op == "in":
        return v in [a for a in args[0] if a is not None]
    if op in ("match", "notmatch", "match_case", "notmatch_case"):
        r = glob_match(args[0], text_of(v), nocase=op in ("match", "notmatch"))
        return r if not op.startswith("not") else not r
    raise AssertionError(op)


def oracle(rows, spec):
    """The exact answer of ``spec`` over ``rows`` (dict key -> row)."""
    out = [r for r in rows.values()
           if all(holds(op, r[POS[f]], args) for op, f, args in spec["terms"])]
    kp = 0
    order = spec["order"]      # [(pos, +1|-1)]

    def cmp(a, b):
        for pos, d in order:
            x, y = a[pos], b[pos]
            if x == y:
                continue
            if x is None:
                c = 1
            elif y is None:
                c = -1
            else:
                c = -1 if x < y else 1
            return c * d
        return -1 if a[kp] < b[kp] else (1 if a[kp] > b[kp] else 0)

    out.sort(key=functools.cmp_to_key(cmp))
    off, lim = spec["offset"], spec["limit"]
    return out[off:off + lim] if lim else out[off:]


# -- random data ------------------------------------------------------------------------------

def rand_value(rng, f, allow_null=True):
    if allow_null and f != "flight_id" and rng.random() < NULL_RATE:
        return None
    if f == "flight_id":
        return f"{rng.choice(PREFIXES)}{rng.randrange(1000)}"
    if rng.random() < 0.7:
        return rng.choice(COMMON[f])
    if f == "lat":
        return round(rng.uniform(-90, 90), rng.choice([0, 1, 3, 6]))
    if f == "lon":
        return round(rng.uniform(-180, 180), rng.choice([0, 2, 5]))
    if f == "altitude":
        return rng.randint(-2000, 60000)
    if f == "gs":
        return rng.randint(0, 700)
    return rng.randint(1699990000, 1700010000)


def rand_row(rng, key=None):
    return tuple(key if f == "flight_id" and key else rand_value(rng, f) for f in FIELDS)


def make_rows(rng, n):
    rows = {}
    while len(rows) < n:
        r = rand_row(rng)
        rows[r[0]] = r
    return rows


def norm(r):
    """A row as the engine stores it (-0.0 -> 0.0)."""
    return tuple(v + 0.0 if isinstance(v, float) else v for v in r)


# -- random queries ------------------------------------------------------------------------------

TCL_NAMES = {"eq": ["=", "==", "eq"], "ne": ["!=", "<>", "ne"], "lt": ["<", "lt"], "le": ["<=", "le"],
             "gt": [">", "gt"], "ge": [">=", "ge"], "range": ["range"], "in": ["in"],
             "match": ["match"], "notmatch": ["notmatch"], "match_case": ["match_case"],
             "notmatch_case": ["notmatch_case"], "null": ["null"], "notnull": ["notnull"],
             "true": ["true"], "false": ["false"]}
PATTERNS = {
    "flight_id": ["ual*", "UAL*", "U?L*", "*1*", "[d-u]*", "[A-C]*", "*", "?al??", "n*0", "*[0-4]", "Dal1*",
                  "a.b*", "*\\**", "x[*]y*", "\\[q]*", "*(*", "^*", "*\\\\*", "?.?*", "*[*]*", "*\\?*",
                  "A.B1*", "*+|?", "*12", "n12", "[!-/]*", "*[z-~]*"],
    "lat": ["40*", "*.5", "-*", "*0", "1?.*", "[0-4]*"],
    "lon": ["-*", "*.*5", "2*", "0.0"],
    "altitude": ["35*", "-*", "*00", "1???", "[0-9]"],
    "gs": ["4*", "*5", "0", "[2-4]?0"],
    "updated_at": ["17*", "*1", "18446744073709551615", "?"],
}


def field_value(rng, f, data):
    """A value for a term on ``f``: usually one that occurs, sometimes any."""
    vals = [r[POS[f]] for r in data.values() if r[POS[f]] is not None]
    if vals and rng.random() < 0.6:
        return rng.choice(vals)
    return rand_value(rng, f, allow_null=False)


def rand_term(rng, data):
    op = rng.choice(list(TCL_NAMES))
    f = rng.choice(FIELDS)
    if op in ("true", "false") and f == "flight_id":
        f = "gs"
    if op in ("lt", "le", "gt", "ge", "eq", "ne"):
        args = (field_value(rng, f, data),)
    elif op == "range":
        a, b = field_value(rng, f, data), field_value(rng, f, data)
        if rng.random() < 0.8:
            a, b = min(a, b), max(a, b)
        args = (a, b)
    elif op == "in":
        vs = [field_value(rng, f, data) for _ in range(rng.randrange(5))]
        if rng.random() < 0.2 and f != "flight_id":
            vs.append(None)             # null in the list: never matches (the key may not be null)
        args = (vs,)
    elif op in ("match", "notmatch", "match_case", "notmatch_case"):
        args = (rng.choice(PATTERNS[f]),)
    else:
        args = ()
    return op, f, args


def rand_spec(rng, data):
    terms = [rand_term(rng, data) for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3]))]
    nsort = rng.choice([0, 0, 1, 1, 1, 2, 3])
    sort_fields = rng.sample(FIELDS, nsort)
    descending = rng.random() < 0.3
    sort_args = []
    order = []
    for f in sort_fields:
        name = rng.choice([f] + ALIASES[f])
        form = rng.choice(["plain", "minus", "asc", "desc"])
        if form == "plain":
            sort_args.append(name)
            order.append((POS[f], -1 if descending else 1))
        elif form == "minus":
            sort_args.append("-" + name)
            order.append((POS[f], -1))
        else:
            sort_args.append((name, form))
            order.append((POS[f], 1 if form == "asc" else -1))
    limit = rng.choice([0, 0, 1, 3, 10, 50])
    offset = rng.choice([0, 0, 0, 1, 5, 40])
    return {"terms": terms, "sort_args": sort_args, "order": order, "descending": descending,
            "limit": limit, "offset": offset}


def build(view, spec, rng):
    q = view.query()
    for op, f, args in spec["terms"]:
        name = rng.choice([f] + ALIASES[f])
        vals = args
        if op in ("eq", "ne", "lt", "le", "gt", "ge", "range") and KINDS[f] != "float" and rng.random() < 0.2:
            vals = tuple(str(a) for a in args)   # values are typed by the field
        if rng.random() < 0.5:
            q.where(rng.choice(TCL_NAMES[op]), name, *vals)
        else:
            meth = {"in": "in_values"}.get(op, op)
            getattr(q, meth)(name, *vals)
    if spec["sort_args"]:
        q.sort_by(*spec["sort_args"])
    if spec["descending"]:
        q.desc()
    if spec["limit"]:
        q.limit(spec["limit"])
    if spec["offset"]:
        q.offset(spec["offset"])
    return q


def key_match_spec(rng, data):
    """``rand_spec`` with one more term: a glob on the key (the key buffer's terms)."""
    spec = rand_spec(rng, data)
    op = rng.choice(["match", "notmatch", "match_case", "notmatch_case"])
    spec["terms"].insert(rng.randrange(len(spec["terms"]) + 1), (op, "flight_id", (rng.choice(PATTERNS["flight_id"]),)))
    return spec


def check_queries(view, data, rng, n, make_spec=rand_spec):
    """Run ``n`` random queries (``make_spec``) on ``view`` and compare with the oracle over ``data``."""
    data = {k: norm(r) for k, r in data.items()}
    for _ in range(n):
        spec = make_spec(rng, data)
        want = oracle(data, spec)
        q = build(view, spec, rng)
        ctx = f"{spec} plan={q.explain()!r}"
        got = q.rows()
        if spec["order"]:
            assert got == want, ctx
        else:
            # no sort: any order; with a limit, any subset of the matches of that size
            matches = {r[0]: r for r in oracle(data, dict(spec, limit=0, offset=0))}
            assert len(got) == len(want), ctx
            assert len({r[0] for r in got}) == len(got), ctx
            assert all(matches.get(r[0]) == r for r in got), ctx
            if not spec["limit"] and not spec["offset"]:
                assert sorted(got) == sorted(want), ctx
        assert q.count() == len(want), ctx
        assert len(q.keys()) == len(want), ctx


# -- scenarios ---------------------------------------------------------------------------------

INDEX_SETS = {
    "default": None,
    "none": [],
    "key_and_lon": ["flight_id", "lon", "gs"],
}


def setup_indexes(t, which):
    want = INDEX_SETS[which]
    if want is None:
        return
    for f in t.indexed():
        t.drop_index(f)
    for f in want:
        t.create_index(f)
    assert t.indexed() == [f for f in FIELDS if f in want]


@pytest.mark.parametrize("indexes", list(INDEX_SETS))
@pytest.mark.parametrize("seed", [1, 2])
def test_oracle_frozen_rows(mem_db, flights, seed, indexes):
    rng = random.Random(seed)
    data = make_rows(rng, 300)
    flights.upsert_many(list(data.values()))
    setup_indexes(flights, indexes)
    flights._check()
    check_queries(flights, data, rng, 250)


def mutate(rng, t, data, n):
    """``n`` random writes through ``t`` (a Table or a TxnTable), mirrored in ``data``."""
    keys = list(data)
    for _ in range(n):
        x = rng.random()
        if x < 0.35 and keys:
            k = rng.choice(keys)
            f = rng.choice(FIELDS[1:])
            v = rand_value(rng, f)
            t.set(k, {rng.choice([f] + ALIASES[f]): v})
            r = list(data[k])
            r[POS[f]] = v
            data[k] = tuple(r)
        elif x < 0.55 and keys:
            k = rng.choice(keys)
            r = rand_row(rng, key=k)
            t.upsert(r)
            data[k] = r
        elif x < 0.75 and keys:
            k = keys.pop(rng.randrange(len(keys)))
            assert t.delete(k)
            del data[k]
        else:
            r = rand_row(rng)
            if r[0] in data:
                continue
            assert t.upsert(r) is True
            data[r[0]] = r
            keys.append(r[0])


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_oracle_over_version_chains_and_old_snapshots(mem_db, flights, seed):
    rng = random.Random(seed)
    data0 = make_rows(rng, 300)
    flights.upsert_many(list(data0.values()))
    old = mem_db.begin()                 # holds every version of data0
    data1 = dict(data0)
    mutate(rng, flights, data1, 150)
    mid = mem_db.begin()                 # sees data1
    data2 = dict(data1)
    mutate(rng, flights, data2, 150)
    flights._check()
    assert mem_db.stats()["versions"] > len(data2)
    check_queries(old.table("FlightState"), data0, rng, 120)
    check_queries(mid.table("FlightState"), data1, rng, 120)
    check_queries(flights, data2, rng, 120)
    # index changes while version chains exist
    flights.drop_index("altitude")
    flights.create_index("flight_id")
    flights.create_index("altitude")
    flights._check()
    check_queries(old.table("FlightState"), data0, rng, 80)
    check_queries(mid.table("FlightState"), data1, rng, 80)
    check_queries(flights, data2, rng, 80)
    old.rollback()
    check_queries(mid.table("FlightState"), data1, rng, 80)
    mid.rollback()
    assert mem_db._maint.idle(10)   # readers leave pruning to the maintainer
    flights._check()
    assert mem_db.stats()["versions"] == len(data2)
    check_queries(flights, data2, rng, 80)


@pytest.mark.parametrize("seed", [3, 9])
def test_oracle_with_column_filters_everywhere(mem_db, flights, seed, monkeypatch):
    """The columns filter every index chunk (not only big ones), scans go in parts of
    64 slots, over version chains and old snapshots; the columns must be used."""
    monkeypatch.setattr(planner, "_VEC_MIN", 1)
    monkeypatch.setattr(planner, "_PART", 64)
    used = []
    marks = Columns.marks
    monkeypatch.setattr(Columns, "marks", lambda self, *a, **k: used.append(1) or marks(self, *a, **k))
    test_oracle_over_version_chains_and_old_snapshots(mem_db, flights, seed)
    assert len(used) > 100


@pytest.mark.parametrize("seed", [6, 7])
def test_oracle_inside_transaction_with_own_writes(mem_db, flights, seed):
    rng = random.Random(seed)
    data0 = make_rows(rng, 300)
    flights.upsert_many(list(data0.values()))
    snap = dict(data0)
    mutate(rng, flights, snap, 60)       # committed before the transaction: unfrozen slots
    keeper = mem_db.begin()              # keeps those chains alive
    txn = mem_db.begin()
    tt = txn.table("FlightState")
    mine = dict(snap)
    mutate(rng, tt, mine, 120)           # pending, private
    others = dict(snap)
    mutate(rng, flights, others, 60)     # committed by others meanwhile: invisible to txn
    check_queries(tt, mine, rng, 200)
    check_queries(flights, others, rng, 60)
    check_queries(keeper.table("FlightState"), snap, rng, 60)
    keeper.rollback()
    txn.rollback()
    flights._check()


def test_oracle_large_table_chunked_paths(mem_db, flights):
    """Enough rows that index walks and ranges span several chunks."""
    rng = random.Random(8)
    data0 = make_rows(rng, 3000)
    flights.upsert_many(list(data0.values()))
    old = mem_db.begin()
    data1 = dict(data0)
    mutate(rng, flights, data1, 600)
    check_queries(flights, data1, rng, 60)
    check_queries(old.table("FlightState"), data0, rng, 60)
    old.rollback()
    flights._check()


@pytest.mark.parametrize("seed", [10, 11])
def test_oracle_key_matches_across_slot_reuse(mem_db, flights, seed, monkeypatch):
    """Glob terms on the key (the key buffer, keyscan.py) between rounds of deletes,
    vacuums (slots freed) and inserts (freed slots reused by other keys), with an
    old snapshot over chains; rebuilds forced often, and never."""
    from aerostore import keyscan
    monkeypatch.setattr(keyscan, "_STALE_MIN", 16 if seed % 2 else 10 ** 9)
    rng = random.Random(seed)
    data = make_rows(rng, 400)
    flights.upsert_many(list(data.values()))
    check_queries(flights, data, rng, 40, key_match_spec)
    st = flights._st
    for _ in range(6):
        old = mem_db.begin()
        before = dict(data)
        mutate(rng, flights, data, 120)
        check_queries(old.table("FlightState"), before, rng, 15, key_match_spec)
        old.rollback()
        assert mem_db._maint.idle(10)
        mem_db._vacuum(block=True)            # frees the deleted keys' slots for the next round
        check_queries(flights, data, rng, 30, key_match_spec)
        flights._check()
        st.keyscan._check(st)
    assert st.keyscan.n_reused > 0


# -- glob oracle self-check, operators one by one ------------------------------------------------

@pytest.mark.parametrize("pattern,text,nocase,want", [
    ("ual*", "UAL123", True, True), ("ual*", "UAL123", False, False), ("U?L*", "UAL", False, True),
    ("[a-c]x", "Bx", True, True), ("[a-c]x", "Bx", False, False), ("*", "", True, True),
    ("a\\*", "a*", False, True), ("a\\*", "ab", False, False), ("?", "", True, False),
])
def test_glob_oracle_itself(pattern, text, nocase, want):
    assert glob_match(pattern, text, nocase) is want


def test_each_operator_with_nulls(flights):
    rows = [("A", 1.5, None, 10, 0, 5), ("b", None, 2.0, None, 1, 6), ("C", -1.0, 0.0, 0, None, None),
            ("d", 0.0, -3.0, -5, 7, 7)]
    flights.upsert_many(rows)
    q = flights.query

    def ks(query):
        return sorted(query.keys())

    assert ks(q().eq("lat", 1.5)) == ["A"]
    assert ks(q().ne("altitude", 10)) == ["C", "d"]          # null != 10 is not true
    assert ks(q().where("<>", "altitude", 10)) == ["C", "d"]
    assert ks(q().lt("gs", 1)) == ["A"]
    assert ks(q().le("gs", 1)) == ["A", "b"]
    assert ks(q().gt("lat", -1.0)) == ["A", "d"]
    assert ks(q().ge("lat", -1.0)) == ["A", "C", "d"]
    assert ks(q().range("ts", 5, 7)) == ["A", "b"]           # lo <= x < hi
    assert ks(q().range("ts", 7, 5)) == []
    assert ks(q().in_values("alt", [10, -5, None])) == ["A", "d"]
    assert ks(q().in_values("alt", [])) == []
    assert ks(q().match("ident", "[a-b]")) == ["A", "b"]
    assert ks(q().match_case("ident", "[a-b]")) == ["b"]
    assert ks(q().notmatch("ident", "[a-b]")) == ["C", "d"]
    assert ks(q().notmatch_case("ident", "[a-b]")) == ["A", "C", "d"]
    assert ks(q().notmatch("lon", "*")) == []                # nulls fail notmatch too
    assert ks(q().match("lat", "-*")) == ["C"]
    assert ks(q().null("altitude")) == ["b"]
    assert ks(q().notnull("altitude")) == ["A", "C", "d"]
    assert ks(q().true("gs")) == ["b", "d"]
    assert ks(q().false("gs")) == ["A"]
    assert ks(q().true("lon")) == ["b", "d"]
    assert ks(q().false("lon")) == ["C"]
    # sorting: null greater than every value, ties by key
    assert q().sort_by("altitude").keys() == ["d", "C", "A", "b"]
    assert q().sort_by("-altitude").keys() == ["b", "A", "C", "d"]
    assert q().sort_by("altitude").desc().keys() == ["b", "A", "C", "d"]
    assert q().sort_by(("altitude", "desc")).limit(2).keys() == ["b", "A"]
    assert q().sort_by("gs").offset(1).limit(2).keys() == ["b", "d"]
    assert q().sort_by("gs").offset(1).limit(2).count() == 2
    assert q().sort_by("gs").offset(3).limit(2).count() == 1
    assert q().offset(9).count() == 0


def test_sort_ties_broken_by_key_ascending_even_descending(flights):
    flights.upsert_many([(k, 1.0, 1.0, 100, 5, 1) for k in ["m", "a", "z", "B"]] +
                        [("x", 2.0, 1.0, 200, 5, 1)])
    for idx in (True, False):
        if not idx:
            flights.drop_index("altitude")
        assert flights.query().sort_by("-altitude").keys() == ["x", "B", "a", "m", "z"]
        assert flights.query().sort_by("-altitude").limit(3).keys() == ["x", "B", "a"]
        assert flights.query().sort_by("altitude").limit(2).keys() == ["B", "a"]
        assert flights.query().sort_by("gs", "-lat").keys() == ["x", "B", "a", "m", "z"]


# -- explain ---------------------------------------------------------------------------------

def test_explain_names_the_expected_plan(mem_db, flights):
    rng = random.Random(9)
    data = make_rows(rng, 2000)
    flights.upsert_many(list(data.values()))
    k = next(iter(data))
    q = flights.query
    assert q().eq("flight_id", k).explain().startswith("key lookup")
    assert q().where("=", "ident", k).gt("alt", 0).explain().startswith("key lookup")
    assert q().in_values("flight", [k, "nope"]).explain().startswith("key lookup (2 keys)")
    assert q().sort_by("altitude").limit(10).explain().startswith("ordered walk altitude asc")
    assert q().sort_by("-lat").limit(5).offset(3).explain().startswith("ordered walk lat desc")
    assert q().gt("gs", 100).sort_by("updated_at").limit(5).explain().startswith("ordered walk updated_at")
    assert q().range("altitude", 1000, 2000).explain(count=True).startswith("index only count altitude")
    assert q().ge("gs", 450).lt("gs", 452).explain(count=True).startswith("index only count gs")
    assert q().range("altitude", 1000, 1001).explain().startswith("index range altitude")
    assert q().match("ident", "ual1*").explain().startswith("full scan")
    # inside a transaction with own writes, count() cannot be index-only; explain says so
    with mem_db.transaction() as t:
        tt = t.table("FlightState")
        assert tt.query().range("altitude", 1000, 2000).explain(count=True).startswith("index only count")
        tt.set(k, {"alt": 1500})
        assert tt.query().range("altitude", 1000, 2000).explain(count=True).startswith("index range")
        t.rollback()
    flights.drop_index("altitude")
    assert q().sort_by("altitude").limit(10).explain().startswith("full scan")
    assert "heap top 10" in q().sort_by("altitude").limit(10).explain()


def test_bad_queries_are_usage_errors(flights):
    q = flights.query
    with pytest.raises(aerostore.UsageError) as ei:
        q().where("~", "lat", 1)
    assert ei.value.code[:3] == ("AEROSTORE", "USAGE", "OPERATOR")
    with pytest.raises(aerostore.UsageError) as ei:
        q().where("range", "lat", 1)
    assert "wrong # args" in str(ei.value)
    with pytest.raises(aerostore.UsageError) as ei:
        q().eq("nosuch", 1)
    assert 'bad field "nosuch"' in str(ei.value)
    with pytest.raises(aerostore.UsageError) as ei:
        q().eq("altitude", "high")
    assert "altitude" in str(ei.value)
    with pytest.raises(aerostore.UsageError):
        q().eq("altitude", None)
    with pytest.raises(aerostore.UsageError):
        q().where("in", "altitude", "35000")
    with pytest.raises(aerostore.UsageError):
        q().limit(-1)
    with pytest.raises(aerostore.UsageError):
        q().offset(-1)
    with pytest.raises(aerostore.UsageError):
        q().sort_by(("lat", "up"))
    with pytest.raises(aerostore.UsageError):
        q().sort_by("-nosuch")


# -- match is Tcl's string match ------------------------------------------------------------------

@pytest.mark.parametrize("pattern,text,nocase,want", [
    ("a\\", "a\\", False, False),        # a trailing backslash never matches
    ("a[bc", "ab", False, True),         # an unclosed set runs to the end of the pattern
    ("a[bc", "a[bc", False, False),
    ("-[", "-[", True, False),           # an empty unclosed set never matches
    ("[a-", "a", False, False),          # a dangling range matches nothing
    ("[xa-", "x", False, True),
    ("[!-[]", "A", True, False),         # nocase lower-cases the text: a is not in !-[
    ("[!-[]", "A", False, True),
    ("[Z-a]", "z", True, True),          # z-a after lower-casing: a..z
    ("*[?B[", "ab[", False, True),
])
def test_glob_edge_cases_follow_tcl(pattern, text, nocase, want):
    from aerostore.query import glob_to_regex
    assert (glob_to_regex(pattern, nocase)(text) is not None) is want


def test_match_agrees_with_tcl_string_match():
    """Differential test against the real ``string match`` of the Tcl that tkinter embeds."""
    tkinter = pytest.importorskip("tkinter")
    try:
        tcl = tkinter.Tcl()
    except tkinter.TclError:
        pytest.skip("no Tcl")
    from aerostore.query import glob_to_regex
    rng = random.Random(1)
    for alpha, salpha in [("aAbB-]\\[*?xZ^!", "aAbB-]\\[xZ^!*?"), ("ab[]-*?\\", "ab[]-*?\\"),
                          ("aZ_[]-*", "azAZ_[]-*`^"), ("ÄäßK[-]*?k", "äÄßkK\u212a")]:
        for _ in range(3000):
            p = "".join(rng.choice(alpha) for _ in range(rng.randrange(0, 7)))
            s = "".join(rng.choice(salpha) for _ in range(rng.randrange(0, 5)))
            if "-]" in p:
                continue        # a range ending in ]: the one documented exception
            for nocase in (True, False):
                want = bool(int(tcl.call("string", "match", *(["-nocase"] if nocase else []), p, s)))
                assert (glob_to_regex(p, nocase)(s) is not None) is want, (p, s, nocase)


# -- true / false on text fields are Tcl booleans -------------------------------------------------

@aerostore.table
class Flags:
    k = aerostore.Key()
    s = aerostore.Str()


TRUTH_CASES = {
    "1": True, "2": True, "-1": True, "0": False, "00": False, "0.0": False, "-0": False,
    "1e3": True, " 1": True, "inf": True, "0x10": True, "0b0": False, "0o7": True,
    "true": True, "TrUe": True, "t": True, "tr": True, "y": True, "ye": True, "on": True,
    "false": False, "F": False, "n": False, "No": False, "of": False, "off": False,
    "o": None, "08": None, "nan": None, "1_0": None, "yes ": None, "truex": None, "": None, "x": None,
}


def test_true_false_on_text_use_tcl_booleans(mem_db):
    t = mem_db.create_table(Flags)
    cases = {f"k{i:02d}": v for i, v in enumerate(TRUTH_CASES)}
    t.upsert_many([(k, v if v else "x") for k, v in cases.items()])
    t.set("k_null", {"s": None})
    want_true = sorted(k for k, v in cases.items() if TRUTH_CASES[v] is True)
    want_false = sorted(k for k, v in cases.items() if TRUTH_CASES[v] is False)
    assert sorted(t.query().true("s").keys()) == want_true
    assert sorted(t.query().false("s").keys()) == want_false


def test_truth_agrees_with_tcl_expr():
    tkinter = pytest.importorskip("tkinter")
    try:
        tcl = tkinter.Tcl()
    except tkinter.TclError:
        pytest.skip("no Tcl")
    from aerostore.query import truth
    rng = random.Random(3)
    cases = list(TRUTH_CASES)
    cases += ["".join(rng.choice("01289xXbBoOeE.+- tfyn") for _ in range(rng.randrange(1, 5)))
              for _ in range(3000)]
    for v in cases:
        tcl.setvar("v", v)
        got = tcl.eval("if {[catch {expr {$v ? 1 : 0}} r]} {list none} else {set r}")
        assert truth(v) is {"1": True, "0": False, "none": None}[got], repr(v)


# -- ranges on several indexes: the intersection plan ---------------------------------------------

def _box_rows(rng, n):
    return {f"B{i:05d}": (f"B{i:05d}", rng.choice([None, round(rng.uniform(-90, 90), 3)]),
                          round(rng.uniform(-180, 180), 3), rng.randrange(0, 45000),
                          rng.choice([None, rng.randrange(0, 700)]), 1_700_000_000 + i)
            for i in range(n)}


def _check_boxes(view, data, rng, n, want_plan=True):
    for _ in range(n):
        la = rng.uniform(-90, 80)
        lo = rng.uniform(-180, 160)
        dla, dlo = rng.choice([2, 5, 10]), rng.choice([5, 10, 20])
        gs = rng.sample(range(0, 700, 7), 30) if rng.random() < 0.3 else None

        def inside(r):
            return (r[1] is not None and la <= r[1] < la + dla and lo <= r[2] < lo + dlo
                    and (gs is None or r[4] in gs))
        want = sorted((norm(r) for r in data.values() if inside(r)), key=lambda r: (-r[3], r[0]))
        q = view.query().range("lat", la, la + dla).range("lon", lo, lo + dlo)
        if gs is not None:
            q = q.in_values("gs", gs)
        if want_plan:
            assert q.explain().startswith("index intersect"), q.explain()
        assert q.count() == len(want)
        assert sorted(q.rows()) == sorted(want)
        top = q.sort_by(("altitude", "desc")).limit(7)
        assert top.rows() == want[:7], top.explain()


def test_box_queries_intersect_index_slot_sets(mem_db, flights):
    """A lat/lon box (plus an ``in``) over frozen rows, version chains seen by an old
    snapshot, a transaction's own writes, and index layers frozen by a fold under way."""
    from aerostore import arrayindex
    rng = random.Random(21)
    data0 = _box_rows(rng, 6000)
    flights.upsert_many(list(data0.values()))
    _check_boxes(flights, data0, rng, 30)
    old = mem_db.begin()
    data1 = dict(data0)
    for i in range(40):                          # small commits: entries go to the layers
        batch = [(k, round(rng.uniform(-90, 90), 3), round(rng.uniform(-180, 180), 3),
                  rng.randrange(45000), rng.randrange(700), 1) for k in rng.sample(sorted(data1), 20)]
        flights.upsert_many(batch)
        data1.update({r[0]: r for r in batch})
        if i % 10 == 0:
            flights.delete(next(iter(data1)))
            data1.pop(next(iter(data1)))
    st = flights._st
    with st.latch:                               # a fold started, not finished: frozen layers
        jobs = [(ix, ix.fold_start(force=True)) for ix in st.indexes.values()
                if isinstance(ix, arrayindex.ArrayIndex)]
    assert any(job is not None for _ix, job in jobs)
    _check_boxes(flights, data1, rng, 30)
    _check_boxes(old.table("FlightState"), data0, rng, 30)
    with mem_db.transaction() as txn:
        tt = txn.table("FlightState")
        mine = dict(data1)
        for k in rng.sample(sorted(mine), 50):
            r = (k, round(rng.uniform(-90, 90), 3), round(rng.uniform(-180, 180), 3), 5, 7, 9)
            tt.upsert(r)
            mine[k] = r
        _check_boxes(tt, mine, rng, 20, want_plan=False)
        txn.rollback()
    for ix, job in jobs:
        if job is not None:
            with st.latch:
                assert ix.fold_finish(job, ix.fold_compute(job))
    _check_boxes(flights, data1, rng, 20)
    old.rollback()
    flights._check()
