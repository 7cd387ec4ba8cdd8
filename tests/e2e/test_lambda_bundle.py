"""The deployment zip (``make package``): runtime dependencies only, pinned, and importable.

The bundle is built once for this module with the real packaging code (pip installs wheels for
the Lambda platform from the package index). When a Python 3.12 interpreter is on this machine
the bundle is the real Lambda one (CPython 3.12, manylinux2014_x86_64) and is imported with that
interpreter; otherwise it is built for this interpreter's version so the import check still runs.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from health_score.lambda_package import (
    LAMBDA_PYTHON,
    LOCKFILE,
    Bundle,
    build,
    canonical,
    target_interpreter,
    write_zip,
)

#: 60 MB before NumPy became a runtime dependency (array scoring, metrics.npz); NumPy adds about
#: 52 MB, 28 MB of which is the OpenBLAS its core links against (README "Performance").
LIMIT_UNZIPPED = 125 * 1000 * 1000
NEVER_BUNDLED = (
    "streamlit",
    "pandas",
    "altair",
    "pytest",
    "moto",
    "hypothesis",
    "ruff",
    "mypy",
    "cfnlint",
    "playwright",
    "openapi_core",
    "trustme",
)

IMPORT_CHECK = """
import importlib, json, pkgutil, sys
sys.path.insert(0, sys.argv[1])
NEVER = set(sys.argv[2].split(","))
import health_score, health_score.pipeline, health_score.aws_lambda
modules = sorted(m.name for m in pkgutil.walk_packages(health_score.__path__, "health_score."))
for name in modules:
    importlib.import_module(name)
try:
    health_score.aws_lambda.lambda_handler({"not": "allowed"}, None)
except health_score.aws_lambda.RunFailed as exc:
    outcome = str(exc)
else:
    outcome = "no error"
print(json.dumps({
    "version": "%d.%d" % sys.version_info[:2],
    "handler": callable(health_score.aws_lambda.lambda_handler),
    "modules": modules,
    "loaded": sorted(
        m for m in sys.modules if m.split(".")[0] in NEVER or m.startswith("health_score_sandbox")
    ),
    "origin": health_score.pipeline.__file__,
    "outcome": outcome,
}))
"""


@dataclass(frozen=True)
class Built:
    bundle: Bundle
    interpreter: str
    names: tuple[str, ...]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    work = tmp_path_factory.mktemp("bundle")
    interpreter = target_interpreter(LAMBDA_PYTHON)
    version = LAMBDA_PYTHON
    if interpreter is None:
        interpreter = sys.executable
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
    bundle = build(work / "lambda.zip", python_version=version, work=work / "lambda")
    with zipfile.ZipFile(bundle.path) as archive:
        names = tuple(archive.namelist())
    yield Built(bundle, interpreter, names)


def test_the_bundle_is_under_its_size_limit_unzipped(built: Built) -> None:
    assert built.bundle.unzipped_bytes <= LIMIT_UNZIPPED
    assert built.bundle.zipped_bytes < built.bundle.unzipped_bytes


def test_the_bundle_carries_no_dashboard_demo_or_dev_packages(built: Built) -> None:
    top = {name.split("/")[0].split("-")[0].lower() for name in built.names}
    assert not top & set(NEVER_BUNDLED)
    assert not [
        n
        for n in built.names
        if n.startswith(("health_score_sandbox/", "health_score/dashboard/", "src/"))
    ]
    for name in ("lambda_package.py", "cli.py", "__main__.py", "defaults/weights.yaml"):
        assert f"health_score/{name}" not in built.names
    assert not [n for n in built.names if n.startswith("dotenv/")]  # Lambda never reads .env


def test_the_bundle_carries_the_code_and_the_config_it_runs_with(built: Built) -> None:
    for name in (
        "health_score/pipeline.py",
        "health_score/aws_lambda.py",
        "health_score/loaders/s3_store.py",
    ):
        assert name in built.names
    for name in ("weights.yaml", "thresholds.yaml", "sources.yaml", "account_mapping.csv"):
        assert f"config/{name}" in built.names


def test_every_dependency_is_the_version_the_lambda_lockfile_pins(built: Built) -> None:
    assert built.bundle.pins
    locked = {
        canonical(line.split("==")[0]): line.split("==")[1].split(";")[0].strip()
        for line in LOCKFILE.read_text(encoding="utf-8").splitlines()
        if "==" in line and not line.lstrip().startswith("#")
    }
    for pin in built.bundle.pins:
        name, version = pin.split("==")
        assert locked[canonical(name)] == version, pin
    bundled = {canonical(p.split("==")[0]) for p in built.bundle.pins}
    assert {"requests", "pydantic", "boto3", "pyjwt", "cryptography", "rollbar"} <= bundled
    # The Salesforce client runs SOQL itself: no simple-salesforce, so no zeep or lxml.
    assert not {"simple-salesforce", "zeep", "lxml"} & bundled


def test_the_handler_imports_from_the_bundle_alone_in_a_clean_interpreter(
    built: Built, tmp_path: Path
) -> None:
    root = tmp_path / "task"
    with zipfile.ZipFile(built.bundle.path) as archive:
        archive.extractall(root)
    result = subprocess.run(
        [
            built.interpreter,
            "-I",  # no PYTHONPATH, no user site-packages
            "-S",  # no site-packages at all: only the standard library and the bundle
            "-c",
            IMPORT_CHECK,
            str(root),
            ",".join(NEVER_BUNDLED),
        ],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "ARTIFACT_BUCKET": "example-bucket"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = __import__("json").loads(result.stdout.strip().splitlines()[-1])
    assert report["version"] == built.bundle.python_version
    assert report["handler"] is True
    assert report["origin"].startswith(str(root))
    assert "health_score.aws_lambda" in report["modules"]
    assert report["loaded"] == []  # nothing from the demo or dev tools was imported
    assert "allowed keys are dry_run, scoring_period, allow_degraded" in report["outcome"]


def test_the_zip_is_byte_for_byte_reproducible(built: Built, tmp_path: Path) -> None:
    folder = tmp_path / "content"
    with zipfile.ZipFile(built.bundle.path) as archive:
        archive.extractall(
            folder, [n for n in built.names if n.startswith(("health_score/", "config/"))]
        )
    first = tmp_path / "a.zip"
    second = tmp_path / "b.zip"
    write_zip(folder, first)
    write_zip(folder, second)
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
