"""Shared helpers for the Lambda tests: fake AWS (moto), a loopback Rollbar, JSON log lines."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from health_score.logging_setup import JsonHandler

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"
RAW = REPO / "examples" / "raw_metrics.csv"
REGION = "eu-west-1"
BUCKET = "hsm-lambda-test"
PREFIX = "runs"


@dataclass
class Context:
    """What the Lambda runtime passes as ``context`` (the attributes the handler reads)."""

    aws_request_id: str = "req-0001"
    function_name: str = "health-score-test"


@dataclass
class Aws:
    s3: Any
    secretsmanager: Any
    environ: dict[str, str]

    def object_keys(self, prefix: str = "") -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def body(self, key: str) -> bytes:
        data: bytes = self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        return data


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """moto S3 + Secrets Manager with the artifact bucket, and the function's environment."""
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        environ = {
            "AWS_DEFAULT_REGION": REGION,
            "ARTIFACT_BUCKET": BUCKET,
            "ARTIFACT_PREFIX": PREFIX,
            "LOG_LEVEL": "INFO",
        }
        yield Aws(s3, boto3.client("secretsmanager"), environ)


@pytest.fixture(autouse=True)
def remove_json_handler() -> Iterator[None]:
    """The handler installs a root JSON handler (as on Lambda); take it away after each test."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, JsonHandler):
            root.removeHandler(handler)
            handler.close()


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line must be one JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass
class RollbarServer:
    url: str
    items: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)


@pytest.fixture
def rollbar_server() -> Iterator[RollbarServer]:
    """A loopback stand-in for api.rollbar.com that records every item posted to it."""
    received: RollbarServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length)
            received.raw.append(data)
            received.items.append(json.loads(data))
            received.tokens.append(self.headers.get("X-Rollbar-Access-Token", ""))
            reply = b'{"err": 0, "result": {"id": null, "uuid": "00000000"}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received = RollbarServer(f"http://127.0.0.1:{server.server_address[1]}/api/1/")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
