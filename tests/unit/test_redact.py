"""Redaction of token-like content: each pattern pinned with literals (before → after)."""

from __future__ import annotations

import pytest

from health_score.redact import excerpt, redact, register_secret


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ('{"access_token":"00Dxx!AQ0.abc"}', '{"access_token":"[redacted]"}'),
        ('{"id_token": "eyJhbGciOi.x.y"}', '{"id_token": "[redacted]"}'),
        ("refresh_token=5Aep861&x=1", "refresh_token=[redacted]&x=1"),
        ('{\\"sessionId\\": \\"abc123\\"}', '{\\"sessionId\\": \\"[redacted]\\"}'),
        ("session_id=Z9z9z9", "session_id=[redacted]"),
        ("client_secret=s3cr3t&grant_type=x", "client_secret=[redacted]&grant_type=x"),
        ('PASSWORD: "hunter22"', 'PASSWORD: "[redacted]"'),
        ("Authorization: Bearer abc.def.ghi", "Authorization: Bearer [redacted]"),
        ("authorization=Basic dXNlcjpwYXNz", "authorization=Basic [redacted]"),
        ("got Bearer tok_12345678 back", "got Bearer [redacted] back"),
        ("<sf:sessionId>00D!AR8AQ</sf:sessionId>", "<sf:sessionId>[redacted]</sf:sessionId>"),
        # Not credentials: left exactly as they are.
        ("Basic Solutions Ltd", "Basic Solutions Ltd"),
        ("Bearer Industries", "Bearer Industries"),
        ("token expired", "token expired"),
        ("passwords are hashed", "passwords are hashed"),
    ],
)
def test_each_pattern(before: str, after: str) -> None:
    assert redact(before) == after
    assert redact(after) == after  # redacting twice changes nothing


def test_a_registered_value_is_redacted_anywhere() -> None:
    register_secret("sentinel-registered-9f3a")
    assert redact("x sentinel-registered-9f3a y") == "x [redacted] y"
    register_secret("abc")  # too short to mask: every "abc" would be garbled
    assert redact("abc") == "abc"


def test_the_excerpt_redacts_before_it_cuts() -> None:
    body = "x" * 190 + ' "access_token": "' + "T" * 40 + '"'
    cut = excerpt(body)
    assert "T" not in cut
    assert cut == "x" * 190 + ' "access_t…'
    assert excerpt("  a \n  b  ") == "a b"
