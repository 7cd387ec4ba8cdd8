"""A run's deadline: one clock shared by every source of one run.

The pipeline makes one :class:`Deadline` per run (``run.budget_seconds`` in sources.yaml, the
``--budget-seconds`` flag, or on Lambda the time left minus a margin, the smallest wins) and
hands it to each source's HTTP client, which checks it before every attempt and uses it to cap
retry sleeps and request timeouts. Pure standard library and pydantic: the settings layer reads
:class:`RunSettings` without importing the HTTP stack.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated

import pydantic

__all__ = [
    "DEFAULT_BUDGET_SECONDS",
    "LAMBDA_MARGIN_SECONDS",
    "SECTION",
    "Deadline",
    "DeadlineExceeded",
    "FiniteFloat",
    "RunSettings",
    "parse_run",
]

#: 13 minutes: a 15-minute Lambda keeps two for write-back and the run's files.
DEFAULT_BUDGET_SECONDS = 780.0
#: On Lambda, the time kept back from the invocation's remaining time for write-back and artifacts.
LAMBDA_MARGIN_SECONDS = 120.0
#: The top-level section of sources.yaml these settings come from.
SECTION = "run"


class DeadlineExceeded(Exception):
    """The run's deadline passed: the source stops as a whole.

    Deliberately not a ``SourceError``: extractors that survive one failed endpoint (a Look, a
    page) must not survive the deadline.
    """


class Deadline:
    """``seconds`` from ``start`` (monotonic clock; now unless given); ``origin`` says where the
    budget came from, for messages (e.g. ``"run.budget_seconds"``)."""

    def __init__(
        self,
        seconds: float,
        *,
        origin: str = "run.budget_seconds",
        clock: Callable[[], float] = time.monotonic,
        start: float | None = None,
    ) -> None:
        self.seconds = max(seconds, 0.0)
        self.origin = origin
        self._clock = clock
        self.start = clock() if start is None else start
        self.at = self.start + self.seconds

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(self.at - self._clock(), 0.0)

    def expired(self) -> bool:
        return self._clock() >= self.at

    def elapsed(self) -> float:
        return self._clock() - self.start

    def message(self) -> str:
        """What a source stopped by this deadline reports as its error."""
        return (
            f"deadline: stopped after {self.elapsed():.0f} s "
            f"(run budget {self.seconds:g} s, {self.origin})"
        )

    def exceeded(self) -> DeadlineExceeded:
        return DeadlineExceeded(self.message())


def _finite(value: object) -> object:
    """Refuse infinities and NaN however written: ``inf``, ``"nan"``, YAML's ``.inf``."""
    if isinstance(value, bool) or not isinstance(value, str | float | int | Decimal):
        return value  # pydantic says what is wrong
    text = str(value).strip().lower().lstrip("+-")
    try:
        number = Decimal(text.lstrip(".") if text in {".inf", ".nan"} else text)
    except InvalidOperation:
        return value
    if not number.is_finite() or not math.isfinite(float(number)):
        raise ValueError(f"expected a finite number, got {value!r} (infinity and NaN are refused)")
    return value


#: A float that is finite (what every timeout and budget of sources.yaml is).
FiniteFloat = Annotated[float, pydantic.BeforeValidator(_finite)]


class RunSettings(pydantic.BaseModel):
    """The top-level ``run:`` section of sources.yaml: limits of a whole run."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: Wall-clock seconds every source together may take; at the deadline each source still
    #: running is stopped and reported failed, and the run writes its files with what was read.
    budget_seconds: FiniteFloat = pydantic.Field(DEFAULT_BUDGET_SECONDS, gt=0)


def parse_run(raw_section: object, add_problem: Callable[[str, str], None]) -> RunSettings | None:
    """The ``run:`` section (absent or empty: the defaults); None after reporting problems as
    (key path, message), e.g. ``("run.budget_seconds", "…")``."""
    if raw_section is None:
        raw_section = {}
    if not isinstance(raw_section, Mapping):
        add_problem(SECTION, "expected a mapping of run settings")
        return None
    try:
        return RunSettings.model_validate(raw_section)
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            where = "".join(f".{part}" for part in error["loc"])
            add_problem(f"{SECTION}{where}", error["msg"])
        return None
