"""authenticate_bearer — who an MCP request acts for — checked in-process against the data folder
the real server uses; personal access tokens from the CLI and from the "Connected apps" page."""

from __future__ import annotations

import base64
import html
import json
import re
import time

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey

import robotwtf_store as store
import robotwtf_mcp
from conftest import start_server
from oauth_flow import Flow, World, csrf_of


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    srv = start_server(tmp_path_factory.mktemp("bearer") / "data",
                       env_extra={"ROBOTWTF_REGISTRATIONS_PER_MINUTE": "100000"})
    yield World(srv)
    srv.stop()


@pytest.fixture
def team(world):
    """A new wiki with an owner and an editor; returns (slug, owner DID, editor DID)."""
    owner, editor = world.person(), world.person()
    slug = world.wiki(owner)
    world.set_role(slug, editor, "editor")
    return slug, owner, editor


@pytest.fixture
def editor_flow(world, team) -> Flow:
    slug, _, editor = team
    return world.flow(editor, slug)


def resource(world, slug: str) -> str:
    return f"{world.server.url}/w/{slug}/mcp"


def bearer(world, token: str, slug: str) -> robotwtf_mcp.Caller:
    return robotwtf_mcp.authenticate_bearer(world.inst, f"Bearer {token}", resource(world, slug))


def refused(world, header: str | None, slug: str) -> robotwtf_mcp.BearerError:
    with pytest.raises(robotwtf_mcp.BearerError) as caught:
        robotwtf_mcp.authenticate_bearer(world.inst, header, resource(world, slug))
    assert caught.value.status == 401
    return caught.value


def claims_of(world, token: str) -> dict:
    return world.inst.keys.verify_rs256(token, "at+jwt")


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def cli_token(world, slug: str, did: str, *args: str) -> str:
    return world.server.cli("token", "create", slug, "--user", did, *args).stdout.strip()


# --- OAuth access tokens ------------------------------------------------------------------------

def test_a_valid_access_token_names_person_wiki_scopes_and_client(world, editor_flow):
    caller = bearer(world, editor_flow.tokens()["access_token"], editor_flow.slug)
    assert caller == robotwtf_mcp.Caller(editor_flow.did, caller.wiki_id, editor_flow.slug,
                                        frozenset({"wiki:read", "wiki:write"}), "mcp:Claude", grant_id=caller.grant_id)
    assert caller.wiki_id == store.get_wiki(world.db, editor_flow.slug)["id"]


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic YWxpY2U6c2VjcmV0", "Token abc"])
def test_no_bearer_credential_is_refused_without_error_code(world, header):
    assert refused(world, header, "demo").error is None  # RFC 6750 §3.1


def test_a_bad_token_is_invalid_token_with_a_header_safe_description(world):
    error = refused(world, "Bearer not-a-jwt", "demo")
    assert error.error == "invalid_token"
    assert error.description.isascii() and '"' not in error.description and "\\" not in error.description


def test_the_token_is_only_for_its_own_wiki(world, editor_flow, team):
    token = editor_flow.tokens()["access_token"]
    other = world.wiki(editor_flow.did)
    assert refused(world, f"Bearer {token}", other).error == "invalid_token"
    assert refused(world, f"Bearer {token}", "nosuchwiki").error == "invalid_token"


def forged(world, token: str, header: dict | None = None, key=None, **changes) -> str:
    claims = {**claims_of(world, token), **changes}
    claims = {name: value for name, value in claims.items() if value is not None}
    if key is not None:
        return jwt.encode({"alg": "RS256", "typ": "at+jwt"}, claims, key)
    if header is not None:
        return f"{b64(header)}.{b64(claims)}."
    return world.inst.keys.sign_rs256(claims, "at+jwt")


@pytest.mark.parametrize("change", [
    {"exp": 1},
    {"iss": "https://evil.example"},
    {"aud": "https://evil.example/w/demo/mcp"},
    {"aud": None},
    {"sub": "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"},
    {"client_id": "someone-else"},
    {"grant_id": 999999},
    {"grant_id": "1"},
    {"exp": "9999999999"},
    {"scope": None},
])
def test_claims_are_checked(world, editor_flow, change):
    token = forged(world, editor_flow.tokens()["access_token"], **change)
    assert refused(world, f"Bearer {token}", editor_flow.slug).error == "invalid_token"


def test_unsigned_other_key_and_other_type_tokens_are_refused(world, editor_flow):
    token = editor_flow.tokens()["access_token"]
    none_alg = forged(world, token, header={"alg": "none", "typ": "at+jwt"})
    other_key = forged(world, token, key=RSAKey.generate_key(2048))
    session_typed = world.inst.keys.sign_rs256(claims_of(world, token), "robotwtf-session+jwt")
    for bad in (none_alg, other_key, session_typed, token[:-4] + "AAAA"):
        assert refused(world, f"Bearer {bad}", editor_flow.slug).error == "invalid_token"


def test_a_grant_revoked_on_the_apps_page_stops_the_next_request(world, editor_flow):
    token = editor_flow.tokens()["access_token"]
    grant_id = bearer(world, token, editor_flow.slug).grant_id
    csrf = csrf_of(editor_flow.browser.get(world.server.url + "/account/apps"))
    response = editor_flow.browser.post(f"{world.server.url}/account/apps/grants/{grant_id}/revoke",
                                        data={"csrf_token": csrf}, allow_redirects=False)
    assert response.status_code == 303
    assert refused(world, f"Bearer {token}", editor_flow.slug).error == "invalid_token"


def test_grant_ids_are_never_reused(world, editor_flow):
    old = editor_flow.tokens()["access_token"]
    store.revoke_grant(world.db, bearer(world, old, editor_flow.slug).grant_id)
    new = editor_flow.tokens()["access_token"]
    assert claims_of(world, new)["grant_id"] > claims_of(world, old)["grant_id"]
    assert refused(world, f"Bearer {old}", editor_flow.slug).error == "invalid_token"


def test_a_removed_member_is_stopped_at_once(world, editor_flow):
    token = editor_flow.tokens()["access_token"]
    world.set_role(editor_flow.slug, editor_flow.did, None)
    assert refused(world, f"Bearer {token}", editor_flow.slug).error == "invalid_token"


def test_a_lowered_role_drops_the_scopes_it_no_longer_allows(world, editor_flow):
    token = editor_flow.tokens()["access_token"]
    world.set_role(editor_flow.slug, editor_flow.did, "viewer")
    assert bearer(world, token, editor_flow.slug).scopes == {"wiki:read"}
    world.set_role(editor_flow.slug, editor_flow.did, "editor")
    assert bearer(world, token, editor_flow.slug).scopes == {"wiki:read", "wiki:write"}


def test_a_write_only_grant_dies_when_the_role_drops_to_viewer(world, editor_flow):
    token = editor_flow.token(editor_flow.code(scopes=["wiki:write"], scope="wiki:write")).json()["access_token"]
    assert bearer(world, token, editor_flow.slug).scopes == {"wiki:write"}
    world.set_role(editor_flow.slug, editor_flow.did, "viewer")
    assert refused(world, f"Bearer {token}", editor_flow.slug).error == "invalid_token"


def test_a_deleted_user_is_stopped_at_once(world, editor_flow):
    token = editor_flow.tokens()["access_token"]
    store.delete_user(world.db, editor_flow.did)
    assert refused(world, f"Bearer {token}", editor_flow.slug).error == "invalid_token"


def test_a_deleted_wiki_is_stopped_at_once(world, editor_flow):
    token = editor_flow.tokens()["access_token"]
    store.delete_wiki(world.db, store.get_wiki(world.db, editor_flow.slug)["id"])
    assert refused(world, f"Bearer {token}", editor_flow.slug).error == "invalid_token"


def test_last_used_is_written_at_most_once_a_minute(world, editor_flow):
    token = editor_flow.tokens()["access_token"]
    grant_id = bearer(world, token, editor_flow.slug).grant_id
    now = int(time.time())
    world.sql("UPDATE oauth_grants SET last_used_at = ? WHERE id = ?", now - 30, grant_id)
    bearer(world, token, editor_flow.slug)
    assert world.sql("SELECT last_used_at FROM oauth_grants WHERE id = ?", grant_id)[0][0] == now - 30
    world.sql("UPDATE oauth_grants SET last_used_at = ? WHERE id = ?", now - 61, grant_id)
    bearer(world, token, editor_flow.slug)
    assert world.sql("SELECT last_used_at FROM oauth_grants WHERE id = ?", grant_id)[0][0] >= now


# --- personal access tokens ----------------------------------------------------------------------

def test_cli_token_create_prints_the_token_alone(world, team):
    slug, _, editor = team
    result = world.server.cli("token", "create", slug, "--user", editor)
    token = result.stdout.strip()
    assert result.stdout == token + "\n" and token.startswith("rwpat_") and len(token) > 40
    caller = bearer(world, token, slug)
    assert (caller.user_did, caller.wiki_slug, caller.scopes, caller.via) == (
        editor, slug, {"wiki:read", "wiki:write"}, "token:cli")
    assert caller.token_id is not None and caller.grant_id is None
    stored = world.sql("SELECT token_hash FROM personal_tokens WHERE id = ?", caller.token_id)[0][0]
    assert stored == store.hash_secret(token)


def test_cli_token_scope_and_name(world, team):
    slug, owner, _ = team
    caller = bearer(world, cli_token(world, slug, owner, "--scope", "wiki:read", "--name", "ci"), slug)
    assert caller.scopes == {"wiki:read"} and caller.via == "token:ci"


@pytest.mark.parametrize("args, message", [
    (["{slug}", "--user", "{editor}", "--scope", "wiki:admin"], "Scopes are wiki:read and wiki:write"),
    (["{slug}", "--user", "{editor}", "--scope", ""], "Scopes are wiki:read and wiki:write"),
    (["{other}", "--user", "{editor}"], "You are not a member of a wiki '{other}'"),
    (["nosuchwiki", "--user", "{editor}"], "You are not a member of a wiki 'nosuchwiki'"),
    (["{slug}", "--user", "nobody"], "No user is known as 'nobody'"),
    (["{slug}", "--user", "{editor}", "--name", ""], "A token needs a name"),
])
def test_cli_token_create_refuses_with_a_reason(world, team, args, message):
    slug, owner, editor = team
    names = {"slug": slug, "editor": editor, "other": world.wiki(owner)}
    before = world.sql("SELECT count(*) FROM personal_tokens")[0][0]
    result = world.server.cli("token", "create", *[arg.format(**names) for arg in args], check=False)
    assert result.returncode == 1 and message.format(**names) in result.stderr and result.stdout == ""
    assert world.sql("SELECT count(*) FROM personal_tokens")[0][0] == before


def test_a_viewer_token_can_only_read(world, team):
    slug, _, editor = team
    world.set_role(slug, editor, "viewer")
    result = world.server.cli("token", "create", slug, "--user", editor, check=False)
    assert result.returncode == 1 and f"As viewer of '{slug}' you can hold only wiki:read" in result.stderr
    assert bearer(world, cli_token(world, slug, editor, "--scope", "wiki:read"), slug).scopes == {"wiki:read"}


def test_personal_tokens_get_the_same_checks(world, team):
    slug, owner, editor = team
    token = cli_token(world, slug, editor)
    assert refused(world, f"Bearer {token}", world.wiki(owner)).error == "invalid_token"
    assert refused(world, f"Bearer {token}x", slug).error == "invalid_token"
    world.set_role(slug, editor, "viewer")
    assert bearer(world, token, slug).scopes == {"wiki:read"}
    world.set_role(slug, editor, None)
    assert refused(world, f"Bearer {token}", slug).error == "invalid_token"


def test_an_expired_personal_token_is_refused(world, team):
    slug, _, editor = team
    token = cli_token(world, slug, editor)
    world.sql("UPDATE personal_tokens SET expires_at = ? WHERE token_hash = ?", int(time.time()) - 1,
              store.hash_secret(token))
    assert "expired" in refused(world, f"Bearer {token}", slug).description


def test_personal_token_last_used_is_recorded(world, team):
    slug, _, editor = team
    token = cli_token(world, slug, editor)
    token_id = bearer(world, token, slug).token_id
    assert world.sql("SELECT last_used_at FROM personal_tokens WHERE id = ?", token_id)[0][0] >= int(time.time()) - 5


# --- the Connected apps page -----------------------------------------------------------------------

def form_post(browser: requests.Session, base: str, path: str, fields: list) -> requests.Response:
    csrf = csrf_of(browser.get(base + "/account/apps"))
    return browser.post(base + path, data=[("csrf_token", csrf), *fields], allow_redirects=False)


def test_the_apps_page_needs_sign_in(world):
    response = requests.get(world.server.url + "/account/apps", allow_redirects=False)
    assert response.status_code == 303 and response.headers["Location"].startswith("/auth/login?")


def test_the_dashboard_links_to_connected_apps(world):
    assert 'href="/account/apps"' in world.browser(world.person()).get(world.server.url + "/").text


def test_connected_apps_lists_each_grant_with_client_redirect_wiki_and_scopes(world, editor_flow, team):
    editor_flow.tokens()
    page = editor_flow.browser.get(world.server.url + "/account/apps")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    row = re.search(r"<tr>\s*<td>Claude</td>.*?</tr>", page.text, re.S)[0]
    assert "claude.ai" in row and f"/w/{editor_flow.slug}" in row and "wiki:read wiki:write" in row
    assert "Revoke" in row
    owner_page = world.browser(team[1]).get(world.server.url + "/account/apps")
    assert "<td>Claude</td>" not in owner_page.text


def test_nobody_revokes_another_persons_grant(world, editor_flow, team):
    token = editor_flow.tokens()["access_token"]
    grant_id = bearer(world, token, editor_flow.slug).grant_id
    owner = world.browser(team[1])
    assert form_post(owner, world.server.url, f"/account/apps/grants/{grant_id}/revoke", []).status_code == 404
    assert bearer(world, token, editor_flow.slug).user_did == editor_flow.did


def test_revoking_needs_the_csrf_token(world, editor_flow):
    token = editor_flow.tokens()["access_token"]
    grant_id = bearer(world, token, editor_flow.slug).grant_id
    response = editor_flow.browser.post(f"{world.server.url}/account/apps/grants/{grant_id}/revoke",
                                        allow_redirects=False)
    assert response.status_code == 403
    assert bearer(world, token, editor_flow.slug).user_did == editor_flow.did


def test_a_personal_token_made_on_the_page_is_shown_once(world, team):
    slug, _, editor = team
    browser = world.browser(editor)
    response = form_post(browser, world.server.url, "/account/apps/tokens", [
        ("name", "laptop"), ("wiki", slug), ("scope", "wiki:read"), ("expires_days", "30")])
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    token = re.search(r'<code class="secret">(rwpat_[^<]+)</code>', response.text)[1]
    assert (f'claude mcp add --transport http {slug} {world.server.url}/w/{slug}/mcp --header '
            f'"Authorization: Bearer {token}"') in html.unescape(response.text)
    caller = bearer(world, token, slug)
    assert caller.scopes == {"wiki:read"} and caller.via == "token:laptop"
    expires = world.sql("SELECT expires_at FROM personal_tokens WHERE id = ?", caller.token_id)[0][0]
    assert abs(expires - (int(time.time()) + 30 * 86400)) < 60
    again = browser.get(world.server.url + "/account/apps")
    assert token not in again.text and "laptop" in again.text


@pytest.mark.parametrize("fields, status, message", [
    ([("name", "x"), ("wiki", "{slug}"), ("scope", "wiki:read"), ("scope", "wiki:write")], 403, "you can hold only"),
    ([("name", "x"), ("wiki", "{other}"), ("scope", "wiki:read")], 403, "not a member"),
    ([("name", "x"), ("wiki", "{slug}")], 400, "Scopes are"),
    ([("name", ""), ("wiki", "{slug}"), ("scope", "wiki:read")], 400, "needs a name"),
    ([("name", "x"), ("wiki", "{slug}"), ("scope", "wiki:read"), ("expires_days", "0")], 400, "Expiry"),
    ([("name", "x"), ("wiki", "{slug}"), ("scope", "wiki:read"), ("expires_days", "soon")], 400, "Expiry"),
])
def test_the_page_refuses_tokens_the_person_may_not_have(world, team, fields, status, message):
    slug, owner, editor = team
    world.set_role(slug, editor, "viewer")
    names = {"slug": slug, "other": world.wiki(owner)}
    response = form_post(world.browser(editor), world.server.url, "/account/apps/tokens",
                         [(name, value.format(**names)) for name, value in fields])
    assert response.status_code == status and message in response.text
    assert "rwpat_" not in response.text
    assert world.sql("SELECT count(*) FROM personal_tokens WHERE user_did = ?", editor)[0][0] == 0


def test_a_personal_token_revoked_on_the_page_stops_at_once(world, team):
    slug, owner, editor = team
    token = cli_token(world, slug, editor)
    token_id = bearer(world, token, slug).token_id
    path = f"/account/apps/tokens/{token_id}/revoke"
    assert form_post(world.browser(owner), world.server.url, path, []).status_code == 404
    assert form_post(world.browser(editor), world.server.url, path, []).status_code == 303
    assert refused(world, f"Bearer {token}", slug).error == "invalid_token"
