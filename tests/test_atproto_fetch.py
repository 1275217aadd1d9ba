"""The hardened fetcher: SSRF rules before and after DNS resolution, no redirects, a total
deadline that holds against trickling servers, and a response size cap.

How the after-resolution block is tested: requests-hardened resolves with the system resolver
(getaddrinfo), which cannot be pointed at a test DNS server from inside the process. So
`test_names_resolving_to_internal_addresses_are_blocked` runs a child Python in fresh mount and
network namespaces (`unshare -mn`, we run as root): there /etc/resolv.conf is bind-mounted to
point at a FakeDNS on 127.0.0.1:53 that answers public-looking names with 127.0.0.1, 10.0.0.1,
169.254.169.254, ... The namespace has only a loopback interface, so even a filter failure could
not send a packet anywhere: it would show up as a connection error instead of UnsafeURL.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import robotwtf_atproto as atp
from fakepds import FakePDS

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def pds():
    with FakePDS() as server:
        yield server


@pytest.fixture
def dev_fetcher():
    return atp.Fetcher(insecure_dev_network=True, deadline=1, read_timeout=5)


# -- URL rules before any network activity --------------------------------------------------------

REFUSED_ALWAYS = [
    ("http://pds.example.com/x", "must use https"),
    ("ftp://pds.example.com/x", "must start with https://"),
    ("file:///etc/passwd", "must start with https://"),
    ("javascript:alert(1)", "must start with https://"),
    ("data:text/html,hi", "must start with https://"),
    ("https:pds.example.com", "must start with https://"),
    ("https://pds.example.com:8443/x", "must not name a port"),
    ("https://pds.example.com:443/x", "must not name a port"),
    ("https://pds.example.com:/x", "must not name a port"),
    ("https://user:pw@pds.example.com/x", "user name or password"),
    ("https://pds.example.com@evil.example.com/x", "user name or password"),
    ("https://127.0.0.1/x", "not an IP address"),
    ("https://10.0.0.1/x", "not an IP address"),
    ("https://169.254.169.254/latest/meta-data", "not an IP address"),
    ("https://[::1]/x", "not an IP address"),
    ("https://[::ffff:10.0.0.1]/x", "not an IP address"),
    ("https://2130706433/x", "host name is not valid"),
    ("https://0x7f.0.0.1/x", "host name is not valid"),
    ("https://127.1/x", "host name is not valid"),
    ("https://localhost/x", "host name is not valid"),
    ("https://printer.local/x", ".local domain is reserved"),
    ("https://db.internal/x", ".internal domain is reserved"),
    ("https://x.onion/x", ".onion domain is reserved"),
    ("https://1.0.0.127.in-addr.arpa/x", ".arpa domain is reserved"),
    ("https://svc.localhost/x", ".localhost domain is reserved"),
    ("https://a.example/x", ".example domain is reserved"),
    ("https://pds.example.com\\@evil.example.com/x", "backslashes"),
    ("https://pds.example.com/a b", "spaces"),
    ("https://pds.example.com/\r\nX-Injected: 1", "control characters"),
    ("https://pdś.example.com/x", "non-ASCII"),
    ("https://pds.example.com/x#frag", "fragment"),
    ("https://", "no host name"),
    ("", "empty"),
]


LOOPBACK = ("https://127.0.0.1/", "https://[::1]/", "https://localhost/")  # allowed in development mode
REFUSED_CASES = [(url, reason, False) for url, reason in REFUSED_ALWAYS] + [
    (url, reason, True) for url, reason in REFUSED_ALWAYS if not url.startswith(LOOPBACK)
]


@pytest.mark.parametrize(
    "url, reason, dev", REFUSED_CASES, ids=[("dev " if dev else "") + url[:50] for url, _, dev in REFUSED_CASES]
)
def test_unsafe_urls_are_refused_before_connecting(url, reason, dev):
    with pytest.raises(atp.UnsafeURL, match=reason):
        atp.Fetcher(insecure_dev_network=dev).get_json(url)


def test_test_tld_only_in_development():
    assert "reserved" in atp.url_problem("https://pds.test/x", False)
    assert atp.url_problem("https://pds.test/x", True) is None


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:{port}/x", "http://localhost:{port}/x", "http://127.0.0.1/x", "https://localhost:{port}/x"],
)
def test_loopback_with_dev_flag_off_is_refused_and_never_contacted(pds, url):
    with pytest.raises(atp.UnsafeURL):
        atp.Fetcher(insecure_dev_network=False).get_json(url.format(port=pds.port))
    assert pds.log == []


@pytest.mark.parametrize(
    "url, allowed",
    [
        ("http://127.0.0.1:2583/x", True),
        ("http://127.9.9.9:2583/x", True),
        ("http://localhost:2583/x", True),
        ("http://[::1]:2583/x", True),
        ("http://10.0.0.1:2583/x", False),
        ("http://192.168.1.1/x", False),
        ("http://172.16.0.1/x", False),
        ("http://169.254.169.254/x", False),
        ("http://[fc00::1]:80/x", False),
        ("http://pds.example.com/x", False),
        ("http://user@localhost:2583/x", False),
    ],
)
def test_development_mode_relaxes_only_loopback(url, allowed):
    assert (atp.url_problem(url, True) is None) is allowed


def test_dev_mode_reaches_a_loopback_server_by_address_and_by_localhost(pds, dev_fetcher):
    assert dev_fetcher.get_json(f"{pds.url}/.well-known/oauth-protected-resource")["resource"] == pds.url
    assert dev_fetcher.get_json(f"http://localhost:{pds.port}/.well-known/oauth-authorization-server")["issuer"]


# -- behaviour of upstream servers ----------------------------------------------------------------


def test_redirects_are_not_followed(pds, dev_fetcher):
    pds.behaviour["/r"] = "redirect"
    with pytest.raises(atp.FetchError, match="redirect"):
        dev_fetcher.get_json(f"{pds.url}/r")


def test_slow_body_hits_the_total_deadline(pds, dev_fetcher):
    pds.behaviour["/slow"] = "slow_body"
    started = time.monotonic()
    with pytest.raises(atp.UpstreamTimeout, match="took too long"):
        dev_fetcher.get_json(f"{pds.url}/slow")
    assert time.monotonic() - started < 2  # deadline 1 s although every byte came within the read timeout


def test_slow_headers_hit_the_total_deadline(pds, dev_fetcher):
    pds.behaviour["/slow"] = "slow_headers"
    started = time.monotonic()
    with pytest.raises(atp.UpstreamTimeout):
        dev_fetcher.get_json(f"{pds.url}/slow")
    assert time.monotonic() - started < 2


def test_read_timeout(pds):
    pds.behaviour["/slow"] = "slow_headers"
    pds.trickle_delay = 2
    fetcher = atp.Fetcher(insecure_dev_network=True, read_timeout=0.3, deadline=10)
    started = time.monotonic()
    with pytest.raises(atp.UpstreamTimeout):
        fetcher.get_json(f"{pds.url}/slow")
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("kind", ["oversize", "oversize_declared"])
def test_oversize_response(pds, dev_fetcher, kind):
    pds.behaviour["/big"] = kind
    with pytest.raises(atp.UpstreamTooLarge, match="larger than 256 KiB"):
        dev_fetcher.get_json(f"{pds.url}/big")


def test_size_cap_is_configurable(pds):
    fetcher = atp.Fetcher(insecure_dev_network=True, max_bytes=100)
    with pytest.raises(atp.UpstreamTooLarge):
        fetcher.get_json(f"{pds.url}/.well-known/oauth-authorization-server")


def test_connection_refused(dev_fetcher):
    with pytest.raises(atp.FetchError, match="Could not connect to 127.0.0.1"):
        dev_fetcher.get_json("http://127.0.0.1:1/x")


def test_non_200_and_non_json(pds, dev_fetcher):
    with pytest.raises(atp.UnexpectedResponse, match="HTTP 404"):
        dev_fetcher.get_json(f"{pds.url}/nothing-here")
    with pytest.raises(atp.UnexpectedResponse):
        dev_fetcher.get_text(f"{pds.url}/.well-known/atproto-did")


def test_post_form_returns_status_headers_and_json(pds, dev_fetcher):
    status, headers, body = dev_fetcher.post_form(f"{pds.url}/oauth/par", {"client_id": "x"})
    assert status == 400 and body["error"] == "invalid_client" and headers["DPoP-Nonce"] == pds.nonce


def test_error_messages_never_carry_upstream_bodies(pds, dev_fetcher):
    pds.behaviour["/big"] = "oversize"
    for url in (f"{pds.url}/big", f"{pds.url}/nothing-here"):
        with pytest.raises(atp.FetchError) as caught:
            dev_fetcher.get_json(url)
        assert "xxxx" not in str(caught.value) and "not_found" not in str(caught.value)


# -- after DNS resolution: names that point inside ------------------------------------------------

CHILD = textwrap.dedent(
    """
    import json, subprocess, sys, tempfile
    sys.path[:0] = [{repo!r}, {tests!r}]
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as conf:
        conf.write("nameserver 127.0.0.1\\noptions timeout:1 attempts:1\\n")
    subprocess.run(["mount", "--bind", conf.name, "/etc/resolv.conf"], check=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    from fakedns import FakeDNS
    import robotwtf_atproto as atp
    dns = FakeDNS("127.0.0.1", 53)
    names = {{
        "loop.attacker.net": ("a", "127.0.0.1"),
        "loop6.attacker.net": ("aaaa", "::1"),
        "private.attacker.net": ("a", "10.0.0.1"),
        "router.attacker.net": ("a", "192.168.1.1"),
        "metadata.attacker.net": ("a", "169.254.169.254"),
        "cgnat.attacker.net": ("a", "100.64.0.1"),
        "mapped.attacker.net": ("aaaa", "::ffff:10.0.0.1"),
        "ula.attacker.net": ("aaaa", "fd00::1"),
    }}
    for name, (kind, address) in names.items():
        getattr(dns, kind)(name, address)
    dns.start()
    results = {{}}
    for dev in (False, True):
        fetcher = atp.Fetcher(insecure_dev_network=dev, deadline=3)
        for name in names:
            try:
                fetcher.get_json(f"https://{{name}}/.well-known/did.json")
                outcome = "fetched"
            except atp.AtprotoError as exc:
                outcome = type(exc).__name__ + ": " + str(exc)
            results[f"{{'dev' if dev else 'prod'}} {{name}}"] = outcome
    print(json.dumps(results))
    """
)


def _namespaces_available() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    probe = subprocess.run(["unshare", "-mn", "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


@pytest.mark.skipif(not _namespaces_available(), reason="needs root and unshare(1) for private namespaces")
def test_names_resolving_to_internal_addresses_are_blocked():
    script = CHILD.format(repo=str(TESTS.parent), tests=str(TESTS))
    done = subprocess.run(["unshare", "-mn", sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    blocked = "UnsafeURL: Refusing to contact {}: it resolves to a private, loopback or reserved address."
    for name in ("loop", "loop6", "private", "router", "metadata", "cgnat", "mapped", "ula"):
        assert results[f"prod {name}.attacker.net"] == blocked.format(f"{name}.attacker.net")
    for name in ("private", "router", "metadata", "cgnat", "mapped", "ula"):
        assert results[f"dev {name}.attacker.net"] == blocked.format(f"{name}.attacker.net")
    # Development mode lets loopback through the filter: nothing listens on 443, so it fails to connect.
    assert results["dev loop.attacker.net"] == "Unreachable: Could not connect to loop.attacker.net."
    assert results["dev loop6.attacker.net"] == "Unreachable: Could not connect to loop6.attacker.net."
