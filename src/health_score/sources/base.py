"""The one small interface every source implements, and the records it returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from health_score.records import Account, AccountContext, MetricValue, SignalCounts


@dataclass(frozen=True, slots=True)
class SourceResult:
    """What one source extracted for all accounts in one pass.

    ``metrics`` maps account_id → metric → value (None = no data for that account).
    ``missing_metrics`` names metrics the organisation cannot provide at all (an object or field
    that does not exist): reported once in the log and manifest, not per account.
    ``notes`` are short operator-facing remarks (e.g. "Look 12 returned 5,000 rows: truncated").
    ``unavailable`` maps account_id → metrics the source could not establish for that account
    although it ran (e.g. beyond the cut of a truncated Look): scored as *unavailable*, never as
    missing data, and their values are None.
    ``incomplete`` says why the result is partial (each reason is also one of the ``notes``); a
    result with reasons is *degraded*, and so is the run it is part of.
    ``window`` is the data window read, ``(from, to)`` with ``to`` the run's ``as_of`` (``from``
    None: a state at ``to``, such as the bugs open then); the manifest records it.
    ``context`` maps account_id → what is shown beside the score (owner, ARR, renewal date; not
    scored): Salesforce's; an account without an entry has none.
    """

    source: str
    metrics: Mapping[str, Mapping[str, MetricValue]]
    requests: int
    signals: Mapping[str, SignalCounts] = field(default_factory=dict)
    missing_metrics: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()
    unavailable: Mapping[str, frozenset[str]] = field(default_factory=dict)
    incomplete: tuple[str, ...] = ()
    window: tuple[datetime | None, datetime] | None = None
    context: Mapping[str, AccountContext] = field(default_factory=dict)

    @property
    def degraded(self) -> bool:
        """The source ran but could not deliver all it promises (see ``incomplete``)."""
        return bool(self.incomplete)

    @property
    def accounts_with_data(self) -> int:
        return sum(
            1 for values in self.metrics.values() if any(v is not None for v in values.values())
        )


class Extractor(Protocol):
    """A source: a name, the metrics it can provide, and one pass over all accounts."""

    name: str

    @property
    def provides(self) -> frozenset[str]:
        """Metric names this source fills (used to mark them unavailable if it fails)."""
        ...

    @property
    def requests_made(self) -> int:
        """HTTP requests sent so far (read by the orchestrator even when extract() raised)."""
        ...

    def extract(self, accounts: Sequence[Account]) -> SourceResult: ...
