"""``jira.bug_jql`` must be one balanced expression before it is wrapped in ``… AND (…)``."""

from __future__ import annotations

import pydantic
import pytest

from health_score.sources.jira.settings import Settings, unbalanced


@pytest.mark.parametrize(
    "jql",
    [
        "issuetype = Bug AND statusCategory != Done",
        'summary ~ "a (b" AND (labels = x OR labels = y)',
        "labels = 'it''s'",  # two adjacent single-quoted strings: each closed
        'summary ~ "say \\"hi\\" (now"',  # escaped quotes inside a string
    ],
)
def test_balanced_conditions_are_accepted(jql: str) -> None:
    assert unbalanced(jql) is None
    assert Settings.model_validate({"bug_jql": jql}).bug_jql == jql


@pytest.mark.parametrize(
    ("jql", "problem"),
    [
        ("issuetype = Bug) OR (project = SECRET", "')' at character 16 closes nothing"),
        ("(issuetype = Bug", "1 '(' never closed"),
        ('summary ~ "open', 'the quote " opened at character 11 is never closed'),
        ("labels = 'x", "the quote ' opened at character 10 is never closed"),
    ],
)
def test_unbalanced_conditions_are_refused_with_where(jql: str, problem: str) -> None:
    assert unbalanced(jql) == problem
    with pytest.raises(pydantic.ValidationError, match="must be one balanced JQL expression"):
        Settings.model_validate({"bug_jql": jql})
