"""Issue 11's people side in a real browser (Debian's Chromium through Playwright): the login
link's confirmation, names instead of DIDs, the word diff and the conflict page's who-and-when,
the "Connect an agent" panel with its loopback warning and copy buttons, and error pages that
keep the wiki around them. Screenshots (desktop and phone) land in SHOTS as people-*.png."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from test_browser import DESKTOP, PHONE, SHOTS, Person, assert_fits, chromium, site  # noqa: F401 -- fixtures used by name



@pytest.fixture(scope="module")
def alice(site, chromium):  # noqa: F811
    person = Person(site, chromium, "alice", viewport=DESKTOP, permissions=["clipboard-read", "clipboard-write"])
    yield person
    assert person.errors == []
    person.close()


@pytest.fixture(scope="module")
def garden(site, alice):  # noqa: F811
    """A wiki of alice's where bob is an editor, with a page bob changed."""
    page = alice.page
    page.goto(site.url + "/")
    page.fill("#slug", "people-garden")
    page.fill("#title", "Garden notes")
    page.click("button:has-text('Create wiki')")
    page.goto(f"{site.url}/w/people-garden/-/settings")
    page.fill("#member", "did:plc:" + "b" * 24)
    page.select_option("#role", "editor")
    page.click("button:has-text('Add')")
    page.goto(f"{site.url}/w/people-garden/-/new?path=Tomato")
    page.fill("#content", "# Tomato\n\nWater the tomatoes every morning before work.\n\nFeed weekly.\n")
    page.click("button:has-text('Save')")
    return "people-garden"


def no_did_shown(page) -> None:
    assert "did:plc:" not in page.locator("main").inner_text()


def test_a_login_link_asks_first_then_signs_in(site, chromium):  # noqa: F811
    context = chromium.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        link = site.cli("login-link", "bob").stdout.strip()
        page.goto(link)
        expect(page.locator("h1")).to_have_text("Sign in as bob?")
        expect(page.locator("main")).to_contain_text("(@bob.test)")
        page.screenshot(path=str(SHOTS / "people-01-login-link-confirm.png"), full_page=True)
        page.goto(link)   # looking again (a preview bot, a second glance) spends nothing
        page.click("#login-link button[type=submit]")
        expect(page.locator("h1")).to_have_text("Your wikis")
        expect(page.locator("a.who")).to_have_text("bob.test")
        page.goto(link)
        expect(page.locator("p.error")).to_contain_text("already used")
    finally:
        context.close()


def test_people_are_named_not_their_dids(site, chromium, alice, garden):  # noqa: F811
    bob = Person(site, chromium, "bob", viewport=DESKTOP)
    try:
        bob.page.goto(f"{site.url}/w/{garden}/-/edit/Tomato")
        content = bob.page.locator("#content")
        content.fill(content.input_value().replace("every morning", "every evening"))
        bob.page.fill("#message", "Evenings lose less water")
        bob.page.click("button:has-text('Save')")
        expect(bob.page.locator(".page-foot")).to_contain_text("bob @bob.test in the browser")
        assert bob.errors == []
    finally:
        bob.close()
    page = alice.page
    page.goto(f"{site.url}/w/{garden}/Tomato")
    expect(page.locator(".page-foot .person")).to_have_text("bob @bob.test")
    no_did_shown(page)
    page.goto(f"{site.url}/w/{garden}/-/history/Tomato")
    expect(page.locator("ol.revisions .person")).to_have_text(["bob @bob.test", "alice @alice.test"])
    no_did_shown(page)
    alice.shot("people-02-history-names")
    page.goto(f"{site.url}/w/{garden}/-/recent")
    expect(page.locator("ol.recent li").first).to_contain_text("bob @bob.test")
    no_did_shown(page)
    alice.shot("people-03-recent-names")
    page.goto(f"{site.url}/w/{garden}/-/settings")
    member = page.locator("table.members tr", has_text="bob")
    expect(member.locator(".person")).to_have_text("bob @bob.test")
    expect(member.locator("code.did")).to_have_text("did:plc:" + "b" * 24)   # where the DID is the point


def test_a_diff_marks_the_changed_words(site, alice, garden):  # noqa: F811
    page = alice.page
    page.goto(f"{site.url}/w/{garden}/-/history/Tomato")
    page.click("button:has-text('Compare the selected versions')")
    expect(page.locator(".diff .del del")).to_have_text(["morning"])
    expect(page.locator(".diff .add ins")).to_have_text(["evening"])
    expect(page.locator(".diff .add")).to_contain_text("Water the tomatoes every evening before work.")
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("alice @alice.test")
    expect(facts).to_contain_text("bob @bob.test")
    expect(facts).to_contain_text("Evenings lose less water")
    no_did_shown(page)
    alice.shot("people-04-word-diff")


def test_the_conflict_page_says_who_changed_the_page_and_when(site, chromium, alice, garden):  # noqa: F811
    page = alice.page
    page.goto(f"{site.url}/w/{garden}/-/edit/Tomato")
    bob = Person(site, chromium, "bob", viewport=DESKTOP)
    try:
        bob.page.goto(f"{site.url}/w/{garden}/-/edit/Tomato")
        bob.page.fill("#content", "# Tomato\n\nBob: stake them in June.\n")
        bob.page.fill("#message", "Staking")
        bob.page.click("button:has-text('Save')")
        expect(bob.page.locator("article")).to_contain_text("stake them")
    finally:
        bob.close()
    page.fill("#content", "# Tomato\n\nAlice: mulch them.\n")
    page.click("button:has-text('Save')")
    said = page.locator("#other-change")
    expect(said).to_contain_text("bob @bob.test changed Tomato in the browser just now")
    expect(said).to_contain_text("“Staking”")
    no_did_shown(page)
    alice.shot("people-05-conflict-who-and-when")


def test_connect_panel_warns_about_a_loopback_address_and_copies(site, alice, garden):  # noqa: F811
    page = alice.page
    page.goto(f"{site.url}/w/{garden}/Getting%20Started")
    page.click("article a:has-text('Connect an agent')")
    expect(page).to_have_url(f"{site.url}/w/{garden}/-/connect")
    mcp_url = f"{site.url}/w/{garden}/mcp"
    expect(page.locator("#mcp-url")).to_have_text(mcp_url)
    warning = page.locator("#unreachable")
    expect(warning).to_contain_text("Claude.ai cannot reach this address")
    expect(warning).to_contain_text("Running behind a reverse proxy (https)")
    expect(page.locator("main")).not_to_contain_text("Settings → Connectors")
    page.click("button[data-copy=mcp-url]")
    expect(page.locator("button[data-copy=mcp-url]")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == mcp_url
    alice.shot("people-06-connect-loopback-warning")
    page.click("button:has-text('Create a token and show the command')")
    command = page.locator("#claude-command")
    expect(command).to_contain_text(f"claude mcp add --transport http {garden} {mcp_url} --header")
    expect(page.locator("#new-token")).to_contain_text("shown only this once")
    page.click("button[data-copy=claude-command]")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert re.fullmatch(rf'claude mcp add --transport http {garden} {re.escape(mcp_url)} '
                        r'--header "Authorization: Bearer rwpat_[A-Za-z0-9_-]+"', copied), copied
    assert_fits(page, DESKTOP["width"], "the page with the command")
    alice.shot("people-07-connect-token-command")
    page.goto(f"{site.url}/w/{garden}/-/connect")   # shown once: not there the next time
    expect(page.locator("#claude-command")).to_have_count(0)


def test_connect_panel_and_error_page_on_a_phone(site, chromium, garden):  # noqa: F811
    phone = Person(site, chromium, "alice", viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    try:
        for name, path in [("people-08-phone-connect", f"/w/{garden}/-/connect"),
                           ("people-09-phone-error-in-wiki", f"/w/{garden}/-/edit/Beans"),
                           ("people-10-phone-login-link", None)]:
            phone.page.goto(site.url + path if path else site.cli("login-link", "alice").stdout.strip())
            assert_fits(phone.page, PHONE["width"], name)
            phone.shot(name)
        assert phone.errors == []
    finally:
        phone.close()


def test_an_error_inside_a_wiki_keeps_it_around_and_offers_create(site, alice, garden):  # noqa: F811
    page = alice.page
    response = page.goto(f"{site.url}/w/{garden}/-/edit/Beans/Runner")
    assert response.status == 404
    expect(page.locator(".wikibar .wiki-title")).to_have_text("Garden notes")
    expect(page.locator(".error-page h1")).to_contain_text("Not found")
    alice.shot("people-11-error-in-wiki")
    page.click(".error-page a.button:has-text('Create Beans/Runner')")
    expect(page.locator("#path")).to_have_value("Beans/Runner")
    response = page.goto(f"{site.url}/w/{garden}/mcp")
    assert response.status == 200
    expect(page.locator("h1")).to_have_text("This is an address for AI agents")
    alice.shot("people-12-mcp-address-in-a-browser")
    page.click("a.button:has-text('Connect an agent')")
    expect(page).to_have_url(f"{site.url}/w/{garden}/-/connect")
