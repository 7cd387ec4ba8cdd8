"""A stand-in for a Slack incoming webhook: records every message it accepts.

``POST /services/<team>/<bot>/<secret>`` with a JSON body holding ``text`` (and optionally
``blocks``) answers ``200 ok`` as Slack does (plain text); the wrong secret answers
``403 invalid_token``, a body that is not a JSON object with text ``400 invalid_payload``, any
other path ``404 no_service``. :attr:`SlackApp.messages` holds the accepted bodies in order;
the shared server's faults (``storm_429`` with ``Retry-After``, ``always_503``…) apply as for
every vendor.
"""

from __future__ import annotations

import json
import secrets
import threading
from typing import Any

from health_score_sandbox.server import Request, Response, VendorApp

#: The variable the pipeline reads the webhook URL from.
WEBHOOK_ENV = "SLACK_WEBHOOK_URL"


class SlackApp(VendorApp):
    name = "slack"

    def __init__(self, secret: str | None = None) -> None:
        super().__init__()
        self.secret = secret or secrets.token_hex(12)
        self.path = f"/services/T0SANDBOX/B0SANDBOX/{self.secret}"
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def endpoint_label(self, request: Request) -> str:
        return f"{request.method} /services/…"  # the secret never reaches the stats

    def error(self, status: int, code: str, message: str) -> Response:
        return Response(status, code, content_type="text/plain")

    def too_many_requests(self, retry_after: float, reset_epoch: float) -> Response:
        return Response(
            429, "rate_limited", {"Retry-After": f"{retry_after:.0f}"}, content_type="text/plain"
        )

    def handle(self, request: Request) -> Response:
        if request.method != "POST" or not request.path.startswith("/services/"):
            return self.error(404, "no_service", "")
        if request.path != self.path:
            return self.error(403, "invalid_token", "")
        try:
            body = json.loads(request.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return self.error(400, "invalid_payload", "")
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return self.error(400, "invalid_payload", "")
        with self._lock:
            self.messages.append(body)
        return Response(200, "ok", content_type="text/plain")


def environment(url: str, secret_path: str) -> dict[str, str]:
    return {WEBHOOK_ENV: f"{url}{secret_path}"}
