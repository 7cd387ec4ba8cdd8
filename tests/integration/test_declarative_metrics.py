"""Declarative Salesforce metrics (salesforce.custom_metrics, issue 17 item 3) against the
stand-in org on loopback; expected values are plain loops over the stand-in's records."""

from __future__ import annotations

import ssl
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
import trustme

from health_score.records import metric_value
from health_score.salesforce_ids import salesforce_id18
from health_score.sources import salesforce as ext
from health_score.sources.base import SourceResult
from health_score.sources.registry import load_sources
from health_score.sources.salesforce import extractor as sf_extractor
from health_score.sources.salesforce.declarative import CustomMetrics
from health_score_sandbox import salesforce as sfs
from health_score_sandbox.portfolio import Portfolio, build_portfolio
from health_score_sandbox.server import VendorServer
from tests.conftest import DEFAULT_CONFIG

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
TODAY = AS_OF.date()

CUSTOM: dict[str, Any] = {
    "days_to_next_renewal": {
        "object": "Opportunity",
        "account_field": "AccountId",
        "aggregate": "days_until",
        "field": "CloseDate",
        "filters": [
            {"field": "Type", "op": "IN", "value": ["Renewal"]},
            {"field": "IsClosed", "op": "=", "value": False},
            {"field": "CloseDate", "op": ">=", "value": {"as_of_date": 0}},
        ],
    },
    "arr_a_year_ago": {
        "object": "AccountHistory",
        "account_field": "AccountId",
        "aggregate": "latest",
        "field": "NewValue",
        "order_by": "CreatedDate",
        "filters": [
            {"field": "Field", "op": "=", "value": "ARR__c"},
            {"field": "CreatedDate", "op": "<", "value": {"as_of_datetime": -365}},
        ],
        "reconstructable": True,
    },
    "days_since_champion_change": {
        "object": "AccountContactRole",
        "account_field": "AccountId",
        "aggregate": "days_since",
        "field": "CreatedDate",
        "filters": [{"field": "Role", "op": "=", "value": "Champion"}],
        "reconstructable": True,
    },
    "open_csqls": {
        "object": "CSQL__c",
        "account_field": "Account__c",
        "aggregate": "count",
        "filters": [{"field": "Status__c", "op": "IN", "value": ["New", "Working"]}],
    },
    "open_csql_amount": {
        "object": "CSQL__c",
        "account_field": "Account__c",
        "aggregate": "sum",
        "field": "Amount__c",
        "filters": [{"field": "Status__c", "op": "!=", "value": "Converted"}],
    },
    "largest_csql": {
        "object": "CSQL__c",
        "account_field": "Account__c",
        "aggregate": "max",
        "field": "Amount__c",
        "filters": [{"field": "Name", "op": "!=", "value": "it's \\ 'quoted'"}],
    },
}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    ca = trustme.CA()
    bundle = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context, str(bundle)


@pytest.fixture(scope="module")
def settings() -> ext.Settings:
    loaded: ext.Settings = load_sources(DEFAULT_CONFIG, ("salesforce",))["salesforce"]
    return loaded.model_copy(
        update={
            "http": loaded.http.model_copy(update={"attempts": 4, "budget_seconds": 20}),
            "custom_metrics": CustomMetrics.model_validate(CUSTOM),
        }
    )


class Org:
    def __init__(self, tls: tuple[ssl.SSLContext, str], settings: ext.Settings) -> None:
        self.portfolio: Portfolio = build_portfolio(40)
        self.data = sfs.generate(self.portfolio, settings)
        self.app = sfs.App(self.data, settings)
        self.settings, self.ca, self.tls = settings, tls[1], tls[0]

    def extract(self, server: VendorServer, as_of: datetime = AS_OF) -> SourceResult:
        with requests.Session() as session:
            found = sf_extractor.from_env(
                self.settings,
                sfs.environment(server.url, self.ca),
                session=session,
                as_of=as_of,
                now=AS_OF,
            )
            assert found is not None
            return found.extract(self.portfolio.accounts)

    def records(self, name: str) -> list[dict[str, Any]]:
        sobject = self.data.org.get(name)
        assert sobject is not None
        return [r for r in sobject.records if not r.get("IsDeleted")]

    def owners(self) -> dict[str, str]:
        """account_id → 18-character id, for mapped accounts the org has."""
        in_org = {r["Id"] for r in self.records("Account")}
        return {
            a.account_id: salesforce_id18(a.sf_account_id)
            for a in self.portfolio.accounts
            if a.sf_account_id and salesforce_id18(a.sf_account_id) in in_org
        }


@pytest.fixture
def org(tls: tuple[ssl.SSLContext, str], settings: ext.Settings) -> Org:
    return Org(tls, settings)


def _created(record: dict[str, Any], before: datetime) -> bool:
    return bool(record["CreatedDate"] < before)


def expected(org: Org, as_of: datetime) -> dict[str, dict[str, Decimal | None]]:
    """Every custom metric recounted with plain loops over the stand-in's records."""
    day = as_of.date()
    out: dict[str, dict[str, Decimal | None]] = {}
    year_ago = datetime.combine(day - timedelta(days=365), datetime.min.time(), tzinfo=UTC)
    for account, sf_id in org.owners().items():
        renewals = [
            r["CloseDate"]
            for r in org.records("Opportunity")
            if r["AccountId"] == sf_id
            and r["Type"] == "Renewal"
            and not r["IsClosed"]
            and r["CloseDate"] >= day
            and _created(r, as_of)
        ]
        changes = sorted(
            (r["CreatedDate"], r["NewValue"])
            for r in org.records("AccountHistory")
            if r["AccountId"] == sf_id
            and r["Field"] == "ARR__c"
            and r["CreatedDate"] < year_ago
            and _created(r, as_of)
        )
        champions = [
            r["CreatedDate"]
            for r in org.records("AccountContactRole")
            if r["AccountId"] == sf_id and r["Role"] == "Champion" and _created(r, as_of)
        ]
        csqls = [
            r for r in org.records("CSQL__c") if r["Account__c"] == sf_id and _created(r, as_of)
        ]
        not_converted = [
            Decimal(repr(r["Amount__c"])) for r in csqls if r["Status__c"] != "Converted"
        ]
        out[account] = {
            "days_to_next_renewal": Decimal((min(renewals) - day).days) if renewals else None,
            "arr_a_year_ago": metric_value(Decimal(repr(changes[-1][1]))) if changes else None,
            "days_since_champion_change": (
                Decimal((day - max(champions).date()).days) if champions else None
            ),
            "open_csqls": Decimal(sum(1 for r in csqls if r["Status__c"] in ("New", "Working"))),
            "open_csql_amount": metric_value(sum(not_converted, Decimal(0))),
            "largest_csql": (
                metric_value(max(Decimal(repr(r["Amount__c"])) for r in csqls)) if csqls else None
            ),
        }
    return out


def test_custom_metrics_match_plain_loops_over_the_records(org: Org) -> None:
    with VendorServer(org.app, tls=org.tls) as server:
        result = org.extract(server)
    want = expected(org, AS_OF)
    got = {a: {m: v[m] for m in CUSTOM} for a, v in result.metrics.items() if a in want}
    assert got == want
    # Some of each kind is really exercised (not all None / 0).
    for metric in CUSTOM:
        assert any(values[metric] not in (None, Decimal(0)) for values in want.values()), metric
    # Accounts not in the org get no values, not zeros.
    outside = [a for a in result.metrics if a not in want]
    assert outside and all(result.metrics[a][m] is None for a in outside for m in CUSTOM)
    assert not result.degraded
    assert any(n.startswith("custom metric open_csqls: count of CSQL__c") for n in result.notes)
    # The built-in metrics are unchanged by the custom ones.
    assert {a: {m: v[m] for m in ext.METRICS} for a, v in result.metrics.items()} == {
        a: dict(v) for a, v in org.data.expected.items()
    }


def test_a_past_period_keeps_reconstructable_metrics_and_marks_the_others_unavailable(
    org: Org,
) -> None:
    past = datetime(2026, 5, 1, tzinfo=UTC)
    with VendorServer(org.app, tls=org.tls) as server:
        result = org.extract(server, past)
    want = expected(org, past)
    for account in want:
        values = result.metrics[account]
        assert values["days_since_champion_change"] == want[account]["days_since_champion_change"]
        assert values["arr_a_year_ago"] == want[account]["arr_a_year_ago"]
        for stale in ("days_to_next_renewal", "open_csqls", "open_csql_amount", "largest_csql"):
            assert values[stale] is None
            assert stale in result.unavailable[account]
    assert result.degraded
    assert any("custom metrics that read current-state values" in r for r in result.incomplete)


def test_a_hidden_object_or_field_makes_only_its_metric_unavailable(org: Org) -> None:
    org.app.drop_object("CSQL__c")
    org.app.drop_field("AccountContactRole", "Role")
    with VendorServer(org.app, tls=org.tls) as server:
        result = org.extract(server)
    lost = {"open_csqls", "open_csql_amount", "largest_csql", "days_since_champion_change"}
    assert lost <= result.missing_metrics
    for account, values in result.metrics.items():
        assert all(values[m] is None for m in lost)
        assert lost <= result.unavailable[account]
    assert result.degraded
    assert any(
        r.startswith("CSQL__c cannot be read (INVALID_TYPE") and "open_csqls" in r
        for r in result.incomplete
    )
    assert any(
        r.startswith("AccountContactRole.Role cannot be read (INVALID_FIELD")
        for r in result.incomplete
    )
    # The others still come through.
    assert any(v["days_to_next_renewal"] is not None for v in result.metrics.values())


def test_generated_query_escapes_literals_and_dates_count_from_as_of() -> None:
    metrics = CustomMetrics.model_validate(CUSTOM).root
    ids = ["001000000000001AAA"]
    soql = metrics["largest_csql"].query(ids, AS_OF)
    assert soql == (
        "SELECT Account__c, MAX(Amount__c) value FROM CSQL__c "
        "WHERE Account__c IN ('001000000000001AAA') AND CreatedDate < 2026-11-01T00:00:00Z "
        "AND Name != 'it\\'s \\\\ \\'quoted\\'' GROUP BY Account__c"
    )
    soql = metrics["arr_a_year_ago"].query(ids, AS_OF)
    assert "CreatedDate < 2025-11-01T00:00:00Z ORDER BY CreatedDate DESC" in soql
    assert date(2025, 11, 1) == TODAY - timedelta(days=365)
