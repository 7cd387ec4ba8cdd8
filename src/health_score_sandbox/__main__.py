"""``python -m health_score_sandbox serve``: run the four stand-ins and print how to use them.

python -m health_score_sandbox serve [--accounts N] [--seed S] [--latency-ms L]
                            [--fault VENDOR:KIND[=VALUE]] [--rate-limit VENDOR:N]
                            [--mapping-dir DIR]
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

from health_score_sandbox.portfolio import DEFAULT_ACCOUNTS, DEFAULT_SEED, SOURCES
from health_score_sandbox.sandbox import Sandbox
from health_score_sandbox.server import FAULT_KINDS, VENDOR_FAULTS, Faults, serve_all
from health_score_sandbox.timeline import CHURN_MODELS, DEFAULT_HISTORY_MONTHS

FAULT_HELP = (
    "make one vendor misbehave (repeatable): down, always_503, storm_429[=K] (the next K "
    "requests answer 429), error_rate_5xx[=F], malformed, auth_rejected, token_expiry[=K] "
    "(tokens expire after K calls), and looker:limit=N (every Look run returns at most N rows, "
    "as an instance row cap would: a Look cut at its row limit makes the run degraded), and "
    "salesforce:hide=OBJECT (the object answers INVALID_TYPE, as one hidden from the "
    "integration user does: its metrics become unavailable and the run degraded), and "
    "salesforce:login_5xx[=STATUS] (the OAuth token endpoint and SOAP login answer STATUS, "
    "default 500, without a login fault: the source fails as 'Salesforce unavailable')"
)


def parse_fault(text: str, faults: dict[str, Faults]) -> None:
    """Parse e.g. ``intercom:down``, ``jira:storm_429=5``, ``looker:limit=100``."""
    vendor, _, kind = text.partition(":")
    kind, _, value = kind.partition("=")
    if vendor not in SOURCES or kind not in FAULT_KINDS:
        raise argparse.ArgumentTypeError(
            f"--fault {text!r}: expected VENDOR:KIND with VENDOR in {list(SOURCES)} and KIND in "
            f"{list(FAULT_KINDS)}"
        )
    if VENDOR_FAULTS.get(kind, vendor) != vendor:
        raise argparse.ArgumentTypeError(
            f"--fault {text!r}: {kind} is a {VENDOR_FAULTS[kind]} fault "
            f"(e.g. {VENDOR_FAULTS[kind]}:{kind}=100)"
        )
    fault = faults.setdefault(vendor, Faults())
    try:
        if kind == "hide":
            if not value.isidentifier():
                raise ValueError(value)
            fault.hidden_objects.append(value)
        elif kind == "login_5xx":
            fault.login_status = int(value or 500)
            if not 500 <= fault.login_status <= 599:
                raise ValueError(value)
        elif kind == "limit":
            fault.row_limit = int(value)
            if fault.row_limit < 1:
                raise ValueError(value)
        elif kind == "storm_429":
            fault.storm_429 = int(value or 10)
        elif kind == "error_rate_5xx":
            fault.error_rate_5xx = float(value or 0.2)
        elif kind == "token_expiry":
            fault.token_expiry_after = int(value or 3)
        else:
            setattr(fault, kind, True)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--fault {text!r}: bad value {value!r}") from None


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m health_score_sandbox") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start all four stand-ins on loopback")
    serve.add_argument("--accounts", type=int, default=DEFAULT_ACCOUNTS)
    serve.add_argument("--seed", type=int, default=DEFAULT_SEED)
    serve.add_argument("--latency-ms", type=float, default=0.0)
    serve.add_argument(
        "--fault", action="append", default=[], metavar="VENDOR:KIND[=VALUE]", help=FAULT_HELP
    )
    serve.add_argument(
        "--rate-limit",
        action="append",
        default=[],
        metavar="VENDOR:N",
        help="requests per 10-second window",
    )
    serve.add_argument(
        "--as-of",
        type=date.fromisoformat,
        default=None,
        metavar="YYYY-MM-DD",
        help="the portfolio's 'today' (default: today, UTC, so that a pipeline run now sees the "
        "data inside its look-back windows)",
    )
    serve.add_argument(
        "--history-months",
        type=int,
        default=DEFAULT_HISTORY_MONTHS,
        metavar="N",
        help="months the portfolio has lived through before its date (latent health, renewals, "
        f"churn, new accounts; default {DEFAULT_HISTORY_MONTHS}; 0: no history, only the last "
        "month's records)",
    )
    serve.add_argument(
        "--churn-model",
        choices=CHURN_MODELS,
        default="health",
        help="health: churn at renewal depends on latent health; random: it does not (default: "
        "%(default)s)",
    )
    serve.add_argument(
        "--mapping-dir",
        type=Path,
        default=Path("output/sandbox"),
        help="where to write the matching account_mapping.csv",
    )
    args = parser.parse_args(argv)
    faults: dict[str, Faults] = {}
    limits: dict[str, int] = {}
    try:
        for text in args.fault:
            parse_fault(text, faults)
        for text in args.rate_limit:
            vendor, _, count = text.partition(":")
            if vendor not in SOURCES or not count.isdigit():
                raise argparse.ArgumentTypeError(f"--rate-limit {text!r}: expected VENDOR:N")
            limits[vendor] = int(count)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    as_of = args.as_of or datetime.now(UTC).date()
    sandbox = Sandbox(
        args.accounts,
        seed=args.seed,
        latency_ms=args.latency_ms,
        faults=faults,
        rate_limits=limits,
        as_of=as_of,
        history_months=max(0, args.history_months),
        churn_model=args.churn_model,
    )
    mapping = sandbox.write_mapping(args.mapping_dir / "account_mapping.csv")
    config_dir = args.mapping_dir

    def ready() -> None:
        for name in ("weights.yaml", "thresholds.yaml", "sources.yaml"):
            source = sandbox.config_dir / name
            (config_dir / name).write_bytes(source.read_bytes())
        print(
            f"# Sandbox: {args.accounts} accounts (seed {args.seed}, as of {as_of}); "
            "Ctrl-C to stop."
        )
        print(f"# Config folder with the matching mapping: {config_dir} ({mapping.name})")
        for vendor, server in sandbox.servers.items():
            print(f"#   {vendor:<11} {server.url}   stats: {server.url}/__sandbox/stats")
        minimum = " ".join(f"{k}={v}" for k, v in sandbox.minimum_requests().items())
        print(f"# minimum requests an ideal extractor needs: {minimum}")
        for key, value in sandbox.env().items():
            print(f"export {key}={shlex.quote(value)}")
        print(
            f"# then: health-score run --dry-run --config-dir {config_dir}",
            flush=True,
        )

    try:
        serve_all(sandbox.servers, ready)
    finally:
        sandbox.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
