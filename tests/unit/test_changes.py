"""Change attribution: the parts of a published change, pinned with hand-computed literals."""

from __future__ import annotations

from decimal import Decimal as D

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from health_score.config import load_scoring_config
from health_score.loaders.changes_output import previous_ok_run
from health_score.records import NO_SIGNALS, AccountInput
from health_score.scoring.changes import (
    COMPARED,
    AccountState,
    Side,
    attribute,
    decompose,
    effective_weights,
)
from health_score.scoring.composite import Model
from tests.conftest import REPO

NAMES = ("a", "b")
HALF = (D("0.5"), D("0.5"))


def test_one_metric_changing_is_all_in_that_metric() -> None:
    # a 80 → 90 at weight 0.5 both times: ē·Δs = 0.5 × 10 = 5.0; Q 70.0 → 75.0.
    before = AccountState((D(80), D(60)), HALF, D("70.0"))
    after = AccountState((D(90), D(60)), HALF, D("75.0"))
    got = decompose(NAMES, before, after)
    assert got.kind == "compared"
    assert got.change == D("5.0")
    assert got.parts == {
        "a": D("5"),
        "b": D(0),
        "weights": D(0),
        "coverage": D(0),
        "cap": D(0),
        "rounding": D(0),
    }


def test_a_weight_change_is_the_weights_part() -> None:
    # Config 0.5/0.5 → 0.6/0.4, scores 80/60 unchanged: 70.0 → 48 + 24 = 72.0.
    # weights = ½[(0.6−0.5)+(0.6−0.5)]·80 + ½[(0.4−0.5)+(0.4−0.5)]·60 = 8 − 6 = 2.0.
    before = AccountState((D(80), D(60)), HALF, D("70.0"))
    after = AccountState((D(80), D(60)), (D("0.6"), D("0.4")), D("72.0"))
    cross = ((D("0.6"), D("0.4")), HALF)  # e(C', P), e(C, P'): same data pattern
    got = decompose(NAMES, before, after, cross)
    assert (got.change, got.parts["weights"], got.parts["coverage"]) == (D(2), D(2), D(0))
    assert (got.parts["a"], got.parts["b"], got.parts["rounding"]) == (D(0), D(0), D(0))


def test_the_split_is_symmetric_going_back() -> None:
    # The same two runs in the other order: every part changes sign (−2.0 weights).
    before = AccountState((D(80), D(60)), (D("0.6"), D("0.4")), D("72.0"))
    after = AccountState((D(80), D(60)), HALF, D("70.0"))
    got = decompose(NAMES, before, after, (HALF, (D("0.6"), D("0.4"))))
    assert (got.change, got.parts["weights"]) == (D(-2), D(-2))


def test_weights_and_coverage_changing_together_are_split_half_and_half() -> None:
    # C: a 0.5, b 0.5 → C': a 0.6, b 0.4; b goes missing at the same time, so e' = (1, 0).
    # e(C', P) = (0.6, 0.4); e(C, P') = (1, 0). s̄ = (80, 60).
    # weights  = ½[(0.6−0.5)+(1−1)]·80 + ½[(0.4−0.5)+(0−0)]·60 = 4 − 3 = 1
    # coverage = ½[(1−0.5)+(1−0.6)]·80 + ½[(0−0.5)+(0−0.4)]·60 = 36 − 27 = 9
    # Q: 70 → 80, change 10 = 1 + 9.
    before = AccountState((D(80), D(60)), HALF, D("70.0"))
    after = AccountState((D(80), None), (D(1), D(0)), D("80.0"))
    got = decompose(NAMES, before, after, ((D("0.6"), D("0.4")), (D(1), D(0))))
    assert (got.parts["weights"], got.parts["coverage"], got.change) == (D(1), D(9), D(10))


def test_a_metric_going_missing_is_coverage_redistribution() -> None:
    # b (60) goes missing: its 0.5 moves to a (80). coverage = 80×0.5 − 60×0.5 = 10.0.
    before = AccountState((D(80), D(60)), HALF, D("70.0"))
    after = AccountState((D(80), None), (D(1), D(0)), D("80.0"))
    got = decompose(NAMES, before, after)
    assert (got.change, got.parts["coverage"]) == (D(10), D(10))
    assert (got.parts["a"], got.parts["b"], got.parts["rounding"]) == (D(0), D(0), D(0))


def test_a_cap_appearing_is_the_cap_part() -> None:
    # Q 70 both times; a Critical signal caps at 65: K' − K = −(70 − 65) − 0 = −5.0.
    before = AccountState((D(80), D(60)), HALF, D("70.0"))
    after = AccountState((D(80), D(60)), HALF, D("65.0"), cap=D(65))
    got = decompose(NAMES, before, after)
    assert (got.change, got.parts["cap"], got.parts["a"]) == (D(-5), D(-5), D(0))


def test_a_cap_that_does_not_bind_has_no_part() -> None:
    # Cap 75 with Q 70: min(70, 75) = 70, no effect.
    before = AccountState((D(80), D(60)), HALF, D("70.0"))
    after = AccountState((D(80), D(60)), HALF, D("70.0"), cap=D(75))
    assert decompose(NAMES, before, after).parts["cap"] == D(0)


def test_publishing_to_one_decimal_shows_as_rounding() -> None:
    # Q 70.25 → 70.30 publish 70.3 and 70.3: change 0.0; a's part 0.5 × 0.1 = 0.05,
    # so rounding is −0.05.
    before = AccountState((D("80.0"), D("60.5")), HALF, D("70.3"))
    after = AccountState((D("80.1"), D("60.5")), HALF, D("70.3"))
    got = decompose(NAMES, before, after)
    assert (got.change, got.parts["a"], got.parts["rounding"]) == (D(0), D("0.05"), D("-0.05"))


def test_an_account_that_appears_counts_its_whole_score() -> None:
    after = AccountState((D(80), D(65)), HALF, D("72.5"))
    got = decompose(NAMES, None, after)
    assert (got.kind, got.change, got.parts) == ("appeared", D("72.5"), {"appeared": D("72.5")})


def test_an_account_that_loses_its_score_counts_it_all_lost() -> None:
    before = AccountState((D(80), D(60)), HALF, D("70.0"))
    after = AccountState((None, None), (D(0), D(0)), None)
    got = decompose(NAMES, before, after)
    assert (got.kind, got.change, got.parts) == ("lost_score", D(-70), {"lost_score": D(-70)})


def test_effective_weights_of_a_pattern_are_the_models() -> None:
    config = load_scoring_config(REPO / "config")
    model = Model(config)
    metrics = {name: D(50) for name in config.metric_names[::2]}  # every other metric
    account = AccountInput("X", "X", "paid", metrics, NO_SIGNALS)
    score = model.score(account)
    present = [m.status == "scored" for m in score.metrics]
    assert effective_weights(model, present) == tuple(m.effective_weight for m in score.metrics)


def test_the_previous_run_is_the_latest_ok_one_of_the_latest_earlier_period() -> None:
    runs = [
        ("r1", {"status": "ok", "period": "2026-08", "started_at": "2026-09-01T00:00"}),
        ("r2", {"status": "ok", "period": "2026-09", "started_at": "2026-10-01T00:00"}),
        ("r3", {"status": "ok", "period": "2026-09", "started_at": "2026-10-02T00:00"}),
        ("r4", {"status": "degraded", "period": "2026-09", "started_at": "2026-10-03T00:00"}),
        ("r5", {"status": "ok", "period": "2026-10", "started_at": "2026-11-01T00:00"}),
        ("r6", {"status": "ok", "period": "2026-11", "started_at": "2026-12-01T00:00"}),
    ]
    chosen = previous_ok_run(runs, "2026-10", "2026-11-02T00:00", "r7")
    assert chosen is not None and chosen.as_dict() == {"run_id": "r3", "period": "2026-09"}
    # The first period's second run compares with the first run of that period.
    chosen = previous_ok_run(runs[:1], "2026-08", "2026-09-05T00:00", "r8")
    assert chosen is not None and chosen.run_id == "r1"
    assert previous_ok_run(runs[:1], "2026-08", "2026-08-05T00:00", "r9") is None
    assert previous_ok_run(runs[3:4], "2026-10", "2026-11-05T00:00", "r9") is None


SLOTS = 4
cell = st.integers(-1, 100 * 10**4)
weight = st.integers(0, 10**8)


@st.composite
def sides(draw: st.DrawFn, n: int) -> tuple[Side, Side, tuple[np.ndarray, np.ndarray] | None]:
    def grid(values: st.SearchStrategy[int]) -> np.ndarray:
        return np.array([[draw(values) for _ in range(SLOTS)] for _ in range(n)], dtype=np.int64)

    def one() -> Side:
        score, effective = grid(cell), grid(weight)
        cap = np.array([draw(st.sampled_from([-1, 50 * 10**4, 65 * 10**4])) for _ in range(n)])
        # The published final score of these very numbers, or none.
        q = (np.where(score >= 0, effective * score, 0)).sum(axis=1)  # ×10¹²
        final = np.where(cap >= 0, np.minimum(q, cap * 10**8), q)
        tenths = (final + 5 * 10**10) // 10**11
        missing = np.array([draw(st.booleans()) and draw(st.booleans()) for _ in range(n)])
        return Side(score, effective, cap, np.where(missing, -1, tenths))

    cross = (grid(weight), grid(weight)) if draw(st.booleans()) else None
    return one(), one(), cross


@settings(max_examples=200, deadline=None)
@given(sides(5))
def test_parts_add_up_exactly_to_the_published_change(
    drawn: tuple[Side, Side, tuple[np.ndarray, np.ndarray] | None],
) -> None:
    before, after, cross = drawn
    got = attribute(before, after, cross)
    parts = got.metric.sum(axis=1) + got.weights + got.coverage + got.cap + got.rounding
    compared = got.kind == COMPARED
    assert (parts[compared] == got.change[compared]).all()
    expected = np.maximum(after.final, 0) - np.maximum(before.final, 0)
    assert (got.change == expected * 1000).all()
    # Rounding holds only the one-decimal publishing (≤ 0.05 each side) and the parts' own
    # rounding to 4 decimals (≤ 0.00005 each): never a real part.
    assert (np.abs(got.rounding[compared]) <= 1000 + SLOTS + 3).all()
