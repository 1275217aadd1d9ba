"""authenticate_bearer — who an MCP request acts for — checked in-process against the data folder
the real server uses, and personal access tokens from the CLI and the "Connected apps" page."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import time

import pytest
import requests
from joserfc.jwk import RSAKey

import robotwtf as rw
import robotwtf_as
from oauth_flow import ALICE, BOB, CLAUDE_CALLBACK, CLAUDE_REGISTRATION, Flow, registered, set_role


@pytest.fixture
def world(server):
    """alice owns 'demo', bob edits it; both can sign in."""
    server.cli("user", "add", ALICE, "--username", "alice")
    server.cli("user", "add", BOB, "--username", "bob")
    server.cli("wiki", "create", "demo", "--owner", "alice", "--title", "Demo wiki")
    server.cli("wiki", "create", "other", "--owner", "alice")
    set_role(server, "demo", BOB, "editor")
    return server


@pytest.fixture
def inst(world) -> rw.Instance:
    return rw.Instance(rw.load_config({"data": str(world.data), "public_url": world.url}, environ={}))


@pytest.fixture
def bob_claude(world) -> Flow:
    return Flow(world, world.login("bob"), registered(world, **CLAUDE_REGISTRATION), CLAUDE_CALLBACK)


def resource(inst, slug: str = "demo") -> str:
    return f"{inst.cfg.public_url}/w/{slug}/mcp"


def bearer(inst, token: str, slug: str = "demo") -> robotwtf_as.Caller:
    return robotwtf_as.authenticate_bearer(inst, f"Bearer {token}", resource(inst, slug))


def refused(inst, header: str | None, slug: str = "demo") -> robotwtf_as.BearerError:
    with pytest.raises(robotwtf_as.BearerError) as caught:
        robotwtf_as.authenticate_bearer(inst, header, resource(inst, slug))
    assert caught.value.status == 401
    return caught.value


def claims_of(inst, token: str) -> dict:
    return inst.keys.verify_rs256(token, "at+jwt")


def sql(server, statement: str, *params) -> list:
    db = sqlite3.connect(server.data / "robotwtf.db")
    try:
        rows = db.execute(statement, params).fetchall()
        db.commit()
        return rows
    finally:
        db.close()


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# --- OAuth access tokens ------------------------------------------------------------------------

def test_a_valid_access_token_names_person_wiki_scopes_and_client(bob_claude, inst):
    caller = bearer(inst, bob_claude.tokens()["access_token"])
    assert caller == robotwtf_as.Caller(BOB, caller.wiki_id, "demo", frozenset({"wiki:read", "wiki:write"}),
                                        "mcp:Claude", grant_id=caller.grant_id)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic YWxpY2U6c2VjcmV0", "Token abc"])
def test_no_bearer_credential_is_a_challenge_without_error_code(inst, header):
    error = refused(inst, header)
    assert error.error is None  # RFC 6750 §3.1
    assert error.challenge("https://x/meta") == 'Bearer resource_metadata="https://x/meta"'


def test_challenge_names_the_error_for_a_bad_token(inst):
    error = refused(inst, "Bearer not-a-jwt")
    assert error.error == "invalid_token"
    assert error.challenge("https://x/meta") == (
        f'Bearer resource_metadata="https://x/meta", error="invalid_token", error_description="{error.description}"')
    assert error.description.isascii() and '"' not in error.description


def test_the_token_is_only_for_its_own_wiki(bob_claude, inst):
    token = bob_claude.tokens()["access_token"]
    assert refused(inst, f"Bearer {token}", "other").error == "invalid_token"
    assert refused(inst, f"Bearer {token}", "nosuchwiki").error == "invalid_token"


def forged(inst, token: str, header: dict | None = None, key=None, **changes) -> str:
    claims = {**claims_of(inst, token), **changes}
    claims = {name: value for name, value in claims.items() if value is not None}
    if key is not None:
        from joserfc import jwt
        return jwt.encode({"alg": "RS256", "typ": "at+jwt"}, claims, key)
    if header is not None:
        return f"{b64(header)}.{b64(claims)}."
    return inst.keys.sign_rs256(claims, "at+jwt")


@pytest.mark.parametrize("change", [
    {"exp": 1},
    {"iss": "https://evil.example"},
    {"aud": "https://evil.example/w/demo/mcp"},
    {"aud": None},
    {"sub": ALICE},
    {"client_id": "someone-else"},
    {"grant_id": 999999},
    {"grant_id": "1"},
    {"exp": "9999999999"},
    {"scope": None},
])
def test_claims_are_checked(bob_claude, inst, change):
    token = forged(inst, bob_claude.tokens()["access_token"], **change)
    assert refused(inst, f"Bearer {token}").error == "invalid_token"


def test_unsigned_other_key_and_other_type_tokens_are_refused(bob_claude, inst):
    token = bob_claude.tokens()["access_token"]
    none_alg = forged(inst, token, header={"alg": "none", "typ": "at+jwt"})
    other_key = forged(inst, token, key=RSAKey.generate_key(2048))
    session_typed = inst.keys.sign_rs256(claims_of(inst, token), "robotwtf-session+jwt")
    for bad in (none_alg, other_key, session_typed, token[:-4] + "AAAA"):
        assert refused(inst, f"Bearer {bad}").error == "invalid_token"


def test_a_revoked_grant_stops_the_next_request(bob_claude, inst):
    token = bob_claude.tokens()["access_token"]
    grant_id = bearer(inst, token).grant_id
    page = bob_claude.browser.get(bob_claude.server.url + "/account/apps")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]
    response = bob_claude.browser.post(f"{bob_claude.server.url}/account/apps/grants/{grant_id}/revoke",
                                       data={"csrf_token": csrf}, allow_redirects=False)
    assert response.status_code == 303
    assert refused(inst, f"Bearer {token}").error == "invalid_token"


def test_grant_ids_are_never_reused(bob_claude, inst):
    old = bob_claude.tokens()["access_token"]
    rw.revoke_grant(inst.db(), bearer(inst, old).grant_id)
    new = bob_claude.tokens()["access_token"]
    assert claims_of(inst, new)["grant_id"] != claims_of(inst, old)["grant_id"]
    assert refused(inst, f"Bearer {old}").error == "invalid_token"


def test_a_removed_member_is_stopped_at_once(bob_claude, inst):
    token = bob_claude.tokens()["access_token"]
    set_role(bob_claude.server, "demo", BOB, None)
    assert refused(inst, f"Bearer {token}").error == "invalid_token"


def test_a_lowered_role_drops_the_scopes_it_no_longer_allows(bob_claude, inst):
    token = bob_claude.tokens()["access_token"]
    set_role(bob_claude.server, "demo", BOB, "viewer")
    assert bearer(inst, token).scopes == {"wiki:read"}
    set_role(bob_claude.server, "demo", BOB, "editor")
    assert bearer(inst, token).scopes == {"wiki:read", "wiki:write"}


def test_a_write_only_grant_dies_when_the_role_drops_to_viewer(world, inst):
    flow = Flow(world, world.login("bob"), registered(world, **CLAUDE_REGISTRATION), CLAUDE_CALLBACK)
    token = flow.token(flow.code(scopes=["wiki:write"], scope="wiki:write")).json()
    set_role(world, "demo", BOB, "viewer")
    assert refused(inst, f"Bearer {token['access_token']}").error == "invalid_token"


def test_a_deleted_user_or_wiki_is_stopped_at_once(bob_claude, inst, world):
    token = bob_claude.tokens()["access_token"]
    rw.delete_user(inst.db(), BOB)
    assert refused(inst, f"Bearer {token}").error == "invalid_token"
    alice = Flow(world, world.login("alice"), registered(world, **CLAUDE_REGISTRATION), CLAUDE_CALLBACK)
    token = alice.tokens()["access_token"]
    db = sqlite3.connect(world.data / "robotwtf.db")
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("DELETE FROM wikis WHERE slug = 'demo'")
    db.commit()
    db.close()
    assert refused(inst, f"Bearer {token}").error == "invalid_token"


def test_last_used_is_written_at_most_once_a_minute(bob_claude, inst):
    token = bob_claude.tokens()["access_token"]
    grant_id = bearer(inst, token).grant_id
    now = int(time.time())
    sql(bob_claude.server, "UPDATE oauth_grants SET last_used_at = ? WHERE id = ?", now - 30, grant_id)
    bearer(inst, token)
    assert sql(bob_claude.server, "SELECT last_used_at FROM oauth_grants WHERE id = ?", grant_id)[0][0] == now - 30
    sql(bob_claude.server, "UPDATE oauth_grants SET last_used_at = ? WHERE id = ?", now - 61, grant_id)
    bearer(inst, token)
    assert sql(bob_claude.server, "SELECT last_used_at FROM oauth_grants WHERE id = ?", grant_id)[0][0] >= now


# --- personal access tokens ----------------------------------------------------------------------

def test_cli_token_create_prints_the_token_alone(world, inst):
    result = world.cli("token", "create", "demo", "--user", "bob")
    token = result.stdout.strip()
    assert result.stdout == token + "\n" and token.startswith("rwpat_") and len(token) > 40
    caller = bearer(inst, token)
    assert (caller.user_did, caller.wiki_slug, caller.scopes, caller.via) == (
        BOB, "demo", {"wiki:read", "wiki:write"}, "token:cli")
    assert caller.token_id is not None and caller.grant_id is None
    assert token.encode() not in (world.data / "robotwtf.db").read_bytes()


def test_cli_token_scope_and_name(world, inst):
    token = world.cli("token", "create", "demo", "--user", "alice", "--scope", "wiki:read", "--name", "ci").stdout
    caller = bearer(inst, token.strip())
    assert caller.scopes == {"wiki:read"} and caller.via == "token:ci"


@pytest.mark.parametrize("args, message", [
    (["demo", "--user", "bob", "--scope", "wiki:admin"], "Scopes are wiki:read and wiki:write"),
    (["demo", "--user", "bob", "--scope", ""], "Scopes are wiki:read and wiki:write"),
    (["other", "--user", "bob"], "You are not a member of a wiki 'other'"),
    (["nosuchwiki", "--user", "bob"], "You are not a member of a wiki 'nosuchwiki'"),
    (["demo", "--user", "nobody"], "No user is known as 'nobody'"),
    (["demo", "--user", "bob", "--name", ""], "A token needs a name"),
])
def test_cli_token_create_refuses_with_a_reason(world, args, message):
    result = world.cli("token", "create", *args, check=False)
    assert result.returncode == 1 and message in result.stderr and result.stdout == ""
    assert sql(world, "SELECT count(*) FROM personal_tokens")[0][0] == 0


def test_a_viewer_token_can_only_read(world, inst):
    set_role(world, "demo", BOB, "viewer")
    result = world.cli("token", "create", "demo", "--user", "bob", check=False)
    assert result.returncode == 1 and "As viewer of 'demo' you can hold only wiki:read" in result.stderr
    token = world.cli("token", "create", "demo", "--user", "bob", "--scope", "wiki:read").stdout.strip()
    assert bearer(inst, token).scopes == {"wiki:read"}


def test_personal_tokens_get_the_same_checks(world, inst):
    token = world.cli("token", "create", "demo", "--user", "bob").stdout.strip()
    assert refused(inst, f"Bearer {token}", "other").error == "invalid_token"
    assert refused(inst, f"Bearer {token}x").error == "invalid_token"
    set_role(world, "demo", BOB, "viewer")
    assert bearer(inst, token).scopes == {"wiki:read"}
    set_role(world, "demo", BOB, None)
    assert refused(inst, f"Bearer {token}").error == "invalid_token"


def test_an_expired_personal_token_is_refused(world, inst):
    token = world.cli("token", "create", "demo", "--user", "bob").stdout.strip()
    sql(world, "UPDATE personal_tokens SET expires_at = ?", int(time.time()) - 1)
    assert "expired" in refused(inst, f"Bearer {token}").description


def test_personal_token_last_used_is_recorded(world, inst):
    token = world.cli("token", "create", "demo", "--user", "bob").stdout.strip()
    assert sql(world, "SELECT last_used_at FROM personal_tokens")[0][0] is None
    bearer(inst, token)
    assert sql(world, "SELECT last_used_at FROM personal_tokens")[0][0] >= int(time.time()) - 5


# --- the Connected apps page -----------------------------------------------------------------------

def form_post(browser: requests.Session, url: str, fields: list) -> requests.Response:
    page = browser.get(url.rsplit("/account/apps", 1)[0] + "/account/apps")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)[1]
    return browser.post(url, data=[("csrf_token", csrf), *fields], allow_redirects=False)


def test_the_apps_page_needs_sign_in(world):
    response = requests.get(world.url + "/account/apps", allow_redirects=False)
    assert response.status_code == 303 and response.headers["Location"].startswith("/auth/login?")


def test_the_dashboard_links_to_connected_apps(world):
    assert 'href="/account/apps"' in world.login("bob").get(world.url + "/").text


def test_connected_apps_lists_each_grant_with_client_redirect_wiki_and_scopes(bob_claude, inst):
    bob_claude.tokens()
    page = bob_claude.browser.get(bob_claude.server.url + "/account/apps")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    row = re.search(r"<tr>\s*<td>Claude</td>.*?</tr>", page.text, re.S)[0]
    assert "claude.ai" in row and "/w/demo" in row and "wiki:read wiki:write" in row and "Revoke" in row
    alice_page = bob_claude.server.login("alice").get(bob_claude.server.url + "/account/apps")
    assert "<td>Claude</td>" not in alice_page.text


def test_nobody_revokes_another_persons_grant(bob_claude, inst):
    token = bob_claude.tokens()["access_token"]
    grant_id = bearer(inst, token).grant_id
    alice = bob_claude.server.login("alice")
    response = form_post(alice, f"{bob_claude.server.url}/account/apps/grants/{grant_id}/revoke", [])
    assert response.status_code == 404
    assert bearer(inst, token).user_did == BOB


def test_revoking_needs_the_csrf_token(bob_claude, inst):
    token = bob_claude.tokens()["access_token"]
    grant_id = bearer(inst, token).grant_id
    response = bob_claude.browser.post(f"{bob_claude.server.url}/account/apps/grants/{grant_id}/revoke",
                                       allow_redirects=False)
    assert response.status_code == 403
    assert bearer(inst, token).user_did == BOB


def test_a_personal_token_made_on_the_page_is_shown_once(world, inst):
    bob = world.login("bob")
    response = form_post(bob, world.url + "/account/apps/tokens", [
        ("name", "laptop"), ("wiki", "demo"), ("scope", "wiki:read"), ("expires_days", "30")])
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    token = re.search(r'<code class="secret">(rwpat_[^<]+)</code>', response.text)[1]
    caller = bearer(inst, token)
    assert caller.scopes == {"wiki:read"} and caller.via == "token:laptop"
    expires = sql(world, "SELECT expires_at FROM personal_tokens")[0][0]
    assert abs(expires - (int(time.time()) + 30 * 86400)) < 60
    again = bob.get(world.url + "/account/apps")
    assert token not in again.text and "laptop" in again.text


@pytest.mark.parametrize("fields, status, message", [
    ([("name", "x"), ("wiki", "demo"), ("scope", "wiki:read"), ("scope", "wiki:write")], 403, "you can hold only"),
    ([("name", "x"), ("wiki", "other"), ("scope", "wiki:read")], 403, "not a member"),
    ([("name", "x"), ("wiki", "demo")], 400, "Scopes are"),
    ([("name", ""), ("wiki", "demo"), ("scope", "wiki:read")], 400, "needs a name"),
    ([("name", "x"), ("wiki", "demo"), ("scope", "wiki:read"), ("expires_days", "0")], 400, "Expiry"),
    ([("name", "x"), ("wiki", "demo"), ("scope", "wiki:read"), ("expires_days", "soon")], 400, "Expiry"),
])
def test_the_page_refuses_tokens_the_person_may_not_have(world, fields, status, message):
    set_role(world, "demo", BOB, "viewer")
    response = form_post(world.login("bob"), world.url + "/account/apps/tokens", fields)
    assert response.status_code == status and message in response.text
    assert "rwpat_" not in response.text
    assert sql(world, "SELECT count(*) FROM personal_tokens")[0][0] == 0


def test_a_personal_token_revoked_on_the_page_stops_at_once(world, inst):
    token = world.cli("token", "create", "demo", "--user", "bob").stdout.strip()
    token_id = bearer(inst, token).token_id
    alice = world.login("alice")
    assert form_post(alice, f"{world.url}/account/apps/tokens/{token_id}/revoke", []).status_code == 404
    bob = world.login("bob")
    assert form_post(bob, f"{world.url}/account/apps/tokens/{token_id}/revoke", []).status_code == 303
    assert refused(inst, f"Bearer {token}").error == "invalid_token"
