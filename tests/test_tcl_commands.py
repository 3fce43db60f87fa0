"""Every Tcl command, option, operator and error, through tkinter.Tcl()."""

from __future__ import annotations

import os

import pytest

from test_tcl_support import ROWS, Interp, tsv_of

FIELDS = ["flight_id", "lat", "lon", "altitude", "gs", "updated_at"]


@pytest.fixture
def loaded(tcl):
    tcl.call("FlightState", "ingest_tsv", tsv_of(ROWS))
    return tcl


def keys_of(t, *opts):
    t.eval("set ::_keys {}")
    t.call("FlightState", "search", *opts, "-key", "::_k", "-code", "lappend ::_keys $::_k")
    return [str(x) for x in t.tk.splitlist(t.eval("set ::_keys"))]


# -- aerostore:: -----------------------------------------------------------------

def test_package_version(bare_tcl):
    assert bare_tcl.eval("package present aerostore") == "0.1"


def test_init_answers_with_the_directory_and_makes_it(bare_tcl, tmp_path):
    d = tmp_path / "store"
    assert bare_tcl.call("aerostore::init", str(d)) == f"aerostore ready (dir={d})"
    assert d.is_dir()


def test_init_again_on_the_same_dir_gives_the_same_answer(bare_tcl, tmp_path):
    d = tmp_path / "store"
    answer = bare_tcl.call("aerostore::init", str(d))
    assert bare_tcl.call("aerostore::init", str(d)) == answer


def test_init_on_another_dir_while_open_is_refused(bare_tcl, tmp_path):
    bare_tcl.call("aerostore::init", str(tmp_path / "store"))
    e = bare_tcl.error("aerostore::init", str(tmp_path / "other"))
    assert e.code.split()[:3] == ["AEROSTORE", "USAGE", "OPEN"]
    assert "already open" in e.message


def test_init_default_dir_is_relative_to_cwd(bare_tcl, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert bare_tcl.call("aerostore::init") == f"aerostore ready (dir={tmp_path}/aerostore_tcl_data)"
    assert (tmp_path / "aerostore_tcl_data").is_dir()


def test_init_unusable_directory(bare_tcl, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    e = bare_tcl.error("aerostore::init", str(afile / "sub"))
    assert e.code == f"AEROSTORE USAGE DIR {afile / 'sub'}"
    assert e.message == f'cannot open data directory "{afile / "sub"}": Not a directory'


def test_init_memory(tcl):
    assert tcl.call("aerostore::init", ":memory:") == "aerostore ready (dir=:memory:)"


def test_not_initialised(bare_tcl):
    e = bare_tcl.error("FlightState", "count")
    assert e.code == "AEROSTORE USAGE NOTOPEN"
    assert e.message == "aerostore is not initialised: call aerostore::init first"


@pytest.mark.parametrize("key,value", [
    ("aerostore.synchronous_commit", "on"), ("aerostore.checkpoint_interval_secs", "300"),
    ("aerostore.ttl_secs", "0"), ("aerostore.ttl_sweep_interval_ms", "1000"),
])
def test_config_defaults(tcl, key, value):
    assert tcl.call("aerostore::get_config", key) == value


@pytest.mark.parametrize("key,value", [
    ("aerostore.synchronous_commit", "off"), ("aerostore.ttl_secs", "60"),
])
def test_set_config_then_get_config(tcl, key, value):
    assert tcl.call("aerostore::set_config", key, value) == "ok"
    assert tcl.call("aerostore::get_config", key) == value


def test_set_config_refuses_a_bad_value(tcl):
    e = tcl.error("aerostore::set_config", "aerostore.ttl_secs", "-1")
    assert e.code.startswith("AEROSTORE USAGE CONFIG")
    assert tcl.call("aerostore::get_config", "aerostore.ttl_secs") == "0"


def test_get_config_refuses_an_unknown_key(tcl):
    e = tcl.error("aerostore::get_config", "nope")
    assert e.code == "AEROSTORE USAGE CONFIG nope"
    assert e.message.startswith('bad config key "nope": must be aerostore.synchronous_commit, ')


def test_config_before_init_applies_at_open(bare_tcl):
    t = bare_tcl
    t.call("aerostore::set_config", "aerostore.ttl_secs", "77")
    assert t.call("aerostore::get_config", "aerostore.ttl_secs") == "77"
    t.call("aerostore::init", ":memory:")
    assert t.call("aerostore::get_config", "aerostore.ttl_secs") == "77"


def test_stats(loaded):
    stats = dict(zip(*[iter(loaded.list("aerostore::stats"))] * 2))
    assert stats["rows"] == str(len(ROWS))
    for k in ("versions", "commits"):
        assert k in stats


def test_checkpoint_now_on_a_directory(bare_tcl, tmp_path):
    t = bare_tcl
    t.call("aerostore::init", str(tmp_path / "d"))
    t.call("FlightState", "ingest_tsv", tsv_of(ROWS))
    assert t.call("aerostore::checkpoint_now") == f"checkpoint rows={len(ROWS)}"
    stats = dict(zip(*[iter(t.list("aerostore::stats"))] * 2))
    assert "wal_bytes" in stats


def test_close_then_reopen_recovers(bare_tcl, tmp_path):
    t = bare_tcl
    d = str(tmp_path / "d")
    t.call("aerostore::init", d)
    t.call("FlightState", "set", "K1", "alt", "10")
    assert t.call("aerostore::close") == ""
    assert t.error("FlightState", "count").code == "AEROSTORE USAGE NOTOPEN"
    t.call("aerostore::init", d)
    assert t.list("FlightState", "get", "K1", "alt") == ["10"]


# -- FlightState: rows ----------------------------------------------------------------

def test_fields(tcl):
    assert tcl.list("FlightState", "fields") == FIELDS


def _set_ual1(t):
    assert t.call("FlightState", "set", "UAL1", "lat", "40.5", "lon", "-73.5", "alt", "35000",
                  "groundspeed", "450", "ts", "1700000000") == ""


def test_set_then_get_the_row(tcl):
    _set_ual1(tcl)
    assert tcl.list("FlightState", "get", "UAL1") == ["UAL1", "40.5", "-73.5", "35000", "450",
                                                       "1700000000"]


def test_get_named_fields_in_the_order_asked(tcl):
    _set_ual1(tcl)
    assert tcl.list("FlightState", "get", "UAL1", "gs", "flight", "latitude") == ["450", "UAL1", "40.5"]


def test_exists_count_and_get_of_a_missing_key(tcl):
    assert tcl.call("FlightState", "count") == "0"
    _set_ual1(tcl)
    assert tcl.call("FlightState", "exists", "UAL1") == "1"
    assert tcl.call("FlightState", "exists", "nope") == "0"
    assert tcl.call("FlightState", "get", "nope") == ""
    assert tcl.call("FlightState", "count") == "1"


def test_set_merges_into_the_row_and_empty_makes_null(tcl):
    _set_ual1(tcl)
    tcl.call("FlightState", "set", "UAL1", "gs", "", "alt", "36000")
    assert tcl.list("FlightState", "get", "UAL1") == ["UAL1", "40.5", "-73.5", "36000", "",
                                                       "1700000000"]


def test_delete_says_whether_a_row_went(tcl):
    _set_ual1(tcl)
    assert tcl.call("FlightState", "delete", "UAL1") == "1"
    assert tcl.call("FlightState", "delete", "UAL1") == "0"
    assert tcl.call("FlightState", "count") == "0"


def test_set_later_pair_wins_and_new_row_has_nulls(tcl):
    tcl.call("FlightState", "set", "K", "alt", "1", "alt", "2")
    assert tcl.list("FlightState", "get", "K") == ["K", "", "", "2", "", ""]


def test_numbers_from_expr(tcl):
    tcl.eval("FlightState set [expr {40+2}] lat [expr {1.5*2}] alt [expr {10*10}]")
    assert tcl.list("FlightState", "get", "42") == ["42", "3.0", "", "100", "", ""]
    assert tcl.eval("FlightState exists [expr {41+1}]") == "1"


def test_array_get(loaded):
    assert loaded.list("FlightState", "array_get", "JBU6") == [
        "flight_id", "JBU6", "lat", "42.4", "lon", "-71.0", "altitude", "30000",
        "updated_at", "1700000400"]
    assert loaded.list("FlightState", "array_get", "JBU6", "gs", "alt") == ["altitude", "30000"]
    assert loaded.list("FlightState", "array_get_with_nulls", "JBU6", "gs", "alt") == [
        "gs", "", "altitude", "30000"]
    assert loaded.list("FlightState", "array_get_with_nulls", "NUL5") == [
        "flight_id", "NUL5", "lat", "", "lon", "", "altitude", "", "gs", "", "updated_at", ""]
    assert loaded.call("FlightState", "array_get", "nope") == ""


def test_set_unknown_field(tcl):
    e = tcl.error("FlightState", "set", "K", "bogus", "1")
    assert e.code == "AEROSTORE USAGE FIELD bogus"
    assert e.message == ('bad field "bogus": must be flight_id, lat, lon, altitude, gs, or '
                         'updated_at')
    assert tcl.call("FlightState", "count") == "0"


def test_set_value_that_is_not_a_number(tcl):
    e = tcl.error("FlightState", "set", "K", "alt", "high")
    assert e.code == "AEROSTORE USAGE VALUE altitude"
    assert 'bad value "high" for field "altitude"' in e.message
    assert tcl.call("FlightState", "count") == "0"


@pytest.mark.parametrize("key,field,value", [
    ("K", "gs", "65536"), ("K", "gs", "-1"), ("K", "alt", "2147483648"), ("K", "updated_at", "-1"),
    ("K", "lat", "nan"), ("K", "lat", "inf"), ("", "alt", "1"), ("a\tb", "alt", "1"),
])
def test_set_value_or_key_out_of_range(tcl, key, field, value):
    assert tcl.error("FlightState", "set", key, field, value).code.startswith("AEROSTORE USAGE VALUE")
    assert tcl.call("FlightState", "count") == "0"


def test_set_cannot_set_the_key_field(tcl):
    e = tcl.error("FlightState", "set", "K", "flight_id", "J")
    assert e.code == "AEROSTORE USAGE FIELD flight_id"
    assert tcl.call("FlightState", "count") == "0"


def test_big_unsigned_updated_at(tcl):
    top = str(2 ** 64 - 1)
    tcl.call("FlightState", "set", "K", "updated_at", top)
    assert tcl.list("FlightState", "get", "K", "ts") == [top]
    assert tcl.call("FlightState", "search", "-compare", f"{{= ts {top}}}") == "1"


# -- subcommand / argument errors in Tcl's style ------------------------------------

@pytest.mark.parametrize("words,message", [
    (("FlightState",), 'wrong # args: should be "FlightState subcommand ?arg ...?"'),
    (("FlightState", "get"), 'wrong # args: should be "FlightState get key ?field ...?"'),
    (("FlightState", "set", "k", "alt"),
     'wrong # args: should be "FlightState set key field value ?field value ...?"'),
    (("FlightState", "set", "k", "alt", "1", "gs"),
     'wrong # args: should be "FlightState set key field value ?field value ...?"'),
    (("FlightState", "exists"), 'wrong # args: should be "FlightState exists key"'),
    (("FlightState", "delete", "a", "b"), 'wrong # args: should be "FlightState delete key"'),
    (("FlightState", "count", "x"), 'wrong # args: should be "FlightState count"'),
    (("FlightState", "fields", "x"), 'wrong # args: should be "FlightState fields"'),
    (("FlightState", "ingest_tsv"), 'wrong # args: should be "FlightState ingest_tsv tsv ?batch_size?"'),
    (("FlightState", "index"),
     'wrong # args: should be "FlightState index indexed|create field|drop field"'),
    (("FlightState", "index", "create"), 'wrong # args: should be "FlightState index create field"'),
    (("FlightState", "index", "indexed", "x"), 'wrong # args: should be "FlightState index indexed"'),
    (("FlightState", "unwatch"), 'wrong # args: should be "FlightState unwatch id"'),
    (("aerostore::init", "a", "b"), 'wrong # args: should be "aerostore::init ?data_dir?"'),
    (("aerostore::set_config", "k"), 'wrong # args: should be "aerostore::set_config key value"'),
    (("aerostore::get_config",), 'wrong # args: should be "aerostore::get_config key"'),
    (("aerostore::checkpoint_now", "x"), 'wrong # args: should be "aerostore::checkpoint_now"'),
    (("aerostore::stats", "x"), 'wrong # args: should be "aerostore::stats"'),
    (("aerostore::transaction",), 'wrong # args: should be "aerostore::transaction script"'),
])
def test_wrong_args(tcl, words, message):
    e = tcl.error(*words)
    assert e.message == message
    assert e.code == "AEROSTORE USAGE WRONGARGS"


def test_bad_and_ambiguous_subcommands(tcl):
    e = tcl.error("FlightState", "frob")
    assert e.message == ('bad subcommand "frob": must be array_get, array_get_with_nulls, count, '
                         'delete, exists, fields, get, index, ingest_file, ingest_tsv, search, set, '
                         'unwatch, watch, or write_tsv')
    assert e.code == "AEROSTORE USAGE SUBCOMMAND frob"
    e = tcl.error("FlightState", "s")
    assert e.message.startswith('ambiguous subcommand "s": must be array_get, ')
    e = tcl.error("FlightState", "index", "x")
    assert e.message == 'bad subcommand "x": must be create, drop, or indexed'
    assert e.code == "AEROSTORE USAGE SUBCOMMAND x"


def test_unique_prefixes(loaded):
    assert loaded.call("FlightState", "cou") == str(len(ROWS))
    assert loaded.call("FlightState", "ex", "UAL1") == "1"
    assert loaded.call("FlightState", "sea", "-lim", "2") == "2"
    assert loaded.call("FlightState", "sea", "-comp", "{> alt 10000}", "-countO", "yes") == "4"
    assert "altitude" in loaded.list("FlightState", "index", "indexed")
    assert loaded.list("FlightState", "index", "indexe") == loaded.list("FlightState", "index", "indexed")


# -- index ------------------------------------------------------------------------------

def test_index(loaded):
    assert loaded.list("FlightState", "index", "indexed") == ["lat", "lon", "altitude", "gs",
                                                              "updated_at"]
    assert loaded.call("FlightState", "index", "drop", "gs") == ""
    assert loaded.list("FlightState", "index", "indexed") == ["lat", "lon", "altitude", "updated_at"]
    assert loaded.call("FlightState", "search", "-compare", "{> gs 400}") == "2"
    loaded.call("FlightState", "index", "create", "groundspeed")
    assert "gs" in loaded.list("FlightState", "index", "indexed")
    assert loaded.call("FlightState", "search", "-compare", "{> gs 400}") == "2"
    assert loaded.error("FlightState", "index", "create", "nope").code == "AEROSTORE USAGE FIELD nope"


# -- ingest -------------------------------------------------------------------------------

def test_ingest_tsv_result_and_batches(tcl):
    r = tcl.call("FlightState", "ingest_tsv", tsv_of(ROWS), "3")
    words = dict(w.split("=") for w in r.split())
    assert list(words) == ["rows_seen", "inserted", "updated", "batches", "elapsed_ms"]
    assert (words["rows_seen"], words["inserted"], words["updated"], words["batches"]) == (
        "7", "7", "0", "3")
    float(words["elapsed_ms"])
    r = tcl.call("FlightState", "ingest_tsv", tsv_of(ROWS[:2]))
    assert r.startswith("rows_seen=2 inserted=0 updated=2 batches=1 ")


def test_ingest_tsv_errors(loaded):
    e = loaded.error("FlightState", "ingest_tsv", "X\t1\t2\t3\t4\n", "10")
    assert e.code == "AEROSTORE DECODE 1 6"
    assert e.message.startswith("decode error at line 1 column 6: ")
    e = loaded.error("FlightState", "ingest_tsv", "X\t1\t2\t3\t4\t5\nY\tx\t2\t3\t4\t5\n")
    assert e.code == "AEROSTORE DECODE 2 2"
    assert loaded.call("FlightState", "exists", "X") == "0"
    for bad in ("0", "-1", "x"):
        e = loaded.error("FlightState", "ingest_tsv", "X\t1\t2\t3\t4\t5\n", bad)
        assert e.code.startswith("AEROSTORE USAGE")
        assert "batch_size" in e.message


def _lines(tsv):
    """The lines of a write_tsv result, sorted: docs/tcl.md promises the rows,
    not their order."""
    return sorted(tsv.splitlines())


def test_write_tsv_writes_every_row(loaded):
    assert _lines(loaded.call("FlightState", "write_tsv")) == _lines(tsv_of(ROWS))


def test_write_tsv_compare(loaded):
    part = loaded.call("FlightState", "write_tsv", "-compare", "{> alt 20000}")
    assert sorted(line.split("\t")[0] for line in part.splitlines()) == ["JBU6", "SWA4", "UAL1"]


def test_write_tsv_file_then_ingest_file_reproduces_the_rows(loaded, tmp_path):
    text = loaded.call("FlightState", "write_tsv")
    path = tmp_path / "out.tsv"
    assert loaded.call("FlightState", "write_tsv", "-file", str(path)) == str(len(ROWS))
    loaded.call("FlightState", "search", "-delete", "1")
    assert loaded.call("FlightState", "count") == "0"
    r = loaded.call("FlightState", "ingest_file", str(path), "2")
    assert r.startswith("rows_seen=7 inserted=7 updated=0 batches=4 ")
    assert _lines(loaded.call("FlightState", "write_tsv")) == _lines(text)


def test_ingest_file_of_a_missing_file(loaded, tmp_path):
    e = loaded.error("FlightState", "ingest_file", str(tmp_path / "missing.tsv"))
    assert e.code.startswith("AEROSTORE USAGE")


def test_write_tsv_bad_option(loaded):
    e = loaded.error("FlightState", "write_tsv", "-bogus", "1")
    assert e.message == 'bad option "-bogus": must be -compare or -file'


def test_ingest_file_progress(loaded, tmp_path):
    path = tmp_path / "in.tsv"
    path.write_text(tsv_of(ROWS))
    loaded.eval("proc prog {args} { lappend ::progress $args }")
    r = loaded.call("FlightState", "ingest_file", str(path), "-progress", "prog")
    assert r.startswith("rows_seen=7 inserted=0 updated=7 batches=1 ")
    calls = [loaded.tk.splitlist(c) for c in loaded.tk.splitlist(loaded.eval("set ::progress"))]
    assert [(c[0], c[1]) for c in calls] == [("validate", "7"), ("apply", "7")]
    float(calls[-1][2])
    r = loaded.call("FlightState", "ingest_file", str(path), "3", "-progress", "prog")
    assert " batches=3 " in r
    e = loaded.error("FlightState", "ingest_file", str(path), "-progress")
    assert e.message == '"-progress" option requires an additional argument'
    e = loaded.error("FlightState", "ingest_file", str(path), "1", "-x", "y")
    assert e.message == 'bad option "-x": must be -progress'


# -- search ---------------------------------------------------------------------------------

def test_search_count_and_result(loaded):
    assert loaded.call("FlightState", "search") == str(len(ROWS))
    assert loaded.call("FlightState", "search", "-compare", "{> altitude 10000}") == "4"
    assert loaded.call("FlightState", "search", "-sort", "lat", "-limit", "2") == "2"
    assert loaded.call("FlightState", "search", "-sort", "lat", "-offset", "5") == "2"
    assert loaded.call("FlightState", "search", "-limit", "0") == str(len(ROWS))
    assert loaded.call("FlightState", "search", "-compare", "{> alt 10000}", "-countOnly", "1",
                       "-limit", "3") == "3"


@pytest.mark.parametrize("term,expected", [
    ("{= alt 500}", ["AAL3"]),
    ("{== alt 500}", ["AAL3"]),
    ("{!= alt 500}", ["ASA7", "DAL2", "JBU6", "SWA4", "UAL1"]),
    ("{<> alt 500}", ["ASA7", "DAL2", "JBU6", "SWA4", "UAL1"]),
    ("{< alt 500}", ["ASA7"]),
    ("{<= alt 500}", ["AAL3", "ASA7"]),
    ("{> alt 22000}", ["JBU6", "UAL1"]),
    ("{>= alt 22000}", ["JBU6", "SWA4", "UAL1"]),
    ("{range alt 500 22000}", ["AAL3", "DAL2"]),
    ("{in flight_id {UAL1 NUL5 nope}}", ["NUL5", "UAL1"]),
    ("{in gs {0 450}}", ["ASA7", "UAL1"]),
    ("{match flight_id *al*}", ["AAL3", "DAL2", "UAL1"]),
    ("{notmatch flight_id *al*}", ["ASA7", "JBU6", "NUL5", "SWA4"]),
    ("{match_case flight_id A*}", ["AAL3", "ASA7"]),
    ("{notmatch_case flight_id A*}", ["DAL2", "JBU6", "NUL5", "SWA4", "UAL1"]),
    ("{null gs}", ["JBU6", "NUL5"]),
    ("{notnull gs}", ["AAL3", "ASA7", "DAL2", "SWA4", "UAL1"]),
    ("{true gs}", ["AAL3", "DAL2", "SWA4", "UAL1"]),
    ("{false gs}", ["ASA7"]),
    ("{= lat 40.5}", ["UAL1"]),
    ("{< lon -95.3}", ["AAL3", "ASA7"]),
    ("{> alt 0} {< gs 400}", ["AAL3", "DAL2"]),
    ("{match flight_id {[AD]AL?}}", ["AAL3", "DAL2"]),
])
def test_operators(loaded, term, expected):
    assert keys_of(loaded, "-compare", term, "-sort", "flight_id") == expected


def test_sort_directions_nulls_and_ties(loaded):
    assert keys_of(loaded, "-sort", "alt") == ["ASA7", "AAL3", "DAL2", "SWA4", "JBU6", "UAL1", "NUL5"]
    assert keys_of(loaded, "-sort", "-alt") == ["NUL5", "UAL1", "JBU6", "SWA4", "DAL2", "AAL3", "ASA7"]
    assert keys_of(loaded, "-sort", "alt", "-desc") == keys_of(loaded, "-sort", "-alt")
    assert keys_of(loaded, "-desc", "-asc", "-sort", "alt") == keys_of(loaded, "-sort", "alt")
    # nulls last ascending; ties by key ascending
    loaded.call("FlightState", "set", "ZZZ9", "gs", "300")
    loaded.call("FlightState", "set", "BBB0", "gs", "300")
    assert keys_of(loaded, "-sort", "gs", "-compare", "{>= gs 300}") == [
        "BBB0", "DAL2", "ZZZ9", "SWA4", "UAL1"]
    assert keys_of(loaded, "-sort", "-gs", "-compare", "{>= gs 300}") == [
        "UAL1", "SWA4", "BBB0", "DAL2", "ZZZ9"]
    assert keys_of(loaded, "-sort", "gs -lat", "-compare", "{range gs 300 301}") == [
        "BBB0", "ZZZ9", "DAL2"]     # descending: null (greatest) first


def test_limit_offset(loaded):
    full = keys_of(loaded, "-sort", "lat")
    assert keys_of(loaded, "-sort", "lat", "-limit", "3") == full[:3]
    assert keys_of(loaded, "-sort", "lat", "-offset", "2", "-limit", "3") == full[2:5]
    assert keys_of(loaded, "-sort", "lat", "-offset", "100") == []
    assert loaded.call("FlightState", "search", "-sort", "lat", "-offset", "100") == "0"


def test_binding_get_in_code(loaded):
    t = loaded
    t.eval("set ::out {}")
    n = t.call("FlightState", "search", "-compare", "{= flight_id JBU6}", "-get", "::g",
               "-code", "lappend ::out $::g")
    assert n == "1"
    assert t.list("set", "::out") == ["JBU6 42.4 -71.0 30000 {} 1700000400"]


@pytest.mark.parametrize("option,fields,want", [
    ("-get", "gs alt", ["", "30000"]),
    ("-array_get", None, ["flight_id", "JBU6", "lat", "42.4", "lon", "-71.0",
                          "altitude", "30000", "updated_at", "1700000400"]),
    ("-array_get_with_nulls", "gs alt", ["gs", "", "altitude", "30000"]),
])
def test_binding_of_a_row_to_a_variable(loaded, option, fields, want):
    words = ["-fields", fields] if fields else []
    loaded.call("FlightState", "search", "-compare", "{= flight_id JBU6}", *words, option, "::v")
    assert loaded.list("set", "::v") == want


def test_binding_array_drops_the_elements_of_null_fields(loaded):
    t = loaded
    t.eval("array set ::arr {gs stale}")
    t.call("FlightState", "search", "-compare", "{= flight_id JBU6}", "-array", "::arr")
    assert dict(zip(*[iter(t.list("array", "get", "::arr"))] * 2)) == {
        "flight_id": "JBU6", "lat": "42.4", "lon": "-71.0", "altitude": "30000",
        "updated_at": "1700000400"}


def test_bindings_without_code_hold_the_last_row(loaded):
    loaded.call("FlightState", "search", "-sort", "lat", "-key", "::k", "-get", "::g")
    assert loaded.call("set", "::k") == "NUL5"


def test_binding_errors(loaded):
    t = loaded
    t.eval("set ::k scalar")
    e = t.error("FlightState", "search", "-get", "::g", "-array", "::x")
    assert e.code == "AEROSTORE USAGE OPTION -array"
    e = t.error("FlightState", "search", "-array", "::k")
    assert e.code == "AEROSTORE USAGE VARIABLE"


# -code runs like the body of foreach:

def test_code_continue(loaded):
    t = loaded
    t.eval("set ::seen {}")
    assert t.call("FlightState", "search", "-sort", "lat", "-key", "::k", "-code",
                  "if {$::k eq {AAL3}} continue; lappend ::seen $::k") == str(len(ROWS))
    assert "AAL3" not in t.list("set", "::seen")
    assert len(t.list("set", "::seen")) == len(ROWS) - 1


def test_code_break(loaded):
    t = loaded
    t.eval("set ::seen {}")
    assert t.call("FlightState", "search", "-sort", "lat", "-key", "::k", "-code",
                  "lappend ::seen $::k; if {[llength $::seen] == 3} break") == "3"
    assert len(t.list("set", "::seen")) == 3


def test_code_error_keeps_message_errorcode_and_info(loaded):
    e = loaded.error("FlightState", "search", "-sort", "lat", "-code", "error boom {} {MY CODE}")
    assert e.message == "boom"
    assert e.code == "MY CODE"
    assert '("FlightState search" body line 1)' in e.info


def test_code_return_returns_from_the_proc(loaded):
    loaded.eval("proc firstkey {} { FlightState search -sort lat -key k -code { return $k }; "
                "return none }")
    assert loaded.eval("firstkey") == "SWA4"


def test_code_sees_the_local_variables_of_a_proc(loaded):
    loaded.eval("proc collect {} { set l {}; FlightState search -sort lat -limit 2 -key k "
                "-code { lappend l $k }; return $l }")
    assert loaded.eval("collect") == "SWA4 AAL3"


def test_search_sees_one_snapshot(loaded):
    t = loaded
    n = t.call("FlightState", "search", "-sort", "lat", "-key", "::k", "-code",
               "FlightState delete $::k; FlightState set NEW$::k alt 1")
    assert n == str(len(ROWS))
    assert t.call("FlightState", "count") == str(len(ROWS))
    assert all(k.startswith("NEW") for k in keys_of(t))


def test_repeated_search_runs_on_a_fresh_snapshot_each_time(loaded):
    """The session keeps the Query of a repeated search (search.py): each run still
    sees the latest commits, and a transaction's search sees its own writes."""
    t = loaded
    t.eval("proc hi {} { set l {}; FlightState search -compare {{> alt 40000}} -sort flight_id "
           "-key k -code { lappend l $k }; return $l }")
    before = t.eval("hi")
    t.call("FlightState", "set", "ZZZ1", "alt", "41000")
    assert t.eval("hi") == (before + " ZZZ1").strip()
    t.call("FlightState", "delete", "ZZZ1")
    assert t.eval("hi") == before
    assert t.eval("aerostore::transaction { FlightState set ZZZ2 alt 42000; hi }") == (before + " ZZZ2").strip()
    assert t.eval("hi") == (before + " ZZZ2").strip()
    assert t.call("FlightState", "search", "-compare", "{> alt 40000}", "-countOnly", "1") == \
        str(len((before + " ZZZ2").split()))


def test_repeated_search_after_the_store_is_opened_again(loaded, tmp_path):
    """The kept queries belong to the table they were built on: after close and
    init the same search runs on the new store."""
    t = loaded
    t.eval("proc hi {} { set l {}; FlightState search -compare {{> alt 10000}} -key k "
           "-code { lappend l $k }; return $l }")
    assert len(t.eval("hi").split()) == 4
    t.call("aerostore::close")
    t.call("aerostore::init", str(tmp_path / "other"))
    assert t.eval("hi") == ""
    t.call("FlightState", "set", "NEW1", "alt", "41000")
    assert t.eval("hi") == "NEW1"


def test_search_delete_deletes_the_matching_rows(loaded):
    t = loaded
    assert t.call("FlightState", "search", "-compare", "{> alt 10000}", "-delete", "1") == "4"
    assert t.call("FlightState", "count") == str(len(ROWS) - 4)
    assert keys_of(t, "-compare", "{> alt 10000}") == []


def test_search_delete_with_sort_and_limit(loaded):
    t = loaded
    assert t.call("FlightState", "search", "-sort", "flight_id", "-limit", "1", "-delete",
                  "true") == "1"
    assert t.call("FlightState", "exists", "AAL3") == "0"
    assert t.call("FlightState", "count") == str(len(ROWS) - 1)


def test_search_delete_code_error_deletes_nothing(loaded):
    t = loaded
    e = t.error("FlightState", "search", "-key", "::k", "-delete", "1", "-code", "error no")
    assert e.message == "no"
    assert t.call("FlightState", "count") == str(len(ROWS))


def test_search_delete_code_break_deletes_the_rows_visited(loaded):
    t = loaded
    assert t.call("FlightState", "search", "-sort", "flight_id", "-key", "::k", "-delete", "1",
                  "-code", "break") == "1"
    assert t.call("FlightState", "exists", "AAL3") == "0"
    assert t.call("FlightState", "count") == str(len(ROWS) - 1)


def test_search_delete_0_deletes_nothing(loaded):
    assert loaded.call("FlightState", "search", "-delete", "0") == str(len(ROWS))
    assert loaded.call("FlightState", "count") == str(len(ROWS))


def test_search_delete_with_count_only_is_refused(loaded):
    e = loaded.error("FlightState", "search", "-delete", "1", "-countOnly", "1")
    assert e.code == "AEROSTORE USAGE OPTION -delete"


@pytest.mark.parametrize("words,code,message", [
    (("-bogus", "1"), "AEROSTORE USAGE OPTION -bogus",
     'bad option "-bogus": must be -array, -array_get, -array_get_with_nulls, -asc, -code, '
     '-compare, -countOnly, -delete, -desc, -fields, -get, -key, -limit, -offset, or -sort'),
    (("-a", "x"), "AEROSTORE USAGE OPTION -a", None),
    (("-limit",), "AEROSTORE USAGE OPTION -limit", '"-limit" option requires an additional argument'),
    (("-limit", "-1"), "AEROSTORE USAGE VALUE -limit",
     'bad -limit "-1": must be an integer >= 0 (0 = no limit)'),
    (("-limit", "x"), "AEROSTORE USAGE VALUE -limit", 'expected integer but got "x" for -limit'),
    (("-offset", "-2"), "AEROSTORE USAGE VALUE -offset", 'bad -offset "-2": must be an integer >= 0'),
    (("-countOnly", "maybe"), "AEROSTORE USAGE VALUE -countOnly",
     'expected boolean value but got "maybe" for -countOnly'),
    (("-compare", "{frob alt 1}"), "AEROSTORE USAGE OPERATOR frob",
     'bad operator "frob": must be =, ==, !=, <>, <, <=, >, >=, range, in, match, notmatch, '
     'match_case, notmatch_case, null, notnull, true, or false'),
    (("-compare", "{> alt}"), "AEROSTORE USAGE TERM >", 'wrong # args: should be "> field value"'),
    (("-compare", "{range alt 1}"), "AEROSTORE USAGE TERM range",
     'wrong # args: should be "range field lo hi"'),
    (("-compare", "{null}"), "AEROSTORE USAGE TERM null", 'wrong # args: should be "null field"'),
    (("-compare", "{> nope 1}"), "AEROSTORE USAGE FIELD nope", None),
    (("-compare", "{> alt high}"), "AEROSTORE USAGE VALUE altitude", None),
    (("-compare", "{= alt {}}"), "AEROSTORE USAGE VALUE altitude", None),
    (("-compare", "{}"), "AEROSTORE USAGE TERM", None),
    (("-compare", "{> alt 1"), "AEROSTORE USAGE LIST -compare", None),
    (("-sort", "nope"), "AEROSTORE USAGE FIELD nope", None),
    (("-fields", "alt nope", "-get", "g"), "AEROSTORE USAGE FIELD nope", None),
])
def test_search_errors(loaded, words, code, message):
    e = loaded.error("FlightState", "search", *words)
    assert e.code == code
    if message is not None:
        assert e.message == message


def test_aliases_everywhere(loaded):
    assert keys_of(loaded, "-compare", "{> altitude 20000}", "-sort", "latitude") == keys_of(
        loaded, "-compare", "{> alt 20000}", "-sort", "lat")
    assert loaded.list("FlightState", "get", "UAL1", "ident", "long", "groundspeed", "updated") == [
        "UAL1", "-73.5", "450", "1700000000"]


# -- transactions --------------------------------------------------------------------------

def test_transaction_commit_and_result(loaded):
    t = loaded
    assert t.eval("aerostore::transaction { FlightState set T1 alt 1; FlightState set T2 alt 2; "
                  "FlightState count }") == str(len(ROWS) + 2)
    assert t.call("FlightState", "count") == str(len(ROWS) + 2)


def test_transaction_rollback_on_error_break_return(loaded):
    t = loaded
    e = t.error("aerostore::transaction", "FlightState set T1 alt 1; error oops")
    assert e.message == "oops"
    assert '("aerostore::transaction" body line 1)' in e.info
    assert t.call("FlightState", "exists", "T1") == "0"
    t.eval("foreach i {1 2} { aerostore::transaction { FlightState set B$i alt 1; break } }")
    assert t.call("FlightState", "exists", "B1") == "0"
    t.eval("proc p {} { aerostore::transaction { FlightState set R1 alt 1; return early }; "
           "return late }")
    assert t.eval("p") == "early"
    assert t.call("FlightState", "exists", "R1") == "0"


def test_transaction_reads_own_writes_and_search(loaded):
    t = loaded
    out = t.eval("aerostore::transaction { FlightState delete UAL1; FlightState set X alt 99999; "
                 "list [FlightState exists UAL1] [FlightState get X alt] "
                 "[FlightState search -compare {{> alt 90000}}] [FlightState count] }")
    assert out == f"0 99999 1 {len(ROWS)}"


def test_transaction_nested_is_an_error(loaded):
    e = loaded.error("aerostore::transaction", "aerostore::transaction { FlightState count }")
    assert e.code == "AEROSTORE USAGE NESTED"
    # the outer one rolled back and ended: a new one works
    assert loaded.eval("aerostore::transaction { FlightState count }") == str(len(ROWS))


def test_transaction_conflict(loaded):
    t = loaded
    from aerostore.tclbridge import state
    e = t.error("aerostore::transaction",
                "FlightState set UAL1 alt 1; "
                "after 0; set ::dummy 1; " + "FlightState get UAL1; "
                "py_conflict")
    # py_conflict is not a command: plain Tcl error, rolled back
    assert e.message.startswith('invalid command name "py_conflict"')
    # a real write-write conflict: another writer commits the same key first
    t.tk.createcommand("py_conflict", lambda: state.flights().set("UAL1", {"gs": 1}) and "")
    e = t.error("aerostore::transaction", "FlightState set UAL1 alt 1; py_conflict")
    assert e.code == "AEROSTORE CONFLICT"
    assert t.list("FlightState", "get", "UAL1", "alt", "gs") == ["35000", "1"]


def test_transaction_ingest_and_search_delete_go_through_it(loaded):
    t = loaded
    t.eval("catch { aerostore::transaction { FlightState ingest_tsv \"Q1\\t1\\t2\\t3\\t4\\t5\\n\"; "
           "FlightState search -delete 1 -compare {{= flight_id UAL1}}; error undo } }")
    assert t.call("FlightState", "exists", "Q1") == "0"
    assert t.call("FlightState", "exists", "UAL1") == "1"
    t.eval("aerostore::transaction { FlightState ingest_tsv \"Q1\\t1\\t2\\t3\\t4\\t5\\n\"; "
           "FlightState search -delete 1 -compare {{= flight_id UAL1}} }")
    assert t.call("FlightState", "exists", "Q1") == "1"
    assert t.call("FlightState", "exists", "UAL1") == "0"


def test_interps_share_the_store_and_transactions_are_private(loaded):
    a = loaded
    b = Interp()
    assert b.call("FlightState", "count") == str(len(ROWS))
    a.eval("set ::seen_by_b {}")
    a.tk.createcommand("peek", lambda: b.call("FlightState", "exists", "TX"))
    out = a.eval("aerostore::transaction { FlightState set TX alt 1; peek }")
    assert out == "0"
    assert b.call("FlightState", "exists", "TX") == "1"
    from aerostore.tclbridge import state
    assert state.flights().get("TX") == ("TX", None, None, 1, None, None)


# -- errors from Python that are not AerostoreErrors ---------------------------------------

def test_internal_errors_become_tcl_errors(loaded, monkeypatch):
    from aerostore.tclbridge import session

    def broken(self):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(session.Session, "t_count", broken)
    e = loaded.error("FlightState", "count")
    assert e.code == "AEROSTORE INTERNAL ZeroDivisionError"
    assert e.message == "aerostore: internal error: ZeroDivisionError: division by zero"
    assert "Traceback" in e.info


# -- safe interpreters ------------------------------------------------------------------------

@pytest.fixture
def safe(loaded):
    """``loaded`` with a safe child interpreter ``s`` that has the package loaded."""
    loaded.eval("interp create -safe s")
    loaded.eval("load [lindex [lsearch -inline -index 1 [info loaded] Aerostore] 0] Aerostore s")
    yield loaded
    loaded.eval("interp delete s")
    assert loaded.call("FlightState", "count") == str(len(ROWS))


def test_safe_interp_reads(safe):
    t = safe
    assert t.eval("s eval {FlightState count}") == str(len(ROWS))
    assert t.eval("s eval {FlightState get UAL1 alt}") == "35000"
    assert t.eval("s eval {FlightState exists UAL1}") == "1"
    assert t.eval("s eval {FlightState fields}") == " ".join(FIELDS)
    assert t.eval("s eval {FlightState search -compare {{> alt 10000}} -key k -code {lappend l $k}; "
                  "llength $l}") == "4"


def test_safe_interp_cannot_write(safe):
    t = safe
    msg = t.eval("catch {s eval {FlightState set a alt 1}} m; set m")
    assert msg == 'bad subcommand "set": must be count, exists, fields, get, or search'
    assert t.eval("catch {s eval {FlightState search -delete 1}} m; set m") == \
        "search -delete is not allowed in a safe interpreter"


def test_safe_interp_has_no_aerostore_namespace_commands(safe):
    assert safe.eval("s eval {info commands aerostore::*}") == ""


def test_interp_deletion_rolls_back_its_transaction(loaded):
    a = loaded
    a.eval("interp create child")
    a.eval("child eval [list lappend auto_path {*}$auto_path]")
    a.eval("child eval {package require aerostore}")
    # the child deletes itself from inside a transaction: its writes never commit
    a.eval("catch {child eval {aerostore::transaction { FlightState set GONE alt 1; "
           "interp delete {} }}}")
    assert a.call("FlightState", "exists", "GONE") == "0"
    assert a.call("FlightState", "count") == str(len(ROWS))


def test_host_python_sees_the_same_engine(loaded):
    from aerostore.tclbridge import state
    state.flights().set("FROMPY", {"alt": 5})
    assert loaded.list("FlightState", "get", "FROMPY", "alt") == ["5"]
    assert os.path.basename(state.directory()) == ":memory:"


# -- watch ---------------------------------------------------------------------------------------

def _pump(t, var, n, timeout_ms=3000):
    """Run the event loop until list ``var`` has ``n`` elements (or the timeout)."""
    t.eval(f"set ::_late 0; set ::_timer [after {timeout_ms} {{set ::_late 1; set {var} ${var}}}]")
    while t.eval(f"llength ${var}") != str(n) and t.eval("set ::_late") == "0":
        t.eval(f"vwait {var}")
    t.eval("after cancel $::_timer")


def test_watch_in_tkinter_with_vwait(loaded):
    t = loaded
    t.eval("set ::ev {}; proc rec {args} { lappend ::ev $args }")
    wid = t.call("FlightState", "watch", "-compare", "{> alt 30000}", "rec")
    t.call("FlightState", "set", "UAL1", "gs", "451")          # matches (alt 35000)
    t.call("FlightState", "set", "AAL3", "gs", "121")          # does not match
    t.call("FlightState", "set", "DAL2", "alt", "31000")       # enters the set
    t.call("FlightState", "delete", "UAL1")                    # was in the set
    _pump(t, "::ev", 3)
    events = [t.tk.splitlist(e) for e in t.tk.splitlist(t.eval("set ::ev"))]
    assert [(str(e[0]), str(e[1])) for e in events] == [
        ("update", "UAL1"), ("update", "DAL2"), ("delete", "UAL1")]
    assert dict(zip(*[iter(t.tk.splitlist(events[0][2]))] * 2))["gs"] == "451"
    t.call("FlightState", "unwatch", wid)
    e = t.error("FlightState", "unwatch", wid)
    assert e.code == f"AEROSTORE USAGE WATCH {wid}"


def test_watch_errors(loaded):
    e = loaded.error("FlightState", "watch", "-bogus", "x", "cb")
    assert e.message == 'bad option "-bogus": must be -compare or -key'
    e = loaded.error("FlightState", "watch", "-compare", "{> nope 1}", "cb")
    assert e.code == "AEROSTORE USAGE FIELD nope"
    e = loaded.error("FlightState", "watch", "-key", "a", "cb", "extra")
    assert e.code == "AEROSTORE USAGE WRONGARGS"


def test_deleting_an_interp_removes_its_watches(loaded):
    from aerostore.tclbridge import state
    t = loaded
    before = len(state.database().watch.subscriptions())
    t.eval("interp create wchild")
    t.eval("wchild eval [list set auto_path $auto_path]")
    t.eval("wchild eval {package require aerostore; FlightState watch {lappend ::x}; "
           "FlightState watch -key UAL1 {lappend ::y}}")
    assert len(state.database().watch.subscriptions()) == before + 2
    t.eval("interp delete wchild")
    assert len(state.database().watch.subscriptions()) == before
    t.call("FlightState", "set", "UAL1", "gs", "1")      # nothing delivered anywhere
    t.eval("update")


def test_host_database_handed_to_tcl(bare_tcl, open_db):
    from aerostore.tclbridge import state
    db = open_db(":memory:")
    state.use(db)
    t = bare_tcl
    t.call("FlightState", "set", "HOST", "alt", "3")
    assert db.table("FlightState").get("HOST")[3] == 3
    assert t.call("aerostore::init", ":memory:") == "aerostore ready (dir=:memory:)"
    assert t.call("aerostore::close") == ""
    assert db.closed


def test_python_writer_thread_while_tcl_reads_and_writes(tcl):
    import threading
    from aerostore.tclbridge import state
    flights = state.flights()
    stop = threading.Event()
    written = []

    def writer():
        i = 0
        while not stop.is_set() and i < 3000:
            flights.set(f"PY{i}", {"alt": i})
            written.append(i)
            i += 1

    th = threading.Thread(target=writer)
    th.start()
    seen = 0
    try:
        for j in range(300):
            tcl.call("FlightState", "set", f"TCL{j}", "alt", str(j))
            n = int(tcl.call("FlightState", "search", "-compare", "{match flight_id PY*}",
                             "-countOnly", "1"))
            # how far the writer has got is up to the scheduler; each search's
            # snapshot is at least as new as the one before, and it only adds
            assert seen <= n <= 3000
            seen = n
            assert tcl.list("FlightState", "get", f"TCL{j}", "alt") == [str(j)]
    finally:
        stop.set()
        th.join(30)
    assert not th.is_alive()
    assert int(tcl.call("FlightState", "count")) == 300 + len(written)
