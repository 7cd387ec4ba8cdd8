"""AWS Lambda: run the pipeline once per event and leave its record in S3.

The handler is ``health_score.aws_lambda.lambda_handler`` (template.yaml). No ``.env`` file is read
here: on Lambda, credentials come from the environment and Secrets Manager only.

Events
    - the EventBridge schedule (``"source": "aws.events"``, ``"detail-type": "Scheduled
      Event"``): a live run for the last complete month (a dry run when
      ``SCHEDULE_DRY_RUN=true``): the schedule on the 1st scores the month just ended;
      the manual keys below may ride along, at the top level or in ``detail``, and are honoured
      (an explicit ``dry_run: true`` is always a dry run); any other key is rejected;
    - a manual event holding only ``dry_run`` (bool, default **true**, so a hand-made event
      never writes Salesforce by accident), ``scoring_period`` (``"YYYY-MM"``) and
      ``allow_degraded`` (bool, default false). ``{}`` is a dry run of the last complete month;
      a ``scoring_period`` is scored with its own data (windows ending at the first instant of
      the next month), and one that has not ended yet is refused. ``intercom_export_path``
      (optional, with either event) reads Intercom's conversation export instead of its API:
      ``s3://BUCKET/KEY``, an absolute local path (``/tmp/…``), or else a key in
      ``$ARTIFACT_BUCKET``; a file that cannot be fetched or read fails the run with exit 2
      before anything is written.
      Anything else is rejected, naming the allowed keys.

Environment
    ``ARTIFACT_BUCKET`` (required) and ``ARTIFACT_PREFIX`` (default ``runs``): run folders go to
    ``s3://$ARTIFACT_BUCKET/$ARTIFACT_PREFIX/<run_id>/``. ``SECRETS_ID``: a Secrets Manager
    secret whose JSON object of variable name → value is merged into a copy of the environment
    (never into ``os.environ``). ``CONFIG_DIR`` (default: the bundle's ``config/``, beside the
    package), ``LOG_LEVEL``, ``ROLLBAR_ACCESS_TOKEN`` / ``ROLLBAR_ENVIRONMENT`` /
    ``ROLLBAR_ENDPOINT``. The scores CSV is written under the temporary directory (``/tmp``).

Deadline
    The run's budget is the smaller of ``run.budget_seconds`` (sources.yaml, default 780 s) and
    the invocation's time left (``context.get_remaining_time_in_millis()``) minus
    ``LAMBDA_MARGIN_SECONDS`` (120 s, kept for write-back and the run's files). A source still
    running at the deadline is stopped and reported failed; the run goes on with the rest.

Outcome
    The run summary (``RunSummary.as_dict()`` plus ``trigger``) is logged as a JSON line with an
    Embedded Metric Format record (``RunFailed``, ``RunDegraded``, ``AccountsScored``) and
    returned. A run whose exit code is not 0 — failed, write-back refused because the run is
    degraded, a rejected event, unreadable secret — raises ``RunFailed`` *after* its artifacts
    are written, so the invocation counts as an error: the ``Errors`` alarm fires and the
    asynchronous on-failure destination receives the event with the summary as the error
    message. Degraded runs that still exit 0 (dry runs, ``allow_degraded``) return normally and
    are reported to Rollbar as warnings.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from health_score import __version__
from health_score.deadline import LAMBDA_MARGIN_SECONDS
from health_score.logging_setup import Masker, Rollbar, configure, metrics_line
from health_score.pipeline import EXIT_USAGE, PERIOD, STATUS_FAILED, RunOptions, RunSummary, run
from health_score.secrets import SecretsError, run_environment, secret_values
from health_score.sources.registry import CREDENTIAL_VARS

log = logging.getLogger("health_score.lambda")

ALLOWED_KEYS = ("dry_run", "scoring_period", "allow_degraded", "intercom_export_path")
SCHEDULED_SOURCE = "aws.events"
SCHEDULED_DETAIL_TYPE = "Scheduled Event"
#: The envelope of an EventBridge event (what a scheduled rule sends).
EVENTBRIDGE_KEYS = frozenset(
    {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
)
DEFAULT_PREFIX = "runs"
# In the Lambda bundle config/ sits beside the package; in a checkout, at the repository root.
_HERE = Path(__file__).resolve()
BUNDLE_CONFIG_DIR = next(
    (p / "config" for p in (_HERE.parents[1], _HERE.parents[2]) if (p / "config").is_dir()),
    _HERE.parents[1] / "config",
)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


class InvalidEvent(Exception):
    """The event is neither the schedule nor a manual event of the allowed keys."""


class SetupError(Exception):
    """The function's environment is incomplete (e.g. no artifact bucket)."""


class RunFailed(Exception):
    """The run did not succeed (exit code ≠ 0); raised so Lambda counts an error.

    The message is the summary's essentials as JSON (no credentials); ``summary`` is all of it.
    """

    def __init__(self, summary: Mapping[str, Any]) -> None:
        self.summary = dict(summary)
        essentials = {
            k: summary.get(k)
            for k in ("status", "exit_code", "run_id", "period", "run_location", "messages")
        }
        super().__init__(json.dumps(essentials, default=str))


@dataclass(frozen=True, slots=True)
class Request:
    trigger: str  # "schedule" | "manual"
    dry_run: bool
    period: str | None
    allow_degraded: bool
    intercom_export: str | None = None  # the event's intercom_export_path


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SetupError(f"{name} must be true or false, got {value!r}")


def _run_keys(keys: Mapping[Any, Any], problems: list[str]) -> tuple[bool | None, str | None, bool]:
    """``dry_run`` (None when absent), ``scoring_period`` and ``allow_degraded`` of an event."""
    export = keys.get("intercom_export_path")
    if export is not None and not (isinstance(export, str) and export.strip()):
        problems.append("intercom_export_path must be an S3 key, s3:// URI or local path")
    dry_run = keys.get("dry_run")
    allow_degraded = keys.get("allow_degraded", False)
    period = keys.get("scoring_period")
    if dry_run is not None and not isinstance(dry_run, bool):
        problems.append("dry_run must be true or false")
    if not isinstance(allow_degraded, bool):
        problems.append("allow_degraded must be true or false")
    if period is not None and not (isinstance(period, str) and PERIOD.fullmatch(period)):
        problems.append('scoring_period must be a "YYYY-MM" string such as "2026-11"')
    return (
        dry_run if isinstance(dry_run, bool) else None,
        period if isinstance(period, str) else None,
        allow_degraded is True,
    )


def _unknown(keys: Any, allowed: frozenset[str], where: str) -> str | None:
    unknown = [str(k) for k in keys if k not in allowed]
    if not unknown:
        return None
    return (
        f"unknown key(s) {', '.join(repr(k[:64]) for k in unknown)}{where}; allowed keys are "
        f"{', '.join(ALLOWED_KEYS)} (an EventBridge scheduled event is also accepted)"
    )


def parse_event(event: object, env: Mapping[str, str]) -> Request:
    """Validate the event; every problem is named in one message.

    A scheduled EventBridge event may also carry the manual keys, at its top level or in its
    ``detail`` (a rule's input): they are honoured, never ignored, and an explicit
    ``dry_run: true`` always means a dry run (``SCHEDULE_DRY_RUN=true`` keeps the schedule dry
    whatever the event says). Any other key is refused.
    """
    if not isinstance(event, Mapping):
        raise InvalidEvent(
            f"the event must be a JSON object with only the keys {', '.join(ALLOWED_KEYS)} "
            f"(or the EventBridge scheduled event), got {type(event).__name__}"
        )
    problems: list[str] = []
    scheduled = (
        event.get("detail-type") == SCHEDULED_DETAIL_TYPE
        and event.get("source") == SCHEDULED_SOURCE
    )
    if scheduled:
        detail = event.get("detail") or {}
        if not isinstance(detail, Mapping):
            raise InvalidEvent("invalid event: the scheduled event's detail must be an object")
        top = {k: v for k, v in event.items() if k not in EVENTBRIDGE_KEYS}
        for keys, where in ((top, ""), (detail, " in detail")):
            if message := _unknown(keys, frozenset(ALLOWED_KEYS), where):
                problems.append(message)
        clash = sorted(k for k in top.keys() & detail.keys() if top[k] != detail[k])
        if clash:
            problems.append(f"{', '.join(clash)} given twice with different values")
        dry_run, period, allow_degraded = _run_keys({**detail, **top}, problems)
        if problems:
            raise InvalidEvent("invalid event: " + "; ".join(problems))
        dry = _flag(env, "SCHEDULE_DRY_RUN") or dry_run is True
        export = {**detail, **top}.get("intercom_export_path")
        return Request("schedule", dry, period, allow_degraded, export)
    if message := _unknown(event, frozenset(ALLOWED_KEYS), ""):
        problems.append(message)
    dry_run, period, allow_degraded = _run_keys(event, problems)
    if problems:
        raise InvalidEvent("invalid event: " + "; ".join(problems))
    # A hand-made event never writes Salesforce by accident: dry unless it says dry_run: false.
    return Request(
        "manual", dry_run is not False, period, allow_degraded, event.get("intercom_export_path")
    )


def artifact_location(env: Mapping[str, str]) -> str:
    bucket = env.get("ARTIFACT_BUCKET", "").strip()
    if not bucket:
        raise SetupError("ARTIFACT_BUCKET is not set; it names the S3 bucket for run artifacts")
    prefix = env.get("ARTIFACT_PREFIX", DEFAULT_PREFIX).strip().strip("/")
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


def export_file(value: str, env: Mapping[str, str]) -> Path:
    """The local file of an event's ``intercom_export_path``: an absolute path as is; an
    ``s3://BUCKET/KEY`` URI, or a key in ``$ARTIFACT_BUCKET``, downloaded under the temporary
    directory (keeping its file name, which the manifest records)."""
    if value.startswith("/"):
        return Path(value)
    if value.startswith("s3://"):
        bucket, _, key = value.removeprefix("s3://").partition("/")
    else:
        bucket, key = env.get("ARTIFACT_BUCKET", "").strip(), value.lstrip("/")
    if not bucket or not key or key.endswith("/"):
        raise SetupError(f"intercom_export_path {value!r} names no S3 object")
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    target = Path(tempfile.mkdtemp(prefix="hsm-intercom-")) / PurePosixPath(key).name
    try:
        boto3.client("s3").download_file(bucket, key, str(target))
    except (ClientError, BotoCoreError) as exc:
        raise SetupError(
            f"intercom_export_path s3://{bucket}/{key} cannot be fetched: {exc}"
        ) from None
    return target


def _credential_names() -> frozenset[str]:
    """Every source's credential variable names (to mask their values in logs)."""
    return frozenset(name for names in CREDENTIAL_VARS.values() for name in names)


def _failure(message: str) -> dict[str, Any]:
    return RunSummary(EXIT_USAGE, STATUS_FAILED, None, None, messages=(message,)).as_dict()


def _masked(document: Mapping[str, Any], masker: Masker) -> dict[str, Any]:
    masked: dict[str, Any] = json.loads(masker(json.dumps(dict(document), default=str)))
    return masked


def lambda_handler(event: object, context: object) -> dict[str, Any]:
    """AWS Lambda entry point (EventBridge schedule or a manual event)."""
    return invoke(event, context, os.environ)


def invoke(
    event: object,
    context: object,
    environ: Mapping[str, str],
    *,
    base: RunOptions | None = None,
    secrets_client: Any = None,
) -> dict[str, Any]:
    """Run once for ``event`` with ``environ`` as the process environment.

    ``base`` supplies options the event cannot set (the config folder, or a raw file to score
    instead of extracting); the event, the environment and the secret set the rest.
    """
    static = {"request_id": getattr(context, "aws_request_id", None)}
    masker = configure(
        environ.get("LOG_LEVEL", "INFO"),
        secret_values(environ),
        static=static,
        replace_all="AWS_LAMBDA_FUNCTION_NAME" in environ,
    )
    rollbar = Rollbar(environ, __version__)
    trigger = "unknown"
    try:
        try:
            env = run_environment(environ, client=secrets_client)
            masker.update(secret_values(env, _credential_names() | (env.keys() - environ.keys())))
            rollbar = Rollbar(env, __version__)
            if env.keys() - environ.keys() or environ.get("SECRETS_ID"):
                log.info(
                    "credentials loaded from Secrets Manager",
                    extra={"fields": {"variables": sorted(env.keys() - environ.keys())}},
                )
            request = parse_event(event, env)
            trigger = request.trigger
            runs_dir = artifact_location(env)
            export = (
                None
                if request.intercom_export is None
                else export_file(request.intercom_export, env)
            )
        except (InvalidEvent, SecretsError, SetupError) as exc:
            summary = _masked({**_failure(str(exc)), "trigger": trigger}, masker)
            log.error("run not started: %s", exc, extra={"fields": {"summary": summary}})
            log.info("run metrics", extra={"fields": metrics_line(summary, _function(context))})
            rollbar.report_run(summary, masker)
            raise RunFailed(summary) from None

        cap, cap_origin = lambda_budget(context)
        options = replace(
            base or RunOptions(config_dir=Path(env.get("CONFIG_DIR") or BUNDLE_CONFIG_DIR)),
            budget_cap_seconds=cap,
            budget_cap_origin=cap_origin,
            dry_run=request.dry_run,
            period=request.period,
            allow_degraded=request.allow_degraded,
            env=env,
            runs_dir=runs_dir,
            output=Path(tempfile.gettempdir()) / "health_scores.csv",
            progress=False,
        )
        if export is not None:
            options = replace(options, intercom_export=export)
        log.info(
            "run starting",
            extra={
                "fields": {
                    "trigger": request.trigger,
                    "dry_run": request.dry_run,
                    "scoring_period": request.period,
                    "allow_degraded": request.allow_degraded,
                    "runs_dir": runs_dir,
                    "intercom_export": request.intercom_export,
                }
            },
        )
        summary = _masked({**run(options).as_dict(), "trigger": request.trigger}, masker)
    except RunFailed:
        raise
    except Exception:
        exc_info = sys.exc_info()
        log.exception("run crashed")
        if exc_info[0] is not None and exc_info[1] is not None:
            rollbar.report_exception((exc_info[0], exc_info[1], exc_info[2]), masker)
        raise

    level = logging.ERROR if summary["exit_code"] else logging.INFO
    if summary["status"] == "degraded" and not summary["exit_code"]:
        level = logging.WARNING
    log.log(level, "run finished: %s", summary["status"], extra={"fields": {"summary": summary}})
    log.info("run metrics", extra={"fields": metrics_line(summary, _function(context))})
    rollbar.report_run(summary, masker)
    if summary["exit_code"]:
        raise RunFailed(summary)
    return summary


def lambda_budget(
    context: object, margin: float = LAMBDA_MARGIN_SECONDS
) -> tuple[float | None, str]:
    """The invocation's time left minus ``margin``, in seconds (None when the context cannot
    say), and how it is named in a deadline message."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None, ""
    left = float(remaining()) / 1000
    return max(left - margin, 0.0), f"Lambda time left {left:.0f} s minus the {margin:g} s margin"


def _function(context: object) -> str:
    return str(getattr(context, "function_name", None) or "health-score")
