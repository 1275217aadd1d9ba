"""What only PostgreSQL has (`make test-postgres`; the storage, browser, OAuth and MCP suites run on
it as well): one schema on both engines, `check`, passwords never shown, backups and `migrate-to`
across engines, and several robotwtf servers on one database acting as one instance."""

from __future__ import annotations

import shutil
import signal
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import requests

import reliability_load as load_kit
import robotwtf_store as store
from conftest import CLI, DATABASES, ROOT, base_env, start_server
from mcp_client import ALICE, Endpoint, text
from oauth_flow import CLAUDE_REGISTRATION, Flow, World, query_of, registered

if DATABASES is None:
    pytest.fail("tests/postgres needs a PostgreSQL cluster: run `make test-postgres` (it starts one).",
                pytrace=False)

# schema.sql as it was at the first version a PostgreSQL database can have
FIRST_SCHEMA = ROOT / f"tests/data/schema_v{store.FIRST_POSTGRES_VERSION}.sql"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
QUOTAS = store.Quotas(pages_per_wiki=100, bytes_per_wiki=50 * 1024 * 1024, wikis_per_user=3)


def sqlite_cli(data: Path) -> CLI:
    """The CLI of an instance on SQLite, in a run where every other instance is on PostgreSQL."""
    env = base_env(data)
    env.pop("ROBOTWTF_DATABASE_URL")
    return CLI(data, env)


def server_url_parts() -> urllib.parse.SplitResult:
    return urllib.parse.urlsplit(DATABASES.server_url)


# --- one schema ---------------------------------------------------------------------------------------

def sqlite_shape(db) -> dict:
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                                       "'sqlite_%' AND name NOT LIKE 'pages_fts%' ORDER BY name")]
    columns = {t: [(c["name"], bool(c["notnull"] or c["pk"]), c["dflt_value"] is not None)  # a key is never NULL
                   for c in db.execute(f'PRAGMA table_info("{t}")')] for t in tables}
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    return {"columns": columns, "indexes": indexes}


def postgres_shape(db) -> dict:
    rows = db.execute("SELECT table_name, column_name, is_nullable, column_default "
                      "FROM information_schema.columns WHERE table_schema = current_schema() "
                      "AND table_name NOT LIKE 'pages_fts%' ORDER BY table_name, ordinal_position").fetchall()
    columns: dict = {}
    for table, column, nullable, default in rows:
        columns.setdefault(table, []).append((column, nullable == "NO", default is not None))
    indexes = {r[0] for r in db.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                                        "AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key' "
                                        "AND tablename NOT LIKE 'pages_fts%'")}
    return {"columns": columns, "indexes": indexes}


def test_schema_is_the_same_on_both_engines(tmp_path):
    """Tables, columns (in order, with NOT NULL and defaults) and indexes of a new database are the
    same on both engines: schema.sql is one file for both, and nothing drifts."""
    sqlite_db = store.open_database(tmp_path / "robotwtf.db", create=True)
    postgres_db = store.open_database(DATABASES.create(), create=True)
    try:
        assert postgres_shape(postgres_db) == sqlite_shape(sqlite_db)
        for db in (sqlite_db, postgres_db):
            assert db.execute("SELECT max(version) FROM schema_version").fetchone()[0] == store.SCHEMA_VERSION
    finally:
        sqlite_db.close()
        postgres_db.close()


def full_postgres_schema(db) -> dict:
    """Everything a migration could change: columns with types, indexes, triggers, functions."""
    return {
        "columns": db.execute("SELECT table_name, column_name, data_type, is_nullable, column_default, collation_name "
                              "FROM information_schema.columns WHERE table_schema = current_schema() "
                              "ORDER BY 1, ordinal_position").fetchall(),
        "indexes": db.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                              "ORDER BY 1").fetchall(),
        "triggers": db.execute("SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal "
                               "ORDER BY 1").fetchall(),
        "functions": db.execute("SELECT proname, prosrc FROM pg_proc WHERE pronamespace = current_schema()::regnamespace "
                                "ORDER BY 1").fetchall(),
    }


def test_later_migrations_upgrade_the_first_postgresql_schema_to_the_new_one():
    """A PostgreSQL database made at FIRST_POSTGRES_VERSION (from schema.sql as it was then) and
    upgraded by every later migration equals a new one."""
    old_url = DATABASES.create()
    old = store.db_connect(old_url)
    store._run_script(old, FIRST_SCHEMA.read_text(), store.FIRST_POSTGRES_VERSION)
    old.close()
    upgraded = store.open_database(old_url, create=False)
    fresh = store.open_database(DATABASES.create(), create=True)
    try:
        assert full_postgres_schema(upgraded) == full_postgres_schema(fresh)
        versions = [r[0] for r in upgraded.execute("SELECT version FROM schema_version ORDER BY version")]
        assert versions == [store.FIRST_POSTGRES_VERSION, *(n for n, _ in store.MIGRATIONS
                                                            if n > store.FIRST_POSTGRES_VERSION)]
    finally:
        upgraded.close()
        fresh.close()


def test_placeholders_are_translated_and_literals_left_alone():
    assert store.postgres_sql("SELECT '?', \"a?\", x::text FROM t WHERE a = ? AND b = :name -- ?") == \
        "SELECT '?', \"a?\", x::text FROM t WHERE a = %s AND b = %(name)s -- ?"
    assert store.postgres_sql("SELECT 'it''s 100%' WHERE a LIKE ?") == "SELECT 'it''s 100%%' WHERE a LIKE %s"


def test_rows_integrity_errors_and_booleans_behave_as_on_sqlite():
    db = store.open_database(DATABASES.create(), create=True)
    try:
        store.add_user(db, ALICE, "alice.test", "alice", admin=True)
        row = db.execute("SELECT did, username, is_admin FROM users").fetchone()
        assert (row[0], row["username"], row["is_admin"], dict(row)["did"], tuple(row)[1]) == \
            (ALICE, "alice", 1, ALICE, "alice")
        with pytest.raises(store.IntegrityError):
            db.execute("INSERT INTO users (did, username, created_at) VALUES (?, ?, ?)", (ALICE, "again", 0))
        assert db.execute("SELECT sum(created_at) - sum(created_at) FROM users").fetchone()[0] == 0  # int, not Decimal
        assert db.execute("SELECT count(*) FROM users WHERE is_admin = ?", (True,)).fetchone()[0] == 1
    finally:
        db.close()


# --- check and passwords -------------------------------------------------------------------------------

def test_check_reports_the_server_version_and_schema_state(cli):
    cli("init")
    out = cli("check").stdout
    db = store.db_connect(cli.env["ROBOTWTF_DATABASE_URL"])
    version = db.execute("SHOW server_version").fetchone()[0].split()[0]
    db.close()
    assert f"PostgreSQL {version} at postgresql://{server_url_parts().username}:***@" in out, out
    assert f"schema version {store.SCHEMA_VERSION} (current)" in out
    assert server_url_parts().password not in out


def test_a_failed_connection_never_shows_the_password(tmp_path):
    parts = server_url_parts()
    wrong = urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:Wr0ng-s3cret@{parts.hostname}:"
                                                           f"{parts.port}", path="/postgres"))
    cli = CLI(tmp_path / "data", base_env(tmp_path / "data", ROBOTWTF_DATABASE_URL=wrong))
    result = cli("init", check=False)
    assert result.returncode == 1
    assert "password authentication failed" in result.stderr and "Cannot connect to the database" in result.stderr
    assert "Wr0ng-s3cret" not in result.stderr + result.stdout
    assert f"postgresql://{parts.username}:***@" in result.stderr
    malformed = cli("--database", "postgresql://u:Wr0ng-s3cret@localhost", "check", check=False)
    assert malformed.returncode == 1 and "Wr0ng-s3cret" not in malformed.stderr
    assert "--database=(value not shown: it may hold a password): must be a postgresql://" in malformed.stderr


def test_the_password_may_come_from_pgpassword_or_a_pgpass_file(tmp_path):
    parts = server_url_parts()
    database = urllib.parse.urlsplit(DATABASES.create()).path
    bare = f"postgresql://{parts.username}@{parts.hostname}:{parts.port}{database}"
    cli = CLI(tmp_path / "data", base_env(tmp_path / "data", ROBOTWTF_DATABASE_URL=bare, PGPASSWORD=parts.password))
    cli("init")
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"{parts.hostname}:{parts.port}:*:{parts.username}:{parts.password}\n")
    pgpass.chmod(0o600)
    env = base_env(tmp_path / "data", ROBOTWTF_DATABASE_URL=bare, PGPASSFILE=str(pgpass))
    env.pop("PGPASSWORD", None)
    assert "schema version" in CLI(tmp_path / "data", env)("check").stdout


def test_the_server_log_names_the_database_without_its_password(server):
    assert f"database: postgresql://{server_url_parts().username}:***@" in server.log()
    assert server_url_parts().password not in server.log()


# --- backups and moving ----------------------------------------------------------------------------------

def fill(db) -> dict:
    """A small instance: a user, a wiki with history, a deleted page, an attachment and a token."""
    store.add_user(db, ALICE, "alice.test", "alice")
    wiki = store.create_wiki(db, "notes", ALICE, "Notes", quotas=QUOTAS, via="cli")
    author = store.Author(ALICE, "cli")
    first = store.write_page(db, wiki["id"], "Garden", "Tomatoes in [[Beds]]", author=author, quotas=QUOTAS)
    store.write_page(db, wiki["id"], "Garden", "Tomatoes and beans in [[Beds]]", first.revision, author=author,
                     quotas=QUOTAS)
    store.write_page(db, wiki["id"], "Old", "to be deleted", author=author, quotas=QUOTAS)
    store.delete_page(db, wiki["id"], "Old", author=author)
    store.put_attachment(db, wiki["id"], "Garden", "plan.png", PNG, author=author, quotas=QUOTAS)
    token = store.create_personal_token(db, ALICE, "notes", frozenset(store.SCOPES), "laptop")
    return {"wiki_id": wiki["id"], "token": token}


def contents(db) -> dict:
    wiki = store.get_wiki(db, "notes")
    return {
        "pages": [(p.path, p.revision, p.words) for p in store.list_pages(db, wiki["id"])],
        "deleted": [p.path for p in store.deleted_pages(db, wiki["id"])],
        "history": [(r.id, r.kind, r.content) for r in store.page_history(db, wiki["id"], "Garden")],
        "attachment": store.get_attachment(db, wiki["id"], "Garden", "plan.png").data,
        "search": [h.path for h in store.search_pages(db, wiki["id"], "beans")],
        "usage": store.wiki_usage(db, wiki["id"]),
        "links": store.page_links(db, wiki["id"], "Garden").links_to,
        "users": [tuple(u) for u in store.list_users(db)],
        "tokens": [(t["name"], t["scope"]) for t in store.list_personal_tokens(db, ALICE)],
    }


def test_backup_on_postgresql_restores_into_either_engine(cli, tmp_path):
    cli("init")
    db = store.open_database(cli.env["ROBOTWTF_DATABASE_URL"], create=False)
    made = fill(db)
    before = contents(db)
    db.close()
    archive = tmp_path / "backup.tar.gz"
    said = cli("backup", str(archive)).stdout
    assert archive.stat().st_mode & 0o077 == 0
    url = urllib.parse.urlsplit(cli.env["ROBOTWTF_DATABASE_URL"])
    assert f"{url.hostname}:{url.port}" in said and "***" in said and url.password not in said, said

    on_sqlite = sqlite_cli(tmp_path / "restored-sqlite")
    on_sqlite("restore", str(archive))
    restored = store.open_database(on_sqlite.data / "robotwtf.db", create=False)
    assert contents(restored) == before
    assert restored.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    restored.close()
    assert "schema version" in on_sqlite("check").stdout

    on_postgres = CLI(tmp_path / "restored-pg", base_env(tmp_path / "restored-pg"))
    said = on_postgres("restore", str(archive)).stdout
    assert "postgresql://" in said and str(on_postgres.data) in said, said
    restored = store.open_database(on_postgres.env["ROBOTWTF_DATABASE_URL"], create=False)
    assert contents(restored) == before
    restored.close()
    server = start_server(on_postgres.data)
    try:
        read = Endpoint(f"{server.url}/w/notes/mcp", made["token"]).ok("read_note", path="Garden")
        assert "Tomatoes and beans" in text(read)
        written = Endpoint(f"{server.url}/w/notes/mcp", made["token"]).ok("write_note", path="New", content="x")
        assert written["structuredContent"]["revision"]  # new ids continue after the restored ones
    finally:
        server.stop()
    again = on_postgres("restore", str(archive), check=False)
    assert again.returncode == 1 and "is not empty" in again.stderr


def test_migrate_to_moves_an_sqlite_instance_to_postgresql(tmp_path):
    old = sqlite_cli(tmp_path / "data")
    old("init")
    db = store.open_database(old.data / "robotwtf.db", create=False)
    made = fill(db)
    before = contents(db)
    db.close()
    target = DATABASES.create()
    out = old("migrate-to", target).stdout
    assert "copied" in out and "1 users, 1 wikis, 5 pages" in out and server_url_parts().password not in out
    assert "es256-key.pem and rs256-key.pem" in out
    moved = store.open_database(target, create=False)
    assert contents(moved) == before
    moved.close()

    refused = old("migrate-to", target, check=False)
    assert refused.returncode == 1 and "already holds a robotwtf instance" in refused.stderr
    server = start_server(old.data, env_extra={"ROBOTWTF_DATABASE_URL": target})
    try:
        endpoint = Endpoint(f"{server.url}/w/notes/mcp", made["token"])
        assert "Tomatoes and beans" in text(endpoint.ok("read_note", path="Garden"))
        assert endpoint.ok("write_note", path="Beds", content="raised beds")["structuredContent"]["revision"]
        assert [h["path"] for h in endpoint.ok("search_notes", query="raised")["structuredContent"]["results"]] \
            == ["Beds"]
    finally:
        server.stop()


def test_a_server_reconnects_after_its_database_connections_are_ended(server):
    """A PostgreSQL restart or failover ends every connection: the next requests open new ones."""
    server.cli("user", "add", ALICE, "--username", "alice")
    server.cli("wiki", "create", "notes", "--owner", "alice")
    token = server.cli("token", "create", "notes", "--user", "alice").stdout.strip()
    endpoint = Endpoint(f"{server.url}/w/notes/mcp", token)
    for _ in range(3):
        assert endpoint.ok("read_note", path="Home")
    admin = store.db_connect(server.env["ROBOTWTF_DATABASE_URL"])
    ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = "
                          "current_database() AND pid != pg_backend_pid()").fetchone()[0]
    admin.close()
    assert ended >= 1
    time.sleep(0.2)  # the server's side of each connection sees its end
    for _ in range(10):
        assert requests.get(server.url + "/healthz").status_code == 200
        assert "Home" in text(endpoint.ok("read_note", path="Home"))


# --- several servers on one database --------------------------------------------------------------------

@pytest.fixture
def pair(tmp_path):
    """Servers A and B on one PostgreSQL database with the same keys and public URL (A's), as two
    machines behind a load balancer; B is reached directly, with the public Host."""
    database = DATABASES.for_folder(tmp_path / "a")
    DATABASES.by_folder[(tmp_path / "b").absolute()] = database
    a = start_server(tmp_path / "a", env_extra={"ROBOTWTF_DATABASE_URL": database, **load_kit.UNLIMITED})
    (tmp_path / "b").mkdir(mode=0o700)
    for name in store.KEY_FILES:
        shutil.copy2(a.data / name, tmp_path / "b" / name)
    b = start_server(tmp_path / "b", env_extra={"ROBOTWTF_DATABASE_URL": database, **load_kit.UNLIMITED},
                     public_url=a.url)
    try:
        yield a, b
    finally:
        for server in (a, b):
            server.stop()


def test_a_session_from_one_server_works_on_the_other(pair):
    a, b = pair
    world = World(a)
    did = world.person()
    browser = world.browser(did)  # signed in on A
    browser.headers["Host"] = urllib.parse.urlsplit(a.url).netloc  # as the load balancer passes it
    account = browser.get(b.url + "/account", allow_redirects=False)
    assert account.status_code == 200 and did in account.text
    signed_out = requests.get(b.url + "/account", headers={"Host": browser.headers["Host"]}, allow_redirects=False)
    assert signed_out.status_code == 303
    world.db.close()


class Via:
    """A server as the OAuth flow reaches it (Flow only reads `.url`)."""

    def __init__(self, server):
        self.url = server.url


def test_an_oauth_flow_alternating_between_servers_completes_and_a_revocation_holds_on_both(pair):
    a, b = pair
    world = World(a)
    owner = world.person()
    slug = world.wiki(owner)
    client = registered(a, **CLAUDE_REGISTRATION)                    # register on A
    browser = world.browser(owner)
    browser.headers["Host"] = urllib.parse.urlsplit(a.url).netloc
    flow = Flow(Via(a), browser, client, CLAUDE_REGISTRATION["redirect_uris"][0], slug, owner)
    resource = f"{a.url}/w/{slug}/mcp"                                # the public URL's
    flow.server = Via(b)
    page = flow.consent_page(flow.authorize_url(resource=resource))     # consent page from B
    assert page.status_code == 200, page.text
    flow.server = Via(a)
    decided = flow.decide(url=flow.authorize_url(resource=resource))    # decision posted to A
    assert decided.status_code == 303, decided.text
    code = query_of(decided.headers["Location"])["code"][0]
    flow.server = Via(b)
    issued = flow.token(code, resource=resource)                        # code redeemed on B
    assert issued.status_code == 200, issued.text
    tokens = issued.json()
    flow.server = Via(a)
    refreshed = flow.refresh(tokens["refresh_token"])                   # refreshed on A
    assert refreshed.status_code == 200, refreshed.text
    access = refreshed.json()["access_token"]
    flow.server = Via(b)
    assert flow.refresh(refreshed.json()["refresh_token"]).status_code == 200  # its successor, on B
    world.db.close()

    # A fresh grant, used on B, revoked on A: B refuses its very next request.
    world = World(a)
    flow = world.flow(owner=owner, slug=slug, client=client)
    tokens = flow.tokens(resource=f"{a.url}/w/{slug}/mcp")
    on_b = Endpoint(f"{b.url}/w/{slug}/mcp", tokens["access_token"])
    assert on_b.legacy("tools/list").status_code == 200
    grant_id = world.sql("SELECT id FROM oauth_grants ORDER BY id DESC LIMIT 1")[0][0]
    store.revoke_grant(world.db, grant_id)
    assert on_b.legacy("tools/list").status_code == 401
    assert Endpoint(f"{a.url}/w/{slug}/mcp", tokens["access_token"]).legacy("tools/list").status_code == 401
    assert Endpoint(f"{b.url}/w/{slug}/mcp", access).legacy("tools/list").status_code == 200  # the first grant lives
    world.db.close()


RACE_PAGES = tuple(f"Race/{n}" for n in range(4))


def split_load(servers, site: load_kit.Site, seed: int, creates: tuple[str, ...] = (),
               may_die=()) -> list[load_kit.Load]:
    """start_load's writers, every other one on the next server; one Load per server."""
    stop = threading.Event()
    loads = []
    for n, server in enumerate(servers):
        writers = [load_kit.Writer(f"{server.url}/w/{site.slug}/mcp", token, i, site.pages, stop, seed * 1000 + i,
                                   creates, server in may_die)
                   for i, token in enumerate(site.tokens) if i % len(servers) == n]
        loads.append(load_kit.Load(writers, stop, time.monotonic()))
    for load in loads:
        for writer in load.writers:
            writer.start()
    return loads


def test_racing_writers_on_two_servers_lose_nothing(pair):
    """16 MCP writers, half on A and half on B, racing on four pages: every acknowledged write is
    in the history exactly as acknowledged, every refusal is a conflict, no update is lost."""
    a, b = pair
    site = load_kit.prepare_site(a.data, "race", RACE_PAGES, 16)
    runs = split_load((a, b), site, seed=1, creates=("Race/new-a", "Race/new-b"))
    for run in runs:
        run.wait_for_acks(15)
    for run in runs:
        run.finish()
    acked = [w for run in runs for w in run.acked]
    assert not [e for run in runs for e in run.errors]
    assert any(run.refused for run in runs), "no race happened"
    history = load_kit.verify_history(site, acked)
    assert history.acknowledged == len(acked)


def test_kill_9_of_one_server_under_write_load_leaves_the_other_serving(pair):
    a, b = pair
    site = load_kit.prepare_site(a.data, "crash", RACE_PAGES, 8)
    run_a, run_b = split_load((a, b), site, seed=3, may_die=(a,))
    run_a.wait_for_acks(10)
    a.process.send_signal(signal.SIGKILL)
    a.process.wait(10)
    acked_before = len(run_b.acked)
    run_b.wait_for_acks(acked_before + 30)
    run_a.finish()
    run_b.finish()
    assert not run_b.errors
    history = load_kit.verify_history(site, run_a.acked + run_b.acked, run_a.unknown)
    assert history.acknowledged == len(run_a.acked) + len(run_b.acked)
    assert requests.get(b.url + "/healthz").status_code == 200


def test_rate_limits_count_across_servers(tmp_path):
    """A limit of 10 a minute admits 10 across both servers: each reserves its permits in the
    shared database before spending them (a batch of one at this limit), so none is over."""
    database = DATABASES.for_folder(tmp_path / "a")
    DATABASES.by_folder[(tmp_path / "b").absolute()] = database
    limits = {"ROBOTWTF_DATABASE_URL": database, "ROBOTWTF_MCP_PER_MINUTE": "10"}
    a = start_server(tmp_path / "a", env_extra=limits)
    (tmp_path / "b").mkdir(mode=0o700)
    for name in store.KEY_FILES:
        shutil.copy2(a.data / name, tmp_path / "b" / name)
    b = start_server(tmp_path / "b", env_extra=limits, public_url=a.url)
    try:
        site = load_kit.prepare_site(a.data, "limits", (), 1)
        admitted = 0
        for server in (a, b) * 10:
            status = Endpoint(f"{server.url}/w/limits/mcp", site.tokens[0]).legacy("tools/list").status_code
            admitted += status == 200
        assert admitted == 10
    finally:
        a.stop()
        b.stop()
