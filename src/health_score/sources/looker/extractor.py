"""Looker extraction: a few saved Looks, each run once per pipeline run.

Each configured Look is run exactly once per pipeline run (``GET /api/4.0/looks/{id}/run/json``),
never once per account, after one shared login; rows are matched to accounts by the configured
customer id field. See the package docstring for the transforms.
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
        """All rows of one Look, in one request (plus one re-login if the token expired)."""
        path = f"looks/{quote(look.id, safe='')}/run/json"
        endpoint = f"GET {API_PATH}/{path}"
        generation, token = self._token.current()
        try:
            response = self._get(path, look, token)
        except AuthenticationError as exc:
            if exc.status != 401:
                raise
            log.info("looker: token refused while running %s; logging in again", look.label)
            self._token.refresh(generation)
            response = self._get(path, look, self._token.current()[1])
        body = self.client.json(response)
        if not isinstance(body, list) or not all(isinstance(row, dict) for row in body):
            raise SourceError(SOURCE, endpoint, f"{look.label}: expected a JSON array of rows")
        for row in body:
            if "looker_error" in row:  # Looker reports query errors as a row
                raise SourceError(SOURCE, endpoint, f"{look.label}: {row['looker_error']}")
        return body

    def _get(self, path: str, look: LookSettings, token: str) -> requests.Response:
        return self.client.request(
            "GET",
            path,
            params={"limit": look.limit},
            headers={"Authorization": f"token {token}", "Accept": "application/json"},
        )

    # -- one pass --------------------------------------------------------------------------

    def extract(self, accounts: Sequence[Account]) -> SourceResult:
        if self.past and self.settings.looks:
            return self._past_period(accounts)
        notes: list[str] = []
        if not self.settings.looks:
            notes.append("no Looks configured (sources.yaml looker.looks)")
        rows = self._run_all()
        indexed = [self._index(look, rows[look.id], notes) for look in self.settings.looks]
        known: set[str] = set().union(*(look.by_customer for look in indexed))
        metrics = {
            account.account_id: account_metrics(account.looker_customer_id, indexed, known)
            for account in accounts
        }
        unavailable = {
            account.account_id: cut
            for account in accounts
            if (cut := unavailable_metrics(account.looker_customer_id, indexed))
        }
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
        return SourceResult(
            source=SOURCE,
            metrics=metrics,
            requests=self.client.requests,
            notes=(*notes, *incomplete),
            unavailable=unavailable,
            incomplete=tuple(incomplete),
        )

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

    def _run_all(self) -> dict[str, list[dict[str, Any]]]:
        """Every configured Look's rows, the runs concurrent after one shared login."""
        looks = self.settings.looks
        if not looks:
            return {}
        self._token.current()
        workers = min(self.settings.http.max_workers, len(looks))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="looker") as pool:
            runs = {look.id: pool.submit(self.run_look, look) for look in looks}
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
        endpoint = f"GET {API_PATH}/looks/{look.id}/run/json"
        if rows:
            expected = {look.customer_id_field}
            for transform in look.metrics.values():
                expected |= transform_fields(transform)
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

    Saved Looks carry their own relative windows: they are run only when ``as_of`` is within
    ``current_state_grace_days`` of ``now`` (the run's reference now; the wall clock unless
    given)."""
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
