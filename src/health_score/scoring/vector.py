"""Scoring a whole portfolio at once in float64 arrays, with exact results (DESIGN §3).

Pure: no I/O, no clock, no environment. The published numbers must be those of the exact
``Decimal`` rule (:class:`~health_score.scoring.composite.Model`), so floats are only trusted
where they cannot change a published digit:

* every comparison (thresholds, caps, tiers, the coverage floor) is between numbers with at most
  15 significant digits, which float64 orders exactly (``DBL_DIG``), or is checked with a margin;
* every rounded number (one-decimal scores, 4-place metric scores, 6-place points) is checked:
  if the float lies within a margin of a rounding half (a thousand times the worst float error
  and more), the account is marked ``exact`` and the caller recomputes it with the ``Decimal``
  rule;
* effective weights depend only on which metrics and dimensions have data, so they are computed
  in ``Decimal`` once per distinct pattern, exactly as :meth:`Model.score_compact` does.

An account whose value cannot be represented this way (more than 15 significant digits, an
unknown segment) is marked ``exact`` too. :func:`exact_row` computes one account with the
``Decimal`` rule into the same integer form, so both paths fill the same arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
from numpy.typing import NDArray

from health_score.records import AccountInput, SignalCounts
from health_score.scoring.composite import UNAVAILABLE, CompactScore, Model, tier_for
from health_score.scoring.normaliser import normalise
from health_score.scoring.qualitative import CapDecision
from health_score.scoring.spec import CHURN_RISK, PLATFORM_VALUE

#: Status codes of a metric of an account (the explanation file's ``status``).
SCORED, MISSING, UNAVAILABLE_CODE = 0, 1, 2
STATUS_NAMES = ("scored", "missing", UNAVAILABLE)
#: ``-1`` in an integer array means "no value" (scores are never negative).
NONE = -1
SIGNAL_FIELDS = (
    "critical",
    "moderate",
    "watch",
    "critical_confirmed",
    "moderate_confirmed",
    "watch_confirmed",
)
# Margins, as fractions of the quantum, around a rounding half: far above the float error of
# values up to 100 computed from inputs up to 1e6 (≈1e-9 of the quantum at 1 decimal, 1e-6 at 4
# decimals, 1e-4 at 6 decimals; the float errors are ≈1e-12, 1e-8 and 1e-7).
MARGIN_1 = 1e-7
MARGIN_4 = 1e-5
MARGIN_6 = 1e-4
COMPARE_MARGIN = 1e-9  # around a cap or the coverage floor

Q1 = Decimal("0.1")
Q4 = Decimal("0.0001")
Q6 = Decimal("0.000001")
Q8 = Decimal("0.00000001")
_PLACES = {Q1: 1, Q4: 4, Q6: 6, Q8: 8}
POWERS = np.array([10**i for i in range(19)], dtype=np.int64)


def float_exact(value: Decimal) -> bool:
    """Whether ``float(value)`` orders and identifies ``value`` exactly (≤ 15 digits)."""
    return value.is_finite() and len(value.as_tuple().digits) <= 15


def _scaled(value: Decimal | None, quantum: Decimal) -> int:
    """The value rounded half-up to ``quantum``, as an integer count of quanta (None → -1)."""
    if value is None:
        return NONE
    # scaleb only moves the exponent (exact); rounding to an integer is quantize(quantum).
    return int(value.scaleb(_PLACES[quantum]).to_integral_value(rounding=ROUND_HALF_UP))


@dataclass(frozen=True, slots=True)
class Table:
    """A portfolio column-wise: what vector scoring reads.

    ``values`` is accounts × ``metrics`` (NaN = no value); ``segment`` indexes ``segments``
    (-1 = a segment the model does not know); ``signals`` is accounts × :data:`SIGNAL_FIELDS`;
    ``unavailable`` marks values whose source failed; ``exact`` marks accounts that must be
    scored with the ``Decimal`` rule whatever their floats say.
    """

    metrics: tuple[str, ...]
    values: NDArray[np.float64]
    segments: tuple[str, ...]
    segment: NDArray[np.int64]
    signals: NDArray[np.int64]
    unavailable: NDArray[np.bool_]
    exact: NDArray[np.bool_]
    #: Per metric, the most decimal places any value has (None: unknown). With it, metric
    #: scores, points and dimension scores are computed exactly in integers where they can be.
    places: tuple[int, ...] | None = None

    @property
    def size(self) -> int:
        return int(self.values.shape[0])


@dataclass(slots=True)
class Result:
    """Scores of a table as integers: published values ×10, metric scores ×10⁴, effective
    weights ×10⁸, points ×10⁶; ``-1`` = no value. ``slots`` follow :class:`VectorModel`."""

    quantitative: NDArray[np.int64]
    final: NDArray[np.int64]
    churn_risk: NDArray[np.int64]
    platform_value: NDArray[np.int64]
    dimensions: NDArray[np.int64]  # accounts × model dimensions (platform value included)
    coverage: NDArray[np.int64]
    tier: NDArray[np.int64]  # index into config.tier_labels
    rule: NDArray[np.int64]  # index into config.cap_rules, -1 = none matched
    applied: NDArray[np.bool_]
    low_coverage: NDArray[np.bool_]  # coverage below the floor
    status: NDArray[np.int8]  # accounts × slots
    score: NDArray[np.signedinteger[Any]]
    effective: NDArray[np.signedinteger[Any]]
    points: NDArray[np.signedinteger[Any]]
    exact: NDArray[np.bool_]  # accounts the caller must recompute with :func:`exact_row`
    #: Cells and dimensions whose rounding the floats could not decide (see :func:`resolve`).
    score_near: NDArray[np.bool_] | None = None
    points_near: NDArray[np.bool_] | None = None
    dimension_near: NDArray[np.bool_] | None = None
    keys: NDArray[np.int64] | None = None  # accounts × dimensions: pattern of data


class VectorModel:
    """A :class:`Model` laid out for array scoring: one *slot* per (dimension, metric)."""

    def __init__(self, model: Model, metrics: Sequence[str], segments: Sequence[str]) -> None:
        self.model = model
        config = model.config
        self.metrics = tuple(metrics)
        self.segments = tuple(segments)
        column = {name: i for i, name in enumerate(self.metrics)}
        self.slot_dimension: list[int] = []
        self.slot_column: list[int] = []
        weights: list[float] = []
        lower: list[bool] = []
        bands = np.full((3, len(self.segments), 0), np.nan)
        band_columns: list[NDArray[np.float64]] = []
        self.supported = all(float_exact(t.min) for t in config.tiers) and float_exact(
            config.min_coverage_pct
        )
        for d, dim in enumerate(model.dimensions):
            for metric in dim.metrics:
                self.slot_dimension.append(d)
                self.slot_column.append(column[metric.name])
                weights.append(float(metric.weight))
                lower.append(metric.lower_is_better)
                slot = np.full((3, len(self.segments)), np.nan)
                for s, segment in enumerate(self.segments):
                    band = metric.bands.get(segment)
                    if band is None:
                        continue
                    for i, value in enumerate((band.green, band.yellow, band.red)):
                        self.supported &= float_exact(value)
                        slot[i, s] = float(value)
                band_columns.append(slot)
        self.bands = np.stack(band_columns, axis=2) if band_columns else bands  # 3 × seg × slot
        self.weights = np.array(weights)
        self.lower = np.array(lower, dtype=bool)
        self.slots = len(weights)
        self.dim_slots = [
            [k for k, d in enumerate(self.slot_dimension) if d == index]
            for index in range(len(model.dimensions))
        ]
        comp = config.component_weights
        self.churn_dims = [i for i, d in enumerate(model.dimensions) if d.component == CHURN_RISK]
        self.platform_dim = next(
            (i for i, d in enumerate(model.dimensions) if d.name == PLATFORM_VALUE), None
        )
        self.churn_weight = float(comp.get(CHURN_RISK, 0))
        self.platform_weight = float(comp.get(PLATFORM_VALUE, 0))
        self.shares = np.array([float(d.model_share) for d in model.dimensions])
        self.total_model_weight = float(model.total_model_weight)
        # Tiers: a published score p (×10) is in the first tier with p ≥ ceil(10 × min).
        self.tier_floors = [
            int((t.min * 10).to_integral_value(rounding=ROUND_CEILING)) for t in config.tiers
        ]
        self.min_coverage = float(config.min_coverage_pct)
        # The tier of each cap rule's value: an account with no score whose signals match it.
        self.cap_tiers = np.array(
            [
                config.tier_labels.index(
                    tier_for(None, Decimal(0), config, CapDecision(rule, rule.value, False))
                )
                for rule in config.cap_rules
            ]
            + [len(self.tier_floors)],
            dtype=np.int64,
        )
        self._effective: dict[tuple[int, int], list[int]] = {}
        self._multipliers: dict[tuple[int, int], Decimal] = {}
        self.band_ints = [self._band_integers(k) for k in range(self.slots)]
        weight_places = max([0, *(-int(w.as_tuple().exponent) for w in self._slot_weights())])
        self.weight_ints: list[int] | None = (
            [int(w.scaleb(weight_places)) for w in self._slot_weights()]
            if weight_places <= 6
            else None
        )
        self.coverage_ints = _coverage_integers(model)

    # ----------------------------------------------------------------------------------------

    def score(self, table: Table) -> Result:
        """Score every account of ``table``; then :func:`resolve` the cells and accounts the
        floats could not decide."""
        n = table.size
        exact = table.exact | (table.segment < 0)
        segment = np.where(table.segment < 0, 0, table.segment)
        with np.errstate(divide="ignore", invalid="ignore"):
            return self._score(table, n, exact.copy(), segment)

    def _score(
        self, table: Table, n: int, exact: NDArray[np.bool_], segment: NDArray[np.int64]
    ) -> Result:
        slots, dims = self.slots, len(self.model.dimensions)
        # Pass 1: which values exist. Effective weights depend on nothing else.
        present = np.empty((n, slots), dtype=bool, order="F")
        dim_present = np.zeros((n, dims))
        dim_bits = np.zeros((n, dims), dtype=np.int64)
        backed_int = np.zeros(n, dtype=np.int64)
        status = np.empty((n, slots), dtype=np.int8, order="F")
        for k in range(slots):
            column = self.slot_column[k]
            here = ~np.isnan(table.values[:, column])
            present[:, k] = here
            d = self.slot_dimension[k]
            dim_present[:, d] += here * self.weights[k]
            dim_bits[:, d] |= here.astype(np.int64) << k
            if self.coverage_ints is not None:
                backed_int += here * self.coverage_ints[0][k]
            status[:, k] = np.where(
                here, SCORED, np.where(table.unavailable[:, column], UNAVAILABLE_CODE, MISSING)
            )
        has_dim = dim_present > 0
        has_p = (
            has_dim[:, self.platform_dim]
            if self.platform_dim is not None
            else np.zeros(n, dtype=bool)
        )
        context = has_p.astype(np.int64)
        for position, d in enumerate(self.churn_dims):
            context |= has_dim[:, d].astype(np.int64) << (position + 1)
        keys = dim_bits | (context << 40)[:, None]
        del dim_bits

        # Pass 2, dimension by dimension: metric scores, points, dimension scores.
        score4 = np.empty((n, slots), dtype=np.int32, order="F")
        effective = np.zeros((n, slots), dtype=np.int32, order="F")
        points6 = np.empty((n, slots), dtype=np.int32, order="F")
        score_near = np.zeros((n, slots), dtype=bool, order="F")
        points_near = np.zeros((n, slots), dtype=bool, order="F")
        dim_score = np.full((n, dims), np.nan)
        dims_published = np.full((n, dims), NONE, dtype=np.int64)
        dim_near = np.zeros((n, dims), dtype=bool)
        for d, dim_slots in enumerate(self.dim_slots):
            if not dim_slots:
                continue
            unique, inverse = np.unique(keys[:, d], return_inverse=True)
            inverse = inverse.ravel()
            rows = len(unique)
            table_int = np.array(
                [self._effective_for(d, int(key), dim_slots) for key in unique], dtype=np.int64
            ).reshape(rows, len(dim_slots))
            table_float = np.array(
                [self._multiplier_weights(d, int(key), dim_slots) for key in unique]
            ).reshape(rows, len(dim_slots))
            short = [self._effective_short(d, int(key), dim_slots) for key in unique]
            table_e = np.array([[e for e, _ in r] for r in short], dtype=np.int64).reshape(
                rows, len(dim_slots)
            )
            table_p = np.array([[p for _, p in r] for r in short], dtype=np.int64).reshape(
                rows, len(dim_slots)
            )
            total = np.zeros(n)
            numerator = np.zeros(n, dtype=np.int64)
            denominator = np.zeros(n, dtype=np.int64)
            known_dim = has_dim[:, d].copy()
            for position, k in enumerate(dim_slots):
                here = present[:, k]
                value, rounded, near, known, whole = self._slot_score(
                    table, k, here, segment, exact
                )
                quotient, remainder = np.divmod(whole, 10_000)
                score4[:, k] = np.where(known, quotient + (2 * remainder >= 10_000), rounded)
                score_near[:, k] = near & ~known
                total += np.where(here, value * self.weights[k], 0.0)
                known_dim &= ~here | known
                if self.weight_ints is not None:
                    numerator += np.where(here, whole, 0) * self.weight_ints[k]
                    denominator += here * self.weight_ints[k]
                effective[:, k] = np.where(here, table_int[:, position].take(inverse), 0)
                points, near_points = _round(
                    table_float[:, position].take(inverse) * value, 1_000_000, MARGIN_6
                )
                # Where the effective weight is e × 10^-p (p ≤ 10) and the score has ≤ 8
                # places, points are their exact product: points × 10⁶ = e × score8 / 10^(p+2),
                # rounded half-up (when the product fits int64: e × score < 9·10¹⁰).
                e_column = table_e[:, position]
                e = e_column.take(inverse)
                sure = known & (e >= 0)
                if e_column.max(initial=0) * 100 >= 9e10:
                    sure &= np.where(sure, e, 0) * np.where(sure, value, 0.0) < 9e10
                product = np.where(sure, e, 0) * whole  # whole is 0 where not known
                p_column = table_p[:, position]
                if len(p_column) and (p_column == p_column[0]).all():
                    unit = POWERS[p_column[0] + 2]
                else:
                    unit = POWERS[np.where(sure, p_column.take(inverse), 0) + 2]
                quotient, remainder = np.divmod(product, unit)
                points6[:, k] = np.where(sure, quotient + (2 * remainder >= unit), points)
                points_near[:, k] = near_points & ~sure
            dim_score[:, d] = np.where(has_dim[:, d], total / dim_present[:, d], np.nan)
            dims_published[:, d], dim_near[:, d] = _round(dim_score[:, d], 10, MARGIN_1)
            if self.weight_ints is not None:
                # dimension × 10 = numerator / (denominator × 10⁷), rounded half-up: exact.
                unit_d = np.where(known_dim, denominator * 10_000_000, 1)
                quotient, remainder = np.divmod(numerator, unit_d)
                dims_published[:, d] = np.where(
                    known_dim, quotient + (2 * remainder >= unit_d), dims_published[:, d]
                )
                dim_near[:, d] &= ~known_dim
        del present

        churn_w = np.array([float(self.model.dimensions[d].weight) for d in self.churn_dims])
        churn_scores = dim_score[:, self.churn_dims]
        churn_has = has_dim[:, self.churn_dims]
        churn_present = churn_has @ churn_w if self.churn_dims else np.zeros(n)
        churn = np.where(
            churn_present > 0,
            np.where(churn_has, churn_scores * churn_w, 0.0).sum(axis=1) / churn_present,
            np.nan,
        )
        if self.platform_dim is not None:
            platform = dim_score[:, self.platform_dim]
        else:
            platform = np.full(n, np.nan)
        has_c, has_p = ~np.isnan(churn), ~np.isnan(platform)
        comp_present = has_c * self.churn_weight + has_p * self.platform_weight
        quantitative = np.where(
            comp_present > 0,
            (
                np.where(has_c, churn * self.churn_weight, 0.0)
                + np.where(has_p, platform * self.platform_weight, 0.0)
            )
            / comp_present,
            np.nan,
        )

        # Caps: the first rule whose signal count reaches its minimum.
        config = self.model.config
        rule = np.full(n, NONE, dtype=np.int64)
        for index, cap_rule in enumerate(config.cap_rules):
            name = (
                f"{cap_rule.severity}_confirmed" if cap_rule.confirmed_only else cap_rule.severity
            )
            counts = table.signals[:, SIGNAL_FIELDS.index(name)]
            rule[(rule == NONE) & (counts >= cap_rule.min_count)] = index
        caps = np.array([float(r.value) for r in config.cap_rules] + [np.nan])[rule]
        has_q = ~np.isnan(quantitative)
        applied = (rule != NONE) & has_q & (caps < quantitative)
        final = np.where(applied, caps, quantitative)
        exact |= (rule != NONE) & has_q & (np.abs(caps - quantitative) < COMPARE_MARGIN)
        if not all(float_exact(r.value) for r in config.cap_rules):
            exact |= rule != NONE

        coverage10: NDArray[np.int64]
        if self.coverage_ints is not None:
            _, model_total, floor_numerator, floor_scale = self.coverage_ints
            if model_total:
                coverage10 = (2000 * backed_int + model_total) // (2 * model_total)
                below = 100 * floor_scale * backed_int < floor_numerator * model_total
            else:
                coverage10 = np.zeros(n, dtype=np.int64)
                below = np.full(n, self.min_coverage > 0)
        else:
            coverage: NDArray[np.float64] = (
                100 * (dim_present * self.shares).sum(axis=1) / self.total_model_weight
                if self.total_model_weight
                else np.zeros(n)
            )
            exact |= np.abs(coverage - self.min_coverage) < COMPARE_MARGIN
            coverage10, near = _round(coverage, 10, MARGIN_1)
            exact |= near
            below = coverage < self.min_coverage

        published: dict[str, NDArray[np.int64]] = {}
        for name, values in (
            ("quantitative", quantitative),
            ("final", final),
            ("churn", churn),
        ):
            published[name], near = _round(values, 10, MARGIN_1)
            exact |= near
        # Platform Value is the platform dimension's score: rounded (and resolved) with it.
        if self.platform_dim is not None:
            published["platform"] = dims_published[:, self.platform_dim].copy()
        else:
            published["platform"] = np.full(n, NONE, dtype=np.int64)
        final_published = published["final"]
        tier = np.full(n, len(self.tier_floors), dtype=np.int64)  # Insufficient Data
        for index in range(len(self.tier_floors) - 1, -1, -1):
            tier[final_published >= self.tier_floors[index]] = index
        thin = (final_published == NONE) | below
        # A matching cap rule overrides the coverage floor: the tier of the capped final score,
        # or of the cap itself for an account with no score (DESIGN §3).
        tier[thin & (rule == NONE)] = len(self.tier_floors)
        no_score = thin & (rule != NONE) & (final_published == NONE)
        tier[no_score] = self.cap_tiers[rule[no_score]]
        return Result(
            quantitative=published["quantitative"],
            final=final_published,
            churn_risk=published["churn"],
            platform_value=published["platform"],
            dimensions=dims_published,
            coverage=coverage10,
            tier=tier,
            rule=rule,
            applied=applied,
            low_coverage=below,
            status=status,
            score=score4,
            effective=effective,
            points=points6,
            exact=exact,
            score_near=score_near,
            points_near=points_near,
            dimension_near=dim_near,
            keys=keys,
        )

    # ----------------------------------------------------------------------------------------

    def _multiplier(self, d: int, key: int, slots: Sequence[int]) -> Decimal:
        """The dimension's multiplier for a pattern of data, as :meth:`Model.score_compact`
        computes it (same operations, same order)."""
        cached = self._multipliers.get((d, key))
        if cached is None:
            cached = self._multipliers[d, key] = self._compute_multiplier(d, key, slots)
        return cached

    def _compute_multiplier(self, d: int, key: int, slots: Sequence[int]) -> Decimal:
        model = self.model
        dim = model.dimensions[d]
        comp = model.config.component_weights
        zero = Decimal(0)
        dim_total = zero
        for position, metric in enumerate(dim.metrics):
            if key >> slots[position] & 1:
                dim_total += metric.weight
        context = key >> 40
        has_platform = bool(context & 1)
        churn_has = context >> 1
        churn_present = zero
        for position, index in enumerate(self.churn_dims):
            if churn_has >> position & 1:
                churn_present += model.dimensions[index].weight
        has_churn = churn_present != 0
        components = {CHURN_RISK: has_churn, PLATFORM_VALUE: has_platform}
        comp_present = sum((comp.get(k, zero) for k, has in components.items() if has), zero)
        if not dim_total or not comp_present or not components.get(dim.component, False):
            return zero
        numerator = comp.get(dim.component, zero)
        denominator = dim_total * comp_present
        if dim.component == CHURN_RISK:
            numerator *= dim.weight
            denominator *= churn_present
        return numerator / denominator

    def _slot_weights(self) -> list[Decimal]:
        return [m.weight for d in self.model.dimensions for m in d.metrics]

    def _band_integers(self, k: int) -> tuple[int, NDArray[np.int64]] | None:
        """Slot ``k``'s thresholds per segment as integers of 10^-places (None: not possible)."""
        dim = self.model.dimensions[self.slot_dimension[k]]
        metric = dim.metrics[self.dim_slots[self.slot_dimension[k]].index(k)]
        bands = [metric.bands.get(s) for s in self.segments]
        values = [v for b in bands if b is not None for v in (b.green, b.yellow, b.red)]
        if not all(float_exact(v) for v in values):
            return None
        places = max([0, *(-int(v.as_tuple().exponent) for v in values)])
        if places > 9:
            return None
        table = np.zeros((3, len(self.segments)), dtype=np.int64)
        for s, band in enumerate(bands):
            if band is not None:
                for i, v in enumerate((band.green, band.yellow, band.red)):
                    table[i, s] = int(v.scaleb(places))
        return places, table

    def _effective_short(self, d: int, key: int, slots: Sequence[int]) -> list[tuple[int, int]]:
        """Effective weights as (e, p) with weight = e × 10^-p exactly (p ≤ 10), else (-1, 0)."""
        multiplier = self._multiplier(d, key, slots)
        out = []
        for metric in self.model.dimensions[d].metrics:
            weight = metric.weight * multiplier
            if not weight.is_finite() or weight < 0:
                out.append((NONE, 0))
                continue
            places = max(0, -int(weight.normalize().as_tuple().exponent))
            if places > 10:
                out.append((NONE, 0))
            else:
                out.append((int(weight.scaleb(places)), places))
        return out

    def _slot_score(
        self,
        table: Table,
        k: int,
        here: NDArray[np.bool_],
        segment: NDArray[np.int64],
        exact: NDArray[np.bool_],
    ) -> tuple[
        NDArray[np.float64],
        NDArray[np.int64],
        NDArray[np.bool_],
        NDArray[np.bool_],
        NDArray[np.int64],
    ]:
        """Slot ``k``'s normalised scores: the floats (NaN = no value), rounded to 4 places,
        where that rounding is in doubt, and where the exact score × 10⁸ (``whole``) is known."""
        raw = table.values[:, self.slot_column[k]]
        green = self.bands[0, :, k][segment]
        yellow = self.bands[1, :, k][segment]
        red = self.bands[2, :, k][segment]
        exact |= here & np.isnan(green)  # a segment without thresholds: the exact rule
        if self.lower[k]:
            top, bottom = raw <= green, raw >= red
            upper = raw <= yellow
            part = np.where(
                upper,
                100 - 50 * (raw - green) / (yellow - green),
                50 - 50 * (raw - yellow) / (red - yellow),
            )
        else:
            top, bottom = raw >= green, raw <= red
            upper = raw >= yellow
            part = np.where(
                upper,
                100 - 50 * (green - raw) / (green - yellow),
                50 - 50 * (yellow - raw) / (yellow - red),
            )
        value = np.where(top, 100.0, np.where(bottom, 0.0, part))
        value[~here] = np.nan
        rounded, near = _round(value, 10_000, MARGIN_4)
        whole = self._whole_score(table, k, raw, here, segment, top, bottom, upper)
        if whole is None:
            nothing = np.zeros(len(raw), dtype=bool)
            return value, rounded, near, nothing, np.zeros(len(raw), dtype=np.int64)
        known, exact_score = whole
        return value, rounded, near, known, np.where(known, exact_score, 0)

    def _whole_score(
        self,
        table: Table,
        k: int,
        raw: NDArray[np.float64],
        present: NDArray[np.bool_],
        segment: NDArray[np.int64],
        top: NDArray[np.bool_],
        bottom: NDArray[np.bool_],
        upper: NDArray[np.bool_],
    ) -> tuple[NDArray[np.bool_], NDArray[np.int64]] | None:
        """Where slot ``k``'s score has at most 8 decimal places, that score × 10⁸, exactly.

        With every value and threshold scaled to integers (``places`` decimals), the score on
        a slope is ``100 − 50·(v − g)/(y − g)`` (or its mirror): a whole number of 10⁻⁸ exactly
        when ``5·10⁹·(v − g)`` is a multiple of ``y − g``. Elsewhere (or when the numbers are
        too large for int64) the float is checked instead.
        """
        if table.places is None:
            return None
        ints = self.band_ints[k]
        if ints is None:
            return None
        band_places, band_table = ints
        places = max(table.places[self.slot_column[k]], band_places)
        if places > 9:
            return None
        scale = 10**places
        largest = float(np.nanmax(np.abs(raw), initial=0.0)) * scale
        widest = np.abs(band_table).max(initial=0) * 10 ** (places - band_places)
        if largest >= 5e8 or widest >= 5e8:  # 5·10⁹ × (v − g) must fit int64
            return None
        v = np.rint(np.where(present, raw, 0.0) * scale).astype(np.int64)
        g, y, r = (band_table[i][segment] * 10 ** (places - band_places) for i in range(3))
        if self.lower[k]:
            top_num, top_den = v - g, y - g
            low_num, low_den = v - y, r - y
        else:
            top_num, top_den = g - v, g - y
            low_num, low_den = y - v, y - r
        numerator = np.where(upper, top_num, low_num) * 5_000_000_000
        denominator = np.where(upper, top_den, low_den)
        slope = present & ~top & ~bottom & (denominator > 0)
        safe = np.where(slope, denominator, 1)
        quotient, remainder = np.divmod(numerator, safe)
        base = np.where(upper, 10_000_000_000, 5_000_000_000)
        whole = np.where(top, 10_000_000_000, np.where(bottom, 0, base - quotient))
        known = present & (top | bottom | (slope & (remainder == 0)))
        return known, whole

    def _effective_for(self, d: int, key: int, slots: Sequence[int]) -> list[int]:
        cache_key = (d, key)
        cached = self._effective.get(cache_key)
        if cached is None:
            multiplier = self._multiplier(d, key, slots)
            cached = self._effective[cache_key] = [
                _scaled(m.weight * multiplier, Q8) for m in self.model.dimensions[d].metrics
            ]
        return cached

    def _multiplier_weights(self, d: int, key: int, slots: Sequence[int]) -> list[float]:
        multiplier = self._multiplier(d, key, slots)
        return [float(m.weight * multiplier) for m in self.model.dimensions[d].metrics]


def _coverage_integers(
    model: Model,
) -> tuple[NDArray[np.int64], int, int, int] | None:
    """Coverage in integers: each slot's weight × its dimension's share of the model, all
    scaled to one power of ten, their total, and the coverage floor as numerator and scale.
    None when the config's numbers do not fit int64 comfortably (then floats are checked)."""
    products = [m.weight * d.model_share for d in model.dimensions for m in d.metrics]
    floor = model.config.min_coverage_pct
    if not all(p.is_finite() for p in products) or not floor.is_finite():
        return None
    places = max([0, *(-int(p.as_tuple().exponent) for p in products)])
    floor_places = max(0, -int(floor.as_tuple().exponent))
    if places > 12 or floor_places > 6:
        return None
    scaled = [int(p.scaleb(places)) for p in products]
    total = sum(scaled)
    floor_scale = 10**floor_places
    floor_numerator = int(floor.scaleb(floor_places))
    limit = 2**62
    if (
        min(scaled, default=0) < 0
        or 2000 * total + total >= limit
        or 100 * floor_scale * total >= limit
        or abs(floor_numerator) * total >= limit
    ):
        return None
    return np.array(scaled, dtype=np.int64), total, floor_numerator, floor_scale


def resolve(
    vmodel: VectorModel,
    result: Result,
    segment: NDArray[np.int64],
    raw_values: Callable[[int, NDArray[np.intp]], list[Decimal | None]],
) -> int:
    """Decide with the exact rule the cells and dimensions the floats left open (in accounts
    not marked ``exact``, which are recomputed whole). ``raw_values(metric column, accounts)``
    gives exact values. Returns how many cells and dimensions were decided."""
    if result.score_near is None or result.points_near is None or result.keys is None:
        return 0
    model = vmodel.model
    slot_metric = [metric for dim in model.dimensions for metric in dim.metrics]
    open_rows = ~result.exact
    keys = result.keys
    done = 0
    known: dict[tuple[int, int], Decimal] = {}  # (slot, account) → exact score, for dimensions
    for k in range(vmodel.slots):
        score_rows = np.flatnonzero(result.score_near[:, k] & open_rows)
        points_rows = np.flatnonzero(result.points_near[:, k] & open_rows)
        if not len(score_rows) and not len(points_rows):
            continue
        rows = np.union1d(score_rows, points_rows)
        metric = slot_metric[k]
        bands = [metric.bands.get(name) for name in vmodel.segments]
        lower = metric.lower_is_better
        raws = raw_values(vmodel.slot_column[k], rows)
        exact = {
            row: normalise(raw, bands[s], lower)  # type: ignore[arg-type]
            for row, raw, s in zip(rows.tolist(), raws, segment[rows].tolist(), strict=True)
        }
        if len(score_rows):
            result.score[score_rows, k] = [_scaled(exact[i], Q4) for i in score_rows.tolist()]
        if len(points_rows):
            d = vmodel.slot_dimension[k]
            weights: dict[int, Decimal] = {}
            values = []
            for i, key in zip(points_rows.tolist(), keys[points_rows, d].tolist(), strict=True):
                weight = weights.get(key)
                if weight is None:
                    multiplier = vmodel._multiplier(d, key, vmodel.dim_slots[d])
                    weight = weights[key] = metric.weight * multiplier
                values.append(_scaled(weight * exact[i], Q6))
            result.points[points_rows, k] = values
        done += len(score_rows) + len(points_rows)
        known.update(((k, i), v) for i, v in exact.items())
    if result.dimension_near is not None:
        zero = Decimal(0)
        for i, d in zip(*np.nonzero(result.dimension_near & open_rows[:, None]), strict=True):
            total = present = zero
            for k in vmodel.dim_slots[d]:
                if result.status[i, k] == SCORED:
                    score = known.get((k, int(i)))
                    if score is None:
                        metric = slot_metric[k]
                        (raw,) = raw_values(vmodel.slot_column[k], np.array([i]))
                        name = vmodel.segments[segment[i]]
                        assert raw is not None
                        score = normalise(raw, metric.bands[name], metric.lower_is_better)
                    weight = slot_metric[k].weight
                    total += weight * score
                    present += weight
            result.dimensions[i, d] = _scaled(total / present if present else None, Q1)
            if d == vmodel.platform_dim:
                result.platform_value[i] = result.dimensions[i, d]
            done += 1
    return done


def _round(
    values: NDArray[np.float64], scale: int, margin: float
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Half-up rounding of non-negative ``values`` to 1/``scale`` as integers (NaN → -1), and
    where the float was too close to a half to be sure."""
    scaled = values * scale
    floor = np.floor(scaled)
    fraction = scaled - floor
    near = np.abs(fraction - 0.5) < margin
    rounded = np.where(np.isnan(values), NONE, floor + (fraction >= 0.5))
    return rounded.astype(np.int64), near & ~np.isnan(values)


# --------------------------------------------------------------------------------------------
# The exact rule, into the same integer form


@dataclass(frozen=True, slots=True)
class ExactRow:
    quantitative: int
    final: int
    churn_risk: int
    platform_value: int
    dimensions: list[int]
    coverage: int
    tier: int
    rule: int
    applied: bool
    low_coverage: bool
    status: list[int]
    score: list[int]
    effective: list[int]
    points: list[int]


def exact_row(vmodel: VectorModel, account: AccountInput, compact: CompactScore) -> ExactRow:
    """One account scored with the ``Decimal`` rule (``compact`` from
    :meth:`Model.score_compact`), in the integer form of :class:`Result`."""
    model = vmodel.model
    config = model.config
    score = compact.score
    status: list[int] = []
    scores: list[int] = []
    effective: list[int] = []
    points: list[int] = []
    for dim, metric_scores, multiplier in zip(
        model.dimensions, compact.metric_scores, compact.multipliers, strict=True
    ):
        for metric, metric_score in zip(dim.metrics, metric_scores, strict=True):
            if metric_score is None:
                status.append(UNAVAILABLE_CODE if metric.name in account.unavailable else MISSING)
                scores.append(NONE)
                effective.append(0)
                points.append(NONE)
                continue
            weight = metric.weight * multiplier
            status.append(SCORED)
            scores.append(_scaled(metric_score, Q4))
            effective.append(_scaled(weight, Q8))
            points.append(_scaled(weight * metric_score, Q6))
    labels = config.tier_labels
    rule = score.cap.rule
    return ExactRow(
        quantitative=_scaled(score.quantitative, Q1),
        final=_scaled(score.final, Q1),
        churn_risk=_scaled(score.churn_risk, Q1),
        platform_value=_scaled(score.platform_value, Q1),
        dimensions=[_scaled(score.dimensions.get(d.name), Q1) for d in model.dimensions],
        coverage=_scaled(score.coverage_pct, Q1),
        tier=labels.index(score.tier),
        rule=NONE if rule is None else config.cap_rules.index(rule),
        applied=score.cap.applied,
        low_coverage=score.low_coverage,
        status=status,
        score=scores,
        effective=effective,
        points=points,
    )


def put(result: Result, index: int, row: ExactRow) -> None:
    """Replace account ``index`` of ``result`` with its exact row."""
    result.quantitative[index] = row.quantitative
    result.final[index] = row.final
    result.churn_risk[index] = row.churn_risk
    result.platform_value[index] = row.platform_value
    result.dimensions[index] = row.dimensions
    result.coverage[index] = row.coverage
    result.tier[index] = row.tier
    result.rule[index] = row.rule
    result.applied[index] = row.applied
    result.low_coverage[index] = row.low_coverage
    result.status[index] = row.status
    result.score[index] = row.score
    result.effective[index] = row.effective
    result.points[index] = row.points


def signal_row(signals: SignalCounts) -> list[int]:
    return [int(getattr(signals, name)) for name in SIGNAL_FIELDS]


def empty_result(n: int, dims: int, slots: int) -> Result:
    """A result to fill account by account with :func:`put` (the all-exact path)."""

    def ints(*shape: int) -> NDArray[np.int64]:
        return np.full(shape, NONE, dtype=np.int64)

    return Result(
        quantitative=ints(n),
        final=ints(n),
        churn_risk=ints(n),
        platform_value=ints(n),
        dimensions=ints(n, dims),
        coverage=ints(n),
        tier=ints(n),
        rule=ints(n),
        applied=np.zeros(n, dtype=bool),
        low_coverage=np.zeros(n, dtype=bool),
        status=np.zeros((n, slots), dtype=np.int8),
        score=ints(n, slots),
        effective=np.zeros((n, slots), dtype=np.int64),
        points=ints(n, slots),
        exact=np.ones(n, dtype=bool),
    )
