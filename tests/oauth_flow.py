"""An OAuth client and a person's browser, driven over real HTTP against the real server, for the
authorization server's tests. Nothing here reaches into robotwtf: it speaks the protocol."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import re
import secrets
import sqlite3
import urllib.parse

import requests

ALICE = "did:plc:aliceaaaaaaaaaaaaaaaaaaa"
BOB = "did:plc:bobbbbbbbbbbbbbbbbbbbbbb"
CLAUDE_CALLBACK = "https://claude.ai/api/mcp/auth_callback"
CLAUDE_REGISTRATION = {  # what Claude.ai sends (mcp-and-claude-notes §1)
    "redirect_uris": [CLAUDE_CALLBACK],
    "token_endpoint_auth_method": "client_secret_post",
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "client_name": "Claude",
}


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def query_of(url: str) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query, keep_blank_values=True)


def register(server, **metadata) -> requests.Response:
    return requests.post(server.url + "/oauth/register", json=metadata)


def registered(server, **metadata) -> dict:
    response = register(server, **metadata)
    assert response.status_code == 201, response.text
    return response.json()


def set_role(server, slug: str, did: str, role: str | None) -> None:
    """Test setup for membership changes: the wiki issue's member commands are not on this branch,
    so the members table is written directly (None removes the member)."""
    db = sqlite3.connect(server.data / "robotwtf.db")
    try:
        wiki_id = db.execute("SELECT id FROM wikis WHERE slug = ?", (slug,)).fetchone()[0]
        db.execute("DELETE FROM members WHERE wiki_id = ? AND user_did = ?", (wiki_id, did))
        if role:
            db.execute("INSERT INTO members (wiki_id, user_did, role, added_at) VALUES (?, ?, ?, 0)",
                       (wiki_id, did, role))
        db.commit()
    finally:
        db.close()


@dataclasses.dataclass
class Flow:
    """One client's authorization code flow, with the person's signed-in browser."""

    server: object
    browser: requests.Session
    client: dict
    redirect_uri: str
    verifier: str = ""
    challenge: str = ""
    state: str = "state-123"

    def __post_init__(self):
        self.verifier, self.challenge = pkce()

    def resource(self, slug: str = "demo") -> str:
        return f"{self.server.url}/w/{slug}/mcp"

    def authorize_url(self, **params) -> str:
        """The authorization request; a parameter given as None is left out."""
        query = {"response_type": "code", "client_id": self.client["client_id"], "redirect_uri": self.redirect_uri,
                 "code_challenge": self.challenge, "code_challenge_method": "S256", "state": self.state,
                 "resource": self.resource(), "scope": "wiki:read wiki:write"}
        query.update(params)
        return self.server.url + "/oauth/authorize?" + urllib.parse.urlencode(
            [(k, v) for k, v in query.items() if v is not None])

    def consent_page(self, url: str | None = None) -> requests.Response:
        return self.browser.get(url or self.authorize_url(), allow_redirects=False)

    def decide(self, decision: str = "approve", scopes=("wiki:read", "wiki:write"), wiki: str | None = None,
               url: str | None = None) -> requests.Response:
        """Load the consent page, then submit the person's decision from it."""
        page = self.consent_page(url)
        assert page.status_code == 200, page.text
        action = html.unescape(re.search(r'<form id="consent" method="post" action="([^"]+)"', page.text)[1])
        fields = [("csrf_token", re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]),
                  ("decision", decision)] + [("grant_scope", scope) for scope in scopes]
        if wiki:
            fields.append(("wiki", wiki))
        return self.browser.post(self.server.url + action, data=fields, allow_redirects=False)

    def code(self, **authorize_params) -> str:
        url = self.authorize_url(**authorize_params)
        response = self.decide(url=url)
        assert response.status_code == 303, response.text
        return query_of(response.headers["Location"])["code"][0]

    def client_auth(self) -> dict:
        if self.client.get("client_secret"):
            return {"client_id": self.client["client_id"], "client_secret": self.client["client_secret"]}
        return {"client_id": self.client["client_id"]}

    def token(self, code: str, **params) -> requests.Response:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
                "code_verifier": self.verifier, "resource": self.resource(), **self.client_auth(), **params}
        return requests.post(self.server.url + "/oauth/token", data={k: v for k, v in data.items() if v is not None})

    def tokens(self, **authorize_params) -> dict:
        response = self.token(self.code(**authorize_params))
        assert response.status_code == 200, response.text
        return response.json()

    def refresh(self, refresh_token: str, **params) -> requests.Response:
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **self.client_auth(), **params}
        return requests.post(self.server.url + "/oauth/token", data=data)

    def revoke(self, token: str, **params) -> requests.Response:
        return requests.post(self.server.url + "/oauth/revoke", data={"token": token, **self.client_auth(), **params})
