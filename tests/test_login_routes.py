"""Login with atproto through the real server: the login form, the callback, signup under each
policy, sessions, the account page and admin removal — against a fake PDS/AS/PLC and a fake DNS
server on loopback (robotwtf runs in development network mode to reach them)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from conftest import open_db, start_server
from fakedns import FakeDNS
from fakepds import FakePDS


@pytest.fixture
def net():
    with FakeDNS() as dns_server, FakePDS() as pds:
        yield pds, dns_server


def serve(tmp_path, net, *args, public_url=None, name="data"):
    pds, dns_server = net
    env = {"ROBOTWTF_INSECURE_DEV_NETWORK": "1", "ROBOTWTF_PLC_URL": pds.plc_url,
           "ROBOTWTF_DNS_RESOLVER": dns_server.address}
    return start_server(tmp_path / name, *args, env_extra=env, public_url=public_url)


@pytest.fixture
def site(tmp_path, net):
    srv = serve(tmp_path, net)
    yield srv
    srv.stop()


def account(net, handle):
    pds, dns_server = net
    did = pds.add_account(handle)
    dns_server.txt(f"_atproto.{handle}", f"did={did}")
    return did


def csrf(page: requests.Response) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text).group(1)


def start_login(site, browser, identifier, **extra):
    page = browser.get(site.url + "/auth/login", params=extra.pop("query", None))
    return browser.post(site.url + "/auth/login", data={"csrf_token": csrf(page), "identifier": identifier, **extra},
                        allow_redirects=False)


def login(site, net, browser, identifier, as_user, username=None, query=None):
    """The whole browser flow; returns the last response (a redirect into the app on success)."""
    pds, _ = net
    started = start_login(site, browser, identifier, query=query,
                          **({"invite": query["invite"]} if query and "invite" in query else {}))
    assert started.status_code == 303, started.text
    params = pds.sign_in(started.headers["Location"], as_user)
    back = browser.get(site.url + "/auth/callback", params=params, allow_redirects=False)
    if back.status_code == 303 and back.headers["Location"] == "/auth/signup":
        page = browser.get(site.url + "/auth/signup")
        if 'name="username"' not in page.text:
            return page
        data = {"csrf_token": csrf(page), "username": username or re.search(
            r'name="username" value="([^"]*)"', page.text).group(1)}
        return browser.post(site.url + "/auth/signup", data=data, allow_redirects=False)
    return back


def signed_in_as(site, browser) -> str | None:
    page = browser.get(site.url + "/account", allow_redirects=False)
    if page.status_code != 200:
        return None
    return re.search(r"<dt>DID</dt><dd><code>([^<]+)</code>", page.text).group(1)


def test_first_login_signs_up_the_admin_then_returning_users_go_straight_in(site, net):
    alice = account(net, "alice.test")
    browser = requests.Session()
    done = login(site, net, browser, "@Alice.TEST", "alice.test")
    assert done.status_code == 303 and done.headers["Location"] == "/"
    assert signed_in_as(site, browser) == alice
    assert site.cli("user", "list").stdout == f"alice\talice.test\t{alice}\tadmin\n"
    again = requests.Session()
    back = login(site, net, again, alice, "alice.test")
    assert back.status_code == 303 and back.headers["Location"] == "/"
    assert signed_in_as(site, again) == alice


def test_login_from_server_url_and_handle_change_is_recorded(site, net):
    pds, dns_server = net
    alice = account(net, "alice.test")
    browser = requests.Session()
    assert login(site, net, browser, pds.url, "alice.test").status_code == 303
    assert signed_in_as(site, browser) == alice
    pds.plc[alice]["alsoKnownAs"] = ["at://alice2.test"]
    dns_server.txt("_atproto.alice2.test", f"did={alice}")
    assert login(site, net, requests.Session(), "alice2.test", "alice.test").status_code == 303
    assert "\talice2.test\t" in site.cli("user", "list").stdout


def test_other_account_signing_in_is_refused(site, net):
    account(net, "alice.test")
    account(net, "bob.test")
    browser = requests.Session()
    result = login(site, net, browser, "alice.test", "bob.test")
    assert result.status_code == 400
    assert "A different account signed in" in result.text and "Traceback" not in result.text
    assert signed_in_as(site, browser) is None
    assert site.cli("user", "list").stdout == ""


def test_callback_state_is_single_use_and_bound_to_the_browser(site, net):
    pds, _ = net
    account(net, "alice.test")
    browser = requests.Session()
    started = start_login(site, browser, "alice.test")
    params = pds.sign_in(started.headers["Location"], "alice.test")
    stranger = requests.get(site.url + "/auth/callback", params=params, allow_redirects=False)
    assert stranger.status_code == 403 and "started in another browser" in stranger.text
    replay = browser.get(site.url + "/auth/callback", params=params, allow_redirects=False)
    assert replay.status_code == 403, "the stranger's attempt used up the state"
    assert requests.get(site.url + "/auth/callback", allow_redirects=False).status_code == 403


def test_user_denies_at_the_pds(site, net):
    account(net, "alice.test")
    browser = requests.Session()
    started = start_login(site, browser, "alice.test")
    state = parse_qs(urlsplit(started.headers["Location"]).query)
    assert "request_uri" in state
    db = open_db(site.data)
    real_state = db.execute("SELECT state FROM login_requests").fetchone()[0]
    denied = browser.get(site.url + "/auth/callback", params={
        "error": "access_denied", "error_description": "User said no", "state": real_state,
        "iss": net[0].issuer}, allow_redirects=False)
    assert denied.status_code == 400 and "Sign in" in denied.text
    assert db.execute("SELECT count(*) FROM login_requests").fetchone()[0] == 0


def test_bad_identifiers_get_clear_errors(site, net):
    browser = requests.Session()
    for text, message in [("not a handle!", ""), ("nobody.test", "")]:
        page = start_login(site, browser, text)
        assert page.status_code in (400, 502), text
        assert 'class="error"' in page.text and "Traceback" not in page.text


@pytest.mark.parametrize("policy", ["invite", "closed"])
def test_signup_policy_refuses_strangers(tmp_path, net, policy):
    site = serve(tmp_path, net, "--signup", policy)
    try:
        account(net, "alice.test")
        account(net, "bob.test")
        assert login(site, net, requests.Session(), "alice.test", "alice.test").status_code == 303
        page = login(site, net, requests.Session(), "bob.test", "bob.test")
        assert page.status_code == 200
        expected = "by invitation only" if policy == "invite" else "not accepting new accounts"
        assert expected in page.text and 'name="username"' not in page.text
        assert len(site.cli("user", "list").stdout.splitlines()) == 1
    finally:
        site.stop()


def test_invite_link_lets_one_person_in(site, net):
    account(net, "alice.test")
    bob = account(net, "bob.test")
    account(net, "carol.test")
    assert login(site, net, requests.Session(), "alice.test", "alice.test").status_code == 303
    invite = parse_qs(urlsplit(site.cli("invite", "create").stdout.strip()).query)["invite"][0]
    browser = requests.Session()
    done = login(site, net, browser, "bob.test", "bob.test", username="bobby", query={"invite": invite})
    assert done.status_code == 303
    assert signed_in_as(site, browser) == bob
    assert f"bobby\tbob.test\t{bob}\tmember" in site.cli("user", "list").stdout
    used_up = login(site, net, requests.Session(), "carol.test", "carol.test", query={"invite": invite})
    assert "by invitation only" in used_up.text


def test_signup_rejects_bad_and_taken_usernames(tmp_path, net):
    site = serve(tmp_path, net, "--signup", "open")
    try:
        account(net, "alice.test")
        account(net, "bob.test")
        assert login(site, net, requests.Session(), "alice.test", "alice.test", username="alice").status_code == 303
        browser = requests.Session()
        for name, status, message in [("alice", 409, "is taken"), ("admin", 400, "kept for robotwtf&#039;s own pages; choose another username"),
                                      ("Bo", 400, "3 to 30 characters")]:
            result = login(site, net, browser, "bob.test", "bob.test", username=name)
            assert result.status_code == status and message in result.text, name
        assert len(site.cli("user", "list").stdout.splitlines()) == 1
    finally:
        site.stop()


def test_return_to_is_kept_and_only_same_origin(site, net):
    account(net, "alice.test")
    browser = requests.Session()
    first = login(site, net, browser, "alice.test", "alice.test")
    assert first.status_code == 303
    for target, expected in [("/account?tab=1", "/account?tab=1"), ("//evil.example/x", "/"),
                             ("/\\evil.example", "/"), ("https://evil.example/", "/"), ("/ok\r\nX: y", "/")]:
        again = requests.Session()
        page = again.get(site.url + "/auth/login", params={"return_to": target})
        started = again.post(site.url + "/auth/login", data={
            "csrf_token": csrf(page), "identifier": "alice.test",
            "return_to": re.search(r'name="return_to" value="([^"]*)"', page.text).group(1)}, allow_redirects=False)
        params = net[0].sign_in(started.headers["Location"], "alice.test")
        back = again.get(site.url + "/auth/callback", params=params, allow_redirects=False)
        assert back.headers["Location"] == expected, target


def test_sessions_can_be_listed_revoked_and_ended_everywhere(site, net):
    alice = account(net, "alice.test")
    laptop, phone = requests.Session(), requests.Session()
    login(site, net, laptop, "alice.test", "alice.test")
    login(site, net, phone, alice, "alice.test")
    page = laptop.get(site.url + "/account")
    assert page.text.count("this browser") == 1
    other = re.search(r'name="session_id" value="([^"]+)"', page.text).group(1)
    assert laptop.post(site.url + "/account/sessions/revoke", data={"csrf_token": csrf(page), "session_id": other},
                       allow_redirects=False).status_code == 303
    assert signed_in_as(site, phone) is None and signed_in_as(site, laptop) == alice
    login(site, net, phone, alice, "alice.test")
    page = phone.get(site.url + "/account")
    phone.post(site.url + "/account/logout-everywhere", data={"csrf_token": csrf(page)})
    assert signed_in_as(site, phone) is None and signed_in_as(site, laptop) is None


def test_account_deletion_needs_the_handle_and_removes_everything(site, net):
    account(net, "alice.test")
    browser = requests.Session()
    login(site, net, browser, "alice.test", "alice.test", username="alice")
    site.cli("wiki", "create", "notes", "--owner", "alice")
    page = browser.get(site.url + "/account")
    wrong = browser.post(site.url + "/account/delete", data={"csrf_token": csrf(page), "confirm": "alice"})
    assert wrong.status_code == 400 and "type alice.test exactly" in wrong.text
    assert site.cli("wiki", "list").stdout
    done = browser.post(site.url + "/account/delete", data={"csrf_token": csrf(page), "confirm": "@alice.test"},
                        allow_redirects=False)
    assert done.status_code == 303
    assert site.cli("user", "list").stdout == "" and site.cli("wiki", "list").stdout == ""
    assert signed_in_as(site, browser) is None


def test_admin_removes_a_user_and_their_sessions_end(tmp_path, net):
    site = serve(tmp_path, net, "--signup", "open")
    try:
        account(net, "alice.test")
        bob = account(net, "bob.test")
        admin, member = requests.Session(), requests.Session()
        login(site, net, admin, "alice.test", "alice.test")
        login(site, net, member, "bob.test", "bob.test")
        assert member.get(site.url + "/admin").status_code == 403
        page = admin.get(site.url + "/admin")
        assert admin.post(site.url + "/admin/users/remove", data={"csrf_token": csrf(page), "did": bob},
                          allow_redirects=False).status_code == 303
        assert signed_in_as(site, member) is None
        invite = admin.post(site.url + "/admin/invites", data={"csrf_token": csrf(page), "uses": "2"})
        assert "/auth/login?invite=" in invite.text
    finally:
        site.stop()


def test_client_metadata_only_for_https_instances(tmp_path, net, site):
    assert requests.get(site.url + "/auth/client-metadata.json").status_code == 404
    https = serve(tmp_path, net, public_url="https://wiki.example.org", name="https")
    try:
        meta = requests.get(https.url + "/auth/client-metadata.json")
        assert meta.status_code == 200
        doc = meta.json()
        assert doc["client_id"] == "https://wiki.example.org/auth/client-metadata.json"
        assert doc["redirect_uris"] == ["https://wiki.example.org/auth/callback"]
        assert doc["token_endpoint_auth_method"] == "private_key_jwt" and doc["dpop_bound_access_tokens"] is True
        jwks = requests.get(https.url + "/.well-known/atproto-client-jwks.json").json()
        assert [k["kty"] for k in jwks["keys"]] == ["EC"] and "d" not in jwks["keys"][0]
        assert doc["jwks_uri"] == "https://wiki.example.org/.well-known/atproto-client-jwks.json"
    finally:
        https.stop()


def test_user_add_by_handle_resolves_and_verifies(tmp_path, net, site):
    alice = account(net, "alice.test")
    assert f"({alice})" in site.cli("user", "add", "@Alice.Test").stdout
    assert f"alice\talice.test\t{alice}\tadmin" in site.cli("user", "list").stdout
    net[0].plc[account(net, "liar.test")]["alsoKnownAs"] = ["at://someone-else.test"]
    refused = site.cli("user", "add", "liar.test", check=False)
    assert refused.returncode == 1 and "does not claim the handle" in refused.stderr
    unknown = site.cli("user", "add", "nobody.test", check=False)
    assert unknown.returncode == 1 and "pass the person's DID instead" in unknown.stderr
    assert len(site.cli("user", "list").stdout.splitlines()) == 1
