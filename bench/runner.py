"""Run one workload of one engine in a fresh tclsh and collect its JSON lines.

Every process gets its own scratch directory under the cache (on the same disk
as the repository, never tmpfs, so fsync costs what it costs), holding either an
empty place for a new store (ingest) or a copy of the engine's prepared template
(everything else), and the directory is deleted afterwards.  Templates are built
once per (engine kind, kind of template, rows, seed, batch) by the untimed
``prepare`` (clean shutdown) or ``prepare_crashed`` (kill -9 after the ingest)
workload of the engine's Tcl file.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field

from engines import BENCH, REPO, Engine, tcl_env

HARNESS = os.path.join(BENCH, "tcl", "harness.tcl")


@dataclass
class Outcome:
    """What one process produced: figure name -> record, or an error / n/a."""
    figures: dict = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0
    returncode: int = 0
    fingerprint: str = ""   # engine code hash when the process ran


def _params(engine: Engine, ds, store: str, batch: int, commits: int, max_secs: float):
    p = dict(engine.params)
    p.update(flights=ds.flights, updates=ds.updates, keys=ds.keys, batch=batch,
             commits=commits, max_secs=max_secs)
    if engine.is_aerostore:
        p["dir"] = store
    else:
        p["db"] = store
    out = []
    for k, v in p.items():
        out += [k, str(v)]
    return out


def run_tcl(engine: Engine, workload: str, params: list, timeout: float,
            wrap: tuple = ()) -> Outcome:
    """Run harness.tcl; ``wrap`` prefixes the command (a profiler, for bench/profile.py)."""
    t0 = time.monotonic()
    cmd = list(wrap) + ["tclsh", HARNESS, engine.tcl_file, workload] + params
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=tcl_env(),
                           timeout=timeout, cwd=BENCH)
    except subprocess.TimeoutExpired:
        return Outcome(error=f"timed out after {timeout:.0f} s", seconds=timeout)
    out = Outcome(seconds=time.monotonic() - t0, returncode=p.returncode)
    for line in p.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("error"):
            out.error = rec["error"]
        else:
            out.figures[rec["figure"]] = rec
    if p.returncode != 0 and not out.error:
        tail = (p.stderr.strip() or p.stdout.strip()).splitlines()
        out.error = f"tclsh exit {p.returncode}: " + " | ".join(tail[:3] or ["no output"])
    return out


def engine_fingerprint(kind: str) -> str:
    """A short hash of the engine's code, so a template is rebuilt when the
    engine (and maybe its file format) changes: Aerostore's Python package and
    shim sources, or the SQLite Tcl files (sqlite.tcl and the schema's
    sqlite_lib.tcl)."""
    if kind == "aerostore":
        roots = [os.path.join(REPO, "aerostore"), os.path.join(REPO, "c_shim")]
    else:
        roots = [p for p in (os.path.join(BENCH, "tcl", kind + ".tcl"),
                             os.path.join(BENCH, "tcl", kind + "_lib.tcl")) if os.path.exists(p)]
    h = hashlib.sha1()
    for root in roots:
        paths = [root] if os.path.isfile(root) else sorted(
            os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
            if f.endswith((".py", ".c", ".h", ".tcl")))
        for path in paths:
            h.update(path.encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()[:10]


class Scratch:
    """Templates and per-process scratch space under <cache>/."""

    def __init__(self, cache: str, ds, batch: int, timeout: float):
        self.cache, self.ds, self.batch, self.timeout = cache, ds, batch, timeout
        self.templates = {}          # kind -> path, or Outcome with the error
        os.makedirs(os.path.join(cache, "run"), exist_ok=True)

    def template(self, engine: Engine, which: str):
        """Path of the prepared store (built on first use), or an error text."""
        tkey = (engine.kind, which)
        if tkey not in self.templates:
            stem = f"{engine.kind}-{which}-{self.ds.rows}-s{self.ds.seed}-b{self.batch}-"
            name = stem + engine_fingerprint(engine.kind)
            tdir = os.path.join(self.cache, "templates")
            path = os.path.join(tdir, name + ("" if engine.is_aerostore else ".db"))
            if not os.path.exists(path + ".ok"):
                # templates of older engine code are of no further use
                for old in os.listdir(tdir) if os.path.isdir(tdir) else ():
                    if old.startswith(stem):
                        remove_path(os.path.join(tdir, old))
                for p in (path, path + "-wal", path + "-shm"):
                    remove_path(p)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                prep = Engine(engine.name, engine.kind, (("sync", "on"),) if engine.is_aerostore
                              else (("mode", "wal"),), "prepare")
                wl = "prepare" if which == "checkpointed" else "prepare_" + which
                res = run_tcl(prep, wl, _params(prep, self.ds, path, self.batch, 0, 0),
                              self.timeout)
                # prepare_crashed ends with kill -9 on purpose
                killed = which == "crashed" and res.returncode == -9
                if (res.error and not killed) or wl not in res.figures:
                    self.templates[tkey] = f"preparing the {which} template failed: " + (
                        res.error or "no result")
                    return self.templates[tkey]
                open(path + ".ok", "w").close()
            self.templates[tkey] = path
        return self.templates[tkey]

    def run(self, engine: Engine, workload, rep: int, commits: int, max_secs: float,
            wrap: tuple = ()) -> Outcome:
        store_parent = os.path.join(self.cache, "run", f"{engine.name}-{workload.name}-{rep}")
        remove_path(store_parent)
        os.makedirs(store_parent)
        store = os.path.join(store_parent, "store" if engine.is_aerostore else "db.sqlite")
        try:
            if workload.template:
                tpl = self.template(engine, workload.template)
                if not os.path.exists(tpl):
                    return Outcome(error=tpl)
                if engine.is_aerostore:
                    shutil.copytree(tpl, store)
                elif dict(engine.params).get("mode") == "wal":
                    shutil.copyfile(tpl, store)
                    if os.path.exists(tpl + "-wal"):       # a crashed template's log
                        shutil.copyfile(tpl + "-wal", store + "-wal")
                else:
                    store = tpl      # :memory: restores from the template, read-only
            params = _params(engine, self.ds, store, self.batch, commits, max_secs)
            fp = engine_fingerprint(engine.kind)
            out = run_tcl(engine, workload.name, params, self.timeout, wrap)
            out.fingerprint = fp
            return out
        finally:
            remove_path(store_parent)


def remove_path(path: str):
    """Remove a file or a whole directory, if there."""
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)
