"""Charts of the live-feed benchmark, drawn with matplotlib (the ``bench``
optional extra: ``pip install -e '.[bench]'``).

* ``live-r<R>.png``, one per reader count: latency over time, one panel per
  query kind plus the feed's commit latency and its achieved rate; every
  sample as a faint dot (thinned to at most MAX_POINTS per engine and panel,
  keeping every sample above the engine's p99 so the outliers all show), the
  p99 of each time bin (about 30 per phase) as a line, the p99 target dashed.
* ``live-sweep.png``: per engine, achieved feed rate and the worst reader
  p99 / target against the target feed rate.
"""
from __future__ import annotations

import os

from livestats import KINDS, TARGETS_MS, TITLES, bins, percentile
from report import pyplot, save_chart

MAX_POINTS = 15_000
COLORS = {"aerostore": "#1f77b4", "sqlite": "#d62728", "postgres": "#2ca02c"}


def _thin(t, us):
    n = len(t)
    if n <= MAX_POINTS:
        return t, us
    p99 = percentile(sorted(us), 99)
    step = n / MAX_POINTS
    keep = {int(i * step) for i in range(MAX_POINTS)}
    idx = [i for i in range(n) if i in keep or us[i] > p99]
    return [t[i] for i in idx], [us[i] for i in idx]


def _width(secs):
    """Time bins of the p99 lines: the smallest of 0.1, 0.2, 0.25, 0.5, 1, 2 s
    that makes at most 40 bins."""
    for w in (0.1, 0.2, 0.25, 0.5, 1.0):
        if secs / w <= 40:
            return w
    return 2.0


def _panel(ax, title, engines, key, secs, target=None):
    for name, e, phase in engines:
        src = phase["feed"] if key == "commit" else phase["queries"].get(key, {})
        if "samples" not in src:
            continue
        t, us = src["samples"]
        tt, uu = _thin(t, us)
        color = COLORS.get(name, None)
        alpha = min(0.6, max(0.08, 1500 / max(1, len(tt))))
        ax.scatter([x / 1e6 for x in tt], [y / 1000.0 for y in uu], s=3, alpha=alpha, color=color,
                   linewidths=0, rasterized=True)
        b = bins((t, us), secs, _width(secs))
        xs = [x + b["width_s"] / 2 for x, v in zip(b["start_s"], b["p99_ms"]) if v is not None]
        ys = [v for v in b["p99_ms"] if v is not None]
        ax.plot(xs, ys, color=color, lw=1.4, label=f"{e['label'].split(' (')[0]} p99")
    if target is not None:
        ax.axhline(target, color="black", ls="--", lw=0.9, label=f"p99 target {target:g} ms")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.set_ylabel("ms", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, which="major", alpha=0.3)


def draw_run(outdir, prefix, doc, r):
    plt = pyplot()
    cfg = doc["config"]
    rs = str(r)
    engines = [(n, doc["engines"][n], doc["engines"][n]["runs"][rs]["live"])
               for n in cfg["engines"] if rs in doc["engines"].get(n, {}).get("runs", {})]
    if not engines:
        return None
    secs = cfg["live_secs"]
    mix = cfg.get("mix", KINDS)
    nrows = (len(mix) + 3) // 2
    fig, axes = plt.subplots(nrows, 2, figsize=(13, 3.5 * nrows), sharex=True)
    axes = axes.ravel()
    for ax, k in zip(axes, mix + ["commit"]):
        _panel(ax, TITLES[k], engines, k, secs, TARGETS_MS.get(k))
    for ax in axes[len(mix) + 2:]:
        ax.set_visible(False)
    ax = axes[len(mix) + 1]
    for name, e, phase in engines:
        f = phase["feed"]
        if "samples" not in f:
            continue
        b = bins(f["samples"], secs, _width(secs))
        rate = [n * f["batch_rows"] / b["width_s"] for n in b["n"]]
        ax.step(b["start_s"] + [secs], rate + rate[-1:], where="post", color=COLORS.get(name), lw=1.2,
                label=f"{e['label'].split(' (')[0]}: {f['achieved_rows_per_s']:,.0f} rows/s")
    ax.axhline(cfg["rate"], color="black", ls="--", lw=0.9, label=f"target {cfg['rate']:,.0f} rows/s")
    ax.set_ylim(bottom=0)
    ax.set_title(f"feed: rows committed per second ({_width(secs):g} s bins)", fontsize=9)
    ax.set_ylabel("rows/s", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    axes[0].legend(fontsize=7, loc="upper right")
    for ax in axes[len(mix):len(mix) + 2]:
        ax.set_xlabel("seconds since the phase started", fontsize=8)
        ax.xaxis.set_tick_params(labelbottom=True)
    m = doc["machine"]
    fig.suptitle(f"Live feed, {cfg['rows']:,} rows: {r} readers, feed target {cfg['rate']:,.0f} rows/s "
                 f"in {cfg['batch_rows']}-row durable commits\n{m['date']}, {m['cores']} cores, "
                 f"{m['cpu']}; dots = every query (thinned), lines = p99 per {_width(secs):g} s", fontsize=10)
    return save_chart(fig, os.path.join(outdir, f"{prefix}-r{r}.png"), top=0.96)


def draw_sweep(outdir, prefix, doc):
    plt = pyplot()
    cfg = doc["config"]
    sw = [(n, doc["engines"][n]) for n in cfg["engines"] if doc["engines"].get(n, {}).get("sweep")]
    if not sw:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.8))
    top = max(p["rate"] for _, e in sw for p in e["sweep"]["points"])
    for name, e in sw:
        pts = sorted(e["sweep"]["points"], key=lambda p: p["rate"])
        x = [p["rate"] for p in pts]
        color = COLORS.get(name)
        lab = e["label"].split(" (")[0]
        sus = e["sweep"]["sustainable"]
        a1.plot(x, [p["feed"].get("achieved_rows_per_s", 0) for p in pts], "o-", color=color,
                label=f"{lab}: sustainable {sus:,.0f}" if sus else f"{lab}: none sustainable")
        worst = []
        for p in pts:
            w = [(p["queries"].get(k, {}).get("p99_ms") or float("nan")) / t
                 for k, t in TARGETS_MS.items() if k in cfg.get("mix", KINDS)]
            worst.append(max(w, default=float("nan")))
        a2.plot(x, worst, "o-", color=color, label=lab)
        for p, w in zip(pts, worst):
            if not p["pass"]:
                a2.plot([p["rate"]], [w], "x", color="black", ms=8)
    a1.plot([0, top], [0, top], color="grey", lw=0.8, ls=":", label="achieved = target")
    a1.plot([0, top], [0, 0.95 * top], color="black", lw=0.8, ls="--", label="95% of target")
    a1.set_xlabel("feed target, rows/s")
    a1.set_ylabel("feed achieved, rows/s")
    a1.set_title("feed achieved against target", fontsize=10)
    a1.legend(fontsize=8)
    a1.grid(True, alpha=0.3)
    a2.axhline(1.0, color="black", ls="--", lw=0.9, label="at the target")
    a2.set_yscale("log")
    a2.set_xlabel("feed target, rows/s")
    a2.set_ylabel("worst reader p99 / its target")
    a2.set_title("worst reader p99 against its target (x = point failed)", fontsize=10)
    a2.legend(fontsize=8)
    a2.grid(True, which="both", alpha=0.3)
    s0 = sw[0][1]["sweep"]
    m = doc["machine"]
    fig.suptitle(f"Sustainable feed rate sweep: {s0['rows']:,} rows, {s0['readers']} readers, "
                 f"{s0['secs']:g} s per point; {m['date']}, {m['cores']} cores", fontsize=10)
    return save_chart(fig, os.path.join(outdir, f"{prefix}-sweep.png"), top=0.94)


def draw(outdir, prefix, doc) -> list:
    """Every chart; -> the file names written.  ImportError if no matplotlib."""
    import matplotlib  # noqa: F401  (fail early, before any work)
    out = []
    for r in doc["config"]["readers"]:
        p = draw_run(outdir, prefix, doc, r)
        if p:
            out.append(os.path.basename(p))
    p = draw_sweep(outdir, prefix, doc)
    if p:
        out.append(os.path.basename(p))
    return out
