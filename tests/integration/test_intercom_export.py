"""Intercom from its conversation export (``--intercom-export``): the API mode's metrics for the
same conversations, the file checked line by line, the Lambda event key (local and S3)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from health_score.aws_lambda import RunFailed, invoke
from health_score.cli import main
from health_score.pipeline import RunOptions, RunSummary, run
from health_score.records import Account
from health_score.sources.intercom import METRICS, Settings
from health_score.sources.intercom.export import (
    ExportError,
    IntercomExportExtractor,
    read_export,
)
from health_score_sandbox.intercom import write_conversation_export
from health_score_sandbox.sandbox import Sandbox
from tests.conftest import sandbox_config
from tests.lambda_support import BUCKET, Aws, Context
from tests.lambda_support import aws as aws
from tests.lambda_support import remove_json_handler as remove_json_handler

ACCOUNTS = 60
SANDBOX_DATE = datetime(2026, 11, 1, tzinfo=UTC)  # the runs' reference now
HEADER = (
    "Conversation ID,Created at,Company ID,State,Delivered as,Tags,Priority,"
    "First response time,Time to first close,Time to last close,Reopens"
)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(ACCOUNTS) as sb:
        yield sb


@pytest.fixture(scope="module")
def export(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("export")
    return write_conversation_export(sandbox.data["intercom"], folder / "conversations.csv")


@pytest.fixture
def config_dir(tmp_path: Path, sandbox: Sandbox) -> Path:
    return sandbox_config(tmp_path / "config", sandbox)


def without_intercom(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith("INTERCOM_")}


def a_run(
    config_dir: Path, env: dict[str, str], folder: Path, **options: Any
) -> tuple[RunSummary, dict[str, Any]]:
    summary = run(
        RunOptions(
            config_dir=config_dir,
            env=env,
            output=folder / "scores.csv",
            runs_dir=str(folder / "runs"),
            now=SANDBOX_DATE,
            dry_run=True,
            **options,
        )
    )
    assert summary.run_location is not None, summary.messages
    manifest = json.loads((Path(summary.run_location) / "manifest.json").read_text())
    return summary, manifest


def intercom_raw(summary: RunSummary) -> dict[str, dict[str, str]]:
    """account_id → the Intercom metrics of the run's raw.csv (cell text)."""
    assert summary.run_location is not None
    text = (Path(summary.run_location) / "raw.csv").read_text(encoding="utf-8")
    return {
        row["account_id"]: {m: row[m] for m in METRICS} for row in csv.DictReader(io.StringIO(text))
    }


# ---------------------------------------------------------------------------------------------
# Export mode = API mode, through the real pipeline


@pytest.mark.parametrize("period", ["2026-10", "2026-09"])  # read at its end; read a month later
def test_export_mode_gives_the_api_modes_intercom_metrics_for_every_account(
    sandbox: Sandbox, export: Path, config_dir: Path, tmp_path: Path, period: str
) -> None:
    api, _ = a_run(config_dir, sandbox.env(), tmp_path / "api", period=period)
    before = sandbox.requests("intercom")
    exported, manifest = a_run(
        config_dir,
        without_intercom(sandbox.env()),  # no Intercom credentials are needed
        tmp_path / "export",
        period=period,
        intercom_export=export,
    )

    assert api.sources["intercom"].status == "ok"
    assert exported.sources["intercom"].status == "ok", exported.sources["intercom"]
    assert sandbox.requests("intercom") == before  # the API was not called
    api_metrics, export_metrics = intercom_raw(api), intercom_raw(exported)
    assert len(api_metrics) == ACCOUNTS
    assert export_metrics == api_metrics
    with_data = [a for a, m in api_metrics.items() if m["p1_p2_volume"] not in ("", None)]
    assert len(with_data) > ACCOUNTS // 2  # the comparison is not between empty columns
    assert manifest["sources"]["intercom"]["requests"] == 0


def test_the_manifest_says_the_source_was_the_export_file_and_the_window(
    sandbox: Sandbox, export: Path, config_dir: Path, tmp_path: Path
) -> None:
    _, manifest = a_run(
        config_dir, without_intercom(sandbox.env()), tmp_path, intercom_export=export
    )

    entry = manifest["sources"]["intercom"]
    rows = len(export.read_text(encoding="utf-8").splitlines()) - 1
    digest = hashlib.sha256(export.read_bytes()).hexdigest()
    assert entry["notes"][0] == (
        f"read from Intercom's conversation export conversations.csv ({rows} rows, "
        f"sha256 {digest}), not the API"
    )
    # The default 30-day look-back before the period's end (2026-10 → 2026-11-01).
    assert entry["window"] == {
        "from": "2026-10-02T00:00:00+00:00",
        "to": "2026-11-01T00:00:00+00:00",
    }
    assert (
        "of its" in entry["notes"][1]
        and "[2026-10-02T00:00Z, 2026-11-01T00:00Z)" in (entry["notes"][1])
    )


# ---------------------------------------------------------------------------------------------
# The definitions, on a file written by hand


AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
HAND = (
    HEADER
    + "\n"
    # In the window [2026-10-02, 2026-11-01), company C1:
    + "1,2026-10-05 10:00:00,C1,closed,customer_initiated,Escalated,P1,600,3600,7200,1\n"
    + "2,2026-10-06T10:00:00Z,C1,closed,customer_initiated,,P3,1200,36000,36000,0\n"
    + '3,1791417600,C1,open,customer_initiated,"bug, escalated",,,,,0\n'  # 2026-10-08
    # Outbound: not measured.
    + "4,2026-10-07 10:00:00,C1,closed,admin_initiated,Escalated,P1,60,60,60,0\n"
    # Before the window, and on its end (excluded).
    + "5,2026-10-01 23:59:59,C1,closed,customer_initiated,,P1,60,60,60,0\n"
    + "6,2026-11-01 00:00:00,C1,closed,customer_initiated,,P1,60,60,60,0\n"
    # No company: unattributed.
    + "7,2026-10-09 10:00:00,,closed,customer_initiated,,P2,60,60,60,0\n"
    # Replied and closed only after as_of (a later reading): counted only when read at as_of.
    + "8,2026-10-31 20:00:00,C2,closed,customer_initiated,,P2,18000,18000,18000,0\n"
)


def hand_metrics(now: datetime) -> tuple[dict[str, dict[str, Any]], tuple[str, ...]]:
    conversations = read_export(HAND.encode(), "hand.csv", Settings())
    assert conversations.rows == 8
    extractor = IntercomExportExtractor(conversations, Settings(), as_of=AS_OF, now=now)
    accounts = [
        Account("A1", "One", "smb", intercom_company_id="C1"),
        Account("A2", "Two", "smb", intercom_company_id="C2"),
        Account("A3", "Three", "smb"),
    ]
    result = extractor.extract(accounts)
    return {k: dict(v) for k, v in result.metrics.items()}, result.notes


def test_the_metrics_of_a_hand_written_export() -> None:
    metrics, notes = hand_metrics(AS_OF)

    # C1: conversations 1, 2, 3. P1/P2: 1. First responses 600 s, 1200 s → median 900 s = 15 min.
    # Closed (now): 1 and 2, last closes 7200 s and 36000 s → median 21600 s = 6 h.
    # Closed once: 1, 2; reopened: 1 → 50 %. Escalated (tags, any case): 1 and 3 of 3 → 66.6667 %.
    assert metrics["A1"]["p1_p2_volume"] == Decimal(1)
    assert metrics["A1"]["first_response_minutes"] == Decimal(15)
    assert metrics["A1"]["close_time_hours"] == Decimal(6)
    assert metrics["A1"]["reopen_rate_pct"] == Decimal(50)
    assert metrics["A1"]["escalation_rate_pct"] == Decimal("66.6667")
    # C2, read at as_of: its 5-hour reply and close are counted.
    assert metrics["A2"]["first_response_minutes"] == Decimal(300)
    assert metrics["A2"]["close_time_hours"] == Decimal(5)
    assert metrics["A3"] == dict.fromkeys(METRICS)
    assert "1 outbound conversations (source.delivered_as in admin_initiated, automated, " in (
        " ".join(notes)
    )
    assert "1 conversations without a Company ID not attributed to any company" in notes[-1]


def test_a_later_reading_cuts_replies_and_closes_after_as_of() -> None:
    metrics, notes = hand_metrics(datetime(2026, 12, 1, tzinfo=UTC))

    # Conversation 8 was created 4 h before as_of; its reply and close came 5 h after creation.
    assert metrics["A2"]["p1_p2_volume"] == Decimal(1)
    assert metrics["A2"]["first_response_minutes"] is None
    assert metrics["A2"]["close_time_hours"] is None
    assert metrics["A2"]["reopen_rate_pct"] is None
    assert metrics["A1"]["first_response_minutes"] == Decimal(15)  # all before as_of
    assert "replies and closes from as_of on not counted (read after the period)" in notes


# ---------------------------------------------------------------------------------------------
# A file that is not the export: exit 2, the line and column named, nothing written


#: The repository's sources.yaml also reads the escalation attribute "Escalation level".
CONFIGURED = Settings(
    escalation_attribute="custom_attributes.Escalation level",
    escalation_values=("Tier 2", "Engineering"),
)
FULL = HEADER + ",Escalation level"
GOOD_ROW = "1,2026-10-05 10:00:00,C1,closed,customer_initiated,,P1,600,3600,7200,0,Tier 2\n"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            FULL.replace(",Reopens", "").encode() + b"\n",
            "Intercom export broken.csv, line 1: missing column(s) 'Reopens'",
        ),
        (
            (
                FULL + "\n" + GOOD_ROW + GOOD_ROW.replace("1,2026-10-05 10", "2,2026-10-32 10")
            ).encode(),
            "Intercom export broken.csv, line 3, column 'Created at': '2026-10-32 10:00:00': "
            "expected a time such as",
        ),
        (
            (FULL + "\n" + GOOD_ROW.replace(",C1,", ",Caf\u00e9,")).encode("latin-1"),
            "Intercom export broken.csv, line 2: not UTF-8 text (byte ",
        ),
        (
            (FULL + "\n" + GOOD_ROW + GOOD_ROW.replace(",P1,", ",P2,")).encode(),
            "Intercom export broken.csv, line 3, column 'Conversation ID': conversation 1 again "
            "(first on line 2)",
        ),
        (
            (FULL + "\n" + GOOD_ROW.replace(",600,", ",ten minutes,")).encode(),
            "Intercom export broken.csv, line 2, column 'First response time': 'ten minutes': "
            "expected a duration in seconds",
        ),
        (
            (FULL + "\n" + GOOD_ROW.replace(",closed,", ",resolved,")).encode(),
            "Intercom export broken.csv, line 2, column 'State': 'resolved': expected open, "
            "closed or snoozed",
        ),
    ],
    ids=[
        "missing-column",
        "bad-timestamp",
        "wrong-encoding",
        "duplicate-id",
        "bad-duration",
        "state",
    ],
)
def test_a_malformed_export_fails_the_run_with_exit_2_naming_line_and_column(
    sandbox: Sandbox,
    config_dir: Path,
    tmp_path: Path,
    content: bytes,
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in without_intercom(sandbox.env()).items():
        monkeypatch.setenv(name, value)  # the command line reads the process environment
    monkeypatch.delenv("INTERCOM_API_TOKEN", raising=False)
    broken = tmp_path / "broken.csv"
    broken.write_bytes(content)
    with pytest.raises(ExportError, match="^" + expected.replace("(", r"\(").replace(")", r"\)")):
        read_export(content, "broken.csv", CONFIGURED)

    before = sum(sandbox.requests(name) for name in sandbox.servers)
    code = main(
        [
            "run",
            "--dry-run",
            "--config-dir",
            str(config_dir),
            "--intercom-export",
            str(broken),
            "--output",
            str(tmp_path / "scores.csv"),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--as-of",
            "2026-11-01",
        ]
    )

    assert code == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert not (tmp_path / "scores.csv").exists()
    assert sum(sandbox.requests(name) for name in sandbox.servers) == before  # no vendor called


def test_export_and_from_raw_are_refused_together(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["run", "--dry-run", "--from-raw", "raw.csv", "--intercom-export", "x.csv"])
    assert caught.value.code == 2
    assert "--intercom-export is read when extracting" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Lambda: the event key, a local path and an S3 key


def lambda_base(sandbox: Sandbox, config_dir: Path) -> RunOptions:
    mapping = sandbox.write_mapping(sandbox.workdir / "account_mapping.csv")
    return RunOptions(config_dir=config_dir, mapping_path=mapping, now=SANDBOX_DATE)


def test_the_lambda_event_key_reads_a_local_export(
    aws: Aws, sandbox: Sandbox, export: Path, config_dir: Path
) -> None:
    environ = {**aws.environ, **without_intercom(sandbox.env())}
    summary = invoke(
        {"intercom_export_path": str(export)},
        Context(),
        environ,
        base=lambda_base(sandbox, config_dir),
    )

    assert summary["exit_code"] == 0, summary["messages"]
    intercom = summary["sources"]["intercom"]
    assert intercom["status"] == "ok" and intercom["requests"] == 0
    assert intercom["notes"][0].startswith(
        "read from Intercom's conversation export conversations.csv ("
    )


def test_the_lambda_event_key_reads_an_export_from_s3(
    aws: Aws, sandbox: Sandbox, export: Path, config_dir: Path, tmp_path: Path
) -> None:
    aws.s3.put_object(Bucket=BUCKET, Key="exports/october.csv", Body=export.read_bytes())
    environ = {**aws.environ, **without_intercom(sandbox.env())}
    base = lambda_base(sandbox, config_dir)

    by_key = invoke({"intercom_export_path": "exports/october.csv"}, Context(), environ, base=base)
    by_uri = invoke(
        {"intercom_export_path": f"s3://{BUCKET}/exports/october.csv"},
        Context(),
        environ,
        base=base,
    )

    digest = hashlib.sha256(export.read_bytes()).hexdigest()
    for summary in (by_key, by_uri):
        assert summary["exit_code"] == 0, summary["messages"]
        note = summary["sources"]["intercom"]["notes"][0]
        assert note.startswith("read from Intercom's conversation export october.csv (")
        assert digest in note
        manifest = json.loads(aws.body(f"runs/{summary['run_id']}/manifest.json"))
        assert manifest["sources"]["intercom"]["notes"][0] == note


def test_a_missing_s3_export_fails_the_invocation_with_exit_2_and_writes_nothing(
    aws: Aws, sandbox: Sandbox, config_dir: Path
) -> None:
    environ = {**aws.environ, **without_intercom(sandbox.env())}
    with pytest.raises(RunFailed) as caught:
        invoke(
            {"intercom_export_path": "exports/none.csv"},
            Context(),
            environ,
            base=lambda_base(sandbox, config_dir),
        )
    assert caught.value.summary["exit_code"] == 2
    assert (
        "intercom_export_path s3://hsm-lambda-test/exports/none.csv cannot be fetched"
        in (caught.value.summary["messages"][0])
    )
    assert aws.object_keys() == []


def test_a_malformed_s3_export_fails_with_exit_2_naming_the_line(
    aws: Aws, sandbox: Sandbox, config_dir: Path
) -> None:
    aws.s3.put_object(Bucket=BUCKET, Key="exports/bad.csv", Body=(FULL + "\n1,soon\n").encode())
    environ = {**aws.environ, **without_intercom(sandbox.env())}
    with pytest.raises(RunFailed) as caught:
        invoke(
            {"intercom_export_path": "exports/bad.csv"},
            Context(),
            environ,
            base=lambda_base(sandbox, config_dir),
        )
    assert caught.value.summary["exit_code"] == 2
    assert caught.value.summary["messages"][0] == (
        "Intercom export bad.csv, line 2: 2 cells where the header has 12"
    )
    assert aws.object_keys() == ["exports/bad.csv"]
