"""`make bench`: robotwtf (the built pyz) against the official MCP SDK's server and a bare
bottle+waitress ceiling, in one run, on this machine, over loopback.

    python bench/run.py --python PYTHON --pyz robotwtf.pyz [--repeats 3] [--duration 5]

PYTHON runs the pyz (the interpreter `make run` uses); this script's own interpreter (the dev venv:
mcp, uvicorn, bottle, waitress) runs the peer and the ceiling. Load comes from `wrk` with
bench/tools_call.lua. Scratch files go to bench/out/; the report goes to stdout and
bench/results.md. Every load run is bounded (--duration, at most 10 s) and every run is repeated
--repeats times; the table shows the median and the range.

What is compared (same machine, same data, same request shape):
- robotwtf: `robotwtf.pyz serve --workers 1` and `--workers 2` on a data folder seeded through
  robotwtf's storage API, a personal access token minted with `robotwtf token create`; every
  request is a real tools/call through the normal path (edge middleware, bearer validation with
  grant/role lookup, rate limiter, MCP handling, the read_note tool with its link queries, JSON
  encoding, access log). Server CPU is the supervisor's and its workers' together.
- peer: bench/peer_fastmcp.py, MCPServer + uvicorn with default settings (stateful session, SSE
  answers), then json_response=True, then stateless_http=True with json_response=True (the SDK's
  fastest configuration, what the reference platform ran); one tool reading the same row; no auth.
- ceiling: bench/ceiling.py, bottle + waitress (robotwtf's thread count) answering the same
  tools/call body from the same row with nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
LUA = BENCH / "tools_call.lua"
SLUG, USER, DID = "bench", "alice", "did:plc:benchbenchbenchbenchbenc"
LEGACY = "2025-11-25"
THROUGHPUT_PAGES, SEARCH_PAGES = 1_000, 10_000
ROBOTWTF_THREADS = 8  # robotwtf's default --threads; the ceiling gets the same
WORKER_COUNTS = (1, 2)  # robotwtf --workers rows

sys.path.insert(0, str(BENCH))
import corpus  # noqa: E402
import wiki_ux  # noqa: E402
import git_access  # noqa: E402
import postgres  # noqa: E402  (the PostgreSQL rows)

TARGETS = """\
one worker: tools/call read_note c=16 >= 1.5x the peer's fastest configuration (stateless, JSON)
one worker: tools/call read_note c=16 >= 60 % of the bare ceiling
one worker: tools/call read_note c=1 p50 <= 0.5 ms
--workers 2: tools/call read_note c=16 >= 3x the peer's default mode
--workers 2: tools/call read_note c=16 >= 1.5x robotwtf --workers 1
search_notes p50 <= 10 ms on 10k pages
search_notes p99 <= 50 ms on 10k pages
write_note >= 500 acknowledged writes/s (c=4)
ready (first /healthz) <= 150 ms warm
ready (first /healthz) <= 600 ms first run (empty SHIV_ROOT)
RSS <= 40 MiB idle
RSS <= 60 MiB after load
pyz <= 12 MB""".splitlines()


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def server_env() -> dict:
    """The environment every server runs in: this one, minus PYTHONDONTWRITEBYTECODE (a CI or
    container habit; Python's default is to cache bytecode, and a warm start relies on it)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """user + system CPU time the process and its children (robotwtf's workers) have used so far
    (/proc/<pid>/stat utime, stime)."""
    total = 0
    for each in (pid, *children(pid)):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


# --- processes ---------------------------------------------------------------------------------

@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    port: int
    ready_ms: float = 0.0
    ready_cpu_ms: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


RUNNING: list[Proc] = []


def start(name: str, cmd: list[str], port: int, env: dict, ready_path: str, method: str = "GET",
          body: bytes | None = None, timeout: float = 60) -> Proc:
    """Start a server and poll `ready_path` until it answers 2xx (any answer for POST probes);
    ready_ms is the time from spawning to that first answer."""
    logfile = open(OUT / "logs" / f"{name}-{port}.log", "wb")
    started = time.perf_counter()
    popen = subprocess.Popen(cmd, env=env, stdout=logfile, stderr=subprocess.STDOUT, cwd=OUT)
    proc = Proc(name, popen, port)
    RUNNING.append(proc)
    deadline = started + timeout
    while True:
        if popen.poll() is not None:
            raise RuntimeError(f"{name} exited with {popen.returncode}; see {logfile.name}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request(method, ready_path, body=body, headers={"Content-Type": "application/json"})
            status = conn.getresponse().status
            conn.close()
            if status < 500:
                proc.ready_ms = (time.perf_counter() - started) * 1000
                proc.ready_cpu_ms = cpu_seconds(popen.pid) * 1000
                return proc
        except OSError:
            pass
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{name} not ready after {timeout}s; see {logfile.name}")
        time.sleep(0.002)


def stop_all() -> None:
    while RUNNING:
        RUNNING.pop().stop()


# --- robotwtf ----------------------------------------------------------------------------------

class Robotwtf:
    """The pyz, run with the interpreter `make run` uses; each data folder gets its own settings."""

    def __init__(self, python: str, pyz: Path, shiv_root: Path):
        self.python, self.pyz, self.shiv_root = python, pyz, shiv_root

    def env(self, data: Path, shiv_root: Path | None = None, extra: dict | None = None) -> dict:
        env = {k: v for k, v in server_env().items() if not k.startswith(("ROBOTWTF_", "SHIV_"))}
        env.update(extra or {})
        env.update(SHIV_ROOT=str(shiv_root or self.shiv_root), ROBOTWTF_DATA=str(data),
                   # Seeded pages plus the write run's new ones; the limiter still runs on every
                   # request, with a budget no benchmark reaches.
                   ROBOTWTF_MAX_PAGES_PER_WIKI="1000000", ROBOTWTF_MCP_PER_MINUTE="100000000",
                   ROBOTWTF_WRITES_PER_MINUTE="100000000")
        return env

    def cli(self, data: Path, *args: str) -> str:
        result = subprocess.run([self.python, str(self.pyz), *args], env=self.env(data), capture_output=True,
                                text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"robotwtf {' '.join(args)} failed: {result.stderr}")
        return result.stdout.strip()

    def make_data(self, data: Path, n_pages: int) -> None:
        """A data folder with one wiki of n_pages corpus pages, written by the pyz's own storage API."""
        if data.exists():
            shutil.rmtree(data)
        self.cli(data, "init")
        self.cli(data, "user", "add", DID, "--username", USER)
        self.cli(data, "wiki", "create", SLUG, "--owner", USER, "--title", "Benchmark")
        env = dict(self.env(data), SHIV_INTERPRETER="1")
        subprocess.run([self.python, str(self.pyz), str(BENCH / "seed.py"), str(data), SLUG, DID, str(n_pages)],
                       env=env, check=True, timeout=900)

    def token(self, data: Path) -> str:
        return self.cli(data, "token", "create", SLUG, "--user", USER, "--scope", "wiki:read wiki:write",
                        "--name", "bench")

    def serve(self, data: Path, shiv_root: Path | None = None, name: str = "robotwtf",
              extra_env: dict | None = None, workers: int = 1) -> Proc:
        port = free_port()
        cmd = [self.python, str(self.pyz), "--host", "127.0.0.1", "--port", str(port),
               "--public-url", f"http://127.0.0.1:{port}", "--threads", str(ROBOTWTF_THREADS),
               "--workers", str(workers), "serve"]
        return start(name, cmd, port, self.env(data, shiv_root, extra_env), "/healthz")


def wiki_id(db_path: Path) -> int:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        return db.execute("SELECT id FROM wikis WHERE slug = ?", (SLUG,)).fetchone()[0]


# --- requests ----------------------------------------------------------------------------------

def tools_call(name: str, arguments: dict, rpc_id="@ID@") -> dict:
    return {"jsonrpc": "2.0", "id": rpc_id, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


def write_template(name: str, tool: str, arguments: dict, value_key: str) -> Path:
    """The JSON body with "@ID@" and "@VALUE@" left for the Lua script to fill in (already escaped)."""
    body = json.dumps(tools_call(tool, {**arguments, value_key: "@VALUE@"}))
    body = body.replace('"@ID@"', "@ID@")
    path = OUT / f"{name}.json"
    path.write_text(body)
    return path


def write_values(name: str, values: list[str]) -> Path:
    path = OUT / f"{name}.txt"
    path.write_text("".join(json.dumps(v)[1:-1] + "\n" for v in values))
    return path


def post(port: int, path: str, body: dict, headers: dict) -> tuple[int, dict, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json",
                                                 "Accept": "application/json, text/event-stream", **headers})
    response = conn.getresponse()
    text = response.read().decode()
    conn.close()
    return response.status, dict(response.getheaders()), text


def rpc_result(text: str) -> dict:
    """The JSON-RPC message of a JSON or an SSE-framed answer."""
    if text.lstrip().startswith("{"):
        return json.loads(text)
    data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    return json.loads(data[-1])


def check_read(port: int, path: str, headers: dict, expected_content: str) -> None:
    """One read_note by hand before the load: the answer must carry the page's real content."""
    status, _, text = post(port, path, tools_call("read_note", {"path": corpus.page_path(7)}, 1), headers)
    result = rpc_result(text).get("result", {})
    body = result.get("content", [{}])[0].get("text", "")
    if status != 200 or result.get("isError") is not False or expected_content not in body:
        raise RuntimeError(f"read_note check failed on port {port}: {status} {text[:300]}")


def peer_session(port: int) -> dict:
    """initialize + notifications/initialized, as an SDK client would; the headers to send after."""
    status, headers, text = post(port, "/mcp", {
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "wrk", "version": "1"}}}, {})
    lower = {k.lower(): v for k, v in headers.items()}
    version = rpc_result(text)["result"]["protocolVersion"]
    session = {"MCP-Protocol-Version": version}
    if "mcp-session-id" in lower:
        session["Mcp-Session-Id"] = lower["mcp-session-id"]
    status, _, _ = post(port, "/mcp", {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    if status != 202:
        raise RuntimeError(f"peer refused notifications/initialized: {status}")
    return session


# --- wrk ---------------------------------------------------------------------------------------

def wrk(url: str, connections: int, seconds: float, template: Path, values: Path | str, headers: dict,
        acks: Path | None = None, pid: int | None = None) -> dict:
    """One bounded wrk run; with the server's pid, also the server's CPU time per request."""
    args = [str(template), str(values)] + ([str(acks)] if acks else []) + [f"{k}: {v}" for k, v in headers.items()]
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(LUA), url, "--", *args]
    cpu_before = cpu_seconds(pid) if pid else 0.0
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, cwd=OUT)
    cpu = cpu_seconds(pid) - cpu_before if pid else 0.0
    line = next((line for line in result.stdout.splitlines() if line.startswith("WRKJSON ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed: {result.stdout}\n{result.stderr}")
    stats = json.loads(line[len("WRKJSON "):])
    stats["rps"] = stats["ok"] / (stats["duration_us"] / 1e6)
    stats["errors_total"] = sum(stats["errors"].values()) + stats["bad"]
    stats["cpu_us"] = cpu * 1e6 / stats["requests"] if stats["requests"] else 0.0
    return stats


# --- one repeat --------------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.rw = Robotwtf(args.python, Path(args.pyz).resolve(), OUT / "shiv")
        self.samples: dict[str, list[float]] = {}
        self.notes: list[str] = []

    def record(self, key: str, value: float) -> None:
        self.samples.setdefault(key, []).append(value)

    def record_load(self, key: str, stats: dict) -> None:
        self.record(f"{key}.rps", stats["rps"])
        self.record(f"{key}.p50", stats["p50_us"] / 1000)
        self.record(f"{key}.p99", stats["p99_us"] / 1000)
        self.record(f"{key}.errors", stats["errors_total"])
        self.record(f"{key}.cpu_us", stats["cpu_us"])
        if stats["errors_total"]:
            self.notes.append(f"{key}: {stats['errors_total']} failed answers (first: {stats['first_bad']})")
        log(f"  {key}: {stats['rps']:.0f} ok/s, p50 {stats['p50_us'] / 1000:.2f} ms, "
            f"p99 {stats['p99_us'] / 1000:.2f} ms, server CPU {stats['cpu_us']:.0f} µs/request, "
            f"failed {stats['errors_total']}")

    def prepare(self) -> None:
        (OUT / "logs").mkdir(parents=True, exist_ok=True)
        self.record("pyz.mb", Path(self.args.pyz).stat().st_size / 1e6)
        for name, n in (("data-1k", THROUGHPUT_PAGES), ("data-10k", self.args.search_pages)):
            started = time.perf_counter()
            self.rw.make_data(OUT / name, n)
            log(f"seeded {OUT / name} with {n} pages in {time.perf_counter() - started:.1f}s")
        self.wiki_id = wiki_id(OUT / "data-1k" / "robotwtf.db")
        self.read_values = write_values("read-paths", [corpus.page_path(i) for i in range(THROUGHPUT_PAGES)])
        self.read_template = write_template("read-body", "read_note", {}, "path")
        self.search_values = write_values("search-queries", corpus.SEARCH_QUERIES)
        self.search_template = write_template("search-body", "search_notes", {}, "query")
        self.write_template = write_template("write-body", "write_note", {
            "content": corpus.page_text(THROUGHPUT_PAGES + 1, THROUGHPUT_PAGES), "commit_message": "bench write"},
            "path")
        self.page7 = corpus.page_text(7, THROUGHPUT_PAGES)[200:600]
        self.postgres = postgres.PostgresRows(self, sys.modules[__name__])
        self.postgres.prepare()

    def fresh_copy(self, template: str, name: str) -> Path:
        dest = OUT / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(OUT / template, dest)
        return dest

    def repeat(self, r: int) -> None:
        d = self.args.duration
        for workers in WORKER_COUNTS:
            self.robotwtf_run(r, workers)
        db = str(OUT / "data-1k" / "robotwtf.db")
        for mode, flag in (("peer-default", []), ("peer-json", ["--json-response"]),
                           ("peer-fastest", ["--json-response", "--stateless"])):
            log(f"repeat {r}: {mode}")
            port = free_port()
            ping = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "ping"}).encode()
            peer = start(mode, [sys.executable, str(BENCH / "peer_fastmcp.py"), db, str(self.wiki_id), str(port), *flag],
                         port, server_env(), "/mcp", "POST", ping)
            headers = peer_session(port)
            check_read(port, "/mcp", headers, self.page7)
            self.read_loads(mode, f"http://127.0.0.1:{port}/mcp", headers, peer.pid)
            peer.stop()

        log(f"repeat {r}: ceiling")
        port = free_port()
        probe = json.dumps(tools_call("read_note", {"path": corpus.page_path(0)}, 0)).encode()
        ceiling = start("ceiling", [sys.executable, str(BENCH / "ceiling.py"), db, str(self.wiki_id), str(port),
                                    str(ROBOTWTF_THREADS)], port, server_env(), "/mcp", "POST", probe)
        check_read(port, "/mcp", {}, self.page7)
        self.read_loads("ceiling", f"http://127.0.0.1:{port}/mcp", {}, ceiling.pid)
        ceiling.stop()

        log(f"repeat {r}: robotwtf search on {self.args.search_pages} pages")
        data = self.fresh_copy("data-10k", f"search-{r}")
        token = self.rw.token(data)
        server = self.rw.serve(data)
        url = f"http://127.0.0.1:{server.port}/w/{SLUG}/mcp"
        headers = {"Authorization": f"Bearer {token}", "MCP-Protocol-Version": LEGACY}
        wrk(url, 1, 1, self.search_template, self.search_values, headers)  # warm-up, not counted
        self.record_load("search.c1", wrk(url, 1, d, self.search_template, self.search_values, headers, pid=server.pid))
        self.record("rss.after_search", rss_mib(server.pid))
        server.stop()
        shutil.rmtree(data)
        self.postgres.repeat(r)

    def robotwtf_run(self, r: int, workers: int) -> None:
        """Reads at c=16 and c=1, then new pages written at c=4, on a fresh copy of the 1k wiki;
        with one worker also the start-up time and memory."""
        d = self.args.duration
        key = "robotwtf" if workers == 1 else f"robotwtf-w{workers}"
        write = "write" if workers == 1 else f"write-w{workers}"
        log(f"repeat {r}: robotwtf --workers {workers}")
        data = self.fresh_copy("data-1k", f"run-{r}-w{workers}")
        token = self.rw.token(data)
        if workers == 1:
            self.startup(r, data)
        server = self.rw.serve(data, workers=workers)
        if workers == 1:
            self.record("ready.warm", server.ready_ms)
            self.record("ready.warm_cpu", server.ready_cpu_ms)
            time.sleep(1)
            self.record("rss.idle", rss_mib(server.pid))
        url = f"http://127.0.0.1:{server.port}/w/{SLUG}/mcp"
        headers = {"Authorization": f"Bearer {token}", "MCP-Protocol-Version": LEGACY}
        check_read(server.port, f"/w/{SLUG}/mcp", headers, self.page7)
        self.read_loads(key, url, headers, server.pid)
        acks = OUT / f"acks-{r}-w{workers}"
        for old in OUT.glob(f"{acks.name}.*"):
            old.unlink()
        stats = wrk(url, 4, d, self.write_template, "-", headers, acks, server.pid)
        self.record(f"{write}.rps", stats["rps"])
        self.record(f"{write}.refused", stats["errors_total"])
        self.record(f"{write}.cpu_us", stats["cpu_us"])
        log(f"  write c=4: {stats['rps']:.0f} acknowledged/s, server CPU {stats['cpu_us']:.0f} µs/write, "
            f"{stats['errors_total']} not acknowledged")
        if workers == 1:
            self.record("rss.after", rss_mib(server.pid))
        server.stop()
        self.verify_writes(data, acks, stats["ok"], write)
        shutil.rmtree(data)

    def startup(self, r: int, data: Path) -> None:
        """Time to the first /healthz answer: first run of the pyz (an empty SHIV_ROOT, so shiv
        unpacks it first) and, for information, a warm start without a bytecode cache."""
        cold_root = OUT / f"shiv-cold-{r}"
        shutil.rmtree(cold_root, ignore_errors=True)
        for key, root, env in (("ready.cold", cold_root, None),
                               ("ready.nopyc", None, {"PYTHONDONTWRITEBYTECODE": "1"})):
            proc = self.rw.serve(data, root, key, env)
            self.record(key, proc.ready_ms)
            self.record(key + "_cpu", proc.ready_cpu_ms)
            proc.stop()
            RUNNING.remove(proc)
        shutil.rmtree(cold_root, ignore_errors=True)

    def read_loads(self, key: str, url: str, headers: dict, pid: int) -> None:
        values, template = self.read_values, self.read_template
        wrk(url, 16, 1, template, values, headers)  # warm-up, not counted
        self.record_load(f"{key}.c16", wrk(url, 16, self.args.duration, template, values, headers, pid=pid))
        self.record_load(f"{key}.c1", wrk(url, 1, self.args.duration, template, values, headers, pid=pid))

    def verify_writes(self, data: Path, acks: Path, acknowledged: int, key: str) -> None:
        """Every acknowledged write_note must be in the database, as the revision it answered."""
        lines = [line for f in sorted(OUT.glob(acks.name + ".*")) for line in f.read_text().splitlines()]
        with contextlib.closing(sqlite3.connect(data / "robotwtf.db")) as db:
            if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                raise RuntimeError("integrity_check failed after the write run")
            live = dict(db.execute("SELECT path, revision_id FROM pages WHERE wiki_id = ? AND deleted_at IS NULL "
                                   "AND path LIKE 'Bench/Writes/%'", (self.wiki_id,)).fetchall())
        missing = [line for line in lines if live.get(line.split("\t")[0]) != line.split("\t")[1]]
        if len(lines) != acknowledged or missing:
            raise RuntimeError(f"write check failed: {acknowledged} acknowledged, {len(lines)} recorded, "
                               f"{len(missing)} not in the database (first: {missing[:3]})")
        self.record(f"{key}.verified", len(lines))
        log(f"  verified: all {len(lines)} acknowledged writes are in the database with their revision")


# --- report ------------------------------------------------------------------------------------

def summary(values: list[float], fmt: str) -> str:
    if not values:
        return "–"
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def report(b: Bench, machine: dict) -> str:
    s = b.samples

    def pairwise(a: str, c: str) -> list[float]:
        return [x / y for x, y in zip(s.get(a, []), s.get(c, [])) if y]

    s["ratio.peer"] = pairwise("robotwtf.c16.rps", "peer-default.c16.rps")
    s["ratio.fastest"] = pairwise("robotwtf.c16.rps", "peer-fastest.c16.rps")
    s["ratio.ceiling"] = pairwise("robotwtf.c16.rps", "ceiling.c16.rps")
    s["ratio.peer.c1"] = pairwise("robotwtf.c1.rps", "peer-default.c1.rps")
    s["ratio.fastest.c1"] = pairwise("robotwtf.c1.rps", "peer-fastest.c1.rps")
    s["ratio.ceiling.c1"] = pairwise("robotwtf.c1.rps", "ceiling.c1.rps")
    s["ratio.w2.peer"] = pairwise("robotwtf-w2.c16.rps", "peer-default.c16.rps")
    s["ratio.w2.w1"] = pairwise("robotwtf-w2.c16.rps", "robotwtf.c16.rps")
    s["ratio.w2.peer.c1"] = pairwise("robotwtf-w2.c1.rps", "peer-default.c1.rps")
    s["ratio.w2.w1.c1"] = pairwise("robotwtf-w2.c1.rps", "robotwtf.c1.rps")
    lines = [
        "# robotwtf benchmark",
        "",
        f"{machine['date']} · {machine['cpu']} × {machine['cpus']} · {machine['os']} · Python {machine['python']} "
        f"(pyz) · wrk {machine['wrk']} · load average before {machine['load_before']}, after {machine['load_after']}",
        f"{b.args.repeats} repeats of {b.args.duration} s per load run; each cell is the median (min–max). "
        "Loopback only; wrk with one thread. read_note cycles through the 1,000 seeded pages (~5 KB each). "
        "Server CPU µs per request (user+system time of the server process over the run / requests) "
        "is the number least disturbed by other load on a shared machine.",
        "",
        "## tools/call read_note",
        "",
        "| server | c=16 req/s | c=16 p50 ms | c=16 p99 ms | c=1 req/s | c=1 p50 ms | c=1 p99 ms | "
        "server CPU µs/req (c=16) | failed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    names = {"robotwtf": f"robotwtf --workers 1 (pyz, {ROBOTWTF_THREADS} threads, bearer PAT, 2025-11-25, stateless)",
             "robotwtf-w2": f"robotwtf --workers 2 ({ROBOTWTF_THREADS} threads each)",
             "peer-default": "MCP SDK MCPServer + uvicorn, defaults (session, SSE)",
             "peer-json": "MCP SDK MCPServer + uvicorn, json_response=True (session)",
             "peer-fastest": "MCP SDK MCPServer + uvicorn, stateless_http=True, json_response=True",
             "ceiling": "bare bottle + waitress JSON-RPC, no auth, one process"}
    for key, label in names.items():
        errors = sum(s.get(f"{key}.c16.errors", [])) + sum(s.get(f"{key}.c1.errors", []))
        lines.append(f"| {label} | {summary(s.get(f'{key}.c16.rps', []), '.0f')} | "
                     f"{summary(s.get(f'{key}.c16.p50', []), '.2f')} | {summary(s.get(f'{key}.c16.p99', []), '.2f')} | "
                     f"{summary(s.get(f'{key}.c1.rps', []), '.0f')} | {summary(s.get(f'{key}.c1.p50', []), '.2f')} | "
                     f"{summary(s.get(f'{key}.c1.p99', []), '.2f')} | {summary(s.get(f'{key}.c16.cpu_us', []), '.0f')} | "
                     f"{errors:.0f} |")
    lines += [
        "",
        "| ratio (req/s, per repeat) | c=16 | c=1 |",
        "|---|---|---|",
        f"| robotwtf / peer (default) | {summary(s['ratio.peer'], '.2f')}× | {summary(s['ratio.peer.c1'], '.2f')}× |",
        f"| robotwtf / peer (fastest) | {summary(s['ratio.fastest'], '.2f')}× | "
        f"{summary(s['ratio.fastest.c1'], '.2f')}× |",
        f"| robotwtf / ceiling | {summary([100 * x for x in s['ratio.ceiling']], '.0f')} % | "
        f"{summary([100 * x for x in s['ratio.ceiling.c1']], '.0f')} % |",
        f"| robotwtf --workers 2 / peer (default) | {summary(s['ratio.w2.peer'], '.2f')}× | "
        f"{summary(s['ratio.w2.peer.c1'], '.2f')}× |",
        f"| robotwtf --workers 2 / robotwtf --workers 1 | {summary(s['ratio.w2.w1'], '.2f')}× | "
        f"{summary(s['ratio.w2.w1.c1'], '.2f')}× |",
        "",
        "## robotwtf alone",
        "",
        "| measure | value |",
        "|---|---|",
        f"| search_notes on {b.args.search_pages:,} pages (~5 KB), c=1: p50 / p99 ms | "
        f"{summary(s.get('search.c1.p50', []), '.2f')} / {summary(s.get('search.c1.p99', []), '.2f')} |",
        f"| search_notes c=1 req/s; server CPU µs/search | {summary(s.get('search.c1.rps', []), '.0f')}; "
        f"{summary(s.get('search.c1.cpu_us', []), '.0f')} |",
        f"| write_note c=4, acknowledged writes/s (new ~5 KB pages), --workers 1 / 2 | "
        f"{summary(s.get('write.rps', []), '.0f')} / {summary(s.get('write-w2.rps', []), '.0f')} |",
        f"| write_note server CPU µs/write, --workers 1 / 2 | {summary(s.get('write.cpu_us', []), '.0f')} / "
        f"{summary(s.get('write-w2.cpu_us', []), '.0f')} |",
        f"| write_note answers that were not acknowledgements, --workers 1 / 2 | "
        f"{summary(s.get('write.refused', []), '.0f')} / {summary(s.get('write-w2.refused', []), '.0f')} |",
        f"| acknowledged writes found in the database afterwards, --workers 1 / 2 | "
        f"{summary(s.get('write.verified', []), '.0f')} / {summary(s.get('write-w2.verified', []), '.0f')} "
        "(all, every repeat) |",
        f"| ready: first /healthz answer, first run (empty SHIV_ROOT) ms | {summary(s.get('ready.cold', []), '.0f')} |",
        f"| ready: first /healthz answer, warm ms | {summary(s.get('ready.warm', []), '.0f')} |",
        f"| ready: CPU ms used until then, first run / warm | {summary(s.get('ready.cold_cpu', []), '.0f')} / "
        f"{summary(s.get('ready.warm_cpu', []), '.0f')} |",
        f"| ready: warm but PYTHONDONTWRITEBYTECODE=1 (no bytecode cache), ms (info) | "
        f"{summary(s.get('ready.nopyc', []), '.0f')} |",
        f"| RSS idle (after ready) MiB | {summary(s.get('rss.idle', []), '.1f')} |",
        f"| RSS after the read and write load MiB | {summary(s.get('rss.after', []), '.1f')} |",
        f"| RSS after search load (10k-page wiki) MiB | {summary(s.get('rss.after_search', []), '.1f')} |",
        f"| robotwtf.pyz size MB | {summary(s.get('pyz.mb', []), '.2f')} |",
        *wiki_ux.report_lines(s, summary),
        *git_access.report_lines(s, summary),
        "",
        "## targets",
        "",
    ]
    med = {k: statistics.median(v) for k, v in s.items() if v}
    checks = [
        med.get("ratio.fastest", 0) >= 1.5,
        med.get("ratio.ceiling", 0) >= 0.60,
        med.get("robotwtf.c1.p50", 1e9) <= 0.5,
        med.get("ratio.w2.peer", 0) >= 3,
        med.get("ratio.w2.w1", 0) >= 1.5,
        med.get("search.c1.p50", 1e9) <= 10,
        med.get("search.c1.p99", 1e9) <= 50,
        med.get("write.rps", 0) >= 500,
        med.get("ready.warm", 1e9) <= 150,
        med.get("ready.cold", 1e9) <= 600,
        med.get("rss.idle", 1e9) <= 40,
        max(med.get("rss.after", 1e9), med.get("rss.after_search", 1e9)) <= 60,
        med.get("pyz.mb", 1e9) <= 12,
    ]
    shown = [f"{med.get('ratio.fastest', 0):.2f}×", f"{100 * med.get('ratio.ceiling', 0):.0f} %",
             f"{med.get('robotwtf.c1.p50', 0):.2f} ms", f"{med.get('ratio.w2.peer', 0):.2f}×",
             f"{med.get('ratio.w2.w1', 0):.2f}×", f"{med.get('search.c1.p50', 0):.2f} ms",
             f"{med.get('search.c1.p99', 0):.2f} ms", f"{med.get('write.rps', 0):.0f}/s",
             f"{med.get('ready.warm', 0):.0f} ms", f"{med.get('ready.cold', 0):.0f} ms",
             f"{med.get('rss.idle', 0):.1f} MiB",
             f"{max(med.get('rss.after', 0), med.get('rss.after_search', 0)):.1f} MiB",
             f"{med.get('pyz.mb', 0):.2f} MB"]
    postgres_lines, postgres_targets = postgres.report_lines(b, summary)
    lines[lines.index("## targets") - 1:lines.index("## targets") - 1] = postgres_lines
    for target, ok, value in [*zip(TARGETS, checks, shown), *wiki_ux.targets(s), *git_access.targets(s)]:
        lines.append(f"- {'PASS' if ok else 'MISS'} {target}: {value}")
    lines += postgres_targets
    if b.notes:
        lines += ["", "## failed answers", ""] + [f"- {n}" for n in b.notes]
    return "\n".join(lines) + "\n"


def machine_info(python: str) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[1]
    py = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                        capture_output=True, text=True).stdout.strip()
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu, "cpus": os.cpu_count(), "python": py,
            "os": f"{platform.system()} {platform.release()}", "wrk": wrk_version,
            "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default="python3", help="interpreter that runs the pyz")
    parser.add_argument("--pyz", default=str(ROOT / "robotwtf.pyz"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per load run (1-10)")
    parser.add_argument("--search-pages", type=int, default=SEARCH_PAGES, help="pages in the search wiki")
    args = parser.parse_args()
    if not 1 <= args.duration <= 10:
        parser.error("--duration must be 1 to 10 seconds")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install -y wrk)")
    OUT.mkdir(exist_ok=True)
    # The interpreter itself, not a launcher in front of it (a pyenv shim adds ~50 ms to every start).
    args.python = subprocess.run([args.python, "-c", "import sys; print(sys.executable)"], capture_output=True,
                                 text=True, check=True).stdout.strip()
    machine = machine_info(args.python)
    bench = Bench(args)
    started = time.perf_counter()
    # bench/semantic.py imports `run`: it must get this module, not a second copy (with its own list
    # of running servers, which its stop_all() would then find empty).
    sys.modules.setdefault("run", sys.modules[__name__])
    import semantic  # bench/semantic.py: semantic search on the search wiki (issue 12)
    try:
        bench.prepare()
        for r in range(1, args.repeats + 1):
            bench.repeat(r)
        wiki_ux.measure(bench, OUT, SLUG, log)
        git_access.measure(bench, OUT, SLUG, DID, log)
        semantic_results = semantic.measure(bench.rw, OUT / "data-10k", args.duration)
    finally:
        stop_all()
        if getattr(bench, "postgres", None):
            bench.postgres.stop()
    machine["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = report(bench, machine) + semantic.report(semantic_results)
    (BENCH / "results.md").write_text(text)
    print(text)
    log(f"done in {time.perf_counter() - started:.0f}s; written to {BENCH / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
