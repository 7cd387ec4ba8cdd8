"""Change attribution: why an account's published final score moved since the previous run.

Pure: no I/O. Everything is exact integer arithmetic on fixed decimal quanta (the quanta the
run's explanation stores: metric scores ×10⁴, effective weights ×10⁸, published values ×10), so
every part is an exact decimal and the parts add up **exactly** to the published change
``publish(final) − publish(previous final)``.

For one account, with effective weight ``e`` and normalised score ``s`` of each metric before and
``e'``, ``s'`` after (``e = 0`` where a metric has no score), the quantitative score is
``Q = Σ e·s`` and the final one ``F = Q + K`` with the cap's effect ``K = −max(Q − cap, 0)``.
Per metric, the symmetric (order-independent) split

    e'·s' − e·s = ē·(s' − s) + s̄·(e' − e)        ē, s̄ = the averages of before and after

gives the metric's **value part** ``ē·(s' − s)`` (zero when it is scored on one side only: there
``s̄`` is its one score) and a **weight part** ``s̄·(e' − e)``. The weight part is split again,
symmetrically, into what the **configuration** changed (``weights``) and what the **coverage**
changed (``coverage``: redistribution because metrics appeared or went missing):

    weights  = ½[(e(C', P) − e(C, P)) + (e(C', P') − e(C, P'))] · s̄
    coverage = ½[(e(C, P') − e(C, P)) + (e(C', P') − e(C', P))] · s̄

with ``e(C, P)`` the effective weight under config ``C`` and data pattern ``P`` (old and new are
primed). ``cap = K' − K``. Each part is rounded half up to 4 decimals; ``rounding`` is the
published change minus their sum (it holds the one-decimal publishing and the explanation's
quanta), so nothing is left out silently. An account scored only now gets one ``appeared`` part
(its final score, counting the missing one as 0), one scored only before a ``lost_score`` part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
from numpy.typing import NDArray

from health_score.scoring.composite import Model
from health_score.scoring.spec import CHURN_RISK, PLATFORM_VALUE

ZERO = Decimal(0)
SCORE_UNIT = 10**4  # metric scores and cap values
WEIGHT_UNIT = 10**8  # effective weights
PART_UNIT = 10**4  # parts as published in changes.csv (4 decimals)
#: Internal unit: 4 × score × weight (the two halvings of the symmetric splits stay integral).
_FINE = 4 * SCORE_UNIT * WEIGHT_UNIT
_TO_PART = _FINE // PART_UNIT
_PUBLISHED_TO_PART = PART_UNIT // 10

COMPARED, APPEARED, LOST_SCORE, UNSCORED = 0, 1, 2, 3
KINDS = ("compared", "appeared", "lost_score", "unscored")


@dataclass(frozen=True, slots=True)
class Side:
    """One run's state of ``n`` accounts × ``k`` metric slots (aligned with the other side's).

    ``score``: ×10⁴, −1 = no score; ``effective``: ×10⁸ (ignored where there is no score);
    ``cap``: the matched cap rule's value ×10⁴, −1 = none; ``final``: the published final score
    ×10, −1 = none (or the account is not in this run).
    """

    score: NDArray[np.signedinteger[Any]]
    effective: NDArray[np.signedinteger[Any]]
    cap: NDArray[np.int64]
    final: NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Attribution:
    """Every account's change and its parts, in 10⁻⁴ points (see :data:`PART_UNIT`)."""

    kind: NDArray[np.int64]  # COMPARED | APPEARED | LOST_SCORE | UNSCORED
    change: NDArray[np.int64]  # published change (a missing score counts as 0); 0 if unscored
    metric: NDArray[np.int64]  # n × k, each metric's value part
    weights: NDArray[np.int64]
    coverage: NDArray[np.int64]
    cap: NDArray[np.int64]
    rounding: NDArray[np.int64]


def _to_parts(fine: NDArray[np.int64]) -> NDArray[np.int64]:
    """Fine units → 10⁻⁴ points, half up."""
    return (fine + _TO_PART // 2) // _TO_PART


def _cap_effect(quantitative: NDArray[np.int64], cap: NDArray[np.int64]) -> NDArray[np.int64]:
    """K = −max(Q − cap, 0) where a cap matched (fine units)."""
    over = quantitative - cap * (_FINE // SCORE_UNIT)
    return np.where(cap >= 0, -np.maximum(over, 0), 0)


def attribute(
    before: Side,
    after: Side,
    cross: tuple[NDArray[np.int64], NDArray[np.int64]] | None = None,
) -> Attribution:
    """Split each account's published change into parts that sum to it exactly.

    ``cross`` is ``(e(C', P), e(C, P'))`` — the new config's effective weights for the old data
    pattern and the old config's for the new one (×10⁸) — or None when the two runs' weights are
    the same (then ``weights`` is 0 and every weight change is coverage).
    """
    s0 = before.score.astype(np.int64)
    s1 = after.score.astype(np.int64)
    have0, have1 = s0 >= 0, s1 >= 0
    e0 = np.where(have0, before.effective, 0).astype(np.int64)
    e1 = np.where(have1, after.effective, 0).astype(np.int64)
    both = have0 & have1
    # 2·s̄: the sum of both scores, or twice the one there is.
    s_sum = np.where(both, s0 + s1, np.where(have0, 2 * s0, np.where(have1, 2 * s1, 0)))
    metric_fine = np.where(both, 2 * (e0 + e1) * (s1 - s0), 0)
    if cross is None:
        coverage_fine = 2 * (e1 - e0) * s_sum
        weights_fine = np.zeros_like(coverage_fine)
    else:
        new_at_old = np.where(have0, cross[0], 0).astype(np.int64)
        old_at_new = np.where(have1, cross[1], 0).astype(np.int64)
        weights_fine = ((new_at_old - e0) + (e1 - old_at_new)) * s_sum
        coverage_fine = ((old_at_new - e0) + (e1 - new_at_old)) * s_sum
    q0 = 4 * (e0 * np.maximum(s0, 0)).sum(axis=1)
    q1 = 4 * (e1 * np.maximum(s1, 0)).sum(axis=1)
    cap_fine = _cap_effect(q1, after.cap) - _cap_effect(q0, before.cap)

    f0, f1 = before.final.astype(np.int64), after.final.astype(np.int64)
    scored0, scored1 = f0 >= 0, f1 >= 0
    kind = np.where(
        scored0 & scored1,
        COMPARED,
        np.where(scored1, APPEARED, np.where(scored0, LOST_SCORE, UNSCORED)),
    ).astype(np.int64)
    compared = kind == COMPARED
    change = (np.maximum(f1, 0) - np.maximum(f0, 0)) * _PUBLISHED_TO_PART

    metric = np.where(compared[:, None], _to_parts(metric_fine), 0)
    weights = np.where(compared, _to_parts(weights_fine.sum(axis=1)), 0)
    coverage = np.where(compared, _to_parts(coverage_fine.sum(axis=1)), 0)
    cap = np.where(compared, _to_parts(cap_fine), 0)
    rounding = np.where(compared, change - metric.sum(axis=1) - weights - coverage - cap, 0)
    return Attribution(kind, change, metric, weights, coverage, cap, rounding)


# --------------------------------------------------------------------------------------------
# Effective weights of a data pattern (for the cross terms when the config changed)


def weights_signature(model: Model) -> tuple[object, ...]:
    """What effective weights depend on: two models with equal signatures weigh alike."""
    comp = model.config.component_weights
    return (
        tuple(sorted(comp.items())),
        tuple(
            (d.name, d.component, d.weight, tuple((m.name, m.weight) for m in d.metrics))
            for d in model.dimensions
        ),
    )


def effective_weights(model: Model, present: Sequence[bool]) -> tuple[Decimal, ...]:
    """Each slot's effective weight (in :attr:`Model.dimensions` order) when the slots where
    ``present`` have data: the redistribution of :meth:`Model.score_compact`, without scores."""
    comp = model.config.component_weights
    flags = iter(present)
    dim_present: list[Decimal] = []
    masks: list[list[bool]] = []
    for dim in model.dimensions:
        mask = [next(flags) for _ in dim.metrics]
        masks.append(mask)
        dim_present.append(
            sum((m.weight for m, p in zip(dim.metrics, mask, strict=True) if p), ZERO)
        )
    churn_present = sum(
        (
            d.weight
            for d, w in zip(model.dimensions, dim_present, strict=True)
            if d.component == CHURN_RISK and w
        ),
        ZERO,
    )
    has = {
        CHURN_RISK: churn_present != 0,
        PLATFORM_VALUE: any(
            w
            for d, w in zip(model.dimensions, dim_present, strict=True)
            if d.component == PLATFORM_VALUE
        ),
    }
    comp_present = sum((comp.get(k, ZERO) for k, v in has.items() if v), ZERO)
    out: list[Decimal] = []
    for dim, total, mask in zip(model.dimensions, dim_present, masks, strict=True):
        multiplier = ZERO
        if total and comp_present and has[dim.component]:
            numerator = comp.get(dim.component, ZERO)
            denominator = total * comp_present
            if dim.component == CHURN_RISK:
                numerator *= dim.weight
                denominator *= churn_present
            multiplier = numerator / denominator
        out.extend(
            m.weight * multiplier if p else ZERO for m, p in zip(dim.metrics, mask, strict=True)
        )
    return tuple(out)


def pattern_weights(
    model: Model, slots: Sequence[int | None], present: NDArray[np.bool_]
) -> NDArray[np.int64]:
    """``model``'s effective weights (×10⁸, half up) for each row's data pattern ``present``
    (accounts × aligned slots); ``slots[j]`` is the aligned slot of the model's j-th slot, or
    None. Computed once per distinct pattern."""
    out = np.zeros(present.shape, dtype=np.int64)
    if not present.size:
        return out
    own = [j for j, s in enumerate(slots) if s is not None]
    columns = np.array([slots[j] for j in own], dtype=np.intp)
    width = sum(len(d.metrics) for d in model.dimensions)
    patterns, inverse = np.unique(present[:, columns], axis=0, return_inverse=True)
    table = np.zeros((len(patterns), present.shape[1]), dtype=np.int64)
    for row, pattern in enumerate(patterns.tolist()):
        flags = [False] * width
        for j, flag in zip(own, pattern, strict=True):
            flags[j] = bool(flag)
        weights = effective_weights(model, flags)
        for j in own:
            target = slots[j]
            assert target is not None
            table[row, target] = int((weights[j] * WEIGHT_UNIT).to_integral_value())
    out[:] = table[inverse.reshape(-1)]
    return out


# --------------------------------------------------------------------------------------------
# One account in Decimal (the form tests and people read)


@dataclass(frozen=True, slots=True)
class AccountState:
    """One account in one run, as :class:`Side` holds it but in decimals."""

    scores: Sequence[Decimal | None]  # per slot, 4 decimals
    effective: Sequence[Decimal]  # per slot, 8 decimals
    final: Decimal | None  # published, 1 decimal
    cap: Decimal | None = None  # the matched cap rule's value


@dataclass(frozen=True, slots=True)
class AccountChange:
    kind: str
    change: Decimal
    parts: Mapping[str, Decimal]  # metric name | weights | coverage | cap | rounding | …


def _units(value: Decimal, unit: int, what: str) -> int:
    scaled = value * unit
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{what} {value} has more decimals than its quantum 1/{unit}")
    return int(scaled)


def _side(state: AccountState | None, k: int) -> Side:
    if state is None:
        none = np.full((1, k), -1, dtype=np.int64)
        return Side(none, np.zeros((1, k), np.int64), np.array([-1]), np.array([-1]))
    return Side(
        np.array(
            [[-1 if s is None else _units(s, SCORE_UNIT, "score") for s in state.scores]],
            dtype=np.int64,
        ),
        np.array([[_units(e, WEIGHT_UNIT, "effective weight") for e in state.effective]]),
        np.array([-1 if state.cap is None else _units(state.cap, SCORE_UNIT, "cap")]),
        np.array([-1 if state.final is None else _units(state.final, 10, "final score")]),
    )


def decompose(
    names: Sequence[str],
    before: AccountState | None,
    after: AccountState | None,
    cross: tuple[Sequence[Decimal], Sequence[Decimal]] | None = None,
) -> AccountChange:
    """:func:`attribute` for one account; ``names`` name the slots (metric names)."""
    k = len(names)
    if cross is None:
        cross_arrays = None
    else:
        cross_arrays = (
            np.array([[_units(e, WEIGHT_UNIT, "effective weight") for e in cross[0]]]),
            np.array([[_units(e, WEIGHT_UNIT, "effective weight") for e in cross[1]]]),
        )
    result = attribute(_side(before, k), _side(after, k), cross_arrays)
    kind = int(result.kind[0])
    unit = Decimal(PART_UNIT)

    def dec(value: object) -> Decimal:
        return Decimal(int(value)) / unit  # type: ignore[call-overload]

    parts: dict[str, Decimal] = {}
    if kind == APPEARED:
        parts["appeared"] = dec(result.change[0])
    elif kind == LOST_SCORE:
        parts["lost_score"] = dec(result.change[0])
    elif kind == COMPARED:
        for name, value in zip(names, result.metric[0].tolist(), strict=True):
            parts[name] = dec(value)
        for name, array in (
            ("weights", result.weights),
            ("coverage", result.coverage),
            ("cap", result.cap),
            ("rounding", result.rounding),
        ):
            parts[name] = dec(array[0])
    return AccountChange(KINDS[kind], dec(result.change[0]), parts)
