"""Stand-in for a Looker instance (API 4.0) that holds four saved Looks about the portfolio.

The Looks are what a product team would build for customer health:

- *account usage* (``account_usage.*``, one row per customer): seats licensed, active users and
  sessions in the last 30 days and the 30 before, modules licensed and active, platform score;
- *platform value* (``platform_value.*``, one row per customer): fractions of positive ratings,
  of requests answered before target, of work resolved by automations; scheduled reports;
- *integrations* (``integrations.*``, one row per customer and integration): active connections;
- *automations* (``automations.*``, one row per customer and automation): active rules.

Each Look configured in ``sources.yaml`` is served under its configured id when its customer id
field names one of these views; other ids answer 404 as Looker does. Rows are drawn around each
profile's targets; accounts absent from Looker have no rows at all. ``Data.expected`` is computed
back from the rows with the plain definitions in ``thresholds.yaml``.

Wire format: ``POST /api/4.0/login`` (form body, or HTTP Basic client credentials) → token;
``GET /api/4.0/looks/{id}/run/json`` with ``limit`` (5,000 rows when absent, all with -1; the
``limit`` fault caps every run at N rows); rows in customer order (each Look is saved sorted by its
customer id); ``Authorization: token …`` or ``Bearer …``; errors as ``{"message",
"documentation_url"}``; unknown credentials → 404 "Not found" (what Looker answers), a missing,
unknown or expired token → 401 "Requires authentication.".

Time. Every row is a customer's *month* (a monthly summary table, as product analytics Looks
usually read): it carries ``{view}.activity_month`` (``"YYYY-MM"``, Looker's JSON for a month
timeframe), and the usage counts of that row are the month's. Each Look's saved query
(``GET /api/4.0/looks/{id}`` → ``query``: ``model`` ``customer_health``, ``view``, ``fields``,
``filters``, ``sorts``, ``limit``) filters its date field on ``"1 month ago for 1 month"``: run as
saved (``run_look``) it answers for the last complete month before the sandbox date. A client that
wants another month runs the saved query with that filter replaced (``POST
/api/4.0/queries/run/json``, run_inline_query; every body received is kept in ``App.queries``).
A filter selects the rows whose month's first day lies inside it; :func:`date_filter` evaluates
Looker's date filter expressions (absolute dates and months, ``A to B`` with B excluded,
``before``/``after``, ``N months ago for M months``, ``last month``, ``this month``, …) relative
to the sandbox date, and an expression it cannot read answers 400, never every row.

:func:`generate` (the sandbox without history) stamps every row with the last complete month;
:func:`generate_history` draws each month of a timeline from that month's slice (an account that
is not a customer that month has no row in it), and ``Data.expected_at(as_of)`` is the recount of
the month that ends at ``as_of``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from urllib.parse import unquote_plus

from health_score_sandbox.config import SectionLike, value_of
from health_score_sandbox.portfolio import AccountProfile, Portfolio
from health_score_sandbox.server import HttpError, Request, Response, VendorApp
from health_score_sandbox.timeline import Timeline, add_months
from health_score_sandbox.truth import Metric, exact, rounded

CLIENT_ID = "sandbox-looker-client-id"
CLIENT_SECRET = "sandbox-looker-client-secret"  # noqa: S105 - a fake credential for the stand-in
DOCS_URL = "https://cloud.google.com/looker/docs/"
DEFAULT_ROW_CAP = 5000
TOKEN_LIFETIME_SECONDS = 3600
API = "/api/4.0"
_RUN_PATH = re.compile(rf"{re.escape(API)}/looks/([^/]+)/run/([^/]+)")
_LOOK_PATH = re.compile(rf"{re.escape(API)}/looks/([^/]+)")
_INLINE_PATH = re.compile(rf"{re.escape(API)}/queries/run/([^/]+)")
#: The LookML model every Look of the stand-in is built on.
MODEL = "customer_health"
#: The filter each Look's saved query puts on its date field: the last complete month.
SAVED_DATE_FILTER = "1 month ago for 1 month"
#: Inline queries App.queries keeps (oldest dropped first).
QUERY_LOG = 1000

INTEGRATION_TYPES = (
    "salesforce",
    "slack",
    "zendesk",
    "hubspot",
    "jira",
    "teams",
    "shopify",
    "snowflake",
    "google_drive",
    "okta",
    "stripe",
    "webhooks",
)

USAGE_METRICS = (
    "active_user_pct",
    "sessions_per_user",
    "sessions_per_user_trend_pct",
    "feature_breadth_pct",
    "platform_score",
)
VALUE_METRICS = (
    "positive_sentiment_pct",
    "response_before_target_pct",
    "automated_resolution_pct",
    "scheduled_reports",
)
#: The sandbox's Looks by view name, and the metrics each one backs.
VIEW_METRICS: Mapping[str, tuple[str, ...]] = {
    "account_usage": USAGE_METRICS,
    "platform_value": VALUE_METRICS,
    "integrations": ("active_integrations",),
    "automations": ("automation_active",),
}

Row = dict[str, Any]


def date_field(view: str) -> str:
    """The view's date field: the month a row summarises (a ``month`` timeframe)."""
    return f"{view}.activity_month"


#: Every view's fields, in the order its rows (and its saved query) list them.
VIEW_FIELDS: Mapping[str, tuple[str, ...]] = {
    "account_usage": tuple(
        f"account_usage.{name}"
        for name in (
            "customer_id",
            "activity_month",
            "seats_licensed",
            "active_users_30d",
            "sessions_30d",
            "active_users_prior_30d",
            "sessions_prior_30d",
            "modules_licensed",
            "modules_active_30d",
            "platform_score",
        )
    ),
    "platform_value": tuple(
        f"platform_value.{name}"
        for name in (
            "customer_id",
            "activity_month",
            "positive_rating_rate",
            "responded_before_target_rate",
            "automated_resolution_rate",
            "scheduled_report_count",
        )
    ),
    "integrations": (
        "integrations.customer_id",
        "integrations.activity_month",
        "integrations.integration_type",
        "integrations.active_count",
    ),
    "automations": (
        "automations.customer_id",
        "automations.activity_month",
        "automations.automation_name",
        "automations.active_rule_count",
    ),
}
TITLES: Mapping[str, str] = {
    "account_usage": "Account usage by month",
    "platform_value": "Platform value by month",
    "integrations": "Active integrations by month",
    "automations": "Automation rules by month",
}


@dataclass(frozen=True, slots=True)
class Look:
    """A configured Look: its id, the ``view.field`` that names the customer, and the date field
    a client replaces the saved filter of (None: the Look is run as saved)."""

    id: str
    customer_id_field: str
    date_field: str | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """The ``looker:`` keys of sources.yaml this stand-in reads: which Looks to serve under which
    id (each metric's transform is the extractor's business; the stand-in knows its views)."""

    looks: tuple[Look, ...] = ()

    @classmethod
    def of(cls, source: SectionLike = None) -> Settings:
        """From a sources.yaml section: a mapping, or an object with a ``looks`` attribute."""
        if isinstance(source, cls):
            return source
        looks = value_of(source, "looks") or ()
        if not isinstance(looks, list | tuple):
            raise TypeError(f"looker.looks must be a list, got {looks!r}")
        return cls(
            tuple(
                Look(
                    str(value_of(look, "id")),
                    str(value_of(look, "customer_id_field")),
                    None
                    if value_of(look, "date_field") is None
                    else str(value_of(look, "date_field")),
                )
                for look in looks
            )
        )


@dataclass
class Data:
    """The rows of every Look served (by Look id) and the metrics a correct extractor derives.

    ``looks`` holds every month's rows (each row names its month in ``{view}.activity_month``);
    ``today`` is the sandbox date, from which the saved queries' relative filters count.
    """

    looks: dict[str, list[Row]]
    expected: dict[str, dict[str, Metric]]
    views: dict[str, str] = field(default_factory=dict)  # Look id → view it serves
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    today: date = date(2026, 11, 1)
    #: account_id → Looker customer id (None: not in Looker), for recounting a past month.
    customers: dict[str, str | None] = field(default_factory=dict)

    def minimum_requests(self, section: SectionLike = None) -> int:
        """One login, then one run per configured Look (``limit=-1`` needs no paging), plus one
        read of the saved query for each Look run with its date filter replaced."""
        looks = Settings.of(section).looks
        if not looks:
            return 0
        return 1 + sum(2 if look.date_field else 1 for look in looks)

    def saved_query(self, look_id: str) -> Row:
        """The Look's saved query, as ``GET /looks/{id}`` shows it (Looker's Query object)."""
        view = self.views[look_id]
        number = 7000 + list(self.views).index(look_id) + 1
        slug = hashlib.sha256(f"looker-query:{look_id}".encode()).hexdigest()[:7]
        return {
            "id": str(number),
            "model": MODEL,
            "view": view,
            "fields": list(VIEW_FIELDS[view]),
            "pivots": None,
            "fill_fields": None,
            "filters": {date_field(view): SAVED_DATE_FILTER},
            "filter_expression": None,
            "sorts": [f"{view}.customer_id"],
            "limit": str(DEFAULT_ROW_CAP),
            "column_limit": None,
            "total": False,
            "row_total": None,
            "subtotals": None,
            "vis_config": None,
            "filter_config": None,
            "visible_ui_sections": None,
            "slug": slug,
            "dynamic_fields": None,
            "client_id": None,
            "share_url": f"https://looker.example.com/x/{slug}",
            "expanded_share_url": None,
            "url": f"/explore/{MODEL}/{view}?qid={slug}",
            "query_timezone": "UTC",
            "has_table_calculations": False,
            "can": {"run": True, "see_results": True, "explore": True},
        }

    def look(self, look_id: str) -> Row:
        """The Look as ``GET /looks/{id}`` answers it (Looker's LookWithQuery)."""
        view = self.views[look_id]
        query = self.saved_query(look_id)
        return {
            "id": look_id,
            "title": TITLES[view],
            "description": f"One row per customer and month ({view}).",
            "user_id": "1",
            "content_metadata_id": None,
            "deleted": False,
            "is_run_on_load": True,
            "public": False,
            "folder_id": "1",
            "model": {"id": MODEL, "label": "Customer Health"},
            "query_id": query["id"],
            "query": query,
            "url": f"/looks/{look_id}",
            "is_owner_disabled": False,
            "can": {"run": True, "show": True},
        }

    def expected_at(self, as_of: date, section: SectionLike = None) -> dict[str, dict[str, Metric]]:
        """The metrics of the month that ends at ``as_of``, recounted from that month's rows."""
        del section  # the served Looks were fixed when the data was generated
        month = add_months(date(as_of.year, as_of.month, 1), -1)
        if as_of != date(as_of.year, as_of.month, 1):
            raise ValueError(f"as_of {as_of} does not end a month")
        return _recount(self.looks, self.views, self.customers, f"{month:%Y-%m}")


# --------------------------------------------------------------------------------------------
# Looker date filter expressions

#: A span of time ``[start, end)``; None is unbounded on that side.
Span = tuple[datetime | None, datetime | None]
_UNITS = {"day": "day", "week": "week", "month": "month", "quarter": "quarter", "year": "year"}
_ABSOLUTE = re.compile(r"(\d{4})(?:[-/](\d{2})(?:[-/](\d{2})(?: (\d{2}):(\d{2})(?::(\d{2}))?)?)?)?")
_AGO_FOR = re.compile(r"(\d+) ([a-z]+?)s? ago for (\d+) ([a-z]+?)s?")
_AGO = re.compile(r"(\d+) ([a-z]+?)s? ago")
_FROM_NOW = re.compile(r"(\d+) ([a-z]+?)s? from now")
_LAST_N = re.compile(r"(\d+) ([a-z]+?)s?")
_NAMED = re.compile(r"(this|last|next) ([a-z]+)")
_FOR = re.compile(r"(.+?) for (\d+) ([a-z]+?)s?")
_TO = re.compile(r"(.+?) to (.+)")


class FilterError(ValueError):
    """A filter expression the stand-in cannot evaluate (Looker answers such queries 400)."""


def _unit(name: str, expression: str) -> str:
    unit = _UNITS.get(name)
    if unit is None:
        raise FilterError(f"unknown interval {name!r} in date filter {expression!r}")
    return unit


def _shift(moment: datetime, unit: str, count: int) -> datetime:
    """``moment`` plus ``count`` units (months keep the day of month, clamped to the month)."""
    if unit == "day":
        return moment + timedelta(days=count)
    if unit == "week":
        return moment + timedelta(weeks=count)
    months = {"month": 1, "quarter": 3, "year": 12}[unit] * count
    first = add_months(moment.date(), months)
    last_day = (add_months(first, 1) - timedelta(days=1)).day
    return datetime.combine(first.replace(day=min(moment.day, last_day)), moment.time())


def _period_start(today: date, unit: str) -> datetime:
    """The first instant of the ``unit`` (day, week from Monday, month, …) holding ``today``."""
    if unit == "day":
        day = today
    elif unit == "week":
        day = today - timedelta(days=today.weekday())
    elif unit == "month":
        day = today.replace(day=1)
    elif unit == "quarter":
        day = date(today.year, (today.month - 1) // 3 * 3 + 1, 1)
    else:
        day = date(today.year, 1, 1)
    return datetime.combine(day, datetime.min.time())


def _absolute(text: str) -> tuple[datetime, datetime] | None:
    """A year, month, day or time written out (``-`` or ``/``) as the span it names."""
    match = _ABSOLUTE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = match.groups()
    try:
        start = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
        )
    except ValueError:
        raise FilterError(f"{text!r} is not a date") from None
    if month is None:
        return start, _shift(start, "year", 1)
    if day is None:
        return start, _shift(start, "month", 1)
    if hour is None:
        return start, start + timedelta(days=1)
    return start, start + (timedelta(seconds=1) if second else timedelta(minutes=1))


def _span(text: str, today: date, expression: str) -> tuple[datetime, datetime]:
    """One bounded span: absolute, ``N units ago [for M units]``, ``this|last|next unit``, …"""
    if (absolute := _absolute(text)) is not None:
        return absolute
    if text in ("today", "yesterday", "tomorrow"):
        start = _period_start(today, "day") + timedelta(
            days={"today": 0, "yesterday": -1, "tomorrow": 1}[text]
        )
        return start, start + timedelta(days=1)
    if match := _AGO_FOR.fullmatch(text):
        back, unit, length, length_unit = match.groups()
        unit = _unit(unit, expression)
        start = _shift(_period_start(today, unit), unit, -int(back))
        return start, _shift(start, _unit(length_unit, expression), int(length))
    if match := _AGO.fullmatch(text):
        unit = _unit(match.group(2), expression)
        start = _shift(_period_start(today, unit), unit, -int(match.group(1)))
        return start, _shift(start, unit, 1)
    if match := _FROM_NOW.fullmatch(text):
        unit = _unit(match.group(2), expression)
        start = _shift(_period_start(today, unit), unit, int(match.group(1)))
        return start, _shift(start, unit, 1)
    if match := _NAMED.fullmatch(text):
        unit = _unit(match.group(2), expression)
        offset = {"this": 0, "last": -1, "next": 1}[match.group(1)]
        start = _shift(_period_start(today, unit), unit, offset)
        return start, _shift(start, unit, 1)
    if match := _LAST_N.fullmatch(text):  # "3 months": this month and the two before it
        unit = _unit(match.group(2), expression)
        current = _period_start(today, unit)
        return _shift(current, unit, 1 - int(match.group(1))), _shift(current, unit, 1)
    if match := _FOR.fullmatch(text):  # "2026-06-01 for 1 month"
        head, length, unit = match.groups()
        first = _absolute(head)
        if first is None:
            raise FilterError(f"cannot read {head!r} in date filter {expression!r}")
        return first[0], _shift(first[0], _unit(unit, expression), int(length))
    raise FilterError(f"cannot read date filter {expression!r}")


def date_filter(expression: str, today: date) -> tuple[Span, ...]:
    """The spans a Looker date filter expression selects, relative dates counted from ``today``.

    Comma-separated conditions are alternatives (OR). ``A to B`` includes A and excludes B;
    ``before X`` excludes X, ``after X`` includes it; ``X`` is any expression (its start).
    Anything else raises :class:`FilterError`.
    """
    spans: list[Span] = []
    for part in expression.split(","):
        text = " ".join(part.lower().split())
        if not text:
            raise FilterError(f"empty condition in date filter {expression!r}")
        if text.startswith("before "):
            spans.append((None, _span(text[7:], today, expression)[0]))
        elif text.startswith("after "):
            spans.append((_span(text[6:], today, expression)[0], None))
        elif (match := _TO.fullmatch(text)) and _absolute(match.group(1)) is not None:
            low, high = (_span(side, today, expression)[0] for side in match.groups())
            spans.append((low, high))
        else:
            spans.append(_span(text, today, expression))
    return tuple(spans)


def selects(spans: Iterable[Span], moment: datetime) -> bool:
    """Whether ``moment`` lies in one of the spans."""
    return any(
        (low is None or low <= moment) and (high is None or moment < high) for low, high in spans
    )


def month_start(value: str) -> datetime:
    """A ``YYYY-MM`` month as its first instant."""
    year, month = value.split("-")
    return datetime(int(year), int(month), 1)


# --------------------------------------------------------------------------------------------
# Generation


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _rate(percent: float) -> float:
    """A percent target as the fraction a Look returns (4 decimals, like a formatted measure)."""
    return round(_clamp(percent / 100, 0.0, 1.0), 4)


def _usage_row(profile: AccountProfile, rng: Any) -> Row:
    t = profile.targets
    paid = profile.account.segment == "paid"
    seats = rng.randint(40, 1500) if paid else rng.randint(5, 300)
    active = int(_clamp(round(seats * _clamp(t["active_user_pct"], 0, 100) / 100), 0, seats))
    per_user = max(t["sessions_per_user"], 0.2)
    sessions = round(active * per_user)
    if rng.random() < 0.03:  # a new customer: nothing in the prior period
        prior_active, prior_sessions = 0, 0
    else:
        growth = max(1 + t["sessions_per_user_trend_pct"] / 100, 0.05)
        prior_active = max(0, round(active * rng.uniform(0.85, 1.15)))
        prior_sessions = round(prior_active * per_user / growth)
    modules = rng.randint(4, 12)
    modules_active = int(
        _clamp(round(modules * _clamp(t["feature_breadth_pct"], 0, 100) / 100), 0, modules)
    )
    return {
        "account_usage.customer_id": profile.account.looker_customer_id,
        "account_usage.seats_licensed": seats,
        "account_usage.active_users_30d": active,
        "account_usage.sessions_30d": sessions,
        "account_usage.active_users_prior_30d": prior_active,
        "account_usage.sessions_prior_30d": prior_sessions,
        "account_usage.modules_licensed": modules,
        "account_usage.modules_active_30d": modules_active,
        "account_usage.platform_score": round(_clamp(t["platform_score"], 0, 100), 1),
    }


def _value_row(profile: AccountProfile, rng: Any) -> Row:
    t = profile.targets
    rated = rng.random() >= 0.05  # a few customers' end users never rate anything
    return {
        "platform_value.customer_id": profile.account.looker_customer_id,
        "platform_value.positive_rating_rate": _rate(t["positive_sentiment_pct"])
        if rated
        else None,
        "platform_value.responded_before_target_rate": _rate(t["response_before_target_pct"]),
        "platform_value.automated_resolution_rate": _rate(t["automated_resolution_pct"]),
        "platform_value.scheduled_report_count": max(
            0, round(t["scheduled_reports"] + rng.uniform(-0.5, 0.5))
        ),
    }


def _integration_rows(profile: AccountProfile, rng: Any) -> list[Row]:
    active = max(0, round(profile.targets["active_integrations"] + rng.uniform(-0.5, 0.5)))
    counts: list[int] = []
    while active > 0:  # now and then two connections of one kind (e.g. two Slack workspaces)
        count = 2 if active >= 2 and rng.random() < 0.15 else 1
        counts.append(count)
        active -= count
    counts += [0] * rng.choice((0, 0, 1, 1, 2, 3))  # connected, but no traffic in 30 days
    kinds = rng.sample(INTEGRATION_TYPES, len(counts))
    return [
        {
            "integrations.customer_id": profile.account.looker_customer_id,
            "integrations.integration_type": kind,
            "integrations.active_count": count,
        }
        for kind, count in zip(kinds, counts, strict=True)
    ]


def _automation_rows(profile: AccountProfile, rng: Any) -> list[Row]:
    if rng.random() < _clamp(profile.targets["automation_active"], 0, 1):
        rules = [rng.randint(0, 6) for _ in range(rng.randint(1, 4))]
        if not any(rules):
            rules[0] = 1
    elif rng.random() < 0.5:
        rules = []
    else:
        rules = [0] * rng.randint(1, 2)  # built, but switched off
    return [
        {
            "automations.customer_id": profile.account.looker_customer_id,
            "automations.automation_name": f"automation-{number + 1}",
            "automations.active_rule_count": count,
        }
        for number, count in enumerate(rules)
    ]


_GENERATORS: Mapping[str, Callable[[AccountProfile, Any], list[Row]]] = {
    "account_usage": lambda p, rng: [_usage_row(p, rng)],
    "platform_value": lambda p, rng: [_value_row(p, rng)],
    "integrations": _integration_rows,
    "automations": _automation_rows,
}


# --------------------------------------------------------------------------------------------
# Expected metrics: plain definitions over the generated rows


def _number(value: object) -> Fraction | None:
    if value is None:
        return None
    return exact(value) if isinstance(value, float) else Fraction(int(str(value)))


def _decimal(value: Fraction | None) -> Metric:
    return None if value is None else rounded(value)


def _share(part: object, whole: object, scale: int = 1) -> Fraction | None:
    top, bottom = _number(part), _number(whole)
    if top is None or not bottom:
        return None
    return top * scale / bottom


def _expected_usage(row: Row) -> dict[str, Metric]:
    now = _share(row["account_usage.sessions_30d"], row["account_usage.active_users_30d"])
    before = _share(
        row["account_usage.sessions_prior_30d"], row["account_usage.active_users_prior_30d"]
    )
    trend = None if now is None or not before else (now / before - 1) * 100
    return {
        "active_user_pct": _decimal(
            _share(row["account_usage.active_users_30d"], row["account_usage.seats_licensed"], 100)
        ),
        "sessions_per_user": _decimal(now),
        "sessions_per_user_trend_pct": _decimal(trend),
        "feature_breadth_pct": _decimal(
            _share(
                row["account_usage.modules_active_30d"], row["account_usage.modules_licensed"], 100
            )
        ),
        "platform_score": _decimal(_number(row["account_usage.platform_score"])),
    }


def _expected_value(row: Row) -> dict[str, Metric]:
    def pct(name: str) -> Metric:
        fraction = _number(row[name])
        return None if fraction is None else _decimal(fraction * 100)

    return {
        "positive_sentiment_pct": pct("platform_value.positive_rating_rate"),
        "response_before_target_pct": pct("platform_value.responded_before_target_rate"),
        "automated_resolution_pct": pct("platform_value.automated_resolution_rate"),
        "scheduled_reports": _decimal(_number(row["platform_value.scheduled_report_count"])),
    }


def _expected(view: str, rows: list[Row]) -> dict[str, Metric]:
    """A known customer's metrics from its rows in one view."""
    if view == "account_usage":
        return _expected_usage(rows[0]) if rows else dict.fromkeys(USAGE_METRICS)
    if view == "platform_value":
        return _expected_value(rows[0]) if rows else dict.fromkeys(VALUE_METRICS)
    if view == "integrations":
        return {"active_integrations": Decimal(sum(r["integrations.active_count"] for r in rows))}
    active = any(r["automations.active_rule_count"] > 0 for r in rows)
    return {"automation_active": Decimal(1 if active else 0)}


def _served_views(settings: Settings) -> dict[str, str]:
    """Configured Look id → the sandbox view it serves (Looks naming no such view are 404)."""
    served: dict[str, str] = {}
    for look in settings.looks:
        view = look.customer_id_field.split(".", 1)[0]
        if view in VIEW_METRICS and view not in served.values():
            served[look.id] = view
    return served


def _customer_of(view: str) -> Callable[[Row], str]:
    field_name = f"{view}.customer_id"
    return lambda row: str(row[field_name])


def _stamp(view: str, rows: list[Row], month: str) -> list[Row]:
    """The rows with their month, in the view's field order."""
    stamp = date_field(view)
    return [
        {name: month if name == stamp else row[name] for name in VIEW_FIELDS[view]} for row in rows
    ]


def _draw(portfolio: Portfolio, month: str) -> dict[str, list[Row]]:
    """One month's rows by view for every account Looker knows in ``portfolio``."""
    rng = portfolio.rng("looker")
    rows_by_view: dict[str, list[Row]] = {view: [] for view in VIEW_METRICS}
    for profile in portfolio.profiles:
        if profile.account.looker_customer_id is None or not profile.has("looker"):
            continue
        for view, make in _GENERATORS.items():
            rows_by_view[view].extend(_stamp(view, make(profile, rng), month))
    return rows_by_view


def _recount(
    looks: Mapping[str, list[Row]],
    views: Mapping[str, str],
    customers: Mapping[str, str | None],
    month: str,
) -> dict[str, dict[str, Metric]]:
    """Every account's metrics from the served Looks' rows of one month.

    A customer is known to Looker that month when it has a row in some served Look; a known
    customer's metrics come from its rows (none in a multi-row view: 0 integrations, no active
    automation); an unknown one has no metrics.
    """
    mine: dict[str, dict[str, list[Row]]] = {}
    for look_id, view in views.items():
        customer_field, stamp = f"{view}.customer_id", date_field(view)
        for row in looks[look_id]:
            if row[stamp] == month:
                mine.setdefault(str(row[customer_field]), {}).setdefault(view, []).append(row)
    expected: dict[str, dict[str, Metric]] = {}
    for account_id, customer in customers.items():
        rows = mine.get(customer) if customer is not None else None
        metrics: dict[str, Metric] = {}
        for view in views.values():
            if rows:
                metrics.update(_expected(view, rows.get(view, [])))
            else:
                metrics.update(dict.fromkeys(VIEW_METRICS[view]))
        expected[account_id] = metrics
    return expected


def _data(
    rows_by_view: Mapping[str, list[Row]], settings: Settings, portfolio: Portfolio, month: str
) -> Data:
    views = _served_views(settings)
    # Each Look is saved sorted by its customer id (stable: a customer's rows keep their order,
    # months oldest first).
    looks = {
        look_id: sorted(rows_by_view[view], key=_customer_of(view))
        for look_id, view in views.items()
    }
    customers = {p.account_id: p.account.looker_customer_id for p in portfolio.profiles}
    return Data(
        looks=looks,
        expected=_recount(looks, views, customers, month),
        views=views,
        today=portfolio.as_of,
        customers=customers,
    )


def last_complete_month(day: date) -> str:
    """``YYYY-MM`` of the month before the one holding ``day``."""
    return f"{add_months(date(day.year, day.month, 1), -1):%Y-%m}"


def generate(portfolio: Portfolio, section: SectionLike = None) -> Data:
    """Look rows for every account Looker knows, deterministically for the portfolio's seed;
    every row is of the last complete month before the portfolio's date."""
    month = last_complete_month(portfolio.as_of)
    return _data(_draw(portfolio, month), Settings.of(section), portfolio, month)


def generate_history(
    timeline: Timeline, slices: Sequence[Portfolio], section: SectionLike = None
) -> Data:
    """Every month of ``timeline``: slice k's rows stamped with its month (an account that is no
    customer that month has none); ``expected`` is the last month's, ``expected_at`` any month's."""
    del timeline  # the slices carry each month's targets and who is active
    rows_by_view: dict[str, list[Row]] = {view: [] for view in VIEW_METRICS}
    for piece in slices:
        start = piece.extra["month_start"]
        assert isinstance(start, date)
        for view, rows in _draw(piece, f"{start:%Y-%m}").items():
            rows_by_view[view].extend(rows)
    last = slices[-1]
    return _data(rows_by_view, Settings.of(section), last, last_complete_month(last.as_of))


# --------------------------------------------------------------------------------------------
# The server


class App(VendorApp):
    """Looker API 4.0: login and run_look, with Looker's auth and error behaviour."""

    name = "looker"

    def __init__(self, data: Data, section: SectionLike = None) -> None:
        super().__init__()
        self.data = data
        self.settings = Settings.of(section)
        self._lock = threading.Lock()
        self._tokens: dict[str, int] = {}  # token → authorised calls made with it
        self.logins = 0
        #: The bodies of the inline queries received (run_inline_query), oldest first.
        self.queries: deque[Row] = deque(maxlen=QUERY_LOG)

    # Vendor shapes ---------------------------------------------------------------------------
    def error(self, status: int, code: str, message: str) -> Response:
        del code  # Looker's errors carry a message and a documentation link only
        return Response(status, {"message": message, "documentation_url": DOCS_URL})

    def too_many_requests(self, retry_after: float, reset_epoch: float) -> Response:
        response = self.error(429, "too_many_requests", "Too Many Requests")
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        return response

    def unauthorized(self) -> Response:
        return self.error(401, "unauthorized", "Requires authentication.")

    # Routing --------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        if request.path == f"{API}/login":
            if request.method != "POST":
                raise HttpError(self.error(404, "not_found", "Not found"))
            return self._login(request)
        match = _RUN_PATH.fullmatch(request.path)
        if match and request.method == "GET":
            self._authorise(request)
            return self._run_look(match.group(1), match.group(2), request)
        match = _LOOK_PATH.fullmatch(request.path)
        if match and request.method == "GET":
            self._authorise(request)
            return self._get_look(match.group(1), request)
        match = _INLINE_PATH.fullmatch(request.path)
        if match and request.method == "POST":
            self._authorise(request)
            return self._run_inline(match.group(1), request)
        raise HttpError(self.error(404, "not_found", "Not found"))

    def _login(self, request: Request) -> Response:
        form = request.form() if request.body else {}
        client_id = form.get("client_id") or request.arg("client_id")  # query: deprecated form
        secret = form.get("client_secret") or request.arg("client_secret")
        if not client_id and not secret:  # HTTP Basic client credentials (RFC 6749 2.3.1)
            client_id, secret = _basic_credentials(request.header("Authorization"))
        if (
            self.faults.auth_rejected
            or client_id != self.data.client_id
            or secret != self.data.client_secret
        ):
            raise HttpError(self.error(404, "not_found", "Not found"))
        with self._lock:
            self.logins += 1
            token = hashlib.sha256(f"looker-token:{self.logins}".encode()).hexdigest()[:40]
            self._tokens[token] = 0
        return Response(
            200,
            {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME_SECONDS},
        )

    def _authorise(self, request: Request) -> None:
        scheme, _, token = (request.header("Authorization") or "").strip().partition(" ")
        token = token.strip()
        with self._lock:
            used = self._tokens.get(token)
            expiry = self.faults.token_expiry_after
            if (
                scheme.lower() not in ("token", "bearer")
                or used is None
                or self.faults.auth_rejected
                or (expiry is not None and used >= expiry)
            ):
                raise HttpError(self.unauthorized())
            self._tokens[token] = used + 1

    def _get_look(self, look_id: str, request: Request) -> Response:
        if look_id not in self.data.views:
            raise HttpError(self.error(404, "not_found", "Not found"))
        look = self.data.look(look_id)
        wanted = [f.strip() for f in (request.arg("fields") or "").split(",") if f.strip()]
        return Response(200, {k: v for k, v in look.items() if k in wanted} if wanted else look)

    def _run_look(self, look_id: str, result_format: str, request: Request) -> Response:
        self._check_format(result_format)
        if look_id not in self.data.views:
            raise HttpError(self.error(404, "not_found", "Not found"))
        return self._run(self.data.saved_query(look_id), look_id, request, saved=True)

    def _run_inline(self, result_format: str, request: Request) -> Response:
        self._check_format(result_format)
        try:
            query = request.json()
        except ValueError:
            raise HttpError(self.error(400, "bad_request", "Request body is not JSON")) from None
        if not isinstance(query, dict):
            raise HttpError(self.error(400, "bad_request", "The query must be a JSON object"))
        with self._lock:
            self.queries.append(query)
        if query.get("model") != MODEL:
            raise HttpError(self.error(404, "not_found", f"Model {query.get('model')!r} not found"))
        view = query.get("view")
        look_id = next((k for k, v in self.data.views.items() if v == view), None)
        if look_id is None:
            raise HttpError(self.error(404, "not_found", f"Explore {view!r} not found"))
        return self._run(query, look_id, request)

    def _check_format(self, result_format: str) -> None:
        if result_format != "json":
            raise HttpError(
                self.error(400, "bad_request", f"Unsupported result_format: {result_format}")
            )

    def _run(
        self, query: Mapping[str, Any], look_id: str, request: Request, *, saved: bool = False
    ) -> Response:
        """A query's rows: its date filter applied, its fields, its sorts, then the row limit.

        The stored rows are the saved query's result order and fields, so a Look run as saved
        returns them as stored (filtered); an inline query gets its own fields and sorts. A row
        with no month (hand-made test data) is kept by every date filter, and a query error row
        (``looker_error``, hand-made too) is returned whole by either endpoint, as Looker does.
        """
        view = self.data.views[look_id]
        known = VIEW_FIELDS[view]
        spans = self._spans(view, query)
        fields = query.get("fields") or list(known)
        unknown = [f for f in fields if f not in known] if isinstance(fields, list) else fields
        if unknown:
            raise HttpError(
                self.error(400, "bad_request", f"Unknown field(s) {unknown!r} in {view}")
            )
        stamp = date_field(view)
        rows = [
            row
            for row in self.data.looks[look_id]
            if spans is None or stamp not in row or selects(spans, month_start(row[stamp]))
        ]
        if not saved:
            rows = [
                row if "looker_error" in row else {n: row[n] for n in fields if n in row}
                for row in rows
            ]
            for sort in reversed(query.get("sorts") or []):  # the first sort is the primary one
                name, _, direction = str(sort).partition(" ")
                if name not in fields:
                    raise HttpError(self.error(400, "bad_request", f"Cannot sort on {name!r}"))
                rows.sort(key=_sort_key(name), reverse=direction.startswith("desc"))
        limit = self._limit(request.arg("limit"), query.get("limit"))
        cap = self.faults.row_limit  # fault: an instance that returns at most N rows
        if cap is not None:
            limit = cap if limit == -1 else min(limit, cap)
        return Response(200, rows if limit == -1 else rows[:limit])

    def _spans(self, view: str, query: Mapping[str, Any]) -> tuple[Span, ...] | None:
        """The date filter of a query as spans (None: no date filter); other filters, custom
        filter expressions and time zones other than UTC are beyond the stand-in (400)."""
        if query.get("filter_expression"):
            raise HttpError(
                self.error(400, "bad_request", "Custom filter expressions are not supported")
            )
        if query.get("query_timezone") not in (None, "", "UTC", "Etc/UTC"):
            raise HttpError(self.error(400, "bad_request", "The stand-in answers in UTC only"))
        filters = query.get("filters") or {}
        if not isinstance(filters, dict):
            raise HttpError(self.error(400, "bad_request", "filters must be an object"))
        spans: tuple[Span, ...] | None = None
        for name, expression in filters.items():
            if name != date_field(view):
                raise HttpError(self.error(400, "bad_request", f"Cannot filter {view} on {name!r}"))
            if expression in (None, ""):
                continue  # an empty filter filters nothing
            try:
                spans = date_filter(str(expression), self.data.today)
            except FilterError as exc:
                raise HttpError(
                    self.error(400, "bad_request", f"Invalid filter for {name}: {exc}")
                ) from None
        return spans

    def _limit(self, raw_limit: str | None, saved: object) -> int:
        raw = raw_limit if raw_limit not in (None, "") else saved
        try:
            limit = DEFAULT_ROW_CAP if raw in (None, "") else int(str(raw))
        except ValueError:
            raise HttpError(
                self.error(400, "bad_request", f"limit must be an integer, not {raw!r}")
            ) from None
        if limit != -1 and limit < 1:
            raise HttpError(self.error(400, "bad_request", "limit must be -1 or positive"))
        return limit


def _sort_key(name: str) -> Callable[[Row], tuple[bool, Any]]:
    """Rows by one field, nulls last (ascending)."""
    return lambda row: (row.get(name) is None, row.get(name))


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    """(client_id, client_secret) of an ``Authorization: Basic …`` header, else (None, None)."""
    scheme, _, encoded = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        return None, None
    return unquote_plus(client_id), unquote_plus(secret)


def environment(url: str, ca_bundle: str) -> dict[str, str]:
    """Point the pipeline's Looker extractor at this stand-in (plain HTTP: no CA needed)."""
    del ca_bundle
    return {
        "LOOKER_BASE_URL": url,
        "LOOKER_CLIENT_ID": CLIENT_ID,
        "LOOKER_CLIENT_SECRET": CLIENT_SECRET,
    }
