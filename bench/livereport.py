"""live.json, live.md and the charts of the live-feed benchmark (bench/live.py).

live.json keeps every figure and, for each feed + readers phase, the latency
over time in 0.5 s bins (p50, p99, max per query kind and for the feed's
commits); the raw samples are drawn in the charts and then dropped.
"""
from __future__ import annotations

import json
import os

import liveplot
from report import fmt, md_table, no_chart_note, saved_doc, write_doc
from livestats import KINDS, TARGETS_MS, bins


fmt_ms = fmt   # one number format for both reports (report.py)


def fmt_rate(x):
    return "-" if x is None else f"{x:,.0f}"


def _strip_samples(phase):
    for q in phase.get("queries", {}).values():
        q.pop("samples", None)
    phase.get("feed", {}).pop("samples", None)


def _series(phase):
    """Binned latency over time of one phase (for live.json)."""
    out = {}
    secs = phase["secs"]
    for k, q in phase.get("queries", {}).items():
        if "samples" in q:
            out[k] = bins(q["samples"], secs)
    if "samples" in phase.get("feed", {}):
        out["commit"] = bins(phase["feed"]["samples"], secs)
        # rows committed per bin -> achieved rate over time
        b = out["commit"]
        out["commit"]["rows_per_s"] = [n * phase["feed"]["batch_rows"] / b["width_s"] for n in b["n"]]
    return out


def targets(doc) -> list:
    """Issue 11's targets for Aerostore at the first R (2 by default), against
    the peers in the same run: (text, value, met)."""
    cfg, engines = doc["config"], doc["engines"]
    r = str(cfg["readers"][0])
    ae = engines.get("aerostore", {}).get("runs", {}).get(r)
    if not ae:
        return []
    live, alone = ae["live"], ae.get("alone", {})
    mix = cfg.get("mix", KINDS)
    rate = cfg["rate"]
    out = []
    f = live["feed"]
    ach = f.get("achieved_rows_per_s")
    need = 0.95 * rate
    out.append((f"feed achieves >= 95% of {rate:,.0f} rows/s ({need:,.0f}; issue 11: 19k of 20k)",
                f"{fmt_rate(ach)} rows/s", ach is not None and ach >= need))
    for k in mix:
        q, a1 = live["queries"].get(k, {}), alone.get(k, {})
        if q.get("p50_ms") is not None and a1.get("p50_ms"):
            ratio = q["p50_ms"] / a1["p50_ms"]
            out.append((f"{k}: p50 under the feed within 2x of alone",
                        f"{fmt_ms(q['p50_ms'])} / {fmt_ms(a1['p50_ms'])} ms = {ratio:.2f}x", ratio <= 2))
    for k, t in TARGETS_MS.items():
        if k not in mix:
            continue
        p99 = live["queries"].get(k, {}).get("p99_ms")
        out.append((f"{k}: p99 <= {t} ms", f"{fmt_ms(p99)} ms", p99 is not None and p99 <= t))
    for k in mix:
        p99 = live["queries"].get(k, {}).get("p99_ms")
        peers = {n: e["runs"][r]["live"]["queries"].get(k, {}).get("p99_ms")
                 for n, e in engines.items() if n != "aerostore" and r in e.get("runs", {})}
        peers = {n: v for n, v in peers.items() if v is not None}
        if p99 is not None and peers:
            out.append((f"{k}: p99 below every peer's in this run",
                        f"{fmt_ms(p99)} ms vs " + ", ".join(f"{n} {fmt_ms(v)}" for n, v in peers.items()),
                        all(p99 < v for v in peers.values())))
    mx = f.get("max_ms")
    out.append(("slowest 100-row commit <= 20 ms", f"{fmt_ms(mx)} ms", mx is not None and mx <= 20))
    return out


def markdown(doc) -> str:
    m, cfg, engines = doc["machine"], doc["config"], doc["engines"]
    names = [n for n in cfg["engines"] if n in engines]
    label = {n: engines[n]["label"] for n in names}
    out = [f"# Live feed: {cfg['rows']:,} rows, a durable feed and readers at once", "",
           f"Measured {m['date']} on {m['cpu']}, {m['cores']} cores, {m['memory']} RAM "
           f"(Linux {m['kernel']}); Python {m['python']}, Tcl {m['tcl']}, Thread {m['tcl_thread']}, "
           f"SQLite {m['sqlite']}" + (f", {m['postgres']}" if m.get("postgres") else "") + "; repository at "
           f"{m['git_commit']}. Load average {m['loadavg_start']} at the start, "
           f"{m.get('loadavg_end', '?')} at the end (a shared machine: expect 15% noise or more). "
           f"Wall time {cfg['wall_seconds'] / 60:.1f} min.", "",
           f"Feed: one client at a target of {cfg['rate']:,.0f} rows/s in durable "
           f"{cfg['batch_rows']}-row transactions (absolute schedule), "
           f"{cfg['new_frac']:.0%} new keys, the rest random existing rows with new positions, "
           f"altitude, gs and updated_at. Readers: R clients each looping over "
           f"{', '.join(cfg.get('mix', KINDS))}; {cfg['live_secs']:g} s per phase. *Alone*: the same R readers, one "
           f"query kind at a time, no feed, {cfg['alone_secs']:g} s per kind. Engines run one after "
           "the other, each on its own copy of the data set; see docs/benchmarks.md "
           "(\"The live feed\").", ""]
    if m.get("engine_uncommitted"):
        out += [f"**Note:** the engine ran from a working tree with uncommitted changes to "
                f"{len(m['engine_uncommitted'])} file(s) on top of {m['git_commit']} "
                f"({', '.join(m['engine_uncommitted'][:6])}{', ...' if len(m['engine_uncommitted']) > 6 else ''}); "
                "the code hashes at the end identify what ran.", ""]
    for n, why in cfg.get("skipped", {}).items():
        out += [f"**Skipped: {n}**: {why}", ""]
    for n in names:
        if engines[n].get("error"):
            out += [f"**{label[n]}: error**: {engines[n]['error']}", ""]
        if engines[n].get("sweep_error"):
            out += [f"**{label[n]}: sweep error**: {engines[n]['sweep_error']}", ""]
    for r in cfg["readers"]:
        rs = str(r)
        have = [n for n in names if rs in engines[n].get("runs", {})]
        if not have:
            continue
        rows = []
        for n in have:
            f = engines[n]["runs"][rs]["live"]["feed"]
            frac = f.get("achieved_fraction")
            err = f"{f.get('errors', 0)}" + (f" ({f['error_sample'][:80]})" if f.get("error_sample") else "")
            rows.append([label[n], fmt_rate(f.get("achieved_rows_per_s")),
                         "-" if frac is None else f"{frac:.0%}",
                         f"{fmt_ms(f.get('p50_ms'))} / {fmt_ms(f.get('p99_ms'))} / {fmt_ms(f.get('max_ms'))}",
                         f"{fmt_ms(f.get('lag_p99_ms'))} / {fmt_ms(f.get('lag_max_ms'))}", err])
        out += [f"## R = {r} readers, feed target {cfg['rate']:,.0f} rows/s", ""] + md_table(
            ["engine", "feed achieved (rows/s)", "of target", "commit p50 / p99 / max (ms)",
             "start lag p99 / max (ms)", "feed errors"], rows)
        rows = []
        for k in cfg.get("mix", KINDS):
            for n in have:
                run = engines[n]["runs"][rs]
                q = run["live"]["queries"].get(k, {})
                a1 = run.get("alone", {}).get(k, {})
                ratio = (q["p50_ms"] / a1["p50_ms"]) if q.get("p50_ms") is not None and a1.get("p50_ms") else None
                t = TARGETS_MS.get(k)
                tcell = "-" if t is None else (f"<= {t:g}: " + ("met" if q.get("p99_ms") is not None
                                                                 and q["p99_ms"] <= t else "**no**"))
                err = f"{q.get('errors', 0)}" + (f" ({q['error_sample'][:60]})" if q.get("error_sample") else "")
                rows.append([k, label[n], f"{fmt_ms(a1.get('p50_ms'))} / {fmt_ms(a1.get('p99_ms'))}",
                             f"{fmt_ms(q.get('p50_ms'))} / {fmt_ms(q.get('p99_ms'))} / {fmt_ms(q.get('max_ms'))}",
                             "-" if ratio is None else f"{ratio:.2f}",
                             f"{q.get('n', 0):,} ({q.get('qps', 0):,.0f})", err, tcell])
        out += ["", "Reader latency, ms. *alone* = no feed; the ratio is p50 under the feed / p50 alone. "
                "A reader runs the whole mix in turn, so the slowest kind sets how many samples "
                "every kind gets; with few samples the p99 is close to the max.", ""] + md_table(
            ["query", "engine", "alone p50 / p99", "under feed p50 / p99 / max", "p50 ratio",
             "samples (per s)", "errors", "p99 target"], rows)
        out.append("")
        for n in have:
            c = engines[n]["runs"][rs]["live"].get("counters") or {}
            if "readgate_answered" in c:
                out += [f"{label[n]}, read gate over this phase (aerostore/readgate.py): "
                        f"{c['readgate_answered']:,} gets answered without the GIL, "
                        f"{c.get('readgate_fell_back', 0):,} left to the GIL path, "
                        f"{c.get('readgate_waited', 0):,} waited for a writer's hold first.", ""]
    tg = targets(doc)
    if tg:
        out += [f"## Issue 11 targets, Aerostore, R = {cfg['readers'][0]}", ""] + md_table(
            ["target", "measured", "met"], [[t, v, "yes" if ok else "**no**"] for t, v, ok in tg])
        out += ["", f"(The issue states these at 1M rows and a 20k rows/s feed; this run: "
                f"{cfg['rows']:,} rows, {cfg['rate']:,.0f} rows/s.)", ""]
    sw = [n for n in names if engines[n].get("sweep")]
    if sw:
        s0 = engines[sw[0]]["sweep"]
        out += ["## Sustainable feed rate", "",
                f"The highest feed rate at which every reader p99 stays within its target "
                f"({', '.join(f'{k} <= {v:g} ms' for k, v in TARGETS_MS.items())}) and the feed "
                f"achieves >= 95% of its target; {s0['readers']} readers, {s0['secs']:g} s per point, "
                f"{s0['rows']:,} rows"
                + (" (the sweep's own store, smaller than the main runs')" if s0['rows'] != cfg['rows'] else "")
                + f". Rates tried in ascending order ({', '.join(f'{x:,.0f}' for x in cfg['sweep_rates'])}) "
                f"until one fails, then up to {cfg['sweep_bisect']} bisection steps (if the lowest "
                "fails, it is halved as many times). A target a query misses even with no feed "
                "(its *alone* p99) cannot be met at any rate.", ""]
        rows = []
        for n in sw:
            s = engines[n]["sweep"]
            lowest = min((p["rate"] for p in s["points"]), default=cfg["sweep_rates"][0])
            sus = fmt_rate(s["sustainable"]) if s["sustainable"] else f"none (< {lowest:,.0f})"
            if s["sustainable"] and not s["first_fail"]:
                sus = f">= {sus}"
            pts = "; ".join(f"{p['rate']:,.0f} -> {fmt_rate(p['feed'].get('achieved_rows_per_s'))} "
                            f"{'pass' if p['pass'] else 'fail: ' + p['why']}" for p in s["points"])
            alone = engines[n].get("runs", {}).get(str(s["readers"]), {}).get("alone", {})
            over = [f"{k} {fmt_ms(alone[k]['p99_ms'])} ms" for k, t in TARGETS_MS.items()
                    if alone.get(k, {}).get("p99_ms") is not None and alone[k]["p99_ms"] > t]
            if s["rows"] != cfg["rows"]:
                over = ["(alone measured at another size)"]
            rows.append([label[n], sus, fmt_rate(s["first_fail"]), ", ".join(over) or "none", pts])
        out += md_table(["engine", "sustainable (rows/s)", "lowest failing rate",
                         "p99 over target with no feed (alone)", "points: rate -> achieved, verdict"],
                        rows)
        out.append("")
    checks = {n: engines[n]["checks"] for n in names if engines[n].get("checks")}
    if checks:
        agree = len({json.dumps(v, sort_keys=True) for v in checks.values()}) == 1
        out += ["Answers on the data as loaded (before any feed): "
                + ("all engines agree" if agree else "**engines DIFFER**") + ": "
                + "; ".join(f"{n} {' '.join(f'{k}={v}' for k, v in c.items())}" for n, c in checks.items()), ""]
    if doc.get("charts"):
        out += ["Charts: " + ", ".join(f"`{os.path.basename(p)}`" for p in doc["charts"])
                + " (latency over time per query kind and the feed's commits, per engine; "
                "the sweep)." , ""]
    if doc.get("chart_note"):
        out += [doc["chart_note"], ""]
    codes = {n: engines[n].get("code") for n in names if engines[n].get("code")}
    out += ["Code measured: " + ", ".join(f"{n} {c}" for n, c in codes.items())
            + ". Reproduce: `make bench-live` (1M rows) or `make bench-live-quick`; "
            "`.venv/bin/python bench/live.py --help`.", ""]
    return "\n".join(out)


def write(outdir, machine, config, engines, plot=True, prefix="live") -> dict:
    os.makedirs(outdir, exist_ok=True)
    doc = {"machine": machine, "config": config, "engines": engines, "charts": []}
    if plot:
        try:
            doc["charts"] = liveplot.draw(outdir, prefix, doc)
        except ImportError as e:
            doc["chart_note"] = no_chart_note(e, "No charts")
    for e in engines.values():
        for run in e.get("runs", {}).values():
            run["live"]["series"] = _series(run["live"])
            _strip_samples(run["live"])
            for q in run.get("alone", {}).values():
                q.pop("samples", None)
    doc["targets"] = [{"target": t, "measured": v, "met": ok} for t, v, ok in targets(doc)]
    write_doc(outdir, prefix, doc, markdown)
    return doc


if __name__ == "__main__":
    # Rewrite live.md from live.json (e.g. after a change to this file).
    path, saved = saved_doc("live.json")
    with open(os.path.splitext(path)[0] + ".md", "w") as f:
        f.write(markdown(saved))
