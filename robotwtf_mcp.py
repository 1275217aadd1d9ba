"""MCP protocol core of robotwtf: one Streamable HTTP endpoint serving both protocol eras.

This module owns the transport-independent JSON-RPC layer of the MCP endpoint:

* deciding, per HTTP request and without any stored session, whether a message is served as
  MCP 2026-07-28 ("modern": per-request ``_meta``, ``server/discover``, ``resultType``,
  ``Mcp-Method``/``Mcp-Name`` headers, cache hints) or as a handshake-era revision
  (2025-11-25, 2025-06-18, 2025-03-26: ``initialize``, ``ping``, 2025-03-26 batches);
* validating JSON-RPC envelopes, the modern ``_meta`` and header rules, and tool arguments;
* dispatching ``initialize``, ``server/discover``, ``ping``, ``tools/list`` and ``tools/call``
  against a registry of :class:`Tool` objects, and shaping results for the era asked for;
* mapping every failure to its JSON-RPC error code and HTTP status, including the 403
  ``insufficient_scope`` challenge when the caller's token lacks a tool's scope.

The core is transport-independent: the caller authenticates the request, builds a
:class:`RequestContext`, and passes the raw body and headers to :func:`handle_http`, which returns
a :class:`Reply` (status, headers, JSON body or ``None``). Around it this module holds the wiki
tools (on robotwtf's storage API only), the endpoint's route, and the OAuth protected resource's
side: :func:`authenticate_bearer` checks every request's access token (issued by robotwtf_as) or
personal access token, without loading the authorization server. Spec references below are to docs/specification/<revision>/ in
modelcontextprotocol/modelcontextprotocol; /work/notes/MCP.md digests them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import http
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import bottle

import robotwtf_semantic as semantic
import robotwtf_store as store

log = logging.getLogger("robotwtf.mcp")

MODERN_VERSION = "2026-07-28"
LEGACY_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
SUPPORTED_VERSIONS = (MODERN_VERSION, *LEGACY_VERSIONS)
# basic/transports "Protocol Version Header": no header and nothing else to go by means 2025-03-26.
HEADERLESS_VERSION = "2025-03-26"
# 2025-03-26 basic/index "Batching" is the only revision with JSON-RPC batches (removed 2025-06-18).
BATCH_VERSION = "2025-03-26"

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
HEADER_MISMATCH = -32020
UNSUPPORTED_PROTOCOL_VERSION = -32022

# 2026-07-28 HTTP statuses for JSON-RPC errors: 400/404 are spec MUSTs (basic/index "_meta",
# streamable-http "Protocol Version Header", "Server Validation"); the rest follow the official
# Python SDK's table. Anything unlisted is sent with 200.
MODERN_ERROR_STATUS = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}

META_PROTOCOL_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"

# Methods whose Mcp-Name header mirrors a body parameter (2026-07-28 streamable-http
# "Standard Request Headers"); robotwtf implements only tools/call of them.
NAME_HEADER_SOURCES = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
_BASE64_SENTINEL = re.compile(r"\A=\?base64\?(?P<payload>.*)\?=\Z", re.S)
_TOOL_NAME = re.compile(r"\A[A-Za-z0-9_.-]{1,128}\Z")

LIST_TTL_MS = 3_600_000
JSON_HEADERS = {"Content-Type": "application/json"}


class Reply(NamedTuple):
    """What to send back: HTTP status, extra headers, and a JSON-able body (None = no body; a str is
    sent as it is: the HTML page for browsers)."""

    status: int
    headers: dict[str, str]
    body: Any


@dataclasses.dataclass(frozen=True)
class RequestContext:
    """Who is calling, as established by the caller's bearer authentication.

    ``scopes`` are the effective scopes (granted and still allowed by the user's role);
    ``resource_metadata_url`` names the wiki's RFC 9728 metadata for WWW-Authenticate;
    ``caller`` is passed through untouched to tool handlers (user, wiki, grant...).
    """

    scopes: frozenset[str]
    resource_metadata_url: str
    caller: Any = None
    # Called with the number of state-changing tool calls a request carries, before any of them
    # runs; raises store.RateLimited (answered 429 + Retry-After) when the caller has written too much.
    admit_writes: Callable[[int], None] | None = None


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """One invocation handed to a tool handler."""

    arguments: dict[str, Any]
    context: RequestContext
    client_info: Mapping[str, Any] | None
    protocol_version: str


@dataclasses.dataclass(frozen=True)
class ToolResult:
    """A handler's answer: text for the model, optional structured data, error flag."""

    text: str
    structured: Any = None
    is_error: bool = False


class ToolError(Exception):
    """Raised by a handler for a failure the model can act on; becomes ``isError: true``."""


@dataclasses.dataclass(frozen=True)
class Tool:
    """One entry of the tools registry."""

    name: str
    title: str
    description: str
    input_schema: dict[str, Any]
    annotations: dict[str, Any]
    scope: str
    handler: Callable[[ToolCall], ToolResult]
    output_schema: dict[str, Any] | None = None
    accepts: Callable[[Any], bool] = dataclasses.field(init=False, repr=False, compare=False)
    output_conforms: Callable[[Any], bool] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # server/tools "Tool Names": 1-128 characters of [A-Za-z0-9_.-].
        if not _TOOL_NAME.match(self.name):
            raise ValueError(f"tool name {self.name!r} is not a valid MCP tool name")
        if self.input_schema.get("type") != "object":
            raise ValueError(f"tool {self.name}: inputSchema must have type object at its root")
        check_schema(self.input_schema)
        object.__setattr__(self, "accepts", compile_schema(self.input_schema))
        if self.output_schema is not None:
            check_schema(self.output_schema)
            object.__setattr__(self, "output_conforms", compile_schema(self.output_schema))

    def describe(self, version: str) -> dict[str, Any]:
        """The tool as tools/list shows it to a client speaking ``version``."""
        if version == "2025-03-26":
            # 2025-03-26 Tool has no title or outputSchema (both added in 2025-06-18);
            # its ToolAnnotations already had title.
            return {
                "name": self.name,
                "description": self.description,
                "inputSchema": self.input_schema,
                "annotations": {"title": self.title, **self.annotations},
            }
        described = {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": self.input_schema,
            "annotations": self.annotations,
        }
        if self.output_schema is not None:
            described["outputSchema"] = self.output_schema
        return described


@dataclasses.dataclass(frozen=True)
class Server:
    """The endpoint's identity, instructions and tools registry (order = tools/list order)."""

    name: str
    version: str
    instructions: str
    public_origin: str
    tools: tuple[Tool, ...]
    page_size: int = 100
    tools_by_name: dict[str, Tool] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {tool.name: tool for tool in self.tools}
        if len(by_name) != len(self.tools):
            raise ValueError("tool names must be unique")
        if self.page_size < 1:
            raise ValueError("page_size must be positive")
        object.__setattr__(self, "tools_by_name", by_name)

    def info(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version}


class ProtocolError(Exception):
    """A JSON-RPC error to answer with."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class InsufficientScope(Exception):
    """The token lacks scopes the request needs; answered with HTTP 403 for the whole POST.
    `scopes` is everything to ask for (what the token holds plus what it lacks), `missing` the lack."""

    def __init__(self, scopes: list[str], missing: list[str]) -> None:
        super().__init__(" ".join(missing))
        self.scopes = scopes
        self.missing = missing


@dataclasses.dataclass(frozen=True)
class Message:
    """A JSON-RPC message whose envelope is valid."""

    kind: str  # "request", "notification" or "response"
    id: str | int | None
    method: str | None
    params: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Exchange:
    """Everything a method handler may need about the request being served."""

    server: Server
    context: RequestContext
    version: str
    client_info: Mapping[str, Any] | None


# --- HTTP entry point ------------------------------------------------------------------------


def handle_http(
    server: Server, http_method: str, body: bytes, headers: Mapping[str, str], context: RequestContext
) -> Reply:
    """Answer one HTTP request to the MCP endpoint (already authenticated by the caller)."""
    if http_method != "POST":
        # No server-to-client GET stream and no sessions to DELETE in either era we serve
        # (2025-11-25 transports "Listening for Messages", 2026-07-28 "Backward Compatibility").
        return Reply(405, {"Allow": "POST"}, None)
    lowered = {name.lower(): value for name, value in headers.items()}
    origin = lowered.get("origin")
    if origin is not None and origin != server.public_origin:
        # streamable-http "Security": an invalid Origin gets 403; body MAY be an id-less error.
        return _error_reply(ProtocolError(INVALID_REQUEST, "Origin not allowed"), None, 403)
    if not _accepts_json(lowered.get("accept")):
        return _error_reply(ProtocolError(INVALID_REQUEST, "Accept must allow application/json"), None, 406)
    content_type = lowered.get("content-type")
    if content_type is not None and content_type.split(";")[0].strip().lower() != "application/json":
        return _error_reply(ProtocolError(INVALID_REQUEST, "Content-Type must be application/json"), None, 415)
    try:
        payload = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return _error_reply(ProtocolError(PARSE_ERROR, "Parse error: the body is not valid JSON"), None, 400)
    try:
        if isinstance(payload, list):
            return _handle_batch(server, payload, lowered, context)
        return _handle_single(server, payload, lowered, context)
    except InsufficientScope as missing:
        return _insufficient_scope_reply(missing, context)
    except store.RateLimited as limited:
        return rate_limited_reply(limited)


def rate_limited_reply(limited: store.RateLimited) -> Reply:
    # CONTRACT §5: a limited request gets HTTP 429 with Retry-After (RFC 6585 §4), as a whole.
    body = {"error": "rate_limited", "error_description": limited.message}
    return Reply(429, {**JSON_HEADERS, "Retry-After": str(limited.retry_after)}, body)


def _accepts_json(accept: str | None) -> bool:
    # Clients MUST send both JSON and SSE types, but Claude sends "*/*" (claude-ai-mcp#76):
    # refuse only an Accept header that rules JSON out.
    if accept is None:
        return True
    ranges = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return bool(ranges & {"application/json", "application/*", "*/*"})


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _insufficient_scope_reply(refusal: InsufficientScope, context: RequestContext) -> Reply:
    # basic/authorization "Runtime Insufficient Scope Errors" (2025-11-25 "Step-Up Authorization
    # Flow"): the challenge names every scope the call needs, those already granted included, so
    # a client that re-authorizes with exactly that set keeps what it could do before.
    needed = " ".join(refusal.scopes)
    description = f"This operation needs the {' '.join(refusal.missing)} scope; reconnect and grant {needed}."
    challenge = (
        f'Bearer error="insufficient_scope", scope="{needed}", '
        f'resource_metadata="{context.resource_metadata_url}", error_description="{description}"'
    )
    return Reply(
        403,
        {**JSON_HEADERS, "WWW-Authenticate": challenge},
        {"error": "insufficient_scope", "error_description": description},
    )


# --- era selection and envelopes ---------------------------------------------------------------


def select_era(payload: Any, headers: Mapping[str, str]) -> str | None:
    """The legacy version to serve ``payload`` with, or None for the modern (2026-07-28) rules.

    The MCP-Protocol-Version header decides when present, as in the official Python SDK: a
    handshake-era version selects that revision, anything else the modern validation. Without
    the header, a body carrying modern ``_meta`` is modern (and fails the header check);
    anything else is a 2025-03-26 client, which predates the header.
    """
    header = headers.get("mcp-protocol-version")
    if header in LEGACY_VERSIONS:
        return header
    params = payload.get("params") if isinstance(payload, dict) else None
    if header is None and _meta_version(params) is None:
        return HEADERLESS_VERSION
    return None


def _meta_version(params: Any) -> Any:
    meta = params.get("_meta") if isinstance(params, dict) else None
    return meta.get(META_PROTOCOL_VERSION) if isinstance(meta, dict) else None


def parse_message(payload: Any) -> Message:
    """Validate a JSON-RPC 2.0 envelope; ProtocolError(-32600) if it is not one."""
    if not isinstance(payload, dict):
        raise ProtocolError(INVALID_REQUEST, "Invalid request: a JSON-RPC message must be an object")
    if payload.get("jsonrpc") != "2.0":
        raise ProtocolError(INVALID_REQUEST, 'Invalid request: "jsonrpc" must be "2.0"')
    has_id = "id" in payload
    message_id = payload.get("id")
    # basic/index "Requests": the id is a string or integer and MUST NOT be null.
    if has_id and (isinstance(message_id, bool) or not isinstance(message_id, (str, int))):
        raise ProtocolError(INVALID_REQUEST, "Invalid request: id must be a string or an integer")
    if "method" not in payload:
        if has_id and ("result" in payload or "error" in payload):
            return Message("response", message_id, None, {})
        raise ProtocolError(INVALID_REQUEST, 'Invalid request: "method" is missing')
    method = payload["method"]
    if not isinstance(method, str):
        raise ProtocolError(INVALID_REQUEST, 'Invalid request: "method" must be a string')
    params = payload.get("params", {})
    if not isinstance(params, dict):
        raise ProtocolError(INVALID_REQUEST, 'Invalid request: "params" must be an object')
    return Message("request" if has_id else "notification", message_id, method, params)


def _readable_id(payload: Any) -> str | int | None:
    # basic/index "Error Responses": echo the id unless it could not be read.
    if isinstance(payload, dict):
        message_id = payload.get("id")
        if isinstance(message_id, (str, int)) and not isinstance(message_id, bool):
            return message_id
    return None


def check_modern_request(message: Message, headers: Mapping[str, str]) -> str:
    """Run the 2026-07-28 validation ladder; return the protocol version or raise ProtocolError.

    Order follows the SDK and the conformance suite: an unknown version header, then the
    required ``_meta`` fields (-32602), then header/body agreement (-32020), then the
    ``_meta`` version itself (-32022).
    """
    header_version = headers.get("mcp-protocol-version")
    if header_version is not None and header_version != MODERN_VERSION and _meta_version(message.params) is None:
        raise _unsupported_version(header_version)
    meta = message.params.get("_meta")
    # basic/index "_meta", per-request protocol fields: missing ones are -32602 with HTTP 400.
    if not isinstance(meta, dict):
        raise ProtocolError(INVALID_PARAMS, f"params._meta is required and must carry {META_PROTOCOL_VERSION}")
    missing = [key for key in (META_PROTOCOL_VERSION, META_CLIENT_CAPABILITIES) if key not in meta]
    if missing:
        raise ProtocolError(INVALID_PARAMS, f"params._meta is missing {', '.join(missing)}")
    if not isinstance(meta[META_CLIENT_CAPABILITIES], dict):
        raise ProtocolError(INVALID_PARAMS, f"params._meta {META_CLIENT_CAPABILITIES} must be an object")
    version = meta[META_PROTOCOL_VERSION]
    _check_standard_headers(message, headers, version)
    if version != MODERN_VERSION:
        raise _unsupported_version(version)
    return version


def _unsupported_version(requested: Any) -> ProtocolError:
    return ProtocolError(
        UNSUPPORTED_PROTOCOL_VERSION,
        "Unsupported protocol version",
        {"supported": list(SUPPORTED_VERSIONS), "requested": requested},
    )


def _check_standard_headers(message: Message, headers: Mapping[str, str], version: Any) -> None:
    # streamable-http "Server Validation": missing or mismatching headers are -32020 (HTTP 400).
    header_version = headers.get("mcp-protocol-version")
    if header_version is None or header_version != version:
        raise ProtocolError(HEADER_MISMATCH, "Header mismatch: MCP-Protocol-Version does not match params._meta")
    if headers.get("mcp-method") != message.method:
        raise ProtocolError(HEADER_MISMATCH, "Header mismatch: Mcp-Method does not match the method")
    source = NAME_HEADER_SOURCES.get(message.method)
    if source is not None and message.params.get(source) is not None:
        # "Value Encoding": a =?base64?...?= value is decoded before comparing.
        if _decode_header_value(headers.get("mcp-name")) != message.params[source]:
            raise ProtocolError(HEADER_MISMATCH, f"Header mismatch: Mcp-Name does not match params.{source}")


def _decode_header_value(value: str | None) -> str | None:
    if value is None:
        return None
    match = _BASE64_SENTINEL.match(value)
    if match is None:
        return value
    try:
        return base64.b64decode(match["payload"], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


# --- single messages and batches --------------------------------------------------------------


def _handle_single(server: Server, payload: Any, headers: Mapping[str, str], context: RequestContext) -> Reply:
    legacy_version = select_era(payload, headers)
    modern = legacy_version is None
    try:
        message = parse_message(payload)
    except ProtocolError as error:
        return _error_reply(error, _readable_id(payload), 400)
    if message.kind == "response":
        # 2026-07-28 streamable-http "Sending Messages": clients MUST NOT send responses.
        if modern:
            return _error_reply(ProtocolError(INVALID_REQUEST, "Clients may not send responses"), message.id, 400)
        return Reply(202, {}, None)
    if message.kind == "notification":
        # Accepted notifications get 202 in every revision; none needs an action from us.
        return Reply(202, {}, None)
    try:
        version = check_modern_request(message, headers) if modern else legacy_version
    except ProtocolError as error:
        return _error_reply(error, message.id, MODERN_ERROR_STATUS.get(error.code, 200))
    _require_scopes(server, [message], context)
    _admit_writes(server, [message], context)
    exchange = Exchange(server, context, version, _client_info(message) if modern else None)
    response = dispatch(exchange, message)
    status = MODERN_ERROR_STATUS.get(response["error"]["code"], 200) if modern and "error" in response else 200
    return Reply(status, dict(JSON_HEADERS), response)


def _handle_batch(server: Server, items: list[Any], headers: Mapping[str, str], context: RequestContext) -> Reply:
    if headers.get("mcp-protocol-version", BATCH_VERSION) != BATCH_VERSION:
        error = ProtocolError(INVALID_REQUEST, f"JSON-RPC batches exist only in protocol version {BATCH_VERSION}")
        return _error_reply(error, None, 400)
    if not items:
        return _error_reply(ProtocolError(INVALID_REQUEST, "Invalid request: empty batch"), None, 400)
    parsed = [_parse_batch_item(item) for item in items]
    # Every scope the batch needs, and its writes' rate limit, are checked before any of it runs.
    _require_scopes(server, [entry for entry in parsed if isinstance(entry, Message)], context)
    _admit_writes(server, [entry for entry in parsed if isinstance(entry, Message)], context)
    exchange = Exchange(server, context, BATCH_VERSION, None)
    responses = []
    for entry in parsed:
        if isinstance(entry, dict):
            responses.append(entry)
        elif entry.kind != "request":
            continue
        elif entry.method == "initialize":
            # 2025-03-26 basic/lifecycle "Initialization": initialize MUST NOT be part of a batch.
            error = ProtocolError(INVALID_REQUEST, "initialize cannot be sent in a batch")
            responses.append(_error_json(error, entry.id))
        else:
            responses.append(dispatch(exchange, entry))
    if not responses:
        return Reply(202, {}, None)
    return Reply(200, dict(JSON_HEADERS), responses)


def _parse_batch_item(item: Any) -> Message | dict[str, Any]:
    """The item's Message, or the error response an invalid item gets."""
    try:
        return parse_message(item)
    except ProtocolError as error:
        return _error_json(error, _readable_id(item))


def _require_scopes(server: Server, messages: list[Message], context: RequestContext) -> None:
    """Raise InsufficientScope if the token lacks a scope the requests need."""
    needed = set()
    for message in messages:
        name = message.params.get("name")
        if message.kind == "request" and message.method == "tools/call" and isinstance(name, str):
            tool = server.tools_by_name.get(name)
            if tool is not None:
                needed.add(tool.scope)
    missing = sorted(needed - context.scopes)
    if missing:
        raise InsufficientScope(sorted(needed | context.scopes), missing)


def _admit_writes(server: Server, messages: list[Message], context: RequestContext) -> None:
    """Charge the caller's write budget for the calls of tools that change something."""
    writes = 0
    for message in messages:
        name = message.params.get("name")
        if message.kind == "request" and message.method == "tools/call" and isinstance(name, str):
            tool = server.tools_by_name.get(name)
            writes += tool is not None and not tool.annotations.get("readOnlyHint", False)
    if writes and context.admit_writes is not None:
        context.admit_writes(writes)


def _client_info(message: Message) -> Mapping[str, Any] | None:
    info = message.params["_meta"].get(META_CLIENT_INFO)
    return info if isinstance(info, dict) else None


def _error_json(error: ProtocolError, message_id: str | int | None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": message_id, "error": error.to_json()}


def _error_reply(error: ProtocolError, message_id: str | int | None, status: int) -> Reply:
    return Reply(status, dict(JSON_HEADERS), _error_json(error, message_id))


# --- dispatch and methods ---------------------------------------------------------------------


def dispatch(exchange: Exchange, message: Message) -> dict[str, Any]:
    """Answer one valid request with a JSON-RPC response object (result or error)."""
    modern = exchange.version == MODERN_VERSION
    methods = MODERN_METHODS if modern else LEGACY_METHODS
    handler = methods.get(message.method)
    try:
        if handler is None:
            raise ProtocolError(METHOD_NOT_FOUND, f"Method not found: {message.method}")
        result = handler(exchange, message.params)
    except ProtocolError as error:
        return _error_json(error, message.id)
    if modern:
        # basic/index "ResultType" (MUST) and per-response serverInfo (SHOULD).
        result = {**result, "resultType": "complete", "_meta": {META_SERVER_INFO: exchange.server.info()}}
    return {"jsonrpc": "2.0", "id": message.id, "result": result}


def _initialize(exchange: Exchange, params: dict[str, Any]) -> dict[str, Any]:
    requested = params.get("protocolVersion")
    if not isinstance(requested, str):
        raise ProtocolError(INVALID_PARAMS, "initialize needs params.protocolVersion (a string)")
    # basic/lifecycle "Version Negotiation": echo a supported version, else offer our latest.
    version = requested if requested in LEGACY_VERSIONS else LEGACY_VERSIONS[0]
    result = {"protocolVersion": version, "capabilities": {"tools": {}}, "serverInfo": exchange.server.info()}
    if exchange.server.instructions:
        result["instructions"] = exchange.server.instructions
    return result


def _ping(exchange: Exchange, params: dict[str, Any]) -> dict[str, Any]:
    return {}


def _discover(exchange: Exchange, params: dict[str, Any]) -> dict[str, Any]:
    # server/discover; caching "Cacheable Results": ttlMs and cacheScope are required. Private
    # because instructions may describe the caller's wiki.
    result = {
        "supportedVersions": list(SUPPORTED_VERSIONS),
        "capabilities": {"tools": {}},
        "ttlMs": LIST_TTL_MS,
        "cacheScope": "private",
    }
    if exchange.server.instructions:
        result["instructions"] = exchange.server.instructions
    return result


def _tools_list(exchange: Exchange, params: dict[str, Any]) -> dict[str, Any]:
    tools = exchange.server.tools
    start = 0
    cursor = params.get("cursor")
    if cursor is not None:
        # The cursor is the name of the next tool: stable across restarts. Unknown ones are
        # -32602 (server/utilities/pagination "Error Handling").
        names = [tool.name for tool in tools]
        if not isinstance(cursor, str) or cursor not in names:
            raise ProtocolError(INVALID_PARAMS, "Invalid cursor")
        start = names.index(cursor)
    page = tools[start : start + exchange.server.page_size]
    result: dict[str, Any] = {"tools": [tool.describe(exchange.version) for tool in page]}
    following = start + exchange.server.page_size
    if following < len(tools):
        result["nextCursor"] = tools[following].name
    if exchange.version == MODERN_VERSION:
        # The list is the same for every caller, hence public (caching "Choosing a Cache Scope").
        result.update(ttlMs=LIST_TTL_MS, cacheScope="public")
    return result


def _tools_call(exchange: Exchange, params: dict[str, Any]) -> dict[str, Any]:
    name = params.get("name")
    if not isinstance(name, str):
        raise ProtocolError(INVALID_PARAMS, "tools/call needs params.name (a string)")
    tool = exchange.server.tools_by_name.get(name)
    if tool is None:
        raise ProtocolError(INVALID_PARAMS, f"Unknown tool: {name}")
    arguments = params.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise ProtocolError(INVALID_PARAMS, "tools/call params.arguments must be an object")
    if not tool.accepts(arguments):
        found = problems(arguments, tool.input_schema)
        # server/tools "Error Handling": input validation errors are tool execution errors.
        sentence = f"Invalid arguments for {name}: {'; '.join(found)}."
        return _call_result(exchange, ToolResult(sentence, is_error=True))
    call = ToolCall(arguments, exchange.context, exchange.client_info, exchange.version)
    try:
        outcome = tool.handler(call)
    except ToolError as failure:
        return _call_result(exchange, ToolResult(str(failure), is_error=True))
    except Exception:
        log.exception("tool %s failed", name)
        raise ProtocolError(INTERNAL_ERROR, "Internal error") from None
    if not outcome.is_error and tool.output_schema is not None and not tool.output_conforms(outcome.structured):
        # server/tools "Output Schema": structured results MUST conform; never send one that doesn't.
        log.error("tool %s produced structuredContent that does not match its outputSchema", name)
        raise ProtocolError(INTERNAL_ERROR, "Internal error")
    return _call_result(exchange, outcome)


def _call_result(exchange: Exchange, outcome: ToolResult) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": outcome.text}], "isError": outcome.is_error}
    # structuredContent arrived with 2025-06-18 (changelog "structured tool output").
    if outcome.structured is not None and exchange.version != "2025-03-26":
        result["structuredContent"] = outcome.structured
    return result


LEGACY_METHODS: dict[str, Callable[[Exchange, dict[str, Any]], dict[str, Any]]] = {
    "initialize": _initialize,
    "ping": _ping,
    "tools/list": _tools_list,
    "tools/call": _tools_call,
}
# 2026-07-28 removed initialize and ping (changelog "Major changes" 2 and 5): they are -32601.
MODERN_METHODS: dict[str, Callable[[Exchange, dict[str, Any]], dict[str, Any]]] = {
    "server/discover": _discover,
    "tools/list": _tools_list,
    "tools/call": _tools_call,
}


# --- JSON Schema subset -------------------------------------------------------------------------

# The keywords robotwtf's tool schemas use. check_schema refuses any other, so a schema can never
# silently claim a constraint that problems() does not enforce.
SCHEMA_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "enum",
        "minLength", "maxLength", "minimum", "maximum", "description", "title", "default",
    }
)
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "integer": (int,), "number": (int, float),
    "boolean": (bool,), "null": (type(None),),
}


def _allowed_types(types: Any) -> tuple[tuple[type, ...] | None, bool]:
    """The Python types a JSON Schema "type" admits, and whether booleans are among them (bool is
    an int in Python, never an integer or number in JSON)."""
    if types is None:
        return None, True
    names = types if isinstance(types, list) else [types]
    return tuple(kind for name in names for kind in _PYTHON_TYPES[name]), "boolean" in names


def _has_type(value: Any, types: Any) -> bool:
    allowed, bools = _allowed_types(types)
    return allowed is None or isinstance(value, allowed) and (bools or not isinstance(value, bool))


_ARTICLES = {"object": "an object", "array": "an array", "integer": "an integer"}


def check_schema(schema: Any, where: str = "schema") -> None:
    """Raise ValueError unless ``schema`` uses only the supported JSON Schema subset."""
    if not isinstance(schema, dict):
        raise ValueError(f"{where} must be an object")
    unknown = set(schema) - SCHEMA_KEYWORDS
    if unknown:
        raise ValueError(f"{where} uses unsupported keywords: {', '.join(sorted(unknown))}")
    types = schema.get("type", [])
    for name in types if isinstance(types, list) else [types]:
        if name not in _PYTHON_TYPES:
            raise ValueError(f"{where} has unknown type {name!r}")
    for name, sub in schema.get("properties", {}).items():
        check_schema(sub, f"{where}.properties.{name}")
    if "items" in schema:
        check_schema(schema["items"], f"{where}.items")
    if not isinstance(schema.get("additionalProperties", True), bool):
        raise ValueError(f"{where}.additionalProperties must be true or false")


def compile_schema(schema: dict[str, Any]) -> Callable[[Any], bool]:
    """Whether a value satisfies ``schema``: the rules of :func:`problems` without building any
    sentence, decided once per schema, so a check costs only the tests the schema has. Tools
    compile theirs at import; every tools/call checks its arguments and structured result."""
    allowed, bools = _allowed_types(schema.get("type"))
    enum = schema.get("enum")
    value_check = _value_check(schema)
    if enum is None and value_check is None:
        if allowed is None:
            return lambda value: True
        if bools:
            return lambda value: isinstance(value, allowed)
        return lambda value: isinstance(value, allowed) and value is not True and value is not False

    def check(value: Any) -> bool:
        if allowed is not None and (not isinstance(value, allowed) or not bools and (value is True or value is False)):
            return False
        if enum is not None and value not in enum:
            return False
        return value_check is None or value_check(value)

    return check


def _value_check(schema: dict[str, Any]) -> Callable[[Any], bool] | None:
    """The checks that depend on what kind of value arrived (lengths, ranges, items, members), or
    None when the schema has none."""
    items = compile_schema(schema["items"]) if "items" in schema else None
    check_object = _object_check(schema)
    if items is None and check_object is None and not schema.keys() & {"minLength", "maxLength", "minimum", "maximum"}:
        return None
    min_length, max_length = schema.get("minLength", 0), schema.get("maxLength", math.inf)
    minimum, maximum = schema.get("minimum", -math.inf), schema.get("maximum", math.inf)

    def check(value: Any) -> bool:
        if isinstance(value, str):
            return min_length <= len(value) <= max_length
        if isinstance(value, dict):
            return check_object is None or check_object(value)
        if isinstance(value, list):
            return items is None or all(map(items, value))
        if isinstance(value, (int, float)) and value is not True and value is not False:
            return minimum <= value <= maximum
        return True

    return check


def _object_check(schema: dict[str, Any]) -> Callable[[dict[str, Any]], bool] | None:
    required = tuple(schema.get("required", ()))
    properties = {name: compile_schema(sub) for name, sub in schema.get("properties", {}).items()}
    closed = schema.get("additionalProperties", True) is False
    if not (required or properties or closed):
        return None

    def check(value: dict[str, Any]) -> bool:
        for name in required:
            if name not in value:
                return False
        for name, item in value.items():
            sub = properties.get(name)
            if sub is None:
                if closed:
                    return False
            elif not sub(item):
                return False
        return True

    return check


def problems(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """What is wrong with ``value`` against a schema of the supported subset, as sentences for a
    model; [] when nothing is."""
    label = f"'{where}'" if where else "the arguments"
    types = schema.get("type")
    if types is not None:
        if not _has_type(value, types):
            allowed = types if isinstance(types, list) else [types]
            wanted = " or ".join(_ARTICLES.get(name, f"a {name}") for name in allowed)
            return [f"{label} must be {wanted}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{label} must be one of {', '.join(json.dumps(choice) for choice in schema['enum'])}"]
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return [f"{label} must be at least {schema['minLength']} characters long"]
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return [f"{label} must be at most {schema['maxLength']} characters long"]
    if _has_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            return [f"{label} must be at least {schema['minimum']}"]
        if "maximum" in schema and value > schema["maximum"]:
            return [f"{label} must be at most {schema['maximum']}"]
    if isinstance(value, list) and "items" in schema:
        return [p for i, item in enumerate(value) for p in problems(item, schema["items"], f"{where}[{i}]")]
    if isinstance(value, dict):
        return _validate_object(value, schema, where)
    return []


def _validate_object(value: dict[str, Any], schema: dict[str, Any], where: str) -> list[str]:
    prefix = f"{where}." if where else ""
    properties = schema.get("properties", {})
    found = [f"'{prefix}{name}' is required" for name in schema.get("required", []) if name not in value]
    for name, item in value.items():
        if name in properties:
            found += problems(item, properties[name], f"{prefix}{name}")
        elif schema.get("additionalProperties", True) is False:
            found.append(f"'{prefix}{name}' is not a parameter of this tool")
    return found


# --- the wiki tools (CONTRACT §5: names and parameters are fixed) -------------------------------
# Handlers call only robotwtf's storage API; wiki rules (paths, revisions, quotas, links) live
# there. Each returns text written for a model (headers, "Revision: <id>", [[links]]) and
# structuredContent matching its outputSchema; storage errors become isError results.

SERVER_NAME = "robotwtf"
INSTRUCTIONS = """\
This is a robotwtf wiki: Markdown pages shared by people and their AI agents, with full history.
Pages have paths like "Home" or "Projects/Robot Arm" (case-insensitive), link to each other with
[[Path]] or [[Path|text]], and get a new revision id on every change.

How to work in this wiki:
1. Start with read_note path="Home" and get_recent_changes to learn what is here and what people
   are doing; if an "Agent Guide" page exists, read it and follow its conventions.
2. Find pages with search_notes (words, "exact phrases", prefix*) and list_notes (by prefix,
   category, tag or date) before creating new ones, so you don't duplicate a page.
3. Read a page before you change it and pass the revision you read: edit_note and write_note
   refuse a revision that is no longer current, so nobody's work is overwritten. On a conflict,
   read the page again, redo your change on the new text, and retry.
4. Prefer edit_note (replace one exact snippet) for small changes; use write_note with the
   page's revision to rewrite a whole page, and write_note without a revision to create one.
5. Give every change a short commit_message saying why; it is shown in the history.
6. rename_note keeps links working by rewriting them. delete_note keeps the page's history (a
   person can restore it), but delete_attachment removes the file for good: ask the user before
   deleting anything."""

TOOL_ANNOTATIONS = {
    "read": {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True, "openWorldHint": False},
    "change": {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": False, "openWorldHint": False},
    "move": {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": True, "openWorldHint": False},
    "remove": {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": True, "openWorldHint": False},
}


def _string(description: str, min_length: int = 0, max_length: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "description": description}
    if min_length:
        schema["minLength"] = min_length
    if max_length is not None:
        schema["maxLength"] = max_length
    return schema


def _params(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object schema with no other properties allowed (unknown arguments are reported)."""
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
        "additionalProperties": False,
    }


def _output(**properties: Any) -> dict[str, Any]:
    """An output schema whose every listed property is always present."""
    return {"type": "object", "properties": properties, "required": list(properties)}


PATH = _string(
    "Page path, e.g. \"Home\" or \"Projects/Robot Arm\": '/'-separated segments, case-insensitive, "
    "no leading '/', no file extension.",
    1,
    255,
)
COMMIT_MESSAGE = _string("Optional short note saying why; recorded in the page history.")
FILENAME = _string("Attachment file name, e.g. \"diagram.png\".", 1, 255)
LIMIT_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 200}

STR = {"type": "string"}
TIME = {"type": "string", "description": "ISO 8601 UTC time"}
STRINGS = {"type": "array", "items": STR}
REVISION_OUT = {"type": "string", "description": "the page's current revision id; pass it when writing"}
CHANGE_OUT = {
    "type": "object",
    "properties": {
        "revision": STR, "path": STR, "kind": STR, "author": STR, "via": STR, "message": STR,
        "timestamp": TIME, "attachment": {"type": ["string", "null"]},
    },
    "required": ["revision", "path", "kind", "author", "via", "message", "timestamp"],
}
NOTE_OUT = {
    "type": "object",
    "properties": {
        "path": STR, "title": STR, "category": STR, "tags": STRINGS, "words": {"type": "integer"},
        "revision": STR, "updated_at": TIME,
    },
    "required": ["path", "title", "category", "tags", "words", "revision", "updated_at"],
}
ATTACHMENT_OUT = {
    "type": "object",
    "properties": {"filename": STR, "size": {"type": "integer"}, "content_type": STR, "updated_at": TIME},
    "required": ["filename", "size", "content_type", "updated_at"],
}
LINK_OUT = {"type": "object", "properties": {"path": STR, "exists": {"type": "boolean"}}, "required": ["path", "exists"]}


@dataclasses.dataclass(frozen=True)
class Wiki:
    """The wiki a tool call acts on, and who acts: built from the authenticated caller."""

    db: Any
    wiki_id: int
    call: ToolCall

    @property
    def author(self):
        """Made (and validated) only by the tools that change something."""
        return _author(self.call.context.caller.caller, self.call.client_info)

    @property
    def quotas(self):
        return self.call.context.caller.cfg.quotas


def _wiki(call: ToolCall) -> Wiki:
    access = call.context.caller
    return Wiki(access.db, access.caller.wiki_id, call)


def _author(caller, client_info: Mapping[str, Any] | None):
    """Who a revision names: the user, and `mcp:<client>` or `token:<name>`. For OAuth clients the
    client is the modern request's clientInfo name when sent (display only, basic/index "_meta"),
    else the name the client registered (the handshake era sends clientInfo only on initialize)."""
    kind, _, name = caller.via.partition(":")
    if kind == "token":
        return store.Author.token(caller.user_did, name)
    announced = client_info.get("name") if client_info else None
    return store.Author.mcp(caller.user_did, announced if isinstance(announced, str) and announced.strip() else name)


def _iso_time(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _human_time(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def _who(revision) -> str:
    return f"{'@' + revision.author_handle if revision.author_handle else revision.author_did} via {revision.via}"


def _change_json(revision) -> dict[str, Any]:
    return {
        "revision": revision.id,
        "path": revision.path,
        "kind": revision.kind,
        "author": revision.author_handle or revision.author_did,
        "via": revision.via,
        "message": revision.message,
        "timestamp": _iso_time(revision.created_at),
        "attachment": revision.attachment,
    }


def _change_lines(revision, show_path: bool) -> list[str]:
    where = f"{revision.path} | " if show_path else ""
    moved = f" (from {revision.old_path})" if revision.old_path else ""
    attached = f" {revision.attachment}" if revision.attachment else ""
    return [
        f"- {revision.id} | {_human_time(revision.created_at)} | {where}{revision.kind}{attached}{moved} | {_who(revision)}",
        f"  {revision.message}",
    ]


def _metadata_line(page) -> str:
    fields = [
        f"{key}: {', '.join(value) if isinstance(value, list) else value}"
        for key, value in page.meta.items()
        if key != "title"
    ]
    return " | ".join(fields)


def _link_list(links) -> str:
    """[[A]], [[B]] (missing), ...: links are paths or LinkTargets."""
    return ", ".join(
        f"[[{link}]]" if isinstance(link, str) else f"[[{link.path}]]{'' if link.exists else ' (missing)'}"
        for link in links
    ) or "(none)"


# Each handler: (call) -> ToolResult. Storage errors (store.RobotError) are turned into isError
# results by _guarded; a missing thing also gets the names of the tools that find things.

NOT_FOUND_HINT = ("Use list_notes or search_notes to find pages, get_history for a page's revisions and "
                  "list_attachments for its files.")


def read_note(call: ToolCall) -> ToolResult:
    wiki = _wiki(call)
    args = call.arguments
    page, links = store.read_page_with_links(wiki.db, wiki.wiki_id, args["path"], args.get("revision", ""),
                                          args.get("section", ""))
    lines = [f"# {page.display_title}", f"Path: {page.path}", f"Revision: {page.revision}"]
    if not page.is_current:
        lines.append(f"Note: this is an older revision; the current one is {page.current_revision} (pass that when writing).")
    lines.append(f"Updated: {_human_time(page.updated_at)}")
    if page.section:
        lines.append(f"Section: {page.section}")
    metadata = _metadata_line(page)
    if metadata:
        lines.append(f"Metadata: {metadata}")
    if links is not None:
        lines.append(f"Links to: {_link_list(links.links_to)}")
        lines.append(f"Linked from: {_link_list(links.linked_from)}")
    lines += ["", "---", page.content]
    structured = {
        "path": page.path,
        "title": page.display_title,
        "revision": page.current_revision,
        "content_revision": page.revision,
        "section": page.section,
        "updated_at": _iso_time(page.updated_at),
        "category": page.category,
        "tags": list(page.tags),
        "metadata": page.meta,
        "content": page.content,
        "links_to": [{"path": link.path, "exists": link.exists} for link in links.links_to] if links else [],
        "linked_from": list(links.linked_from) if links else [],
    }
    return ToolResult("\n".join(lines), structured)


def write_note(call: ToolCall) -> ToolResult:
    wiki = _wiki(call)
    args = call.arguments
    change = store.write_page(
        wiki.db, wiki.wiki_id, args["path"], args["content"], args.get("revision", ""),
        author=wiki.author, quotas=wiki.quotas, message=args.get("commit_message", ""),
    )
    verb = {"create": "Created", "update": "Updated", "none": "Unchanged (same content as before):"}[change.kind]
    return _page_change(f"{verb} {change.page.path}", change)


def edit_note(call: ToolCall) -> ToolResult:
    wiki = _wiki(call)
    args = call.arguments
    change = store.edit_page(
        wiki.db, wiki.wiki_id, args["path"], args["revision"], args["old_string"], args["new_string"],
        author=wiki.author, quotas=wiki.quotas, message=args.get("commit_message", ""),
    )
    verb = "Edited" if change.changed else "Unchanged (the replacement is the same text):"
    return _page_change(f"{verb} {change.page.path}", change)


def _page_change(headline: str, change, **extra: Any) -> ToolResult:
    text = f"{headline}\nRevision: {change.revision}"
    return ToolResult(text, {"path": change.page.path, "revision": change.revision, "kind": change.kind, **extra})


def list_notes(call: ToolCall) -> ToolResult:
    wiki = _wiki(call)
    filters = {name: call.arguments.get(name, "") for name in ("prefix", "category", "tag", "updated_since")}
    pages = store.list_pages(wiki.db, wiki.wiki_id, **filters)
    described = ", ".join(f"{name}={value!r}" for name, value in filters.items() if value)
    header = f"Found {len(pages)} notes{' matching ' + described if described else ''}:"
    lines = [header] + [_note_line(page) for page in pages]
    if not pages:
        lines.append("(none) Try fewer filters, or search_notes to search the text.")
    notes = [
        {
            "path": page.path, "title": page.display_title, "category": page.category, "tags": list(page.tags),
            "words": page.words, "revision": page.revision, "updated_at": _iso_time(page.updated_at),
        }
        for page in pages
    ]
    return ToolResult("\n".join(lines), {"count": len(notes), "notes": notes})


def _note_line(page) -> str:
    details = [f"{page.words} words", f"updated {_human_time(page.updated_at)}"]
    if page.category:
        details.insert(0, f"category: {page.category}")
    if page.tags:
        details.insert(len(details) - 2, f"tags: {', '.join(page.tags)}")
    title = f" — {page.title}" if page.title else ""
    return f"- {page.path}{title} ({'; '.join(details)})"


def search_notes(call: ToolCall) -> ToolResult:
    wiki = _wiki(call)
    query = call.arguments["query"]
    hits = store.search_pages(wiki.db, wiki.wiki_id, query)
    results = [
        {
            "path": hit.path, "title": hit.title or hit.path.rsplit("/", 1)[-1], "revision": hit.revision,
            "score": hit.score, "snippet": store.highlight_snippet(hit.snippet, "**", "**"),
        }
        for hit in hits
    ]
    if not results:
        text = f'No pages match "{query}". Try other or fewer words, a prefix like robo*, or list_notes.'
    else:
        lines = [f'{store.counted(len(results), "result")} for "{query}" (best first; matches in **bold**):']
        for number, result in enumerate(results, 1):
            snippet = " ".join(result["snippet"].split())
            lines += [f"{number}. {result['path']} (score: {result['score']:.2f})", f"   {snippet}"]
        text = "\n".join(lines)
    return ToolResult(text, {"query": query, "results": results})


def semantic_search(call: ToolCall) -> ToolResult:
    wiki = _wiki(call)
    args = call.arguments
    n, per_page = args.get("n", 5), args.get("max_chunks_per_page", 2)
    found = semantic.engine(call.context.caller.cfg).search(wiki.db, wiki.wiki_id, args["query"], n, per_page)
    query = " ".join(args["query"].split())
    results = [
        {"path": hit.path, "title": hit.title, "section": hit.section, "text": hit.text, "score": hit.score,
         "revision": hit.revision}
        for hit in found.hits
    ]
    if results:
        lines = [f'{store.counted(len(results), "passage")} for "{query}" by meaning (best first; score 1 = same meaning):']
        for number, hit in enumerate(found.hits, 1):
            lines += [f"{number}. {hit.path} > {hit.section or '(top)'} (score: {hit.score:.2f})",
                      f"   Revision: {hit.revision}",
                      *(f"   {line}" for line in hit.text.splitlines() if line.strip())]
    else:
        lines = [f'No indexed passage is close in meaning to "{query}". Describe it in other words, or use '
                 "search_notes for exact words and names."]
    lines += _clamp_notes(n, per_page)
    note = semantic.missing_note(found.state, found.ready)
    if note:
        lines += ["", f"Note: {note} search_notes searches every page by its words now."]
    state = found.state
    return ToolResult("\n".join(lines), {
        "query": query, "results": results, "indexed": state.indexed, "pending": state.pending,
        "stale_pages": state.stale_pages, "complete": found.ready and state.complete,
    })


def _clamp_notes(n, per_page) -> list[str]:
    """Say so when n or max_chunks_per_page was outside its range and clamped (as the
    reference platform does) rather than refused."""
    notes = []
    for name, value, high in (("n", n, semantic.MAX_RESULTS), ("max_chunks_per_page", per_page,
                                                                semantic.MAX_CHUNKS_PER_PAGE)):
        used = semantic.clamp(value, 1, high, name)
        if used != value:
            notes.append(f"({name}={value} is outside 1-{high}; used {used}.)")
    return notes


def get_links(call: ToolCall) -> ToolResult:
    wiki = _wiki(call)
    links = store.page_links(wiki.db, wiki.wiki_id, call.arguments["path"])
    lines = [f"Links for {links.path}:", f"Revision: {links.revision}", f"Links to ({len(links.links_to)}):"]
    lines += [f"- [[{link.path}]]{'' if link.exists else ' (missing page)'}" for link in links.links_to] or ["(none)"]
    lines.append(f"Linked from ({len(links.linked_from)}):")
    lines += [f"- [[{path}]]" for path in links.linked_from] or ["(none)"]
    structured = {
        "path": links.path,
        "revision": links.revision,
        "links_to": [{"path": link.path, "exists": link.exists} for link in links.links_to],
        "linked_from": list(links.linked_from),
    }
    return ToolResult("\n".join(lines), structured)


def get_recent_changes(call: ToolCall) -> ToolResult:
    wiki = _wiki(call)
    changes = store.recent_changes(wiki.db, wiki.wiki_id, call.arguments.get("limit", 20))
    lines = [f"{len(changes)} recent changes (newest first; revision | time | page | change | who):"]
    for revision in changes:
        lines += _change_lines(revision, show_path=True)
    return ToolResult("\n".join(lines), {"changes": [_change_json(revision) for revision in changes]})


def get_history(call: ToolCall) -> ToolResult:
    wiki = _wiki(call)
    path = call.arguments["path"]
    history = store.page_history(wiki.db, wiki.wiki_id, path, call.arguments.get("limit", 10))
    latest = history[0]
    state = " (deleted)" if latest.page_deleted else ""
    lines = [
        f"History of {latest.current_path}{state} ({store.counted(len(history), 'revision')}, newest first):",
        f"Revision: {latest.id}",
    ]
    for revision in history:
        lines += _change_lines(revision, show_path=False)
    if latest.page_deleted:
        lines.append("The page is deleted; a person can restore it from its history in the browser.")
    structured = {
        "path": latest.current_path,
        "revision": latest.id,
        "deleted": latest.page_deleted,
        "history": [_change_json(revision) for revision in history],
    }
    return ToolResult("\n".join(lines), structured)


def rename_note(call: ToolCall) -> ToolResult:
    wiki = _wiki(call)
    args = call.arguments
    old_path, with_subpages = args["path"], args.get("move_subpages", False)
    change = store.rename_page(
        wiki.db, wiki.wiki_id, old_path, args["new_path"], author=wiki.author, message=args.get("commit_message", ""),
        subpages=with_subpages,
    )
    moved = [{"from": before, "to": after} for before, after in change.moved]
    result = _page_change(f"Renamed {old_path} to {change.page.path}", change, old_path=old_path,
                          updated_backlinks=list(change.rewritten), moved_subpages=moved)
    lines = [result.text]
    if moved:
        lines += [f"Moved {len(moved)} sub-pages along:"] + [f"- {m['from']} -> [[{m['to']}]]" for m in moved]
    if change.rewritten:
        lines += [f"Updated the links in {len(change.rewritten)} pages:"] + [f"- [[{p}]]" for p in change.rewritten]
    else:
        lines.append("No other page linked to it, so no links needed updating.")
    left = [] if with_subpages else store.subpages(wiki.db, wiki.wiki_id, old_path)
    if left:
        lines.append(f"{len(left)} pages under {old_path}/ stayed where they were (e.g. {left[0]}); rename again "
                     "with move_subpages=true to move such pages along with their parent.")
    return ToolResult("\n".join(lines), result.structured)


def delete_note(call: ToolCall) -> ToolResult:
    wiki = _wiki(call)
    args = call.arguments
    change = store.delete_page(wiki.db, wiki.wiki_id, args["path"], author=wiki.author,
                            message=args.get("commit_message", ""))
    result = _page_change(f"Deleted {change.page.path}", change)
    text = (
        f"{result.text}\nThe page's history keeps its content: get_history lists its revisions, and a "
        "person can restore the page from its history in the browser."
    )
    return ToolResult(text, result.structured)


def find_orphaned_notes(call: ToolCall) -> ToolResult:
    wiki = _wiki(call)
    orphans = store.orphan_pages(wiki.db, wiki.wiki_id)
    if orphans:
        lines = [f"Found {len(orphans)} orphaned notes (no other page links to them; Home is never counted):"]
        lines += [f"- [[{path}]]" for path in orphans]
        text = "\n".join(lines)
    else:
        text = "No orphaned notes: every page except Home has at least one link from another page."
    return ToolResult(text, {"count": len(orphans), "orphans": orphans})


def list_attachments(call: ToolCall) -> ToolResult:
    wiki = _wiki(call)
    page = store.page_info(wiki.db, wiki.wiki_id, call.arguments["path"])
    attachments = store.list_attachments(wiki.db, wiki.wiki_id, page.path)
    lines = [f"Attachments of {page.path} ({len(attachments)}):", f"Revision: {page.revision}"]
    lines += [
        f"- {item.filename} ({item.size} bytes, {item.content_type}, updated {_human_time(item.updated_at)})"
        for item in attachments
    ] or ["(none)"]
    structured = {
        "path": page.path,
        "revision": page.revision,
        "attachments": [_attachment_json(item) for item in attachments],
    }
    return ToolResult("\n".join(lines), structured)


def _attachment_json(item) -> dict[str, Any]:
    return {"filename": item.filename, "size": item.size, "content_type": item.content_type,
            "updated_at": _iso_time(item.updated_at)}


def upload_attachment(call: ToolCall) -> ToolResult:
    wiki = _wiki(call)
    args = call.arguments
    data = _decode_base64(args["content"])
    change = store.put_attachment(
        wiki.db, wiki.wiki_id, args["path"], args["filename"], data,
        author=wiki.author, quotas=wiki.quotas, message=args.get("commit_message", ""),
    )
    stored = change.attachment
    headline = f"Uploaded {stored.filename} to {change.page.path} ({stored.size} bytes, {stored.content_type})"
    result = _page_change(headline, change, attachment=_attachment_json(stored))
    if stored.filename == args["filename"]:
        return result
    note = f"The file name was cleaned: '{args['filename']}' is stored as '{stored.filename}'; use that name."
    return ToolResult(f"{result.text}\n{note}", result.structured)


def _decode_base64(text: str) -> bytes:
    # Standard base64 (RFC 4648 §4); line breaks and spaces that models add are ignored.
    compact = "".join(text.split())
    if len(compact) > MAX_BASE64_CHARS:
        raise ToolError(f"The file is larger than the {store.MAX_ATTACHMENT_BYTES} bytes (10 MB) an attachment may have.")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ToolError(
            "content is not valid base64: encode the file's bytes with standard base64 "
            "(A-Z, a-z, 0-9, + and /, padded with =) and try again."
        ) from None


def download_attachment(call: ToolCall) -> ToolResult:
    wiki = _wiki(call)
    page = store.page_info(wiki.db, wiki.wiki_id, call.arguments["path"])
    item = store.get_attachment(wiki.db, wiki.wiki_id, page.path, call.arguments["filename"])
    encoded = base64.b64encode(item.data).decode("ascii")
    text = (
        f"Downloaded {item.filename} from {page.path} ({item.size} bytes, {item.content_type}).\n"
        f"Revision: {page.revision}\nContent (base64):\n{encoded}"
    )
    structured = {"path": page.path, "revision": page.revision, **_attachment_json(item), "content": encoded}
    return ToolResult(text, structured)


def delete_attachment(call: ToolCall) -> ToolResult:
    wiki = _wiki(call)
    args = call.arguments
    change = store.delete_attachment(wiki.db, wiki.wiki_id, args["path"], args["filename"], author=wiki.author,
                                  message=args.get("commit_message", ""))
    removed = change.attachment
    result = _page_change(f"Deleted attachment {removed.filename} from {change.page.path}", change,
                          attachment=_attachment_json(removed))
    return ToolResult(f"{result.text}\nThe page history records the removal.", result.structured)


def _guarded(handler: Callable[[ToolCall], ToolResult]) -> Callable[[ToolCall], ToolResult]:
    """The handler with robotwtf's errors turned into tool errors (server/tools "Error Handling":
    failures the model can act on are results with isError, not protocol errors)."""

    def run(call: ToolCall) -> ToolResult:
        try:
            return handler(call)
        except store.NotFound as missing:
            raise ToolError(f"{missing.message} {NOT_FOUND_HINT}") from None
        except store.RobotError as failure:
            raise ToolError(failure.message) from None

    run.__name__ = handler.__name__
    return run


# 4 base64 characters per 3 bytes (RFC 4648 §4), padded to a multiple of 4.
MAX_BASE64_CHARS = 4 * -(-store.MAX_ATTACHMENT_BYTES // 3)

PAGE_CHANGE_OUT = _output(path=STR, revision=REVISION_OUT, kind=STR)

TOOLS = (
    Tool(
        name="read_note",
        title="Read a page",
        description=(
            "Read a wiki page: its Markdown content (front matter included), revision, metadata, "
            "and the pages it links to and that link to it. Pass `revision` (an id or a unique prefix of "
            "at least 7 characters, from get_history) to read an older version, and `section` (a heading "
            "title like \"Setup\" or a path like \"Install > Linux\") to read just that part of a long page. "
            "Keep the returned revision: edit_note and write_note need it."
        ),
        input_schema=_params(
            {"path": PATH},
            {
                "revision": _string("Optional: an older revision id (or unique prefix of 7+ characters); empty reads the current page."),
                "section": _string("Optional: a heading title or a path like \"A > B\"; empty reads the whole page."),
            },
        ),
        output_schema=_output(
            path=STR, title=STR, revision=REVISION_OUT,
            content_revision={"type": "string", "description": "the revision the content is from"},
            section=STR, updated_at=TIME, category=STR, tags=STRINGS, metadata={"type": "object"}, content=STR,
            links_to={"type": "array", "items": LINK_OUT}, linked_from=STRINGS,
        ),
        annotations=TOOL_ANNOTATIONS["read"],
        scope="wiki:read",
        handler=_guarded(read_note),
    ),
    Tool(
        name="write_note",
        title="Create or replace a page",
        description=(
            "Create a new page (leave `revision` empty; fails if the page exists) or replace a whole page "
            "(pass the `revision` you read; fails with a conflict if someone changed the page since, so "
            "read it again and redo your change). For a small change to an existing page, edit_note is "
            "safer. Content is Markdown (at most 1,000,000 bytes); link pages with [[Path]] or "
            "[[Path|text]]; optional front matter between --- lines at the top sets title, category and tags."
        ),
        input_schema=_params(
            {"path": PATH, "content": _string("The page's complete new Markdown content.")},
            {
                "revision": _string("Empty to create a new page; to replace a page, its current revision (from read_note)."),
                "commit_message": COMMIT_MESSAGE,
            },
        ),
        output_schema=PAGE_CHANGE_OUT,
        annotations=TOOL_ANNOTATIONS["change"],
        scope="wiki:write",
        handler=_guarded(write_note),
    ),
    Tool(
        name="edit_note",
        title="Edit part of a page",
        description=(
            "Replace exactly one occurrence of `old_string` in a page with `new_string` (empty deletes it). "
            "`old_string` must match the page text exactly, including spaces and line breaks, and occur "
            "once: if it occurs several times, include more surrounding text. `revision` is the page's "
            "current revision from read_note; if the page changed since, read it again and retry. The best "
            "tool for small changes."
        ),
        input_schema=_params(
            {
                "path": PATH,
                "revision": _string("The page's current revision (from read_note); a unique prefix of 7+ characters is enough.", 1),
                "old_string": _string("The exact text to replace; it must occur exactly once in the page.", 1),
                "new_string": _string("The text to put in its place (empty to delete old_string)."),
            },
            {"commit_message": COMMIT_MESSAGE},
        ),
        output_schema=PAGE_CHANGE_OUT,
        annotations=TOOL_ANNOTATIONS["change"],
        scope="wiki:write",
        handler=_guarded(edit_note),
    ),
    Tool(
        name="list_notes",
        title="List pages",
        description=(
            "List the wiki's pages in path order with title, category, tags, size and last update. "
            "Filters combine (all must match): `prefix` of the path (e.g. \"Projects/\"), `category` and "
            "`tag` from the pages' front matter, and `updated_since` (ISO 8601 date or time, UTC). "
            "Use search_notes to search the text instead."
        ),
        input_schema=_params(
            {},
            {
                "prefix": _string("Optional: only paths starting with this (case-insensitive)."),
                "category": _string("Optional: only pages with this front matter category."),
                "tag": _string("Optional: only pages with this front matter tag."),
                "updated_since": _string("Optional: only pages changed at or after this ISO 8601 time, e.g. 2026-01-31 or 2026-01-31T12:00:00Z."),
            },
        ),
        output_schema=_output(count={"type": "integer"}, notes={"type": "array", "items": NOTE_OUT}),
        annotations=TOOL_ANNOTATIONS["read"],
        scope="wiki:read",
        handler=_guarded(list_notes),
    ),
    Tool(
        name="search_notes",
        title="Search pages",
        description=(
            "Full-text search over the current pages, best matches first, each with a snippet where the "
            "matches are in **bold**. All words must match; \"a phrase\" in quotes matches exactly and "
            "word* matches a prefix. A match in a page's path or title ranks higher."
        ),
        input_schema=_params({"query": _string("Words to search for.", 1, 1000)}),
        output_schema=_output(
            query=STR,
            results={
                "type": "array",
                "items": _output(path=STR, title=STR, revision=STR, score={"type": "number"}, snippet=STR),
            },
        ),
        annotations=TOOL_ANNOTATIONS["read"],
        scope="wiki:read",
        handler=_guarded(search_notes),
    ),
    Tool(
        name="get_links",
        title="Show a page's links",
        description=(
            "The [[links]] in a page (saying which point to pages that don't exist yet) and the pages "
            "that link to it (backlinks)."
        ),
        input_schema=_params({"path": PATH}),
        output_schema=_output(
            path=STR, revision=REVISION_OUT, links_to={"type": "array", "items": LINK_OUT}, linked_from=STRINGS
        ),
        annotations=TOOL_ANNOTATIONS["read"],
        scope="wiki:read",
        handler=_guarded(get_links),
    ),
    Tool(
        name="get_recent_changes",
        title="Recent changes",
        description=(
            "The latest changes anywhere in the wiki, newest first: revision, time, page, kind of change, "
            "who made it and through which app, and the commit message. Read this at the start of a "
            "session to see what people have been doing."
        ),
        input_schema=_params({}, {"limit": {**LIMIT_SCHEMA, "description": "How many changes (1-200, default 20)."}}),
        output_schema=_output(changes={"type": "array", "items": CHANGE_OUT}),
        annotations=TOOL_ANNOTATIONS["read"],
        scope="wiki:read",
        handler=_guarded(get_recent_changes),
    ),
    Tool(
        name="get_history",
        title="Page history",
        description=(
            "A page's revisions, newest first, following it across renames (and for a deleted page, "
            "its history up to the deletion). Pass a revision id to read_note to see an older version."
        ),
        input_schema=_params(
            {"path": PATH}, {"limit": {**LIMIT_SCHEMA, "description": "How many revisions (1-200, default 10)."}}
        ),
        output_schema=_output(
            path=STR, revision=REVISION_OUT, deleted={"type": "boolean"},
            history={"type": "array", "items": CHANGE_OUT},
        ),
        annotations=TOOL_ANNOTATIONS["read"],
        scope="wiki:read",
        handler=_guarded(get_history),
    ),
    Tool(
        name="rename_note",
        title="Rename a page",
        description=(
            "Move a page to a new path. Its history follows it, and every [[link]] to it in other pages "
            "is rewritten in the same change, so no link breaks; the result lists the pages whose links "
            "were updated. With move_subpages=true, the pages under path/ (Plants/Tomato under Plants) "
            "move along to new_path/ in the same change. Fails if a page already exists at a new path."
        ),
        input_schema=_params({"path": PATH, "new_path": PATH}, {
            "commit_message": COMMIT_MESSAGE,
            "move_subpages": {"type": "boolean", "default": False,
                              "description": "Also move every page under path/ to the same place under new_path/."},
        }),
        output_schema=_output(
            path=STR, revision=REVISION_OUT, kind=STR, old_path=STR, updated_backlinks=STRINGS,
            moved_subpages={"type": "array", "items": {"type": "object", "properties": {"from": STR, "to": STR},
                                                       "required": ["from", "to"]}},
        ),
        annotations=TOOL_ANNOTATIONS["move"],
        scope="wiki:write",
        handler=_guarded(rename_note),
    ),
    Tool(
        name="delete_note",
        title="Delete a page",
        description=(
            "Delete a page. It disappears from listings, search and links, but its history keeps its "
            "content and a person can restore it. Ask the user before deleting."
        ),
        input_schema=_params({"path": PATH}, {"commit_message": COMMIT_MESSAGE}),
        output_schema=PAGE_CHANGE_OUT,
        annotations=TOOL_ANNOTATIONS["remove"],
        scope="wiki:write",
        handler=_guarded(delete_note),
    ),
    Tool(
        name="find_orphaned_notes",
        title="Find orphaned pages",
        description=(
            "Pages that no other page links to (Home is never counted). Useful for tidying up: link "
            "them from a relevant page, or ask the user whether they are still needed."
        ),
        input_schema=_params({}),
        output_schema=_output(count={"type": "integer"}, orphans=STRINGS),
        annotations=TOOL_ANNOTATIONS["read"],
        scope="wiki:read",
        handler=_guarded(find_orphaned_notes),
    ),
    Tool(
        name="list_attachments",
        title="List a page's attachments",
        description="The files attached to a page: name, size in bytes, content type and last update.",
        input_schema=_params({"path": PATH}),
        output_schema=_output(
            path=STR, revision=REVISION_OUT, attachments={"type": "array", "items": ATTACHMENT_OUT}
        ),
        annotations=TOOL_ANNOTATIONS["read"],
        scope="wiki:read",
        handler=_guarded(list_attachments),
    ),
    Tool(
        name="upload_attachment",
        title="Attach a file to a page",
        description=(
            "Attach a file to an existing page, replacing an attachment of the same name. `content` is "
            "the file's bytes in standard base64; the file may be at most 10 MB. The name is cleaned "
            "(folders and unsafe characters removed) and the content type is detected from the bytes; "
            "the result says what was stored."
        ),
        input_schema=_params(
            {"path": PATH, "filename": FILENAME, "content": _string("The file's bytes, base64-encoded.")},
            {"commit_message": COMMIT_MESSAGE},
        ),
        output_schema=_output(path=STR, revision=REVISION_OUT, kind=STR, attachment=ATTACHMENT_OUT),
        annotations=TOOL_ANNOTATIONS["change"],
        scope="wiki:write",
        handler=_guarded(upload_attachment),
    ),
    Tool(
        name="download_attachment",
        title="Download an attachment",
        description=(
            "A file attached to a page, with its bytes base64-encoded (in the text and as "
            "structuredContent.content)."
        ),
        input_schema=_params({"path": PATH, "filename": FILENAME}),
        output_schema=_output(
            path=STR, revision=REVISION_OUT, filename=STR, size={"type": "integer"}, content_type=STR,
            updated_at=TIME, content={"type": "string", "description": "the file's bytes, base64"},
        ),
        annotations=TOOL_ANNOTATIONS["read"],
        scope="wiki:read",
        handler=_guarded(download_attachment),
    ),
    Tool(
        name="delete_attachment",
        title="Delete an attachment",
        description=(
            "Remove a file from a page for good (the page history records the removal, not the file). "
            "Ask the user before deleting."
        ),
        input_schema=_params({"path": PATH, "filename": FILENAME}, {"commit_message": COMMIT_MESSAGE}),
        output_schema=_output(path=STR, revision=REVISION_OUT, kind=STR, attachment=ATTACHMENT_OUT),
        annotations=TOOL_ANNOTATIONS["remove"],
        scope="wiki:write",
        handler=_guarded(delete_attachment),
    ),
)


SEMANTIC_SEARCH = Tool(
    name="semantic_search",
    title="Search pages by meaning",
    description=(
        "Find the passages of the wiki closest in meaning to a question or a description, even when "
        "they are worded differently from yours, e.g. \"what did we decide about the deploy freeze?\". "
        "Each result is a passage (chunk) of a page: its path, section (heading path), text, score "
        "(cosine similarity, higher is closer) and the page's current revision. Use search_notes "
        "instead for exact words, names or phrases. The index follows changes within seconds; while "
        "it catches up, the result says how much is not searchable yet."
    ),
    input_schema=_params(
        {"query": _string("What you are looking for: a question or a few words, at most 2000 characters.")},
        {
            "n": {"type": "integer", "description": "How many passages (1-50, default 5)."},
            "max_chunks_per_page": {"type": "integer", "description": "At most this many passages of one page (1-10, default 2)."},
        },
    ),
    output_schema=_output(
        query=STR,
        results={
            "type": "array",
            "items": _output(path=STR, title=STR, section=STR, text=STR, score={"type": "number"}, revision=REVISION_OUT),
        },
        indexed={"type": "integer", "description": "passages of this wiki searchable now"},
        pending={"type": "integer", "description": "passages waiting for their vectors"},
        stale_pages={"type": "integer", "description": "changed pages waiting to be indexed again"},
        complete={"type": "boolean", "description": "whether every page of the wiki is searchable"},
    ),
    annotations=TOOL_ANNOTATIONS["read"],
    scope="wiki:read",
    handler=_guarded(semantic_search),
)


def build_server(public_url: str, semantic_search: bool = False) -> Server:
    """The endpoint's Server: one per app, the same for every wiki (tools/list is public).
    semantic_search is listed only while an embeddings server is configured (CONTRACT §6)."""
    return Server(SERVER_NAME, store.VERSION, INSTRUCTIONS, public_url,
                  TOOLS + (SEMANTIC_SEARCH,) if semantic_search else TOOLS)


# --- the HTTP route: /w/<slug>/mcp -------------------------------------------------------------
# Everything below needs the robotwtf app; the protocol core above does not.

ENDPOINT_PATH = r"/w/(?P<slug>[^/]+)/mcp"
OTHER_METHODS = ("GET", "PUT", "PATCH", "DELETE", "OPTIONS")
INTERNAL_FAILURE = "Something went wrong on our side. The operator can find the details in the server log."
_QUOTED_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f]')


@dataclasses.dataclass(frozen=True)
class WikiAccess:
    """What a tool handler gets as ``call.context.caller``: the authenticated caller and the
    request thread's database connection."""

    caller: Any
    db: Any
    cfg: Any


def install(app) -> None:
    """Add every wiki's MCP endpoint to the robotwtf app (CONTRACT §3: POST /w/<slug>/mcp).

    POST is a direct route (plain WSGI, ahead of bottle: this is the hot path). The other methods
    are routed here too, so that GET, DELETE and OPTIONS get this endpoint's 405 + Allow (or, for
    a browser, a page saying what the address is for) rather than a wiki page route. There is no
    CORS: the Origin check refuses every cross-origin browser anyway (DNS-rebinding defence), and
    Claude.ai calls from its servers.
    """
    inst = app.config["robotwtf.instance"]
    server = build_server(inst.cfg.public_url, inst.cfg.semantic_search)

    def mcp_endpoint(environ, start_response, slug: str):
        try:
            reply = serve_request(inst, server, slug, environ)
        except Exception:
            log.exception("MCP request failed")
            reply = Reply(500, dict(JSON_HEADERS), {"error": "server_error", "message": INTERNAL_FAILURE})
        return _send(reply, start_response)

    def other_method(slug: str):
        return _http_response(answer_other_method(server, slug))

    app.direct(ENDPOINT_PATH, mcp_endpoint, methods=("POST",))
    app.route("/w/<slug>/mcp", OTHER_METHODS, other_method, csrf=False)


# --- who is calling: bearer tokens (this endpoint is the OAuth protected resource) -------------------------------------------

ACCESS_TOKEN_TYP = "at+jwt"  # RFC 9068 §2.1


def resource_url(cfg: store.Config, slug: str) -> str:
    """The wiki's MCP URL: its RFC 8707 resource identifier and the `aud` of its access tokens."""
    return f"{cfg.public_url}/w/{slug}/mcp"


@dataclasses.dataclass(frozen=True)
class Caller:
    """The person an MCP request acts for, the wiki, and the scopes it may use right now (granted
    AND still allowed by the person's current role). `via` names the credential for revisions:
    "mcp:<client name>" for OAuth clients, "token:<name>" for personal access tokens."""

    user_did: str
    wiki_id: int
    wiki_slug: str
    scopes: frozenset[str]
    via: str
    grant_id: int | None = None
    token_id: int | None = None


class BearerError(Exception):
    """Why a bearer credential was refused. `status` is 401; `error` is RFC 6750 §3.1's
    "invalid_token", or None when no Bearer credential was sent at all (§3.1: then no error code);
    `description` is an ASCII sentence without quotes, safe inside a WWW-Authenticate header."""

    def __init__(self, error: str | None, description: str):
        super().__init__(description)
        self.status = 401
        self.error = error
        self.description = description


def authenticate_bearer(inst: store.Instance, authorization: str | None, resource: str) -> Caller:
    """Who the `Authorization` header value speaks for on the MCP endpoint whose resource URL is
    `resource`, or BearerError. Access tokens must be our RS256 `at+jwt` for exactly this
    resource, their grant must still exist, and the scopes are cut to what the person's role
    allows today, so a revoked grant, a removed member, a lowered role, or a deleted user or wiki
    stops the very next request. Personal access tokens get the same checks. One indexed query."""
    token = _bearer_token(authorization)
    if token.startswith(store.PERSONAL_TOKEN_PREFIX):
        return _personal_token_caller(inst, token, resource)
    return _access_token_caller(inst, token, resource)


def _bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise BearerError(None, "Send an access token as Authorization: Bearer <token>.")
    return token.strip()


def _invalid_token(description: str) -> BearerError:
    return BearerError("invalid_token", description)


def _access_token_caller(inst: store.Instance, token: str, resource: str) -> Caller:
    claims = _access_token_claims(inst, token)
    if claims["exp"] <= store.now():
        raise _invalid_token("The access token has expired; refresh it or reconnect the app.")
    if claims["aud"] != resource:
        raise _invalid_token("The access token is for another wiki.")
    grant = store.grant_for_bearer(inst.db(), claims["grant_id"])
    if grant is None or grant["user_did"] != claims["sub"] or grant["client_id"] != claims["client_id"] \
            or resource_url(inst.cfg, grant["wiki_slug"]) != resource:
        raise _invalid_token("The access token was revoked; reconnect the app.")
    scopes = frozenset(claims["scope"].split()) & store.role_scopes(grant["role"])
    if not scopes:
        raise _invalid_token("The person who connected this app no longer has access to the wiki.")
    if store.touch_due(grant["last_used_at"]):
        store.touch_grant(inst.db(), grant["id"])
    return Caller(grant["user_did"], grant["wiki_id"], grant["wiki_slug"], scopes,
                  "mcp:" + (grant["client_name"] or "unnamed app"), grant_id=grant["id"])


def _access_token_claims(inst: store.Instance, token: str) -> dict:
    """The claims of an access token we issued (RFC 9068 §4: signature with RS256 only, typ,
    iss), with every claim this module relies on present and of the right type."""
    try:
        claims = inst.keys.verify_rs256(token, ACCESS_TOKEN_TYP)
    except store.BadInput:
        raise _invalid_token("The access token is malformed or its signature is not valid.") from None
    expected = {"iss": str, "sub": str, "aud": str, "client_id": str, "scope": str, "exp": int, "grant_id": int}
    if any(type(claims.get(name)) is not kind for name, kind in expected.items()) \
            or claims["iss"] != inst.cfg.public_url:
        raise _invalid_token("The access token was not issued by this server.")
    return claims


def _personal_token_caller(inst: store.Instance, token: str, resource: str) -> Caller:
    try:
        holder = store.personal_token_caller(inst.db(), token)
    except store.Unauthorized as refusal:
        raise _invalid_token(refusal.message) from None
    if resource_url(inst.cfg, holder.wiki_slug) != resource:
        raise _invalid_token("The personal access token is for another wiki.")
    if not holder.scopes:
        raise _invalid_token("The token's owner no longer has access to the wiki.")
    return Caller(holder.user_did, holder.wiki_id, holder.wiki_slug, holder.scopes, "token:" + holder.name,
                  token_id=holder.token_id)


def serve_request(inst, server: Server, slug: str, environ) -> Reply:
    """Authenticate one POST (a WSGI environ) to a wiki's endpoint and answer it through
    handle_http."""
    if not store.SLUG_RE.fullmatch(slug):
        return Reply(404, dict(JSON_HEADERS), {"error": "not_found", "error_description": "There is no wiki here."})
    cfg = inst.cfg
    metadata_url = cfg.url(f"/.well-known/oauth-protected-resource/w/{slug}/mcp")
    try:
        caller = authenticate_bearer(inst, environ.get("HTTP_AUTHORIZATION"), cfg.url(f"/w/{slug}/mcp"))
    except BearerError as refusal:
        return _unauthorized_reply(refusal, metadata_url)
    try:
        inst.limiter.hit(_rate_key(caller), cfg.mcp_per_minute, "Too many MCP requests; wait a moment.")
    except store.RateLimited as limited:
        return rate_limited_reply(limited)

    def admit_writes(count: int) -> None:
        for _ in range(count):
            inst.limiter.hit(_rate_key(caller) + ":writes", cfg.writes_per_minute,
                             "Too many changes in a short time; wait a moment, then send them again.")

    context = RequestContext(caller.scopes, metadata_url, WikiAccess(caller, inst.db(), cfg), admit_writes)
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    return handle_http(server, "POST", body, _request_headers(environ), context)


def _request_headers(environ) -> dict[str, str]:
    """The request's headers, names lowercased, values as the UTF-8 text they are (WSGI hands
    them over as latin-1 stand-ins for the bytes; the edge has refused any that are not UTF-8)."""
    headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")}
    if "CONTENT_TYPE" in environ:
        headers["content-type"] = environ["CONTENT_TYPE"]
    for name, value in headers.items():
        if not value.isascii():
            headers[name] = value.encode("latin-1").decode("utf-8")
    return headers


def answer_other_method(server: Server, slug: str) -> Reply:
    """Any method but POST (bottle's request)."""
    request = bottle.request
    if request.method == "GET" and "text/html" in request.get_header("Accept", "") and store.SLUG_RE.fullmatch(slug):
        return _browser_page(slug)
    return handle_http(server, request.method, b"", {}, None)


def _browser_page(slug: str) -> Reply:
    """A person who opened the MCP address in a browser learns what it is for and where the wiki's
    "Connect an agent" page is. Every other GET stays 405: MCP clients never ask for text/html.
    The same page for every slug, so it says nothing about which private wikis exist."""
    import robotwtf_web as web
    body = web.render("mcp_endpoint", slug=slug, connect_url=f"/w/{slug}/-/connect")
    return Reply(200, {"Content-Type": "text/html; charset=utf-8"}, body)


def _rate_key(caller) -> str:
    """One bucket per OAuth grant or personal token (CONTRACT §5: limits are per grant)."""
    return f"mcp:grant:{caller.grant_id}" if caller.grant_id is not None else f"mcp:token:{caller.token_id}"


def _unauthorized_reply(refusal, metadata_url: str) -> Reply:
    # basic/authorization "Protected Resource Metadata Discovery" and "Scope Selection Strategy":
    # the challenge names the metadata and the scopes to ask for. RFC 6750 §3.1: a request without
    # credentials gets no error code.
    challenge = f'Bearer resource_metadata="{metadata_url}", scope="{" ".join(store.SCOPES)}"'
    if refusal.error:
        description = _QUOTED_UNSAFE.sub("'", refusal.description)
        challenge += f', error="{refusal.error}", error_description="{description}"'
    body = {"error": refusal.error or "unauthorized", "error_description": refusal.description}
    return Reply(refusal.status, {**JSON_HEADERS, "WWW-Authenticate": challenge}, body)


def _http_response(reply: Reply) -> bottle.HTTPResponse:
    body = reply.body if isinstance(reply.body, str) else "" if reply.body is None else json.dumps(
        reply.body, ensure_ascii=False)
    return bottle.HTTPResponse(body, reply.status, {**reply.headers, "Cache-Control": "no-store"})


def _send(reply: Reply, start_response) -> list[bytes]:
    """The POST path's answer, written straight to WSGI (no bottle response object)."""
    body = b"" if reply.body is None else json.dumps(reply.body, ensure_ascii=False).encode()
    headers = [*reply.headers.items(), ("Cache-Control", "no-store"), ("Content-Length", str(len(body)))]
    start_response(f"{reply.status} {http.HTTPStatus(reply.status).phrase}", headers)
    return [body]
