"""The SAM template: cfn-lint clean, and the properties operations rely on are as designed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_all
from cfnlint.decode import decode_str

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    document, problems = decode_str(TEMPLATE.read_text(encoding="utf-8"))
    assert not problems, problems
    assert document is not None
    return dict(document)


@pytest.fixture(scope="module")
def function(template: dict[str, Any]) -> dict[str, Any]:
    resource = template["Resources"]["HealthScoreFunction"]
    assert resource["Type"] == "AWS::Serverless::Function"
    properties: dict[str, Any] = resource["Properties"]
    return properties


def test_cfn_lint_finds_no_errors_or_warnings() -> None:
    matches = lint_all(TEMPLATE.read_text(encoding="utf-8"))
    serious = [str(m) for m in matches if m.rule.id[0] in {"E", "W"}]
    assert serious == []


def test_the_function_runs_the_main_handler_on_python_3_12_for_15_minutes(
    function: dict[str, Any],
) -> None:
    assert function["Handler"] == "health_score.aws_lambda.lambda_handler"
    assert function["Runtime"] == "python3.12"
    assert function["Timeout"] == 900
    assert function["CodeUri"] == "build/lambda.zip"
    assert 512 <= function["MemorySize"] <= 2048


def test_the_monthly_schedule_is_a_parameter_defaulting_to_six_on_the_first(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    assert template["Parameters"]["ScheduleExpression"]["Default"] == "cron(0 6 1 * ? *)"
    (event,) = function["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == {"Ref": "ScheduleExpression"}


def test_the_handler_environment_names_the_bucket_prefix_and_secret(
    function: dict[str, Any],
) -> None:
    variables = function["Environment"]["Variables"]
    assert variables["ARTIFACT_BUCKET"] == {"Ref": "ArtifactBucket"}
    assert variables["ARTIFACT_PREFIX"] == {"Ref": "ArtifactPrefix"}
    assert variables["SECRETS_ID"] == {"Ref": "CredentialsSecret"}


def test_the_artifact_bucket_is_encrypted_private_and_versioned(
    template: dict[str, Any],
) -> None:
    bucket = template["Resources"]["ArtifactBucket"]
    properties = bucket["Properties"]
    (rule,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert all(properties["PublicAccessBlockConfiguration"].values())
    assert len(properties["PublicAccessBlockConfiguration"]) == 4
    assert properties["VersioningConfiguration"]["Status"] == "Enabled"
    assert bucket["DeletionPolicy"] == "Retain"


def test_the_role_may_touch_only_its_prefix_and_its_secret(function: dict[str, Any]) -> None:
    (policy,) = function["Policies"]
    statements = policy["Statement"]
    resources = {
        (action if isinstance(action, str) else tuple(action)): s["Resource"]
        for s in statements
        for action in [s["Action"]]
    }
    assert all(s["Effect"] == "Allow" for s in statements)
    assert resources[("s3:PutObject", "s3:GetObject")] == {
        "Fn::Sub": "${ArtifactBucket.Arn}/${ArtifactPrefix}/*"
    }
    listing = next(s for s in statements if s["Action"] == "s3:ListBucket")
    assert listing["Condition"]["StringLike"]["s3:prefix"] == {"Fn::Sub": "${ArtifactPrefix}/*"}
    assert resources["secretsmanager:GetSecretValue"] == {"Ref": "CredentialsSecret"}
    assert not any("*" in str(s["Action"]) for s in statements)
    assert len(statements) == 3


def test_failures_go_to_a_queue_without_retries_and_raise_an_alarm(
    template: dict[str, Any], function: dict[str, Any]
) -> None:
    invoke = function["EventInvokeConfig"]
    assert invoke["MaximumRetryAttempts"] == 0
    assert invoke["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["FailureQueue", "Arn"]},
    }
    alarm = template["Resources"]["ErrorsAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
    assert alarm["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": "HealthScoreFunction"}}
    ]
    assert alarm["Threshold"] == 1
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_degraded_runs_alarm_on_the_metric_the_handler_logs(template: dict[str, Any]) -> None:
    from health_score.logging_setup import METRICS_NAMESPACE, metrics_line

    alarm = template["Resources"]["DegradedRunAlarm"]["Properties"]
    line = metrics_line({"status": "degraded", "exit_code": 0}, "fn")
    (declared,) = line["_aws"]["CloudWatchMetrics"]
    assert alarm["Namespace"] == METRICS_NAMESPACE == declared["Namespace"]
    assert alarm["MetricName"] in {m["Name"] for m in declared["Metrics"]}
    assert line[alarm["MetricName"]] == 1
    assert [d["Name"] for d in alarm["Dimensions"]] == declared["Dimensions"][0]
