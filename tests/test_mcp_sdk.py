"""The official MCP Python SDK client (`mcp`, a test dependency) against the real server: with a
personal access token in both protocol eras, and through the whole OAuth flow (401, discovery,
registration, the person's consent in their browser, token, tools, refresh)."""

from __future__ import annotations

import base64
import html
import re
import time
import urllib.parse

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientMetadata
from mcp_types import Implementation

from mcp_client import make_wiki

MODES = ["legacy", "2026-07-28", "auto"]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture
def wiki(server):
    return make_wiki(server)


async def every_tool(client: Client) -> dict[str, object]:
    """Call all fifteen tools once, each as an agent would; returns every result by tool name."""
    results = {}

    async def call(name, **arguments):
        result = await client.call_tool(name, arguments)
        assert result.is_error is False, (name, result.content[0].text)
        results[name] = result
        return result.structured_content

    home = await call("read_note", path="Home")
    created = await call("write_note", path="SDK/Plan", content="# Plan\nLink to [[Home]].\n", commit_message="Plan")
    edited = await call("edit_note", path="SDK/Plan", revision=created["revision"], old_string="# Plan",
                        new_string="# The plan")
    await call("list_notes", prefix="SDK/")
    await call("search_notes", query="plan")
    await call("get_links", path="SDK/Plan")
    await call("get_recent_changes", limit=5)
    await call("get_history", path="SDK/Plan")
    await call("upload_attachment", path="SDK/Plan", filename="dot.png", content=base64.b64encode(PNG).decode())
    await call("list_attachments", path="SDK/Plan")
    downloaded = await call("download_attachment", path="SDK/Plan", filename="dot.png")
    assert base64.b64decode(downloaded["content"]) == PNG
    await call("delete_attachment", path="SDK/Plan", filename="dot.png")
    await call("find_orphaned_notes")
    await call("rename_note", path="SDK/Plan", new_path="SDK/Roadmap")
    await call("delete_note", path="SDK/Roadmap")
    assert home["path"] == "Home" and edited["revision"] != created["revision"]
    return results


async def use_wiki(url: str, http: httpx2.AsyncClient, mode: str, agent: str = "sdk-agent") -> list[str]:
    """List tools and call every tool through the SDK; returns the tool names listed."""
    transport = streamable_http_client(url, http_client=http)
    async with Client(transport, mode=mode, cache=None, client_info=Implementation(name=agent, version="1")) as client:
        listed = await client.list_tools()
        names = [tool.name for tool in listed.tools]
        bad = await client.call_tool("read_note", {"path": 42})
        assert bad.is_error is True and "'path' must be a string" in bad.content[0].text
        await every_tool(client)
        return names


@pytest.mark.parametrize("mode", MODES)
def test_sdk_client_with_a_personal_token(wiki, mode):
    async def run():
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {wiki.mcp.token}"}) as http:
            return await use_wiki(wiki.url, http, mode)

    names = anyio.run(run)
    assert len(names) == 15 and names[0] == "read_note"
    changes = wiki.mcp.ok("get_recent_changes", limit=3)["structuredContent"]["changes"]
    assert {change["via"] for change in changes} == {"token:laptop"}


# --- the OAuth flow --------------------------------------------------------------------------------

class MemoryStorage:
    """The SDK's TokenStorage protocol, in memory."""

    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


class Person:
    """The wiki's owner at their browser: signed in, approving the consent page the SDK opens."""

    def __init__(self, server, user: str):
        self.server = server
        self.browser = server.login(user)
        self.redirect = {}
        self.consents = 0

    async def redirect_handler(self, authorization_url: str) -> None:
        page = self.browser.get(authorization_url, allow_redirects=False)
        assert page.status_code == 200, page.text
        action = html.unescape(re.search(r'<form id="consent" method="post" action="([^"]+)"', page.text)[1])
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]
        decision = self.browser.post(self.server.url + action, allow_redirects=False, data=[
            ("csrf_token", csrf), ("decision", "approve"), ("grant_scope", "wiki:read"), ("grant_scope", "wiki:write")])
        assert decision.status_code == 303, decision.text
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(decision.headers["Location"]).query)
        self.redirect = {name: values[0] for name, values in query.items()}
        self.consents += 1

    async def callback_handler(self) -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code=self.redirect["code"], state=self.redirect.get("state"),
                                       iss=self.redirect.get("iss"))


def oauth_provider(url: str, person: Person, storage: MemoryStorage) -> OAuthClientProvider:
    metadata = OAuthClientMetadata(
        client_name="sdk-test", redirect_uris=["http://127.0.0.1:9/callback"],
        grant_types=["authorization_code", "refresh_token"], response_types=["code"],
        token_endpoint_auth_method="client_secret_post")
    return OAuthClientProvider(server_url=url, client_metadata=metadata, storage=storage,
                               redirect_handler=person.redirect_handler, callback_handler=person.callback_handler)


def test_sdk_oauth_flow_both_eras_and_refresh(wiki):
    person = Person(wiki.server, "alice")
    storage = MemoryStorage()
    auth = oauth_provider(wiki.url, person, storage)

    async def run():
        async with httpx2.AsyncClient(auth=auth) as http:
            modern = await use_wiki(wiki.url, http, "2026-07-28", agent="sdk-agent")
            legacy = await use_wiki(wiki.url, http, "legacy", agent="sdk-agent")
            first_tokens = storage.tokens
            auth.context.token_expiry_time = time.time() - 1  # as if the access token had expired
            async with Client(streamable_http_client(wiki.url, http_client=http), mode="2026-07-28", cache=None) as c:
                home = await c.call_tool("read_note", {"path": "Home"})
            return modern, legacy, first_tokens, home

    modern, legacy, first_tokens, home = anyio.run(run)
    assert len(modern) == len(legacy) == 15
    assert person.consents == 1  # one consent covered both eras and the refresh
    assert storage.client_info.client_name == "sdk-test"
    assert set(first_tokens.scope.split()) == {"wiki:read", "wiki:write"}
    assert storage.tokens.access_token != first_tokens.access_token  # refreshed...
    assert storage.tokens.refresh_token != first_tokens.refresh_token  # ...with rotation
    assert home.is_error is False
    vias = [change["via"] for change in wiki.mcp.ok("get_recent_changes", limit=40)["structuredContent"]["changes"]]
    assert "mcp:sdk-agent" in vias  # 2026-07-28 sends clientInfo with every request
    assert "mcp:sdk-test" in vias  # the handshake era falls back to the registered client name
