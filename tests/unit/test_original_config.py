"""The original system's config files load unchanged; its ±0.01 weight tolerance, with a warning."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from health_score.cli import main
from health_score.config import ConfigError, load_config, load_scoring_config
from tests.conftest import DEFAULT_CONFIG, SHARED, shared_file

ORIGINAL = SHARED / "reference" / "original-config"

#: The original organisation's Looker metrics, each a field of one Look (sources.yaml is ours:
#: the original kept Look ids in code).
ORIGINAL_LOOK_METRICS = (
    "page_visits_per_arrival",
    "page_visits_per_arrival_trend",
    "feature_breadth_pct",
    "platform_score",
    "platform_score_trend",
    "positive_sentiment_pct",
    "response_before_target_pct",
    "allin_conversation_pct",
    "conversations_per_booking_pct",
    "arrival_ciol_pct",
    "digital_key_pct",
    "automation_active",
    "itinerary_booking_pct",
)


def original_sources() -> str:
    sources = yaml.safe_load((DEFAULT_CONFIG / "sources.yaml").read_text(encoding="utf-8"))
    sources["looker"]["looks"] = [
        {
            "id": "201",
            "name": "original platform value",
            "customer_id_field": "pv.customer_id",
            "metrics": {
                m: {"transform": "field", "field": f"pv.{m}"} for m in ORIGINAL_LOOK_METRICS
            },
        }
    ]
    return yaml.safe_dump(sources, sort_keys=False)


#: The original's mapping as its users wrote it: apostrophes, quotes, segments in any case.
ORIGINAL_MAPPING = (
    "sf_account_id,intercom_company_id,looker_customer_id,account_name,segment,"
    "jira_project_key,jira_component\n"
    "001Sb0000000001IAA,5f1a2b3c4d,C101,Mollie's Bistro,Paid,SUP,mollies-bistro\n"
    '001Sb0000000002IAA,5f1a2b3c4e,C102,"Villa D\'Este, Lake Como",STANDARD,SUP,villa-deste\n'
    "001Sb0000000003IAA,,C103,O'Brien & Sons,paid,,\n"
    "001Sb0000000004IAA,5f1a2b3c4f,,Trattoria Dell'Arte,Standard,SUP,trattoria\n"
)


@pytest.fixture
def original(tmp_path: Path) -> Path:
    folder = tmp_path / "original"
    folder.mkdir()
    for name in ("weights.yaml", "thresholds.yaml"):
        shutil.copyfile(shared_file(ORIGINAL / name, "the original system's config"), folder / name)
    (folder / "sources.yaml").write_text(original_sources(), encoding="utf-8")
    (folder / "account_mapping.csv").write_text(ORIGINAL_MAPPING, encoding="utf-8")
    return folder


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_original_scoring_files_load_unchanged(original: Path) -> None:
    scoring = load_scoring_config(original)
    assert scoring.warnings == ()
    assert [t.label for t in scoring.tiers] == ["Champion", "Healthy", "At Risk", "Critical"]
    assert [r.condition for r in scoring.cap_rules] == [
        "critical_confirmed",
        "critical_2plus",
        "critical_1",
        "moderate_1plus",
    ]
    assert scoring.segments == frozenset({"paid", "standard"})
    # page_visits_per_arrival is scored in two dimensions from one raw value.
    assert scoring.metric_names.count("page_visits_per_arrival") == 1


def test_the_originals_mapping_loads_with_apostrophes_and_any_segment_case(original: Path) -> None:
    config = load_config(original, need_sources=False)
    got = [(a.account_name, a.segment) for a in config.accounts]
    assert got == [
        ("Mollie's Bistro", "paid"),
        ("Villa D'Este, Lake Como", "standard"),
        ("O'Brien & Sons", "paid"),
        ("Trattoria Dell'Arte", "standard"),
    ]


def test_an_unknown_segment_is_still_refused(original: Path) -> None:
    _edit(original / "account_mapping.csv", ",Paid,", ",Premium,")
    with pytest.raises(ConfigError) as caught:
        load_config(original, need_sources=False)
    assert [str(p) for p in caught.value.problems] == [
        "account_mapping.csv: line 2: unknown segment 'Premium' (expected one of "
        "['paid', 'standard'])"
    ]


def test_a_sum_within_the_originals_tolerance_is_accepted_with_a_warning(original: Path) -> None:
    # 0.30 + 0.30 + 0.25 + 0.145 = 0.995
    _edit(
        original / "weights.yaml",
        "  relationship_expansion: 0.15",
        "  relationship_expansion: 0.145",
    )
    scoring = load_scoring_config(original)
    assert scoring.warnings == (
        "config: weights.yaml: churn_risk: weights sum to 0.995, not 1: accepted (within the "
        "original system's ±0.01) and used in proportion, as if scaled to sum to 1",
    )


def test_a_sum_beyond_the_tolerance_is_an_error(original: Path) -> None:
    # 0.30 + 0.30 + 0.25 + 0.139 = 0.989
    _edit(
        original / "weights.yaml",
        "  relationship_expansion: 0.15",
        "  relationship_expansion: 0.139",
    )
    with pytest.raises(ConfigError) as caught:
        load_scoring_config(original)
    assert [str(p) for p in caught.value.problems] == [
        "weights.yaml: churn_risk: weights must sum to 1 (±0.01), got 0.989"
    ]


def test_check_config_prints_the_warning(
    original: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("INTERCOM_API_TOKEN", "JIRA_API_TOKEN", "LOOKER_CLIENT_ID", "SF_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    _edit(original / "weights.yaml", "  churn_risk_weight: 0.60", "  churn_risk_weight: 0.605")
    assert main(["check-config", "--config-dir", str(original)]) == 0
    err = capsys.readouterr().err
    assert (
        "warning: config: weights.yaml: health_score: weights sum to 1.005, not 1: accepted" in err
    )


def test_the_run_manifest_records_the_warning(tmp_path: Path, original: Path) -> None:
    _edit(original / "weights.yaml", "  churn_risk_weight: 0.60", "  churn_risk_weight: 0.605")
    raw = tmp_path / "raw.csv"
    with raw.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["account_id", "segment", "p1_p2_volume", "positive_sentiment_pct"])
        writer.writerow(["A", "paid", "2", "50"])  # both at green: 100
    argv = ["run", "--dry-run", "--from-raw", str(raw), "--config-dir", str(original)]
    runs = tmp_path / "runs"
    assert main([*argv, "--output", str(tmp_path / "s.csv"), "--runs-dir", str(runs)]) == 0
    (folder,) = runs.iterdir()
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["warnings"] == [
        "config: weights.yaml: health_score: weights sum to 1.005, not 1: accepted (within the "
        "original system's ±0.01) and used in proportion, as if scaled to sum to 1"
    ]
    # In proportion: 100 in both components is 100, not 100.5.
    with (tmp_path / "s.csv").open(encoding="utf-8") as handle:
        assert next(csv.DictReader(handle))["final_score"] == "100.0"
