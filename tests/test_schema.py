"""Table declarations, aliases, value coercion, configuration and error codes."""

import math

import pytest

import aerostore
from aerostore import FlightState
from aerostore.errors import (AerostoreError, ClosedError, CorruptError, DecodeError, LockedError,
                              ReadOnlyError, StorageIOError, TransientError, UsageError, WriteConflict)
from aerostore.schema import Schema


@aerostore.table(indexes=("price", "sym"))
class Trade:
    sym = aerostore.Key(aliases=("symbol",))
    price = aerostore.Float(aliases=("px",))
    qty = aerostore.Int(bits=8)
    lots = aerostore.UInt(bits=16, index=True)
    venue = aerostore.Str(nullable=False)
    live = aerostore.Bool()


def test_declaration_shape():
    assert isinstance(Trade, Schema)
    assert Trade.name == "Trade"
    assert Trade.names == ("sym", "price", "qty", "lots", "venue", "live")
    assert Trade.key_pos == 0 and Trade.key_name == "sym"


def test_indexes_argument_overrides_index_flags():
    assert Trade.default_indexes == ("price", "sym")


def test_aliases_name_the_field():
    assert Trade.position("symbol") == 0 and Trade.position("px") == 1
    assert Trade.canonical("px") == "price"


def test_flightstate_fields_and_indexes():
    assert FlightState.names == ("flight_id", "lat", "lon", "altitude", "gs", "updated_at")
    assert FlightState.default_indexes == ("altitude", "gs", "lat", "lon", "updated_at")


@pytest.mark.parametrize("alias,name", [
    ("flight", "flight_id"), ("ident", "flight_id"), ("latitude", "lat"), ("long", "lon"),
    ("longitude", "lon"), ("alt", "altitude"), ("groundspeed", "gs"), ("updated", "updated_at"),
    ("ts", "updated_at"),
])
def test_flightstate_aliases(alias, name):
    assert FlightState.canonical(alias) == name


def test_per_field_index_flags_and_named_table():
    @aerostore.table(name="kv")
    class Whatever:
        k = aerostore.Key()
        a = aerostore.Int(index=True)
        b = aerostore.Str()
    assert Whatever.name == "kv" and Whatever.default_indexes == ("a",)


def test_schema_round_trips_through_dict():
    for s in (Trade, FlightState):
        d = s.to_dict()
        s2 = Schema.from_dict(d)
        assert s2 == s and s2.to_dict() == d
        assert [f.lo for f in s2.fields] == [f.lo for f in s.fields]


def test_bad_declarations():
    with pytest.raises(UsageError, match="exactly one Key"):
        @aerostore.table
        class NoKey:
            a = aerostore.Int()
    with pytest.raises(UsageError, match="exactly one Key"):
        @aerostore.table
        class TwoKeys:
            a = aerostore.Key()
            b = aerostore.Key()
    with pytest.raises(UsageError, match="used twice"):
        @aerostore.table
        class Dup:
            a = aerostore.Key(aliases=("b",))
            b = aerostore.Int()
    with pytest.raises(UsageError, match="bad field"):
        @aerostore.table(indexes=("nope",))
        class BadIndex:
            a = aerostore.Key()


@pytest.fixture
def trades(mem_db):
    """The Trade table of ``mem_db``, with IBM in it."""
    t = mem_db.create_table(Trade)
    assert t.upsert(("IBM", "101.5", "7", 3, "NYSE", "yes")) is True
    return t


def test_create_table_is_idempotent_and_table_finds_it(mem_db):
    t = mem_db.create_table(Trade)
    assert mem_db.create_table(Trade) is t
    assert mem_db.table("Trade") is t and mem_db.table(Trade) is t
    assert t.indexed() == ["sym", "price"]
    assert mem_db.tables == ["Trade"]


def test_user_table_coerces_values_by_field(trades):
    assert trades.get("IBM") == ("IBM", 101.5, 7, 3, "NYSE", True)
    trades.set("IBM", {"px": 99, "live": "off", "qty": -128})
    assert trades.get("IBM") == ("IBM", 99.0, -128, 3, "NYSE", False)


def test_user_table_queries_bools_and_aliases(trades):
    trades.set("IBM", {"live": "off"})
    assert trades.query().true("live").count() == 0 and trades.query().false("live").keys() == ["IBM"]
    assert trades.query().eq("symbol", "IBM").keys() == ["IBM"]


def test_a_field_that_is_not_nullable_refuses_null(trades):
    with pytest.raises(UsageError) as ei:
        trades.set("MSFT", {"px": 1})                     # venue may not be null
    assert ei.value.code == ("AEROSTORE", "USAGE", "VALUE", "venue")
    with pytest.raises(UsageError, match="venue"):
        trades.upsert({"symbol": "MSFT", "px": 1})
    with pytest.raises(UsageError, match="venue"):
        trades.set("IBM", {"venue": ""})
    assert trades.get("MSFT") is None and trades.get("IBM")[4] == "NYSE"


def test_create_table_refuses_another_schema_of_the_same_name(trades, mem_db):
    @aerostore.table(name="Trade")
    class Other:
        sym = aerostore.Key()
    with pytest.raises(UsageError, match="another schema"):
        mem_db.create_table(Other)
    with pytest.raises(UsageError):
        mem_db.create_table("Trade")
    assert mem_db.tables == ["Trade"]


def test_table_of_an_unknown_name(mem_db):
    with pytest.raises(UsageError) as ei:
        mem_db.table("Nope")
    assert ei.value.code[:3] == ("AEROSTORE", "USAGE", "TABLE")


# -- coercion ------------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value,want", [
    ("altitude", "35000", 35000), ("altitude", 35000.0, 35000), ("altitude", -2 ** 31, -2 ** 31),
    ("altitude", True, 1), ("gs", "65535", 65535), ("gs", 0, 0),
    ("updated_at", str(2 ** 64 - 1), 2 ** 64 - 1), ("lat", "1e3", 1000.0), ("lat", 7, 7.0),
    ("lat", "-12.5", -12.5), ("lon", "", None), ("lon", None, None), ("flight_id", 123, "123"),
    ("flight_id", "ab c", "ab c"),
])
def test_coercion_accepts(field, value, want):
    pos = FlightState.position(field)
    got = FlightState.coerce(pos, value)
    assert got == want and type(got) is type(want)


def test_negative_zero_is_stored_as_zero():
    got = FlightState.coerce(FlightState.position("lat"), -0.0)
    assert got == 0.0 and math.copysign(1, got) == 1.0


@pytest.mark.parametrize("field,value", [
    ("altitude", "1.5"), ("altitude", 1.5), ("altitude", " 12"), ("altitude", "1_000"),
    ("altitude", 2 ** 31), ("altitude", -2 ** 31 - 1), ("altitude", "abc"), ("gs", -1),
    ("gs", 65536), ("updated_at", -1), ("updated_at", 2 ** 64), ("lat", "nan"), ("lat", float("inf")),
    ("lat", "-inf"), ("lat", "x"), ("lat", "1_0.0"), ("flight_id", ""), ("flight_id", None),
    ("flight_id", "a\tb"), ("flight_id", "a\nb"), ("flight_id", "a\rb"),
])
def test_coercion_rejects_with_the_field_named(field, value):
    pos = FlightState.position(field)
    with pytest.raises(UsageError) as ei:
        FlightState.coerce(pos, value)
    e = ei.value
    assert f'"{field}"' in str(e)
    assert e.code == ("AEROSTORE", "USAGE", "VALUE", field)
    assert e.tcl_errorcode == ["AEROSTORE", "USAGE", "VALUE", field]


def test_bad_field_name_in_tcl_style():
    with pytest.raises(UsageError) as ei:
        FlightState.position("speed")
    assert str(ei.value) == ('bad field "speed": must be flight_id, lat, lon, altitude, gs, '
                             'or updated_at')
    assert ei.value.code == ("AEROSTORE", "USAGE", "FIELD", "speed")


def test_upsert_refuses_a_short_row_or_a_bad_value(flights):
    with pytest.raises(UsageError, match="6 fields"):
        flights.upsert(("A", 1.0))
    with pytest.raises(UsageError) as ei:
        flights.upsert(("A", 1.0, 2.0, "high", 1, 1))
    assert ei.value.code[-1] == "altitude"
    assert flights.count() == 0


def test_upsert_of_a_dict_by_alias(flights):
    assert flights.upsert({"ident": "A", "alt": "100"}) is True
    assert flights.get("A") == ("A", None, None, 100, None, None)
    flights._check()


def test_set_inserts_then_says_whether_it_inserted(flights):
    assert flights.set("B", {"gs": 5}) is True
    assert flights.get("B") == ("B", None, None, None, 5, None)
    assert flights.set("B", {"gs": ""}) is False              # "" makes the field null
    assert flights.get("B") == ("B", None, None, None, None, None)
    flights._check()


def test_set_refuses_the_key_field_and_unknown_fields(flights):
    flights.set("B", {"gs": 5})
    with pytest.raises(UsageError, match="cannot change the key"):
        flights.set("B", {"flight_id": "C"})
    with pytest.raises(UsageError):
        flights.set("B", {"nosuch": 1})
    assert flights.count() == 1 and flights.get("B") == ("B", None, None, None, 5, None)


def test_bulk_upsert_validates_like_upsert(flights):
    """Table.upsert_many (autocommit) must not store unvalidated values.

    It used to store rows as given: -0.0 (which then failed a `match lon -*` search
    differently from the same row written by upsert), a string in an int field, NaN.
    """
    assert flights.upsert_many([("A", 1, -0.0, "35000", 1, 2)]) == (1, 0)
    got = flights.get("A")
    assert got == ("A", 1.0, 0.0, 35000, 1, 2)
    assert math.copysign(1, got[2]) == 1.0 and type(got[1]) is float
    assert flights.query().match("lon", "-*").count() == 0
    for bad in [("B", float("nan"), 0.0, 1, 1, 1), ("B", 1.0, 0.0, "high", 1, 1), ("B", 1.0)]:
        with pytest.raises(UsageError):
            flights.upsert_many([("C", 1.0, 1.0, 1, 1, 1), bad])
    assert flights.get("B") is None and flights.get("C") is None     # nothing applied
    flights._check()


# -- configuration --------------------------------------------------------------------------------

def test_config_values_and_their_text(mem_db):
    assert mem_db.get_config("aerostore.synchronous_commit") is True
    assert mem_db.get_config_text("aerostore.synchronous_commit") == "on"
    mem_db.set_config("aerostore.synchronous_commit", "off")
    assert mem_db.get_config_text("aerostore.synchronous_commit") == "off"
    mem_db.set_config("aerostore.ttl_secs", "60")
    assert mem_db.get_config("aerostore.ttl_secs") == 60


def test_set_config_of_an_unknown_key(mem_db):
    with pytest.raises(UsageError) as ei:
        mem_db.set_config("aerostore.nope", 1)
    assert ei.value.code == ("AEROSTORE", "USAGE", "CONFIG", "aerostore.nope")
    assert "must be" in str(ei.value)


def test_set_config_of_a_bad_value_changes_nothing(mem_db):
    mem_db.set_config("aerostore.ttl_secs", "60")
    with pytest.raises(UsageError) as ei:
        mem_db.set_config("aerostore.ttl_secs", -1)
    assert ei.value.code[:3] == ("AEROSTORE", "USAGE", "CONFIG")
    with pytest.raises(UsageError):
        mem_db.set_config("aerostore.synchronous_commit", "maybe")
    assert mem_db.get_config("aerostore.ttl_secs") == 60
    assert mem_db.get_config("aerostore.synchronous_commit") is True


def test_open_takes_settings(open_db):
    db = open_db(":memory:", synchronous_commit=False, **{"aerostore.ttl_secs": 5})
    assert db.get_config("aerostore.synchronous_commit") is False
    assert db.get_config("aerostore.ttl_secs") == 5
    t = db.create_table(FlightState)
    t.upsert(("A", 1, 2, 3, 4, 5))
    assert t.get("A") is not None          # visible at once with synchronous_commit off


def test_open_refuses_an_unknown_setting():
    with pytest.raises(UsageError):
        aerostore.open(":memory:", bogus=1)


def test_closed_database_and_transaction(mem_db, flights):
    t = mem_db.begin()
    mem_db.close()
    mem_db.close()                              # idempotent
    assert mem_db.closed
    for call in (lambda: flights.get("A"), lambda: flights.count(), lambda: mem_db.begin(),
                 lambda: flights.query().count(), lambda: t.table("FlightState"),
                 lambda: mem_db.stats()):
        with pytest.raises(ClosedError) as ei:
            call()
        assert ei.value.tcl_errorcode == ["AEROSTORE", "USAGE", "CLOSED"]


# -- error classes ----------------------------------------------------------------------------------

def test_error_hierarchy():
    assert issubclass(WriteConflict, TransientError) and issubclass(TransientError, AerostoreError)
    assert issubclass(ClosedError, UsageError) and issubclass(ReadOnlyError, StorageIOError)


@pytest.mark.parametrize("e,code", [
    (UsageError("x"), ["AEROSTORE", "USAGE"]),
    (UsageError("x", "VALUE", "lat"), ["AEROSTORE", "USAGE", "VALUE", "lat"]),
    (ClosedError("x"), ["AEROSTORE", "USAGE", "CLOSED"]),
    (DecodeError(3, 2, "bad int"), ["AEROSTORE", "DECODE", "3", "2"]),
    (TransientError("x"), ["AEROSTORE", "TRANSIENT"]),
    (WriteConflict("x"), ["AEROSTORE", "CONFLICT"]),
    (StorageIOError("x", "ENOSPC"), ["AEROSTORE", "IO", "ENOSPC"]),
    (ReadOnlyError("x"), ["AEROSTORE", "IO", "READONLY"]),
    (CorruptError("wal.log", 17, "bad crc"), ["AEROSTORE", "CORRUPT", "wal.log", "17"]),
    (LockedError("x", "/d"), ["AEROSTORE", "LOCKED", "/d"]),
], ids=lambda x: type(x).__name__ if isinstance(x, Exception) else None)
def test_tcl_errorcodes(e, code):
    assert e.tcl_errorcode == code
    assert isinstance(e, AerostoreError) and isinstance(e, Exception)


def test_decode_and_corrupt_errors_carry_where():
    d = DecodeError(3, 2, "bad int")
    assert str(d) == "decode error at line 3 column 2: bad int" and (d.line, d.column) == (3, 2)
    c = CorruptError("wal.log", 17, "bad crc")
    assert "wal.log" in str(c) and "17" in str(c) and c.offset == 17


def test_detail_words_do_not_leak_into_the_class():
    UsageError("x", "VALUE", "lat")
    assert UsageError.code == ("AEROSTORE", "USAGE")
