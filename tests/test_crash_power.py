"""Power loss, simulated: the process dies right before an fdatasync of the log, and
the group it had written (never synced) is then damaged the ways a power cut can
damage unsynced data: cut short at any point, sectors zeroed in any pattern, or
kept whole.  Recovery must open, keep every commit of the synced frames (which
include every acknowledged one), and keep the unsynced group whole or not at all.
"""

import os
import random
import threading

import pytest

from aerostore.config import Config
from aerostore.storage import DirectoryStorage, fileio, walformat, walscan

DIED_BEFORE_SYNC = 43


class DieAtSync(fileio.FileIO):
    """Ends the process instead of the n-th fdatasync (the write before it is done)."""

    def __init__(self, n):
        self.n = n

    def fdatasync(self, fd):
        self.n -= 1
        if self.n == 0:
            os._exit(DIED_BEFORE_SYNC)
        super().fdatasync(fd)


def child(d, n_sync, ack_fd):
    s = DirectoryStorage(d, Config(), io=DieAtSync(n_sync))
    s.recover()
    lock = threading.Lock()
    csn = [0]

    def committer(k):
        for i in range(10000):
            with lock:
                csn[0] += 1
                c = csn[0]
                t = s.log(c, [("put", "T", f"k{c}", (f"k{c}", "x" * (c % 700)))])
            t.wait()
            os.write(ack_fd, f"{c}\n".encode())

    threads = [threading.Thread(target=committer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os._exit(0)


def damage(path, start, rng):
    """Damage bytes [start, end of file) like a power cut may; returns what it did."""
    size = os.path.getsize(path)
    how = rng.choice(["cut", "zero", "keep"])
    with open(path, "r+b") as f:
        if how == "cut":
            f.truncate(rng.randrange(start, size + 1))
        elif how == "zero":
            sectors = range(start // 512, (size + 511) // 512)
            for sector in rng.sample(list(sectors), rng.randrange(1, len(sectors) + 1)):
                lo, hi = max(sector * 512, start), min(sector * 512 + 512, size)
                f.seek(lo)
                f.write(b"\0" * (hi - lo))
    return how


@pytest.mark.parametrize("seed", range(12))
def test_power_loss_during_a_group_write(tmp_path, seed):
    rng = random.Random(seed)
    d = str(tmp_path / "db")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            child(d, rng.randrange(5, 120), w)
        finally:
            os._exit(3)
    os.close(w)
    with os.fdopen(r) as f:
        acked = [int(x) for x in f.read().split()]
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == DIED_BEFORE_SYNC
    path = os.path.join(d, "wal.log")
    wscan = walscan.scan(path)
    assert wscan.torn == 0  # a killed process leaves whole writes
    synced_end = wscan.frame_ends[-2] if len(wscan.frame_ends) > 1 else walformat.HEADER_SIZE
    synced_last = wscan.frame_last[-2] if len(wscan.frame_last) > 1 else 0
    unsynced = list(range(synced_last + 1, wscan.frame_last[-1] + 1))
    how = damage(path, synced_end, rng)
    s = DirectoryStorage(d, Config())
    rec = s.recover()
    got = [c for c, _ in rec.records]
    s.close()
    assert got[:synced_last] == list(range(1, synced_last + 1)), how
    assert got[synced_last:] in ([], unsynced), how
    assert set(acked) <= set(got)
