"""The published rounding rule, pinned by hand-computed literals: half-up, 4 places, no trailing 0s.

Every value below was worked out by hand (the arithmetic is in the comments) and is chosen so that
its exact value sits exactly on a rounding half at the 5th decimal with an *even* 4th decimal:
half-up and half-even then disagree, and so do 4 places and 2. The cases run through
``metric_value`` itself and through the Looker, Intercom and Salesforce extractors reading
hand-made records from the stand-ins over loopback HTTP. Nothing here recomputes an expectation
with product code.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import requests
import trustme

from health_score.records import Account, metric_value
from health_score.sources.intercom import extractor as intercom_source
from health_score.sources.looker import extractor as looker_source
from health_score.sources.registry import load_sources
from health_score.sources.salesforce import extractor as sf_extractor
from health_score_sandbox import intercom, looker
from health_score_sandbox import salesforce as sfs
from health_score_sandbox.portfolio import build_portfolio
from health_score_sandbox.server import VendorServer
from tests.conftest import DEFAULT_CONFIG
from tests.intercom_support import company

AS_OF = date(2026, 11, 1)
AS_OF_UTC = datetime(2026, 11, 1, tzinfo=UTC)

# -- metric_value itself ---------------------------------------------------------------------

DIRECT = [
    # (input, published) — half-even would give / 2 places would give
    (Decimal("0.78125"), "0.7813"),  # 0.7812 / 0.78
    (Decimal("2.00005"), "2.0001"),  # 2 / 2
    (Decimal("0.50125"), "0.5013"),  # 0.5012 / 0.5
    (Decimal("87.12345"), "87.1235"),  # 87.1234 / 87.12
    (Decimal("-1.23445"), "-1.2345"),  # ties go away from zero; -1.2344 / -1.23
    (Decimal("-0.00125"), "-0.0013"),  # -0.0012 / 0
    (1.03125, "1.0313"),  # a float by its shortest repr; 1.0312 / 1.03
    (Decimal("3.906249"), "3.9062"),  # just below a half: down; 2 places: 3.91
    (Decimal("12.34565"), "12.3457"),  # 12.3456 / 12.35
]


@pytest.mark.parametrize(("value", "published"), DIRECT, ids=[str(v) for v, _ in DIRECT])
def test_metric_value_rounds_a_half_up_at_4_places(value: Decimal | float, published: str) -> None:
    rounded = metric_value(value)
    assert rounded == Decimal(published)
    assert str(rounded) == published


@pytest.mark.parametrize(
    ("value", "published"),
    [
        (Decimal("100.00000"), "100"),  # trailing zeros go, the integer part stays
        (Decimal("2.50000"), "2.5"),
        (Decimal("0.000049"), "0"),  # below half of the 4th place: zero, printed as 0
        (7, "7"),
    ],
)
def test_metric_value_strips_trailing_zeros(value: Decimal | int, published: str) -> None:
    assert str(metric_value(value)) == published


# -- through the Looker extractor ------------------------------------------------------------

LOOKER_CUSTOMER = "C-TIE-01"
USAGE_ROW = {
    "account_usage.customer_id": LOOKER_CUSTOMER,
    "account_usage.seats_licensed": 4096,
    "account_usage.active_users_30d": 32,  # 100 × 32 / 4096 = 0.78125
    "account_usage.sessions_30d": 33,  # 33 / 32 = 1.03125
    # previous sessions per user 132 / 133; change = (33/32 ÷ 132/133 − 1) × 100
    #   = (133/128 − 1) × 100 = 500/128 = 3.90625
    "account_usage.active_users_prior_30d": 133,
    "account_usage.sessions_prior_30d": 132,
    "account_usage.modules_licensed": 8,
    "account_usage.modules_active_30d": 5,  # 62.5
    "account_usage.platform_score": 87.12345,
}
VALUE_ROW = {
    "platform_value.customer_id": LOOKER_CUSTOMER,
    "platform_value.positive_rating_rate": 0.1234565,  # × 100 = 12.34565
    "platform_value.responded_before_target_rate": 0.0078125,  # × 100 = 0.78125
    "platform_value.automated_resolution_rate": 0.5,  # 50
    "platform_value.scheduled_report_count": 3,
}
LOOKER_PUBLISHED = {
    "active_user_pct": Decimal("0.7813"),  # half-even 0.7812, 2 places 0.78
    "sessions_per_user": Decimal("1.0313"),  # 1.0312 / 1.03
    "sessions_per_user_trend_pct": Decimal("3.9063"),  # 3.9062 / 3.91
    "feature_breadth_pct": Decimal("62.5"),
    "platform_score": Decimal("87.1235"),  # 87.1234 / 87.12
    "positive_sentiment_pct": Decimal("12.3457"),  # 12.3456 / 12.35
    "response_before_target_pct": Decimal("0.7813"),  # 0.7812 / 0.78
    "automated_resolution_pct": Decimal("50"),
    "scheduled_reports": Decimal("3"),
}


def test_looker_metrics_on_a_half_are_published_rounded_half_up() -> None:
    settings = load_sources(DEFAULT_CONFIG, ("looker",))["looker"]
    views = {"101": "account_usage", "102": "platform_value", "103": "integrations"}
    views["104"] = "automations"
    rows: dict[str, list[looker.Row]] = {"101": [USAGE_ROW], "102": [VALUE_ROW]}
    data = looker.Data(looks={k: rows.get(k, []) for k in views}, expected={}, views=views)
    account = Account("acct-looker", "Tie Looker", "paid", looker_customer_id=LOOKER_CUSTOMER)
    with VendorServer(looker.App(data, settings)) as server, requests.Session() as session:
        extractor = looker_source.from_env(
            settings,
            looker.environment(server.url, ""),
            session=session,
            as_of=AS_OF_UTC,
            now=AS_OF_UTC,
        )
        assert extractor is not None
        result = extractor.extract([account])
    got = result.metrics[account.account_id]
    assert {name: got[name] for name in LOOKER_PUBLISHED} == LOOKER_PUBLISHED
    assert str(got["active_user_pct"]) == "0.7813"


# -- through the Intercom extractor ----------------------------------------------------------

WINDOW_START = int(AS_OF_UTC.timestamp()) - 30 * 86_400


def _company(number: int) -> intercom.Company:
    return company(
        f"{number:024x}",
        f"cmp_tie_{number}",
        f"Tie Company {number}",
        WINDOW_START - 400 * 86_400,
        segment="paid",
        plan="Enterprise",
        monthly_spend=500,
    )


def _contact(company: intercom.Company) -> intercom.Contact:
    return intercom.Contact(
        id=f"c{company.id[1:]}",
        external_id=f"u-{company.company_id}",
        role="user",
        name="Ana Ito",
        email=f"ana@{company.company_id}.example.com",
        created_at=WINDOW_START - 100 * 86_400,
        company_ids=(company.id,),
    )


def _conversation(
    number: int,
    company: intercom.Company,
    *,
    reply: int,
    close: int,
    reopens: int = 0,
    tags: tuple[str, ...] = (),
) -> intercom.Conversation:
    return intercom.Conversation(
        id=str(500_000 + number),
        created_at=WINDOW_START + 86_400 + number * 60,
        company=company.id,
        contact=_contact(company).id,
        state="closed",
        priority="none",
        attributes=(("Priority", "P3"),),
        tags=tags,
        admin_id=991_267_700,
        team_id=5_017_690,
        time_to_admin_reply=reply,
        time_to_first_close=close,
        time_to_last_close=close,
        count_reopens=reopens,
    )


def test_intercom_metrics_on_a_half_are_published_rounded_half_up() -> None:
    settings = load_sources(DEFAULT_CONFIG, ("intercom",))["intercom"]
    first, second = _company(1), _company(2)
    conversations = [
        # Company 1: closes of 1,804 s and 1,805 s → median 1,804.5 s = 0.50125 h;
        # replies of 600 s and 601 s → median 600.5 s = 10.008333… min.
        _conversation(1, first, reply=600, close=1_804),
        _conversation(2, first, reply=601, close=1_805),
        # Company 2: 128 conversations, one escalated, one reopened → 100 / 128 = 0.78125 %.
        *(
            _conversation(
                100 + n,
                second,
                reply=900,
                close=7_200,
                reopens=1 if n == 0 else 0,
                tags=("Escalated",) if n == 1 else (),
            )
            for n in range(128)
        ),
    ]
    data = intercom.Data(
        as_of=AS_OF,
        companies=(first, second),
        contacts=(_contact(first), _contact(second)),
        conversations=tuple(sorted(conversations, key=lambda c: (c.created_at, int(c.id)))),
    )
    accounts = [
        Account(f"acct-{c.company_id}", c.name, "paid", intercom_company_id=c.company_id)
        for c in (first, second)
    ]
    with VendorServer(intercom.App(data, settings)) as server, requests.Session() as session:
        extractor = intercom_source.from_env(
            settings, intercom.environment(server.url, ""), session=session, as_of=AS_OF_UTC
        )
        assert extractor is not None
        result = extractor.extract(accounts)
    one, two = (result.metrics[a.account_id] for a in accounts)
    assert one["close_time_hours"] == Decimal("0.5013")  # half-even 0.5012, 2 places 0.5
    assert one["first_response_minutes"] == Decimal("10.0083")  # 2 places 10.01
    assert one["reopen_rate_pct"] == Decimal("0")
    assert two["escalation_rate_pct"] == Decimal("0.7813")  # half-even 0.7812, 2 places 0.78
    assert two["reopen_rate_pct"] == Decimal("0.7813")
    assert two["close_time_hours"] == Decimal("2")
    assert two["first_response_minutes"] == Decimal("15")
    assert str(one["close_time_hours"]) == "0.5013"


# -- through the Salesforce extractor (TLS) --------------------------------------------------


@pytest.fixture(scope="module")
def tls() -> Iterator[tuple[ssl.SSLContext, str]]:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    with ca.cert_pem.tempfile() as bundle:
        yield context, bundle


def test_salesforce_arr_trajectory_on_a_half_is_published_rounded_half_up(
    tls: tuple[ssl.SSLContext, str],
) -> None:
    settings = load_sources(DEFAULT_CONFIG, ("salesforce",))["salesforce"]
    portfolio = build_portfolio(5)
    data = sfs.generate(portfolio, settings)
    grown, shrunk = [p.account_id for p in portfolio.profiles if p.has("salesforce")][:2]
    org_accounts = data.org.get(settings.account.object_name)
    assert org_accounts is not None
    records = {r["Id"]: r for r in org_accounts.records}
    arr, prior = settings.account.arr_field, settings.account.prior_year_arr_field
    records[grown][arr], records[grown][prior] = 2_000_025.0, 2_000_000.0  # +0.00125 %
    records[shrunk][arr], records[shrunk][prior] = 1_999_975.0, 2_000_000.0  # −0.00125 %
    accounts = [Account(**dataclasses.asdict(p.account)) for p in portfolio.profiles]
    with VendorServer(sfs.App(data, settings), tls=tls[0]) as server, requests.Session() as session:
        extractor = sf_extractor.from_env(
            settings,
            sfs.environment(server.url, tls[1]),
            session=session,
            as_of=AS_OF_UTC,
            now=AS_OF_UTC,
        )
        assert extractor is not None
        result = extractor.extract(accounts)
    assert result.metrics[grown]["arr_trajectory_pct"] == Decimal("0.0013")  # h-even 0.0012
    assert result.metrics[shrunk]["arr_trajectory_pct"] == Decimal("-0.0013")  # 2 places: 0
