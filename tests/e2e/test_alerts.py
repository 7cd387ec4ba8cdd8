"""A sandbox year's last two months: alerts for the accounts whose tier fell, delivered once.

The two periods are scored from raw files holding the sandbox's ground truth for each month
(``Sandbox.expected_metrics(as_of=…)``): past-period live runs of the sandbox are ``degraded``
(some sources cannot be reconstructed for the past), and alerts compare with ``ok`` runs only.
Delivery goes to the sandbox's Salesforce and Slack stand-ins.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from health_score.alerts.reader import read_alerts
from health_score.config import load_scoring_config
from health_score.loaders.artifacts import LocalRunStore
from health_score.pipeline import RunOptions, run
from health_score.rawfile import raw_header, raw_rows
from health_score.records import NO_SIGNALS, AccountInput
from health_score.scoring.composite import Model
from health_score_sandbox.sandbox import Sandbox

# One worker builds this module's sandbox history (make test runs --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_alerts")

REPO = Path(__file__).resolve().parents[2]
PERIODS = {"2026-09": date(2026, 10, 1), "2026-10": date(2026, 11, 1)}
NOW = datetime(2026, 11, 1, 6, tzinfo=UTC)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(40, history_months=24) as sb:
        yield sb


def truth_inputs(sb: Sandbox, as_of: date) -> list[AccountInput]:
    expected = sb.expected_metrics(as_of=as_of)
    slice_ = next(s for s in sb.slices if s.as_of == as_of)
    return [
        AccountInput(
            account_id=p.account_id,
            account_name=p.account.account_name,
            segment=p.account.segment,
            metrics=expected.get(p.account_id, {}),
            signals=NO_SIGNALS,
        )
        for p in slice_.profiles
        if p.present
    ]


def write_raw(path: Path, inputs: list[AccountInput], metrics: list[str]) -> Path:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(raw_header(metrics))
    writer.writerows(raw_rows(inputs, metrics))
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def test_tier_falls_alert_once_per_period(sandbox: Sandbox, tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    shutil.copytree(REPO / "config", config_dir)
    # The default delivery: each alert is assigned to its Account's owner (Account.OwnerId).
    (config_dir / "alerts.yaml").write_text(
        "rules:\n  - id: tier_worsened\n    kind: tier_worsened\n", encoding="utf-8"
    )
    scoring = load_scoring_config(config_dir)
    model = Model(scoring)
    metrics = sorted({m.name for d in scoring.dimensions.values() for m in d.metrics})
    labels = list(scoring.tier_labels)
    tiers: dict[str, dict[str, str]] = {}
    raws: dict[str, Path] = {}
    for period, as_of in PERIODS.items():
        inputs = truth_inputs(sandbox, as_of)
        tiers[period] = {a.account_id: model.score(a).tier for a in inputs}
        raws[period] = write_raw(tmp_path / f"raw-{period}.csv", inputs, metrics)
    # Ground truth: the accounts in both months whose tier got worse (Insufficient Data aside).
    rank = {t: i for i, t in enumerate(labels[:-1])}
    fell = {
        a
        for a, tier in tiers["2026-10"].items()
        if a in tiers["2026-09"]
        and tier in rank
        and tiers["2026-09"][a] in rank
        and rank[tier] > rank[tiers["2026-09"][a]]
    }
    assert fell, "the sandbox's year has accounts whose tier fell"

    def period_run(period: str, *, dry: bool = False) -> str:
        summary = run(
            RunOptions(
                config_dir=config_dir,
                from_raw=raws[period],
                period=period,
                dry_run=dry,
                runs_dir=str(tmp_path / "runs"),
                output=tmp_path / "scores.csv",
                env=sandbox.env(),
                now=NOW,
            )
        )
        assert summary.status == "ok", summary.messages
        assert summary.exit_code == 0, summary.messages
        assert summary.run_location is not None
        return Path(summary.run_location).name

    writes = sandbox.servers["salesforce"].app.writes  # type: ignore[attr-defined]
    period_run("2026-09")
    dry = period_run("2026-10", dry=True)
    store = LocalRunStore(tmp_path / "runs")
    dry_alerts = read_alerts(store, dry)
    assert {r.account_id for r in dry_alerts.rows} == fell
    assert dry_alerts.salesforce["status"] == "skipped"
    assert "Health_Alert__c" not in writes.records and sandbox.slack.messages == []

    first = period_run("2026-10")
    alerts = read_alerts(store, first)
    assert {r.account_id for r in alerts.rows} == fell
    assert all(r.drivers for r in alerts.rows)
    assert alerts.salesforce["created"] == len(fell)
    records = writes.records["Health_Alert__c"]
    assert {r["Account__c"] for r in records.values()} == fell
    owner_of = {
        r["Id"]: r["OwnerId"]
        for r in sandbox.data["salesforce"].org.get("Account").records  # type: ignore[attr-defined]
    }
    assert alerts.salesforce["owner_lookup"] == "ok"
    # Assigned to the Account's owner; an account the org lacks stays unassigned.
    for record in records.values():
        assert record.get("OwnerId") == owner_of.get(record["Account__c"]), record
    assert any(record.get("OwnerId") for record in records.values())
    health = writes.records["Health_Score__c"]
    for record in records.values():  # linked to the period's Health Score record
        assert health[f"{record['Account__c']}-2026-10"]["Id"] == record["Health_Score__c"]
    assert len(sandbox.slack.messages) == 1
    assert f"{len(fell)} alert(s)" in sandbox.slack.messages[0]["text"]

    # The same period again: no new record, no second message.
    again = period_run("2026-10")
    manifest = json.loads((tmp_path / "runs" / again / "manifest.json").read_text())
    assert manifest["alerts"]["salesforce"]["already_delivered"] == len(fell)
    assert manifest["alerts"]["slack"]["status"] == "skipped"
    assert len(writes.records["Health_Alert__c"]) == len(fell)
    assert len(sandbox.slack.messages) == 1
    # The webhook URL (a secret) is in no file of any run.
    url = sandbox.env()["SLACK_WEBHOOK_URL"]
    secret = url.rsplit("/", 1)[-1]
    for path in (tmp_path / "runs").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
