"""Alerts: rules in ``alerts.yaml`` evaluated after scoring, delivered to Salesforce and Slack."""

from __future__ import annotations

from health_score.alerts.evaluation import Alert, Driver
from health_score.alerts.reader import AlertRow, RunAlerts, read_alerts
from health_score.alerts.rules import ALERTS_FILE, AlertsConfig, Rule, load_alerts

__all__ = [
    "ALERTS_FILE",
    "Alert",
    "AlertRow",
    "AlertsConfig",
    "Driver",
    "Rule",
    "RunAlerts",
    "load_alerts",
    "read_alerts",
]
