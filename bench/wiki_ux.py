"""`make bench`, the wiki in the browser (issue 11): server time of a page view with the sidebar's
page tree and a table of contents, and of the page tree alone, on a 5,000-page wiki (the page
limit). bench/run.py calls measure() once and adds report_lines() and targets() to its report.

- page view: anonymous GETs of corpus pages of a public wiki (each has a front matter block and
  several ## sections, so a table of contents) through the real server; the time is the one
  robotwtf's access log gives each request (edge middleware: from the request to the body).
- page tree: robotwtf_web.page_tree(), the sidebar's HTML, timed in-process inside the pyz:

    SHIV_INTERPRETER=1 python robotwtf.pyz bench/wiki_ux.py DATA SLUG N_PATHS
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

UX_PAGES = 5_000
SAMPLES = 100   # pages viewed (and trees rendered), spread over the corpus
TARGETS = ["page view with sidebar + TOC p50 < 100 ms server time on 5k pages",
           "page tree (sidebar) built after a write p50 < 100 ms on 5k pages"]
ACCESS_LINE_RE = re.compile(r"robotwtf\.access: GET (/w/\S+/.*) 200 ([0-9.]+)ms$")


def measure(bench, out: Path, slug: str, log) -> None:
    """Seed a wiki of UX_PAGES pages, time the tree in-process, then page views over HTTP."""
    import corpus
    data = out / "data-ux-5k"
    started = time.perf_counter()
    bench.rw.make_data(data, UX_PAGES)
    log(f"seeded {data} with {UX_PAGES} pages in {time.perf_counter() - started:.1f}s")
    env = dict(bench.rw.env(data), SHIV_INTERPRETER="1")
    tree = json.loads(subprocess.run([bench.rw.python, str(bench.rw.pyz), __file__, str(data), slug, str(SAMPLES)],
                                     env=env, check=True, capture_output=True, text=True, timeout=600).stdout)
    for cold, warm in zip(tree["cold"], tree["warm"]):
        bench.record("ux.tree_cold_ms", cold)
        bench.record("ux.tree_ms", warm)
    bench.record("ux.tree_entries", tree["entries"])
    server = bench.rw.serve(data, name="robotwtf-ux")
    try:
        paths = [corpus.page_path(i) for i in range(0, UX_PAGES, UX_PAGES // SAMPLES)]
        sizes = []
        for path in paths[:5]:   # warm-up: the first requests load markdown-it, Pygments and the templates
            fetch(server.port, slug, path)
        log_file = out / "logs" / f"robotwtf-ux-{server.port}.log"
        skip = len(log_file.read_text().splitlines())
        for path in paths:
            sizes.append(len(fetch(server.port, slug, path)))
    finally:
        server.stop()
    times = [float(m.group(2)) for line in log_file.read_text().splitlines()[skip:]
             if (m := ACCESS_LINE_RE.search(line))]
    if len(times) != len(paths):
        raise RuntimeError(f"expected {len(paths)} page views in {log_file}, found {len(times)}")
    for ms in times:
        bench.record("ux.page_ms", ms)
    bench.record("ux.page_kb", statistics.median(sizes) / 1024)
    log(f"  page view p50 {statistics.median(times):.1f} ms server time; tree p50 "
        f"{statistics.median(tree['warm']):.1f} ms, after a write {statistics.median(tree['cold']):.1f} ms "
        f"({tree['entries']} entries shown)")


def fetch(port: int, slug: str, path: str) -> bytes:
    url = f"http://127.0.0.1:{port}/w/{slug}/{urllib.parse.quote(path)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        body = response.read()
    if b'class="toc"' not in body or b'aria-current="page"' not in body:
        raise RuntimeError(f"{url} has no table of contents or no marked page in its sidebar")
    return body


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def report_lines(samples: dict, summary) -> list[str]:
    page, tree, cold = samples.get("ux.page_ms", []), samples.get("ux.tree_ms", []), samples.get("ux.tree_cold_ms", [])
    return [
        "",
        f"## the wiki in the browser ({UX_PAGES:,}-page wiki, {SAMPLES} pages)",
        "",
        "| measure | p50 ms | p99 ms |",
        "|---|---|---|",
        f"| page view with sidebar page tree + table of contents, server time (access log) | "
        f"{percentile(page, .5):.1f} | {percentile(page, .99):.1f} |",
        f"| page tree alone (robotwtf_web.page_tree, in-process), kept since the last write | "
        f"{percentile(tree, .5):.1f} | {percentile(tree, .99):.1f} |",
        f"| page tree alone, built again (the first view after a write) | {percentile(cold, .5):.1f} | "
        f"{percentile(cold, .99):.1f} |",
        "",
        f"Page view HTML: {summary(samples.get('ux.page_kb', []), '.0f')} KB; sidebar entries shown: "
        f"{summary(samples.get('ux.tree_entries', []), '.0f')} (a wiki past 1,000 entries shows the current "
        "page's folders in full and the other folders as links).",
    ]


def targets(samples: dict) -> list[tuple[str, bool, str]]:
    page = percentile(samples.get("ux.page_ms", []), .5) if samples.get("ux.page_ms") else 1e9
    tree = percentile(samples.get("ux.tree_cold_ms", []), .5) if samples.get("ux.tree_cold_ms") else 1e9
    return [(TARGETS[0], page < 100, f"{page:.1f} ms"), (TARGETS[1], tree < 100, f"{tree:.1f} ms")]


def time_trees(data: str, slug: str, n: int) -> dict:
    """Inside the pyz: make the wiki public (the page views are anonymous) and time page_tree."""
    import robotwtf_store as store
    import robotwtf_web as web
    db = store.open_database(Path(data) / "robotwtf.db", create=False)
    row = store.get_wiki(db, slug)
    store.update_wiki(db, row["id"], visibility="public")
    wiki = web.WikiAccess(store.get_wiki(db, slug), None)
    paths = [path for path, _ in store.page_paths(db, wiki.id)]
    cold, warm, html = [], [], ""
    for path in paths[:: max(1, len(paths) // n)][:n]:
        web._trees.clear()   # as after a write: the tree is built from the database again
        started = time.perf_counter()
        web.page_tree(db, wiki, path)
        cold.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        html = web.page_tree(db, wiki, path)
        warm.append((time.perf_counter() - started) * 1000)
    return {"cold": cold, "warm": warm, "entries": html.count("<li>")}


if __name__ == "__main__":
    print(json.dumps(time_trees(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
