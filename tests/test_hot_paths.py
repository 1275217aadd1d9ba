"""Guards for what `make bench` found expensive: the statements run by every write must stay
index lookups, never a scan that grows with the wiki (the quota counters must match a recount
after every kind of change); the fast path that validates every
tools/call's arguments and structured result must agree with the full validation; read_note
reads a page with its links in one statement."""

from __future__ import annotations

import base64
import json
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import robotwtf_store as store
import robotwtf_mcp as mcp

ALICE = "did:plc:aliceaaaaaaaaaaaaaaaaaaa"
QUOTAS = store.Quotas(pages_per_wiki=100, bytes_per_wiki=50 * 1024 * 1024, wikis_per_user=3)


@pytest.fixture
def db(tmp_path):
    connection = store.open_database(tmp_path / "robotwtf.db", create=True)
    store.add_user(connection, ALICE, handle="alice.test", username="alice")
    yield connection
    connection.close()


def plans_of(db: sqlite3.Connection, run) -> list[str]:
    """The query plan of every statement `run()` executes (bound values expanded by SQLite)."""
    statements = []
    db.set_trace_callback(statements.append)
    try:
        run()
    finally:
        db.set_trace_callback(None)
    queries = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    return [" / ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + q)) for q in queries]


def test_quota_usage_is_one_row_not_a_sum_over_the_pages(db):
    wiki = store.create_wiki(db, "notes", ALICE, "Notes", quotas=QUOTAS)["id"]
    plans = plans_of(db, lambda: store.wiki_usage(db, wiki))
    assert plans == ["SEARCH wiki_totals USING INTEGER PRIMARY KEY (rowid=?)"], plans


def recount(db: sqlite3.Connection, wiki_id: int) -> store.Usage:
    """What wiki_usage meant before the counters: a sum over the live pages and their files."""
    pages, content = db.execute("SELECT count(*), coalesce(sum(size), 0) FROM pages WHERE wiki_id = ? "
                                "AND deleted_at IS NULL", (wiki_id,)).fetchone()
    files = db.execute("SELECT coalesce(sum(a.size), 0) FROM attachments a JOIN pages p ON p.id = a.page_id "
                       "WHERE p.wiki_id = ? AND p.deleted_at IS NULL", (wiki_id,)).fetchone()[0]
    return store.Usage(pages, content + files)


def test_quota_counters_follow_every_kind_of_change(db):
    quotas = store.Quotas(pages_per_wiki=100, bytes_per_wiki=50 * 1024 * 1024, wikis_per_user=5)
    wiki = store.create_wiki(db, "notes", ALICE, "Notes", quotas=quotas)["id"]
    other = store.create_wiki(db, "other", ALICE, "Other", quotas=quotas)["id"]
    author = store.Author(ALICE, "web")
    store.write_page(db, other, "Elsewhere", "x" * 500, author=author, quotas=quotas)
    store.put_attachment(db, other, "Elsewhere", "a.txt", b"z" * 300, author=author, quotas=quotas)
    others = store.wiki_usage(db, other)
    assert others == recount(db, other) and others.pages == 4  # the three default pages and ours
    steps = [
        lambda: store.write_page(db, wiki, "Arm", "# Arm\n" + "a" * 1000, author=author, quotas=quotas),
        lambda: store.write_page(db, wiki, "Leg", "short", author=author, quotas=quotas),
        lambda: store.write_page(db, wiki, "Arm", "shrunk", store.read_page(db, wiki, "Arm").revision,
                              author=author, quotas=quotas),
        lambda: store.edit_page(db, wiki, "Leg", store.read_page(db, wiki, "Leg").revision, "short", "much longer now",
                             author=author, quotas=quotas),
        lambda: store.put_attachment(db, wiki, "Arm", "photo.png", b"\x89PNG\r\n\x1a\n" + b"0" * 4000,
                                  author=author, quotas=quotas),
        lambda: store.put_attachment(db, wiki, "Arm", "photo.png", b"\x89PNG\r\n\x1a\n" + b"0" * 100,
                                  author=author, quotas=quotas),
        lambda: store.put_attachment(db, wiki, "Arm", "notes.txt", b"plain text", author=author, quotas=quotas),
        lambda: store.rename_page(db, wiki, "Arm", "Limbs/Arm", author=author),
        lambda: store.delete_page(db, wiki, "Limbs/Arm", author=author),
        lambda: store.restore_revision(db, wiki, store.deleted_pages(db, wiki)[0].revision, author=author, quotas=quotas),
        lambda: store.delete_attachment(db, wiki, "Limbs/Arm", "notes.txt", author=author),
        lambda: store.delete_page(db, wiki, "Leg", author=author),
    ]
    for step in steps:
        step()
        assert store.wiki_usage(db, wiki) == recount(db, wiki)
        assert store.wiki_usage(db, other) == recount(db, other) == others
    store.delete_wiki(db, wiki)
    assert db.execute("SELECT count(*) FROM wiki_totals WHERE wiki_id = ?", (wiki,)).fetchone()[0] == 0
    assert store.wiki_usage(db, other) == others


def test_a_hard_deleted_page_takes_its_files_out_of_the_count(db):
    # No storage call hard-deletes a single page today; the triggers must still agree if one does.
    wiki = store.create_wiki(db, "notes", ALICE, "Notes", quotas=QUOTAS)["id"]
    author = store.Author(ALICE, "web")
    store.write_page(db, wiki, "Keep", "kept", author=author, quotas=QUOTAS)
    store.write_page(db, wiki, "Gone", "going", author=author, quotas=QUOTAS)
    store.put_attachment(db, wiki, "Gone", "f.txt", b"12345", author=author, quotas=QUOTAS)
    with store.transaction(db):
        db.execute("DELETE FROM pages WHERE path = 'Gone'")
    usage = store.wiki_usage(db, wiki)
    assert usage == recount(db, wiki) and usage.pages == 4


# --- the tools/call validation fast path ---------------------------------------------------------

SMALL = st.one_of(st.none(), st.booleans(), st.integers(-3, 8), st.floats(-1, 9, allow_nan=False),
                  st.sampled_from(["", "x", "y", "abc", "abcd", "Home"]))
JSON = st.recursive(SMALL, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.sampled_from(["a", "n", "e", "l", "o", "z"]),
                                                                   inner, max_size=4)), max_leaves=8)
EVERY_KEYWORD = {
    "type": "object",
    "properties": {
        "a": {"type": "string", "minLength": 1, "maxLength": 3},
        "n": {"type": "integer", "minimum": 0, "maximum": 5},
        "e": {"enum": ["x", "y", 3]},
        "l": {"type": "array", "items": {"type": ["string", "null"]}},
        "o": {"type": "object", "properties": {"a": {"type": "number", "maximum": 2}}, "required": ["a"]},
    },
    "required": ["a"],
    "additionalProperties": False,
}
SCHEMAS = [EVERY_KEYWORD] + [t.input_schema for t in mcp.TOOLS] + [t.output_schema for t in mcp.TOOLS if t.output_schema]


@settings(max_examples=400, deadline=None)
@given(value=st.one_of(JSON, st.fixed_dictionaries({}, optional={k: JSON for k in "anelo"})),
       schema=st.sampled_from(SCHEMAS))
def test_conforms_agrees_with_the_full_validation(value, schema):
    assert mcp.compile_schema(schema)(value) == (mcp.problems(value, schema, "") == [])


# --- read_note's one-statement read -----------------------------------------------------------------

def test_read_page_with_links_is_read_page_plus_page_links_in_one_statement(db):
    wiki = store.create_wiki(db, "notes", ALICE, "Notes", quotas=QUOTAS)["id"]
    author = store.Author(ALICE, "web")
    first = store.write_page(db, wiki, "Arm", "# Arm\n\n## Wiring\n\nSee [[Servo]] and [[Missing]].\n",
                          author=author, quotas=QUOTAS).revision
    store.write_page(db, wiki, "Servo", "Back to [[arm]].\n", author=author, quotas=QUOTAS)
    store.write_page(db, wiki, "Arm", "# Arm\n\n## Wiring\n\nSee [[Servo]], [[Missing]] and [[Home]].\n", first,
                  author=author, quotas=QUOTAS)
    statements = []
    db.set_trace_callback(statements.append)
    page, links = store.read_page_with_links(db, wiki, "arm")
    db.set_trace_callback(None)
    assert page == store.read_page(db, wiki, "arm") and links == store.page_links(db, wiki, "Arm")
    assert len(statements) == 1, statements
    assert [(t.path, t.exists) for t in links.links_to] == [("Home", True), ("Missing", False), ("Servo", True)]
    assert links.linked_from == ("Servo",)
    current = page.revision
    assert store.read_page_with_links(db, wiki, "Arm", revision=current)[1] == links
    old, no_links = store.read_page_with_links(db, wiki, "Arm", revision=first)
    assert no_links is None and old == store.read_page(db, wiki, "Arm", revision=first)
    section, no_links = store.read_page_with_links(db, wiki, "Arm", section="Wiring")
    assert no_links is None and section == store.read_page(db, wiki, "Arm", section="Wiring")
    with pytest.raises(store.NotFound):
        store.read_page_with_links(db, wiki, "Nowhere")


# --- search: rank first, look up and snippet only the best ------------------------------------------

def test_search_finds_this_wikis_best_pages_when_another_wiki_ranks_higher(db):
    quotas = store.Quotas(pages_per_wiki=1000, bytes_per_wiki=50 * 1024 * 1024, wikis_per_user=3)
    mine = store.create_wiki(db, "mine", ALICE, "Mine", quotas=quotas)["id"]
    other = store.create_wiki(db, "other", ALICE, "Other", quotas=quotas)["id"]
    author = store.Author(ALICE, "web")
    for n in range(150):  # many better matches elsewhere: several lookup batches before ours appear
        store.write_page(db, other, f"Servo {n}", "servo servo servo servo\n", author=author, quotas=quotas)
    store.write_page(db, mine, "Notes/Weak", "A long page that mentions a servo once among many other words.\n",
                  author=author, quotas=quotas)
    store.write_page(db, mine, "Servo", "servo wiring\n", author=author, quotas=quotas)
    store.write_page(db, mine, "Unrelated", "nothing here\n", author=author, quotas=quotas)
    hits = store.search_pages(db, mine, "servo", limit=5)
    assert [hit.path for hit in hits] == ["Servo", "Notes/Weak"]
    assert all(store.MARK_START + "servo" + store.MARK_END in hit.snippet.casefold() for hit in hits)
    assert len(store.search_pages(db, other, "servo", limit=100)) == 100


def test_migration_6_counts_what_a_version_5_wiki_already_holds(tmp_path):
    from conftest import ROOT
    db = sqlite3.connect(tmp_path / "robotwtf.db", isolation_level=None, factory=store.SqliteDatabase)
    db.row_factory = sqlite3.Row
    db.executescript((ROOT / "tests/data/schema_v1.sql").read_text())
    db.execute("INSERT INTO schema_version VALUES (1, 0)")
    for number, sql in store.MIGRATIONS:
        if number <= 5:
            store._run_script(db, sql, number)
    db.execute("INSERT INTO users (did, username, created_at) VALUES (?, 'alice', 0)", (ALICE,))
    db.execute("INSERT INTO wikis (id, slug, title, owner_did, created_at) VALUES (7, 'notes', 'Notes', ?, 0)", (ALICE,))
    db.execute("INSERT INTO wikis (id, slug, title, owner_did, created_at) VALUES (8, 'empty', 'Empty', ?, 0)", (ALICE,))
    for page_id, size, deleted in ((1, 100, None), (2, 250, None), (3, 999, 5)):
        db.execute("INSERT INTO pages (id, wiki_id, path, path_key, revision_id, content, size, created_at, updated_at, "
                   "deleted_at) VALUES (?, 7, ?, ?, ?, 'x', ?, 0, 0, ?)",
                   (page_id, f"P{page_id}", f"p{page_id}", f"rev{page_id}", size, deleted))
    for page_id, size in ((1, 40), (3, 7000)):  # the deleted page's file does not count
        db.execute("INSERT INTO attachments (page_id, filename_key, filename, content_type, size, data, author_did, "
                   "updated_at) VALUES (?, 'f', 'f', 'text/plain', ?, x'00', ?, 0)", (page_id, size, ALICE))
    store._migrate(db, 5)
    assert store.wiki_usage(db, 7) == recount(db, 7) == store.Usage(2, 390)
    assert store.wiki_usage(db, 8) == store.Usage(0, 0)


# --- access tokens: a signature is checked once per token ----------------------------------------------

def test_remembered_signatures_never_let_a_changed_token_or_another_type_through(tmp_path):
    store.prepare_data_folder(store.load_config({"data": str(tmp_path / "data")}, environ={}), create=True)
    keys = store.Keys.load(tmp_path / "data")
    token = keys.sign_rs256({"sub": "did:plc:alice", "exp": store.now() + 60}, "at+jwt")
    first = keys.verify_rs256(token, "at+jwt")
    first["sub"] = "did:plc:mallory"  # callers get a copy: the remembered claims stay as signed
    assert keys.verify_rs256(token, "at+jwt")["sub"] == "did:plc:alice"
    header, payload, signature = token.split(".")
    forged = base64.urlsafe_b64encode(json.dumps({"sub": "did:plc:mallory", "exp": store.now() + 60}).encode())
    for changed in (f"{header}.{payload}.{signature[:-4]}AAAA", f"{header}.{forged.decode().rstrip('=')}.{signature}"):
        with pytest.raises(store.BadInput):
            keys.verify_rs256(changed, "at+jwt")
    with pytest.raises(store.BadInput):
        keys.verify_rs256(token, "robotwtf-session+jwt")
