"""The run's alerts from its own files: ``scores.csv``, ``raw.csv``, ``changes.csv`` and the
previous ok run's ``scores.csv`` (the run ``changes.csv`` was compared with).

Pure: bytes in, :class:`Alert` records out. Every text cell is read back through
:func:`~health_score.csvsafe.unescape_cell` (the files are guarded for spreadsheets).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from health_score.alerts.rules import AccountView, AlertsConfig, Firing, describe, evaluate
from health_score.csvsafe import unescape_cell

#: changes.csv parts that are not a metric.
NON_METRIC_PARTS = frozenset(
    {"weights", "coverage", "cap", "rounding", "appeared", "lost_score", "unchanged", "unscored"}
)
RENEWAL_METRIC = "days_to_renewal"


@dataclass(frozen=True, slots=True)
class Driver:
    """One contributing change of an account's final score (a row of changes.csv)."""

    part: str  # a metric, or weights / coverage / cap / rounding
    dimension: str
    raw_before: str
    raw_after: str
    points: Decimal

    def text(self) -> str:
        sign = "+" if self.points > 0 else ""
        label = f"{self.dimension}.{self.part}" if self.dimension else self.part
        moved = self.raw_before or self.raw_after
        raw = f" ({self.raw_before} → {self.raw_after})" if moved else ""
        return f"{label} {sign}{self.points} pts{raw}"


@dataclass(frozen=True, slots=True)
class Alert:
    """One rule fired for one account in one period."""

    period: str
    account_id: str
    account_name: str
    rule_id: str
    rule_kind: str
    title: str
    reason: str
    tier: str
    previous_tier: str
    final: Decimal | None
    previous_final: Decimal | None
    drivers: tuple[Driver, ...]

    @property
    def key(self) -> str:
        """Unique per account, rule and period (the idempotency key before Salesforce ids)."""
        return f"{self.account_id}|{self.rule_id}|{self.period}"

    @property
    def change(self) -> Decimal | None:
        if self.final is None or self.previous_final is None:
            return None
        return self.final - self.previous_final

    def drivers_text(self) -> str:
        return "; ".join(d.text() for d in self.drivers)


#: Columns whose cells may carry the spreadsheet guard (names and ids); numbers never do.
_TEXT_COLUMNS = frozenset({"account_id", "account_name", "raw_before", "raw_after"})


def _rows(
    data: bytes | None, columns: Sequence[str], keep: Callable[[str], bool] | None = None
) -> list[dict[str, str]]:
    """The rows of a run's CSV, only ``columns`` (absent ones read as ""), only the rows whose
    ``account_id`` passes ``keep``; the guard is undone on the text columns only."""
    if not data:
        return []
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    header = next(reader, [])
    at = {name: i for i, name in enumerate(header)}
    wanted = [(name, at.get(name)) for name in columns]
    id_at = at.get("account_id")
    out: list[dict[str, str]] = []
    for cells in reader:
        if keep is not None and (id_at is None or not keep(unescape_cell(cells[id_at]))):
            continue
        row: dict[str, str] = {}
        for name, i in wanted:
            cell = cells[i] if i is not None and i < len(cells) else ""
            row[name] = unescape_cell(cell) if name in _TEXT_COLUMNS else cell
        out.append(row)
    return out


def _decimal(text: str | None) -> Decimal | None:
    if text is None or text.strip() == "":
        return None
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _count(text: str | None) -> int:
    value = _decimal(text)
    return int(value) if value is not None else 0


def drivers_by_account(
    changes_csv: bytes | None, accounts: Collection[str] | None = None
) -> dict[str, list[Driver]]:
    """account_id → its non-zero parts from changes.csv (metric rows and the other parts);
    only the ``accounts`` asked for (default: all)."""
    out: dict[str, list[Driver]] = {}
    keep = None if accounts is None else accounts.__contains__
    columns = ("account_id", "part", "points_change", "dimension", "raw_before", "raw_after")
    for row in _rows(changes_csv, columns, keep):
        part = row.get("part", "")
        points = _decimal(row.get("points_change"))
        if not part or points is None or points == 0 or part in ("appeared", "unchanged"):
            continue
        if part in ("lost_score", "unscored"):
            continue
        out.setdefault(row.get("account_id", ""), []).append(
            Driver(
                part,
                row.get("dimension", ""),
                row.get("raw_before", ""),
                row.get("raw_after", ""),
                points,
            )
        )
    return out


def top_drivers(
    drivers: Sequence[Driver], count: int, change: Decimal | None
) -> tuple[Driver, ...]:
    """The ``count`` largest contributions in the direction of the change (a drop: the most
    negative first), ties by name."""
    falling = change is None or change <= 0
    ordered = sorted(
        drivers,
        key=lambda d: (d.points if falling else -d.points, d.dimension, d.part),
    )
    chosen = [d for d in ordered if (d.points < 0) == falling] or ordered
    return tuple(chosen[:count])


def account_views(
    scores_csv: bytes,
    raw_csv: bytes | None,
    previous_scores_csv: bytes | None,
) -> list[AccountView]:
    """Each account scored by this run, with the previous ok run's view of it."""
    renewal: dict[str, Decimal | None] = {
        row["account_id"]: _decimal(row[RENEWAL_METRIC])
        for row in _rows(raw_csv, ("account_id", RENEWAL_METRIC))
    }
    score_columns = (
        "account_id",
        "account_name",
        "health_tier",
        "final_score",
        "coverage_pct",
        "critical_confirmed",
    )
    before = {row["account_id"]: row for row in _rows(previous_scores_csv, score_columns)}
    views = []
    for row in _rows(scores_csv, score_columns):
        account_id = row.get("account_id", "")
        old: Mapping[str, str] | None = before.get(account_id)
        views.append(
            AccountView(
                account_id=account_id,
                account_name=row.get("account_name", ""),
                tier=row.get("health_tier", ""),
                final=_decimal(row.get("final_score")),
                coverage_pct=_decimal(row.get("coverage_pct")),
                critical_confirmed=_count(row.get("critical_confirmed")),
                days_to_renewal=renewal.get(account_id),
                previous_tier=None if old is None else old.get("health_tier", ""),
                previous_final=None if old is None else _decimal(old.get("final_score")),
                previous_coverage_pct=None if old is None else _decimal(old.get("coverage_pct")),
                previous_critical_confirmed=0
                if old is None
                else _count(old.get("critical_confirmed")),
            )
        )
    return views


def build_alerts(
    config: AlertsConfig,
    period: str,
    views: Sequence[AccountView],
    changes_csv: bytes | None,
    labels: Sequence[str],
    min_coverage_pct: Decimal,
) -> list[Alert]:
    """Every alert of the run, each with its top drivers."""
    fired = evaluate(config.rules, views, labels, min_coverage_pct)
    drivers = drivers_by_account(changes_csv, {v.account_id for v, _ in fired}) if fired else {}
    alerts = []
    for view, firing in fired:
        mine = drivers.get(view.account_id, [])
        alerts.append(_alert(period, view, firing, mine, config.drivers))
    return alerts


def _alert(
    period: str, view: AccountView, firing: Firing, drivers: Sequence[Driver], count: int
) -> Alert:
    change = (
        None
        if view.final is None or view.previous_final is None
        else view.final - view.previous_final
    )
    return Alert(
        period=period,
        account_id=view.account_id,
        account_name=view.account_name,
        rule_id=firing.rule.id,
        rule_kind=firing.rule.kind,
        title=describe(firing.rule),
        reason=firing.reason,
        tier=view.tier,
        previous_tier=view.previous_tier or "",
        final=view.final,
        previous_final=view.previous_final,
        drivers=top_drivers(drivers, count, change),
    )
