"""The documented Tcl retry pattern (docs/tcl.md, aerostore::transaction): four Tcl
threads increment one key through it; every increment lands, none is lost."""

import re
from pathlib import Path

from test_tcl_support import ROOT, tclsh


def _pattern() -> str:
    doc = (Path(ROOT) / "docs" / "tcl.md").read_text()
    m = re.search(r"```\n(proc with_retry .*?\n})\nwith_retry", doc, re.S)
    assert m, "docs/tcl.md lost its with_retry pattern"
    return m.group(1)


def test_four_threads_increment_one_key_through_the_documented_retry(shim, tmp_path):
    d = tmp_path / "store"
    proc = _pattern()
    script = f"""
package require Thread
package require aerostore
aerostore::init {d}
FlightState set hot gs 0
set work {{
    package require aerostore
    aerostore::init {d}
    {proc}
    proc run {{n}} {{
        for {{set j 0}} {{$j < $n}} {{incr j}} {{
            with_retry {{
                set gs [FlightState get hot gs]
                FlightState set hot gs [expr {{$gs + 1}}]
            }}
        }}
        return done
    }}
}}
set tids {{}}
for {{set i 0}} {{$i < 4}} {{incr i}} {{
    set t [thread::create -joinable]
    thread::send $t $work
    lappend tids $t
}}
foreach t $tids {{ thread::send -async $t [list run 40] ::result($t) }}
while {{[array size ::result] < 4}} {{ vwait ::result }}
foreach t $tids {{ thread::release $t }}
foreach t $tids {{ thread::join $t }}
puts [FlightState get hot gs]
exit
"""
    p = tclsh(script, timeout=120)
    assert p.stdout.split() == ["160"], p.stdout + p.stderr
