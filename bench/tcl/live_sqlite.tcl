# live_sqlite.tcl: SQLite 3 under the live feed, through its Tcl binding, one
# connection per Tcl thread, WAL, synchronous=FULL, a busy timeout (readers
# never block in WAL mode; the timeout covers the rare moments a connection
# must wait, e.g. for a checkpoint to release the WAL index).  The indexes are
# the template's: flights(flight_id PRIMARY KEY) plus one on each of altitude,
# gs, lat, lon and updated_at, as in bench/tcl/sqlite.tcl.
#
# Parameters: db (a copy of the WAL template), rows.

package require sqlite3

set UPSERT {
    INSERT INTO flights(flight_id, lat, lon, altitude, gs, updated_at)
    VALUES($id, $lat, $lon, $alt, $gs, $ts)
    ON CONFLICT(flight_id) DO UPDATE SET
        lat = excluded.lat, lon = excluded.lon, altitude = excluded.altitude,
        gs = excluded.gs, updated_at = excluded.updated_at
}

proc eng_connect {} {
    sqlite3 db [param db]
    db timeout 60000
    db eval {PRAGMA journal_mode = WAL}
    db eval {PRAGMA synchronous = FULL}
}

proc eng_open_main {} { eng_connect }
proc eng_close_main {} { catch {db close} }

# One durable transaction: the TSV split and bound the way bench/tcl/sqlite.tcl
# loads its files.
proc eng_feed {tsv} {
    db transaction {
        foreach line [split [string trimright $tsv \n] \n] {
            lassign [split $line \t] id lat lon alt gs ts
            db eval $::UPSERT
        }
    }
}

proc q_get {k} { db eval {SELECT * FROM flights WHERE flight_id = $k} }

proc q_count {} {
    db onecolumn {SELECT count(*) FROM flights WHERE altitude > 30000}
}

proc q_top50 {} {
    set n 0
    db eval {SELECT * FROM flights WHERE altitude > 10000 ORDER BY lat LIMIT 50} row {
        incr n
        set last $row(flight_id)
    }
    return "$n $last"
}

proc q_box {la lo} {
    set la [expr {double($la)}]
    set lo [expr {double($lo)}]
    set la2 [expr {$la + 5}]
    set lo2 [expr {$lo + 5}]
    db onecolumn {SELECT count(*) FROM flights
                  WHERE lat >= $la AND lat < $la2 AND lon >= $lo AND lon < $lo2}
}

proc q_boxtop {la lo} {
    set la [expr {double($la)}]
    set lo [expr {double($lo)}]
    set la2 [expr {$la + 5}]
    set lo2 [expr {$lo + 5}]
    set n 0
    set last ""
    db eval {SELECT * FROM flights
             WHERE lat >= $la AND lat < $la2 AND lon >= $lo AND lon < $lo2
             ORDER BY altitude DESC LIMIT 20} row {
        incr n
        set last $row(flight_id)
    }
    return "$n $last"
}

proc q_range_offset {} {
    set n 0
    db eval {SELECT * FROM flights WHERE altitude >= 10000 AND altitude < 20000
             ORDER BY lat LIMIT 50 OFFSET 100} row {
        incr n
        set last $row(flight_id)
    }
    return "$n $last"
}
