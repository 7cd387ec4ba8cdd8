"""CSV formula-injection guard for the CSVs meant for people (OWASP "CSV Injection").

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in some, tab or
carriage return) as a formula: an account name ``=HYPERLINK("http://x","y")`` becomes a link.
:func:`safe_cell` prefixes such a text cell with a single quote, so it is read as text.

Numbers stay numbers: the decision is made on the cell's text, and a cell that is a plain decimal
number (``-3.5``, ``+2``, ``1E+3``) is left alone. A text that already starts with quotes before
one of those characters gets one more quote, so :func:`unescape_cell` gives back exactly the
original (readers of our own files, such as the dashboard, undo the guard).

``raw.csv`` is deliberately not guarded: it is the input format, re-read by ``--from-raw``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: First characters that make a spreadsheet read a cell as a formula (OWASP's list).
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_QUOTE = "'"


def _needs_guard(text: str) -> bool:
    bare = text.lstrip(_QUOTE)
    if not bare.startswith(TRIGGERS):
        return False
    # Quotes before a trigger: always guarded (so unescaping is exact); a bare number: never.
    return len(bare) != len(text) or not _NUMBER.fullmatch(text)


def safe_cell(text: str) -> str:
    """``text`` as a spreadsheet will show it as text: ``'`` before a formula-like start."""
    return _QUOTE + text if _needs_guard(text) else text


def unescape_cell(text: str) -> str:
    """The inverse of :func:`safe_cell`."""
    if text.startswith(_QUOTE) and text.lstrip(_QUOTE).startswith(TRIGGERS):
        return text[1:]
    return text


def safe_column(cells: Sequence[str]) -> Sequence[str]:
    """:func:`safe_cell` of every cell; the column itself when no cell starts like a formula
    (one scan in C, so number columns of a big run cost next to nothing)."""
    joined = "\x00" + "\x00".join(cells)
    if not any(f"\x00{start}" in joined for start in (*TRIGGERS, _QUOTE)):
        return cells
    return [safe_cell(c) for c in cells]
