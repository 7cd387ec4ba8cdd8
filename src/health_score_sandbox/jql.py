"""A small JQL parser and evaluator for the Jira stand-in.

The subset is what a health-score extractor needs: clauses ``field = v``, ``field != v``,
``field IN (…)``, ``field NOT IN (…)``, ``field IS [NOT] EMPTY`` (or ``NULL``) and, on date fields
(``created``, ``resolved``), ``<``, ``<=``, ``>``, ``>=`` against ``"yyyy-MM-dd[ HH:mm]"`` (or
``yyyy/MM/dd``; read in UTC, the sandbox user's time zone), joined by ``AND`` / ``OR`` (also
``&&`` / ``||``) with parentheses, values unquoted or in single or double quotes with JQL's
backslash escapes, and an optional ``ORDER BY`` of up to 7 fields. Anything else (``~``, ``WAS``,
functions, prefix ``NOT``) is refused with a Jira-style message rather than answered with a silent
empty result.

Evaluation works on bit masks: an :class:`Index` holds, per field, one integer per value whose bit
``i`` is set when issue ``i`` has that value, so a whole query costs a few big-integer operations
whatever the number of issues.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

MAX_ORDER_BY_FIELDS = 7

_VALID_OPERATORS = (
    "The valid operators are '=', '!=', '<', '>', '<=', '>=', '~', '!~', 'IN', 'NOT IN', "
    "'IS' and 'IS NOT'."
)
_UNSUPPORTED_WORDS = frozenset({"is", "was", "changed", "empty", "null"})
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r", " ": " "}
_WORD = re.compile(r"cf\[\d+\]|[\w\-]+", re.IGNORECASE)
_SYMBOLS = ("!=", "!~", ">=", "<=", "&&", "||", "=", "~", ">", "<", "!", "(", ")", ",")


class JqlError(Exception):
    """The query cannot be parsed or names something that does not exist (Jira answers 400)."""


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # word, string, symbol, end
    text: str  # the value (unescaped for strings; the symbol itself for symbols)
    offset: int

    def keyword(self) -> str | None:
        """The lower-cased keyword an unquoted word or symbol stands for, if it is one."""
        if self.kind == "symbol":
            return {"&&": "and", "||": "or"}.get(self.text, self.text)
        if self.kind == "word":
            return self.text.lower()
        return None

    def shown(self) -> str:
        return "EOF" if self.kind == "end" else self.text


@dataclass(frozen=True, slots=True)
class Clause:
    """``field op values``; ``op`` is one of ``=``, ``!=``, ``in``, ``not in``, ``<``, ``<=``,
    ``>``, ``>=`` (one date value), ``is`` or ``is not`` (no values: EMPTY)."""

    field: str
    op: str
    values: tuple[str, ...]
    offset: int


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # "and" | "or"
    items: tuple[Node, ...]


Node = Clause | BoolOp


@dataclass(frozen=True, slots=True)
class SortKey:
    field: str
    descending: bool


@dataclass(frozen=True, slots=True)
class Query:
    where: Node | None
    order_by: tuple[SortKey, ...] = ()

    @property
    def bounded(self) -> bool:
        """Jira's "bounded": the query has a search restriction, not just an ORDER BY."""
        return self.where is not None


def _where(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"(line {line}, character {column})"


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "\"'":
            value, i = _read_string(text, i)
            tokens.append(Token("string", value, i))
            continue
        symbol = next((s for s in _SYMBOLS if text.startswith(s, i)), None)
        if symbol is not None:
            tokens.append(Token("symbol", symbol, i))
            i += len(symbol)
            continue
        match = _WORD.match(text, i)
        if match is None:
            raise JqlError(
                f"Error in the JQL Query: The character '{ch}' is a reserved JQL character. You "
                f"must enclose it in a string or use the escape '\\u{ord(ch):04x}' instead. "
                f"{_where(text, i)}"
            )
        tokens.append(Token("word", match.group(), i))
        i = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2 : i + 6]):
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            raise JqlError(
                f"Error in the JQL Query: '\\{nxt}' is an illegal JQL escape sequence. The valid "
                f"escape sequences are \\', \\\", \\t, \\n, \\r, \\\\, '\\ ' and \\uXXXX. "
                f"{_where(text, i)}"
            )
        out.append(ch)
        i += 1
    raise JqlError(
        f"Error in the JQL Query: Missing closing quote {quote} for the string starting at "
        f"{_where(text, start)}."
    )


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def fail(self, message: str, token: Token | None = None) -> JqlError:
        token = token or self.token
        return JqlError(f"Error in the JQL Query: {message} {_where(self.text, token.offset)}")

    def unsupported(self, what: str, token: Token) -> JqlError:
        return self.fail(f"{what} is not supported by the sandbox's JQL subset.", token)

    # query := [or_expr] [ORDER BY sort (, sort)*] end
    def query(self) -> Query:
        where: Node | None = None
        if self.token.kind != "end" and not self._at_order_by():
            where = self.or_expr()
        order: tuple[SortKey, ...] = ()
        if self._at_order_by():
            self.pos += 2
            order = self.sort_list()
        if self.token.kind != "end":
            expected = "'OR' or 'AND'" if where is not None else "a clause"
            raise self.fail(f"Expecting either {expected} but got '{self.token.shown()}'.")
        return Query(where, order)

    def _at_order_by(self) -> bool:
        nxt = self.tokens[self.pos + 1] if self.pos + 1 < len(self.tokens) else self.token
        return self.token.keyword() == "order" and nxt.keyword() == "by"

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.token.keyword() == "or":
            self.advance()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def and_expr(self) -> Node:
        items = [self.term()]
        while self.token.keyword() == "and":
            self.advance()
            items.append(self.term())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def term(self) -> Node:
        token = self.token
        if token.kind == "symbol" and token.text == "(":
            self.advance()
            node = self.or_expr()
            if not (self.token.kind == "symbol" and self.token.text == ")"):
                raise self.fail(f"Expecting ')' but got '{self.token.shown()}'.")
            self.advance()
            return node
        if token.keyword() in ("not", "!"):
            raise self.unsupported("The NOT operator before a clause", token)
        return self.clause()

    def field_name(self) -> Token:
        token = self.token
        if token.kind not in ("word", "string") or token.keyword() in ("and", "or", "order"):
            raise self.fail(f"Expecting a field name but got '{token.shown()}'.")
        return self.advance()

    def clause(self) -> Clause:
        name = self.field_name()
        op_token = self.advance()
        keyword = op_token.keyword()
        if keyword in ("=", "!="):
            op = keyword
        elif keyword == "in":
            op = "in"
        elif keyword == "not" and self.token.keyword() == "in":
            self.advance()
            op = "not in"
        elif keyword in ("<", ">", "<=", ">="):
            op = keyword
        elif keyword == "is":
            op = "is"
            if self.token.keyword() == "not":
                self.advance()
                op = "is not"
            if self.token.keyword() not in ("empty", "null"):
                raise self.fail(
                    f"Expecting 'EMPTY' or 'NULL' but got '{self.token.shown()}'.", self.token
                )
            self.advance()
            return Clause(name.text, op, (), name.offset)
        elif keyword in ("~", "!~", "was", "changed"):
            raise self.unsupported(f"The operator '{op_token.text}'", op_token)
        else:
            raise self.fail(
                f"Expecting operator but got '{op_token.shown()}'. {_VALID_OPERATORS}", op_token
            )
        values = self.value_list() if op in ("in", "not in") else (self.value(),)
        return Clause(name.text, op, values, name.offset)

    def value(self) -> str:
        token = self.token
        if token.kind == "string":
            return self.advance().text
        if token.kind == "word" and token.keyword() not in ("and", "or", "order", "not", "in"):
            if token.keyword() in _UNSUPPORTED_WORDS:
                raise self.unsupported(f"'{token.text.upper()}'", token)
            after = self.tokens[self.pos + 1]
            if after.kind == "symbol" and after.text == "(":
                raise self.unsupported(f"The function '{token.text}()'", token)
            return self.advance().text
        raise self.fail(f"Expecting either a value, list or function but got '{token.shown()}'.")

    def value_list(self) -> tuple[str, ...]:
        if not (self.token.kind == "symbol" and self.token.text == "("):
            if self.token.kind == "word" and self.tokens[self.pos + 1].text == "(":
                raise self.unsupported(f"The function '{self.token.text}()'", self.token)
            raise self.fail(f"Expecting '(' but got '{self.token.shown()}'.")
        self.advance()
        values = [self.value()]
        while self.token.kind == "symbol" and self.token.text == ",":
            self.advance()
            values.append(self.value())
        if not (self.token.kind == "symbol" and self.token.text == ")"):
            raise self.fail(f"Expecting ')' or ',' but got '{self.token.shown()}'.")
        self.advance()
        return tuple(values)

    def sort_list(self) -> tuple[SortKey, ...]:
        keys = [self.sort_key()]
        while self.token.kind == "symbol" and self.token.text == ",":
            self.advance()
            keys.append(self.sort_key())
        if len(keys) > MAX_ORDER_BY_FIELDS:
            raise JqlError(
                f"Error in the JQL Query: The ORDER BY clause can contain at most "
                f"{MAX_ORDER_BY_FIELDS} fields, got {len(keys)}."
            )
        return tuple(keys)

    def sort_key(self) -> SortKey:
        name = self.field_name()
        descending = False
        if self.token.keyword() in ("asc", "desc"):
            descending = self.advance().keyword() == "desc"
        return SortKey(name.text, descending)


def parse(text: str) -> Query:
    """Parse ``text``; raise :class:`JqlError` with a Jira-style message when it is not valid."""
    return _Parser(text).query()


# --------------------------------------------------------------------------------------------
# Evaluation

#: Values with at least this many issues keep their bit mask once built (few such values exist,
#: so memory stays bounded; rare values are cheaper to rebuild than to keep).
_MEMO_MIN_POSTINGS = 64


def _mask(indices: Iterable[int], size: int) -> int:
    buffer = bytearray((size + 7) // 8)
    for i in indices:
        buffer[i >> 3] |= 1 << (i & 7)
    return int.from_bytes(buffer, "little")


@dataclass
class FieldIndex:
    """One searchable field: value (case-folded name or id) → the issues having it."""

    display: str  # the name Jira shows in messages
    postings: dict[str, list[int]] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)  # values that exist even without issues
    _with_value: list[int] = field(default_factory=list)
    _memo: dict[str, int] = field(default_factory=dict)

    def add(self, index: int, values: Iterable[str]) -> None:
        added = False
        for value in values:
            postings = self.postings.setdefault(value.casefold(), [])
            if not postings or postings[-1] != index:
                postings.append(index)
            added = True
        if added:
            self._with_value.append(index)

    def declare(self, values: Iterable[str]) -> None:
        """Values that exist in Jira (e.g. a component) although no issue uses them."""
        self.known.update(v.casefold() for v in values)

    def exists(self, value: str) -> bool:
        key = value.casefold()
        return key in self.postings or key in self.known

    def mask(self, value: str, size: int) -> int:
        key = value.casefold()
        memo = self._memo.get(key)
        if memo is not None:
            return memo
        postings = self.postings.get(key, ())
        mask = _mask(postings, size)
        if len(postings) >= _MEMO_MIN_POSTINGS:
            self._memo[key] = mask
        return mask

    def nonempty(self, size: int) -> int:
        """Issues with any value (``!=`` and ``NOT IN`` never match an empty field, as in Jira)."""
        memo = self._memo.get("\0nonempty")
        if memo is None:
            memo = self._memo["\0nonempty"] = _mask(self._with_value, size)
        return memo


_DATE_FORMATS = ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d")


def jql_date(value: str, field_name: str) -> datetime:
    """A JQL date literal as an instant (the sandbox user's time zone is UTC)."""
    for pattern in _DATE_FORMATS:
        try:
            return datetime.strptime(value.strip(), pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise JqlError(
        f"Date value '{value}' for field '{field_name}' is invalid. Valid formats include: "
        "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format "
        "e.g. '-5d', '4w 2d'."
    )


@dataclass
class DateIndex:
    """One date field: each issue's instant (None: empty, e.g. an unresolved issue)."""

    display: str
    values: list[datetime | None] = field(default_factory=list)

    def compare(self, op: str, bound: datetime) -> int:
        """Issues whose date is ``op`` the bound (an empty date never matches, as in Jira)."""
        tests: dict[str, Callable[[datetime], bool]] = {
            "<": lambda d: d < bound,
            "<=": lambda d: d <= bound,
            ">": lambda d: d > bound,
            ">=": lambda d: d >= bound,
        }
        test = tests[op]
        return _mask(
            (i for i, d in enumerate(self.values) if d is not None and test(d)), len(self.values)
        )

    def empty(self) -> int:
        return _mask((i for i, d in enumerate(self.values) if d is None), len(self.values))


@dataclass
class Index:
    """All searchable fields of a list of issues, and the names JQL may use for each."""

    size: int = 0
    fields: dict[str, FieldIndex] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # case-folded JQL name → field key
    dates: dict[str, DateIndex] = field(default_factory=dict)

    def add_field(self, key: str, display: str, names: Iterable[str]) -> FieldIndex:
        index = self.fields.setdefault(key, FieldIndex(display))
        for name in names:
            self.aliases[name.casefold()] = key
        return index

    def add_date_field(self, key: str, display: str, names: Iterable[str]) -> DateIndex:
        """A date field; fill its ``values`` with one instant (or None) per issue, in order."""
        index = self.dates.setdefault(key, DateIndex(display))
        for name in names:
            self.aliases[name.casefold()] = key
        return index

    def _evaluate_date(self, node: Clause, target: DateIndex) -> int:
        if node.op == "is":
            return target.empty()
        if node.op == "is not":
            return _mask(range(self.size), self.size) & ~target.empty()
        if node.op not in ("<", "<=", ">", ">="):
            raise JqlError(
                f"The operator '{node.op.upper()}' is not supported by the sandbox for the date "
                f"field '{target.display}'; use <, <=, >, >= or IS [NOT] EMPTY."
            )
        return target.compare(node.op, jql_date(node.values[0], target.display))

    def field_key(self, name: str) -> str:
        key = self.aliases.get(name.casefold())
        if key is None:
            raise JqlError(
                f"Field '{name}' does not exist or you do not have permission to view it."
            )
        return key

    def evaluate(self, node: Node) -> int:
        """The bit mask of the issues matching ``node``."""
        if isinstance(node, BoolOp):
            masks = [self.evaluate(item) for item in node.items]
            result = masks[0]
            for mask in masks[1:]:
                result = (result & mask) if node.op == "and" else (result | mask)
            return result
        key = self.field_key(node.field)
        if key in self.dates:
            return self._evaluate_date(node, self.dates[key])
        target = self.fields[key]
        if node.op in ("<", "<=", ">", ">="):
            raise JqlError(
                f"The operator '{node.op}' is not supported for the field '{target.display}'."
            )
        if node.op in ("is", "is not"):
            nonempty = target.nonempty(self.size)
            return (
                nonempty if node.op == "is not" else _mask(range(self.size), self.size) & ~nonempty
            )
        matched = 0
        for value in node.values:
            if not target.exists(value):
                raise JqlError(
                    f"The value '{value}' does not exist for the field '{target.display}'."
                )
            matched |= target.mask(value, self.size)
        if node.op in ("=", "in"):
            return matched
        return target.nonempty(self.size) & ~matched

    def search(self, query: Query) -> list[int]:
        """Indices of the issues matching a bounded query, ascending."""
        if query.where is None:
            raise JqlError(UNBOUNDED)
        return mask_indices(self.evaluate(query.where))


UNBOUNDED = (
    "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
)


def mask_indices(mask: int) -> list[int]:
    """The positions of the set bits of ``mask``, ascending."""
    bits = bin(mask)[:1:-1]  # least significant bit first
    out: list[int] = []
    position = bits.find("1")
    while position != -1:
        out.append(position)
        position = bits.find("1", position + 1)
    return out
