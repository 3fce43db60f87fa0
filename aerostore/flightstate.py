"""FlightState, the table of docs/tcl.md (DESCRIPTION, Values), declared like any user table."""

from .schema import Float, Int, Key, UInt, table


@table(indexes=("altitude", "gs", "lat", "lon", "updated_at"))
class FlightState:
    flight_id = Key(aliases=("flight", "ident"))
    lat = Float(aliases=("latitude",))
    lon = Float(aliases=("long", "longitude"))
    altitude = Int(bits=32, aliases=("alt",))
    gs = UInt(bits=16, aliases=("groundspeed",))
    updated_at = UInt(bits=64, aliases=("updated", "ts"))
