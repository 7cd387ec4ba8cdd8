"""changes.csv from two --from-raw runs in one runs folder: the parts of each account's change."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import pytest

from tests.e2e.test_cli import example, run_cli, write_raw
from tests.scores_support import rewrite_as_old_scores

EIGHTIES = ("80", "80", "80", "80", "80")


def runs(tmp_path: Path) -> list[Path]:
    folders = sorted((tmp_path / "runs").iterdir())
    return sorted(
        folders, key=lambda f: json.loads((f / "manifest.json").read_text())["started_at"]
    )


def changes(folder: Path) -> dict[str, list[dict[str, str]]]:
    rows: dict[str, list[dict[str, str]]] = {}
    with (folder / "changes.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows.setdefault(row["account_id"], []).append(row)
    return rows


def parts(rows: list[dict[str, str]]) -> dict[str, str]:
    return {r["part"]: r["points_change"] for r in rows}


def test_two_runs_explain_each_accounts_change(tmp_path: Path, identity_config: Path) -> None:
    # Identity model: effective weights support 0.18, financial 0.18, adoption 0.15,
    # relationship 0.09, platform value 0.40.
    first = write_raw(
        tmp_path / "september.csv",
        [
            example("A", EIGHTIES),
            example("B", ("80", "80", "80", "50", "80")),  # 72.8 + 4.5 = 77.3
            example("C", EIGHTIES),
            example("D", EIGHTIES),
            example("L", ("50", "50", "50", "50", "50")),
            example("=X", EIGHTIES),  # a formula-like id stays text in the CSV
            example("T", ("80", "80", "80", "80", "79.8")),  # 79.92 → 79.9
        ],
    )
    second = write_raw(
        tmp_path / "october.csv",
        [
            example("A", ("90", "80", "80", "80", "80")),  # support +10 × 0.18 = +1.8
            example("B", ("80", "80", "80", "", "80")),  # relationship missing: 80.0
            example("C", EIGHTIES, critical_count="1"),  # capped at 65: −15.0
            example("D", EIGHTIES),
            example("N", ("70", "70", "70", "70", "70")),  # new: 70.0
            example("=X", EIGHTIES),
            example("T", ("80", "80", "80", "80", "79.6")),  # 79.84 → 79.8: −0.1
        ],
    )
    for raw, period in ((first, "2026-09"), (second, "2026-10")):
        code = run_cli(
            tmp_path,
            "--from-raw",
            str(raw),
            "--config-dir",
            str(identity_config),
            "--period",
            period,
        )
        assert code == 0
    september, october = runs(tmp_path)
    assert json.loads((september / "manifest.json").read_text())["compared_with"] is None
    assert json.loads((october / "manifest.json").read_text())["compared_with"] == {
        "run_id": september.name,
        "period": "2026-09",
    }
    first_rows = changes(september)
    assert parts(first_rows["A"]) == {"appeared": "80.0000"}

    got = changes(october)
    a = got["A"]
    assert (a[0]["previous_final"], a[0]["final"], a[0]["change"]) == ("80.0", "81.8", "1.8")
    assert parts(a) == {"support": "1.8000"}
    assert (a[0]["dimension"], a[0]["raw_before"], a[0]["raw_after"]) == (
        "support_health",
        "80",
        "90",
    )
    # B: 77.3 → 80.0; relationship's 0.09 (at 50) goes to the other metrics (at 80):
    # 0.09 × 80 − 0.09 × 50 = 2.7, all coverage.
    assert (got["B"][0]["change"], parts(got["B"])) == ("2.7", {"coverage": "2.7000"})
    assert (got["C"][0]["tier"], parts(got["C"])) == ("At Risk", {"cap": "-15.0000"})
    assert parts(got["D"]) == {"unchanged": "0.0000"}
    assert (got["N"][0]["previous_final"], parts(got["N"])) == ("", {"appeared": "70.0000"})
    assert (got["L"][0]["final"], parts(got["L"])) == ("", {"lost_score": "-50.0000"})
    assert "'=X" in got and "=X" not in got
    # T: platform value 79.8 → 79.6 at 0.40: −0.08; published 79.9 → 79.8: rounding −0.02.
    assert (got["T"][0]["change"], parts(got["T"])) == (
        "-0.1",
        {"pvs": "-0.0800", "rounding": "-0.0200"},
    )
    for rows in got.values():
        total = sum(Decimal(r["points_change"]) for r in rows)
        assert total == Decimal(rows[0]["change"])


def test_a_second_run_of_the_first_period_compares_with_the_first(
    tmp_path: Path, identity_config: Path
) -> None:
    raw = write_raw(tmp_path / "raw.csv", [example("A", EIGHTIES)])
    for _ in range(2):
        args = ("--from-raw", str(raw), "--config-dir", str(identity_config), "--period", "2026-09")
        assert run_cli(tmp_path, *args) == 0
    first, second = runs(tmp_path)
    manifest = json.loads((second / "manifest.json").read_text())
    assert manifest["compared_with"] == {"run_id": first.name, "period": "2026-09"}
    assert parts(changes(second)["A"]) == {"unchanged": "0.0000"}


def test_a_weight_change_between_runs_is_the_weights_part(
    tmp_path: Path, identity_config: Path
) -> None:
    # Churn Risk / Platform Value 0.6/0.4 → 0.5/0.5, churn metrics at 80, platform value at 60:
    # 48 + 24 = 72.0 → 40 + 30 = 70.0. weights = −0.1 × 80 + 0.1 × 60 = −2.0.
    raw = write_raw(tmp_path / "raw.csv", [example("A", ("80", "80", "80", "80", "60"))])
    changed = tmp_path / "changed-config"
    changed.mkdir()
    for name in ("weights.yaml", "thresholds.yaml"):
        text = (identity_config / name).read_text(encoding="utf-8")
        text = text.replace("churn_risk_weight: 0.60", "churn_risk_weight: 0.50")
        text = text.replace("platform_value_weight: 0.40", "platform_value_weight: 0.50")
        (changed / name).write_text(text, encoding="utf-8")
    for config, period in ((identity_config, "2026-09"), (changed, "2026-10")):
        args = ("--from-raw", str(raw), "--config-dir", str(config), "--period", period)
        assert run_cli(tmp_path, *args) == 0
    rows = changes(runs(tmp_path)[-1])["A"]
    assert (rows[0]["previous_final"], rows[0]["final"], rows[0]["change"]) == (
        "72.0",
        "70.0",
        "-2.0",
    )
    assert parts(rows) == {"weights": "-2.0000"}


def test_a_damaged_previous_run_never_fails_the_run(
    tmp_path: Path, identity_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = write_raw(tmp_path / "raw.csv", [example("A", EIGHTIES)])
    args = ("--from-raw", str(raw), "--config-dir", str(identity_config))
    assert run_cli(tmp_path, *args, "--period", "2026-09") == 0
    (damaged,) = runs(tmp_path)
    (damaged / "metrics.npz").unlink()
    (damaged / "metrics.npz").write_bytes(b"not an archive")
    assert run_cli(tmp_path, *args, "--period", "2026-10") == 0
    latest = runs(tmp_path)[-1]
    assert json.loads((latest / "manifest.json").read_text())["compared_with"] is None
    assert not (latest / "changes.csv").exists()
    assert f"changes.csv not written: run {damaged.name}: metrics.npz" in capsys.readouterr().err


def test_a_previous_run_written_before_cap_value_is_read(
    tmp_path: Path, identity_config: Path
) -> None:
    """Older runs held the cap in qualitative_override (now true/false) and had no cap_value."""
    first = write_raw(
        tmp_path / "september.csv",
        [example("A", EIGHTIES, critical_count="1"), example("B", EIGHTIES)],
    )
    second = write_raw(
        tmp_path / "october.csv",
        [example("A", EIGHTIES), example("B", EIGHTIES, moderate_count="1")],
    )
    args = ("--config-dir", str(identity_config))
    assert run_cli(tmp_path, "--from-raw", str(first), *args, "--period", "2026-09") == 0
    (september,) = runs(tmp_path)
    old = rewrite_as_old_scores(september / "scores.csv").read_text(encoding="utf-8")
    assert "cap_value" not in old and "\nA,Example A,paid,80.0,65.0,At Risk," in old
    assert ",100.0,65,true,critical_1," in old  # coverage, the cap, the boolean, the key
    assert run_cli(tmp_path, "--from-raw", str(second), *args, "--period", "2026-10") == 0
    october = runs(tmp_path)[-1]
    assert json.loads((october / "manifest.json").read_text())["compared_with"] is not None
    got = changes(october)
    # A: the cap of 65 read from the old column goes away: +15.0, all cap. B: capped at 75: −5.0.
    assert (got["A"][0]["previous_final"], parts(got["A"])) == ("65.0", {"cap": "15.0000"})
    assert (got["B"][0]["previous_final"], parts(got["B"])) == ("80.0", {"cap": "-5.0000"})
