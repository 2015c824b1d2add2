"""Gateway-to-agency trust: secrets by reference, TLS (private CA, client certificates),
OAuth2 client credentials and static headers for HTTP sources, TLS for SQL sources.

Every key lives in the agency's table (``[agencies.<code>]``) and reaches the adapter in
``settings``. Secret-bearing keys hold a *reference*, never the secret itself:
``"env:NAME"`` (the environment variable NAME) or ``"file:PATH"`` (the file's contents,
one trailing newline dropped). Resolved values are remembered here so that
:func:`redact` can blank them out of any text shown to callers or operators, or logged.

HTTP (``kind = "http"`` and any httpx-based source: see :func:`http_client_options`)::

    ca_file = "/etc/gateway/agency-ca.pem"      # trust this CA (only it) for the agency
    client_cert = "/etc/gateway/gw.pem"         # mutual TLS: our certificate ...
    client_key = "/etc/gateway/gw.key"          # ... and its key
    client_key_password = "env:GW_KEY_PASS"     # if the key is encrypted
    oauth2_token_url = "https://idp.example/token"   # bearer tokens, client credentials
    oauth2_client_id = "resident-gateway"
    oauth2_client_secret = "file:/run/secrets/nts-client-secret"
    oauth2_scope = "records.read"               # optional
    auth_header = "env:NTS_AUTH"   # or a static header: "Bearer xyz" or "X-Api-Key: xyz"

SQL (``kind = "sql"``): ``sslmode`` (disable, allow, prefer, require, verify-ca,
verify-full), ``ca_file``, ``client_cert``, ``client_key``, ``client_key_password``,
``password`` (a reference); ``dsn`` itself may be a reference.
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import re
import ssl
import time
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from adapters.base import AgencyFailure
from adapters.bounded import AnswerBounds

#: Keys whose values are secret references.
SECRET_KEYS = ("oauth2_client_secret", "auth_header", "client_key_password", "password")
TLS_KEYS = ("ca_file", "client_cert", "client_key", "client_key_password")
OAUTH2_KEYS = ("oauth2_token_url", "oauth2_client_id", "oauth2_client_secret", "oauth2_scope")
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
#: A token is refreshed this long before it expires.
REFRESH_EARLY_S = 30.0
#: How long a token whose endpoint gave no ``expires_in`` is used.
DEFAULT_TOKEN_LIFETIME_S = 300.0
#: Bounds on a token's stated lifetime (seconds).
MIN_TOKEN_LIFETIME_S = 60.0
MAX_TOKEN_LIFETIME_S = 86_400.0
#: Secrets shorter than this are refused: too short to blank out of text reliably.
MIN_SECRET_LENGTH = 8
#: Access tokens from a token endpoint shorter than this are refused (a real one is far
#: longer; a short one would blank ordinary words out of every log line).
MIN_TOKEN_LENGTH = 16
#: Cap on a token endpoint's answer (a token answer is a few KiB at most).
MAX_TOKEN_ANSWER_BYTES = 64 << 10
_TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]+")  # visible ASCII: no space, no control
_HEADER_FORM = re.compile(r"^([A-Za-z0-9!#$%&'*+.^_`|~-]+):\s*(.+)$")
_REDACTED = "[secret]"

_known_secrets: set[str] = set()


class TrustError(ValueError):
    """A trust setting cannot be used; the message names the key, never a secret's value."""


def is_reference(value: Any) -> bool:
    return isinstance(value, str) and (value.startswith("env:") or value.startswith("file:"))


def resolve(reference: Any, where: str) -> str:
    """The secret a reference names. Raises TrustError naming the reference (which is not
    secret), never the value."""
    if not is_reference(reference):
        raise TrustError(f'{where} must be a reference, "env:NAME" or "file:PATH"')
    kind, _, name = str(reference).partition(":")
    if kind == "env":
        value = os.environ.get(name)
        if value is None:
            raise TrustError(f"{where}: environment variable {name} is not set")
    else:
        try:
            value = Path(name).read_text()
        except OSError as exc:
            raise TrustError(f"{where}: cannot read {name} ({type(exc).__name__})") from None
        value = value.removesuffix("\n").removesuffix("\r")
    if len(value) < MIN_SECRET_LENGTH:
        raise TrustError(
            f"{where}: {reference} holds a secret shorter than {MIN_SECRET_LENGTH} characters"
        )
    remember(value)
    return value


def remember(secret: str) -> None:
    """Have :func:`redact` blank ``secret`` out: the whole string, never a part of it (a
    caller that sends a part alone remembers that part too), and only when it is at least
    ``MIN_SECRET_LENGTH`` characters long: a shorter one would blank ordinary words."""
    if len(secret) >= MIN_SECRET_LENGTH:
        _known_secrets.add(secret)


def forget(secret: str) -> None:
    """Stop blanking ``secret`` (a token that has been replaced)."""
    _known_secrets.discard(secret)


def redact(text: str) -> str:
    """``text`` with every secret resolved in this process replaced by ``[secret]``."""
    for secret in sorted(_known_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


def optional_secret(settings: Mapping[str, Any], key: str, where: str) -> str | None:
    value = settings.get(key)
    return None if value in (None, "") else resolve(value, f"{where} {key}")


def _file(settings: Mapping[str, Any], key: str, where: str) -> str | None:
    value = settings.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not Path(value).is_file():
        raise TrustError(f"{where} {key}: file {value} does not exist")
    return value


# --- TLS ---------------------------------------------------------------------------------


def client_ssl_context(
    settings: Mapping[str, Any], where: str, *, system_cas: bool = False
) -> ssl.SSLContext | None:
    """The TLS context for an agency: its ``ca_file`` (only it, unless ``system_cas``), and
    ``client_cert``/``client_key`` for mutual TLS. None when no TLS key is set."""
    ca_file = _file(settings, "ca_file", where)
    cert = _file(settings, "client_cert", where)
    key = _file(settings, "client_key", where)
    if key and not cert:
        raise TrustError(f"{where} client_key needs client_cert")
    if not (ca_file or cert):
        return None
    context = ssl.create_default_context(cafile=ca_file)
    if ca_file and system_cas:
        context.load_default_certs()
    if cert:
        password = optional_secret(settings, "client_key_password", where)
        try:
            context.load_cert_chain(cert, key, password=password)
        except (ssl.SSLError, OSError) as exc:
            # The reason text (e.g. "KEY_VALUES_MISMATCH") never holds the password.
            reason = getattr(exc, "reason", None) or type(exc).__name__
            raise TrustError(
                f"{where} client_cert/client_key cannot be used ({reason}): a key that does not "
                "match the certificate, or a wrong or missing client_key_password"
            ) from None
    return context


# --- HTTP: static header and OAuth2 client credentials -----------------------------------


def static_header(value: str) -> tuple[str, str]:
    """``"X-Api-Key: xyz"`` is that header; anything else (``"Bearer xyz"``) is the value of
    ``Authorization``."""
    match = _HEADER_FORM.match(value)
    if match:
        return match.group(1), match.group(2).strip()
    return "Authorization", value


class OAuth2ClientCredentials(httpx.Auth):
    """Bearer tokens from an OAuth2 token endpoint (client credentials grant, client
    authentication by HTTP Basic). A token is cached until ``REFRESH_EARLY_S`` before it
    expires; concurrent requests share one fetch; a 401 from the agency makes one refresh
    and one retry."""

    def __init__(
        self,
        agency: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        *,
        verify: ssl.SSLContext | bool = True,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.agency = agency
        self.token_url = token_url
        self.scope = scope
        pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
        credentials = base64.b64encode(pair.encode()).decode()
        self._basic = "Basic " + credentials
        remember(credentials)
        self._verify, self._timeout, self._transport = verify, timeout, transport
        # The endpoint's answer: capped, and whole within the timeout (adapters.bounded).
        self._bounds = AnswerBounds(
            f"{agency}: its token endpoint", MAX_TOKEN_ANSWER_BYTES, timeout, setting=None
        )
        self._client: httpx.AsyncClient | None = None  # made on the first fetch
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def token(self, stale: str | None = None) -> str:
        """A valid token; a new one when the cached one is ``stale`` (refused) or expiring."""
        async with self._lock:  # single flight: one fetch, every waiter gets its token
            fresh = time.monotonic() < self._expires - REFRESH_EARLY_S
            if self._token is not None and self._token != stale and fresh:
                return self._token
            old, self._token = self._token, None
            token, lifetime = await self._fetch()
            if old is not None and old != token:
                forget(old)  # only live tokens need blanking: the set stays small
            self._token, self._expires = token, time.monotonic() + lifetime
            return token

    async def _fetch(self) -> tuple[str, float]:
        self.fetches += 1
        form = {"grant_type": "client_credentials"} | ({"scope": self.scope} if self.scope else {})
        if self._client is None:
            self._client = httpx.AsyncClient(
                verify=self._verify,
                timeout=self._timeout,
                transport=self._transport,
                event_hooks=self._bounds.event_hooks(),
            )
        try:
            response = await self._bounds.run(
                self._client.post(self.token_url, data=form, headers={"Authorization": self._basic})
            )
        except httpx.HTTPError as exc:
            raise AgencyFailure(
                f"{self.agency}: its token endpoint failed ({type(exc).__name__})"
            ) from None
        if response.status_code != 200:
            raise AgencyFailure(
                f"{self.agency}: its token endpoint answered HTTP {response.status_code}"
            )
        try:
            body = response.json()
            token = body["access_token"]
            lifetime = float(body.get("expires_in", DEFAULT_TOKEN_LIFETIME_S))
            if not isinstance(token, str) or not token or not math.isfinite(lifetime):
                raise TypeError
            # A lifetime inside the refresh margin would mean a token per call; an endless one
            # would never be refreshed until the agency refuses it.
            lifetime = min(max(lifetime, MIN_TOKEN_LIFETIME_S), MAX_TOKEN_LIFETIME_S)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise AgencyFailure(
                f"{self.agency}: its token endpoint answered something that is not a token"
            ) from None
        # Never quote the token: it is refused, so it is not blanked out of this text.
        if not _TOKEN_CHARACTERS.fullmatch(token):
            raise AgencyFailure(
                f"{self.agency}: its token endpoint answered an access_token with spaces, "
                "control or non-ASCII characters; refused"
            )
        if len(token) < MIN_TOKEN_LENGTH:
            raise AgencyFailure(
                f"{self.agency}: its token endpoint answered an access_token shorter than "
                f"{MIN_TOKEN_LENGTH} characters; refused"
            )
        remember(token)  # whole: the header sends "Bearer <token>", which contains it
        return token, lifetime

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            await response.aread()
            token = await self.token(stale=token)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request


def http_client_options(
    agency: str,
    settings: Mapping[str, Any],
    *,
    timeout: float = 5.0,
    token_transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``httpx.AsyncClient`` carrying the agency's trust settings:
    ``verify`` (an SSL context), ``headers`` (a static header) and ``auth`` (OAuth2). Any
    httpx-based adapter can use it; close ``options["auth"]`` (``aclose``) with the client."""
    where = f"[agencies.{agency}]"
    check_http(settings, where)
    options: dict[str, Any] = {}
    context = client_ssl_context(settings, where)
    if context is not None:
        options["verify"] = context
    header = optional_secret(settings, "auth_header", where)
    if header is not None:
        name, value = static_header(header)
        remember(value)
        remember(value.split(None, 1)[-1])  # "Bearer xyz": its credential, xyz, alone too
        options["headers"] = {name: value}
    if settings.get("oauth2_token_url"):
        options["auth"] = OAuth2ClientCredentials(
            agency,
            str(settings["oauth2_token_url"]),
            str(settings["oauth2_client_id"]),
            resolve(settings["oauth2_client_secret"], f"{where} oauth2_client_secret"),
            str(settings["oauth2_scope"]) if settings.get("oauth2_scope") else None,
            verify=client_ssl_context(settings, where, system_cas=True) or True,
            timeout=timeout,
            transport=token_transport,
        )
    return options


def _https(url: Any) -> bool:
    return isinstance(url, str) and urlsplit(url).scheme == "https"


def check_no_userinfo(url: Any, where: str) -> None:
    """Refuse a URL carrying credentials (``https://user:password@host/``): they would be
    sent in clear in logs and messages that show the URL. The message never shows it."""
    try:
        netloc = urlsplit(url).netloc if isinstance(url, str) else ""
    except ValueError:
        return  # not a URL at all: the request fails, naming no credential
    if "@" in netloc:
        raise TrustError(
            f"{where} must not carry credentials (user:password@host): give them by "
            "reference (auth_header or oauth2_*)"
        )


def check_http(settings: Mapping[str, Any], where: str) -> None:
    """Refuse trust settings that cannot work, naming the key (no secret is read here)."""
    for key in ("url", "oauth2_token_url"):
        check_no_userinfo(settings.get(key), f"{where} {key}")
    tls = [key for key in TLS_KEYS if settings.get(key)]
    if tls and not _https(settings.get("url")):
        raise TrustError(f"{where} {tls[0]} needs an https url")
    credential = [key for key in ("auth_header", *OAUTH2_KEYS) if settings.get(key)]
    url = settings.get("url")
    if credential and not _https(url) and not _loopback(url):
        raise TrustError(
            f"{where} {credential[0]} sends a credential: the agency url must be https "
            "(or on loopback)"
        )
    given = [key for key in OAUTH2_KEYS if settings.get(key)]
    if given:
        missing = [key for key in OAUTH2_KEYS[:3] if not settings.get(key)]
        if missing:
            raise TrustError(f"{where} {given[0]} needs {', '.join(missing)}")
        if not _https(settings["oauth2_token_url"]) and not _loopback(settings["oauth2_token_url"]):
            raise TrustError(f"{where} oauth2_token_url must be https (or on loopback)")
        if settings.get("auth_header"):
            raise TrustError(f"{where}: give oauth2_* or auth_header, not both")
    for key in SECRET_KEYS:
        value = settings.get(key)
        if value not in (None, "") and not is_reference(value):
            raise TrustError(
                f'{where} {key} must be a reference, "env:NAME" or "file:PATH" '
                "(secrets are never written in the config)"
            )


def _loopback(url: Any) -> bool:
    return isinstance(url, str) and urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")


def check_agency(kind: str, agency: str, settings: Mapping[str, Any]) -> None:
    """Everything ``gateway check-config`` and start-up verify about an agency's trust
    settings: keys that go together, https where TLS is asked for, files that exist,
    references that resolve, keys that match their certificates. Raises TrustError. Other
    kinds (plugins) check their own settings; they may call the helpers here."""
    trusting = any(settings.get(key) for key in (*TLS_KEYS, *OAUTH2_KEYS, "auth_header"))
    if kind == "sql":
        sql_connect_options(agency, settings)
    elif kind in ("http", "graphql") and trusting:
        http_client_options(agency, settings)  # built to prove it can be; nothing is sent


# --- SQL ---------------------------------------------------------------------------------


def sql_connect_options(agency: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``asyncpg.create_pool``: ``dsn`` (resolved when a reference),
    ``password`` (when given by reference) and ``ssl`` (from ``sslmode``, ``ca_file``,
    ``client_cert``, ``client_key``). Without TLS keys, the DSN's own ``sslmode`` applies."""
    where = f"[agencies.{agency}]"
    for key in ("password", "client_key_password"):
        value = settings.get(key)
        if value not in (None, "") and not is_reference(value):
            raise TrustError(f'{where} {key} must be a reference, "env:NAME" or "file:PATH"')
    dsn = settings.get("dsn", "")
    if is_reference(dsn):
        dsn = resolve(dsn, f"{where} dsn")
    else:
        password = urlsplit(str(dsn)).password if "://" in str(dsn) else None
        if password:
            remember(password)
    options: dict[str, Any] = {"dsn": dsn}
    password = optional_secret(settings, "password", where)
    if password is not None:
        options["password"] = password
    mode = settings.get("sslmode")
    if mode is not None and mode not in SSLMODES:
        raise TrustError(f"{where} sslmode must be one of {', '.join(SSLMODES)}")
    tls = [key for key in TLS_KEYS if settings.get(key)]
    if mode is None:
        if not tls:
            return options
        mode = "verify-full"
    if mode in ("disable", "allow", "prefer"):
        if tls:
            raise TrustError(f"{where} {tls[0]} needs sslmode require, verify-ca or verify-full")
        options["ssl"] = mode
        return options
    context = client_ssl_context(settings, where)
    if context is None:
        context = ssl.create_default_context()
    if mode == "require":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif mode == "verify-ca":
        context.check_hostname = False
    options["ssl"] = context
    return options
