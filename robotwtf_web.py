"""robotwtf in the browser: the web edge (host check, security headers, access log), browser
sessions and CSRF, error pages, sign-in and sign-up, the account and admin pages, and every wiki
page people read and change. Storage is robotwtf_store's; robotwtf.build_app wires the routes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import html
import json
import logging
import os
import posixpath
import re
import select
import sqlite3
import threading
import time
import urllib.parse

import bottle

import robotwtf_semantic as semantic
import robotwtf_store as store

log = logging.getLogger("robotwtf")


def instance() -> store.Instance:
    return bottle.request.app.config["robotwtf.instance"]


def client_ip() -> str:
    """The caller's address; waitress has already applied a trusted proxy's X-Forwarded-For."""
    return bottle.request.environ.get("REMOTE_ADDR", "")


class AtprotoClient:
    """The ATProto OAuth client this instance acts as, and the fetcher/resolver it uses, built
    once from the configuration (robotwtf_atproto is imported only when a login needs it)."""

    def __init__(self, cfg: store.Config, keys: store.Keys):
        import robotwtf_atproto as atproto
        self.client = atproto.make_client(cfg.public_url, keys.es256 if cfg.is_https else None, keys.es256_kid)
        self.fetcher = atproto.Fetcher(insecure_dev_network=cfg.insecure_dev_network)
        self.resolver = atproto.dns_resolver(cfg.dns_resolver)
        self.plc_url = cfg.plc_url

    def client_args(self) -> tuple:
        return self.client, self.fetcher, self.resolver, self.plc_url


@functools.cache
def atproto_client(inst: store.Instance) -> AtprotoClient:
    return AtprotoClient(inst.cfg, inst.keys)


# --- the web edge: host check, security headers, access log ---------------------------------------

# Machine endpoints answer whatever the Host header says and speak JSON (or git's smart HTTP
# protocol); everything else is a browser page, redirected to the public URL's host (CONTRACT §1).
MACHINE_PATH_RE = re.compile(
    r"/healthz|/\.well-known/.*|/auth/client-metadata\.json|/oauth/(token|register|revoke)|/w/[^/]+/mcp"
    r"|/w/[^/]+\.git/(info/refs|git-upload-pack|git-receive-pack)")
HOST_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; connect-src 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")

access_log = logging.getLogger("robotwtf.access")


class LineHandler(logging.StreamHandler):
    """Each record is one os.write of one line: POSIX writes at most PIPE_BUF bytes to a pipe
    whole, and Linux appends each write to a file whole, so short lines need no lock, within this
    process or across worker processes. Under 16 busy connections, request threads queueing for
    the stream handler's lock took a fifth of their time. Longer records (tracebacks) take it."""

    def handle(self, record: logging.LogRecord):
        """logging.Handler.handle without its lock (emit takes it for long records)."""
        passed = self.filter(record)
        if isinstance(passed, logging.LogRecord):  # Python 3.12+: a filter may return a new record
            record = passed
        if passed:
            self.emit(record)
        return passed

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + self.terminator).encode("utf-8", "backslashreplace")
            fd = self.stream.fileno()
            if len(line) <= select.PIPE_BUF:
                os.write(fd, line)
                return
            with self.lock:
                while line:
                    line = line[os.write(fd, line):]
        except Exception:
            self.handleError(record)


def is_machine_path(path: str) -> bool:
    return MACHINE_PATH_RE.fullmatch(path) is not None


def edge(app, cfg: store.Config):
    """WSGI middleware around everything: refuse malformed Host headers, send browsers to the
    public host, add security headers, and log one line per request (never the query string,
    cookies or Authorization, which may carry secrets)."""
    def middleware(environ, start_response):
        started = time.perf_counter()
        status_seen = []

        def start(status, headers, exc_info=None):
            status_seen.append(status)
            if environ.get("robotwtf.user") is not None:
                # What a signed-in person sees is theirs: no cache keeps it (ASVS 5.0 14.3.2).
                headers = [(n, v) for n, v in headers if n.lower() != "cache-control"] + [("Cache-Control", "no-store")]
            names = {name.lower() for name, _ in headers}
            extra = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer")]
            if any(name.lower() == "content-type" and value.startswith("text/html") for name, value in headers):
                extra += [("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY")]
            return start_response(status, headers + [h for h in extra if h[0].lower() not in names], exc_info)

        path = environ.get("PATH_INFO", "")
        try:
            return _edge_route(app, cfg, environ, start, path)
        finally:
            access_log.info("%s %s %s %.1fms", environ.get("REQUEST_METHOD"), store.printable(path),
                            status_seen[0].split(" ", 1)[0] if status_seen else "-",
                            (time.perf_counter() - started) * 1000)
    return middleware


def _edge_route(app, cfg: store.Config, environ, start, path: str):
    host = environ.get("HTTP_HOST")
    if host is not None and not HOST_RE.fullmatch(host):
        return _plain(start, "400 Bad Request", "Malformed Host header.\n")
    if not _is_utf8(path):
        # bottle would drop the bad bytes and serve some other page; say what is wrong instead
        return _plain(start, "400 Bad Request", "The URL is not valid UTF-8.\n")
    undecodable = _non_utf8_header(environ)
    if undecodable:
        message = f"The {undecodable} header is not valid UTF-8."
        if is_machine_path(path):
            return _json(start, "400 Bad Request", {"error": "bad_request", "message": message})
        return _plain(start, "400 Bad Request", message + "\n")
    if host and host.lower() != cfg.public_host.lower() and not is_machine_path(path):
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _plain(start, "400 Bad Request", f"Use {cfg.public_url} for this request.\n")
        query = environ.get("QUERY_STRING")
        target = cfg.public_url + urllib.parse.quote(path) + (f"?{query}" if query else "")
        start("302 Found", [("Location", target), ("Content-Length", "0")])
        return [b""]
    return app(environ, start)


def _is_utf8(wsgi_text: str) -> bool:
    """WSGI hands over URL bytes as latin-1 text (PEP 3333); are those bytes UTF-8?"""
    try:
        wsgi_text.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return False
    return True


def _non_utf8_header(environ) -> str | None:
    """The name of a header whose value is not UTF-8, else None. Bottle decodes header values as
    UTF-8 (WSGIHeaderDict) and raises on anything else, which would be a 500 deep inside a route;
    no header robotwtf reads needs other bytes (RFC 9110 §5.5: only ASCII is interoperable)."""
    for key, value in environ.items():
        if (key.startswith("HTTP_") or key == "CONTENT_TYPE") and isinstance(value, str) and not value.isascii() \
                and not _is_utf8(value):
            return key.removeprefix("HTTP_").replace("_", "-").title()
    return None


def _json(start, status: str, document: dict):
    body = json.dumps(document).encode()
    start(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                   ("Cache-Control", "no-store")])
    return [body]


def _plain(start, status: str, text: str):
    body = text.encode()
    start(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


# --- browser sessions, CSRF, rendering --------------------------------------------------------------

SESSION_TYP = "robotwtf-session+jwt"
ANON_COOKIE = "robotwtf_anon"


def session_cookie_name(cfg: store.Config) -> str:
    # The __Host- prefix pins the cookie to this exact host over https (RFC 6265bis §4.1.3.2).
    return "__Host-robotwtf_session" if cfg.is_https else "robotwtf_session"


def _set_cookie(name: str, value: str, max_age: int) -> None:
    cfg = instance().cfg
    bottle.response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                               secure=cfg.is_https, samesite="lax")


def start_session(did: str) -> None:
    """Log this browser in as `did`: a session row plus a signed cookie naming it."""
    inst = instance()
    session_id = store.create_session(inst.db(), did, inst.cfg.session_days,
                                bottle.request.get_header("User-Agent", ""))
    t = store.now()
    token = inst.keys.sign_rs256({"iss": inst.cfg.public_url, "sub": did, "sid": session_id, "iat": t,
                                  "exp": t + inst.cfg.session_days * 86400}, SESSION_TYP)
    _set_cookie(session_cookie_name(inst.cfg), token, inst.cfg.session_days * 86400)
    bottle.request.environ["robotwtf.user"] = store.get_user(inst.db(), did)
    bottle.request.environ["robotwtf.session_id"] = session_id


def end_session() -> None:
    inst = instance()
    session_id = current_session_id()
    if session_id:
        store.delete_session(inst.db(), session_id)
    bottle.response.delete_cookie(session_cookie_name(inst.cfg), path="/", secure=inst.cfg.is_https,
                                  httponly=True, samesite="lax")


def current_user() -> sqlite3.Row | None:
    """The signed-in user, checked against the sessions table on every request, so a revoked
    session or a deleted user is out at once."""
    environ = bottle.request.environ
    if "robotwtf.user" not in environ:
        environ["robotwtf.user"], environ["robotwtf.session_id"] = _session_from_cookie()
    return environ["robotwtf.user"]


def current_session_id() -> str | None:
    current_user()
    return bottle.request.environ["robotwtf.session_id"]


def _session_from_cookie():
    inst = instance()
    token = bottle.request.get_cookie(session_cookie_name(inst.cfg))
    if not token:
        return None, None
    try:
        claims = inst.keys.verify_rs256(token, SESSION_TYP)
    except store.BadInput:
        return None, None
    if claims.get("iss") != inst.cfg.public_url or not isinstance(claims.get("exp"), int) \
            or claims["exp"] <= store.now() or not isinstance(claims.get("sid"), str):
        return None, None
    user = store.session_user(inst.db(), claims["sid"])
    return (user, claims["sid"]) if user is not None and user["did"] == claims.get("sub") else (None, None)


def csrf_token() -> str:
    """HMAC of the session id (or, before sign-in, of a random cookie): a forged cross-site form
    can't know it, and nothing needs storing."""
    return hmac.new(instance().keys.csrf_key, _csrf_binding().encode(), hashlib.sha256).hexdigest()


def _csrf_binding() -> str:
    session_id = current_session_id()
    if session_id:
        return "session:" + session_id
    environ = bottle.request.environ
    anon = environ.get("robotwtf.anon") or bottle.request.get_cookie(ANON_COOKIE)
    if not anon:
        anon = store.new_secret(16)
        _set_cookie(ANON_COOKIE, anon, 86400)
    environ["robotwtf.anon"] = anon
    return "anon:" + anon


def check_csrf() -> None:
    sent = form_text("csrf_token")
    if not hmac.compare_digest(sent, csrf_token()):
        raise store.Forbidden("This form has expired or was sent from another site. Go back, reload the page "
                        "and try again.")


class CsrfPlugin:
    """Every POST route is CSRF-checked unless declared with csrf=False (machine endpoints that
    authenticate with client credentials or bearer tokens, never cookies)."""
    name, api = "csrf", 2

    def apply(self, callback, route):
        if route.method != "POST" or not route.config.get("csrf", True):
            return callback

        @functools.wraps(callback)
        def wrapper(*args, **kwargs):
            check_csrf()
            return callback(*args, **kwargs)
        return wrapper


class WriteLimitPlugin:
    """Browser form posts (every CSRF-checked POST) count against writes_per_minute: per signed-in
    person, or per client address before sign-in. Machine endpoints have limits of their own, and
    so do posts that change nothing (routes declared with is_write=False, such as the preview)."""
    name, api = "write_limit", 2

    def apply(self, callback, route):
        if route.method != "POST" or not route.config.get("csrf", True) or not route.config.get("is_write", True):
            return callback

        @functools.wraps(callback)
        def wrapper(*args, **kwargs):
            inst, user = instance(), current_user()
            key = f"post:user:{user['did']}" if user else f"post:ip:{client_ip()}"
            inst.limiter.hit(key, inst.cfg.writes_per_minute, "Too many changes in a short time; wait a moment "
                             "and send the form again.")
            return callback(*args, **kwargs)
        return wrapper


class ErrorPlugin:
    """Turns a RobotError raised anywhere below a route into its HTML or JSON error response."""
    name, api = "robot_errors", 2

    def apply(self, callback, route):
        @functools.wraps(callback)
        def wrapper(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except store.RobotError as e:
                headers = {"Retry-After": str(e.retry_after)} if isinstance(e, store.RateLimited) else {}
                return error_response(e.status, e.code, e, headers)
        return wrapper


# --- messages for people -------------------------------------------------------------------------
# The core's error messages are written for agents and operators ("pass its revision", "raise
# --max-pages-per-wiki"). Where that reads wrongly to a person, the core names the case and its
# facts, and the browser says it here in its own words, with a link to the obvious next step.

@dataclasses.dataclass(frozen=True)
class Message:
    """A sentence for a page, in parts: (text, None) or (link text, URL)."""
    parts: tuple[tuple[str, str | None], ...]

    @classmethod
    def plain(cls, text: str) -> "Message":
        return cls(((text, None),))

    def __str__(self) -> str:
        return "".join(text for text, _ in self.parts)

    def __bool__(self) -> bool:
        return bool(str(self))


NAME_WORDS = {"slug": "short name", "username": "username"}   # what the forms call them


def _page_exists(facts: dict, wiki: "WikiAccess | None") -> Message:
    if wiki is None:
        return Message.plain(f"A page called {facts['path']} already exists; choose another name.")
    return Message(((f"A page called {facts['path']} already exists — ", None),
                    ("open it", wiki.page_url(facts["path"])), (" or choose another name.", None)))


PEOPLE_SENTENCES = {
    "page_exists": _page_exists,
    "name_rule": lambda f, wiki: Message.plain(f"The {NAME_WORDS.get(f['what'], f['what'])} {f['rule']}."),
    "name_reserved": lambda f, wiki: Message.plain(
        f"“{f['value']}” is kept for robotwtf's own pages; choose another {NAME_WORDS.get(f['what'], f['what'])}."),
    "wiki_taken": lambda f, wiki: Message.plain(
        f"There is already a wiki at /w/{f['slug']}/ — choose another short name."),
    "quota_pages": lambda f, wiki: Message.plain(
        f"This wiki has reached its limit of {f['limit']} pages. Delete pages it no longer needs, or ask the "
        "instance's admin for more room."),
    "quota_bytes": lambda f, wiki: Message.plain(
        f"This wiki is full: it uses {human_size(f['used'])} of its {human_size(f['limit'])}, and this change "
        f"needs {human_size(f['growth'])} more. Delete pages or attachments it no longer needs, or ask the "
        "instance's admin for more room."),
    "quota_wikis": lambda f, wiki: Message.plain(
        f"You already have {f['owned']} wikis, the most one person may create here. Delete one you no longer "
        "need, or ask the instance's admin."),
    "already_member": lambda f, wiki: Message.plain(
        "That person is already a member of this wiki; change their role in the list above instead."),
}


def people_message(error: store.RobotError, wiki: "WikiAccess | None" = None) -> Message:
    """What to tell a person about `error`: the browser's own sentence for its case, else the
    core's message (already fit for people)."""
    sentence = PEOPLE_SENTENCES.get(error.case)
    return sentence(error.facts, wiki) if sentence else Message.plain(error.message)


GENERIC_MESSAGES = {
    400: "The request was not understood.",
    403: "You may not do that.",
    404: "There is nothing here.",
    405: "That method is not allowed here.",
    413: "The request is too large.",
    500: "Something went wrong on our side. The operator can find the details in the server log.",
}


def wants_json() -> bool:
    accept = bottle.request.get_header("Accept", "")
    return is_machine_path(bottle.request.path) or ("application/json" in accept and "text/html" not in accept)


ERROR_HEADINGS = {400: "That did not work", 403: "Not allowed", 404: "Not found", 405: "Not allowed here",
                  413: "Too large", 429: "Slow down", 500: "Something went wrong"}
PAGE_ACTIONS = ("edit", "rename", "delete", "history", "attachments")   # /w/<slug>/-/<action>/<page path>


def error_response(status: int, code: str, error: store.RobotError | str,
                   headers: dict | None = None) -> bottle.HTTPResponse:
    """An error as JSON for machines, else as a page for people: inside a wiki the caller may read,
    the wiki's own page (its header and navigation) with the obvious next step."""
    if wants_json():
        message = error.message if isinstance(error, store.RobotError) else error
        body = json.dumps({"error": code, "message": message})
        content_type = "application/json"
    else:
        body = _error_page(status, error, (headers or {}).get("Retry-After"))
        content_type = "text/html; charset=utf-8"
    return bottle.HTTPResponse(body, status, {"Content-Type": content_type, "Cache-Control": "no-store",
                                              **(headers or {})})


@functools.cache
def template_lookup() -> list[str]:
    """views/ as bottle's template lookup, one list for the life of the process: bottle keeps
    compiled templates under the lookup's id(), so a new list per call compiled every template
    of every page again (~15 ms a page)."""
    return [str(store.resource_root().joinpath("views"))]


def _error_page(status: int, error: store.RobotError | str, retry_after: str | None) -> str:
    wiki = _wiki_of_request()
    message = people_message(error, wiki) if isinstance(error, store.RobotError) else Message.plain(error)
    context = dict(error_status=status, heading=ERROR_HEADINGS.get(status, f"Error {status}"), message=message,
                   actions=_next_steps(status, wiki, retry_after))
    return wiki_render("error", wiki, status, **context) if wiki is not None else render("error", **context)


def _wiki_of_request() -> "WikiAccess | None":
    """The wiki the failed request was about, if the caller may read it (a hidden wiki stays hidden)."""
    parts = bottle.request.path.split("/")
    if len(parts) < 3 or parts[1] != "w" or not store.SLUG_RE.fullmatch(parts[2]):
        return None
    try:
        return open_wiki(parts[2], "viewer")
    except (store.RobotError, sqlite3.Error):  # hidden, or the database is what failed: no wiki header
        return None


def _page_of_request() -> str | None:
    """The page path of a page-action URL (/w/<slug>/-/edit/<path> and the like), else None."""
    parts = bottle.request.path.split("/", 5)
    if len(parts) == 6 and parts[3] == "-" and parts[4] in PAGE_ACTIONS:
        return parts[5]
    return None


def _next_steps(status: int, wiki: "WikiAccess | None", retry_after: str | None) -> list[tuple[str, str]]:
    """(text, URL) of what to do next, the likeliest first."""
    here = bottle.request.fullpath + (f"?{bottle.request.query_string}" if bottle.request.query_string else "")
    steps = []
    if status in (403, 404) and current_user() is None:
        steps.append(("Sign in", "/auth/login?" + urllib.parse.urlencode({"return_to": safe_return_to(here)})))
    page = _page_of_request() if wiki is not None else None
    if status == 404 and page and wiki.can_edit:
        steps.append((f"Create {page}", wiki.new_page_url(page)))
    if status in (429, 500) and bottle.request.method == "GET":
        steps.append((f"Try again in {retry_after} seconds" if retry_after else "Try again", here))
    if wiki is not None:
        steps += [(f"{wiki.title} home", wiki.page_url(store.HOME_PAGE)), ("All pages", wiki.url("pages"))]
    else:
        steps.append(("Back to the start", "/"))
    return steps


def render(name: str, **context) -> str:
    """A template from views/, given the signed-in user, a CSRF token and the config."""
    return bottle.template(name, template_lookup=template_lookup(), user=current_user(), csrf_token=csrf_token,
                           cfg=instance().cfg, counted=store.counted, **context)


def redirect(location: str) -> str:
    """303 See Other: after a POST the browser GETs the target (RFC 9110 §15.4.4). Set on the
    current response (not a new HTTPResponse) so cookies set by the handler survive."""
    bottle.response.status = 303
    bottle.response.set_header("Location", location)
    return ""


def safe_return_to(value: str | None) -> str:
    """A same-origin path to send the browser back to; anything else becomes '/'."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value \
            or any(not c.isprintable() for c in value):
        return "/"
    parts = urllib.parse.urlsplit(value)
    return value if not parts.scheme and not parts.netloc else "/"


# Bottle refuses url-encoded bodies over MEMFILE_MAX (100 KB by default) with a 413 and keeps
# multipart parts up to it in memory. A page may hold 1,000,000 bytes, which a browser sends
# percent-encoded (up to three bytes each), so forms get room for that plus their other fields.
MAX_FORM_BYTES = 4 * store.MAX_PAGE_BYTES


def request_form() -> bottle.FormsDict:
    """The POST body's fields and files, parsed once. Bottle raises a bare exception (a 500) for
    a multipart field that is not UTF-8 or a malformed part: those are the sender's mistakes."""
    try:
        return bottle.request.POST
    except bottle.HTTPError as refused:
        if refused.status_code != 413 or not bottle.request.route.config.get("oversized_form"):
            raise
        return _oversized_form()
    except UnicodeDecodeError:
        raise store.BadInput("The form is not valid UTF-8 text. Send it from a browser page, or encode it "
                       "as UTF-8.") from None
    except (bottle.MultipartError, ValueError):
        raise store.BadInput("The form could not be read (its multipart body is malformed).") from None


def _oversized_form() -> bottle.FormsDict:
    """A url-encoded body over MAX_FORM_BYTES, which bottle refuses with a bare 413, read for the
    routes declared with oversized_form=True (the editor's). Waitress already accepted the body
    (under --max-body-bytes), and refusing it unread would lose the text typed: the save fails
    with TooLarge instead, and the edit page comes back holding the text and the reason."""
    form = bottle.FormsDict()
    for name, value in urllib.parse.parse_qsl(bottle.request.body.read().decode("latin-1"), keep_blank_values=True,
                                              encoding="latin-1"):
        form[name] = value
    bottle.request.environ["bottle.request.post"] = form
    return form


def form_text(name: str, default: str = "") -> str:
    """A POST field as text. Bottle keeps url-encoded values as latin-1 stand-ins for the bytes
    sent and would quietly swap invalid UTF-8 for a default; here that is a 400 naming the field."""
    form = request_form()
    value = form.get(name)
    if value is None or isinstance(value, bottle.FileUpload):
        return default
    return store.decode_utf8(value.encode("latin-1"), f"The form field '{name}'") if form.recode_unicode else value


def query_text(name: str, default: str = "") -> str:
    """A query-string parameter as text; invalid UTF-8 is a 400, as in form_text."""
    value = bottle.request.query.get(name)
    if value is None:
        return default
    return store.decode_utf8(value.encode("latin-1"), f"The parameter '{name}'")


def form_upload(name: str) -> tuple[str, bytes]:
    """(file name as sent, bytes) of a file field; the body limit bounds its size."""
    upload = request_form().get(name)
    if not isinstance(upload, bottle.FileUpload):
        raise store.BadInput("Choose a file to upload.")
    return upload.raw_filename, upload.file.read()


def login_required(callback):
    @functools.wraps(callback)
    def wrapper(*args, **kwargs):
        if current_user() is None:
            target = bottle.request.fullpath + (f"?{bottle.request.query_string}" if bottle.request.query_string else "")
            return redirect("/auth/login?" + urllib.parse.urlencode({"return_to": target}))
        return callback(*args, **kwargs)
    return wrapper


class Router(bottle.Router):
    """bottle's router, but each method's combined pattern is compiled once, by the first match
    after routes were added: bottle recompiles it on every route added, which is quadratic in
    the routes and took ~100 ms of every start."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._stale: set[str] = set()
        self._compiling = threading.Lock()

    def _compile(self, method):
        self._stale.add(method)

    def match(self, environ):
        if self._stale:
            with self._compiling:
                for method in sorted(self._stale):
                    super()._compile(method)
                self._stale.clear()
        return super().match(environ)


class App(bottle.Bottle):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Swapped before any route exists; bottle's __setattr__ refuses to rebind (a plugin guard).
        object.__setattr__(self, "router", Router())
        object.__setattr__(self, "direct_routes", [])

    def direct(self, pattern: str, handler, methods: tuple[str, ...]) -> None:
        """Answer the requests with one of `methods` whose path matches `pattern` (a regular
        expression with named groups) with handler(environ, start_response, **groups), a plain
        WSGI handler ahead of bottle: bottle's request and response objects, router, plugins and
        hooks cost ~100 µs a request, more than the rest of a small MCP call. The handler
        answers its own errors; bottle's routes get every other request."""
        self.direct_routes.append((frozenset(methods), re.compile(pattern), handler))

    def __call__(self, environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD")
        for methods, pattern, handler in self.direct_routes:
            match = method in methods and pattern.fullmatch(path)
            if match:
                return handler(environ, start_response, **match.groupdict())
        return super().__call__(environ, start_response)

    def default_error_handler(self, res: bottle.HTTPError):
        message = res.body if isinstance(res.body, str) and res.status_code < 500 and res.body \
            and not res.body.startswith("Not found: ") else GENERIC_MESSAGES.get(res.status_code, res.status_line)
        response = error_response(res.status_code, "server_error" if res.status_code >= 500 else "error", str(message))
        for name, value in res.headerlist:
            if name.lower() == "allow":
                response.set_header("Allow", value)
        bottle.response.status = res.status_code
        bottle.response.headers.update(response.headers)
        return response.body


def healthz():
    try:
        instance().db().execute("SELECT 1").fetchone()
    except (store.DatabaseError, store.ConfigError):  # ConfigError: a PostgreSQL server that can't be reached
        return error_response(503, "unavailable", "The database does not answer.")
    bottle.response.content_type = "application/json"
    bottle.response.set_header("Cache-Control", "no-store")
    return '{"status": "ok"}'


# The stylesheet and the one small script (progressive enhancement: every page works without
# it), kept beside the templates. Scripts must come from our origin: the CSP forbids inline ones.
STATIC_FILES = {"style.css": "text/css; charset=utf-8", "wiki.js": "text/javascript; charset=utf-8",
                "favicon.svg": "image/svg+xml", "copy.js": "text/javascript; charset=utf-8"}


def static_file(name: str):
    if name not in STATIC_FILES:
        raise store.NotFound("There is no such file.")
    bottle.response.content_type = STATIC_FILES[name]
    bottle.response.set_header("Cache-Control", "public, max-age=3600")
    return store.resource_root().joinpath("views", name).read_text(encoding="utf-8")


def home():
    if current_user() is None:
        return render("landing")
    return dashboard()


def dashboard(error: Message | str = "", status: int = 200, form: dict | None = None) -> str:
    """The signed-in person's wikis, those they own apart from those shared with them."""
    did = current_user()["did"]
    wikis = store.user_wikis(instance().db(), did)
    bottle.response.status = status
    return render("dashboard", own=[w for w in wikis if w["owner_did"] == did],
                  shared=[w for w in wikis if w["owner_did"] != did], error=error, form=form or {})


@login_required
def wiki_create():
    form = {name: form_text(name) for name in ("slug", "title", "description")}
    inst = instance()
    try:
        wiki = store.create_wiki(inst.db(), form["slug"].strip(), current_user()["did"], form["title"], form["description"],
                                 quotas=inst.cfg.quotas, via="web")
    except (store.BadInput, store.Conflict, store.QuotaExceeded) as refused:
        return dashboard(people_message(refused), refused.status, form)
    return redirect(f"/w/{wiki['slug']}/")


def json_response(document: dict, cache: str = "no-store") -> str:
    bottle.response.content_type = "application/json"
    bottle.response.set_header("Cache-Control", cache)
    return json.dumps(document)


def admin_required(callback):
    @functools.wraps(callback)
    @login_required
    def wrapper(*args, **kwargs):
        if not current_user()["is_admin"]:
            raise store.Forbidden("Only instance admins may do that.")
        return callback(*args, **kwargs)
    return wrapper


# "Login with atproto": robotwtf_atproto does the protocol; these routes keep its state, bind it
# to the browser, and turn a verified identity into a session (or a signup).

LOGIN_COOKIE = "robotwtf_login"
SIGNUP_COOKIE = "robotwtf_signup"
SIGNUP_TYP = "robotwtf-signup+jwt"
SIGNUP_SECONDS = 900


def login_page(error: str = "", status: int = 200, identifier: str = ""):
    query = bottle.request.query
    if current_user() is not None and not error:
        return redirect(safe_return_to(query.get("return_to")))
    bottle.response.status = status
    return render("login", error=error, identifier=identifier,
                  return_to=safe_return_to(query.get("return_to") or bottle.request.forms.get("return_to")),
                  invite=query.get("invite") or bottle.request.forms.get("invite", ""))


def login_start():
    """POST /auth/login: resolve the account, push the authorization request, send the browser
    to the account's authorization server."""
    import robotwtf_atproto as atproto
    inst = instance()
    form = bottle.request.forms
    inst.limiter.hit("login:" + client_ip(), inst.cfg.login_per_minute, "Too many sign-in attempts; wait a minute.")
    identifier = form.getunicode("identifier", "").strip()
    try:
        authorize_url, pending = atproto.start_login(identifier, *atproto_client(inst).client_args())
    except atproto.AtprotoError as e:
        return login_page(sign_in_problem(e), 400 if isinstance(e, atproto.BadIdentifier) else 502, identifier)
    browser_secret = store.new_secret(16)
    invite = form.getunicode("invite", "")
    store.save_login_request(inst.db(), pending, browser_secret, safe_return_to(form.getunicode("return_to")),
                       store.hash_secret(invite) if invite else None)
    _set_cookie(LOGIN_COOKIE, browser_secret, store.LOGIN_REQUEST_SECONDS)
    return redirect(authorize_url)


def sign_in_problem(error) -> str:
    """What went wrong with a sign-in, for the person: no answer from a server is said as such
    (try again later), apart from a handle or account that does not exist (check what you typed)."""
    import robotwtf_atproto as atproto
    if isinstance(error, atproto.Unreachable):
        return couldnt_reach(error)
    return str(error)


def couldnt_reach(error) -> str:
    return (f"Couldn't reach {error.host}: it did not answer. It may be down, or this server's connection to "
            "the internet may be; nothing is wrong with what you typed. Try again in a few minutes.")


def login_callback():
    """GET /auth/callback: the authorization server sends the browser back here."""
    import robotwtf_atproto as atproto
    inst = instance()
    query = bottle.request.query
    request = store.take_login_request(inst.db(), query.getunicode("state", ""), bottle.request.get_cookie(LOGIN_COOKIE, ""))
    bottle.response.delete_cookie(LOGIN_COOKIE, path="/")
    try:
        identity = atproto.finish_login(json.loads(request["pending"]), query.dict, *atproto_client(inst).client_args())
    except atproto.AtprotoError as e:
        return login_page(sign_in_problem(e), 400 if isinstance(e, atproto.LoginError) else 502)
    db = inst.db()
    known = db.execute("SELECT handle FROM users WHERE did = ?", (identity.did,)).fetchone()
    if known is None:
        return _begin_signup(identity, request["return_to"], request["invite"])
    if identity.handle and identity.handle != known["handle"]:
        store.update_user_handle(db, identity.did, identity.handle)
    start_session(identity.did)
    return redirect(request["return_to"])


def _begin_signup(identity, return_to: str, invite_hash: str | None):
    """A verified identity without an account: remember it in a short-lived signed cookie and
    let the person pick a username."""
    inst = instance()
    t = store.now()
    token = inst.keys.sign_rs256({"iss": inst.cfg.public_url, "sub": identity.did, "handle": identity.handle,
                                  "invite": invite_hash, "return_to": return_to, "iat": t,
                                  "exp": t + SIGNUP_SECONDS}, SIGNUP_TYP)
    _set_cookie(SIGNUP_COOKIE, token, SIGNUP_SECONDS)
    return redirect("/auth/signup")


def _pending_signup() -> dict:
    inst = instance()
    token = bottle.request.get_cookie(SIGNUP_COOKIE, "")
    try:
        claims = inst.keys.verify_rs256(token, SIGNUP_TYP) if token else None
    except store.BadInput:
        claims = None
    if not claims or claims.get("iss") != inst.cfg.public_url or claims.get("exp", 0) <= store.now():
        raise store.Forbidden("Your sign-up took too long or was not started here. Please sign in again.")
    return claims


def signup_page(error: Message | str = "", username: str = ""):
    claims = _pending_signup()
    inst = instance()
    refusal = store.signup_refusal(inst.db(), inst.cfg.signup, claims.get("invite"))
    bottle.response.set_header("Cache-Control", "no-store")   # it names the person signing up
    return render("signup", error=error, refusal=refusal, handle=claims.get("handle"), did=claims["sub"],
                  username=username or store.default_username(claims["sub"], claims.get("handle")))


def signup_submit():
    claims = _pending_signup()
    inst = instance()
    username = bottle.request.forms.getunicode("username", "").strip().lower()
    try:
        store.sign_up(inst.db(), inst.cfg.signup, claims["sub"], claims.get("handle"), username, claims.get("invite"))
    except (store.BadInput, store.Conflict) as e:
        bottle.response.status = e.status
        return signup_page(people_message(e), username)
    bottle.response.delete_cookie(SIGNUP_COOKIE, path="/")
    start_session(claims["sub"])
    return redirect(safe_return_to(claims.get("return_to")))


def atproto_client_metadata():
    """The confidential client's metadata (ATProto OAuth "Client Metadata"); a localhost
    instance is the spec's development client and has none."""
    import robotwtf_atproto as atproto
    cfg = instance().cfg
    if not cfg.is_https:
        raise store.NotFound("This instance runs as ATProto's localhost development client and has no client metadata.")
    return json_response(atproto.client_metadata(cfg.public_url), "public, max-age=600")


def atproto_client_jwks():
    if not instance().cfg.is_https:
        raise store.NotFound("This instance runs as ATProto's localhost development client and has no client keys.")
    return json_response(instance().keys.client_jwks(), "public, max-age=600")


@login_required
def account_page():
    user = current_user()
    return render("account", sessions=store.list_sessions(instance().db(), user["did"]),
                  current_session=current_session_id())


@login_required
def account_revoke_session():
    store.revoke_session(instance().db(), current_user()["did"], bottle.request.forms.getunicode("session_id", ""))
    return redirect("/account")


@login_required
def account_logout_everywhere():
    store.revoke_all_sessions(instance().db(), current_user()["did"])
    end_session()
    return redirect("/")


@login_required
def account_delete():
    user = current_user()
    expected = user["handle"] or user["username"]
    if bottle.request.forms.getunicode("confirm", "").strip().removeprefix("@").lower() != expected:
        raise store.BadInput(f"To delete your account, type {expected} exactly.")
    store.delete_user(instance().db(), user["did"])
    end_session()
    return redirect("/")


@admin_required
def admin_page(invite_url: str = ""):
    return render("admin", users=store.list_users(instance().db()), invite_url=invite_url,
                  semantic_index=semantic.admin_index(instance()))


@admin_required
def admin_remove_user():
    did = bottle.request.forms.getunicode("did", "")
    if did == current_user()["did"]:
        raise store.BadInput("You cannot remove yourself here; delete your account from the account page instead.")
    store.delete_user(instance().db(), did)
    return redirect("/admin")


@admin_required
def admin_create_invite():
    try:
        uses = int(bottle.request.forms.get("uses", "1"))
    except ValueError:
        raise store.BadInput("The number of uses must be a whole number.") from None
    token = store.create_invite(instance().db(), current_user()["did"], uses)
    return admin_page(instance().cfg.url("/auth/login?" + urllib.parse.urlencode({"invite": token})))


def login_link_page():
    """GET of a one-time link asks "Sign in as alice?" and spends nothing (CONTRACT §2), so a
    link-preview bot that fetches it leaves it working. The access log never records the query,
    Referrer-Policy keeps the token out of Referer headers, and no cache may keep the page."""
    token = bottle.request.query.get("token", "")
    person = store.login_link_user(instance().db(), token)
    bottle.response.set_header("Cache-Control", "no-store")
    return render("login_link", person=person, token=token)


def login_link_confirm():
    """POST from the confirmation page (CSRF-checked): spends the link and logs the browser in."""
    did = store.consume_login_link(instance().db(), form_text("token"))
    start_session(did)
    return redirect("/")


def logout():
    end_session()
    return redirect("/")


# --- wikis in the browser: who may do what ---------------------------------------------------------
# Every wiki route gets its wiki through requires_member, which answers "may this caller do this
# here" in one place. A wiki the caller may not read is a 404 worded exactly like a wiki that does
# not exist (CONTRACT §4: a private wiki does not reveal itself); a reader who may not write gets 403.

ROLE_RANK = {"viewer": 1, "editor": 2, "owner": 3}
HIDDEN_WIKI = "There is no wiki here, or it is private. If it is yours, sign in."
REFUSALS = {"editor": "You can read this wiki but not change it. Ask one of its owners to make you an editor.",
            "owner": "Only the wiki's owners can do that."}


@dataclasses.dataclass(frozen=True)
class WikiAccess:
    """A wiki as the current caller may use it: its row and their role in it (None for someone
    reading a public wiki without being a member). Also builds the wiki's URLs (CONTRACT §3)."""
    row: sqlite3.Row
    role: str | None

    @property
    def id(self) -> int:
        return self.row["id"]

    @property
    def slug(self) -> str:
        return self.row["slug"]

    @property
    def title(self) -> str:
        return self.row["title"]

    @property
    def can_edit(self) -> bool:
        return ROLE_RANK.get(self.role, 0) >= ROLE_RANK["editor"]

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"

    def page_url(self, path: str) -> str:
        """A page's address; the home page's is the wiki's own."""
        if store.path_key(path) == store.path_key(store.HOME_PAGE):
            return f"/w/{self.slug}/"
        return f"/w/{self.slug}/{urllib.parse.quote(path, safe='/')}"

    def url(self, action: str, path: str = "") -> str:
        """The address of one of the wiki's own pages (`/-/…`), optionally about a page path."""
        return f"/w/{self.slug}/-/{action}" + (f"/{urllib.parse.quote(path, safe='/')}" if path else "")

    def attachment_url(self, path: str, filename: str) -> str:
        return self.url("attachment", path) + "/" + urllib.parse.quote(filename, safe="")

    def revision_url(self, revision: str) -> str:
        return self.url("revision") + "/" + urllib.parse.quote(revision, safe="")

    def diff_url(self, old: str, new: str) -> str:
        return self.url("diff") + "?" + urllib.parse.urlencode({"from": old, "to": new})

    def new_page_url(self, path: str = "") -> str:
        return self.url("new") + ("?" + urllib.parse.urlencode({"path": path}) if path else "")


def open_wiki(slug: str, needed: str) -> WikiAccess:
    """The wiki `slug` if the caller has at least the role `needed` there; anyone may read a
    public wiki, signed in or not."""
    db, user = instance().db(), current_user()
    try:
        row = store.get_wiki(db, slug)
    except store.NotFound:
        raise store.NotFound(HIDDEN_WIKI) from None
    role = store.member_role(db, row["id"], user["did"]) if user is not None else None
    if role is None and row["visibility"] != "public":
        raise store.NotFound(HIDDEN_WIKI)
    if ROLE_RANK.get(role, ROLE_RANK["viewer"]) < ROLE_RANK[needed]:
        raise store.Forbidden(REFUSALS[needed] if user is not None else "Sign in to change this wiki.")
    return WikiAccess(row, role)


def requires_member(role: str):
    """Route decorator: the handler receives the WikiAccess for the URL's <slug> instead of the
    slug, once the caller is known to hold `role` there (or it is public and `role` is viewer)."""
    def decorate(callback):
        @functools.wraps(callback)
        def wrapper(slug: str, **kwargs):
            return callback(open_wiki(slug, role), **kwargs)
        return wrapper
    return decorate


def web_author() -> store.Author:
    return store.Author(current_user()["did"], "web")


# --- wikis in the browser: page text to HTML ----------------------------------------------------------
# markdown-it-py with raw HTML off (it is shown as text) and links limited to safe schemes, plus
# tables, strikethrough, task lists (read-only checkboxes) and footnotes (mdit-py-plugins), and
# fenced code coloured by Pygments. WikiLinks are an inline rule, so `[[x]]` inside code stays
# literal, as wikilinks() treats it. The page view, old revisions and the editor's preview all
# render through render_markdown.

SAFE_LINK_SCHEMES = ("http", "https", "mailto")
LINK_SCHEME_RE = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.-]*):")
# A link's last segment that names a file (`photo.png`, `notes.pdf`), as opposed to a page.
FILE_NAME_RE = re.compile(r"[^/]*[^/.]\.[A-Za-z0-9]{1,10}")
TOC_MIN_HEADINGS = 3     # a page with fewer h2–h4 headings gets no table of contents
TOC_LEVELS = ("h2", "h3", "h4")


def is_safe_link(url: str) -> bool:
    """Relative links and http(s)/mailto only: javascript:, data:, vbscript:, file: and every
    other scheme are refused (the link is then shown as text)."""
    scheme = LINK_SCHEME_RE.match(url)
    return scheme is None or scheme.group(1).lower() in SAFE_LINK_SCHEMES


def _wikilink_rule(state, silent: bool) -> bool:
    """markdown-it inline rule: `[[Path]]`, `[[Path|text]]` and `[[Path#Section]]` become links
    whose target is resolved after parsing (see render_markdown)."""
    if not state.src.startswith("[[", state.pos):
        return False
    match = store.WIKILINK_RE.match(state.src, state.pos, state.posMax)
    if match is None:
        return False
    target, _, fragment = match.group(1).partition("#")
    try:
        target = store.validate_page_path(target)
    except store.BadInput:
        return False
    if not silent:
        link = state.push("link_open", "a", 1)
        link.meta = {"wikilink": target, "fragment": fragment.strip()}
        text = state.push("text", "", 0)
        text.content = (match.group(2) or "").strip() or match.group(1).strip()
        state.push("link_close", "a", -1)
    state.pos = match.end()
    return True


@functools.cache
def code_formatter():
    from pygments.formatters import HtmlFormatter
    return HtmlFormatter(nowrap=True)


def highlight_code(code: str, language: str, attrs: str) -> str:
    """A fenced block in a language Pygments knows, as spans carrying Pygments' short class
    names (the CSP allows no style attributes; style.css colours the classes, light and dark).
    '' lets markdown-it escape the text as it is."""
    if not language:
        return ""
    from pygments import highlight
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound
    try:
        lexer = get_lexer_by_name(language)
    except ClassNotFound:
        return ""
    return highlight(code, lexer, code_formatter())


def _heading_close(renderer, tokens, idx, options, env) -> str:
    """A heading's end, with a link to it that style.css shows on hover (h2 and below: the h1
    is the page's title)."""
    anchor = (tokens[idx].meta or {}).get("anchor")
    if anchor is None or tokens[idx].tag == "h1":
        return renderer.renderToken(tokens, idx, options, env)
    return f'<a class="anchor" href="#{html.escape(anchor)}" aria-label="Link to this section"></a></{tokens[idx].tag}>\n'


def _details(renderer, tokens, idx, options, env) -> str:
    """`::: details Summary` … `:::` folds its content under the summary (<details>, no script)."""
    token = tokens[idx]
    if token.nesting != 1:
        return "</details>\n"
    summary = token.info.strip().removeprefix("details").strip() or "Details"
    return f"<details><summary>{html.escape(summary)}</summary>\n"


@functools.cache
def markdown_parser():
    """Built once, on the first page shown (the CLI never needs markdown_it)."""
    from markdown_it import MarkdownIt
    from mdit_py_plugins.container import container_plugin
    from mdit_py_plugins.footnote import footnote_plugin
    from mdit_py_plugins.tasklists import tasklists_plugin
    md = MarkdownIt("commonmark", {"html": False, "highlight": highlight_code}).enable(["table", "strikethrough"])
    md.use(tasklists_plugin).use(footnote_plugin).use(container_plugin, "details", render=_details)
    md.validateLink = is_safe_link
    md.inline.ruler.before("link", "wikilink", _wikilink_rule)
    md.add_render_rule("heading_close", _heading_close)
    return md


def heading_anchor(text: str) -> str:
    """The id a heading gets, so `[[Page#Section]]` and `#section` links land on it."""
    return re.sub(r"[\s-]+", "-", re.sub(r"[^\w\s-]", "", text.casefold())).strip("-") or "section"


def _all_tokens(tokens):
    for token in tokens:
        yield token
        yield from _all_tokens(token.children or ())


@dataclasses.dataclass(frozen=True)
class TocEntry:
    level: int       # 2, 3 or 4
    text: str
    anchor: str


@dataclasses.dataclass(frozen=True)
class Rendered:
    """A page's text as HTML, its table of contents (empty for pages with few headings) and
    whether the text has a `# title` of its own (else the page shows its display title)."""
    html: str
    toc: tuple[TocEntry, ...]
    has_title: bool


def render_markdown(db: sqlite3.Connection, wiki: WikiAccess, content: str, page_path: str = "") -> Rendered:
    """A page's content (front matter left out) as HTML: escaped text, safe links, WikiLinks to
    the wiki's pages with those that don't exist marked `missing`, relative links and images
    pointing at attachments (see attachment_target), and ids and anchors on headings."""
    md = markdown_parser()
    env: dict = {}
    tokens = md.parse(store.parse_front_matter(content)[1], env)
    links = [t for t in _all_tokens(tokens) if t.type == "link_open" and "wikilink" in (t.meta or {})]
    existing = store.existing_pages(db, wiki.id, [link.meta["wikilink"] for link in links])
    for link in links:
        target, fragment = link.meta["wikilink"], link.meta["fragment"]
        live = existing.get(store.path_key(target))
        link.attrSet("href", wiki.page_url(live or target) + (f"#{heading_anchor(fragment)}" if fragment else ""))
        link.attrSet("class", "wikilink" if live else "wikilink missing")
        if live is None:
            link.attrSet("title", f"{target} does not exist yet")
    _point_at_attachments(tokens, wiki, page_path)
    headings = _set_heading_ids(tokens)
    toc = tuple(h for h in headings if h.level > 1)
    return Rendered(md.renderer.render(tokens, md.options, env), toc if len(toc) >= TOC_MIN_HEADINGS else (),
                    any(h.level == 1 for h in headings))


def attachment_target(page_path: str, url: str) -> tuple[str, str] | None:
    """(page, file name) that a relative link or image in page_path's text refers to. Paths
    resolve as if each page were a folder holding its attachments and sub-pages (the layout of
    a git checkout, CONTRACT §7): `photo.png` is the page's own attachment, `../Compost/heap.jpg`
    one of its sibling page Compost, `Tomato/seed.png` one of its sub-page Tomato. None for
    anything else: URLs with a scheme, `/`-absolute paths, fragments and queries, and names
    without a file extension (those stay links relative to the page's address)."""
    if not page_path or not url or url.startswith(("/", "#", "?")) or "?" in url or "#" in url \
            or LINK_SCHEME_RE.match(url):
        return None
    relative = urllib.parse.unquote(url)
    if not FILE_NAME_RE.fullmatch(relative.rsplit("/", 1)[-1]):
        return None
    resolved = posixpath.normpath(page_path + "/" + relative)
    page, _, filename = resolved.rpartition("/")
    if not page or resolved.startswith("../") or page.startswith("/"):
        return None
    return page, filename


def _point_at_attachments(tokens, wiki: WikiAccess, page_path: str) -> None:
    for token in _all_tokens(tokens):
        attribute = {"image": "src", "link_open": "href"}.get(token.type)
        if attribute is None or "wikilink" in (token.meta or {}):
            continue
        target = attachment_target(page_path, str(token.attrGet(attribute) or ""))
        if target is not None:
            token.attrSet(attribute, wiki.attachment_url(*target))


def _plain_text(inline) -> str:
    return "".join(child.content for child in inline.children or () if child.type in ("text", "code_inline"))


def _set_heading_ids(tokens) -> list[TocEntry]:
    """Each heading's id is its anchor; a repeated title gets -2, -3… so every id is unique.
    Returns the headings in order."""
    seen: dict[str, int] = {}
    headings = []
    for index, opening in enumerate(tokens):
        if opening.type != "heading_open":
            continue
        inline, closing = tokens[index + 1], tokens[index + 2]
        anchor = heading_anchor(inline.content)
        seen[anchor] = seen.get(anchor, 0) + 1
        unique = anchor if seen[anchor] == 1 else f"{anchor}-{seen[anchor]}"
        opening.attrSet("id", unique)
        closing.meta = {"anchor": unique}
        if opening.tag == "h1" or opening.tag in TOC_LEVELS:
            headings.append(TocEntry(int(opening.tag[1]), _plain_text(inline) or inline.content, unique))
    return headings


# --- diffs with the changed words marked -------------------------------------------------------------
# The lines of a unified diff (difflib, as store.unified_diff), where a changed line that still
# resembles the line it replaced has its changed words wrapped in <del>/<ins>, so a one-word edit
# in a long paragraph shows as one word, not two walls of text.

DIFF_CONTEXT = 3
WORD_RE = re.compile(r"\w+|\s+|[^\w\s]")
SIMILAR_ENOUGH = 0.5   # below this share of equal words, marking every word would only be noise


@dataclasses.dataclass(frozen=True)
class DiffLine:
    kind: str   # file, hunk, same, add or del
    html: str   # the line, escaped, with changed words marked


def diff_view_lines(old_text: str, new_text: str, old_label: str, new_label: str) -> list[DiffLine]:
    """The diff from old_text to new_text to show ([] when equal): a header, then hunks."""
    import difflib
    old, new = old_text.splitlines(), new_text.splitlines()
    rows: list[DiffLine] = []
    for group in difflib.SequenceMatcher(None, old, new, autojunk=False).get_grouped_opcodes(DIFF_CONTEXT):
        first, last = group[0], group[-1]
        rows.append(DiffLine("hunk", html.escape(f"@@ -{_hunk_range(first[1], last[2])} "
                                                 f"+{_hunk_range(first[3], last[4])} @@")))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                rows += [DiffLine("same", " " + html.escape(line)) for line in old[i1:i2]]
                continue
            removed, added = old[i1:i2], new[j1:j2]
            pairs = list(zip(removed, added)) if tag == "replace" else []
            marked = [_marked_words(a, b) for a, b in pairs]
            rows += [DiffLine("del", "-" + (marked[k][0] if k < len(marked) else html.escape(line)))
                     for k, line in enumerate(removed)]
            rows += [DiffLine("add", "+" + (marked[k][1] if k < len(marked) else html.escape(line)))
                     for k, line in enumerate(added)]
    if rows:
        rows[:0] = [DiffLine("file", html.escape(f"--- {old_label}")),
                    DiffLine("file", html.escape(f"+++ {new_label}"))]
    return rows


def _hunk_range(start: int, stop: int) -> str:
    """A unified diff's line range: 1-based start, and the length unless it is 1."""
    length = stop - start
    return f"{start + 1}" if length == 1 else f"{start + 1 if length else start},{length}"


def _marked_words(old_line: str, new_line: str) -> tuple[str, str]:
    """Both lines escaped, with the words that differ in <del> (old) and <ins> (new)."""
    import difflib
    a, b = WORD_RE.findall(old_line), WORD_RE.findall(new_line)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if matcher.ratio() < SIMILAR_ENOUGH:
        return html.escape(old_line), html.escape(new_line)
    old_html, new_html = [], []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        before, after = html.escape("".join(a[i1:i2])), html.escape("".join(b[j1:j2]))
        if tag == "equal":
            old_html.append(before)
            new_html.append(after)
            continue
        if before:
            old_html.append(f"<del>{before}</del>")
        if after:
            new_html.append(f"<ins>{after}</ins>")
    return "".join(old_html), "".join(new_html)


def time_ago(t: int) -> str:
    """'5 minutes ago' for recent times, the UTC date for older ones."""
    seconds = max(0, store.now() - t)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            if unit == "day" and count > 30:
                return time.strftime("%Y-%m-%d", time.gmtime(t))
            return f"{store.counted(count, unit)} ago"
    return "just now"


def describe_via(via: str) -> str:
    """How a change was made, in words: `web`, `cli`, `mcp:<client>` or `token:<name>` as stored."""
    kind, _, name = via.partition(":")
    return {"web": "in the browser", "cli": "from the command line", "mcp": f"through {name}",
            "token": f"with the token “{name}”"}.get(kind, via)


def utc_time(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    return f"{size / 1024:.1f} KB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.1f} MB"


def wiki_render(template: str, wiki: WikiAccess, status: int = 200, **context) -> str:
    """A wiki page: the template gets the wiki and the small formatting helpers. Private pages
    must not sit in shared caches, and a page seen again must be asked for again (it may have
    changed), hence `private, no-cache`."""
    bottle.response.status = status
    bottle.response.set_header("Cache-Control", "private, no-cache")
    return render(template, wiki=wiki, ago=time_ago, utc=utc_time, size=human_size, via=describe_via, **context)


# --- wikis in the browser: reading ---------------------------------------------------------------------

def wiki_root(slug: str):
    return redirect(f"/w/{urllib.parse.quote(slug, safe='')}/")


@requires_member("viewer")
def page_view(wiki: WikiAccess, path: str = store.HOME_PAGE):
    db = instance().db()
    try:
        page = store.read_page(db, wiki.id, path)
    except store.NotFound as missing:
        return folder_or_missing_page(wiki, path, missing.message)
    return wiki_render("page", wiki, page=page, rendered=render_markdown(db, wiki, page.content, page.path),
                       last_change=store.page_history(db, wiki.id, page.path, limit=1)[0],
                       links=store.page_links(db, wiki.id, page.path), attachments=store.list_attachments(db, wiki.id, page.path),
                       sidebar=page_tree(db, wiki, page.path))


def folder_or_missing_page(wiki: WikiAccess, path: str, message: str):
    """A path with pages below it is a folder, even without a page of its own: its listing (200),
    with the offer to create the page. Anything else is a missing page (404)."""
    db = instance().db()
    try:
        below = store.list_pages(db, wiki.id, prefix=path.rstrip("/") + "/")
    except store.BadInput:
        below = []
    if not below:
        return missing_page(wiki, path, message)
    return wiki_render("folder", wiki, path=path, entries=folder_entries(path, below), sidebar=page_tree(db, wiki, path))


@dataclasses.dataclass(frozen=True)
class FolderEntry:
    path: str
    name: str
    page: store.PageInfo | None   # None for a folder without a page of its own
    pages_below: int


def folder_entries(folder: str, below: list[store.PageInfo]) -> list[FolderEntry]:
    """The folder's direct children: its pages, and its sub-folders with how many pages each holds."""
    depth = folder.count("/") + 1
    pages: dict[str, store.PageInfo] = {}
    counts: dict[str, int] = {}
    names: dict[str, str] = {}
    for info in below:
        parts = info.path.split("/")
        child = "/".join(parts[:depth + 1])
        key = store.path_key(child)
        names.setdefault(key, child)
        if len(parts) == depth + 1:
            pages[key] = info
        else:
            counts[key] = counts.get(key, 0) + 1
    return [FolderEntry(names[key], names[key].rsplit("/", 1)[-1], pages.get(key), counts.get(key, 0))
            for key in sorted(names)]


def missing_page(wiki: WikiAccess, path: str, message: str):
    """404 for a page that doesn't exist (yet): offer to create it, and its history if it had one."""
    db = instance().db()
    try:
        had_history = bool(store.page_history(db, wiki.id, path, limit=1))
    except store.NotFound:
        had_history = False
    return wiki_render("missing", wiki, status=404, path=path, message=message, had_history=had_history,
                       sidebar=page_tree(db, wiki, path))


# The sidebar's page tree: folders come from the `/` in page paths; the current page is marked
# and its folders are open. It is plain HTML (<details> expands without a script), built with
# string joins rather than a template: a 5,000-page wiki is thousands of entries. A wiki of more
# than TREE_ENTRIES entries shows the current page's folders in full and every other folder as a
# link to its folder page; a folder of more than LISTING_ENTRIES shows those and a link to the rest.
TREE_ENTRIES = 1000
LISTING_ENTRIES = 200


class TreeNode:
    """A page or folder of the tree; `key` is its path_key, `children` by their last segment's
    key, `size` the number of entries below it."""
    __slots__ = ("path", "key", "is_page", "children", "size")

    def __init__(self, path: str, key: str):
        self.path, self.key, self.is_page, self.children, self.size = path, key, False, {}, 0


def build_tree(paths: list[tuple[str, str]]) -> TreeNode:
    """The folders and pages of (path, path_key) pairs. A folder's key is the prefix of its
    pages' keys (path_key works character by character)."""
    root = TreeNode("", "")
    for path, key in paths:
        node = root
        for part, part_key in zip(path.split("/"), key.split("/")):
            child = node.children.get(part_key)
            if child is None:
                child = node.children[part_key] = TreeNode(f"{node.path}/{part}" if node.path else part,
                                                           f"{node.key}/{part_key}" if node.key else part_key)
            node = child
        node.is_page = True
    _count(root)
    return root


def _count(node: TreeNode) -> int:
    node.size = sum(1 + _count(child) for child in node.children.values())
    return node.size


# Built trees by wiki id, each under the wiki's latest revision when it was built: a page view
# asks the database only for that revision's id, and builds the tree again after any write.
# Several worker processes each keep their own; the database decides for all of them.
_trees: dict[int, tuple[str | None, TreeNode]] = {}
TREES_KEPT = 64


def wiki_tree(db: sqlite3.Connection, wiki_id: int) -> TreeNode:
    latest = store.latest_revision(db, wiki_id)   # before the paths: a write in between rebuilds next time
    cached = _trees.get(wiki_id)
    if cached is not None and cached[0] == latest:
        return cached[1]
    tree = build_tree(store.page_paths(db, wiki_id))
    if len(_trees) >= TREES_KEPT:
        _trees.pop(next(iter(_trees)), None)
    _trees[wiki_id] = (latest, tree)
    return tree


def page_tree(db: sqlite3.Connection, wiki: WikiAccess, current: str) -> str:
    """The sidebar: the wiki's page tree as HTML, `current` highlighted and its folders open."""
    root = wiki_tree(db, wiki.id)
    items = _tree_items(wiki, root, store.path_key(current), root.size <= TREE_ENTRIES)
    return ('<nav class="sidebar" aria-label="Pages of this wiki"><details class="sidebar-box" data-open-wide>'
            '<summary>Pages</summary><ul class="tree">' + "".join(items) + '</ul><p class="sidebar-more">'
            f'<a href="{wiki.url("pages")}">All pages</a> · <a href="{wiki.url("recent")}">Recent changes</a>'
            '</p></details></nav>')


def _tree_items(wiki: WikiAccess, node: TreeNode, current: str, whole: bool) -> list[str]:
    children = sorted(node.children.values(), key=lambda child: child.key)
    shown = children[:LISTING_ENTRIES]
    shown += [c for c in children[LISTING_ENTRIES:] if current == c.key or current.startswith(c.key + "/")]
    items = []
    for child in shown:
        here = child.key == current
        marks = (' aria-current="page"' if here else "") + ("" if child.is_page else ' class="folder"')
        link = (f'<a href="{html.escape(wiki.page_url(child.path))}"{marks}>'
                f'{html.escape(child.path.rsplit("/", 1)[-1])}</a>')
        on_way = here or current.startswith(child.key + "/")
        if not child.children:
            items.append(f"<li>{link}</li>")
        elif on_way or whole:
            inner = "".join(_tree_items(wiki, child, current, whole))
            items.append(f'<li><details{" open" if on_way else ""}><summary>{link}</summary><ul>{inner}</ul>'
                         "</details></li>")
        else:
            items.append(f'<li>{link} <span class="count">{child.size}</span></li>')
    if len(children) > len(shown):
        more = len(children) - len(shown)
        target = wiki.page_url(node.path) if node.path else wiki.url("pages")
        items.append(f'<li><a href="{html.escape(target)}">… {more} more</a></li>')
    return items


@requires_member("viewer")
def page_index(wiki: WikiAccess):
    db = instance().db()
    return wiki_render("index", wiki, pages=store.list_pages(db, wiki.id), deleted=store.deleted_pages(db, wiki.id))


@requires_member("viewer")
def recent_view(wiki: WikiAccess):
    return wiki_render("recent", wiki, changes=store.recent_changes(instance().db(), wiki.id, limit=100))


@requires_member("viewer")
def search_view(wiki: WikiAccess):
    """Search results (store.search_wiki: word prefixes, titles first, a count, "did you mean");
    each snippet is escaped first, then its match markers become <mark>."""
    query = query_text("q").strip()
    found = store.search_wiki(instance().db(), wiki.id, query, limit=50) if query else store.SearchResults([], 0, [])
    results = [(hit, store.highlight_snippet(hit.snippet, "<mark>", "</mark>", html.escape)) for hit in found.hits]
    return wiki_render("search", wiki, query=query, results=results, total=found.total,
                       suggestions=found.suggestions,
                       similar=semantic.similar_for_browser(instance(), wiki.id, query))


@requires_member("viewer")
def history_view(wiki: WikiAccess, path: str):
    revisions = store.page_history(instance().db(), wiki.id, path, limit=200)
    return wiki_render("history", wiki, path=revisions[0].current_path, revisions=revisions,
                       deleted=revisions[0].page_deleted)


@requires_member("viewer")
def revision_view(wiki: WikiAccess, revision: str):
    db = instance().db()
    old = store.get_revision(db, wiki.id, revision)
    current = None if old.page_deleted else store.read_page(db, wiki.id, old.current_path).current_revision
    return wiki_render("revision", wiki, revision=old, current=current,
                       rendered=render_markdown(db, wiki, old.content, old.current_path))


@requires_member("viewer")
def diff_view(wiki: WikiAccess):
    old, new = query_text("from").strip(), query_text("to").strip()
    if not old or not new:
        raise store.BadInput("Choose two revisions to compare.")
    diff = store.diff_revisions(instance().db(), wiki.id, old, new)
    lines = diff_view_lines(diff.old.content, diff.new.content, *diff.labels)
    return wiki_render("diff", wiki, diff=diff, lines=lines)


# --- wikis in the browser: writing pages ------------------------------------------------------------
# A refused form comes back filled in with the reason, so nothing typed is lost; a stale base
# revision gets the conflict screen, which shows both versions and their diff.

def edit_form(wiki: WikiAccess, path: str, content: str, base_revision: str, message: str = "",
              error: Message | str = "", status: int = 200, creating: bool = False,
              preview: str | None = None):
    """The editor; `preview` is the text rendered, when the person asked for it without a script."""
    return wiki_render("edit", wiki, status=status, path=path, content=content, base_revision=base_revision,
                       message=message, error=error, creating=creating, preview=preview,
                       max_bytes=store.MAX_PAGE_BYTES)


def preview_html(wiki: WikiAccess, path: str, content: str) -> str:
    """The editor's text as the page view will show it (the same renderer), with the title the
    page would get when the text has none of its own."""
    if len(content.encode("utf-8", "surrogatepass")) > store.MAX_PAGE_BYTES:
        raise store.TooLarge(f"The text is over {store.MAX_PAGE_BYTES:,} bytes, the most a page can hold; "
                             "shorten it to see a preview.")
    rendered = render_markdown(instance().db(), wiki, content, path)
    title = "" if rendered.has_title else f"<h1>{html.escape(path.rsplit('/', 1)[-1] or 'Untitled')}</h1>\n"
    return title + rendered.html


@requires_member("editor")
def page_preview(wiki: WikiAccess):
    """POST /-/preview (the editor's script): the text as HTML, for the preview pane."""
    inst = instance()
    inst.limiter.hit("preview:" + current_user()["did"], PREVIEWS_PER_MINUTE, "Too many previews in a short "
                     "time; wait a moment.")
    bottle.response.content_type = "text/html; charset=utf-8"
    bottle.response.set_header("Cache-Control", "no-store")
    return preview_html(wiki, form_text("path").strip(), form_text("content"))


# A preview is asked for as the person types (the script waits for a pause): many more than
# writes, but still bounded, since each one renders the whole text.
PREVIEWS_PER_MINUTE = 600


def new_page_text(path: str) -> str:
    return f"# {path.rsplit('/', 1)[-1]}\n\n" if path else ""


@requires_member("editor")
def page_new_form(wiki: WikiAccess):
    path = query_text("path").strip()
    return edit_form(wiki, path, new_page_text(path), "", creating=True)


@requires_member("editor")
def page_create(wiki: WikiAccess):
    path, content, message = form_text("path"), form_text("content"), form_text("message")
    if form_text("preview"):
        return edit_form(wiki, path, content, "", message, creating=True, preview=preview_or_reason(wiki, path, content))
    inst = instance()
    try:
        change = store.write_page(inst.db(), wiki.id, path, content, author=web_author(), quotas=inst.cfg.quotas,
                            message=message)
    except (store.BadInput, store.TooLarge, store.QuotaExceeded, store.Conflict) as refused:
        return edit_form(wiki, path, content, "", message, people_message(refused, wiki), refused.status,
                         creating=True)
    return redirect(wiki.page_url(change.page.path))


@requires_member("editor")
def page_edit_form(wiki: WikiAccess, path: str):
    page = store.read_page(instance().db(), wiki.id, path)
    return edit_form(wiki, page.path, page.content, page.revision)


@requires_member("editor")
def page_save(wiki: WikiAccess, path: str):
    content, base, message = form_text("content"), form_text("base_revision").strip(), form_text("message")
    if form_text("preview"):
        return edit_form(wiki, path, content, base, message, preview=preview_or_reason(wiki, path, content))
    inst = instance()
    if not base:
        return edit_form(wiki, path, content, base, message, "The form lost the revision it was based on. Copy "
                         "your text, reload the page and edit again.", 400)
    try:
        change = store.write_page(inst.db(), wiki.id, path, content, base, author=web_author(), quotas=inst.cfg.quotas,
                            message=message)
    except (store.Conflict, store.NotFound):
        return conflict_page(wiki, path, content, message)
    except (store.BadInput, store.TooLarge, store.QuotaExceeded) as refused:
        return edit_form(wiki, path, content, base, message, people_message(refused, wiki), refused.status)
    return redirect(wiki.page_url(change.page.path))


def preview_or_reason(wiki: WikiAccess, path: str, content: str) -> str:
    try:
        return preview_html(wiki, path, content)
    except store.TooLarge as refused:
        return f'<p class="error">{html.escape(refused.message)}</p>'


def conflict_page(wiki: WikiAccess, path: str, content: str, message: str):
    """409: the page changed (or went away) since the editor loaded it. Says who changed it and
    when, and shows the current text, the editor's text in a form based on the current revision,
    and the diff between them."""
    db = instance().db()
    try:
        current = store.read_page(db, wiki.id, path)
    except store.NotFound:
        current = None
    lines = diff_view_lines(current.content, content, f"current ({current.revision})", "yours") if current else []
    other_change = store.page_history(db, wiki.id, current.path, limit=1)[0] if current else None
    return wiki_render("conflict", wiki, status=409, path=path, current=current, content=content, message=message,
                       lines=lines, other_change=other_change)


def rename_form(wiki: WikiAccess, path: str, new_path: str = "", message: str = "", error: Message | str = "",
                status: int = 200, move_subpages: bool = True):
    db = instance().db()
    page = store.read_page(db, wiki.id, path)
    return wiki_render("rename", wiki, status=status, page=page, new_path=new_path or page.path, message=message,
                       error=error, subpages=store.subpages(db, wiki.id, page.path), move_subpages=move_subpages)


@requires_member("editor")
def page_rename_form(wiki: WikiAccess, path: str):
    return rename_form(wiki, path)


@requires_member("editor")
def page_rename(wiki: WikiAccess, path: str):
    new_path, message, with_subpages = form_text("new_path"), form_text("message"), form_text("subpages") == "move"
    try:
        change = store.rename_page(instance().db(), wiki.id, path, new_path, author=web_author(), message=message,
                                   base_revision=form_text("base_revision").strip(), subpages=with_subpages)
    except (store.BadInput, store.Conflict, store.TooLarge) as refused:
        return rename_form(wiki, path, new_path, message, people_message(refused, wiki), refused.status,
                           with_subpages)
    return redirect(wiki.page_url(change.page.path))


@requires_member("editor")
def page_delete_form(wiki: WikiAccess, path: str):
    return wiki_render("delete", wiki, page=store.read_page(instance().db(), wiki.id, path))


@requires_member("editor")
def page_delete(wiki: WikiAccess, path: str):
    store.delete_page(instance().db(), wiki.id, path, author=web_author(), message=form_text("message"),
                base_revision=form_text("base_revision").strip())
    return redirect(wiki.url("pages"))


@requires_member("editor")
def revision_restore(wiki: WikiAccess, revision: str):
    inst = instance()
    change = store.restore_revision(inst.db(), wiki.id, revision, author=web_author(), quotas=inst.cfg.quotas)
    return redirect(wiki.page_url(change.page.path))


# --- wikis in the browser: attachments ------------------------------------------------------------------

# Served attachments may not run anything even if a browser guessed wrong: attachment_delivery
# never says HTML or SVG inline, nosniff stops guessing, and the sandbox CSP covers the rest.
ATTACHMENT_CSP = "default-src 'none'; img-src 'self'; sandbox"
# An SVG drawn as an image may use its own <style>; it still can't run or fetch anything.
SVG_IMAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


def attachments_list(wiki: WikiAccess, path: str, error: Message | str = "", status: int = 200):
    db = instance().db()
    page = store.read_page(db, wiki.id, path)
    return wiki_render("attachments", wiki, status=status, page=page,
                       attachments=store.list_attachments(db, wiki.id, page.path), error=error,
                       markdown=attachment_markdown)


@requires_member("viewer")
def attachments_view(wiki: WikiAccess, path: str):
    return attachments_list(wiki, path)


@requires_member("editor")
def attachment_upload(wiki: WikiAccess, path: str):
    """The attachments page's form (then back to the list), or the editor's script (Accept:
    application/json, then JSON with the Markdown to insert; errors are JSON too). The script
    sends keep_existing=1: a pasted `image.png` must not replace the one pasted before."""
    inst = instance()
    try:
        filename, data = form_upload("file")
        if form_text("keep_existing"):
            filename = free_attachment_name(inst.db(), wiki, path, filename)
        change = store.put_attachment(inst.db(), wiki.id, path, filename, data, author=web_author(),
                                      quotas=inst.cfg.quotas, message=form_text("message"))
    except (store.BadInput, store.TooLarge, store.QuotaExceeded) as refused:
        if wants_json():
            raise
        return attachments_list(wiki, path, people_message(refused, wiki), refused.status)
    if wants_json():
        stored = change.attachment
        return json_response({"filename": stored.filename, "content_type": stored.content_type,
                              "url": wiki.attachment_url(change.page.path, stored.filename),
                              "markdown": attachment_markdown(stored), "revision": change.revision,
                              "previous_revision": revision_before(wiki, change)})
    return redirect(wiki.url("attachments", path))


def revision_before(wiki: WikiAccess, change: store.Change) -> str | None:
    """The page's revision just before `change`, if nothing else changed it since. The editor
    that attached a file moves its base revision on only from that one: an attachment doesn't
    change the text, but another person's edit in between must still meet the conflict check."""
    history = store.page_history(instance().db(), wiki.id, change.page.path, limit=2)
    return history[1].id if len(history) == 2 and history[0].id == change.revision else None


def free_attachment_name(db: sqlite3.Connection, wiki: WikiAccess, path: str, filename: str) -> str:
    """`filename`, or `name-2.ext`, `name-3.ext`… if the page already has a file of that name."""
    name = store.sanitize_filename(filename)
    taken = {a.filename.casefold() for a in store.list_attachments(db, wiki.id, path)}
    stem, dot, ext = name.rpartition(".") if "." in name.lstrip(".") else (name, "", "")
    number = 1
    while name.casefold() in taken:
        number += 1
        name = f"{stem}-{number}{dot}{ext}"
    return name


def attachment_markdown(attachment: store.Attachment) -> str:
    """The Markdown that shows an attachment on its own page: an image, or a link to the file."""
    target = urllib.parse.quote(attachment.filename)
    label = re.sub(r"([\\\[\]])", r"\\\1", attachment.filename.rpartition(".")[0] or attachment.filename)
    return f"![{label}]({target})" if attachment.content_type.startswith("image/") else f"[{label}]({target})"


@requires_member("viewer")
def attachment_download(wiki: WikiAccess, path: str, filename: str):
    attachment = store.get_attachment(instance().db(), wiki.id, path, filename)
    content_type, disposition = store.attachment_delivery(attachment)
    csp = ATTACHMENT_CSP
    if attachment.content_type == "image/svg+xml" and bottle.request.get_header("Sec-Fetch-Dest") == "image":
        # An <img> may show an SVG: an image runs no script and loads nothing (HTML "images"
        # processing model). A visit to the file itself says Sec-Fetch-Dest: document (Fetch
        # Metadata, W3C) and still gets the download, so it never runs in our origin.
        content_type, disposition = "image/svg+xml", disposition.replace("attachment;", "inline;", 1)
        csp = SVG_IMAGE_CSP
    headers = bottle.response.headers
    headers["Content-Type"] = content_type
    headers["Content-Disposition"] = disposition
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Content-Security-Policy"] = csp
    headers["Cache-Control"] = "private, no-cache"
    headers["Vary"] = "Sec-Fetch-Dest"
    return attachment.data


@requires_member("editor")
def attachment_delete(wiki: WikiAccess, path: str):
    store.delete_attachment(instance().db(), wiki.id, path, form_text("filename"), author=web_author())
    return redirect(wiki.url("attachments", path))


# --- wikis in the browser: settings (owners) ------------------------------------------------------------

def settings_form(wiki: WikiAccess, error: Message | str = "", status: int = 200, member: str = ""):
    inst = instance()
    db = inst.db()
    return wiki_render("settings", wiki, status=status, members=store.list_members(db, wiki.id),
                       usage=store.wiki_usage(db, wiki.id), quotas=inst.cfg.quotas, error=error, member=member,
                       git_enabled=store.git_access_enabled(db, wiki.id), git_url=inst.cfg.url(f"/w/{wiki.slug}.git"),
                       **connect_context(wiki))


# --- wikis in the browser: connecting agents -------------------------------------------------------------
# One "Connect an agent" panel per wiki (its own page, and a section of the settings): the MCP
# address as this server serves it now (never a copy frozen into a page), a personal token and the
# whole `claude mcp add` command shown once, and Claude.ai's steps, or why Claude.ai can't get here.

def connect_context(wiki: WikiAccess, token: str = "", token_name: str = "") -> dict:
    cfg = instance().cfg
    return dict(mcp_url=cfg.url(f"/w/{wiki.slug}/mcp"), unreachable=unreachable_from_the_internet(cfg),
                token_scopes=" and ".join(SCOPE_WORDS[s] for s in sorted(store.role_scopes(wiki.role))),
                token=token, token_name=token_name)


SCOPE_WORDS = {"wiki:read": "read", "wiki:write": "write"}


def unreachable_from_the_internet(cfg: store.Config) -> str:
    """Why a service on the internet (Claude.ai connects from Anthropic's servers) cannot reach
    the public URL, or '' when nothing says it can't."""
    import ipaddress
    host = urllib.parse.urlsplit(cfg.public_url).hostname or ""
    if cfg.is_loopback_public_url:
        return f"{cfg.public_url} is this computer's own (loopback) address, which no other machine can open"
    if not cfg.is_https:
        return f"{cfg.public_url} is plain http, and Claude.ai connects only to https addresses"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return ""
    return "" if address.is_global else f"{host} is an address on a private network, not on the internet"


@requires_member("viewer")
def connect_view(wiki: WikiAccess):
    return wiki_render("connect", wiki, **connect_context(wiki))


@requires_member("viewer")
def connect_token(wiki: WikiAccess):
    """A new personal token for this wiki with what the person's role allows, shown once."""
    user = current_user()
    if user is None or wiki.role is None:
        raise store.Forbidden("Only members of this wiki can create a token for it. Sign in as one.")
    name = f"Claude Code, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC"
    token = store.create_personal_token(instance().db(), user["did"], wiki.slug, store.role_scopes(wiki.role), name)
    return wiki_render("connect", wiki, **connect_context(wiki, token, name))


@requires_member("owner")
def settings_view(wiki: WikiAccess):
    return settings_form(wiki)


@requires_member("owner")
def settings_save(wiki: WikiAccess):
    try:
        store.update_wiki(instance().db(), wiki.id, title=form_text("title"), description=form_text("description"),
                    visibility=form_text("visibility"))
    except store.BadInput as refused:
        return settings_form(wiki, people_message(refused, wiki), refused.status)
    return redirect(wiki.url("settings"))


def member_did(ident: str) -> str:
    """The DID an owner means: a DID as typed, or a handle resolved and verified both ways, the
    way the login does it (robotwtf_atproto.resolve_identity)."""
    if ident.startswith("did:"):
        return store.validate_did(ident)
    if not ident:
        raise store.BadInput("Type the person's handle (like alice.bsky.social) or DID.")
    import robotwtf_atproto as atproto
    inst = instance()
    inst.limiter.hit("resolve:" + current_user()["did"], inst.cfg.login_per_minute,
                     "Too many handle look-ups; wait a minute.")
    client = atproto_client(inst)
    try:
        identity = atproto.resolve_identity(ident.removeprefix("@"), client.fetcher, client.resolver, inst.cfg.plc_url)
    except atproto.Unreachable as e:
        raise store.UpstreamError(couldnt_reach(e)) from None
    except atproto.AtprotoError as e:
        raise store.BadInput(f"{e} Check the handle, or add the person by DID.") from None
    return identity.did


@requires_member("owner")
def member_add(wiki: WikiAccess):
    ident = form_text("member").strip()
    try:
        store.add_member(instance().db(), wiki.id, member_did(ident), form_text("role"))
    except (store.BadInput, store.Conflict, store.UpstreamError) as refused:
        return settings_form(wiki, people_message(refused, wiki), refused.status, ident)
    return redirect(wiki.url("settings"))


@requires_member("owner")
def member_change_role(wiki: WikiAccess):
    did, role = form_text("did"), form_text("role")
    try:
        store.set_member_role(instance().db(), wiki.id, did, role)
    except (store.BadInput, store.Conflict, store.NotFound) as refused:
        return settings_form(wiki, people_message(refused, wiki), refused.status)
    stepped_down = did == current_user()["did"] and role != "owner"
    return redirect(wiki.page_url(store.HOME_PAGE) if stepped_down else wiki.url("settings"))


@requires_member("owner")
def member_remove(wiki: WikiAccess):
    did = form_text("did")
    try:
        store.remove_member(instance().db(), wiki.id, did)
    except (store.Conflict, store.NotFound) as refused:
        return settings_form(wiki, people_message(refused, wiki), refused.status)
    return redirect("/" if did == current_user()["did"] else wiki.url("settings"))


@requires_member("owner")
def wiki_export(wiki: WikiAccess):
    data = store.export_wiki(instance().db(), wiki.id)
    bottle.response.content_type = "application/zip"
    bottle.response.set_header("Content-Disposition",
                               f'attachment; filename="{wiki.slug}-{time.strftime("%Y-%m-%d", time.gmtime())}.zip"')
    bottle.response.set_header("Cache-Control", "no-store")
    return data


@requires_member("owner")
def wiki_import(wiki: WikiAccess):
    inst = instance()
    try:
        _, data = form_upload("archive")
        report = store.import_pages(inst.db(), wiki.id, data, author=web_author(), quotas=inst.cfg.quotas)
    except store.BadInput as refused:
        return settings_form(wiki, people_message(refused, wiki), refused.status)
    return wiki_render("import", wiki, report=report)


@requires_member("owner")
def wiki_delete(wiki: WikiAccess):
    if form_text("confirm").strip() != wiki.slug:
        return settings_form(wiki, f"To delete this wiki, type its slug, {wiki.slug}, exactly.", 400)
    store.delete_wiki(instance().db(), wiki.id)
    return redirect("/")


