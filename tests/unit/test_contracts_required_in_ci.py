"""With ``CI`` set, a test that needs ../shared fails instead of skipping when it is missing."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

TEST = "tests/unit/test_config.py::test_original_system_config_loads_unchanged"


def run_one(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "HSM_SHARED_DIR")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", TEST],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**base, **env},
    )


def test_missing_shared_folder_fails_in_ci_and_skips_locally(tmp_path: object) -> None:
    in_ci = run_one(CI="1", HSM_SHARED_DIR=str(tmp_path))
    assert in_ci.returncode == 1
    assert "CI is set and" in in_ci.stdout
    local = run_one(HSM_SHARED_DIR=str(tmp_path))
    assert local.returncode == 0
    assert "1 skipped" in local.stdout
