# live_host.tcl: one process holding one store, its feed and its readers as Tcl
# threads (package Thread), driven by bench/live.py over stdin/stdout.
#
#   tclsh live_host.tcl <engine.tcl> ?param value ...?
#
# The main thread opens the store (eng_open_main), then reads one command per
# line from stdin, a Tcl list, and answers with JSON lines on stdout, the last
# one {"ok":"<command>"} or {"error":"..."}:
#
#   checks                 answers of the checkable queries (reader thread 0)
#   warm                   a few untimed calls of every query kind in every reader
#   phase name R kinds rate secs newbase newfrac seed out
#                          R reader threads loop over `kinds` and, if rate > 0,
#                          the feed thread commits at `rate` rows/s, all from one
#                          start time for `secs` seconds; every sample goes to the
#                          file `out` (JSON lines), a summary line to stdout
#   quit
#
# Threads are created on first need and kept: phase after phase, the same
# connections (and for Aerostore, the same engine) serve them.

set HERE [file dirname [file normalize [info script]]]
source [file join $HERE live_lib.tcl]
lassign $argv ENGINE_FILE
set_params [lrange $argv 1 end]
source $ENGINE_FILE
package require Thread

# eng_counters -> a dict of the engine's own counters (numbers), read before
# and after each phase: their growth goes into the phase's file as a record of
# role "engine".  Engines that have none say nothing.
if {[info commands eng_counters] eq ""} {
    proc eng_counters {} { return {} }
}

set ::READERS {}
set ::FEEDER ""

proc new_thread {} {
    set tid [thread::create {thread::wait}]
    thread::send $tid [list source [file join $::HERE live_lib.tcl]]
    thread::send $tid [list set ::P $::P]
    thread::send $tid [list source $::ENGINE_FILE]
    thread::send $tid {
        proc wrap {args} {
            if {[catch {uplevel #0 $args} res opts]} {
                return "ERROR [list $res [dict get $opts -errorinfo]]"
            }
            return $res
        }
    }
    thread::send $tid eng_connect
    return $tid
}

proc ensure_readers {n} {
    while {[llength $::READERS] < $n} { lappend ::READERS [new_thread] }
}

proc ensure_feeder {} {
    if {$::FEEDER eq ""} { set ::FEEDER [new_thread] }
}

# Send `cmd` to every thread of tids at once; wait for all; -> results in order.
proc all_threads {tids cmd} {
    array unset ::RES
    set i 0
    foreach tid $tids {
        thread::send -async $tid [list wrap {*}[lindex $cmd $i]] ::RES($i)
        incr i
    }
    set out {}
    for {set j 0} {$j < $i} {incr j} {
        while {![info exists ::RES($j)]} { vwait ::RES($j) }
        if {[string match "ERROR *" $::RES($j)]} {
            lassign [string range $::RES($j) 6 end] msg info
            error "thread $j: $msg" $info
        }
        lappend out $::RES($j)
    }
    return $out
}

proc cmd_checks {} {
    ensure_readers 1
    puts [thread::send [lindex $::READERS 0] live_checks]
}

proc cmd_warm {} {
    ensure_readers 1
    set cmds {}
    foreach tid $::READERS { lappend cmds {live_warm 3} }
    all_threads $::READERS $cmds
}

proc cmd_phase {name nreaders kinds rate secs newbase newfrac seed out} {
    ensure_readers $nreaders
    set readers [lrange $::READERS 0 $nreaders-1]
    set tids $readers
    # untimed: one mix per reader, so the phase starts from a settled store
    set cmds {}
    foreach tid $readers { lappend cmds {live_warm 1} }
    all_threads $readers $cmds
    set t0 [expr {[now] + 50000}]
    set deadline [expr {$t0 + wide($secs * 1e6)}]
    set cmds {}
    set i 0
    foreach tid $readers {
        lappend cmds [list reader_run $kinds $t0 $deadline [expr {$seed * 1000 + $i}] r$i]
        incr i
    }
    if {$rate > 0} {
        ensure_feeder
        lappend tids $::FEEDER
        lappend cmds [list feed_run $rate $t0 $deadline $newbase $newfrac [expr {$seed * 1000 + 999}]]
    }
    set c0 [eng_counters]
    set res [all_threads $tids $cmds]
    set c1 [eng_counters]
    if {[dict size $c1]} {
        set parts {}
        dict for {k v} $c1 {
            lappend parts "[json_str $k]:[expr {$v - [dict get $c0 $k]}]"
        }
        lappend res "\{\"role\":\"engine\",\"counters\":\{[join $parts ,]\}\}"
    }
    set f [open $out w]
    puts $f [join $res \n]
    close $f
    puts "\{\"phase\":[json_str $name],\"t0\":$t0,\"deadline\":$deadline,\"out\":[json_str $out]\}"
}

eng_open_main
puts "\{\"ready\":1,\"pid\":[pid]\}"
flush stdout
while {[gets stdin line] >= 0} {
    set line [string trim $line]
    if {$line eq ""} continue
    set cmd [lindex $line 0]
    if {$cmd eq "quit"} break
    if {[catch {cmd_$cmd {*}[lrange $line 1 end]} msg opts]} {
        puts stderr [dict get $opts -errorinfo]
        puts "\{\"error\":[json_str $msg]\}"
    } else {
        puts "\{\"ok\":[json_str $cmd]\}"
    }
    flush stdout
}
foreach tid [concat $::READERS [list $::FEEDER]] {
    if {$tid ne ""} { catch {thread::send $tid {catch eng_close_main}} }
}
eng_close_main
exit 0
