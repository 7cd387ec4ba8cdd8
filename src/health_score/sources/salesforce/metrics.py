"""Salesforce SOQL from validated identifiers and escaped literals, and the pure query plans:
one per object, built from the metrics still available, turning result rows into metrics.

No HTTP here: :mod:`health_score.sources.salesforce.extractor` runs the plans.
"""

from __future__ import annotations

import calendar
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from health_score.numbers import to_decimal
from health_score.records import NO_SIGNALS, AccountContext, SignalCounts, metric_value
from health_score.salesforce_ids import salesforce_id18
from health_score.sources.salesforce.settings import (
    ARR_TRAJECTORY_PCT,
    CHAMPION_STABILITY,
    CONTRACT_CHANGES,
    DAYS_TO_RENEWAL,
    EXEC_ENGAGEMENT,
    EXPANSION_SIGNALS,
    PAYMENT_HEALTH,
    QBR_ATTENDANCE_PCT,
    RESPONSIVENESS,
    SIGNALS,
    TIER_ALIGNMENT,
    Settings,
    history_names,
)
from health_score.sources.salesforce.soql_text import soql_id_list, soql_list

# --------------------------------------------------------------------------------------------
# SOQL text: validated ids and escaped literals only


def _api_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,79}", name):
        raise ValueError(f"not an API name: {name[:40]!r}")
    return name


def _field_path(path: str) -> str:
    """A field or a relationship path (``Owner.Name``) of validated API names."""
    return ".".join(_api_name(part) for part in path.split("."))


def _path_value(row: Mapping[str, Any], path: str) -> Any:
    """A field of a result row, following relationship paths (``Owner.Name`` is answered as
    ``{"Owner": {"Name": …}}``, ``null`` when the lookup is empty)."""
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = _field(value, part)
    return value


def months_before(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 - months
    year, month0 = divmod(index, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(day.day, last))


# --------------------------------------------------------------------------------------------
# Values


def _decimal(value: Any) -> Decimal | None:
    return to_decimal(value)


def _date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _datetime(value: Any) -> datetime | None:
    """A Salesforce datetime (``2026-05-01T09:00:00.000+0000``) in UTC, or None."""
    if not isinstance(value, str) or len(value) < 19:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _instant(at: datetime) -> str:
    """A SOQL datetime literal in UTC."""
    return f"{at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def _field(row: Mapping[str, Any], name: str) -> Any:
    """A column of a result row, matched case-insensitively (Salesforce answers canonical names)."""
    if name in row:
        return row[name]
    lowered = name.lower()
    for key, value in row.items():
        if key.lower() == lowered:
            return value
    return None


def _folded(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.casefold() for v in values)


# --------------------------------------------------------------------------------------------
# Query plans: one per object, built from the metrics still available


@dataclass(frozen=True, slots=True)
class Window:
    """The look-back window for date fields: ``start`` inclusive to ``end`` exclusive."""

    start: date
    end: date


class Plan:
    """One object's query for an id list, and how its rows become per-account values."""

    object_name: str
    aggregate = True
    #: Read with ``queryAll`` (archived records too; the query itself leaves deleted ones out).
    query_all = False
    #: metric → the fields it needs (a missing one makes the metric missing).
    needs: dict[str, tuple[str, ...]]

    def build(self, ids: Sequence[str], metrics: frozenset[str]) -> str:
        raise NotImplementedError

    def parse(self, rows: Iterable[Mapping[str, Any]], metrics: frozenset[str]) -> dict[str, Any]:
        raise NotImplementedError


class AccountPlan(Plan):
    aggregate = False

    def __init__(
        self, settings: Settings, window: Window, history: FieldHistory | None = None
    ) -> None:
        f = settings.account
        self.settings = settings
        self.window = window
        #: When set, the fields are read as they stood at the period's end.
        self.history = history
        #: When set (a past period), Accounts created at or after it are left out: they had no
        #: Salesforce data then.
        self.existed_before: datetime | None = None
        self.object_name = f.object_name
        self.needs = {
            DAYS_TO_RENEWAL: (f.renewal_date_field,),
            ARR_TRAJECTORY_PCT: (f.arr_field, f.prior_year_arr_field),
            TIER_ALIGNMENT: (f.support_tier_field, f.arr_field),
            CHAMPION_STABILITY: (f.champion_changed_date_field,),
            RESPONSIVENESS: (f.avg_response_hours_field,),
        }
        #: The context still read, column (owner, arr, renewal_date) → field or path.
        self.context: dict[str, str] = dict(settings.context_fields)
        #: account (18-character id) → its context, filled as id lists are parsed.
        self.contexts: dict[str, AccountContext] = {}
        #: Why some context is not read (manifest notes; context never degrades a run).
        self.context_notes: list[str] = []
        self._lock = threading.Lock()

    def drop_context(self, name: str) -> list[str]:
        """Stop reading the context fields that ``name`` (a field or relationship the org
        lacks) is part of; the columns dropped."""
        lowered = name.casefold()
        lost = [
            column
            for column, path in self.context.items()
            if lowered in (part.casefold() for part in path.split("."))
        ]
        for column in lost:
            del self.context[column]
        return lost

    def history_fields(self, metrics: frozenset[str]) -> list[str]:
        """The Account fields rolled back for a past period: the metrics' and the context's
        own fields (a relationship path such as ``Owner.Name`` is read as it is now)."""
        fields = self.fields(metrics)
        folded = {n.casefold() for n in fields}
        for path in self.context.values():
            if "." not in path and path.casefold() not in folded:
                fields.append(path)
                folded.add(path.casefold())
        return fields

    def fields(self, metrics: frozenset[str]) -> list[str]:
        """The Account fields the metrics need, in order."""
        fields: list[str] = []
        for metric, needed in self.needs.items():
            if metric in metrics:
                fields.extend(n for n in needed if n not in fields)
        return fields

    def build(self, ids: Sequence[str], metrics: frozenset[str]) -> str:
        fields = ["Id", *self.fields(metrics)]
        if self.existed_before is not None:
            fields.append("CreatedDate")
        folded = {n.casefold() for n in fields}
        for path in self.context.values():  # folded into the same query: no extra request
            if path.casefold() not in folded:
                fields.append(path)
                folded.add(path.casefold())
        columns = ", ".join(_field_path(f) for f in fields)
        return (
            f"SELECT {columns} FROM {_api_name(self.object_name)} WHERE Id IN {soql_id_list(ids)}"  # noqa: S608 - API names and escaped literals
        )

    def parse(self, rows: Iterable[Mapping[str, Any]], metrics: frozenset[str]) -> dict[str, Any]:
        f, today = self.settings.account, self.window.end
        tiers = self.settings.tier_alignment
        standard = _folded(tiers.standard_tiers)
        fast = self.settings.responsiveness.fast_below_hours
        slow = self.settings.responsiveness.slow_above_hours
        out: dict[str, dict[str, Decimal | None]] = {}
        contexts: dict[str, AccountContext] = {}
        for row in rows:
            if self.existed_before is not None:
                created = _datetime(_field(row, "CreatedDate"))
                if created is not None and created >= self.existed_before:
                    continue  # not in the org yet at the period's end
            if self.context:
                contexts[salesforce_id18(str(row["Id"]))] = self._context(row)
            values: dict[str, Decimal | None] = {}
            if DAYS_TO_RENEWAL in metrics:
                renewal = _date(_field(row, f.renewal_date_field))
                values[DAYS_TO_RENEWAL] = Decimal((renewal - today).days) if renewal else None
            arr = _decimal(_field(row, f.arr_field))
            if ARR_TRAJECTORY_PCT in metrics:
                prior = _decimal(_field(row, f.prior_year_arr_field))
                values[ARR_TRAJECTORY_PCT] = (
                    metric_value((arr - prior) / prior * 100) if arr is not None and prior else None
                )
            if TIER_ALIGNMENT in metrics:
                tier = _field(row, f.support_tier_field)
                values[TIER_ALIGNMENT] = (
                    None
                    if not isinstance(tier, str) or arr is None
                    else Decimal(int(tier.casefold() in standard and arr > tiers.arr_threshold))
                )
            if CHAMPION_STABILITY in metrics:
                changed = _date(_field(row, f.champion_changed_date_field))
                values[CHAMPION_STABILITY] = Decimal((today - changed).days) if changed else None
            if RESPONSIVENESS in metrics:
                hours = _decimal(_field(row, f.avg_response_hours_field))
                values[RESPONSIVENESS] = (
                    None
                    if hours is None
                    else Decimal(1 if hours < fast else 2 if hours <= slow else 3)
                )
            out[salesforce_id18(str(row["Id"]))] = values
        with self._lock:
            self.contexts.update(contexts)
        return out

    def _context(self, row: Mapping[str, Any]) -> AccountContext:
        c = self.context
        owner = _path_value(row, c["owner"]) if "owner" in c else None
        arr = _decimal(_path_value(row, c["arr"])) if "arr" in c else None
        renewal = _date(_path_value(row, c["renewal_date"])) if "renewal_date" in c else None
        return AccountContext(
            owner=owner.strip() or None if isinstance(owner, str) else None,
            arr=metric_value(arr),  # 373897.0 and 373897 alike: 373897
            renewal_date=renewal,
            days_to_renewal=None if renewal is None else (renewal - self.window.end).days,
        )


class FieldHistory:
    """Records' fields as they stood at ``at``, rebuilt from the object's field history.

    Salesforce records each change of a tracked field (``AccountHistory``, or
    ``<Object>__History`` for a custom object) with its old and new value. A field's value at
    ``at`` is the old value of its first change at or after ``at``; with no change since, it is
    the current value. An untracked field has no rows at all, so it reads as its current value:
    the configuration must say which fields the org tracks.
    """

    def __init__(self, object_name: str, parent: str, at: datetime) -> None:
        self.object_name, self.parent = object_name, parent
        self.at = at.astimezone(UTC)

    @classmethod
    def of_account(cls, settings: Settings, at: datetime) -> FieldHistory:
        """The Account object's history (``AccountHistory`` / ``AccountId``)."""
        return cls(*history_names(settings.account.object_name), at)

    def build(self, ids: Sequence[str], fields: Sequence[str]) -> str:
        parent = _api_name(self.parent)
        return (
            f"SELECT {parent}, Field, OldValue, CreatedDate FROM {_api_name(self.object_name)}"  # noqa: S608 - API names and escaped literals
            f" WHERE {parent} IN {soql_id_list(ids)} AND Field IN {soql_list(fields)}"
            f" AND CreatedDate >= {_instant(self.at)} ORDER BY CreatedDate ASC"
        )

    def probe(self) -> str:
        """One row of the history object at most: whether this user can read it."""
        return f"SELECT Id FROM {_api_name(self.object_name)} LIMIT 1"  # noqa: S608 - API name

    def rolled_back(
        self, rows: Iterable[Mapping[str, Any]], changes: Iterable[Mapping[str, Any]]
    ) -> list[Mapping[str, Any]]:
        """``rows`` (current values) with every changed field set to its value at ``at``."""
        first: dict[tuple[str, str], Any] = {}
        for change in changes:  # oldest first: the first change after ``at`` wins
            key = (
                salesforce_id18(str(_field(change, self.parent))),
                str(_field(change, "Field")).casefold(),
            )
            first.setdefault(key, _field(change, "OldValue"))
        out: list[Mapping[str, Any]] = []
        for row in rows:
            record = salesforce_id18(str(row["Id"]))
            out.append(
                {key: first.get((record, key.casefold()), value) for key, value in row.items()}
            )
        return out


class OpportunityPlan(Plan):
    """Closed-won contractions in the window and open expansions, grouped by account and
    ``IsClosed`` (contractions are closed, expansions open, so the flag tells them apart).

    For a past period (``open_at`` set) an expansion counts when it was open then: created
    before ``open_at`` and not closed before it (open now, or closed with a close date on or
    after ``open_at``'s day). Rows are then grouped by type too, which tells the two apart (an
    expansion open then may be closed now). The close date stands for the day it closed: a
    closed opportunity's ``CloseDate`` is, by Salesforce's convention, when it was won or lost
    (Opportunity field history is not read).
    """

    def __init__(self, settings: Settings, window: Window) -> None:
        f = settings.opportunity
        self.f, self.window = f, window
        self.object_name = f.object_name
        #: When set (a past period): expansions open at that instant, not now.
        self.open_at: datetime | None = None
        self.expansion = _folded(f.expansion_types)
        self.needs = {
            CONTRACT_CHANGES: (
                f.account_field,
                f.type_field,
                f.is_won_field,
                f.close_date_field,
                f.is_closed_field,
            ),
            EXPANSION_SIGNALS: (f.account_field, f.type_field, f.is_closed_field),
        }

    def build(self, ids: Sequence[str], metrics: frozenset[str]) -> str:
        f, w = self.f, self.window
        account, kind, closed = (
            _api_name(n) for n in (f.account_field, f.type_field, f.is_closed_field)
        )
        close = _api_name(f.close_date_field)
        branches = []
        if CONTRACT_CHANGES in metrics:
            won = _api_name(f.is_won_field)
            branches.append(
                f"({kind} IN {soql_list(f.contraction_types)} AND {won} = TRUE"
                f" AND {close} >= {w.start.isoformat()} AND {close} < {w.end.isoformat()})"
            )
        groups = [account, closed]
        at = self.open_at
        if EXPANSION_SIGNALS in metrics and at is None:
            branches.append(f"({kind} IN {soql_list(f.expansion_types)} AND {closed} = FALSE)")
        elif EXPANSION_SIGNALS in metrics and at is not None:
            branches.append(
                f"({kind} IN {soql_list(f.expansion_types)} AND CreatedDate < {_instant(at)}"
                f" AND ({closed} = FALSE OR {close} >= {at.astimezone(UTC).date().isoformat()}))"
            )
            groups.append(kind)
        grouped = ", ".join(groups)
        return (
            f"SELECT {grouped}, COUNT(Id) n FROM {_api_name(self.object_name)}"  # noqa: S608 - API names and escaped literals
            f" WHERE {account} IN {soql_id_list(ids)} AND ({' OR '.join(branches)})"
            f" GROUP BY {grouped}"
        )

    def _metric(self, row: Mapping[str, Any]) -> str:
        if self.open_at is not None:
            kind = str(_field(row, self.f.type_field) or "").casefold()
            return EXPANSION_SIGNALS if kind in self.expansion else CONTRACT_CHANGES
        return CONTRACT_CHANGES if _field(row, self.f.is_closed_field) else EXPANSION_SIGNALS

    def parse(self, rows: Iterable[Mapping[str, Any]], metrics: frozenset[str]) -> dict[str, Any]:
        out: dict[str, dict[str, int]] = {}
        for row in rows:
            account_id = salesforce_id18(str(_field(row, self.f.account_field)))
            metric = self._metric(row)
            counts = out.setdefault(account_id, {})
            counts[metric] = counts.get(metric, 0) + int(_field(row, "n") or 0)
        return out


class PaymentPlan(Plan):
    """Failed payments in the window, counted per account."""

    def __init__(self, settings: Settings, window: Window) -> None:
        f = settings.payment
        self.f, self.window = f, window
        self.object_name = f.object_name
        self.needs = {PAYMENT_HEALTH: (f.account_field, f.status_field, f.date_field)}

    def build(self, ids: Sequence[str], metrics: frozenset[str]) -> str:
        f, w = self.f, self.window
        account, status, day = (
            _api_name(n) for n in (f.account_field, f.status_field, f.date_field)
        )
        return (
            f"SELECT {account}, COUNT(Id) n FROM {_api_name(self.object_name)}"  # noqa: S608 - API names and escaped literals
            f" WHERE {account} IN {soql_id_list(ids)} AND {status} IN {soql_list(f.failed_values)}"
            f" AND {day} >= {w.start.isoformat()} AND {day} < {w.end.isoformat()}"
            f" GROUP BY {account}"
        )

    def parse(self, rows: Iterable[Mapping[str, Any]], metrics: frozenset[str]) -> dict[str, Any]:
        return {
            salesforce_id18(str(_field(row, self.f.account_field))): {
                PAYMENT_HEALTH: int(_field(row, "n") or 0)
            }
            for row in rows
        }


class EventPlan(Plan):
    """QBRs in the window (held and attended) and the last executive meeting before the end.

    Read with ``queryAll`` and ``IsDeleted = false``: Salesforce archives Events older than a
    year and plain ``query`` omits them. On ``Event``, ``IsChild = false`` counts a group event
    once, not once more per invitee's copy.
    """

    query_all = True

    def __init__(self, settings: Settings, window: Window) -> None:
        f = settings.event
        self.f, self.window = f, window
        self.object_name = f.object_name
        self.needs = {
            QBR_ATTENDANCE_PCT: (f.account_field, f.type_field, f.date_field, f.attended_field),
            EXEC_ENGAGEMENT: (f.account_field, f.type_field, f.date_field),
        }
        self.qbr, self.exec = _folded(f.qbr_types), _folded(f.exec_types)

    def build(self, ids: Sequence[str], metrics: frozenset[str]) -> str:
        f, w = self.f, self.window
        account, kind, day = (_api_name(n) for n in (f.account_field, f.type_field, f.date_field))
        groups = [account, kind]
        branches = []
        if QBR_ATTENDANCE_PCT in metrics:
            groups.append(_api_name(f.attended_field))
            branches.append(
                f"({kind} IN {soql_list(f.qbr_types)} AND {day} >= {w.start.isoformat()})"
            )
        if EXEC_ENGAGEMENT in metrics:
            branches.append(f"{kind} IN {soql_list(f.exec_types)}")
        grouped = ", ".join(groups)
        live = " AND IsDeleted = false"
        if self.object_name.casefold() == "event":
            live += " AND IsChild = false"
        return (
            f"SELECT {grouped}, COUNT(Id) n, MAX({day}) latest FROM {_api_name(self.object_name)}"  # noqa: S608 - API names and escaped literals
            f" WHERE {account} IN {soql_id_list(ids)}{live} AND {day} < {w.end.isoformat()}"
            f" AND ({' OR '.join(branches)}) GROUP BY {grouped}"
        )

    def parse(self, rows: Iterable[Mapping[str, Any]], metrics: frozenset[str]) -> dict[str, Any]:
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            account_id = salesforce_id18(str(_field(row, self.f.account_field)))
            kind = str(_field(row, self.f.type_field) or "").casefold()
            values = out.setdefault(account_id, {"held": 0, "attended": 0, "last": None})
            count = int(_field(row, "n") or 0)
            if QBR_ATTENDANCE_PCT in metrics and kind in self.qbr:
                values["held"] += count
                if _field(row, self.f.attended_field) is True:
                    values["attended"] += count
            last = _date(_field(row, "latest"))
            if EXEC_ENGAGEMENT in metrics and kind in self.exec and last is not None:
                values["last"] = max(last, values["last"] or last)
        return out


class SignalPlan(Plan):
    """Active and Monitoring churn signals per account, severity, confidence and status.

    For a past period (``history`` set) the signals are read one by one — those created before
    its end, whatever their status now — and each one's status (severity and confidence too,
    when the org tracks them) is rolled back to that instant from the object's field history:
    :class:`FieldHistory`, queried by signal id. A field without history rows reads as its
    current value.
    """

    def __init__(self, settings: Settings) -> None:
        f = settings.churn_signal
        self.f = f
        self.object_name = f.object_name
        self.needs = {
            SIGNALS: (f.account_field, f.severity_field, f.confidence_field, f.status_field)
        }
        self.levels = {
            **dict.fromkeys(_folded(f.watch_values), 0),
            **dict.fromkeys(_folded(f.moderate_values), 1),
            **dict.fromkeys(_folded(f.critical_values), 2),
        }
        self.active, self.monitoring = _folded(f.active_values), _folded(f.monitoring_values)
        self.confirmed = _folded(f.confirmed_values)
        self.unknown_severities: set[str] = set()
        #: When set (a past period): the signals as they stood at ``history.at``.
        self.history: FieldHistory | None = None

    @property
    def tracked(self) -> tuple[str, ...]:
        """The fields rolled back from the history (the status, and severity and confidence)."""
        f = self.f
        return (f.status_field, f.severity_field, f.confidence_field)

    def build(self, ids: Sequence[str], metrics: frozenset[str]) -> str:
        f = self.f
        names = (f.account_field, f.severity_field, f.confidence_field, f.status_field)
        account, severity, confidence, status = (_api_name(n) for n in names)
        if self.history is not None:
            return (
                f"SELECT Id, {account}, {severity}, {confidence}, {status}"  # noqa: S608 - API names and escaped literals
                f" FROM {_api_name(self.object_name)}"
                f" WHERE {account} IN {soql_id_list(ids)}"
                f" AND CreatedDate < {_instant(self.history.at)}"
            )
        statuses = soql_list((*f.active_values, *f.monitoring_values))
        return (
            f"SELECT {account}, {severity}, {confidence}, {status}, COUNT(Id) n"  # noqa: S608 - API names and escaped literals
            f" FROM {_api_name(self.object_name)}"
            f" WHERE {account} IN {soql_id_list(ids)} AND {status} IN {statuses}"
            f" GROUP BY {account}, {severity}, {confidence}, {status}"
        )

    def parse(self, rows: Iterable[Mapping[str, Any]], metrics: frozenset[str]) -> dict[str, Any]:
        names = ("watch", "moderate", "critical")
        out: dict[str, SignalCounts] = {}
        for row in rows:
            account_id = salesforce_id18(str(_field(row, self.f.account_field)))
            severity = str(_field(row, self.f.severity_field) or "")
            status = str(_field(row, self.f.status_field) or "").casefold()
            if status not in self.active and status not in self.monitoring:
                continue  # resolved (then, for a past period)
            level = self.levels.get(severity.casefold())
            if level is None:
                self.unknown_severities.add(severity[:40])
                continue
            if status in self.monitoring and status not in self.active:
                level -= 1  # Monitoring counts one severity lower; Watch + Monitoring drops
            if level < 0:
                continue
            count = 1 if self.history is not None else int(_field(row, "n") or 0)
            confirmed = str(_field(row, self.f.confidence_field) or "").casefold() in self.confirmed
            name = names[level]
            counts = {name: count, f"{name}_confirmed": count if confirmed else 0}
            out[account_id] = out.get(account_id, NO_SIGNALS) + SignalCounts(**counts)
        return out
