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
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any
from urllib.parse import unquote_plus

from health_score_sandbox.config import SectionLike, value_of
from health_score_sandbox.portfolio import AccountProfile, Portfolio
from health_score_sandbox.server import HttpError, Request, Response, VendorApp
from health_score_sandbox.truth import Metric, exact, rounded

CLIENT_ID = "sandbox-looker-client-id"
CLIENT_SECRET = "sandbox-looker-client-secret"  # noqa: S105 - a fake credential for the stand-in
DOCS_URL = "https://cloud.google.com/looker/docs/"
DEFAULT_ROW_CAP = 5000
TOKEN_LIFETIME_SECONDS = 3600
API = "/api/4.0"
_RUN_PATH = re.compile(rf"{re.escape(API)}/looks/([^/]+)/run/([^/]+)")

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


@dataclass(frozen=True, slots=True)
class Look:
    """A configured Look: its id, and the ``view.field`` that names the customer."""

    id: str
    customer_id_field: str


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
                Look(str(value_of(look, "id")), str(value_of(look, "customer_id_field")))
                for look in looks
            )
        )


@dataclass
class Data:
    """The rows of every Look served (by Look id) and the metrics a correct extractor derives."""

    looks: dict[str, list[Row]]
    expected: dict[str, dict[str, Metric]]
    views: dict[str, str] = field(default_factory=dict)  # Look id → view it serves
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET

    def minimum_requests(self, section: SectionLike = None) -> int:
        """One login, then one run per configured Look (``limit=-1`` needs no paging)."""
        looks = Settings.of(section).looks
        return 1 + len(looks) if looks else 0


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


def generate(portfolio: Portfolio, section: SectionLike = None) -> Data:
    """Look rows for every account Looker knows, deterministically for the portfolio's seed."""
    settings = Settings.of(section)
    rng = portfolio.rng("looker")
    rows_by_view: dict[str, list[Row]] = {view: [] for view in VIEW_METRICS}
    per_customer: dict[str, dict[str, list[Row]]] = {}
    for profile in portfolio.profiles:
        customer = profile.account.looker_customer_id
        if customer is None or not profile.has("looker"):
            continue
        mine: dict[str, list[Row]] = {}
        for view, make in _GENERATORS.items():
            mine[view] = make(profile, rng)
            rows_by_view[view].extend(mine[view])
        per_customer[profile.account_id] = mine

    views = _served_views(settings)
    expected: dict[str, dict[str, Metric]] = {}
    for profile in portfolio.profiles:
        mine = per_customer.get(profile.account_id, {})
        known = any(mine.get(view) for view in views.values())
        metrics: dict[str, Metric] = {}
        for view in views.values():
            if known:
                metrics.update(_expected(view, mine.get(view, [])))
            else:
                metrics.update(dict.fromkeys(VIEW_METRICS[view]))
        expected[profile.account_id] = metrics
    # Each Look is saved sorted by its customer id (stable: a customer's rows keep their order).
    looks = {
        look_id: sorted(rows_by_view[view], key=_customer_of(view))
        for look_id, view in views.items()
    }
    return Data(looks=looks, expected=expected, views=views)


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

    def _run_look(self, look_id: str, result_format: str, request: Request) -> Response:
        if result_format != "json":
            raise HttpError(
                self.error(400, "bad_request", f"Unsupported result_format: {result_format}")
            )
        rows = self.data.looks.get(look_id)
        if rows is None:
            raise HttpError(self.error(404, "not_found", "Not found"))
        raw_limit = request.arg("limit")
        try:
            limit = DEFAULT_ROW_CAP if raw_limit in (None, "") else int(str(raw_limit))
        except ValueError:
            raise HttpError(
                self.error(400, "bad_request", f"limit must be an integer, not {raw_limit!r}")
            ) from None
        if limit != -1 and limit < 1:
            raise HttpError(self.error(400, "bad_request", "limit must be -1 or positive"))
        cap = self.faults.row_limit  # fault: an instance that returns at most N rows
        if cap is not None:
            limit = cap if limit == -1 else min(limit, cap)
        return Response(200, rows if limit == -1 else rows[:limit])


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
