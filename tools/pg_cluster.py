"""A throwaway PostgreSQL cluster for tests and benchmarks: initdb in a temporary folder, run by an
unprivileged user, listening on loopback only, with password (SCRAM) authentication.

    python tools/pg_cluster.py run -- COMMAND...   start a cluster, run COMMAND with
                                                   ROBOTWTF_TEST_DATABASE_URL set, stop it; COMMAND's status
    python tools/pg_cluster.py check               exit 1 with the install command if PostgreSQL is missing

`make test-postgres` and `make bench` use it; bench/postgres.py imports `Cluster`.
Run as root, the server runs as the `postgres` user that Debian's package creates (PostgreSQL
refuses to run as root); otherwise as the calling user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

USER = "robotwtf"
INSTALL_HINT = "PostgreSQL is not installed. Install it with: sudo apt-get install -y postgresql"
# Durability is traded for speed in tests only; `durable=True` keeps the server's defaults (bench).
TEST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


class Missing(Exception):
    pass


def server_bin_dir() -> Path:
    """The newest installed server's bin folder (Debian keeps them under /usr/lib/postgresql/N)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise Missing(INSTALL_HINT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """start() → a superuser URL on 127.0.0.1; stop() removes everything."""

    def __init__(self, durable: bool = False):
        self.bin = server_bin_dir()
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="robotwtf-pg-"))
        self.port = free_port()
        self.password = os.urandom(12).hex()
        self.process: subprocess.Popen | None = None
        self.run_as = None
        self.log = None
        if os.geteuid() == 0:
            try:
                self.run_as = pwd.getpwnam("postgres")
            except KeyError:
                raise Missing("Running as root needs the `postgres` user that Debian's postgresql package "
                              "creates: sudo apt-get install -y postgresql") from None
            os.chown(self.root, self.run_as.pw_uid, self.run_as.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/postgres"

    @property
    def _as_user(self) -> dict:
        """subprocess arguments that run a program as the cluster's user (none unless root)."""
        return dict(user=self.run_as.pw_uid, group=self.run_as.pw_gid, extra_groups=[]) if self.run_as else {}

    def _run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(args, check=True, cwd=self.root, **self._as_user, **kwargs)

    def start(self) -> str:
        data = self.root / "data"
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self.run_as:
            os.chown(pwfile, self.run_as.pw_uid, self.run_as.pw_gid)
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", USER, "--auth=scram-sha-256",
                  f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8", capture_output=True)
        pwfile.unlink()
        settings = [] if self.durable else TEST_SETTINGS
        args = [str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
                "-c", f"unix_socket_directories={self.root}", "-c", "max_connections=300"]
        for setting in settings:
            args += ["-c", setting]
        self.log = open(self.root / "server.log", "wb")
        self.process = subprocess.Popen(args, cwd=self.root, stdout=self.log, stderr=subprocess.STDOUT,
                                        **self._as_user)
        self._wait_ready()
        return self.url

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("postgres exited:\n" + (self.root / "server.log").read_text(errors="replace"))
            ready = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"])
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("postgres did not start:\n" + (self.root / "server.log").read_text(errors="replace"))

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # smart shutdown would wait for clients; SIGTERM is "fast"
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        if self.log:
            self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Cluster":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def database_url(server_url: str, name: str) -> str:
    """The URL of database `name` on the server of `server_url`."""
    parts = urllib.parse.urlsplit(server_url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


def main(argv: list[str]) -> int:
    if argv[:1] == ["check"]:
        try:
            server_bin_dir()
        except Missing as e:
            print(e, file=sys.stderr)
            return 1
        return 0
    if argv[:2] != ["run", "--"] or len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        cluster = Cluster()
    except Missing as e:
        print(e, file=sys.stderr)
        return 1
    with cluster:
        print(f"pg_cluster: PostgreSQL from {cluster.bin} on 127.0.0.1:{cluster.port} ({cluster.root})", flush=True)
        env = dict(os.environ, ROBOTWTF_TEST_DATABASE_URL=cluster.url)
        return subprocess.run(argv[2:], env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
