# aerostore_lib.tcl: Aerostore as both benchmarks use it, through the Tcl
# commands of docs/tcl.md only (package require aerostore; aerostore::*;
# FlightState): opening the store, and the queries.  Sourced by aerostore.tcl
# (each figure alone) and live_aerostore.tcl (the live feed), after common.tcl.

# The store in [param dir], with aerostore.synchronous_commit on|off (package
# aerostore loaded).
proc open_store {sync} {
    aerostore::init [param dir]
    aerostore::set_config aerostore.synchronous_commit $sync
}

# The queries, one proc each: the live feed's readers call them, the
# per-figure harness times their bodies (get: the whole row of key $k).
proc q_get {k} { FlightState get $k }

proc q_count {} {
    FlightState search -compare {{> altitude 30000}} -countOnly 1
}

proc q_top50 {} [bound_rows {
    FlightState search -compare {{> altitude 10000}} -sort lat -limit 50 -array_get row -code
} {[dict get $row flight_id]}]

proc q_match {} {
    FlightState search -compare {{match flight_id *77*}} -countOnly 1
}

proc q_box {la lo} {
    FlightState search -compare [list [list range lat $la [expr {$la + 5}]] \
                                      [list range lon $lo [expr {$lo + 5}]]] -countOnly 1
}

proc q_boxtop {la lo} [bound_rows {
    FlightState search -compare [list [list range lat $la [expr {$la + 5}]] \
                                      [list range lon $lo [expr {$lo + 5}]]] \
        -sort altitude -desc -limit 20 -array_get row -code
} {[dict get $row flight_id]} 1]

proc q_range_offset {} [bound_rows {
    FlightState search -compare {{range altitude 10000 20000}} -sort lat \
        -limit 50 -offset 100 -array_get row -code
} {[dict get $row flight_id]}]
