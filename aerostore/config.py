"""Settings of a database, with their durability trade-offs and valid ranges.

| key | default | range | meaning |
|---|---|---|---|
| aerostore.synchronous_commit | on | on, off (any Tcl boolean: true/false, yes/no, 1/0, ...) | on: a modifying call returns only after its WAL record is on disk (fdatasync); concurrent committers share one flush (group commit). off: the call returns at once and the WAL writer flushes within ``aerostore.wal_flush_delay_ms``; a crash may lose that window of acknowledged work, never part of a transaction, and never corrupts the store. |
| aerostore.checkpoint_interval_secs | 300 | 0 to 86400 (a day) | seconds between automatic checkpoints (0 = never). A checkpoint bounds recovery time and the WAL's size. |
| aerostore.ttl_secs | 0 | 0 to 3153600000 (100 years) | rows whose ``now - updated_at`` exceeds this are deleted by the sweeper (0 = off). |
| aerostore.ttl_sweep_interval_ms | 1000 | 0 to 86400000 (a day) | how often the TTL sweeper runs (0 = off). |
| aerostore.wal_flush_delay_ms | 10 | 0 to 60000 (a minute) | with synchronous_commit off: the longest an acknowledged commit waits before its flush, i.e. the window a crash may lose. |
| aerostore.readers_wait_for_writers | on | on, off (any Tcl boolean) | on: a query (but an index-only count or a key lookup) first waits for a writer section already running, so a live feed keeps its rate; off: queries never wait for writers, reader latencies drop and the feed gets a smaller share of the GIL (1M rows, 2 Tcl readers: feed 20,000 against 14,300 rows/s; top-50 p99 11.4 against 5.3 ms; docs/decisions.md).  No effect on durability or on what a query returns. |

Values are validated on ``set``; a bad one raises ``UsageError`` (code
``AEROSTORE USAGE CONFIG key``, message ``expected an integer from 0 to N``) and
changes nothing.  Why bounded: the background threads sleep for these
intervals, and a wait beyond what the clock can represent would kill them; a
limit far past any useful value costs nothing and keeps every thread safe.
"""

from __future__ import annotations

from .errors import UsageError
from .words import fmt_choices, parse_bool

__all__ = ["Config", "DEFAULTS"]


def _bool(v):
    """A setting's boolean: Tcl's rule (words.parse_bool), since aerostore::set_config
    takes it from Tcl: on/off, true/false, yes/no in any case or a unique
    prefix (``of``), or any number (non-zero is on)."""
    b = parse_bool(v if isinstance(v, (str, int, float)) else str(v))
    if b is None:
        raise ValueError
    return b


def _int_range(lo: int, hi: int):
    """A parser of decimal integers from ``lo`` to ``hi`` (bools refused)."""
    def parse(v):
        if isinstance(v, bool):
            raise ValueError
        i = int(v) if isinstance(v, int) else int(str(v).strip(), 10)
        if not lo <= i <= hi:
            raise ValueError
        return i
    return parse


def _int_spec(default: int, hi: int) -> tuple:
    return (default, _int_range(0, hi), str, f"expected an integer from 0 to {hi}")


def _fmt_bool(v):
    return "on" if v else "off"


# key -> (default, parser, formatter, what a bad value's message says)
_SPECS = {
    "aerostore.synchronous_commit": (True, _bool, _fmt_bool, "must be on or off"),
    "aerostore.checkpoint_interval_secs": _int_spec(300, 86400),
    "aerostore.ttl_secs": _int_spec(0, 3153600000),
    "aerostore.ttl_sweep_interval_ms": _int_spec(1000, 86400000),
    "aerostore.wal_flush_delay_ms": _int_spec(10, 60000),
    "aerostore.readers_wait_for_writers": (True, _bool, _fmt_bool, "must be on or off"),
}

DEFAULTS = {k: v[0] for k, v in _SPECS.items()}


class Config:
    """Typed settings with change listeners (background threads re-read on change)."""

    def __init__(self, **overrides):
        self._values = dict(DEFAULTS)
        self._listeners = []
        for k, v in overrides.items():
            self.set(k if k.startswith("aerostore.") else "aerostore." + k, v)

    @staticmethod
    def keys():
        return list(_SPECS)

    def _spec(self, key):
        try:
            return _SPECS[key]
        except KeyError:
            raise UsageError(f'bad config key "{key}": must be {fmt_choices(_SPECS)}',
                             "CONFIG", str(key)) from None

    def set(self, key: str, value) -> None:
        _, parse, _, what = self._spec(key)
        try:
            v = parse(value)
        except (ValueError, TypeError):
            raise UsageError(f'bad value "{value}" for {key}: {what}', "CONFIG", key) from None
        self._values[key] = v
        for fn in list(self._listeners):
            fn(key, v)

    def get(self, key: str):
        """The typed value (bool or int)."""
        self._spec(key)
        return self._values[key]

    def get_text(self, key: str) -> str:
        """The value as Tcl shows it (on/off for booleans)."""
        return self._spec(key)[2](self._values[key])

    def __getitem__(self, key):
        return self.get(key)

    def on_change(self, fn) -> None:
        self._listeners.append(fn)
