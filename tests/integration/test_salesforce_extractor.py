"""The Salesforce extractor against the stand-in over real TLS: metrics, signals, logins, limits."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from health_score.records import NO_SIGNALS, Account
from health_score.sources import salesforce as ext
from health_score.sources.base import SourceResult
from health_score.sources.http import AuthenticationError, SourceError
from health_score.sources.registry import load_sources
from health_score.sources.salesforce import auth
from health_score.sources.salesforce import extractor as sf_extractor
from health_score_sandbox import salesforce as sfs
from health_score_sandbox.portfolio import Portfolio, build_portfolio
from health_score_sandbox.server import Faults, VendorServer
from tests.conftest import DEFAULT_CONFIG

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)  # the portfolio's reference date, 00:00 UTC


@dataclass
class Org:
    portfolio: Portfolio
    data: sfs.Data
    app: sfs.App
    server: VendorServer
    settings: ext.Settings
    ca: str

    def env(self, **overrides: str) -> dict[str, str]:
        return {**sfs.environment(self.server.url, self.ca), **overrides}

    def extract(self, env: dict[str, str] | None = None, **changes: Any) -> SourceResult:
        return self.extract_at(AS_OF, env, **changes)

    def extract_at(
        self, as_of: datetime, env: dict[str, str] | None = None, **changes: Any
    ) -> SourceResult:
        """One pass for the period ending at ``as_of``, run on the sandbox's date."""
        settings = self.settings.model_copy(update=changes)
        with requests.Session() as session:
            extractor = sf_extractor.from_env(
                settings, env or self.env(), session=session, as_of=as_of, now=AS_OF
            )
            assert extractor is not None
            return extractor.extract(self.portfolio.accounts)


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
    # Fast retries: the stand-in's 429s ask for one second.
    return loaded.model_copy(
        update={"http": loaded.http.model_copy(update={"attempts": 4, "budget_seconds": 20})}
    )


def _org(tls: tuple[ssl.SSLContext, str], settings: ext.Settings, accounts: int) -> Iterator[Org]:
    portfolio = build_portfolio(accounts)
    data = sfs.generate(portfolio, settings)
    app = sfs.App(data, settings)
    with VendorServer(app, tls=tls[0]) as server:
        yield Org(portfolio, data, app, server, settings, tls[1])


@pytest.fixture(scope="module")
def portfolio_250(tls: tuple[ssl.SSLContext, str], settings: ext.Settings) -> Iterator[Org]:
    yield from _org(tls, settings, 250)


@pytest.fixture(scope="module")
def extracted_250(portfolio_250: Org) -> SourceResult:
    return portfolio_250.extract()


@pytest.fixture
def small(tls: tuple[ssl.SSLContext, str], settings: ext.Settings) -> Iterator[Org]:
    yield from _org(tls, settings, 12)


# -- the whole portfolio ---------------------------------------------------------------------


def test_every_account_of_250_gets_the_expected_metrics(
    portfolio_250: Org, extracted_250: SourceResult
) -> None:
    expected = portfolio_250.data.expected
    assert set(extracted_250.metrics) == set(expected)
    wrong = {a: v for a, v in extracted_250.metrics.items() if dict(v) != expected[a]}
    assert wrong == {}
    assert extracted_250.missing_metrics == frozenset()
    assert extracted_250.accounts_with_data > 200


def test_every_account_of_250_gets_the_expected_signal_counts(
    portfolio_250: Org, extracted_250: SourceResult
) -> None:
    expected = portfolio_250.data.expected_signals
    for profile in portfolio_250.portfolio.profiles:
        got = extracted_250.signals.get(profile.account_id, NO_SIGNALS)
        wanted = expected.get(profile.account_id, sfs.NO_SIGNALS)
        assert asdict(got) == asdict(wanted), profile.account_id
    assert sum(1 for s in extracted_250.signals.values() if s.total) >= 10


def test_requests_stay_within_the_minimum_and_every_one_is_counted(
    portfolio_250: Org, extracted_250: SourceResult
) -> None:
    minimum = portfolio_250.data.minimum_requests(portfolio_250.settings)
    assert extracted_250.requests == minimum == 6  # one login, five queries
    assert portfolio_250.server.total_requests >= extracted_250.requests


# -- ids and SOQL text -----------------------------------------------------------------------


def test_an_injection_attempt_in_an_id_is_refused_before_any_request(small: Org) -> None:
    evil = Account("x", "Evil Corp", "paid", sf_account_id="001' OR Name != '")
    with requests.Session() as session:
        extractor = sf_extractor.from_env(
            small.settings, small.env(), session=session, as_of=AS_OF, now=AS_OF
        )
        assert extractor is not None
        with pytest.raises(SourceError, match="sf_account_id refused"):
            extractor.extract([*small.portfolio.accounts, evil])
    assert small.server.total_requests == 0
    assert extractor.requests_made == 0


def test_soql_literals_escape_quotes_backslashes_and_newlines() -> None:
    assert ext.soql_literal("001' OR Name != '") == "'001\\' OR Name != \\''"
    assert ext.soql_literal('a\\b"c\nd') == "'a\\\\b\\\"c\\nd'"
    with pytest.raises(ValueError, match="control characters"):
        ext.soql_literal("bell\x07")


def test_ids_are_validated_and_widened_to_eighteen_characters() -> None:
    assert ext.salesforce_id18("001Sb0000000001") == "001Sb0000000001IAA"
    assert ext.salesforce_id18("001Sb0000000001IAA") == "001Sb0000000001IAA"
    # "001Sb": S at 3 → 8 → I. A lowercased suffix says the same; a different one does not.
    assert ext.salesforce_id18("001Sb0000000001iaa") == "001Sb0000000001IAA"
    for bad in ("001Sb0000000001AAA", "001' OR Name != '", "001Sb00000000", "001Sb000000000!"):
        with pytest.raises(ValueError, match="not a Salesforce id"):
            ext.salesforce_id18(bad)
    assert ext.soql_id_list(["001Sb0000000001"]) == "('001Sb0000000001IAA')"


# -- logins ----------------------------------------------------------------------------------


def test_without_credentials_the_source_is_not_activated(small: Org) -> None:
    env = {"SF_LOGIN_URL": small.server.url, "SF_CLIENT_ID": "only-an-id"}
    assert sf_extractor.from_env(small.settings, env) is None
    assert small.server.total_requests == 0


def test_username_password_and_token_login_reads_the_same_metrics(small: Org) -> None:
    env = {
        "SF_LOGIN_URL": small.server.url,
        "SF_USERNAME": sfs.FAKE_USERNAME,
        "SF_PASSWORD": sfs.FAKE_PASSWORD,
        "SF_SECURITY_TOKEN": sfs.FAKE_SECURITY_TOKEN,
        "SF_CA_BUNDLE": small.ca,
    }
    result = small.extract(env)
    assert {a: dict(v) for a, v in result.metrics.items()} == small.data.expected
    assert small.server.stats["POST /services/Soap/u/62.0"] == 1


def test_jwt_bearer_login_reads_the_same_metrics(small: Org, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "server.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    small.app.jwt_public_key = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    env = {
        "SF_LOGIN_URL": small.server.url,
        "SF_CLIENT_ID": sfs.FAKE_CLIENT_ID,
        "SF_USERNAME": sfs.FAKE_USERNAME,
        "SF_JWT_KEY_FILE": str(key_file),
        "SF_CA_BUNDLE": small.ca,
    }
    result = small.extract(env)
    assert {a: dict(v) for a, v in result.metrics.items()} == small.data.expected


def test_rejected_client_credentials_name_the_variables_and_never_the_secret(small: Org) -> None:
    env = small.env(SF_CLIENT_SECRET="wrong-secret-value")
    with pytest.raises(AuthenticationError) as caught:
        small.extract(env)
    message = str(caught.value)
    assert "SF_CLIENT_ID" in message and "SF_CLIENT_SECRET" in message
    assert "wrong-secret-value" not in message
    assert "invalid_client" in message


def test_a_rejected_password_login_names_the_password_variables(small: Org) -> None:
    env = {
        "SF_LOGIN_URL": small.server.url,
        "SF_USERNAME": sfs.FAKE_USERNAME,
        "SF_PASSWORD": "wrong-password",
        "SF_SECURITY_TOKEN": "wrong-token",
        "SF_CA_BUNDLE": small.ca,
    }
    with pytest.raises(AuthenticationError) as caught:
        small.extract(env)
    message = str(caught.value)
    assert all(n in message for n in ("SF_USERNAME", "SF_PASSWORD", "SF_SECURITY_TOKEN"))
    assert "INVALID_LOGIN" in message and "wrong-password" not in message


def test_an_expired_session_is_renewed_once_and_the_run_completes(small: Org) -> None:
    small.server.faults.token_expiry_after = 3
    result = small.extract(http=small.settings.http.model_copy(update={"max_workers": 1}))
    assert {a: dict(v) for a, v in result.metrics.items()} == small.data.expected
    assert small.server.stats["POST /services/oauth2/token"] == 2


# -- limits, faults and smaller orgs ---------------------------------------------------------


def test_a_spent_daily_allowance_fails_the_source_saying_so(small: Org) -> None:
    small.app.daily_api_limit = 2
    with pytest.raises(SourceError, match="daily API request allowance is spent") as caught:
        small.extract()
    assert not isinstance(caught.value, AuthenticationError)


def test_a_429_storm_is_waited_out(small: Org) -> None:
    small.server.faults = Faults(storm_429=2)
    result = small.extract()
    assert {a: dict(v) for a, v in result.metrics.items()} == small.data.expected


def test_missing_or_hidden_fields_and_objects_make_their_metrics_unavailable_and_degrade(
    small: Org, caplog: pytest.LogCaptureFixture
) -> None:
    small.app.drop_field("Account", "Champion_Changed_Date__c")
    small.app.drop_object("Payment__c")
    result = small.extract(id_chunk_size=5)  # 12 accounts → three id lists
    assert result.missing_metrics == {"champion_stability", "payment_health"}
    # Unavailable for every account (never "missing", which would redistribute their weight),
    # and the source is degraded, saying why.
    assert result.unavailable == {
        a.account_id: frozenset({"champion_stability", "payment_health"})
        for a in small.portfolio.accounts
    }
    assert result.degraded
    assert sorted(result.incomplete) == [
        "Account.Champion_Changed_Date__c cannot be read (INVALID_FIELD: not in the org, hidden "
        "from this user, or of another type): champion_stability unavailable",
        "Payment__c cannot be read (INVALID_TYPE: not in the org, or hidden from this user): "
        "payment_health unavailable",
    ]
    assert len(result.notes) == 2
    assert sum("cannot be read" in r.getMessage() for r in caplog.records) == 2
    for account_id, values in result.metrics.items():
        expected = dict(small.data.expected[account_id])
        expected.update(champion_stability=None, payment_health=None)
        assert dict(values) == expected
    # login + Account (1 refused + 3) + Opportunity 3 + payment 1 refused + Event 3 + signals 3
    assert result.requests == 1 + 4 + 3 + 1 + 3 + 3


def test_too_many_groups_in_one_aggregate_splits_the_id_list(
    tls: tuple[ssl.SSLContext, str], settings: ext.Settings
) -> None:
    # Counting calls as QBRs over five years gives up to five groups per account: 550 accounts
    # exceed 2,000 groups.
    wide = settings.model_copy(
        update={
            "id_chunk_size": 550,
            "lookback_months": 60,
            "event": settings.event.model_copy(update={"qbr_types": ("QBR", "Call")}),
        }
    )
    for org in _org(tls, wide, 700):
        # The refusal is known by its message, whatever errorCode Salesforce gives it.
        org.app.aggregate_cap_code = "EXCEEDED_ID_LIMIT"
        result = org.extract()
        # The refused aggregate and the second half of its split list are two more requests.
        assert result.requests == org.data.minimum_requests(wide) + 2
        wrong = {a: v for a, v in result.metrics.items() if dict(v) != org.data.expected[a]}
        assert wrong == {}


# -- login hosts and outages -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "host"),
    [
        ({}, "login.salesforce.com"),
        ({"SF_LOGIN_URL": "https://login.salesforce.com"}, "login.salesforce.com"),
        ({"SF_DOMAIN": "test"}, "test.salesforce.com"),
    ],
)
def test_client_credentials_on_a_generic_login_host_ask_for_the_my_domain_url(
    location: dict[str, str], host: str
) -> None:
    env = {"SF_CLIENT_ID": "id", "SF_CLIENT_SECRET": "s3cret-value", **location}
    with pytest.raises(AuthenticationError) as caught:
        auth.credentials_from_env(env)
    message = str(caught.value)
    assert f"not on {host}" in message
    assert "https://acme.my.salesforce.com" in message and "s3cret-value" not in message


def test_client_credentials_on_a_my_domain_url_are_accepted() -> None:
    env = {
        "SF_CLIENT_ID": "id",
        "SF_CLIENT_SECRET": "s",
        "SF_LOGIN_URL": "https://acme.my.salesforce.com",
    }
    credentials = auth.credentials_from_env(env)
    assert credentials is not None and credentials.flow == "client_credentials"
    # JWT bearer and SOAP still log in on the generic hosts.
    jwt_env = {
        "SF_CLIENT_ID": "id",
        "SF_USERNAME": "u",
        "SF_JWT_KEY_FILE": "k",
        "SF_DOMAIN": "test",
    }
    assert auth.credentials_from_env(jwt_env) is not None


def test_the_stand_in_refuses_client_credentials_sent_to_a_login_host(small: Org) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": sfs.FAKE_CLIENT_ID,
        "client_secret": sfs.FAKE_CLIENT_SECRET,
    }
    url = f"{small.server.url}/services/oauth2/token"
    with requests.Session() as session:
        refused = session.post(
            url, data=form, headers={"Host": "login.salesforce.com"}, verify=small.ca, timeout=10
        )
        accepted = session.post(url, data=form, verify=small.ca, timeout=10)
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "invalid_grant",
        "error_description": "request not supported on this domain",
    }
    assert accepted.status_code == 200


@pytest.mark.parametrize(
    ("login_url", "audience"),
    [
        ("https://login.salesforce.com", "https://login.salesforce.com"),
        ("https://test.salesforce.com", "https://test.salesforce.com"),
        ("https://acme--uat.sandbox.my.salesforce.com", "https://test.salesforce.com"),
        ("https://acme.my.salesforce.com", "https://login.salesforce.com"),
    ],
)
def test_the_jwt_audience_is_test_salesforce_com_for_sandbox_orgs(
    login_url: str, audience: str, tmp_path: Path
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "server.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    credentials = auth.credentials_from_env(
        {
            "SF_CLIENT_ID": "cid",
            "SF_USERNAME": "u@x",
            "SF_JWT_KEY_FILE": str(key_file),
            "SF_LOGIN_URL": login_url,
        }
    )
    assert credentials is not None
    claims = jwt.decode(
        auth.jwt_assertion(credentials), key.public_key(), algorithms=["RS256"], audience=audience
    )
    assert (claims["aud"], claims["iss"], claims["sub"]) == (audience, "cid", "u@x")


def _password_env(org: Org) -> dict[str, str]:
    return {
        "SF_LOGIN_URL": org.server.url,
        "SF_USERNAME": sfs.FAKE_USERNAME,
        "SF_PASSWORD": sfs.FAKE_PASSWORD,
        "SF_SECURITY_TOKEN": sfs.FAKE_SECURITY_TOKEN,
        "SF_CA_BUNDLE": org.ca,
    }


@pytest.mark.parametrize(("flow", "status"), [("oauth", 500), ("oauth", 503), ("soap", 500)])
def test_a_5xx_at_login_is_salesforce_unavailable_not_rejected_credentials(
    small: Org, flow: str, status: int
) -> None:
    small.server.faults.login_status = status
    env = small.env() if flow == "oauth" else _password_env(small)
    with pytest.raises(SourceError) as caught:
        small.extract(env, http=small.settings.http.model_copy(update={"attempts": 2}))
    assert not isinstance(caught.value, AuthenticationError)
    assert f"Salesforce unavailable (HTTP {status} at login)" in str(caught.value)


def test_a_soap_invalid_login_fault_in_a_500_is_still_rejected_credentials(small: Org) -> None:
    env = {**_password_env(small), "SF_PASSWORD": "wrong"}
    with pytest.raises(AuthenticationError, match=r"credentials rejected .*INVALID_LOGIN"):
        small.extract(env)


def test_check_config_refuses_client_credentials_on_login_salesforce_com(
    config_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from health_score import cli

    mapping = config_copy / "account_mapping.csv"
    header = mapping.read_text(encoding="utf-8").splitlines()[0]
    mapping.write_text(f"{header}\n001Sb0000000001,,,Acme,paid,,\n", encoding="utf-8")
    monkeypatch.setenv("SF_CLIENT_ID", "id")
    monkeypatch.setenv("SF_CLIENT_SECRET", "s3cret-value")
    monkeypatch.setenv("SF_LOGIN_URL", "https://login.salesforce.com")
    monkeypatch.delenv("SF_DOMAIN", raising=False)
    assert cli.check_config(config_copy) == 2
    err = capsys.readouterr().err
    assert "My Domain URL, e.g. https://acme.my.salesforce.com" in err
    assert "s3cret-value" not in err
    monkeypatch.setenv("SF_LOGIN_URL", "https://acme.my.salesforce.com")
    assert cli.check_config(config_copy) == 0


def test_archived_events_count_and_a_group_event_counts_once(
    tls: tuple[ssl.SSLContext, str], settings: ext.Settings
) -> None:
    """Two years back, QBRs older than a year are archived (only queryAll returns them); attended
    events have invitees' child copies (IsChild) and a few are deleted."""
    two_years = settings.model_copy(update={"lookback_months": 24})
    for org in _org(tls, two_years, 40):
        events = org.data.org.get("Event")
        assert events is not None
        assert any(r["IsArchived"] and r["Type"] == "QBR" for r in events.records)
        assert any(r["IsChild"] for r in events.records)
        result = org.extract()
        wrong = {a: v for a, v in result.metrics.items() if dict(v) != org.data.expected[a]}
        assert wrong == {}
        assert any("queryAll" in label for label in org.server.stats)


def test_a_run_with_client_credentials_on_login_salesforce_com_is_refused_at_start(
    config_copy: Path, tmp_path: Path
) -> None:
    from health_score.pipeline import RunOptions, run

    mapping = config_copy / "account_mapping.csv"
    header = mapping.read_text(encoding="utf-8").splitlines()[0]
    mapping.write_text(f"{header}\n001Sb0000000001,,,Acme,paid,,\n", encoding="utf-8")
    env = {"SF_CLIENT_ID": "id", "SF_CLIENT_SECRET": "s3cret-value", "SF_DOMAIN": "login"}
    summary = run(
        RunOptions(
            config_dir=config_copy,
            dry_run=True,
            env=env,
            output=tmp_path / "scores.csv",
            runs_dir=str(tmp_path / "runs"),
        )
    )
    assert summary.exit_code == 2 and summary.run_id is None
    (message,) = summary.messages
    assert "not on login.salesforce.com (SF_DOMAIN is login)" in message
    assert "s3cret-value" not in message


# -- past periods --------------------------------------------------------------------------------


def _value_at(org: Org, account_id: str, field: str, at: datetime) -> Any:
    """A field of an Account as it stood at ``at``: the old value of its first change since."""
    (record,) = [r for r in org.data.org.get("Account").records if r["Id"] == account_id]  # type: ignore[union-attr]
    changes = sorted(
        (
            h
            for h in org.data.org.get("AccountHistory").records  # type: ignore[union-attr]
            if h["AccountId"] == account_id and h["Field"] == field and h["CreatedDate"] >= at
        ),
        key=lambda h: h["CreatedDate"],
    )
    return changes[0]["OldValue"] if changes else record[field]


def test_field_history_rebuilds_the_account_fields_as_they_stood_at_a_past_period_end(
    small: Org,
) -> None:
    at = datetime(2026, 6, 1, tzinfo=UTC)
    small.app.queries.clear()
    result = small.extract_at(at, field_history=True)
    in_org = {r["Id"] for r in small.data.org.get("Account").records}  # type: ignore[union-attr]
    checked = changed = 0
    for profile in small.portfolio.profiles:
        sf_id = profile.account.sf_account_id
        if sf_id is None or ext.salesforce_id18(sf_id) not in in_org:
            continue
        account_id = ext.salesforce_id18(sf_id)
        renewal = _value_at(small, account_id, "Renewal_Date__c", at)
        champion = _value_at(small, account_id, "Champion_Changed_Date__c", at)
        got = result.metrics[profile.account_id]
        assert got["days_to_renewal"] == (
            None if renewal is None else Decimal((renewal - at.date()).days)
        )
        assert got["champion_stability"] == (
            None if champion is None else Decimal((at.date() - champion).days)
        )
        checked += 1
        record = next(r for r in small.data.org.get("Account").records if r["Id"] == account_id)  # type: ignore[union-attr]
        changed += renewal != record["Renewal_Date__c"]
    assert checked >= 9 and changed >= 2  # every account in the org, real rollbacks among them
    # Expansions open then are told by CreatedDate and CloseDate; this org keeps no history of
    # its churn signals (no Churn_Signal__History), so their status is unavailable, said so.
    assert result.missing_metrics == frozenset()
    assert result.signals == {}
    (note,) = [n for n in result.notes if "past period" in n]
    assert note.startswith("Churn_Signal__History cannot be read (INVALID_TYPE: field history")
    assert "churn signal status unavailable (caps cannot be applied)" in note
    history = [q for q in small.app.queries if "FROM AccountHistory" in q]
    assert history and all("CreatedDate >= 2026-06-01T00:00:00Z" in q for q in history)


def test_a_period_beyond_the_field_history_kept_is_unavailable(small: Org) -> None:
    result = small.extract_at(datetime(2025, 4, 1, tzinfo=UTC), field_history=True)
    assert "days_to_renewal" in result.missing_metrics
    (note,) = [n for n in result.notes if "past period" in n]
    assert "beyond the 18 months of field history" in note
