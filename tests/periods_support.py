"""One run of a period against a sandbox, as the period, backfill and history tests drive it."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from health_score.pipeline import RunOptions, RunSummary, run
from health_score_sandbox.sandbox import Sandbox

#: The sandbox's date: the runs' reference now.
SANDBOX_DATE = datetime(2026, 11, 1, tzinfo=UTC)


def period_run(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path, period: str, **options: Any
) -> tuple[RunSummary, dict[str, Any], Path]:
    """A run of ``period`` (dry unless ``dry_run=False``) on the sandbox's date, its files under
    ``tmp_path/period``: the summary, the manifest and the run folder."""
    summary = run(
        RunOptions(
            config_dir=config_dir,
            env=sandbox.env(),
            output=tmp_path / period / "scores.csv",
            runs_dir=str(tmp_path / period / "runs"),
            period=period,
            now=SANDBOX_DATE,
            **options,
        )
    )
    assert summary.run_location is not None, summary.messages
    folder = Path(summary.run_location)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return summary, manifest, folder


def raw_by_account(folder: Path) -> dict[str, dict[str, str]]:
    """A run folder's raw.csv rows by account_id."""
    with (folder / "raw.csv").open(encoding="utf-8") as handle:
        return {r["account_id"]: r for r in csv.DictReader(handle)}
