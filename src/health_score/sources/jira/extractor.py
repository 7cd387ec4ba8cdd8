"""Jira Cloud extraction: open bugs per customer from one bounded JQL search.

Only ``/rest/api/3/search/jql`` is used (the old ``/rest/api/3/search`` answers 410 Gone). The
search is restricted to the mapped projects and the organisation's bug definition from
``sources.yaml`` and to the bugs open at the run's ``as_of`` (created before it and not resolved
before it: a dated condition, so a past period counts the bugs open then, not today), asks only
for the fields needed to attribute and classify a bug, pages with
``nextPageToken`` and groups issues by customer on the client. When the approximate count says
one query would take many pages, the customers are split into chunks listed in the JQL (each
chunk's JQL kept under a length limit) and the chunks are fetched concurrently.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import requests

from health_score.deadline import Deadline
from health_score.records import Account
from health_score.redact import register_secret
from health_score.sources.base import SourceResult
from health_score.sources.http import SourceClient, SourceError
from health_score.sources.jira.metrics import (
    METRICS,
    Bug,
    customer_owners,
    customer_values,
    open_bug_metrics,
)
from health_score.sources.jira.settings import CREDENTIAL_VARS, NAME, Settings

log = logging.getLogger(__name__)

SEARCH_PATH = "/rest/api/3/search/jql"
COUNT_PATH = "/rest/api/3/search/approximate-count"


def jql_string(value: str) -> str:
    """``value`` as a double-quoted JQL string literal, escaped so it cannot end the literal."""
    out = ['"']
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def jql_list(values: Sequence[str]) -> str:
    return "(" + ", ".join(jql_string(v) for v in values) + ")"


def open_at(as_of: datetime) -> str:
    """The JQL condition "open at ``as_of``": created before it, unresolved or resolved since.

    JQL dates carry no zone (Jira reads them in the user's time zone) and stop at minutes; the
    instant is written in UTC, so the integration user's Jira time zone should be UTC.
    """
    stamp = jql_string(as_of.astimezone(UTC).strftime("%Y-%m-%d %H:%M"))
    return f"created < {stamp} AND (resolved IS EMPTY OR resolved >= {stamp})"


class JiraExtractor:
    """One pass over Jira for all accounts; see the module docstring."""

    name = NAME

    def __init__(
        self,
        settings: Settings,
        base_url: str,
        email: str,
        api_token: str,
        *,
        session: requests.Session | None = None,
        verify: str | None = None,
        deadline: Deadline | None = None,
        as_of: datetime | None = None,
    ) -> None:
        self.settings = settings
        as_of = as_of or datetime.now(UTC)
        if as_of.tzinfo is None:
            raise ValueError("as_of must be timezone-aware (UTC)")
        self.as_of = as_of.astimezone(UTC)
        #: The bug definition at as_of, as every query sends it.
        self.bug_condition = f"({settings.bug_jql}) AND {open_at(self.as_of)}"
        basic = base64.b64encode(f"{email}:{api_token}".encode()).decode("ascii")
        register_secret(api_token)
        register_secret(basic)
        header = {"Authorization": f"Basic {basic}", "Accept": "application/json"}
        self.client = SourceClient(
            NAME,
            base_url,
            session=session,
            policy=settings.http.policy(deadline),
            authenticate=lambda: header,
            credential_hint="JIRA_EMAIL / JIRA_API_TOKEN",
            verify=verify,
        )
        self._priorities = frozenset(p.casefold() for p in settings.p1_p2_priorities)

    @property
    def provides(self) -> frozenset[str]:
        return frozenset(METRICS)

    @property
    def requests_made(self) -> int:
        return self.client.requests

    # -- the pass ----------------------------------------------------------------------------

    def extract(self, accounts: Sequence[Account]) -> SourceResult:
        owners = customer_owners(accounts)
        notes: list[str] = []
        bugs = self._fetch(accounts, notes) if owners else {}
        metrics, unattributed = open_bug_metrics(accounts, owners, bugs.values(), self._priorities)
        if unattributed:
            notes.append(
                f"{unattributed} open bug(s) in the mapped projects name no mapped customer"
            )
        return SourceResult(
            NAME, metrics, self.client.requests, notes=tuple(notes), window=(None, self.as_of)
        )

    def _fetch(self, accounts: Sequence[Account], notes: list[str]) -> dict[str, Bug]:
        customers = sorted(
            {
                (a.jira_project_key, a.jira_component)
                for a in accounts
                if a.jira_project_key and a.jira_component
            }
        )
        projects = sorted({project for project, _ in customers})
        project_jql = f"project IN {jql_list(projects)} AND {self.bug_condition}"
        count = self._approximate_count(project_jql)
        pages = math.ceil(count / self.settings.page_size)
        if pages <= self.settings.pages_per_query:
            return self._collect([project_jql])
        chunks = self.customer_chunks(customers, math.ceil(pages / self.settings.pages_per_query))
        try:
            return self._collect(chunks)
        except SourceError as exc:
            if exc.status != 400:
                raise
            # Listing customers makes Jira check each value exists; one stale mapping row makes
            # the chunk invalid. The project query needs no values: slower, still correct.
            log.warning("jira: customer chunks refused (%s); using one project query", exc)
            notes.append(f"customer chunks refused by Jira ({exc}); fell back to one project query")
            return self._collect([project_jql])

    def customer_chunks(self, customers: Sequence[tuple[str, str]], parts: int) -> list[str]:
        """JQL for ``parts`` (or more, to respect max_jql_chars) slices of the customers."""
        per_chunk = max(1, math.ceil(len(customers) / max(parts, 1)))
        field = self.settings.customer_jql_field
        # Room for the project clauses and the bug definition around the listed values.
        overhead = len(self.bug_condition) + 64
        chunks: list[list[tuple[str, str]]] = []
        current: list[tuple[str, str]] = []
        length = overhead
        for project, customer in customers:
            cost = len(jql_string(customer)) + 2
            if current and current[-1][0] != project:
                cost += len(project) + len(field) + 40
            if current and (
                len(current) >= per_chunk or length + cost > self.settings.max_jql_chars
            ):
                chunks.append(current)
                current, length = [], overhead
            current.append((project, customer))
            length += cost
        if current:
            chunks.append(current)
        return [self._chunk_jql(chunk) for chunk in chunks]

    def _chunk_jql(self, chunk: Sequence[tuple[str, str]]) -> str:
        by_project: dict[str, list[str]] = {}
        for project, customer in chunk:
            by_project.setdefault(project, []).append(customer)
        field = self.settings.customer_jql_field
        parts = [
            f"(project = {jql_string(project)} AND {field} IN {jql_list(values)})"
            for project, values in by_project.items()
        ]
        restriction = parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"
        return f"{restriction} AND {self.bug_condition}"

    def _collect(self, queries: Sequence[str]) -> dict[str, Bug]:
        bugs: dict[str, Bug] = {}
        if len(queries) == 1:
            results = [dict(self._search(queries[0]))]
        else:
            workers = min(self.settings.http.max_workers, len(queries))
            with ThreadPoolExecutor(workers, thread_name_prefix="jira") as pool:
                results = list(pool.map(lambda jql: dict(self._search(jql)), queries))
        for result in results:
            bugs.update(result)  # an issue naming customers of two chunks is counted once
        return bugs

    # -- HTTP --------------------------------------------------------------------------------

    def _approximate_count(self, jql: str) -> int:
        body = self.client.post_json(COUNT_PATH, json={"jql": jql})
        count = body.get("count") if isinstance(body, Mapping) else None
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise SourceError(NAME, f"POST {COUNT_PATH}", "response has no integer 'count'")
        return count

    def _search(self, jql: str) -> Iterator[tuple[str, Bug]]:
        """Every issue of ``jql``, following nextPageToken; refuses a token seen before."""
        endpoint = f"POST {SEARCH_PATH}"
        token: str | None = None
        seen: set[str] = set()
        while True:
            body: dict[str, Any] = {
                "jql": jql,
                "fields": list(self.settings.fields),
                "maxResults": self.settings.page_size,
            }
            if token is not None:
                body["nextPageToken"] = token
            page = self.client.post_json(SEARCH_PATH, json=body)
            issues = page.get("issues") if isinstance(page, Mapping) else None
            if not isinstance(issues, list):
                raise SourceError(NAME, endpoint, "response has no 'issues' list")
            for issue in issues:
                yield self._bug(issue, endpoint)
            token = page.get("nextPageToken")
            if page.get("isLast") is True or not token:
                return
            if not isinstance(token, str):
                raise SourceError(NAME, endpoint, "nextPageToken is not a string")
            if token in seen:
                raise SourceError(NAME, endpoint, "loop detected: Jira repeated a nextPageToken")
            seen.add(token)

    def _bug(self, issue: object, endpoint: str) -> tuple[str, Bug]:
        fields = issue.get("fields") if isinstance(issue, Mapping) else None
        if not isinstance(issue, Mapping) or not isinstance(fields, Mapping):
            raise SourceError(NAME, endpoint, "an issue lacks its fields")
        issue_id = issue.get("id")
        project = fields.get("project")
        project_key = project.get("key") if isinstance(project, Mapping) else None
        if not isinstance(issue_id, str) or not isinstance(project_key, str):
            raise SourceError(NAME, endpoint, "an issue lacks its id or fields.project.key")
        customers = customer_values(fields.get(self.settings.customer_issue_field))
        priority = fields.get("priority")
        name = priority.get("name") if isinstance(priority, Mapping) else None
        return issue_id, Bug(project_key, customers, name if isinstance(name, str) else None)


def from_env(
    settings: Settings,
    env: Mapping[str, str],
    *,
    session: requests.Session | None = None,
    as_of: datetime | None = None,
    deadline: Deadline | None = None,
) -> JiraExtractor | None:
    """The Jira extractor when JIRA_BASE_URL, JIRA_EMAIL and JIRA_API_TOKEN are all set.

    ``as_of`` (default now) is the instant the bugs are counted open at.
    """
    values = {name: env.get(name, "").strip() for name in CREDENTIAL_VARS}
    if not all(values.values()):
        present = [name for name, value in values.items() if value]
        if present:
            missing = [name for name, value in values.items() if not value]
            log.warning("jira: %s set but %s missing; Jira is not activated", present, missing)
        return None
    return JiraExtractor(
        settings,
        values["JIRA_BASE_URL"],
        values["JIRA_EMAIL"],
        values["JIRA_API_TOKEN"],
        session=session,
        verify=env.get("REQUESTS_CA_BUNDLE") or None,
        deadline=deadline,
        as_of=as_of,
    )
