"""The stand-ins driven by the vendors' own Python clients, for the operations the product uses.

A dev-only check that the stand-ins are faithful enough for clients written by the vendors (or
generated from their API definitions), not only for our extractors. The clients come with the
``dev`` extra; a module whose client is missing is skipped.

- **Jira** (``jira``): ``JIRA(server, basic_auth=…)`` reads ``GET /rest/api/2/serverInfo``
  (``deploymentType: Cloud`` makes it use the enhanced search) and ``GET /rest/api/2/field``;
  ``search_issues`` pages ``GET /rest/api/2/search/jql`` with ``nextPageToken``.
- **Looker** (``looker-sdk``): ``init40`` logs in with a form body and ``run_look`` runs a Look
  with ``limit=-1``; HTTP Basic client credentials on ``/login`` are checked with ``requests``.
- **Intercom** (``python-intercom``): ``conversations.search`` (created-at window, 150 a page),
  ``contacts.search`` (``id IN``), ``companies.find``. The client sends no ``Intercom-Version``
  header unless told (so the stand-in answers in the app's default version); it is given 2.16, as
  the product pins. One limitation of the client, not of the stand-in: in python-intercom 5.0.1 the
  search pager's "next page" repeats the *first* request (``get_next`` passes the original
  ``pagination``, without the cursor), so iterating a multi-page search never ends — against
  Intercom too. The test pages by hand with ``starting_after``, as the product does.
- **Salesforce** (``simple-salesforce``): a SOQL ``query_all`` through the client, given the
  session the stand-in's OAuth client-credentials login returns (simple-salesforce builds its own
  login URLs from ``domain`` as ``https://{domain}.salesforce.com``, which cannot name a loopback
  port, so the login itself is done with ``requests``).
"""

from __future__ import annotations

import gc
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from health_score_sandbox import intercom as sandbox_intercom
from health_score_sandbox import salesforce as sandbox_salesforce
from health_score_sandbox.jql import parse
from health_score_sandbox.sandbox import Sandbox

ACCOUNTS = 60


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(ACCOUNTS, seed=3) as running:
        yield running


# --------------------------------------------------------------------------------------------
# Jira


@pytest.fixture(autouse=True)
def _collect_vendor_client_sockets() -> Iterator[None]:
    """The vendors' clients (looker-sdk, python-intercom) leave pooled sockets to the garbage
    collector: collect them after each test here, so their ResourceWarning cannot surface in
    (and fail) some later, unrelated test."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def test_the_jira_client_searches_the_stand_in(sandbox: Sandbox) -> None:
    jira = pytest.importorskip("jira")
    env = sandbox.env()
    sandbox.reset_stats()
    client = jira.JIRA(
        server=env["JIRA_BASE_URL"], basic_auth=(env["JIRA_EMAIL"], env["JIRA_API_TOKEN"])
    )
    try:
        check_jira(client, sandbox)
    finally:
        client.close()  # the client's own session: no socket left to the garbage collector


def check_jira(client: Any, sandbox: Sandbox) -> None:
    info = client.server_info()
    assert info["deploymentType"] == "Cloud"
    fields = {field["id"]: field for field in client.fields()}
    assert {"project", "priority", "components"} <= fields.keys()
    data = sandbox.data["jira"]
    assert fields[data.customer_field]["custom"] is True

    project = next(p.account.jira_project_key for p in sandbox.portfolio.profiles if p.has("jira"))
    jql = f"issuetype = Bug AND statusCategory != Done AND project = {project}"
    issues = client.search_issues(jql, maxResults=0, fields=["project", "priority", "components"])
    expected = [data.issues[i] for i in data.index.search(parse(jql))]
    assert len(expected) > 100  # more than one page of 100
    assert sorted(issue.key for issue in issues) == sorted(issue.key for issue in expected)
    priorities = {issue.key: issue.fields.priority.name for issue in issues}
    assert priorities == {issue.key: issue.priority for issue in expected}
    stats = sandbox.stats()["jira"]
    assert stats["GET /rest/api/2/serverInfo"] >= 1
    assert stats["GET /rest/api/2/search/jql"] >= 2


def test_the_v3_field_list_and_server_info_answer_too(sandbox: Sandbox) -> None:
    env = sandbox.env()
    with requests.Session() as http:
        http.auth = (env["JIRA_EMAIL"], env["JIRA_API_TOKEN"])
        fields = http.get(f"{env['JIRA_BASE_URL']}/rest/api/3/field")
        info = http.get(f"{env['JIRA_BASE_URL']}/rest/api/2/serverInfo")
        anonymous = requests.get(f"{env['JIRA_BASE_URL']}/rest/api/3/field", timeout=10)
    assert fields.status_code == 200 and isinstance(fields.json(), list)
    assert info.status_code == 200 and info.json()["deploymentType"] == "Cloud"
    assert anonymous.status_code == 401


# --------------------------------------------------------------------------------------------
# Looker


def test_the_looker_sdk_runs_a_look_on_the_stand_in(sandbox: Sandbox, tmp_path: Path) -> None:
    looker_sdk = pytest.importorskip("looker_sdk")
    env = sandbox.env()
    ini = tmp_path / "looker.ini"
    ini.write_text(
        "[Looker]\n"
        f"base_url={env['LOOKER_BASE_URL']}\n"
        f"client_id={env['LOOKER_CLIENT_ID']}\n"
        f"client_secret={env['LOOKER_CLIENT_SECRET']}\n"
        "verify_ssl=false\n",
        encoding="utf-8",
    )
    sandbox.reset_stats()
    sdk = looker_sdk.init40(config_file=str(ini))
    rows = json.loads(sdk.run_look("103", result_format="json", limit=-1))
    assert rows == sandbox.data["looker"].looks["103"]
    assert sandbox.stats()["looker"] == {
        "POST /api/4.0/login": 1,
        "GET /api/4.0/looks/103/run/json": 1,
    }


def test_looker_login_accepts_http_basic_client_credentials(sandbox: Sandbox) -> None:
    env = sandbox.env()
    url = f"{env['LOOKER_BASE_URL']}/api/4.0/login"
    good = requests.post(
        url, auth=(env["LOOKER_CLIENT_ID"], env["LOOKER_CLIENT_SECRET"]), timeout=10
    )
    wrong = requests.post(url, auth=(env["LOOKER_CLIENT_ID"], "not-the-secret"), timeout=10)
    assert good.status_code == 200 and good.json()["access_token"]
    assert wrong.status_code == 404  # what Looker answers unknown credentials


# --------------------------------------------------------------------------------------------
# Intercom


def test_python_intercom_searches_conversations_and_contacts(sandbox: Sandbox) -> None:
    intercom_client = pytest.importorskip("intercom")
    env = sandbox.env()
    client = intercom_client.Intercom(
        token=env["INTERCOM_API_TOKEN"],
        base_url=env["INTERCOM_BASE_URL"],
        headers={"Intercom-Version": "2.16"},
    )
    data = sandbox.data["intercom"]
    start, end = sandbox_intercom.window_of(sandbox.portfolio.as_of, 30)
    query = intercom_client.MultipleFilterSearchRequest(
        operator="AND",
        value=[
            intercom_client.SingleFilterSearchRequest(
                field="created_at", operator=">", value=str(start)
            ),
            intercom_client.SingleFilterSearchRequest(
                field="created_at", operator="<", value=str(end - 1)
            ),
        ],
    )
    sandbox.reset_stats()
    found: list[Any] = []
    cursor: str | None = None
    while True:  # by hand: the client's own pager repeats the first page (see the docstring)
        page = client.conversations.search(
            query=query,
            pagination=intercom_client.StartingAfterPaging(per_page=150, starting_after=cursor),
        )
        found.extend(page.items or [])
        following = page.response.pages.next if page.response.pages else None
        cursor = following.starting_after if following else None
        if not cursor:
            break
    expected = [c for c in data.conversations if start <= c.created_at < end]
    assert len(expected) > 150
    assert [c.id for c in found] == [c.id for c in expected]
    delivered = {c.id: c.source.delivered_as for c in found}
    assert delivered == {c.id: c.delivered_as for c in expected}
    assert sandbox.stats()["intercom"] == {"POST /conversations/search": -(-len(expected) // 150)}

    contact_ids = [c.id for c in data.contacts[:3]]
    contacts = client.contacts.search(
        query=intercom_client.SingleFilterSearchRequest(
            field="id", operator="IN", value=contact_ids
        ),
        pagination=intercom_client.StartingAfterPaging(per_page=150),
    ).items
    assert sorted(c.id for c in contacts) == sorted(contact_ids)
    company = data.companies[0]
    assert client.companies.find(company.id).company_id == company.company_id


def test_python_intercom_without_a_version_gets_the_apps_default(sandbox: Sandbox) -> None:
    intercom_client = pytest.importorskip("intercom")
    env = sandbox.env()
    client = intercom_client.Intercom(
        token=env["INTERCOM_API_TOKEN"], base_url=env["INTERCOM_BASE_URL"]
    )
    page = client.conversations.search(
        query=intercom_client.SingleFilterSearchRequest(
            field="created_at", operator=">", value="0"
        ),
        pagination=intercom_client.StartingAfterPaging(per_page=20),
    )
    assert len(page.items or []) == 20  # answered (2.14), not refused


# --------------------------------------------------------------------------------------------
# Salesforce


def test_simple_salesforce_queries_the_stand_in(sandbox: Sandbox) -> None:
    simple_salesforce = pytest.importorskip("simple_salesforce")
    env = sandbox.env()
    with requests.Session() as http:
        http.verify = env["SF_CA_BUNDLE"]  # the stand-in's throwaway CA
        http.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment would win
        instance_url, token = sandbox_salesforce.login(http, env["SF_LOGIN_URL"])
        client = simple_salesforce.Salesforce(
            instance_url=instance_url, session_id=token, session=http
        )
        result = client.query_all("SELECT Id, Name FROM Account")
    mapped = {p.account.sf_account_id for p in sandbox.portfolio.profiles}
    ids = {record["Id"] for record in result["records"]}
    assert result["totalSize"] == len(result["records"]) >= ACCOUNTS // 2
    assert ids & mapped


def test_simple_salesforce_upserts_by_external_id_and_gets_one_record(sandbox: Sandbox) -> None:
    simple_salesforce = pytest.importorskip("simple_salesforce")
    env = sandbox.env()
    account_id = next(p.account.sf_account_id for p in sandbox.portfolio.profiles)
    with requests.Session() as http:
        http.verify = env["SF_CA_BUNDLE"]
        http.trust_env = False
        instance_url, token = sandbox_salesforce.login(http, env["SF_LOGIN_URL"])
        client = simple_salesforce.Salesforce(
            instance_url=instance_url, session_id=token, session=http
        )
        created = client.Health_Score__c.upsert(
            "External_Key__c/k-1", {"Health_Tier__c": "Healthy"}
        )
        updated = client.Health_Score__c.upsert(
            "External_Key__c/k-1", {"Health_Tier__c": "At Risk"}
        )
        account = client.Account.get(account_id)
        app = sandbox.servers["salesforce"].app
        assert isinstance(app, sandbox_salesforce.App)
        written = app.writes.records["Health_Score__c"]["k-1"]
        score = client.Health_Score__c.get(written["Id"])
    assert (created, updated) == (201, 200)
    assert account["Id"][:15] == str(account_id)[:15]
    assert account["attributes"]["type"] == "Account" and "Name" in account
    assert score["Health_Tier__c"] == "At Risk" and score["External_Key__c"] == "k-1"
