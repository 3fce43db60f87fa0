"""Differential test: random searches through the Tcl command against SQLite
(Python's sqlite3) on the same rows, before and after updates and deletes.

SQL equivalents of docs/tcl.md's SEARCH rules: a null never satisfies a comparison, range,
in or match (SQL's three-valued logic does the same); ``match`` is a
case-insensitive glob (``lower(f) GLOB lower(p)``); in sorts null is greater
than every value (``f IS NULL`` first in the ORDER BY); ties by key ascending.
"""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_tcl_support import tsv_of

FIELDS = ["flight_id", "lat", "lon", "altitude", "gs", "updated_at"]
NUMERIC = {"lat": st.sampled_from([-10.5, -1.25, 0.0, 2.5, 3.75, 10.0, 45.125]),
           "lon": st.sampled_from([-120.0, -73.5, 0.5, 12.25, 100.0]),
           "altitude": st.integers(-100, 100).map(lambda x: x * 100),
           "gs": st.integers(0, 20).map(lambda x: x * 25),
           "updated_at": st.integers(0, 6).map(lambda x: 1700000000 + x)}
keys = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789", min_size=1, max_size=5)


@st.composite
def rows_strategy(draw):
    ks = draw(st.lists(keys, min_size=0, max_size=30, unique=True))
    rows = []
    for k in ks:
        row = [k]
        for f in FIELDS[1:]:
            row.append(draw(st.one_of(st.none(), NUMERIC[f])) if draw(st.integers(0, 5)) == 0
                       else draw(NUMERIC[f]))
        rows.append(tuple(row))
    return rows


@st.composite
def term_strategy(draw):
    op = draw(st.sampled_from(["=", "==", "!=", "<>", "<", "<=", ">", ">=", "range", "in",
                               "match", "notmatch", "match_case", "notmatch_case", "null",
                               "notnull", "true", "false"]))
    if op in ("match", "notmatch", "match_case", "notmatch_case"):
        pattern = draw(st.text("abAB*?0", min_size=0, max_size=4))
        return (op, "flight_id", pattern)
    if op in ("null", "notnull", "true", "false"):
        return (op, draw(st.sampled_from(FIELDS[1:])))
    field = draw(st.sampled_from(FIELDS))
    value = (lambda: draw(keys)) if field == "flight_id" else (lambda: draw(NUMERIC[field]))
    if op == "range":
        return (op, field, value(), value())
    if op == "in":
        return (op, field, [value() for _ in range(draw(st.integers(0, 3)))])
    return (op, field, value())


@st.composite
def query_strategy(draw):
    terms = draw(st.lists(term_strategy(), max_size=3))
    sort = draw(st.lists(st.tuples(st.sampled_from(FIELDS), st.booleans()), max_size=2))
    return terms, sort, draw(st.integers(0, 8)), draw(st.integers(0, 5))


def tcl_text(v):
    return repr(v) if isinstance(v, float) else str(v)


def tcl_search_args(tk, terms, sort, limit, offset):
    cmp_terms = []
    for t in terms:
        words = [t[0], t[1]]
        for v in t[2:]:
            words.append(tk.call("list", *[tcl_text(x) for x in v]) if isinstance(v, list)
                         else tcl_text(v))
        cmp_terms.append(tk.call("list", *words))
    args = ["-compare", tk.call("list", *cmp_terms)]
    if sort:
        args += ["-sort", tk.call("list", *[("-" if desc else "") + f for f, desc in sort])]
    return args + ["-limit", str(limit), "-offset", str(offset)]


def sql_of(terms, sort, limit, offset):
    where, params = [], []
    for t in terms:
        op, f = t[0], t[1]
        if op in ("=", "=="):
            where.append(f"{f} = ?"); params.append(t[2])
        elif op in ("!=", "<>"):
            where.append(f"{f} != ?"); params.append(t[2])
        elif op in ("<", "<=", ">", ">="):
            where.append(f"{f} {op} ?"); params.append(t[2])
        elif op == "range":
            where.append(f"({f} >= ? AND {f} < ?)"); params += [t[2], t[3]]
        elif op == "in":
            where.append(f"{f} IN ({', '.join('?' * len(t[2]))})" if t[2] else "0")
            params += t[2]
        elif op == "match":
            where.append(f"lower({f}) GLOB lower(?)"); params.append(t[2])
        elif op == "notmatch":
            where.append(f"NOT (lower({f}) GLOB lower(?))"); params.append(t[2])
        elif op == "match_case":
            where.append(f"{f} GLOB ?"); params.append(t[2])
        elif op == "notmatch_case":
            where.append(f"NOT ({f} GLOB ?)"); params.append(t[2])
        elif op == "null":
            where.append(f"{f} IS NULL")
        elif op == "notnull":
            where.append(f"{f} IS NOT NULL")
        elif op == "true":
            where.append(f"{f} != 0")
        elif op == "false":
            where.append(f"{f} = 0")
    order = []
    for f, desc in sort:
        order.append(f"{f} IS NULL {'DESC' if desc else 'ASC'}, {f} {'DESC' if desc else 'ASC'}")
    order.append("flight_id ASC")
    sql = "SELECT flight_id FROM f"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY " + ", ".join(order) + f" LIMIT {limit or -1} OFFSET {offset}"
    return sql, params


def check_queries(t, db, queries):
    for terms, sort, limit, offset in queries:
        args = tcl_search_args(t.tk, terms, sort, limit, offset)
        t.eval("set ::_keys {}")
        n = t.call("FlightState", "search", *args, "-key", "::_k", "-code", "lappend ::_keys $::_k")
        got = [str(x) for x in t.tk.splitlist(t.tk.call("set", "::_keys"))]
        sql, params = sql_of(terms, sort, limit, offset)
        want = [r[0] for r in db.execute(sql, params)]
        if not sort and (limit or offset):
            # Without -sort the order is the plan's (an index's or the heap's), so
            # which matching rows a -limit/-offset window holds is not specified:
            # the window is as long as SQL's, and made of distinct matching rows.
            every, every_params = sql_of(terms, sort, 0, 0)
            matching = {r[0] for r in db.execute(every, every_params)}
            assert len(got) == len(want) and len(set(got)) == len(got), (args, sql, got, want)
            assert set(got) <= matching, (args, sql, got, sorted(matching))
        elif not sort:      # no order asked: the same rows in any order
            assert sorted(got) == sorted(want), (args, sql, got, want)
        else:
            assert got == want, (args, sql, params, got, want)
        assert int(n) == len(want)
        assert int(t.call("FlightState", "search", *args, "-countOnly", "1")) == len(want)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(rows=rows_strategy(), queries=st.lists(query_strategy(), min_size=1, max_size=6),
       changes=st.lists(st.tuples(st.integers(0, 40), st.sampled_from(FIELDS[1:]),
                                  st.one_of(st.none(), st.integers(0, 20).map(lambda x: x * 25))),
                        max_size=8))
def test_search_matches_sqlite(module_tcl, rows, queries, changes):
    t = module_tcl
    t.call("FlightState", "search", "-delete", "1")
    t.call("FlightState", "ingest_tsv", tsv_of(rows))
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE f (flight_id TEXT PRIMARY KEY, lat REAL, lon REAL, altitude INTEGER, "
               "gs INTEGER, updated_at INTEGER)")
    db.executemany("INSERT INTO f VALUES (?, ?, ?, ?, ?, ?)", rows)
    check_queries(t, db, queries)
    # updates and deletes, mirrored; then the same queries again
    for i, field, value in changes:
        if not rows:
            break
        key = rows[i % len(rows)][0]
        if i % 5 == 4:
            t.call("FlightState", "delete", key)
            db.execute("DELETE FROM f WHERE flight_id = ?", (key,))
        else:
            if field in ("lat", "lon") and value is not None:
                value = float(value)
            t.call("FlightState", "set", key, field, "" if value is None else tcl_text(value))
            # set is an upsert: a deleted key comes back with the other fields null
            db.execute("INSERT OR IGNORE INTO f (flight_id) VALUES (?)", (key,))
            db.execute(f"UPDATE f SET {field} = ? WHERE flight_id = ?", (value, key))
    check_queries(t, db, queries)
