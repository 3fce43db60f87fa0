"""Settings of a database, with their durability trade-offs.

| key | default | meaning |
|---|---|---|
| aerostore.synchronous_commit | on | on: a modifying call returns only after its WAL record is on disk (fdatasync); concurrent committers share one flush (group commit). off: the call returns at once and the WAL writer flushes within ``aerostore.wal_flush_delay_ms``; a crash may lose that window of acknowledged work, never part of a transaction, and never corrupts the store. |
| aerostore.checkpoint_interval_secs | 300 | seconds between automatic checkpoints (0 = never). A checkpoint bounds recovery time and the WAL's size. |
| aerostore.ttl_secs | 0 | rows whose ``now - updated_at`` exceeds this are deleted by the sweeper (0 = off). |
| aerostore.ttl_sweep_interval_ms | 1000 | how often the TTL sweeper runs. |
| aerostore.wal_flush_delay_ms | 10 | with synchronous_commit off: the longest an acknowledged commit waits before its flush. |

Values are validated on ``set``; a bad one raises ``UsageError`` and changes nothing.
"""

from __future__ import annotations

from .errors import UsageError

__all__ = ["Config", "DEFAULTS"]


def _bool(v):
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("on", "1", "true", "yes"):
        return True
    if s in ("off", "0", "false", "no"):
        return False
    raise ValueError("must be on or off")


def _nonneg_int(v):
    if isinstance(v, bool):
        raise ValueError
    i = int(v) if isinstance(v, int) else int(str(v).strip(), 10)
    if i < 0:
        raise ValueError("must be >= 0")
    return i


def _fmt_bool(v):
    return "on" if v else "off"


# key -> (default, parser, formatter, description of valid values)
_SPECS = {
    "aerostore.synchronous_commit": (True, _bool, _fmt_bool, "on or off"),
    "aerostore.checkpoint_interval_secs": (300, _nonneg_int, str, "an integer >= 0"),
    "aerostore.ttl_secs": (0, _nonneg_int, str, "an integer >= 0"),
    "aerostore.ttl_sweep_interval_ms": (1000, _nonneg_int, str, "an integer >= 0"),
    "aerostore.wal_flush_delay_ms": (10, _nonneg_int, str, "an integer >= 0"),
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
            from .schema import _fmt_choices
            raise UsageError(f'bad config key "{key}": must be {_fmt_choices(list(_SPECS))}',
                             "CONFIG", str(key)) from None

    def set(self, key: str, value) -> None:
        _, parse, _, what = self._spec(key)
        try:
            v = parse(value)
        except (ValueError, TypeError):
            raise UsageError(f'bad value "{value}" for {key}: must be {what}', "CONFIG", key) from None
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
