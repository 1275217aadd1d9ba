"""`make bench`'s git numbers (issue 13), with Debian's `git` over loopback against the pyz:

- a first `git clone` of a 1,000-page wiki with 5,000 revisions (it also gives every revision its
  commit) and a second one;
- an incremental `git pull` of one new revision (written through MCP just before);
- a push of a commit changing one file.

bench/run.py calls measure() after its repeats (it makes its own data folder and runs as many
repeats). Run inside the pyz, this file seeds the history:
`SHIV_INTERPRETER=1 python robotwtf.pyz bench/git_access.py DATA SLUG DID N_REVISIONS`.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import corpus  # noqa: E402

PAGES, REVISIONS = 1_000, 5_000
TARGETS = ["git clone of 1,000 pages with 5,000 revisions (first clone) <= 5 s",
           "git pull of one new revision <= 300 ms",
           "git push of a one-file commit <= 500 ms"]
ROUNDS = 5


def git_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0",
               GIT_AUTHOR_NAME="Bench", GIT_AUTHOR_EMAIL="bench@example.invalid",
               GIT_COMMITTER_NAME="Bench", GIT_COMMITTER_EMAIL="bench@example.invalid")
    return env


def git(cwd: Path, *args: str) -> float:
    """Run git; the milliseconds it took."""
    started = time.perf_counter()
    result = subprocess.run(["git", "-c", "credential.helper=", *args], cwd=cwd, env=git_env(),
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr}")
    return (time.perf_counter() - started) * 1000


def write_note(port: int, slug: str, token: str, path: str, content: str) -> None:
    """One MCP write_note, as an agent would make the revision a pull then fetches."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "write_note", "arguments": {"path": path, "content": content}}}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", f"/w/{slug}/mcp", json.dumps(body), {
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {token}", "MCP-Protocol-Version": "2025-11-25"})
    response = conn.getresponse()
    answer = response.read().decode()
    conn.close()
    if response.status != 200 or json.loads(answer)["result"]["isError"]:
        raise RuntimeError(f"write_note before the pull failed: {response.status} {answer[:300]}")


def measure(bench, out: Path, slug: str, did: str, log) -> None:
    prepare(bench, out / "data-git", slug, did, log)
    for r in range(1, bench.args.repeats + 1):
        repeat(bench, r, slug, log)


def prepare(bench, data: Path, slug: str, did: str, log) -> None:
    """`data`: the 1,000 corpus pages, edited until the wiki has 5,000 revisions, git access on."""
    started = time.perf_counter()
    bench.rw.make_data(data, PAGES)
    env = dict(bench.rw.env(data), SHIV_INTERPRETER="1")
    subprocess.run([bench.rw.python, str(bench.rw.pyz), __file__, str(data), slug, did, str(REVISIONS)],
                   env=env, check=True, timeout=900)
    bench.rw.cli(data, "wiki", "git", slug, "on")
    log(f"seeded {data} with {PAGES} pages and {REVISIONS} revisions in {time.perf_counter() - started:.1f}s")


def repeat(bench, r: int, slug: str, log) -> None:
    log(f"repeat {r}: git clone, pull and push")
    data = bench.fresh_copy("data-git", f"git-{r}")
    token = bench.rw.token(data)
    server = bench.rw.serve(data)
    work = data.parent / f"git-work-{r}"
    work.mkdir(exist_ok=True)
    url = f"http://x:{token}@127.0.0.1:{server.port}/w/{slug}.git"
    try:
        bench.record("git.clone.first", git(work, "clone", "-q", url, "first"))
        bench.record("git.clone.again", git(work, "clone", "-q", url, "again"))
        repo = work / "again"
        pulls, pushes = [], []
        for i in range(ROUNDS):
            write_note(server.port, slug, token, f"Bench/Git/Pull {r}-{i}", corpus.page_text(i, PAGES))
            pulls.append(git(repo, "pull", "-q", "--ff-only"))
            page = repo / f"{corpus.page_path(i)}.md"
            page.write_text(page.read_text() + f"\nEdited in git, round {r}-{i}.\n")
            git(repo, "commit", "-q", "-am", f"one file, round {r}-{i}")
            pushes.append(git(repo, "push", "-q"))
        bench.record("git.pull", statistics.median(pulls))
        bench.record("git.push", statistics.median(pushes))
        log(f"  git: first clone {bench.samples['git.clone.first'][-1]:.0f} ms, again "
            f"{bench.samples['git.clone.again'][-1]:.0f} ms, pull {statistics.median(pulls):.0f} ms, "
            f"push {statistics.median(pushes):.0f} ms (medians of {ROUNDS})")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)


def report_lines(s: dict, summary) -> list[str]:
    return [
        "", "## git over HTTP", "", "| measure | value |", "|---|---|",
        f"| git clone, 1,000 pages / 5,000 revisions: first (makes the commits) / again, ms | "
        f"{summary(s.get('git.clone.first', []), '.0f')} / {summary(s.get('git.clone.again', []), '.0f')} |",
        f"| git pull of one new revision, ms (median of {ROUNDS} per repeat) | {summary(s.get('git.pull', []), '.0f')} |",
        f"| git push of a one-file commit, ms (median of {ROUNDS} per repeat) | {summary(s.get('git.push', []), '.0f')} |",
    ]


def targets(s: dict) -> list[tuple[str, bool, str]]:
    med = {key: statistics.median(s[key]) if s.get(key) else 1e9 for key in ("git.clone.first", "git.pull", "git.push")}
    return [(TARGETS[0], med["git.clone.first"] <= 5000, f"{med['git.clone.first']:.0f} ms"),
            (TARGETS[1], med["git.pull"] <= 300, f"{med['git.pull']:.0f} ms"),
            (TARGETS[2], med["git.push"] <= 500, f"{med['git.push']:.0f} ms")]


def seed_history(data: str, slug: str, did: str, revisions: int) -> None:
    """Edit the seeded pages (one write each, through the storage API) until the wiki has
    `revisions` revisions; the edits are small, as people's are."""
    import robotwtf_store as store
    db = store.open_database(Path(data) / "robotwtf.db", create=False)
    wiki_id = store.get_wiki(db, slug)["id"]
    author = store.Author(did, "cli")
    quotas = store.Quotas(pages_per_wiki=1_000_000, bytes_per_wiki=1 << 40, wikis_per_user=10)
    rnd = random.Random(13)
    made = db.execute("SELECT count(*) FROM revisions WHERE wiki_id = ?", (wiki_id,)).fetchone()[0]
    for n in range(made, revisions):
        page = store.read_page(db, wiki_id, corpus.page_path(rnd.randrange(PAGES)))
        line = f"\nNote {n}: {' '.join(rnd.choices(corpus.DOMAIN, k=8))}.\n"
        store.write_page(db, wiki_id, page.path, page.content + line, page.revision, author=author, quotas=quotas,
                         message=f"note {n}")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


if __name__ == "__main__":
    seed_history(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
