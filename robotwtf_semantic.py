"""Semantic search: pages found by meaning, with vectors from an OpenAI-compatible embeddings
server the operator runs (Ollama, llama.cpp's server, TEI, vLLM, a hosted API). robotwtf
computes no embeddings itself; without --embeddings-url nothing here runs (CONTRACT §6).

- Chunking (chunk_page): a page is cut at its Markdown headings into sections; sections that fit
  in 200 words together share a chunk, a longer one is cut into windows of ~170 words that
  overlap by 30, ending at paragraph or sentence ends. Each chunk is embedded with the page's
  path and title and the section's heading path.
- EmbeddingsClient: one POST per batch to the operator's URL; bounded connect and read times and
  a total deadline, a cap on the answer's size, no redirects, the API key as a bearer.
- The index lives in the database (semantic_pages, semantic_chunks, semantic_state: schema.sql).
  robotwtf_store marks a page stale in the transaction that changes it. Indexer.step, one batch,
  cuts stale pages into chunks again (a chunk whose text is unchanged keeps its vector: chunks
  are keyed by a hash of the model and the text) and embeds chunks that have no vector yet.
- Search: each process keeps, per wiki, the sign bits of every vector in memory (WikiIndex) and
  scans them with a Hamming distance weighted by the query's components, in two stages (the
  first 256 dimensions, then all of them); the best few hundred are rescored exactly (cosine
  over the float32 vectors read from the database). Pure Python: no numpy in the pyz.
- background_jobs: the leased job (one per instance) that calls Indexer.step with backoff.
"""

from __future__ import annotations

import array
import collections
import dataclasses
import functools
import hashlib
import itertools
import json
import logging
import math
import operator
import re
import sqlite3
import struct
import sys
import threading
import time
import urllib.parse

import robotwtf_store as store

log = logging.getLogger("robotwtf.semantic")

# --- chunking ---------------------------------------------------------------------------------------

WINDOW_MIN_WORDS = 150       # a window of a long section ends at a paragraph or sentence end past this...
WINDOW_MAX_WORDS = 200       # ...and at the latest here
OVERLAP_WORDS = 30           # the next window starts this many words before the previous one ended
MAX_CHUNK_CHARS = 1600       # also a bound on characters, for text with long "words" (URLs, base64)
PIECE_RE = re.compile(r"\S+\s*")
SENTENCE_END_RE = re.compile(r"[.!?:;][\"')\]]*\s+$")


@dataclasses.dataclass(frozen=True)
class Chunk:
    section: str   # heading path, "A > B"; "" for the text before the first heading or a whole short page
    text: str


def chunk_page(content: str) -> list[Chunk]:
    """The chunks of a page's content. Front matter is left out (its title goes into every
    chunk's embedded text instead); headings inside fenced code are not section breaks. A page
    of at most 200 words is one chunk; otherwise consecutive sections share a chunk while they
    fit in 200 words together (its section is the heading path they have in common), and a
    longer section is cut into overlapping windows."""
    body = store.parse_front_matter(content)[1].strip()
    if not body:
        return []
    if _fits(body):
        return [Chunk("", body)]
    chunks, group = [], []
    for section in _sections(content) + [None]:
        if section is not None and _fits("\n\n".join(text for _, text in group + [section])):
            group.append(section)
            continue
        if group:
            chunks += _group_chunks(group)
        group = [section] if section is not None else []
    return chunks


def _fits(text: str) -> bool:
    return len(text) <= MAX_CHUNK_CHARS and len(text.split()) <= WINDOW_MAX_WORDS


def _group_chunks(group: list[tuple[str, str]]) -> list[Chunk]:
    """One chunk of sections that fit together, or the windows of one long section."""
    if len(group) == 1 and not _fits(group[0][1]):
        return [Chunk(group[0][0], window) for window in _windows(group[0][1])]
    trails = [trail.split(" > ") if trail else [] for trail, _ in group]
    common = []
    for parts in zip(*trails):
        if len(set(parts)) > 1:
            break
        common.append(parts[0])
    return [Chunk(" > ".join(common), "\n\n".join(text for _, text in group))]


def _sections(content: str) -> list[tuple[str, str]]:
    """(heading path, text) of each section in page order, the text before the first heading
    first; a section's text starts with its heading line (a heading path alone is not enough
    once sections share a chunk) and ends before the next heading. Empty sections are left out."""
    lines = content.split("\n")  # the line numbering of store.page_headings
    front = store.FRONT_MATTER_RE.match(content)
    marks = [(heading.line, " > ".join(heading.trail)) for heading in store.page_headings(content)]
    starts = [(content[:front.end()].count("\n") if front else 0, "")] + marks
    ends = [line for line, _ in marks] + [len(lines)]
    sections = []
    for (first, trail), end in zip(starts, ends):
        body = "\n".join(lines[first + (1 if trail else 0):end]).strip()
        if body:
            sections.append((trail, f"{lines[first].strip()}\n\n{body}" if trail else body))
    return sections


def _windows(text: str) -> list[str]:
    """Overlapping windows of the text, each exactly as written (whitespace and all)."""
    pieces = [part for match in PIECE_RE.finditer(text) for part in _split_long(match.group())]
    windows, start = [], 0
    while True:
        end = _window_end(pieces, start)
        windows.append("".join(pieces[start:end]).strip())
        if end >= len(pieces):
            return windows
        start = end - min(OVERLAP_WORDS, (end - start) // 5)


def _split_long(piece: str) -> list[str]:
    """A "word" too long to share a chunk (a URL, base64), as slices that can."""
    size = MAX_CHUNK_CHARS // 2
    return [piece[i:i + size] for i in range(0, len(piece), size)] if len(piece) > size else [piece]


def _window_end(pieces: list[str], start: int) -> int:
    """Where the window from `start` ends: the last paragraph end, else sentence end, between
    WINDOW_MIN_WORDS and the word and character limits; else at the limit."""
    chars, paragraph, sentence = 0, None, None
    end = start
    while end < len(pieces) and end - start < WINDOW_MAX_WORDS:
        chars += len(pieces[end])
        if chars > MAX_CHUNK_CHARS and end > start:
            break
        end += 1
        if end - start >= WINDOW_MIN_WORDS:
            if pieces[end - 1].count("\n") >= 2:
                paragraph = end
            elif SENTENCE_END_RE.search(pieces[end - 1]):
                sentence = end
    return paragraph or sentence or end


def chunk_title(path: str, title: str) -> str:
    """How a chunk names its page in the embedded text: the path, and the front matter title
    when there is one."""
    return f"{path} ({title})" if title and title != path.rsplit("/", 1)[-1] else path


def embedded_text(title: str, section: str, text: str) -> str:
    """The text sent for embedding: the page, the section's heading path, the chunk."""
    return f"{title}\n{section}\n\n{text}" if section else f"{title}\n\n{text}"


def chunk_hash(model: str, text: str) -> str:
    return hashlib.sha256(f"{model}\0{text}".encode()).hexdigest()


# --- the embeddings client ------------------------------------------------------------------------------

MAX_DIMENSIONS = 8192
QUERY_SECONDS = 10           # the longest a search waits for its query's vector
CONNECT_SECONDS = 5
BYTES_PER_INPUT = 256 * 1024  # a 8192-dimension vector in JSON is ~200 KB


class EmbeddingsUnavailable(store.UpstreamError):
    """The server could not be reached, was too slow, or had a failure of its own (5xx, 429):
    worth retrying later as is."""


class EmbeddingsRefused(store.UpstreamError):
    """The server answered, but not with usable vectors (4xx, a redirect, a malformed body):
    retrying the same input will not help."""


class EmbeddingsClient:
    """POST {"model", "input": [texts]} to the operator's OpenAI-compatible endpoint and read
    the "data" of vectors back (Ollama's native {"embeddings"} is read too).

    The URL is the operator's own, so loopback and private addresses are allowed; what is
    bounded is everything the server controls: the time to connect, each read and the whole
    answer (checked between reads), the answer's size, and redirects (never followed, so the
    requests cannot be sent anywhere else). No proxies or .netrc from the environment. The API
    key goes in the Authorization header only, and no message includes it."""

    @classmethod
    def from_config(cls, cfg: store.Config) -> "EmbeddingsClient":
        return cls(cfg.embeddings_url, cfg.embeddings_model, cfg.embeddings_api_key, cfg.embeddings_timeout)

    def __init__(self, url: str, model: str, api_key: str | None = None, timeout: float = 30):
        self.url, self.model, self.timeout = url, model, timeout
        self.host = urllib.parse.urlsplit(url).netloc
        self._headers = {"Content-Type": "application/json", "Accept": "application/json",
                         "Accept-Encoding": "identity", "User-Agent": f"robotwtf/{store.VERSION}"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._local = threading.local()

    def embed(self, texts: list[str], seconds: float | None = None) -> list[list[float]]:
        """One unit-length vector per text, all of one dimension; EmbeddingsUnavailable or
        EmbeddingsRefused saying what went wrong."""
        seconds = min(seconds or self.timeout, self.timeout)
        body = json.dumps({"model": self.model, "input": texts}, ensure_ascii=False).encode()
        status, answer = self._post(body, seconds, 64 * 1024 + BYTES_PER_INPUT * len(texts))
        if status in (429,) or status >= 500:
            raise EmbeddingsUnavailable(f"The embeddings server at {self.host} answered HTTP {status}"
                                        f"{_detail(answer)}.")
        if status != 200:
            raise EmbeddingsRefused(f"The embeddings server at {self.host} refused the request with HTTP {status}"
                                    f"{_detail(answer)}. Check --embeddings-url and --embeddings-model.")
        return _vectors(answer, len(texts), self.host)

    def _post(self, body: bytes, seconds: float, max_bytes: int) -> tuple[int, bytes]:
        import requests  # here, not at the top: a server without semantic search never loads it
        deadline = time.monotonic() + seconds
        session = self._session()
        try:
            response = session.post(self.url, data=body, headers=self._headers, stream=True, allow_redirects=False,
                                    timeout=(min(CONNECT_SECONDS, seconds), seconds))
        except requests.Timeout:
            raise self._too_slow(seconds) from None
        except requests.RequestException:
            raise EmbeddingsUnavailable(f"Could not connect to the embeddings server at {self.host}; is it "
                                        "running?") from None
        with response:
            if response.is_redirect or 300 <= response.status_code < 400:
                raise EmbeddingsRefused(f"The embeddings server at {self.host} answered with a redirect "
                                        f"(HTTP {response.status_code}), which robotwtf does not follow: set "
                                        "--embeddings-url to the endpoint itself.")
            if response.headers.get("Content-Encoding", "identity").lower() != "identity":
                raise EmbeddingsRefused(f"The embeddings server at {self.host} sent a compressed answer although "
                                        "robotwtf asked for none.")
            try:
                return response.status_code, self._read(response, deadline, seconds, max_bytes)
            except requests.RequestException:
                if time.monotonic() >= deadline:
                    raise self._too_slow(seconds) from None
                raise EmbeddingsUnavailable(f"The connection to the embeddings server at {self.host} broke "
                                            "off.") from None

    def _read(self, response, deadline: float, seconds: float, max_bytes: int) -> bytes:
        """The body, read a socket read at a time so that the deadline is checked between reads
        (each read is bounded by the read timeout)."""
        too_large = EmbeddingsRefused(f"The embeddings server at {self.host} sent an answer larger than "
                                      f"{max_bytes // 1024} KiB for this request; robotwtf reads no more.")
        declared = response.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > max_bytes):
            raise too_large
        parts, total = [], 0
        while True:
            if time.monotonic() >= deadline:
                raise self._too_slow(seconds)
            try:
                part = response.raw.read1(65536)
            except Exception as e:  # urllib3's own errors, a socket timeout, a reset
                import requests
                raise requests.ConnectionError(str(e)) from None
            if not part:
                return b"".join(parts)
            total += len(part)
            if total > max_bytes:
                raise too_large
            parts.append(part)

    def _too_slow(self, seconds: float) -> EmbeddingsUnavailable:
        return EmbeddingsUnavailable(f"The embeddings server at {self.host} did not answer within {seconds:g} s.")

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            import requests
            session = self._local.session = requests.Session()
            session.trust_env = False  # no proxies, .netrc credentials or CA overrides from the environment
        return session


def _detail(answer: bytes) -> str:
    """A server's error message, short and printable, to quote after its status."""
    try:
        payload = json.loads(answer)
        message = payload.get("error", payload) if isinstance(payload, dict) else payload
        if isinstance(message, dict):
            message = message.get("message", "")
        text = str(message)
    except ValueError:
        text = answer[:200].decode("utf-8", "replace")
    text = " ".join(store.printable(text).split())[:200]
    return f" ({text})" if text else ""


def _vectors(answer: bytes, expected: int, host: str) -> list[list[float]]:
    def refused(problem: str) -> EmbeddingsRefused:
        return EmbeddingsRefused(f"The embeddings server at {host} {problem}. Check that --embeddings-url is an "
                                 "OpenAI-compatible /v1/embeddings endpoint and the model is an embedding model.")
    try:
        payload = json.loads(answer)
    except ValueError:
        raise refused("did not answer with JSON") from None
    if isinstance(payload, dict) and isinstance(payload.get("data"), list):
        items = payload["data"]
        if all(isinstance(item, dict) and isinstance(item.get("index"), int) for item in items):
            items = sorted(items, key=operator.itemgetter("index"))
        raw = [item.get("embedding") if isinstance(item, dict) else None for item in items]
    elif isinstance(payload, dict) and isinstance(payload.get("embeddings"), list):
        raw = payload["embeddings"]
    else:
        raise refused("answered JSON without a \"data\" list of embeddings")
    if len(raw) != expected:
        raise refused(f"returned {len(raw)} vectors for {expected} inputs")
    vectors = [_unit_vector(vector, refused) for vector in raw]
    if len({len(v) for v in vectors}) > 1:
        raise refused("returned vectors of different dimensions in one answer")
    return vectors


def _unit_vector(vector, refused) -> list[float]:
    if not isinstance(vector, list) or not 1 <= len(vector) <= MAX_DIMENSIONS:
        raise refused(f"returned something other than a list of 1 to {MAX_DIMENSIONS} numbers as a vector")
    if not all(type(x) in (float, int) for x in vector):
        raise refused("returned a vector with values that are not numbers")
    norm = math.sqrt(math.fsum(x * x for x in vector))
    if not math.isfinite(norm) or not all(map(math.isfinite, vector)):
        raise refused("returned a vector containing NaN or infinity")
    if norm == 0:
        raise refused("returned a vector of zeros")
    return [x / norm for x in vector]


# --- vectors in the database and in memory ------------------------------------------------------------

def pack_vector(vector: list[float]) -> bytes:
    return struct.pack(f"<{len(vector)}f", *vector)


def unpack_vector(blob: bytes) -> array.array:
    vector = array.array("f", blob)  # ten times faster than struct.unpack for the rescoring
    if sys.byteorder == "big":
        vector.byteswap()
    return vector


def sign_code(vector) -> int:
    """Bit i set when component i is negative."""
    return sum(1 << i for i, x in enumerate(vector) if x < 0)


def pack_code(code: int, dimensions: int) -> bytes:
    return code.to_bytes((dimensions + 7) // 8, "little")


sumprod = getattr(math, "sumprod", None) or (lambda a, b: sum(map(operator.mul, a, b)))  # sumprod: Python 3.12

COARSE_BITS = 256        # stage 1 reads the first this many dimensions of each code...
COARSE_KEEP = 1500       # ...and keeps this many chunks for stage 2,
RESCORE = 300            # which keeps this many for the exact cosine
LEVELS = 7               # query components weigh 0..7 in stage 2 (three bit planes)


@dataclasses.dataclass(frozen=True)
class QueryCode:
    """A query vector as the scans use it: its sign bits; stage 1's mask (the first COARSE_BITS
    dimensions where the query's component is larger than the median there); stage 2's three
    bit planes of each component's weight (|component| in 0..LEVELS steps). The weighted Hamming
    distance sum(weight_i for components whose sign differs) ranks vectors like their dot
    product with the query, as far as their signs can tell."""
    sign: int
    coarse_mask: int
    planes: tuple[int, int, int]


def query_code(vector: list[float]) -> QueryCode:
    magnitudes = [abs(x) for x in vector]
    head = magnitudes[:COARSE_BITS]
    median = sorted(head)[len(head) // 2]
    coarse_mask = sum(1 << i for i, m in enumerate(head) if m > median)
    top = sorted(magnitudes)[int(0.98 * (len(magnitudes) - 1))] or 1.0
    levels = [min(LEVELS, round(m / top * LEVELS)) for m in magnitudes]
    planes = tuple(sum(1 << i for i, level in enumerate(levels) if level >> bit & 1) for bit in range(3))
    return QueryCode(sign_code(vector), coarse_mask, planes)


def _smallest(values: list[int], positions: list[int], keep: int) -> list[int]:
    """The `keep` entries of `positions` with the smallest values (values[j] belongs to
    positions[j]), in no particular order."""
    if len(values) <= keep:
        return positions
    chosen = sorted(range(len(values)), key=values.__getitem__)[:keep]
    return [positions[j] for j in chosen]


# Byte tables for stage 1 (a column of bytes translated through one is a C loop), made on first
# use: POPCOUNTS[v] = bits set in v, _xor(s)[v] = v ^ s, _and(m)[v] = v & m, _at_most(t)[v] = v <= t.
POPCOUNTS = bytes(bin(v).count("1") for v in range(256))
ONE_RE = re.compile(b"\x01")


@functools.cache
def _xor(s: int) -> bytes:
    return bytes(v ^ s for v in range(256))


@functools.cache
def _and(m: int) -> bytes:
    return bytes(v & m for v in range(256))


@functools.cache
def _at_most(t: int) -> bytes:
    return bytes(int(v <= t) for v in range(256))


def _nearest(distances: bytes, keep: int) -> list[int]:
    """Positions of at least `keep` of the smallest distances (a few more where they tie at the
    cut-off), with byte-wise C loops: the cut-off read from a sorted sample with a margin,
    raised while it selects too few (each try counts in one pass), then one pass."""
    if len(distances) <= keep:
        return list(range(len(distances)))
    sample = sorted(distances[::max(1, len(distances) // 2000)])
    limit = sample[min(len(sample) - 1, int(len(sample) * keep * 1.2 / len(distances)))]
    while limit < 255 and distances.translate(_at_most(limit)).count(1) < keep:
        limit += 1
    return [match.start() for match in ONE_RE.finditer(distances.translate(_at_most(limit)))]


class WikiIndex:
    """One wiki's searchable chunks in one process, in parallel columns: `ids`, `pages` (0 for
    a removed chunk until the columns are compacted), `codes` (each chunk's sign bits as an int,
    for stage 2) and, for stage 1, `coarse`: one bytearray per byte of the first COARSE_BITS
    sign bits, holding that byte of every chunk. A query's stage-1 distance to every chunk is
    then a sum of those byte columns, each translated through a table made for the query: C
    loops over bytes instead of a Python loop over chunks. `stamp` is the newest
    semantic_pages stamp applied. Callers hold `lock` around every use."""

    def __init__(self, dimensions: int):
        self.lock = threading.Lock()
        self.dimensions = dimensions
        self.width = (min(dimensions, COARSE_BITS) + 7) // 8
        self.stamp = 0
        self.ids = array.array("q")
        self.pages = array.array("q")
        self.codes: list[int] = []
        self.coarse = [bytearray() for _ in range(self.width)]
        self.where: dict[int, range] = {}
        self.removed = 0

    @property
    def size(self) -> int:
        return len(self.ids) - self.removed

    def apply(self, changes: list[tuple[int, list[tuple[int, bytes]]]]) -> None:
        """Make each page's entries the given chunks ((chunk id, code as stored)), [] to
        remove the page."""
        added = []
        for page_id, chunks in changes:
            for position in self.where.pop(page_id, ()):
                self.pages[position] = 0
                self.removed += 1
            if chunks:
                start = len(self.ids) + len(added)
                self.where[page_id] = range(start, start + len(chunks))
                added += [(page_id, chunk_id, code) for chunk_id, code in chunks]
        self._append(added)
        if self.removed > max(1000, len(self.ids) // 4):
            self._compact()

    def _append(self, entries: list[tuple[int, int, bytes]]) -> None:
        width = self.width
        self.pages.extend(page_id for page_id, _, _ in entries)
        self.ids.extend(chunk_id for _, chunk_id, _ in entries)
        self.codes.extend(int.from_bytes(code, "little") for _, _, code in entries)
        heads = b"".join(code[:width].ljust(width, b"\0") for _, _, code in entries)
        for byte, column in enumerate(self.coarse):
            column.extend(heads[byte::width])

    def _compact(self) -> None:
        live = [(page, self.ids[i], self.codes[i].to_bytes((self.dimensions + 7) // 8, "little"))
                for i, page in enumerate(self.pages) if page]
        self.ids, self.pages, self.codes = array.array("q"), array.array("q"), []
        self.coarse = [bytearray() for _ in range(self.width)]
        self.removed = 0
        self._append(live)
        self.where = {}
        for position, page in enumerate(self.pages):
            found = self.where.get(page)
            self.where[page] = range(found.start if found else position, position + 1)

    def candidates(self, query: QueryCode, keep: int = RESCORE) -> list[int]:
        """Ids of the `keep` chunks that the two stages rank nearest to the query."""
        positions = range(len(self.ids))
        if len(self.ids) > COARSE_KEEP:
            positions = _nearest(self._coarse_distances(query), COARSE_KEEP)
        pages, codes, sign = self.pages, self.codes, query.sign
        w0, w1, w2 = query.planes
        positions = [p for p in positions if pages[p]]
        distances = [(x & w0).bit_count() + 2 * (x & w1).bit_count() + 4 * (x & w2).bit_count()
                     for x in (codes[p] ^ sign for p in positions)]
        return [self.ids[p] for p in _smallest(distances, positions, keep)]

    def _coarse_distances(self, query: QueryCode) -> bytes:
        """Stage 1's distance to every chunk, one byte each: the number of sign bits that
        differ from the query's among the first COARSE_BITS where the query's component is
        above its median. At most half of COARSE_BITS, so the byte-wise sum never carries."""
        sign = (query.sign & ((1 << 8 * self.width) - 1)).to_bytes(self.width, "little")
        mask = query.coarse_mask.to_bytes(self.width, "little")
        total = 0
        for column, s, m in zip(self.coarse, sign, mask):
            if m:
                table = _xor(s).translate(_and(m)).translate(POPCOUNTS)
                total += int.from_bytes(column.translate(table), "little")
        return total.to_bytes(len(self.ids), "little")


# --- the index in the database ------------------------------------------------------------------------

PAGES_PER_STEP = 20
BATCH = 32
# The next stamp of a semantic_pages row's wiki, in an UPDATE of semantic_pages (see schema.sql).
NEXT_STAMP = "(SELECT coalesce(max(s.stamp), 0) + 1 FROM semantic_pages s WHERE s.wiki_id = semantic_pages.wiki_id)"


@dataclasses.dataclass(frozen=True)
class IndexState:
    """The state of one wiki's index: chunks with a vector, chunks waiting for one, chunks the
    server refused, pages waiting to be cut into chunks (again); the model and the server's last
    failure are the instance's."""
    indexed: int
    pending: int
    failed: int
    stale_pages: int
    model: str | None
    dimensions: int | None
    last_error: str | None
    last_error_at: int | None
    indexed_at: int | None

    @property
    def complete(self) -> bool:
        return not self.pending and not self.stale_pages


def index_state(db: sqlite3.Connection, wiki_id: int, indexed: int | None = None) -> IndexState:
    """The wiki's IndexState; `indexed` when the caller already knows it (counting reads every
    chunk's index entry)."""
    if indexed is None:
        indexed = db.execute("SELECT count(*) FROM semantic_chunks WHERE wiki_id = ? AND code IS NOT NULL",
                             (wiki_id,)).fetchone()[0]
    pending, failed = db.execute("SELECT count(*) - coalesce(sum(failed), 0), coalesce(sum(failed), 0) "
                                 "FROM semantic_chunks WHERE wiki_id = ? AND vector IS NULL", (wiki_id,)).fetchone()
    stale = db.execute("SELECT count(*) FROM semantic_pages WHERE wiki_id = ? AND state = 'stale'",
                       (wiki_id,)).fetchone()[0]
    state = _state(db)
    return IndexState(indexed, pending, failed, stale, state["model"], state["dimensions"], state["last_error"],
                      state["last_error_at"], state["indexed_at"])


def _state(db: sqlite3.Connection) -> sqlite3.Row:
    return db.execute("SELECT * FROM semantic_state WHERE id = 1").fetchone()


def record_error(db: sqlite3.Connection, message: str) -> None:
    with store.transaction(db):
        db.execute("UPDATE semantic_state SET last_error = ?, last_error_at = ? WHERE id = 1", (message, store.now()))


def reset(db: sqlite3.Connection, wiki_id: int | None = None) -> int:
    """Drop the chunks and vectors of one wiki (or of all) so that every live page is cut and
    embedded again; returns the number of pages that will be."""
    with store.transaction(db):
        return _drop_chunks(db, wiki_id)


def start_over(db: sqlite3.Connection, model: str, dimensions: int) -> int:
    """reset() every wiki and record the model the next vectors come from, in one transaction:
    vectors of an old model are never mixed with new ones, they are gone first."""
    with store.transaction(db):
        pages = _drop_chunks(db, None)
        db.execute("UPDATE semantic_state SET model = ?, dimensions = ? WHERE id = 1", (model, dimensions))
    return pages


def _drop_chunks(db: sqlite3.Connection, wiki_id: int | None) -> int:
    where, args = ("wiki_id = ?", (wiki_id,)) if wiki_id is not None else ("1 = 1", ())
    db.execute(f"DELETE FROM semantic_chunks WHERE {where}", args)
    # A live page without a row can only be one from before the schema had them; be sure.
    db.execute("INSERT INTO semantic_pages (page_id, wiki_id, state, stamp) SELECT id, wiki_id, 'stale', "
               "(SELECT coalesce(max(s.stamp), 0) + 1 FROM semantic_pages s WHERE s.wiki_id = pages.wiki_id) "
               f"FROM pages WHERE {where} AND deleted_at IS NULL AND id NOT IN (SELECT page_id FROM semantic_pages)",
               args)
    return db.execute(f"UPDATE semantic_pages SET state = 'stale', stamp = {NEXT_STAMP} "
                      f"WHERE {where} AND state != 'gone'", args).rowcount


@dataclasses.dataclass(frozen=True)
class Progress:
    pages: int        # pages cut into chunks by this step
    embedded: int     # chunks that got a vector
    remaining: bool   # whether there is work left


class Indexer:
    """Indexing for whichever process does it: `serve`'s leased job (IndexingTurns) or `robotwtf reindex`.
    step() does one batch of work and says whether more remains. Two Indexers on one database
    at once are safe: chunks are recut only for the page state they read, vectors are written
    by content hash to chunks that have none, and each write is its own short transaction; the
    worst is a batch embedded twice."""

    def __init__(self, db: sqlite3.Connection, client: EmbeddingsClient, batch: int = BATCH):
        self.db, self.client, self.model, self.batch = db, client, client.model, batch
        self.checked = False

    def step(self) -> Progress:
        if not self.checked:
            self._check_model()
        pages = self._chunk_stale_pages()
        embedded = self._embed_pending()
        remaining = self.db.execute("SELECT EXISTS (SELECT 1 FROM semantic_pages WHERE state = 'stale') OR EXISTS "
                                    "(SELECT 1 FROM semantic_chunks WHERE vector IS NULL AND failed = 0)").fetchone()[0]
        if pages or embedded:
            with store.transaction(self.db):
                self.db.execute("UPDATE semantic_state SET indexed_at = ? WHERE id = 1", (store.now(),))
        return Progress(pages, embedded, bool(remaining))

    def _check_model(self) -> None:
        """Start over when the model, or the dimension of its vectors, is not the one the index
        was built with (one small embedding tells the dimension)."""
        dimensions = len(self.client.embed(["robotwtf"])[0])
        state = _state(self.db)
        if (state["model"], state["dimensions"]) != (self.model, dimensions):
            pages = start_over(self.db, self.model, dimensions)
            if state["model"] is not None:
                log.warning("semantic index: the model is now %s (%d dimensions), was %s (%s): every page "
                            "(%d) is embedded again", self.model, dimensions, state["model"], state["dimensions"], pages)
        self.checked = True

    def _chunk_stale_pages(self) -> int:
        db, done = self.db, 0
        rows = db.execute("SELECT s.page_id, s.wiki_id, s.stamp, p.path, p.title, p.content FROM semantic_pages s "
                          "JOIN pages p ON p.id = s.page_id WHERE s.state = 'stale' LIMIT ?",
                          (PAGES_PER_STEP,)).fetchall()
        for row in rows:
            title = chunk_title(row["path"], row["title"])
            chunks = [(position, chunk_hash(self.model, embedded_text(title, c.section, c.text)), c)
                      for position, c in enumerate(chunk_page(row["content"]))]
            with store.transaction(db):
                if db.execute("SELECT 1 FROM semantic_pages WHERE page_id = ? AND state = 'stale' AND stamp = ?",
                              (row["page_id"], row["stamp"])).fetchone() is None:
                    continue  # changed since it was read: a later step cuts the new content
                self._store_chunks(row, title, chunks)
                db.execute(f"UPDATE semantic_pages SET state = 'ready', stamp = {NEXT_STAMP} WHERE page_id = ?",
                           (row["page_id"],))
            done += 1
        return done

    def _store_chunks(self, page: sqlite3.Row, title: str, chunks: list) -> None:
        """Replace the page's chunks, each keeping the vector its text had on this page before
        (so an edit re-embeds only the chunks it changed)."""
        db = self.db
        known = {row["hash"]: (row["code"], row["vector"]) for row in db.execute(
            "SELECT hash, code, vector FROM semantic_chunks WHERE page_id = ? AND vector IS NOT NULL", (page["page_id"],))}
        db.execute("DELETE FROM semantic_chunks WHERE page_id = ?", (page["page_id"],))
        for position, digest, chunk in chunks:
            code, vector = known.get(digest, (None, None))
            db.execute("INSERT INTO semantic_chunks (page_id, wiki_id, position, hash, code, vector, title, section, "
                       "text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (page["page_id"], page["wiki_id"], position, digest, code, vector, title, chunk.section,
                        chunk.text))

    def _embed_pending(self) -> int:
        # In the pending index's order (by wiki): ORDER BY id would sort every pending chunk.
        rows = self.db.execute("SELECT hash, title, section, text FROM semantic_chunks WHERE vector IS NULL "
                               "AND failed = 0 LIMIT ?", (self.batch * 4,)).fetchall()
        texts = {}
        for row in rows:
            texts.setdefault(row["hash"], embedded_text(row["title"], row["section"], row["text"]))
        batch = list(texts.items())[:self.batch]
        if not batch:
            return 0
        try:
            vectors = self.client.embed([text for _, text in batch])
        except EmbeddingsRefused:
            if len(batch) == 1:
                self._mark_failed(batch[0][0])
                raise
            return sum(self._embed_one(digest, text) for digest, text in batch)
        return self._store_vectors([digest for digest, _ in batch], vectors)

    def _embed_one(self, digest: str, text: str) -> int:
        """A chunk of a refused batch on its own: the server refusing just this one marks it
        failed (skipped until its page changes or the index is rebuilt), not the batch."""
        try:
            return self._store_vectors([digest], self.client.embed([text]))
        except EmbeddingsRefused as refused:
            log.warning("semantic index: a chunk was refused and is skipped: %s", refused.message)
            self._mark_failed(digest)
            return 0

    def _mark_failed(self, digest: str) -> None:
        with store.transaction(self.db):
            self.db.execute("UPDATE semantic_chunks SET failed = 1 WHERE hash = ? AND vector IS NULL", (digest,))

    def _store_vectors(self, digests: list[str], vectors: list[list[float]]) -> int:
        dimensions = len(vectors[0])
        if dimensions != _state(self.db)["dimensions"]:
            # The server's model changed behind the same name: start over with the new one.
            log.warning("semantic index: the embeddings server now returns %d dimensions; re-embedding every page",
                        dimensions)
            start_over(self.db, self.model, dimensions)
            return 0
        with store.transaction(self.db):
            stored = 0
            for digest, vector in zip(digests, vectors):
                stored += self.db.execute("UPDATE semantic_chunks SET code = ?, vector = ? WHERE hash = ? AND "
                                          "vector IS NULL", (pack_code(sign_code(vector), dimensions),
                                                             pack_vector(vector), digest)).rowcount
            marks = ", ".join("?" * len(digests))
            self.db.execute(f"UPDATE semantic_pages SET stamp = {NEXT_STAMP} WHERE page_id IN "
                            f"(SELECT page_id FROM semantic_chunks WHERE hash IN ({marks}))", digests)
        return stored


# --- search -------------------------------------------------------------------------------------------

MAX_QUERY_CHARS = 2000
MAX_RESULTS = 50
MAX_CHUNKS_PER_PAGE = 10


@dataclasses.dataclass(frozen=True)
class Hit:
    path: str
    title: str
    section: str
    text: str
    score: float       # cosine similarity of the query and the chunk, -1..1, higher is nearer
    revision: str      # the page's current revision
    chunk_id: int


@dataclasses.dataclass(frozen=True)
class Found:
    hits: list[Hit]
    state: IndexState
    ready: bool          # False while no vector of the configured model is indexed yet


def clamp(value, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise store.BadInput(f"{what} must be a whole number from {low} to {high}.")
    return max(low, min(value, high))


class Engine:
    """Semantic search for one process: the embeddings client and the in-memory index of every
    wiki searched so far, each brought up to date from the database before it is scanned."""

    def __init__(self, cfg: store.Config):
        self.client = EmbeddingsClient.from_config(cfg)
        self._wikis: dict[int, WikiIndex] = {}
        self._lock = threading.Lock()

    def search(self, db: sqlite3.Connection, wiki_id: int, query: str, n: int = 5, per_page: int = 2) -> Found:
        """The chunks nearest in meaning to `query`, at most `per_page` of one page, best first."""
        query = " ".join(query.split()) if isinstance(query, str) else ""
        if not query:
            raise store.BadInput("The query is empty: say in a few words or a question what you are looking for.")
        if len(query) > MAX_QUERY_CHARS:
            raise store.BadInput(f"The query is {len(query)} characters long; semantic search takes at most "
                                 f"{MAX_QUERY_CHARS}. Ask for the one thing you are looking for.")
        state = _state(db)
        if state["model"] != self.client.model or not state["dimensions"]:
            return Found([], index_state(db, wiki_id, 0), ready=False)
        try:
            vector = self.client.embed([query], QUERY_SECONDS)[0]
        except store.UpstreamError as e:
            raise store.UpstreamError(f"Semantic search cannot answer right now. {e.message} Meanwhile, search_notes "
                                      "finds pages by their words.") from None
        if len(vector) != state["dimensions"]:
            raise store.UpstreamError(f"Semantic search cannot answer right now: the embeddings server returned a "
                                      f"{len(vector)}-dimensional vector for the query, but the index holds "
                                      f"{state['dimensions']}-dimensional ones, so its model changed. The index is "
                                      "rebuilt by itself; try again later, or use search_notes meanwhile.")
        return self.search_vector(db, wiki_id, vector, n, per_page)

    def search_vector(self, db: sqlite3.Connection, wiki_id: int, vector: list[float], n: int = 5,
                      per_page: int = 2) -> Found:
        """search() for a query already embedded (a unit vector of the index's dimension)."""
        n, per_page = clamp(n, 1, MAX_RESULTS, "n"), clamp(per_page, 1, MAX_CHUNKS_PER_PAGE, "max_chunks_per_page")
        index = self._index(db, wiki_id, len(vector))
        with index.lock:
            self._sync(db, wiki_id, index)
            ids = index.candidates(query_code(vector), max(RESCORE, n * per_page))
            indexed = index.size
        hits = self._best(db, wiki_id, self._scores(db, wiki_id, vector, ids), n, per_page) if ids else []
        return Found(hits, index_state(db, wiki_id, indexed), ready=True)

    def _index(self, db: sqlite3.Connection, wiki_id: int, dimensions: int) -> WikiIndex:
        with self._lock:
            index = self._wikis.get(wiki_id)
            if index is None or index.dimensions != dimensions:
                index = self._wikis[wiki_id] = WikiIndex(dimensions)
            return index

    def _sync(self, db: sqlite3.Connection, wiki_id: int, index: WikiIndex) -> None:
        """Apply the pages whose semantic_pages stamp is newer than the index's (all of them
        the first time), in one read snapshot: each changed page's entries are dropped, and a
        ready page's embedded chunks are read again, codes only, from their covering index."""
        with store.read_snapshot(db):
            changed = db.execute("SELECT page_id, state, stamp FROM semantic_pages WHERE wiki_id = ? AND stamp > ? "
                                 "ORDER BY stamp", (wiki_id, index.stamp)).fetchall()
            if not changed:
                return
            index.apply([(row["page_id"], []) for row in changed])
            ready = sorted(row["page_id"] for row in changed if row["state"] == "ready")
            rows = db.cursor()
            rows.row_factory = None  # plain tuples: 65,000 sqlite3.Row objects would weigh ~10 MB
            if not index.stamp:
                rows.execute("SELECT page_id, id, code FROM semantic_chunks WHERE wiki_id = ? AND code IS NOT NULL "
                             "ORDER BY page_id, id", (wiki_id,))
                self._apply(index, rows, set(ready))
            else:
                for start in range(0, len(ready), 500):
                    part = ready[start:start + 500]
                    rows.execute(f"SELECT page_id, id, code FROM semantic_chunks WHERE wiki_id = ? AND page_id IN "
                                 f"({', '.join('?' * len(part))}) AND code IS NOT NULL ORDER BY page_id, id",
                                 (wiki_id, *part))
                    self._apply(index, rows, set(part))
        index.stamp = changed[-1]["stamp"]

    @staticmethod
    def _apply(index: WikiIndex, rows, ready: set[int]) -> None:
        """Give each page of `rows` ((page id, chunk id, code) in page order) those chunks, a
        thousand pages at a time."""
        batch = []
        for page_id, group in itertools.groupby(rows, key=operator.itemgetter(0)):
            if page_id in ready:
                batch.append((page_id, [(chunk_id, code) for _, chunk_id, code in group]))
            if len(batch) == 1000:
                index.apply(batch)
                batch = []
        index.apply(batch)

    @staticmethod
    def _scores(db: sqlite3.Connection, wiki_id: int, vector: list[float], ids: list[int]) -> list[tuple]:
        """(score, chunk id, page id) of the candidates, best first: the exact cosine of the
        query and each stored float32 vector."""
        rows = db.cursor()
        rows.row_factory = None
        rows.execute(f"SELECT id, page_id, vector FROM semantic_chunks WHERE id IN ({', '.join('?' * len(ids))}) "
                     "AND wiki_id = ? AND vector IS NOT NULL", (*ids, wiki_id))
        size = 4 * len(vector)
        scored = [(sumprod(vector, unpack_vector(blob)), chunk_id, page_id) for chunk_id, page_id, blob in rows
                  if len(blob) == size]
        scored.sort(key=lambda item: (-item[0], item[1]))
        return scored

    @staticmethod
    def _best(db: sqlite3.Connection, wiki_id: int, scored: list[tuple], n: int, per_page: int) -> list[Hit]:
        """The best `n` of the scored chunks, at most `per_page` of one page, with their text;
        only chunks of this wiki's live pages that are current (checked again here, in SQL,
        whatever the in-memory index said)."""
        hits, taken, next_one = [], collections.Counter(), 0
        while len(hits) < n and next_one < len(scored):
            picked = []
            for score, chunk_id, page_id in scored[next_one:]:
                next_one += 1
                if taken[page_id] < per_page:
                    taken[page_id] += 1
                    picked.append((score, chunk_id, page_id))
                    if len(picked) == n - len(hits):
                        break
            details = {row["id"]: row for row in db.execute(
                "SELECT c.id, c.section, c.text, p.path, p.title, p.revision_id FROM semantic_chunks c "
                "JOIN semantic_pages s ON s.page_id = c.page_id JOIN pages p ON p.id = c.page_id "
                f"WHERE c.id IN ({', '.join('?' * len(picked))}) AND c.wiki_id = ? AND s.state = 'ready' "
                "AND p.deleted_at IS NULL", (*(chunk_id for _, chunk_id, _ in picked), wiki_id))}
            for score, chunk_id, page_id in picked:
                row = details.get(chunk_id)
                if row is None:
                    taken[page_id] -= 1
                    continue
                hits.append(Hit(row["path"], row["title"] or row["path"].rsplit("/", 1)[-1], row["section"],
                                row["text"], round(score, 4), row["revision_id"], chunk_id))
        return hits


@functools.cache
def engine(cfg: store.Config) -> Engine | None:
    """The Engine of this process for the configuration, or None when semantic search is off."""
    return Engine(cfg) if cfg.semantic_search else None


# --- the background indexer -------------------------------------------------------------------------------

IDLE_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 60
# How long one turn of the leased job may embed before it returns, so its lease is renewed in time
# (store.LeasedJob renews between turns; a lapsed lease would let a second indexer start).
TURN_SECONDS = store.LeasedJob.LEASE_SECONDS / 4


class IndexingTurns:
    """The work of the instance's "semantic-index" job (store.LeasedJob: one process of the
    instance runs it): each call embeds for up to TURN_SECONDS, then returns; when no work is
    left it rests IDLE_SECONDS, and while the embeddings server is down, slow or refusing it
    pauses 1 s, doubling up to a minute. Failures are logged once per new message and recorded
    for the admin page; a write never waits for it."""

    def __init__(self, cfg: store.Config):
        self.client = EmbeddingsClient.from_config(cfg)
        self.indexer: Indexer | None = None
        self.failures, self.last_message, self.resume_at = 0, None, 0.0

    def __call__(self, db: sqlite3.Connection) -> None:
        if time.monotonic() < self.resume_at:
            return
        if self.indexer is None or self.indexer.db is not db:
            self.indexer = Indexer(db, self.client)
        deadline = time.monotonic() + TURN_SECONDS
        while time.monotonic() < deadline:
            try:
                progress = self.indexer.step()
            except store.UpstreamError as e:
                self._failed(db, e.message)
                return
            except sqlite3.Error:
                raise  # LeasedJob logs it and calls again on its next turn
            except Exception:
                log.exception("semantic index: unexpected failure (will retry in a minute)")
                self.resume_at = time.monotonic() + MAX_BACKOFF_SECONDS
                return
            if self.failures:
                log.info("semantic index: the embeddings server answers again")
                self.failures, self.last_message = 0, None
            if not progress.remaining:
                self.resume_at = time.monotonic() + IDLE_SECONDS
                return

    def _failed(self, db: sqlite3.Connection, message: str) -> None:
        self.failures += 1
        self.resume_at = time.monotonic() + min(MAX_BACKOFF_SECONDS, 2 ** (self.failures - 1))
        if message != self.last_message:
            log.warning("semantic index: %s Retrying with backoff, up to every %d s.", message, MAX_BACKOFF_SECONDS)
            self.last_message = message
        record_error(db, message)


def background_jobs(cfg: store.Config) -> list[store.LeasedJob]:
    """The indexing job when semantic search is on (CONTRACT §6), else none."""
    if not cfg.semantic_search:
        return []
    return [store.LeasedJob(cfg.database_location, "semantic-index", IDLE_SECONDS / 5, IndexingTurns(cfg))]


def run_until_done(db: sqlite3.Connection, client: EmbeddingsClient, report, attempts: int = 5) -> Progress:
    """Index in the foreground until no work remains (robotwtf reindex): report(state) after
    every step; an unreachable server is retried `attempts` times with backoff, then raised."""
    indexer, failures, total = Indexer(db, client), 0, Progress(0, 0, True)
    while total.remaining:
        try:
            step = indexer.step()
        except EmbeddingsUnavailable as e:
            failures += 1
            record_error(db, e.message)
            if failures >= attempts:
                raise
            time.sleep(min(MAX_BACKOFF_SECONDS, 2 ** (failures - 1)))
            continue
        failures = 0
        total = Progress(total.pages + step.pages, total.embedded + step.embedded, step.remaining)
        report(total)
    return total


def overall_state(db: sqlite3.Connection) -> tuple[int, int, int]:
    """(chunks indexed, chunks waiting, pages waiting) across the instance, for progress lines."""
    indexed, pending = db.execute("SELECT count(code), count(*) - count(code) - coalesce(sum(failed), 0) "
                                  "FROM semantic_chunks").fetchone()
    stale = db.execute("SELECT count(*) FROM semantic_pages WHERE state = 'stale'").fetchone()[0]
    return indexed, pending, stale


# --- for the browser: the search page's "similar meaning" section and the admin page ---------------------

@dataclasses.dataclass(frozen=True)
class Similar:
    """What views/semantic_results.tpl shows under the word matches."""
    hits: list[Hit]
    note: str          # how much of the wiki is not indexed yet, "" when all is
    error: str         # why there are no results, "" when there are


def similar_for_browser(inst: store.Instance, wiki_id: int, query: str, n: int = 5) -> Similar | None:
    """The "similar meaning" section of the search page: the best passage of each of up to `n`
    pages, leaving out those less than half as similar as the best (people scan a list; a
    model weighs the scores itself). None when semantic search is off or there is no query. A
    failing embeddings server is shown in the section, never as an error page: the word
    matches above it still work."""
    found_engine = engine(inst.cfg)
    if found_engine is None or not query.strip():
        return None
    try:
        found = found_engine.search(inst.db(), wiki_id, query, n=n, per_page=1)
    except store.RobotError as e:
        return Similar([], "", e.message)
    best = found.hits[0].score if found.hits else 0
    return Similar([hit for hit in found.hits if hit.score >= best / 2], missing_note(found.state, found.ready), "")


def missing_note(state: IndexState, ready: bool) -> str:
    """A sentence on how much of the wiki is not searchable by meaning yet, "" when all of it is."""
    if not ready:
        return "The semantic index is being built for the configured model; nothing is searchable by meaning yet."
    if state.complete:
        return ""
    waiting = [f"{state.pending} chunks waiting for their vectors"] if state.pending else []
    waiting += [f"{state.stale_pages} changed pages waiting to be read"] if state.stale_pages else []
    return (f"The semantic index is catching up: {state.indexed} chunks are searchable, "
            f"{' and '.join(waiting)}; results may miss them.")


@dataclasses.dataclass(frozen=True)
class AdminIndex:
    """What views/semantic_admin.tpl shows on the admin page: the server and model, when the
    index last changed, the server's last failure, and each wiki's IndexState."""
    host: str
    model: str
    dimensions: int | None
    indexed_at: str
    last_error: str | None
    last_error_at: str
    wikis: list[tuple[str, IndexState]]


def admin_index(inst: store.Instance) -> AdminIndex | None:
    """The index state of every wiki for the admin page; None when semantic search is off."""
    cfg = inst.cfg
    if not cfg.semantic_search:
        return None
    db = inst.db()
    wikis = [(wiki["slug"], index_state(db, wiki["id"])) for wiki in store.list_wikis(db)]
    state = _state(db)
    shown = lambda t: time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t)) if t else "never"  # noqa: E731
    return AdminIndex(urllib.parse.urlsplit(cfg.embeddings_url).netloc, cfg.embeddings_model,
                      state["dimensions"] if state["model"] == cfg.embeddings_model else None,
                      shown(state["indexed_at"]), state["last_error"], shown(state["last_error_at"]), wikis)
