"""Tcl's conventions for arguments, in Python: option lookup with unique
prefixes, booleans, integers, list splitting, and the matching error messages.

The Tcl commands parse their options here (the C shim checks only subcommands
and argument counts), so messages read exactly like Tcl's own:
``bad option "-x": must be -a, -b, or -c``, ``ambiguous option "-l": ...``,
``expected integer but got "abc"``.  Lists, integers and booleans are read by
Tcl itself (Tcl_ListObjGetElements, Tcl_GetWideIntFromObj,
Tcl_GetBooleanFromObj, through helpers the shim installs), so they follow
Tcl's syntax exactly (``010`` is 8, ``2.0`` is true).  Every error is a
``UsageError`` (errorCode ``AEROSTORE USAGE ...``).
"""

from __future__ import annotations

from ..errors import UsageError
from ..words import fmt_choices, show

__all__ = ["choose", "option_value", "to_bool", "to_int", "split_list", "install_tcl_rules",
           "fmt_choices"]

_split = None           # text -> list of str, or ValueError
_get_int = None         # text -> int, or None
_get_boolean = None     # text -> bool, or None


def install_tcl_rules(split_list_fn, get_int_fn, get_boolean_fn) -> None:
    """Called once by the shim with Tcl's own readers of lists, integers and booleans."""
    global _split, _get_int, _get_boolean
    _split, _get_int, _get_boolean = split_list_fn, get_int_fn, get_boolean_fn


def split_list(text, what: str) -> list:
    """The elements of a Tcl list; ``what`` names the argument in the error."""
    if isinstance(text, int):
        return [str(text)]
    try:
        return _split(text)
    except ValueError:
        raise UsageError(f'bad {what} "{show(text)}": not a well-formed Tcl list',
                         "LIST", what.split()[0]) from None


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


def option_value(args, i: int, option: str):
    """The value of ``option``, the word after ``args[i]``; a UsageError if the
    option is the last word."""
    if i + 1 >= len(args):
        raise UsageError(f'"{option}" option requires an additional argument', "OPTION", option)
    return args[i + 1]


def to_bool(value, what: str) -> bool:
    """A boolean as Tcl_GetBooleanFromObj reads it: any number (non-zero is
    true), or true/false/yes/no/on/off or a unique prefix of one, any case."""
    if isinstance(value, int):
        return value != 0
    b = _get_boolean(str(value))
    if b is None:
        raise UsageError(f'expected boolean value but got "{show(value)}" for {what}',
                         "VALUE", what)
    return b


def to_int(value, what: str, minimum: int | None = None, rule: str = "") -> int:
    """An integer as Tcl_GetWideIntFromObj reads it (decimal, 0x.., 0o..,
    0b.., a leading 0 for octal; spaces around allowed), at least
    ``minimum``; ``rule`` describes the bound."""
    if isinstance(value, int):
        n = int(value)
    else:
        n = _get_int(str(value))
        if n is None:
            raise UsageError(f'expected integer but got "{show(value)}" for {what}',
                             "VALUE", what)
    if minimum is not None and n < minimum:
        raise UsageError(f'bad {what} "{n}": must be {rule or f"an integer >= {minimum}"}',
                         "VALUE", what)
    return n

