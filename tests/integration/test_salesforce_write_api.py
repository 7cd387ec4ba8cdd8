"""The stand-in Salesforce write API on the wire: Bulk API 2.0 ingest and sObject Collections.

Responses are checked against the (unofficial) Bulk API 2.0 and REST OpenAPI files in
``../shared/contracts/salesforce``; where those files and Salesforce's documentation differ (the
upload is ``text/csv`` answered with 201), the documentation wins and the test says so.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml

from health_score_sandbox.salesforce_write import WriteApi, id18
from tests.conftest import SHARED, shared_file
from tests.salesforce_write_support import Org, org, sf_id

CONTRACTS = SHARED / "contracts" / "salesforce"
API = "/services/data/v62.0"
KEY = "External_Key__c"


def contract(name: str) -> Any:
    from openapi_core import OpenAPI

    path = shared_file(CONTRACTS / name)
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    # The stand-in listens on a loopback port, not https://{instance}.salesforce.com.
    spec["servers"] = [
        {
            "url": "http://127.0.0.1:{port}/services/data/v{apiVersion}",
            "variables": {"port": {"default": "80"}, "apiVersion": {"default": "62.0"}},
        }
    ]
    # Salesforce stamps jobs like 2018-12-10T17:50:19.000+0000 (its documented examples), which
    # is not RFC 3339 `date-time` as the file declares: check those two as plain strings.
    job_info = spec["components"]["schemas"].get("IngestJobInfo", {}).get("properties", {})
    for stamp in ("createdDate", "systemModstamp"):
        if stamp in job_info:
            job_info[stamp].pop("format", None)
    return OpenAPI.from_dict(spec)


@pytest.fixture(scope="module")
def bulk_contract() -> Any:
    return contract("bulkapi.openapi.yaml")


@pytest.fixture(scope="module")
def rest_contract() -> Any:
    return contract("restapi.openapi.yaml")


def validate(spec: Any, response: requests.Response, *, request: bool = True) -> None:
    from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

    wrapped = RequestsOpenAPIRequest(response.request)
    if request:
        spec.validate_request(wrapped)
    spec.validate_response(wrapped, RequestsOpenAPIResponse(response))


@pytest.fixture
def sf() -> Iterator[Org]:
    with org() as served:
        yield served


def call(sf: Org, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {**sf.auth, **kwargs.pop("headers", {})}
    return sf.session.request(method, f"{sf.server.url}{API}{path}", headers=headers, **kwargs)


def key(number: int) -> str:
    return f"{id18(sf_id(number))}-2026-11"


def record(number: int, **values: Any) -> dict[str, Any]:
    return {
        "attributes": {"type": "Health_Score__c"},
        KEY: key(number),
        "Account__c": id18(sf_id(number)),
        **values,
    }


def upsert(sf: Org, records: list[dict[str, Any]], **body: Any) -> requests.Response:
    return call(
        sf,
        "PATCH",
        f"/composite/sobjects/Health_Score__c/{KEY}",
        json={"allOrNone": False, "records": records, **body},
    )


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


# -- Bulk API 2.0 ---------------------------------------------------------------------------------


def test_an_ingest_job_goes_from_open_to_job_complete_as_the_contract_describes(
    sf: Org, bulk_contract: Any
) -> None:
    created = call(
        sf,
        "POST",
        "/jobs/ingest",
        json={
            "object": "Health_Score__c",
            "externalIdFieldName": KEY,
            "contentType": "CSV",
            "operation": "upsert",
            "lineEnding": "LF",
        },
    )
    validate(bulk_contract, created)
    job = created.json()
    assert job["state"] == "Open" and job["contentUrl"].endswith(
        f"/jobs/ingest/{job['id']}/batches"
    )
    data = (
        f"{KEY},Account__c,Final_Score__c,Health_Tier__c\n"
        f"{key(1)},{id18(sf_id(1))},81.5,Healthy\n"
        f"{key(2)},{id18(sf_id(2))},49.0,Gold\n"
    )
    # The contract file says application/octet-stream; Salesforce takes text/csv and answers 201.
    uploaded = call(
        sf,
        "PUT",
        f"/jobs/ingest/{job['id']}/batches",
        data=data.encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert uploaded.status_code == 201
    closed = call(sf, "PATCH", f"/jobs/ingest/{job['id']}", json={"state": "UploadComplete"})
    validate(bulk_contract, closed)
    assert closed.json()["state"] == "UploadComplete"
    states = []
    for _ in range(2):
        polled = call(sf, "GET", f"/jobs/ingest/{job['id']}")
        validate(bulk_contract, polled)
        states.append(polled.json()["state"])
    assert states == ["InProgress", "JobComplete"]
    assert (polled.json()["numberRecordsProcessed"], polled.json()["numberRecordsFailed"]) == (2, 1)
    good = call(sf, "GET", f"/jobs/ingest/{job['id']}/successfulResults/")
    bad = call(sf, "GET", f"/jobs/ingest/{job['id']}/failedResults/")
    assert good.headers["Content-Type"].startswith("text/csv")
    good_rows, bad_rows = csv_rows(good.text), csv_rows(bad.text)
    assert good_rows[0] == [
        "sf__Id",
        "sf__Created",
        KEY,
        "Account__c",
        "Final_Score__c",
        "Health_Tier__c",
    ]
    assert good_rows[1][1:3] == ["true", key(1)]
    assert good_rows[1][0] == sf.api.records["Health_Score__c"][key(1)]["Id"]
    assert bad_rows[0][:2] == ["sf__Id", "sf__Error"]
    assert bad_rows[1][:3] == [
        "",
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:Health Tier: bad value for restricted picklist "
        "field: Gold:Health_Tier__c --",
        key(2),
    ]


def test_results_are_refused_until_the_job_has_finished(sf: Org, bulk_contract: Any) -> None:
    job = call(sf, "POST", "/jobs/ingest", json={"object": "Account", "operation": "update"}).json()
    early = call(sf, "GET", f"/jobs/ingest/{job['id']}/successfulResults/")
    missing = call(sf, "GET", "/jobs/ingest/7500000000000ZZAAA")
    assert early.status_code == 400 and early.json()[0]["errorCode"] == "INVALIDJOBSTATE"
    assert missing.status_code == 404
    validate(bulk_contract, missing)


def test_an_aborted_job_writes_nothing_and_returns_its_data_as_unprocessed(sf: Org) -> None:
    job = call(
        sf,
        "POST",
        "/jobs/ingest",
        json={"object": "Health_Score__c", "externalIdFieldName": KEY, "operation": "upsert"},
    ).json()
    data = f"{KEY},Final_Score__c\n{key(1)},70.0\n"
    call(
        sf,
        "PUT",
        f"/jobs/ingest/{job['id']}/batches",
        data=data,
        headers={"Content-Type": "text/csv"},
    )
    aborted = call(sf, "PATCH", f"/jobs/ingest/{job['id']}", json={"state": "Aborted"})
    assert aborted.json()["state"] == "Aborted"
    assert call(sf, "GET", f"/jobs/ingest/{job['id']}").json()["state"] == "Aborted"
    assert call(sf, "GET", f"/jobs/ingest/{job['id']}/unprocessedrecords/").text == data
    assert "Health_Score__c" not in sf.api.records


def test_an_upsert_job_needs_an_external_id_field_of_the_object(sf: Org) -> None:
    answer = call(
        sf,
        "POST",
        "/jobs/ingest",
        json={
            "object": "Health_Score__c",
            "externalIdFieldName": "Period__c",
            "operation": "upsert",
        },
    )
    assert answer.status_code == 400
    assert answer.json() == [
        {
            "errorCode": "INVALIDJOB",
            "message": "Invalid external ID field: Period__c on Health_Score__c",
        }
    ]


def test_a_second_upload_to_the_same_job_is_refused(sf: Org) -> None:
    job = call(sf, "POST", "/jobs/ingest", json={"object": "Account", "operation": "update"}).json()
    path = f"/jobs/ingest/{job['id']}/batches"
    first = call(sf, "PUT", path, data="Id\n", headers={"Content-Type": "text/csv"})
    second = call(sf, "PUT", path, data="Id\n", headers={"Content-Type": "text/csv"})
    assert (first.status_code, second.status_code) == (201, 409)


# -- sObject Collections --------------------------------------------------------------------------


def test_a_composite_upsert_answers_one_result_per_record_as_the_contract_describes(
    sf: Org, rest_contract: Any
) -> None:
    created = upsert(sf, [record(1, Final_Score__c=80.5), record(2, Final_Score__c=60)])
    validate(rest_contract, created)
    assert created.status_code == 201
    assert [(r["success"], r["created"]) for r in created.json()] == [(True, True), (True, True)]
    again = upsert(sf, [record(1, Final_Score__c=81), record(3, Cap_Rule__c="r" * 256)])
    validate(rest_contract, again)
    first, second = again.json()
    assert (first["success"], first["created"], first["id"]) == (
        True,
        False,
        created.json()[0]["id"],
    )
    assert second == {
        "id": None,
        "success": False,
        "created": False,
        "errors": [
            {
                "statusCode": "STRING_TOO_LONG",
                "message": f"Cap Rule: data value too large: {'r' * 256} (max length=255)",
                "fields": ["Cap_Rule__c"],
            }
        ],
    }
    assert len(sf.api.records["Health_Score__c"]) == 2


def test_more_than_200_records_in_one_call_are_refused(sf: Org, rest_contract: Any) -> None:
    answer = upsert(sf, [record(n) for n in range(201)])
    validate(rest_contract, answer, request=False)  # the request breaks maxItems on purpose
    assert answer.status_code == 400
    assert answer.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert "Health_Score__c" not in sf.api.records


def test_external_ids_are_unique_and_case_sensitive(sf: Org) -> None:
    lower = record(1)
    upper = {**record(1), KEY: key(1).upper()}
    results = upsert(sf, [lower, upper, lower]).json()
    assert [(r["success"], r["created"]) for r in results] == [
        (True, True),
        (True, True),
        (True, False),
    ]
    assert results[0]["id"] == results[2]["id"] != results[1]["id"]
    assert set(sf.api.records["Health_Score__c"]) == {key(1), key(1).upper()}


@pytest.mark.parametrize(
    ("values", "code", "message"),
    [
        (
            {"Bogus__c": 1},
            "INVALID_FIELD",
            "No such column 'Bogus__c' on sobject of type Health_Score__c",
        ),
        (
            {"Final_Score__c": "high"},
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
            "Final Score: value not of required type: high",
        ),
        (
            {"Final_Score__c": 123456},
            "NUMBER_OUTSIDE_VALID_RANGE",
            "Final Score: value outside of valid range on numeric field: 123456",
        ),
        (
            {"Scoring_Date__c": "01/11/2026"},
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
            "Scoring Date: value not of required type: 01/11/2026",
        ),
        (
            {"Health_Tier__c": "healthy"},
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "Health Tier: bad value for restricted picklist field: healthy",
        ),
        (
            {"Account__c": "not-an-id"},
            "MALFORMED_ID",
            "Account: id value of incorrect type: not-an-id",
        ),
    ],
)
def test_a_bad_value_fails_its_record_with_salesforces_error(
    sf: Org, values: dict[str, Any], code: str, message: str
) -> None:
    results = upsert(sf, [record(1), record(2, **values)]).json()
    assert results[0]["success"] is True
    assert results[1]["errors"][0]["statusCode"] == code
    assert results[1]["errors"][0]["message"] == message
    assert set(sf.api.records["Health_Score__c"]) == {key(1)}


def test_all_or_none_rolls_back_every_record_when_one_fails(sf: Org) -> None:
    results = upsert(sf, [record(1), record(2, Bogus__c=1)], allOrNone=True).json()
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert "Health_Score__c" not in sf.api.records or not sf.api.records["Health_Score__c"]


def test_a_lookup_to_an_account_the_org_lacks_is_refused_when_the_org_knows_its_accounts() -> None:
    with org(api=WriteApi(account_ids=[sf_id(1)])) as sf:
        results = upsert(sf, [record(1), record(2)]).json()
    assert results[0]["success"] is True
    assert results[1]["errors"][0]["statusCode"] == "INVALID_CROSS_REFERENCE_KEY"


def test_a_locked_row_fails_as_many_times_as_asked_then_goes_through(sf: Org) -> None:
    sf.api.lock_rows({key(1): 2})
    outcomes = [upsert(sf, [record(1)]).json()[0] for _ in range(3)]
    assert [o["success"] for o in outcomes] == [False, False, True]
    assert outcomes[0]["errors"][0]["statusCode"] == "UNABLE_TO_LOCK_ROW"


def test_updates_by_id_reach_accounts_and_refuse_malformed_ids(sf: Org) -> None:
    answer = call(
        sf,
        "PATCH",
        "/composite/sobjects",
        json={
            "allOrNone": False,
            "records": [
                {
                    "attributes": {"type": "Account"},
                    "id": sf_id(4),
                    "Latest_Health_Tier__c": "Critical",
                },
                {
                    "attributes": {"type": "Account"},
                    "id": "001XYZ",
                    "Latest_Health_Tier__c": "Critical",
                },
            ],
        },
    )
    ok, bad = answer.json()
    assert ok["success"] and ok["id"] == id18(sf_id(4))
    assert bad["errors"][0]["statusCode"] == "MALFORMED_ID"
    assert sf.api.records["Account"][id18(sf_id(4))]["Latest_Health_Tier__c"] == "Critical"


def test_write_route_labels_fold_job_ids_out(sf: Org) -> None:
    for _ in range(2):
        job = call(
            sf, "POST", "/jobs/ingest", json={"object": "Account", "operation": "update"}
        ).json()
        call(sf, "GET", f"/jobs/ingest/{job['id']}")
    labels = [WriteApi.endpoint_label("GET", f"/jobs/ingest/{job}") for job in sf.api.jobs]
    assert labels == ["GET /jobs/ingest/{id}"] * 2
    assert (
        WriteApi.endpoint_label("PUT", "/jobs/ingest/750x/batches")
        == "PUT /jobs/ingest/{id}/batches"
    )
    assert WriteApi.endpoint_label("GET", "/query") is None
