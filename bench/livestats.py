"""Figures of one live-feed phase from the clients' JSON lines.

A phase's records: one per (reader, query kind) with every sample (``t``: start
of the call in microseconds since the phase start; ``us``: its latency), and
one for the feed (every committed batch: ``t``, ``us`` = commit latency,
``lag`` = how late the batch started against its schedule).  Percentiles are
nearest-rank over all readers' samples of a kind.
"""
from __future__ import annotations

import math

KINDS = ["get", "count", "top50", "box", "boxtop", "range_offset"]

TITLES = {
    "get": "get (whole row of a random key)",
    "count": "count altitude > 30000",
    "top50": "top-50: altitude > 10000 sort lat limit 50, rows bound",
    "box": "count of a 5 x 5 degree lat/lon box",
    "boxtop": "top-20 by altitude desc inside a box, rows bound",
    "range_offset": "altitude 10000..20000 sort lat limit 50 offset 100, rows bound",
    "commit": "feed: 100-row durable commit",
}

# Issue 11's reader p99 targets (ms); the sweep's pass condition uses these.
TARGETS_MS = {"get": 0.5, "count": 1.0, "top50": 2.0, "box": 5.0}


def percentile(sorted_xs, p):
    if not sorted_xs:
        return None
    k = max(0, math.ceil(p / 100.0 * len(sorted_xs)) - 1)
    return sorted_xs[min(k, len(sorted_xs) - 1)]


def latency_stats(us) -> dict:
    """Microsecond samples -> n, p50, p99, max, mean in milliseconds."""
    s = sorted(us)
    if not s:
        return {"n": 0}
    return {"n": len(s), "p50_ms": percentile(s, 50) / 1000.0, "p99_ms": percentile(s, 99) / 1000.0,
            "max_ms": s[-1] / 1000.0, "mean_ms": sum(s) / len(s) / 1000.0}


def summarize_phase(recs, secs, rate, keep_samples=False) -> dict:
    by_kind, feed = {}, None
    late = 0
    counters = {}
    for r in recs:
        late = max(late, r.get("late_start_us", 0))
        if r.get("role") == "feed":
            feed = r
        elif r.get("role") == "engine":
            counters = r.get("counters", {})
        else:
            by_kind.setdefault(r["kind"], []).append(r)
    queries = {}
    for k in [k for k in KINDS if k in by_kind] + [k for k in by_kind if k not in KINDS]:
        rs = by_kind[k]
        t, us = [], []
        for r in rs:
            t += r["t"]
            us += r["us"]
        q = latency_stats(us)
        q["qps"] = len(us) / secs if secs else 0
        q["errors"] = sum(r.get("errors", 0) for r in rs)
        q["error_sample"] = next((r["error_sample"] for r in rs if r.get("error_sample")), "")
        q["per_reader_p99_ms"] = [latency_stats(r["us"]).get("p99_ms") for r in rs]
        if keep_samples:
            order = sorted(range(len(t)), key=t.__getitem__)
            q["samples"] = ([t[i] for i in order], [us[i] for i in order])
        queries[k] = q
    f = {}
    if feed is not None:
        f = latency_stats(feed["us"])
        elapsed = feed["elapsed_us"] / 1e6
        f.update(target_rows_per_s=rate, batch_rows=feed["batch_rows"],
                 batches_ok=feed["batches_ok"], rows_ok=feed["rows_ok"],
                 scheduled_batches=feed["scheduled"], new_keys=feed.get("new_keys", 0),
                 achieved_rows_per_s=feed["rows_ok"] / elapsed if elapsed > 0 else 0.0,
                 errors=feed.get("errors", 0), error_sample=feed.get("error_sample", ""))
        f["achieved_fraction"] = f["achieved_rows_per_s"] / rate if rate else None
        lag = sorted(feed.get("lag", []))
        if lag:
            f["lag_p99_ms"] = percentile(lag, 99) / 1000.0
            f["lag_max_ms"] = lag[-1] / 1000.0
        if keep_samples:
            f["samples"] = (feed["t"], feed["us"])
    return {"secs": secs, "rate": rate, "late_start_ms": late / 1000.0, "queries": queries, "feed": f,
            "counters": counters}


def bins(samples, secs, width=0.5) -> dict:
    """Samples (t_us, us) -> per time bin of `width` s: start, n, p50, p99, max (ms)."""
    t, us = samples
    nb = max(1, int(math.ceil(secs / width)))
    buckets = [[] for _ in range(nb)]
    for ti, ui in zip(t, us):
        i = int(ti / 1e6 / width)
        if 0 <= i < nb:
            buckets[i].append(ui)
        elif i >= nb:
            buckets[-1].append(ui)
    out = {"width_s": width, "start_s": [], "n": [], "p50_ms": [], "p99_ms": [], "max_ms": []}
    for i, b in enumerate(buckets):
        b.sort()
        out["start_s"].append(round(i * width, 3))
        out["n"].append(len(b))
        for p, key in ((50, "p50_ms"), (99, "p99_ms")):
            v = percentile(b, p)
            out[key].append(None if v is None else round(v / 1000.0, 4))
        out["max_ms"].append(round(b[-1] / 1000.0, 4) if b else None)
    return out
