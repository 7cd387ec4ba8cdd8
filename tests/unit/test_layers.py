"""Layers, one direction: records ← scoring ← config ← sources & loaders ← pipeline ← entry points.

The order is read from the source (``tests/layers_support.py``); what importing a module really
loads is checked in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from health_score.config import RUN_SECTION, WRITEBACK_SECTION
from health_score.deadline import SECTION as RUN
from health_score.loaders.salesforce_settings import SECTION as WRITEBACK
from health_score.sources import intercom, jira, looker, salesforce
from health_score.sources.intercom import extractor as intercom_extractor
from health_score.sources.registry import SOURCES, SourceSettings
from tests.layers_support import (
    LAYERS,
    REPO,
    SRC,
    Import,
    cycles,
    imports,
    layer_of,
    package_modules,
)

#: Imports that go up a layer, each with the reason it is still there. Every entry must still
#: exist (the test below fails when one is gone, so the list only shrinks).
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}

HEAVY = ("requests", "boto3", "botocore", "simple_salesforce", "stamina", "urllib3")


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code`` from the repository root."""
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def of_package(modules: set[str], *prefixes: str) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize(
    "code",
    [
        "import health_score.config",
        "from pathlib import Path\nfrom health_score.config import load_config\n"
        "load_config(Path('config'), need_mapping=False)",
    ],
    ids=["import", "load-config-folder"],
)
def test_config_loads_no_source_loader_or_http_stack(code: str) -> None:
    loaded = loaded_after(code)
    assert of_package(loaded, *HEAVY) == []
    assert of_package(loaded, "health_score.sources", "health_score.loaders") == []


def test_validating_sources_yaml_loads_no_extractor_and_no_http_stack() -> None:
    loaded = loaded_after(
        "from pathlib import Path\nfrom health_score.sources.registry import load_sources\n"
        "load_sources(Path('config'))"
    )
    assert "health_score.sources.intercom.settings" in loaded
    assert "health_score.sources.salesforce.settings" in loaded
    assert of_package(loaded, *HEAVY) == []
    extractors = [
        f"health_score.sources.{name}.{part}"
        for name in SOURCES
        for part in ("extractor", "client", "auth")
    ]
    assert sorted(loaded & set(extractors)) == []


def test_the_vendor_packages_export_settings_and_pure_metrics_only() -> None:
    """Extraction is imported from ``<vendor>.extractor``; the package holds no HTTP names."""
    assert intercom.Settings.__module__ == "health_score.sources.intercom.settings"
    assert looker.customer_value.__module__ == "health_score.sources.looker.metrics"
    assert salesforce.Settings.__module__ == "health_score.sources.salesforce.settings"
    assert intercom_extractor.IntercomExtractor.__module__ == intercom_extractor.__name__
    for package in (intercom, jira, looker, salesforce):
        assert all(hasattr(package, name) for name in package.__all__)
        assert not hasattr(package, "from_env")
        assert not [n for n in package.__all__ if n.endswith("Extractor")]


def test_source_settings_has_one_field_per_source() -> None:
    settings = SourceSettings()
    assert tuple(f for f in SourceSettings.__dataclass_fields__) == (*SOURCES, WRITEBACK, RUN)
    assert WRITEBACK == WRITEBACK_SECTION
    assert RUN == RUN_SECTION == "run"
    assert settings["writeback"] is settings.writeback
    assert settings["run"] is settings.run
    assert settings["jira"] is settings.jira
    with pytest.raises(KeyError):
        settings["zendesk"]


def test_every_module_has_a_layer() -> None:
    assert [m for m in package_modules() if layer_of(m) < 0] == []


def upward(found: list[Import]) -> list[Import]:
    return [i for i in found if layer_of(i.target) > layer_of(i.source)]


def test_imports_go_down_the_layers_only() -> None:
    found = imports()
    unexpected = [i for i in upward(found) if (i.source, i.target) not in ALLOWED_UPWARD]
    names = [name for name, _ in LAYERS]
    assert [
        f"{i} ({names[layer_of(i.source)]} → {names[layer_of(i.target)]})" for i in unexpected
    ] == []


def test_every_allowed_upward_import_still_exists() -> None:
    present = {(i.source, i.target) for i in upward(imports())}
    assert sorted(set(ALLOWED_UPWARD) - present) == []


def test_no_import_cycles() -> None:
    edges = [(i.source, i.target) for i in imports() if (i.source, i.target) not in ALLOWED_UPWARD]
    assert cycles(edges) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]) == [["a", "b", "c"]]
    assert cycles([("a", "b"), ("b", "c")]) == []


def test_a_from_raw_dry_run_loads_no_http_stack_and_no_extractor(tmp_path: Path) -> None:
    """Start-up: ``--from-raw`` scores a file; the vendors' clients, the Salesforce write-back
    loader, the outcomes reader and the alerts' delivery are live-only (imported where used)."""
    loaded = loaded_after(
        "import health_score.cli\n"
        "code = health_score.cli.main(['run', '--dry-run', '--from-raw', "
        "'examples/raw_metrics.csv', '--config-dir', 'config', "
        f"'--output', {str(tmp_path / 'scores.csv')!r}, "
        f"'--runs-dir', {str(tmp_path / 'runs')!r}, '--period', '2026-11'])\n"
        "assert code == 0, code"
    )
    assert (tmp_path / "scores.csv").read_text(encoding="utf-8").count("\n") == 26  # 25 + header
    assert "health_score.loaders.alerts_output" in loaded  # alerts.csv is still evaluated
    assert of_package(loaded, *HEAVY) == []
    live_only = [
        "health_score.alerts.delivery",
        "health_score.loaders.salesforce",
        "health_score.sources.credentials",
        "health_score.sources.extractors",
        "health_score.sources.http",
        "health_score.sources.salesforce.outcomes",
        *(
            f"health_score.sources.{name}.{part}"
            for name in SOURCES
            for part in ("extractor", "client")
        ),
    ]
    assert sorted(loaded & set(live_only)) == []
