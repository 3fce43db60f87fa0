# Tcl package index of Aerostore: `package require aerostore` loads the shim
# built by `make shim` (aerostore/tclbridge/libaerostore_tcl.so, beside the
# Python package of this repository).  Put this folder on auto_path:
#   TCLLIBPATH=<repo>/tcl tclsh      or      lappend auto_path <repo>/tcl
# A safe interpreter (e.g. from safe::interpCreate) gets the read-only subset
# from the copy its trusted parent already loaded.
package ifneeded aerostore 0.1 [list apply {{dir} {
    if {[interp issafe]} {
        load {} Aerostore
        return
    }
    set root [file dirname [file normalize $dir]]
    set lib [file join $root aerostore tclbridge libaerostore_tcl[info sharedlibextension]]
    if {![file exists $lib]} {
        return -code error -errorcode [list AEROSTORE INIT NOTBUILT $lib] \
            "aerostore: the Tcl shim is not built ($lib is missing): run \"make shim\" in $root"
    }
    load $lib Aerostore
}} $dir]
