"""The CSV formula-injection rule (:mod:`health_score.csvsafe`), pinned with literals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from health_score.csvsafe import safe_cell, safe_column, unescape_cell


@pytest.mark.parametrize(
    ("text", "guarded"),
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("@SUM(1)", "'@SUM(1)"),
        ("-2+3", "'-2+3"),
        ("+cmd", "'+cmd"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-", "'-"),
        ("-inf", "'-inf"),
        # Quotes before a trigger get one more, so the guard can be undone exactly.
        ("'=x", "''=x"),
        ("'-3.5", "''-3.5"),
    ],
)
def test_text_that_starts_like_a_formula_gets_a_leading_quote(text: str, guarded: str) -> None:
    assert safe_cell(text) == guarded


@pytest.mark.parametrize(
    "text",
    ["-3.5", "+2", "-0.0001", "1E+3", "-1e-7", ".5", "-.5", "12.", "93.5", "0", ""],
)
def test_a_plain_number_is_left_as_it_is(text: str) -> None:
    assert safe_cell(text) == text


@pytest.mark.parametrize(
    "text", ["Acme Corp", "'hello", " =1", "a=b", "1-2", "Healthy", "critical_1plus", "x@y"]
)
def test_text_that_does_not_start_like_a_formula_is_left_as_it_is(text: str) -> None:
    assert safe_cell(text) == text


def test_unescaping_gives_back_the_original() -> None:
    assert unescape_cell('\'=HYPERLINK("http://x","y")') == '=HYPERLINK("http://x","y")'
    assert unescape_cell("''=x") == "'=x"
    assert unescape_cell("'hello") == "'hello"
    assert unescape_cell("-3.5") == "-3.5"


@given(st.text(alphabet="=+-@\t\r'0123456789.eE ab", max_size=8))
def test_the_guard_round_trips_and_never_leaves_a_formula_start(text: str) -> None:
    guarded = safe_cell(text)
    assert unescape_cell(guarded) == text
    assert not guarded.startswith(("=", "+", "-", "@", "\t", "\r")) or guarded == text


def test_a_column_is_guarded_cell_by_cell_and_returned_as_is_when_clean() -> None:
    clean = ["93.5", "", "Acme"]
    assert safe_column(clean) is clean
    assert list(safe_column(["Acme", "=1+2", "-3.5", "@x"])) == ["Acme", "'=1+2", "-3.5", "'@x"]
    assert list(safe_column(["'=x"])) == ["''=x"]
