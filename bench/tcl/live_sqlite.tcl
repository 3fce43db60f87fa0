# live_sqlite.tcl: SQLite 3 under the live feed, through its Tcl binding, one
# connection per Tcl thread, WAL, synchronous=FULL, a busy timeout (readers
# never block in WAL mode; the timeout covers the rare moments a connection
# must wait, e.g. for a checkpoint to release the WAL index).  The indexes are
# the template's: flights(flight_id PRIMARY KEY) plus one on each of altitude,
# gs, lat, lon and updated_at; they, the upsert and the queries are
# sqlite_lib.tcl's.
#
# Parameters: db (a copy of the WAL template), rows.

source [file join [file dirname [info script]] sqlite_lib.tcl]

proc eng_connect {} {
    sqlite3 db [param db]
    db timeout 60000
    wal db FULL
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
