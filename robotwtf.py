"""robotwtf: a self-hosted wiki for people and their AI agents, in one file to run.

This module owns configuration, the operator CLI, storage (SQLite), sessions, the browser
pages, and the assembly of the WSGI app that waitress serves. The other modules each own one
concern and are wired in by `build_app`:

- robotwtf_atproto: identity resolution and the ATProto OAuth client ("Login with atproto")
- robotwtf_as: the OAuth 2.1 authorization server for MCP clients
- robotwtf_mcp: the MCP Streamable HTTP endpoint and its tools
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import hmac
import importlib.resources
import io
import ipaddress
import json
import logging
import os
import re
import secrets
import signal
import sqlite3
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import bottle

log = logging.getLogger("robotwtf")

DB_FILE = "robotwtf.db"
ES256_KEY_FILE = "es256-key.pem"
RS256_KEY_FILE = "rs256-key.pem"
KEY_FILES = (ES256_KEY_FILE, RS256_KEY_FILE)


# --- errors -------------------------------------------------------------------------------
# Core code raises these; the edges (browser pages, JSON endpoints, CLI, OAuth, MCP) turn
# them into their own error shapes, once.

class RobotError(Exception):
    status = 400
    code = "bad_input"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


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


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random token; 32 bytes is well above RFC 6749 §10.10's 2^-128 guessing bound."""
    return secrets.token_urlsafe(nbytes)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


SLUG_RE = re.compile(r"[a-z0-9][a-z0-9-]{1,28}[a-z0-9]")
RESERVED_SLUGS = frozenset("""
    about account accounts admin api app apps assets auth billing blog callback consent dashboard
    dev docs favicon ftp git healthz help imap invite jwks login logout mail mcp new ns ns1 ns2 null
    oauth pop register revoke robots root settings signup smtp ssh static status support system
    token undefined user users vpn w well-known wiki wikis www
""".split())


def validate_slug(value: str, what: str = "slug") -> str:
    """Wiki slugs and usernames share CONTRACT §3's rules; the message names the broken rule."""
    if not value:
        raise BadInput(f"A {what} is required.")
    if len(value) < 3 or len(value) > 30:
        raise BadInput(f"A {what} must be 3 to 30 characters long.")
    if value != value.lower():
        raise BadInput(f"A {what} must be lower case.")
    if value.startswith("-") or value.endswith("-"):
        raise BadInput(f"A {what} must not start or end with a hyphen.")
    if not SLUG_RE.fullmatch(value):
        raise BadInput(f"A {what} may contain only letters a-z, digits and hyphens.")
    if value in RESERVED_SLUGS:
        raise BadInput(f"'{value}' is reserved; choose another {what}.")
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


def _parse_port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise ValueError("must be between 1 and 65535")
    return value


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
    Setting("threads", "--threads", "ROBOTWTF_THREADS", 8, _parse_positive, "request worker threads"),
    Setting("max_body_bytes", "--max-body-bytes", "ROBOTWTF_MAX_BODY_BYTES", 16 * 1024 * 1024,
            _parse_positive, "largest request body accepted, in bytes (larger gets 413)"),
    Setting("session_days", "--session-days", "ROBOTWTF_SESSION_DAYS", 30, _parse_positive,
            "browser sessions last this many days"),
    Setting("login_per_minute", "--login-per-minute", "ROBOTWTF_LOGIN_PER_MINUTE", 20, _parse_positive,
            "sign-in attempts allowed per client address per minute"),
    Setting("access_token_minutes", "--access-token-minutes", "ROBOTWTF_ACCESS_TOKEN_MINUTES", 1440,
            _parse_positive, "lifetime of an MCP client's access token, in minutes (every request still "
            "re-checks the grant and the person's role)"),
    Setting("refresh_token_days", "--refresh-token-days", "ROBOTWTF_REFRESH_TOKEN_DAYS", 90, _parse_positive,
            "absolute lifetime of an MCP client's refresh tokens, in days; then the person reconnects"),
    Setting("registrations_per_minute", None, "ROBOTWTF_REGISTRATIONS_PER_MINUTE", 10, _parse_positive,
            "OAuth client registrations (RFC 7591) allowed per client address per minute"),
)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


@dataclasses.dataclass(frozen=True)
class Config:
    host: str
    port: int
    data: Path
    public_url: str
    signup: str
    trusted_proxy: str | None
    plc_url: str
    dns_resolver: str | None
    insecure_dev_network: bool
    threads: int
    max_body_bytes: int
    session_days: int
    login_per_minute: int
    access_token_minutes: int
    refresh_token_days: int
    registrations_per_minute: int

    @property
    def is_https(self) -> bool:
        return self.public_url.startswith("https://")

    @property
    def is_loopback_public_url(self) -> bool:
        return urllib.parse.urlsplit(self.public_url).hostname in ("127.0.0.1", "localhost", "::1")

    @property
    def public_host(self) -> str:
        """host[:port] of the public URL, as a browser sends it in Host."""
        return urllib.parse.urlsplit(self.public_url).netloc

    @property
    def db_path(self) -> Path:
        return self.data / DB_FILE

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
            resolved[setting.name] = setting.default
            continue
        try:
            resolved[setting.name] = setting.parse(raw) if isinstance(raw, str) else raw
        except ValueError as e:
            raise ConfigError(f"{source}={raw!r}: {e}") from None
    resolved["data"] = Path(resolved["data"]).expanduser().absolute()
    resolved["public_url"] = _validate_public_url(
        resolved["public_url"] or f"http://127.0.0.1:{resolved['port']}")
    resolved["plc_url"] = resolved["plc_url"].rstrip("/")
    if resolved["dns_resolver"]:
        _parse_resolver(resolved["dns_resolver"])
    return Config(**resolved)


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
)
SCHEMA_VERSION = MIGRATIONS[-1][0] if MIGRATIONS else 1


def db_connect(path: Path) -> sqlite3.Connection:
    """The one place connections are opened: WAL, foreign keys on, a generous busy timeout."""
    db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA busy_timeout = 10000")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA synchronous = NORMAL")
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection):
    """BEGIN IMMEDIATE takes the write lock up front, so a read-then-write cannot be overtaken."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def open_database(path: Path, create: bool) -> sqlite3.Connection:
    """Open robotwtf's database, refusing anything that is not one; apply pending migrations."""
    existed = path.exists()
    if not existed and not create:
        raise ConfigError(f"No database at {path}; run `robotwtf init` or start the server once.")
    try:
        db = db_connect(path)
    except sqlite3.DatabaseError:
        raise ConfigError(f"{path} is not an SQLite database (corrupt or another kind of file). "
                          "robotwtf will not touch it: move it away or restore a backup.") from None
    try:
        version = _schema_version(db, path) if existed else None
        if version is None:
            _run_script(db, schema_sql(), SCHEMA_VERSION)
        elif version < SCHEMA_VERSION:
            _migrate(db, version)
        elif version > SCHEMA_VERSION:
            raise ConfigError(f"{path} has schema version {version}, newer than this robotwtf "
                              f"understands ({SCHEMA_VERSION}); run a newer robotwtf.")
        db.execute("PRAGMA journal_mode = WAL")
    except BaseException:
        db.close()
        raise
    return db


def _schema_version(db: sqlite3.Connection, path: Path) -> int | None:
    """The recorded schema version; None for an empty new file; ConfigError for anything foreign."""
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError:
        raise ConfigError(f"{path} is not an SQLite database (corrupt or another kind of file). "
                          "robotwtf will not touch it: move it away or restore a backup.") from None
    if not tables:
        return None
    if "schema_version" not in tables:
        raise ConfigError(f"{path} is an SQLite database that robotwtf did not create. "
                          "robotwtf will not touch it: point --data at another folder.")
    row = db.execute("SELECT max(version) FROM schema_version").fetchone()
    if row[0] is None:
        raise ConfigError(f"{path} has an empty schema_version table; restore a backup.")
    return row[0]


def _run_script(db: sqlite3.Connection, sql: str, version: int) -> None:
    """Run a schema script and record its version in one transaction (executescript can't nest)."""
    try:
        db.executescript(f"BEGIN IMMEDIATE;\n{sql}\n;INSERT INTO schema_version VALUES ({version}, {now()});"
                         "\nCOMMIT;")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _migrate(db: sqlite3.Connection, version: int) -> None:
    for number, sql in MIGRATIONS:
        if number > version:
            log.info("applying schema migration %d", number)
            _run_script(db, sql, number)


# --- keys -------------------------------------------------------------------------------------

class Keys:
    """The instance's two private keys: ES256 (ATProto client assertions) and RS256 (session
    cookies and OAuth access tokens). Each `kid` is its RFC 7638 thumbprint, so it is stable."""

    def __init__(self, es256_pem: bytes, rs256_pem: bytes):
        from joserfc.jwk import ECKey, RSAKey
        self.es256 = ECKey.import_key(es256_pem)
        self.rs256 = RSAKey.import_key(rs256_pem)
        self.es256_kid = self.es256.thumbprint()
        self.rs256_kid = self.rs256.thumbprint()
        self.csrf_key = hashlib.sha256(b"robotwtf csrf\0" + rs256_pem).digest()

    @classmethod
    def load(cls, data: Path) -> "Keys":
        pems = []
        for name in KEY_FILES:
            path = data / name
            if not path.exists():
                raise ConfigError(
                    f"{path} is missing but the database exists. New keys would end every session and "
                    "token: restore the key from a backup, or run `robotwtf init --rotate-keys` to make "
                    "new ones on purpose.")
            if path.stat().st_mode & 0o077:
                raise ConfigError(f"{path} is readable by other users; run `chmod 600 {path}`.")
            pems.append(path.read_bytes())
        return cls(*pems)

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
        from joserfc import jwt
        from joserfc.errors import JoseError
        try:
            decoded = jwt.decode(token, self.rs256, algorithms=["RS256"])
        except (JoseError, ValueError, TypeError):
            raise BadInput("The token's signature is not valid.") from None
        if decoded.header.get("typ") != typ:
            raise BadInput("The token is not of the expected type.")
        return decoded.claims


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
    new_instance = not cfg.db_path.exists()
    if not new_instance:
        open_database(cfg.db_path, create=False).close()
    if new_instance or rotate_keys:
        if rotate_keys and not new_instance:
            log.warning("rotating keys: every session cookie and access token signed so far stops working")
        Keys.generate(data)
    Keys.load(data)
    if new_instance:
        open_database(cfg.db_path, create=True).close()


def _check_writable(data: Path) -> None:
    try:
        with tempfile.TemporaryFile(dir=data):
            pass
    except OSError as e:
        raise ConfigError(f"The data folder {data} is not writable: {e.strerror}.") from None


class RateLimiter:
    """Token buckets per key, in this process's memory (robotwtf is one process): `hit` takes a
    token or raises RateLimited with the seconds until one is back."""

    MAX_KEYS = 50_000

    def __init__(self):
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, per_minute: int, message: str = "Too many requests; slow down.") -> None:
        rate = per_minute / 60.0
        t = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(per_minute), t))
            tokens = min(float(per_minute), tokens + (t - last) * rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, t)
                raise RateLimited(message, retry_after=max(1, int((1.0 - tokens) / rate + 0.999)))
            if len(self._buckets) >= self.MAX_KEYS:
                self._buckets.clear()
            self._buckets[key] = (tokens - 1.0, t)


class AtprotoClient:
    """The ATProto OAuth client this instance acts as, and the fetcher/resolver it uses, built
    once from the configuration (robotwtf_atproto is imported only when a login needs it)."""

    def __init__(self, cfg: Config, keys: Keys):
        import robotwtf_atproto as atproto
        self.client = atproto.make_client(cfg.public_url, keys.es256 if cfg.is_https else None, keys.es256_kid)
        self.fetcher = atproto.Fetcher(insecure_dev_network=cfg.insecure_dev_network)
        self.resolver = atproto.dns_resolver(cfg.dns_resolver)
        self.plc_url = cfg.plc_url

    def client_args(self) -> tuple:
        return self.client, self.fetcher, self.resolver, self.plc_url


class Instance:
    """One running robotwtf: its configuration, keys, rate limits and per-thread database
    connections."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.keys = Keys.load(cfg.data)
        self.limiter = RateLimiter()
        self._local = threading.local()

    @functools.cached_property
    def atproto(self) -> "AtprotoClient":
        return AtprotoClient(self.cfg, self.keys)

    def db(self) -> sqlite3.Connection:
        """This thread's connection; waitress runs each request on one worker thread."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = db_connect(self.cfg.db_path)
        return db


def instance() -> Instance:
    return bottle.request.app.config["robotwtf.instance"]


def client_ip() -> str:
    """The caller's address; waitress has already applied a trusted proxy's X-Forwarded-For."""
    return bottle.request.environ.get("REMOTE_ADDR", "")


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


def consume_login_link(db: sqlite3.Connection, token: str) -> str:
    """The link's user, marking it used in the same statement so two clicks can't both win."""
    row = db.execute("UPDATE login_links SET used_at = ? WHERE token_hash = ? AND used_at IS NULL "
                     "AND expires_at > ? RETURNING user_did", (now(), hash_secret(token), now())).fetchone()
    if row is None:
        raise Forbidden("This login link is invalid, expired or already used. "
                        "Ask the operator for a new one (`robotwtf login-link USER`).")
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
                              "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                              (code["client_id"], code["user_did"], code["wiki_id"], code["scope"],
                               code["redirect_uri"], t)).lastrowid
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
    With `user_did`, only that person's grant."""
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


def member_role(db: sqlite3.Connection, wiki_id: int, did: str) -> str | None:
    row = db.execute("SELECT role FROM members WHERE wiki_id = ? AND user_did = ?", (wiki_id, did)).fetchone()
    return row["role"] if row else None


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


def list_personal_tokens(db: sqlite3.Connection, did: str) -> list[sqlite3.Row]:
    return db.execute("SELECT t.*, w.slug AS wiki_slug FROM personal_tokens t JOIN wikis w ON w.id = t.wiki_id "
                      "WHERE t.user_did = ? ORDER BY t.created_at DESC, t.id DESC", (did,)).fetchall()


def revoke_personal_token(db: sqlite3.Connection, token_id: int, did: str) -> bool:
    return db.execute("DELETE FROM personal_tokens WHERE id = ? AND user_did = ?", (token_id, did)).rowcount > 0


# --- wikis ----------------------------------------------------------------------------------------

def create_wiki(db: sqlite3.Connection, slug: str, owner_did: str, title: str = "",
                description: str = "") -> sqlite3.Row:
    validate_slug(slug)
    title = (title or slug).strip()
    if len(title) > 200 or len(description) > 2000:
        raise BadInput("A wiki title is at most 200 characters and a description at most 2000.")
    with transaction(db):
        get_user(db, owner_did)
        if db.execute("SELECT 1 FROM wikis WHERE slug = ?", (slug,)).fetchone():
            raise Conflict(f"The wiki slug '{slug}' is taken; choose another.")
        t = now()
        wiki_id = db.execute("INSERT INTO wikis (slug, title, description, owner_did, created_at) "
                             "VALUES (?, ?, ?, ?, ?)", (slug, title, description, owner_did, t)).lastrowid
        db.execute("INSERT INTO members (wiki_id, user_did, role, added_at) VALUES (?, ?, 'owner', ?)",
                   (wiki_id, owner_did, t))
    return get_wiki(db, slug)


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


# --- backup and restore ----------------------------------------------------------------------------

def backup(cfg: Config, dest: Path) -> None:
    """A consistent copy of the database (SQLite's online backup API: safe while the server
    writes) and the keys, in one 0600 .tar.gz — it holds private keys."""
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        copy = Path(tmp) / DB_FILE
        source = open_database(cfg.db_path, create=False)
        target = sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        buffer = io.BytesIO()
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
    """Unpack a backup into an empty data folder, checking every member before writing any."""
    data = cfg.data
    if data.exists() and any(data.iterdir()):
        raise ConfigError(f"The data folder {data} is not empty; restore only into a new or empty folder.")
    try:
        with tarfile.open(source, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers()}
            if set(members) != {DB_FILE, *KEY_FILES} or not all(m.isreg() for m in members.values()):
                raise ConfigError(f"{source} is not a robotwtf backup (expected {DB_FILE} and the two keys).")
            contents = {name: tar.extractfile(m).read() for name, m in members.items()}
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ConfigError(f"Cannot read the backup {source}: {e}.") from None
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    data.chmod(0o700)
    for name, content in contents.items():
        write_private_file(data / name, content)
    db = open_database(cfg.db_path, create=False)
    try:
        if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise ConfigError(f"The database in {source} fails SQLite's integrity check.")
    finally:
        db.close()
    Keys.load(data)


# --- the web edge: host check, security headers, access log ---------------------------------------

# Machine endpoints answer whatever the Host header says and speak JSON; everything else is a
# browser page, redirected to the public URL's host (CONTRACT §1).
MACHINE_PATH_RE = re.compile(
    r"/healthz|/\.well-known/.*|/auth/client-metadata\.json|/oauth/(token|register|revoke)|/w/[^/]+/mcp")
HOST_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")

access_log = logging.getLogger("robotwtf.access")


def is_machine_path(path: str) -> bool:
    return MACHINE_PATH_RE.fullmatch(path) is not None


def edge(app, cfg: Config):
    """WSGI middleware around everything: refuse malformed Host headers, send browsers to the
    public host, add security headers, and log one line per request (never the query string,
    cookies or Authorization, which may carry secrets)."""
    def middleware(environ, start_response):
        started = time.perf_counter()
        status_seen = []

        def start(status, headers, exc_info=None):
            status_seen.append(status)
            names = {name.lower() for name, _ in headers}
            extra = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer")]
            if any(name.lower() == "content-type" and value.startswith("text/html") for name, value in headers):
                extra += [("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY")]
            return start_response(status, headers + [h for h in extra if h[0].lower() not in names], exc_info)

        path = environ.get("PATH_INFO", "")
        try:
            return _edge_route(app, cfg, environ, start, path)
        finally:
            access_log.info("%s %s %s %.1fms", environ.get("REQUEST_METHOD"), _printable(path),
                            status_seen[0].split(" ", 1)[0] if status_seen else "-",
                            (time.perf_counter() - started) * 1000)
    return middleware


def _edge_route(app, cfg: Config, environ, start, path: str):
    host = environ.get("HTTP_HOST")
    if host is not None and not HOST_RE.fullmatch(host):
        return _plain(start, "400 Bad Request", "Malformed Host header.\n")
    if host and host.lower() != cfg.public_host.lower() and not is_machine_path(path):
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _plain(start, "400 Bad Request", f"Use {cfg.public_url} for this request.\n")
        query = environ.get("QUERY_STRING")
        target = cfg.public_url + urllib.parse.quote(path) + (f"?{query}" if query else "")
        start("302 Found", [("Location", target), ("Content-Length", "0")])
        return [b""]
    return app(environ, start)


def _plain(start, status: str, text: str):
    body = text.encode()
    start(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:300])


# --- browser sessions, CSRF, rendering --------------------------------------------------------------

SESSION_TYP = "robotwtf-session+jwt"
ANON_COOKIE = "robotwtf_anon"


def session_cookie_name(cfg: Config) -> str:
    # The __Host- prefix pins the cookie to this exact host over https (RFC 6265bis §4.1.3.2).
    return "__Host-robotwtf_session" if cfg.is_https else "robotwtf_session"


def _set_cookie(name: str, value: str, max_age: int) -> None:
    cfg = instance().cfg
    bottle.response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                               secure=cfg.is_https, samesite="lax")


def start_session(did: str) -> None:
    """Log this browser in as `did`: a session row plus a signed cookie naming it."""
    inst = instance()
    session_id = create_session(inst.db(), did, inst.cfg.session_days,
                                bottle.request.get_header("User-Agent", ""))
    t = now()
    token = inst.keys.sign_rs256({"iss": inst.cfg.public_url, "sub": did, "sid": session_id, "iat": t,
                                  "exp": t + inst.cfg.session_days * 86400}, SESSION_TYP)
    _set_cookie(session_cookie_name(inst.cfg), token, inst.cfg.session_days * 86400)
    bottle.request.environ["robotwtf.user"] = get_user(inst.db(), did)
    bottle.request.environ["robotwtf.session_id"] = session_id


def end_session() -> None:
    inst = instance()
    session_id = current_session_id()
    if session_id:
        delete_session(inst.db(), session_id)
    bottle.response.delete_cookie(session_cookie_name(inst.cfg), path="/", secure=inst.cfg.is_https,
                                  httponly=True, samesite="lax")


def current_user() -> sqlite3.Row | None:
    """The signed-in user, checked against the sessions table on every request, so a revoked
    session or a deleted user is out at once."""
    environ = bottle.request.environ
    if "robotwtf.user" not in environ:
        environ["robotwtf.user"], environ["robotwtf.session_id"] = _session_from_cookie()
    return environ["robotwtf.user"]


def current_session_id() -> str | None:
    current_user()
    return bottle.request.environ["robotwtf.session_id"]


def _session_from_cookie():
    inst = instance()
    token = bottle.request.get_cookie(session_cookie_name(inst.cfg))
    if not token:
        return None, None
    try:
        claims = inst.keys.verify_rs256(token, SESSION_TYP)
    except BadInput:
        return None, None
    if claims.get("iss") != inst.cfg.public_url or not isinstance(claims.get("exp"), int) \
            or claims["exp"] <= now() or not isinstance(claims.get("sid"), str):
        return None, None
    user = session_user(inst.db(), claims["sid"])
    return (user, claims["sid"]) if user is not None and user["did"] == claims.get("sub") else (None, None)


def csrf_token() -> str:
    """HMAC of the session id (or, before sign-in, of a random cookie): a forged cross-site form
    can't know it, and nothing needs storing."""
    return hmac.new(instance().keys.csrf_key, _csrf_binding().encode(), hashlib.sha256).hexdigest()


def _csrf_binding() -> str:
    session_id = current_session_id()
    if session_id:
        return "session:" + session_id
    environ = bottle.request.environ
    anon = environ.get("robotwtf.anon") or bottle.request.get_cookie(ANON_COOKIE)
    if not anon:
        anon = new_secret(16)
        _set_cookie(ANON_COOKIE, anon, 86400)
    environ["robotwtf.anon"] = anon
    return "anon:" + anon


def check_csrf() -> None:
    sent = bottle.request.forms.get("csrf_token", "")
    if not hmac.compare_digest(sent, csrf_token()):
        raise Forbidden("This form has expired or was sent from another site. Go back, reload the page "
                        "and try again.")


class CsrfPlugin:
    """Every POST route is CSRF-checked unless declared with csrf=False (machine endpoints that
    authenticate with client credentials or bearer tokens, never cookies)."""
    name, api = "csrf", 2

    def apply(self, callback, route):
        if route.method != "POST" or not route.config.get("csrf", True):
            return callback

        @functools.wraps(callback)
        def wrapper(*args, **kwargs):
            check_csrf()
            return callback(*args, **kwargs)
        return wrapper


class ErrorPlugin:
    """Turns a RobotError raised anywhere below a route into its HTML or JSON error response."""
    name, api = "robot_errors", 2

    def apply(self, callback, route):
        @functools.wraps(callback)
        def wrapper(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except RobotError as e:
                headers = {"Retry-After": str(e.retry_after)} if isinstance(e, RateLimited) else {}
                return error_response(e.status, e.code, e.message, headers)
        return wrapper


GENERIC_MESSAGES = {
    400: "The request was not understood.",
    403: "You may not do that.",
    404: "There is nothing here.",
    405: "That method is not allowed here.",
    413: "The request is too large.",
    500: "Something went wrong on our side. The operator can find the details in the server log.",
}


def wants_json() -> bool:
    accept = bottle.request.get_header("Accept", "")
    return is_machine_path(bottle.request.path) or ("application/json" in accept and "text/html" not in accept)


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> bottle.HTTPResponse:
    if wants_json():
        body = json.dumps({"error": code, "message": message})
        content_type = "application/json"
    else:
        body = render("error", status=status, message=message)
        content_type = "text/html; charset=utf-8"
    return bottle.HTTPResponse(body, status, {"Content-Type": content_type, "Cache-Control": "no-store",
                                              **(headers or {})})


def render(name: str, **context) -> str:
    """A template from views/, given the signed-in user, a CSRF token and the config."""
    views = str(resource_root().joinpath("views"))
    return bottle.template(name, template_lookup=[views], user=current_user(), csrf_token=csrf_token,
                           cfg=instance().cfg, **context)


def redirect(location: str) -> str:
    """303 See Other: after a POST the browser GETs the target (RFC 9110 §15.4.4). Set on the
    current response (not a new HTTPResponse) so cookies set by the handler survive."""
    bottle.response.status = 303
    bottle.response.set_header("Location", location)
    return ""


def safe_return_to(value: str | None) -> str:
    """A same-origin path to send the browser back to; anything else becomes '/'."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value \
            or any(not c.isprintable() for c in value):
        return "/"
    parts = urllib.parse.urlsplit(value)
    return value if not parts.scheme and not parts.netloc else "/"


def login_required(callback):
    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        if current_user() is None:
            target = bottle.request.fullpath + (f"?{bottle.request.query_string}" if bottle.request.query_string else "")
            return redirect("/auth/login?" + urllib.parse.urlencode({"return_to": target}))
        return callback(*args, **kwargs)
    return wrapper


class App(bottle.Bottle):
    def default_error_handler(self, res: bottle.HTTPError):
        message = res.body if isinstance(res.body, str) and res.status_code < 500 and res.body \
            and not res.body.startswith("Not found: ") else GENERIC_MESSAGES.get(res.status_code, res.status_line)
        response = error_response(res.status_code, "server_error" if res.status_code >= 500 else "error", message)
        for name, value in res.headerlist:
            if name.lower() == "allow":
                response.set_header("Allow", value)
        bottle.response.status = res.status_code
        bottle.response.headers.update(response.headers)
        return response.body


# --- routes ---------------------------------------------------------------------------------------

def build_app(inst: Instance) -> App:
    app = App(catchall=True)
    app.config["robotwtf.instance"] = inst
    app.install(ErrorPlugin())
    app.install(CsrfPlugin())

    app.route("/healthz", "GET", healthz)
    app.route("/static/style.css", "GET", stylesheet)
    app.route("/", "GET", home)
    app.route("/auth/login", "GET", login_page)
    app.route("/auth/login", "POST", login_start)
    app.route("/auth/callback", "GET", login_callback)
    app.route("/auth/signup", "GET", signup_page)
    app.route("/auth/signup", "POST", signup_submit)
    app.route("/auth/login-link", "GET", login_link)
    app.route("/auth/logout", "POST", logout)
    app.route("/auth/client-metadata.json", "GET", atproto_client_metadata)
    app.route("/.well-known/atproto-client-jwks.json", "GET", atproto_client_jwks)
    app.route("/account", "GET", account_page)
    app.route("/account/sessions/revoke", "POST", account_revoke_session)
    app.route("/account/logout-everywhere", "POST", account_logout_everywhere)
    app.route("/account/delete", "POST", account_delete)
    app.route("/admin", "GET", admin_page)
    app.route("/admin/users/remove", "POST", admin_remove_user)
    app.route("/admin/invites", "POST", admin_create_invite)
    import robotwtf_as  # imported here: it imports this module
    robotwtf_as.install(app)
    return app


def healthz():
    try:
        instance().db().execute("SELECT 1").fetchone()
    except sqlite3.Error:
        return error_response(503, "unavailable", "The database does not answer.")
    bottle.response.content_type = "application/json"
    bottle.response.set_header("Cache-Control", "no-store")
    return '{"status": "ok"}'


def stylesheet():
    bottle.response.content_type = "text/css; charset=utf-8"
    bottle.response.set_header("Cache-Control", "public, max-age=3600")
    return resource_root().joinpath("views", "style.css").read_text(encoding="utf-8")


def home():
    user = current_user()
    if user is None:
        return render("landing")
    return render("dashboard", wikis=user_wikis(instance().db(), user["did"]))


def json_response(document: dict, cache: str = "no-store") -> str:
    bottle.response.content_type = "application/json"
    bottle.response.set_header("Cache-Control", cache)
    return json.dumps(document)


def admin_required(callback):
    @functools.wraps(callback)
    @login_required
    def wrapper(*args, **kwargs):
        if not current_user()["is_admin"]:
            raise Forbidden("Only instance admins may do that.")
        return callback(*args, **kwargs)
    return wrapper


# "Login with atproto": robotwtf_atproto does the protocol; these routes keep its state, bind it
# to the browser, and turn a verified identity into a session (or a signup).

LOGIN_COOKIE = "robotwtf_login"
SIGNUP_COOKIE = "robotwtf_signup"
SIGNUP_TYP = "robotwtf-signup+jwt"
SIGNUP_SECONDS = 900


def login_page(error: str = "", status: int = 200, identifier: str = ""):
    query = bottle.request.query
    if current_user() is not None and not error:
        return redirect(safe_return_to(query.get("return_to")))
    bottle.response.status = status
    return render("login", error=error, identifier=identifier,
                  return_to=safe_return_to(query.get("return_to") or bottle.request.forms.get("return_to")),
                  invite=query.get("invite") or bottle.request.forms.get("invite", ""))


def login_start():
    """POST /auth/login: resolve the account, push the authorization request, send the browser
    to the account's authorization server."""
    import robotwtf_atproto as atproto
    inst = instance()
    form = bottle.request.forms
    inst.limiter.hit("login:" + client_ip(), inst.cfg.login_per_minute, "Too many sign-in attempts; wait a minute.")
    identifier = form.getunicode("identifier", "").strip()
    try:
        authorize_url, pending = atproto.start_login(identifier, *inst.atproto.client_args())
    except atproto.AtprotoError as e:
        return login_page(str(e), 400 if isinstance(e, atproto.BadIdentifier) else 502, identifier)
    browser_secret = new_secret(16)
    invite = form.getunicode("invite", "")
    save_login_request(inst.db(), pending, browser_secret, safe_return_to(form.getunicode("return_to")),
                       hash_secret(invite) if invite else None)
    _set_cookie(LOGIN_COOKIE, browser_secret, LOGIN_REQUEST_SECONDS)
    return redirect(authorize_url)


def login_callback():
    """GET /auth/callback: the authorization server sends the browser back here."""
    import robotwtf_atproto as atproto
    inst = instance()
    query = bottle.request.query
    request = take_login_request(inst.db(), query.getunicode("state", ""), bottle.request.get_cookie(LOGIN_COOKIE, ""))
    bottle.response.delete_cookie(LOGIN_COOKIE, path="/")
    try:
        identity = atproto.finish_login(json.loads(request["pending"]), query.dict, *inst.atproto.client_args())
    except atproto.AtprotoError as e:
        return login_page(str(e), 400 if isinstance(e, atproto.LoginError) else 502)
    db = inst.db()
    known = db.execute("SELECT handle FROM users WHERE did = ?", (identity.did,)).fetchone()
    if known is None:
        return _begin_signup(identity, request["return_to"], request["invite"])
    if identity.handle and identity.handle != known["handle"]:
        update_user_handle(db, identity.did, identity.handle)
    start_session(identity.did)
    return redirect(request["return_to"])


def _begin_signup(identity, return_to: str, invite_hash: str | None):
    """A verified identity without an account: remember it in a short-lived signed cookie and
    let the person pick a username."""
    inst = instance()
    t = now()
    token = inst.keys.sign_rs256({"iss": inst.cfg.public_url, "sub": identity.did, "handle": identity.handle,
                                  "invite": invite_hash, "return_to": return_to, "iat": t,
                                  "exp": t + SIGNUP_SECONDS}, SIGNUP_TYP)
    _set_cookie(SIGNUP_COOKIE, token, SIGNUP_SECONDS)
    return redirect("/auth/signup")


def _pending_signup() -> dict:
    inst = instance()
    token = bottle.request.get_cookie(SIGNUP_COOKIE, "")
    try:
        claims = inst.keys.verify_rs256(token, SIGNUP_TYP) if token else None
    except BadInput:
        claims = None
    if not claims or claims.get("iss") != inst.cfg.public_url or claims.get("exp", 0) <= now():
        raise Forbidden("Your sign-up took too long or was not started here. Please sign in again.")
    return claims


def signup_page(error: str = "", username: str = ""):
    claims = _pending_signup()
    inst = instance()
    refusal = signup_refusal(inst.db(), inst.cfg.signup, claims.get("invite"))
    return render("signup", error=error, refusal=refusal, handle=claims.get("handle"), did=claims["sub"],
                  username=username or default_username(claims["sub"], claims.get("handle")))


def signup_submit():
    claims = _pending_signup()
    inst = instance()
    username = bottle.request.forms.getunicode("username", "").strip().lower()
    try:
        sign_up(inst.db(), inst.cfg.signup, claims["sub"], claims.get("handle"), username, claims.get("invite"))
    except (BadInput, Conflict) as e:
        bottle.response.status = e.status
        return signup_page(e.message, username)
    bottle.response.delete_cookie(SIGNUP_COOKIE, path="/")
    start_session(claims["sub"])
    return redirect(safe_return_to(claims.get("return_to")))


def atproto_client_metadata():
    """The confidential client's metadata (ATProto OAuth "Client Metadata"); a localhost
    instance is the spec's development client and has none."""
    import robotwtf_atproto as atproto
    cfg = instance().cfg
    if not cfg.is_https:
        raise NotFound("This instance runs as ATProto's localhost development client and has no client metadata.")
    return json_response(atproto.client_metadata(cfg.public_url), "public, max-age=600")


def atproto_client_jwks():
    if not instance().cfg.is_https:
        raise NotFound("This instance runs as ATProto's localhost development client and has no client keys.")
    return json_response(instance().keys.client_jwks(), "public, max-age=600")


@login_required
def account_page():
    user = current_user()
    return render("account", sessions=list_sessions(instance().db(), user["did"]),
                  current_session=current_session_id())


@login_required
def account_revoke_session():
    revoke_session(instance().db(), current_user()["did"], bottle.request.forms.getunicode("session_id", ""))
    return redirect("/account")


@login_required
def account_logout_everywhere():
    revoke_all_sessions(instance().db(), current_user()["did"])
    end_session()
    return redirect("/")


@login_required
def account_delete():
    user = current_user()
    expected = user["handle"] or user["username"]
    if bottle.request.forms.getunicode("confirm", "").strip().removeprefix("@").lower() != expected:
        raise BadInput(f"To delete your account, type {expected} exactly.")
    delete_user(instance().db(), user["did"])
    end_session()
    return redirect("/")


@admin_required
def admin_page(invite_url: str = ""):
    return render("admin", users=list_users(instance().db()), invite_url=invite_url)


@admin_required
def admin_remove_user():
    did = bottle.request.forms.getunicode("did", "")
    if did == current_user()["did"]:
        raise BadInput("You cannot remove yourself here; delete your account from the account page instead.")
    delete_user(instance().db(), did)
    return redirect("/admin")


@admin_required
def admin_create_invite():
    try:
        uses = int(bottle.request.forms.get("uses", "1"))
    except ValueError:
        raise BadInput("The number of uses must be a whole number.") from None
    token = create_invite(instance().db(), current_user()["did"], uses)
    return admin_page(instance().cfg.url("/auth/login?" + urllib.parse.urlencode({"invite": token})))


def login_link():
    """GET of a one-time link logs the browser in (CONTRACT §2); the token is in the query so it
    never reaches the access log, and Referrer-Policy keeps it out of Referer headers."""
    did = consume_login_link(instance().db(), bottle.request.query.get("token", ""))
    start_session(did)
    return redirect("/")


def logout():
    end_session()
    return redirect("/")


# --- serving -------------------------------------------------------------------------------------

class _Stop(SystemExit):
    """Raised by the SIGTERM/SIGINT handler: waitress's loop lets SystemExit through its channel
    error handling and stops its worker threads when run() sees it."""


def serve(cfg: Config) -> int:
    import waitress.server
    prepare_data_folder(cfg)
    inst = Instance(cfg)
    app = edge(build_app(inst), cfg)
    proxy = {}
    if cfg.trusted_proxy:
        proxy = dict(trusted_proxy=cfg.trusted_proxy, trusted_proxy_count=1, clear_untrusted_proxy_headers=True,
                     trusted_proxy_headers={"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"})
    try:
        server = waitress.server.create_server(
            app, host=cfg.host, port=cfg.port, threads=cfg.threads, ident="robotwtf",
            max_request_body_size=cfg.max_body_bytes, channel_timeout=60, connection_limit=256,
            **proxy)
    except OSError as e:
        raise ConfigError(f"Cannot listen on {cfg.host}:{cfg.port}: {e.strerror}"
                          + (" (another program uses this port; choose another with --port)."
                             if e.errno == 98 else ".")) from None
    if cfg.insecure_dev_network:
        log.warning("ROBOTWTF_INSECURE_DEV_NETWORK is on: http://localhost and loopback peers are allowed. "
                    "Never use this in production.")

    def stop(signum, frame):
        raise _Stop

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("robotwtf serving %s on %s:%s (data: %s)", cfg.public_url, cfg.host, server.effective_port, cfg.data)
    try:
        server.run()
    finally:
        log.info("stopping")
        server.close()
    return 0


# --- operator CLI -----------------------------------------------------------------------------------

def open_instance_db(cfg: Config) -> sqlite3.Connection:
    """The database of an existing instance, for admin commands (never creates one)."""
    if not cfg.db_path.exists():
        raise ConfigError(f"There is no robotwtf instance in {cfg.data}; run `robotwtf init` first "
                          "(or pass --data / ROBOTWTF_DATA).")
    Keys.load(cfg.data)
    return open_database(cfg.db_path, create=False)


def cmd_serve(cfg: Config, args) -> int:
    return serve(cfg)


def cmd_init(cfg: Config, args) -> int:
    prepare_data_folder(cfg, create=True, rotate_keys=args.rotate_keys)
    keys = Keys.load(cfg.data)
    print(f"{cfg.data}: schema version {SCHEMA_VERSION}, ES256 key {keys.es256_kid}, RS256 key {keys.rs256_kid}")
    return 0


def cmd_check(cfg: Config, args) -> int:
    prepare_data_folder(cfg, create=False)
    db = open_database(cfg.db_path, create=False)
    try:
        if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise ConfigError(f"{cfg.db_path} fails SQLite's integrity check; restore a backup.")
        users = db.execute("SELECT count(*) FROM users").fetchone()[0]
        wikis = db.execute("SELECT count(*) FROM wikis").fetchone()[0]
    finally:
        db.close()
    print(f"ok: {cfg.data} (schema version {SCHEMA_VERSION}, {users} users, {wikis} wikis); "
          f"public URL {cfg.public_url}; signup {cfg.signup}")
    return 0


def cmd_user_add(cfg: Config, args) -> int:
    db = open_instance_db(cfg)
    did, handle = args.ident.strip(), args.handle
    if not did.startswith("did:"):
        did, handle = resolve_handle_for_cli(cfg, did)
    user = add_user(db, did, handle=handle.lower().removeprefix("@") if handle else None,
                    username=args.username, admin=args.admin)
    print(f"added {user['username']} ({user['did']}){' as admin' if user['is_admin'] else ''}")
    return 0


def resolve_handle_for_cli(cfg: Config, handle: str) -> tuple[str, str]:
    """A handle's DID, verified both ways, the same way the login does it."""
    import robotwtf_atproto as atproto
    try:
        identity = atproto.resolve_identity(handle, atproto.Fetcher(insecure_dev_network=cfg.insecure_dev_network),
                                            atproto.dns_resolver(cfg.dns_resolver), cfg.plc_url)
    except atproto.AtprotoError as e:
        raise BadInput(f"{e} (pass the person's DID instead to add them without the network)") from None
    return identity.did, identity.handle


def cmd_user_list(cfg: Config, args) -> int:
    for user in list_users(open_instance_db(cfg)):
        print("\t".join([user["username"], user["handle"] or "-", user["did"],
                         "admin" if user["is_admin"] else "member"]))
    return 0


def cmd_login_link(cfg: Config, args) -> int:
    db = open_instance_db(cfg)
    user = find_user(db, args.user)
    print(cfg.url("/auth/login-link?" + urllib.parse.urlencode({"token": create_login_link(db, user["did"])})))
    return 0


def cmd_invite_create(cfg: Config, args) -> int:
    token = create_invite(open_instance_db(cfg), None, args.uses)
    print(cfg.url("/auth/login?" + urllib.parse.urlencode({"invite": token})))
    return 0


def cmd_wiki_create(cfg: Config, args) -> int:
    db = open_instance_db(cfg)
    owner = find_user(db, args.owner)
    wiki = create_wiki(db, args.slug, owner["did"], args.title or "")
    print(f"created {cfg.url('/w/' + wiki['slug'] + '/')}")
    return 0


def cmd_wiki_list(cfg: Config, args) -> int:
    for wiki in list_wikis(open_instance_db(cfg)):
        print("\t".join([wiki["slug"], wiki["owner"], wiki["visibility"], wiki["title"]]))
    return 0


def cmd_token_create(cfg: Config, args) -> int:
    """Print only the token, so scripts can capture it (CONTRACT §2)."""
    db = open_instance_db(cfg)
    user = find_user(db, args.user)
    print(create_personal_token(db, user["did"], args.slug, parse_scopes(args.scope), args.name))
    return 0


def cmd_backup(cfg: Config, args) -> int:
    dest = Path(args.file).expanduser().absolute()
    if not cfg.db_path.exists():
        raise ConfigError(f"There is no robotwtf instance in {cfg.data} to back up.")
    backup(cfg, dest)
    print(f"backed up {cfg.data} to {dest}")
    return 0


def cmd_restore(cfg: Config, args) -> int:
    restore(cfg, Path(args.file).expanduser().absolute())
    print(f"restored {args.file} into {cfg.data}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Settings flags work before or after the command (`robotwtf --data D user list`)."""
    settings = argparse.ArgumentParser(add_help=False)
    for setting in SETTINGS:
        if setting.flag:
            settings.add_argument(setting.flag, dest=setting.name, default=argparse.SUPPRESS,
                                  help=f"{setting.help} (env {setting.env})")
    parser = argparse.ArgumentParser(prog="robotwtf", parents=[settings],
                                     description="A self-hosted wiki for people and their AI agents.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(parent, name, func, help_text):
        sub = parent.add_parser(name, parents=[settings], help=help_text, description=help_text)
        sub.set_defaults(func=func)
        return sub

    command(commands, "serve", cmd_serve, "serve the wiki (the default command)")
    command(commands, "init", cmd_init, "create the data folder, database and keys (idempotent)") \
        .add_argument("--rotate-keys", action="store_true", help="make new keys (ends every session and token)")
    command(commands, "check", cmd_check, "check the configuration and the data folder")
    users = commands.add_parser("user", help="manage users").add_subparsers(dest="subcommand", metavar="SUBCOMMAND",
                                                                            required=True)
    add = command(users, "add", cmd_user_add, "add a user by DID, or by handle (resolved and verified)")
    add.add_argument("ident", metavar="IDENT", help="the person's DID or handle")
    add.add_argument("--handle", help="their ATProto handle")
    add.add_argument("--username", help="username (default: from the handle)")
    add.add_argument("--admin", action="store_true", help="make them an instance admin")
    command(users, "list", cmd_user_list, "list users: username, handle, DID, admin|member")
    command(commands, "login-link", cmd_login_link, "print a one-time browser login URL (10 minutes)") \
        .add_argument("user", metavar="USER", help="username, handle or DID")
    invites = commands.add_parser("invite", help="manage invites").add_subparsers(
        dest="subcommand", metavar="SUBCOMMAND", required=True)
    command(invites, "create", cmd_invite_create, "print an invite URL") \
        .add_argument("--uses", type=int, default=1, help="how many sign-ups it allows (default 1)")
    wikis = commands.add_parser("wiki", help="manage wikis").add_subparsers(dest="subcommand", metavar="SUBCOMMAND",
                                                                            required=True)
    create = command(wikis, "create", cmd_wiki_create, "create a wiki")
    create.add_argument("slug", metavar="SLUG")
    create.add_argument("--owner", required=True, help="username, handle or DID of the owner")
    create.add_argument("--title", help="the wiki's title (default: the slug)")
    command(wikis, "list", cmd_wiki_list, "list wikis: slug, owner, visibility, title")
    tokens = commands.add_parser("token", help="manage personal access tokens").add_subparsers(
        dest="subcommand", metavar="SUBCOMMAND", required=True)
    token = command(tokens, "create", cmd_token_create, "print a new personal access token for a wiki, once")
    token.add_argument("slug", metavar="SLUG", help="the wiki")
    token.add_argument("--user", required=True, help="username, handle or DID of the member it acts for")
    token.add_argument("--scope", default=" ".join(SCOPES),
                       help=f"space-separated scopes (default \"{' '.join(SCOPES)}\")")
    token.add_argument("--name", default="cli", help="a name to recognise it by (default \"cli\")")
    command(commands, "backup", cmd_backup, "write a consistent .tar.gz of the database and keys") \
        .add_argument("file", metavar="FILE")
    command(commands, "restore", cmd_restore, "restore a backup into an empty data folder") \
        .add_argument("file", metavar="FILE")
    return parser


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)  # the database, its WAL files and backups hold secrets' hashes and keys
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    func = getattr(args, "func", cmd_serve)
    try:
        cfg = load_config(vars(args))
        return func(cfg, args)
    except ConfigError as e:
        print(f"robotwtf: {e}", file=sys.stderr)
        return 1
    except RobotError as e:
        print(f"robotwtf: {e.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    # Run as the module `robotwtf`, so the other modules' `import robotwtf` finds this one copy.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import robotwtf
    sys.exit(robotwtf.main())
