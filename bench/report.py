"""Aggregate the per-process figures and write latest.json, latest.md, latest.png.

Aggregation: for each (figure, engine) the repetitions' values give a median and
the min-max; extras such as rows_per_s get a median too.  "Best peer" is the
lowest SQLite median of that figure; the ratio is Aerostore's median over it
(every figure is a cost, so < 1 means Aerostore is ahead).  A figure an engine
did not produce is shown as n/a with the reason, an error with its message.

latest.png, the ratios as a bar chart, is drawn with matplotlib (the ``bench``
extra); without it the run still writes latest.json and latest.md, which then
say why there is no chart.  ``python bench/report.py [latest.json]`` redraws
the chart from a saved latest.json.
"""
from __future__ import annotations

import json
import math
import os
import statistics

from engines import BY_NAME as ENGINES
from workloads import FIGURES

# Why a figure can be absent although its workload ran.
MISSING = {
    ("memory", "sqlite-wal"): "data lives on disk; RSS would be SQLite's page cache, not the data",
}


class Results:
    """Collects Outcomes: cells[figure][engine] -> dict of lists."""

    def __init__(self, engines):
        self.engines = list(engines)
        self.cells = {}
        self.fingerprints = {}   # engine kind -> ordered distinct code hashes seen

    def cell(self, figure, engine):
        return self.cells.setdefault(figure, {}).setdefault(
            engine, {"values": [], "extras": {}, "checks": [], "errors": [], "na": ""})

    def add(self, workload, engine, outcome):
        if outcome.fingerprint:
            seen = self.fingerprints.setdefault(ENGINES[engine].kind, [])
            if outcome.fingerprint not in seen:
                seen.append(outcome.fingerprint)
        for fig in workload.figures:
            c = self.cell(fig.name, engine)
            if outcome.error:
                c["errors"].append(outcome.error)
                continue
            rec = outcome.figures.get(fig.name)
            if rec is None:
                c["na"] = MISSING.get((fig.name, engine), "not reported by the workload")
            elif rec.get("na"):
                c["na"] = rec["na"]
            elif rec.get("value") is None:
                c["errors"].append("no value")
            else:
                c["values"].append(float(rec["value"]))
                if "check" in rec:
                    c["checks"].append(str(rec["check"]))
                for k, v in rec.items():
                    if k not in ("figure", "value", "unit", "check", "na") and isinstance(v, (int, float)):
                        c["extras"].setdefault(k, []).append(v)

    def na_all(self, workload, engine, reason):
        for fig in workload.figures:
            self.cell(fig.name, engine)["na"] = reason


def summarize(results: Results, rows: int) -> dict:
    figs = {}
    for fig in FIGURES:
        if fig.name not in results.cells:
            continue
        eng = {}
        for name in results.engines:
            c = results.cells[fig.name].get(name)
            if c is None:
                continue
            e = {}
            if c["values"]:
                v = c["values"]
                e.update(median=statistics.median(v), min=min(v), max=max(v), values=v,
                         extras={k: statistics.median(x) for k, x in c["extras"].items()},
                         checks=sorted(set(c["checks"])))
            if c["errors"]:
                e["errors"] = sorted(set(c["errors"]))
            if c["na"] and not c["values"]:
                e["na"] = c["na"]
            eng[name] = e
        peers = {n: e["median"] for n, e in eng.items()
                 if not ENGINES[n].is_aerostore and "median" in e}
        best = min(peers, key=peers.get) if peers else None
        ratios = {n: e["median"] / peers[best] for n, e in eng.items()
                  if ENGINES[n].is_aerostore and "median" in e and best and peers[best] > 0}
        target = None
        if fig.target:
            fn, text = fig.target
            tv = fn(rows, peers)
            target = {"value": tv, "text": text}
        checks = {n: e["checks"] for n, e in eng.items() if e.get("checks")}
        agree = len({tuple(v) for v in checks.values()}) <= 1
        figs[fig.name] = {"title": fig.title.replace("N", f"{rows:,}", 1) if " N " in fig.title
                          else fig.title, "unit": fig.unit, "rate": fig.rate, "engines": eng,
                          "best_peer": best, "ratios": ratios, "target": target,
                          "checks_agree": agree}
    return figs


def fmt(x):
    if x is None:
        return "-"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    if ax >= 0.01:
        return f"{x:.3f}"
    return f"{x:.2g}"


def md_table(head, rows) -> list:
    """The lines of a Markdown table: the header, the rule, one line per row
    (cells are str()'d).  Both reports' tables (this file's, livereport.py's)."""
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(str(x) for x in row) + " |" for row in rows])


def no_chart_note(e: ImportError, what: str = "No chart") -> str:
    """What a report says instead of its chart(s) when matplotlib is missing."""
    return (f"{what}: matplotlib is not installed ({e}); "
            "`.venv/bin/pip install -e '.[bench]'` adds it.")


def pyplot():
    """matplotlib.pyplot drawing to files (the Agg backend); ImportError without
    matplotlib (the ``bench`` extra)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_chart(fig, path: str, top: float = 1) -> str:
    """Lay out (the figure's top `top` of the height, below a suptitle), write
    the PNG at ``path`` and free the figure; -> path."""
    import matplotlib.pyplot as plt
    fig.tight_layout(rect=(0, 0, 1, top))
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_doc(outdir: str, prefix: str, doc: dict, markdown) -> None:
    """<prefix>.json (written whole, then renamed into place) and
    <prefix>.md = markdown(doc), in outdir."""
    tmp = os.path.join(outdir, prefix + ".json.tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, os.path.join(outdir, prefix + ".json"))
    with open(os.path.join(outdir, prefix + ".md"), "w") as f:
        f.write(markdown(doc))


def saved_doc(name: str) -> tuple:
    """For a report's command line: the JSON document named by argv[1], else
    bench/results/<name>; -> (its path, the document)."""
    import sys
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results", name)
    with open(path) as f:
        return path, json.load(f)


def _cell(e):
    if "median" in e:
        s = fmt(e["median"])
        if e["min"] != e["max"]:
            s += f" ({fmt(e['min'])}-{fmt(e['max'])})"
        if e.get("errors"):
            s += " *"
        return s
    if e.get("errors"):
        return "error"
    if e.get("na"):
        return "n/a"
    return "-"


def _code_note(cfg) -> list:
    """Say so when an engine's code changed while the run was going on (the
    working tree is shared with the people developing it)."""
    out = []
    for kind, fps in cfg.get("engine_code", {}).items():
        if len(fps) > 1:
            out += [f"**Note:** {kind}'s code changed during this run ({len(fps)} versions: "
                    f"{', '.join(fps)}); later repetitions measured newer code, so its "
                    "min-max mixes versions.", ""]
    return out


def markdown(doc: dict) -> str:
    m, cfg, figs = doc["machine"], doc["config"], doc["figures"]
    engines = cfg["engines"]
    aeros = [n for n in engines if ENGINES[n].is_aerostore]
    out = [f"# Aerostore benchmark: {cfg['rows']:,} rows",
           "",
           f"Measured {m['date']} on {m['cpu']}, {m['cores']} cores, {m['memory']} RAM "
           f"(Linux {m['kernel']}); Python {m['python']}, Tcl {m['tcl']}, "
           f"SQLite {m['sqlite']}, Thread {m['tcl_thread']}; repository at {m['git_commit']}.",
           "",
           f"{cfg['reps']} repetitions, each workload in a fresh `tclsh` per engine; "
           f"seed {cfg['seed']}, {cfg['batch']:,} rows per ingest batch / transaction. "
           f"Load average {m['loadavg_start']} at the start, {m.get('loadavg_end', '?')} "
           f"at the end: the machine is shared (other engineers run test suites on the same "
           f"{m['cores']} cores), so expect noise of 15% or more; the min-max shows it.",
           "",
           ] + _code_note(cfg) + [
           "Every figure is a cost (lower is better); cells are `median (min-max)`. "
           "Ratio = Aerostore median / best SQLite median: below 1 Aerostore is ahead.",
           "The commit figures of synchronous_commit off are not durable commits "
           "(compared with the durable peer all the same). "
           "Targets are issue 6's, stated for 1M rows, in the figure's unit; *met* is for "
           "synchronous_commit on.",
           ""]
    head = ["figure", "unit"] + [ENGINES[n].label for n in engines] + ["best peer"] + \
           [f"ratio {n.replace('aerostore-', '')}" for n in aeros] + ["target", "met"]
    rows = []
    notes = {}   # (engine, reason) -> figures
    for name, f in figs.items():
        row = [f["title"], f["unit"]]
        for n in engines:
            e = f["engines"].get(n, {})
            row.append(_cell(e))
            if e.get("na") and "median" not in e:
                notes.setdefault((n, "n/a: " + e["na"]), []).append(name)
            for err in e.get("errors", []):
                notes.setdefault((n, "error: " + err), []).append(name)
        row.append(ENGINES[f["best_peer"]].label if f["best_peer"] else "-")
        for n in aeros:
            r = f["ratios"].get(n)
            row.append(f"**{fmt(r)}**" if r is not None else "-")
        t = f["target"]
        first = f["engines"].get(aeros[0], {}).get("median") if aeros else None
        if t and t["value"] is not None:
            row.append(f"{t['text']} (<= {fmt(t['value'])})")
            row.append("-" if first is None else ("yes" if first <= t["value"] else "no"))
        else:
            row += [t["text"] if t else "-", "-"]
        rows.append(row)
    out += md_table(head, rows)
    rates = [(n, f) for n, f in figs.items() if f["rate"]]
    if rates:
        rows = []
        for name, f in rates:
            row = [f["title"]]
            for n in engines:
                x = f["engines"].get(n, {}).get("extras", {}).get(f["rate"])
                row.append(f"{fmt(x)} {f['rate'].replace('_per_s', '/s')}" if x else "-")
            rows.append(row)
        out += ["", "Rates (medians):", ""] + md_table(
            ["figure"] + [ENGINES[n].label for n in engines], rows)
    out += ["", "Result checks (the same answer from every engine):", ""]
    for name, f in figs.items():
        checks = {n: e["checks"] for n, e in f["engines"].items() if e.get("checks")}
        if checks:
            mark = "agree" if f["checks_agree"] else "**DIFFER**"
            out.append(f"- {name}: {mark}: " + "; ".join(
                f"{n} {', '.join(v)}" for n, v in checks.items()))
    if notes:
        out += ["", "Not measured (n/a = the engine cannot run it, with the reason):", ""]
        for (n, why), names in notes.items():
            which = "every figure" if len(names) == len(figs) else ", ".join(names)
            out.append(f"- {ENGINES[n].label}: {which}: {why}")
    out += _memory_table(doc)
    if doc.get("chart_note"):
        out += ["", doc["chart_note"] + " How to reproduce and what each workload does: "
                "`docs/benchmarks.md`.", ""]
    else:
        out += ["", "Chart of the ratios: `latest.png`. How to reproduce and what each workload "
                "does: `docs/benchmarks.md`.", ""]
    return "\n".join(out)


def _memory_table(doc: dict) -> list:
    """Lines of the split of Aerostore's memory per row by part, when the run measured it
    (bench/engine_bench.py ``split_in_subprocess``); else none."""
    ms = doc.get("memory_split")
    if not ms:
        return []
    if ms.get("error"):
        return ["", f"Memory by part: not measured ({ms['error']})."]
    load = ms["after_load"]     # parts in order, "total" last
    out = ["", f"Memory per row by part (B/row), Aerostore in-process: the same TSV ingested into "
               f"`:memory:` by `bench/engine_bench.py --split-only`, {ms['rows']:,} rows, parts "
               "from `Database.memory` (docs/python.md):", ""]
    out += md_table(["part", "after the ingest"], [[p, fmt(v)] for p, v in load.items()])
    rss = [(n, e["median"]) for n, e in doc["figures"].get("memory", {}).get("engines", {}).items()
           if ENGINES[n].is_aerostore and "median" in e]
    if rss:
        shown = ", ".join(f"{fmt(v)} ({ENGINES[n].label})" for n, v in rss)
        out += ["", f"Resident memory per row in tclsh after the ingest: {shown}. The parts count "
                    "each object's own size (`sys.getsizeof`); the allocator rounds small objects "
                    "up to 16 bytes and keeps some of what the load freed, which the resident "
                    "figure includes."]
    return out


def _fmt_ratio(r):
    return f"{fmt(r)}x" if r >= 1 else f"1/{fmt(1 / r)}x"


def chart(doc: dict, path: str) -> None:
    """Draw the Aerostore / best-peer ratios of ``doc`` (latest.json's content)
    as a PNG at ``path``: one row per figure, one bar per Aerostore variant, on
    a log axis centred on 1x; green (left) where Aerostore costs less than the
    best peer, red (right) where it costs more.  ImportError without matplotlib."""
    plt = pyplot()
    from matplotlib.patches import Patch

    m, cfg, figs = doc["machine"], doc["config"], doc["figures"]
    aeros = [n for n in cfg["engines"] if ENGINES[n].is_aerostore]
    # sync-off commits are not durable: mark the rows where that matters
    labels = [name + (" *" if name.startswith("commit") else "") for name in figs]
    ratios = [[f["ratios"].get(n) for n in aeros] for f in figs.values()]
    logs = [abs(math.log10(r)) for row in ratios for r in row if r]
    span = max(1, math.ceil(max(logs, default=0)))       # whole decades each side of 1x
    shades = [1.0, 0.5]                                   # the series' alpha: first full, then lighter
    bar_h = 0.8 / max(1, len(aeros))
    fig, ax = plt.subplots(figsize=(10, 1.6 + 0.22 * max(1, len(figs)) * max(1, len(aeros))))
    for i, row in enumerate(ratios):
        for j, r in enumerate(row):
            y = i + (j - (len(aeros) - 1) / 2) * bar_h
            if not r:
                ax.text(1.05, y, "n/a", va="center", fontsize=7, color="grey")
                continue
            color = "#2ca02c" if r < 1 else "#d62728"
            ax.barh(y, abs(r - 1), left=min(r, 1), height=bar_h * 0.9, color=color,
                    alpha=shades[j % 2])
            ax.text(r * (1.08 if r >= 1 else 1 / 1.08), y, _fmt_ratio(r), va="center",
                    ha="left" if r >= 1 else "right", fontsize=7)
    if not aeros:
        ax.text(1.1, -0.4, "no Aerostore figures in this run", va="center", color="grey")
    ax.set_xscale("log")
    ax.set_xlim(10.0 ** -(span + 0.5), 10.0 ** (span + 0.5))
    ax.set_xticks([10.0 ** d for d in range(-span, span + 1)],
                  [f"{10 ** d:,}x" if d >= 0 else f"1/{10 ** -d:,}x" for d in range(-span, span + 1)],
                  fontsize=8)
    ax.minorticks_off()
    ax.axvline(1, color="black", lw=0.8)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(len(labels) - 0.5, -0.5 - (0.6 if not aeros else 0))   # first figure on top
    ax.set_xlabel("<- Aerostore ahead          cost ratio, log scale          Aerostore behind ->",
                  fontsize=8)
    if aeros:
        ax.legend(handles=[Patch(color="dimgrey", alpha=shades[j % 2], label=n)
                           for j, n in enumerate(aeros)], fontsize=8, loc="lower right")
    ax.set_title(f"Aerostore / best SQLite peer: {cfg['rows']:,} rows, median of {cfg['reps']} "
                 f"reps, {m['date']}, {m['cores']} cores\n* sync-off commits are not durable",
                 fontsize=9)
    save_chart(fig, path)


def write(outdir: str, machine: dict, config: dict, results: Results,
          memory_split: dict | None = None) -> dict:
    """Write latest.json, latest.md and latest.png in ``outdir``; ``memory_split``: Aerostore's
    memory per row by part (engine_bench.split_in_subprocess), shown as an extra table."""
    os.makedirs(outdir, exist_ok=True)
    figs = summarize(results, config["rows"])
    config = dict(config, engine_code=results.fingerprints)
    doc = {"machine": machine, "config": config, "figures": figs}
    if memory_split:
        doc["memory_split"] = memory_split
    try:
        import matplotlib  # noqa: F401  (know before writing latest.md whether there is a chart)
    except ImportError as e:
        doc["chart_note"] = no_chart_note(e)
    write_doc(outdir, "latest", doc, markdown)
    png = os.path.join(outdir, "latest.png")
    if "chart_note" in doc:
        if os.path.exists(png):
            os.remove(png)         # an old run's chart would not match latest.md
    else:
        chart(doc, png)
    return doc


if __name__ == "__main__":
    # Redraw latest.png from latest.json (e.g. after a change to the chart).
    src, saved = saved_doc("latest.json")
    chart(saved, os.path.join(os.path.dirname(os.path.abspath(src)), "latest.png"))
