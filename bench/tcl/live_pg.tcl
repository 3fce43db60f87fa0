# live_pg.tcl: PostgreSQL under the live feed, through Pgtcl.  Pgtcl is not
# safe across Tcl threads, so every client (the feed, each reader) is a tclsh
# process of its own (bench/tcl/live_client.tcl) with one connection, over the
# server's Unix socket.  Every query is a prepared statement (PREPARE once per
# connection, pg_exec_prepared per call); rows are bound to an array per row
# with [pg_result -foreach].  The server runs with synchronous_commit on (its
# default), so every feed batch returns after its WAL record is fsynced.
#
# Parameters: conninfo, rows.

package require Pgtcl

# Run a prepared statement; a result that is not a success is an error.
proc pgx {name args} {
    set r [pg_exec_prepared $::PG $name {*}$args]
    set st [pg_result $r -status]
    if {$st ne "PGRES_TUPLES_OK" && $st ne "PGRES_COMMAND_OK"} {
        set msg [pg_result $r -error]
        pg_result $r -clear
        error "postgres: $st: [string trim $msg]"
    }
    return $r
}

proc pg_do {sql} {
    set r [pg_exec $::PG $sql]
    set st [pg_result $r -status]
    set msg [pg_result $r -error]
    pg_result $r -clear
    if {$st ne "PGRES_TUPLES_OK" && $st ne "PGRES_COMMAND_OK"} {
        error "postgres: $st: [string trim $msg]"
    }
}

proc eng_connect {} {
    set ::PG [pg_connect -conninfo [param conninfo]]
    pg_do {SET synchronous_commit = on}
    set stmts {
        feed {(text[], float8[], float8[], int[], int[], bigint[])}
             {INSERT INTO flights(flight_id, lat, lon, altitude, gs, updated_at)
              SELECT * FROM unnest($1, $2, $3, $4, $5, $6)
              ON CONFLICT (flight_id) DO UPDATE SET
                  lat = excluded.lat, lon = excluded.lon, altitude = excluded.altitude,
                  gs = excluded.gs, updated_at = excluded.updated_at}
        get (text) {SELECT * FROM flights WHERE flight_id = $1}
        count {} {SELECT count(*) FROM flights WHERE altitude > 30000}
        top50 {} {SELECT * FROM flights WHERE altitude > 10000 ORDER BY lat LIMIT 50}
        box {(float8, float8, float8, float8)} {SELECT count(*) FROM flights WHERE BOX}
        boxtop {(float8, float8, float8, float8)}
               {SELECT * FROM flights WHERE BOX ORDER BY altitude DESC LIMIT 20}
        range_offset {} {SELECT * FROM flights WHERE altitude >= 10000 AND altitude < 20000
                         ORDER BY lat LIMIT 50 OFFSET 100}
    }
    set box {lat >= $1 AND lat < $2 AND lon >= $3 AND lon < $4}
    foreach {name types sql} $stmts {
        pg_do "PREPARE $name$types AS [string map [list BOX $box] $sql]"
    }
}

proc eng_close_main {} { catch {pg_disconnect $::PG} }

# One durable transaction: the batch's columns as six arrays, one statement.
proc eng_feed {tsv} {
    foreach c {id lat lon alt gs ts} { set $c {} }
    foreach line [split [string trimright $tsv \n] \n] {
        lassign [split $line \t] i la lo al g t
        lappend id $i; lappend lat $la; lappend lon $lo
        lappend alt $al; lappend gs $g; lappend ts $t
    }
    set r [pgx feed "{[join $id ,]}" "{[join $lat ,]}" "{[join $lon ,]}" \
               "{[join $alt ,]}" "{[join $gs ,]}" "{[join $ts ,]}"]
    set n [pg_result $r -cmdTuples]
    pg_result $r -clear
    return $n
}

proc q_get {k} {
    set r [pgx get $k]
    set row [pg_result $r -getTuple 0]
    pg_result $r -clear
    return $row
}

proc q_count {} {
    set r [pgx count]
    set n [pg_result $r -getTuple 0]
    pg_result $r -clear
    return $n
}

proc rows_bound {r} {
    set n 0
    set last ""
    pg_result $r -foreach row {
        incr n
        set last $row(flight_id)
    }
    pg_result $r -clear
    return "$n $last"
}

proc q_top50 {} { rows_bound [pgx top50] }

proc q_box {la lo} {
    set r [pgx box $la [expr {$la + 5}] $lo [expr {$lo + 5}]]
    set n [pg_result $r -getTuple 0]
    pg_result $r -clear
    return $n
}

proc q_boxtop {la lo} {
    rows_bound [pgx boxtop $la [expr {$la + 5}] $lo [expr {$lo + 5}]]
}

proc q_range_offset {} { rows_bound [pgx range_offset] }
