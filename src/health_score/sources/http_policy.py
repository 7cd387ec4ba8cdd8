"""How one source paces its HTTP calls: the policy, and its ``http:`` section in sources.yaml.

Pure data (pydantic and the standard library only): the settings layer reads it without importing
the HTTP client stack; :mod:`health_score.sources.http` applies it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pydantic

from health_score.deadline import Deadline, FiniteFloat

#: Never sleep longer than this on a server's say-so (``Retry-After``, ``X-RateLimit-Reset``).
MAX_SERVER_DELAY = 120.0


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """Timeouts, retries and pacing for one source."""

    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    attempts: int = 8
    budget_seconds: float = 300.0  # total time one call may spend retrying
    wait_initial: float = 0.5
    wait_max: float = 30.0
    wait_jitter: float = 1.0
    requests_per_second: float | None = None  # client-side rate limit; None = unlimited
    pool_size: int = 8
    max_server_delay: float = MAX_SERVER_DELAY  # cap on a delay the server asks for
    #: Total wall-clock time one request may take, body included (the read timeout is per read,
    #: so a server trickling a byte a second would otherwise never time out).
    request_timeout: float = 180.0
    #: The run's deadline, shared by every source of the run (None: no deadline).
    deadline: Deadline | None = None


class HttpSettings(pydantic.BaseModel):
    """Per-source HTTP pacing, shared by every section (``<source>.http`` in sources.yaml)."""

    # allow_inf_nan: "inf", "nan" and YAML's .inf are not timeouts (an infinite one never ends).
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    connect_timeout_seconds: FiniteFloat = pydantic.Field(5.0, gt=0)
    read_timeout_seconds: FiniteFloat = pydantic.Field(60.0, gt=0)
    request_timeout_seconds: FiniteFloat = pydantic.Field(180.0, gt=0)
    attempts: int = pydantic.Field(8, ge=1, le=20)
    budget_seconds: FiniteFloat = pydantic.Field(300.0, gt=0)
    requests_per_second: FiniteFloat | None = pydantic.Field(None, gt=0)
    max_workers: int = pydantic.Field(4, ge=1, le=32)

    def policy(self, deadline: Deadline | None = None) -> HttpPolicy:
        return HttpPolicy(
            connect_timeout=self.connect_timeout_seconds,
            read_timeout=self.read_timeout_seconds,
            request_timeout=self.request_timeout_seconds,
            deadline=deadline,
            attempts=self.attempts,
            budget_seconds=self.budget_seconds,
            requests_per_second=self.requests_per_second,
            pool_size=max(self.max_workers, 4),
        )
