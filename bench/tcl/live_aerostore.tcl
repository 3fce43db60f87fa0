# live_aerostore.tcl: Aerostore under the live feed, through its documented Tcl
# commands only.  Every Tcl thread of the host process runs `package require
# aerostore; aerostore::init DIR`: one engine per process, shared by all threads.
#
# Parameters: dir (a copy of the checkpointed template), rows.

proc eng_open_main {} {
    package require aerostore
    aerostore::init [param dir]
    aerostore::set_config aerostore.synchronous_commit on
}

proc eng_connect {} {
    package require aerostore
    aerostore::init [param dir]
}

proc eng_close_main {} { catch {aerostore::close} }

# One durable transaction of 100 rows: ingest_tsv with batch_size = the batch.
proc eng_feed {tsv} {
    FlightState ingest_tsv $tsv [param batch_rows 100]
}

proc q_get {k} { FlightState get $k }

proc q_count {} {
    FlightState search -compare {{> altitude 30000}} -countOnly 1
}

proc q_top50 {} {
    set n 0
    FlightState search -compare {{> altitude 10000}} -sort lat -limit 50 \
        -array_get row -code {
            incr n
            set last [dict get $row flight_id]
        }
    return "$n $last"
}

proc q_box {la lo} {
    FlightState search -compare [list [list range lat $la [expr {$la + 5}]] \
                                      [list range lon $lo [expr {$lo + 5}]]] -countOnly 1
}

proc q_boxtop {la lo} {
    set n 0
    set last ""
    FlightState search -compare [list [list range lat $la [expr {$la + 5}]] \
                                      [list range lon $lo [expr {$lo + 5}]]] \
        -sort altitude -desc -limit 20 -array_get row -code {
            incr n
            set last [dict get $row flight_id]
        }
    return "$n $last"
}

proc q_range_offset {} {
    set n 0
    FlightState search -compare {{range altitude 10000 20000}} -sort lat \
        -limit 50 -offset 100 -array_get row -code {
            incr n
            set last [dict get $row flight_id]
        }
    return "$n $last"
}
