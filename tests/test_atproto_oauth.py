"""The ATProto OAuth client against a fake PDS/AS that checks what a real one checks."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

import robotwtf_atproto as atp
from atproto_fixtures import HTTPS_PUBLIC_URL, client, confidential_client, local_client, net  # noqa: F401
from fakepds import DELETE, FakePDS

# -- client configuration ------------------------------------------------------------------


def test_localhost_client_id_follows_the_spec():
    client = atp.make_client("http://127.0.0.1:8080/")
    assert client.redirect_uri == "http://127.0.0.1:8080/auth/callback"
    redirect = "http%3A%2F%2F127.0.0.1%3A8080%2Fauth%2Fcallback"
    assert client.client_id == f"http://localhost?redirect_uri={redirect}&scope=atproto"
    assert not client.confidential


def test_localhost_public_url_still_redirects_to_127_0_0_1():
    assert atp.make_client("http://localhost:9000").redirect_uri == "http://127.0.0.1:9000/auth/callback"


def test_confidential_client_and_its_metadata():
    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-256", private=True)
    client = atp.make_client(HTTPS_PUBLIC_URL + "/", key, kid="k1")
    assert client.client_id == HTTPS_PUBLIC_URL + "/auth/client-metadata.json"
    assert client.confidential and client.signing_jwk["kid"] == "k1"
    assert key.as_dict(private=True)["d"] not in repr(client)
    meta = atp.client_metadata(HTTPS_PUBLIC_URL)
    assert meta["client_id"] == client.client_id
    assert meta["redirect_uris"] == [client.redirect_uri]
    assert meta["jwks_uri"] == HTTPS_PUBLIC_URL + "/.well-known/atproto-client-jwks.json"
    assert meta["dpop_bound_access_tokens"] is True and meta["application_type"] == "web"
    assert meta["token_endpoint_auth_method"] == "private_key_jwt"
    assert meta["token_endpoint_auth_signing_alg"] == "ES256"
    assert meta["grant_types"] == ["authorization_code", "refresh_token"] and meta["scope"] == "atproto"


@pytest.mark.parametrize("public_url", ["http://wiki.example.org", "ftp://127.0.0.1"])
def test_other_public_urls_are_refused(public_url):
    with pytest.raises(ValueError):
        atp.make_client(public_url)


def test_confidential_client_needs_a_private_p256_key():
    with pytest.raises(ValueError):
        atp.make_client(HTTPS_PUBLIC_URL)
    with pytest.raises(ValueError):
        atp.make_client(HTTPS_PUBLIC_URL, {"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}, "k1")


# -- happy paths -----------------------------------------------------------------------------


def test_login_with_a_handle(net, client):
    did = net.account("alice.test")
    authorize_url, pending = net.start("@Alice.TEST", client)
    assert authorize_url.startswith(net.pds.url + "/oauth/authorize?")
    query = parse_qs(urlsplit(authorize_url).query)
    assert query["client_id"] == [client.client_id] and query["request_uri"][0].startswith("urn:")
    json.dumps(pending)  # the caller stores it as JSON
    assert pending["expected_did"] == did and pending["issuer"] == net.pds.issuer
    par = net.pds.par_forms[-1]
    assert par["login_hint"] == "alice.test" and par["code_challenge_method"] == "S256"
    assert par["state"] == pending["state"]

    identity = net.finish(pending, net.pds.sign_in(authorize_url, "alice.test"), client)
    assert identity == atp.Identity(did, "alice.test", net.pds.url)
    # We keep no PDS tokens: both were revoked at the authorization server.
    assert len(net.pds.revoked) == 2 and set(net.pds.issued) == net.pds.revoked


def test_login_with_a_did(net, client):
    did = net.account("alice.test")
    authorize_url, pending = net.start(did, client)
    assert net.pds.par_forms[-1]["login_hint"] == did
    identity = net.finish(pending, net.pds.sign_in(authorize_url, "alice.test"), client)
    assert identity == atp.Identity(did, "alice.test", net.pds.url)


def test_login_with_a_server_url(net, client):
    did = net.account("alice.test")
    authorize_url, pending = net.start(net.pds.url, client)
    assert "login_hint" not in net.pds.par_forms[-1] and pending["expected_did"] is None
    identity = net.finish(pending, net.pds.sign_in(authorize_url, "alice.test"), client)
    assert identity == atp.Identity(did, "alice.test", net.pds.url)


def test_confidential_client_authenticates_every_request_with_a_fresh_assertion(net, confidential_client):
    net.account("alice.test")
    net.login("alice.test", confidential_client, "alice.test")
    endpoints = [endpoint for endpoint, _ in net.pds.assertions]
    assert endpoints == ["par", "token", "revoke", "revoke"]
    jtis = [claims["jti"] for _, claims in net.pds.assertions]
    assert len(set(jtis)) == len(jtis)
    assert all(claims["aud"] == net.pds.issuer for _, claims in net.pds.assertions)


def test_every_dpop_proof_is_new_and_each_login_has_its_own_key(net, local_client):
    net.account("alice.test")
    net.login("alice.test", local_client, "alice.test")
    first_login_keys = set(net.pds.proof_keys)
    assert [endpoint for endpoint, _ in net.pds.proofs] == ["par", "token", "revoke", "revoke"]
    assert len(first_login_keys) == 1
    jtis = [claims["jti"] for _, claims in net.pds.proofs]
    assert len(set(jtis)) == len(jtis)
    net.login("alice.test", local_client, "alice.test")
    assert len(set(net.pds.proof_keys)) == 2


# -- DPoP nonces -----------------------------------------------------------------------------


@pytest.mark.parametrize("www_authenticate", [False, True], ids=["json-error", "www-authenticate"])
def test_nonce_retry_at_par_and_token_uses_new_proof_and_assertion(net, confidential_client, www_authenticate):
    net.account("alice.test")
    net.pds.require_nonce = {"par", "token"}
    net.pds.nonce_in_www_authenticate = www_authenticate
    authorize_url, pending = net.start("alice.test", confidential_client)
    params = net.pds.sign_in(authorize_url, "alice.test")
    net.pds.nonce = "rotated-nonce"  # the server rotates its nonce between PAR and token
    net.finish(pending, params, confidential_client)

    for endpoint in ("par", "token"):
        proofs = [claims for name, claims in net.pds.proofs if name == endpoint]
        assertions = [claims for name, claims in net.pds.assertions if name == endpoint]
        assert len(proofs) == 2 and len(assertions) == 2
        assert proofs[0]["jti"] != proofs[1]["jti"]
        assert assertions[0]["jti"] != assertions[1]["jti"]
    token_proofs = [claims for name, claims in net.pds.proofs if name == "token"]
    assert token_proofs[0]["nonce"] != "rotated-nonce" and token_proofs[1]["nonce"] == "rotated-nonce"


def test_nonce_is_retried_only_once(net, local_client):
    net.account("alice.test")
    net.pds.require_nonce = {"par"}
    net.pds.nonce_rotates = True
    with pytest.raises(atp.LoginError, match="use_dpop_nonce"):
        net.start("alice.test", local_client)
    assert len([1 for name, _ in net.pds.proofs if name == "par"]) == 2


# -- identity checks at the callback ----------------------------------------------------------


def test_wrong_iss_in_callback_is_refused_before_the_code_is_used(net, local_client):
    net.account("alice.test")
    net.pds.callback_iss = "https://evil.example.com"
    authorize_url, pending = net.start("alice.test", local_client)
    params = net.pds.sign_in(authorize_url, "alice.test")
    with pytest.raises(atp.LoginError, match="different authorization server"):
        net.finish(pending, params, local_client)
    assert not any("/oauth/token" in line for line in net.pds.log)


def test_missing_iss_in_callback_is_refused(net, local_client):
    net.account("alice.test")
    net.pds.callback_iss = ""
    authorize_url, pending = net.start("alice.test", local_client)
    with pytest.raises(atp.LoginError, match=r"\(iss\)"):
        net.finish(pending, net.pds.sign_in(authorize_url, "alice.test"), local_client)


def test_other_account_signing_in_is_refused_and_its_tokens_revoked(net, client):
    net.account("alice.test")
    net.account("bob.test")
    authorize_url, pending = net.start("alice.test", client)
    params = net.pds.sign_in(authorize_url, "bob.test")  # the PDS signs in whoever types a password
    with pytest.raises(atp.LoginError, match="different account"):
        net.finish(pending, params, client)
    assert len(net.pds.revoked) == 2


def test_server_url_login_whose_account_lives_behind_another_issuer_is_refused(net, local_client):
    with FakePDS(plc=net.pds.plc) as other:
        bob = net.account("bob.test", pds=other)
        net.account("alice.test")
        net.pds.token_overrides = {"sub": bob}  # this AS claims an account it does not serve
        authorize_url, pending = net.start(net.pds.url, local_client)
        params = net.pds.sign_in(authorize_url, "alice.test")
        with pytest.raises(atp.LoginError, match="not served by that authorization server"):
            net.finish(pending, params, local_client)


def test_server_url_login_for_an_account_whose_handle_does_not_verify_has_no_handle(net, local_client):
    did = net.pds.add_account("carol.test")  # no DNS record: the handle does not resolve
    authorize_url, pending = net.start(net.pds.url, local_client)
    identity = net.finish(pending, net.pds.sign_in(authorize_url, "carol.test"), local_client)
    assert identity == atp.Identity(did, None, net.pds.url)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"token_type": "Bearer"}, "not DPoP-bound"),
        ({"scope": "transition:generic"}, "atproto scope"),
        ({"sub": "not-a-did"}, "which account"),
        ({"access_token": DELETE}, "access token"),
    ],
)
def test_bad_token_responses_are_refused(net, local_client, override, message):
    net.account("alice.test")
    net.pds.token_overrides = override
    authorize_url, pending = net.start("alice.test", local_client)
    with pytest.raises(atp.LoginError, match=message):
        net.finish(pending, net.pds.sign_in(authorize_url, "alice.test"), local_client)


def test_user_denies(net, local_client):
    net.account("alice.test")
    net.pds.deny = True
    authorize_url, pending = net.start("alice.test", local_client)
    with pytest.raises(atp.LoginError, match="cancelled"):
        net.finish(pending, net.pds.sign_in(authorize_url, "alice.test"), local_client)


def test_state_too_old(net, local_client):
    net.account("alice.test")
    authorize_url, pending = net.start("alice.test", local_client)
    params = net.pds.sign_in(authorize_url, "alice.test")
    pending["created_at"] -= atp.LOGIN_MAX_AGE + 1
    with pytest.raises(atp.LoginError, match="expired"):
        net.finish(pending, params, local_client)


def test_state_mismatch_and_repeated_parameters(net, local_client):
    net.account("alice.test")
    authorize_url, pending = net.start("alice.test", local_client)
    params = net.pds.sign_in(authorize_url, "alice.test")
    with pytest.raises(atp.LoginError, match="does not match"):
        net.finish(pending, {**params, "state": "other"}, local_client)
    with pytest.raises(atp.LoginError, match="repeats"):
        net.finish(pending, {**params, "code": [params["code"], "other"]}, local_client)
    # The untouched response still works, with list-valued parameters as Bottle gives them.
    net.finish(pending, {k: [v] for k, v in params.items()}, local_client)


def test_replayed_callback_fails(net, local_client):
    net.account("alice.test")
    authorize_url, pending = net.start("alice.test", local_client)
    params = net.pds.sign_in(authorize_url, "alice.test")
    net.finish(pending, params, local_client)
    with pytest.raises(atp.LoginError, match="invalid_grant"):
        net.finish(pending, params, local_client)


def test_pending_from_another_client_is_refused(net, local_client):
    net.account("alice.test")
    authorize_url, pending = net.start("alice.test", local_client)
    params = net.pds.sign_in(authorize_url, "alice.test")
    with pytest.raises(atp.LoginError, match="address changed"):
        net.finish(pending, params, atp.make_client("http://127.0.0.1:9999"))


def test_revocation_failure_does_not_fail_the_login(net, local_client, caplog):
    did = net.account("alice.test")
    net.pds.behaviour["/oauth/revoke"] = "oversize"
    with caplog.at_level("WARNING", logger="robotwtf.atproto"):
        identity = net.login("alice.test", local_client, "alice.test")
    assert identity.did == did
    assert "revoking" in caplog.text
    for token in net.pds.issued:
        assert token not in caplog.text


def test_no_secret_reaches_the_logs(net, confidential_client, caplog):
    net.account("alice.test")
    net.pds.require_nonce = {"par", "token", "revoke"}
    with caplog.at_level("DEBUG"):
        authorize_url, pending = net.start("alice.test", confidential_client)
        params = net.pds.sign_in(authorize_url, "alice.test")
        net.finish(pending, params, confidential_client)
    secrets_seen = [params["code"], pending["pkce_verifier"], pending["dpop_private_jwk"]["d"],
                    confidential_client.signing_jwk["d"], *net.pds.issued]
    assert caplog.records  # urllib3 and friends did log at DEBUG
    for secret in secrets_seen:
        assert secret not in caplog.text


def test_no_revocation_endpoint_is_fine(net, local_client):
    net.account("alice.test")
    net.pds.metadata_overrides = {"revocation_endpoint": DELETE}
    assert net.login("alice.test", local_client, "alice.test").handle == "alice.test"
    assert not net.pds.revoked


# -- authorization server metadata -----------------------------------------------------------

BAD_METADATA = [
    ("issuer", "https://other.example.com"),
    ("issuer", DELETE),
    ("authorization_endpoint", "javascript:alert(1)"),
    ("authorization_endpoint", "data:text/html,hello"),
    ("authorization_endpoint", "http://evil.example.com/authorize"),
    ("token_endpoint", "http://10.0.0.1/token"),
    ("token_endpoint", DELETE),
    ("pushed_authorization_request_endpoint", DELETE),
    ("require_pushed_authorization_requests", False),
    ("require_pushed_authorization_requests", "true"),
    ("response_types_supported", ["token"]),
    ("grant_types_supported", ["authorization_code"]),
    ("code_challenge_methods_supported", ["plain"]),
    ("token_endpoint_auth_methods_supported", ["none"]),
    ("token_endpoint_auth_methods_supported", ["private_key_jwt"]),
    ("token_endpoint_auth_signing_alg_values_supported", ["RS256"]),
    ("token_endpoint_auth_signing_alg_values_supported", ["ES256", "none"]),
    ("scopes_supported", ["transition:generic"]),
    ("authorization_response_iss_parameter_supported", DELETE),
    ("dpop_signing_alg_values_supported", ["RS256"]),
    ("client_id_metadata_document_supported", False),
    ("require_request_uri_registration", False),
    ("revocation_endpoint", "javascript:void(0)"),
]


@pytest.mark.parametrize("field, value", BAD_METADATA, ids=[f"{f}={v!r}"[:60] for f, v in BAD_METADATA])
def test_bad_authorization_server_metadata_is_refused(net, local_client, field, value):
    net.account("alice.test")
    net.pds.metadata_overrides = {field: value}
    with pytest.raises(atp.MetadataError) as caught:
        net.start("alice.test", local_client)
    assert caught.value.field == field
    assert str(caught.value) == f"Your PDS's authorization server is misconfigured: {field}."
    assert not net.pds.par_forms  # nothing was pushed to a server we do not trust


@pytest.mark.parametrize(
    "override, field",
    [
        ({"authorization_servers": DELETE}, "authorization_servers"),
        ({"authorization_servers": []}, "authorization_servers"),
        ({"authorization_servers": ["javascript:alert(1)"]}, "authorization_servers"),
        ({"authorization_servers": ["http://127.0.0.1:1/some/path"]}, "authorization_servers"),
        ({"resource": "https://other.example.com"}, "resource"),
    ],
)
def test_bad_protected_resource_metadata_is_refused(net, local_client, override, field):
    net.account("alice.test")
    net.pds.resource_overrides = override
    with pytest.raises(atp.MetadataError) as caught:
        net.start("alice.test", local_client)
    assert caught.value.field == field


def test_par_refusal_is_reported_without_the_upstream_body(net, local_client):
    net.account("alice.test")
    unregistered = atp.make_client(HTTPS_PUBLIC_URL, atp.ECKey.generate_key("P-256", private=True), "k9")
    with pytest.raises(atp.LoginError) as caught:
        net.start("alice.test", unregistered)
    assert str(caught.value) == "Your account's server refused to start the sign-in (invalid_client)."


# -- resolution failures at the start of a login ------------------------------------------------


def test_handle_whose_did_does_not_claim_it_is_refused(net, local_client):
    net.account("mallory.test")
    net.dns.txt("_atproto.alice.test", f"did={net.pds.accounts['mallory.test']}")
    with pytest.raises(atp.ResolutionError, match="does not claim the handle"):
        net.start("alice.test", local_client)
    assert not net.pds.par_forms


def test_login_with_an_unresolvable_handle(net, local_client):
    with pytest.raises(atp.ResolutionError, match="That handle does not resolve: nobody.test"):
        net.start("nobody.test", local_client)


@pytest.mark.parametrize("text", ["", "   ", "alice", "not a handle", "did:plc:short", "ftp://x.org"])
def test_login_with_garbage(net, local_client, text):
    with pytest.raises(atp.BadIdentifier):
        net.start(text, local_client)


def test_upstream_timeout_during_discovery(net, local_client):
    net.account("alice.test")
    net.fetcher = atp.Fetcher(insecure_dev_network=True, deadline=1)
    net.pds.behaviour["/.well-known/oauth-authorization-server"] = "slow_body"
    with pytest.raises(atp.UpstreamTimeout, match="took too long"):
        net.start("alice.test", local_client)


def test_oversize_did_document(net, local_client):
    did = net.account("alice.test")
    net.pds.behaviour[f"/plc/{did}"] = "oversize"
    with pytest.raises(atp.ResolutionError, match="larger than 256 KiB"):
        net.start(did, local_client)


def test_redirecting_metadata_is_not_followed(net, local_client):
    net.account("alice.test")
    net.pds.behaviour["/.well-known/oauth-protected-resource"] = "redirect"
    with pytest.raises(atp.FetchError, match="redirect"):
        net.start("alice.test", local_client)


def test_dev_network_off_refuses_the_loopback_pds(net, local_client):
    net.account("alice.test")
    net.fetcher = atp.Fetcher(insecure_dev_network=False)
    with pytest.raises(atp.AtprotoError) as caught:
        net.start(net.pds.url, local_client)
    assert "https" in str(caught.value)
    assert net.pds.log == []
