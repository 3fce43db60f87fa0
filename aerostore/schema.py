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
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from .errors import UsageError

__all__ = ["Field", "Key", "Int", "UInt", "Float", "Str", "Bool", "Schema", "table"]

_TEXT_FORBIDDEN = ("\t", "\r", "\n")


def _fmt_choices(names: list) -> str:
    """Tcl_GetIndexFromObj's way of listing choices: ``a, b, or c``."""
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + ", or " + names[-1]


class Field:
    """One column.  ``kind`` is 'int', 'float', 'str' or 'bool'.

    ``lo``/``hi`` bound integers (inclusive).  ``index`` asks for a secondary
    index by default.  The key field is never null.
    """

    kind = "str"

    def __init__(self, *, aliases: Iterable[str] = (), index: bool = False,
                 nullable: bool = True, lo: int | None = None, hi: int | None = None):
        self.name = ""
        self.aliases = tuple(aliases)
        self.index = index
        self.nullable = nullable
        self.lo = lo
        self.hi = hi
        self.is_key = False

    # -- conversion --------------------------------------------------------
    def coerce(self, value: Any) -> Any:
        """Convert a Python value or a string to this field's type, or raise UsageError."""
        if value is None or (value == "" and isinstance(value, str) and not self.is_key):
            if not self.nullable:
                raise UsageError(f'field "{self.name}" may not be null', "VALUE", self.name)
            return None
        kind = self.kind
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
                    raise UsageError(
                        f'bad value "{value}" for field "{self.name}": must be an integer '
                        f'from {self.lo} to {self.hi}', "VALUE", self.name)
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
                    raise UsageError(f'bad value "{value}" for field "{self.name}": must be a finite number',
                                     "VALUE", self.name)
                return value + 0.0  # -0.0 -> 0.0: one index position for zero
            if kind == "bool":
                if isinstance(value, str):
                    v = value.strip().lower()
                    if v in ("1", "true", "yes", "on"):
                        return True
                    if v in ("0", "false", "no", "off"):
                        return False
                    raise ValueError
                if isinstance(value, (bool, int)):
                    return bool(value)
                raise ValueError
            # str
            s = value if isinstance(value, str) else str(value)
            for ch in _TEXT_FORBIDDEN:
                if ch in s:
                    raise UsageError(f'bad value for field "{self.name}": tab, CR and LF are not allowed',
                                     "VALUE", self.name)
            if self.is_key and not s:
                raise UsageError(f'bad value for field "{self.name}": the key may not be empty',
                                 "VALUE", self.name)
            return s
        except (ValueError, TypeError, OverflowError):
            raise UsageError(f'bad value "{_short(value)}" for field "{self.name}": expected {self.describe()}',
                             "VALUE", self.name) from None

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


def _short(value: Any) -> str:
    s = str(value)
    return s if len(s) <= 60 else s[:57] + "..."


class Str(Field):
    kind = "str"


class Key(Str):
    """The key field: a non-empty string without tab, CR or LF; looked up by hash."""

    def __init__(self, *, aliases: Iterable[str] = ()):
        super().__init__(aliases=aliases, nullable=False)
        self.is_key = True


class Int(Field):
    """Signed integer of ``bits`` bits (default 64), or explicit ``lo``/``hi``."""

    kind = "int"

    def __init__(self, *, bits: int = 64, lo: int | None = None, hi: int | None = None, **kw):
        if lo is None:
            lo = -(1 << (bits - 1))
        if hi is None:
            hi = (1 << (bits - 1)) - 1
        super().__init__(lo=lo, hi=hi, **kw)


class UInt(Int):
    """Unsigned integer of ``bits`` bits."""

    def __init__(self, *, bits: int = 64, **kw):
        super().__init__(lo=0, hi=(1 << bits) - 1, **kw)


class Float(Field):
    """IEEE double; must be finite.  -0.0 is stored as 0.0."""

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
            raise UsageError(f'bad field "{name}": must be {_fmt_choices(list(self.names))}',
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
        """Validate and normalise a full row given as a sequence in field order."""
        if len(row) != self.width:
            raise UsageError(f"a {self.name} row has {self.width} fields, got {len(row)}")
        return tuple(f.coerce(v) for f, v in zip(self.fields, row))

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
