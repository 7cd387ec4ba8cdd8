"""Shared helpers for the write-back tests: scored accounts and the stand-in Salesforce, served."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import requests

from health_score.config import load_scoring_config
from health_score.loaders.salesforce import SalesforceLoader
from health_score.loaders.salesforce_settings import WritebackSettings
from health_score.records import Account, AccountInput
from health_score.scoring.composite import AccountScore, score_accounts
from health_score.scoring.spec import ScoringConfig
from health_score.sources.http import HttpPolicy
from health_score_sandbox.portfolio import build_portfolio
from health_score_sandbox.salesforce import (
    App,
    Data,
    Settings,
    environment,
    generate,
    login,
)
from health_score_sandbox.salesforce_write import WriteApi
from health_score_sandbox.sandbox import load_source_settings
from health_score_sandbox.server import Knobs, VendorServer

REPO = Path(__file__).resolve().parents[1]
CONFIG = load_scoring_config(REPO / "config")
FAST = HttpPolicy(attempts=3, wait_initial=0.01, wait_max=0.05, wait_jitter=0.0)


@functools.cache
def _org_data() -> tuple[Data, Settings]:
    """A small generated org (the write tests only need somewhere to write)."""
    settings = load_source_settings(only=("salesforce",))["salesforce"]
    return generate(build_portfolio(4), settings), settings


def sf_id(number: int) -> str:
    """A 15-character Account id (the loader writes its 18-character form)."""
    return f"0015g{number:010d}"


def metric_inputs(count: int, *, shift: int = 0, first: int = 0) -> list[AccountInput]:
    """Accounts with every metric present, values spread so tiers vary; ``shift`` moves them."""
    inputs = []
    for index in range(first, first + count):
        metrics = {
            name: Decimal((index * 7 + position * 3 + shift) % 97)
            for position, name in enumerate(CONFIG.metric_names)
        }
        inputs.append(
            AccountInput(
                account_id=sf_id(index),
                account_name=f"Account {index}",
                segment="paid" if index % 2 else "standard",
                metrics=metrics,
            )
        )
    return inputs


def accounts_for(
    inputs: Sequence[AccountInput], *, without_id: Sequence[int] = ()
) -> list[Account]:
    return [
        Account(
            account_id=item.account_id,
            account_name=item.account_name,
            segment=item.segment,
            sf_account_id=None if index in without_id else item.account_id,
        )
        for index, item in enumerate(inputs)
    ]


def scored(inputs: Sequence[AccountInput], config: ScoringConfig = CONFIG) -> list[AccountScore]:
    return score_accounts(inputs, config)


@dataclass
class Org:
    """A served stand-in org with its write API, and a way to make loaders for it."""

    server: VendorServer
    app: App
    api: WriteApi
    session: requests.Session
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def allow(self, calls: int | None) -> None:
        """Leave the org ``calls`` more API calls today (None: plenty)."""
        self.app.daily_api_limit = self.app.api_usage + calls if calls is not None else 10**9

    def loader(self, **settings: object) -> SalesforceLoader:
        values: dict[str, object] = {"poll_initial_seconds": 0.01, "poll_max_seconds": 0.05}
        values.update(settings)
        loader = SalesforceLoader.from_env(
            WritebackSettings.model_validate(values),
            environment(self.server.url, ""),
            session=self.session,
            policy=FAST,
        )
        assert loader is not None
        return loader

    def write_requests(self) -> int:
        """Requests the server counted on write routes."""
        return sum(
            count
            for label, count in self.server.stats.items()
            if "/jobs/ingest" in label or "/composite/" in label
        )


@contextmanager
def org(*, latency_ms: float = 0.0, api: WriteApi | None = None) -> Iterator[Org]:
    data, settings = _org_data()
    app = App(data, settings)
    if api is not None:
        app.writes = api
    with (
        VendorServer(app, knobs=Knobs(latency_ms=latency_ms)) as server,
        requests.Session() as session,
    ):
        _, token = login(session, server.url)
        yield Org(server, app, app.writes, session, token)
