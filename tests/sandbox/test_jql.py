"""The Jira stand-in's JQL subset: what it accepts, what it refuses, and that results are right."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import requests

from health_score_sandbox.jira import (
    Data,
    Issue,
    Settings,
    generate,
)
from health_score_sandbox.jql import UNBOUNDED, BoolOp, Clause, Index, JqlError, mask_indices, parse
from health_score_sandbox.portfolio import build_portfolio
from health_score_sandbox.server import VendorServer
from tests.jira_support import authenticated_session

SEARCH = "/rest/api/3/search/jql"

VENDOR = "jira"  # for the shared stand-in fixtures in conftest.py

http = authenticated_session  # the stand-in's Jira credentials, one session per test


@pytest.fixture(scope="module")
def data(settings: Settings) -> Data:
    return generate(build_portfolio(120, seed=11), settings)


def search_all(http: requests.Session, server: VendorServer, jql: str) -> list[str]:
    """Ids of every issue matching ``jql``, walking nextPageToken."""
    ids: list[str] = []
    body: dict[str, object] = {"jql": jql, "maxResults": 5000}
    while True:
        answer = http.post(f"{server.url}{SEARCH}", json=body)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        ids.extend(issue["id"] for issue in page["issues"])
        if page["isLast"]:
            return ids
        body["nextPageToken"] = page["nextPageToken"]


# --------------------------------------------------------------------------------------------
# The parser


def test_a_project_restriction_and_bug_definition_parse_into_an_and_of_clauses() -> None:
    query = parse("project = SUP AND issuetype = Bug AND statusCategory != Done")
    assert query.bounded
    assert query.where == BoolOp(
        "and",
        (
            Clause("project", "=", ("SUP",), 0),
            Clause("issuetype", "=", ("Bug",), 18),
            Clause("statusCategory", "!=", ("Done",), 38),
        ),
    )


def test_in_and_not_in_take_lists_of_quoted_and_unquoted_values() -> None:
    query = parse("priority IN (Highest, \"High\") and status not in ('Done', Closed)")
    assert query.where == BoolOp(
        "and",
        (
            Clause("priority", "in", ("Highest", "High"), 0),
            Clause("status", "not in", ("Done", "Closed"), 34),
        ),
    )


def test_quoted_strings_undo_jql_escapes() -> None:
    query = parse(r'component = "say \"hi\" \\ there\n\u00e9" OR component = ' + r"'it\'s'")
    assert isinstance(query.where, BoolOp)
    values = [c.values[0] for c in query.where.items if isinstance(c, Clause)]
    assert values == ['say "hi" \\ there\né', "it's"]


def test_custom_fields_are_named_by_cf_number_id_or_quoted_name() -> None:
    for text in ('cf[10042] = "x"', "customfield_10042 = x", '"Customer" = x'):
        where = parse(text).where
        assert isinstance(where, Clause)
        assert where.values == ("x",)


def test_order_by_alone_is_not_a_restriction() -> None:
    query = parse("ORDER BY key DESC, created")
    assert not query.bounded
    assert [(k.field, k.descending) for k in query.order_by] == [("key", True), ("created", False)]


def test_and_binds_tighter_than_or_and_parentheses_override_it() -> None:
    index = Index(size=4)
    letter = index.add_field("letter", "letter", ["letter"])
    number = index.add_field("number", "number", ["number"])
    for i, (a, n) in enumerate((("a", "1"), ("a", "2"), ("b", "1"), ("b", "2"))):
        letter.add(i, [a])
        number.add(i, [n])

    def hits(text: str) -> list[int]:
        where = parse(text).where
        assert where is not None
        return mask_indices(index.evaluate(where))

    assert hits("letter = b OR letter = a AND number = 1") == [0, 2, 3]
    assert hits("(letter = b OR letter = a) AND number = 1") == [0, 2]
    assert hits("letter != a") == [2, 3]
    assert hits("number NOT IN (1, 2)") == []
    assert hits("LETTER = A && Number = 2") == [1]


def dated_index() -> Index:
    """Four issues: created on the 1st, 10th, 20th and 30th of Nov 2026; the first resolved on
    Nov 15 at 12:00, the third on Nov 25; the others open."""
    index = Index(size=4)
    created = index.add_date_field("created", "created", ["created"])
    resolved = index.add_date_field("resolutiondate", "resolved", ["resolved", "resolutiondate"])
    created.values = [datetime(2026, 11, d, tzinfo=UTC) for d in (1, 10, 20, 30)]
    resolved.values = [
        datetime(2026, 11, 15, 12, tzinfo=UTC),
        None,
        datetime(2026, 11, 25, tzinfo=UTC),
        None,
    ]
    return index


def test_date_fields_compare_with_jql_dates_and_an_empty_date_never_matches() -> None:
    index = dated_index()

    def hits(text: str) -> list[int]:
        where = parse(text).where
        assert where is not None
        return mask_indices(index.evaluate(where))

    assert hits('created < "2026-11-20 00:00"') == [0, 1]
    assert hits('created <= "2026-11-20"') == [0, 1, 2]
    assert hits('created > "2026/11/20"') == [3]
    assert hits('resolved >= "2026-11-15 12:00"') == [0, 2]
    assert hits('resolved > "2026-11-15 12:00"') == [2]
    assert hits("resolved IS EMPTY") == [1, 3]
    assert hits("resolutiondate is not null") == [0, 2]


def test_open_at_an_instant_is_created_before_it_and_not_resolved_before_it() -> None:
    index = dated_index()
    jql = 'created < "{0}" AND (resolved IS EMPTY OR resolved >= "{0}")'
    where = parse(jql.format("2026-11-15 12:00")).where
    assert where is not None
    assert mask_indices(index.evaluate(where)) == [0, 1]  # issue 0 resolved at that very minute
    where = parse(jql.format("2026-11-26 00:00")).where
    assert where is not None
    assert mask_indices(index.evaluate(where)) == [1]


@pytest.mark.parametrize(
    ("jql", "fragment"),
    [
        ('created < "next tuesday"', "Date value 'next tuesday' for field 'created' is invalid"),
        ('created = "2026-11-01"', "not supported by the sandbox for the date field"),
        ("letter > a", "operator '>' is not supported for the field 'letter'"),
    ],
)
def test_dates_that_jira_would_refuse_are_refused(jql: str, fragment: str) -> None:
    index = dated_index()
    index.add_field("letter", "letter", ["letter"])
    where = parse(jql).where
    assert where is not None
    with pytest.raises(JqlError) as caught:
        index.evaluate(where)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("jql", "fragment"),
    [
        ("summary ~ crash", "operator '~'"),
        ("component IS Done", "Expecting 'EMPTY' or 'NULL'"),
        ("status WAS Done", "operator 'WAS'"),
        ("assignee = currentUser()", "function 'currentUser()'"),
        ("project IN projectsWhereUserHasRole(x)", "function"),
        ("NOT project = SUP", "NOT operator"),
        ("project = EMPTY", "'EMPTY'"),
        ('component = "unterminated', "Missing closing quote"),
        (r'component = "bad \q escape"', "illegal JQL escape"),
        ("component = a.b", "reserved JQL character"),
        ("project =", "Expecting either a value"),
        ("project SUP", "Expecting operator"),
        ("project = SUP SUP", "Expecting either 'OR' or 'AND'"),
        ("(project = SUP", "Expecting ')'"),
        ("project IN SUP", "Expecting '('"),
        ("project = SUP ORDER BY a, b, c, d, e, f, g, h", "at most 7 fields"),
    ],
)
def test_queries_outside_the_subset_are_refused_with_a_located_message(
    jql: str, fragment: str
) -> None:
    with pytest.raises(JqlError, match="Error in the JQL Query") as caught:
        parse(jql)
    assert fragment in str(caught.value)


# --------------------------------------------------------------------------------------------
# Over HTTP: refusals are Jira's 400, never a silent empty result


@pytest.mark.parametrize(
    "jql",
    [
        "summary ~ crash",
        "assignee = currentUser()",
        'component = "unterminated',
        "project = SUP AND",
        "nosuchfield = 1",
        "project = NOPE",
        "component = no-such-component",
        "priority = P0",
    ],
)
def test_the_server_answers_unparseable_or_unknown_jql_with_400_and_jira_error_body(
    http: requests.Session, server: VendorServer, jql: str
) -> None:
    for answer in (
        http.get(f"{server.url}{SEARCH}", params={"jql": jql}),
        http.post(f"{server.url}{SEARCH}", json={"jql": jql}),
        http.post(f"{server.url}/rest/api/3/search/approximate-count", json={"jql": jql}),
    ):
        assert answer.status_code == 400, answer.text
        body = answer.json()
        assert body["errors"] == {}
        assert len(body["errorMessages"]) == 1 and body["errorMessages"][0]


@pytest.mark.parametrize("jql", [None, "", "   ", "order by key desc", "ORDER BY created"])
def test_unbounded_jql_is_refused_with_400(
    http: requests.Session, server: VendorServer, jql: str | None
) -> None:
    answer = http.post(f"{server.url}{SEARCH}", json={} if jql is None else {"jql": jql})
    assert answer.status_code == 400
    assert answer.json() == {"errorMessages": [UNBOUNDED], "errors": {}}


def _brute_force(data: Data, keep: Callable[[Issue], bool]) -> list[str]:
    return [str(issue.id) for issue in data.issues if keep(issue)]


def test_accepted_queries_return_exactly_the_issues_a_plain_filter_finds(
    http: requests.Session, server: VendorServer, data: Data
) -> None:
    open_bug = {"To Do", "Backlog", "In Progress", "In Review"}
    some = sorted({c for i in data.issues for c in i.components if c.startswith("cust-")})[:5]
    cases: list[tuple[str, Callable[[Issue], bool]]] = [
        ("project = SUP", lambda i: i.project == "SUP"),
        ("project != sup", lambda i: i.project != "SUP"),
        (
            "issuetype = Bug AND statusCategory != Done",
            lambda i: i.issuetype == "Bug" and i.status in open_bug,
        ),
        ("statusCategory IN ('To Do', indeterminate)", lambda i: i.status in open_bug),
        (
            "status NOT IN (Done, Closed, Backlog)",
            lambda i: i.status not in {"Done", "Closed", "Backlog"},
        ),
        (
            "priority IN (Highest, High) OR issuetype = Story",
            lambda i: i.priority in {"Highest", "High"} or i.issuetype == "Story",
        ),
        (
            f"project = SUP AND component IN ({', '.join(repr(c) for c in some)})",
            lambda i: i.project == "SUP" and any(c in some for c in i.components),
        ),
        ("component != API", lambda i: bool(i.components) and "API" not in i.components),
        (
            "(project = OPS OR type = Task) AND priority = 2",
            lambda i: (i.project == "OPS" or i.issuetype == "Task") and i.priority == "High",
        ),
    ]
    for jql, keep in cases:
        assert sorted(search_all(http, server, jql)) == sorted(_brute_force(data, keep)), jql


def test_order_by_sorts_the_results(
    http: requests.Session, server: VendorServer, data: Data
) -> None:
    ids = search_all(http, server, "project = SUP ORDER BY key DESC")
    expected = sorted(
        (i for i in data.issues if i.project == "SUP"), key=lambda i: i.id, reverse=True
    )
    assert ids == [str(i.id) for i in expected]
    answer = http.post(f"{server.url}{SEARCH}", json={"jql": "project = SUP ORDER BY nosuch"})
    assert answer.status_code == 400
