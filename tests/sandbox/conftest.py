"""The stand-ins' own tests read sources.yaml the way the stand-ins do (no product code)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import _vendor


@pytest.fixture(scope="module")
def settings(request: pytest.FixtureRequest) -> Any:
    """The vendor stand-in's own settings (``<vendor>.Settings``) from the default sources.yaml."""
    from health_score_sandbox.sandbox import load_source_settings

    vendor = _vendor(request)
    return load_source_settings(only=(vendor,))[vendor]
