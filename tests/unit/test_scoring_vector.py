"""Array scoring against the exact rule on large portfolios built to sit on rounding halves.

The oracle is the ``Decimal`` path the product kept (:meth:`Model.score_compact` with
``score_row`` and ``DetailLines``, exactly what every run used before the array path): the array
path must publish the same scores.csv rows and the same explanation, byte for byte.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import random
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from health_score.batch import score_batch
from health_score.columns import AccountTable, _plain_decimals, _Unusual, read_raw_table
from health_score.config import load_scoring_config
from health_score.loaders.csv_output import (
    METRIC_COLUMNS,
    DetailLines,
    score_columns,
    score_row,
)
from health_score.loaders.explanation import metric_columns, metric_csv_lines
from health_score.rawfile import SIGNAL_COLUMNS, read_raw
from health_score.records import AccountInput, SignalCounts
from health_score.scoring.composite import Model
from health_score.scoring.spec import Band, MetricSpec, ScoringConfig
from tests.conftest import DEFAULT_CONFIG

# Final scores on and around the tier edges and rounding halves.
EDGES = [
    "89.95",
    "89.949999",
    "89.950001",
    "75.95",
    "75.949",
    "59.95",
    "59.9500001",
    "90",
    "76",
    "60",
    "75.5",
    "89.5",
    "65.35",
    "65.25",
    "50.05",
    "49.95",
    "55.55",
    "0.05",
    "99.95",
    "100",
    "0",
    "12.34565",
    "86.50005",
    "33.33335",
]


def _odd_config(config: ScoringConfig) -> ScoringConfig:
    """Weights whose shares do not terminate (thirds, …) and a coverage floor with 3 places."""
    support = [m.name for m in config.dimensions["support_health"].metrics]
    odd = config.with_weights(
        component_weights={"churn_risk": Decimal("0.55"), "platform_value": Decimal("0.45")},
        churn_risk_weights={
            "support_health": Decimal("0.27"),
            "financial_contract": Decimal("0.33"),
            "adoption_engagement": Decimal("0.21"),
            "relationship_expansion": Decimal("0.19"),
        },
        metric_weights={
            "support_health": {
                name: Decimal(w)
                for name, w in zip(
                    support, ["0.3", "0.1", "0.1", "0.15", "0.15", "0.1", "0.1"], strict=True
                )
            }
        },
    )
    return dataclasses.replace(odd, min_coverage_pct=Decimal("62.375"))


def _value_for(score: Decimal, band: Band, lower_is_better: bool) -> Decimal | None:
    """A raw value that normalises to exactly ``score`` (None when the band cannot)."""
    g, y, r = band.green, band.yellow, band.red
    if score == 100:
        return g
    if score == 0:
        return r
    sign = 1 if lower_is_better else -1
    if score >= 50:
        if y == g:
            return None
        return g + sign * (100 - score) * abs(y - g) / 50
    if r == y:
        return None
    return y + sign * (50 - score) * abs(r - y) / 50


def _literal(value: Decimal) -> str | None:
    text = format(value.normalize(), "f")
    digits = len(text.replace("-", "").replace(".", "").lstrip("0"))
    return text if digits <= 15 else None


def _portfolio(
    config: ScoringConfig, accounts: int, seed: int, *, awkward: bool = True
) -> list[list[str]]:
    """Raw rows; ``awkward`` names (a comma, quotes) make the file a quoted CSV."""
    rng = random.Random(seed)
    metrics: dict[str, MetricSpec] = {}
    shared: set[str] = set()  # in two dimensions, with different thresholds
    for dim in config.dimensions.values():
        for metric in dim.metrics:
            if metric.name in metrics:
                shared.add(metric.name)
            metrics.setdefault(metric.name, metric)
    rows = []
    for index in range(accounts):
        segment = rng.choice(sorted(config.segments))
        kind = rng.random()
        target = Decimal(rng.choice(EDGES)) if kind < 0.45 else None
        name = 'Acme, "West"' if awkward and index % 7 == 0 else f"Account {index}"
        row = [f"A{index:06d}", name, segment]
        for name, spec in metrics.items():
            band = spec.bands[segment]
            # Sparse accounts (low coverage, or no data at all) besides the usual gaps.
            gaps = 0.04 if target is not None else (0.12 if kind < 0.85 else (kind - 0.85) * 7)
            missing = rng.random() < gaps
            if missing or (target is not None and name in shared):
                row.append("")
                continue
            if target is not None:
                value = _value_for(target, band, spec.lower_is_better)
                text = None if value is None else _literal(value)
                row.append(text or "")  # a band that cannot reach it: missing
                continue
            choice = rng.random()
            if choice < 0.2:  # a threshold exactly, or just past one
                value = rng.choice([band.green, band.yellow, band.red])
                value += rng.choice([Decimal(0), Decimal("0.01"), Decimal("-0.01")])
            elif choice < 0.55:  # a metric score on a 4- or 5-place half
                half = Decimal(rng.randrange(0, 1_000_000)) / 10_000 + Decimal("0.00005")
                value = _value_for(half, band, spec.lower_is_better) or band.yellow
            else:
                low = min(band.green, band.red) - 5
                high = max(band.green, band.red) + 5
                places = rng.choice([0, 1, 2, 4])
                value = Decimal(str(round(rng.uniform(float(low), float(high)), places)))
            row.append(_literal(value) or format(band.yellow, "f"))
        critical = rng.choice([0, 0, 0, 0, 1, 2])
        row += [
            str(critical),
            str(rng.choice([0, 0, 0, 1])),
            str(rng.choice([0, 0, 1])),
            str(int(critical > 0 and rng.random() < 0.3)),
        ]
        rows.append(row)
    return rows


def _write(path: Path, config: ScoringConfig, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["account_id", "account_name", "segment", *config.metric_names])
        writer.writerows(rows)
    return path


def _write_with_signals(path: Path, config: ScoringConfig, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(
            ["account_id", "account_name", "segment", *config.metric_names, *SIGNAL_COLUMNS]
        )
        writer.writerows(rows)
    return path


def _oracle(path: Path, model: Model) -> tuple[list[list[str]], str]:
    """scores.csv rows and metrics.csv text from the Decimal path, as runs wrote them before."""
    config = model.config
    lines = DetailLines(model)
    rows = []
    detail = [",".join(METRIC_COLUMNS) + "\n"]
    for account in read_raw(path, config).accounts:
        compact = model.score_compact(account)
        rows.append(score_row(compact.score, config))
        detail.append(lines.lines(account, compact))
    return rows, "".join(detail)


CONFIGS = {
    "default": lambda: load_scoring_config(DEFAULT_CONFIG),
    "odd weights": lambda: _odd_config(load_scoring_config(DEFAULT_CONFIG)),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_array_scoring_publishes_exactly_what_the_decimal_rule_does(
    name: str, tmp_path: Path
) -> None:
    config = CONFIGS[name]()
    model = Model(config)
    path = _write_with_signals(tmp_path / "raw.csv", config, _portfolio(config, 4000, seed=7))
    table = read_raw_table(path, config).accounts
    assert table.inputs is None  # the fast column-wise reader, not the fallback
    batch = score_batch(table, model)
    rows, detail = _oracle(path, model)
    assert [list(r) for r in batch.rows] == rows
    assert "".join(metric_csv_lines(batch.explanation())) == detail
    # The portfolio does exercise the hard cases.
    finals = [r[4] for r in rows]
    assert {"90.0", "76.0", "60.0", "89.9", "75.9"} <= set(finals)
    assert any(r[13] == "true" for r in rows) and any(r[5] == "Insufficient Data" for r in rows)
    # modifier_applied (the rule in words) and cap_value are filled together, when a rule matched.
    assert all((r[14] == "") == (r[15] == "") == (r[16] == "") for r in rows)
    # A matching cap overrides the coverage floor: thin accounts with and without a score.
    floor = float(config.min_coverage_pct)
    thin = [r for r in rows if float(r[12]) < floor and r[5] != "Insufficient Data"]
    assert any(r[4] for r in thin) and any(not r[4] for r in thin)
    assert batch.exact_accounts < len(rows) // 5  # most accounts never touch Decimal
    # And the all-Decimal path of the batch gives the same bytes.
    exact = score_batch(table, model, exact=True)
    assert exact.rows == batch.rows
    assert "".join(metric_csv_lines(exact.explanation())) == detail


def test_accounts_in_memory_score_the_same_as_the_raw_file(tmp_path: Path) -> None:
    """Live runs build the table from AccountInputs (exact Decimals kept beside the floats)."""
    config = load_scoring_config(DEFAULT_CONFIG)
    model = Model(config)
    path = _write_with_signals(tmp_path / "raw.csv", config, _portfolio(config, 1500, seed=3))
    accounts = list(read_raw(path, config).accounts)
    # Values no float can hold exactly, and a failed source's metrics.
    accounts[0] = AccountInput(
        "long",
        "Long",
        "paid",
        {"p1_p2_volume": Decimal("3.0000000000000000001"), "platform_score": Decimal("61.5")},
        SignalCounts(moderate=1),
        unavailable=frozenset({"open_bugs_total"}),
    )
    batch = score_batch(AccountTable.from_accounts(accounts, config), model)
    lines = DetailLines(model)
    expected_rows = []
    expected = [",".join(METRIC_COLUMNS) + "\n"]
    for account in accounts:
        compact = model.score_compact(account)
        expected_rows.append(score_row(compact.score, config))
        expected.append(lines.lines(account, compact))
    assert [list(r) for r in batch.rows] == expected_rows
    text = "".join(metric_csv_lines(batch.explanation()))
    assert text == "".join(expected)
    assert "long,support_health,open_bugs_total,unavailable" in text


def test_an_unquoted_file_scores_exactly_and_the_dashboard_columns_match(tmp_path: Path) -> None:
    config = load_scoring_config(DEFAULT_CONFIG)
    rows = _portfolio(config, 2000, seed=11, awkward=False)
    path = _write_with_signals(tmp_path / "raw.csv", config, rows)
    model = Model(config)
    table = read_raw_table(path, config).accounts
    assert table.inputs is None and b'"' not in path.read_bytes()  # the unquoted fast reader
    batch = score_batch(table, model)
    oracle_rows, detail = _oracle(path, model)
    assert [list(r) for r in batch.rows] == oracle_rows
    data = batch.explanation()
    assert "".join(metric_csv_lines(data)) == detail
    columns = metric_columns(data)
    reader = csv.DictReader(io.StringIO("".join(metric_csv_lines(data))))
    count = 0
    for index, row in enumerate(reader):
        count += 1
        for column in ("raw_value", "green", "normalised_score", "effective_weight", "points"):
            got = columns[column][index]
            assert (np.isnan(got) and row[column] == "") or got == float(row[column] or 0)
        assert columns["status"][index] == row["status"]
        assert columns["account_id"][index] == row["account_id"]
    assert count == len(columns["account_id"]) > 0


def test_unusual_raw_files_fall_back_to_the_raw_file_reader(tmp_path: Path) -> None:
    """NA cells, exponents, spaces, blank lines: read by read_raw, scored the same way."""
    config = load_scoring_config(DEFAULT_CONFIG)
    rows = _portfolio(config, 200, seed=5)
    rows[0][3] = "NA"
    rows[1][4] = "1.5e1"
    rows[2][5] = " 12 "
    rows[3][6] = "007"
    path = _write(tmp_path / "raw.csv", config, [r[: 3 + len(config.metric_names)] for r in rows])
    table = read_raw_table(path, config).accounts
    assert table.inputs is not None  # the fallback
    model = Model(config)
    batch = score_batch(table, model)
    oracle_rows, detail = _oracle(path, model)
    assert [list(r) for r in batch.rows] == oracle_rows
    assert "".join(metric_csv_lines(batch.explanation())) == detail
    assert score_columns(config)[0] == "account_id"


def _cells(*texts: str) -> np.ndarray:
    """A column's cells as the fast reader holds them: rows × bytes, zero-padded."""
    width = max(1, *(len(t) for t in texts))
    block = np.zeros((len(texts), width), dtype=np.uint8)
    for row, text in enumerate(texts):
        block[row, : len(text)] = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return block


def test_plain_decimal_cells_are_read_exactly_and_anything_else_is_refused() -> None:
    values, places = _plain_decimals(_cells("12.50", "-0.5", "", "7", "0.125", "-0"))
    assert values[[0, 1, 3, 4]].tolist() == [12.5, -0.5, 7.0, 0.125]
    assert np.isnan(values[2]) and values[5] == 0.0
    assert places == 3
    refused = ["00", "01", "-01", "1.", ".5", "-", "-.5", "1e5", "5.5.5", "1 2", "+1", "1-"]
    for text in [*refused, "1234567890123456"]:  # the last: 16 digits
        with pytest.raises(_Unusual):
            _plain_decimals(_cells("1.5", text))


def test_the_fast_reader_takes_rows_of_the_header_width_only(tmp_path: Path) -> None:
    config = load_scoring_config(DEFAULT_CONFIG)
    metrics = config.metric_names
    head = "account_id,account_name,segment," + ",".join(metrics) + "\n"
    full = "001A,Alpha,paid," + ",".join(["12.50"] * len(metrics)) + "\n"
    path = tmp_path / "raw.csv"
    path.write_text(head + full + "001B,Beta,standard,-0.5" + "," * (len(metrics) - 1) + "\n")
    table = read_raw_table(path, config).accounts
    assert table.inputs is None and table.ids == ["001A", "001B"]  # the array-wise reader
    assert table.table.values[:, 0].tolist() == [12.5, -0.5]
    assert np.isnan(table.table.values[1, 1:]).all()
    path.write_text('"account_id",account_name,segment,' + head.split(",", 3)[3] + full)
    assert read_raw_table(path, config).accounts.inputs is None  # a quoted header
    short = "001B,Beta,paid," + ",".join(["1"] * (len(metrics) - 1)) + "\n"  # one cell short
    path.write_text(head + full + short)
    table = read_raw_table(path, config).accounts
    assert table.inputs is not None  # the raw-file reader takes over
    assert [a.account_id for a in table.inputs] == ["001A", "001B"]
