"""A plain-float reference scorer: what a competent engineer writes without the exactness rules.

The yardstick for ``benchmarks/scoring.py``: read a raw-metrics file, score every account with
ordinary ``float`` arithmetic (piecewise-linear normalisation, weighted means with the weight of
missing values shared out, coverage, caps, tiers from the score rounded half-up to one decimal)
and write one scores CSV row per account. No explanation file, no validation beyond ``float()``.
The config is read with the product's loader (YAML parsing is not what is being compared).

    python benchmarks/reference_scorer.py RAW.csv OUT.csv [--config config]
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from health_score.config import load_scoring_config  # noqa: E402
from health_score.scoring.qualitative import rule_in_words  # noqa: E402
from health_score.scoring.spec import CHURN_RISK, PLATFORM_VALUE, ScoringConfig  # noqa: E402

Band = tuple[float, float, float]


def normalise(value: float, band: Band, lower_is_better: bool) -> float:
    green, yellow, red = band
    if lower_is_better:
        if value <= green:
            return 100.0
        if value >= red:
            return 0.0
        if value <= yellow:
            return 100.0 - 50.0 * (value - green) / (yellow - green)
        return 50.0 - 50.0 * (value - yellow) / (red - yellow)
    if value >= green:
        return 100.0
    if value <= red:
        return 0.0
    if value >= yellow:
        return 100.0 - 50.0 * (green - value) / (green - yellow)
    return 50.0 - 50.0 * (yellow - value) / (yellow - red)


def weighted_mean(parts: list[tuple[float, float | None]]) -> float | None:
    total_weight = total = 0.0
    for weight, score in parts:
        if score is not None:
            total_weight += weight
            total += weight * score
    return total / total_weight if total_weight else None


def publish(value: float | None) -> float | None:
    return None if value is None else math.floor(value * 10 + 0.5) / 10


def fmt(value: float | None) -> str:
    return "" if value is None else f"{publish(value):.1f}"


class ReferenceScorer:
    def __init__(self, config: ScoringConfig) -> None:
        self.segments = sorted(config.segments)
        # dimension → [(metric, weight, lower_is_better, {segment: band})]
        self.dimensions = [
            (
                name,
                [
                    (
                        m.name,
                        float(m.weight),
                        m.lower_is_better,
                        {
                            s: (float(b.green), float(b.yellow), float(b.red))
                            for s, b in m.bands.items()
                        },
                    )
                    for m in spec.metrics
                ],
            )
            for name, spec in config.dimensions.items()
        ]
        self.churn_weights = {k: float(v) for k, v in config.churn_risk_weights.items()}
        self.churn_weight = float(config.component_weights.get(CHURN_RISK, 0))
        self.platform_weight = float(config.component_weights.get(PLATFORM_VALUE, 0))
        self.total_weight = sum(
            w * self._share(dim) for dim, metrics in self.dimensions for _, w, _, _ in metrics
        )
        self.rules = [
            (
                r.condition,
                r.severity,
                r.min_count,
                r.confirmed_only,
                float(r.value),
                r.value,
                rule_in_words(r),
            )
            for r in config.cap_rules
        ]
        self.tiers = [(float(t.min), t.label) for t in config.tiers]
        self.min_coverage = float(config.min_coverage_pct)
        self.dims = [d for d, _ in self.dimensions if d != PLATFORM_VALUE]

    def _share(self, dimension: str) -> float:
        if dimension == PLATFORM_VALUE:
            return self.platform_weight
        return self.churn_weights.get(dimension, 0.0) * self.churn_weight

    def score(
        self, segment: str, values: dict[str, float | None], signals: dict[str, int]
    ) -> list[str]:
        dim_scores: dict[str, float | None] = {}
        backed = 0.0
        for dim, metrics in self.dimensions:
            parts = []
            for metric, weight, lower, bands in metrics:
                value = values.get(metric)
                if value is None:
                    parts.append((weight, None))
                    continue
                parts.append((weight, normalise(value, bands[segment], lower)))
                backed += weight * self._share(dim)
            dim_scores[dim] = weighted_mean(parts)
        churn = weighted_mean([(w, dim_scores.get(d)) for d, w in self.churn_weights.items()])
        platform = dim_scores.get(PLATFORM_VALUE)
        quantitative = weighted_mean([(self.churn_weight, churn), (self.platform_weight, platform)])
        coverage = 100.0 * backed / self.total_weight if self.total_weight else 0.0
        final, cap_cell, applied, rule_name, words = quantitative, "", False, "", ""
        for condition, severity, min_count, confirmed, cap, literal, in_words in self.rules:
            key = f"{severity}_confirmed" if confirmed else severity
            if signals[key] >= min_count:
                cap_cell, rule_name, words = format(literal, "f"), condition, in_words
                if quantitative is not None and cap < quantitative:
                    final, applied = cap, True
                break
        published = publish(final)
        tier = "Insufficient Data"
        if published is not None and coverage >= self.min_coverage:
            tier = next((label for low, label in self.tiers if published >= low), tier)
        return [
            fmt(quantitative),
            fmt(final),
            tier,
            fmt(churn),
            fmt(platform),
            *(fmt(dim_scores.get(d)) for d in self.dims),
            fmt(coverage),
            "true" if applied else "false",
            words,
            cap_cell,
            rule_name,
        ]


def run(raw: Path, out: Path, config_dir: Path) -> int:
    scorer = ReferenceScorer(load_scoring_config(config_dir))
    metric_names = {m for _, metrics in scorer.dimensions for m, _, _, _ in metrics}
    count = 0
    with (
        raw.open(newline="", encoding="utf-8-sig") as source,
        out.open("w", newline="", encoding="utf-8") as target,
    ):
        reader = csv.reader(source)
        header = next(reader)
        metric_at = [(name, i) for i, name in enumerate(header) if name in metric_names]
        at = {name: i for i, name in enumerate(header)}
        writer = csv.writer(target, lineterminator="\n")
        writer.writerow(
            [
                "account_id",
                "account_name",
                "segment",
                "quantitative_score",
                "final_score",
                "health_tier",
                "churn_risk_score",
                "platform_value_score",
                *scorer.dims,
                "coverage_pct",
                "qualitative_override",
                "modifier_applied",
                "cap_value",
                "cap_rule",
                "critical_count",
                "moderate_count",
                "watch_count",
                "critical_confirmed",
            ]
        )
        for row in reader:
            values = {name: float(row[i]) if row[i] else None for name, i in metric_at}
            counts = {
                c: int(row[at[c]]) if c in at and row[at[c]] else 0
                for c in ("critical_count", "moderate_count", "watch_count", "critical_confirmed")
            }
            signals = {
                "critical": max(counts["critical_count"], counts["critical_confirmed"]),
                "moderate": counts["moderate_count"],
                "watch": counts["watch_count"],
                "critical_confirmed": counts["critical_confirmed"],
                "moderate_confirmed": 0,
                "watch_confirmed": 0,
            }
            account_id = row[at["account_id"]]
            writer.writerow(
                [
                    account_id,
                    row[at["account_name"]] or account_id,
                    row[at["segment"]],
                    *scorer.score(row[at["segment"]], values, signals),
                    *(str(v) for v in counts.values()),
                ]
            )
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("raw", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--config", type=Path, default=REPO / "config")
    args = parser.parse_args()
    count = run(args.raw, args.out, args.config)
    print(f"reference: scored {count:,} accounts")


if __name__ == "__main__":
    main()
