"""A throwaway PostgreSQL cluster for the live-feed benchmark (bench/live.py).

``Cluster`` initialises a new cluster in a temporary directory (under the
bench cache, on the same disk as the repository, so fsync costs what it
costs), starts it on 127.0.0.1 on a free port with its Unix socket in the same
directory, loads the data set with COPY, and stops and removes it afterwards:
``stop()`` is idempotent and is called from ``finally`` blocks, from an atexit
hook, and on SIGTERM/SIGHUP through bench/live.py.  A cluster left behind by a
driver that was killed (-9) is stopped and removed by the next run: every
cluster directory records the pid of the driver that made it.

The server runs as the ``postgres`` user when the bench runs as root
(``runuser -u postgres --``; PostgreSQL refuses to run as root), as the current
user otherwise.  Authentication is ``trust`` (the cluster listens on 127.0.0.1
and a private socket directory only, and lives for one run).

The server keeps its defaults (shared_buffers 128 MB, fsync on,
synchronous_commit on, autovacuum on): the bench does not tune PostgreSQL, as it
does not tune SQLite, beyond what starting a private cluster needs.
"""
from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from engines import tcl_eval

PG_USER = "postgres"

SCHEMA = """
CREATE TABLE flights(
    flight_id  text PRIMARY KEY,
    lat        double precision,
    lon        double precision,
    altitude   integer,
    gs         integer,
    updated_at bigint);
"""

INDEXES = """
CREATE INDEX flights_altitude   ON flights(altitude);
CREATE INDEX flights_gs         ON flights(gs);
CREATE INDEX flights_lat        ON flights(lat);
CREATE INDEX flights_lon        ON flights(lon);
CREATE INDEX flights_updated_at ON flights(updated_at);
"""


def find_bindir() -> str | None:
    """PostgreSQL's server binaries: $AEROSTORE_PG_BIN, version 15 under
    /usr/lib/postgresql, any other version there (newest first), or $PATH."""
    cands = [os.environ.get("AEROSTORE_PG_BIN", ""), "/usr/lib/postgresql/15/bin"]
    cands += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for d in cands:
        if d and all(os.access(os.path.join(d, x), os.X_OK)
                     for x in ("initdb", "pg_ctl", "postgres", "psql")):
            return d
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl") and shutil.which("psql"):
        return os.path.dirname(initdb)
    return None


def available() -> tuple:
    """-> (None, version text) if the cluster can run and Pgtcl loads in tclsh,
    else (reason, "")."""
    bindir = find_bindir()
    if not bindir:
        return "PostgreSQL server binaries not found (initdb, pg_ctl in /usr/lib/postgresql/*/bin)", ""
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return f"running as root and there is no '{PG_USER}' user to run the server as", ""
        if not shutil.which("runuser"):
            return "running as root and runuser is missing", ""
    ok, text = tcl_eval("puts [package require Pgtcl]")
    if not ok:
        detail = " / ".join(text if isinstance(text, list) else [text])
        return f"Pgtcl does not load in tclsh (apt-get install libpgtcl): {detail}", ""
    try:
        ver = subprocess.run([os.path.join(bindir, "postgres"), "--version"], capture_output=True,
                             text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"postgres --version failed: {e}", ""
    return None, f"{ver}, Pgtcl {text}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Cluster:
    """One private cluster: start(), load(), conninfo, stop()."""

    PREFIX = "pg-live-"

    def __init__(self, parent: str, log=lambda msg: None):
        self.parent = parent
        self.log = log
        self.bindir = find_bindir()
        self.dir = None
        self.port = None
        self.running = False
        self.as_postgres = os.geteuid() == 0

    # -- helpers ---------------------------------------------------------------
    def _as_user(self, cmd):
        return (["runuser", "-u", PG_USER, "--"] + cmd) if self.as_postgres else cmd

    def _run(self, cmd, timeout=300, check=True):
        p = subprocess.run(self._as_user(cmd), capture_output=True, text=True, timeout=timeout,
                           cwd=self.dir or "/")
        if check and p.returncode != 0:
            raise RuntimeError(f"{os.path.basename(cmd[0])} failed ({p.returncode}): "
                               + (p.stderr.strip() or p.stdout.strip())[-2000:])
        return p

    @property
    def data(self):
        return os.path.join(self.dir, "data")

    @property
    def conninfo(self) -> str:
        return f"host={self.dir} port={self.port} user={PG_USER} dbname=postgres"

    def psql(self, script: str, timeout=3600):
        """Run SQL (and psql meta-commands such as \\copy) as the client, over
        the socket; stop at the first error."""
        p = subprocess.run([os.path.join(self.bindir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                            "-h", self.dir, "-p", str(self.port), "-U", PG_USER, "-d", "postgres"],
                           input=script, capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError("psql failed: " + (p.stderr.strip() or p.stdout.strip())[-2000:])
        return p.stdout

    # -- life cycle --------------------------------------------------------------
    def reap_stale(self):
        """Stop and remove clusters whose driver process is gone (killed -9)."""
        for d in glob.glob(os.path.join(self.parent, self.PREFIX + "*")):
            try:
                with open(os.path.join(d, "driver.pid")) as f:
                    pid = int(f.read().strip())
            except (OSError, ValueError):
                pid = None
            if pid is not None and _pid_alive(pid):
                continue                      # another bench run's cluster
            self.log(f"postgres: removing a cluster left behind by a killed run: {d}")
            if os.path.exists(os.path.join(d, "data", "postmaster.pid")):
                subprocess.run(self._as_user([os.path.join(self.bindir, "pg_ctl"), "-D",
                                              os.path.join(d, "data"), "-m", "immediate", "-w",
                                              "-t", "30", "stop"]),
                               capture_output=True, timeout=60)
            shutil.rmtree(d, ignore_errors=True)

    def start(self):
        os.makedirs(self.parent, exist_ok=True)
        self.reap_stale()
        self.dir = tempfile.mkdtemp(prefix=self.PREFIX, dir=self.parent)
        with open(os.path.join(self.dir, "driver.pid"), "w") as f:
            f.write(str(os.getpid()))
        atexit.register(self.stop)
        if self.as_postgres:
            pw = pwd.getpwnam(PG_USER)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o700)
        self._run([os.path.join(self.bindir, "initdb"), "-D", self.data, "-A", "trust",
                   "-U", PG_USER, "-E", "UTF8", "--no-sync"])
        # a free port can be taken between probing and binding: try a few
        last = None
        for _ in range(5):
            self.port = _free_port()
            opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
            p = self._run([os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l",
                           os.path.join(self.dir, "server.log"), "-w", "-t", "120", "-o", opts,
                           "start"], check=False, timeout=180)
            if p.returncode == 0:
                self.running = True
                self.log(f"postgres: cluster on 127.0.0.1:{self.port}, socket and data in {self.dir}")
                return self
            last = p.stderr.strip() or p.stdout.strip()
        raise RuntimeError("pg_ctl start failed: " + (last or "")[-2000:] + self.server_log_tail())

    def server_log_tail(self, n=20) -> str:
        try:
            with open(os.path.join(self.dir, "server.log")) as f:
                return "\n" + "".join(f.readlines()[-n:])
        except (OSError, TypeError):
            return ""

    def load(self, flights_tsv: str) -> float:
        """Create the table, COPY every row, build the indexes, VACUUM ANALYZE
        (visibility map for index-only counts, statistics for the planner) and
        checkpoint: untimed preparation.  -> seconds."""
        t0 = time.monotonic()
        self.psql(SCHEMA + f"\\copy flights FROM '{flights_tsv}'\n" + INDEXES
                  + "VACUUM ANALYZE flights;\nCHECKPOINT;\n")
        return time.monotonic() - t0

    def stop(self):
        """Stop the server and remove the directory; safe to call again."""
        if self.dir is None:
            return
        d, self.dir = self.dir, None
        try:
            if os.path.exists(os.path.join(d, "data", "postmaster.pid")):
                pg_ctl = os.path.join(self.bindir, "pg_ctl")
                for mode in ("fast", "immediate"):
                    p = subprocess.run(self._as_user([pg_ctl, "-D", os.path.join(d, "data"),
                                                      "-m", mode, "-w", "-t", "60", "stop"]),
                                       capture_output=True, text=True, timeout=90)
                    if p.returncode == 0:
                        break
                else:
                    self._kill_postmaster(d)
        except (OSError, subprocess.TimeoutExpired):
            self._kill_postmaster(d)
        finally:
            self.running = False
            shutil.rmtree(d, ignore_errors=True)
            try:
                atexit.unregister(self.stop)
            except Exception:       # noqa: BLE001 - interpreter shutting down
                pass

    @staticmethod
    def _kill_postmaster(d):
        """Last resort: SIGKILL the postmaster this cluster started (its pid is
        the first line of postmaster.pid); its backends exit with it."""
        try:
            with open(os.path.join(d, "data", "postmaster.pid")) as f:
                pid = int(f.readline().strip())
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
