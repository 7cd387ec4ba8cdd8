"""The list of sources, their ``sources.yaml`` sections and their activation from credentials.

Each source module ``src/extractors/<name>.py`` defines:

- ``Settings``: a pydantic model (``extra="forbid"``) for its section of ``sources.yaml``;
- ``from_env(settings, env, *, session=None) -> Extractor | None``: the extractor when its
  credentials are present in ``env``, else None (the source is simply not activated);
- ``CREDENTIAL_VARS``: the environment variable names it reads (for messages, never values).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import pydantic

from health_score.loaders.salesforce_settings import SECTION as WRITEBACK
from health_score.loaders.salesforce_settings import parse_writeback
from health_score.sources.base import Extractor

SOURCES = ("intercom", "jira", "looker", "salesforce")


class HttpSettings(pydantic.BaseModel):
    """Per-source HTTP pacing, shared by every section (``<source>.http`` in sources.yaml)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    connect_timeout_seconds: float = pydantic.Field(5.0, gt=0)
    read_timeout_seconds: float = pydantic.Field(60.0, gt=0)
    attempts: int = pydantic.Field(8, ge=1, le=20)
    budget_seconds: float = pydantic.Field(300.0, gt=0)
    requests_per_second: float | None = pydantic.Field(None, gt=0)
    max_workers: int = pydantic.Field(4, ge=1, le=32)

    def policy(self) -> Any:
        from health_score.sources.http import HttpPolicy

        return HttpPolicy(
            connect_timeout=self.connect_timeout_seconds,
            read_timeout=self.read_timeout_seconds,
            attempts=self.attempts,
            budget_seconds=self.budget_seconds,
            requests_per_second=self.requests_per_second,
            pool_size=max(self.max_workers, 4),
        )


def source_module(name: str) -> ModuleType:
    return importlib.import_module(f"health_score.sources.{name}")


def _loc(parts: tuple[int | str, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def parse_sources(
    raw: object,
    add_problem: Callable[[str, str], None],
    only: tuple[str, ...] = SOURCES,
) -> dict[str, Any]:
    """Validate the sections of sources.yaml; report problems as (key path, message)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        add_problem("", "expected a mapping with one section per source")
        return {}
    for name in raw:
        if name not in SOURCES and name != WRITEBACK:
            add_problem(str(name), f"unknown source (expected one of {list(SOURCES)})")
    settings: dict[str, Any] = {}
    for name in only:
        model: type[pydantic.BaseModel] = source_module(name).Settings
        section = raw.get(name)
        if section is None:
            section = {}
        try:
            settings[name] = model.model_validate(section)
        except pydantic.ValidationError as exc:
            for error in exc.errors():
                add_problem(f"{name}{_loc(tuple(error['loc']))}", error["msg"])
    writeback = parse_writeback(raw.get(WRITEBACK), add_problem)  # not a source: the loader's
    if writeback is not None:
        settings[WRITEBACK] = writeback
    return settings


def activate(
    settings: Mapping[str, Any], env: Mapping[str, str], **kwargs: Any
) -> tuple[list[Extractor], list[str]]:
    """The extractors whose credentials are present, and the names of those left inactive."""
    active: list[Extractor] = []
    inactive: list[str] = []
    for name in SOURCES:
        extractor = source_module(name).from_env(settings[name], env, **kwargs)
        if extractor is None:
            inactive.append(name)
        else:
            active.append(extractor)
    return active, inactive
