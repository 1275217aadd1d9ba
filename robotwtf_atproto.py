"""ATProto identity resolution, the hardened outbound HTTP fetcher, and the ATProto OAuth client.

A pure library: no routes, no SQL, no module-level configuration. robotwtf.py builds the
objects below from its Config, stores the pending-login dicts server-side, and calls
`start_login` / `finish_login` from its login routes. Specs: https://atproto.com/specs/oauth,
/specs/handle, /specs/did; RFC 9126 (PAR), RFC 7636 (PKCE), RFC 9449 (DPoP), RFC 7523 (client
assertions), RFC 9207 (`iss`), RFC 9728 / RFC 8414 (metadata), RFC 7009 (revocation).

Public API (plain data in and out; every failure is an `AtprotoError` whose `str()` is a
sentence fit for the login page, never an upstream body):

    Fetcher(insecure_dev_network=False, *, connect_timeout=3, read_timeout=5, deadline=10,
            max_bytes=256 KiB, user_agent=USER_AGENT)
        .check_url(url) -> url                        UnsafeURL
        .get_json(url) -> dict                        UnsafeURL, FetchError (UnexpectedResponse for a
                                                      non-200 or non-JSON answer, Unreachable when
                                                      nothing answers (UpstreamTimeout: too slowly),
                                                      UnknownHost, UpstreamTooLarge; redirects are
                                                      FetchError)
        .get_text(url) -> str                         UnsafeURL, FetchError
        .post_form(url, data, headers=None) -> Reply(status, headers, json_or_None)
    dns_resolver(setting, timeout=3.0) -> dns.resolver.Resolver     ValueError (bad setting)
    parse_dns_resolver_setting(text) -> (ip, port) | None            ValueError
    normalize_handle(text) -> str | None, is_valid_handle(h), is_valid_did(d)
    resolve_handle(handle, fetcher, resolver) -> did                 ResolutionError, Unreachable
    resolve_did(did, fetcher, plc_url) -> DID document dict          ResolutionError, Unreachable
    handle_from_doc(doc) -> str | None, pds_url_from_doc(doc, fetcher) -> str | None
    resolve_identity(text, fetcher, resolver, plc_url) -> Identity   BadIdentifier, ResolutionError,
                                                                     Unreachable
    classify_login_input(text, insecure_dev_network=False) -> LoginInput(kind, value)
                                                kind: "handle" | "did" | "server"; BadIdentifier
    fetch_authorization_server_for(pds_url, fetcher) -> (issuer, metadata)   MetadataError, FetchError
    validate_authorization_server(meta, fetched_origin, insecure_dev_network) -> meta   MetadataError
    make_client(public_url, signing_key=None, kid=None) -> OAuthClient          ValueError
    client_metadata(public_url) -> dict  (the document served at CLIENT_METADATA_PATH)
    start_login(identifier_text, client, fetcher, resolver, plc_url) -> (authorize_url, pending)
    finish_login(pending, query_params, client, fetcher, resolver, plc_url) -> Identity   LoginError, ...

Client modes: an https public URL makes a confidential client (`private_key_jwt`, ES256). Its
metadata names the signing key by `jwks_uri` = <public URL>/.well-known/atproto-client-jwks.json
(not inline `jwks`), so the key can rotate without republishing the metadata. A public URL on
http://127.0.0.1 or http://localhost makes the spec's localhost development client (public, no
assertion), whose redirect URI always uses 127.0.0.1.

The caller must store `pending` server-side keyed by `pending["state"]` (it holds a private DPoP
key and the PKCE verifier), hand it back exactly once for the matching callback, and delete it
then; `finish_login` refuses a pending login older than LOGIN_MAX_AGE on its own as well. We keep
no PDS tokens: `finish_login` revokes them at the authorization server before it returns.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
import socket
import threading
import time
from typing import Any, Mapping, NamedTuple
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import dns.exception
import dns.resolver
import regex
import requests
import requests_hardened
from joserfc import jwt
from joserfc.jwk import ECKey
from requests_hardened.ip_filter import InvalidIPAddress
from requests_hardened.ip_filter_adapter import IPFilterAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

log = logging.getLogger("robotwtf.atproto")

USER_AGENT = "robotwtf (ATProto login; +https://atproto.com/specs/oauth)"
DEFAULT_PLC_URL = "https://plc.directory"
SCOPE = "atproto"
CLIENT_METADATA_PATH = "/auth/client-metadata.json"
CLIENT_JWKS_PATH = "/.well-known/atproto-client-jwks.json"
CALLBACK_PATH = "/auth/callback"
LOGIN_MAX_AGE = 600  # seconds; RFC 6749 §4.1.2 caps codes at 10 minutes, we cap the whole flow
PENDING_VERSION = 1
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

# Handle spec: "Disallowed TLDs" (.test is reserved for development; allowed only in dev mode).
_BLOCKED_TLDS = frozenset({"alt", "arpa", "example", "internal", "invalid", "local", "localhost", "onion"})
_DEV_ONLY_TLDS = frozenset({"test"})

# Handle spec "Handle Identifier Syntax": labels of [a-z0-9-], no hyphen at either end, at
# least two labels, and a top-level label that does not start with a digit.
_HANDLE_RE = regex.compile(
    r"([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
)
_DID_RE = regex.compile(r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]")
_DID_PLC_RE = regex.compile(r"did:plc:[a-z2-7]{24}")
_ERROR_CODE_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_NONCE_RE = re.compile(r"[\x21-\x7e]{1,1024}")
_REQUEST_URI_RE = re.compile(r"[\x21-\x7e]{1,2048}")
_WWW_AUTH_NONCE_RE = re.compile(r'error\s*=\s*"?use_dpop_nonce"?', re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# Errors


class AtprotoError(Exception):
    """Base class. `str(error)` is a complete, human sentence that is safe to show."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BadIdentifier(AtprotoError):
    """The text typed into the login box is not a handle, DID or server address."""


class UnsafeURL(AtprotoError):
    """A URL we were asked to contact (or send a browser to) breaks the SSRF rules."""


class FetchError(AtprotoError):
    """An upstream server could not be reached or answered something unusable."""


class UnexpectedResponse(FetchError):
    """The server answered, but not with a 200 and the kind of body asked for."""


class UnknownHost(FetchError):
    """The server's name is not in DNS: nothing to reach, rather than something unreachable."""


class Unreachable(FetchError):
    """No answer from `host`: refused, unroutable, or no DNS at all. The network's or that
    server's trouble (try again later), not a mistake in what the person typed."""

    def __init__(self, message: str, host: str):
        super().__init__(message)
        self.host = host


class UpstreamTimeout(Unreachable):
    """Connect, read or total deadline exceeded."""


class UpstreamTooLarge(FetchError):
    """The response body was larger than the fetcher's cap."""


class ResolutionError(AtprotoError):
    """A handle or DID could not be resolved or verified."""


class MetadataError(AtprotoError):
    """An OAuth metadata document is missing a required value; `.field` names it."""

    def __init__(self, field: str, message: str | None = None):
        super().__init__(message or f"Your PDS's authorization server is misconfigured: {field}.")
        self.field = field


class LoginError(AtprotoError):
    """The OAuth flow failed or was refused."""


# ---------------------------------------------------------------------------------------------
# Syntax: handles, DIDs, URLs


def is_valid_handle(handle: str) -> bool:
    return isinstance(handle, str) and len(handle) <= 253 and _HANDLE_RE.fullmatch(handle) is not None


def is_valid_did(did: str) -> bool:
    # DID spec: at most 2 KB; the did:plc method is exactly 24 base32 characters.
    if not isinstance(did, str) or len(did) > 2048 or _DID_RE.fullmatch(did) is None:
        return False
    return not did.startswith("did:plc:") or _DID_PLC_RE.fullmatch(did) is not None


def normalize_handle(text: str) -> str | None:
    """`@Alice.Example.COM` -> `alice.example.com`; None when it is not a handle."""
    candidate = text
    if candidate.startswith("@"):
        candidate = candidate[1:]
    candidate = candidate.lower()
    return candidate if is_valid_handle(candidate) else None


def _tld_problem(host: str, insecure_dev_network: bool) -> str | None:
    tld = host.rsplit(".", 1)[-1]
    if tld in _BLOCKED_TLDS or (tld in _DEV_ONLY_TLDS and not insecure_dev_network):
        return f"the .{tld} domain is reserved and cannot be used"
    return None


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_dev_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str, insecure_dev_network: bool = False) -> str | None:
    """Why `url` may not be contacted (or shown to a browser), or None when it may.

    Normal mode: https, a DNS host name (no IP literal, no port, no userinfo), not a special-use
    TLD. Development mode also allows http or https to localhost / 127.0.0.0/8 / [::1] with any
    port; private ranges are still refused after resolution by the fetcher.
    """
    if not isinstance(url, str) or not url:
        return "it is empty"
    if len(url) > 2048:
        return "it is too long"
    if not url.isascii():
        return "it contains non-ASCII characters"
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url) or "\\" in url:
        return "it contains spaces, backslashes or control characters"
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not url.lower().startswith(parts.scheme + "://"):
        return "it must start with https://"
    if "@" in parts.netloc:
        return "it must not contain a user name or password"
    if "#" in url:
        return "it must not contain a fragment"
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        return "its port is not valid"
    if insecure_dev_network and _is_dev_loopback_host(host):
        return None
    if parts.scheme != "https":
        return "it must use https"
    if not host:
        return "it has no host name"
    if _is_ip_literal(host):
        return "it must use a host name, not an IP address"
    if port is not None or parts.netloc.lower() != host:
        return "it must not name a port"
    if not is_valid_handle(host):
        return "its host name is not valid"
    return _tld_problem(host, insecure_dev_network)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.lower(), "", "", ""))


def _shown(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."


# ---------------------------------------------------------------------------------------------
# The hardened fetcher


class Reply(NamedTuple):
    status: int
    headers: Mapping[str, str]
    json: Any  # parsed JSON body, or None when the body was empty or not JSON


class _Watchdog:
    """Enforces a total deadline: when it fires it shuts down every socket the request opened,
    which unblocks a read that a slow (trickling) server would otherwise keep alive forever."""

    def __init__(self, seconds: float):
        self.expires_at = time.monotonic() + seconds
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()

    def expired(self) -> bool:
        return self.fired or time.monotonic() >= self.expires_at

    def register(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.fired:
                _shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# The request runs synchronously in the calling thread, so the connection classes find the
# request's watchdog in a thread-local set by Fetcher._request.
_current = threading.local()


class _WatchedConnectionMixin:
    def _new_conn(self):  # urllib3 opens the TCP socket here, before any TLS handshake
        sock = super()._new_conn()
        watchdog = getattr(_current, "watchdog", None)
        if watchdog is not None:
            watchdog.register(sock)
        return sock


class _WatchedHTTPConnection(_WatchedConnectionMixin, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnectionMixin, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _GuardedAdapter(IPFilterAdapter):
    """requests-hardened's IP filter (checks the resolved address and connects to exactly that
    address, so a second DNS answer cannot rebind it) plus the deadline watchdog's sockets."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class Fetcher:
    """Every outbound HTTP request of the ATProto login goes through one of these.

    Layers: `url_problem` before any network activity; requests-hardened's IP filter after
    resolution (private, loopback, link-local, CG-NAT, ... refused; loopback allowed only in
    development mode); no redirects; connect and per-read timeouts; a total deadline enforced by
    a watchdog that shuts the socket down; a body cap counted while streaming. No proxies or
    .netrc from the environment. The deadline starts before the system resolver's getaddrinfo,
    which cannot be interrupted; that lookup is bounded by the system's resolver settings.
    """

    def __init__(
        self,
        insecure_dev_network: bool = False,
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 5.0,
        deadline: float = 10.0,
        max_bytes: int = 256 * 1024,
        user_agent: str = USER_AGENT,
    ):
        self.insecure_dev_network = bool(insecure_dev_network)
        self.timeouts = (connect_timeout, read_timeout)
        self.deadline = deadline
        self.max_bytes = max_bytes
        self._manager = requests_hardened.Manager(
            requests_hardened.Config(
                ip_filter_enable=True,
                ip_filter_allow_loopback_ips=self.insecure_dev_network,
                never_redirect=True,
                default_timeout=self.timeouts,
                user_agent_override=user_agent,
            )
        )

    def check_url(self, url: str) -> str:
        problem = url_problem(url, self.insecure_dev_network)
        if problem:
            raise UnsafeURL(f"Refusing to contact {_shown(str(url))}: {problem}.")
        return url

    def get_json(self, url: str) -> dict:
        reply = self._request("GET", url, headers={"Accept": "application/json"})
        host = urlsplit(url).hostname
        if reply.status != 200:
            raise UnexpectedResponse(f"{host} answered HTTP {reply.status} for {_shown(url)}.")
        if not isinstance(reply.json, dict):
            raise UnexpectedResponse(f"{host} did not return a JSON object for {_shown(url)}.")
        return reply.json

    def get_text(self, url: str) -> str:
        status, _, body = self._exchange("GET", url, headers={"Accept": "text/plain"})
        if status != 200:
            raise UnexpectedResponse(f"{urlsplit(url).hostname} answered HTTP {status} for {_shown(url)}.")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise UnexpectedResponse(f"{urlsplit(url).hostname} returned text that is not UTF-8.") from None

    def post_form(self, url: str, data: Mapping[str, str], headers: Mapping[str, str] | None = None) -> Reply:
        merged = {"Accept": "application/json", **(headers or {})}
        return self._request("POST", url, data=dict(data), headers=merged)

    def _request(self, method: str, url: str, **kwargs) -> Reply:
        status, headers, body = self._exchange(method, url, **kwargs)
        return Reply(status, headers, _parse_json(body))

    def _exchange(self, method: str, url: str, *, data=None, headers=None):
        self.check_url(url)
        host = urlsplit(url).hostname
        watchdog = _Watchdog(self.deadline)
        session = self._new_session()
        _current.watchdog = watchdog
        watchdog.start()
        try:
            response = session.request(
                method,
                url,
                data=data,
                headers={"Accept-Encoding": "identity", **(headers or {})},
                stream=True,
                allow_redirects=False,
                timeout=self.timeouts,
            )
            try:
                if 300 <= response.status_code < 400:
                    raise FetchError(f"{host} answered with a redirect, and redirects are not followed.")
                body = self._read_capped(response, watchdog, host)
                return response.status_code, response.headers, body
            finally:
                response.close()
        except InvalidIPAddress:
            raise UnsafeURL(
                f"Refusing to contact {host}: it resolves to a private, loopback or reserved address."
            ) from None
        except requests.Timeout:
            raise UpstreamTimeout(f"{host} took too long to answer.", host) from None
        except (requests.RequestException, OSError) as exc:
            if watchdog.expired():
                raise UpstreamTimeout(f"{host} took too long to answer.", host) from None
            if _name_not_found(exc):
                raise UnknownHost(f"{host} does not exist (its name is not in DNS).") from None
            raise Unreachable(f"Could not connect to {host}.", host) from None
        finally:
            watchdog.cancel()
            _current.watchdog = None
            session.close()

    def _new_session(self) -> requests.Session:
        session = self._manager.get_session()
        session.trust_env = False  # no proxies, .netrc credentials or CA overrides from the environment
        for prefix, is_https in (("http://", False), ("https://", True)):
            session.mount(prefix, _GuardedAdapter(is_https_proto=is_https, allow_loopback=self.insecure_dev_network))
        return session

    def _read_capped(self, response: requests.Response, watchdog: _Watchdog, host: str) -> bytes:
        too_large = UpstreamTooLarge(f"{host} sent a response larger than {self.max_bytes // 1024} KiB.")
        declared = response.headers.get("Content-Length", "")
        # ASCII digits only (str.isdigit() takes '²', which int() refuses), and no int() of a
        # number too long to be a real size (int() refuses over 4300 digits).
        if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > self.max_bytes):
            raise too_large
        chunks, total = [], 0
        for chunk in response.iter_content(8192):
            total += len(chunk)
            if total > self.max_bytes:
                raise too_large
            if watchdog.expired():
                raise UpstreamTimeout(f"{host} took too long to answer.", host)
            chunks.append(chunk)
        if watchdog.expired():
            raise UpstreamTimeout(f"{host} took too long to answer.", host)
        return b"".join(chunks)


def _name_not_found(error: BaseException | None) -> bool:
    """Whether a connection failed because its host name does not resolve (getaddrinfo's answer,
    somewhere in the exception's chain) rather than because nothing answered."""
    while error is not None:
        if isinstance(error, socket.gaierror):
            return error.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))
        error = error.__cause__ or error.__context__
    return False


def _parse_json(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# DNS


def parse_dns_resolver_setting(text: str | None) -> tuple[str, int] | None:
    """ROBOTWTF_DNS_RESOLVER: empty = system resolver; `IP`, `IP:port` or `[IPv6]:port`."""
    text = (text or "").strip()
    if not text:
        return None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"DNS resolver {text!r} is not IP, IP:port or [IPv6]:port")
        port_text = rest[1:] if rest else "53"
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, "53"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"DNS resolver {text!r} has an invalid port")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"DNS resolver {text!r} must be an IP address, optionally with :port") from None
    return host, int(port_text)


def dns_resolver(setting: str | None, timeout: float = 3.0) -> dns.resolver.Resolver:
    """A dnspython resolver for handle TXT lookups, bounded to `timeout` seconds per lookup."""
    address = parse_dns_resolver_setting(setting)
    if address is None:
        try:
            resolver = dns.resolver.Resolver(configure=True)
        except dns.resolver.NoResolverConfiguration:
            raise ValueError("The system has no DNS resolver configured; set ROBOTWTF_DNS_RESOLVER") from None
    else:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [address[0]]
        resolver.port = address[1]
    resolver.timeout = timeout
    resolver.lifetime = timeout
    return resolver


# ---------------------------------------------------------------------------------------------
# Identity


@dataclasses.dataclass(frozen=True)
class Identity:
    did: str
    handle: str | None  # None when the DID document's handle does not resolve back to the DID
    pds_url: str | None


class LoginInput(NamedTuple):
    kind: str  # "handle" | "did" | "server"
    value: str  # normalised handle, DID, or server origin


def _dns_txt_dids(handle: str, resolver: dns.resolver.Resolver) -> set[str]:
    try:
        answer = resolver.resolve(f"_atproto.{handle}.", "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers, dns.exception.Timeout):
        return set()
    except dns.exception.DNSException as exc:
        log.info("DNS lookup for _atproto.%s failed: %s", handle, type(exc).__name__)
        return set()
    values = set()
    for rdata in answer:
        # A TXT record may be split into several character-strings: they form one value.
        text = b"".join(rdata.strings).decode("ascii", errors="replace")
        if text.startswith("did="):
            values.add(text[len("did="):].strip())
    return values


def resolve_handle(handle: str, fetcher: Fetcher, resolver: dns.resolver.Resolver) -> str:
    """Handle -> DID by DNS TXT `_atproto.<handle>`, then HTTPS `/.well-known/atproto-did`."""
    normal = normalize_handle(handle)
    if normal is None:
        raise ResolutionError(f"{handle!r} is not a valid handle.")
    problem = _tld_problem(normal, fetcher.insecure_dev_network)
    if problem:
        raise ResolutionError(f"The handle {normal} cannot be used: {problem}.")
    dids = _dns_txt_dids(normal, resolver)
    if len(dids) > 1:
        raise ResolutionError(f"The handle {normal} has conflicting DNS records (several different DIDs).")
    if dids:
        did = dids.pop()
        if not is_valid_did(did):
            raise ResolutionError(f"The DNS record for {normal} does not contain a valid DID.")
        return did
    try:
        text = fetcher.get_text(f"https://{normal}/.well-known/atproto-did")
    except Unreachable:
        raise  # no answer is not "no such handle": the person should try again, not retype it
    except AtprotoError:
        raise ResolutionError(f"That handle does not resolve: {normal}.") from None
    did = text.strip()
    if not is_valid_did(did):
        raise ResolutionError(f"That handle does not resolve to a valid DID: {normal}.")
    return did


def _did_document_url(did: str, plc_url: str, insecure_dev_network: bool) -> str:
    if did.startswith("did:plc:"):
        return f"{plc_url.rstrip('/')}/{did}"
    if did.startswith("did:web:"):
        host = did[len("did:web:"):]
        # DID spec: only hostname-level did:web; a port (%3A) only for localhost in development.
        if insecure_dev_network and regex.fullmatch(r"localhost%3[aA][0-9]{1,5}", host):
            return f"http://localhost:{host[len('localhost%3a'):]}/.well-known/did.json"
        if not is_valid_handle(host) or _tld_problem(host.lower(), insecure_dev_network):
            raise ResolutionError(f"{did} is not a supported did:web (only host names, no paths or ports).")
        return f"https://{host.lower()}/.well-known/did.json"
    raise ResolutionError("Only did:plc and did:web accounts are supported.")


def resolve_did(did: str, fetcher: Fetcher, plc_url: str = DEFAULT_PLC_URL) -> dict:
    """DID -> DID document (did:plc via the PLC directory, did:web via /.well-known/did.json)."""
    if not is_valid_did(did):
        raise ResolutionError(f"{did!r} is not a valid DID.")
    url = _did_document_url(did, plc_url, fetcher.insecure_dev_network)
    try:
        doc = fetcher.get_json(url)
    except (UnsafeURL, Unreachable):
        raise
    except AtprotoError as exc:
        raise ResolutionError(f"Could not fetch the DID document for {did}: {exc}") from None
    if doc.get("id") != did:
        raise ResolutionError(f"The DID document fetched for {did} is for a different DID.")
    return doc


def handle_from_doc(doc: dict) -> str | None:
    """The handle a DID document claims: its first valid `at://` entry in alsoKnownAs."""
    for aka in doc.get("alsoKnownAs") or []:
        if isinstance(aka, str) and aka.startswith("at://"):
            handle = normalize_handle(aka[len("at://"):])
            if handle:
                return handle
    return None


def pds_url_from_doc(doc: dict, fetcher: Fetcher) -> str | None:
    """The `#atproto_pds` service endpoint, as a safe origin, or None."""
    did = doc.get("id", "")
    for service in doc.get("service") or []:
        if not isinstance(service, dict) or service.get("id") not in ("#atproto_pds", f"{did}#atproto_pds"):
            continue
        endpoint = service.get("serviceEndpoint")
        if service.get("type") != "AtprotoPersonalDataServer" or not isinstance(endpoint, str):
            return None
        if url_problem(endpoint, fetcher.insecure_dev_network):
            return None
        return endpoint.rstrip("/")
    return None


def _verified_handle(doc: dict, did: str, fetcher: Fetcher, resolver) -> str | None:
    handle = handle_from_doc(doc)
    if handle is None:
        return None
    try:
        return handle if resolve_handle(handle, fetcher, resolver) == did else None
    except AtprotoError:
        return None


def resolve_identity(text: str, fetcher: Fetcher, resolver, plc_url: str = DEFAULT_PLC_URL) -> Identity:
    """A handle or DID -> verified Identity (handle checked in both directions)."""
    text = text.strip()
    if text.startswith("did:"):
        doc = resolve_did(text, fetcher, plc_url)
        return Identity(text, _verified_handle(doc, text, fetcher, resolver), pds_url_from_doc(doc, fetcher))
    handle = normalize_handle(text)
    if handle is None:
        raise BadIdentifier(f"{_shown(text)!r} is neither a handle nor a DID.")
    did = resolve_handle(handle, fetcher, resolver)
    doc = resolve_did(did, fetcher, plc_url)
    if handle_from_doc(doc) != handle:
        raise ResolutionError(
            f"The handle {handle} points to {did}, but that account does not claim the handle."
        )
    return Identity(did, handle, pds_url_from_doc(doc, fetcher))


def classify_login_input(text: str, insecure_dev_network: bool = False) -> LoginInput:
    """What the login box holds: a handle (any case, optional @), a DID, or a server URL."""
    value = (text or "").strip()
    if not value:
        raise BadIdentifier("Enter your handle (like alice.bsky.social), your DID, or your server's address.")
    if len(value) > 2048 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise BadIdentifier("That is not a handle, a DID or a server address.")
    if value.startswith("did:"):
        if not is_valid_did(value):
            raise BadIdentifier("That DID is not valid.")
        return LoginInput("did", value)
    if "://" in value:
        problem = url_problem(value, insecure_dev_network)
        if problem:
            raise BadIdentifier(f"That server address cannot be used: {problem}.")
        parts = urlsplit(value)
        if parts.path not in ("", "/") or parts.query:
            raise BadIdentifier("Enter just the server's address, like https://bsky.social.")
        return LoginInput("server", _origin(value))
    handle = normalize_handle(value)
    if handle is None:
        bare = regex.fullmatch(r"@?[A-Za-z0-9-]+", value)
        hint = f" Did you mean {value.lstrip('@').lower()}.bsky.social?" if bare else ""
        raise BadIdentifier(f"That is not a valid handle.{hint}")
    problem = _tld_problem(handle, insecure_dev_network)
    if problem:
        raise BadIdentifier(f"The handle {handle} cannot be used: {problem}.")
    return LoginInput("handle", handle)


# ---------------------------------------------------------------------------------------------
# Authorization server discovery and validation (ATProto OAuth "Authorization Servers")


def _require(condition: bool, field: str) -> None:
    if not condition:
        raise MetadataError(field)


def _has(meta: dict, field: str, *values: str) -> bool:
    listed = meta.get(field)
    return isinstance(listed, list) and all(v in listed for v in values)


def _endpoint_ok(meta: dict, field: str, insecure_dev_network: bool) -> bool:
    value = meta.get(field)
    return isinstance(value, str) and url_problem(value, insecure_dev_network) is None


def validate_authorization_server(meta: dict, fetched_origin: str, insecure_dev_network: bool = False) -> dict:
    """Check every ATProto requirement on AS metadata; MetadataError(field) on the first miss."""
    _require(isinstance(meta, dict), "metadata document")
    # RFC 8414 §3.3 and ATProto: the issuer is exactly the origin the metadata was fetched from.
    issuer_ok = meta.get("issuer") == fetched_origin and url_problem(fetched_origin, insecure_dev_network) is None
    _require(issuer_ok, "issuer")
    for field in ("authorization_endpoint", "token_endpoint", "pushed_authorization_request_endpoint"):
        _require(_endpoint_ok(meta, field, insecure_dev_network), field)
    _require(meta.get("require_pushed_authorization_requests") is True, "require_pushed_authorization_requests")
    _require(_has(meta, "response_types_supported", "code"), "response_types_supported")
    _require(_has(meta, "grant_types_supported", "authorization_code", "refresh_token"), "grant_types_supported")
    _require(_has(meta, "code_challenge_methods_supported", "S256"), "code_challenge_methods_supported")
    _require(
        _has(meta, "token_endpoint_auth_methods_supported", "none", "private_key_jwt"),
        "token_endpoint_auth_methods_supported",
    )
    algs = meta.get("token_endpoint_auth_signing_alg_values_supported")
    _require(_has(meta, "token_endpoint_auth_signing_alg_values_supported", "ES256") and "none" not in algs,
             "token_endpoint_auth_signing_alg_values_supported")
    _require(_has(meta, "scopes_supported", SCOPE), "scopes_supported")
    _require(meta.get("authorization_response_iss_parameter_supported") is True,
             "authorization_response_iss_parameter_supported")
    _require(_has(meta, "dpop_signing_alg_values_supported", "ES256"), "dpop_signing_alg_values_supported")
    _require(meta.get("client_id_metadata_document_supported") is True, "client_id_metadata_document_supported")
    _require(meta.get("require_request_uri_registration", True) is True, "require_request_uri_registration")
    if "revocation_endpoint" in meta:
        _require(_endpoint_ok(meta, "revocation_endpoint", insecure_dev_network), "revocation_endpoint")
    return meta


def _authorization_server_origin(url: str, fetcher: Fetcher) -> str:
    field = "authorization_servers"
    if not isinstance(url, str) or url_problem(url, fetcher.insecure_dev_network):
        raise MetadataError(field, "Your PDS names an authorization server that is not a safe https address.")
    parts = urlsplit(url)
    if parts.path not in ("", "/") or parts.query:
        raise MetadataError(field, "Your PDS names an authorization server that is not a plain origin.")
    return _origin(url)


def fetch_authorization_server(issuer: str, fetcher: Fetcher) -> dict:
    try:
        meta = fetcher.get_json(f"{issuer}/.well-known/oauth-authorization-server")
    except UnexpectedResponse:
        raise MetadataError(
            "oauth-authorization-server", "Your PDS's authorization server does not publish valid OAuth metadata."
        ) from None
    return validate_authorization_server(meta, issuer, fetcher.insecure_dev_network)


def fetch_authorization_server_for(
    server_url: str, fetcher: Fetcher, *, entryway_fallback: bool = False
) -> tuple[str, dict]:
    """PDS -> RFC 9728 protected-resource metadata -> its authorization server -> validated metadata.

    With `entryway_fallback` (a server URL typed by the user), a server without protected-resource
    metadata is tried as an authorization server itself.
    """
    origin = _origin(fetcher.check_url(server_url))
    try:
        resource = fetcher.get_json(f"{origin}/.well-known/oauth-protected-resource")
    except UnexpectedResponse:
        if not entryway_fallback:
            raise MetadataError("oauth-protected-resource", "Your PDS does not publish OAuth metadata.") from None
        return origin, fetch_authorization_server(origin, fetcher)
    declared = resource.get("resource")
    # RFC 9728 §3.3: the metadata must be about the resource it was fetched for.
    if declared is not None and (not isinstance(declared, str) or declared.rstrip("/") != origin):
        raise MetadataError("resource", "Your PDS's OAuth metadata describes a different server.")
    servers = resource.get("authorization_servers")
    if not isinstance(servers, list) or not servers:
        raise MetadataError("authorization_servers", "Your PDS's OAuth metadata names no authorization server.")
    issuer = _authorization_server_origin(servers[0], fetcher)
    return issuer, fetch_authorization_server(issuer, fetcher)


# ---------------------------------------------------------------------------------------------
# The client


@dataclasses.dataclass(frozen=True)
class OAuthClient:
    client_id: str
    redirect_uri: str
    signing_jwk: dict | None = dataclasses.field(default=None, repr=False)  # private ES256 JWK with kid

    @property
    def confidential(self) -> bool:
        return self.signing_jwk is not None


def _is_localhost_public_url(public_url: str) -> bool:
    parts = urlsplit(public_url)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")


def make_client(public_url: str, signing_key: Any = None, kid: str | None = None) -> OAuthClient:
    """The OAuth client robotwtf acts as, from its public URL (and ES256 key when https).

    `signing_key`: a joserfc ECKey or a private JWK dict (P-256); `kid` defaults to the JWK's.
    """
    public_url = public_url.rstrip("/")
    if _is_localhost_public_url(public_url):
        # ATProto OAuth "Localhost Client Development": the redirect must use 127.0.0.1.
        port = urlsplit(public_url).port
        redirect = f"http://127.0.0.1{f':{port}' if port else ''}{urlsplit(public_url).path}{CALLBACK_PATH}"
        client_id = f"http://localhost?redirect_uri={quote(redirect, safe='')}&scope={SCOPE}"
        return OAuthClient(client_id, redirect)
    if urlsplit(public_url).scheme != "https":
        raise ValueError("The public URL must be https://, or http://127.0.0.1 / http://localhost for development")
    if signing_key is None:
        raise ValueError("A confidential client needs its ES256 signing key")
    jwk = dict(signing_key.as_dict(private=True)) if hasattr(signing_key, "as_dict") else dict(signing_key)
    jwk["kid"] = kid or jwk.get("kid")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256" or "d" not in jwk or not jwk["kid"]:
        raise ValueError("The client signing key must be a private EC P-256 key with a kid")
    return OAuthClient(f"{public_url}{CLIENT_METADATA_PATH}", f"{public_url}{CALLBACK_PATH}", jwk)


def client_metadata(public_url: str) -> dict:
    """The confidential client's metadata document, served at <public URL>/auth/client-metadata.json."""
    public_url = public_url.rstrip("/")
    return {
        "client_id": f"{public_url}{CLIENT_METADATA_PATH}",
        "client_name": "robotwtf",
        "client_uri": public_url,
        "application_type": "web",
        "dpop_bound_access_tokens": True,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "redirect_uris": [f"{public_url}{CALLBACK_PATH}"],
        "scope": SCOPE,
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "ES256",
        "jwks_uri": f"{public_url}{CLIENT_JWKS_PATH}",
    }


# ---------------------------------------------------------------------------------------------
# PKCE, DPoP and client assertions


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)  # 64 characters, RFC 7636 §4.1 allows 43-128
    return verifier, _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def _dpop_proof(private_jwk: dict, method: str, url: str, nonce: str | None) -> str:
    """RFC 9449 §4.2: fresh jti for every request; htu is the URL without query and fragment."""
    key = ECKey.import_key(private_jwk)
    parts = urlsplit(url)
    claims = {
        "jti": secrets.token_urlsafe(24),
        "htm": method,
        "htu": urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")),
        "iat": int(time.time()),
    }
    if nonce:
        claims["nonce"] = nonce
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    return jwt.encode(header, claims, key, algorithms=["ES256"])


def _client_auth(client: OAuthClient, issuer: str) -> dict:
    """Form fields authenticating the client; a new assertion (new jti) on every call (RFC 7523 §3)."""
    if not client.confidential:
        return {"client_id": client.client_id}
    now = int(time.time())
    claims = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": issuer,
        "jti": secrets.token_urlsafe(24),
        "iat": now,
        "exp": now + 60,
    }
    header = {"alg": "ES256", "typ": "JWT", "kid": client.signing_jwk["kid"]}
    assertion = jwt.encode(header, claims, ECKey.import_key(client.signing_jwk), algorithms=["ES256"])
    return {"client_id": client.client_id, "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}


def _wants_nonce(reply: Reply) -> bool:
    if reply.status not in (400, 401):
        return False
    if isinstance(reply.json, dict) and reply.json.get("error") == "use_dpop_nonce":
        return True
    return bool(_WWW_AUTH_NONCE_RE.search(reply.headers.get("WWW-Authenticate", "")))


def _post_to_authorization_server(
    fetcher: Fetcher, url: str, form: dict, client: OAuthClient, issuer: str, dpop_jwk: dict, nonce: str | None
) -> tuple[Reply, str | None]:
    """POST with DPoP and client authentication; one retry on `use_dpop_nonce` (RFC 9449 §8)
    with a new proof and a new client assertion. Returns the reply and the latest nonce."""
    def send(nonce: str | None) -> tuple[Reply, str | None, bool]:
        headers = {"DPoP": _dpop_proof(dpop_jwk, "POST", url, nonce)}
        reply = fetcher.post_form(url, {**form, **_client_auth(client, issuer)}, headers)
        offered = reply.headers.get("DPoP-Nonce")
        fresh = bool(offered and _NONCE_RE.fullmatch(offered) and offered != nonce)
        return reply, (offered if fresh else nonce), fresh

    reply, nonce, fresh = send(nonce)
    if fresh and _wants_nonce(reply):
        reply, nonce, _ = send(nonce)
    return reply, nonce


def _error_code(reply: Reply) -> str:
    code = reply.json.get("error") if isinstance(reply.json, dict) else None
    return code if isinstance(code, str) and _ERROR_CODE_RE.fullmatch(code) else f"HTTP {reply.status}"


# ---------------------------------------------------------------------------------------------
# The login flow


def _identity_for_input(entry: LoginInput, fetcher: Fetcher, resolver, plc_url: str) -> Identity | None:
    if entry.kind == "server":
        return None
    identity = resolve_identity(entry.value, fetcher, resolver, plc_url)
    if identity.pds_url is None:
        raise ResolutionError(f"The account {entry.value} does not name a valid PDS in its DID document.")
    return identity


def start_login(
    identifier_text: str, client: OAuthClient, fetcher: Fetcher, resolver, plc_url: str = DEFAULT_PLC_URL
) -> tuple[str, dict]:
    """Resolve the account, discover and validate its authorization server, push the
    authorization request (PAR + PKCE S256 + DPoP), and return the URL to send the browser to
    plus the pending-login dict to store server-side under pending["state"]."""
    entry = classify_login_input(identifier_text, fetcher.insecure_dev_network)
    identity = _identity_for_input(entry, fetcher, resolver, plc_url)
    server_url = identity.pds_url if identity else entry.value
    issuer, meta = fetch_authorization_server_for(server_url, fetcher, entryway_fallback=identity is None)

    state = secrets.token_urlsafe(24)
    verifier, challenge = _pkce_pair()
    dpop_jwk = ECKey.generate_key("P-256", private=True).as_dict(private=True)
    form = {
        "response_type": "code",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": state,
        "redirect_uri": client.redirect_uri,
        "scope": SCOPE,
    }
    if identity:
        form["login_hint"] = entry.value
    par_url = meta["pushed_authorization_request_endpoint"]
    reply, nonce = _post_to_authorization_server(fetcher, par_url, form, client, issuer, dpop_jwk, None)
    if reply.status not in (200, 201):
        log.warning("PAR at %s refused: %s", issuer, _error_code(reply))
        raise LoginError(f"Your account's server refused to start the sign-in ({_error_code(reply)}).")
    request_uri = reply.json.get("request_uri") if isinstance(reply.json, dict) else None
    if not isinstance(request_uri, str) or not _REQUEST_URI_RE.fullmatch(request_uri):
        raise LoginError("Your account's server answered the sign-in request without a request_uri.")
    endpoint = meta["authorization_endpoint"]
    authorize_url = endpoint + ("&" if "?" in endpoint else "?") + urlencode(
        {"client_id": client.client_id, "request_uri": request_uri}
    )
    pending = {
        "version": PENDING_VERSION,
        "state": state,
        "created_at": int(time.time()),
        "input_kind": entry.kind,
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "issuer": issuer,
        "token_endpoint": meta["token_endpoint"],
        "revocation_endpoint": meta.get("revocation_endpoint"),
        "expected_did": identity.did if identity else None,
        "handle": identity.handle if identity else None,
        "pds_url": identity.pds_url if identity else None,
        "pkce_verifier": verifier,
        "dpop_private_jwk": dpop_jwk,
        "dpop_nonce": nonce,
    }
    return authorize_url, pending


def _single_param(query: Mapping[str, Any], name: str) -> str | None:
    value = query.get(name)
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise LoginError(f"The sign-in response repeats or empties the parameter {name!r}.")
        value = value[0]
    if value is not None and not isinstance(value, str):
        raise LoginError(f"The sign-in response has an invalid {name!r}.")
    return value


def _check_pending(pending: Mapping[str, Any], client: OAuthClient) -> None:
    if not isinstance(pending, Mapping) or pending.get("version") != PENDING_VERSION:
        raise LoginError("This sign-in is unknown or was already used; please start again.")
    created = pending.get("created_at")
    if not isinstance(created, int) or not created <= time.time() < created + LOGIN_MAX_AGE:
        raise LoginError("This sign-in took too long and has expired; please start again.")
    if pending.get("client_id") != client.client_id:
        raise LoginError("This server's address changed during the sign-in; please start again.")


def _callback_code(pending: Mapping[str, Any], query: Mapping[str, Any]) -> str:
    state = _single_param(query, "state")
    if state is None or not hmac.compare_digest(state.encode(), str(pending["state"]).encode()):
        raise LoginError("This sign-in response does not match the sign-in you started; please start again.")
    iss = _single_param(query, "iss")
    error = _single_param(query, "error")
    # RFC 9207 §2.4: an iss that is present must match, error response or not (mix-up defence).
    if iss is not None and iss != pending["issuer"]:
        raise LoginError("The sign-in response came from a different authorization server than expected.")
    if error is not None:
        if error == "access_denied":
            raise LoginError("The sign-in was cancelled at your account's server.")
        code = error if _ERROR_CODE_RE.fullmatch(error) else "unknown error"
        raise LoginError(f"Your account's server did not complete the sign-in ({code}).")
    if iss is None:
        raise LoginError("The sign-in response does not name its authorization server (iss).")
    code = _single_param(query, "code")
    if not code:
        raise LoginError("The sign-in response has no authorization code.")
    return code


def _check_tokens(reply: Reply) -> dict:
    if reply.status != 200 or not isinstance(reply.json, dict):
        log.warning("token request refused: %s", _error_code(reply))
        raise LoginError(f"Your account's server refused to complete the sign-in ({_error_code(reply)}).")
    tokens = reply.json
    if not isinstance(tokens.get("access_token"), str):
        raise LoginError("Your account's server did not issue an access token.")
    return tokens


def _verify_tokens(tokens: dict, pending: Mapping[str, Any], fetcher: Fetcher, resolver, plc_url: str) -> Identity:
    """ATProto OAuth "Identity Authentication": token type, scope, and above all `sub`."""
    if str(tokens.get("token_type", "")).lower() != "dpop":
        raise LoginError("Your account's server issued tokens that are not DPoP-bound.")
    scope = tokens.get("scope")
    if not isinstance(scope, str) or SCOPE not in scope.split():
        raise LoginError("Your account's server did not grant the atproto scope.")
    sub = tokens.get("sub")
    if not isinstance(sub, str) or not is_valid_did(sub):
        raise LoginError("Your account's server did not say which account signed in.")
    expected = pending.get("expected_did")
    if expected is not None:
        if sub != expected:
            raise LoginError(
                "A different account signed in than the one you asked for; "
                "sign out of your account's server and try again."
            )
        return Identity(sub, pending.get("handle"), pending.get("pds_url"))
    # The flow started from a server URL: the account must really be served by this issuer.
    try:
        doc = resolve_did(sub, fetcher, plc_url)
        pds_url = pds_url_from_doc(doc, fetcher)
        if pds_url is None:
            raise ResolutionError(f"The account {sub} does not name a valid PDS.")
        issuer, _ = fetch_authorization_server_for(pds_url, fetcher)
    except AtprotoError as exc:
        raise LoginError(f"Could not verify the account that signed in: {exc}") from None
    if issuer != pending["issuer"]:
        raise LoginError("The account that signed in is not served by that authorization server.")
    return Identity(sub, _verified_handle(doc, sub, fetcher, resolver), pds_url)


def _revoke_tokens(tokens: dict, pending: Mapping[str, Any], client: OAuthClient, fetcher: Fetcher, nonce) -> None:
    """Best effort (RFC 7009): we only needed the identity, so the PDS session ends now."""
    url = pending.get("revocation_endpoint")
    if not url:
        return
    for hint in ("refresh_token", "access_token"):
        token = tokens.get(hint)
        if not isinstance(token, str):
            continue
        form = {"token": token, "token_type_hint": hint}
        try:
            reply, nonce = _post_to_authorization_server(
                fetcher, url, form, client, pending["issuer"], pending["dpop_private_jwk"], nonce
            )
            if reply.status != 200:
                log.warning("revoking the %s at %s failed: %s", hint, pending["issuer"], _error_code(reply))
        except AtprotoError as exc:
            log.warning("revoking the %s at %s failed: %s", hint, pending["issuer"], exc)


def finish_login(
    pending: Mapping[str, Any],
    query_params: Mapping[str, Any],
    client: OAuthClient,
    fetcher: Fetcher,
    resolver,
    plc_url: str = DEFAULT_PLC_URL,
) -> Identity:
    """Complete a login at the callback: check state, iss and errors, exchange the code (PKCE +
    DPoP), verify the account, revoke the PDS tokens, and return who signed in.

    `query_params` maps names to a string or a list of strings (a list must hold exactly one)."""
    _check_pending(pending, client)
    code = _callback_code(pending, query_params)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": pending["pkce_verifier"],
        "redirect_uri": pending["redirect_uri"],
    }
    reply, nonce = _post_to_authorization_server(
        fetcher, pending["token_endpoint"], form, client, pending["issuer"],
        pending["dpop_private_jwk"], pending.get("dpop_nonce"),
    )
    tokens = _check_tokens(reply)
    try:
        return _verify_tokens(tokens, pending, fetcher, resolver, plc_url)
    finally:
        _revoke_tokens(tokens, pending, client, fetcher, nonce)
