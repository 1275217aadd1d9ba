"""Write load over real MCP for the reliability tests (tests/test_reliability.py, tests/soak/):
writer threads, each with its own HTTP connection and personal access token, read pages and
write or edit them through `tools/call`, remembering every acknowledged write, every refusal and
every write whose answer never came (the server died). `verify_history` then proves from the
database that nothing acknowledged was lost and nothing unacknowledged appeared."""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import requests

import robotwtf_store as store
from conftest import DATABASES, database_for, open_db
from mcp_client import ALICE, LEGACY, MODERN, modern_meta

QUOTAS = store.Quotas(pages_per_wiki=5000, bytes_per_wiki=256 * 1024 * 1024, wikis_per_user=10)
SETUP = store.Author(ALICE, "cli")
# The two conflict sentences of the storage API (optimistic concurrency on a base revision, and
# creating a page that exists); any other refusal in a race is a bug.
CONFLICT_RE = re.compile(
    r"Page '[^']+' changed since revision [0-9a-f]+ \(now [0-9a-f]+\)\. Read it again, then retry with the new "
    r"revision\.|Page '[^']+' already exists \(revision [0-9a-f]+\)\. Read it and pass its revision to replace it")
LAST_LINE_RE = re.compile(r"^last: \S+$", re.M)
# Servers under load tests must not refuse the load itself; the limits have their own tests.
UNLIMITED = {"ROBOTWTF_MCP_PER_MINUTE": "1000000", "ROBOTWTF_WRITES_PER_MINUTE": "1000000"}


def initial_content(path: str) -> str:
    return f"# {path}\n\nlast: start\n"


@dataclasses.dataclass
class Site:
    """A wiki on a running (or about to be restarted) server with one token per writer."""

    data: Path
    slug: str
    wiki_id: int
    pages: tuple[str, ...]
    tokens: list[str]


def prepare_site(data: Path, slug: str, pages: tuple[str, ...], clients: int) -> Site:
    """Owner, wiki, pages and tokens, made through the storage API (fast; the CLI does the same)."""
    db = store.db_connect(database_for(data))
    try:
        if db.execute("SELECT 1 FROM users WHERE did = ?", (ALICE,)).fetchone() is None:
            store.add_user(db, ALICE, "alice.test", "alice")
        wiki = store.create_wiki(db, slug, ALICE, slug, quotas=QUOTAS, via="cli")
        for path in pages:
            store.write_page(db, wiki["id"], path, initial_content(path), author=SETUP, quotas=QUOTAS)
        tokens = [store.create_personal_token(db, ALICE, slug, frozenset(store.SCOPES), f"writer-{i}")
                  for i in range(clients)]
    finally:
        db.close()
    return Site(data, slug, wiki["id"], pages, tokens)


@dataclasses.dataclass(frozen=True)
class Write:
    """One attempted write: the page, the revision it was based on ("" = create), the content the
    page must have afterwards, and (once acknowledged) the revision the server answered."""

    page: str
    base: str
    content: str
    kind: str
    client: int
    revision: str = ""


class UnexpectedAnswer(Exception):
    pass


class Writer(threading.Thread):
    """One client: its own requests.Session (so its own keep-alive connection) and token."""

    def __init__(self, url: str, token: str, index: int, pages: tuple[str, ...], stop: threading.Event,
                 seed: int, creates: tuple[str, ...] = (), server_may_die: bool = False):
        super().__init__(name=f"writer-{index}", daemon=True)
        self.url, self.token, self.index, self.pages, self.stop = url, token, index, pages, stop
        self.creates, self.server_may_die = creates, server_may_die
        self.rng = random.Random(seed)
        self.http = requests.Session()
        self.counter = itertools.count(1)
        self.acked: list[Write] = []
        self.refused: list[str] = []
        self.unknown: list[Write] = []   # sent, but the answer never came (the server was killed)
        self.errors: list[str] = []
        self.requests = 0
        self.latencies: list[float] = []

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.step()
        except requests.RequestException as failure:
            if not self.server_may_die:
                self.errors.append(f"{self.name}: {failure!r}")
        except UnexpectedAnswer as failure:
            self.errors.append(f"{self.name}: {failure}")
        finally:
            self.http.close()

    def call(self, tool: str, arguments: dict) -> dict:
        """tools/call in a randomly chosen era; the result, or UnexpectedAnswer."""
        message = {"jsonrpc": "2.0", "id": next(self.counter), "method": "tools/call",
                   "params": {"name": tool, "arguments": arguments}}
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
                   "Accept": "application/json, text/event-stream"}
        if self.rng.random() < 0.5:
            message["params"]["_meta"] = modern_meta(f"writer-{self.index}")
            headers.update({"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": tool})
        else:
            headers["MCP-Protocol-Version"] = LEGACY
        started = time.perf_counter()
        response = self.http.post(self.url, json=message, headers=headers, timeout=60)
        self.latencies.append(time.perf_counter() - started)
        self.requests += 1
        if response.status_code != 200:
            raise UnexpectedAnswer(f"{tool} answered HTTP {response.status_code}: {response.text[:300]}")
        body = response.json()
        if "result" not in body:
            raise UnexpectedAnswer(f"{tool} answered {body}")
        return body["result"]

    def step(self) -> None:
        marker = f"w{self.index}-{next(self.counter)}"
        if self.creates and self.rng.random() < 0.1:
            path = self.rng.choice(self.creates)
            self.send(Write(path, "", initial_content(path), "create", self.index), "write_note",
                      {"path": path, "content": initial_content(path), "commit_message": marker})
            return
        page = self.rng.choice(self.pages)
        read = self.call("read_note", {"path": page})
        if read["isError"]:
            raise UnexpectedAnswer(f"read_note {page}: {read['content'][0]['text']}")
        revision, content = read["structuredContent"]["revision"], read["structuredContent"]["content"]
        if self.rng.random() < 0.5:
            new = f"# {page}\n\nlast: {marker}\nrewritten by writer {self.index}\n"
            self.send(Write(page, revision, new, "write", self.index), "write_note",
                      {"path": page, "content": new, "revision": revision, "commit_message": marker})
        else:
            old = LAST_LINE_RE.search(content).group(0)
            self.send(Write(page, revision, content.replace(old, f"last: {marker}", 1), "edit",
                                 self.index), "edit_note",
                      {"path": page, "revision": revision, "old_string": old, "new_string": f"last: {marker}",
                       "commit_message": marker})

    def send(self, attempt: Write, tool: str, arguments: dict) -> None:
        try:
            result = self.call(tool, arguments)
        except requests.RequestException:
            self.unknown.append(attempt)
            raise
        text = result["content"][0]["text"]
        if result["isError"]:
            if not CONFLICT_RE.search(text):
                raise UnexpectedAnswer(f"{tool} refused with something other than a conflict: {text}")
            self.refused.append(text)
            return
        revision = result["structuredContent"]["revision"]
        if f"Revision: {revision}" not in text or result["structuredContent"]["kind"] == "none":
            raise UnexpectedAnswer(f"{tool} acknowledged oddly: {result}")
        self.acked.append(dataclasses.replace(attempt, revision=revision))


@dataclasses.dataclass
class Load:
    """Writers running against one server; `finish` stops and joins them."""

    writers: list[Writer]
    stop: threading.Event
    started: float

    @property
    def acked(self) -> list[Write]:
        return [w for writer in self.writers for w in writer.acked]

    @property
    def unknown(self) -> list[Write]:
        return [w for writer in self.writers for w in writer.unknown]

    @property
    def refused(self) -> list[str]:
        return [r for writer in self.writers for r in writer.refused]

    @property
    def errors(self) -> list[str]:
        return [e for writer in self.writers for e in writer.errors]

    @property
    def latencies(self) -> list[float]:
        return sorted(x for writer in self.writers for x in writer.latencies)

    def finish(self, timeout: float = 60) -> "Load":
        self.stop.set()
        for writer in self.writers:
            writer.join(timeout)
        assert not any(writer.is_alive() for writer in self.writers), "a writer hung"
        return self

    def wait_for_acks(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < count and time.monotonic() < deadline and not self.errors:
            time.sleep(0.01)
        assert not self.errors, self.errors[:5]
        assert len(self.acked) >= count, f"only {len(self.acked)} writes acknowledged in {timeout}s"


def start_load(url: str, site: Site, seed: int, creates: tuple[str, ...] = (),
               server_may_die: bool = False) -> Load:
    stop = threading.Event()
    writers = [Writer(f"{url}/w/{site.slug}/mcp", token, i, site.pages, stop, seed * 1000 + i, creates, server_may_die)
               for i, token in enumerate(site.tokens)]
    for writer in writers:
        writer.start()
    return Load(writers, stop, time.monotonic())


# --- checking the database ----------------------------------------------------------------------

def read_only(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    db.row_factory = sqlite3.Row
    return db


def database_problems(path: Path) -> list[str]:
    """What SQLite's own checks find wrong: integrity, foreign keys, and the full-text index
    against its pages (FTS5's check writes, so it runs on a copy)."""
    db = read_only(path)
    try:
        problems = [r[0] for r in db.execute("PRAGMA integrity_check")]
        problems = [] if problems == ["ok"] else problems
        problems += [f"foreign key: {tuple(r)}" for r in db.execute("PRAGMA foreign_key_check")]
        with tempfile.TemporaryDirectory() as tmp:
            copy = sqlite3.connect(Path(tmp) / "copy.db")
            try:
                db.backup(copy)
                copy.execute("INSERT INTO pages_fts (pages_fts) VALUES ('integrity-check')")
            except sqlite3.DatabaseError as e:
                problems.append(f"full-text index: {e}")
            finally:
                copy.close()
    finally:
        db.close()
    return problems


@dataclasses.dataclass
class History:
    acknowledged: int
    landed_in_flight: int    # unacknowledged writes that committed before the answer was lost
    revisions: int


def verify_history(site: Site, acked: list[Write], unknown: list[Write] = (), db_path: Path | None = None) -> History:
    """Every acknowledged write is a revision with exactly its content (looked up through the
    storage API); each page's revisions form one chain in which every write was based on the
    revision just before it (no lost update); every revision after the setup was acknowledged,
    or is one of the writes whose answer was lost; and each page holds its last revision."""
    db = open_db(site.data) if DATABASES and not db_path else read_only(db_path or site.data / "robotwtf.db")
    try:
        for write in acked:
            stored = store.get_revision(db, site.wiki_id, write.revision)
            assert (stored.current_path, stored.content) == (write.page, write.content), (write, stored)
            assert stored.via == f"token:writer-{write.client}", (write, stored.via)
        by_revision = {write.revision: write for write in acked}
        assert len(by_revision) == len(acked), "one revision acknowledged twice"
        pending = {(w.page, w.base, w.content) for w in unknown}
        landed = revisions = 0
        touched = set(site.pages) | {w.page for w in [*acked, *unknown]}
        for path in sorted(touched):
            page = db.execute("SELECT * FROM pages WHERE wiki_id = ? AND path_key = ? AND deleted_at IS NULL",
                              (site.wiki_id, store.path_key(path))).fetchone()
            if page is None:
                assert not any(w.page == path for w in acked), f"{path} acknowledged but missing"
                continue
            chain = db.execute("SELECT id, content FROM revisions WHERE page_id = ? ORDER BY seq",
                               (page["id"],)).fetchall()
            revisions += len(chain)
            for before, revision in zip([None, *chain], chain):
                base = before["id"] if before else ""
                write = by_revision.get(revision["id"])
                if write is not None:
                    assert write.base == base, f"{path}: {revision['id']} was based on {write.base}, not {base}"
                elif (path, base, revision["content"]) in pending:
                    landed += 1
                else:
                    assert before is None and path in site.pages, \
                        f"{path}: revision {revision['id']} was never acknowledged"
            assert (page["revision_id"], page["content"]) == (chain[-1]["id"], chain[-1]["content"]), path
    finally:
        db.close()
    return History(len(acked), landed, revisions)


def newest_revisions(db_path: Path, wiki_id: int, path: str, limit: int) -> list[str]:
    db = read_only(db_path)
    try:
        return [r[0] for r in db.execute(
            "SELECT revisions.id FROM revisions JOIN pages ON pages.id = revisions.page_id WHERE pages.wiki_id = ? "
            "AND pages.path_key = ? AND pages.deleted_at IS NULL ORDER BY revisions.seq DESC LIMIT ?",
            (wiki_id, store.path_key(path), limit))]
    finally:
        db.close()


@dataclasses.dataclass
class Point:
    seq: int
    revisions: set[str]
    pages: int


def consistent_point(restored: Path, live: Path) -> Point:
    """The moment of the live database that the restored copy is: the restored revisions must
    be exactly the live ones up to some position of the commit order (revisions.seq), and every
    page must be as those revisions left it. Also checked: the copy's keys and users match."""
    copy, now = read_only(restored), read_only(live)
    try:
        seq = copy.execute("SELECT max(seq) FROM revisions").fetchone()[0]
        columns = "seq, id, wiki_id, page_id, kind, path, old_path, attachment, content, author_did, via, message"
        restored_revisions = copy.execute(f"SELECT {columns} FROM revisions ORDER BY seq").fetchall()
        live_revisions = now.execute(f"SELECT {columns} FROM revisions WHERE seq <= ? ORDER BY seq", (seq,)).fetchall()
        assert [tuple(r) for r in restored_revisions] == [tuple(r) for r in live_revisions], \
            "the restored revisions are not a prefix of the live history"
        assert now.execute("SELECT count(*) FROM revisions WHERE seq > ?", (seq,)).fetchone()[0] > 0, \
            "no write came after the backup"
        pages = copy.execute("SELECT id, wiki_id, path, revision_id, content, deleted_at FROM pages ORDER BY id").fetchall()
        for page in pages:
            last = now.execute("SELECT id, content, path FROM revisions WHERE page_id = ? AND seq <= ? "
                               "ORDER BY seq DESC LIMIT 1", (page["id"], seq)).fetchone()
            assert (page["revision_id"], page["content"]) == (last["id"], last["content"]), \
                f"page {page['path']} is not in the state of its last restored revision (torn)"
        live_pages = now.execute("SELECT count(DISTINCT page_id) FROM revisions WHERE seq <= ?", (seq,)).fetchone()[0]
        assert live_pages == len(pages), "pages missing from the restore"
        for table, columns in (("users", "did, username"), ("wikis", "id, slug"), ("members", "*"),
                               ("personal_tokens", "id, token_hash, user_did, wiki_id, scope")):
            query = f"SELECT {columns} FROM {table} ORDER BY 1, 2"
            assert list(map(tuple, copy.execute(query))) == list(map(tuple, now.execute(query))), table
        return Point(seq, {r["id"] for r in restored_revisions}, len(pages))
    finally:
        copy.close()
        now.close()
