"""Configuration loading and validation: every problem reported at once, each with its place."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from health_score.cli import main
from health_score.config import (
    SOURCE_NAMES,
    ConfigError,
    load_config,
    load_scoring_config,
    parse_condition,
    shown,
)
from health_score.records import SignalCounts
from health_score.scoring.qualitative import matching_rule
from health_score.sources.registry import SourceSettings, load_run_config, load_sources
from tests.conftest import SHARED, shared_file

HEADER = (
    "sf_account_id,intercom_company_id,looker_customer_id,account_name,segment,"
    "jira_project_key,jira_component\n"
)
ROW = "001Sb0000000001IAA,cmp_1,C1,Acme,paid,SUP,cust-1\n"


def problems_of(folder: Path, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(folder, **kwargs)  # type: ignore[arg-type]
    return [str(p) for p in caught.value.problems]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def with_mapping(folder: Path, body: str = ROW, header: str = HEADER) -> Path:
    (folder / "account_mapping.csv").write_text(header + body, encoding="utf-8")
    return folder


def test_default_config_loads() -> None:
    config = load_scoring_config(Path(__file__).resolve().parents[2] / "config")
    assert config.segments == {"paid", "standard"}
    assert [t.label for t in config.tiers] == ["Champion", "Healthy", "At Risk", "Critical"]


def test_original_system_config_loads_unchanged() -> None:
    folder = shared_file(SHARED / "reference" / "original-config", "the original system's config")
    config = load_scoring_config(folder)
    assert config.component_weights["churn_risk"] == Decimal("0.60")
    assert [r.condition for r in config.cap_rules] == [
        "critical_confirmed",
        "critical_2plus",
        "critical_1",
        "moderate_1plus",
    ]
    assert "page_visits_per_arrival" in config.metric_names


def test_default_folder_with_a_mapping_row_is_valid(config_copy: Path) -> None:
    config = load_config(with_mapping(config_copy))
    assert [a.account_id for a in config.accounts] == ["001Sb0000000001IAA"]
    assert len(config.sha256) == 64


def test_empty_mapping_fails_with_a_clear_message(config_copy: Path) -> None:
    found = problems_of(config_copy)
    assert any("account_mapping.csv" in p and "no accounts" in p and "--demo" in p for p in found)


def test_unknown_and_missing_sections_are_named(config_copy: Path) -> None:
    with_mapping(config_copy)
    edit(config_copy / "weights.yaml", "churn_risk:\n", "churn_risks:\n")
    found = problems_of(config_copy)
    assert any(p.startswith("weights.yaml: churn_risks: unknown section") for p in found)
    assert any(p.startswith("weights.yaml: churn_risk: missing section") for p in found)


def test_metric_with_weight_but_no_thresholds_and_the_reverse(config_copy: Path) -> None:
    with_mapping(config_copy)
    edit(config_copy / "weights.yaml", "  p1_p2_volume: 0.20\n", "  p1_p2_volumes: 0.20\n")
    found = problems_of(config_copy)
    assert (
        "thresholds.yaml: support_health.p1_p2_volumes: metric has a weight in "
        "weights.yaml but no thresholds"
    ) in found
    assert (
        "thresholds.yaml: support_health.p1_p2_volume: metric has thresholds but no weight "
        "in weights.yaml"
    ) in found


def test_segment_missing_for_a_metric(config_copy: Path) -> None:
    with_mapping(config_copy)
    edit(
        config_copy / "thresholds.yaml",
        "    standard:\n      green: 1\n      yellow: 2\n      red: 5\n",
        "",
    )
    found = problems_of(config_copy)
    assert (
        "thresholds.yaml: support_health.p1_p2_volume.standard: segment missing for this "
        "metric" in found
    )


def test_thresholds_out_of_order_for_their_direction(config_copy: Path) -> None:
    with_mapping(config_copy)
    edit(config_copy / "thresholds.yaml", "      green: 2      # <=2/month = 100", "      green: 5")
    found = problems_of(config_copy)
    assert any(
        p.startswith(
            "thresholds.yaml: support_health.p1_p2_volume.paid: thresholds out "
            "of order for lower_is_better: true"
        )
        for p in found
    )


def test_negative_weight_and_bad_sum(config_copy: Path) -> None:
    with_mapping(config_copy)
    edit(config_copy / "weights.yaml", "  days_to_renewal: 0.20\n", "  days_to_renewal: -0.20\n")
    found = problems_of(config_copy)
    assert (
        "weights.yaml: financial_contract.days_to_renewal: weight must be ≥ 0, got -0.20" in found
    )
    assert any(
        p.startswith("weights.yaml: financial_contract: weights must sum to 1") for p in found
    )


def test_weights_within_tolerance_are_accepted(config_copy: Path) -> None:
    with_mapping(config_copy)
    edit(config_copy / "weights.yaml", "  churn_risk_weight: 0.60", "  churn_risk_weight: 0.6005")
    load_config(config_copy)


def test_tiers_need_a_zero_floor_and_distinct_mins(config_copy: Path) -> None:
    with_mapping(config_copy)
    edit(
        config_copy / "thresholds.yaml",
        "  critical: { min: 0,  max: 59 }",
        "  critical: { min: 60, max: 59 }",
    )
    found = problems_of(config_copy)
    assert any("tiers: duplicate min 60" in p for p in found)
    assert any("tiers: no tier starts at 0" in p for p in found)


def test_cap_rule_with_unknown_condition(config_copy: Path) -> None:
    with_mapping(config_copy)
    edit(
        config_copy / "thresholds.yaml",
        'condition: "moderate_1plus"',
        'condition: "moderately_bad"',
    )
    found = problems_of(config_copy)
    assert any(
        p.startswith(
            "thresholds.yaml: qualitative_modifier.rules[3].condition: unknown "
            "condition 'moderately_bad'"
        )
        for p in found
    )


def test_a_new_cap_rule_needs_no_code(config_copy: Path) -> None:
    edit(
        config_copy / "thresholds.yaml",
        "  rules:\n",
        '  rules:\n    - condition: "moderate_3plus"\n      action: "cap"\n      value: 70\n',
    )
    config = load_scoring_config(config_copy)
    rule = matching_rule(SignalCounts(moderate=3), config.cap_rules)
    assert rule is not None and rule.value == 70
    other = matching_rule(SignalCounts(moderate=2), config.cap_rules)
    assert other is not None and other.value == 75


def test_condition_grammar() -> None:
    assert parse_condition("critical_confirmed") == ("critical", 1, True)
    assert parse_condition("critical_2plus") == ("critical", 2, False)
    assert parse_condition("critical_1") == ("critical", 1, False)
    assert parse_condition("watch_3plus") == ("watch", 3, False)
    assert parse_condition("critical_0plus") is None
    assert parse_condition("severe_1") is None


def test_every_problem_is_reported_at_once(config_copy: Path) -> None:
    with_mapping(config_copy, body=ROW + "001BAD,cmp_2,C2,Bad,gold,SUP,cust-2\n")
    edit(config_copy / "weights.yaml", "  days_to_renewal: 0.20\n", "  days_to_renewal: -0.20\n")
    edit(config_copy / "thresholds.yaml", 'condition: "moderate_1plus"', 'condition: "x"')
    found = problems_of(config_copy)
    files = {p.split(":")[0] for p in found}
    assert files == {"weights.yaml", "thresholds.yaml", "account_mapping.csv"}
    assert len(found) >= 5


def test_yaml_syntax_error_names_the_line(config_copy: Path) -> None:
    with_mapping(config_copy)
    (config_copy / "weights.yaml").write_text("health_score:\n  a: [1, 2\n", encoding="utf-8")
    found = problems_of(config_copy)
    assert any(re.match(r"weights.yaml: line \d+: invalid YAML", p) for p in found)


# --- account_mapping.csv -------------------------------------------------------------------


def test_mapping_rows_are_checked_with_their_line_numbers(config_copy: Path) -> None:
    body = (
        ROW
        + "001Sb0000000001IAA,cmp_2,C2,Duplicate,paid,SUP,cust-2\n"
        + "001XYZ,cmp_3,C3,Short id,paid,SUP,cust-3\n"
        + "001Sb0000000004IAA,cmp_4,C4,Gold,gold,SUP,cust-4\n"
    )
    found = problems_of(with_mapping(config_copy, body))
    assert (
        "account_mapping.csv: line 3: sf_account_id '001Sb0000000001IAA' duplicates line 2" in found
    )
    assert any(
        p.startswith(
            "account_mapping.csv: line 4: sf_account_id '001XYZ' is not a 15- or 18-character"
        )
        for p in found
    )
    assert any(p.startswith("account_mapping.csv: line 5: unknown segment 'gold'") for p in found)


def test_fifteen_and_eighteen_character_forms_of_one_id_are_duplicates(config_copy: Path) -> None:
    body = ROW + "001Sb0000000001,cmp_2,C2,Same account,paid,SUP,cust-2\n"
    found = problems_of(with_mapping(config_copy, body))
    assert any("line 3" in p and "duplicates line 2" in p for p in found)


def test_missing_required_columns(config_copy: Path) -> None:
    header = "sf_account_id,account_name,segment\n"
    found = problems_of(with_mapping(config_copy, "001Sb0000000001IAA,Acme,paid\n", header))
    assert any(
        p.startswith(
            "account_mapping.csv: line 1: missing required column(s) "
            "['intercom_company_id', 'looker_customer_id', 'jira_project_key', "
            "'jira_component']"
        )
        for p in found
    )


def test_bom_is_accepted_and_blank_lines_are_skipped(config_copy: Path) -> None:
    text = (
        "\ufeff"
        + HEADER
        + "\n"
        + ROW
        + ",,,,,,\n\n"
        + "001Sb0000000002IAA,cmp_2,C2,Beta,standard,SUP,cust-2\n"
    )
    (config_copy / "account_mapping.csv").write_text(text, encoding="utf-8")
    config = load_config(config_copy)
    assert [a.account_name for a in config.accounts] == ["Acme", "Beta"]


def test_extra_columns_are_allowed_and_kept(config_copy: Path) -> None:
    header = HEADER.rstrip("\n") + ",csm_owner\n"
    config = load_config(with_mapping(config_copy, ROW.rstrip("\n") + ",Dana\n", header))
    assert config.accounts[0].extra["csm_owner"] == "Dana"


def test_row_without_salesforce_id_is_scored_under_another_id(config_copy: Path) -> None:
    config = load_config(with_mapping(config_copy, ",cmp_9,C9,No SF,paid,,\n"))
    assert config.accounts[0].account_id == "intercom:cmp_9"
    assert config.accounts[0].sf_account_id is None


@pytest.mark.parametrize(
    ("row", "column"),
    [
        ("001' OR Name != ',cmp_1,C1,Evil,paid,SUP,cust-1\n", "sf_account_id"),
        ('001Sb0000000001IAA,cmp_1,C1,Evil,paid,SUP" OR project = X,cust-1\n', "jira_project_key"),
        ('001Sb0000000001IAA,cmp_1,C1,Evil,paid,SUP,"x"" OR component = ""y"\n', "jira_component"),
    ],
)
def test_injection_attempts_in_ids_are_refused(config_copy: Path, row: str, column: str) -> None:
    found = problems_of(with_mapping(config_copy, row))
    assert any("line 2" in p and column in p for p in found)


def test_check_config_command_reports_ok_and_problems(
    config_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with_mapping(config_copy)
    assert main(["check-config", "--config-dir", str(config_copy)]) == 0
    assert "config OK" in capsys.readouterr().out
    edit(config_copy / "weights.yaml", "  days_to_renewal: 0.20\n", "  days_to_renewal: -0.20\n")
    assert main(["check-config", "--config-dir", str(config_copy)]) == 2
    assert "financial_contract.days_to_renewal" in capsys.readouterr().err


def test_sources_yaml_is_read_as_sections(config_copy: Path) -> None:
    config = load_config(with_mapping(config_copy))
    assert tuple(config.sources) == (*SOURCE_NAMES, "writeback", "run")
    assert config.sources["jira"]["page_size"] == 100
    assert isinstance(config.sources["looker"]["looks"], list)


def test_unknown_sources_and_non_mapping_sections_are_named(config_copy: Path) -> None:
    with_mapping(config_copy)
    sources = config_copy / "sources.yaml"
    sources.write_text(
        sources.read_text(encoding="utf-8") + "zendesk:\n  token: x\n", encoding="utf-8"
    )
    edit(sources, "jira:\n", "jira: 5\nunused:\n")
    found = problems_of(config_copy)
    for name in ("unused", "zendesk"):
        assert any(p.startswith(f"sources.yaml: {name}: unknown source (expected") for p in found)
    assert "sources.yaml: jira: expected a mapping of settings, got int" in found


def test_vendor_settings_are_checked_with_the_rest_of_the_folder(config_copy: Path) -> None:
    with_mapping(config_copy, body=ROW + "001BAD,cmp_2,C2,Bad,gold,SUP,cust-2\n")
    edit(config_copy / "weights.yaml", "  days_to_renewal: 0.20\n", "  days_to_renewal: -0.20\n")
    edit(config_copy / "sources.yaml", "lookback_days: 30", "lookback_days: 0")
    with pytest.raises(ConfigError) as caught:
        load_run_config(config_copy)
    found = [str(p) for p in caught.value.problems]
    files = [p.split(":")[0] for p in found]
    assert files == sorted(files, key=["weights.yaml", "sources.yaml", "account_mapping.csv"].index)
    assert set(files) == {"weights.yaml", "sources.yaml", "account_mapping.csv"}
    assert any(p.startswith("sources.yaml: intercom.lookback_days: ") for p in found)
    # config alone reads sources.yaml as data: the vendor's own rule is not its business.
    assert not any(p.startswith("sources.yaml") for p in problems_of(config_copy))


def test_the_run_config_carries_typed_settings(config_copy: Path) -> None:
    config = load_run_config(with_mapping(config_copy))
    assert isinstance(config.sources, SourceSettings)
    assert config.sources.intercom.lookback_days == 30
    assert config.sources.jira.http.max_workers == 8
    assert config.accounts[0].account_name == "Acme"


def test_load_sources_reports_file_and_key_path(config_copy: Path) -> None:
    edit(config_copy / "sources.yaml", "page_size: 100", "page_size: 0")
    with pytest.raises(ConfigError) as caught:
        load_sources(config_copy)
    assert [str(p).split(": ")[:2] for p in caught.value.problems] == [
        ["sources.yaml", "jira.page_size"]
    ]
    # Only the sections asked for are checked (the rest hold their defaults).
    assert load_sources(config_copy, ("intercom",)).jira.page_size == 100
    (config_copy / "sources.yaml").unlink()
    assert load_sources(config_copy, missing_ok=True) == SourceSettings()
    with pytest.raises(ConfigError, match=r"sources\.yaml: file not found"):
        load_sources(config_copy)


def test_check_config_validates_every_vendor_section(
    config_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with_mapping(config_copy)
    edit(config_copy / "sources.yaml", "lookback_days: 30", "lookback_days: 0")
    assert main(["check-config", "--config-dir", str(config_copy)]) == 2
    assert "sources.yaml: intercom.lookback_days" in capsys.readouterr().err


# A weighted metric must have exactly one source (issue: "ok" is a promise).


def test_a_weighted_metric_renamed_in_sources_yaml_is_a_config_error_naming_both_files(
    config_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with_mapping(config_copy)
    edit(config_copy / "sources.yaml", "        automation_active:", "        automations_on:")
    with pytest.raises(ConfigError) as raised:
        load_run_config(config_copy)
    (problem,) = raised.value.problems
    assert (problem.file, problem.location) == ("weights.yaml", "platform_value.automation_active")
    assert problem.message.startswith("weighted 0.10 but no source in sources.yaml produces it")
    assert main(["check-config", "--config-dir", str(config_copy)]) == 2
    err = capsys.readouterr().err
    assert "weights.yaml: platform_value.automation_active: weighted 0.10" in err


def test_a_metric_produced_by_two_sources_is_a_config_error(config_copy: Path) -> None:
    with_mapping(config_copy)
    edit(config_copy / "sources.yaml", "        automation_active:", "        payment_health:")
    with pytest.raises(ConfigError) as raised:
        load_run_config(config_copy)
    messages = {(p.location, p.message) for p in raised.value.problems}
    assert (
        "financial_contract.payment_health",
        "produced by looker and salesforce (per sources.yaml); a metric must come from "
        "exactly one source",
    ) in messages
    assert any(location == "platform_value.automation_active" for location, _ in messages)


def test_a_metric_weighted_zero_needs_no_source(config_copy: Path) -> None:
    with_mapping(config_copy)
    edit(config_copy / "sources.yaml", "        automation_active:", "        automations_on:")
    edit(config_copy / "weights.yaml", "  automation_active: 0.10", "  automation_active: 0")
    edit(config_copy / "weights.yaml", "  scheduled_reports: 0.10", "  scheduled_reports: 0.20")
    assert load_run_config(config_copy).scoring is not None


@pytest.mark.parametrize("name", ["weights.yaml", "thresholds.yaml", "sources.yaml"])
def test_a_key_given_twice_in_a_yaml_file_is_an_error_naming_its_line(
    config_copy: Path, name: str
) -> None:
    with_mapping(config_copy)
    path = config_copy / name
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    # Repeat the file's first top-level key at the end (YAML would keep the second silently).
    first = next(i for i, line in enumerate(lines) if line[:1].isalpha())
    key = lines[first].split(":")[0]
    path.write_text("".join(lines) + f"{key}: {{}}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_run_config(config_copy)
    (problem,) = [p for p in raised.value.problems if p.file == name]
    assert problem.location == f"line {len(lines) + 1}"
    assert problem.message == (
        f"invalid YAML: duplicate key {key!r} (first given at line {first + 1})"
    )


def test_a_nested_duplicate_key_is_refused_too(config_copy: Path) -> None:
    with_mapping(config_copy)
    edit(
        config_copy / "weights.yaml",
        "  days_to_renewal: 0.20\n",
        "  days_to_renewal: 0.20\n  days_to_renewal: 0.30\n",
    )
    with pytest.raises(ConfigError, match="duplicate key 'days_to_renewal'"):
        load_run_config(config_copy)


def test_duplicate_columns_and_ragged_rows_in_the_mapping_name_their_lines(
    config_copy: Path,
) -> None:
    with_mapping(config_copy, header=HEADER.rstrip("\n") + ",segment\n")
    with pytest.raises(ConfigError) as raised:
        load_run_config(config_copy)
    assert [(p.location, p.message) for p in raised.value.problems] == [
        ("line 1", "duplicate column(s) ['segment']: each column may appear once")
    ]
    cells = len(HEADER.split(","))
    with_mapping(config_copy, body=ROW + ROW.rstrip("\n") + ",extra\n" + ",".join(["x"] * 3) + "\n")
    with pytest.raises(ConfigError) as raised:
        load_run_config(config_copy)
    assert [(p.location, p.message) for p in raised.value.problems] == [
        (
            "line 3",
            f"{cells + 1} cells, more than the header's {cells} columns (a stray or "
            "missing comma?); the row is not used",
        ),
        (
            "line 4",
            f"3 cells, fewer than the header's {cells} columns (a stray or missing "
            "comma?); the row is not used",
        ),
    ]


def test_an_empty_weights_file_is_named_as_such_and_the_mapping_is_not_blamed(
    config_copy: Path,
) -> None:
    with_mapping(config_copy)
    (config_copy / "weights.yaml").write_text("# nothing yet\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_run_config(config_copy)
    assert [(p.file, p.location, p.message) for p in raised.value.problems] == [
        (
            "weights.yaml",
            "",
            "the file is empty (or only comments): it must hold health_score, churn_risk and "
            "one section of weights per dimension",
        )
    ]


def test_a_comments_only_sources_yaml_means_every_default(config_copy: Path) -> None:
    (config_copy / "sources.yaml").write_text("# defaults everywhere\n", encoding="utf-8")
    settings = load_sources(config_copy)
    assert settings.jira.bug_jql == "issuetype = Bug"
    assert settings.looker.looks == ()  # so the default weights' Looker metrics have no source:
    with_mapping(config_copy)
    with pytest.raises(ConfigError, match=r"platform_value\.sessions_per_user: weighted 0\.10"):
        load_run_config(config_copy)


def test_yaml_aliases_are_refused_so_nothing_can_expand_without_bound(config_copy: Path) -> None:
    with_mapping(config_copy)
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    (config_copy / "sources.yaml").write_text(laughs, encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_run_config(config_copy)
    assert [(p.file, p.location, p.message) for p in raised.value.problems] == [
        ("sources.yaml", "line 2", "invalid YAML: aliases (*name) are not allowed in config files")
    ]


# -- mapping: Salesforce id hints, CSV damage, bounded messages ---------------------------------


def check_config_err(folder: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """``health-score check-config`` on ``folder``: must exit 2 without a traceback."""
    assert main(["check-config", "--config-dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_a_lower_cased_eighteen_character_id_is_refused_with_the_case_its_suffix_restores(
    config_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 001D0 → D is 4th: 0b01000 = 8 → I; 00000 → A; IRFma → I, R, F: 0b00111 = 7 → H.
    with_mapping(config_copy, ROW + "001d000000irfmaiah,cmp_2,C2,Lowered,paid,SUP,cust-2\n")
    err = check_config_err(config_copy, capsys)
    assert (
        "account_mapping.csv: line 3: sf_account_id '001d000000irfmaiah' is not a 15- or "
        "18-character Salesforce id (suffix 'iah' does not match the case of the first 15 "
        "characters (expected 'AAA')); its first 15 characters have no capitals, but the suffix "
        "'IAH' says which should (the case was lost, e.g. lower-cased): did you mean "
        "'001D000000IRFmaIAH'?"
    ) in err


def test_a_wrong_suffix_is_answered_with_the_checksum_it_should_have(
    config_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with_mapping(config_copy, ROW + "001D000000IRFmaAAA,cmp_2,C2,Wrong suffix,paid,SUP,cust-2\n")
    err = check_config_err(config_copy, capsys)
    assert (
        "line 3: sf_account_id '001D000000IRFmaAAA' is not a 15- or 18-character Salesforce id "
        "(suffix 'AAA' does not match the case of the first 15 characters (expected 'IAH')); "
        "checksum should be 'IAH': did you mean '001D000000IRFmaIAH'?"
    ) in err


def test_every_bad_id_row_is_refused_at_load_and_the_first_20_are_listed_with_a_count(
    config_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 25 valid ids (001Sb…: S is 4th of its block → I) typed in lower case, rows 3–27.
    body = ROW + "".join(
        f"001sb00000000{n:02d}iaa,cmp_{n},C{n},Row {n},paid,SUP,cust-{n}\n" for n in range(10, 35)
    )
    found = problems_of(with_mapping(config_copy, body))
    assert len(found) == 25  # every bad row, each at its line
    assert found[0].startswith("account_mapping.csv: line 3: sf_account_id '001sb0000000010iaa'")
    assert found[0].endswith("did you mean '001Sb0000000010IAA'?")
    assert found[-1].startswith("account_mapping.csv: line 27: sf_account_id")
    err = check_config_err(config_copy, capsys)
    assert err.startswith("25 configuration problem(s):\n")
    assert "line 22: " in err and "line 23: " not in err  # the first 20 rows listed
    assert "account_mapping.csv: … and 5 more problem(s) (the first 20 are listed)" in err


def test_an_unclosed_quote_in_the_mapping_is_reported_at_the_line_where_it_opens(
    config_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    later = "".join(
        f"001Sb00000000{n:02d}IAA,cmp_{n},C{n},Row {n},paid,SUP,cust-{n}\n" for n in range(10, 15)
    )
    with_mapping(config_copy, ROW + '001Sb0000000002IAA,cmp_2,C2,"Acme,paid,SUP,cust-2\n' + later)
    found = problems_of(config_copy)
    assert len(found) == 1
    assert found[0].startswith(
        "account_mapping.csv: line 3: a quoted cell starts in the record on this line and its "
        'quotes do not add up: a closing " is missing'
    )
    assert "line 3: a quoted cell" in check_config_err(config_copy, capsys)


def test_a_quote_closed_on_a_later_line_is_still_reported_where_it_opens(
    config_copy: Path,
) -> None:
    # Lenient CSV reading would close the quote on line 5 and blame line 5 for its cell count.
    body = (
        ROW
        + '001Sb0000000002IAA,cmp_2,C2,"Acme,paid,SUP,cust-2\n'
        + "001Sb0000000003IAA,cmp_3,C3,Beta,paid,SUP,cust-3\n"
        + '001Sb0000000004IAA,cmp_4,C4,"Gamma",paid,SUP,cust-4\n'
    )
    found = problems_of(with_mapping(config_copy, body))
    assert [p.split(": ")[1] for p in found] == ["line 3"]


def test_a_mapping_cell_over_the_csv_field_limit_names_file_and_line(
    config_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = ROW + f"001Sb0000000002IAA,cmp_2,C2,{'n' * 200_000},paid,SUP,cust-2\n" + ROW
    with_mapping(config_copy, body)
    err = check_config_err(config_copy, capsys)
    assert (
        "account_mapping.csv: line 3: a cell of the record starting on this line is over "
        "131,072 characters" in err
    )
    assert "field larger than field limit" not in err and len(err) < 1_000


def test_a_ten_kilobyte_name_or_segment_is_quoted_to_200_characters(
    config_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long_name, long_segment = "N" * 10_000, "s" * 10_000
    body = ROW + f"001Sb0000000002IAA,cmp_2,C2,{long_name},{long_segment},SUP,cust-2\n"
    found = problems_of(with_mapping(config_copy, body))
    assert (
        f"account_mapping.csv: line 3: account_name {'N' * 200!r}… (10000 characters) contains "
        "control characters (tabs, line breaks) or is over 255 characters"
    ) in found
    assert any(
        p.startswith(f"account_mapping.csv: line 3: unknown segment {'s' * 200!r}… (10000 ")
        for p in found
    )
    err = check_config_err(config_copy, capsys)
    assert "N" * 201 not in err and "s" * 201 not in err


def test_shown_quotes_at_most_200_characters_of_a_value() -> None:
    assert shown("Acme") == "'Acme'"
    assert shown("a" * 200) == repr("a" * 200)
    assert shown("a" * 201) == repr("a" * 200) + "… (201 characters)"
    assert shown(["x" * 300]) == "['" + "x" * 198 + "… (304 characters)"


NAMES = ("Mollie's", "Villa D'Este", 'Café "Zürich", Ltd.', "Back\\slash & Co", "東京 株式会社")


def test_account_names_with_quotes_apostrophes_commas_and_unicode_load(config_copy: Path) -> None:
    body = "".join(
        f'001Sb000000000{n}IAA,cmp_{n},C{n},"{name.replace(chr(34), chr(34) * 2)}",paid,SUP,'
        f"cust-{n}\n"
        for n, name in enumerate(NAMES, start=1)
    )
    config = load_config(with_mapping(config_copy, body))
    assert [a.account_name for a in config.accounts] == list(NAMES)


def test_a_name_with_a_control_character_is_refused(config_copy: Path) -> None:
    found = problems_of(with_mapping(config_copy, "001Sb0000000001IAA,cmp_1,C1,A\tB,paid,SUP,c\n"))
    assert found == [
        "account_mapping.csv: line 2: account_name 'A\\tB' contains control characters (tabs, "
        "line breaks) or is over 255 characters"
    ]
