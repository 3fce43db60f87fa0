# live_client.tcl: one live-feed client as a process of its own (engines whose
# Tcl binding is not safe across threads: PostgreSQL through Pgtcl).
#
#   tclsh live_client.tcl <engine.tcl> <params> <command>
#
# params is a Tcl list of name value pairs; command one of live_lib.tcl's
# live_checks, live_warm, reader_run ..., feed_run ....  The client connects
# (eng_connect), runs the command and prints its result (JSON lines) on stdout.

set HERE [file dirname [file normalize [info script]]]
source [file join $HERE live_lib.tcl]
lassign $argv ENGINE_FILE params command
set_params $params
source $ENGINE_FILE
if {[catch {
    eng_connect
    set out [uplevel #0 $command]
} msg opts]} {
    puts stderr [dict get $opts -errorinfo]
    puts "\{\"error\":[json_str $msg]\}"
    exit 1
}
puts $out
catch eng_close_main
exit 0
