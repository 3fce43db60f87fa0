"""The extension in real tclsh processes: loading from a clean environment,
Tcl threads, exit, durability across processes, watch callbacks through the
event loop, strings round-tripping to disk."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from test_tcl_support import ROOT, TCL_DIR, tclsh


def test_package_require_from_clean_env_with_weird_path(shim, tmp_path):
    # A PATH where python3 is the system's (or missing): the shim still starts
    # the virtual environment's Python, recorded at build time.
    bogus = tmp_path / "bin"
    bogus.mkdir()
    (bogus / "python3").write_text("#!/bin/sh\nexit 99\n")
    (bogus / "python3").chmod(0o755)
    p = tclsh("puts [package require aerostore]\n"
              "puts [aerostore::init :memory:]\n"
              "FlightState set K alt 1\n"
              "puts [FlightState get K alt]\n",
              env_extra={"PATH": f"{bogus}:/usr/bin:/bin"}, cwd=tmp_path)
    assert p.stdout.split("\n")[:3] == ["0.1", "aerostore ready (dir=:memory:)", "1"]


def test_not_built_gives_a_clear_error(tmp_path):
    fake = tmp_path / "repo"
    shutil.copytree(TCL_DIR, fake / "tcl")
    p = tclsh("puts [catch {package require aerostore} m]; puts $m; puts $::errorCode\n",
              env_extra={"TCLLIBPATH": str(fake / "tcl")})
    lines = p.stdout.splitlines()
    assert lines[0] == "1"
    assert "the Tcl shim is not built" in lines[1] and "make shim" in lines[1]
    assert lines[2].startswith("AEROSTORE INIT NOTBUILT")


def test_bad_python_override_is_reported_not_crashed(shim, tmp_path):
    p = tclsh("puts [catch {package require aerostore} m]; puts $m\n"
              "puts [catch {package require aerostore} m]; puts $m\n",
              env_extra={"PYTHONHOME": str(tmp_path / "nonexistent")}, check=False)
    lines = p.stdout.splitlines()
    assert lines[0] == "1" and lines[1].startswith("aerostore: cannot start Python ")
    assert lines[2] == "1" and lines[3] == lines[1]      # kept for the process


def test_exit_flushes_and_a_second_process_recovers(shim, tmp_path):
    d = tmp_path / "store"
    tclsh(f"package require aerostore\n"
          f"aerostore::init {d}\n"
          f"aerostore::set_config aerostore.synchronous_commit off\n"
          f"for {{set i 0}} {{$i < 200}} {{incr i}} {{ FlightState set K$i alt $i }}\n"
          f"exit\n")
    p = tclsh(f"package require aerostore\n"
              f"aerostore::init {d}\n"
              f"puts [FlightState count]\n"
              f"puts [FlightState get K199 alt]\n")
    assert p.stdout.split() == ["200", "199"]


def test_second_process_is_refused_while_one_owns_the_dir(shim, tmp_path):
    d = tmp_path / "store"
    holder = subprocess.Popen(["tclsh"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={"PATH": "/usr/bin:/bin", "TCLLIBPATH": TCL_DIR})
    try:
        holder.stdin.write(f"package require aerostore\naerostore::init {d}\nputs ready\nflush stdout\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "ready"
        p = tclsh(f"package require aerostore\n"
                  f"puts [catch {{aerostore::init {d}}} m]\nputs $::errorCode\n")
        lines = p.stdout.splitlines()
        assert lines[0] == "1"
        assert lines[1].startswith("AEROSTORE LOCKED")
    finally:
        holder.stdin.write("exit\n")
        holder.stdin.close()
        holder.wait(timeout=30)


def test_four_tcl_threads_share_the_engine(shim, tmp_path):
    d = tmp_path / "store"
    script = f"""
package require Thread
package require aerostore
aerostore::init {d}
aerostore::set_config aerostore.synchronous_commit off
set work {{
    package require aerostore
    aerostore::init {d}
    proc run {{id}} {{
        for {{set j 0}} {{$j < 300}} {{incr j}} {{
            FlightState set T${{id}}_$j alt $j gs $id
            if {{[FlightState get T${{id}}_$j alt] != $j}} {{ error "lost write" }}
            FlightState search -compare [list [list = gs $id]] -sort -alt -limit 5 -key k -code {{}}
        }}
        aerostore::transaction {{
            FlightState set TX$id alt 1 gs $id
        }}
        return [FlightState search -compare [list [list = gs $id]] -countOnly 1]
    }}
}}
set tids {{}}
for {{set i 0}} {{$i < 4}} {{incr i}} {{
    set t [thread::create -joinable]
    thread::send $t $work
    lappend tids $t
}}
set n 0
foreach t $tids {{
    thread::send -async $t [list run $n] ::result($t)
    incr n
}}
while {{[array size ::result] < 4}} {{ vwait ::result }}
foreach t $tids {{ puts $::result($t); thread::release $t }}
foreach t $tids {{ thread::join $t }}
puts [FlightState count]
exit
"""
    p = tclsh(script, timeout=120)
    assert p.stdout.split() == ["301", "301", "301", "301", str(4 * 301)]


def test_watch_callbacks_through_vwait_and_from_another_thread(shim, tmp_path):
    script = """
package require Thread
package require aerostore
aerostore::init :memory:
proc cb {args} { lappend ::got $args; if {[llength $::got] == 4} { set ::done 1 } }
set id [FlightState watch -key UAL123 cb]
set id2 [FlightState watch -compare {{> alt 1000}} {lappend ::high}]
FlightState set UAL123 alt 100
set t [thread::create]
thread::send $t {package require aerostore; FlightState set UAL123 alt 200; FlightState set DAL1 alt 5000}
aerostore::transaction { FlightState set UAL123 alt 300; FlightState set UAL123 gs 5 }
catch { aerostore::transaction { FlightState set UAL123 alt 999; error rollback } }
FlightState delete UAL123
after 5000 { set ::done timeout }
vwait ::done
foreach e $::got { puts $e }
puts "high: $::high"
FlightState unwatch $id
puts [catch {FlightState unwatch $id} m]
thread::release $t
exit
"""
    p = tclsh(script)
    assert p.stdout.splitlines() == [
        "insert UAL123 {flight_id UAL123 altitude 100}",
        "update UAL123 {flight_id UAL123 altitude 200}",
        "update UAL123 {flight_id UAL123 altitude 300 gs 5}",
        "delete UAL123 {flight_id UAL123 altitude 300 gs 5}",
        "high: insert DAL1 {flight_id DAL1 altitude 5000}",
        "1",
    ]


def test_watch_errors_are_background_errors_and_deleted_interps_stop_watching(shim):
    script = """
package require aerostore
aerostore::init :memory:
proc bgerror {msg} { lappend ::bg $msg; set ::done 1 }
proc bad {args} { error boom }
FlightState watch bad
interp create child
child eval [list set auto_path $auto_path]
child eval {package require aerostore; FlightState watch {lappend ::x}}
interp delete child
FlightState set K alt 1
after 5000 { set ::done timeout }
vwait ::done
puts $::bg
"""
    p = tclsh(script)
    assert p.stdout.strip() == "boom"


STRINGS = ["a\x00b", "café", "\U0001F600x", "日本語", "x\U00010348\x00\U0001F600", "Ω≈ç√"]


def test_strings_round_trip_tcl_python_disk(shim, tmp_path):
    d = tmp_path / "store"
    # Tcl writes (keys given as Tcl escapes), the next process reads them back.
    def tcl_escape(s):
        out = []
        for ch in s:
            cp = ord(ch)
            if cp < 0x80 and ch.isalnum():
                out.append(ch)
            elif cp <= 0xFFFF:
                out.append(f"\\u{cp:04x}")
            else:
                cp -= 0x10000
                out.append(f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04x}")
        return "".join(out)

    sets = "".join(f'FlightState set "{tcl_escape(k)}" alt {i}\n' for i, k in enumerate(STRINGS))
    tclsh(f"package require aerostore\naerostore::init {d}\n{sets}exit\n")
    # Python reads the store from disk
    code = (
        "import aerostore, sys\n"
        f"db = aerostore.open({str(d)!r})\n"
        "t = db.table('FlightState')\n"
        f"for i, k in enumerate({STRINGS!r}):\n"
        "    assert t.get(k) is not None and t.get(k)[3] == i, (k, t.get(k))\n"
        "print(t.count())\n"
        "db.close()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(len(STRINGS))
    # And Tcl again: get each key back by value, and by search -key
    checks = "".join(
        f'if {{[FlightState get "{tcl_escape(k)}" alt] ne {{{i}}}}} {{ puts "bad {i}" }}\n'
        for i, k in enumerate(STRINGS))
    p = tclsh(f"package require aerostore\naerostore::init {d}\n{checks}"
              "FlightState search -sort alt -key k -code { puts [string length $k] }\n")
    assert "bad" not in p.stdout
    # Tcl counts a non-BMP character as two (UTF-16) units
    expected = [len(k.encode("utf-16-le")) // 2 for k in STRINGS]
    assert [int(x) for x in p.stdout.split()] == expected


def test_demo_script_runs(shim, tmp_path):
    p = tclsh(f"set argv {{}}; set argc 0; source {{{TCL_DIR}/test.tcl}}\n",
              env_extra={"TMPDIR": str(tmp_path)})
    out = p.stdout
    for expected in ("aerostore ready (dir=", "rows_seen=8 inserted=8 updated=0 batches=2",
                     "  BAW404  alt=38000", "watch: update DAL456",
                     "above 30000 now: BAW404 DAL456 JBU202 UAL123",
                     "after commit: 7 rows, ASA303 exists: 0", "UAL123 exists: 1",
                     "checkpoint rows=7"):
        assert expected in out, out
    assert list(tmp_path.iterdir()) == []       # the demo removed its store


def test_two_interps_share_the_store_and_a_transaction_is_private(shim, tmp_path):
    script = f"""
package require aerostore
aerostore::init {tmp_path / 'store'}
interp create other
other eval [list set auto_path $auto_path]
other eval {{package require aerostore; aerostore::init {tmp_path / 'store'}}}
FlightState set SHARED alt 1
puts "other sees shared: [other eval {{FlightState get SHARED alt}}]"
proc peek {{}} {{ other eval {{FlightState exists PRIVATE}} }}
puts "inside: [aerostore::transaction {{
    FlightState set PRIVATE alt 2
    list [FlightState exists PRIVATE] [peek]
}}]"
puts "after commit: [peek]"
puts "other's own transaction: [other eval {{aerostore::transaction {{ FlightState delete SHARED; FlightState count }}}}] [FlightState exists SHARED]"
"""
    p = tclsh(script)
    assert p.stdout.splitlines() == [
        "other sees shared: 1",
        "inside: 1 0",
        "after commit: 1",
        "other's own transaction: 1 0",
    ]


def test_python_exit_under_tkinter_flushes(shim, tmp_path):
    d = tmp_path / "store"
    code = (
        "import tkinter\n"
        "t = tkinter.Tcl()\n"
        f"t.eval('lappend auto_path {{{TCL_DIR}}}; package require aerostore')\n"
        f"t.eval('aerostore::init {{{d}}}')\n"
        "t.eval('aerostore::set_config aerostore.synchronous_commit off')\n"
        "t.eval('for {set i 0} {$i < 100} {incr i} { FlightState set P$i alt $i }')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    p = tclsh(f"package require aerostore\naerostore::init {d}\nputs [FlightState count]\n")
    assert p.stdout.strip() == "100"


def test_safe_base_interp_gets_the_read_only_subset(shim):
    script = f"""
package require aerostore
aerostore::init :memory:
FlightState set A alt 1
set s [safe::interpCreate -accessPath [list $tcl_library {TCL_DIR}]]
puts [$s eval {{package require aerostore}}]
puts [$s eval {{FlightState get A alt}}]
puts [catch {{$s eval {{FlightState set A alt 2}}}} m]
puts $m
puts [$s eval {{info commands aerostore::*}}]
puts [catch {{$s eval {{FlightState search -delete 1}}}} m]
puts [FlightState count]
safe::interpDelete $s
"""
    p = tclsh(script)
    assert p.stdout.splitlines() == [
        "0.1", "1", "1", 'bad subcommand "set": must be count, exists, fields, get, or search',
        "", "1", "1"]
