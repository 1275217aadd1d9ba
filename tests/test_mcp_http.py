"""The MCP endpoint over real HTTP: both protocol eras end to end, authentication and scopes,
and every kind of bad input (each refused with a clear error and nothing stored)."""

from __future__ import annotations

import json
import threading

import pytest
import requests

from conftest import start_server
from mcp_client import (ALICE, BOB, CAROL, LEGACY, MODERN, Endpoint, add_member, b64, change_member, make_wiki,
                        modern_meta, text)

TOOL_NAMES = [
    "read_note", "write_note", "edit_note", "list_notes", "search_notes", "get_links", "get_recent_changes",
    "get_history", "rename_note", "delete_note", "find_orphaned_notes", "list_attachments", "upload_attachment",
    "download_attachment", "delete_attachment",
]
READ_ONLY = {"read_note", "list_notes", "search_notes", "get_links", "get_recent_changes", "get_history",
             "find_orphaned_notes", "list_attachments", "download_attachment"}


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("mcp-http") / "data")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def wiki(shared_server):
    """One wiki for the tests that only read, or prove that nothing was stored."""
    return make_wiki(shared_server)


@pytest.fixture
def own_wiki(shared_server, request):
    """A wiki of the test's own, for tests that change members or compete for pages."""
    return make_wiki(shared_server, "w" + str(abs(hash(request.node.name)) % 10 ** 8))


# --- both eras end to end ----------------------------------------------------------------------

def test_handshake_era_initialize_initialized_list_call(wiki):
    init = wiki.mcp.post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "pytest", "version": "1"}}})
    assert init.status_code == 200
    assert init.headers["Content-Type"].startswith("application/json")
    assert "Mcp-Session-Id" not in init.headers
    result = init.json()["result"]
    assert result["protocolVersion"] == LEGACY
    assert result["capabilities"] == {"tools": {}}
    assert result["serverInfo"]["name"] == "robotwtf"
    assert "Home" in result["instructions"] and "edit_note" in result["instructions"]

    initialized = wiki.mcp.post({"jsonrpc": "2.0", "method": "notifications/initialized"},
                                {"MCP-Protocol-Version": LEGACY})
    assert initialized.status_code == 202 and initialized.content == b""

    tools = wiki.mcp.legacy("tools/list").json()["result"]["tools"]
    assert [tool["name"] for tool in tools] == TOOL_NAMES
    assert "ttlMs" not in wiki.mcp.legacy("tools/list").json()["result"]

    called = wiki.mcp.call("read_note", era=LEGACY, path="Home")
    assert called["isError"] is False
    assert "Revision: " in text(called) and called["structuredContent"]["path"] == "Home"


def test_older_handshake_versions_and_a_2025_03_26_batch(wiki):
    offered = wiki.mcp.post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2024-01-01", "capabilities": {}, "clientInfo": {"name": "old", "version": "1"}}})
    assert offered.json()["result"]["protocolVersion"] == LEGACY  # counter-offer, not an error

    batch = wiki.mcp.post([
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "read_note", "arguments": {"path": "Home"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
    ])  # no MCP-Protocol-Version header: a 2025-03-26 client
    assert batch.status_code == 200
    first, second = batch.json()
    assert len(first["result"]["tools"]) == 15
    assert "title" not in first["result"]["tools"][0]  # 2025-03-26 tools have no title...
    assert second["result"]["isError"] is False
    assert "structuredContent" not in second["result"]  # ...and no structured output

    ping = wiki.mcp.legacy("ping", version="2025-06-18")
    assert ping.json()["result"] == {}


def test_modern_era_discover_and_call_with_headers(wiki):
    discover = wiki.mcp.modern("server/discover")
    assert discover.status_code == 200
    result = discover.json()["result"]
    assert result["supportedVersions"][0] == MODERN
    assert result["capabilities"] == {"tools": {}}
    assert "get_recent_changes" in result["instructions"]
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "robotwtf"
    assert result["resultType"] == "complete" and result["ttlMs"] >= 0

    listed = wiki.mcp.modern("tools/list").json()["result"]
    assert listed["cacheScope"] == "public" and listed["ttlMs"] > 0
    for tool in listed["tools"]:
        annotations = tool["annotations"]
        assert tool["title"] and tool["description"] and tool["outputSchema"]["type"] == "object"
        assert annotations["openWorldHint"] is False
        assert annotations["readOnlyHint"] is (tool["name"] in READ_ONLY)
        assert tool["inputSchema"]["additionalProperties"] is False

    called = wiki.mcp.call("read_note", path="Home")
    assert called["resultType"] == "complete" and called["isError"] is False

    removed = wiki.mcp.post({"jsonrpc": "2.0", "id": 9, "method": "ping", "params": {"_meta": modern_meta()}},
                            {"MCP-Protocol-Version": MODERN, "Mcp-Method": "ping"})
    assert removed.status_code == 404 and removed.json()["error"]["code"] == -32601


def test_modern_header_mismatch_and_missing_meta_are_400(wiki):
    params = {"name": "write_note", "arguments": {"path": "Sneaky", "content": "x"}, "_meta": modern_meta()}
    before = wiki.stored()
    mismatch = wiki.mcp.post({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params},
                             {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "read_note"})
    assert mismatch.status_code == 400 and mismatch.json()["error"]["code"] == -32020
    no_meta = wiki.mcp.post({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}},
                            {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/list"})
    assert no_meta.status_code == 400 and no_meta.json()["error"]["code"] == -32602
    unsupported = wiki.mcp.post({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {}},
                                {"MCP-Protocol-Version": "1999-01-01"})
    assert unsupported.status_code == 400
    assert wiki.stored() == before


# --- HTTP methods, Origin, size -----------------------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT", "OPTIONS"])
def test_only_post_is_allowed(wiki, method):
    response = requests.request(method, wiki.url, headers={"Authorization": f"Bearer {wiki.mcp.token}"})
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


def test_get_is_405_even_without_a_token(wiki):
    assert requests.get(wiki.url).status_code == 405


def test_origin_must_be_the_public_url(wiki):
    before = wiki.stored()
    evil = wiki.mcp.post({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "write_note", "arguments": {"path": "Evil", "content": "x"}}},
        {"Origin": "http://evil.example", "MCP-Protocol-Version": LEGACY})
    assert evil.status_code == 403
    assert wiki.stored() == before
    same = wiki.mcp.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                         {"Origin": wiki.server.url, "MCP-Protocol-Version": LEGACY})
    assert same.status_code == 200


def test_body_over_the_limit_is_413_and_stores_nothing(wiki):
    before = wiki.stored()
    content = "x" * (17 * 1024 * 1024)
    response = wiki.mcp.post({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "write_note", "arguments": {"path": "Huge", "content": content}}}, {"MCP-Protocol-Version": LEGACY})
    assert response.status_code == 413
    assert wiki.stored() == before


def test_ten_megabyte_bodies_are_refused_without_storing(wiki):
    before = wiki.stored()
    ten_mb = 10 * 1024 * 1024
    junk = wiki.mcp.post(None, {"MCP-Protocol-Version": LEGACY}, raw=b"{" * ten_mb)
    assert junk.status_code == 400 and junk.json()["error"]["code"] == -32700
    page = wiki.mcp.fails("write_note", path="Huge", content="y" * ten_mb)
    assert "too large" in page.lower() and "1000000" in page
    upload = wiki.mcp.fails("upload_attachment", path="Home", filename="big.bin", content=b64(b"z" * (ten_mb + 1)))
    assert "10 MB" in upload
    assert wiki.stored() == before


def test_ten_megabyte_attachment_round_trips(wiki):
    data = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    uploaded = wiki.mcp.ok("upload_attachment", path="Home", filename="ten.bin", content=b64(data))
    assert uploaded["structuredContent"]["attachment"]["size"] == len(data)
    downloaded = wiki.mcp.ok("download_attachment", path="Home", filename="ten.bin")
    assert downloaded["structuredContent"]["content"] == b64(data)


# --- malformed JSON-RPC ---------------------------------------------------------------------------

WRITE = {"name": "write_note", "arguments": {"path": "Written", "content": "x"}}


@pytest.mark.parametrize("body, status, code", [
    (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {', 400, -32700),
    (b"\xff\xfe not json", 400, -32700),
    (b'{"jsonrpc": "2.0", "id": NaN, "method": "tools/list"}', 400, -32700),
    (json.dumps({"jsonrpc": "1.0", "id": 1, "method": "tools/call", "params": WRITE}).encode(), 400, -32600),
    (json.dumps({"id": 1, "method": "tools/call", "params": WRITE}).encode(), 400, -32600),
    (json.dumps({"jsonrpc": "2.0", "id": None, "method": "tools/call", "params": WRITE}).encode(), 400, -32600),
    (json.dumps({"jsonrpc": "2.0", "id": 1.5, "method": "tools/call", "params": WRITE}).encode(), 400, -32600),
    (json.dumps({"jsonrpc": "2.0", "id": {"a": 1}, "method": "tools/call", "params": WRITE}).encode(), 400, -32600),
    (b'{"jsonrpc": "2.0", "id": 1e400, "method": "tools/call"}', 400, -32600),
    (json.dumps({"jsonrpc": "2.0", "id": 1, "method": ["tools/call"], "params": WRITE}).encode(), 400, -32600),
    (json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": [WRITE]}).encode(), 400, -32600),
    (json.dumps("tools/call").encode(), 400, -32600),
    (json.dumps([]).encode(), 400, -32600),
])
def test_malformed_json_rpc_is_a_protocol_error_and_stores_nothing(wiki, body, status, code):
    before = wiki.stored()
    response = wiki.mcp.post(None, {"MCP-Protocol-Version": "2025-03-26"}, raw=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert wiki.stored() == before


@pytest.mark.parametrize("version", [LEGACY, MODERN])
def test_arrays_where_objects_belong(wiki, version):
    before = wiki.stored()
    headers = {"MCP-Protocol-Version": version, "Mcp-Method": "tools/call", "Mcp-Name": "write_note"}
    batch = wiki.mcp.post([{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": WRITE}], headers)
    assert batch.status_code == 400 and batch.json()["error"]["code"] == -32600
    params = {"name": "write_note", "arguments": ["Written", "x"]}
    if version == MODERN:
        params["_meta"] = modern_meta()
    arguments = wiki.mcp.post({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params}, headers)
    assert arguments.json()["error"]["code"] == -32602
    assert wiki.stored() == before


def test_a_request_without_id_is_a_notification_and_does_nothing(wiki):
    before = wiki.stored()
    response = wiki.mcp.post({"jsonrpc": "2.0", "method": "tools/call", "params": WRITE}, {"MCP-Protocol-Version": LEGACY})
    assert response.status_code == 202 and response.content == b""
    assert wiki.stored() == before


@pytest.mark.parametrize("huge_id", [10 ** 40, -(10 ** 40), "i" * 100_000])
def test_huge_ids_are_echoed(wiki, huge_id):
    response = wiki.mcp.post({"jsonrpc": "2.0", "id": huge_id, "method": "tools/list"}, {"MCP-Protocol-Version": LEGACY})
    assert response.status_code == 200
    assert response.json()["id"] == huge_id


@pytest.mark.parametrize("era", [LEGACY, MODERN])
def test_unknown_tool_is_invalid_params(wiki, era):
    params = {"name": "format_disk", "arguments": {}}
    response = (wiki.mcp.modern("tools/call", params) if era == MODERN else wiki.mcp.legacy("tools/call", params))
    assert response.status_code == (400 if era == MODERN else 200)
    assert response.json()["error"] == {"code": -32602, "message": "Unknown tool: format_disk"}


@pytest.mark.parametrize("tool, arguments, message", [
    ("write_note", {"path": 7, "content": "x"}, "'path' must be a string"),
    ("write_note", {"path": "A", "content": ["x"]}, "'content' must be a string"),
    ("write_note", {"path": "A", "content": None}, "'content' must be a string"),
    ("get_recent_changes", {"limit": "10"}, "'limit' must be an integer"),
    ("get_recent_changes", {"limit": 10.5}, "'limit' must be an integer"),
    ("get_history", {"path": "Home", "limit": 0}, "'limit' must be at least 1"),
    ("get_history", {"path": "Home", "limit": 100000}, "'limit' must be at most 200"),
    ("write_note", {"path": "A"}, "'content' is required"),
    ("edit_note", {"path": "Home", "old_string": "a", "new_string": "b"}, "'revision' is required"),
    ("write_note", {"path": "A", "content": "x", "mode": "force"}, "'mode' is not a parameter of this tool"),
    ("find_orphaned_notes", {"verbose": True}, "'verbose' is not a parameter of this tool"),
    ("search_notes", {"query": ""}, "'query' must be at least 1 characters long"),
])
def test_bad_arguments_are_tool_errors_and_store_nothing(wiki, tool, arguments, message):
    before = wiki.stored()
    failure = wiki.mcp.fails(tool, **arguments)
    assert failure.startswith(f"Invalid arguments for {tool}:") and message in failure
    assert wiki.stored() == before


# --- authentication and scopes ----------------------------------------------------------------------

def challenge(response) -> str:
    return response.headers["WWW-Authenticate"]


def test_no_token_gets_the_discovery_challenge(wiki):
    response = Endpoint(wiki.url, None).legacy("tools/list")
    assert response.status_code == 401
    metadata = f"{wiki.server.url}/.well-known/oauth-protected-resource/w/demo/mcp"
    assert challenge(response) == f'Bearer resource_metadata="{metadata}", scope="wiki:read wiki:write"'
    assert requests.get(metadata).json()["resource"] == wiki.url


def test_token_in_the_query_string_is_not_accepted(wiki):
    response = requests.post(f"{wiki.url}?access_token={wiki.mcp.token}", json={
        "jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert response.status_code == 401


@pytest.mark.parametrize("token", ["not-a-token", "rwpat_" + "A" * 43, "eyJhbGciOiJub25lIn0.e30."])
def test_invalid_tokens_are_401_invalid_token(wiki, token):
    before = wiki.stored()
    response = Endpoint(wiki.url, token).post(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": WRITE}, {"MCP-Protocol-Version": LEGACY})
    assert response.status_code == 401
    assert 'error="invalid_token"' in challenge(response)
    assert 'resource_metadata="' in challenge(response)
    assert wiki.stored() == before


def test_other_wikis_token_is_401(own_wiki):
    other = make_wiki(own_wiki.server, "other")
    response = Endpoint(own_wiki.url, other.mcp.token).legacy("tools/list")
    assert response.status_code == 401 and 'error="invalid_token"' in challenge(response)
    assert other.mcp.legacy("tools/list").status_code == 200


def test_expired_personal_token_is_401(own_wiki):
    import time

    import robotwtf_store as store

    db = own_wiki.server.db()
    try:
        token = store.create_personal_token(db, ALICE, own_wiki.slug, frozenset(store.SCOPES), "brief",
                                         expires_at=store.now() + 1)
    finally:
        db.close()
    assert Endpoint(own_wiki.url, token).legacy("tools/list").status_code == 200
    time.sleep(2.1)
    response = Endpoint(own_wiki.url, token).legacy("tools/list")
    assert response.status_code == 401 and "expired" in response.json()["error_description"]


def test_viewer_reads_but_writing_is_a_403_scope_challenge(own_wiki):
    add_member(own_wiki, BOB, "bob", "viewer")
    viewer = Endpoint(own_wiki.url, own_wiki.token("bob", scope="wiki:read"))
    assert viewer.ok("read_note", path="Home")
    assert len(viewer.modern("tools/list").json()["result"]["tools"]) == 15  # the same list for everyone
    before = own_wiki.stored()
    for era in (LEGACY, MODERN):
        params = {"name": "write_note", "arguments": {"path": "Vandalism", "content": "x"}}
        response = viewer.modern("tools/call", params) if era == MODERN else viewer.legacy("tools/call", params)
        assert response.status_code == 403
        assert 'error="insufficient_scope"' in challenge(response) and 'scope="wiki:read wiki:write"' in challenge(response)
    assert own_wiki.stored() == before


def test_lowered_role_and_removed_member_take_effect_on_the_next_request(own_wiki):
    add_member(own_wiki, CAROL, "carol", "editor")
    editor = Endpoint(own_wiki.url, own_wiki.token("carol"))
    editor.ok("write_note", path="Carol", content="mine")
    change_member(own_wiki, CAROL, "viewer")
    assert editor.legacy("tools/call", {"name": "write_note", "arguments": {"path": "More", "content": "x"}}).status_code == 403
    assert editor.ok("read_note", path="Carol")
    change_member(own_wiki, CAROL, None)
    response = editor.legacy("tools/list")
    assert response.status_code == 401 and 'error="invalid_token"' in challenge(response)


# --- concurrency ----------------------------------------------------------------------------------------

def test_two_clients_writing_one_page_at_once_get_exactly_one_conflict(own_wiki):
    add_member(own_wiki, BOB, "bob", "editor")
    clients = [own_wiki.mcp, Endpoint(own_wiki.url, own_wiki.token("bob"))]
    for round_number in range(5):
        path = f"Race {round_number}"
        base = own_wiki.mcp.ok("write_note", path=path, content="base")["structuredContent"]["revision"]
        barrier = threading.Barrier(2)
        results = [None, None]

        def write(index):
            barrier.wait()
            results[index] = clients[index].call("write_note", path=path, content=f"writer {index}", revision=base)

        threads = [threading.Thread(target=write, args=(index,)) for index in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        outcomes = sorted(result["isError"] for result in results)
        assert outcomes == [False, True]
        winner = next(index for index, result in enumerate(results) if not result["isError"])
        loser = results[1 - winner]
        assert "changed since revision" in text(loser) and "Read it again" in text(loser)
        page = own_wiki.mcp.ok("read_note", path=path)["structuredContent"]
        assert page["content"] == f"writer {winner}"
        assert page["revision"] == results[winner]["structuredContent"]["revision"]
        history = own_wiki.mcp.ok("get_history", path=path)["structuredContent"]["history"]
        assert [change["kind"] for change in history] == ["update", "create"]
        retried = clients[1 - winner].ok("write_note", path=path, content=f"writer {1 - winner} after rereading",
                                         revision=page["revision"])
        assert retried["structuredContent"]["kind"] == "update"


def test_requests_beyond_the_rate_limit_get_429_with_retry_after(tmp_path):
    server = start_server(tmp_path / "data", "--mcp-per-minute", "3")
    try:
        wiki = make_wiki(server)
        statuses = [wiki.mcp.legacy("tools/list").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = wiki.mcp.legacy("tools/list")
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        other = make_wiki(server, "other")  # another token has its own bucket
        assert other.mcp.legacy("tools/list").status_code == 200
    finally:
        server.stop()
