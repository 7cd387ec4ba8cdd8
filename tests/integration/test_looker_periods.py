"""Looker through periods, against the real loopback stand-in holding six months of history.

A Look that names its ``date_field`` is run for the period: its saved query with the filter on
that field replaced by the period's range. A Look without one is run as saved for the current
period only; for a past period its metrics are unavailable and the run is degraded.

The stand-in is built the way ``Sandbox(60, history_months=6)`` builds it (portfolio, timeline,
month slices, ``generate_history``), Looker alone, and the expected metrics of a month are
``Data.expected_at(as_of)``, what ``Sandbox.expected_metrics(as_of)`` returns for Looker.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from health_score.pipeline import RunOptions, run
from health_score.sources.looker import Settings
from health_score.sources.looker.extractor import LookerExtractor, from_env
from health_score.sources.registry import load_sources
from health_score_sandbox import looker as sandbox_looker
from health_score_sandbox.portfolio import Portfolio, build_portfolio
from health_score_sandbox.server import VendorServer
from health_score_sandbox.timeline import build_timeline, slices
from tests.conftest import DEFAULT_CONFIG

# One worker builds this module's sandbox history (make test runs --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_looker_periods")

SANDBOX_DATE = datetime(2026, 11, 1, tzinfo=UTC)
DATE_FIELDS = {
    "101": "account_usage.activity_month",
    "102": "platform_value.activity_month",
    "103": "integrations.activity_month",
    "104": "automations.activity_month",
}


def midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def dated(settings: Settings, only: tuple[str, ...] = tuple(DATE_FIELDS)) -> Settings:
    """The default Looks, those in ``only`` naming their date field, the others none."""
    raw = settings.model_dump(mode="python")
    for look in raw["looks"]:
        look["date_field"] = DATE_FIELDS[look["id"]] if look["id"] in only else None
    return Settings.model_validate(raw)


@pytest.fixture(scope="module")
def settings() -> Settings:
    found = load_sources(DEFAULT_CONFIG, ("looker",))["looker"]
    assert isinstance(found, Settings)
    return dated(found)


def test_the_default_sources_yaml_names_every_looks_date_field() -> None:
    """Out of the box every Look is run for the period, so a backfilled month has its Looker
    metrics."""
    found = load_sources(DEFAULT_CONFIG, ("looker",))["looker"]
    assert isinstance(found, Settings)
    assert {look.id: look.date_field for look in found.looks} == {
        "101": "account_usage.activity_month",
        "102": "platform_value.activity_month",
        "103": "integrations.activity_month",
        "104": "automations.activity_month",
    }


@pytest.fixture(scope="module")
def history(settings: Settings) -> tuple[Portfolio, sandbox_looker.Data]:
    base = build_portfolio(60, as_of=SANDBOX_DATE.date())
    months = slices(base, build_timeline(base, 6))
    return months[-1], sandbox_looker.generate_history(build_timeline(base, 6), months, settings)


@pytest.fixture(scope="module")
def app(history: tuple[Portfolio, sandbox_looker.Data], settings: Settings) -> sandbox_looker.App:
    return sandbox_looker.App(history[1], settings)


@pytest.fixture(scope="module")
def server(app: sandbox_looker.App) -> Iterator[VendorServer]:
    with VendorServer(app) as running:
        yield running


def extractor(server: VendorServer, settings: Settings, as_of: date) -> LookerExtractor:
    found = from_env(
        settings,
        sandbox_looker.environment(server.url, ""),
        session=requests.Session(),
        as_of=midnight(as_of),
        now=SANDBOX_DATE,
    )
    assert isinstance(found, LookerExtractor)
    return found


def test_a_past_period_gives_the_looker_metrics_of_that_month(
    server: VendorServer,
    app: sandbox_looker.App,
    history: tuple[Portfolio, sandbox_looker.Data],
    settings: Settings,
) -> None:
    portfolio, data = history
    app.queries.clear()
    server.reset_stats()
    looker = extractor(server, settings, date(2026, 7, 1))  # 2026-06
    result = looker.extract(portfolio.accounts)
    assert result.metrics == data.expected_at(date(2026, 7, 1))
    assert not result.degraded
    assert result.window == (datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC))
    # One login, then per Look its saved query and one inline run: never a request per account.
    assert dict(server.stats) == {
        "POST /api/4.0/login": 1,
        **{f"GET /api/4.0/looks/{look_id}": 1 for look_id in DATE_FIELDS},
        "POST /api/4.0/queries/run/json": 4,
    }
    assert result.requests == 9 == data.minimum_requests(settings)
    # What the stand-in received: each saved query, its date filter replaced by June.
    sent = sorted(app.queries, key=lambda q: str(q["view"]))
    assert [q["view"] for q in sent] == [
        "account_usage",
        "automations",
        "integrations",
        "platform_value",
    ]
    for query in sent:
        assert query["filters"] == {f"{query['view']}.activity_month": "2026-06-01 to 2026-07-01"}
        assert query["model"] == "customer_health" and query["query_timezone"] == "UTC"
        assert query["limit"] == "-1"
        assert "filter_config" not in query and "id" not in query
    assert (
        "Look 101 (account usage): run for the period with account_usage.activity_month "
        'filtered to "2026-06-01 to 2026-07-01"'
    ) in result.notes


def test_two_past_periods_differ_and_the_current_one_is_its_month(
    server: VendorServer,
    history: tuple[Portfolio, sandbox_looker.Data],
    settings: Settings,
) -> None:
    portfolio, data = history
    july = extractor(server, settings, date(2026, 8, 1)).extract(portfolio.accounts)
    september = extractor(server, settings, date(2026, 10, 1)).extract(portfolio.accounts)
    current = extractor(server, settings, date(2026, 11, 1)).extract(portfolio.accounts)
    assert july.metrics == data.expected_at(date(2026, 8, 1))
    assert september.metrics == data.expected_at(date(2026, 10, 1))
    assert current.metrics == data.expected
    differing = [a for a in july.metrics if july.metrics[a] != september.metrics[a]]
    assert len(differing) > 30


def test_a_look_without_date_field_is_unavailable_for_a_past_period(
    server: VendorServer,
    app: sandbox_looker.App,
    history: tuple[Portfolio, sandbox_looker.Data],
    settings: Settings,
) -> None:
    portfolio, data = history
    mixed = dated(settings, only=("101", "103"))
    server.reset_stats()
    result = extractor(server, mixed, date(2026, 9, 1)).extract(portfolio.accounts)
    assert result.degraded
    lost = {
        "positive_sentiment_pct",
        "response_before_target_pct",
        "automated_resolution_pct",
        "scheduled_reports",
        "automation_active",
    }
    august = data.expected_at(date(2026, 9, 1))
    for profile in portfolio.profiles:
        assert result.unavailable[profile.account_id] == lost
        values = result.metrics[profile.account_id]
        assert {m: values[m] for m in lost} == dict.fromkeys(lost)
        assert {m: v for m, v in values.items() if m not in lost} == {
            m: v for m, v in august[profile.account_id].items() if m not in lost
        }
    (reason,) = result.incomplete
    assert reason.startswith("not reconstructable for a past period (as_of 2026-09-01")
    assert "Look 102 (platform value), Look 104 (automations) name no date_field" in reason
    # Looks 102 and 104 were not asked for at all.
    assert dict(server.stats) == {
        "POST /api/4.0/login": 1,
        "GET /api/4.0/looks/101": 1,
        "GET /api/4.0/looks/103": 1,
        "POST /api/4.0/queries/run/json": 2,
    }


def test_without_date_field_the_current_period_runs_the_look_as_saved(
    server: VendorServer,
    history: tuple[Portfolio, sandbox_looker.Data],
    settings: Settings,
) -> None:
    portfolio, data = history
    saved = dated(settings, only=())
    server.reset_stats()
    result = extractor(server, saved, date(2026, 11, 1)).extract(portfolio.accounts)
    assert result.metrics == data.expected
    assert result.window is None and not result.degraded
    assert dict(server.stats) == {
        "POST /api/4.0/login": 1,
        **{f"GET /api/4.0/looks/{look_id}/run/json": 1 for look_id in DATE_FIELDS},
    }


# --------------------------------------------------------------------------------------------
# Through the pipeline: the manifest, and a bad date_field


def config_dir(tmp_path: Path, portfolio: Portfolio, date_field: str | None) -> Path:
    folder = tmp_path / "config"
    folder.mkdir()
    for name in ("weights.yaml", "thresholds.yaml"):
        shutil.copy(DEFAULT_CONFIG / name, folder / name)
    sources = yaml.safe_load((DEFAULT_CONFIG / "sources.yaml").read_text(encoding="utf-8"))
    for look in sources["looker"]["looks"]:
        look["date_field"] = DATE_FIELDS[str(look["id"])]
    sources["looker"]["looks"][0]["date_field"] = date_field
    for other in ("intercom", "jira", "salesforce"):  # Looker alone is served here
        sources[other]["enabled"] = False
    (folder / "sources.yaml").write_text(yaml.safe_dump(sources), encoding="utf-8")
    portfolio.write_mapping(folder / "account_mapping.csv")
    return folder


def period_run(server: VendorServer, folder: Path, tmp_path: Path, period: str) -> Any:
    return run(
        RunOptions(
            config_dir=folder,
            env=sandbox_looker.environment(server.url, ""),
            output=tmp_path / "scores.csv",
            runs_dir=str(tmp_path / "runs"),
            period=period,
            now=SANDBOX_DATE,
            dry_run=True,
        )
    )


def test_the_manifest_records_the_period_window_and_the_filter_used(
    server: VendorServer, history: tuple[Portfolio, sandbox_looker.Data], tmp_path: Path
) -> None:
    portfolio, _ = history
    folder = config_dir(tmp_path, portfolio, "account_usage.activity_month")
    summary = period_run(server, folder, tmp_path, "2026-08")
    assert summary.run_location is not None, summary.messages
    manifest = json.loads((Path(summary.run_location) / "manifest.json").read_text())
    looker = manifest["sources"]["looker"]
    assert looker["window"] == {
        "from": "2026-08-01T00:00:00+00:00",
        "to": "2026-09-01T00:00:00+00:00",
    }
    assert looker["status"] == "ok" and looker["requests"] == 9
    assert (
        "Look 103 (integrations): run for the period with integrations.activity_month "
        'filtered to "2026-08-01 to 2026-09-01"'
    ) in looker["notes"]


@pytest.mark.parametrize("bad", ["activity_month", "account_usage.activity month", "a.b.c"])
def test_a_date_field_that_is_not_view_dot_field_is_a_config_error(
    server: VendorServer,
    history: tuple[Portfolio, sandbox_looker.Data],
    tmp_path: Path,
    bad: str,
) -> None:
    portfolio, _ = history
    folder = config_dir(tmp_path, portfolio, bad)
    server.reset_stats()
    summary = period_run(server, folder, tmp_path, "2026-08")
    assert summary.exit_code == 2
    (message,) = summary.messages
    assert "looker.looks[0].date_field" in message
    assert "view.field" in message and repr(bad) in message
    assert server.total_requests == 0
