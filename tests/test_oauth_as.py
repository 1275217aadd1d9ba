"""The OAuth 2.1 authorization server over real HTTP: discovery, registration, the authorization
endpoint and consent, the token endpoint, refresh rotation and revocation. One server serves the
module; every test makes its own people, wiki and client, so tests stay independent. Access tokens
are checked with robotwtf_mcp.authenticate_bearer in-process, on the server's own data folder."""

from __future__ import annotations

import base64
import html
import json
import re
import threading
import time

import pytest
import requests
from authlib.oauth2 import rfc8414, rfc9207
from joserfc import jwt
from joserfc.jwk import KeySet

import robotwtf_store as store
import robotwtf_mcp
from conftest import start_server
from oauth_flow import (CLAUDE_CALLBACK, CLAUDE_REGISTRATION, Flow, World, csrf_of, pkce, query_of, register,
                        registered)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    srv = start_server(tmp_path_factory.mktemp("as") / "data",
                       env_extra={"ROBOTWTF_REGISTRATIONS_PER_MINUTE": "100000"})
    yield World(srv)
    srv.stop()


@pytest.fixture
def claude(world) -> Flow:
    """Claude.ai's connector (confidential, client_secret_post, sends resource, never refreshes),
    about to ask a new person for their new wiki."""
    return world.flow()


@pytest.fixture
def public_client(world) -> Flow:
    """A native app: public client (token_endpoint_auth_method none) on a loopback redirect."""
    client = registered(world.server, redirect_uris=["http://127.0.0.1/callback"], token_endpoint_auth_method="none",
                        grant_types=["authorization_code", "refresh_token"], client_name="Loopback app")
    return world.flow(client=client, redirect_uri="http://127.0.0.1:53682/callback")


@pytest.fixture
def inst(world) -> store.Instance:
    return world.inst


def bearer(inst, token: str, resource: str) -> robotwtf_mcp.Caller:
    return robotwtf_mcp.authenticate_bearer(inst, f"Bearer {token}", resource)


def refused(inst, token: str, resource: str) -> robotwtf_mcp.BearerError:
    with pytest.raises(robotwtf_mcp.BearerError) as caught:
        bearer(inst, token, resource)
    return caught.value


def oauth_error(response: requests.Response, status: int, error: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["error"] == error, body
    return body


def client_count(world) -> int:
    return world.sql("SELECT count(*) FROM oauth_clients")[0][0]


# --- discovery ----------------------------------------------------------------------------------

def test_authorization_server_metadata_validates_against_rfc8414_and_rfc9207(world):
    url = world.server.url
    response = requests.get(url + "/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    document = response.json()
    rfc8414.AuthorizationServerMetadata(document).validate(metadata_classes=[rfc9207.AuthorizationServerMetadata])
    assert document["issuer"] == url  # exactly the public URL, no trailing slash (RFC 8414 §3.3)
    assert document["authorization_endpoint"] == url + "/oauth/authorize"
    assert document["token_endpoint"] == url + "/oauth/token"
    assert document["registration_endpoint"] == url + "/oauth/register"
    assert document["revocation_endpoint"] == url + "/oauth/revoke"
    assert document["jwks_uri"] == url + "/.well-known/jwks.json"
    assert document["scopes_supported"] == ["wiki:read", "wiki:write"]
    assert document["response_types_supported"] == ["code"]
    assert document["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert set(document["token_endpoint_auth_methods_supported"]) == {"client_secret_post", "client_secret_basic",
                                                                      "none"}
    assert document["authorization_response_iss_parameter_supported"] is True
    assert document["client_id_metadata_document_supported"] is True


def test_issuer_follows_the_public_url_not_the_host_header(world):
    document = requests.get(world.server.url + "/.well-known/oauth-authorization-server",
                            headers={"Host": "evil.example"}).json()
    assert document["issuer"] == world.server.url


def test_no_openid_configuration_because_this_is_not_an_openid_provider(world):
    assert requests.get(world.server.url + "/.well-known/openid-configuration").status_code == 404


def test_protected_resource_metadata_answers_every_well_formed_slug_alike(world):
    slug = world.wiki(world.person(), title="Secret plans")
    url = world.server.url
    existing = requests.get(f"{url}/.well-known/oauth-protected-resource/w/{slug}/mcp")
    missing = requests.get(f"{url}/.well-known/oauth-protected-resource/w/nosuchwiki/mcp")
    assert existing.status_code == missing.status_code == 200
    assert existing.headers["Access-Control-Allow-Origin"] == "*"
    document = existing.json()
    assert document == {"resource": f"{url}/w/{slug}/mcp", "authorization_servers": [url],
                        "scopes_supported": ["wiki:read", "wiki:write"], "bearer_methods_supported": ["header"],
                        "resource_name": document["resource_name"]}
    assert "Secret plans" not in existing.text  # nothing a stranger could not guess
    assert missing.json()["resource"] == url + "/w/nosuchwiki/mcp"
    assert set(missing.json()) == set(document)


@pytest.mark.parametrize("slug", ["ab", "admin", "Demo", "-demo", "a" * 31])
def test_protected_resource_metadata_404_for_names_no_wiki_can_have(world, slug):
    response = requests.get(f"{world.server.url}/.well-known/oauth-protected-resource/w/{slug}/mcp")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_jwks_publishes_the_key_access_tokens_verify_with(claude):
    response = requests.get(claude.server.url + "/.well-known/jwks.json")
    assert response.status_code == 200 and response.headers["Access-Control-Allow-Origin"] == "*"
    keys = response.json()["keys"]
    assert [(key["kty"], key["alg"]) for key in keys] == [("RSA", "RS256")] and keys[0]["kid"]
    assert "d" not in keys[0]  # public only
    token = claude.tokens()["access_token"]
    decoded = jwt.decode(token, KeySet.import_key_set({"keys": keys}), algorithms=["RS256"])
    assert decoded.header["kid"] == keys[0]["kid"]


@pytest.mark.parametrize("path", ["/.well-known/oauth-authorization-server", "/.well-known/jwks.json",
                                  "/.well-known/oauth-protected-resource/w/demo/mcp", "/oauth/token",
                                  "/oauth/register", "/oauth/revoke"])
def test_machine_endpoints_answer_cors_preflight_without_credentials(world, path):
    response = requests.options(world.server.url + path, headers={"Origin": "https://app.example",
                                                                  "Access-Control-Request-Method": "POST"})
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_authorization_endpoint_has_no_cors(claude):
    preflight = requests.options(claude.server.url + "/oauth/authorize", headers={"Origin": "https://app.example"})
    assert preflight.status_code == 405
    page = claude.consent_page()
    assert page.status_code == 200 and "Access-Control-Allow-Origin" not in page.headers


# --- registration (RFC 7591) ----------------------------------------------------------------------

def test_claude_registration_gets_a_secret_once_stored_only_as_hash(world):
    response = register(world.server, **CLAUDE_REGISTRATION)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    client = response.json()
    assert client["client_name"] == "Claude"
    assert client["redirect_uris"] == [CLAUDE_CALLBACK]
    assert client["token_endpoint_auth_method"] == "client_secret_post"
    assert client["grant_types"] == ["authorization_code", "refresh_token"]
    assert len(client["client_secret"]) >= 43 and client["client_secret_expires_at"] == 0
    assert not client["client_id"].startswith("http")
    stored = world.sql("SELECT secret_hash FROM oauth_clients WHERE client_id = ?", client["client_id"])[0][0]
    assert stored == store.hash_secret(client["client_secret"])


def test_public_client_registration_gets_no_secret(world):
    client = registered(world.server, redirect_uris=["http://127.0.0.1/cb"], token_endpoint_auth_method="none")
    assert "client_secret" not in client
    assert client["token_endpoint_auth_method"] == "none"


def test_registration_defaults_and_ignores_unknown_metadata(world):
    client = registered(world.server, redirect_uris=["https://app.example/cb"], software_id="x",
                        scope="openid profile", contacts="not a list", jwks="not a key set", tos_uri=7)
    assert client["token_endpoint_auth_method"] == "client_secret_basic"  # RFC 7591 §2 default
    assert client["grant_types"] == ["authorization_code"] and client["response_types"] == ["code"]
    assert not {"software_id", "scope", "contacts", "jwks", "tos_uri"} & set(client)


@pytest.mark.parametrize("uri", [
    "https://claude.ai/api/mcp/auth_callback", "https://app.example:8443/cb?x=1", "http://127.0.0.1/cb",
    "http://127.0.0.1:33418/", "http://[::1]:8080/cb", "http://localhost:3000/callback", "com.example.app:/oauth",
    "cursor://anysphere.cursor-mcp/oauth/callback",
])
def test_registration_accepts_https_loopback_and_private_use_redirects(world, uri):
    assert registered(world.server, redirect_uris=[uri])["redirect_uris"] == [uri]


@pytest.mark.parametrize("uri", [
    "javascript:alert(1)", "JavaScript://host/%0aalert(1)", " javascript:alert(1)", "\x01javascript:alert(1)",
    "data:text/html,hi", "vbscript:msgbox(1)", "file:///etc/passwd", "blob:https://app.example/x",
    "about:blank", "http://app.example/cb", "http://127.0.0.1.nip.io/cb", "http://localhost.evil.example/cb",
    "https://app.example/cb#frag", "https://*.app.example/cb", "https://app.example/cb\r\nX: y",
    "https://user:pw@app.example/cb", "https://app.example@evil.example/cb", "/relative/cb", "https:///cb",
    "https://app.example:99999/cb", "HTTPS://app.example/cb", "", 42,
])
def test_registration_refuses_dangerous_redirect_uris(world, uri):
    before = client_count(world)
    oauth_error(register(world.server, redirect_uris=[uri]), 400, "invalid_redirect_uri")
    assert client_count(world) == before


@pytest.mark.parametrize("metadata, error", [
    ({"redirect_uris": None, "client_name": "x"}, "invalid_redirect_uri"),
    ({"redirect_uris": []}, "invalid_redirect_uri"),
    ({"redirect_uris": "https://app.example/cb"}, "invalid_redirect_uri"),
    ({"redirect_uris": [f"https://app.example/{n}" for n in range(11)]}, "invalid_redirect_uri"),
    ({"grant_types": ["client_credentials"]}, "invalid_client_metadata"),
    ({"grant_types": ["implicit"], "response_types": ["token"]}, "invalid_client_metadata"),
    ({"grant_types": ["refresh_token"]}, "invalid_client_metadata"),
    ({"response_types": ["code", "token"]}, "invalid_client_metadata"),
    ({"token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"),
    ({"client_name": "Claude\u202e"}, "invalid_client_metadata"),
    ({"client_name": "x" * 101}, "invalid_client_metadata"),
    ({"client_name": 7}, "invalid_client_metadata"),
    ({"logo_uri": "javascript:alert(1)"}, "invalid_client_metadata"),
    ({"client_uri": "http://app.example"}, "invalid_client_metadata"),
    ({"client_uri": ["https://app.example"]}, "invalid_client_metadata"),
    ({"grant_types": [["authorization_code"]]}, "invalid_client_metadata"),
    ({"grant_types": "authorization_code"}, "invalid_client_metadata"),
    ({"response_types": [["code"]]}, "invalid_client_metadata"),
    ({"token_endpoint_auth_method": ["none"]}, "invalid_client_metadata"),
    ({"redirect_uris": [["https://app.example/cb"]]}, "invalid_redirect_uri"),
])
def test_registration_refuses_unsupported_metadata(world, metadata, error):
    before = client_count(world)
    metadata = {"redirect_uris": ["https://app.example/cb"], **metadata}
    oauth_error(register(world.server, **{k: v for k, v in metadata.items() if v is not None}), 400, error)
    assert client_count(world) == before


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"', b"{}"])
def test_registration_needs_a_json_object(world, body):
    response = requests.post(world.server.url + "/oauth/register", data=body,
                             headers={"Content-Type": "application/json"})
    oauth_error(response, 400, "invalid_client_metadata")


def test_registration_is_rate_limited_per_address(tmp_path):
    srv = start_server(tmp_path / "data", env_extra={"ROBOTWTF_REGISTRATIONS_PER_MINUTE": "2"})
    try:
        assert register(srv, redirect_uris=["https://app.example/cb"]).status_code == 201
        assert register(srv, redirect_uris=["https://app.example/cb"]).status_code == 201
        limited = register(srv, redirect_uris=["https://app.example/cb"])
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["error"] == "rate_limited"
        assert limited.headers["Access-Control-Allow-Origin"] == "*"
    finally:
        srv.stop()


def test_clients_without_a_connection_for_a_month_are_forgotten(world):
    connected = world.flow()
    connected.tokens()
    stale = registered(world.server, **CLAUDE_REGISTRATION)
    world.sql("UPDATE oauth_clients SET created_at = ? WHERE client_id IN (?, ?)", int(time.time()) - 31 * 86400,
              connected.client["client_id"], stale["client_id"])
    registered(world.server, **CLAUDE_REGISTRATION)  # registering prunes
    kept = {row[0] for row in world.sql("SELECT client_id FROM oauth_clients")}
    assert connected.client["client_id"] in kept and stale["client_id"] not in kept


# --- the authorization endpoint and consent ----------------------------------------------------

def test_sign_in_comes_first_and_the_whole_request_survives_it(world):
    owner = world.person()
    slug = world.wiki(owner, title="Garden notes")
    flow = world.flow(owner, slug)
    url = flow.authorize_url()
    anonymous = requests.get(url, allow_redirects=False)
    assert anonymous.status_code == 303
    location = anonymous.headers["Location"]
    assert location.startswith("/auth/login?")
    return_to = query_of(location)["return_to"][0]
    assert world.server.url + return_to == url
    page = flow.browser.get(world.server.url + return_to, allow_redirects=False)
    assert page.status_code == 200
    assert "Claude" in page.text and "claude.ai" in page.text and "Garden notes" in page.text
    assert "wiki:read" in page.text and "wiki:write" in page.text


def test_consent_page_cannot_be_framed_and_leaks_no_referrer(claude):
    page = claude.consent_page()
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"


def test_client_name_is_shown_as_text_never_markup(world):
    client = registered(world.server, redirect_uris=["https://app.example/cb"], client_name="<b>Claude</b>",
                        token_endpoint_auth_method="none")
    page = world.flow(client=client, redirect_uri="https://app.example/cb").consent_page()
    assert "<b>Claude</b>" not in page.text and "&lt;b&gt;Claude&lt;/b&gt;" in page.text


def test_approval_redirects_with_code_state_and_iss_once_each(claude):
    response = claude.decide()
    assert response.status_code == 303  # never 307 (RFC 9700 §4.12)
    location = response.headers["Location"]
    assert location.startswith(CLAUDE_CALLBACK + "?")
    params = query_of(location)
    assert params["state"] == ["state-123"] and params["iss"] == [claude.server.url] and len(params["code"]) == 1
    assert set(params) == {"code", "state", "iss"}


def test_deny_redirects_access_denied_with_state_and_iss(claude):
    response = claude.decide("deny")
    assert response.status_code == 303
    params = query_of(response.headers["Location"])
    assert params == {"error": ["access_denied"], "state": ["state-123"], "iss": [claude.server.url]}


def test_redirect_uri_query_is_kept(world):
    client = registered(world.server, redirect_uris=["https://app.example/cb?tenant=7"],
                        token_endpoint_auth_method="none")
    flow = world.flow(client=client, redirect_uri="https://app.example/cb?tenant=7")
    params = query_of(flow.decide().headers["Location"])
    assert params["tenant"] == ["7"] and "code" in params


def test_consent_post_needs_the_csrf_token(claude):
    claude.consent_page()
    response = claude.browser.post(claude.authorize_url(), data={"decision": "approve", "grant_scope": "wiki:read"},
                                   allow_redirects=False)
    assert response.status_code == 403 and "Location" not in response.headers


def test_consent_post_from_another_signed_in_person_is_refused(claude, world):
    csrf = csrf_of(claude.consent_page())
    mallory = world.browser(world.person())
    response = mallory.post(claude.authorize_url(), data={"csrf_token": csrf, "decision": "approve",
                                                          "grant_scope": "wiki:read"}, allow_redirects=False)
    assert response.status_code == 403 and "Location" not in response.headers


def test_unknown_client_gets_an_error_page_never_a_redirect(claude):
    response = claude.browser.get(claude.authorize_url(client_id="no-such-client"), allow_redirects=False)
    assert response.status_code == 400 and "Location" not in response.headers
    assert "claude.ai" not in response.text


@pytest.mark.parametrize("params", [
    {"redirect_uri": CLAUDE_CALLBACK + '"'}, {"redirect_uri": CLAUDE_CALLBACK + "\r\nX: y"},
    {"redirect_uri": CLAUDE_CALLBACK + "\u00e9"}, {"redirect_uri": CLAUDE_CALLBACK + "\\"},
    {"response_type": 'code"'}, {"response_type": "\u00e9"}, {"response_type": "code\\"},
])
def test_hostile_characters_in_parameters_get_an_error_page(claude, params):
    response = claude.consent_page(claude.authorize_url(**params))
    assert response.status_code == 400 and "Location" not in response.headers and "go back to" not in response.text


@pytest.mark.parametrize("redirect_uri", [
    CLAUDE_CALLBACK + "/../FAKEPATH", CLAUDE_CALLBACK + "%2F..%2FFAKEPATH", CLAUDE_CALLBACK + "FAKEPATH",
    CLAUDE_CALLBACK + "/", CLAUDE_CALLBACK + ";x", CLAUDE_CALLBACK + "?code=attacker", CLAUDE_CALLBACK + "#_",
    CLAUDE_CALLBACK + "%0d%0aX:y", CLAUDE_CALLBACK.upper(), "https://CLAUDE.AI/api/mcp/auth_callback",
    "https://claude.ai.evil.example/api/mcp/auth_callback", "https://evil.example/api/mcp/auth_callback",
    "http://claude.ai/api/mcp/auth_callback", "https://claude.ai:443/api/mcp/auth_callback",
    "https://claude.ai/api/mcp/auth_callback/%2e%2e/x", "https://evil.example@claude.ai/api/mcp/auth_callback",
])
def test_redirect_uri_must_match_exactly(claude, redirect_uri):
    response = claude.browser.get(claude.authorize_url(redirect_uri=redirect_uri), allow_redirects=False)
    assert response.status_code == 400 and "Location" not in response.headers
    assert "go back to" not in response.text


def test_loopback_redirect_may_use_any_port_but_nothing_else_may_differ(public_client):
    assert public_client.decide().status_code == 303  # registered without a port, used with 53682
    for other in ("http://127.0.0.1:53682/callback/", "http://localhost:53682/callback",
                  "https://127.0.0.1:53682/callback", "http://127.0.0.1:53682/other"):
        response = public_client.consent_page(public_client.authorize_url(redirect_uri=other))
        assert response.status_code == 400, other


def test_redirect_uri_may_be_left_out_only_when_one_is_registered(world):
    single = world.flow(client=registered(world.server, redirect_uris=["https://app.example/cb"],
                                          token_endpoint_auth_method="none"), redirect_uri="https://app.example/cb")
    code = single.code(redirect_uri=None)
    assert single.token(code, redirect_uri=None).status_code == 200
    double = world.flow(client=registered(world.server, redirect_uris=["https://app.example/a", "https://app.example/b"],
                                          token_endpoint_auth_method="none"), redirect_uri="https://app.example/a")
    response = double.consent_page(double.authorize_url(redirect_uri=None))
    assert response.status_code == 400 and "Location" not in response.headers


@pytest.mark.parametrize("params, error", [
    ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
    ({"code_challenge_method": None}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": "S512"}, "invalid_request"),
    ({"code_challenge": "short"}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"resource": "https://evil.example/w/demo/mcp"}, "invalid_target"),
    ({"resource": "{url}/w/demo/mcp/"}, "invalid_target"),
    ({"resource": "{url}/w/demo/mcp#x"}, "invalid_target"),
    ({"resource": "{url}/w/demo"}, "invalid_target"),
    ({"resource": "{url}/w/ADMIN/mcp"}, "invalid_target"),
])
def test_invalid_requests_show_the_error_with_a_link_back_never_redirect(claude, params, error):
    params = {k: v.format(url=claude.server.url) if isinstance(v, str) else v for k, v in params.items()}
    response = claude.consent_page(claude.authorize_url(**params))
    assert response.status_code == 400 and "Location" not in response.headers
    link = html.unescape(re.search(r'<a href="([^"]+)">go back to', response.text)[1])
    assert link.startswith(CLAUDE_CALLBACK + "?")
    assert query_of(link)["error"] == [error]
    assert query_of(link)["state"] == ["state-123"] and query_of(link)["iss"] == [claude.server.url]


def test_a_valid_request_is_not_an_error(claude):
    assert claude.consent_page().status_code == 200


def test_repeated_parameters_are_refused(claude):
    response = claude.consent_page(claude.authorize_url() + "&state=second")
    assert response.status_code == 400 and "repeated" in response.text and "Location" not in response.headers


def test_a_code_challenge_can_be_used_once(claude):
    claude.code()
    response = claude.consent_page()
    assert response.status_code == 400 and "code_challenge was used before" in response.text


def test_unknown_scopes_are_dropped_and_no_scope_means_both(claude):
    page = claude.consent_page(claude.authorize_url(scope="openid wiki:read profile"))
    assert 'value="wiki:read"' in page.text and 'value="wiki:write"' not in page.text
    page = claude.consent_page(claude.authorize_url(scope=None))
    assert 'value="wiki:read"' in page.text and 'value="wiki:write"' in page.text


def test_the_person_may_narrow_the_scopes(claude, inst):
    tokens = claude.token(claude.code(scopes=["wiki:read"])).json()
    assert tokens["scope"] == "wiki:read"
    assert bearer(inst, tokens["access_token"], claude.resource()).scopes == {"wiki:read"}


def test_the_person_cannot_widen_the_scopes(claude):
    url = claude.authorize_url(scope="wiki:read")
    response = claude.decide(scopes=["wiki:read", "wiki:write"], url=url)
    assert response.status_code == 400 and "Location" not in response.headers
    assert "only narrow" in response.text


def test_nothing_ticked_is_not_an_approval(claude):
    response = claude.decide(scopes=[])
    assert response.status_code == 400 and "Location" not in response.headers


def test_a_viewer_cannot_grant_write(world, inst):
    owner, viewer = world.person(), world.person()
    slug = world.wiki(owner)
    world.set_role(slug, viewer, "viewer")
    flow = world.flow(viewer, slug)
    page = flow.consent_page()
    assert 'value="wiki:write" disabled' in page.text and "your role cannot grant this" in page.text
    refused_write = flow.decide(scopes=["wiki:read", "wiki:write"])
    assert refused_write.status_code == 403 and "Location" not in refused_write.headers
    tokens = flow.token(flow.code(scopes=["wiki:read"])).json()
    assert tokens["scope"] == "wiki:read"
    assert bearer(inst, tokens["access_token"], flow.resource()).scopes == {"wiki:read"}
    flow.verifier, flow.challenge = pkce()
    write_only = flow.consent_page(flow.authorize_url(scope="wiki:write"))
    assert 'value="approve"' not in write_only.text and 'value="deny"' in write_only.text


def test_a_non_member_cannot_connect_an_app_to_the_wiki(world):
    slug = world.wiki(world.person(), title="Not yours")
    flow = world.flow(world.person(), slug)
    page = flow.consent_page()
    assert f"You are not a member of a wiki at /w/{slug}" in page.text and 'value="approve"' not in page.text
    assert "Not yours" not in page.text
    response = flow.decide()
    assert response.status_code == 403 and "Location" not in response.headers
    assert flow.decide("deny").status_code == 303


def test_without_resource_the_person_picks_among_their_own_wikis(world, inst):
    person, stranger = world.person(), world.person()
    first, second, foreign = world.wiki(person), world.wiki(person), world.wiki(stranger)
    flow = world.flow(person, first)
    url = flow.authorize_url(resource=None)
    page = flow.consent_page(url)
    assert f'value="{first}"' in page.text and f'value="{second}"' in page.text and foreign not in page.text
    assert flow.decide(url=url, wiki=foreign).status_code == 403
    flow.verifier, flow.challenge = pkce()
    url = flow.authorize_url(resource=None)
    code = query_of(flow.decide(url=url, wiki=second).headers["Location"])["code"][0]
    tokens = flow.token(code, resource=None).json()
    assert bearer(inst, tokens["access_token"], flow.resource(second)).wiki_slug == second
    assert refused(inst, tokens["access_token"], flow.resource(first)).error == "invalid_token"


def test_a_person_without_wikis_can_only_deny(world):
    flow = world.flow(slug="ignored")
    page = flow.consent_page(flow.authorize_url(resource=None))
    assert "not a member of any wiki" in page.text and 'value="approve"' not in page.text


# --- the token endpoint ------------------------------------------------------------------------------

def test_claude_flow_issues_an_rfc9068_access_token_for_the_wiki(claude, inst):
    response = claude.token(claude.code())
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store" and response.headers["Access-Control-Allow-Origin"] == "*"
    tokens = response.json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 24 * 3600
    assert tokens["scope"] == "wiki:read wiki:write" and tokens["refresh_token"]
    header = json.loads(base64.urlsafe_b64decode(tokens["access_token"].split(".")[0] + "=="))
    assert header["typ"] == "at+jwt" and header["alg"] == "RS256" and header["kid"]
    claims = inst.keys.verify_rs256(tokens["access_token"], "at+jwt")
    assert claims["iss"] == claude.server.url and claims["sub"] == claude.did
    assert claims["aud"] == claude.resource() and claims["client_id"] == claude.client["client_id"]
    assert claims["scope"] == "wiki:read wiki:write" and claims["jti"] and claims["exp"] - claims["iat"] == 86400
    caller = bearer(inst, tokens["access_token"], claude.resource())
    assert (caller.user_did, caller.wiki_slug, caller.scopes, caller.via) == (
        claude.did, claude.slug, {"wiki:read", "wiki:write"}, "mcp:Claude")
    assert caller.grant_id is not None and caller.token_id is None


def test_access_token_lifetime_is_a_setting(tmp_path):
    srv = start_server(tmp_path / "data", env_extra={"ROBOTWTF_ACCESS_TOKEN_MINUTES": "5"})
    try:
        assert World(srv).flow().tokens()["expires_in"] == 300
    finally:
        srv.stop()


def test_public_client_with_pkce(public_client, inst):
    tokens = public_client.tokens()
    assert bearer(inst, tokens["access_token"], public_client.resource()).via == "mcp:Loopback app"
    assert public_client.refresh(tokens["refresh_token"]).status_code == 200


def test_the_verifier_is_required_and_must_match(public_client):
    code = public_client.code()
    oauth_error(public_client.token(code, code_verifier=None), 400, "invalid_request")
    oauth_error(public_client.token(code, code_verifier="x" * 43), 400, "invalid_grant")
    oauth_error(public_client.token(code, code_verifier="short"), 400, "invalid_request")
    assert public_client.token(code).status_code == 200  # failed attempts did not spend the code


def test_a_confidential_client_needs_pkce_too(claude):
    oauth_error(claude.token(claude.code(), code_verifier=None), 400, "invalid_request")


def test_client_authentication_failures_are_401_invalid_client(claude):
    code = claude.code()
    body = oauth_error(claude.token(code, client_secret="wrong"), 401, "invalid_client")
    assert body["error_description"]
    oauth_error(claude.token(code, client_id="unknown", client_secret="x"), 401, "invalid_client")
    oauth_error(claude.token(code, client_secret=None), 401, "invalid_client")  # a confidential client as public
    assert claude.token(code).status_code == 200


def test_the_registered_authentication_method_is_enforced(world):
    client = registered(world.server, redirect_uris=["https://app.example/cb"])  # client_secret_basic by default
    flow = world.flow(client=client, redirect_uri="https://app.example/cb")
    code = flow.code()
    oauth_error(flow.token(code), 401, "invalid_client")  # secret in the body: not its method
    basic = requests.post(world.server.url + "/oauth/token", auth=(client["client_id"], client["client_secret"]),
                          data={"grant_type": "authorization_code", "code": code, "redirect_uri": flow.redirect_uri,
                                "code_verifier": flow.verifier})
    assert basic.status_code == 200, basic.text


def test_the_code_is_bound_to_its_client_and_a_wrong_client_revokes_nothing(claude, inst):
    code = claude.code()
    other = registered(claude.server, **CLAUDE_REGISTRATION)
    stolen = claude.token(code, client_id=other["client_id"], client_secret=other["client_secret"])
    oauth_error(stolen, 400, "invalid_grant")
    tokens = claude.token(code).json()
    assert bearer(inst, tokens["access_token"], claude.resource()).user_did == claude.did


def test_redirect_uri_must_be_repeated_exactly_at_the_token_endpoint(claude):
    code = claude.code()
    oauth_error(claude.token(code, redirect_uri=CLAUDE_CALLBACK + "/x"), 400, "invalid_grant")
    oauth_error(claude.token(code, redirect_uri=None), 400, "invalid_grant")
    assert claude.token(code).status_code == 200


def test_resource_at_the_token_endpoint_may_not_change(claude, world):
    other = world.wiki(claude.did)
    code = claude.code()
    oauth_error(claude.token(code, resource=claude.resource(other)), 400, "invalid_target")
    oauth_error(claude.token(code, resource="https://evil.example/mcp"), 400, "invalid_target")
    assert claude.token(code, resource=None).status_code == 200


def test_a_replayed_code_fails_and_revokes_what_it_issued(claude, inst):
    code = claude.code()
    first = claude.token(code).json()
    assert bearer(inst, first["access_token"], claude.resource()).user_did == claude.did
    oauth_error(claude.token(code), 400, "invalid_grant")
    assert refused(inst, first["access_token"], claude.resource()).error == "invalid_token"
    oauth_error(claude.refresh(first["refresh_token"]), 400, "invalid_grant")


def test_concurrent_redemptions_of_one_code_leave_no_working_token(claude, inst):
    code = claude.code()
    results = []
    threads = [threading.Thread(target=lambda: results.append(claude.token(code))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [r.json() for r in results if r.status_code == 200]
    assert len(winners) <= 1 and sum(r.status_code == 400 for r in results) >= 3
    for tokens in winners:
        assert refused(inst, tokens["access_token"], claude.resource()).error == "invalid_token"


def test_an_expired_code_is_refused(claude, world):
    code = claude.code()
    world.sql("UPDATE oauth_codes SET expires_at = ? WHERE code_hash = ?", int(time.time()) - 1, store.hash_secret(code))
    oauth_error(claude.token(code), 400, "invalid_grant")


def test_codes_live_five_minutes_and_are_stored_hashed(claude, world):
    code = claude.code()
    rows = world.sql("SELECT created_at, expires_at FROM oauth_codes WHERE code_hash = ?", store.hash_secret(code))
    assert rows[0][1] - rows[0][0] == 300


@pytest.mark.parametrize("body, headers, error", [
    ("grant_type=password&username=a&password=b", {}, "unsupported_grant_type"),
    ("grant_type=client_credentials", {}, "unsupported_grant_type"),
    ("grant_type=authorization_code&grant_type=authorization_code&code=x", {}, "invalid_request"),
    ('{"grant_type": "authorization_code"}', {"Content-Type": "application/json"}, "invalid_request"),
    (b"grant_type=authorization_code&code=\xff", {}, "invalid_request"),
])
def test_malformed_token_requests_get_rfc6749_json_errors(world, body, headers, error):
    headers = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    oauth_error(requests.post(world.server.url + "/oauth/token", data=body, headers=headers), 400, error)


def test_token_endpoint_takes_no_credentials_from_the_query_string(claude):
    code = claude.code()
    response = requests.post(claude.server.url + "/oauth/token?client_secret=" + claude.client["client_secret"],
                             data={"grant_type": "authorization_code", "code": code, "redirect_uri": CLAUDE_CALLBACK,
                                   "code_verifier": claude.verifier, "client_id": claude.client["client_id"]})
    oauth_error(response, 401, "invalid_client")


# --- refresh tokens ------------------------------------------------------------------------------------

def test_refresh_rotates_and_reuse_of_a_spent_token_revokes_the_grant(claude, inst):
    first = claude.tokens()
    second = claude.refresh(first["refresh_token"]).json()
    assert second["refresh_token"] != first["refresh_token"] and second["scope"] == "wiki:read wiki:write"
    third = claude.refresh(second["refresh_token"]).json()  # the successor is used: the first is dead
    assert bearer(inst, third["access_token"], claude.resource()).user_did == claude.did
    oauth_error(claude.refresh(first["refresh_token"]), 400, "invalid_grant")
    assert refused(inst, third["access_token"], claude.resource()).error == "invalid_token"
    oauth_error(claude.refresh(third["refresh_token"]), 400, "invalid_grant")


def test_a_lost_refresh_response_may_be_retried_once_its_successor_is_unused(claude, inst):
    first = claude.tokens()
    lost = claude.refresh(first["refresh_token"]).json()
    retried = claude.refresh(first["refresh_token"])
    assert retried.status_code == 200
    retried = retried.json()
    assert bearer(inst, retried["access_token"], claude.resource()).user_did == claude.did
    # the successor the client never saw is dead now; presenting it means it leaked
    oauth_error(claude.refresh(lost["refresh_token"]), 400, "invalid_grant")
    oauth_error(claude.refresh(retried["refresh_token"]), 400, "invalid_grant")


def test_a_refresh_retry_is_allowed_only_briefly(claude, world):
    first = claude.tokens()
    claude.refresh(first["refresh_token"])
    world.sql("UPDATE oauth_refresh_tokens SET used_at = used_at - 121 WHERE token_hash = ?",
              store.hash_secret(first["refresh_token"]))
    oauth_error(claude.refresh(first["refresh_token"]), 400, "invalid_grant")


def test_refresh_may_narrow_scope_but_never_widen_it(claude, world, inst):
    tokens = claude.tokens()
    narrowed = claude.refresh(tokens["refresh_token"], scope="wiki:read").json()
    assert narrowed["scope"] == "wiki:read"
    assert bearer(inst, narrowed["access_token"], claude.resource()).scopes == {"wiki:read"}
    widened = claude.refresh(narrowed["refresh_token"], scope="wiki:read wiki:write")
    assert widened.status_code == 200  # the refresh token keeps the grant's scopes (RFC 6749 §6)
    read_only = world.flow(claude.did, claude.slug)
    limited = read_only.token(read_only.code(scopes=["wiki:read"])).json()
    oauth_error(read_only.refresh(limited["refresh_token"], scope="wiki:read wiki:write"), 400, "invalid_scope")
    oauth_error(read_only.refresh(limited["refresh_token"], scope="admin"), 400, "invalid_scope")


def test_refresh_is_bound_to_its_client(claude):
    tokens = claude.tokens()
    other = registered(claude.server, **CLAUDE_REGISTRATION)
    stolen = requests.post(claude.server.url + "/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": other["client_id"],
        "client_secret": other["client_secret"]})
    oauth_error(stolen, 400, "invalid_grant")
    assert claude.refresh(tokens["refresh_token"]).status_code == 200


def test_refresh_resource_must_be_the_granted_wiki(claude):
    tokens = claude.tokens()
    oauth_error(claude.refresh(tokens["refresh_token"], resource=claude.resource("other")), 400, "invalid_target")
    assert claude.refresh(tokens["refresh_token"], resource=claude.resource()).status_code == 200


def test_refresh_tokens_have_an_absolute_lifetime(claude, world):
    tokens = claude.tokens()
    token_hash = store.hash_secret(tokens["refresh_token"])
    created, expires = world.sql("SELECT created_at, expires_at FROM oauth_refresh_tokens WHERE token_hash = ?",
                                 token_hash)[0]
    assert expires - created == 90 * 86400
    world.sql("UPDATE oauth_refresh_tokens SET expires_at = ? WHERE token_hash = ?", int(time.time()) - 1, token_hash)
    oauth_error(claude.refresh(tokens["refresh_token"]), 400, "invalid_grant")


def test_refresh_stops_when_the_person_left_the_wiki(world):
    owner, editor = world.person(), world.person()
    slug = world.wiki(owner)
    world.set_role(slug, editor, "editor")
    flow = world.flow(editor, slug)
    tokens = flow.tokens()
    world.set_role(slug, editor, None)
    oauth_error(flow.refresh(tokens["refresh_token"]), 400, "invalid_grant")


def test_no_refresh_token_for_a_client_that_did_not_register_the_grant(world):
    client = registered(world.server, redirect_uris=["https://app.example/cb"], token_endpoint_auth_method="none")
    flow = world.flow(client=client, redirect_uri="https://app.example/cb")
    assert "refresh_token" not in flow.tokens()
    oauth_error(flow.refresh("anything"), 400, "unauthorized_client")


# --- revocation (RFC 7009) ----------------------------------------------------------------------------

def test_revoking_the_refresh_token_ends_the_whole_grant(claude, inst):
    tokens = claude.tokens()
    response = claude.revoke(tokens["refresh_token"], token_type_hint="refresh_token")
    assert response.status_code == 200 and response.headers["Access-Control-Allow-Origin"] == "*"
    assert refused(inst, tokens["access_token"], claude.resource()).error == "invalid_token"
    oauth_error(claude.refresh(tokens["refresh_token"]), 400, "invalid_grant")


def test_revoking_the_access_token_ends_the_whole_grant(claude, inst):
    tokens = claude.tokens()
    assert claude.revoke(tokens["access_token"]).status_code == 200
    assert refused(inst, tokens["access_token"], claude.resource()).error == "invalid_token"
    oauth_error(claude.refresh(tokens["refresh_token"]), 400, "invalid_grant")


def test_revocation_is_bound_to_the_client(claude, inst):
    tokens = claude.tokens()
    other = Flow(claude.server, claude.browser, registered(claude.server, **CLAUDE_REGISTRATION), CLAUDE_CALLBACK,
                 claude.slug, claude.did)
    for token in (tokens["access_token"], tokens["refresh_token"]):
        oauth_error(other.revoke(token), 400, "invalid_grant")
    assert bearer(inst, tokens["access_token"], claude.resource()).user_did == claude.did


def test_revocation_needs_client_authentication_and_ignores_unknown_tokens(claude):
    oauth_error(claude.revoke("whatever", client_secret="wrong"), 401, "invalid_client")
    assert claude.revoke("not-a-token-we-issued").status_code == 200
    oauth_error(claude.revoke("x", token_type_hint="id_token"), 400, "unsupported_token_type")
    oauth_error(claude.revoke(""), 400, "invalid_request")
