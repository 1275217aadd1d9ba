"""The skeleton: configuration, data folder, keys, schema upgrades, the CLI and the HTTP edge."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import requests

from conftest import CLI, ENTRY, ROOT, base_env, follow_login_link, free_port, start_server

ALICE = "did:plc:aliceaaaaaaaaaaaaaaaaaaa"
BOB = "did:plc:bobbbbbbbbbbbbbbbbbbbbbb"


def schema_of(path) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return sorted(db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master "
                                 "WHERE name NOT LIKE 'sqlite_%'").fetchall())
    finally:
        db.close()


# --- data folder and keys -----------------------------------------------------------------------

def test_init_creates_private_folder_database_and_keys(cli):
    result = cli("init")
    data = cli.data
    assert data.stat().st_mode & 0o777 == 0o700
    for name in ("es256-key.pem", "rs256-key.pem", "robotwtf.db"):
        assert (data / name).stat().st_mode & 0o777 == 0o600, name
    assert re.search(r"schema version \d+, ES256 key \S+, RS256 key \S+", result.stdout)
    assert cli("init").stdout == result.stdout  # idempotent: same keys, same kids


def test_second_start_reuses_keys_and_data(tmp_path):
    data = tmp_path / "data"
    first = start_server(data)
    jwks_before = requests.get(first.url + "/.well-known/jwks.json")
    first.cli("user", "add", ALICE, "--username", "alice")
    assert first.stop() == 0
    second = start_server(data)
    try:
        assert "alice" in second.cli("user", "list").stdout
        pem = (data / "rs256-key.pem").read_bytes()
        assert pem == (data / "rs256-key.pem").read_bytes()
        init = second.cli("init").stdout
        assert init == first.cli("init").stdout
        assert jwks_before.status_code in (200, 404)
    finally:
        second.stop()


def test_refuses_group_readable_key(cli):
    cli("init")
    (cli.data / "rs256-key.pem").chmod(0o640)
    result = cli("check", check=False)
    assert result.returncode == 1
    assert "rs256-key.pem is readable by other users; run `chmod 600" in result.stderr


def test_refuses_damaged_key(cli):
    cli("init")
    key = cli.data / "rs256-key.pem"
    key.write_bytes(key.read_bytes()[:300])  # truncated: found at startup, without parsing the key
    result = cli("serve", check=False)
    assert result.returncode == 1
    assert "rs256-key.pem is not a usable private key" in result.stderr
    assert "init --rotate-keys" in result.stderr


@pytest.mark.parametrize("swapped, other", [("es256-key.pem", "rs256-key.pem"), ("rs256-key.pem", "es256-key.pem")])
def test_refuses_a_key_swapped_for_the_other_kind_at_start(cli, swapped, other):
    cli("init")
    (cli.data / swapped).write_bytes((cli.data / other).read_bytes())
    result = cli("serve", check=False)
    assert result.returncode == 1
    assert f"{swapped} is not a usable private key" in result.stderr


def test_check_parses_the_keys(cli):
    cli("init")
    es256, rs256 = cli.data / "es256-key.pem", cli.data / "rs256-key.pem"
    es256_pem = es256.read_bytes()
    es256.write_bytes(rs256.read_bytes())  # a whole PEM key, but of the wrong type
    result = cli("check", check=False)
    assert result.returncode == 1
    assert "es256-key.pem is not a usable private key" in result.stderr
    es256.write_bytes(es256_pem)
    assert cli("check").returncode == 0


# Imported by the first request that needs them, never by starting the server: together they took
# most of a start's ~0.6 s (issue 7 asks for 150 ms). The probe stops where waitress would listen.
DEFERRED_MODULES = ("authlib", "cryptography", "dns", "joserfc", "markdown_it", "regex", "requests", "urllib3",
                    "robotwtf_atproto", "robotwtf_as", "psycopg")  # psycopg: only with a PostgreSQL --database
STARTUP_PROBE = """\
import sys, robotwtf, waitress.server

def listen(*args, **kwargs):
    loaded = {name.split(".")[0] for name in sys.modules}
    print(" ".join(sorted(loaded & set(sys.argv[1:]))))
    raise SystemExit(0)

waitress.server.create_server = listen
robotwtf.main(["serve", "--workers", "1"])  # what a worker process imports; the supervisor imports less
"""


def test_starting_the_server_defers_the_heavy_imports(cli):
    cli("init")
    result = subprocess.run([sys.executable, "-c", STARTUP_PROBE, *DEFERRED_MODULES], env=cli.env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


def test_refuses_missing_key_when_database_exists(cli):
    cli("init")
    (cli.data / "es256-key.pem").unlink()
    result = cli("serve", check=False)
    assert result.returncode == 1
    assert "es256-key.pem is missing but the database exists" in result.stderr
    assert "init --rotate-keys" in result.stderr
    assert not (cli.data / "es256-key.pem").exists()
    rotated = cli("init", "--rotate-keys")
    assert "ES256 key" in rotated.stdout and (cli.data / "es256-key.pem").exists()


def test_refuses_corrupt_database_without_touching_it(cli):
    cli.data.mkdir(mode=0o700)
    junk = b"this is not a database" * 100
    (cli.data / "robotwtf.db").write_bytes(junk)
    result = cli("serve", check=False)
    assert result.returncode == 1
    assert "robotwtf.db is not an SQLite database" in result.stderr
    assert (cli.data / "robotwtf.db").read_bytes() == junk


def test_refuses_foreign_sqlite_database(cli):
    cli.data.mkdir(mode=0o700)
    foreign = sqlite3.connect(cli.data / "robotwtf.db")
    foreign.execute("CREATE TABLE notes (x)")
    foreign.commit()
    foreign.close()
    before = (cli.data / "robotwtf.db").read_bytes()
    result = cli("serve", check=False)
    assert result.returncode == 1
    assert "is an SQLite database that robotwtf did not create" in result.stderr
    assert (cli.data / "robotwtf.db").read_bytes() == before


def test_refuses_unwritable_data_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cli = CLI(blocker / "data", base_env(blocker / "data"))
    result = cli("serve", check=False)
    assert result.returncode == 1
    assert "Cannot create the data folder" in result.stderr
    proc_cli = CLI(tmp_path, base_env(tmp_path))
    result = proc_cli("--data", "/proc/1", "serve", check=False)
    assert result.returncode == 1
    assert "is not writable" in result.stderr


def test_upgrades_a_version_1_database_to_the_current_schema(tmp_path, cli):
    cli.data.mkdir(mode=0o700)
    old = sqlite3.connect(cli.data / "robotwtf.db")
    old.executescript((ROOT / "tests/data/schema_v1.sql").read_text())
    old.execute("INSERT INTO schema_version VALUES (1, 0)")
    old.execute("INSERT INTO users (did, username, created_at) VALUES (?, 'alice', 0)", (ALICE,))
    old.commit()
    old.close()
    fresh = CLI(tmp_path / "fresh", base_env(tmp_path / "fresh"))
    fresh("init")
    cli("init", "--rotate-keys")  # the old folder has no keys: make them on purpose
    assert schema_of(cli.data / "robotwtf.db") == schema_of(fresh.data / "robotwtf.db")
    assert "alice" in cli("user", "list").stdout
    db = sqlite3.connect(cli.data / "robotwtf.db")
    versions = [row[0] for row in db.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions[0] == 1 and versions == sorted(versions)
    assert versions[-1] == db.execute("SELECT max(version) FROM schema_version").fetchone()[0]


# --- configuration ----------------------------------------------------------------------------

@pytest.mark.parametrize("url, message", [
    ("http://wiki.example.org", "Serve robotwtf behind a reverse proxy that terminates TLS"),
    ("ftp://x.org", "must be an absolute http:// or https:// URL"),
    ("https://x.org/sub", "must not have a path"),
    ("https://user@x.org", "must not carry a user"),
])
def test_bad_public_url_refused_with_advice(cli, url, message):
    result = cli("--public-url", url, "check", check=False)
    assert result.returncode == 1
    assert message in result.stderr


def test_flag_beats_environment_beats_default(cli):
    cli("init")
    env_cli = CLI(cli.data, dict(cli.env, ROBOTWTF_SIGNUP="open"))
    assert "signup open" in env_cli("check").stdout
    assert "signup closed" in env_cli("--signup", "closed", "check").stdout
    assert "signup invite" in cli("check").stdout
    bad = env_cli("--signup", "sometimes", "check", check=False)
    assert bad.returncode == 1 and "--signup='sometimes': must be one of open, invite, closed" in bad.stderr
    bad_env = CLI(cli.data, dict(cli.env, ROBOTWTF_PORT="99999"))("check", check=False)
    assert bad_env.returncode == 1 and "ROBOTWTF_PORT='99999': must be between 1 and 65535" in bad_env.stderr


def test_unknown_command_and_flag_print_usage_and_exit_2(cli):
    for args in (["frobnicate"], ["serve", "--frobnicate"], ["user"]):
        result = cli(*args, check=False)
        assert result.returncode == 2, args
        assert result.stderr.startswith("usage: robotwtf")


def test_port_in_use_is_one_clear_line(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        env = base_env(tmp_path / "data", ROBOTWTF_PORT=str(port))
        result = subprocess.run([*ENTRY], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("robotwtf:")]
    assert lines == [f"robotwtf: Cannot listen on 127.0.0.1:{port}: Address already in use "
                     "(another program uses this port; choose another with --port)."]


# --- CLI admin commands ------------------------------------------------------------------------

def test_user_and_wiki_commands(cli):
    cli("init")
    assert "as admin" in cli("user", "add", ALICE, "--handle", "@Alice.Test", "--username", "alice").stdout
    assert "as admin" not in cli("user", "add", BOB).stdout
    lines = cli("user", "list").stdout.splitlines()
    assert f"alice\talice.test\t{ALICE}\tadmin" in lines
    assert any(line.endswith(f"\t-\t{BOB}\tmember") for line in lines)
    duplicate = cli("user", "add", ALICE, check=False)
    assert duplicate.returncode == 1 and "is already a user" in duplicate.stderr
    bad = cli("user", "add", "did:example:123", check=False)
    assert bad.returncode == 1 and "is not a did:plc or did:web identifier" in bad.stderr
    created = cli("wiki", "create", "notes", "--owner", "alice.test", "--title", "Notes")
    assert "/w/notes/" in created.stdout
    db = sqlite3.connect(cli.data / "robotwtf.db")
    pages = db.execute("SELECT pages.path, revisions.author_did, revisions.via FROM pages JOIN revisions "
                       "ON revisions.id = pages.revision_id ORDER BY pages.path").fetchall()
    db.close()
    assert pages == [("Agent Guide", ALICE, "cli"), ("Getting Started", ALICE, "cli"), ("Home", ALICE, "cli")]
    assert cli("wiki", "list").stdout.splitlines() == ["notes\talice\tprivate\tNotes"]
    for slug, message in [("ab", "3 to 30 characters"), ("-abc", "start or end with a hyphen"),
                          ("admin", "is reserved"), ("Abc", "lower case"), ("a_bc", "only letters")]:
        result = cli("wiki", "create", "--owner", "alice", "--", slug, check=False)
        assert result.returncode == 1 and message in result.stderr, slug
    taken = cli("wiki", "create", "notes", "--owner", "alice", check=False)
    assert taken.returncode == 1 and "is taken" in taken.stderr
    assert cli("wiki", "list").stdout.splitlines() == ["notes\talice\tprivate\tNotes"]
    missing = cli("login-link", "nobody", check=False)
    assert missing.returncode == 1 and "No user is known as 'nobody'" in missing.stderr


def test_admin_commands_need_an_instance(cli):
    result = cli("user", "list", check=False)
    assert result.returncode == 1 and "There is no robotwtf instance in" in result.stderr
    assert not cli.data.exists()


def test_invite_create_prints_an_invite_url(cli):
    cli("init")
    url = cli("invite", "create", "--uses", "3").stdout.strip()
    assert re.fullmatch(r"http://127\.0\.0\.1:8080/auth/login\?invite=[A-Za-z0-9_-]{40,}", url)
    assert cli("invite", "create", "--uses", "0", check=False).returncode == 1


# --- HTTP edge ------------------------------------------------------------------------------------

def test_healthz_and_security_headers(server):
    health = requests.get(server.url + "/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    page = requests.get(server.url + "/")
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"


def test_oversized_body_is_413(tmp_path):
    srv = start_server(tmp_path / "data", "--max-body-bytes", "1000")
    try:
        response = requests.post(srv.url + "/auth/logout", data=b"x" * 5000)
        assert response.status_code == 413
    finally:
        srv.stop()


def test_malformed_host_is_400_and_other_hosts_redirect_to_public_url(server):
    raw = socket.create_connection(("127.0.0.1", server.port))
    raw.sendall(b"GET / HTTP/1.1\r\nHost: bad host/x\r\nConnection: close\r\n\r\n")
    reply = b""
    while chunk := raw.recv(4096):
        reply += chunk
    raw.close()
    assert reply.startswith(b"HTTP/1.1 400")
    moved = requests.get(f"http://localhost:{server.port}/some/page?x=1", allow_redirects=False)
    assert moved.status_code == 302 and moved.headers["Location"] == server.url + "/some/page?x=1"
    machine = requests.get(f"http://localhost:{server.port}/healthz")
    assert machine.status_code == 200


def test_errors_never_show_tracebacks(server):
    for path in ("/nothing-here", "/auth/login-link?token=%00%ff", "/w/x/../../etc"):
        response = requests.get(server.url + path)
        assert response.status_code in (403, 404), path
        assert "Traceback" not in response.text
    json_error = requests.get(server.url + "/nothing", headers={"Accept": "application/json"})
    assert json_error.status_code == 404 and json_error.json()["error"] == "error"
    wrong_method = requests.put(server.url + "/healthz")
    assert wrong_method.status_code == 405 and "GET" in wrong_method.headers["Allow"]


def test_access_log_has_no_secrets(server):
    link = server.cli("user", "add", ALICE, "--username", "alice") and server.cli("login-link", "alice").stdout
    browser = requests.Session()
    follow_login_link(browser, link.strip())
    browser.get(server.url + "/", headers={"Authorization": "Bearer sekrit-token"})
    time.sleep(0.2)
    log = server.log()
    token = link.strip().split("token=")[1]
    cookie = next(iter(browser.cookies)).value
    assert "GET /auth/login-link 200" in log and "POST /auth/login-link 303" in log
    assert token not in log and cookie not in log and "sekrit-token" not in log
    assert re.search(r"GET / 200 \d+\.\dms", log)


def test_sigterm_and_sigint_exit_cleanly(tmp_path):
    for sig in (signal.SIGTERM, signal.SIGINT):
        srv = start_server(tmp_path / f"data-{sig}")
        assert srv.stop(sig) == 0


def test_trusted_proxy_headers_only_from_the_proxy(tmp_path):
    srv = start_server(tmp_path / "data", "--trusted-proxy", "127.0.0.1",
                       public_url="https://wiki.example.org")
    try:
        proxied = {"Host": "internal:1", "X-Forwarded-Host": "wiki.example.org", "X-Forwarded-Proto": "https",
                   "X-Forwarded-For": "203.0.113.7"}
        page = requests.get(srv.url + "/", headers=proxied, allow_redirects=False)
        assert page.status_code == 200
        assert requests.get(srv.url + "/", headers={"Host": "internal:1"}, allow_redirects=False) \
            .headers["Location"] == "https://wiki.example.org/"
    finally:
        srv.stop()
    untrusted = start_server(tmp_path / "data2", public_url="https://wiki.example.org")
    try:
        page = requests.get(untrusted.url + "/", headers=proxied, allow_redirects=False)
        assert page.status_code == 302
    finally:
        untrusted.stop()


# --- login links and sessions --------------------------------------------------------------------

def test_login_link_is_single_use_and_hashed_at_rest(server):
    server.cli("user", "add", ALICE, "--username", "alice")
    link = server.cli("login-link", "alice").stdout.strip()
    token = link.split("token=")[1]
    db = sqlite3.connect(server.data / "robotwtf.db")
    assert token not in str(db.execute("SELECT * FROM login_links").fetchall())
    browser = requests.Session()
    first = follow_login_link(browser, link)
    assert first.headers["Location"] == "/"
    cookie = next(c for c in first.raw.headers.getlist("Set-Cookie") if c.startswith("robotwtf_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax") and "Path=/" in cookie
    assert "alice" in browser.get(server.url + "/").text
    again = requests.get(link, allow_redirects=False)
    assert again.status_code == 403 and "already used" in again.text


def test_login_link_get_only_asks_and_a_post_spends_it(server):
    """CONTRACT §2: a GET (a link-preview bot, a mail scanner) shows "Sign in as alice?" and spends
    nothing; only the page's POST, with its CSRF token, signs in."""
    server.cli("user", "add", ALICE, "--username", "alice", "--handle", "alice.test")
    link = server.cli("login-link", "alice").stdout.strip()
    for _ in range(3):
        preview = requests.get(link, allow_redirects=False)
        assert preview.status_code == 200 and "Sign in as alice?" in preview.text and "(@alice.test)" in preview.text
        assert preview.headers["Cache-Control"] == "no-store"
        assert "robotwtf_session" not in preview.headers.get("Set-Cookie", "")
    token = link.split("token=")[1]
    forged = requests.post(server.url + "/auth/login-link", data={"token": token}, allow_redirects=False)
    assert forged.status_code == 403 and "form has expired" in forged.text
    db = sqlite3.connect(server.data / "robotwtf.db")
    assert db.execute("SELECT used_at FROM login_links").fetchone()[0] is None
    follow_login_link(requests.Session(), link)
    assert db.execute("SELECT used_at FROM login_links").fetchone()[0] is not None
    spent = requests.get(link, allow_redirects=False)
    assert spent.status_code == 403 and "already used" in spent.text


def test_login_link_expires_after_ten_minutes(server):
    server.cli("user", "add", ALICE, "--username", "alice")
    link = server.cli("login-link", "alice").stdout.strip()
    db = sqlite3.connect(server.data / "robotwtf.db")
    row = db.execute("SELECT created_at, expires_at FROM login_links").fetchone()
    assert row[1] - row[0] == 600
    db.execute("UPDATE login_links SET expires_at = ?", (int(time.time()) - 1,))
    db.commit()
    assert requests.get(link, allow_redirects=False).status_code == 403
    browser = requests.Session()
    form = browser.get(server.url + "/auth/login")
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form.text).group(1)
    late = browser.post(server.url + "/auth/login-link", data={"csrf_token": csrf, "token": link.split("token=")[1]},
                        allow_redirects=False)
    assert late.status_code == 403 and "expired" in late.text


def test_logout_needs_csrf_and_ends_the_session_server_side(server, alice):
    stolen_cookie = dict(alice.cookies)
    page = alice.get(server.url + "/")
    assert "Sign out" in page.text
    forged = alice.post(server.url + "/auth/logout", data={}, allow_redirects=False)
    assert forged.status_code == 403 and "form has expired" in forged.text
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text).group(1)
    assert alice.post(server.url + "/auth/logout", data={"csrf_token": token},
                      allow_redirects=False).status_code == 303
    replay = requests.get(server.url + "/", cookies=stolen_cookie)
    assert "Sign out" not in replay.text


def test_tampered_session_cookie_is_ignored(server, alice):
    name, value = next((c.name, c.value) for c in alice.cookies if c.name == "robotwtf_session")
    header, payload, signature = value.split(".")
    forged = ".".join([header, payload, signature[::-1]])
    assert "Sign out" not in requests.get(server.url + "/", cookies={name: forged}).text


# --- backup and restore ----------------------------------------------------------------------------

def test_backup_while_writing_then_restore(server, tmp_path):
    server.cli("user", "add", ALICE, "--username", "alice")
    stop = threading.Event()

    def write_sessions():
        db = sqlite3.connect(server.data / "robotwtf.db", timeout=10)
        while not stop.is_set():
            db.execute("INSERT INTO login_links VALUES (hex(randomblob(16)), ?, 0, 0, NULL)", (ALICE,))
            db.commit()
        db.close()

    writer = threading.Thread(target=write_sessions)
    writer.start()
    try:
        time.sleep(0.2)
        archive = tmp_path / "backup.tar.gz"
        server.cli("backup", str(archive))
    finally:
        stop.set()
        writer.join()
    assert archive.stat().st_mode & 0o777 == 0o600
    target = CLI(tmp_path / "restored", base_env(tmp_path / "restored"))
    target("restore", str(archive))
    assert "alice" in target("user", "list").stdout
    assert "ok:" in target("check").stdout
    assert (target.data / "rs256-key.pem").read_bytes() == (server.data / "rs256-key.pem").read_bytes()
    again = target("restore", str(archive), check=False)
    assert again.returncode == 1 and "is not empty" in again.stderr


def test_restore_refuses_something_that_is_not_a_backup(tmp_path):
    bogus = tmp_path / "bogus.tar.gz"
    bogus.write_bytes(b"not a tarball")
    target = CLI(tmp_path / "restored", base_env(tmp_path / "restored"))
    result = target("restore", str(bogus), check=False)
    assert result.returncode == 1 and "Cannot read the backup" in result.stderr
    assert not (tmp_path / "restored" / "robotwtf.db").exists()


def test_rate_limits_are_counted_in_the_database_across_processes(tmp_path):
    """Two limiters on one database stand for two worker processes: together they admit the
    limit, no more, and say how long to wait; another key has its own count."""
    import robotwtf_store
    db = robotwtf_store.open_database(tmp_path / "robotwtf.db", create=True)
    first, second = robotwtf_store.RateLimiter(lambda: db), robotwtf_store.RateLimiter(lambda: db)
    for limiter in (first, second, first):
        limiter.hit("ip:a", per_minute=3)
    for limiter in (first, second):
        with pytest.raises(robotwtf_store.RateLimited) as refused:
            limiter.hit("ip:a", per_minute=3)
        assert 1 <= refused.value.retry_after <= 60
    second.hit("ip:b", per_minute=3)
    assert db.execute("SELECT sum(count) FROM rate_counts WHERE key = 'ip:a'").fetchone()[0] == 3


def test_the_checkout_script_is_the_same_cli(cli):
    import sys
    result = subprocess.run([sys.executable, str(ROOT / "robotwtf.py"), "init"], env=cli.env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == cli("init").stdout


def test_imports_point_one_way():
    """Assembly (robotwtf) -> concern modules -> core (robotwtf_store): nothing imports the
    assembly, and the core imports no web framework and no robotwtf module but the pure library
    robotwtf_atproto (which imports none of ours)."""
    import ast

    def imported(module: str) -> set[str]:
        tree = ast.parse((ROOT / f"{module}.py").read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
        return names

    modules = sorted(path.stem for path in ROOT.glob("robotwtf*.py"))
    for module in modules:
        if module != "robotwtf":
            assert "robotwtf" not in imported(module), module
    assert {name for name in imported("robotwtf_store") if name.startswith("robotwtf")} <= {"robotwtf_atproto"}
    assert not {name for name in imported("robotwtf_atproto") if name.startswith("robotwtf")}
    assert "bottle" not in imported("robotwtf_store")
