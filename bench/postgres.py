"""`make bench`'s PostgreSQL rows: robotwtf (the same pyz, the same data, the same requests) on a
local PostgreSQL cluster instead of SQLite, with the same threads.

The cluster is tools/pg_cluster.py's (initdb in a temporary folder, loopback only) with
PostgreSQL's default durability (every commit flushed; SQLite runs with synchronous=NORMAL). The
seeded SQLite instances are moved there with `robotwtf migrate-to`, so their pages, tokens and keys
are the ones the SQLite rows use. Without PostgreSQL installed the bench says so and fails.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tools"))
import pg_cluster  # noqa: E402

TARGETS = ("robotwtf on PostgreSQL, read_note c=16 >= 50 % of robotwtf on SQLite (same threads)",
           "search_notes p50 <= 10 ms on 10k pages (PostgreSQL)")


class PostgresRows:
    def __init__(self, bench, run):
        """`bench` is run.py's Bench; `run` is the run module (its helpers)."""
        self.bench, self.run = bench, run
        self.cluster = pg_cluster.Cluster(durable=True)
        self.cluster.start()
        self.databases: dict[str, str] = {}

    def prepare(self) -> None:
        """Each seeded SQLite instance moved into a database of its own (made from template0)."""
        for name in ("data-1k", "data-10k"):
            self.databases[name] = self._create(name.replace("-", "_"))
            self._cli(self.run.OUT / name, None, "migrate-to", self.databases[name])
            self.run.log(f"migrated {name} to PostgreSQL")

    def _create(self, name: str) -> str:
        import psycopg
        with psycopg.connect(self.cluster.url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            admin.execute(f'CREATE DATABASE "{name}"')
        return pg_cluster.database_url(self.cluster.url, name)

    def _cli(self, data: Path, database: str | None, *args: str) -> str:
        rw = self.bench.rw
        env = rw.env(data, extra={"ROBOTWTF_DATABASE_URL": database} if database else None)
        result = subprocess.run([rw.python, str(rw.pyz), *args], env=env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise RuntimeError(f"robotwtf {args[0]} failed: {result.stderr}")
        return result.stdout.strip()

    def repeat(self, r: int) -> None:
        run, d = self.run, self.bench.args.duration
        for key, name, loads in (("pg", "data-1k", self._reads), ("pg-search", "data-10k", self._search)):
            run.log(f"repeat {r}: robotwtf on PostgreSQL ({name})")
            database = self.databases[name]
            data = run.OUT / name
            token = self._cli(data, database, "token", "create", run.SLUG, "--user", run.USER, "--scope",
                              "wiki:read wiki:write", "--name", f"bench-pg-{r}")
            server = self.bench.rw.serve(data, name=f"robotwtf-{key}",
                                         extra_env={"ROBOTWTF_DATABASE_URL": database})
            url = f"http://127.0.0.1:{server.port}/w/{run.SLUG}/mcp"
            headers = {"Authorization": f"Bearer {token}", "MCP-Protocol-Version": run.LEGACY}
            loads(key, server, url, headers, d)
            server.stop()
            run.RUNNING.remove(server)

    def _reads(self, key: str, server, url: str, headers: dict, d: int) -> None:
        self.run.check_read(server.port, f"/w/{self.run.SLUG}/mcp", headers, self.bench.page7)
        self.bench.read_loads(key, url, headers, server.pid)

    def _search(self, key: str, server, url: str, headers: dict, d: int) -> None:
        run, b = self.run, self.bench
        run.wrk(url, 1, 1, b.search_template, b.search_values, headers)  # warm-up, not counted
        b.record_load(f"{key}.c1", run.wrk(url, 1, d, b.search_template, b.search_values, headers, pid=server.pid))

    def stop(self) -> None:
        self.cluster.stop()


def report_lines(b, summary) -> tuple[list[str], list[str]]:
    """The PostgreSQL section of the report, and its PASS/MISS lines."""
    s = b.samples
    s["ratio.pg"] = [x / y for x, y in zip(s.get("pg.c16.rps", []), s.get("robotwtf.c16.rps", [])) if y]
    lines = [
        "",
        "## robotwtf on PostgreSQL (the same pyz, data and threads; a local cluster, default durability)",
        "",
        "| measure | SQLite | PostgreSQL |",
        "|---|---|---|",
        f"| read_note c=16 req/s | {summary(s.get('robotwtf.c16.rps', []), '.0f')} | "
        f"{summary(s.get('pg.c16.rps', []), '.0f')} |",
        f"| read_note c=16 server CPU µs/req | {summary(s.get('robotwtf.c16.cpu_us', []), '.0f')} | "
        f"{summary(s.get('pg.c16.cpu_us', []), '.0f')} |",
        f"| read_note c=1 p50 / p99 ms | {summary(s.get('robotwtf.c1.p50', []), '.2f')} / "
        f"{summary(s.get('robotwtf.c1.p99', []), '.2f')} | {summary(s.get('pg.c1.p50', []), '.2f')} / "
        f"{summary(s.get('pg.c1.p99', []), '.2f')} |",
        f"| search_notes on 10k pages c=1 p50 / p99 ms | {summary(s.get('search.c1.p50', []), '.2f')} / "
        f"{summary(s.get('search.c1.p99', []), '.2f')} | {summary(s.get('pg-search.c1.p50', []), '.2f')} / "
        f"{summary(s.get('pg-search.c1.p99', []), '.2f')} |",
        f"| PostgreSQL / SQLite, read_note c=16 (per repeat) | | {summary([100 * x for x in s['ratio.pg']], '.0f')} % |",
    ]
    med = {k: statistics.median(v) for k, v in s.items() if v}
    checks = [(med.get("ratio.pg", 0) >= 0.5, f"{100 * med.get('ratio.pg', 0):.0f} %"),
              (med.get("pg-search.c1.p50", 1e9) <= 10, f"{med.get('pg-search.c1.p50', 0):.2f} ms")]
    targets = [f"- {'PASS' if ok else 'MISS'} {target}: {value}" for target, (ok, value) in zip(TARGETS, checks)]
    return lines, targets
