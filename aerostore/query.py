"""Query builder and predicate compilation.

A ``Query`` collects terms (AND), sort keys, limit and offset, then hands
itself to the planner (planner.py) for execution.  Terms are normalised once,
here: the field is resolved (aliases too) and every value is converted to the
field's type, so a bad value fails before anything runs.

Predicates and sort keys are compiled to Python source and ``exec``'d once per
query shape (cached), with the constants bound by a factory call: one function
call per row, no chain of lambdas.

Semantics (docs/tcl.md, SEARCH): a null never satisfies a comparison, range, in or
match term; ``range f lo hi`` is lo <= x < hi; ``match`` is a Tcl glob,
case-insensitive; in sorts null is greater than every value; ties are broken by
the key, ascending.
"""

from __future__ import annotations

import re

from .entries import SLOT_BITS, SLOT_MASK, EntryForm
from .errors import UsageError
from .schema import as_text
from .words import fmt_choices, parse_bool, show

__all__ = ["Query", "OPERATORS", "glob_to_regex", "glob_tokens", "MATCH_OPS"]

# Tcl name -> (canonical op, number of values)
OPERATORS = {
    "=": ("eq", 1), "==": ("eq", 1), "!=": ("ne", 1), "<>": ("ne", 1),
    "<": ("lt", 1), "<=": ("le", 1), ">": ("gt", 1), ">=": ("ge", 1),
    "range": ("range", 2), "in": ("in", 1),
    "match": ("match", 1), "notmatch": ("notmatch", 1),
    "match_case": ("match_case", 1), "notmatch_case": ("notmatch_case", 1),
    "null": ("null", 0), "notnull": ("notnull", 0), "true": ("true", 0), "false": ("false", 0),
}
# the glob operators; a term's values are (fullmatch function, pattern text)
MATCH_OPS = frozenset(("match", "notmatch", "match_case", "notmatch_case"))
_CANON = {"eq": 1, "ne": 1, "lt": 1, "le": 1, "gt": 1, "ge": 1}
_OP_LIST = fmt_choices(OPERATORS)
_USAGE = {0: "{op} field", 1: "{op} field value", 2: "{op} field low high",
          "in": '{op} field list" or "{op} field value value ?value ...?'}


def _in_list(values, field) -> list:
    """The values of an ``in`` term: any iterable but a bare string.

    A string is refused rather than split into its characters (``"abc"`` is
    not ``["a", "b", "c"]``); bytes likewise.
    """
    if isinstance(values, (str, bytes, bytearray)) or not hasattr(values, "__iter__"):
        hint = f' (one value: ["{show(values)}"])' if isinstance(values, str) else ""
        raise UsageError(f'bad value for "in" on field "{field}": expected a list of values, '
                         f"not a {type(values).__name__}{hint}", "VALUE", str(field))
    return list(values)


def glob_tokens(pattern: str, nocase: bool) -> tuple[list, bool]:
    """A Tcl ``string match`` pattern (Tcl 8.6 semantics) as tokens: ``(tokens, ranges)``.

    The one reading of a glob: ``glob_to_regex`` renders the tokens for one
    string, keyscan.py for a buffer of many.  Each token is a pair:
    ``("star", None)`` any run (consecutive stars give one token),
    ``("any", None)`` one character, ``("lit", c)`` the character c,
    ``("set", cls)`` one character of a regex class ``cls`` (its characters
    and ranges re.escape'd), ``("never", None)`` nothing matches.  ``ranges``:
    a set holds a range.  ``nocase``: the pattern is lower-cased first (the
    caller lower-cases the text, or compares ignoring case, see
    ``glob_to_regex``).  O(len(pattern)).

    ``*`` any run, ``?`` one character, ``[chars]`` one of the characters or
    ranges ``a-z`` (either order), ``\\x`` the character x.  As in Tcl: a ``[``
    set without its ``]`` runs to the end of the pattern; an empty set, a
    dangling range (``[a-``) matches nothing, a trailing backslash never
    matches.  One quirk is not reproduced: a range whose end is ``]``
    (``[a-]``), after which Tcl resumes at a different ``]`` depending on which
    item matched.
    """
    if nocase:
        pattern = pattern.lower()
    out = []
    ranges = False
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if not out or out[-1][0] != "star":
                out.append(("star", None))
        elif c == "?":
            out.append(("any", None))
        elif c == "\\":
            i += 1
            if i >= n:
                out.append(("never", None))
                break
            out.append(("lit", pattern[i]))
        elif c == "[":
            j = i + 1
            parts = []
            while j < n and pattern[j] != "]":
                a = pattern[j]
                j += 1
                if j < n and pattern[j] == "-":
                    j += 1
                    if j >= n:
                        break  # a dangling range matches nothing
                    a, b = sorted((a, pattern[j]))
                    j += 1
                    parts.append(re.escape(a) + "-" + re.escape(b))
                    ranges = True
                else:
                    parts.append(re.escape(a))
            out.append(("set", "[" + "".join(parts) + "]") if parts else ("never", None))
            i = j  # at the closing ] (skipped below) or at the end
        else:
            out.append(("lit", c))
        i += 1
    return out, ranges


_PIECE = {"star": ".*", "any": ".", "never": "(?!)"}


def glob_to_regex(pattern: str, nocase: bool):
    """Compile a Tcl ``string match`` pattern (``glob_tokens``) to a fullmatch function.

    ``nocase`` compares the lower-cased pattern with the lower-cased text: the
    text is lower-cased before matching when a set holds a range (Tcl:
    ``[!-[]`` holds A, not a), else the regex ignores case.
    """
    tokens, ranges = glob_tokens(pattern, nocase)
    src = "".join(re.escape(v) if k == "lit" else (v if k == "set" else _PIECE[k]) for k, v in tokens)
    if nocase and ranges:
        fm = re.compile(src, re.DOTALL).fullmatch
        return lambda text: fm(text.lower())
    flags = re.DOTALL | (re.IGNORECASE if nocase else 0)
    return re.compile(src, flags).fullmatch


def truth(v):
    """Tcl boolean value of a field value (as ``expr {$v ? 1 : 0}``): True, False,
    or None (neither; a null too).  Tcl's rule, words.parse_bool."""
    return parse_bool(v)


class Term:
    """One normalised condition: canonical op, field position, typed values."""

    __slots__ = ("op", "pos", "values")

    def __init__(self, op, pos, values):
        self.op = op
        self.pos = pos
        self.values = values

    def __repr__(self):
        return f"Term({self.op}, {self.pos}, {self.values!r})"


class Query:
    """A query on one table, built by chaining; executed by rows()/keys()/count()/delete().

    Built on a Table (autocommit: runs in its own snapshot) or on a transaction's
    table (reads through the transaction, including its own writes).
    """

    def __init__(self, view):
        self._view = view
        self._schema = view.schema
        self.terms: list[Term] = []
        self.sort: list[tuple[int, int]] = []  # (pos, sign): +1 asc, -1 desc, 0 default
        self.descending = False
        self.limit_n = 0
        self.offset_n = 0

    # -- building ------------------------------------------------------------------
    def where(self, op: str, field: str, *values) -> "Query":
        """Add a term by its Tcl operator name (see OPERATORS).

        ``in`` takes one list of values (``where("in", f, [1, 2, 3])``, never a
        bare string) or the values themselves (``where("in", f, 1, 2, 3)``).
        """
        spec = OPERATORS.get(op) if isinstance(op, str) else None
        if spec is None:
            if isinstance(op, str) and op in _CANON:
                spec = (op, 1)
            else:
                raise UsageError(f'bad operator "{show(op)}": must be {_OP_LIST}', "OPERATOR", str(op))
        canon, nvals = spec
        if len(values) != nvals and not (canon == "in" and len(values) > 1):
            usage = _USAGE["in" if canon == "in" else nvals].format(op=op)
            raise UsageError(f'wrong # args: should be "{usage}"', "TERM")
        schema = self._schema
        pos = schema.position(field)
        fld = schema.fields[pos]
        if canon in MATCH_OPS:
            pattern = as_text(values[0], fld.name, "VALUE", fld.name, what=f"{op} pattern on field")
            vals = (glob_to_regex(pattern, canon in ("match", "notmatch")), pattern)
        elif canon == "in":
            seq = values if len(values) > 1 else _in_list(values[0], fld.name)
            coerced = [fld.coerce(v) for v in seq]
            vals = (frozenset(v for v in coerced if v is not None),)
        else:
            vals = tuple(fld.coerce(v) for v in values)
            if canon in ("eq", "ne", "lt", "le", "gt", "ge", "range") and any(v is None for v in vals):
                raise UsageError(f'bad value "" for field "{fld.name}": use null/notnull to test for nulls',
                                 "VALUE", fld.name)
        self.terms.append(Term(canon, pos, vals))
        return self

    def eq(self, f, v): return self.where("=", f, v)
    def ne(self, f, v): return self.where("!=", f, v)
    def lt(self, f, v): return self.where("<", f, v)
    def le(self, f, v): return self.where("<=", f, v)
    def gt(self, f, v): return self.where(">", f, v)
    def ge(self, f, v): return self.where(">=", f, v)
    def range(self, f, lo, hi): return self.where("range", f, lo, hi)
    def in_values(self, f, values): return self.where("in", f, _in_list(values, f))
    def match(self, f, pattern): return self.where("match", f, pattern)
    def notmatch(self, f, pattern): return self.where("notmatch", f, pattern)
    def match_case(self, f, pattern): return self.where("match_case", f, pattern)
    def notmatch_case(self, f, pattern): return self.where("notmatch_case", f, pattern)
    def null(self, f): return self.where("null", f)
    def notnull(self, f): return self.where("notnull", f)
    def true(self, f): return self.where("true", f)
    def false(self, f): return self.where("false", f)

    def sort_by(self, *keys) -> "Query":
        """Sort keys: "lat" (default direction), "-lat" (descending), or ("lat", "asc"|"desc").

        Anything else is a UsageError (errorCode ``AEROSTORE USAGE SORT`` or ``FIELD``).
        """
        for k in keys:
            if isinstance(k, (tuple, list)):
                if len(k) != 2:
                    raise UsageError(f"bad sort key {show(repr(k))}: expected \"field\", \"-field\" or "
                                     f'("field", "asc"|"desc")', "SORT")
                name, d = k
                if d not in ("asc", "desc"):
                    raise UsageError(f'bad sort direction "{d}": must be asc or desc', "SORT")
                sign = 1 if d == "asc" else -1
            else:
                k = str(k)
                sign = 0
                name = k
                if k.startswith("-") and len(k) > 1:
                    sign, name = -1, k[1:]
            self.sort.append((self._schema.position(name), sign))
        return self

    def desc(self, flag: bool = True) -> "Query":
        """Direction of sort keys given without a sign (default ascending)."""
        self.descending = bool(flag)
        return self

    def limit(self, n: int) -> "Query":
        """At most n rows; 0 means no limit."""
        n = _count_arg(n, "limit")
        self.limit_n = n
        return self

    def offset(self, n: int) -> "Query":
        """Skip n rows first."""
        self.offset_n = _count_arg(n, "offset")
        return self

    # -- running -----------------------------------------------------------------------
    def rows(self) -> list:
        """Matching rows (tuples in field order), sorted, after offset/limit; one snapshot."""
        return self._view._run(self, "rows")

    def keys(self) -> list:
        kp = self._schema.key_pos
        return [r[kp] for r in self.rows()]

    def count(self) -> int:
        """The number of rows rows() would return, computed without materialising when possible."""
        return self._view._run(self, "count")

    def explain(self, count: bool = False) -> str:
        """The plan the planner chooses, as one line of text; ``count=True``: the plan of count()."""
        return self._view._run(self, "explain_count" if count else "explain")

    def delete(self) -> int:
        """Delete the matching rows (after offset/limit) in one transaction; the number deleted."""
        return self._view._delete_query(self)

    def first(self):
        rows = self.rows()
        return rows[0] if rows else None

    def __iter__(self):
        return iter(self.rows())


def _count_arg(n, what):
    if isinstance(n, bool):
        raise UsageError(f'bad {what} "{n}": must be an integer >= 0', what.upper())
    try:
        v = int(n) if isinstance(n, int) else int(str(n).strip(), 10)
    except ValueError:
        raise UsageError(f'expected integer but got "{n}"', what.upper()) from None
    if v < 0:
        raise UsageError(f'bad {what} "{n}": must be an integer >= 0', what.upper())
    return v


# -- compilation -----------------------------------------------------------------------
_cache: dict = {}


def _cond_src(terms, kinds) -> tuple[str, list]:
    """Python expression over row ``r`` for all terms, and the constants it uses (c0, c1...)."""
    parts = []
    consts = []

    def c(v):
        consts.append(v)
        return f"c{len(consts) - 1}"

    for t in terms:
        x = f"r[{t.pos}]"
        op = t.op
        if op == "eq":
            parts.append(f"{x} == {c(t.values[0])}")
        elif op in ("ne", "lt", "le", "gt", "ge"):
            sym = {"ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[op]
            parts.append(f"({x} is not None and {x} {sym} {c(t.values[0])})")
        elif op == "range":
            parts.append(f"({x} is not None and {c(t.values[0])} <= {x} < {c(t.values[1])})")
        elif op == "in":
            parts.append(f"{x} in {c(t.values[0])}")
        elif op in MATCH_OPS:
            m = c(t.values[0])
            txt = x if kinds[t.pos] == "str" else f"_text({t.pos}, {x})"
            neg = "is None" if op.startswith("not") else "is not None"
            parts.append(f"({x} is not None and {m}({txt}) {neg})")
        elif op == "null":
            parts.append(f"{x} is None")
        elif op == "notnull":
            parts.append(f"{x} is not None")
        elif op == "true":
            parts.append(f"_truth({x}) is True")
        elif op == "false":
            parts.append(f"_truth({x}) is False")
    return (" and ".join(parts) if parts else "True"), consts


def compile_predicate(schema, terms):
    """A function row -> bool for the AND of ``terms``."""
    return _make("pred", terms, schema)


def compile_scan(schema, terms, count_only: bool, skip_keys: bool, limited: bool = False):
    """scan(rows, skip, stop) -> list of the rows (tuples) of ``rows`` that match (or
    their count); ``skip_keys``: rows whose key is in ``skip`` are left out.

    ``limited``: the scan ends once ``stop`` rows matched (an unsorted limit).
    """
    kind = ("count" if count_only else "scan") + ("lim" if limited else "")
    return _make(kind, terms, schema, skip_keys)


def compile_entry_filter(schema, terms, pos: int, form: EntryForm, skip_keys: bool,
                         strict: bool = False):
    """filt(chunk, rows, s, visible, key, skip, out, row1, views) for index entries of
    field ``pos``.

    ``form`` is how the index hands out entries (its ``entry_form``): PACKED
    ints, TUPLE (value, slot) pairs, or PAIRS (a chunk with parallel
    ``keys`` and ``slots`` lists).  For each entry: the row its slot shows
    snapshot ``s`` (``rows`` is the heap's: a settled slot holds its key, and
    ``row1(slot, key, views)`` makes its row from the columns, columns.py); a
    chained slot's row must carry the entry's key (else the entry belongs to
    another version); rows satisfying every term go to ``out``.  ``strict``:
    a settled row must carry the entry's key too (the entries may be older
    than the rows: planner.py).  One generated loop, no Python call per
    entry but the settled row's.  The caller makes sure that no freeze
    overlapped (``fseq``, heap.py).
    """
    return _make(("strict", form) if strict else form, terms, schema, skip_keys, pos)


_NO_VALUE_OPS = frozenset(("null", "notnull", "true", "false"))
_ENTRY_KINDS = frozenset([EntryForm.PACKED, EntryForm.TUPLE, EntryForm.PAIRS]
                         + [("strict", f) for f in (EntryForm.PACKED, EntryForm.TUPLE, EntryForm.PAIRS)])


def _consts(terms) -> list:
    """The constants ``_cond_src`` binds, in its order, without building the source."""
    out = []
    for t in terms:
        if t.op in _NO_VALUE_OPS:
            continue
        out.append(t.values[0])
        if t.op == "range":
            out.append(t.values[1])
    return out


def _make(kind, terms, schema, skip_keys=False, pos=0):
    """The generated function of ``kind`` for ``terms``; code cached per query shape."""
    kp = schema.key_pos
    ckey = (kind, tuple([(t.op, t.pos) for t in terms]), skip_keys, kp, schema.kinds, pos)
    consts = _consts(terms)
    factory = _cache.get(ckey)
    if factory is None:
        cond, _ = _cond_src(terms, schema.kinds)
        args = ", ".join(f"c{i}" for i in range(len(consts)))
        skip = f"\n            if r[{kp}] in skip: continue" if skip_keys else ""
        if kind == "pred":
            body = f"    def pred(r):\n        return {cond}\n    return pred\n"
        elif kind in _ENTRY_KINDS:
            strict = kind.__class__ is tuple
            form = kind[1] if strict else kind
            loop = "for e in chunk"
            if form == EntryForm.PACKED:
                slot = f"e & {SLOT_MASK:#x}"
                check = f"r[{pos}] is None or key(r[{pos}]) != e >> {SLOT_BITS}"
            elif form == EntryForm.PAIRS:
                loop = "for k, slot in zip(chunk.keys, chunk.slots)"
                slot, check = "slot", f"r[{pos}] is None or key(r[{pos}]) != k"
            else:
                slot, check = "e[1]", f"r[{pos}] != e[0]"
            body = (
                f"    def filt(chunk, rows, s, visible, key, skip, out, row1, views):\n"
                f"        append = out.append\n"
                f"        {loop}:\n"
                f"            head = rows[{slot}]\n"
                f"            if head.__class__ is str:\n"
                f"                r = row1({slot}, head, views)\n"
                + (f"                if {check}: continue\n" if strict else "") +
                f"            else:\n"
                f"                r = visible(head, s)\n"
                f"                if r is None or {check}: continue{skip}\n"
                f"            if {cond}: append(r)\n"
                f"    return filt\n")
        else:
            counting = kind.startswith("count")
            acc = "n += 1" if counting else "append(r)"
            if kind.endswith("lim"):
                acc += "\n                if " + ("n" if counting else "len(out)") + " >= stop: break"
            init = "n = 0" if counting else "out = []\n        append = out.append"
            ret = "n" if counting else "out"
            body = (
                f"    def scan(rows, skip, stop=0):\n"
                f"        {init}\n"
                f"        for r in rows:{skip}\n"
                f"            if {cond}:\n"
                f"                {acc}\n"
                f"        return {ret}\n"
                f"    return scan\n")
        src = f"def factory({args}):\n{body}"
        ns = {"_truth": parse_bool, "_text": _text_fn(schema)}
        exec(compile(src, f"<aerostore {kind}>", "exec"), ns)
        factory = ns["factory"]
        if len(_cache) > 512:
            _cache.clear()
        _cache[ckey] = factory
    return factory(*consts)


def _text_fn(schema):
    fields = schema.fields
    return lambda pos, v: fields[pos].to_text(v)


class _Rev:
    """Reverses comparisons, for descending sorts of strings."""

    __slots__ = ("v",)

    def __init__(self, v):
        self.v = v

    def __lt__(self, o):
        return o.v < self.v

    def __gt__(self, o):
        return o.v > self.v

    def __eq__(self, o):
        return self.v == o.v

    def __le__(self, o):
        return o.v <= self.v

    def __ge__(self, o):
        return o.v >= self.v


_sort_cache: dict = {}


def sort_key_fn(schema, sort, descending: bool):
    """Composite key: each sort field (nulls greatest), then the key ascending.  Cached."""
    ck = (schema.name, schema.key_pos, tuple(f.kind for f in schema.fields), tuple(sort), descending)
    fn = _sort_cache.get(ck)
    if fn is None:
        if len(_sort_cache) > 512:
            _sort_cache.clear()
        fn = _sort_cache[ck] = _sort_key_fn(schema, sort, descending)
    return fn


def _sort_key_fn(schema, sort, descending: bool):
    parts = []
    kinds = [f.kind for f in schema.fields]
    for pos, sign in sort:
        desc = sign < 0 or (sign == 0 and descending)
        x = f"r[{pos}]"
        if not desc:
            parts.append(f"((1,) if {x} is None else (0, {x}))")
        elif kinds[pos] == "str":
            parts.append(f"((0,) if {x} is None else (1, _Rev({x})))")
        else:
            parts.append(f"((0,) if {x} is None else (1, -{x}))")
    parts.append(f"r[{schema.key_pos}]")
    src = f"lambda r: ({', '.join(parts)},)"
    return eval(src, {"_Rev": _Rev})
