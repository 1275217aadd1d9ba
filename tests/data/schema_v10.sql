-- schema.sql as it was at schema version 10, the first version a PostgreSQL database can have:
-- tests/postgres upgrades a database made from it with every later migration. Never edit it.
-- robotwtf's whole data model. A new database gets this file; an older one gets the numbered
-- migrations in robotwtf_store.py (MIGRATIONS), which must leave it identical to this file.
-- Times are integer Unix seconds (UTC). Secrets (tokens, codes) are stored only as SHA-256 hex.
--
-- One file for both engines (SQLite and PostgreSQL), and so is each migration:
-- - Tables and indexes are written once, in SQLite's spelling of standard SQL: INTEGER, TEXT,
--   BLOB, `INTEGER PRIMARY KEY` for a generated id. For PostgreSQL, schema_script() in
--   robotwtf_store.py makes INTEGER a BIGINT, an id an identity column, BLOB a BYTEA and TEXT
--   bytewise-ordered (COLLATE "C"), as SQLite orders it. Use only what both engines accept:
--   no AUTOINCREMENT-only tricks, no SQLite type affinity games, booleans as INTEGER 0/1.
-- - What cannot be written once (triggers, full-text search) goes in engine blocks: a line
--   `-- @sqlite` or `-- @postgresql` starts one, `-- @both` goes back to the shared part.
--   Give each engine's block the same effect; tests/postgres/test_postgres.py::test_schema_is_the_same_on_both_engines
--   compares the two engines' tables and columns.

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

-- Wiki storage (migration 2). A page row lives for the page's whole life: its id follows it
-- across renames, and deleting only sets deleted_at, so history stays and it can be restored.
-- path_key is the NFC-casefolded path: paths keep their case but are unique per wiki ignoring it.
-- The row holds the current revision's content and what is parsed from it for listing.
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
-- Covers the browser's page tree (every live path of a wiki in order) without reading the pages.
CREATE INDEX pages_live_paths ON pages(wiki_id, path_key, path) WHERE deleted_at IS NULL;

-- Every change to a page, with the page's full content after it. seq orders them; id is the
-- opaque id people and agents quote (any unique prefix of 7+ characters finds it).
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

-- Outgoing WikiLinks of live pages; target_key is the casefolded target path, so backlinks,
-- orphans and broken links are joins against pages.path_key.
CREATE TABLE links (
    page_id    INTEGER NOT NULL REFERENCES pages(id) ON DELETE CASCADE,
    wiki_id    INTEGER NOT NULL REFERENCES wikis(id) ON DELETE CASCADE,
    target_key TEXT NOT NULL,
    target     TEXT NOT NULL,
    PRIMARY KEY (page_id, target_key)
) WITHOUT ROWID;
CREATE INDEX links_target ON links(wiki_id, target_key);

-- Files attached to a page. content_type is sniffed from the bytes, never taken from the client.
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

-- Live pages and their bytes (content, plus the attachments of live pages) per wiki, kept by
-- triggers inside every writing transaction, so a quota check reads one row however big the wiki.
-- A hard-deleted page's files are counted out BEFORE the delete: its cascade removes them after
-- the page row is gone, when their own trigger can no longer tell that the page was live.
CREATE TABLE wiki_totals (
    wiki_id INTEGER PRIMARY KEY REFERENCES wikis(id) ON DELETE CASCADE,
    pages   INTEGER NOT NULL DEFAULT 0,
    bytes   INTEGER NOT NULL DEFAULT 0
);
-- @sqlite
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
-- @postgresql
CREATE FUNCTION wiki_totals_new_wiki() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO wiki_totals (wiki_id) VALUES (NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER wiki_totals_new_wiki AFTER INSERT ON wikis FOR EACH ROW EXECUTE FUNCTION wiki_totals_new_wiki();
CREATE FUNCTION wiki_totals_page_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE wiki_totals SET pages = pages + 1, bytes = bytes + NEW.size WHERE wiki_id = NEW.wiki_id;
    RETURN NULL;
END $$;
CREATE TRIGGER wiki_totals_page_insert AFTER INSERT ON pages FOR EACH ROW WHEN (NEW.deleted_at IS NULL)
    EXECUTE FUNCTION wiki_totals_page_insert();
-- A wiki's own deletion cascades to its pages after the wiki row is gone: then its counters are
-- left alone (PostgreSQL checks the foreign key of a row updated twice in one transaction).
CREATE FUNCTION wiki_totals_page_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE wiki_totals SET pages = pages - 1,
        bytes = bytes - OLD.size - (SELECT coalesce(sum(size), 0) FROM attachments WHERE page_id = OLD.id)
    WHERE wiki_id = OLD.wiki_id AND EXISTS (SELECT 1 FROM wikis WHERE id = OLD.wiki_id);
    RETURN OLD;
END $$;
CREATE TRIGGER wiki_totals_page_delete BEFORE DELETE ON pages FOR EACH ROW WHEN (OLD.deleted_at IS NULL)
    EXECUTE FUNCTION wiki_totals_page_delete();
CREATE FUNCTION wiki_totals_page_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    became_live INTEGER := (NEW.deleted_at IS NULL)::int - (OLD.deleted_at IS NULL)::int;
BEGIN
    UPDATE wiki_totals SET pages = pages + became_live,
        bytes = bytes + CASE WHEN NEW.deleted_at IS NULL THEN NEW.size ELSE 0 END
            - CASE WHEN OLD.deleted_at IS NULL THEN OLD.size ELSE 0 END
            + became_live * (SELECT coalesce(sum(size), 0) FROM attachments WHERE page_id = NEW.id)
    WHERE wiki_id = NEW.wiki_id;
    RETURN NULL;
END $$;
CREATE TRIGGER wiki_totals_page_update AFTER UPDATE OF size, deleted_at ON pages FOR EACH ROW
    EXECUTE FUNCTION wiki_totals_page_update();
CREATE FUNCTION wiki_totals_attachment_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE wiki_totals SET bytes = bytes - OLD.size
        WHERE wiki_id = (SELECT wiki_id FROM pages WHERE id = OLD.page_id AND deleted_at IS NULL);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE wiki_totals SET bytes = bytes + NEW.size
        WHERE wiki_id = (SELECT wiki_id FROM pages WHERE id = NEW.page_id AND deleted_at IS NULL);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER wiki_totals_attachment_change AFTER INSERT OR DELETE OR UPDATE OF size, page_id ON attachments
    FOR EACH ROW EXECUTE FUNCTION wiki_totals_attachment_change();
-- @both

-- Full-text index of live pages, kept in step by triggers inside the writing transaction.
-- SQLite: FTS5 with the live_pages view as its external content (so snippets read the text from
-- pages, and FTS5's integrity check holds).
-- @sqlite
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
-- @postgresql
-- PostgreSQL: each live page's tsvector, words split at punctuation as FTS5's unicode61 splits
-- them (the default parser would keep `a/b` or `x.org` whole), not stemmed ('simple'); path,
-- title and text weighted A, B and D (search_pages ranks them as bm25 does on SQLite).
-- Ranking reads the tsvector of every match: kept in the row (compressed) rather than TOASTed
-- out of line, which made ranking thousands of matches ~3x slower.
-- wiki_id is the page's (it never changes), so ranking filters without reading pages.
CREATE TABLE pages_fts (
    page_id  BIGINT PRIMARY KEY REFERENCES pages(id) ON DELETE CASCADE,
    wiki_id  BIGINT NOT NULL,
    document TSVECTOR NOT NULL
) WITH (toast_tuple_target = 8160);
ALTER TABLE pages_fts ALTER COLUMN document SET STORAGE MAIN;
CREATE INDEX pages_fts_document ON pages_fts USING gin (document);
CREATE FUNCTION pages_fts_words(body TEXT) RETURNS tsvector LANGUAGE sql IMMUTABLE AS $$
    SELECT to_tsvector('simple', regexp_replace(body, '[[:punct:]]+', ' ', 'g'))
$$;
CREATE FUNCTION pages_fts_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.deleted_at IS NOT NULL THEN
        DELETE FROM pages_fts WHERE page_id = NEW.id;
    ELSIF TG_OP = 'INSERT' OR OLD.deleted_at IS NOT NULL OR NEW.path IS DISTINCT FROM OLD.path
            OR NEW.title IS DISTINCT FROM OLD.title OR NEW.content IS DISTINCT FROM OLD.content THEN
        INSERT INTO pages_fts (page_id, wiki_id, document)
        VALUES (NEW.id, NEW.wiki_id, setweight(pages_fts_words(NEW.path), 'A') || setweight(pages_fts_words(NEW.title), 'B')
                        || setweight(pages_fts_words(NEW.content), 'D'))
        ON CONFLICT (page_id) DO UPDATE SET document = excluded.document;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER pages_fts_sync AFTER INSERT OR UPDATE OF path, title, content, deleted_at ON pages FOR EACH ROW
    EXECUTE FUNCTION pages_fts_sync();
-- @both

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

-- Revisions that came in with an imported robotwtf export (migration 7): they keep their authors,
-- messages and times as recorded there; this row marks them, with the id they had in the export
-- and the author's name as the exporting instance knew it (shown when they are not a user here).
CREATE TABLE imported_revisions (
    revision_id TEXT PRIMARY KEY REFERENCES revisions(id) ON DELETE CASCADE,
    original_id TEXT NOT NULL,
    author_name TEXT NOT NULL DEFAULT '',
    imported_at INTEGER NOT NULL
) WITHOUT ROWID;

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

-- Semantic search (robotwtf_semantic). One row per page the index follows. Every change of the
-- page (robotwtf_store._record, in the change's own transaction) makes it 'stale', or 'gone' for
-- a deletion (its chunks are dropped then too); the indexer makes it 'ready' once it has cut the
-- page into chunks again. `stamp` becomes one more than any stamp of the wiki whenever the row
-- or the page's chunks change, so each process's in-memory index of a wiki fetches only what
-- changed since it last looked. A new instance has no pages: nothing to seed.
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
