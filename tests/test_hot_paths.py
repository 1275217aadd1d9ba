"""Guards for what `make bench` found expensive: the statements on every request or every write
must stay index lookups, never a scan that grows with the wiki."""

from __future__ import annotations

import sqlite3

import pytest

import robotwtf as rw

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
