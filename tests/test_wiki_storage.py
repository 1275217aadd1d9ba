"""The wiki storage API against a real database made from the real schema (an SQLite file, or a
PostgreSQL database under `make test-postgres`): every operation,
the racing-writers and rename-rewrites-links cases, and every bad input the storage sees, each
checking the exact error and that nothing stored changed."""

from __future__ import annotations

import html
import io
import json
import shutil
import threading
import zipfile

import pytest

import robotwtf_store as store
from conftest import DATABASES

ALICE = "did:plc:aliceaaaaaaaaaaaaaaaaaaa"
BOB = "did:plc:bobbbbbbbbbbbbbbbbbbbbbb"
CAROL = "did:plc:carolccccccccccccccccccc"
QUOTAS = store.Quotas(pages_per_wiki=100, bytes_per_wiki=50 * 1024 * 1024, wikis_per_user=3)
WEB = store.Author(ALICE, "web")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
STORAGE_TABLES = ("wikis", "members", "pages", "revisions", "links", "attachments")


@pytest.fixture(scope="module")
def template_db(tmp_path_factory):
    """A database made by open_database from the real schema, with two users; each test gets a copy."""
    path = DATABASES.create(for_session=True) if DATABASES else tmp_path_factory.mktemp("template") / "robotwtf.db"
    connection = store.open_database(path, create=True)
    store.add_user(connection, ALICE, handle="alice.test", username="alice")
    store.add_user(connection, BOB, handle="bob.test", username="bob")
    connection.close()
    return path


@pytest.fixture
def db_path(tmp_path, template_db):
    if DATABASES:
        return DATABASES.create(template=template_db.rsplit("/", 1)[1])
    path = tmp_path / "robotwtf.db"
    shutil.copyfile(template_db, path)
    return path


@pytest.fixture
def db(db_path):
    connection = store.open_database(db_path, create=False)
    yield connection
    connection.close()


@pytest.fixture
def wiki(db) -> int:
    return store.create_wiki(db, "notes", ALICE, "Notes", quotas=QUOTAS)["id"]


def write(db, wiki, path, content, base="", **kw):
    return store.write_page(db, wiki, path, content, base, author=kw.pop("author", WEB),
                         quotas=kw.pop("quotas", QUOTAS), **kw)


def snapshot(db) -> dict:
    """Every storage table's rows, to show a refused change left no trace."""
    fts_integrity(db)
    return {table: sorted(tuple(row) for row in db.execute(f"SELECT * FROM {table}")) for table in STORAGE_TABLES}


def fts_integrity(db) -> None:
    """Raises if the full-text index disagrees with the pages table (SQLite: FTS5's external content
    check; PostgreSQL: every live page and only those has its document, as the trigger makes it)."""
    if db.engine == "sqlite":
        db.execute("INSERT INTO pages_fts (pages_fts, rank) VALUES ('integrity-check', 1)")
        return
    wrong = db.execute(
        "SELECT count(*) FROM pages p FULL JOIN pages_fts f ON f.page_id = p.id WHERE p.id IS NULL "
        "OR (p.deleted_at IS NULL) != (f.page_id IS NOT NULL) OR f.wiki_id != p.wiki_id OR f.document != setweight(pages_fts_words(p.path), "
        "'A') || setweight(pages_fts_words(p.title), 'B') || setweight(pages_fts_words(p.content), 'D')").fetchone()[0]
    assert wrong == 0, f"{wrong} pages disagree with the full-text index"


def indexed_pages(db) -> int:
    """How many pages the full-text index holds."""
    return db.execute("SELECT count(*) FROM pages_fts" + ("_docsize" if db.engine == "sqlite" else "")).fetchone()[0]


def refused(db, error, match, call, *args, **kwargs):
    """call(*args, **kwargs) raises `error` with `match` in its message and changes nothing."""
    before = snapshot(db)
    with pytest.raises(error) as caught:
        call(*args, **kwargs)
    assert match in caught.value.message, caught.value.message
    assert snapshot(db) == before
    return caught.value


# --- wikis and default pages --------------------------------------------------------------------------

def test_new_wiki_starts_with_home_getting_started_and_agent_guide(db, wiki):
    pages = store.list_pages(db, wiki)
    assert [p.path for p in pages] == ["Agent Guide", "Getting Started", "Home"]
    started = store.read_page(db, wiki, "Getting Started").content
    assert "[Connect an agent](/w/notes/-/connect)" in started and "claude mcp add" in started
    assert "http" not in started   # no server address is frozen into a page: the panel shows the current one
    guide = store.read_page(db, wiki, "Agent Guide").content
    for advice in ("recent changes", "edit_note", "[[Page Path|text]]", "commit_message", "revision"):
        assert advice in guide
    home = store.read_page(db, wiki, "Home")
    assert home.content.startswith("# Notes\n")
    assert [t.path for t in store.page_links(db, wiki, "Home").links_to] == ["Agent Guide", "Getting Started"]
    assert store.orphan_pages(db, wiki) == [] and store.broken_links(db, wiki) == []
    history = store.page_history(db, wiki, "Home")
    assert [(h.kind, h.author_did, h.author_handle, h.via) for h in history] == [("create", ALICE, "alice.test", "web")]
    assert store.member_role(db, wiki, ALICE) == "owner"


@pytest.mark.parametrize("slug, message", [
    ("ab", "3 to 30 characters"), ("-abc", "start or end with a hyphen"), ("admin", "is reserved"),
    ("mcp", "is reserved"), ("Abc", "lower case"), ("a_bc", "only letters"), ("../etc", "only letters"),
    ("", "is required")])
def test_bad_slugs_are_refused(db, wiki, slug, message):
    refused(db, store.BadInput, message, store.create_wiki, db, slug, ALICE, quotas=QUOTAS)


def test_taken_slug_bad_title_and_unknown_owner(db, wiki):
    refused(db, store.Conflict, "The wiki slug 'notes' is taken", store.create_wiki, db, "notes", BOB,
            quotas=QUOTAS)
    refused(db, store.BadInput, "1 to 200 characters", store.create_wiki, db, "other", BOB, "x" * 201,
            quotas=QUOTAS)
    refused(db, store.NotFound, "No user has the DID", store.create_wiki, db, "other", CAROL,
            quotas=QUOTAS)


def test_title_with_html_is_stored_verbatim(db):
    title = "<script>alert('t')</script> & co"
    row = store.create_wiki(db, "html-wiki", ALICE, title, "<b>bold</b>", quotas=QUOTAS)
    assert row["title"] == title and row["description"] == "<b>bold</b>"
    assert store.read_page(db, row["id"], "Home").content.startswith(f"# {title}\n\n<b>bold</b>\n")


def test_wikis_per_user_quota_spares_admins(db):
    quotas = store.Quotas(100, 10**8, wikis_per_user=1)
    store.create_wiki(db, "bobs-wiki", BOB, quotas=quotas)
    error = refused(db, store.QuotaExceeded, "You already have 1 wikis", store.create_wiki, db, "bobs-second", BOB,
                    quotas=quotas)
    assert error.status == 403 and error.code == "quota_exceeded"
    store.create_wiki(db, "alices-1", ALICE, quotas=quotas)
    store.create_wiki(db, "alices-2", ALICE, quotas=quotas)  # the first user is the admin


def test_update_and_delete_wiki(db, wiki):
    row = store.update_wiki(db, wiki, title="  New   title ", description="About", visibility="public")
    assert (row["title"], row["description"], row["visibility"]) == ("New title", "About", "public")
    refused(db, store.BadInput, "Visibility is 'private'", store.update_wiki, db, wiki, visibility="secret")
    refused(db, store.BadInput, "1 to 200 characters", store.update_wiki, db, wiki, title="")
    write(db, wiki, "Extra", "words to find")
    store.put_attachment(db, wiki, "Extra", "a.png", PNG, author=WEB, quotas=QUOTAS)
    store.delete_wiki(db, wiki)
    assert all(not rows for rows in snapshot(db).values())
    assert indexed_pages(db) == 0
    refused(db, store.NotFound, "no longer exists", store.delete_wiki, db, wiki)


# --- members --------------------------------------------------------------------------------------------

def test_members_add_change_remove(db, wiki):
    store.add_member(db, wiki, BOB, "editor")
    store.add_member(db, wiki, CAROL, "viewer")  # not signed in yet
    assert [(m["did"], m["role"], m["handle"]) for m in store.list_members(db, wiki)] == [
        (ALICE, "owner", "alice.test"), (BOB, "editor", "bob.test"), (CAROL, "viewer", None)]
    refused(db, store.Conflict, "already a member", store.add_member, db, wiki, BOB, "viewer")
    refused(db, store.BadInput, "'admin' is not a role", store.add_member, db, wiki, "did:web:example.org", "admin")
    refused(db, store.BadInput, "is not a did:plc or did:web", store.add_member, db, wiki, "alice.test", "viewer")
    store.set_member_role(db, wiki, CAROL, "editor")
    assert store.member_role(db, wiki, CAROL) == "editor"
    store.remove_member(db, wiki, CAROL)
    assert store.member_role(db, wiki, CAROL) is None
    refused(db, store.NotFound, "is not a member", store.remove_member, db, wiki, CAROL)


def test_the_last_owner_can_be_neither_removed_nor_demoted(db, wiki):
    refused(db, store.Conflict, "only owner", store.remove_member, db, wiki, ALICE)
    refused(db, store.Conflict, "only owner", store.set_member_role, db, wiki, ALICE, "editor")
    store.add_member(db, wiki, BOB, "owner")
    store.set_member_role(db, wiki, ALICE, "viewer")
    refused(db, store.Conflict, "only owner", store.remove_member, db, wiki, BOB)
    assert store.member_role(db, wiki, BOB) == "owner"


# --- writing and reading --------------------------------------------------------------------------------

def test_create_read_update(db, wiki):
    created = write(db, wiki, "Projects/Garden", "---\ntitle: The Garden\ncategory: Plans\ntags: [green, Outdoor]\n"
                                                  "status: draft\n---\n# Beds\nfour raised beds\n")
    page = created.page
    assert created.kind == "create" and created.changed and created.revision == page.revision
    assert len(page.revision) == 12 and page.is_current
    assert (page.title, page.category, page.tags, page.words) == ("The Garden", "Plans", ("green", "Outdoor"), 5)
    assert page.meta == {"title": "The Garden", "category": "Plans", "tags": ["green", "Outdoor"], "status": "draft"}
    assert store.read_page(db, wiki, "projects/GARDEN") == page
    updated = write(db, wiki, "PROJECTS/garden", "# Beds\nfive beds\n", page.revision, message="More beds")
    assert updated.kind == "update" and updated.page.path == "Projects/Garden"
    assert updated.page.title == "" and updated.page.display_title == "Garden"
    history = store.page_history(db, wiki, "Projects/Garden")
    assert [(h.kind, h.message, h.via) for h in history] == [("update", "More beds", "web"),
                                                           ("create", "Create Projects/Garden", "web")]
    assert history[0].content is None and history[0].id == updated.revision


def test_writing_identical_content_makes_no_revision(db, wiki):
    page = write(db, wiki, "Same", "text").page
    before = snapshot(db)
    again = write(db, wiki, "Same", "text", page.revision)
    assert again.kind == "none" and not again.changed and again.revision == page.revision
    assert snapshot(db) == before


def test_crlf_becomes_lf(db, wiki):
    assert write(db, wiki, "Lines", "a\r\nb\r\n").page.content == "a\nb\n"


def test_create_over_an_existing_page_is_a_conflict(db, wiki):
    home = store.read_page(db, wiki, "Home")
    error = refused(db, store.Conflict, f"Page 'Home' already exists (revision {home.revision})",
                    write, db, wiki, "home", "mine now")
    assert "pass its revision" in error.message and error.status == 409


def test_stale_revision_is_a_conflict_that_changes_nothing(db, wiki):
    first = write(db, wiki, "Plan", "one").revision
    second = write(db, wiki, "Plan", "two", first).revision
    refused(db, store.Conflict, f"Page 'Plan' changed since revision {first} (now {second}). Read it again, then retry "
                             "with the new revision.", write, db, wiki, "Plan", "three", first)
    refused(db, store.Conflict, f"changed since revision {first[:7]}", store.edit_page, db, wiki, "Plan", first[:7],
            "two", "2", author=WEB, quotas=QUOTAS)
    refused(db, store.Conflict, "'abcdef0' is not a revision of page 'Plan'", write, db, wiki, "Plan", "x", "abcdef0")
    refused(db, store.Conflict, "changed since", store.delete_page, db, wiki, "Plan", author=WEB, base_revision=first)
    refused(db, store.Conflict, "changed since", store.rename_page, db, wiki, "Plan", "Plan B", author=WEB,
            base_revision=first)


def test_updating_a_missing_page_says_how_to_create_it(db, wiki):
    home = store.read_page(db, wiki, "Home").revision
    refused(db, store.NotFound, "To create it, write it without a revision", write, db, wiki, "Nope", "x", home)
    refused(db, store.NotFound, "Page not found: 'Nope'", store.read_page, db, wiki, "Nope")


@pytest.mark.parametrize("revision, error, message", [
    ("abc12", store.BadInput, "too short to name a revision"),
    ("xyz1234", store.BadInput, "is not a revision id"),
    ("ffffffff", store.NotFound, "No revision 'ffffffff' in this page's history"),
    ("\x1b[2J" + "z" * 100, store.BadInput, "'?[2J" + "z" * 76 + "…' is not a revision id"),
])
def test_bad_revision_ids(db, wiki, revision, error, message):
    refused(db, error, message, store.read_page, db, wiki, "Home", revision=revision)


def test_revision_prefixes_and_ambiguity(db, wiki):
    first = write(db, wiki, "Log", "v1").revision
    second = write(db, wiki, "Log", "v2", first).revision
    old = store.read_page(db, wiki, "Log", revision=first[:7].upper())
    assert (old.content, old.revision, old.current_revision, old.is_current) == ("v1", first, second, False)
    # Give both revisions ids sharing 9 characters, as could happen by chance in a big wiki.
    for new_id, old_id in (("abcdef123000", first), ("abcdef123999", second)):
        db.execute("UPDATE revisions SET id = ? WHERE id = ?", (new_id, old_id))
    db.execute("UPDATE pages SET revision_id = 'abcdef123999' WHERE revision_id = ?", (second,))
    refused(db, store.BadInput, "The revision prefix 'abcdef123' matches more than one revision; give more characters",
            store.read_page, db, wiki, "Log", revision="abcdef123")
    assert store.read_page(db, wiki, "Log", revision="abcdef1230").content == "v1"
    assert store.get_revision(db, wiki, "abcdef1239").content == "v2"


def test_a_revision_of_another_page_is_not_found_through_this_page(db, wiki):
    other = write(db, wiki, "Other", "x").revision
    refused(db, store.NotFound, "No revision", store.read_page, db, wiki, "Home", revision=other)


SECTIONED = """---
title: Sections
---
# Intro
hello
## Setup ##
install it
```
# not a heading
```
### Details
fine print
## Usage
use it
# Appendix
## Setup
appendix setup
"""


@pytest.mark.parametrize("section, heading, first_line, last_line", [
    ("intro", "Intro", "# Intro", "use it"),
    ("Setup", "Intro > Setup", "## Setup ##", "fine print"),
    ("INTRO > setup", "Intro > Setup", "## Setup ##", "fine print"),
    ("appendix > setup", "Appendix > Setup", "## Setup", "appendix setup"),
    ("Setup > Details", "Intro > Setup > Details", "### Details", "fine print"),
])
def test_read_a_section(db, wiki, section, heading, first_line, last_line):
    write(db, wiki, "Doc", SECTIONED)
    page = store.read_page(db, wiki, "Doc", section=section)
    lines = page.content.strip("\n").split("\n")
    assert (page.section, lines[0], lines[-1]) == (heading, first_line, last_line)
    assert "# not a heading" in page.content if heading == "Intro > Setup" else True


def test_unknown_section_lists_the_sections(db, wiki):
    write(db, wiki, "Doc", SECTIONED)
    error = refused(db, store.NotFound, "Section not found: 'not a heading'. Available sections:\n  - Intro\n"
                                     "  - Intro > Setup\n  - Intro > Setup > Details", store.read_page, db, wiki, "Doc",
                    section="not a heading")
    assert "Appendix > Setup" in error.message
    write(db, wiki, "Flat", "no headings\n")
    refused(db, store.NotFound, "This page has no sections.", store.read_page, db, wiki, "Flat", section="x")
    refused(db, store.BadInput, "is not a section name", store.read_page, db, wiki, "Doc", section="Intro >")


# --- editing --------------------------------------------------------------------------------------------

def test_edit_replaces_exactly_one_occurrence(db, wiki):
    base = write(db, wiki, "Edit", "---\ntags: [a]\n---\nalpha beta\nbeta gamma\n").revision
    edited = store.edit_page(db, wiki, "Edit", base[:7], "alpha beta", "alpha BETA", author=WEB, quotas=QUOTAS)
    assert edited.kind == "update" and edited.page.content.endswith("alpha BETA\nbeta gamma\n")
    assert store.page_history(db, wiki, "Edit")[0].message == "Edit Edit"
    retagged = store.edit_page(db, wiki, "Edit", edited.revision, "tags: [a]", "tags: [b]", author=WEB, quotas=QUOTAS,
                            message="Retag")
    assert retagged.page.tags == ("b",)
    deleted = store.edit_page(db, wiki, "Edit", retagged.revision, " gamma", "", author=WEB, quotas=QUOTAS)
    assert deleted.page.content.endswith("beta\n")


def test_edit_refusals_say_why(db, wiki):
    base = write(db, wiki, "Edit", "one two two\n").revision
    refused(db, store.BadInput, "old_string occurs 2 times in 'Edit'; include more of the surrounding text",
            store.edit_page, db, wiki, "Edit", base, "two", "2", author=WEB, quotas=QUOTAS)
    refused(db, store.BadInput, f"old_string was not found in 'Edit' (revision {base}). Read the page again",
            store.edit_page, db, wiki, "Edit", base, "three", "3", author=WEB, quotas=QUOTAS)
    refused(db, store.BadInput, "needs the page's current revision", store.edit_page, db, wiki, "Edit", "", "one", "1",
            author=WEB, quotas=QUOTAS)
    refused(db, store.BadInput, "non-empty text", store.edit_page, db, wiki, "Edit", base, "", "x", author=WEB,
            quotas=QUOTAS)
    refused(db, store.TooLarge, "Content too large", store.edit_page, db, wiki, "Edit", base, "one",
            "x" * store.MAX_PAGE_BYTES, author=WEB, quotas=QUOTAS)


# --- rename, delete, restore ----------------------------------------------------------------------------

def test_rename_rewrites_links_in_other_pages_in_one_transaction(db, wiki):
    write(db, wiki, "Ideas", "Self link [[Ideas]].")
    write(db, wiki, "Plans", "See [[Ideas]], [[ideas|my ideas]] and [[Ideas#Later|later]].\n"
                             "`[[Ideas]]` in code stays.\n```\n[[Ideas]]\n```\n")
    write(db, wiki, "Unrelated", "Nothing about [[Home]].")
    plans_before = store.read_page(db, wiki, "Plans").revision
    unrelated_before = snapshot(db)["pages"][-1]
    change = store.rename_page(db, wiki, "IDEAS", "Archive/Ideas", author=store.Author(BOB, "mcp:Claude"))
    assert change.kind == "rename" and change.rewritten == ("Plans",)
    assert change.page.path == "Archive/Ideas" and change.page.content == "Self link [[Archive/Ideas]]."
    plans = store.read_page(db, wiki, "Plans")
    assert plans.content == ("See [[Archive/Ideas]], [[Archive/Ideas|my ideas]] and [[Archive/Ideas#Later|later]].\n"
                             "`[[Ideas]]` in code stays.\n```\n[[Ideas]]\n```\n")
    plan_history = store.page_history(db, wiki, "Plans")
    assert plan_history[1].id == plans_before
    assert (plan_history[0].kind, plan_history[0].message, plan_history[0].via) == (
        "update", "Update links after: Rename Ideas to Archive/Ideas", "mcp:Claude")
    assert snapshot(db)["pages"][-1] == unrelated_before
    history = store.page_history(db, wiki, "archive/ideas")
    assert [(h.kind, h.path, h.old_path, h.current_path) for h in history] == [
        ("rename", "Archive/Ideas", "Ideas", "Archive/Ideas"), ("create", "Ideas", None, "Archive/Ideas")]
    assert store.page_links(db, wiki, "Archive/Ideas").linked_from == ("Plans",)
    assert store.broken_links(db, wiki) == []
    refused(db, store.NotFound, "Page not found: 'Ideas'", store.read_page, db, wiki, "Ideas")
    assert [h.path for h in store.search_pages(db, wiki, "self")] == ["Archive/Ideas"]


def test_rename_refusals(db, wiki):
    write(db, wiki, "A", "[[B]]")
    write(db, wiki, "B", "b")
    refused(db, store.Conflict, "Page 'B' already exists; choose another new path", store.rename_page, db, wiki, "A", "b",
            author=WEB)
    refused(db, store.BadInput, "'A' already has that path", store.rename_page, db, wiki, "A", "A", author=WEB)
    refused(db, store.BadInput, "'.' or '..' segment", store.rename_page, db, wiki, "A", "../A", author=WEB)
    refused(db, store.NotFound, "Page not found: 'C'", store.rename_page, db, wiki, "C", "D", author=WEB)
    assert store.rename_page(db, wiki, "b", "b", author=WEB).rewritten == ("A",)  # a change of case is a rename
    assert store.read_page(db, wiki, "A").content == "[[b]]"


def test_delete_keeps_history_and_restore_brings_the_page_back(db, wiki):
    first = write(db, wiki, "Gone", "first [[Home]]").revision
    last = write(db, wiki, "Gone", "last words [[Home]]", first).revision
    store.put_attachment(db, wiki, "Gone", "pic.png", PNG, author=WEB, quotas=QUOTAS)
    deleted = store.delete_page(db, wiki, "gone", author=WEB, message="Not needed")
    assert deleted.kind == "delete" and deleted.page.deleted_at is not None
    error = refused(db, store.NotFound, f"Page 'gone' was deleted (revision {deleted.revision})", store.read_page, db,
                    wiki, "gone")
    assert "Restore it from its history" in error.message
    assert "Gone" not in [p.path for p in store.list_pages(db, wiki)]
    assert store.search_pages(db, wiki, "words") == []
    assert [p.path for p in store.deleted_pages(db, wiki)] == ["Gone"]
    history = store.page_history(db, wiki, "Gone")
    assert [h.kind for h in history] == ["delete", "attachment", "update", "create"]
    assert history[0].page_deleted and history[0].message == "Not needed"
    assert store.get_revision(db, wiki, last).content == "last words [[Home]]"
    assert store.wiki_usage(db, wiki).pages == 3
    restored = store.restore_revision(db, wiki, deleted.revision, author=WEB, quotas=QUOTAS)
    assert restored.kind == "restore" and restored.page.content == "last words [[Home]]"
    assert restored.page.deleted_at is None
    assert [a.filename for a in store.list_attachments(db, wiki, "Gone")] == ["pic.png"]
    assert store.page_links(db, wiki, "Home").linked_from[-1] == "Gone"
    assert [h.path for h in store.search_pages(db, wiki, "words")] == ["Gone"]
    back = store.restore_revision(db, wiki, first, author=WEB, quotas=QUOTAS, base_revision=restored.revision)
    assert back.page.content == "first [[Home]]" and back.page.revision != first
    assert store.page_history(db, wiki, "Gone")[0].message == f"Restore Gone to revision {first}"


def test_restore_where_a_new_page_now_lives(db, wiki):
    write(db, wiki, "Spot", "old")
    gone = store.delete_page(db, wiki, "Spot", author=WEB).revision
    write(db, wiki, "spot", "new")
    refused(db, store.Conflict, "Page 'spot' exists now. Restore to another path", store.restore_revision, db, wiki, gone,
            author=WEB, quotas=QUOTAS)
    moved = store.restore_revision(db, wiki, gone, author=WEB, quotas=QUOTAS, path="Old Spot")
    assert (moved.page.path, moved.page.content) == ("Old Spot", "old")
    assert store.page_history(db, wiki, "Old Spot")[0].old_path == "Spot"
    refused(db, store.BadInput, "is not deleted; rename it", store.restore_revision, db, wiki, gone, author=WEB,
            quotas=QUOTAS, path="Elsewhere")


# --- listing, search, links, changes --------------------------------------------------------------------

def test_list_pages_filters_combine(db, wiki):
    write(db, wiki, "Projects/Garden", "---\ncategory: Plans\ntags:\n  - green\n  - outdoor\n---\none two three")
    write(db, wiki, "Projects/House", "---\ncategory: plans\ntags: indoor, green\n---\nfour")
    write(db, wiki, "Recipes/Soup", "---\ncategory: Food\ntags: [green]\n---\nfive six")
    db.execute("UPDATE pages SET updated_at = 1000 WHERE path = 'Projects/House'")
    paths = lambda **kw: [p.path for p in store.list_pages(db, wiki, **kw)]
    assert paths(prefix="projects/") == ["Projects/Garden", "Projects/House"]
    assert paths(category="PLANS") == ["Projects/Garden", "Projects/House"]
    assert paths(tag="Green") == ["Projects/Garden", "Projects/House", "Recipes/Soup"]
    assert paths(tag="green", category="plans", prefix="Projects") == ["Projects/Garden", "Projects/House"]
    assert paths(tag="green", updated_since="1970-01-01T00:20:00Z") == ["Projects/Garden", "Recipes/Soup"]
    assert paths(prefix="Projects", updated_since=999) == ["Projects/Garden", "Projects/House"]
    assert paths(updated_since="1970-01-01", tag="indoor") == ["Projects/House"]
    garden = store.list_pages(db, wiki, prefix="Projects/G")[0]
    assert (garden.words, garden.category, garden.tags) == (3, "Plans", ("green", "outdoor"))
    refused(db, store.BadInput, "'last week' is not a date", store.list_pages, db, wiki, updated_since="last week")


def test_search_ranks_highlights_and_supports_prefix_and_phrase(db, wiki):
    write(db, wiki, "Tomatoes", "---\ntitle: Tomato growing\n---\nWater tomatoes at dawn. <script>x</script>")
    write(db, wiki, "Notes", "Once we talked about a tomato, briefly, among many other things to do.")
    hits = store.search_pages(db, wiki, "tomato")
    assert [h.path for h in hits] == ["Tomatoes", "Notes"] and hits[0].score > hits[1].score > 0
    assert store.MARK_START + "tomato" + store.MARK_END in hits[1].snippet
    shown = store.highlight_snippet(store.search_pages(db, wiki, "water")[0].snippet, "<mark>", "</mark>", html.escape)
    assert "<mark>Water</mark>" in shown and "&lt;script&gt;" in shown and "<script>" not in shown
    assert [h.path for h in store.search_pages(db, wiki, "tomat*")] == ["Tomatoes", "Notes"]
    assert [h.path for h in store.search_pages(db, wiki, '"water tomatoes"')] == ["Tomatoes"]
    assert store.search_pages(db, wiki, '"tomatoes water"') == []
    assert [h.path for h in store.search_pages(db, wiki, "dawn water")] == ["Tomatoes"]


@pytest.mark.parametrize("query", ['"', "*", "NEAR(", "NEAR(a b)", "-", "-tomato", "AND", "tomato AND", "OR NOT",
                                   'tomato "unbalanced', 'a"b', "(", ")", "^tomato", "title:tomato", "{a b}:x",
                                   "tomato*)", "'", "\\", "%", "+", ":", "\x00", "*tomato", "💡"])
def test_search_never_raises_on_fts_syntax(db, wiki, query):
    write(db, wiki, "Tomatoes", "tomato and more")
    before = snapshot(db)
    assert isinstance(store.search_pages(db, wiki, query), list)
    assert snapshot(db) == before


def test_search_follows_writes_in_the_same_transaction(db, wiki):
    base = write(db, wiki, "Fruit", "apple").revision
    assert [h.path for h in store.search_pages(db, wiki, "apple")] == ["Fruit"]
    write(db, wiki, "Fruit", "banana", base)
    assert store.search_pages(db, wiki, "apple") == []
    assert [h.path for h in store.search_pages(db, wiki, "fruit")] == ["Fruit"]  # the path is indexed
    refused(db, store.Conflict, "changed since", write, db, wiki, "Fruit", "cherry", base)
    assert store.search_pages(db, wiki, "cherry") == []
    other = store.create_wiki(db, "other", BOB, quotas=QUOTAS)["id"]
    assert store.search_pages(db, other, "banana") == []


def test_links_orphans_and_broken_links(db, wiki):
    write(db, wiki, "A", "[[B]] [[b|again]] [[Missing]] [[../bad]] `[[Code]]`")
    write(db, wiki, "B", "[[A]] [[B]]")
    write(db, wiki, "Lonely", "[[Lonely]] only myself")
    links = store.page_links(db, wiki, "a")
    assert links.path == "A" and links.linked_from == ("B",)
    assert links.links_to == (store.LinkTarget("B", True), store.LinkTarget("Missing", False))
    assert store.orphan_pages(db, wiki) == ["Lonely"]
    assert store.broken_links(db, wiki) == [store.BrokenLink("A", "Missing")]
    store.delete_page(db, wiki, "B", author=WEB)
    assert store.broken_links(db, wiki) == [store.BrokenLink("A", "B"), store.BrokenLink("A", "Missing")]
    assert store.orphan_pages(db, wiki) == ["A", "Lonely"]
    assert [w.target for w in store.wikilinks("[[ x | y ]] [[p#frag]] ```\n[[no]]\n```")] == ["x", "p"]
    assert store.existing_pages(db, wiki, ["a", "LONELY", "Missing", "B"]) == {"a": "A", "lonely": "Lonely"}


def test_recent_changes_and_diff(db, wiki):
    base = write(db, wiki, "Diary", "day one\n").revision
    second = write(db, wiki, "Diary", "day one\nday two\n", base, author=store.Author(BOB, "token:laptop")).revision
    changes = store.recent_changes(db, wiki, limit=2)
    assert [(c.id, c.author_handle, c.via) for c in changes] == [(second, "bob.test", "token:laptop"),
                                                                 (base, "alice.test", "web")]
    assert len(store.recent_changes(db, wiki, limit=0)) == 1 and len(store.recent_changes(db, wiki, limit=10**6)) == 5
    diff = store.diff_revisions(db, wiki, base[:7], second)
    assert diff.text.splitlines() == [f"--- Diary@{base[:8]}", f"+++ Diary@{second[:8]}", "@@ -1 +1,2 @@",
                                      " day one", "+day two"]
    assert store.diff_revisions(db, wiki, second, second).text == ""
    assert store.unified_diff("a", "b", "x", "y").endswith("\\ No newline at end of file\n")


# --- concurrency ----------------------------------------------------------------------------------------

def test_racing_writers_exactly_one_wins(db_path, db, wiki):
    base = write(db, wiki, "Race", "start").revision
    runners = 6
    barrier = threading.Barrier(runners)
    results: list = []

    def writer(n: int) -> None:
        connection = store.db_connect(db_path)
        try:
            barrier.wait()
            results.append(write(connection, wiki, "Race", f"writer {n}", base).page.content)
        except store.Conflict as e:
            results.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(runners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [r for r in results if isinstance(r, str)]
    assert len(winners) == 1 and len(results) == runners
    assert all("changed since revision" in r.message for r in results if isinstance(r, store.Conflict))
    assert store.read_page(db, wiki, "Race").content == winners[0]
    assert len(store.page_history(db, wiki, "Race")) == 2


def test_racing_creators_exactly_one_wins(db_path, db, wiki):
    barrier = threading.Barrier(4)
    results: list = []

    def creator(n: int) -> None:
        connection = store.db_connect(db_path)
        try:
            barrier.wait()
            results.append(write(connection, wiki, "New", f"creator {n}").kind)
        except store.Conflict as e:
            results.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=creator, args=(n,)) for n in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert results.count("create") == 1 and sum(isinstance(r, store.Conflict) for r in results) == 3


# --- bad input ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, message", [
    ("../x", "'.' or '..' segment"), ("a/../../etc/passwd", "'.' or '..' segment"), ("a/./b", "'.' or '..' segment"),
    ("a//b", "has an empty segment"), ("/abs", "has an empty segment"), ("trail/", "has an empty segment"),
    (".git/config", "hidden names such as '.git'"), ("a/.hidden", "hidden names"),
    ("a\x00b", "may not contain NUL"), ("a\nb", "control characters"), ("tab\there", "control characters"),
    ("x" * 256, "at most 255 bytes of UTF-8; this one is 256"), ("é" * 150, "this one is 300"),
    ("a\u202eb", "bidirectional override"), ("\u2066x", "bidirectional override"), ("x\u202a", "bidirectional"),
    ("mcp", "'mcp' is reserved"), ("MCP/tools", "'mcp' is reserved"), ("-/edit", "starting with '-'"),
    ("a/-b", "starting with '-'"), ("a|b", "may not contain [ ] | #"), ("[[x]]", "may not contain [ ] | #"),
    ("a#b", "may not contain [ ] | #"), ("a\\b", "may not contain [ ] | #"), ("", "A page path is required"),
    ("   ", "A page path is required"), ("a /b", "starts or ends with a space"), ("\ud800", "lone surrogate"),
])
def test_odd_page_paths_are_refused(db, wiki, path, message):
    refused(db, store.BadInput, message, write, db, wiki, path, "content")


@pytest.mark.parametrize("path", ["a/mcp", "mcpx", "Über/Straße", "x" * 255, "dots.in.name", "a-b/c_d", "日本語",
                                  "<script>alert(1)</script>"])
def test_unusual_but_valid_paths(db, wiki, path):
    page = write(db, wiki, path, "fine").page
    assert store.read_page(db, wiki, path).path == path == page.path


def test_path_is_nfc_and_casefolded_for_identity(db, wiki):
    write(db, wiki, "Cafe\u0301", "decomposed")
    assert store.read_page(db, wiki, "CAFÉ").path == "Café"
    refused(db, store.Conflict, "already exists", write, db, wiki, "café", "composed")


def test_oversize_content_is_refused(db, wiki):
    refused(db, store.TooLarge, "Content too large (1000001 bytes). Maximum size is 1000000 bytes", write, db, wiki,
            "Big", "x" * 1_000_001)
    refused(db, store.TooLarge, "Content too large (1000002 bytes)", write, db, wiki, "Big", "é" * 500_001)
    assert write(db, wiki, "Big", "é" * 500_000).page.size == 1_000_000


@pytest.mark.parametrize("content, message", [
    ("a\x00b", "control character U+0000 on line 1"), ("ok\n\x1b[31m", "U+001B on line 2"),
    ("\ud83d", "lone surrogate"), (b"bytes", "must be text")])
def test_bad_content_is_refused(db, wiki, content, message):
    refused(db, store.BadInput, message, write, db, wiki, "Bad", content)


def test_decode_utf8_refuses_invalid_bytes():
    assert store.decode_utf8("\ufeffhé".encode()) == "hé"
    with pytest.raises(store.BadInput) as caught:
        store.decode_utf8(b"ok \xff\xfe", "The upload")
    assert caught.value.message == ("The upload is not valid UTF-8 (bad byte at offset 3). "
                                    "Save it as UTF-8 and try again.")


def test_html_in_content_titles_and_messages_is_stored_verbatim(db, wiki):
    content = "---\ntitle: <img src=x onerror=alert(1)>\n---\n<script>alert('x')</script>\n[[<b>]]"
    change = write(db, wiki, "Evil", content, message="<i>msg</i>")
    assert change.page.content == content and change.page.title == "<img src=x onerror=alert(1)>"
    assert store.page_history(db, wiki, "Evil")[0].message == "<i>msg</i>"
    assert store.broken_links(db, wiki) == [store.BrokenLink("Evil", "<b>")]


def test_bad_messages_and_authors(db, wiki):
    refused(db, store.BadInput, "at most 2000 characters", write, db, wiki, "M", "x", message="m" * 2001)
    refused(db, store.BadInput, "control or bidirectional", write, db, wiki, "M", "x", message="a\u202eb")
    with pytest.raises(store.BadInput, match="is not a way of changing a wiki"):
        store.Author(ALICE, "email")
    with pytest.raises(store.BadInput, match="is not a did:plc or did:web"):
        store.Author("alice", "web")
    assert store.Author.mcp(ALICE, "Claude\u202e\n" + "x" * 300).via == "mcp:Claude" + "x" * 94
    assert store.Author.token(ALICE, "").via == "token:token"


# --- attachments ----------------------------------------------------------------------------------------

def test_attachments_put_list_get_replace_delete(db, wiki):
    before = store.read_page(db, wiki, "Home").revision
    put = store.put_attachment(db, wiki, "home", "../../Diagram.PNG", PNG, author=WEB, quotas=QUOTAS)
    assert put.kind == "attachment" and put.revision != before
    assert (put.attachment.filename, put.attachment.content_type, put.attachment.size) == ("Diagram.PNG", "image/png",
                                                                                          len(PNG))
    assert put.page.content == store.read_page(db, wiki, "Home", revision=before).content
    store.put_attachment(db, wiki, "Home", "notes.md", b"# notes\n", author=WEB, quotas=QUOTAS)
    assert [(a.filename, a.content_type, a.data) for a in store.list_attachments(db, wiki, "Home")] == [
        ("Diagram.PNG", "image/png", None), ("notes.md", "text/markdown", None)]
    got = store.get_attachment(db, wiki, "Home", "diagram.png")
    assert got.data == PNG and store.attachment_delivery(got) == (
        "image/png", "inline; filename=\"Diagram.PNG\"; filename*=UTF-8''Diagram.PNG")
    store.put_attachment(db, wiki, "Home", "DIAGRAM.png", PNG + b"more", author=WEB, quotas=QUOTAS)
    assert [a.size for a in store.list_attachments(db, wiki, "Home")] == [len(PNG) + 4, 8]
    removed = store.delete_attachment(db, wiki, "Home", "diagram.png", author=WEB)
    assert removed.attachment.filename == "DIAGRAM.png"  # a replacement takes the new upload's name
    assert [a.filename for a in store.list_attachments(db, wiki, "Home")] == ["notes.md"]
    history = store.page_history(db, wiki, "Home")
    assert [(h.kind, h.attachment) for h in history[:4]] == [
        ("attachment", "DIAGRAM.png"), ("attachment", "DIAGRAM.png"), ("attachment", "notes.md"),
        ("attachment", "Diagram.PNG")]
    assert history[0].message == "Delete attachment DIAGRAM.png from Home"
    refused(db, store.NotFound, "Page 'Home' has no attachment 'diagram.png'", store.get_attachment, db, wiki, "Home",
            "diagram.png")
    refused(db, store.NotFound, "has no attachment", store.delete_attachment, db, wiki, "Home", "nope.txt", author=WEB)
    refused(db, store.NotFound, "Page not found: 'Nowhere'", store.put_attachment, db, wiki, "Nowhere", "a.png", PNG,
            author=WEB, quotas=QUOTAS)


def test_huge_attachment_is_refused(db, wiki):
    refused(db, store.TooLarge, f"The file is {store.MAX_ATTACHMENT_BYTES + 1} bytes; attachments are at most "
                             f"{store.MAX_ATTACHMENT_BYTES} bytes", store.put_attachment, db, wiki, "Home", "big.bin",
            b"\0" * (store.MAX_ATTACHMENT_BYTES + 1), author=WEB, quotas=QUOTAS)
    assert store.put_attachment(db, wiki, "Home", "max.bin", b"\0" * store.MAX_ATTACHMENT_BYTES, author=WEB,
                             quotas=QUOTAS).attachment.content_type == "application/octet-stream"


@pytest.mark.parametrize("name, data, sniffed, served, disposition", [
    ("photo.png", b"<html><script>alert(1)</script>", "text/html", "application/octet-stream", "attachment"),
    ("photo.png", b"  <!DOCTYPE html><p>x", "text/html", "application/octet-stream", "attachment"),
    ("image.svg", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg>',
     "image/svg+xml", "application/octet-stream", "attachment"),
    ("pic.jpg", b"<svg onload=alert(1)>", "image/svg+xml", "application/octet-stream", "attachment"),
    ("data.xml", b"<?xml version='1.0'?><a/>", "application/xml", "application/octet-stream", "attachment"),
    ("page.html", b"just words", "text/plain", "text/plain; charset=utf-8", "inline"),
    ("notes.txt", b"\xef\xbb\xbfplain text", "text/plain", "text/plain; charset=utf-8", "inline"),
    ("doc.pdf", b"%PDF-1.7\n...", "application/pdf", "application/pdf", "attachment"),
    ("real.gif", b"GIF89a....", "image/gif", "image/gif", "inline"),
    ("a.webp", b"RIFF\0\0\0\0WEBPVP8 ", "image/webp", "image/webp", "inline"),
    ("x.exe", b"MZ\x90\x00\xff\xfe", "application/octet-stream", "application/octet-stream", "attachment"),
    ("text.png", b"hello", "text/plain", "text/plain; charset=utf-8", "inline"),
])
def test_content_type_is_sniffed_and_served_safely(db, wiki, name, data, sniffed, served, disposition):
    stored = store.put_attachment(db, wiki, "Home", name, data, author=WEB, quotas=QUOTAS).attachment
    assert stored.content_type == sniffed
    content_type, header = store.attachment_delivery(store.get_attachment(db, wiki, "Home", name))
    assert content_type == served and header.startswith(disposition + ";")


@pytest.mark.parametrize("given, stored", [
    ("../../etc/passwd", "passwd"), ("C:\\Users\\me\\report.pdf", "report.pdf"), (".htaccess", "htaccess"),
    ("name.", "name"), ("a\u202egnp.exe", "agnp.exe"), ("tab\tand\nnewline.txt", "tab and newline.txt"),
    ("<img src=x onerror=alert(1)>.png", "<img src=x onerror=alert(1)>.png"), ("zero\u200bwidth.txt", "zerowidth.txt"),
    ("y" * 300 + ".txt", "y" * 196 + ".txt"),
])
def test_filenames_are_sanitised(db, wiki, given, stored):
    assert store.sanitize_filename(given) == stored
    assert store.put_attachment(db, wiki, "Home", given, b"x", author=WEB, quotas=QUOTAS).attachment.filename == stored


@pytest.mark.parametrize("name", ["", "...", "../", " \u202e ", "\x00"])
def test_unusable_filenames_are_refused(db, wiki, name):
    refused(db, store.BadInput, "no usable characters", store.put_attachment, db, wiki, "Home", name, b"x", author=WEB,
            quotas=QUOTAS)


def test_content_disposition_escapes_the_name():
    attachment = store.Attachment('say "hi"; x\\y ü.txt', "text/plain", 1, ALICE, 0)
    assert store.attachment_delivery(attachment)[1] == (
        "inline; filename=\"say _hi__ x_y _.txt\"; filename*=UTF-8''say%20%22hi%22%3B%20x%5Cy%20%C3%BC.txt")


# --- quotas ---------------------------------------------------------------------------------------------

def test_page_quota_refuses_new_pages_but_allows_edits(db, wiki):
    quotas = store.Quotas(pages_per_wiki=4, bytes_per_wiki=10**8, wikis_per_user=10)
    extra = write(db, wiki, "Fourth", "x", quotas=quotas).revision
    error = refused(db, store.QuotaExceeded, "This wiki has reached its limit of 4 pages", write, db, wiki, "Fifth",
                    "x", quotas=quotas)
    assert "--max-pages-per-wiki" in error.message
    assert write(db, wiki, "Fourth", "edited at the limit", extra, quotas=quotas).kind == "update"
    store.put_attachment(db, wiki, "Fourth", "a.txt", b"x", author=WEB, quotas=quotas)
    gone = store.delete_page(db, wiki, "Fourth", author=WEB).revision
    write(db, wiki, "Fifth", "x", quotas=quotas)
    refused(db, store.QuotaExceeded, "limit of 4 pages", store.restore_revision, db, wiki, gone, author=WEB, quotas=quotas)
    report = store.import_pages(db, wiki, make_zip({"Sixth.md": b"x"}), author=WEB, quotas=quotas)
    assert report.created == () and "limit of 4 pages" in report.skipped[0][1]


def test_byte_quota_counts_current_content_and_attachments(db, wiki):
    used = store.wiki_usage(db, wiki).bytes
    quotas = store.Quotas(pages_per_wiki=100, bytes_per_wiki=used + 100, wikis_per_user=10)
    base = write(db, wiki, "Fill", "x" * 60, quotas=quotas).revision
    refused(db, store.QuotaExceeded, f"This change needs 50 more bytes but the wiki uses {used + 60} of its {used + 100}",
            write, db, wiki, "More", "y" * 50, quotas=quotas)
    refused(db, store.QuotaExceeded, "needs 41 more bytes", store.put_attachment, db, wiki, "Fill", "f.bin", b"z" * 41,
            author=WEB, quotas=quotas)
    refused(db, store.QuotaExceeded, "--max-wiki-bytes", store.edit_page, db, wiki, "Fill", base, "x" * 60, "x" * 101,
            author=WEB, quotas=quotas)
    assert write(db, wiki, "Fill", "shorter", base, quotas=quotas).kind == "update"
    over = store.Quotas(pages_per_wiki=100, bytes_per_wiki=1, wikis_per_user=10)
    page = store.read_page(db, wiki, "Fill")
    assert write(db, wiki, "Fill", "s", page.revision, quotas=over).kind == "update"  # shrinking always works
    assert store.wiki_usage(db, wiki) == store.Usage(4, used + 1)


def test_quota_settings_have_defaults_and_flags():
    cfg = store.load_config({"max_pages_per_wiki": "7"}, environ={"ROBOTWTF_MAX_WIKI_BYTES": "1000"})
    assert cfg.quotas == store.Quotas(7, 1000, 10)
    assert store.load_config({}, environ={}).quotas == store.Quotas(5000, 256 * 1024 * 1024, 10)
    with pytest.raises(store.ConfigError, match="must be a positive whole number"):
        store.load_config({}, environ={"ROBOTWTF_MAX_WIKIS_PER_USER": "0"})


# --- export and import ----------------------------------------------------------------------------------

def make_zip(files: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_export_has_pages_attachments_and_history(db, wiki):
    write(db, wiki, "Projects/Garden", "beds")
    store.put_attachment(db, wiki, "Projects/Garden", "plan.png", PNG, author=WEB, quotas=QUOTAS)
    write(db, wiki, "Old", "old")
    store.delete_page(db, wiki, "Old", author=WEB)
    archive = zipfile.ZipFile(io.BytesIO(store.export_wiki(db, wiki)))
    names = archive.namelist()
    assert sorted(n for n in names if not n.startswith("revisions/")) == [
        "attachments/Projects/Garden/plan.png", "history.json", "pages/Agent Guide.md", "pages/Getting Started.md",
        "pages/Home.md", "pages/Projects/Garden.md"]
    assert archive.read("pages/Projects/Garden.md") == b"beds"
    assert archive.read("attachments/Projects/Garden/plan.png") == PNG
    manifest = json.loads(archive.read("history.json"))
    assert manifest["wiki"]["slug"] == "notes" and manifest["format"] == "robotwtf-export-2"
    pages = {p["path"]: p for p in manifest["pages"]}
    assert [r["kind"] for r in pages["Old"]["revisions"]] == ["create", "delete"] and pages["Old"]["deleted_at"]
    garden = pages["Projects/Garden"]["revisions"]
    assert [r["kind"] for r in garden] == ["create", "attachment"]
    assert garden[0]["author_did"] == ALICE and garden[0]["author_name"] == "alice (@alice.test)"
    # a revision that did not change the text shares the file of the one before
    assert garden[0]["content"] == garden[1]["content"] == f"revisions/{garden[0]['id']}.md"
    assert archive.read(garden[0]["content"]) == b"beds"
    assert sum(n.startswith("revisions/") for n in names) == 5   # 3 default pages, Garden, Old


def test_import_round_trips_an_export_and_reports_what_it_skipped(db, wiki):
    write(db, wiki, "Projects/Garden", "beds [[Home]]")
    store.put_attachment(db, wiki, "Projects/Garden", "plan.png", PNG, author=WEB, quotas=QUOTAS)
    exported = store.export_wiki(db, wiki)
    target = store.create_wiki(db, "copy", BOB, quotas=QUOTAS)["id"]
    report = store.import_pages(db, target, exported, author=store.Author(BOB, "web"), quotas=QUOTAS)
    assert report.created == ("Projects/Garden",) and report.revisions == 2 and report.attachments == 1
    assert dict(report.skipped) == {
        "pages/Agent Guide.md": "a page with this path already exists",
        "pages/Getting Started.md": "a page with this path already exists",
        "pages/Home.md": "a page with this path already exists"}
    page = store.read_page(db, target, "Projects/Garden")
    assert page.content == "beds [[Home]]" and "Projects/Garden" in store.page_links(db, target, "Home").linked_from
    old, new = store.page_history(db, wiki, "Projects/Garden"), store.page_history(db, target, "Projects/Garden")
    assert [(r.kind, r.author_did, r.via, r.message, r.created_at) for r in new] == \
        [(r.kind, r.author_did, r.via, r.message, r.created_at) for r in old]
    assert [r.imported_from for r in new] == [r.id for r in old] and {r.id for r in new}.isdisjoint(r.id for r in old)
    assert store.get_attachment(db, target, "Projects/Garden", "plan.png").data == PNG


def test_import_of_a_format_1_export_brings_its_attachments(db, wiki):
    data = make_zip({"history.json": json.dumps({"format": "robotwtf-export-1", "pages": []}).encode(),
                     "pages/Plans.md": b"the plan", "attachments/Plans/map.png": PNG,
                     "attachments/Home/stray.png": PNG})
    report = store.import_pages(db, wiki, data, author=WEB, quotas=QUOTAS)
    assert report.created == ("Plans",) and report.attachments == 1
    assert dict(report.skipped) == {"attachments/Home/stray.png": "its page was not created by this import"}
    assert store.get_attachment(db, wiki, "Plans", "map.png").data == PNG


def test_a_damaged_export_page_is_skipped_whole_and_nothing_else_is_lost(db, wiki):
    write(db, wiki, "Good", "good")
    write(db, wiki, "Bad", "bad")
    exported = zipfile.ZipFile(io.BytesIO(store.export_wiki(db, wiki)))
    manifest = json.loads(exported.read("history.json"))
    bad = next(p for p in manifest["pages"] if p["path"] == "Bad")
    bad["revisions"][0]["author_did"] = "did:example:nobody"
    files = {n: exported.read(n) for n in exported.namelist()}
    files["history.json"] = json.dumps(manifest).encode()
    target = store.create_wiki(db, "copy", BOB, quotas=QUOTAS)["id"]
    report = store.import_pages(db, target, make_zip(files), author=WEB, quotas=QUOTAS)
    assert report.created == ("Good",)
    assert dict(report.skipped)["pages/Bad.md"] == "'did:example:nobody' is not a did:plc or did:web identifier."
    assert [p.path for p in store.list_pages(db, target)] == ["Agent Guide", "Getting Started", "Good", "Home"]
    assert store.read_page(db, wiki, "Bad").content == "bad"


def test_import_skips_bad_entries_and_creates_the_rest(db, wiki):
    data = make_zip({"Good.md": "# Good\n".encode(), "Sub/Deeper.markdown": b"deep", "../evil.md": b"x",
                     ".git/config.md": b"x", "image.png": PNG, "latin1.md": "caf\xe9".encode("latin-1"),
                     "big.md": b"x" * (store.MAX_PAGE_BYTES + 1), "mcp.md": b"x", "nul.md": b"a\x00b",
                     "good.md": b"duplicate by case"})
    report = store.import_pages(db, wiki, data, author=WEB, quotas=QUOTAS)
    assert report.created == ("Good", "Sub/Deeper")
    reasons = dict(report.skipped)
    assert reasons["../evil.md"].startswith("'../evil' has a '.' or '..' segment")
    assert "hidden names" in reasons[".git/config.md"]
    assert reasons["image.png"] == "not a Markdown file (.md)"
    assert reasons["latin1.md"].startswith("The file is not valid UTF-8")
    assert reasons["big.md"] == f"larger than {store.MAX_PAGE_BYTES} bytes"
    assert "'mcp' is reserved" in reasons["mcp.md"]
    assert "control character U+0000" in reasons["nul.md"]
    assert reasons["good.md"] == "a page with this path already exists"
    fts_integrity(db)


def test_import_refuses_what_is_not_a_zip(db, wiki):
    refused(db, store.BadInput, "not a zip archive", store.import_pages, db, wiki, b"PK\x03\x04 but not really",
            author=WEB, quotas=QUOTAS)


# --- the schema -------------------------------------------------------------------------------------------

def test_every_table_lives_in_one_schema_with_migration_2(db):
    names = {r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                                      if db.engine == "postgresql" else "SELECT name FROM sqlite_master")}
    assert {"pages", "revisions", "links", "attachments", "pages_fts"} <= names
    assert store.SCHEMA_VERSION >= 2 and store.MIGRATIONS[0][0] == 2
