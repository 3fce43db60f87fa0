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


from .columns import view_layout, view_reads
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
        self._walk_memo = None     # planner.choose's last walk on this query (reset by any change)
        self._pos = None           # _positions(), once asked (reset by a new term or sort key)

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
        self._walk_memo = self._pos = None
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
        self._walk_memo = self._pos = None
        return self

    def desc(self, flag: bool = True) -> "Query":
        """Direction of sort keys given without a sign (default ascending)."""
        self.descending = bool(flag)
        self._walk_memo = None
        return self

    def limit(self, n: int) -> "Query":
        """At most n rows; 0 means no limit."""
        n = _count_arg(n, "limit")
        self.limit_n = n
        self._walk_memo = None
        return self

    def offset(self, n: int) -> "Query":
        """Skip n rows first."""
        self.offset_n = _count_arg(n, "offset")
        self._walk_memo = None
        return self

    def _positions(self) -> tuple:
        """The fields the terms and the sort keys are on (planner.choose), in that
        order; kept until a term or a sort key is added."""
        got = self._pos
        if got is None:
            got = self._pos = tuple([t.pos for t in self.terms] + [p for p, _sign in self.sort])
        return got

    # -- running -----------------------------------------------------------------------
    def rows(self) -> list:
        """Matching rows (tuples in field order), sorted, after offset/limit; one snapshot."""
        return self._view._run(self, "rows")

    def _page(self) -> tuple:
        """rows() for the Tcl search: (items, check), where settled rows may be
        left as their slots for the shim to read (planner.Walk.page)."""
        return self._view._run(self, "page")

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


def _cond_src(terms, kinds, ref=None) -> tuple[str, list]:
    """Python expression for all terms, and the constants it uses (c0, c1...).

    A field's value is ``r[pos]`` of a row ``r``, or what ``ref(pos)`` says:
    ``(first, again, nullable)``, the expression of its first use in the
    condition, that of every later use (``first`` may bind a name, ``again``
    read it: the uses are evaluated in text order), and whether it may be
    None (if not, comparisons leave out their null test).
    """
    parts = []
    consts = []

    def c(v):
        consts.append(v)
        return f"c{len(consts) - 1}"

    for t in terms:
        if ref is None:
            xf = x = f"r[{t.pos}]"
            may_none = True
        else:
            xf, x, may_none = ref(t.pos)
        op = t.op
        if op == "eq":
            parts.append(f"{xf} == {c(t.values[0])}")
        elif op in ("ne", "lt", "le", "gt", "ge"):
            sym = {"ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[op]
            parts.append(f"({xf} is not None and {x} {sym} {c(t.values[0])})" if may_none
                         else f"{xf} {sym} {c(t.values[0])}")
        elif op == "range":
            parts.append(f"({xf} is not None and {c(t.values[0])} <= {x} < {c(t.values[1])})" if may_none
                         else f"{c(t.values[0])} <= {xf} < {c(t.values[1])}")
        elif op == "in":
            parts.append(f"{xf} in {c(t.values[0])}")
        elif op in MATCH_OPS:
            m = c(t.values[0])
            txt = x if kinds[t.pos] == "str" else f"_text({t.pos}, {x})"
            neg = "is None" if op.startswith("not") else "is not None"
            parts.append(f"({xf} is not None and {m}({txt}) {neg})")
        elif op == "null":
            parts.append(f"{xf} is None")
        elif op == "notnull":
            parts.append(f"{xf} is not None")
        elif op == "true":
            parts.append(f"_truth({xf}) is True")
        elif op == "false":
            parts.append(f"_truth({xf}) is False")
    return (" and ".join(parts) if parts else "True"), consts


def compile_predicate(schema, terms):
    """A function row -> bool for the AND of ``terms``."""
    return _make("pred", terms, schema)


def compile_chain_fix(schema, terms):
    """``fix(heads, s, p, visible, pred)``: what the chained slots ``heads`` (their
    chain heads) add to an index-only count of the rows that satisfy ``terms``,
    every term on field ``p``, at snapshot ``s`` (planner.IndexRange's
    ``_count_now``).  The index holds one entry per distinct value of a chain's
    versions, so for each chain the values that satisfy the terms are taken
    off, and its visible row put back if it does.  ``pred`` is
    ``compile_predicate(schema, terms)``, ``visible`` mvcc's.

    Chains of one or two versions (an insert, a delete, an update: nearly all
    of them under a feed) are done with the terms inlined, each version tested
    once, the visible one found by identity; longer ones call ``pred``.
    O(versions), no Python call per version but ``visible``'s."""
    return _make("chainfix", terms, schema)


_CHAINFIX_SRC = """\
    def fix(heads, s, p, visible, pred):
        c = 0
        for head in heads:
            prev = head.prev
            if prev is None or prev.prev is None:
                r = hv = head.values
                ph = COND
                vis = visible(head, s)
                if prev is None:
                    if ph and vis is None:
                        c -= 1
                    continue
                r = pv = prev.values
                pp = COND
                if ph:
                    c -= 2 if pp and pv[p] != hv[p] else 1
                elif pp:
                    c -= 1
                if vis is not None and (ph if vis is hv else pp):
                    c += 1
                continue
            hit = []
            v = head
            while v is not None:
                vals = v.values
                if pred(vals):
                    val = vals[p]
                    if val not in hit:
                        hit.append(val)
                        c -= 1
                v = v.prev
            r = visible(head, s)
            if r is not None and pred(r):
                c += 1
        return c
    return fix
"""


def compile_scan(schema, terms, count_only: bool, skip_keys: bool, limited: bool = False):
    """scan(rows, skip, stop) -> list of the rows (tuples) of ``rows`` that match (or
    their count); ``skip_keys``: rows whose key is in ``skip`` are left out.

    ``limited``: the scan ends once ``stop`` rows matched (an unsorted limit).
    """
    kind = ("count" if count_only else "scan") + ("lim" if limited else "")
    return _make(kind, terms, schema, skip_keys)


def compile_entry_filter(schema, terms, pos: int, form: EntryForm, skip_keys: bool,
                         strict: bool = False, walk: bool = False, nullable=frozenset()):
    """The generated filter of a chunk of index entries of field ``pos``.

    ``form`` is how the index hands out entries (its ``entry_form``): PACKED
    ints, TUPLE (value, slot) pairs, or PAIRS (a chunk with parallel
    ``keys`` and ``slots`` lists).  For each entry, the row its slot shows
    snapshot ``s`` (``rows`` is the heap's): a chained slot's row must carry
    the entry's key (else the entry belongs to another version); a settled
    slot (``rows[slot]`` is its key) is tested on its values in ``views``
    (``Columns.arrays[3]``, columns.py), read as columns' row1 reads them
    (``columns.view_reads``), so a rejected row costs a read per term and no tuple,
    and a match's tuple is made from those reads.  ``nullable``: the numeric
    fields whose null arrays may hold a True in those views
    (``Columns.nullable``; the others' are not read).  ``strict``: a settled
    row must carry the entry's key too (the entries may be older than the
    rows: planner.py).  One generated loop, no Python call per entry.  The
    caller makes sure that no freeze overlapped (``fseq``, heap.py).

    Called as ``filt(chunk, rows, s, visible, key, skip, out, views)``: appends
    the matching rows.  ``walk``: ``filt(..., views, ks, lo, hi)``, for an
    ordered walk (planner.Walk): appends, in entry order, each match, and its
    entry's key to ``ks``: the row of a match at a position of ``out`` in
    [lo, hi), else a settled match's slot (an int: the walk makes its row only
    if it needs it) or a chained match's row; past ``hi`` it takes only the
    rest of the tie group of position hi - 1 (equal entry keys) and stops.
    """
    kind = ("entry", form, strict, walk, frozenset(nullable), view_layout(schema))
    return _make(kind, terms, schema, skip_keys, pos)


def compile_row_maker(schema, nullable=frozenset()):
    """make(items, rows, views, visible, s): ``items`` with each int (a settled slot at
    the time it was tested) replaced by its row: made from ``views``
    (``Columns.arrays[3]``) as the entry filters make it while ``rows[slot]``
    still holds the key, else the row of its chain at ``s`` (thawed since);
    other items are kept.  ``nullable`` as for ``compile_entry_filter``.  The
    caller makes sure that no freeze overlapped (``fseq``, heap.py).
    O(len(items)), no Python call per row."""
    return _make(("rows", frozenset(nullable), view_layout(schema)), [], schema)


def _rows_src(kind, schema) -> str:
    """The factory body of a row maker (``compile_row_maker``)."""
    _rows, nullable, layout = kind
    unpack, reads = view_reads(layout, nullable)
    row = ", ".join("head" if p == schema.key_pos else reads[p][0] for p in range(len(layout)))
    return ("    def make(items, rows, views, visible, s):\n"
            + (f"        {unpack}\n" if unpack else "") +
            "        return [slot if slot.__class__ is not int\n"
            f"                else ({row},) if (head := rows[slot]).__class__ is str\n"
            "                else visible(head, s) for slot in items]\n"
            "    return make\n")


def _entry_src(kind, terms, schema, skip_keys: bool, pos: int) -> tuple[str, list]:
    """The factory body of an entry filter (``compile_entry_filter``) and its constants.

    A settled row's fields are read from the views as row1 reads them
    (``columns.view_reads``), each at most once: a term's first read binds it
    (``x3``), the tuple of a match reuses it."""
    _entry, form, strict, walk, nullable, layout = kind
    kp = schema.key_pos
    cond, consts = _cond_src(terms, schema.kinds)
    unpack, reads = view_reads(layout, nullable)
    bound = set()

    def ref(p):
        if p == kp:
            return "head", "head", False
        e, may_none = reads[p]
        if p in bound:
            return f"x{p}", f"x{p}", may_none
        bound.add(p)
        return f"(x{p} := {e})", f"x{p}", may_none

    if form == EntryForm.PACKED:
        loop, slot_of, ek = "for e in it", f"e & {SLOT_MASK:#x}", f"e >> {SLOT_BITS}"
        it = "iter(chunk)"
    elif form == EntryForm.PAIRS:
        loop, slot_of, ek = "for k, slot in it", None, "k"
        it = "zip(chunk.keys, chunk.slots)"
    else:
        loop, slot_of, ek = "for e in it", "e[1]", "e[0]"
        it = "iter(chunk)"
    if form == EntryForm.TUPLE:
        check = f"r[{pos}] != {ek}"
    else:
        check = f"r[{pos}] is None or key(r[{pos}]) != {ek}"
    ccheck = None
    if strict:
        xf, x, may_none = ref(pos)
        if form == EntryForm.TUPLE:
            ccheck = f"{xf} != {ek}"
        elif may_none:
            ccheck = f"{xf} is None or key({x}) != {ek}"
        else:
            ccheck = f"key({xf}) != {ek}"
    ccond, _ = _cond_src(terms, schema.kinds, ref)
    # the settled row's tuple, as row1 makes it, from the values the terms read
    row = ", ".join("head" if p == kp else (f"x{p}" if p in bound else reads[p][0])
                    for p in range(len(layout)))
    row = f"({row},)"

    def body(ind: str, make: bool) -> list:
        """One entry's lines: ``make``: a settled match's tuple, else its slot."""
        lines = [f"{ind}slot = {slot_of}"] if slot_of else []
        lines += [f"{ind}head = rows[slot]",
                  f"{ind}if head.__class__ is str:"]
        if skip_keys:
            lines.append(f"{ind}    if head in skip: continue")
        if ccheck:
            lines.append(f"{ind}    if {ccheck}: continue")
        lines += [f"{ind}    if not ({ccond}): continue",
                  f"{ind}    append({row if make else 'slot'})",
                  f"{ind}else:",
                  f"{ind}    r = visible(head, s)",
                  f"{ind}    if r is None or {check}: continue"]
        if skip_keys:
            lines.append(f"{ind}    if r[{kp}] in skip: continue")
        lines += [f"{ind}    if not ({cond}): continue",
                  f"{ind}    append(r)"]
        text = "\n".join(lines)
        for p in bound:         # a value read once needs no name
            if len(re.findall(rf"\bx{p}\b", text)) == 1:
                text = text.replace(f"(x{p} := {reads[p][0]})", f"({reads[p][0]})")
        return text.split("\n")

    unpack = [f"        {unpack}"] if unpack else []
    if walk:
        # three loops over one iterator: matches before position lo (slots), in
        # [lo, hi) (rows), then the rest of the tie group at hi - 1 (slots), where it stops
        lines = ["    def filt(chunk, rows, s, visible, key, skip, out, views, ks, lo, hi):",
                 "        append = out.append",
                 "        kappend = ks.append",
                 "        i = len(out)"] + unpack + [
                 f"        it = {it}",
                 "        if i < lo:",
                 f"            {loop}:"] + body(" " * 16, False) + [
                 f"                kappend({ek})",
                 "                i += 1",
                 "                if i >= lo: break",
                 "            else:",
                 "                return",
                 "        if i < hi:",
                 f"            {loop}:"] + body(" " * 16, True) + [
                 f"                kappend({ek})",
                 "                i += 1",
                 "                if i >= hi: break",
                 "            else:",
                 "                return",
                 "        bk = ks[-1]",
                 f"        {loop}:"] + ([f"            if {ek} != bk: break"]) + body(" " * 12, False) + [
                 f"            kappend({ek})"]
    else:
        lines = ["    def filt(chunk, rows, s, visible, key, skip, out, views):",
                 "        append = out.append"] + unpack + [
                 f"        it = {it}",
                 f"        {loop}:"] + body(" " * 12, True)
    return "\n".join(lines) + "\n    return filt\n", consts


_NO_VALUE_OPS = frozenset(("null", "notnull", "true", "false"))


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
        args = ", ".join(f"c{i}" for i in range(len(consts)))
        skip = f"\n            if r[{kp}] in skip: continue" if skip_keys else ""
        if kind.__class__ is tuple:
            if kind[0] == "rows":
                body = _rows_src(kind, schema)
            else:
                body, _ = _entry_src(kind, terms, schema, skip_keys, pos)
        elif kind == "pred":
            cond, _ = _cond_src(terms, schema.kinds)
            body = f"    def pred(r):\n        return {cond}\n    return pred\n"
        elif kind == "chainfix":
            cond, _ = _cond_src(terms, schema.kinds)
            body = _CHAINFIX_SRC.replace("COND", cond)
        else:
            cond, _ = _cond_src(terms, schema.kinds)
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
        name = (kind if kind.__class__ is not tuple
                else "rows" if kind[0] == "rows" else f"{kind[1]} entries")
        exec(compile(src, f"<aerostore {name}>", "exec"), ns)
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
