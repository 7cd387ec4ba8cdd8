"""Looker extraction: a few saved Looks, each run once per pipeline run.

Each configured Look is run exactly once per pipeline run, never once per account, after one
shared login; rows are matched to accounts by the configured customer id field. See the package
docstring for the transforms.

A Look without ``date_field`` is run as saved (``GET /api/4.0/looks/{id}/run/json``): it answers
for its own relative window, so for a past period it is not run and its metrics are
*unavailable*. A Look with ``date_field`` is run for the period, current or past: its saved query
is read (``GET /api/4.0/looks/{id}?fields=query``) and run with the filter on that field replaced
by the period's range (``POST /api/4.0/queries/run/json``, run_inline_query), e.g.
``"2026-06-01 to 2026-07-01"`` for 2026-06 (Looker's ``A to B`` includes A and excludes B), in UTC.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pydantic
import requests

from health_score.deadline import Deadline
from health_score.records import Account
from health_score.redact import register_secret
from health_score.sources.base import Extractor, SourceResult
from health_score.sources.http import AuthenticationError, SourceClient, SourceError
from health_score.sources.looker.metrics import (
    IndexedLook,
    Row,
    account_metrics,
    across_metrics,
    across_unavailable,
    is_multi_row,
    locate_cut,
    transform_fields,
    unavailable_metrics,
)
from health_score.sources.looker.settings import (
    CREDENTIAL_HINT,
    CREDENTIAL_VARS,
    SOURCE,
    LookSettings,
    Settings,
)

log = logging.getLogger(__name__)

API_PATH = "/api/4.0"
#: The Query fields a client may send back to run a saved query inline (``filter_config``, the
#: explore UI's state, is left out: Looker requires it cleared when the filters change).
WRITABLE_QUERY_FIELDS = (
    "model",
    "view",
    "fields",
    "pivots",
    "fill_fields",
    "filters",
    "filter_expression",
    "sorts",
    "limit",
    "column_limit",
    "total",
    "row_total",
    "subtotals",
    "dynamic_fields",
    "query_timezone",
)
#: Rows Looker returns when a run is not given a ``limit``.
DEFAULT_ROW_CAP = 5000
#: Refresh a token this many seconds before Looker says it expires.
TOKEN_MARGIN_SECONDS = 60.0


# --------------------------------------------------------------------------------------------
# The extractor


class _Token:
    """The API token, shared by concurrent Look runs; a stale one is replaced once, not per run."""

    def __init__(self, login: Callable[[], tuple[str, float]]) -> None:
        self._login = login
        self._lock = threading.Lock()
        self._generation = 0
        self._value: str | None = None
        self._expires_at = 0.0

    def _renew(self) -> None:
        token, expires_in = self._login()
        self._value = token
        self._expires_at = time.monotonic() + max(expires_in - TOKEN_MARGIN_SECONDS, 0.0)
        self._generation += 1

    def current(self) -> tuple[int, str]:
        with self._lock:
            if self._value is None or time.monotonic() >= self._expires_at:
                self._renew()
            assert self._value is not None
            return self._generation, self._value

    def refresh(self, stale_generation: int) -> None:
        """Log in again unless another thread already replaced the token that was refused."""
        with self._lock:
            if self._generation == stale_generation:
                self._renew()


class LookerExtractor:
    """Runs every configured Look once (concurrently) and maps rows to accounts."""

    name = SOURCE

    def __init__(
        self,
        settings: Settings,
        *,
        base_url: str,
        client_id: str,
        client_secret: pydantic.SecretStr,
        session: requests.Session | None = None,
        deadline: Deadline | None = None,
        as_of: datetime | None = None,
        now: datetime | None = None,
    ) -> None:
        self.settings = settings
        self.as_of = as_of
        self.now = now
        root = base_url.rstrip("/")
        if not root.endswith(API_PATH):
            root += API_PATH  # looker.ini style: the instance URL without the API path
        self.client = SourceClient(
            SOURCE,
            root,
            session=session,
            policy=settings.http.policy(deadline),
            credential_hint=CREDENTIAL_HINT,
        )
        self._client_id = client_id
        self._client_secret = client_secret
        self._token = _Token(self._login)
        #: Look id → the date filter it was run with (for the notes and the manifest).
        self.filters_used: dict[str, str] = {}

    @property
    def provides(self) -> frozenset[str]:
        return self.settings.metric_names

    @property
    def requests_made(self) -> int:
        return self.client.requests

    @property
    def past(self) -> bool:
        """Whether ``as_of`` lies more than ``current_state_grace_days`` before the reference
        now (the wall clock unless given): a saved Look's relative window then is not the
        period's."""
        if self.as_of is None:
            return False
        now = self.now or datetime.now(UTC)
        return now - self.as_of > timedelta(days=self.settings.current_state_grace_days)

    @property
    def window(self) -> tuple[datetime, datetime] | None:
        """The period's range ``[start of the month ending at as_of, as_of)`` (None without
        ``as_of``: the Looks are run as saved)."""
        if self.as_of is None:
            return None
        end = self.as_of.astimezone(UTC)
        last = end - timedelta(microseconds=1)
        return datetime(last.year, last.month, 1, tzinfo=UTC), end

    def period_filter(self) -> str:
        """The period's range as a Looker date filter expression (start included, end not)."""
        window = self.window
        assert window is not None
        return " to ".join(_looker_time(moment) for moment in window)

    # -- HTTP ------------------------------------------------------------------------------

    def _login(self) -> tuple[str, float]:
        form = {
            "client_id": self._client_id,
            "client_secret": self._client_secret.get_secret_value(),
        }
        try:
            response = self.client.request("POST", "login", data=form)
        except SourceError as exc:
            # Looker answers unknown API credentials with 404 "Not found".
            if exc.status == 404 and not isinstance(exc, AuthenticationError):
                raise AuthenticationError(
                    SOURCE,
                    exc.endpoint,
                    f"credentials rejected (HTTP 404 Not found); check {CREDENTIAL_HINT} "
                    "(and that LOOKER_BASE_URL is the instance's API address)",
                    404,
                ) from None
            if exc.status is not None and not isinstance(exc, AuthenticationError):
                # A login's body is never quoted (it may echo the credentials sent).
                raise SourceError(
                    SOURCE, exc.endpoint, f"login failed (HTTP {exc.status})", exc.status
                ) from None
            raise
        endpoint = f"POST {API_PATH}/login"
        try:
            body = response.json()
        except ValueError:
            raise SourceError(
                SOURCE, endpoint, "malformed JSON in the login answer (never quoted)"
            ) from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise SourceError(SOURCE, endpoint, "no access_token in the answer")
        register_secret(token)
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 3600.0
        log.debug("looker: logged in (token valid %.0f s)", lifetime)
        return token, lifetime

    def run_look(self, look: LookSettings) -> list[dict[str, Any]]:
        """All rows of one Look as saved, in one request (plus one re-login if the token
        expired)."""
        path = f"looks/{quote(look.id, safe='')}/run/json"
        response = self._authorised(look, "GET", path, params={"limit": look.limit})
        return self._rows(look, response, f"GET {API_PATH}/{path}")

    def run_for_period(self, look: LookSettings) -> list[dict[str, Any]]:
        """All rows of one Look for the period: its saved query read, then run with the filter
        on ``date_field`` replaced by the period's range (two requests)."""
        assert look.date_field is not None
        path = f"looks/{quote(look.id, safe='')}"
        endpoint = f"GET {API_PATH}/{path}"
        body = self.client.json(self._authorised(look, "GET", path, params={"fields": "query"}))
        saved = body.get("query") if isinstance(body, dict) else None
        if not isinstance(saved, dict) or not saved.get("model") or not saved.get("view"):
            raise SourceError(SOURCE, endpoint, f"{look.label}: no saved query in the answer")
        expression = saved.get("filter_expression")
        if isinstance(expression, str) and look.date_field in expression:
            raise SourceError(
                SOURCE,
                endpoint,
                f"{look.label}: its saved custom filter expression also constrains "
                f"{look.date_field}, so the period's range cannot replace it; move that "
                "condition to a plain filter on the Look",
            )
        query = {k: saved[k] for k in WRITABLE_QUERY_FIELDS if saved.get(k) is not None}
        period = self.period_filter()
        filters = saved.get("filters")
        query["filters"] = {
            **(filters if isinstance(filters, dict) else {}),
            look.date_field: period,
        }
        query["query_timezone"] = "UTC"  # the period's bounds are UTC instants
        query["limit"] = str(look.limit)
        self.filters_used[look.id] = period
        response = self._authorised(
            look, "POST", "queries/run/json", params={"limit": look.limit}, json=query
        )
        return self._rows(look, response, f"POST {API_PATH}/queries/run/json")

    def _authorised(
        self, look: LookSettings, method: str, path: str, **kwargs: Any
    ) -> requests.Response:
        """One request with the shared token; a refused token is replaced once."""
        generation, token = self._token.current()
        try:
            return self._send(method, path, token, **kwargs)
        except AuthenticationError as exc:
            if exc.status != 401:
                raise
            log.info("looker: token refused while running %s; logging in again", look.label)
            self._token.refresh(generation)
            return self._send(method, path, self._token.current()[1], **kwargs)

    def _send(self, method: str, path: str, token: str, **kwargs: Any) -> requests.Response:
        return self.client.request(
            method,
            path,
            headers={"Authorization": f"token {token}", "Accept": "application/json"},
            **kwargs,
        )

    def _rows(
        self, look: LookSettings, response: requests.Response, endpoint: str
    ) -> list[dict[str, Any]]:
        body = self.client.json(response)
        if not isinstance(body, list) or not all(isinstance(row, dict) for row in body):
            raise SourceError(SOURCE, endpoint, f"{look.label}: expected a JSON array of rows")
        for row in body:
            if "looker_error" in row:  # Looker reports query errors as a row
                raise SourceError(SOURCE, endpoint, f"{look.label}: {row['looker_error']}")
        return body

    # -- one pass --------------------------------------------------------------------------

    def dated(self, look: LookSettings) -> bool:
        """Whether the Look is run for the period (it names a date field, and there is one)."""
        return look.date_field is not None and self.as_of is not None

    def extract(self, accounts: Sequence[Account]) -> SourceResult:
        looks = self.settings.looks
        runnable = tuple(look for look in looks if self.dated(look) or not self.past)
        if looks and not runnable:
            return self._past_period(accounts)
        notes: list[str] = []
        if not looks:
            notes.append("no Looks configured (sources.yaml looker.looks)")
        rows = self._run_all(runnable)
        indexed = [self._index(look, rows[look.id], notes) for look in runnable]
        known: set[str] = set().union(*(look.by_customer for look in indexed))
        across = self.settings.across_looks
        metrics = {
            account.account_id: {
                **account_metrics(account.looker_customer_id, indexed, known),
                **across_metrics(account.looker_customer_id, across, indexed, known),
            }
            for account in accounts
        }
        unavailable = {
            account.account_id: cut
            for account in accounts
            if (
                cut := unavailable_metrics(account.looker_customer_id, indexed)
                | (
                    across_unavailable(account.looker_customer_id, across, indexed)
                    if account.looker_customer_id
                    else frozenset()
                )
            )
        }
        for look in runnable:
            if look.id in self.filters_used:
                notes.append(
                    f"{look.label}: run for the period with {look.date_field} "
                    f'filtered to "{self.filters_used[look.id]}"'
                )
        incomplete: list[str] = []
        for entry in indexed:
            if entry.complete:
                continue
            hit = sum(
                1
                for account in accounts
                if account.looker_customer_id and entry.unavailable(account.looker_customer_id)
            )
            where = (
                f"beyond customer {entry.cut.last} (the Look is in customer order)"
                if entry.cut is not None
                else "of the Look (its rows are not in customer order, so the cut is unknown)"
            )
            limit = (
                f"its configured limit of {entry.look.limit:,} rows"
                if entry.look.limit > 0
                else f"Looker's default cap of {DEFAULT_ROW_CAP:,} rows (asked for every row)"
            )
            reason = (
                f"{entry.look.label} reached its row limit, {limit}: results are "
                f"truncated and its metrics are unavailable for {hit} account(s) {where}; "
                "raise or remove `limit` in sources.yaml"
            )
            log.warning("looker: %s", reason)
            incomplete.append(reason)
        skipped = [look for look in looks if look not in runnable]
        if skipped:
            incomplete.append(self._skipped(skipped, accounts, metrics, unavailable))
        return SourceResult(
            source=SOURCE,
            metrics=metrics,
            requests=self.client.requests,
            notes=(*notes, *incomplete),
            unavailable=unavailable,
            incomplete=tuple(incomplete),
            window=self.window if self.filters_used else None,
        )

    def _skipped(
        self,
        skipped: Sequence[LookSettings],
        accounts: Sequence[Account],
        metrics: dict[str, dict[str, Any]],
        unavailable: dict[str, frozenset[str]],
    ) -> str:
        """Mark the metrics of Looks not run for a past period unavailable; the reason."""
        assert self.as_of is not None  # past needs it
        skipped_ids = {look.id for look in skipped}
        lost = frozenset(m for look in skipped for m in look.metrics) | frozenset(
            metric
            for metric, spec in self.settings.across_looks.items()
            if any(side.look in skipped_ids for side in spec.sides)
        )
        for account in accounts:
            metrics[account.account_id].update(dict.fromkeys(lost))
            unavailable[account.account_id] = (
                unavailable.get(account.account_id, frozenset()) | lost
            )
        reason = (
            f"not reconstructable for a past period (as_of {self.as_of:%Y-%m-%d} is more than "
            f"{self.settings.current_state_grace_days} days before now): "
            f"{', '.join(look.label for look in skipped)} name no date_field and answer for "
            f"their own relative window, not the period's; metrics unavailable: "
            f"{', '.join(sorted(lost))}"
        )
        log.warning("looker: %s", reason)
        return reason

    def _past_period(self, accounts: Sequence[Account]) -> SourceResult:
        """Nothing is asked of Looker: every Look's metrics are unavailable for the period."""
        assert self.as_of is not None  # past needs it
        looks = ", ".join(look.label for look in self.settings.looks)
        metrics = sorted(self.settings.metric_names)
        reason = (
            f"not reconstructable for a past period (as_of {self.as_of:%Y-%m-%d} is more than "
            f"{self.settings.current_state_grace_days} days before now): {looks} answer for "
            f"their own relative window, not the period's; metrics unavailable: "
            f"{', '.join(metrics)}"
        )
        log.warning("looker: %s", reason)
        lost = frozenset(metrics)
        return SourceResult(
            source=SOURCE,
            metrics={a.account_id: dict.fromkeys(metrics) for a in accounts},
            requests=self.client.requests,
            notes=(reason,),
            unavailable={a.account_id: lost for a in accounts},
            incomplete=(reason,),
        )

    def _run_all(self, looks: Sequence[LookSettings]) -> dict[str, list[dict[str, Any]]]:
        """The rows of every Look given, the runs concurrent after one shared login."""
        if not looks:
            return {}
        self._token.current()
        workers = min(self.settings.http.max_workers, len(looks))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="looker") as pool:
            runs = {
                look.id: pool.submit(
                    self.run_for_period if self.dated(look) else self.run_look, look
                )
                for look in looks
            }
            return {look_id: future.result() for look_id, future in runs.items()}

    def _index(self, look: LookSettings, rows: Sequence[Row], notes: list[str]) -> IndexedLook:
        """Group a Look's rows by customer id, after checking its fields and its completeness."""
        complete = self._check_rows(look, rows, notes)
        by_customer: dict[str, list[Row]] = defaultdict(list)
        for row in rows:
            customer = row.get(look.customer_id_field)
            if customer is not None:
                by_customer[str(customer)].append(row)
        duplicated = sum(1 for mine in by_customer.values() if len(mine) > 1)
        one_row = sorted(m for m, t in look.metrics.items() if not is_multi_row(t))
        if duplicated and one_row:
            note = (
                f"{look.label}: {duplicated} customers have more than one row; "
                f"their first row is used for {', '.join(one_row)}"
            )
            log.warning("looker: %s", note)
            notes.append(note)
        cut = None if complete else locate_cut([row.get(look.customer_id_field) for row in rows])
        return IndexedLook(look, dict(by_customer), complete, cut)

    def _check_rows(self, look: LookSettings, rows: Sequence[Row], notes: list[str]) -> bool:
        """Check the fields the config expects; return False when the Look reached its row
        limit (its configured ``limit``, or Looker's 5,000-row default for ``limit: -1``)."""
        endpoint = (
            f"POST {API_PATH}/queries/run/json"
            if self.dated(look)
            else f"GET {API_PATH}/looks/{look.id}/run/json"
        )
        if rows:
            expected = {look.customer_id_field}
            for transform in look.metrics.values():
                expected |= transform_fields(transform)
            expected |= self.settings.across_fields(look.id)
            missing = sorted(expected - set(rows[0]))
            if missing:
                raise SourceError(
                    SOURCE,
                    endpoint,
                    f"{look.label} has no field {', '.join(missing)} "
                    f"(its fields: {', '.join(sorted(rows[0]))}); check sources.yaml",
                )
        # Truncated (False): extract() reports it, naming the Look; it degrades the run.
        reached = len(rows) >= look.limit if look.limit > 0 else len(rows) == DEFAULT_ROW_CAP
        return not reached


def _looker_time(moment: datetime) -> str:
    """A UTC instant as Looker's filter syntax writes it (a date when it is midnight)."""
    moment = moment.astimezone(UTC)
    if moment.time() == datetime.min.time():
        return f"{moment:%Y-%m-%d}"
    return f"{moment:%Y-%m-%d %H:%M:%S}"


def from_env(
    settings: Settings,
    env: Mapping[str, str],
    *,
    session: requests.Session | None = None,
    as_of: datetime | None = None,
    deadline: Deadline | None = None,
    now: datetime | None = None,
) -> Extractor | None:
    """The Looker extractor when LOOKER_BASE_URL, _CLIENT_ID and _CLIENT_SECRET are all set.

    Saved Looks carry their own relative windows: a Look without ``date_field`` is run only when
    ``as_of`` is within ``current_state_grace_days`` of ``now`` (the run's reference now; the
    wall clock unless given); one with ``date_field`` is run for the period ending at ``as_of``."""
    present = [name for name in CREDENTIAL_VARS if env.get(name, "").strip()]
    if not present:
        return None
    if len(present) < len(CREDENTIAL_VARS):
        missing = [name for name in CREDENTIAL_VARS if name not in present]
        log.warning("looker: not activated, %s not set", " and ".join(missing))
        return None
    return LookerExtractor(
        settings,
        base_url=env["LOOKER_BASE_URL"].strip(),
        client_id=env["LOOKER_CLIENT_ID"].strip(),
        client_secret=pydantic.SecretStr(env["LOOKER_CLIENT_SECRET"].strip()),
        session=session,
        deadline=deadline,
        as_of=as_of,
        now=now,
    )
