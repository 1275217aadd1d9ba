"""The ceiling: a bare bottle + waitress JSON-RPC handler over the same SQLite row, with nothing
robotwtf needs around it (no auth, no MCP era handling, no validation, no logging).

    python bench/ceiling.py DB_PATH WIKI_ID PORT THREADS

POST /mcp with a tools/call read_note body answers a CallToolResult the way robotwtf does
(JSON, one text content). Same web stack and worker-thread count as robotwtf, so the gap between
the two is what robotwtf's own request path costs.
"""

import json
import sqlite3
import sys
import threading
import unicodedata

import bottle
import waitress

DB_PATH, WIKI_ID, PORT, THREADS = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
local = threading.local()
app = bottle.Bottle()


def db() -> sqlite3.Connection:
    conn = getattr(local, "db", None)
    if conn is None:
        conn = local.db = sqlite3.connect(DB_PATH, check_same_thread=False)
    return conn


@app.post("/mcp")
def rpc():
    message = json.loads(bottle.request.body.read())
    path = message["params"]["arguments"]["path"]
    key = unicodedata.normalize("NFC", path).casefold()
    row = db().execute("SELECT path, title, revision_id, content FROM pages WHERE wiki_id = ? AND path_key = ? "
                       "AND deleted_at IS NULL", (WIKI_ID, key)).fetchone()
    text = f"# {row[1] or row[0]}\nPath: {row[0]}\nRevision: {row[2]}\n\n---\n{row[3]}"
    bottle.response.content_type = "application/json"
    return json.dumps({"jsonrpc": "2.0", "id": message["id"],
                       "result": {"content": [{"type": "text", "text": text}], "isError": False}})


if __name__ == "__main__":
    waitress.serve(app, host="127.0.0.1", port=PORT, threads=THREADS, _quiet=True)
