"""``outcomes.csv``: the churn and renewal events known at the run's ``as_of``.

One row per event and mapped account, sorted by date, account_id, event and evidence:

- ``account_id``, ``account_name``: the mapping's (as in ``scores.csv``);
- ``event``: ``churn`` or ``renewal``;
- ``date``: the event's day, ``YYYY-MM-DD`` (an opportunity's close date, or the Account's churn
  date), always before ``as_of``;
- ``arr``: a plain decimal number, or empty when neither the opportunity nor the Account has one;
- ``evidence``: the 18-character Opportunity id, or ``<Object>.<field>`` (e.g.
  ``Account.Churn_Date__c``) for an event read from the Account's churn date.

The file is written only when the outcomes were read (manifest ``outcomes.status`` ``ok``; an
empty file with its header then means no event). When they failed or are disabled there is no
file, so a reader can never take "not read" for "no events": the manifest says why.
Text cells are guarded against spreadsheet formulas (:mod:`health_score.csvsafe`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from health_score.csvsafe import safe_cell
from health_score.loaders.artifacts import RunWriter, csv_bytes
from health_score.loaders.csv_output import number_text
from health_score.sources.salesforce.outcome_records import OK, OutcomeEvent, OutcomesReport

OUTCOMES = "outcomes.csv"
OUTCOME_COLUMNS = ("account_id", "account_name", "event", "date", "arr", "evidence")


def outcome_rows(events: Iterable[OutcomeEvent]) -> Iterable[list[str]]:
    for event in events:
        yield [
            safe_cell(event.account_id),
            safe_cell(event.account_name),
            event.event,
            event.day.isoformat(),
            "" if event.arr is None else number_text(event.arr),
            safe_cell(event.evidence),
        ]


def outcomes_csv(events: Iterable[OutcomeEvent]) -> bytes:
    return csv_bytes(OUTCOME_COLUMNS, outcome_rows(events))


def write_outcomes(writer: RunWriter, report: OutcomesReport) -> dict[str, Any]:
    """Write ``outcomes.csv`` when the outcomes were read; the manifest's ``outcomes`` entry."""
    if report.status != OK:
        return report.as_dict(None)
    writer.write_bytes(OUTCOMES, outcomes_csv(report.events))
    return report.as_dict(OUTCOMES)
