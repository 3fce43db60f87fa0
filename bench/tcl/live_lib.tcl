# live_lib.tcl: what every live-feed client shares, whatever the engine and
# whether it runs as a Tcl thread (Aerostore, SQLite: live_host.tcl) or as a
# process of its own (PostgreSQL through Pgtcl: live_client.tcl).
#
# The engine file sourced beside this one defines, in every thread/process (the
# q_ procs of Aerostore and SQLite are aerostore_lib.tcl's and sqlite_lib.tcl's):
#   eng_connect                  open this thread's connection (or engine handle)
#   eng_feed tsv                 commit one batch of TSV rows, durably, as ONE
#                                transaction; errors propagate
#   q_get key                    the whole row of one key
#   q_count                      count of altitude > 30000
#   q_top50                      altitude > 10000 sort lat limit 50, each row
#                                bound and visited -> "n last_key"
#   q_box lat lon                count of lat lat..lat+5, lon lon..lon+5
#   q_boxtop lat lon             the same box, sort altitude desc limit 20, rows bound
#   q_range_offset               10000 <= altitude < 20000 sort lat limit 50
#                                offset 100, rows bound -> "n last_key"
#
# Timing is [clock microseconds] around the engine call only: preparing the
# arguments (random key, box corner) and building a feed batch happen before
# the clock starts.  Results are JSON lines (one per reader and query kind, one
# for the feed) with every sample: start time relative to the phase start and
# latency, both in microseconds, so latency over time can be plotted.

source [file join [file dirname [info script]] common.tcl]

# Keys of the data set, the same function as bench/datagen.py's _key: row n of
# the data set has key live_key(n); n >= rows are keys the data set lacks.
set ::LETTERS [split ABCDEFGHIJKLMNOPQRSTUVWXYZ ""]
proc live_key {n} {
    set a $::LETTERS
    return "[lindex $a [expr {$n % 26}]][lindex $a [expr {($n / 26) % 26}]][lindex $a [expr {($n / 676) % 26}]][format %07d $n]"
}

proc wait_until {t} {
    while {[set d [expr {$t - [now]}]] > 0} {
        after [expr {max(1, $d / 1000)}]
    }
}

# The query kinds, in the order a reader runs them in its mix.
set ::KINDS {get count top50 box boxtop range_offset}

# Arguments of one query of a kind, drawn before the clock starts.
proc query_args {kind rows} {
    switch -- $kind {
        get { return [list [live_key [expr {int(rand() * $rows)}]]] }
        box - boxtop {
            # a 5 x 5 degree box, south-west corner anywhere it fits
            return [list [format %.2f [expr {rand() * 175.0 - 90.0}]] \
                         [format %.2f [expr {rand() * 355.0 - 180.0}]]]
        }
        default { return {} }
    }
}

# reader_run kinds t0 deadline seed name -> JSON lines
# From t0 (absolute [clock microseconds]) until deadline, loop over the query
# kinds in order (the mix; a single kind when measured alone), timing each call.
# An error is counted per kind (first message kept) and the loop goes on.
proc reader_run {kinds t0 deadline seed name} {
    expr {srand($seed)}
    set rows [param rows]
    foreach k $kinds {
        set T($k) {}; set L($k) {}; set E($k) 0; set M($k) ""; set C($k) ""
    }
    wait_until $t0
    set late [expr {[now] - $t0}]
    set go 1
    while {$go} {
        foreach k $kinds {
            set a [query_args $k $rows]
            set s [now]
            if {[catch {q_$k {*}$a} res]} {
                set e [now]
                if {[incr E($k)] == 1} { set M($k) $res }
            } else {
                set e [now]
                lappend T($k) [expr {$s - $t0}]
                lappend L($k) [expr {$e - $s}]
                set C($k) $res
            }
            if {$e >= $deadline} { set go 0; break }
        }
    }
    set out {}
    foreach k $kinds {
        lappend out "\{\"role\":[json_str $name],\"kind\":[json_str $k],\"late_start_us\":$late,\"errors\":$E($k),\"error_sample\":[json_str $M($k)],\"t\":\[[join $T($k) ,]\],\"us\":\[[join $L($k) ,]\]\}"
    }
    return [join $out \n]
}

# One feed batch: 100 rows (param batch_rows), each a random existing key with
# new position, altitude, ground speed and updated_at, or (fraction newfrac) a
# key the store does not have yet.  Keys are distinct within a batch (an
# upsert that touched one key twice is refused by PostgreSQL's ON CONFLICT).
proc feed_make_batch {rows newfrac ts} {
    set n [param batch_rows 100]
    set seen [dict create]
    set out ""
    while {[dict size $seen] < $n} {
        if {rand() < $newfrac} {
            set id [incr ::FEED_NEXT_NEW]
        } else {
            set id [expr {int(rand() * $rows)}]
        }
        if {[dict exists $seen $id]} continue
        dict set seen $id 1
        append out [live_key $id] \t [format %.5f [expr {rand() * 180.0 - 90.0}]] \
            \t [format %.5f [expr {rand() * 360.0 - 180.0}]] \
            \t [expr {int(rand() * 45000)}] \t [expr {int(rand() * 600)}] \t $ts \n
    }
    return $out
}

# feed_run rate t0 deadline newbase newfrac seed -> one JSON line
# Absolute schedule: batch i is due at t0 + i * batch_rows / rate.  The next
# batch is built while waiting; the feed sleeps (never early) until the batch is
# due, or sends it at once when late, and never sleeps to catch up (a late feed
# sends back to back until it is on schedule again).  No batch starts at or
# after the deadline.  Commit latency = the engine call for one batch.
proc feed_run {rate t0 deadline newbase newfrac seed} {
    expr {srand($seed)}
    set rows [param rows]
    set brows [param batch_rows 100]
    set ::FEED_NEXT_NEW $newbase
    set interval [expr {$brows * 1e6 / $rate}]
    set T {}; set L {}; set LAG {}
    set errors 0; set msg ""; set ok 0
    wait_until $t0
    set late [expr {[now] - $t0}]
    for {set i 0} {1} {incr i} {
        set due [expr {$t0 + wide($i * $interval)}]
        if {$due >= $deadline} break
        set tsv [feed_make_batch $rows $newfrac [expr {1700086400 + ($due - $t0) / 1000000}]]
        set d [expr {$due - [now]}]
        if {$d > 0} { after [expr {($d + 999) / 1000}] }
        set s [now]
        if {$s >= $deadline} break
        if {[catch {eng_feed $tsv} res]} {
            if {[incr errors] == 1} { set msg $res }
        } else {
            set e [now]
            incr ok
            lappend T [expr {$s - $t0}]
            lappend L [expr {$e - $s}]
            lappend LAG [expr {$s - $due}]
        }
    }
    set end [now]
    set elapsed [expr {max($end, $deadline) - $t0}]
    return "\{\"role\":\"feed\",\"kind\":\"commit\",\"rate\":$rate,\"batch_rows\":$brows,\"batches_ok\":$ok,\"rows_ok\":[expr {$ok * $brows}],\"scheduled\":$i,\"elapsed_us\":$elapsed,\"late_start_us\":$late,\"new_keys\":[expr {$::FEED_NEXT_NEW - $newbase}],\"errors\":$errors,\"error_sample\":[json_str $msg],\"t\":\[[join $T ,]\],\"us\":\[[join $L ,]\],\"lag\":\[[join $LAG ,]\]\}"
}

# Untimed: the answers of the checkable queries on the data as loaded (before
# any feed), so the report can say every engine answers alike; then a few
# calls of every kind (Aerostore builds an index on its first use after a
# reopen; caches warm up).
proc live_checks {} {
    set c [list count [q_count] top50 [q_top50] box [q_box 0.00 0.00] \
               boxtop [q_boxtop 0.00 0.00] range_offset [q_range_offset]]
    set parts {}
    foreach {k v} $c { lappend parts "[json_str $k]:[json_str $v]" }
    return "\{\"checks\":\{[join $parts ,]\}\}"
}

proc live_warm {{n 3}} {
    set rows [param rows]
    for {set i 0} {$i < $n} {incr i} {
        foreach k $::KINDS { q_$k {*}[query_args $k $rows] }
    }
    return ok
}
