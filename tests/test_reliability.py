"""Reliability under load, faults and hostile input (issue 7), the quick versions that run in
`make test`; tests/soak/ runs the same checks longer (`make soak`). Every test drives the real
server over HTTP; the database is inspected afterwards, read-only."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import re
import signal
import time

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reliability_fuzz as fuzz
import reliability_load as load_kit
import robotwtf_store as store
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
    numbers = race(loaded, "race", seconds=2)
    report("race", clients=16, seconds=2, **numbers)
    # Real contention happened: many writes went through and many lost the race.
    assert numbers["acked"] >= 16 and numbers["conflicts"] >= 5, numbers


# --- kill -9 in the middle of a write load -----------------------------------------------------

def crash_rounds(data, rounds: int, clients: int = 8, seed: int = 7, cli_check: bool = False) -> dict:
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
            if cli_check:
                assert server.cli("check").stdout.startswith("ok: ")
            history = load_kit.verify_history(site, acked, unknown)
    finally:
        server.stop()
    return dict(rounds=rounds, acked=len(acked), in_flight=len(unknown), in_flight_landed=history.landed_in_flight,
                acked_per_round=kills)


def test_kill_9_under_write_load_loses_no_acknowledged_write(tmp_path):
    numbers = crash_rounds(tmp_path / "data", rounds=3)
    report("crash", **numbers)


# --- checkpoints ---------------------------------------------------------------------------------

def test_the_server_checkpoints_the_wal_in_the_background(tmp_path):
    """Requests never checkpoint (a copy and an fsync inside one write's time); the server's own
    thread copies a few small writes, far below SQLite's 1,000-page automatic checkpoint, into
    the database file within moments."""
    srv = start_server(tmp_path / "data")
    try:
        site = load_kit.prepare_site(srv.data, "wal", (), 1)
        main_file = srv.data / "robotwtf.db"
        wait_until(lambda: wal_frames_waiting(srv.data) == 0, "the setup's writes were not checkpointed")
        before = main_file.stat().st_size
        endpoint = Endpoint(f"{srv.url}/w/wal/mcp", site.tokens[0])
        for n in range(5):
            endpoint.ok("write_note", path=f"Notes/{n}", content=f"note {n} " + "x" * 3000)
        # Both at once: a checkpoint may run between two of the writes, growing the file early.
        wait_until(lambda: wal_frames_waiting(srv.data) == 0 and main_file.stat().st_size > before,
                   "the WAL was not copied into the database")
    finally:
        srv.stop()


def wait_until(condition, failure: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.02)


def wal_frames_waiting(data) -> int:
    """Frames in the WAL that the database file lacks, read from the WAL index (-shm) header
    without opening a connection (which could checkpoint when it closes)."""
    header = (data / "robotwtf.db-shm").read_bytes()[:136]
    max_frame = int.from_bytes(header[16:20], "little")
    backfilled = int.from_bytes(header[96:100], "little")
    return max_frame - backfilled


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
                restored_acked=len(restored_acks), pages=point.pages), site


def test_backup_during_writes_restores_a_consistent_point(loaded, tmp_path):
    numbers, _ = backup_during_load(loaded, tmp_path, "backup")
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
    db = store.db_connect(server.data / "robotwtf.db")
    try:
        store.add_user(db, FUZZER, None, "fuzzer")
        store.add_user(db, VISITOR, None, "visitor")
        store.create_wiki(db, "fuzz", FUZZER, "Fuzz", quotas=load_kit.QUOTAS, via="cli")
        token = store.create_personal_token(db, FUZZER, "fuzz", frozenset(store.SCOPES), "fuzzer")
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


def fuzz_browser(target: FuzzTarget, examples: int, derandomize: bool = True) -> None:
    @fuzz_settings(examples, derandomize)
    @given(request=fuzz.browser_request(target.cookie, target.csrf))
    def probe(request):
        fuzz.check_answer(fuzz.send_raw(target.port, request), request.decode("latin-1")[:2000])

    probe()


def still_healthy(server) -> None:
    assert requests.get(server.url + "/healthz", timeout=10).json() == {"status": "ok"}
    assert load_kit.database_problems(server.data / "robotwtf.db") == []
    assert "Traceback" not in server.log(), server.log()[-3000:]


def test_fuzz_http_surface_and_json_rpc(loaded):
    target = fuzz_target(loaded)
    fuzz_http(target, examples=150)
    fuzz_rpc(target, examples=150)
    fuzz_browser(target, examples=100)
    still_healthy(loaded)
    report("fuzz", http_examples=150, garbage_examples=15, rpc_examples=150, browser_examples=100)


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



@pytest.mark.parametrize("since, expected", [
    ("²", "is not a date"), ("٣", "is not a date"), ("9" * 30, "out of range"), ("9" * 5000, "out of range"),
    ("9999-12-31T23:59:59-14:00", "out of range"), ("1700000000", None), ("0001-01-01", None)])
def test_list_notes_updated_since_edge_values_are_answers_not_crashes(loaded, since, expected):
    # str.isdigit() accepts '²' and '٣', which int() refuses or reads; over-long digit strings
    # overflowed SQLite's integers (both were -32603 Internal error).
    site = load_kit.prepare_site(loaded.data, "since" + hashlib.sha256(since.encode()).hexdigest()[:8], (), 1)
    endpoint = Endpoint(f"{loaded.url}/w/{site.slug}/mcp", site.tokens[0])
    if expected is None:
        endpoint.ok("list_notes", updated_since=since)
    else:
        assert expected in endpoint.fails("list_notes", updated_since=since)



@pytest.mark.parametrize("days", ["²", "٣", "9" * 5000, "0", "3651"])
def test_token_expiry_days_that_are_not_a_small_number_get_400(loaded, days):
    # str.isdigit() let '²' through to int(), a 500 on the dashboard's token form.
    db = store.db_connect(loaded.data / "robotwtf.db")
    try:
        did = "did:plc:expiry" + hashlib.sha256(days.encode()).hexdigest()[:18].translate(str.maketrans("0189", "wxyz"))
        username = "expiry" + hashlib.sha256(days.encode()).hexdigest()[:6]
        store.add_user(db, did, None, username)
        store.create_wiki(db, username, did, "x", quotas=load_kit.QUOTAS, via="cli")
    finally:
        db.close()
    browser = loaded.login(username)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', browser.get(loaded.url + "/account/apps").text).group(1)
    response = browser.post(loaded.url + "/account/apps/tokens", data={
        "csrf_token": csrf, "wiki": username, "scope": "wiki:read", "name": "t", "expires_days": days})
    assert response.status_code == 400, response.text[-500:]
    assert "Expiry is a number of days from 1 to 3650" in response.text


def test_document_cache_lifetimes_from_odd_headers():
    import robotwtf_as

    for cache_control, seconds in [("max-age=²", robotwtf_as.DOCUMENT_CACHE_DEFAULT), ("max-age=600", 600),
                                   ("max-age=" + "9" * 5000, robotwtf_as.DOCUMENT_CACHE_MAX)]:
        assert robotwtf_as.cache_lifetime({"Cache-Control": cache_control}) == seconds, cache_control



@pytest.mark.parametrize("declared, outcome", [("\xb2", "json"), ("9" * 5000, "too large"), ("12", "json")])
def test_fetcher_survives_odd_content_length_headers(declared, outcome):
    # A remote server (a PDS, a client metadata host) chooses this header: '²' (byte 0xB2) and
    # 5000 digits made the fetcher raise ValueError, a 500 in the login or consent flow.
    import socket
    import threading

    import robotwtf_atproto as atp

    listener = socket.create_server(("127.0.0.1", 0))
    body = b'{"a": 1}\n   '

    def answer():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + declared.encode("latin-1") + b"\r\nConnection: close\r\n\r\n" + body)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        fetcher = atp.Fetcher(insecure_dev_network=True)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/doc"
        if outcome == "json":
            assert fetcher.get_json(url) == {"a": 1}
        else:
            with pytest.raises(atp.UpstreamTooLarge):
                fetcher.get_json(url)
    finally:
        thread.join(10)
        listener.close()


# --- limits: rates, bodies, connections --------------------------------------------------------------

LIMITS = {"ROBOTWTF_LOGIN_PER_MINUTE": "3", "ROBOTWTF_REGISTRATIONS_PER_MINUTE": "3",
          "ROBOTWTF_TOKEN_PER_MINUTE": "4", "ROBOTWTF_WRITES_PER_MINUTE": "5", "ROBOTWTF_MCP_PER_MINUTE": "60",
          "ROBOTWTF_MAX_BODY_BYTES": "65536"}


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """A server with small limits, so that tests reach them in a few requests."""
    srv = start_server(tmp_path_factory.mktemp("limited") / "data", env_extra=LIMITS)
    try:
        yield srv
    finally:
        srv.stop()


class _SourceAddress(requests.adapters.HTTPAdapter):
    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, source_address=(self.address, 0), **kwargs)


def client_at(address: str) -> requests.Session:
    """HTTP from another loopback address (all of 127.0.0.0/8 is this machine): a second
    'client address' for the per-address limits."""
    session = requests.Session()
    session.mount("http://", _SourceAddress(address))
    return session


def assert_limited(response: requests.Response, *, json_error: bool = True) -> None:
    assert response.status_code == 429, (response.status_code, response.text[:300])
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    if json_error:
        assert response.json()["error"] == "rate_limited"


def test_sign_in_attempts_are_limited_per_address(limited):
    for address in ("127.0.0.2", "127.0.0.3"):
        browser = client_at(address)
        page = browser.get(limited.url + "/auth/login", timeout=10)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        for _ in range(3):
            attempt = browser.post(limited.url + "/auth/login", data={"csrf_token": csrf, "identifier": ""}, timeout=10)
            assert attempt.status_code == 400
        assert_limited(browser.post(limited.url + "/auth/login", data={"csrf_token": csrf, "identifier": ""},
                                    timeout=10), json_error=False)


def register_client(session: requests.Session, url: str, auth_method: str) -> dict:
    response = session.post(url + "/oauth/register", json={
        "client_name": "limits", "redirect_uris": ["http://127.0.0.1:9/cb"], "token_endpoint_auth_method": auth_method,
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]}, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def test_client_registrations_are_limited_per_address(limited):
    first, second = client_at("127.0.0.4"), client_at("127.0.0.5")
    for _ in range(3):
        register_client(first, limited.url, "none")
    assert_limited(first.post(limited.url + "/oauth/register", json={"redirect_uris": ["http://127.0.0.1:9/cb"]},
                              timeout=10))
    register_client(second, limited.url, "none")


def token_request(session: requests.Session, url: str, **form) -> requests.Response:
    return session.post(url + "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": "not-one", **form},
                        timeout=10)


def test_token_requests_are_limited_per_address_and_per_confidential_client(limited):
    confidential = register_client(client_at("127.0.0.6"), limited.url, "client_secret_post")
    public = register_client(client_at("127.0.0.6"), limited.url, "none")
    credentials = {"client_id": confidential["client_id"], "client_secret": confidential["client_secret"]}
    # Per address: four requests (whatever they say), then 429; another address is unaffected.
    spender = client_at("127.0.0.7")
    for _ in range(4):
        assert token_request(spender, limited.url, client_id="nobody").status_code in (400, 401)
    assert_limited(token_request(spender, limited.url, client_id="nobody"))
    # Per confidential client: four authenticated requests from four addresses, then the fifth,
    # from a fresh address, is refused for the client.
    for i in range(4):
        assert token_request(client_at(f"127.0.1.{i}"), limited.url, **credentials).json()["error"] == "invalid_grant"
    refused = token_request(client_at("127.0.1.9"), limited.url, **credentials)
    assert_limited(refused)
    assert "this client" in refused.json()["error_description"]
    # A public client can't be starved by others naming it: only the per-address limit applies.
    for i in range(6):
        answer = token_request(client_at(f"127.0.2.{i}"), limited.url, client_id=public["client_id"])
        assert answer.json()["error"] == "invalid_grant"
    # Wrong secrets don't spend the client's budget either (the client never authenticated).
    assert token_request(client_at("127.0.3.1"), limited.url, client_id=confidential["client_id"],
                         client_secret="wrong").status_code == 401


def test_mcp_writes_are_limited_per_token_with_http_429(limited):
    site = load_kit.prepare_site(limited.data, "limits", ("Limits/Page",), 2)
    first, second = (Endpoint(f"{limited.url}/w/limits/mcp", token) for token in site.tokens)
    for i in range(5):
        first.ok("write_note", path=f"Limits/New {i}", content="x\n")
    refused = first.modern("tools/call", {"name": "write_note", "arguments": {"path": "Limits/Refused", "content": "x"}})
    assert_limited(refused)
    assert refused.json()["error_description"] == "Too many changes in a short time; wait a moment, then send them again."
    # Reading goes on; nothing of the refused write was stored; another token has its own budget.
    assert "Page not found" in first.fails("read_note", path="Limits/Refused")
    second.ok("write_note", path="Limits/Other", content="x\n")
    # A 2025-03-26 batch is refused as a whole before any of it runs.
    batch = first.post([{"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                         "params": {"name": "read_note", "arguments": {"path": "Home"}}},
                        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                         "params": {"name": "write_note", "arguments": {"path": "Limits/Batch", "content": "x"}}}])
    assert_limited(batch)
    assert "Page not found" in second.fails("read_note", path="Limits/Batch")


def test_browser_form_posts_are_limited_per_person(limited):
    db = store.db_connect(limited.data / "robotwtf.db")
    try:
        store.add_user(db, "did:plc:poster2poster2poster2pos", None, "poster", admin=True)
    finally:
        db.close()
    browser = limited.login("poster")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', browser.get(limited.url + "/admin").text).group(1)
    for _ in range(5):
        assert browser.post(limited.url + "/admin/invites", data={"csrf_token": csrf, "uses": "1"}).status_code == 200
    refused = browser.post(limited.url + "/admin/invites", data={"csrf_token": csrf, "uses": "1"})
    assert_limited(refused, json_error=False)
    assert "Too many changes in a short time" in refused.text and refused.headers["Content-Type"].startswith("text/html")
    # A forged form (no CSRF token) is refused as such and spends nothing.
    assert browser.post(limited.url + "/admin/invites", data={"uses": "1"}).status_code == 403


def test_request_bodies_over_the_limit_get_413(limited):
    site = load_kit.prepare_site(limited.data, "bodies", (), 1)
    endpoint = Endpoint(f"{limited.url}/w/bodies/mcp", site.tokens[0])
    endpoint.ok("write_note", path="Bodies/Fits", content="x" * 60_000)   # just under 64 KiB with its envelope
    too_big = endpoint.post(None, raw=b" " * 65_537)
    assert too_big.status_code == 413
    # Announced too large: refused from the headers alone, without waiting for the body.
    announced = fuzz.send_raw(limited.port, f"POST /w/bodies/mcp HTTP/1.1\r\nHost: x\r\nContent-Length: {10**9}\r\n"
                                            "Content-Type: application/json\r\n\r\n".encode())
    assert announced.status == 413
    chunked = fuzz.build_request("POST", "/w/bodies/mcp", [("Authorization", f"Bearer {site.tokens[0]}")],
                                 b" " * 70_000, chunked=True)
    assert fuzz.send_raw(limited.port, chunked).status == 413
    assert "Page not found" in endpoint.fails("read_note", path="Bodies/Too big")


def trickle(port: int, connections: int, seconds: float) -> tuple[list, "threading.Thread", "threading.Event"]:
    """`connections` clients that each send a request one byte a second: half dribble the
    headers, half send headers and dribble a body. Returns the sockets, the dribbling thread and
    the event that stops it."""
    import socket
    import threading
    import time

    heads = [f"POST /w/race/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             f"Content-Length: {10_000}\r\nX-Slow: {i}\r\n\r\n".encode() for i in range(connections)]
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(connections)]
    for i, sock in enumerate(sockets):
        if i % 2:
            sock.sendall(heads[i])   # the body will dribble
    stop = threading.Event()

    def dribble():
        position = [0] * connections
        deadline = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < deadline:
            for i, sock in enumerate(sockets):
                byte = heads[i][position[i]:position[i] + 1] if i % 2 == 0 else b" "
                sock.sendall(byte or b" ")
                position[i] += 1
            stop.wait(1)

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    return sockets, thread, stop


def latencies(server, slug: str, token: str, seconds: float) -> list[float]:
    """A well-behaved client's latencies for `seconds`: every request on a NEW connection (so
    the accept loop is tested too), alternating /healthz and an MCP read_note."""
    import time

    endpoint = f"{server.url}/w/{slug}/mcp"
    times = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or len(times) < 10:
        started = time.perf_counter()
        if len(times) % 2:
            response = requests.get(server.url + "/healthz", timeout=30, headers={"Connection": "close"})
        else:
            response = requests.post(endpoint, timeout=30, json={
                "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "read_note", "arguments": {"path": "Home"}}},
                headers={"Authorization": f"Bearer {token}", "MCP-Protocol-Version": "2025-11-25",
                         "Connection": "close"})
        assert response.status_code == 200, response.text
        times.append(time.perf_counter() - started)
    return sorted(times)


def still_open(sock) -> bool:
    """The server has neither answered nor closed this connection."""
    import socket

    sock.settimeout(0)   # else Python waits for data up to the socket's timeout first
    try:
        sock.recv(1, socket.MSG_PEEK)
        return False   # an answer or the end of the connection
    except BlockingIOError:
        return True
    except OSError:
        return False


def slow_clients(server, connections: int, seconds: float) -> dict:
    site = load_kit.prepare_site(server.data, f"slow{connections}", (), 1)
    token = site.tokens[0]
    before = latencies(server, site.slug, token, 1)
    sockets, thread, stop = trickle(server.port, connections, seconds + 30)
    try:
        during = latencies(server, site.slug, token, seconds)
        assert thread.is_alive(), "the slow clients stopped before the measurement ended"
        waiting = sum(still_open(sock) for sock in sockets)
    finally:
        stop.set()
        thread.join()
        for sock in sockets:
            sock.close()
    ms = lambda values, q: round(percentile(values, q) * 1000, 1)  # noqa: E731
    numbers = dict(slow_connections=connections, still_open=waiting, seconds=seconds, threads=8,
                   requests=len(during), before_p50_ms=ms(before, 0.5), before_max_ms=ms(before, 1.0),
                   during_p50_ms=ms(during, 0.5), during_p99_ms=ms(during, 0.99), during_max_ms=ms(during, 1.0))
    assert waiting == connections, f"the server dropped slow clients: {numbers}"
    # Generous bounds for a loaded CI machine; starvation would mean waiting for the slow clients
    # (10,000 s) or for channel_timeout (60 s).
    assert percentile(during, 0.5) < max(0.5, 5 * percentile(before, 0.5)) and during[-1] < 5, numbers
    return numbers


def test_clients_sending_a_byte_a_second_do_not_starve_others(loaded):
    numbers = slow_clients(loaded, connections=48, seconds=2)
    report("slow clients", **numbers)
