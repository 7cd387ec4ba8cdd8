"""Period semantics: the month scored, the instant its data ends at, and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from health_score.pipeline import (
    SourceReport,
    UsageError,
    last_complete_period,
    period_end,
    period_of,
    resolve_period,
)

NOW = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)


def test_a_period_ends_at_the_first_instant_of_the_next_month() -> None:
    assert period_end("2026-11") == datetime(2026, 12, 1, tzinfo=UTC)
    assert period_end("2026-12") == datetime(2027, 1, 1, tzinfo=UTC)
    assert period_end("2024-02") == datetime(2024, 3, 1, tzinfo=UTC)


def test_the_last_complete_month_is_the_one_before_now() -> None:
    assert last_complete_period(NOW) == "2026-11"
    assert last_complete_period(datetime(2027, 1, 1, tzinfo=UTC)) == "2026-12"
    # 00:30 on Dec 1 in UTC+2 is still Nov 30 in UTC: November is not complete yet.
    plus_two = timezone(timedelta(hours=2))
    assert last_complete_period(datetime(2026, 12, 1, 0, 30, tzinfo=plus_two)) == "2026-10"


def test_the_default_run_scores_the_last_complete_month_up_to_its_end() -> None:
    assert resolve_period(None, None, NOW) == ("2026-11", datetime(2026, 12, 1, tzinfo=UTC))


def test_a_named_past_period_ends_at_its_own_month_end_whatever_the_day() -> None:
    assert resolve_period("2026-06", None, NOW) == ("2026-06", datetime(2026, 7, 1, tzinfo=UTC))


def test_a_period_that_has_not_ended_is_refused() -> None:
    with pytest.raises(UsageError, match=r"--period 2026-12 has not ended yet .*2027-01-01T00:00Z"):
        resolve_period("2026-12", None, NOW)


def test_a_period_is_complete_from_the_first_instant_of_the_next_month() -> None:
    first = datetime(2026, 12, 1, tzinfo=UTC)
    assert resolve_period("2026-11", None, first) == ("2026-11", first)


def test_as_of_replaces_the_period_end_and_names_the_month_it_ends() -> None:
    mid = datetime(2026, 8, 15, tzinfo=UTC)
    assert resolve_period(None, mid, NOW) == ("2026-08", mid)
    # Midnight on the 1st ends the month before.
    assert period_of(datetime(2026, 9, 1, tzinfo=UTC)) == "2026-08"
    assert resolve_period("2026-09", mid, NOW) == ("2026-09", mid)


def test_an_as_of_after_now_is_refused() -> None:
    with pytest.raises(UsageError, match=r"--as-of 2026-12-04 is after the reference now"):
        resolve_period(None, datetime(2026, 12, 4, tzinfo=UTC), NOW)


def test_as_of_must_carry_a_time_zone_and_periods_a_month() -> None:
    with pytest.raises(UsageError, match="timezone-aware"):
        resolve_period(None, datetime(2026, 8, 15), NOW)
    with pytest.raises(UsageError, match="YYYY-MM"):
        resolve_period("2026-13", None, NOW)


def test_a_source_report_writes_its_window_in_utc() -> None:
    report = SourceReport(
        "ok",
        window=(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
    )
    assert report.as_dict()["window"] == {
        "from": "2026-11-01T00:00:00+00:00",
        "to": "2026-12-01T00:00:00+00:00",
    }
    state = SourceReport("ok", window=(None, datetime(2026, 12, 1, tzinfo=UTC)))
    assert state.as_dict()["window"] == {"from": None, "to": "2026-12-01T00:00:00+00:00"}
    assert SourceReport("failed").as_dict()["window"] is None


def test_salesforce_current_state_is_past_beyond_the_grace_days() -> None:
    from health_score.sources.salesforce.extractor import SalesforceExtractor
    from health_score.sources.salesforce.settings import Settings

    as_of = datetime(2026, 11, 1, tzinfo=UTC)

    def past(now: datetime, **section: int) -> bool:
        settings = Settings.model_validate(section)
        return SalesforceExtractor(settings, {}, as_of=as_of, now=now).past

    assert not past(datetime(2026, 11, 8, tzinfo=UTC))  # 7 days: still the current state
    assert past(datetime(2026, 11, 8, 0, 0, 1, tzinfo=UTC))
    assert not past(datetime(2026, 11, 20, tzinfo=UTC), current_state_grace_days=19)
    assert past(datetime(2026, 11, 1, 0, 0, 1, tzinfo=UTC), current_state_grace_days=0)
