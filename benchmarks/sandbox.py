"""Benchmark: sustained requests per second each stand-in serves on loopback, zero latency.

The sandbox runs in its own process (``python -m health_score_sandbox serve``), as a vendor
would; this process drives each vendor in turn from several keep-alive client threads with a small,
representative authenticated request, and prints requests per second. Target: ≥ 500/s each.

    python benchmarks/sandbox.py [--seconds 3] [--threads 4]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from health_score_sandbox.salesforce import login as salesforce_login

REPO = Path(__file__).resolve().parents[1]


def start_sandbox(folder: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "health_score_sandbox",
            "serve",
            "--accounts",
            "250",
            "--mapping-dir",
            str(folder),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    env: dict[str, str] = {}
    assert process.stdout is not None
    for line in process.stdout:
        match = re.match(r"export (\w+)=(.*)", line.strip())
        if match:
            env[match[1]] = match[2].strip("'")
        if line.startswith("# then:"):
            return process, env
    raise SystemExit("the sandbox did not start")


def session_for(
    vendor: str, env: dict[str, str]
) -> tuple[requests.Session, Callable[[requests.Session], requests.Response]]:
    session = requests.Session()
    if vendor == "intercom":
        session.headers.update(
            {"Authorization": f"Bearer {env['INTERCOM_API_TOKEN']}", "Intercom-Version": "2.16"}
        )
        body = {
            "query": {"field": "created_at", "operator": ">", "value": 0},
            "pagination": {"per_page": 1},
        }
        url = f"{env['INTERCOM_BASE_URL']}/conversations/search"
        return session, lambda s: s.post(url, json=body, timeout=10)
    if vendor == "jira":
        session.auth = (env["JIRA_EMAIL"], env["JIRA_API_TOKEN"])
        url = f"{env['JIRA_BASE_URL']}/rest/api/3/search/jql"
        params = {"jql": "project = SUP", "maxResults": "1"}
        return session, lambda s: s.get(url, params=params, timeout=10)
    if vendor == "looker":
        base = f"{env['LOOKER_BASE_URL']}/api/4.0"
        token = session.post(
            f"{base}/login",
            data={
                "client_id": env["LOOKER_CLIENT_ID"],
                "client_secret": env["LOOKER_CLIENT_SECRET"],
            },
            timeout=10,
        ).json()["access_token"]
        session.headers["Authorization"] = f"token {token}"
        url = f"{base}/looks/104/run/json"
        return session, lambda s: s.get(url, params={"limit": "1"}, timeout=10)
    ca = env["SF_CA_BUNDLE"]
    instance_url, token = salesforce_login(session, env["SF_LOGIN_URL"], verify=ca)
    session.headers["Authorization"] = f"Bearer {token}"
    url = f"{instance_url}/services/data/v62.0/query"
    params = {"q": "SELECT Id FROM Account LIMIT 1"}
    return session, lambda s: s.get(url, params=params, timeout=10, verify=ca)


def measure(vendor: str, env: dict[str, str], seconds: float, threads: int) -> tuple[int, int]:
    counts = [0] * threads
    errors = [0] * threads
    stop = time.monotonic() + seconds

    def worker(index: int) -> None:
        session, call = session_for(vendor, env)
        with session:
            while time.monotonic() < stop:
                response = call(session)
                if response.status_code == 200:
                    counts[index] += 1
                else:
                    errors[index] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(counts), sum(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process, env = start_sandbox(Path(tmp))
        try:
            print(
                f"{args.threads} keep-alive client threads, {args.seconds:.0f} s per vendor, "
                "zero latency; target ≥ 500 requests/s each"
            )
            for vendor in ("intercom", "jira", "looker", "salesforce"):
                ok, failed = measure(vendor, env, args.seconds, args.threads)
                print(
                    f"  {vendor:<11} {ok / args.seconds:8.0f} requests/s"
                    + (f"  ({failed} non-200)" if failed else "")
                )
        finally:
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
