"""Handles, DIDs, login-box input, and identity resolution through a real loopback DNS server."""

from __future__ import annotations

import time

import pytest

import robotwtf_atproto as atp
from atproto_fixtures import net  # noqa: F401
from fakepds import new_plc_did

# -- syntax ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, normal",
    [
        ("alice.bsky.social", "alice.bsky.social"),
        ("@Alice.Bsky.Social", "alice.bsky.social"),
        ("XN--NXASMQ6B.com", "xn--nxasmq6b.com"),
        ("a.co", "a.co"),
        ("john.test", "john.test"),
        ("8.cn", "8.cn"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
    ],
)
def test_valid_handles_are_normalised(text, normal):
    assert atp.normalize_handle(text) == normal


@pytest.mark.parametrize(
    "text",
    [
        "alice", "alice.", ".alice.com", "alice..com", "-alice.com", "alice-.com", "alice.com-",
        "alice.4com", "127.0.0.1", "a" * 64 + ".com", ("a" * 62 + ".") * 4 + "com", "al ice.com",
        "alice.com\n", " alice.com", "ålice.com", "alice_x.com", "@@alice.com", "alice.com/path", "",
    ],
)
def test_invalid_handles(text):
    assert atp.normalize_handle(text) is None


@pytest.mark.parametrize(
    "did, valid",
    [
        ("did:plc:z72i7hdynmk6r22z27h6tvur", True),
        ("did:web:example.com", True),
        ("did:web:localhost%3A8080", True),
        ("did:plc:Z72i7hdynmk6r22z27h6tvur", False),  # did:plc is lower-case base32
        ("did:plc:z72i7hdynmk6r22z27h6tvu", False),
        ("did:PLC:z72i7hdynmk6r22z27h6tvur", False),
        ("did:web:", False),
        ("did:web:example.com:", False),
        ("did:web:exa mple.com", False),
        ("did:x:" + "a" * 2048, False),
        ("DID:plc:z72i7hdynmk6r22z27h6tvur", False),
    ],
)
def test_did_syntax(did, valid):
    assert atp.is_valid_did(did) is valid


@pytest.mark.parametrize(
    "text, kind, value",
    [
        ("@Alice.BSKY.social", "handle", "alice.bsky.social"),
        ("did:plc:z72i7hdynmk6r22z27h6tvur", "did", "did:plc:z72i7hdynmk6r22z27h6tvur"),
        (" https://bsky.social ", "server", "https://bsky.social"),
        ("https://PDS.Example.com/", "server", "https://pds.example.com"),
    ],
)
def test_login_input_classification(text, kind, value):
    assert atp.classify_login_input(text) == atp.LoginInput(kind, value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "Enter your handle"),
        ("alice", "Did you mean alice.bsky.social?"),
        ("alice.local", ".local domain is reserved"),
        ("alice.test", ".test domain is reserved"),  # development only
        ("did:plc:nope", "DID is not valid"),
        ("http://pds.example.com", "must use https"),
        ("http://localhost:2583", "must use https"),
        ("https://pds.example.com:8443", "must not name a port"),
        ("https://10.0.0.1", "not an IP address"),
        ("https://user:pw@pds.example.com", "user name or password"),
        ("https://pds.example.com/xrpc/x", "just the server's address"),
        ("javascript:alert(1)", "not a valid handle"),
        ("alice\x00.com", "not a handle"),
    ],
)
def test_login_input_refusals(text, message):
    with pytest.raises(atp.BadIdentifier, match=message):
        atp.classify_login_input(text)


def test_login_input_in_development_mode_accepts_loopback_servers_and_test_handles():
    assert atp.classify_login_input("http://localhost:2583", True) == atp.LoginInput("server", "http://localhost:2583")
    assert atp.classify_login_input("http://127.0.0.1:2583/", True) == atp.LoginInput("server", "http://127.0.0.1:2583")
    assert atp.classify_login_input("alice.test", True) == atp.LoginInput("handle", "alice.test")
    with pytest.raises(atp.BadIdentifier):
        atp.classify_login_input("http://192.168.1.10:2583", True)


# -- DNS resolver setting ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, parsed",
    [("", None), ("  ", None), (None, None), ("127.0.0.1", ("127.0.0.1", 53)), ("127.0.0.1:2553", ("127.0.0.1", 2553)),
     ("::1", ("::1", 53)), ("[::1]:5353", ("::1", 5353)), ("[::1]", ("::1", 53))],
)
def test_dns_resolver_setting(text, parsed):
    assert atp.parse_dns_resolver_setting(text) == parsed


@pytest.mark.parametrize("text", ["dns.google", "127.0.0.1:0", "127.0.0.1:99999", "127.0.0.1:x", "[::1]x", "1.2.3"])
def test_bad_dns_resolver_setting(text):
    with pytest.raises(ValueError):
        atp.parse_dns_resolver_setting(text)


# -- handle resolution ---------------------------------------------------------------------------


def test_handle_resolves_through_dns(net):
    did = net.account("alice.test")
    assert atp.resolve_handle("Alice.Test", net.fetcher, net.resolver) == did
    assert ("_atproto.alice.test", "TXT") in net.dns.queries


def test_txt_record_split_into_several_strings_is_joined(net):
    did = new_plc_did()
    net.dns.txt("_atproto.split.test", "did=did:plc:", did[len("did:plc:"):])
    assert atp.resolve_handle("split.test", net.fetcher, net.resolver) == did


def test_unrelated_txt_records_are_ignored(net):
    did = new_plc_did()
    net.dns.txt("_atproto.noisy.test", "v=spf1 -all")
    net.dns.txt("_atproto.noisy.test", f"did={did}")
    assert atp.resolve_handle("noisy.test", net.fetcher, net.resolver) == did


def test_conflicting_txt_records_fail(net):
    net.dns.txt("_atproto.twice.test", f"did={new_plc_did()}")
    net.dns.txt("_atproto.twice.test", f"did={new_plc_did()}")
    with pytest.raises(atp.ResolutionError, match="conflicting DNS records"):
        atp.resolve_handle("twice.test", net.fetcher, net.resolver)


def test_txt_record_with_an_invalid_did_fails(net):
    net.dns.txt("_atproto.broken.test", "did=did:plc:short")
    with pytest.raises(atp.ResolutionError, match="valid DID"):
        atp.resolve_handle("broken.test", net.fetcher, net.resolver)


def test_handle_without_dns_or_https_record_does_not_resolve(net):
    with pytest.raises(atp.ResolutionError) as caught:
        atp.resolve_handle("nobody.test", net.fetcher, net.resolver)
    assert str(caught.value) == "That handle does not resolve: nobody.test."


def test_silent_dns_server_is_bounded_by_the_resolver_timeout(net):
    net.dns.silent.add("_atproto.slow.test")
    resolver = atp.dns_resolver(net.dns.address, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(atp.ResolutionError, match="does not resolve"):
        atp.resolve_handle("slow.test", net.fetcher, resolver)
    assert time.monotonic() - started < 3


def test_reserved_tlds_are_never_looked_up(net):
    fetcher = atp.Fetcher(insecure_dev_network=False)
    for handle in ("printer.local", "x.onion", "alice.test", "a.example", "b.internal", "1.0.0.127.in-addr.arpa"):
        with pytest.raises(atp.ResolutionError):
            atp.resolve_handle(handle, fetcher, net.resolver)
    assert net.dns.queries == []


# -- DID resolution --------------------------------------------------------------------------------


def test_did_plc_document_and_its_pds(net):
    did = net.account("alice.test")
    doc = atp.resolve_did(did, net.fetcher, net.plc_url)
    assert doc["id"] == did
    assert atp.handle_from_doc(doc) == "alice.test"
    assert atp.pds_url_from_doc(doc, net.fetcher) == net.pds.url


def test_did_web_on_localhost_in_development_mode(net):
    did = f"did:web:localhost%3A{net.pds.port}"
    net.pds.did_web_doc = {"id": did, "alsoKnownAs": ["at://web.test"], "service": [
        {"id": f"{did}#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": net.pds.url + "/"}]}
    doc = atp.resolve_did(did, net.fetcher, net.plc_url)
    assert atp.pds_url_from_doc(doc, net.fetcher) == net.pds.url


@pytest.mark.parametrize(
    "did, message",
    [
        ("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", "Only did:plc and did:web"),
        ("did:web:example.com:user:alice", "only host names"),
        ("did:web:localhost%3A8080", "only host names"),  # a port only in development mode
        ("did:web:printer.local", "only host names"),
        ("not-a-did", "not a valid DID"),
    ],
)
def test_unsupported_dids(did, message):
    with pytest.raises(atp.ResolutionError, match=message):
        atp.resolve_did(did, atp.Fetcher(), atp.DEFAULT_PLC_URL)


def test_did_document_for_another_did_is_refused(net):
    did = net.account("alice.test")
    other = new_plc_did()
    net.pds.plc[other] = dict(net.pds.plc[did])
    with pytest.raises(atp.ResolutionError, match="different DID"):
        atp.resolve_did(other, net.fetcher, net.plc_url)


def test_unknown_did_fails_clearly(net):
    did = new_plc_did()
    with pytest.raises(atp.ResolutionError, match=f"Could not fetch the DID document for {did}"):
        atp.resolve_did(did, net.fetcher, net.plc_url)


@pytest.mark.parametrize(
    "services",
    [
        [],
        [{"id": "#atproto_pds", "type": "Other", "serviceEndpoint": "https://pds.example.com"}],
        [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "http://pds.example.com"}],
        [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "javascript:alert(1)"}],
        [{"id": "#atproto_labeler", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://x.example.com"}],
    ],
)
def test_pds_must_be_a_valid_atproto_pds_service(services):
    doc = {"id": "did:plc:z72i7hdynmk6r22z27h6tvur", "service": services}
    assert atp.pds_url_from_doc(doc, atp.Fetcher()) is None


def test_handle_from_doc_takes_the_first_valid_at_uri():
    doc = {"alsoKnownAs": ["https://alice.example.com", "at://not a handle", "at://Alice.Example.com", "at://b.test"]}
    assert atp.handle_from_doc(doc) == "alice.example.com"
    assert atp.handle_from_doc({"alsoKnownAs": []}) is None


# -- bidirectional verification -----------------------------------------------------------------


def test_identity_from_a_handle(net):
    did = net.account("alice.test")
    assert atp.resolve_identity("@alice.test", net.fetcher, net.resolver, net.plc_url) == atp.Identity(
        did, "alice.test", net.pds.url
    )


def test_handle_pointing_at_a_did_that_does_not_claim_it_fails(net):
    mallory = net.account("mallory.test")
    net.dns.txt("_atproto.alice.test", f"did={mallory}")
    with pytest.raises(atp.ResolutionError, match="does not claim the handle"):
        atp.resolve_identity("alice.test", net.fetcher, net.resolver, net.plc_url)


def test_did_whose_claimed_handle_points_elsewhere_has_no_verified_handle(net):
    net.account("alice.test")
    mallory = net.account("mallory.test", claimed_handle="alice.test")
    identity = atp.resolve_identity(mallory, net.fetcher, net.resolver, net.plc_url)
    assert identity == atp.Identity(mallory, None, net.pds.url)


def test_did_with_a_verified_handle(net):
    did = net.account("alice.test")
    assert atp.resolve_identity(did, net.fetcher, net.resolver, net.plc_url).handle == "alice.test"
