"""Jira's metrics: open bugs per customer, counted from the issues one search returned.

Pure: nothing here makes a request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from health_score.records import Account, MetricValue

OPEN_BUGS_TOTAL = "open_bugs_total"
OPEN_BUGS_P1_P2 = "open_bugs_p1_p2"
METRICS = (OPEN_BUGS_TOTAL, OPEN_BUGS_P1_P2)

#: (project key, customer) casefolded → the account ids that customer maps to.
Owners = Mapping[tuple[str, str], Sequence[str]]


@dataclass(frozen=True, slots=True)
class Bug:
    """What the extractor keeps of one issue."""

    project: str
    customers: tuple[str, ...]
    priority: str | None


def customer_values(raw: object) -> tuple[str, ...]:
    """Customer names from a component list or a custom field (text, option or list of them)."""
    items = raw if isinstance(raw, list) else [raw]
    out: list[str] = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, Mapping):
            name = item.get("value", item.get("name"))
            if isinstance(name, str):
                out.append(name)
    return tuple(out)


def customer_owners(accounts: Sequence[Account]) -> dict[tuple[str, str], list[str]]:
    """Which accounts each (project, customer) pair belongs to, compared case-insensitively."""
    owners: dict[tuple[str, str], list[str]] = {}
    for account in accounts:
        if account.jira_project_key and account.jira_component:
            key = (account.jira_project_key.casefold(), account.jira_component.casefold())
            owners.setdefault(key, []).append(account.account_id)
    return owners


def open_bug_metrics(
    accounts: Sequence[Account],
    owners: Owners,
    bugs: Iterable[Bug],
    p1_p2_priorities: frozenset[str],
) -> tuple[dict[str, dict[str, MetricValue]], int]:
    """Both metrics for every account, and how many bugs name no mapped customer.

    ``p1_p2_priorities`` are casefolded. An account without a Jira customer has no value (None),
    a mapped customer without open bugs has 0.
    """
    counts = {account_id: [0, 0] for ids in owners.values() for account_id in ids}
    unattributed = 0
    for bug in bugs:
        holders = {
            account_id
            for customer in bug.customers
            for account_id in owners.get((bug.project.casefold(), customer.casefold()), ())
        }
        if not holders:
            unattributed += 1
        p1_p2 = bug.priority is not None and bug.priority.casefold() in p1_p2_priorities
        for account_id in holders:
            counts[account_id][0] += 1
            counts[account_id][1] += int(p1_p2)
    metrics: dict[str, dict[str, MetricValue]] = {}
    for account in accounts:
        found = counts.get(account.account_id)
        metrics[account.account_id] = {
            OPEN_BUGS_TOTAL: Decimal(found[0]) if found else None,
            OPEN_BUGS_P1_P2: Decimal(found[1]) if found else None,
        }
    return metrics, unattributed
