# harness.tcl: runs ONE workload of ONE engine in this (fresh) tclsh and prints
# its figures as JSON lines on stdout; bench/run.py starts one process per
# (workload, engine, repetition) and collects them.
#
#   tclsh harness.tcl <engine.tcl> <workload> ?param value ...?
#
# The engine file defines one proc per workload (wl_<name>) written the way a Tcl
# programmer would use that engine; this file only holds what both sides share:
# parameters, the clock, the timing loops, RSS, JSON output.  Timing is taken
# inside the process with [clock microseconds], so process start-up, package
# loading and data preparation are never part of a figure.

source [file join [file dirname [info script]] common.tcl]

# emit figure value unit ?key value ...?  -> one JSON object on stdout.
# Numbers are written as numbers, everything else as a string.
proc emit {figure value unit args} {
    set parts [list "\"figure\":[json_str $figure]" "\"value\":$value" "\"unit\":[json_str $unit]"]
    foreach {k v} $args {
        if {[string is double -strict $v]} {
            lappend parts "[json_str $k]:$v"
        } else {
            lappend parts "[json_str $k]:[json_str $v]"
        }
    }
    puts "\{[join $parts ,]\}"
    flush stdout
}

# Resident set size of this process in kB (VmRSS from /proc/self/status).
proc rss_kb {} {
    set f [open /proc/self/status]
    set text [read $f]
    close $f
    regexp {VmRSS:\s+(\d+)} $text -> kb
    return $kb
}

# time_per_call body ?budget_ms? -> median microseconds per evaluation of body.
# The body is compiled into a proc (so it runs as bytecode, like application
# code), run once to warm up and calibrate, then in groups sized so one group
# takes about 2 ms (clock resolution is 1 us), until budget_ms is spent or 200
# groups are taken.  Returns {median_us samples calls result_of_last_call}.
proc time_per_call {body {budget_ms 1000}} {
    proc __bench_body {} $body
    set t0 [now]
    set result [__bench_body]
    set first [expr {max(1, [now] - $t0)}]
    set group [expr {max(1, int(2000 / $first))}]
    set samples {}
    set calls 0
    set deadline [expr {[now] + $budget_ms * 1000}]
    while {[llength $samples] < 200} {
        set t0 [now]
        for {set i 0} {$i < $group} {incr i} { set result [__bench_body] }
        lappend samples [expr {double([now] - $t0) / $group}]
        incr calls $group
        if {[llength $samples] >= 5 && [now] > $deadline} break
    }
    set s [lsort -real $samples]
    set n [llength $s]
    if {$n % 2} {
        set med [lindex $s [expr {$n / 2}]]
    } else {
        set med [expr {([lindex $s [expr {$n/2 - 1}]] + [lindex $s [expr {$n/2}]]) / 2.0}]
    }
    return [list $med $n $calls $result]
}

proc read_file {path} {
    set f [open $path]
    fconfigure $f -translation lf -encoding ascii
    set data [read $f]
    close $f
    return $data
}

proc read_keys {path {limit 0}} {
    set keys [split [string trim [read_file $path]] \n]
    if {$limit > 0} { set keys [lrange $keys 0 $limit-1] }
    return $keys
}

# emit_rows figure dt n ?key value ...?: a figure of dt seconds for n rows.
proc emit_rows {figure dt n args} {
    emit $figure $dt s rows $n rows_per_s [expr {$n / $dt}] {*}$args
}

# emit_memory rss0 n: the memory figure, RSS growth since rss0 (kB) per row.
proc emit_memory {rss0 n} {
    set kb [expr {[rss_kb] - $rss0}]
    emit memory [expr {$kb * 1024.0 / $n}] B/row rss_delta_kb $kb rows $n
}

# per_call figure body: the figure is time_per_call's median in ms; its check,
# the result of the last call.
proc per_call {figure body} {
    lassign [time_per_call $body] us samples calls result
    emit $figure [expr {$us / 1000.0}] ms samples $samples calls $calls check $result
}

# The figures below are the same loops for every engine; the engine gives its
# commands as text (@NAME@ in a template: the engine's get, commit, ...), and
# the figure proc puts them in with [string map] and runs the result as a proc:
# the engine's command stands in the timed loop as if written there by hand,
# with no call or eval added per operation (time_per_call does the same).
proc run_inline {params template map args} {
    proc __bench_inline $params [string map $map $template]
    return [__bench_inline {*}$args]
}

# fig_get get: the get figure.  `get` reads the whole row of key $k; every key
# of [param keys] once, after 1000 untimed reads.
proc fig_get {get} {
    run_inline {keys} {
        foreach k [lrange $keys 0 999] { @GET@ }
        set t0 [now]
        foreach k $keys {
            set row [@GET@]
        }
        set dt [expr {double([now] - $t0)}]
        emit get [expr {$dt / [llength $keys]}] us calls [llength $keys] check [llength $row]
    } [list @GET@ [string trim $get]] [read_keys [param keys]]
}

# fig_commit1 commit: the commit1 figure.  `commit` sets altitude $n on key $k
# in one autocommit transaction; [param commits] keys, or [param max_secs].
proc fig_commit1 {commit} {
    run_inline {keys} {
        set deadline [expr {[now] + [param max_secs] * 1000000}]
        set t0 [now]
        set n 0
        foreach k $keys {
            @COMMIT@
            incr n
            if {[now] > $deadline} break
        }
        set dt [expr {double([now] - $t0)}]
        emit commit1 [expr {$dt / $n}] us/commit commits $n commits_per_s [expr {$n * 1e6 / $dt}]
    } [list @COMMIT@ $commit] [read_keys [param keys] [param commits]]
}

# fig_commit8 setup arg commit: the commit8 figure, the same commits from
# [param threads] (8) Tcl threads, each with its share of the keys.  Every
# thread runs `setup` (its own engine handle; $arg is arg) before the clock
# starts; then all start together, and the figure is wall time per commit.
proc fig_commit8 {setup arg commit} {
    package require Thread
    set nthreads [param threads 8]
    set per [expr {[param commits] / $nthreads}]
    set keys [read_keys [param keys] [expr {$per * $nthreads}]]
    set script [string map [list @SETUP@ $setup @COMMIT@ $commit] {
        proc setup {arg} {@SETUP@}
        proc run {keys deadline} {
            set n 0
            foreach k $keys {
                @COMMIT@
                incr n
                if {[clock microseconds] > $deadline} break
            }
            return $n
        }
        thread::wait
    }]
    set tids {}
    for {set t 0} {$t < $nthreads} {incr t} {
        set tid [thread::create $script]
        thread::send $tid [list setup $arg]
        lappend tids $tid
    }
    set deadline [expr {[now] + [param max_secs] * 1000000}]
    set t0 [now]
    set t 0
    foreach tid $tids {
        set mine [lrange $keys [expr {$t * $per}] [expr {($t + 1) * $per - 1}]]
        thread::send -async $tid [list run $mine $deadline] ::done($t)
        incr t
    }
    set total 0
    for {set t 0} {$t < $nthreads} {incr t} {
        while {![info exists ::done($t)]} { vwait ::done($t) }
        incr total $::done($t)
    }
    set dt [expr {double([now] - $t0)}]
    emit commit8 [expr {$dt / $total}] us/commit commits $total threads $nthreads \
        commits_per_s [expr {$total * 1e6 / $dt}]
}

# fig_reopen figure open get count rows ?key value ...?: the reopen or recover
# figure, seconds from `open` (the store as the driver left it) to the answer
# of a first `get` of a key, and (figure_query) on to the answer of a first
# indexed `count`; `rows` counts the rows (untimed).  Extra key value pairs go
# with the first figure.
proc fig_reopen {figure open get count rows args} {
    run_inline {figure k extra} {
        set t0 [now]
        @OPEN@
        set row [@GET@]
        set dt [expr {([now] - $t0) / 1e6}]
        set c [@COUNT@]
        set dq [expr {([now] - $t0) / 1e6}]
        emit $figure $dt s check [llength $row] rows [@ROWS@] {*}$extra
        emit ${figure}_query $dq s check $c
    } [list @OPEN@ $open @GET@ [string trim $get] @COUNT@ [string trim $count] @ROWS@ $rows] \
        $figure [lindex [read_keys [param keys] 1] 0] $args
}

lassign $argv engine_file workload
set_params [lrange $argv 2 end]
source $engine_file
if {[info commands wl_$workload] eq ""} {
    emit $workload null "" na "workload not implemented for this engine"
    exit 0
}
if {[catch {wl_$workload} msg opts]} {
    puts stderr [dict get $opts -errorinfo]
    emit $workload null "" error $msg errorcode [dict get $opts -errorcode]
    exit 1
}
if {[info commands engine_finish] ne ""} { engine_finish }
exit 0
