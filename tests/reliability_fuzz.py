"""Hypothesis strategies and a raw-socket HTTP client for fuzzing a real robotwtf server
(tests/test_reliability.py runs a bounded, derandomized set; tests/soak/ runs many more random
examples). Raw sockets because the point is to send what well-behaved clients never send."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import socket
import string
import urllib.parse

from hypothesis import strategies as st

import robotwtf_mcp
from mcp_client import LEGACY, MODERN

TRACEBACK_RE = re.compile(rb"Traceback \(most recent call last\)|File \"[^\"]+\.py\", line \d+")
STATUS_RE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")
TOOL_NAMES = [tool.name for tool in robotwtf_mcp.build_server("http://127.0.0.1").tools]
TOOL_PROPERTIES = {tool.name: sorted(tool.input_schema.get("properties", {}))
                   for tool in robotwtf_mcp.build_server("http://127.0.0.1").tools}
METHODS = ["initialize", "notifications/initialized", "ping", "server/discover", "tools/list", "tools/call",
           "resources/list", "prompts/list", "logging/setLevel", "completion/complete", "notifications/cancelled"]
PATHS = ["/", "/healthz", "/static/style.css", "/auth/login", "/auth/callback", "/auth/signup", "/auth/login-link",
         "/auth/logout", "/auth/client-metadata.json", "/.well-known/atproto-client-jwks.json", "/account",
         "/account/sessions/revoke", "/account/logout-everywhere", "/account/apps", "/account/apps/tokens",
         "/account/apps/grants/1/revoke", "/account/apps/tokens/1/revoke", "/admin", "/admin/invites",
         "/.well-known/oauth-authorization-server", "/.well-known/oauth-protected-resource/w/fuzz/mcp",
         "/.well-known/jwks.json", "/oauth/authorize", "/oauth/token", "/oauth/register", "/oauth/revoke",
         "/w/fuzz/", "/w/fuzz/Home", "/w/fuzz/mcp", "/w/fuzz/-/", "/w/nope/mcp", "/w/fuzz/-/edit/Home",
         "/w/fuzz/-/history/Home", "/w/fuzz/-/search"]
HEADER_NAMES = ["Host", "Content-Type", "Accept", "Authorization", "Cookie", "Origin", "MCP-Protocol-Version",
                "Mcp-Method", "Mcp-Name", "Mcp-Session-Id", "X-Forwarded-For", "X-Forwarded-Proto", "Range",
                "If-None-Match", "Accept-Encoding", "Expect", "Last-Event-ID", "Referer", "User-Agent"]
# Nothing that breaks the framing the fuzzer sets itself (Content-Length, Transfer-Encoding).
header_value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
                       max_size=80).map(str.strip)
printable = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
token_chars = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"


@dataclasses.dataclass
class Answer:
    status: int
    head: bytes
    body: bytes


def send_raw(port: int, data: bytes, timeout: float = 30) -> Answer | None:
    """Send bytes, read until the server closes; None if it closed without answering (which
    waitress does for some garbage)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass   # the server refused early (e.g. 413); its answer is still readable or absent
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    raw = b"".join(chunks)
    while raw.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):
        raw = raw[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
    if not raw:
        return None
    match = STATUS_RE.match(raw)
    assert match, f"not an HTTP answer: {raw[:200]!r}"
    head, _, body = raw.partition(b"\r\n\r\n")
    return Answer(int(match.group(1)), head, body)


def build_request(method: str, target: str, headers: list[tuple[str, str]], body: bytes, chunked: bool) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Connection: close"]
    if not any(name.lower() == "host" for name, _ in headers):
        lines.append("Host: 127.0.0.1")
    lines += [f"{name}: {value}" for name, value in headers]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        payload = (f"{len(body):x}\r\n".encode() + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + payload


def check_answer(answer: Answer | None, what: str) -> None:
    """The properties every answer must have: no server error, no traceback."""
    if answer is None:
        return
    assert answer.status < 500, f"{what} -> {answer.status}: {answer.body[:500]!r}"
    assert not TRACEBACK_RE.search(answer.head + answer.body), f"{what} leaked a traceback: {answer.body[:500]!r}"


# --- the HTTP surface ----------------------------------------------------------------------------

http_method = st.one_of(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE"]),
                        st.text(st.sampled_from(token_chars), min_size=1, max_size=12))
path_suffix = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FFF, blacklist_categories=("Cs",)),
                      max_size=40).map(lambda s: urllib.parse.quote(s, safe="/%:@!$&'()*+,;=-._~"))
raw_suffix = st.text(st.sampled_from(string.ascii_letters + string.digits + "/%.-_~!$&'()*+,;=:@"), max_size=30)
query = st.one_of(st.dictionaries(printable, printable, max_size=4).map(lambda d: urllib.parse.urlencode(d)),
                 st.text(st.sampled_from("%0123456789abcdefABCDEF=&+;xyz"), max_size=30))


@st.composite
def request_target(draw) -> str:
    path = draw(st.sampled_from(PATHS)) + draw(st.one_of(st.just(""), path_suffix, raw_suffix))
    if draw(st.booleans()):
        path += "?" + draw(query)
    return path if path.startswith("/") else "/" + path


def headers_strategy(cookie: str, csrf: str, token: str):
    basic = st.binary(max_size=40).map(lambda b: "Basic " + base64.b64encode(b).decode())
    values = st.one_of(header_value, basic, st.sampled_from([
        f"Bearer {token}", "Bearer rwpat_nothing", "Bearer ", "Basic Zm9vOmJhcg==", cookie, f"{cookie}; x=1",
        "application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=zz",
        "text/html", "*/*", MODERN, LEGACY, "2025-03-26", "tools/call", "read_note", "=?base64?cmVhZF9ub3Rl?=",
        "http://127.0.0.1", "https://evil.example", "100-continue", "bytes=0-10", "gzip", "evil.example:80",
        "[::1]:8080", "127.0.0.1:1"]))
    return st.lists(st.tuples(st.sampled_from(HEADER_NAMES), values), max_size=6)


def body_strategy(csrf: str):
    form = st.dictionaries(st.sampled_from(["csrf_token", "handle", "uses", "session_id", "did", "name", "scope",
                                            "decision", "client_id", "grant_type", "code", "refresh_token",
                                            "redirect_uri", "code_verifier", "token", "invite", "return_to"]),
                           st.one_of(printable, st.just(csrf)), max_size=6)
    multipart = st.binary(max_size=200).map(
        lambda b: b"--zz\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n" + b + b"\r\n--zz--\r\n")
    return st.one_of(st.binary(max_size=300), form.map(lambda d: urllib.parse.urlencode(d).encode()), multipart,
                     json_values.map(lambda v: json.dumps(v).encode()))


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                         st.floats(allow_nan=False, allow_infinity=False), printable)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(printable, inner, max_size=4)), max_leaves=12)


# --- the JSON-RPC handler ------------------------------------------------------------------------

page_path = st.one_of(st.sampled_from(["Home", "Agent Guide", "Fuzz/Page", "mcp", "-x", "../up", "a//b", "",
                                       "Fuzz/" + "x" * 300, "Ünïcode/Päge", "Home#frag", "[[x]]"]),
                      printable, st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=20))
argument_value = st.one_of(page_path, json_values, st.integers(-5, 300),
                           st.sampled_from(["", "0000000", "deadbeef", "aGVsbG8=", "!!", "Home", "notes.txt"]))


@st.composite
def tool_arguments(draw, tool: str):
    names = TOOL_PROPERTIES.get(tool, [])
    arguments = {name: draw(argument_value) for name in names if draw(st.integers(0, 4))}
    if draw(st.integers(0, 5)) == 0:
        arguments[draw(printable)] = draw(json_values)
    return arguments


@st.composite
def meta(draw):
    base = {"io.modelcontextprotocol/protocolVersion": draw(st.sampled_from([MODERN, LEGACY, "v999", 7])),
            "io.modelcontextprotocol/clientCapabilities": draw(st.one_of(st.just({}), json_values)),
            "io.modelcontextprotocol/clientInfo": draw(st.one_of(
                st.fixed_dictionaries({"name": printable, "version": printable}), json_values))}
    keys = draw(st.lists(st.sampled_from(sorted(base)), unique=True))
    return {key: base[key] for key in keys}


@st.composite
def rpc_message(draw):
    message = {}
    if draw(st.integers(0, 9)):
        message["jsonrpc"] = draw(st.one_of(st.just("2.0"), json_scalars))
    if draw(st.integers(0, 4)):
        message["id"] = draw(st.one_of(st.integers(-2**60, 2**60), printable, st.none(), json_values))
    if draw(st.integers(0, 9)):
        message["method"] = draw(st.one_of(st.sampled_from(METHODS), printable, json_scalars))
    if draw(st.integers(0, 5)):
        tool = draw(st.one_of(st.sampled_from(TOOL_NAMES), printable))
        params = {}
        if draw(st.integers(0, 5)):
            params["name"] = draw(st.one_of(st.just(tool), json_scalars))
        if draw(st.integers(0, 5)):
            params["arguments"] = draw(st.one_of(tool_arguments(tool), json_values))
        if draw(st.booleans()):
            params["_meta"] = draw(st.one_of(meta(), json_values))
        for extra in draw(st.lists(st.sampled_from(["protocolVersion", "capabilities", "clientInfo", "cursor"]),
                                   max_size=2)):
            params[extra] = draw(json_values)
        message["params"] = draw(st.one_of(st.just(params), json_values)) if draw(st.integers(0, 9)) == 0 else params
    return message


rpc_body = st.one_of(rpc_message().map(json.dumps), st.lists(rpc_message(), max_size=3).map(json.dumps),
                     json_values.map(json.dumps), st.text(max_size=80))


@st.composite
def rpc_headers(draw, token: str, body: str):
    headers = []
    auth = draw(st.integers(0, 19))
    if auth:
        headers.append(("Authorization", f"Bearer {token}" if auth > 1 else "Bearer rwpat_wrong"))
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    method = parsed.get("method") if isinstance(parsed, dict) else None
    name = (parsed.get("params") or {}).get("name") if isinstance(parsed, dict) and isinstance(
        parsed.get("params"), dict) else None
    choices = {
        "MCP-Protocol-Version": st.sampled_from([MODERN, LEGACY, "2025-06-18", "2025-03-26", "1999-01-01", ""]),
        "Mcp-Method": st.one_of(st.just(method if isinstance(method, str) else "tools/list"), header_value),
        "Mcp-Name": st.one_of(st.just(name if isinstance(name, str) else "read_note"), header_value,
                              st.binary(max_size=20).map(lambda b: f"=?base64?{base64.b64encode(b).decode()}?=")),
        "Content-Type": st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain"]),
        "Accept": st.sampled_from(["application/json, text/event-stream", "*/*", "text/html", ""]),
        "Origin": st.sampled_from(["http://127.0.0.1", "https://evil.example", "null"]),
        "Mcp-Session-Id": header_value,
    }
    for header in draw(st.lists(st.sampled_from(sorted(choices)), unique=True)):
        value = draw(choices[header])
        if all(ord(c) < 256 and c not in "\r\n" for c in value):
            headers.append((header, value))
    return headers


def check_rpc_answer(answer: Answer | None, what: str) -> None:
    """An MCP answer: no server error, JSON when there is a body, and no internal-error code
    (which means a tool or the handler crashed)."""
    check_answer(answer, what)
    assert answer is not None, f"{what}: no answer"
    # waitress answers malformed HTTP itself, in plain text, before the app sees it.
    if answer.body and not answer.body.endswith(b"(generated by robotwtf)"):
        decoded = json.loads(answer.body)
        errors = [decoded.get("error")] if isinstance(decoded, dict) else [
            item.get("error") for item in decoded if isinstance(item, dict)]
        assert all(not isinstance(e, dict) or e.get("code") != -32603 for e in errors), f"{what}: {decoded}"


# --- browser forms, signed in and with a valid CSRF token --------------------------------------

# Not /auth/logout, /account/logout-everywhere or /account/delete: they would end the session
# that lets the rest of the run get past the sign-in.
BROWSER_POSTS = ["/auth/login", "/auth/signup", "/account/sessions/revoke", "/admin/users/remove", "/admin/invites",
                 "/oauth/authorize", "/account/apps/tokens", "/account/apps/grants/1/revoke",
                 "/account/apps/tokens/1/revoke", "/w/fuzz/-/edit/Home", "/w/fuzz/-/new"]
BROWSER_GETS = ["/", "/account", "/account/apps", "/admin", "/oauth/authorize", "/auth/login", "/auth/signup",
                "/auth/callback", "/auth/login-link", "/w/fuzz/", "/w/fuzz/Home", "/w/fuzz/-/search"]
FORM_FIELDS = ["handle", "identifier", "uses", "session_id", "did", "name", "scope", "grant_scope", "wiki",
               "expires_days", "decision", "invite", "return_to", "username", "content", "revision", "message",
               "path", "state", "code", "error", "iss", "token", "client_id", "redirect_uri", "response_type",
               "code_challenge", "code_challenge_method", "resource", "q"]
form_value = st.one_of(printable, st.sampled_from(["", "1", "0", "-1", "9" * 40, "approve", "deny", "wiki:read",
                                                   "wiki:write", "fuzz", "Home", "S256", "code", "http://127.0.0.1:9/cb",
                                                   "https://evil.example/", "//evil.example", "/\\evil"]))
form_pairs = st.lists(st.tuples(st.sampled_from(FORM_FIELDS), form_value), max_size=8)


@st.composite
def browser_request(draw, cookie: str, csrf: str) -> bytes:
    pairs = draw(form_pairs)
    if draw(st.booleans()):
        where = draw(st.sampled_from(BROWSER_GETS)) + "?" + urllib.parse.urlencode(pairs)
        return build_request("GET", where, [("Cookie", cookie)], b"", chunked=False)
    where = draw(st.sampled_from(BROWSER_POSTS))
    if draw(st.booleans()):
        where += "?" + urllib.parse.urlencode(draw(form_pairs))
    body = urllib.parse.urlencode([("csrf_token", csrf), *pairs]).encode()
    headers = [("Cookie", cookie), ("Content-Type", "application/x-www-form-urlencoded")]
    return build_request("POST", where, headers, body, chunked=False)
