"""The sandbox as a whole: deterministic portfolios and the ``serve`` command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import requests

from health_score_sandbox.sandbox import Sandbox
from tests.conftest import REPO


def test_the_same_seed_gives_a_byte_identical_portfolio() -> None:
    first, second, other = Sandbox(60, seed=11), Sandbox(60, seed=11), Sandbox(60, seed=12)
    try:
        assert first.portfolio.mapping_csv() == second.portfolio.mapping_csv()
        assert first.expected_metrics() == second.expected_metrics()
        assert first.minimum_requests() == second.minimum_requests()
        assert first.portfolio.mapping_csv() != other.portfolio.mapping_csv()
    finally:
        for sandbox in (first, second, other):
            sandbox.close()


def test_every_tier_and_every_kind_of_gap_is_in_the_default_portfolio() -> None:
    sandbox = Sandbox()
    try:
        accounts = sandbox.portfolio.accounts
        assert len(accounts) == 250
        paid = sum(a.segment == "paid" for a in accounts) / len(accounts)
        assert 0.3 < paid < 0.5
        assert all(len(a.sf_account_id) == 18 for a in accounts if a.sf_account_id)
        profiles = sandbox.portfolio.profiles
        assert 0.05 < sum(bool(p.churn_signals) for p in profiles) / len(profiles) < 0.2
        for source in ("intercom", "jira", "looker", "salesforce"):
            absent = sum(not p.has(source) for p in profiles) / len(profiles)
            assert 0.04 < absent < 0.2, source
    finally:
        sandbox.close()


def test_serve_prints_exports_that_reach_vendor_shaped_json(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "health_score_sandbox",
            "serve",
            "--accounts",
            "30",
            "--mapping-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        env: dict[str, str] = {}
        assert process.stdout is not None
        for line in process.stdout:
            if match := re.match(r"export (\w+)=(.*)", line.strip()):
                env[match[1]] = match[2].strip("'")
            if line.startswith("# then:"):
                break
        assert (tmp_path / "account_mapping.csv").read_text().count("\n") == 31
        jira = requests.get(
            f"{env['JIRA_BASE_URL']}/rest/api/3/search/jql",
            params={"jql": "project = SUP", "maxResults": "2", "fields": "priority"},
            auth=(env["JIRA_EMAIL"], env["JIRA_API_TOKEN"]),
            timeout=10,
        )
        assert jira.status_code == 200
        body = jira.json()
        assert set(body) >= {"issues", "isLast"}
        gone = requests.get(
            f"{env['JIRA_BASE_URL']}/rest/api/3/search",
            params={"jql": "project = SUP"},
            auth=(env["JIRA_EMAIL"], env["JIRA_API_TOKEN"]),
            timeout=10,
        )
        assert gone.status_code == 410
        stats = requests.get(f"{env['JIRA_BASE_URL']}/__sandbox/stats", timeout=10).json()
        assert stats["total"] == 2
        unauthorised = requests.post(
            f"{env['INTERCOM_BASE_URL']}/conversations/search",
            json={},
            headers={"Intercom-Version": "2.16"},
            timeout=10,
        )
        assert unauthorised.status_code == 401
        assert unauthorised.json()["type"] == "error.list"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
