# What every benchmark script shares: parameters, the clock, JSON strings, the
# shape of a query that binds its rows.  Sourced by harness.tcl (each figure
# alone) and live_lib.tcl (the live feed).

set ::P [dict create]
proc param {name {default ""}} {
    if {[dict exists $::P $name]} { return [dict get $::P $name] }
    if {$default ne ""} { return $default }
    error "missing parameter $name"
}

# The parameters, name value pairs (from the command line or the driver).
proc set_params {pairs} {
    if {[llength $pairs] % 2} { puts stderr "parameters must be name value pairs"; exit 2 }
    set ::P $pairs
}

proc now {} { clock microseconds }

proc json_str {s} {
    return "\"[string map {\\ \\\\ \" \\\" \n \\n \r \\r \t \\t} $s]\""
}

# bound_rows call last ?init? -> the text of a query body that runs `call`, an
# engine command whose last word (left off here) is a script run once per row
# with the row in the variable `row`; the body counts the rows, keeps the last
# row's key (`last` reads it from `row`) and returns "rows last_key".  init 1
# starts last empty, for a query that may find no row.  Text, not a proc: the
# engine files make their q_ procs of it (the live feed calls them), and the
# per-figure harness times those bodies inline ([info body q_top50]), so no
# call is added to what is timed.
proc bound_rows {call last {init 0}} {
    set body "set n 0\n"
    if {$init} { append body "set last {}\n" }
    append body "[string trim $call] {\n    incr n\n    set last $last\n}\n"
    append body "return \"\$n \$last\""
    return $body
}
