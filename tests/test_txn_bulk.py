"""TxnTable.upsert_many validates like upsert; upsert_checked is the ingest path."""

import pytest

import aerostore
from aerostore.errors import UsageError


def test_upsert_many_in_a_transaction_checks_every_row(mem_db, flights):
    with mem_db.transaction() as txn:
        t = txn.table("FlightState")
        assert t.upsert_many([("A", 1.0, 2.0, 3, 4, 5), {"flight_id": "B", "gs": 7}]) == (2, 0)
        for bad in (("C", "north", 2.0, 3, 4, 5), ("bad\ud800", 1.0, 2.0, 3, 4, 5), ("D", 1.0), b"row"):
            with pytest.raises(UsageError):
                t.upsert_many([("E", 1.0, 2.0, 3, 4, 5), bad])
        assert t.get("E") is None                  # nothing of a refused call was written
    assert flights.get("B")[4] == 7 and flights.get("C") is None
    flights._check()


def test_upsert_checked_takes_validated_tuples(mem_db, flights):
    rows = [aerostore.FlightState.check_row((f"K{i}", 1.0, 2.0, i, 4, 5)) for i in range(3)]
    with mem_db.transaction() as txn:
        assert txn.table("FlightState").upsert_checked(rows) == (3, 0)
    assert flights.count() == 3
