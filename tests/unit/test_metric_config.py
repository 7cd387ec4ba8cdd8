"""Metrics as configuration (issue 17, item 3): Intercom P1/P2 by tags, Looker's new forms and
the Salesforce declarative metrics' validation — pinned with hand-made literals."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pydantic
import pytest

from health_score.sources.intercom.metrics import Rules, parse_conversation
from health_score.sources.intercom.settings import Settings as IntercomSettings
from health_score.sources.looker import Settings as LookerSettings
from health_score.sources.looker import customer_value
from health_score.sources.salesforce.declarative import CustomMetrics
from health_score.sources.salesforce.settings import Settings as SalesforceSettings


def _conversation(tags: list[str], priority: str | None = None) -> dict[str, Any]:
    return {
        "id": "1",
        "created_at": 1_700_000_000,
        "tags": {"tags": [{"name": t} for t in tags]},
        "custom_attributes": {"Priority": priority} if priority else {},
    }


@pytest.mark.parametrize(
    ("tags", "priority", "p1_p2", "escalated"),
    [
        (["sev1"], None, True, False),  # tag, any letter case
        (["Billing", "P2"], None, True, False),  # any one of the list
        (["Billing"], "P1", True, False),  # the attribute still counts
        (["Billing"], "P3", False, False),
        (["Escalated", "Billing"], None, False, True),
        (["ENGINEERING"], None, False, True),
    ],
)
def test_p1_p2_and_escalation_by_tags_or_attribute(
    tags: list[str], priority: str | None, p1_p2: bool, escalated: bool
) -> None:
    settings = IntercomSettings.model_validate(
        {"p1_p2_tags": ["Sev1", "P2"], "escalation_tags": ["Escalated", "Engineering"]}
    )
    conversation, _ = parse_conversation(_conversation(tags, priority), Rules.of(settings))
    assert (conversation.p1_p2, conversation.escalated) == (p1_p2, escalated)


def test_tags_alone_may_decide_p1_p2() -> None:
    settings = IntercomSettings.model_validate({"p1_p2_values": [], "p1_p2_tags": ["urgent"]})
    rules = Rules.of(settings)
    assert parse_conversation(_conversation(["Urgent"], "P1"), rules)[0].p1_p2
    assert not parse_conversation(_conversation([], "P1"), rules)[0].p1_p2
    with pytest.raises(pydantic.ValidationError, match="p1_p2_tags"):
        IntercomSettings.model_validate({"p1_p2_values": []})
    with pytest.raises(pydantic.ValidationError, match="tag name cannot be empty"):
        IntercomSettings.model_validate({"p1_p2_tags": [" "]})


def _look_metric(spec: dict[str, Any]) -> Any:
    settings = LookerSettings.model_validate(
        {"looks": [{"id": 1, "customer_id_field": "a.id", "metrics": {"m": spec}}]}
    )
    return settings.looks[0].metrics["m"]


@pytest.mark.parametrize(
    ("spec", "rows", "value"),
    [
        ({"transform": "sum", "fields": ["a.x", "a.y"]}, [{"a.x": 2, "a.y": 3}, {"a.x": 1}], 6),
        ({"transform": "sum", "fields": ["a.x", "a.y"]}, [{"a.x": None, "a.y": None}], None),
        ({"transform": "presence", "field": "a.s", "counts": "any_value"}, [{"a.s": "Gold"}], 1),
        ({"transform": "presence", "field": "a.s", "counts": "any_value"}, [{"a.s": 0}], 1),
        ({"transform": "presence", "field": "a.s", "counts": "any_value"}, [{"a.s": "  "}], 0),
        ({"transform": "presence", "field": "a.s"}, [{"a.s": "Gold"}], 0),
        (
            {
                "transform": "change_pct",
                "current": "a.c",
                "previous": "a.p",
                "when_previous_zero": 100,
            },
            [{"a.c": 4, "a.p": 0}],
            100,
        ),
        (
            {
                "transform": "change_pct",
                "current": "a.c",
                "previous": "a.p",
                "when_previous_zero": 100,
            },
            [{"a.c": -2, "a.p": 0}],
            -100,
        ),
        (
            {
                "transform": "change_pct",
                "current": "a.c",
                "previous": "a.p",
                "when_previous_zero": 100,
            },
            [{"a.c": 0, "a.p": 0}],
            0,
        ),
        (
            {"transform": "change_pct", "current": "a.c", "previous": "a.p"},
            [{"a.c": 4, "a.p": 0}],
            None,
        ),
    ],
)
def test_looker_forms(spec: dict[str, Any], rows: list[dict[str, Any]], value: int | None) -> None:
    got = customer_value(_look_metric(spec), rows, known=True, complete=True)
    assert got == (None if value is None else Fraction(value))


@pytest.mark.parametrize(
    "spec",
    [
        {"transform": "sum", "field": "a.x", "fields": ["a.y"]},
        {"transform": "sum"},
        {"transform": "sum", "fields": ["a.x", "a.x"]},
        {"transform": "presence", "field": "a.x", "counts": "some"},
        {
            "transform": "change_pct",
            "current": "a.c",
            "previous": "a.p",
            "when_previous_zero": "inf",
        },
    ],
)
def test_bad_looker_forms_are_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        _look_metric(spec)


GOOD = {"object": "CSQL__c", "account_field": "Account__c", "aggregate": "count"}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"object": "CSQL__c; DELETE"}, "object"),
        ({"account_field": "Account__r.Id"}, "account_field"),
        ({"field": "Amount__c"}, "count takes no field"),
        ({"aggregate": "sum"}, "sum needs field"),
        ({"aggregate": "latest", "field": "NewValue"}, "order_by"),
        ({"aggregate": "median", "field": "Amount__c"}, "aggregate"),
        ({"filters": [{"field": "Status__c", "op": "LIKE", "value": "%"}]}, "op"),
        (
            {"filters": [{"field": "Status__c", "op": "IN", "value": "Open"}]},
            "needs a non-empty list",
        ),
        ({"filters": [{"field": "Status__c", "op": "=", "value": ["a"]}]}, "use IN"),
        ({"filters": [{"field": "Status__c", "op": "<", "value": None}]}, "null compares only"),
        ({"filters": [{"field": "Bad Field", "op": "=", "value": 1}]}, "field"),
        ({"filters": [{"field": "D__c", "op": "<", "value": {"as_of_date": "x"}}]}, "as_of_date"),
    ],
)
def test_bad_declarative_metrics_are_refused(change: dict[str, Any], words: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=words):
        CustomMetrics.model_validate({"open_csqls": {**GOOD, **change}})


def test_a_custom_metric_cannot_shadow_a_built_in_one() -> None:
    with pytest.raises(pydantic.ValidationError, match="already a built-in Salesforce metric"):
        SalesforceSettings.model_validate({"custom_metrics": {"days_to_renewal": GOOD}})
    with pytest.raises(pydantic.ValidationError):
        CustomMetrics.model_validate({"Open CSQLs": GOOD})


def test_literals_are_escaped_and_typed() -> None:
    spec = CustomMetrics.model_validate(
        {
            "m": {
                **GOOD,
                "filters": [
                    {"field": "Name", "op": "IN", "value": ["O'Brien", "a\\b"]},
                    {"field": "Amount__c", "op": ">=", "value": 1.5},
                    {"field": "Active__c", "op": "=", "value": True},
                    {"field": "Owner__c", "op": "!=", "value": None},
                    {"field": "Due__c", "op": "<=", "value": {"as_of_date": 30}},
                ],
            }
        }
    ).root["m"]
    soql = spec.query(["001000000000001AAA"], datetime(2026, 11, 1, tzinfo=UTC))
    assert soql.endswith(
        "AND Name IN ('O\\'Brien','a\\\\b') AND Amount__c >= 1.5 AND Active__c = true "
        "AND Owner__c != null AND Due__c <= 2026-12-01 GROUP BY Account__c"
    )
    assert spec.value(7, datetime(2026, 11, 1, tzinfo=UTC), "m") == Decimal(7)
