"""The collector's policy around writes (aerostore/gcpause.py): small commits
keep the youngest generation small, so no collection walks a pile of row
tuples a feed left behind.  Counted with gc.get_objects(0); no timings."""

from __future__ import annotations

import gc

import pytest

import aerostore
from aerostore import FlightState, gcpause


@pytest.fixture
def collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_small_commits_keep_the_young_generation_small(collector_on, tmp_path):
    db = aerostore.open(str(tmp_path / "db"))
    try:
        t = db.create_table(FlightState)
        t.upsert_many([(f"K{i}", 1.0, 2.0, i, 5, 6) for i in range(3000)])   # a bulk load
        gc.collect()
        for b in range(40):           # 4000 updated rows in 100-row commits, as a feed does
            t.upsert_many([(f"K{(b * 100 + j) % 3000}", 1.5, 2.5, b, j, 7) for j in range(100)])
        young = len(gc.get_objects(0))
        # every update leaves a new tracked row tuple; without the young
        # collections about 4000 of them would be waiting in generation 0
        assert young < 2 * gcpause.YOUNG_ROWS, young
        assert t.count() == 3000 and t.get("K5") == ("K5", 1.5, 2.5, 30, 5, 7)
    finally:
        db.close()


def test_no_young_collection_while_the_collector_is_off(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(gc, "collect", lambda gen=2: calls.append(gen) or 0)
    was = gc.isenabled()
    gc.disable()
    try:
        gcpause.young(gcpause.YOUNG_ROWS)
    finally:
        if was:
            gc.enable()
    assert calls == []
    gcpause.young(gcpause.YOUNG_ROWS)
    assert calls == ([0] if was else [])
