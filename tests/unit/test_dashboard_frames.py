"""The dashboard reads scores.csv as written today and as runs wrote it before ``cap_value``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from health_score.dashboard import frames
from tests.scores_support import rewrite_as_old_scores

HEAD = "account_id,account_name,segment,final_score,health_tier,coverage_pct"
NEW = (
    f"{HEAD},qualitative_override,modifier_applied,cap_value,cap_rule,low_coverage\n"
    "A,Alpha,paid,65.0,At Risk,100.0,true,1 Critical signal → cap at 65,65,critical_1,false\n"
    "B,Beta,paid,48.0,Critical,100.0,false,1 Critical signal → cap at 65,65,critical_1,false\n"
    "C,Gamma,paid,80.0,Healthy,100.0,false,,,,false\n"
)
OLD = (
    f"{HEAD},qualitative_override,modifier_applied,cap_rule,low_coverage\n"
    "A,Alpha,paid,65.0,At Risk,100.0,65,true,critical_1,false\n"
    "B,Beta,paid,48.0,Critical,100.0,65,false,critical_1,false\n"
    "C,Gamma,paid,80.0,Healthy,100.0,,false,,false\n"
)


def test_the_test_helper_writes_the_old_layout(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    path.write_text(NEW, encoding="utf-8")
    assert rewrite_as_old_scores(path).read_text(encoding="utf-8") == OLD


def test_new_scores_read_with_the_originals_meanings() -> None:
    scores = frames.parse_scores("r", NEW.encode())
    assert scores["qualitative_override"].tolist() == [True, False, False]
    assert scores["modifier_applied"].tolist() == [
        "1 Critical signal → cap at 65",
        "1 Critical signal → cap at 65",
        "",
    ]
    assert scores["cap_value"].tolist()[:2] == [65.0, 65.0]
    assert pd.isna(scores["cap_value"].iloc[2])
    assert frames.filter_scores(scores, capped=True)["account_id"].tolist() == ["A"]


def test_an_old_run_is_renamed_on_load() -> None:
    old = frames.parse_scores("r", OLD.encode())
    new = frames.parse_scores("r", NEW.encode())
    assert list(old.columns) == list(new.columns)
    # Everything but the rule in words, which old runs did not write.
    pd.testing.assert_frame_equal(
        old.drop(columns="modifier_applied"), new.drop(columns="modifier_applied")
    )
    assert old["modifier_applied"].tolist() == ["", "", ""]
    assert frames.filter_scores(old, capped=True)["account_id"].tolist() == ["A"]
    assert frames.dimension_columns(old) == []


@pytest.mark.parametrize("text", [NEW, OLD])
def test_the_cap_part_of_a_capped_account(text: str) -> None:
    scores = frames.parse_scores("r", text.encode()).set_index("account_id")
    rows = pd.DataFrame(
        {
            "status": ["scored", "scored"],
            "metric": ["m1", "m2"],
            "dimension": ["d", "d"],
            "points": [40.0, 40.0],
        }
    )
    capped = frames.contributions(rows, scores.loc["A"].to_dict())
    assert capped["part"].tolist() == ["m1 (d)", "m2 (d)", "qualitative cap (critical_1)"]
    assert capped["points"].sum() == pytest.approx(65.0)
    # A cap that matched but did not lower the score has no part.
    assert len(frames.contributions(rows, scores.loc["B"].to_dict())) == 2


def test_a_scores_file_with_no_cap_columns_reads() -> None:
    scores = frames.parse_scores("r", f"{HEAD}\nA,Alpha,paid,65.0,At Risk,100.0\n".encode())
    assert scores["qualitative_override"].tolist() == [False]
    assert scores["modifier_applied"].tolist() == [""]
    assert pd.isna(scores["cap_value"].iloc[0])
