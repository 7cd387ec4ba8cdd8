"""The whole pipeline against the sandbox's real servers: extraction → scoring → files → write-back.

One sandbox (120 accounts) serves the module; tests that break a vendor restore it afterwards.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from health_score.cli import main as cli_main
from health_score.pipeline import RunOptions, RunSummary, run, score_and_write
from health_score.records import AccountInput
from health_score.scoring.composite import Model
from health_score_sandbox.sandbox import Sandbox
from health_score_sandbox.server import Faults
from tests.conftest import DEFAULT_CONFIG, sandbox_config
from tests.explanation_support import metric_rows

ACCOUNTS = 120


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(ACCOUNTS, seed=3) as sb:
        yield sb


def _fail_fast(sources: dict[str, Any]) -> None:
    # A failing source should fail fast here: two attempts within a short budget.
    for section in sources.values():
        section.setdefault("http", {}).update(attempts=2, budget_seconds=5)


@pytest.fixture
def config_dir(tmp_path: Path, sandbox: Sandbox) -> Path:
    return sandbox_config(tmp_path / "config", sandbox, _fail_fast)


def go(sandbox: Sandbox, config_dir: Path, tmp_path: Path, **options: Any) -> RunSummary:
    as_of = sandbox.portfolio.as_of
    defaults: dict[str, Any] = {
        "config_dir": config_dir,
        "env": sandbox.env(),
        "output": tmp_path / "scores.csv",
        "runs_dir": str(tmp_path / "runs"),
        "period": "2026-11",
        "as_of": datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC),
        "now": datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC),  # the sandbox's date
    }
    return run(RunOptions(**{**defaults, **options}))


def dry_run_cli(config_dir: Path, tmp_path: Path) -> int:
    """``health-score run --dry-run`` on a config folder, outputs under tmp_path."""
    return cli_main(
        [
            "run",
            "--dry-run",
            "--config-dir",
            str(config_dir),
            "--output",
            str(tmp_path / "s.csv"),
            "--runs-dir",
            str(tmp_path / "runs"),
        ]
    )


def manifest_of(summary: RunSummary) -> dict[str, Any]:
    assert summary.run_location is not None
    return json.loads((Path(summary.run_location) / "manifest.json").read_text())


def write_requests(sandbox: Sandbox) -> int:
    stats = sandbox.servers["salesforce"].stats
    return sum(n for label, n in stats.items() if "/jobs/ingest" in label or "/composite" in label)


def test_a_dry_run_extracts_every_source_and_matches_the_expected_metrics(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    sandbox.reset_stats()
    summary = go(sandbox, config_dir, tmp_path)
    assert summary.exit_code == 0 and summary.status == "ok"
    assert {n: r.status for n, r in summary.sources.items()} == dict.fromkeys(
        ("intercom", "jira", "looker", "salesforce"), "ok"
    )
    # The run's raw.csv holds exactly what the sandbox says a correct extraction yields.
    expected = sandbox.expected_metrics()
    with (Path(summary.run_location or "") / "raw.csv").open() as handle:
        rows = {r["account_id"]: r for r in csv.DictReader(handle)}
    assert set(rows) == set(expected)
    for account_id, metrics in expected.items():
        for metric, value in metrics.items():
            cell = rows[account_id][metric]
            assert (Decimal(cell) if cell else None) == value, (account_id, metric)
    signals = sandbox.data["salesforce"].expected_signals
    for account_id, counts in signals.items():
        assert int(rows[account_id]["critical_count"]) == counts.critical
        assert int(rows[account_id]["critical_confirmed"]) == counts.critical_confirmed
    # A dry run never writes to Salesforce.
    assert write_requests(sandbox) == 0
    manifest = manifest_of(summary)
    assert manifest["sources"]["looker"]["requests"] == sandbox.requests("looker")
    assert manifest["writeback"] == {"status": "skipped", "reason": "dry run"}


def test_calls_scale_with_data_not_accounts(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    sandbox.reset_stats()
    summary = go(sandbox, config_dir, tmp_path)
    minimum = sandbox.minimum_requests()
    total = sum(sandbox.requests(name) for name in minimum)
    assert total <= 1.2 * sum(minimum.values()) + 4, (sandbox.stats(), minimum)
    # Looker: 1 login + 4 Looks × 2 (the saved query read, then run for the period).
    assert summary.sources["looker"].requests == minimum["looker"] == 1 + 4 * 2


def test_one_source_down_degrades_the_run_and_keeps_the_others(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    jira = sandbox.servers["jira"]
    current = tmp_path / "scores.csv"
    current.write_text("the last ok run's scores\n", encoding="utf-8")
    jira.stop()
    try:
        sandbox.reset_stats()
        summary = go(sandbox, config_dir, tmp_path, dry_run=False)
    finally:
        jira.start()
    assert summary.status == "degraded"
    assert summary.exit_code == 1
    assert summary.sources["jira"].status == "failed"
    assert "jira" in (summary.sources["jira"].error or "")
    assert any("refused" in m and "--allow-degraded" in m for m in summary.messages)
    assert write_requests(sandbox) == 0
    # Jira's metrics are unavailable, the others intact.
    detail = metric_rows(Path(summary.run_location or ""))
    status = {(r["account_id"], r["metric"]): r["status"] for r in detail}
    expected = sandbox.expected_metrics()
    some = next(a for a, m in expected.items() if m.get("open_bugs_total") is not None)
    assert status[(some, "open_bugs_total")] == "unavailable"
    assert status[(some, "p1_p2_volume")] in {"scored", "missing"}
    assert manifest_of(summary)["status"] == "degraded"
    # The current results stay: a degraded run never replaces them (its scores are in its folder).
    assert current.read_text(encoding="utf-8") == "the last ok run's scores\n"
    assert summary.output is None and manifest_of(summary)["output"] is None
    assert any(
        f"{current} was not replaced because the run is degraded" in m for m in summary.messages
    )
    assert (Path(summary.run_location or "") / "scores.csv").is_file()
    # A degraded run still says what changed (here: against no earlier ok run).
    assert (Path(summary.run_location or "") / "changes.csv").is_file()


def test_a_look_reaching_its_row_limit_degrades_the_run_and_names_the_look(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    sources = yaml.safe_load((config_dir / "sources.yaml").read_text())
    integrations = next(look for look in sources["looker"]["looks"] if look["id"] == "103")
    integrations["limit"] = 100
    (config_dir / "sources.yaml").write_text(yaml.safe_dump(sources))
    rows = sandbox.data["looker"].looks["103"]
    assert len(rows) > 100
    last = rows[99]["integrations.customer_id"]  # the Look is in customer order

    summary = go(sandbox, config_dir, tmp_path, dry_run=False)

    assert summary.status == "degraded" and summary.exit_code == 1
    assert summary.sources["looker"].status == "degraded"
    assert {n: r.status for n, r in summary.sources.items() if n != "looker"} == dict.fromkeys(
        ("intercom", "jira", "salesforce"), "ok"
    )
    manifest = manifest_of(summary)
    assert manifest["status"] == "degraded"
    assert manifest["sources"]["looker"]["status"] == "degraded"
    (note,) = [n for n in manifest["sources"]["looker"]["notes"] if "row limit" in n]
    assert note.startswith(
        "Look 103 (integrations) reached its row limit, its configured limit of 100 rows: "
        "results are truncated"
    )
    assert f"beyond customer {last} " in note
    assert manifest["writeback"]["status"] == "refused"
    assert write_requests(sandbox) == 0
    # Beyond the cut the Look's metric is unavailable (not missing, not 0); before it, as usual.
    status = {
        (r["account_id"], r["metric"]): r["status"]
        for r in metric_rows(Path(summary.run_location or ""))
        if r["metric"] == "active_integrations"
    }
    beyond = before = 0
    for profile in sandbox.portfolio.profiles:
        customer = profile.account.looker_customer_id
        got = status[(profile.account_id, "active_integrations")]
        if customer is not None and customer >= last:
            assert got == "unavailable", profile.account_id
            beyond += 1
        elif customer is not None and profile.has("looker"):
            assert got == "scored", profile.account_id
            before += 1
    assert beyond > 0 and before > 0


def test_allow_degraded_writes_what_it_has(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    looker = sandbox.servers["looker"]
    looker.faults.always_503 = True
    try:
        summary = go(
            sandbox, config_dir, tmp_path, dry_run=False, allow_degraded=True, period="2031-01"
        )
    finally:
        looker.faults.always_503 = False
    assert summary.status == "degraded"
    assert summary.writeback is not None and summary.writeback["status"] == "ok"
    assert summary.exit_code == 0
    assert summary.output == str(tmp_path / "scores.csv")  # --allow-degraded: acted on, replaced
    assert (tmp_path / "scores.csv").is_file()


def test_every_source_down_fails_the_run(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    for server in sandbox.servers.values():
        server.faults.always_503 = True
    try:
        summary = go(sandbox, config_dir, tmp_path, period="2031-02")
    finally:
        for server in sandbox.servers.values():
            server.faults.always_503 = False
    assert summary.status == "failed"
    assert summary.exit_code == 1
    assert manifest_of(summary)["status"] == "failed"
    # A failed run's scores are not compared with anything.
    assert manifest_of(summary)["compared_with"] is None
    assert not (Path(summary.run_location or "") / "changes.csv").exists()


def test_rerunning_a_period_updates_instead_of_duplicating(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    first = go(sandbox, config_dir, tmp_path / "1", dry_run=False, period="2030-05")
    second = go(sandbox, config_dir, tmp_path / "2", dry_run=False, period="2030-05")
    assert first.exit_code == 0 and second.exit_code == 0
    records = sandbox.servers["salesforce"].app.writes.records["Health_Score__c"]  # type: ignore[attr-defined]
    keys = [k for k in records if k.endswith("-2030-05")]
    with_sf = [a for a in sandbox.portfolio.accounts if a.sf_account_id]
    assert len(keys) == len(with_sf)
    assert second.writeback is not None
    assert (second.writeback["created"], second.writeback["updated"]) == (0, len(with_sf))


def test_no_credentials_exits_2_and_points_at_the_demo(
    sandbox: Sandbox,
    config_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "INTERCOM_API_TOKEN",
        "JIRA_API_TOKEN",
        "LOOKER_CLIENT_ID",
        "SF_CLIENT_ID",
        "SF_USERNAME",
    ):
        monkeypatch.delenv(name, raising=False)
    code = dry_run_cli(config_dir, tmp_path)
    assert code == 2
    assert "health-score run --dry-run --demo" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_mapped_source_without_credentials_is_an_error_naming_the_variables(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before: Jira and Salesforce were "inactive", their weight went to the others, status ok.
    env = {k: v for k, v in sandbox.env().items() if k not in ("JIRA_EMAIL", "SF_CLIENT_SECRET")}
    summary = go(sandbox, config_dir, tmp_path, env=env)
    assert (summary.exit_code, summary.run_location) == (2, None)
    message = summary.messages[0]
    assert "jira: the mapping ties" in message and "set JIRA_EMAIL, or set" in message
    assert "salesforce: the mapping ties" in message
    assert "set SF_CLIENT_SECRET (for the client credentials login)" in message
    assert not (tmp_path / "runs").exists()


def test_a_misspelt_variable_is_named_with_the_closest_known_one(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in sandbox.env().items() if k != "INTERCOM_API_TOKEN"}
    env["INTERCOM_TOKEN"] = sandbox.env()["INTERCOM_API_TOKEN"]
    env["SF_CLIENTID"] = "x"
    summary = go(sandbox, config_dir, tmp_path, env=env)
    assert summary.exit_code == 2
    message = summary.messages[0]
    assert "set INTERCOM_API_TOKEN, or set" in message
    assert "INTERCOM_TOKEN is not a variable this tool reads: did you mean INTERCOM_API_TOKEN?" in (
        message
    )
    assert "SF_CLIENTID is not a variable this tool reads: did you mean SF_CLIENT_ID?" in message


def test_a_source_disabled_by_config_runs_degraded_with_its_metrics_unavailable(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    sources = yaml.safe_load((config_dir / "sources.yaml").read_text())
    sources["jira"]["enabled"] = False
    (config_dir / "sources.yaml").write_text(yaml.safe_dump(sources))
    env = {k: v for k, v in sandbox.env().items() if not k.startswith("JIRA_")}
    summary = go(sandbox, config_dir, tmp_path, env=env)
    assert summary.status == "degraded" and summary.exit_code == 0
    report = manifest_of(summary)["sources"]["jira"]
    assert report["status"] == "disabled"
    assert report["notes"] == [
        "disabled by config (sources.yaml: jira.enabled: false); its weighted metrics are "
        "unavailable: open_bugs_p1_p2, open_bugs_total"
    ]
    rows = metric_rows(Path(summary.run_location or ""))
    jira = {r["status"] for r in rows if r["metric"] in ("open_bugs_p1_p2", "open_bugs_total")}
    assert jira == {"unavailable"}


def test_one_account_failing_never_stops_the_others(tmp_path: Path) -> None:
    """An account the model cannot score (here: a segment without thresholds) is listed."""
    import dataclasses

    from health_score.config import load_scoring_config
    from health_score.loaders.artifacts import LocalRunStore
    from health_score.rawfile import read_raw

    config = load_scoring_config(DEFAULT_CONFIG)
    accounts = list(
        read_raw(DEFAULT_CONFIG.parent / "examples" / "raw_metrics.csv", config).accounts
    )
    accounts[3] = dataclasses.replace(accounts[3], segment="gold")
    writer = LocalRunStore(tmp_path).create_run("r1")
    batch = score_and_write(writer, accounts, Model(config))
    assert len(batch.rows) == len(accounts) - 1
    assert accounts[3].account_id not in {row[0] for row in batch.rows}
    assert batch.failures == [{"account_id": accounts[3].account_id, "error": "KeyError: 'gold'"}]
    assert [r["account_id"] for r in metric_rows(tmp_path / "r1")].count(
        accounts[4].account_id
    ) == sum(len(d.metrics) for d in config.dimensions.values())
    assert accounts[3].account_id not in {r["account_id"] for r in metric_rows(tmp_path / "r1")}


def test_the_demo_command_runs_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(
        [
            "run",
            "--dry-run",
            "--demo",
            "--accounts",
            "40",
            "--output",
            str(tmp_path / "s.csv"),
            "--runs-dir",
            str(tmp_path / "runs"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "source salesforce  ok" in out
    assert "Run folder:" in out
    with (tmp_path / "s.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 40


def test_scores_of_a_raw_file_are_written_back_for_salesforce_ids(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    from health_score.rawfile import raw_header, raw_rows

    expected = sandbox.expected_metrics()
    chosen = [a for a in sandbox.portfolio.accounts if a.sf_account_id][:5]
    inputs = [
        AccountInput(a.account_id, a.account_name, a.segment, expected[a.account_id])
        for a in chosen
    ]
    inputs.append(AccountInput("acct-x", "No Salesforce id", "paid", {"p1_p2_volume": Decimal(1)}))
    metrics = list(next(iter(expected.values())))
    raw = tmp_path / "raw.csv"
    with raw.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(raw_header(metrics))
        writer.writerows(raw_rows(inputs, metrics))
    summary = run(
        RunOptions(
            config_dir=DEFAULT_CONFIG,
            from_raw=raw,
            dry_run=False,
            env=sandbox.env(),
            period="2029-03",
            now=datetime(2029, 4, 2, tzinfo=UTC),  # a month not ended yet would be refused
            output=tmp_path / "s.csv",
            runs_dir=str(tmp_path / "runs"),
        )
    )
    assert summary.exit_code == 0, summary.messages
    assert summary.writeback is not None
    assert summary.writeback["written"] == 5
    assert summary.writeback["skipped_without_salesforce_id"] == ["acct-x"]
    records = sandbox.servers["salesforce"].app.writes.records["Health_Score__c"]  # type: ignore[attr-defined]
    assert sum(k.endswith("-2029-03") for k in records) == 5


def test_records_salesforce_refuses_fail_the_run_after_everything_else_is_written(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    from health_score.loaders.salesforce import external_key

    writes = sandbox.servers["salesforce"].app.writes  # type: ignore[attr-defined]
    accounts = [a for a in sandbox.portfolio.accounts if a.sf_account_id]
    stuck = accounts[0]
    # Locked on every attempt: the one retry of a transient error cannot save it.
    writes.lock_rows({external_key(stuck.sf_account_id or "", "2030-09"): 5})
    summary = go(sandbox, config_dir, tmp_path, dry_run=False, period="2030-09")
    assert summary.exit_code == 1
    assert summary.status == "ok"  # extraction was fine; the write is what failed
    manifest = manifest_of(summary)
    assert manifest["writeback"]["status"] == "failed"
    (failure,) = manifest["writeback"]["failures"]
    assert failure["account_id"] == stuck.account_id
    assert failure["error_code"] == "UNABLE_TO_LOCK_ROW"
    written = [k for k in writes.records["Health_Score__c"] if k.endswith("-2030-09")]
    assert len(written) == len(accounts) - 1
    assert any("write-back failed" in m for m in summary.messages)


def test_an_empty_mapping_stops_with_exit_2(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mapping = config_dir / "account_mapping.csv"
    mapping.write_text(mapping.read_text().splitlines()[0] + "\n")
    code = dry_run_cli(config_dir, tmp_path)
    assert code == 2
    assert "account_mapping.csv: no accounts" in capsys.readouterr().err


def test_each_config_file_is_read_once_and_the_manifest_hashes_the_copied_bytes(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bytes parsed are the bytes hashed into the manifest and copied into the run folder."""
    reads: dict[str, int] = {}
    real_open = Path.open

    def count(path: Path) -> None:
        if path.parent == config_dir and path.exists():
            reads[path.name] = reads.get(path.name, 0) + 1

    def open_(self: Path, *args: Any, **kwargs: Any) -> Any:
        count(self)
        return real_open(self, *args, **kwargs)

    alerts = (DEFAULT_CONFIG / "alerts.yaml").read_bytes()
    (config_dir / "alerts.yaml").write_bytes(alerts)
    monkeypatch.setattr(Path, "open", open_)  # read_bytes and read_text open through it
    summary = go(sandbox, config_dir, tmp_path, dry_run=True)
    monkeypatch.undo()
    assert summary.exit_code == 0
    assert reads == {
        "weights.yaml": 1,
        "thresholds.yaml": 1,
        "sources.yaml": 1,
        "account_mapping.csv": 1,
        "alerts.yaml": 1,
    }
    folder = Path(summary.run_location or "")
    assert (folder / "config" / "alerts.yaml").read_bytes() == alerts
    digest = hashlib.sha256()
    for name in ("weights.yaml", "thresholds.yaml", "sources.yaml", "account_mapping.csv"):
        data = (folder / "config" / name) if name != "account_mapping.csv" else config_dir / name
        digest.update(name.encode() + b"\0" + data.read_bytes() + b"\0")
    assert manifest_of(summary)["config_sha256"] == digest.hexdigest()


@pytest.mark.parametrize(
    "where", ["output-is-a-folder", "runs-dir-is-a-file", "output-under-a-file"]
)
def test_unusable_destinations_stop_the_run_before_any_vendor_is_called(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path, where: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    options: dict[str, Any] = {
        "output-is-a-folder": {"output": tmp_path},
        "runs-dir-is-a-file": {"runs_dir": str(blocker)},
        "output-under-a-file": {"output": blocker / "scores.csv"},
    }[where]
    sandbox.reset_stats()
    summary = go(sandbox, config_dir, tmp_path, **options)
    assert (summary.exit_code, summary.status, summary.run_id) == (2, "failed", None)
    expected = {
        "output-is-a-folder": f"--output {tmp_path} is a folder; give a file path such as "
        f"{tmp_path / 'health_scores.csv'}",
        "runs-dir-is-a-file": f"--runs-dir {blocker}: {blocker} is a file, not a folder",
        "output-under-a-file": f"--output {blocker / 'scores.csv'}: {blocker} is a file, "
        "not a folder",
    }[where]
    assert summary.messages == (expected,)
    assert [sandbox.requests(name) for name in sandbox.servers] == [0, 0, 0, 0]  # no vendor called
    assert not (tmp_path / "runs").exists()  # and no half-written run folder


def test_a_hidden_churn_signal_object_degrades_the_run_and_refuses_the_write(
    tmp_path: Path,
) -> None:
    """``--fault salesforce:hide=Churn_Signal__c``: caps cannot be applied, so nothing is
    written to Salesforce without --allow-degraded (was: status ok, no caps, written)."""
    faults = {"salesforce": Faults(hidden_objects=["Churn_Signal__c", "Payment__c"])}
    with Sandbox(12, seed=5, faults=faults) as hidden:
        config = tmp_path / "config"
        config.mkdir()
        for name in ("weights.yaml", "thresholds.yaml", "sources.yaml"):
            shutil.copy(DEFAULT_CONFIG / name, config / name)
        hidden.write_mapping(config / "account_mapping.csv")
        hidden.reset_stats()
        summary = go(hidden, config, tmp_path, dry_run=False)
        assert write_requests(hidden) == 0
    assert (summary.status, summary.exit_code) == ("degraded", 1)
    report = summary.sources["salesforce"]
    assert report.status == "degraded"
    assert any(
        "Churn_Signal__c cannot be read" in n and "caps cannot be applied" in n
        for n in report.notes
    )
    assert any("refused" in m for m in summary.messages)
    rows = metric_rows(Path(summary.run_location or ""))
    assert {r["status"] for r in rows if r["metric"] == "payment_health"} == {"unavailable"}


NAMES = ("Mollie's", "Villa D'Este", 'Café "Zürich", Ltd.', "Back\\slash & Co", "東京 株式会社")


def test_account_names_with_quotes_and_unicode_run_and_never_reach_a_soql_query(
    sandbox: Sandbox, config_dir: Path, tmp_path: Path
) -> None:
    mapping = config_dir / "account_mapping.csv"
    with mapping.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row, name in zip(rows, NAMES, strict=False):
        row["account_name"] = name
    with mapping.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    app = sandbox.servers["salesforce"].app
    app.queries.clear()
    summary = go(sandbox, config_dir, tmp_path, dry_run=True)
    assert summary.exit_code == 0 and summary.status == "ok"
    with (tmp_path / "scores.csv").open(encoding="utf-8") as handle:
        scores = {r["account_id"]: r["account_name"] for r in csv.DictReader(handle)}
    renamed = {row["sf_account_id"]: name for row, name in zip(rows, NAMES, strict=False)}
    assert {a: scores[a] for a in renamed} == renamed
    assert len(app.queries) >= 5  # Account and the four aggregates, at least
    for soql in app.queries:
        for name in NAMES:
            # neither as written nor as a SOQL literal would escape it
            assert name not in soql and name.replace("'", "\\'") not in soql, soql[:200]
        assert "Mollie" not in soql and "Este" not in soql


def test_check_config_notes_missing_credentials_and_misspelt_names(
    config_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith(("INTERCOM_", "JIRA_", "LOOKER_", "SF_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("INTERCOM_TOKEN", "x")
    assert cli_main(["check-config", "--config-dir", str(config_dir)]) == 0
    err = capsys.readouterr().err
    assert "note: intercom: the mapping ties" in err
    assert "note: INTERCOM_TOKEN is not a variable this tool reads: did you mean " in err
