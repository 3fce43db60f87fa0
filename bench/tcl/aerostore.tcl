# aerostore.tcl: the Aerostore side of every workload, through the Tcl commands
# of docs/tcl.md only (package require aerostore; aerostore::*; FlightState).
# Sourced by harness.tcl.
#
# Parameters: dir (the data directory; the driver gives every process a fresh
# one, empty for ingest or a copy of the prepared template otherwise), sync
# (aerostore.synchronous_commit on|off), flights/updates/keys (data files),
# batch (ingest_tsv batch size, the same as SQLite's transaction size).

proc open_store {} {
    aerostore::init [param dir]
    aerostore::set_config aerostore.synchronous_commit [param sync]
}

proc load_aerostore {} {
    set t0 [now]
    package require aerostore
    return [expr {([now] - $t0) / 1e6}]
}

# Untimed: build the template the read workloads start from, and checkpoint it
# so that opening it is a checkpoint load (the reopen workload measures that).
proc wl_prepare {} {
    load_aerostore
    aerostore::init [param dir]
    aerostore::set_config aerostore.synchronous_commit off
    FlightState ingest_tsv [read_file [param flights]] [param batch]
    set n [FlightState count]
    aerostore::checkpoint_now
    emit prepare $n rows
}

# Untimed: ingest with synchronous_commit on and checkpoints disabled, then
# kill -9: every row is acknowledged, durable, and only in the WAL.
proc wl_prepare_crashed {} {
    load_aerostore
    aerostore::init [param dir]
    aerostore::set_config aerostore.synchronous_commit on
    aerostore::set_config aerostore.checkpoint_interval_secs 0
    FlightState ingest_tsv [read_file [param flights]] [param batch]
    emit prepare_crashed [FlightState count] rows
    exec kill -9 [pid]
}

proc wl_ingest {} {
    load_aerostore
    open_store
    set rss0 [rss_kb]
    set t0 [now]
    set data [read_file [param flights]]
    set r [FlightState ingest_tsv $data [param batch]]
    set dt [expr {([now] - $t0) / 1e6}]
    unset data
    set n [FlightState count]
    emit ingest $dt s rows $n rows_per_s [expr {$n / $dt}] result $r
    set kb [expr {[rss_kb] - $rss0}]
    emit memory [expr {$kb * 1024.0 / $n}] B/row rss_delta_kb $kb rows $n
}

proc wl_update {} {
    load_aerostore
    open_store
    # a store that has answered queries: every index built (after a reopen an
    # index builds on its first use), so the time includes index maintenance
    foreach f {altitude gs lat lon updated_at} {
        FlightState search -sort $f -limit 1 -key k -code {}
    }
    set t0 [now]
    set data [read_file [param updates]]
    set r [FlightState ingest_tsv $data [param batch]]
    set dt [expr {([now] - $t0) / 1e6}]
    regexp {rows_seen=(\d+)} $r -> n
    emit update $dt s rows $n rows_per_s [expr {$n / $dt}] result $r
}

proc wl_count_range {} {
    load_aerostore
    open_store
    lassign [time_per_call {
        FlightState search -compare {{> altitude 30000}} -countOnly 1
    }] us samples calls result
    emit count_range [expr {$us / 1000.0}] ms samples $samples calls $calls check $result
}

proc wl_top50 {} {
    load_aerostore
    open_store
    lassign [time_per_call {
        set n 0
        FlightState search -compare {{> altitude 10000}} -sort lat -limit 50 \
            -array_get a -code {
                incr n
                set last [dict get $a flight_id]
            }
        return "$n $last"
    }] us samples calls result
    emit top50 [expr {$us / 1000.0}] ms samples $samples calls $calls check $result
}

proc wl_range_offset {} {
    load_aerostore
    open_store
    lassign [time_per_call {
        set n 0
        FlightState search -compare {{range altitude 10000 20000}} -sort lat \
            -limit 50 -offset 100 -array_get a -code {
                incr n
                set last [dict get $a flight_id]
            }
        return "$n $last"
    }] us samples calls result
    emit range_offset [expr {$us / 1000.0}] ms samples $samples calls $calls check $result
}

proc wl_scan {} {
    load_aerostore
    open_store
    FlightState index drop gs
    lassign [time_per_call {
        FlightState search -compare {{> gs 400}} -countOnly 1
    }] us samples calls result
    emit scan [expr {$us / 1000.0}] ms samples $samples calls $calls check $result
}

proc wl_get {} {
    load_aerostore
    open_store
    set keys [read_keys [param keys]]
    foreach k [lrange $keys 0 999] { FlightState get $k }
    set t0 [now]
    foreach k $keys {
        set row [FlightState get $k]
    }
    set dt [expr {double([now] - $t0)}]
    emit get [expr {$dt / [llength $keys]}] us calls [llength $keys] check [llength $row]
}

# Single-row commits: one autocommit [FlightState set] per call.
proc wl_commit1 {} {
    load_aerostore
    open_store
    set keys [read_keys [param keys] [param commits]]
    set deadline [expr {[now] + [param max_secs] * 1000000}]
    set t0 [now]
    set n 0
    foreach k $keys {
        FlightState set $k altitude $n
        incr n
        if {[now] > $deadline} break
    }
    set dt [expr {double([now] - $t0)}]
    emit commit1 [expr {$dt / $n}] us/commit commits $n commits_per_s [expr {$n * 1e6 / $dt}]
}

# The same from 8 Tcl threads sharing the process's one engine, disjoint keys.
proc wl_commit8 {} {
    load_aerostore
    open_store
    package require Thread
    set nthreads [param threads 8]
    set per [expr {[param commits] / $nthreads}]
    set keys [read_keys [param keys] [expr {$per * $nthreads}]]
    set tids {}
    for {set t 0} {$t < $nthreads} {incr t} {
        set tid [thread::create {
            proc setup {dir} {
                package require aerostore
                aerostore::init $dir
            }
            proc run {keys deadline} {
                set n 0
                foreach k $keys {
                    FlightState set $k altitude $n
                    incr n
                    if {[clock microseconds] > $deadline} break
                }
                return $n
            }
            thread::wait
        }]
        thread::send $tid [list setup [param dir]]
        lappend tids $tid
    }
    drive_threads $tids $keys $per
}

# Reopen: time from aerostore::init on the checkpointed template to the answer
# of a first point get, and (a second figure) on to the answer of a first
# indexed count, which pays for any index built lazily.  Package loading, i.e.
# starting Python, is reported apart.
proc wl_reopen {} { reopen reopen }

# Recovery: the same on the crashed template (WAL replay of every row).
proc wl_recover {} { reopen recover }

proc reopen {figure} {
    set k [lindex [read_keys [param keys] 1] 0]
    set load_s [load_aerostore]
    set t0 [now]
    open_store
    set row [FlightState get $k]
    set dt [expr {([now] - $t0) / 1e6}]
    set c [FlightState search -compare {{> altitude 30000}} -countOnly 1]
    set dq [expr {([now] - $t0) / 1e6}]
    emit $figure $dt s check [llength $row] rows [FlightState count] package_require_s $load_s
    emit ${figure}_query $dq s check $c
}
