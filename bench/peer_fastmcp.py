"""The peer: the server a Python developer would write with the official MCP SDK (mcp 2.x,
MCPServer, formerly FastMCP), served by uvicorn with the SDK's defaults.

    python bench/peer_fastmcp.py DB_PATH WIKI_ID PORT [--json-response] [--stateless]

One tool, read_note(path), reading one row of robotwtf's own `pages` table (the same database
file robotwtf serves) per call. Default mode is the SDK's default: stateful sessions
(Mcp-Session-Id) and SSE-framed answers; --json-response passes json_response=True, --stateless
stateless_http=True (both: the SDK's fastest configuration, what the reference platform ran).
No auth: the peer is given every advantage robotwtf does not take.
"""

import sqlite3
import sys
import threading
import unicodedata

from mcp.server.mcpserver import MCPServer

DB_PATH, WIKI_ID, PORT = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
JSON_RESPONSE = "--json-response" in sys.argv[4:]
STATELESS = "--stateless" in sys.argv[4:]

server = MCPServer("peer-wiki")
local = threading.local()


def db() -> sqlite3.Connection:
    """One connection per worker thread (the SDK runs sync tools in a thread pool)."""
    conn = getattr(local, "db", None)
    if conn is None:
        conn = local.db = sqlite3.connect(DB_PATH, check_same_thread=False)
    return conn


@server.tool()
def read_note(path: str) -> str:
    """Read a wiki page: its Markdown content and revision."""
    key = unicodedata.normalize("NFC", path).casefold()
    row = db().execute("SELECT path, title, revision_id, content FROM pages WHERE wiki_id = ? AND path_key = ? "
                       "AND deleted_at IS NULL", (WIKI_ID, key)).fetchone()
    if row is None:
        raise ValueError(f"No page '{path}'.")
    return f"# {row[1] or row[0]}\nPath: {row[0]}\nRevision: {row[2]}\n\n---\n{row[3]}"


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=PORT, json_response=JSON_RESPONSE,
               stateless_http=STATELESS)
