"""Logging in to Salesforce: the login flows, their variables, and one login call.

The login is a plain POST with requests to the configured login host, which can be any My Domain
URL (a port included) or the stand-in on loopback; retries cover connection errors, 429 and
502–504 only. :mod:`health_score.sources.salesforce.client` calls :func:`login` lazily and again
once when a session expires; the extractor and the loader both use that client.

Flows, in order of preference (the first whose variables are all set is used):

- OAuth 2.0 client credentials: ``SF_CLIENT_ID``, ``SF_CLIENT_SECRET``;
- OAuth 2.0 JWT bearer: ``SF_CLIENT_ID``, ``SF_USERNAME``, ``SF_JWT_KEY_FILE`` (RS256 key, PEM);
- SOAP username + password + security token (off in new orgs, retiring in Summer '27; kept for
  compatibility): ``SF_USERNAME``, ``SF_PASSWORD``, ``SF_SECURITY_TOKEN``.

The login host is ``SF_LOGIN_URL`` (default https://login.salesforce.com) or, from ``SF_DOMAIN``
(``login``, ``test`` or a My Domain prefix such as ``acme.my``), ``https://{domain}.salesforce.com``.
``SF_CA_BUNDLE`` (else ``REQUESTS_CA_BUNDLE``) names the certificate authorities to trust.
Secrets never appear in logs or messages: errors name the variables to check, never their values.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import stamina
from pydantic import SecretStr

from health_score.sources.http import (
    LOGIN_RETRYABLE_STATUS,
    AuthenticationError,
    HttpPolicy,
    RetriableHTTPError,
    SourceError,
    _backoff_hook,
    _retry_after_seconds,
)
from health_score.sources.salesforce.settings import (
    CLIENT_CREDENTIALS_VARS,
    JWT_VARS,
    PASSWORD_VARS,
    client_credentials_problem,
)

log = logging.getLogger(__name__)

SOURCE = "salesforce"
DEFAULT_LOGIN_URL = "https://login.salesforce.com"
DEFAULT_API_VERSION = "62.0"
TOKEN_PATH = "/services/oauth2/token"  # noqa: S105 - a URL path, not a secret
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,120}[A-Za-z0-9])?")
_TRANSIENT_LOGIN_STATUS = LOGIN_RETRYABLE_STATUS  # 429, 502–504: a refused SOAP login is 500
#: SOAP ``login`` faults that refuse the credentials (an HTTP 500 with another fault, such as
#: UNKNOWN_EXCEPTION, or none, is Salesforce failing, not a rejection).
LOGIN_FAULTS = frozenset(
    {
        "INVALID_LOGIN",
        "LOGIN_MUST_USE_SECURITY_TOKEN",
        "INVALID_OPERATION_WITH_EXPIRED_PASSWORD",
        "PASSWORD_LOCKOUT",
        "LOGIN_DURING_RESTRICTED_DOMAIN",
        "LOGIN_DURING_RESTRICTED_TIME",
        "API_DISABLED_FOR_ORG",
        "API_CURRENTLY_DISABLED",
        "INVALID_SSO_GATEWAY_URL",
        "ORG_LOCKED",
    }
)
# A login's body is never quoted: only a code of the vendor's fixed vocabulary is named
# (OAuth "invalid_client", SOAP "INVALID_LOGIN"), never free text that could echo a secret.
_ERROR_CODE = re.compile(r"[a-z][a-z_]{2,40}")


@dataclass(frozen=True, slots=True)
class Credentials:
    """One login flow's settings; secrets are SecretStr so a repr never shows them."""

    flow: str  # client_credentials | jwt_bearer | password
    login_url: str
    variables: tuple[str, ...]  # what an operator should check when the login is refused
    verify: str | bool = True
    client_id: str = ""
    client_secret: SecretStr = field(default_factory=lambda: SecretStr(""))
    username: str = ""
    password: SecretStr = field(default_factory=lambda: SecretStr(""))
    security_token: SecretStr = field(default_factory=lambda: SecretStr(""))
    jwt_key_file: str = ""


def login_url_from_env(env: Mapping[str, str]) -> str:
    """``SF_LOGIN_URL``, else ``https://{SF_DOMAIN}.salesforce.com``, else the default."""
    url = (env.get("SF_LOGIN_URL") or "").strip()
    if url:
        return url.rstrip("/")
    domain = (env.get("SF_DOMAIN") or "").strip()
    if domain:
        if not _DOMAIN.fullmatch(domain):
            raise AuthenticationError(
                SOURCE, "login", "SF_DOMAIN must be login, test or a My Domain prefix"
            )
        return f"https://{domain}.salesforce.com"
    return DEFAULT_LOGIN_URL


def credentials_from_env(env: Mapping[str, str]) -> Credentials | None:
    """The preferred login flow whose variables are set, or None when none is complete."""

    def has(*names: str) -> bool:
        return all((env.get(name) or "").strip() for name in names)

    verify: str | bool = env.get("SF_CA_BUNDLE") or env.get("REQUESTS_CA_BUNDLE") or True
    location = ("SF_DOMAIN",) if env.get("SF_DOMAIN") and not env.get("SF_LOGIN_URL") else ()
    location = location or ("SF_LOGIN_URL",)
    if has(*CLIENT_CREDENTIALS_VARS):
        problem = client_credentials_problem(env)
        if problem is not None:
            raise AuthenticationError(SOURCE, "login", problem.removeprefix(f"{SOURCE}: "))
        return Credentials(
            "client_credentials",
            login_url_from_env(env),
            (*CLIENT_CREDENTIALS_VARS, *location),
            verify,
            client_id=env["SF_CLIENT_ID"].strip(),
            client_secret=SecretStr(env["SF_CLIENT_SECRET"].strip()),
        )
    if has(*JWT_VARS):
        return Credentials(
            "jwt_bearer",
            login_url_from_env(env),
            (*JWT_VARS, *location),
            verify,
            client_id=env["SF_CLIENT_ID"].strip(),
            username=env["SF_USERNAME"].strip(),
            jwt_key_file=env["SF_JWT_KEY_FILE"].strip(),
        )
    if has("SF_USERNAME", "SF_PASSWORD") and "SF_SECURITY_TOKEN" in env:
        return Credentials(
            "password",
            login_url_from_env(env),
            (*PASSWORD_VARS, *location),
            verify,
            username=env["SF_USERNAME"].strip(),
            password=SecretStr(env["SF_PASSWORD"]),
            security_token=SecretStr(env.get("SF_SECURITY_TOKEN") or ""),
        )
    return None


# --------------------------------------------------------------------------------------------
# Login calls


def _unavailable(endpoint: str, status: int) -> SourceError:
    """A 5xx at login: Salesforce is down or failing, the credentials are not in question."""
    return SourceError(SOURCE, endpoint, f"Salesforce unavailable (HTTP {status} at login)", status)


def _rejected(credentials: Credentials, endpoint: str, status: int, reason: str) -> Exception:
    names = ", ".join(credentials.variables)
    return AuthenticationError(
        SOURCE, endpoint, f"credentials rejected ({reason}); check {names}", status
    )


def _post_login(
    credentials: Credentials,
    session: requests.Session,
    policy: HttpPolicy,
    count: Callable[[], None],
    path: str,
    **kwargs: Any,
) -> requests.Response:
    """POST to the login host with retries on connection errors, 429 and 502–504 only."""
    url = f"{credentials.login_url}{path}"
    endpoint = f"POST {path}"
    try:
        for attempt in stamina.retry_context(
            on=_backoff_hook,
            attempts=min(policy.attempts, 5),
            timeout=policy.budget_seconds,
            wait_initial=policy.wait_initial,
            wait_max=policy.wait_max,
            wait_jitter=policy.wait_jitter,
        ):
            with attempt:
                count()
                response = session.post(
                    url,
                    timeout=(policy.connect_timeout, policy.read_timeout),
                    verify=credentials.verify,
                    **kwargs,
                )
                if response.status_code in _TRANSIENT_LOGIN_STATUS:
                    raise RetriableHTTPError(
                        response,
                        _retry_after_seconds(response),
                        f"{SOURCE}: {endpoint}",
                        min(policy.attempts, 5),
                    )
    except RetriableHTTPError as exc:
        status = exc.response.status_code
        if status >= 500:
            raise _unavailable(endpoint, status) from None
        raise SourceError(SOURCE, endpoint, f"HTTP {status} after retries", status) from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise SourceError(SOURCE, endpoint, f"cannot connect: {type(exc).__name__}") from None
    return response


def _oauth(
    credentials: Credentials,
    session: requests.Session,
    policy: HttpPolicy,
    count: Callable[[], None],
) -> tuple[str, str]:
    if credentials.flow == "client_credentials":
        form = {
            "grant_type": "client_credentials",
            "client_id": credentials.client_id,
            "client_secret": credentials.client_secret.get_secret_value(),
        }
    else:
        form = {"grant_type": JWT_GRANT, "assertion": jwt_assertion(credentials)}
    response = _post_login(credentials, session, policy, count, TOKEN_PATH, data=form)
    endpoint = f"POST {TOKEN_PATH}"
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 500:
        raise _unavailable(endpoint, response.status_code)
    if response.status_code != 200:
        reason = f"HTTP {response.status_code}"
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, str) and _ERROR_CODE.fullmatch(error):
            reason += f" {error}"
        raise _rejected(credentials, endpoint, response.status_code, reason)
    if not isinstance(body, dict) or not body.get("access_token") or not body.get("instance_url"):
        raise SourceError(SOURCE, endpoint, "token response without access_token/instance_url")
    return str(body["access_token"]), str(body["instance_url"]).rstrip("/")


def jwt_audience(login_url: str) -> str:
    """The JWT bearer ``aud``: test.salesforce.com for sandbox orgs (``test.`` or a My Domain
    sandbox host ``*.sandbox.my.salesforce.com``), else login.salesforce.com."""
    host = (urlsplit(login_url).hostname or "").lower()
    sandbox = host.startswith("test.") or host.endswith(".sandbox.my.salesforce.com")
    return "https://test.salesforce.com" if sandbox else DEFAULT_LOGIN_URL


def jwt_assertion(credentials: Credentials) -> str:
    """The signed RS256 assertion of the JWT bearer flow (claims iss, sub, aud, exp)."""
    # Imported here: PyJWT pulls in ``cryptography`` (about 45 ms), which only this flow needs,
    # and every run (a scoring-only ``--from-raw`` run too) imports this module.
    import jwt

    try:
        key = Path(credentials.jwt_key_file).read_bytes()
    except OSError as exc:
        raise AuthenticationError(
            SOURCE, "login", f"cannot read SF_JWT_KEY_FILE ({type(exc).__name__})"
        ) from None
    claims = {
        "iss": credentials.client_id,
        "sub": credentials.username,
        "aud": jwt_audience(credentials.login_url),
        "exp": int(time.time()) + 180,
    }
    try:
        return str(jwt.encode(claims, key, algorithm="RS256"))
    except (ValueError, TypeError, jwt.PyJWTError):
        raise AuthenticationError(
            SOURCE, "login", "SF_JWT_KEY_FILE is not a usable RSA private key"
        ) from None


def _soap_envelope(username: str, password: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8" ?>'
        '<env:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:urn="urn:partner.soap.sforce.com">'
        "<env:Header><urn:CallOptions><urn:client>health-score-middleware</urn:client>"
        "</urn:CallOptions></env:Header>"
        '<env:Body><n1:login xmlns:n1="urn:partner.soap.sforce.com">'
        f"<n1:username>{html.escape(username)}</n1:username>"
        f"<n1:password>{html.escape(password)}</n1:password>"
        "</n1:login></env:Body></env:Envelope>"
    )


def _xml_text(body: str, tag: str) -> str | None:
    # The answer is a fixed, flat envelope: a tag match is enough and avoids parsing untrusted
    # XML with the standard library's expat (entity expansion).
    match = re.search(rf"<(?:\w+:)?{tag}>([^<]*)</(?:\w+:)?{tag}>", body)
    return html.unescape(match.group(1)) if match else None


def _soap(
    credentials: Credentials,
    session: requests.Session,
    policy: HttpPolicy,
    count: Callable[[], None],
    version: str,
) -> tuple[str, str]:
    path = f"/services/Soap/u/{version}"
    envelope = _soap_envelope(
        credentials.username,
        credentials.password.get_secret_value() + credentials.security_token.get_secret_value(),
    )
    response = _post_login(
        credentials,
        session,
        policy,
        count,
        path,
        data=envelope.encode("utf-8"),
        headers={"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": "login"},
    )
    endpoint = f"POST {path}"
    text = response.text
    if response.status_code != 200:
        fault = _xml_text(text, "faultcode") or f"HTTP {response.status_code}"
        fault = fault.split(":")[-1]
        # SOAP refuses a login with a fault in an HTTP 500; any other 500 is an outage.
        if response.status_code == 500 and fault in LOGIN_FAULTS:
            raise _rejected(credentials, endpoint, response.status_code, fault)
        if response.status_code >= 500:
            raise _unavailable(endpoint, response.status_code)
        raise SourceError(SOURCE, endpoint, f"login failed (HTTP {response.status_code})")
    session_id, server_url = _xml_text(text, "sessionId"), _xml_text(text, "serverUrl")
    if not session_id or not server_url:
        raise SourceError(SOURCE, endpoint, "login response without sessionId/serverUrl")
    parts = urlsplit(server_url)
    return session_id, f"{parts.scheme}://{parts.netloc}"


def login(
    credentials: Credentials,
    session: requests.Session,
    policy: HttpPolicy,
    count: Callable[[], None],
    version: str = DEFAULT_API_VERSION,
) -> tuple[str, str]:
    """Log in with the configured flow: (session id / access token, instance URL)."""
    if credentials.flow == "password":
        token, instance = _soap(credentials, session, policy, count, version)
    else:
        token, instance = _oauth(credentials, session, policy, count)
    log.info("salesforce: logged in (%s) to %s", credentials.flow, urlsplit(instance).netloc)
    return token, instance
