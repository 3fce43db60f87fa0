"""The query oracle on a user table with text, boolean and integer fields (all nullable,
all indexed or none): str index entries with nulls, bool indexes, descending text
sorts, match on text, true/false on booleans and text."""

import functools
import random

import pytest

import aerostore

from test_query_oracle import TCL_NAMES, holds

FIELDS = ("id", "name", "ok", "n", "x")
POS = {f: i for i, f in enumerate(FIELDS)}
NAMES = ["alpha", "Alpha", "beta", "BETA", "gamma", "", "yes", "no", "1", "0", "t", "zz top", "ä", "Ä"]


@aerostore.table
class Thing:
    id = aerostore.Key()
    name = aerostore.Str(aliases=("nm",))
    ok = aerostore.Bool()
    n = aerostore.Int(bits=16)
    x = aerostore.Float()


def rand_value(rng, f):
    if f == "id":
        return f"id{rng.randrange(500):03d}"
    if rng.random() < 0.2:
        return None
    if f == "name":
        return rng.choice(NAMES[:5] + NAMES[6:])     # "" would be stored as null
    if f == "ok":
        return rng.random() < 0.5
    if f == "n":
        return rng.choice([-32768, -1, 0, 1, 2, 3, 500, 32767])
    return rng.choice([-1.5, 0.0, 0.25, 2.0, 1e10])


def rand_row(rng, key):
    return (key,) + tuple(rand_value(rng, f) for f in FIELDS[1:])


def value_for(rng, f, data):
    vals = [r[POS[f]] for r in data.values() if r[POS[f]] is not None]
    if vals and rng.random() < 0.7:
        return rng.choice(vals)
    v = rand_value(rng, f)
    return v if v is not None else rand_value(rng, f) or ("beta" if f == "name" else 1)


def rand_spec(rng, data):
    terms = []
    for _ in range(rng.choice([0, 1, 1, 2])):
        op = rng.choice(list(TCL_NAMES))
        f = rng.choice(FIELDS)
        if op in ("eq", "ne", "lt", "le", "gt", "ge"):
            args = (value_for(rng, f, data),)
        elif op == "range":
            args = tuple(sorted([value_for(rng, f, data), value_for(rng, f, data)], key=str)
                         if f in ("id", "name") else sorted([value_for(rng, f, data), value_for(rng, f, data)]))
        elif op == "in":
            args = ([value_for(rng, f, data) for _ in range(rng.randrange(4))],)
        elif op.startswith(("match", "notmatch")):
            args = (rng.choice(["a*", "*A*", "?eta", "[a-c]*", "*", "t", "1", "ä*", "Ä", "*[0-9]", "zz*"]),)
        else:
            args = ()
        terms.append((op, f, args))
    order = []
    sort_args = []
    for f in rng.sample(FIELDS, rng.choice([0, 1, 2])):
        d = rng.choice([1, -1])
        sort_args.append(f if d == 1 else "-" + f)
        order.append((POS[f], d))
    return {"terms": terms, "order": order, "sort_args": sort_args,
            "limit": rng.choice([0, 0, 1, 5]), "offset": rng.choice([0, 0, 2])}


def oracle(data, spec):
    out = [r for r in data.values() if all(holds(op, r[POS[f]], a) for op, f, a in spec["terms"])]

    def cmp(a, b):
        for pos, d in spec["order"]:
            x, y = a[pos], b[pos]
            if x == y:
                continue
            c = 1 if x is None else -1 if y is None else (-1 if x < y else 1)
            return c * d
        return (a[0] > b[0]) - (a[0] < b[0])

    out.sort(key=functools.cmp_to_key(cmp))
    off, lim = spec["offset"], spec["limit"]
    return out[off:off + lim] if lim else out[off:]


def check(view, data, rng, n):
    for _ in range(n):
        spec = rand_spec(rng, data)
        q = view.query()
        for op, f, a in spec["terms"]:
            q.where(rng.choice(TCL_NAMES[op]), "nm" if f == "name" and rng.random() < 0.3 else f, *a)
        if spec["sort_args"]:
            q.sort_by(*spec["sort_args"])
        if spec["limit"]:
            q.limit(spec["limit"])
        if spec["offset"]:
            q.offset(spec["offset"])
        want = oracle(data, spec)
        ctx = f"{spec} plan={q.explain()!r}"
        if spec["order"]:
            assert q.rows() == want, ctx
        else:
            got = q.rows()
            assert len(got) == len(want), ctx
            if not spec["limit"] and not spec["offset"]:
                assert sorted(got, key=lambda r: r[0]) == sorted(want, key=lambda r: r[0]), ctx
        assert q.count() == len(want), ctx


@pytest.mark.parametrize("indexed", [True, False])
def test_oracle_on_text_bool_int_float_fields(mem_db, indexed):
    rng = random.Random(21 if indexed else 22)
    t = mem_db.create_table(Thing)
    if indexed:
        for f in ("name", "ok", "n", "x", "id"):
            t.create_index(f)
    data = {}
    for i in range(400):
        k = f"id{i:03d}"
        data[k] = rand_row(rng, k)
    t.upsert_many(list(data.values()))
    check(t, data, rng, 150)
    old = mem_db.begin()
    old_data = dict(data)
    for _ in range(300):
        k = rng.choice(list(data))
        if rng.random() < 0.2:
            t.delete(k)
            del data[k]
        else:
            f = rng.choice(FIELDS[1:])
            v = rand_value(rng, f)
            t.set(k, {f: v})
            data[k] = tuple(v if i == POS[f] else x for i, x in enumerate(data[k]))
    t._check()
    check(t, data, rng, 150)
    check(old.table("Thing"), old_data, rng, 150)
    old.rollback()
    t._check()
