"""Table declarations: typed fields, one key, aliases, default indexes.

A table is declared once, as a class whose attributes are fields::

    @aerostore.table(indexes=("altitude", "lat"))
    class Trade:
        symbol = aerostore.Key(aliases=("sym",))
        price = aerostore.Float()
        qty = aerostore.Int(bits=32)

Rows are plain tuples in field order (key included at ``schema.key_pos``); no
dict per row.  The schema converts user values (Python values, or strings from
Tcl and TSV) to the field's type and rejects what does not fit with a
``UsageError`` that names the field.  ``to_dict``/``from_dict`` describe a schema
as plain data, which is how the WAL and checkpoints persist it.

Rules every entry point shares, each with one home here:

* text (a key, a Str value, a query value) is a Python ``str`` without lone
  surrogates (``surrogate_at``): UTF-8 cannot encode them, so a row holding one
  could not be written to a TSV file; Python ints and finite floats are taken
  as their text, since that is how the Tcl bridge passes Tcl's pure numbers;
  anything else (bytes, lists, None for the key) is refused, never ``str()``'d;
* ``""`` in a non-key field is null (Tcl and TSV have no other spelling of it),
  so a Str field cannot hold the empty string;
* integers are stored in 64 bits (the WAL and checkpoints use msgpack ints), so
  an ``Int``/``UInt`` field's range must lie within ``INT_MIN .. INT_MAX``
  (-2^63 .. 2^64-1): checked when the field is declared;
* only ``Int``/``UInt`` fields take ``lo``/``hi`` bounds.

The boolean words, the listing of choices in messages and the shortening of
values in messages have their home in words.py (``show`` is re-exported here).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Iterable

from .errors import UsageError
from .words import BOOL_WORDS, fmt_choices, parse_bool, show

__all__ = ["Field", "Key", "Int", "UInt", "Float", "Str", "Bool", "Schema", "table",
           "surrogate_at", "as_text", "show", "INT_MIN", "INT_MAX"]

_TEXT_FORBIDDEN = ("\t", "\r", "\n")

# The widest integers a field may hold: msgpack (WAL, checkpoints) stores ints
# as int64 or uint64.
INT_MIN = -(1 << 63)
INT_MAX = (1 << 64) - 1


def surrogate_at(s: str) -> int:
    """Index of the first lone surrogate (U+D800..U+DFFF) in ``s``, or -1.

    Such a code point has no UTF-8 encoding, so a value holding one could be
    stored but never exported; every entry point refuses it (TSV decoding
    reports "invalid Unicode (lone surrogate)").  ``isascii`` is O(1), so
    ASCII text, nearly all of it, costs no scan.
    """
    if s.isascii():
        return -1
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start
    return -1


def as_text(value: Any, name: str, *code, what: str = "field") -> str:
    """``value`` as text, by the rule every text entry point shares (Str fields,
    keys, query values and match patterns), or UsageError(``code``).

    A ``str`` without lone surrogates (see ``surrogate_at``).  Python ints and
    finite floats are taken as their text: the Tcl bridge passes Tcl's pure
    numbers (``[expr {40+2}]``) that way.  Anything else (bytes, a list, a
    bool) is refused rather than ``str()``'d into ``"b'xy'"`` or ``"[1, 2]"``.
    The message names the target as ``{what} "{name}"``: ``field "venue"``.
    """
    if value.__class__ is not str:
        if isinstance(value, str):
            value = str(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        elif isinstance(value, float) and math.isfinite(value):
            value = repr(value)
        else:
            raise UsageError(f'bad value of type {type(value).__name__} for {what} "{name}": '
                             "expected a string", *code)
    if not value.isascii() and surrogate_at(value) >= 0:
        raise UsageError(f'bad value "{show(value)}" for {what} "{name}": invalid Unicode '
                         "(lone surrogate)", *code)
    return value


class Field:
    """One column.  ``kind`` is 'int', 'float', 'str' or 'bool'.

    ``lo``/``hi`` bound integers (inclusive; only ``Int``/``UInt`` take them).
    ``index`` asks for a secondary index by default.  ``nullable=False`` refuses
    null (and so ``""``, which is null).  The key field is never null.
    """

    kind = "str"

    def __init__(self, *, aliases: Iterable[str] = (), index: bool = False,
                 nullable: bool = True, lo: int | None = None, hi: int | None = None):
        if self.kind != "int" and (lo is not None or hi is not None):
            raise UsageError(f"{type(self).__name__}(lo=..., hi=...): only Int and UInt fields "
                             "take bounds; check the value where it is set instead", "SCHEMA")
        self.name = ""
        self.aliases = tuple(aliases)
        self.index = index
        self.nullable = nullable
        self.lo = lo
        self.hi = hi
        self.is_key = False

    # -- conversion --------------------------------------------------------
    def coerce(self, value: Any) -> Any:
        """Convert a Python value or a string to this field's type, or raise UsageError.

        ``""`` (and None) is null in every field but the key.
        """
        # the common cases first, without the general checks: an int (not a bool)
        # for an int field, a float for a float field
        cls = value.__class__
        kind = self.kind
        if cls is int and kind == "int":
            if (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi):
                return value
        elif cls is float and kind == "float":
            if value - value == 0.0:        # finite (inf - inf and nan - nan are nan)
                return value + 0.0          # -0.0 -> 0.0: one index position for zero
        if value is None or (isinstance(value, str) and value == "" and not self.is_key):
            if not self.nullable:
                raise UsageError(f'field "{self.name}" may not be null', "VALUE", self.name)
            return None
        if kind == "str":
            return self._text(value)
        try:
            if kind == "int":
                if isinstance(value, bool):
                    value = int(value)
                elif not isinstance(value, int):
                    if isinstance(value, float):
                        if not value.is_integer():
                            raise ValueError
                        value = int(value)
                    else:
                        s = str(value)
                        if "_" in s or s != s.strip():
                            raise ValueError
                        value = int(s, 10)
                if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
                    raise ValueError
                return value
            if kind == "float":
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    value = float(value)
                else:
                    s = str(value)
                    if "_" in s or s != s.strip():
                        raise ValueError
                    value = float(s)
                if not math.isfinite(value):
                    raise ValueError
                return value + 0.0  # -0.0 -> 0.0: one index position for zero
            if kind == "bool":
                # the file format's words (spaces around allowed here): text is looked
                # up in words.BOOL_WORDS directly (what parse_bool(tcl=False) does, less
                # a call); an int is its truth
                if value.__class__ is str:
                    b = BOOL_WORDS.get(value.strip().lower())
                else:
                    b = parse_bool(value, tcl=False)
                if b is not None:
                    return b
            raise ValueError
        except (ValueError, TypeError, OverflowError):
            raise UsageError(f'bad value "{show(value)}" for field "{self.name}": expected {self.describe()}',
                             "VALUE", self.name) from None

    def _text(self, value: Any) -> str:
        """A str field's value: ``as_text``, without tab, CR or LF; the key non-empty."""
        if value.__class__ is not str or (not value.isascii() and surrogate_at(value) >= 0):
            value = as_text(value, self.name, "VALUE", self.name)   # converts, or raises
        for ch in _TEXT_FORBIDDEN:
            if ch in value:
                raise UsageError(f'bad value for field "{self.name}": tab, CR and LF are not allowed',
                                 "VALUE", self.name)
        if self.is_key and not value:
            raise UsageError(f'bad value for field "{self.name}": the key may not be empty',
                             "VALUE", self.name)
        return value

    def describe(self) -> str:
        if self.kind == "int":
            return f"an integer from {self.lo} to {self.hi}"
        if self.kind == "float":
            return "a finite number"
        if self.kind == "bool":
            return "a boolean"
        return "a string"

    def to_text(self, value: Any) -> str:
        """The TSV / Tcl text of a value ('' for null); floats round-trip exactly."""
        if value is None:
            return ""
        if self.kind == "float":
            return repr(value)
        if self.kind == "bool":
            return "1" if value else "0"
        return str(value)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "aliases": list(self.aliases),
                "index": self.index, "nullable": self.nullable, "lo": self.lo, "hi": self.hi,
                "key": self.is_key}

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"


class Str(Field):
    """Text without tab, CR, LF or lone surrogates.  ``""`` is null, as in Tcl
    and TSV: a Str field cannot hold the empty string."""

    kind = "str"


class Key(Str):
    """The key field: a non-empty string without tab, CR or LF; looked up by hash."""

    def __init__(self, *, aliases: Iterable[str] = ()):
        super().__init__(aliases=aliases, nullable=False)
        self.is_key = True


def _bound(v, what: str, cls: str) -> int:
    """A declared integer bound: an int within INT_MIN..INT_MAX, else UsageError."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise UsageError(f"{cls}({what}={v!r}): expected an integer", "SCHEMA")
    if not INT_MIN <= v <= INT_MAX:
        raise UsageError(f"{cls}({what}={v}): integer fields are stored in 64 bits and hold "
                         f"values from {INT_MIN} to {INT_MAX} (Int(bits=64) or UInt(bits=64) at most)",
                         "SCHEMA")
    return v


def _bits(bits, cls: str) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 64:
        raise UsageError(f"{cls}(bits={bits!r}): expected 1 to 64 bits (integer fields are "
                         "stored in 64 bits)", "SCHEMA")
    return bits


class Int(Field):
    """Signed integer of ``bits`` bits (1..64, default 64), or explicit ``lo``/``hi``.

    The range must lie within -2^63 .. 2^64-1 (``INT_MIN``/``INT_MAX``), what the
    WAL and checkpoints store; wider fields are refused here, when the table is
    declared, not at ``create_table`` on disk.
    """

    kind = "int"

    def __init__(self, *, bits: int = 64, lo: int | None = None, hi: int | None = None, **kw):
        cls = type(self).__name__
        bits = _bits(bits, cls)
        lo = -(1 << (bits - 1)) if lo is None else _bound(lo, "lo", cls)
        hi = (1 << (bits - 1)) - 1 if hi is None else _bound(hi, "hi", cls)
        if lo > hi:
            raise UsageError(f"{cls}(lo={lo}, hi={hi}): lo must not be above hi", "SCHEMA")
        super().__init__(lo=lo, hi=hi, **kw)


class UInt(Int):
    """Unsigned integer of ``bits`` bits (1..64): 0 .. 2^bits-1, or explicit
    ``lo``/``hi`` (not below 0)."""

    def __init__(self, *, bits: int = 64, lo: int | None = None, hi: int | None = None, **kw):
        cls = type(self).__name__
        bits = _bits(bits, cls)
        lo = 0 if lo is None else _bound(lo, "lo", cls)
        if lo < 0:
            raise UsageError(f"{cls}(lo={lo}): an unsigned field starts at 0 or above; "
                             "use Int for negative values", "SCHEMA")
        super().__init__(bits=64, lo=lo, hi=(1 << bits) - 1 if hi is None else hi, **kw)


class Float(Field):
    """IEEE double; must be finite.  -0.0 is stored as 0.0.  No bounds."""

    kind = "float"


class Bool(Field):
    kind = "bool"


_KINDS = {"int": Int, "float": Float, "str": Str, "bool": Bool}


class Schema:
    """The shape of one table: ordered fields, key position, name lookup with aliases."""

    def __init__(self, name: str, fields: list, indexes: Iterable[str] | None = None):
        if not name or not isinstance(name, str):
            raise UsageError("a table needs a name")
        keys = [f for f in fields if f.is_key]
        if len(keys) != 1:
            raise UsageError(f'table "{name}" must have exactly one Key field')
        self.name = name
        self.fields = tuple(fields)
        self.names = tuple(f.name for f in fields)
        self.kinds = tuple(f.kind for f in fields)
        self.key_pos = next(i for i, f in enumerate(fields) if f.is_key)
        self.key_name = self.names[self.key_pos]
        self._pos = {}
        for i, f in enumerate(fields):
            for n in (f.name,) + f.aliases:
                if n in self._pos:
                    raise UsageError(f'table "{name}": field name "{n}" used twice')
                self._pos[n] = i
        # every spelling position() accepts (names and aliases), with its position:
        # what the Tcl shim resolves field names with when it reads without the GIL
        self.spellings = tuple(self._pos.items())
        if indexes is None:
            indexes = [f.name for f in fields if f.index]
        self.default_indexes = tuple(self.names[self.position(n)] for n in indexes)
        self.width = len(fields)
        self._required = tuple(i for i, f in enumerate(fields) if not f.nullable and not f.is_key)

    def position(self, name: str) -> int:
        """Field position of a name or alias; UsageError in Tcl's style otherwise."""
        try:
            return self._pos[name]
        except (KeyError, TypeError):
            raise UsageError(f'bad field "{name}": must be {fmt_choices(self.names)}',
                             "FIELD", str(name)) from None

    def canonical(self, name: str) -> str:
        return self.names[self.position(name)]

    def coerce(self, pos: int, value: Any) -> Any:
        return self.fields[pos].coerce(value)

    def coerce_key(self, key: Any) -> str:
        return self.fields[self.key_pos].coerce(key)

    def make_row(self, values: dict | None = None, base: tuple | None = None) -> tuple:
        """A row tuple from ``{field: value}`` (names or aliases), over ``base`` if given."""
        row = list(base) if base is not None else [None] * self.width
        if values and values.__class__ is not dict and not isinstance(values, Mapping):
            raise UsageError(f"bad values of type {type(values).__name__}: expected a dict "
                             "{field: value}", "ROW")
        if values:
            for name, v in values.items():
                p = self.position(name)
                row[p] = self.fields[p].coerce(v)
        if row[self.key_pos] is None:
            raise UsageError(f'field "{self.key_name}" (the key) is required', "VALUE", self.key_name)
        for p in self._required:
            if row[p] is None:
                name = self.names[p]
                raise UsageError(f'field "{name}" may not be null', "VALUE", name)
        return tuple(row)

    def check_row(self, row: Any) -> tuple:
        """Validate and normalise a full row: a sequence in field order, or a
        ``{field: value}`` mapping (names or aliases; fields left out are null),
        as ``upsert`` takes them."""
        cls = row.__class__
        if cls is not tuple and cls is not list:
            if isinstance(row, Mapping):
                return self.make_row(row)
            if isinstance(row, (str, bytes, bytearray)) or not isinstance(row, Sequence):
                raise UsageError(f"bad {self.name} row of type {cls.__name__}: expected a tuple in "
                                 f"field order ({' '.join(self.names)}) or a dict by field name", "ROW")
        if len(row) != self.width:
            raise UsageError(f"a {self.name} row has {self.width} fields ({' '.join(self.names)}), "
                             f"got {len(row)}: give a tuple in field order, or a dict by field name",
                             "ROW")
        return tuple([f.coerce(v) for f, v in zip(self.fields, row)])

    def to_dict(self) -> dict:
        return {"name": self.name, "fields": [f.to_dict() for f in self.fields],
                "indexes": list(self.default_indexes)}

    @classmethod
    def from_dict(cls, d: dict) -> "Schema":
        fields = []
        for fd in d["fields"]:
            if fd.get("key"):
                f = Key(aliases=fd["aliases"])
            else:
                klass = _KINDS[fd["kind"]]
                if klass is Int:
                    f = Int(lo=fd["lo"], hi=fd["hi"], aliases=fd["aliases"], index=fd["index"],
                            nullable=fd["nullable"])
                else:
                    f = klass(aliases=fd["aliases"], index=fd["index"], nullable=fd["nullable"])
            f.name = fd["name"]
            fields.append(f)
        return cls(d["name"], fields, d.get("indexes"))

    def __eq__(self, other):
        return isinstance(other, Schema) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return f"<Schema {self.name} {', '.join(self.names)}>"


def table(cls=None, *, name: str | None = None, indexes: Iterable[str] | None = None):
    """Class decorator declaring a table; returns a ``Schema``.

    Fields are the class attributes that are ``Field`` instances, in the order
    written.  ``indexes`` overrides the per-field ``index=`` flags.
    """

    def build(c):
        fields = []
        for attr, v in vars(c).items():
            if isinstance(v, Field):
                v.name = attr
                fields.append(v)
        return Schema(name or c.__name__, fields, indexes)

    return build(cls) if cls is not None else build
