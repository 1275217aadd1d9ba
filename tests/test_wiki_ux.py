"""The reading and editing side of the wiki (issue 11) over real HTTP against the real server:
the preview endpoint and who may use it, Markdown features as rendered, attachments referred to by
file name, SVG images shown by <img> but downloaded when visited, folder pages, the page tree,
word-prefix search with counts, and a body over a size limit coming back as an editor holding the
text. The same things in a real browser are in test_wiki_ux_browser.py."""

from __future__ import annotations

import html
import re

import pytest
import requests

from conftest import open_db, start_server
from test_browser import tiny_png

ALICE, BOB, CAROL = (f"did:plc:{name * 24}"[:32] for name in ("a", "b", "c"))
SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script>'
       b'<rect width="10" height="10" fill="red"/></svg>')


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("wiki-ux") / "data")
    for name, did in (("alice", ALICE), ("bob", BOB), ("carol", CAROL)):
        srv.cli("user", "add", did, "--username", name, "--handle", f"{name}.test")
    srv.cli("wiki", "create", "garden", "--owner", "alice")
    yield srv
    srv.stop()


class Browser:
    """A requests session that behaves like a browser on the site: signed in (or not), with its
    CSRF token."""

    def __init__(self, site, user: str | None):
        self.site = site
        self.http = site.login(user) if user else requests.Session()
        page = self.http.get(site.url + "/auth/login")
        self.csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text).group(1)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.http.get(self.site.url + path, allow_redirects=False, **kwargs)

    def post(self, path: str, data: dict | None = None, **kwargs) -> requests.Response:
        return self.http.post(self.site.url + path, data={"csrf_token": self.csrf, **(data or {})},
                              allow_redirects=False, **kwargs)


@pytest.fixture(scope="module")
def alice(site):
    return Browser(site, "alice")


@pytest.fixture(scope="module")
def garden(site, alice):
    """The wiki with bob as viewer and a few pages in folders."""
    assert alice.post("/w/garden/-/settings/members", {"member": BOB, "role": "viewer"}).status_code == 303
    for path, content in (("Plants/Tomato", "# Tomato\n\nLoves sun.\n"),
                          ("Plants/Herbs/Basil", "# Basil\n\nPinch the tops.\n"),
                          ("Compost", "# Compost\n\nGreens and browns; tomatoes love it.\n")):
        assert alice.post("/w/garden/-/new", {"path": path, "content": content}).status_code == 303
    return "/w/garden"


def text_of(response: requests.Response) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", response.text)))


def textarea(response: requests.Response) -> str:
    found = re.search(r'<textarea[^>]*name="content"[^>]*>\n?(.*?)</textarea>', response.text, re.S)
    assert found, "no editor in the page"
    return html.unescape(found.group(1))


def stored_page(site, path: str):
    db = open_db(site.data)
    try:
        row = db.execute("SELECT content, revision_id FROM pages WHERE path = ?", (path,)).fetchone()
        return tuple(row) if row else None
    finally:
        db.close()


# --- the preview endpoint -------------------------------------------------------------------------

def test_preview_renders_with_the_page_views_renderer(alice, garden):
    answer = alice.post(f"{garden}/-/preview", {"path": "Plants/Pepper", "content": "Hot **red** [[Compost]]\n"})
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.text == ('<h1>Pepper</h1>\n<p>Hot <strong>red</strong> <a href="/w/garden/Compost" '
                           'class="wikilink">Compost</a></p>\n')
    own_title = alice.post(f"{garden}/-/preview", {"path": "X", "content": "# Mine\n"})
    assert own_title.text == '<h1 id="mine">Mine</h1>\n'


def test_preview_refuses_a_forged_form_a_viewer_and_a_stranger(site, alice, garden):
    forged = alice.http.post(site.url + f"{garden}/-/preview", data={"csrf_token": "0" * 64, "content": "x"},
                             headers={"Accept": "application/json"})
    assert forged.status_code == 403
    assert forged.json()["message"] == ("This form has expired or was sent from another site. Go back, reload the "
                                        "page and try again.")
    viewer = Browser(site, "bob").post(f"{garden}/-/preview", {"content": "x"}, headers={"Accept": "application/json"})
    assert viewer.status_code == 403
    assert viewer.json()["message"] == ("You can read this wiki but not change it. Ask one of its owners to make you "
                                        "an editor.")
    outsider = Browser(site, "carol").post(f"{garden}/-/preview", {"content": "x"},
                                           headers={"Accept": "application/json"})
    assert outsider.status_code == 404
    assert outsider.json()["message"] == "There is no wiki here, or it is private. If it is yours, sign in."
    stranger = Browser(site, None).post(f"{garden}/-/preview", {"content": "x"}, headers={"Accept": "application/json"})
    assert stranger.status_code == 404


def test_preview_of_too_much_text_says_so(alice, garden):
    answer = alice.post(f"{garden}/-/preview", {"content": "é" * 500_001}, headers={"Accept": "application/json"})
    assert answer.status_code == 413
    assert answer.json()["message"] == ("The text is over 1,000,000 bytes, the most a page can hold; shorten it to "
                                        "see a preview.")


def test_preview_button_without_a_script_keeps_the_text_and_saves_nothing(site, alice, garden):
    before = stored_page(site, "Compost")
    content = "# Compost\n\n- [x] turn it\n"
    answer = alice.post(f"{garden}/-/edit/Compost", {"content": content, "base_revision": before[1],
                                                      "message": "turned", "preview": "1"})
    assert answer.status_code == 200
    assert textarea(answer) == content
    assert 'class="task-list-item-checkbox" checked="checked" disabled="disabled"' in answer.text
    assert 'value="turned"' in answer.text
    assert stored_page(site, "Compost") == before
    new = alice.post(f"{garden}/-/new", {"path": "Drafts/Idea", "content": "Just an idea\n", "preview": "1"})
    assert new.status_code == 200 and "<h1>Idea</h1>" in new.text and textarea(new) == "Just an idea\n"
    assert stored_page(site, "Drafts/Idea") is None


# --- rendering -------------------------------------------------------------------------------------

def test_markdown_features_render_safely(alice, garden):
    content = ("Intro with a note.[^n]\n\n## Jobs\n\n- [ ] sow\n- [x] water\n\n## Code\n\n```python\n"
               "def grow(days):\n    return 'tall'  # soon\n```\n\n### Raw\n\n<script>alert(1)</script>\n\n"
               "[bad](javascript:alert(1))\n\n::: details More <i>about</i> it\nFolded **away**.\n:::\n\n"
               "[^n]: The note.\n")
    assert alice.post(f"{garden}/-/new", {"path": "Features", "content": content}).status_code == 303
    page = alice.get(f"{garden}/Features")
    body = page.text
    assert "<h1>Features</h1>" in body   # no heading of its own: the page's name is its title
    assert body.count('class="task-list-item-checkbox"') == 2 and 'disabled="disabled"' in body
    assert '<sup class="footnote-ref"><a href="#fn1" id="fnref1">[1]</a></sup>' in body
    assert '<li id="fn1" class="footnote-item"><p>The note.' in body
    assert '<span class="k">def</span>' in body and '<span class="c1"># soon</span>' in body
    assert not re.search(r"<article.*style=", body, re.S)   # the CSP forbids style attributes
    assert '<h2 id="jobs">Jobs<a class="anchor" href="#jobs" aria-label="Link to this section"></a></h2>' in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert ("<details><summary>More &lt;i&gt;about&lt;/i&gt; it</summary>\n<p>Folded <strong>away</strong>.</p>\n"
            "</details>") in body
    assert "<p>[bad](javascript:alert(1))</p>" in body and "href=\"javascript" not in body
    toc = re.search(r'<nav class="toc".*?</nav>', body, re.S).group(0)
    assert re.findall(r'href="#([^"]+)"', toc) == ["jobs", "code", "raw"]
    short = alice.get(f"{garden}/Plants/Tomato").text
    assert 'class="toc"' not in short and short.count("<h1") == 1


def test_front_matter_title_is_the_title_when_the_text_has_none(alice, garden):
    assert alice.post(f"{garden}/-/new", {"path": "Notes/2026-05", "content": "---\ntitle: May notes\n---\nRain.\n"}
                      ).status_code == 303
    assert "<h1>May notes</h1>" in alice.get(f"{garden}/Notes/2026-05").text


def test_file_names_in_links_and_images_point_at_attachments(alice, garden):
    upload = alice.post(f"{garden}/-/attachments/Plants/Tomato", files={"file": ("leaf photo.png", tiny_png())})
    assert upload.status_code == 303
    content = ("![leaf](leaf%20photo.png) ![heap](../../Compost/heap.jpg) [seeds](Herbs/Basil/seeds.pdf) "
               "[site](https://example.org/a.png) [up](/w/garden/x.png) [page](Compost)\n")
    revision = stored_page(alice.site, "Plants/Tomato")[1]
    assert alice.post(f"{garden}/-/edit/Plants/Tomato", {"content": content, "base_revision": revision}
                      ).status_code == 303
    body = alice.get(f"{garden}/Plants/Tomato").text
    assert '<img src="/w/garden/-/attachment/Plants/Tomato/leaf%20photo.png" alt="leaf" />' in body
    assert '<img src="/w/garden/-/attachment/Compost/heap.jpg" alt="heap" />' in body
    assert '<a href="/w/garden/-/attachment/Plants/Tomato/Herbs/Basil/seeds.pdf">seeds</a>' in body
    assert '<a href="https://example.org/a.png">site</a>' in body
    assert '<a href="/w/garden/x.png">up</a>' in body and '<a href="Compost">page</a>' in body
    image = alice.get("/w/garden/-/attachment/Plants/Tomato/leaf%20photo.png")
    assert image.status_code == 200 and image.content == tiny_png()


def test_an_svg_shows_in_an_img_but_a_visit_downloads_it(alice, garden):
    assert alice.post(f"{garden}/-/attachments/Compost", files={"file": ("plan.svg", SVG)}).status_code == 303
    url = f"{garden}/-/attachment/Compost/plan.svg"
    as_image = alice.get(url, headers={"Sec-Fetch-Dest": "image", "Sec-Fetch-Mode": "no-cors"})
    assert as_image.headers["Content-Type"] == "image/svg+xml"
    assert as_image.headers["Content-Disposition"].startswith("inline;")
    assert as_image.headers["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    assert as_image.headers["X-Content-Type-Options"] == "nosniff" and as_image.headers["Vary"] == "Sec-Fetch-Dest"
    assert as_image.content == SVG
    for headers in ({"Sec-Fetch-Dest": "document", "Sec-Fetch-Mode": "navigate"}, {"Sec-Fetch-Dest": "iframe"}, {}):
        visit = alice.get(url, headers=headers)
        assert visit.headers["Content-Type"] == "application/octet-stream"
        assert visit.headers["Content-Disposition"].startswith("attachment;")
        assert visit.headers["Content-Security-Policy"] == "default-src 'none'; img-src 'self'; sandbox"


def test_the_editor_uploads_as_json_and_never_replaces_a_file(alice, garden):
    def upload(name: str, data: bytes) -> requests.Response:
        return alice.post(f"{garden}/-/attachments/Compost", {"keep_existing": "1"},
                          files={"file": (name, data)}, headers={"Accept": "application/json"})
    before = stored_page(alice.site, "Compost")[1]
    first, second = upload("image.png", tiny_png()), upload("image.png", tiny_png(8, 8))
    after_first = first.json()["revision"]
    assert first.json() == {"filename": "image.png", "content_type": "image/png",
                            "url": "/w/garden/-/attachment/Compost/image.png", "markdown": "![image](image.png)",
                            "revision": after_first, "previous_revision": before}
    assert second.json()["previous_revision"] == after_first
    assert second.json()["revision"] == stored_page(alice.site, "Compost")[1]
    assert second.json()["filename"] == "image-2.png" and second.json()["markdown"] == "![image-2](image-2.png)"
    assert upload("notes [v2].txt", b"hello").json()["markdown"] == r"[notes \[v2\]](notes%20%5Bv2%5D.txt)"
    assert alice.get(f"{garden}/-/attachment/Compost/image.png").content == tiny_png()
    empty = alice.post(f"{garden}/-/attachments/Compost", headers={"Accept": "application/json"})
    assert empty.status_code == 400 and empty.json()["message"] == "Choose a file to upload."


# --- navigation ------------------------------------------------------------------------------------

def test_a_folder_without_a_page_lists_its_pages(alice, garden):
    folder = alice.get(f"{garden}/Plants")
    assert folder.status_code == 200
    shown = text_of(folder)
    assert "There is no page called Plants yet; these pages are in its folder." in shown
    assert re.search(r'<a class="button" href="/w/garden/-/new\?path=Plants">Create this page</a>', folder.text)
    listing = re.search(r'<ul class="index folder-list">.*?</ul>', folder.text, re.S).group(0)
    assert re.findall(r'<a[^>]*href="([^"]+)"', listing) == ["/w/garden/Plants/Herbs", "/w/garden/Plants/Tomato"]
    assert "1 page inside" in listing
    nested = alice.get(f"{garden}/Plants/Herbs")
    assert nested.status_code == 200 and "/w/garden/Plants/Herbs/Basil" in nested.text
    assert alice.get(f"{garden}/Plantz").status_code == 404
    viewer = Browser(alice.site, "bob").get(f"{garden}/Plants")
    assert viewer.status_code == 200 and "Create this page" not in viewer.text


def test_the_sidebar_tree_marks_the_page_and_opens_its_folders(alice, garden):
    body = alice.get(f"{garden}/Plants/Herbs/Basil").text
    tree = re.search(r'<ul class="tree">.*</ul><p class="sidebar-more">', body, re.S).group(0)
    assert '<a href="/w/garden/Plants/Herbs/Basil" aria-current="page">Basil</a>' in tree
    assert tree.count("aria-current") == 1
    assert '<details open><summary><a href="/w/garden/Plants" class="folder">Plants</a></summary>' in tree
    assert '<details open><summary><a href="/w/garden/Plants/Herbs" class="folder">Herbs</a></summary>' in tree
    home = alice.get(f"{garden}/").text
    assert '<details><summary><a href="/w/garden/Plants" class="folder">Plants</a></summary>' in home
    assert '<a href="/w/garden/" aria-current="page">Home</a>' in home
    # the tree is kept between page views until the next write: a new page shows at once
    assert alice.post(f"{garden}/-/new", {"path": "Plants/Herbs/Thyme", "content": "x"}).status_code == 303
    assert '<a href="/w/garden/Plants/Herbs/Thyme">Thyme</a>' in alice.get(f"{garden}/").text
    revision = stored_page(alice.site, "Plants/Herbs/Thyme")[1]
    assert alice.post(f"{garden}/-/delete/Plants/Herbs/Thyme", {"base_revision": revision}).status_code == 303
    assert "Thyme" not in alice.get(f"{garden}/").text


def test_a_big_wiki_shows_the_current_branch_and_links_other_folders(site, alice):
    """Past TREE_ENTRIES the sidebar stays small: folders off the current page's way are links."""
    assert alice.post("/wikis", {"slug": "big", "title": "Big"}).status_code == 303
    # 1,200 pages go in through the storage API (as many form posts would take minutes)
    db_pages = [(f"Area{a}/Topic{t}", f"# T{t}\n") for a in range(12) for t in range(100)]
    import robotwtf_store as store
    db = open_db(site.data)
    wiki = store.get_wiki(db, "big")["id"]
    author = store.Author(ALICE, "cli")
    quotas = store.Quotas(pages_per_wiki=5000, bytes_per_wiki=1 << 30, wikis_per_user=10)
    for path, content in db_pages:
        store.write_page(db, wiki, path, content, author=author, quotas=quotas)
    db.close()
    body = alice.get("/w/big/Area11/Topic5").text
    assert '<a href="/w/big/Area11/Topic5" aria-current="page">Topic5</a>' in body
    assert '<a href="/w/big/Area11/Topic99">Topic99</a>' in body          # its own folder in full
    assert '<a href="/w/big/Area0" class="folder">Area0</a> <span class="count">100</span>' in body
    assert '<details open><summary><a href="/w/big/Area11" class="folder">Area11</a>' in body
    assert body.count("<li>") < 1000


# --- search ----------------------------------------------------------------------------------------

def test_search_finds_word_prefixes_titles_first_and_counts(alice, garden):
    found = alice.get(f"{garden}/-/search", params={"q": "tomat"})
    results = re.findall(r'<li>\s*<a href="([^"]+)"', re.search(r'<ol class="results">.*?</ol>', found.text,
                                                                 re.S).group(0))
    assert results[:2] == ["/w/garden/Plants/Tomato", "/w/garden/Compost"]
    assert re.search(r'class="search-count">\s*\d+ pages match', found.text)
    one = alice.get(f"{garden}/-/search", params={"q": "pinch"})
    assert re.search(r'class="search-count">\s*1 page matches\s*</h2>', one.text)
    quoting = alice.get(f"{garden}/-/search", params={"q": 'NEAR( "tom AND -x ^ *'})
    assert quoting.status_code == 200
    typo = alice.get(f"{garden}/-/search", params={"q": "Tomatto"})
    assert "No page matches" in typo.text
    assert re.search(r'Did you mean\s*<a href="/w/garden/Plants/Tomato">Plants/Tomato</a>\?', typo.text)


def test_agents_search_is_unchanged_words_stay_whole(site, garden):
    """search_notes (store.search_pages) keeps whole-word matching: agents search for words."""
    import robotwtf_store as store
    db = open_db(site.data)
    try:
        wiki = store.get_wiki(db, "garden")["id"]
        assert store.search_pages(db, wiki, "tomat") == []
        assert [hit.path for hit in store.search_wiki(db, wiki, "tomat").hits][:1] == ["Plants/Tomato"]
    finally:
        db.close()


# --- size limits ----------------------------------------------------------------------------------

def test_text_over_the_page_limit_comes_back_in_the_editor(site, alice, garden):
    before = stored_page(site, "Plants/Herbs/Basil")
    big = "# Basil\n\n" + "leaf " * 210_000
    answer = alice.post(f"{garden}/-/edit/Plants/Herbs/Basil", {"content": big, "base_revision": before[1]})
    assert answer.status_code == 413
    assert "Content too large (1050009 bytes). Maximum size is 1000000 bytes" in text_of(answer)
    assert textarea(answer) == big
    assert stored_page(site, "Plants/Herbs/Basil") == before


def test_a_body_over_the_form_limit_comes_back_in_the_editor(site, alice, garden):
    """Over MAX_FORM_BYTES bottle would refuse the body before the form is read; the editor
    reads it anyway (waitress accepted it) and answers with the text."""
    before = stored_page(site, "Plants/Herbs/Basil")
    big = "# Basil\n\n" + "\u00e9" * 1_500_000    # 3 MB of UTF-8, 9 MB percent-encoded
    answer = alice.post(f"{garden}/-/edit/Plants/Herbs/Basil", {"content": big, "base_revision": before[1],
                                                                 "message": "long"})
    assert answer.status_code == 413
    assert textarea(answer) == big and 'value="long"' in answer.text
    assert stored_page(site, "Plants/Herbs/Basil") == before
    created = alice.post(f"{garden}/-/new", {"path": "Huge", "content": big})
    assert created.status_code == 413 and textarea(created) == big and stored_page(site, "Huge") is None


# --- look ------------------------------------------------------------------------------------------

def test_favicon_and_colour_schemes(site, alice):
    icon = requests.get(site.url + "/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["Content-Type"] == "image/svg+xml"
    assert icon.headers["X-Content-Type-Options"] == "nosniff" and icon.text.startswith("<svg")
    page = alice.get("/").text
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
    assert '<meta name="color-scheme" content="light dark">' in page
    assert "@media (prefers-color-scheme: dark)" in requests.get(site.url + "/static/style.css").text
