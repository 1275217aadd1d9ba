"""Several worker processes serving one instance (`serve --workers N`, issue 14): racing writers
across processes, a worker killed under load, a graceful stop, rate limits and revocations that
hold across workers, one-time codes that stay single-use when two workers race for them. Every
test drives the real server over HTTP and finds which worker holds which connection in /proc."""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

import reliability_load as load_kit
import robotwtf_store as store
import test_reliability as reliability
from conftest import start_server
from oauth_flow import World

WORKERS = 4


# --- the processes ----------------------------------------------------------------------------

def children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (its workers, for a supervisor)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def wait_for_workers(server, count: int, without: set[int] = frozenset(), seconds: float = 20) -> set[int]:
    deadline = time.monotonic() + seconds
    while True:
        pids = children(server.process.pid)
        if len(pids) == count and not pids & without:
            return pids
        assert time.monotonic() < deadline, f"workers {pids}, expected {count} without {without}"
        time.sleep(0.05)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def start_workers(data: Path, workers: int = WORKERS, env_extra: dict | None = None):
    server = start_server(data, "--workers", str(workers), env_extra=env_extra)
    wait_for_workers(server, workers)
    return server


@pytest.fixture
def workers(tmp_path):
    """A server of four worker processes without rate limits in the way."""
    server = start_workers(tmp_path / "data", env_extra=load_kit.UNLIMITED)
    try:
        yield server
    finally:
        server.stop(timeout=60)


# --- connections, and which worker holds each ---------------------------------------------------

class Connection:
    """One keep-alive HTTP connection, and the worker process that accepted it."""

    def __init__(self, server):
        self.server = server
        self.http = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        self.request("GET", "/healthz")
        self.worker = connection_owner(server, self.http.sock.getsockname()[1])

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        self.http.request(method, path, body=body, headers=headers or {})
        response = self.http.getresponse()
        self.headers = response.headers
        return response.status, response.read()

    def mcp(self, slug: str, token: str, method: str, params: dict | None = None) -> tuple[int, dict]:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
        status, text = self.request("POST", f"/w/{slug}/mcp", json.dumps(body).encode(), {
            "Authorization": f"Bearer {token}", "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"})
        return status, json.loads(text) if text else {}

    def close(self) -> None:
        self.http.close()


def connection_owner(server, client_port: int) -> int:
    """The worker whose socket is the server end of the connection from `client_port`."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
            if local == server.port and remote == client_port:
                inode = fields[9]
    assert inode is not None, f"no server socket for client port {client_port}"
    for pid in children(server.process.pid):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def connections_to_every_worker(server, at_most: int = 200) -> list[Connection]:
    """Connections opened until every worker holds at least one (the kernel hands each to
    whichever worker accepts first)."""
    opened, workers = [], children(server.process.pid)
    while {c.worker for c in opened} != workers:
        assert len(opened) < at_most, f"{at_most} connections reached only {len({c.worker for c in opened})} workers"
        opened.append(Connection(server))
    return opened


# --- racing writers, a killed worker, a graceful stop -------------------------------------------

def test_sixteen_writers_racing_over_four_workers_lose_nothing(workers):
    before = {pid: cpu_ticks(pid) for pid in children(workers.process.pid)}
    numbers = reliability.race(workers, "race", seconds=3)
    busy = [pid for pid, ticks in before.items() if cpu_ticks(pid) - ticks >= 10]
    reliability.report("race over workers", workers=WORKERS, busy_workers=len(busy), **numbers)
    assert numbers["acked"] >= 16 and numbers["conflicts"] >= 5, numbers
    assert len(busy) >= 2, "the writers' connections all went to one worker; nothing raced across processes"


def test_a_worker_killed_under_write_load_is_replaced_and_nothing_acknowledged_is_lost(workers):
    site = load_kit.prepare_site(workers.data, "crash", reliability.RACE_PAGES, 16)
    run = load_kit.start_load(workers.url, site, seed=3, creates=("Crash/New",), server_may_die=True)
    run.wait_for_acks(40)
    victim = max(children(workers.process.pid))
    os.kill(victim, signal.SIGKILL)
    replaced = wait_for_workers(workers, WORKERS, without={victim})
    run.stop.wait(1)
    run.finish()
    assert not run.errors, run.errors[:5]
    # The instance serves on with a full set of workers: a second round of writers gets through.
    again = load_kit.start_load(workers.url, site, seed=4)
    again.wait_for_acks(40)
    again.finish()
    assert not again.errors, again.errors[:5]
    history = load_kit.verify_history(site, run.acked + again.acked, run.unknown)
    assert load_kit.database_problems(workers.data / "robotwtf.db") == []
    assert f"worker {victim} was killed by SIGKILL" in workers.log()
    reliability.report("worker killed", acked=history.acknowledged, in_flight=len(run.unknown),
                       in_flight_landed=history.landed_in_flight, workers_after=len(replaced))


def test_sigterm_stops_every_worker_and_exits_0_losing_nothing(workers):
    server = workers
    pids = children(server.process.pid)
    site = load_kit.prepare_site(server.data, "stop", reliability.RACE_PAGES, 16)
    run = load_kit.start_load(server.url, site, seed=5, server_may_die=True)
    run.wait_for_acks(40)
    assert server.stop(signal.SIGTERM, timeout=60) == 0
    run.finish()
    assert not run.errors, run.errors[:5]
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids), "a worker outlived the server"
    assert "Traceback" not in server.log()
    load_kit.verify_history(site, run.acked, run.unknown)
    assert load_kit.database_problems(server.data / "robotwtf.db") == []


def test_a_stop_signal_to_the_whole_process_group_drains_without_errors(workers):
    """Ctrl-C in a terminal and `systemctl stop` signal every process of the server, so each
    worker gets the signal itself and again from its supervisor: the second must not cut the
    first one's drain short."""
    server = workers
    pids = children(server.process.pid)
    site = load_kit.prepare_site(server.data, "group", reliability.RACE_PAGES, 16)
    run = load_kit.start_load(server.url, site, seed=6, server_may_die=True)
    run.wait_for_acks(40)
    for pid in (*pids, server.process.pid):
        os.kill(pid, signal.SIGINT)
    assert server.process.wait(timeout=60) == 0
    run.finish()
    assert not run.errors, run.errors[:5]
    assert "Traceback" not in server.log() and "exited with status" not in server.log(), server.log()[-3000:]
    load_kit.verify_history(site, run.acked, run.unknown)


def test_killing_the_supervisor_takes_its_workers_with_it(tmp_path):
    server = start_workers(tmp_path / "data", workers=2)
    pids = children(server.process.pid)
    os.kill(server.process.pid, signal.SIGKILL)
    assert server.process.wait(10) == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
              for pid in pids):
        assert time.monotonic() < deadline, "workers kept running without their supervisor"
        time.sleep(0.05)


# --- state every worker must agree on ---------------------------------------------------------------

MCP_LIMIT = 60


def test_rate_limits_count_requests_across_all_workers(tmp_path):
    """A limit of 60 MCP requests a minute, one token, connections on every worker: together
    they get at most 60 answers (permits are counted in the database before they are spent); a
    worker's unspent batch may cost a few (at most workers x (batch - 1)), never add any."""
    server = start_workers(tmp_path / "data", env_extra={"ROBOTWTF_MCP_PER_MINUTE": str(MCP_LIMIT)})
    try:
        site = load_kit.prepare_site(server.data, "limits", (), 1)
        connections = connections_to_every_worker(server)
        started = time.time()
        answers = [connection.mcp("limits", site.tokens[0], "tools/list")[0]
                   for _ in range(4) for connection in connections for _ in range(8)]
        ended = time.time()
        admitted = answers.count(200)
        assert set(answers) == {200, 429}, set(answers)
        batch = max(1, MCP_LIMIT // store.RateLimiter.BATCH_SHARE)
        # A burst that crosses into a new minute may get that minute's share of the limit too.
        boundary = math.floor(ended / 60) * 60
        extra = math.ceil(MCP_LIMIT * (ended - boundary) / 60) if boundary > started else 0
        reliability.report("rate limit across workers", limit=MCP_LIMIT, workers=WORKERS,
                           connections=len(connections), requests=len(answers), admitted=admitted,
                           over=max(0, admitted - MCP_LIMIT), crossing_allowance=extra)
        assert MCP_LIMIT - WORKERS * (batch - 1) <= admitted <= MCP_LIMIT + extra
        for connection in connections:
            connection.close()
    finally:
        server.stop(timeout=60)


def test_a_grant_revoked_through_one_worker_is_refused_by_every_worker(workers):
    world = World(workers)
    flow = world.flow()
    tokens = flow.tokens()
    connections = connections_to_every_worker(workers)
    for connection in connections:
        assert connection.mcp(flow.slug, tokens["access_token"], "tools/list")[0] == 200
    assert flow.revoke(tokens["refresh_token"]).status_code == 200
    for connection in connections:
        status, body = connection.mcp(flow.slug, tokens["access_token"], "tools/list")
        assert (status, body["error"]) == (401, "invalid_token"), (connection.worker, status, body)
        connection.close()


def race_on_two_workers(server, send, prepare=lambda connection: None) -> list:
    """send(connection, prepared) on two connections held by different workers, released
    together; prepared is what prepare(connection) returned for it beforehand."""
    connections = []
    while len({c.worker for c in connections}) < 2:
        connections.append(Connection(server))
    first = connections[0]
    second = next(c for c in connections if c.worker != first.worker)
    start, answers = threading.Barrier(2), {}

    def go(connection, prepared):
        start.wait()
        answers[connection.worker] = send(connection, prepared)

    threads = [threading.Thread(target=go, args=(c, prepare(c))) for c in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for connection in connections:
        connection.close()
    return list(answers.values())


def form(fields: dict) -> tuple[bytes, dict]:
    import urllib.parse
    return urllib.parse.urlencode(fields).encode(), {"Content-Type": "application/x-www-form-urlencoded"}


def test_an_authorization_code_is_redeemed_once_when_two_workers_race(workers):
    world = World(workers)
    flow = world.flow()
    code = flow.code()
    body, headers = form({"grant_type": "authorization_code", "code": code, "redirect_uri": flow.redirect_uri,
                          "code_verifier": flow.verifier, "resource": flow.resource(), **flow.client_auth()})
    answers = race_on_two_workers(workers, lambda c, _: c.request("POST", "/oauth/token", body, headers))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200, 400], answers
    refused = next(json.loads(text) for status, text in answers if status == 400)
    assert refused["error"] == "invalid_grant"


def test_a_login_link_signs_in_once_when_two_workers_race(workers):
    """Two browsers open the same link (each gets the confirmation page), then both press the
    button at once, on different workers: one is signed in, the other refused."""
    world = World(workers)
    token = store.create_login_link(world.db, world.person())

    def open_link(connection) -> tuple[bytes, dict]:
        status, page = connection.request("GET", f"/auth/login-link?token={token}")
        assert status == 200, page
        fields = dict(re.findall(r'<input type="hidden" name="(csrf_token|token)" value="([^"]*)"', page.decode()))
        cookie = "; ".join(c.split(";", 1)[0] for c in connection.headers.get_all("Set-Cookie") or [])
        body, headers = form(fields)
        return body, {**headers, "Cookie": cookie}

    answers = race_on_two_workers(workers, lambda c, sent: c.request("POST", "/auth/login-link", *sent)[0],
                                  prepare=open_link)
    assert sorted(answers) == [303, 403]


def test_a_refresh_token_rotates_once_when_two_workers_race(workers):
    world = World(workers)
    flow = world.flow()
    tokens = flow.tokens()
    body, headers = form({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                          **flow.client_auth()})
    answers = race_on_two_workers(workers, lambda c, _: c.request("POST", "/oauth/token", body, headers))
    assert {status for status, _ in answers} <= {200, 400} and 200 in {status for status, _ in answers}, answers
    # However the two interleaved (a retry within the grace period also rotates), exactly one
    # refresh token of the grant is left unspent.
    grant_id = world.sql("SELECT grant_id FROM oauth_refresh_tokens WHERE token_hash = ?",
                         store.hash_secret(tokens["refresh_token"]))[0][0]
    live = world.sql("SELECT count(*) FROM oauth_refresh_tokens WHERE grant_id = ? AND used_at IS NULL", grant_id)
    assert live[0][0] == 1
