"""A scripted browser for the end-to-end login tests: requests plus a cookie jar that behaves
like a browser's, and the real PDS's sign-in and consent steps driven through the JSON API its
own sign-in page calls (`/@atproto/oauth-provider/~api`, see ../shared/pds/README.md).

Two things make plain `requests` unlike a browser here, and `Browser` fixes both:
- Browsers treat http://localhost and http://127.0.0.1 as secure contexts and send `Secure`
  cookies there; the PDS's `csrf-token` cookie is `Secure` and its issuer is http://localhost:2583.
- The confidential client's public URL is https://client.login-harness.net, which exists only
  as a name: `route_host` sends that origin to robotwtf's loopback port the way a TLS-terminating
  reverse proxy would (Host kept, `X-Forwarded-Proto: https`), so the cookie jar sees the https
  origin and keeps robotwtf's `Secure`/`__Host-` cookies exactly as a browser would.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
from urllib.parse import parse_qs, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar, get_cookie_header

TIMEOUT = 30
PDS_API = "/@atproto/oauth-provider/~api"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")


class _BrowserCookiePolicy(http.cookiejar.DefaultCookiePolicy):
    """The standard policy, except that loopback http origins count as secure contexts."""

    def return_ok_secure(self, cookie, request) -> bool:
        if urlsplit(request.get_full_url()).hostname in LOOPBACK_HOSTS:
            return True
        return super().return_ok_secure(cookie, request)


class _ReverseProxy(HTTPAdapter):
    """Delivers requests for an https origin to an http loopback port, as a TLS-terminating
    proxy in front of robotwtf would."""

    def __init__(self, backend: str):
        super().__init__()
        self.backend = backend

    def send(self, request, **kwargs):
        public = urlsplit(request.url)
        forwarded = request.copy()
        forwarded.url = urlunsplit(("http", self.backend, public.path, public.query, ""))
        forwarded.headers.update({"Host": public.netloc, "X-Forwarded-Proto": "https",
                                  "X-Forwarded-Host": public.netloc})
        response = super().send(forwarded, **kwargs)
        response.url, response.request = request.url, request
        return response


class Browser:
    """One browser profile: a cookie jar shared by every site it visits. Redirects are never
    followed automatically, so each hop can be checked."""

    def __init__(self):
        self.jar = RequestsCookieJar()
        self.jar.set_policy(_BrowserCookiePolicy())
        self.http = requests.Session()
        # requests' own jar uses the standard policy; ours is the only one that counts.
        self.http.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))

    def route_host(self, public_origin: str, backend: str) -> None:
        """Send requests for `public_origin` (https://host) to `backend` (127.0.0.1:port)."""
        self.http.mount(public_origin + "/", _ReverseProxy(backend))

    def request(self, method: str, url: str, headers: dict | None = None, **kwargs) -> requests.Response:
        prepared = self.http.prepare_request(requests.Request(method, url, headers=headers, **kwargs))
        prepared.headers.pop("Cookie", None)
        cookie = get_cookie_header(self.jar, prepared)
        if cookie:
            prepared.headers["Cookie"] = cookie
        response = self.http.send(prepared, allow_redirects=False, timeout=TIMEOUT)
        extract_cookies_to_jar(self.jar, prepared, response.raw)
        return response

    def get(self, url: str, **kwargs) -> requests.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> requests.Response:
        return self.request("POST", url, **kwargs)

    def cookie(self, name: str, host: str) -> http.cookiejar.Cookie | None:
        """The stored cookie `name` for `host` (host-only cookies of `localhost` are stored
        under `localhost.local`, as http.cookiejar does for dotless hosts)."""
        wanted = {host, host + ".local"}
        return next((c for c in self.jar if c.name == name and c.domain in wanted), None)


def navigation_headers(site: str) -> dict:
    """The Fetch Metadata headers of a top-level navigation (the PDS checks them)."""
    return {"Sec-Fetch-Site": site, "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document",
            "Sec-Fetch-User": "?1", "Accept": "text/html"}


def csrf_field(page: requests.Response) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text).group(1)


# --- the PDS's authorization pages --------------------------------------------------------------


class PdsPage:
    """The PDS's authorization page for one request, open in `browser`; its buttons are
    the JSON API calls the page's script makes."""

    def __init__(self, browser: Browser, issuer: str, authorize_url: str):
        self.browser, self.issuer, self.url = browser, issuer, authorize_url
        # Arriving from robotwtf's 303: a cross-site top-level navigation.
        self.page = browser.get(authorize_url, headers=navigation_headers("cross-site"))
        if self.page.status_code != 200:
            raise AssertionError(f"authorization page: {self.page.status_code} {self.page.text[:300]}")
        self.data = hydration_data(self.page.text, "__authorizeData")

    def _api(self, endpoint: str, body: dict, bearer: str | None = None) -> requests.Response:
        return pds_api(self.browser, self.issuer, self.url, "POST", endpoint, json=body, bearer=bearer)

    def sign_in(self, username: str, password: str) -> dict:
        """Type a username and password and press "Sign in"; returns the account JSON and
        the ephemeral token the page uses for consent."""
        return _sign_in(self.browser, self.issuer, self.url, username, password)

    def approve(self, signed_in: dict) -> str:
        """Press "Authorize"; returns the Location of the PDS's final redirect to the client."""
        reply = self._api("/consent", {"did": signed_in["account"]["did"]}, signed_in["ephemeralToken"])
        return self._follow(reply)

    def deny(self) -> str:
        """Press "Deny access"."""
        return self._follow(self._api("/reject", {}))

    def _follow(self, reply: requests.Response) -> str:
        if reply.status_code != 200 or "url" not in reply.json():
            raise AssertionError(f"PDS decision: {reply.status_code} {reply.text[:300]}")
        headers = {**navigation_headers("same-origin"), "Referer": self.url}
        redirect = self.browser.get(reply.json()["url"], headers=headers)
        if redirect.status_code != 303:
            raise AssertionError(f"PDS final redirect: {redirect.status_code} {redirect.text[:300]}")
        return redirect.headers["Location"]


class PdsAccountPage:
    """The PDS's own account page (/account), signed in as one account: what its owner sees,
    such as which apps hold OAuth sessions."""

    def __init__(self, issuer: str, username: str, password: str):
        self.browser, self.issuer, self.url = Browser(), issuer, issuer + "/account"
        page = self.browser.get(self.url, headers=navigation_headers("none"))
        if page.status_code != 200:
            raise AssertionError(f"PDS account page: {page.status_code} {page.text[:300]}")
        _sign_in(self.browser, issuer, self.url, username, password)

    def oauth_sessions(self, did: str) -> list[dict]:
        """The account's live OAuth sessions: [{tokenId, clientId, scope, ...}]."""
        reply = pds_api(self.browser, self.issuer, self.url, "GET", "/oauth-sessions", params={"did": did})
        if reply.status_code != 200:
            raise AssertionError(f"PDS oauth-sessions: {reply.status_code} {reply.text[:300]}")
        return reply.json()


def pds_api(browser: Browser, issuer: str, page_url: str, method: str, endpoint: str,
            bearer: str | None = None, **kwargs) -> requests.Response:
    """A call the PDS's page script at `page_url` makes to its API: same-origin fetch
    metadata, the page as Referer, and the double-submit CSRF token."""
    csrf = browser.cookie("csrf-token", urlsplit(issuer).hostname)
    headers = {"Origin": issuer, "Referer": page_url, "Sec-Fetch-Site": "same-origin",
               "Sec-Fetch-Mode": "same-origin", "Sec-Fetch-Dest": "empty",
               "x-csrf-token": csrf.value if csrf else ""}
    if bearer:
        headers["Authorization"] = "Bearer " + bearer
    return browser.request(method, issuer + PDS_API + endpoint, headers=headers, **kwargs)


def _sign_in(browser: Browser, issuer: str, page_url: str, username: str, password: str) -> dict:
    reply = pds_api(browser, issuer, page_url, "POST", "/sign-in",
                    json={"locale": "en", "username": username, "password": password})
    if reply.status_code != 200:
        raise AssertionError(f"PDS sign-in as {username}: {reply.status_code} {reply.text[:300]}")
    return reply.json()


def hydration_data(html: str, name: str) -> dict:
    """The data the PDS hands its page script: `window["<name>"]=JSON.parse(<JSON string>);`
    (requestUri, clientId, clientMetadata as the PDS loaded it, loginHint, scope, ...)."""
    opening = f'window["{name}"]=JSON.parse('
    literal, _ = json.JSONDecoder().raw_decode(html, html.index(opening) + len(opening))
    return json.loads(literal)


def callback_params(location: str) -> dict:
    """code, state and iss (or error, ...) from the query of the PDS's final redirect."""
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
