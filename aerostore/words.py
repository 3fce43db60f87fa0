"""Words and renderings that several layers share, each with its one home here.

* ``parse_bool``: the boolean words.  Tcl's rule is the reference: what
  ``Tcl_GetBooleanFromObj`` accepts (``expr``, ``if``, the search options).
  The file format (TSV, a ``Bool`` field's text) takes only its eight words.
* ``fmt_choices``: a list of choices in an error message, rendered as
  ``Tcl_GetIndexFromObj`` renders it (``a``, ``a or b``, ``a, b, or c``).
* ``show``: a value quoted in an error message, shortened and printable.

Only the engine's own rules live here.  The Tcl commands read their option
words and values with Tcl's C API in c_shim/ (``Tcl_GetIndexFromObjStruct``,
``Tcl_GetWideIntFromObj``, ``Tcl_GetBooleanFromObj``), so nothing here
re-implements Tcl for them; ``parse_bool(..., tcl=True)`` serves the engine,
which reads Tcl's words without a Tcl interpreter at hand (tests/test_query_oracle.py
checks it against Tcl's ``expr``).
"""

from __future__ import annotations

import re

__all__ = ["parse_bool", "BOOL_WORDS", "fmt_choices", "show"]

# The eight words of the file format (TSV, a Bool field's text), lower case,
# in the order the messages list them.
BOOL_WORDS = {"1": True, "0": False, "true": True, "false": False,
              "yes": True, "no": False, "on": True, "off": False}


def _unique_prefixes() -> dict:
    """Tcl's words and their unique prefixes, lower case: t, tr, ..., of, off, ye, ... (not o)."""
    words = {w: v for w, v in BOOL_WORDS.items() if not w.isdigit()}
    seen: dict = {}
    for w in words:
        for i in range(1, len(w) + 1):
            seen.setdefault(w[:i], set()).add(w)
    return {p: words[matches.pop()] for p, matches in seen.items() if len(matches) == 1}


_TCL_WORDS = _unique_prefixes()
# Tcl 8.6 numbers: 0x/0b/0o integers, a leading 0 is octal, decimals, floats,
# Inf (not NaN), spaces around allowed
_TCL_NUMBER = re.compile(
    r"\s*[+-]?(?:0x[0-9a-f]+|0b[01]+|0o[0-7]+|0[0-7]*|[1-9][0-9]*"
    r"|(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?|[0-9]+e[+-]?[0-9]+|inf(?:inity)?)\s*", re.IGNORECASE)


def parse_bool(value, *, tcl: bool = True):
    """The boolean ``value`` stands for: True, False, or None (not a boolean).

    Text, ``tcl=True`` (Tcl's rule, ``Tcl_GetBooleanFromObj``): ``true``
    ``false`` ``yes`` ``no`` ``on`` ``off`` in any letter case, or a unique
    prefix of one (``t``, ``ye``, ``of``; not ``o``), nothing around it; or
    any Tcl number, spaces around allowed, non-zero being true (``1``, ``2``,
    `` 0x0 ``, ``1e3``, ``010``; not ``08``, not NaN).

    Text, ``tcl=False`` (the file format's rule): exactly one of
    ``1 0 true false yes no on off`` (``BOOL_WORDS``), any letter case.

    Python values: a bool is itself, an int is true when non-zero; with
    ``tcl=True`` a float too (NaN is not a boolean); None and anything else
    is None.
    """
    if isinstance(value, str):
        w = value.lower()
        if not tcl:
            return BOOL_WORDS.get(w)
        b = _TCL_WORDS.get(w)
        if b is not None or not _TCL_NUMBER.fullmatch(w):
            return b
        t = w.strip().lstrip("+-")
        if t[:2] in ("0x", "0b", "0o"):
            return int(t[2:], {"x": 16, "b": 2, "o": 8}[t[1]]) != 0
        return float(t) != 0
    if isinstance(value, int):
        return value != 0
    if tcl and isinstance(value, float) and value == value:
        return value != 0
    return None


def fmt_choices(choices) -> str:
    """``a``, ``a or b``, ``a, b, or c``: Tcl_GetIndexFromObj's way of listing choices."""
    choices = list(choices)
    if len(choices) == 1:
        return choices[0]
    if len(choices) == 2:
        return f"{choices[0]} or {choices[1]}"
    return ", ".join(choices[:-1]) + ", or " + choices[-1]


def show(value) -> str:
    """A value for an error message: shortened to 60 characters (57 and
    ``...``), unprintable characters (control characters, lone surrogates)
    escaped, so the message itself can always be printed and encoded.

    (The C shim's own messages shorten with Tcl's ``Tcl_AppendLimitedToObj``
    to the same 60/57, counted in bytes there.)
    """
    s = value if isinstance(value, str) else str(value)
    s = s if len(s) <= 60 else s[:57] + "..."
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in s)
