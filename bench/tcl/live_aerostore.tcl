# live_aerostore.tcl: Aerostore under the live feed, through its documented Tcl
# commands only.  Every Tcl thread of the host process runs `package require
# aerostore; aerostore::init DIR`: one engine per process, shared by all threads.
# The store and the queries are aerostore_lib.tcl's.
#
# Parameters: dir (a copy of the checkpointed template), rows.

source [file join [file dirname [info script]] aerostore_lib.tcl]

proc eng_open_main {} {
    package require aerostore
    open_store on
}

proc eng_connect {} {
    package require aerostore
    aerostore::init [param dir]
}

proc eng_close_main {} { catch {aerostore::close} }

# The read gate's counters (aerostore::stats, docs/tcl.md): how many of the
# readers' get calls were answered without the GIL.
proc eng_counters {} {
    set s [aerostore::stats]
    set out {}
    foreach k {readgate_answered readgate_fell_back readgate_waited} {
        dict set out $k [dict get $s $k]
    }
    return $out
}

# One durable transaction of 100 rows: ingest_tsv with batch_size = the batch.
proc eng_feed {tsv} {
    FlightState ingest_tsv $tsv [param batch_rows 100]
}
