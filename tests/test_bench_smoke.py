"""Smoke test of the benchmark harness (bench/run.py) on 1,000 rows, 1 repetition.

Keeps the harness working as the engine changes: it must run end to end and
write latest.md / latest.json that parse, and latest.png, the chart latest.md
points to.  No timing is asserted.  The SQLite side always runs (it needs only
tclsh + libsqlite3-tcl); the Aerostore side is skipped, with the reason, while
`package require aerostore` does not load (the shim not built yet).

The chart is drawn with matplotlib, the `bench` extra, which `make test` (and
so CI) installs; where it is missing (`pip install -e '.[test]'` alone) the
harness runs must write no chart and say why, and the chart's own test is
skipped.
"""
import importlib.util
import json
import os
import struct
import subprocess
import sys

import pytest

from test_tcl_support import tclsh_can

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
RUN = os.path.join(BENCH, "run.py")
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def _run(tmp_path, engines):
    out = tmp_path / "results"
    p = subprocess.run([sys.executable, RUN, "--rows", "1000", "--reps", "1",
                        "--engines", engines, "--commits", "200", "--max-secs", "5",
                        "--timeout", "300", "--cache", str(tmp_path / "cache"),
                        "--out", str(out)],
                       capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stderr[-3000:]
    return out


def _png_size(path):
    """(width, height) of the PNG at path, from its IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _check_chart(out, md):
    """latest.png is a PNG of a sane size and latest.md points to it; without
    matplotlib there is no latest.png and latest.md says why."""
    png = out / "latest.png"
    if not HAVE_MATPLOTLIB:
        assert not png.exists()
        assert "No chart: matplotlib is not installed" in md
        return
    w, h = _png_size(png)
    assert 400 <= w <= 2000 and 200 <= h <= 2000, (w, h)
    assert "Chart of the ratios: `latest.png`" in md


def _check_outputs(out, engines):
    doc = json.loads((out / "latest.json").read_text())
    md = (out / "latest.md").read_text()
    _check_chart(out, md)
    assert doc["config"]["rows"] == 1000
    assert doc["machine"]["cores"] >= 1
    assert "| figure |" in md and "1,000 rows" in md
    for name in ("ingest", "update", "count_range", "top50", "range_offset", "scan", "match", "get"):
        fig = doc["figures"][name]
        for e in engines:
            cell = fig["engines"][e]
            assert "median" in cell, (name, e, cell)
            assert cell["min"] <= cell["median"] <= cell["max"]
        assert fig["checks_agree"], (name, fig["engines"])
    return doc


def test_bench_smoke_sqlite(tmp_path):
    ok, why = tclsh_can("package require sqlite3")
    if not ok:
        pytest.skip(f"SQLite's Tcl binding is not installed (make sysdeps): {why}")
    doc = _check_outputs(_run(tmp_path, "sqlite-mem,sqlite-wal"), ["sqlite-mem", "sqlite-wal"])
    assert "median" in doc["figures"]["commit1"]["engines"]["sqlite-wal"]
    assert "na" in doc["figures"]["commit1"]["engines"]["sqlite-mem"]


def test_bench_smoke_aerostore(tmp_path):
    ok, why = tclsh_can("package require aerostore")
    if not ok:
        pytest.skip(f"`package require aerostore` does not load yet (shim not built?): {why}")
    engines = ["aerostore-sync-on", "aerostore-sync-off", "sqlite-mem"]
    doc = _check_outputs(_run(tmp_path, ",".join(engines)), engines)
    assert doc["figures"]["ingest"]["ratios"]


def _report():
    sys.path.insert(0, BENCH)
    try:
        import report
    finally:
        sys.path.remove(BENCH)
    return report


def _doc(engines, ratios):
    """A latest.json document with one figure per entry of ratios (name ->
    {engine: ratio or None})."""
    figures = {name: {"title": name, "unit": "s", "rate": None, "engines": {}, "best_peer": "sqlite-mem",
                      "ratios": {e: r for e, r in rs.items() if r is not None}, "target": None,
                      "checks_agree": True} for name, rs in ratios.items()}
    return {"machine": {"date": "2026-01-01 00:00 UTC", "cores": 2},
            "config": {"rows": 1000, "reps": 1, "engines": engines}, "figures": figures}


def _pixels(path):
    from matplotlib import image
    img = image.imread(str(path))
    return {tuple(round(float(c) * 255) for c in px[:3]) for px in img.reshape(-1, img.shape[2])}


GREEN, RED = (0x2C, 0xA0, 0x2C), (0xD6, 0x27, 0x28)     # ahead, behind (first series: opaque)


def test_chart_bars_ahead_green_and_behind_red(tmp_path):
    pytest.importorskip("matplotlib", reason="the chart needs matplotlib (the bench extra)")
    report = _report()
    doc = _doc(["aerostore-sync-on", "aerostore-sync-off", "sqlite-mem"],
               {"ingest": {"aerostore-sync-on": 0.25, "aerostore-sync-off": 0.2},
                "reopen": {"aerostore-sync-on": 1600.0, "aerostore-sync-off": None},
                "commit1": {"aerostore-sync-on": 0.8, "aerostore-sync-off": 0.23}})
    report.chart(doc, str(tmp_path / "c.png"))
    w, h = _png_size(tmp_path / "c.png")
    assert 400 <= w <= 2000 and 200 <= h <= 2000, (w, h)
    px = _pixels(tmp_path / "c.png")
    assert GREEN in px and RED in px


def test_chart_without_aerostore_figures_has_no_bars(tmp_path):
    pytest.importorskip("matplotlib", reason="the chart needs matplotlib (the bench extra)")
    report = _report()
    report.chart(_doc(["sqlite-mem", "sqlite-wal"], {"ingest": {}, "get": {}}), str(tmp_path / "c.png"))
    px = _pixels(tmp_path / "c.png")
    assert GREEN not in px and RED not in px
