"""The scoring model of DESIGN §3: worked examples, caps, rounding, normalisation."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from health_score.config import load_scoring_config
from health_score.records import AccountInput, SignalCounts
from health_score.scoring.composite import (
    Model,
    churn_risk_score,
    health_score,
    publish,
    score_account,
)
from health_score.scoring.normaliser import normalise
from health_score.scoring.qualitative import apply_cap, rule_in_words
from health_score.scoring.spec import Band, CapRule
from tests.conftest import DEFAULT_CONFIG, IDENTITY_METRICS


def account(
    dims: dict[str, str | None], *, segment: str = "paid", signals: SignalCounts | None = None
) -> AccountInput:
    """An account of the identity model: each dimension's raw value is its score."""
    metrics = {IDENTITY_METRICS[d]: (None if v is None else D(v)) for d, v in dims.items()}
    return AccountInput(
        "001000000000001AAA", "Example Co", segment, metrics, signals or SignalCounts()
    )


EXAMPLE_A = {
    "support_health": "85",
    "financial_contract": "95",
    "adoption_engagement": "88",
    "relationship_expansion": "92",
    "platform_value": "82",
}
EXAMPLE_C = {
    "support_health": "72",
    "financial_contract": "75",
    "adoption_engagement": "55",
    "relationship_expansion": "50",
    "platform_value": "58",
}


# --- worked examples ---------------------------------------------------------------------------


def test_example_a_scores_healthy(identity_config: Path) -> None:
    result = score_account(account(EXAMPLE_A), load_scoring_config(identity_config))
    assert publish(result.churn_risk) == D("89.8")
    assert publish(result.quantitative) == D("86.7")
    assert publish(result.final) == D("86.7")
    assert result.tier == "Healthy"
    assert result.coverage_pct == 100


def test_confirmed_critical_signal_caps_score_at_50(identity_config: Path) -> None:
    signals = SignalCounts(critical=1, critical_confirmed=1)
    result = score_account(
        account(EXAMPLE_A, signals=signals), load_scoring_config(identity_config)
    )
    assert publish(result.quantitative) == D("86.7")
    assert result.final == D(50)
    assert result.tier == "Critical"
    assert result.cap.applied
    assert result.cap.rule is not None and result.cap.rule.condition == "critical_confirmed"


def test_example_c_rounds_the_exact_half_up(identity_config: Path) -> None:
    result = score_account(
        account(EXAMPLE_C, segment="standard"), load_scoring_config(identity_config)
    )
    assert result.churn_risk == D("65.35")
    assert publish(result.churn_risk) == D("65.4")
    assert publish(result.final) == D("62.4")
    assert result.tier == "At Risk"


def test_example_d_redistributes_missing_relationship_weight(identity_config: Path) -> None:
    dims = {**EXAMPLE_A, "relationship_expansion": None}
    result = score_account(account(dims), load_scoring_config(identity_config))
    assert publish(result.churn_risk) == D("89.4")
    assert result.dimensions["relationship_expansion"] is None
    # 85 % of Churn Risk's weight is backed: 0.6 × 0.85 + 0.4 × 1 = 91 % of the model.
    assert result.coverage_pct == D("91")


def test_dimension_functions_reproduce_the_examples(identity_config: Path) -> None:
    config = load_scoring_config(identity_config)
    dims = {k: D(v) for k, v in EXAMPLE_A.items() if k != "platform_value"}
    churn = churn_risk_score(dims, config)
    assert churn == D("89.8")
    assert publish(health_score(churn, D(82), config)) == D("86.7")
    assert health_score(None, D(82), config) == D(82)
    assert health_score(None, None, config) is None


@pytest.mark.parametrize(
    ("quantitative", "signals", "expected"),
    [
        ("82", SignalCounts(watch=1), "82"),
        ("82", SignalCounts(moderate=1), "75"),
        ("82", SignalCounts(critical=1), "65"),
        ("78", SignalCounts(critical=2), "55"),
        ("90", SignalCounts(critical=1, critical_confirmed=1), "50"),
        ("48", SignalCounts(critical=1), "48"),
    ],
)
def test_caps_table(
    identity_config: Path, quantitative: str, signals: SignalCounts, expected: str
) -> None:
    rules = load_scoring_config(identity_config).cap_rules
    final, decision = apply_cap(D(quantitative), signals, rules)
    assert final == D(expected)
    assert decision.applied is (D(expected) < D(quantitative))


def test_a_signal_never_raises_a_score_with_no_data(identity_config: Path) -> None:
    rules = load_scoring_config(identity_config).cap_rules
    final, decision = apply_cap(None, SignalCounts(critical=2), rules)
    assert final is None
    assert not decision.applied


def test_rules_in_words_from_their_conditions(identity_config: Path) -> None:
    """The identity config's rules have no description: the words come from the conditions."""
    rules = load_scoring_config(identity_config).cap_rules
    assert [rule_in_words(r) for r in rules] == [
        "Confirmed Critical signal → cap at 50",
        "2+ Critical signals → cap at 55",
        "1 Critical signal → cap at 65",
        "1 Moderate signal → cap at 75",
    ]


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        (CapRule("watch_1", "watch", 1, False, D(85)), "1 Watch signal → cap at 85"),
        (CapRule("moderate_2plus", "moderate", 2, False, D(75)), "2+ Moderate signals → cap at 75"),
        (CapRule("watch_10plus", "watch", 10, False, D("80.0")), "10+ Watch signals → cap at 80"),
        (
            CapRule("critical_confirmed_3plus", "critical", 3, True, D("42.5")),
            "3+ Confirmed Critical signals → cap at 42.5",
        ),
        (
            CapRule("critical_confirmed", "critical", 1, True, D(50)),
            "Confirmed Critical signal → cap at 50",
        ),
    ],
)
def test_rule_in_words_singular_plural_and_confirmed(rule: CapRule, words: str) -> None:
    assert rule_in_words(rule) == words


def test_rule_in_words_uses_the_description_and_names_the_cap() -> None:
    described = CapRule("critical_1", "critical", 1, False, D(65), "1+ Critical signal (any)")
    assert rule_in_words(described) == "1+ Critical signal (any) → cap at 65"
    naming = CapRule("critical_1", "critical", 1, False, D(65), "Any Critical signal: capped at 65")
    assert rule_in_words(naming) == "Any Critical signal: capped at 65"
    assert rule_in_words(CapRule("c", "critical", 1, False, D(65), "Cap: 65.0")) == "Cap: 65.0"
    # A cap word with another number does not name this cap.
    wrong = CapRule("critical_1", "critical", 1, False, D(60), "Critical signal, cap 65")
    assert rule_in_words(wrong) == "Critical signal, cap 65 → cap at 60"
    # The number alone is not a mention of the cap.
    counted = CapRule("critical_2plus", "critical", 2, False, D(2), "2+ Critical signals")
    assert rule_in_words(counted) == "2+ Critical signals → cap at 2"


def test_the_default_configs_rules_in_words() -> None:
    rules = load_scoring_config(DEFAULT_CONFIG).cap_rules
    assert [rule_in_words(r) for r in rules] == [
        "1+ Critical signal with Confirmed confidence → cap at 50",
        "2+ Critical signals (any confidence) → cap at 55",
        "1+ Critical signal (any confidence) → cap at 65",
        "1+ Moderate signal (any confidence) → cap at 75",
    ]


def test_account_with_no_data_is_insufficient_data(identity_config: Path) -> None:
    result = score_account(account(dict.fromkeys(EXAMPLE_A)), load_scoring_config(identity_config))
    assert result.final is None
    assert result.tier == "Insufficient Data"
    assert result.coverage_pct == 0


def test_low_coverage_is_insufficient_data_but_keeps_its_score(identity_config: Path) -> None:
    # Only support (0.6 × 0.3 = 18 % of the model) backed: below the default 50 % floor.
    dims = {**dict.fromkeys(EXAMPLE_A), "support_health": "95"}
    result = score_account(account(dims), load_scoring_config(identity_config))
    assert result.final == D(95)
    assert result.coverage_pct == D(18)
    assert result.tier == "Insufficient Data"


def test_a_matching_cap_overrides_the_coverage_floor(identity_config: Path) -> None:
    # As above (18 % coverage, score 95) plus one Critical signal: capped at 65 → At Risk, not
    # Insufficient Data, and flagged low_coverage.
    dims = {**dict.fromkeys(EXAMPLE_A), "support_health": "95"}
    config = load_scoring_config(identity_config)
    result = score_account(account(dims, signals=SignalCounts(critical=1)), config)
    assert result.final == D(65)
    assert result.tier == "At Risk"
    assert result.low_coverage is True


@pytest.mark.parametrize(
    ("signals", "tier"),
    [
        (SignalCounts(critical=1, critical_confirmed=1), "Critical"),  # cap 50
        (SignalCounts(critical=1), "At Risk"),  # cap 65
        (SignalCounts(moderate=1), "At Risk"),  # cap 75 (Healthy starts at 76)
        (SignalCounts(watch=3), "Insufficient Data"),  # Watch only: no cap
    ],
)
def test_an_account_with_no_score_takes_the_tier_of_its_cap(
    identity_config: Path, signals: SignalCounts, tier: str
) -> None:
    config = load_scoring_config(identity_config)
    result = score_account(account(dict.fromkeys(EXAMPLE_A), signals=signals), config)
    assert result.final is None
    assert result.tier == tier
    assert result.low_coverage is True


def test_full_coverage_is_not_low_coverage(identity_config: Path) -> None:
    result = score_account(account(EXAMPLE_A), load_scoring_config(identity_config))
    assert result.low_coverage is False


# --- rounding at the half ----------------------------------------------------------------------


def test_every_component_at_65_35_publishes_65_4(identity_config: Path) -> None:
    # In binary floats 65.35 is 65.3499999…, so the float computation rounds down to 65.3.
    assert round(0.6 * 65.35 + 0.4 * 65.35, 1) == 65.3
    result = score_account(
        account(dict.fromkeys(EXAMPLE_A, "65.35")), load_scoring_config(identity_config)
    )
    assert result.quantitative == D("65.35")
    assert publish(result.final) == D("65.4")


@pytest.mark.parametrize(
    ("value", "published", "tier"),
    [
        ("89.95", "90.0", "Champion"),  # rounds up into Champion
        ("89.94", "89.9", "Healthy"),
        ("75.95", "76.0", "Healthy"),
        ("75.5", "75.5", "At Risk"),  # 75.5 is At Risk: tiers use the rounded score
        ("59.95", "60.0", "At Risk"),
        ("59.94", "59.9", "Critical"),
    ],
)
def test_tier_uses_the_rounded_final_score(
    identity_config: Path, value: str, published: str, tier: str
) -> None:
    result = score_account(
        account(dict.fromkeys(EXAMPLE_A, value)), load_scoring_config(identity_config)
    )
    assert publish(result.final) == D(published)
    assert result.tier == tier


# --- normalisation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", "100"), ("2", "100"), ("3", "75"), ("4", "50"), ("6", "25"), ("8", "0"), ("12", "0")],
)
def test_lower_is_better_interpolates_between_thresholds(value: str, expected: str) -> None:
    assert normalise(D(value), Band(D(2), D(4), D(8)), True) == D(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("200", "100"),
        ("180", "100"),
        ("135", "75"),
        ("90", "50"),
        ("60", "25"),
        ("30", "0"),
        ("-5", "0"),
    ],
)
def test_higher_is_better_interpolates_between_thresholds(value: str, expected: str) -> None:
    assert normalise(D(value), Band(D(180), D(90), D(30)), False) == D(expected)


def test_equal_thresholds_act_as_a_step() -> None:
    band = Band(D(0), D(0), D(1))  # tier_alignment: green = yellow
    assert normalise(D(0), band, True) == 100
    assert normalise(D("0.5"), band, True) == 25
    assert normalise(D(1), band, True) == 0
    flat = Band(D(5), D(5), D(5))
    assert normalise(D(5), flat, True) == 100
    assert normalise(D(6), flat, True) == 0


def test_default_config_scores_a_metric_with_its_segment_thresholds() -> None:
    config = load_scoring_config(Path(__file__).resolve().parents[2] / "config")
    model = Model(config)
    paid = model.score(AccountInput("a", "A", "paid", {"first_response_minutes": D(90)}))
    standard = model.score(AccountInput("b", "B", "standard", {"first_response_minutes": D(90)}))
    paid_metric = next(m for m in paid.metrics if m.metric == "first_response_minutes")
    standard_metric = next(m for m in standard.metrics if m.metric == "first_response_minutes")
    assert paid_metric.score == 75  # paid: 60 / 120 / 240
    assert standard_metric.score == 100  # standard: 240 / 480 / 1440


def test_shared_metric_is_scored_in_each_dimension_with_its_own_thresholds() -> None:
    config = load_scoring_config(Path(__file__).resolve().parents[2] / "config")
    result = Model(config).score(AccountInput("a", "A", "paid", {"sessions_per_user": D(9)}))
    by_dim = {m.dimension: m.score for m in result.metrics if m.metric == "sessions_per_user"}
    # adoption (paid 12 / 6 / 2): 50 + 50 × 3/6; platform value (paid 10 / 4 / 1): 100 − 50 × 1/6
    assert by_dim == {"adoption_engagement": D(75), "platform_value": D(100) - D(50) / D(6)}


def test_explanation_points_add_up_to_the_score(identity_config: Path) -> None:
    dims = {**EXAMPLE_C, "financial_contract": None}
    result = score_account(account(dims), load_scoring_config(identity_config))
    assert result.quantitative is not None
    total = sum((m.points for m in result.metrics), D(0))
    assert abs(total - result.quantitative) < D("1e-20")
    weights = sum((m.effective_weight for m in result.metrics), D(0))
    assert abs(weights - 1) < D("1e-20")
    missing = next(m for m in result.metrics if m.dimension == "financial_contract")
    assert missing.status == "missing" and missing.effective_weight == 0


def test_unavailable_metrics_are_marked_apart_from_missing(identity_config: Path) -> None:
    base = account({**EXAMPLE_A, "support_health": None})
    unavailable = AccountInput(
        base.account_id,
        base.account_name,
        base.segment,
        base.metrics,
        base.signals,
        frozenset({"support"}),
    )
    result = score_account(unavailable, load_scoring_config(identity_config))
    status = {m.metric: m.status for m in result.metrics}
    assert status["support"] == "unavailable"
    assert status["financial"] == "scored"
