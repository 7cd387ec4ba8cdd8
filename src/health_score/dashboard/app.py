"""Health Score dashboard: why each score is what it is, and what new weights would do.

    health-score dashboard [--runs-dir output/runs | s3://bucket/prefix]
    streamlit run dashboard.py [-- --runs-dir output/runs | s3://bucket/prefix]   (a checkout)

The runs folder comes from ``--runs-dir``, else ``HSM_RUNS_DIR``, else ``output/runs``. Set
``DASHBOARD_PASSWORD`` (or ``DASHBOARD_PASSWORD`` in Streamlit secrets) to require a password.

A local ``.env`` is loaded first (never overriding the environment). This module is only the
view: run folders are read by ``health_score.dashboard.runs``, shaped by
``health_score.dashboard.frames``, and what-if scores come from ``health_score.scoring`` via
``health_score.dashboard.whatif``. No scoring rule lives here.
"""

from __future__ import annotations

import argparse
import hmac
import os
import sys
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd  # type: ignore[import-untyped]  # pandas ships no type information
import streamlit as st
import yaml
from streamlit.delta_generator import DeltaGenerator

from health_score.alerts import read_alerts
from health_score.backtest.report import verdict
from health_score.config import SOURCE_NAMES, ConfigError, load_scoring_config
from health_score.dashboard import frames
from health_score.dashboard.demo import DEFAULT_DEMO_ACCOUNTS, demo_available, first_run
from health_score.dashboard.runs import (
    CHANGES,
    CONFIG_FILES,
    RAW,
    SCORES,
    RunError,
    RunInfo,
    RunReader,
    latest,
    latest_ok_per_period,
    list_runs,
    open_runs,
    previous,
    read_metrics,
    require,
)
from health_score.dashboard.validity import (
    DEFAULT_HOLDOUT_MONTHS,
    EventTable,
    History,
    Validity,
    ValidityError,
    figure_rows,
    load_validity,
    open_history,
)
from health_score.dashboard.whatif import (
    Migration,
    WeightSet,
    WhatIf,
    apply_weights,
    sections_from_entered,
)
from health_score.envfile import load_local_env
from health_score.loaders.csv_output import METRIC_COLUMNS
from health_score.scoring.spec import ScoringConfig
from health_score.sources.credentials import missing_credentials

DEFAULT_RUNS_DIR = "output/runs"
VIEWS = (
    "Portfolio",
    "Accounts",
    "Account drill-down",
    "Alerts",
    "What-if",
    "Trends",
    "Validity",
    "Operations",
)
DRILLDOWN = "Account drill-down"
TIER_COLOURS = {
    "Champion": "#1a9850",
    "Healthy": "#91cf60",
    "At Risk": "#fdae61",
    "Critical": "#d73027",
    "Insufficient Data": "#9e9e9e",
}
#: One colour per dimension (and the cap), the same on every account's page.
DIMENSION_COLOURS = {
    "support_health": "#4c78a8",
    "financial_contract": "#f58518",
    "adoption_engagement": "#54a24b",
    "relationship_expansion": "#b279a2",
    "platform_value": "#72b7b2",
    frames.CAP_PART: "#e45756",
}
PRETTY = {
    "health_score": "Health Score components",
    "churn_risk": "Churn Risk dimensions",
    "support_health": "Support Health",
    "financial_contract": "Financial & Contract",
    "adoption_engagement": "Adoption & Engagement",
    "relationship_expansion": "Relationship & Expansion",
    "platform_value": "Platform Value",
    frames.CAP_PART: "Qualitative cap",
}


# --------------------------------------------------------------------------------------------
# Settings and the password gate


def runs_location() -> str:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--runs-dir")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return str(args.runs_dir or os.environ.get("HSM_RUNS_DIR") or DEFAULT_RUNS_DIR)


def expected_password() -> str | None:
    from_env = os.environ.get("DASHBOARD_PASSWORD")
    if from_env:
        return from_env
    try:
        for key in ("DASHBOARD_PASSWORD", "dashboard_password"):
            if key in st.secrets:
                return str(st.secrets[key])
    except FileNotFoundError:  # no secrets.toml: no password from there
        return None
    return None


def password_gate() -> None:
    """Stop the script here until the right password was given in this session."""
    expected = expected_password()
    if not expected or st.session_state.get("signed_in"):
        return
    st.title("Customer health scores")
    with st.form("sign-in"):
        given = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        if hmac.compare_digest(given.encode(), expected.encode()):
            st.session_state["signed_in"] = True
            st.rerun()
        st.error("Wrong password.")
    st.stop()


def problem(heading: str, detail: str, *, warn: bool = False) -> None:
    """A fixed heading in an error (or warning) box, then the detail as plain text: the detail
    carries manifest, file and vendor text, which must never render as Markdown or HTML."""
    (st.warning if warn else st.error)(heading)
    st.text(detail)


# --------------------------------------------------------------------------------------------
# Cached loading (run folders are immutable, so a run's files are cached for good)


@st.cache_resource(show_spinner=False)
def reader_for(location: str) -> RunReader:
    return open_runs(location)


@st.cache_data(ttl=15, show_spinner=False)
def runs_in(location: str) -> list[RunInfo]:
    return list_runs(reader_for(location))


@st.cache_data(show_spinner="Reading scores…", max_entries=64)
def scores_of(location: str, run_id: str) -> pd.DataFrame:
    return frames.parse_scores(run_id, require(reader_for(location), run_id, SCORES))


@st.cache_data(show_spinner="Reading metric detail…", max_entries=16)
def metrics_of(location: str, run_id: str) -> pd.DataFrame:
    name, data = read_metrics(reader_for(location), run_id)
    return frames.parse_metrics(run_id, data, name)


@st.cache_data(show_spinner=False, max_entries=16)
def dimension_points_of(location: str, run_id: str) -> pd.DataFrame:
    return frames.dimension_points(metrics_of(location, run_id))


@st.cache_resource(show_spinner=False, max_entries=64)
def config_of(location: str, run_id: str) -> ScoringConfig | str:
    """The scoring config the run used, or why it cannot be read."""
    folder = reader_for(location).local_folder(run_id, (RAW, *CONFIG_FILES))
    try:
        return load_scoring_config(folder / "config")
    except ConfigError as exc:
        return f"run {run_id}: its config/ folder cannot be loaded: {exc}"


@st.cache_resource(show_spinner="Reading the run's raw inputs…", max_entries=4)
def whatif_of(location: str, run_id: str) -> WhatIf | str:
    reader = reader_for(location)
    folder = reader.local_folder(run_id, (RAW, *CONFIG_FILES))
    if not (folder / RAW).is_file():
        return f"run {run_id} has no {RAW}, so its accounts cannot be re-scored"
    try:
        return WhatIf(folder / RAW, folder / "config")
    except (ConfigError, OSError) as exc:
        return f"run {run_id}: cannot re-score its inputs: {exc}"


@st.cache_resource(show_spinner="Reading the run history and outcomes…", max_entries=8)
def history_of(location: str, newest: str, include_degraded: bool) -> History | str:
    """The backtest's history, or why there is none yet (cached per newest run)."""
    try:
        return open_history(location, include_degraded=include_degraded)
    except ValidityError as exc:
        return f"The history cannot be read: {exc}"


@st.cache_resource(show_spinner="Backtesting the score against outcomes…", max_entries=8)
def validity_of(location: str, newest: str, include_degraded: bool) -> Validity | str:
    """The Validity page's figures, judged with the newest history run's config."""
    history = history_of(location, newest, include_degraded)
    if isinstance(history, str):
        return history
    config = config_of(location, history.runs[-1].run_id)
    if isinstance(config, str):
        return config
    try:
        return load_validity(history, config)
    except ValidityError as exc:
        return f"The history cannot be read: {exc}"


@st.cache_resource(show_spinner="Reading the matched events' raw inputs…", max_entries=4)
def event_table_of(
    location: str, newest: str, run_id: str, holdout_months: int, include_degraded: bool
) -> EventTable | str:
    """The what-if's events with their raw inputs, scored with run ``run_id``'s config."""
    history = history_of(location, newest, include_degraded)
    if isinstance(history, str):
        return history
    engine = whatif_of(location, run_id)
    if isinstance(engine, str):
        return engine
    reader = reader_for(location)

    def raw_path(other: str) -> Path | None:
        if reader.read(other, RAW) is None:
            return None
        return reader.local_folder(other, (RAW,)) / RAW

    try:
        return EventTable.build(history, engine.config, raw_path, holdout_months=holdout_months)
    except (RunError, ValidityError) as exc:
        return f"The history cannot be read: {exc}"


@st.cache_data(show_spinner=False, max_entries=16)
def labels_of(location: str, run_id: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(dimension, metric) → (label, unit): the run's thresholds.yaml ``description``/``unit``,
    else those of the default config (runs written before they existed)."""
    defaults = yaml.safe_load(
        resources.files("health_score.defaults").joinpath("thresholds.yaml").read_text("utf-8")
    )
    labels = frames.metric_labels(defaults if isinstance(defaults, dict) else {})
    data = reader_for(location).read(run_id, CONFIG_FILES[1])
    try:
        own = yaml.safe_load(data) if data else None
    except yaml.YAMLError:
        own = None
    if isinstance(own, dict):
        for key, (label, unit) in frames.metric_labels(own).items():
            fallback = labels.get(key)
            labels[key] = fallback if fallback is not None and not unit else (label, unit)
    return labels


@st.cache_data(show_spinner=False, max_entries=16)
def changes_of(location: str, run_id: str) -> pd.DataFrame | None:
    """The run's changes.csv, or None for a run without one (the first, or an older run)."""
    data = reader_for(location).read(run_id, CHANGES)
    return None if data is None else frames.parse_changes(run_id, data)


def dimension_scale(names: list[str]) -> alt.Scale:
    palette = ["#9d755d", "#bab0ac", "#eeca3b", "#ff9da6"]
    extra = sorted(n for n in set(names) if n not in DIMENSION_COLOURS)
    colours = {**DIMENSION_COLOURS, **{n: palette[i % 4] for i, n in enumerate(extra)}}
    domain = [n for n in colours if n in set(names)]
    return alt.Scale(domain=[PRETTY.get(n, n) for n in domain], range=[colours[n] for n in domain])


def tier_order_for(config: ScoringConfig | str, seen: pd.Series) -> list[str]:
    labels = [t.label for t in config.tiers] if isinstance(config, ScoringConfig) else []
    return frames.tier_order(labels, seen.dropna().unique())


def tier_scale(order: list[str]) -> alt.Scale:
    return alt.Scale(domain=order, range=[TIER_COLOURS.get(t, "#5e81ac") for t in order])


# --------------------------------------------------------------------------------------------
# Fresh machine


def no_runs_page(location: str, runs: list[RunInfo]) -> None:
    st.title("Customer health scores")
    broken = [r for r in runs if not r.complete]
    failed = [r for r in runs if r.complete and not r.usable]
    if broken or failed:
        problem(
            f"No run in `{location}` can be shown.",
            "\n".join(r.problem or "" for r in broken[:5]) or "every run failed",
        )
        for r in failed[-5:]:
            reason = "; ".join(str(m) for m in r.manifest.get("messages", []))
            st.text(f"{r.label}: {reason or 'every source failed'}")
    else:
        st.info(f"No runs yet in `{location}`.")
    what = "the built-in demo (a synthetic portfolio scored by the real pipeline)"
    if not demo_available():
        what = "the example raw-metrics file (the demo's sandbox is not complete yet)"
    st.write(f"Start with {what}. It is a dry run: nothing is written to Salesforce.")
    if st.button("Run the demo", type="primary", key="run-demo"):
        accounts = int(os.environ.get("HSM_DEMO_ACCOUNTS", DEFAULT_DEMO_ACCOUNTS))
        with st.spinner("Running the pipeline…"):
            result = first_run(location, accounts=accounts)
        if result.note:
            problem("The demo did not run as planned:", result.note, warn=True)
        if result.summary.run_id is None:
            problem("The first run failed:", "; ".join(result.summary.messages))
            return
        runs_in.clear()
        st.session_state["run_id"] = result.summary.run_id
        st.rerun()


# --------------------------------------------------------------------------------------------
# Views


def delta(now: float | None, before: float | None, fmt: str) -> str | None:
    if now is None or before is None:
        return None
    return format(now - before, fmt)


def portfolio_view(
    scores: pd.DataFrame,
    shown: pd.DataFrame,
    order: list[str],
    earlier: pd.DataFrame | None = None,
    changes: pd.DataFrame | None = None,
    labels: dict[tuple[str, str], tuple[str, str]] | None = None,
) -> None:
    """``earlier``: the previous period's scores under the same filters (for the deltas)."""
    st.header("Portfolio")
    now = frames.kpis(shown)
    before = frames.kpis(earlier) if earlier is not None else {}
    if earlier is not None:
        st.caption("Deltas are against the previous period, with the same filters.")
    cols = st.columns(5)
    cols[0].metric(
        "Accounts",
        f"{len(shown):,}",
        delta(now["accounts"], before.get("accounts"), "+,.0f"),
        delta_color="off",
        help=f"of {len(scores):,} in the run",
    )
    median = now["median_score"]
    cols[1].metric(
        "Median score",
        "—" if median is None else f"{median:.1f}",
        delta(median, before.get("median_score"), "+.1f"),
    )
    cols[2].metric(
        "Capped by signals",
        f"{int(now['capped'] or 0):,}",
        delta(now["capped"], before.get("capped"), "+,.0f"),
        delta_color="inverse",
    )
    coverage = now["median_coverage"]
    cols[3].metric(
        "Median coverage",
        "—" if coverage is None else f"{coverage:.0f}%",
        delta(coverage, before.get("median_coverage"), "+.1f"),
    )
    arr = now["arr"]
    cols[4].metric(
        "ARR",
        "—" if arr is None else f"{arr:,.0f}",
        delta(arr, before.get("arr"), "+,.0f"),
        help="Sum of the ARR from Salesforce of the accounts shown",
    )

    counts = frames.tier_counts(shown, order)
    left, right = st.columns([2, 3])
    left.subheader("Tiers")
    left.dataframe(
        counts,
        hide_index=True,
        column_config={"share_pct": st.column_config.NumberColumn("share %", format="%.1f")},
    )
    right.altair_chart(
        alt.Chart(counts)
        .mark_bar()
        .encode(
            x=alt.X("tier:N", sort=order, title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("accounts:Q"),
            color=alt.Color("tier:N", scale=tier_scale(order), legend=None),
            tooltip=["tier", "accounts", "share_pct"],
        )
        .properties(height=260),
    )

    left, right = st.columns(2)
    left.subheader("Score distribution")
    hist = frames.histogram(shown, "final_score", 5, by="health_tier")
    left.altair_chart(
        alt.Chart(hist)
        .mark_bar()
        .encode(
            x=alt.X(
                "bin_start:Q", bin="binned", scale=alt.Scale(domain=[0, 100]), title="final score"
            ),
            x2="bin_end:Q",
            y=alt.Y("sum(accounts):Q", title="accounts"),
            color=alt.Color("health_tier:N", scale=tier_scale(order), title="tier"),
            tooltip=["bin_start", "bin_end", "health_tier", "accounts"],
        )
        .properties(height=260),
    )
    right.subheader("Coverage distribution")
    cover = frames.histogram(shown, "coverage_pct", 10)
    right.altair_chart(
        alt.Chart(cover)
        .mark_bar(color="#5e81ac")
        .encode(
            x=alt.X(
                "bin_start:Q", bin="binned", scale=alt.Scale(domain=[0, 100]), title="coverage %"
            ),
            x2="bin_end:Q",
            y=alt.Y("accounts:Q"),
            tooltip=["bin_start", "bin_end", "accounts"],
        )
        .properties(height=260),
    )

    left, right = st.columns(2)
    left.subheader("ARR by tier")
    by_tier = frames.arr_by_tier(shown, order)
    if shown["arr"].notna().any():
        left.altair_chart(
            alt.Chart(by_tier)
            .mark_bar()
            .encode(
                x=alt.X("tier:N", sort=order, title=None, axis=alt.Axis(labelAngle=0)),
                y=alt.Y("arr:Q", title="ARR"),
                color=alt.Color("tier:N", scale=tier_scale(order), legend=None),
                tooltip=["tier", "accounts", alt.Tooltip("arr:Q", format=",.0f"), "arr_share_pct"],
            )
            .properties(height=240),
        )
        left.dataframe(
            by_tier,
            hide_index=True,
            column_config={
                "arr": st.column_config.NumberColumn("ARR", format="localized"),
                "arr_share_pct": st.column_config.NumberColumn("ARR share %", format="%.1f"),
            },
        )
    else:
        left.info("No ARR in this run (Salesforce context was not extracted).")
    right.subheader("What moved the portfolio")
    if changes is None:
        right.info("No earlier period to compare with.")
        return
    movers = frames.metric_movers(changes, labels or {})
    if movers.empty:
        right.write("No metric moved any account's score.")
    else:
        right.caption(
            "Summed over every account: points gained or lost through each metric (and the cap) "
            "since the previous period."
        )
        right.dataframe(
            movers,
            hide_index=True,
            column_config={"points": st.column_config.NumberColumn(format="%+.1f")},
        )
    appeared, lost = frames.appeared_and_lost(changes)
    right.write(
        f"{len(appeared):,} account(s) scored for the first time; {len(lost):,} lost their score."
    )
    for title, frame in (("New", appeared), ("Lost a score", lost)):
        if len(frame):
            with right.expander(f"{title} ({len(frame):,})"):
                st.dataframe(frame, hide_index=True)


def open_account(account_id: str) -> None:
    """Ask the next run of the script to show ``account_id``'s drill-down."""
    st.session_state["open_account"] = account_id


def worklist_clicked() -> None:
    """The worklist's row selection: open the drill-down of the row clicked."""
    state = st.session_state.get("worklist")
    rows = list(state.selection.rows) if state is not None else []
    ids = st.session_state.get("worklist-ids", [])
    if rows and rows[0] < len(ids):
        open_account(ids[rows[0]])


def accounts_view(shown: pd.DataFrame, earlier: RunInfo | None, order: list[str]) -> None:
    st.header("Accounts")
    if earlier is not None:
        st.caption(
            f"Who needs attention first: tier worsened, then the biggest drop, the lowest score "
            f"and the most ARR. Change is against run {earlier.run_id} (period {earlier.period}). "
            "Click a row to open its drill-down."
        )
    else:
        st.caption(
            "Lowest score first, then the most ARR; no earlier period to compare with, so there "
            "is no change yet. Click a row to open its drill-down."
        )
    cols = st.columns([2, 2, 1, 1, 1])
    search = cols[0].text_input("Search name or id", key="account-search")
    owners = sorted(o for o in shown["owner"].unique() if o)
    chosen_owners = cols[1].multiselect("Owner", owners, key="f-owner")
    worsened = cols[2].toggle("Tier worsened", key="f-worsened")
    newly = cols[3].toggle("New Critical", key="f-new-critical")
    within = int(
        cols[4].number_input(
            "Renewal within (days)", 0, 3650, 0, 30, key="f-renewal", help="0: any renewal date"
        )
    )
    found = frames.filter_worklist(
        frames.filter_scores(shown, search=search),
        order,
        owners=chosen_owners,
        worsened=worsened,
        newly_critical=newly,
        renewal_within=within or None,
    )
    table, apart = frames.worklist(found, order)
    st.session_state["worklist-ids"] = table["Account ID"].tolist()
    st.caption(
        f"{len(table):,} accounts"
        + (f" ({len(apart):,} with too little data below)" if len(apart) else "")
    )
    config = {
        "Score": st.column_config.NumberColumn(format="%.1f"),
        "Change": st.column_config.NumberColumn(format="%+.1f"),
        "ARR": st.column_config.NumberColumn(format="localized"),
        "Days to renewal": st.column_config.NumberColumn(format="%d"),
        "Coverage %": st.column_config.NumberColumn(format="%.0f"),
    }
    st.dataframe(
        table,
        hide_index=True,
        height=520,
        column_config=config,
        on_select=worklist_clicked,
        selection_mode="single-row",
        key="worklist",
    )
    st.download_button(
        "Download CSV",
        frames.download_csv(pd.concat([table, apart], ignore_index=True)),
        file_name="accounts.csv",
        mime="text/csv",
        key="download-accounts",
        help="The accounts shown, with the filters applied.",
    )
    if len(apart):
        st.subheader(f"Insufficient Data ({len(apart):,})")
        st.caption(
            "Too little of the model's weight is backed by data to trust a score: fix the "
            "data first (largest ARR first)."
        )
        st.dataframe(apart, hide_index=True, column_config=config, key="insufficient")


def drilldown_view(
    location: str, run: RunInfo, runs: list[RunInfo], scores: pd.DataFrame, order: list[str]
) -> None:
    st.header("Account drill-down")
    ordered = scores.sort_values(["account_name", "account_id"])
    labels = dict(
        zip(
            ordered["account_id"],
            ordered["account_name"] + " — " + ordered["account_id"],
            strict=True,
        )
    )
    account_id = st.selectbox(
        "Account", list(labels), format_func=labels.__getitem__, key="account"
    )
    if account_id is None:
        return
    row = scores[scores["account_id"] == account_id].iloc[0]
    rows = frames.account_metrics(metrics_of(location, run.run_id), account_id)
    labels = labels_of(location, run.run_id)

    cols = st.columns(4)
    final = row["final_score"]
    cols[0].metric("Final score", "—" if pd.isna(final) else f"{final:.1f}")
    cols[1].metric("Tier", frames.tier_chip(str(row["health_tier"])))
    cols[2].metric("Coverage", f"{row['coverage_pct']:.1f}%")
    cols[3].metric("Segment", row["segment"])
    cols = st.columns(4)
    cols[0].metric("Owner", str(row["owner"]) or "—")
    arr = row["arr"]
    cols[1].metric("ARR", "—" if pd.isna(arr) else f"{arr:,.0f}")
    cols[2].metric("Renewal", str(row["renewal_date"]) or "—")
    days = row["days_to_renewal"]
    cols[3].metric("Days to renewal", "—" if pd.isna(days) else f"{int(days)}")
    quantitative = row.get("quantitative_score")
    if not pd.isna(quantitative) and not pd.isna(final) and quantitative != final:
        st.caption(f"{quantitative:.1f} before the qualitative cap.")

    explain(location, run, row, rows, labels)

    st.subheader("What makes up the score")
    if pd.isna(final):
        st.info("This account has no score: no metric had data.")
    else:
        parts = frames.contributions(rows, row.to_dict())
        named = [
            p if d == frames.CAP_PART else frames.label_of(labels, d, p.split(" (")[0])
            for p, d in zip(parts["part"], parts["dimension"], strict=True)
        ]
        twice = {n for n in named if named.count(n) > 1}  # e.g. sessions per user
        parts["part"] = [
            f"{n} ({PRETTY.get(d, d)})" if n in twice else n
            for n, d in zip(named, parts["dimension"], strict=True)
        ]
        total = float(parts["points"].sum())
        st.caption(f"The parts add up to the final score ({total:.1f}).")
        drawn = parts.assign(group=[PRETTY.get(d, d) for d in parts["dimension"]]).sort_values(
            "points", ascending=False, kind="stable"
        )
        bars = alt.Chart(drawn).encode(
            y=alt.Y(
                "part:N",
                sort=list(drawn["part"]),
                title=None,
                axis=alt.Axis(labelLimit=320, labelOverlap=False),
            ),
            x=alt.X("points:Q", title="points"),
        )
        st.altair_chart(
            (
                bars.mark_bar().encode(
                    color=alt.Color(
                        "group:N",
                        scale=dimension_scale(list(parts["dimension"])),
                        legend=alt.Legend(orient="bottom", title=None),
                    ),
                    tooltip=["part", "group", alt.Tooltip("points:Q", format=".2f")],
                )
                + bars.mark_text(align="left", dx=3).encode(text=alt.Text("points:Q", format=".1f"))
            ).properties(height=max(220, 24 * len(parts))),
        )
        with st.expander("The parts as a table"):
            st.dataframe(parts, hide_index=True)

    st.subheader("Every metric")
    st.caption(
        f"Thresholds are those of the {row['segment']} segment (value at green scores 100, at "
        "red 0). Weight % is the metric's share of the Health Score after missing data is "
        "redistributed; points = weight × score."
    )
    st.dataframe(
        frames.readable_metrics(rows, labels),
        hide_index=True,
        width="stretch",
        column_config={
            "score": st.column_config.NumberColumn(format="%.1f"),
            "weight %": st.column_config.NumberColumn(format="%.1f"),
            "points": st.column_config.NumberColumn(format="%.2f"),
        },
    )
    st.download_button(
        "Download CSV",
        frames.download_csv(rows.assign(account_id=account_id)[list(METRIC_COLUMNS)]),
        file_name=f"metrics-{account_id}.csv",
        mime="text/csv",
        key="download-metrics",
        help="Every column of the run's metric detail for this account.",
    )

    left, right = st.columns(2)
    with left:
        st.subheader("Churn signals and cap")
        signals = (
            f"Critical {int(row['critical_count'])} (confirmed "
            f"{int(row['critical_confirmed'])}), Moderate {int(row['moderate_count'])}, "
            f"Watch {int(row['watch_count'])}"
        )
        st.write(f"Active signals: {signals}.")
        rule = row.get("cap_rule") or ""
        if rule:
            applied = "lowered the score" if row["qualitative_override"] else "did not lower it"
            # the rule in words; runs written before it existed have only the cap
            words = row.get("modifier_applied") or f"cap {row['cap_value']:g}"
            st.write(f"Rule **{rule}** matched: {words}, which {applied}.")
        else:
            st.write("No cap rule matched.")
        config = config_of(location, run.run_id)
        if isinstance(config, ScoringConfig) and config.cap_rules:
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "order": i + 1,
                            "condition": r.condition,
                            "cap": float(r.value),
                            "matched": r.condition == rule,
                        }
                        for i, r in enumerate(config.cap_rules)
                    ]
                ),
                hide_index=True,
            )
    with right:
        st.subheader("Coverage")
        missing = rows[rows["status"] != "scored"][["dimension", "metric", "status"]]
        st.write(
            f"{row['coverage_pct']:.1f}% of the model's weight is backed by data "
            f"({len(rows) - len(missing)} of {len(rows)} metrics)."
        )
        if missing.empty:
            st.write("Nothing is missing.")
        else:
            st.caption("Missing (no data) or unavailable (the source failed):")
            st.dataframe(missing, hide_index=True)

    st.subheader("History")
    chosen = {**latest_ok_per_period(runs), run.period: run}
    past = [(p, r.run_id, scores_of(location, r.run_id)) for p, r in sorted(chosen.items())]
    hist = frames.history(account_id, past)
    if len(hist) > 1:
        st.altair_chart(
            alt.Chart(hist)
            .mark_line(point=True)
            .encode(
                x=alt.X("period:N", title=None, axis=alt.Axis(labelAngle=0, labelOverlap=True)),
                y=alt.Y("final_score:Q", scale=alt.Scale(domain=[0, 100])),
                tooltip=["period", "run_id", "final_score", "health_tier"],
            )
            .properties(height=220),
        )
    st.dataframe(hist, hide_index=True)


def explain(
    location: str,
    run: RunInfo,
    row: pd.Series,
    rows: pd.DataFrame,
    labels: dict[tuple[str, str], tuple[str, str]],
) -> None:
    """In plain words: what costs this account the most points, and what changed."""
    left, right = st.columns(2)
    with left:
        st.subheader("Why this score")
        cost = frames.costs(rows, labels)
        if cost.empty:
            st.write("No metric costs this account points.")
        else:
            st.caption("The metrics costing the most points: weight × (100 − score).")
            st.markdown(
                "\n".join(
                    f"- **{c.metric}** ({PRETTY.get(c.dimension, c.dimension)}): {c.value}, "
                    f"scores {c.score:.0f}/100 — costs {c.costs_points:.1f} points"
                    for c in cost.itertuples(index=False)
                )
            )
    with right:
        st.subheader("What changed")
        changes = changes_of(location, run.run_id)
        account_id = str(row["account_id"])
        if changes is None:
            st.write("No earlier run to compare with (this run has no changes.csv).")
            return
        mine = changes[changes["account_id"] == account_id]
        if mine.empty or pd.isna(mine["previous_final"].iloc[0]):
            st.write("No score in the previous period to compare with.")
            return
        first = mine.iloc[0]
        tiers = (
            f"tier {first['previous_tier']} → {first['tier']}"
            if first["previous_tier"] != first["tier"]
            else f"tier {first['tier']} unchanged"
        )
        st.write(
            f"Score {first['previous_final']:.1f} → {first['final']:.1f} "
            f"({first['change']:+.1f}) since the previous period; {tiers}."
        )
        moved = frames.account_changes(changes, account_id, labels)
        if moved.empty:
            st.write("No metric moved the score.")
        else:
            st.markdown(
                "\n".join(
                    f"- **{m.what}**: "
                    + (f"{m.before} → {m.after}, " if m.dimension else "")
                    + f"{m.points:+.1f} points"
                    for m in moved.itertuples(index=False)
                )
            )


def alerts_view(location: str, run: RunInfo) -> None:
    st.header("Alerts")
    alerts = read_alerts(reader_for(location), run.run_id)
    if alerts.status == "absent":
        st.info("This run has no alerts (written before alerts existed, or none configured).")
        return
    if alerts.status == "disabled":
        st.info("Alerts are disabled in this run's config.")
        return

    def delivery(name: str, section: dict[str, object]) -> str:
        if not section:
            return f"{name}: not configured"
        status = str(section.get("status", "?"))
        reason = section.get("reason")
        return f"{name}: {status}" + (f" ({reason})" if reason else "")

    counts = ", ".join(f"{rule} {n}" for rule, n in sorted(alerts.by_rule.items()))
    st.caption(
        f"{len(alerts.rows):,} alert(s)"
        + (f" — {counts}" if counts else "")
        + f". Delivery: {delivery('Salesforce', alerts.salesforce)}; "
        + f"{delivery('Slack', alerts.slack)}."
    )
    if not alerts.rows:
        st.write("No account triggered an alert rule in this run.")
        return
    table = pd.DataFrame(
        [
            {
                "rule": a.rule,
                "account": a.account_name or a.account_id,
                "alert": a.alert,
                "reason": a.reason,
                "drivers": "; ".join(a.drivers),
                "account_id": a.account_id,
            }
            for a in alerts.rows
        ]
    )
    st.dataframe(table, hide_index=True)


def operations_view(run: RunInfo) -> None:
    """Which sources could log in from here, and how each source did in this run."""
    st.header("Operations")
    st.subheader("Credentials on this machine")
    st.caption("Only whether each source's variables are set here; values are never shown.")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "source": source,
                    "credentials": "set" if why is None else "missing",
                    "to set": why or "",
                }
                for source in SOURCE_NAMES
                for why in [missing_credentials(source, os.environ)]
            ]
        ),
        hide_index=True,
    )
    st.subheader(f"Sources in run {run.run_id}")
    sources = run.manifest.get("sources")
    if not isinstance(sources, dict) or not sources:
        st.info("This run's manifest lists no sources (a run from a raw file, or an older run).")
    else:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "source": name,
                        "status": str(info.get("status", "?")),
                        "accounts with data": info.get("accounts_with_data"),
                        "requests": info.get("requests"),
                        "seconds": info.get("seconds"),
                        "error": str(info.get("error") or ""),
                        "notes": "; ".join(str(n) for n in info.get("notes") or []),
                    }
                    for name, info in sources.items()
                    if isinstance(info, dict)
                ]
            ),
            hide_index=True,
        )
    writeback = run.manifest.get("writeback")
    if isinstance(writeback, dict):
        reason = writeback.get("reason")
        st.write(
            f"Salesforce write-back: {writeback.get('status', '?')}"
            + (f" ({reason})" if reason else "")
            + "."
        )


def weight_inputs(engine: WhatIf) -> tuple[WeightSet, dict[str, str]]:
    """One slider per weight, grouped as in weights.yaml; returns the re-normalised set."""

    def reset() -> None:
        for key in [k for k in st.session_state if str(k).startswith("w|")]:
            del st.session_state[key]

    st.button("Reset to the run's weights", on_click=reset, key="reset-weights")
    entered: dict[str, list[tuple[str, Decimal]]] = {}
    notes: dict[tuple[str, str], DeltaGenerator] = {}
    for section, items in engine.weights:
        with st.expander(PRETTY.get(section, section), expanded=section == "health_score"):
            values = []
            for key, weight in items:
                value = st.slider(
                    key, 0.0, 1.0, float(weight), 0.01, key=f"w|{section}|{key}", format="%.2f"
                )
                notes[(section, key)] = st.empty()  # filled with the weight used, below
                values.append((key, Decimal(repr(round(value, 4)))))
            entered[section] = values
    sections, problems = sections_from_entered(entered)
    used = dict(sections)
    for section, items in engine.weights:
        if section not in used:  # all zero: keep the run's own weights for this group
            used[section] = items
    for section, items in used.items():
        for key, weight in items:
            notes[(section, key)].caption(f"used: {float(weight):.4f}")
    return tuple((s, used[s]) for s, _ in engine.weights), problems


def whatif_view(location: str, run: RunInfo, scores: pd.DataFrame, order: list[str]) -> None:
    st.header("What-if: new weights")
    engine = whatif_of(location, run.run_id)
    if isinstance(engine, str):
        problem("What-if is not available for this run:", engine)
        return
    st.caption(
        "Re-scores this run's own raw inputs with the scoring package, using its config with "
        "your weights. Each group is re-normalised to sum to 1; the table shows the weights used."
    )
    left, right = st.columns([2, 3])
    with left:
        weights, problems = weight_inputs(engine)
        for section, message in problems.items():
            st.error(f"{PRETTY.get(section, section)}: {message}; using the run's weights.")
        original = dict(engine.weights)
        used_rows = [
            {
                "group": section,
                "weight": key,
                "run": float(original[section][i][1]),
                "used": float(w),
            }
            for section, items in weights
            for i, (key, w) in enumerate(items)
        ]
        st.dataframe(pd.DataFrame(used_rows), hide_index=True, height=300)
        st.download_button(
            "Download candidate weights.yaml",
            engine.candidate_yaml(weights).encode("utf-8"),
            file_name="weights.yaml",
            mime="application/yaml",
            key="download-weights",
        )
    with right:
        with st.spinner("Re-scoring…"):
            migration = engine.migration(weights)
        whatif_results(migration, scores, order)
    whatif_outcomes(location, run, engine, weights)


def whatif_outcomes(location: str, run: RunInfo, engine: WhatIf, weights: WeightSet) -> None:
    """The backtest figures of the candidate weights against the run's, on a hold-out."""
    st.subheader("Judged on outcomes: current vs candidate weights")
    left, right = st.columns(2)
    months = int(
        left.number_input(
            "Hold-out: the last months of history",
            1,
            24,
            DEFAULT_HOLDOUT_MONTHS,
            key="holdout-months",
            help="Events whose matched run is of these months are the hold-out.",
        )
    )
    degraded = right.toggle("Include degraded runs", value=False, key="whatif-degraded")
    runs = runs_in(location)
    newest = max((r.run_id for r in runs if r.usable), default="")
    table = event_table_of(location, newest, run.run_id, months, degraded)
    if isinstance(table, str):
        st.info(f"No outcome figures: {table}")
        return
    if not table.size:
        st.info(
            "No outcome figures yet: no churn or renewal event has an ok run 60–90 days before "
            "it with its raw inputs (raw.csv). They appear once the history covers a few months "
            "before the first outcomes."
        )
        return
    with st.spinner("Re-scoring the matched events…"):
        judged = table.judge(engine.config, apply_weights(engine.config, weights))
    earlier = table.size - table.holdout_events
    st.caption(
        f"Each churn or renewal event is re-scored from its account's raw inputs in the run "
        f"60–90 days before it. Hold-out: the {table.holdout_events:,} events whose run is of "
        f"{table.holdout_from} or later (the last {months} months of history); {earlier:,} "
        "earlier events. Weights are never chosen on the hold-out: tune against the earlier "
        "events and look at the hold-out to judge the result (health-score suggest-weights "
        "searches on the earlier events only). AUC intervals are DeLong's. Figures need "
        f"{table.min_events} churners and {table.min_events} renewers; fewer show as too few "
        "events."
    )
    st.dataframe(pd.DataFrame(figure_rows(judged)), hide_index=True)
    if table.skipped:
        with st.expander(f"{len(table.skipped)} run(s) without readable raw inputs"):
            st.text("\n".join(table.skipped))


def whatif_results(migration: Migration, scores: pd.DataFrame, order: list[str]) -> None:
    before = pd.DataFrame(migration.before, columns=["account_id", "score", "tier"])
    after = pd.DataFrame(migration.after, columns=["account_id", "score", "tier"])
    for frame in (before, after):
        frame["score"] = pd.to_numeric(frame["score"].astype("object"), errors="coerce")
    recorded = scores.set_index("account_id")["health_tier"]
    drift = int(
        (before.set_index("account_id")["tier"] != recorded.reindex(before["account_id"])).sum()
    )
    if drift:
        st.warning(
            f"{drift} account(s) get a different tier when re-scored with the run's own weights "
            "than the run recorded (the scoring code changed since); the matrix compares "
            "re-scored with re-scored."
        )
    changed = migration.changed()
    cols = st.columns(3)
    cols[0].metric("Accounts changing tier", f"{len(changed):,}")
    cols[1].metric("Share", f"{100 * len(changed) / len(before):.1f}%" if len(before) else "—")
    delta = (after["score"] - before["score"]).mean()
    cols[2].metric("Mean score change", "—" if pd.isna(delta) else f"{delta:+.2f}")

    st.subheader("Tier migration (from × to)")
    matrix = frames.migration_matrix(
        before.set_index("account_id")["tier"], after.set_index("account_id")["tier"], order
    )
    st.dataframe(matrix)

    st.subheader("Score distribution before and after")
    hist = pd.concat(
        [
            frames.histogram(before.rename(columns={"score": "s"}), "s", 5).assign(
                weights="run's weights"
            ),
            frames.histogram(after.rename(columns={"score": "s"}), "s", 5).assign(
                weights="candidate"
            ),
        ]
    )
    st.altair_chart(
        alt.Chart(hist)
        .mark_bar(opacity=0.85)
        .encode(
            x=alt.X("bin_start:O", title="final score (5-point bins)"),
            xOffset="weights:N",
            y=alt.Y("accounts:Q"),
            color=alt.Color("weights:N", title=None),
            tooltip=["weights", "bin_start", "bin_end", "accounts"],
        )
        .properties(height=260),
    )

    st.subheader("Accounts that change tier")
    names = scores.set_index("account_id")["account_name"]
    table = pd.DataFrame(
        changed, columns=["account_id", "score_before", "tier_before", "score_after", "tier_after"]
    )
    table.insert(1, "account_name", names.reindex(table["account_id"]).to_numpy())
    for column in ("score_before", "score_after"):
        table[column] = pd.to_numeric(table[column].astype("object"), errors="coerce")
    table["change"] = (table["score_after"] - table["score_before"]).round(1)
    st.dataframe(table, hide_index=True)


def trends_view(location: str, run: RunInfo, runs: list[RunInfo], order: list[str]) -> None:
    st.header("Trends")
    complete = [r for r in runs if r.usable]
    per_period = latest_ok_per_period(runs)
    mix = frames.tier_mix([(p, r.tiers) for p, r in per_period.items()], order)
    st.subheader("Tier mix per period")
    skipped = sorted({r.period for r in complete} - set(per_period))
    st.caption(
        "The latest ok run of each period."
        + (f" Periods without an ok run are left out: {', '.join(skipped)}." if skipped else "")
    )
    st.altair_chart(
        alt.Chart(mix)
        .mark_bar()
        .encode(
            x=alt.X("period:N", title=None, axis=alt.Axis(labelAngle=0, labelOverlap=True)),
            y=alt.Y("share_pct:Q", title="share %", stack="zero"),
            color=alt.Color("tier:N", scale=tier_scale(order), sort=order),
            order=alt.Order("tier_rank:Q"),
            tooltip=["period", "tier", "accounts", "share_pct"],
        )
        .transform_calculate(tier_rank=f"indexof({order!r}, datum.tier)")
        .properties(height=260),
    )
    st.dataframe(
        mix.pivot_table(index="period", columns="tier", values="accounts", fill_value=0)
        .reindex(columns=[t for t in order if t in set(mix["tier"])])
        .astype("int64"),
    )

    st.subheader("Biggest movers")
    if len(complete) < 2:
        st.info("Movers need two runs; run the pipeline for another period.")
        return
    labels = {r.run_id: r.label for r in complete}
    ids = list(reversed(list(labels)))
    earlier = previous(runs, run) or next((r for r in reversed(complete) if r is not run), None)
    cols = st.columns([2, 2, 1])
    to_id = cols[1].selectbox(
        "To run", ids, index=ids.index(run.run_id), format_func=labels.__getitem__, key="to-run"
    )
    from_default = earlier.run_id if earlier is not None and earlier.run_id != to_id else ids[-1]
    from_id = cols[0].selectbox(
        "From run",
        ids,
        index=ids.index(from_default),
        format_func=labels.__getitem__,
        key="from-run",
    )
    top = cols[2].number_input("How many", 1, 500, 20, key="movers-top")
    if from_id == to_id:
        st.info("Pick two different runs.")
        return
    table = frames.movers(
        scores_of(location, from_id),
        scores_of(location, to_id),
        dimension_points_of(location, from_id),
        dimension_points_of(location, to_id),
        int(top),
    )
    if table.empty:
        st.info("No account's final score changed between these two runs.")
        return
    st.caption(
        "Each Δ column is the change in the points that dimension (or the cap) contributes; "
        "they add up to the change, up to one-decimal rounding."
    )
    st.dataframe(table, hide_index=True)
    parts = [c for c in table.columns if c.startswith("Δ ")]
    if parts:
        long = table.head(15).melt(
            id_vars=["account_name"], value_vars=parts, var_name="part", value_name="points"
        )
        st.altair_chart(
            alt.Chart(long)
            .mark_bar()
            .encode(
                y=alt.Y("account_name:N", sort=None, title=None),
                x=alt.X("sum(points):Q", title="change in points"),
                color=alt.Color("part:N"),
                tooltip=["account_name", "part", alt.Tooltip("points:Q", format="+.1f")],
            )
            .properties(height=max(200, 24 * min(15, len(table)))),
        )


def validity_view(location: str, runs: list[RunInfo]) -> None:
    st.header("Validity: does the score predict churn?")
    degraded = st.toggle(
        "Include degraded runs",
        value=False,
        key="validity-degraded",
        help="Runs with a failed source; their scores may lack some inputs.",
    )
    newest = max((r.run_id for r in runs if r.usable), default="")
    found = validity_of(location, newest, degraded)
    if isinstance(found, str):
        st.info(found)
        return
    report = found.report
    st.caption(
        f"Every churn and renewal event (outcomes from {report.outcomes_source}) is matched "
        f"with its account's run {report.lead_days}–{report.horizon_days} days before it: what "
        f"the score said early enough to act. {report.runs} runs "
        + (f"({report.periods[0]} … {report.periods[1]}); " if report.periods else "; ")
        + f"{report.matched:,} events matched, {report.unmatched:,} without a run in the window."
    )
    st.info(verdict(report))
    s = report.score
    cols = st.columns(4)
    cols[0].metric(
        "AUC of the final score",
        "—" if s.value is None else f"{s.value:.3f}",
        help="0.5 is a coin toss; 1.0 means every renewer scored above every churner.",
    )
    cols[1].metric(
        "95 % interval", "—" if s.low is None or s.high is None else f"{s.low:.2f}–{s.high:.2f}"
    )
    cols[2].metric("Churners / renewers", f"{s.churners:,} / {s.renewers:,}")
    base = report.base_rate_pct
    cols[3].metric("Base churn rate", "—" if base is None else f"{base:.1f} %")

    left, right = st.columns(2)
    with left:
        st.subheader("ROC curve")
        if not found.roc:
            st.info(f"No ROC curve: {s.note or 'no events with a score'}.")
        else:
            roc = frames.roc_frame(found.roc)
            diagonal = pd.DataFrame({"x": [0, 100], "y": [0, 100]})
            st.altair_chart(
                alt.Chart(roc)
                .mark_line(point=len(roc) <= 60, interpolate="linear")
                .encode(
                    x=alt.X("renewers_flagged_pct:Q", title="renewers flagged % (false alarms)"),
                    y=alt.Y("churners_flagged_pct:Q", title="churners flagged % (caught)"),
                    order="renewers_flagged_pct:Q",
                    tooltip=["score_at_or_below", "renewers_flagged_pct", "churners_flagged_pct"],
                )
                + alt.Chart(diagonal)
                .mark_line(strokeDash=[4, 4], color="#999")
                .encode(x="x", y="y")
            )
            st.caption(
                "Flagging every account at or below a score: each point is one cut-off. The "
                "dashed line is a coin toss; the area under the curve is the AUC."
            )
    with right:
        st.subheader("Churn rate by tier")
        tiers = frames.tier_churn(report.tiers)
        if not report.matched:
            st.info("No events matched a run yet: no churn rates.")
        else:
            bars = (
                alt.Chart(tiers.dropna(subset=["churn_rate_pct"]))
                .mark_bar()
                .encode(
                    x=alt.X("tier:N", sort=list(tiers["tier"]), title=None),
                    y=alt.Y("churn_rate_pct:Q", title="churn rate %"),
                    color=alt.Color("tier:N", scale=tier_scale(list(tiers["tier"])), legend=None),
                    tooltip=["tier", "events", "churned", "churn_rate_pct", "lift"],
                )
            )
            rule = (
                alt.Chart(pd.DataFrame({"base": [base or 0.0]}))
                .mark_rule(color="#333", strokeDash=[6, 3])
                .encode(y="base:Q", tooltip=[alt.Tooltip("base:Q", title="base rate %")])
            )
            st.altair_chart((bars + rule).properties(height=280))
            st.caption(
                f"Dashed line: the base rate ({base:.1f} %). Tiers are "
                + ("monotone." if report.tiers_monotone else "NOT monotone.")
            )
        st.dataframe(tiers, hide_index=True)

    st.subheader("Churner capture over lead time")
    top = " and ".join(report.healthiest)
    leads = frames.lead_capture(found.leads)
    st.caption(
        f"Share of churners below {top} in their run that many days before churning. Windows "
        f"with fewer than {found.min_events} churners show no figure."
    )
    shown = leads.dropna(subset=["capture_pct"])
    if shown.empty:
        st.info("Too few events in every lead window for a capture figure yet.")
    else:
        st.altair_chart(
            alt.Chart(shown)
            .mark_bar(color="#d73027")
            .encode(
                x=alt.X("lead time:N", sort=list(leads["lead time"]), title="lead time"),
                y=alt.Y(
                    "capture_pct:Q", title="churners flagged %", scale=alt.Scale(domain=[0, 100])
                ),
                tooltip=["lead time", "churners", "flagged", "capture_pct"],
            )
            .properties(height=240)
        )
    st.dataframe(leads, hide_index=True)

    st.subheader("Which inputs carry signal")
    st.caption(
        "Each dimension and metric judged alone (AUC with DeLong's 95 % interval; coverage is "
        "the share of events with a value). An interval containing 0.5 is noise."
    )
    st.dataframe(frames.signal_table(report.inputs), hide_index=True)
    if report.gate:
        st.subheader("Validity floors")
        st.dataframe(pd.DataFrame([c.as_dict() for c in report.gate]), hide_index=True)


# --------------------------------------------------------------------------------------------
# Page


def sidebar_filters(scores: pd.DataFrame, order: list[str]) -> dict[str, Any]:
    """The sidebar's filters as ``frames.filter_scores`` arguments (everything chosen: None, so
    the previous period is filtered alike even when it had other tiers or segments)."""
    st.sidebar.subheader("Filters")
    segments = sorted(scores["segment"].unique())
    chosen_segments = st.sidebar.multiselect("Segment", segments, default=segments, key="f-seg")
    present = [t for t in order if t in set(scores["health_tier"])]
    chosen_tiers = st.sidebar.multiselect("Tier", present, default=present, key="f-tier")
    coverage = st.sidebar.slider("Coverage %", 0.0, 100.0, (0.0, 100.0), 5.0, key="f-cov")
    capped = st.sidebar.radio(
        "Capped by signals", ("all", "capped", "not capped"), horizontal=True, key="f-cap"
    )
    return {
        "segments": None if chosen_segments == segments else chosen_segments,
        "tiers": None if chosen_tiers == present else chosen_tiers,
        "coverage": coverage,
        "capped": None if capped == "all" else capped == "capped",
    }


def main() -> None:
    load_local_env()  # DASHBOARD_PASSWORD, HSM_RUNS_DIR, AWS_* for S3 runs
    st.set_page_config(page_title="Customer health scores", layout="wide")
    password_gate()
    location = runs_location()
    try:
        runs = runs_in(location)
    except Exception as exc:  # unreachable bucket, bad prefix, permissions: say so, no trace
        problem(f"Cannot list runs in `{location}`:", f"{type(exc).__name__}: {exc}")
        st.stop()
    complete = [r for r in runs if r.usable]
    default = latest(runs)
    if not complete or default is None:
        no_runs_page(location, runs)
        return

    by_id = {r.run_id: r for r in complete}
    newest_first = list(reversed(list(by_id)))
    if st.session_state.get("run_id") not in by_id:
        st.session_state["run_id"] = default.run_id
    st.sidebar.title("Health scores")
    st.sidebar.caption(f"Runs: `{location}`")
    run_id = st.sidebar.selectbox(
        "Period / run", newest_first, format_func=lambda i: by_id[i].label, key="run_id"
    )
    opened = st.session_state.pop("open_account", None)
    if opened is not None:  # a worklist row was clicked: its drill-down
        st.session_state["view"] = DRILLDOWN
        st.session_state["account"] = opened
    view = st.sidebar.radio("View", VIEWS, key="view")
    run = by_id[run_id]

    try:
        scores = scores_of(location, run.run_id)
        earlier = previous(runs, run)
        config = config_of(location, run.run_id)
        order = tier_order_for(config, scores["health_tier"])
        if view in ("Portfolio", "Accounts"):
            filters = sidebar_filters(scores, order)
            shown = frames.filter_scores(scores, **filters)
        st.title(f"Customer health scores — {run.period}")
        manifest = run.manifest
        st.caption(
            f"Run {run.run_id} · status {run.status} · mode {manifest.get('mode', '?')} · "
            f"{manifest.get('accounts_scored', '?')} of {manifest.get('accounts_total', '?')} "
            f"accounts scored · finished {manifest.get('finished_at', '?')}"
        )
        if run.status != "ok":
            # Vendor and manifest text is shown as plain text: never rendered as Markdown/HTML.
            st.warning(f"This run is {run.status}; its messages:")
            st.text("; ".join(str(m) for m in manifest.get("messages", [])) or "a source failed")
        failed = [r for r in runs if r.complete and not r.usable]
        if failed:
            with st.expander(f"{len(failed)} failed run(s), not shown"):
                for r in reversed(failed):
                    reason = "; ".join(str(m) for m in r.manifest.get("messages", []))
                    st.text(f"{r.label}: {reason or 'every source failed'}")
        broken = [r for r in runs if not r.complete]
        if broken:
            with st.expander(f"{len(broken)} run folder(s) cannot be shown"):
                for r in broken:
                    st.text(r.problem)
        if view == "Portfolio":
            before = None
            if earlier is not None:
                before = frames.filter_scores(scores_of(location, earlier.run_id), **filters)
            portfolio_view(
                scores,
                shown,
                order,
                before,
                changes_of(location, run.run_id),
                labels_of(location, run.run_id),
            )
        elif view == "Accounts":
            with_change = frames.with_change(
                shown, scores_of(location, earlier.run_id) if earlier else None
            )
            accounts_view(with_change, earlier, order)
        elif view == DRILLDOWN:
            drilldown_view(location, run, runs, scores, order)
        elif view == "Alerts":
            alerts_view(location, run)
        elif view == "What-if":
            whatif_view(location, run, scores, order)
        elif view == "Validity":
            validity_view(location, runs)
        elif view == "Operations":
            operations_view(run)
        else:
            trends_view(location, run, runs, order)
    except RunError as exc:
        problem("This run cannot be shown:", str(exc))


if __name__ == "__main__":  # AppTest and `streamlit run` run the script as __main__; a
    # spawned what-if worker imports it as __mp_main__ and must not draw the page.
    main()
