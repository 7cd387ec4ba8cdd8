"""Looker: product adoption and platform value, from a few saved Looks run once per pipeline run.

Each Look configured in ``sources.yaml`` (``looker.looks``) is run exactly once with
``GET /api/4.0/looks/{id}/run/json`` — never once per account — and its rows are matched to
accounts by the configured customer id field (``Account.looker_customer_id``). Per metric, a
transform turns the customer's rows into one raw value:

- ``field``: a field's value as is;
- ``ratio``: numerator / denominator (denominator 0 or null → no value);
- ``percent``: a fraction as a percent, or a ratio of two fields as a percent;
- ``change_pct``: percent change from a previous value to a current one (each a field or a ratio);
- ``presence``: 1 when the customer has a row with a positive value, 0 when Looker knows the
  customer but it has no such row, no value when Looker does not know the customer;
- ``sum``: a field summed over the customer's rows (0 for a known customer with none).

A customer is *known to Looker* when it appears in any configured Look. Looker caps results at
5,000 rows unless told otherwise: Looks run with ``limit=-1`` (no cap) by default; a Look given a
``limit`` that it reaches is reported as truncated, and then absence from it proves nothing, so
``presence`` and ``sum`` give no value (rather than 0) for customers without rows there.

Looks compute their own look-back windows inside Looker (``run_look`` takes no filters), so
``as_of`` is accepted for the common interface only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Annotated, Any, Literal
from urllib.parse import quote

import pydantic
import requests

from health_score.records import Account, MetricValue, metric_value
from health_score.sources.base import Extractor, SourceResult
from health_score.sources.http import AuthenticationError, SourceClient, SourceError
from health_score.sources.registry import HttpSettings

log = logging.getLogger(__name__)

SOURCE = "looker"
API_PATH = "/api/4.0"
CREDENTIAL_VARS = ("LOOKER_BASE_URL", "LOOKER_CLIENT_ID", "LOOKER_CLIENT_SECRET")
CREDENTIAL_HINT = "LOOKER_CLIENT_ID / LOOKER_CLIENT_SECRET"
#: Rows Looker returns when a run is not given a ``limit``.
DEFAULT_ROW_CAP = 5000
#: Refresh a token this many seconds before Looker says it expires.
TOKEN_MARGIN_SECONDS = 60.0

# --------------------------------------------------------------------------------------------
# Settings (the ``looker:`` section of sources.yaml)

#: ``view.field`` as Looker keys JSON rows (a table calculation has no view part).
FieldName = Annotated[
    str, pydantic.StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
]
MetricName = Annotated[str, pydantic.StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class Ratio(_Model):
    """numerator / denominator of two fields of the same row."""

    numerator: FieldName
    denominator: FieldName


class FieldTransform(_Model):
    transform: Literal["field"]
    field: FieldName


class RatioTransform(_Model):
    transform: Literal["ratio"]
    numerator: FieldName
    denominator: FieldName


class PercentTransform(_Model):
    """A fraction field × 100, or numerator / denominator × 100."""

    transform: Literal["percent"]
    field: FieldName | None = None
    numerator: FieldName | None = None
    denominator: FieldName | None = None

    @pydantic.model_validator(mode="after")
    def _one_form(self) -> PercentTransform:
        ratio = self.numerator is not None or self.denominator is not None
        if self.field is not None and ratio:
            raise ValueError("give either field, or numerator and denominator, not both")
        if self.field is None and (self.numerator is None or self.denominator is None):
            raise ValueError("needs field (a fraction), or numerator and denominator")
        return self


class ChangeTransform(_Model):
    """(current − previous) / previous × 100; each side a field or a ratio of two fields."""

    transform: Literal["change_pct"]
    current: FieldName | Ratio
    previous: FieldName | Ratio


class PresenceTransform(_Model):
    transform: Literal["presence"]
    field: FieldName


class SumTransform(_Model):
    transform: Literal["sum"]
    field: FieldName


Transform = Annotated[
    FieldTransform
    | RatioTransform
    | PercentTransform
    | ChangeTransform
    | PresenceTransform
    | SumTransform,
    pydantic.Field(discriminator="transform"),
]


def _look_id(value: object) -> object:
    # YAML reads `id: 101` as an int; Looker 4.0 ids are strings.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class LookSettings(_Model):
    """One saved Look: its id, the field naming the customer, and the metrics it yields."""

    id: Annotated[
        str,
        pydantic.BeforeValidator(_look_id),
        pydantic.StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$"),
    ]
    name: str = ""
    customer_id_field: FieldName
    limit: int = -1  # -1 = all rows; a positive limit that is reached is reported as truncation
    metrics: dict[MetricName, Transform] = pydantic.Field(min_length=1)

    @pydantic.field_validator("limit")
    @classmethod
    def _limit(cls, value: int) -> int:
        if value != -1 and value < 1:
            raise ValueError("must be -1 (no row cap) or a positive number of rows")
        return value

    @property
    def label(self) -> str:
        return f"Look {self.id}" + (f" ({self.name})" if self.name else "")


class Settings(_Model):
    """The ``looker:`` section of sources.yaml."""

    looks: tuple[LookSettings, ...] = ()
    http: HttpSettings = HttpSettings.model_validate({})

    @pydantic.field_validator("looks")
    @classmethod
    def _unique(cls, looks: tuple[LookSettings, ...]) -> tuple[LookSettings, ...]:
        seen_ids: set[str] = set()
        seen_metrics: dict[str, str] = {}
        for look in looks:
            if look.id in seen_ids:
                raise ValueError(f"Look {look.id} is listed twice (each Look is run once)")
            seen_ids.add(look.id)
            for metric in look.metrics:
                if metric in seen_metrics:
                    raise ValueError(
                        f"metric {metric} comes from both Look {seen_metrics[metric]} "
                        f"and Look {look.id}"
                    )
                seen_metrics[metric] = look.id
        return looks

    @property
    def metric_names(self) -> frozenset[str]:
        return frozenset(m for look in self.looks for m in look.metrics)


# --------------------------------------------------------------------------------------------
# Turning rows into metric values (pure)

Row = Mapping[str, Any]


def exact_number(value: object) -> Fraction | None:
    """A JSON cell as an exact number (floats by their shortest repr); None if not numeric."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Fraction(value)
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return Fraction(number) if number.is_finite() else None


def to_metric(value: Fraction | None) -> MetricValue:
    """One exact division, then the project's rounding convention."""
    if value is None:
        return None
    return metric_value(Decimal(value.numerator) / Decimal(value.denominator))


def _ratio(numerator: object, denominator: object) -> Fraction | None:
    top, bottom = exact_number(numerator), exact_number(denominator)
    if top is None or bottom is None or bottom == 0:
        return None
    return top / bottom


def _operand(row: Row, operand: str | Ratio) -> Fraction | None:
    if isinstance(operand, Ratio):
        return _ratio(row.get(operand.numerator), row.get(operand.denominator))
    return exact_number(row.get(operand))


def row_value(transform: Transform, row: Row) -> Fraction | None:
    """The value of a one-row transform (field, ratio, percent, change_pct) for one row."""
    if isinstance(transform, FieldTransform):
        return exact_number(row.get(transform.field))
    if isinstance(transform, RatioTransform):
        return _ratio(row.get(transform.numerator), row.get(transform.denominator))
    if isinstance(transform, PercentTransform):
        if transform.field is not None:
            fraction = exact_number(row.get(transform.field))
        else:
            assert transform.numerator is not None and transform.denominator is not None
            fraction = _ratio(row.get(transform.numerator), row.get(transform.denominator))
        return None if fraction is None else fraction * 100
    if isinstance(transform, ChangeTransform):
        current, previous = _operand(row, transform.current), _operand(row, transform.previous)
        if current is None or previous is None or previous == 0:
            return None
        return (current - previous) / previous * 100
    raise TypeError(f"{transform.transform} is not a one-row transform")


def customer_value(
    transform: Transform, rows: Sequence[Row], *, known: bool, complete: bool
) -> Fraction | None:
    """A metric for one customer from its rows in one Look.

    ``known``: the customer appears in some Look; ``complete``: this Look was not truncated, so a
    customer without rows in it really has none.
    """
    if isinstance(transform, PresenceTransform | SumTransform):
        if not known or (not rows and not complete):
            return None
        values = [exact_number(row.get(transform.field)) for row in rows]
        if isinstance(transform, PresenceTransform):
            return Fraction(1 if any(v is not None and v > 0 for v in values) else 0)
        numbers = [v for v in values if v is not None]
        if rows and not numbers:
            return None
        return sum(numbers, Fraction(0))
    if not rows:
        return None
    return row_value(transform, rows[0])


def transform_fields(transform: Transform) -> set[str]:
    """The row fields a transform reads."""
    fields: set[str] = set()
    for name in ("field", "numerator", "denominator", "current", "previous"):
        value = getattr(transform, name, None)
        if isinstance(value, Ratio):
            fields.update((value.numerator, value.denominator))
        elif isinstance(value, str):
            fields.add(value)
    return fields


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
    ) -> None:
        self.settings = settings
        root = base_url.rstrip("/")
        if not root.endswith(API_PATH):
            root += API_PATH  # looker.ini style: the instance URL without the API path
        self.client = SourceClient(
            SOURCE,
            root,
            session=session,
            policy=settings.http.policy(),
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
            raise
        body = self.client.json(response)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise SourceError(SOURCE, f"POST {API_PATH}/login", "no access_token in the answer")
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
        notes: list[str] = []
        if not self.settings.looks:
            notes.append("no Looks configured (sources.yaml looker.looks)")
        rows = self._run_all()
        indexed = [self._index(look, rows[look.id], notes) for look in self.settings.looks]
        known: set[str] = set().union(*(look.by_customer for look in indexed))
        metrics = {
            account.account_id: _account_metrics(account.looker_customer_id, indexed, known)
            for account in accounts
        }
        return SourceResult(
            source=SOURCE, metrics=metrics, requests=self.client.requests, notes=tuple(notes)
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

    def _index(self, look: LookSettings, rows: Sequence[Row], notes: list[str]) -> _IndexedLook:
        """Group a Look's rows by customer id, after checking its fields and its completeness."""
        complete = self._check_rows(look, rows, notes)
        by_customer: dict[str, list[Row]] = defaultdict(list)
        for row in rows:
            customer = row.get(look.customer_id_field)
            if customer is not None:
                by_customer[str(customer)].append(row)
        duplicated = sum(1 for mine in by_customer.values() if len(mine) > 1)
        one_row = sorted(m for m, t in look.metrics.items() if not _is_multi_row(t))
        if duplicated and one_row:
            note = (
                f"{look.label}: {duplicated} customers have more than one row; "
                f"their first row is used for {', '.join(one_row)}"
            )
            log.warning("looker: %s", note)
            notes.append(note)
        return _IndexedLook(look, dict(by_customer), complete)

    def _check_rows(self, look: LookSettings, rows: Sequence[Row], notes: list[str]) -> bool:
        """Check the fields the config expects; return False (and say so) when truncated."""
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
        if look.limit > 0 and len(rows) >= look.limit:
            note = (
                f"{look.label} returned {len(rows):,} rows, its configured limit: results are "
                "truncated (raise or remove `limit` in sources.yaml)"
            )
        elif look.limit == -1 and len(rows) == DEFAULT_ROW_CAP:
            note = (
                f"{look.label} returned exactly {DEFAULT_ROW_CAP:,} rows, Looker's default cap: "
                "results may be truncated"
            )
        else:
            return True
        log.warning("looker: %s", note)
        notes.append(note)
        return False


def _is_multi_row(transform: Transform) -> bool:
    return isinstance(transform, PresenceTransform | SumTransform)


@dataclass(frozen=True, slots=True)
class _IndexedLook:
    look: LookSettings
    by_customer: Mapping[str, Sequence[Row]]
    complete: bool  # not truncated: a known customer without rows here really has none


def _account_metrics(
    customer: str | None, indexed: Sequence[_IndexedLook], known: set[str]
) -> dict[str, MetricValue]:
    """One account's metrics from every Look (all None when it has no Looker id)."""
    values: dict[str, MetricValue] = {}
    for entry in indexed:
        rows = entry.by_customer.get(customer, ()) if customer else ()
        for metric, transform in entry.look.metrics.items():
            values[metric] = (
                to_metric(
                    customer_value(
                        transform, rows, known=customer in known, complete=entry.complete
                    )
                )
                if customer
                else None
            )
    return values


def from_env(
    settings: Settings,
    env: Mapping[str, str],
    *,
    session: requests.Session | None = None,
    as_of: datetime | None = None,
) -> Extractor | None:
    """The Looker extractor when LOOKER_BASE_URL, _CLIENT_ID and _CLIENT_SECRET are all set."""
    del as_of  # Looks carry their own windows
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
    )
