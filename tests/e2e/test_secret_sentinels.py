"""Sentinel secrets against echoing servers: none may reach an error, a run file or a log.

One loopback server plays every vendor badly: it answers Intercom's and Jira's calls with HTTP 400
quoting the request's headers back (``Authorization`` included: the configured token, Jira's Basic
credentials), and Looker's login with a valid token followed by junk (malformed JSON). The run
fails; its manifest, every file of its folder, its summary, its logs and the terminal must hold
no sentinel, while the quoted bodies show ``[redacted]`` where the secrets were.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from health_score.cli import main as cli_main
from tests.conftest import DEFAULT_CONFIG

INTERCOM_TOKEN = "SENTINEL-intercom-token-4f1c"
JIRA_TOKEN = "SENTINEL-jira-token-88e0"
LOOKER_ID = "SENTINEL-looker-id-51aa"
LOOKER_SECRET = "SENTINEL-looker-secret-a0b9"
LOOKER_SESSION = "SENTINEL-looker-session-7d2e"
SF_SECRET = "SENTINEL-salesforce-secret-3c3c"
JIRA_BASIC = base64.b64encode(f"ops@example.com:{JIRA_TOKEN}".encode()).decode()
SENTINELS = (INTERCOM_TOKEN, JIRA_TOKEN, LOOKER_ID, LOOKER_SECRET, LOOKER_SESSION, JIRA_BASIC)
SENTINELS += (SF_SECRET,)


class Echo(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        if self.path.endswith(("/login", "/oauth2/token")):
            # A token, then junk: the JSON is malformed, the token must not be quoted.
            text = json.dumps({"access_token": LOOKER_SESSION, "expires_in": 3600}) + "}junk"
            self._send(200, text)
            return
        echoed = "\n".join(f"{k}: {v}" for k, v in self.headers.items())
        self._send(400, f"Bad request. You sent:\n{echoed}\n{body}")

    def _send(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_no_sentinel_leaves_a_run_against_echoing_servers(
    echo: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    for name in ("weights.yaml", "thresholds.yaml", "sources.yaml"):
        shutil.copy(DEFAULT_CONFIG / name, config / name)
    (config / "account_mapping.csv").write_text(
        "sf_account_id,intercom_company_id,looker_customer_id,account_name,segment,"
        "jira_project_key,jira_component\n001000000000001AAA,c-1,l-1,Acme,paid,ACME,Acme\n",
        encoding="utf-8",
    )
    for name in [
        n for n in list(os.environ) if n.startswith(("INTERCOM_", "JIRA_", "LOOKER_", "SF_"))
    ]:
        monkeypatch.delenv(name)
    env = {
        "INTERCOM_API_TOKEN": INTERCOM_TOKEN,
        "INTERCOM_BASE_URL": echo,
        "JIRA_BASE_URL": echo,
        "JIRA_EMAIL": "ops@example.com",
        "JIRA_API_TOKEN": JIRA_TOKEN,
        "LOOKER_BASE_URL": echo,
        "LOOKER_CLIENT_ID": LOOKER_ID,
        "LOOKER_CLIENT_SECRET": LOOKER_SECRET,
        "SF_LOGIN_URL": echo,
        "SF_CLIENT_ID": "3MVG9-sentinel-client-id",
        "SF_CLIENT_SECRET": SF_SECRET,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.DEBUG)
    runs = tmp_path / "runs"
    code = cli_main(
        [
            "run",
            "--dry-run",
            "--config-dir",
            str(config),
            "--runs-dir",
            str(runs),
            "--output",
            str(tmp_path / "out.csv"),
            "--period",
            "2026-11",
        ]
    )
    assert code == 1  # every source failed
    (folder,) = runs.iterdir()
    manifest = json.loads((folder / "manifest.json").read_text())
    errors = {name: report["error"] for name, report in manifest["sources"].items()}
    # The bodies were quoted, with the secrets taken out.
    assert "[redacted]" in errors["intercom"] and "HTTP 400" in errors["intercom"]
    assert "[redacted]" in errors["jira"]
    assert "malformed JSON in the login answer" in errors["looker"]
    assert errors["salesforce"]  # its login answer was junk too
    terminal = capsys.readouterr()
    places = {"stdout": terminal.out, "stderr": terminal.err, "logs": caplog.text}
    places["records"] = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    for path in folder.rglob("*"):
        if path.is_file():
            places[str(path)] = path.read_bytes().decode("utf-8", "replace")
    leaks = [(s, where) for where, text in places.items() for s in SENTINELS if s in text]
    assert leaks == []
