"""The GIL switch interval: how long a thread keeps the GIL while another waits.

CPython makes a thread that holds the GIL hand it over once another thread has
waited ``sys.getswitchinterval()`` seconds: 5 ms by default.  Aerostore's
queries take 10-500 us and a feed's commit a few ms of Python; with the
default, a reader that arrives while the feed (or another reader) runs waits up
to 5 ms for the GIL, whatever its own cost: the reader p99s of the live-feed
benchmark sat at 4-5 ms at every feed rate.  At 0.5 ms that wait is bounded by
0.5 ms.

The cost: a forced hand-over is a few microseconds of mutex and condition
variable work, paid only while threads contend for the GIL, so CPU-bound
threads that contend lose about 1% of their throughput; a single-threaded
program pays nothing.

``adopt()`` runs when a database opens.  It changes the interval only while it
is still CPython's default, so a host program that set its own keeps it.
"""

from __future__ import annotations

import sys

__all__ = ["INTERVAL", "adopt"]

INTERVAL = 0.0005            # seconds
_CPYTHON_DEFAULT = 0.005


def adopt() -> None:
    """Set the switch interval to ``INTERVAL`` unless the host chose another than CPython's."""
    if abs(sys.getswitchinterval() - _CPYTHON_DEFAULT) < 1e-9:
        sys.setswitchinterval(INTERVAL)
