"""Reliability under load, faults and hostile input (issue 7), the quick versions that run in
`make test`; tests/soak/ runs the same checks longer (`make soak`). Every test drives the real
server over HTTP; the database is inspected afterwards, read-only."""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import signal

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reliability_fuzz as fuzz
import reliability_load as load_kit
import robotwtf as rw
from conftest import CLI, base_env, start_server
from mcp_client import Endpoint

RACE_PAGES = ("Race/Alpha", "Race/Beta", "Race/Gamma")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """One server for the load tests of this module, without rate limits in the way."""
    srv = start_server(tmp_path_factory.mktemp("loaded") / "data", env_extra=load_kit.UNLIMITED)
    try:
        yield srv
    finally:
        srv.stop()


def report(name: str, **numbers) -> None:
    """Measured numbers, shown with `pytest -s` (the final report of a run quotes them)."""
    print(f"\n[{name}] " + ", ".join(f"{key}={value}" for key, value in numbers.items()))


def percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(len(values) * fraction))] if values else float("nan")


# --- racing writers ----------------------------------------------------------------------------

def race(server, slug: str, seconds: float, clients: int = 16, seed: int = 1) -> dict:
    """`clients` writers (own connection and token each) race on three pages and a handful of
    pages they all try to create, for `seconds`; then everything is checked."""
    site = load_kit.prepare_site(server.data, slug, RACE_PAGES, clients)
    creates = tuple(f"Race/New {i}" for i in range(5))
    run = load_kit.start_load(server.url, site, seed=seed, creates=creates)
    run.stop.wait(seconds)
    run.finish()
    assert not run.errors, run.errors[:5]
    assert not run.unknown
    history = load_kit.verify_history(site, run.acked)
    assert load_kit.database_problems(server.data / "robotwtf.db") == []
    # The read tools agree with the database: get_history lists the same newest revisions.
    listed = Endpoint(f"{server.url}/w/{slug}/mcp", site.tokens[0]).ok("get_history", path=RACE_PAGES[0], limit=200)
    assert [entry["revision"] for entry in listed["structuredContent"]["history"]] == \
        load_kit.newest_revisions(server.data / "robotwtf.db", site.wiki_id, RACE_PAGES[0], 200)
    return dict(acked=history.acknowledged, conflicts=len(run.refused), requests=sum(w.requests for w in run.writers),
                revisions=history.revisions, p50_ms=round(percentile(run.latencies, 0.5) * 1000, 1),
                p99_ms=round(percentile(run.latencies, 0.99) * 1000, 1))


def test_racing_writers_lose_nothing_and_refuse_only_conflicts(loaded):
    numbers = race(loaded, "race", seconds=3)
    report("race", clients=16, seconds=3, **numbers)
    # Real contention happened: many writes went through and many lost the race.
    assert numbers["acked"] >= 30 and numbers["conflicts"] >= 10, numbers


# --- kill -9 in the middle of a write load -----------------------------------------------------

def crash_rounds(data, rounds: int, clients: int = 8, seed: int = 7) -> dict:
    """Round after round: writers load the server, it is killed with SIGKILL at a random moment
    after some writes were acknowledged, and restarted on the same data folder; then nothing
    acknowledged may be missing, and nothing unacknowledged may have appeared except the writes
    that were in flight at the kill."""
    server = start_server(data, env_extra=load_kit.UNLIMITED)
    site = load_kit.prepare_site(data, "crash", RACE_PAGES, clients)
    acked, unknown, kills = [], [], []
    rng = load_kit.random.Random(seed)
    try:
        for round_ in range(rounds):
            creates = tuple(f"Crash/Round {round_} page {i}" for i in range(3))
            run = load_kit.start_load(server.url, site, seed=seed + round_, creates=creates, server_may_die=True)
            run.wait_for_acks(rng.randint(10, 60))
            os.kill(server.process.pid, signal.SIGKILL)
            assert server.process.wait(10) == -signal.SIGKILL
            run.finish()
            assert not run.errors, run.errors[:5]
            acked += run.acked
            unknown += run.unknown
            kills.append(len(run.acked))
            server = start_server(data, env_extra=load_kit.UNLIMITED)
            assert load_kit.database_problems(data / "robotwtf.db") == []
            history = load_kit.verify_history(site, acked, unknown)
    finally:
        server.stop()
    return dict(rounds=rounds, acked=len(acked), in_flight=len(unknown), in_flight_landed=history.landed_in_flight,
                acked_per_round=kills)


def test_kill_9_under_write_load_loses_no_acknowledged_write(tmp_path):
    numbers = crash_rounds(tmp_path / "data", rounds=3)
    report("crash", **numbers)


# --- backup while writing -------------------------------------------------------------------------

def backup_during_load(server, tmp_path, slug: str, clients: int = 8) -> dict:
    """`backup` (the CLI, as operators run it) while writers write; the archive restored into a
    new folder must be the live database as it was at one moment: exactly the revisions up to
    some point of the commit order, and every page in the state that point gave it."""
    site = load_kit.prepare_site(server.data, slug, RACE_PAGES, clients)
    run = load_kit.start_load(server.url, site, seed=3)
    try:
        run.wait_for_acks(20)
        before = len(run.acked)
        archive = tmp_path / f"{slug}.tar.gz"
        server.cli("backup", str(archive))
        during = len(run.acked) - before
        run.wait_for_acks(len(run.acked) + 20)
    finally:
        run.finish()
    assert not run.errors, run.errors[:5]
    load_kit.verify_history(site, run.acked)
    restored = tmp_path / f"{slug}-restored"
    CLI(restored, base_env(restored))("restore", str(archive))
    assert load_kit.database_problems(restored / "robotwtf.db") == []
    point = load_kit.consistent_point(restored / "robotwtf.db", server.data / "robotwtf.db")
    restored_acks = {w.revision for w in run.acked} & point.revisions
    assert 0 < len(restored_acks) < len(run.acked), "the backup did not happen in the middle of the load"
    return dict(acked=len(run.acked), acked_during_backup=during, restored_revisions=len(point.revisions),
                restored_acked=len(restored_acks), pages=point.pages)


def test_backup_during_writes_restores_a_consistent_point(loaded, tmp_path):
    numbers = backup_during_load(loaded, tmp_path, "backup")
    report("backup", **numbers)


# --- fuzzing the HTTP surface and the JSON-RPC handler ------------------------------------------

FUZZER = "did:plc:fuzzerfuzzerfuzzerfuzzzz"
VISITOR = "did:plc:visitorvisitorvisitorvis"


@dataclasses.dataclass
class FuzzTarget:
    port: int
    token: str
    cookie: str
    csrf: str


def fuzz_target(server) -> FuzzTarget:
    """A wiki 'fuzz' whose owner's token the fuzzer holds, and a signed-in browser (another user)
    whose session cookie and CSRF token the fuzzer may send, so it gets past the front doors."""
    db = rw.db_connect(server.data / "robotwtf.db")
    try:
        rw.add_user(db, FUZZER, None, "fuzzer")
        rw.add_user(db, VISITOR, None, "visitor")
        rw.create_wiki(db, "fuzz", FUZZER, "Fuzz", public_url=server.url, quotas=load_kit.QUOTAS, via="cli")
        token = rw.create_personal_token(db, FUZZER, "fuzz", frozenset(rw.SCOPES), "fuzzer")
    finally:
        db.close()
    browser = server.login("visitor")
    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', browser.get(server.url + "/account").text).group(1)
    return FuzzTarget(server.port, token, cookie, csrf)


def fuzz_settings(examples: int, derandomize: bool = True) -> settings:
    # Bounded: a fixed number of examples, no per-example deadline (a loaded CI machine is slow),
    # no example database. The quick run is derandomized (the same examples every time); the soak
    # run explores new ones.
    return settings(max_examples=examples, deadline=None, derandomize=derandomize, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


def fuzz_http(target: FuzzTarget, examples: int, derandomize: bool = True) -> None:
    @fuzz_settings(examples, derandomize)
    @given(method=fuzz.http_method, where=fuzz.request_target(),
           headers=fuzz.headers_strategy(target.cookie, target.csrf, target.token),
           body=fuzz.body_strategy(target.csrf), chunked=st.booleans())
    def probe(method, where, headers, body, chunked):
        request = fuzz.build_request(method, where, headers, body, chunked)
        fuzz.check_answer(fuzz.send_raw(target.port, request), f"{method} {where} {headers}")

    @fuzz_settings(max(10, examples // 10), derandomize)
    @given(garbage=st.binary(max_size=200))
    def garbage(garbage):
        fuzz.check_answer(fuzz.send_raw(target.port, garbage + b"\r\n\r\n"), f"garbage {garbage!r}")

    probe()
    garbage()


def fuzz_rpc(target: FuzzTarget, examples: int, derandomize: bool = True) -> None:
    @fuzz_settings(examples, derandomize)
    @given(data=st.data(), body=fuzz.rpc_body)
    def probe(data, body):
        headers = data.draw(fuzz.rpc_headers(target.token, body))
        request = fuzz.build_request("POST", "/w/fuzz/mcp", headers, body.encode(), chunked=False)
        fuzz.check_rpc_answer(fuzz.send_raw(target.port, request), f"{headers} {body}")

    probe()


def still_healthy(server) -> None:
    assert requests.get(server.url + "/healthz", timeout=10).json() == {"status": "ok"}
    assert load_kit.database_problems(server.data / "robotwtf.db") == []
    assert "Traceback" not in server.log(), server.log()[-3000:]


def test_fuzz_http_surface_and_json_rpc(loaded):
    target = fuzz_target(loaded)
    fuzz_http(target, examples=150)
    fuzz_rpc(target, examples=150)
    still_healthy(loaded)
    report("fuzz", http_examples=150, garbage_examples=15, rpc_examples=150)


# --- what the fuzzer found -----------------------------------------------------------------------

@pytest.mark.parametrize("where, header", [
    ("/w/race/mcp", "Mcp-Method"), ("/w/race/mcp", "Authorization"), ("/account", "Cookie"),
    ("/oauth/token", "Content-Type"), ("/healthz", "User-Agent")])
def test_a_header_that_is_not_utf8_gets_400_not_500(loaded, where, header):
    request = fuzz.build_request("POST", where, [(header, "caf\xe9 \x80")], b"{}", chunked=False)
    answer = fuzz.send_raw(loaded.port, request)
    assert answer.status == 400, answer
    assert f"The {header} header is not valid UTF-8." in answer.body.decode()
    # UTF-8 is fine (waitress hands it over as latin-1; bottle decodes it back).
    fine = fuzz.build_request("GET", "/healthz", [("User-Agent", "café".encode().decode("latin-1"))], b"", False)
    assert fuzz.send_raw(loaded.port, fine).status == 200


@pytest.mark.parametrize("where", ["/oauth/token", "/oauth/revoke"])
def test_basic_client_credentials_that_are_not_utf8_get_401_not_500(loaded, where):
    credentials = base64.b64encode(b"\xff\xfe:secret").decode()
    response = requests.post(loaded.url + where, data={"grant_type": "refresh_token", "refresh_token": "x",
                                                       "token": "x"},
                             headers={"Authorization": f"Basic {credentials}"}, timeout=10)
    assert response.status_code == 401, response.text
    assert response.json() == {"error": "invalid_client",
                               "error_description": "The HTTP Basic client credentials are not UTF-8."}
