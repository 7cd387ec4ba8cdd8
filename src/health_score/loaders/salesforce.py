"""Write scores back to Salesforce: an idempotent upsert of ``Health_Score__c`` (DESIGN §7).

Each scored account with a Salesforce id becomes one record keyed by the external id
``<18-character account id>-<YYYY-MM>``, so re-running a period updates the same records instead
of duplicating them. Up to ``bulk_threshold`` records go through sObject Collections upserts (200
a call); more go through one Bulk API 2.0 ingest job (polled with backoff, then its
``successfulResults`` and ``failedResults`` read). Per-record failures are collected with the
account, Salesforce's error code and message; transient ones (``UNABLE_TO_LOCK_ROW``…) are tried
once more. When Salesforce's daily API allowance runs out (403 ``REQUEST_LIMIT_EXCEEDED``) or the
write fails as a whole, the load stops and its :class:`LoadResult` says what was written and what
was not — a re-run completes the rest without duplicates.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import requests

from health_score.csvsafe import unescape_cell
from health_score.loaders.salesforce_settings import WritebackSettings, is_api_name
from health_score.records import Account
from health_score.salesforce_ids import id_problem, salesforce_id18
from health_score.scoring.composite import AccountScore, publish
from health_score.sources.http import HttpPolicy, SourceError
from health_score.sources.salesforce.client import Authenticate, SalesforceClient

log = logging.getLogger(__name__)

SOURCE = "salesforce"
COMPOSITE = "composite"
BULK = "bulk"
NONE = "none"
NULL_MARKER = "#N/A"  # Bulk API 2.0: sets a field to null (an empty cell leaves it unchanged)
LIMIT_EXCEEDED = "REQUEST_LIMIT_EXCEEDED"
LOCAL_ERROR = "INVALID_ACCOUNT_ID"  # reported without contacting Salesforce
DUPLICATE_ERROR = "DUPLICATE_ACCOUNT_ID"

#: Logical name → default API name of the fields every record carries.
FIXED_FIELDS: Mapping[str, str] = {
    "name": "Name",
    "account": "Account__c",  # overridden by settings.account_lookup_field
    "period": "Period__c",
    "scoring_date": "Scoring_Date__c",
    "segment": "Segment__c",
    "churn_risk": "Churn_Risk_Score__c",
    "platform_value": "Platform_Value_Score__c",
    "quantitative": "Quantitative_Score__c",
    "final": "Final_Score__c",
    "tier": "Health_Tier__c",
    "coverage": "Coverage_Pct__c",
    "cap_applied": "Cap_Applied__c",
    "cap_rule": "Cap_Rule__c",
    "cap_value": "Cap_Value__c",
    "critical_signals": "Critical_Signals__c",
    "critical_confirmed_signals": "Critical_Confirmed_Signals__c",
    "moderate_signals": "Moderate_Signals__c",
    "watch_signals": "Watch_Signals__c",
    "run_id": "Run_Id__c",
    "config_hash": "Config_Hash__c",
}
NAME_LENGTH = 80  # the Name field of a custom object holds 80 characters

_PERIOD_LENGTH = 7


def _title(snake: str) -> str:
    return "_".join(part.capitalize() for part in snake.split("_") if part)


# -- ids ----------------------------------------------------------------------------------------


def external_key(sf_account_id: str, period: str) -> str:
    """``<18-char account id>-<YYYY-MM>``; raises ValueError (InvalidSalesforceId) for a malformed
    id (see :mod:`health_score.salesforce_ids` for the rule)."""
    return f"{salesforce_id18(sf_account_id)}-{period}"


def _check_period(period: str) -> None:
    year, _, month = period.partition("-")
    if not (len(period) == _PERIOD_LENGTH and year.isdigit() and month.isdigit()) or not (
        1 <= int(month) <= 12
    ):
        raise ValueError(f"period must be YYYY-MM, got {period!r}")


# -- field map -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldMap:
    """Logical field name → API name (an empty API name means: do not write the field)."""

    names: Mapping[str, str]

    @classmethod
    def build(
        cls,
        settings: WritebackSettings,
        metrics: Iterable[tuple[str, str]],
    ) -> FieldMap:
        """Defaults for the fixed fields and for every (dimension, metric), then the overrides.

        A metric used by one dimension scores into ``<Metric>_Score__c``; one used by several
        (e.g. sessions_per_user) into ``<Dimension>_<Metric>_Score__c`` per dimension.
        """
        pairs = list(dict.fromkeys(metrics))
        names: dict[str, str] = dict(FIXED_FIELDS)
        names["account"] = settings.account_lookup_field
        dims = list(dict.fromkeys(d for d, _ in pairs))
        for dim in dims:
            if dim != "platform_value":  # its score is the Platform Value Score itself
                names[f"dimension.{dim}"] = f"{_title(dim)}_Score__c"
        users: dict[str, int] = {}
        for _, metric in pairs:
            users[metric] = users.get(metric, 0) + 1
        for dim, metric in pairs:
            stem = (
                _title(metric)
                if users[metric] == 1
                else f"{_title(dim.split('_')[0])}_{_title(metric)}"
            )
            names[f"metric_score.{dim}.{metric}"] = f"{stem}_Score__c"
            names[f"metric_raw.{metric}"] = f"{_title(metric)}_Raw__c"
        names.update(settings.fields)
        bad = sorted(f"{k} → {v}" for k, v in names.items() if v and not is_api_name(v))
        if bad:
            raise ValueError(
                "field API names too long or malformed (set them in writeback.fields): "
                + ", ".join(bad)
            )
        return cls(names)

    def get(self, logical: str) -> str:
        return self.names.get(logical, "")

    def api_names(self) -> list[str]:
        return [name for name in self.names.values() if name]


# -- records -------------------------------------------------------------------------------------

FieldValue = str | Decimal | int | bool | date | None


@dataclass(frozen=True, slots=True)
class Prepared:
    """One record to write: its account, its key (external id or Id) and its field values."""

    account_id: str
    key: str
    values: Mapping[str, FieldValue]


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def health_score_values(
    score: AccountScore,
    sf_account_id: str,
    *,
    period: str,
    scoring_date: date,
    run_id: str,
    config_hash: str,
    fields: FieldMap,
    external_id_field: str,
) -> dict[str, FieldValue]:
    """The field values of one account's ``Health_Score__c`` (None clears a field)."""
    rule = score.cap.rule
    rule_text = None
    if rule is not None:
        rule_text = f"{rule.condition}: {rule.description}" if rule.description else rule.condition
    logical: dict[str, FieldValue] = {
        "name": _truncate(f"{score.account_name} {period}", NAME_LENGTH),
        "account": sf_account_id,
        "period": period,
        "scoring_date": scoring_date,
        "segment": score.segment,
        "churn_risk": publish(score.churn_risk),
        "platform_value": publish(score.platform_value),
        "quantitative": publish(score.quantitative),
        "final": publish(score.final),
        "tier": score.tier,
        "coverage": publish(score.coverage_pct),
        "cap_applied": score.cap.applied,
        "cap_rule": rule_text,
        "cap_value": publish(score.cap.cap),
        "critical_signals": score.signals.critical,
        "critical_confirmed_signals": score.signals.critical_confirmed,
        "moderate_signals": score.signals.moderate,
        "watch_signals": score.signals.watch,
        "run_id": run_id,
        "config_hash": config_hash,
    }
    for dim, dim_score in score.dimensions.items():
        if dim != "platform_value":
            logical[f"dimension.{dim}"] = publish(dim_score)
    for metric in score.metrics:
        logical[f"metric_score.{metric.dimension}.{metric.metric}"] = publish(metric.score)
        logical[f"metric_raw.{metric.metric}"] = metric.raw
    values: dict[str, FieldValue] = {external_id_field: external_key(sf_account_id, period)}
    for key, value in logical.items():
        api = fields.get(key)
        if api:
            values[api] = value
    return values


def mirror_values(
    score: AccountScore,
    names: Mapping[str, str],
    *,
    period: str,
    scoring_date: date,
    previous: Decimal | None,
) -> dict[str, FieldValue]:
    """The Account mirror's values (``names``: logical → API name, as
    :attr:`WritebackSettings.mirror_fields`). The change is the published final minus the
    previous period's published final (None when either is missing: the field is cleared)."""
    final = publish(score.final)
    logical: dict[str, FieldValue] = {
        "score": final,
        "tier": score.tier,
        "change": None if final is None or previous is None else final - previous,
        "period": period,
        "date": scoring_date,
    }
    return {api: logical[key] for key, api in names.items()}


def previous_finals(scores_csv: bytes) -> dict[str, Decimal | None]:
    """account_id → final score (None: not scored) from a run's ``scores.csv`` (cells guarded
    for spreadsheets are read back unguarded); raises ValueError naming what is wrong."""
    try:
        text = scores_csv.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("scores.csv is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, [])
    try:
        at_id, at_final = header.index("account_id"), header.index("final_score")
    except ValueError:
        raise ValueError("scores.csv: expected the columns account_id and final_score") from None
    out: dict[str, Decimal | None] = {}
    for line, row in enumerate(reader, start=2):
        if len(row) != len(header):
            continue
        cell = row[at_final].strip()
        problem = f"scores.csv row {line}: final_score {cell!r} is not a number"
        try:
            value = Decimal(cell) if cell else None
        except ArithmeticError:
            raise ValueError(problem) from None
        if value is not None and not value.is_finite():
            raise ValueError(problem)
        out[unescape_cell(row[at_id])] = value
    return out


# -- results -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordFailure:
    """A record Salesforce did not take, with its error code and message."""

    account_id: str
    key: str  # external id (Health_Score__c) or Id (Account mirror)
    error_code: str
    message: str
    fields: tuple[str, ...] = ()
    object_name: str = "Health_Score__c"

    def as_dict(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "object": self.object_name,
            "key": self.key,
            "error_code": self.error_code,
            "message": self.message,
            "fields": list(self.fields),
        }


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one write-back did: counts, failures, requests, the path, and why it stopped early."""

    object_name: str
    path: str  # composite | bulk | none
    attempted: int  # records prepared for Salesforce (accounts with a Salesforce id)
    written: int
    created: int
    updated: int
    failures: tuple[RecordFailure, ...]
    not_written: tuple[str, ...]  # account ids whose score record was not confirmed written
    skipped: tuple[str, ...]  # account ids without a Salesforce id (never written)
    retried: int  # records tried a second time after a transient error
    requests: int
    seconds: float
    stopped_reason: str | None = None
    mirror_written: int = 0
    bulk_jobs: tuple[str, ...] = ()
    #: ``Sforce-Limit-Info`` after the write: the org's API calls in 24 hours / its allowance.
    api_usage: str | None = None

    @property
    def ok(self) -> bool:
        """True when every record was written (the run exits 1 otherwise)."""
        return not self.failures and self.stopped_reason is None and not self.not_written

    def as_dict(self) -> dict[str, Any]:
        """The manifest's ``salesforce_write`` section."""
        return {
            "object": self.object_name,
            "path": self.path,
            "attempted": self.attempted,
            "written": self.written,
            "created": self.created,
            "updated": self.updated,
            "failed": len(
                {f.account_id for f in self.failures if f.object_name == self.object_name}
            ),
            "not_written": list(self.not_written),
            "skipped_without_salesforce_id": list(self.skipped),
            "retried": self.retried,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "stopped_reason": self.stopped_reason,
            "mirror_written": self.mirror_written,
            "bulk_jobs": list(self.bulk_jobs),
            "api_usage": self.api_usage,
            "failures": [f.as_dict() for f in self.failures],
        }


@dataclass
class _Outcome:
    """Mutable tally of one object's write (folded into the frozen LoadResult at the end)."""

    written: dict[str, bool] = field(default_factory=dict)  # key → created
    failures: dict[str, RecordFailure] = field(default_factory=dict)  # key → last failure
    retried: int = 0
    stopped_reason: str | None = None
    path: str = NONE
    jobs: list[str] = field(default_factory=list)


class _Stop(Exception):
    """The write cannot go on (allowance spent, Salesforce unreachable, credentials refused)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _stop_reason(exc: SourceError) -> str:
    if exc.status == 403 and LIMIT_EXCEEDED in str(exc):
        return (
            "Salesforce daily API allowance exhausted (403 REQUEST_LIMIT_EXCEEDED); "
            "re-run the write later to complete it"
        )
    return str(exc)


def _json_value(value: FieldValue) -> Any:
    if isinstance(value, Decimal):
        # JSON numbers: exact for the published one-decimal scores and 4-place raw values.
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else format(value, "f")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _csv_value(value: FieldValue) -> str:
    if value is None:
        return NULL_MARKER
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def parse_bulk_error(text: str) -> tuple[str, str, tuple[str, ...]]:
    """``CODE:message:Field1,Field2 --`` (the ``sf__Error`` column) → (code, message, fields)."""
    code, _, rest = text.partition(":")
    rest = rest.strip().removesuffix("--").strip()
    message, sep, names = rest.rpartition(":")
    if not sep:
        return code.strip(), rest, ()
    if names and not all(is_api_name(n) or n == "Id" for n in names.split(",")):
        return code.strip(), rest, ()
    return code.strip(), message.strip(), tuple(n for n in names.split(",") if n)


# -- the loader ----------------------------------------------------------------------------------


class SalesforceLoader:
    """Writes scores to Salesforce through the shared :class:`SalesforceClient`.

    Give it a ``client``, or what makes one: a ready session (``instance_url`` + ``session_id``)
    or an ``authenticate`` callable returning ``(instance_url, session_id)`` — the latter is
    called lazily and again once when Salesforce answers 401 ``INVALID_SESSION_ID``. The write
    calls use ``settings.api_version`` (a given ``client`` keeps its own version).
    """

    def __init__(
        self,
        settings: WritebackSettings | None = None,
        *,
        client: SalesforceClient | None = None,
        instance_url: str | None = None,
        session_id: str | None = None,
        authenticate: Authenticate | None = None,
        session: requests.Session | None = None,
        policy: HttpPolicy | None = None,
        verify: str | bool | None = None,
        credential_hint: str = "SF_CLIENT_ID / SF_CLIENT_SECRET (or SF_USERNAME / SF_PASSWORD)",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings or WritebackSettings.model_validate({})
        self._sleep = sleep
        self.client = client or SalesforceClient(
            authenticate,
            instance_url=instance_url,
            session_id=session_id,
            version=self.settings.api_version,
            session=session,
            policy=policy,
            verify=verify,
            credential_hint=credential_hint,
        )

    @classmethod
    def from_env(
        cls,
        settings: WritebackSettings | None,
        env: Mapping[str, str],
        *,
        session: requests.Session | None = None,
        policy: HttpPolicy | None = None,
    ) -> SalesforceLoader | None:
        """A loader that logs in with the Salesforce credentials in ``env`` (the same variables
        and flows as the extractor: ``health_score.sources.salesforce.auth``); None without them."""
        settings = settings or WritebackSettings.model_validate({})
        client = SalesforceClient.from_env(
            env, version=settings.api_version, session=session, policy=policy
        )
        return None if client is None else cls(settings, client=client)

    # -- auth -----------------------------------------------------------------------------------

    def _connect(self) -> None:
        """Log in before the first call unless a session is in use (failures stop the write)."""
        try:
            self.client.connect()
        except SourceError as exc:
            raise _Stop(_stop_reason(exc)) from None
        except requests.RequestException as exc:
            raise _Stop(f"{SOURCE}: login failed: {type(exc).__name__}") from None

    # -- public -----------------------------------------------------------------------------------

    def load(
        self,
        scores: Sequence[AccountScore],
        accounts: Mapping[str, Account] | Iterable[Account],
        *,
        period: str,
        scoring_date: date,
        run_id: str,
        config_hash: str,
        previous_final: Mapping[str, Decimal | None] | None = None,
    ) -> LoadResult:
        """Upsert one ``Health_Score__c`` per account with a Salesforce id, then the Account
        mirror (never raises on a per-record problem or on a write that stops early: the result
        says what happened).

        ``previous_final``: each account's final score in the previous period's run (see
        :func:`previous_finals`); the mirror's change is this final minus that one, and is
        cleared for an account it lacks, or for every account when it is None.
        """
        _check_period(period)
        started = time.monotonic()
        requests_before = self.client.requests
        by_id = accounts if isinstance(accounts, Mapping) else {a.account_id: a for a in accounts}
        settings = self.settings
        fields = FieldMap.build(
            settings, ((m.dimension, m.metric) for s in scores for m in s.metrics)
        )
        prepared: list[Prepared] = []
        skipped: list[str] = []
        local: list[RecordFailure] = []
        seen: dict[str, str] = {}  # external key → account id
        for score in scores:
            account = by_id.get(score.account_id)
            sf_id = account.sf_account_id if account is not None else None
            if not sf_id:
                skipped.append(score.account_id)
                continue
            problem = id_problem(sf_id)
            if problem is not None:
                local.append(
                    RecordFailure(
                        score.account_id,
                        sf_id,
                        LOCAL_ERROR,
                        f"the mapping's Salesforce account id is not a Salesforce id: {problem}",
                        (settings.account_lookup_field,),
                        settings.object_name,
                    )
                )
                continue
            full_id = salesforce_id18(sf_id)
            values = health_score_values(
                score,
                full_id,
                period=period,
                scoring_date=scoring_date,
                run_id=run_id,
                config_hash=config_hash,
                fields=fields,
                external_id_field=settings.external_id_field,
            )
            key = str(values[settings.external_id_field])
            if key in seen:
                local.append(
                    RecordFailure(
                        score.account_id,
                        key,
                        DUPLICATE_ERROR,
                        f"the mapping gives Salesforce account {full_id} to both "
                        f"{seen[key]} and {score.account_id}; only the first is written",
                        (settings.account_lookup_field,),
                        settings.object_name,
                    )
                )
                continue
            seen[key] = score.account_id
            prepared.append(Prepared(score.account_id, key, values))

        outcome = self.write(settings.object_name, prepared, external_id=settings.external_id_field)
        mirror_written = 0
        mirror_failures: list[RecordFailure] = []
        if outcome.stopped_reason is None and settings.mirror_fields:
            mirror = self._mirror(
                scores,
                prepared,
                outcome,
                period=period,
                scoring_date=scoring_date,
                previous_final=previous_final,
            )
            mirror_written = len(mirror.written)
            mirror_failures = list(mirror.failures.values())
            outcome.stopped_reason = mirror.stopped_reason

        created = sum(1 for c in outcome.written.values() if c)
        failed_keys = set(outcome.failures)
        not_written = tuple(p.account_id for p in prepared if p.key not in outcome.written) + tuple(
            f.account_id for f in local
        )
        failures = (*local, *(outcome.failures[p.key] for p in prepared if p.key in failed_keys))
        result = LoadResult(
            object_name=settings.object_name,
            path=outcome.path,
            attempted=len(prepared) + len(local),
            written=len(outcome.written),
            created=created,
            updated=len(outcome.written) - created,
            failures=(*failures, *mirror_failures),
            not_written=not_written,
            skipped=tuple(skipped),
            retried=outcome.retried,
            requests=self.client.requests - requests_before,
            seconds=time.monotonic() - started,
            stopped_reason=outcome.stopped_reason,
            mirror_written=mirror_written,
            bulk_jobs=tuple(outcome.jobs),
            api_usage=None if self.client.api_usage is None else str(self.client.api_usage),
        )
        self._log(result)
        return result

    def write(
        self, object_name: str, records: Sequence[Prepared], *, external_id: str | None
    ) -> _Outcome:
        """Upsert (by ``external_id``) or update (by Id, when None) records, retrying transient
        failures once; the path follows the volume."""
        outcome = _Outcome()
        if not records:
            return outcome
        try:
            self._connect()
            self._write_once(object_name, records, external_id, outcome)
            transient = [
                r
                for r in records
                if r.key in outcome.failures
                and outcome.failures[r.key].error_code in self.settings.transient_errors
            ]
            if transient:
                log.info("salesforce: retrying %d records after transient errors", len(transient))
                outcome.retried += len(transient)
                for record in transient:
                    del outcome.failures[record.key]
                self._write_once(object_name, transient, external_id, outcome)
        except _Stop as stop:
            outcome.stopped_reason = stop.reason
        return outcome

    # -- paths ------------------------------------------------------------------------------------

    def _write_once(
        self,
        object_name: str,
        records: Sequence[Prepared],
        external_id: str | None,
        outcome: _Outcome,
    ) -> None:
        if len(records) > self.settings.bulk_threshold:
            outcome.path = BULK if outcome.path in (NONE, BULK) else outcome.path
            for chunk in self._upload_chunks(records):
                self._bulk(object_name, chunk, external_id, outcome)
        else:
            if outcome.path == NONE:
                outcome.path = COMPOSITE
            size = self.settings.composite_batch_size
            for start in range(0, len(records), size):
                self._composite(object_name, records[start : start + size], external_id, outcome)

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One call to the data API (``path`` is relative to ``/services/data/vNN.0``)."""
        try:
            return self.client.request(method, path, **kwargs)
        except SourceError as exc:
            raise _Stop(_stop_reason(exc)) from None
        except requests.RequestException as exc:  # a fresh login after a 401 failed
            raise _Stop(f"{SOURCE}: login failed: {type(exc).__name__}") from None

    def _composite(
        self,
        object_name: str,
        chunk: Sequence[Prepared],
        external_id: str | None,
        outcome: _Outcome,
    ) -> None:
        body = {
            "allOrNone": False,
            "records": [
                {
                    "attributes": {"type": object_name},
                    **({} if external_id else {"Id": r.key}),
                    **{k: _json_value(v) for k, v in r.values.items()},
                }
                for r in chunk
            ],
        }
        path = (
            f"/composite/sobjects/{object_name}/{external_id}"
            if external_id
            else "/composite/sobjects"
        )
        response = self._call(
            "PATCH",
            path,
            data=json.dumps(body, separators=(",", ":")),
            headers={"Content-Type": "application/json"},
        )
        results = self.client.json(response)
        if not isinstance(results, list) or len(results) != len(chunk):
            raise _Stop(f"{SOURCE}: PATCH {path}: unexpected response shape")
        for record, result in zip(chunk, results, strict=True):
            if isinstance(result, dict) and result.get("success"):
                outcome.written[record.key] = bool(result.get("created"))
                outcome.failures.pop(record.key, None)
                continue
            errors = result.get("errors") if isinstance(result, dict) else None
            first = errors[0] if isinstance(errors, list) and errors else {}
            outcome.failures[record.key] = RecordFailure(
                record.account_id,
                record.key,
                str(first.get("statusCode") or first.get("errorCode") or "UNKNOWN_ERROR"),
                str(first.get("message", "")),
                tuple(str(f) for f in first.get("fields") or ()),
                object_name,
            )

    def _upload_chunks(self, records: Sequence[Prepared]) -> list[list[Prepared]]:
        """Split records so no job's CSV exceeds the upload limit (usually: one chunk)."""
        chunks: list[list[Prepared]] = [[]]
        size = 0
        limit = self.settings.bulk_max_upload_bytes
        for record in records:
            row = sum(len(_csv_value(v)) + 3 for v in record.values.values())
            if chunks[-1] and size + row > limit:
                chunks.append([])
                size = 0
            chunks[-1].append(record)
            size += row
        return chunks

    def _bulk(
        self,
        object_name: str,
        chunk: Sequence[Prepared],
        external_id: str | None,
        outcome: _Outcome,
    ) -> None:
        columns = list(dict.fromkeys(k for r in chunk for k in r.values))
        if not external_id:
            columns = ["Id", *(c for c in columns if c != "Id")]
        spec: dict[str, Any] = {
            "object": object_name,
            "contentType": "CSV",
            "operation": "upsert" if external_id else "update",
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
        }
        if external_id:
            spec["externalIdFieldName"] = external_id
        job = self.client.json(self._call("POST", "/jobs/ingest", json=spec))
        job_id = str(job.get("id", "")) if isinstance(job, dict) else ""
        if not job_id:
            raise _Stop(f"{SOURCE}: POST /jobs/ingest: no job id in the response")
        outcome.jobs.append(job_id)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for record in chunk:
            row = {"Id": record.key} if not external_id else {}
            row.update({k: _csv_value(v) for k, v in record.values.items()})
            writer.writerow([row.get(c, "") for c in columns])
        self._call(
            "PUT",
            f"/jobs/ingest/{job_id}/batches",
            data=out.getvalue().encode("utf-8"),
            headers={"Content-Type": "text/csv"},
        )
        self._call("PATCH", f"/jobs/ingest/{job_id}", json={"state": "UploadComplete"})
        info = self._poll(job_id)
        state = info.get("state")
        key_column = external_id or "Id"
        by_key = {r.key: r for r in chunk}
        for row in self._results(job_id, "successfulResults"):
            hit = by_key.get(row.get(key_column, ""))
            if hit is not None:
                outcome.written[hit.key] = row.get("sf__Created", "").lower() == "true"
                outcome.failures.pop(hit.key, None)
        for row in self._results(job_id, "failedResults"):
            hit = by_key.get(row.get(key_column, ""))
            if hit is not None:
                code, message, names = parse_bulk_error(row.get("sf__Error", ""))
                outcome.failures[hit.key] = RecordFailure(
                    hit.account_id, hit.key, code, message, names, object_name
                )
        if state != "JobComplete":
            code, _, message = str(info.get("errorMessage") or f"job {state}").partition(" : ")
            for record in chunk:
                if record.key not in outcome.written and record.key not in outcome.failures:
                    outcome.failures[record.key] = RecordFailure(
                        record.account_id,
                        record.key,
                        f"BULK_JOB_{str(state).upper()}" if not message else code.strip(),
                        message.strip() or f"Bulk API job {job_id} ended {state}",
                        (),
                        object_name,
                    )

    def _poll(self, job_id: str) -> dict[str, Any]:
        """Job info once it has finished, polling with exponential backoff."""
        settings = self.settings
        delay = settings.poll_initial_seconds
        deadline = time.monotonic() + settings.poll_timeout_seconds
        while True:
            info = self.client.json(self._call("GET", f"/jobs/ingest/{job_id}"))
            if not isinstance(info, dict):
                raise _Stop(f"{SOURCE}: GET /jobs/ingest/{{id}}: unexpected response shape")
            if info.get("state") in ("JobComplete", "Failed", "Aborted"):
                return info
            if time.monotonic() + delay > deadline:
                self._call("PATCH", f"/jobs/ingest/{job_id}", json={"state": "Aborted"})
                raise _Stop(
                    f"Bulk API job {job_id} did not finish within "
                    f"{settings.poll_timeout_seconds:.0f} s (aborted)"
                )
            self._sleep(delay)
            delay = min(delay * 2, settings.poll_max_seconds)

    def _results(self, job_id: str, kind: str) -> list[dict[str, str]]:
        response = self._call("GET", f"/jobs/ingest/{job_id}/{kind}/")
        response.encoding = "utf-8"
        return list(csv.DictReader(io.StringIO(response.text, newline="")))

    # -- Account mirror ---------------------------------------------------------------------------

    def _mirror(
        self,
        scores: Sequence[AccountScore],
        prepared: Sequence[Prepared],
        written: _Outcome,
        *,
        period: str,
        scoring_date: date,
        previous_final: Mapping[str, Decimal | None] | None,
    ) -> _Outcome:
        """The period's score onto Account (an update by Id through the same paths), for the
        accounts whose ``Health_Score__c`` was written."""
        score_of = {s.account_id: s for s in scores}
        lookup = self.settings.account_lookup_field
        names = self.settings.mirror_fields
        records = []
        for record in prepared:
            if record.key not in written.written:
                continue
            values = mirror_values(
                score_of[record.account_id],
                names,
                period=period,
                scoring_date=scoring_date,
                previous=None if previous_final is None else previous_final.get(record.account_id),
            )
            records.append(Prepared(record.account_id, str(record.values[lookup]), values))
        return self.write("Account", records, external_id=None)

    # -- log --------------------------------------------------------------------------------------

    def _log(self, result: LoadResult) -> None:
        log.info(
            "salesforce: %s %d/%d records written (%d created, %d updated) via %s in %d requests",
            result.object_name,
            result.written,
            result.attempted,
            result.created,
            result.updated,
            result.path,
            result.requests,
        )
        self.client.log_usage(f"{result.object_name} write done")
        for failure in result.failures:
            log.warning(
                "salesforce: %s %s (account %s) not written: %s %s",
                failure.object_name,
                failure.key,
                failure.account_id,
                failure.error_code,
                failure.message,
            )
        if result.stopped_reason:
            log.error(
                "salesforce: write stopped, %d records not written: %s",
                len(result.not_written),
                result.stopped_reason,
            )
