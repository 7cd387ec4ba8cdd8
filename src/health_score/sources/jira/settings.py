"""The ``jira`` section of sources.yaml and the variables Jira is activated by."""

from __future__ import annotations

import re

import pydantic

from health_score.sources.http_policy import HttpSettings

NAME = "jira"
CREDENTIAL_VARS = ("JIRA_BASE_URL", "JIRA_EMAIL", "JIRA_API_TOKEN")
COMPONENT = "component"
CUSTOM_FIELD = re.compile(r"customfield_(\d{1,10})")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)


def unbalanced(jql: str) -> str | None:
    """Why ``jql`` is not one balanced expression (quotes closed, parentheses matched outside
    them), or None. It is wrapped as ``… AND (<bug_jql>)``, so ``a) OR (b`` would otherwise
    widen the query to every project."""
    depth = 0
    quote: str | None = None
    opened_at = 0
    escaped = False
    for position, ch in enumerate(jql, 1):
        if quote is not None:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote, opened_at = ch, position
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return f"')' at character {position} closes nothing"
    if quote is not None:
        return f"the quote {quote} opened at character {opened_at} is never closed"
    if depth:
        return f"{depth} '(' never closed"
    return None


class Settings(pydantic.BaseModel):
    """The ``jira`` section of sources.yaml."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    #: ``enabled: false`` switches the source off: its metrics are unavailable (never missing).
    enabled: bool = True
    #: What counts as a bug (a JQL condition without ORDER BY); the extractor adds the project
    #: (and, when chunking, customer) restriction and "open at as_of" (created before it and not
    #: resolved before it) around it. A status condition here would be today's status, wrong
    #: for a past period.
    bug_jql: str = "issuetype = Bug"
    #: How an issue names its customer: ``component`` (the mapping's jira_component is a component
    #: of jira_project_key) or a select-list custom field such as ``customfield_10042``.
    customer_field: str = COMPONENT
    #: Priority names counted in open_bugs_p1_p2 (compared case-insensitively).
    p1_p2_priorities: tuple[str, ...] = ("Highest", "High")
    #: maxResults sent with each page. Jira returns at most 100 issues a page when fields other
    #: than id/key are requested (5,000 for ids only); larger values are capped by the server.
    page_size: int = pydantic.Field(100, ge=1, le=5000)
    #: When one project-restricted query would need more pages than this, customers are split
    #: into chunks listed in the JQL and the chunks are fetched concurrently (http.max_workers).
    pages_per_query: int = pydantic.Field(20, ge=1)
    #: Upper bound on the length of a chunk's JQL.
    max_jql_chars: int = pydantic.Field(6000, ge=1000, le=100_000)
    http: HttpSettings = HttpSettings.model_validate({})

    @pydantic.field_validator("bug_jql")
    @classmethod
    def _check_bug_jql(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError(
                "must be a JQL condition, e.g. 'issuetype = Bug AND statusCategory != Done'"
            )
        if _ORDER_BY.search(value):
            raise ValueError("must not contain ORDER BY (it is wrapped in a larger query)")
        if _CONTROL.search(value):
            raise ValueError("must not contain control characters")
        if len(value) > 2000:
            raise ValueError("is longer than 2000 characters")
        problem = unbalanced(value)
        if problem:
            raise ValueError(f"must be one balanced JQL expression: {problem}")
        return value

    @pydantic.field_validator("customer_field")
    @classmethod
    def _check_customer_field(cls, value: str) -> str:
        value = value.strip()
        if value.lower() == COMPONENT:
            return COMPONENT
        if not CUSTOM_FIELD.fullmatch(value):
            raise ValueError("must be 'component' or a custom field id such as 'customfield_10042'")
        return value

    @pydantic.field_validator("p1_p2_priorities")
    @classmethod
    def _check_priorities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(v.strip() for v in value)
        if not names or any(not n for n in names):
            raise ValueError("must list at least one non-empty priority name")
        return names

    @property
    def customer_jql_field(self) -> str:
        """The customer field as JQL names it: ``component`` or ``cf[10042]``."""
        match = CUSTOM_FIELD.fullmatch(self.customer_field)
        return f"cf[{match.group(1)}]" if match else COMPONENT

    @property
    def customer_issue_field(self) -> str:
        """The key under an issue's ``fields`` that names its customer(s)."""
        return "components" if self.customer_field == COMPONENT else self.customer_field

    @property
    def fields(self) -> tuple[str, ...]:
        """The issue fields the extractor asks for (nothing else)."""
        return ("project", "priority", self.customer_issue_field)
