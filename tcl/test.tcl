# The Aerostore demo: `make demo`, or
#   TCLLIBPATH=$PWD/tcl tclsh tcl/test.tcl ?data_dir?
# Opens a store (a fresh temporary directory unless one is given), ingests a
# few flights, searches, updates, runs a transaction, watches changes,
# checkpoints, and prints the statistics.
package require aerostore

proc section {title} { puts "\n== $title" }

# -- open ---------------------------------------------------------------------------
set tmp [expr {[info exists env(TMPDIR)] ? $env(TMPDIR) : "/tmp"}]
set dir [expr {$argc > 0 ? [lindex $argv 0] : [file join $tmp aerostore-demo-[pid]]}]
section "open"
puts [aerostore::init $dir]
puts "synchronous_commit = [aerostore::get_config aerostore.synchronous_commit]"

# -- ingest ---------------------------------------------------------------------------
section "ingest 8 flights (TSV: flight_id lat lon altitude gs updated_at)"
set now [clock seconds]
set tsv ""
foreach {id lat lon alt gs} {
    UAL123  40.6413  -73.7781  35000 450
    DAL456  33.6407  -84.4277  12000 310
    AAL789  32.8998  -97.0403   2500 180
    SWA101  29.6454  -95.2789  24000 420
    JBU202  42.3656  -71.0096  31000 440
    ASA303  47.4502 -122.3088    800 140
    BAW404  51.4700   -0.4543  38000 480
    AFR505  49.0097    2.5479  28000 430
} {
    append tsv "$id\t$lat\t$lon\t$alt\t$gs\t$now\n"
}
puts [FlightState ingest_tsv $tsv 4]
puts "rows: [FlightState count]   fields: [FlightState fields]"
puts "get UAL123:           [FlightState get UAL123]"
puts "get UAL123 alt gs:    [FlightState get UAL123 alt gs]"
puts "array_get DAL456:     [FlightState array_get DAL456]"

# -- searches ---------------------------------------------------------------------------
section "search: above 20000 ft, highest first"
set n [FlightState search -compare {{> altitude 20000}} -sort -altitude -array_get row -code {
    puts [format "  %-7s alt=%-6s gs=%-4s lat=%s" \
        [dict get $row flight_id] [dict get $row altitude] [dict get $row gs] [dict get $row lat]]
}]
puts "  ($n rows)"

section "search: 3 northernmost flights below 30000 ft (-fields, -get)"
FlightState search -compare {{< alt 30000}} -sort -lat -limit 3 -fields {flight_id lat alt} \
    -get values -code { puts "  $values" }

section "search: ids matching U* or A* (case-insensitive glob), keys only"
FlightState search -compare {{match flight_id u*}} -key k -code { puts "  $k" }
FlightState search -compare {{match flight_id a*}} -sort flight_id -key k -code { puts "  $k" }
puts "  count of 10000 <= alt < 30000: [FlightState search -compare {{range alt 10000 30000}} -countOnly 1]"

# -- an update, seen by the next search ---------------------------------------------------
section "update: DAL456 climbs to 33000 ft"
proc on_change {op key pairs} { puts "  watch: $op $key $pairs"; set ::seen 1 }
set wid [FlightState watch -key DAL456 on_change]
FlightState set DAL456 altitude 33000 gs 455 updated_at [clock seconds]
set timer [after 2000 {set ::seen timeout}]
vwait ::seen                     ;# the watch callback runs from the event loop
after cancel $timer
puts "  above 30000 now: [FlightState search -compare {{> alt 30000}} -sort flight_id -key k \
    -code { lappend above $k }; set above]"
FlightState unwatch $wid

# -- a transaction -------------------------------------------------------------------------
section "transaction: move AAL789 and delete ASA303 together"
set r [aerostore::transaction {
    FlightState set AAL789 altitude 9000 gs 250
    FlightState delete ASA303
    format "inside: %d rows, AAL789 at %s ft" [FlightState count] [FlightState get AAL789 alt]
}]
puts "  $r"
puts "  after commit: [FlightState count] rows, ASA303 exists: [FlightState exists ASA303]"
catch {
    aerostore::transaction {
        FlightState delete UAL123
        error "changed my mind"
    }
} msg
puts "  rolled back ($msg): UAL123 exists: [FlightState exists UAL123]"

# -- checkpoint and statistics -------------------------------------------------------------
section "checkpoint"
puts [aerostore::checkpoint_now]
section "stats"
foreach {k v} [aerostore::stats] { puts [format "  %-24s %s" $k $v] }

if {$argc == 0} {
    aerostore::close
    file delete -force $dir
}
