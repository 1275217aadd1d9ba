"""Issue 11's wiki in a real browser (Debian's Chromium through Playwright): the editor's live
preview, toolbar and shortcuts, attaching a pasted image, images and SVGs by file name, the page
tree, folder pages, the table of contents, task lists and highlighted code, text kept through both
size limits, and screenshots of every page at desktop and phone width, light and dark, in
test-artifacts/screenshots/ (`make test` prints the folder)."""

from __future__ import annotations

import base64
import re

import urllib.parse

import pytest
from playwright.sync_api import expect

from conftest import start_server
from oauth_flow import CLAUDE_REGISTRATION, pkce, registered
from test_browser import DESKTOP, PHONE, SHOTS, Person, assert_fits, chromium, tiny_png  # noqa: F401 (chromium is a fixture)

ALICE, BOB = "did:plc:" + "a" * 24, "did:plc:" + "b" * 24
SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20" '
       b'fill="#c00"/></svg>')


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("wiki-ux-browser") / "data")
    srv.cli("user", "add", ALICE, "--username", "alice", "--handle", "alice.test")
    srv.cli("user", "add", BOB, "--username", "bob", "--handle", "bob.test")
    srv.cli("wiki", "create", "garden", "--owner", "alice", "--title", "Garden notes")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def alice(site, chromium):
    person = Person(site, chromium, "alice", viewport=DESKTOP)
    yield person
    assert person.errors == []
    person.close()


def open_editor(page, site, path: str) -> None:
    page.goto(f"{site.url}/w/garden/-/edit/{path}")
    expect(page.locator(".toolbar")).to_be_visible()


def create(page, site, path: str, content: str) -> None:
    page.goto(f"{site.url}/w/garden/-/new?path={path}")
    page.fill("#content", content)
    page.click("button:has-text('Save')")
    expect(page).to_have_url(re.compile(re.escape(f"/w/garden/{path}") + "$"))


def test_preview_updates_beside_the_editor(site, alice):
    page = alice.page
    create(page, site, "Plants/Tomato", "# Tomato\n\nLoves sun.\n")
    open_editor(page, site, "Plants/Tomato")
    preview = page.locator(".preview-body")
    expect(preview.locator("h1")).to_have_text("Tomato")
    page.locator("#content").press("End")
    page.locator("#content").press("Control+End")
    page.keyboard.type("\nFeed with **compost** weekly.")
    expect(preview.locator("strong")).to_have_text("compost")
    editor, shown = page.locator("#content").bounding_box(), page.locator(".preview").bounding_box()
    assert shown["x"] > editor["x"] + editor["width"] - 1 and abs(shown["y"] - editor["y"]) < 5  # side by side
    alice.shot("ux-01-editor-live-preview")
    page.keyboard.press("Control+s")
    expect(page.locator("article strong")).to_have_text("compost")


def test_toolbar_and_shortcuts_insert_markdown(site, alice):
    page = alice.page
    create(page, site, "Scratch", "")
    open_editor(page, site, "Scratch")
    text = page.locator("#content")
    text.fill("grow ")
    text.press("Control+End")
    page.click("[data-tool=bold]")
    page.keyboard.type("big")
    text.press("Control+End")
    page.keyboard.type(" and ")
    page.keyboard.press("Control+i")
    page.keyboard.type("tall")
    text.press("Control+End")
    page.click("[data-tool=task]")
    page.keyboard.type("stake it")
    text.press("Control+End")
    page.click("[data-tool=wikilink]")
    page.keyboard.type("Compost")
    text.press("Control+End")
    page.keyboard.press("Control+k")
    page.keyboard.type("the shop")
    text.press("Control+End")
    page.click("[data-tool=heading]")
    page.keyboard.type("Soil")
    text.press("Control+End")
    page.click("[data-tool=table]")
    expect(text).to_have_value("grow **big** and *tall*\n- [ ] stake it\n[[Compost]][the shop](https://)\n## Soil\n"
                               "| Column | Column |\n| --- | --- |\n| text | text |\n")
    expect(page.locator(".preview-body input[type=checkbox][disabled]")).to_have_count(1)
    expect(page.locator(".preview-body table th")).to_have_count(2)
    expect(page.locator(".preview-body a.wikilink.missing")).to_have_text("Compost")
    page.click("button:has-text('Save') >> nth=0")
    expect(page.locator("article strong")).to_have_text("big")


def test_a_pasted_image_is_attached_and_shown(site, alice):
    page = alice.page
    open_editor(page, site, "Plants/Tomato")
    page.locator("#content").press("Control+End")
    page.evaluate("""png => {
        const bytes = Uint8Array.from(atob(png), c => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], "image.png", {type: "image/png"}));
        document.querySelector("#content").dispatchEvent(
            new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true}));
    }""", base64.b64encode(tiny_png()).decode())
    expect(page.locator(".status")).to_contain_text("Attached pasted-")
    expect(page.locator("#content")).to_have_value(re.compile(r"!\[pasted-[\d-]+\]\(pasted-[\d-]+\.png\)\n$"))
    image = page.locator(".preview-body img")
    expect(image).to_have_attribute("src", re.compile(r"^/w/garden/-/attachment/Plants/Tomato/pasted-[\d-]+\.png$"))
    page.wait_for_function("() => document.querySelector('.preview-body img').naturalWidth === 24")
    page.set_input_files(".attach-input", files=[{"name": "plan.svg", "mimeType": "image/svg+xml", "buffer": SVG}])
    expect(page.locator("#content")).to_have_value(re.compile(r"!\[plan\]\(plan\.svg\)\n$"))
    page.evaluate("""() => {
        const data = new DataTransfer();
        data.items.add(new File(["sow in March"], "sowing notes.txt", {type: "text/plain"}));
        document.querySelector("#content").dispatchEvent(
            new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
    }""")
    expect(page.locator("#content")).to_have_value(re.compile(r"\[sowing notes\]\(sowing%20notes\.txt\)$"))
    page.locator("#content").press("Control+End")
    page.keyboard.type("\n")
    page.click("button:has-text('Save') >> nth=0")
    expect(page.locator("article img")).to_have_count(2)
    page.wait_for_function("() => [...document.querySelectorAll('article img')].every(i => i.naturalWidth > 0)")
    assert page.locator("article img").evaluate_all("images => images.map(i => i.naturalWidth)") == [24, 40]
    expect(page.locator("article a:text-is('sowing notes')")).to_have_attribute(
        "href", "/w/garden/-/attachment/Plants/Tomato/sowing%20notes.txt")
    alice.shot("ux-02-page-with-pasted-image-and-svg")
    with page.expect_download() as download:
        page.evaluate("url => { location.href = url; }", "/w/garden/-/attachment/Plants/Tomato/plan.svg")
    assert download.value.suggested_filename == "plan.svg"


def test_a_new_page_says_files_wait_for_the_first_save(site, alice):
    page = alice.page
    page.goto(f"{site.url}/w/garden/-/new?path=Plants/Pepper")
    expect(page.locator("[data-tool=attach]")).to_have_count(0)
    page.evaluate("""png => {
        const data = new DataTransfer();
        data.items.add(new File([Uint8Array.from(atob(png), c => c.charCodeAt(0))], "image.png", {type: "image/png"}));
        document.querySelector("#content").dispatchEvent(
            new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true}));
    }""", base64.b64encode(tiny_png()).decode())
    expect(page.locator(".status")).to_have_text("Save the page first; then paste, drop or pick files to attach "
                                                 "them to it.")


def test_tree_folder_page_toc_tasks_and_code(site, alice):
    page = alice.page
    create(page, site, "Plants/Herbs/Basil", "# Basil\n\n## Sowing\n\n- [x] seeds\n- [ ] pots\n\n## Care\n\n"
           "```python\ndef water(days):\n    return days * 2  # twice\n```\n\n### Pests\n\nAphids.\n")
    tree = page.locator(".sidebar")
    expect(tree.locator("a[aria-current=page]")).to_have_text("Basil")
    expect(tree.locator("a[aria-current=page]")).to_be_visible()
    toc = page.locator(".toc")
    expect(toc.locator("a")).to_have_text(["Sowing", "Care", "Pests"])
    assert toc.bounding_box()["x"] > page.locator("article").bounding_box()["x"] + 300   # at the side
    expect(page.locator("article input[type=checkbox]")).to_have_count(2)
    assert page.locator("article input[type=checkbox]").evaluate_all("boxes => boxes.map(b => [b.checked, b.disabled])"
                                                                       ) == [[True, True], [False, True]]
    keyword = page.locator("article pre .k").first
    expect(keyword).to_have_text("def")
    assert keyword.evaluate("k => getComputedStyle(k).color") != page.locator("article p").first.evaluate(
        "p => getComputedStyle(p).color")
    page.hover("article h2 >> nth=0")
    expect(page.locator("article h2 >> nth=0 >> a.anchor")).to_have_css("opacity", "1")
    alice.shot("ux-03-page-tree-toc-code")

    page.goto(f"{site.url}/w/garden/")
    plants = page.locator(".sidebar details:has(> summary > a:text-is('Plants'))")
    expect(plants).not_to_have_attribute("open", "")
    expect(page.locator(".sidebar a:text-is('Tomato')")).to_be_hidden()
    plants.locator("> summary").click(position={"x": 2, "y": 8})
    expect(page.locator(".sidebar a:text-is('Tomato')")).to_be_visible()

    page.goto(f"{site.url}/w/garden/Plants/Herbs/Basil")
    page.click(".crumbs a:text-is('Plants')")
    expect(page.locator("h1")).to_have_text("Plants")
    expect(page.locator(".folder-list a")).to_have_text(["Herbs/", "Tomato"])
    expect(page.locator("main .notice a.button")).to_have_text("Create this page")
    alice.shot("ux-04-folder-page")


def test_search_finds_word_prefixes(site, alice):
    page = alice.page
    page.goto(f"{site.url}/w/garden/")
    page.fill(".wikibar input[name=q]", "tomat")
    page.press(".wikibar input[name=q]", "Enter")
    expect(page.locator(".search-count")).to_contain_text("match")
    expect(page.locator("ol.results li a").first).to_have_text("Plants/Tomato")
    alice.shot("ux-05-search-prefix")


def test_a_paste_over_the_page_limit_is_refused_in_the_browser(site, alice):
    page = alice.page
    open_editor(page, site, "Scratch")
    before = page.locator("#content").input_value()
    page.evaluate("""() => {
        const data = new DataTransfer();
        data.setData("text/plain", "x".repeat(1000001));
        document.querySelector("#content").dispatchEvent(
            new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true}));
    }""")
    expect(page.locator(".status")).to_contain_text("Not pasted: the page would be")
    assert page.locator("#content").input_value() == before


def test_the_apps_413_brings_the_text_back_without_a_script(site, chromium):
    person = Person(site, chromium, "alice", viewport=DESKTOP, java_script_enabled=False)
    try:
        page = person.page
        page.goto(f"{site.url}/w/garden/-/edit/Scratch")
        big = "# Scratch\n\n" + "tall " * 200_400
        page.fill("#content", big)
        page.click("button:has-text('Save')")
        expect(page.locator("p.error")).to_contain_text("Content too large (1002011 bytes)")
        assert page.locator("#content").input_value() == big
        page.fill("#content", "# Scratch\n\nShort **again**.\n")
        page.click("button[name=preview]")
        expect(page.locator(".preview-body strong")).to_have_text("again")
        expect(page.locator("#content")).to_have_value("# Scratch\n\nShort **again**.\n")
        person.shot("ux-06-no-script-preview")
        page.goto(f"{site.url}/w/garden/Plants/Herbs/Basil")   # <details> open by CSS alone on wide screens
        expect(page.locator(".sidebar a[aria-current=page]")).to_be_visible()
        expect(page.locator(".toc a")).to_have_count(3)
        expect(page.locator(".toc a").first).to_be_visible()
        assert person.errors == []
    finally:
        person.close()


def test_waitress_413_brings_the_text_back_from_the_tab(tmp_path, chromium):
    """waitress answers a body over --max-body-bytes itself, without robotwtf: the script kept a
    copy of the text in the tab, and opening the editor again restores it."""
    small = start_server(tmp_path / "data", "--max-body-bytes", "8000")
    try:
        small.cli("user", "add", ALICE, "--username", "alice", "--handle", "alice.test")
        small.cli("wiki", "create", "garden", "--owner", "alice")
        person = Person(small, chromium, "alice", viewport=DESKTOP)
        page = person.page
        page.goto(f"{small.url}/w/garden/-/edit/Home")
        typed = "# Home\n\n" + "A long thought. " * 600
        page.fill("#content", typed)
        page.fill("#message", "my long thought")
        page.click("button:has-text('Save')")
        expect(page.locator("body")).to_contain_text("Request Entity Too Large")
        page.goto(f"{small.url}/w/garden/-/edit/Home")
        expect(page.locator("#content")).to_have_value(typed)
        expect(page.locator("#message")).to_have_value("my long thought")
        expect(page.locator(".status")).to_contain_text("Your text from the last try to save was restored")
        person.shot("ux-07-text-restored-after-413")
        page.fill("#content", "# Home\n\nShort now.\n")
        page.click("button:has-text('Save')")
        expect(page.locator("article")).to_contain_text("Short now.")
        page.goto(f"{small.url}/w/garden/-/edit/Home")
        expect(page.locator("#content")).to_have_value("# Home\n\nShort now.\n")
        expect(page.locator(".status")).to_be_hidden()
        person.close()
    finally:
        small.stop()


def test_phone_sidebar_folds_and_preview_toggles(site, chromium):
    phone = Person(site, chromium, "alice", viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    try:
        page = phone.page
        page.goto(f"{site.url}/w/garden/Plants/Herbs/Basil")
        expect(page.locator(".sidebar-box")).not_to_have_attribute("open", "")
        expect(page.locator(".sidebar a[aria-current=page]")).to_be_hidden()
        page.click(".sidebar-box > summary")
        expect(page.locator(".sidebar a[aria-current=page]")).to_be_visible()
        page.goto(f"{site.url}/w/garden/-/edit/Plants/Herbs/Basil")
        expect(page.locator(".preview")).to_be_hidden()
        page.click("[data-pane=preview]")
        expect(page.locator(".preview-body h1")).to_have_text("Basil")
        expect(page.locator("#content")).to_be_hidden()
        page.click("[data-pane=write]")
        expect(page.locator("#content")).to_be_visible()
        assert_fits(page, PHONE["width"], "the editor")
        assert phone.errors == []
    finally:
        phone.close()


# --- screenshots of every page: desktop and phone, light and dark -------------------------------

def consent_path(site) -> str:
    client = registered(site, **CLAUDE_REGISTRATION)
    _, challenge = pkce()
    return "/oauth/authorize?" + urllib.parse.urlencode({
        "response_type": "code", "client_id": client["client_id"], "redirect_uri": CLAUDE_REGISTRATION["redirect_uris"][0],
        "code_challenge": challenge, "code_challenge_method": "S256", "state": "s", "scope": "wiki:read wiki:write",
        "resource": f"{site.url}/w/garden/mcp"})


def test_screenshots_of_every_page(site, chromium, alice):
    page = alice.page
    page.goto(f"{site.url}/w/garden/-/history/Plants/Tomato")
    page.click("button:has-text('Compare the selected versions')")
    expect(page.locator(".diff")).to_be_visible()
    diff_url = page.url
    consent = consent_path(site)
    pages = {
        "landing": None, "dashboard": "/", "page": "/w/garden/Plants/Herbs/Basil",
        "edit-preview": "/w/garden/-/edit/Plants/Herbs/Basil", "history": "/w/garden/-/history/Plants/Tomato",
        "diff": diff_url.removeprefix(site.url), "search": "/w/garden/-/search?q=tomat",
        "attachments": "/w/garden/-/attachments/Plants/Tomato", "settings": "/w/garden/-/settings",
        "folder": "/w/garden/Plants", "consent": consent, "apps": "/account/apps", "account": "/account",
        "admin": "/admin", "error": "/w/garden/-/revision/0000000",
    }
    for scheme in ("light", "dark"):
        for device, options in (("desktop", {"viewport": DESKTOP}),
                                ("phone", {"viewport": PHONE, "is_mobile": True, "has_touch": True,
                                           "device_scale_factor": 2})):
            person = Person(site, chromium, "alice", color_scheme=scheme, **options)
            stranger = chromium.new_context(color_scheme=scheme, **options)
            try:
                for name, path in pages.items():
                    view = stranger.new_page() if path is None else person.page
                    view.goto(site.url + (path or "/"))
                    if name == "edit-preview":
                        if device == "phone":
                            view.click("[data-pane=preview]")
                        expect(view.locator(".preview-body h1")).to_have_text("Basil")
                    view.screenshot(path=str(SHOTS / f"all-{name}-{device}-{scheme}.png"), full_page=True)
                    assert_fits(view, options["viewport"]["width"], f"{name} on {device}")
                background = person.page.evaluate("getComputedStyle(document.body).backgroundColor")
                assert (background == "rgb(22, 24, 27)") == (scheme == "dark"), background
                assert person.errors == []
            finally:
                stranger.close()
                person.close()
