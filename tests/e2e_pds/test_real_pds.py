"""The whole browser login against a REAL Bluesky PDS (`@atproto/pds` with its OAuth
authorization server and an in-memory did:plc directory, on loopback): robotwtf as the localhost
development client and as a confidential client behind an https reverse proxy; first login and
signup, a returning user, login from the server URL, another account signing in, and a denial.

Run by `make e2e-pds` (tools/e2e-pds.sh), which starts the PDS with ../shared/pds/start-local-pds.sh
and sets ROBOTWTF_E2E_PDS. Without it this module is skipped, so `make test` needs no Node; with it
every problem in the setup is a failure, never a skip.

Environment (set by tools/e2e-pds.sh):
    ROBOTWTF_E2E_PDS            the launcher's summary JSON file (plcUrl, pdsUrl, issuer, accounts)
    ROBOTWTF_E2E_PDS_ACCOUNTS   the launcher's ACCOUNTS ("handle:password ..."), for the passwords
    ROBOTWTF_E2E_PDS_LAUNCHER   the launcher's folder (for dns_txt_server.py)
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import dns.exception
import dns.resolver
import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import CLI, ENTRY, Server, base_env, start_server, wait_healthy  # noqa: E402
from pds_browser import Browser, PdsAccountPage, PdsPage, callback_params, csrf_field  # noqa: E402

pytestmark = pytest.mark.skipif(
    not os.environ.get("ROBOTWTF_E2E_PDS"),
    reason="needs a real PDS: run `make e2e-pds` (tools/e2e-pds.sh sets ROBOTWTF_E2E_PDS)")

# The launcher maps the PDS's fetches of https://client.login-harness.net/... to this port.
CONFIDENTIAL_PUBLIC_URL = "https://client.login-harness.net"
CONFIDENTIAL_PORT = 2584


@dataclasses.dataclass(frozen=True)
class Account:
    handle: str
    did: str
    password: str


@dataclasses.dataclass(frozen=True)
class Pds:
    issuer: str
    plc_url: str
    accounts: dict[str, Account]  # by the handle's first label: "alice", "bob"
    launcher: Path


@pytest.fixture(scope="session")
def pds() -> Pds:
    summary = json.loads(Path(os.environ["ROBOTWTF_E2E_PDS"]).read_text())
    passwords = dict(spec.split(":")[:2] for spec in os.environ["ROBOTWTF_E2E_PDS_ACCOUNTS"].split())
    accounts = {a["handle"].split(".")[0]: Account(a["handle"], a["did"], passwords[a["handle"]])
                for a in summary["accounts"]}
    assert {"alice", "bob"} <= accounts.keys(), f"the PDS needs accounts alice and bob: {summary['accounts']}"
    assert requests.get(summary["pdsUrl"] + "/xrpc/_health", timeout=5).status_code == 200
    return Pds(summary["issuer"], summary["plcUrl"], accounts, Path(os.environ["ROBOTWTF_E2E_PDS_LAUNCHER"]))


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def dns_server(pds, tmp_path_factory):
    """The launcher's DNS server answering `_atproto.<handle>` TXT from the PDS, so handles
    resolve the way they do in production (DNS), as "127.0.0.1:port" for ROBOTWTF_DNS_RESOLVER."""
    port = free_udp_port()
    log_path = tmp_path_factory.mktemp("dns") / "dns.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, str(pds.launcher / "dns_txt_server.py"), "--port", str(port),
                                    "--pds", pds.issuer], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_dns(port, pds.accounts["alice"], process, log_path)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for_dns(port: int, account: Account, process: subprocess.Popen, log_path: Path) -> None:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port, resolver.lifetime = ["127.0.0.1"], port, 1
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"dns_txt_server.py exited {process.returncode}:\n{log_path.read_text()}")
        try:
            answer = resolver.resolve(f"_atproto.{account.handle}", "TXT")
            assert b"".join(answer[0].strings).decode() == f"did={account.did}"
            return
        except dns.exception.Timeout:
            time.sleep(0.1)
    raise AssertionError(f"dns_txt_server.py did not answer:\n{log_path.read_text()}")


@pytest.fixture(scope="session")
def network_env(pds, dns_server) -> dict:
    return {"ROBOTWTF_INSECURE_DEV_NETWORK": "1", "ROBOTWTF_PLC_URL": pds.plc_url,
            "ROBOTWTF_DNS_RESOLVER": dns_server}


@pytest.fixture(scope="session")
def confidential_keys(tmp_path_factory, network_env) -> Path:
    """One data folder's keys for every confidential-client test: the PDS caches the client's
    JWKS for 10 minutes, so (like a real deployment) the key stays the same across restarts."""
    data = tmp_path_factory.mktemp("confidential-keys") / "data"
    CLI(data, base_env(data, **network_env))("init")
    return data


@dataclasses.dataclass
class Site:
    """robotwtf as one kind of ATProto OAuth client, and how a browser reaches it."""
    mode: str
    server: Server
    public_url: str
    client_id: str
    session_cookie: str

    def browser(self) -> Browser:
        browser = Browser()
        if self.mode == "confidential":
            browser.route_host(self.public_url, f"127.0.0.1:{self.server.port}")
        return browser


def start_confidential(data: Path, network_env: dict) -> Server:
    """robotwtf with an https public URL on the port the PDS's client fetches are mapped to,
    trusting the test browser's "proxy" on loopback for X-Forwarded-*."""
    port = CONFIDENTIAL_PORT
    env = base_env(data, ROBOTWTF_PORT=str(port), ROBOTWTF_PUBLIC_URL=CONFIDENTIAL_PUBLIC_URL,
                   ROBOTWTF_TRUSTED_PROXY="127.0.0.1", **network_env)
    log_path = data.parent / f"server-{port}.log"
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise AssertionError(f"port {port} is in use; the confidential client must listen there")
    with open(log_path, "wb") as log:
        process = subprocess.Popen([*ENTRY, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process, log_path)
    return Server(url, port, data, env, process, CLI(data, env), log_path)


@pytest.fixture(params=["localhost", "confidential"])
def site(request, tmp_path, network_env):
    if request.param == "localhost":
        server = start_server(tmp_path / "data", env_extra=network_env)
        redirect_uri = server.url + "/auth/callback"
        site = Site("localhost", server, server.url,
                    "http://localhost?" + urlencode({"redirect_uri": redirect_uri, "scope": "atproto"}),
                    "robotwtf_session")
    else:
        data = tmp_path / "data"
        shutil.copytree(request.getfixturevalue("confidential_keys"), data)
        server = start_confidential(data, network_env)
        site = Site("confidential", server, CONFIDENTIAL_PUBLIC_URL,
                    CONFIDENTIAL_PUBLIC_URL + "/auth/client-metadata.json", "__Host-robotwtf_session")
    try:
        yield site
    finally:
        server.stop()
        log = server.log()
        assert "Traceback" not in log, log
        # finish_login revokes the PDS tokens it no longer needs; the real PDS must accept that.
        assert "revoking" not in log, log


# --- the browser flow ----------------------------------------------------------------------------


def start_login(site: Site, browser: Browser, identifier: str) -> requests.Response:
    page = browser.get(site.public_url + "/auth/login")
    assert page.status_code == 200, page.text
    return browser.post(site.public_url + "/auth/login",
                        data={"csrf_token": csrf_field(page), "identifier": identifier})


def open_pds_page(site: Site, pds: Pds, browser: Browser, identifier: str) -> PdsPage:
    """Type `identifier` on robotwtf's login page and follow it to the PDS's sign-in page."""
    started = start_login(site, browser, identifier)
    assert started.status_code == 303, started.text
    authorize_url = started.headers["Location"]
    assert authorize_url.startswith(pds.issuer + "/oauth/authorize?"), authorize_url
    page = PdsPage(browser, pds.issuer, authorize_url)
    assert page.data["clientId"] == site.client_id and page.data["scope"] == "atproto"
    # The PDS's own view of the client: the confidential client's metadata as it fetched it.
    expected_auth = "private_key_jwt" if site.mode == "confidential" else "none"
    assert page.data["clientMetadata"]["token_endpoint_auth_method"] == expected_auth, page.data
    if site.mode == "confidential":
        assert page.data["clientMetadata"]["jwks_uri"] == site.public_url + "/.well-known/atproto-client-jwks.json"
    return page


def sign_in_at_pds(site: Site, pds: Pds, browser: Browser, identifier: str, account: Account) -> str:
    """robotwtf's login form through the PDS's sign-in and consent; returns the callback URL
    the PDS redirects the browser to."""
    page = open_pds_page(site, pds, browser, identifier)
    location = page.approve(page.sign_in(account.handle, account.password))
    assert location.startswith(site.public_url + "/auth/callback?"), location
    params = callback_params(location)
    assert params["iss"] == pds.issuer and params["code"] and params["state"], params
    return location


def signed_in_as(site: Site, browser: Browser) -> tuple[str, str] | None:
    """(DID, handle) from the account page, or None when the browser is not signed in."""
    page = browser.get(site.public_url + "/account")
    if page.status_code != 200:
        return None
    facts = dict(re.findall(r"<dt>(\w+)</dt><dd>(?:<code>)?([^<]+)", page.text))
    return facts["DID"], facts["Handle"]


def choose_username(site: Site, browser: Browser, expected_default: str, username: str) -> requests.Response:
    page = browser.get(site.public_url + "/auth/signup")
    assert page.status_code == 200 and 'name="username"' in page.text, page.text
    assert f'name="username" value="{expected_default}"' in page.text
    return browser.post(site.public_url + "/auth/signup",
                        data={"csrf_token": csrf_field(page), "username": username})


def assert_session_cookie(site: Site, browser: Browser) -> None:
    host = urlsplit(site.public_url).hostname
    cookie = next(c for c in browser.jar if c.name == site.session_cookie)
    assert cookie.domain in (host, host + ".local") and cookie.secure == (site.mode == "confidential")
    assert cookie.has_nonstandard_attr("HttpOnly")


def assert_no_pds_sessions_kept(site: Site, pds: Pds, account: Account) -> None:
    """robotwtf only needs to know who signed in: it revokes the PDS tokens at once, so the
    account's owner sees no OAuth session for it on the PDS's account page."""
    sessions = PdsAccountPage(pds.issuer, account.handle, account.password).oauth_sessions(account.did)
    assert [s for s in sessions if s["clientId"] == site.client_id] == [], sessions


# --- the tests -----------------------------------------------------------------------------------


def test_first_login_signs_up_then_a_second_login_goes_straight_in(site, pds):
    alice = pds.accounts["alice"]
    browser = site.browser()
    page = open_pds_page(site, pds, browser, "@" + alice.handle.upper())
    assert page.data.get("loginHint") == alice.handle, "robotwtf sends the normalised handle as login_hint"
    callback = page.approve(page.sign_in(alice.handle, alice.password))
    assert callback.startswith(site.public_url + "/auth/callback?"), callback

    first = browser.get(callback)
    assert first.status_code == 303 and first.headers["Location"] == "/auth/signup", first.text
    assert signed_in_as(site, browser) is None, "no session before the username is chosen"
    done = choose_username(site, browser, "alice", "alice")
    assert done.status_code == 303 and done.headers["Location"] == "/", done.text
    assert signed_in_as(site, browser) == (alice.did, alice.handle)
    assert_session_cookie(site, browser)
    assert site.server.cli("user", "list").stdout == f"alice\t{alice.handle}\t{alice.did}\tadmin\n"

    again = site.browser()
    back = again.get(sign_in_at_pds(site, pds, again, alice.did, alice))
    assert back.status_code == 303 and back.headers["Location"] == "/", back.text
    assert signed_in_as(site, again) == (alice.did, alice.handle)
    assert len(site.server.cli("user", "list").stdout.splitlines()) == 1
    assert_no_pds_sessions_kept(site, pds, alice)


def test_login_from_the_server_url(site, pds):
    bob = pds.accounts["bob"]
    browser = site.browser()
    page = open_pds_page(site, pds, browser, pds.issuer)
    assert page.data.get("loginHint") is None, "no account was named, so there is nothing to hint"
    back = browser.get(page.approve(page.sign_in(bob.handle, bob.password)))
    assert back.status_code == 303 and back.headers["Location"] == "/auth/signup", back.text
    assert choose_username(site, browser, "bob", "bobby").status_code == 303
    assert signed_in_as(site, browser) == (bob.did, bob.handle)
    assert site.server.cli("user", "list").stdout == f"bobby\t{bob.handle}\t{bob.did}\tadmin\n"
    assert_no_pds_sessions_kept(site, pds, bob)


def test_another_account_signing_in_is_refused(site, pds):
    """The PDS signs in whoever types a password, whatever login_hint said: bob completes a
    flow started for alice, who already has an account here. Only the client's `sub` check
    stops bob from becoming alice."""
    alice, bob = pds.accounts["alice"], pds.accounts["bob"]
    site.server.cli("user", "add", alice.did, "--handle", alice.handle, "--username", "alice")
    browser = site.browser()
    page = open_pds_page(site, pds, browser, alice.handle)
    assert page.data.get("loginHint") == alice.handle
    callback = page.approve(page.sign_in(bob.handle, bob.password))
    refused = browser.get(callback)
    assert refused.status_code == 400, refused.text
    assert "A different account signed in" in refused.text and "Traceback" not in refused.text
    assert not any(c.name == site.session_cookie for c in browser.jar)
    assert signed_in_as(site, browser) is None
    assert browser.get(site.public_url + "/auth/signup").status_code == 403, "no signup for bob either"
    assert site.server.cli("user", "list").stdout == f"alice\t{alice.handle}\t{alice.did}\tadmin\n"
    assert_no_pds_sessions_kept(site, pds, bob)


def test_denying_at_the_pds_signs_nobody_in(site, pds):
    alice = pds.accounts["alice"]
    browser = site.browser()
    page = open_pds_page(site, pds, browser, alice.did)
    page.sign_in(alice.handle, alice.password)
    callback = page.deny()
    assert callback_params(callback)["error"] == "access_denied"
    denied = browser.get(callback)
    assert denied.status_code == 400 and 'class="error"' in denied.text, denied.text
    assert signed_in_as(site, browser) is None
    assert site.server.cli("user", "list").stdout == ""
