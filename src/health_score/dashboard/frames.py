"""Run artifacts as pandas frames, and the tables the views show.

Only reshaping and arithmetic on published numbers (sums, differences, counts): no scoring rule
lives here. Frames returned by these functions are treated as read-only by callers (they may be
shared through Streamlit's caches).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import pandas as pd  # type: ignore[import-untyped]  # pandas ships no type information

from health_score.csvsafe import safe_cell, unescape_cell
from health_score.dashboard.runs import METRICS, SCORES, RunError
from health_score.loaders.csv_output import (
    CONTEXT_COLUMNS,
    METRIC_COLUMNS,
    SCORE_COLUMNS_HEAD,
    SCORE_COLUMNS_TAIL,
)
from health_score.loaders.explanation import metric_columns
from health_score.scoring.spec import DEFAULT_TIER_LABELS, INSUFFICIENT_DATA

if TYPE_CHECKING:
    from health_score.backtest.report import InputSignal as SignalLike
    from health_score.backtest.stats import TierRow as TierRowLike
    from health_score.dashboard.validity import LeadCapture as LeadLike

#: The pipeline's tier order when a run's config cannot tell (labels of the default config).
TEXT_SCORE_COLUMNS = (
    "account_id",
    "account_name",
    "segment",
    "health_tier",
    "modifier_applied",
    "cap_rule",
    "owner",  # context from Salesforce (empty: unknown, and in runs before it)
    "renewal_date",  # YYYY-MM-DD
)
#: Context numbers (NaN: unknown, and in runs before they were written).
CONTEXT_NUMBERS = ("arr", "days_to_renewal")
COUNT_COLUMNS = ("critical_count", "moderate_count", "watch_count", "critical_confirmed")
REQUIRED_SCORE_COLUMNS = ("account_id", "segment", "final_score", "health_tier", "coverage_pct")
METRIC_NUMBERS = (
    "raw_value",
    "green",
    "yellow",
    "red",
    "normalised_score",
    "weight_in_dimension",
    "effective_weight",
    "points",
)
CAP_PART = "qualitative cap"
CHANGE_COLUMNS = ("previous_score", "previous_tier", "change")


def _read_text_csv(run_id: str, name: str, data: bytes) -> pd.DataFrame:
    try:
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RunError(f"run {run_id}: {name} is not a readable CSV ({first})") from None


def _numbers(run_id: str, name: str, frame: pd.DataFrame, columns: Iterable[str]) -> None:
    """Convert text columns to numbers in place; an empty cell is NaN, garbage is an error."""
    for column in columns:
        text = frame[column].str.strip()
        values = pd.to_numeric(text.where(text != ""), errors="coerce")
        bad = values.isna() & (text != "")
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise RunError(
                f"run {run_id}: {name} line {row + 2}, column {column}: expected a number, "
                f"got {text.iloc[row]!r}"
            )
        frame[column] = values.astype("float64")


def download_csv(frame: pd.DataFrame) -> bytes:
    """A table as a CSV download, its text cells guarded against formula injection
    (:mod:`health_score.csvsafe`); number columns are written as numbers."""
    guarded = frame.copy()
    for column in guarded.columns:
        if not pd.api.types.is_numeric_dtype(guarded[column]):  # text (str or object) columns
            guarded[column] = guarded[column].map(
                lambda v: safe_cell(v) if isinstance(v, str) else v
            )
    return str(guarded.to_csv(index=False)).encode("utf-8")


def dimension_columns(scores: pd.DataFrame) -> list[str]:
    """The per-dimension score columns (between the fixed head and tail of scores.csv)."""
    fixed = {*SCORE_COLUMNS_HEAD, *SCORE_COLUMNS_TAIL, *CONTEXT_COLUMNS, *CHANGE_COLUMNS}
    return [c for c in scores.columns if c not in fixed]


#: scores.csv columns holding true/false.
BOOLEAN_SCORE_COLUMNS = ("qualitative_override", "low_coverage")


def _renamed_old_cap_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """A scores.csv written before ``cap_value`` in today's layout: there ``qualitative_override``
    held the cap and ``modifier_applied`` true/false (the cap lowered the score); the rule in
    words was not written (empty)."""
    if "cap_value" in frame.columns or "qualitative_override" not in frame.columns:
        return frame
    renamed = frame.rename(
        columns={"qualitative_override": "cap_value", "modifier_applied": "qualitative_override"}
    )
    if "qualitative_override" not in renamed.columns:
        renamed["qualitative_override"] = ""
    renamed["modifier_applied"] = ""
    columns = [c for c in renamed.columns if c not in ("qualitative_override", "modifier_applied")]
    at = columns.index("cap_value")
    return renamed[[*columns[:at], "qualitative_override", "modifier_applied", *columns[at:]]]


def parse_scores(run_id: str, data: bytes) -> pd.DataFrame:
    frame = _renamed_old_cap_columns(_read_text_csv(run_id, SCORES, data))
    missing = [c for c in REQUIRED_SCORE_COLUMNS if c not in frame.columns]
    if missing:
        raise RunError(f"run {run_id}: {SCORES} lacks column(s) {', '.join(missing)}")
    for column in TEXT_SCORE_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
        else:  # the file's text cells are guarded against formula injection: undo that
            frame[column] = frame[column].map(unescape_cell)
    numeric = [
        c for c in frame.columns if c not in TEXT_SCORE_COLUMNS and c not in BOOLEAN_SCORE_COLUMNS
    ]
    _numbers(run_id, SCORES, frame, numeric)
    frame["account_name"] = frame["account_name"].where(
        frame["account_name"] != "", frame["account_id"]
    )
    for column in BOOLEAN_SCORE_COLUMNS:  # true/false; absent from older runs' files
        if column in frame.columns:
            frame[column] = frame[column].str.lower().eq("true")
        else:
            frame[column] = False
    for column in COUNT_COLUMNS:
        if column not in frame.columns:
            frame[column] = 0.0
    for column in CONTEXT_NUMBERS:
        if column not in frame.columns:
            frame[column] = float("nan")
    if "cap_value" not in frame.columns:
        frame["cap_value"] = float("nan")
    if frame["account_id"].duplicated().any():
        duplicate = frame.loc[frame["account_id"].duplicated(), "account_id"].iloc[0]
        raise RunError(f"run {run_id}: {SCORES} lists account {duplicate!r} more than once")
    return frame


def parse_metrics(run_id: str, data: bytes, name: str = METRICS) -> pd.DataFrame:
    """The metric-level explanation (``METRIC_COLUMNS``, numbers as floats): from
    ``metrics.npz``, or from the ``metrics.csv`` of a run written before it."""
    if data.startswith(b"PK"):  # a zip: metrics.npz
        try:
            columns = metric_columns(data)
        except ValueError as exc:
            raise RunError(f"run {run_id}: {name} is not readable ({exc})") from None
        return pd.DataFrame(columns, columns=list(METRIC_COLUMNS))
    frame = _read_text_csv(run_id, name, data)
    missing = [c for c in METRIC_COLUMNS if c not in frame.columns]
    if missing:
        raise RunError(f"run {run_id}: {name} lacks column(s) {', '.join(missing)}")
    for column in ("account_id", "dimension", "metric"):
        frame[column] = frame[column].map(unescape_cell)
    _numbers(run_id, name, frame, METRIC_NUMBERS)
    frame["lower_is_better"] = frame["lower_is_better"].str.lower().eq("true")
    return frame


# --------------------------------------------------------------------------------------------
# Portfolio


def tier_order(config_labels: Sequence[str], seen: Iterable[str]) -> list[str]:
    """Config tiers highest first, then Insufficient Data, then any other label seen."""
    order = list(config_labels) or list(DEFAULT_TIER_LABELS)
    order.append(INSUFFICIENT_DATA)
    order.extend(sorted({s for s in seen if s and s not in order}))
    return order


def filter_scores(
    scores: pd.DataFrame,
    *,
    segments: Sequence[str] | None = None,
    tiers: Sequence[str] | None = None,
    coverage: tuple[float, float] = (0.0, 100.0),
    capped: bool | None = None,
    search: str = "",
) -> pd.DataFrame:
    """Rows matching every filter given (None = no filter on that field)."""
    mask = pd.Series(True, index=scores.index)
    if segments is not None:
        mask &= scores["segment"].isin(list(segments))
    if tiers is not None:
        mask &= scores["health_tier"].isin(list(tiers))
    low, high = coverage
    mask &= scores["coverage_pct"].fillna(0.0).between(low, high)
    if capped is not None:
        mask &= scores["qualitative_override"] == capped
    needle = search.strip().lower()
    if needle:
        mask &= scores["account_id"].str.lower().str.contains(needle, regex=False) | scores[
            "account_name"
        ].str.lower().str.contains(needle, regex=False)
    return scores[mask]


def tier_counts(scores: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    counts = scores["health_tier"].value_counts()
    total = int(counts.sum())
    rows = [
        {
            "tier": tier,
            "accounts": int(counts.get(tier, 0)),
            "share_pct": round(100 * int(counts.get(tier, 0)) / total, 1) if total else 0.0,
        }
        for tier in order
    ]
    return pd.DataFrame(rows, columns=["tier", "accounts", "share_pct"])


def histogram(
    scores: pd.DataFrame, column: str, width: float, by: str | None = None
) -> pd.DataFrame:
    """Counts per ``width``-wide bin of ``column`` from 0 to 100 (the top bin includes 100)."""
    values = scores[[column, *([by] if by else [])]].dropna(subset=[column])
    bins = (values[column] // width).clip(upper=(100 // width) - 1) * width
    grouped = values.assign(bin_start=bins).groupby(
        ["bin_start", *([by] if by else [])], observed=True
    )
    frame = grouped.size().reset_index(name="accounts")
    frame["bin_end"] = frame["bin_start"] + width
    return frame


# --------------------------------------------------------------------------------------------
# Accounts


def with_change(current: pd.DataFrame, earlier: pd.DataFrame | None) -> pd.DataFrame:
    """Add the previous run's score and tier, and the change in final score."""
    if earlier is None:
        return current.assign(previous_score=float("nan"), previous_tier="", change=float("nan"))
    before = earlier[["account_id", "final_score", "health_tier"]].rename(
        columns={"final_score": "previous_score", "health_tier": "previous_tier"}
    )
    out = current.merge(before, on="account_id", how="left")
    out["previous_tier"] = out["previous_tier"].fillna("")
    out["change"] = (out["final_score"] - out["previous_score"]).round(1)
    return out


def account_table(scores: pd.DataFrame) -> pd.DataFrame:
    """The columns the accounts view shows, in reading order."""
    dims = dimension_columns(scores)
    columns = [
        "account_id",
        "account_name",
        "segment",
        "final_score",
        "health_tier",
        "change",
        "previous_score",
        "previous_tier",
        "quantitative_score",
        "churn_risk_score",
        "platform_value_score",
        *dims,
        "coverage_pct",
        "qualitative_override",
        "modifier_applied",
        "cap_value",
        "cap_rule",
    ]
    return scores[[c for c in columns if c in scores.columns]]


# --------------------------------------------------------------------------------------------
# Drill-down


def account_metrics(metrics: pd.DataFrame, account_id: str) -> pd.DataFrame:
    return metrics[metrics["account_id"] == account_id].drop(columns=["account_id"])


def contributions(rows: pd.DataFrame, score: Mapping[str, object]) -> pd.DataFrame:
    """Parts that add up to the final score: each scored metric's points, and, when a cap
    lowered the score, the cap's (negative) part = cap − the sum of the metric points."""
    scored = rows[rows["status"] == "scored"]
    parts = pd.DataFrame(
        {
            "part": scored["metric"] + " (" + scored["dimension"] + ")",
            "dimension": scored["dimension"],
            "points": scored["points"].fillna(0.0),
        }
    )
    if bool(score.get("qualitative_override")):  # the cap lowered the score
        cap = float(str(score.get("cap_value")))
        rule = str(score.get("cap_rule") or "")
        cap_row = {
            "part": f"{CAP_PART} ({rule})" if rule else CAP_PART,
            "dimension": CAP_PART,
            "points": cap - float(parts["points"].sum()),
        }
        parts = pd.concat([parts, pd.DataFrame([cap_row])], ignore_index=True)
    return parts.reset_index(drop=True)


def history(account_id: str, runs: Sequence[tuple[str, str, pd.DataFrame]]) -> pd.DataFrame:
    """The account's score in each run: ``runs`` are (period, run_id, scores) oldest first."""
    rows = []
    for period, run_id, scores in runs:
        match = scores[scores["account_id"] == account_id]
        if match.empty:
            continue
        row = match.iloc[0]
        rows.append(
            {
                "period": period,
                "run_id": run_id,
                "final_score": row["final_score"],
                "health_tier": row["health_tier"],
                "coverage_pct": row["coverage_pct"],
            }
        )
    return pd.DataFrame(
        rows, columns=["period", "run_id", "final_score", "health_tier", "coverage_pct"]
    )


# --------------------------------------------------------------------------------------------
# What-if and trends


def migration_matrix(before: pd.Series, after: pd.Series, order: Sequence[str]) -> pd.DataFrame:
    """Accounts per (tier before, tier after); ``before``/``after`` are tiers by account id."""
    joined = pd.DataFrame({"from": before, "to": after}).dropna()
    matrix = pd.crosstab(joined["from"], joined["to"])
    labels = [*order, *sorted((set(matrix.index) | set(matrix.columns)) - set(order))]
    matrix = matrix.reindex(index=labels, columns=labels, fill_value=0).astype("int64")
    matrix.index.name = "from \\ to"
    matrix.columns.name = None
    return matrix


def tier_mix(runs: Sequence[tuple[str, Mapping[str, int]]], order: Sequence[str]) -> pd.DataFrame:
    """Long table (period, tier, accounts, share_pct) from each period's tier counts."""
    rows = []
    for period, tiers in runs:
        total = sum(tiers.values())
        for tier in [*order, *(t for t in tiers if t not in order)]:
            count = int(tiers.get(tier, 0))
            rows.append(
                {
                    "period": period,
                    "tier": tier,
                    "accounts": count,
                    "share_pct": round(100 * count / total, 1) if total else 0.0,
                }
            )
    return pd.DataFrame(rows, columns=["period", "tier", "accounts", "share_pct"])


def dimension_points(metrics: pd.DataFrame) -> pd.DataFrame:
    """Points each dimension contributes to each account's quantitative score."""
    table = metrics.pivot_table(
        index="account_id", columns="dimension", values="points", aggfunc="sum", fill_value=0.0
    )
    table.columns.name = None
    return table


def movers(
    before: pd.DataFrame,
    after: pd.DataFrame,
    before_points: pd.DataFrame,
    after_points: pd.DataFrame,
    top: int,
) -> pd.DataFrame:
    """The ``top`` accounts whose final score changed most between two runs, and what moved
    them: the change of each dimension's points and of the cap (these add up to the change,
    up to the one-decimal rounding of published scores)."""
    keep = ["account_id", "account_name", "final_score", "quantitative_score", "health_tier"]
    joined = before[keep].merge(after[keep], on="account_id", suffixes=("_before", "_after"))
    joined = joined.dropna(subset=["final_score_before", "final_score_after"])
    joined["change"] = (joined["final_score_after"] - joined["final_score_before"]).round(1)
    joined = joined[joined["change"] != 0]
    joined = joined.reindex(joined["change"].abs().sort_values(ascending=False).index).head(top)
    dims = list(dict.fromkeys([*before_points.columns, *after_points.columns]))
    ids = joined["account_id"]
    delta = (
        after_points.reindex(ids).fillna(0.0)[dims].to_numpy()
        - before_points.reindex(ids).fillna(0.0).reindex(columns=dims, fill_value=0.0).to_numpy()
    )
    out = pd.DataFrame(
        {
            "account_id": ids.to_numpy(),
            "account_name": joined["account_name_after"].to_numpy(),
            "score_before": joined["final_score_before"].to_numpy(),
            "score_after": joined["final_score_after"].to_numpy(),
            "change": joined["change"].to_numpy(),
            "tier_before": joined["health_tier_before"].to_numpy(),
            "tier_after": joined["health_tier_after"].to_numpy(),
        }
    )
    for index, dim in enumerate(dims):
        out[f"Δ {dim}"] = delta[:, index].round(1)
    cap_before = (joined["final_score_before"] - joined["quantitative_score_before"]).fillna(0.0)
    cap_after = (joined["final_score_after"] - joined["quantitative_score_after"]).fillna(0.0)
    out["Δ cap"] = (cap_after - cap_before).round(1).to_numpy()
    parts = [f"Δ {d}" for d in dims] + ["Δ cap"]
    out["moved_by"] = [_drivers(row, parts) for row in out[parts].itertuples(index=False)]
    return out


def _drivers(values: Sequence[float], names: Sequence[str]) -> str:
    """The parts that explain most of the change, largest first (at most three)."""
    ranked = sorted(
        ((abs(v), name.removeprefix("Δ "), v) for v, name in zip(values, names, strict=True)),
        reverse=True,
    )
    total = sum(size for size, _, _ in ranked) or 1.0
    picked: list[str] = []
    covered = 0.0
    for size, name, value in ranked:
        if size < 0.05 or len(picked) == 3 or covered >= 0.8 * total:
            break
        picked.append(f"{name} {value:+.1f}")
        covered += size
    return ", ".join(picked) or "rounding only"


# --------------------------------------------------------------------------------------------
# Validity (the backtest's figures as the Validity page shows them)


def roc_frame(points: Sequence[tuple[float, float, float | None]]) -> pd.DataFrame:
    """ROC points: flagging every account at or below ``threshold``, the % of renewers
    flagged (false alarms) and the % of churners flagged (caught)."""
    return pd.DataFrame(
        {
            "renewers_flagged_pct": [round(100 * p[0], 2) for p in points],
            "churners_flagged_pct": [round(100 * p[1], 2) for p in points],
            "score_at_or_below": [p[2] for p in points],
        }
    )


def tier_churn(rows: Sequence[TierRowLike]) -> pd.DataFrame:
    """Churn per tier (tiers with no events kept, rate empty)."""
    return pd.DataFrame(
        {
            "tier": [r.tier for r in rows],
            "events": [r.accounts for r in rows],
            "churned": [r.churned for r in rows],
            "churn_rate_pct": [None if r.rate is None else round(100 * r.rate, 2) for r in rows],
            "lift": [None if r.lift is None else round(r.lift, 2) for r in rows],
        }
    )


def lead_capture(leads: Sequence[LeadLike]) -> pd.DataFrame:
    """Churner capture per lead window, with the reason when there is no figure."""
    return pd.DataFrame(
        {
            "lead time": [f"{c.lead_days}–{c.horizon_days} days" for c in leads],
            "events": [c.events for c in leads],
            "churners": [c.churners for c in leads],
            "flagged": [c.flagged for c in leads],
            "capture_pct": [c.capture_pct for c in leads],
            "note": [c.note for c in leads],
        }
    )


def _readable(name: str) -> str:
    words = name.removesuffix("_score").replace("_pct", " %").replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def signal_table(inputs: Sequence[SignalLike]) -> pd.DataFrame:
    """The per-input table: name, kind, coverage, AUC and interval as a person reads them."""
    rows = []
    for s in inputs:
        f = s.figure
        rows.append(
            {
                "input": _readable(s.name),
                "kind": s.kind,
                "coverage": "—" if s.coverage_pct is None else f"{s.coverage_pct:.0f} %",
                "AUC": "—" if f.value is None else f"{f.value:.3f}",
                "95 % interval": "too few events"
                if f.low is None or f.high is None
                else f"{f.low:.3f}–{f.high:.3f}",
                "events": f"{f.churners} churners, {f.renewers} renewers",
            }
        )
    columns = ["input", "kind", "coverage", "AUC", "95 % interval", "events"]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------------
# The worklist (Accounts) and the drill-down's explanation

#: A coloured mark before each tier name: the worklist's tier chips.
TIER_CHIPS = {
    "Champion": "🟢",
    "Healthy": "🔵",
    "At Risk": "🟠",
    "Critical": "🔴",
    INSUFFICIENT_DATA: "⚪",
}
#: The worklist's columns, as a person reads them (``account_id`` stays, for the drill-down).
WORKLIST_COLUMNS = {
    "account_name": "Account",
    "owner": "Owner",
    "tier_chip": "Tier",
    "final_score": "Score",
    "change": "Change",
    "previous_tier": "Previous tier",
    "arr": "ARR",
    "renewal_date": "Renewal",
    "days_to_renewal": "Days to renewal",
    "coverage_pct": "Coverage %",
    "capped_by": "Capped by",
    "segment": "Segment",
    "account_id": "Account ID",
}


def tier_chip(tier: str) -> str:
    return f"{TIER_CHIPS.get(tier, '◻️')} {tier}" if tier else ""


def tier_worsened(scores: pd.DataFrame, order: Sequence[str]) -> pd.Series:
    """True where the tier is lower (later in ``order``, Insufficient Data aside) than in the
    previous period."""
    rank = {t: i for i, t in enumerate(order) if t != INSUFFICIENT_DATA}
    now = scores["health_tier"].map(rank)
    before = scores["previous_tier"].map(rank)
    return (now > before).fillna(False).astype(bool)


def new_critical(scores: pd.DataFrame, critical: str = "Critical") -> pd.Series:
    """Critical now and not in the previous period (also when it had no previous score)."""
    return (scores["health_tier"] == critical) & (scores["previous_tier"] != critical)


def filter_worklist(
    scores: pd.DataFrame,
    order: Sequence[str],
    *,
    owners: Sequence[str] | None = None,
    worsened: bool = False,
    newly_critical: bool = False,
    renewal_within: int | None = None,
) -> pd.DataFrame:
    """Rows matching every filter given (``scores`` carries the change columns)."""
    mask = pd.Series(True, index=scores.index)
    if owners:
        mask &= scores["owner"].isin(list(owners))
    if worsened:
        mask &= tier_worsened(scores, order)
    if newly_critical:
        mask &= new_critical(scores)
    if renewal_within is not None:
        mask &= scores["days_to_renewal"].between(0, renewal_within)
    return scores[mask]


def attention_order(scores: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """Who needs attention first: tier worsened, then the biggest drop, then the lowest score,
    then the most ARR (at risk); ties by name. Insufficient Data rows are left to the caller."""
    keyed = scores.assign(
        _worse=~tier_worsened(scores, order),  # False (worsened) sorts first
        _change=scores["change"].fillna(0.0).clip(upper=0.0),  # a rise is no drop
        _arr=-scores["arr"].fillna(0.0),
    )
    keyed = keyed.sort_values(
        ["_worse", "_change", "final_score", "_arr", "account_name", "account_id"],
        kind="stable",
        na_position="last",
    )
    return keyed.drop(columns=["_worse", "_change", "_arr"])


def worklist(scores: pd.DataFrame, order: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scored accounts by attention, Insufficient Data accounts by ARR) with human columns."""
    insufficient = scores["health_tier"] == INSUFFICIENT_DATA
    ranked = attention_order(scores[~insufficient], order)
    apart = scores[insufficient].sort_values(
        ["arr", "account_name"], ascending=[False, True], na_position="last", kind="stable"
    )

    def shown(frame: pd.DataFrame) -> pd.DataFrame:
        capped = [
            f"{rule or 'cap'} ({value:g})" if lowered else ""
            for lowered, rule, value in zip(
                frame["qualitative_override"], frame["cap_rule"], frame["cap_value"], strict=True
            )
        ]
        out = frame.assign(
            arr=frame["arr"].round(0),
            tier_chip=frame["health_tier"].map(tier_chip),
            previous_tier=frame["previous_tier"].map(tier_chip),
            capped_by=capped,
        )
        return out[list(WORKLIST_COLUMNS)].rename(columns=WORKLIST_COLUMNS).reset_index(drop=True)

    return shown(ranked), shown(apart)


def metric_labels(thresholds: Mapping[str, object]) -> dict[tuple[str, str], tuple[str, str]]:
    """(dimension, metric) → (label, unit) from a thresholds.yaml mapping's ``description``
    and ``unit`` keys; a metric without a description gets its name made readable."""
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for dim, section in thresholds.items():
        if not isinstance(section, Mapping):
            continue
        for name, spec in section.items():
            if isinstance(spec, Mapping) and "lower_is_better" in spec:
                label = str(spec.get("description") or "") or _readable(str(name))
                out[(str(dim), str(name))] = (label, str(spec.get("unit") or ""))
    return out


def with_unit(value: object, unit: str) -> str:
    """A raw value as a person reads it: ``12 %``, ``3 days``, ``—`` when missing."""
    if value is None or (isinstance(value, float) and pd.isna(value)) or value == "":
        return "—"
    try:
        number = float(str(value))
    except ValueError:  # not a number: shown as it is
        text = str(value)
    else:  # one decimal from 1 up (55.1939 h → 55.2 h), two below (0.004 → 0)
        text = f"{round(number, 1 if abs(number) >= 1 else 2):g}"
    if unit in ("", "flag", "category", "points"):
        return text
    return f"{text}{unit}" if unit == "%" else f"{text} {unit}"


def label_of(labels: Mapping[tuple[str, str], tuple[str, str]], dim: str, metric: str) -> str:
    return labels.get((dim, metric), (_readable(metric), ""))[0]


def costs(
    rows: pd.DataFrame, labels: Mapping[tuple[str, str], tuple[str, str]], top: int = 5
) -> pd.DataFrame:
    """The scored metrics costing the most points: effective weight × (100 − score), largest
    first (only those costing at least 0.05 points)."""
    scored = rows[rows["status"] == "scored"]
    cost = scored["effective_weight"] * (100.0 - scored["normalised_score"])
    out = pd.DataFrame(
        {
            "metric": [
                label_of(labels, d, m)
                for d, m in zip(scored["dimension"], scored["metric"], strict=True)
            ],
            "dimension": scored["dimension"].to_numpy(),
            "value": [
                with_unit(v, labels.get((d, m), ("", ""))[1])
                for d, m, v in zip(
                    scored["dimension"], scored["metric"], scored["raw_value"], strict=True
                )
            ],
            "score": scored["normalised_score"].round(1).to_numpy(),
            "costs_points": cost.round(1).to_numpy(),
        }
    )
    out = out[out["costs_points"] >= 0.05]
    return (
        out.sort_values("costs_points", ascending=False, kind="stable")
        .head(top)
        .reset_index(drop=True)
    )


def parse_changes(run_id: str, data: bytes) -> pd.DataFrame:
    """A run's ``changes.csv`` (text cells unescaped; numbers as floats)."""
    frame = _read_text_csv(run_id, "changes.csv", data)
    needed = ("account_id", "part", "dimension", "raw_before", "raw_after", "points_change")
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise RunError(f"run {run_id}: changes.csv lacks column(s) {', '.join(missing)}")
    for column in frame.columns:
        frame[column] = frame[column].map(unescape_cell)
    numbers = [c for c in ("previous_final", "final", "change", "points_change") if c in frame]
    _numbers(run_id, "changes.csv", frame, numbers)
    return frame


#: changes.csv parts that are not a metric or the cap.
NOT_A_CHANGE = frozenset({"rounding", "unchanged", "appeared", "lost_score", "unscored"})


def account_changes(
    changes: pd.DataFrame,
    account_id: str,
    labels: Mapping[tuple[str, str], tuple[str, str]],
    top: int = 5,
) -> pd.DataFrame:
    """The account's biggest changes since the previous period: what moved (raw before →
    after) and by how many points, largest first (only those moving 0.05 points or more)."""
    rows = changes[(changes["account_id"] == account_id) & ~changes["part"].isin(NOT_A_CHANGE)]
    out = pd.DataFrame(
        {
            "what": [
                label_of(labels, d, p) if d else ("Qualitative cap" if p == "cap" else _readable(p))
                for d, p in zip(rows["dimension"], rows["part"], strict=True)
            ],
            "dimension": rows["dimension"].to_numpy(),
            "before": [
                with_unit(v, labels.get((d, p), ("", ""))[1])
                for d, p, v in zip(rows["dimension"], rows["part"], rows["raw_before"], strict=True)
            ],
            "after": [
                with_unit(v, labels.get((d, p), ("", ""))[1])
                for d, p, v in zip(rows["dimension"], rows["part"], rows["raw_after"], strict=True)
            ],
            "points": rows["points_change"].round(1).to_numpy(),
        }
    )
    out = out[out["points"].abs() >= 0.05]
    order = out["points"].abs().sort_values(ascending=False, kind="stable").index
    return out.reindex(order).head(top).reset_index(drop=True)


def readable_metrics(
    rows: pd.DataFrame, labels: Mapping[tuple[str, str], tuple[str, str]]
) -> pd.DataFrame:
    """The drill-down's metric table in a few narrow columns a person reads."""
    out = []
    for r in rows.itertuples(index=False):
        unit = labels.get((r.dimension, r.metric), ("", ""))[1]
        scored = r.status == "scored"
        sign = "≤" if r.lower_is_better else "≥"
        out.append(
            {
                "metric": label_of(labels, r.dimension, r.metric),
                "dimension": r.dimension,
                "value": with_unit(r.raw_value, unit) if scored else r.status,
                "green / red": f"{sign} {r.green:g} / {r.red:g}"
                if not pd.isna(r.green) and not pd.isna(r.red)
                else "",
                "score": round(float(r.normalised_score), 1) if scored else None,
                "weight %": round(100 * float(r.effective_weight), 1) if scored else None,
                "points": round(float(r.points), 2) if scored else None,
            }
        )
    columns = ["metric", "dimension", "value", "green / red", "score", "weight %", "points"]
    return pd.DataFrame(out, columns=columns)


# --------------------------------------------------------------------------------------------
# Portfolio deltas


def kpis(scores: pd.DataFrame) -> dict[str, float | None]:
    """The Portfolio's headline figures (None when there is nothing to take a median of)."""
    scored = scores["final_score"].dropna()
    return {
        "accounts": float(len(scores)),
        "median_score": float(scored.median()) if len(scored) else None,
        "capped": float(scores["qualitative_override"].sum()),
        "median_coverage": float(scores["coverage_pct"].median()) if len(scores) else None,
        "arr": float(scores["arr"].sum()) if scores["arr"].notna().any() else None,
    }


def arr_by_tier(scores: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """Accounts and ARR per tier (tiers without accounts kept), highest tier first."""
    rows = []
    known = float(scores["arr"].fillna(0.0).sum())
    for tier in order:
        mine = scores[scores["health_tier"] == tier]
        arr = float(mine["arr"].fillna(0.0).sum())
        rows.append(
            {
                "tier": tier,
                "accounts": len(mine),
                "arr": arr,
                "arr_share_pct": round(100 * arr / known, 1) if known else 0.0,
            }
        )
    return pd.DataFrame(rows, columns=["tier", "accounts", "arr", "arr_share_pct"])


def metric_movers(
    changes: pd.DataFrame, labels: Mapping[tuple[str, str], tuple[str, str]], top: int = 10
) -> pd.DataFrame:
    """The parts (metrics, the cap, weights, coverage) that moved the most points across the
    portfolio since the previous period: accounts moved down and up, and the points in all."""
    parts = changes[~changes["part"].isin(NOT_A_CHANGE) & (changes["points_change"].abs() >= 0.05)]
    if parts.empty:
        return pd.DataFrame(columns=["what", "dimension", "accounts down", "accounts up", "points"])
    grouped = parts.groupby(["dimension", "part"], sort=False)["points_change"]
    table = pd.DataFrame(
        {
            "down": grouped.apply(lambda p: int((p < 0).sum())),
            "up": grouped.apply(lambda p: int((p > 0).sum())),
            "points": grouped.sum().round(1),
        }
    ).reset_index()
    table["what"] = [
        label_of(labels, d, p) if d else ("Qualitative cap" if p == "cap" else _readable(p))
        for d, p in zip(table["dimension"], table["part"], strict=True)
    ]
    table = table.reindex(table["points"].abs().sort_values(ascending=False, kind="stable").index)
    out = table.rename(columns={"down": "accounts down", "up": "accounts up"})
    columns = ["what", "dimension", "accounts down", "accounts up", "points"]
    return out[columns].head(top).reset_index(drop=True)


def appeared_and_lost(changes: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Accounts scored now and not in the previous period, and those that lost their score."""
    columns = ["account_id", "account_name", "previous_final", "final", "tier", "previous_tier"]
    keep = [c for c in columns if c in changes.columns]
    appeared = changes[changes["part"] == "appeared"][keep].reset_index(drop=True)
    lost = changes[changes["part"] == "lost_score"][keep].reset_index(drop=True)
    return appeared, lost
