"""The dashboard (``dashboard.py``) driven by Streamlit's AppTest over real run folders.

Runs are made by the real pipeline (``health_score.pipeline.run`` from raw files) into tmp
folders; expected
numbers come from those artifacts or from calling the scoring package directly.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tomllib
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from health_score.config import load_scoring_config
from health_score.dashboard.runs import MANIFEST
from health_score.dashboard.whatif import score_outcomes
from health_score.pipeline import RunOptions, run
from health_score.rawfile import read_raw
from tests.explanation_support import metric_csv
from tests.raw_support import edited_raw
from tests.scores_support import rewrite_as_old_scores

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "dashboard.py"
EXAMPLE = REPO / "examples" / "raw_metrics.csv"
TIMEOUT = 60

#: Changes for the second period: account 6 gets a critical signal (capped at 65, Healthy → At
#: Risk), accounts 1 and 2 lose adoption, account 14 improves its support numbers.
SECOND_PERIOD = {
    "001Sb0000000006IAA": {"critical_count": "1"},
    "001Sb0000000001IAA": {"active_user_pct": "12", "feature_breadth_pct": "10"},
    "001Sb0000000002IAA": {"active_user_pct": "20", "platform_score": "30"},
    "001Sb0000000014IAA": {"p1_p2_volume": "0", "first_response_minutes": "30"},
}


def make_run(raw: Path, runs_dir: Path, period: str) -> str:
    summary = run(
        RunOptions(
            config_dir=REPO / "config",
            from_raw=raw,
            period=period,
            runs_dir=str(runs_dir),
            output=runs_dir.parent / f"scores-{period}.csv",
        )
    )
    assert summary.run_id is not None, summary.messages
    return summary.run_id


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A runs folder with 2026-09 (the example file) and 2026-10 (edited); returns ids."""
    base = tmp_path_factory.mktemp("runs-home")
    runs_dir = base / "runs"
    first = make_run(EXAMPLE, runs_dir, "2026-09")
    second = make_run(edited_raw(base / "raw-2026-10.csv", SECOND_PERIOD), runs_dir, "2026-10")
    with_context(runs_dir / second / "scores.csv", CONTEXT)
    return runs_dir, first, second


#: Salesforce context written into the 2026-10 run's scores.csv: owner, ARR, renewal date, days.
CONTEXT = {
    "001Sb0000000006IAA": ("Dana Scully", "120000", "2026-12-15", "45"),
    "001Sb0000000001IAA": ("Fox Mulder", "50000", "2027-06-01", "213"),
    "001Sb0000000004IAA": ("Dana Scully", "80000", "2026-12-14", "44"),
}


def with_context(path: Path, context: dict[str, tuple[str, str, str, str]]) -> None:
    """Fill the owner, arr, renewal_date and days_to_renewal cells of some accounts."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if row["account_id"] in context:
            cells = context[row["account_id"]]
            row.update(zip(("owner", "arr", "renewal_date", "days_to_renewal"), cells, strict=True))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def runs_dir(two_runs: tuple[Path, str, str]) -> Path:
    return two_runs[0]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASHBOARD_PASSWORD", raising=False)
    monkeypatch.delenv("HSM_RUNS_DIR", raising=False)


def app(runs: Path | str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("HSM_RUNS_DIR", str(runs))
    return AppTest.from_file(str(DASHBOARD), default_timeout=TIMEOUT)


def open_view(at: AppTest, view: str) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    at.sidebar.radio(key="view").set_value(view).run()
    assert not at.exception, at.exception
    return at


def scores_csv(runs_dir: Path, run_id: str) -> pd.DataFrame:
    return pd.read_csv(runs_dir / run_id / "scores.csv", dtype={"account_id": str})


def table(
    at: AppTest, *columns: str, index: str | None = None, exact: bool = False
) -> pd.DataFrame:
    """The first table shown whose columns start with (or, ``exact``, are) ``columns``, or
    whose index has the name ``index``."""
    for element in at.dataframe:
        frame = element.value
        if index is not None and frame.index.name == index:
            return frame
        shown = list(frame.columns) if exact else list(frame.columns[: len(columns)])
        if columns and shown == list(columns):
            return frame
    raise AssertionError(f"no table with columns {columns} / index {index!r}")


def texts(elements: Any) -> str:
    return " ".join(str(e.value) for e in elements)


# --------------------------------------------------------------------------------------------
# Every view


@pytest.mark.parametrize(
    "view",
    ["Portfolio", "Accounts", "Account drill-down", "Alerts", "What-if", "Trends", "Operations"],
)
def test_each_view_renders_from_a_fixture_run_without_exceptions(
    view: str, runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_view(app(runs_dir, monkeypatch), view)
    assert at.header[0].value == ("What-if: new weights" if view == "What-if" else view)
    assert not at.error


def test_the_dashboard_opens_on_the_latest_run(
    two_runs: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs_dir, _, latest = two_runs
    at = app(runs_dir, monkeypatch).run()
    assert at.title[0].value == "Customer health scores — 2026-10"
    assert at.sidebar.selectbox(key="run_id").value == latest


def test_the_runs_folder_can_be_given_as_a_script_argument(
    two_runs: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs_dir, _, _ = two_runs
    monkeypatch.setattr("sys.argv", ["dashboard.py", "--runs-dir", str(runs_dir)])
    at = AppTest.from_file(str(DASHBOARD), default_timeout=TIMEOUT).run()
    assert at.title[0].value == "Customer health scores — 2026-10"


def test_the_period_picker_switches_to_an_earlier_run(
    two_runs: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs_dir, first, _ = two_runs
    at = app(runs_dir, monkeypatch).run()
    at.sidebar.selectbox(key="run_id").set_value(first).run()
    assert at.title[0].value == "Customer health scores — 2026-09"


def test_portfolio_counts_each_tier_of_the_run(
    two_runs: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs_dir, _, latest = two_runs
    expected = scores_csv(runs_dir, latest)["health_tier"].value_counts().to_dict()
    at = app(runs_dir, monkeypatch).run()
    table = at.dataframe[0].value
    shown = {r.tier: r.accounts for r in table.itertuples() if r.accounts}
    assert shown == expected
    assert table["share_pct"].sum() == pytest.approx(100, abs=0.3)


def test_portfolio_filters_narrow_the_accounts(
    two_runs: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs_dir, _, latest = two_runs
    scores = scores_csv(runs_dir, latest)
    at = app(runs_dir, monkeypatch).run()
    at.sidebar.multiselect(key="f-seg").set_value(["paid"])
    at.sidebar.radio(key="f-cap").set_value("not capped").run()
    expected = scores[(scores["segment"] == "paid") & ~scores["qualitative_override"]]
    assert at.metric[0].value == str(len(expected))
    at.sidebar.multiselect(key="f-tier").set_value(["Critical"]).run()
    assert at.metric[0].value == str(int((expected["health_tier"] == "Critical").sum()))


def test_portfolio_shows_deltas_arr_by_tier_and_what_moved(
    two_runs: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs_dir, first, latest = two_runs
    at = app(runs_dir, monkeypatch).run()
    metrics = {m.label: m for m in at.metric}
    before = scores_csv(runs_dir, first)["final_score"].median()
    after = scores_csv(runs_dir, latest)["final_score"].median()
    assert metrics["Median score"].value == f"{after:.1f}"
    assert metrics["Median score"].proto.delta == f"{after - before:+.1f}"
    # #6 is newly capped (a critical signal) in 2026-10
    assert metrics["Capped by signals"].proto.delta == "+1"
    assert metrics["Accounts"].proto.delta == "+0"
    # ARR from the context written into 2026-10 only: no delta
    assert metrics["ARR"].value == "250,000"
    assert metrics["ARR"].proto.delta == ""
    arr = table(at, "tier", "accounts", "arr", "arr_share_pct").set_index("tier")
    assert arr["arr"].to_dict() == {
        "Champion": 0.0,
        "Healthy": 50000.0,
        "At Risk": 120000.0,
        "Critical": 80000.0,
        "Insufficient Data": 0.0,
    }
    assert arr.loc["At Risk", "arr_share_pct"] == 48.0
    movers = table(at, "what", "dimension", "accounts down", "accounts up", "points")
    # changes.csv: the cap −21.9473 (#6); active users −2.9437 (#1) and −3.5250 (#2)
    assert movers.iloc[0].tolist() == ["Qualitative cap", "", 1, 0, -21.9]
    assert movers.iloc[1].tolist() == ["Active users", "adoption_engagement", 2, 0, -6.5]
    assert "0 account(s) scored for the first time; 0 lost their score." in texts(at.markdown)


# --------------------------------------------------------------------------------------------
# Accounts


def test_the_accounts_table_shows_change_since_the_previous_period(
    two_runs: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs_dir, first, latest = two_runs
    before = scores_csv(runs_dir, first).set_index("account_id")["final_score"]
    after = scores_csv(runs_dir, latest).set_index("account_id")["final_score"]
    at = open_view(app(runs_dir, monkeypatch), "Accounts")
    shown = pd.concat([at.dataframe[0].value, at.dataframe[1].value]).set_index("Account ID")
    assert len(shown) == len(after)
    for account_id in SECOND_PERIOD:
        change = round(after[account_id] - before[account_id], 1)
        assert shown.loc[account_id, "Change"] == pytest.approx(change)
    assert shown.loc["001Sb0000000006IAA", "Previous tier"] == "🔵 Healthy"
    assert shown.loc["001Sb0000000006IAA", "Tier"] == "🟠 At Risk"


def test_the_worklist_puts_worsened_tiers_and_drops_first_and_insufficient_data_apart(
    runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_view(app(runs_dir, monkeypatch), "Accounts")
    worklist = at.dataframe[0].value
    assert list(worklist.columns) == [
        "Account",
        "Owner",
        "Tier",
        "Score",
        "Change",
        "Previous tier",
        "ARR",
        "Renewal",
        "Days to renewal",
        "Coverage %",
        "Capped by",
        "Segment",
        "Account ID",
    ]
    # #6 Healthy → At Risk (−21.9) and #1 Champion → Healthy (−6.5) worsened; #2 dropped 6.2
    # within Healthy; then the lowest scores: #14 23.0 (it rose 4.8: a rise is no drop), #4 29.3.
    assert worklist["Account"].head(5).tolist() == [
        "Cyberdyne Hotels #6",
        "Aperture Retail #1",
        "Tyrell Logistics #2",
        "Tyrell Foods #14",
        "Gringotts Travel #4",
    ]
    assert "⚪ Insufficient Data" not in set(worklist["Tier"])
    apart = at.dataframe[1].value
    assert apart["Account"].tolist() == ["Nakatomi Hotels #13"]
    assert at.subheader[0].value == "Insufficient Data (1)"
    assert at.get("download_button")[0].proto.label == "Download CSV"


def test_worklist_filters_owner_tier_worsened_and_renewal_window(
    runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_view(app(runs_dir, monkeypatch), "Accounts")
    at.multiselect(key="f-owner").set_value(["Dana Scully"]).run()
    assert at.dataframe[0].value["Account"].tolist() == [
        "Cyberdyne Hotels #6",
        "Gringotts Travel #4",
    ]
    first = at.dataframe[0].value.iloc[0]
    assert (first["Owner"], first["ARR"], first["Renewal"], first["Days to renewal"]) == (
        "Dana Scully",
        120000.0,
        "2026-12-15",
        45.0,
    )
    at.multiselect(key="f-owner").set_value([]).run()
    at.toggle(key="f-worsened").set_value(True).run()
    assert at.dataframe[0].value["Account"].tolist() == [
        "Cyberdyne Hotels #6",
        "Aperture Retail #1",
    ]
    at.toggle(key="f-worsened").set_value(False).run()
    at.number_input(key="f-renewal").set_value(44).run()
    assert at.dataframe[0].value["Account"].tolist() == ["Gringotts Travel #4"]
    at.number_input(key="f-renewal").set_value(0)
    at.toggle(key="f-new-critical").set_value(True).run()  # nobody became Critical
    assert at.dataframe[0].value.empty


def test_searching_the_accounts_table(runs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_view(app(runs_dir, monkeypatch), "Accounts")
    at.text_input(key="account-search").input("tyrell").run()
    names = at.dataframe[0].value["Account"].tolist()
    assert names and all("Tyrell" in n for n in names)


def test_clicking_a_worklist_row_opens_its_drilldown(
    runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_view(app(runs_dir, monkeypatch), "Accounts")
    assert at.session_state["worklist-ids"][0] == "001Sb0000000006IAA"
    at.session_state["open_account"] = "001Sb0000000006IAA"  # what the row click's callback sets
    at.run()
    assert at.sidebar.radio(key="view").value == "Account drill-down"
    assert at.selectbox(key="account").value == "001Sb0000000006IAA"
    assert at.header[0].value == "Account drill-down"


# --------------------------------------------------------------------------------------------
# Drill-down


@pytest.mark.parametrize(
    "account_id",
    [
        "001Sb0000000002IAA",  # no cap
        "001Sb0000000009IAA",  # capped: two critical signals
        "001Sb0000000004IAA",  # relationship metrics missing
    ],
)
def test_selecting_an_account_shows_its_metrics_and_their_points_sum_to_its_score(
    account_id: str, two_runs: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs_dir, _, latest = two_runs
    score = scores_csv(runs_dir, latest).set_index("account_id").loc[account_id]
    detail = pd.read_csv(io.StringIO(metric_csv(runs_dir / latest)), dtype={"account_id": str})
    detail = detail[detail["account_id"] == account_id]
    at = open_view(app(runs_dir, monkeypatch), "Account drill-down")
    at.selectbox(key="account").set_value(account_id).run()
    assert not at.exception, at.exception

    metrics = table(
        at, "metric", "dimension", "value", "green / red", "score", "weight %", "points", exact=True
    )
    assert metrics["dimension"].tolist() == detail["dimension"].tolist()
    assert len(metrics) == len(detail)
    assert metrics["points"].sum() == pytest.approx(score["quantitative_score"], abs=0.05)
    parts = table(at, "part", "dimension", "points")
    assert parts["points"].sum() == pytest.approx(score["final_score"], abs=0.05)
    assert at.metric[0].value == f"{score['final_score']:.1f}"
    if score["qualitative_override"]:  # the cap lowered the score
        assert any(p.startswith("qualitative cap") for p in parts["part"])
        assert parts["points"].sum() == pytest.approx(score["cap_value"], abs=1e-9)
    missing = detail[detail["status"] != "scored"]["metric"].tolist()
    if missing:
        assert table(at, "dimension", "metric", "status", exact=True)["metric"].tolist() == missing


def test_the_drilldown_says_what_changed_in_plain_words(
    runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_view(app(runs_dir, monkeypatch), "Account drill-down")
    at.selectbox(key="account").set_value("001Sb0000000001IAA").run()
    shown = texts(at.markdown)
    assert "Score 93.5 → 87.0 (-6.5) since the previous period; tier Champion → Healthy." in shown
    # changes.csv: feature_breadth_pct 48.3 → 10 (−3.5906 points), active_user_pct 51.4 → 12
    # (−2.9437), labels and units from thresholds.yaml.
    assert (
        "- **Product modules in use**: 48.3% → 10%, -3.6 points\n"
        "- **Active users**: 51.4% → 12%, -2.9 points"
    ) in shown
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Owner"] == "Fox Mulder"
    assert metrics["ARR"] == "50,000"
    assert metrics["Renewal"] == "2027-06-01"
    assert metrics["Tier"] == "🔵 Healthy"

    at.selectbox(key="account").set_value("001Sb0000000006IAA").run()
    shown = texts(at.markdown)
    assert "Score 86.9 → 65.0 (-21.9) since the previous period; tier Healthy → At Risk." in shown
    assert "- **Qualitative cap**: -21.9 points" in shown


def test_the_drilldown_names_the_metrics_costing_the_most_points(
    two_runs: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs_dir, _, latest = two_runs
    detail = pd.read_csv(io.StringIO(metric_csv(runs_dir / latest)), dtype={"account_id": str})
    detail = detail[(detail["account_id"] == "001Sb0000000001IAA") & (detail["status"] == "scored")]
    cost = detail["effective_weight"] * (100 - detail["normalised_score"])
    top = detail.loc[cost.sort_values(ascending=False).index[:5], "metric"].tolist()
    at = open_view(app(runs_dir, monkeypatch), "Account drill-down")
    at.selectbox(key="account").set_value("001Sb0000000001IAA").run()
    bullets = next(m.value for m in at.markdown if "costs" in str(m.value)).split("\n")
    assert len(bullets) == 5
    labels = {
        "active_user_pct": "Active users",
        "feature_breadth_pct": "Product modules in use",
    }
    # active users at 12 % and modules at 10 % score 0 in this run: both are among the top 5
    assert {"active_user_pct", "feature_breadth_pct"} <= set(top)
    for label in labels.values():
        line = next(b for b in bullets if f"**{label}**" in b)
        assert "(Adoption & Engagement)" in line
        assert "scores 0/100" in line
    assert any("**Active users** (Adoption & Engagement): 12%, scores 0/100" in b for b in bullets)


def test_the_drilldown_shows_the_account_history_across_runs(
    runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_view(app(runs_dir, monkeypatch), "Account drill-down")
    at.selectbox(key="account").set_value("001Sb0000000006IAA").run()
    history = table(at, "period", "run_id")
    assert history["period"].tolist() == ["2026-09", "2026-10"]
    assert history["health_tier"].tolist() == ["Healthy", "At Risk"]
    assert (
        "Rule **critical_1** matched: 1+ Critical signal (any confidence) → cap at 65, "
        "which lowered the score."
    ) in texts(at.markdown)


# --------------------------------------------------------------------------------------------
# Alerts


def test_the_alerts_view_lists_this_runs_alerts_and_their_delivery(
    runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_view(app(runs_dir, monkeypatch), "Alerts")
    assert at.header[0].value == "Alerts"
    alerts = table(at, "rule", "account", "alert", "reason", "drivers")
    six = alerts[alerts["account_id"] == "001Sb0000000006IAA"]
    assert six["rule"].tolist() == ["tier_worsened", "score_drop_10"]
    assert six["reason"].tolist() == ["tier Healthy → At Risk", "final score 86.9 → 65.0 (−21.9)"]
    assert six["drivers"].tolist() == ["cap -21.9473 pts", "cap -21.9473 pts"]
    one = alerts[alerts["account_id"] == "001Sb0000000001IAA"].iloc[0]
    assert one["drivers"] == (
        "adoption_engagement.feature_breadth_pct -3.5906 pts (48.3 → 10); "
        "adoption_engagement.active_user_pct -2.9437 pts (51.4 → 12)"
    )
    caption = texts(at.caption)
    assert "Delivery: Salesforce: skipped (dry run); Slack: skipped (dry run)." in caption
    assert f"{len(alerts)} alert(s)" in caption


def test_a_run_without_alerts_says_so(
    two_runs: tuple[Path, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs_dir, _, latest = two_runs
    folder = copy_run(runs_dir / latest, tmp_path / "runs", latest)
    (folder / "alerts.csv").unlink()
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.pop("alerts", None)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    at = open_view(app(tmp_path / "runs", monkeypatch), "Alerts")
    assert "This run has no alerts" in at.info[0].value


# --------------------------------------------------------------------------------------------
# Operations


def test_operations_shows_which_credentials_are_set_and_each_sources_status(
    two_runs: tuple[Path, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs_dir, _, latest = two_runs
    folder = copy_run(runs_dir / latest, tmp_path / "runs", latest)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["sources"] = {
        "jira": {"status": "ok", "accounts_with_data": 20, "requests": 3, "seconds": 1.5},
        "looker": {"status": "failed", "error": "HTTP 503 from looker", "notes": ["retried 3x"]},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest))
    for name in ("INTERCOM_API_TOKEN", "JIRA_EMAIL", "LOOKER_CLIENT_ID", "LOOKER_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JIRA_BASE_URL", "https://example.atlassian.net")
    monkeypatch.setenv("JIRA_EMAIL", "ops@example.com")
    monkeypatch.setenv("JIRA_API_TOKEN", "a-secret-token-value")
    at = open_view(app(tmp_path / "runs", monkeypatch), "Operations")
    credentials = table(at, "source", "credentials", "to set").set_index("source")
    assert credentials.loc["jira", "credentials"] == "set"
    assert credentials.loc["intercom"].tolist() == ["missing", "INTERCOM_API_TOKEN"]
    assert "a-secret-token-value" not in str(credentials.to_dict())
    sources = table(at, "source", "status").set_index("source")
    assert sources.loc["jira", ["status", "accounts with data", "requests"]].tolist() == [
        "ok",
        20,
        3,
    ]
    assert sources.loc["looker", ["status", "error", "notes"]].tolist() == [
        "failed",
        "HTTP 503 from looker",
        "retried 3x",
    ]
    assert "Salesforce write-back: skipped (dry run)." in texts(at.markdown)


# --------------------------------------------------------------------------------------------
# What-if


def migration_from_direct_scoring(run_folder: Path, churn: dict[str, Decimal]) -> pd.DataFrame:
    config = load_scoring_config(run_folder / "config")
    accounts = read_raw(run_folder / "raw.csv", config).accounts
    before = score_outcomes(accounts, config)
    after = score_outcomes(accounts, config.with_weights(churn_risk_weights=churn))
    return pd.crosstab(
        pd.Series([o[2] for o in before], name="from"), pd.Series([o[2] for o in after], name="to")
    )


def test_moving_a_weight_gives_the_migration_that_direct_scoring_gives(
    two_runs: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs_dir, _, latest = two_runs
    at = open_view(app(runs_dir, monkeypatch), "What-if")
    unchanged = table(at, index="from \\ to")
    assert int(unchanged.to_numpy().trace()) == int(unchanged.to_numpy().sum()) == 25
    assert at.metric[0].value == "0"

    at.slider(key="w|churn_risk|relationship_expansion").set_value(0.9).run()
    assert not at.exception, at.exception
    used = table(at, "group", "weight", "run", "used")
    churn_used = used[used["group"] == "churn_risk"]
    assert churn_used["used"].sum() == pytest.approx(1.0, abs=1e-12)
    churn = {r.weight: Decimal(repr(r.used)) for r in churn_used.itertuples()}
    # 0.3, 0.3, 0.25, 0.9 over their total 1.75, to four places, summing to exactly 1
    assert churn == {
        "support_health": Decimal("0.1714"),
        "financial_contract": Decimal("0.1714"),
        "adoption_engagement": Decimal("0.1429"),
        "relationship_expansion": Decimal("0.5143"),
    }
    # each slider says the weight used under it
    assert "used: 0.5143" in texts(at.caption)
    assert "used: 0.1429" in texts(at.caption)

    expected = migration_from_direct_scoring(runs_dir / latest, churn)
    matrix = table(at, index="from \\ to")
    for tier_from in matrix.index:
        for tier_to in matrix.columns:
            want = (
                int(expected.loc[tier_from, tier_to])
                if tier_from in expected.index and tier_to in expected.columns
                else 0
            )
            assert matrix.loc[tier_from, tier_to] == want, (tier_from, tier_to)
    off_diagonal = sum(
        int(expected.loc[f, t]) for f in expected.index for t in expected.columns if f != t
    )
    assert off_diagonal > 0  # the change is big enough to move someone
    assert at.metric[0].value == str(off_diagonal)
    assert len(table(at, "account_id", "account_name", "score_before")) == off_diagonal


def test_the_streamlit_config_turns_the_file_watcher_off() -> None:
    settings = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert settings["server"]["fileWatcherType"] == "none"


def test_a_group_set_to_all_zero_is_refused_and_keeps_the_runs_weights(
    runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_view(app(runs_dir, monkeypatch), "What-if")
    at.slider(key="w|health_score|churn_risk_weight").set_value(0.0)
    at.slider(key="w|health_score|platform_value_weight").set_value(0.0).run()
    assert "at least one weight in the group must be above 0" in texts(at.error)
    assert at.metric[0].value == "0"


def test_resetting_restores_the_runs_weights(
    runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_view(app(runs_dir, monkeypatch), "What-if")
    at.slider(key="w|churn_risk|relationship_expansion").set_value(0.9).run()
    assert at.metric[0].value != "0"
    at.button(key="reset-weights").click().run()
    assert at.slider(key="w|churn_risk|relationship_expansion").value == pytest.approx(0.15)
    assert at.metric[0].value == "0"


# --------------------------------------------------------------------------------------------
# Trends


def test_trends_show_the_tier_mix_per_period_and_what_moved_the_movers(
    two_runs: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs_dir, first, latest = two_runs
    at = open_view(app(runs_dir, monkeypatch), "Trends")
    mix = table(at, index="period")
    assert list(mix.index) == ["2026-09", "2026-10"]
    for run_id, period in ((first, "2026-09"), (latest, "2026-10")):
        counts = scores_csv(runs_dir, run_id)["health_tier"].value_counts()
        assert mix.loc[period].to_dict() == {t: int(counts.get(t, 0)) for t in mix.columns}

    movers = table(at, "account_id", "account_name", "score_before", "score_after").set_index(
        "account_id"
    )
    assert set(SECOND_PERIOD) <= set(movers.index[: len(SECOND_PERIOD)])
    parts = [c for c in movers.columns if c.startswith("Δ ")]
    for account_id, row in movers.iterrows():
        assert sum(row[p] for p in parts) == pytest.approx(row["change"], abs=0.4), account_id
    assert "cap" in movers.loc["001Sb0000000006IAA", "moved_by"]
    assert "adoption_engagement" in movers.loc["001Sb0000000001IAA", "moved_by"]


# --------------------------------------------------------------------------------------------
# Fresh machine, partial and corrupt runs


def test_a_fresh_machine_shows_the_demo_offer_not_a_stack_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app(tmp_path / "no-runs-yet", monkeypatch).run()
    assert not at.exception
    assert "No runs yet" in texts(at.info)
    assert at.button(key="run-demo").label == "Run the demo"


def test_the_demo_button_makes_a_first_run_and_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HSM_DEMO_ACCOUNTS", "12")
    runs = tmp_path / "output" / "runs"
    at = app(runs, monkeypatch).run()
    at.button(key="run-demo").click().run(timeout=180)
    assert not at.exception, at.exception
    manifests = list(runs.glob(f"*/{MANIFEST}"))
    assert len(manifests) == 1
    period = json.loads(manifests[0].read_text())["period"]
    assert at.title[0].value == f"Customer health scores — {period}"
    assert at.header[0].value == "Portfolio"


def copy_run(source: Path, target_root: Path, name: str) -> Path:
    target = target_root / name
    shutil.copytree(source, target)
    return target


def test_a_partial_run_folder_is_skipped_with_a_clear_message(
    two_runs: tuple[Path, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs_dir, first, _ = two_runs
    runs = tmp_path / "runs"
    copy_run(runs_dir / first, runs, first)
    partial = copy_run(runs_dir / first, runs, "2026-12_20261201T060000Z_aaaaaa")
    (partial / MANIFEST).unlink()
    at = app(runs, monkeypatch).run()
    assert not at.exception
    assert at.title[0].value == "Customer health scores — 2026-09"
    assert "2026-12_20261201T060000Z_aaaaaa is incomplete: it has no manifest.json" in texts(
        at.text
    )


def test_a_run_written_before_cap_value_shows_its_caps(
    two_runs: tuple[Path, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Older runs held the cap in qualitative_override and true/false in modifier_applied."""
    runs_dir, first, latest = two_runs
    runs = tmp_path / "runs"
    copy_run(runs_dir / first, runs, first)
    old = copy_run(runs_dir / latest, runs, latest)
    rewrite_as_old_scores(old / "scores.csv")
    capped = "001Sb0000000006IAA"  # critical signal in the second period: capped at 65
    at = open_view(app(runs, monkeypatch), "Accounts")
    shown = at.dataframe[0].value.set_index("Account ID")
    assert shown.loc[capped, "Capped by"] == "critical_1 (65)"
    assert shown.loc["001Sb0000000001IAA", "Capped by"] == ""
    at.sidebar.radio(key="view").set_value("Account drill-down").run()
    at.selectbox(key="account").set_value(capped).run()
    assert not at.exception, at.exception
    parts = table(at, "part", "dimension", "points")
    assert parts["points"].sum() == pytest.approx(65.0, abs=1e-9)
    assert "Rule **critical_1** matched: cap 65, which lowered the score." in texts(at.markdown)


def with_status(folder: Path, status: str, message: str) -> Path:
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    manifest.update(status=status, messages=[message], period=folder.name[:7])
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def test_it_opens_on_the_latest_ok_run_and_lists_failed_runs_apart(
    two_runs: tuple[Path, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs_dir, first, latest = two_runs  # 2026-09 and 2026-10, both ok
    runs = tmp_path / "runs"
    copy_run(runs_dir / first, runs, first)
    copy_run(runs_dir / latest, runs, latest)
    newer = "2026-10_20261101T060000Z_dddddd"  # a later re-run of 2026-10 that degraded
    with_status(copy_run(runs_dir / latest, runs, newer), "degraded", "jira: connection refused")
    broken = "2026-11_20261201T060000Z_ffffff"  # next month's run, failed
    with_status(copy_run(runs_dir / latest, runs, broken), "failed", "every source *failed*")
    at = app(runs, monkeypatch).run()
    assert not at.exception
    assert at.sidebar.selectbox(key="run_id").value == latest  # not the degraded re-run
    options = at.sidebar.selectbox(key="run_id").options
    assert not [o for o in options if broken in o]  # failed runs are not offered…
    assert any(newer in o for o in options)  # …degraded ones are, with a warning when chosen
    # …but listed apart, their messages as plain text (the asterisks stay asterisks).
    assert f"2026-11 · failed · {broken}: every source *failed*" in texts(at.text)
    at.sidebar.radio(key="view").set_value("Trends").run()
    assert not at.exception
    # Trends plots the latest ok run per period: the failed month is not a bar.
    assert table(at, index="period").index.tolist() == ["2026-09", "2026-10"]
    at.sidebar.selectbox(key="run_id").set_value(newer).run()
    assert "This run is degraded; its messages:" in texts(at.warning)
    assert "jira: connection refused" in texts(at.text)


def test_only_partial_runs_give_a_clear_message_and_the_demo_offer(
    two_runs: tuple[Path, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs_dir, first, _ = two_runs
    partial = copy_run(runs_dir / first, tmp_path / "runs", "2026-12_20261201T060000Z_bbbbbb")
    (partial / MANIFEST).unlink()
    at = app(tmp_path / "runs", monkeypatch).run()
    assert not at.exception
    assert "can be shown" in texts(at.error)
    assert "is incomplete" in texts(at.text)
    assert at.button(key="run-demo")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda folder: (folder / "scores.csv").unlink(),
            "is missing scores.csv; the folder is damaged",
        ),
        (
            lambda folder: (folder / "scores.csv").write_text(
                (folder / "scores.csv").read_text().replace(",93.5,", ",**ninety**,", 1)
            ),
            # Plain text: the asterisks stay asterisks.
            "scores.csv line 2, column quantitative_score: expected a number, got '**ninety**'",
        ),
        (
            lambda folder: (folder / "scores.csv").write_bytes(b"\xff\xfe\x00garbage"),
            "scores.csv",
        ),
    ],
    ids=["missing-scores", "bad-number", "not-text"],
)
def test_a_corrupt_run_folder_gives_a_clear_message(
    damage: Any,
    message: str,
    two_runs: tuple[Path, str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs_dir, first, _ = two_runs
    runs = tmp_path / f"runs-{uuid.uuid4().hex[:8]}"
    damage(copy_run(runs_dir / first, runs, first))
    at = app(runs, monkeypatch).run()
    assert not at.exception, at.exception
    assert "This run cannot be shown:" in texts(at.error)
    assert message in texts(at.text)  # file text is shown as plain text, never as Markdown


def test_a_manifest_that_is_not_json_is_named_in_the_message(
    two_runs: tuple[Path, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs_dir, first, latest = two_runs
    runs = tmp_path / "runs"
    copy_run(runs_dir / first, runs, first)
    broken = copy_run(runs_dir / latest, runs, latest)
    (broken / MANIFEST).write_text('{"period": "2026-10", ')
    at = app(runs, monkeypatch).run()
    assert not at.exception
    assert at.title[0].value == "Customer health scores — 2026-09"
    assert f"run {latest}: manifest.json is not valid JSON" in texts(at.text)


# --------------------------------------------------------------------------------------------
# Password gate


def test_with_a_password_set_nothing_is_shown_before_signing_in(
    runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHBOARD_PASSWORD", "correct horse")
    at = app(runs_dir, monkeypatch).run()
    assert not at.dataframe and not at.header
    at.text_input[0].input("wrong")
    at.button[0].click().run()
    assert "Wrong password." in texts(at.error)
    assert not at.dataframe
    at.text_input[0].input("correct horse")
    at.button[0].click().run()
    assert not at.exception
    assert at.header[0].value == "Portfolio"


def test_the_password_can_come_from_streamlit_secrets(
    runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app(runs_dir, monkeypatch)
    at.secrets["DASHBOARD_PASSWORD"] = "from-secrets"
    at.run()
    assert not at.header
    at.text_input[0].input("from-secrets")
    at.button[0].click().run()
    assert at.header[0].value == "Portfolio"


def test_the_password_can_come_from_a_dot_env_in_the_working_folder(
    runs_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / "here"
    folder.mkdir()
    (folder / ".env").write_text("DASHBOARD_PASSWORD=from-dotenv\n", encoding="utf-8")
    monkeypatch.chdir(folder)
    # Unset now, and restored to unset afterwards (the .env sets os.environ itself).
    monkeypatch.setenv("DASHBOARD_PASSWORD", "placeholder")
    monkeypatch.delenv("DASHBOARD_PASSWORD")
    at = app(runs_dir, monkeypatch).run()
    assert not at.header
    at.text_input[0].input("from-dotenv")
    at.button[0].click().run()
    assert at.header[0].value == "Portfolio"


def test_without_a_password_the_dashboard_opens_directly(
    runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app(runs_dir, monkeypatch).run()
    assert not at.text_input
    assert at.header[0].value == "Portfolio"


# --------------------------------------------------------------------------------------------
# S3


@pytest.fixture
def s3_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Two runs written by the pipeline under an S3 prefix (moto's in-process S3)."""
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    bucket = f"hsm-dash-{uuid.uuid4().hex[:10]}"  # each test its own: readers are cached
    with mock_aws():
        boto3.client("s3").create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        url = f"s3://{bucket}/health/runs"
        for period, raw in (
            ("2026-09", EXAMPLE),
            ("2026-10", edited_raw(tmp_path / "raw.csv", SECOND_PERIOD)),
        ):
            summary = run(
                RunOptions(
                    config_dir=REPO / "config",
                    from_raw=raw,
                    period=period,
                    runs_dir=url,
                    output=tmp_path / f"scores-{period}.csv",
                )
            )
            assert summary.run_id is not None, summary.messages
        yield url


def test_runs_under_an_s3_prefix_are_listed_and_shown(
    s3_runs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = app(s3_runs, monkeypatch).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Customer health scores — 2026-10"
    for view in ("Account drill-down", "What-if", "Trends"):
        at.sidebar.radio(key="view").set_value(view).run()
        assert not at.exception, (view, at.exception)
        assert not at.error, view
    at.sidebar.radio(key="view").set_value("What-if").run()
    at.slider(key="w|churn_risk|relationship_expansion").set_value(0.9).run()
    assert int(at.metric[0].value) > 0


def test_an_s3_run_without_a_manifest_is_reported_as_incomplete(
    s3_runs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    bucket, _, prefix = s3_runs.removeprefix("s3://").partition("/")
    client = boto3.client("s3")
    client.put_object(Bucket=bucket, Key=f"{prefix}/2026-12_x/scores.csv", Body=b"account_id\n")
    at = app(s3_runs, monkeypatch).run()
    assert not at.exception
    assert at.title[0].value == "Customer health scores — 2026-10"
    assert "2026-12_x is incomplete" in texts(at.text)
