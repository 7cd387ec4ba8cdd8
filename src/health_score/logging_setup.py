"""Structured logging for the Lambda: one JSON object per line, and Rollbar reporting.

- ``configure(level, masked)`` replaces the root handlers with one that writes JSON lines to
  stdout (CloudWatch Logs keeps each line as an event; Logs Insights reads the fields). Every line
  carries ``time``, ``level``, ``logger``, ``message`` and the invocation's ``request_id``; fields
  passed with ``extra={"fields": {...}}`` are added at the top level.
- Any value in ``masked`` (the credentials of this run) is replaced by ``[redacted]`` in every
  line, and so is any token-like text :func:`health_score.redact.redact` finds, as a last line
  of defence: the pipeline itself never logs credentials.
- ``Rollbar`` reports failed and degraded runs when ``ROLLBAR_ACCESS_TOKEN`` is set; the
  ``rollbar`` package is optional and imported only then. Reports carry no local variables and
  scrub credential-named fields.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TextIO

from health_score.redact import REDACTED, Masker, redact

__all__ = [
    "MASK",
    "JsonFormatter",
    "JsonHandler",
    "Masker",
    "RedactingFormatter",
    "Rollbar",
    "configure",
    "metrics_line",
]

MASK = REDACTED
#: Libraries whose DEBUG records carry request and response bodies (botocore logs the body of
#: GetSecretValue, i.e. every credential): never below INFO, whatever LOG_LEVEL says.
QUIET_LIBRARIES = ("botocore", "boto3", "s3transfer", "urllib3", "requests", "rollbar", "zeep")
METRICS_NAMESPACE = "HealthScoreMiddleware"

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


class RedactingFormatter(logging.Formatter):
    """A text formatter whose lines pass through :func:`health_score.redact.redact` (the CLI)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def __init__(self, masker: Masker, static: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.masker = masker
        self.static: dict[str, Any] = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **self.static,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            line.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return redact(self.masker(json.dumps(line, default=str, ensure_ascii=False)))


class JsonHandler(logging.Handler):
    """Writes each formatted record as a line to ``stream`` (default: the current stdout).

    ``sys.stdout`` is looked up on every record, so a replaced stdout (a test's capture, a
    runtime's redirection) is honoured.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = self.stream if self.stream is not None else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def configure(
    level: str = "INFO",
    masked: Iterable[str] = (),
    *,
    static: Mapping[str, Any] | None = None,
    stream: TextIO | None = None,
    replace_all: bool = False,
) -> Masker:
    """Route log records through one JSON-lines handler on the root logger; returns its masker.

    A handler installed by an earlier call (a warm start) is replaced. ``replace_all`` also
    removes every other root handler — on Lambda, the runtime's own text handler, so each record
    is written once, as JSON.
    """
    masker = Masker(masked, mask=MASK)
    handler = JsonHandler(stream)
    handler.setFormatter(JsonFormatter(masker, static))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if replace_all or isinstance(existing, JsonHandler):
            root.removeHandler(existing)
            if isinstance(existing, JsonHandler):
                existing.close()
    root.addHandler(handler)
    root_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    root.setLevel(root_level)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(root_level, logging.INFO))
    return masker


def metrics_line(summary: Mapping[str, Any], function: str) -> dict[str, Any]:
    """A CloudWatch Embedded Metric Format record for one run (logged as a JSON line)."""
    status = summary.get("status")
    return {
        "_aws": {
            "Timestamp": int(datetime.now(UTC).timestamp() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": METRICS_NAMESPACE,
                    "Dimensions": [["Function"]],
                    "Metrics": [
                        {"Name": "RunFailed", "Unit": "Count"},
                        {"Name": "RunDegraded", "Unit": "Count"},
                        {"Name": "AccountsScored", "Unit": "Count"},
                    ],
                }
            ],
        },
        "Function": function,
        "RunFailed": 1 if status == "failed" or summary.get("exit_code") else 0,
        "RunDegraded": 1 if status == "degraded" else 0,
        "AccountsScored": int(summary.get("accounts_scored") or 0),
    }


class Rollbar:
    """Rollbar reporting, active only when ``ROLLBAR_ACCESS_TOKEN`` is set."""

    def __init__(self, env: Mapping[str, str], code_version: str) -> None:
        self.token = env.get("ROLLBAR_ACCESS_TOKEN", "").strip()
        self.environment = env.get("ROLLBAR_ENVIRONMENT", "production")
        self.endpoint = env.get("ROLLBAR_ENDPOINT", "").strip()
        self.code_version = code_version
        self.scrub = sorted({name.lower() for name in env if _credential_name(name)})
        self._module: Any = None

    @property
    def enabled(self) -> bool:
        return bool(self.token)

    def _rollbar(self) -> Any:
        if self._module is None:
            import rollbar  # optional dependency: only imported when a token is configured

            settings: dict[str, Any] = {
                "environment": self.environment,
                "code_version": self.code_version,
                # Lambda freezes the process after returning: send before returning.
                "handler": "blocking",
                "timeout": 5,
                "locals": {"enabled": False},
                "capture_ip": False,
                "capture_email": False,
                "capture_username": False,
                "allow_logging_basic_config": False,
                "suppress_reinit_warning": True,
                "scrub_fields": sorted({*rollbar.SETTINGS.get("scrub_fields", []), *self.scrub}),
            }
            if self.endpoint:
                settings["endpoint"] = self.endpoint
            rollbar.init(self.token, **settings)
            rollbar.SETTINGS["access_token"] = self.token
            self._module = rollbar
        return self._module

    def report_run(self, summary: Mapping[str, Any], masker: Masker) -> None:
        """A failed run as an error, a degraded one as a warning; ok runs are not reported."""
        status = summary.get("status")
        if not self.enabled or (status == "ok" and not summary.get("exit_code")):
            return
        level = "error" if status == "failed" or summary.get("exit_code") else "warning"
        messages = "; ".join(str(m) for m in summary.get("messages") or ()) or "no details"
        title = masker(f"health score run {summary.get('run_id')} {status}: {messages}")
        extra = json.loads(masker(json.dumps(dict(summary), default=str)))
        try:
            self._rollbar().report_message(title[:1000], level, extra_data=extra)
        except Exception as exc:  # reporting must never break the run's own outcome
            logging.getLogger(__name__).warning(
                "could not report to Rollbar: %s", type(exc).__name__
            )

    def report_exception(self, exc_info: ExcInfo, masker: Masker) -> None:
        if not self.enabled:
            return
        kind, value, tb = exc_info
        masked = kind(masker(str(value))) if _rebuildable(kind) else value
        try:
            self._rollbar().report_exc_info((kind, masked, tb))
        except Exception as exc:
            logging.getLogger(__name__).warning(
                "could not report to Rollbar: %s", type(exc).__name__
            )


def _rebuildable(kind: type[BaseException]) -> bool:
    try:
        kind("x")
    except Exception:
        return False
    return True


def _credential_name(name: str) -> bool:
    from health_score.secrets import _SECRET_NAME

    return bool(_SECRET_NAME.search(name))
