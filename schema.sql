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
