"""Client ID Metadata Documents: a client_id that is a URL, fetched from a real loopback web server
(development network mode lets the hardened fetcher reach loopback), validated and cached."""

from __future__ import annotations

import collections
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

import robotwtf_as
import robotwtf_mcp
from conftest import start_server
from oauth_flow import Flow, World

REDIRECT = "https://app.example/callback"


class DocumentHost:
    """A loopback web server serving client metadata documents, counting fetches per path."""

    def __init__(self):
        self.routes: dict[str, tuple[int, dict, bytes]] = {}
        self.hits: collections.Counter = collections.Counter()
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                host.hits[self.path] += 1
                status, headers, body = host.routes.get(self.path, (404, {}, b"not found"))
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return self.base + path

    def serve(self, path: str, document: dict | bytes, status: int = 200, **headers) -> str:
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        self.routes[path] = (status, {name.replace("_", "-"): value for name, value in headers.items()}, body)
        return self.url(path)

    def document(self, path: str, **changes) -> dict:
        """A valid public-client document for `path`, with `changes` (None removes a field)."""
        document = {"client_id": self.url(path), "client_name": "Doc App", "redirect_uris": [REDIRECT],
                    "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
                    "token_endpoint_auth_method": "none", **changes}
        return {name: value for name, value in document.items() if value is not None}


@pytest.fixture
def host():
    documents = DocumentHost()
    yield documents
    documents.httpd.shutdown()


@pytest.fixture(scope="module")
def dev(tmp_path_factory) -> World:
    srv = start_server(tmp_path_factory.mktemp("cimd") / "data", env_extra={"ROBOTWTF_INSECURE_DEV_NETWORK": "1"})
    yield World(srv)
    srv.stop()


def flow_for(world: World, client_id: str, redirect: str = REDIRECT) -> Flow:
    return world.flow(client={"client_id": client_id}, redirect_uri=redirect)


def refused_page(flow: Flow, text: str) -> None:
    response = flow.consent_page()
    assert response.status_code == 400 and "Location" not in response.headers, response.text
    assert text in response.text
    assert "go back to" not in response.text


def test_a_metadata_document_client_connects_and_is_fetched_once(dev, host):
    client_id = host.serve("/client.json", host.document("/client.json"), Cache_Control="max-age=600")
    flow = flow_for(dev, client_id)
    page = flow.consent_page()
    assert page.status_code == 200
    assert "Doc App" in page.text and f"127.0.0.1:{host.httpd.server_port}" in page.text and "app.example" in page.text
    tokens = flow.tokens()
    caller = robotwtf_mcp.authenticate_bearer(dev.inst, "Bearer " + tokens["access_token"], flow.resource())
    assert caller.via == "mcp:Doc App" and caller.user_did == flow.did
    assert flow.refresh(tokens["refresh_token"]).status_code == 200
    assert host.hits["/client.json"] == 1  # consent GET, POST, token and refresh used the cache


def test_the_document_is_fetched_again_when_its_cache_expires(dev, host):
    client_id = host.serve("/client.json", host.document("/client.json"), Cache_Control="max-age=600")
    flow = flow_for(dev, client_id)
    assert flow.consent_page().status_code == 200
    dev.sql("UPDATE oauth_clients SET cache_until = ? WHERE client_id = ?", int(time.time()) - 1, client_id)
    host.serve("/client.json", host.document("/client.json", client_name="Renamed App"))
    page = flow.consent_page()
    assert "Renamed App" in page.text and host.hits["/client.json"] == 2


def test_a_failed_fetch_is_not_cached(dev, host):
    flow = flow_for(dev, host.url("/late.json"))
    refused_page(flow, "could not be fetched")
    host.serve("/late.json", host.document("/late.json"))
    assert flow.consent_page().status_code == 200
    assert host.hits["/late.json"] == 2


@pytest.mark.parametrize("changes, message", [
    ({"client_id": "https://other.example/client.json"}, "names another client_id"),
    ({"token_endpoint_auth_method": "client_secret_post"}, "must describe a public client"),
    ({"token_endpoint_auth_method": "private_key_jwt"}, "must describe a public client"),
    ({"client_secret": "s3cret"}, "must describe a public client"),
    ({"redirect_uris": ["javascript:alert(1)"]}, "metadata document is invalid"),
    ({"redirect_uris": None}, "metadata document is invalid"),
    ({"grant_types": ["client_credentials"]}, "metadata document is invalid"),
    ({"client_name": "Doc\u202eApp"}, "metadata document is invalid"),
])
def test_an_unacceptable_document_is_refused_and_not_cached(dev, host, changes, message):
    flow = flow_for(dev, host.serve("/bad.json", host.document("/bad.json", **changes)))
    refused_page(flow, message)
    refused_page(flow, message)
    assert host.hits["/bad.json"] == 2


def test_a_document_without_an_auth_method_is_a_public_client(dev, host):
    flow = flow_for(dev, host.serve("/plain.json", host.document("/plain.json", token_endpoint_auth_method=None)))
    assert flow.token(flow.code()).status_code == 200


@pytest.mark.parametrize("status, headers, body, message", [
    (302, {"Location": "/client.json"}, b"", "redirects are not followed"),
    (200, {}, b"[1, 2]", "without a JSON object"),
    (200, {}, b"x" * 6000, "larger than"),
    (500, {}, b"{}", "HTTP 500"),
])
def test_fetch_rules(dev, host, status, headers, body, message):
    host.serve("/client.json", host.document("/client.json"))
    host.routes["/odd.json"] = (status, headers, body)
    refused_page(flow_for(dev, host.url("/odd.json")), message)


def test_the_redirect_uri_must_be_one_the_document_lists(dev, host):
    flow = flow_for(dev, host.serve("/client.json", host.document("/client.json")), "https://evil.example/callback")
    response = flow.consent_page()
    assert response.status_code == 400 and "Location" not in response.headers


@pytest.mark.parametrize("path", ["/a/../client.json", "/./client.json", "/client.json#x", ""])
def test_client_id_urls_follow_the_drafts_rules(dev, host, path):
    host.serve("/client.json", host.document("/client.json"))
    refused_page(flow_for(dev, host.base + path), "client_id URL")
    assert host.hits["/client.json"] == 0


def test_a_document_client_cannot_authenticate_with_a_secret(dev, host):
    flow = flow_for(dev, host.serve("/client.json", host.document("/client.json")))
    code = flow.code()
    response = flow.token(code, client_secret="made-up")
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert flow.token(code).status_code == 200


def test_outside_development_mode_plain_http_documents_are_refused(server, host):
    flow = flow_for(World(server), host.serve("/client.json", host.document("/client.json")))
    refused_page(flow, "must use https")
    assert host.hits["/client.json"] == 0


def test_the_consent_for_a_document_client_is_listed_with_its_name(dev, host):
    flow = flow_for(dev, host.serve("/client.json", host.document("/client.json")))
    flow.tokens()
    page = flow.browser.get(dev.server.url + "/account/apps")
    assert "<td>Doc App</td>" in page.text and "app.example" in page.text


@pytest.mark.parametrize("headers, seconds", [
    ({}, 3600),
    ({"Cache-Control": "max-age=600"}, 600),
    ({"Cache-Control": "public, max-age=\"900\""}, 900),
    ({"Cache-Control": "max-age=5"}, 60),
    ({"Cache-Control": "max-age=99999999"}, 86400),
    ({"Cache-Control": "no-store"}, 60),
    ({"Cache-Control": "no-cache, max-age=600"}, 60),
    ({"Expires": "Thu, 01 Jan 1970 00:00:00 GMT"}, 60),
    ({"Expires": "garbage"}, 60),
])
def test_cache_lifetime_follows_http_headers_within_bounds(headers, seconds):
    assert robotwtf_as.cache_lifetime(requests.structures.CaseInsensitiveDict(headers)) == seconds


def test_expires_in_the_future_sets_the_lifetime():
    expires = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 1800))
    assert 1790 <= robotwtf_as.cache_lifetime({"Expires": expires}) <= 1800
