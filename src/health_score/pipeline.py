"""The composition root: gather inputs → score → write the run's files → write back.

``run(options, *, extractors=None, loader=None, store=None)`` is the only place that wires the
stages; tests pass fakes for the extractors, the Salesforce loader or the run store. The entry
points (:mod:`health_score.cli`, :mod:`health_score.aws_lambda`) are thin wrappers around it and
this module imports neither.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from health_score import __version__
from health_score.batch import ScoredBatch, score_batch
from health_score.columns import AccountTable, read_raw_table
from health_score.config import (
    MAPPING_FILE,
    SOURCES_FILE,
    THRESHOLDS_FILE,
    WEIGHTS_FILE,
    AppConfig,
    ConfigError,
    read_config_files,
    scoring_from,
)
from health_score.deadline import Deadline, DeadlineExceeded
from health_score.loaders.alerts_output import LoadedAlerts, load_alerts_config, run_alerts
from health_score.loaders.artifacts import (
    MANIFEST,
    LocalRunStore,
    RedactingRunWriter,
    RunStore,
    RunWriter,
    StoreError,
    csv_bytes,
    json_bytes,
    open_binary,
)
from health_score.loaders.changes_output import PreviousRun, write_changes
from health_score.loaders.csv_output import score_columns, write_bytes_atomic
from health_score.loaders.explanation import EXPLANATION
from health_score.loaders.outcomes_output import write_outcomes
from health_score.loaders.s3_store import S3RunStore
from health_score.loaders.stores import open_store
from health_score.rawfile import raw_header, raw_rows
from health_score.records import (
    NO_CONTEXT,
    NO_SIGNALS,
    Account,
    AccountContext,
    AccountInput,
    MetricValue,
    SignalCounts,
)
from health_score.redact import redact, register_credentials
from health_score.salesforce_ids import is_salesforce_id
from health_score.scoring.composite import AccountScore, Model
from health_score.scoring.spec import ScoringConfig
from health_score.sources.base import Extractor, SourceResult
from health_score.sources.intercom.export import ExportError
from health_score.sources.registry import (
    CREDENTIAL_VARS,
    SOURCES,
    SourceSettings,
    credential_problems,
    load_run_config,
    load_sources,
    providers,
)
from health_score.sources.salesforce.outcome_records import OutcomesReport
from health_score.sources.salesforce.outcome_records import disabled as outcomes_disabled

if TYPE_CHECKING:
    # Live runs only: the HTTP stack (requests, urllib3, stamina) and the vendors' clients are
    # imported where they are used, so a --from-raw run never loads them.
    from health_score.loaders.salesforce import LoadResult

log = logging.getLogger("health_score")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

STATUS_OK = "ok"
STATUS_DEGRADED = "degraded"
STATUS_FAILED = "failed"
STATUS_DISABLED = "disabled"  # a source switched off in sources.yaml (enabled: false)

PERIOD = re.compile(r"(?P<year>\d{4})-(?P<month>0[1-9]|1[0-2])")
DEFAULT_OUTPUT = Path("output/health_scores.csv")
DEFAULT_RUNS_DIR = "output/runs"
#: The demo sandbox's history: two years, so a year of backfilled periods each have their
#: 12-month Salesforce look-back.
DEMO_HISTORY_MONTHS = 24


class UsageError(Exception):
    """Bad command-line usage or input that is not a config file (exit 2)."""


class WriteBack(Protocol):
    """What the pipeline needs from a write-back loader (:class:`SalesforceLoader` in runs)."""

    def load(
        self,
        scores: Sequence[AccountScore],
        accounts: Mapping[str, Account],
        *,
        period: str,
        scoring_date: date,
        run_id: str,
        config_hash: str,
        previous_final: Mapping[str, Decimal | None] | None = None,
    ) -> LoadResult: ...


@dataclass(frozen=True, slots=True)
class RunOptions:
    config_dir: Path = Path("config")
    from_raw: Path | None = None
    demo: bool = False
    demo_accounts: int = 250
    #: Months the demo's sandbox has lived through before its date (0: a sandbox without time).
    demo_history_months: int = DEMO_HISTORY_MONTHS
    dry_run: bool = True
    period: str | None = None
    output: Path = DEFAULT_OUTPUT
    #: False: leave ``output`` alone (backfill's older months; their scores stay in their run
    #: folders).
    replace_output: bool = True
    runs_dir: str = DEFAULT_RUNS_DIR
    allow_degraded: bool = False
    env: Mapping[str, str] | None = None  # None → os.environ
    mapping_path: Path | None = None  # replaces config_dir/account_mapping.csv (the demo's)
    #: The data instant, replacing the period's end (``--as-of``, ad-hoc dry runs; the CLI
    #: refuses it with a live write). None → the first instant of the month after the period.
    as_of: datetime | None = None
    #: The run's reference now: which month is the last complete one, and whether ``as_of`` is
    #: in the past. None → the wall clock (the demo: the sandbox date).
    now: datetime | None = None
    progress: bool = False
    #: Replaces run.budget_seconds of sources.yaml (``--budget-seconds``).
    budget_seconds: float | None = None
    #: An outer limit (on Lambda: the time left minus a margin); the smaller budget wins.
    budget_cap_seconds: float | None = None
    budget_cap_origin: str = "an outer time limit"
    #: Intercom's conversation export (CSV) to read instead of its API (``--intercom-export``).
    intercom_export: Path | None = None


@dataclass(frozen=True, slots=True)
class SourceReport:
    """How one source did in a run (the manifest's ``sources`` entry)."""

    status: str  # ok | degraded (ran, but partial: see notes) | failed | inactive | disabled
    accounts_with_data: int = 0
    requests: int = 0
    seconds: float = 0.0
    error: str | None = None
    notes: tuple[str, ...] = ()
    missing_metrics: tuple[str, ...] = ()
    #: The data window the source read (``from`` None: everything before ``to``), if it ran.
    window: tuple[datetime | None, datetime] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "window": None
            if self.window is None
            else {
                "from": None if self.window[0] is None else _instant(self.window[0]),
                "to": _instant(self.window[1]),
            },
            "accounts_with_data": self.accounts_with_data,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "notes": list(self.notes),
            "missing_metrics": list(self.missing_metrics),
        }


@dataclass(frozen=True, slots=True)
class Inputs:
    """What the gathering step produced: accounts to score and how each source did."""

    accounts: Sequence[AccountInput]
    sources: Mapping[str, SourceReport]
    mode: str  # from_raw | demo | live
    scoring: ScoringConfig
    config_sha256: str
    mapped: Mapping[str, Account] = field(default_factory=dict)  # account_id → mapping row
    writeback: Any = None  # WritebackSettings from sources.yaml (live and demo runs)
    warnings: tuple[str, ...] = ()
    config_files: Mapping[str, bytes] = field(default_factory=dict)
    raw_bytes: bytes | None = None  # the --from-raw file as read, kept as the run's raw.csv
    #: The --from-raw file column-wise (``accounts`` are its accounts, built when asked for).
    table: AccountTable | None = None
    #: The run's deadline for extraction (live and demo runs): seconds and where they came from.
    budget: Mapping[str, Any] | None = None
    #: Churn and renewal events known at ``as_of`` (``outcomes.csv``), or why there are none.
    outcomes: OutcomesReport | None = None
    #: ``alerts.yaml`` as parsed and its bytes (no file: no rules).
    alerts: LoadedAlerts | None = None


@dataclass(frozen=True, slots=True)
class RunSummary:
    exit_code: int
    status: str
    run_id: str | None
    period: str | None
    accounts_total: int = 0
    accounts_scored: int = 0
    tiers: Mapping[str, int] = field(default_factory=dict)
    sources: Mapping[str, SourceReport] = field(default_factory=dict)
    output: str | None = None
    run_location: str | None = None
    writeback: Mapping[str, Any] | None = None
    messages: tuple[str, ...] = ()
    as_of: datetime | None = None  # the data instant the period's windows end at

    def as_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "status": self.status,
            "run_id": self.run_id,
            "period": self.period,
            "as_of": None if self.as_of is None else _instant(self.as_of),
            "accounts_total": self.accounts_total,
            "accounts_scored": self.accounts_scored,
            "tiers": dict(self.tiers),
            "sources": {k: v.as_dict() for k, v in self.sources.items()},
            "output": self.output,
            "run_location": self.run_location,
            "writeback": dict(self.writeback) if self.writeback is not None else None,
            "messages": list(self.messages),
        }


# --------------------------------------------------------------------------------------------
# Small pure helpers


def _instant(moment: datetime) -> str:
    """An instant as the manifest writes it: ISO 8601 in UTC (``2026-12-01T00:00:00+00:00``)."""
    return moment.astimezone(UTC).isoformat()


def current_period(now: datetime) -> str:
    """The month ``now`` falls in (UTC)."""
    now = now.astimezone(UTC)
    return f"{now.year:04d}-{now.month:02d}"


def last_complete_period(now: datetime) -> str:
    """The month before the one ``now`` falls in (UTC): a run on 2026-12-03 scores 2026-11."""
    now = now.astimezone(UTC)
    year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    return f"{year:04d}-{month:02d}"


def check_period(period: str) -> str:
    if not PERIOD.fullmatch(period):
        raise UsageError(f"--period must be YYYY-MM (e.g. 2026-11), got {period!r}")
    return period


def period_end(period: str) -> datetime:
    """The first instant (UTC) of the month after ``period``: the period's ``as_of``."""
    year, month = int(check_period(period)[:4]), int(period[5:])
    year, month = (year, month + 1) if month < 12 else (year + 1, 1)
    return datetime(year, month, 1, tzinfo=UTC)


def period_of(as_of: datetime) -> str:
    """The month whose data ends at ``as_of``: the month of the instant just before it."""
    return current_period(as_of - timedelta(microseconds=1))


def resolve_period(
    period: str | None, as_of: datetime | None, now: datetime
) -> tuple[str, datetime]:
    """The run's period and data instant.

    ``--as-of`` wins when given (the period defaults to the month it ends); otherwise the
    period's end, the period being the last complete month by default. A period that has not
    ended by ``now`` is refused: its data would change after the run.
    """
    if as_of is not None:
        if as_of.tzinfo is None:
            raise UsageError("as_of must be timezone-aware (UTC)")
        if as_of > now:
            raise UsageError(
                f"--as-of {as_of.astimezone(UTC):%Y-%m-%d} is after the reference now "
                f"{now.astimezone(UTC):%Y-%m-%dT%H:%MZ}: its data does not exist yet"
            )
        return check_period(period) if period else period_of(as_of), as_of.astimezone(UTC)
    chosen = check_period(period) if period else last_complete_period(now)
    end = period_end(chosen)
    if end > now:
        raise UsageError(
            f"--period {chosen} has not ended yet (its data window ends at "
            f"{end:%Y-%m-%dT%H:%MZ}, after the reference now "
            f"{now.astimezone(UTC):%Y-%m-%dT%H:%MZ}); "
            f"score a complete month such as {last_complete_period(now)}, or give --as-of "
            "YYYY-MM-DD for an ad-hoc dry run"
        )
    return chosen, end


def new_run_id(period: str, started: datetime) -> str:
    return f"{period}_{started:%Y%m%dT%H%M%SZ}_{secrets.token_hex(3)}"


def merge_sources(
    accounts: Sequence[Account],
    results: Mapping[str, SourceResult],
    unavailable: frozenset[str],
) -> tuple[AccountInput, ...]:
    """Combine every source's metrics and signals into one input per account.

    ``unavailable`` (the metrics of failed sources) applies to every account; a source's own
    per-account ``unavailable`` metrics (e.g. beyond a truncated Look's cut) are added to it.
    """
    merged: list[AccountInput] = []
    for account in accounts:
        metrics: dict[str, MetricValue] = {}
        signals: SignalCounts = NO_SIGNALS
        context: AccountContext = NO_CONTEXT
        mine = unavailable
        for result in results.values():
            metrics.update(result.metrics.get(account.account_id, {}))
            context = result.context.get(account.account_id, context)
            signals = signals + result.signals.get(account.account_id, NO_SIGNALS)
            if account.account_id in result.unavailable:
                mine = mine | result.unavailable[account.account_id]
        merged.append(
            AccountInput(
                account_id=account.account_id,
                account_name=account.account_name,
                segment=account.segment,
                metrics=metrics,
                signals=signals,
                unavailable=mine,
                context=context,
            )
        )
    return tuple(merged)


def tier_counts(counts: Mapping[str, int], labels: Sequence[str]) -> dict[str, int]:
    """Tier → accounts, in the order of the config's tiers (best first)."""
    ordered = {t: counts[t] for t in labels if counts.get(t)}
    ordered.update({t: c for t, c in counts.items() if t not in ordered})
    return ordered


def run_status(sources: Mapping[str, SourceReport]) -> str:
    """failed when every active source failed; degraded when one failed or returned partial
    data (e.g. a Look reached its row limit); else ok."""
    active = [s for s in sources.values() if s.status not in ("inactive", STATUS_DISABLED)]
    failed = [s for s in active if s.status == STATUS_FAILED]
    if active and len(failed) == len(active):
        return STATUS_FAILED
    partial = [s for s in active if s.status == STATUS_DEGRADED]
    # A source switched off in sources.yaml whose metrics are weighted: inputs not read.
    partial += [s for s in sources.values() if s.status == STATUS_DISABLED and s.missing_metrics]
    return STATUS_DEGRADED if failed or partial else STATUS_OK


# --------------------------------------------------------------------------------------------
# Gathering inputs (the imperative shell before scoring)


def run_budget(configured: float, options: RunOptions) -> tuple[float, str]:
    """The run's budget in seconds and where it came from: ``--budget-seconds`` replaces the
    configured one; an outer cap (Lambda's time left minus the margin) wins when smaller."""
    seconds, origin = configured, "run.budget_seconds"
    if options.budget_seconds is not None:
        seconds, origin = options.budget_seconds, "--budget-seconds"
    if options.budget_cap_seconds is not None and options.budget_cap_seconds < seconds:
        seconds, origin = max(options.budget_cap_seconds, 0.0), options.budget_cap_origin
    return seconds, origin


def _stopped(extractor: Extractor, deadline: Deadline, started: float) -> SourceReport:
    message = deadline.message()
    log.error("source %s stopped: %s", extractor.name, message)
    return SourceReport(
        STATUS_FAILED, 0, extractor.requests_made, time.monotonic() - started, message
    )


def _extract_all(
    extractors: Sequence[Extractor],
    accounts: Sequence[Account],
    progress: Callable[[str], None],
    deadline: Deadline | None = None,
) -> tuple[dict[str, SourceResult], dict[str, SourceReport]]:
    """Run every active source concurrently; a failing source never stops the others.

    At the ``deadline`` every source still running is reported failed and the run goes on
    without it. Its thread is a daemon left to stop by itself (its HTTP client checks the same
    deadline before each attempt and bounds each request by it); whatever it returns later is
    dropped, and it never keeps the run, or the process, from finishing.
    """
    results: dict[str, SourceResult] = {}
    reports: dict[str, SourceReport] = {}
    started = time.monotonic()

    def one(extractor: Extractor) -> tuple[str, SourceResult | None, SourceReport]:
        started = time.monotonic()
        progress(f"{extractor.name}: extracting…")
        try:
            result = extractor.extract(accounts)
        except DeadlineExceeded:
            progress(f"{extractor.name}: STOPPED at the deadline")
            assert deadline is not None  # only a deadline raises it
            return extractor.name, None, _stopped(extractor, deadline, started)
        except Exception as exc:  # a source failing as a whole is reported, not raised
            seconds = time.monotonic() - started
            error = redact(str(exc))  # it goes to the log, the summary and the manifest
            log.error("source %s failed: %s", extractor.name, error)
            progress(f"{extractor.name}: FAILED after {seconds:.1f}s")
            return (
                extractor.name,
                None,
                SourceReport(STATUS_FAILED, 0, extractor.requests_made, seconds, error),
            )
        seconds = time.monotonic() - started
        for note in result.notes:
            log.info("%s: %s", extractor.name, note)  # also in the manifest
        progress(
            f"{extractor.name}: {result.accounts_with_data} accounts, "
            f"{result.requests} requests, {seconds:.1f}s"
        )
        return (
            extractor.name,
            result,
            SourceReport(
                STATUS_DEGRADED if result.degraded else STATUS_OK,
                result.accounts_with_data,
                result.requests,
                seconds,
                None,
                tuple(result.notes),
                tuple(sorted(result.missing_metrics)),
                result.window,
            ),
        )

    done: queue.Queue[tuple[str, SourceResult | None, SourceReport]] = queue.Queue()
    for extractor in extractors:
        threading.Thread(
            target=lambda e: done.put(one(e)),
            args=(extractor,),
            name=f"source-{extractor.name}",
            daemon=True,
        ).start()
    while len(reports) < len(extractors):
        try:
            name, result, report = done.get(
                timeout=None if deadline is None else deadline.remaining()
            )
        except queue.Empty:  # the deadline passed
            break
        reports[name] = report
        if result is not None:
            results[name] = result
    for extractor in extractors:
        if extractor.name not in reports:
            assert deadline is not None  # without one, every source reported above
            progress(f"{extractor.name}: STOPPED at the deadline")
            reports[extractor.name] = _stopped(extractor, deadline, started)
    return results, reports


def gather(
    options: RunOptions,
    as_of: datetime,
    progress: Callable[[str], None],
    extractors: Sequence[Extractor] | None = None,
    *,
    started: float | None = None,
) -> Inputs:
    """Config and extraction (or the raw file): everything scoring needs.

    ``extractors`` replaces the ones activated from the environment's credentials. The run's
    deadline counts from ``started`` (monotonic seconds; now unless given).
    """
    if options.from_raw is not None:
        # Each config file is read once: what is parsed is what is hashed and copied.
        names = [WEIGHTS_FILE, THRESHOLDS_FILE]
        files = read_config_files(options.config_dir, [*names, SOURCES_FILE])
        scoring = scoring_from(files)
        raw = read_raw_table(options.from_raw, scoring)
        alerts = load_alerts_config(options.config_dir, scoring.tier_labels)
        table = raw.accounts
        # Scores of a raw file can be written back too: rows whose account_id is a Salesforce id.
        mapped = (
            {}  # only write-back reads it
            if options.dry_run
            else {
                account_id: Account(account_id, name, segment, sf_account_id=account_id)
                for account_id, name, segment in zip(
                    table.ids, table.names, table.segment_names, strict=True
                )
                if is_salesforce_id(account_id)
            }
        )
        return Inputs(
            accounts=table.accounts(),
            sources={},
            mode="from_raw",
            scoring=scoring,
            config_sha256=files.sha256(names),
            mapped=mapped,
            writeback=None
            if options.dry_run
            else load_sources(
                options.config_dir, ("salesforce",), missing_ok=True, files=files
            ).writeback,
            warnings=(*scoring.warnings, *raw.warnings),
            config_files=files.only(names),
            raw_bytes=raw.source_bytes,
            table=table,
            outcomes=outcomes_disabled("scored from a raw file (--from-raw): Salesforce not read"),
            alerts=alerts,
        )
    env = os.environ if options.env is None else options.env
    config = load_run_config(options.config_dir, mapping_path=options.mapping_path)
    # alerts.yaml, read once and checked against the tiers before any vendor is called.
    alerts = load_alerts_config(options.config_dir, config.scoring.tier_labels)
    problems = credential_problems(env) if extractors is None else []
    if problems:
        raise UsageError("; ".join(problems))
    mode = "demo" if options.mapping_path is not None and options.demo else "live"
    seconds, origin = run_budget(config.sources.run.budget_seconds, options)
    deadline = Deadline(seconds, origin=origin, start=started)
    if extractors is None:
        from health_score.sources.extractors import activate

        exported = options.intercom_export is not None  # Intercom needs no credentials then
        _require_credentials(config, env, exported)
        active, inactive = activate(
            config.sources,
            env,
            as_of=as_of,
            deadline=deadline,
            now=options.now,
            intercom_export=options.intercom_export,
        )
    else:
        active = list(extractors)
        inactive = [name for name in SOURCES if name not in {e.name for e in active}]
    inputs = _gather_live(config, active, inactive, mode, progress, deadline)
    return dataclasses.replace(inputs, alerts=alerts)


def _require_credentials(
    config: AppConfig[SourceSettings], env: Mapping[str, str], intercom_exported: bool = False
) -> None:
    """Every source the mapping maps accounts to has complete credentials or is switched off
    (``enabled: false``); misspelt variable names are answered with the closest known one.
    Intercom read from an export file needs none."""
    from health_score.sources.credentials import check_credentials, missing_credentials

    accounts = config.accounts
    if intercom_exported:
        accounts = tuple(dataclasses.replace(a, intercom_company_id=None) for a in accounts)
    check = check_credentials(config.sources, accounts, env)
    for hint in check.hints:
        log.warning("%s", hint)
    if check.problems:
        lines = [*check.problems, *check.hints]
        if all(missing_credentials(name, env) is not None for name in SOURCES):
            lines.append(
                "no source has credentials in the environment: set the variables in "
                ".env.example, score a file with --from-raw RAW.csv, or try the built-in "
                "demo: health-score run --dry-run --demo"
            )
        raise UsageError("credentials missing:\n  " + "\n  ".join(lines))


def _disabled_report(config: AppConfig[SourceSettings], name: str) -> SourceReport:
    """A source switched off in sources.yaml: its weighted metrics are unavailable."""
    weighted = {m.name for d in config.scoring.dimensions.values() for m in d.metrics if m.weight}
    produced = sorted(
        metric
        for metric, sources in providers(config.sources).items()
        if name in sources and metric in weighted
    )
    note = f"disabled by config ({SOURCES_FILE}: {name}.enabled: false)"
    if produced:
        note += f"; its weighted metrics are unavailable: {', '.join(produced)}"
    return SourceReport(STATUS_DISABLED, notes=(note,), missing_metrics=tuple(produced))


def _gather_live(
    config: AppConfig[SourceSettings],
    extractors: Sequence[Extractor],
    inactive: Sequence[str],
    mode: str,
    progress: Callable[[str], None],
    deadline: Deadline | None = None,
) -> Inputs:
    if not extractors:
        raise UsageError(
            "no source has credentials in the environment, so there is nothing to extract. "
            "Set the variables in .env.example (e.g. INTERCOM_API_TOKEN, JIRA_BASE_URL/"
            "JIRA_EMAIL/JIRA_API_TOKEN, LOOKER_*, SF_*), score a file with --from-raw RAW.csv, "
            "or try the built-in demo: health-score run --dry-run --demo"
        )

    active_names = [e.name for e in extractors]
    log.info(
        "sources active: %s; inactive (no credentials): %s",
        ", ".join(active_names),
        ", ".join(inactive) or "none",
    )
    outcomes = _start_outcomes(config, extractors, deadline)
    results, reports = _extract_all(extractors, config.accounts, progress, deadline)
    unavailable: set[str] = set()
    for extractor in extractors:
        if reports[extractor.name].status == STATUS_FAILED:
            unavailable |= extractor.provides
    for name in inactive:
        if getattr(config.sources[name], "enabled", True):
            reports[name] = SourceReport("inactive")
        else:
            reports[name] = _disabled_report(config, name)
            unavailable |= set(reports[name].missing_metrics)
    ordered = {name: reports[name] for name in SOURCES if name in reports}
    names = [WEIGHTS_FILE, THRESHOLDS_FILE, SOURCES_FILE]
    return Inputs(
        accounts=merge_sources(config.accounts, results, frozenset(unavailable)),
        sources=ordered,
        mode=mode,
        scoring=config.scoring,
        config_sha256=config.sha256,
        mapped={a.account_id: a for a in config.accounts},
        writeback=config.sources.writeback,
        warnings=config.scoring.warnings,
        config_files={n: config.files[n] for n in names if n in config.files},
        budget=None
        if deadline is None
        else {"seconds": deadline.seconds, "origin": deadline.origin},
        outcomes=outcomes(),
    )


def _start_outcomes(
    config: AppConfig[SourceSettings],
    extractors: Sequence[Extractor],
    deadline: Deadline | None,
) -> Callable[[], OutcomesReport]:
    """Start reading the outcomes beside the extraction (the Salesforce extractor's settings,
    credentials and instants); the returned call waits for them, until the deadline at most."""
    from health_score.sources.salesforce.extractor import SalesforceExtractor
    from health_score.sources.salesforce.outcomes import OutcomesReader

    extractor = next((e for e in extractors if isinstance(e, SalesforceExtractor)), None)
    if extractor is None:
        section = config.sources["salesforce"]
        why = (
            f"salesforce.enabled is false in {SOURCES_FILE}"
            if not getattr(section, "enabled", True)
            else "Salesforce is not configured (no SF_* credentials)"
        )
        report = outcomes_disabled(why)
        return lambda: report
    reader = OutcomesReader.like(extractor)
    accounts = config.accounts
    box: queue.Queue[OutcomesReport] = queue.Queue()
    threading.Thread(
        target=lambda: box.put(reader.read(accounts)), name="salesforce-outcomes", daemon=True
    ).start()

    def wait() -> OutcomesReport:
        try:
            return box.get(timeout=None if deadline is None else deadline.remaining())
        except queue.Empty:
            assert deadline is not None  # without one, the reader always answers
            log.error("salesforce outcomes stopped: %s", deadline.message())
            return OutcomesReport("failed", error=deadline.message())

    return wait


# --------------------------------------------------------------------------------------------
# Scoring (pure) and outputs


def score_and_write(
    writer: RunWriter,
    accounts: AccountTable | Sequence[AccountInput],
    model: Model,
    *,
    keep: bool = False,
    exact: bool = False,
) -> ScoredBatch:
    """Score every account and write the run's explanation file (``metrics.npz``).

    Scoring is array-wise and checked against the exact rule (:mod:`health_score.batch`); with
    ``exact`` every account takes the ``Decimal`` path. With ``keep`` (a run that will write
    back), the full scores are kept too, so write-back reuses them instead of scoring again.
    One account's failure is listed and never stops the others.
    """
    batch = score_batch(accounts, model, keep=keep, exact=exact)
    with open_binary(writer, EXPLANATION) as handle:
        batch.write_explanation(handle)
    return batch


def write_run_files(writer: RunWriter, inputs: Inputs, scores: bytes, model: Model) -> None:
    """raw.csv, scores.csv (``scores`` is its bytes) and the config the run used."""
    metrics = model.config.metric_names
    if inputs.raw_bytes is not None:
        writer.write_bytes("raw.csv", inputs.raw_bytes)  # --from-raw: the validated input as is
    else:
        writer.write_bytes(
            "raw.csv", csv_bytes(raw_header(metrics), raw_rows(inputs.accounts, metrics))
        )
    writer.write_bytes("scores.csv", scores)
    for name, data in inputs.config_files.items():
        writer.write_bytes(f"config/{name}", data)


def _writable_folder(path: Path, flag: str, given: Path | str) -> None:
    """``path`` is, or can be created as, a folder this process may write in."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{flag} {given}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {given}: {existing} is not writable")


def check_output(output: Path) -> None:
    """``--output`` names a file that can be written (checked before any vendor is called)."""
    if output.is_dir():
        raise UsageError(
            f"--output {output} is a folder; give a file path such as "
            f"{output / 'health_scores.csv'}"
        )
    _writable_folder(output.parent, "--output", output)


def replaces_output(options: RunOptions, status: str) -> bool:
    """Whether this run's scores replace ``--output``: ok, or degraded with --allow-degraded."""
    return status == STATUS_OK or (status == STATUS_DEGRADED and options.allow_degraded)


def writes_back(options: RunOptions, status: str) -> bool:
    """Whether this run will write to Salesforce (not dry, not failed, degraded only if allowed)."""
    if options.dry_run or status == STATUS_FAILED:
        return False
    return status != STATUS_DEGRADED or options.allow_degraded


def _previous_finals(
    store: RunStore, compared: PreviousRun | None, period: str
) -> dict[str, Decimal | None] | None:
    """Each account's final score in the run ``changes.csv`` compared with, when that run is of
    an earlier period (the Account mirror's change); None otherwise or when it cannot be read."""
    if compared is None or compared.period >= period:
        return None
    if not isinstance(store, LocalRunStore | S3RunStore):
        return None
    from health_score.loaders.salesforce import previous_finals

    try:
        data = store.read(compared.run_id, "scores.csv")
        return None if data is None else previous_finals(data)
    except (StoreError, ValueError) as exc:
        log.warning("run %s: %s; the Account mirror's change is cleared", compared.run_id, exc)
        return None


def _writeback(
    options: RunOptions,
    inputs: Inputs,
    scores: Sequence[AccountScore],
    period: str,
    run_id: str,
    status: str,
    scoring_date: date,
    loader: WriteBack | None,
    previous_final: Mapping[str, Decimal | None] | None = None,
) -> tuple[dict[str, Any] | None, int, list[str]]:
    """Write to Salesforce when allowed; returns (manifest entry, exit code, messages)."""
    if options.dry_run:
        return {"status": "skipped", "reason": "dry run"}, EXIT_OK, []
    if status == STATUS_FAILED:
        return {"status": "skipped", "reason": "run failed"}, EXIT_FAILED, []
    if status == STATUS_DEGRADED and not options.allow_degraded:
        message = (
            "write-back refused: the run is degraded (a source failed or returned partial "
            "data), so scores would be built on partial data; fix the source or re-run with "
            "--allow-degraded"
        )
        log.error(message)
        return {"status": "refused", "reason": message}, EXIT_FAILED, [message]
    if loader is None:
        from health_score.loaders.salesforce import SalesforceLoader

        env = os.environ if options.env is None else options.env
        loader = SalesforceLoader.from_env(inputs.writeback, env)
    if loader is None:
        message = (
            "write-back not possible: this is not a dry run but no Salesforce credentials "
            "are set (see .env.example); nothing was written"
        )
        log.error(message)
        return {"status": "failed", "reason": message}, EXIT_FAILED, [message]
    # The scores are the run's own (kept while scoring); the loader skips (and lists) the
    # accounts without a Salesforce id.
    result = loader.load(
        scores,
        inputs.mapped,
        period=period,
        scoring_date=scoring_date,
        run_id=run_id,
        config_hash=inputs.config_sha256,
        previous_final=previous_final,
    )
    status = "ok" if result.ok else ("stopped" if result.stopped_reason else "failed")
    messages = []
    if not result.ok:
        messages.append(
            f"Salesforce write-back {status}: {result.written} of {result.attempted} written, "
            f"{len(result.failures)} record failure(s)"
            + (f"; {result.stopped_reason}" if result.stopped_reason else "")
        )
    return {"status": status, **result.as_dict()}, (EXIT_OK if result.ok else EXIT_FAILED), messages


def run(
    options: RunOptions,
    *,
    extractors: Sequence[Extractor] | None = None,
    loader: WriteBack | None = None,
    store: RunStore | None = None,
) -> RunSummary:
    """Gather inputs, score, write the CSV, the run folder and (unless dry) Salesforce.

    ``extractors``, ``loader`` and ``store`` replace the ones built from the environment and
    ``options`` (the sources activated by credentials, the Salesforce loader, the runs folder).

    With ``demo``, the sandbox runs for the whole run (extraction and any write-back) and the
    pipeline is pointed at it exactly as at the real services.
    """
    if not options.demo or options.mapping_path is not None:
        # Not a demo, or a demo whose sandbox is already running (``demo_session``).
        return _run(options, extractors, loader, store)
    try:
        with demo_session(options) as demo_options:
            return _run(demo_options, extractors, loader, store)
    except DemoUnavailable as exc:
        return RunSummary(EXIT_USAGE, STATUS_FAILED, None, options.period, messages=(str(exc),))


class DemoUnavailable(Exception):
    """The demo cannot start: the sandbox extra is missing or the config cannot be read."""


@contextlib.contextmanager
def demo_session(options: RunOptions) -> Iterator[RunOptions]:
    """The sandbox started for ``options`` (its portfolio, its history), and the options pointed
    at it exactly as at the real services; stopped on leaving.

    The sandbox lives at the run's reference now (its date) and has lived through
    ``options.demo_history_months`` months before it, so any period of that history is scored
    from its own month's records. Backfill runs many periods in one session.
    """
    try:
        # Only the demo needs the stand-ins (the 'sandbox' extra); the product never imports them.
        from health_score_sandbox.sandbox import Sandbox
    except ImportError as exc:
        raise DemoUnavailable(
            f"the demo needs the 'sandbox' extra ({exc.name or exc} is not installed): "
            "pip install 'health-score-middleware[sandbox]'"
        ) from None
    today = (options.now or options.as_of or datetime.now(UTC)).date()
    months = options.demo_history_months
    _progress_printer(options.progress)(
        f"demo: generating a {options.demo_accounts}-account portfolio"
        + (f" with {months} months of history" if months else "")
        + " and starting the sandbox…"
    )
    try:
        sandbox = Sandbox(
            options.demo_accounts,
            as_of=today,
            config_dir=options.config_dir,
            history_months=months,
        )
    except ConfigError as exc:
        raise DemoUnavailable(str(exc)) from None
    with sandbox:
        # The sandbox's copy of the config: the user's weights and thresholds, field history on
        # (the sandbox's org tracks it), the sandbox's mapping.
        config_dir = sandbox.write_config(sandbox.workdir / "config", options.config_dir)
        yield dataclasses.replace(
            options,
            config_dir=config_dir,
            env={**(options.env or {}), **sandbox.env()},
            mapping_path=config_dir / MAPPING_FILE,
            now=datetime(today.year, today.month, today.day, tzinfo=UTC),
        )


def _run(
    options: RunOptions,
    extractors: Sequence[Extractor] | None,
    loader: WriteBack | None,
    store: RunStore | None,
) -> RunSummary:
    started = datetime.now(UTC)
    clock_started = time.monotonic()  # the run's deadline counts from here
    progress = _progress_printer(options.progress)
    env = os.environ if options.env is None else options.env
    # Before any vendor is called: a credential echoed back is redacted wherever it is quoted.
    register_credentials(env, {name for names in CREDENTIAL_VARS.values() for name in names})
    try:
        now = (options.now or started).astimezone(UTC)
        period, as_of = resolve_period(options.period, options.as_of, now)
        # From here on the options carry the resolved instants (the manifest records them).
        options = dataclasses.replace(options, period=period, as_of=as_of, now=now)
        # Where the results go is checked before any vendor is called.
        if options.replace_output:
            check_output(options.output)
        store = store or open_store(options.runs_dir)
        inputs = gather(options, as_of, progress, extractors, started=clock_started)
    except (ConfigError, UsageError, StoreError, ExportError) as exc:
        return RunSummary(EXIT_USAGE, STATUS_FAILED, None, options.period, messages=(str(exc),))

    status = run_status(inputs.sources)
    run_id = new_run_id(period, started)
    done: dict[str, Any] = {}  # what _record achieved before a store failure, if one comes
    try:
        summary = _record(options, inputs, store, loader, period, run_id, status, started, done)
        return dataclasses.replace(summary, as_of=as_of)
    except StoreError as exc:
        # The run's record cannot be kept (S3: no such bucket, access denied, …): a failed run
        # with its summary, never a traceback. Write-back never starts before the run's files
        # (all but the manifest) are written.
        message = f"the run's files could not be written: {exc}"
        log.error(message)
        writeback = done.get("writeback") or {"status": "skipped", "reason": "run failed"}
        return RunSummary(
            exit_code=EXIT_FAILED,
            status=STATUS_FAILED,
            run_id=run_id,
            period=period,
            accounts_total=len(inputs.accounts),
            sources=inputs.sources,
            output=done.get("output"),
            run_location=done.get("location"),
            writeback=writeback,
            messages=(*inputs.warnings, message),
            as_of=as_of,
        )


def _record(
    options: RunOptions,
    inputs: Inputs,
    store: RunStore,
    loader: WriteBack | None,
    period: str,
    run_id: str,
    status: str,
    started: datetime,
    done: dict[str, Any],
) -> RunSummary:
    """Score, write the run's files and (when allowed) Salesforce, then the manifest.

    ``done`` is filled as steps complete (location, output, writeback), for the caller's
    summary should the store fail part way.
    """
    as_of = options.as_of or started
    # The scoring config parsed while gathering (the same bytes the manifest hashes).
    model = Model(inputs.scoring)
    writer = RedactingRunWriter(store.create_run(run_id))
    done["location"] = writer.location
    env = os.environ if options.env is None else options.env
    batch = score_and_write(
        writer,
        inputs.table if inputs.table is not None else inputs.accounts,
        model,
        keep=writes_back(options, status),
        exact=env.get("HSM_EXACT_SCORING", "") not in {"", "0"},
    )
    scores = batch.scores_csv(score_columns(model.config))
    batch.columns = []  # the bytes are all that is needed from here on
    write_run_files(writer, inputs, scores, model)
    read_outcomes = inputs.outcomes or outcomes_disabled("no sources were read")
    outcomes = write_outcomes(writer, read_outcomes)
    # What the history so far says about the score (the backtest's headline figures).
    validity: dict[str, Any] = {"status": "skipped", "reason": "no outcomes read"}
    if read_outcomes.status == "ok":
        from health_score.backtest import validity_summary
        from health_score.backtest.history import Outcome

        validity = validity_summary(
            store,
            [Outcome(e.account_id, e.event, e.day, e.arr) for e in read_outcomes.events],
            model.config,
        )
    # changes.csv against the previous ok run (a failed run's scores are not compared).
    compared = None
    if status != STATUS_FAILED and batch.arrays is not None:
        compared = write_changes(
            writer,
            store,
            batch.arrays,
            period=period,
            run_id=run_id,
            started_at=started.isoformat(),
        )
    # The current results (--output) are replaced only by a run one may act on; a failed or
    # degraded run keeps its scores in its own folder.
    output: Path | None = None
    if options.replace_output and replaces_output(options, status):
        output = write_bytes_atomic(options.output, scores)
        done["output"] = str(output)
    writeback, exit_code, messages = _writeback(
        options,
        inputs,
        batch.scores,
        period,
        run_id,
        status,
        as_of.date(),
        loader,
        _previous_finals(store, compared, period) if writes_back(options, status) else None,
    )
    done["writeback"] = writeback
    # --- alerts (alerts.csv; Health_Alert__c and Slack when the run may act) ----------------
    alerts: dict[str, Any] = {"status": "skipped", "reason": "run failed"}
    if status != STATUS_FAILED:
        outcome = run_alerts(
            writer=writer,
            store=store,
            loaded=inputs.alerts,
            period=period,
            run_id=run_id,
            scores_csv=scores,
            compared_run=compared.run_id if compared is not None else None,
            tier_labels=model.config.tier_labels,
            min_coverage_pct=model.config.min_coverage_pct,
            send=writes_back(options, status),
            not_sent_reason="dry run" if options.dry_run else f"the run is {status}",
            accounts=inputs.mapped,
            env=env,
            writeback=inputs.writeback,
        )
        alerts, messages = outcome.entry, [*messages, *outcome.messages]
        if not outcome.ok:
            exit_code = EXIT_FAILED
    # -----------------------------------------------------------------------------------------
    if output is None and options.replace_output:
        messages = [
            *messages,
            f"{options.output} was not replaced because the run is {status} (the current "
            "results stay; this run's scores are in its run folder"
            + (", or re-run with --allow-degraded)" if status == STATUS_DEGRADED else ")"),
        ]
    if status == STATUS_FAILED:
        exit_code = EXIT_FAILED
        messages = [*messages, "every active source failed; no scores could be built from data"]

    tiers = tier_counts(batch.tiers, model.config.tier_labels)
    scored = batch.scored
    finished = datetime.now(UTC)
    manifest = {
        "run_id": run_id,
        "status": status,
        "period": period,
        "mode": inputs.mode,
        "dry_run": options.dry_run,
        "allow_degraded": options.allow_degraded,
        "accounts_total": len(inputs.accounts),
        "accounts_scored": scored,
        "accounts_failed": batch.failures,
        "tiers": tiers,
        "sources": {k: v.as_dict() for k, v in inputs.sources.items()},
        "budget": dict(inputs.budget) if inputs.budget is not None else None,
        "writeback": writeback,
        "output": str(output) if output is not None else None,
        "warnings": list(inputs.warnings),
        "config_sha256": inputs.config_sha256,
        "code_version": __version__,
        "as_of": as_of.isoformat(),
        "reference_now": options.now.isoformat() if options.now is not None else None,
        "compared_with": compared.as_dict() if compared is not None else None,
        "alerts": alerts,
        "outcomes": outcomes,
        "validity": validity,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "exit_code": exit_code,
        "messages": messages,
    }
    writer.write_bytes(MANIFEST, json_bytes(manifest))
    return RunSummary(
        exit_code=exit_code,
        status=status,
        run_id=run_id,
        period=period,
        accounts_total=len(inputs.accounts),
        accounts_scored=scored,
        tiers=tiers,
        sources=inputs.sources,
        output=str(output) if output is not None else None,
        run_location=writer.location,
        writeback=writeback,
        messages=tuple(redact(m) for m in (*inputs.warnings, *messages)),
    )


class HealthScoreOrchestrator:
    """The seed's name for the pipeline: holds options, runs once."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options

    def run(self) -> RunSummary:
        return run(self.options)


def _progress_printer(enabled: bool) -> Callable[[str], None]:
    def emit(message: str) -> None:
        if enabled:
            print(f"  … {message}", file=sys.stderr, flush=True)

    return emit
