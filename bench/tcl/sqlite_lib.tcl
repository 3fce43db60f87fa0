# sqlite_lib.tcl: SQLite 3 as both benchmarks use it, through its Tcl binding:
# SQL text with bound $variables through [db eval] (the binding caches the
# prepared statements), row scripts with an array for binding rows.  The
# schema, the upsert, WAL mode and the queries.  Sourced by sqlite.tcl (each
# figure alone) and live_sqlite.tcl (the live feed), after common.tcl.

package require sqlite3

set SCHEMA {
    CREATE TABLE flights(
        flight_id  TEXT PRIMARY KEY,
        lat        REAL,
        lon        REAL,
        altitude   INTEGER,
        gs         INTEGER,
        updated_at INTEGER);
    CREATE INDEX flights_altitude   ON flights(altitude);
    CREATE INDEX flights_gs         ON flights(gs);
    CREATE INDEX flights_lat        ON flights(lat);
    CREATE INDEX flights_lon        ON flights(lon);
    CREATE INDEX flights_updated_at ON flights(updated_at);
}

# The same upsert for "ingest new rows", "update all rows" and the live feed
# (Aerostore's ingest_tsv is an upsert too).
set UPSERT {
    INSERT INTO flights(flight_id, lat, lon, altitude, gs, updated_at)
    VALUES($id, $lat, $lon, $alt, $gs, $ts)
    ON CONFLICT(flight_id) DO UPDATE SET
        lat = excluded.lat, lon = excluded.lon, altitude = excluded.altitude,
        gs = excluded.gs, updated_at = excluded.updated_at
}

# WAL journal, synchronous = sync (FULL: every commit durable; OFF: untimed
# template building).
proc wal {db sync} {
    $db eval {PRAGMA journal_mode = WAL}
    $db eval "PRAGMA synchronous = $sync"
}

# The queries, one proc each: the live feed's readers call them, the
# per-figure harness times their bodies (get: the whole row of key $k).
proc q_get {k} { db eval {SELECT * FROM flights WHERE flight_id = $k} }

proc q_count {} {
    db onecolumn {SELECT count(*) FROM flights WHERE altitude > 30000}
}

proc q_top50 {} [bound_rows {
    db eval {SELECT * FROM flights WHERE altitude > 10000 ORDER BY lat LIMIT 50} row
} {$row(flight_id)}]

# LIKE: case-insensitive (ASCII), as Aerostore's match; GLOB is no faster here
proc q_match {} {
    db onecolumn {SELECT count(*) FROM flights WHERE flight_id LIKE '%77%'}
}

# First in q_box and q_boxtop: the box's corners as numbers, so that they are
# bound as REAL values (the live feed passes them as strings).
set BOX_CORNERS {
    set la [expr {double($la)}]
    set lo [expr {double($lo)}]
    set la2 [expr {$la + 5}]
    set lo2 [expr {$lo + 5}]
}

proc q_box {la lo} [join [list $BOX_CORNERS {
    db onecolumn {SELECT count(*) FROM flights
                  WHERE lat >= $la AND lat < $la2 AND lon >= $lo AND lon < $lo2}
}] \n]

proc q_boxtop {la lo} [join [list $BOX_CORNERS [bound_rows {
    db eval {SELECT * FROM flights
             WHERE lat >= $la AND lat < $la2 AND lon >= $lo AND lon < $lo2
             ORDER BY altitude DESC LIMIT 20} row
} {$row(flight_id)} 1]] \n]

proc q_range_offset {} [bound_rows {
    db eval {SELECT * FROM flights WHERE altitude >= 10000 AND altitude < 20000
             ORDER BY lat LIMIT 50 OFFSET 100} row
} {$row(flight_id)}]
