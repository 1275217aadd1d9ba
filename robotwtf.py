"""robotwtf: a self-hosted wiki for people and their AI agents, in one file to run.

This module assembles the WSGI app that waitress serves (the route table is `build_app`), runs it,
and is the operator CLI. Each other module owns one concern; imports point one way, from here
through the concerns to the core:

- robotwtf_store: the core: configuration, errors, the data folder and the storage API
- robotwtf_web: the browser pages: sessions, CSRF, sign-in, dashboard, account, admin, wikis
- robotwtf_atproto: identity resolution and the ATProto OAuth client ("Login with atproto")
- robotwtf_as: the OAuth 2.1 authorization server for MCP clients (imported by the first
  request to one of its routes: AUTHORIZATION_SERVER_ROUTES)
- robotwtf_mcp: the MCP Streamable HTTP endpoint and its tools
- robotwtf_git: each wiki as a git repository over git's smart HTTP protocol (imported by the
  first request to one of GIT_ROUTES)


- robotwtf_semantic: semantic search (embeddings server client, index, background indexer)
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import select
import shlex
import signal
import socket
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import bottle

import robotwtf_semantic as semantic
import robotwtf_store as store
import robotwtf_web as web

log = logging.getLogger("robotwtf")


# --- routes ---------------------------------------------------------------------------------------

PAGE_ROUTE = r"(?!-|mcp(?:/|$)).+"


# The OAuth authorization server's routes: (method, path, handler in robotwtf_as, CSRF-checked).
# robotwtf_as loads authlib and robotwtf_atproto (~0.25 s of imports), so the first request to one
# of these imports it, not the server's start; MCP requests never need it (robotwtf_mcp checks
# bearer tokens itself).
OAUTH_CORS_PATHS = ("/.well-known/oauth-authorization-server", "/.well-known/oauth-protected-resource/w/<slug>/mcp",
                    "/.well-known/jwks.json", "/oauth/token", "/oauth/register", "/oauth/revoke")
AUTHORIZATION_SERVER_ROUTES = (
    ("GET", "/.well-known/oauth-authorization-server", "authorization_server_metadata_document", True),
    ("GET", "/.well-known/oauth-protected-resource/w/<slug>/mcp", "protected_resource_metadata_document", True),
    ("GET", "/.well-known/jwks.json", "jwks_document", True),
    ("GET", "/oauth/authorize", "authorize_page", True),
    ("POST", "/oauth/authorize", "authorize_decision", True),
    ("POST", "/oauth/token", "token_endpoint", False),
    ("POST", "/oauth/register", "registration_endpoint", False),
    ("POST", "/oauth/revoke", "revocation_endpoint", False),
    *(("OPTIONS", path, "preflight", True) for path in OAUTH_CORS_PATHS),
    ("GET", "/account/apps", "apps_page", True),
    ("POST", "/account/apps/grants/<grant_id:int>/revoke", "apps_revoke_grant", True),
    ("POST", "/account/apps/tokens", "apps_create_token", True),
    ("POST", "/account/apps/tokens/<token_id:int>/revoke", "apps_revoke_token", True),
)


def _authorization_server(name: str):
    """The route handler robotwtf_as.`name`, imported on the first request to it."""
    def handler(*args, **kwargs):
        import robotwtf_as  # here, not at the top: it imports authlib
        return getattr(robotwtf_as, name)(*args, **kwargs)
    handler.__name__ = handler.__qualname__ = name
    return handler


# Git's smart HTTP protocol for each wiki (CONTRACT §7): (method, path, handler in robotwtf_git).
# robotwtf_git loads dulwich (~0.3 s of imports), so the first git request imports it.
GIT_ROUTES = (
    ("GET", "/w/<slug>.git/info/refs", "info_refs"),
    ("POST", "/w/<slug>.git/git-upload-pack", "upload_pack"),
    ("POST", "/w/<slug>.git/git-receive-pack", "receive_pack"),
)


def _git(name: str):
    """The route handler robotwtf_git.`name`, imported on the first request to it."""
    def handler(*args, **kwargs):
        import robotwtf_git  # here, not at the top: it imports dulwich
        return getattr(robotwtf_git, name)(*args, **kwargs)
    handler.__name__ = handler.__qualname__ = name
    return handler


def build_app(inst: store.Instance) -> web.App:
    bottle.BaseRequest.MEMFILE_MAX = web.MAX_FORM_BYTES
    app = web.App(catchall=True)
    app.config["robotwtf.instance"] = inst
    app.install(web.ErrorPlugin())
    app.install(web.CsrfPlugin())
    app.install(web.WriteLimitPlugin())   # applied inside the CSRF check: only genuine form posts count

    app.route("/healthz", "GET", web.healthz)
    # Before any wiki page route, so /w/<slug>/mcp is always the MCP endpoint (CONTRACT §3).
    import robotwtf_mcp
    robotwtf_mcp.install(app)
    # Before the wiki page routes too: /w/<slug> would take garden.git for a slug.
    for method, path, name in GIT_ROUTES:
        app.route(path, method, _git(name), csrf=False)
    app.route("/static/<name>", "GET", web.static_file)
    app.route("/", "GET", web.home)
    app.route("/wikis", "POST", web.wiki_create)
    app.route("/auth/login", "GET", web.login_page)
    app.route("/auth/login", "POST", web.login_start)
    app.route("/auth/callback", "GET", web.login_callback)
    app.route("/auth/signup", "GET", web.signup_page)
    app.route("/auth/signup", "POST", web.signup_submit)
    app.route("/auth/login-link", "GET", web.login_link_page)
    app.route("/auth/login-link", "POST", web.login_link_confirm)
    app.route("/auth/logout", "POST", web.logout)
    app.route("/auth/client-metadata.json", "GET", web.atproto_client_metadata)
    app.route("/.well-known/atproto-client-jwks.json", "GET", web.atproto_client_jwks)
    app.route("/account", "GET", web.account_page)
    app.route("/account/sessions/revoke", "POST", web.account_revoke_session)
    app.route("/account/logout-everywhere", "POST", web.account_logout_everywhere)
    app.route("/account/delete", "POST", web.account_delete)
    app.route("/admin", "GET", web.admin_page)
    app.route("/admin/users/remove", "POST", web.admin_remove_user)
    app.route("/admin/invites", "POST", web.admin_create_invite)
    for method, path, name, csrf in AUTHORIZATION_SERVER_ROUTES:
        app.route(path, method, _authorization_server(name), csrf=csrf)

    # A wiki in the browser (CONTRACT §3): its pages at /w/<slug>/<page path>, everything else
    # under /w/<slug>/-/. PAGE_ROUTE keeps page paths off `-…` and `mcp`, whatever the route order.
    app.route("/w/<slug>", "GET", web.wiki_root)
    app.route("/w/<slug>/", "GET", web.page_view)
    app.route(f"/w/<slug>/<path:re:{PAGE_ROUTE}>", "GET", web.page_view)
    app.route("/w/<slug>/-/pages", "GET", web.page_index)
    app.route("/w/<slug>/-/recent", "GET", web.recent_view)
    app.route("/w/<slug>/-/search", "GET", web.search_view)
    app.route("/w/<slug>/-/new", "GET", web.page_new_form)
    app.route("/w/<slug>/-/new", "POST", web.page_create, oversized_form=True)
    app.route("/w/<slug>/-/preview", "POST", web.page_preview, is_write=False, oversized_form=True)
    app.route("/w/<slug>/-/edit/<path:path>", "GET", web.page_edit_form)
    app.route("/w/<slug>/-/edit/<path:path>", "POST", web.page_save, oversized_form=True)
    app.route("/w/<slug>/-/rename/<path:path>", "GET", web.page_rename_form)
    app.route("/w/<slug>/-/rename/<path:path>", "POST", web.page_rename)
    app.route("/w/<slug>/-/delete/<path:path>", "GET", web.page_delete_form)
    app.route("/w/<slug>/-/delete/<path:path>", "POST", web.page_delete)
    app.route("/w/<slug>/-/history/<path:path>", "GET", web.history_view)
    app.route("/w/<slug>/-/revision/<revision>", "GET", web.revision_view)
    app.route("/w/<slug>/-/revision/<revision>/restore", "POST", web.revision_restore)
    app.route("/w/<slug>/-/diff", "GET", web.diff_view)
    app.route("/w/<slug>/-/attachments/<path:path>", "GET", web.attachments_view)
    app.route("/w/<slug>/-/attachments/<path:path>", "POST", web.attachment_upload)
    app.route("/w/<slug>/-/attachment/<path:path>/<filename>", "GET", web.attachment_download)
    app.route("/w/<slug>/-/delete-attachment/<path:path>", "POST", web.attachment_delete)
    app.route("/w/<slug>/-/settings", "GET", web.settings_view)
    app.route("/w/<slug>/-/settings", "POST", web.settings_save)
    app.route("/w/<slug>/-/settings/git", "POST", _git("settings_git"))
    app.route("/w/<slug>/-/settings/members", "POST", web.member_add)
    app.route("/w/<slug>/-/settings/members/role", "POST", web.member_change_role)
    app.route("/w/<slug>/-/settings/members/remove", "POST", web.member_remove)
    app.route("/w/<slug>/-/settings/export", "GET", web.wiki_export)
    app.route("/w/<slug>/-/settings/import", "POST", web.wiki_import)
    app.route("/w/<slug>/-/settings/delete", "POST", web.wiki_delete)
    app.route("/w/<slug>/-/connect", "GET", web.connect_view)
    app.route("/w/<slug>/-/connect", "POST", web.connect_token)
    return app


# --- serving -------------------------------------------------------------------------------------
# `serve` prepares the data folder (schema, keys) and binds the listening sockets once, then runs
# the app in --workers processes that share those sockets, each a waitress server with --threads
# threads. With one worker that is this process; with more, this process is their supervisor: it
# forks them, starts another when one dies, and on SIGTERM/SIGINT stops them all and exits 0.
# Workers keep nothing another needs (CONTRACT §8): rate limits, one-time codes, sessions and
# revocations are database rows, and background jobs run under leases (store.LeasedJob).

class _Stop(SystemExit):
    """Raised by the SIGTERM/SIGINT handler: waitress's loop lets SystemExit through its channel
    error handling and stops its worker threads when run() sees it."""


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DRAIN_SECONDS = 30        # a stopping worker finishes its requests; after this it is killed
QUICK_DEATH_SECONDS = 5   # a worker that dies sooner than this is restarted after a growing pause
MAX_RESTART_PAUSE = 30


def serve(cfg: store.Config) -> int:
    import waitress.server  # noqa: F401  (imported before forking: the workers share its pages)
    store.prepare_data_folder(cfg)
    sockets = listen(cfg)
    if cfg.insecure_dev_network:
        log.warning("ROBOTWTF_INSECURE_DEV_NETWORK is on: http://localhost and loopback peers are allowed. "
                    "Never use this in production.")
    port = sockets[0].getsockname()[1]
    store.record_served_url(cfg)
    log.info("robotwtf serving %s on %s:%s with %s of %d threads (data: %s%s)", cfg.public_url, cfg.host,
             port, store.counted(cfg.workers, "worker"), cfg.threads, cfg.data,
             f"; database: {store.redact_url(cfg.database)}" if cfg.is_postgres else "")
    if cfg.semantic_search:
        log.info("semantic search on: model %s at %s", cfg.embeddings_model,
                 urllib.parse.urlsplit(cfg.embeddings_url).netloc)
    with contextlib.closing(store.db_connect(cfg.database_location)) as db:  # closed before the workers fork
        if not store.has_users(db):
            log.info("%s", welcome_message(cfg))
    if cfg.workers == 1:
        return run_worker(cfg, sockets)
    return Supervisor(cfg, sockets).run()


def listen(cfg: store.Config) -> list[socket.socket]:
    """The listening sockets for --host and --port (several when the host name has several
    addresses), bound here so that every worker accepts from the same ones."""
    import waitress.adjustments
    sockets = []
    try:
        for family, kind, proto, address in waitress.adjustments.Adjustments(host=cfg.host, port=cfg.port).listen:
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(1024)
    except OSError as e:
        for sock in sockets:
            sock.close()
        raise store.ConfigError(f"Cannot listen on {cfg.host}:{cfg.port}: {e.strerror}"
                                + (" (another program uses this port; choose another with --port)."
                                   if e.errno == 98 else ".")) from None
    return sockets


def run_worker(cfg: store.Config, sockets: list[socket.socket]) -> int:
    """Serve on `sockets` until SIGTERM or SIGINT: the app in one waitress server, and the
    instance's background jobs (each runs in whichever worker holds its lease)."""
    import waitress.server
    inst = store.Instance(cfg)
    app = web.edge(build_app(inst), cfg)
    proxy = {}
    if cfg.trusted_proxy:
        proxy = dict(trusted_proxy=cfg.trusted_proxy, trusted_proxy_count=1, clear_untrusted_proxy_headers=True,
                     trusted_proxy_headers={"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"})
    server = waitress.server.create_server(
        app, sockets=sockets, threads=cfg.threads, ident="robotwtf", max_request_body_size=cfg.max_body_bytes,
        channel_timeout=60, connection_limit=cfg.connection_limit, **proxy)
    # waitress logs "Task queue depth is N" for every request that waits for a free thread: under
    # any burst that is a warning per request, costing a locked write each and burying the log.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)

    def stop(signum, frame):
        # A worker hears a stop twice when Ctrl-C or systemd signal the whole process group and
        # its supervisor passes the signal on: the second must not cut the first one's drain short.
        _ignore_stop_signals()
        raise _Stop

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    jobs = store.background_jobs(cfg) + semantic.background_jobs(cfg)
    for job in jobs:
        job.start()
    try:
        server.run()
    finally:
        _ignore_stop_signals()  # stopping already, whatever ended the server
        log.info("stopping")
        server.close()
        for job in jobs:
            job.stop()
    return 0


def _ignore_stop_signals() -> None:
    # A handler that does nothing rather than SIG_IGN: a signal that arrived a moment before is
    # still handed to the Python handler in place, and with SIG_IGN there CPython prints an error.
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda signum, frame: None)


def welcome_message(cfg: store.Config) -> str:
    """What the operator of an instance nobody has signed in to yet needs to know to get in."""
    program = command_prefix(cfg)
    made_up_did = "did:plc:" + "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(24))
    return "\n".join([
        "This is a new robotwtf instance: nobody has signed in yet.",
        f"  Sign-up policy: {cfg.signup} (set with --signup open|invite|closed).",
        f"  The first person to sign in at {cfg.public_url} becomes the instance admin.",
        "  To get in without an ATProto account, add yourself (with a made-up DID: that account signs in",
        "  only through login links) and print a one-time login link:",
        f"    {program} user add {made_up_did} --username operator",
        f"    {program} login-link operator",
    ])


def command_prefix(cfg: store.Config) -> str:
    """How the operator runs this CLI (the pyz or the checkout), with --data unless it is the default."""
    argv0 = sys.argv[0] if sys.argv else ""
    program = argv0 if argv0.endswith(".pyz") else "python3 robotwtf.py"
    default_data = Path(next(s.default for s in store.SETTINGS if s.name == "data")).expanduser().absolute()
    return program if cfg.data == default_data else f"{program} --data {shlex.quote(str(cfg.data))}"


class Supervisor:
    """Forks the workers and keeps --workers of them running until SIGTERM or SIGINT. Signals
    arrive through a wakeup pipe (signal.set_wakeup_fd), so the loop reacts at once and never
    forks from inside a signal handler."""

    def __init__(self, cfg: store.Config, sockets: list[socket.socket]):
        self.cfg, self.sockets = cfg, sockets
        self.workers: dict[int, float] = {}   # pid -> when it started (monotonic)
        self.quick_deaths = 0
        self.restart_at = 0.0

    def run(self) -> int:
        wakeup, self._wakeup_write = os.pipe()
        os.set_blocking(wakeup, False)
        os.set_blocking(self._wakeup_write, False)
        signal.set_wakeup_fd(self._wakeup_write)
        for signum in (*STOP_SIGNALS, signal.SIGCHLD):
            signal.signal(signum, lambda signum, frame: None)  # the wakeup pipe carries them
        self._wakeup_read = wakeup
        while len(self.workers) < self.cfg.workers:
            self.spawn()
        while True:
            timeout = max(0.0, self.restart_at - time.monotonic()) if len(self.workers) < self.cfg.workers else None
            select.select([wakeup], [], [], timeout)
            received = set(_drain(wakeup))
            if received & set(STOP_SIGNALS):
                break
            self.reap()
            while len(self.workers) < self.cfg.workers and time.monotonic() >= self.restart_at:
                self.spawn()
        self.stop_workers()
        return 0

    def spawn(self) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            os._exit(self._worker_main(parent))
        self.workers[pid] = time.monotonic()

    def _worker_main(self, parent: int) -> int:
        try:
            for signum in (*STOP_SIGNALS, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)  # until run_worker installs its own
            signal.set_wakeup_fd(-1)
            os.close(self._wakeup_read)
            os.close(self._wakeup_write)
            _die_with_parent(parent)
            return run_worker(self.cfg, self.sockets)
        except BaseException:  # nothing may return into the supervisor's loop from a fork
            log.exception("worker %d failed", os.getpid())
            return 1
        finally:
            logging.shutdown()

    def reap(self) -> None:
        while self.workers:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            started = self.workers.pop(pid, None)
            if started is None:
                continue
            lived = time.monotonic() - started
            self.quick_deaths = self.quick_deaths + 1 if lived < QUICK_DEATH_SECONDS else 0
            pause = min(MAX_RESTART_PAUSE, 0.5 * 2 ** self.quick_deaths) if self.quick_deaths else 0.0
            self.restart_at = time.monotonic() + pause
            log.error("worker %d %s after %.1f s; starting another%s", pid, _exit_description(status), lived,
                      f" in {pause:.1f} s" if pause else "")

    def stop_workers(self) -> None:
        """SIGTERM to every worker (each finishes the requests it is running), then wait; a worker
        still running after DRAIN_SECONDS is killed."""
        log.info("stopping %d workers", len(self.workers))
        for pid in self.workers:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + DRAIN_SECONDS
        while self.workers:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid:
                self.workers.pop(pid, None)
                log.log(logging.WARNING if status else logging.INFO, "worker %d %s", pid, _exit_description(status))
                continue
            if time.monotonic() > deadline:
                for pid in self.workers:
                    log.error("worker %d did not stop within %d s; killing it", pid, DRAIN_SECONDS)
                    _signal(pid, signal.SIGKILL)
                deadline = float("inf")
            time.sleep(0.02)


def _drain(fd: int) -> bytes:
    received = b""
    while True:
        try:
            chunk = os.read(fd, 512)
        except BlockingIOError:
            return received
        if not chunk:
            return received
        received += chunk


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _exit_description(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return "stopped" if status == 0 else f"exited with status {os.waitstatus_to_exitcode(status)}"


def _die_with_parent(parent: int) -> None:
    """A worker ends with its supervisor: if the supervisor is killed outright (kill -9, the OOM
    killer), its workers must not serve on, unsupervised. Linux delivers SIGKILL to the worker
    (PR_SET_PDEATHSIG); elsewhere a thread notices the new parent within a second."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError):
        def watch():
            while os.getppid() == parent:
                time.sleep(1)
            os.kill(os.getpid(), signal.SIGTERM)
        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if os.getppid() != parent:  # the supervisor died before the request above took effect
        os._exit(1)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


# --- operator CLI -----------------------------------------------------------------------------------

def open_instance_db(cfg: store.Config):
    """The database of an existing instance, for admin commands (never creates one)."""
    if not store.database_exists(cfg.database_location):
        where = store.redact_url(cfg.database) if cfg.is_postgres else cfg.data
        raise store.ConfigError(f"There is no robotwtf instance in {where}; run `robotwtf init` first "
                          "(or pass --data / ROBOTWTF_DATA, --database / ROBOTWTF_DATABASE_URL).")
    store.Keys.load(cfg.data)
    return store.open_database(cfg.database_location, create=False)


def cmd_serve(cfg: store.Config, args) -> int:
    return serve(cfg)


def cmd_init(cfg: store.Config, args) -> int:
    store.prepare_data_folder(cfg, create=True, rotate_keys=args.rotate_keys)
    keys = store.Keys.load(cfg.data).check()
    print(f"{cfg.data}: schema version {store.SCHEMA_VERSION}, ES256 key {keys.es256_kid}, RS256 key {keys.rs256_kid}")
    return 0


def cmd_check(cfg: store.Config, args) -> int:
    store.prepare_data_folder(cfg, create=False)
    store.Keys.load(cfg.data).check()
    db = store.open_database(cfg.database_location, create=False)
    try:
        if db.engine == "sqlite" and db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise store.ConfigError(f"{cfg.db_path} fails SQLite's integrity check; restore a backup.")
        version = db.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        users = db.execute("SELECT count(*) FROM users").fetchone()[0]
        wikis = db.execute("SELECT count(*) FROM wikis").fetchone()[0]
        engine = f"PostgreSQL {db.server_version} at {store.redact_url(cfg.database)}, " if cfg.is_postgres else ""
    finally:
        db.close()
    print(f"ok: {cfg.data} ({engine}schema version {version} (current), {users} users, {wikis} wikis); "
          f"public URL {cfg.public_url}; signup {cfg.signup}")
    return 0


def cmd_user_add(cfg: store.Config, args) -> int:
    db = open_instance_db(cfg)
    did, handle = args.ident.strip(), args.handle
    if not did.startswith("did:"):
        did, handle = resolve_handle_for_cli(cfg, did)
    user = store.add_user(db, did, handle=handle.lower().removeprefix("@") if handle else None,
                    username=args.username, admin=args.admin)
    print(f"added {user['username']} ({user['did']}){' as admin' if user['is_admin'] else ''}")
    return 0


def resolve_handle_for_cli(cfg: store.Config, handle: str) -> tuple[str, str]:
    """A handle's DID, verified both ways, the same way the login does it."""
    import robotwtf_atproto as atproto
    try:
        identity = atproto.resolve_identity(handle, atproto.Fetcher(insecure_dev_network=cfg.insecure_dev_network),
                                            atproto.dns_resolver(cfg.dns_resolver), cfg.plc_url)
    except atproto.AtprotoError as e:
        raise store.BadInput(f"{e} (pass the person's DID instead to add them without the network)") from None
    return identity.did, identity.handle


def cmd_user_list(cfg: store.Config, args) -> int:
    users = store.list_users(open_instance_db(cfg))
    if not users:
        print(f"robotwtf: no users yet in {cfg.data}; add one with `robotwtf user add IDENT`.", file=sys.stderr)
    for user in users:
        print("\t".join([user["username"], user["handle"] or "-", user["did"],
                         "admin" if user["is_admin"] else "member"]))
    return 0


def cmd_login_link(cfg: store.Config, args) -> int:
    db = open_instance_db(cfg)
    try:
        user = store.find_user(db, args.user)
    except store.NotFound as unknown:
        raise store.NotFound(f"{unknown.message} To let someone in who is not a user yet, add them first: "
                             f"`robotwtf user add DID --username {args.user}` (a made-up did:plc works for "
                             "someone without an ATProto account), then run login-link again.") from None
    print(cfg.url("/auth/login-link?" + urllib.parse.urlencode({"token": store.create_login_link(db, user["did"])})))
    return 0


def cmd_invite_create(cfg: store.Config, args) -> int:
    token = store.create_invite(open_instance_db(cfg), None, args.uses)
    print(cfg.url("/auth/login?" + urllib.parse.urlencode({"invite": token})))
    return 0


def cmd_wiki_create(cfg: store.Config, args) -> int:
    db = open_instance_db(cfg)
    owner = store.find_user(db, args.owner)
    wiki = store.create_wiki(db, args.slug, owner["did"], args.title or "", quotas=cfg.quotas, via="cli")
    print(f"created {cfg.url('/w/' + wiki['slug'] + '/')}")
    return 0


def cmd_wiki_list(cfg: store.Config, args) -> int:
    for wiki in store.list_wikis(open_instance_db(cfg)):
        print("\t".join([wiki["slug"], wiki["owner"], wiki["visibility"], wiki["title"]]))
    return 0


def cmd_wiki_git(cfg: store.Config, args) -> int:
    db = open_instance_db(cfg)
    wiki = store.get_wiki(db, args.slug)
    store.set_git_access(db, wiki["id"], args.state == "on")
    print(f"git access to {wiki['slug']} is {args.state}" + (f": git clone {cfg.url('/w/' + wiki['slug'] + '.git')}"
                                                              if args.state == "on" else ""))
    return 0


def cmd_token_create(cfg: store.Config, args) -> int:
    """Print only the token, so scripts can capture it (CONTRACT §2)."""
    db = open_instance_db(cfg)
    user = store.find_user(db, args.user)
    token = store.create_personal_token(db, user["did"], args.slug, store.parse_scopes(args.scope), args.name)
    print(token)
    print(f"Use it with Claude Code: claude mcp add --transport http {args.slug} {cfg.url(f'/w/{args.slug}/mcp')} "
          '--header "Authorization: Bearer <the token>"', file=sys.stderr)
    return 0


def cmd_backup(cfg: store.Config, args) -> int:
    dest = Path(args.file).expanduser().absolute()
    if not store.database_exists(cfg.database_location):
        raise store.ConfigError(f"There is no robotwtf instance in {instance_location(cfg)} to back up.")
    store.backup(cfg, dest)
    print(f"backed up {instance_location(cfg)} to {dest}")
    return 0


def cmd_restore(cfg: store.Config, args) -> int:
    store.restore(cfg, Path(args.file).expanduser().absolute())
    print(f"restored {args.file} into {instance_location(cfg)}")
    return 0


def instance_location(cfg: store.Config) -> str:
    """The instance as a backup holds it: the database (wherever it is) and the data folder's keys."""
    return f"{store.redact_url(cfg.database)} and the keys in {cfg.data}" if cfg.is_postgres else str(cfg.data)


def cmd_migrate_to(cfg: store.Config, args) -> int:
    counts = store.migrate_to(cfg, args.url)
    rows = ", ".join(f"{counts.get(t, 0)} {t}" for t in ("users", "wikis", "pages", "revisions", "attachments"))
    target = store.redact_url(args.url)
    print(f"copied {sum(counts.values())} rows ({rows}) into {target}.\n"
          f"Now serve with --database (ROBOTWTF_DATABASE_URL) set to that database, and copy "
          f"{' and '.join(store.KEY_FILES)} from {cfg.data} into the data folder of every machine that serves it.")
    return 0


# Commands that print links: they use the public URL the server last served on (CONTRACT §2).
LINK_COMMANDS = (cmd_login_link, cmd_invite_create, cmd_wiki_create, cmd_token_create)


def cmd_reindex(cfg: store.Config, args) -> int:
    """Drop the index of one wiki (or all) and embed it again in the foreground, with a progress
    line; a running server's own indexer helps rather than conflicts (CONTRACT §6)."""
    if not cfg.semantic_search:
        raise store.ConfigError("Semantic search is off: set --embeddings-url and --embeddings-model (or "
                                "ROBOTWTF_EMBEDDINGS_URL and ROBOTWTF_EMBEDDINGS_MODEL) first.")
    db = open_instance_db(cfg)
    wiki_id = store.get_wiki(db, args.slug)["id"] if args.slug else None
    pages = semantic.reset(db, wiki_id)
    client = semantic.EmbeddingsClient.from_config(cfg)
    started, shown = time.monotonic(), [0.0]

    def report(progress: semantic.Progress) -> None:
        now = time.monotonic()
        if now - shown[0] < 1 and progress.remaining:
            return
        shown[0] = now
        indexed, pending, stale = semantic.overall_state(db)
        line = (f"reindex: {indexed} chunks embedded, {pending} waiting, {stale} pages to read "
                f"({progress.embedded / max(now - started, 1e-6):.0f} chunks/s)")
        print(f"\r{line}" if sys.stderr.isatty() else line, end="" if sys.stderr.isatty() else "\n",
              file=sys.stderr, flush=True)

    done = semantic.run_until_done(db, client, report)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    seconds = time.monotonic() - started
    print(f"reindexed {args.slug or 'every wiki'}: {pages} pages, {done.embedded} chunks embedded in {seconds:.1f} s "
          f"({done.embedded / max(seconds, 1e-6):.0f} chunks/s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Settings flags work before or after the command (`robotwtf --data D user list`)."""
    settings = argparse.ArgumentParser(add_help=False)
    for setting in store.SETTINGS:
        if setting.flag:
            settings.add_argument(setting.flag, dest=setting.name, default=argparse.SUPPRESS,
                                  help=f"{setting.help} (env {setting.env})")
    parser = argparse.ArgumentParser(prog="robotwtf", parents=[settings],
                                     description="A self-hosted wiki for people and their AI agents.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(parent, name, func, help_text):
        sub = parent.add_parser(name, parents=[settings], help=help_text, description=help_text)
        sub.set_defaults(func=func)
        return sub

    command(commands, "serve", cmd_serve, "serve the wiki (the default command)")
    command(commands, "init", cmd_init, "create the data folder, database and keys (idempotent)") \
        .add_argument("--rotate-keys", action="store_true", help="make new keys (ends every session and token)")
    command(commands, "check", cmd_check, "check the configuration and the data folder")
    users = commands.add_parser("user", help="manage users").add_subparsers(dest="subcommand", metavar="SUBCOMMAND",
                                                                            required=True)
    add = command(users, "add", cmd_user_add, "add a user by DID, or by handle (resolved and verified)")
    add.add_argument("ident", metavar="IDENT", help="the person's DID or handle")
    add.add_argument("--handle", help="their ATProto handle")
    add.add_argument("--username", help="username (default: from the handle)")
    add.add_argument("--admin", action="store_true", help="make them an instance admin")
    command(users, "list", cmd_user_list, "list users: username, handle, DID, admin|member")
    command(commands, "login-link", cmd_login_link, "print a one-time browser login URL (10 minutes)") \
        .add_argument("user", metavar="USER", help="username, handle or DID")
    invites = commands.add_parser("invite", help="manage invites").add_subparsers(
        dest="subcommand", metavar="SUBCOMMAND", required=True)
    command(invites, "create", cmd_invite_create, "print an invite URL") \
        .add_argument("--uses", type=int, default=1, help="how many sign-ups it allows (default 1)")
    wikis = commands.add_parser("wiki", help="manage wikis").add_subparsers(dest="subcommand", metavar="SUBCOMMAND",
                                                                            required=True)
    create = command(wikis, "create", cmd_wiki_create, "create a wiki")
    create.add_argument("slug", metavar="SLUG")
    create.add_argument("--owner", required=True, help="username, handle or DID of the owner")
    create.add_argument("--title", help="the wiki's title (default: the slug)")
    command(wikis, "list", cmd_wiki_list, "list wikis: slug, owner, visibility, title")
    git = command(wikis, "git", cmd_wiki_git, "turn git access to a wiki on or off")
    git.add_argument("slug", metavar="SLUG")
    git.add_argument("state", choices=("on", "off"), help="on or off")
    tokens = commands.add_parser("token", help="manage personal access tokens").add_subparsers(
        dest="subcommand", metavar="SUBCOMMAND", required=True)
    token = command(tokens, "create", cmd_token_create, "print a new personal access token for a wiki, once")
    token.add_argument("slug", metavar="SLUG", help="the wiki")
    token.add_argument("--user", required=True, help="username, handle or DID of the member it acts for")
    token.add_argument("--scope", default=" ".join(store.SCOPES),
                       help=f"space-separated scopes (default \"{' '.join(store.SCOPES)}\")")
    token.add_argument("--name", default="cli", help="a name to recognise it by (default \"cli\")")
    command(commands, "reindex", cmd_reindex, "rebuild the semantic search index of one wiki, or of all") \
        .add_argument("slug", metavar="SLUG", nargs="?", help="the wiki (default: every wiki)")
    command(commands, "backup", cmd_backup, "write a consistent .tar.gz of the database and keys") \
        .add_argument("file", metavar="FILE")
    command(commands, "restore", cmd_restore, "restore a backup into an empty data folder (and, with "
            "--database, an empty PostgreSQL database)").add_argument("file", metavar="FILE")
    command(commands, "migrate-to", cmd_migrate_to, "copy this instance's database into an empty PostgreSQL "
            "database (stop the server first)").add_argument("url", metavar="URL",
                                                             help="postgresql://user@host:port/dbname")
    return parser


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)  # the database, its WAL files and backups hold secrets' hashes and keys
    logging.basicConfig(handlers=[web.LineHandler(sys.stderr)], level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The format shows none of these, and each record (one per request) would look them up: the
    # caller's source line walks the stack (logging HOWTO, "Optimization").
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    args = build_parser().parse_args(argv)
    func = getattr(args, "func", cmd_serve)
    try:
        cfg = store.load_config(vars(args))
        if func in LINK_COMMANDS:
            cfg = store.with_served_public_url(cfg, vars(args))
        return func(cfg, args)
    except store.ConfigError as e:
        print(f"robotwtf: {e}", file=sys.stderr)
        return 1
    except store.RobotError as e:
        print(f"robotwtf: {e.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
