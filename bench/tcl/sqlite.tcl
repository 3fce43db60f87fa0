# sqlite.tcl: the SQLite 3 peer, written the way a Tcl programmer uses the
# binding (sqlite_lib.tcl: the schema, the upsert, the queries), with
# [db transaction] around each batch.  Sourced by harness.tcl.
#
# Parameters: mode (mem = ":memory:", wal = a file in WAL mode with
# synchronous=FULL), db (the database file; for mem the template restored into
# memory), flights/updates/keys (data files), batch (rows per transaction).

source [file join [file dirname [info script]] sqlite_lib.tcl]

# Open the benchmark database: a fresh one (fresh 1), or the prepared template.
proc open_db {{fresh 0}} {
    if {[param mode] eq "mem"} {
        sqlite3 db :memory:
        if {!$fresh} { db restore main [param db] }
    } else {
        sqlite3 db [param db]
        wal db FULL
    }
    if {$fresh} { db eval $::SCHEMA }
}

# In-memory SQLite has no durable commits and nothing to reopen: emit these
# figures n/a with the reason; -> 1 if so.
proc na_in_memory {why args} {
    if {[param mode] ne "mem"} { return 0 }
    foreach figure $args { emit $figure null "" na $why }
    return 1
}

# Upsert every line of a TSV file, [param batch] rows per transaction.
# Lines are read with [gets] (constant memory, as a long-running Tcl loader
# would); each batch is one [db transaction].
proc load_tsv {path} {
    set batch [param batch]
    set f [open $path]
    fconfigure $f -translation auto -encoding ascii
    set n 0
    set more 1
    while {$more} {
        db transaction {
            set more 0
            while {[gets $f line] >= 0} {
                if {$line eq ""} continue
                lassign [split $line \t] id lat lon alt gs ts
                db eval $::UPSERT
                if {[incr n] % $batch == 0} { set more 1; break }
            }
        }
    }
    close $f
    return $n
}

# Untimed: a new database in WAL mode (synchronous OFF: kill -9 is not a power
# loss, the files are the same) loaded with the flights; -> rows.
proc build_template {} {
    sqlite3 db [param db]
    wal db OFF
    db eval $::SCHEMA
    return [load_tsv [param flights]]
}

# Untimed: build the template the read workloads start from.
proc wl_prepare {} {
    set n [build_template]
    db close
    emit prepare $n rows
}

# Untimed: the same load, then kill -9 before the connection is closed: what a
# crash right after the load leaves behind with SQLite's default settings (the
# -wal file holds what the default wal_autocheckpoint of 1000 pages has not yet
# copied back; Aerostore's mirror keeps everything in its WAL).
proc wl_prepare_crashed {} {
    set n [build_template]
    emit prepare_crashed $n rows
    exec kill -9 [pid]
}

proc wl_ingest {} {
    set rss0 [rss_kb]
    open_db 1
    set t0 [now]
    set n [load_tsv [param flights]]
    set dt [expr {([now] - $t0) / 1e6}]
    emit_rows ingest $dt $n
    if {[param mode] eq "mem"} { emit_memory $rss0 $n }
}

proc wl_update {} {
    open_db
    set t0 [now]
    set n [load_tsv [param updates]]
    set dt [expr {([now] - $t0) / 1e6}]
    emit_rows update $dt $n
}

proc wl_count_range {} {
    open_db
    per_call count_range [info body q_count]
}

proc wl_top50 {} {
    open_db
    per_call top50 [info body q_top50]
}

proc wl_range_offset {} {
    open_db
    per_call range_offset [info body q_range_offset]
}

proc wl_scan {} {
    open_db
    db eval {DROP INDEX flights_gs}
    per_call scan {
        db onecolumn {SELECT count(*) FROM flights WHERE gs > 400}
    }
}

proc wl_match {} {
    open_db
    per_call match [info body q_match]
}

proc wl_get {} {
    open_db
    fig_get [info body q_get]
}

# Single-row durable commits: one autocommit UPDATE per call.
proc wl_commit1 {} {
    if {[na_in_memory "in-memory SQLite is not durable" commit1]} return
    open_db
    fig_commit1 {db eval {UPDATE flights SET altitude = $n WHERE flight_id = $k}}
}

# The same from 8 Tcl threads, each with its own connection (SQLite serializes
# writers; the busy timeout makes them wait instead of failing), disjoint keys.
proc wl_commit8 {} {
    if {[na_in_memory "in-memory SQLite is not durable" commit8]} return
    fig_commit8 {
        package require sqlite3
        sqlite3 db $arg
        db timeout 600000
        db eval {PRAGMA synchronous = FULL}
        db eval {SELECT count(*) FROM sqlite_master}
    } [param db] {db eval {UPDATE flights SET altitude = $n WHERE flight_id = $k}}
}

# Reopen: time from opening the file to the answer of a first point get, and
# on to the answer of a first indexed count (a second figure).
proc wl_reopen {} { reopen reopen }

# Recovery: the same on the crashed template (SQLite rebuilds its WAL index
# from the whole -wal file on first access).
proc wl_recover {} { reopen recover }

proc reopen {figure} {
    if {[na_in_memory "in-memory SQLite does not persist" $figure ${figure}_query]} return
    fig_reopen $figure open_db [info body q_get] [info body q_count] \
        {db onecolumn {SELECT count(*) FROM flights}}
}

# Called by harness.tcl after the workload (outside any timing): close cleanly
# so no -wal file is left behind.
proc engine_finish {} { catch {db close} }
