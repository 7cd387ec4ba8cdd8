"""No credential ever appears in a log line, an artifact, a summary, an exception or a report.

The handler runs end to end against the sandbox (live extraction, Salesforce write-back, S3 via
moto, the secret via moto). Logs are checked twice: the JSON lines the function prints (with its
masking) and the raw records every logger emitted (caplog: the pipeline's own text, unmasked).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from health_score.aws_lambda import RunFailed, invoke
from health_score.sources.registry import CREDENTIAL_VARS
from health_score_sandbox.sandbox import Sandbox
from tests.integration.test_lambda_sandbox import ACCOUNTS, AS_OF, base, config_dir
from tests.lambda_support import BUCKET, Aws, Context, RollbarServer
from tests.lambda_support import aws as aws
from tests.lambda_support import remove_json_handler as remove_json_handler
from tests.lambda_support import rollbar_server as rollbar_server

__all__ = ["aws", "config_dir", "remove_json_handler", "rollbar_server"]

ROLLBAR_TOKEN = "rollbar-sentinel-token-5d1e"


def credential_names() -> set[str]:
    names = {name for names in CREDENTIAL_VARS.values() for name in names}
    names |= {"SF_CLIENT_ID", "SF_CLIENT_SECRET", "SF_USERNAME", "SF_PASSWORD"}
    names |= {"SF_SECURITY_TOKEN"}
    return {n for n in names if not n.endswith(("_URL", "_BUNDLE"))}


def everything_written(
    aws: Aws, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> dict[str, str]:
    """Every place a credential could end up, by name."""
    places = {"stdout": capsys.readouterr().out, "records": caplog.text}
    places["raw messages"] = "\n".join(
        f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
    )
    for key in aws.object_keys():
        places[f"s3://{BUCKET}/{key}"] = aws.body(key).decode("utf-8", "replace")
    return places


def assert_absent(secrets: set[str], places: dict[str, str]) -> None:
    leaks = [(name, place) for place, text in places.items() for name in secrets if name in text]
    assert leaks == []


def test_valid_credentials_never_leave_the_run(
    aws: Aws,
    config_dir: Path,
    rollbar_server: RollbarServer,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with Sandbox(ACCOUNTS, config_dir=config_dir, as_of=AS_OF.date()) as sandbox:
        env = sandbox.env()
        secrets = {v for k, v in env.items() if k in credential_names()}
        assert len(secrets) >= 6  # every source's credentials are in play
        arn = aws.secretsmanager.create_secret(
            Name="hsm/valid",
            SecretString=json.dumps({**env, "ROLLBAR_ACCESS_TOKEN": ROLLBAR_TOKEN}),
        )["ARN"]
        environ = {
            **aws.environ,
            "SECRETS_ID": arn,
            "ROLLBAR_ENDPOINT": rollbar_server.url,
            "LOG_LEVEL": "DEBUG",  # the most a run ever logs
        }
        caplog.clear()  # only what the invocation logs (not the test's own setup calls)
        summary = invoke({"dry_run": False}, Context(), environ, base=base(sandbox, config_dir))

    assert summary["exit_code"] == 0 and summary["writeback"]["status"] == "ok"
    places = everything_written(aws, capsys, caplog)
    places["summary"] = json.dumps(summary)
    places["scores csv"] = Path(summary["output"]).read_text(encoding="utf-8")
    assert_absent(secrets | {ROLLBAR_TOKEN}, places)


def test_rejected_sentinel_credentials_never_appear_in_errors_or_reports(
    aws: Aws,
    config_dir: Path,
    rollbar_server: RollbarServer,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with Sandbox(ACCOUNTS, config_dir=config_dir, as_of=AS_OF.date()) as sandbox:
        env = sandbox.env()
        sentinels = {
            name: f"sentinel-{name.lower()}-8c4f2a" for name in env if name in credential_names()
        }
        arn = aws.secretsmanager.create_secret(
            Name="hsm/rejected",
            SecretString=json.dumps({**env, **sentinels, "ROLLBAR_ACCESS_TOKEN": ROLLBAR_TOKEN}),
        )["ARN"]
        environ = {
            **aws.environ,
            "SECRETS_ID": arn,
            "ROLLBAR_ENDPOINT": rollbar_server.url,
            "LOG_LEVEL": "DEBUG",  # the most a run ever logs
        }
        caplog.clear()  # only what the invocation logs (not the test's own setup calls)
        with pytest.raises(RunFailed) as caught:
            invoke({"dry_run": False}, Context(), environ, base=base(sandbox, config_dir))

    summary = caught.value.summary
    assert summary["status"] == "failed"
    assert all(s["status"] == "failed" for s in summary["sources"].values())
    places = everything_written(aws, capsys, caplog)
    places["summary"] = json.dumps(summary)
    places["exception"] = f"{caught.value} {caught.value.__cause__} {caught.value.__context__}"
    assert_absent(set(sentinels.values()) | {ROLLBAR_TOKEN}, places)
    # Rollbar got the failure, and nothing but its own token (which it needs) is in it.
    assert rollbar_server.items
    reports = "\n".join(raw.decode("utf-8") for raw in rollbar_server.raw)
    assert_absent(set(sentinels.values()), {"rollbar": reports})
