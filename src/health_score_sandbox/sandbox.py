"""All four stand-ins together: one portfolio, four servers, one environment to point at them."""

from __future__ import annotations

import importlib
import ssl
import tempfile
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import trustme
import yaml

from health_score_sandbox.config import DEFAULT_CONFIG_DIR, source_section
from health_score_sandbox.portfolio import (
    DEFAULT_ACCOUNTS,
    DEFAULT_SEED,
    SOURCES,
    Portfolio,
    build_portfolio,
)
from health_score_sandbox.server import Faults, Knobs, VendorServer
from health_score_sandbox.slack import SlackApp
from health_score_sandbox.slack import environment as slack_environment
from health_score_sandbox.timeline import Timeline, build_timeline, slices


def vendor_module(name: str) -> ModuleType:
    return importlib.import_module(f"health_score_sandbox.{name}")


def load_source_settings(
    config_dir: Path = DEFAULT_CONFIG_DIR, only: tuple[str, ...] = SOURCES
) -> dict[str, Any]:
    """Each stand-in's own settings (``<vendor>.Settings``) read from ``sources.yaml``.

    Only the vendors in ``only``; keys a stand-in does not need are ignored, absent ones take
    their documented defaults.
    """
    return {
        name: vendor_module(name).Settings.of(source_section(config_dir, name)) for name in only
    }


class Sandbox:
    """The synthetic portfolio served by stand-ins for Intercom, Jira, Looker and Salesforce.

    A context manager: ``with Sandbox(accounts=250) as sb: env = sb.env()``.
    """

    def __init__(
        self,
        accounts: int = DEFAULT_ACCOUNTS,
        *,
        seed: int = DEFAULT_SEED,
        latency_ms: float = 0.0,
        faults: Mapping[str, Faults] | None = None,
        rate_limits: Mapping[str, int] | None = None,
        config_dir: Path = DEFAULT_CONFIG_DIR,
        as_of: date = date(2026, 11, 1),
        history_months: int = 0,
        churn_model: str = "health",
    ) -> None:
        self.config_dir = config_dir
        self.portfolio: Portfolio = build_portfolio(
            accounts, seed=seed, as_of=as_of, config_dir=config_dir
        )
        self.settings = load_source_settings(config_dir)
        #: The ground truth through time (None for a sandbox that only knows its date).
        self.timeline: Timeline | None = None
        self.slices: list[Portfolio] = []
        if history_months:
            self.timeline = build_timeline(self.portfolio, history_months, churn_model=churn_model)
            self.slices = slices(self.portfolio, self.timeline)
            self.portfolio = self.slices[-1]
        self._tmp = tempfile.TemporaryDirectory(prefix="hsm-sandbox-")
        self.workdir = Path(self._tmp.name)
        self.ca = trustme.CA()
        self.ca_bundle = self.workdir / "sandbox-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_bundle))
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(tls)
        self.data: dict[str, Any] = {}
        self.servers: dict[str, VendorServer] = {}
        pending: list[tuple[str, Any, Knobs, Faults, int]] = []
        for index, name in enumerate(SOURCES):
            module = vendor_module(name)
            if self.timeline is None:
                data = module.generate(self.portfolio, self.settings[name])
            else:
                data = module.generate_history(self.timeline, self.slices, self.settings[name])
            app = module.App(data, self.settings[name])
            knobs = Knobs(latency_ms=latency_ms, rate_limit=(rate_limits or {}).get(name))
            self.data[name] = data
            fault = (faults or {}).get(name) or Faults()
            for hidden in fault.hidden_objects:  # Salesforce: objects the user cannot see
                app.drop_object(hidden)
            pending.append((name, app, knobs, fault, index))
        # Not a data source: a Slack incoming webhook recording the alert digests it is sent.
        self.slack = SlackApp()
        # The servers bind their ports last, once every vendor's data exists; a failure leaves
        # no port bound and no temporary folder behind.
        try:
            for name, app, knobs, fault, index in pending:
                self.servers[name] = VendorServer(
                    app,
                    knobs=knobs,
                    faults=fault,
                    tls=tls if name == "salesforce" else None,
                    seed=seed * 31 + index,
                )
            self.slack_server = VendorServer(self.slack, faults=(faults or {}).get("slack"))
        except BaseException:
            for server in self.servers.values():
                server.stop()
            self._tmp.cleanup()
            raise

    # Lifecycle --------------------------------------------------------------------------------
    def start(self) -> Sandbox:
        try:
            for server in self.servers.values():
                server.start()
            self.slack_server.start()
        except BaseException:
            self.close()  # no server left listening, no temporary folder left behind
            raise
        return self

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.slack_server.stop()

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # What tests, the demo and benchmarks read -------------------------------------------------
    def env(self) -> dict[str, str]:
        """Environment variables (base URLs, fake credentials, CA bundle) for the pipeline."""
        out: dict[str, str] = {}
        for name, server in self.servers.items():
            out.update(vendor_module(name).environment(server.url, str(self.ca_bundle)))
        out.update(slack_environment(self.slack_server.url, self.slack.path))
        return out

    def write_mapping(self, path: Path) -> Path:
        return self.portfolio.write_mapping(path)

    def write_config(self, folder: Path, base: Path | None = None) -> Path:
        """A config folder for runs against this sandbox: ``base``'s weights, thresholds and
        alert rules if any (default: the sandbox's config folder) byte for byte, its
        ``sources.yaml`` with ``salesforce.field_history`` on when the sandbox has a history (its
        org tracks Account and signal history, so past periods are reconstructable), and the
        sandbox's mapping."""
        base = base or self.config_dir
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("weights.yaml", "thresholds.yaml", "sources.yaml"):
            (folder / name).write_bytes((base / name).read_bytes())
        if (base / "alerts.yaml").is_file():  # optional: the alert rules, unchanged
            (folder / "alerts.yaml").write_bytes((base / "alerts.yaml").read_bytes())
        if self.timeline is not None:
            sources = yaml.safe_load((base / "sources.yaml").read_text(encoding="utf-8-sig"))
            sources = sources if isinstance(sources, dict) else {}
            section = sources.setdefault("salesforce", {}) or {}
            sources["salesforce"] = {**section, "field_history": True}
            (folder / "sources.yaml").write_text(
                f"# The sandbox's copy of {base / 'sources.yaml'}, with salesforce.field_history "
                "on:\n# the sandbox's org tracks Account and churn-signal field history.\n"
                + yaml.safe_dump(sources, sort_keys=False),
                encoding="utf-8",
            )
        self.write_mapping(folder / "account_mapping.csv")
        return folder

    def expected_metrics(self, as_of: date | None = None) -> dict[str, dict[str, Decimal | None]]:
        """account_id → metric → the value a correct extractor must produce (the stand-ins'
        own recount of their records, rounded by :func:`health_score_sandbox.truth.rounded`).

        ``as_of``: the end of a past period of a timeline sandbox (default: the sandbox date).
        """
        merged: dict[str, dict[str, Decimal | None]] = {
            p.account_id: {} for p in self.portfolio.profiles
        }
        for name, data in self.data.items():
            if as_of is None or as_of == self.portfolio.as_of:
                expected = data.expected
            elif self.timeline is None:
                raise ValueError("only a sandbox with history knows past periods")
            else:
                expected = data.expected_at(as_of, self.settings[name])
            for account_id, metrics in expected.items():
                merged.setdefault(account_id, {}).update(metrics)
        return merged

    def stats(self) -> dict[str, dict[str, int]]:
        return {name: dict(server.stats) for name, server in self.servers.items()}

    def requests(self, vendor: str) -> int:
        return self.servers[vendor].total_requests

    def minimum_requests(self) -> dict[str, int]:
        """Per vendor, the fewest requests an ideal extractor needs for this portfolio."""
        return {
            name: int(self.data[name].minimum_requests(self.settings[name])) for name in SOURCES
        }

    def reset_stats(self) -> None:
        for server in self.servers.values():
            server.reset_stats()
