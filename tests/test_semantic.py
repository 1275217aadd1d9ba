"""Semantic search (issue 12, CONTRACT §6) with a real model, offline: WordLlama behind a real
OpenAI-compatible embeddings server on loopback (tests/embeddings_server.py), robotwtf as the
real CLI over real HTTP. Chunking and the in-memory index are also tested in process, and the
index's recall@10 is measured against exact cosine on 20,000+ chunks."""

from __future__ import annotations

import itertools
import random
import re
import time

import pytest
import requests

import robotwtf_semantic as semantic
from conftest import free_port, open_db, start_server
from embeddings_server import EmbeddingsProcess
from mcp_client import BOB, Endpoint, add_member, make_wiki, text
from semantic_corpus import DISTRACTORS, TARGETS, docstring_paragraphs, fillers


# --- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def embeddings(tmp_path_factory):
    """The WordLlama embeddings server, shared by the module's servers; each test leaves it well."""
    process = EmbeddingsProcess(free_port(), tmp_path_factory.mktemp("embeddings") / "embeddings.log").start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def well_behaved(embeddings):
    embeddings.control("ok")
    yield embeddings
    embeddings.control("ok")


def semantic_env(embeddings, model: str = "wordllama", **extra: str) -> dict:
    return {"ROBOTWTF_EMBEDDINGS_URL": embeddings.url, "ROBOTWTF_EMBEDDINGS_MODEL": model,
            "ROBOTWTF_EMBEDDINGS_TIMEOUT": "3", "ROBOTWTF_WRITES_PER_MINUTE": "6000", **extra}


def db_values(server, sql: str, args=()) -> list:
    db = open_db(server.data)
    try:
        return [tuple(row) for row in db.execute(sql, args)]
    finally:
        db.close()


def wait_indexed(server, timeout: float = 90, model: str = "wordllama") -> None:
    """Until the server's background indexer has caught up with every page, for `model`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (indexed_for, work), = db_values(server, "SELECT (SELECT model FROM semantic_state), (SELECT count(*) FROM "
                                                 "semantic_pages WHERE state = 'stale') + (SELECT count(*) FROM "
                                                 "semantic_chunks WHERE vector IS NULL AND failed = 0)")
        if indexed_for == model and not work:
            return
        time.sleep(0.1)
    raise AssertionError(f"the index did not catch up:\n{server.log()[-3000:]}")


def paths(result: dict) -> list[str]:
    return [hit["path"] for hit in result["structuredContent"]["results"]]


@pytest.fixture(scope="module")
def team(embeddings, tmp_path_factory):
    """A server with semantic search and a wiki of 30 team notes and 180 pages of programming
    reference text (213 pages with the default three), fully indexed."""
    server = start_server(tmp_path_factory.mktemp("team") / "data", env_extra=semantic_env(embeddings))
    try:
        wiki = make_wiki(server, "team")
        notes = [(path, f"# {path.rsplit('/', 1)[-1]}\n\n{content}\n") for path, content, _ in TARGETS]
        for path, content in notes + DISTRACTORS + fillers(180):
            wiki.mcp.ok("write_note", path=path, content=content)
        wait_indexed(server)
        yield wiki
    finally:
        server.stop()


# --- chunking ---------------------------------------------------------------------------------------

def words(n: int, start: int = 0) -> str:
    return " ".join(f"w{i}" for i in range(start, start + n))


def test_a_short_page_is_one_chunk_without_its_front_matter():
    content = "---\ntitle: Plan\ntags: [a, b]\n---\n# Plan\n\nShort.\n\n## Later\n\nMore.\n"
    assert semantic.chunk_page(content) == [semantic.Chunk("", "# Plan\n\nShort.\n\n## Later\n\nMore.")]
    assert semantic.chunk_page("---\ntitle: Empty\n---\n") == []
    assert semantic.chunk_page("") == []


def test_a_long_page_is_cut_at_its_headings_and_keeps_their_path():
    content = (f"---\ntitle: Big\n---\nIntro {words(120)}\n\n# Guide\n\n{words(130)}\n\n## Install\n\n"
               f"```\n# not a heading\n```\n{words(150)}\n\n### Linux\n\n{words(100)}\n\n## Empty\n## Use\n\nrun it\n")
    chunks = semantic.chunk_page(content)
    assert [c.section for c in chunks] == ["", "Guide", "Guide > Install", "Guide"]
    assert chunks[0].text == f"Intro {words(120)}"  # no front matter
    assert chunks[1].text == f"# Guide\n\n{words(130)}"
    assert chunks[2].text == f"## Install\n\n```\n# not a heading\n```\n{words(150)}"
    # Sections that fit in one chunk together share it, under the heading path they have in common.
    assert chunks[3].text == f"### Linux\n\n{words(100)}\n\n## Use\n\nrun it"


def test_small_sections_share_a_chunk_under_their_common_heading():
    parts = "\n\n".join(f"## Step {i}\n\n{words(40, 40 * i)}" for i in range(6))
    chunks = semantic.chunk_page(f"# Recipe\n\n{parts}")
    assert [c.section for c in chunks] == ["Recipe", "Recipe"]
    assert chunks[0].text.startswith("## Step 0\n\nw0 ") and "## Step 3" in chunks[0].text
    assert chunks[1].text.startswith("## Step 4\n\n")


def test_a_long_section_is_split_near_170_words_with_overlap():
    paragraphs = [f"{words(60, 60 * i)}." for i in range(12)]  # 720 words, a paragraph end every 60
    chunks = semantic.chunk_page("# Long\n\n" + "\n\n".join(paragraphs))
    counts = [len(c.text.split()) for c in chunks]
    assert all(c.section == "Long" for c in chunks)
    assert all(150 <= n <= 200 for n in counts[:-1]), counts
    assert all(n <= 200 for n in counts)
    for before, after in zip(chunks, chunks[1:]):  # each window starts with the previous one's last words
        tail = before.text.split()[-semantic.OVERLAP_WORDS:]
        assert after.text.split()[:semantic.OVERLAP_WORDS] == tail
    assert chunks[0].text.endswith(".")  # cut at a paragraph end, not mid-sentence
    covered = set(" ".join(c.text for c in chunks).replace(".", "").split())
    assert covered == set(words(720).split()) | {"#", "Long"}


def test_long_words_are_cut_by_characters():
    blob = "x" * 5000
    chunks = semantic.chunk_page(f"# Data\n\n{words(250)}\n\n{blob}")
    assert all(len(c.text) <= semantic.MAX_CHUNK_CHARS for c in chunks)
    assert "".join(c.text for c in chunks).count("x") >= 5000


# --- the index: recall and its in-memory scan -----------------------------------------------------------

def test_recall_at_10_against_exact_cosine_on_20000_chunks():
    """Random windows of real prose (the standard library's docstrings) embedded by WordLlama;
    short queries from held-out prose. The index (two-stage sign-bit scan, exact rescoring of
    the best 300 over float32) against the exact cosine top 10 over all vectors."""
    import numpy as np
    from embeddings_server import load_model

    model = load_model()
    rng = random.Random(12)
    paragraphs = docstring_paragraphs(8)
    rng.shuffle(paragraphs)
    held_out, corpus_words = paragraphs[:150], " ".join(paragraphs[150:]).split()
    chunks = []
    for _ in range(20_000):
        length = rng.randint(20, 100)
        start = rng.randrange(len(corpus_words) - length)
        chunks.append(" ".join(corpus_words[start:start + length]))
    queries = [" ".join(p.split()[:rng.randint(3, 12)]) for p in held_out[:150]]
    vectors = model.embed(chunks, norm=True).astype(np.float32)
    query_vectors = model.embed(queries, norm=True).astype(np.float32)

    index = semantic.WikiIndex(vectors.shape[1])
    codes = [bits.tobytes() for bits in np.packbits(vectors < 0, axis=1, bitorder="little")]
    assert codes[0] == semantic.pack_code(semantic.sign_code(vectors[0].tolist()), vectors.shape[1])
    index.apply([(page + 1, [(i + 1, codes[i]) for i in range(page, page + 4)])  # pages of four chunks
                 for page in range(0, len(chunks), 4)])
    blobs = {i + 1: vector.astype("<f4").tobytes() for i, vector in enumerate(vectors)}  # as the database holds them
    exact = query_vectors @ vectors.T
    found = 0
    for row, query in enumerate(query_vectors.tolist()):
        candidates = index.candidates(semantic.query_code(query))
        scored = sorted(candidates, key=lambda i: -semantic.sumprod(query, semantic.unpack_vector(blobs[i])))[:10]
        truth = set((np.argsort(-exact[row])[:10] + 1).tolist())
        found += len(truth & set(scored))
    recall = found / (10 * len(queries))
    print(f"\nrecall@10 = {recall:.4f} ({len(chunks)} chunks, {len(queries)} queries, {vectors.shape[1]} dimensions)")
    assert recall >= 0.95


def test_the_in_memory_index_follows_page_changes():
    dimensions = 300  # wider than stage 1's 256 bits
    near, far = [1.0] * dimensions, [-1.0] * dimensions
    mixed = [1.0] * 150 + [-1.0] * 150

    def code(vector):
        return semantic.pack_code(semantic.sign_code(vector), dimensions)

    def nearest(keep):
        return index.candidates(semantic.query_code(near), keep)

    index = semantic.WikiIndex(dimensions)
    index.apply([(1, [(10, code(near)), (11, code(far))]), (2, [(20, code(near))])])
    assert index.size == 3 and set(nearest(2)) == {10, 20}
    index.apply([(2, [])])
    assert index.size == 2 and nearest(1) == [10]
    index.apply([(3, [(30 + i, code(mixed if i else far)) for i in range(3000)])])  # stage 1 runs from here
    assert index.size == 3002 and nearest(1) == [10] and set(nearest(3)) == {10, 31, 32}
    for page in range(4, 1500):  # enough removals to compact
        index.apply([(page, [(page * 10, code(far))])])
        index.apply([(page, [])])
    assert index.size == 3002 and len(index.ids) < 4500
    assert nearest(1) == [10] and index.where[3] == range(index.where[3].start, index.where[3].start + 3000)
    index.apply([(3, [])])
    assert nearest(5) == [10, 11]


# --- meaning, over MCP, with a real model ----------------------------------------------------------------

def test_paraphrases_find_the_page_that_search_notes_cannot(team):
    hits1 = hits5 = 0
    for path, _, question in TARGETS:
        found = paths(team.mcp.ok("semantic_search", query=question, n=5, max_chunks_per_page=1))
        assert paths(team.mcp.ok("search_notes", query=question)) == [], question  # no page has all its words
        hits1 += found[:1] == [path]
        hits5 += path in found
    pairs = len(TARGETS)
    print(f"\n{pairs} paraphrase pairs on {len(TARGETS) + len(DISTRACTORS) + 183} pages: semantic_search "
          f"hit@1 {hits1 / pairs:.2f} hit@5 {hits5 / pairs:.2f}; search_notes found no page for any of them")
    assert hits5 / pairs >= 0.7 and hits1 / pairs >= 0.6


def test_results_carry_path_section_text_score_and_revision(team):
    result = team.mcp.ok("semantic_search", query="who may sign in and how do I connect Claude", n=3)
    data = result["structuredContent"]
    assert data["complete"] is True and data["pending"] == 0 and data["stale_pages"] == 0
    assert data["indexed"] >= 213
    first = data["results"][0]
    read = team.mcp.ok("read_note", path=first["path"])["structuredContent"]
    assert first["revision"] == read["revision"]
    assert first["text"] in read["content"]
    assert first["section"] == "" or first["section"].split(" > ")[-1] in read["content"]
    scores = [hit["score"] for hit in data["results"]]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    assert f"1. {first['path']} > {first['section'] or '(top)'} (score: {first['score']:.2f})" in text(result)
    assert f"Revision: {first['revision']}" in text(result)


def test_n_and_max_chunks_per_page(team):
    many = team.mcp.ok("semantic_search", query="how do functions handle their arguments", n=12,
                       max_chunks_per_page=1)["structuredContent"]["results"]
    assert len(many) == 12 and len({hit["path"] for hit in many}) == 12
    sections = "\n\n".join(f"## Part {i}\n\n" + "Tomato seedlings need warm soil, sun and water. " * 20
                             for i in range(6))
    team.mcp.ok("write_note", path="Garden/Tomato Handbook", content=f"# Tomato Handbook\n\n{sections}\n")
    wait_indexed(team.server)
    for per_page in (2, 5):
        found = paths(team.mcp.ok("semantic_search", query="growing tomato seedlings", n=10,
                                  max_chunks_per_page=per_page))
        assert found.count("Garden/Tomato Handbook") == per_page


def test_out_of_range_numbers_are_clamped_and_said(team):
    none = team.mcp.ok("semantic_search", query="garden", n=0)
    assert len(paths(none)) == 1 and "(n=0 is outside 1-50; used 1.)" in text(none)
    lots = team.mcp.ok("semantic_search", query="garden", n=1000, max_chunks_per_page=100)
    assert len(paths(lots)) == 50
    assert "(n=1000 is outside 1-50; used 50.)" in text(lots)
    assert "(max_chunks_per_page=100 is outside 1-10; used 10.)" in text(lots)


@pytest.mark.parametrize("arguments, message", [
    ({"query": ""}, "The query is empty: say in a few words or a question what you are looking for."),
    ({"query": " \n\t "}, "The query is empty: say in a few words or a question what you are looking for."),
    ({"query": "deploy " * 1500}, "The query is 10499 characters long; semantic search takes at most 2000. "
                                  "Ask for the one thing you are looking for."),
    ({"query": "x", "n": "five"}, "Invalid arguments for semantic_search: 'n' must be an integer."),
    ({"query": "x", "n": True}, "Invalid arguments for semantic_search: 'n' must be an integer."),
    ({"query": "x", "max_chunks_per_page": 2.5}, "Invalid arguments for semantic_search: 'max_chunks_per_page' "
                                                 "must be an integer."),
    ({"query": "x", "k": 3}, "Invalid arguments for semantic_search: 'k' is not a parameter of this tool."),
])
def test_bad_arguments_are_tool_errors(team, arguments, message):
    before = team.stored()
    assert team.mcp.fails("semantic_search", **arguments) == message
    assert team.stored() == before


UNAVAILABLE = "Semantic search cannot answer right now. "
MEANWHILE = " Meanwhile, search_notes finds pages by their words."


@pytest.mark.parametrize("mode, problem", [
    ("error", "The embeddings server at {host} answered HTTP 500 (the model crashed)."),
    ("bad-request", "The embeddings server at {host} refused the request with HTTP 400 (input is too large to "
                    "process). Check --embeddings-url and --embeddings-model."),
    ("nan", "The embeddings server at {host} returned a vector containing NaN or infinity. Check that "
            "--embeddings-url is an OpenAI-compatible /v1/embeddings endpoint and the model is an embedding model."),
    ("huge", "The embeddings server at {host} sent an answer larger than 320 KiB for this request; robotwtf reads "
             "no more."),
    ("huge-chunked", "The embeddings server at {host} sent an answer larger than 320 KiB for this request; "
                     "robotwtf reads no more."),
    ("redirect", "The embeddings server at {host} answered with a redirect (HTTP 302), which robotwtf does not "
                 "follow: set --embeddings-url to the endpoint itself."),
    ("hang", "The embeddings server at {host} did not answer within 3 s."),
])
def test_a_misbehaving_embeddings_server_gives_a_clear_tool_error(team, well_behaved, mode, problem):
    host = well_behaved.url.split("/")[2]
    before = team.stored()
    well_behaved.control(mode, queries_only=True)
    response = team.mcp.modern("tools/call", {"name": "semantic_search", "arguments": {"query": "parking"}})
    assert response.status_code == 200
    result = response.json()["result"]
    assert result["isError"] is True
    assert text(result) == UNAVAILABLE + problem.format(host=host) + MEANWHILE
    well_behaved.control("ok")
    assert requests.get(team.server.url + "/healthz", timeout=5).json() == {"status": "ok"}
    assert paths(team.mcp.ok("semantic_search", query="where should guests leave their cars", n=1)) == ["Office/Parking"]
    assert team.stored() == before


def test_a_query_vector_of_the_wrong_dimension_is_refused(team, well_behaved):
    well_behaved.control("wrong-dimensions", queries_only=True)
    assert team.mcp.fails("semantic_search", query="parking") == (
        "Semantic search cannot answer right now: the embeddings server returned a 257-dimensional vector for the "
        "query, but the index holds 256-dimensional ones, so its model changed. The index is rebuilt by itself; "
        "try again later, or use search_notes meanwhile.")
    well_behaved.control("ok")
    assert team.mcp.ok("semantic_search", query="parking")["structuredContent"]["results"]


# --- keeping up with changes -------------------------------------------------------------------------------

LIVE_WIKIS = itertools.count(1)


@pytest.fixture
def live(team, well_behaved):
    """A new wiki of its own (its three default pages indexed) on the team server."""
    wiki = make_wiki(team.server, f"live-{next(LIVE_WIKIS)}")
    wait_indexed(wiki.server)
    return wiki


@pytest.fixture
def own_server(well_behaved, tmp_path):
    """A wiki on a server of its own, for tests that change the whole instance's index."""
    server = start_server(tmp_path / "data", env_extra=semantic_env(well_behaved))
    try:
        wiki = make_wiki(server, "live")
        wait_indexed(server)
        yield wiki
    finally:
        server.stop()


def test_deletes_and_renames_leave_no_stale_hits(live):
    page = "Pets/Office Dog"
    live.mcp.ok("write_note", path=page, content="Biscuit the beagle visits on Wednesdays; never feed him chocolate.")
    wait_indexed(live.server)
    question = "rules about the animal that comes to work"
    assert paths(live.mcp.ok("semantic_search", query=question, n=1)) == [page]
    # A rename shows the new path at once, in the same transaction as the change...
    live.mcp.ok("rename_note", path=page, new_path="Animals/Biscuit")
    found = live.mcp.ok("semantic_search", query=question, n=10)
    assert page not in paths(found)
    wait_indexed(live.server)
    assert paths(live.mcp.ok("semantic_search", query=question, n=1)) == ["Animals/Biscuit"]
    # ...and a deleted page is gone from the results at once.
    live.mcp.ok("delete_note", path="Animals/Biscuit")
    for hit in live.mcp.ok("semantic_search", query=question, n=50)["structuredContent"]["results"]:
        assert hit["path"] not in (page, "Animals/Biscuit") and "beagle" not in hit["text"]
    assert db_values(live.server, "SELECT count(*) FROM semantic_chunks c JOIN wikis w ON w.id = c.wiki_id "
                                  "WHERE c.text LIKE '%beagle%' AND w.slug = ?", (live.slug,)) == [(0,)]


def test_only_changed_chunks_are_embedded_again(live):
    sections = "\n\n".join(f"## Part {i}\n\n{words(120, 200 * i)} about topic {i}." for i in range(6))
    live.mcp.ok("write_note", path="Handbook", content=f"# Handbook\n\n{sections}\n")
    wait_indexed(live.server)
    chunks = db_values(live.server, "SELECT count(*) FROM semantic_chunks c JOIN pages p ON p.id = c.page_id "
                                    "JOIN wikis w ON w.id = p.wiki_id WHERE p.path = 'Handbook' AND w.slug = ?",
                       (live.slug,))[0][0]
    assert chunks == 6
    before = well_inputs(live)
    revision = live.mcp.ok("read_note", path="Handbook")["structuredContent"]["revision"]
    live.mcp.ok("edit_note", path="Handbook", revision=revision, old_string="about topic 3.",
                new_string="about topic three, rewritten.")
    wait_indexed(live.server)
    assert well_inputs(live) - before == 1


def well_inputs(wiki) -> int:
    return requests.get(wiki.server.env["ROBOTWTF_EMBEDDINGS_URL"].replace("/v1/embeddings", "/stats"),
                        timeout=5).json()["inputs"]


def test_the_index_catches_up_after_the_embeddings_server_was_down(embeddings, tmp_path):
    server = start_server(tmp_path / "data", env_extra=semantic_env(embeddings))
    try:
        wiki = make_wiki(server, "outage")
        wait_indexed(server)
        embeddings.stop()
        try:
            for path, content, _ in TARGETS[:6]:  # writes never wait for the index
                wiki.mcp.ok("write_note", path=path, content=content)
            host = embeddings.url.split("/")[2]
            assert wiki.mcp.fails("semantic_search", query="parking") == (
                f"{UNAVAILABLE}Could not connect to the embeddings server at {host}; is it running?{MEANWHILE}")
            deadline = time.monotonic() + 20
            while not db_values(server, "SELECT last_error FROM semantic_state")[0][0]:
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.1)
            admin = server.login("alice").get(server.url + "/admin").text
            assert f"Could not connect to the embeddings server at {host}; is it running?" in admin
            assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
        finally:
            embeddings.start()
        wait_indexed(server, timeout=120)  # the indexer's backoff is at most a minute
        for path, _, question in TARGETS[:6]:
            assert path in paths(wiki.mcp.ok("semantic_search", query=question, n=5)), question
    finally:
        server.stop()


def test_a_model_change_reindexes_everything(well_behaved, tmp_path):
    data = tmp_path / "data"
    server = start_server(data, env_extra=semantic_env(well_behaved))
    try:
        wiki = make_wiki(server, "models")
        for path, content, _ in TARGETS[:5]:
            wiki.mcp.ok("write_note", path=path, content=content)
        wait_indexed(server)
        assert db_values(server, "SELECT DISTINCT length(vector) FROM semantic_chunks") == [(1024,)]
    finally:
        server.stop()
    chunks = db_values(server, "SELECT count(*) FROM semantic_chunks")[0][0]
    before = well_behaved.stats()["by_model"].get("wordllama-128", 0)
    server = start_server(data, env_extra=semantic_env(well_behaved, model="wordllama-128"))
    try:
        wait_indexed(server, model="wordllama-128")
        assert db_values(server, "SELECT model, dimensions FROM semantic_state") == [("wordllama-128", 128)]
        assert db_values(server, "SELECT DISTINCT length(vector) FROM semantic_chunks") == [(512,)]
        assert well_behaved.stats()["by_model"]["wordllama-128"] - before >= chunks
        assert "the model is now wordllama-128 (128 dimensions), was wordllama (256)" in server.log()
        endpoint = Endpoint(f"{server.url}/w/models/mcp", wiki.mcp.token)
        assert paths(endpoint.ok("semantic_search", query="where should guests leave their cars", n=1)) == \
            ["Office/Parking"]
    finally:
        server.stop()


def test_a_dimension_change_behind_the_same_model_name_reindexes(own_server, well_behaved):
    live = own_server
    well_behaved.control("wrong-dimensions")  # every vector is now 257-dimensional
    live.mcp.ok("write_note", path="Office/Parking", content=TARGETS[1][1])
    deadline = time.monotonic() + 60
    while db_values(live.server, "SELECT dimensions FROM semantic_state") != [(257,)]:
        assert time.monotonic() < deadline, live.server.log()
        time.sleep(0.1)
    wait_indexed(live.server)
    assert db_values(live.server, "SELECT DISTINCT length(vector) FROM semantic_chunks") == [(257 * 4,)]
    assert paths(live.mcp.ok("semantic_search", query="where should guests leave their cars", n=1)) == \
        ["Office/Parking"]


def test_a_chunk_the_server_refuses_is_skipped_not_retried_forever(live, well_behaved):
    well_behaved.control("refuse-poison")
    live.mcp.ok("write_note", path="Bad", content="This page contains POISON for the embeddings server.")
    live.mcp.ok("write_note", path="Good", content="Biscuit the beagle visits on Wednesdays.")
    wait_indexed(live.server)
    assert db_values(live.server, "SELECT p.path, c.failed FROM semantic_chunks c JOIN pages p ON p.id = c.page_id "
                                  "JOIN wikis w ON w.id = p.wiki_id WHERE p.path IN ('Bad', 'Good') AND w.slug = ? "
                                  "ORDER BY p.path", (live.slug,)) == [("Bad", 1), ("Good", 0)]
    admin = live.server.login("alice").get(live.server.url + "/admin").text
    assert re.search(rf"<td>{live.slug}</td><td>\d+</td><td>0</td><td>0</td><td>1</td>", admin), admin


# --- isolation, visibility, configuration ---------------------------------------------------------------------

def test_a_private_wikis_chunks_never_appear_in_another_wikis_results(team):
    server = team.server
    secret = make_wiki(server, "secret")
    secret.mcp.ok("write_note", path="Plans/Acquisition", content="We will buy the lighthouse company in March; "
                  "the price is nine million. Keep this confidential.")
    # The same text in both wikis (the same hash): each wiki finds its own page only.
    shared = "The courtyard fountain is switched off for the winter on November 1."
    secret.mcp.ok("write_note", path="Secret Fountain", content=shared)
    team.mcp.ok("write_note", path="Team Fountain", content=shared)
    wait_indexed(server)
    for question in ("buying another company", "confidential purchase price", "courtyard fountain winter"):
        for hit in team.mcp.ok("semantic_search", query=question, n=50, max_chunks_per_page=10)[
                "structuredContent"]["results"]:
            assert not hit["path"].startswith(("Plans/", "Secret ")), hit
            assert "lighthouse company" not in hit["text"]
    assert "Team Fountain" in paths(team.mcp.ok("semantic_search", query="courtyard fountain winter", n=3))
    assert paths(secret.mcp.ok("semantic_search", query="buying another company", n=1)) == ["Plans/Acquisition"]
    # Bob, a member of team only, cannot search secret with his team token.
    add_member(team, BOB, "bob", "viewer")
    bob = Endpoint(secret.url, team.token("bob", scope="wiki:read"))
    response = bob.modern("tools/call", {"name": "semantic_search", "arguments": {"query": "acquisition"}})
    assert response.status_code == 401


def test_semantic_search_needs_the_read_scope(team):
    writer = Endpoint(team.url, team.token("alice", scope="wiki:write", name="writer"))
    response = writer.modern("tools/call", {"name": "semantic_search", "arguments": {"query": "parking"}})
    assert response.status_code == 403
    assert 'scope="wiki:read wiki:write"' in response.headers["WWW-Authenticate"]


def test_the_tool_is_listed_only_while_semantic_search_is_on(team, server):
    listed = {tool["name"]: tool for tool in team.mcp.modern("tools/list").json()["result"]["tools"]}
    assert listed["semantic_search"]["outputSchema"]["properties"]["results"]["type"] == "array"
    assert listed["semantic_search"]["annotations"]["readOnlyHint"] is True
    plain = make_wiki(server, "plain")
    names = [tool["name"] for tool in plain.mcp.modern("tools/list").json()["result"]["tools"]]
    assert "semantic_search" not in names and "search_notes" in names
    response = plain.mcp.modern("tools/call", {"name": "semantic_search", "arguments": {"query": "x"}})
    assert response.json()["error"]["message"] == "Unknown tool: semantic_search"


def test_the_api_key_is_sent_as_a_bearer_and_never_logged(well_behaved, tmp_path):
    key = "sk-test-0123456789abcdef"
    server = start_server(tmp_path / "data", env_extra=semantic_env(well_behaved, ROBOTWTF_EMBEDDINGS_API_KEY=key))
    try:
        wiki = make_wiki(server, "keyed")
        wait_indexed(server)
        wiki.mcp.ok("semantic_search", query="getting started")
        assert well_behaved.stats()["authorization"] == f"Bearer {key}"
        well_behaved.control("error")  # the indexer logs the failure, the tool reports it
        wiki.mcp.fails("semantic_search", query="getting started")
        wiki.mcp.ok("write_note", path="New", content="a new page while the embeddings server fails")
        deadline = time.monotonic() + 20
        while "answered HTTP 500" not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
        assert key not in server.log()
        assert key not in server.cli("check").stdout
    finally:
        server.stop()


@pytest.mark.parametrize("env, message", [
    ({"ROBOTWTF_EMBEDDINGS_URL": "http://127.0.0.1:1/v1/embeddings"},
     "--embeddings-url is set but --embeddings-model is not: name the model the server should use, e.g. "
     "--embeddings-model nomic-embed-text."),
    ({"ROBOTWTF_EMBEDDINGS_URL": "ollama:11434", "ROBOTWTF_EMBEDDINGS_MODEL": "m"},
     "--embeddings-url 'ollama:11434' must be an absolute http:// or https:// URL, e.g. "
     "http://127.0.0.1:11434/v1/embeddings."),
    ({"ROBOTWTF_EMBEDDINGS_URL": "https://me:secret@api.example/v1/embeddings", "ROBOTWTF_EMBEDDINGS_MODEL": "m"},
     "--embeddings-url must not carry a user name or password; put the key in ROBOTWTF_EMBEDDINGS_API_KEY instead."),
])
def test_bad_embeddings_settings_are_refused_at_start(cli, env, message):
    cli.env.update(env)
    result = cli("check", check=False)
    assert result.returncode == 1
    assert message in result.stderr


# --- the CLI and the browser ----------------------------------------------------------------------------------

def test_reindex_rebuilds_with_a_progress_line(live, well_behaved):
    live.mcp.ok("write_note", path="Garden/Tomatoes", content=TARGETS[3][1])
    wait_indexed(live.server)
    chunks = db_values(live.server, "SELECT count(*) FROM semantic_chunks WHERE wiki_id = "
                                    "(SELECT id FROM wikis WHERE slug = ?)", (live.slug,))[0][0]
    before = well_behaved.stats()["inputs"]
    result = live.server.cli("reindex", live.slug)
    assert re.fullmatch(rf"reindexed {live.slug}: 4 pages, \d+ chunks embedded in [\d.]+ s \(\d+ chunks/s\)\n", result.stdout)
    assert re.search(r"reindex: \d+ chunks embedded, 0 waiting, 0 pages to read \(\d+ chunks/s\)", result.stderr)
    wait_indexed(live.server)
    assert well_behaved.stats()["inputs"] - before >= chunks
    assert paths(live.mcp.ok("semantic_search", query="care instructions for vegetables growing outside", n=1)) == \
        ["Garden/Tomatoes"]


def test_reindex_refuses_clearly(live, server):
    missing = live.server.cli("reindex", "nosuch", check=False)
    assert missing.returncode == 1 and missing.stderr == "robotwtf: There is no wiki 'nosuch'.\n"
    off = server.cli("reindex", check=False)
    assert off.returncode == 1
    assert off.stderr == ("robotwtf: Semantic search is off: set --embeddings-url and --embeddings-model (or "
                          "ROBOTWTF_EMBEDDINGS_URL and ROBOTWTF_EMBEDDINGS_MODEL) first.\n")


def test_the_search_page_shows_similar_meaning_under_the_word_matches(team):
    browser = team.server.login("alice")
    page = browser.get(f"{team.server.url}/w/team/-/search", params={"q": "where should guests leave their cars"})
    assert page.status_code == 200
    words_part, similar = page.text.split('<h2 id="similar-heading">Similar meaning</h2>')
    assert "No page matches" in words_part
    assert similar.index('href="/w/team/Office/Parking"') < similar.index("</ol>")
    assert similar.count("<li>") <= 5


def test_the_search_page_explains_an_unavailable_embeddings_server(team, well_behaved):
    well_behaved.control("error", queries_only=True)
    page = team.server.login("alice").get(f"{team.server.url}/w/team/-/search", params={"q": "parking"})
    assert page.status_code == 200
    assert "answered HTTP 500 (the model crashed)" in page.text
    assert 'href="/w/team/Office/Parking"' in page.text  # the word match still works


def test_without_semantic_search_the_pages_are_unchanged(server, alice):
    server.cli("wiki", "create", "plain", "--owner", "alice")
    assert "Similar meaning" not in alice.get(f"{server.url}/w/plain/-/search", params={"q": "home"}).text
    assert "Semantic search" not in alice.get(f"{server.url}/admin").text


def test_the_admin_page_shows_the_index_of_every_wiki(team):
    admin = team.server.login("alice").get(team.server.url + "/admin").text
    assert "Embeddings from <code>wordllama</code>" in admin and ", 256 dimensions" in admin
    row = re.search(r"<td>team</td><td>(\d+)</td><td>0</td><td>0</td><td>0</td>", admin)
    assert row and int(row.group(1)) >= 213
