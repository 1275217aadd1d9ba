"""The MCP protocol core (robotwtf_mcp) driven through handle_http with dummy tools."""

import base64
import json

import pytest

import robotwtf_mcp as mcp

PRM_URL = "http://127.0.0.1:8080/.well-known/oauth-protected-resource/w/demo/mcp"
ORIGIN = "http://127.0.0.1:8080"
MODERN = "2026-07-28"

calls = []  # every handler invocation, to prove what did or did not run


def echo(call):
    calls.append(("echo", call))
    text = call.arguments["text"]
    return mcp.ToolResult(f"Echo: {text}", {"text": text, "length": len(text)})


def append(call):
    calls.append(("append", call))
    if call.arguments["line"] == "conflict":
        raise mcp.ToolError("Revision conflict: read the page again and retry.")
    return mcp.ToolResult("Appended.", {"revision": "abc1234"})


def broken(call):
    raise RuntimeError("secret internals")


def liar(call):
    return mcp.ToolResult("Claims to match its schema.", {"count": "many"})


ECHO = mcp.Tool(
    name="echo",
    title="Echo text",
    description="Returns the text it is given.",
    input_schema={
        "type": "object",
        "properties": {
            "text": {"type": "string", "minLength": 1, "description": "What to echo."},
            "times": {"type": "integer", "minimum": 1, "maximum": 3},
            "mode": {"type": "string", "enum": ["plain", "loud"]},
        },
        "required": ["text"],
        "additionalProperties": False,
    },
    output_schema={
        "type": "object",
        "properties": {"text": {"type": "string"}, "length": {"type": "integer"}},
        "required": ["text", "length"],
    },
    annotations={"readOnlyHint": True, "openWorldHint": False},
    scope="wiki:read",
    handler=echo,
)
APPEND = mcp.Tool(
    name="append",
    title="Append a line",
    description="Appends a line; 'conflict' simulates a stale revision.",
    input_schema={
        "type": "object",
        "properties": {"line": {"type": "string"}},
        "required": ["line"],
        "additionalProperties": False,
    },
    annotations={"readOnlyHint": False, "destructiveHint": False, "idempotentHint": False, "openWorldHint": False},
    scope="wiki:write",
    handler=append,
)
BROKEN = mcp.Tool(
    "broken", "Broken", "Always crashes.", {"type": "object", "additionalProperties": False}, {}, "wiki:read", broken
)
LIAR = mcp.Tool(
    name="liar",
    title="Liar",
    description="Returns output that violates its schema.",
    input_schema={"type": "object"},
    output_schema={"type": "object", "properties": {"count": {"type": "integer"}}},
    annotations={},
    scope="wiki:read",
    handler=liar,
)
SERVER = mcp.Server(
    name="robotwtf",
    version="0.1",
    instructions="Read Home first.",
    public_origin=ORIGIN,
    tools=(ECHO, APPEND, BROKEN, LIAR),
)
READ_WRITE = mcp.RequestContext(frozenset({"wiki:read", "wiki:write"}), PRM_URL, caller="alice@demo")
READ_ONLY = mcp.RequestContext(frozenset({"wiki:read"}), PRM_URL, caller="bob@demo")


@pytest.fixture(autouse=True)
def clear_calls():
    calls.clear()


def meta(version=MODERN, **extra):
    return {
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "test-client", "version": "1.0"},
        **extra,
    }


def modern_headers(method, name=None, version=MODERN):
    headers = {"MCP-Protocol-Version": version, "Mcp-Method": method, "Accept": "application/json, text/event-stream"}
    if name is not None:
        headers["Mcp-Name"] = name
    return headers


def modern(method, params=None, rpc_id=1, name=None, context=READ_WRITE, server=SERVER):
    """A well-formed 2026-07-28 request: _meta and the standard headers."""
    body = {"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": {**(params or {}), "_meta": meta()}}
    return post(body, modern_headers(method, name), context, server)


def legacy(method, params=None, rpc_id=1, version="2025-11-25", context=READ_WRITE, server=SERVER):
    body = {"jsonrpc": "2.0", "id": rpc_id, "method": method}
    if params is not None:
        body["params"] = params
    headers = {"MCP-Protocol-Version": version} if version else {}
    return post(body, headers, context, server)


def post(payload, headers=None, context=READ_WRITE, server=SERVER):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return mcp.handle_http(server, "POST", raw, headers or {}, context)


def error_of(reply):
    return reply.body["error"]


# --- HTTP level -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
def test_only_post_is_allowed(method):
    assert mcp.handle_http(SERVER, method, b"", {}, READ_WRITE) == (405, {"Allow": "POST"}, None)


def test_foreign_origin_is_forbidden_and_own_origin_accepted():
    forbidden = post({"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"Origin": "http://evil.example"})
    assert forbidden.status == 403
    assert forbidden.body["id"] is None
    allowed = post({"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"Origin": ORIGIN})
    assert allowed.status == 200


@pytest.mark.parametrize("accept", [None, "*/*", "application/json, text/event-stream", "application/*;q=0.9"])
def test_accept_headers_that_allow_json_are_tolerated(accept):
    headers = {"Accept": accept} if accept else {}
    assert post({"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers).status == 200


def test_accept_that_rules_out_json_is_406():
    assert post({"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"Accept": "text/event-stream"}).status == 406


def test_content_type_must_be_json_when_given():
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    assert post(ping, {"Content-Type": "text/plain"}).status == 415
    assert post(ping, {"Content-Type": "application/json; charset=utf-8"}).status == 200


@pytest.mark.parametrize("raw", [b"{not json", b'{"jsonrpc": "2.0", "id": NaN}', b"\xff\xfe\x00garbage", b"[" * 100000])
def test_unparseable_bodies_are_parse_errors(raw):
    reply = post(raw)
    assert reply.status == 400
    assert (reply.body["id"], error_of(reply)["code"]) == (None, -32700)


@pytest.mark.parametrize(
    "payload, echoed_id",
    [
        ("just a string", None),
        ({"jsonrpc": "1.0", "id": 7, "method": "ping"}, 7),
        ({"id": 7, "method": "ping"}, 7),
        ({"jsonrpc": "2.0", "id": None, "method": "ping"}, None),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, None),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, None),
        ({"jsonrpc": "2.0", "id": 7, "method": 12}, 7),
        ({"jsonrpc": "2.0", "id": 7}, 7),
        ({"jsonrpc": "2.0", "id": 7, "method": "ping", "params": [1, 2]}, 7),
    ],
)
def test_invalid_envelopes_are_invalid_requests(payload, echoed_id):
    reply = post(payload)
    assert reply.status == 400
    assert error_of(reply)["code"] == -32600
    assert reply.body["id"] == echoed_id


def test_huge_and_string_ids_are_echoed():
    huge = 10**40
    assert post({"jsonrpc": "2.0", "id": huge, "method": "ping"}).body["id"] == huge
    assert post({"jsonrpc": "2.0", "id": "abc", "method": "ping"}).body["id"] == "abc"


# --- era selection ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers, payload, expected",
    [
        ({"mcp-protocol-version": "2025-11-25"}, {"params": {"_meta": meta()}}, "2025-11-25"),
        ({"mcp-protocol-version": "2025-06-18"}, {}, "2025-06-18"),
        ({}, {"method": "tools/list"}, "2025-03-26"),
        ({}, {"params": {"_meta": meta()}}, None),
        ({"mcp-protocol-version": MODERN}, {}, None),
        ({"mcp-protocol-version": "2024-11-05"}, {}, None),
    ],
)
def test_select_era(headers, payload, expected):
    assert mcp.select_era(payload, headers) == expected


# --- handshake era ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "requested, negotiated",
    [
        ("2025-11-25", "2025-11-25"),
        ("2025-06-18", "2025-06-18"),
        ("2025-03-26", "2025-03-26"),
        ("2024-11-05", "2025-11-25"),
        (MODERN, "2025-11-25"),
    ],
)
def test_initialize_negotiates_a_handshake_version(requested, negotiated):
    params = {"protocolVersion": requested, "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}
    reply = legacy("initialize", params, version=None)
    assert reply.status == 200
    assert reply.body["result"] == {
        "protocolVersion": negotiated,
        "capabilities": {"tools": {}},
        "serverInfo": {"name": "robotwtf", "version": "0.1"},
        "instructions": "Read Home first.",
    }
    assert "Mcp-Session-Id" not in reply.headers


def test_initialize_without_version_is_invalid_params():
    reply = legacy("initialize", {"capabilities": {}}, version=None)
    assert (reply.status, error_of(reply)["code"]) == (200, -32602)


def test_notifications_get_202_in_both_eras():
    assert post({"jsonrpc": "2.0", "method": "notifications/initialized"}) == (202, {}, None)
    modern_note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"_meta": meta()}}
    assert post(modern_note, modern_headers("notifications/cancelled")) == (202, {}, None)


def test_legacy_ping_is_exactly_empty():
    reply = legacy("ping")
    assert (reply.status, reply.body) == (200, {"jsonrpc": "2.0", "id": 1, "result": {}})


def test_legacy_client_responses_are_accepted():
    assert post({"jsonrpc": "2.0", "id": 4, "result": {}}, {"MCP-Protocol-Version": "2025-11-25"}).status == 202


def test_legacy_session_id_is_ignored():
    headers = {"Mcp-Session-Id": "stale", "MCP-Protocol-Version": "2025-06-18"}
    reply = post({"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers)
    assert reply.status == 200


@pytest.mark.parametrize("method", ["server/discover", "resources/list", "prompts/list", "logging/setLevel", "no/such"])
def test_legacy_unknown_methods_are_method_not_found_with_200(method):
    reply = legacy(method)
    assert (reply.status, error_of(reply)["code"], reply.body["id"]) == (200, -32601, 1)


def test_legacy_tools_list_has_no_modern_fields():
    result = legacy("tools/list").body["result"]
    assert [tool["name"] for tool in result["tools"]] == ["echo", "append", "broken", "liar"]
    assert result["tools"][0] == {
        "name": "echo",
        "title": "Echo text",
        "description": "Returns the text it is given.",
        "inputSchema": ECHO.input_schema,
        "outputSchema": ECHO.output_schema,
        "annotations": {"readOnlyHint": True, "openWorldHint": False},
    }
    assert set(result) == {"tools"}


def test_2025_03_26_tools_have_no_title_field_or_output_schema():
    tool = legacy("tools/list", version="2025-03-26").body["result"]["tools"][0]
    assert set(tool) == {"name", "description", "inputSchema", "annotations"}
    assert tool["annotations"]["title"] == "Echo text"


def test_legacy_tools_call_returns_content_and_structured_content():
    reply = legacy("tools/call", {"name": "echo", "arguments": {"text": "hi"}})
    assert reply.body["result"] == {
        "content": [{"type": "text", "text": "Echo: hi"}],
        "isError": False,
        "structuredContent": {"text": "hi", "length": 2},
    }
    assert calls[0][1].protocol_version == "2025-11-25"


def test_2025_03_26_tools_call_has_no_structured_content():
    result = legacy("tools/call", {"name": "echo", "arguments": {"text": "hi"}}, version=None).body["result"]
    assert "structuredContent" not in result


# --- batches (2025-03-26 only) ---------------------------------------------------------------------


def test_batch_is_served_without_a_version_header():
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}},
        {"jsonrpc": "2.0", "id": 3, "result": {}},
    ]
    reply = post(batch)
    assert reply.status == 200
    assert [response["id"] for response in reply.body] == [1, 2]
    assert reply.body[1]["result"]["content"][0]["text"] == "Echo: x"
    assert "structuredContent" not in reply.body[1]["result"]


def test_batch_with_invalid_elements_and_initialize_answers_each():
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-03-26"}},
        {"jsonrpc": "1.0", "id": 2, "method": "ping"},
        17,
        {"jsonrpc": "2.0", "id": 3, "method": "ping"},
    ]
    reply = post(batch, {"MCP-Protocol-Version": "2025-03-26"})
    assert reply.status == 200
    assert [(r["id"], r.get("error", {}).get("code")) for r in reply.body] == [
        (1, -32600),
        (2, -32600),
        (None, -32600),
        (3, None),
    ]


def test_batch_of_notifications_only_is_202():
    assert post([{"jsonrpc": "2.0", "method": "notifications/initialized"}]) == (202, {}, None)


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25", MODERN])
def test_batches_are_refused_after_2025_03_26(version):
    reply = post([{"jsonrpc": "2.0", "id": 1, "method": "ping"}], {"MCP-Protocol-Version": version})
    assert (reply.status, error_of(reply)["code"]) == (400, -32600)


def test_empty_batch_is_invalid_request():
    reply = post([])
    assert (reply.status, error_of(reply)["code"], reply.body["id"]) == (400, -32600, None)


def test_batch_needing_a_missing_scope_runs_nothing():
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "append", "arguments": {"line": "y"}}},
    ]
    reply = post(batch, context=READ_ONLY)
    assert reply.status == 403
    assert calls == []


# --- 2026-07-28 -------------------------------------------------------------------------------------


def test_discover():
    reply = modern("server/discover")
    assert reply.status == 200
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.body == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {
            "resultType": "complete",
            "supportedVersions": [MODERN, "2025-11-25", "2025-06-18", "2025-03-26"],
            "capabilities": {"tools": {}},
            "instructions": "Read Home first.",
            "ttlMs": 3_600_000,
            "cacheScope": "private",
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "robotwtf", "version": "0.1"}},
        },
    }


def test_client_info_is_optional():
    body_meta = meta()
    del body_meta["io.modelcontextprotocol/clientInfo"]
    body = {"jsonrpc": "2.0", "id": 5, "method": "server/discover", "params": {"_meta": body_meta}}
    assert post(body, modern_headers("server/discover")).status == 200


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"_meta": "not an object"},
        {"_meta": {"io.modelcontextprotocol/clientCapabilities": {}}},
        {"_meta": {"io.modelcontextprotocol/protocolVersion": MODERN}},
        {"_meta": {**meta(), "io.modelcontextprotocol/clientCapabilities": []}},
    ],
)
def test_missing_or_bad_meta_is_invalid_params_with_400(params):
    body = {"jsonrpc": "2.0", "id": 101, "method": "server/discover", "params": params}
    reply = post(body, modern_headers("server/discover"))
    assert (reply.status, error_of(reply)["code"], reply.body["id"]) == (400, -32602, 101)


def test_meta_version_differing_from_header_is_header_mismatch():
    body = {"jsonrpc": "2.0", "id": 302, "method": "server/discover", "params": {"_meta": meta("v999.0.0")}}
    reply = post(body, modern_headers("server/discover"))
    assert (reply.status, error_of(reply)["code"], reply.body["id"]) == (400, -32020, 302)


def test_modern_meta_without_version_header_is_header_mismatch():
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta()}}
    reply = post(body, {"Mcp-Method": "tools/list"})
    assert (reply.status, error_of(reply)["code"]) == (400, -32020)


def test_unsupported_version_lists_supported_ones():
    body = {"jsonrpc": "2.0", "id": 301, "method": "server/discover", "params": {"_meta": meta("v999.0.0")}}
    reply = post(body, modern_headers("server/discover", version="v999.0.0"))
    assert reply.status == 400
    assert reply.body == {
        "jsonrpc": "2.0",
        "id": 301,
        "error": {
            "code": -32022,
            "message": "Unsupported protocol version",
            "data": {"supported": [MODERN, "2025-11-25", "2025-06-18", "2025-03-26"], "requested": "v999.0.0"},
        },
    }


def test_unknown_version_header_on_a_legacy_body_is_unsupported_version():
    reply = post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, {"MCP-Protocol-Version": "2024-11-05"})
    assert (reply.status, error_of(reply)["code"]) == (400, -32022)
    assert error_of(reply)["data"]["requested"] == "2024-11-05"


@pytest.mark.parametrize(
    "headers",
    [
        {"MCP-Protocol-Version": MODERN},
        {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call"},
    ],
)
def test_missing_or_wrong_method_header_is_header_mismatch(headers):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta()}}
    reply = post(body, headers)
    assert (reply.status, error_of(reply)["code"]) == (400, -32020)


@pytest.mark.parametrize("name_header", [None, "append", "=?base64?not base64!?=", "=?base64?/w==?="])
def test_missing_or_wrong_name_header_is_header_mismatch(name_header):
    reply = modern("tools/call", {"name": "echo", "arguments": {"text": "x"}}, name=name_header)
    assert (reply.status, error_of(reply)["code"]) == (400, -32020)
    assert calls == []


def test_base64_encoded_name_header_is_decoded():
    encoded = "=?base64?" + base64.b64encode(b"echo").decode() + "?="
    reply = modern("tools/call", {"name": "echo", "arguments": {"text": "x"}}, name=encoded)
    assert reply.status == 200


def test_name_header_is_case_insensitive_by_name():
    params = {"name": "echo", "arguments": {"text": "x"}, "_meta": meta()}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    headers = {"mcp-protocol-version": MODERN, "MCP-METHOD": "tools/call", "mcp-name": "echo"}
    assert post(body, headers).status == 200


@pytest.mark.parametrize(
    "method",
    ["initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/list", "prompts/list", "no/such"],
)
def test_removed_and_unknown_methods_are_404(method):
    reply = modern(method, rpc_id=500)
    assert (reply.status, error_of(reply)["code"], reply.body["id"]) == (404, -32601, 500)


def test_modern_tools_list_carries_cache_hints_and_server_info():
    reply = modern("tools/list")
    result = reply.body["result"]
    assert result["resultType"] == "complete"
    assert (result["ttlMs"], result["cacheScope"]) == (3_600_000, "public")
    assert result["_meta"] == {"io.modelcontextprotocol/serverInfo": {"name": "robotwtf", "version": "0.1"}}
    assert [tool["name"] for tool in result["tools"]] == ["echo", "append", "broken", "liar"]
    assert "nextCursor" not in result
    assert modern("tools/list").body == reply.body


def test_tools_list_pages_with_cursors():
    small_pages = mcp.Server("robotwtf", "0.1", "", ORIGIN, (ECHO, APPEND, BROKEN), page_size=2)
    first = modern("tools/list", server=small_pages).body["result"]
    assert [tool["name"] for tool in first["tools"]] == ["echo", "append"]
    second = modern("tools/list", {"cursor": first["nextCursor"]}, server=small_pages).body["result"]
    assert [tool["name"] for tool in second["tools"]] == ["broken"]
    assert "nextCursor" not in second
    assert second["cacheScope"] == first["cacheScope"]


@pytest.mark.parametrize("cursor", ["nope", 3, ""])
def test_invalid_cursor_is_invalid_params(cursor):
    reply = modern("tools/list", {"cursor": cursor})
    assert (reply.status, error_of(reply)["code"]) == (400, -32602)


def test_discover_without_instructions_omits_them():
    quiet = mcp.Server("robotwtf", "0.1", "", ORIGIN, (ECHO,))
    assert "instructions" not in modern("server/discover", server=quiet).body["result"]


def test_modern_tools_call_passes_context_and_client_info():
    reply = modern("tools/call", {"name": "echo", "arguments": {"text": "hi"}}, name="echo")
    assert reply.status == 200
    assert reply.body["result"] == {
        "content": [{"type": "text", "text": "Echo: hi"}],
        "isError": False,
        "structuredContent": {"text": "hi", "length": 2},
        "resultType": "complete",
        "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "robotwtf", "version": "0.1"}},
    }
    call = calls[0][1]
    assert call.context.caller == "alice@demo"
    assert call.client_info == {"name": "test-client", "version": "1.0"}
    assert call.protocol_version == MODERN


def test_unknown_tool_is_invalid_params():
    reply = modern("tools/call", {"name": "nope", "arguments": {}}, name="nope")
    assert (reply.status, error_of(reply)) == (400, {"code": -32602, "message": "Unknown tool: nope"})


@pytest.mark.parametrize("params", [{"arguments": {}}, {"name": "echo", "arguments": ["text"]}])
def test_malformed_tools_call_is_invalid_params(params):
    reply = modern("tools/call", params, name=params.get("name"))
    assert (reply.status, error_of(reply)["code"]) == (400, -32602)


def test_non_string_tool_name_is_invalid_params_or_header_mismatch():
    reply = legacy("tools/call", {"name": 5})
    assert (reply.status, error_of(reply)["code"]) == (200, -32602)
    # Modern: no Mcp-Name header can equal a non-string name, and headers are checked first.
    reply = modern("tools/call", {"name": 5}, name="5")
    assert (reply.status, error_of(reply)["code"]) == (400, -32020)


@pytest.mark.parametrize(
    "arguments, problem",
    [
        ({}, "'text' is required"),
        ({"text": 5}, "'text' must be a string"),
        ({"text": ""}, "'text' must be at least 1 characters long"),
        ({"text": "x", "times": 0}, "'times' must be at least 1"),
        ({"text": "x", "times": 9}, "'times' must be at most 3"),
        ({"text": "x", "times": True}, "'times' must be an integer"),
        ({"text": "x", "mode": "quiet"}, "'mode' must be one of \"plain\", \"loud\""),
        ({"text": "x", "colour": "red"}, "'colour' is not a parameter of this tool"),
    ],
)
def test_bad_arguments_are_tool_errors_the_model_can_read(arguments, problem):
    reply = modern("tools/call", {"name": "echo", "arguments": arguments}, name="echo")
    assert reply.status == 200
    result = reply.body["result"]
    assert result["isError"] is True
    assert problem in result["content"][0]["text"]
    assert calls == []


def test_missing_arguments_member_means_no_arguments():
    reply = modern("tools/call", {"name": "echo"}, name="echo")
    assert "'text' is required" in reply.body["result"]["content"][0]["text"]


def test_tool_error_becomes_is_error_result():
    reply = modern("tools/call", {"name": "append", "arguments": {"line": "conflict"}}, name="append")
    result = reply.body["result"]
    assert (reply.status, result["isError"]) == (200, True)
    assert result["content"] == [{"type": "text", "text": "Revision conflict: read the page again and retry."}]
    assert "structuredContent" not in result


def test_crashing_tool_is_internal_error_without_details():
    reply = modern("tools/call", {"name": "broken", "arguments": {}}, name="broken")
    assert reply.status == 200
    assert error_of(reply) == {"code": -32603, "message": "Internal error"}
    assert "secret" not in json.dumps(reply.body)


def test_output_not_matching_its_schema_is_never_sent():
    reply = modern("tools/call", {"name": "liar", "arguments": {}}, name="liar")
    assert error_of(reply)["code"] == -32603
    assert "many" not in json.dumps(reply.body)


def test_modern_client_responses_are_refused():
    reply = post({"jsonrpc": "2.0", "id": 4, "result": {}}, {"MCP-Protocol-Version": MODERN})
    assert (reply.status, error_of(reply)["code"]) == (400, -32600)


# --- scopes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("send", [modern, legacy])
def test_write_tool_without_write_scope_is_a_403_challenge(send):
    kwargs = {"name": "append"} if send is modern else {}
    reply = send("tools/call", {"name": "append", "arguments": {"line": "x"}}, context=READ_ONLY, **kwargs)
    assert reply.status == 403
    challenge = reply.headers["WWW-Authenticate"]
    # MCP 2025-11-25 step-up: what the token holds and what it lacks, so re-authorizing keeps reading
    assert challenge.startswith('Bearer error="insufficient_scope", scope="wiki:read wiki:write", ')
    assert f'resource_metadata="{PRM_URL}"' in challenge
    assert reply.body["error"] == "insufficient_scope"
    assert calls == []


def test_read_only_token_reads_and_lists_every_tool():
    reply = modern("tools/call", {"name": "echo", "arguments": {"text": "x"}}, name="echo", context=READ_ONLY)
    assert reply.status == 200
    assert len(modern("tools/list", context=READ_ONLY).body["result"]["tools"]) == 4


def test_write_only_token_cannot_read():
    write_only = mcp.RequestContext(frozenset({"wiki:write"}), PRM_URL)
    reply = modern("tools/call", {"name": "echo", "arguments": {"text": "x"}}, name="echo", context=write_only)
    assert reply.status == 403
    assert 'scope="wiki:read wiki:write"' in reply.headers["WWW-Authenticate"]


def test_unknown_tool_needs_no_scope_to_be_refused():
    nothing = mcp.RequestContext(frozenset(), PRM_URL)
    reply = modern("tools/call", {"name": "nope", "arguments": {}}, name="nope", context=nothing)
    assert error_of(reply)["code"] == -32602


# --- registry and schema subset ---------------------------------------------------------------------


def make_tool(**changes):
    fields = dict(
        name="ok",
        title="T",
        description="D",
        input_schema={"type": "object"},
        annotations={},
        scope="wiki:read",
        handler=echo,
    )
    return mcp.Tool(**{**fields, **changes})


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "has space"},
        {"name": "x" * 129},
        {"input_schema": {"type": "string"}},
        {"input_schema": {"type": "object", "properties": {"p": {"type": "string", "pattern": "^a"}}}},
        {"input_schema": {"type": "object", "additionalProperties": {"type": "string"}}},
        {"input_schema": {"type": "object", "properties": {"p": {"type": "decimal"}}}},
        {"output_schema": {"type": "object", "oneOf": []}},
    ],
)
def test_registry_refuses_tools_it_cannot_honour(changes):
    with pytest.raises(ValueError):
        make_tool(**changes)


def test_registry_refuses_duplicate_names_and_bad_page_size():
    with pytest.raises(ValueError):
        mcp.Server("robotwtf", "0.1", "", ORIGIN, (ECHO, ECHO))
    with pytest.raises(ValueError):
        mcp.Server("robotwtf", "0.1", "", ORIGIN, (ECHO,), page_size=0)


def test_validate_nested_values():
    schema = {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}}, "note": {"type": ["string", "null"]}},
    }
    assert mcp.problems({"tags": ["a", "b"], "note": None}, schema) == []
    assert mcp.problems({"tags": ["a", 3]}, schema) == ["'tags[1]' must be a string"]
    assert mcp.problems({"note": 4}, schema) == ["'note' must be a string or a null"]
    assert mcp.problems([], schema) == ["the arguments must be an object"]
