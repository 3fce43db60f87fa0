#!/usr/bin/env python3
"""The live-feed benchmark: one durable feed and R readers at once, per engine.

    python bench/live.py [--rows N | --quick] [--readers 2,4] [--rate 20000]
                         [--live-secs S] [--alone-secs S] [--engines a,b,c] [--no-sweep]

For each engine (Aerostore, SQLite through Tcl, PostgreSQL through Pgtcl), one
store of N rows: every query kind measured alone by the same R readers (no
feed), then the readers' mix under a feed of --rate rows/s in 100-row durable
batches, for each R; then a sweep for the highest feed rate at which every
reader p99 stays within its target.  Writes bench/results/live.{md,json} and
live-*.png.  docs/benchmarks.md ("The live feed") says what runs and how.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import datagen                                   # noqa: E402
import livereport                                # noqa: E402
import machine                                   # noqa: E402
import pg                                        # noqa: E402
from engines import BENCH, TCL_DIR, BY_NAME as ENGINE_BY_NAME, availability, tcl_env, tcl_eval  # noqa: E402
from livestats import KINDS, TARGETS_MS, summarize_phase  # noqa: E402
from runner import Scratch, engine_fingerprint, remove_path   # noqa: E402

HOST = os.path.join(TCL_DIR, "live_host.tcl")
CLIENT = os.path.join(TCL_DIR, "live_client.tcl")

LIVE_ENGINES = {
    # name: (label, how clients run, Tcl file, engine of bench/engines.py whose template it uses)
    "aerostore": ("Aerostore (synchronous_commit on)", "threads", "live_aerostore.tcl",
                  "aerostore-sync-on"),
    "sqlite": ("SQLite via Tcl (WAL, synchronous=FULL)", "threads", "live_sqlite.tcl", "sqlite-wal"),
    "postgres": ("PostgreSQL via Pgtcl (synchronous_commit on)", "processes", "live_pg.tcl", None),
}

QUICK = dict(rows=100_000, live_secs=8.0, alone_secs=1.0, sweep_secs=3.0)
FULL = dict(rows=1_000_000, live_secs=30.0, alone_secs=3.0, sweep_secs=6.0)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def tcl_list(items) -> str:
    """A Tcl list of simple words (numbers, names, paths without spaces) and
    nested lists of them."""
    out = []
    for x in items:
        if isinstance(x, (list, tuple)):
            out.append("{" + tcl_list(x) + "}")
        else:
            s = str(x)
            if not s or any(c in s for c in " \t\n{}[]$\\\";"):
                s = "{" + s + "}"
            out.append(s)
    return " ".join(out)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=None, help="rows in the store (default 1M; --quick 100k)")
    ap.add_argument("--quick", action="store_true",
                    help="100k rows and short phases (live 8 s, alone 1 s per kind, sweep points 3 s)")
    ap.add_argument("--readers", default="2,4", help="reader counts R, comma-separated (default 2,4)")
    ap.add_argument("--rate", type=float, default=20_000, help="feed target, rows/s (default 20000)")
    ap.add_argument("--live-secs", type=float, default=None, help="seconds of each feed + readers phase")
    ap.add_argument("--alone-secs", type=float, default=None,
                    help="seconds per query kind measured alone (no feed); 0 skips")
    ap.add_argument("--mix", default=",".join(KINDS),
                    help="the query kinds each reader loops over, in order (default all: "
                         + ",".join(KINDS) + ")")
    ap.add_argument("--new-frac", type=float, default=0.02, help="fraction of feed rows with a new key")
    ap.add_argument("--batch-rows", type=int, default=100, help="rows per feed transaction")
    ap.add_argument("--engines", default="aerostore,sqlite,postgres",
                    help="comma-separated subset of: " + ", ".join(LIVE_ENGINES))
    ap.add_argument("--no-sweep", dest="sweep", action="store_false", help="skip the sweep")
    ap.add_argument("--sweep-rates", default="1000,2000,5000,10000,20000,40000",
                    help="ascending feed rates tried until one fails")
    ap.add_argument("--sweep-bisect", type=int, default=2,
                    help="bisection steps between the last rate that passed and the first that failed")
    ap.add_argument("--sweep-secs", type=float, default=None, help="seconds per sweep point")
    ap.add_argument("--sweep-readers", type=int, default=2, help="readers during the sweep")
    ap.add_argument("--sweep-rows", type=int, default=None,
                    help="rows of the sweep's store (default: --rows; a smaller store is loaded apart)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--timeout", type=float, default=1800, help="seconds before a stuck step is killed")
    ap.add_argument("--cache", default=os.path.join(BENCH, ".cache"))
    ap.add_argument("--out", default=os.path.join(BENCH, "results"))
    ap.add_argument("--no-plot", dest="plot", action="store_false", help="write no charts")
    a = ap.parse_args(argv)
    base = QUICK if a.quick else FULL
    for k, v in base.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.sweep_rows is None:
        a.sweep_rows = a.rows
    a.cache, a.out = os.path.abspath(a.cache), os.path.abspath(a.out)
    a.readers = [int(x) for x in a.readers.split(",") if x]
    a.engines = [x for x in a.engines.split(",") if x]
    a.mix = [x for x in a.mix.split(",") if x]
    if not a.mix or any(k not in KINDS for k in a.mix):
        ap.error("--mix: a comma-separated subset of " + ",".join(KINDS))
    a.sweep_rates = sorted(float(x) for x in a.sweep_rates.split(",") if x)
    for x in a.engines:
        if x not in LIVE_ENGINES:
            ap.error(f"unknown engine {x!r}")
    if a.rows < 1 or not a.readers or min(a.readers) < 1 or a.rate <= 0 or a.live_secs <= 0:
        ap.error("--rows, --readers, --rate and --live-secs must be positive")
    if not 0 <= a.new_frac < 1 or a.batch_rows < 1:
        ap.error("--new-frac must be in [0, 1), --batch-rows positive")
    return a


def estimate_seconds(a) -> float:
    """Rough wall time of the measured phases (setup not included)."""
    per_r = len(a.mix) * (a.alone_secs + 1.0 if a.alone_secs > 0 else 0) + a.live_secs + 1.5
    sweep = (len(a.sweep_rates) + a.sweep_bisect) * (a.sweep_secs + 1.5) if a.sweep else 0
    return len(a.engines) * (len(a.readers) * per_r + sweep)


# -- sessions: one store, its clients, phase after phase ---------------------------

class SessionError(RuntimeError):
    pass


class ThreadSession:
    """Aerostore and SQLite: one tclsh (live_host.tcl) holding the store, the
    feed thread and the reader threads, driven line by line."""

    def __init__(self, name, ds, scratch, workdir, timeout, batch_rows):
        label, _, tcl_file, base = LIVE_ENGINES[name]
        self.name, self.ds, self.timeout = name, ds, timeout
        self.engine = ENGINE_BY_NAME[base]
        tpl = scratch.template(self.engine, "checkpointed")
        if not os.path.exists(tpl):
            raise SessionError(tpl)
        self.fingerprint = engine_fingerprint(self.engine.kind)
        self.workdir = os.path.join(workdir, f"{name}-{ds.rows}")
        remove_path(self.workdir)
        os.makedirs(self.workdir)
        t0 = time.monotonic()
        if self.engine.is_aerostore:
            store = os.path.join(self.workdir, "store")
            shutil.copytree(tpl, store)
            params = ["dir", store]
        else:
            store = os.path.join(self.workdir, "db.sqlite")
            shutil.copyfile(tpl, store)
            params = ["db", store]
        params += ["rows", ds.rows, "batch_rows", batch_rows]
        self.stderr_path = os.path.join(self.workdir, "host.stderr")
        self.stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(["tclsh", HOST, os.path.join(TCL_DIR, tcl_file)]
                                     + [str(x) for x in params], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                     env=tcl_env(), cwd=BENCH, bufsize=1)
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        try:
            ready = self._next(timeout)
            if not ready.get("ready"):
                raise SessionError(f"host did not start: {ready}")
        except BaseException:
            self.close()
            raise
        self.open_seconds = time.monotonic() - t0
        self.phase_no = 0

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _next(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise SessionError(f"no answer within {timeout:.0f} s{self._tail()}") from None
            if line is None:
                raise SessionError(f"host exited ({self.proc.poll()}){self._tail()}")
            line = line.strip()
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except json.JSONDecodeError:
                    continue

    def _tail(self):
        try:
            self.stderr.flush()
            with open(self.stderr_path) as f:
                t = f.read().strip().splitlines()[-6:]
            return (": " + " | ".join(t)) if t else ""
        except OSError:
            return ""

    def command(self, words, timeout=None):
        self.proc.stdin.write(tcl_list(words) + "\n")
        self.proc.stdin.flush()
        recs = []
        while True:
            r = self._next(timeout or self.timeout)
            if "error" in r:
                raise SessionError(f"{words[0]}: {r['error']}{self._tail()}")
            if "ok" in r:
                return recs
            recs.append(r)

    def checks(self):
        recs = self.command(["checks"])
        return recs[0]["checks"] if recs else {}

    def warm(self):
        self.command(["warm"])

    def phase(self, name, readers, kinds, rate, secs, newbase, new_frac, seed):
        out = os.path.join(self.workdir, f"phase-{self.phase_no}.jsonl")
        self.phase_no += 1
        self.command(["phase", name, readers, list(kinds), int(rate), secs, newbase, new_frac,
                      seed, out], timeout=secs + self.timeout)
        with open(out) as f:
            recs = [json.loads(x) for x in f if x.strip()]
        os.remove(out)
        return recs

    def close(self):
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=120)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.stderr.close()
            remove_path(self.workdir)


class ProcessSession:
    """PostgreSQL: a private cluster; every client (feed, each reader) is a
    tclsh process of its own (live_client.tcl), started for each phase."""

    STARTUP_US = 1_500_000       # clients start, connect and PREPARE before t0

    def __init__(self, name, ds, scratch, workdir, timeout, batch_rows):
        self.name, self.ds, self.timeout = name, ds, timeout
        self.tcl_file = os.path.join(TCL_DIR, LIVE_ENGINES[name][2])
        self.cluster = pg.Cluster(os.path.join(workdir), log)
        try:
            t0 = time.monotonic()
            self.cluster.start()
            log(f"postgres: loading {ds.rows:,} rows (COPY, then indexes, VACUUM ANALYZE)")
            self.load_seconds = self.cluster.load(ds.flights)
            self.open_seconds = time.monotonic() - t0
        except Exception:
            self.cluster.stop()
            raise
        self.params = ["conninfo", self.cluster.conninfo, "rows", ds.rows, "batch_rows", batch_rows]
        self.fingerprint = engine_fingerprint("live_pg")

    def _spawn(self, command):
        return subprocess.Popen(["tclsh", CLIENT, self.tcl_file, tcl_list(self.params),
                                 tcl_list(command)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=tcl_env(), cwd=BENCH)

    def _collect(self, procs, timeout):
        recs, errs = [], []
        deadline = time.monotonic() + timeout
        for p in procs:
            try:
                out, err = p.communicate(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
                errs.append("a client timed out")
            for line in out.splitlines():
                line = line.strip()
                if line.startswith("{"):
                    r = json.loads(line)
                    if "error" in r:
                        errs.append(r["error"])
                    else:
                        recs.append(r)
            if p.returncode and not errs:
                errs.append(f"client exit {p.returncode}: {err.strip()[-500:]}")
        if errs:
            raise SessionError("; ".join(errs) + self.cluster.server_log_tail(5))
        return recs

    def checks(self):
        recs = self._collect([self._spawn(["live_checks"])], self.timeout)
        return recs[0]["checks"] if recs else {}

    def warm(self):
        self._collect([self._spawn(["live_warm", 3])], self.timeout)

    def phase(self, name, readers, kinds, rate, secs, newbase, new_frac, seed):
        # untimed: one mix per reader first, as the thread host does
        self._collect([self._spawn(["live_warm", 1]) for _ in range(readers)], self.timeout)
        t0 = int(time.time() * 1e6) + self.STARTUP_US
        deadline = t0 + int(secs * 1e6)
        procs = [self._spawn(["reader_run", list(kinds), t0, deadline, seed * 1000 + i, f"r{i}"])
                 for i in range(readers)]
        if rate > 0:
            procs.append(self._spawn(["feed_run", int(rate), t0, deadline, newbase, new_frac,
                                      seed * 1000 + 999]))
        return self._collect(procs, secs + self.STARTUP_US / 1e6 + self.timeout)

    def close(self):
        self.cluster.stop()


def open_session(name, ds, scratch, workdir, a):
    cls = ProcessSession if LIVE_ENGINES[name][1] == "processes" else ThreadSession
    return cls(name, ds, scratch, workdir, a.timeout, a.batch_rows)


def in_session(name, ds, scratch, workdir, a, work, e, err_key):
    """Open a session of engine `name` on data set ds, run work(session), and
    close it whatever happens; a failure is kept in e[err_key] and logged."""
    sess = None
    try:
        sess = open_session(name, ds, scratch, workdir, a)
        work(sess)
    except (SessionError, RuntimeError, OSError) as err:
        e[err_key] = str(err)
        log(f"{name}: {err_key[:-len('error')].replace('_', ' ')}ERROR {err}")   # "ERROR", "sweep ERROR"
    finally:
        if sess:
            sess.close()


# -- what runs in a session --------------------------------------------------------

class Runner:
    def __init__(self, a):
        self.a = a
        self.newbase = 0

    def next_newbase(self, rows):
        """Keys for new rows, distinct across every phase of a session."""
        self.newbase += 1
        return rows + self.newbase * 10_000_000

    def run_phase(self, sess, name, readers, kinds, rate, secs):
        recs = sess.phase(name, readers, kinds, rate, secs, self.next_newbase(sess.ds.rows),
                          self.a.new_frac, self.a.seed)
        return summarize_phase(recs, secs, rate, keep_samples=True)

    def main_phases(self, sess):
        """Every query kind alone (no feed) for each R first, on the store as
        loaded; then the feed + readers phase for each R."""
        a, out = self.a, {}
        for r in a.readers:
            res = out[str(r)] = {"readers": r}
            if a.alone_secs > 0:
                alone = {}
                for k in a.mix:
                    ph = self.run_phase(sess, f"alone-r{r}-{k}", r, [k], 0, a.alone_secs)
                    alone[k] = ph["queries"].get(k, {})
                    alone[k].pop("samples", None)
                res["alone"] = alone
                log(f"  R={r} alone: " + ", ".join(
                    f"{k} p50/p99 {_ms(v.get('p50_ms'))}/{_ms(v.get('p99_ms'))}"
                    for k, v in alone.items()))
        for r in a.readers:
            ph = self.run_phase(sess, f"live-r{r}", r, a.mix, a.rate, a.live_secs)
            out[str(r)]["live"] = ph
            f = ph["feed"]
            log(f"  R={r} live: feed {f.get('achieved_rows_per_s', 0):,.0f} rows/s "
                f"(commit p50 {_ms(f.get('p50_ms'))} p99 {_ms(f.get('p99_ms'))} max "
                f"{_ms(f.get('max_ms'))}, {f.get('errors', 0)} errors); "
                + ", ".join(f"{k} p50/p99 {_ms(v.get('p50_ms'))}/{_ms(v.get('p99_ms'))}"
                            for k, v in ph["queries"].items()))
        return out

    def sweep(self, sess):
        a = self.a
        points = []

        def trial(rate):
            ph = self.run_phase(sess, f"sweep-{rate:.0f}", a.sweep_readers, a.mix, rate, a.sweep_secs)
            ph.pop("series", None)
            for q in ph["queries"].values():
                q.pop("samples", None)
            ph["feed"].pop("samples", None)
            ok, why = livestats_pass(ph, rate, a.mix)
            points.append({"rate": rate, "pass": ok, "why": why, "feed": ph["feed"],
                           "queries": ph["queries"]})
            log(f"  sweep {rate:,.0f} rows/s: {'pass' if ok else 'FAIL'} ({why})")
            return ok

        good = bad = None
        for rate in a.sweep_rates:
            if trial(rate):
                good = rate
            else:
                bad = rate
                break
        if good is None:
            # even the lowest rate failed: halve it, as many times as bisection steps
            for _ in range(a.sweep_bisect):
                rate = round(bad / 2 / 10) * 10
                if rate < 10:
                    break
                if trial(rate):
                    good = rate
                    break
                bad = rate
        for _ in range(a.sweep_bisect):
            if good is None or bad is None:
                break
            mid = round((good + bad) / 2 / 100) * 100
            if mid in (good, bad):
                break
            if trial(mid):
                good = mid
            else:
                bad = mid
        return {"readers": a.sweep_readers, "secs": a.sweep_secs, "rows": sess.ds.rows,
                "points": points, "sustainable": good, "first_fail": bad}


def livestats_pass(ph, rate, mix):
    why = []
    f = ph["feed"]
    ach = f.get("achieved_rows_per_s", 0)
    if ach < 0.95 * rate:
        why.append(f"feed {ach:,.0f} < 95% of {rate:,.0f}")
    targets = {k: t for k, t in TARGETS_MS.items() if k in mix}
    for k, t in targets.items():
        q = ph["queries"].get(k, {})
        p99 = q.get("p99_ms")
        if p99 is None:
            why.append(f"{k}: no samples")
        elif p99 > t:
            why.append(f"{k} p99 {p99:.3g} > {t} ms")
        if q.get("errors"):
            why.append(f"{k}: {q['errors']} errors")
    worst = max(((ph["queries"].get(k, {}).get("p99_ms") or float("inf")) / t
                 for k, t in targets.items()), default=0.0)
    return not why, "; ".join(why) or f"worst p99 at {worst:.0%} of its target, feed {ach:,.0f} rows/s"


def _ms(x):
    return "-" if x is None else f"{x:.3g} ms"


def unavailable_reasons(names) -> dict:
    out = {}
    kinds = {ENGINE_BY_NAME[LIVE_ENGINES[n][3]].kind for n in names if LIVE_ENGINES[n][3]}
    avail = availability(kinds)
    ok, text = tcl_eval("puts [package require Thread]")
    for n in names:
        mode, base = LIVE_ENGINES[n][1], LIVE_ENGINES[n][3]
        if n == "postgres":
            why, _ = pg.available()
            if why:
                out[n] = why
        elif avail.get(ENGINE_BY_NAME[base].kind):
            out[n] = avail[ENGINE_BY_NAME[base].kind]
        elif mode == "threads" and not ok:
            out[n] = "package Thread does not load in tclsh (apt-get install tcl-thread)"
    return out


def _engine_uncommitted() -> list:
    """Engine files with uncommitted changes (the working tree is shared with
    the engine's developers; what ran is the tree, not the commit)."""
    try:
        p = subprocess.run(["git", "status", "--porcelain", "--", "aerostore", "c_shim", "tcl"],
                           cwd=os.path.dirname(BENCH), capture_output=True, text=True, timeout=30)
        return [line[3:] for line in p.stdout.splitlines() if line.strip()]
    except (OSError, subprocess.TimeoutExpired):
        return []


def _on_signal(signum, frame):
    raise SystemExit(128 + signum)     # so finally blocks and atexit stop the clusters


def main(argv=None) -> int:
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    t_start = time.monotonic()
    mach = machine.describe()
    _, pgver = pg.available() if "postgres" in a.engines else (None, "")
    if pgver:
        mach["postgres"] = pgver
    mach["engine_uncommitted"] = _engine_uncommitted()
    log(f"machine: {mach['cpu']}, {mach['cores']} cores, load {mach['loadavg_start']}")
    log(f"live feed: {a.rows:,} rows, readers {a.readers}, feed {a.rate:,.0f} rows/s, "
        f"live {a.live_secs:g} s, alone {a.alone_secs:g} s per kind, sweep "
        f"{'at ' + format(a.sweep_rows, ',') + ' rows' if a.sweep else 'off'}; measured phases "
        f"about {estimate_seconds(a) / 60:.1f} min plus loading")
    ds = datagen.ensure(os.path.join(a.cache, "data"), a.rows, a.seed)
    sds = ds if a.sweep_rows == a.rows else datagen.ensure(os.path.join(a.cache, "data"),
                                                           a.sweep_rows, a.seed)
    workdir = os.path.join(a.cache, "run", f"live-{os.getpid()}")
    os.makedirs(workdir, exist_ok=True)
    scratch = Scratch(a.cache, ds, 10_000, a.timeout)
    sscratch = scratch if sds is ds else Scratch(a.cache, sds, 10_000, a.timeout)
    skipped = unavailable_reasons(a.engines)
    for n, why in skipped.items():
        log(f"{n}: skipped: {why}")
    engines = {}
    runner = Runner(a)
    try:
        for name in a.engines:
            if name in skipped:
                continue
            e = engines[name] = {"label": LIVE_ENGINES[name][0], "loadavg_start": machine.loadavg()}
            log(f"{name}: opening {ds.rows:,} rows")

            def main_runs(sess):
                e["open_seconds"] = round(sess.open_seconds, 1)
                e["code"] = sess.fingerprint
                e["checks"] = sess.checks()
                sess.warm()
                e["runs"] = runner.main_phases(sess)
                if a.sweep and sds is ds:
                    e["sweep"] = runner.sweep(sess)

            def sweep_runs(sess):
                sess.warm()
                e["sweep"] = runner.sweep(sess)

            in_session(name, ds, scratch, workdir, a, main_runs, e, "error")
            if a.sweep and sds is not ds and "error" not in e:
                log(f"{name}: sweep on {sds.rows:,} rows")
                in_session(name, sds, sscratch, workdir, a, sweep_runs, e, "sweep_error")
            e["loadavg_end"] = machine.loadavg()
    finally:
        remove_path(workdir)
    mach["loadavg_end"] = machine.loadavg()
    config = {"rows": a.rows, "readers": a.readers, "rate": a.rate, "live_secs": a.live_secs,
              "alone_secs": a.alone_secs, "mix": a.mix, "new_frac": a.new_frac, "batch_rows": a.batch_rows,
              "sweep": a.sweep, "sweep_rates": a.sweep_rates, "sweep_bisect": a.sweep_bisect,
              "sweep_secs": a.sweep_secs, "sweep_readers": a.sweep_readers,
              "sweep_rows": a.sweep_rows, "seed": a.seed, "engines": a.engines,
              "skipped": skipped, "wall_seconds": round(time.monotonic() - t_start, 1)}
    doc = livereport.write(a.out, mach, config, engines, plot=a.plot)
    log(f"wrote {os.path.join(a.out, 'live.md')} (.json" +
        "".join(", " + os.path.basename(p) for p in doc.get("charts", [])) +
        f") in {config['wall_seconds']} s")
    if doc.get("chart_note"):
        log(doc["chart_note"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
