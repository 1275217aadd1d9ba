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
- RFC 9068 JWT access tokens whose audience is one wiki's MCP URL;
- `authenticate_bearer`, the one answer to "who is this bearer, for which wiki, with which scopes";
- the "Connected apps" page: grants and personal access tokens.

This module holds the policy every request may need (resources, redirect-URI rules, bearer
checks, discovery documents, the apps page) and the routes. The protocol endpoints live in
robotwtf_oauth, on authlib; it is imported by the first request to one of them, so starting the
server and serving the wiki and MCP never load authlib and robotwtf_atproto (~0.25 s of imports
with requests, dnspython and cryptography, which that first OAuth request pays). This module and
robotwtf_oauth hold no SQL: that is in robotwtf.py.
"""

from __future__ import annotations

import dataclasses
import email.utils
import logging
import re
import urllib.parse
from typing import Any

import bottle

import robotwtf as rw

log = logging.getLogger("robotwtf.as")

ACCESS_TOKEN_TYP = "at+jwt"  # RFC 9068 §2.1
CODE_SECONDS = 300  # RFC 6749 §4.1.2: "a maximum authorization code lifetime of 10 minutes is RECOMMENDED"
# A client that lost the response to a refresh may retry with the old token this long, as long
# as it never used the new one; any later reuse revokes the grant (RFC 9700 §4.14.2).
REFRESH_RETRY_SECONDS = 120
TOUCH_SECONDS = 60  # last-used times are written at most this often (the MCP hot path reads only)
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

def resource_url(cfg: rw.Config, slug: str) -> str:
    """The wiki's MCP URL: its RFC 8707 resource identifier and the `aud` of its access tokens."""
    return f"{cfg.public_url}/w/{slug}/mcp"


def wiki_slug_of_resource(cfg: rw.Config, resource: str) -> str | None:
    """The slug a resource identifier names, by exact string comparison with our canonical form
    (RFC 8707 §2: no fragment; anything else, such as a trailing slash, is another resource)."""
    prefix, suffix = f"{cfg.public_url}/w/", "/mcp"
    if not resource.startswith(prefix) or not resource.endswith(suffix):
        return None
    slug = resource[len(prefix):-len(suffix)]
    return slug if is_slug(slug) else None


def is_slug(slug: str) -> bool:
    try:
        rw.validate_slug(slug)
    except rw.BadInput:
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


# --- who is calling: bearer tokens on the MCP endpoint -------------------------------------------

@dataclasses.dataclass(frozen=True)
class Caller:
    """The person an MCP request acts for, the wiki, and the scopes it may use right now (granted
    AND still allowed by the person's current role). `via` names the credential for revisions:
    "mcp:<client name>" for OAuth clients, "token:<name>" for personal access tokens."""

    user_did: str
    wiki_id: int
    wiki_slug: str
    scopes: frozenset[str]
    via: str
    grant_id: int | None = None
    token_id: int | None = None


class BearerError(Exception):
    """Why a bearer credential was refused. `status` is 401; `error` is RFC 6750 §3.1's
    "invalid_token", or None when no Bearer credential was sent at all (§3.1: then no error code);
    `description` is an ASCII sentence without quotes, safe inside a WWW-Authenticate header."""

    def __init__(self, error: str | None, description: str):
        super().__init__(description)
        self.status = 401
        self.error = error
        self.description = description


def authenticate_bearer(inst: rw.Instance, authorization: str | None, resource: str) -> Caller:
    """Who the `Authorization` header value speaks for on the MCP endpoint whose resource URL is
    `resource`, or BearerError. Access tokens must be our RS256 `at+jwt` for exactly this
    resource, their grant must still exist, and the scopes are cut to what the person's role
    allows today, so a revoked grant, a removed member, a lowered role, or a deleted user or wiki
    stops the very next request. Personal access tokens get the same checks. One indexed query."""
    token = _bearer_token(authorization)
    if token.startswith(rw.PERSONAL_TOKEN_PREFIX):
        return _personal_token_caller(inst, token, resource)
    return _access_token_caller(inst, token, resource)


def _bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise BearerError(None, "Send an access token as Authorization: Bearer <token>.")
    return token.strip()


def _invalid_token(description: str) -> BearerError:
    return BearerError("invalid_token", description)


def _access_token_caller(inst: rw.Instance, token: str, resource: str) -> Caller:
    claims = _access_token_claims(inst, token)
    if claims["exp"] <= rw.now():
        raise _invalid_token("The access token has expired; refresh it or reconnect the app.")
    if claims["aud"] != resource:
        raise _invalid_token("The access token is for another wiki.")
    grant = rw.grant_for_bearer(inst.db(), claims["grant_id"])
    if grant is None or grant["user_did"] != claims["sub"] or grant["client_id"] != claims["client_id"] \
            or resource_url(inst.cfg, grant["wiki_slug"]) != resource:
        raise _invalid_token("The access token was revoked; reconnect the app.")
    scopes = frozenset(claims["scope"].split()) & rw.role_scopes(grant["role"])
    if not scopes:
        raise _invalid_token("The person who connected this app no longer has access to the wiki.")
    if _stale(grant["last_used_at"]):
        rw.touch_grant(inst.db(), grant["id"])
    return Caller(grant["user_did"], grant["wiki_id"], grant["wiki_slug"], scopes,
                  "mcp:" + (grant["client_name"] or "unnamed app"), grant_id=grant["id"])


def _access_token_claims(inst: rw.Instance, token: str) -> dict:
    """The claims of an access token we issued (RFC 9068 §4: signature with RS256 only, typ,
    iss), with every claim this module relies on present and of the right type."""
    try:
        claims = inst.keys.verify_rs256(token, ACCESS_TOKEN_TYP)
    except rw.BadInput:
        raise _invalid_token("The access token is malformed or its signature is not valid.") from None
    expected = {"iss": str, "sub": str, "aud": str, "client_id": str, "scope": str, "exp": int, "grant_id": int}
    if any(type(claims.get(name)) is not kind for name, kind in expected.items()) \
            or claims["iss"] != inst.cfg.public_url:
        raise _invalid_token("The access token was not issued by this server.")
    return claims


def _personal_token_caller(inst: rw.Instance, token: str, resource: str) -> Caller:
    row = rw.personal_token_for_bearer(inst.db(), rw.hash_secret(token))
    if row is None:
        raise _invalid_token("The personal access token is unknown or was revoked.")
    if row["expires_at"] is not None and row["expires_at"] <= rw.now():
        raise _invalid_token("The personal access token has expired.")
    if resource_url(inst.cfg, row["wiki_slug"]) != resource:
        raise _invalid_token("The personal access token is for another wiki.")
    scopes = frozenset(row["scope"].split()) & rw.role_scopes(row["role"])
    if not scopes:
        raise _invalid_token("The token's owner no longer has access to the wiki.")
    if _stale(row["last_used_at"]):
        rw.touch_personal_token(inst.db(), row["id"])
    return Caller(row["user_did"], row["wiki_id"], row["wiki_slug"], scopes, "token:" + row["name"],
                  token_id=row["id"])


def _stale(last_used_at: int | None) -> bool:
    return last_used_at is None or rw.now() - last_used_at >= TOUCH_SECONDS



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
    elif rw.ASCII_DIGITS_RE.fullmatch(max_age):   # not str.isdigit(): it accepts '²', which int() refuses
        # RFC 9111 §1.2.2: a delta-seconds too large to represent counts as 2^31.
        seconds = int(max_age) if len(max_age) <= 10 else 2**31
    else:
        seconds = _expires_in(headers.get("Expires"))
    return min(max(seconds, DOCUMENT_CACHE_MIN), DOCUMENT_CACHE_MAX)


def _expires_in(expires: str | None) -> int:
    if not expires:
        return DOCUMENT_CACHE_DEFAULT
    try:
        return int(email.utils.parsedate_to_datetime(expires).timestamp()) - rw.now()
    except (TypeError, ValueError):
        return 0  # RFC 9111 §5.3: an invalid Expires means already expired


# --- discovery documents ---------------------------------------------------------------------------

def authorization_server_metadata(cfg: rw.Config) -> dict:
    """RFC 8414 §2 metadata; the issuer is the public URL exactly (§3.3)."""
    return {
        "issuer": cfg.public_url,
        "authorization_endpoint": cfg.url("/oauth/authorize"),
        "token_endpoint": cfg.url("/oauth/token"),
        "registration_endpoint": cfg.url("/oauth/register"),
        "revocation_endpoint": cfg.url("/oauth/revoke"),
        "jwks_uri": cfg.url("/.well-known/jwks.json"),
        "scopes_supported": list(rw.SCOPES),
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


def protected_resource_metadata(cfg: rw.Config, slug: str) -> dict:
    """RFC 9728 §2 metadata of a wiki's MCP endpoint; `resource` equals its identifier (§3.3). It
    names only the slug, so it says nothing about whether such a wiki exists (CONTRACT §3)."""
    return {
        "resource": resource_url(cfg, slug),
        "authorization_servers": [cfg.public_url],
        "scopes_supported": list(rw.SCOPES),
        "bearer_methods_supported": ["header"],
        "resource_name": f"Wiki {slug} on {cfg.public_host}",
    }


# --- machine endpoints: JSON, CORS without credentials ---------------------------------------------

CORS_PATHS = ("/.well-known/oauth-authorization-server", "/.well-known/oauth-protected-resource/w/<slug>/mcp",
              "/.well-known/jwks.json", "/oauth/token", "/oauth/register", "/oauth/revoke")


def preflight(**_):
    """CORS preflight for the machine endpoints (never the authorization endpoint, RFC 9700 §2.6)."""
    bottle.response.status = 204
    bottle.response.set_header("Access-Control-Allow-Origin", "*")
    bottle.response.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
    bottle.response.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
    bottle.response.set_header("Access-Control-Max-Age", "86400")
    return ""

# --- connected apps and personal access tokens -------------------------------------------------------

@rw.login_required
def apps_page():
    return _apps_page(rw.current_user())


def _apps_page(user, created: dict | None = None, problem: str | None = None) -> str:
    db = rw.instance().db()
    bottle.response.set_header("Cache-Control", "no-store")
    return rw.render("apps", grants=rw.list_grants(db, user["did"]), tokens=rw.list_personal_tokens(db, user["did"]),
                     wikis=rw.user_wikis(db, user["did"]), created=created, problem=problem, labels=SCOPE_LABELS,
                     redirect_host=redirect_host)


@rw.login_required
def apps_revoke_grant(grant_id: int):
    if not rw.revoke_grant(rw.instance().db(), grant_id, rw.current_user()["did"]):
        raise rw.NotFound("You have no such connected app.")
    return rw.redirect("/account/apps")


@rw.login_required
def apps_create_token():
    """Create a personal access token and show it once, on this response only."""
    user, form = rw.current_user(), bottle.request.forms
    try:
        scopes = rw.parse_scopes(" ".join(form.getall("scope")))
        token = rw.create_personal_token(rw.instance().db(), user["did"], form.getunicode("wiki", ""), scopes,
                                         form.getunicode("name", ""), _expiry(form.get("expires_days", "")))
    except rw.RobotError as e:
        bottle.response.status = e.status
        return _apps_page(user, problem=e.message)
    return _apps_page(user, created={"token": token, "name": form.getunicode("name", "").strip(),
                                     "wiki": form.getunicode("wiki", "")})


def _expiry(days: str) -> int | None:
    if not days.strip():
        return None
    text = days.strip()
    if not rw.ASCII_DIGITS_RE.fullmatch(text) or len(text) > 4 or not 1 <= int(text) <= 3650:
        raise rw.BadInput("Expiry is a number of days from 1 to 3650, or empty for none.")
    return rw.now() + int(text) * 86400


@rw.login_required
def apps_revoke_token(token_id: int):
    if not rw.revoke_personal_token(rw.instance().db(), token_id, rw.current_user()["did"]):
        raise rw.NotFound("You have no such token.")
    return rw.redirect("/account/apps")


# --- wiring ---------------------------------------------------------------------------------------------

def _oauth(name: str):
    """The route handler robotwtf_oauth.`name`, imported on the first request to it."""
    def handler(*args, **kwargs):
        import robotwtf_oauth  # imported here: it imports this module, and authlib
        return getattr(robotwtf_oauth, name)(*args, **kwargs)
    handler.__name__ = handler.__qualname__ = name
    return handler


def install(app: bottle.Bottle) -> None:
    """Add the authorization server's routes to robotwtf's app."""
    app.route("/.well-known/oauth-authorization-server", "GET", _oauth("authorization_server_metadata_document"))
    app.route("/.well-known/oauth-protected-resource/w/<slug>/mcp", "GET",
              _oauth("protected_resource_metadata_document"))
    app.route("/.well-known/jwks.json", "GET", _oauth("jwks_document"))
    app.route("/oauth/authorize", "GET", _oauth("authorize_page"))
    app.route("/oauth/authorize", "POST", _oauth("authorize_decision"))
    app.route("/oauth/token", "POST", _oauth("token_endpoint"), csrf=False)
    app.route("/oauth/register", "POST", _oauth("registration_endpoint"), csrf=False)
    app.route("/oauth/revoke", "POST", _oauth("revocation_endpoint"), csrf=False)
    for path in CORS_PATHS:
        app.route(path, "OPTIONS", preflight)
    app.route("/account/apps", "GET", apps_page)
    app.route("/account/apps/grants/<grant_id:int>/revoke", "POST", apps_revoke_grant)
    app.route("/account/apps/tokens", "POST", apps_create_token)
    app.route("/account/apps/tokens/<token_id:int>/revoke", "POST", apps_revoke_token)
