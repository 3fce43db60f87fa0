"""Tcl's conventions for arguments, in Python: option lookup with unique
prefixes, booleans, integers, list splitting, and the matching error messages.

The Tcl commands parse their options here (the C shim checks only subcommands
and argument counts), so messages read exactly like Tcl's own:
``bad option "-x": must be -a, -b, or -c``, ``ambiguous option "-l": ...``,
``expected integer but got "abc"``.  Every error is a ``UsageError``
(errorCode ``AEROSTORE USAGE ...``).
"""

from __future__ import annotations

from ..errors import UsageError

__all__ = ["choose", "to_bool", "to_int", "split_list", "install_split_list", "fmt_choices"]

_split = None


def install_split_list(fn) -> None:
    """Called once by the shim: ``fn(str) -> list`` parses Tcl list syntax with Tcl itself."""
    global _split
    _split = fn


def split_list(text, what: str) -> list:
    """The elements of a Tcl list; ``what`` names the argument in the error."""
    if isinstance(text, (int, float)):
        return [str(text)]
    try:
        return _split(text)
    except ValueError:
        raise UsageError(f'bad {what} "{_short(text)}": not a well-formed Tcl list',
                         "LIST", what.split()[0]) from None


def fmt_choices(choices) -> str:
    """``a, b, or c`` -- Tcl_GetIndexFromObj's way of listing choices."""
    choices = list(choices)
    if len(choices) == 1:
        return choices[0]
    if len(choices) == 2:
        return f"{choices[0]} or {choices[1]}"
    return ", ".join(choices[:-1]) + ", or " + choices[-1]


def choose(word, choices, what: str, *, exact: bool = False) -> str:
    """The choice ``word`` names: an exact match, else (unless ``exact``) a
    unique prefix, as Tcl_GetIndexFromObj allows."""
    word = str(word)
    if word in choices:
        return word
    if not exact and word:
        hits = [c for c in choices if c.startswith(word)]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise UsageError(f'ambiguous {what} "{word}": must be {fmt_choices(choices)}',
                             what.upper(), word)
    raise UsageError(f'bad {what} "{word}": must be {fmt_choices(choices)}', what.upper(), word)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def to_bool(value, what: str) -> bool:
    """Tcl_GetBoolean: integers (non-zero true), and true/false/yes/no/on/off
    or a unique prefix of one of them, any case."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    s = str(value).strip().lower()
    try:
        return int(s, 0) != 0
    except ValueError:
        pass
    if s:
        for word in ("true", "yes"):
            if word.startswith(s):
                return True
        if "false".startswith(s) or "no".startswith(s):
            return False
        if len(s) >= 2 and "on".startswith(s):
            return True
        if len(s) >= 2 and "off".startswith(s):
            return False
    raise UsageError(f'expected boolean value but got "{_short(value)}" for {what}',
                     "VALUE", what)


def to_int(value, what: str, minimum: int | None = None, rule: str = "") -> int:
    """An integer in Tcl's syntax (decimal, 0x.., 0o.., 0b..; surrounding
    spaces allowed), at least ``minimum``; ``rule`` describes the bound."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        n = value
    else:
        s = str(value).strip()
        try:
            n = int(s, 10) if "_" not in s else None
        except ValueError:
            try:
                n = int(s, 0) if "_" not in s else None
            except ValueError:
                n = None
        if n is None:
            raise UsageError(f'expected integer but got "{_short(value)}" for {what}',
                             "VALUE", what)
    if minimum is not None and n < minimum:
        raise UsageError(f'bad {what} "{n}": must be {rule or f"an integer >= {minimum}"}',
                         "VALUE", what)
    return n


def _short(value) -> str:
    s = str(value)
    return s if len(s) <= 60 else s[:57] + "..."
