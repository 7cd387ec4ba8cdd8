"""The write-back settings: the top-level ``writeback:`` section of sources.yaml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from health_score.config import ConfigError
from health_score.loaders.salesforce_settings import WritebackSettings, parse_writeback
from health_score.sources.registry import load_run_config, load_sources

DEFAULT_SOURCES = Path(__file__).resolve().parents[2] / "config" / "sources.yaml"


def with_sources(folder: Path, **sections: object) -> Path:
    """sources.yaml of ``folder`` with these top-level sections set (None removes one)."""
    path = folder / "sources.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    for name, section in sections.items():
        if section is None:
            raw.pop(name, None)
        else:
            raw[name] = section
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return folder


def problems_of(folder: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_sources(folder)
    return [str(p) for p in caught.value.problems]


def test_the_top_level_section_is_what_the_pipeline_gets(config_copy: Path) -> None:
    with_sources(config_copy, writeback={"bulk_threshold": 50, "account_tier_field": "Tier__c"})
    config = load_run_config(config_copy, need_mapping=False)
    writeback = config.sources["writeback"]
    assert isinstance(writeback, WritebackSettings)
    assert (writeback.bulk_threshold, writeback.account_tier_field) == (50, "Tier__c")
    # The salesforce section no longer carries it.
    assert not hasattr(config.sources["salesforce"], "writeback")


def test_without_the_section_the_defaults_apply(config_copy: Path) -> None:
    with_sources(config_copy, writeback=None)
    assert load_sources(config_copy)["writeback"] == WritebackSettings.model_validate({})
    # A --from-raw run reads the section even when sources.yaml is absent.
    (config_copy / "sources.yaml").unlink()
    loaded = load_sources(config_copy, ("salesforce",), missing_ok=True)
    assert loaded["writeback"].bulk_threshold == 200


def test_a_leftover_salesforce_writeback_says_where_it_moved(config_copy: Path) -> None:
    raw = yaml.safe_load((config_copy / "sources.yaml").read_text(encoding="utf-8"))
    salesforce = {**raw["salesforce"], "writeback": {"bulk_threshold": 50}}
    found = problems_of(with_sources(config_copy, salesforce=salesforce))
    assert len(found) == 1
    assert found[0].startswith("sources.yaml: salesforce: ")
    assert "salesforce.writeback has moved" in found[0]
    assert "top-level `writeback:` section of sources.yaml" in found[0]


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"bulk_threshold": 0}, r"sources.yaml: writeback.bulk_threshold: .*greater than or equal"),
        ({"object_name": "Health Score"}, r"sources.yaml: writeback.object_name: .*API name"),
        ({"bulk_treshold": 50}, r"sources.yaml: writeback.bulk_treshold: Extra inputs"),
        ({"fields": {"nope": "X__c"}}, r"sources.yaml: writeback.fields: .*unknown logical"),
        (["bulk_threshold"], r"sources.yaml: writeback: expected a mapping"),
    ],
)
def test_problems_in_the_section_name_their_key(
    config_copy: Path, section: object, expected: str
) -> None:
    found = problems_of(with_sources(config_copy, writeback=section))
    assert len(found) == 1
    assert re.match(expected, found[0]), found


def test_parse_writeback_reports_through_the_callback() -> None:
    seen: list[tuple[str, str]] = []
    assert parse_writeback({"poll_max_seconds": -1}, lambda k, m: seen.append((k, m))) is None
    assert [k for k, _ in seen] == ["writeback.poll_max_seconds"]
    assert parse_writeback(None, lambda k, m: seen.append((k, m))) == (
        WritebackSettings.model_validate({})
    )


def test_the_commented_example_in_sources_yaml_is_valid_and_shows_the_defaults() -> None:
    text = DEFAULT_SOURCES.read_text(encoding="utf-8")
    start = text.index("# writeback:")
    block = text[start : text.find("\n\n", start) % (len(text) + 1)]
    example = yaml.safe_load("\n".join(line.removeprefix("# ") for line in block.splitlines()))
    shown = WritebackSettings.model_validate(example["writeback"])
    assert shown == WritebackSettings.model_validate({})
    documented = set(example["writeback"])
    # Every key but the two internal tuning knobs is documented there.
    assert set(WritebackSettings.model_fields) - documented == {
        "bulk_max_upload_bytes",
        "transient_errors",
    }
