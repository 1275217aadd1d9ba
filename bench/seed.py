"""Seed a robotwtf data folder with the benchmark corpus through robotwtf's own storage API.

Run INSIDE the pyz, so the pages are written by exactly the code being measured:

    SHIV_INTERPRETER=1 python robotwtf.pyz bench/seed.py DATA SLUG USER_DID N_PAGES

The data folder must already hold the wiki (made with the CLI: init, user add, wiki create).
Each page is one store.write_page call (its own BEGIN IMMEDIATE transaction: page row, revision,
links, full-text index), exactly what write_note does after authentication.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus  # noqa: E402
import robotwtf_store as store  # noqa: E402


def main(data: str, slug: str, did: str, n_pages: int) -> None:
    started = time.perf_counter()
    db = store.open_database(Path(data) / "robotwtf.db", create=False)
    wiki_id = store.get_wiki(db, slug)["id"]
    author = store.Author(did, "cli")
    # Room for the seeded pages and the write benchmark's new ones; the server gets the same limits.
    quotas = store.Quotas(pages_per_wiki=1_000_000, bytes_per_wiki=1 << 40, wikis_per_user=10)
    for i in range(n_pages):
        store.write_page(db, wiki_id, corpus.page_path(i), corpus.page_text(i, n_pages), author=author,
                      quotas=quotas, message="seed")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA optimize")
    db.close()
    print(f"seeded {n_pages} pages in {time.perf_counter() - started:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
