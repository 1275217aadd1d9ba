"""Fixtures that run robotwtf the way people do: the real CLI entry point as a subprocess,
serving over real HTTP on a free loopback port with a temporary data folder.

On either engine: `make test` runs everything on SQLite; `make test-postgres` starts a throwaway
PostgreSQL cluster and sets ROBOTWTF_TEST_DATABASE_URL to it, and then every data folder a test
makes gets its own new PostgreSQL database (ROBOTWTF_DATABASE_URL), dropped after the test."""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # in-process tests import this tree's robotwtf, not another checkout's
# robotwtf.main(), as `./robotwtf.pyz` and `python3 robotwtf.py` call it, but from the cached bytecode:
# a script is recompiled on every run, which costs ~0.2 s per CLI call across hundreds of calls.
# tests/test_foundation.py runs the `python3 robotwtf.py` form itself.
ENTRY = [sys.executable, "-c", "import sys, robotwtf; sys.exit(robotwtf.main())"]


# The superuser URL of the cluster `make test-postgres` started; None on SQLite runs.
TEST_DATABASE_URL = os.environ.get("ROBOTWTF_TEST_DATABASE_URL") or None
ENGINE = "postgresql" if TEST_DATABASE_URL else "sqlite"


class Databases:
    """New PostgreSQL databases on the test cluster: one per data folder, dropped at the end of the
    test whose tmp_path holds that folder, or at the end of the session (module-scoped servers)."""

    def __init__(self, server_url: str):
        self.server_url = server_url
        self.names = (f"t{os.getpid()}_{n}" for n in itertools.count())
        self.by_folder: dict[Path, str] = {}
        self.test_dir: Path | None = None
        self.made_in_test: list[str] = []
        self.made_for_session: list[str] = []

    def _admin(self):
        import psycopg
        return psycopg.connect(self.server_url, autocommit=True)

    def url(self, name: str) -> str:
        import urllib.parse
        return urllib.parse.urlunsplit(urllib.parse.urlsplit(self.server_url)._replace(path="/" + name))

    def create(self, template: str | None = None, for_session: bool = False) -> str:
        name = next(self.names)
        with self._admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        (self.made_for_session if for_session else self.made_in_test).append(name)
        return self.url(name)

    def for_folder(self, data: Path) -> str:
        """The database of the instance whose data folder is `data` (the same one on every start)."""
        data = Path(data).absolute()
        if data not in self.by_folder:
            in_test = self.test_dir is not None and data.is_relative_to(self.test_dir)
            self.by_folder[data] = self.create(for_session=not in_test)
        return self.by_folder[data]

    def drop(self, names: list[str]) -> None:
        with self._admin() as admin:
            while names:
                admin.execute(f'DROP DATABASE IF EXISTS "{names.pop()}" WITH (FORCE)')

    def end_test(self) -> None:
        for data in [d for d in self.by_folder if d.is_relative_to(self.test_dir)]:
            del self.by_folder[data]
        self.test_dir = None
        self.drop(self.made_in_test)


DATABASES = Databases(TEST_DATABASE_URL) if TEST_DATABASE_URL else None


def database_for(data: Path) -> Path | str:
    """Where the instance with data folder `data` keeps its database on this run's engine."""
    return DATABASES.for_folder(data) if DATABASES else Path(data) / "robotwtf.db"


def open_db(data: Path):
    """A connection to the database of the instance in `data` (through robotwtf's storage layer,
    so the same SQL runs on both engines)."""
    import robotwtf_store
    return robotwtf_store.open_database(database_for(data), create=False)


@pytest.fixture(autouse=True)
def _drop_test_databases(request):
    if not DATABASES:
        yield
        return
    DATABASES.test_dir = request.getfixturevalue("tmp_path").absolute()
    yield
    DATABASES.end_test()


@pytest.fixture(scope="session", autouse=True)
def _drop_session_databases():
    yield
    if DATABASES:
        DATABASES.drop(DATABASES.made_for_session)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(data: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROBOTWTF_")}
    env.update(ROBOTWTF_DATA=str(data), PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    if DATABASES:
        env["ROBOTWTF_DATABASE_URL"] = DATABASES.for_folder(data)
    env.update(extra)
    return env


@dataclasses.dataclass
class CLI:
    data: Path
    env: dict

    def __call__(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run([*ENTRY, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"robotwtf {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result


@dataclasses.dataclass
class Server:
    url: str
    port: int
    data: Path
    env: dict
    process: subprocess.Popen
    cli: CLI
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def db(self):
        """A connection to this instance's database, on whichever engine it runs."""
        import robotwtf_store
        return robotwtf_store.open_database(self.env.get("ROBOTWTF_DATABASE_URL") or self.data / "robotwtf.db",
                                            create=False)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def session(self) -> requests.Session:
        return requests.Session()

    def login(self, user: str) -> requests.Session:
        """A browser-like session signed in as `user` through a one-time login link."""
        browser = requests.Session()
        follow_login_link(browser, self.cli("login-link", user).stdout.strip())
        return browser


def follow_login_link(browser: requests.Session, link: str) -> requests.Response:
    """What a person does with a login link: open it, then press "Sign in as …" on the
    confirmation page (a GET alone spends nothing). Returns the POST's 303."""
    page = browser.get(link, allow_redirects=False)
    assert page.status_code == 200 and "Sign in as" in page.text, page.text
    form = dict(re.findall(r'<input type="hidden" name="(csrf_token|token)" value="([^"]*)"', page.text))
    response = browser.post(link.split("?", 1)[0], data=form, allow_redirects=False)
    assert response.status_code == 303, response.text
    return response


def wait_healthy(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}:\n{log_path.read_text()}")
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.03)
    raise AssertionError(f"server did not become healthy:\n{log_path.read_text()}")


def start_server(data: Path, *args: str, env_extra: dict | None = None, public_url: str | None = None,
                 log_dir: Path | None = None) -> Server:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = base_env(data, ROBOTWTF_PORT=str(port), **(env_extra or {}))
    if public_url:
        env["ROBOTWTF_PUBLIC_URL"] = public_url
    log_path = (log_dir or data.parent) / f"server-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([*ENTRY, "serve", *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_healthy(url, process, log_path)
    return Server(url, port, data, env, process, CLI(data, env), log_path)


@pytest.fixture
def cli(tmp_path) -> CLI:
    """The CLI as a subprocess on a fresh data folder (not yet initialised)."""
    return CLI(tmp_path / "data", base_env(tmp_path / "data"))


@pytest.fixture
def server(tmp_path):
    """A real robotwtf server on a free loopback port with its own fresh data folder."""
    srv = start_server(tmp_path / "data")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def alice(server):
    """A user 'alice' (the instance's first user, so its admin) with a browser session."""
    server.cli("user", "add", "did:plc:aliceaaaaaaaaaaaaaaaaaaa", "--handle", "alice.test", "--username", "alice")
    return server.login("alice")
