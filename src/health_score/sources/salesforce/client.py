"""One HTTP client for Salesforce's REST API, shared by the extractor and the write-back loader.

:class:`SalesforceClient` is a :class:`SourceClient` (the one HTTP policy: timeouts, retries on
429/5xx with backoff, pacing, a request counter) with what is particular to Salesforce:

- the session: it logs in lazily with a login flow of :mod:`.auth` (or a caller's
  ``authenticate`` callable, or uses a session id it was given), learns the org's instance URL
  from the login, and talks to ``{instance}/services/data/v{version}`` (``base_url``);
- an expired session: a 401 ``INVALID_SESSION_ID`` logs in again once and repeats the call (when
  several threads see the same expired session, one of them logs in); a second refusal, or any
  other 401, is an :class:`AuthenticationError` naming the variables to check;
- errors: 403 ``REQUEST_LIMIT_EXCEEDED`` is reported as the spent daily allowance, other error
  bodies as :class:`SalesforceApiError` carrying Salesforce's ``errorCode``;
- the daily allowance: the ``Sforce-Limit-Info: api-usage=N/M`` header of every answer is kept
  (:attr:`SalesforceClient.api_usage`, the highest seen) and logged by :meth:`log_usage`;
- SOQL: :meth:`SalesforceClient.query` yields every record of a query, following
  ``nextRecordsUrl`` (on the same instance only) and refusing a paging loop; numbers with a
  fraction are read as :class:`~decimal.Decimal`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any, NamedTuple

import requests

from health_score.redact import register_secret
from health_score.sources.http import (
    AuthenticationError,
    HttpPolicy,
    SourceClient,
    SourceError,
    endpoint_of,
)
from health_score.sources.salesforce import auth

log = logging.getLogger(__name__)

SOURCE = auth.SOURCE
DEFAULT_API_VERSION = auth.DEFAULT_API_VERSION
SESSION_EXPIRED = "INVALID_SESSION_ID"
LIMIT_EXCEEDED = "REQUEST_LIMIT_EXCEEDED"
#: ``Sforce-Limit-Info`` share of the daily allowance above which the usage is logged as a warning.
USAGE_WARNING_SHARE = 0.9
# ``api-usage=25/15000`` — not the ``per-app-api-usage=…`` entry that may come with it.
_USAGE = re.compile(r"(?<![\w-])api-usage=(\d+)/(\d+)")
_DATA_PATH = "/services/data/"

#: Why nothing can log in (names the variables, never values).
NO_CREDENTIALS = (
    "no complete Salesforce credentials: set SF_CLIENT_ID and SF_CLIENT_SECRET "
    "(or SF_CLIENT_ID, SF_USERNAME and SF_JWT_KEY_FILE; or SF_USERNAME, SF_PASSWORD and "
    "SF_SECURITY_TOKEN)"
)

#: A login: () → (instance URL, session id / access token).
Authenticate = Callable[[], tuple[str, str]]


class SalesforceApiError(SourceError):
    """Salesforce refused a call with an error body: ``error_code`` and its ``api_message``."""

    def __init__(
        self, endpoint: str, status: int, error_code: str, api_message: str, fields: list[str]
    ) -> None:
        self.error_code = error_code
        self.api_message = api_message
        self.fields = fields
        # The message's first lines echo the query; its last line says what is wrong.
        detail = api_message.strip().splitlines()[-1] if api_message.strip() else ""
        super().__init__(SOURCE, endpoint, f"HTTP {status} {error_code}: {detail}", status)


class ApiUsage(NamedTuple):
    """``Sforce-Limit-Info``: API calls the org made in the last 24 hours, and its allowance."""

    used: int
    limit: int

    def __str__(self) -> str:
        return f"{self.used}/{self.limit}"


def parse_limit_info(header: str | None) -> ApiUsage | None:
    """``api-usage=25/15000`` (possibly beside ``per-app-api-usage=…``) → ApiUsage(25, 15000)."""
    match = _USAGE.search(header or "")
    return ApiUsage(int(match.group(1)), int(match.group(2))) if match else None


class _SessionExpired(Exception):
    """A 401 ``INVALID_SESSION_ID``: worth one fresh login."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        super().__init__(endpoint)


def error_list(response: requests.Response) -> list[tuple[str, str, list[str]]]:
    """Salesforce's ``[{"errorCode","message","fields"}]`` body, or [] when it is not one."""
    try:
        body = response.json()
    except ValueError:
        return []
    if isinstance(body, dict):
        body = [body]
    if not isinstance(body, list):
        return []
    out: list[tuple[str, str, list[str]]] = []
    for item in body:
        if isinstance(item, dict) and isinstance(item.get("errorCode"), str):
            fields = item.get("fields")
            out.append(
                (
                    item["errorCode"],
                    str(item.get("message") or ""),
                    [str(f) for f in fields] if isinstance(fields, list) else [],
                )
            )
    return out


class SalesforceClient(SourceClient):
    """Salesforce's REST API on the shared HTTP policy (see the module docstring).

    Give it ``authenticate`` (called lazily and again once when the session expires), or a
    ready ``instance_url`` and ``session_id`` (no fresh login is possible then), or both.
    """

    def __init__(
        self,
        authenticate: Authenticate | None = None,
        *,
        instance_url: str | None = None,
        session_id: str | None = None,
        version: str = DEFAULT_API_VERSION,
        session: requests.Session | None = None,
        policy: HttpPolicy | None = None,
        verify: str | bool | None = None,
        credential_hint: str = "",
    ) -> None:
        if authenticate is None and not (instance_url and session_id):
            raise ValueError("give instance_url and session_id, or authenticate")
        self._login = authenticate
        self.version = version
        self.verify = verify
        self.instance_url = ""
        self.session_id = ""
        self.api_usage: ApiUsage | None = None
        self.logins = 0
        self._owns_session = session is None
        self._renew_lock = threading.Lock()
        self._usage_lock = threading.Lock()
        super().__init__(
            SOURCE,
            "https://login.invalid",
            session=session,
            policy=policy,
            authenticate=self._bearer,
            credential_hint=credential_hint,
            reauthenticate_on_401=False,  # only INVALID_SESSION_ID renews, in request()
            verify=verify,
        )
        self._given = bool(instance_url and session_id)  # a session to use before any login
        if instance_url and session_id:
            self._use(instance_url, session_id)

    @classmethod
    def from_credentials(
        cls,
        credentials: auth.Credentials,
        *,
        version: str = DEFAULT_API_VERSION,
        session: requests.Session | None = None,
        policy: HttpPolicy | None = None,
    ) -> SalesforceClient:
        """A client that logs in with a flow of :mod:`.auth` (logins counted)."""

        def authenticate() -> tuple[str, str]:
            token, instance = auth.login(
                credentials, client.session, client.policy, client.count_request, version
            )
            return instance, token

        client = cls(
            authenticate,
            version=version,
            session=session,
            policy=policy,
            verify=credentials.verify,
            credential_hint=", ".join(credentials.variables),
        )
        return client

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        version: str = DEFAULT_API_VERSION,
        session: requests.Session | None = None,
        policy: HttpPolicy | None = None,
    ) -> SalesforceClient | None:
        """A client for the credentials in ``env`` (``SF_*``), or None when none are complete."""
        credentials = auth.credentials_from_env(env)
        if credentials is None:
            return None
        return cls.from_credentials(credentials, version=version, session=session, policy=policy)

    # -- the session ------------------------------------------------------------------------------

    def _use(self, instance_url: str, session_id: str) -> None:
        register_secret(session_id)  # issued or given, it never appears in a quoted body
        self.instance_url = instance_url.rstrip("/")
        self.session_id = session_id
        self.base_url = f"{self.instance_url}/services/data/v{self.version}"

    def _bearer(self) -> Mapping[str, str]:
        """SourceClient's header hook: log in when a login is possible, else the given session."""
        if self._given:
            self._given = False
        elif self._login is not None:
            instance_url, session_id = self._login()
            self.logins += 1
            self._use(instance_url, session_id)
        return {"Authorization": f"Bearer {self.session_id}"}

    def connect(self) -> None:
        """Log in now unless a session is in use already (errors: SourceError)."""
        if not self.session_id:
            self._headers()

    def renew(self, stale: str | None = None) -> None:
        """A fresh login, unless another thread already replaced the ``stale`` session id."""
        if self._login is None:
            raise AuthenticationError(
                SOURCE, "login", "the session expired and no login is configured to renew it"
            )
        with self._renew_lock:
            if stale is None or self.session_id == stale:
                log.info("%s: session expired, logging in again", SOURCE)
                self._headers(refresh=True)

    def close(self) -> None:
        """Close the HTTP session when this client opened it (a caller's stays the caller's)."""
        if self._owns_session:
            self.session.close()

    # -- calls ------------------------------------------------------------------------------------

    def request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        """Send with the policy; a path is relative to ``base_url`` (the data API)."""
        # Per call, so REQUESTS_CA_BUNDLE in the process environment cannot override
        # SF_CA_BUNDLE (requests prefers the environment over ``session.verify``).
        if self.verify is not None:
            kwargs.setdefault("verify", self.verify)
        self.connect()
        stale = self.session_id
        try:
            return super().request(method, path_or_url, **dict(kwargs))
        except _SessionExpired:
            self.renew(stale)
        try:
            return super().request(method, path_or_url, **dict(kwargs))
        except _SessionExpired as again:
            raise AuthenticationError(
                SOURCE,
                again.endpoint,
                f"session refused again after a fresh login (HTTP 401 {SESSION_EXPIRED}); "
                f"check {self.credential_hint or 'the Salesforce credentials'}",
                401,
            ) from None

    def check(self, response: requests.Response, endpoint: str) -> requests.Response:
        self._track_usage(response)
        status = response.status_code
        if status < 400:
            return response
        errors = error_list(response)
        if status == 401:
            if self._login is not None and any(e[0] == SESSION_EXPIRED for e in errors):
                raise _SessionExpired(endpoint)
            return super().check(response, endpoint)
        if status == 403 and any(e[0] == LIMIT_EXCEEDED for e in errors):
            raise SourceError(
                SOURCE,
                endpoint,
                f"the org's daily API request allowance is spent (403 {LIMIT_EXCEEDED}); "
                "wait for it to reset or raise the org's limit",
                status,
            )
        if errors:
            code, message, fields = errors[0]
            raise SalesforceApiError(endpoint, status, code, message, fields)
        return super().check(response, endpoint)

    def _track_usage(self, response: requests.Response) -> None:
        usage = parse_limit_info(response.headers.get("Sforce-Limit-Info"))
        if usage is None:
            return
        with self._usage_lock:
            # Concurrent answers arrive out of order: the highest count is the latest.
            if self.api_usage is None or usage.used >= self.api_usage.used:
                self.api_usage = usage

    def log_usage(self, what: str) -> None:
        """Log the org's API usage after ``what`` (a warning above 90 % of the allowance)."""
        usage = self.api_usage
        if usage is None:
            return
        high = usage.limit > 0 and usage.used >= usage.limit * USAGE_WARNING_SHARE
        log.log(
            logging.WARNING if high else logging.INFO,
            "%s: %s; org API usage %s in the last 24 hours%s",
            SOURCE,
            what,
            usage,
            " (near the daily allowance)" if high else "",
        )

    # -- SOQL -------------------------------------------------------------------------------------

    def _records_page(self, response: requests.Response) -> Mapping[str, Any]:
        try:
            body = json.loads(response.text, parse_float=Decimal)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            endpoint = f"{response.request.method} {endpoint_of(response.url)}"
            raise SourceError(SOURCE, endpoint, "malformed query response (not a JSON object)")
        return body

    def query(self, soql: str, *, all_rows: bool = False) -> Iterator[Mapping[str, Any]]:
        """Every record of ``soql`` (``GET query/?q=``), page after page via ``nextRecordsUrl``.

        ``all_rows`` uses ``queryAll``: deleted and archived records too (Salesforce archives
        Events older than a year, and plain ``query`` never returns them).
        """
        resource = "queryAll/" if all_rows else "query/"
        page = self._records_page(self.request("GET", resource, params={"q": soql}))
        seen: set[str] = set()
        while True:
            records = page.get("records")
            if records is None:
                records = []
            if not isinstance(records, list):
                raise SourceError(SOURCE, "GET query", "malformed query response (records)")
            yield from records
            if page.get("done", True):
                return
            next_url = page.get("nextRecordsUrl")
            if not isinstance(next_url, str) or not next_url.startswith(_DATA_PATH):
                raise SourceError(
                    SOURCE, "GET query", "query not done but no nextRecordsUrl on the instance"
                )
            if next_url in seen:
                raise SourceError(
                    SOURCE, "GET query", "nextRecordsUrl missing or repeated: loop detected"
                )
            seen.add(next_url)
            # A path on the instance: the session never goes to another host.
            page = self._records_page(self.request("GET", f"{self.instance_url}{next_url}"))
