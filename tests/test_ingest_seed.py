"""Issue 5's seed scenario in Python: ingest in batches, a watch, the TTL sweeper."""

import time

import aerostore
from aerostore.flightstate import FlightState


def wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_seed_scenario():
    with aerostore.open(":memory:") as db:
        flights = db.create_table(FlightState)
        watch = db.subscribe("FlightState", key="UAL123")
        everything = db.subscribe("FlightState")
        now = int(time.time())

        r = db.ingest_tsv("FlightState",
                          f"UAL123\t40.64\t-73.78\t35000\t450\t{now}\n"
                          f"DAL456\t33.94\t-118.41\t12000\t300\t{now - 10000}\n", 2)
        assert (r.rows_seen, r.inserted, r.updated, r.batches) == (2, 2, 0, 1)
        assert str(r).startswith("rows_seen=2 inserted=2 updated=0 batches=1 elapsed_ms=")

        r = db.ingest_tsv("FlightState", f"UAL123\t40.70\t-73.70\t36000\t460\t{now}\n", 2)
        assert (r.rows_seen, r.inserted, r.updated, r.batches) == (1, 0, 1, 1)

        ev = watch.get(timeout=1.0)
        assert (ev.op, ev.key, ev.before) == ("insert", "UAL123", None)
        assert ev.after == ("UAL123", 40.64, -73.78, 35000, 450, now)
        ev = watch.get(timeout=1.0)
        assert (ev.op, ev.key) == ("update", "UAL123")
        assert ev.before[3] == 35000 and ev.after == ("UAL123", 40.70, -73.70, 36000, 460, now)
        assert watch.get(timeout=0.05) is None

        db.set_config("aerostore.ttl_sweep_interval_ms", 25)
        db.set_config("aerostore.ttl_secs", 600)
        assert db.ttl.running
        time.sleep(0.2)
        assert wait_for(lambda: not flights.exists("DAL456"))     # generous deadline on a busy box
        assert flights.get("UAL123")[3] == 36000
        assert flights.count() == 1
        assert db.ttl.sweeps >= 2 and db.ttl.deleted == 1

        ops = [(e.op, e.key) for e in (everything.get(timeout=1.0) for _ in range(4))]
        assert ops == [("insert", "UAL123"), ("insert", "DAL456"), ("update", "UAL123"),
                       ("delete", "DAL456")]
        assert everything.get(timeout=0.05) is None
    assert not db.ttl.running
