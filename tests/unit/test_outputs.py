"""CSV outputs and local run artifacts: exact rows, quoting, atomic and immutable files."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import pytest

from health_score.config import load_scoring_config
from health_score.loaders.artifacts import ArtifactExistsError, LocalRunStore, open_text
from health_score.loaders.csv_output import METRIC_COLUMNS, DetailLines, metric_rows
from health_score.loaders.explanation import Plain, scores_csv_from_columns
from health_score.records import AccountInput, SignalCounts
from health_score.scoring.composite import Model
from tests.conftest import DEFAULT_CONFIG


def test_fast_detail_lines_equal_the_csv_rows_even_with_awkward_ids() -> None:
    model = Model(load_scoring_config(DEFAULT_CONFIG))
    accounts = [
        AccountInput(
            'Acme, "West"',
            "Acme",
            "paid",
            {"p1_p2_volume": Decimal(3), "days_to_renewal": Decimal("1E+2")},
            SignalCounts(moderate=1),
        ),
        AccountInput("plain", "Plain", "standard", {"platform_score": Decimal("0.00000001")}),
    ]
    lines = DetailLines(model)
    for account in accounts:
        score = model.score(account)
        text = lines.lines(account, model.score_compact(account))
        parsed = list(csv.reader(io.StringIO(text)))
        assert parsed == list(metric_rows(score))
        assert all(len(row) == len(METRIC_COLUMNS) for row in parsed)
    assert parsed[0][0] == "plain"


def test_a_run_folder_is_never_overwritten(tmp_path: Path) -> None:
    store = LocalRunStore(tmp_path)
    writer = store.create_run("2026-11_x")
    writer.write_bytes("scores.csv", b"a\n")
    with pytest.raises(ArtifactExistsError):
        writer.write_bytes("scores.csv", b"b\n")
    with pytest.raises(ArtifactExistsError):
        store.create_run("2026-11_x")
    assert (tmp_path / "2026-11_x" / "scores.csv").read_bytes() == b"a\n"


def test_a_stream_that_fails_leaves_no_half_file(tmp_path: Path) -> None:
    writer = LocalRunStore(tmp_path).create_run("r")
    with pytest.raises(RuntimeError), open_text(writer, "metrics.csv") as handle:
        handle.write("account_id,metric\n")
        raise RuntimeError("scoring broke mid-way")
    assert list((tmp_path / "r").iterdir()) == []
    with open_text(writer, "metrics.csv") as handle:
        handle.write("complete\n")
    assert (tmp_path / "r" / "metrics.csv").read_text() == "complete\n"


def test_number_columns_are_written_as_they_are_and_text_columns_are_guarded() -> None:
    """Plain columns (numbers, booleans) skip the scans; text columns keep the formula guard
    and CSV quoting, on both the joined path and the csv.writer path."""
    header = ["account_id", "final_score", "account_name"]
    plain = [["001A", "001B"], Plain(["-1.5", "100.0"]), ["=HYPERLINK(1)", "Beta"]]
    assert scores_csv_from_columns(header, plain) == (
        b"account_id,final_score,account_name\n001A,-1.5,'=HYPERLINK(1)\n001B,100.0,Beta\n"
    )
    quoted = [["001A", "001B"], Plain(["-1.5", "100.0"]), ["@SUM(A1)", "Beta, Inc."]]
    assert scores_csv_from_columns(header, quoted) == (
        b'account_id,final_score,account_name\n001A,-1.5,\'@SUM(A1)\n001B,100.0,"Beta, Inc."\n'
    )
