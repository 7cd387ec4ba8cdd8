"""Reading a run's alerts back for the dashboard: pure, from the bytes of its files.

``read_alerts(reader, run_id)`` takes anything with ``read(run_id, name) -> bytes | None`` (the
dashboard's :class:`~health_score.dashboard.runs.RunReader`, a :class:`LocalRunStore`…) and
returns the rows of ``alerts.csv`` (cells unescaped) with what the manifest says was delivered.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from health_score.csvsafe import unescape_cell

ALERTS = "alerts.csv"
MANIFEST = "manifest.json"


class _Reads(Protocol):
    def read(self, run_id: str, name: str) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class AlertRow:
    period: str
    account_id: str
    account_name: str
    rule: str
    kind: str
    alert: str
    reason: str
    previous_tier: str
    tier: str
    previous_final: Decimal | None
    final: Decimal | None
    change: Decimal | None
    drivers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RunAlerts:
    """A run's alerts and their delivery (``status``: evaluated, disabled, or absent)."""

    status: str
    rows: tuple[AlertRow, ...] = ()
    by_rule: dict[str, int] = field(default_factory=dict)
    salesforce: dict[str, Any] = field(default_factory=dict)
    slack: dict[str, Any] = field(default_factory=dict)


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text) if text.strip() else None
    except InvalidOperation:
        return None


def parse_alerts_csv(data: bytes) -> tuple[AlertRow, ...]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    rows = []
    for raw in reader:
        row = {k: unescape_cell(v or "") for k, v in raw.items() if k is not None}
        rows.append(
            AlertRow(
                period=row.get("period", ""),
                account_id=row.get("account_id", ""),
                account_name=row.get("account_name", ""),
                rule=row.get("rule", ""),
                kind=row.get("kind", ""),
                alert=row.get("alert", ""),
                reason=row.get("reason", ""),
                previous_tier=row.get("previous_tier", ""),
                tier=row.get("tier", ""),
                previous_final=_decimal(row.get("previous_final", "")),
                final=_decimal(row.get("final", "")),
                change=_decimal(row.get("change", "")),
                drivers=tuple(d for d in row.get("drivers", "").split("; ") if d),
            )
        )
    return tuple(rows)


def read_alerts(reader: _Reads, run_id: str) -> RunAlerts:
    """The run's alerts (``absent``: a run from before alerts, or one without ``alerts.csv``)."""
    manifest: dict[str, Any] = {}
    data = reader.read(run_id, MANIFEST)
    if data:
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = {}
        if isinstance(parsed, dict) and isinstance(parsed.get("alerts"), dict):
            manifest = parsed["alerts"]
    csv_data = reader.read(run_id, ALERTS)
    if csv_data is None:
        return RunAlerts(str(manifest.get("status", "absent")))

    def section(name: str) -> dict[str, Any]:
        value = manifest.get(name)
        return (
            {k: v for k, v in value.items() if k not in ("delivered_keys", "announced_keys")}
            if isinstance(value, dict)
            else {}
        )

    by_rule = manifest.get("by_rule")
    return RunAlerts(
        status=str(manifest.get("status", "evaluated")),
        rows=parse_alerts_csv(csv_data),
        by_rule=dict(by_rule) if isinstance(by_rule, dict) else {},
        salesforce=section("salesforce"),
        slack=section("slack"),
    )
