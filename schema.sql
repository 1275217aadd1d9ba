-- robotwtf's whole data model. A new database gets this file; an older one gets the numbered
-- migrations in robotwtf.py (MIGRATIONS), which must leave it identical to this file.
-- Times are integer Unix seconds (UTC). Secrets (tokens, codes) are stored only as SHA-256 hex.

CREATE TABLE schema_version (
    version    INTEGER NOT NULL,
    applied_at INTEGER NOT NULL
);

-- People, keyed by their ATProto DID; username follows the slug rules.
CREATE TABLE users (
    did          TEXT PRIMARY KEY,
    username     TEXT NOT NULL UNIQUE,
    handle       TEXT,
    display_name TEXT,
    is_admin     INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL
);
CREATE UNIQUE INDEX users_handle ON users(handle) WHERE handle IS NOT NULL;

-- Browser sessions: the cookie is a signed JWT naming one row here; deleting the row ends it.
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    user_did    TEXT NOT NULL REFERENCES users(did) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    user_agent  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions(user_did);

-- One-time browser login links minted by `login-link`.
CREATE TABLE login_links (
    token_hash TEXT PRIMARY KEY,
    user_did   TEXT NOT NULL REFERENCES users(did) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);

-- Invite links for the `invite` signup policy.
CREATE TABLE invites (
    token_hash TEXT PRIMARY KEY,
    created_by TEXT REFERENCES users(did) ON DELETE SET NULL,
    uses_left  INTEGER NOT NULL CHECK (uses_left >= 0),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE wikis (
    id          INTEGER PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    title       TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    visibility  TEXT NOT NULL DEFAULT 'private' CHECK (visibility IN ('private', 'public')),
    owner_did   TEXT NOT NULL REFERENCES users(did) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL
);
CREATE INDEX wikis_owner ON wikis(owner_did);

-- Every person with access to a wiki, the owner included. user_did has no foreign key: a person
-- can be added by DID before they first sign in; deleting a user deletes their rows here.
CREATE TABLE members (
    wiki_id    INTEGER NOT NULL REFERENCES wikis(id) ON DELETE CASCADE,
    user_did   TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
    added_at   INTEGER NOT NULL,
    PRIMARY KEY (wiki_id, user_did)
) WITHOUT ROWID;
CREATE INDEX members_user ON members(user_did);

-- ATProto logins under way, keyed by OAuth `state`; `pending` is robotwtf_atproto's JSON (it holds
-- the login's private DPoP key and PKCE verifier). A row is deleted when its callback arrives.
-- browser_hash binds the login to the browser that started it (login CSRF).
CREATE TABLE login_requests (
    state        TEXT PRIMARY KEY,
    browser_hash TEXT NOT NULL,
    pending      TEXT NOT NULL,
    return_to    TEXT NOT NULL,
    invite       TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);

-- OAuth 2.1 authorization server for MCP clients (robotwtf_as). A client is registered by RFC 7591
-- (random client_id, secret stored hashed) or is a Client ID Metadata Document (client_id is the
-- document's URL; the row caches it until cache_until). Name and URIs are the client's own claims:
-- shown as text, never trusted. Lists are JSON arrays.
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

-- One consent a person gave and a client redeemed: user, client, wiki, scopes. Access tokens name
-- their grant and every use checks it still exists, so deleting the row ends all its tokens at once.
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

-- Authorization codes (RFC 6749 §4.1.2): short-lived and single use. A used code is kept until a
-- day after it expired, so a replay can still revoke the grant it produced. A challenge may be
-- used once (RFC 9700 §2.1.1).
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

-- Refresh tokens, rotated on every use (OAuth 2.1 §4.3.1): used_at marks a spent token and
-- successor_hash the one issued for it. expires_at is the grant's absolute refresh lifetime.
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

-- Personal access tokens for one wiki (CLI `token create`, the dashboard), shown once.
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
