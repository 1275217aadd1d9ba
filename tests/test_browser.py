"""A real browser (Debian's Chromium, driven by Playwright) through the wiki as a person uses it:
open a login link, create a wiki, create and edit pages, link them, read the history and a diff,
search, upload an attachment, meet an edit conflict, and read it all on a phone-sized screen.
Screenshots land in test-artifacts/screenshots/ (`make test` prints the folder) for people to look at."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import pytest
import requests

from conftest import ROOT, start_server

from playwright.sync_api import expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
INSTALL_CHROMIUM = "sudo apt-get install -y chromium fonts-liberation"


def tiny_png(width: int = 24, height: int = 24) -> bytes:
    """A real PNG (a green square) without an imaging library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\x2e\xa0\x4f" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("browser") / "data")
    srv.cli("user", "add", "did:plc:" + "a" * 24, "--username", "alice", "--handle", "alice.test")
    srv.cli("user", "add", "did:plc:" + "b" * 24, "--username", "bob", "--handle", "bob.test")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def chromium():
    # A browser test that can't run fails: skipping would pass a suite that tested nothing here.
    if not CHROMIUM.exists():
        pytest.fail(f"The browser tests need Debian's Chromium at {CHROMIUM} (`make test` installs it when run "
                    f"as root). Run: {INSTALL_CHROMIUM}", pytrace=False)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()



def assert_fits(page, width: int, what: str) -> None:
    """Nothing on the page makes it wider than the screen (no sideways scrolling)."""
    scrolled = page.evaluate("document.documentElement.scrollWidth")
    assert scrolled <= width, f"{what} scrolls sideways ({scrolled}px)"


class Person:
    """One signed-in browser context. Collects what would mean a broken page: script errors,
    console errors such as CSP violations, and failed styles, scripts or images. (A page may
    answer 404 or 409 on purpose; the browser logs that too, which is not an error here.)"""

    def __init__(self, site, chromium, username: str, **context_options):
        self.context = chromium.new_context(**context_options)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("response", self._response)
        self.page.goto(site.cli("login-link", username).stdout.strip())
        self.page.click("#login-link button[type=submit]")

    def _console(self, message) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def _response(self, response) -> None:
        if response.status >= 400 and response.request.resource_type != "document":
            self.errors.append(f"{response.status} {response.url}")

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def alice(site, chromium):
    person = Person(site, chromium, "alice", viewport=DESKTOP)
    yield person
    assert person.errors == []
    person.close()


def save_page(page, path: str, content: str, message: str = "") -> None:
    page.fill("#path", path)
    page.fill("#content", content)
    if message:
        page.fill("#message", message)
    page.click("button:has-text('Save')")


def test_sign_in_and_create_a_wiki(site, alice):
    page = alice.page
    expect(page.locator("h1")).to_have_text("Your wikis")
    alice.shot("01-dashboard")
    page.fill("#slug", "garden")
    page.fill("#title", "Garden notes")
    page.fill("#description", "What grows where, and what we learned.")
    page.click("button:has-text('Create wiki')")
    expect(page).to_have_url(f"{site.url}/w/garden/")
    expect(page.locator(".wiki-title")).to_have_text("Garden notes")
    expect(page.locator("article h1")).to_have_text("Garden notes")
    alice.shot("02-wiki-home")


def test_create_pages_and_link_them(site, alice):
    page = alice.page
    page.click(".wikinav >> text=New page")
    save_page(page, "Plants/Tomato", "# Tomato\n\nLoves sun. Feed with [[Compost]] every two weeks.\n\n"
                                     "## Varieties\n\n- San Marzano\n- Black Krim\n\n```\nwater: daily\n```\n")
    expect(page).to_have_url(f"{site.url}/w/garden/Plants/Tomato")
    missing = page.locator("a.wikilink.missing")
    expect(missing).to_have_text("Compost")
    alice.shot("03-page-with-missing-link")

    missing.click()
    expect(page.locator("p.notice")).to_contain_text("Page not found: 'Compost'")
    alice.shot("04-missing-page")
    page.click("text=Create this page")
    expect(page.locator("#path")).to_have_value("Compost")
    page.fill("#content", "# Compost\n\nGreens and browns. Best for [[Plants/Tomato|tomatoes]].\n")
    page.click("button:has-text('Save')")
    expect(page).to_have_url(f"{site.url}/w/garden/Compost")
    page.click("a.wikilink:has-text('tomatoes')")
    expect(page).to_have_url(f"{site.url}/w/garden/Plants/Tomato")
    expect(page.locator("a.wikilink")).to_have_class("wikilink")
    expect(page.locator(".page-foot")).to_contain_text("Linked from")
    alice.shot("05-linked-page")


def test_edit_then_read_history_and_a_diff(site, alice):
    page = alice.page
    page.goto(f"{site.url}/w/garden/Plants/Tomato")
    page.click(".actions >> text=Edit")
    content = page.locator("#content")
    expect(content).to_have_value(re.compile("Loves sun"))
    content.fill(content.input_value().replace("every two weeks", "every week in July").replace(
        "- Black Krim\n", "- Black Krim\n- Sungold\n"))
    page.fill("#message", "Feed more often in July; add Sungold")
    alice.shot("06-editor")
    page.click("button:has-text('Save')")
    expect(page.locator("article")).to_contain_text("every week in July")

    page.click(".actions >> text=History")
    expect(page.locator("ol.revisions li")).to_have_count(2)
    expect(page.locator("ol.revisions")).to_contain_text("Feed more often in July")
    alice.shot("07-history")
    page.click("button:has-text('Compare the selected versions')")
    expect(page.locator(".diff .add")).to_contain_text(["every week in July", "Sungold"])
    expect(page.locator(".diff .del")).to_contain_text(["every two weeks"])
    alice.shot("08-diff")
    page.click("dl.facts a >> nth=0")
    expect(page.locator(".notice")).to_contain_text("This is revision")
    expect(page.locator("article")).to_contain_text("every two weeks")
    alice.shot("08b-old-revision")
    page.click(".wikinav >> text=Recent changes")
    expect(page.locator("ol.recent li").first).to_contain_text("Feed more often in July")
    alice.shot("08c-recent-changes")
    page.click(".wikinav >> text=All pages")
    expect(page.locator("ul.index a")).to_have_text(["Agent Guide", "Compost", "Getting Started", "Home",
                                                     "Plants/Tomato"])
    alice.shot("08d-all-pages")


def test_search_highlights_matches(site, alice):
    page = alice.page
    page.fill(".wikibar input[name=q]", "compost")
    page.press(".wikibar input[name=q]", "Enter")
    expect(page.locator("ol.results li")).to_have_count(2)
    expect(page.locator("ol.results mark").first).to_have_text("Compost", ignore_case=True)
    alice.shot("09-search")


def test_upload_an_attachment_and_show_it(site, alice, tmp_path):
    page = alice.page
    photo = tmp_path / "tomato plant.png"
    photo.write_bytes(tiny_png())
    page.goto(f"{site.url}/w/garden/Plants/Tomato")
    page.click(".actions >> text=Attachments")
    page.set_input_files("#file", str(photo))
    page.fill("#message", "June photo")
    page.click("button:has-text('Upload')")
    link = page.locator("ul.files a")
    expect(link).to_have_text("tomato plant.png")
    expect(page.locator("img.thumb")).to_be_visible()
    assert page.locator("img.thumb").evaluate("img => img.naturalWidth") == 24
    alice.shot("10-attachments")
    served = alice.context.request.get(site.url + link.get_attribute("href"))
    assert served.headers["content-type"] == "image/png" and served.headers["x-content-type-options"] == "nosniff"
    page.goto(f"{site.url}/w/garden/Plants/Tomato")
    expect(page.locator(".page-foot ul.files")).to_contain_text("tomato plant.png")


def test_two_editors_collide_and_nothing_is_lost(site, chromium, alice):
    page = alice.page
    page.goto(f"{site.url}/w/garden/-/settings")
    page.fill("#member", "did:plc:" + "b" * 24)
    page.select_option("#role", "editor")
    page.click("button:has-text('Add')")
    expect(page.locator("table.members")).to_contain_text("bob.test")
    alice.shot("11-settings")

    bob = Person(site, chromium, "bob", viewport=DESKTOP)
    try:
        page.goto(f"{site.url}/w/garden/-/edit/Compost")
        bob.page.goto(f"{site.url}/w/garden/-/edit/Compost")
        bob.page.fill("#content", "# Compost\n\nBob: turn the heap weekly.\n")
        bob.page.click("button:has-text('Save')")
        expect(bob.page.locator("article")).to_contain_text("turn the heap weekly")
        page.fill("#content", "# Compost\n\nAlice: keep it moist.\n")
        page.click("button:has-text('Save')")
        expect(page.locator("h1")).to_have_text("This page changed while you were editing")
        expect(page.locator("pre.source")).to_contain_text("turn the heap weekly")
        expect(page.locator("#content")).to_have_value("# Compost\n\nAlice: keep it moist.\n")
        alice.shot("12-conflict")
        page.fill("#content", "# Compost\n\nBob: turn the heap weekly.\nAlice: keep it moist.\n")
        page.click("button:has-text('Save my version')")
        expect(page.locator("article")).to_contain_text("keep it moist")
        expect(page.locator("article")).to_contain_text("turn the heap weekly")
        assert bob.errors == []
    finally:
        bob.close()


def test_readable_on_a_phone(site, chromium, alice):
    phone = Person(site, chromium, "alice", viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    try:
        for name, path in [("13-phone-page", "/w/garden/Plants/Tomato"), ("14-phone-history",
                           "/w/garden/-/history/Plants/Tomato"), ("15-phone-editor", "/w/garden/-/edit/Compost"),
                           ("16-phone-settings", "/w/garden/-/settings"), ("17-phone-dashboard", "/")]:
            phone.page.goto(site.url + path)
            assert_fits(phone.page, PHONE["width"], path)
            phone.shot(name)
        assert phone.errors == []
    finally:
        phone.close()


def test_strangers_read_a_public_wiki_without_edit_controls(site, chromium, alice):
    page = alice.page
    page.goto(f"{site.url}/w/garden/-/settings")
    page.check("input[name=visibility][value=public]")
    page.click("button:has-text('Save') >> nth=0")
    stranger = chromium.new_context(viewport=DESKTOP)
    try:
        view = stranger.new_page()
        view.goto(f"{site.url}/w/garden/Plants/Tomato")
        expect(view.locator("article h1")).to_have_text("Tomato")
        expect(view.locator(".actions")).not_to_contain_text("Edit")
        expect(view.locator(".wikinav")).not_to_contain_text("New page")
        view.screenshot(path=str(SHOTS / "18-public-read-only.png"), full_page=True)
        view.goto(f"{site.url}/w/someone-elses/")
        expect(view.locator("p.error")).to_have_text("There is no wiki here, or it is private. If it is yours, sign in.")
        view.screenshot(path=str(SHOTS / "19-hidden-wiki.png"), full_page=True)
    finally:
        stranger.close()


def test_works_without_javascript(site, chromium):
    """Every form is plain HTML: with scripts off, a person can still edit and save."""
    person = Person(site, chromium, "alice", java_script_enabled=False)
    try:
        page = person.page
        page.goto(f"{site.url}/w/garden/-/edit/Compost")
        page.fill("#content", page.locator("#content").input_value() + "\nNo script needed.\n")
        page.click("button:has-text('Save')")
        expect(page.locator("article")).to_contain_text("No script needed.")
        page.goto(f"{site.url}/w/garden/-/attachments/Plants/Tomato")
        page.click("ul.files button:has-text('delete')")
        expect(page.locator("text=This page has no attachments.")).to_be_visible()
        page.goto(f"{site.url}/w/garden/-/history/Compost")
        page.click("ol.revisions li >> nth=-1 >> button:has-text('restore')")
        expect(page.locator("article")).to_contain_text("Greens and browns.")
        expect(page.locator("article")).not_to_contain_text("No script needed.")
    finally:
        person.close()
    assert requests.get(f"{site.url}/static/wiki.js").headers["Content-Type"].startswith("text/javascript")
