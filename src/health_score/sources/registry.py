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

from health_score.sources.base import Extractor
from health_score.sources.http_policy import HttpSettings

__all__ = ["SOURCES", "HttpSettings", "activate", "parse_sources", "source_module"]

SOURCES = ("intercom", "jira", "looker", "salesforce")


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
        if name not in SOURCES:
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
