"""robotwtf's core: configuration, errors, the data folder (database and keys) and the storage
API that every other module calls. It imports no other robotwtf module and no web framework: the
browser pages (robotwtf_web), the OAuth server (robotwtf_as), the MCP endpoint (robotwtf_mcp) and
the CLI (robotwtf) are layers over it.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import bisect
import datetime
import fcntl
import functools
import hashlib
import hmac
import importlib.resources
import io
import json
import logging
import operator
import os
import re
import secrets
import select
import socket
import sqlite3
import sys
import tempfile
import threading
import time
import unicodedata
import urllib.parse
import zipfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("robotwtf")

VERSION = "0.1.0"

DB_FILE = "robotwtf.db"
ES256_KEY_FILE = "es256-key.pem"
RS256_KEY_FILE = "rs256-key.pem"
KEY_FILES = (ES256_KEY_FILE, RS256_KEY_FILE)
SERVED_URL_FILE = "served-url"   # the public URL `serve` last served on, for the CLI's links


# --- errors -------------------------------------------------------------------------------
# Core code raises these; the edges (browser pages, JSON endpoints, CLI, OAuth, MCP) turn
# them into their own error shapes, once.

class RobotError(Exception):
    """`message` is written for whoever called: agents read it in tool results, operators in the
    CLI. `case` and `facts` name the situation in data, so an edge that speaks to someone else
    (the browser, to people) can say it in its own words without repeating the checks."""
    status = 400
    code = "bad_input"

    def __init__(self, message: str, case: str = "", **facts):
        super().__init__(message)
        self.message = message
        self.case = case
        self.facts = facts


class BadInput(RobotError):
    status, code = 400, "bad_input"


class Unauthorized(RobotError):
    status, code = 401, "unauthorized"


class Forbidden(RobotError):
    status, code = 403, "forbidden"


class NotFound(RobotError):
    status, code = 404, "not_found"


class Conflict(RobotError):
    status, code = 409, "conflict"


class TooLarge(RobotError):
    status, code = 413, "too_large"


class QuotaExceeded(RobotError):
    status, code = 403, "quota_exceeded"


class RateLimited(RobotError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamError(RobotError):
    status, code = 502, "upstream_error"


class ConfigError(Exception):
    """A setting or the data folder is unusable; the message says how to fix it."""


# --- small helpers ------------------------------------------------------------------------

def now() -> int:
    return int(time.time())


def counted(n: int, noun: str) -> str:
    """'1 revision', '3 revisions': a count with its noun, for text people and models read."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random token; 32 bytes is well above RFC 6749 §10.10's 2^-128 guessing bound."""
    return secrets.token_urlsafe(nbytes)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def printable(text: str) -> str:
    """At most 300 characters of `text` with anything unprintable as `?`, for logs and messages."""
    return "".join(c if c.isprintable() else "?" for c in text[:300])


SLUG_RE = re.compile(r"[a-z0-9][a-z0-9-]{1,28}[a-z0-9]")
RESERVED_SLUGS = frozenset("""
    about account accounts admin api app apps assets auth billing blog callback consent dashboard
    dev docs favicon ftp git healthz help imap invite jwks login logout mail mcp new ns ns1 ns2 null
    oauth pop register revoke robots root settings signup smtp ssh static status support system
    token undefined user users vpn w well-known wiki wikis www
""".split())


SLUG_RULES = (
    (lambda v: bool(v), "is required"),
    (lambda v: 3 <= len(v) <= 30, "must be 3 to 30 characters long"),
    (lambda v: v == v.lower(), "must be lower case"),
    (lambda v: not (v.startswith("-") or v.endswith("-")), "must not start or end with a hyphen"),
    (lambda v: SLUG_RE.fullmatch(v) is not None, "may contain only letters a-z, digits and hyphens"),
)


def validate_slug(value: str, what: str = "slug") -> str:
    """Wiki slugs and usernames share CONTRACT §3's rules; the message names the broken rule."""
    for holds, rule in SLUG_RULES:
        if not holds(value):
            raise BadInput(f"A {what} {rule}.", "name_rule", what=what, rule=rule)
    if value in RESERVED_SLUGS:
        raise BadInput(f"'{value}' is reserved; choose another {what}.", "name_reserved", what=what, value=value)
    return value


DID_RE = re.compile(r"did:(plc:[a-z2-7]{24}|web:[a-zA-Z0-9.%-]+(:[a-zA-Z0-9._%-]+)*)")


def validate_did(value: str) -> str:
    if not DID_RE.fullmatch(value or ""):
        raise BadInput(f"'{value}' is not a did:plc or did:web identifier.")
    return value


# --- configuration --------------------------------------------------------------------------
# One table of settings drives the flags, the environment variables, the defaults, the Config
# fields and the README's configuration table (tests/test_readme.py checks that they agree).

@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    flag: str | None
    env: str
    default: object
    parse: object
    help: str
    secret: bool = False  # its value may hold a password: never shown in messages


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def _parse_positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be a positive whole number")
    return value


AUTO_WORKERS_MAX = 8


def _parse_workers(text: str) -> int:
    if text == "auto":
        return auto_workers()
    value = int(text)
    if not 1 <= value <= 64:
        raise ValueError("must be between 1 and 64")
    return value


def auto_workers() -> int:
    """One worker process per CPU core this process may run on: a worker's Python runs on one
    core at a time (the GIL), so reads scale with workers up to the cores and no further, while
    each worker costs ~30 MiB (README, "Running on several cores")."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(AUTO_WORKERS_MAX, cores))


def _parse_port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise ValueError("must be between 1 and 65535")
    return value


def _parse_connection_limit(text: str) -> int:
    # waitress's loop uses select(), which handles file descriptors below 1024 only; the rest are
    # kept for the listener, the database files of each worker thread, and the log.
    value = int(text)
    if not 1 <= value <= 900:
        raise ValueError("must be between 1 and 900")
    return value


def _parse_database_url(text: str) -> str:
    if not is_postgres_url(text) or not urllib.parse.urlsplit(text).path.strip("/"):
        raise ValueError("must be a postgresql://user:password@host:port/dbname URL "
                         "(unset it to use the SQLite file in the data folder)")
    return text


def _parse_choice(*choices: str):
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text
    return parse


SETTINGS = (
    Setting("host", "--host", "ROBOTWTF_HOST", "127.0.0.1", str, "listen address"),
    Setting("port", "--port", "ROBOTWTF_PORT", 8080, _parse_port, "port"),
    Setting("data", "--data", "ROBOTWTF_DATA", "./robotwtf-data", str, "data folder (database, keys)"),
    Setting("database", "--database", "ROBOTWTF_DATABASE_URL", None, _parse_database_url,
            "database: unset = the SQLite file `robotwtf.db` in the data folder; "
            "`postgresql://user:password@host:port/dbname` (libpq's URL, `?sslmode=` etc.) = PostgreSQL",
            secret=True),
    Setting("public_url", "--public-url", "ROBOTWTF_PUBLIC_URL", None, str,
            "public base URL (issuer, links); default `http://127.0.0.1:<port>`"),
    Setting("signup", "--signup", "ROBOTWTF_SIGNUP", "invite", _parse_choice("open", "invite", "closed"),
            "who may sign up: `open`, `invite` or `closed`"),
    Setting("trusted_proxy", "--trusted-proxy", "ROBOTWTF_TRUSTED_PROXY", None, str,
            "address of a reverse proxy (or `*`) whose X-Forwarded-For/-Proto/-Host are trusted"),
    Setting("plc_url", None, "ROBOTWTF_PLC_URL", "https://plc.directory", str, "PLC directory"),
    Setting("dns_resolver", None, "ROBOTWTF_DNS_RESOLVER", None, str,
            "DNS resolver for handles, `IP` or `IP:port`; default the system's"),
    Setting("insecure_dev_network", None, "ROBOTWTF_INSECURE_DEV_NETWORK", False, _parse_bool,
            "development network mode (tests only): allows http://localhost and loopback peers"),
    Setting("workers", "--workers", "ROBOTWTF_WORKERS", "auto", _parse_workers,
            "worker processes serving requests, each with --threads threads; `auto` is one per CPU core, "
            f"at most {AUTO_WORKERS_MAX}"),
    Setting("threads", "--threads", "ROBOTWTF_THREADS", 8, _parse_positive, "request threads per worker process"),
    Setting("max_body_bytes", "--max-body-bytes", "ROBOTWTF_MAX_BODY_BYTES", 16 * 1024 * 1024,
            _parse_positive, "largest request body accepted, in bytes (larger gets 413)"),
    Setting("session_days", "--session-days", "ROBOTWTF_SESSION_DAYS", 30, _parse_positive,
            "browser sessions last this many days"),
    Setting("max_pages_per_wiki", "--max-pages-per-wiki", "ROBOTWTF_MAX_PAGES_PER_WIKI", 5000, _parse_positive,
            "most pages a wiki may hold (deleted pages don't count)"),
    Setting("max_wiki_bytes", "--max-wiki-bytes", "ROBOTWTF_MAX_WIKI_BYTES", 256 * 1024 * 1024, _parse_positive,
            "most bytes of current page content plus attachments a wiki may hold (history is not counted)"),
    Setting("max_wikis_per_user", "--max-wikis-per-user", "ROBOTWTF_MAX_WIKIS_PER_USER", 10, _parse_positive,
            "most wikis one person may create (instance admins are exempt)"),
    Setting("login_per_minute", "--login-per-minute", "ROBOTWTF_LOGIN_PER_MINUTE", 20, _parse_positive,
            "sign-in attempts allowed per client address per minute"),
    Setting("mcp_per_minute", "--mcp-per-minute", "ROBOTWTF_MCP_PER_MINUTE", 600, _parse_positive,
            "MCP requests allowed per OAuth grant or personal token per minute"),
    Setting("access_token_minutes", "--access-token-minutes", "ROBOTWTF_ACCESS_TOKEN_MINUTES", 1440,
            _parse_positive, "lifetime of an MCP client's access token, in minutes (every request still "
            "re-checks the grant and the person's role)"),
    Setting("refresh_token_days", "--refresh-token-days", "ROBOTWTF_REFRESH_TOKEN_DAYS", 90, _parse_positive,
            "absolute lifetime of an MCP client's refresh tokens, in days; then the person reconnects"),
    Setting("registrations_per_minute", None, "ROBOTWTF_REGISTRATIONS_PER_MINUTE", 10, _parse_positive,
            "OAuth client registrations (RFC 7591) allowed per client address per minute"),
    Setting("token_per_minute", "--token-per-minute", "ROBOTWTF_TOKEN_PER_MINUTE", 120, _parse_positive,
            "OAuth token requests allowed per client address, and separately per OAuth client, per minute"),
    Setting("writes_per_minute", "--writes-per-minute", "ROBOTWTF_WRITES_PER_MINUTE", 300, _parse_positive,
            "changes allowed per minute: MCP write-tool calls per OAuth grant or personal token, and browser "
            "form posts per signed-in person (per client address before sign-in)"),
    Setting("git_per_minute", "--git-per-minute", "ROBOTWTF_GIT_PER_MINUTE", 120, _parse_positive,
            "git clone/fetch requests allowed per personal access token (per client address without one) "
            "per minute; pushes count as writes"),
    Setting("connection_limit", "--connection-limit", "ROBOTWTF_CONNECTION_LIMIT", 256, _parse_connection_limit,
            "most simultaneous client connections (up to 900); further ones wait in the listen backlog"),
    Setting("embeddings_url", "--embeddings-url", "ROBOTWTF_EMBEDDINGS_URL", None, str,
            "OpenAI-compatible embeddings endpoint for semantic search; unset = semantic search off"),
    Setting("embeddings_model", "--embeddings-model", "ROBOTWTF_EMBEDDINGS_MODEL", None, str,
            "the embeddings model to ask for (required with --embeddings-url)"),
    Setting("embeddings_api_key", None, "ROBOTWTF_EMBEDDINGS_API_KEY", None, str,
            "bearer key sent to the embeddings endpoint (environment only, never logged)"),
    Setting("embeddings_timeout", "--embeddings-timeout", "ROBOTWTF_EMBEDDINGS_TIMEOUT", 30, _parse_positive,
            "seconds an embeddings request may take (a search's query waits at most 10)"),
)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


@dataclasses.dataclass(frozen=True)
class Config:
    host: str
    port: int
    data: Path
    database: str | None
    public_url: str
    signup: str
    trusted_proxy: str | None
    plc_url: str
    dns_resolver: str | None
    insecure_dev_network: bool
    workers: int
    threads: int
    max_body_bytes: int
    session_days: int
    login_per_minute: int
    mcp_per_minute: int
    max_pages_per_wiki: int
    max_wiki_bytes: int
    max_wikis_per_user: int
    access_token_minutes: int
    refresh_token_days: int
    registrations_per_minute: int
    token_per_minute: int
    writes_per_minute: int
    git_per_minute: int
    connection_limit: int
    embeddings_url: str | None
    embeddings_model: str | None
    embeddings_api_key: str | None = dataclasses.field(repr=False)  # a secret: never in a repr or log
    embeddings_timeout: int

    @property
    def semantic_search(self) -> bool:
        """Whether semantic search is on: an embeddings server is configured (CONTRACT §6)."""
        return self.embeddings_url is not None

    @property
    def quotas(self) -> "Quotas":
        return Quotas(self.max_pages_per_wiki, self.max_wiki_bytes, self.max_wikis_per_user)

    @property
    def is_https(self) -> bool:
        return self.public_url.startswith("https://")

    @property
    def is_loopback_public_url(self) -> bool:
        return urllib.parse.urlsplit(self.public_url).hostname in ("127.0.0.1", "localhost", "::1")

    @functools.cached_property
    def public_host(self) -> str:
        """host[:port] of the public URL, as a browser sends it in Host."""
        return urllib.parse.urlsplit(self.public_url).netloc

    @property
    def db_path(self) -> Path:
        return self.data / DB_FILE

    @property
    def database_location(self) -> Path | str:
        """What open_database and db_connect take: the PostgreSQL URL, else the SQLite file."""
        return self.database or self.db_path

    @property
    def is_postgres(self) -> bool:
        return self.database is not None

    def url(self, path: str) -> str:
        return self.public_url + path


def load_config(values: dict, environ=os.environ) -> Config:
    """Flags win over the environment, which wins over defaults; every value is validated."""
    resolved = {}
    for setting in SETTINGS:
        raw = values.get(setting.name)
        source = setting.flag
        if raw is None and setting.env in environ:
            raw, source = environ[setting.env], setting.env
        if raw is None:
            raw = setting.default
        try:
            resolved[setting.name] = setting.parse(raw) if isinstance(raw, str) else raw
        except ValueError as e:
            shown = "(value not shown: it may hold a password)" if setting.secret else repr(raw)
            raise ConfigError(f"{source}={shown}: {e}") from None
    resolved["data"] = Path(resolved["data"]).expanduser().absolute()
    resolved["public_url"] = _validate_public_url(
        resolved["public_url"] or f"http://127.0.0.1:{resolved['port']}")
    resolved["plc_url"] = resolved["plc_url"].rstrip("/")
    if resolved["dns_resolver"]:
        _parse_resolver(resolved["dns_resolver"])
    _check_embeddings(resolved)
    return Config(**resolved)


def _check_embeddings(resolved: dict) -> None:
    url, model = resolved["embeddings_url"], resolved["embeddings_model"]
    if not url:
        resolved["embeddings_url"] = None
        return
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--embeddings-url {url!r} must be an absolute http:// or https:// URL, e.g. "
                          "http://127.0.0.1:11434/v1/embeddings.")
    if parts.username or parts.password:
        raise ConfigError("--embeddings-url must not carry a user name or password; put the key in "
                          "ROBOTWTF_EMBEDDINGS_API_KEY instead.")
    if not (model or "").strip():
        raise ConfigError("--embeddings-url is set but --embeddings-model is not: name the model the server "
                          "should use, e.g. --embeddings-model nomic-embed-text.")
    resolved["embeddings_model"] = model.strip()


def _validate_public_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--public-url {url!r} must be an absolute http:// or https:// URL.")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(f"--public-url {url!r} must not carry a user, query or fragment.")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(
            f"--public-url {url!r} uses http:// on a host other than 127.0.0.1/localhost. "
            "Serve robotwtf behind a reverse proxy that terminates TLS and use an https:// public URL "
            "(see README, 'Running behind a reverse proxy').")
    if parts.path not in ("", "/"):
        raise ConfigError(f"--public-url {url!r} must not have a path: robotwtf serves from the root.")
    return f"{parts.scheme}://{parts.netloc}"


def with_served_public_url(cfg: Config, values: dict, environ=os.environ) -> Config:
    """`cfg` with the public URL the server last served on (recorded by record_served_url), for
    commands that print links, unless the public URL or the port was given (flag or environment):
    then the operator said where the server is."""
    if any(values.get(name) is not None or env in environ
           for name, env in (("public_url", "ROBOTWTF_PUBLIC_URL"), ("port", "ROBOTWTF_PORT"))):
        return cfg
    try:
        served = _validate_public_url((cfg.data / SERVED_URL_FILE).read_text(encoding="utf-8").strip())
    except (OSError, UnicodeError, ConfigError):
        return cfg   # never served yet (or the file is damaged): the configured URL it is
    return dataclasses.replace(cfg, public_url=served)


def record_served_url(cfg: Config) -> None:
    """Remember the public URL `serve` serves on, so `login-link` and `invite create` print links
    that work (a server started with --port 9123 gets links on 9123)."""
    write_private_file(cfg.data / SERVED_URL_FILE, (cfg.public_url + "\n").encode())


def _parse_resolver(text: str) -> None:
    from robotwtf_atproto import parse_dns_resolver_setting
    try:
        parse_dns_resolver_setting(text)
    except ValueError as e:
        raise ConfigError(f"ROBOTWTF_DNS_RESOLVER={text!r}: {e}") from None


# --- packaged files ---------------------------------------------------------------------------

def resource_root():
    """The folder holding schema.sql and views/, beside this module in a checkout or in the pyz."""
    try:
        return importlib.resources.files(sys.modules[__name__])
    except TypeError:  # Python 3.11 resolves only packages; shiv unpacks to real files anyway
        return Path(__file__).resolve().parent


def schema_sql() -> str:
    return resource_root().joinpath("schema.sql").read_text(encoding="utf-8")


# --- database ---------------------------------------------------------------------------------

# (version, SQL) pairs; applying them in order to a version-1 database must give exactly the
# schema a new database gets from schema.sql (tests/test_foundation.py compares them).
MIGRATIONS: tuple[tuple[int, str], ...] = (
    # 2: wiki storage (pages, revisions, links, attachments, full-text index)
    (2, """
CREATE TABLE pages (
    id          INTEGER PRIMARY KEY,
    wiki_id     INTEGER NOT NULL REFERENCES wikis(id) ON DELETE CASCADE,
    path        TEXT NOT NULL,
    path_key    TEXT NOT NULL,
    revision_id TEXT NOT NULL,
    content     TEXT NOT NULL,
    title       TEXT NOT NULL DEFAULT '',
    category    TEXT NOT NULL DEFAULT '',
    tags        TEXT NOT NULL DEFAULT '[]',
    meta        TEXT NOT NULL DEFAULT '{}',
    words       INTEGER NOT NULL DEFAULT 0,
    size        INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    deleted_at  INTEGER
);
CREATE UNIQUE INDEX pages_live_path ON pages(wiki_id, path_key) WHERE deleted_at IS NULL;
CREATE INDEX pages_wiki_updated ON pages(wiki_id, updated_at);
CREATE TABLE revisions (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    wiki_id    INTEGER NOT NULL REFERENCES wikis(id) ON DELETE CASCADE,
    page_id    INTEGER NOT NULL REFERENCES pages(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL CHECK (kind IN ('create', 'update', 'rename', 'delete', 'restore', 'attachment')),
    path       TEXT NOT NULL,
    old_path   TEXT,
    attachment TEXT,
    content    TEXT NOT NULL,
    author_did TEXT NOT NULL,
    via        TEXT NOT NULL,
    message    TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX revisions_page ON revisions(page_id, seq);
CREATE INDEX revisions_wiki ON revisions(wiki_id, seq);
CREATE TABLE links (
    page_id    INTEGER NOT NULL REFERENCES pages(id) ON DELETE CASCADE,
    wiki_id    INTEGER NOT NULL REFERENCES wikis(id) ON DELETE CASCADE,
    target_key TEXT NOT NULL,
    target     TEXT NOT NULL,
    PRIMARY KEY (page_id, target_key)
) WITHOUT ROWID;
CREATE INDEX links_target ON links(wiki_id, target_key);
CREATE TABLE attachments (
    page_id      INTEGER NOT NULL REFERENCES pages(id) ON DELETE CASCADE,
    filename_key TEXT NOT NULL,
    filename     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    data         BLOB NOT NULL,
    author_did   TEXT NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (page_id, filename_key)
);
CREATE VIEW live_pages AS SELECT id, path, title, content FROM pages WHERE deleted_at IS NULL;
CREATE VIRTUAL TABLE pages_fts USING fts5(
    path, title, content, content='live_pages', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER pages_fts_insert AFTER INSERT ON pages WHEN new.deleted_at IS NULL BEGIN
    INSERT INTO pages_fts (rowid, path, title, content) VALUES (new.id, new.path, new.title, new.content);
END;
CREATE TRIGGER pages_fts_delete AFTER DELETE ON pages WHEN old.deleted_at IS NULL BEGIN
    INSERT INTO pages_fts (pages_fts, rowid, path, title, content)
    VALUES ('delete', old.id, old.path, old.title, old.content);
END;
CREATE TRIGGER pages_fts_update AFTER UPDATE OF path, title, content, deleted_at ON pages BEGIN
    INSERT INTO pages_fts (pages_fts, rowid, path, title, content)
    SELECT 'delete', old.id, old.path, old.title, old.content WHERE old.deleted_at IS NULL;
    INSERT INTO pages_fts (rowid, path, title, content)
    SELECT new.id, new.path, new.title, new.content WHERE new.deleted_at IS NULL;
END;
"""),
    (3, """
CREATE TABLE login_requests (
    state        TEXT PRIMARY KEY,
    browser_hash TEXT NOT NULL,
    pending      TEXT NOT NULL,
    return_to    TEXT NOT NULL,
    invite       TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
"""),
    (4, """
CREATE TABLE oauth_clients (
    client_id     TEXT PRIMARY KEY,
    secret_hash   TEXT,
    auth_method   TEXT NOT NULL CHECK (auth_method IN ('none', 'client_secret_post', 'client_secret_basic')),
    redirect_uris TEXT NOT NULL,
    grant_types   TEXT NOT NULL,
    client_name   TEXT NOT NULL DEFAULT '',
    client_uri    TEXT NOT NULL DEFAULT '',
    logo_uri      TEXT NOT NULL DEFAULT '',
    is_document   INTEGER NOT NULL DEFAULT 0,
    cache_until   INTEGER,
    created_at    INTEGER NOT NULL
);
CREATE TABLE oauth_grants (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id    TEXT NOT NULL REFERENCES oauth_clients(client_id) ON DELETE CASCADE,
    user_did     TEXT NOT NULL REFERENCES users(did) ON DELETE CASCADE,
    wiki_id      INTEGER NOT NULL REFERENCES wikis(id) ON DELETE CASCADE,
    scope        TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX oauth_grants_user ON oauth_grants(user_did);
CREATE INDEX oauth_grants_client ON oauth_grants(client_id);
CREATE INDEX oauth_grants_wiki ON oauth_grants(wiki_id);
CREATE TABLE oauth_codes (
    code_hash               TEXT PRIMARY KEY,
    client_id               TEXT NOT NULL REFERENCES oauth_clients(client_id) ON DELETE CASCADE,
    user_did                TEXT NOT NULL REFERENCES users(did) ON DELETE CASCADE,
    wiki_id                 INTEGER NOT NULL REFERENCES wikis(id) ON DELETE CASCADE,
    scope                   TEXT NOT NULL,
    resource                TEXT NOT NULL,
    redirect_uri            TEXT NOT NULL,
    redirect_uri_in_request INTEGER NOT NULL,
    code_challenge          TEXT NOT NULL UNIQUE,
    created_at              INTEGER NOT NULL,
    expires_at              INTEGER NOT NULL,
    used_at                 INTEGER,
    grant_id                INTEGER REFERENCES oauth_grants(id) ON DELETE SET NULL
);
CREATE INDEX oauth_codes_expiry ON oauth_codes(expires_at);
CREATE TABLE oauth_refresh_tokens (
    token_hash     TEXT PRIMARY KEY,
    grant_id       INTEGER NOT NULL REFERENCES oauth_grants(id) ON DELETE CASCADE,
    scope          TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER,
    successor_hash TEXT
);
CREATE INDEX oauth_refresh_tokens_grant ON oauth_refresh_tokens(grant_id);
CREATE INDEX oauth_refresh_tokens_expiry ON oauth_refresh_tokens(expires_at);
CREATE TABLE personal_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash   TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    user_did     TEXT NOT NULL REFERENCES users(did) ON DELETE CASCADE,
    wiki_id      INTEGER NOT NULL REFERENCES wikis(id) ON DELETE CASCADE,
    scope        TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER
);
CREATE INDEX personal_tokens_user ON personal_tokens(user_did);
CREATE INDEX personal_tokens_wiki ON personal_tokens(wiki_id);
"""),
    # 5: wiki_usage (the quota check of every write) reads this index instead of every page row,
    # whose size column sits behind the content's overflow pages.
    (5, """
CREATE INDEX pages_live_size ON pages(wiki_id, size) WHERE deleted_at IS NULL;
"""),
    # 6: counters the quota check reads instead of summing the wiki's pages on every write
    # (migration 5's index still grew with the wiki: 0.45 ms of each write at 1,000 pages).
    (6, """
DROP INDEX pages_live_size;
-- Live pages and their bytes (content, plus the attachments of live pages) per wiki, kept by
-- triggers inside every writing transaction, so a quota check reads one row however big the wiki.
-- A hard-deleted page's files are counted out BEFORE the delete: its cascade removes them after
-- the page row is gone, when their own trigger can no longer tell that the page was live.
CREATE TABLE wiki_totals (
    wiki_id INTEGER PRIMARY KEY REFERENCES wikis(id) ON DELETE CASCADE,
    pages   INTEGER NOT NULL DEFAULT 0,
    bytes   INTEGER NOT NULL DEFAULT 0
);
CREATE TRIGGER wiki_totals_new_wiki AFTER INSERT ON wikis BEGIN
    INSERT INTO wiki_totals (wiki_id) VALUES (new.id);
END;
CREATE TRIGGER wiki_totals_page_insert AFTER INSERT ON pages WHEN new.deleted_at IS NULL BEGIN
    UPDATE wiki_totals SET pages = pages + 1, bytes = bytes + new.size WHERE wiki_id = new.wiki_id;
END;
CREATE TRIGGER wiki_totals_page_delete BEFORE DELETE ON pages WHEN old.deleted_at IS NULL BEGIN
    UPDATE wiki_totals SET pages = pages - 1,
        bytes = bytes - old.size - (SELECT coalesce(sum(size), 0) FROM attachments WHERE page_id = old.id)
    WHERE wiki_id = old.wiki_id;
END;
CREATE TRIGGER wiki_totals_page_update AFTER UPDATE OF size, deleted_at ON pages BEGIN
    UPDATE wiki_totals SET pages = pages + (new.deleted_at IS NULL) - (old.deleted_at IS NULL),
        bytes = bytes + CASE WHEN new.deleted_at IS NULL THEN new.size ELSE 0 END
            - CASE WHEN old.deleted_at IS NULL THEN old.size ELSE 0 END
            + ((new.deleted_at IS NULL) - (old.deleted_at IS NULL))
              * (SELECT coalesce(sum(size), 0) FROM attachments WHERE page_id = new.id)
    WHERE wiki_id = new.wiki_id;
END;
CREATE TRIGGER wiki_totals_attachment_insert AFTER INSERT ON attachments BEGIN
    UPDATE wiki_totals SET bytes = bytes + new.size
    WHERE wiki_id = (SELECT wiki_id FROM pages WHERE id = new.page_id AND deleted_at IS NULL);
END;
CREATE TRIGGER wiki_totals_attachment_delete AFTER DELETE ON attachments BEGIN
    UPDATE wiki_totals SET bytes = bytes - old.size
    WHERE wiki_id = (SELECT wiki_id FROM pages WHERE id = old.page_id AND deleted_at IS NULL);
END;
CREATE TRIGGER wiki_totals_attachment_update AFTER UPDATE OF size, page_id ON attachments BEGIN
    UPDATE wiki_totals SET bytes = bytes - old.size
    WHERE wiki_id = (SELECT wiki_id FROM pages WHERE id = old.page_id AND deleted_at IS NULL);
    UPDATE wiki_totals SET bytes = bytes + new.size
    WHERE wiki_id = (SELECT wiki_id FROM pages WHERE id = new.page_id AND deleted_at IS NULL);
END;
INSERT INTO wiki_totals (wiki_id, pages, bytes)
SELECT w.id,
    (SELECT count(*) FROM pages WHERE wiki_id = w.id AND deleted_at IS NULL),
    (SELECT coalesce(sum(size), 0) FROM pages WHERE wiki_id = w.id AND deleted_at IS NULL)
    + (SELECT coalesce(sum(a.size), 0) FROM attachments a JOIN pages p ON p.id = a.page_id
       WHERE p.wiki_id = w.id AND p.deleted_at IS NULL)
FROM wikis w;
"""),
    # 7: revisions that came in with an imported robotwtf export keep their authors and times;
    # this marks them, with the id they had there and the author's name as that instance knew it.
    (7, """
CREATE TABLE imported_revisions (
    revision_id TEXT PRIMARY KEY REFERENCES revisions(id) ON DELETE CASCADE,
    original_id TEXT NOT NULL,
    author_name TEXT NOT NULL DEFAULT '',
    imported_at INTEGER NOT NULL
) WITHOUT ROWID;
"""),
    # 8: the browser's page tree reads every live path of a wiki from this index alone
    (8, """
CREATE INDEX pages_live_paths ON pages(wiki_id, path_key, path) WHERE deleted_at IS NULL;
"""),
    # 9: git access to wikis (robotwtf_git)
    (9, """
-- Git access to a wiki (robotwtf_git, migration 9). A row means its owner turned it on.
CREATE TABLE git_access (
    wiki_id    INTEGER PRIMARY KEY REFERENCES wikis(id) ON DELETE CASCADE,
    enabled_at INTEGER NOT NULL
);
-- The bytes each attachment revision wrote while git access was on (the attachments table keeps
-- only the current ones), so the git history can show every version; NULL data is a deletion.
-- An attachment revision without a row wrote bytes that were not kept.
CREATE TABLE attachment_versions (
    revision_seq INTEGER PRIMARY KEY REFERENCES revisions(seq) ON DELETE CASCADE,
    data         BLOB
);
-- What git shows of each revision once a fetch or a push reached it: the git blob ids of the
-- page's content after it and of the attachment it wrote, and the commit showing the wiki right
-- after it, exactly as served (a pushed commit that made several revisions is the commit of the
-- last one; the others have none). Kept, so commit ids never change.
CREATE TABLE git_revisions (
    revision_seq    INTEGER PRIMARY KEY REFERENCES revisions(seq) ON DELETE CASCADE,
    wiki_id         INTEGER NOT NULL REFERENCES wikis(id) ON DELETE CASCADE,
    page_blob       TEXT NOT NULL,
    attachment_blob TEXT,
    commit_id       TEXT,
    commit_raw      BLOB
);
CREATE INDEX git_revisions_wiki ON git_revisions(wiki_id, revision_seq);
CREATE UNIQUE INDEX git_revisions_commit ON git_revisions(wiki_id, commit_id) WHERE commit_id IS NOT NULL;
"""),
    # 10: the semantic index (robotwtf_semantic). Every live page gets a row, stale until the
    # indexer has cut it into chunks.
    (10, """
-- Semantic search (robotwtf_semantic). One row per page the index follows. Every change of the
-- page (robotwtf_store._record, in the change's own transaction) makes it 'stale', or 'gone' for
-- a deletion (its chunks are dropped then too); the indexer makes it 'ready' once it has cut the
-- page into chunks again. `stamp` becomes one more than any stamp of the wiki whenever the row
-- or the page's chunks change, so each process's in-memory index of a wiki fetches only what
-- changed since it last looked.
CREATE TABLE semantic_pages (
    page_id INTEGER PRIMARY KEY REFERENCES pages(id) ON DELETE CASCADE,
    wiki_id INTEGER NOT NULL REFERENCES wikis(id) ON DELETE CASCADE,
    state   TEXT NOT NULL CHECK (state IN ('stale', 'ready', 'gone')),
    stamp   INTEGER NOT NULL
);
CREATE INDEX semantic_pages_wiki_stamp ON semantic_pages(wiki_id, stamp);
CREATE INDEX semantic_pages_stale ON semantic_pages(wiki_id) WHERE state = 'stale';
-- A page's chunks: `hash` is the SHA-256 of the model name and the text sent for embedding (the
-- page's path and title, the section's heading path, the chunk); `vector` is the embedding
-- (float32, little-endian, unit length) and `code` its sign bits (bit i set when component i is
-- negative), both NULL until embedded; `failed` marks a chunk the server refused to embed.
CREATE TABLE semantic_chunks (
    id       INTEGER PRIMARY KEY,
    page_id  INTEGER NOT NULL REFERENCES semantic_pages(page_id) ON DELETE CASCADE,
    wiki_id  INTEGER NOT NULL,
    position INTEGER NOT NULL,
    hash     TEXT NOT NULL,
    failed   INTEGER NOT NULL DEFAULT 0,
    code     BLOB,
    vector   BLOB,
    title    TEXT NOT NULL,
    section  TEXT NOT NULL,
    text     TEXT NOT NULL
);
CREATE INDEX semantic_chunks_page ON semantic_chunks(page_id);
CREATE INDEX semantic_chunks_hash ON semantic_chunks(hash);
CREATE INDEX semantic_chunks_pending ON semantic_chunks(wiki_id, failed) WHERE vector IS NULL;
-- What a process loads into memory to search a wiki: the codes alone, without the rows.
CREATE INDEX semantic_chunks_codes ON semantic_chunks(wiki_id, page_id, id, code) WHERE code IS NOT NULL;
-- The model the vectors come from and their dimensions (a change of either empties the index),
-- and the embeddings server's last failure, for the admin page.
CREATE TABLE semantic_state (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    model         TEXT,
    dimensions    INTEGER,
    last_error    TEXT,
    last_error_at INTEGER,
    indexed_at    INTEGER
);
INSERT INTO semantic_state (id) VALUES (1);
INSERT INTO semantic_pages (page_id, wiki_id, state, stamp) SELECT id, wiki_id, 'stale', id FROM pages
WHERE deleted_at IS NULL;
"""),
    # 11: shared state for several worker processes: rate-limit counts and background-job leases
    (11, """
-- State the processes serving one instance share (worker processes, later several machines).
-- Rate-limit permits handed out per key and minute (minutes since the epoch); workers reserve
-- them in small batches (RateLimiter), rows older than the previous minute are pruned.
CREATE TABLE rate_counts (
    key    TEXT NOT NULL,
    minute INTEGER NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (key, minute)
);
-- Which process runs a background job of the instance (LeasedJob): held until expires_at (unix
-- seconds), renewed by its holder long before that, taken over by another once it lapses.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at REAL NOT NULL
);
"""),
)
SCHEMA_VERSION = MIGRATIONS[-1][0] if MIGRATIONS else 1


# --- database: one interface over two engines ---------------------------------------------------
# Storage code talks to a connection the way it talks to sqlite3's: db.execute(sql, params) with
# `?` or `:name` placeholders, rows readable by column name and by index, `transaction(db)` for
# writes and `read_snapshot(db)` for consistent reads, INSERT ... RETURNING id for a new row's id,
# and IntegrityError / DatabaseError (the DB-API classes of the stdlib's sqlite3, which the
# PostgreSQL connection raises too). SQLite is sqlite3 itself, so its hot path costs nothing
# extra; PostgreSQL (a `postgresql://` URL, through psycopg and the system's libpq) is a thin
# wrapper that translates placeholders. The few statements that differ between the engines pick
# their text by `db.engine` (full-text search, the JSON of read_page's links, schema, backup).

IntegrityError = sqlite3.IntegrityError
DatabaseError = sqlite3.DatabaseError
POSTGRES_SCHEMES = ("postgresql", "postgres")


class SqliteDatabase(sqlite3.Connection):
    """sqlite3's connection (every call stays in C) plus what transaction() and read_snapshot()
    ask of an engine."""

    engine = "sqlite"
    broken = False
    writer_queue: int | None = None  # the descriptor its process's writers queue on (transaction)

    def begin_write(self) -> None:
        self.execute("BEGIN IMMEDIATE")  # takes the write lock up front

    def begin_read(self) -> None:
        self.execute("BEGIN")


def is_postgres_url(location) -> bool:
    return isinstance(location, str) and urllib.parse.urlsplit(location).scheme in POSTGRES_SCHEMES


def redact_url(url: str) -> str:
    """A database URL fit for logs and messages: the password (in the netloc or a `password=`
    query parameter) replaced by ***."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(":" + parts.password + "@", ":***@", 1)
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def describe_database(location) -> str:
    return redact_url(location) if is_postgres_url(location) else str(location)


def db_connect(location) -> SqliteDatabase | PostgresDatabase:
    """The one place connections are opened. SQLite: WAL, foreign keys on, a generous busy
    timeout. PostgreSQL: see PostgresDatabase.connect."""
    if is_postgres_url(location):
        return PostgresDatabase.connect(location)
    db = sqlite3.connect(location, timeout=10, isolation_level=None, check_same_thread=False,
                         factory=SqliteDatabase)
    db.writer_queue = _writer_queue(Path(location))
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA busy_timeout = 10000")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA synchronous = NORMAL")
    return db


# Writers of this process queue here before the database's write lock. Waiting inside SQLite means
# its busy handler, which sleeps in growing steps (up to 100 ms) and polls: after every commit the
# database sat idle until some sleeper woke (make bench: 4 writers got 215 writes/s).
_WRITER = threading.RLock()
# ...and the writers of all worker processes then queue on an flock of `<database>-writer`, which
# the kernel hands over the moment it is released: a worker whose writers waited in SQLite's busy
# handler lost every race to the worker holding the lock, whose next writer was already queued.
_WRITER_QUEUES: dict[tuple[int, Path], int] = {}
_WRITER_QUEUES_LOCK = threading.Lock()


def _writer_queue(path: Path) -> int:
    """This process's descriptor of the database's writer queue file (per process: a descriptor
    inherited across fork would share its flock with the parent's)."""
    key = (os.getpid(), path)
    with _WRITER_QUEUES_LOCK:
        if key not in _WRITER_QUEUES:
            _WRITER_QUEUES[key] = os.open(f"{path}-writer", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return _WRITER_QUEUES[key]


@contextlib.contextmanager
def transaction(db):
    """The write lock is taken up front (SQLite: BEGIN IMMEDIATE; PostgreSQL: one advisory lock
    for the whole database), so a read-then-write cannot be overtaken by another writer, in this
    process or any other. Inside another transaction of this connection it is a savepoint, so
    several writes (a git push's) can be applied all or nothing: each one still undoes its own
    part when it fails."""
    with _WRITER:
        if db.in_transaction:
            db.execute("SAVEPOINT nested_write")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK TO nested_write")
                db.execute("RELEASE nested_write")
                raise
            db.execute("RELEASE nested_write")
            return
        queue = getattr(db, "writer_queue", None)  # SQLite; PostgreSQL writers queue on the advisory lock
        if queue is not None:
            fcntl.flock(queue, fcntl.LOCK_EX)
        try:
            db.begin_write()
            try:
                yield db
            except BaseException:
                db.rollback()
                raise
            db.commit()
        finally:
            if queue is not None:
                fcntl.flock(queue, fcntl.LOCK_UN)


@contextlib.contextmanager
def read_snapshot(db):
    """A read transaction: every query inside sees the same committed state, without blocking
    writers (SQLite's WAL; PostgreSQL's REPEATABLE READ)."""
    db.begin_read()
    try:
        yield db
    finally:
        db.commit()


# --- database: PostgreSQL ------------------------------------------------------------------------

# The key of the advisory lock every writing transaction holds (pg_advisory_xact_lock): robotwtf's
# one write lock, as SQLite has one, shared by every process on every machine. Any constant works;
# this one is "robotwtf" in ASCII.
POSTGRES_WRITE_LOCK = 0x726F626F74777466
# Held (session-wide) while one process creates or upgrades the schema, so that machines starting
# together do it once.
POSTGRES_SCHEMA_LOCK = POSTGRES_WRITE_LOCK + 1
TUPLES_OK = 2  # libpq's PGRES_TUPLES_OK: the statement returned rows (psycopg.pq.ExecStatus.TUPLES_OK)
# Placeholders in storage SQL: string literals, quoted names and comments are copied as they are;
# `?` and `:name` become psycopg's %s and %(name)s; a literal % is doubled. `::` is a cast.
_SQL_TOKEN_RE = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|%|\?|(?<![:\w]):([A-Za-z_]\w*)""")


@functools.lru_cache(maxsize=2048)
def postgres_sql(sql: str) -> str:
    """Storage SQL (sqlite3's placeholders) in psycopg's placeholders."""
    def replace(match: re.Match) -> str:
        token = match[0]
        if token == "?":
            return "%s"
        if match[1]:
            return f"%({match[1]})s"
        return token.replace("%", "%%")
    return _SQL_TOKEN_RE.sub(replace, sql)


class PostgresRow(tuple):
    """A row readable by index and by column name, like sqlite3.Row (dict(row) works too)."""

    __slots__ = ()
    _index: dict[str, int] = {}

    def __getitem__(self, key):
        if isinstance(key, str):
            try:
                key = self._index[key]
            except KeyError:
                raise IndexError(f"No item with that key: {key!r}") from None
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@functools.lru_cache(maxsize=1024)
def _row_class(names: tuple[str, ...]) -> type:
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name, i)  # a repeated name reads the first column, as sqlite3.Row does
    return type("PostgresRow", (PostgresRow,), {"__slots__": (), "_index": index})


def _postgres_row_factory(cursor):
    description = cursor.description
    if description is None:
        return tuple
    return _row_class(tuple(column.name for column in description))


class _RowFactories(dict):
    """A row factory per statement text that remembers its row class: psycopg builds the column
    descriptions anew on every execute (~50 us for a page row), the class needs them only once.
    A statement whose columns changed under it (SELECT * across a migration) is looked at again."""

    def __missing__(self, sql: str):
        if len(self) >= 2048:  # statements built with a varying number of placeholders
            self.clear()
        known: list[type] = []

        def factory(cursor):
            result = cursor.pgresult
            if known and result is not None and result.nfields == len(known[0]._index):
                return known[0]
            row_class = _postgres_row_factory(cursor)
            known[:] = [row_class] if row_class is not tuple else []
            return row_class

        self[sql] = factory
        return factory


class PostgresCursor:
    """psycopg's cursor, with no rows (rather than an error) from a statement that returns none,
    as sqlite3 has it. New ids come from INSERT ... RETURNING id on both engines."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor):
        self._cursor = cursor

    def _has_rows(self) -> bool:
        result = self._cursor.pgresult
        return result is not None and result.status == TUPLES_OK

    def fetchone(self):
        return self._cursor.fetchone() if self._has_rows() else None

    def fetchall(self) -> list:
        return self._cursor.fetchall() if self._has_rows() else []

    def fetchmany(self, size: int = 1) -> list:
        return self._cursor.fetchmany(size) if self._has_rows() else []

    def __iter__(self):
        return iter(self.fetchall())

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def description(self):
        return self._cursor.description

    def close(self) -> None:
        self._cursor.close()


class PostgresStatementCursor:
    """sqlite3's cursor idiom (cursor(), then execute and read or iterate it). Its row_factory is
    accepted and ignored: PostgreSQL rows are tuples already (set to None for plain tuples)."""

    row_factory = None

    def __init__(self, db: "PostgresDatabase"):
        self._db, self._result = db, None

    def execute(self, sql: str, params=()) -> "PostgresStatementCursor":
        self._result = self._db.execute(sql, params)
        return self

    def fetchone(self):
        return self._result.fetchone()

    def fetchall(self) -> list:
        return self._result.fetchall()

    def fetchmany(self, size: int = 1) -> list:
        return self._result.fetchmany(size)

    def __iter__(self):
        return iter(self._result)

    def close(self) -> None:
        if self._result is not None:
            self._result.close()


class PostgresDatabase:
    """A psycopg connection in autocommit mode (as robotwtf's SQLite connections are: a statement
    outside transaction() commits by itself) speaking sqlite3's dialect of the DB-API."""

    engine = "postgresql"

    def __init__(self, connection, url: str):
        self._conn = connection
        self.url = url
        self._row_factories = _RowFactories()

    @classmethod
    def connect(cls, url: str) -> "PostgresDatabase":
        psycopg = _psycopg()
        try:
            connection = psycopg.connect(url, autocommit=True, row_factory=_postgres_row_factory,
                                         connect_timeout=10, application_name="robotwtf")
        except psycopg.Error as e:
            raise ConfigError(f"Cannot connect to the database {redact_url(url)}: "
                              f"{_scrubbed(str(e).strip(), url)}") from None
        _register_postgres_types(psycopg, connection)
        return cls(connection, url)

    def execute(self, sql: str, params=()) -> PostgresCursor:
        cursor = self._conn.cursor(row_factory=self._row_factories[sql])
        try:
            cursor.execute(postgres_sql(sql), params)
        except _psycopg().Error as e:
            raise _as_sqlite_error(e, self.url) from None
        return PostgresCursor(cursor)

    def executemany(self, sql: str, rows) -> None:
        rows = list(rows)
        if not rows:
            return
        try:
            self._conn.cursor().executemany(postgres_sql(sql), rows)
        except _psycopg().Error as e:
            raise _as_sqlite_error(e, self.url) from None

    def cursor(self) -> "PostgresStatementCursor":
        return PostgresStatementCursor(self)

    def executescript(self, sql: str) -> None:
        """Several statements without parameters, sent as they are (PL/pgSQL bodies and all)."""
        try:
            self._conn.execute(sql)
        except _psycopg().Error as e:
            raise _as_sqlite_error(e, self.url) from None

    def batches(self, sql: str, size: int):
        """The rows of `sql`, `size` at a time, through a server-side cursor (inside a transaction)."""
        with self._conn.cursor(name="robotwtf_batches") as cursor:
            try:
                cursor.execute(postgres_sql(sql), ())
                while rows := cursor.fetchmany(size):
                    yield rows
            except _psycopg().Error as e:
                raise _as_sqlite_error(e, self.url) from None

    def begin_write(self) -> None:
        self.executescript(f"BEGIN; SELECT pg_advisory_xact_lock({POSTGRES_WRITE_LOCK})")

    def begin_read(self) -> None:
        self.executescript("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def commit(self) -> None:
        if self.in_transaction:
            self.executescript("COMMIT")

    def rollback(self) -> None:
        """Ends the transaction whatever happened; a connection lost mid-way has nothing to undo
        (the server rolled it back) and is marked broken."""
        if self.broken:
            return
        with contextlib.suppress(DatabaseError):
            self.executescript("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        return self._conn.info.transaction_status != _psycopg().pq.TransactionStatus.IDLE

    @property
    def broken(self) -> bool:
        """Lost, or about to be found lost: an idle connection has nothing to read unless the
        server ended it (a restart, pg_terminate_backend, a failover), so the next request
        opens a new one instead of failing on this one."""
        if self._conn.closed or self._conn.broken:
            return True
        if self.in_transaction:
            return False
        return bool(select.select([self._conn.fileno()], [], [], 0)[0])

    @property
    def server_version(self) -> str:
        number = self._conn.info.server_version
        return f"{number // 10000}.{number % 10000}"

    def close(self) -> None:
        self._conn.close()


def _psycopg():
    """psycopg, imported on the first PostgreSQL connection (SQLite instances never load it)."""
    try:
        import psycopg
    except ImportError as e:
        raise ConfigError(f"PostgreSQL needs the system's libpq client library ({e}). Install it "
                          "(Debian/Ubuntu: apt-get install libpq5), or unset --database to use SQLite.") from None
    return psycopg


def _register_postgres_types(psycopg, connection) -> None:
    """Values as sqlite3 gives them: JSON as text (storage code parses it), whole numbers (sum()
    and avg() give numeric) as int, and Python booleans stored as 1/0 in integer columns."""
    from psycopg.adapt import Dumper, Loader
    from psycopg.types.string import TextLoader

    class NumberLoader(Loader):
        def load(self, data):
            text = bytes(data).decode()
            return int(text) if text.lstrip("-").isdigit() else float(text)

    class BoolAsIntDumper(Dumper):
        oid = psycopg.adapters.types["int8"].oid

        def dump(self, obj):
            return b"1" if obj else b"0"

    for name in ("json", "jsonb"):
        connection.adapters.register_loader(name, TextLoader)
    connection.adapters.register_loader("numeric", NumberLoader)
    connection.adapters.register_dumper(bool, BoolAsIntDumper)


def _scrubbed(text: str, url: str) -> str:
    password = urllib.parse.urlsplit(url).password
    return text.replace(password, "***") if password else text


def _as_sqlite_error(error, url: str) -> sqlite3.Error:
    """A psycopg error as the sqlite3 class storage code catches (the message keeps no password)."""
    psycopg = _psycopg()
    message = _scrubbed(str(error).strip(), url)
    if isinstance(error, psycopg.IntegrityError):
        return sqlite3.IntegrityError(message)
    if isinstance(error, psycopg.OperationalError):
        return sqlite3.OperationalError(message)
    return sqlite3.DatabaseError(message)


# --- database: schema and migrations --------------------------------------------------------------
# schema.sql and every migration are written once for both engines: the portable part in SQLite's
# spelling of standard SQL, which schema_script() turns into PostgreSQL's by the few rewrites in
# POSTGRES_DDL (whole-number columns are 64-bit, ids are identity columns, BLOB is BYTEA, REAL
# is double precision, TEXT compares bytewise as in SQLite); what cannot be portable (triggers, full-text search) sits in
# blocks that a line `-- @sqlite` or `-- @postgresql` opens and `-- @both` closes.

POSTGRES_DDL = (
    (re.compile(r"\bINTEGER PRIMARY KEY(?: AUTOINCREMENT)?(?!\s+REFERENCES)"),
     "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),  # SQLite's REAL is 8 bytes; PostgreSQL's real only 4
    (re.compile(r"\bTEXT\b"), 'TEXT COLLATE "C"'),
    (re.compile(r"\)\s*WITHOUT ROWID"), ")"),
)
ENGINE_BLOCK_RE = re.compile(r"^-- @(sqlite|postgresql|both)[ \t]*$", re.MULTILINE)
# The oldest schema version a PostgreSQL database is upgraded from. A new PostgreSQL database
# starts from schema.sql at the current version; the migrations up to this one are SQLite's alone,
# and every later one must run on both engines (tests/postgres upgrades a database made from
# tests/data/schema_v<this>.sql with each of them).
FIRST_POSTGRES_VERSION = 10


def schema_script(sql: str, engine: str) -> str:
    """`sql` (schema.sql or a migration) for `engine`: its portable part, translated for
    PostgreSQL, and that engine's blocks."""
    parts = ENGINE_BLOCK_RE.split(sql)
    script = []
    for block_engine, text in zip(["both", *parts[1::2]], parts[0::2]):
        if block_engine == "both" and engine == "postgresql":
            for pattern, replacement in POSTGRES_DDL:
                text = pattern.sub(replacement, text)
        if block_engine in ("both", engine):
            script.append(text)
    return "".join(script)


def database_exists(location) -> bool:
    """Whether an instance's database is there: the SQLite file, or robotwtf's tables in the
    PostgreSQL database (which the operator creates; robotwtf fills it)."""
    if not is_postgres_url(location):
        return Path(location).exists()
    db = db_connect(location)
    try:
        return bool(_postgres_tables(db))
    finally:
        db.close()


def open_database(location, create: bool):
    """Open robotwtf's database (an SQLite file's path or a PostgreSQL URL), refusing anything that
    is not one; create its schema or apply pending migrations."""
    postgres = is_postgres_url(location)
    existed = postgres or Path(location).exists()
    if not existed and not create:
        raise ConfigError(f"No database at {location}; run `robotwtf init` or start the server once.")
    try:
        db = db_connect(location)
    except sqlite3.DatabaseError:
        raise ConfigError(f"{location} is not an SQLite database (corrupt or another kind of file). "
                          "robotwtf will not touch it: move it away or restore a backup.") from None
    try:
        if postgres:
            db.execute("SELECT pg_advisory_lock(?)", (POSTGRES_SCHEMA_LOCK,))
        version = _schema_version(db, location) if existed else None
        if version is None and postgres and not create:
            raise ConfigError(f"The database {redact_url(location)} has no robotwtf schema yet; "
                              "run `robotwtf init` (or start the server once) with this --database.")
        if version is None:
            _run_script(db, schema_sql(), SCHEMA_VERSION)
        elif version < SCHEMA_VERSION:
            _migrate(db, version)
        elif version > SCHEMA_VERSION:
            raise ConfigError(f"{describe_database(location)} has schema version {version}, newer than this "
                              f"robotwtf understands ({SCHEMA_VERSION}); run a newer robotwtf.")
        if postgres:
            db.execute("SELECT pg_advisory_unlock(?)", (POSTGRES_SCHEMA_LOCK,))
        else:
            db.execute("PRAGMA journal_mode = WAL")
    except BaseException:
        db.close()
        raise
    return db


def _postgres_tables(db) -> set[str]:
    return {row[0] for row in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}


def _schema_version(db, location) -> int | None:
    """The recorded schema version; None for an empty new database; ConfigError for anything foreign."""
    shown = describe_database(location)
    try:
        if db.engine == "postgresql":
            tables = _postgres_tables(db)
        else:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError:
        raise ConfigError(f"{shown} is not an SQLite database (corrupt or another kind of file). "
                          "robotwtf will not touch it: move it away or restore a backup.") from None
    if not tables:
        return None
    if "schema_version" not in tables:
        what = "PostgreSQL database has tables that robotwtf did not create" if db.engine == "postgresql" \
            else "SQLite database that robotwtf did not create"
        raise ConfigError(f"{shown} is an {what}. robotwtf will not touch it: point "
                          f"{'--database' if db.engine == 'postgresql' else '--data'} at another one.")
    row = db.execute("SELECT max(version) FROM schema_version").fetchone()
    if row[0] is None:
        raise ConfigError(f"{shown} has an empty schema_version table; restore a backup.")
    return row[0]


def _run_script(db, sql: str, version: int) -> None:
    """Run a schema script and record its version in one transaction (executescript can't nest)."""
    try:
        db.executescript(f"BEGIN{' IMMEDIATE' if db.engine == 'sqlite' else ''};\n{schema_script(sql, db.engine)}"
                         f"\n;INSERT INTO schema_version VALUES ({version}, {now()});\nCOMMIT;")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _migrate(db, version: int) -> None:
    for number, sql in MIGRATIONS:
        if number > version:
            log.info("applying schema migration %d", number)
            _run_script(db, sql, number)


# --- keys -------------------------------------------------------------------------------------

class Keys:
    """The instance's two private keys: ES256 (ATProto client assertions) and RS256 (session
    cookies and OAuth access tokens). Each `kid` is its RFC 7638 thumbprint, so it is stable.

    `load` checks the files at once (present, private, a whole PEM private key); the keys are
    parsed on first use, so that starting the server loads neither cryptography nor joserfc
    (~80 ms): the first request that signs or verifies a token, or serves a JWKS, pays for it."""

    def __init__(self, data: Path, pems: dict[str, bytes]):
        self._data = data
        self._pems = pems
        self.csrf_key = hashlib.sha256(b"robotwtf csrf\0" + pems[RS256_KEY_FILE]).digest()
        # A client sends one access token (or a browser one session cookie) with every request for
        # up to an hour; its signature (~110 us to check) is checked once. Only good tokens are
        # remembered (lru_cache keeps no exceptions), and callers still check exp, aud and the grant.
        self._verified = functools.lru_cache(maxsize=256)(self._verify_rs256)

    @classmethod
    def load(cls, data: Path) -> "Keys":
        pems = {}
        for name in KEY_FILES:
            path = data / name
            if not path.exists():
                raise ConfigError(
                    f"{path} is missing but the database exists. New keys would end every session and "
                    "token: restore the key from a backup (or, on a machine joining an instance that "
                    "shares a PostgreSQL database, copy the data folder's key files from a machine serving "
                    "it), or run `robotwtf init --rotate-keys` to make new ones on purpose.")
            if path.stat().st_mode & 0o077:
                raise ConfigError(f"{path} is readable by other users; run `chmod 600 {path}`.")
            pems[name] = path.read_bytes()
            if not is_whole_pem_key(pems[name], name):
                raise ConfigError(_damaged_key_message(path))
        return cls(data, pems)

    def check(self) -> "Keys":
        """Parse both keys now, for the commands that vouch for a data folder (init, check, restore)."""
        _ = self.es256_kid, self.rs256_kid  # each parses its key
        return self

    @functools.cached_property
    def es256(self):
        from joserfc.jwk import ECKey
        return self._import(ECKey, ES256_KEY_FILE)

    @functools.cached_property
    def rs256(self):
        from joserfc.jwk import RSAKey
        return self._import(RSAKey, RS256_KEY_FILE)

    @functools.cached_property
    def es256_kid(self) -> str:
        return self.es256.thumbprint()

    @functools.cached_property
    def rs256_kid(self) -> str:
        return self.rs256.thumbprint()

    def _import(self, key_class, name: str):
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
        from joserfc.errors import JoseError
        try:
            # Our own 0600 file, so OpenSSL's RSA consistency check (~45 ms, meant for keys from
            # others) is skipped; a key of the wrong type is refused by import_key.
            private_key = load_pem_private_key(self._pems[name], None, unsafe_skip_rsa_key_validation=True)
            return key_class.import_key(private_key)
        except (ValueError, TypeError, JoseError):
            raise ConfigError(_damaged_key_message(self._data / name)) from None

    @staticmethod
    def generate(data: Path) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        private_keys = {ES256_KEY_FILE: ec.generate_private_key(ec.SECP256R1()),
                        RS256_KEY_FILE: rsa.generate_private_key(public_exponent=65537, key_size=2048)}
        for name, key in private_keys.items():
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            write_private_file(data / name, pem)

    def public_jwks(self) -> dict:
        """RS256 verification keys for /.well-known/jwks.json."""
        return {"keys": [dict(self.rs256.as_dict(private=False), kid=self.rs256_kid, alg="RS256", use="sig")]}

    def client_jwks(self) -> dict:
        """The ES256 public key ATProto authorization servers verify our client assertions with."""
        return {"keys": [dict(self.es256.as_dict(private=False), kid=self.es256_kid, alg="ES256", use="sig")]}

    def sign_rs256(self, claims: dict, typ: str) -> str:
        from joserfc import jwt
        return jwt.encode({"alg": "RS256", "typ": typ, "kid": self.rs256_kid}, claims, self.rs256)

    def verify_rs256(self, token: str, typ: str) -> dict:
        """Claims of a JWT we signed with `typ` (RFC 8725 §3.11 explicit typing); BadInput otherwise.
        The caller validates the claims (exp, aud...) it relies on."""
        return dict(self._verified(token, typ))

    def _verify_rs256(self, token: str, typ: str) -> dict:
        from joserfc import jwt
        from joserfc.errors import JoseError
        try:
            decoded = jwt.decode(token, self.rs256, algorithms=["RS256"])
        except (JoseError, ValueError, TypeError):
            raise BadInput("The token's signature is not valid.") from None
        if decoded.header.get("typ") != typ:
            raise BadInput("The token is not of the expected type.")
        return decoded.claims


PEM_PRIVATE_KEY_RE = re.compile(rb"\s*-----BEGIN ([A-Z ]*)PRIVATE KEY-----\r?\n([A-Za-z0-9+/=\r\n]+)"
                                rb"-----END \1PRIVATE KEY-----\s*")


# The algorithm identifiers (DER) at the head of each key file's PKCS #8 key: id-ecPublicKey and
# P-256 (RFC 5480 §2.1.1), rsaEncryption (RFC 8017 appendix A.1).
PKCS8_KEY_OIDS = {
    ES256_KEY_FILE: (bytes.fromhex("06072a8648ce3d0201"), bytes.fromhex("06082a8648ce3d030107")),
    RS256_KEY_FILE: (bytes.fromhex("06092a864886f70d010101"),),
}


def is_whole_pem_key(pem: bytes, name: str) -> bool:
    """Whether `pem` is one PEM private key whose DER is complete and, in the PKCS #8 form robotwtf
    writes, of the kind key file `name` holds: what an emptied, truncated or swapped key file
    fails, found without parsing the key (Keys parses it on first use)."""
    match = PEM_PRIVATE_KEY_RE.fullmatch(pem)
    if not match:
        return False
    try:
        der = base64.b64decode(match[2])  # the newlines are dropped, the rest is base64's alphabet
    except ValueError:  # binascii.Error: bad padding
        return False
    if len(der) < 2 or der[0] != 0x30:  # one DER SEQUENCE...
        return False
    if match[1] == b"" and not all(oid in der[:40] for oid in PKCS8_KEY_OIDS[name]):
        return False
    if der[1] < 0x80:
        return 2 + der[1] == len(der)  # ...whose length is the file's
    n = der[1] & 0x7F
    return 0 < n <= 4 and 2 + n + int.from_bytes(der[2:2 + n], "big") == len(der)


def _damaged_key_message(path: Path) -> str:
    return (f"{path} is not a usable private key (damaged or another file). Restore it from a backup, "
            "or run `robotwtf init --rotate-keys` to make new keys on purpose (every session and token ends).")


def write_private_file(path: Path, content: bytes) -> None:
    """Write 0600 atomically: a crash leaves the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- the data folder --------------------------------------------------------------------------

def prepare_data_folder(cfg: Config, create: bool = True, rotate_keys: bool = False) -> None:
    """Create or check the data folder, database and keys; ConfigError says what is wrong."""
    data = cfg.data
    if not data.exists():
        if not create:
            raise ConfigError(f"The data folder {data} does not exist; run `robotwtf init`.")
        try:
            data.mkdir(mode=0o700, parents=True)
        except OSError as e:
            raise ConfigError(f"Cannot create the data folder {data}: {e.strerror}.") from None
    if not data.is_dir():
        raise ConfigError(f"The data folder {data} is not a folder.")
    _check_writable(data)
    if data.stat().st_mode & 0o077:
        if any(data.iterdir()):
            raise ConfigError(f"The data folder {data} is accessible to other users; run `chmod 700 {data}`.")
        data.chmod(0o700)
    location = cfg.database_location
    new_instance = not database_exists(location)
    if not new_instance:
        open_database(location, create=False).close()
    # A new PostgreSQL database keeps key files already in the folder (they may be an instance's
    # being moved there, see migrate_to); a new SQLite file always comes with new keys.
    keep_keys = cfg.is_postgres and all((data / name).exists() for name in KEY_FILES)
    if (new_instance and not keep_keys) or rotate_keys:
        if rotate_keys and not new_instance:
            log.warning("rotating keys: every session cookie and access token signed so far stops working")
        Keys.generate(data)
    Keys.load(data)
    if new_instance:
        open_database(location, create=True).close()


def _check_writable(data: Path) -> None:
    try:
        with tempfile.TemporaryFile(dir=data):
            pass
    except OSError as e:
        raise ConfigError(f"The data folder {data} is not writable: {e.strerror}.") from None


# --- shared state of the processes serving an instance ---------------------------------------------
# Several worker processes (and, on a shared database, several machines) serve one instance, so
# nothing they must agree on lives in one process's memory: rate-limit counts and background-job
# leases are rows, read and written by the small functions below in plain SQL.

RATE_WINDOW_SECONDS = 60


def reserve_permits(db: sqlite3.Connection, key: str, per_minute: int, wanted: int, t: float) -> tuple[int, float]:
    """Take up to `wanted` permits for `key` at time `t` (unix seconds): (permits granted, seconds
    until one is free again when none was). The limit is a sliding window over two counted
    minutes: the permits of this minute plus those of the previous one, weighted by the share of
    it still within the last 60 seconds, never exceed `per_minute`."""
    minute, into = divmod(t, RATE_WINDOW_SECONDS)
    minute, elapsed = int(minute), into / RATE_WINDOW_SECONDS
    with transaction(db):
        counts = dict(db.execute("SELECT minute, count FROM rate_counts WHERE key = ? AND minute IN (?, ?)",
                                 (key, minute - 1, minute)).fetchall())
        previous, current = counts.get(minute - 1, 0), counts.get(minute, 0)
        granted = max(0, min(wanted, int(per_minute - previous * (1 - elapsed) - current)))
        if granted:
            db.execute("INSERT INTO rate_counts (key, minute, count) VALUES (?, ?, ?) ON CONFLICT (key, minute) "
                       "DO UPDATE SET count = rate_counts.count + excluded.count", (key, minute, granted))
            return granted, 0.0
    if current + 1 > per_minute:  # not before the next minute, and then this one must weigh less
        later = 1 - (per_minute - 1) / current
        return granted, (1 - elapsed + max(0.0, later)) * RATE_WINDOW_SECONDS
    return granted, (1 - (per_minute - current - 1) / previous - elapsed) * RATE_WINDOW_SECONDS


def prune_rate_counts(db: sqlite3.Connection, t: float) -> None:
    """Forget the counts that no longer weigh in any limit."""
    with transaction(db):
        db.execute("DELETE FROM rate_counts WHERE minute < ?", (int(t // RATE_WINDOW_SECONDS) - 1,))


def take_lease(db: sqlite3.Connection, name: str, holder: str, seconds: float) -> bool:
    """Take the lease `name` for `holder` for `seconds` from now, or renew it if holder has it;
    False while another holder's lease runs."""
    t = time.time()
    with transaction(db):
        row = db.execute("INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) "
                         "DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at "
                         "WHERE leases.holder = excluded.holder OR leases.expires_at < ? RETURNING holder",
                         (name, holder, t + seconds, t)).fetchone()
    return row is not None


def release_lease(db: sqlite3.Connection, name: str, holder: str) -> None:
    """Give the lease up (on a graceful stop), so another process takes the job over at once."""
    with transaction(db):
        db.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))


class RateLimiter:
    """Rate limits counted in the database, so they hold across every process and machine that
    serves the instance. `hit` takes a permit or raises RateLimited with the seconds until one is
    back. Each process reserves permits in small batches (a twentieth of the limit, at most 50)
    and spends them from memory until the minute ends, so a busy key costs one database write per
    batch, not per request. Reserved permits count at once, so the limit is never exceeded; a key
    spread over several processes may be refused early by up to the batches they still hold.
    A refusal is remembered until a permit can be free, so a flood of refused requests costs no
    database work."""

    MAX_KEYS = 50_000
    BATCH_SHARE = 20
    MAX_BATCH = 50

    def __init__(self, db: Callable[[], sqlite3.Connection]):
        self._db = db
        self._local: dict[str, list] = {}  # key -> [minute, permits left, refused until]
        self._lock = threading.Lock()

    def hit(self, key: str, per_minute: int, message: str = "Too many requests; slow down.") -> None:
        t = time.time()
        minute = int(t // RATE_WINDOW_SECONDS)
        with self._lock:
            held = self._local.get(key)
            if held is not None:
                if held[0] == minute and held[1] > 0:
                    held[1] -= 1
                    return
                if held[2] > t:
                    raise RateLimited(message, retry_after=_whole_seconds(held[2] - t))
        wanted = max(1, min(self.MAX_BATCH, per_minute // self.BATCH_SHARE))
        granted, wait = reserve_permits(self._db(), key, per_minute, wanted, t)
        with self._lock:
            if len(self._local) >= self.MAX_KEYS:
                self._local.clear()
            held = self._local.get(key)
            left = held[1] if held is not None and held[0] == minute else 0
            self._local[key] = [minute, left + granted - 1 if granted else left, 0.0 if granted else t + wait]
        if not granted:
            raise RateLimited(message, retry_after=_whole_seconds(wait))


def _whole_seconds(seconds: float) -> int:
    """Retry-After: whole seconds, at least 1, at most the window."""
    return min(RATE_WINDOW_SECONDS, max(1, int(seconds + 0.999)))


class Instance:
    """One running robotwtf: its configuration, keys, rate limits and per-thread database
    connections."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.keys = Keys.load(cfg.data)
        self.limiter = RateLimiter(self.db)
        self._local = threading.local()

    def db(self) -> sqlite3.Connection:
        """This thread's connection; waitress runs each request on one worker thread. Requests
        never checkpoint: the wal-checkpoint job does (`checkpoint`). Each thread keeps its own page cache
        of mostly the same pages (the OS caches the file for all of them): 512 KiB each instead
        of SQLite's 2 MiB took 11 MiB off the server's memory after make bench's load, with no
        measurable change to reads or searches."""
        db = getattr(self._local, "db", None)
        if db is None or db.broken:  # a PostgreSQL connection lost with its server is opened anew
            if db is not None:
                db.close()
            db = self._local.db = db_connect(self.cfg.database_location)
            if db.engine == "sqlite":
                db.execute("PRAGMA wal_autocheckpoint = 0")
                db.execute("PRAGMA cache_size = -512")
        return db


class LeasedJob:
    """`work(db)` every `interval` seconds, on a thread of its own, in whichever process holds
    the lease `name` in the database: once per instance, however many worker processes (or
    machines, on a shared database) serve it. Every process runs the same LeasedJob; one takes
    the lease and renews it every LEASE_SECONDS / 3, the others try again at that pace, and take
    over within LEASE_SECONDS when the holder dies (at once when it stops gracefully). A holder
    frozen for longer than the lease may overlap its successor for one run, so a job must be safe
    to run twice (WAL checkpoints and pruning are). Background work of any kind (the semantic
    indexer too) belongs under one."""

    LEASE_SECONDS = 10.0

    def __init__(self, location: Path | str, name: str, interval: float, work: Callable[[sqlite3.Connection], None]):
        self.location, self.name, self.interval, self.work = location, name, interval, work
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{new_secret(6)}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"job-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        db = db_connect(self.location)
        held, renew_at = False, 0.0
        try:
            while True:
                if db.broken:  # a PostgreSQL connection lost with its server: take a new one
                    db.close()
                    db = db_connect(self.location)
                if time.monotonic() >= renew_at:
                    held = self._take(db)
                    renew_at = time.monotonic() + self.LEASE_SECONDS / 3
                if held:
                    self._work(db)
                if self._stop.wait(self.interval if held else max(0.0, renew_at - time.monotonic())):
                    break
            if held:
                self._work(db)
                release_lease(db, self.name, self.holder)
        finally:
            db.close()

    def _take(self, db: sqlite3.Connection) -> bool:
        try:
            return take_lease(db, self.name, self.holder, self.LEASE_SECONDS)
        except sqlite3.Error as e:
            log.warning("could not take or renew the lease for %s (will retry): %s", self.name, e)
            return False

    def _work(self, db: sqlite3.Connection) -> None:
        try:
            self.work(db)
        except sqlite3.Error as e:
            log.warning("%s failed (will retry): %s", self.name, e)


CHECKPOINT_SECONDS = 0.1
MAINTENANCE_SECONDS = 60.0


def checkpoint(db: sqlite3.Connection) -> None:
    """Copy the WAL back into the database file. SQLite's automatic checkpoint runs inside the
    COMMIT of whichever write crosses 1,000 WAL pages: a copy and an fsync in one request's time
    while it holds the write lock, which was ~40 % of make bench's write_note time; so requests
    never checkpoint, and this runs every CHECKPOINT_SECONDS instead. PASSIVE never waits for
    readers or writers."""
    db.execute("PRAGMA wal_checkpoint(PASSIVE)")


def maintain(db: sqlite3.Connection) -> None:
    """Forget what can no longer be used: spent OAuth rows and old rate-limit counts."""
    prune_oauth(db)
    prune_rate_counts(db, time.time())


def background_jobs(cfg: Config) -> list[LeasedJob]:
    """The instance's background jobs, each under its lease; `serve` starts them in every worker.
    PostgreSQL checkpoints its own log, so only an SQLite file gets the checkpoint job."""
    maintenance = LeasedJob(cfg.database_location, "maintenance", MAINTENANCE_SECONDS, maintain)
    if cfg.is_postgres:
        return [maintenance]
    return [LeasedJob(cfg.database_location, "wal-checkpoint", CHECKPOINT_SECONDS, checkpoint), maintenance]


# --- users --------------------------------------------------------------------------------------

def default_username(did: str, handle: str | None) -> str:
    """A valid username guess: the handle's first label, else one derived from the DID."""
    if handle:
        guess = re.sub(r"[^a-z0-9-]", "", handle.split(".")[0].lower()).strip("-")[:30].strip("-")
        if len(guess) < 3:
            guess = (guess + "-wiki").strip("-")
        with contextlib.suppress(BadInput):
            return validate_slug(guess, "username")
    return "user-" + hashlib.sha256(did.encode()).hexdigest()[:8]


def add_user(db: sqlite3.Connection, did: str, handle: str | None = None, username: str | None = None,
             admin: bool = False) -> sqlite3.Row:
    """Create a user; the first user of an instance is its admin (CONTRACT §1)."""
    validate_did(did)
    username = validate_slug(username, "username") if username else default_username(did, handle)
    with transaction(db):
        if db.execute("SELECT 1 FROM users WHERE did = ?", (did,)).fetchone():
            raise Conflict(f"{did} is already a user.")
        if db.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
            raise Conflict(f"The username '{username}' is taken; choose another.")
        if handle and db.execute("SELECT 1 FROM users WHERE handle = ?", (handle,)).fetchone():
            raise Conflict(f"Another user has the handle {handle}.")
        first = db.execute("SELECT count(*) FROM users").fetchone()[0] == 0
        db.execute("INSERT INTO users (did, username, handle, is_admin, created_at) VALUES (?, ?, ?, ?, ?)",
                   (did, username, handle, int(admin or first), now()))
    return get_user(db, did)


def get_user(db: sqlite3.Connection, did: str) -> sqlite3.Row:
    row = db.execute("SELECT * FROM users WHERE did = ?", (did,)).fetchone()
    if row is None:
        raise NotFound(f"No user has the DID {did}.")
    return row


def find_user(db: sqlite3.Connection, ident: str) -> sqlite3.Row:
    """A user named by username, handle (with or without @) or DID."""
    ident = ident.strip().removeprefix("@")
    column = "did" if ident.startswith("did:") else "handle" if "." in ident else "username"
    row = db.execute(f"SELECT * FROM users WHERE {column} = ?", (ident.lower() if column != "did" else ident,)).fetchone()
    if row is None:
        raise NotFound(f"No user is known as '{ident}'. `robotwtf user list` shows who is.")
    return row


def list_users(db: sqlite3.Connection) -> list[sqlite3.Row]:
    return db.execute("SELECT * FROM users ORDER BY username").fetchall()


def has_users(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None


# --- sessions and one-time links ---------------------------------------------------------------

LOGIN_LINK_SECONDS = 600
SESSION_TOUCH_SECONDS = 300


def create_session(db: sqlite3.Connection, did: str, days: int, user_agent: str = "") -> str:
    session_id = new_secret(24)
    t = now()
    db.execute("INSERT INTO sessions (id, user_did, created_at, last_seen, expires_at, user_agent) "
               "VALUES (?, ?, ?, ?, ?, ?)", (session_id, did, t, t, t + days * 86400, user_agent[:200]))
    return session_id


def session_user(db: sqlite3.Connection, session_id: str) -> sqlite3.Row | None:
    """The user of a live session, touching last_seen at most every few minutes (a write per
    request would serialise every page view on SQLite's write lock)."""
    t = now()
    row = db.execute("SELECT users.*, sessions.last_seen AS session_seen FROM sessions "
                     "JOIN users ON users.did = sessions.user_did WHERE sessions.id = ? AND expires_at > ?",
                     (session_id, t)).fetchone()
    if row is not None and t - row["session_seen"] > SESSION_TOUCH_SECONDS:
        db.execute("UPDATE sessions SET last_seen = ? WHERE id = ?", (t, session_id))
    return row


def delete_session(db: sqlite3.Connection, session_id: str) -> None:
    db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))


def create_login_link(db: sqlite3.Connection, did: str) -> str:
    token = new_secret()
    t = now()
    db.execute("INSERT INTO login_links (token_hash, user_did, created_at, expires_at) VALUES (?, ?, ?, ?)",
               (hash_secret(token), did, t, t + LOGIN_LINK_SECONDS))
    return token


SPENT_LOGIN_LINK = ("This login link is invalid, expired or already used. "
                    "Ask the operator for a new one (`robotwtf login-link USER`).")


def login_link_user(db: sqlite3.Connection, token: str) -> sqlite3.Row:
    """The user a live login link signs in, without spending it (its confirmation page shows them)."""
    row = db.execute("SELECT users.* FROM login_links JOIN users ON users.did = login_links.user_did "
                     "WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
                     (hash_secret(token), now())).fetchone()
    if row is None:
        raise Forbidden(SPENT_LOGIN_LINK)
    return row


def consume_login_link(db: sqlite3.Connection, token: str) -> str:
    """The link's user, marking it used in the same statement so two clicks can't both win."""
    row = db.execute("UPDATE login_links SET used_at = ? WHERE token_hash = ? AND used_at IS NULL "
                     "AND expires_at > ? RETURNING user_did", (now(), hash_secret(token), now())).fetchone()
    if row is None:
        raise Forbidden(SPENT_LOGIN_LINK)
    return row[0]


def create_invite(db: sqlite3.Connection, created_by: str | None, uses: int, days: int = 14) -> str:
    if uses < 1:
        raise BadInput("An invite needs at least one use.")
    token = new_secret()
    t = now()
    db.execute("INSERT INTO invites (token_hash, created_by, uses_left, created_at, expires_at) "
               "VALUES (?, ?, ?, ?, ?)", (hash_secret(token), created_by, uses, t, t + days * 86400))
    return token


LOGIN_REQUEST_SECONDS = 600


def save_login_request(db: sqlite3.Connection, pending: dict, browser_secret: str, return_to: str,
                       invite_hash: str | None) -> None:
    t = now()
    with transaction(db):
        db.execute("DELETE FROM login_requests WHERE expires_at <= ?", (t,))
        db.execute("INSERT INTO login_requests (state, browser_hash, pending, return_to, invite, created_at, "
                   "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (pending["state"], hash_secret(browser_secret), json.dumps(pending), return_to, invite_hash,
                    t, t + LOGIN_REQUEST_SECONDS))


def take_login_request(db: sqlite3.Connection, state: str, browser_secret: str) -> sqlite3.Row:
    """The login started under `state`, deleted in the same statement (state is single use) and
    only if this browser started it, so nobody can finish their login in someone else's browser."""
    row = db.execute("DELETE FROM login_requests WHERE state = ? AND expires_at > ? RETURNING *",
                     (state, now())).fetchone()
    if row is None or not hmac.compare_digest(row["browser_hash"], hash_secret(browser_secret)):
        raise Forbidden("This sign-in has expired, was already used, or was started in another browser. "
                        "Please sign in again.")
    return row


def update_user_handle(db: sqlite3.Connection, did: str, handle: str) -> None:
    """Record a user's verified current handle; whoever held it before has moved on, so their
    stale copy is cleared (handles are unique)."""
    with transaction(db):
        db.execute("UPDATE users SET handle = NULL WHERE handle = ? AND did != ?", (handle, did))
        db.execute("UPDATE users SET handle = ? WHERE did = ?", (handle, did))


def signup_refusal(db: sqlite3.Connection, policy: str, invite_hash: str | None) -> str | None:
    """Why the signup policy refuses a new account now, or None if it allows one."""
    if db.execute("SELECT count(*) FROM users").fetchone()[0] == 0 or policy == "open":
        return None
    if policy == "closed":
        return "This instance is not accepting new accounts."
    if not invite_hash or db.execute("SELECT 1 FROM invites WHERE token_hash = ? AND uses_left > 0 "
                                     "AND expires_at > ?", (invite_hash, now())).fetchone() is None:
        return ("This instance accepts new accounts by invitation only, and you have no valid invite. "
                "Ask its operator for an invite link.")
    return None


def sign_up(db: sqlite3.Connection, policy: str, did: str, handle: str | None, username: str,
            invite_hash: str | None) -> sqlite3.Row:
    """Create the account under the signup policy, using up one invite use if it needs one."""
    validate_slug(username, "username")
    with transaction(db):
        refusal = signup_refusal(db, policy, invite_hash)
        if refusal:
            raise Forbidden(refusal)
        if policy == "invite" and invite_hash:
            db.execute("UPDATE invites SET uses_left = uses_left - 1 WHERE token_hash = ? AND uses_left > 0",
                       (invite_hash,))
        if handle:
            db.execute("UPDATE users SET handle = NULL WHERE handle = ?", (handle,))
        if db.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone():
            raise Conflict(f"The username '{username}' is taken; choose another.")
        if db.execute("SELECT 1 FROM users WHERE did = ?", (did,)).fetchone():
            raise Conflict("You already have an account here; sign in instead.")
        first = db.execute("SELECT count(*) FROM users").fetchone()[0] == 0
        db.execute("INSERT INTO users (did, username, handle, is_admin, created_at) VALUES (?, ?, ?, ?, ?)",
                   (did, username, handle, int(first), now()))
    return get_user(db, did)


def list_sessions(db: sqlite3.Connection, did: str) -> list[sqlite3.Row]:
    return db.execute("SELECT * FROM sessions WHERE user_did = ? AND expires_at > ? ORDER BY last_seen DESC",
                      (did, now())).fetchall()


def revoke_session(db: sqlite3.Connection, did: str, session_id: str) -> None:
    if db.execute("DELETE FROM sessions WHERE id = ? AND user_did = ?", (session_id, did)).rowcount == 0:
        raise NotFound("That session has already ended.")


def revoke_all_sessions(db: sqlite3.Connection, did: str) -> None:
    db.execute("DELETE FROM sessions WHERE user_did = ?", (did,))


def delete_user(db: sqlite3.Connection, did: str) -> None:
    """Delete a user with their owned wikis, memberships, sessions and grants, in one transaction
    (owned wikis, sessions and grants go by ON DELETE CASCADE)."""
    with transaction(db):
        get_user(db, did)
        db.execute("DELETE FROM members WHERE user_did = ?", (did,))
        db.execute("DELETE FROM users WHERE did = ?", (did,))


# --- OAuth clients, grants and tokens (the storage behind robotwtf_as) ---------------------------
# CONTRACT §4: two scopes, and the scopes each role can hold (write does not imply read).

SCOPES = ("wiki:read", "wiki:write")
ROLE_SCOPES = {"owner": frozenset(SCOPES), "editor": frozenset(SCOPES), "viewer": frozenset({"wiki:read"})}
PERSONAL_TOKEN_PREFIX = "rwpat_"
USED_CODE_KEEP_SECONDS = 86400
STALE_CLIENT_SECONDS = 30 * 86400


def role_scopes(role: str | None) -> frozenset[str]:
    """The scopes a member with `role` may hold now; nothing for a non-member."""
    return ROLE_SCOPES.get(role, frozenset())


def scope_string(scopes) -> str:
    """Scopes in their canonical order, space-separated (RFC 6749 §3.3)."""
    return " ".join(s for s in SCOPES if s in scopes)


def parse_scopes(text: str) -> frozenset[str]:
    """Scopes named in `text`, refusing unknown ones (for people choosing scopes, not OAuth clients)."""
    names = frozenset(text.split())
    unknown = names - set(SCOPES)
    if unknown or not names:
        raise BadInput(f"Scopes are {' and '.join(SCOPES)}; '{text}' is not a list of them.")
    return names


def register_oauth_client(db: sqlite3.Connection, client: dict) -> None:
    """Store a client registered through RFC 7591 (its secret only as a hash)."""
    db.execute("INSERT INTO oauth_clients (client_id, secret_hash, auth_method, redirect_uris, grant_types, "
               "client_name, client_uri, logo_uri, is_document, cache_until, created_at) VALUES (:client_id, "
               ":secret_hash, :auth_method, :redirect_uris, :grant_types, :client_name, :client_uri, :logo_uri, "
               "0, NULL, :created_at)", dict(client, created_at=now()))


def cache_metadata_document_client(db: sqlite3.Connection, client: dict) -> None:
    """Store or refresh a client described by a Client ID Metadata Document (no secret)."""
    db.execute("INSERT INTO oauth_clients (client_id, secret_hash, auth_method, redirect_uris, grant_types, "
               "client_name, client_uri, logo_uri, is_document, cache_until, created_at) VALUES (:client_id, "
               "NULL, 'none', :redirect_uris, :grant_types, :client_name, :client_uri, :logo_uri, 1, "
               ":cache_until, :created_at) ON CONFLICT (client_id) DO UPDATE SET redirect_uris = "
               "excluded.redirect_uris, grant_types = excluded.grant_types, client_name = excluded.client_name, "
               "client_uri = excluded.client_uri, logo_uri = excluded.logo_uri, cache_until = excluded.cache_until "
               "WHERE oauth_clients.is_document = 1", dict(client, created_at=now()))


def get_oauth_client(db: sqlite3.Connection, client_id: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM oauth_clients WHERE client_id = ?", (client_id,)).fetchone()


def prune_oauth(db: sqlite3.Connection) -> None:
    """Forget what can no longer be used: old codes, expired refresh tokens, and clients that have
    had no grant for a month (Claude.ai registers a new client for every connection attempt)."""
    t = now()
    with transaction(db):
        db.execute("DELETE FROM oauth_codes WHERE expires_at < ?", (t - USED_CODE_KEEP_SECONDS,))
        db.execute("DELETE FROM oauth_refresh_tokens WHERE expires_at < ?", (t,))
        db.execute("DELETE FROM oauth_clients WHERE created_at < ? "
                   "AND NOT EXISTS (SELECT 1 FROM oauth_grants g WHERE g.client_id = oauth_clients.client_id) "
                   "AND NOT EXISTS (SELECT 1 FROM oauth_codes c WHERE c.client_id = oauth_clients.client_id "
                   "AND c.expires_at > ?)", (t - STALE_CLIENT_SECONDS, t))


def save_authorization_code(db: sqlite3.Connection, code: dict) -> None:
    """Store an issued code by its hash, with everything it was granted for. Its PKCE challenge
    must be new (two approvals of one request race here)."""
    try:
        db.execute("INSERT INTO oauth_codes (code_hash, client_id, user_did, wiki_id, scope, resource, redirect_uri, "
                   "redirect_uri_in_request, code_challenge, created_at, expires_at) VALUES (:code_hash, :client_id, "
                   ":user_did, :wiki_id, :scope, :resource, :redirect_uri, :redirect_uri_in_request, "
                   ":code_challenge, :created_at, :expires_at)", code)
    except sqlite3.IntegrityError:
        raise Conflict("This authorization request was already approved; start again from the app.") from None


def code_challenge_used(db: sqlite3.Connection, challenge: str) -> bool:
    return db.execute("SELECT 1 FROM oauth_codes WHERE code_challenge = ?", (challenge,)).fetchone() is not None


def get_authorization_code(db: sqlite3.Connection, code_hash: str) -> sqlite3.Row | None:
    """An unexpired code, used or not (a used one is how a replay is recognised)."""
    return db.execute("SELECT * FROM oauth_codes WHERE code_hash = ? AND expires_at > ?",
                      (code_hash, now())).fetchone()


def redeem_authorization_code(db: sqlite3.Connection, code_hash: str, refresh_hash: str | None,
                              refresh_expires_at: int) -> int | None:
    """Spend a code and create its grant (and first refresh token) in one transaction; the grant id.
    None if the code was spent already: then the grant it produced is revoked, because a second
    redemption means the code leaked (RFC 6749 §4.1.2, OAuth 2.1 §4.1.3)."""
    t = now()
    with transaction(db):
        code = db.execute("UPDATE oauth_codes SET used_at = ? WHERE code_hash = ? AND used_at IS NULL "
                          "AND expires_at > ? RETURNING *", (t, code_hash, t)).fetchone()
        if code is None:
            db.execute("DELETE FROM oauth_grants WHERE id = (SELECT grant_id FROM oauth_codes WHERE code_hash = ?)",
                       (code_hash,))
            return None
        grant_id = db.execute("INSERT INTO oauth_grants (client_id, user_did, wiki_id, scope, redirect_uri, "
                              "created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                              (code["client_id"], code["user_did"], code["wiki_id"], code["scope"],
                               code["redirect_uri"], t)).fetchone()[0]
        db.execute("UPDATE oauth_codes SET grant_id = ? WHERE code_hash = ?", (grant_id, code_hash))
        if refresh_hash:
            db.execute("INSERT INTO oauth_refresh_tokens (token_hash, grant_id, scope, created_at, expires_at) "
                       "VALUES (?, ?, ?, ?, ?)", (refresh_hash, grant_id, code["scope"], t, refresh_expires_at))
    return grant_id


def get_refresh_token(db: sqlite3.Connection, token_hash: str) -> sqlite3.Row | None:
    """An unexpired refresh token (spent or not) with its grant, wiki and the member's current role."""
    return db.execute(
        "SELECT r.*, g.client_id, g.user_did, g.wiki_id, w.slug AS wiki_slug, m.role FROM oauth_refresh_tokens r "
        "JOIN oauth_grants g ON g.id = r.grant_id JOIN wikis w ON w.id = g.wiki_id "
        "LEFT JOIN members m ON m.wiki_id = g.wiki_id AND m.user_did = g.user_did "
        "WHERE r.token_hash = ? AND r.expires_at > ?", (token_hash, now())).fetchone()


def rotate_refresh_token(db: sqlite3.Connection, old_hash: str, new_hash: str, retry_seconds: int) -> str:
    """Spend a refresh token for a new one, atomically. 'rotated' for the current token; also
    'rotated' for a client's retry of a token spent less than `retry_seconds` ago whose successor
    was never used (the successor dies; a lost response is not an attack). Any other reuse means
    the token leaked: the whole grant is revoked and 'reused' returned (RFC 9700 §4.14.2).
    'unknown' if the token expired or its grant is gone."""
    t = now()
    with transaction(db):
        old = db.execute("SELECT * FROM oauth_refresh_tokens WHERE token_hash = ? AND expires_at > ?",
                         (old_hash, t)).fetchone()
        if old is None:
            return "unknown"
        if old["used_at"] is not None and not _refresh_retry_allowed(db, old, t, retry_seconds):
            db.execute("DELETE FROM oauth_grants WHERE id = ?", (old["grant_id"],))
            return "reused"
        if old["successor_hash"]:
            db.execute("UPDATE oauth_refresh_tokens SET used_at = ?, successor_hash = NULL WHERE token_hash = ?",
                       (t, old["successor_hash"]))
        db.execute("UPDATE oauth_refresh_tokens SET used_at = coalesce(used_at, ?), successor_hash = ? "
                   "WHERE token_hash = ?", (t, new_hash, old_hash))
        db.execute("INSERT INTO oauth_refresh_tokens (token_hash, grant_id, scope, created_at, expires_at) "
                   "VALUES (?, ?, ?, ?, ?)", (new_hash, old["grant_id"], old["scope"], t, old["expires_at"]))
        db.execute("UPDATE oauth_grants SET last_used_at = ? WHERE id = ?", (t, old["grant_id"]))
    return "rotated"


def _refresh_retry_allowed(db: sqlite3.Connection, old: sqlite3.Row, t: int, retry_seconds: int) -> bool:
    if old["successor_hash"] is None or t - old["used_at"] > retry_seconds:
        return False
    successor = db.execute("SELECT used_at FROM oauth_refresh_tokens WHERE token_hash = ?",
                           (old["successor_hash"],)).fetchone()
    return successor is not None and successor["used_at"] is None


def revoke_grant(db: sqlite3.Connection, grant_id: int, user_did: str | None = None) -> bool:
    """Delete a grant (its refresh tokens go with it; its access tokens fail their next check).
    With `user_did`, only that person's grant. Under the write lock: on PostgreSQL a delete that
    cascades to the refresh tokens could otherwise deadlock with a refresh of the same grant."""
    with transaction(db):
        if user_did is None:
            return db.execute("DELETE FROM oauth_grants WHERE id = ?", (grant_id,)).rowcount > 0
        return db.execute("DELETE FROM oauth_grants WHERE id = ? AND user_did = ?", (grant_id, user_did)).rowcount > 0


def grant_for_bearer(db: sqlite3.Connection, grant_id: int) -> sqlite3.Row | None:
    """The MCP hot path: one primary-key lookup joining the grant's client, its wiki and the
    person's current role (NULL when no longer a member)."""
    return db.execute(
        "SELECT g.id, g.client_id, g.user_did, g.wiki_id, g.scope, g.last_used_at, w.slug AS wiki_slug, "
        "c.client_name, m.role FROM oauth_grants g JOIN wikis w ON w.id = g.wiki_id "
        "JOIN oauth_clients c ON c.client_id = g.client_id "
        "LEFT JOIN members m ON m.wiki_id = g.wiki_id AND m.user_did = g.user_did WHERE g.id = ?",
        (grant_id,)).fetchone()


def touch_grant(db: sqlite3.Connection, grant_id: int) -> None:
    db.execute("UPDATE oauth_grants SET last_used_at = ? WHERE id = ?", (now(), grant_id))


def list_grants(db: sqlite3.Connection, did: str) -> list[sqlite3.Row]:
    """A person's connected apps, newest first."""
    return db.execute(
        "SELECT g.*, c.client_name, c.is_document, w.slug AS wiki_slug, w.title AS wiki_title "
        "FROM oauth_grants g JOIN oauth_clients c ON c.client_id = g.client_id JOIN wikis w ON w.id = g.wiki_id "
        "WHERE g.user_did = ? ORDER BY g.created_at DESC, g.id DESC", (did,)).fetchall()


def create_personal_token(db: sqlite3.Connection, did: str, slug: str, scopes: frozenset[str], name: str,
                          expires_at: int | None = None) -> str:
    """A new personal access token for one wiki, returned once; only scopes the person's role allows."""
    name = name.strip()
    if not name or len(name) > 100 or any(not c.isprintable() for c in name):
        raise BadInput("A token needs a name of 1 to 100 printable characters.")
    if expires_at is not None and expires_at <= now():
        raise BadInput("A token's expiry must be in the future.")
    wiki = db.execute("SELECT id FROM wikis WHERE slug = ?", (slug,)).fetchone()
    role = member_role(db, wiki["id"], did) if wiki else None
    if role is None:
        raise Forbidden(f"You are not a member of a wiki '{slug}'.")
    if not scopes <= role_scopes(role):
        raise Forbidden(f"As {role} of '{slug}' you can hold only {scope_string(role_scopes(role))}.")
    token = PERSONAL_TOKEN_PREFIX + new_secret()
    db.execute("INSERT INTO personal_tokens (token_hash, name, user_did, wiki_id, scope, created_at, expires_at) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)",
               (hash_secret(token), name, did, wiki["id"], scope_string(scopes), now(), expires_at))
    return token


def personal_token_for_bearer(db: sqlite3.Connection, token_hash: str) -> sqlite3.Row | None:
    """The MCP hot path for personal tokens: one lookup by hash with the wiki and current role."""
    return db.execute(
        "SELECT t.id, t.name, t.user_did, t.wiki_id, t.scope, t.expires_at, t.last_used_at, "
        "w.slug AS wiki_slug, m.role FROM personal_tokens t JOIN wikis w ON w.id = t.wiki_id "
        "LEFT JOIN members m ON m.wiki_id = t.wiki_id AND m.user_did = t.user_did WHERE t.token_hash = ?",
        (token_hash,)).fetchone()


def touch_personal_token(db: sqlite3.Connection, token_id: int) -> None:
    db.execute("UPDATE personal_tokens SET last_used_at = ? WHERE id = ?", (now(), token_id))


TOKEN_TOUCH_SECONDS = 60  # a token's or grant's last-used time is written at most this often (reads stay reads)


def touch_due(last_used_at: int | None) -> bool:
    return last_used_at is None or now() - last_used_at >= TOKEN_TOUCH_SECONDS


@dataclasses.dataclass(frozen=True)
class TokenCaller:
    """Who calls with a personal access token: its person and wiki, and the scopes it may use right
    now (granted AND allowed by the person's current role; empty once they lost access)."""
    token_id: int
    name: str
    user_did: str
    wiki_id: int
    wiki_slug: str
    scopes: frozenset[str]


def personal_token_caller(db: sqlite3.Connection, token: str) -> TokenCaller:
    """Who calls with personal access token `token` (the MCP endpoint and git access ask this);
    Unauthorized with a sentence when it is unknown, revoked or expired."""
    row = personal_token_for_bearer(db, hash_secret(token))
    if row is None:
        raise Unauthorized("The personal access token is unknown or was revoked.")
    if row["expires_at"] is not None and row["expires_at"] <= now():
        raise Unauthorized("The personal access token has expired.")
    if touch_due(row["last_used_at"]):
        touch_personal_token(db, row["id"])
    return TokenCaller(row["id"], row["name"], row["user_did"], row["wiki_id"], row["wiki_slug"],
                       frozenset(row["scope"].split()) & role_scopes(row["role"]))


def list_personal_tokens(db: sqlite3.Connection, did: str) -> list[sqlite3.Row]:
    return db.execute("SELECT t.*, w.slug AS wiki_slug FROM personal_tokens t JOIN wikis w ON w.id = t.wiki_id "
                      "WHERE t.user_did = ? ORDER BY t.created_at DESC, t.id DESC", (did,)).fetchall()


def revoke_personal_token(db: sqlite3.Connection, token_id: int, did: str) -> bool:
    return db.execute("DELETE FROM personal_tokens WHERE id = ? AND user_did = ?", (token_id, did)).rowcount > 0


# --- wiki storage: limits, authors, validation ------------------------------------------------------
# The one storage API the browser pages, the MCP tools and the CLI all call. Functions take a
# connection and plain values, return dataclasses or rows, and raise RobotError subclasses whose
# message tells a person or a model what to do next. Every write runs in one BEGIN IMMEDIATE
# transaction, so a failed check leaves nothing behind.

MAX_PAGE_BYTES = 1_000_000
MAX_PATH_BYTES = 255
CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")  # exactly Unicode category Cc
LINK_SYNTAX_RE = re.compile(r"[\[\]|#\\]")
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
MAX_FILENAME_BYTES = 200
MAX_MESSAGE_CHARS = 2000
MIN_REVISION_PREFIX = 7
HOME_PAGE = "Home"
# Snippet highlight markers: control characters that validate_content refuses in pages, so a
# caller can escape the snippet and then replace them (with <mark>, ** ...) unambiguously.
MARK_START, MARK_END = "\x02", "\x03"

BIDI_CONTROLS = frozenset(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))
CONTENT_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
REVISION_ID_RE = re.compile(r"[0-9a-f]+")
VIA_RE = re.compile(r"web|cli|(mcp|token|git):[^\x00-\x1f\x7f]{1,100}")
ROLES = ("owner", "editor", "viewer")


@dataclasses.dataclass(frozen=True)
class Quotas:
    """Per-instance limits (settings max_pages_per_wiki, max_wiki_bytes, max_wikis_per_user)."""
    pages_per_wiki: int
    bytes_per_wiki: int
    wikis_per_user: int


@dataclasses.dataclass(frozen=True)
class Author:
    """Who makes a change and through what: via is `web`, `cli`, `mcp:<client name>`,
    `token:<token name>` or `git:<token name>` (a git push); it is recorded on every revision."""
    did: str
    via: str

    def __post_init__(self):
        validate_did(self.did)
        if not VIA_RE.fullmatch(self.via):
            raise BadInput(f"'{_shown(self.via)}' is not a way of changing a wiki (web, cli, mcp:NAME, token:NAME "
                           "or git:NAME).")

    @classmethod
    def mcp(cls, did: str, client_name: str) -> "Author":
        return cls(did, "mcp:" + _label(client_name, "client"))

    @classmethod
    def token(cls, did: str, token_name: str) -> "Author":
        return cls(did, "token:" + _label(token_name, "token"))

    @classmethod
    def git(cls, did: str, token_name: str) -> "Author":
        return cls(did, "git:" + _label(token_name, "token"))


def _label(text: str, fallback: str) -> str:
    """A name others chose, made safe to record and show: printable, no bidi tricks, short."""
    cleaned = "".join(c for c in text or "" if c.isprintable() and c not in BIDI_CONTROLS).strip()
    return cleaned[:100] or fallback


def _shown(value) -> str:
    """Someone's input quoted back in an error message: printable and short."""
    text = str(value)
    return printable(text[:80]) + ("…" if len(text) > 80 else "")


def path_key(path: str) -> str:
    """The case-insensitive identity of a page path (Unicode NFC, then casefolded)."""
    return unicodedata.normalize("NFC", path).casefold()


def validate_page_path(path: str) -> str:
    """A page path per CONTRACT §5 (UTF-8, '/'-separated, no empty, '.' or '..' segment, no control
    characters, at most 255 bytes) plus what the URL layout (§3: `mcp` and `-…` are the wiki's
    own URLs), WikiLinks (`[ ] | #`) and a safe export (no hidden `.git`-like segments) need.
    Returns the path trimmed and NFC-normalised."""
    if not isinstance(path, str):
        raise BadInput("A page path must be text.")
    path = unicodedata.normalize("NFC", path.strip())
    if not path:
        raise BadInput("A page path is required.")
    if "\x00" in path:
        raise BadInput("A page path may not contain NUL characters.")
    if CONTROL_RE.search(path):
        raise BadInput("A page path may not contain control characters (newlines, tabs and the like).")
    if BIDI_CONTROLS.intersection(path):
        raise BadInput("A page path may not contain bidirectional override characters "
                       "(U+202A to U+202E, U+2066 to U+2069).")
    size = len(_utf8(path, "A page path"))
    if size > MAX_PATH_BYTES:
        raise BadInput(f"A page path is at most {MAX_PATH_BYTES} bytes of UTF-8; this one is {size}. "
                       "Choose a shorter path.")
    if LINK_SYNTAX_RE.search(path):
        raise BadInput("A page path may not contain [ ] | # or \\ (they would break WikiLinks and URLs).")
    segments = path.split("/")
    if "" in segments:
        raise BadInput(f"'{path}' has an empty segment: a page path may not start or end with '/' or "
                       "contain '//'.")
    for segment in segments:
        if segment in (".", ".."):
            raise BadInput(f"'{path}' has a '.' or '..' segment; page paths can't climb folders.")
        if segment.startswith("."):
            raise BadInput(f"'{path}' has a segment starting with '.'; hidden names such as '.git' are "
                           "not allowed in page paths.")
        if segment.startswith("-"):
            raise BadInput(f"'{path}' has a segment starting with '-'; those URLs belong to the wiki itself.")
        if segment != segment.strip():
            raise BadInput(f"'{path}' has a segment that starts or ends with a space.")
    if segments[0].casefold() == "mcp":
        raise BadInput("'mcp' is reserved at the top of a wiki (it is the MCP endpoint); choose another path.")
    return path


def validate_content(content: str) -> str:
    """Page content: text of at most 1,000,000 bytes of UTF-8 without control characters other
    than tab, newline, carriage return and form feed. Line endings become '\\n' so edits and
    diffs behave the same whether the text came from a browser form or an agent."""
    if not isinstance(content, str):
        raise BadInput("Page content must be text.")
    content = content.replace("\r\n", "\n")
    size = len(_utf8(content, "The content"))
    if size > MAX_PAGE_BYTES:
        raise TooLarge(f"Content too large ({size} bytes). Maximum size is {MAX_PAGE_BYTES} bytes; "
                       "split it into several pages.")
    bad = CONTENT_CONTROL_RE.search(content)
    if bad:
        line = content.count("\n", 0, bad.start()) + 1
        raise BadInput(f"The content contains the control character U+{ord(bad.group()):04X} on line {line}; "
                       "remove it and try again.")
    return content


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"{what} is not valid Unicode text (it contains a lone surrogate).") from None


def decode_utf8(data: bytes, what: str = "The text") -> str:
    """Bytes from the edge (a form upload, an import) as text, refusing invalid UTF-8 instead of
    replacing it; a leading byte-order mark is dropped."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise BadInput(f"{what} is not valid UTF-8 (bad byte at offset {e.start}). "
                       "Save it as UTF-8 and try again.") from None


def _message(message: str, default: str) -> str:
    """A change's message (the commit message): the caller's, or a default that says what happened."""
    message = (message or "").replace("\r\n", "\n").strip()
    if len(message) > MAX_MESSAGE_CHARS:
        raise BadInput(f"A change message is at most {MAX_MESSAGE_CHARS} characters.")
    if CONTENT_CONTROL_RE.search(message) or BIDI_CONTROLS.intersection(message):
        raise BadInput("A change message may not contain control or bidirectional override characters.")
    _utf8(message, "The change message")
    return message or default


# The seconds of 0001-01-01 and 9999-12-31T23:59:59 UTC, the dates ISO 8601 (and datetime) can name.
FIRST_SECOND, LAST_SECOND = -62135596800, 253402300799
ASCII_DIGITS_RE = re.compile(r"[0-9]+")


def parse_time(value: int | str | None) -> int | None:
    """Unix seconds from an int, a string of digits or ISO 8601 (date, or date and time; no
    offset means UTC); None or '' for none. BadInput for anything else, or outside years 1-9999."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    if isinstance(value, int):
        seconds = value
    elif ASCII_DIGITS_RE.fullmatch(text):   # not str.isdigit(): it accepts '²', which int() refuses
        seconds = int(text) if len(text) <= 12 else LAST_SECOND + 1
    else:
        try:
            parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise BadInput(f"'{_shown(text)}' is not a date; use ISO 8601, e.g. 2025-01-31 or "
                           "2025-01-31T12:00:00Z.") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.timezone.utc)
        seconds = int(parsed.timestamp())
    if not FIRST_SECOND <= seconds <= LAST_SECOND:
        raise BadInput(f"'{_shown(text)}' is out of range: give a date between the years 1 and 9999.")
    return seconds


# --- page text: front matter, headings and sections, WikiLinks ----------------------------------------

FRONT_MATTER_RE = re.compile(r"---[ \t]*\n(.*?\n)?(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)
FRONT_MATTER_LINE_RE = re.compile(r"([A-Za-z_][\w-]*)[ \t]*:[ \t]*(.*)")
FENCE_RE = re.compile(r" {0,3}(`{3,}|~{3,})")
FENCE_LINE_RE = re.compile("^" + FENCE_RE.pattern + "(.*)$", re.MULTILINE)  # FENCE_RE over a whole text
HEADING_RE = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))??(?:[ \t]+#+)?[ \t]*")
WIKILINK_RE = re.compile(r"\[\[([^\[\]|\n]+?)(?:\|([^\[\]\n]*))?\]\]")
# An inline code span: matching backtick runs, not across a blank line (CommonMark §6.1).
INLINE_CODE_RE = re.compile(r"(?<!`)(`+)(?!`)(?:(?!\n[ \t]*\n)[\s\S])+?(?<!`)\1(?!`)")
BACKTICK_RUN_RE = re.compile("`+")


def _lines(text: str) -> list[str]:
    """Lines with their '\n' kept, split on '\n' only (str.splitlines also splits on form feeds
    and Unicode separators, which Markdown treats as ordinary characters)."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def parse_front_matter(content: str) -> tuple[dict, str]:
    """(fields, body) of a page. Front matter is the YAML-style block between '---' lines at the
    very top; only its simple forms are read (`key: value`, `key: [a, b]`, `key:` followed by
    `- item` lines), which is what title/category/tags need. Anything else is left alone."""
    match = FRONT_MATTER_RE.match(content)
    if not match:
        return {}, content
    fields: dict = {}
    key = None
    for line in (match.group(1) or "").split("\n"):
        item = re.match(r"[ \t]*-[ \t]+(.*)", line)
        if item and key is not None and isinstance(fields.get(key), list):
            fields[key].append(_unquote(item.group(1)))
            continue
        pair = FRONT_MATTER_LINE_RE.fullmatch(line.rstrip())
        if not pair:
            key = None
            continue
        key, value = pair.group(1).lower(), pair.group(2).strip()
        if value.startswith("[") and value.endswith("]"):
            fields[key] = [_unquote(v) for v in value[1:-1].split(",") if v.strip()]
        else:
            fields[key] = _unquote(value) if value else []
    return {k: v for k, v in fields.items() if v not in ("", [])}, content[match.end():]


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _page_fields(content: str) -> dict:
    """What listing and filtering need from a page's content, stored beside it."""
    fields, body = parse_front_matter(content)
    title, category = fields.get("title", ""), fields.get("category", "")
    tags = fields.get("tags", [])
    tags = [t.strip() for t in (tags.split(",") if isinstance(tags, str) else tags) if t.strip()]
    return {"title": ", ".join(title) if isinstance(title, list) else title,
            "category": ", ".join(category) if isinstance(category, list) else category,
            "tags": json.dumps(list(dict.fromkeys(tags)), ensure_ascii=False),
            "meta": json.dumps(fields, ensure_ascii=False),
            "words": len(body.split()),
            "size": len(content.encode("utf-8"))}


@dataclasses.dataclass(frozen=True)
class PageText:
    """Content with what is stored beside it: the listing fields and the WikiLink targets
    ({path_key: target as first written}). Parsing takes a while for a long page, so a write
    whose content is known up front parses it before taking the write lock."""
    content: str
    fields: dict
    links: dict[str, str]


def page_text(content: str) -> PageText:
    return PageText(content, _page_fields(content),
                    {path_key(link.target): link.target for link in reversed(wikilinks(content))})


@dataclasses.dataclass(frozen=True)
class Heading:
    level: int
    title: str
    trail: tuple[str, ...]   # titles of this heading and the headings it sits under, outermost first
    line: int                # index into _lines(content)


def page_headings(content: str) -> list[Heading]:
    """ATX headings outside fenced code and front matter, with their closing #s removed."""
    lines = _lines(content)
    match = FRONT_MATTER_RE.match(content)
    first = content[:match.end()].count("\n") if match else 0
    headings: list[Heading] = []
    stack: list[Heading] = []
    fence = None
    for index in range(first, len(lines)):
        line = lines[index].rstrip("\n")
        opener = FENCE_RE.match(line)
        if fence:
            if opener and opener.group(1)[0] == fence[0] and len(opener.group(1)) >= len(fence) \
                    and not line[opener.end():].strip():
                fence = None
            continue
        if opener:
            fence = opener.group(1)
            continue
        heading = HEADING_RE.fullmatch(line)
        if heading:
            level, title = len(heading.group(1)), (heading.group(2) or "").strip()
            while stack and stack[-1].level >= level:
                stack.pop()
            found = Heading(level, title, tuple(h.title for h in stack) + (title,), index)
            stack.append(found)
            headings.append(found)
    return headings


def find_section(content: str, section: str) -> tuple[Heading, str]:
    """The heading named by `section` (a title, or a path `A > B` matching the end of the
    heading's trail; case-insensitive) and its text, through to the next heading of the same or
    a higher level. NotFound lists the sections there are."""
    wanted = [part.strip().casefold() for part in section.split(">")]
    if not all(wanted):
        raise BadInput(f"'{_shown(section)}' is not a section name; use a heading's title or a path like 'A > B'.")
    headings = page_headings(content)
    for position, heading in enumerate(headings):
        trail = [t.casefold() for t in heading.trail]
        if trail[-len(wanted):] == wanted:
            lines = _lines(content)
            end = next((h.line for h in headings[position + 1:] if h.level <= heading.level), len(lines))
            return heading, "".join(lines[heading.line:end])
    if not headings:
        raise NotFound(f"Section not found: '{_shown(section)}'. This page has no sections.")
    listing = "\n".join("  - " + " > ".join(h.trail) for h in headings)
    raise NotFound(f"Section not found: '{_shown(section)}'. Available sections:\n{listing}")


@dataclasses.dataclass(frozen=True)
class WikiLink:
    target: str      # the page path linked to, as written (trimmed, NFC)
    fragment: str    # '#section' part, '' if none
    text: str | None  # the text after '|', None for [[Path]]
    start: int
    end: int


def wikilinks(content: str) -> list[WikiLink]:
    """The `[[Path]]` and `[[Path|text]]` links of a page, outside code (fenced blocks and inline
    code spans show the syntax literally). Targets that are not valid page paths are skipped."""
    code = _code_ranges(content)
    starts = [start for start, _ in code]
    found = []
    for match in WIKILINK_RE.finditer(content):
        inside = bisect.bisect_right(starts, match.start()) - 1
        if inside >= 0 and match.start() < code[inside][1]:
            continue
        target, _, fragment = match.group(1).partition("#")
        try:
            target = validate_page_path(target)
        except BadInput:
            continue
        found.append(WikiLink(target, "#" + fragment if fragment else "", match.group(2),
                              match.start(), match.end()))
    return found


def _code_ranges(content: str) -> list[tuple[int, int]]:
    """Character ranges of fenced code blocks and inline code spans, in order."""
    ranges = []
    fence, fence_start = None, 0
    for line in FENCE_LINE_RE.finditer(content):
        if fence is None:
            fence, fence_start = line.group(1), line.start()
        elif line.group(1)[0] == fence[0] and len(line.group(1)) >= len(fence) and not line.group(2).strip():
            ranges.append((fence_start, min(line.end() + 1, len(content))))
            fence = None
    if fence:
        ranges.append((fence_start, len(content)))
    fences = list(ranges)
    for match in _inline_code_spans(content):
        if not any(start <= match.start() < end for start, end in fences):
            ranges.append(match.span())
    return sorted(ranges)


def _inline_code_spans(content: str):
    """INLINE_CODE_RE.finditer(content), tried only where a run of backticks starts: a span can
    start nowhere else, and the pattern's leading lookbehind keeps `re` from skipping ahead by
    itself (it tried every character: ~0.2 ms of every 5 KB write)."""
    resume = 0
    for run in BACKTICK_RUN_RE.finditer(content):
        if run.start() >= resume:
            match = INLINE_CODE_RE.match(content, run.start())
            if match:
                resume = match.end()
                yield match


def _rewrite_links(content: str, moves: dict[str, str]) -> str:
    """Content with every WikiLink to a page in `moves` ({old path key: new path}) pointing at
    its new path instead, keeping fragments and link texts."""
    pieces, last = [], 0
    for link in wikilinks(content):
        new_path = moves.get(path_key(link.target))
        if new_path is not None:
            text = "" if link.text is None else "|" + link.text
            pieces += [content[last:link.start], f"[[{new_path}{link.fragment}{text}]]"]
            last = link.end
    return "".join(pieces) + content[last:]


def unified_diff(old_text: str, new_text: str, old_label: str, new_label: str) -> str:
    """A unified diff (difflib) of two texts; '' when they are equal."""
    import difflib  # here, like tarfile below: only some requests and commands need them (~5 ms a start)
    lines = difflib.unified_diff(_lines(old_text), _lines(new_text), old_label, new_label)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)


# --- wiki storage: what the API returns -------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PageInfo:
    """A page without its content, as listings return it. `revision` is its current revision;
    `meta` is its whole front matter ({field: str or list of str})."""
    id: int
    wiki_id: int
    path: str
    revision: str
    title: str
    category: str
    tags: tuple[str, ...]
    meta: dict
    words: int
    size: int
    created_at: int
    updated_at: int
    deleted_at: int | None

    @property
    def display_title(self) -> str:
        """The front matter title, else the last segment of the path."""
        return self.title or self.path.rsplit("/", 1)[-1]


@dataclasses.dataclass(frozen=True)
class Page(PageInfo):
    """A page with content. Read at an older revision, `revision`, `content` and the fields parsed
    from it are that revision's and `current_revision` is the page's latest (the one to pass when
    writing). With a section, `content` is that section's text and `section` its heading trail."""
    content: str
    current_revision: str
    section: str = ""

    @property
    def is_current(self) -> bool:
        return self.revision == self.current_revision


@dataclasses.dataclass(frozen=True)
class Revision:
    """One change. `path` is the page's path right after it (`old_path` the one before, for a
    rename); `current_path` is where the page is now. `content` is the page's full content after
    the change, or None in listings."""
    id: str
    page_id: int
    kind: str
    path: str
    old_path: str | None
    attachment: str | None
    author_did: str
    author_handle: str | None
    via: str
    message: str
    created_at: int
    current_path: str
    page_deleted: bool
    content: str | None = None
    author_username: str | None = None   # None when the author is not (or no longer) a user here
    imported_from: str | None = None     # the revision's id in the export it was imported from
    imported_author: str = ""            # the author's name as the exporting instance knew it

    @property
    def short_id(self) -> str:
        return self.id[:8]


@dataclasses.dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    size: int
    author_did: str
    updated_at: int
    data: bytes | None = None


@dataclasses.dataclass(frozen=True)
class Change:
    """The result of a write: the page afterwards, what kind of revision it made ('none' when the
    write changed nothing), and for renames the other pages whose links were rewritten."""
    page: Page
    kind: str
    rewritten: tuple[str, ...] = ()
    attachment: Attachment | None = None
    moved: tuple[tuple[str, str], ...] = ()   # a rename's sub-pages that moved along: (old path, new path)

    @property
    def revision(self) -> str:
        return self.page.current_revision

    @property
    def changed(self) -> bool:
        return self.kind != "none"


@dataclasses.dataclass(frozen=True)
class SearchHit:
    """A search result. `snippet` marks matches with MARK_START/MARK_END: escape it for your
    output first, then replace the markers (see highlight_snippet). Higher score is better."""
    path: str
    title: str
    revision: str
    score: float
    snippet: str


@dataclasses.dataclass(frozen=True)
class LinkTarget:
    path: str      # the existing page's path when it exists, else the target as written
    exists: bool


@dataclasses.dataclass(frozen=True)
class PageLinks:
    path: str
    links_to: tuple[LinkTarget, ...]
    linked_from: tuple[str, ...]
    revision: str   # the page's current revision


@dataclasses.dataclass(frozen=True)
class BrokenLink:
    source: str    # path of the page holding the link
    target: str    # the missing page, as written


@dataclasses.dataclass(frozen=True)
class RevisionDiff:
    old: Revision
    new: Revision

    @property
    def labels(self) -> tuple[str, str]:
        return f"{self.old.path}@{self.old.short_id}", f"{self.new.path}@{self.new.short_id}"

    @functools.cached_property
    def text(self) -> str:
        """The unified diff, '' when the contents are equal (made when first asked for: the
        browser draws its own, word by word)."""
        return unified_diff(self.old.content, self.new.content, *self.labels)


@dataclasses.dataclass(frozen=True)
class Usage:
    pages: int
    bytes: int


@dataclasses.dataclass(frozen=True)
class ImportReport:
    created: tuple[str, ...]               # live pages created
    skipped: tuple[tuple[str, str], ...]   # (name in the zip, why it was skipped)
    revisions: int = 0                     # revisions brought in with their history (robotwtf exports)
    attachments: int = 0
    deleted: tuple[str, ...] = ()          # deleted pages brought in with their history, to restore later


def highlight_snippet(snippet: str, start: str, end: str, escape=lambda text: text) -> str:
    """A search snippet for output: escape() applied to the text, then the match markers replaced
    by start/end (e.g. html.escape with '<mark>' and '</mark>')."""
    return escape(snippet).replace(MARK_START, start).replace(MARK_END, end)


# --- wiki storage: rows to values ---------------------------------------------------------------------

PAGE_INFO_COLUMNS = ("id, wiki_id, path, revision_id, title, category, tags, meta, words, size, created_at, "
                     "updated_at, deleted_at")
REVISION_SELECT = ("SELECT revisions.*, users.handle AS author_handle, users.username AS author_username, "
                   "pages.path AS current_path, pages.deleted_at AS page_deleted_at, "
                   "imported.original_id AS imported_from, imported.author_name AS imported_author "
                   "FROM revisions JOIN pages ON pages.id = revisions.page_id "
                   "LEFT JOIN users ON users.did = revisions.author_did "
                   "LEFT JOIN imported_revisions imported ON imported.revision_id = revisions.id ")


def _page_info_fields(row: sqlite3.Row) -> tuple:
    return (row["id"], row["wiki_id"], row["path"], row["revision_id"], row["title"], row["category"],
            tuple(json.loads(row["tags"])), json.loads(row["meta"]), row["words"], row["size"],
            row["created_at"], row["updated_at"], row["deleted_at"])


def _page_info(row: sqlite3.Row) -> PageInfo:
    return PageInfo(*_page_info_fields(row))


def _page(row: sqlite3.Row) -> Page:
    # Built from the row directly: dataclasses.asdict would deep-copy every field first.
    return Page(*_page_info_fields(row), content=row["content"], current_revision=row["revision_id"])


def _revision(row: sqlite3.Row, with_content: bool = False) -> Revision:
    return Revision(row["id"], row["page_id"], row["kind"], row["path"], row["old_path"], row["attachment"],
                    row["author_did"], row["author_handle"], row["via"], row["message"], row["created_at"],
                    row["current_path"], row["page_deleted_at"] is not None,
                    row["content"] if with_content else None, row["author_username"], row["imported_from"],
                    row["imported_author"] or "")


def _attachment(row: sqlite3.Row, with_data: bool = False) -> Attachment:
    return Attachment(row["filename"], row["content_type"], row["size"], row["author_did"], row["updated_at"],
                      bytes(row["data"]) if with_data else None)


# --- wiki storage: finding pages and revisions ----------------------------------------------------------

def _live_row(db: sqlite3.Connection, wiki_id: int, path: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM pages WHERE wiki_id = ? AND path_key = ? AND deleted_at IS NULL",
                      (wiki_id, path_key(path))).fetchone()


def _page_row(db: sqlite3.Connection, wiki_id: int, path: str) -> sqlite3.Row:
    """The live page at `path`, or NotFound saying whether it was deleted."""
    path = validate_page_path(path)
    row = _live_row(db, wiki_id, path)
    if row is None:
        raise _page_not_found(db, wiki_id, path)
    return row


def _page_not_found(db: sqlite3.Connection, wiki_id: int, path: str) -> NotFound:
    deleted = db.execute("SELECT revision_id FROM pages WHERE wiki_id = ? AND path_key = ? "
                         "ORDER BY deleted_at DESC, id DESC LIMIT 1", (wiki_id, path_key(path))).fetchone()
    if deleted is not None:
        return NotFound(f"Page '{path}' was deleted (revision {deleted[0]}). Restore it from its history, "
                        "or create a new page there.")
    return NotFound(f"Page not found: '{path}'. Create it, or list the pages to find the right path.")


# The live page and both link lists in one statement (so one consistent read without BEGIN/COMMIT)
# and one step: sqlite3 releases the GIL around every step, and under concurrent requests a step
# per link cost more in GIL hand-offs than the queries themselves. Order is restored in Python.
# The engines spell JSON arrays differently (and PostgreSQL's json_agg of no rows is NULL).
LIVE_PAGE_WITH_LINKS = {"sqlite": """
SELECT p.*,
  (SELECT json_group_array(json_array(l.target_key, l.target, t.path)) FROM links l
     LEFT JOIN pages t ON t.wiki_id = l.wiki_id AND t.path_key = l.target_key AND t.deleted_at IS NULL
   WHERE l.page_id = p.id) AS links_to_json,
  (SELECT json_group_array(json_array(s.path_key, s.path)) FROM links l JOIN pages s ON s.id = l.page_id
   WHERE l.wiki_id = p.wiki_id AND l.target_key = p.path_key AND l.page_id != p.id) AS linked_from_json
FROM pages p WHERE p.wiki_id = ? AND p.path_key = ? AND p.deleted_at IS NULL""", "postgresql": """
SELECT p.*,
  (SELECT coalesce(json_agg(json_build_array(l.target_key, l.target, t.path)), '[]') FROM links l
     LEFT JOIN pages t ON t.wiki_id = l.wiki_id AND t.path_key = l.target_key AND t.deleted_at IS NULL
   WHERE l.page_id = p.id) AS links_to_json,
  (SELECT coalesce(json_agg(json_build_array(s.path_key, s.path)), '[]') FROM links l JOIN pages s ON s.id = l.page_id
   WHERE l.wiki_id = p.wiki_id AND l.target_key = p.path_key AND l.page_id != p.id) AS linked_from_json
FROM pages p WHERE p.wiki_id = ? AND p.path_key = ? AND p.deleted_at IS NULL"""}


def _page_with_links(db: sqlite3.Connection, wiki_id: int, path: str) -> tuple[sqlite3.Row, PageLinks]:
    """The live page at `path` and its links, or NotFound as _page_row says it."""
    path = validate_page_path(path)
    row = db.execute(LIVE_PAGE_WITH_LINKS[db.engine], (wiki_id, path_key(path))).fetchone()
    if row is None:
        raise _page_not_found(db, wiki_id, path)
    first = operator.itemgetter(0)
    links_to = tuple(LinkTarget(existing or target, existing is not None)
                     for _, target, existing in sorted(json.loads(row["links_to_json"]), key=first))
    linked_from = tuple(source for _, source in sorted(json.loads(row["linked_from_json"]), key=first))
    return row, PageLinks(row["path"], links_to, linked_from, row["revision_id"])


def _page_by_id(db: sqlite3.Connection, page_id: int) -> Page:
    return _page(db.execute("SELECT * FROM pages WHERE id = ?", (page_id,)).fetchone())


def _revision_prefix(value: str) -> str:
    prefix = (value or "").strip().lower()
    if not REVISION_ID_RE.fullmatch(prefix):
        raise BadInput(f"'{_shown(value)}' is not a revision id; revision ids are hexadecimal, like 3f9a2c1b7d04.")
    if len(prefix) < MIN_REVISION_PREFIX:
        raise BadInput(f"'{_shown(value)}' is too short to name a revision; give at least "
                       f"{MIN_REVISION_PREFIX} characters.")
    return prefix


def _revision_row(db: sqlite3.Connection, wiki_id: int, revision: str, page_id: int | None = None) -> sqlite3.Row:
    """The revision whose id starts with `revision` (≥ 7 hex characters), in the wiki or one page."""
    prefix = _revision_prefix(revision)
    # Every id starting with the prefix sorts in [prefix, prefix + 'g'): ids are lower-case hex.
    sql = REVISION_SELECT + "WHERE revisions.id >= ? AND revisions.id < ? AND revisions.wiki_id = ?"
    args: tuple = (prefix, prefix + "g", wiki_id)
    if page_id is not None:
        sql, args = sql + " AND revisions.page_id = ?", args + (page_id,)
    rows = db.execute(sql + " LIMIT 2", args).fetchall()
    if len(rows) > 1:
        raise BadInput(f"The revision prefix '{prefix}' matches more than one revision; give more characters.")
    if not rows:
        where = "this page's history" if page_id is not None else "this wiki"
        raise NotFound(f"No revision '{prefix}' in {where}. The page's history lists its revisions.")
    return rows[0]


def _check_base(db: sqlite3.Connection, row: sqlite3.Row, base_revision: str) -> None:
    """Optimistic concurrency: a write names the revision it was based on and must still be current."""
    prefix = _revision_prefix(base_revision)
    current = row["revision_id"]
    if current.startswith(prefix):
        return
    known = db.execute("SELECT 1 FROM revisions WHERE page_id = ? AND id >= ? AND id < ?",
                       (row["id"], prefix, prefix + "g")).fetchone()
    if known:
        raise Conflict(f"Page '{row['path']}' changed since revision {prefix} (now {current}). "
                       "Read it again, then retry with the new revision.")
    raise Conflict(f"'{prefix}' is not a revision of page '{row['path']}' (its current revision is {current}). "
                   "Read it again, then retry with the current revision.")


# --- wiki storage: quotas ------------------------------------------------------------------------------

def wiki_usage(db: sqlite3.Connection, wiki_id: int) -> Usage:
    """Live pages and the bytes they and their attachments take (history is not counted, so
    deleting pages or attachments always frees room), as the wiki_totals triggers keep them."""
    row = db.execute("SELECT pages, bytes FROM wiki_totals WHERE wiki_id = ?", (wiki_id,)).fetchone()
    return Usage(row["pages"], row["bytes"]) if row else Usage(0, 0)


def _check_new_page_quotas(db: sqlite3.Connection, wiki_id: int, quotas: Quotas, growth: int) -> None:
    """Refuse a new live page past the page limit, or one that grows the wiki past its byte limit
    (one usage query for both checks)."""
    usage = wiki_usage(db, wiki_id)
    if usage.pages >= quotas.pages_per_wiki:
        raise QuotaExceeded(f"This wiki has reached its limit of {quotas.pages_per_wiki} pages. Delete pages "
                            "it no longer needs, or ask the operator to raise --max-pages-per-wiki.",
                            "quota_pages", limit=quotas.pages_per_wiki)
    _check_bytes_quota(db, wiki_id, quotas, growth, usage)


def _check_bytes_quota(db: sqlite3.Connection, wiki_id: int, quotas: Quotas, growth: int,
                       usage: Usage | None = None) -> None:
    """Refuse a change that grows the wiki past its byte limit; shrinking is always allowed."""
    if growth <= 0:
        return
    used = (usage or wiki_usage(db, wiki_id)).bytes
    if used + growth > quotas.bytes_per_wiki:
        raise QuotaExceeded(f"This change needs {growth} more bytes but the wiki uses {used} of its "
                            f"{quotas.bytes_per_wiki}. Delete pages or attachments it no longer needs, or ask "
                            "the operator to raise --max-wiki-bytes.", "quota_bytes", growth=growth, used=used,
                            limit=quotas.bytes_per_wiki)


# --- wiki storage: recording changes ---------------------------------------------------------------------

def _new_revision_id(db: sqlite3.Connection) -> str:
    """12 random hex digits (48 bits): short enough to quote, unique across the instance."""
    while True:
        candidate = secrets.token_hex(6)
        if not db.execute("SELECT 1 FROM revisions WHERE id = ?", (candidate,)).fetchone():
            return candidate


def _record(db: sqlite3.Connection, wiki_id: int, page_id: int | None, kind: str, path: str, text: PageText,
            author: Author, message: str, old_path: str | None = None, attachment: str | None = None,
            deleted_at: int | None = None) -> int:
    """Write a page's new state and its revision, and refresh its links; returns the page id.
    Called inside a transaction; the FTS triggers follow the pages row."""
    revision_id, t, content = _new_revision_id(db), now(), text.content
    fields = dict(text.fields, path=path, path_key=path_key(path), revision_id=revision_id,
                  content=content, updated_at=t, deleted_at=deleted_at)
    if page_id is None:
        fields.update(wiki_id=wiki_id, created_at=t)
        page_id = db.execute(f"INSERT INTO pages ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))}) "
                             "RETURNING id", tuple(fields.values())).fetchone()[0]
    else:
        db.execute(f"UPDATE pages SET {', '.join(name + ' = ?' for name in fields)} WHERE id = ?",
                   (*fields.values(), page_id))
    _insert_revision(db, revision_id, wiki_id, page_id, kind, path, old_path, attachment, content, author, message, t)
    _store_links(db, wiki_id, page_id, text.links if deleted_at is None else {})
    _mark_semantic_index(db, wiki_id, page_id, deleted=deleted_at is not None)
    return page_id


def _insert_revision(db: sqlite3.Connection, revision_id: str, wiki_id: int, page_id: int, kind: str, path: str,
                     old_path: str | None, attachment: str | None, content: str, author: Author, message: str,
                     created_at: int) -> None:
    db.execute("INSERT INTO revisions (id, wiki_id, page_id, kind, path, old_path, attachment, content, author_did, "
               "via, message, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (revision_id, wiki_id, page_id, kind, path, old_path, attachment, content, author.did, author.via,
                message, created_at))


# Every page change passes through _record, so this is where the semantic index (robotwtf_semantic)
# learns of it, inside the change's own transaction: the page's chunks become stale, or for a
# deletion are dropped, and the page's stamp becomes the newest, which is how the in-memory index
# of every process finds what changed. Plain SQL on a small indexed table, run whether or not
# semantic search is on (then the rows wait for the day it is). stamp = the wiki's max + 1 relies
# on writers being serialized, as transaction() makes them.
SEMANTIC_MARK = """INSERT INTO semantic_pages (page_id, wiki_id, state, stamp)
VALUES (?, ?, ?, (SELECT coalesce(max(stamp), 0) + 1 FROM semantic_pages WHERE wiki_id = ?))
ON CONFLICT (page_id) DO UPDATE SET state = excluded.state, stamp = excluded.stamp"""


def _mark_semantic_index(db: sqlite3.Connection, wiki_id: int, page_id: int, deleted: bool) -> None:
    db.execute(SEMANTIC_MARK, (page_id, wiki_id, "gone" if deleted else "stale", wiki_id))
    if deleted:
        db.execute("DELETE FROM semantic_chunks WHERE page_id = ?", (page_id,))


def _store_links(db: sqlite3.Connection, wiki_id: int, page_id: int, targets: dict[str, str]) -> None:
    db.execute("DELETE FROM links WHERE page_id = ?", (page_id,))
    db.executemany("INSERT INTO links (page_id, wiki_id, target_key, target) VALUES (?, ?, ?, ?)",
                   [(page_id, wiki_id, key, target) for key, target in targets.items()])


# --- wiki storage: reading ---------------------------------------------------------------------------------

def read_page(db: sqlite3.Connection, wiki_id: int, path: str, revision: str = "", section: str = "") -> Page:
    """A live page, optionally as it was at `revision` (a unique prefix of ≥ 7 characters of one
    of its revisions) and narrowed to one `section` (see find_section)."""
    return _read_page(db, wiki_id, path, revision, section, with_links=False)[0]


def read_page_with_links(db: sqlite3.Connection, wiki_id: int, path: str, revision: str = "",
                         section: str = "") -> tuple[Page, PageLinks | None]:
    """read_page, plus the page's links (as page_links gives them) read in the same snapshot when
    the page is read whole at its current revision; None otherwise."""
    return _read_page(db, wiki_id, path, revision, section, with_links=True)


def _read_page(db: sqlite3.Connection, wiki_id: int, path: str, revision: str, section: str,
               with_links: bool) -> tuple[Page, PageLinks | None]:
    if with_links and not revision and not section:
        row, links = _page_with_links(db, wiki_id, path)
        return _page(row), links
    with read_snapshot(db):
        row = _page_row(db, wiki_id, path)
        old = _revision_row(db, wiki_id, revision, page_id=row["id"]) if revision else None
        whole_current = not section and (old is None or old["id"] == row["revision_id"])
        links = _page_with_links(db, wiki_id, path)[1] if with_links and whole_current else None
    page = _page(row)
    if old is not None:
        fields = _page_fields(old["content"])
        page = dataclasses.replace(page, revision=old["id"], content=old["content"], title=fields["title"],
                                   category=fields["category"], tags=tuple(json.loads(fields["tags"])),
                                   meta=json.loads(fields["meta"]), words=fields["words"], size=fields["size"],
                                   updated_at=old["created_at"])
    if section:
        heading, text = find_section(page.content, section)
        page = dataclasses.replace(page, content=text, section=" > ".join(heading.trail))
    return page, links


def list_pages(db: sqlite3.Connection, wiki_id: int, prefix: str = "", category: str = "", tag: str = "",
               updated_since: int | str | None = None) -> list[PageInfo]:
    """Live pages in path order, filtered by every given condition: path prefix, category and
    tag (all case-insensitive), updated at or after updated_since (Unix seconds or ISO 8601)."""
    since = parse_time(updated_since)
    sql = f"SELECT {PAGE_INFO_COLUMNS}, path_key FROM pages WHERE wiki_id = ? AND deleted_at IS NULL"
    args: list = [wiki_id]
    if prefix:
        key = path_key(prefix.strip())
        sql += " AND substr(path_key, 1, ?) = ?"
        args += [len(key), key]
    if since is not None:
        sql += " AND updated_at >= ?"
        args.append(since)
    pages = [_page_info(row) for row in db.execute(sql + " ORDER BY path_key", args)]
    if category:
        pages = [p for p in pages if p.category.casefold() == category.strip().casefold()]
    if tag:
        pages = [p for p in pages if tag.strip().casefold() in (t.casefold() for t in p.tags)]
    return pages


def deleted_pages(db: sqlite3.Connection, wiki_id: int) -> list[PageInfo]:
    """Deleted pages, most recently deleted first; `revision` is the deletion, which restore_revision
    accepts."""
    return [_page_info(row) for row in db.execute(
        f"SELECT {PAGE_INFO_COLUMNS} FROM pages WHERE wiki_id = ? AND deleted_at IS NOT NULL "
        "ORDER BY deleted_at DESC, id DESC", (wiki_id,))]


def _search_terms(text: str, prefix_words: bool = False) -> list[tuple[str, bool]]:
    """The terms of a search: each word and "quoted phrase" (an unbalanced quote reads as one)
    with whether it is a prefix (word*; with prefix_words every word, not a phrase, is one, as
    people type in a search box: `tomat` finds Tomato). Either engine's operators are just words."""
    terms = []
    for phrase, word in re.findall(r'"([^"]*)"?|([^\s"]+)', text):
        body = phrase if phrase else word.rstrip("*")
        if re.search(r"\w", body):
            terms.append((body, (word.endswith("*") or prefix_words) and not phrase))
    return terms


def _fts_query(text: str, prefix_words: bool = False) -> str:
    """User text as an FTS5 query that cannot be a syntax error: every term becomes a quoted FTS
    string (so AND, NEAR(, -, ^ are just words), a prefix keeps its *, and the terms are ANDed."""
    return " AND ".join('"' + body.replace('"', '""') + '"' + ("*" if prefix else "")
                        for body, prefix in _search_terms(text, prefix_words))


def search_pages(db: sqlite3.Connection, wiki_id: int, query: str, limit: int = 20) -> list[SearchHit]:
    """Full-text search of the wiki's live pages, best first (bm25, a path or title match weighing
    more than one in the text). Words are ANDed; "a phrase" matches exactly; word* is a prefix."""
    if db.engine == "postgresql":
        return _search_postgres(db, wiki_id, _tsquery(query or ""), _clamp(limit, 1, 100))
    match = _fts_query(query or "")
    if not match:
        return []
    with read_snapshot(db):
        return _hits(db, match, _best_pages(db, wiki_id, match, _clamp(limit, 1, 100)))


@dataclasses.dataclass(frozen=True)
class SearchResults:
    hits: list[SearchHit]
    total: int                 # every matching page, not only those in hits
    suggestions: list[str]     # page paths whose names are close to the query, when nothing matched


def search_wiki(db: sqlite3.Connection, wiki_id: int, query: str, limit: int = 50) -> SearchResults:
    """The search box of the browser: like search_pages, but every word is also a prefix (people
    stop typing early), pages whose path or title match come before those that match only in
    their text, the total number of matching pages is counted, and when nothing matches the
    closest page names are offered ("did you mean")."""
    if db.engine == "postgresql":
        return _search_wiki_postgres(db, wiki_id, query or "", _clamp(limit, 1, 100))
    match = _fts_query(query or "", prefix_words=True)
    if not match:
        return SearchResults([], 0, [])
    limit = _clamp(limit, 1, 100)
    with read_snapshot(db):
        titled = _best_pages(db, wiki_id, f"{{path title}} : ({match})", limit)
        seen = {row["id"] for row, _ in titled}
        rest = [hit for hit in _best_pages(db, wiki_id, match, limit) if hit[0]["id"] not in seen]
        hits = _hits(db, match, (titled + rest)[:limit])
        total = db.execute("SELECT count(*) FROM pages_fts JOIN pages ON pages.id = pages_fts.rowid WHERE "
                           "pages_fts MATCH ? AND pages.wiki_id = ?", (match, wiki_id)).fetchone()[0]
    return SearchResults(hits, total, [] if total else similar_page_paths(db, wiki_id, query))


def _hits(db: sqlite3.Connection, match: str, ranked: list[tuple[sqlite3.Row, float]]) -> list[SearchHit]:
    # snippet() tokenizes and scores the whole text, so only the pages shown get one: computed
    # in the ranking query, it ran for every match before ORDER BY ... LIMIT kept 20.
    snippets = dict(db.execute(
        "SELECT ids.value, snippet(pages_fts, 2, ?, ?, '…', 24) FROM json_each(?) AS ids "
        "CROSS JOIN pages_fts ON pages_fts.rowid = ids.value WHERE pages_fts MATCH ?",
        (MARK_START, MARK_END, json.dumps([row["id"] for row, _ in ranked]), match)).fetchall())
    return [SearchHit(row["path"], row["title"], row["revision_id"], round(-rank, 3), snippets[row["id"]])
            for row, rank in ranked]


def page_paths(db: sqlite3.Connection, wiki_id: int) -> list[tuple[str, str]]:
    """(path, path_key) of every live page, in path order, read from an index alone (the
    browser's page tree is built from these on every page view)."""
    if db.engine == "postgresql":  # its planner finds the covering index by itself
        return [tuple(row) for row in db.execute("SELECT path, path_key FROM pages WHERE wiki_id = ? AND deleted_at "
                                                 "IS NULL ORDER BY path_key", (wiki_id,))]
    cursor = db.cursor()
    cursor.row_factory = None   # plain tuples: sqlite3.Row objects cost more than the query for 5,000 rows
    return cursor.execute("SELECT path, path_key FROM pages INDEXED BY pages_live_paths WHERE wiki_id = ? "
                          "AND deleted_at IS NULL ORDER BY path_key", (wiki_id,)).fetchall()


def latest_revision(db: sqlite3.Connection, wiki_id: int) -> str | None:
    """The id of the wiki's newest revision: every write makes a new one (ids are random, never
    reused), so what is computed from the wiki's pages can be cached under it."""
    row = db.execute("SELECT id FROM revisions WHERE wiki_id = ? ORDER BY seq DESC LIMIT 1", (wiki_id,)).fetchone()
    return row[0] if row else None


def similar_page_paths(db: sqlite3.Connection, wiki_id: int, text: str, n: int = 3) -> list[str]:
    """Up to n live pages whose name (last path segment) is spelled like `text`, closest first."""
    import difflib
    names: dict[str, str] = {}
    for path, _ in page_paths(db, wiki_id):
        names.setdefault(path.rsplit("/", 1)[-1].casefold(), path)
    close = difflib.get_close_matches(text.strip().casefold(), list(names), n=n, cutoff=0.7)
    return [names[name] for name in close]


def _best_pages(db: sqlite3.Connection, wiki_id: int, match: str, limit: int) -> list[tuple[sqlite3.Row, float]]:
    """The wiki's `limit` best-ranked live pages with their bm25 ranks (lower is better). The index
    covers every wiki, so pages are looked up in rank order, a growing batch at a time, until
    enough belong to this one: a join before the sort would look up every match."""
    found: list[tuple[sqlite3.Row, float]] = []
    batch = limit
    with contextlib.closing(db.execute("SELECT rowid, bm25(pages_fts, 10.0, 5.0, 1.0) FROM pages_fts "
                                       "WHERE pages_fts MATCH ? ORDER BY 2", (match,))) as ranked:
        while len(found) < limit:
            ranks = dict(ranked.fetchmany(batch))
            if not ranks:
                break
            rows = db.execute(f"SELECT id, path, title, revision_id FROM pages WHERE wiki_id = ? AND deleted_at "
                              f"IS NULL AND id IN ({', '.join('?' * len(ranks))})", (wiki_id, *ranks)).fetchall()
            found += sorted(((row, ranks[row["id"]]) for row in rows), key=lambda hit: hit[1])
            batch = min(batch * 2, 500)  # SQLite before 3.32 allows at most 999 bound values
    return found[:limit]


# PostgreSQL's full-text search: pages_fts holds each live page's tsvector (path, title and text
# weighted A, B and D, kept by a trigger; see schema.sql), tokenized as FTS5's unicode61 does:
# punctuation separates words, no stemming ('simple'). ts_rank's weights {D, C, B, A} give a path
# or title match the weight that bm25's 10:5:1 gives it on SQLite. ts_headline drops anything
# that looks like an HTML tag from its snippet, so it sees each < as TAG_STAND_IN (a control
# character no page may hold) and the snippet gets it back. It parses only the text around the
# first place the query's first word appears (parsing whole pages cost ~1 ms each), once per
# page (MATERIALIZED: inlined, each use of a CTE's column computed it again); its words are then
# framed as FTS5's snippet() frames them: with the text before (after) them when no word is
# there, else with '…'.
POSTGRES_SEARCH = """
WITH query AS (SELECT to_tsquery('simple', :query) AS q),
ranked AS (
  SELECT f.page_id AS id, ts_rank('{0.1, 0.2, 0.5, 1.0}', f.document, query.q) AS rank
  FROM query, pages_fts f WHERE f.document @@ query.q AND f.wiki_id = :wiki_id
  ORDER BY rank DESC, f.page_id LIMIT :limit),
shown AS MATERIALIZED (
  SELECT ranked.*, p.path, p.title, p.revision_id, replace(p.content, '<', :tag) AS body,
    greatest(strpos(lower(p.content COLLATE "default"), :anchor) - :reach, 1) AS low
  FROM ranked JOIN pages p ON p.id = ranked.id),
excerpt AS (
  SELECT shown.*, regexp_replace(regexp_replace(substr(body, low, 2 * :reach),
    CASE WHEN low > 1 THEN '^\\S*' ELSE '^' END, ''), CASE WHEN low + 2 * :reach <= length(body) THEN '\\S*$' ELSE '$' END,
    '') AS near FROM shown),
lit AS MATERIALIZED (SELECT excerpt.*, ts_headline('simple', near, query.q, :options) AS headline FROM query, excerpt),
placed AS (
  SELECT lit.*, strpos(body, replace(replace(headline, :start, ''), :end, '')) AS at,
    length(replace(replace(headline, :start, ''), :end, '')) AS span
  FROM lit)
SELECT id, path, title, revision_id, rank,
  CASE WHEN at = 0 THEN '' WHEN substr(body, 1, at - 1) ~ '[^[:space:][:punct:]]' THEN '…'
       ELSE substr(body, 1, at - 1) END
  || headline ||
  CASE WHEN at = 0 THEN '' WHEN substr(body, at + span) ~ '[^[:space:][:punct:]]' THEN '…'
       ELSE substr(body, at + span) END AS snippet
FROM placed ORDER BY rank DESC, id"""
POSTGRES_HEADLINE = (f'StartSel="{MARK_START}", StopSel="{MARK_END}", MaxWords=24, MinWords=12, ShortWord=0, '
                     'MaxFragments=1, FragmentDelimiter="…"')
SEARCH_WORD_RE = re.compile(r"[^\W_]+")
TAG_STAND_IN = "\x01"


def _tsquery(text: str, prefix_words: bool = False, weights: str = "") -> str:
    """User text (as _search_terms reads it) as a to_tsquery() argument that cannot be a syntax
    error: only runs of letters and digits, each quoted; a phrase's words follow each other (<->),
    a prefix ends in :*, and the terms are ANDed. `weights` ("AB": path or title) restricts
    every word to those parts of the page."""
    terms = []
    for body, prefix in _search_terms(unicodedata.normalize("NFC", text), prefix_words):
        words = SEARCH_WORD_RE.findall(body)
        if words:
            marks = [":" + weights if weights else ""] * (len(words) - 1) + [":" + ("*" if prefix else "") + weights]
            terms.append(" <-> ".join(f"'{word}'{mark.rstrip(':')}" for word, mark in zip(words, marks)))
    return " & ".join(terms)


def _search_postgres(db, wiki_id: int, query: str, limit: int) -> list[SearchHit]:
    """The wiki's `limit` best live pages for a _tsquery() `query`, best first."""
    if not query:
        return []
    anchor = re.search(r"'([^']*)'", query)[1].lower()
    rows = db.execute(POSTGRES_SEARCH, {"query": query, "wiki_id": wiki_id, "limit": limit, "tag": TAG_STAND_IN,
                                        "options": POSTGRES_HEADLINE, "start": MARK_START, "end": MARK_END,
                                        "anchor": anchor, "reach": 400}).fetchall()
    return [SearchHit(row["path"], row["title"], row["revision_id"], round(row["rank"], 4),
                      row["snippet"].replace(TAG_STAND_IN, "<")) for row in rows]


def _search_wiki_postgres(db, wiki_id: int, text: str, limit: int) -> SearchResults:
    query = _tsquery(text, prefix_words=True)
    if not query:
        return SearchResults([], 0, [])
    with read_snapshot(db):
        titled = _search_postgres(db, wiki_id, _tsquery(text, prefix_words=True, weights="AB"), limit)
        seen = {hit.path for hit in titled}
        rest = [hit for hit in _search_postgres(db, wiki_id, query, limit) if hit.path not in seen]
        total = db.execute("SELECT count(*) FROM pages_fts WHERE document @@ to_tsquery('simple', ?) AND wiki_id = ?",
                           (query, wiki_id)).fetchone()[0]
    return SearchResults((titled + rest)[:limit], total, [] if total else similar_page_paths(db, wiki_id, text))


def page_links(db: sqlite3.Connection, wiki_id: int, path: str) -> PageLinks:
    """A live page's outgoing WikiLinks (each saying whether its page exists) and the live pages
    linking to it."""
    return _page_with_links(db, wiki_id, path)[1]


def existing_pages(db: sqlite3.Connection, wiki_id: int, targets) -> dict[str, str]:
    """{path_key(target): the live page's path} for those of `targets` (paths, e.g. WikiLink
    targets of a preview or an old revision) that are live pages; missing ones are left out."""
    keys = sorted({path_key(t) for t in targets})
    found = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        found.update(db.execute(f"SELECT path_key, path FROM pages WHERE wiki_id = ? AND deleted_at IS NULL "
                                f"AND path_key IN ({', '.join('?' * len(chunk))})", (wiki_id, *chunk)).fetchall())
    return found


def orphan_pages(db: sqlite3.Connection, wiki_id: int) -> list[str]:
    """Live pages no other live page links to, except Home (every wiki's entry point)."""
    return [r[0] for r in db.execute(
        "SELECT path FROM pages WHERE wiki_id = ? AND deleted_at IS NULL AND path_key != ? AND NOT EXISTS "
        "(SELECT 1 FROM links WHERE links.wiki_id = pages.wiki_id AND links.target_key = pages.path_key "
        "AND links.page_id != pages.id) ORDER BY path_key", (wiki_id, path_key(HOME_PAGE)))]


def broken_links(db: sqlite3.Connection, wiki_id: int) -> list[BrokenLink]:
    """WikiLinks from live pages to pages that don't exist (or were deleted)."""
    return [BrokenLink(r[0], r[1]) for r in db.execute(
        "SELECT source.path, links.target FROM links JOIN pages AS source ON source.id = links.page_id "
        "WHERE links.wiki_id = ? AND NOT EXISTS (SELECT 1 FROM pages WHERE pages.wiki_id = links.wiki_id "
        "AND pages.path_key = links.target_key AND pages.deleted_at IS NULL) "
        "ORDER BY source.path_key, links.target_key", (wiki_id,))]


def _clamp(limit: int, low: int = 1, high: int = 200) -> int:
    try:
        return max(low, min(int(limit), high))
    except (TypeError, ValueError):
        raise BadInput(f"'{_shown(limit)}' is not a number.") from None


def recent_changes(db: sqlite3.Connection, wiki_id: int, limit: int = 20) -> list[Revision]:
    """The wiki's latest revisions, newest first (limit clamped to 1..200); content is None."""
    return [_revision(r) for r in db.execute(REVISION_SELECT + "WHERE revisions.wiki_id = ? "
                                             "ORDER BY revisions.seq DESC LIMIT ?", (wiki_id, _clamp(limit)))]


def page_history(db: sqlite3.Connection, wiki_id: int, path: str, limit: int = 10) -> list[Revision]:
    """A page's revisions, newest first (limit clamped to 1..200), across its renames. For a path
    with no live page, the history of the page most recently deleted there."""
    path = validate_page_path(path)
    row = _live_row(db, wiki_id, path) or db.execute(
        "SELECT * FROM pages WHERE wiki_id = ? AND path_key = ? ORDER BY deleted_at DESC, id DESC LIMIT 1",
        (wiki_id, path_key(path))).fetchone()
    if row is None:
        raise NotFound(f"Page not found: '{path}'. If it was renamed, recent changes show where it went.")
    return [_revision(r) for r in db.execute(REVISION_SELECT + "WHERE revisions.page_id = ? "
                                             "ORDER BY revisions.seq DESC LIMIT ?", (row["id"], _clamp(limit)))]


def get_revision(db: sqlite3.Connection, wiki_id: int, revision: str) -> Revision:
    """One revision of any page of the wiki, with content, by a unique prefix of ≥ 7 characters."""
    return _revision(_revision_row(db, wiki_id, revision), with_content=True)


def diff_revisions(db: sqlite3.Connection, wiki_id: int, old: str, new: str) -> RevisionDiff:
    """The diff from revision `old` to revision `new` (any two revisions of the wiki)."""
    return RevisionDiff(get_revision(db, wiki_id, old), get_revision(db, wiki_id, new))


# --- wiki storage: writing pages -----------------------------------------------------------------------------

def write_page(db: sqlite3.Connection, wiki_id: int, path: str, content: str, base_revision: str = "", *,
               author: Author, quotas: Quotas, message: str = "") -> Change:
    """Create a page (no base_revision; Conflict if it exists) or replace its content (base_revision
    must be its current revision, else Conflict). Writing identical content changes nothing."""
    path, text = validate_page_path(path), page_text(validate_content(content))
    with transaction(db):
        row = _live_row(db, wiki_id, path)
        if not base_revision:
            if row is not None:
                raise Conflict(f"Page '{row['path']}' already exists (revision {row['revision_id']}). Read it "
                               "and pass its revision to replace it, or choose another path.", "page_exists",
                               path=row["path"])
            _check_new_page_quotas(db, wiki_id, quotas, text.fields["size"])
            page_id = _record(db, wiki_id, None, "create", path, text, author, _message(message, f"Create {path}"))
            return Change(_page_by_id(db, page_id), "create")
        if row is None:
            raise NotFound(f"Page not found: '{path}'. To create it, write it without a revision.")
        _check_base(db, row, base_revision)
        return _update(db, wiki_id, row, text, author, quotas, _message(message, f"Update {row['path']}"))


def _update(db: sqlite3.Connection, wiki_id: int, row: sqlite3.Row, text: PageText, author: Author,
            quotas: Quotas, message: str) -> Change:
    if text.content == row["content"]:
        return Change(_page(row), "none")
    _check_bytes_quota(db, wiki_id, quotas, text.fields["size"] - row["size"])
    _record(db, wiki_id, row["id"], "update", row["path"], text, author, message)
    return Change(_page_by_id(db, row["id"]), "update")


def edit_page(db: sqlite3.Connection, wiki_id: int, path: str, base_revision: str, old_string: str,
              new_string: str, *, author: Author, quotas: Quotas, message: str = "") -> Change:
    """Replace the one occurrence of old_string (front matter included) with new_string; an empty
    new_string deletes it. base_revision is required and must be current."""
    if not base_revision:
        raise BadInput("Editing needs the page's current revision: read the page first and pass its revision.")
    if not isinstance(old_string, str) or not isinstance(new_string, str) or not old_string:
        raise BadInput("old_string must be the exact, non-empty text to replace.")
    old_string, new_string = old_string.replace("\r\n", "\n"), new_string.replace("\r\n", "\n")
    with transaction(db):
        row = _page_row(db, wiki_id, path)
        _check_base(db, row, base_revision)
        count = row["content"].count(old_string)
        if count == 0:
            raise BadInput(f"old_string was not found in '{row['path']}' (revision {row['revision_id']}). Read the "
                           "page again and copy the text exactly, including spaces and line breaks.")
        if count > 1:
            raise BadInput(f"old_string occurs {count} times in '{row['path']}'; include more of the surrounding "
                           "text so it matches exactly once.")
        content = validate_content(row["content"].replace(old_string, new_string, 1))
        return _update(db, wiki_id, row, page_text(content), author, quotas, _message(message, f"Edit {row['path']}"))


def rename_page(db: sqlite3.Connection, wiki_id: int, path: str, new_path: str, *, author: Author,
                message: str = "", base_revision: str = "", subpages: bool = False,
                rewrite_links: bool = True) -> Change:
    """Move a page to new_path (its history follows) and, in the same transaction, rewrite the
    `[[links]]` to it in every other page, each rewritten page getting one revision. With
    `subpages`, every live page under `path/` moves along to the same place under `new_path/`
    (`Plants/Tomato` to `Garden/Tomato`), links to them rewritten alike. Without `rewrite_links`
    no text changes (a git push says itself what every page holds). Conflict if a page that
    stays has a path one of them needs. Change.rewritten lists the rewritten pages, Change.moved
    the sub-pages as (old path, new path)."""
    new_path = validate_page_path(new_path)
    with transaction(db):
        row = _page_row(db, wiki_id, path)
        if base_revision:
            _check_base(db, row, base_revision)
        old_path = row["path"]
        if new_path == old_path:
            raise BadInput(f"'{old_path}' already has that path; give a different new path.")
        depth = old_path.count("/") + 1
        moves = [(row, new_path)] + [
            (sub, validate_page_path("/".join([new_path, *sub["path"].split("/")[depth:]])))
            for sub in (_subpage_rows(db, wiki_id, old_path) if subpages else [])]
        moving = {moved["id"] for moved, _ in moves}
        for _, target in moves:
            taken = _live_row(db, wiki_id, target)
            if taken is not None and taken["id"] not in moving:
                raise Conflict(f"Page '{taken['path']}' already exists; choose another new path, or rename or "
                               "delete that page first.", "page_exists", path=taken["path"])
        keys = {moved["path_key"]: target for moved, target in moves}
        # Free the moving pages' paths first, so a page may take a path another one is leaving (a
        # key that starts with / is no page's: paths have no empty segment; PostgreSQL text holds no NUL).
        db.executemany("UPDATE pages SET path_key = ? WHERE id = ?", [(f"/{i}", i) for i in moving])
        text = f"Rename {old_path} to {new_path}"
        for moved, target in moves:
            note = _message(message, text) if moved is row else f"{text}: move {moved['path']} to {target}"
            text_after = _rewritten(moved, keys) if rewrite_links else page_text(moved["content"])
            _record(db, wiki_id, moved["id"], "rename", target, text_after, author, note, old_path=moved["path"])
        rewritten = _rewrite_links_to(db, wiki_id, keys, moving, author, text) if rewrite_links else []
        return Change(_page_by_id(db, row["id"]), "rename", tuple(rewritten),
                      moved=tuple((moved["path"], target) for moved, target in moves[1:]))


def _rewrite_links_to(db: sqlite3.Connection, wiki_id: int, keys: dict[str, str], moving: set[int], author: Author,
                      text: str) -> list[str]:
    """Give every page that links to a moved page (and is not moving itself) a revision with its
    links rewritten; returns their paths."""
    rewritten = []
    for other in db.execute("SELECT DISTINCT pages.* FROM links JOIN pages ON pages.id = links.page_id "
                            f"WHERE links.wiki_id = ? AND links.target_key IN ({JSON_TEXTS[db.engine]}) "
                            "ORDER BY pages.path_key", (wiki_id, json.dumps(list(keys)))).fetchall():
        if other["id"] not in moving:
            _record(db, wiki_id, other["id"], "update", other["path"], _rewritten(other, keys), author,
                    f"Update links after: {text}")
            rewritten.append(other["path"])
    return rewritten
# The strings of a JSON array bound as one parameter, as rows (no limit on how many, unlike `?`s).
JSON_TEXTS = {"sqlite": "SELECT value FROM json_each(?)", "postgresql": "SELECT json_array_elements_text(?::json)"}


def _subpage_rows(db: sqlite3.Connection, wiki_id: int, path: str) -> list[sqlite3.Row]:
    prefix = path_key(path) + "/"
    return db.execute("SELECT * FROM pages WHERE wiki_id = ? AND deleted_at IS NULL AND substr(path_key, 1, ?) = ? "
                      "ORDER BY path_key", (wiki_id, len(prefix), prefix)).fetchall()


def subpages(db: sqlite3.Connection, wiki_id: int, path: str) -> list[str]:
    """The paths of the live pages under `path/` (what a rename with subpages moves along)."""
    return [row["path"] for row in _subpage_rows(db, wiki_id, validate_page_path(path))]


def _rewritten(row: sqlite3.Row, moves: dict[str, str]) -> PageText:
    content = _rewrite_links(row["content"], moves)
    if len(content.encode()) > MAX_PAGE_BYTES:
        raise TooLarge(f"Rewriting the links in '{row['path']}' would take it over {MAX_PAGE_BYTES} bytes; "
                       "shorten that page or choose a shorter new path.")
    return page_text(content)


def delete_page(db: sqlite3.Connection, wiki_id: int, path: str, *, author: Author, message: str = "",
                base_revision: str = "") -> Change:
    """Delete a page: it leaves listings, search and links, but keeps its history and attachments
    and can be brought back with restore_revision. Change.page has deleted_at set."""
    with transaction(db):
        row = _page_row(db, wiki_id, path)
        if base_revision:
            _check_base(db, row, base_revision)
        _record(db, wiki_id, row["id"], "delete", row["path"], page_text(row["content"]), author,
                _message(message, f"Delete {row['path']}"), deleted_at=now())
        return Change(_page_by_id(db, row["id"]), "delete")


def restore_revision(db: sqlite3.Connection, wiki_id: int, revision: str, *, author: Author, quotas: Quotas,
                     message: str = "", path: str = "", base_revision: str = "") -> Change:
    """Bring back the content a page had at `revision`. A deleted page comes back to life (at its
    last path, or at `path` if given: Conflict if a page lives there now); a live page gets a
    new revision with that content (base_revision, if given, must be current)."""
    with transaction(db):
        old = _revision_row(db, wiki_id, revision)
        row = db.execute("SELECT * FROM pages WHERE id = ?", (old["page_id"],)).fetchone()
        if row["deleted_at"] is None:
            if path and path_key(validate_page_path(path)) != row["path_key"]:
                raise BadInput(f"Page '{row['path']}' is not deleted; rename it to move it.")
            if base_revision:
                _check_base(db, row, base_revision)
            if old["content"] == row["content"]:
                return Change(_page(row), "none")
            _check_bytes_quota(db, wiki_id, quotas, len(old["content"].encode()) - row["size"])
            target = row["path"]
        else:
            target = validate_page_path(path) if path else row["path"]
            living = _live_row(db, wiki_id, target)
            if living is not None:
                raise Conflict(f"Page '{living['path']}' exists now. Restore to another path, or rename that "
                               "page first.", "page_exists", path=living["path"])
            files = db.execute("SELECT coalesce(sum(size), 0) FROM attachments WHERE page_id = ?",
                               (row["id"],)).fetchone()[0]
            _check_new_page_quotas(db, wiki_id, quotas, len(old["content"].encode()) + files)
        _record(db, wiki_id, row["id"], "restore", target, page_text(old["content"]), author,
                _message(message, f"Restore {target} to revision {old['id']}"),
                old_path=row["path"] if target != row["path"] else None)
        return Change(_page_by_id(db, row["id"]), "restore")


# --- wiki storage: attachments ----------------------------------------------------------------------------

MAGIC_TYPES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"), (b"%PDF-", "application/pdf"), (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"), (b"OggS", "audio/ogg"), (b"ID3", "audio/mpeg"), (b"fLaC", "audio/flac"),
)
# The HTML signatures of the WHATWG MIME Sniffing standard (§7.1): a browser that sniffs would
# render such bytes as a page whatever they were called.
HTML_SIGNATURES = (b"<!doctype html", b"<html", b"<head", b"<script", b"<iframe", b"<h1", b"<div", b"<font",
                   b"<table", b"<a", b"<style", b"<title", b"<b", b"<body", b"<br", b"<p")
TEXT_SUBTYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".csv": "text/csv",
                 ".json": "application/json"}
# What may be shown in the browser: images that can't run script, and text sent as text/plain.
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
INLINE_TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/csv", "application/json"})
ACTIVE_TYPES = frozenset({"text/html", "image/svg+xml", "application/xml"})


def sniff_content_type(data: bytes, filename: str = "") -> str:
    """The content type the bytes really have (the client's claim and the file name's extension
    are not trusted, except to tell kinds of plain text apart)."""
    for magic, content_type in MAGIC_TYPES:
        if data.startswith(magic):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] in (b"WEBP", b"WAVE"):
        return "image/webp" if data[8:12] == b"WEBP" else "audio/wav"
    if data[4:8] == b"ftyp":
        return "image/avif" if data[8:12] in (b"avif", b"avis") else "video/mp4"
    head = data[:4096].lstrip(b"\t\n\x0c\r ").lower()
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:].lstrip(b"\t\n\x0c\r ")
    if b"<svg" in head and (head.startswith((b"<svg", b"<?xml", b"<!doctype svg", b"<!--"))):
        return "image/svg+xml"
    if head.startswith(b"<!--") or any(head.startswith(s) and head[len(s):len(s) + 1] in (b" ", b">", b"\t", b"\n")
                                       for s in HTML_SIGNATURES):
        return "text/html"
    if head.startswith(b"<?xml"):
        return "application/xml"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    if CONTENT_CONTROL_RE.search(text):
        return "application/octet-stream"
    return TEXT_SUBTYPES.get(os.path.splitext(filename)[1].lower(), "text/plain")


def sanitize_filename(name: str) -> str:
    """An attachment's file name made safe to store, list and export: the last part of any path,
    NFC, without control, invisible-format or bidi characters, leading dots or trailing dots and
    spaces, at most 200 bytes (keeping the extension). Other characters, HTML included, are
    kept as they are: escaping them is the output's job."""
    if not isinstance(name, str):
        raise BadInput("A file name must be text.")
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = re.sub(r"\s+", " ", name)
    name = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Zl", "Zp"))
    name = name.strip(" ").lstrip(".").rstrip(". ")
    if not name:
        raise BadInput("The file name has no usable characters; give a name like notes.pdf.")
    stem, ext = os.path.splitext(name)
    while len((stem + ext).encode()) > MAX_FILENAME_BYTES:
        stem, ext = (stem[:-1], ext) if stem else (stem, ext[:-1])
    return stem.rstrip(". ") + ext or "file"


def attachment_delivery(attachment: Attachment) -> tuple[str, str]:
    """(Content-Type, Content-Disposition) to serve an attachment with (always together with
    X-Content-Type-Options: nosniff). Safe images are inline; text is inline as text/plain; HTML,
    SVG and XML are downloads typed application/octet-stream, so they never run in our origin."""
    content_type = attachment.content_type
    if content_type in INLINE_IMAGE_TYPES:
        return content_type, _disposition("inline", attachment.filename)
    if content_type in INLINE_TEXT_TYPES:
        return "text/plain; charset=utf-8", _disposition("inline", attachment.filename)
    if content_type in ACTIVE_TYPES:
        return "application/octet-stream", _disposition("attachment", attachment.filename)
    return content_type, _disposition("attachment", attachment.filename)


def _disposition(kind: str, filename: str) -> str:
    """RFC 6266: an ASCII fallback name plus the exact name as RFC 8187 filename*."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in filename)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{urllib.parse.quote(filename, safe='')}"


def _attachment_row(db: sqlite3.Connection, page_id: int, filename: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM attachments WHERE page_id = ? AND filename_key = ?",
                      (page_id, sanitize_filename(filename).casefold())).fetchone()


def page_info(db: sqlite3.Connection, wiki_id: int, path: str) -> PageInfo:
    """A live page without its content: its path as stored, current revision and metadata."""
    return _page_info(_page_row(db, wiki_id, path))


def list_attachments(db: sqlite3.Connection, wiki_id: int, path: str) -> list[Attachment]:
    """A live page's attachments by name, without their bytes."""
    row = _page_row(db, wiki_id, path)
    return [_attachment(r) for r in db.execute(
        "SELECT filename, content_type, size, author_did, updated_at FROM attachments WHERE page_id = ? "
        "ORDER BY filename_key", (row["id"],))]


def get_attachment(db: sqlite3.Connection, wiki_id: int, path: str, filename: str) -> Attachment:
    """One attachment with its bytes; the name matches ignoring case."""
    row = _page_row(db, wiki_id, path)
    found = _attachment_row(db, row["id"], filename)
    if found is None:
        raise NotFound(f"Page '{row['path']}' has no attachment '{_shown(filename)}'. List its attachments to see "
                       "the names.")
    return _attachment(found, with_data=True)


def put_attachment(db: sqlite3.Connection, wiki_id: int, path: str, filename: str, data: bytes, *,
                   author: Author, quotas: Quotas, message: str = "") -> Change:
    """Attach a file (≤ 10 MB) to a live page, replacing one of the same name; the page gets an
    'attachment' revision. Change.attachment is what was stored (sanitised name, sniffed type)."""
    if not isinstance(data, (bytes, bytearray)):
        raise BadInput("An attachment's content must be bytes.")
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise TooLarge(f"The file is {len(data)} bytes; attachments are at most {MAX_ATTACHMENT_BYTES} bytes "
                       "(10 MB).")
    name = sanitize_filename(filename)
    content_type = sniff_content_type(bytes(data), name)
    with transaction(db):
        row = _page_row(db, wiki_id, path)
        existing = _attachment_row(db, row["id"], name)
        _check_bytes_quota(db, wiki_id, quotas, len(data) - (existing["size"] if existing else 0))
        # An upsert, not INSERT OR REPLACE: REPLACE's implicit delete fires no trigger, and
        # wiki_totals would count the old file's bytes forever.
        db.execute("INSERT INTO attachments (page_id, filename_key, filename, content_type, size, data, author_did, "
                   "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (page_id, filename_key) DO UPDATE SET "
                   "filename = excluded.filename, content_type = excluded.content_type, size = excluded.size, "
                   "data = excluded.data, author_did = excluded.author_did, updated_at = excluded.updated_at",
                   (row["id"], name.casefold(), name, content_type, len(data), bytes(data), author.did, now()))
        _record(db, wiki_id, row["id"], "attachment", row["path"], page_text(row["content"]), author,
                _message(message, f"Attach {name} to {row['path']} ({len(data)} bytes)"), attachment=name)
        _keep_attachment_version(db, wiki_id, row["id"], bytes(data))
        stored = _attachment(_attachment_row(db, row["id"], name))
        return Change(_page_by_id(db, row["id"]), "attachment", attachment=stored)


def delete_attachment(db: sqlite3.Connection, wiki_id: int, path: str, filename: str, *, author: Author,
                      message: str = "") -> Change:
    """Remove an attachment from a live page (recorded as an 'attachment' revision)."""
    with transaction(db):
        row = _page_row(db, wiki_id, path)
        found = _attachment_row(db, row["id"], filename)
        if found is None:
            raise NotFound(f"Page '{row['path']}' has no attachment '{_shown(filename)}'. List its attachments to see "
                           "the names.")
        db.execute("DELETE FROM attachments WHERE page_id = ? AND filename_key = ?", (row["id"], found["filename_key"]))
        _record(db, wiki_id, row["id"], "attachment", row["path"], page_text(row["content"]), author,
                _message(message, f"Delete attachment {found['filename']} from {row['path']}"),
                attachment=found["filename"])
        _keep_attachment_version(db, wiki_id, row["id"], None)
        return Change(_page_by_id(db, row["id"]), "attachment", attachment=_attachment(found))


def _keep_attachment_version(db: sqlite3.Connection, wiki_id: int, page_id: int, data: bytes | None) -> None:
    """Keep the bytes the page's newest revision wrote (None: it deleted the file) while the
    wiki's git access is on, for its git history; attachments keep only current bytes."""
    db.execute("INSERT INTO attachment_versions (revision_seq, data) SELECT revisions.seq, ? FROM pages "
               "JOIN revisions ON revisions.id = pages.revision_id JOIN git_access ON git_access.wiki_id = ? "
               "WHERE pages.id = ?", (data, wiki_id, page_id))


# --- wikis and members ------------------------------------------------------------------------------

def create_wiki(db: sqlite3.Connection, slug: str, owner_did: str, title: str = "", description: str = "", *,
                quotas: Quotas, via: str = "web") -> sqlite3.Row:
    """A new wiki owned by owner_did, with its default pages (Home, Getting Started, Agent Guide)
    written by the owner. Counts against the owner's wikis-per-user quota unless they are an
    instance admin."""
    validate_slug(slug)
    title, description = _wiki_title(title or slug), _wiki_description(description)
    author = Author(owner_did, via)
    with transaction(db):
        owner = get_user(db, owner_did)
        if db.execute("SELECT 1 FROM wikis WHERE slug = ?", (slug,)).fetchone():
            raise Conflict(f"The wiki slug '{slug}' is taken; choose another.", "wiki_taken", slug=slug)
        owned = db.execute("SELECT count(*) FROM wikis WHERE owner_did = ?", (owner_did,)).fetchone()[0]
        if owned >= quotas.wikis_per_user and not owner["is_admin"]:
            raise QuotaExceeded(f"You already have {owned} wikis, the most one person may create here. Delete one "
                                "you no longer need, or ask the operator to raise --max-wikis-per-user.",
                                "quota_wikis", owned=owned)
        t = now()
        wiki_id = db.execute("INSERT INTO wikis (slug, title, description, owner_did, created_at) "
                             "VALUES (?, ?, ?, ?, ?) RETURNING id", (slug, title, description, owner_did, t)).fetchone()[0]
        db.execute("INSERT INTO members (wiki_id, user_did, role, added_at) VALUES (?, ?, 'owner', ?)",
                   (wiki_id, owner_did, t))
        for path, content in default_pages(slug, title, description):
            _record(db, wiki_id, None, "create", path, page_text(content), author, f"Create {path}")
    return get_wiki(db, slug)


def _wiki_title(title: str) -> str:
    title = " ".join((title or "").split())
    if not title or len(title) > 200 or BIDI_CONTROLS.intersection(title):
        raise BadInput("A wiki title is 1 to 200 characters, without bidirectional override characters.")
    return title


def _wiki_description(description: str) -> str:
    description = (description or "").replace("\r\n", "\n").strip()
    if len(description) > 2000 or CONTENT_CONTROL_RE.search(description) or BIDI_CONTROLS.intersection(description):
        raise BadInput("A wiki description is at most 2000 characters, without control or bidirectional "
                       "override characters.")
    return description


def get_wiki(db: sqlite3.Connection, slug: str) -> sqlite3.Row:
    row = db.execute("SELECT * FROM wikis WHERE slug = ?", (slug,)).fetchone()
    if row is None:
        raise NotFound(f"There is no wiki '{slug}'.")
    return row


def list_wikis(db: sqlite3.Connection) -> list[sqlite3.Row]:
    return db.execute("SELECT wikis.*, users.username AS owner FROM wikis "
                      "JOIN users ON users.did = wikis.owner_did ORDER BY slug").fetchall()


def user_wikis(db: sqlite3.Connection, did: str) -> list[sqlite3.Row]:
    """Wikis the user is a member of, with their role, owned ones first."""
    return db.execute("SELECT wikis.*, members.role FROM members JOIN wikis ON wikis.id = members.wiki_id "
                      "WHERE members.user_did = ? ORDER BY members.role != 'owner', wikis.slug",
                      (did,)).fetchall()


def update_wiki(db: sqlite3.Connection, wiki_id: int, *, title: str | None = None, description: str | None = None,
                visibility: str | None = None) -> sqlite3.Row:
    """Change a wiki's title, description and/or visibility ('private' or 'public': anyone may read)."""
    changes = {}
    if title is not None:
        changes["title"] = _wiki_title(title)
    if description is not None:
        changes["description"] = _wiki_description(description)
    if visibility is not None:
        if visibility not in ("private", "public"):
            raise BadInput("Visibility is 'private' (members only) or 'public' (anyone may read).")
        changes["visibility"] = visibility
    with transaction(db):
        row = _wiki_by_id(db, wiki_id)
        if changes:
            db.execute(f"UPDATE wikis SET {', '.join(name + ' = ?' for name in changes)} WHERE id = ?",
                       (*changes.values(), wiki_id))
    return get_wiki(db, row["slug"])


def delete_wiki(db: sqlite3.Connection, wiki_id: int) -> None:
    """Delete a wiki with all its pages, history, attachments and members; there is no undo."""
    with transaction(db):
        _wiki_by_id(db, wiki_id)
        db.execute("DELETE FROM wikis WHERE id = ?", (wiki_id,))


def _wiki_by_id(db: sqlite3.Connection, wiki_id: int) -> sqlite3.Row:
    row = db.execute("SELECT * FROM wikis WHERE id = ?", (wiki_id,)).fetchone()
    if row is None:
        raise NotFound("That wiki no longer exists.")
    return row


def git_access_enabled(db: sqlite3.Connection, wiki_id: int) -> bool:
    return db.execute("SELECT 1 FROM git_access WHERE wiki_id = ?", (wiki_id,)).fetchone() is not None


def set_git_access(db: sqlite3.Connection, wiki_id: int, enabled: bool) -> None:
    """Turn git access to a wiki on or off (CONTRACT §7). Turning it on keeps the current bytes of
    the wiki's attachments for the revisions that wrote them, as every later attachment revision's
    are kept, so the git history can show them. Turning it off keeps what git has seen, so commit
    ids stay the same when it is turned on again."""
    with transaction(db):
        _wiki_by_id(db, wiki_id)
        if not enabled:
            db.execute("DELETE FROM git_access WHERE wiki_id = ?", (wiki_id,))
            return
        if git_access_enabled(db, wiki_id):
            return
        db.execute("INSERT INTO git_access (wiki_id, enabled_at) VALUES (?, ?)", (wiki_id, now()))
        files = db.execute("SELECT a.page_id, a.filename_key, a.data FROM attachments a "
                           "JOIN pages p ON p.id = a.page_id WHERE p.wiki_id = ?", (wiki_id,)).fetchall()
        # Each file's newest attachment revision, read in one pass; casefold() in Python because
        # SQLite's lower() lowers ASCII only (file names are keyed by casefold).
        last_write: dict[tuple[int, str], int] = {}
        for write in db.execute("SELECT page_id, seq, attachment FROM revisions WHERE wiki_id = ? AND kind = "
                                "'attachment' ORDER BY seq DESC", (wiki_id,)) if files else ():
            last_write.setdefault((write["page_id"], (write["attachment"] or "").casefold()), write["seq"])
        for file in files:
            last = last_write.get((file["page_id"], file["filename_key"]))
            if last is not None:
                db.execute("INSERT INTO attachment_versions (revision_seq, data) VALUES (?, ?) "
                           "ON CONFLICT (revision_seq) DO NOTHING", (last, file["data"]))


def list_members(db: sqlite3.Connection, wiki_id: int) -> list[sqlite3.Row]:
    """Rows of did, role, added_at, username, handle, display_name (the last three None for a
    person who has not signed in yet); owners first."""
    return db.execute("SELECT members.user_did AS did, members.role, members.added_at, users.username, "
                      "users.handle, users.display_name FROM members LEFT JOIN users ON users.did = members.user_did "
                      "WHERE members.wiki_id = ? ORDER BY CASE members.role WHEN 'owner' THEN 0 WHEN 'editor' THEN 1 "
                      "ELSE 2 END, coalesce(users.handle, members.user_did)", (wiki_id,)).fetchall()


def member_role(db: sqlite3.Connection, wiki_id: int, did: str) -> str | None:
    row = db.execute("SELECT role FROM members WHERE wiki_id = ? AND user_did = ?", (wiki_id, did)).fetchone()
    return row[0] if row else None


def _validate_role(role: str) -> str:
    if role not in ROLES:
        raise BadInput(f"'{_shown(role)}' is not a role; choose owner, editor or viewer.")
    return role


def add_member(db: sqlite3.Connection, wiki_id: int, did: str, role: str) -> None:
    """Give a person (by DID; they need not have signed in yet) a role in the wiki."""
    validate_did(did)
    _validate_role(role)
    with transaction(db):
        _wiki_by_id(db, wiki_id)
        if member_role(db, wiki_id, did):
            raise Conflict(f"{did} is already a member; change their role instead.", "already_member", did=did)
        db.execute("INSERT INTO members (wiki_id, user_did, role, added_at) VALUES (?, ?, ?, ?)",
                   (wiki_id, did, role, now()))


def set_member_role(db: sqlite3.Connection, wiki_id: int, did: str, role: str) -> None:
    _validate_role(role)
    with transaction(db):
        current = _existing_role(db, wiki_id, did)
        if current == "owner" and role != "owner":
            _keep_an_owner(db, wiki_id)
        db.execute("UPDATE members SET role = ? WHERE wiki_id = ? AND user_did = ?", (role, wiki_id, did))


def remove_member(db: sqlite3.Connection, wiki_id: int, did: str) -> None:
    with transaction(db):
        if _existing_role(db, wiki_id, did) == "owner":
            _keep_an_owner(db, wiki_id)
        db.execute("DELETE FROM members WHERE wiki_id = ? AND user_did = ?", (wiki_id, did))


def _existing_role(db: sqlite3.Connection, wiki_id: int, did: str) -> str:
    role = member_role(db, wiki_id, did)
    if role is None:
        raise NotFound(f"{did} is not a member of this wiki.")
    return role


def _keep_an_owner(db: sqlite3.Connection, wiki_id: int) -> None:
    """Called before an owner stops being one: a wiki must always have an owner."""
    owners = db.execute("SELECT count(*) FROM members WHERE wiki_id = ? AND role = 'owner'", (wiki_id,)).fetchone()[0]
    if owners <= 1:
        raise Conflict("This is the wiki's only owner. Make someone else an owner first.")


# --- default pages ------------------------------------------------------------------------------------

def default_pages(slug: str, title: str, description: str) -> list[tuple[str, str]]:
    """(path, content) of the pages a new wiki starts with: Home, Getting Started for people,
    Agent Guide for agents. No page holds the server's address (it may change with --public-url):
    Getting Started links to the wiki's "Connect an agent" page, which shows the current one."""
    about = description or "A wiki shared by people and their AI agents. Pages are Markdown, and every change is " \
                           "kept in the page's history."
    home = f"""# {title}

{about}

- New here? Start with [[Getting Started]].
- An AI agent working in this wiki? Read the [[Agent Guide]] first.

Make this page your own: say what the wiki is for and link to its main pages. It is the first
page people and agents read.
"""
    getting_started = f"""# Getting Started

This wiki is shared by you and your AI agents. You read and edit pages in the browser; your agents
read and edit the same pages over MCP. Every change, whoever made it, is kept in the page's history
with its author, so you can see what changed and bring back any earlier version.

## In the browser

- Open a page and choose **Edit**. Pages are written in Markdown.
- Link to another page with `[[Page Name]]`, or `[[Page Name|the text to show]]`. A link to a page
  that doesn't exist yet is shown as missing: follow it to create the page.
- Group pages into folders with `/`, for example `Projects/Garden`.
- **History** lists every change to a page. Compare any two versions, or restore an old one.
  Deleted pages can be restored from their history too.
- The wiki is private until an owner makes it public. Owners add people as editors or viewers in
  the wiki's settings.

## Connect an agent

Open **[Connect an agent](/w/{slug}/-/connect)**: it shows this wiki's MCP address, the steps for
Claude.ai, and for Claude Code a ready-made `claude mcp add` command with a new personal access
token. It always shows the address the server has now, so it stays right if the wiki moves.

- **Claude.ai** signs you in here and asks what it may do; there is no token to copy.
- **Claude Code** and other programs send a personal access token. Treat it like a password:
  whoever holds it can use this wiki as you. Revoke it on your Connected apps page if it leaks.
- **Any other MCP client** that speaks Streamable HTTP can connect either way.

## What agents can do here

Read, search and list pages; create pages and edit them; rename and delete pages; follow links
and backlinks; read history and recent changes; add and remove attachments. The [[Agent Guide]]
tells them how to do that carefully.
"""
    agent_guide = """# Agent Guide

You are working in a wiki that people and other agents rely on. These habits keep it trustworthy.

## At the start of a session

- Read [[Home]]: it says what this wiki is for and how it is organised.
- Look at recent changes (`get_recent_changes`) to see what others did since you were last here.
- Before creating a page, search (`search_notes`) or list (`list_notes`): it may already exist.
- `search_notes` finds pages with the exact terms, names or "phrases" you give. If this wiki offers
  `semantic_search`, use it for a question or an idea a page may express differently; it returns
  passages, so read the page before relying on one.

## Reading and writing

- Read a page (`read_note`) before changing it, and keep the revision it reports.
- For a small change, use `edit_note` with that revision and an `old_string` that occurs exactly
  once on the page; include enough surrounding text to make it unique.
- To create a page, use `write_note` without a revision. To replace a whole page, pass its current
  revision.
- A conflict means the page changed after you read it. Read it again, redo your change on the new
  text and retry with the new revision. Never overwrite someone else's change blindly.
- Write a `commit_message` that says what you changed and why: people read the history.
- For one part of a long page, read with `section="Heading"` or `section="Heading > Subheading"`.

## Links and structure

- Link pages with `[[Page Path]]` or `[[Page Path|text]]`. Paths ignore case and use `/` for
  folders: `[[Projects/Garden]]`.
- `rename_note` moves a page and updates the links to it everywhere; use it instead of copying
  and deleting.
- `get_links` shows a page's links and backlinks; `find_orphaned_notes` lists pages nothing links to.
  Link new pages from Home or from a relevant index page.
- Pages may begin with front matter between `---` lines, with `title`, `category` and `tags`;
  `list_notes` filters by category and tag.

## Take care

- Don't reorganise, rename or delete pages unless a person asked you to, and confirm with them
  before `delete_note` or `delete_attachment`.
- Keep each fact in one place and link to it rather than copying it.
"""
    return [(HOME_PAGE, home), ("Getting Started", getting_started), ("Agent Guide", agent_guide)]


# --- export and import ------------------------------------------------------------------------------

EXPORT_MANIFEST = "history.json"
EXPORT_FORMAT = "robotwtf-export-2"   # -1 (before issue 11) had no revision contents
MAX_IMPORT_ENTRIES = 20_000
REVISION_KINDS = ("create", "update", "rename", "delete", "restore", "attachment")


def export_wiki(db: sqlite3.Connection, wiki_id: int) -> bytes:
    """A zip of the wiki: `pages/<path>.md` for each live page, `attachments/<path>/<file>` for
    their attachments (`deleted/<n>/<file>` for those kept with deleted pages), `revisions/<id>.md`
    for every content in the pages' histories, and `history.json` listing every page (deleted ones
    too) with its revisions and attachments. Read in one transaction: a consistent snapshot that
    import_pages brings back whole into another wiki."""
    buffer = io.BytesIO()
    with read_snapshot(db), zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        wiki = _wiki_by_id(db, wiki_id)
        manifest = {"format": EXPORT_FORMAT, "exported_at": now(),
                    "wiki": {k: wiki[k] for k in ("slug", "title", "description", "visibility", "created_at")},
                    "pages": []}
        pages = db.execute("SELECT * FROM pages WHERE wiki_id = ? ORDER BY path_key, id", (wiki_id,)).fetchall()
        for number, page in enumerate(pages, 1):
            if page["deleted_at"] is None:
                archive.writestr(f"pages/{page['path']}.md", page["content"])
            folder = f"attachments/{page['path']}" if page["deleted_at"] is None else f"deleted/{number}"
            manifest["pages"].append(_export_page(db, archive, page, folder))
        archive.writestr(EXPORT_MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=1))
    return buffer.getvalue()


def _export_page(db: sqlite3.Connection, archive: zipfile.ZipFile, page: sqlite3.Row, folder: str) -> dict:
    """A page's manifest entry; writes its revisions' contents (once per change of content) and
    its attachments into the archive."""
    revisions, previous = [], None
    for row in db.execute(REVISION_SELECT + "WHERE revisions.page_id = ? ORDER BY revisions.seq", (page["id"],)):
        if previous is None or row["content"] != previous[0]:
            previous = (row["content"], f"revisions/{row['id']}.md")
            archive.writestr(previous[1], row["content"])
        revisions.append({"id": row["id"], "kind": row["kind"], "path": row["path"], "old_path": row["old_path"],
                          "attachment": row["attachment"], "author_did": row["author_did"],
                          "author_name": _author_name(row), "via": row["via"], "message": row["message"],
                          "created_at": row["created_at"], "content": previous[1]})
    attachments = []
    for row in db.execute("SELECT filename, data, author_did, updated_at FROM attachments WHERE page_id = ? "
                          "ORDER BY filename_key", (page["id"],)):
        archive.writestr(f"{folder}/{row['filename']}", row["data"])
        attachments.append({"filename": row["filename"], "file": f"{folder}/{row['filename']}",
                            "author_did": row["author_did"], "updated_at": row["updated_at"]})
    return {"path": page["path"], "revision": page["revision_id"], "deleted_at": page["deleted_at"],
            "revisions": revisions, "attachments": attachments}


def _author_name(row: sqlite3.Row) -> str:
    """How a revision's author is named here: `username (@handle)`, or as recorded on import."""
    if row["author_username"]:
        return row["author_username"] + (f" (@{row['author_handle']})" if row["author_handle"] else "")
    return row["imported_author"] or ""


def import_pages(db: sqlite3.Connection, wiki_id: int, data: bytes, *, author: Author, quotas: Quotas) -> ImportReport:
    """Bring pages in from a zip. A robotwtf export (history.json, format 2) comes back whole:
    every page with its history (authors, messages and times as recorded, each revision marked as
    imported), deleted pages and attachments. Any other zip of Markdown files: `A/B.md` becomes
    page `A/B`, written by `author`. Existing pages are never overwritten. What can't be imported
    (not Markdown, a bad path or content, an existing page, over a quota) is skipped and reported
    with the reason; everything else is imported in one transaction."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError):
        raise BadInput("That file is not a zip archive; export a folder of Markdown files as .zip.") from None
    if len(entries) > MAX_IMPORT_ENTRIES:
        raise BadInput(f"The archive has {len(entries)} entries; import at most {MAX_IMPORT_ENTRIES} at a time.")
    unpacked = sum(e.file_size for e in entries)
    if unpacked > 4 * quotas.bytes_per_wiki:
        raise BadInput(f"The archive unpacks to {unpacked} bytes, more than this wiki could hold with its history "
                       f"({4 * quotas.bytes_per_wiki}); import it in parts.")
    with archive, transaction(db):
        _wiki_by_id(db, wiki_id)
        manifest = _export_manifest(archive)
        if manifest is not None and manifest.get("format") == EXPORT_FORMAT:
            return _import_export(db, wiki_id, archive, manifest, quotas)
        return _import_markdown_files(db, wiki_id, archive, entries, manifest is not None, author, quotas)


def _export_manifest(archive: zipfile.ZipFile) -> dict | None:
    """The archive's robotwtf manifest, or None for a plain zip of Markdown files."""
    if EXPORT_MANIFEST not in archive.namelist():
        return None
    try:
        manifest = json.loads(_read_entry(archive, EXPORT_MANIFEST, 64 * MAX_PAGE_BYTES))
    except ValueError:
        raise BadInput(f"The archive's {EXPORT_MANIFEST} is not valid JSON; export the wiki again.") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("pages", []), list):
        raise BadInput(f"The archive's {EXPORT_MANIFEST} is not a robotwtf export's; export the wiki again.")
    return manifest


def _read_entry(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """An entry's bytes, at most `limit` of them (a zip's declared sizes are not trusted)."""
    try:
        with archive.open(name) as f:
            raw = f.read(limit + 1)
    except KeyError:
        raise BadInput(f"{name} is missing from the archive") from None
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as e:
        raise BadInput(f"{name} cannot be read from the archive ({e})") from None
    if len(raw) > limit:
        raise TooLarge(f"{name} is larger than {limit} bytes")
    return raw


def _import_markdown_files(db: sqlite3.Connection, wiki_id: int, archive: zipfile.ZipFile,
                           entries: list[zipfile.ZipInfo], ours: bool, author: Author, quotas: Quotas) -> ImportReport:
    """Pages from the Markdown files of a zip (a robotwtf export of format 1: its `pages/` folder,
    and its `attachments/` for the pages created)."""
    created, skipped, files = [], [], 0
    for entry in entries:
        if entry.is_dir() or (ours and entry.filename == EXPORT_MANIFEST) \
                or (ours and entry.filename.startswith("attachments/")):
            continue
        try:
            path, content = _import_entry(archive, entry, ours)
            if _live_row(db, wiki_id, path) is not None:
                raise Conflict("a page with this path already exists")
            _check_new_page_quotas(db, wiki_id, quotas, len(content.encode()))
        except RobotError as e:
            skipped.append((entry.filename, e.message))
            continue
        _record(db, wiki_id, None, "create", path, page_text(content), author, f"Import {path}")
        created.append(path)
    for entry in entries:
        if ours and entry.filename.startswith("attachments/") and not entry.is_dir():
            try:
                _import_attachment_file(db, wiki_id, archive, entry, created, author, quotas)
                files += 1
            except RobotError as e:
                skipped.append((entry.filename, e.message))
    return ImportReport(tuple(created), tuple(skipped), attachments=files)


def _import_attachment_file(db: sqlite3.Connection, wiki_id: int, archive: zipfile.ZipFile, entry: zipfile.ZipInfo,
                            created: list[str], author: Author, quotas: Quotas) -> None:
    """`attachments/<page path>/<file>` of a format-1 export, attached to its page if this import
    created the page."""
    path, _, filename = entry.filename.removeprefix("attachments/").rpartition("/")
    if path not in created:
        raise Conflict("its page was not created by this import")
    data = _read_entry(archive, entry.filename, MAX_ATTACHMENT_BYTES)
    row = _live_row(db, wiki_id, path)
    _check_bytes_quota(db, wiki_id, quotas, len(data))
    _insert_attachment(db, row["id"], sanitize_filename(filename), data, author.did, now())


def _insert_attachment(db: sqlite3.Connection, page_id: int, name: str, data: bytes, author_did: str,
                       updated_at: int) -> None:
    db.execute("INSERT INTO attachments (page_id, filename_key, filename, content_type, size, data, author_did, "
               "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (page_id, name.casefold(), name, sniff_content_type(data, name), len(data), data, author_did,
                updated_at))


@dataclasses.dataclass(frozen=True)
class _ImportedRevision:
    kind: str
    path: str
    old_path: str | None
    attachment: str | None
    author: Author
    author_name: str
    message: str
    created_at: int
    content: str
    original_id: str


def _import_export(db: sqlite3.Connection, wiki_id: int, archive: zipfile.ZipFile, manifest: dict,
                   quotas: Quotas) -> ImportReport:
    """Every page of a format-2 export with its history and attachments; a page that can't be
    imported whole is skipped whole."""
    created, deleted, skipped, counts = [], [], [], [0, 0]
    contents: dict[str, str] = {}   # revisions/<id>.md, read and checked once however often named
    for entry in manifest["pages"]:
        label = entry.get("path") if isinstance(entry, dict) and isinstance(entry.get("path"), str) else "?"
        try:
            revisions, files, deleted_at = _checked_export_page(archive, entry, contents)
            path = revisions[-1].path
            if deleted_at is None:
                if _live_row(db, wiki_id, path) is not None:
                    raise Conflict("a page with this path already exists")
                _check_new_page_quotas(db, wiki_id, quotas,
                                       len(revisions[-1].content.encode()) + sum(len(f[1]) for f in files))
        except RobotError as e:
            skipped.append((f"pages/{label}.md", e.message))
            continue
        _insert_history(db, wiki_id, revisions, files, deleted_at)
        (created if deleted_at is None else deleted).append(path)
        counts[0] += len(revisions)
        counts[1] += len(files)
    return ImportReport(tuple(created), tuple(skipped), revisions=counts[0], attachments=counts[1],
                        deleted=tuple(deleted))


def _checked_export_page(archive: zipfile.ZipFile, entry, contents: dict[str, str]):
    """(revisions, attachments as (name, bytes, author DID, time), deleted_at) of one manifest
    page, every value checked as if it had been written here; BadInput says what is wrong."""
    if not isinstance(entry, dict) or not isinstance(entry.get("revisions"), list) or not entry["revisions"]:
        raise BadInput("its entry in the manifest has no revisions")
    revisions = [_checked_revision(archive, r, contents) for r in entry["revisions"]]
    deleted_at = entry.get("deleted_at")
    if deleted_at is not None and (not isinstance(deleted_at, int) or parse_time(deleted_at) is None):
        raise BadInput("its deletion time is not a time")
    files = []
    for item in entry.get("attachments") or []:
        if not isinstance(item, dict) or not isinstance(item.get("file"), str) \
                or not isinstance(item.get("filename"), str) or not isinstance(item.get("updated_at"), int):
            raise BadInput("an attachment's entry in the manifest is malformed")
        files.append((sanitize_filename(item["filename"]), _read_entry(archive, item["file"], MAX_ATTACHMENT_BYTES),
                      validate_did(str(item.get("author_did"))), item["updated_at"]))
    return revisions, files, deleted_at


def _checked_revision(archive: zipfile.ZipFile, item, contents: dict[str, str]) -> _ImportedRevision:
    if not isinstance(item, dict) or item.get("kind") not in REVISION_KINDS:
        raise BadInput("a revision in the manifest is malformed")
    name = item.get("content")
    if not isinstance(name, str) or not name.startswith("revisions/"):
        raise BadInput(f"revision {_shown(item.get('id'))} names no content file")
    if name not in contents:
        contents[name] = validate_content(decode_utf8(_read_entry(archive, name, MAX_PAGE_BYTES), name))
    created_at = item.get("created_at")
    if not isinstance(created_at, int) or parse_time(created_at) is None:
        raise BadInput(f"revision {_shown(item.get('id'))} has no valid time")
    old_path, attachment = item.get("old_path"), item.get("attachment")
    return _ImportedRevision(
        item["kind"], validate_page_path(item.get("path")),
        None if old_path is None else validate_page_path(old_path),
        None if attachment is None else sanitize_filename(str(attachment)),
        Author(validate_did(str(item.get("author_did"))), str(item.get("via"))),
        _label(str(item.get("author_name") or ""), ""), _message(str(item.get("message") or ""), item["kind"]),
        created_at, contents[name], _label(str(item.get("id") or ""), "?")[:64])


def _insert_history(db: sqlite3.Connection, wiki_id: int, revisions: list[_ImportedRevision],
                    files: list[tuple[str, bytes, str, int]], deleted_at: int | None) -> None:
    """A page as its history left it, with that history: revisions get new ids (ids are unique
    across the instance) and an imported_revisions row each."""
    last, imported_at = revisions[-1], now()
    ids = [_new_revision_id(db) for _ in revisions]
    text = page_text(last.content)
    fields = dict(text.fields, wiki_id=wiki_id, path=last.path, path_key=path_key(last.path), revision_id=ids[-1],
                  content=last.content, created_at=revisions[0].created_at, updated_at=last.created_at,
                  deleted_at=deleted_at)
    page_id = db.execute(f"INSERT INTO pages ({', '.join(fields)}) VALUES ({', '.join('?' * len(fields))}) "
                         "RETURNING id", tuple(fields.values())).fetchone()[0]
    for revision_id, r in zip(ids, revisions):
        _insert_revision(db, revision_id, wiki_id, page_id, r.kind, r.path, r.old_path, r.attachment, r.content,
                         r.author, r.message, r.created_at)
        db.execute("INSERT INTO imported_revisions (revision_id, original_id, author_name, imported_at) "
                   "VALUES (?, ?, ?, ?)", (revision_id, r.original_id, r.author_name, imported_at))
    for name, data, author_did, updated_at in files:
        _insert_attachment(db, page_id, name, data, author_did, updated_at)
    if deleted_at is None:
        _store_links(db, wiki_id, page_id, text.links)
    _mark_semantic_index(db, wiki_id, page_id, deleted=deleted_at is not None)


def _import_entry(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, ours: bool) -> tuple[str, str]:
    """(page path, content) for one zip entry, or a RobotError saying why it can't be a page."""
    name = entry.filename
    stem, ext = os.path.splitext(name.removeprefix("pages/") if ours else name)
    if ext.lower() not in (".md", ".markdown"):
        raise BadInput("not a Markdown file (.md)")
    if entry.file_size > MAX_PAGE_BYTES:
        raise TooLarge(f"larger than {MAX_PAGE_BYTES} bytes")
    path = validate_page_path(stem)
    raw = _read_entry(archive, name, MAX_PAGE_BYTES)
    return path, validate_content(decode_utf8(raw, "The file"))


# --- backup, restore and moving between databases ----------------------------------------------------
# A backup is one .tar.gz of an SQLite database file and the two keys, whichever engine the
# instance runs on: on PostgreSQL the file is a logical export (every row, copied in one snapshot),
# so a backup restores into either engine, and copy_database also moves a running instance's data
# from SQLite to PostgreSQL (migrate_to).

# Not copied: the schema's own history (a new database records its own), and what the target's
# triggers make from the copied rows (the quota counters, the full-text index).
NOT_COPIED = frozenset({"schema_version", "wiki_totals", "pages_fts"})


def backup(cfg: Config, dest: Path) -> None:
    """A consistent copy of the database (SQLite's online backup API, or every row of PostgreSQL's
    in one snapshot: safe while servers write) and the keys, in one 0600 .tar.gz — it holds
    private keys."""
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        copy = Path(tmp) / DB_FILE
        source = open_database(cfg.database_location, create=False)
        try:
            if source.engine == "sqlite":
                target = sqlite3.connect(copy)
                try:
                    source.backup(target)
                finally:
                    target.close()
            else:
                target = open_database(copy, create=True)
                try:
                    copy_database(source, target)
                finally:
                    target.close()
        finally:
            source.close()
        buffer = io.BytesIO()
        import tarfile
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name in (DB_FILE, *KEY_FILES):
                path = copy if name == DB_FILE else cfg.data / name
                info = tar.gettarinfo(str(path), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o600
                with open(path, "rb") as f:
                    tar.addfile(info, f)
        write_private_file(dest, buffer.getvalue())


def restore(cfg: Config, source: Path) -> None:
    """Unpack a backup into an empty data folder, checking every member before writing any. With
    a PostgreSQL database, its rows go into that database (new, or with an empty robotwtf schema)
    and only the keys into the folder."""
    data = cfg.data
    if data.exists() and any(data.iterdir()):
        raise ConfigError(f"The data folder {data} is not empty; restore only into a new or empty folder.")
    import tarfile
    try:
        with tarfile.open(source, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers()}
            if set(members) != {DB_FILE, *KEY_FILES} or not all(m.isreg() for m in members.values()):
                raise ConfigError(f"{source} is not a robotwtf backup (expected {DB_FILE} and the two keys).")
            contents = {name: tar.extractfile(m).read() for name, m in members.items()}
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ConfigError(f"Cannot read the backup {source}: {e}.") from None
    if cfg.is_postgres:
        _restore_into_postgres(cfg, source, contents)
        return
    _write_restored_files(data, contents)
    db = open_database(cfg.db_path, create=False)
    try:
        _check_restored_database(db, source)
    finally:
        db.close()
    Keys.load(data).check()


def _write_restored_files(data: Path, contents: dict[str, bytes]) -> None:
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    data.chmod(0o700)
    for name, content in contents.items():
        write_private_file(data / name, content)


def _check_restored_database(db: sqlite3.Connection, source: Path) -> None:
    if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
        raise ConfigError(f"The database in {source} fails SQLite's integrity check.")


def _restore_into_postgres(cfg: Config, source: Path, contents: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write_private_file(Path(tmp) / DB_FILE, contents[DB_FILE])
        backup_db = open_database(Path(tmp) / DB_FILE, create=False)
        try:
            _check_restored_database(backup_db, source)
            target = _empty_target(cfg.database)
            try:
                _write_restored_files(cfg.data, {name: contents[name] for name in KEY_FILES})
                Keys.load(cfg.data).check()
                copy_database(backup_db, target)
            finally:
                target.close()
        finally:
            backup_db.close()


def migrate_to(cfg: Config, url: str) -> dict[str, int]:
    """Copy this instance's database (the SQLite file, or another PostgreSQL database) into the
    PostgreSQL database at `url`, which must be new or hold an empty robotwtf schema; {table:
    rows copied}. The keys stay in the data folder: every machine that serves the instance needs
    a copy of them. Stop the servers first: what they write after the copy stays behind."""
    url = _parse_database_url(url)
    if url == cfg.database:
        raise ConfigError("That is the database this instance already uses; name another one.")
    Keys.load(cfg.data)
    source = open_database(cfg.database_location, create=False)
    try:
        target = _empty_target(url)
        try:
            return copy_database(source, target)
        finally:
            target.close()
    finally:
        source.close()


def _empty_target(url: str):
    """The PostgreSQL database at `url` with robotwtf's schema and no rows (made if it is new)."""
    target = open_database(url, create=True)
    try:
        filled = [table for table in ("users", "wikis")  # the schema itself seeds rows elsewhere (semantic_state)
                  if target.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchone() is not None]
        if filled:
            raise ConfigError(f"The database {redact_url(url)} already holds a robotwtf instance (its "
                              f"{', '.join(filled)} tables have rows); name a new, empty database.")
    except BaseException:
        target.close()
        raise
    return target


def copy_database(source, target) -> dict[str, int]:
    """Copy every row of robotwtf's tables from `source` into `target` (both open, at the same
    schema version, target empty): read in one snapshot, written in one transaction, in an order
    that satisfies the foreign keys; {table: rows}. Raises ConfigError if a count differs."""
    counts = {}
    with read_snapshot(source), transaction(target):
        for table in _copied_tables(target):
            target.execute(f'DELETE FROM "{table}"')  # what the new schema seeded, replaced by the source's rows
            columns = None
            for rows in _row_batches(source, f'SELECT * FROM "{table}"'):
                if columns is None:
                    columns = ", ".join(f'"{name}"' for name in rows[0].keys())
                    insert = f'INSERT INTO "{table}" ({columns}) VALUES ({", ".join("?" * len(rows[0]))})'
                target.executemany(insert, [tuple(row) for row in rows])
                counts[table] = counts.get(table, 0) + len(rows)
            counts.setdefault(table, 0)
        if target.engine == "postgresql":
            _advance_identities(target)
        for table, count in counts.items():
            copied = target.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            if copied != count:
                raise ConfigError(f"Copying {table} left {copied} rows of {count}; nothing was copied.")
    if target.engine == "postgresql":
        target.execute("ANALYZE")  # the planner's statistics of the new rows, before autovacuum gets to them
    return counts


def _row_batches(db, sql: str, size: int = 500):
    """The rows of `sql` a batch at a time (attachments are up to 10 MB each)."""
    if db.engine == "postgresql":
        yield from db.batches(sql, size)
        return
    cursor = db.execute(sql)
    while rows := cursor.fetchmany(size):
        yield rows


def _copied_tables(db) -> list[str]:
    """robotwtf's tables but NOT_COPIED, each after the tables its foreign keys name."""
    import graphlib
    if db.engine == "postgresql":
        tables = _postgres_tables(db)
        edges = db.execute("SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c "
                           "WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace").fetchall()
    else:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                               "AND name NOT LIKE 'sqlite_%'")}
        edges = [(table, row["table"]) for table in tables
                 for row in db.execute(f'PRAGMA foreign_key_list("{table}")')]
    tables = {t for t in tables if t not in NOT_COPIED and not any(t.startswith(n + "_") for n in NOT_COPIED)}
    order = graphlib.TopologicalSorter({table: set() for table in tables})
    for table, referenced in edges:
        if table in tables and referenced in tables and referenced != table:
            order.add(table, referenced)
    return list(order.static_order())


def _advance_identities(db) -> None:
    """After rows came with their ids, each identity column continues after the largest."""
    for table, column in db.execute("SELECT table_name, column_name FROM information_schema.columns "
                                    "WHERE table_schema = current_schema() AND is_identity = 'YES'").fetchall():
        db.execute(f'SELECT setval(pg_get_serial_sequence(?, ?), (SELECT coalesce(max("{column}"), 0) + 1 '
                   f'FROM "{table}"), false)', (f'"{table}"', column))
