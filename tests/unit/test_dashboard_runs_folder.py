"""The dashboard never follows a symlink or ``..`` out of its runs folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from health_score.dashboard.runs import LocalRuns, RunError


@pytest.fixture
def runs(tmp_path: Path) -> LocalRuns:
    base = tmp_path / "runs"
    (base / "2026-10_a").mkdir(parents=True)
    (base / "2026-10_a" / "manifest.json").write_text("{}", encoding="utf-8")
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "manifest.json").write_text('{"secret": 1}', encoding="utf-8")
    (base / "2026-11_link").symlink_to(outside, target_is_directory=True)
    (base / "2026-10_a" / "scores.csv").symlink_to(outside / "manifest.json")
    return LocalRuns(base)


def test_a_symlinked_run_folder_is_not_listed_nor_read(runs: LocalRuns) -> None:
    assert runs.run_ids() == ["2026-10_a"]
    with pytest.raises(RunError, match="points outside"):
        runs.read("2026-11_link", "manifest.json")


def test_a_file_linking_outside_the_runs_folder_is_refused(runs: LocalRuns) -> None:
    assert runs.read("2026-10_a", "manifest.json") == b"{}"
    with pytest.raises(RunError, match=r"scores\.csv points outside"):
        runs.read("2026-10_a", "scores.csv")


@pytest.mark.parametrize(
    ("run_id", "name"),
    [
        ("..", "secret/manifest.json"),
        ("2026-10_a", "../../secret/manifest.json"),
        ("2026-10_a", "/etc/passwd"),
        ("2026-10_a", "config/../../x"),
    ],
)
def test_dot_dot_and_absolute_names_are_refused(runs: LocalRuns, run_id: str, name: str) -> None:
    with pytest.raises(RunError, match="is not a file of a run folder"):
        runs.read(run_id, name)
