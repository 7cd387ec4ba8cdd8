"""Shared fixtures: small config folders written to tmp_path."""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import requests
import yaml
from hypothesis import settings

# No per-example deadline: CI shares two cores between two test workers and the sandbox servers,
# and a slow example is not a wrong one. Examples stay bounded by max_examples.
settings.register_profile("project", deadline=None, max_examples=80)
settings.load_profile("project")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "config"
#: The vendors' API descriptions and the original system's files (``../shared`` beside the
#: checkout, or ``HSM_SHARED_DIR``).
SHARED = Path(os.environ.get("HSM_SHARED_DIR") or REPO.parent / "shared")


def shared_file(path: Path, what: str = "../shared/contracts") -> Path:
    """``path`` under SHARED; skip without it locally, but fail when ``CI`` is set, so a CI run
    can never pass with its contract tests silently skipped."""
    if not path.exists():
        required_in_ci(f"{path} is missing ({what}; set HSM_SHARED_DIR to the folder holding it)")
    return path


def required_in_ci(message: str) -> NoReturn:
    """Skip a test whose requirement is missing locally; fail it when ``CI`` is set."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {message}", pytrace=False)
    pytest.skip(message)


DIMENSIONS = (
    "support_health",
    "financial_contract",
    "adoption_engagement",
    "relationship_expansion",
)

IDENTITY_WEIGHTS = """\
health_score:
  churn_risk_weight: 0.60
  platform_value_weight: 0.40
churn_risk:
  support_health: 0.30
  financial_contract: 0.30
  adoption_engagement: 0.25
  relationship_expansion: 0.15
support_health:
  support: 1.0
financial_contract:
  financial: 1.0
adoption_engagement:
  adoption: 1.0
relationship_expansion:
  relationship: 1.0
platform_value:
  pvs: 1.0
"""

_BAND = """\
  {name}:
    lower_is_better: false
    paid: {{green: 100, yellow: 50, red: 0}}
    standard: {{green: 100, yellow: 50, red: 0}}
"""

IDENTITY_THRESHOLDS = """\
tiers:
  champion: { min: 90, max: 100 }
  healthy:  { min: 76, max: 89 }
  at_risk:  { min: 60, max: 75 }
  critical: { min: 0,  max: 59 }
qualitative_modifier:
  rules:
    - {condition: critical_confirmed, action: set, value: 50}
    - {condition: critical_2plus, action: cap, value: 55}
    - {condition: critical_1, action: cap, value: 65}
    - {condition: moderate_1plus, action: cap, value: 75}
""" + "".join(
    f"{dim}:\n" + _BAND.format(name=metric)
    for dim, metric in (
        ("support_health", "support"),
        ("financial_contract", "financial"),
        ("adoption_engagement", "adoption"),
        ("relationship_expansion", "relationship"),
        ("platform_value", "pvs"),
    )
)
"""A model where each dimension has one metric scored 0–100 as is: raw value = dimension score."""

IDENTITY_METRICS = {
    "support_health": "support",
    "financial_contract": "financial",
    "adoption_engagement": "adoption",
    "relationship_expansion": "relationship",
    "platform_value": "pvs",
}


@pytest.fixture
def identity_config(tmp_path: Path) -> Path:
    folder = tmp_path / "identity-config"
    folder.mkdir()
    (folder / "weights.yaml").write_text(IDENTITY_WEIGHTS, encoding="utf-8")
    (folder / "thresholds.yaml").write_text(IDENTITY_THRESHOLDS, encoding="utf-8")
    return folder


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    """A writable copy of the default config folder."""
    folder = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG, folder)
    return folder


def sandbox_config(
    folder: Path, sandbox: Any, edit: Callable[[dict[str, Any]], None] | None = None
) -> Path:
    """A config folder for runs against ``sandbox``: the default weights and thresholds, the
    default ``sources.yaml`` (for a sandbox with history: Salesforce field history on; changed
    by ``edit`` when given) and the sandbox's mapping."""
    sandbox.write_config(folder, DEFAULT_CONFIG)
    if edit is not None:
        sources = yaml.safe_load((folder / "sources.yaml").read_text(encoding="utf-8"))
        edit(sources)
        (folder / "sources.yaml").write_text(yaml.safe_dump(sources), encoding="utf-8")
    return folder


# --- One vendor's stand-in, for test modules that set VENDOR = "<intercom|jira|looker|…>" -------
# A module overrides any of these by defining a fixture of the same name.


def _vendor(request: pytest.FixtureRequest) -> str:
    vendor = getattr(request.module, "VENDOR", None)
    if vendor is None:
        raise pytest.UsageError(
            f"{request.module.__name__} uses a vendor fixture but sets no VENDOR"
        )
    return str(vendor)


@pytest.fixture(scope="module")
def settings(request: pytest.FixtureRequest) -> Any:
    """The vendor's validated section of the default sources.yaml (the extractor's settings; the
    stand-ins read the same attributes from it)."""
    from health_score.sources.registry import load_sources

    vendor = _vendor(request)
    return load_sources(DEFAULT_CONFIG, (vendor,))[vendor]


@pytest.fixture(scope="module")
def portfolio() -> Any:
    """The default synthetic portfolio: 250 accounts, seed 7."""
    from health_score_sandbox.portfolio import build_portfolio

    return build_portfolio(250, seed=7)


@pytest.fixture(scope="module")
def data(request: pytest.FixtureRequest, portfolio: Any, settings: Any) -> Any:
    """The vendor's records generated for the portfolio, with their expected metrics."""
    return importlib.import_module(f"health_score_sandbox.{_vendor(request)}").generate(
        portfolio, settings
    )


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, data: Any, settings: Any) -> Iterator[Any]:
    """The vendor's stand-in serving ``data`` on loopback for the whole module."""
    from health_score_sandbox.server import VendorServer

    app = importlib.import_module(f"health_score_sandbox.{_vendor(request)}").App(data, settings)
    with VendorServer(app) as running:
        yield running


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http
