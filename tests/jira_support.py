"""Jira test support shared by the stand-in and JQL tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from health_score_sandbox.jira import SANDBOX_API_TOKEN, SANDBOX_EMAIL


@pytest.fixture
def authenticated_session() -> Iterator[requests.Session]:
    """A session carrying the Jira stand-in's basic-auth credentials."""
    with requests.Session() as session:
        session.auth = (SANDBOX_EMAIL, SANDBOX_API_TOKEN)
        yield session
