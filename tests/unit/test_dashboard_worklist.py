"""The worklist's order and filters, and the drill-down's words, on hand-built frames."""

from __future__ import annotations

import pandas as pd

from health_score.dashboard import frames

ORDER = ["Champion", "Healthy", "At Risk", "Critical", "Insufficient Data"]
HEAD = "account_id,account_name,segment,final_score,health_tier,coverage_pct,owner,arr,"
SCORES = (
    f"{HEAD}renewal_date,days_to_renewal,qualitative_override,cap_value,cap_rule\n"
    "A,Alpha,paid,70.0,At Risk,100,Ann,10000,2026-12-01,30,false,,\n"
    "B,Beta,paid,40.0,Critical,100,Bob,90000,2027-03-01,120,false,,\n"
    "C,Gamma,paid,45.0,Critical,100,Ann,20000,,,false,,\n"
    "D,Delta,paid,95.0,Champion,100,Bob,5000,2026-11-15,14,false,,\n"
    "E,Epsilon,paid,100.0,Insufficient Data,20,Ann,70000,,,false,,\n"
    "F,Phi,paid,45.0,Critical,100,,60000,,,true,45,critical_2plus\n"
)
PREVIOUS = (
    f"{HEAD}renewal_date,days_to_renewal\n"
    "A,Alpha,paid,85.0,Healthy,100,Ann,10000,2026-12-01,60\n"
    "B,Beta,paid,42.0,Critical,100,Bob,90000,2027-03-01,150\n"
    "C,Gamma,paid,61.0,At Risk,100,Ann,20000,,\n"
    "D,Delta,paid,90.0,Champion,100,Bob,5000,2026-11-15,44\n"
    "E,Epsilon,paid,100.0,Insufficient Data,20,Ann,70000,,\n"
)


def scores() -> pd.DataFrame:
    now = frames.parse_scores("r2", SCORES.encode())
    before = frames.parse_scores("r1", PREVIOUS.encode())
    return frames.with_change(now, before)


def test_attention_order_worsened_first_then_biggest_drop_then_lowest_score_then_arr() -> None:
    table, apart = frames.worklist(scores(), ORDER)
    # A (Healthy → At Risk, −15) and C (At Risk → Critical, −16) worsened: the bigger drop
    # first; then B (−2); then F (new, 45, ARR 60000) before D (a rise is no drop, 95).
    assert table["Account ID"].tolist() == ["C", "A", "B", "F", "D"]
    assert apart["Account ID"].tolist() == ["E"]
    assert table["Tier"].tolist()[:2] == ["🔴 Critical", "🟠 At Risk"]
    assert table["Previous tier"].tolist() == [
        "🟠 At Risk",
        "🔵 Healthy",
        "🔴 Critical",
        "",
        "🟢 Champion",
    ]
    assert table.set_index("Account ID").loc["F", "Capped by"] == "critical_2plus (45)"


def test_filters_owner_worsened_new_critical_and_renewal_window() -> None:
    frame = scores()

    def ids(**given: object) -> list[str]:
        found = frames.filter_worklist(frame, ORDER, **given)  # type: ignore[arg-type]
        return sorted(found["account_id"])

    assert ids(owners=["Ann"]) == ["A", "C", "E"]
    assert ids(worsened=True) == ["A", "C"]
    # C fell into Critical; F has no previous score and is Critical: both are new Critical.
    assert ids(newly_critical=True) == ["C", "F"]
    assert ids(renewal_within=30) == ["A", "D"]
    assert ids(renewal_within=13) == []
    assert ids(owners=["Bob"], renewal_within=200) == ["B", "D"]


def test_labels_and_units_come_from_description_and_unit() -> None:
    thresholds = {
        "tiers": {"champion": {"min": 90, "max": 100}},
        "support_health": {
            "reopen_rate_pct": {"lower_is_better": True, "description": "Reopened", "unit": "%"},
            "open_bugs_total": {"lower_is_better": True},
        },
    }
    labels = frames.metric_labels(thresholds)
    assert labels == {
        ("support_health", "reopen_rate_pct"): ("Reopened", "%"),
        ("support_health", "open_bugs_total"): ("Open bugs total", ""),
    }
    assert frames.with_unit(12.5, "%") == "12.5%"
    assert frames.with_unit("48.3", "days") == "48.3 days"
    assert frames.with_unit(float("nan"), "days") == "—"
    assert frames.with_unit(1.0, "flag") == "1"
    assert frames.with_unit("55.1939", "h") == "55.2 h"
    assert frames.with_unit(480.967, "min") == "481 min"
    assert frames.with_unit(0.004, "%") == "0%"


def test_costs_rank_weight_times_the_points_short_of_100() -> None:
    rows = pd.DataFrame(
        {
            "dimension": ["d", "d", "d", "d"],
            "metric": ["a", "b", "c", "e"],
            "status": ["scored", "scored", "scored", "missing"],
            "raw_value": [1.0, 2.0, 3.0, float("nan")],
            "normalised_score": [0.0, 50.0, 100.0, float("nan")],
            "effective_weight": [0.02, 0.10, 0.30, 0.0],
        }
    )
    labels = {("d", "a"): ("Alpha", "%"), ("d", "b"): ("Beta", "days")}
    cost = frames.costs(rows, labels)
    # a: 0.02 × 100 = 2.0; b: 0.10 × 50 = 5.0; c costs nothing; e has no data.
    assert cost[["metric", "value", "costs_points"]].values.tolist() == [
        ["Beta", "2 days", 5.0],
        ["Alpha", "1%", 2.0],
    ]


def test_account_changes_are_the_biggest_parts_with_raw_before_and_after() -> None:
    text = (
        "account_id,account_name,previous_final,final,change,previous_tier,tier,part,dimension,"
        "raw_before,raw_after,points_change\n"
        "A,Alpha,85.0,70.0,-15.0,Healthy,At Risk,x_pct,d,50,20,-3.2000\n"
        "A,Alpha,85.0,70.0,-15.0,Healthy,At Risk,cap,,,,-12.0000\n"
        "A,Alpha,85.0,70.0,-15.0,Healthy,At Risk,y,d,1,2,0.0200\n"
        "A,Alpha,85.0,70.0,-15.0,Healthy,At Risk,rounding,,,,0.2000\n"
        "B,Beta,42.0,40.0,-2.0,Critical,Critical,y,d,3,4,-2.0000\n"
    )
    changes = frames.parse_changes("r2", text.encode())
    moved = frames.account_changes(changes, "A", {("d", "x_pct"): ("Exes", "%")})
    assert moved[["what", "before", "after", "points"]].values.tolist() == [
        ["Qualitative cap", "—", "—", -12.0],
        ["Exes", "50%", "20%", -3.2],
    ]


def test_portfolio_movers_and_appeared_and_lost_accounts() -> None:
    text = (
        "account_id,account_name,previous_final,final,change,previous_tier,tier,part,dimension,"
        "raw_before,raw_after,points_change\n"
        "A,Alpha,85.0,70.0,-15.0,Healthy,At Risk,x_pct,d,50,20,-3.2000\n"
        "B,Beta,42.0,43.0,1.0,Critical,Critical,x_pct,d,10,12,1.0000\n"
        "C,Gamma,40.0,38.0,-2.0,Critical,Critical,x_pct,d,10,5,-2.0000\n"
        "C,Gamma,40.0,38.0,-2.0,Critical,Critical,rounding,,,,0.0100\n"
        "N,New,,60.0,,,At Risk,appeared,,,,60.0000\n"
        "L,Lost,50.0,,,Critical,Insufficient Data,lost_score,,,,-50.0000\n"
    )
    changes = frames.parse_changes("r2", text.encode())
    movers = frames.metric_movers(changes, {("d", "x_pct"): ("Exes", "%")})
    assert movers.values.tolist() == [["Exes", "d", 2, 1, -4.2]]
    appeared, lost = frames.appeared_and_lost(changes)
    assert appeared["account_id"].tolist() == ["N"]
    assert lost["account_id"].tolist() == ["L"]
    shown = frames.arr_by_tier(frames.parse_scores("r", SCORES.encode()), ORDER)
    assert shown["arr"].tolist() == [5000.0, 0.0, 10000.0, 170000.0, 70000.0]
