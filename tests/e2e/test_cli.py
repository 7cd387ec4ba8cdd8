"""The dry-run command line on raw-metrics files: outputs, run folder, exit codes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from health_score.cli import main as cli_main
from health_score.config import load_scoring_config
from tests.conftest import IDENTITY_METRICS, REPO
from tests.explanation_support import metric_csv, metric_rows

SIGNALS = ("critical_count", "moderate_count", "watch_count", "critical_confirmed")


def write_raw(path: Path, rows: list[dict[str, str]]) -> Path:
    header = ["account_id", "account_name", "segment", *IDENTITY_METRICS.values(), *SIGNALS]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, header, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in header})
    return path


def example(
    account_id: str, dims: tuple[str, str, str, str, str], segment: str = "paid", **signals: str
) -> dict[str, str]:
    row = {"account_id": account_id, "account_name": f"Example {account_id}", "segment": segment}
    row.update(dict(zip(IDENTITY_METRICS.values(), dims, strict=True)))
    row.update(signals)
    return row


def read_scores(path: Path) -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return {r["account_id"]: r for r in csv.DictReader(handle)}


@pytest.fixture
def examples_raw(tmp_path: Path) -> Path:
    return write_raw(
        tmp_path / "raw.csv",
        [
            example("A", ("85", "95", "88", "92", "82")),
            example(
                "B", ("85", "95", "88", "92", "82"), critical_count="1", critical_confirmed="1"
            ),
            example("C", ("72", "75", "55", "50", "58"), segment="standard"),
            example("D", ("85", "95", "88", "", "82")),
            example("W", ("85", "95", "88", "92", "82"), watch_count="1"),
            example("M", ("85", "95", "88", "92", "82"), moderate_count="1"),
        ],
    )


def main(argv: list[str]) -> int:
    """``health-score run ARGS``."""
    return cli_main(["run", *argv])


def run_cli(tmp_path: Path, *args: str) -> int:
    return main(
        [
            "--dry-run",
            "--output",
            str(tmp_path / "out" / "scores.csv"),
            "--runs-dir",
            str(tmp_path / "runs"),
            *args,
        ]
    )


def test_worked_examples_through_the_command_line(
    tmp_path: Path, identity_config: Path, examples_raw: Path
) -> None:
    code = run_cli(
        tmp_path,
        "--from-raw",
        str(examples_raw),
        "--config-dir",
        str(identity_config),
        "--period",
        "2026-11",
    )
    assert code == 0
    scores = read_scores(tmp_path / "out" / "scores.csv")
    assert (
        scores["A"]["churn_risk_score"],
        scores["A"]["final_score"],
        scores["A"]["health_tier"],
    ) == ("89.8", "86.7", "Healthy")
    assert (
        scores["B"]["quantitative_score"],
        scores["B"]["final_score"],
        scores["B"]["health_tier"],
        scores["B"]["qualitative_override"],
        scores["B"]["modifier_applied"],
        scores["B"]["cap_value"],
    ) == ("86.7", "50.0", "Critical", "true", "Confirmed Critical signal → cap at 50", "50")
    assert (
        scores["C"]["churn_risk_score"],
        scores["C"]["final_score"],
        scores["C"]["health_tier"],
    ) == ("65.4", "62.4", "At Risk")
    assert (
        scores["D"]["churn_risk_score"],
        scores["D"]["relationship_expansion"],
        scores["D"]["coverage_pct"],
    ) == ("89.4", "", "91.0")
    assert scores["W"]["final_score"] == "86.7"
    assert scores["M"]["final_score"] == "75.0"


def test_cap_columns_hold_the_originals_meanings(tmp_path: Path, identity_config: Path) -> None:
    """qualitative_override: the cap lowered the score (true/false); modifier_applied: the
    matching rule in words; then our cap_value and cap_rule (DESIGN §5)."""
    raw = write_raw(
        tmp_path / "raw.csv",
        [
            example("CAPPED", ("80", "80", "80", "80", "80"), moderate_count="2"),
            example("PLAIN", ("80", "80", "80", "80", "80")),
            example("LOW", ("40", "40", "40", "40", "40"), critical_count="1"),
        ],
    )
    assert run_cli(tmp_path, "--from-raw", str(raw), "--config-dir", str(identity_config)) == 0
    text = (tmp_path / "out" / "scores.csv").read_text(encoding="utf-8")
    header, *lines = text.splitlines()
    assert header.endswith(
        ",coverage_pct,qualitative_override,modifier_applied,cap_value,cap_rule,"
        "critical_count,moderate_count,watch_count,critical_confirmed,low_coverage,"
        "owner,arr,renewal_date,days_to_renewal"  # context (Salesforce; none from a raw file)
    )
    tail = {line.split(",")[0]: line.split(",", 12)[12] for line in lines}
    assert tail == {
        "CAPPED": "100.0,true,1 Moderate signal → cap at 75,75,moderate_1plus,0,2,0,0,false,,,,",
        "PLAIN": "100.0,false,,,,0,0,0,0,false,,,,",
        "LOW": "100.0,false,1 Critical signal → cap at 65,65,critical_1,1,0,0,0,false,,,,",
    }
    run_folder = next((tmp_path / "runs").iterdir())
    assert (run_folder / "scores.csv").read_text(encoding="utf-8") == text


def test_run_folder_holds_raw_scores_detail_and_manifest(
    tmp_path: Path, identity_config: Path, examples_raw: Path
) -> None:
    assert (
        run_cli(
            tmp_path,
            "--from-raw",
            str(examples_raw),
            "--config-dir",
            str(identity_config),
            "--period",
            "2026-10",
        )
        == 0
    )
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name.startswith("2026-10_")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "ok"
    assert manifest["period"] == "2026-10"
    assert (manifest["accounts_total"], manifest["accounts_scored"]) == (6, 6)
    assert len(manifest["config_sha256"]) == 64
    assert manifest["started_at"] <= manifest["finished_at"]
    assert (folder / "config" / "weights.yaml").read_text() == (
        identity_config / "weights.yaml"
    ).read_text()
    # raw.csv is in the --from-raw format: scoring it again gives the same scores.
    again = tmp_path / "again"
    assert (
        main(
            [
                "--dry-run",
                "--from-raw",
                str(folder / "raw.csv"),
                "--config-dir",
                str(identity_config),
                "--output",
                str(again / "s.csv"),
                "--runs-dir",
                str(again / "runs"),
            ]
        )
        == 0
    )
    assert read_scores(again / "s.csv") == read_scores(folder / "scores.csv")
    # The explanation (metrics.npz): the points of an account add up to its quantitative score.
    points = sum(float(r["points"] or 0) for r in metric_rows(folder) if r["account_id"] == "C")
    assert points == pytest.approx(62.41, abs=1e-4)


def test_bad_cell_is_refused_naming_line_and_column_and_writes_nothing(
    tmp_path: Path, identity_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = write_raw(
        tmp_path / "bad.csv",
        [
            example("A", ("85", "95", "88", "92", "82")),
            example("B", ("85", "lots", "88", "92", "82")),
        ],
    )
    output = tmp_path / "out" / "scores.csv"
    output.parent.mkdir()
    output.write_text("previous run\n")
    code = run_cli(tmp_path, "--from-raw", str(raw), "--config-dir", str(identity_config))
    assert code == 2
    err = capsys.readouterr().err
    assert (
        "bad.csv: line 3, column financial: expected a number or an empty cell, got 'lots'" in err
    )
    assert output.read_text() == "previous run\n"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (example("A", ("85", "95", "88", "92", "82"), segment="gold"), "unknown segment 'gold'"),
        (example("", ("85", "95", "88", "92", "82")), "account_id is empty"),
        (
            example("A", ("85", "95", "88", "92", "82"), critical_count="-1"),
            "column critical_count: expected a whole number",
        ),
    ],
)
def test_bad_rows_are_refused_with_their_reason(
    tmp_path: Path,
    identity_config: Path,
    capsys: pytest.CaptureFixture[str],
    row: dict[str, str],
    message: str,
) -> None:
    raw = write_raw(tmp_path / "bad.csv", [row])
    assert run_cli(tmp_path, "--from-raw", str(raw), "--config-dir", str(identity_config)) == 2
    assert message in capsys.readouterr().err


def test_duplicate_account_ids_are_refused(
    tmp_path: Path, identity_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    row = example("A", ("85", "95", "88", "92", "82"))
    raw = write_raw(tmp_path / "dup.csv", [row, row])
    assert run_cli(tmp_path, "--from-raw", str(raw), "--config-dir", str(identity_config)) == 2
    assert "line 3: account_id 'A' duplicates line 2" in capsys.readouterr().err


def test_missing_raw_file_and_bad_period_exit_2(
    tmp_path: Path,
    identity_config: Path,
    examples_raw: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        run_cli(
            tmp_path, "--from-raw", str(tmp_path / "nope.csv"), "--config-dir", str(identity_config)
        )
        == 2
    )
    assert "nope.csv: file not found" in capsys.readouterr().err
    assert (
        run_cli(
            tmp_path,
            "--from-raw",
            str(examples_raw),
            "--config-dir",
            str(identity_config),
            "--period",
            "2026-13",
        )
        == 2
    )
    assert "--period must be YYYY-MM" in capsys.readouterr().err


def test_from_raw_needs_only_weights_and_thresholds(
    tmp_path: Path, identity_config: Path, examples_raw: Path
) -> None:
    assert not (identity_config / "account_mapping.csv").exists()
    assert not (identity_config / "sources.yaml").exists()
    assert (
        run_cli(tmp_path, "--from-raw", str(examples_raw), "--config-dir", str(identity_config))
        == 0
    )


def test_period_defaults_to_the_last_complete_month(
    tmp_path: Path, identity_config: Path, examples_raw: Path
) -> None:
    from datetime import UTC, datetime

    from health_score.pipeline import last_complete_period, period_end

    before = last_complete_period(datetime.now(UTC))
    assert (
        run_cli(tmp_path, "--from-raw", str(examples_raw), "--config-dir", str(identity_config))
        == 0
    )
    after = last_complete_period(datetime.now(UTC))
    (folder,) = (tmp_path / "runs").iterdir()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["period"] in {before, after}
    assert manifest["as_of"] == period_end(manifest["period"]).isoformat()


def test_as_of_is_recorded_in_a_dry_run_and_names_its_month(
    tmp_path: Path, identity_config: Path, examples_raw: Path
) -> None:
    code = run_cli(
        tmp_path,
        "--from-raw",
        str(examples_raw),
        "--config-dir",
        str(identity_config),
        "--as-of",
        "2026-08-15",
    )
    assert code == 0
    (folder,) = (tmp_path / "runs").iterdir()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["as_of"] == "2026-08-15T00:00:00+00:00"
    assert manifest["period"] == "2026-08"


def test_as_of_is_refused_with_a_live_write(
    tmp_path: Path, identity_config: Path, examples_raw: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli_main(
            [
                "run",
                "--from-raw",
                str(examples_raw),
                "--config-dir",
                str(identity_config),
                "--as-of",
                "2026-08-15",
            ]
        )
    assert stopped.value.code == 2
    assert "--as-of is for ad-hoc dry runs" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("given", ["2026-8-15", "15/08/2026", "2026-08-15T10:00"])
def test_as_of_must_be_a_day(given: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli_main(["run", "--dry-run", "--from-raw", "x.csv", "--as-of", given])
    assert stopped.value.code == 2
    assert "expected YYYY-MM-DD" in capsys.readouterr().err


def test_each_run_gets_its_own_folder(
    tmp_path: Path, identity_config: Path, examples_raw: Path
) -> None:
    for _ in range(2):
        assert (
            run_cli(
                tmp_path,
                "--from-raw",
                str(examples_raw),
                "--config-dir",
                str(identity_config),
                "--period",
                "2026-11",
            )
            == 0
        )
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_array_scoring_writes_the_same_files_as_the_exact_rule(tmp_path: Path) -> None:
    """The array path (every run) and the all-Decimal path write byte-identical files."""
    import os

    outputs = []
    for name, exact in (("exact", "1"), ("array", "0")):
        env = {**os.environ, "HSM_EXACT_SCORING": exact}
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "health_score",
                "run",
                "--dry-run",
                "--from-raw",
                "examples/raw_metrics.csv",
                "--output",
                str(tmp_path / name / "s.csv"),
                "--runs-dir",
                str(tmp_path / name / "runs"),
                "--period",
                "2026-11",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        (run,) = (tmp_path / name / "runs").iterdir()
        outputs.append(
            {"scores.csv": (run / "scores.csv").read_bytes(), "metrics": metric_csv(run)}
        )
    assert outputs[0] == outputs[1]
    per_account = sum(
        len(d.metrics) for d in load_scoring_config(REPO / "config").dimensions.values()
    )
    assert outputs[0]["metrics"].count("\n") == 1 + 25 * per_account


def test_raw_file_without_account_id_column_is_refused(
    tmp_path: Path, identity_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = tmp_path / "noid.csv"
    raw.write_text("account_name,segment,support\nAcme,paid,80\n", encoding="utf-8")
    assert run_cli(tmp_path, "--from-raw", str(raw), "--config-dir", str(identity_config)) == 2
    assert "noid.csv: line 1: missing required column(s) ['account_id']" in capsys.readouterr().err


def test_raw_file_with_bom_blank_lines_and_short_rows_is_read(
    tmp_path: Path, identity_config: Path
) -> None:
    raw = tmp_path / "loose.csv"
    raw.write_text(
        "\ufeffaccount_id,segment,support,financial,critical_count\n"
        "\nA,paid, 85 ,95,1\n,,,,\nB,paid\n",
        encoding="utf-8",
    )
    assert run_cli(tmp_path, "--from-raw", str(raw), "--config-dir", str(identity_config)) == 0
    scores = read_scores(tmp_path / "out" / "scores.csv")
    assert scores["A"]["support_health"] == "85.0"
    assert scores["A"]["cap_value"] == "65"
    assert scores["B"]["health_tier"] == "Insufficient Data"


# -- bounds on what a raw file may hold --------------------------------------------------------

OUT_OF_BOUNDS = (
    "expected a finite number with at most 30 significant digits, below 1e15 in magnitude"
)


@pytest.mark.parametrize(
    ("cell", "why"),
    [
        ("1e15", "1e15 or more in magnitude"),
        ("-1e15", "1e15 or more in magnitude"),
        ("1000000000000000", "1e15 or more in magnitude"),
        ("1e999", "1e15 or more in magnitude"),
        ("1234567890123456789012345678901", "31 significant digits"),
        ("0.1234567890123456789012345678901", "31 significant digits"),
        ("nan", "not a finite number"),
        ("NaN", "not a finite number"),
        ("inf", "not a finite number"),
        ("-Infinity", "not a finite number"),
    ],
)
def test_a_number_out_of_bounds_is_refused_naming_line_and_column(
    tmp_path: Path,
    identity_config: Path,
    capsys: pytest.CaptureFixture[str],
    cell: str,
    why: str,
) -> None:
    raw = write_raw(
        tmp_path / "big.csv",
        [
            example("A", ("85", "95", "88", "92", "82")),
            example("B", ("85", cell, "88", "92", "82")),
        ],
    )
    assert run_cli(tmp_path, "--from-raw", str(raw), "--config-dir", str(identity_config)) == 2
    err = capsys.readouterr().err
    assert (
        f"big.csv: line 3, column financial: {OUT_OF_BOUNDS}, or an empty cell; got {cell!r} "
        f"({why})" in err
    )
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_numbers_just_inside_the_bounds_are_scored(
    tmp_path: Path, identity_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = write_raw(
        tmp_path / "edge.csv",
        [
            example("A", ("85", "999999999999999", "88", "92", "82")),  # 15 nines: < 1e15
            example("B", ("85", "-999999999999999.5", "88", "92", "82")),
            example("C", ("85", "50.1234567890123456789012345678", "88", "92", "82")),  # 30
        ],
    )
    assert run_cli(tmp_path, "--from-raw", str(raw), "--config-dir", str(identity_config)) == 0
    scores = read_scores(tmp_path / "out" / "scores.csv")
    # financial is scored 0–100 as is (identity model), clipped at 100 and 0.
    assert [scores[a]["financial_contract"] for a in "ABC"] == ["100.0", "0.0", "50.1"]


def test_a_count_out_of_bounds_is_refused(
    tmp_path: Path, identity_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = write_raw(
        tmp_path / "big.csv", [example("A", ("85", "95", "88", "92", "82"), watch_count="1e15")]
    )
    assert run_cli(tmp_path, "--from-raw", str(raw), "--config-dir", str(identity_config)) == 2
    assert (
        "big.csv: line 2, column watch_count: expected a whole number ≥ 0 below 1e15, got '1e15'"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize("column", ["account_name", "financial"])
def test_a_cell_over_the_csv_field_limit_names_file_and_line(
    tmp_path: Path, identity_config: Path, capsys: pytest.CaptureFixture[str], column: str
) -> None:
    rows = [example(x, ("85", "95", "88", "92", "82")) for x in "ABCD"]
    rows[2][column] = "7" * 200_000
    raw = write_raw(tmp_path / "huge.csv", rows)
    assert run_cli(tmp_path, "--from-raw", str(raw), "--config-dir", str(identity_config)) == 2
    err = capsys.readouterr().err
    assert "huge.csv: line 4: a cell of the record starting on this line is over 131,072" in err
    assert "Traceback" not in err and "field larger than field limit" not in err
    assert len(err) < 2_000


def test_an_unclosed_quote_in_a_raw_file_is_reported_where_it_opens(
    tmp_path: Path, identity_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = "B,Beta,paid,85,95,88,92,82,0,0,0,0\n"
    text = (
        "account_id,account_name,segment,support,financial,adoption,relationship,pvs,"
        "critical_count,moderate_count,watch_count,critical_confirmed\n"
        + good
        + 'A,"Acme,paid,85,95,88,92,82,0,0,0,0\n'
        + good.replace("B", "C", 1) * 5
    )
    raw = tmp_path / "quote.csv"
    raw.write_text(text, encoding="utf-8")
    assert run_cli(tmp_path, "--from-raw", str(raw), "--config-dir", str(identity_config)) == 2
    err = capsys.readouterr().err
    assert "quote.csv: line 3: a quoted cell starts in the record on this line" in err
    assert "line 8" not in err and "Traceback" not in err


def test_a_long_value_in_a_raw_file_error_is_cut(
    tmp_path: Path, identity_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = write_raw(
        tmp_path / "long.csv", [example("A", ("85", "95", "88", "92", "82"), "x" * 10_000)]
    )
    assert run_cli(tmp_path, "--from-raw", str(raw), "--config-dir", str(identity_config)) == 2
    err = capsys.readouterr().err
    assert f"unknown segment {'x' * 200!r}… (10000 characters)" in err
    assert "x" * 201 not in err
