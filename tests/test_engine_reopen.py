"""After a reopen, indexes are rebuilt lazily (on first read): queries over version
chains made before that first read must still match the oracle, and _check holds."""

import random

import pytest

from aerostore import FlightState

from test_query_oracle import check_queries, make_rows, mutate


@pytest.mark.parametrize("seed", [11, 12])
def test_queries_after_reopen_with_chains_before_first_index_read(tmp_path, open_db, seed):
    rng = random.Random(seed)
    path = str(tmp_path / "db")
    db = open_db(path)
    t = db.create_table(FlightState)
    data0 = make_rows(rng, 400)
    t.upsert_many(list(data0.values()))
    t.create_index("flight_id")
    t.drop_index("lon")
    db.close()

    db = open_db(path)
    t = db.table("FlightState")
    assert t.indexed() == ["flight_id", "lat", "altitude", "gs", "updated_at"]
    old = db.begin()                          # before any index was read
    data1 = dict(data0)
    mutate(rng, t, data1, 200)                # writes while indexes are not built yet
    mid = db.begin()
    data2 = dict(data1)
    mutate(rng, t, data2, 100)
    check_queries(old.table("FlightState"), data0, rng, 100)
    check_queries(t, data2, rng, 60)
    check_queries(mid.table("FlightState"), data1, rng, 60)
    t._check()
    old.rollback()
    mid.rollback()
    t._check()
    check_queries(t, data2, rng, 60)
    assert db.stats()["versions"] == len(data2)
    db.close()
    db = open_db(path)
    t = db.table("FlightState")
    t._check()                                # builds every index from the heap
    check_queries(t, data2, rng, 60)
