# harness.tcl: runs ONE workload of ONE engine in this (fresh) tclsh and prints
# its figures as JSON lines on stdout; bench/run.py starts one process per
# (workload, engine, repetition) and collects them.
#
#   tclsh harness.tcl <engine.tcl> <workload> ?param value ...?
#
# The engine file defines one proc per workload (wl_<name>) written the way a Tcl
# programmer would use that engine; this file only holds what both sides share:
# parameters, the clock, the per-call timing loop, RSS, JSON output.  Timing is
# taken inside the process with [clock microseconds], so process start-up, package
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

# drive_threads tids keys per: give each thread (which defines "run keys deadline"
# -> commits done) its share of keys, start them together, wait for all, and emit
# the commit8 figure (wall time per commit).  Shared by both engines.
proc drive_threads {tids keys per} {
    set nthreads [llength $tids]
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

lassign $argv engine_file workload
set ::P [lrange $argv 2 end]
if {[llength $::P] % 2} { puts stderr "parameters must be name value pairs"; exit 2 }
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
