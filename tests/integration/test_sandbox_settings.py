"""The stand-ins read sources.yaml as the extractors do: same values, same documented defaults."""

from __future__ import annotations

import importlib

import pytest

from health_score.sources.registry import load_sources, parse_sources
from health_score_sandbox.config import source_section
from health_score_sandbox.portfolio import SOURCES
from tests.conftest import DEFAULT_CONFIG


@pytest.mark.parametrize("vendor", SOURCES)
def test_a_stand_in_reads_the_default_section_as_the_extractor_does(vendor: str) -> None:
    stand_in = importlib.import_module(f"health_score_sandbox.{vendor}").Settings
    validated = load_sources(DEFAULT_CONFIG, (vendor,))[vendor]
    assert stand_in.of(source_section(DEFAULT_CONFIG, vendor)) == stand_in.of(validated)


@pytest.mark.parametrize("vendor", SOURCES)
def test_a_stand_ins_defaults_are_the_documented_ones(vendor: str) -> None:
    stand_in = importlib.import_module(f"health_score_sandbox.{vendor}").Settings
    problems: list[str] = []
    validated = parse_sources({vendor: {}}, lambda *p: problems.append(str(p)), (vendor,))[vendor]
    assert problems == []
    assert stand_in.of({}) == stand_in.of(validated) == stand_in()
