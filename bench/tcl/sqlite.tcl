# sqlite.tcl: the SQLite 3 peer, written the way a Tcl programmer uses the
# binding: SQL text with bound $variables through [db eval] (the binding caches
# the prepared statements), [db transaction] around each batch, row scripts with
# an array for binding rows.  Sourced by harness.tcl.
#
# Parameters: mode (mem = ":memory:", wal = a file in WAL mode with
# synchronous=FULL), db (the database file; for mem the template restored into
# memory), flights/updates/keys (data files), batch (rows per transaction).

package require sqlite3

set SCHEMA {
    CREATE TABLE flights(
        flight_id  TEXT PRIMARY KEY,
        lat        REAL,
        lon        REAL,
        altitude   INTEGER,
        gs         INTEGER,
        updated_at INTEGER);
    CREATE INDEX flights_altitude   ON flights(altitude);
    CREATE INDEX flights_gs         ON flights(gs);
    CREATE INDEX flights_lat        ON flights(lat);
    CREATE INDEX flights_lon        ON flights(lon);
    CREATE INDEX flights_updated_at ON flights(updated_at);
}

# The same upsert for "ingest new rows" and "update all rows" (Aerostore's
# ingest_tsv is an upsert too).
set UPSERT {
    INSERT INTO flights(flight_id, lat, lon, altitude, gs, updated_at)
    VALUES($id, $lat, $lon, $alt, $gs, $ts)
    ON CONFLICT(flight_id) DO UPDATE SET
        lat = excluded.lat, lon = excluded.lon, altitude = excluded.altitude,
        gs = excluded.gs, updated_at = excluded.updated_at
}

proc pragmas {db} {
    if {[param mode] eq "wal"} {
        $db eval {PRAGMA journal_mode = WAL}
        $db eval {PRAGMA synchronous = FULL}
    }
}

# Open the benchmark database: a fresh one (fresh 1), or the prepared template.
proc open_db {{fresh 0}} {
    if {[param mode] eq "mem"} {
        sqlite3 db :memory:
        if {!$fresh} { db restore main [param db] }
    } else {
        sqlite3 db [param db]
    }
    pragmas db
    if {$fresh} { db eval $::SCHEMA }
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

# Untimed: build the template the read workloads start from.
proc wl_prepare {} {
    sqlite3 db [param db]
    db eval {PRAGMA journal_mode = WAL}
    db eval {PRAGMA synchronous = OFF}
    db eval $::SCHEMA
    set n [load_tsv [param flights]]
    db close
    emit prepare $n rows
}

# Untimed: the same load, then kill -9 before the connection is closed: what a
# crash right after the load leaves behind with SQLite's default settings (the
# -wal file holds what the default wal_autocheckpoint of 1000 pages has not yet
# copied back; Aerostore's mirror keeps everything in its WAL).
proc wl_prepare_crashed {} {
    sqlite3 db [param db]
    db eval {PRAGMA journal_mode = WAL}
    db eval {PRAGMA synchronous = OFF} ;# kill -9 is not a power loss: same files
    db eval $::SCHEMA
    set n [load_tsv [param flights]]
    emit prepare_crashed $n rows
    exec kill -9 [pid]
}

proc wl_ingest {} {
    set rss0 [rss_kb]
    open_db 1
    set t0 [now]
    set n [load_tsv [param flights]]
    set dt [expr {([now] - $t0) / 1e6}]
    emit ingest $dt s rows $n rows_per_s [expr {$n / $dt}]
    if {[param mode] eq "mem"} {
        set kb [expr {[rss_kb] - $rss0}]
        emit memory [expr {$kb * 1024.0 / $n}] B/row rss_delta_kb $kb rows $n
    }
}

proc wl_update {} {
    open_db
    set t0 [now]
    set n [load_tsv [param updates]]
    set dt [expr {([now] - $t0) / 1e6}]
    emit update $dt s rows $n rows_per_s [expr {$n / $dt}]
}

proc wl_count_range {} {
    open_db
    lassign [time_per_call {
        db onecolumn {SELECT count(*) FROM flights WHERE altitude > 30000}
    }] us samples calls result
    emit count_range [expr {$us / 1000.0}] ms samples $samples calls $calls check $result
}

proc wl_top50 {} {
    open_db
    lassign [time_per_call {
        set n 0
        db eval {SELECT * FROM flights WHERE altitude > 10000 ORDER BY lat LIMIT 50} a {
            incr n
            set last $a(flight_id)
        }
        return "$n $last"
    }] us samples calls result
    emit top50 [expr {$us / 1000.0}] ms samples $samples calls $calls check $result
}

proc wl_range_offset {} {
    open_db
    lassign [time_per_call {
        set n 0
        db eval {SELECT * FROM flights WHERE altitude >= 10000 AND altitude < 20000
                 ORDER BY lat LIMIT 50 OFFSET 100} a {
            incr n
            set last $a(flight_id)
        }
        return "$n $last"
    }] us samples calls result
    emit range_offset [expr {$us / 1000.0}] ms samples $samples calls $calls check $result
}

proc wl_scan {} {
    open_db
    db eval {DROP INDEX flights_gs}
    lassign [time_per_call {
        db onecolumn {SELECT count(*) FROM flights WHERE gs > 400}
    }] us samples calls result
    emit scan [expr {$us / 1000.0}] ms samples $samples calls $calls check $result
}

proc wl_get {} {
    open_db
    set keys [read_keys [param keys]]
    foreach k [lrange $keys 0 999] { db eval {SELECT * FROM flights WHERE flight_id = $k} }
    set t0 [now]
    foreach k $keys {
        set row [db eval {SELECT * FROM flights WHERE flight_id = $k}]
    }
    set dt [expr {double([now] - $t0)}]
    emit get [expr {$dt / [llength $keys]}] us calls [llength $keys] check [llength $row]
}

# Single-row durable commits: one autocommit UPDATE per call.
proc wl_commit1 {} {
    if {[param mode] eq "mem"} {
        emit commit1 null "" na "in-memory SQLite is not durable"
        return
    }
    open_db
    set keys [read_keys [param keys] [param commits]]
    set deadline [expr {[now] + [param max_secs] * 1000000}]
    set t0 [now]
    set n 0
    foreach k $keys {
        db eval {UPDATE flights SET altitude = $n WHERE flight_id = $k}
        incr n
        if {[now] > $deadline} break
    }
    set dt [expr {double([now] - $t0)}]
    emit commit1 [expr {$dt / $n}] us/commit commits $n commits_per_s [expr {$n * 1e6 / $dt}]
}

# The same from 8 Tcl threads, each with its own connection (SQLite serializes
# writers; the busy timeout makes them wait instead of failing), disjoint keys.
proc wl_commit8 {} {
    if {[param mode] eq "mem"} {
        emit commit8 null "" na "in-memory SQLite is not durable"
        return
    }
    package require Thread
    set nthreads [param threads 8]
    set per [expr {[param commits] / $nthreads}]
    set keys [read_keys [param keys] [expr {$per * $nthreads}]]
    set tids {}
    for {set t 0} {$t < $nthreads} {incr t} {
        set tid [thread::create {
            package require sqlite3
            proc setup {path} {
                sqlite3 db $path
                db timeout 600000
                db eval {PRAGMA synchronous = FULL}
                db eval {SELECT count(*) FROM sqlite_master}
            }
            proc run {keys deadline} {
                set n 0
                foreach k $keys {
                    db eval {UPDATE flights SET altitude = $n WHERE flight_id = $k}
                    incr n
                    if {[clock microseconds] > $deadline} break
                }
                return $n
            }
            thread::wait
        }]
        thread::send $tid [list setup [param db]]
        lappend tids $tid
    }
    drive_threads $tids $keys $per
}

# Reopen: time from opening the file to the answer of a first point get, and
# on to the answer of a first indexed count (a second figure).
proc wl_reopen {} { reopen reopen "in-memory SQLite does not persist" }

# Recovery: the same on the crashed template (SQLite rebuilds its WAL index
# from the whole -wal file on first access).
proc wl_recover {} { reopen recover "in-memory SQLite does not persist" }

proc reopen {figure why_na} {
    if {[param mode] eq "mem"} {
        emit $figure null "" na $why_na
        emit ${figure}_query null "" na $why_na
        return
    }
    set k [lindex [read_keys [param keys] 1] 0]
    set t0 [now]
    open_db
    set row [db eval {SELECT * FROM flights WHERE flight_id = $k}]
    set dt [expr {([now] - $t0) / 1e6}]
    set c [db onecolumn {SELECT count(*) FROM flights WHERE altitude > 30000}]
    set dq [expr {([now] - $t0) / 1e6}]
    emit $figure $dt s check [llength $row] rows [db onecolumn {SELECT count(*) FROM flights}]
    emit ${figure}_query $dq s check $c
}

# Called by harness.tcl after the workload (outside any timing): close cleanly
# so no -wal file is left behind.
proc engine_finish {} { catch {db close} }
