"""The handler end to end against the sandbox: live extraction, S3 artifacts (moto), the secret.

The pipeline runs in ``live`` mode exactly as in production: the Secrets Manager secret holds the
stand-ins' credentials and base URLs, the account mapping is the sandbox portfolio's, look-back
windows end at the portfolio's reference date.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from health_score.aws_lambda import RunFailed, invoke
from health_score.pipeline import RunOptions
from health_score_sandbox.sandbox import Sandbox
from health_score_sandbox.server import Faults
from tests.lambda_support import (
    CONFIG,
    PREFIX,
    Aws,
    Context,
    RollbarServer,
)
from tests.lambda_support import aws as aws
from tests.lambda_support import remove_json_handler as remove_json_handler
from tests.lambda_support import rollbar_server as rollbar_server

ACCOUNTS = 40
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's config, with fast retries so a source that is down fails in seconds."""
    folder = tmp_path_factory.mktemp("config")
    for item in CONFIG.iterdir():
        if item.is_file():
            shutil.copy(item, folder / item.name)
    sources = yaml.safe_load((CONFIG / "sources.yaml").read_text(encoding="utf-8")) or {}
    for name in ("intercom", "jira", "looker", "salesforce"):
        section = sources.get(name) or {}
        section["http"] = {**(section.get("http") or {}), "attempts": 2, "budget_seconds": 5}
        sources[name] = section
    (folder / "sources.yaml").write_text(yaml.safe_dump(sources), encoding="utf-8")
    return folder


def start_sandbox(config_dir: Path, faults: Mapping[str, Faults] | None = None) -> Sandbox:
    return Sandbox(ACCOUNTS, config_dir=config_dir, faults=faults, as_of=AS_OF.date())


@pytest.fixture
def sandbox(config_dir: Path) -> Iterator[Sandbox]:
    with start_sandbox(config_dir) as running:
        yield running


def with_secret(aws: Aws, sandbox: Sandbox, **extra: str) -> dict[str, str]:
    """The function's environment with every sandbox variable held in one secret."""
    arn = aws.secretsmanager.create_secret(
        Name=f"hsm/{id(sandbox)}", SecretString=json.dumps(sandbox.env())
    )["ARN"]
    return {**aws.environ, "SECRETS_ID": arn, **extra}


def base(sandbox: Sandbox, config_dir: Path) -> RunOptions:
    mapping = sandbox.write_mapping(sandbox.workdir / "account_mapping.csv")
    # The sandbox's date is the run's reference now (the data is current, not a past period).
    return RunOptions(config_dir=config_dir, mapping_path=mapping, as_of=AS_OF, now=AS_OF)


def salesforce_writes(sandbox: Sandbox) -> int:
    return sum(
        count
        for label, count in sandbox.stats()["salesforce"].items()
        if not label.startswith("GET") and "oauth2/token" not in label and "/Soap/" not in label
    )


def manifest(aws: Aws, summary: Mapping[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(aws.body(f"{PREFIX}/{summary['run_id']}/manifest.json"))
    return document


def test_a_dry_run_extracts_from_every_source_with_credentials_from_the_secret(
    aws: Aws, sandbox: Sandbox, config_dir: Path
) -> None:
    summary = invoke(
        {"dry_run": True, "scoring_period": "2026-11"},
        Context(),
        with_secret(aws, sandbox),
        base=base(sandbox, config_dir),
    )
    assert summary["status"] == "ok", summary["messages"]
    assert summary["exit_code"] == 0
    assert summary["accounts_total"] == ACCOUNTS
    assert {name: s["status"] for name, s in summary["sources"].items()} == {
        "intercom": "ok",
        "jira": "ok",
        "looker": "ok",
        "salesforce": "ok",
    }
    recorded = manifest(aws, summary)
    assert recorded["mode"] == "live" and recorded["status"] == "ok"
    assert recorded["writeback"]["status"] == "skipped"
    assert salesforce_writes(sandbox) == 0


def test_a_live_run_writes_the_scores_to_salesforce(
    aws: Aws, sandbox: Sandbox, config_dir: Path
) -> None:
    summary = invoke(
        {"dry_run": False, "scoring_period": "2026-11"},
        Context(),
        with_secret(aws, sandbox),
        base=base(sandbox, config_dir),
    )
    assert summary["exit_code"] == 0, summary["messages"]
    assert summary["writeback"]["status"] == "ok"
    assert summary["writeback"]["written"] == ACCOUNTS
    assert salesforce_writes(sandbox) >= 1


def test_one_source_down_degrades_the_run_refuses_the_write_and_says_why(
    aws: Aws, config_dir: Path, rollbar_server: RollbarServer
) -> None:
    with start_sandbox(config_dir, {"intercom": Faults(down=True)}) as sandbox:
        environ = with_secret(
            aws,
            sandbox,
            ROLLBAR_ACCESS_TOKEN="rollbar-token-3",
            ROLLBAR_ENDPOINT=rollbar_server.url,
        )
        with pytest.raises(RunFailed) as caught:
            invoke({"dry_run": False}, Context(), environ, base=base(sandbox, config_dir))
        writes = salesforce_writes(sandbox)

    summary = caught.value.summary
    assert summary["status"] == "degraded"
    assert summary["exit_code"] == 1
    assert summary["sources"]["intercom"]["status"] == "failed"
    assert summary["sources"]["intercom"]["error"]
    assert summary["writeback"]["status"] == "refused"
    assert "degraded" in summary["writeback"]["reason"]
    assert any("allow-degraded" in m or "degraded" in m for m in summary["messages"])
    assert writes == 0
    # The artifacts were written before the invocation failed.
    recorded = manifest(aws, summary)
    assert recorded["status"] == "degraded"
    assert recorded["sources"]["intercom"]["status"] == "failed"
    assert json.loads(str(caught.value))["status"] == "degraded"
    (item,) = rollbar_server.items
    assert item["data"]["level"] == "error"
    assert "degraded" in item["data"]["body"]["message"]["body"]


def test_a_degraded_dry_run_returns_and_is_reported_as_a_warning(
    aws: Aws, config_dir: Path, rollbar_server: RollbarServer
) -> None:
    with start_sandbox(config_dir, {"jira": Faults(always_503=True)}) as sandbox:
        environ = with_secret(
            aws,
            sandbox,
            ROLLBAR_ACCESS_TOKEN="rollbar-token-4",
            ROLLBAR_ENDPOINT=rollbar_server.url,
        )
        summary = invoke({"dry_run": True}, Context(), environ, base=base(sandbox, config_dir))
    assert summary["status"] == "degraded"
    assert summary["exit_code"] == 0
    assert summary["sources"]["jira"]["status"] == "failed"
    (item,) = rollbar_server.items
    assert item["data"]["level"] == "warning"


class Remaining(Context):
    """Lambda's context: the invocation has ``millis`` left."""

    def __init__(self, millis: int) -> None:
        super().__init__()
        self.millis = millis

    def get_remaining_time_in_millis(self) -> int:
        return self.millis


def test_on_lambda_a_source_slower_than_the_time_left_is_stopped_at_the_deadline(
    aws: Aws, sandbox: Sandbox, config_dir: Path
) -> None:
    # 121.5 s left − the 120 s margin = a 1.5 s budget (smaller than run.budget_seconds, 780 s);
    # Jira answers after 4 s, so it is stopped and the dry run is degraded.
    sandbox.servers["jira"].knobs.latency_ms = 4000
    try:
        summary = invoke(
            {"dry_run": True},
            Remaining(121_500),
            with_secret(aws, sandbox),
            base=base(sandbox, config_dir),
        )
    finally:
        sandbox.servers["jira"].knobs.latency_ms = 0.0
    assert summary["status"] == "degraded" and summary["exit_code"] == 0
    jira = summary["sources"]["jira"]
    assert jira["status"] == "failed"
    assert jira["error"] == (
        "deadline: stopped after 2 s (run budget 1.5 s, Lambda time left 122 s minus the "
        "120 s margin)"
    )
    document = manifest(aws, summary)
    assert document["budget"] == {
        "seconds": 1.5,
        "origin": "Lambda time left 122 s minus the 120 s margin",
    }
    assert document["sources"]["intercom"]["status"] == "ok"
