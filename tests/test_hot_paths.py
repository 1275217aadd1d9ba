"""Guards for what `make bench` found expensive: the statements run by every write must stay
index lookups, never a scan that grows with the wiki; the fast path that validates every
tools/call's arguments and structured result must agree with the full validation; read_note
reads a page with its links in one statement."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import robotwtf as rw
import robotwtf_mcp as mcp

ALICE = "did:plc:aliceaaaaaaaaaaaaaaaaaaa"
QUOTAS = rw.Quotas(pages_per_wiki=100, bytes_per_wiki=50 * 1024 * 1024, wikis_per_user=3)


@pytest.fixture
def db(tmp_path):
    connection = rw.open_database(tmp_path / "robotwtf.db", create=True)
    rw.add_user(connection, ALICE, handle="alice.test", username="alice")
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


def test_quota_usage_reads_the_size_index_not_the_pages(db):
    wiki = rw.create_wiki(db, "notes", ALICE, "Notes", public_url="https://wiki.example.org", quotas=QUOTAS)["id"]
    plans = plans_of(db, lambda: rw.wiki_usage(db, wiki))
    assert plans and all("pages_live_size" in plan and "SCAN pages" not in plan for plan in plans), plans


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
    assert mcp.compile_schema(schema)(value) == (mcp._problems(value, schema, "") == [])
    assert mcp.validate(value, schema) == mcp._problems(value, schema, "")


# --- read_note's one-statement read -----------------------------------------------------------------

def test_read_page_with_links_is_read_page_plus_page_links_in_one_statement(db):
    wiki = rw.create_wiki(db, "notes", ALICE, "Notes", public_url="https://wiki.example.org", quotas=QUOTAS)["id"]
    author = rw.Author(ALICE, "web")
    first = rw.write_page(db, wiki, "Arm", "# Arm\n\n## Wiring\n\nSee [[Servo]] and [[Missing]].\n",
                          author=author, quotas=QUOTAS).revision
    rw.write_page(db, wiki, "Servo", "Back to [[arm]].\n", author=author, quotas=QUOTAS)
    rw.write_page(db, wiki, "Arm", "# Arm\n\n## Wiring\n\nSee [[Servo]], [[Missing]] and [[Home]].\n", first,
                  author=author, quotas=QUOTAS)
    statements = []
    db.set_trace_callback(statements.append)
    page, links = rw.read_page_with_links(db, wiki, "arm")
    db.set_trace_callback(None)
    assert page == rw.read_page(db, wiki, "arm") and links == rw.page_links(db, wiki, "Arm")
    assert len(statements) == 1, statements
    assert [(t.path, t.exists) for t in links.links_to] == [("Home", True), ("Missing", False), ("Servo", True)]
    assert links.linked_from == ("Servo",)
    current = page.revision
    assert rw.read_page_with_links(db, wiki, "Arm", revision=current)[1] == links
    old, no_links = rw.read_page_with_links(db, wiki, "Arm", revision=first)
    assert no_links is None and old == rw.read_page(db, wiki, "Arm", revision=first)
    section, no_links = rw.read_page_with_links(db, wiki, "Arm", section="Wiring")
    assert no_links is None and section == rw.read_page(db, wiki, "Arm", section="Wiring")
    with pytest.raises(rw.NotFound):
        rw.read_page_with_links(db, wiki, "Nowhere")


# --- search: rank first, look up and snippet only the best ------------------------------------------

def test_search_finds_this_wikis_best_pages_when_another_wiki_ranks_higher(db):
    quotas = rw.Quotas(pages_per_wiki=1000, bytes_per_wiki=50 * 1024 * 1024, wikis_per_user=3)
    mine = rw.create_wiki(db, "mine", ALICE, "Mine", public_url="https://wiki.example.org", quotas=quotas)["id"]
    other = rw.create_wiki(db, "other", ALICE, "Other", public_url="https://wiki.example.org", quotas=quotas)["id"]
    author = rw.Author(ALICE, "web")
    for n in range(150):  # many better matches elsewhere: several lookup batches before ours appear
        rw.write_page(db, other, f"Servo {n}", "servo servo servo servo\n", author=author, quotas=quotas)
    rw.write_page(db, mine, "Notes/Weak", "A long page that mentions a servo once among many other words.\n",
                  author=author, quotas=quotas)
    rw.write_page(db, mine, "Servo", "servo wiring\n", author=author, quotas=quotas)
    rw.write_page(db, mine, "Unrelated", "nothing here\n", author=author, quotas=quotas)
    hits = rw.search_pages(db, mine, "servo", limit=5)
    assert [hit.path for hit in hits] == ["Servo", "Notes/Weak"]
    assert all(rw.MARK_START + "servo" + rw.MARK_END in hit.snippet.casefold() for hit in hits)
    assert len(rw.search_pages(db, other, "servo", limit=100)) == 100
