"""Activation: the extractors whose credentials are present in the environment.

The one module that imports every source's HTTP extraction (the pipeline uses it; validating
config does not).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import requests

from health_score.deadline import Deadline
from health_score.sources.base import Extractor
from health_score.sources.intercom import extractor as intercom
from health_score.sources.jira import extractor as jira
from health_score.sources.looker import extractor as looker
from health_score.sources.registry import SOURCES, SourceSettings
from health_score.sources.salesforce import extractor as salesforce


def activate(
    settings: SourceSettings,
    env: Mapping[str, str],
    *,
    session: requests.Session | None = None,
    as_of: datetime | None = None,
    deadline: Deadline | None = None,
    now: datetime | None = None,
    intercom_export: Path | None = None,
) -> tuple[list[Extractor], list[str]]:
    """The extractors whose credentials are present, and the names of those left inactive
    (no credentials, or ``enabled: false`` in sources.yaml).

    ``deadline`` (the run's) is shared by every source's HTTP client. ``as_of`` ends the data
    windows; ``now`` (the run's reference now) tells whether ``as_of`` is a past period.
    ``intercom_export``: Intercom's conversation export, read instead of its API.
    """
    built: dict[str, Extractor | None] = {
        "intercom": intercom.from_env(
            settings.intercom,
            env,
            session=session,
            as_of=as_of,
            deadline=deadline,
            now=now,
            export=intercom_export,
        ),
        "jira": jira.from_env(settings.jira, env, session=session, as_of=as_of, deadline=deadline),
        "looker": looker.from_env(
            settings.looker, env, session=session, as_of=as_of, deadline=deadline, now=now
        ),
        "salesforce": salesforce.from_env(
            settings.salesforce, env, session=session, as_of=as_of, deadline=deadline, now=now
        ),
    }
    active: list[Extractor] = []
    inactive: list[str] = []
    for name in SOURCES:
        extractor = built[name]
        if extractor is None or not getattr(settings[name], "enabled", True):
            inactive.append(name)
        else:
            active.append(extractor)
    return active, inactive
