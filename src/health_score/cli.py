"""The ``health-score`` command (also ``python -m health_score``).

Subcommands: ``run`` (score every account: extract → score → load), ``backfill`` (a range of
past months, one run each), ``backtest`` (the score against churn), ``check-config``,
``sandbox serve`` (the vendor stand-ins), ``dashboard`` (Streamlit on 127.0.0.1), ``mapping
suggest`` (draft account_mapping.csv rows for review) and ``init``
(a starter config folder). Exit codes: 0 success; 1 the run failed, or write-back was refused or
failed; 2 bad usage or config (nothing was written).

A local ``.env`` file is loaded first (values already in the environment win); AWS Lambda never
reads one (its entry point is :mod:`health_score.aws_lambda`).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path

from health_score import __version__
from health_score.backtest import (
    DEFAULT_HORIZON_DAYS,
    DEFAULT_LEAD_DAYS,
    BacktestOptions,
    backtest_command,
)
from health_score.config import (
    MAPPING_FILE,
    SOURCES_FILE,
    THRESHOLDS_FILE,
    WEIGHTS_FILE,
    ConfigError,
)
from health_score.envfile import load_local_env
from health_score.logging_setup import RedactingFormatter
from health_score.pipeline import (
    DEFAULT_OUTPUT,
    DEFAULT_RUNS_DIR,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    PERIOD,
    RunOptions,
    RunSummary,
    last_complete_period,
    run,
)
from health_score.sources.registry import credential_problems, load_run_config

log = logging.getLogger("health_score")

PROG = "health-score"
DEFAULT_CONFIG_DIR = Path("config")
DEFAULT_DEMO_ACCOUNTS = 250
DASHBOARD_PORT = 8501
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left
STARTER_FILES = (WEIGHTS_FILE, THRESHOLDS_FILE, SOURCES_FILE, MAPPING_FILE)

EXIT_CODES = """\
exit codes:
  0  success (a dry run, or a run whose write-back succeeded)
  1  the run failed, or Salesforce write-back was refused (degraded run) or failed
  2  bad usage or config: nothing was scored or written"""

RUN_EXAMPLES = """\
examples:
  health-score run --dry-run --demo                  the built-in sandbox, no credentials needed
  health-score run --dry-run --demo --accounts 2000  a bigger demo portfolio
  health-score run --dry-run --from-raw examples/raw_metrics.csv
  health-score run --dry-run --config-dir myconfig   extract with the credentials in .env
  health-score run --config-dir myconfig --period 2026-11   … and write back to Salesforce
  health-score run --dry-run --config-dir myconfig --as-of 2026-11-15   an ad-hoc look
"""


def defaults_dir() -> Path:
    """The default config folder shipped inside the package."""
    return Path(str(resources.files("health_score") / "defaults"))


def _config_dir(given: Path | None) -> tuple[Path, bool]:
    """The folder to read (``--config-dir``, else ``./config``, else the built-in defaults)."""
    if given is not None:
        return given, False
    if DEFAULT_CONFIG_DIR.is_dir():
        return DEFAULT_CONFIG_DIR, False
    return defaults_dir(), True


def _no_config_folder() -> str:
    return (
        f"no config folder: {DEFAULT_CONFIG_DIR}/ does not exist here and no --config-dir was "
        f"given. Write a starter folder with `{PROG} init config`, map your accounts in "
        f"config/{MAPPING_FILE}, or try the demo: {PROG} run --dry-run --demo"
    )


# --------------------------------------------------------------------------------------------
# Parser


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' layout."""


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    noise = common.add_mutually_exclusive_group()
    noise.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log more (DEBUG), e.g. every source's paging",
    )
    noise.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log only warnings and errors; the summary is still printed",
    )
    return common


def _config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="config folder (weights.yaml, thresholds.yaml, sources.yaml, account_mapping.csv); "
        "default: ./config, else the built-in defaults for --demo and --from-raw",
    )


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of ``run`` (shared with the legacy ``python -m src.main``)."""
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="score and write the files, but never write to Salesforce",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start the built-in sandbox (synthetic vendors on loopback) and run the real "
        "pipeline against it; needs the 'sandbox' extra",
    )
    parser.add_argument(
        "--accounts",
        type=int,
        default=None,
        metavar="N",
        help=f"number of demo accounts (with --demo; default {DEFAULT_DEMO_ACCOUNTS})",
    )
    parser.add_argument(
        "--from-raw",
        type=Path,
        metavar="RAW.csv",
        help="skip extraction and score a raw-metrics file (a run's raw.csv or your own)",
    )
    parser.add_argument(
        "--intercom-export",
        type=Path,
        metavar="FILE",
        help="read Intercom's conversation export (CSV, one row per conversation) instead of "
        "its API: the same metrics, no Intercom credentials needed (README: Intercom)",
    )
    _config_flag(parser)
    parser.add_argument(
        "--period",
        metavar="YYYY-MM",
        help="the month scored (the key of the Salesforce records); its data windows end at the "
        "first instant of the next month, UTC (default: the last complete month)",
    )
    parser.add_argument(
        "--as-of",
        type=_as_of,
        default=None,
        metavar="YYYY-MM-DD",
        help="end the data windows at midnight UTC of this day instead of the period's end "
        "(ad-hoc dry runs only; recorded in the manifest)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        metavar="FILE",
        help="the scores CSV, replaced atomically (default: %(default)s)",
    )
    parser.add_argument(
        "--runs-dir",
        default=DEFAULT_RUNS_DIR,
        metavar="DIR|s3://BUCKET/PREFIX",
        help="where each run's folder (manifest, scores, metrics, raw, config) is kept "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--allow-degraded",
        action="store_true",
        help="write to Salesforce even when a source failed or returned partial data (the run "
        "is 'degraded')",
    )
    parser.add_argument(
        "--budget-seconds",
        type=_budget,
        default=None,
        metavar="S",
        help="the run's deadline for extraction, in seconds; sources still running then are "
        "stopped and reported failed (default: run.budget_seconds in sources.yaml, 780)",
    )


def _as_of(text: str) -> datetime:
    """``YYYY-MM-DD`` as midnight UTC of that day."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None
    if len(text) != len("2026-11-01"):
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}")
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _budget(text: str) -> float:
    """A positive, finite number of seconds (``inf`` and ``nan`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"expected a positive, finite number of seconds, got {text!r}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Monthly, explainable customer health scores from Intercom, Jira, Looker "
        "and Salesforce: extract → score → load.",
        epilog=f"{RUN_EXAMPLES}\n{EXIT_CODES}",
        formatter_class=_Formatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run_parser = sub.add_parser(
        "run",
        parents=[common],
        formatter_class=_Formatter,
        help="score every account (extract → score → write files → Salesforce)",
        description="Score every mapped account and write the run's files; unless --dry-run, "
        "upsert the scores to Salesforce.",
        epilog=f"{RUN_EXAMPLES}\n{EXIT_CODES}",
    )
    add_run_flags(run_parser)

    check = sub.add_parser(
        "check-config",
        parents=[common],
        formatter_class=_Formatter,
        help="validate a config folder and exit",
        description="Validate every file of a config folder; every problem is listed with its "
        "file, key or row.",
        epilog="examples:\n  health-score check-config\n  health-score check-config "
        "--config-dir myconfig\n\nexit codes:\n  0  the folder is valid\n  2  it is not (each "
        "problem is printed)",
    )
    _config_flag(check)

    sandbox = sub.add_parser(
        "sandbox",
        parents=[common],
        formatter_class=_Formatter,
        add_help=False,
        help="the vendor stand-ins: `health-score sandbox serve --help`",
        description="Run the four vendor stand-ins on loopback (needs the 'sandbox' extra).",
    )
    sandbox.add_argument("sandbox_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    dashboard = sub.add_parser(
        "dashboard",
        parents=[common],
        formatter_class=_Formatter,
        help="open the dashboard (Streamlit, bound to 127.0.0.1)",
        description="Start the Streamlit dashboard on 127.0.0.1 (needs the 'dashboard' extra). "
        "Set DASHBOARD_PASSWORD to require a password.",
        epilog="examples:\n  health-score dashboard\n  health-score dashboard --runs-dir "
        "s3://my-bucket/runs --port 8600",
    )
    dashboard.add_argument(
        "--runs-dir",
        default=None,
        metavar="DIR|s3://BUCKET/PREFIX",
        help=f"the runs to show (default: $HSM_RUNS_DIR, else {DEFAULT_RUNS_DIR})",
    )
    dashboard.add_argument(
        "--port", type=int, default=DASHBOARD_PORT, help="port on 127.0.0.1 (default: %(default)s)"
    )

    backfill = sub.add_parser(
        "backfill",
        parents=[common],
        formatter_class=_Formatter,
        help="score a range of past months, one run per month (dry unless --write)",
        description="Run every month from --from to --to (oldest first) as an ordinary run of "
        "that period, each with its own run folder. Months that already have an ok run are "
        "skipped unless --force, so an interrupted backfill resumes where it stopped. Never "
        "writes Salesforce unless --write.",
        epilog="examples:\n  health-score backfill --demo --last 12          a year of history "
        "on the sandbox\n  health-score backfill --config-dir myconfig --from 2026-01 --to "
        "2026-10\n  health-score backfill --config-dir myconfig --from 2026-06 --to 2026-06 "
        "--force --write\n\nexit codes:\n  0  every month is ok (or already was)\n  1  a month "
        "failed or is degraded (see the table)\n  2  bad usage or config\n  130  interrupted "
        "(run it again to resume)",
    )
    span = backfill.add_mutually_exclusive_group(required=True)
    span.add_argument("--from", dest="first", metavar="YYYY-MM", help="the first month")
    span.add_argument(
        "--last",
        type=int,
        metavar="N",
        help="the last N complete months (instead of --from/--to)",
    )
    backfill.add_argument(
        "--to",
        dest="last_month",
        metavar="YYYY-MM",
        help="the last month (default: the last complete month)",
    )
    backfill.add_argument(
        "--write", action="store_true", help="upsert each month's scores to Salesforce"
    )
    backfill.add_argument(
        "--force", action="store_true", help="re-run months that already have an ok run"
    )
    backfill.add_argument(
        "--demo", action="store_true", help="against the built-in sandbox (its history)"
    )
    backfill.add_argument(
        "--accounts",
        type=int,
        default=None,
        metavar="N",
        help=f"number of demo accounts (with --demo; default {DEFAULT_DEMO_ACCOUNTS})",
    )
    _config_flag(backfill)
    backfill.add_argument(
        "--runs-dir",
        default=DEFAULT_RUNS_DIR,
        metavar="DIR|s3://BUCKET/PREFIX",
        help="where the months' run folders go (default: %(default)s)",
    )
    backfill.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="FILE",
        help="also replace this scores CSV with the newest month's scores (default: leave the "
        "current scores alone)",
    )
    backfill.add_argument(
        "--allow-degraded",
        action="store_true",
        help="with --write: write degraded months too",
    )
    backfill.add_argument(
        "--budget-seconds",
        type=_budget,
        default=None,
        metavar="S",
        help="each month's extraction deadline (default: run.budget_seconds in sources.yaml)",
    )

    backtest = sub.add_parser(
        "backtest",
        parents=[common],
        formatter_class=_Formatter,
        help="does the score predict churn? AUC, churn by tier, capture, per-metric signal",
        description="Judge the run history against churn and renewal outcomes: for each event, "
        "the account's score in the run --lead-days to --horizon-days before it. With "
        "validity: floors in thresholds.yaml, exit 1 when one is missed.",
        epilog="examples:\n  health-score backtest\n  health-score backtest --runs-dir "
        "s3://my-bucket/runs --json output/backtest.json\n  health-score backtest --outcomes "
        "churn_history.csv --from 2025-01\n\nexit codes:\n  0  done (every validity floor "
        "met, or none configured)\n  1  a validity floor was missed or could not be judged\n"
        "  2  bad usage or input",
    )
    backtest.add_argument(
        "--runs-dir",
        default=DEFAULT_RUNS_DIR,
        metavar="DIR|s3://BUCKET/PREFIX",
        help="the run history (default: %(default)s)",
    )
    backtest.add_argument(
        "--horizon-days",
        type=int,
        default=DEFAULT_HORIZON_DAYS,
        metavar="N",
        help="the earliest run used is N days before the event (default: %(default)s)",
    )
    backtest.add_argument(
        "--lead-days",
        type=int,
        default=DEFAULT_LEAD_DAYS,
        metavar="N",
        help="the latest run used is N days before the event (default: %(default)s)",
    )
    backtest.add_argument("--from", dest="first", metavar="YYYY-MM", help="runs from this month")
    backtest.add_argument("--to", dest="last", metavar="YYYY-MM", help="runs up to this month")
    backtest.add_argument(
        "--outcomes",
        type=Path,
        default=None,
        metavar="CSV",
        help="churn/renewal events (account_id, event, date, arr) instead of the latest run's "
        "outcomes.csv",
    )
    backtest.add_argument(
        "--include-degraded", action="store_true", help="use degraded runs too (default: ok only)"
    )
    _config_flag(backtest)
    backtest.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="also write the report as JSON"
    )

    suggest = sub.add_parser(
        "suggest-weights",
        parents=[common],
        formatter_class=_Formatter,
        help="search weights on the older history; report only hold-out figures",
        description="Search weights within bounds on the events before the hold-out (the "
        "runs of the last --holdout-months months), then judge the suggestion on the "
        "hold-out only. A change is recommended only when its hold-out AUC gain's 95 %% "
        "interval lies above 0.",
        epilog="examples:\n  health-score suggest-weights\n  health-score suggest-weights "
        "--group churn_risk --group support_health --write output/weights.yaml\n\nexit "
        "codes:\n  0  done (a recommendation, or the reason there is none)\n  2  bad usage "
        "or input",
    )
    suggest.add_argument(
        "--runs-dir",
        default=DEFAULT_RUNS_DIR,
        metavar="DIR|s3://BUCKET/PREFIX",
        help="the run history (default: %(default)s)",
    )
    suggest.add_argument(
        "--holdout-months",
        type=int,
        default=6,
        metavar="N",
        help="events of runs in the last N months are the hold-out (default: %(default)s)",
    )
    suggest.add_argument(
        "--group",
        action="append",
        default=None,
        metavar="NAME",
        help="a weights.yaml group to search (repeatable; default: health_score, churn_risk)",
    )
    suggest.add_argument(
        "--max-change",
        type=Decimal,
        default=Decimal("0.15"),
        metavar="W",
        help="each weight stays within W of its current value (default: %(default)s)",
    )
    suggest.add_argument(
        "--include-degraded", action="store_true", help="use degraded runs too (default: ok only)"
    )
    suggest.add_argument(
        "--write",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the suggested weights.yaml there (only when a change is recommended)",
    )
    _config_flag(suggest)

    init = sub.add_parser(
        "init",
        parents=[common],
        formatter_class=_Formatter,
        help="write a starter config folder",
        description="Copy the default config (weights, thresholds, sources, an empty account "
        "mapping) and .env.example into DIR.",
        epilog="examples:\n  health-score init config\n  health-score check-config "
        "--config-dir config",
    )
    init.add_argument("directory", type=Path, metavar="DIR", help="folder to create or fill")
    init.add_argument("--force", action="store_true", help="overwrite files that already exist")

    mapping = sub.add_parser(
        "mapping",
        parents=[common],
        formatter_class=_Formatter,
        help="build the account mapping: `health-score mapping suggest --help`",
        description="Help build account_mapping.csv.",
    )
    mapping_sub = mapping.add_subparsers(
        dest="mapping_command", metavar="ACTION", required=True, help="suggest: draft the rows"
    )
    suggest = mapping_sub.add_parser(
        "suggest",
        parents=[common],
        formatter_class=_Formatter,
        help="propose mapping rows from what each system knows, for a person to review",
        description="Read Salesforce accounts, Intercom companies, one Looker Look's customers "
        "and the customers of Jira projects (the sources with credentials in the environment), "
        "and propose account_mapping.csv rows matched by domain, normalised name and customer "
        "number, each with a confidence and its evidence. Writes a new file, never the mapping.",
        epilog="examples:\n  health-score mapping suggest --jira-project SUP --sf-type Customer\n"
        "  health-score mapping suggest --output proposed.csv --looker-look 101\n\nexit codes:\n"
        "  0  the suggestion was written\n  1  a source failed\n  2  bad usage, config, or the "
        "output exists",
    )
    _config_flag(suggest)
    suggest.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="FILE",
        help="where to write (default: account_mapping.suggested.csv in the config folder); "
        "never overwritten",
    )
    suggest.add_argument(
        "--jira-project",
        action="append",
        default=[],
        metavar="KEY",
        help="a Jira project whose customers to read (repeatable)",
    )
    suggest.add_argument(
        "--sf-type",
        action="append",
        default=[],
        metavar="VALUE",
        help="only Salesforce accounts of this Type (repeatable; default: every account)",
    )
    suggest.add_argument(
        "--looker-look", default=None, metavar="ID", help="the Look to read (default: the first)"
    )
    suggest.add_argument(
        "--looker-name-field",
        default=None,
        metavar="VIEW.FIELD",
        help="the Look's field holding the customer's name, if it has one",
    )
    return parser


# --------------------------------------------------------------------------------------------
# Commands


def _log_level(args: argparse.Namespace) -> int:
    if getattr(args, "quiet", False):
        return logging.WARNING
    if getattr(args, "verbose", False):
        return logging.DEBUG
    return logging.INFO


def _configure_logging(level: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    # Every line is redacted (tokens, credentials): a last line of defence, like the Lambda's.
    handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Third-party chatter stays at WARNING unless -v.
    for name in ("urllib3", "botocore", "boto3", "s3transfer"):
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else logging.WARNING)


def print_summary(summary: RunSummary) -> None:
    window = f" (data to {summary.as_of:%Y-%m-%d %H:%M} UTC)" if summary.as_of else ""
    print(f"Run {summary.run_id} — period {summary.period}{window} — status {summary.status}")
    print(f"Accounts: {summary.accounts_scored} scored of {summary.accounts_total}")
    if summary.tiers:
        total = sum(summary.tiers.values()) or 1
        for tier, count in summary.tiers.items():
            print(f"  {tier:<18} {count:>6}  ({Decimal(100 * count) / total:.1f}%)")
    for name, report in summary.sources.items():
        line = f"  source {name:<11} {report.status:<8}"
        if report.status != "inactive":
            line += (
                f" {report.accounts_with_data} accounts with data, "
                f"{report.requests} requests, {report.seconds:.1f}s"
            )
        if report.error:
            line += f" — {report.error}"
        print(line)
    if summary.writeback:
        reason = summary.writeback.get("reason")
        print(
            f"Salesforce write-back: {summary.writeback.get('status')}"
            + (f" ({reason})" if reason else "")
        )
    print(f"Scores CSV: {summary.output or f'not replaced (the run is {summary.status})'}")
    print(f"Run folder: {summary.run_location}")


def run_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.accounts is not None and not args.demo:
        parser.error("--accounts only applies with --demo")
    if args.demo and args.from_raw:
        parser.error("--demo and --from-raw are alternatives; choose one")
    if args.intercom_export and args.from_raw:
        parser.error("--intercom-export is read when extracting; --from-raw skips extraction")
    if args.accounts is not None and args.accounts < 1:
        parser.error("--accounts must be at least 1")
    if args.as_of is not None and not args.dry_run:
        # A live write is keyed by period: it must carry that period's data, nothing ad hoc.
        parser.error(
            "--as-of is for ad-hoc dry runs: add --dry-run, or drop --as-of to write the "
            "period (its data windows end at the first instant of the next month)"
        )
    config_dir, builtin = _config_dir(args.config_dir)
    if builtin and not (args.demo or args.from_raw):
        print(f"error: {_no_config_folder()}", file=sys.stderr)
        return EXIT_USAGE
    if builtin:
        log.info("using the built-in default config (%s init DIR writes a copy to edit)", PROG)
    options = RunOptions(
        config_dir=config_dir,
        from_raw=args.from_raw,
        demo=args.demo,
        demo_accounts=args.accounts or DEFAULT_DEMO_ACCOUNTS,
        dry_run=args.dry_run,
        period=args.period,
        as_of=args.as_of,
        output=args.output,
        runs_dir=args.runs_dir,
        allow_degraded=args.allow_degraded,
        progress=sys.stderr.isatty(),
        budget_seconds=args.budget_seconds,
        intercom_export=args.intercom_export,
    )
    summary = run(options)
    if summary.run_id is None:
        for message in summary.messages:
            print(f"error: {message}", file=sys.stderr)
        return summary.exit_code
    for message in summary.messages:
        print(f"note: {message}", file=sys.stderr)
    print_summary(summary)
    return summary.exit_code


def backfill_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from health_score.backfill import MAX_MONTHS, BackfillOptions, run_backfill

    if args.accounts is not None and not args.demo:
        parser.error("--accounts only applies with --demo")
    if args.accounts is not None and args.accounts < 1:
        parser.error("--accounts must be at least 1")
    if args.last is not None and (args.last < 1 or args.last > MAX_MONTHS):
        parser.error(f"--last must be between 1 and {MAX_MONTHS}")
    if args.last is not None and args.last_month is not None:
        parser.error("--to goes with --from; --last counts back from the last complete month")
    config_dir, builtin = _config_dir(args.config_dir)
    if builtin and not args.demo:
        print(f"error: {_no_config_folder()}", file=sys.stderr)
        return EXIT_USAGE
    now = datetime.now(UTC)
    newest = args.last_month or last_complete_period(now)
    first = args.first
    if args.last is not None:
        year, month = int(newest[:4]), int(newest[5:])
        index = year * 12 + month - 1 - (args.last - 1)
        first = f"{index // 12:04d}-{index % 12 + 1:02d}"
    for flag, value in (("--from", first), ("--to", newest)):
        if not PERIOD.fullmatch(value):
            parser.error(f"{flag} must be YYYY-MM (e.g. 2026-11), got {value!r}")
    options = BackfillOptions(
        first=first,
        last=newest,
        run=RunOptions(
            config_dir=config_dir,
            demo=args.demo,
            demo_accounts=args.accounts or DEFAULT_DEMO_ACCOUNTS,
            dry_run=not args.write,
            output=args.output or DEFAULT_OUTPUT,
            runs_dir=args.runs_dir,
            allow_degraded=args.allow_degraded,
            progress=sys.stderr.isatty(),
            budget_seconds=args.budget_seconds,
            now=now,
        ),
        write=args.write,
        force=args.force,
        replace_output=args.output is not None,
    )
    # Each month logs like a run; the table says it all, so only warnings unless -v.
    if not getattr(args, "verbose", False):
        logging.getLogger("health_score").setLevel(logging.WARNING)
    return run_backfill(options, sys.stdout, sys.stderr, live=True)


def backtest_cli(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    for flag, value in (("--from", args.first), ("--to", args.last)):
        if value is not None and not PERIOD.fullmatch(value):
            parser.error(f"{flag} must be YYYY-MM (e.g. 2026-11), got {value!r}")
    options = BacktestOptions(
        runs_dir=args.runs_dir,
        lead_days=args.lead_days,
        horizon_days=args.horizon_days,
        first=args.first,
        last=args.last,
        outcomes_path=args.outcomes,
        include_degraded=args.include_degraded,
        config_dir=args.config_dir,
        json_path=args.json,
    )
    return backtest_command(options, sys.stdout, sys.stderr)


def check_config(config_dir: Path | None) -> int:
    directory, builtin = _config_dir(config_dir)
    if builtin:
        print(f"error: {_no_config_folder()}", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = load_run_config(directory)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    problems = credential_problems(os.environ)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return EXIT_USAGE
    print(
        f"config OK: {directory} ({len(config.accounts)} accounts, "
        f"{len(config.scoring.metric_names)} metrics, sha256 {config.sha256[:12]})"
    )
    for warning in config.scoring.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    # Credentials are the environment's, not the folder's: said here, refused by a live run.
    from health_score.sources.credentials import check_credentials

    credentials = check_credentials(config.sources, config.accounts, os.environ)
    for line in (*credentials.problems, *credentials.hints):
        print(f"note: {line}", file=sys.stderr)
    for name in credentials.disabled:
        print(f"note: {name} is disabled by config ({SOURCES_FILE}: {name}.enabled: false)")
    return EXIT_OK


def sandbox_command(argv: Sequence[str]) -> int:
    try:
        from health_score_sandbox.__main__ import main as sandbox_main
    except ImportError as exc:
        print(f"error: {_extra_missing('sandbox', exc)}", file=sys.stderr)
        return EXIT_USAGE
    return sandbox_main(list(argv), prog=f"{PROG} sandbox")


def _extra_missing(extra: str, exc: ImportError) -> str:
    return (
        f"this command needs the '{extra}' extra ({exc.name or exc} is not installed): "
        f"pip install 'health-score-middleware[{extra}]'"
    )


def dashboard_command(args: argparse.Namespace) -> int:
    try:
        import streamlit  # noqa: F401  (only to tell whether the extra is installed)
    except ImportError as exc:
        print(f"error: {_extra_missing('dashboard', exc)}", file=sys.stderr)
        return EXIT_USAGE
    app = Path(str(resources.files("health_score.dashboard") / "app.py"))
    from health_score.dashboard import streamlit_command

    command = streamlit_command(app, args.port)
    if args.runs_dir:
        command += ["--", "--runs-dir", str(args.runs_dir)]
    if os.name == "posix":
        # Streamlit replaces this process, so a signal to it (Ctrl-C, kill, a supervisor's
        # SIGTERM) reaches the server itself and never leaves it running orphaned.
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, command)  # noqa: S606 - our own interpreter and app, no shell
    try:
        return subprocess.call(command)  # noqa: S603 - our own interpreter and app, no shell
    except KeyboardInterrupt:
        return EXIT_OK


def init_command(directory: Path, *, force: bool) -> int:
    source = defaults_dir()
    wanted = [*STARTER_FILES, ".env.example"]
    existing = [name for name in wanted if (directory / name).exists()]
    if existing and not force:
        print(
            f"error: {directory} already has {', '.join(existing)}; nothing was written "
            "(use --force to overwrite)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name in STARTER_FILES:
            shutil.copyfile(source / name, directory / name)
        shutil.copyfile(source / "env.example", directory / ".env.example")
    except OSError as exc:
        print(f"error: cannot write {directory}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"Wrote a starter config to {directory}/:")
    for name in wanted:
        print(f"  {directory / name}")
    print(
        "Next: map your accounts in "
        f"{directory / MAPPING_FILE}, copy .env.example to .env and fill in credentials, then\n"
        f"  {PROG} check-config --config-dir {directory}\n"
        f"  {PROG} run --dry-run --config-dir {directory}"
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (``health-score backtest | head``): stop quietly, as cat does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(_log_level(args))
    if args.command == "sandbox":
        return sandbox_command(args.sandbox_args)
    load_local_env()
    if args.command == "run":
        return run_command(args, parser)
    if args.command == "check-config":
        return check_config(args.config_dir)
    if args.command == "dashboard":
        return dashboard_command(args)
    if args.command == "backfill":
        return backfill_command(args, parser)
    if args.command == "backtest":
        return backtest_cli(args, parser)
    if args.command == "mapping":
        return mapping_suggest_command(args)
    if args.command == "suggest-weights":
        from health_score.dashboard.validity import DEFAULT_SEARCH_GROUPS, suggest_command

        if args.holdout_months < 1:
            parser.error("--holdout-months must be at least 1")
        return suggest_command(
            args.runs_dir,
            config_dir=args.config_dir,
            holdout_months=args.holdout_months,
            include_degraded=args.include_degraded,
            groups=args.group or DEFAULT_SEARCH_GROUPS,
            max_change=args.max_change,
            write=args.write,
            out=sys.stdout,
            err=sys.stderr,
        )
    return init_command(args.directory, force=args.force)  # argparse allows no other command


def mapping_suggest_command(args: argparse.Namespace) -> int:
    """``mapping suggest``: read every source with credentials, write the proposed rows."""
    from health_score import mapping_suggest as ms
    from health_score.config import load_scoring_config
    from health_score.sources.http import SourceError
    from health_score.sources.registry import load_sources

    directory, builtin = _config_dir(args.config_dir)
    if builtin:
        print(f"error: {_no_config_folder()}", file=sys.stderr)
        return EXIT_USAGE
    output = args.output or directory / "account_mapping.suggested.csv"
    if output.exists():
        print(
            f"error: {output} exists: the suggestion never overwrites a file; move it or give "
            "another --output",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        settings = load_sources(directory)
        segments = load_scoring_config(directory).segments
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    if all(credential_problems_for(name) for name in ("salesforce", "intercom", "looker", "jira")):
        print(
            "error: no source has credentials in the environment (see .env.example)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        records, counts = ms.read_all(
            settings,
            os.environ,
            segments=segments,
            projects=args.jira_project,
            types=args.sf_type,
            look_id=args.looker_look,
            name_field=args.looker_name_field,
        )
        rows = ms.suggest(records)
        ms.write_new(output, ms.rows_csv(rows), directory / MAPPING_FILE)
    except ms.SuggestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    read = ", ".join(f"{name} {count}" for name, count in counts.items())
    matched = sum(1 for row in rows if row["match"] != "unmatched")
    print(f"Read: {read}")
    print(f"Suggested {len(rows)} rows ({matched} linking two or more systems): {output}")
    print("Review them, then copy the rows you accept into the mapping.")
    return EXIT_OK


def credential_problems_for(source: str) -> str | None:
    from health_score.sources.credentials import missing_credentials

    return missing_credentials(source, os.environ)


# --------------------------------------------------------------------------------------------
# The seed document's command: python3 -m src.main --dry-run [...]


def legacy_main(argv: Sequence[str] | None = None) -> int:
    """``python -m src.main`` with the first wave's flags (``--check-config`` included)."""
    parser = argparse.ArgumentParser(
        prog="python -m src.main",
        description=f"Legacy form of `{PROG} run` (and `{PROG} check-config` with --check-config).",
        epilog=EXIT_CODES,
        formatter_class=_Formatter,
    )
    add_run_flags(parser)
    parser.add_argument(
        "--check-config", action="store_true", help="only validate the config folder"
    )
    args = parser.parse_args(argv)
    _configure_logging(logging.INFO)
    load_local_env()
    if args.check_config:
        return check_config(args.config_dir)
    return run_command(args, parser)
