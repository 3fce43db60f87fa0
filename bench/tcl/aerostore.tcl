# aerostore.tcl: the Aerostore side of every workload, through the Tcl commands
# of docs/tcl.md only (package require aerostore; aerostore::*; FlightState).
# Sourced by harness.tcl; the store and the queries are aerostore_lib.tcl's.
#
# Parameters: dir (the data directory; the driver gives every process a fresh
# one, empty for ingest or a copy of the prepared template otherwise), sync
# (aerostore.synchronous_commit on|off), flights/updates/keys (data files),
# batch (ingest_tsv batch size, the same as SQLite's transaction size).

source [file join [file dirname [info script]] aerostore_lib.tcl]

proc load_aerostore {} {
    set t0 [now]
    package require aerostore
    return [expr {([now] - $t0) / 1e6}]
}

# What every timed workload starts from: the package loaded, the store open.
proc start {} {
    load_aerostore
    open_store [param sync]
}

# Untimed: build the template the read workloads start from, and checkpoint it
# so that opening it is a checkpoint load (the reopen workload measures that).
proc wl_prepare {} {
    load_aerostore
    open_store off
    FlightState ingest_tsv [read_file [param flights]] [param batch]
    set n [FlightState count]
    aerostore::checkpoint_now
    emit prepare $n rows
}

# Untimed: ingest with synchronous_commit on and checkpoints disabled, then
# kill -9: every row is acknowledged, durable, and only in the WAL.
proc wl_prepare_crashed {} {
    load_aerostore
    open_store on
    aerostore::set_config aerostore.checkpoint_interval_secs 0
    FlightState ingest_tsv [read_file [param flights]] [param batch]
    emit prepare_crashed [FlightState count] rows
    exec kill -9 [pid]
}

proc wl_ingest {} {
    start
    set rss0 [rss_kb]
    set t0 [now]
    set data [read_file [param flights]]
    set r [FlightState ingest_tsv $data [param batch]]
    set dt [expr {([now] - $t0) / 1e6}]
    unset data
    set n [FlightState count]
    emit_rows ingest $dt $n result $r
    emit_memory $rss0 $n
}

proc wl_update {} {
    start
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
    emit_rows update $dt $n result $r
}

proc wl_count_range {} {
    start
    per_call count_range [info body q_count]
}

proc wl_top50 {} {
    start
    per_call top50 [info body q_top50]
}

proc wl_range_offset {} {
    start
    per_call range_offset [info body q_range_offset]
}

proc wl_scan {} {
    start
    FlightState index drop gs
    per_call scan {
        FlightState search -compare {{> gs 400}} -countOnly 1
    }
}

proc wl_match {} {
    start
    per_call match [info body q_match]
}

proc wl_get {} {
    start
    fig_get [info body q_get]
}

# Single-row commits: one autocommit [FlightState set] per call.
proc wl_commit1 {} {
    start
    fig_commit1 {FlightState set $k altitude $n}
}

# The same from 8 Tcl threads sharing the process's one engine, disjoint keys.
proc wl_commit8 {} {
    start
    fig_commit8 {
        package require aerostore
        aerostore::init $arg
    } [param dir] {FlightState set $k altitude $n}
}

# Reopen: time from aerostore::init on the checkpointed template to the answer
# of a first point get, and (a second figure) on to the answer of a first
# indexed count, which pays for any index built lazily.  Package loading, i.e.
# starting Python, is reported apart.
proc wl_reopen {} { reopen reopen }

# Recovery: the same on the crashed template (WAL replay of every row).
proc wl_recover {} { reopen recover }

proc reopen {figure} {
    set load_s [load_aerostore]
    fig_reopen $figure {open_store [param sync]} [info body q_get] [info body q_count] \
        {FlightState count} package_require_s $load_s
}
