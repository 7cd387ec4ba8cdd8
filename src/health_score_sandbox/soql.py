"""A SOQL subset for the stand-in Salesforce: a parser, an in-memory org schema and an evaluator.

Supported: ``SELECT`` of fields (parent relationship paths such as ``Account.Name`` included),
``COUNT()``, and ``COUNT/COUNT_DISTINCT/SUM/AVG/MIN/MAX(field)`` with optional aliases; ``FROM`` one
object; ``WHERE`` with ``= != <> < <= > >=``, ``[NOT] IN (…)``, ``NOT``, ``AND``/``OR`` and
parentheses (mixing AND and OR without parentheses is refused, as Salesforce does); string, number,
boolean, null, date and datetime literals and the relative date literals in
:data:`DATE_KEYWORDS` / :data:`DATE_N_KEYWORDS`; ``GROUP BY``; ``ORDER BY … ASC|DESC NULLS
FIRST|LAST``; ``LIMIT``.

Everything else is refused with Salesforce's error codes — ``MALFORMED_QUERY`` for syntax the
subset does not know, ``INVALID_TYPE`` for an unknown object, ``INVALID_FIELD`` for an unknown field
or a literal of the wrong type — never a silent empty result. Relative date literals are evaluated
against the ``today`` the caller passes (the portfolio's reference date), never the wall clock.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import partial
from operator import itemgetter
from typing import Any

AGGREGATE_GROUP_CAP = 2000  # aggregate queries cannot page: more groups than this is an error
AGGREGATE_CAP_MESSAGE = (
    "Aggregate query does not support queryMore(), use LIMIT to restrict the results to a single "
    "batch"
)

NUMERIC_TYPES = frozenset({"double", "currency", "int", "percent"})
TEXT_TYPES = frozenset({"string", "picklist", "textarea", "email", "phone", "url"})
ID_TYPES = frozenset({"id", "reference"})
FIELD_TYPES = NUMERIC_TYPES | TEXT_TYPES | ID_TYPES | {"date", "datetime", "boolean"}
AGGREGATES = ("COUNT", "COUNT_DISTINCT", "SUM", "AVG", "MIN", "MAX")

#: Relative date literals without a number, and those taking ``:n``.
DATE_KEYWORDS = frozenset(
    [
        "TODAY",
        "YESTERDAY",
        "TOMORROW",
        "THIS_MONTH",
        "LAST_MONTH",
        "NEXT_MONTH",
        "THIS_YEAR",
        "LAST_YEAR",
        "NEXT_YEAR",
        "LAST_90_DAYS",
        "NEXT_90_DAYS",
    ]
)
DATE_N_KEYWORDS = frozenset({"LAST_N_DAYS", "NEXT_N_DAYS", "LAST_N_MONTHS", "NEXT_N_MONTHS"})

#: Real SOQL words this subset does not implement: refused by name rather than misread.
_UNSUPPORTED = frozenset(
    [
        "LIKE",
        "INCLUDES",
        "EXCLUDES",
        "HAVING",
        "OFFSET",
        "WITH",
        "USING",
        "TYPEOF",
        "FOR",
        "UPDATE",
        "ROLLUP",
        "CUBE",
    ]
)
_RESERVED = _UNSUPPORTED | frozenset(
    [
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "GROUP",
        "BY",
        "ORDER",
        "ASC",
        "DESC",
        "NULLS",
        "FIRST",
        "LAST",
        "LIMIT",
        "TRUE",
        "FALSE",
        "NULL",
    ]
)


class SoqlError(Exception):
    """A query Salesforce would refuse: HTTP status, ``errorCode`` and ``message``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        self.code = code
        self.message = message
        self.status = status
        super().__init__(f"{code}: {message}")

    def body(self) -> list[dict[str, str]]:
        return [{"message": self.message, "errorCode": self.code}]


# --------------------------------------------------------------------------------------------
# Ids


_ID_SUFFIX_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID_RE = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")


def to_id18(value: str) -> str:
    """The 18-character form of a 15- or 18-character id (the suffix recomputed from the 15)."""
    base = value[:15]
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, ch in enumerate(base[start : start + 5]) if ch.isupper())
        suffix += _ID_SUFFIX_CHARS[bits]
    return base + suffix


def is_id(value: str) -> bool:
    """A well-formed id: 15 characters, or 18 whose checksum matches the first 15."""
    if not _ID_RE.fullmatch(value):
        return False
    return len(value) == 15 or to_id18(value) == value


# --------------------------------------------------------------------------------------------
# Schema and data


@dataclass(frozen=True, slots=True)
class FieldDef:
    """One field: API name, type, and for lookups the target object and relationship name."""

    name: str
    type: str
    reference_to: str | None = None
    relationship_name: str | None = None
    label: str = ""


@dataclass
class SObject:
    """One object of the org: its fields and records (dicts keyed by field API name)."""

    name: str
    key_prefix: str
    fields: dict[str, FieldDef] = field(default_factory=dict)  # lower-cased name → field
    records: list[dict[str, Any]] = field(default_factory=list)
    label: str = ""
    _indexes: dict[str, dict[str, list[int]]] = field(default_factory=dict, repr=False)

    def add_field(self, definition: FieldDef) -> None:
        if definition.type not in FIELD_TYPES:
            raise ValueError(f"unknown field type {definition.type!r}")
        self.fields.setdefault(definition.name.lower(), definition)
        self._indexes.clear()

    def drop_field(self, name: str) -> None:
        self.fields.pop(name.lower(), None)
        self._indexes.clear()

    def field(self, name: str) -> FieldDef | None:
        return self.fields.get(name.lower())

    def relationship(self, name: str) -> FieldDef | None:
        lowered = name.lower()
        for definition in self.fields.values():
            if definition.relationship_name and definition.relationship_name.lower() == lowered:
                return definition
        return None

    def index(self, field_name: str) -> dict[str, list[int]]:
        """Record positions by the 15-character form of an id or lookup field's value."""
        index = self._indexes.get(field_name)
        if index is None:
            index = {}
            for position, record in enumerate(self.records):
                value = record.get(field_name)
                if value is not None:
                    index.setdefault(value[:15], []).append(position)
            self._indexes[field_name] = index
        return index


class Org:
    """The objects of one stand-in org, looked up case-insensitively."""

    def __init__(self, objects: Iterable[SObject] = ()) -> None:
        self.objects: dict[str, SObject] = {}
        for sobject in objects:
            self.add(sobject)

    def add(self, sobject: SObject) -> SObject:
        self.objects[sobject.name.lower()] = sobject
        return sobject

    def get(self, name: str) -> SObject | None:
        return self.objects.get(name.lower())

    def drop_object(self, name: str) -> None:
        self.objects.pop(name.lower(), None)

    def record(self, object_name: str, record_id: str) -> dict[str, Any] | None:
        sobject = self.get(object_name)
        if sobject is None:
            return None
        positions = sobject.index("Id").get(record_id[:15])
        return sobject.records[positions[0]] if positions else None


# --------------------------------------------------------------------------------------------
# Tokens


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # string, datetime, date, number, rdate, name, op, punct, end
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper()


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
    |(?P<string>'(?:[^'\\]|\\.)*')
    |(?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
    |(?P<date>\d{4}-\d{2}-\d{2}(?![\dT:]))
    |(?P<number>[+-]?\d+(?:\.\d+)?(?![\w.]))
    |(?P<rdate>[A-Za-z_]+:\d+(?![\w.]))
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    |(?P<op>!=|<>|<=|>=|=|<|>)
    |(?P<punct>[(),])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


def _malformed(query: str, pos: int, detail: str) -> SoqlError:
    """Salesforce's MALFORMED_QUERY message: the line, a caret, row and column, the detail."""
    row = query.count("\n", 0, pos) + 1
    line_start = query.rfind("\n", 0, pos) + 1
    line_end = query.find("\n", pos)
    line = query[line_start : line_end if line_end >= 0 else len(query)]
    column = pos - line_start + 1
    caret = " " * (column - 1) + "^"
    return SoqlError(
        "MALFORMED_QUERY", f"\n{line}\n{caret}\nERROR at Row:{row}:Column:{column}\n{detail}"
    )


def tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(query):
        match = _TOKEN_RE.match(query, pos)
        if match is None:
            raise _malformed(query, pos, f"unexpected token: '{query[pos : pos + 10]}'")
        kind = match.lastgroup
        assert kind is not None
        if kind != "ws":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(Token("end", "", len(query)))
    return tokens


def _unquote(query: str, token: Token) -> str:
    out: list[str] = []
    body = token.text[1:-1]
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            nxt = body[index + 1]
            if nxt not in _ESCAPES:
                raise _malformed(query, token.pos + index + 1, f"Invalid string literal '{body}'")
            out.append(_ESCAPES[nxt])
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Syntax tree


@dataclass(frozen=True, slots=True)
class FieldRef:
    path: tuple[str, ...]
    pos: int

    @property
    def text(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True, slots=True)
class Aggregate:
    function: str  # one of AGGREGATES
    field: FieldRef | None  # None only for COUNT()
    pos: int

    @property
    def text(self) -> str:
        inner = self.field.text if self.field else ""
        return f"{self.function}({inner})"


@dataclass(frozen=True, slots=True)
class SelectItem:
    expr: FieldRef | Aggregate
    alias: str | None = None


@dataclass(frozen=True, slots=True)
class Literal:
    kind: str  # string, number, boolean, null, date, datetime, relative
    value: Any
    pos: int


@dataclass(frozen=True, slots=True)
class Comparison:
    field: FieldRef
    op: str
    value: Literal


@dataclass(frozen=True, slots=True)
class InList:
    field: FieldRef
    values: tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # AND | OR
    items: tuple[Condition, ...]


Condition = Comparison | InList | Not | BoolOp


@dataclass(frozen=True, slots=True)
class OrderItem:
    expr: FieldRef | Aggregate
    descending: bool = False
    nulls_last: bool | None = None  # None: Salesforce's default (nulls first ascending)


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    select: tuple[SelectItem, ...]
    object_name: str
    object_pos: int
    where: Condition | None = None
    group_by: tuple[FieldRef, ...] = ()
    order_by: tuple[OrderItem, ...] = ()
    limit: int | None = None

    @property
    def count_only(self) -> bool:
        return any(isinstance(i.expr, Aggregate) and i.expr.field is None for i in self.select)

    @property
    def is_aggregate(self) -> bool:
        return bool(self.group_by) or any(isinstance(i.expr, Aggregate) for i in self.select)


# --------------------------------------------------------------------------------------------
# Parser


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = tokenize(query)
        self.index = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def error(self, token: Token | None = None, detail: str | None = None) -> SoqlError:
        token = token or self.tok
        if detail is None:
            if token.kind == "end":
                detail = "unexpected end of query"
            elif token.kind == "name" and token.upper in _UNSUPPORTED:
                detail = f"{token.upper} is not supported by this stand-in: '{token.text}'"
            else:
                detail = f"unexpected token: '{token.text}'"
        return _malformed(self.query, token.pos, detail)

    def is_word(self, *words: str) -> bool:
        return self.tok.kind == "name" and self.tok.upper in words

    def expect_word(self, word: str) -> Token:
        if not self.is_word(word):
            raise self.error()
        return self.advance()

    def expect_punct(self, text: str) -> Token:
        if self.tok.kind != "punct" or self.tok.text != text:
            raise self.error()
        return self.advance()

    # -- statement ------------------------------------------------------------------------------

    def parse(self) -> Query:
        self.expect_word("SELECT")
        select = self.select_list()
        self.expect_word("FROM")
        if self.tok.kind != "name" or "." in self.tok.text or self.tok.upper in _RESERVED:
            raise self.error()
        object_token = self.advance()
        where = None
        group_by: tuple[FieldRef, ...] = ()
        order_by: tuple[OrderItem, ...] = ()
        limit = None
        if self.is_word("WHERE"):
            self.advance()
            where = self.condition()
        if self.is_word("GROUP"):
            self.advance()
            self.expect_word("BY")
            group_by = tuple(self.field_list())
        if self.is_word("ORDER"):
            self.advance()
            self.expect_word("BY")
            order_by = tuple(self.order_list())
        if self.is_word("LIMIT"):
            self.advance()
            token = self.advance()
            if token.kind != "number" or not token.text.isdigit():
                raise self.error(token)
            limit = int(token.text)
        if self.tok.kind != "end":
            raise self.error()
        return Query(
            self.query,
            select,
            object_token.text,
            object_token.pos,
            where,
            group_by,
            order_by,
            limit,
        )

    def field_ref(self) -> FieldRef:
        token = self.tok
        if token.kind != "name" or token.upper in _RESERVED or token.upper in AGGREGATES:
            raise self.error()
        self.advance()
        return FieldRef(tuple(token.text.split(".")), token.pos)

    def field_list(self) -> list[FieldRef]:
        items = [self.field_ref()]
        while self.tok.kind == "punct" and self.tok.text == ",":
            self.advance()
            items.append(self.field_ref())
        return items

    def aggregate(self) -> Aggregate:
        name = self.advance()
        self.expect_punct("(")
        if self.tok.kind == "punct" and self.tok.text == ")":
            if name.upper != "COUNT":
                raise self.error()
            self.advance()
            return Aggregate("COUNT", None, name.pos)
        ref = self.field_ref()
        self.expect_punct(")")
        return Aggregate(name.upper, ref, name.pos)

    def select_item(self) -> SelectItem:
        if self.tok.kind == "punct" and self.tok.text == "(":
            raise self.error(detail="subqueries are not supported by this stand-in")
        is_call = (
            self.tok.kind == "name"
            and self.tokens[self.index + 1].kind == "punct"
            and self.tokens[self.index + 1].text == "("
        )
        expr: FieldRef | Aggregate
        if is_call:
            if self.tok.upper not in AGGREGATES:
                raise self.error(detail=f"unsupported function: '{self.tok.text}'")
            expr = self.aggregate()
        else:
            expr = self.field_ref()
        alias = None
        if self.tok.kind == "name" and self.tok.upper not in _RESERVED and "." not in self.tok.text:
            alias = self.advance().text
        elif self.tok.kind == "name" and self.tok.upper in _UNSUPPORTED:
            raise self.error()
        return SelectItem(expr, alias)

    def select_list(self) -> tuple[SelectItem, ...]:
        items = [self.select_item()]
        while self.tok.kind == "punct" and self.tok.text == ",":
            self.advance()
            items.append(self.select_item())
        return tuple(items)

    def order_list(self) -> list[OrderItem]:
        items: list[OrderItem] = []
        while True:
            is_call = (
                self.tok.kind == "name"
                and self.tok.upper in AGGREGATES
                and self.tokens[self.index + 1].text == "("
            )
            expr: FieldRef | Aggregate = self.aggregate() if is_call else self.field_ref()
            descending = False
            nulls_last: bool | None = None
            if self.is_word("ASC", "DESC"):
                descending = self.advance().upper == "DESC"
            if self.is_word("NULLS"):
                self.advance()
                if not self.is_word("FIRST", "LAST"):
                    raise self.error()
                nulls_last = self.advance().upper == "LAST"
            items.append(OrderItem(expr, descending, nulls_last))
            if not (self.tok.kind == "punct" and self.tok.text == ","):
                return items
            self.advance()

    # -- conditions -----------------------------------------------------------------------------

    def condition(self) -> Condition:
        first = self.unary()
        if not self.is_word("AND", "OR"):
            return first
        op = self.tok.upper
        items = [first]
        while self.is_word("AND", "OR"):
            if self.tok.upper != op:
                raise self.error(detail="unexpected token: mixing AND and OR needs parentheses")
            self.advance()
            items.append(self.unary())
        return BoolOp(op, tuple(items))

    def unary(self) -> Condition:
        if self.is_word("NOT"):
            self.advance()
            return Not(self.unary())
        if self.tok.kind == "punct" and self.tok.text == "(":
            self.advance()
            inner = self.condition()
            self.expect_punct(")")
            return inner
        return self.predicate()

    def predicate(self) -> Condition:
        ref = self.field_ref()
        if self.is_word("NOT"):
            self.advance()
            if not self.is_word("IN"):
                raise self.error()
            self.advance()
            return InList(ref, self.value_list(), negated=True)
        if self.is_word("IN"):
            self.advance()
            return InList(ref, self.value_list(), negated=False)
        if self.tok.kind != "op":
            raise self.error()
        op = self.advance().text
        return Comparison(ref, "!=" if op == "<>" else op, self.value())

    def value_list(self) -> tuple[Literal, ...]:
        self.expect_punct("(")
        if self.tok.kind == "punct" and self.tok.text == "(":
            raise self.error(detail="semi-join subqueries are not supported by this stand-in")
        values = [self.value()]
        while self.tok.kind == "punct" and self.tok.text == ",":
            self.advance()
            values.append(self.value())
        self.expect_punct(")")
        for literal in values:
            if literal.kind == "relative":
                raise _malformed(self.query, literal.pos, "date literals are not allowed in IN")
        return tuple(values)

    def value(self) -> Literal:
        token = self.advance()
        if token.kind == "string":
            return Literal("string", _unquote(self.query, token), token.pos)
        if token.kind == "number":
            try:
                return Literal("number", Decimal(token.text), token.pos)
            except InvalidOperation:
                raise self.error(token) from None
        if token.kind == "date":
            try:
                return Literal("date", date.fromisoformat(token.text), token.pos)
            except ValueError:
                raise self.error(token, f"invalid date: '{token.text}'") from None
        if token.kind == "datetime":
            try:
                parsed = datetime.fromisoformat(token.text.replace("Z", "+00:00"))
            except ValueError:
                raise self.error(token, f"invalid datetime: '{token.text}'") from None
            return Literal("datetime", parsed.astimezone(UTC), token.pos)
        if token.kind == "rdate":
            name, _, number = token.text.partition(":")
            if name.upper() not in DATE_N_KEYWORDS:
                raise self.error(token, f"unknown date literal: '{token.text}'")
            return Literal("relative", (name.upper(), int(number)), token.pos)
        if token.kind == "name":
            word = token.upper
            if word in ("TRUE", "FALSE"):
                return Literal("boolean", word == "TRUE", token.pos)
            if word == "NULL":
                return Literal("null", None, token.pos)
            if word in DATE_KEYWORDS:
                return Literal("relative", (word, None), token.pos)
            if word in DATE_N_KEYWORDS:
                raise self.error(token, f"date literal {word} needs ':n'")
        raise self.error(token)


def parse(query: str) -> Query:
    """Parse a SOQL query of the subset, or raise SoqlError(MALFORMED_QUERY)."""
    if not query.strip():
        raise SoqlError("MALFORMED_QUERY", "A query string must be provided")
    return _Parser(query).parse()


# --------------------------------------------------------------------------------------------
# Evaluation


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def date_range(keyword: str, n: int | None, today: date) -> tuple[date, date]:
    """The inclusive day range a relative date literal means on ``today`` (UTC)."""
    month_start = today.replace(day=1)
    if keyword == "TODAY":
        return today, today
    if keyword == "YESTERDAY":
        return today - timedelta(days=1), today - timedelta(days=1)
    if keyword == "TOMORROW":
        return today + timedelta(days=1), today + timedelta(days=1)
    if keyword == "THIS_MONTH":
        return month_start, _month_end(today)
    if keyword == "LAST_MONTH":
        start = _add_months(month_start, -1)
        return start, _month_end(start)
    if keyword == "NEXT_MONTH":
        start = _add_months(month_start, 1)
        return start, _month_end(start)
    if keyword in ("THIS_YEAR", "LAST_YEAR", "NEXT_YEAR"):
        year = today.year + {"THIS_YEAR": 0, "LAST_YEAR": -1, "NEXT_YEAR": 1}[keyword]
        return date(year, 1, 1), date(year, 12, 31)
    if keyword == "LAST_90_DAYS":
        return today - timedelta(days=90), today
    if keyword == "NEXT_90_DAYS":
        return today + timedelta(days=1), today + timedelta(days=90)
    assert n is not None
    if keyword == "LAST_N_DAYS":  # includes today
        return today - timedelta(days=n), today
    if keyword == "NEXT_N_DAYS":
        return today + timedelta(days=1), today + timedelta(days=n)
    if keyword == "LAST_N_MONTHS":  # the n whole months before the current one
        return _add_months(month_start, -n), month_start - timedelta(days=1)
    if keyword == "NEXT_N_MONTHS":  # the n whole months after the current one
        start = _add_months(month_start, 1)
        return start, _month_end(_add_months(month_start, n))
    raise ValueError(keyword)


Getter = Callable[[dict[str, Any]], Any]


def _compose(outer: Callable[[Any], Any], inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def composed(value: Any) -> Any:
        return outer(inner(value))

    return composed


@dataclass(frozen=True, slots=True)
class Resolved:
    """A field path resolved against the schema: how to read it and where it lands."""

    definition: FieldDef
    get: Getter
    output_path: tuple[str, ...]  # canonical relationship names then the field name
    objects: tuple[str, ...]  # object type at each relationship step


def _no_such_column(query: Query, ref: FieldRef, name: str, entity: str) -> SoqlError:
    return _error_at(
        query,
        ref.pos,
        "INVALID_FIELD",
        f"No such column '{name}' on entity '{entity}'. If you are attempting to use a custom "
        "field, be sure to append the '__c' after the custom field name. Please reference your "
        "WSDL or the describe call for the appropriate names.",
    )


def _error_at(query: Query, pos: int, code: str, detail: str) -> SoqlError:
    base = _malformed(query.text, pos, detail)
    return SoqlError(code, base.message)


class _Evaluator:
    def __init__(self, org: Org, query: Query, today: date, version: str) -> None:
        self.org = org
        self.query = query
        self.today = today
        self.version = version
        sobject = org.get(query.object_name)
        if sobject is None:
            raise _error_at(
                query,
                query.object_pos,
                "INVALID_TYPE",
                f"sObject type '{query.object_name}' is not supported. If you are attempting to "
                "use a custom object, be sure to append the '__c' after the entity name. Please "
                "reference your WSDL or the describe call for the appropriate names.",
            )
        self.sobject = sobject

    # -- fields ---------------------------------------------------------------------------------

    def resolve(self, ref: FieldRef) -> Resolved:
        path = list(ref.path)
        current = self.sobject
        if len(path) > 1 and path[0].lower() == current.name.lower() and current.field(path[0]):
            pass  # a field literally named like the object: keep the path as written
        elif len(path) > 1 and path[0].lower() == current.name.lower():
            path = path[1:]  # "Account.Name FROM Account" is allowed
        steps: list[FieldDef] = []
        output: list[str] = []
        objects: list[str] = []
        for name in path[:-1]:
            lookup = current.relationship(name)
            target = self.org.get(lookup.reference_to) if lookup and lookup.reference_to else None
            if lookup is None or target is None:
                raise _error_at(
                    self.query,
                    ref.pos,
                    "INVALID_FIELD",
                    f"Didn't understand relationship '{name}' in field path. If you are "
                    "attempting to use a custom relationship, be sure to append the '__r' after "
                    "the custom relationship name. Please reference your WSDL or the describe "
                    "call for the appropriate names.",
                )
            steps.append(lookup)
            assert lookup.relationship_name is not None
            output.append(lookup.relationship_name)
            objects.append(target.name)
            current = target
        definition = current.field(path[-1])
        if definition is None:
            raise _no_such_column(self.query, ref, path[-1], current.name)
        output.append(definition.name)

        def get(record: dict[str, Any]) -> Any:
            for lookup, object_name in zip(steps, objects, strict=True):
                parent_id = record.get(lookup.name)
                parent = self.org.record(object_name, parent_id) if parent_id else None
                if parent is None:
                    return None
                record = parent
            return record.get(definition.name)

        return Resolved(definition, get, tuple(output), tuple(objects))

    # -- conditions -----------------------------------------------------------------------------

    def _check_literal(self, ref: FieldRef, definition: FieldDef, literal: Literal) -> Any:
        """The literal as a comparable value of the field's type, or INVALID_FIELD."""
        kind, ftype = literal.kind, definition.type
        if kind == "null":
            return None
        ok = (
            (ftype in TEXT_TYPES and kind == "string")
            or (ftype in ID_TYPES and kind == "string")
            or (ftype in NUMERIC_TYPES and kind == "number")
            or (ftype == "boolean" and kind == "boolean")
            or (ftype == "date" and kind in ("date", "relative"))
            or (ftype == "datetime" and kind in ("datetime", "relative"))
        )
        if not ok:
            expected = {"id": "id", "reference": "id"}.get(ftype, ftype)
            quoted = "should be enclosed in quotes"
            if ftype not in TEXT_TYPES and ftype not in ID_TYPES:
                quoted = "should not be enclosed in quotes"
            raise _error_at(
                self.query,
                literal.pos,
                "INVALID_FIELD",
                f"value of filter criterion for field '{definition.name}' must be of type "
                f"{expected} and {quoted}",
            )
        if ftype in ID_TYPES:
            value = str(literal.value)
            if not is_id(value):
                raise _error_at(
                    self.query,
                    literal.pos,
                    "INVALID_QUERY_FILTER_OPERATOR",
                    f"invalid ID field: {value}",
                )
            return value[:15]
        if ftype in TEXT_TYPES:
            return str(literal.value).casefold()
        if ftype in NUMERIC_TYPES:
            return float(literal.value)
        if kind == "relative":
            keyword, n = literal.value
            return date_range(keyword, n, self.today)
        return literal.value

    @staticmethod
    def _normalise(definition: FieldDef, value: Any) -> Any:
        if value is None:
            return None
        if definition.type in ID_TYPES:
            return str(value)[:15]
        if definition.type in TEXT_TYPES:
            return str(value).casefold()
        if definition.type in NUMERIC_TYPES:
            return float(value)
        return value

    def compile(self, node: Condition) -> Callable[[dict[str, Any]], bool]:
        if isinstance(node, BoolOp):
            parts = [self.compile(item) for item in node.items]
            if node.op == "AND":
                return lambda r: all(part(r) for part in parts)
            return lambda r: any(part(r) for part in parts)
        if isinstance(node, Not):
            inner = self.compile(node.item)
            return lambda r: not inner(r)
        if isinstance(node, InList):
            resolved = self.resolve(node.field)
            definition = resolved.definition
            values = {self._check_literal(node.field, definition, v) for v in node.values}
            get, negated = resolved.get, node.negated

            def in_list(record: dict[str, Any]) -> bool:
                value = self._normalise(definition, get(record))
                return (value not in values) if negated else (value in values)

            return in_list
        return self._comparison(node)

    def _comparison(self, node: Comparison) -> Callable[[dict[str, Any]], bool]:
        resolved = self.resolve(node.field)
        definition = resolved.definition
        target = self._check_literal(node.field, definition, node.value)
        op, get = node.op, resolved.get
        if target is None and op not in ("=", "!="):
            raise _error_at(
                self.query, node.value.pos, "MALFORMED_QUERY", f"null is not allowed with {op}"
            )
        if definition.type == "boolean" and op not in ("=", "!="):
            raise _error_at(
                self.query,
                node.value.pos,
                "INVALID_FIELD",
                f"invalid operator on boolean field: {definition.name}",
            )
        is_range = node.value.kind == "relative"
        is_datetime = definition.type == "datetime"

        def compare(record: dict[str, Any]) -> bool:
            value = self._normalise(definition, get(record))
            if target is None:
                return (value is None) == (op == "=")
            if value is None:
                return op == "!="  # SOQL: != and NOT IN match nulls
            if is_range:
                day = value.astimezone(UTC).date() if is_datetime else value
                start, end = target
                inside = start <= day <= end
                return bool(
                    {
                        "=": inside,
                        "!=": not inside,
                        "<": day < start,
                        "<=": day <= end,
                        ">": day > end,
                        ">=": day >= start,
                    }[op]
                )
            result = {
                "=": value == target,
                "!=": value != target,
                "<": value < target,
                "<=": value <= target,
                ">": value > target,
                ">=": value >= target,
            }[op]
            return bool(result)

        return compare

    def candidates(self) -> Iterable[dict[str, Any]]:
        """Records worth testing: narrowed by an id/lookup ``=``/``IN`` at the top level."""
        where = self.query.where
        items: Sequence[Condition] = ()
        if isinstance(where, BoolOp) and where.op == "AND":
            items = where.items
        elif where is not None:
            items = (where,)
        for item in items:
            ref: FieldRef | None = None
            literals: tuple[Literal, ...] = ()
            if isinstance(item, InList) and not item.negated:
                ref, literals = item.field, item.values
            elif isinstance(item, Comparison) and item.op == "=":
                ref, literals = item.field, (item.value,)
            if ref is None or len(ref.path) != 1:
                continue
            definition = self.sobject.field(ref.path[0])
            if definition is None or definition.type not in ID_TYPES:
                continue
            keys = {self._check_literal(ref, definition, literal) for literal in literals}
            index = self.sobject.index(definition.name)
            positions = sorted({p for key in keys if key for p in index.get(key, ())})
            return (self.sobject.records[p] for p in positions)
        return self.sobject.records

    # -- results --------------------------------------------------------------------------------

    def serialise(self, value: Any, definition: FieldDef) -> Any:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        if isinstance(value, date):
            return value.isoformat()
        if definition.type == "int" and isinstance(value, int | float):
            return int(value)
        if isinstance(value, Decimal):
            return float(value)
        if definition.type in ID_TYPES and isinstance(value, str):
            return to_id18(value)
        return value

    def attributes(self, object_name: str, record_id: str | None) -> dict[str, str]:
        attrs = {"type": object_name}
        if record_id:
            attrs["url"] = f"/services/data/v{self.version}/sobjects/{object_name}/{record_id}"
        return attrs

    def run(self, include_deleted: bool) -> tuple[int, list[dict[str, Any]]]:
        query = self.query
        if query.count_only and (len(query.select) != 1 or query.group_by or query.order_by):
            raise _malformed(
                query.text, query.select[0].expr.pos, "COUNT() must be the only field selected"
            )
        where = self.compile(query.where) if query.where is not None else None
        rows = [
            record
            for record in self.candidates()
            # queryAll (include_deleted) also returns archived records (Events older than a year).
            if (include_deleted or not (record.get("IsDeleted") or record.get("IsArchived")))
            and (where is None or where(record))
        ]
        if query.count_only:
            total = len(rows) if query.limit is None else min(len(rows), query.limit)
            return total, []
        if query.is_aggregate:
            return self.aggregate(rows)
        return self.records(rows)

    def _sort_key(self, descending: bool, nulls_last: bool | None) -> Callable[[Any], Any]:
        nulls_go_last = nulls_last if nulls_last is not None else descending

        def key(value: Any) -> tuple[int, Any]:
            if value is None:
                return (1 if nulls_go_last != descending else 0, 0)
            if isinstance(value, str):
                value = value.casefold()
            return (0 if nulls_go_last != descending else 1, value)

        return key

    def _sorted(
        self, rows: list[Any], keys: Sequence[tuple[Callable[[Any], Any], OrderItem]]
    ) -> list[Any]:
        for get, item in reversed(keys):
            key = self._sort_key(item.descending, item.nulls_last)
            rows.sort(key=_compose(key, get), reverse=item.descending)
        return rows

    def records(self, rows: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
        query = self.query
        columns: list[Resolved] = []
        seen: set[tuple[str, ...]] = set()
        for item in query.select:
            assert isinstance(item.expr, FieldRef)
            if item.alias is not None:
                raise _malformed(query.text, item.expr.pos, f"unexpected token: '{item.alias}'")
            resolved = self.resolve(item.expr)
            lowered = tuple(p.lower() for p in resolved.output_path)
            if lowered in seen:
                raise _malformed(
                    query.text, item.expr.pos, f"duplicate field selected: {item.expr.text}"
                )
            seen.add(lowered)
            columns.append(resolved)
        if query.order_by:
            order: list[tuple[Callable[[Any], Any], OrderItem]] = []
            for order_item in query.order_by:
                if isinstance(order_item.expr, Aggregate):
                    raise _malformed(
                        query.text, order_item.expr.pos, "aggregate in ORDER BY needs GROUP BY"
                    )
                resolved = self.resolve(order_item.expr)
                definition, get = resolved.definition, resolved.get
                order.append((_compose(partial(self._normalise, definition), get), order_item))
            rows = self._sorted(list(rows), order)
        if query.limit is not None:
            rows = rows[: query.limit]
        out = [self._record(record, columns) for record in rows]
        return len(out), out

    def _record(self, record: dict[str, Any], columns: list[Resolved]) -> dict[str, Any]:
        result: dict[str, Any] = {"attributes": self.attributes(self.sobject.name, record["Id"])}
        for column in columns:
            value = self.serialise(column.get(record), column.definition)
            if len(column.output_path) == 1:
                result[column.output_path[0]] = value
                continue
            # Parent fields nest under the relationship name; a missing parent is null.
            holder: dict[str, Any] | None = result
            source: dict[str, Any] | None = record
            for depth, name in enumerate(column.output_path[:-1]):
                assert holder is not None and source is not None
                lookup = self._lookup_for(depth, column)
                parent_id = source.get(lookup.name)
                parent = self.org.record(column.objects[depth], parent_id) if parent_id else None
                if parent is None:
                    holder.setdefault(name, None)
                    holder = None
                    break
                child = holder.get(name)
                if child is None:
                    child = {"attributes": self.attributes(column.objects[depth], parent["Id"])}
                    holder[name] = child
                holder, source = child, parent
            if holder is not None:
                holder[column.output_path[-1]] = value
        return result

    def _lookup_for(self, depth: int, column: Resolved) -> FieldDef:
        current = self.sobject if depth == 0 else self.org.get(column.objects[depth - 1])
        assert current is not None
        lookup = current.relationship(column.output_path[depth])
        assert lookup is not None
        return lookup

    def aggregate(self, rows: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
        query = self.query
        groups = [self.resolve(ref) for ref in query.group_by]
        for ref, resolved in zip(query.group_by, groups, strict=True):
            if resolved.definition.type in ("double", "currency", "percent", "textarea"):
                raise _malformed(
                    query.text,
                    ref.pos,
                    f"field '{resolved.definition.name}' can not be grouped in a query call",
                )
        group_keys = [tuple(p.lower() for p in g.output_path) for g in groups]
        columns: list[tuple[str, Any]] = []  # (output name, Resolved index or Aggregate)
        names: set[str] = set()
        expr_number = 0
        for item in query.select:
            expr = item.expr
            if isinstance(expr, FieldRef):
                resolved = self.resolve(expr)
                key = tuple(p.lower() for p in resolved.output_path)
                if key not in group_keys:
                    raise _malformed(
                        query.text, expr.pos, f"Field must be grouped or aggregated: {expr.text}"
                    )
                name = item.alias or resolved.output_path[-1]
                columns.append((name, group_keys.index(key)))
            else:
                self._check_aggregate(expr)
                if item.alias:
                    name = item.alias
                else:
                    name = f"expr{expr_number}"
                    expr_number += 1
                columns.append((name, expr))
            if name.lower() in names:
                raise _malformed(query.text, expr.pos, f"duplicate alias: {name}")
            names.add(name.lower())
        buckets: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for record in rows:
            key = tuple(self._normalise(g.definition, g.get(record)) for g in groups)
            buckets.setdefault(key, []).append(record)
        if not groups:
            buckets = {(): rows}
        results: list[tuple[tuple[Any, ...], list[dict[str, Any]]]] = list(buckets.items())
        if query.order_by:
            order: list[tuple[Callable[[Any], Any], OrderItem]] = []
            for order_item in query.order_by:
                if isinstance(order_item.expr, Aggregate):
                    self._check_aggregate(order_item.expr)
                    agg = order_item.expr
                    order.append((_compose(partial(self._apply, agg), itemgetter(1)), order_item))
                    continue
                resolved = self.resolve(order_item.expr)
                key = tuple(p.lower() for p in resolved.output_path)
                if key not in group_keys:
                    raise _malformed(
                        query.text,
                        order_item.expr.pos,
                        f"Ordered field must be grouped or aggregated: {order_item.expr.text}",
                    )
                position = group_keys.index(key)
                order.append((_compose(itemgetter(position), itemgetter(0)), order_item))
            results = self._sorted(results, order)
        if query.limit is not None:
            results = results[: query.limit]
        if len(results) > AGGREGATE_GROUP_CAP:
            raise SoqlError("MALFORMED_QUERY", AGGREGATE_CAP_MESSAGE)
        out: list[dict[str, Any]] = []
        for _key, members in results:
            row: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
            for name, column in columns:
                if isinstance(column, int):
                    resolved = groups[column]
                    row[name] = self.serialise(resolved.get(members[0]), resolved.definition)
                else:
                    row[name] = self._serialise_aggregate(column, self._apply(column, members))
            out.append(row)
        return len(out), out

    def _check_aggregate(self, agg: Aggregate) -> None:
        if agg.field is None:
            raise _malformed(self.query.text, agg.pos, "COUNT() must be the only field selected")
        definition = self.resolve(agg.field).definition
        numeric_only = agg.function in ("SUM", "AVG")
        if (numeric_only and definition.type not in NUMERIC_TYPES) or (
            agg.function in ("MIN", "MAX") and definition.type == "boolean"
        ):
            raise _malformed(
                self.query.text,
                agg.pos,
                f"field {definition.name} does not support aggregate operator {agg.function}",
            )

    def _apply(self, agg: Aggregate, members: list[dict[str, Any]]) -> Any:
        assert agg.field is not None
        resolved = self.resolve(agg.field)
        values = [v for v in (resolved.get(r) for r in members) if v is not None]
        if agg.function == "COUNT":
            return len(values)
        if agg.function == "COUNT_DISTINCT":
            return len({self._normalise(resolved.definition, v) for v in values})
        if not values:
            return None
        if agg.function == "SUM":
            return sum(float(v) for v in values)
        if agg.function == "AVG":
            return sum(float(v) for v in values) / len(values)
        return max(values) if agg.function == "MAX" else min(values)

    def _serialise_aggregate(self, agg: Aggregate, value: Any) -> Any:
        assert agg.field is not None
        if agg.function in ("COUNT", "COUNT_DISTINCT"):
            return value
        definition = self.resolve(agg.field).definition
        if agg.function in ("SUM", "AVG"):
            return value
        return self.serialise(value, definition)


@dataclass(frozen=True, slots=True)
class QueryResult:
    """What a query produced before paging: the size and the serialised rows."""

    total_size: int
    records: list[dict[str, Any]]
    aggregate: bool


def execute(
    org: Org, soql: str, *, today: date, version: str = "62.0", include_deleted: bool = False
) -> QueryResult:
    """Parse and run ``soql`` against ``org``; raise SoqlError for what Salesforce would refuse."""
    query = parse(soql)
    total, rows = _Evaluator(org, query, today, version).run(include_deleted)
    return QueryResult(total, rows, query.is_aggregate and not query.count_only)
