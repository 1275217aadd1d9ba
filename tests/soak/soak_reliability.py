"""The reliability tests of tests/test_reliability.py, longer and harder: a minute of racing
writers, ten kill -9 rounds, repeated backups under load with the restored instance serving,
thousands of random fuzz examples, and hundreds of trickling connections; and those of
tests/test_workers.py: a minute of racing over four worker processes, ten workers killed under
load one after another.

Run by `make soak` only (pytest tests/soak/soak_reliability.py): the file name does not match
pytest's test_*.py, so `make test` does not collect it, and a file named on the command line is
always collected, so `make soak` cannot pass by collecting nothing."""

from __future__ import annotations

import os
import signal

import reliability_load as load_kit
import test_reliability as quick
import test_workers as workers_kit
from conftest import start_server
from mcp_client import Endpoint


loaded = quick.loaded  # the same one-server-per-module fixture, without rate limits in the way


def test_soak_racing_writers(loaded):
    numbers = quick.race(loaded, "soakrace", seconds=60, seed=11)
    quick.report("soak race", clients=16, seconds=60, **numbers)
    assert numbers["acked"] >= 300 and numbers["conflicts"] >= 100, numbers


def test_soak_kill_9_rounds(tmp_path):
    numbers = quick.crash_rounds(tmp_path / "data", rounds=10, clients=16, seed=17, cli_check=True)
    quick.report("soak crash", **numbers)


def test_soak_backups_during_writes_and_the_restore_serves(loaded, tmp_path):
    for attempt in range(3):
        numbers, site = quick.backup_during_load(loaded, tmp_path, f"soakbackup{attempt}", clients=16)
        quick.report(f"soak backup {attempt}", **numbers)
    # The last restore runs as an instance: same keys and token hashes, so the old tokens work.
    restored = start_server(tmp_path / "soakbackup2-restored")
    try:
        endpoint = Endpoint(f"{restored.url}/w/soakbackup2/mcp", site.tokens[0])
        page = endpoint.ok("read_note", path=quick.RACE_PAGES[0])["structuredContent"]
        endpoint.ok("write_note", path=quick.RACE_PAGES[0], content="after the restore\n", revision=page["revision"])
        quick.still_healthy(restored)
    finally:
        restored.stop()


def test_soak_fuzz(loaded):
    target = quick.fuzz_target(loaded)
    quick.fuzz_http(target, examples=3000, derandomize=False)
    quick.fuzz_rpc(target, examples=3000, derandomize=False)
    quick.fuzz_browser(target, examples=2000, derandomize=False)
    quick.still_healthy(loaded)
    quick.report("soak fuzz", http_examples=3000, garbage_examples=300, rpc_examples=3000, browser_examples=2000)


def test_soak_two_hundred_slow_clients(loaded):
    numbers = quick.slow_clients(loaded, connections=200, seconds=30)
    quick.report("soak slow clients", **numbers)


def test_soak_racing_writers_over_four_workers(tmp_path):
    server = workers_kit.start_workers(tmp_path / "data", env_extra=load_kit.UNLIMITED)
    try:
        numbers = quick.race(server, "soakworkers", seconds=60, seed=23)
        quick.report("soak race over workers", workers=workers_kit.WORKERS, seconds=60, **numbers)
        assert numbers["acked"] >= 300 and numbers["conflicts"] >= 100, numbers
    finally:
        server.stop(timeout=60)


def test_soak_ten_workers_killed_under_write_load(tmp_path):
    server = workers_kit.start_workers(tmp_path / "data", env_extra=load_kit.UNLIMITED)
    site = load_kit.prepare_site(server.data, "soakkill", quick.RACE_PAGES, 16)
    acked, unknown = [], []
    try:
        for round_ in range(10):
            run = load_kit.start_load(server.url, site, seed=31 + round_, server_may_die=True,
                                      creates=tuple(f"Kill/Round {round_} page {i}" for i in range(3)))
            run.wait_for_acks(30)
            victim = min(workers_kit.children(server.process.pid))  # the longest-lived: not a crash loop
            os.kill(victim, signal.SIGKILL)
            workers_kit.wait_for_workers(server, workers_kit.WORKERS, without={victim})
            run.finish()
            assert not run.errors, run.errors[:5]
            acked += run.acked
            unknown += run.unknown
        history = load_kit.verify_history(site, acked, unknown)
        assert load_kit.database_problems(server.data / "robotwtf.db") == []
        quick.report("soak workers killed", rounds=10, acked=history.acknowledged, in_flight=len(unknown),
                     in_flight_landed=history.landed_in_flight)
    finally:
        assert server.stop(timeout=60) == 0
