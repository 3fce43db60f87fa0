"""Argument fuzzing: hypothesis-generated argument lists through the Tcl
commands.  Nothing may crash; every error must be a Tcl error whose errorCode
is AEROSTORE USAGE ... (or AEROSTORE DECODE for TSV input).

Words that Tcl would run or write to (a -code body, variable names, watch
callbacks, file names to write) come from a fixed harmless pool, so the fuzzer
exercises parsing, not arbitrary scripts.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_tcl_support import ROWS, TclError, tsv_of

SUBCOMMANDS = ["array_get", "array_get_with_nulls", "count", "delete", "exists", "fields", "get",
               "index", "ingest_file", "ingest_tsv", "search", "set", "unwatch", "watch"]
OPTIONS = ["-array", "-array_get", "-array_get_with_nulls", "-asc", "-code", "-compare",
           "-countOnly", "-delete", "-desc", "-fields", "-get", "-key", "-limit", "-offset",
           "-sort", "-file"]
FIELDS = ["flight_id", "lat", "lon", "altitude", "alt", "gs", "groundspeed", "updated_at", "ts",
          "ident", "nope", ""]
OPERATORS = ["=", "==", "!=", "<>", "<", "<=", ">", ">=", "range", "in", "match", "notmatch",
             "match_case", "notmatch_case", "null", "notnull", "true", "false", "like"]
INDEX_WORDS = ["indexed", "create", "drop", "in", "c", "d"]
SAFE_BODIES = ["", "break", "continue", "incr ::_n", "error fuzz {} {AEROSTORE USAGE FUZZ}",
               "return -code error -errorcode {AEROSTORE USAGE FUZZ} x"]
SAFE_VARS = ["::_v", "::_w", "_x", "::_arr(el)"]
BINDING_OPTIONS = ("-key", "-get", "-array", "-array_get", "-array_get_with_nulls")

numbers = st.one_of(
    st.integers(min_value=-(2 ** 70), max_value=2 ** 70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0x10", " 7 ", "1e400", "-0", "1_000", "０", "NaN", "4294967296"]),
)
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
atoms = st.one_of(st.sampled_from(OPTIONS + FIELDS + OPERATORS + SUBCOMMANDS + INDEX_WORDS),
                  st.sampled_from([w[:i] for w in OPTIONS + SUBCOMMANDS for i in range(1, len(w))]),
                  numbers, texts,
                  st.sampled_from(["{", "}", '"', "{}", "{{}", "\\", "[exit]", "$x", "a\x00b"]))
terms = st.lists(st.one_of(st.sampled_from(OPERATORS), st.sampled_from(FIELDS), numbers, texts),
                 max_size=5)
words = st.one_of(atoms, terms.map(lambda t: t), st.lists(terms, max_size=3))


def _unsafe_slot(prev: str, options) -> str | None:
    """Which harmful option ``prev`` could resolve to (exact or prefix), if any."""
    if not prev.startswith("-") or len(prev) < 2:
        return None
    for opt in options:
        if opt.startswith(prev):
            return opt
    return None


def _to_tcl(tk, w):
    if isinstance(w, list):
        return tk.call("list", *[_to_tcl(tk, x) for x in w])
    return w


@pytest.fixture(scope="module")
def fuzz_interp(module_tcl):
    module_tcl.call("FlightState", "ingest_tsv", tsv_of(ROWS))
    return module_tcl


def _sanitize(sub, args):
    out = []
    for i, a in enumerate(args):
        prev = args[i - 1] if i and isinstance(args[i - 1], str) else ""
        slot = _unsafe_slot(prev, ("-code",) + BINDING_OPTIONS + ("-file",))
        if slot == "-code":
            a = SAFE_BODIES[i % len(SAFE_BODIES)]
        elif slot in BINDING_OPTIONS:
            a = SAFE_VARS[i % len(SAFE_VARS)]
        elif slot == "-file":
            a = "/nonexistent-dir/never-written.tsv"
        out.append(a)
    if sub.startswith("w") and out:             # watch: the callback is the last word
        out[-1] = "lappend ::_events"
    if sub.startswith("ingest_f") and out:      # ingest_file: read only files that exist or not
        out[0] = "/nonexistent-dir/x.tsv" if not isinstance(out[0], str) else out[0]
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(sub=st.one_of(st.sampled_from(SUBCOMMANDS),
                     st.sampled_from([s[:i] for s in SUBCOMMANDS for i in range(1, len(s))]),
                     texts),
       args=st.lists(words, max_size=8))
def test_fuzz_flightstate(fuzz_interp, sub, args):
    t = fuzz_interp
    args = _sanitize(sub, args)
    tcl_args = [_to_tcl(t.tk, a) for a in args]
    try:
        t.call("FlightState", sub, *tcl_args)
    except TclError as e:
        assert e.code.startswith(("AEROSTORE USAGE", "AEROSTORE DECODE")), (e.code, e.message)
        assert "INTERNAL" not in e.code, e.info
    # the store still answers, the interpreter is intact
    int(t.call("FlightState", "count"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cmd=st.sampled_from(["aerostore::set_config", "aerostore::get_config", "aerostore::stats",
                            "aerostore::checkpoint_now"]),
       args=st.lists(st.one_of(atoms, st.sampled_from(["aerostore.ttl_sweep_interval_ms",
                                                       "aerostore.synchronous_commit",
                                                       "aerostore.checkpoint_interval_secs"])),
                     max_size=3))
def test_fuzz_namespace_commands(fuzz_interp, cmd, args):
    t = fuzz_interp
    try:
        t.call(cmd, *[_to_tcl(t.tk, a) for a in args])
    except TclError as e:
        assert e.code.startswith("AEROSTORE USAGE"), (e.code, e.message)
    t.call("aerostore::set_config", "aerostore.ttl_secs", "0")
    int(t.call("FlightState", "count"))
