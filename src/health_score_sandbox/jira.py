"""The Jira Cloud stand-in: synthetic issues served through ``/rest/api/3/search/jql``.

Customers are components of a support project (or, when ``sources.yaml`` says so, options of a
select-list custom field). Every mapped account that Jira knows gets open bugs around its profile's
``open_bugs_total`` / ``open_bugs_p1_p2`` targets, plus closed bugs and other issue types; there is
noise an extractor must not count (internal bugs without a customer, a second project whose
components reuse customer names). Accounts absent from Jira have no issues.

The server speaks Jira's wire format: basic auth (email + API token), ``GET|POST
/rest/api/3/search/jql`` with a JQL subset (:mod:`health_score_sandbox.jql`), ``fields`` selection
(``id`` only by default), ``maxResults`` capped at 5,000 for ids/keys and 100 otherwise,
opaque and stable ``nextPageToken`` / ``isLast`` paging, ``POST
/rest/api/3/search/approximate-count``, errors as ``{"errorMessages": […], "errors": {}}``, 400 for
unbounded or unparseable JQL, 410 Gone on the removed ``/rest/api/3/search``, and 429 with
``Retry-After`` and ``X-RateLimit-*`` headers. The same search endpoints answer under
``/rest/api/2`` (v2 differs from v3 only in rich-text fields, which the stand-in does not serve),
and ``GET /rest/api/{2,3}/serverInfo`` (``deploymentType: Cloud``) and ``GET
/rest/api/{2,3}/field`` exist, so Jira's own Python client (``jira``) works against it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import random
import threading
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from health_score_sandbox.config import SectionLike, read_settings
from health_score_sandbox.jql import UNBOUNDED, Index, JqlError, SortKey, parse
from health_score_sandbox.portfolio import Account, Portfolio
from health_score_sandbox.server import HttpError, Request, Response, VendorApp
from health_score_sandbox.timeline import Timeline, month_of

OPEN_BUGS_TOTAL = "open_bugs_total"
OPEN_BUGS_P1_P2 = "open_bugs_p1_p2"
METRICS = (OPEN_BUGS_TOTAL, OPEN_BUGS_P1_P2)
COMPONENT = "component"


@dataclass(frozen=True, slots=True)
class Settings:
    """The ``jira:`` keys of sources.yaml this stand-in reads (defaults as documented).

    ``customer_field`` is ``component`` (customers are components of the support project) or a
    select-list custom field id such as ``customfield_10042``.
    """

    bug_jql: str = "issuetype = Bug"
    customer_field: str = COMPONENT
    p1_p2_priorities: tuple[str, ...] = ("Highest", "High")

    def __post_init__(self) -> None:
        object.__setattr__(self, "bug_jql", self.bug_jql.strip())
        field_id = self.customer_field.strip()
        object.__setattr__(
            self, "customer_field", COMPONENT if field_id.lower() == COMPONENT else field_id
        )

    @classmethod
    def of(cls, source: SectionLike = None) -> Settings:
        """This stand-in's settings from a sources.yaml section (see :func:`read_settings`)."""
        return read_settings(cls, {} if source is None else source)


SANDBOX_EMAIL = "sandbox-bot@example.com"
SANDBOX_API_TOKEN = "sandbox-jira-api-token"  # noqa: S105 - a fake credential for the stand-in

SEARCH_PATH = "/rest/api/3/search/jql"
COUNT_PATH = "/rest/api/3/search/approximate-count"
#: The REST API versions served: the same resources under /rest/api/2 and /rest/api/3.
API_VERSIONS = ("2", "3")
SEARCH_PATHS = frozenset(f"/rest/api/{v}/search/jql" for v in API_VERSIONS)
COUNT_PATHS = frozenset(f"/rest/api/{v}/search/approximate-count" for v in API_VERSIONS)
SERVER_INFO_PATHS = frozenset(f"/rest/api/{v}/serverInfo" for v in API_VERSIONS)
FIELD_PATHS = frozenset(f"/rest/api/{v}/field" for v in API_VERSIONS)
SERVER_TITLE = "Sandbox Jira"
#: Searchable system fields as GET /field lists them: id, name, JQL clause names, schema type.
SYSTEM_FIELDS = (
    ("summary", "Summary", ("summary",), "string"),
    ("issuetype", "Issue Type", ("issuetype", "type"), "issuetype"),
    ("status", "Status", ("status",), "status"),
    ("priority", "Priority", ("priority",), "priority"),
    ("project", "Project", ("project",), "project"),
    ("components", "Components", ("component",), "array"),
    ("labels", "Labels", ("labels",), "array"),
    ("created", "Created", ("created", "createdDate"), "datetime"),
    ("resolutiondate", "Resolved", ("resolved", "resolutiondate", "resolutionDate"), "datetime"),
    ("updated", "Updated", ("updated", "updatedDate"), "datetime"),
)
REMOVED_PATHS = frozenset({"/rest/api/3/search", "/rest/api/2/search", "/rest/api/latest/search"})
REMOVED_MESSAGE = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. A full "
    "migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)

UNAUTHORIZED = "Client must be authenticated to access this resource."
DEFAULT_PAGE = 50
PAGE_CAP_IDS = 5000  # when only id/key are requested
PAGE_CAP_FIELDS = 100  # when any other field is requested
CUSTOMER_FIELD_NAME = "Customer"
DEFAULT_CUSTOM_FIELD = "customfield_10042"
SUPPORT_PROJECT = "SUP"
OTHER_PROJECT = "OPS"  # never mapped: its components reuse customer names

#: (name, id, category key)
STATUSES = (
    ("To Do", "10000", "new"),
    ("Backlog", "10001", "new"),
    ("In Progress", "3", "indeterminate"),
    ("In Review", "10002", "indeterminate"),
    ("Done", "10003", "done"),
    ("Closed", "6", "done"),
)
#: key → (id, name, colour)
CATEGORIES = {
    "new": (2, "To Do", "blue-gray"),
    "indeterminate": (4, "In Progress", "yellow"),
    "done": (3, "Done", "green"),
}
PRIORITIES = (("Highest", "1"), ("High", "2"), ("Medium", "3"), ("Low", "4"), ("Lowest", "5"))
ISSUE_TYPES = (("Bug", "10004"), ("Task", "10002"), ("Story", "10001"))
PRODUCT_AREAS = ("API", "Billing", "Integrations", "Mobile", "Reporting")
_OPEN = tuple(s[0] for s in STATUSES if s[2] != "done")
_DONE = tuple(s[0] for s in STATUSES if s[2] == "done")
_STATUS = {s[0]: s for s in STATUSES}
_PRIORITY_ID = dict(PRIORITIES)
_TYPE_ID = dict(ISSUE_TYPES)
_PRIORITY_RANK = {name: rank for rank, (name, _) in enumerate(PRIORITIES)}

SEARCH_BODY_KEYS = frozenset(
    {
        "jql",
        "nextPageToken",
        "maxResults",
        "fields",
        "expand",
        "properties",
        "fieldsByKeys",
        "reconcileIssues",
    }
)
NAVIGABLE = (
    "summary",
    "issuetype",
    "status",
    "priority",
    "project",
    "components",
    "labels",
    "created",
    "updated",
    "resolutiondate",
)
#: JQL texts received that App.queries keeps (oldest dropped first).
QUERY_LOG = 1_000


@dataclass(frozen=True, slots=True)
class Issue:
    id: int
    key: str
    project: str
    issuetype: str
    status: str
    priority: str
    components: tuple[str, ...]
    customer: str | None  # the custom customer field's option value
    created: str
    summary: str
    resolved: str | None = None  # when a done issue was resolved; None while it is open


@dataclass(frozen=True, slots=True)
class Project:
    key: str
    id: str
    name: str


@dataclass
class Data:
    """Generated issues, the search index over them, and what a correct extractor returns."""

    issues: tuple[Issue, ...]
    projects: Mapping[str, Project]
    component_ids: Mapping[tuple[str, str], str]  # (project, name) → id
    customer_field: str  # id of the custom field that holds customers in custom-field mode
    customer_options: Mapping[str, str]  # option value → option id
    mapped: frozenset[tuple[str, str]]  # (project, customer) of every mapped account
    index: Index
    expected: dict[str, dict[str, Decimal | None]] = field(default_factory=dict)
    #: The sandbox date (midnight UTC): every issue was created, and every done one resolved,
    #: before it.
    as_of: datetime = datetime(2026, 11, 1, tzinfo=UTC)
    #: The portfolio's accounts, for recounts at other instants (:meth:`expected_at`).
    accounts: tuple[Account, ...] = ()

    def expected_at(
        self, as_of: date, section: SectionLike = None
    ) -> dict[str, dict[str, Decimal | None]]:
        """The metrics a correct extractor reports for the period ending at ``as_of``: the bugs
        open at that instant (created before it, and not resolved or resolved since)."""
        at = datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC)
        return _expected_for(self.accounts, self, Settings.of(section), at)

    def bug_indices(self, section: SectionLike = None, at: datetime | None = None) -> list[int]:
        """Issues matching the organisation's bug definition that were open ``at`` (default:
        the sandbox date): created before it and not resolved before it."""
        return self.index.search(parse(open_at(Settings.of(section).bug_jql, at or self.as_of)))

    def customers(self, issue: Issue, section: SectionLike = None) -> tuple[str, ...]:
        if Settings.of(section).customer_field == COMPONENT:
            return issue.components
        return (issue.customer,) if issue.customer is not None else ()

    def attributed_bugs(self, section: SectionLike = None) -> int:
        """Bugs naming at least one mapped customer of their project."""
        settings = Settings.of(section)
        return sum(
            1
            for i in self.bug_indices(settings)
            if any(
                (self.issues[i].project, c) in self.mapped
                for c in self.customers(self.issues[i], settings)
            )
        )

    def minimum_requests(self, section: SectionLike = None) -> int:
        """Pages of 100 (Jira's cap when fields are requested) over the attributed bugs.

        An ideal extractor needs the project, priority and customer of each such bug and nothing
        else; with any customer mapped it needs at least one request to learn there are none.
        """
        if not self.mapped:
            return 0
        return max(1, math.ceil(self.attributed_bugs(section) / PAGE_CAP_FIELDS))


@dataclass
class _Draft:
    project: str
    issuetype: str
    status: str
    priority: str
    components: tuple[str, ...]
    customer: str | None
    age_minutes: int
    summary: str


def open_at(bug_jql: str, at: datetime) -> str:
    """``bug_jql`` restricted to the issues open at ``at``, as the JQL the extractor sends."""
    stamp = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    return f'({bug_jql}) AND created < "{stamp}" AND (resolved IS EMPTY OR resolved >= "{stamp}")'


def generate(portfolio: Portfolio, section: SectionLike = None) -> Data:
    """Issues for ``portfolio``, deterministic for its seed."""
    settings = Settings.of(section)
    rng = portfolio.rng("jira")
    custom = settings.customer_field != COMPONENT
    custom_field = settings.customer_field if custom else DEFAULT_CUSTOM_FIELD
    mapped_profiles = [
        p for p in portfolio.profiles if p.account.jira_project_key and p.account.jira_component
    ]
    present = [p for p in mapped_profiles if p.has("jira")]
    mapped = frozenset(
        (str(p.account.jira_project_key), str(p.account.jira_component)) for p in mapped_profiles
    )
    drafts: list[_Draft] = []

    def draft(
        project: str, customer: str | None, issuetype: str, status: str, priority: str
    ) -> None:
        areas: tuple[str, ...] = (rng.choice(PRODUCT_AREAS),) if rng.random() < 0.5 else ()
        if custom:
            components, option = areas, customer
        else:
            components, option = ((customer,) if customer else ()) + areas, None
        drafts.append(
            _Draft(
                project,
                issuetype,
                status,
                priority,
                components,
                option,
                rng.randrange(60, 720 * 24 * 60),
                f"{issuetype} reported by {customer or 'the platform team'}",
            )
        )

    for profile in present:
        account = profile.account
        project, customer = str(account.jira_project_key), str(account.jira_component)
        total = max(0, round(profile.targets.get(OPEN_BUGS_TOTAL, 3.0)))
        urgent = min(total, max(0, round(profile.targets.get(OPEN_BUGS_P1_P2, 0.0))))
        for n in range(total):
            priority = (
                rng.choice(("Highest", "High"))
                if n < urgent
                else rng.choices(("Medium", "Low", "Lowest"), (0.6, 0.3, 0.1))[0]
            )
            draft(project, customer, "Bug", rng.choice(_OPEN), priority)
        for _ in range(rng.randrange(0, 5)):  # closed bugs: not open, never counted
            draft(project, customer, "Bug", rng.choice(_DONE), rng.choice(PRIORITIES)[0])
        for _ in range(rng.randrange(0, 4)):  # other issue types, open or not
            status = rng.choice(_OPEN + _DONE)
            draft(project, customer, rng.choice(("Task", "Story")), status, "High")
    projects_in_use = sorted({project for project, _ in mapped} | {SUPPORT_PROJECT})
    for project in projects_in_use:  # internal bugs that name no customer
        for _ in range(max(1, len(present) // 40)):
            draft(project, None, "Bug", rng.choice(_OPEN), rng.choice(PRIORITIES)[0])
    for _ in range(max(1, len(present) // 25)):  # another project reusing customer names
        owner = rng.choice(present).account.jira_component if present else None
        draft(OTHER_PROJECT, owner, "Bug", rng.choice(_OPEN), rng.choice(PRIORITIES)[0])
    if not custom and len(present) > 1:  # a few bugs affecting two customers of one project
        for _ in range(max(1, len(present) // 50)):
            first, second = rng.sample(present, 2)
            if first.account.jira_project_key == second.account.jira_project_key:
                pair = (str(first.account.jira_component), str(second.account.jira_component))
                drafts.append(
                    _Draft(
                        str(first.account.jira_project_key),
                        "Bug",
                        rng.choice(_OPEN),
                        rng.choice(PRIORITIES)[0],
                        pair,
                        None,
                        rng.randrange(60, 720 * 24 * 60),
                        "Bug affecting two customers",
                    )
                )

    # Oldest first, so ids and keys grow with creation time as in Jira.
    drafts.sort(key=lambda d: -d.age_minutes)
    all_projects = sorted(set(projects_in_use) | {OTHER_PROJECT})
    projects = {
        key: Project(key, str(10000 + n), "Customer Support" if key == SUPPORT_PROJECT else key)
        for n, key in enumerate(all_projects)
    }
    counters = dict.fromkeys(all_projects, 0)
    as_of = datetime(portfolio.as_of.year, portfolio.as_of.month, portfolio.as_of.day, tzinfo=UTC)
    issues: list[Issue] = []
    # A stream of its own, so the issues drawn above stay those of earlier sandboxes.
    resolutions = portfolio.rng("jira-resolutions")
    for n, d in enumerate(drafts):
        counters[d.project] += 1
        created = as_of - timedelta(minutes=d.age_minutes)
        resolved = None
        if d.status in _DONE:  # resolved some time between its creation and the sandbox date
            resolved = created + timedelta(minutes=resolutions.randrange(1, d.age_minutes))
        issues.append(
            Issue(
                id=10001 + n,
                key=f"{d.project}-{counters[d.project]}",
                project=d.project,
                issuetype=d.issuetype,
                status=d.status,
                priority=d.priority,
                components=d.components,
                customer=d.customer,
                created=created.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
                summary=d.summary,
                resolved=None if resolved is None else resolved.strftime(_STAMP),
            )
        )
    data = _assemble(
        issues, projects, mapped, all_projects, custom_field, as_of, portfolio.accounts
    )
    data.expected = _expected(portfolio, data, settings)
    return data


#: The chance that a customer's open bug is resolved in a given later month (the rest wait).
RESOLVE_SHARE = 0.3
#: The first month's open bugs were reported up to this long before the history starts.
BACKLOG_DAYS = 365
_EDGE_SHARE = 0.03  # resolutions exactly at a month's first instant (open at the month before)


@dataclass(eq=False)
class _Dated:
    """One issue of a history before it is numbered: created, and resolved (or still open)."""

    project: str
    issuetype: str
    priority: str
    components: tuple[str, ...]
    customer: str | None
    created: datetime
    summary: str
    resolved: datetime | None = None


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _moment(rng: random.Random, low: datetime, high: datetime) -> datetime:
    """A whole minute in ``[low, high)`` (``low`` when the span is under a minute)."""
    span = int((high - low).total_seconds() // 60)
    return low + timedelta(minutes=rng.randrange(span)) if span > 0 else low


def generate_history(
    timeline: Timeline, slices: Sequence[Portfolio], section: SectionLike = None
) -> Data:
    """Issues created and resolved over every month of ``timeline``, as Jira holds them at the
    sandbox date (the last slice's ``as_of``).

    Each month, every active customer's open bugs are resolved with the chance RESOLVE_SHARE
    (more if it has more open than that month's target), and new ones are reported so that the
    bugs open at the month's end are that month's ``open_bugs_total`` of which
    ``open_bugs_p1_p2`` are of a P1/P2 priority; a few more are reported and fixed within the
    month, and other issue types come and go. Internal bugs, a second project reusing customer
    names and bugs naming two customers are spread over the months. An inactive account (not
    yet joined, or churned) gets no new issue and its open bugs wait. Statuses are those at the
    sandbox date (resolved: a done status); ids and keys grow with creation time.
    """
    del timeline  # the slices carry each month's activity and targets
    if not slices:
        raise ValueError("a history needs at least one month")
    settings = Settings.of(section)
    last = slices[-1]
    custom = settings.customer_field != COMPONENT
    custom_field = settings.customer_field if custom else DEFAULT_CUSTOM_FIELD
    mapped = frozenset(
        (str(a.jira_project_key), str(a.jira_component))
        for a in last.accounts
        if a.jira_project_key and a.jira_component
    )
    projects_in_use = sorted({project for project, _ in mapped} | {SUPPORT_PROJECT})
    read_at = _midnight(last.as_of)
    dated: list[_Dated] = []
    waiting: dict[tuple[str, bool], list[_Dated]] = defaultdict(list)  # (account, P1/P2)

    def report(
        rng: random.Random,
        project: str,
        customers: tuple[str, ...],
        issuetype: str,
        priority: str,
        created: datetime,
    ) -> _Dated:
        areas: tuple[str, ...] = (rng.choice(PRODUCT_AREAS),) if rng.random() < 0.5 else ()
        if custom:
            components, option = areas, (customers[0] if customers else None)
        else:
            components, option = customers + areas, None
        who = " and ".join(customers) or "the platform team"
        issue = _Dated(
            project, issuetype, priority, components, option, created, f"{issuetype} by {who}"
        )
        dated.append(issue)
        return issue

    def later(rng: random.Random, issue: _Dated, chance: float) -> None:
        """Resolved some time before the sandbox date, with ``chance``."""
        if rng.random() < chance:
            issue.resolved = _moment(rng, issue.created + timedelta(minutes=1), read_at)

    for k, portfolio in enumerate(slices):
        start, end = month_of(slices, k)
        lo, hi = _midnight(start), _midnight(end)
        rng = portfolio.rng("jira")
        present = [
            p
            for p in portfolio.profiles
            if p.account.jira_project_key and p.account.jira_component and p.has("jira")
        ]
        for profile in present:
            account = profile.account
            project, customer = str(account.jira_project_key), str(account.jira_component)
            total = max(0, round(profile.targets.get(OPEN_BUGS_TOTAL, 3.0)))
            urgent = min(total, max(0, round(profile.targets.get(OPEN_BUGS_P1_P2, 0.0))))
            for is_urgent, target in ((True, urgent), (False, total - urgent)):
                still: list[_Dated] = []
                resolving: list[_Dated] = []
                for issue in waiting[(account.account_id, is_urgent)]:
                    (resolving if rng.random() < RESOLVE_SHARE else still).append(issue)
                while len(still) > target:
                    resolving.append(still.pop(rng.randrange(len(still))))
                for issue in resolving:
                    edge = rng.random() < _EDGE_SHARE
                    issue.resolved = lo if edge else _moment(rng, lo, hi)
                for _ in range(target - len(still)):
                    created = _moment(rng, lo - timedelta(days=BACKLOG_DAYS) if k == 0 else lo, hi)
                    priority = (
                        rng.choice(("Highest", "High"))
                        if is_urgent
                        else rng.choices(("Medium", "Low", "Lowest"), (0.6, 0.3, 0.1))[0]
                    )
                    still.append(report(rng, project, (customer,), "Bug", priority, created))
                waiting[(account.account_id, is_urgent)] = still
            for _ in range(rng.randrange(0, 3)):  # fixed within the month: open at no month end
                created = _moment(rng, lo, hi)
                issue = report(rng, project, (customer,), "Bug", rng.choice(PRIORITIES)[0], created)
                issue.resolved = _moment(rng, created + timedelta(minutes=1), hi)
            for _ in range(rng.randrange(0, 2)):  # other issue types, open or not
                kind = rng.choice(("Task", "Story"))
                later(
                    rng, report(rng, project, (customer,), kind, "High", _moment(rng, lo, hi)), 0.6
                )
        for project in projects_in_use:  # internal bugs that name no customer
            for _ in range(max(1, len(present) // 40)):
                issue = report(
                    rng, project, (), "Bug", rng.choice(PRIORITIES)[0], _moment(rng, lo, hi)
                )
                later(rng, issue, 0.6)
        for _ in range(max(1, len(present) // 25)):  # another project reusing customer names
            owner = rng.choice(present).account.jira_component if present else None
            issue = report(
                rng,
                OTHER_PROJECT,
                (str(owner),) if owner else (),
                "Bug",
                rng.choice(PRIORITIES)[0],
                _moment(rng, lo, hi),
            )
            later(rng, issue, 0.6)
        if not custom and len(present) > 1:  # a few bugs affecting two customers of one project
            for _ in range(max(1, len(present) // 50)):
                first, second = rng.sample(present, 2)
                if first.account.jira_project_key == second.account.jira_project_key:
                    pair = (str(first.account.jira_component), str(second.account.jira_component))
                    issue = report(
                        rng,
                        str(first.account.jira_project_key),
                        pair,
                        "Bug",
                        rng.choice(PRIORITIES)[0],
                        _moment(rng, lo, hi),
                    )
                    later(rng, issue, 0.5)

    # Oldest first, so ids and keys grow with creation time as in Jira.
    dated.sort(key=lambda d: d.created)
    all_projects = sorted(set(projects_in_use) | {OTHER_PROJECT})
    projects = {
        key: Project(key, str(10000 + n), "Customer Support" if key == SUPPORT_PROJECT else key)
        for n, key in enumerate(all_projects)
    }
    counters = dict.fromkeys(all_projects, 0)
    statuses = last.rng("jira-history-statuses")
    issues: list[Issue] = []
    for n, d in enumerate(dated):
        counters[d.project] += 1
        issues.append(
            Issue(
                id=10001 + n,
                key=f"{d.project}-{counters[d.project]}",
                project=d.project,
                issuetype=d.issuetype,
                status=statuses.choice(_OPEN if d.resolved is None else _DONE),
                priority=d.priority,
                components=d.components,
                customer=d.customer,
                created=d.created.strftime(_STAMP),
                summary=d.summary,
                resolved=None if d.resolved is None else d.resolved.strftime(_STAMP),
            )
        )
    data = _assemble(issues, projects, mapped, all_projects, custom_field, read_at, last.accounts)
    data.expected = _expected_for(data.accounts, data, settings, read_at)
    return data


def _assemble(
    issues: list[Issue],
    projects: dict[str, Project],
    mapped: frozenset[tuple[str, str]],
    all_projects: Sequence[str],
    custom_field: str,
    as_of: datetime,
    accounts: tuple[Account, ...],
) -> Data:
    """The stand-in's data from its issues: component and option ids, and the JQL index."""
    customers = sorted({c for _, c in mapped} | {i.customer for i in issues if i.customer})
    component_names = sorted(
        {(project, c) for project, c in mapped}
        | {(i.project, c) for i in issues for c in i.components}
        | {(project, area) for project in all_projects for area in PRODUCT_AREAS}
    )
    data = Data(
        issues=tuple(issues),
        projects=projects,
        component_ids={pc: str(10100 + n) for n, pc in enumerate(component_names)},
        customer_field=custom_field,
        customer_options={value: str(20000 + n) for n, value in enumerate(customers)},
        mapped=mapped,
        index=Index(),
        as_of=as_of,
        accounts=accounts,
    )
    data.index = build_index(data)
    return data


def _expected(
    portfolio: Portfolio, data: Data, settings: Settings
) -> dict[str, dict[str, Decimal | None]]:
    return _expected_for(portfolio.accounts, data, settings, data.as_of)


def _expected_for(
    accounts: Sequence[Account], data: Data, settings: Settings, at: datetime
) -> dict[str, dict[str, Decimal | None]]:
    """Per account: bugs open ``at`` naming it in its project, and those of a P1/P2 priority."""
    urgent = {p.casefold() for p in settings.p1_p2_priorities}
    totals: dict[tuple[str, str], list[int]] = {}
    for i in data.bug_indices(settings, at):
        issue = data.issues[i]
        for customer in set(data.customers(issue, settings)):
            counts = totals.setdefault((issue.project, customer), [0, 0])
            counts[0] += 1
            counts[1] += issue.priority.casefold() in urgent
    expected: dict[str, dict[str, Decimal | None]] = {}
    for account in accounts:
        if account.jira_project_key and account.jira_component:
            total, p1_p2 = totals.get((account.jira_project_key, account.jira_component), [0, 0])
            expected[account.account_id] = {
                OPEN_BUGS_TOTAL: Decimal(total),
                OPEN_BUGS_P1_P2: Decimal(p1_p2),
            }
        else:
            expected[account.account_id] = {OPEN_BUGS_TOTAL: None, OPEN_BUGS_P1_P2: None}
    return expected


_STAMP = "%Y-%m-%dT%H:%M:%S.000+0000"


def _instant(stamp: str) -> datetime:
    """An issue's ``created``/``resolved`` stamp (Jira's ``…T…S.000+0000``) as an instant.

    ``fromisoformat`` reads that shape exactly as ``strptime`` with ``_STAMP`` does, some 50
    times faster (a history holds tens of thousands of stamps)."""
    return datetime.fromisoformat(stamp).astimezone(UTC)


def build_index(data: Data) -> Index:
    """The JQL index over ``data.issues``: names, ids and keys a query may use per field."""
    index = Index(size=len(data.issues))
    project = index.add_field("project", "project", ["project"])
    issuetype = index.add_field("issuetype", "issuetype", ["issuetype", "type"])
    status = index.add_field("status", "status", ["status"])
    category = index.add_field("statusCategory", "statusCategory", ["statusCategory"])
    priority = index.add_field("priority", "priority", ["priority"])
    component = index.add_field("component", "component", ["component"])
    number = data.customer_field.removeprefix("customfield_")
    customer = index.add_field(
        data.customer_field,
        CUSTOMER_FIELD_NAME,
        [data.customer_field, f"cf[{number}]", CUSTOMER_FIELD_NAME],
    )
    for p in data.projects.values():
        project.declare((p.key, p.id, p.name))
    issuetype.declare(v for pair in ISSUE_TYPES for v in pair)
    status.declare(v for s in STATUSES for v in s[:2])
    category.declare(v for key, (cid, name, _) in CATEGORIES.items() for v in (key, str(cid), name))
    priority.declare(v for pair in PRIORITIES for v in pair)
    component.declare(name for _, name in data.component_ids)
    component.declare(data.component_ids.values())
    customer.declare(data.customer_options)
    customer.declare(data.customer_options.values())
    created = index.add_date_field("created", "created", ["created", "createdDate"])
    resolved = index.add_date_field(
        "resolutiondate", "resolved", ["resolved", "resolutiondate", "resolutionDate"]
    )
    created.values = [_instant(issue.created) for issue in data.issues]
    resolved.values = [
        None if issue.resolved is None else _instant(issue.resolved) for issue in data.issues
    ]
    for i, issue in enumerate(data.issues):
        p = data.projects[issue.project]
        project.add(i, (p.key, p.id, p.name))
        issuetype.add(i, (issue.issuetype, _TYPE_ID[issue.issuetype]))
        name, status_id, category_key = _STATUS[issue.status]
        status.add(i, (name, status_id))
        cid, cname, _ = CATEGORIES[category_key]
        category.add(i, (category_key, str(cid), cname))
        priority.add(i, (issue.priority, _PRIORITY_ID[issue.priority]))
        component.add(
            i,
            list(issue.components)
            + [data.component_ids[(issue.project, c)] for c in issue.components],
        )
        if issue.customer is not None:
            customer.add(i, (issue.customer, data.customer_options[issue.customer]))
    return index


# --------------------------------------------------------------------------------------------
# The server


def _bad_request(message: str) -> HttpError:
    return HttpError(Response(400, {"errorMessages": [message], "errors": {}}))


def _token(jql: str, offset: int) -> str:
    digest = hashlib.sha256(jql.encode("utf-8")).hexdigest()[:16]
    return base64.urlsafe_b64encode(f"v1:{digest}:{offset}".encode()).decode("ascii").rstrip("=")


def _offset(token: str, jql: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        version, digest, offset = raw.split(":")
        if version != "v1" or int(offset) < 0:
            raise ValueError(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _bad_request("The provided nextPageToken is invalid.") from None
    if digest != hashlib.sha256(jql.encode("utf-8")).hexdigest()[:16]:
        raise _bad_request("The nextPageToken does not belong to this JQL query.")
    return int(offset)


def _field_list(values: Iterable[object]) -> list[str]:
    out: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise _bad_request("'fields' must be a list of strings.")
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return out


class App(VendorApp):
    """Jira Cloud's search API over :class:`Data`."""

    name = "jira"

    def __init__(
        self,
        data: Data,
        section: SectionLike = None,
        *,
        email: str = SANDBOX_EMAIL,
        api_token: str = SANDBOX_API_TOKEN,
    ) -> None:
        super().__init__()
        self.data = data
        self.settings = Settings.of(section)
        basic = base64.b64encode(f"{email}:{api_token}".encode()).decode("ascii")
        self._authorization = f"Basic {basic}"
        self._cache: OrderedDict[str, list[int]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.all_fields = (*NAVIGABLE, data.customer_field)
        #: The JQL of every search and count received (the latest QUERY_LOG), for tests to read.
        self.queries: deque[str] = deque(maxlen=QUERY_LOG)

    # -- shapes ------------------------------------------------------------------------------

    def error(self, status: int, code: str, message: str) -> Response:
        del code
        return Response(status, {"errorMessages": [message], "errors": {}})

    def unauthorized(self) -> Response:
        return self.error(401, "unauthorized", UNAUTHORIZED)

    def too_many_requests(self, retry_after: float, reset_epoch: float) -> Response:
        response = self.error(429, "rate_limited", "Rate limit exceeded.")
        limit = self.server.knobs.rate_limit if self.server is not None else None
        response.headers.update(self._rate_headers(limit, 0, reset_epoch))
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        response.headers["RateLimit-Reason"] = "jira-burst-based"
        return response

    def decorate(
        self, response: Response, limit: int | None, remaining: int | None, reset_epoch: float
    ) -> None:
        if limit is not None and response.status != 429:
            response.headers.update(self._rate_headers(limit, remaining or 0, reset_epoch))

    @staticmethod
    def _rate_headers(limit: int | None, remaining: int, reset_epoch: float) -> dict[str, str]:
        reset = datetime.fromtimestamp(math.ceil(reset_epoch), UTC)
        headers = {
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "X-RateLimit-NearLimit": str(limit is None or remaining < limit * 0.2).lower(),
        }
        if limit is not None:
            headers["X-RateLimit-Limit"] = str(limit)
        return headers

    # -- routing -----------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if request.path in REMOVED_PATHS:
            return self.error(410, "gone", REMOVED_MESSAGE)
        known = SEARCH_PATHS | COUNT_PATHS | SERVER_INFO_PATHS | FIELD_PATHS
        if request.path not in known:
            return self.error(404, "not_found", f"null for uri: {request.path}")
        if self.faults.auth_rejected or request.header("Authorization") != self._authorization:
            return self.unauthorized()
        if request.path in SERVER_INFO_PATHS or request.path in FIELD_PATHS:
            if request.method != "GET":
                return self.error(405, "method", "Method Not Allowed")
            if request.path in SERVER_INFO_PATHS:
                return Response(200, self._server_info())
            return Response(200, self._fields())
        if request.path in COUNT_PATHS:
            if request.method != "POST":
                return self.error(405, "method", "Method Not Allowed")
            body = self._json_body(request, frozenset({"jql"}))
            jql = body.get("jql")
            if not isinstance(jql, str):
                raise _bad_request(UNBOUNDED)
            return Response(200, {"count": len(self._matches(jql)[0])})
        if request.method == "GET":
            return self._search(
                request.arg("jql"),
                _field_list(request.query.get("fields", [])),
                request.arg("maxResults"),
                request.arg("nextPageToken"),
            )
        if request.method == "POST":
            body = self._json_body(request, SEARCH_BODY_KEYS)
            fields = body.get("fields", [])
            if not isinstance(fields, list):
                raise _bad_request("'fields' must be a list of strings.")
            max_results = body.get("maxResults")
            token = body.get("nextPageToken")
            if token is not None and not isinstance(token, str):
                raise _bad_request("'nextPageToken' must be a string.")
            jql = body.get("jql")
            if jql is not None and not isinstance(jql, str):
                raise _bad_request("'jql' must be a string.")
            return self._search(jql, _field_list(fields), max_results, token)
        return self.error(405, "method", "Method Not Allowed")

    def _server_info(self) -> dict[str, Any]:
        base = self.server.url if self.server is not None else ""
        now = datetime.now(UTC)
        return {
            "baseUrl": base,
            "displayUrl": base,
            "version": "1001.0.0-SNAPSHOT",
            "versionNumbers": [1001, 0, 0],
            "deploymentType": "Cloud",
            "buildNumber": 100289,
            # RFC 3339 date-times, as the v3 description types them.
            "buildDate": "2026-10-01T00:00:00.000Z",
            "serverTime": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "scmInfo": "sandbox",
            "serverTitle": SERVER_TITLE,
            "serverTimeZone": "Etc/UTC",
        }

    def _fields(self) -> list[dict[str, Any]]:
        """Every field, as ``GET /rest/api/3/field`` lists them (the customer field included)."""
        fields = [
            {
                "id": field_id,
                "key": field_id,
                "name": name,
                "custom": False,
                "orderable": field_id not in ("status", "created", "updated"),
                "navigable": True,
                "searchable": True,
                "clauseNames": list(clauses),
                "schema": {"type": kind, "system": field_id},
            }
            for field_id, name, clauses, kind in SYSTEM_FIELDS
        ]
        custom = self.data.customer_field
        number = custom.removeprefix("customfield_")
        fields.append(
            {
                "id": custom,
                "key": custom,
                "name": CUSTOMER_FIELD_NAME,
                "custom": True,
                "orderable": True,
                "navigable": True,
                "searchable": True,
                "clauseNames": [f"cf[{number}]", CUSTOMER_FIELD_NAME],
                "schema": {
                    "type": "option",
                    "custom": "com.atlassian.jira.plugin.system.customfieldtypes:select",
                    "customId": int(number) if number.isdigit() else 0,
                },
            }
        )
        return fields

    @staticmethod
    def _json_body(request: Request, allowed: frozenset[str]) -> dict[str, Any]:
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise HttpError(
                Response(
                    415,
                    {"errorMessages": ["Content-Type must be application/json."], "errors": {}},
                )
            )
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            raise _bad_request("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise _bad_request("The request body must be a JSON object.")
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise _bad_request(f'Unrecognized field "{unknown[0]}".')
        return body

    # -- search ------------------------------------------------------------------------------

    def _matches(self, jql: str | None) -> tuple[list[int], str]:
        """Issue positions matching ``jql`` in result order (cached), and the JQL as cached."""
        text = jql or ""
        self.queries.append(text)
        with self._cache_lock:
            cached = self._cache.get(text)
            if cached is not None:
                self._cache.move_to_end(text)
                return cached, text
        try:
            query = parse(text)
            matches = self._ordered(self.data.index.search(query), query.order_by)
        except JqlError as exc:
            raise _bad_request(str(exc)) from None
        with self._cache_lock:
            self._cache[text] = matches
            while len(self._cache) > 256:
                self._cache.popitem(last=False)
        return matches, text

    def _ordered(self, matches: list[int], order: Sequence[SortKey]) -> list[int]:
        ordered = list(matches)  # default: creation order (ascending id)
        for key in reversed(order):
            extract = self._sort_value(key.field)
            ordered.sort(key=lambda i: extract(self.data.issues[i]), reverse=key.descending)
        return ordered

    def _sort_value(self, name: str) -> Callable[[Issue], Any]:
        folded = name.casefold()
        if folded in ("key", "issuekey", "id", "created", "updated"):
            return lambda issue: issue.id
        if folded == "priority":
            return lambda issue: _PRIORITY_RANK[issue.priority]
        field_key = self.data.index.field_key(name)
        if field_key == "resolutiondate":
            return lambda issue: issue.resolved or ""
        if field_key == "project":
            return lambda issue: issue.project
        if field_key == "issuetype":
            return lambda issue: issue.issuetype
        if field_key in ("status", "statusCategory"):
            return lambda issue: issue.status
        if field_key == "component":
            return lambda issue: issue.components[:1]
        return lambda issue: issue.customer or ""

    def _search(
        self, jql: str | None, fields: list[str], max_results: object, token: str | None
    ) -> Response:
        matches, text = self._matches(jql)
        selected = self._selected(fields)
        cap = PAGE_CAP_IDS if not selected else PAGE_CAP_FIELDS
        size = self._page_size(max_results, cap)
        offset = _offset(token, text) if token else 0
        page = matches[offset : offset + size]
        end = offset + len(page)
        body: dict[str, Any] = {
            "issues": [self._render(self.data.issues[i], fields, selected) for i in page],
            "isLast": end >= len(matches),
        }
        if end < len(matches):
            body["nextPageToken"] = _token(text, end)
        return Response(200, body)

    @staticmethod
    def _page_size(raw: object, cap: int) -> int:
        if raw is None or raw == "":
            return min(DEFAULT_PAGE, cap)
        try:
            value = int(str(raw)) if not isinstance(raw, bool) else None
        except ValueError:
            value = None
        if value is None or value < 1:
            raise _bad_request("The maxResults parameter must be a positive integer.")
        return min(value, cap)

    def _selected(self, fields: list[str]) -> list[str]:
        """The issue fields to return besides id/key (Jira's default is ``id`` only)."""
        chosen: list[str] = []
        excluded: set[str] = set()
        for item in fields:
            if item in ("*all", "*navigable"):
                chosen.extend(self.all_fields)
            elif item.startswith("-"):
                excluded.add(item[1:])
            elif item in self.all_fields and item not in chosen:
                chosen.append(item)
            elif item == "key":
                chosen.append("key")
        return [f for f in dict.fromkeys(chosen) if f not in excluded]

    def _render(self, issue: Issue, fields: list[str], selected: list[str]) -> dict[str, Any]:
        if not selected:
            return {"id": str(issue.id)}
        base = self.server.url if self.server is not None else ""
        values = {f: self._field(issue, f, base) for f in selected if f != "key"}
        return {
            "expand": "",
            "id": str(issue.id),
            "key": issue.key,
            "self": f"{base}/rest/api/3/issue/{issue.id}",
            "fields": values,
        }

    def _field(self, issue: Issue, name: str, base: str) -> Any:
        api = f"{base}/rest/api/3"
        if name == "summary":
            return issue.summary
        if name == "issuetype":
            tid = _TYPE_ID[issue.issuetype]
            return {
                "self": f"{api}/issuetype/{tid}",
                "id": tid,
                "name": issue.issuetype,
                "subtask": False,
                "hierarchyLevel": 0,
            }
        if name == "status":
            status, sid, key = _STATUS[issue.status]
            cid, cname, colour = CATEGORIES[key]
            return {
                "self": f"{api}/status/{sid}",
                "id": sid,
                "name": status,
                "statusCategory": {
                    "self": f"{api}/statuscategory/{cid}",
                    "id": cid,
                    "key": key,
                    "name": cname,
                    "colorName": colour,
                },
            }
        if name == "priority":
            pid = _PRIORITY_ID[issue.priority]
            return {"self": f"{api}/priority/{pid}", "id": pid, "name": issue.priority}
        if name == "project":
            project = self.data.projects[issue.project]
            return {
                "self": f"{api}/project/{project.id}",
                "id": project.id,
                "key": project.key,
                "name": project.name,
                "projectTypeKey": "software",
                "simplified": False,
            }
        if name == "components":
            return [
                {
                    "self": f"{api}/component/{self.data.component_ids[(issue.project, c)]}",
                    "id": self.data.component_ids[(issue.project, c)],
                    "name": c,
                }
                for c in issue.components
            ]
        if name == "labels":
            return []
        if name in ("created", "updated"):
            return issue.created
        if name == "resolutiondate":
            return issue.resolved
        if issue.customer is None:
            return None
        option = self.data.customer_options[issue.customer]
        return {
            "self": f"{api}/customFieldOption/{option}",
            "id": option,
            "value": issue.customer,
        }


def environment(url: str, ca_bundle: str) -> dict[str, str]:
    """Variables that point the Jira extractor at this stand-in (plain HTTP: no CA needed)."""
    del ca_bundle
    return {"JIRA_BASE_URL": url, "JIRA_EMAIL": SANDBOX_EMAIL, "JIRA_API_TOKEN": SANDBOX_API_TOKEN}
