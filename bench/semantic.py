"""`make bench`, semantic search (issue 12): robotwtf.pyz with an embeddings server on the
search benchmark's 10,000-page wiki. The embeddings server is tests/embeddings_server.py
(WordLlama, 256 dimensions, on loopback), run by this script's interpreter (the dev venv).

1. Catch-up: a server starts on the seeded wiki with nothing indexed, and its background indexer
   cuts every page into chunks and embeds them; chunks/s = chunks / seconds until none is left.
2. Search: a fresh server on the indexed data (nothing in its memory from the indexing); wrk,
   c=1, semantic_search over a fixed set of questions. The embeddings server answers a text it
   has seen from a cache, so a query's embedding is one loopback round trip: that round trip,
   timed on its own, is reported beside the search and subtracted for the target (server time
   without the query's embedding); a first-time WordLlama query embedding is reported too. RSS
   before the first search and after the load: the difference is the in-memory index.

    python bench/semantic.py --python PYTHON --pyz robotwtf.pyz   # this section alone
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path

import run
from run import OUT, ROOT, SLUG, log
from wiki_ux import percentile

sys.path.insert(0, str(ROOT / "tests"))
from embeddings_server import EmbeddingsProcess  # noqa: E402

QUESTIONS = [
    "how do we calibrate the servo", "what limits the motor torque", "why does the odometry drift",
    "which sensor measures distance with a laser", "how is the battery charged safely",
    "what happens when the emergency stop is pressed", "how to tune the control loop",
    "where are the wiring diagrams", "which firmware runs on the microcontroller", "how do we plan a path",
    "what did we decide in the last meeting", "when is the next milestone due", "how to restore from a backup",
    "which parts must be ordered", "how hot does the heatsink get", "how to compute the arm's joint angles",
    "what is the message protocol between nodes", "how do we log telemetry", "how to print a new bracket",
    "what are the safety requirements",
]
TARGETS = """\
semantic_search p50 <= 20 ms on 10k pages (server time, without the query's embedding)
semantic_search p99 <= 60 ms on 10k pages (server time, without the query's embedding)
RSS growth from the semantic index <= 40 MiB""".splitlines()


def work_left(db_path: Path) -> tuple[str | None, int, int]:
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        model = db.execute("SELECT model FROM semantic_state").fetchone()[0]
        left = db.execute("SELECT (SELECT count(*) FROM semantic_pages WHERE state = 'stale') + "
                          "(SELECT count(*) FROM semantic_chunks WHERE vector IS NULL AND failed = 0)").fetchone()[0]
        chunks = db.execute("SELECT count(*) FROM semantic_chunks").fetchone()[0]
    return model, left, chunks


def embedding_ms(port: int, texts: list[str]) -> list[float]:
    """Milliseconds of one-text embedding calls to the embeddings server, one after the other."""
    times = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for text in texts:
        started = time.perf_counter()
        conn.request("POST", "/v1/embeddings", json.dumps({"model": "wordllama", "input": [text]}),
                     {"Content-Type": "application/json"})
        conn.getresponse().read()
        times.append((time.perf_counter() - started) * 1000)
    conn.close()
    return times


def measure(rw: run.Robotwtf, seeded: Path, duration: int, reuse: bool = False) -> dict:
    """The section's numbers; `seeded` is a data folder with the 10,000-page wiki, not indexed.
    With `reuse`, the index built by an earlier run (kept in bench/out/semantic) is searched
    again without a new catch-up."""
    results: dict = {}
    embeddings = EmbeddingsProcess(run.free_port(), OUT / "logs" / "embeddings.log").start()
    env = {"ROBOTWTF_EMBEDDINGS_URL": embeddings.url, "ROBOTWTF_EMBEDDINGS_MODEL": "wordllama"}
    data = OUT / "semantic"
    try:
        if not (reuse and data.exists()):
            catch_up(rw, seeded, data, env, results)
        results["chunks"] = work_left(data / "robotwtf.db")[2]
        token = rw.token(data)

        server = rw.serve(data, name="semantic-search", extra_env=env)
        time.sleep(1)
        results["rss_before"] = run.rss_mib(server.pid)
        url = f"http://127.0.0.1:{server.port}/w/{SLUG}/mcp"
        headers = {"Authorization": f"Bearer {token}", "MCP-Protocol-Version": run.LEGACY}
        status, _, answer = run.post(server.port, f"/w/{SLUG}/mcp",
                                     run.tools_call("semantic_search", {"query": QUESTIONS[0]}, 1), headers)
        first = run.rpc_result(answer).get("result", {})
        if status != 200 or first.get("isError") is not False or not first["structuredContent"]["results"]:
            raise RuntimeError(f"semantic_search check failed: {status} {answer[:300]}")
        results["first_search_rss"] = run.rss_mib(server.pid)
        template = run.write_template("semantic-body", "semantic_search", {"n": 5}, "query")
        values = run.write_values("semantic-queries", QUESTIONS)
        run.wrk(url, 1, 1, template, values, headers)  # warm-up: every question's vector is cached after it
        stats = run.wrk(url, 1, duration, template, values, headers, pid=server.pid)
        results.update(p50=stats["p50_us"] / 1000, p99=stats["p99_us"] / 1000, rps=stats["rps"],
                       cpu_us=stats["cpu_us"], errors=stats["errors_total"], rss_after=run.rss_mib(server.pid))
        cached = embedding_ms(embeddings.port, QUESTIONS * 10)
        fresh = embedding_ms(embeddings.port, [f"{q} (variant {i})" for i, q in enumerate(QUESTIONS * 3)])
        results.update(embed_cached_p50=statistics.median(cached), embed_cached_p99=percentile(cached, 0.99),
                       embed_fresh_p50=statistics.median(fresh))
        results["server_p50"] = results["p50"] - results["embed_cached_p50"]
        results["server_p99"] = results["p99"] - results["embed_cached_p50"]
        log(f"  semantic_search c=1: p50 {results['p50']:.2f} ms, p99 {results['p99']:.2f} ms "
            f"(of which the cached embedding call p50 {results['embed_cached_p50']:.2f} ms), "
            f"RSS {results['rss_before']:.1f} -> {results['rss_after']:.1f} MiB")
        server.stop()
    finally:
        embeddings.stop()
        run.stop_all()
    return results


def catch_up(rw: run.Robotwtf, seeded: Path, data: Path, env: dict, results: dict) -> None:
    """A server on a copy of the seeded wiki, until its background indexer has embedded it all."""
    if data.exists():
        shutil.rmtree(data)
    shutil.copytree(seeded, data)
    log("semantic: catching up on the 10k-page wiki")
    server = rw.serve(data, name="semantic-indexer", extra_env=env)
    started = time.perf_counter()
    while True:
        model, left, chunks = work_left(data / "robotwtf.db")
        if model and not left:
            break
        if time.perf_counter() - started > 3600:
            raise RuntimeError("semantic: the index did not catch up within an hour")
        time.sleep(0.5)
    seconds = time.perf_counter() - started
    results.update(catchup_s=seconds, catchup_rate=chunks / seconds)
    log(f"  {chunks} chunks in {seconds:.0f} s: {chunks / seconds:.0f} chunks/s")
    server.stop()


def report(results: dict) -> str:
    if not results:
        return ""
    r = results
    lines = [
        "",
        "## semantic search (WordLlama, 256 dimensions, on loopback)",
        "",
        "| measure | value |",
        "|---|---|",
        f"| chunks of the 10,000-page wiki | {r['chunks']:,} |",
        "| index catch-up from nothing: seconds; chunks/s | "
        + (f"{r['catchup_s']:.0f}; {r['catchup_rate']:.0f} |" if "catchup_s" in r else "– (--reuse) |"),
        f"| semantic_search c=1, whole request: p50 / p99 ms | {r['p50']:.2f} / {r['p99']:.2f} |",
        f"| of which the query's embedding call (cached, loopback round trip): p50 / p99 ms | "
        f"{r['embed_cached_p50']:.2f} / {r['embed_cached_p99']:.2f} |",
        f"| semantic_search server time without the embedding call: p50 / p99 ms | "
        f"{r['server_p50']:.2f} / {r['server_p99']:.2f} |",
        f"| a query's first embedding by WordLlama (not cached): p50 ms | {r['embed_fresh_p50']:.2f} |",
        f"| semantic_search c=1 req/s; server CPU µs/search | {r['rps']:.0f}; {r['cpu_us']:.0f} |",
        f"| RSS before the first search / after it / after the load MiB | {r['rss_before']:.1f} / "
        f"{r['first_search_rss']:.1f} / {r['rss_after']:.1f} |",
        f"| failed answers | {r['errors']} |",
        "",
        "### semantic search targets",
        "",
    ]
    growth = r["rss_after"] - r["rss_before"]
    checks = [(r["server_p50"] <= 20, f"{r['server_p50']:.2f} ms"), (r["server_p99"] <= 60, f"{r['server_p99']:.2f} ms"),
              (growth <= 40, f"{growth:.1f} MiB")]
    lines += [f"- {'PASS' if ok else 'MISS'} {target}: {value}" for target, (ok, value) in zip(TARGETS, checks)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default="python3", help="interpreter that runs the pyz")
    parser.add_argument("--pyz", default=str(ROOT / "robotwtf.pyz"))
    parser.add_argument("--duration", type=int, default=5, help="seconds of the search load (1-10)")
    parser.add_argument("--pages", type=int, default=run.SEARCH_PAGES)
    parser.add_argument("--reuse", action="store_true", help="search the index an earlier run left, no catch-up")
    args = parser.parse_args()
    (OUT / "logs").mkdir(parents=True, exist_ok=True)
    python = run.subprocess.run([args.python, "-c", "import sys; print(sys.executable)"], capture_output=True,
                                text=True, check=True).stdout.strip()
    rw = run.Robotwtf(python, Path(args.pyz).resolve(), OUT / "shiv")
    seeded = OUT / "data-semantic"
    if not (args.reuse and (OUT / "semantic").exists()):
        rw.make_data(seeded, args.pages)
    try:
        text = report(measure(rw, seeded, args.duration, args.reuse))
    finally:
        run.stop_all()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
