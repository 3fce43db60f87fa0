# What every benchmark script shares: parameters, the clock, JSON strings.
# Sourced by harness.tcl (each figure alone) and live_lib.tcl (the live feed).

set ::P [dict create]
proc param {name {default ""}} {
    if {[dict exists $::P $name]} { return [dict get $::P $name] }
    if {$default ne ""} { return $default }
    error "missing parameter $name"
}

proc now {} { clock microseconds }

proc json_str {s} {
    return "\"[string map {\\ \\\\ \" \\\" \n \\n \r \\r \t \\t} $s]\""
}
