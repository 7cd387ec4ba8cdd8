"""SOQL text from escaped literals and validated ids (pure; no settings, no HTTP)."""

from __future__ import annotations

from collections.abc import Iterable

from health_score.salesforce_ids import salesforce_id18

_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def soql_literal(value: str) -> str:
    """A SOQL string literal: quoted, with quotes, backslashes and control characters escaped."""
    if any((ord(ch) < 32 and ch not in _ESCAPES) or ch == "\x7f" for ch in value):
        raise ValueError("control characters cannot appear in a SOQL literal")
    return "'" + "".join(_ESCAPES.get(ch, ch) for ch in value) + "'"


def soql_list(values: Iterable[str]) -> str:
    """``('a','b')`` from escaped literals."""
    return "(" + ",".join(soql_literal(v) for v in values) + ")"


def soql_id_list(ids: Iterable[str]) -> str:
    """``('001…','001…')`` from ids that pass :func:`salesforce_id18` (refused otherwise)."""
    return "(" + ",".join(soql_literal(salesforce_id18(v)) for v in ids) + ")"
