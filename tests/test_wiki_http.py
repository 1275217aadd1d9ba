"""The wiki's browser UI over real HTTP against the real server: every page and form, who may
use them, a real race between two editors, and each kind of bad input from issue 3 (with the
exact error, and a check that the stored data did not change)."""

from __future__ import annotations

import html
import io
import json
import re
import threading
import zipfile
from urllib.parse import quote

import pytest
import requests

from conftest import start_server

ALICE, BOB, CAROL, DAVE = (f"did:plc:{name * 24}"[:32] for name in ("a", "b", "c", "d"))
PEOPLE = {"alice": ALICE, "bob": BOB, "carol": CAROL, "dave": DAVE}
HIDDEN = "There is no wiki here, or it is private. If it is yours, sign in."


# --- helpers ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One server for the module; tests keep out of each other's way with a wiki each."""
    srv = start_server(tmp_path_factory.mktemp("wiki-http") / "data")
    for name, did in PEOPLE.items():
        srv.cli("user", "add", did, "--username", name, "--handle", f"{name}.test")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def people(site):
    """A signed-in browser session per person, and one anonymous browser."""
    sessions = {name: site.login(name) for name in PEOPLE}
    sessions["anon"] = requests.Session()
    return sessions


def text(response: requests.Response) -> str:
    """The page as a person reads it: entities decoded (templates escape ' as &#039;)."""
    return html.unescape(response.text)


_tokens: dict = {}


def csrf(site, browser: requests.Session) -> str:
    """The browser's CSRF token: one per session (anonymous browsers get theirs with a cookie).
    The sign-in page has a form for strangers and sends signed-in people to the dashboard's."""
    key = (site.url, id(browser))
    if key not in _tokens:
        page = browser.get(site.url + "/auth/login")
        _tokens[key] = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text).group(1)
    return _tokens[key]


def post(site, browser, path, data=None, files=None, **kwargs) -> requests.Response:
    return browser.post(site.url + path, data={"csrf_token": csrf(site, browser), **(data or {})}, files=files,
                        allow_redirects=False, **kwargs)


def get(site, browser, path, **kwargs) -> requests.Response:
    return browser.get(site.url + path, allow_redirects=False, **kwargs)


def field(response: requests.Response, name: str) -> str:
    """The value of an <input name=...> or the text of a <textarea name=...> in a page."""
    found = re.search(rf'<textarea[^>]*name="{name}"[^>]*>\n?(.*?)</textarea>', response.text, re.S)
    if found is None:
        found = re.search(rf'<input[^>]*name="{name}" value="([^"]*)"', response.text)
    assert found, f"no field {name!r} in the page"
    return html.unescape(found.group(1))


def make_wiki(site, people, slug, owner="alice", **roles) -> str:
    """A wiki made through the dashboard form, with members added through the settings form."""
    created = post(site, people[owner], "/wikis", {"slug": slug, "title": slug.title(), "description": ""})
    assert created.status_code == 303, text(created)
    for name, role in roles.items():
        added = post(site, people[owner], f"/w/{slug}/-/settings/members", {"member": PEOPLE[name], "role": role})
        assert added.status_code == 303, text(added)
    return slug


def url(slug: str, path: str = "", action: str = "") -> str:
    quoted = quote(path, safe="/")
    return f"/w/{slug}/-/{action}/{quoted}" if action else f"/w/{slug}/{quoted}"


def create_page(site, browser, slug, path, content, **extra) -> requests.Response:
    response = post(site, browser, f"/w/{slug}/-/new", {"path": path, "content": content, **extra})
    assert response.status_code == 303, text(response)
    return response


def source(site, browser, slug, path) -> tuple[str, str]:
    """(content, current revision) of a page, from its edit form."""
    form = get(site, browser, url(slug, path, "edit"))
    assert form.status_code == 200, text(form)
    return field(form, "content"), field(form, "base_revision")


def snapshot(site, owner, slug) -> dict:
    """Everything stored in a wiki (pages, attachments, every revision), from its export."""
    response = get(site, owner, f"/w/{slug}/-/settings/export")
    assert response.status_code == 200, text(response)
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(files.pop("history.json"))
    manifest.pop("exported_at")
    return {"files": files, "manifest": manifest}


def zip_of(entries: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# --- dashboard and wiki creation ----------------------------------------------------------------

def test_dashboard_lists_own_and_shared_wikis(site, people):
    make_wiki(site, people, "dash-own", bob="editor")
    post(site, people["bob"], "/wikis", {"slug": "dash-bobs", "title": "Bob's <wiki>"})
    page = get(site, people["bob"], "/")
    own, shared = page.text.split("Shared with you")
    assert "/w/dash-bobs/" in own and "Bob&#039;s &lt;wiki&gt;" in own and "/w/dash-own/" not in own
    assert "/w/dash-own/" in shared and "editor" in shared
    assert 'action="/wikis"' in page.text and 'name="slug"' in page.text


def test_create_wiki_makes_default_pages_and_opens_home(site, people):
    created = post(site, people["alice"], "/wikis", {"slug": "fresh-wiki", "title": "Fresh <i>wiki</i>",
                                                       "description": "For <b>tests</b>"})
    assert created.status_code == 303 and created.headers["Location"] == "/w/fresh-wiki/"
    home = get(site, people["alice"], "/w/fresh-wiki/")
    assert home.status_code == 200 and home.headers["Cache-Control"] == "no-store"  # a signed-in person's page
    assert "<h1 id=" in home.text and "Fresh &lt;i&gt;wiki&lt;/i&gt;" in home.text and "<i>wiki" not in home.text
    assert "For &lt;b&gt;tests&lt;/b&gt;" in home.text
    assert 'href="/w/fresh-wiki/Getting%20Started" class="wikilink"' in home.text
    index = get(site, people["alice"], "/w/fresh-wiki/-/pages")
    assert [p for p in ("Home", "Getting Started", "Agent Guide") if f">{p}</a>" in index.text] == \
        ["Home", "Getting Started", "Agent Guide"]


@pytest.mark.parametrize("slug, status, message", [
    ("", 400, "The short name is required."),   # the form's label, "Short name", and its rule
    ("ab", 400, "The short name must be 3 to 30 characters long."),
    ("a" * 31, 400, "The short name must be 3 to 30 characters long."),
    ("Garden", 400, "The short name must be lower case."),
    ("-garden", 400, "The short name must not start or end with a hyphen."),
    ("garden-", 400, "The short name must not start or end with a hyphen."),
    ("gar_den", 400, "The short name may contain only letters a-z, digits and hyphens."),
    ("gar/den", 400, "The short name may contain only letters a-z, digits and hyphens."),
    ("../etc", 400, "The short name may contain only letters a-z, digits and hyphens."),
    ("mcp", 400, "“mcp” is kept for robotwtf's own pages; choose another short name."),
    ("admin", 400, "“admin” is kept for robotwtf's own pages; choose another short name."),
    ("well-known", 400, "“well-known” is kept for robotwtf's own pages; choose another short name."),
    ("taken-slug", 409, "There is already a wiki at /w/taken-slug/ — choose another short name."),
])
def test_create_wiki_refuses_bad_and_reserved_slugs(site, people, slug, status, message):
    if slug == "taken-slug" and get(site, people["bob"], "/w/taken-slug/").status_code == 404:
        make_wiki(site, people, "taken-slug", owner="bob")
    before = site.cli("wiki", "list").stdout
    refused = post(site, people["alice"], "/wikis", {"slug": slug, "title": "<script>x</script>", "description": "d"})
    assert refused.status_code == status
    assert message in text(refused)
    assert "<script>x" not in refused.text and field(refused, "title") == "<script>x</script>"  # kept, escaped
    assert site.cli("wiki", "list").stdout == before


def test_dashboard_needs_a_session(site, people):
    assert get(site, people["anon"], "/").status_code == 200  # the landing page
    refused = post(site, people["anon"], "/wikis", {"slug": "anon-wiki"})
    assert refused.status_code == 303 and refused.headers["Location"].startswith("/auth/login")


# --- reading pages ----------------------------------------------------------------------------

def test_wiki_without_trailing_slash_redirects(site, people):
    make_wiki(site, people, "slashless")
    response = get(site, people["alice"], "/w/slashless")
    assert response.status_code == 303 and response.headers["Location"] == "/w/slashless/"


def test_markdown_is_rendered_safely_with_wikilinks(site, people):
    slug = make_wiki(site, people, "render")
    alice = people["alice"]
    create_page(site, alice, slug, "Target Page", "# Target\n\n## Deep Section\n")
    create_page(site, alice, slug, "Showcase", "\n".join([
        "# Showcase <em>title</em>",
        "<script>alert('x')</script>",
        "<img src=x onerror=alert(1)>",
        "[js](javascript:alert(1)) [js2](JaVaScRiPt:alert(1)) [vb](vbscript:msgbox) [file](file:///etc/passwd)",
        "![data](data:image/png;base64,iVBORw0KGgo=) [data](data:text/html,<b>x</b>)",
        "[ok](https://example.com/a?b=1&c=2) [rel](/w/render/-/pages) <mailto:x@example.com>",
        "[[target page]] [[Target Page|the <target>]] [[Target Page#Deep Section|deep]] [[Nowhere Yet]]",
        "`[[Not A Link]]` and [[../bad]]",
        "",
        "| a | b |", "|---|---|", "| 1 | 2 |",
    ]))
    page = get(site, alice, url(slug, "Showcase")).text
    assert "<script>" not in page and "&lt;script&gt;alert(" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<em>title</em>" not in page
    for scheme in ("javascript:", "JaVaScRiPt:", "vbscript:", "file:", "data:"):
        assert f'href="{scheme}' not in page and f'src="{scheme}' not in page
    assert '<a href="https://example.com/a?b=1&amp;c=2">ok</a>' in page
    assert '<a href="/w/render/-/pages">rel</a>' in page and 'href="mailto:x@example.com"' in page
    assert '<a href="/w/render/Target%20Page" class="wikilink">target page</a>' in page
    assert '<a href="/w/render/Target%20Page" class="wikilink">the &lt;target&gt;</a>' in page
    assert '<a href="/w/render/Target%20Page#deep-section" class="wikilink">deep</a>' in page
    assert ('<a href="/w/render/Nowhere%20Yet" class="wikilink missing" title="Nowhere Yet does not exist yet">'
            'Nowhere Yet</a>') in page
    assert "<code>[[Not A Link]]</code>" in page and "[[../bad]]" in page
    assert "<table>" in page
    target = get(site, alice, url(slug, "Target Page")).text
    assert 'id="deep-section"' in target
    assert f'<a href="/w/{slug}/Showcase">Showcase</a>' in target.split("Linked from")[1]


def test_page_paths_with_folders_unicode_and_url_characters(site, people):
    slug = make_wiki(site, people, "paths")
    alice = people["alice"]
    path = "Projekte/Café ü?&x/100% = ½ +1"
    create_page(site, alice, slug, path, "# Café\n\nSee [[Projekte/Café ü?&x/100% = ½ +1]].")
    quoted = quote(path, safe="/")
    page = get(site, alice, f"/w/{slug}/{quoted}")
    assert page.status_code == 200
    assert f'href="/w/{slug}/{quoted}" class="wikilink"' in page.text
    assert f'href="/w/{slug}/-/edit/{quoted}"' in page.text
    index = get(site, alice, f"/w/{slug}/-/pages").text
    assert f'href="/w/{slug}/{quoted}"' in index
    assert get(site, alice, f"/w/{slug}/{quote(path.upper(), safe='/')}").status_code == 200  # case-insensitive
    crumbs = page.text.split('class="crumbs"')[1].split("</p>")[0]
    assert f'href="/w/{slug}/Projekte"' in crumbs and f'href="/w/{slug}/Projekte/Caf%C3%A9%20%C3%BC%3F%26x"' in crumbs


def test_missing_page_offers_to_create_it(site, people):
    slug = make_wiki(site, people, "missing", carol="viewer")
    response = get(site, people["alice"], url(slug, "No Such/Page"))
    assert response.status_code == 404
    assert "Page not found: 'No Such/Page'." in text(response)
    assert f'href="/w/{slug}/-/new?path=No+Such%2FPage"' in response.text
    as_viewer = get(site, people["carol"], url(slug, "No Such/Page"))
    assert as_viewer.status_code == 404 and "/-/new" not in as_viewer.text


def test_wiki_urls_are_not_pages(site, people):
    slug = make_wiki(site, people, "reserved-urls")
    alice = people["alice"]
    for path in ("/-/nothing", "/-/", "/-", "/mcp/x"):
        assert get(site, alice, f"/w/{slug}{path}").status_code == 404, path
    mcp = get(site, alice, f"/w/{slug}/mcp")
    assert mcp.status_code in (404, 405) and "Page not found" not in text(mcp)
    refused = post(site, alice, f"/w/{slug}/-/new", {"path": "MCP", "content": "x"})
    assert refused.status_code == 400
    assert "'mcp' is reserved at the top of a wiki (it is the MCP endpoint); choose another path." in text(refused)


# --- writing pages ----------------------------------------------------------------------------

def test_create_edit_rename_delete_and_restore(site, people):
    slug = make_wiki(site, people, "lifecycle")
    alice = people["alice"]
    form = get(site, alice, f"/w/{slug}/-/new?path=Notes/Plan")
    assert form.status_code == 200 and field(form, "path") == "Notes/Plan" and field(form, "content") == "# Plan\n\n"
    created = create_page(site, alice, slug, "Notes/Plan", "# Plan\n\nfirst", message="start the plan")
    assert created.headers["Location"] == f"/w/{slug}/Notes/Plan"
    content, base = source(site, alice, slug, "Notes/Plan")
    assert content == "# Plan\n\nfirst" and re.fullmatch(r"[0-9a-f]{12}", base)

    saved = post(site, alice, url(slug, "Notes/Plan", "edit"),
                 {"content": "# Plan\r\n\r\nsecond", "base_revision": base, "message": "more"})
    assert saved.status_code == 303 and saved.headers["Location"] == f"/w/{slug}/Notes/Plan"
    assert source(site, alice, slug, "Notes/Plan")[0] == "# Plan\n\nsecond"

    create_page(site, alice, slug, "Linker", "see [[Notes/Plan]]")
    rename_form = get(site, alice, url(slug, "Notes/Plan", "rename"))
    assert field(rename_form, "new_path") == "Notes/Plan"
    renamed = post(site, alice, url(slug, "Notes/Plan", "rename"),
                   {"new_path": "Notes/Roadmap", "base_revision": field(rename_form, "base_revision")})
    assert renamed.status_code == 303 and renamed.headers["Location"] == f"/w/{slug}/Notes/Roadmap"
    assert source(site, alice, slug, "Linker")[0] == "see [[Notes/Roadmap]]"
    assert get(site, alice, url(slug, "Notes/Plan")).status_code == 404

    delete_form = get(site, alice, url(slug, "Notes/Roadmap", "delete"))
    assert delete_form.status_code == 200 and "Delete the page" in delete_form.text
    deleted = post(site, alice, url(slug, "Notes/Roadmap", "delete"),
                   {"base_revision": field(delete_form, "base_revision"), "message": "not needed"})
    assert deleted.status_code == 303 and deleted.headers["Location"] == f"/w/{slug}/-/pages"
    gone = get(site, alice, url(slug, "Notes/Roadmap"))
    assert gone.status_code == 404 and "was deleted" in text(gone)
    assert f'href="/w/{slug}/-/history/Notes/Roadmap"' in gone.text
    index = get(site, alice, f"/w/{slug}/-/pages").text
    assert "Deleted pages" in index and f'href="/w/{slug}/-/history/Notes/Roadmap"' in index

    history = get(site, alice, url(slug, "Notes/Roadmap", "history"))
    assert "This page is deleted" in history.text
    oldest = re.findall(r'action="/w/lifecycle/-/revision/([0-9a-f]{12})/restore"', history.text)[-1]
    restored = post(site, alice, f"/w/{slug}/-/revision/{oldest}/restore")
    assert restored.status_code == 303 and restored.headers["Location"] == f"/w/{slug}/Notes/Roadmap"
    assert source(site, alice, slug, "Notes/Roadmap")[0] == "# Plan\n\nfirst"


def test_create_refuses_an_existing_page_and_keeps_the_text(site, people):
    slug = make_wiki(site, people, "create-twice")
    before = snapshot(site, people["alice"], slug)
    refused = post(site, people["alice"], f"/w/{slug}/-/new", {"path": "home", "content": "my <new> text"})
    assert refused.status_code == 409
    assert (f'A page called Home already exists — <a href="/w/{slug}/">open it</a> or choose another name.'
            in refused.text)
    assert field(refused, "content") == "my <new> text" and field(refused, "path") == "home"
    assert snapshot(site, people["alice"], slug) == before


def test_stale_edit_shows_both_versions_and_loses_nothing(site, people):
    slug = make_wiki(site, people, "stale", bob="editor")
    alice, bob = people["alice"], people["bob"]
    create_page(site, alice, slug, "Shared", "line one\n")
    _, base = source(site, alice, slug, "Shared")
    assert post(site, bob, url(slug, "Shared", "edit"), {"content": "line one\nbob's line\n",
                                                          "base_revision": base}).status_code == 303
    conflict = post(site, alice, url(slug, "Shared", "edit"),
                    {"content": "line one\nalice's <line>\n", "base_revision": base, "message": "mine"})
    assert conflict.status_code == 409
    page = text(conflict)
    said = " ".join(re.sub(r"<[^>]+>", " ", page.split('id="other-change">')[1].split("</p>")[0]).split())
    assert re.fullmatch(r"bob @bob\.test changed Shared in the browser just now : “Update Shared” \(revision [0-9a-f]{8} \), "
                        r"after you started editing\.", said), said
    assert "bob's line" in page.split("Current version")[1].split("Your version")[0]
    assert field(conflict, "content") == "line one\nalice's <line>\n" and field(conflict, "message") == "mine"
    changed = [(kind, html.unescape(re.sub("<[^>]+>", "", line)))
               for kind, line in re.findall(r'<div class="line (add|del)">(.*?)</div>', conflict.text)]
    assert changed == [("del", "-bob's line"), ("add", "+alice's <line>")]
    assert '<div class="line del">-<del>bob</del>&#x27;s ' in conflict.text   # the changed words are marked
    assert "alice&#039;s &lt;line&gt;" in conflict.text and "<line>" not in conflict.text
    current, new_base = source(site, alice, slug, "Shared")
    assert current == "line one\nbob's line\n" and field(conflict, "base_revision") == new_base
    resolved = post(site, alice, url(slug, "Shared", "edit"),
                    {"content": "line one\nbob's line\nalice's line\n", "base_revision": new_base})
    assert resolved.status_code == 303


def test_edit_of_a_page_deleted_meanwhile_keeps_the_text(site, people):
    slug = make_wiki(site, people, "deleted-meanwhile")
    alice = people["alice"]
    create_page(site, alice, slug, "Doomed", "old")
    _, base = source(site, alice, slug, "Doomed")
    assert post(site, alice, url(slug, "Doomed", "delete"), {}).status_code == 303
    conflict = post(site, alice, url(slug, "Doomed", "edit"), {"content": "precious words", "base_revision": base})
    assert conflict.status_code == 409 and "someone deleted or renamed it" in text(conflict)
    assert field(conflict, "content") == "precious words"
    assert f'action="/w/{slug}/-/new"' in conflict.text


def test_concurrent_editors_over_http_exactly_one_wins(site, people):
    """Two browsers submit edits from the same base revision at the same moment, several times."""
    slug = make_wiki(site, people, "race", bob="editor")
    alice, bob = people["alice"], people["bob"]
    create_page(site, alice, slug, "Race", "start\n")
    tokens = {name: csrf(site, people[name]) for name in ("alice", "bob")}
    for round_ in range(5):
        _, base = source(site, alice, slug, "Race")
        texts = {"alice": f"alice wins round {round_}\n", "bob": f"bob wins round {round_}\n"}
        barrier, results = threading.Barrier(2), {}

        def submit(name):
            barrier.wait()
            results[name] = people[name].post(
                site.url + url(slug, "Race", "edit"), allow_redirects=False,
                data={"csrf_token": tokens[name], "content": texts[name], "base_revision": base})

        threads = [threading.Thread(target=submit, args=(name,)) for name in texts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(r.status_code for r in results.values()) == [303, 409]
        winner = next(name for name, r in results.items() if r.status_code == 303)
        loser = "bob" if winner == "alice" else "alice"
        assert source(site, alice, slug, "Race")[0] == texts[winner]
        screen = results[loser]
        assert field(screen, "content") == texts[loser]
        assert texts[winner].strip() in text(screen).split("Current version")[1]
    history = get(site, alice, url(slug, "Race", "history")).text
    assert len(re.findall(r'name="to" value="([0-9a-f]{12})"', history)) == 6  # create + one winner a round


# --- history, revisions, diffs, recent changes, search --------------------------------------------

def test_history_old_revision_and_diff(site, people):
    slug = make_wiki(site, people, "history", carol="viewer")
    alice = people["alice"]
    create_page(site, alice, slug, "Log", "alpha\nbeta\n", message="first <draft>")
    _, first = source(site, alice, slug, "Log")
    post(site, alice, url(slug, "Log", "edit"), {"content": "alpha\ngamma\n", "base_revision": first,
                                                  "message": "swap beta"})
    _, second = source(site, alice, slug, "Log")

    history = get(site, alice, url(slug, "Log", "history"))
    assert history.status_code == 200
    ids = re.findall(r'name="to" value="([0-9a-f]{12})"', history.text)
    assert ids == [second, first]
    assert "first &lt;draft&gt;" in history.text and "swap beta" in history.text and "alice.test" in history.text
    assert f'href="/w/{slug}/-/diff?from={first}&amp;to={second}"' in history.text
    assert f'action="/w/{slug}/-/revision/{first}/restore"' in history.text
    assert f'action="/w/{slug}/-/revision/{second}/restore"' not in history.text  # the current one

    old = get(site, alice, f"/w/{slug}/-/revision/{first[:7]}")
    assert old.status_code == 200 and "<p>alpha\nbeta</p>" in old.text and "Restore this version" in old.text
    assert f'href="/w/{slug}/-/diff?from={first}&amp;to={second}"' in old.text

    diff = get(site, alice, f"/w/{slug}/-/diff", params={"from": first, "to": second})
    assert diff.status_code == 200
    assert '<div class="line del">-beta</div>' in diff.text and '<div class="line add">+gamma</div>' in diff.text
    same = get(site, alice, f"/w/{slug}/-/diff", params={"from": first, "to": first})
    assert "The two versions have the same text." in same.text

    viewer_history = get(site, people["carol"], url(slug, "Log", "history")).text
    assert "/restore" not in viewer_history and 'name="from"' in viewer_history


@pytest.mark.parametrize("query, status, message", [
    ({"from": "zzzzzzz", "to": "0123456"}, 400,
     "'zzzzzzz' is not a revision id; revision ids are hexadecimal, like 3f9a2c1b7d04."),
    ({"from": "abc", "to": "0123456"}, 400, "'abc' is too short to name a revision; give at least 7 characters."),
    ({"from": "0123456789ab", "to": "0123456789ab"}, 404, "No revision '0123456789ab' in this wiki."),
    ({"to": "0123456"}, 400, "Choose two revisions to compare."),
])
def test_diff_and_revision_refuse_bad_revision_ids(site, people, query, status, message):
    slug = "history-bad" if get(site, people["alice"], "/w/history-bad/").status_code == 200 \
        else make_wiki(site, people, "history-bad")
    response = get(site, people["alice"], f"/w/{slug}/-/diff", params=query)
    assert response.status_code == status and message in text(response)
    revision = get(site, people["alice"], f"/w/{slug}/-/revision/{query.get('from', 'x')}")
    assert revision.status_code >= 400


def test_recent_changes_list_every_kind_of_change(site, people):
    slug = make_wiki(site, people, "recent")
    alice = people["alice"]
    create_page(site, alice, slug, "Fleeting <note>", "x")
    post(site, alice, url(slug, "Fleeting <note>", "attachments"), files={"file": ("a.txt", b"hi")})
    post(site, alice, url(slug, "Fleeting <note>", "rename"), {"new_path": "Kept"})
    post(site, alice, url(slug, "Kept", "delete"), {"message": "bye <now>"})
    recent = get(site, alice, f"/w/{slug}/-/recent")
    kinds = re.findall(r'class="kind kind-(\w+)"', recent.text)
    assert kinds[:4] == ["delete", "rename", "attachment", "create"]
    assert "bye &lt;now&gt;" in recent.text and "Fleeting &lt;note&gt;" in recent.text
    assert f'href="/w/{slug}/Kept"' not in recent.text  # deleted pages are not linked as pages


def test_search_escapes_then_highlights_snippets(site, people):
    slug = make_wiki(site, people, "search")
    alice = people["alice"]
    create_page(site, alice, slug, "Soil <b>Notes</b>", "Compost <script>alert(1)</script> makes rich soil.\n")
    found = get(site, alice, f"/w/{slug}/-/search", params={"q": "compost"})
    assert found.status_code == 200
    assert f'href="/w/{slug}/Soil%20%3Cb%3ENotes%3C/b%3E">Soil &lt;b&gt;Notes&lt;/b&gt;</a>' in found.text
    assert "<mark>Compost</mark> &lt;script&gt;alert(1)&lt;/script&gt; makes rich soil." in found.text
    assert 'value="compost"' in found.text  # the search box keeps the query
    prefix = get(site, alice, f"/w/{slug}/-/search", params={"q": "comp*"})
    assert "<mark>Compost</mark>" in prefix.text
    phrase = get(site, alice, f"/w/{slug}/-/search", params={"q": '"rich soil"'})
    assert "<mark>rich</mark> <mark>soil</mark>" in phrase.text or "<mark>rich soil</mark>" in phrase.text
    none = get(site, alice, f"/w/{slug}/-/search", params={"q": "<img src=x>"})
    assert "No page matches" in none.text and "<img src=x>" not in none.text
    assert f'href="/w/{slug}/-/new?path=%3Cimg+src%3Dx%3E"' in none.text


@pytest.mark.parametrize("query", ['"', "*", "NEAR(", "-", "compost -", "AND", "OR compost", '"unbalanced',
                                   "col:umn", "^start", "NOT", "(", ")", "{a b}", "'", "\\", "%", "‮"])
def test_search_survives_fts_syntax(site, people, query):
    slug = "search-syntax"
    if get(site, people["alice"], f"/w/{slug}/").status_code != 200:
        make_wiki(site, people, slug)
    response = get(site, people["alice"], f"/w/{slug}/-/search", params={"q": query})
    assert response.status_code == 200 and 'role="search"' in response.text


# --- attachments ------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def test_attachments_upload_list_download_and_delete(site, people):
    slug = make_wiki(site, people, "files")
    alice = people["alice"]
    create_page(site, alice, slug, "Album/One", "photos")
    page = url(slug, "Album/One", "attachments")
    assert "This page has no attachments." in get(site, alice, page).text
    uploaded = post(site, alice, page, {"message": "a picture"}, files={"file": ("Photo ü.png", PNG, "image/png")})
    assert uploaded.status_code == 303 and uploaded.headers["Location"] == page
    listing = get(site, alice, page).text
    download = f"/w/{slug}/-/attachment/Album/One/Photo%20%C3%BC.png"
    assert f'href="{download}"' in listing and "image/png" in listing and '<img class="thumb"' in listing
    view = get(site, alice, url(slug, "Album/One")).text
    assert f'href="{download}"' in view

    served = get(site, alice, download)
    assert served.status_code == 200 and served.content == PNG
    assert served.headers["Content-Type"] == "image/png"
    assert served.headers["Content-Disposition"] == \
        "inline; filename=\"Photo _.png\"; filename*=UTF-8''Photo%20%C3%BC.png"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in served.headers["Content-Security-Policy"]

    assert get(site, alice, f"/w/{slug}/-/attachment/Album/One/photo%20%C3%9C.PNG").content == PNG  # any case
    removed = post(site, alice, f"/w/{slug}/-/delete-attachment/Album/One", {"filename": "Photo ü.png"})
    assert removed.status_code == 303
    assert get(site, alice, download).status_code == 404
    missing = post(site, alice, f"/w/{slug}/-/delete-attachment/Album/One", {"filename": "nope.txt"})
    assert missing.status_code == 404 and "Page 'Album/One' has no attachment 'nope.txt'." in text(missing)


@pytest.mark.parametrize("filename, data, served_type, disposition", [
    ("evil.html", b"<html><script>alert(1)</script></html>", "application/octet-stream", "attachment"),
    ("evil.png", b"<!doctype html><script>alert(1)</script>", "application/octet-stream", "attachment"),
    ("pic.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
     "application/octet-stream", "attachment"),
    ("notes.txt", "plain <b>text</b> ü".encode(), "text/plain; charset=utf-8", "inline"),
    ("data.bin", bytes(range(256)), "application/octet-stream", "attachment"),
])
def test_attachments_never_run_in_our_origin(site, people, filename, data, served_type, disposition):
    slug = "file-types"
    alice = people["alice"]
    if get(site, alice, f"/w/{slug}/").status_code != 200:
        make_wiki(site, people, slug)
    assert post(site, alice, f"/w/{slug}/-/attachments/Home", files={"file": (filename, data, "image/png")}) \
        .status_code == 303
    served = get(site, alice, f"/w/{slug}/-/attachment/Home/{quote(filename)}")
    assert served.content == data
    assert served.headers["Content-Type"] == served_type
    assert served.headers["Content-Disposition"].startswith(disposition + ";")
    assert served.headers["X-Content-Type-Options"] == "nosniff"


def test_attachment_names_with_html_are_escaped(site, people):
    slug = make_wiki(site, people, "file-names")
    alice = people["alice"]
    name = "<img src=x onerror=alert(1)>.txt"
    assert post(site, alice, f"/w/{slug}/-/attachments/Home", files={"file": (name, b"x")}).status_code == 303
    listing = get(site, alice, f"/w/{slug}/-/attachments/Home").text
    assert "<img src=x" not in listing and "&lt;img src=x onerror=alert(1)&gt;.txt" in listing
    served = get(site, alice, f"/w/{slug}/-/attachment/Home/{quote(name, safe='')}")
    assert served.status_code == 200 and served.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert served.headers["Content-Disposition"].startswith('inline; filename="<img src=x onerror=alert(1)>.txt"')


def test_attachment_size_limits(site, people):
    slug = make_wiki(site, people, "big-files")
    alice = people["alice"]
    before = snapshot(site, alice, slug)
    too_big = post(site, alice, f"/w/{slug}/-/attachments/Home", files={"file": ("big.bin", b"\0" * (10 * 2**20 + 1))})
    assert too_big.status_code == 413
    assert "The file is 10485761 bytes; attachments are at most 10485760 bytes (10 MB)." in text(too_big)
    huge = post(site, alice, f"/w/{slug}/-/attachments/Home", files={"file": ("huge.bin", b"\0" * (17 * 2**20))})
    assert huge.status_code == 413
    no_file = post(site, alice, f"/w/{slug}/-/attachments/Home", {"message": "x"})
    assert no_file.status_code == 400 and "Choose a file to upload." in text(no_file)
    assert snapshot(site, alice, slug) == before


# --- settings ---------------------------------------------------------------------------------

def test_settings_change_title_description_and_visibility(site, people):
    slug = make_wiki(site, people, "wiki-settings")
    alice = people["alice"]
    page = get(site, alice, f"/w/{slug}/-/settings")
    assert page.status_code == 200
    assert f"{site.url}/w/{slug}/mcp" in page.text
    saved = post(site, alice, f"/w/{slug}/-/settings",
                 {"title": "New <title>", "description": "About <this>", "visibility": "public"})
    assert saved.status_code == 303
    page = get(site, alice, f"/w/{slug}/-/settings")
    assert field(page, "title") == "New <title>" and field(page, "description") == "About <this>"
    assert 'value="public" checked' in page.text
    assert "New &lt;title&gt;" in get(site, alice, "/").text
    for data, message in [({"title": "", "visibility": "public"},
                           "A wiki title is 1 to 200 characters, without bidirectional override characters."),
                          ({"title": "x", "visibility": "everyone"},
                           "Visibility is 'private' (members only) or 'public' (anyone may read)."),
                          ({"title": "x‮", "visibility": "public"},
                           "A wiki title is 1 to 200 characters, without bidirectional override characters.")]:
        refused = post(site, alice, f"/w/{slug}/-/settings", data)
        assert refused.status_code == 400 and message in text(refused)
    assert field(get(site, alice, f"/w/{slug}/-/settings"), "title") == "New <title>"


def test_members_add_change_role_and_remove(site, people):
    slug = make_wiki(site, people, "members")
    alice, bob = people["alice"], people["bob"]
    settings = f"/w/{slug}/-/settings"
    assert post(site, alice, settings + "/members", {"member": BOB, "role": "viewer"}).status_code == 303
    assert post(site, alice, settings + "/members", {"member": "did:plc:" + "e" * 24, "role": "editor"}) \
        .status_code == 303
    page = get(site, alice, settings).text
    assert "bob.test" in page and "has not signed in yet" in page
    assert get(site, bob, f"/w/{slug}/").status_code == 200
    assert get(site, bob, url(slug, "Home", "edit")).status_code == 403

    assert post(site, alice, settings + "/members/role", {"did": BOB, "role": "editor"}).status_code == 303
    assert get(site, bob, url(slug, "Home", "edit")).status_code == 200

    for path, data, status, message in [
        ("/members", {"member": BOB, "role": "viewer"}, 409,
         "That person is already a member of this wiki; change their role in the list above instead."),
        ("/members", {"member": "did:foo", "role": "viewer"}, 400, "'did:foo' is not a did:plc or did:web identifier."),
        ("/members", {"member": "", "role": "viewer"}, 400, "Type the person's handle (like alice.bsky.social) or DID."),
        ("/members", {"member": CAROL, "role": "god"}, 400, "'god' is not a role; choose owner, editor or viewer."),
        ("/members/role", {"did": ALICE, "role": "editor"}, 409,
         "This is the wiki's only owner. Make someone else an owner first."),
        ("/members/remove", {"did": ALICE}, 409, "This is the wiki's only owner. Make someone else an owner first."),
        ("/members/remove", {"did": CAROL}, 404, f"{CAROL} is not a member of this wiki."),
    ]:
        refused = post(site, alice, settings + path, data)
        assert refused.status_code == status and message in text(refused), (path, data)

    assert post(site, alice, settings + "/members/remove", {"did": BOB}).status_code == 303
    assert get(site, bob, f"/w/{slug}/").status_code == 404

    assert post(site, alice, settings + "/members", {"member": BOB, "role": "owner"}).status_code == 303
    stepped_down = post(site, alice, settings + "/members/role", {"did": ALICE, "role": "viewer"})
    assert stepped_down.status_code == 303 and stepped_down.headers["Location"] == f"/w/{slug}/"
    assert get(site, alice, settings).status_code == 403
    left = post(site, bob, settings + "/members/remove", {"did": BOB})
    assert left.status_code == 409  # bob is now the only owner
    assert post(site, bob, settings + "/members/remove", {"did": ALICE}).status_code == 303


def test_export_and_import(site, people):
    slug = make_wiki(site, people, "porting")
    alice = people["alice"]
    create_page(site, alice, slug, "Folder/Page", "exported text")
    exported = get(site, alice, f"/w/{slug}/-/settings/export")
    assert exported.headers["Content-Type"] == "application/zip"
    assert re.fullmatch(rf'attachment; filename="{slug}-\d{{4}}-\d\d-\d\d.zip"', exported.headers["Content-Disposition"])
    with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
        assert archive.read("pages/Folder/Page.md") == b"exported text"
        assert json.loads(archive.read("history.json"))["wiki"]["slug"] == slug

    archive = zip_of({"Ideas/New.md": "# New <idea>", "Home.md": "clash", "../evil.md": "x", "pic.png": PNG,
                      "latin1.md": "caf\xe9".encode("latin-1"), "<b>.md": "bold"})
    report = post(site, alice, f"/w/{slug}/-/settings/import", files={"archive": ("pages.zip", archive)})
    assert report.status_code == 200
    page = text(report)
    assert "2 pages created, 4 files skipped." in page
    assert "a page with this path already exists" in page and "not a Markdown file (.md)" in page
    assert "'../evil' has a '.' or '..' segment" in page and "The file is not valid UTF-8" in page
    assert "&lt;b&gt;" in report.text and "<b>.md" not in report.text
    assert source(site, alice, slug, "Ideas/New")[0] == "# New <idea>"
    assert source(site, alice, slug, "Home")[0] != "clash"

    before = snapshot(site, alice, slug)
    for upload, message in [(("notes.zip", b"not a zip at all"),
                             "That file is not a zip archive; export a folder of Markdown files as .zip."),
                            (None, "Choose a file to upload.")]:
        refused = post(site, alice, f"/w/{slug}/-/settings/import", files={"archive": upload} if upload else None,
                       data={"x": "y"})
        assert refused.status_code == 400 and message in text(refused)
    assert snapshot(site, alice, slug) == before


def test_delete_wiki_needs_the_slug_typed(site, people):
    slug = make_wiki(site, people, "doomed-wiki", bob="editor")
    alice = people["alice"]
    refused = post(site, alice, f"/w/{slug}/-/settings/delete", {"confirm": "Doomed-Wiki"})
    assert refused.status_code == 400 and "To delete this wiki, type its slug, doomed-wiki, exactly." in text(refused)
    assert get(site, alice, f"/w/{slug}/").status_code == 200
    assert post(site, people["bob"], f"/w/{slug}/-/settings/delete", {"confirm": slug}).status_code == 403
    deleted = post(site, alice, f"/w/{slug}/-/settings/delete", {"confirm": slug})
    assert deleted.status_code == 303 and deleted.headers["Location"] == "/"
    assert get(site, alice, f"/w/{slug}/").status_code == 404
    assert "/w/doomed-wiki/" not in get(site, people["bob"], "/").text


# --- who may do what --------------------------------------------------------------------------

# Every wiki route: (method, path under /w/<slug>, form data). {rev} is a real revision id.
READS = ["/", "/Home", "/-/pages", "/-/recent", "/-/search?q=home", "/-/history/Home", "/-/revision/{rev}",
         "/-/diff?from={rev}&to={rev}", "/-/attachments/Home", "/-/attachment/Home/a.txt"]
EDITS = [("GET", "/-/new", {}), ("POST", "/-/new", {"path": "X", "content": "x"}),
         ("GET", "/-/edit/Home", {}), ("POST", "/-/edit/Home", {"content": "x", "base_revision": "{rev}"}),
         ("GET", "/-/rename/Home", {}), ("POST", "/-/rename/Home", {"new_path": "Y"}),
         ("GET", "/-/delete/Home", {}), ("POST", "/-/delete/Home", {}),
         ("POST", "/-/revision/{rev}/restore", {}),
         ("POST", "/-/attachments/Home", {}), ("POST", "/-/delete-attachment/Home", {"filename": "a.txt"})]
OWNER_ONLY = [("GET", "/-/settings", {}), ("POST", "/-/settings", {"title": "T", "visibility": "public"}),
              ("POST", "/-/settings/members", {"member": DAVE, "role": "owner"}),
              ("POST", "/-/settings/members/role", {"did": ALICE, "role": "viewer"}),
              ("POST", "/-/settings/members/remove", {"did": ALICE}),
              ("GET", "/-/settings/export", {}), ("POST", "/-/settings/import", {}),
              ("POST", "/-/settings/delete", {"confirm": "{slug}"})]


@pytest.fixture(scope="module")
def guarded(site, people):
    """A private wiki where bob edits and carol views, with an attachment; and its revision."""
    slug = make_wiki(site, people, "guarded", bob="editor", carol="viewer")
    post(site, people["alice"], "/w/guarded/-/attachments/Home", files={"file": ("a.txt", b"secret")})
    return slug, source(site, people["alice"], slug, "Home")[1]


def request(site, browser, method, path, data, slug, rev):
    path = f"/w/{slug}" + path.format(rev=rev)
    data = {k: v.format(rev=rev, slug=slug) for k, v in data.items()}
    return get(site, browser, path) if method == "GET" else post(site, browser, path, data)


def test_private_wiki_is_a_404_to_outsiders_like_a_missing_one(site, people, guarded):
    slug, rev = guarded
    before = snapshot(site, people["alice"], slug)
    for who in ("anon", "dave"):
        browser = people[who]
        nowhere = get(site, browser, "/w/no-such-wiki/")
        assert nowhere.status_code == 404 and HIDDEN in text(nowhere)
        if who == "anon":  # signing in comes back here
            assert 'href="/auth/login?return_to=%2Fw%2Fno-such-wiki%2F"' in nowhere.text
        for method, path, data in [("GET", p, {}) for p in READS] + EDITS + OWNER_ONLY:
            response = request(site, browser, method, path, data, slug, rev)
            assert response.status_code == 404, (who, method, path)
            nowhere = request(site, browser, method, path, data, "no-such-wiki", rev)
            assert response.text == nowhere.text.replace("no-such-wiki", slug)
    assert snapshot(site, people["alice"], slug) == before


def test_viewer_reads_without_edit_controls_and_is_refused_server_side(site, people, guarded):
    slug, rev = guarded
    carol = people["carol"]
    before = snapshot(site, people["alice"], slug)
    for path in READS:
        response = request(site, carol, "GET", path, {}, slug, rev)
        assert response.status_code == 200, path
        if "text/html" in response.headers["Content-Type"]:
            for control in ("/-/new", "/-/edit/", "/-/rename/", "/-/delete", "/restore", "/-/settings",
                            'type="file"'):
                assert control not in response.text, (path, control)
            assert response.text.count('method="post"') == 1  # signing out
    for method, path, data in EDITS:
        response = request(site, carol, method, path, data, slug, rev)
        assert response.status_code == 403, (method, path)
        assert "You can read this wiki but not change it. Ask one of its owners to make you an editor." \
            in text(response)
    for method, path, data in OWNER_ONLY:
        response = request(site, carol, method, path, data, slug, rev)
        assert response.status_code == 403 and "Only the wiki's owners can do that." in text(response)
    assert snapshot(site, people["alice"], slug) == before


def test_editor_edits_but_has_no_settings(site, people, guarded):
    slug, rev = guarded
    bob = people["bob"]
    home = get(site, bob, f"/w/{slug}/").text
    assert f"/w/{slug}/-/edit/Home" in home and f"/w/{slug}/-/settings" not in home
    for method, path, data in OWNER_ONLY:
        assert request(site, bob, method, path, data, slug, rev).status_code == 403, path


def test_public_wiki_is_readable_by_anyone_and_writable_by_members_only(site, people):
    slug = make_wiki(site, people, "open-wiki")
    alice = people["alice"]
    post(site, alice, f"/w/{slug}/-/attachments/Home", files={"file": ("a.txt", b"public")})
    assert get(site, people["anon"], f"/w/{slug}/").status_code == 404
    post(site, alice, f"/w/{slug}/-/settings", {"title": "Open", "visibility": "public"})
    rev = source(site, alice, slug, "Home")[1]
    before = snapshot(site, alice, slug)
    for who, refusal in [("anon", "Sign in to change this wiki."),
                         ("dave", "You can read this wiki but not change it.")]:
        browser = people[who]
        for path in READS:
            response = request(site, browser, "GET", path, {}, slug, rev)
            assert response.status_code == 200, (who, path)
            assert "/-/edit/" not in response.text
        home = get(site, browser, f"/w/{slug}/")
        assert 'class="badge"' in home.text
        for method, path, data in EDITS:
            response = request(site, browser, method, path, data, slug, rev)
            assert response.status_code == 403 and refusal in text(response), (who, path)
        for method, path, data in OWNER_ONLY:
            assert request(site, browser, method, path, data, slug, rev).status_code == 403
    assert snapshot(site, alice, slug) == before
    assert "/w/open-wiki/" not in get(site, people["dave"], "/").text  # readable is not a membership


def test_posts_need_the_csrf_token(site, people, guarded):
    slug, rev = guarded
    before = snapshot(site, people["alice"], slug)
    for method, path, data in EDITS + OWNER_ONLY:
        if method == "POST":
            response = people["alice"].post(site.url + f"/w/{slug}" + path.format(rev=rev), data=data,
                                            allow_redirects=False)
            assert response.status_code == 403 and "This form has expired" in text(response), path
    assert snapshot(site, people["alice"], slug) == before


def test_add_member_by_handle_resolves_and_verifies_it(tmp_path):
    """Handles are resolved and checked both ways, as the login does, against a fake DNS and PLC."""
    from fakedns import FakeDNS
    from fakepds import FakePDS
    with FakeDNS() as dns_server, FakePDS() as pds:
        srv = start_server(tmp_path / "data", env_extra={
            "ROBOTWTF_INSECURE_DEV_NETWORK": "1", "ROBOTWTF_PLC_URL": pds.plc_url,
            "ROBOTWTF_DNS_RESOLVER": dns_server.address})
        try:
            srv.cli("user", "add", ALICE, "--username", "alice")
            alice = srv.login("alice")
            make_wiki(srv, {"alice": alice}, "team")
            for handle in ("erin.test", "liar.test"):
                dns_server.txt(f"_atproto.{handle}", f"did={pds.add_account(handle)}")
            pds.plc[pds.accounts["liar.test"]]["alsoKnownAs"] = ["at://someone-else.test"]
            added = post(srv, alice, "/w/team/-/settings/members", {"member": "@Erin.Test", "role": "editor"})
            assert added.status_code == 303, text(added)
            assert pds.accounts["erin.test"] in get(srv, alice, "/w/team/-/settings").text
            for handle, message in [("liar.test", "does not claim the handle"), ("nobody.test", ""),
                                    ("not a handle!", "is neither a handle nor a DID")]:
                refused = post(srv, alice, "/w/team/-/settings/members", {"member": handle, "role": "viewer"})
                assert refused.status_code == 400, handle
                assert message in text(refused) and "Check the handle, or add the person by DID." in text(refused)
                assert field(refused, "member") == handle
            assert get(srv, alice, "/w/team/-/settings").text.count("settings/members/remove") == 2
        finally:
            srv.stop()


# --- bad input --------------------------------------------------------------------------------

BAD_PATHS = [
    ("../x", "'../x' has a '.' or '..' segment; page paths can't climb folders."),
    ("a/../../b", "'a/../../b' has a '.' or '..' segment; page paths can't climb folders."),
    ("a//b", "'a//b' has an empty segment: a page path may not start or end with '/' or contain '//'."),
    ("/abs", "'/abs' has an empty segment: a page path may not start or end with '/' or contain '//'."),
    (".git/config", "'.git/config' has a segment starting with '.'; hidden names such as '.git' are not allowed "
                    "in page paths."),
    ("a\x00b", "A page path may not contain NUL characters."),
    ("a\nb", "A page path may not contain control characters (newlines, tabs and the like)."),
    ("x" * 300, "A page path is at most 255 bytes of UTF-8; this one is 300. Choose a shorter path."),
    ("é" * 128, "A page path is at most 255 bytes of UTF-8; this one is 256. Choose a shorter path."),
    ("evil\u202etxt.exe", "A page path may not contain bidirectional override characters (U+202A to U+202E, "
                          "U+2066 to U+2069)."),
    ("a[b]", "A page path may not contain [ ] | # or \\ (they would break WikiLinks and URLs)."),
    ("a\\b", "A page path may not contain [ ] | # or \\ (they would break WikiLinks and URLs)."),
    ("-/settings", "'-/settings' has a segment starting with '-'; those URLs belong to the wiki itself."),
    ("", "A page path is required."),
    ("   ", "A page path is required."),
]


@pytest.fixture(scope="module")
def bad_input_wiki(site, people):
    return make_wiki(site, people, "bad-input")


@pytest.mark.parametrize("path, message", BAD_PATHS)
def test_bad_page_paths_are_refused_everywhere(site, people, bad_input_wiki, path, message):
    slug, alice = bad_input_wiki, people["alice"]
    before = snapshot(site, alice, slug)
    created = post(site, alice, f"/w/{slug}/-/new", {"path": path, "content": "<b>kept</b>"})
    assert created.status_code == 400 and message in text(created)
    assert field(created, "content") == "<b>kept</b>"
    renamed = post(site, alice, url(slug, "Home", "rename"), {"new_path": path})
    assert renamed.status_code == 400 and message in text(renamed)
    if "\n" in path:  # bottle's routes don't match a line break: no page, nothing else either
        assert get(site, alice, f"/w/{slug}/{quote(path, safe='')}").status_code == 404
    elif path.strip() and not path.startswith(("/", "-")):
        viewed = get(site, alice, f"/w/{slug}/{quote(path, safe='')}")
        assert viewed.status_code == 400 and message in text(viewed)
        edited = post(site, alice, f"/w/{slug}/-/edit/{quote(path, safe='')}", {"content": "x", "base_revision": "0" * 12})
        assert edited.status_code in (400, 409) and message in text(edited)
    assert snapshot(site, alice, slug) == before


def test_dot_segments_in_urls_are_refused(site, people, bad_input_wiki):
    slug, alice = bad_input_wiki, people["alice"]
    response = get(site, alice, f"/w/{slug}/%2E%2E/%2E%2E/etc/passwd")
    assert response.status_code == 400 and "has a '.' or '..' segment" in text(response)
    assert get(site, alice, f"/w/{slug}/-/history/..%2F..%2Fx").status_code == 400


def test_oversize_content_is_413_and_changes_nothing(site, people, bad_input_wiki):
    slug, alice = bad_input_wiki, people["alice"]
    before = snapshot(site, alice, slug)
    _, base = source(site, alice, slug, "Home")
    big = "x" * 1_000_001
    message = "Content too large (1000001 bytes). Maximum size is 1000000 bytes; split it into several pages."
    for path, data in [(f"/w/{slug}/-/new", {"path": "Big", "content": big}),
                       (url(slug, "Home", "edit"), {"content": big, "base_revision": base})]:
        refused = post(site, alice, path, data)
        assert refused.status_code == 413 and message in text(refused)
    multibyte = post(site, alice, url(slug, "Home", "edit"), {"content": "é" * 500_001, "base_revision": base})
    assert multibyte.status_code == 413 and "Content too large (1000002 bytes)" in text(multibyte)
    assert snapshot(site, alice, slug) == before


def test_control_characters_in_content_are_refused(site, people, bad_input_wiki):
    slug, alice = bad_input_wiki, people["alice"]
    before = snapshot(site, alice, slug)
    refused = post(site, alice, f"/w/{slug}/-/new", {"path": "Ctl", "content": "ok\nbad \x01 here"})
    assert refused.status_code == 400
    assert "The content contains the control character U+0001 on line 2; remove it and try again." in text(refused)
    assert snapshot(site, alice, slug) == before


def test_invalid_utf8_is_400_with_the_field_named(site, people, bad_input_wiki):
    slug, alice = bad_input_wiki, people["alice"]
    before = snapshot(site, alice, slug)
    token = csrf(site, alice).encode()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    raw = alice.post(site.url + f"/w/{slug}/-/new", data=b"csrf_token=" + token + b"&path=Ok&content=caf%E9",
                     headers=form, allow_redirects=False)
    assert raw.status_code == 400
    assert "The form field 'content' is not valid UTF-8 (bad byte at offset 3). Save it as UTF-8 and try again." \
        in text(raw)
    unencoded = alice.post(site.url + f"/w/{slug}/-/new", data=b"csrf_token=" + token + b"&path=\xff&content=x",
                           headers=form, allow_redirects=False)
    assert unencoded.status_code == 400 and "The form field 'path' is not valid UTF-8" in text(unencoded)
    boundary = "XyZ"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n".encode() + token +
            f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\n".encode() + b"\xff\xfe" +
            f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nhi\r\n"
            f"--{boundary}--\r\n".encode())
    multipart = alice.post(site.url + f"/w/{slug}/-/attachments/Home", data=body, allow_redirects=False,
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert multipart.status_code == 400 and "The form is not valid UTF-8 text." in text(multipart)
    broken = alice.post(site.url + f"/w/{slug}/-/attachments/Home", data=b"--XyZ\r\nnonsense", allow_redirects=False,
                        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert broken.status_code == 400
    query = get(site, alice, f"/w/{slug}/-/search?q=%FF")
    assert query.status_code == 400 and "The parameter 'q' is not valid UTF-8" in text(query)
    path = get(site, alice, f"/w/{slug}/caf%E9")
    assert path.status_code == 400 and path.text == "The URL is not valid UTF-8.\n"
    assert snapshot(site, alice, slug) == before


def test_html_in_page_titles_is_escaped_everywhere(site, people, bad_input_wiki):
    slug, alice = bad_input_wiki, people["alice"]
    evil = "<img src=x onerror=alert(1)>"
    create_page(site, alice, slug, "Evil <i>path</i>", f"---\ntitle: {evil}\ntags: [{evil}]\n---\nbody {evil}\n")
    for path in (url(slug, "Evil <i>path</i>"), f"/w/{slug}/-/pages", f"/w/{slug}/-/recent",
                 url(slug, "Evil <i>path</i>", "history"), f"/w/{slug}/-/search?q=body",
                 url(slug, "Evil <i>path</i>", "edit"), url(slug, "Evil <i>path</i>", "attachments")):
        page = get(site, alice, path)
        assert page.status_code == 200, path
        assert "<img src=x" not in page.text and "<i>path" not in page.text, path
    view = get(site, alice, url(slug, "Evil <i>path</i>")).text
    assert "<title>&lt;img src=x onerror=alert(1)&gt; · Bad-Input · robotwtf</title>" in view
    assert '<span class="tag">#&lt;img src=x onerror=alert(1)&gt;</span>' in view


def test_stale_and_malformed_base_revisions(site, people, bad_input_wiki):
    slug, alice = bad_input_wiki, people["alice"]
    create_page(site, alice, slug, "Versioned", "v1")
    _, base = source(site, alice, slug, "Versioned")
    before = snapshot(site, alice, slug)
    for base_revision, status, message in [
        ("zzzzzzz", 400, "'zzzzzzz' is not a revision id; revision ids are hexadecimal, like 3f9a2c1b7d04."),
        ("abc", 400, "'abc' is too short to name a revision; give at least 7 characters."),
        ("0123456789ab", 409, "This page changed while you were editing"),
        ("", 400, "The form lost the revision it was based on."),
    ]:
        refused = post(site, alice, url(slug, "Versioned", "edit"), {"content": "v2", "base_revision": base_revision})
        assert refused.status_code == status and message in text(refused), base_revision
        assert field(refused, "content") == "v2"
    renamed = post(site, alice, url(slug, "Versioned", "rename"), {"new_path": "V", "base_revision": "0123456789ab"})
    assert renamed.status_code == 409
    deleted = post(site, alice, url(slug, "Versioned", "delete"), {"base_revision": "0123456789ab"})
    assert deleted.status_code == 409
    restored = post(site, alice, f"/w/{slug}/-/revision/0123456789ab/restore")
    assert restored.status_code == 404 and "No revision '0123456789ab' in this wiki." in text(restored)
    assert snapshot(site, alice, slug) == before
    assert source(site, alice, slug, "Versioned") == ("v1", base)


def test_wrong_content_types_for_forms(site, people, bad_input_wiki):
    slug, alice = bad_input_wiki, people["alice"]
    before = snapshot(site, alice, slug)
    as_json = alice.post(site.url + f"/w/{slug}/-/new", json={"csrf_token": csrf(site, alice), "path": "J",
                                                               "content": "x"}, allow_redirects=False)
    assert as_json.status_code == 403  # not a form: no token found, nothing written
    text_body = alice.post(site.url + f"/w/{slug}/-/new", data="path=J&content=x",
                           headers={"Content-Type": "text/plain"}, allow_redirects=False)
    assert text_body.status_code == 403
    assert snapshot(site, alice, slug) == before
