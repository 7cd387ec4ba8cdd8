"""The shared Salesforce client: sessions, renewal on INVALID_SESSION_ID, API usage, SOQL paging.

Most tests talk to a scripted transport (every answer written out here), so each rule is pinned
by what goes over the wire; the last ones use the stand-in org.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter

from health_score.sources.http import AuthenticationError, HttpPolicy, SourceError
from health_score.sources.salesforce.client import (
    ApiUsage,
    SalesforceApiError,
    SalesforceClient,
    parse_limit_info,
)
from tests.salesforce_write_support import FAST, org

INSTANCE = "https://acme.my.salesforce.test"
DATA = f"{INSTANCE}/services/data/v62.0"
EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]

Handler = Callable[[requests.PreparedRequest], tuple[int, Any, dict[str, str]]]


class Scripted(BaseAdapter):
    """A transport answering from ``handler``; records every request it saw."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.seen: list[requests.PreparedRequest] = []
        self.lock = threading.Lock()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        with self.lock:
            self.seen.append(request)
        status, body, headers = self.handler(request)
        response = requests.Response()
        response.status_code = status
        response._content = (body if isinstance(body, str) else json.dumps(body)).encode()
        response.headers.update({"Content-Type": "application/json", **headers})
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        pass


def scripted_client(
    handler: Handler, *, tokens: Iterator[str] | None = None, **kwargs: Any
) -> tuple[SalesforceClient, Scripted, list[str]]:
    """A client on ``handler`` whose logins hand out ``tokens`` (t1, t2, …) in order."""
    issued: list[str] = []
    source = tokens or (f"t{n}" for n in range(1, 100))

    def authenticate() -> tuple[str, str]:
        issued.append(next(source))
        return INSTANCE, issued[-1]

    client = SalesforceClient(authenticate, policy=FAST, session=requests.Session(), **kwargs)
    transport = Scripted(handler)
    client.session.mount(INSTANCE, transport)
    return client, transport, issued


def bearer(request: requests.PreparedRequest) -> str:
    return str(request.headers.get("Authorization", "")).removeprefix("Bearer ")


# -- Sforce-Limit-Info ----------------------------------------------------------------------------


def test_the_api_usage_header_is_read_and_never_taken_from_the_per_app_entry() -> None:
    assert parse_limit_info("api-usage=25/15000") == ApiUsage(25, 15000)
    assert parse_limit_info("per-app-api-usage=17/250(appName=x); api-usage=26/15000") == (
        ApiUsage(26, 15000)
    )
    assert parse_limit_info("per-app-api-usage=17/250(appName=x)") is None
    assert parse_limit_info(None) is None
    assert str(ApiUsage(26, 15000)) == "26/15000"


def test_the_highest_usage_seen_is_kept_whatever_order_answers_arrive_in() -> None:
    usage = iter(["api-usage=7/100", "api-usage=9/100", "api-usage=8/100"])

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict[str, str]]:
        return 200, {}, {"Sforce-Limit-Info": next(usage)}

    client, _, _ = scripted_client(handler)
    for _ in range(3):
        client.request("GET", "limits")
    assert client.api_usage == ApiUsage(9, 100)


def test_usage_near_the_allowance_is_logged_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict[str, str]]:
        return 200, {}, {"Sforce-Limit-Info": "api-usage=91/100"}

    client, _, _ = scripted_client(handler)
    client.request("GET", "limits")
    with caplog.at_level("INFO"):
        client.log_usage("write done")
    (record,) = [r for r in caplog.records if "API usage" in r.getMessage()]
    assert record.levelname == "WARNING"
    assert "91/100" in record.getMessage()


# -- the session ----------------------------------------------------------------------------------


def test_paths_are_relative_to_the_data_api_of_the_instance_the_login_named() -> None:
    client, transport, issued = scripted_client(lambda r: (200, {}, {}), version="60.0")
    client.request("GET", "/limits")
    (request,) = transport.seen
    assert request.url == f"{INSTANCE}/services/data/v60.0/limits"
    assert bearer(request) == "t1" and issued == ["t1"]
    assert client.instance_url == INSTANCE and client.base_url.endswith("/v60.0")


def test_an_expired_session_logs_in_again_once_and_repeats_the_call() -> None:
    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict[str, str]]:
        return (401, EXPIRED, {}) if bearer(request) == "t1" else (200, {"ok": True}, {})

    client, transport, issued = scripted_client(handler)
    assert client.request("GET", "limits").json() == {"ok": True}
    assert issued == ["t1", "t2"]
    assert [bearer(r) for r in transport.seen] == ["t1", "t2"]


def test_a_session_refused_again_after_a_fresh_login_is_an_authentication_error() -> None:
    client, transport, issued = scripted_client(lambda r: (401, EXPIRED, {}), credential_hint="X")
    with pytest.raises(
        AuthenticationError,
        match=r"refused again after a fresh login \(HTTP 401 INVALID_SESSION_ID\); check X",
    ):
        client.request("GET", "limits")
    assert issued == ["t1", "t2"]  # one renewal, never a loop
    assert len(transport.seen) == 2


def test_a_401_that_is_not_an_expired_session_is_not_retried_with_a_new_login() -> None:
    other = [{"message": "nope", "errorCode": "INVALID_AUTH_HEADER"}]
    client, transport, issued = scripted_client(lambda r: (401, other, {}), credential_hint="X")
    with pytest.raises(AuthenticationError, match=r"credentials rejected \(HTTP 401\); check X"):
        client.request("GET", "limits")
    assert issued == ["t1"] and len(transport.seen) == 1


def test_a_given_session_is_used_first_and_cannot_be_renewed_without_a_login() -> None:
    client = SalesforceClient(
        instance_url=INSTANCE, session_id="given", policy=FAST, session=requests.Session()
    )
    transport = Scripted(lambda r: (401, EXPIRED, {}))
    client.session.mount(INSTANCE, transport)
    with pytest.raises(AuthenticationError, match="HTTP 401"):
        client.request("GET", "limits")
    assert [bearer(r) for r in transport.seen] == ["given"]


def test_threads_that_see_the_same_expired_session_log_in_once() -> None:
    expired = threading.Event()
    barrier = threading.Barrier(4)

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict[str, str]]:
        if bearer(request) == "t1" and expired.is_set():
            return 401, EXPIRED, {}
        return 200, {}, {}

    client, _, issued = scripted_client(handler)
    client.connect()
    expired.set()
    errors: list[BaseException] = []

    def call() -> None:
        barrier.wait()
        try:
            client.request("GET", "limits")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert issued == ["t1", "t2"]


def test_salesforce_error_bodies_carry_their_error_code() -> None:
    body = [
        {
            "message": "SELECT Foo__c FROM Account\n^\nNo such column 'Foo__c'",
            "errorCode": "INVALID_FIELD",
        }
    ]
    client, _, _ = scripted_client(lambda r: (400, body, {}))
    with pytest.raises(SalesforceApiError) as caught:
        client.request("GET", "query/", params={"q": "SELECT Foo__c FROM Account"})
    assert caught.value.error_code == "INVALID_FIELD"
    assert str(caught.value).endswith("HTTP 400 INVALID_FIELD: No such column 'Foo__c'")


def test_a_spent_daily_allowance_says_so() -> None:
    body = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    client, _, _ = scripted_client(lambda r: (403, body, {}))
    with pytest.raises(SourceError, match="daily API request allowance is spent") as caught:
        client.request("GET", "limits")
    assert not isinstance(caught.value, AuthenticationError)


# -- SOQL -----------------------------------------------------------------------------------------


def paged(pages: dict[str, Any]) -> Handler:
    """Answer ``query/?q=`` with pages["first"] and a nextRecordsUrl path with pages[path]."""

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(str(request.url))
        if parts.path.endswith("/query/"):
            assert parse_qs(parts.query)["q"] == ["SELECT Id, ARR__c FROM Account"]
            return 200, pages["first"], {}
        return 200, pages[parts.path], {}

    return handler


def test_a_query_follows_next_records_url_and_reads_numbers_as_decimals() -> None:
    next_path = "/services/data/v62.0/query/01gSb0000000001-2"
    pages = {
        # Raw text: 0.1 must be read from the wire as Decimal("0.1"), never through a float.
        "first": '{"totalSize": 3, "done": false, "nextRecordsUrl": "'
        + next_path
        + '", "records": [{"Id": "a", "ARR__c": 0.1}, {"Id": "b", "ARR__c": 2}]}',
        next_path: {"totalSize": 3, "done": True, "records": [{"Id": "c", "ARR__c": None}]},
    }
    client, transport, _ = scripted_client(paged(pages))
    rows = list(client.query("SELECT Id, ARR__c FROM Account"))
    assert rows == [
        {"Id": "a", "ARR__c": Decimal("0.1")},
        {"Id": "b", "ARR__c": 2},
        {"Id": "c", "ARR__c": None},
    ]
    assert isinstance(rows[0]["ARR__c"], Decimal)
    assert [r.url for r in transport.seen][1] == f"{INSTANCE}{next_path}"


def test_a_paging_loop_is_refused() -> None:
    next_path = "/services/data/v62.0/query/01gSb0000000001-2"
    page = {"done": False, "nextRecordsUrl": next_path, "records": [{"Id": "a"}]}
    client, transport, _ = scripted_client(paged({"first": page, next_path: page}))
    with pytest.raises(SourceError, match="loop detected"):
        list(client.query("SELECT Id, ARR__c FROM Account"))
    assert len(transport.seen) == 2


@pytest.mark.parametrize(
    "next_url", [None, "https://elsewhere.test/services/data/v62.0/query/x-2", "//elsewhere.test/x"]
)
def test_a_next_page_is_only_fetched_from_the_instance(next_url: str | None) -> None:
    page = {"done": False, "nextRecordsUrl": next_url, "records": []}
    client, transport, _ = scripted_client(paged({"first": page}))
    with pytest.raises(SourceError, match="no nextRecordsUrl"):
        list(client.query("SELECT Id, ARR__c FROM Account"))
    assert len(transport.seen) == 1  # the session never went anywhere else


def test_a_query_answer_that_is_not_an_object_is_a_source_error() -> None:
    client, _, _ = scripted_client(lambda r: (200, "[1, 2]", {}))
    with pytest.raises(SourceError, match="malformed query response"):
        list(client.query("SELECT Id FROM Account"))


# -- against the stand-in org ---------------------------------------------------------------------


def test_the_stand_ins_usage_header_is_tracked_and_logins_are_counted() -> None:
    with org() as sf:
        client = SalesforceClient(
            lambda: (sf.server.url, sf.token), session=sf.session, policy=HttpPolicy(attempts=2)
        )
        rows = list(client.query("SELECT Id FROM Account"))
        usage = sf.app.api_usage
    assert rows and all(len(r["Id"]) == 18 for r in rows)
    assert client.api_usage is not None and client.api_usage.used == usage
    assert client.logins == 1
