"""Write-back to Salesforce through the real loader against the stand-in org on loopback."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from health_score.config import load_scoring_config
from health_score.loaders.salesforce import (
    BULK,
    COMPOSITE,
    FieldMap,
    Prepared,
    SalesforceLoader,
    external_key,
    previous_finals,
)
from health_score.loaders.salesforce_settings import WritebackSettings
from health_score.records import Account, AccountInput, SignalCounts
from health_score.salesforce_ids import salesforce_id18, salesforce_id18_or_none
from health_score.scoring.composite import score_accounts
from health_score_sandbox.salesforce import FAKE_CLIENT_SECRET
from health_score_sandbox.salesforce_write import id18
from tests.salesforce_write_support import (
    CONFIG,
    accounts_for,
    metric_inputs,
    org,
    scored,
    sf_id,
)

PERIOD = "2026-11"
SCORED_ON = date(2026, 11, 1)
OBJECT = "Health_Score__c"
#: The Account mirror turned off, for the tests that count the Health_Score__c path's requests.
MIRROR_OFF: dict[str, object] = {
    "account_score_field": "",
    "account_tier_field": "",
    "account_change_field": "",
    "account_period_field": "",
    "account_date_field": "",
}


def load_run(loader, inputs, *, period=PERIOD, run_id="run-1", config=CONFIG, accounts=None):  # type: ignore[no-untyped-def]
    return loader.load(
        scored(inputs, config),
        accounts if accounts is not None else accounts_for(inputs),
        period=period,
        scoring_date=SCORED_ON,
        run_id=run_id,
        config_hash="c0ffee",
    )


# -- ids and keys ---------------------------------------------------------------------------------


def test_external_key_is_the_18_character_account_id_and_the_period() -> None:
    # The documented example: 001D000000IRFma is 001D000000IRFmaIAH in its 18-character form.
    assert external_key("001D000000IRFma", "2026-11") == "001D000000IRFmaIAH-2026-11"
    assert external_key("001D000000IRFmaIAH", "2026-11") == "001D000000IRFmaIAH-2026-11"
    assert salesforce_id18_or_none("001D000000IRFmaAAA") is None  # wrong checksum
    assert salesforce_id18_or_none("not-an-id") is None


def test_loader_and_stand_in_agree_on_the_18_character_form() -> None:
    for number in (1, 42, 9_999_999):
        assert salesforce_id18(sf_id(number)) == id18(sf_id(number))


# -- idempotent upsert ----------------------------------------------------------------------------


def test_rerunning_a_period_leaves_one_record_per_account_with_the_second_runs_values() -> None:
    inputs = metric_inputs(30)
    second_inputs = metric_inputs(30, shift=11)
    # The second run lost one metric for the first account: its fields must be cleared, not kept.
    first_metrics = dict(second_inputs[0].metrics)
    first_metrics["p1_p2_volume"] = None
    second_inputs[0] = dataclasses.replace(second_inputs[0], metrics=first_metrics)
    with org() as sf:
        first = load_run(sf.loader(), inputs, run_id="run-1")
        second = load_run(sf.loader(), second_inputs, run_id="run-2")
        records = sf.api.records[OBJECT]
    assert (first.path, first.created, first.updated) == (COMPOSITE, 30, 0)
    assert (second.path, second.created, second.updated, second.written) == (COMPOSITE, 0, 30, 30)
    assert first.ok and second.ok
    assert len(records) == 30
    expected = {s.account_id: s for s in scored(second_inputs)}
    for key, record in records.items():
        account = key.removesuffix(f"-{PERIOD}")[:15]
        assert record["Run_Id__c"] == "run-2"
        assert record["Final_Score__c"] == expected[account].final_published
        assert record["Health_Tier__c"] == expected[account].tier
    cleared = records[external_key(sf_id(0), PERIOD)]
    assert cleared["P1_P2_Volume_Raw__c"] is None
    assert cleared["P1_P2_Volume_Score__c"] is None


def test_a_run_for_another_period_adds_a_second_set_of_records() -> None:
    inputs = metric_inputs(12)
    with org() as sf:
        load_run(sf.loader(), inputs, period="2026-10")
        result = load_run(sf.loader(), inputs, period="2026-11")
        keys = set(sf.api.records[OBJECT])
    assert result.created == 12
    assert len(keys) == 24
    assert external_key(sf_id(3), "2026-10") in keys
    assert external_key(sf_id(3), "2026-11") in keys


def test_bulk_rerun_updates_the_same_records_and_clears_missing_values() -> None:
    inputs = metric_inputs(250)
    again = metric_inputs(250, shift=5)
    metrics = dict(again[7].metrics)
    metrics["active_user_pct"] = None
    again[7] = dataclasses.replace(again[7], metrics=metrics)
    with org() as sf:
        first = load_run(sf.loader(bulk_threshold=100), inputs, run_id="bulk-1")
        second = load_run(sf.loader(bulk_threshold=100), again, run_id="bulk-2")
        records = sf.api.records[OBJECT]
    assert (first.path, first.created) == (BULK, 250)
    assert (second.path, second.created, second.updated) == (BULK, 0, 250)
    assert len(records) == 250
    assert {r["Run_Id__c"] for r in records.values()} == {"bulk-2"}
    assert records[external_key(sf_id(7), PERIOD)]["Active_User_Pct_Raw__c"] is None


def test_every_value_written_matches_the_published_score() -> None:
    inputs = metric_inputs(3)
    scores = {s.account_id: s for s in scored(inputs)}
    with org() as sf:
        load_run(sf.loader(), inputs)
        record = sf.api.records[OBJECT][external_key(sf_id(1), PERIOD)]
    score = scores[sf_id(1)]
    assert record["Account__c"] == id18(sf_id(1))
    assert record["Period__c"] == PERIOD
    assert record["Scoring_Date__c"] == SCORED_ON
    assert record["Churn_Risk_Score__c"] == score.churn_risk.quantize(Decimal("0.1"))  # type: ignore[union-attr]
    assert record["Quantitative_Score__c"] == Decimal(str(round(score.quantitative, 1)))  # type: ignore[arg-type]
    assert record["Coverage_Pct__c"] == Decimal("100.0")
    assert record["Support_Health_Score__c"] is not None
    assert record["Adoption_Sessions_Per_User_Score__c"] is not None
    assert record["Platform_Sessions_Per_User_Score__c"] is not None
    assert record["Sessions_Per_User_Raw__c"] == score_metric_raw(score, "sessions_per_user")
    assert record["Config_Hash__c"] == "c0ffee"
    assert record["Name"] == f"Account 1 {PERIOD}"


def score_metric_raw(score, metric):  # type: ignore[no-untyped-def]
    return next(m.raw for m in score.metrics if m.metric == metric)


def test_accounts_without_a_salesforce_id_are_skipped_and_never_written() -> None:
    inputs = metric_inputs(5)
    with org() as sf:
        result = load_run(sf.loader(), inputs, accounts=accounts_for(inputs, without_id=(1, 3)))
        keys = set(sf.api.records[OBJECT])
    assert result.skipped == (sf_id(1), sf_id(3))
    assert (result.attempted, result.written) == (3, 3)
    assert not any(k.startswith(id18(sf_id(1))) for k in keys)
    assert result.ok


def test_a_lowercased_suffix_is_written_under_the_canonical_key_and_a_wrong_one_fails_locally() -> (
    None
):
    inputs = metric_inputs(4)
    accounts = accounts_for(inputs)
    # 0015g0000000002 has no uppercase letter: its suffix is AAA; "aaa" says the same, "QAA" not.
    accounts[2] = dataclasses.replace(accounts[2], sf_account_id=sf_id(2) + "aaa")
    accounts[3] = dataclasses.replace(accounts[3], sf_account_id=sf_id(3) + "QAA")
    with org() as sf:
        result = load_run(sf.loader(), inputs, accounts=accounts)
        records = sf.api.records[OBJECT]
    assert f"0015g0000000002AAA-{PERIOD}" in records
    assert records[f"0015g0000000002AAA-{PERIOD}"]["Account__c"] == "0015g0000000002AAA"
    assert not any(k.startswith("0015g0000000003") for k in records)
    (failure,) = result.failures
    assert (failure.account_id, failure.key, failure.error_code) == (
        sf_id(3),
        "0015g0000000003QAA",
        "INVALID_ACCOUNT_ID",
    )
    assert "expected 'AAA'" in failure.message
    assert (result.written, result.not_written) == (3, (sf_id(3),))


# -- volume ---------------------------------------------------------------------------------------


def test_ten_thousand_records_go_through_one_bulk_job_in_seven_write_requests() -> None:
    inputs = metric_inputs(10_000)
    with org() as sf:
        result = load_run(sf.loader(**MIRROR_OFF), inputs)
        stored = len(sf.api.records[OBJECT])
        jobs = len(sf.api.jobs)
        write_requests = sf.write_requests()
    assert (result.path, result.written, result.created, stored) == (BULK, 10_000, 10_000, 10_000)
    assert jobs == 1
    # create + upload + close + 2 polls (InProgress, JobComplete) + 2 result files = 7,
    # and the loader's count adds its login.
    assert write_requests == 7
    assert result.requests == write_requests + 1


def test_small_runs_use_composite_calls_of_at_most_200_records() -> None:
    inputs = metric_inputs(450)
    with org() as sf:
        sf.app.daily_api_limit = 5000
        usage_before = sf.app.api_usage
        result = load_run(sf.loader(bulk_threshold=500, **MIRROR_OFF), inputs)
        calls = sf.write_requests()
    assert (result.path, result.written, calls, result.requests) == (COMPOSITE, 450, 3, 3 + 1)
    assert not sf.api.jobs
    # Sforce-Limit-Info of the last answer: the three composite calls were charged.
    assert result.api_usage == f"{usage_before + 3}/5000"
    assert result.as_dict()["api_usage"] == result.api_usage


# -- per-record failures --------------------------------------------------------------------------


def invalid_config():  # type: ignore[no-untyped-def]
    """A config an admin got slightly wrong: a tier label not in the picklist and a cap rule
    description longer than the Cap Rule field holds."""
    tiers = tuple(
        dataclasses.replace(t, label="Star") if t.key == "champion" else t for t in CONFIG.tiers
    )
    rules = tuple(
        dataclasses.replace(r, description="x" * 300) if r.condition == "moderate_1plus" else r
        for r in CONFIG.cap_rules
    )
    return dataclasses.replace(CONFIG, tiers=tiers, cap_rules=rules)


def mixed_inputs(count: int) -> list[AccountInput]:
    """Every 5th account has a Moderate signal (long cap description); best metrics on every
    7th make it a Champion (the tier label the picklist lacks)."""
    inputs = metric_inputs(count)
    best_raw = best_metrics()
    for index in range(count):
        if index % 5 == 1:
            inputs[index] = dataclasses.replace(inputs[index], signals=SignalCounts(moderate=1))
        if index % 7 == 3:
            inputs[index] = dataclasses.replace(inputs[index], metrics=best_raw)
    return inputs


def best_metrics() -> dict[str, Decimal | None]:
    values: dict[str, Decimal | None] = {}
    for spec in CONFIG.dimensions.values():
        for metric in spec.metrics:
            band = metric.bands["standard"]
            paid = metric.bands["paid"]
            pick = min if metric.lower_is_better else max
            values[metric.name] = Decimal(pick(band.green, paid.green))
    return values


@pytest.mark.parametrize(("count", "path"), [(60, COMPOSITE), (400, BULK)])
def test_bad_values_fail_individually_with_salesforces_message_and_the_rest_are_written(
    count: int, path: str
) -> None:
    inputs = mixed_inputs(count)
    config = invalid_config()
    scores = {s.account_id: s for s in score_accounts(inputs, config)}
    too_long = {
        a for a, s in scores.items() if s.cap.rule and s.cap.rule.condition == "moderate_1plus"
    }
    stars = {a for a, s in scores.items() if s.tier == "Star"} - too_long
    assert too_long and stars
    with org() as sf:
        result = load_run(sf.loader(), inputs, config=config)
        stored = sf.api.records[OBJECT]
    failed = {f.account_id: f for f in result.failures}
    assert result.path == path
    assert set(failed) == too_long | stars
    assert result.written == count - len(failed) == len(stored)
    assert set(result.not_written) == set(failed)
    assert not result.ok
    long_failure = failed[next(iter(too_long))]
    assert long_failure.error_code == "STRING_TOO_LONG"
    assert long_failure.message.startswith("Cap Rule: data value too large: moderate_1plus: xxx")
    assert long_failure.message.endswith("(max length=255)")
    assert long_failure.fields == ("Cap_Rule__c",)
    star_failure = failed[next(iter(stars))]
    assert star_failure.error_code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert star_failure.message == "Health Tier: bad value for restricted picklist field: Star"
    manifest = result.as_dict()
    assert manifest["failed"] == len(failed)
    assert {f["error_code"] for f in manifest["failures"]} == {
        "STRING_TOO_LONG",
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
    }


def test_a_record_with_an_unknown_field_fails_alone_with_salesforces_message() -> None:
    good = [
        Prepared(
            f"acct-{n}",
            f"{id18(sf_id(n))}-{PERIOD}",
            {
                "External_Key__c": f"{id18(sf_id(n))}-{PERIOD}",
                "Account__c": id18(sf_id(n)),
                "Final_Score__c": Decimal("71.5"),
            },
        )
        for n in range(3)
    ]
    bad = Prepared(
        "acct-bad",
        f"{id18(sf_id(9))}-{PERIOD}",
        {
            "External_Key__c": f"{id18(sf_id(9))}-{PERIOD}",
            "Final_Scor__c": Decimal("71.5"),
        },
    )
    with org() as sf:
        outcome = sf.loader().write(OBJECT, [*good, bad], external_id="External_Key__c")
        stored = set(sf.api.records[OBJECT])
    assert set(outcome.written) == {p.key for p in good} == stored
    failure = outcome.failures[bad.key]
    assert (failure.account_id, failure.error_code) == ("acct-bad", "INVALID_FIELD")
    assert failure.message == "No such column 'Final_Scor__c' on sobject of type Health_Score__c"


def test_an_unknown_column_fails_the_bulk_job_and_every_record_reports_it() -> None:
    loader_settings = {"bulk_threshold": 10, "fields": {"final": "Final_Scor__c"}}
    inputs = metric_inputs(20)
    with org() as sf:
        result = load_run(sf.loader(**loader_settings), inputs)
        stored = sf.api.records.get(OBJECT, {})
    assert result.written == 0 and not stored
    assert len(result.failures) == 20
    assert {(f.error_code, f.message) for f in result.failures} == {
        ("InvalidBatch", "Field name not found : Final_Scor__c")
    }


# -- the final tier -------------------------------------------------------------------------------


def test_an_account_capped_by_a_critical_confirmed_signal_is_written_as_critical(
    identity_config: Path,
) -> None:
    """DESIGN §3 example B: 86.7 before the cap, 50 after, tier Critical."""
    config = load_scoring_config(identity_config)
    account = AccountInput(
        account_id=sf_id(2),
        account_name="Example B",
        segment="paid",
        metrics={
            "support": Decimal(85),
            "financial": Decimal(95),
            "adoption": Decimal(88),
            "relationship": Decimal(92),
            "pvs": Decimal(82),
        },
        signals=SignalCounts(critical=1, critical_confirmed=1),
    )
    # The identity model's metrics have no fields in the org: write only the scores.
    off = {
        f"metric_{kind}.{key}": ""
        for kind, key in (
            *(
                ("score", f"{d}.{m}")
                for d, m in [
                    ("support_health", "support"),
                    ("financial_contract", "financial"),
                    ("adoption_engagement", "adoption"),
                    ("relationship_expansion", "relationship"),
                    ("platform_value", "pvs"),
                ]
            ),
            *(("raw", m) for m in ("support", "financial", "adoption", "relationship", "pvs")),
        )
    }
    with org() as sf:
        result = sf.loader(fields=off).load(
            score_accounts([account], config),
            [Account(sf_id(2), "Example B", "paid", sf_account_id=sf_id(2))],
            period=PERIOD,
            scoring_date=SCORED_ON,
            run_id="run-b",
            config_hash="b",
        )
        record = sf.api.records[OBJECT][external_key(sf_id(2), PERIOD)]
    assert result.ok
    assert record["Quantitative_Score__c"] == Decimal("86.7")
    assert record["Final_Score__c"] == Decimal("50.0")
    assert record["Health_Tier__c"] == "Critical"
    assert record["Cap_Applied__c"] is True
    assert record["Cap_Rule__c"].startswith("critical_confirmed")
    assert record["Critical_Confirmed_Signals__c"] == 1


# -- daily allowance, transient errors ---------------------------------------------------------


def test_allowance_exhausted_mid_write_reports_what_was_not_written_and_a_rerun_completes_it() -> (
    None
):
    inputs = metric_inputs(1_000)
    with org() as sf:
        sf.allow(3)
        loader = sf.loader(bulk_threshold=1_000)
        partial = load_run(loader, inputs, run_id="run-1")
        after_partial = len(sf.api.records[OBJECT])
        sf.allow(None)  # the next day
        rerun = load_run(loader, inputs, run_id="run-2")
        stored = sf.api.records[OBJECT]
    assert partial.stopped_reason is not None
    assert "REQUEST_LIMIT_EXCEEDED" in partial.stopped_reason
    assert (partial.written, len(partial.not_written), after_partial) == (600, 400, 600)
    assert set(partial.not_written) == {sf_id(n) for n in range(600, 1_000)}
    assert not partial.failures and not partial.ok
    assert (rerun.written, rerun.created, rerun.updated) == (1_000, 400, 600)
    assert len(stored) == 1_000 and rerun.ok


def test_allowance_exhausted_during_a_bulk_job_stops_cleanly_without_raising() -> None:
    inputs = metric_inputs(300)
    with org() as sf:
        sf.allow(2)  # the job is created and its data uploaded, then no more calls
        result = load_run(sf.loader(bulk_threshold=100), inputs)
    assert result.path == BULK
    assert result.written == 0 and len(result.not_written) == 300
    assert result.stopped_reason and "allowance" in result.stopped_reason


def test_unable_to_lock_row_is_retried_once() -> None:
    inputs = metric_inputs(8)
    locked_once = external_key(sf_id(2), PERIOD)
    locked_twice = external_key(sf_id(5), PERIOD)
    with org() as sf:
        sf.api.lock_rows({locked_once: 1, locked_twice: 2})
        result = load_run(sf.loader(), inputs)
        stored = set(sf.api.records[OBJECT])
    assert result.retried == 2
    assert locked_once in stored and locked_twice not in stored
    assert [(f.account_id, f.error_code) for f in result.failures] == [
        (sf_id(5), "UNABLE_TO_LOCK_ROW")
    ]
    assert result.written == 7


def test_unable_to_lock_row_in_a_bulk_job_is_retried_once() -> None:
    inputs = metric_inputs(300)
    locked = external_key(sf_id(42), PERIOD)
    with org() as sf:
        sf.api.lock_rows({locked: 1})
        result = load_run(sf.loader(bulk_threshold=100, **MIRROR_OFF), inputs)
        stored = sf.api.records[OBJECT]
    assert result.ok and result.retried == 1
    assert locked in stored and len(stored) == 300
    assert len(sf.api.jobs) == 1  # the one retried record went through a composite call


def test_an_expired_session_is_renewed_once_and_the_write_goes_on() -> None:
    inputs = metric_inputs(450)
    with org() as sf:
        sf.server.faults.token_expiry_after = 2
        logins = sf.app.logins
        result = load_run(sf.loader(bulk_threshold=500, **MIRROR_OFF), inputs)
    assert result.ok and result.written == 450
    assert sf.app.logins - logins == 2  # the first login, and one after the session expired


def test_refused_credentials_stop_the_write_with_a_reason_instead_of_raising() -> None:
    with org() as sf:
        sf.server.faults.auth_rejected = True
        result = load_run(sf.loader(), metric_inputs(3))
    assert result.written == 0 and len(result.not_written) == 3
    assert result.stopped_reason is not None
    assert "credentials rejected" in result.stopped_reason
    assert "SF_CLIENT_ID, SF_CLIENT_SECRET" in result.stopped_reason
    assert FAKE_CLIENT_SECRET not in result.stopped_reason


def test_no_loader_is_made_without_salesforce_credentials() -> None:
    assert SalesforceLoader.from_env(None, {"SF_LOGIN_URL": "https://login.invalid"}) is None


# -- Account mirror -------------------------------------------------------------------------------

MIRROR = (
    "Latest_Health_Score__c",
    "Latest_Health_Tier__c",
    "Latest_Health_Score_Change__c",
    "Latest_Health_Period__c",
    "Latest_Health_Score_Date__c",
)


@pytest.mark.parametrize(("count", "path"), [(5, COMPOSITE), (300, BULK)])
def test_the_account_mirror_is_on_by_default_with_score_tier_change_period_and_date(
    count: int, path: str
) -> None:
    inputs = metric_inputs(count)
    scores = {s.account_id: s for s in scored(inputs)}
    # The previous period's finals: 4.2 points above this one for account 3, 2.5 below for 4.
    previous = {
        sf_id(3): scores[sf_id(3)].final_published + Decimal("4.2"),
        sf_id(4): scores[sf_id(4)].final_published - Decimal("2.5"),
    }
    with org() as sf:
        loader = sf.loader(bulk_threshold=100)
        result = loader.load(
            scored(inputs),
            accounts_for(inputs),
            period=PERIOD,
            scoring_date=SCORED_ON,
            run_id="run-1",
            config_hash="c0ffee",
            previous_final=previous,
        )
        accounts = sf.api.records["Account"]
        jobs = sorted(job.object for job in sf.api.jobs.values())
    assert result.ok and result.mirror_written == count and result.path == path
    assert jobs == ([] if path == COMPOSITE else ["Account", OBJECT])  # same path as write-back
    dropped, rose, new = (accounts[id18(sf_id(n))] for n in (3, 4, 1))
    assert dropped["Latest_Health_Score_Change__c"] == Decimal("-4.2")
    assert rose["Latest_Health_Score_Change__c"] == Decimal("2.5")
    assert new["Latest_Health_Score_Change__c"] is None  # no previous score: cleared
    assert dropped["Latest_Health_Score__c"] == scores[sf_id(3)].final_published
    assert dropped["Latest_Health_Tier__c"] == scores[sf_id(3)].tier
    assert (dropped["Latest_Health_Period__c"], dropped["Latest_Health_Score_Date__c"]) == (
        "2026-11",
        date(2026, 11, 1),
    )


def test_rerunning_a_period_updates_the_same_accounts_to_the_same_values() -> None:
    inputs = metric_inputs(4)
    previous = {sf_id(2): Decimal("50.0")}
    with org() as sf:
        for run_id in ("run-1", "run-2"):
            result = sf.loader().load(
                scored(inputs),
                accounts_for(inputs),
                period=PERIOD,
                scoring_date=SCORED_ON,
                run_id=run_id,
                config_hash="c0ffee",
                previous_final=previous,
            )
            assert result.ok and result.mirror_written == 4
            if run_id == "run-1":
                first = {k: {f: v[f] for f in MIRROR} for k, v in sf.api.records["Account"].items()}
        again = {k: {f: v[f] for f in MIRROR} for k, v in sf.api.records["Account"].items()}
    assert again == first and len(again) == 4


def test_without_a_previous_period_the_change_is_cleared_for_every_account() -> None:
    with org() as sf:
        load_run(sf.loader(), metric_inputs(3))
        changes = [a["Latest_Health_Score_Change__c"] for a in sf.api.records["Account"].values()]
    assert changes == [None, None, None]


def test_a_mirror_record_salesforce_refuses_is_listed_like_a_write_back_failure() -> None:
    inputs = metric_inputs(5)
    with org() as sf:
        sf.api.lock_rows({id18(sf_id(2)): 2})  # fails, and fails again on the retry
        result = load_run(sf.loader(), inputs)
        accounts = sf.api.records["Account"]
    assert result.written == 5 and result.mirror_written == 4 and not result.ok
    assert [(f.object_name, f.account_id, f.error_code) for f in result.failures] == [
        ("Account", sf_id(2), "UNABLE_TO_LOCK_ROW")
    ]
    assert id18(sf_id(2)) not in accounts and len(accounts) == 4
    entry = result.as_dict()
    assert entry["failures"][0]["object"] == "Account" and entry["failed"] == 0


def test_a_mirror_field_can_be_left_out_and_all_five_empty_turn_the_mirror_off() -> None:
    with org() as sf:
        load_run(sf.loader(account_change_field=""), metric_inputs(2))
        account = next(iter(sf.api.records["Account"].values()))
    assert "Latest_Health_Score_Change__c" not in account and "Latest_Health_Score__c" in account
    with org() as sf:
        load_run(sf.loader(**MIRROR_OFF), metric_inputs(4))
        assert "Account" not in sf.api.records


def test_previous_finals_reads_a_runs_scores_csv() -> None:
    data = (
        b"account_id,account_name,final_score,health_tier\r\n"
        b"A-1,Acme,61.5,At Risk\r\n"
        b"'=B-2,Beta,,Insufficient Data\r\n"
        b"C-3,Gamma,80.0,Healthy\r\n"
    )
    assert previous_finals(data) == {"A-1": Decimal("61.5"), "=B-2": None, "C-3": Decimal("80.0")}
    with pytest.raises(ValueError, match="row 2: final_score 'n/a' is not a number"):
        previous_finals(b"account_id,final_score\nA-1,n/a\n")
    with pytest.raises(ValueError, match="expected the columns account_id and final_score"):
        previous_finals(b"id,score\nA-1,1\n")


# -- settings -------------------------------------------------------------------------------------


def test_field_overrides_are_checked_when_settings_load() -> None:
    with pytest.raises(ValueError, match="unknown logical field 'finale'"):
        WritebackSettings.model_validate({"fields": {"finale": "Final__c"}})
    with pytest.raises(ValueError, match="not a field API name"):
        WritebackSettings.model_validate({"fields": {"final": "Final Score"}})


def test_default_field_names_fit_salesforces_40_character_limit() -> None:
    pairs = [(d, m.name) for d, spec in CONFIG.dimensions.items() for m in spec.metrics]
    names = FieldMap.build(WritebackSettings.model_validate({}), pairs).api_names()
    assert len(names) == len(set(names))
    assert all(len(n.removesuffix("__c")) <= 40 for n in names)
