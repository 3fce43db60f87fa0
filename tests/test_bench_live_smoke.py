"""Smoke test of the live-feed benchmark harness (bench/live.py): Aerostore only,
1,000 rows, phases of about a second, so it stays working as the engine
changes.  No timing is asserted: only that every phase ran end to end and the
outputs exist and parse.  Skipped, with the reason, where tclsh, package Thread
or `package require aerostore` is missing.  PostgreSQL is never needed.

The sweep's search (ascending rates, then bisection) is checked apart on a
fake session, without Tcl.
"""
import json
import os
import subprocess
import sys

import pytest

from test_tcl_support import tclsh_can

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
LIVE = os.path.join(BENCH, "live.py")


def test_live_smoke_aerostore(tmp_path):
    ok, why = tclsh_can("package require Thread")
    if not ok:
        pytest.skip(f"package Thread does not load (apt-get install tcl-thread): {why}")
    ok, why = tclsh_can("package require aerostore")
    if not ok:
        pytest.skip(f"`package require aerostore` does not load yet (shim not built?): {why}")
    out = tmp_path / "results"
    p = subprocess.run([sys.executable, LIVE, "--rows", "1000", "--engines", "aerostore",
                        "--readers", "2", "--rate", "2000", "--live-secs", "1.5",
                        "--alone-secs", "0.2", "--sweep-rates", "1000", "--sweep-secs", "0.8",
                        "--sweep-bisect", "0", "--timeout", "300",
                        "--cache", str(tmp_path / "cache"), "--out", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads((out / "live.json").read_text())
    md = (out / "live.md").read_text()
    assert doc["config"]["rows"] == 1000
    assert doc["machine"]["cores"] >= 1
    e = doc["engines"]["aerostore"]
    assert "error" not in e, e["error"]
    run = e["runs"]["2"]
    kinds = ["get", "count", "top50", "box", "boxtop", "range_offset"]
    for k in kinds:
        assert run["alone"][k]["n"] >= 1, (k, run["alone"][k])
        q = run["live"]["queries"][k]
        assert q["n"] >= 1 and q["p50_ms"] <= q["p99_ms"] <= q["max_ms"], (k, q)
        assert len(q["per_reader_p99_ms"]) == 2
        assert sum(run["live"]["series"][k]["n"]) == q["n"]
    feed = run["live"]["feed"]
    assert feed["target_rows_per_s"] == 2000
    assert feed["batches_ok"] + feed["errors"] >= 1
    assert feed["rows_ok"] == 100 * feed["batches_ok"]
    assert e["checks"]["count"].isdigit()
    # the engine's counters over the phase: the readers' gets, most without the GIL
    c = run["live"]["counters"]
    assert c["readgate_answered"] > 0
    assert c["readgate_answered"] + c["readgate_fell_back"] == run["live"]["queries"]["get"]["n"]
    assert "gets answered without the GIL" in md
    assert [pt["rate"] for pt in e["sweep"]["points"]] == [1000]
    assert "## R = 2 readers" in md and "Sustainable feed rate" in md
    assert "1,000 rows" in md
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "matplotlib is not installed" in md
    else:
        for name in ("live-r2.png", "live-sweep.png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not os.listdir(tmp_path / "cache" / "run"), "scratch stores left behind"


class _FakeSession:
    """Passes every rate up to `limit`: feed on target, p99s far under target."""

    def __init__(self, limit):
        self.limit = limit
        self.ds = type("DS", (), {"rows": 1000})()
        self.rates = []

    def phase(self, name, readers, kinds, rate, secs, newbase, new_frac, seed):
        self.rates.append(rate)
        slow = rate > self.limit
        recs = [{"role": f"r{i}", "kind": k, "t": [0, 1000], "us": [50, 20_000 if slow else 60],
                 "errors": 0, "error_sample": "", "late_start_us": 0}
                for i in range(readers) for k in kinds]
        n = int(rate * secs / 100)
        recs.append({"role": "feed", "kind": "commit", "rate": rate, "batch_rows": 100,
                     "batches_ok": n, "rows_ok": n * 100, "scheduled": n,
                     "elapsed_us": int(secs * 1e6), "t": [0] * n, "us": [1000] * n,
                     "lag": [0] * n, "errors": 0, "error_sample": ""})
        return recs


@pytest.mark.parametrize("limit,expect,tried", [
    (12_000, 11_200, [1000, 2000, 5000, 10000, 20000, 15000, 12500, 11200]),
    (100_000, 40_000, [1000, 2000, 5000, 10000, 20000, 40000]),
    (500, 500, [1000, 500, 800, 600]),
    (100, None, [1000, 500, 250, 120]),
])
def test_sweep_search(limit, expect, tried):
    sys.path.insert(0, BENCH)
    try:
        import live
    finally:
        sys.path.remove(BENCH)
    a = live.parse_args(["--rows", "1000", "--sweep-secs", "1", "--sweep-bisect", "3"])
    sess = _FakeSession(limit)
    res = live.Runner(a).sweep(sess)
    assert res["sustainable"] == expect
    assert sess.rates == tried
