"""Helpers for the authorization server's tests: `World` sets up people and wikis on a running
server through robotwtf's own storage functions (in-process, much faster than one CLI process per
step), and `Flow` is an OAuth client plus the person's browser, speaking the protocol over real HTTP."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import itertools
import re
import secrets
import urllib.parse

import requests

import robotwtf_store as store
from conftest import follow_login_link

CLAUDE_CALLBACK = "https://claude.ai/api/mcp/auth_callback"
CLAUDE_REGISTRATION = {  # what Claude.ai sends (mcp-and-claude-notes §1)
    "redirect_uris": [CLAUDE_CALLBACK],
    "token_endpoint_auth_method": "client_secret_post",
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "client_name": "Claude",
}
_numbers = itertools.count(1)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def query_of(url: str) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query, keep_blank_values=True)


def csrf_of(page: requests.Response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]


def register(server, **metadata) -> requests.Response:
    return requests.post(server.url + "/oauth/register", json=metadata)


def registered(server, **metadata) -> dict:
    response = register(server, **metadata)
    assert response.status_code == 201, response.text
    return response.json()


class World:
    """People and wikis on a running server, made with robotwtf's storage functions on its data
    folder; `inst` is the server's instance opened in-process (for authenticate_bearer)."""

    def __init__(self, server):
        self.server = server
        self.db = server.db()
        self.inst = store.Instance(store.load_config({"data": str(server.data), "public_url": server.url,
                                                      "database": server.env.get("ROBOTWTF_DATABASE_URL")}, environ={}))

    def person(self) -> str:
        number = next(_numbers)
        did = "did:plc:" + "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(24))
        store.add_user(self.db, did, username=f"person-{number}-{secrets.token_hex(3)}")
        return did

    def wiki(self, owner: str, title: str = "") -> str:
        """A new wiki owned by `owner`, with a slug no other test uses."""
        slug = f"wiki-{next(_numbers)}-{secrets.token_hex(3)}"
        store.create_wiki(self.db, slug, owner, title or f"Wiki {slug}", quotas=self.inst.cfg.quotas)
        return slug

    def set_role(self, slug: str, did: str, role: str | None) -> None:
        """Make `did` a member with `role`, change their role, or (role None) remove them."""
        wiki_id = store.get_wiki(self.db, slug)["id"]
        if role is None:
            store.remove_member(self.db, wiki_id, did)
        elif store.member_role(self.db, wiki_id, did) is None:
            store.add_member(self.db, wiki_id, did, role)
        else:
            store.set_member_role(self.db, wiki_id, did, role)

    def browser(self, did: str) -> requests.Session:
        """A browser signed in as `did` through a one-time login link."""
        token = store.create_login_link(self.db, did)
        browser = requests.Session()
        follow_login_link(browser, f"{self.server.url}/auth/login-link?token={token}")
        return browser

    def sql(self, statement: str, *params) -> list:
        return self.db.execute(statement, params).fetchall()

    def flow(self, owner: str | None = None, slug: str | None = None, client: dict | None = None,
             redirect_uri: str = CLAUDE_CALLBACK) -> "Flow":
        """A client (Claude-shaped unless given) about to ask `owner` (a new person) for `slug`
        (a new wiki of theirs)."""
        owner = owner or self.person()
        slug = slug or self.wiki(owner)
        client = client or registered(self.server, **CLAUDE_REGISTRATION)
        return Flow(self.server, self.browser(owner), client, redirect_uri, slug, owner)


@dataclasses.dataclass
class Flow:
    """One client's authorization code flow, with the signed-in person's browser."""

    server: object
    browser: requests.Session
    client: dict
    redirect_uri: str
    slug: str
    did: str
    verifier: str = ""
    challenge: str = ""
    state: str = "state-123"

    def __post_init__(self):
        self.verifier, self.challenge = pkce()

    def resource(self, slug: str | None = None) -> str:
        return f"{self.server.url}/w/{slug or self.slug}/mcp"

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
        fields = [("csrf_token", csrf_of(page)), ("decision", decision)] + [("grant_scope", s) for s in scopes]
        if wiki:
            fields.append(("wiki", wiki))
        return self.browser.post(self.server.url + action, data=fields, allow_redirects=False)

    def code(self, scopes=("wiki:read", "wiki:write"), **authorize_params) -> str:
        """A fresh authorization code, with a fresh PKCE pair (a challenge is good for one code)."""
        self.verifier, self.challenge = pkce()
        response = self.decide(scopes=scopes, url=self.authorize_url(**authorize_params))
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
