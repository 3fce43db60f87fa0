"""The Query builder's surface: chaining, sort forms, limit/offset arguments, helpers."""

import pytest

import aerostore


@pytest.fixture
def t(flights):
    flights.upsert_many([
        ("A", 10.0, 1.0, 300, 5, 1), ("B", 20.0, 2.0, 100, 5, 2), ("C", None, 3.0, 200, None, 3),
        ("D", 20.0, None, None, 7, 4), ("E", -5.0, 5.0, 100, 7, 5),
    ])
    return flights


def test_every_method_returns_the_same_query(t):
    q = t.query()
    assert q.gt("alt", 0) is q and q.sort_by("lat") is q and q.desc() is q
    assert q.limit(2) is q and q.offset(0) is q and q.where("notnull", "gs") is q


def test_sort_forms_are_equivalent(t):
    q = t.query
    a = q().sort_by("lat", "-altitude").keys()
    assert a == ["E", "A", "D", "B", "C"]                       # null altitude first when descending
    assert q().sort_by(("latitude", "asc"), ("alt", "desc")).keys() == a
    assert q().sort_by("lat").sort_by("-alt").keys() == a          # sort_by accumulates
    # desc() flips only keys without a sign
    assert q().sort_by("lat", "-alt").desc().keys() == ["C", "D", "B", "A", "E"]
    assert q().sort_by("lat", ("alt", "asc")).desc().keys() == ["C", "B", "D", "A", "E"]
    assert q().sort_by("lat").desc().desc(False).keys() == q().sort_by("lat").keys()
    assert q().sort_by("gs", "-lat").keys() == ["B", "A", "D", "E", "C"]


def test_limit_offset_arguments(t):
    q = t.query
    assert q().sort_by("flight_id").limit("2").keys() == ["A", "B"]
    assert q().sort_by("flight_id").limit(0).keys() == ["A", "B", "C", "D", "E"]
    assert q().sort_by("flight_id").offset("3").keys() == ["D", "E"]
    assert q().sort_by("flight_id").offset(2).limit(2).keys() == ["C", "D"]
    assert q().sort_by("flight_id").offset(10).keys() == []
    assert q().offset(4).count() == 1 and q().limit(3).count() == 3
    for bad in (-1, "-1", "x", "1.5", True, None):
        with pytest.raises(aerostore.UsageError):
            q().limit(bad)
        with pytest.raises(aerostore.UsageError):
            q().offset(bad)


def test_first_iter_keys_rows(t):
    q = t.query().sort_by("-altitude")
    assert q.first()[0] == "D"
    assert [r[0] for r in q] == q.keys() == [r[0] for r in q.rows()]
    assert t.query().eq("ident", "nope").first() is None


def test_values_are_typed_by_the_field(t):
    q = t.query
    assert sorted(q().eq("alt", "100").keys()) == ["B", "E"]
    assert sorted(q().in_values("gs", ["5", 7]).keys()) == ["A", "B", "D", "E"]
    assert q().range("lat", "0", "15.5").keys() == ["A"]
    assert q().eq("flight_id", "A").keys() == ["A"]
    with pytest.raises(aerostore.UsageError):
        q().gt("gs", 70000)                 # out of the field's range
    with pytest.raises(aerostore.UsageError):
        q().gt("lat", "nan")


def test_query_delete(t):
    assert t.query().null("lat").delete() == 1
    assert t.query().sort_by("-alt").limit(1).delete() == 1       # D: a null altitude comes first descending
    assert sorted(t.query().keys()) == ["A", "B", "E"]
    assert t.query().delete() == 3 and t.count() == 0
    t._check()
