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

It does not own HTTP routing, bearer authentication, body-size limits or the wiki tools: the
caller authenticates the request, builds a :class:`RequestContext`, and passes the raw body and
headers to :func:`handle_http`, which returns a :class:`Reply` (status, headers, JSON body or
``None``). Spec references below are to docs/specification/<revision>/ in
modelcontextprotocol/modelcontextprotocol; /work/notes/MCP.md digests them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

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
    """What to send back: HTTP status, extra headers, and a JSON-able body (None = no body)."""

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

    def __post_init__(self) -> None:
        # server/tools "Tool Names": 1-128 characters of [A-Za-z0-9_.-].
        if not _TOOL_NAME.match(self.name):
            raise ValueError(f"tool name {self.name!r} is not a valid MCP tool name")
        if self.input_schema.get("type") != "object":
            raise ValueError(f"tool {self.name}: inputSchema must have type object at its root")
        check_schema(self.input_schema)
        if self.output_schema is not None:
            check_schema(self.output_schema)

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
    """The token lacks scopes the request needs; answered with HTTP 403 for the whole POST."""

    def __init__(self, scopes: list[str]) -> None:
        super().__init__(" ".join(scopes))
        self.scopes = scopes


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
        return _insufficient_scope_reply(missing.scopes, context)


def _accepts_json(accept: str | None) -> bool:
    # Clients MUST send both JSON and SSE types, but Claude sends "*/*" (claude-ai-mcp#76):
    # refuse only an Accept header that rules JSON out.
    if accept is None:
        return True
    ranges = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return bool(ranges & {"application/json", "application/*", "*/*"})


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _insufficient_scope_reply(scopes: list[str], context: RequestContext) -> Reply:
    # basic/authorization "Runtime Insufficient Scope Errors": 403 naming every scope needed.
    needed = " ".join(scopes)
    description = f"This operation needs the {needed} scope; reconnect and grant it."
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
    # Every scope the batch needs is checked before any of it runs.
    _require_scopes(server, [entry for entry in parsed if isinstance(entry, Message)], context)
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
    """Raise InsufficientScope naming every scope the requests need that the token lacks."""
    needed = set()
    for message in messages:
        name = message.params.get("name")
        if message.kind == "request" and message.method == "tools/call" and isinstance(name, str):
            tool = server.tools_by_name.get(name)
            if tool is not None:
                needed.add(tool.scope)
    missing = sorted(needed - context.scopes)
    if missing:
        raise InsufficientScope(missing)


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
    problems = validate(arguments, tool.input_schema)
    if problems:
        # server/tools "Error Handling": input validation errors are tool execution errors.
        sentence = f"Invalid arguments for {name}: {'; '.join(problems)}."
        return _call_result(exchange, ToolResult(sentence, is_error=True))
    call = ToolCall(arguments, exchange.context, exchange.client_info, exchange.version)
    try:
        outcome = tool.handler(call)
    except ToolError as failure:
        return _call_result(exchange, ToolResult(str(failure), is_error=True))
    except Exception:
        log.exception("tool %s failed", name)
        raise ProtocolError(INTERNAL_ERROR, "Internal error") from None
    if not outcome.is_error and tool.output_schema is not None and validate(outcome.structured, tool.output_schema):
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
# silently claim a constraint that validate() does not enforce.
SCHEMA_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "enum",
        "minLength", "maxLength", "minimum", "maximum", "description", "title", "default",
    }
)
_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
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
        if name not in _TYPE_CHECKS:
            raise ValueError(f"{where} has unknown type {name!r}")
    for name, sub in schema.get("properties", {}).items():
        check_schema(sub, f"{where}.properties.{name}")
    if "items" in schema:
        check_schema(schema["items"], f"{where}.items")
    if not isinstance(schema.get("additionalProperties", True), bool):
        raise ValueError(f"{where}.additionalProperties must be true or false")


def validate(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Problems with ``value`` against a schema of the supported subset, as sentences for a model."""
    label = f"'{where}'" if where else "the arguments"
    types = schema.get("type")
    if types is not None:
        allowed = types if isinstance(types, list) else [types]
        if not any(_TYPE_CHECKS[name](value) for name in allowed):
            wanted = " or ".join(_ARTICLES.get(name, f"a {name}") for name in allowed)
            return [f"{label} must be {wanted}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{label} must be one of {', '.join(json.dumps(choice) for choice in schema['enum'])}"]
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return [f"{label} must be at least {schema['minLength']} characters long"]
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return [f"{label} must be at most {schema['maxLength']} characters long"]
    if _TYPE_CHECKS["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            return [f"{label} must be at least {schema['minimum']}"]
        if "maximum" in schema and value > schema["maximum"]:
            return [f"{label} must be at most {schema['maximum']}"]
    if isinstance(value, list) and "items" in schema:
        return [p for i, item in enumerate(value) for p in validate(item, schema["items"], f"{where}[{i}]")]
    if isinstance(value, dict):
        return _validate_object(value, schema, where)
    return []


def _validate_object(value: dict[str, Any], schema: dict[str, Any], where: str) -> list[str]:
    prefix = f"{where}." if where else ""
    properties = schema.get("properties", {})
    problems = [f"'{prefix}{name}' is required" for name in schema.get("required", []) if name not in value]
    for name, item in value.items():
        if name in properties:
            problems += validate(item, properties[name], f"{prefix}{name}")
        elif schema.get("additionalProperties", True) is False:
            problems.append(f"'{prefix}{name}' is not a parameter of this tool")
    return problems
