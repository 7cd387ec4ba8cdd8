"""``health-score backfill`` against a sandbox that has lived through time: one ordinary run per
month, skipped when already ok, resumed after an interruption, dry unless --write."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from health_score import cli
from health_score.backfill import BackfillOptions, MonthResult, backfill, months, run_backfill
from health_score.pipeline import RunOptions, UsageError
from health_score_sandbox.sandbox import Sandbox
from tests.conftest import sandbox_config

# One worker builds this module's sandbox history (make test runs --dist loadgroup).
pytestmark = pytest.mark.xdist_group("test_backfill")

SANDBOX_DATE = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(40, seed=11, history_months=8) as sb:
        yield sb


@pytest.fixture
def config_dir(tmp_path: Path, sandbox: Sandbox) -> Path:
    return sandbox_config(tmp_path / "config", sandbox)


def options(sandbox: Sandbox, config_dir: Path, tmp_path: Path, **extra: object) -> BackfillOptions:
    first = str(extra.pop("first", "2026-08"))
    last = str(extra.pop("last", "2026-10"))
    return BackfillOptions(
        first=first,
        last=last,
        run=RunOptions(
            config_dir=config_dir,
            env=sandbox.env(),
            output=tmp_path / "scores.csv",
            runs_dir=str(tmp_path / "runs"),
            now=SANDBOX_DATE,
        ),
        **extra,  # type: ignore[arg-type]
    )


def manifest(tmp_path: Path, run_id: str) -> dict[str, object]:
    data = json.loads((tmp_path / "runs" / run_id / "manifest.json").read_text())
    assert isinstance(data, dict)
    return data


def test_months_are_listed_inclusive_across_a_year_end() -> None:
    assert months("2025-11", "2026-02") == ["2025-11", "2025-12", "2026-01", "2026-02"]
    assert months("2026-05", "2026-05") == ["2026-05"]
    with pytest.raises(UsageError, match="--to 2026-01 is before --from 2026-02"):
        months("2026-02", "2026-01")
    with pytest.raises(UsageError, match="YYYY-MM"):
        months("2026-13", "2026-14")


def test_each_month_is_a_run_of_its_own_period_compared_with_the_month_before(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    sandbox.reset_stats()
    results = backfill(options(sandbox, config_dir, tmp_path))
    assert [r.period for r in results] == ["2026-08", "2026-09", "2026-10"]
    assert [r.status for r in results] == ["ok", "ok", "ok"], [r.sources_not_ok for r in results]
    manifests = [manifest(tmp_path, str(r.run_id)) for r in results]
    assert [m["as_of"] for m in manifests] == [
        "2026-09-01T00:00:00+00:00",
        "2026-10-01T00:00:00+00:00",
        "2026-11-01T00:00:00+00:00",
    ]
    assert all(m["dry_run"] is True for m in manifests)
    # The default alert rules are evaluated against the month before, and a dry run sends none.
    alerts = [m["alerts"] for m in manifests]
    assert [a["status"] for a in alerts] == ["evaluated"] * 3
    assert [a["compared_with"] for a in alerts] == [None, results[0].run_id, results[1].run_id]
    assert all(a["salesforce"] == {"status": "skipped", "reason": "dry run"} for a in alerts)
    assert manifests[0]["compared_with"] is None
    assert manifests[1]["compared_with"] == {"run_id": results[0].run_id, "period": "2026-08"}
    assert manifests[2]["compared_with"] == {"run_id": results[1].run_id, "period": "2026-09"}
    # A dry backfill writes nothing to Salesforce and leaves the current scores alone.
    assert not (tmp_path / "scores.csv").exists()
    writes = [
        label
        for label in sandbox.stats()["salesforce"]
        if "/jobs/ingest" in label or "/composite" in label
    ]
    assert writes == []
    # Different months, different scores (the sandbox's accounts live through time).
    finals = []
    for r in results:
        text = (tmp_path / "runs" / str(r.run_id) / "scores.csv").read_text()
        finals.append(
            {row["account_id"]: row["final_score"] for row in csv.DictReader(io.StringIO(text))}
        )
    assert finals[0] != finals[1] != finals[2]


def test_months_with_an_ok_run_are_skipped_unless_forced(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    first = backfill(options(sandbox, config_dir, tmp_path, first="2026-09"))
    again = backfill(options(sandbox, config_dir, tmp_path, first="2026-08"))
    assert [(r.period, r.status) for r in again] == [
        ("2026-08", "ok"),
        ("2026-09", "skipped"),
        ("2026-10", "skipped"),
    ]
    assert [r.run_id for r in again[1:]] == [r.run_id for r in first]
    forced = backfill(options(sandbox, config_dir, tmp_path, first="2026-10", force=True))
    assert forced[0].status == "ok" and forced[0].run_id != first[1].run_id
    # Re-running a month reproduces it: the same scores, byte for byte.
    runs = tmp_path / "runs"
    before = (runs / str(first[1].run_id) / "scores.csv").read_bytes()
    assert (runs / str(forced[0].run_id) / "scores.csv").read_bytes() == before


def test_an_interrupted_backfill_resumes_where_it_stopped(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    def stop_after_the_first(result: MonthResult) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        backfill(options(sandbox, config_dir, tmp_path), on_month=stop_after_the_first)
    kept = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(kept) == 1 and kept[0].startswith("2026-08_")
    resumed = backfill(options(sandbox, config_dir, tmp_path))
    assert [(r.period, r.status) for r in resumed] == [
        ("2026-08", "skipped"),
        ("2026-09", "ok"),
        ("2026-10", "ok"),
    ]
    assert resumed[0].run_id == kept[0]


def test_the_table_and_exit_code(sandbox: Sandbox, config_dir: Path, tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = run_backfill(
        options(sandbox, config_dir, tmp_path, first="2026-09"), out, err, live=True
    )
    assert code == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["period", "status", "scored", "insufficient", "secs", "detail"]
    assert lines[1].split()[:3] == ["2026-09", "ok", "40/40"]
    assert lines[2].split()[:3] == ["2026-10", "ok", "40/40"]
    assert lines[-1] == "2 months: 2 ok"
    assert "[1/2] 2026-09: running…" in err.getvalue()


def test_write_upserts_each_month_under_its_own_period(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    results = backfill(options(sandbox, config_dir, tmp_path, first="2026-09", write=True))
    assert [r.status for r in results] == ["ok", "ok"]
    for r in results:
        m = manifest(tmp_path, str(r.run_id))
        assert m["dry_run"] is False
        writeback = m["writeback"]
        assert isinstance(writeback, dict) and writeback["status"] == "ok", writeback


def test_a_month_not_yet_ended_is_refused_before_anything_runs(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = run_backfill(
        options(sandbox, config_dir, tmp_path, last="2026-11"), out, err, live=False
    )
    assert code == 2
    assert err.getvalue() == (
        "error: --to 2026-11 has not ended yet; the last complete month is 2026-10\n"
    )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_the_command_line_checks_its_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["backfill", "--from", "2026-01", "--last", "3"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["backfill", "--last", "3", "--accounts", "5"])
    assert "--accounts only applies with --demo" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["backfill", "--from", "2026-1", "--demo"])
    assert "--from must be YYYY-MM (e.g. 2026-11), got '2026-1'" in capsys.readouterr().err
