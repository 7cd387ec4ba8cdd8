"""Churn and renewal events known at ``as_of``, read from Salesforce (``outcomes.csv``).

The rules (``salesforce.outcomes`` in sources.yaml, :class:`OutcomeRules`):

- a renewal opportunity (``opportunity.type_field`` in ``outcomes.renewal_types``) closed before
  ``as_of`` is an event on its ``CloseDate``: won → ``renewal``, lost → ``churn``. Won and lost
  are told by ``IsClosed``/``IsWon`` (``match: flags``) or by the stage names
  (``match: stages``: ``won_stages``, ``lost_stages``; other stages are no event);
- with ``outcomes.churn_date_field``, an Account whose churn date lies before ``as_of`` is a
  ``churn`` event on that date, unless the same account has a lost renewal opportunity within
  ``dedupe_days`` days of it (either side, inclusive): that is one event, and the opportunity's
  row is kept (it names the record and carries the amount);
- only events on or after ``as_of`` − ``lookback_months`` are kept (all before ``as_of`` when
  it is null). The query carries the ``as_of`` bound; the look-back bound is applied to the rows;
- the event's ARR is the opportunity's ``amount_field``; when the opportunity has none (or the
  field is null) the Account's ``account.arr_field`` (its current value), else empty.

Queries run per id list of ``id_chunk_size`` mapped accounts (the first list alone, then the
others concurrently), paginated by the shared client; every identifier is a validated API name
and every literal escaped (:mod:`.metrics`). Nothing here raises: a hidden object or field, a
refused login or the deadline make the outcomes *failed* with the reason, never "no events".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import requests

from health_score.deadline import Deadline, DeadlineExceeded
from health_score.records import Account
from health_score.redact import redact
from health_score.salesforce_ids import salesforce_id18
from health_score.sources.http import SourceError
from health_score.sources.salesforce.client import (
    NO_CREDENTIALS,
    SalesforceApiError,
    SalesforceClient,
)
from health_score.sources.salesforce.metrics import (
    _api_name,
    _date,
    _decimal,
    _field,
    months_before,
)
from health_score.sources.salesforce.outcome_records import (
    CHURN,
    FAILED,
    OK,
    RENEWAL,
    OutcomeEvent,
    OutcomesReport,
    disabled,
)
from health_score.sources.salesforce.outcome_records import (
    DISABLED as DISABLED,  # re-exported (the records live in outcome_records)
)
from health_score.sources.salesforce.settings import OutcomeRules, Settings
from health_score.sources.salesforce.soql_text import soql_id_list, soql_list

log = logging.getLogger(__name__)

#: Error codes of a query on an object this user cannot read (absent, or hidden by permissions).
_UNREADABLE = frozenset({"INVALID_TYPE", "INSUFFICIENT_ACCESS", "INSUFFICIENT_ACCESS_OR_READONLY"})


# --------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True)
class Found:
    """One event as read, keyed by the 18-character Salesforce account id (pure rules' output)."""

    sf_account_id: str
    event: str  # churn | renewal
    day: date
    amount: Decimal | None
    evidence: str  # the opportunity id, or "<Object>.<churn date field>"


# --------------------------------------------------------------------------------------------
# Pure rules


def lookback_start(rules: OutcomeRules, end: date) -> date | None:
    """The first day events are kept from (None: no lower bound)."""
    return None if rules.lookback_months is None else months_before(end, rules.lookback_months)


def in_window(day: date, start: date | None, end: date) -> bool:
    """``start`` ≤ ``day`` < ``end``: known at ``end`` (an event on ``end`` itself is not)."""
    return day < end and (start is None or day >= start)


def _folded(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.casefold() for v in values)


def opportunity_kind(row: Mapping[str, Any], settings: Settings) -> str | None:
    """``renewal``, ``churn`` or None (not a closed renewal) for one Opportunity row."""
    o, rules = settings.opportunity, settings.outcomes
    kind = _field(row, o.type_field)
    if not isinstance(kind, str) or kind.casefold() not in _folded(rules.renewal_types):
        return None
    if rules.match == "flags":
        if _field(row, o.is_closed_field) is not True:
            return None
        return RENEWAL if _field(row, o.is_won_field) is True else CHURN
    stage = _field(row, rules.stage_field)
    if not isinstance(stage, str):
        return None
    if stage.casefold() in _folded(rules.won_stages):
        return RENEWAL
    if stage.casefold() in _folded(rules.lost_stages):
        return CHURN
    return None


def opportunity_events(
    rows: Iterable[Mapping[str, Any]], settings: Settings, start: date | None, end: date
) -> list[Found]:
    """The closed renewal opportunities among ``rows`` whose close date is in the window."""
    o, rules = settings.opportunity, settings.outcomes
    out: list[Found] = []
    for row in rows:
        event = opportunity_kind(row, settings)
        day = _date(_field(row, o.close_date_field))
        if event is None or day is None or not in_window(day, start, end):
            continue
        amount = _decimal(_field(row, rules.amount_field)) if rules.amount_field else None
        out.append(
            Found(
                salesforce_id18(str(_field(row, o.account_field))),
                event,
                day,
                amount,
                salesforce_id18(str(_field(row, "Id"))),
            )
        )
    return out


def churn_date_events(
    rows: Iterable[Mapping[str, Any]], settings: Settings, start: date | None, end: date
) -> list[Found]:
    """Accounts whose churn date field lies in the window (no rule configured: none)."""
    churn_field = settings.outcomes.churn_date_field
    if churn_field is None:
        return []
    evidence = f"{settings.account.object_name}.{churn_field}"
    out: list[Found] = []
    for row in rows:
        day = _date(_field(row, churn_field))
        if day is not None and in_window(day, start, end):
            out.append(Found(salesforce_id18(str(_field(row, "Id"))), CHURN, day, None, evidence))
    return out


def deduplicated(opportunities: Sequence[Found], dated: Sequence[Found], days: int) -> list[Found]:
    """The opportunity events, and the churn-date events that are not the same churn as a lost
    renewal of the same account closed within ``days`` days of them (either side, inclusive)."""
    lost: dict[str, list[date]] = {}
    for found in opportunities:
        if found.event == CHURN:
            lost.setdefault(found.sf_account_id, []).append(found.day)
    kept = [
        found
        for found in dated
        if not any(abs((found.day - day).days) <= days for day in lost.get(found.sf_account_id, ()))
    ]
    return [*opportunities, *kept]


def resolve(
    found: Iterable[Found],
    accounts: Mapping[str, Sequence[Account]],
    account_arr: Mapping[str, Decimal | None],
) -> tuple[OutcomeEvent, ...]:
    """The rows of ``outcomes.csv``: one per event and mapped account (the mapping's id and
    name), ARR the opportunity's amount or else the Account's; sorted by date, account, event
    and evidence."""
    rows: list[OutcomeEvent] = []
    for item in found:
        arr = item.amount if item.amount is not None else account_arr.get(item.sf_account_id)
        for account in accounts.get(item.sf_account_id, ()):
            rows.append(
                OutcomeEvent(
                    account.account_id,
                    account.account_name,
                    item.event,
                    item.day,
                    arr,
                    item.evidence,
                )
            )
    rows.sort(key=lambda e: (e.day, e.account_id, e.event, e.evidence))
    return tuple(rows)


# --------------------------------------------------------------------------------------------
# SOQL (validated identifiers, escaped literals)


def _columns(names: Iterable[str]) -> str:
    seen: list[str] = []
    for name in names:
        if name.casefold() not in (s.casefold() for s in seen):
            seen.append(_api_name(name))
    return ", ".join(seen)


def opportunity_soql(settings: Settings, ids: Sequence[str], end: date) -> str:
    """Closed renewal opportunities of ``ids`` closed before ``end``."""
    o, rules = settings.opportunity, settings.outcomes
    kind, close = _api_name(o.type_field), _api_name(o.close_date_field)
    names = ["Id", o.account_field, o.type_field, o.close_date_field]
    if rules.match == "flags":
        names += [o.is_closed_field, o.is_won_field]
        closed = f"{_api_name(o.is_closed_field)} = TRUE"
    else:
        names.append(rules.stage_field)
        stages = soql_list((*rules.won_stages, *rules.lost_stages))
        closed = f"{_api_name(rules.stage_field)} IN {stages}"
    if rules.amount_field:
        names.append(rules.amount_field)
    return (
        f"SELECT {_columns(names)} FROM {_api_name(o.object_name)}"  # noqa: S608 - API names and escaped literals
        f" WHERE {_api_name(o.account_field)} IN {soql_id_list(ids)}"
        f" AND {kind} IN {soql_list(rules.renewal_types)} AND {closed}"
        f" AND {close} < {end.isoformat()}"
    )


def account_soql(settings: Settings, ids: Sequence[str]) -> str:
    """The Accounts' ARR (and churn date, when the rule is configured)."""
    names = ["Id", settings.account.arr_field]
    if settings.outcomes.churn_date_field:
        names.append(settings.outcomes.churn_date_field)
    return (
        f"SELECT {_columns(names)} FROM {_api_name(settings.account.object_name)}"  # noqa: S608 - API names and escaped literals
        f" WHERE Id IN {soql_id_list(ids)}"
    )


# --------------------------------------------------------------------------------------------
# Reading


def _why(exc: SalesforceApiError, object_name: str) -> str:
    """A refused outcomes query, said plainly."""
    if exc.error_code in _UNREADABLE:
        return (
            f"{object_name} cannot be read ({exc.error_code}: not in the org, or hidden from "
            "this user); outcomes unavailable"
        )
    detail = exc.api_message.strip().splitlines()[-1] if exc.api_message.strip() else ""
    if exc.error_code == "INVALID_FIELD":
        return (
            f"a field of {object_name} cannot be read (INVALID_FIELD: not in the org, hidden "
            f"from this user, or of another type: {detail}); outcomes unavailable"
        )
    return f"{exc}; outcomes unavailable"


class OutcomesReader:
    """Reads the churn and renewal events of the mapped accounts (see the module docstring)."""

    name = "salesforce"

    def __init__(
        self,
        settings: Settings,
        env: Mapping[str, str],
        *,
        as_of: datetime | None = None,
        session: requests.Session | None = None,
        deadline: Deadline | None = None,
        now: datetime | None = None,
    ) -> None:
        self.settings = settings
        self.env = dict(env)
        self.session = session
        self.as_of = as_of
        self.deadline = deadline
        self.now = now

    @classmethod
    def like(cls, extractor: Any) -> OutcomesReader:
        """A reader with a Salesforce extractor's settings, credentials, instants and session."""
        return cls(
            extractor.settings,
            extractor.env,
            as_of=extractor.as_of,
            session=extractor.session,
            deadline=extractor.deadline,
            now=extractor.now,
        )

    def end(self) -> date:
        """The first day not known: ``as_of``'s date (UTC)."""
        return (self.as_of or self.now or datetime.now(UTC)).astimezone(UTC).date()

    def read(self, accounts: Sequence[Account]) -> OutcomesReport:
        """The events, or why they could not be read (never raises)."""
        started = time.monotonic()
        rules = self.settings.outcomes
        if not rules.enabled:
            return disabled("salesforce.outcomes.enabled is false in sources.yaml")
        end = self.end()
        window = (lookback_start(rules, end), end)
        client: SalesforceClient | None = None
        try:
            client = SalesforceClient.from_env(
                self.env,
                version=self.settings.api_version,
                session=self.session,
                policy=self.settings.http.policy(self.deadline),
            )
            if client is None:
                return OutcomesReport(FAILED, error=NO_CREDENTIALS, window=window)
            events, notes = self._read(client, accounts, window[0], end)
        except DeadlineExceeded as exc:
            return self._failed(str(exc), client, started, window)
        except SourceError as exc:
            return self._failed(str(exc), client, started, window)
        except Exception as exc:  # outcomes never stop the run; the reason is reported
            return self._failed(f"{type(exc).__name__}: {exc}", client, started, window)
        finally:
            if client is not None:
                client.close()
        return OutcomesReport(
            OK,
            events,
            requests=client.requests,
            seconds=time.monotonic() - started,
            window=window,
            notes=notes,
        )

    def _failed(
        self,
        error: str,
        client: SalesforceClient | None,
        started: float,
        window: tuple[date | None, date],
    ) -> OutcomesReport:
        message = redact(error)
        log.error("salesforce outcomes failed: %s", message)
        return OutcomesReport(
            FAILED,
            error=message,
            requests=client.requests if client is not None else 0,
            seconds=time.monotonic() - started,
            window=window,
        )

    def _read(
        self,
        client: SalesforceClient,
        accounts: Sequence[Account],
        start: date | None,
        end: date,
    ) -> tuple[tuple[OutcomeEvent, ...], tuple[str, ...]]:
        settings = self.settings
        by_id: dict[str, list[Account]] = {}
        for account in accounts:
            if account.sf_account_id is None:
                continue
            try:
                sf_id = salesforce_id18(account.sf_account_id)
            except ValueError as exc:
                raise SourceError(
                    self.name,
                    "SOQL",
                    f"account {account.account_name[:60]!r}: sf_account_id refused ({exc}); "
                    "no outcomes were read",
                ) from None
            by_id.setdefault(sf_id, []).append(account)
        ids = sorted(by_id)
        if not ids:
            return (), ()
        client.connect()
        opportunities = opportunity_events(
            self._query(
                client,
                ids,
                settings.opportunity.object_name,
                lambda chunk: opportunity_soql(settings, chunk, end),
            ),
            settings,
            start,
            end,
        )
        # The Account is read for the churn date rule (every account), or for the ARR of events
        # without an amount (those accounts only).
        wanted = (
            ids
            if settings.outcomes.churn_date_field
            else sorted({f.sf_account_id for f in opportunities if f.amount is None})
        )
        rows = (
            self._query(
                client,
                wanted,
                settings.account.object_name,
                lambda chunk: account_soql(settings, chunk),
            )
            if wanted
            else []
        )
        arr_field = settings.account.arr_field
        account_arr = {salesforce_id18(str(r["Id"])): _decimal(_field(r, arr_field)) for r in rows}
        found = deduplicated(
            opportunities,
            churn_date_events(rows, settings, start, end),
            settings.outcomes.dedupe_days,
        )
        notes: list[str] = []
        past = self.as_of is not None and (self.now or datetime.now(UTC)) - self.as_of > timedelta(
            days=settings.current_state_grace_days
        )
        if past and any(f.amount is None for f in found):
            notes.append(
                f"events without an opportunity amount carry the Account's current "
                f"{arr_field}, not its value at the event"
            )
        return resolve(found, by_id, account_arr), tuple(notes)

    def _query(
        self,
        client: SalesforceClient,
        ids: Sequence[str],
        object_name: str,
        build: Callable[[Sequence[str]], str],
    ) -> list[Mapping[str, Any]]:
        """Every row of ``build(chunk)`` over the id lists: the first alone (a refusal costs
        one request), then the others concurrently."""
        size = self.settings.id_chunk_size
        chunks = [list(ids[i : i + size]) for i in range(0, len(ids), size)]

        def run(chunk: Sequence[str]) -> list[Mapping[str, Any]]:
            try:
                return list(client.query(build(chunk)))
            except SalesforceApiError as exc:
                raise SourceError(self.name, "SOQL", _why(exc, object_name)) from None

        rows = run(chunks[0])
        if len(chunks) > 1:
            with ThreadPoolExecutor(max_workers=self.settings.http.max_workers) as pool:
                for more in pool.map(run, chunks[1:]):
                    rows.extend(more)
        return rows
