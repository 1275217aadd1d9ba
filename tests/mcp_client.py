"""A minimal MCP client over real HTTP for the endpoint tests: it speaks both eras by hand, so a
test can also send exactly the malformed thing it means to."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json

import requests

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
ALICE = "did:plc:aliceaaaaaaaaaaaaaaaaaaa"
BOB = "did:plc:bobbbbbbbbbbbbbbbbbbbbbb"
CAROL = "did:plc:carolccccccccccccccccccc"
_ids = itertools.count(1)


def modern_meta(client: str = "pytest-agent") -> dict:
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": client, "version": "1.0"},
    }


@dataclasses.dataclass
class Endpoint:
    """One wiki's MCP endpoint as seen by one bearer token."""

    url: str
    token: str | None
    http: requests.Session = dataclasses.field(default_factory=requests.Session)

    def post(self, body, headers: dict | None = None, raw: bytes | None = None) -> requests.Response:
        sent = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        sent.update(headers or {})
        data = raw if raw is not None else json.dumps(body).encode()
        return self.http.post(self.url, data=data, headers=sent, timeout=60)

    def legacy(self, method: str, params: dict | None = None, version: str = LEGACY, **envelope) -> requests.Response:
        message = {"jsonrpc": "2.0", "id": next(_ids), "method": method, **envelope}
        if params is not None:
            message["params"] = params
        return self.post(message, {"MCP-Protocol-Version": version})

    def modern(self, method: str, params: dict | None = None, client: str = "pytest-agent") -> requests.Response:
        params = {**(params or {}), "_meta": modern_meta(client)}
        headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": method}
        if method == "tools/call":
            headers["Mcp-Name"] = params["name"]
        return self.post({"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params}, headers)

    def call(self, tool: str, era: str = MODERN, **arguments) -> dict:
        """The tools/call result (asserting the HTTP and JSON-RPC layers succeeded)."""
        params = {"name": tool, "arguments": arguments}
        response = self.modern("tools/call", params) if era == MODERN else self.legacy("tools/call", params, era)
        assert response.status_code == 200, response.text
        return response.json()["result"]

    def ok(self, tool: str, **arguments) -> dict:
        """A successful call's result; fails the test with the tool's text otherwise."""
        result = self.call(tool, **arguments)
        assert result["isError"] is False, result["content"][0]["text"]
        return result

    def fails(self, tool: str, **arguments) -> str:
        """The text of a call that must come back as a tool error."""
        result = self.call(tool, **arguments)
        assert result["isError"] is True, result["content"][0]["text"]
        assert "structuredContent" not in result
        return result["content"][0]["text"]


def text(result: dict) -> str:
    return result["content"][0]["text"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def stored(data_dir) -> dict:
    """What the wiki storage holds, to prove a refused request changed nothing."""
    from conftest import open_db
    db = open_db(data_dir)
    try:
        counts = {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                  for table in ("pages", "revisions", "attachments", "links")}
        counts["content"] = "|".join(f"{path}:{revision}:{content}" for path, revision, content in db.execute(
            "SELECT path, revision_id, content FROM pages ORDER BY id"))
        return counts
    finally:
        db.close()


@dataclasses.dataclass
class Wiki:
    """A wiki on the test server with its owner alice and her read-write personal token."""

    server: object
    slug: str
    mcp: Endpoint

    @property
    def url(self) -> str:
        return self.mcp.url

    def token(self, user: str, scope: str = "wiki:read wiki:write", name: str = "laptop", slug: str = "") -> str:
        return self.server.cli("token", "create", slug or self.slug, "--user", user, "--scope", scope,
                               "--name", name).stdout.strip()

    def endpoint(self, token: str | None) -> Endpoint:
        return Endpoint(self.url, token)

    def stored(self) -> dict:
        return stored(self.server.data)


def make_wiki(server, slug: str = "demo") -> Wiki:
    if "alice" not in server.cli("user", "list").stdout:
        server.cli("user", "add", ALICE, "--handle", "alice.test", "--username", "alice")
    server.cli("wiki", "create", slug, "--owner", "alice", "--title", "Demo")
    url = f"{server.url}/w/{slug}/mcp"
    wiki = Wiki(server, slug, Endpoint(url, None))
    wiki.mcp.token = wiki.token("alice")
    return wiki


def add_member(wiki: Wiki, did: str, username: str, role: str) -> None:
    """Add a person to the wiki through the storage API (no member CLI exists)."""
    import robotwtf_store as store

    wiki.server.cli("user", "add", did, "--username", username, check=False)  # may exist from another wiki
    db = wiki.server.db()
    try:
        store.add_member(db, store.get_wiki(db, wiki.slug)["id"], did, role)
    finally:
        db.close()


def change_member(wiki: Wiki, did: str, role: str | None) -> None:
    """Give a member another role, or remove them (role None)."""
    import robotwtf_store as store

    db = wiki.server.db()
    try:
        wiki_id = store.get_wiki(db, wiki.slug)["id"]
        if role is None:
            store.remove_member(db, wiki_id, did)
        else:
            store.set_member_role(db, wiki_id, did, role)
    finally:
        db.close()
