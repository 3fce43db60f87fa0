"""The planner's executors (planner.py): one class per PlanKind, chosen by choose().

Each kind answers rows() and count() like a brute-force model on frozen rows,
on version chains seen from an old snapshot, and inside a transaction with its
own writes; explain()'s whole line is pinned per kind; a count never walks.
"""

import random

import pytest

import aerostore
from aerostore import planner
from aerostore.planner import PlanKind
from conftest import vacuum_now

N = 3000
FIELDS = ("flight_id", "lat", "lon", "altitude", "gs", "updated_at")


def make_rows(rnd, n, tag=""):
    return [(f"K{i:05d}{tag}", rnd.uniform(-90, 90), rnd.uniform(-180, 180),
             None if rnd.random() < 0.1 else rnd.randrange(45000), rnd.randrange(700), i)
            for i in range(n)]


# name -> (build(query), model predicate, sort spec [(field index, desc)], limit, offset)
def _between(lo, hi):
    return lambda v: v is not None and lo <= v < hi


QUERIES = {
    "key_eq": (lambda q: q.eq("flight_id", "K00042"), lambda r: r[0] == "K00042", [], 0, 0),
    "key_in": (lambda q: q.in_values("flight_id", ["K00007", "K02999", "nope", "K00100"]).gt("gs", 50),
               lambda r: r[0] in ("K00007", "K02999", "K00100") and r[4] > 50, [], 0, 0),
    "index": (lambda q: q.range("altitude", 1000, 3000).gt("gs", 100),
              lambda r: _between(1000, 3000)(r[3]) and r[4] > 100, [], 0, 0),
    "index_only": (lambda q: q.range("altitude", 1000, 3000), lambda r: _between(1000, 3000)(r[3]), [], 0, 0),
    "index_in": (lambda q: q.in_values("gs", [5, 6, 7, 500]), lambda r: r[4] in (5, 6, 7, 500), [], 0, 0),
    "index_limit": (lambda q: q.range("altitude", 1000, 3000).limit(7).offset(2),
                    lambda r: _between(1000, 3000)(r[3]), None, 7, 2),
    "intersect": (lambda q: q.range("lat", 0, 20).range("lon", 0, 40),
                  lambda r: 0 <= r[1] < 20 and 0 <= r[2] < 40, [], 0, 0),
    "intersect_top": (lambda q: q.range("lat", 0, 20).range("lon", 0, 40).sort_by("-altitude").limit(5).offset(1),
                      lambda r: 0 <= r[1] < 20 and 0 <= r[2] < 40, [(3, True)], 5, 1),
    "walk_asc": (lambda q: q.sort_by("altitude").limit(10).offset(3), lambda r: True, [(3, False)], 10, 3),
    "walk_desc": (lambda q: q.sort_by("-altitude", "lat").limit(12), lambda r: True, [(3, True), (1, False)], 12, 0),
    "walk_filtered": (lambda q: q.gt("gs", 600).sort_by("gs").limit(4),
                      lambda r: r[4] > 600, [(4, False)], 4, 0),
    # ties (gs takes 700 values over 3000 rows): groups straddle the offset and the limit
    "walk_ties_offset": (lambda q: q.sort_by("gs").limit(9).offset(26),
                         lambda r: True, [(4, False)], 9, 26),
    "walk_ties_multi": (lambda q: q.lt("altitude", 30000).sort_by("-gs", "lat").limit(7).offset(19),
                        lambda r: r[3] is not None and r[3] < 30000, [(4, True), (1, False)], 7, 19),
    # the offset falls among the null rows (327 of them) that a descending walk returns first
    "walk_desc_nulls": (lambda q: q.sort_by("-altitude").limit(8).offset(324),
                        lambda r: True, [(3, True)], 8, 324),
    "scan": (lambda q: q.match("flight_id", "K001*"), lambda r: r[0].startswith("K001"), [], 0, 0),
    "scan_sorted": (lambda q: q.match("flight_id", "K00*").sort_by("-flight_id").limit(9),
                    lambda r: r[0].startswith("K00"), [(0, True)], 9, 0),
    "scan_columns": (lambda q: q.ne("gs", 5).notnull("altitude"),
                     lambda r: r[4] != 5 and r[3] is not None, [], 0, 0),
    "scan_columns_mixed": (lambda q: q.ne("gs", 5).match("flight_id", "K00*").sort_by("-flight_id").limit(6),
                           lambda r: r[4] != 5 and r[0].startswith("K00"), [(0, True)], 6, 0),
    "nulls": (lambda q: q.null("altitude"), lambda r: r[3] is None, [], 0, 0),
    "nulls_sorted": (lambda q: q.null("altitude").sort_by("gs"),
                     lambda r: r[3] is None, [(4, False)], 0, 0),
}

KINDS = {
    "key_eq": "key", "key_in": "key", "index": "index", "index_only": "index", "index_in": "index",
    "index_limit": "index", "intersect": "intersect", "intersect_top": "intersect",
    "walk_asc": "walk", "walk_desc": "walk", "walk_filtered": "walk",
    "walk_ties_offset": "walk", "walk_ties_multi": "walk", "walk_desc_nulls": "walk",
    "scan": "scan", "scan_sorted": "scan", "scan_columns": "scan", "scan_columns_mixed": "scan",
    "nulls": "nulls", "nulls_sorted": "nulls",
}


def model_rows(rows, name):
    _build, pred, sort, limit, offset = QUERIES[name]
    out = [r for r in rows if pred(r)]
    out.sort(key=lambda r: r[0])
    for pos, desc in reversed(sort or []):
        # nulls greatest: last ascending, first descending (stable sorts, key last)
        vals = [r for r in out if r[pos] is not None]
        nulls = [r for r in out if r[pos] is None]
        vals.sort(key=lambda r: r[pos], reverse=desc)
        out = nulls + vals if desc else vals + nulls
    if sort is None:
        # an unsorted limit: any rows that match; compare as a count and a subset
        return out, offset, limit
    out = out[offset:]
    return (out[:limit] if limit else out), 0, 0


def check(t, rows, name):
    build = QUERIES[name][0]
    want, off, lim = model_rows(rows, name)
    got = build(t.query()).rows()
    n = build(t.query()).count()
    if QUERIES[name][2] is None:
        assert len(got) == n == max(0, min(lim, len(want) - off)), name
        assert set(got) <= set(want), name
        return
    if not QUERIES[name][2]:
        got.sort()          # no sort: the path's order (key order in the model)
    assert got == want, name
    assert n == len(want), name


@pytest.fixture
def loaded(mem_db):
    t = mem_db.create_table(aerostore.FlightState)
    rows = make_rows(random.Random(11), N)
    t.upsert_many(rows)
    return mem_db, t, rows


def test_every_kind_has_an_executor():
    classes = {c.kind: c for c in (planner.KeyLookup, planner.IndexRange, planner.Intersect,
                                    planner.Walk, planner.Scan, planner.Nulls)}
    assert set(classes) == set(PlanKind)
    for kind, cls in classes.items():
        assert issubclass(cls, planner.Plan)
        assert cls.__doc__ and "O(" in cls.__doc__, cls
        assert callable(cls.describe) and callable(cls.rows) and callable(cls.count)


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_choose_picks_the_kind(loaded, name):
    _db, t, _rows = loaded
    q = QUERIES[name][0](t.query())
    plan = planner.choose(t._st, q, False)
    assert plan.kind == KINDS[name], (name, q.explain())
    assert q.explain().startswith({"key": "key lookup", "index": "index ", "intersect": "index intersect",
                                   "walk": "ordered walk", "scan": "full scan",
                                   "nulls": "index nulls"}[KINDS[name]])
    assert planner.choose(t._st, q, True).kind != PlanKind.WALK     # a count never walks


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_frozen_rows_match_the_model(loaded, name):
    _db, t, rows = loaded
    check(t, rows, name)


def _rewrite(t, rows) -> dict:
    """Every third row rewritten (some twice) and some deleted; the rows now, by key."""
    rnd = random.Random(5)
    new = {r[0]: r for r in rows}
    for i in range(0, N, 3):
        r = rows[i]
        r2 = (r[0], rnd.uniform(-90, 90), rnd.uniform(-180, 180),
              None if rnd.random() < 0.1 else rnd.randrange(45000), rnd.randrange(700), r[5] + N)
        t.upsert(r2)
        new[r[0]] = r2
    for i in range(0, N, 9):
        t.upsert(new[rows[i][0]][:5] + (7,))
        new[rows[i][0]] = new[rows[i][0]][:5] + (7,)
    for i in range(1, N, 50):
        t.delete(rows[i][0])
        del new[rows[i][0]]
    assert t._st.unfrozen
    return new


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_old_snapshot_over_version_chains(loaded, name):
    """A reader's snapshot, then every third row rewritten (some twice) and some
    deleted: the reader sees its rows through the chains; a new reader sees the new."""
    db, t, rows = loaded
    reader = db.begin()
    rt = reader.table("FlightState")
    try:
        new = _rewrite(t, rows)
        check(rt, rows, name)
        check(t, sorted(new.values()), name)
    finally:
        reader.rollback()


WALKS = sorted(n for n, k in KINDS.items() if k == "walk")


@pytest.mark.parametrize("name", WALKS)
def test_walks_on_the_columns_over_version_chains(loaded, monkeypatch, name):
    """The walks again with every chunk tested on the columns (``_walk_matches``): on
    frozen rows, and over chains from an old snapshot and a new one."""
    db, t, rows = loaded
    monkeypatch.setattr(planner, "_VEC_MIN", 1)
    check(t, rows, name)
    reader = db.begin()
    try:
        new = _rewrite(t, rows)
        check(reader.table("FlightState"), rows, name)
        check(t, sorted(new.values()), name)
    finally:
        reader.rollback()


class _Reads:
    """A row view that counts its reads (a field's values, ``Columns.arrays[3]``)."""

    def __init__(self, view):
        self.view = view
        self.n = 0

    def __getitem__(self, i):
        self.n += 1
        return self.view[i]


def _count_builds(t, monkeypatch):
    """Count the rows a query makes from the columns: reads of updated_at (no term or
    sort of the queries reads it) through the row views, and the slots handed to
    ``TableStore.rows_at`` / ``row_at`` (which may gather whole columns)."""
    from aerostore.heap import TableStore
    cols = t._st.columns
    a = cols.arrays
    views = list(a[3])
    reads = views[8] = _Reads(views[8])         # updated_at's values: after 4 fields' (values, nulls)
    monkeypatch.setattr(cols, "arrays", a[:3] + (tuple(views),) + a[4:])
    got = {"rows_at": 0}
    real_rows_at, real_row_at = TableStore.rows_at, TableStore.row_at

    # a row made inside rows_at/row_at counts once, as a slot handed over, whether
    # it is gathered or made through the views (a short list: Columns.rows_of)
    def rows_at(self, slots, s, keep_none=False):
        n0 = reads.n
        out = real_rows_at(self, slots, s, keep_none)
        got["rows_at"] += len(slots) - (reads.n - n0)
        return out

    def row_at(self, slot, s):
        n0 = reads.n
        out = real_row_at(self, slot, s)
        got["rows_at"] += 1 - (reads.n - n0)
        return out

    monkeypatch.setattr(TableStore, "rows_at", rows_at)
    monkeypatch.setattr(TableStore, "row_at", row_at)
    return lambda: reads.n + got["rows_at"]


@pytest.mark.parametrize("vec_min", [1 << 30, 1])     # the generated filter; the column test
def test_a_walk_makes_only_the_rows_it_returns(loaded, monkeypatch, vec_min):
    """Late materialization: a walk collects settled matches as slots and makes tuples
    only of the rows it returns, not of those the terms reject nor of those the
    offset skips (here lat has no ties, so no boundary group needs its rows)."""
    _db, t, rows = loaded
    monkeypatch.setattr(planner, "_VEC_MIN", vec_min)
    q = lambda: t.query().range("altitude", 0, 30000).sort_by("lat").limit(10).offset(40)  # noqa: E731
    assert q().explain().startswith("ordered walk lat asc")
    want = sorted((r for r in rows if r[3] is not None and r[3] < 30000),
                  key=lambda r: (r[1], r[0]))[40:50]
    builds = _count_builds(t, monkeypatch)
    assert q().rows() == want
    assert builds() == 10


def test_an_index_range_makes_no_tuple_of_a_rejected_row(loaded, monkeypatch):
    """The generated entry filter tests a settled row's terms on its column values:
    only the rows that match are made tuples."""
    _db, t, rows = loaded
    q = lambda: t.query().range("altitude", 1000, 3000).match("flight_id", "K029*")  # noqa: E731
    assert q().explain().startswith("index range altitude (")
    want = sorted(r for r in rows
                  if r[3] is not None and 1000 <= r[3] < 3000 and r[0].startswith("K029"))
    assert 0 < len(want) < sum(1 for r in rows if r[3] is not None and 1000 <= r[3] < 3000) / 3
    builds = _count_builds(t, monkeypatch)
    assert sorted(q().rows()) == want
    assert builds() == len(want)


def test_a_walks_boundary_groups_are_made_whole(loaded, monkeypatch):
    """With ties at both ends of [offset, offset+limit) (gs), the rows of those two tie
    groups outside it are made too (to order each group by key), and no others."""
    _db, t, rows = loaded
    srt = sorted(rows, key=lambda r: (r[4], r[0]))
    want = srt[26:35]
    lo = next(i for i in range(26, -1, -1) if srt[i][4] != srt[26][4]) + 1
    hi = next(i for i in range(34, N) if srt[i][4] != srt[34][4])
    assert lo < 26 and hi > 35, "the data no longer has ties at both ends"
    builds = _count_builds(t, monkeypatch)
    assert t.query().sort_by("gs").limit(9).offset(26).rows() == want
    assert builds() == hi - lo


def test_a_walk_to_the_end_puts_the_nulls_last(loaded):
    """A walk (ascending, unbounded above) that runs out of entries before offset+limit
    rows appends the null rows, last, sorted by key (an estimate far off can make
    choose() walk so; the executor is built by hand here)."""
    db, t, rows = loaded
    st = t._st
    q = t.query().lt("gs", 40).sort_by("altitude").limit(400).offset(3)
    ix = st.indexes[3]
    s = db._snaps.take()
    try:
        got = planner.Walk(st, q, 10.0, ix, [(None, None)], False).rows(s, None)
    finally:
        db._snaps.release(s)
    match = [r for r in rows if r[4] < 40]
    want = (sorted((r for r in match if r[3] is not None), key=lambda r: (r[3], r[0]))
            + sorted((r for r in match if r[3] is None), key=lambda r: r[0]))[3:403]
    assert any(r[3] is None for r in want) and got == want


def test_a_row_changed_before_its_late_build_is_the_snapshots(loaded, monkeypatch):
    """The rows of a boundary group are made after the walk (``_built``): a commit and a
    prune in between (a writer between the walk and those reads) change nothing, the
    reader's snapshot holds the rows it tested: a thawed slot's chain has them."""
    db, t, rows = loaded
    real = planner.Walk._built
    staged = []

    def built(self, items, s):
        slots = [x for x in items if x.__class__ is int]
        if slots and not staged:
            staged.append(len(slots))
            st = self.store
            keys = [st.rows[x] for x in slots]
            t.upsert_many([(k, 0.0, 0.0, 1, 1, 1) for k in keys])      # thaws the slots
            vacuum_now(db)                                             # the reader holds them
        return real(self, items, s)

    reader = db.begin()
    try:
        rt = reader.table("FlightState")
        monkeypatch.setattr(planner.Walk, "_built", built)
        got = rt.query().sort_by("gs").limit(9).offset(26).rows()
    finally:
        reader.rollback()
    assert staged, "no row was left to make after the walk"
    assert got == sorted(rows, key=lambda r: (r[4], r[0]))[26:35]
    t._check()


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_inside_a_transaction_with_own_writes(loaded, name):
    db, t, rows = loaded
    rnd = random.Random(8)
    with db.transaction() as txn:
        tt = txn.table("FlightState")
        mine = {r[0]: r for r in rows}
        for r in make_rows(rnd, 40, tag="x"):
            tt.upsert(r)
            mine[r[0]] = r
        for i in range(0, N, 37):
            r = rows[i]
            r2 = (r[0], r[1], r[2], rnd.choice([None, 1500, 2500, 44000]), rnd.randrange(700), r[5])
            tt.upsert(r2)
            mine[r[0]] = r2
        for i in range(5, N, 101):
            tt.delete(rows[i][0])
            del mine[rows[i][0]]
        check(tt, sorted(mine.values()), name)
        txn.rollback()


def test_explain_lines_whole(loaded):
    """The text of every kind, counts included (the frozen table: an entry per row)."""
    _db, t, rows = loaded
    q = t.query
    alt = sum(1 for r in rows if r[3] is not None and 1000 <= r[3] < 3000)
    lat = sum(1 for r in rows if 0 <= r[1] < 20)
    lon = sum(1 for r in rows if 0 <= r[2] < 40)
    nulls = sum(1 for r in rows if r[3] is None)
    assert q().eq("flight_id", "K00001").explain() == "key lookup (1 key)"
    assert q().in_values("flight_id", ["a", "b"]).explain(count=True) == "key lookup (2 keys)"
    assert q().range("altitude", 1000, 3000).gt("gs", 100).explain() == f"index range altitude ({alt} entries)"
    assert q().range("altitude", 1000, 3000).explain(count=True) == f"index only count altitude ({alt} entries)"
    assert (q().range("altitude", 1000, 3000).sort_by("lat").explain()
            == f"index range altitude ({alt} entries), then sort")
    assert (q().range("altitude", 1000, 3000).sort_by("lat").limit(3).offset(2).explain(count=True)
            == f"index only count altitude ({alt} entries)")
    box = q().range("lat", 0, 20).range("lon", 0, 40)
    small, big = sorted([lat, lon])
    est = int((lat + lon) * planner._SLOT_COST + float(small) * (big / N))   # choose()'s arithmetic
    parts = " & ".join(f"{f} ({n} entries)" for n, f in sorted([(lon, "lon"), (lat, "lat")]))
    assert box.explain() == f"index intersect {parts}, ~{est} rows rechecked"
    assert (box.sort_by("gs").limit(4).explain()
            == f"index intersect {parts}, ~{est} rows rechecked, then heap top 4")
    assert q().sort_by("-altitude").limit(10).offset(5).explain().startswith("ordered walk altitude desc (~")
    assert q().sort_by("-altitude").limit(10).offset(5).explain().endswith(" entries), stop at 15 rows")
    assert q().null("altitude").explain() == f"index nulls altitude (~{nulls} rows)"
    assert q().null("altitude").sort_by("gs").explain() == f"index nulls altitude (~{nulls} rows), then sort"
    assert q().match("lat", "1*").explain() == f"full scan ({N} rows, compiled predicate)"
    assert q().ne("gs", 5).explain() == f"full scan ({N} rows, columns)"
    assert (q().ne("gs", 5).match("lat", "1*").explain(count=True)
            == f"full scan ({N} rows, columns + 1 term compiled)")
    assert (q().match("lat", "1*").sort_by("flight_id").limit(2).explain()
            == f"full scan ({N} rows, compiled predicate), then heap top 2")
    # glob matches on the key: the key buffer (keyscan.py)
    assert q().match("flight_id", "K1*").explain() == f"full scan ({N} rows, key buffer match)"
    assert (q().match("flight_id", "K1*").notmatch_case("flight_id", "*7").sort_by("lat").explain(count=True)
            == f"full scan ({N} rows, key buffer 2 matches)")
    assert (q().ne("gs", 5).match("flight_id", "K1*").match("lat", "1*").explain(count=True)
            == f"full scan ({N} rows, columns + key buffer match + 1 term compiled)")
    assert (q().match("flight_id", "K1*").sort_by("flight_id").limit(2).explain()
            == f"full scan ({N} rows, key buffer match), then heap top 2")
    assert q().match("flight_id", "\u00e9*").explain() == f"full scan ({N} rows, compiled predicate)"


def test_a_failing_column_scan_leaves_the_latch_free(loaded, monkeypatch):
    """An error inside a scan part leaves the latch free (scans take none), even
    while the caller keeps the traceback: a writer can take the latch next."""
    import threading

    from aerostore.columns import Columns
    _db, t, _rows = loaded
    q = t.query().ne("gs", 5)
    q.count()                                       # the columns exist

    def boom(self, *a, **k):
        raise MemoryError("injected")

    monkeypatch.setattr(Columns, "marks", boom)
    with pytest.raises(MemoryError) as kept:        # `kept` holds the traceback and its frames
        q.count()
    took = threading.Event()
    th = threading.Thread(target=lambda: (t._st.latch.__enter__(), took.set(), t._st.latch.__exit__()),
                          daemon=True)
    th.start()
    assert took.wait(5), "a writer could not take the latch after a failed scan"
    assert kept.value.args == ("injected",)


def _from_page(q):
    """``q._page()`` (the Tcl search's rows) with each slot replaced by its row at
    the page's snapshot; and how many slots it held."""
    items, check = q._page()
    if check is None:
        assert not any(x.__class__ is int for x in items)
        return items, 0
    store, fseq, s = check
    assert fseq == store.fseq and fseq % 2 == 0
    slots = [x for x in items if x.__class__ is int]
    return [store.row_at(x, s) if x.__class__ is int else x for x in items], len(slots)


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_a_page_is_the_rows_with_settled_rows_as_slots(loaded, name):
    """Walk.page leaves a walk's settled rows as their slots and makes no other
    change: read back at its snapshot, a page is rows(), on frozen rows and
    over chains from an old snapshot and a new one (no own writes: a
    transaction's page has slots too); every other kind answers rows()."""
    db, t, rows = loaded
    build = QUERIES[name][0]
    got, nslots = _from_page(build(t.query()))
    assert got == build(t.query()).rows()
    # a walk's page holds slots but for null rows (walk_desc: nulls only) and the
    # rows of tie groups ordered by a second sort field (walk_ties_multi: about
    # four rows share each gs value); groups ordered by key alone keep their slots
    assert (nslots > 0) == (name in ("walk_asc", "walk_filtered", "walk_ties_offset",
                                     "walk_desc_nulls")), name
    reader = db.begin()
    try:
        _rewrite(t, rows)
        for table in (reader.table("FlightState"), t):
            got, _ = _from_page(build(table.query()))
            assert got == build(table.query()).rows(), name
    finally:
        reader.rollback()


def test_a_tie_group_ordered_by_key_keeps_its_slots_even_if_a_write_thaws_one(loaded):
    """Walk._ties_ordered with the walked field as the only sort key orders a tie
    group by key without making its rows: a slot's key is its ``rows`` head, or
    its chain's when a write thawed the slot after the walk (the page stays
    valid: fseq did not move)."""
    db, t, rows = loaded
    vacuum_now(db)
    st = t._st
    q = t.query().sort_by("gs").limit(5)
    plan = planner.choose(st, q, False)
    assert plan.kind == PlanKind.WALK
    gs = rows[0][4]
    group = sorted((st.slots[r[0]] for r in rows if r[4] == gs), reverse=True)
    assert len(group) >= 3 and all(st.rows[x].__class__ is str for x in group)
    s = db._snaps.take()            # the page's snapshot: the old version stays
    try:
        t.set(st.rows[group[0]], {"altitude": 7})      # thawed: its head is a chain now
        assert st.rows[group[0]].__class__ is not str
        got = plan._ties_ordered(["first"] + group, list(range(1, len(group))), s)
    finally:
        db._snaps.release(s)
    assert got[0] == "first" and sorted(got[1:]) == sorted(group)
    assert all(x.__class__ is int for x in got[1:])
    keys = [st.row_at(x, db._snaps.watermark)[0] for x in got[1:]]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


def test_a_page_with_own_writes_or_too_long_is_rows(loaded, monkeypatch):
    db, t, rows = loaded
    txn = db.begin()
    try:
        tt = txn.table("FlightState")
        tt.set(rows[0][0], {"altitude": 1})
        assert _from_page(tt.query().sort_by("altitude").limit(5)) == \
            (tt.query().sort_by("altitude").limit(5).rows(), 0)
    finally:
        txn.rollback()
    monkeypatch.setattr(planner, "_PAGE_SLOTS", 4)
    assert _from_page(t.query().sort_by("altitude").limit(5)) == \
        (t.query().sort_by("altitude").limit(5).rows(), 0)


def test_a_walk_is_remembered_until_what_it_read_changes(loaded, monkeypatch):
    """choose() walks a query again without weighing the paths while the store,
    its number of keys and the indexes' views it read are the same; a write,
    a change to the query, or a dropped index make it choose again."""
    db, t, rows = loaded
    weighed = []
    real = planner._choose
    monkeypatch.setattr(planner, "_choose", lambda *a: weighed.append(a[1]) or real(*a))
    q = t.query().sort_by("altitude").limit(10)
    first = q.rows()
    assert len(weighed) == 1 and q._walk_memo is not None
    assert q.rows() == first and q._page()[0] and len(weighed) == 1
    made = dict(q._walk_memo[1][4])     # the walk's compiled entry filters, kept
    assert len(made) == 1 and q.rows() == first and q._walk_memo[1][4] == made
    assert q.count() == 10 and len(weighed) == 2        # a count never walks: weighed
    t.upsert(("NEW", 1.0, 2.0, -5, 1, 1))               # a write publishes new views
    assert q.rows()[0][0] == "NEW" and len(weighed) == 3
    assert q.rows()[0][0] == "NEW" and len(weighed) == 3
    q.offset(1)
    assert q.rows()[0] == first[0] and len(weighed) == 4
    t.drop_index("altitude")
    assert q.rows()[0] == first[0] and len(weighed) == 5
    assert q._walk_memo is None and planner.choose(t._st, q, False).kind != PlanKind.WALK


@pytest.mark.parametrize("sort", [("lat",), ("-lat",), ("lat", "-gs"), ("-lat", "gs")])
def test_a_page_orders_its_tie_groups_and_keeps_the_other_slots(mem_db, sort):
    """Ties among a page's rows: each group of equal values is made rows and
    ordered (the remaining sort keys, then the key), the other rows stay
    slots; read back, the page is rows(), groups straddling the offset and the
    limit too."""
    t = mem_db.create_table(aerostore.FlightState)
    rnd = random.Random(3)
    # lat: 0, 0.5 twice, 3, 3.5 twice, ...: a row alone, then a tie of two
    rows = [(f"T{i:04d}", float(i) if i % 3 == 0 else i // 3 * 3 + 0.5, 0.0, 1, rnd.randrange(9), i)
            for i in range(400)]
    rnd.shuffle(rows)
    t.upsert_many(rows)
    for off, lim in ((0, 12), (1, 12), (5, 30), (2, 3)):
        q = t.query().sort_by(*sort).limit(lim).offset(off)
        assert planner.choose(t._st, q, False).kind == PlanKind.WALK
        got, nslots = _from_page(q)
        assert got == t.query().sort_by(*sort).limit(lim).offset(off).rows(), (sort, off, lim)
        assert nslots > 0
