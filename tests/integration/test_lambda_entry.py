"""The Lambda handler: events, S3 artifacts, Secrets Manager, JSON logs, Rollbar, failures."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from health_score.aws_lambda import (
    ALLOWED_KEYS,
    InvalidEvent,
    RunFailed,
    SetupError,
    invoke,
    lambda_budget,
    lambda_handler,
    parse_event,
)
from health_score.pipeline import RunOptions, run_budget
from tests.lambda_support import (
    BUCKET,
    CONFIG,
    PREFIX,
    RAW,
    Aws,
    Context,
    RollbarServer,
    json_lines,
)
from tests.lambda_support import aws as aws
from tests.lambda_support import remove_json_handler as remove_json_handler
from tests.lambda_support import rollbar_server as rollbar_server

SCHEDULED = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-12-01T06:00:00Z",
    "region": "eu-west-1",
    "resources": ["arn:aws:events:eu-west-1:123456789012:rule/health-score-monthly"],
    "detail": {},
}
FROM_RAW = RunOptions(config_dir=CONFIG, from_raw=RAW)


# ---------------------------------------------------------------------------------------------
# Events


def test_the_scheduled_event_is_a_live_run_of_the_current_month() -> None:
    request = parse_event(SCHEDULED, {})
    assert (request.trigger, request.dry_run, request.period, request.allow_degraded) == (
        "schedule",
        False,
        None,
        False,
    )


def test_scheduled_runs_are_dry_when_the_function_says_so() -> None:
    assert parse_event(SCHEDULED, {"SCHEDULE_DRY_RUN": "true"}).dry_run is True
    with pytest.raises(SetupError, match="SCHEDULE_DRY_RUN"):
        parse_event(SCHEDULED, {"SCHEDULE_DRY_RUN": "maybe"})


def test_a_scheduled_event_honours_the_run_keys_it_carries() -> None:
    """An explicit dry_run: true on a scheduled event is never turned into a live write."""
    dry = parse_event({**SCHEDULED, "dry_run": True}, {})
    assert (dry.trigger, dry.dry_run) == ("schedule", True)
    in_detail = parse_event(
        {**SCHEDULED, "detail": {"dry_run": True, "scoring_period": "2026-10"}}, {}
    )
    assert (in_detail.dry_run, in_detail.period) == (True, "2026-10")
    degraded = parse_event({**SCHEDULED, "allow_degraded": True}, {})
    assert (degraded.dry_run, degraded.allow_degraded) == (False, True)
    # The function's own SCHEDULE_DRY_RUN=true wins over an event asking for a live run.
    assert parse_event({**SCHEDULED, "dry_run": False}, {"SCHEDULE_DRY_RUN": "true"}).dry_run


def test_a_scheduled_event_refuses_keys_it_cannot_honour() -> None:
    with pytest.raises(InvalidEvent, match="unknown key\\(s\\) 'dryrun'; allowed keys are"):
        parse_event({**SCHEDULED, "dryrun": True}, {})
    with pytest.raises(InvalidEvent, match="'force' in detail"):
        parse_event({**SCHEDULED, "detail": {"force": True}}, {})
    with pytest.raises(InvalidEvent, match="dry_run must be true or false"):
        parse_event({**SCHEDULED, "dry_run": "yes"}, {})
    with pytest.raises(InvalidEvent, match="dry_run given twice with different values"):
        parse_event({**SCHEDULED, "dry_run": True, "detail": {"dry_run": False}}, {})
    with pytest.raises(InvalidEvent, match="detail must be an object"):
        parse_event({**SCHEDULED, "detail": "run"}, {})


def test_a_manual_event_takes_its_three_keys() -> None:
    request = parse_event(
        {"dry_run": False, "scoring_period": "2026-10", "allow_degraded": True}, {}
    )
    assert (request.trigger, request.dry_run, request.period, request.allow_degraded) == (
        "manual",
        False,
        "2026-10",
        True,
    )


def test_an_empty_manual_event_is_a_dry_run_so_it_never_writes_by_accident() -> None:
    request = parse_event({}, {})
    assert request.dry_run is True and request.period is None and not request.allow_degraded


def test_unknown_keys_are_rejected_naming_the_allowed_keys() -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event({"dry_run": True, "accounts": 5}, {})
    message = str(caught.value)
    assert "'accounts'" in message
    for key in ALLOWED_KEYS:
        assert key in message


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"dry_run": "yes"}, "dry_run must be true or false"),
        ({"allow_degraded": 1}, "allow_degraded must be true or false"),
        ({"scoring_period": "2026-13"}, "scoring_period must be"),
        ({"scoring_period": 202611}, "scoring_period must be"),
        ({"source": "aws.events", "detail-type": "Other"}, "unknown key"),
        (["dry_run"], "must be a JSON object"),
        ("run please", "must be a JSON object"),
    ],
)
def test_malformed_events_are_rejected_with_a_clear_message(event: Any, expected: str) -> None:
    with pytest.raises(InvalidEvent, match=expected):
        parse_event(event, {})


# ---------------------------------------------------------------------------------------------
# End to end (moto)


def test_a_dry_run_lands_its_artifacts_in_s3_and_returns_the_summary(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = invoke(
        {"dry_run": True, "scoring_period": "2026-11"}, Context(), aws.environ, base=FROM_RAW
    )

    assert summary["exit_code"] == 0
    assert summary["status"] == "ok"
    assert summary["trigger"] == "manual"
    assert summary["period"] == "2026-11"
    assert summary["accounts_total"] == 25
    assert summary["writeback"] == {"status": "skipped", "reason": "dry run"}
    prefix = f"{PREFIX}/{summary['run_id']}/"
    assert summary["run_location"] == f"s3://{BUCKET}/{prefix}"
    names = {key.removeprefix(prefix) for key in aws.object_keys()}
    assert {"manifest.json", "raw.csv", "scores.csv", "metrics.npz"} <= names
    manifest = json.loads(aws.body(prefix + "manifest.json"))
    assert manifest["status"] == "ok" and manifest["dry_run"] is True
    assert Path(summary["output"]).parent == Path(os.environ.get("TMPDIR", "/tmp"))

    lines = json_lines(capsys.readouterr().out)
    finished = [line for line in lines if line["message"] == "run finished: ok"]
    assert finished and finished[0]["summary"]["run_id"] == summary["run_id"]
    assert all(line["request_id"] == "req-0001" for line in lines)
    metrics = [line for line in lines if "_aws" in line]
    assert metrics[0]["RunFailed"] == 0 and metrics[0]["AccountsScored"] == 25
    assert metrics[0]["Function"] == "health-score-test"


def test_every_run_gets_its_own_folder(aws: Aws) -> None:
    first = invoke({"scoring_period": "2026-11"}, Context(), aws.environ, base=FROM_RAW)
    second = invoke({"scoring_period": "2026-11"}, Context(), aws.environ, base=FROM_RAW)
    assert first["run_id"] != second["run_id"]
    assert {key.split("/")[1] for key in aws.object_keys()} == {first["run_id"], second["run_id"]}


def test_an_invalid_event_raises_for_the_failure_destination_and_writes_nothing(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(RunFailed) as caught:
        invoke({"dryrun": True}, Context(), aws.environ, base=FROM_RAW)
    summary = caught.value.summary
    assert summary["status"] == "failed"
    assert summary["exit_code"] == 2
    assert summary["run_id"] is None
    assert "dry_run, scoring_period, allow_degraded" in summary["messages"][0]
    assert json.loads(str(caught.value))["exit_code"] == 2
    assert aws.object_keys() == []
    lines = json_lines(capsys.readouterr().out)
    assert any(line["level"] == "ERROR" and "run not started" in line["message"] for line in lines)
    assert any(line.get("RunFailed") == 1 for line in lines)


def test_the_lambda_handler_reads_the_process_environment(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in aws.environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(RunFailed, match="allowed keys are"):
        lambda_handler({"surprise": 1}, Context())
    # The legacy name from the first wave's template (src.main.lambda_handler) is the same handler.
    from src.main import lambda_handler as legacy_handler

    assert legacy_handler is lambda_handler


def test_a_missing_artifact_bucket_fails_before_running(aws: Aws) -> None:
    environ = {k: v for k, v in aws.environ.items() if k != "ARTIFACT_BUCKET"}
    with pytest.raises(RunFailed, match="ARTIFACT_BUCKET is not set"):
        invoke({}, Context(), environ, base=FROM_RAW)


def test_a_bad_input_file_fails_with_exit_2_and_raises(aws: Aws, tmp_path: Path) -> None:
    broken = tmp_path / "raw.csv"
    broken.write_text("account_id,unknown_metric\nA1,3\n", encoding="utf-8")
    with pytest.raises(RunFailed) as caught:
        invoke({}, Context(), aws.environ, base=RunOptions(config_dir=CONFIG, from_raw=broken))
    assert caught.value.summary["exit_code"] == 2
    assert aws.object_keys() == []


class BrokenSecrets:
    """A Secrets Manager client failing in a way nobody planned for."""

    def get_secret_value(self, **kwargs: Any) -> Any:
        raise RuntimeError("the unexpected")


def test_an_unexpected_error_is_logged_and_reported_then_raised(
    aws: Aws, rollbar_server: RollbarServer, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {
        **aws.environ,
        "SECRETS_ID": "hsm/any",
        "ROLLBAR_ACCESS_TOKEN": "rollbar-token-1",
        "ROLLBAR_ENDPOINT": rollbar_server.url,
    }
    with pytest.raises(RuntimeError, match="the unexpected"):
        invoke({}, Context(), environ, base=FROM_RAW, secrets_client=BrokenSecrets())
    lines = json_lines(capsys.readouterr().out)
    crashed = [line for line in lines if line["message"] == "run crashed"]
    assert crashed and "RuntimeError" in crashed[0]["exception"]
    assert len(rollbar_server.items) == 1
    assert rollbar_server.items[0]["data"]["body"]["trace"]["exception"]["class"] == "RuntimeError"


def test_a_missing_bucket_ends_as_a_failed_run_with_its_summary_not_a_traceback(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {**aws.environ, "ARTIFACT_BUCKET": "no-such-bucket-here"}
    with pytest.raises(RunFailed) as caught:
        invoke({"scoring_period": "2026-11"}, Context(), environ, base=FROM_RAW)
    summary = caught.value.summary
    assert (summary["status"], summary["exit_code"]) == ("failed", 1)
    assert summary["run_id"] is not None and summary["run_location"] is None
    assert summary["accounts_total"] == 25
    (message,) = summary["messages"]
    assert message.startswith(
        "the run's files could not be written: S3 listing of s3://no-such-bucket-here/runs/"
    )
    assert "NoSuchBucket" in message
    assert summary["writeback"] == {"status": "skipped", "reason": "run failed"}
    out = capsys.readouterr().out
    assert "Traceback" not in out
    lines = json_lines(out)
    assert not [line for line in lines if "exception" in line]
    finished = [line for line in lines if line["message"] == "run finished: failed"]
    assert finished and finished[0]["summary"]["messages"] == [message]


class Remaining(Context):
    """A context that says how long the invocation has left, as Lambda's does."""

    def __init__(self, millis: int) -> None:
        super().__init__()
        self.millis = millis

    def get_remaining_time_in_millis(self) -> int:
        return self.millis


def test_the_budget_on_lambda_is_the_time_left_minus_the_margin_when_smaller() -> None:
    # 900 s left − 120 s margin = 780 s; 100 s left leaves nothing to extract with (0 s).
    assert lambda_budget(Remaining(900_000)) == (
        780.0,
        "Lambda time left 900 s minus the 120 s margin",
    )
    assert lambda_budget(Remaining(100_000))[0] == 0.0
    assert lambda_budget(Context()) == (None, "")
    options = RunOptions(budget_cap_seconds=780.0, budget_cap_origin="Lambda")
    assert run_budget(780.0, options) == (780.0, "run.budget_seconds")  # a tie: configured
    assert run_budget(600.0, options) == (600.0, "run.budget_seconds")
    assert run_budget(900.0, options) == (780.0, "Lambda")
    flag = RunOptions(budget_seconds=1000.0, budget_cap_seconds=780.0, budget_cap_origin="Lambda")
    assert run_budget(600.0, flag) == (780.0, "Lambda")
    assert run_budget(600.0, RunOptions(budget_seconds=30.0)) == (30.0, "--budget-seconds")


# ---------------------------------------------------------------------------------------------
# Secrets Manager and Rollbar


def test_credentials_come_from_the_secret_named_by_secrets_id(
    aws: Aws, rollbar_server: RollbarServer, capsys: pytest.CaptureFixture[str]
) -> None:
    arn = aws.secretsmanager.create_secret(
        Name="hsm/credentials",
        SecretString=json.dumps(
            {"ROLLBAR_ACCESS_TOKEN": "token-from-the-secret", "INTERCOM_API_TOKEN": "ic-secret-1"}
        ),
    )["ARN"]
    environ = {**aws.environ, "SECRETS_ID": arn, "ROLLBAR_ENDPOINT": rollbar_server.url}

    with pytest.raises(RunFailed):
        invoke({"scoring_period": "last month"}, Context(), environ, base=FROM_RAW)

    # The token held in the secret is the one Rollbar was called with.
    assert rollbar_server.tokens == ["token-from-the-secret"]
    item = rollbar_server.items[0]["data"]
    assert item["level"] == "error"
    assert "scoring_period" in item["body"]["message"]["body"]
    assert "ROLLBAR_ACCESS_TOKEN" not in os.environ
    lines = json_lines(capsys.readouterr().out)
    loaded = [
        line for line in lines if line["message"] == "credentials loaded from Secrets Manager"
    ]
    assert loaded[0]["variables"] == ["INTERCOM_API_TOKEN", "ROLLBAR_ACCESS_TOKEN"]


def test_an_unreadable_secret_fails_the_invocation_clearly(aws: Aws) -> None:
    environ = {**aws.environ, "SECRETS_ID": "hsm/missing"}
    with pytest.raises(RunFailed, match="could not read secret 'hsm/missing'"):
        invoke({}, Context(), environ, base=FROM_RAW)


def test_successful_runs_are_not_reported_to_rollbar(
    aws: Aws, rollbar_server: RollbarServer
) -> None:
    environ = {
        **aws.environ,
        "ROLLBAR_ACCESS_TOKEN": "rollbar-token-2",
        "ROLLBAR_ENDPOINT": rollbar_server.url,
    }
    summary = invoke({}, Context(), environ, base=FROM_RAW)
    assert summary["status"] == "ok"
    assert rollbar_server.items == []
