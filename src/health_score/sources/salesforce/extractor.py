"""Salesforce: financial and relationship metrics and churn signals, read with SOQL.

One pass over all mapped accounts: the account ids are validated and widened to 18 characters
(:mod:`health_score.salesforce_ids`, the rule the mapping check and the loader use too) and
split into id lists of ``id_chunk_size``; for each list five queries run concurrently — Account
fields, an Opportunity aggregate (contract changes, open expansions), a payment aggregate (failed
payments), an Event aggregate (QBR attendance, last executive touch) and a ``Churn_Signal__c``
aggregate. Object and field names come from ``sources.yaml``; every literal in a query is escaped
(:func:`soql_literal`, :func:`soql_id_list`) and identifiers are validated API names.

An object or field the org does not have or hides from this user (``INVALID_TYPE``,
``INVALID_FIELD``, insufficient access) makes the metrics that need it *unavailable* for every
account — never "missing", which would hand their weight to the others — and the source (so the
run) *degraded*; an unreadable churn-signal object means caps cannot be applied. It is said once
in the result, the manifest and the log, and the query is rebuilt without it. The first id list
of each query settles this before the others run, so a missing field costs one extra request,
not one per list.

Logins, an expired session, errors, API usage and ``nextRecordsUrl`` paging are the shared
:class:`~health_score.sources.salesforce.client.SalesforceClient`'s (the loader uses it too).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import requests

from health_score.deadline import Deadline
from health_score.records import (
    NO_SIGNALS,
    Account,
    AccountContext,
    MetricValue,
    SignalCounts,
    metric_value,
)
from health_score.salesforce_ids import salesforce_id18
from health_score.sources.base import SourceResult
from health_score.sources.http import AuthenticationError, SourceError
from health_score.sources.salesforce import auth, custom_metrics
from health_score.sources.salesforce.client import (
    NO_CREDENTIALS,
    SalesforceApiError,
    SalesforceClient,
)
from health_score.sources.salesforce.metrics import (
    AccountPlan,
    EventPlan,
    FieldHistory,
    OpportunityPlan,
    PaymentPlan,
    Plan,
    SignalPlan,
    Window,
    months_before,
)
from health_score.sources.salesforce.settings import (
    ARR_TRAJECTORY_PCT,
    CHAMPION_STABILITY,
    DAYS_TO_RENEWAL,
    EXEC_ENGAGEMENT,
    EXPANSION_SIGNALS,
    METRICS,
    PAYMENT_HEALTH,
    QBR_ATTENDANCE_PCT,
    RESPONSIVENESS,
    SIGNALS,
    TIER_ALIGNMENT,
    Settings,
)

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# The extractor


_MISSING_PATTERNS = (
    re.compile(r"No such column '([A-Za-z0-9_]+)'"),
    re.compile(r"Didn't understand relationship '([A-Za-z0-9_]+)'"),
    re.compile(r"field '([A-Za-z0-9_]+)' must be of type"),
)


#: An aggregate over more than 2,000 groups: "Aggregate query does not support queryMore(), use
#: LIMIT to restrict the results to a single batch" (or Apex's "Aggregate query has too many
#: rows for direct assignment").
_TOO_MANY_GROUPS = re.compile(
    r"aggregate query (?:does not support querymore|has too many rows)", re.IGNORECASE
)


#: Error codes of a query on an object this user cannot read (absent, or hidden by permissions).
UNREADABLE_OBJECT = frozenset(
    {"INVALID_TYPE", "INSUFFICIENT_ACCESS", "INSUFFICIENT_ACCESS_OR_READONLY"}
)


def _missing_field(error: SalesforceApiError) -> str | None:
    for pattern in _MISSING_PATTERNS:
        match = pattern.search(error.api_message)
        if match:
            return match.group(1)
    return None


class _HistoryUnreadable(SourceError):
    """A field history object this user cannot query (absent: the object's history is not
    tracked; or hidden by permissions)."""

    def __init__(self, object_name: str, error_code: str) -> None:
        self.object_name, self.error_code = object_name, error_code
        super().__init__(
            "salesforce", "SOQL", f"{object_name} cannot be read ({error_code}) for a past period"
        )


@dataclass
class _PlanState:
    plan: Plan
    metrics: frozenset[str]
    results: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class SalesforceExtractor:
    """Financial and relationship metrics and churn signals for all mapped accounts."""

    name = "salesforce"

    def __init__(
        self,
        settings: Settings,
        env: Mapping[str, str],
        *,
        session: requests.Session | None = None,
        as_of: datetime | None = None,
        deadline: Deadline | None = None,
        now: datetime | None = None,
    ) -> None:
        self.settings = settings
        self.env = dict(env)
        self.session = session
        self.as_of = as_of
        self.now = now
        self.deadline = deadline
        self._client: SalesforceClient | None = None

    @property
    def provides(self) -> frozenset[str]:
        return frozenset(METRICS) | self.settings.custom_metrics.names

    @property
    def requests_made(self) -> int:
        return self._client.requests if self._client is not None else 0

    @property
    def past(self) -> bool:
        """Whether ``as_of`` lies more than ``current_state_grace_days`` before the reference
        now (the wall clock unless given): current-state fields then describe another time."""
        if self.as_of is None:
            return False
        now = self.now or datetime.now(UTC)
        return now - self.as_of > timedelta(days=self.settings.current_state_grace_days)

    def _window(self) -> Window:
        instant = self.as_of or datetime.now(UTC)
        end = instant.astimezone(UTC).date()
        return Window(months_before(end, self.settings.lookback_months), end)

    def extract(self, accounts: Sequence[Account]) -> SourceResult:
        ids: dict[str, list[str]] = {}  # 18-character id → account_ids mapped to it
        for account in accounts:
            if account.sf_account_id is None:
                continue
            try:
                ids.setdefault(salesforce_id18(account.sf_account_id), []).append(
                    account.account_id
                )
            except ValueError as exc:
                raise SourceError(
                    self.name,
                    "SOQL",
                    f"account {account.account_name[:60]!r}: sf_account_id refused ({exc}); "
                    "nothing was sent to Salesforce",
                ) from None
        window = self._window()
        client = SalesforceClient.from_env(
            self.env,
            version=self.settings.api_version,
            session=self.session,
            policy=self.settings.http.policy(self.deadline),
        )
        if client is None:
            raise AuthenticationError(self.name, "login", NO_CREDENTIALS)
        self._client = client
        try:
            client.connect()
            states, notes, missing, gaps = self._run(client, sorted(ids), window)
            in_org = {i for i in ids if i in states[0].results}  # the Account query's answer
            custom = custom_metrics.run(  # salesforce.custom_metrics (sources.yaml)
                client,
                self.settings.custom_metrics,
                sorted(in_org),
                as_of=self.as_of or datetime.now(UTC),
                past=self.past,
                chunk_size=self.settings.id_chunk_size,
            )
        finally:
            client.log_usage(f"{client.requests} requests for {len(ids)} accounts")
            client.close()
        result = self._result(accounts, states, notes, missing, gaps, client.requests)
        owners = {a: sf_id for sf_id in in_org for a in ids[sf_id]}
        return custom_metrics.merge(result, custom, self.settings.custom_metrics, owners)

    # -- querying -------------------------------------------------------------------------------

    def _query_chunk(
        self, client: SalesforceClient, state: _PlanState, chunk: Sequence[str]
    ) -> dict[str, Any]:
        """Run one plan over one id list; split the list when an aggregate has too many groups."""
        plan = state.plan
        soql = plan.build(chunk, state.metrics)
        try:
            rows: Iterable[Mapping[str, Any]] = client.query(soql, all_rows=plan.query_all)
            if isinstance(plan, AccountPlan) and plan.history is not None:
                rows = self._as_it_stood(
                    client, plan.history, chunk, plan.history_fields(state.metrics), rows
                )
            if isinstance(plan, SignalPlan) and plan.history is not None:
                rows = self._signals_then(client, plan, plan.history, rows)
            return plan.parse(rows, state.metrics)
        except SalesforceApiError as exc:
            # Known by its message, whatever errorCode comes with it.
            too_many_groups = _TOO_MANY_GROUPS.search(exc.api_message) is not None
            if not (too_many_groups and len(chunk) > 1):
                raise
        half = len(chunk) // 2
        return {
            **self._query_chunk(client, state, chunk[:half]),
            **self._query_chunk(client, state, chunk[half:]),
        }

    def _as_it_stood(
        self,
        client: SalesforceClient,
        history: FieldHistory,
        chunk: Sequence[str],
        fields: Sequence[str],
        rows: Iterable[Mapping[str, Any]],
    ) -> list[Mapping[str, Any]]:
        """The Account rows with their fields rolled back to the period's end."""
        current = list(rows)
        if not fields:
            return current
        try:
            changes = client.query(history.build(chunk, fields))
        except SalesforceApiError as exc:
            if exc.error_code not in UNREADABLE_OBJECT and exc.error_code != "INVALID_FIELD":
                raise
            raise SourceError(
                self.name,
                "SOQL",
                f"salesforce.field_history is true but {history.object_name} cannot be read "
                f"({exc.error_code}): enable field history tracking for {', '.join(fields)}, "
                "or set field_history: false (past periods then mark those metrics unavailable)",
            ) from None
        return history.rolled_back(current, changes)

    def _signals_then(
        self,
        client: SalesforceClient,
        plan: SignalPlan,
        history: FieldHistory,
        rows: Iterable[Mapping[str, Any]],
    ) -> list[Mapping[str, Any]]:
        """The signal records with their status (severity, confidence) as they stood at the
        period's end: their history since then, read by lists of signal ids."""
        signals = list(rows)
        ids = sorted({salesforce_id18(str(row["Id"])) for row in signals})
        size = self.settings.id_chunk_size
        changes: list[Mapping[str, Any]] = []
        for start in range(0, len(ids), size):
            try:
                changes.extend(client.query(history.build(ids[start : start + size], plan.tracked)))
            except SalesforceApiError as exc:
                if exc.error_code in UNREADABLE_OBJECT or exc.error_code == "INVALID_FIELD":
                    raise _HistoryUnreadable(history.object_name, exc.error_code) from None
                raise
        # Oldest first across the lists too: the first change after the period's end wins.
        changes.sort(key=lambda change: str(change.get("CreatedDate") or ""))
        return history.rolled_back(signals, changes)

    def _history_readable(
        self, client: SalesforceClient, state: _PlanState, gaps: list[str]
    ) -> bool:
        """Whether the churn signals' field history can be read (asked once, before the first
        id list): an object without tracked history has no history object at all."""
        plan = state.plan
        assert isinstance(plan, SignalPlan) and plan.history is not None
        try:
            list(client.query(plan.history.probe()))
            return True
        except SalesforceApiError as exc:
            if exc.error_code not in UNREADABLE_OBJECT and exc.error_code != "INVALID_FIELD":
                raise
            unreadable = _HistoryUnreadable(plan.history.object_name, exc.error_code)
            gaps.append(self._history_gap(plan, unreadable))
            state.metrics = frozenset()
            return False

    def _history_gap(self, plan: SignalPlan, error: _HistoryUnreadable) -> str:
        assert self.as_of is not None  # only a past period reads history
        return (
            f"{error.object_name} cannot be read ({error.error_code}: field history not tracked "
            f"for {plan.object_name}, not in the org, or hidden from this user): the churn "
            f"signals' status at {self.as_of:%Y-%m-%d} is not reconstructable for a past period; "
            "churn signal status unavailable (caps cannot be applied)"
        )

    def _settle(
        self, client: SalesforceClient, state: _PlanState, chunk: Sequence[str], gaps: list[str]
    ) -> dict[str, Any] | None:
        """The first id list: drop metrics whose fields or object the org lacks or hides from
        this user (each gap is noted: those metrics become *unavailable*), then run."""
        plan = state.plan
        if (
            isinstance(plan, SignalPlan)
            and plan.history is not None
            and state.metrics
            and not self._history_readable(client, state, gaps)
        ):
            return None
        while True:
            if not state.metrics and not isinstance(plan, AccountPlan):
                return None
            try:
                return self._query_chunk(client, state, chunk)
            except _HistoryUnreadable as exc:
                assert isinstance(plan, SignalPlan)
                gaps.append(self._history_gap(plan, exc))
                state.metrics = frozenset()
                return None
            except SalesforceApiError as exc:
                if exc.error_code in UNREADABLE_OBJECT and not isinstance(plan, AccountPlan):
                    what = (
                        "churn signals (caps cannot be applied)"
                        if isinstance(plan, SignalPlan)
                        else ", ".join(sorted(state.metrics))
                    )
                    gaps.append(
                        f"{plan.object_name} cannot be read ({exc.error_code}: not in the org, "
                        f"or hidden from this user): {what} unavailable"
                    )
                    state.metrics = frozenset()
                    return None
                name = _missing_field(exc) if exc.error_code == "INVALID_FIELD" else None
                lost = frozenset(
                    m
                    for m in state.metrics
                    if name and name.lower() in (n.lower() for n in plan.needs.get(m, ()))
                )
                context = plan.drop_context(name) if name and isinstance(plan, AccountPlan) else []
                if not lost and not context:
                    raise
                why = "not in the org, hidden from this user, or of another type"
                if lost:
                    gaps.append(
                        f"{plan.object_name}.{name} cannot be read (INVALID_FIELD: {why}): "
                        f"{', '.join(sorted(lost))} unavailable"
                    )
                    state.metrics -= lost
                if context:
                    assert isinstance(plan, AccountPlan)
                    plan.context_notes.append(
                        f"{plan.object_name}.{name} cannot be read (INVALID_FIELD: {why}): "
                        f"context {', '.join(_context_columns(context))} left empty in scores.csv"
                    )

    def _history_reaches(self) -> bool:
        """Whether the field history kept reaches back to ``as_of``."""
        if not self.settings.field_history or self.as_of is None:
            return False
        now = (self.now or datetime.now(UTC)).astimezone(UTC).date()
        return self.as_of.astimezone(UTC).date() >= months_before(
            now, self.settings.field_history_months
        )

    def _past_period(self, states: list[_PlanState], gaps: list[str]) -> None:
        """Read a past period as it stood at its end: Accounts created after it are left out
        (CreatedDate); with field history, the Account fields and the churn signals' status
        are rolled back and open expansions are those open then. What cannot be known — the
        current-state metrics without (or beyond) field history — is dropped and noted."""
        assert self.as_of is not None  # a past period has one
        history = self._history_reaches()
        stale: list[str] = []
        for state in states:
            plan = state.plan
            if isinstance(plan, AccountPlan):
                plan.existed_before = self.as_of
                self._past_context(plan, history)
            current = state.metrics & CURRENT_STATE
            if history and isinstance(plan, AccountPlan):
                plan.history = FieldHistory.of_account(self.settings, self.as_of)
                current = frozenset()
            if history and isinstance(plan, SignalPlan):
                plan.history = FieldHistory(*self.settings.churn_signal.history, self.as_of)
                current = frozenset()
            if self.settings.field_history and isinstance(plan, OpportunityPlan):
                plan.open_at = self.as_of  # CreatedDate and CloseDate: no history needed
                current = frozenset()
            if current:
                state.metrics -= current  # the Account query still tells who is in the org
                stale.extend(sorted(current))
        if not stale:
            return
        what = ", ".join(sorted(m for m in stale if m != SIGNALS))
        if SIGNALS in stale:
            what += "; churn signal status (caps cannot be applied)"
        if self.settings.field_history:
            why = f"beyond the {self.settings.field_history_months} months of field history"
        else:
            why = "no field history"
        gaps.append(
            f"not reconstructable for a past period (as_of {self.as_of:%Y-%m-%d} is more than "
            f"{self.settings.current_state_grace_days} days before now): {why}; "
            f"current-state metrics unavailable: {what.removeprefix('; ')}"
        )

    def _past_context(self, plan: AccountPlan, history: bool) -> None:
        """The context of a past period: ARR and the renewal date as they stood at its end
        (rolled back with the metrics' field history), else unknown; the owner is today's
        (Account owner changes are not read from the field history)."""
        assert self.as_of is not None
        day = f"{self.as_of:%Y-%m-%d}"
        if "owner" in plan.context:
            plan.context_notes.append(
                f"context owner is the current Account owner, not the owner at {day} "
                "(owner history is not read)"
            )
        dated = [column for column in ("arr", "renewal_date") if column in plan.context]
        if history or not dated:
            return
        for column in dated:
            del plan.context[column]
        why = (
            f"beyond the {self.settings.field_history_months} months of field history"
            if self.settings.field_history
            else "no field history (salesforce.field_history is false)"
        )
        plan.context_notes.append(
            f"context {', '.join(_context_columns(dated))} at {day} not known: {why}; "
            "left empty in scores.csv"
        )

    def _run(
        self, client: SalesforceClient, ids: Sequence[str], window: Window
    ) -> tuple[list[_PlanState], list[str], set[str], list[str]]:
        settings = self.settings
        notes: list[str] = []
        gaps: list[str] = []  # objects and fields the org lacks or hides (also in notes)
        plans: list[Plan] = [
            AccountPlan(settings, window),
            OpportunityPlan(settings, window),
            PaymentPlan(settings, window),
            EventPlan(settings, window),
            SignalPlan(settings),
        ]
        states = [_PlanState(plan, frozenset(plan.needs)) for plan in plans]
        if self.past:
            self._past_period(states, gaps)
        size = settings.id_chunk_size
        chunks = [ids[i : i + size] for i in range(0, len(ids), size)]
        if not chunks:
            return states, notes, set(), gaps
        with ThreadPoolExecutor(max_workers=settings.http.max_workers) as pool:
            first = [pool.submit(self._settle, client, s, chunks[0], gaps) for s in states]
            for state, future in zip(states, first, strict=True):
                result = future.result()
                if result is not None:
                    state.results.update(result)
            rest = [
                (state, pool.submit(self._query_chunk, client, state, chunk))
                for chunk in chunks[1:]
                for state in states
                if state.metrics or isinstance(state.plan, AccountPlan)
            ]
            for state, later in rest:
                state.results.update(later.result())
        initial = {m for plan in plans for m in plan.needs}
        missing = initial - {m for s in states for m in s.metrics}
        notes.extend(gaps)
        account_plan = plans[0]
        assert isinstance(account_plan, AccountPlan)
        notes.extend(account_plan.context_notes)  # not scored: noted, never degrading
        for note in notes:
            log.warning("salesforce: %s", note)
        signal_plan = plans[-1]
        assert isinstance(signal_plan, SignalPlan)
        if signal_plan.unknown_severities:
            unknown = ", ".join(sorted(signal_plan.unknown_severities))
            notes.append(f"churn signals with unknown severity ignored: {unknown}")
            log.warning("salesforce: %s", notes[-1])
        return states, notes, missing, gaps

    # -- the result -----------------------------------------------------------------------------

    def _result(
        self,
        accounts: Sequence[Account],
        states: list[_PlanState],
        notes: list[str],
        missing: set[str],
        gaps: list[str],
        requests_made: int,
    ) -> SourceResult:
        found, opportunities, payments, events, signals = (s.results for s in states)
        account_plan = states[0].plan
        assert isinstance(account_plan, AccountPlan)
        contexts = account_plan.contexts
        # What the org lacks or hides is unavailable for every account, never "missing": the run
        # is degraded, and write-back refused without --allow-degraded.
        lost = frozenset(missing - {SIGNALS})
        unavailable = {a.account_id: lost for a in accounts} if lost else {}
        by_plan = {type(s.plan): s.metrics for s in states}
        window = self._window()
        window_end = window.end
        metrics: dict[str, dict[str, MetricValue]] = {}
        signal_counts: dict[str, SignalCounts] = {}
        context: dict[str, AccountContext] = {}
        for account in accounts:
            values: dict[str, MetricValue] = dict.fromkeys(METRICS)
            metrics[account.account_id] = values
            sf_id = salesforce_id18(account.sf_account_id) if account.sf_account_id else None
            if sf_id is None or sf_id not in found:
                continue  # not in the org: no data
            values.update(found[sf_id])
            if sf_id in contexts:
                context[account.account_id] = contexts[sf_id]
            for metric in by_plan[OpportunityPlan]:
                values[metric] = Decimal(opportunities.get(sf_id, {}).get(metric, 0))
            if PAYMENT_HEALTH in by_plan[PaymentPlan]:
                values[PAYMENT_HEALTH] = Decimal(payments.get(sf_id, {}).get(PAYMENT_HEALTH, 0))
            seen = events.get(sf_id, {})
            if QBR_ATTENDANCE_PCT in by_plan[EventPlan] and seen.get("held"):
                values[QBR_ATTENDANCE_PCT] = metric_value(
                    Decimal(seen["attended"]) / seen["held"] * 100
                )
            if EXEC_ENGAGEMENT in by_plan[EventPlan] and seen.get("last") is not None:
                values[EXEC_ENGAGEMENT] = Decimal((window_end - seen["last"]).days)
            if by_plan[SignalPlan]:
                signal_counts[account.account_id] = signals.get(sf_id, NO_SIGNALS)
        return SourceResult(
            source=self.name,
            metrics=metrics,
            requests=requests_made,
            signals=signal_counts,
            missing_metrics=lost,
            notes=tuple(notes),
            unavailable=unavailable,
            incomplete=tuple(gaps),
            window=(_midnight(window.start), _midnight(window.end)),
            context=context,
        )


def _context_columns(columns: Sequence[str]) -> list[str]:
    """The scores.csv columns of context fields: a renewal date gives days_to_renewal too."""
    out = list(columns)
    if "renewal_date" in out:
        out.append("days_to_renewal")
    return out


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


#: What Salesforce holds only as it is now: the Account fields, open expansion opportunities and
#: the churn signals' status. Dated records (closed opportunities, payments, events) are read for
#: the window instead.
CURRENT_STATE = frozenset(
    {
        DAYS_TO_RENEWAL,
        ARR_TRAJECTORY_PCT,
        TIER_ALIGNMENT,
        CHAMPION_STABILITY,
        RESPONSIVENESS,
        EXPANSION_SIGNALS,
        SIGNALS,
    }
)


def has_credentials(env: Mapping[str, str]) -> bool:
    """Whether one login flow's variables are all present (nothing is checked remotely)."""
    try:
        return auth.credentials_from_env(env) is not None
    except SourceError:
        return True  # present but malformed: activate, and let extract() say what is wrong


def from_env(
    settings: Settings,
    env: Mapping[str, str],
    *,
    session: requests.Session | None = None,
    as_of: datetime | None = None,
    deadline: Deadline | None = None,
    now: datetime | None = None,
) -> SalesforceExtractor | None:
    """The Salesforce extractor when credentials are in ``env``, else None (``now``: the run's
    reference now, which tells a past period; the wall clock unless given)."""
    if not has_credentials(env):
        return None
    return SalesforceExtractor(
        settings, env, session=session, as_of=as_of, deadline=deadline, now=now
    )
