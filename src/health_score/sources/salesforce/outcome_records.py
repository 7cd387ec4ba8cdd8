"""The outcomes step's records (``outcomes.csv`` rows and the manifest's ``outcomes`` entry).

Pure data, apart from :mod:`.outcomes` (which reads them from Salesforce over HTTP), so that a
run which reads no outcomes (``--from-raw``) and the file writer need not import the HTTP stack.
:mod:`.outcomes` re-exports every name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

CHURN = "churn"
RENEWAL = "renewal"

OK = "ok"
FAILED = "failed"
DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class OutcomeEvent:
    """One row of ``outcomes.csv``."""

    account_id: str
    account_name: str
    event: str
    day: date
    arr: Decimal | None
    evidence: str


@dataclass(frozen=True, slots=True)
class OutcomesReport:
    """What the outcomes step produced (the manifest's ``outcomes`` entry and the rows)."""

    status: str  # ok | failed | disabled
    events: tuple[OutcomeEvent, ...] = ()
    error: str | None = None
    requests: int = 0
    seconds: float = 0.0
    #: The event dates read: ``from`` inclusive (None: no lower bound) to ``to`` exclusive.
    window: tuple[date | None, date] | None = None
    notes: tuple[str, ...] = ()

    def as_dict(self, file: str | None) -> dict[str, Any]:
        ok = self.status == OK
        return {
            "status": self.status,
            "events": len(self.events) if ok else None,
            "churn": sum(e.event == CHURN for e in self.events) if ok else None,
            "renewal": sum(e.event == RENEWAL for e in self.events) if ok else None,
            "file": file,
            "window": None
            if self.window is None
            else {
                "from": None if self.window[0] is None else self.window[0].isoformat(),
                "to": self.window[1].isoformat(),
            },
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "notes": list(self.notes),
        }


def disabled(reason: str) -> OutcomesReport:
    return OutcomesReport(DISABLED, error=None, notes=(reason,))
