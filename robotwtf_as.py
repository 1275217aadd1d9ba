"""robotwtf_as: the OAuth 2.1 authorization server that lets MCP clients (Claude.ai first) act on
one wiki for one person.

What it owns:

- discovery: RFC 8414 metadata (/.well-known/oauth-authorization-server), RFC 9728 metadata of
  every wiki's MCP resource (/.well-known/oauth-protected-resource/w/<slug>/mcp), the RS256 JWKS;
- clients: RFC 7591 registration (/oauth/register, open and rate-limited) and Client ID Metadata
  Documents (a client_id that is an https URL is fetched, validated and cached);
- /oauth/authorize (sign-in, then the consent page: client, redirect host, wiki, scopes),
  /oauth/token (authorization_code with PKCE S256 for every client; refresh_token with rotation
  and reuse detection) and RFC 7009 /oauth/revoke;
- RFC 9068 JWT access tokens whose audience is one wiki's MCP URL (robotwtf_mcp, the protected
  resource, validates them);
- the "Connected apps" page: grants and personal access tokens.

The protocol machinery is authlib's (AuthorizationServer, AuthorizationCodeGrant,
RefreshTokenGrant, CodeChallenge, ClientRegistrationEndpoint, RevocationEndpoint), adapted to
Bottle and with its unsafe defaults overridden (PKCE `plain` and optional PKCE, lax redirect-URI
validation). Single use of codes, refresh rotation, grant revocation and audience binding are
ours, done atomically by storage functions in robotwtf.py; this module holds no SQL.

robotwtf.py routes requests here and imports this module on the first one (it loads authlib and
robotwtf_atproto: ~0.25 s of imports with requests, dnspython and cryptography), so starting the
server and serving the wiki and MCP never load them.
"""

from __future__ import annotations

import collections
import dataclasses
import email.utils
import functools
import hmac
import json
import logging
import re
import threading
import types
import unicodedata
import urllib.parse
from typing import Any, NamedTuple

import bottle
from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import AuthorizationServer as AuthlibServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import (AuthorizationCodeMixin, ClientMixin, InvalidClientError, InvalidGrantError,
                                    InvalidRequestError, JsonRequest, OAuth2Payload, OAuth2Request, TokenMixin,
                                    grants, scope_to_list)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint as AuthlibRevocationEndpoint
from authlib.oauth2.rfc7591 import ClientMetadataClaims, ClientRegistrationEndpoint
from authlib.oauth2.rfc7591 import InvalidClientMetadataError, InvalidRedirectURIError
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge

import robotwtf_store as store
import robotwtf_web as web
import robotwtf_atproto as atproto
from robotwtf_mcp import ACCESS_TOKEN_TYP, resource_url

log = logging.getLogger("robotwtf.as")

CODE_SECONDS = 300  # RFC 6749 §4.1.2: "a maximum authorization code lifetime of 10 minutes is RECOMMENDED"
# A client that lost the response to a refresh may retry with the old token this long, as long
# as it never used the new one; any later reuse revokes the grant (RFC 9700 §4.14.2).
REFRESH_RETRY_SECONDS = 120
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
MAX_REDIRECT_URIS = 10
MAX_CLIENT_NAME = 100

SCOPE_LABELS = {
    "wiki:read": "read its pages, history and attachments",
    "wiki:write": "create, edit, rename and delete its pages and attachments",
}

# Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document): read at most 5 KB
# (§8.7), cache between a minute and a day (§5.2 lets the server bound HTTP cache lifetimes).
DOCUMENT_MAX_BYTES = 5 * 1024
DOCUMENT_CACHE_DEFAULT = 3600
DOCUMENT_CACHE_MIN = 60
DOCUMENT_CACHE_MAX = 86400


# --- resources: each wiki's MCP endpoint is one OAuth protected resource -----------------------

def wiki_slug_of_resource(cfg: store.Config, resource: str) -> str | None:
    """The slug a resource identifier names, by exact string comparison with our canonical form
    (RFC 8707 §2: no fragment; anything else, such as a trailing slash, is another resource)."""
    prefix, suffix = f"{cfg.public_url}/w/", "/mcp"
    if not resource.startswith(prefix) or not resource.endswith(suffix):
        return None
    slug = resource[len(prefix):-len(suffix)]
    return slug if is_slug(slug) else None


def is_slug(slug: str) -> bool:
    try:
        store.validate_slug(slug)
    except store.BadInput:
        return False
    return True


# --- redirect URIs ----------------------------------------------------------------------------
# Allowed: https; http only on a loopback host (RFC 8252 §7.3, any port at request time); and
# private-use schemes of native apps. RFC 8252 §7.1 asks apps for reverse-domain schemes such as
# com.example.app:/cb, but MCP clients in use register others (cursor://anysphere.cursor-mcp/…),
# so any scheme of RFC 3986 syntax is accepted except those a browser or OS gives a meaning that
# could hurt (script, local file and document schemes, and other well-known handlers).

LOOPBACK_REDIRECT_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
REFUSED_SCHEMES = frozenset({
    "javascript", "vbscript", "data", "file", "blob", "about", "filesystem", "view-source", "jar",
    "mailto", "tel", "sms", "ftp", "ws", "wss", "intent", "content", "chrome", "resource",
})
SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
URI_EXCLUDED = frozenset('"<>\\^`{|}')  # never unencoded in a URI (RFC 3986 §2, appendix A)
AUTHORITY_RE = re.compile(r"(?P<host>\[[^\]]*\]|[^:]*)(?::(?P<port>[0-9]*))?")


def redirect_uri_problem(uri: Any) -> str | None:
    """Why `uri` cannot be a registered or requested redirect URI, or None if it can."""
    if not isinstance(uri, str) or not uri:
        return "must be a non-empty string"
    if len(uri) > 2000:
        return "is too long"
    if not uri.isascii() or any(ord(c) <= 0x20 or ord(c) == 0x7F or c in URI_EXCLUDED for c in uri):
        return "contains spaces, control characters, non-ASCII or other characters a URI may not contain"
    if "#" in uri:
        return "must not contain a fragment (RFC 6749 section 3.1.2)"
    if "*" in uri:
        return "must not contain wildcards"
    scheme, colon, rest = uri.partition(":")
    if not colon or not SCHEME_RE.fullmatch(scheme) or not rest:
        return "must be an absolute URI"
    if scheme.lower() in REFUSED_SCHEMES:
        return f"must not use the {scheme.lower()} scheme"
    if scheme != scheme.lower():
        return "must spell its scheme in lower case"
    parts = urllib.parse.urlsplit(uri)
    if "@" in parts.netloc:
        return "must not contain a user name or password"
    try:
        parts.port
    except ValueError:
        return "has an invalid port"
    if scheme in ("http", "https") and not (parts.hostname and rest.startswith("//")):
        return "must name a host"
    if scheme == "http" and parts.hostname not in LOOPBACK_REDIRECT_HOSTS:
        return "must use https (http only for 127.0.0.1, [::1] or localhost)"
    return None


def redirect_uri_matches(registered: str, requested: str) -> bool:
    """Exact string match (RFC 9700 §2.1), except that a loopback http URI may name any port
    (RFC 8252 §7.3); scheme, host, path and query must still match exactly."""
    if requested == registered:
        return True
    return (redirect_uri_problem(requested) is None and is_loopback_http(registered)
            and is_loopback_http(requested) and _without_port(registered) == _without_port(requested))


def is_loopback_http(uri: str) -> bool:
    return uri.startswith("http://") and urllib.parse.urlsplit(uri).hostname in LOOPBACK_REDIRECT_HOSTS


def _without_port(uri: str) -> str:
    """`uri` with the port cut out of its authority, by string surgery so nothing is normalised."""
    rest = uri[len("http://"):]
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority = AUTHORITY_RE.fullmatch(rest[:end])
    return "http://" + (authority["host"] if authority else rest[:end]) + rest[end:]


def redirect_host(uri: str) -> str:
    """What the consent page and the apps page show for a redirect URI: its origin for http(s),
    else the app's scheme (and authority)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme in ("http", "https"):
        return parts.netloc
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"


# --- Client ID Metadata Documents: how long one may be cached ------------------------------------

def cache_lifetime(headers) -> int:
    """Seconds a document may be cached per its Cache-Control max-age, else Expires (RFC 9111
    §4.2.1), bounded to [DOCUMENT_CACHE_MIN, DOCUMENT_CACHE_MAX]; no-store/no-cache get the minimum."""
    directives = {}
    for part in headers.get("Cache-Control", "").lower().split(","):
        name, _, value = part.strip().partition("=")
        directives[name] = value.strip('"')
    max_age = directives.get("max-age", "")
    if "no-store" in directives or "no-cache" in directives:
        seconds = 0
    elif store.ASCII_DIGITS_RE.fullmatch(max_age):   # not str.isdigit(): it accepts '²', which int() refuses
        # RFC 9111 §1.2.2: a delta-seconds too large to represent counts as 2^31.
        seconds = int(max_age) if len(max_age) <= 10 else 2**31
    else:
        seconds = _expires_in(headers.get("Expires"))
    return min(max(seconds, DOCUMENT_CACHE_MIN), DOCUMENT_CACHE_MAX)


def _expires_in(expires: str | None) -> int:
    if not expires:
        return DOCUMENT_CACHE_DEFAULT
    try:
        return int(email.utils.parsedate_to_datetime(expires).timestamp()) - store.now()
    except (TypeError, ValueError):
        return 0  # RFC 9111 §5.3: an invalid Expires means already expired


# --- discovery documents ---------------------------------------------------------------------------

def authorization_server_metadata(cfg: store.Config) -> dict:
    """RFC 8414 §2 metadata; the issuer is the public URL exactly (§3.3)."""
    return {
        "issuer": cfg.public_url,
        "authorization_endpoint": cfg.url("/oauth/authorize"),
        "token_endpoint": cfg.url("/oauth/token"),
        "registration_endpoint": cfg.url("/oauth/register"),
        "revocation_endpoint": cfg.url("/oauth/revoke"),
        "jwks_uri": cfg.url("/.well-known/jwks.json"),
        "scopes_supported": list(store.SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "none"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,  # RFC 9207 §3
        "client_id_metadata_document_supported": True,
    }


# What a metadata document's client may use: as registered clients, but public (draft §4.1).
DOCUMENT_CLIENT_METADATA = {"grant_types_supported": ["authorization_code", "refresh_token"],
                            "token_endpoint_auth_methods_supported": ["none"]}


def protected_resource_metadata(cfg: store.Config, slug: str) -> dict:
    """RFC 9728 §2 metadata of a wiki's MCP endpoint; `resource` equals its identifier (§3.3). It
    names only the slug, so it says nothing about whether such a wiki exists (CONTRACT §3)."""
    return {
        "resource": resource_url(cfg, slug),
        "authorization_servers": [cfg.public_url],
        "scopes_supported": list(store.SCOPES),
        "bearer_methods_supported": ["header"],
        "resource_name": f"Wiki {slug} on {cfg.public_host}",
    }


# --- machine endpoints: JSON, CORS without credentials ---------------------------------------------


def preflight(**_):
    """CORS preflight for the machine endpoints (never the authorization endpoint, RFC 9700 §2.6)."""
    bottle.response.status = 204
    bottle.response.set_header("Access-Control-Allow-Origin", "*")
    bottle.response.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
    bottle.response.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
    bottle.response.set_header("Access-Control-Max-Age", "86400")
    return ""

# --- connected apps and personal access tokens -------------------------------------------------------

@web.login_required
def apps_page():
    return _apps_page(web.current_user())


def _apps_page(user, created: dict | None = None, problem: str | None = None) -> str:
    db = web.instance().db()
    bottle.response.set_header("Cache-Control", "no-store")
    return web.render("apps", grants=store.list_grants(db, user["did"]), tokens=store.list_personal_tokens(db, user["did"]),
                     wikis=store.user_wikis(db, user["did"]), created=created, problem=problem, labels=SCOPE_LABELS,
                     redirect_host=redirect_host)


@web.login_required
def apps_revoke_grant(grant_id: int):
    if not store.revoke_grant(web.instance().db(), grant_id, web.current_user()["did"]):
        raise store.NotFound("You have no such connected app.")
    return web.redirect("/account/apps")


@web.login_required
def apps_create_token():
    """Create a personal access token and show it once, on this response only."""
    user, form = web.current_user(), bottle.request.forms
    try:
        scopes = store.parse_scopes(" ".join(form.getall("scope")))
        token = store.create_personal_token(web.instance().db(), user["did"], form.getunicode("wiki", ""), scopes,
                                         form.getunicode("name", ""), _expiry(form.get("expires_days", "")))
    except store.RobotError as e:
        bottle.response.status = e.status
        return _apps_page(user, problem=e.message)
    return _apps_page(user, created={"token": token, "name": form.getunicode("name", "").strip(),
                                     "wiki": form.getunicode("wiki", "")})


def _expiry(days: str) -> int | None:
    if not days.strip():
        return None
    text = days.strip()
    if not store.ASCII_DIGITS_RE.fullmatch(text) or len(text) > 4 or not 1 <= int(text) <= 3650:
        raise store.BadInput("Expiry is a number of days from 1 to 3650, or empty for none.")
    return store.now() + int(text) * 86400


@web.login_required
def apps_revoke_token(token_id: int):
    if not store.revoke_personal_token(web.instance().db(), token_id, web.current_user()["did"]):
        raise store.NotFound("You have no such token.")
    return web.redirect("/account/apps")


# --- authlib models over our rows ---------------------------------------------------------------

class Client(ClientMixin):
    """A registered client or a cached Client ID Metadata Document."""

    def __init__(self, row):
        self.client_id = row["client_id"]
        self.secret_hash = row["secret_hash"]
        self.auth_method = row["auth_method"]
        self.redirect_uris = json.loads(row["redirect_uris"])
        self.grant_types = json.loads(row["grant_types"])
        self.client_name = row["client_name"]
        self.is_document = bool(row["is_document"])

    @property
    def display_name(self) -> str:
        return self.client_name or (urllib.parse.urlsplit(self.client_id).netloc if self.is_document
                                    else "An app that gave no name")

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        # OAuth 2.1 §4.1.1: redirect_uri may be left out only when exactly one is registered.
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope):
        """Unknown scopes are dropped (RFC 6749 §3.3 lets the server ignore them); a request
        naming none of ours asks for both, and the person narrows it (CONTRACT §4)."""
        requested = set(scope_to_list(scope) or ()) & set(store.SCOPES)
        return store.scope_string(requested or store.SCOPES)

    def check_redirect_uri(self, redirect_uri):
        return any(redirect_uri_matches(registered, redirect_uri) for registered in self.redirect_uris)

    def check_client_secret(self, client_secret):
        return self.secret_hash is not None and hmac.compare_digest(self.secret_hash, store.hash_secret(client_secret))

    def check_endpoint_auth_method(self, method, endpoint):
        # The registered method only: a client may not switch methods (RFC 7591 §2).
        return method == self.auth_method

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type in self.grant_types


class AuthorizationCode(AuthorizationCodeMixin):
    def __init__(self, row):
        self.row = row
        self.code_challenge = row["code_challenge"]
        self.code_challenge_method = "S256"

    def get_redirect_uri(self):
        # The token request must repeat redirect_uri iff the authorization request had it
        # (RFC 6749 §4.1.3).
        return self.row["redirect_uri"] if self.row["redirect_uri_in_request"] else None

    def get_scope(self):
        return self.row["scope"]


class RefreshToken(TokenMixin):
    def __init__(self, row):
        self.row = row

    def check_client(self, client):
        return self.row["client_id"] == client.client_id

    def get_scope(self):
        return self.row["scope"]


class RevocableToken(TokenMixin):
    """An access or refresh token presented for revocation: both stand for their grant."""

    def __init__(self, grant_id: int, client_id: str):
        self.grant_id = grant_id
        self.client_id = client_id

    def check_client(self, client):
        return self.client_id == client.client_id


@dataclasses.dataclass(frozen=True)
class Subject:
    """What a token is issued for, passed to the token generator as authlib's `user`."""

    did: str
    grant_id: int
    resource: str


# --- authlib adapted to Bottle --------------------------------------------------------------------

class OAuthResponse(NamedTuple):
    status: int
    body: Any
    headers: list


class _Params(OAuth2Payload):
    """Request parameters from ONE place: the query at the authorization endpoint, the form body at
    the token and revocation endpoints (OAuth 2.1 §3.2; RFC 6749 §2.3.1 keeps secrets out of URLs)."""

    def __init__(self, pairs: list[tuple[str, str]]):
        self._datalist = collections.defaultdict(list)
        for name, value in pairs:
            self._datalist[name].append(value)
        self._data = {name: values[0] for name, values in self._datalist.items()}

    @property
    def data(self):
        return self._data

    @property
    def datalist(self):
        return self._datalist


class _Request(OAuth2Request):
    def __init__(self, path: str, pairs: list[tuple[str, str]]):
        super().__init__(bottle.request.method, web.instance().cfg.url(path), headers=bottle.request.headers)
        self.payload = _Params(pairs)
        self.resource = None   # the resource asked for (validated), then the consented wiki's URL
        self.wiki = None       # the consented wiki's row, with the person's role

    @property
    def args(self):
        return self.payload.data

    @property
    def form(self):
        return self.payload.data


class _JsonRequest(JsonRequest):
    def __init__(self, path: str, document: dict):
        super().__init__("POST", web.instance().cfg.url(path), bottle.request.headers)
        self.payload = types.SimpleNamespace(data=document)


class InvalidTargetError(OAuth2Error):
    """RFC 8707 §2: the resource is not one of ours, or not the one granted."""
    error = "invalid_target"


class UnsupportedTokenTypeError(OAuth2Error):
    """RFC 7009 §2.2.1, with RFC 6749 §5.2's 400 (authlib's class answers 401)."""
    error = "unsupported_token_type"


class AuthorizationServer(AuthlibServer):
    """authlib's server with our models, tokens and policy; one per running instance."""

    def __init__(self, inst: store.Instance):
        super().__init__(scopes_supported=list(store.SCOPES))
        self.inst = inst
        self.documents = DocumentFetcher(inst.cfg.insecure_dev_network)
        self.register_token_generator("default", AccessTokenGenerator(inst))
        self.register_grant(CodeGrant, [S256CodeChallenge()])
        self.register_grant(RefreshGrant)
        self.register_endpoint(RegistrationEndpoint(self))
        self.register_endpoint(RevocationEndpoint)

    def db(self):
        return self.inst.db()

    def get_authorization_grant(self, request):
        """authlib's, but a response_type it would repeat in its error_description is refused first:
        characters RFC 6749 §5.2 forbids there make authlib raise instead of answering."""
        response_type = request.payload.response_type or ""
        if _ascii(response_type) != response_type:
            raise InvalidRequestError("response_type must be code.")
        return super().get_authorization_grant(request)

    def query_client(self, client_id):
        if not isinstance(client_id, str) or not client_id:
            return None
        if _looks_like_document_url(client_id):
            return metadata_document_client(self, client_id)
        row = store.get_oauth_client(self.db(), client_id)
        return Client(row) if row is not None else None

    def authenticate_client(self, request, methods, endpoint="token"):
        """Every failed client authentication answers 401 invalid_client (RFC 6749 §5.2 permits it
        for all methods; authlib gives 400 to some). Claude.ai registers afresh on a 401."""
        try:
            client = super().authenticate_client(request, methods, endpoint)
        except InvalidClientError as error:
            raise InvalidClientError(status_code=401, description=error.description) from None
        except UnicodeDecodeError:
            # authlib decodes HTTP Basic credentials as UTF-8 and lets the error escape (a 500).
            raise InvalidClientError(status_code=401,
                                     description="The HTTP Basic client credentials are not UTF-8.") from None
        if endpoint == "token" and client.auth_method != "none":
            # Per OAuth client, counted only once the client proved its secret: made-up client ids
            # can't crowd the limiter, and nobody can spend a public client's budget (anyone may
            # name a public client, e.g. a metadata-document URL all of its users share). The
            # per-address limit ran before the request was parsed.
            inst = web.instance()
            inst.limiter.hit("token:client:" + client.get_client_id(), inst.cfg.token_per_minute,
                             "Too many token requests for this client; wait a minute.")
        return client

    def validate_requested_scope(self, scope):
        """Scopes are narrowed, never refused, at the authorization endpoint (Client.get_allowed_scope)."""

    def create_oauth2_request(self, request):
        return request

    def create_json_request(self, request):
        return request

    def handle_response(self, status, body, headers):
        return OAuthResponse(status, body, headers)

    def send_signal(self, name, *args, **kwargs):
        """authlib's hook for framework signals; robotwtf has no listeners."""


class AccessTokenGenerator(BearerTokenGenerator):
    """RFC 9068 access tokens: RS256 JWTs with typ at+jwt naming the person (sub), the wiki's MCP
    URL (aud), the client and the scopes, plus the grant they belong to, which every use checks."""

    def __init__(self, inst: store.Instance):
        super().__init__(self.sign, expires_generator=self.lifetime)
        self.inst = inst

    def lifetime(self, client, grant_type) -> int:
        return self.inst.cfg.access_token_minutes * 60

    def sign(self, client, grant_type, user: Subject, scope: str) -> str:
        issued = store.now()
        claims = {"iss": self.inst.cfg.public_url, "sub": user.did, "aud": user.resource,
                  "client_id": client.client_id, "scope": scope, "jti": store.new_secret(16), "iat": issued,
                  "exp": issued + self.lifetime(client, grant_type), "grant_id": user.grant_id}
        return self.inst.keys.sign_rs256(claims, ACCESS_TOKEN_TYP)


class S256CodeChallenge(CodeChallenge):
    """PKCE for every client, S256 only (OAuth 2.1 §4.1.1, RFC 9700 §2.1.1). authlib's defaults
    allow `plain`, treat a missing method as `plain`, and let confidential clients skip PKCE."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": compare_s256_code_challenge}

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("code_challenge is required: every client must use PKCE with S256 "
                                      "(OAuth 2.1 section 4.1.1).")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256; plain, and a missing method "
                                      "(which means plain, RFC 7636 section 4.3), are not accepted.")
        super().validate_code_challenge(grant, redirect_uri)
        if store.code_challenge_used(grant.server.db(), data["code_challenge"]):
            raise InvalidRequestError("This code_challenge was used before; make a new code_verifier for "
                                      "every authorization request (RFC 9700 section 2.1.1).")


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    @staticmethod
    def validate_authorization_redirect_uri(request, client):
        """authlib's check, with a message that does not repeat the URI: it may hold characters an
        error_description cannot carry (RFC 6749 §5.2), and it is the attacker's text."""
        redirect_uri = request.payload.redirect_uri
        if redirect_uri and not client.check_redirect_uri(redirect_uri):
            raise InvalidRequestError("redirect_uri is not one this client registered; it must match exactly.")
        return grants.AuthorizationCodeGrant.validate_authorization_redirect_uri(request, client)

    def validate_authorization_request(self):
        redirect_uri = super().validate_authorization_request()
        try:
            self.request.resource = _requested_resource(self.server.inst.cfg, self.request)
        except OAuth2Error as error:
            error.redirect_uri = redirect_uri
            raise
        return redirect_uri

    def generate_authorization_code(self):
        return store.new_secret()

    def save_authorization_code(self, code, request):
        created = store.now()
        store.save_authorization_code(self.server.db(), {
            "code_hash": store.hash_secret(code), "client_id": request.client.client_id,
            "user_did": request.user["did"], "wiki_id": request.wiki["id"], "scope": request.scope,
            "resource": request.resource, "redirect_uri": self.redirect_uri,
            "redirect_uri_in_request": int(bool(request.payload.redirect_uri)),
            "code_challenge": request.payload.data["code_challenge"], "created_at": created,
            "expires_at": created + CODE_SECONDS})

    def query_authorization_code(self, code, client):
        row = store.get_authorization_code(self.server.db(), store.hash_secret(code))
        return AuthorizationCode(row) if row is not None and row["client_id"] == client.client_id else None

    def validate_token_request(self):
        """authlib checks the client, the code, redirect_uri and (hook) the PKCE verifier; then
        the resource may only name what was granted (RFC 8707 §2.2). Nothing is spent yet, so a
        request failing here leaves the code and its grant alone (OAuth 2.1 §7.5.2)."""
        super().validate_token_request()
        _check_token_resource(self.request, self.request.authorization_code.row["resource"])

    def create_token_response(self):
        """Spend the code and create its grant atomically; a second redemption that passed every
        check above revokes what the first one got (RFC 6749 §4.1.2)."""
        client, code = self.request.client, self.request.authorization_code.row
        refresh = store.new_secret() if client.check_grant_type("refresh_token") else None
        grant_id = store.redeem_authorization_code(self.server.db(), code["code_hash"],
                                                refresh and store.hash_secret(refresh),
                                                store.now() + self.server.inst.cfg.refresh_token_days * 86400)
        if grant_id is None:
            raise InvalidGrantError("This authorization code was already used; the tokens issued for it "
                                    "are revoked (RFC 6749 section 4.1.2).")
        token = self.generate_token(user=Subject(code["user_did"], grant_id, code["resource"]),
                                    scope=code["scope"], include_refresh_token=False)
        if refresh:
            token["refresh_token"] = refresh
        return 200, token, self.TOKEN_RESPONSE_HEADER


class RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def authenticate_refresh_token(self, refresh_token):
        """The token's row even if already spent (rotation decides what a reuse means), but not if
        its person is no longer a member of the wiki."""
        row = store.get_refresh_token(self.server.db(), store.hash_secret(refresh_token))
        return RefreshToken(row) if row is not None and row["role"] is not None else None

    def validate_token_request(self):
        super().validate_token_request()
        row = self.request.refresh_token.row
        _check_token_resource(self.request, resource_url(self.server.inst.cfg, row["wiki_slug"]))

    def create_token_response(self):
        """Rotate (OAuth 2.1 §4.3.1); the access token may carry fewer scopes than the grant, the
        new refresh token keeps the grant's (RFC 6749 §6)."""
        row = self.request.refresh_token.row
        new = store.new_secret()
        outcome = store.rotate_refresh_token(self.server.db(), row["token_hash"], store.hash_secret(new),
                                          REFRESH_RETRY_SECONDS)
        if outcome == "reused":
            raise InvalidGrantError("This refresh token was already used, so it may have leaked: every token "
                                    "of this connection is revoked. Reconnect the app.")
        if outcome != "rotated":
            raise InvalidGrantError("The refresh token is not valid.")
        subject = Subject(row["user_did"], row["grant_id"], resource_url(self.server.inst.cfg, row["wiki_slug"]))
        token = self.generate_token(user=subject, scope=self.request.payload.scope or row["scope"],
                                    include_refresh_token=False)
        token["refresh_token"] = new
        return 200, token, self.TOKEN_RESPONSE_HEADER


def _requested_resource(cfg: store.Config, request: _Request) -> str | None:
    """The wiki MCP URL the client asked for (MCP clients MUST send `resource`), or None: then the
    person picks the wiki on the consent page."""
    resource = request.payload.data.get("resource")
    if resource is None:
        return None
    if wiki_slug_of_resource(cfg, resource) is None:
        raise InvalidTargetError(f"resource must be a wiki's MCP URL on this server, such as "
                                 f"{resource_url(cfg, 'example')} (RFC 8707 section 2).")
    return resource


def _check_token_resource(request: _Request, granted: str) -> None:
    resource = request.payload.data.get("resource")
    if resource is not None and resource != granted:
        raise InvalidTargetError("resource must be the wiki this authorization was granted for "
                                 "(RFC 8707 section 2.2).")


def _reject_repeated(pairs: list[tuple[str, str]]) -> None:
    """OAuth 2.1 §3.1 and §3.2: parameters MUST NOT be repeated. A repeated `resource` is allowed
    by RFC 8707 but each of our tokens is for one wiki, so it gets invalid_target."""
    counts = collections.Counter(name for name, _ in pairs)
    for name, count in counts.items():
        if count > 1 and name == "resource":
            raise InvalidTargetError("Send one resource: a token is for one wiki.")
        if count > 1:
            raise InvalidRequestError(f"The parameter {_ascii(name)} is repeated.")


def _ascii(text: str) -> str:
    """Text safe inside an OAuth error_description (RFC 6749 §5.2's character set)."""
    return "".join(c if 0x20 <= ord(c) <= 0x7E and c not in '"\\' else "?" for c in text[:200])


# --- registration (RFC 7591) ---------------------------------------------------------------------

class ClientMetadata(ClientMetadataClaims):
    """What we accept and keep of a client's metadata, from a registration or a metadata document,
    checked against the server metadata given as `params`. Only what robotwtf keeps is validated;
    anything else is ignored (RFC 7591 §2) and not echoed back."""

    REGISTERED_CLAIMS = ["redirect_uris", "token_endpoint_auth_method", "grant_types", "response_types",
                         "client_name", "client_uri", "logo_uri"]

    @classmethod
    def get_claims_options(cls, metadata):
        return {}

    def validate(self, now=None, leeway=0):
        self.validate_redirect_uris()
        self.validate_token_endpoint_auth_method()
        self.validate_grant_types()
        self.validate_response_types()
        self.validate_client_name()
        self.validate_client_uri()
        self.validate_logo_uri()

    def validate_redirect_uris(self):
        # RFC 7591 §2: clients using redirect-based flows MUST register their redirect URIs.
        uris = self.get("redirect_uris")
        if not isinstance(uris, list) or not 1 <= len(uris) <= MAX_REDIRECT_URIS:
            raise InvalidRedirectURIError(f"redirect_uris must list 1 to {MAX_REDIRECT_URIS} URIs.")
        for number, uri in enumerate(uris, 1):
            problem = redirect_uri_problem(uri)
            if problem:
                raise InvalidRedirectURIError(f"Redirect URI number {number} {problem}.")

    def validate_token_endpoint_auth_method(self):
        method = self.setdefault("token_endpoint_auth_method", "client_secret_basic")  # RFC 7591 §2 default
        supported = self.params["token_endpoint_auth_methods_supported"]
        if method not in supported:
            raise InvalidClientMetadataError(f"token_endpoint_auth_method must be one of {', '.join(supported)}.")

    def validate_grant_types(self):
        grant_types = self.setdefault("grant_types", ["authorization_code"])  # RFC 7591 §2 default
        supported = self.params["grant_types_supported"]
        if not isinstance(grant_types, list) or "authorization_code" not in grant_types \
                or not all(grant_type in supported for grant_type in grant_types):
            raise InvalidClientMetadataError(f"grant_types must include authorization_code and be among "
                                             f"{', '.join(supported)}.")

    def validate_response_types(self):
        if self.setdefault("response_types", ["code"]) != ["code"]:
            raise InvalidClientMetadataError("response_types may only be code.")

    def validate_client_name(self):
        name = self.get("client_name")
        if name is not None and not _is_display_text(name):
            raise InvalidClientMetadataError(f"client_name must be text of at most {MAX_CLIENT_NAME} "
                                             "characters without control or formatting characters.")

    def validate_client_uri(self):
        self._validate_https_uri("client_uri")

    def validate_logo_uri(self):
        self._validate_https_uri("logo_uri")

    def _validate_https_uri(self, key: str) -> None:
        value = self.get(key)
        if value is not None and not (isinstance(value, str) and value.startswith("https://") and len(value) <= 2000
                                      and redirect_uri_problem(value) is None):
            raise InvalidClientMetadataError(f"{key} must be an https URL.")


def _is_display_text(value: Any) -> bool:
    """Names shown to people must not hide or reorder text (controls, bidi overrides)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_CLIENT_NAME \
        and not any(unicodedata.category(c).startswith("C") for c in value)


class RegistrationEndpoint(ClientRegistrationEndpoint):
    """Open registration (RFC 7591 §3; the route rate-limits it per address). A confidential
    client's secret is returned once and stored only as a hash; public clients get none."""

    def __init__(self, server: AuthorizationServer):
        super().__init__(server, claims_classes=[ClientMetadata])

    def authenticate_token(self, request):
        return True  # no initial access token: anyone may register

    def get_server_metadata(self):
        return authorization_server_metadata(self.server.inst.cfg)

    def generate_client_info(self, request):
        info = {"client_id": store.new_secret(18), "client_id_issued_at": store.now()}
        if request.payload.data.get("token_endpoint_auth_method", "client_secret_basic") != "none":
            info.update(client_secret=store.new_secret(), client_secret_expires_at=0)
        return info

    def save_client(self, client_info, client_metadata, request):
        secret = client_info.get("client_secret")
        store.register_oauth_client(self.server.db(), {
            "client_id": client_info["client_id"], "secret_hash": secret and store.hash_secret(secret),
            **_stored_metadata(client_metadata)})
        return client_info


def _stored_metadata(metadata: dict) -> dict:
    return {"auth_method": metadata["token_endpoint_auth_method"],
            "redirect_uris": json.dumps(metadata["redirect_uris"]),
            "grant_types": json.dumps(metadata["grant_types"]),
            "client_name": metadata.get("client_name", ""), "client_uri": metadata.get("client_uri", ""),
            "logo_uri": metadata.get("logo_uri", "")}


# --- Client ID Metadata Documents ----------------------------------------------------------------

def _looks_like_document_url(client_id: str) -> bool:
    # Our own client ids never start with a scheme (draft-ietf-oauth-client-id-metadata-document §7.1).
    return client_id.startswith(("https://", "http://"))


def _document_url_problem(cfg: store.Config, url: str) -> str | None:
    """The draft's §3 rules for a Client Identifier URL. http is accepted only on loopback in
    development network mode, where tests serve documents without TLS."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" and not (cfg.insecure_dev_network and parts.scheme == "http"
                                        and parts.hostname in LOOPBACK_REDIRECT_HOSTS):
        return "must use https"
    if "@" in parts.netloc or "#" in url:
        return "must not contain a user name, password or fragment"
    segments = parts.path.split("/")
    if not parts.path or "." in segments or ".." in segments:
        return "must have a path without . or .. segments"
    return None


def metadata_document_client(server: AuthorizationServer, url: str) -> Client:
    """The client a metadata document URL names: from the cache while it is fresh, else fetched
    through the hardened fetcher (no redirects, private addresses refused, 5 KB, 5 s) and
    validated. Failures raise invalid_client and are never cached (draft §5.1, §5.2)."""
    row = store.get_oauth_client(server.db(), url)
    if row is not None and row["is_document"] and row["cache_until"] > store.now():
        return Client(row)
    problem = _document_url_problem(server.inst.cfg, url)
    if problem:
        raise InvalidClientError(description=f"The client_id URL {problem} (Client ID Metadata Document).")
    try:
        document, lifetime = server.documents.get(url)
    except atproto.AtprotoError as e:
        log.info("client metadata document refused: %s", e)
        raise InvalidClientError(description=_ascii(f"The app's client metadata could not be fetched: {e}")) \
            from None
    store.cache_metadata_document_client(server.db(), {"client_id": url, **_document_metadata(url, document),
                                                    "cache_until": store.now() + lifetime})
    return Client(store.get_oauth_client(server.db(), url))


def _document_metadata(url: str, document: dict) -> dict:
    """A metadata document checked like a registration, plus the draft's rules: its client_id is
    exactly its URL (§4), and it holds no shared secret (§4.1): robotwtf accepts public clients."""
    if document.get("client_id") != url:
        raise InvalidClientError(description="The app's metadata document names another client_id.")
    if "client_secret" in document or document.get("token_endpoint_auth_method", "none") != "none":
        raise InvalidClientError(description="The app's metadata document must describe a public client "
                                             "(token_endpoint_auth_method none) without a secret.")
    claims = ClientMetadata(dict(document, token_endpoint_auth_method="none"), {}, {}, DOCUMENT_CLIENT_METADATA)
    try:
        claims.validate()
    except OAuth2Error as e:
        raise InvalidClientError(description=f"The app's metadata document is invalid: {e.description}") from None
    return _stored_metadata(claims.get_registered_claims())


class DocumentFetcher(atproto.Fetcher):
    """robotwtf_atproto's hardened fetcher (no redirects, private addresses refused), bounded for
    metadata documents, which also says how long a document may be cached."""

    def __init__(self, insecure_dev_network: bool):
        super().__init__(insecure_dev_network, max_bytes=DOCUMENT_MAX_BYTES, deadline=5.0, read_timeout=3.0,
                         user_agent="robotwtf (OAuth client metadata)")

    def get(self, url: str) -> tuple[dict, int]:
        # Fetcher.get_json would drop the headers the cache lifetime comes from.
        reply = self._request("GET", url, headers={"Accept": "application/json"})
        if reply.status != 200 or not isinstance(reply.json, dict):
            raise atproto.UnexpectedResponse(f"it answered HTTP {reply.status} without a JSON object.")
        return reply.json, cache_lifetime(reply.headers)


# --- revocation (RFC 7009) -------------------------------------------------------------------------

class RevocationEndpoint(AuthlibRevocationEndpoint):
    """Revoking an access or a refresh token revokes its whole grant, which RFC 7009 §2.1 allows
    ("the revocation of a particular token may cause the revocation of related tokens and the
    underlying authorization grant"); a token of another client is refused (authlib's check)."""

    CLIENT_AUTH_METHODS = AUTH_METHODS

    def check_params(self, request, client):
        if not request.form.get("token"):
            raise InvalidRequestError("token is required (RFC 7009 section 2.1).")
        if request.form.get("token_type_hint") not in (None, *self.SUPPORTED_TOKEN_TYPES):
            raise UnsupportedTokenTypeError("token_type_hint may be access_token or refresh_token.")

    def query_token(self, token_string, token_type_hint):
        if token_type_hint == "access_token":
            return self._access_token(token_string) or self._refresh_token(token_string)
        return self._refresh_token(token_string) or self._access_token(token_string)

    def _refresh_token(self, token: str) -> RevocableToken | None:
        row = store.get_refresh_token(self.server.db(), store.hash_secret(token))
        return RevocableToken(row["grant_id"], row["client_id"]) if row is not None else None

    def _access_token(self, token: str) -> RevocableToken | None:
        """Expiry does not matter here: revoking through an expired token still ends its grant."""
        try:
            claims = self.server.inst.keys.verify_rs256(token, ACCESS_TOKEN_TYP)
        except store.BadInput:
            return None
        if claims.get("iss") != self.server.inst.cfg.public_url or type(claims.get("grant_id")) is not int:
            return None
        return RevocableToken(claims["grant_id"], claims.get("client_id"))

    def revoke_token(self, token, request):
        store.revoke_grant(self.server.db(), token.grant_id)


# --- machine endpoints: JSON, CORS without credentials ---------------------------------------------

DOCUMENT_CACHE = "public, max-age=300"


_server_lock = threading.Lock()


def _server() -> AuthorizationServer:
    """The app's authorization server, made by the first request that needs it."""
    config = bottle.request.app.config
    with _server_lock:
        if "robotwtf.as" not in config:
            config["robotwtf.as"] = AuthorizationServer(config["robotwtf.instance"])
    return config["robotwtf.as"]


def machine_endpoint(handler):
    """JSON endpoints that scripts in any web page may call: `Access-Control-Allow-Origin: *` and
    never credentials (no cookie is read). Every failure is an OAuth-shaped JSON error (RFC 6749
    §5.2), also rate limiting."""
    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            response = handler(*args, **kwargs)
        except OAuth2Error as error:
            response = OAuthResponse(*error())
        except store.RateLimited as e:
            response = OAuthResponse(429, {"error": "rate_limited", "error_description": e.message},
                                     [("Retry-After", str(e.retry_after)), ("Cache-Control", "no-store")])
        bottle.response.status = response.status
        # RFC 6749 §5.1: token responses (and so errors, registrations, revocations) are no-store;
        # only the public metadata documents set a cache lifetime of their own.
        bottle.response.set_header("Cache-Control", "no-store")
        for name, value in response.headers:
            bottle.response.set_header(name, value)
        bottle.response.set_header("Access-Control-Allow-Origin", "*")
        bottle.response.content_type = "application/json"
        return json.dumps(response.body)
    return wrapper


@machine_endpoint
def authorization_server_metadata_document():
    return OAuthResponse(200, authorization_server_metadata(web.instance().cfg), [("Cache-Control", DOCUMENT_CACHE)])


@machine_endpoint
def protected_resource_metadata_document(slug):
    if not is_slug(slug):
        return OAuthResponse(404, {"error": "not_found", "error_description": "No wiki can have this name."},
                             [("Cache-Control", DOCUMENT_CACHE)])
    return OAuthResponse(200, protected_resource_metadata(web.instance().cfg, slug), [("Cache-Control", DOCUMENT_CACHE)])


@machine_endpoint
def jwks_document():
    return OAuthResponse(200, web.instance().keys.public_jwks(), [("Cache-Control", DOCUMENT_CACHE)])


@machine_endpoint
def token_endpoint():
    inst = web.instance()
    inst.limiter.hit("token:ip:" + web.client_ip(), inst.cfg.token_per_minute,
                     "Too many token requests from your address; wait a minute.")
    return _server().create_token_response(_form_request("/oauth/token"))


@machine_endpoint
def revocation_endpoint():
    return _server().create_endpoint_response("revocation", _form_request("/oauth/revoke"))


@machine_endpoint
def registration_endpoint():
    inst = web.instance()
    inst.limiter.hit("register:" + web.client_ip(), inst.cfg.registrations_per_minute,
                     "Too many client registrations from your address; wait a minute.")
    request = _JsonRequest("/oauth/register", _json_body())
    store.prune_oauth(inst.db())
    return _server().create_endpoint_response("client_registration", request)


def _form_request(path: str) -> _Request:
    """A token or revocation request: form-encoded body only (RFC 6749 §4.1.3, RFC 7009 §2.1)."""
    if bottle.request.content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise InvalidRequestError("Send the parameters as application/x-www-form-urlencoded.")
    try:
        pairs = urllib.parse.parse_qsl(bottle.request.body.read().decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise InvalidRequestError("The request body is not UTF-8.") from None
    _reject_repeated(pairs)
    return _Request(path, pairs)


def _json_body() -> dict:
    try:
        document = json.loads(bottle.request.body.read())
    except ValueError:
        document = None
    if not isinstance(document, dict) or not document:
        raise InvalidClientMetadataError("Send the client metadata as a JSON object (RFC 7591 section 3.1).")
    return document


# --- the authorization endpoint and the consent page -----------------------------------------------

def _consent_grant() -> CodeGrant:
    """The validated authorization request (read from the query string, on the GET and on the
    consent POST, whose form action keeps it), or OAuth2Error. The POST validates everything
    again: nothing is trusted to have survived from the GET."""
    pairs = urllib.parse.parse_qsl(bottle.request.query_string, keep_blank_values=True)
    _reject_repeated(pairs)
    return _server().get_consent_grant(_Request("/oauth/authorize", pairs))


@web.login_required
def authorize_page():
    """GET /oauth/authorize: the person signs in first (login_required carries the whole request
    through the detour), then sees what the client asks for."""
    try:
        grant = _consent_grant()
    except OAuth2Error as error:
        return _authorization_error_page(error)
    return _consent_page(grant, web.current_user())


@web.login_required
def authorize_decision():
    """POST /oauth/authorize (CSRF-checked by the app's plugin): deny, or issue a code for the
    wiki and scopes the person chose."""
    try:
        grant = _consent_grant()
    except OAuth2Error as error:
        return _authorization_error_page(error)
    request, user = grant.request, web.current_user()
    if bottle.request.forms.get("decision") != "approve":
        return _redirect_to_client(grant.redirect_uri, [("error", "access_denied"), ("state", request.payload.state)])
    try:
        _bind_consent(request, user)
    except store.RobotError as e:
        bottle.response.status = e.status
        return _consent_page(grant, user, problem=e.message)
    _, _, headers = grant.create_authorization_response(grant.redirect_uri, user)
    return _redirect_to_client(dict(headers)["Location"], [])


def _bind_consent(request: _Request, user) -> None:
    """Put the person's choices on the request: the wiki (the one `resource` named, or the one
    picked) and the scopes ticked, which may only narrow what the client asked for and what the
    person's role allows (a viewer cannot grant wiki:write)."""
    cfg = web.instance().cfg
    slug = wiki_slug_of_resource(cfg, request.resource) if request.resource else bottle.request.forms.getunicode("wiki", "")
    wiki = _membership(user, slug)
    if wiki is None:
        raise store.Forbidden("You are not a member of that wiki, so you cannot connect an app to it.")
    chosen = set(bottle.request.forms.getall("grant_scope"))
    if not chosen <= set(request.scope.split()):
        raise store.BadInput("You can only narrow what the app asked for.")
    if not chosen <= store.role_scopes(wiki["role"]):
        raise store.Forbidden(f"As {wiki['role']} of {wiki['slug']} you can grant only "
                           f"{store.scope_string(store.role_scopes(wiki['role']))}.")
    if not chosen:
        raise store.BadInput("Tick at least one permission to allow, or deny.")
    request.wiki = wiki
    request.resource = resource_url(cfg, wiki["slug"])
    request.scope = store.scope_string(chosen)


def _membership(user, slug: str):
    """The wiki row with the person's role, if they have one; nothing says whether a wiki they
    are not in exists."""
    return next((w for w in store.user_wikis(web.instance().db(), user["did"]) if w["slug"] == slug), None)


def _redirect_to_client(uri: str, params: list[tuple[str, str | None]]) -> str:
    """303 to the client (RFC 9700 §4.12: never 307), with `iss` in every authorization response,
    success or error (RFC 9207 §2)."""
    present = [(name, value) for name, value in params if value is not None]
    return web.redirect(add_params_to_uri(uri, present + [("iss", web.instance().cfg.public_url)]))


def _authorization_error_page(error: OAuth2Error) -> str:
    """An error page, never an automatic redirect. With an invalid client_id or redirect_uri there
    is nowhere safe to send the person (RFC 6749 §4.1.2.1); otherwise the page offers a link back
    to the app with the error, state and iss, because anyone can register a client and an
    automatic redirect would make us an open redirector (RFC 9700 §4.11.2)."""
    return_url = None
    if error.redirect_uri:
        params = error.get_body() + [("iss", web.instance().cfg.public_url)]
        return_url = add_params_to_uri(error.redirect_uri, params)
    bottle.response.status = 400
    return web.render("oauth_error", message=error.description or error.error, return_url=return_url,
                     return_host=redirect_host(error.redirect_uri) if error.redirect_uri else None)


def _consent_page(grant: CodeGrant, user, problem: str | None = None) -> str:
    request, client = grant.request, grant.request.client
    slug = wiki_slug_of_resource(web.instance().cfg, request.resource) if request.resource else None
    return web.render(
        "consent", client_name=client.display_name,
        client_host=urllib.parse.urlsplit(client.client_id).netloc if client.is_document else None,
        redirect_host=redirect_host(grant.redirect_uri), loopback=is_loopback_http(grant.redirect_uri),
        requested=scope_to_list(request.scope), labels=SCOPE_LABELS, resource_slug=slug,
        target=_membership(user, slug) if slug else None,
        wikis=[] if slug else store.user_wikis(web.instance().db(), user["did"]),
        role_scopes=store.role_scopes, action="/oauth/authorize?" + bottle.request.query_string, problem=problem)
