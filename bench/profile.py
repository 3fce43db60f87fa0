#!/usr/bin/env python3
"""Profile one workload of one engine with py-spy, the way the benchmark runs it.

    python bench/profile.py --workload top50 [--engine aerostore-sync-on] [--rows N]
                            [--rate 500] [--py-spy PATH] [--root FUNCTION]

Same data, template and fresh tclsh as bench/run.py, with ``py-spy record``
wrapped around the tclsh (py-spy samples the Python embedded in it; install it
with ``pip install py-spy``, it is not a project dependency).  Prints the
functions with the most samples, by self time and inclusive, and leaves the raw
stacks in bench/.cache/profile-<workload>-<engine>.txt (flamegraph.pl input).
``--root`` restricts the summary to stacks through that function (for example
``Session.t_search``), which hides start-up and one-off work.  Note that py-spy
sees Python frames only: time in Tcl or the C shim shows up as the difference
between the workload's figure and the Python samples under the command.
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import datagen                                   # noqa: E402
from engines import BENCH, BY_NAME as ENGINES    # noqa: E402
from runner import Scratch                       # noqa: E402
from workloads import BY_NAME as WORKLOADS       # noqa: E402


def summarize(path: str, root: str = "", top: int = 20) -> str:
    self_n, incl, total = collections.Counter(), collections.Counter(), 0
    with open(path) as f:
        for line in f:
            stack, _, n = line.rstrip().rpartition(" ")
            if not stack:
                continue
            frames = stack.split(";")
            if root:
                at = next((i for i, fr in enumerate(frames) if fr.startswith(root)), None)
                if at is None:
                    continue
                frames = frames[at:]
            n = int(n)
            total += n
            self_n[frames[-1] or "(no Python frame)"] += n
            for fr in set(frames):
                incl[fr] += n
    if not total:
        return "no samples" + (f" through {root}" if root else "")
    out = [f"{total} samples" + (f" through {root}" if root else ""), "", "self:"]
    out += [f"{100 * n / total:5.1f}%  {fr}" for fr, n in self_n.most_common(top)]
    out += ["", "inclusive:"]
    out += [f"{100 * n / total:5.1f}%  {fr}" for fr, n in incl.most_common(top) if fr]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", required=True, choices=sorted(WORKLOADS))
    ap.add_argument("--engine", default="aerostore-sync-on", choices=sorted(ENGINES))
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--commits", type=int, default=2000)
    ap.add_argument("--max-secs", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    ap.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    ap.add_argument("--root", default="", help="only stacks through this function")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--cache", default=os.path.join(BENCH, ".cache"))
    a = ap.parse_args(argv)
    if not os.path.exists(a.py_spy) and not shutil.which(a.py_spy):
        ap.error("py-spy not found: pip install py-spy, or give --py-spy PATH")
    ds = datagen.ensure(os.path.join(a.cache, "data"), a.rows, a.seed)
    raw = os.path.join(a.cache, f"profile-{a.workload}-{a.engine}.txt")
    wrap = (a.py_spy, "record", "-r", str(a.rate), "-f", "raw", "-o", raw, "--")
    out = Scratch(a.cache, ds, a.batch, 3600).run(
        ENGINES[a.engine], WORKLOADS[a.workload], 0,
        min(a.commits, a.rows, datagen.MAX_KEYS), a.max_secs, wrap)
    for name, rec in out.figures.items():
        print(f"{name}: {rec.get('value')} {rec.get('unit')}")
    if out.error:
        # py-spy itself may complain when the process ends under it; only an
        # error without figures means the workload failed
        print(("note: " if out.figures else "error: ") + out.error)
    if os.path.exists(raw):
        print(summarize(raw, a.root, a.top))
        print(f"\nraw stacks: {raw}")
    return 0 if out.figures else 1


if __name__ == "__main__":
    sys.exit(main())
