"""The ``health-score`` command as a user runs it: subcommands, help, exit codes, ``init``,
``.env``, the built-in default config, the legacy ``python -m src.main`` and the installed wheel."""

from __future__ import annotations

import argparse
import base64
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import requests

from health_score.cli import build_parser, main
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "raw_metrics.csv"


def hs(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m health_score ARGS`` in a fresh interpreter, as from a shell in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "health_score", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env if env is not None else {**os.environ, "PYTHONPATH": str(REPO / "src")},
    )


def test_version_and_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as version:
        main(["--version"])
    assert version.value.code == 0
    assert capsys.readouterr().out == "health-score 0.1.0\n"
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for command in ("run", "backfill", "backtest", "check-config", "sandbox", "dashboard", "init"):
        assert f"    {command}" in text
    assert "exit codes:" in text
    assert "health-score run --dry-run --demo" in text


def test_every_flag_of_every_command_has_help_text() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {
        "run",
        "backfill",
        "backtest",
        "suggest-weights",
        "check-config",
        "sandbox",
        "dashboard",
        "init",
        "mapping",
    }
    for name, command in sub.choices.items():
        for action in command._actions:
            if action.help == argparse.SUPPRESS:
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
    run_flags = {o for a in sub.choices["run"]._actions for o in a.option_strings}
    assert {
        "--dry-run",
        "--demo",
        "--accounts",
        "--from-raw",
        "--config-dir",
        "--period",
        "--output",
        "--runs-dir",
        "--allow-degraded",
        "-v",
        "-q",
    } <= run_flags


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as no_command:
        main([])
    assert no_command.value.code == 2
    with pytest.raises(SystemExit) as accounts:
        main(["run", "--dry-run", "--accounts", "5"])
    assert accounts.value.code == 2
    assert "--accounts only applies with --demo" in capsys.readouterr().err
    with pytest.raises(SystemExit) as both:
        main(["-v", "-q", "run", "--dry-run"])
    assert both.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_init_writes_a_starter_folder_that_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "myconfig"
    assert main(["init", str(target)]) == 0
    names = sorted(p.name for p in target.iterdir())
    assert names == [
        ".env.example",
        "account_mapping.csv",
        "sources.yaml",
        "thresholds.yaml",
        "weights.yaml",
    ]
    assert (target / "weights.yaml").read_bytes() == (REPO / "config" / "weights.yaml").read_bytes()
    assert "INTERCOM_API_TOKEN=" in (target / ".env.example").read_text(encoding="utf-8")
    assert f"health-score check-config --config-dir {target}" in capsys.readouterr().out

    (target / "weights.yaml").write_text("# mine\n", encoding="utf-8")
    assert main(["init", str(target)]) == 2
    err = capsys.readouterr().err
    assert "already has weights.yaml" in err and "nothing was written" in err
    assert (target / "weights.yaml").read_text(encoding="utf-8") == "# mine\n"
    assert main(["init", "--force", str(target)]) == 0
    assert (target / "weights.yaml").read_text(encoding="utf-8") != "# mine\n"

    a_file = tmp_path / "taken"
    a_file.write_text("x", encoding="utf-8")
    assert main(["init", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {a_file}") and "Traceback" not in err


def test_the_starter_folder_validates_once_accounts_are_mapped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "c"
    assert main(["init", str(target)]) == 0
    assert main(["check-config", "--config-dir", str(target)]) == 2
    assert "no accounts" in capsys.readouterr().err
    with (target / "account_mapping.csv").open("a", encoding="utf-8") as mapping:
        mapping.write("001000000000001AAA,,,Acme,paid,,\n")
    assert main(["check-config", "--config-dir", str(target)]) == 0
    assert "config OK" in capsys.readouterr().out


def test_from_any_folder_the_built_in_config_scores_a_raw_file(tmp_path: Path) -> None:
    result = hs("run", "--dry-run", "--from-raw", str(EXAMPLE), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "using the built-in default config" in result.stderr
    assert (tmp_path / "output" / "health_scores.csv").is_file()
    assert "Run folder: output/runs/" in result.stdout


def test_a_live_run_without_a_config_folder_says_how_to_make_one(tmp_path: Path) -> None:
    result = hs("run", "--dry-run", cwd=tmp_path)
    assert result.returncode == 2
    assert "no config folder" in result.stderr and "health-score init config" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "output").exists()
    check = hs("check-config", cwd=tmp_path)
    assert check.returncode == 2 and "health-score init config" in check.stderr


def test_quiet_hides_info_logs(tmp_path: Path) -> None:
    loud = hs("run", "--dry-run", "--from-raw", str(EXAMPLE), cwd=tmp_path)
    quiet = hs("-q", "run", "--dry-run", "--from-raw", str(EXAMPLE), cwd=tmp_path)
    assert loud.returncode == quiet.returncode == 0
    assert "INFO" in loud.stderr
    assert "INFO" not in quiet.stderr
    assert "Run folder:" in quiet.stdout  # the summary is still printed


def basic(user_and_token: bytes) -> str:
    return "Basic " + base64.b64encode(user_and_token).decode()


class _Recorder(BaseHTTPRequestHandler):
    """Answers 401 to everything and records each request's Authorization header."""

    seen: ClassVar[list[str]] = []

    def _reject(self) -> None:
        type(self).seen.append(self.headers.get("Authorization", ""))
        body = b'{"errorMessages":["unauthorized"]}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _reject

    def log_message(self, format: str, *args: object) -> None:  # keep pytest's output clean
        return


def test_dot_env_in_the_working_folder_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    """Jira credentials only in ./.env activate Jira; a variable already set wins over .env."""
    assert main(["init", str(tmp_path / "config")]) == 0
    with (tmp_path / "config" / "account_mapping.csv").open("a", encoding="utf-8") as mapping:
        mapping.write(",,,Acme,paid,ACME,Acme\n")  # Jira only: no Salesforce id
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JIRA_", "INTERCOM_", "LOOKER_", "SF_"))
    }
    env["PYTHONPATH"] = str(REPO / "src")
    without = hs("run", "--dry-run", cwd=tmp_path, env=env)
    assert without.returncode == 2 and "no source has credentials" in without.stderr

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        (tmp_path / ".env").write_text(
            f"JIRA_BASE_URL=http://127.0.0.1:{server.server_address[1]}\n"
            "JIRA_EMAIL=a@example.com\nJIRA_API_TOKEN=from-dotenv\n",
            encoding="utf-8",
        )
        from_file = hs("run", "--dry-run", cwd=tmp_path, env=env)
        assert "source jira        failed" in from_file.stdout, from_file.stderr
        assert from_file.returncode == 1
        assert (
            _Recorder.seen[-1] == "Basic " + base64.b64encode(b"a@example.com:from-dotenv").decode()
        )

        from_env = hs("run", "--dry-run", cwd=tmp_path, env={**env, "JIRA_API_TOKEN": "from-env"})
        assert from_env.returncode == 1
        assert _Recorder.seen[-1] == basic(b"a@example.com:from-env")
    finally:
        server.shutdown()
        server.server_close()


def test_lambda_never_imports_dotenv_or_the_cli() -> None:
    code = (
        "import sys, health_score.aws_lambda; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dotenv' "
        "or m in ('health_score.cli', 'health_score_sandbox')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_missing_extras_are_named_with_the_install_command(tmp_path: Path) -> None:
    for extra, module, argv in (
        ("sandbox", "trustme", ["run", "--dry-run", "--demo"]),
        ("sandbox", "trustme", ["sandbox", "serve", "--help"]),
        ("dashboard", "streamlit", ["dashboard"]),
    ):
        code = (
            f"import sys; sys.modules[{module!r}] = None; from health_score.cli import main; "
            f"sys.exit(main({argv!r}))"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, (argv, result.stderr)
        assert f"pip install 'health-score-middleware[{extra}]'" in result.stderr
        assert "Traceback" not in result.stderr


def test_sandbox_serve_help_names_the_new_command(tmp_path: Path) -> None:
    result = hs("sandbox", "serve", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: health-score sandbox serve")
    assert "--fault" in result.stdout and "--rate-limit" in result.stdout
    assert "looker:limit=N" in " ".join(result.stdout.split())


@pytest.mark.parametrize(
    "command",
    [["health_score", "run"], ["src.main"]],
    ids=["health-score run", "legacy python -m src.main"],
)
def test_the_example_file_scores_from_the_command_and_the_seeds_shim(
    tmp_path: Path, command: list[str]
) -> None:
    """The README's first command, and the seed document's ``python3 -m src.main --dry-run``
    (old flags included), from a checkout."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            *command,
            "--dry-run",
            "--from-raw",
            "examples/raw_metrics.csv",
            "--output",
            str(tmp_path / "s.csv"),
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "Healthy" in result.stdout
    with (tmp_path / "s.csv").open(encoding="utf-8") as scores:
        assert sum(1 for _ in scores) == 1 + 25  # header + the example's 25 accounts


def test_the_seeds_check_config_flag_still_works(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    check = subprocess.run(
        [sys.executable, "-m", "src.main", "--check-config", "--config-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert check.returncode == 2 and "weights.yaml" in check.stderr


def test_dashboard_command_serves_on_loopback(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "dashboard.log"
    with (
        log.open("wb") as output,
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "health_score",
                "dashboard",
                "--port",
                str(port),
                "--runs-dir",
                str(tmp_path / "runs"),
            ],
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO / "src"), "STREAMLIT_SERVER_HEADLESS": "1"},
        ) as process,
    ):
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    health = requests.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                    break
                except requests.ConnectionError:
                    assert process.poll() is None, log.read_text(encoding="utf-8")
                    assert time.monotonic() < deadline, "the dashboard did not start in 60 s"
                    time.sleep(0.3)
            assert health.status_code == 200 and health.text == "ok"
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert f"127.0.0.1:{port}" in log.read_text(encoding="utf-8")
    # The server is the process that was stopped (the command execs it): nothing is left serving.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)


@pytest.mark.slow
def test_the_wheel_installs_health_score_and_its_config_not_src(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("health_score_middleware-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = archive.read(entry_points).decode()
        metadata = archive.read(next(n for n in names if n.endswith("/METADATA"))).decode()
    tops = {n.split("/")[0] for n in names if not n.startswith("health_score_middleware-")}
    assert tops == {"health_score", "health_score_sandbox"}
    assert "health-score = health_score.cli:main" in scripts
    for name in (
        "weights.yaml",
        "thresholds.yaml",
        "sources.yaml",
        "account_mapping.csv",
        "env.example",
    ):
        assert f"health_score/defaults/{name}" in names
    assert "health_score/py.typed" in names
    assert "health_score/dashboard/app.py" in names
    for requirement in ("PyJWT", "python-dotenv", "pydantic"):
        assert f"Requires-Dist: {requirement}" in metadata
    assert "Requires-Dist: trustme" in metadata and 'extra == "sandbox"' in metadata
    for version in ("3.11", "3.12", "3.13"):
        assert f"Classifier: Programming Language :: Python :: {version}" in metadata


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", '"inf"', "nan", "'Infinity'", "1e999"])
def test_check_config_refuses_an_infinite_or_nan_timeout_naming_file_and_key(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "c"
    assert main(["init", str(target)]) == 0
    with (target / "account_mapping.csv").open("a", encoding="utf-8") as mapping:
        mapping.write("001000000000001AAA,,,Acme,paid,,\n")
    sources = target / "sources.yaml"
    text = sources.read_text(encoding="utf-8")
    text = text.replace(
        "intercom:\n", f"intercom:\n  http:\n    read_timeout_seconds: {value}\n", 1
    )
    sources.write_text(text + f"run:\n  budget_seconds: {value}\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["check-config", "--config-dir", str(target)]) == 2
    err = capsys.readouterr().err
    assert "sources.yaml: intercom.http.read_timeout_seconds: " in err
    assert "sources.yaml: run.budget_seconds: " in err
    assert err.count("expected a finite number") == 2
    assert "Traceback" not in err
