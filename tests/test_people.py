"""Issue 11, the people's side: operators' first start and links, login-link confirmation,
names instead of DIDs, word diffs, messages written for people, error pages inside a wiki,
sign-in failures that say the network is at fault, the "Connect an agent" panel, export/import
round trips, renaming a page with its sub-pages, and the no-store / scope-challenge details.
Everything through the real CLI and a real server over HTTP."""

from __future__ import annotations

import re
import shlex
import subprocess

import requests

from conftest import ENTRY, follow_login_link, start_server

ALICE = "did:plc:" + "a" * 24
BOB = "did:plc:" + "b" * 24


def csrf(page: requests.Response) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text).group(1)


# --- operators -------------------------------------------------------------------------------------

def test_first_start_tells_the_operator_how_to_get_in_and_the_commands_work(tmp_path):
    srv = start_server(tmp_path / "data", "--signup", "closed")
    try:
        log = srv.log()
        assert "This is a new robotwtf instance: nobody has signed in yet." in log
        assert "Sign-up policy: closed" in log
        assert f"The first person to sign in at {srv.url} becomes the instance admin." in log
        commands = re.findall(r"^    (python3 robotwtf\.py .*)$", log, re.M)
        assert [shlex.split(c)[4] for c in commands] == ["user", "login-link"]
        for command in commands:  # exactly as printed, on the same data folder
            done = subprocess.run([*ENTRY, *shlex.split(command)[2:]], env=srv.env, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
        link = done.stdout.strip()
        assert link.startswith(f"{srv.url}/auth/login-link?token=")
        follow_login_link(requests.Session(), link)
    finally:
        srv.stop()
    again = start_server(tmp_path / "data")
    try:
        assert "This is a new robotwtf instance" not in again.log()
    finally:
        again.stop()


def test_links_use_the_url_the_server_serves_on(tmp_path):
    srv = start_server(tmp_path / "data")   # a free port, like `serve --port 9123`
    try:
        srv.cli("user", "add", ALICE, "--username", "alice")
        plain = dict(srv.env)
        del plain["ROBOTWTF_PORT"]           # the operator's shell: no port, no public URL given
        cli = type(srv.cli)(srv.data, plain)
        assert cli("login-link", "alice").stdout.startswith(f"{srv.url}/auth/login-link?token=")
        assert cli("invite", "create").stdout.startswith(f"{srv.url}/auth/login?invite=")
        assert cli("wiki", "create", "notes", "--owner", "alice").stdout.strip() == f"created {srv.url}/w/notes/"
        token = cli("token", "create", "notes", "--user", "alice")
        assert token.stdout.strip().startswith("rwpat_") and len(token.stdout.splitlines()) == 1
        assert f"claude mcp add --transport http notes {srv.url}/w/notes/mcp" in token.stderr
        given = cli("--public-url", "https://wiki.example.org", "login-link", "alice").stdout
        assert given.startswith("https://wiki.example.org/auth/login-link?token=")
        assert cli("--port", "9999", "invite", "create").stdout.startswith("http://127.0.0.1:9999/")
        env = type(srv.cli)(srv.data, {**plain, "ROBOTWTF_PUBLIC_URL": "https://env.example.org"})
        assert env("invite", "create").stdout.startswith("https://env.example.org/")
    finally:
        srv.stop()


def test_user_list_when_empty_and_login_link_for_a_stranger(cli):
    cli("init")
    empty = cli("user", "list")
    assert empty.stdout == "" and "no users yet" in empty.stderr
    unknown = cli("login-link", "nobody", check=False)
    assert unknown.returncode == 1
    assert "No user is known as 'nobody'" in unknown.stderr and "robotwtf user add DID --username nobody" in unknown.stderr
    assert cli("user", "list").stdout == ""


# --- security details: no-store, the step-up challenge ------------------------------------------------

def test_no_store_on_what_depends_on_the_person_on_oauth_and_on_tokens(tmp_path):
    from oauth_flow import CLAUDE_REGISTRATION, World
    srv = start_server(tmp_path / "data")
    try:
        world = World(srv)
        flow = world.flow()
        consent = flow.consent_page()
        assert consent.status_code == 200 and consent.headers["Cache-Control"] == "no-store"  # ASVS 14.3.2
        world.sql("UPDATE wikis SET visibility = 'public' WHERE slug = ?", flow.slug)
        for path in ("/", "/account", "/account/apps", f"/w/{flow.slug}/", f"/w/{flow.slug}/-/history/Home",
                     f"/w/{flow.slug}/-/settings", f"/w/{flow.slug}/Nothing-here"):
            response = flow.browser.get(srv.url + path)
            assert response.headers["Cache-Control"] == "no-store", path
        anonymous = requests.get(f"{srv.url}/w/{flow.slug}/")
        assert anonymous.status_code == 200 and anonymous.headers["Cache-Control"] == "private, no-cache"
        assert requests.get(srv.url + "/static/style.css").headers["Cache-Control"] == "public, max-age=3600"
        registration = requests.post(srv.url + "/oauth/register", json=CLAUDE_REGISTRATION)
        assert registration.status_code == 201 and registration.headers["Cache-Control"] == "no-store"
        tokens = flow.token(flow.code())
        assert tokens.status_code == 200 and tokens.headers["Cache-Control"] == "no-store"
        bad = requests.post(srv.url + "/oauth/token", data={"grant_type": "nonsense"})
        assert bad.status_code == 400 and bad.headers["Cache-Control"] == "no-store"
        revoked = flow.revoke(tokens.json()["refresh_token"])
        assert revoked.status_code == 200 and revoked.headers["Cache-Control"] == "no-store"
        metadata = requests.get(srv.url + "/.well-known/oauth-authorization-server")
        assert metadata.headers["Cache-Control"] == "public, max-age=300"   # a public document
    finally:
        srv.stop()


# --- error pages inside a wiki ------------------------------------------------------------------------

def signed_in_site(tmp_path, *args):
    srv = start_server(tmp_path / "data", *args)
    srv.cli("user", "add", ALICE, "--username", "alice", "--handle", "alice.test")
    srv.cli("user", "add", BOB, "--username", "bob", "--handle", "bob.test")
    srv.cli("wiki", "create", "garden", "--owner", "alice", "--title", "Garden notes")
    db = srv.db()
    db.execute("INSERT INTO members (wiki_id, user_did, role, added_at) SELECT id, ?, 'viewer', 0 FROM wikis", (BOB,))
    db.commit()
    db.close()
    return srv, srv.login("alice"), srv.login("bob")


def steps(page: requests.Response) -> list[tuple[str, str]]:
    """The error page's next steps: (text, href)."""
    buttons = page.text.split('<p class="buttons">')[1].split("</p>")[0]
    return [(text, href.replace("&amp;", "&")) for href, text in re.findall(r'href="([^"]+)">([^<]+)</a>', buttons)]


def test_error_pages_inside_a_wiki_keep_its_header_and_offer_the_next_step(tmp_path):
    srv, alice, bob = signed_in_site(tmp_path, "--writes-per-minute", "2")
    try:
        missing = alice.get(srv.url + "/w/garden/-/edit/Plants/Fig")
        assert missing.status_code == 404 and 'class="wikibar"' in missing.text and "Garden notes" in missing.text
        assert "Page not found: &#039;Plants/Fig&#039;" in missing.text
        assert steps(missing) == [("Create Plants/Fig", "/w/garden/-/new?path=Plants%2FFig"),
                                  ("Garden notes home", "/w/garden/"), ("All pages", "/w/garden/-/pages")]
        viewer = bob.get(srv.url + "/w/garden/-/edit/Home")
        assert viewer.status_code == 403 and 'class="wikibar"' in viewer.text
        assert "You can read this wiki but not change it" in viewer.text
        assert steps(viewer) == [("Garden notes home", "/w/garden/"), ("All pages", "/w/garden/-/pages")]
        viewer_missing = bob.get(srv.url + "/w/garden/-/history/Nope")
        assert viewer_missing.status_code == 404 and "Create" not in str(steps(viewer_missing))
        bad = alice.get(srv.url + "/w/garden/-/diff", params={"from": "zzzzzzz", "to": "abc"})
        assert bad.status_code == 400 and 'class="wikibar"' in bad.text and "is not a revision id" in bad.text
        no_route = alice.get(srv.url + "/w/garden/-/nonsense")
        assert no_route.status_code == 404 and 'class="wikibar"' in no_route.text
        method = alice.put(srv.url + "/w/garden/Home")
        assert method.status_code == 405 and 'class="wikibar"' in method.text and "GET" in method.headers["Allow"]
        page = alice.get(srv.url + "/w/garden/-/edit/Home")
        form = {"csrf_token": re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)[1],
                "content": "x" * 5_000_000, "base_revision": "0" * 12}
        too_big = alice.post(srv.url + "/w/garden/-/edit/Home", data=form)
        assert too_big.status_code == 413 and 'class="wikibar"' in too_big.text
        for _ in range(3):
            limited = alice.post(srv.url + "/w/garden/-/settings", data={"csrf_token": form["csrf_token"], "title": "G"})
        assert limited.status_code == 429 and 'class="wikibar"' in limited.text
        assert "Too many changes" in limited.text and int(limited.headers["Retry-After"]) >= 1
        stranger = requests.get(srv.url + "/w/garden/-/edit/Home")
        assert stranger.status_code == 404 and 'class="wikibar"' not in stranger.text   # private: not revealed
        assert steps(stranger)[0] == ("Sign in", "/auth/login?return_to=%2Fw%2Fgarden%2F-%2Fedit%2FHome")
        outside = alice.get(srv.url + "/nothing/here")
        assert outside.status_code == 404 and 'class="wikibar"' not in outside.text
        assert steps(outside) == [("Back to the start", "/")]
    finally:
        srv.stop()


def test_a_server_error_inside_a_wiki_keeps_its_header(tmp_path):
    srv, alice, _ = signed_in_site(tmp_path)
    try:
        db = srv.db()
        db.execute("DROP TABLE links")   # every page view reads it: a genuine failure inside the wiki
        db.commit()
        broken = alice.get(srv.url + "/w/garden/Home")
        assert broken.status_code == 500 and 'class="wikibar"' in broken.text
        assert "Something went wrong on our side" in broken.text and "Traceback" not in broken.text
        assert steps(broken)[0] == ("Try again", "/w/garden/Home")
    finally:
        srv.stop()


# --- sign-in: "couldn't reach" apart from "does not exist" ---------------------------------------------

def test_sign_in_says_when_a_server_could_not_be_reached(tmp_path):
    from conftest import free_port
    from fakedns import FakeDNS
    from fakepds import FakePDS
    closed = f"http://127.0.0.1:{free_port()}"   # nothing listens there
    with FakeDNS() as dns_server, FakePDS() as pds:
        env = {"ROBOTWTF_INSECURE_DEV_NETWORK": "1", "ROBOTWTF_PLC_URL": pds.plc_url,
               "ROBOTWTF_DNS_RESOLVER": dns_server.address}
        srv = start_server(tmp_path / "data", env_extra=env)
        dark_plc = start_server(tmp_path / "data2", env_extra={**env, "ROBOTWTF_PLC_URL": closed + "/plc"})
        try:
            did = pds.add_account("alice.test", pds_url=closed)          # her PDS is down
            dns_server.txt("_atproto.alice.test", f"did={did}")
            dns_server.txt("_atproto.bob.test", f"did={pds.add_account('bob.test')}")

            def sign_in(site, identifier: str) -> requests.Response:
                browser = requests.Session()
                page = browser.get(site.url + "/auth/login")
                return browser.post(site.url + "/auth/login", data={"csrf_token": csrf(page), "identifier": identifier},
                                    allow_redirects=False)

            down = sign_in(srv, "alice.test")
            assert down.status_code == 502
            assert "Couldn&#039;t reach 127.0.0.1: it did not answer." in down.text
            assert "nothing is wrong with what you typed" in down.text
            no_plc = sign_in(dark_plc, "bob.test")
            assert no_plc.status_code == 502 and "Couldn&#039;t reach 127.0.0.1" in no_plc.text
            nobody = sign_in(srv, "nobody.test")
            assert "That handle does not resolve: nobody.test." in nobody.text and "reach" not in nobody.text
            assert srv.db().execute("SELECT count(*) FROM users").fetchone()[0] == 0
            browser = requests.Session()      # the same server, reachable: on to the PDS and back, new account
            page = browser.get(srv.url + "/auth/login")
            started = browser.post(srv.url + "/auth/login", data={"csrf_token": csrf(page), "identifier": "bob.test"},
                                   allow_redirects=False)
            assert started.status_code == 303
            back = browser.get(srv.url + "/auth/callback", params=pds.sign_in(started.headers["Location"], "bob.test"),
                               allow_redirects=False)
            assert back.headers["Location"] == "/auth/signup"
            signup = browser.get(srv.url + "/auth/signup")   # names the person signing up: no cache keeps it
            assert "bob.test" in signup.text and signup.headers["Cache-Control"] == "no-store"

            dark_plc.cli("user", "add", ALICE, "--username", "carol")
            dark_plc.cli("wiki", "create", "garden", "--owner", "carol")
            carol = dark_plc.login("carol")
            settings = carol.get(dark_plc.url + "/w/garden/-/settings")
            added = carol.post(dark_plc.url + "/w/garden/-/settings/members",
                               data={"csrf_token": csrf(settings), "member": "bob.test", "role": "editor"})
            assert added.status_code == 502 and "Couldn&#039;t reach 127.0.0.1" in added.text
            assert 'value="bob.test"' in added.text   # what was typed stays in the form
            assert "bob.test" not in carol.get(dark_plc.url + "/w/garden/-/settings").text.split("<h3>Add someone")[0]
        finally:
            srv.stop()
            dark_plc.stop()


# --- connecting agents ------------------------------------------------------------------------------------

def test_connect_panel_on_a_loopback_address_warns_and_its_token_command_works(tmp_path):
    from mcp_client import Endpoint
    srv, alice, bob = signed_in_site(tmp_path)
    try:
        panel = alice.get(srv.url + "/w/garden/-/connect")
        assert panel.status_code == 200 and panel.headers["Cache-Control"] == "no-store"
        assert f'<code id="mcp-url">{srv.url}/w/garden/mcp</code>' in panel.text
        assert "Claude.ai cannot reach this address:</strong> " + srv.url in panel.text
        assert "Running behind a reverse proxy (https)" in panel.text and "--public-url https://" in panel.text
        assert "Settings → Connectors" not in panel.text   # no steps that would paste a loopback URL
        assert 'data-copy="mcp-url" hidden' in panel.text and '<script src="/static/copy.js"' in panel.text
        assert requests.get(srv.url + "/static/copy.js").headers["Content-Type"].startswith("text/javascript")
        created = alice.post(srv.url + "/w/garden/-/connect", data={"csrf_token": csrf(panel)})
        assert created.status_code == 200 and created.headers["Cache-Control"] == "no-store"
        command = re.search(r'<code id="claude-command">([^<]+)</code>', created.text)[1].replace("&quot;", '"')
        words = shlex.split(command)
        assert words[:6] == ["claude", "mcp", "add", "--transport", "http", "garden"]
        assert words[6] == f"{srv.url}/w/garden/mcp" and words[7] == "--header"
        token = words[8].removeprefix("Authorization: Bearer ")
        called = Endpoint(words[6], token).call("read_note", path="Home")
        assert called["isError"] is False                    # the command's URL and token really work
        assert token not in alice.get(srv.url + "/w/garden/-/connect").text   # shown once
        assert "Claude Code, " in alice.get(srv.url + "/account/apps").text
        viewer = bob.get(srv.url + "/w/garden/-/connect")
        assert "allowed to read, and shows" in " ".join(viewer.text.split())
        viewer_token = bob.post(srv.url + "/w/garden/-/connect", data={"csrf_token": csrf(viewer)})
        bob_token = shlex.split(re.search(r'<code id="claude-command">([^<]+)</code>',
                                          viewer_token.text)[1].replace("&quot;", '"'))[8].split()[-1]
        row = srv.db().execute(
            "SELECT scope FROM personal_tokens WHERE user_did = ?", (BOB,)).fetchone()
        assert tuple(row) == ("wiki:read",) and bob_token.startswith("rwpat_")
        settings = alice.get(srv.url + "/w/garden/-/settings")
        assert 'id="connect"' in settings.text and f"{srv.url}/w/garden/mcp" in settings.text
        getting_started = alice.get(srv.url + "/w/garden/Getting%20Started")
        assert 'href="/w/garden/-/connect"' in getting_started.text and "127.0.0.1" not in getting_started.text.split(
            "<article")[1].split("</article>")[0]
        stranger = requests.get(srv.url + "/w/garden/-/connect")
        assert stranger.status_code == 404
        forged = alice.post(srv.url + "/w/garden/-/connect", data={})
        assert forged.status_code == 403
    finally:
        srv.stop()


def test_connect_panel_on_an_https_address_gives_claude_ai_steps(tmp_path):
    srv = start_server(tmp_path / "data", public_url="https://wiki.example.org")
    try:
        srv.cli("user", "add", ALICE, "--username", "alice")
        srv.cli("wiki", "create", "garden", "--owner", "alice")
        db = srv.db()
        db.execute("UPDATE wikis SET visibility = 'public'")
        db.commit()
        # A stranger reads the public wiki's panel (https cookies need https, so no sign-in here).
        panel = requests.get(srv.url + "/w/garden/-/connect", headers={"Host": "wiki.example.org"})
        assert panel.status_code == 200
        assert '<code id="mcp-url">https://wiki.example.org/w/garden/mcp</code>' in panel.text
        assert "cannot reach" not in panel.text and "Settings → Connectors" in panel.text
        assert "Members of this wiki can create a token for Claude Code here once signed in." in panel.text
    finally:
        srv.stop()


def test_changing_the_public_url_changes_what_people_are_told(tmp_path):
    srv = start_server(tmp_path / "data")
    srv.cli("user", "add", ALICE, "--username", "alice")
    srv.cli("wiki", "create", "garden", "--owner", "alice")
    db = srv.db()
    db.execute("UPDATE wikis SET visibility = 'public'")
    db.commit()
    srv.stop()
    moved = start_server(tmp_path / "data", public_url="https://moved.example.org")
    try:
        host = {"Host": "moved.example.org"}
        panel = requests.get(moved.url + "/w/garden/-/connect", headers=host)
        assert "https://moved.example.org/w/garden/mcp" in panel.text and "127.0.0.1" not in panel.text
        guide = requests.get(moved.url + "/w/garden/Getting%20Started", headers=host).text
        assert "127.0.0.1" not in guide and "moved.example.org" not in guide.split("<article")[1]
    finally:
        moved.stop()


def test_a_browser_opening_the_mcp_address_gets_a_page_and_everything_else_405(tmp_path):
    srv, alice, _ = signed_in_site(tmp_path)
    try:
        for browser in (alice, requests.Session()):
            page = browser.get(srv.url + "/w/garden/mcp", headers={"Accept": "text/html,application/xhtml+xml,*/*"})
            assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
            assert "This is an address for AI agents" in page.text and 'href="/w/garden/-/connect"' in page.text
            assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        private = requests.get(srv.url + "/w/no-such-wiki/mcp", headers={"Accept": "text/html"})
        assert private.status_code == 200 and "no-such-wiki" in private.text   # reveals nothing either way
        for headers in ({}, {"Accept": "text/event-stream"}, {"Accept": "application/json"}, {"Accept": "*/*"}):
            refused = requests.get(srv.url + "/w/garden/mcp", headers=headers)
            assert refused.status_code == 405 and refused.headers["Allow"] == "POST", headers
        assert requests.delete(srv.url + "/w/garden/mcp", headers={"Accept": "text/html"}).status_code == 405
    finally:
        srv.stop()


# --- data that must survive: export -> import --------------------------------------------------------------

def exported(browser, srv, slug) -> tuple[dict, dict]:
    """(manifest, files) of a wiki's export over HTTP."""
    import io
    import json
    import zipfile
    response = browser.get(f"{srv.url}/w/{slug}/-/settings/export")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    return json.loads(files.pop("history.json")), files


def comparable(manifest: dict, files: dict, skip=("Home", "Getting Started", "Agent Guide")) -> dict:
    """Everything a wiki holds, without the ids and file names that only name it in one archive."""
    pages = {}
    for page in manifest["pages"]:
        if page["path"] in skip:
            continue
        history = [(r["kind"], r["path"], r["old_path"], r["attachment"], r["author_did"], r["author_name"], r["via"],
                    r["message"], r["created_at"], files[r["content"]]) for r in page["revisions"]]
        attachments = [(a["filename"], a["author_did"], a["updated_at"], files[a["file"]]) for a in page["attachments"]]
        pages[(page["path"], page["deleted_at"])] = (history, attachments)
    return pages


def test_export_then_import_into_a_new_wiki_brings_everything_back(tmp_path):
    from mcp_client import Endpoint
    srv, alice, bob = signed_in_site(tmp_path)
    try:
        db = srv.db()
        db.execute("UPDATE members SET role = 'editor' WHERE user_did = ?", (BOB,))
        page = alice.get(srv.url + "/w/garden/-/new")
        form = {"csrf_token": csrf(page)}
        for path, content in [("Plants/Tomato", "# Tomato\n\nSee [[Compost]].\n"), ("Compost", "# Compost\n\nbrown"),
                              ("Old", "to be deleted")]:
            assert alice.post(srv.url + "/w/garden/-/new", data={**form, "path": path, "content": content},
                              allow_redirects=False).status_code == 303
        png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
        assert alice.post(srv.url + "/w/garden/-/attachments/Plants/Tomato", data={**form, "message": "photo"},
                          files={"file": ("june.png", png)}, allow_redirects=False).status_code == 303
        token = srv.cli("token", "create", "garden", "--user", "bob", "--name", "laptop").stdout.strip()
        agent = Endpoint(srv.url + "/w/garden/mcp", token)
        revision = agent.call("read_note", path="Compost")["structuredContent"]["revision"]
        assert not agent.call("edit_note", path="Compost", revision=revision, old_string="brown",
                              new_string="browns and greens", commit_message="more precise")["isError"]
        assert not agent.call("rename_note", path="Plants/Tomato", new_path="Veg/Tomato")["isError"]
        assert not agent.call("delete_note", path="Old", commit_message="not needed")["isError"]
        db.execute("UPDATE revisions SET created_at = created_at - 86400 * 30")   # history from a month ago
        db.execute("UPDATE attachments SET updated_at = updated_at - 86400 * 30")
        before, before_files = exported(alice, srv, "garden")

        srv.cli("wiki", "create", "garden-copy", "--owner", "alice")
        settings = alice.get(srv.url + "/w/garden-copy/-/settings")
        archive = alice.get(srv.url + "/w/garden/-/settings/export").content
        report = alice.post(srv.url + "/w/garden-copy/-/settings/import", data={"csrf_token": csrf(settings)},
                            files={"archive": ("garden.zip", archive)})
        said = " ".join(re.sub("<[^>]+>", " ", report.text).split())
        assert report.status_code == 200 and "2 pages created, 3 files skipped." in said
        assert "1 deleted page you can restore" in said and "1 attachment came with the pages." in said
        after, after_files = exported(alice, srv, "garden-copy")
        assert comparable(after, after_files) == comparable(before, before_files)   # the two wikis hold the same
        assert {p["path"] for p in after["pages"]} >= {"Veg/Tomato", "Compost", "Old"}

        history = alice.get(srv.url + "/w/garden-copy/-/history/Compost").text
        assert "bob" in history and "@bob.test" in history and "with the token “laptop”" in history
        assert "more precise" in history and history.count("· imported") == 2
        assert "did:plc" not in history
        copy = alice.get(srv.url + "/w/garden-copy/Veg/Tomato").text
        assert "june.png" in copy and 'href="/w/garden-copy/Compost"' in copy     # attachments, live links
        assert "Veg/Tomato" in alice.get(srv.url + "/w/garden-copy/Compost").text   # backlinks
        found = alice.get(srv.url + "/w/garden-copy/-/search", params={"q": "greens"}).text
        assert "Compost" in found.split("<main>")[1]
        index = dict(db.execute("SELECT p.path, s.state FROM pages p LEFT JOIN semantic_pages s ON s.page_id = p.id "
                                "JOIN wikis w ON w.id = p.wiki_id WHERE w.slug = 'garden-copy'").fetchall())
        assert index["Veg/Tomato"] == index["Compost"] == "stale" and index["Old"] == "gone"  # semantic index told
        old = re.search(r'action="(/w/garden-copy/-/revision/[0-9a-f]+/restore)"',
                        alice.get(srv.url + "/w/garden-copy/-/history/Old").text)[1]
        assert alice.post(srv.url + old, data=form, allow_redirects=False).status_code == 303
        assert "to be deleted" in alice.get(srv.url + "/w/garden-copy/Old").text   # deleted pages come back too
        assert "to be deleted" not in alice.get(srv.url + "/w/garden/Old").text     # and the original is untouched
    finally:
        srv.stop()


# --- renaming a page with its sub-pages ----------------------------------------------------------------------

def test_renaming_a_page_offers_to_move_its_subpages_in_one_transaction(tmp_path):
    from mcp_client import Endpoint
    srv, alice, _ = signed_in_site(tmp_path)
    try:
        page = alice.get(srv.url + "/w/garden/-/new")
        form = {"csrf_token": csrf(page)}
        for path, content in [("Plants", "All plants"), ("Plants/Tomato", "See [[Plants/Tomato/Seeds]]."),
                              ("Plants/Tomato/Seeds", "saved"), ("Plants2", "not under Plants"),
                              ("Garden/Tomato", "in the way"),
                              ("Notes", "[[Plants]], [[Plants/Tomato]] and [[plants/tomato/seeds#Kept|seeds]]")]:
            assert alice.post(srv.url + "/w/garden/-/new", data={**form, "path": path, "content": content},
                              allow_redirects=False).status_code == 303
        offer = alice.get(srv.url + "/w/garden/-/rename/Plants")
        assert 'name="subpages" value="move" checked' in offer.text
        assert "Also move the 2 pages under Plants/ along with it" in offer.text
        assert "Plants/Tomato, Plants/Tomato/Seeds" in offer.text and "Plants2" not in offer.text
        revision = re.search(r'name="base_revision" value="([0-9a-f]+)"', offer.text)[1]
        before, before_files = exported(alice, srv, "garden")

        blocked = alice.post(srv.url + "/w/garden/-/rename/Plants", data={
            **form, "new_path": "Garden", "base_revision": revision, "subpages": "move"})
        assert blocked.status_code == 409
        assert 'A page called Garden/Tomato already exists — <a href="/w/garden/Garden/Tomato">open it</a>' \
            in blocked.text and 'value="move" checked' in blocked.text
        assert exported(alice, srv, "garden") == (before, before_files)   # nothing moved

        moved = alice.post(srv.url + "/w/garden/-/rename/Plants", data={
            **form, "new_path": "Veg", "base_revision": revision, "subpages": "move"}, allow_redirects=False)
        assert moved.status_code == 303 and moved.headers["Location"] == "/w/garden/Veg"
        pages = alice.get(srv.url + "/w/garden/-/pages").text
        for path in ("Veg", "Veg/Tomato", "Veg/Tomato/Seeds", "Plants2"):
            assert f">{path}</a>" in pages, path
        assert ">Plants/Tomato</a>" not in pages.split("Deleted")[0]
        agent = Endpoint(srv.url + "/w/garden/mcp",
                         srv.cli("token", "create", "garden", "--user", "alice").stdout.strip())
        notes = agent.call("read_note", path="Notes")["structuredContent"]["content"]
        assert notes == "[[Veg]], [[Veg/Tomato]] and [[Veg/Tomato/Seeds#Kept|seeds]]"
        assert len(agent.call("get_history", path="Notes")["structuredContent"]["history"]) == 2   # one update
        assert agent.call("read_note", path="Veg/Tomato")["structuredContent"]["content"] == \
            "See [[Veg/Tomato/Seeds]]."
        seeds = agent.call("get_history", path="Veg/Tomato/Seeds")["structuredContent"]["history"]
        assert [h["kind"] for h in seeds] == ["rename", "create"] and "Rename Plants to Veg" in seeds[0]["message"]

        alone = agent.call("rename_note", path="Veg", new_path="Vegetables")
        assert alone["isError"] is False and alone["structuredContent"]["moved_subpages"] == []
        assert "2 pages under Veg/ stayed where they were" in alone["content"][0]["text"]
        assert "move_subpages=true" in alone["content"][0]["text"]
        assert not agent.call("rename_note", path="Vegetables", new_path="Veg")["isError"]

        # Into its own subtree: Food takes the path Food/Tomato leaves, in the same transaction.
        assert not agent.call("rename_note", path="Veg", new_path="Food", move_subpages=True)["isError"]
        nested = agent.call("rename_note", path="Food", new_path="Food/Tomato", move_subpages=True)
        assert nested["isError"] is False, nested
        assert nested["structuredContent"]["moved_subpages"] == [
            {"from": "Food/Tomato", "to": "Food/Tomato/Tomato"},
            {"from": "Food/Tomato/Seeds", "to": "Food/Tomato/Tomato/Seeds"}]
        listed = [n["path"] for n in agent.call("list_notes", prefix="Food")["structuredContent"]["notes"]]
        assert listed == ["Food/Tomato", "Food/Tomato/Tomato", "Food/Tomato/Tomato/Seeds"]
        taken = agent.call("rename_note", path="Food/Tomato", new_path="Garden", move_subpages=True)
        assert taken["isError"] is True and "Page 'Garden/Tomato' already exists" in taken["content"][0]["text"]
    finally:
        srv.stop()
