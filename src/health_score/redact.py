"""Secrets out of quoted text: every vendor body an error quotes, and every text run artifact.

:func:`redact` replaces token-like content with ``[redacted]``:

- the values of the keys ``access_token``, ``id_token``, ``refresh_token``, ``sessionId`` /
  ``session_id``, ``client_secret`` and ``password`` in JSON, form and query text (``key=v``,
  ``"key": "v"``, also JSON-escaped as ``\\"key\\": \\"v\\"``);
- ``Authorization: <scheme> <value>`` (the scheme stays visible) and a free-standing
  ``Bearer <token>`` / ``Basic <credentials>``;
- the text of a SOAP ``<sessionId>`` element;
- every value registered with :func:`register_secret`: the run's configured credentials
  (:func:`register_credentials`) and the session tokens it was issued (each client registers
  the token it obtains).

The registry is process-wide: a token issued to one source must stay out of every artifact of
the run, whichever thread writes it. Every pattern is linear (no nested quantifiers), so a
hostile body costs time proportional to its length. :func:`excerpt` redacts the whole body
first, then cuts, so a token straddling the cut is never half left.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping

from health_score.secrets import MIN_MASKED_LENGTH, secret_values

__all__ = [
    "EXCERPT_LIMIT",
    "REDACTED",
    "Masker",
    "excerpt",
    "redact",
    "register_credentials",
    "register_secret",
]

REDACTED = "[redacted]"
#: Characters of a body quoted in an error message (after redaction).
EXCERPT_LIMIT = 200
#: Characters of a body read at all for an excerpt: far beyond the cut, so every token near the
#: quoted part is whole when redacted, and a megabyte of error page costs nothing.
_SCAN_LIMIT = 16_384
#: At most this many secrets are remembered (a warm Lambda logs in on every run; each value
#: costs one scan of every artifact).
_MAX_REGISTERED = 256

# A value runs to the next quote, space, separator or escape; an earlier "[redacted]" is left
# as it is, so redacting twice changes nothing.
_VALUE = r"""(?!\[redacted\])[^\s"'\\&,;<>(){}\[\]]+"""
# key, optional closing quote (maybe JSON-escaped), ':' or '=', optional opening quote.
_SEPARATOR = r"""(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?"""

_KEYED = re.compile(
    r"(?<![A-Za-z0-9])"
    r"(access_token|id_token|refresh_token|session_?id|client_secret|password)"
    rf"({_SEPARATOR})({_VALUE})",
    re.IGNORECASE,
)
_AUTHORIZATION = re.compile(
    rf"(?<![A-Za-z0-9])(authorization{_SEPARATOR})"
    # Already redacted (with or without its scheme): left alone, so redacting twice is a no-op.
    r"(?!(?:(?:bearer|basic|token|digest|negotiate|oauth)\s+)?\[redacted\])"
    r"((?:bearer|basic|token|digest|negotiate|oauth)\s+)?"
    rf"({_VALUE})",
    re.IGNORECASE,
)
# A free-standing scheme is only taken for a credential when what follows looks like one (at
# least 8 token characters, one of them a digit or + / = . _ -): account names such as
# "Basic Solutions" in scores.csv stay as they are.
_SCHEME = re.compile(
    r"(?<![A-Za-z0-9])((?:[Bb]earer|BEARER|[Bb]asic|BASIC)\s+)"
    r"(?=[A-Za-z]*[0-9+/=._~-])([A-Za-z0-9+/=._~-]{8,})"
)
#: What a text must contain (case-folded) for ``_KEYED`` to match anything.
_KEYED_WORDS: tuple[str, ...] = (
    "access_token",
    "id_token",
    "refresh_token",
    "sessionid",
    "session_id",
    "client_secret",
    "password",
)
_SOAP_SESSION = re.compile(r"(<(?:\w+:)?sessionId>)(?!\[redacted\])[^<]+", re.IGNORECASE)


class Masker:
    """Replaces known secret values in text (longest first, so overlaps mask fully)."""

    def __init__(self, values: Iterable[str] = (), *, mask: str = REDACTED) -> None:
        self.mask = mask
        self.values: tuple[str, ...] = ()
        self.update(values)

    def update(self, values: Iterable[str]) -> None:
        merged = set(self.values) | {v for v in values if v}
        self.values = tuple(sorted(merged, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, self.mask)
        return text


_lock = threading.Lock()
_registered: dict[str, None] = {}  # an ordered set: the oldest token is forgotten first
_values = Masker()


def register_secret(value: str | None) -> None:
    """Never show ``value`` again in a quoted body or an artifact (short values are ignored)."""
    if not value or len(value) < MIN_MASKED_LENGTH:
        return
    with _lock:
        if value in _registered:
            return
        _registered[value] = None
        while len(_registered) > _MAX_REGISTERED:
            del _registered[next(iter(_registered))]
        global _values  # one reference swap: a concurrent redact sees the old or the new set
        _values = Masker(_registered)


def register_credentials(env: Mapping[str, str], names: Iterable[str] = ()) -> None:
    """Register the credentials of ``env``: the variables ``names`` (the sources' credential
    variables) and every credential-named one (as the log masking picks them)."""
    for value in secret_values(env, frozenset(names)):
        register_secret(value)


def redact(text: str) -> str:
    """``text`` with every registered secret and token-like value replaced by ``[redacted]``."""
    text = _values(text)
    # Each pattern needs its keyword: one case-folded copy tells which can match at all, so a
    # large CSV without any (the usual case) costs a scan, not four regex passes.
    lowered = text.lower()
    if any(key in lowered for key in _KEYED_WORDS):
        text = _KEYED.sub(rf"\1\2{REDACTED}", text)
    if "authorization" in lowered:
        text = _AUTHORIZATION.sub(rf"\1\2{REDACTED}", text)
    if "bearer" in lowered or "basic" in lowered:
        text = _SCHEME.sub(rf"\1{REDACTED}", text)
    if "sessionid" in lowered:
        text = _SOAP_SESSION.sub(rf"\1{REDACTED}", text)
    return text


def excerpt(text: str, limit: int = EXCERPT_LIMIT) -> str:
    """A body for an error message: redacted whole, whitespace collapsed, at most ``limit``."""
    cleaned = " ".join(redact(text[:_SCAN_LIMIT]).split())
    if len(cleaned) > limit or len(text) > _SCAN_LIMIT:
        return cleaned[:limit] + "…"
    return cleaned
