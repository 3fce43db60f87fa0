"""Tcl's list syntax for the Python side of the Tcl commands.

The shim reads everything else of Tcl's syntax in C with Tcl's own API
(c_shim/options.c): subcommand and option words (Tcl_GetIndexFromObjStruct:
unique prefixes, Tcl's messages), integer and boolean option values
(Tcl_GetWideIntFromObj, Tcl_GetBooleanFromObj).  What reaches Python as text
and holds a list -- a ``-compare`` list and its terms, ``-sort``, ``-fields``,
an ``in`` list, a callback -- is split here by Tcl_ListObjGetElements, through
a helper the shim installs.  Errors are ``UsageError`` (errorCode
``AEROSTORE USAGE LIST ...``).
"""

from __future__ import annotations

from ..errors import UsageError
from ..words import show

__all__ = ["split_list", "install_tcl_rules"]

_split = None           # text -> list of str, or ValueError


def install_tcl_rules(split_list_fn) -> None:
    """Called once by the shim with Tcl's own reader of lists."""
    global _split
    _split = split_list_fn


def split_list(text, what: str) -> list:
    """The elements of a Tcl list; ``what`` names the argument in the error."""
    if isinstance(text, int):
        return [str(text)]
    try:
        return _split(text)
    except ValueError:
        raise UsageError(f'bad {what} "{show(text)}": not a well-formed Tcl list',
                         "LIST", what.split()[0]) from None
