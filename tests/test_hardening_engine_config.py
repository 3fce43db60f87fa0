"""Issue 10, item 1: every setting has a documented range; values outside it
are refused with ``AEROSTORE USAGE CONFIG key`` before any thread sees them."""

import pytest

import aerostore
from aerostore.config import Config
from aerostore.errors import UsageError

RANGES = {
    "aerostore.checkpoint_interval_secs": 86400,
    "aerostore.ttl_secs": 3153600000,
    "aerostore.ttl_sweep_interval_ms": 86400000,
    "aerostore.wal_flush_delay_ms": 60000,
}


def test_the_integer_settings_are_these():
    assert set(Config.keys()) == set(RANGES) | {"aerostore.synchronous_commit",
                                                "aerostore.readers_wait_for_writers"}


@pytest.mark.parametrize("key,hi", sorted(RANGES.items()))
def test_an_integer_setting_takes_its_whole_range(key, hi):
    cfg = Config()
    for ok in (0, hi, str(hi), f" {hi} "):
        cfg.set(key, ok)
    assert cfg.get(key) == hi


@pytest.mark.parametrize("key,hi", sorted(RANGES.items()))
@pytest.mark.parametrize("bad", [-1, "hi+1", "str(hi+1)", 10 ** 40, "1.5", "", True])
def test_an_integer_setting_refuses_values_outside_its_range(key, hi, bad):
    bad = {"hi+1": hi + 1, "str(hi+1)": str(hi + 1)}.get(bad, bad)
    cfg = Config()
    cfg.set(key, hi)
    with pytest.raises(UsageError) as ei:
        cfg.set(key, bad)
    assert ei.value.code == ("AEROSTORE", "USAGE", "CONFIG", key)
    assert str(ei.value) == f'bad value "{bad}" for {key}: expected an integer from 0 to {hi}'
    assert cfg.get(key) == hi                   # a refused value changes nothing


def test_a_refused_value_at_open_leaves_no_lock_behind(tmp_path, open_db):
    d = str(tmp_path / "db")
    with pytest.raises(UsageError) as ei:
        aerostore.open(d, wal_flush_delay_ms=10000000000000)
    assert ei.value.code[:3] == ("AEROSTORE", "USAGE", "CONFIG")
    assert open_db(d).get_config("aerostore.wal_flush_delay_ms") == 10


def test_the_reported_values_are_refused_on_set(tmp_path, open_db):
    db = open_db(str(tmp_path / "db"))
    with pytest.raises(UsageError):
        db.set_config("aerostore.ttl_sweep_interval_ms", 99999999999999)
    with pytest.raises(UsageError):
        db.set_config("aerostore.wal_flush_delay_ms", "10000000000000")
    assert db.get_config("aerostore.wal_flush_delay_ms") == 10
    assert db.get_config("aerostore.ttl_sweep_interval_ms") == 1000
