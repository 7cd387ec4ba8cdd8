"""The stand-in Salesforce over real TLS on loopback: logins, SOQL, paging, limits and faults."""

from __future__ import annotations

import functools
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest
import requests
import trustme
import yaml

from health_score_sandbox import salesforce as sfs
from health_score_sandbox.portfolio import build_portfolio
from health_score_sandbox.salesforce import Settings
from health_score_sandbox.sandbox import load_source_settings
from health_score_sandbox.server import Faults, VendorServer
from tests.conftest import SHARED, shared_file

CONTRACTS = SHARED / "contracts"
REST_SPEC = CONTRACTS / "salesforce" / "restapi.openapi.yaml"
SPEC_HOST = "https://yourinstance.salesforce.com"  # matches the spec's server template
V = "/services/data/v62.0"

#: The query result shape from Salesforce's REST API guide ("Execute a SOQL Query"); the
#: contract file does not describe /query, so this is checked with a schema written here.
QUERY_RESULT = {
    "type": "object",
    "required": ["totalSize", "done", "records"],
    "properties": {
        "totalSize": {"type": "integer", "minimum": 0},
        "done": {"type": "boolean"},
        "nextRecordsUrl": {"type": "string", "pattern": r"^/services/data/v\d+\.0/query(All)?/"},
        "records": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["attributes"],
                "properties": {
                    "attributes": {"type": "object", "required": ["type"]},
                },
            },
        },
    },
    "additionalProperties": False,
}


@dataclass
class Served:
    server: VendorServer
    app: sfs.App
    data: sfs.Data
    session: requests.Session
    ca: str

    @property
    def url(self) -> str:
        return self.server.url

    def token(self) -> str:
        answer = self.session.post(
            f"{self.url}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": sfs.FAKE_CLIENT_ID,
                "client_secret": sfs.FAKE_CLIENT_SECRET,
            },
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.token()}", **kwargs.pop("headers", {})}
        return self.session.get(f"{self.url}{path}", headers=headers, timeout=10, **kwargs)

    def query(self, soql: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        return self.get(f"{V}/query", token, params={"q": soql}, **kwargs)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    ca = trustme.CA()
    bundle = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context, str(bundle)


@pytest.fixture(scope="module")
def settings() -> Settings:
    loaded: Settings = load_source_settings(only=("salesforce",))["salesforce"]
    return loaded


def _serve(tls: tuple[ssl.SSLContext, str], settings: Settings, accounts: int) -> Iterator[Served]:
    data = sfs.generate(build_portfolio(accounts), settings)
    app = sfs.App(data, settings)
    with VendorServer(app, tls=tls[0]) as server, requests.Session() as session:
        # Per request too: requests lets REQUESTS_CA_BUNDLE override ``session.verify``.
        session.verify = tls[1]
        session.request = functools.partial(session.request, verify=tls[1])  # type: ignore[method-assign]
        yield Served(server, app, data, session, tls[1])


@pytest.fixture(scope="module")
def big(tls: tuple[ssl.SSLContext, str], settings: Settings) -> Iterator[Served]:
    """250 accounts, never mutated: more than 2,000 payment records, so queries page."""
    yield from _serve(tls, settings, 250)


@pytest.fixture
def small(tls: tuple[ssl.SSLContext, str], settings: Settings) -> Iterator[Served]:
    """A fresh small org per test, for knobs and faults."""
    yield from _serve(tls, settings, 12)


@pytest.fixture(scope="module")
def error_schema() -> dict[str, Any]:
    shared_file(REST_SPEC)
    spec = yaml.safe_load(REST_SPEC.read_text(encoding="utf-8"))
    return {"$ref": "#/components/schemas/ErrorResponse", "components": spec["components"]}


def assert_salesforce_error(
    response: requests.Response, status: int, code: str, schema: Any
) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    jsonschema.validate(body, schema)
    assert body[0]["errorCode"] == code


# -- logins ----------------------------------------------------------------------------------


def test_client_credentials_login_answers_a_token_and_the_instance_url(small: Served) -> None:
    answer = small.session.post(
        f"{small.url}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sfs.FAKE_CLIENT_ID,
            "client_secret": sfs.FAKE_CLIENT_SECRET,
        },
    )
    body = answer.json()
    assert answer.status_code == 200
    assert body["instance_url"] == small.url
    assert body["token_type"] == "Bearer"
    assert small.query("SELECT COUNT() FROM Account", body["access_token"]).status_code == 200


def test_a_wrong_client_secret_is_refused_as_invalid_client(small: Served) -> None:
    answer = small.session.post(
        f"{small.url}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sfs.FAKE_CLIENT_ID,
            "client_secret": "x",
        },
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_client"


def soap_login(served: Served, password: str) -> requests.Response:
    envelope = (
        '<?xml version="1.0" encoding="utf-8" ?><env:Envelope '
        'xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Body>'
        '<n1:login xmlns:n1="urn:partner.soap.sforce.com">'
        f"<n1:username>{sfs.FAKE_USERNAME}</n1:username><n1:password>{password}</n1:password>"
        "</n1:login></env:Body></env:Envelope>"
    )
    return served.session.post(
        f"{served.url}/services/Soap/u/62.0",
        data=envelope,
        headers={"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": "login"},
    )


def test_soap_login_answers_a_server_url_and_session_id_like_salesforce(small: Served) -> None:
    answer = soap_login(small, sfs.FAKE_PASSWORD + sfs.FAKE_SECURITY_TOKEN)
    assert answer.status_code == 200
    assert f"<serverUrl>{small.url}/services/Soap/u/62.0/" in answer.text
    session_id = answer.text.split("<sessionId>")[1].split("</sessionId>")[0]
    assert small.query("SELECT Id FROM Account LIMIT 1", session_id).status_code == 200


def test_soap_login_without_the_security_token_is_an_invalid_login_fault(small: Served) -> None:
    answer = soap_login(small, sfs.FAKE_PASSWORD)
    assert answer.status_code == 500
    assert "<faultcode>sf:INVALID_LOGIN</faultcode>" in answer.text


def test_rejected_auth_fault_refuses_logins_and_sessions(small: Served, error_schema: Any) -> None:
    token = small.token()
    small.server.faults.auth_rejected = True
    assert (
        small.session.post(
            f"{small.url}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": sfs.FAKE_CLIENT_ID,
                "client_secret": sfs.FAKE_CLIENT_SECRET,
            },
        ).status_code
        == 400
    )
    assert_salesforce_error(
        small.query("SELECT Id FROM Account", token), 401, "INVALID_SESSION_ID", error_schema
    )


def test_a_bad_session_is_401_invalid_session_id(small: Served, error_schema: Any) -> None:
    response = small.query("SELECT Id FROM Account", "not-a-session")
    assert_salesforce_error(response, 401, "INVALID_SESSION_ID", error_schema)


def test_sessions_expire_after_the_configured_number_of_calls(small: Served) -> None:
    small.server.faults.token_expiry_after = 2
    token = small.token()
    statuses = [small.query("SELECT COUNT() FROM Account", token).status_code for _ in range(3)]
    assert statuses == [200, 200, 401]
    assert small.query("SELECT COUNT() FROM Account").status_code == 200  # a new login works


# -- queries and paging ----------------------------------------------------------------------


def test_next_records_url_walks_every_record_exactly_once(big: Served) -> None:
    token = big.token()
    first = big.query("SELECT Id, Account__c FROM Payment__c", token).json()
    jsonschema.validate(first, QUERY_RESULT)
    total = first["totalSize"]
    assert total == big.data.record_counts["Payment__c"] > 2000
    assert len(first["records"]) == 2000 and first["done"] is False
    ids = [r["Id"] for r in first["records"]]
    page, pages = first, 1
    while not page["done"]:
        url = page["nextRecordsUrl"]
        again = big.get(url, token).json()
        page = big.get(url, token).json()
        assert page == again  # stable: the same locator answers the same page
        jsonschema.validate(page, QUERY_RESULT)
        ids += [r["Id"] for r in page["records"]]
        pages += 1
    assert len(ids) == len(set(ids)) == total
    assert pages == -(-total // 2000)


def test_the_batch_size_option_pages_smaller(big: Served) -> None:
    response = big.query(
        "SELECT Id FROM Account", headers={"Sforce-Query-Options": "batchSize=200"}
    ).json()
    assert len(response["records"]) == 200
    assert response["nextRecordsUrl"].endswith("-200")


def test_an_unknown_query_locator_is_refused(big: Served, error_schema: Any) -> None:
    response = big.get(f"{V}/query/01gSb0000099999AAA-2000")
    assert_salesforce_error(response, 400, "INVALID_QUERY_LOCATOR", error_schema)


def test_query_all_also_returns_deleted_records(big: Served) -> None:
    soql = "SELECT COUNT() FROM Opportunity"
    live = big.query(soql).json()["totalSize"]
    everything = big.get(f"{V}/queryAll", params={"q": soql}).json()["totalSize"]
    assert everything > live > 0


def test_aggregates_group_by_account(big: Served) -> None:
    account = big.data.mapped_ids[0]
    body = big.query(
        "SELECT Account__c, COUNT(Id) n FROM Payment__c "  # noqa: S608
        f"WHERE Account__c IN ('{account}') GROUP BY Account__c"
    ).json()
    jsonschema.validate(body, QUERY_RESULT)
    assert body["records"] == [
        {
            "attributes": {"type": "AggregateResult"},
            "Account__c": account,
            "n": body["records"][0]["n"],
        }
    ]
    assert body["records"][0]["n"] >= 12


def test_aggregates_over_two_thousand_groups_are_refused(big: Served, error_schema: Any) -> None:
    response = big.query("SELECT Id, COUNT(Name) FROM Payment__c GROUP BY Id")
    assert_salesforce_error(response, 400, "MALFORMED_QUERY", error_schema)
    assert "queryMore" in response.json()[0]["message"]


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id FROM Account WHERE Name LIKE 'A%'", "MALFORMED_QUERY"),
        ("SELEC Id FROM Account", "MALFORMED_QUERY"),
        ("SELECT Nope__c FROM Account", "INVALID_FIELD"),
        ("SELECT Id FROM Nope__c", "INVALID_TYPE"),
    ],
)
def test_queries_it_cannot_answer_are_400_with_salesforce_error_codes(
    big: Served, error_schema: Any, soql: str, code: str
) -> None:
    assert_salesforce_error(big.query(soql), 400, code, error_schema)


def test_a_uri_over_the_limit_is_414(big: Served) -> None:
    ids = ",".join(f"'{i}'" for i in big.data.mapped_ids) * 3
    response = big.query(f"SELECT Id FROM Account WHERE Id IN ({ids})")  # noqa: S608
    assert response.status_code == 414


def test_every_response_carries_sforce_limit_info(big: Served) -> None:
    token = big.token()
    responses = [
        big.session.post(f"{big.url}/services/oauth2/token", data={"grant_type": "x"}),
        big.query("SELECT COUNT() FROM Account", token),
        big.query("SELECT nonsense", token),
        big.query("SELECT Id FROM Account", "bad-token"),
        big.get(f"{V}/nowhere", token),
    ]
    for response in responses:
        used, limit = response.headers["Sforce-Limit-Info"].removeprefix("api-usage=").split("/")
        assert int(used) >= 0 and int(limit) == big.app.daily_api_limit


# -- limits and knobs ------------------------------------------------------------------------


def test_the_daily_allowance_ends_in_403_request_limit_exceeded(
    small: Served, error_schema: Any
) -> None:
    token = small.token()
    small.app.daily_api_limit = small.app.api_usage + 2
    assert small.query("SELECT COUNT() FROM Account", token).status_code == 200
    last = small.query("SELECT COUNT() FROM Account", token)
    assert (
        last.headers["Sforce-Limit-Info"]
        == f"api-usage={small.app.daily_api_limit}/{small.app.daily_api_limit}"
    )
    assert_salesforce_error(
        small.query("SELECT COUNT() FROM Account", token),
        403,
        "REQUEST_LIMIT_EXCEEDED",
        error_schema,
    )


def test_dropping_a_field_or_object_makes_queries_fail_like_a_smaller_org(
    small: Served, error_schema: Any
) -> None:
    token = small.token()
    assert small.query("SELECT Champion_Changed_Date__c FROM Account", token).status_code == 200
    small.app.drop_field("Account", "Champion_Changed_Date__c")
    small.app.drop_object("Payment__c")
    assert_salesforce_error(
        small.query("SELECT Champion_Changed_Date__c FROM Account", token),
        400,
        "INVALID_FIELD",
        error_schema,
    )
    assert_salesforce_error(
        small.query("SELECT Id FROM Payment__c", token), 400, "INVALID_TYPE", error_schema
    )


def test_the_shared_fault_knobs_answer_in_salesforce_shapes(small: Served) -> None:
    token = small.token()
    small.server.faults.always_503 = True
    response = small.query("SELECT Id FROM Account", token)
    assert response.status_code == 503
    assert response.json()[0]["errorCode"] == "SERVER_UNAVAILABLE"
    small.server.faults = Faults(storm_429=1)
    response = small.query("SELECT Id FROM Account", token)
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"


def test_write_routes_are_handed_to_the_write_api_after_auth(small: Served) -> None:
    token = small.token()
    before = small.app.writes.write_requests
    small.get(f"{V}/jobs/ingest/750Sb0000000001AAA", token)
    assert small.app.writes.write_requests == before + 1
    assert small.get(f"{V}/jobs/ingest/x", "bad").status_code == 401
    assert small.app.writes.write_requests == before + 1


# -- contract --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi() -> Any:
    shared_file(REST_SPEC)
    from openapi_core import OpenAPI

    return OpenAPI.from_file_path(str(REST_SPEC))


def validate_against_contract(spec: Any, response: requests.Response, served: Served) -> None:
    from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

    # The spec's server is https://{instance}.salesforce.com/services/data/v{apiVersion}: the
    # request is checked as if it had gone there.
    prepared = response.request.copy()
    assert prepared.url is not None
    prepared.url = prepared.url.replace(served.url, SPEC_HOST)
    spec.validate_response(RequestsOpenAPIRequest(prepared), RequestsOpenAPIResponse(response))


@pytest.mark.parametrize(
    "object_name", ["Account", "Opportunity", "Event", "Payment__c", "Churn_Signal__c"]
)
def test_describe_answers_validate_against_the_contract(
    big: Served, openapi: Any, object_name: str
) -> None:
    response = big.get(f"{V}/sobjects/{object_name}/describe")
    assert response.status_code == 200
    validate_against_contract(openapi, response, big)
    names = {f["name"] for f in response.json()["fields"]}
    assert {"Id", "IsDeleted"} <= names


def test_describe_of_an_unknown_object_is_a_contract_shaped_404(big: Served, openapi: Any) -> None:
    response = big.get(f"{V}/sobjects/Nope__c/describe")
    assert response.status_code == 404
    validate_against_contract(openapi, response, big)


# -- generated data --------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_org_and_another_seed_does_not(settings: Settings) -> None:
    def snapshot(seed: int) -> str:
        data = sfs.generate(build_portfolio(30, seed=seed), settings)
        records = {o.name: o.records for o in data.org.objects.values()}
        return json.dumps([records, data.expected, repr(data.expected_signals)], default=str)

    assert snapshot(3) == snapshot(3)
    assert snapshot(3) != snapshot(4)


def test_accounts_carry_the_mapping_ids_and_absent_ones_have_no_records(settings: Settings) -> None:
    portfolio = build_portfolio(60)
    data = sfs.generate(portfolio, settings)
    account_ids = {r["Id"] for r in data.org.objects["account"].records}
    for profile in portfolio.profiles:
        sf_id = profile.account.sf_account_id
        present = bool(sf_id) and profile.has("salesforce")
        assert (sf_id in account_ids) == present
        if not present:
            assert set(data.expected[profile.account_id].values()) == {None}


def test_minimum_requests_is_a_login_plus_five_objects_per_id_list(settings: Settings) -> None:
    data = sfs.generate(build_portfolio(1200), settings)
    lists = -(-len(data.mapped_ids) // sfs.MAX_IDS_PER_QUERY)
    assert lists == 3
    assert data.minimum_requests(settings) == 1 + 5 * lists


def test_the_hide_fault_is_parsed_for_salesforce_only() -> None:
    import argparse

    from health_score_sandbox.__main__ import parse_fault
    from health_score_sandbox.server import Faults as ServerFaults

    faults: dict[str, ServerFaults] = {}
    parse_fault("salesforce:hide=Event", faults)
    parse_fault("salesforce:hide=Churn_Signal__c", faults)
    assert faults["salesforce"].hidden_objects == ["Event", "Churn_Signal__c"]
    with pytest.raises(argparse.ArgumentTypeError, match="hide is a salesforce fault"):
        parse_fault("looker:hide=Event", faults)
    with pytest.raises(argparse.ArgumentTypeError, match="bad value"):
        parse_fault("salesforce:hide=Bad-Name", faults)
