"""Shared helpers for the write-back tests: scored accounts and a served stand-in Salesforce."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import requests

from src.config import ScoringConfig, load_scoring_config
from src.extractors.http import HttpPolicy
from src.loaders.salesforce import SalesforceLoader
from src.loaders.salesforce_settings import WritebackSettings
from src.models import Account, AccountInput
from src.sandbox.salesforce_write import WriteApi
from src.sandbox.server import Knobs, Request, Response, VendorApp, VendorServer
from src.scoring.composite import AccountScore, score_accounts

REPO = Path(__file__).resolve().parents[1]
CONFIG = load_scoring_config(REPO / "config")
SESSION_ID = "00D000000000001!sandbox-session"
_DATA_PATH = re.compile(r"^/services/data/v\d+\.\d+(/.*)$")
FAST = HttpPolicy(attempts=3, wait_initial=0.01, wait_max=0.05, wait_jitter=0.0)


class WriteOnlyApp(VendorApp):
    """The write routes behind a bearer check and a daily allowance, as the Salesforce App does.

    ``daily_allowance`` counts every authorised API call; once spent, calls answer 403
    ``REQUEST_LIMIT_EXCEEDED`` (what a real org does when its 24-hour allowance is used up).
    """

    name = "salesforce"

    def __init__(self, api: WriteApi, *, daily_allowance: int | None = None) -> None:
        super().__init__()
        self.api = api
        self.daily_allowance = daily_allowance
        self.used = 0

    def error(self, status: int, code: str, message: str) -> Response:
        return Response(status, [{"message": message, "errorCode": code}])

    def unauthorized(self) -> Response:
        return self.error(401, "INVALID_SESSION_ID", "Session expired or invalid")

    def endpoint_label(self, request: Request) -> str:
        match = _DATA_PATH.match(request.path)
        label = match and self.api.endpoint_label(request.method, match.group(1))
        return label or f"{request.method} {request.path}"

    def handle(self, request: Request) -> Response:
        if request.header("authorization") != f"Bearer {SESSION_ID}":
            return self.unauthorized()
        if self.daily_allowance is not None and self.used >= self.daily_allowance:
            return self.error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        self.used += 1
        match = _DATA_PATH.match(request.path)
        response = self.api.handle(request, match.group(1)) if match else None
        if response is None:
            return self.error(404, "NOT_FOUND", "The requested resource does not exist")
        return response


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
    app: WriteOnlyApp
    api: WriteApi
    session: requests.Session

    def loader(self, **settings: object) -> SalesforceLoader:
        values: dict[str, object] = {"poll_initial_seconds": 0.01, "poll_max_seconds": 0.05}
        values.update(settings)
        return SalesforceLoader(
            WritebackSettings.model_validate(values),
            instance_url=self.server.url,
            session_id=SESSION_ID,
            session=self.session,
            policy=FAST,
        )

    def write_requests(self) -> int:
        """Requests the server counted on write routes."""
        return sum(
            count for label, count in self.server.stats.items() if "/jobs/ingest" in label
        ) + sum(count for label, count in self.server.stats.items() if "/composite/" in label)


@contextmanager
def org(
    *,
    daily_allowance: int | None = None,
    latency_ms: float = 0.0,
    api: WriteApi | None = None,
) -> Iterator[Org]:
    write_api = api or WriteApi()
    app = WriteOnlyApp(write_api, daily_allowance=daily_allowance)
    with (
        VendorServer(app, knobs=Knobs(latency_ms=latency_ms)) as server,
        requests.Session() as session,
    ):
        yield Org(server, app, write_api, session)
