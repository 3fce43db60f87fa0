"""Regression tests of issue 10's Tcl items: values that must survive the C
conversion layer, results that must not depend on a Tcl value's internal
representation, watches, the data directory of aerostore::init, and getting
commands back after they were deleted.  (Exact messages and errorCodes are in
tests/aerostore_errors.test.)"""

from __future__ import annotations

import os

import pytest

from test_tcl_support import TCL_DIR, TclError


def tcl_quoted(s: str) -> str:
    """``s`` as a double-quoted Tcl word of ``\\uXXXX`` escapes (a surrogate pair
    outside the BMP), so that Tcl itself makes the value: tkinter 3.11 turns an
    ASCII str with NUL into an invalid Tcl string, and Tcl 8.6 reads
    ``\\U0001F600`` as U+FFFD."""
    units = s.encode("utf-16-le", "surrogatepass")
    return '"' + "".join(f"\\u{int.from_bytes(units[i:i + 2], 'little'):04x}"
                         for i in range(0, len(units), 2)) + '"'


# -- NUL inside an ASCII string ------------------------------------------------

@pytest.mark.parametrize("key", ["a\0b", "\0", "ab\0", "\0\0x", "é\0", "\0\U0001F600"])
def test_nul_in_a_key_comes_back_as_a_valid_tcl_string(tcl, key):
    tcl.eval(f"set k {tcl_quoted(key)}")
    tcl.eval("FlightState set $k alt 7")
    # Tcl writes NUL as C0 80: two bytes, never a raw zero byte
    want = tcl.eval("string bytelength $k")
    got = {
        "get": "lindex [FlightState get $k] 0",
        "get field": "FlightState get $k flight_id",
        "search -key": "FlightState search -compare {{= altitude 7}} -key r1; set r1",
        "search -get": "FlightState search -compare {{= altitude 7}} -get r2; lindex $r2 0",
        "search -array_get": "FlightState search -compare {{= altitude 7}} -array_get r; "
                             "dict get $r flight_id",
        "search -array": "FlightState search -compare {{= altitude 7}} -array r4; "
                         "set r4(flight_id)",
        "array_get": "dict get [FlightState array_get $k] flight_id",
        "array_get_with_nulls": "dict get [FlightState array_get_with_nulls $k] flight_id",
        "write_tsv": "lindex [split [FlightState write_tsv -compare {{= altitude 7}}] \\t] 0",
    }
    for what, script in got.items():
        tcl.eval(f"set v [{script}]")
        assert tcl.eval("expr {$v eq $k}") == "1", what
        assert tcl.eval("string bytelength $v") == want, what
        assert tcl.eval("string length $v") == tcl.eval("string length $k"), what
    assert tcl.eval("FlightState exists $k") == "1"
    assert tcl.call("FlightState", "get", key, "flight_id") == key     # from tkinter too


def test_nul_in_list_elements_the_python_side_splits(tcl):
    tcl.eval("set t " + tcl_quoted("a\0b"))
    tcl.eval("FlightState set $t alt 1")
    assert tcl.eval("FlightState search -compare [list [list in flight_id [list $t zz]]]") == "1"
    assert tcl.eval("FlightState search -compare [list [list = flight_id $t]]") == "1"


# -- a value's result does not depend on its internal representation ------------

def _outcome(t, script):
    try:
        return ("ok", t.call("eval", script))
    except TclError as e:
        return ("error", e.message, e.code)


@pytest.mark.parametrize("expr,text", [
    ("2.0", "2.0"), ("2", "2"), ("-0.0", "-0.0"), ("1e3", "1000.0"), ("2**40", "1099511627776"),
    ("0x10", "16"), ("1.0/3", "0.3333333333333333"), ("1e300*1e10", "Inf"),
    ("2**64", "18446744073709551616"), ("0.1+0.2", "0.30000000000000004"),
])
@pytest.mark.parametrize("field", ["altitude", "gs", "lat", "updated_at"])
def test_a_pure_number_is_read_as_its_string(tcl, expr, text, field):
    """`[expr {2.0}]` and `"2.0"` give the same answer for every field."""
    assert tcl.eval(f"expr {{{expr}}}") == text
    pure = _outcome(tcl, f"FlightState set K {field} [expr {{{expr}}}]; FlightState get K {field}")
    string = _outcome(tcl, f"FlightState set K {field} {text}; FlightState get K {field}")
    assert pure == string


def test_expr_double_for_an_integer_field_is_refused_like_its_string(tcl):
    e = tcl.error("eval", "FlightState set K alt [expr {2.0}]")
    assert e.message == ('bad value "2.0" for field "altitude": expected an integer from '
                         '-2147483648 to 2147483647')
    assert e.code == "AEROSTORE USAGE VALUE altitude"


def test_a_pure_double_as_key_is_its_string(tcl):
    tcl.eval("FlightState set [expr {1.5}] alt 1")
    assert tcl.eval("FlightState exists 1.5") == "1"
    assert tcl.eval("FlightState get [expr {1.5}] alt") == "1"
    tcl.eval("FlightState set [expr {7}] alt 2")
    assert tcl.eval("FlightState get 7 alt") == "2"
    assert tcl.eval("FlightState exists [expr {7}]") == "1"


@pytest.mark.parametrize("option,expr,text", [
    ("-limit", "2.0", "2.0"), ("-limit", "2", "2"), ("-offset", "010", "8"),
    ("-countOnly", "2.0", "2.0"), ("-countOnly", "0.0", "0.0"), ("-countOnly", "3", "3"),
])
def test_option_values_read_by_tcls_rules_whatever_the_rep(tcl, option, expr, text):
    for i in range(12):
        tcl.eval(f"FlightState set K{i} alt {i}")
    pure = _outcome(tcl, f"FlightState search {option} [expr {{{expr}}}] -key k")
    string = _outcome(tcl, f"FlightState search {option} {{{text}}} -key k")
    assert pure == string


def test_option_integers_follow_tcl_syntax(tcl):
    for i in range(12):
        tcl.eval(f"FlightState set K{i} alt {i}")
    # Tcl 8.6 reads a leading 0 as octal: 010 is 8
    assert tcl.eval("FlightState search -sort alt -offset 010 -key k; set k") == "K11"
    assert tcl.eval("FlightState search -limit 0x3 -key k") == "3"
    assert tcl.eval("FlightState search -countOnly 2.0") == "12"
    e = tcl.error("FlightState", "search", "-limit", "08")
    assert e.message == 'expected integer but got "08" for -limit'


# -- unwatch stops the events already queued ------------------------------------

def _pump(t, until, timeout=5.0):
    """Run the event loop until ``until()`` holds (or the timeout)."""
    import time
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        t.eval("update")
        if until():
            return True
        time.sleep(0.01)
    return False


def _settle(t, seconds=0.3):
    import time
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t.eval("update")
        time.sleep(0.01)


def test_a_callback_that_unwatches_itself_gets_no_queued_event(tcl):
    tcl.eval("set ::bg {}; proc bgerror {msg} { lappend ::bg $msg }")
    tcl.eval("set ::seen {}")
    tcl.eval("proc once {op key row} { lappend ::seen $key; FlightState unwatch $::id }")
    tcl.eval("set ::id [FlightState watch once]")
    for i in range(5):          # five events queued before the loop runs one
        tcl.eval(f"FlightState set K{i} alt {i}")
    assert _pump(tcl, lambda: tcl.eval("llength $::seen") == "1")
    _settle(tcl)
    assert tcl.eval("set ::seen") == "K0"
    assert tcl.eval("set ::bg") == ""


def test_unwatch_before_the_event_loop_runs_drops_queued_events(tcl):
    tcl.eval("set ::bg {}; proc bgerror {msg} { lappend ::bg $msg }")
    tcl.eval("set ::seen {}; set ::other {}")
    tcl.eval("set ::id [FlightState watch {lappend ::seen}]")
    tcl.eval("set ::keep [FlightState watch {lappend ::other}]")
    tcl.eval("FlightState set K1 alt 1; FlightState set K2 alt 2")
    tcl.eval("FlightState unwatch $::id")
    assert _pump(tcl, lambda: tcl.eval("llength $::other") == "6")   # the other watch: both
    _settle(tcl)
    assert tcl.eval("set ::seen") == ""
    assert tcl.eval("set ::bg") == ""
    tcl.eval("FlightState unwatch $::keep")


# -- aerostore::init and its directory ------------------------------------------

def _mode(path) -> int:
    import stat
    return stat.S_IMODE(os.stat(path).st_mode)


def test_init_refuses_the_empty_path(bare_tcl, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    e = bare_tcl.error("aerostore::init", "")
    assert e.message == 'cannot open data directory "": the path is empty'
    assert e.code == "AEROSTORE USAGE DIR {}"
    assert os.listdir(tmp_path) == []


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_init_makes_every_directory_0700(bare_tcl, tmp_path, umask_022):
    d = tmp_path / "a" / "b" / "store"
    bare_tcl.call("aerostore::init", str(d))
    for p in (tmp_path / "a", tmp_path / "a" / "b", d):
        assert _mode(p) == 0o700, p


def test_init_keeps_the_mode_of_a_directory_that_exists(bare_tcl, tmp_path, umask_022):
    e = tmp_path / "existing"
    e.mkdir(mode=0o755)
    os.chmod(e, 0o755)
    bare_tcl.call("aerostore::init", str(e))
    assert _mode(e) == 0o755


@pytest.fixture
def home_and_work(tmp_path, monkeypatch):
    """$HOME is tmp_path/home, the working directory tmp_path/work."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    return home, work


def test_init_expands_tilde_as_tcl_does(bare_tcl, home_and_work):
    home, work = home_and_work
    assert bare_tcl.call("aerostore::init", "~/flights") == f"aerostore ready (dir={home}/flights)"
    assert (home / "flights").is_dir() and not (work / "~").exists()
    assert bare_tcl.call("aerostore::init", "~/flights") == f"aerostore ready (dir={home}/flights)"


def test_init_expands_only_a_leading_tilde(bare_tcl, home_and_work):
    """./~/x is a directory named ~ in the working directory."""
    home, work = home_and_work
    assert bare_tcl.call("aerostore::init", "./~/x") == f"aerostore ready (dir={work}/~/x)"


def test_init_tilde_of_an_unknown_user(bare_tcl, home_and_work):
    e = bare_tcl.error("aerostore::init", "~nosuchuser_aerostore/x")
    assert e.message == ('cannot open data directory "~nosuchuser_aerostore/x": '
                         'user "nosuchuser_aerostore" doesn\'t exist')
    assert e.code == "AEROSTORE USAGE DIR ~nosuchuser_aerostore/x"


def test_init_on_an_unwritable_directory_is_usage_dir(shim):
    """Root may write anywhere, so as root the check runs in a tclsh as nobody."""
    import shutil
    import subprocess
    import tempfile
    top = tempfile.mkdtemp(prefix="aerostore-ro-")
    try:
        os.chmod(top, 0o755)
        ro = os.path.join(top, "ro")
        os.mkdir(ro)
        os.chmod(ro, 0o555)
        script = (f"package require aerostore\n"
                  f"foreach d [list {{{ro}}} {{{ro}/sub}}] {{\n"
                  f"  puts [list [catch {{aerostore::init $d}} m] $m $::errorCode]\n"
                  f"}}\n")
        cmd = ["tclsh"]
        if os.geteuid() == 0:
            if not shutil.which("setpriv"):
                pytest.skip("running as root without setpriv")
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "tclsh"]
        p = subprocess.run(cmd, input=script, capture_output=True, text=True, timeout=60,
                           env={"PATH": "/usr/bin:/bin", "TCLLIBPATH": TCL_DIR, "HOME": top})
        if p.returncode != 0 or "aerostore" not in p.stdout:
            pytest.skip(f"tclsh as another user cannot load the package here: {p.stderr[-300:]}")
        lines = p.stdout.splitlines()
        assert lines[0] == (f'1 {{cannot open data directory "{ro}": Permission denied}} '
                            f'{{AEROSTORE USAGE DIR {ro}}}')
        assert lines[1] == (f'1 {{cannot open data directory "{ro}/sub": Permission denied}} '
                            f'{{AEROSTORE USAGE DIR {ro}/sub}}')
    finally:
        os.chmod(os.path.join(top, "ro"), 0o755)
        shutil.rmtree(top)


# -- getting deleted commands back ------------------------------------------------

def test_init_again_brings_back_deleted_commands(tcl):
    tcl.eval("FlightState set K alt 1")
    tcl.eval("rename FlightState {}; rename aerostore::stats {}")
    # Tcl's load and package require do nothing in an interp that has the package
    tcl.eval("load {} Aerostore; package require aerostore")
    assert tcl.eval("info commands FlightState") == ""
    assert tcl.call("aerostore::init", ":memory:") == "aerostore ready (dir=:memory:)"
    assert tcl.eval("FlightState get K alt") == "1"
    assert "rows" in tcl.eval("aerostore::stats")


def test_init_again_keeps_commands_that_exist(tcl):
    tcl.eval("rename FlightState fs")
    tcl.eval("aerostore::init :memory:")
    tcl.eval("FlightState set K alt 2")
    assert tcl.eval("fs get K alt") == "2"          # the renamed one still works
    tcl.eval("rename FlightState {}; proc FlightState {args} { return mine }")
    tcl.eval("aerostore::init :memory:")
    assert tcl.eval("FlightState count") == "mine"  # a command of the user's own stays
    tcl.eval("rename FlightState {}; rename fs FlightState")


# -- ingest_tsv is atomic per batch (docs/tcl.md, FlightState ingest_tsv) --------

def test_ingest_tsv_batches_commit_one_by_one_and_inside_a_transaction_as_one(tcl):
    rows = "".join(f"B{i}\t1\t2\t{i}\t4\t5\n" for i in range(5))
    tcl.tk.call("set", "rows", rows)
    commits = lambda: int(dict(zip(*[iter(tcl.list("aerostore::stats"))] * 2))["commits"])  # noqa: E731
    before = commits()
    r = tcl.eval("FlightState ingest_tsv $rows 2")
    assert r.startswith("rows_seen=5 inserted=5 updated=0 batches=3 ")
    assert commits() - before == 3
    # a bad line anywhere: nothing written
    e = tcl.error("FlightState", "ingest_tsv", "C1\t1\t2\t3\t4\t5\nC2\tx\n", "1")
    assert e.code.startswith("AEROSTORE DECODE 2")
    assert tcl.eval("FlightState exists C1") == "0"
    # inside aerostore::transaction the whole call is one transaction
    tcl.eval("catch {aerostore::transaction { FlightState ingest_tsv "
             "[string map {B D} $rows] 1; error rollback }}")
    assert tcl.eval("FlightState exists D0") == "0"
    before = commits()
    tcl.eval("aerostore::transaction { FlightState ingest_tsv [string map {B D} $rows] 1 }")
    assert commits() - before == 1
    assert tcl.eval("FlightState count") == "10"


def test_a_double_tcl_writes_inexactly_is_read_from_its_text(tcl):
    """Tcl 8.6 writes 2**-24 as 5.960464477539062e-8, which correct rounding
    (Python, TSV) reads as the double below: the store reads the text."""
    from aerostore.tclbridge import state
    tcl.eval("FlightState set K lat [expr {2.0**-24}]")
    assert tcl.eval("FlightState get K lat") == "5.960464477539062e-8"
    assert state.current.get("K")[1] == float("5.960464477539062e-8")
