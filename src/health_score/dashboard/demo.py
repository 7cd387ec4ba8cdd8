"""A first run for a fresh machine: the built-in demo, or the example raw file until the demo's
sandbox is complete. Either way it is the real pipeline (``health_score.pipeline.run``),
dry-run only."""

from __future__ import annotations

import importlib.util
import tempfile
from dataclasses import dataclass
from pathlib import Path

from health_score.pipeline import RunOptions, RunSummary, run
from health_score_sandbox.portfolio import SOURCES

REPO = Path(__file__).resolve().parents[3]
CONFIG_DIR = REPO / "config"
EXAMPLE_RAW = REPO / "examples" / "raw_metrics.csv"
DEFAULT_DEMO_ACCOUNTS = 250


@dataclass(frozen=True, slots=True)
class FirstRun:
    summary: RunSummary
    used: str  # "demo" or "example"
    note: str = ""


def demo_available() -> bool:
    """The demo needs a stand-in for every vendor."""
    return all(
        importlib.util.find_spec(f"health_score_sandbox.{name}") is not None for name in SOURCES
    )


def _output_for(runs_dir: str) -> Path:
    if runs_dir.startswith("s3://"):
        return Path(tempfile.mkdtemp(prefix="hsm-dashboard-")) / "health_scores.csv"
    return Path(runs_dir).parent / "health_scores.csv"


def first_run(
    runs_dir: str, *, accounts: int = DEFAULT_DEMO_ACCOUNTS, config_dir: Path = CONFIG_DIR
) -> FirstRun:
    """Run the demo (or score the example raw file) into ``runs_dir``, never touching Salesforce."""
    output = _output_for(runs_dir)
    note = ""
    if demo_available():
        try:
            summary = run(
                RunOptions(
                    config_dir=config_dir,
                    demo=True,
                    demo_accounts=accounts,
                    dry_run=True,
                    runs_dir=runs_dir,
                    output=output,
                )
            )
        except Exception as exc:  # shown to the user; the example file still gives a first run
            note = f"The demo could not run ({type(exc).__name__}: {exc}); scored the example file."
        else:
            if summary.run_id is not None:
                return FirstRun(summary, "demo")
            note = "The demo could not run (" + "; ".join(summary.messages) + ")."
    else:
        note = "The demo's vendor stand-ins are not all installed yet; scored the example file."
    summary = run(
        RunOptions(
            config_dir=config_dir,
            from_raw=EXAMPLE_RAW,
            dry_run=True,
            runs_dir=runs_dir,
            output=output,
        )
    )
    return FirstRun(summary, "example", note)
