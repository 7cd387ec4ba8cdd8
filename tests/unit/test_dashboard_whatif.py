"""What-if helpers: weight re-normalisation, the candidate weights.yaml, and sharded scoring."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from health_score.config import load_scoring_config
from health_score.dashboard.whatif import (
    WeightError,
    WhatIf,
    apply_weights,
    normalise_group,
    plain_weights_yaml,
    rewrite_weights_yaml,
    score_outcomes,
    shutdown_pool,
    weight_sections,
)
from health_score.pipeline import RunOptions, run

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "raw_metrics.csv"

weights = st.decimals(min_value=0, max_value=1, places=2, allow_nan=False, allow_infinity=False)


@given(st.lists(weights, min_size=1, max_size=8).filter(lambda ws: sum(ws) > 0))
def test_a_renormalised_group_sums_to_exactly_one_and_keeps_the_proportions(
    entered: list[Decimal],
) -> None:
    items = [(f"m{i}", w) for i, w in enumerate(entered)]
    result = dict(normalise_group(items))
    assert sum(result.values()) == 1
    total = sum(entered)
    for key, w in items:
        assert abs(result[key] - w / total) <= Decimal("0.0001")
        assert result[key] >= 0


def test_a_group_that_already_sums_to_one_is_kept_as_entered() -> None:
    items = (("a", Decimal("0.125")), ("b", Decimal("0.875")))
    assert normalise_group(items) == items


@pytest.mark.parametrize(
    "items", [(("a", Decimal(0)), ("b", Decimal(0))), (("a", Decimal(-1)), ("b", Decimal(2)))]
)
def test_an_all_zero_or_negative_group_is_refused(items: tuple[tuple[str, Decimal], ...]) -> None:
    with pytest.raises(WeightError):
        normalise_group(items)


def candidate_weights() -> tuple[tuple[str, tuple[tuple[str, Decimal], ...]], ...]:
    config = load_scoring_config(REPO / "config")
    changed = []
    for section, items in weight_sections(config):
        entered = [(k, w * (i + 1)) for i, (k, w) in enumerate(items)]  # every weight moves
        changed.append((section, normalise_group(entered)))
    return tuple(changed)


def test_the_candidate_weights_yaml_keeps_comments_and_loads_with_exactly_those_weights(
    tmp_path: Path,
) -> None:
    original = (REPO / "config" / "weights.yaml").read_text(encoding="utf-8")
    candidate = candidate_weights()
    text = rewrite_weights_yaml(original, candidate)
    comments = [line for line in original.splitlines() if line.lstrip().startswith("#")]
    assert [line for line in text.splitlines() if line.lstrip().startswith("#")] == comments
    assert len(text.splitlines()) == len(original.splitlines())
    folder = tmp_path / "config"
    shutil.copytree(REPO / "config", folder)
    (folder / "weights.yaml").write_text(text, encoding="utf-8")
    assert weight_sections(load_scoring_config(folder)) == candidate


def test_the_candidate_changes_only_the_numbers_that_moved_byte_for_byte() -> None:
    original = (
        "# Weights, edited by hand\r\n"
        "health_score:   # the two components\r\n"
        "  churn_risk_weight:   0.60   # most of it\r\n"
        "  platform_value_weight: 0.40\r\n"
        "\r\n"
        "churn_risk:\r\n"
        "  support_health: 0.250 # three decimals, kept\r\n"
        "  financial_contract:  .25\r\n"
        "  adoption_engagement: 0.5\r\n"
    )
    weights = (
        (
            "health_score",
            (("churn_risk_weight", Decimal("0.7")), ("platform_value_weight", Decimal("0.3"))),
        ),
        (
            "churn_risk",
            (
                ("support_health", Decimal("0.25")),
                ("financial_contract", Decimal("0.25")),
                ("adoption_engagement", Decimal("0.5")),
            ),
        ),
    )
    assert rewrite_weights_yaml(original, weights) == (
        "# Weights, edited by hand\r\n"
        "health_score:   # the two components\r\n"
        "  churn_risk_weight:   0.7   # most of it\r\n"
        "  platform_value_weight: 0.3\r\n"
        "\r\n"
        "churn_risk:\r\n"
        "  support_health: 0.250 # three decimals, kept\r\n"
        "  financial_contract:  .25\r\n"
        "  adoption_engagement: 0.5\r\n"
    )
    unmoved = (weights[1],)
    assert rewrite_weights_yaml(original, unmoved) == original


def test_a_weights_file_in_flow_style_gets_a_plain_candidate_that_loads(tmp_path: Path) -> None:
    candidate = candidate_weights()
    flow = "".join(
        f"{section}: {{{', '.join(f'{k}: {w}' for k, w in items)}}}\n"
        for section, items in weight_sections(load_scoring_config(REPO / "config"))
    )
    text = rewrite_weights_yaml(flow, candidate)
    assert text == plain_weights_yaml(candidate)
    folder = tmp_path / "config"
    shutil.copytree(REPO / "config", folder)
    (folder / "weights.yaml").write_text(text, encoding="utf-8")
    assert weight_sections(load_scoring_config(folder)) == candidate


@pytest.fixture
def example_run(tmp_path: Path) -> Path:
    summary = run(
        RunOptions(
            config_dir=REPO / "config",
            from_raw=EXAMPLE,
            period="2026-10",
            runs_dir=str(tmp_path / "runs"),
            output=tmp_path / "scores.csv",
        )
    )
    assert summary.run_location is not None
    return Path(summary.run_location)


@pytest.fixture
def pool() -> Iterator[None]:
    yield
    shutdown_pool()


def test_scoring_in_worker_processes_gives_the_same_outcome_as_in_process(
    example_run: Path, pool: None
) -> None:
    engine = WhatIf(
        example_run / "raw.csv", example_run / "config", workers=1, parallel_min_accounts=1
    )
    assert engine.workers == 1
    candidate = candidate_weights()
    direct = score_outcomes(engine.accounts, apply_weights(engine.config, candidate))
    assert engine.outcome(candidate) == direct
    assert engine.outcome(engine.weights) == score_outcomes(engine.accounts, engine.config)
    assert len(engine.migration(candidate).changed()) == sum(
        1
        for b, a in zip(score_outcomes(engine.accounts, engine.config), direct, strict=True)
        if b[2] != a[2]
    )


def test_the_runs_own_weights_reproduce_the_runs_recorded_scores(example_run: Path) -> None:
    engine = WhatIf(example_run / "raw.csv", example_run / "config")
    recorded = [
        line.split(",") for line in (example_run / "scores.csv").read_text().splitlines()[1:]
    ]
    outcome = engine.outcome(engine.weights)
    assert [(o[0], "" if o[1] is None else str(o[1]), o[2]) for o in outcome] == [
        (r[0], r[4], r[5]) for r in recorded
    ]
