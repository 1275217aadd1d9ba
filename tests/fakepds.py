"""A fake ATProto PDS + OAuth authorization server + PLC directory, over real HTTP on loopback.

It checks what a real one checks, so the client under test cannot pass by being sloppy:
DPoP proofs (signature, typ, alg, public-only jwk, htm, htu, iat window, jti reuse, server
nonce), client authentication (localhost development client: redirect URI taken from the
client_id; confidential client: private_key_jwt assertion signature, kid, iss, sub, aud, exp,
jti reuse, against the public JWK the test registers), PAR only (the authorization endpoint
refuses anything but a pushed request_uri), PKCE S256, the DPoP key binding between PAR and the
token request, single-use codes, and `iss` in the redirect back.

Signing in is simulated: the test GETs the authorization URL with an extra `as_user=<handle>`
parameter, which is whoever "typed their password" (like a real PDS, it ignores login_hint),
and reads code, state and iss from the 303 Location.

Knobs for misbehaviour are plain attributes (see `__init__`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import ECKey

DELETE = object()  # in metadata_overrides: remove the field
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class OAuthFailure(Exception):
    def __init__(self, status: int, error: str, description: str = "", headers: dict | None = None):
        super().__init__(error)
        self.status, self.error, self.description, self.headers = status, error, description, headers or {}


def _b64url_json(segment: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def new_plc_did() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return "did:plc:" + "".join(secrets.choice(alphabet) for _ in range(24))


class FakePDS:
    def __init__(self, plc: dict | None = None):
        self.plc = plc if plc is not None else {}  # did -> DID document (shareable between fakes)
        self.accounts: dict[str, str] = {}  # handle -> did (accounts hosted here)
        self.client_keys: dict[str, dict] = {}  # confidential client_id -> public JWK
        self.client_redirects: dict[str, list[str]] = {}  # confidential client_id -> redirect URIs
        self.did_web_doc: dict | None = None  # served at /.well-known/did.json

        # Knobs.
        self.require_nonce: set[str] = set()  # endpoint names: "par", "token", "revoke"
        self.nonce_in_www_authenticate = False  # ask for the nonce with 401 + WWW-Authenticate
        self.nonce_rotates = False  # a new nonce on every request (the client must give up)
        self.metadata_overrides: dict = {}
        self.resource_overrides: dict = {}
        self.callback_iss: str | None = None  # None: the issuer; "": leave iss out
        self.token_overrides: dict = {}
        self.deny = False  # authorization ends with error=access_denied
        # path -> "slow_body" | "slow_headers" | "oversize" | "oversize_declared" | "redirect"
        self.behaviour: dict[str, str] = {}
        self.trickle_delay = 0.2

        # What happened.
        self.nonce = secrets.token_urlsafe(16)
        self.proofs: list[tuple[str, dict]] = []  # (endpoint, claims) of every well-formed DPoP proof
        self.proof_keys: list[str] = []  # the JWK thumbprint of each of those proofs
        self.assertions: list[tuple[str, dict]] = []  # (endpoint, claims) of every valid assertion
        self.par_forms: list[dict] = []
        self.issued: dict[str, dict] = {}  # token -> info
        self.revoked: set[str] = set()
        self.log: list[str] = []  # "METHOD path status"

        self._jtis: set[str] = set()
        self._requests: dict[str, dict] = {}
        self._codes: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fakepds", daemon=True
        )

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> "FakePDS":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakePDS":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------
    @property
    def url(self) -> str:  # PDS URL and issuer: the same origin, like the reference PDS
        return f"http://127.0.0.1:{self.port}"

    issuer = url

    @property
    def plc_url(self) -> str:
        return f"{self.url}/plc"

    # -- accounts --------------------------------------------------------------------------
    def add_account(self, handle: str, did: str | None = None, *, claimed_handle: str | None = None,
                    pds_url: str | None = None) -> str:
        """Host an account: a PLC document whose alsoKnownAs claims `claimed_handle` (default
        `handle`) and whose PDS is this server (or `pds_url`)."""
        did = did or new_plc_did()
        self.accounts[handle] = did
        self.plc[did] = {
            "@context": ["https://www.w3.org/ns/did/v1"],
            "id": did,
            "alsoKnownAs": [f"at://{claimed_handle or handle}"],
            "verificationMethod": [],
            "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                         "serviceEndpoint": pds_url or self.url}],
        }
        return did

    def register_client(self, client_id: str, public_jwk: dict, redirect_uris: list[str]) -> None:
        """What a real AS would learn from the client metadata document and its jwks_uri."""
        self.client_keys[client_id] = public_jwk
        self.client_redirects[client_id] = redirect_uris

    def sign_in(self, authorize_url: str, as_user: str) -> dict:
        """Follow the authorization URL as a browser whose user signs in as `as_user`;
        returns the callback's query parameters."""
        import requests

        response = requests.get(authorize_url, params={"as_user": as_user}, allow_redirects=False, timeout=5)
        if response.status_code != 303:
            raise AssertionError(f"authorize answered {response.status_code}: {response.text}")
        location = response.headers["Location"]
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

    # -- metadata --------------------------------------------------------------------------
    def authorization_server_metadata(self) -> dict:
        meta = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.url}/oauth/authorize",
            "token_endpoint": f"{self.url}/oauth/token",
            "pushed_authorization_request_endpoint": f"{self.url}/oauth/par",
            "revocation_endpoint": f"{self.url}/oauth/revoke",
            "require_pushed_authorization_requests": True,
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
            "scopes_supported": ["atproto", "transition:generic"],
            "authorization_response_iss_parameter_supported": True,
            "dpop_signing_alg_values_supported": ["ES256"],
            "client_id_metadata_document_supported": True,
            "require_request_uri_registration": True,
        }
        return _override(meta, self.metadata_overrides)

    def protected_resource_metadata(self) -> dict:
        return _override({"resource": self.url, "authorization_servers": [self.issuer]}, self.resource_overrides)

    # -- checks ----------------------------------------------------------------------------
    def check_dpop(self, endpoint: str, headers, method: str, path: str) -> str:
        """Validate the DPoP proof; return its key's thumbprint (RFC 9449 §4.3)."""
        proofs = headers.get_all("DPoP") or []
        if len(proofs) != 1:
            raise OAuthFailure(400, "invalid_dpop_proof", "exactly one DPoP header required")
        proof = proofs[0]
        try:
            header = _b64url_json(proof.split(".")[0])
            if header.get("typ") != "dpop+jwt" or header.get("alg") != "ES256":
                raise OAuthFailure(400, "invalid_dpop_proof", "typ/alg")
            jwk = header.get("jwk")
            if not isinstance(jwk, dict) or "d" in jwk:
                raise OAuthFailure(400, "invalid_dpop_proof", "jwk")
            key = ECKey.import_key(jwk)
            claims = jwt.decode(proof, key, algorithms=["ES256"]).claims
        except OAuthFailure:
            raise
        except Exception as exc:
            raise OAuthFailure(400, "invalid_dpop_proof", f"bad proof: {type(exc).__name__}")
        if claims.get("htm") != method or claims.get("htu") != f"{self.url}{path}":
            raise OAuthFailure(400, "invalid_dpop_proof", "htm/htu")
        if not isinstance(claims.get("iat"), int) or abs(claims["iat"] - time.time()) > 60:
            raise OAuthFailure(400, "invalid_dpop_proof", "iat")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise OAuthFailure(400, "invalid_dpop_proof", "jti")
        with self._lock:
            if jti in self._jtis:
                raise OAuthFailure(400, "invalid_dpop_proof", "jti reused")
            self._jtis.add(jti)
        self.proofs.append((endpoint, claims))
        self.proof_keys.append(key.thumbprint())
        if self.nonce_rotates:
            self.nonce = secrets.token_urlsafe(16)
        if endpoint in self.require_nonce and claims.get("nonce") != self.nonce:
            if self.nonce_in_www_authenticate:
                raise OAuthFailure(401, "use_dpop_nonce", "nonce required",
                                   {"WWW-Authenticate": 'DPoP error="use_dpop_nonce", error_description="nonce"'})
            raise OAuthFailure(400, "use_dpop_nonce", "nonce required")
        return key.thumbprint()

    def check_client(self, endpoint: str, form: dict) -> str:
        client_id = form.get("client_id")
        if not client_id:
            raise OAuthFailure(400, "invalid_client", "client_id required")
        if client_id.startswith("http://localhost"):
            if "client_assertion" in form:
                raise OAuthFailure(400, "invalid_client", "the localhost client is public")
            return client_id
        key = self.client_keys.get(client_id)
        if key is None:
            raise OAuthFailure(400, "invalid_client", "unknown client")
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            raise OAuthFailure(400, "invalid_client", "client assertion required")
        assertion = form["client_assertion"]
        try:
            header = _b64url_json(assertion.split(".")[0])
            if header.get("alg") != "ES256" or header.get("kid") != key.get("kid"):
                raise OAuthFailure(400, "invalid_client", "alg/kid")
            claims = jwt.decode(assertion, ECKey.import_key(key), algorithms=["ES256"]).claims
        except OAuthFailure:
            raise
        except Exception as exc:
            raise OAuthFailure(400, "invalid_client", f"bad assertion: {type(exc).__name__}")
        now = time.time()
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise OAuthFailure(400, "invalid_client", "iss/sub")
        if claims.get("aud") != self.issuer:
            raise OAuthFailure(400, "invalid_client", "aud")
        if not isinstance(claims.get("exp"), int) or claims["exp"] < now or claims["exp"] > now + 600:
            raise OAuthFailure(400, "invalid_client", "exp")
        jti = claims.get("jti")
        with self._lock:
            if not jti or ("assertion", jti) in self._jtis:
                raise OAuthFailure(400, "invalid_client", "assertion jti reused")
            self._jtis.add(("assertion", jti))
        self.assertions.append((endpoint, claims))
        return client_id

    def allowed_redirects(self, client_id: str) -> list[str]:
        if client_id.startswith("http://localhost"):
            query = parse_qs(urlsplit(client_id).query)
            return [r for r in query.get("redirect_uri", []) if r.startswith("http://127.0.0.1")]
        return self.client_redirects.get(client_id, [])

    # -- endpoints -------------------------------------------------------------------------
    def par(self, headers, form: dict) -> tuple[int, dict]:
        client_id = self.check_client("par", form)
        jkt = self.check_dpop("par", headers, "POST", "/oauth/par")
        self.par_forms.append(dict(form))
        if form.get("response_type") != "code":
            raise OAuthFailure(400, "unsupported_response_type")
        if form.get("code_challenge_method") != "S256" or len(form.get("code_challenge", "")) != 43:
            raise OAuthFailure(400, "invalid_request", "PKCE S256 required")
        if "atproto" not in form.get("scope", "").split() or not form.get("state"):
            raise OAuthFailure(400, "invalid_request", "scope/state")
        if form.get("redirect_uri") not in self.allowed_redirects(client_id):
            raise OAuthFailure(400, "invalid_request", "redirect_uri not registered")
        request_uri = "urn:ietf:params:oauth:request_uri:req-" + secrets.token_urlsafe(16)
        with self._lock:
            self._requests[request_uri] = {**form, "jkt": jkt, "expires": time.time() + 300}
        return 201, {"request_uri": request_uri, "expires_in": 299}

    def authorize(self, query: dict) -> tuple[int, dict, str]:
        request_uri = query.get("request_uri")
        with self._lock:
            request = self._requests.pop(request_uri, None) if request_uri else None
        if request is None or request["expires"] < time.time() or request["client_id"] != query.get("client_id"):
            return 400, {}, "authorization requires a pushed request_uri for this client"
        if self.deny:
            params = {"error": "access_denied", "state": request["state"], "iss": self.issuer}
        else:
            did = self.accounts.get(query.get("as_user", ""))
            if did is None:
                return 400, {}, "unknown account"
            code = "cod-" + secrets.token_urlsafe(24)
            with self._lock:
                self._codes[code] = {**request, "did": did, "expires": time.time() + 60}
            params = {"code": code, "state": request["state"], "iss": self.issuer}
        if self.callback_iss == "":
            params.pop("iss")
        elif self.callback_iss is not None:
            params["iss"] = self.callback_iss
        return 303, {"Location": request["redirect_uri"] + "?" + urlencode(params)}, ""

    def token(self, headers, form: dict) -> tuple[int, dict]:
        client_id = self.check_client("token", form)
        jkt = self.check_dpop("token", headers, "POST", "/oauth/token")
        if form.get("grant_type") != "authorization_code":
            raise OAuthFailure(400, "unsupported_grant_type")
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)
        if grant is None or grant["expires"] < time.time():
            raise OAuthFailure(400, "invalid_grant", "unknown or used code")
        if grant["client_id"] != client_id or grant["redirect_uri"] != form.get("redirect_uri"):
            raise OAuthFailure(400, "invalid_grant", "client/redirect mismatch")
        if _s256(form.get("code_verifier", "")) != grant["code_challenge"]:
            raise OAuthFailure(400, "invalid_grant", "PKCE verifier mismatch")
        if jkt != grant["jkt"]:
            raise OAuthFailure(400, "invalid_dpop_proof", "DPoP key differs from the one used at PAR")
        access, refresh = "at-" + secrets.token_urlsafe(24), "rt-" + secrets.token_urlsafe(24)
        self.issued[access] = self.issued[refresh] = {"did": grant["did"], "client_id": client_id}
        body = {"access_token": access, "refresh_token": refresh, "token_type": "DPoP",
                "scope": "atproto", "sub": grant["did"], "expires_in": 300}
        return 200, _override(body, self.token_overrides)

    def revoke(self, headers, form: dict) -> tuple[int, dict]:
        client_id = self.check_client("revoke", form)
        self.check_dpop("revoke", headers, "POST", "/oauth/revoke")
        info = self.issued.get(form.get("token", ""))
        if info and info["client_id"] == client_id:
            self.revoked.add(form["token"])
        return 200, {}


def _override(document: dict, overrides: dict) -> dict:
    merged = dict(document)
    for key, value in overrides.items():
        if value is DELETE:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _handler_for(pds: FakePDS):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def do_GET(self):
            self._dispatch("GET")

        def do_POST(self):
            self._dispatch("POST")

        def _dispatch(self, method: str):
            parts = urlsplit(self.path)
            path = parts.path
            special = pds.behaviour.get(path)
            if special:
                return self._misbehave(special)
            try:
                if method == "POST":
                    length = int(self.headers.get("Content-Length") or 0)
                    fields = parse_qs(self.rfile.read(length).decode())
                    if any(len(values) != 1 for values in fields.values()):
                        raise OAuthFailure(400, "invalid_request", "parameter repeated")
                    form = {k: v[0] for k, v in fields.items()}
                    route = {"/oauth/par": pds.par, "/oauth/token": pds.token, "/oauth/revoke": pds.revoke}.get(path)
                    if route is None:
                        return self._send(404, {"error": "not_found"})
                    status, body = route(self.headers, form)
                    return self._send(status, body)
                return self._get(path, {k: v[0] for k, v in parse_qs(parts.query).items()})
            except OAuthFailure as failure:
                body = {"error": failure.error, "error_description": failure.description}
                return self._send(failure.status, body, failure.headers)

        def _get(self, path: str, query: dict):
            if path == "/.well-known/oauth-protected-resource":
                return self._send(200, pds.protected_resource_metadata())
            if path == "/.well-known/oauth-authorization-server":
                return self._send(200, pds.authorization_server_metadata())
            if path == "/.well-known/did.json" and pds.did_web_doc is not None:
                return self._send(200, pds.did_web_doc)
            if path == "/.well-known/atproto-did":
                did = pds.accounts.get((self.headers.get("Host") or "").split(":")[0])
                return self._send_text(200 if did else 404, did or "not found")
            if path.startswith("/plc/"):
                doc = pds.plc.get(path[len("/plc/"):])
                return self._send(200, doc) if doc else self._send(404, {"message": "DID not registered"})
            if path == "/oauth/authorize":
                status, headers, text = pds.authorize(query)
                if status != 303:
                    return self._send_text(status, text)
                self.send_response(303)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                pds.log.append(f"GET {path} 303")
                return None
            return self._send(404, {"error": "not_found"})

        def _send(self, status: int, body: dict, headers: dict | None = None):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("DPoP-Nonce", pds.nonce)
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            pds.log.append(f"{self.command} {urlsplit(self.path).path} {status}")

        def _send_text(self, status: int, text: str):
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _misbehave(self, kind: str):
            try:
                if kind == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif kind == "oversize":
                    data = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()  # no Content-Length: the client must count
                    self.wfile.write(data)
                elif kind == "oversize_declared":
                    self.send_response(200)
                    self.send_header("Content-Length", str(64 * 1024 * 1024))
                    self.end_headers()
                    self.wfile.write(b"{}")
                elif kind == "slow_body":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self._trickle(b'{"issuer": "' + b"x" * 200 + b'"}')
                elif kind == "slow_headers":
                    self.wfile.write(b"HTTP/1.0 200 OK\r\n")
                    self._trickle(b"X-Padding: " + b"x" * 200 + b"\r\n\r\n{}")
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _trickle(self, data: bytes):
            deadline = time.monotonic() + 15  # bounded even if the client never hangs up
            for byte in data:
                if time.monotonic() > deadline:
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(pds.trickle_delay)

    return Handler
