"""Alert rules: when each kind fires (views built by hand), alerts.csv cells and config errors."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import pytest

from health_score.alerts.evaluation import Driver, account_views, build_alerts, top_drivers
from health_score.alerts.reader import parse_alerts_csv
from health_score.alerts.rules import AccountView, AlertsConfig, Rule, fires, load_alerts
from health_score.config import ConfigError
from health_score.loaders.alerts_output import alerts_csv

LABELS = ("Champion", "Healthy", "At Risk", "Critical", "Insufficient Data")
FLOOR = Decimal(50)


def view(**changes: object) -> AccountView:
    base: dict[str, object] = {
        "account_id": "001A",
        "account_name": "Acme",
        "tier": "Healthy",
        "final": Decimal("80.0"),
        "coverage_pct": Decimal("90.0"),
        "critical_confirmed": 0,
        "previous_tier": "Healthy",
        "previous_final": Decimal("82.0"),
        "previous_coverage_pct": Decimal("90.0"),
    }
    base.update(changes)
    return AccountView(**base)  # type: ignore[arg-type]


def rule(kind: str, **params: object) -> Rule:
    return Rule.model_validate({"id": kind, "kind": kind, **params})


@pytest.mark.parametrize(
    ("tier", "previous", "expected"),
    [
        ("At Risk", "Healthy", "tier Healthy → At Risk"),
        ("Critical", "Champion", "tier Champion → Critical"),
        ("Healthy", "At Risk", None),  # improved
        ("Healthy", "Healthy", None),
        ("Insufficient Data", "Healthy", None),  # no comparison
        ("Critical", "Insufficient Data", None),
        ("Critical", None, None),  # new account
    ],
)
def test_tier_worsened(tier: str, previous: str | None, expected: str | None) -> None:
    got = fires(rule("tier_worsened"), view(tier=tier, previous_tier=previous), LABELS, FLOOR)
    assert got == expected


def test_score_dropped_fires_at_exactly_the_threshold() -> None:
    r = rule("score_dropped", points=10)
    assert fires(r, view(final=Decimal("70.0"), previous_final=Decimal("80.0")), LABELS, FLOOR) == (
        "final score 80.0 → 70.0 (−10.0)"
    )
    assert (
        fires(r, view(final=Decimal("70.1"), previous_final=Decimal("80.0")), LABELS, FLOOR) is None
    )
    assert fires(r, view(final=None, previous_final=Decimal("80.0")), LABELS, FLOOR) is None


def test_entered_tier_needs_a_previous_tier_that_differs() -> None:
    r = rule("entered_tier")  # default Critical
    assert fires(r, view(tier="Critical", previous_tier="At Risk"), LABELS, FLOOR) == (
        "new Critical: tier At Risk → Critical"
    )
    assert fires(r, view(tier="Critical", previous_tier="Critical"), LABELS, FLOOR) is None
    assert fires(r, view(tier="Critical", previous_tier=None), LABELS, FLOOR) is None


def test_confirmed_critical_signal_fires_when_the_count_grows() -> None:
    r = rule("confirmed_critical_signal")
    assert fires(r, view(critical_confirmed=1), LABELS, FLOOR) == "confirmed Critical signals 0 → 1"
    assert (
        fires(r, view(critical_confirmed=1, previous_critical_confirmed=1), LABELS, FLOOR) is None
    )
    # A new account with a confirmed signal: none before.
    assert fires(r, view(critical_confirmed=2, previous_tier=None), LABELS, FLOOR) == (
        "confirmed Critical signals 0 → 2"
    )


def test_coverage_below_fires_on_crossing_the_floor_only() -> None:
    r = rule("coverage_below")
    crossing = view(coverage_pct=Decimal("49.9"), previous_coverage_pct=Decimal("50.0"))
    assert fires(r, crossing, LABELS, FLOOR) == "coverage 50.0% → 49.9% (floor 50%)"
    stays = view(coverage_pct=Decimal("40.0"), previous_coverage_pct=Decimal("45.0"))
    assert fires(r, stays, LABELS, FLOOR) is None
    own = rule("coverage_below", floor_pct=80)
    assert fires(own, view(coverage_pct=Decimal("79.0")), LABELS, FLOOR) == (
        "coverage 90.0% → 79.0% (floor 80%)"
    )


def test_renewal_within_days_while_at_risk_or_critical() -> None:
    r = rule("renewal_within", days=90)
    soon = view(tier="At Risk", days_to_renewal=Decimal(90))
    assert fires(r, soon, LABELS, FLOOR) == "renewal in 90 days while At Risk"
    assert fires(r, view(tier="At Risk", days_to_renewal=Decimal(91)), LABELS, FLOOR) is None
    assert fires(r, view(tier="Healthy", days_to_renewal=Decimal(10)), LABELS, FLOOR) is None
    assert fires(r, view(tier="Critical", days_to_renewal=None), LABELS, FLOOR) is None


def test_top_drivers_of_a_drop_are_the_most_negative_parts() -> None:
    drivers = [
        Driver("p1_p2_volume", "support_health", "2", "6", Decimal("-8.2")),
        Driver("active_user_pct", "adoption", "60", "70", Decimal("1.5")),
        Driver("cap", "", "", "", Decimal("-3.0")),
        Driver("sessions_per_user", "adoption", "9", "7", Decimal("-0.4")),
    ]
    top = top_drivers(drivers, 2, Decimal("-10.1"))
    assert [d.text() for d in top] == [
        "support_health.p1_p2_volume -8.2 pts (2 → 6)",
        "cap -3.0 pts",
    ]


SCORES = (
    "account_id,account_name,final_score,health_tier,coverage_pct,critical_confirmed\n"
    "001A,=cmd(),70.0,At Risk,90.0,0\n"
    "001B,Beta,85.0,Healthy,90.0,0\n"
)
PREVIOUS = (
    "account_id,account_name,final_score,health_tier,coverage_pct,critical_confirmed\n"
    "001A,=cmd(),81.5,Healthy,90.0,0\n"
    "001B,Beta,86.0,Healthy,90.0,0\n"
)
CHANGES = (
    "account_id,account_name,previous_final,final,change,previous_tier,tier,part,dimension,"
    "raw_before,raw_after,points_change\n"
    "001A,'=cmd(),81.5,70.0,-11.5,Healthy,At Risk,p1_p2_volume,support_health,2,6,-9.0000\n"
    "001A,'=cmd(),81.5,70.0,-11.5,Healthy,At Risk,rounding,,,,-2.5000\n"
    "001B,Beta,86.0,85.0,-1.0,Healthy,Healthy,cap,,,,-1.0000\n"
)


def test_alerts_from_the_files_and_their_csv_is_spreadsheet_safe() -> None:
    config = AlertsConfig.model_validate(
        {
            "rules": [
                {"id": "fell", "kind": "tier_worsened"},
                {"id": "drop", "kind": "score_dropped", "points": 10},
            ]
        }
    )
    views = account_views(SCORES.encode(), None, PREVIOUS.encode())
    alerts = build_alerts(config, "2026-10", views, CHANGES.encode(), LABELS, FLOOR)
    assert [(a.account_id, a.rule_id) for a in alerts] == [("001A", "fell"), ("001A", "drop")]
    assert alerts[0].change == Decimal("-11.5")
    assert alerts[0].drivers_text() == (
        "support_health.p1_p2_volume -9.0000 pts (2 → 6); rounding -2.5000 pts"
    )
    data = alerts_csv(alerts)
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert rows[0]["account_name"] == "'=cmd()"  # guarded
    assert rows[0]["change"] == "-11.5"  # numbers stay numbers
    assert rows[1]["reason"] == "final score 81.5 → 70.0 (−11.5)"
    back = parse_alerts_csv(data)
    assert back[0].account_name == "=cmd()"
    assert back[0].drivers[0] == "support_health.p1_p2_volume -9.0000 pts (2 → 6)"


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "alerts.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def test_no_file_means_no_alerts(tmp_path: Path) -> None:
    config, raw = load_alerts(tmp_path)
    assert (config.enabled, config.rules, raw) == (False, (), b"")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "rules:\n  - id: drop\n    kind: score_dropped\n",
            "alerts.yaml: rules[0]: a score_dropped rule needs points",
        ),
        ("rules:\n  - id: x\n    kind: nope\n", "alerts.yaml: rules[0].kind: Input should be"),
        (
            "rules:\n  - id: a\n    kind: tier_worsened\n    points: 3\n",
            "alerts.yaml: rules[0]: points does not apply to a tier_worsened rule",
        ),
        (
            "rules:\n  - id: a\n    kind: tier_worsened\n  - id: a\n    kind: tier_worsened\n",
            "rules[1]: id 'a' is used by an earlier rule",
        ),
        (
            "rules:\n  - id: Bad-Id\n    kind: tier_worsened\n",
            "alerts.yaml: rules[0].id: 'Bad-Id' is not a rule id",
        ),
        (
            "rules:\n  - id: n\n    kind: entered_tier\n    tier: Doomed\n",
            "alerts.yaml: rules[0].tier: unknown tier 'Doomed'",
        ),
        (
            "delivery:\n  slack:\n    webhook: https://x\n",
            "alerts.yaml: delivery.slack.webhook: Extra inputs are not permitted",
        ),
        ("rules: [\n", "alerts.yaml: line"),
    ],
)
def test_bad_config_names_the_key_and_row(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_alerts(write(tmp_path, text), LABELS)
    assert message in str(err.value)
