"""The run's deadline, end to end: a source slower than the budget is stopped and reported, and
the run still writes its files with what the others read."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from health_score.cli import main as cli_main
from health_score.pipeline import RunOptions, RunSummary, run
from health_score.records import Account
from health_score.sources.base import SourceResult
from health_score_sandbox.sandbox import Sandbox
from tests.conftest import sandbox_config

ACCOUNTS = 30
#: Jira answers each request after this long; the run's budget is shorter.
SLOW_MS = 4000


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(ACCOUNTS, seed=5) as sb:
        yield sb


@pytest.fixture
def slow_jira(sandbox: Sandbox) -> Iterator[None]:
    knobs = sandbox.servers["jira"].knobs
    knobs.latency_ms = SLOW_MS
    yield
    knobs.latency_ms = 0.0


def config_folder(tmp_path: Path, sandbox: Sandbox, run_section: dict[str, Any] | None) -> Path:
    def edit(sources: dict[str, Any]) -> None:
        if run_section is not None:
            sources["run"] = run_section

    return sandbox_config(tmp_path / "config", sandbox, edit)


def options(sandbox: Sandbox, config_dir: Path, tmp_path: Path, **extra: Any) -> RunOptions:
    as_of = sandbox.portfolio.as_of
    return RunOptions(
        config_dir=config_dir,
        env=sandbox.env(),
        output=tmp_path / "scores.csv",
        runs_dir=str(tmp_path / "runs"),
        period="2026-11",
        as_of=datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC),
        now=datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC),  # the sandbox's date
        **extra,
    )


def manifest_of(summary: RunSummary) -> dict[str, Any]:
    assert summary.run_location is not None
    loaded: dict[str, Any] = json.loads((Path(summary.run_location) / "manifest.json").read_text())
    return loaded


@pytest.mark.usefixtures("slow_jira")
def test_a_source_slower_than_run_budget_seconds_is_stopped_and_the_run_writes_its_files(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    config_dir = config_folder(tmp_path, sandbox, {"budget_seconds": 1.5})
    started = time.monotonic()
    summary = run(options(sandbox, config_dir, tmp_path))
    elapsed = time.monotonic() - started
    assert elapsed < SLOW_MS / 1000  # the run did not wait for Jira's first answer
    jira = summary.sources["jira"]
    assert jira.status == "failed"
    assert re.fullmatch(
        r"deadline: stopped after 2 s \(run budget 1\.5 s, run\.budget_seconds\)", jira.error or ""
    ), jira.error
    assert {n: r.status for n, r in summary.sources.items() if n != "jira"} == dict.fromkeys(
        ("intercom", "looker", "salesforce"), "ok"
    )
    assert summary.status == "degraded"
    manifest = manifest_of(summary)
    assert manifest["status"] == "degraded"
    assert manifest["budget"] == {"seconds": 1.5, "origin": "run.budget_seconds"}
    assert manifest["sources"]["jira"]["error"] == jira.error
    assert manifest["sources"]["jira"]["requests"] >= 1
    folder = Path(summary.run_location or "")
    # Scores for what was read: every account scored, Jira's metrics unavailable.
    assert (folder / "scores.csv").is_file() and (folder / "raw.csv").is_file()
    assert summary.accounts_scored == ACCOUNTS


@pytest.mark.usefixtures("slow_jira")
def test_budget_seconds_on_the_command_line_replaces_the_configured_one(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_dir = config_folder(tmp_path, sandbox, {"budget_seconds": 600})
    env = sandbox.env()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        code = cli_main(
            [
                "run",
                "--dry-run",
                "--budget-seconds",
                "1",
                "--config-dir",
                str(config_dir),
                "--output",
                str(tmp_path / "s.csv"),
                "--runs-dir",
                str(tmp_path / "runs"),
            ]
        )
    assert code == 0  # a degraded dry run
    (manifest_file,) = (tmp_path / "runs").glob("*/manifest.json")
    manifest = json.loads(manifest_file.read_text())
    assert manifest["budget"] == {"seconds": 1.0, "origin": "--budget-seconds"}
    assert manifest["sources"]["jira"]["error"].startswith("deadline: stopped after 1 s")


@pytest.mark.parametrize("value", ["0", "-5", "inf", "nan", "soon"])
def test_budget_seconds_must_be_a_positive_finite_number(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli_main(["run", "--dry-run", "--demo", "--budget-seconds", value])
    assert caught.value.code == 2
    assert "--budget-seconds" in capsys.readouterr().err


class Stuck:
    """A source that never returns by itself (stuck outside HTTP, where no deadline reaches)."""

    name = "jira"

    def __init__(self) -> None:
        self.release = threading.Event()

    @property
    def provides(self) -> frozenset[str]:
        return frozenset({"open_bugs_total"})

    @property
    def requests_made(self) -> int:
        return 7

    def extract(self, accounts: Sequence[Account]) -> SourceResult:
        self.release.wait(10)
        return SourceResult(self.name, {}, 7)


def test_a_source_that_ignores_the_deadline_does_not_hold_the_run(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    stuck = Stuck()
    config_dir = config_folder(tmp_path, sandbox, None)
    started = time.monotonic()
    try:
        summary = run(
            options(sandbox, config_dir, tmp_path, budget_seconds=0.3), extractors=[stuck]
        )
    finally:
        stuck.release.set()
    assert time.monotonic() - started < 2
    # Its only active source stopped: the run failed, and still left its record.
    assert summary.status == "failed" and summary.exit_code == 1
    report = summary.sources["jira"]
    assert (report.status, report.requests, report.error) == (
        "failed",
        7,
        "deadline: stopped after 0 s (run budget 0.3 s, --budget-seconds)",
    )
    manifest = manifest_of(summary)
    assert manifest["status"] == "failed"
    assert manifest["sources"]["intercom"]["status"] == "inactive"
