"""robotwtf_git: each wiki as a git repository over git's smart HTTP protocol (CONTRACT §7), with
no git binary on the server. dulwich speaks the protocol and reads and writes packs; this module
maps robotwtf's revisions to git objects, and pushed commits back to revisions through the
storage API (so links, search, quotas and every other write hook see them as any other write).

The repository (README "Git access"):
- One branch, `main`. Each live page is `<page path>.md` holding its stored text; its attachments
  sit beside it in the folder `<page path>/`. Folders win a clash: an attachment named like a
  sub-page's folder, or whose name ends in `.md` (it would read as a page), is left out of git
  (it stays in the wiki, untouched by pushes).
- Every revision is a commit, oldest first; a pushed commit stays the one commit it was, whatever
  number of revisions it made. A commit's tree is a function of the wiki's live pages and
  attachments right after its revision, so whoever generates a revision's commit gets the same
  one; git_revisions keeps each commit as first served, so ids never change.
- Attachment bytes: robotwtf keeps only an attachment's current bytes, plus (attachment_versions)
  every version written while git access is on. A version whose bytes were not kept (replaced
  before git access was turned on) is absent from the commits after its revision.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import collections
import dataclasses
import hashlib
import io
import logging
import sqlite3
import struct
import threading
import zlib

import bottle
from dulwich.diff_tree import CHANGE_COPY, CHANGE_MODIFY, CHANGE_RENAME, RenameDetector, tree_changes
from dulwich.errors import ApplyDeltaError, ChecksumMismatch, GitProtocolError, HangupException, \
    ObjectFormatException
from dulwich.object_format import SHA1
from dulwich.object_store import MemoryObjectStore
from dulwich.objects import Commit, ShaFile
from dulwich.pack import REF_DELTA, UnpackedObject
from dulwich.protocol import CAPABILITY_ATOMIC, CAPABILITY_FILTER, CAPABILITY_SHALLOW, CAPABILITY_SIDE_BAND_64K, \
    SIDE_BAND_CHANNEL_PROGRESS, ReceivableProtocol
from dulwich.refs import DictRefsContainer
from dulwich.server import ReceivePackHandler, UploadPackHandler

import robotwtf_store as store
import robotwtf_web as web

log = logging.getLogger("robotwtf")
logging.getLogger("dulwich").setLevel(logging.WARNING)  # it logs every request's capabilities at INFO

BLOB, TREE, COMMIT = 3, 2, 1   # git object type numbers (pack format)
FILE_MODE = 0o100644
MAIN = b"refs/heads/main"
ZERO_ID = b"0" * 40
PAGE_SUFFIX = ".md"
REALM = "robotwtf git"
SERVICES = ("git-upload-pack", "git-receive-pack")
MAX_PUSH_COMMITS = 10_000


def _object_id(type_name: bytes, raw: bytes) -> bytes:
    """A git object's id (binary SHA-1 of its header and bytes)."""
    digest = hashlib.sha1(b"%s %d\0" % (type_name, len(raw)))
    digest.update(raw)
    return digest.digest()


def blob_id(data: bytes) -> bytes:
    return _object_id(b"blob", data)


# --- deltas: how a pack sends a new version as the change from the old one --------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _copy_ops(offset: int, size: int) -> bytes:
    """Copy instructions for base[offset:offset+size], at most 64 KiB each as git writes them;
    every offset and size byte is present (a zero byte may be: only an all-zero size means 64 KiB,
    and a chunk is never 0 or 64 KiB)."""
    return b"".join(struct.pack("<BIH", 0xBF, offset + start, min(0xFFFF, size - start))
                    for start in range(0, size, 0xFFFF))


def _common_head(a: bytes, b: bytes, limit: int) -> int:
    """How many leading bytes a and b share (at most limit), by bisection over slice compares
    (each a memcmp; memoryview compares would go element by element)."""
    low, high = 0, limit
    while low < high:
        middle = (low + high + 1) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _common_tail(a: bytes, b: bytes, limit: int) -> int:
    low, high, end_a, end_b = 0, limit, len(a), len(b)
    while low < high:
        middle = (low + high + 1) // 2
        if a[end_a - middle:end_a - low] == b[end_b - middle:end_b - low]:
            low = middle
        else:
            high = middle - 1
    return low


def make_delta(base: bytes, target: bytes) -> bytes | None:
    """A git delta (pack format's "deltified representation") turning base into target: the
    common head and tail copied, the middle inserted. That is what one edit of a page or one
    changed entry of a tree needs, in linear time. None when it is not smaller than target."""
    head = _common_head(base, target, min(len(base), len(target)))
    tail = _common_tail(base, target, min(len(base), len(target)) - head)
    middle = target[head:len(target) - tail]
    out = bytearray(_varint(len(base)) + _varint(len(target)))
    out += _copy_ops(0, head)
    for start in range(0, len(middle), 127):
        chunk = middle[start:start + 127]
        out.append(len(chunk))
        out += chunk
    out += _copy_ops(len(base) - tail, tail)
    return bytes(out) if len(out) < len(target) else None


# --- the tree: a wiki's pages and attachments as git folders ------------------------------------------

class Folder:
    """One folder of the git tree: page files, attachments and sub-folders by name (UTF-8).
    `keys`/`entries` are its tree entries in git's order (a folder's name sorts as if it ended in
    '/'), kept sorted as they change, so serialising it is one join; an attachment named like a
    sub-folder has no entry (folders win). `raw`/`raw_id` are the tree as last serialised; `dirty`
    says something in it changed since, `changed` which sub-folders did."""
    __slots__ = ("keys", "entries", "files", "attachments", "folders", "raw", "raw_id", "dirty", "changed")

    def __init__(self):
        self.keys: list[bytes] = []
        self.entries: list[bytes] = []
        self.files: dict[bytes, bytes] = {}
        self.attachments: dict[bytes, bytes] = {}
        self.folders: dict[bytes, Folder] = {}
        self.raw: bytes | None = None
        self.raw_id: bytes | None = None
        self.dirty = True
        self.changed: set[bytes] = set()

    def _set(self, key: bytes, entry: bytes) -> None:
        i = bisect.bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            self.entries[i] = entry
        else:
            self.keys.insert(i, key)
            self.entries.insert(i, entry)

    def _unset(self, key: bytes) -> None:
        i = bisect.bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            del self.keys[i], self.entries[i]

    def set_file(self, name: bytes, blob: bytes) -> None:
        self.files[name] = blob
        self._set(name, b"100644 %s\0%s" % (name, blob))

    def remove_file(self, name: bytes) -> None:
        if self.files.pop(name, None) is not None:
            self._unset(name)

    def set_attachment(self, name: bytes, blob: bytes) -> None:
        self.attachments[name] = blob
        if name not in self.folders:
            self._set(name, b"100644 %s\0%s" % (name, blob))

    def remove_attachment(self, name: bytes) -> None:
        if self.attachments.pop(name, None) is not None and name not in self.folders:
            self._unset(name)

    def folder(self, name: bytes) -> "Folder":
        """The sub-folder `name`, made if missing, marked changed."""
        sub = self.folders.get(name)
        if sub is None:
            sub = self.folders[name] = Folder()
            self._unset(name)   # an attachment of that name gives way
        sub.dirty = True
        self.changed.add(name)
        return sub

    def remove_folder(self, name: bytes) -> None:
        del self.folders[name]
        self.changed.discard(name)
        self._unset(name + b"/")
        if name in self.attachments:
            self._set(name, b"100644 %s\0%s" % (name, self.attachments[name]))

    def empty(self) -> bool:
        return not (self.files or self.attachments or self.folders)


@dataclasses.dataclass
class PageState:
    path: str
    blob: bytes
    source: int       # a revision whose content is this blob
    live: bool
    files: dict = dataclasses.field(default_factory=dict)  # filename key -> (filename, blob, revision seq)


def shown_in_git(filename: str) -> bool:
    """Whether an attachment can sit beside its page in git: a name ending in .md would read as a page."""
    return not filename.endswith(PAGE_SUFFIX)


class Snapshot:
    """The git view of a wiki right after revision `seq`: its pages, their attachments, the tree,
    and `head`, the id (hex) of the commit showing it."""

    def __init__(self, wiki_id: int):
        self.wiki_id = wiki_id
        self.seq = 0
        self.head: bytes | None = None
        self.pages: dict[int, PageState] = {}
        self.root = Folder()
        self._objects: dict[bytes, tuple] | None = None

    def _walk(self, segments: list[bytes]) -> list[Folder]:
        """The folders from the root down to `segments`, made as needed, all marked changed."""
        chain = [self.root]
        self.root.dirty = True
        for name in segments:
            chain.append(chain[-1].folder(name))
        self._objects = None
        return chain

    @staticmethod
    def _prune(chain: list[Folder], segments: list[bytes]) -> None:
        for depth in range(len(segments), 0, -1):
            if chain[depth].empty():
                chain[depth - 1].remove_folder(segments[depth - 1])

    def place(self, page: PageState) -> None:
        segments = [s.encode() for s in page.path.split("/")]
        self._walk(segments[:-1])[-1].set_file(segments[-1] + PAGE_SUFFIX.encode(), page.blob)
        shown = [(name, blob) for name, blob, _ in page.files.values() if shown_in_git(name)]
        if shown:
            folder = self._walk(segments)[-1]
            for name, blob in shown:
                folder.set_attachment(name.encode(), blob)

    def unplace(self, page: PageState) -> None:
        segments = [s.encode() for s in page.path.split("/")]
        chain = self._walk(segments[:-1])
        chain[-1].remove_file(segments[-1] + PAGE_SUFFIX.encode())
        if any(shown_in_git(name) for name, _, _ in page.files.values()):
            chain = self._walk(segments)
            for name, _, _ in page.files.values():
                chain[-1].remove_attachment(name.encode())
            self._prune(chain, segments)
        else:
            self._prune(chain, segments[:-1])

    def apply(self, rev: "RevisionView") -> bytes | None:
        """The wiki right after revision `rev`; returns its page's blob before (None for a new page)."""
        page = self.pages.get(rev.page_id)
        before = page.blob if page else None
        if page is None:
            page = self.pages[rev.page_id] = PageState(rev.path, rev.page_blob, rev.seq, False)
        elif page.live:
            self.unplace(page)
        page.path, page.live = rev.path, rev.kind != "delete"
        if page.blob != rev.page_blob:
            page.blob, page.source = rev.page_blob, rev.seq
        if rev.kind == "attachment":
            key = rev.attachment.casefold()
            if rev.attachment_blob is None:
                page.files.pop(key, None)
            else:
                page.files[key] = (rev.attachment, rev.attachment_blob, rev.seq)
        if page.live:
            self.place(page)
        self.seq = rev.seq
        return before

    def tree_id(self, emit=None) -> bytes:
        """The root tree's id; `emit(type, id, raw, base_id, base_raw)` gets every tree object that
        changed since the last call."""
        return self._tree(self.root, emit)

    def _tree(self, folder: Folder, emit) -> bytes:
        if not folder.dirty:
            return folder.raw_id
        for name in folder.changed:
            folder._set(name + b"/", b"40000 %s\0%s" % (name, self._tree(folder.folders[name], emit)))
        folder.changed.clear()
        raw = b"".join(folder.entries)
        new_id = _object_id(b"tree", raw)
        if new_id != folder.raw_id:
            if emit is not None:
                emit(TREE, new_id, raw, folder.raw_id, folder.raw)
            folder.raw, folder.raw_id = raw, new_id
        folder.dirty = False
        return new_id

    def index(self) -> dict[bytes, tuple]:
        """Where each tree and blob of this snapshot's tree is: (TREE, bytes), ("page", revision
        seq) or ("attachment", revision seq)."""
        if self._objects is None:
            self.tree_id()
            objects: dict[bytes, tuple] = {}
            stack = [self.root]
            while stack:
                folder = stack.pop()
                objects[folder.raw_id] = (TREE, folder.raw)
                stack.extend(folder.folders.values())
            for page in self.pages.values():
                if page.live:
                    objects.setdefault(page.blob, ("page", page.source))
                    for _, blob, seq in page.files.values():
                        objects.setdefault(blob, ("attachment", seq))
            self._objects = objects
        return self._objects


def read_object(db: sqlite3.Connection, found: tuple | None) -> tuple[int, bytes] | None:
    """(type, bytes) of an object a Snapshot.index entry describes."""
    if found is None:
        return None
    if found[0] == "page":
        return BLOB, db.execute("SELECT content FROM revisions WHERE seq = ?", (found[1],)).fetchone()[0].encode()
    if found[0] == "attachment":
        return BLOB, bytes(db.execute("SELECT data FROM attachment_versions WHERE revision_seq = ?",
                                      (found[1],)).fetchone()[0])
    return found


# --- revisions as git sees them -------------------------------------------------------------------------

@dataclasses.dataclass
class RevisionView:
    """One revision with what git needs of it; `row` is the git_revisions row once one exists."""
    seq: int
    page_id: int
    kind: str
    path: str
    attachment: str | None
    page_blob: bytes
    attachment_blob: bytes | None
    content: bytes | None
    attachment_data: bytes | None
    row: sqlite3.Row


REVISIONS_SQL = """
SELECT r.seq, r.id, r.page_id, r.kind, r.path, r.attachment, r.author_did, r.via, r.message, r.created_at,
       {content} AS content, u.username, u.handle,
       g.revision_seq AS mapped, g.page_blob, g.attachment_blob, g.commit_id, g.commit_raw,
       v.revision_seq AS kept, {data} AS attachment_data
FROM revisions r LEFT JOIN users u ON u.did = r.author_did
LEFT JOIN git_revisions g ON g.revision_seq = r.seq
LEFT JOIN attachment_versions v ON v.revision_seq = r.seq
WHERE r.wiki_id = ? AND r.seq > ? AND r.seq <= ? ORDER BY r.seq"""


UTF8_BYTES = {"sqlite": "CAST(r.content AS BLOB)", "postgresql": "convert_to(r.content, 'UTF8')"}


def _revisions(db: sqlite3.Connection, wiki_id: int, after: int, upto: int, with_bytes: bool):
    """RevisionViews of the wiki's revisions after `after` up to `upto`, oldest first; the pages'
    and attachments' bytes are read when `with_bytes` (to send them) or not yet hashed."""
    content, data = UTF8_BYTES[db.engine], "v.data"   # the page's UTF-8 bytes, as git stores them
    if not with_bytes:
        content, data = (f"CASE WHEN g.revision_seq IS NULL THEN {column} END" for column in (content, data))
    sql = REVISIONS_SQL.format(content=content, data=data)
    for row in db.execute(sql, (wiki_id, after, upto)):
        content = bytes(row["content"]) if row["content"] is not None else None
        data = bytes(row["attachment_data"]) if row["attachment_data"] is not None else None
        if row["mapped"] is not None:
            page_blob = bytes.fromhex(row["page_blob"])
            attachment_blob = bytes.fromhex(row["attachment_blob"]) if row["attachment_blob"] else None
        else:
            page_blob = blob_id(content)
            attachment_blob = blob_id(data) if row["kind"] == "attachment" and data is not None else None
        yield RevisionView(row["seq"], row["page_id"], row["kind"], row["path"], row["attachment"], page_blob,
                           attachment_blob, content, data, row)


def _person(row: sqlite3.Row) -> bytes:
    """A revision's author for git: username and handle, and a stable address derived from the
    DID under .invalid (RFC 2606: it can never reach anyone)."""
    did = row["author_did"]
    if row["username"]:
        name = f"{row['username']} (@{row['handle']})" if row["handle"] else row["username"]
    else:
        name = did
    email = did.removeprefix("did:").replace(":", ".") + "@did.invalid"
    name = "".join(c for c in name if c not in "<>\n\0")   # git's ident line can't hold these
    return f"{name} <{email}> {row['created_at']} +0000".encode()


def commit_for(rev: RevisionView, tree: bytes, parent: bytes | None) -> bytes:
    """The commit object (bytes) a revision made in the browser, by MCP or the CLI gets."""
    person = _person(rev.row)
    message = f"{rev.row['message']}\n\nRevision: {rev.row['id']}\nVia: {rev.row['via']}\n"
    lines = [b"tree " + tree.hex().encode()]
    if parent is not None:
        lines.append(b"parent " + parent)
    lines += [b"author " + person, b"committer " + person, b"", message.encode()]
    return b"\n".join(lines)


@dataclasses.dataclass
class Planned:
    """One object of a pack being put together: whole (`raw`), or as a delta from `base`."""
    type_num: int
    raw: bytes | None
    base: bytes | None = None
    delta: bytes | None = None


class Replay:
    """Revisions applied in order to a snapshot. With `packing`, it collects the git objects they
    add (each new version as a delta from the one before when that one is in the same pack);
    `rows` are the git_revisions rows of revisions no fetch or push had reached yet."""

    def __init__(self, snapshot: Snapshot, packing: bool):
        self.snapshot = snapshot
        self.packing = packing
        self.start: bytes | None = snapshot.head   # the commit the objects lead on from...
        self.end: bytes | None = None               # ...to, once kept as a wiki's latest increment
        self.size = 0                               # bytes of the objects kept
        self.objects: dict[bytes, Planned] = {}
        self.rows: list[tuple] = []
        self._contents: dict[int, tuple[bytes, bytes]] = {}  # page id -> (blob, bytes) sent in this pack

    def emit(self, type_num: int, object_id: bytes, raw: bytes, base_id: bytes | None = None,
             base_raw: bytes | None = None) -> None:
        if object_id in self.objects:
            return
        delta = make_delta(base_raw, raw) if base_id in self.objects and base_raw is not None else None
        self.objects[object_id] = Planned(type_num, raw if delta is None else None, base_id if delta else None, delta)
        self.size += len(raw if delta is None else delta)

    def step(self, rev: RevisionView, pushed: bool = False) -> None:
        """Apply one revision. A revision git has not seen gets its commit, unless it is part of a
        `pushed` commit (whose commit the push records)."""
        snapshot, row = self.snapshot, rev.row
        before = snapshot.apply(rev)
        if self.packing:
            self._emit_blobs(rev, before)
        if pushed:
            self.rows.append([rev.seq, snapshot.wiki_id, rev.page_blob.hex(),
                              rev.attachment_blob.hex() if rev.attachment_blob else None, None, None])
        if pushed or (row["mapped"] is not None and row["commit_id"] is None):
            return   # inside a pushed commit: its last revision shows the commit's tree
        tree = snapshot.tree_id(self.emit if self.packing else None)
        if row["mapped"] is not None:
            commit_id, raw = row["commit_id"].encode(), bytes(row["commit_raw"])
            if raw[5:45] != tree.hex().encode():
                log.error("git: commit %s of wiki %s does not show the tree of its revision", commit_id.decode(),
                          snapshot.wiki_id)
        else:
            raw = commit_for(rev, tree, snapshot.head)
            commit_id = _object_id(b"commit", raw).hex().encode()
            self.rows.append([rev.seq, snapshot.wiki_id, rev.page_blob.hex(),
                              rev.attachment_blob.hex() if rev.attachment_blob else None, commit_id.decode(), raw])
        if self.packing:
            self.emit(COMMIT, bytes.fromhex(commit_id.decode()), raw)
        snapshot.head = commit_id

    def _emit_blobs(self, rev: RevisionView, before: bytes | None) -> None:
        if before != rev.page_blob:
            previous = self._contents.get(rev.page_id)
            self.emit(BLOB, rev.page_blob, rev.content, *(previous or (None, None)))
            self._contents[rev.page_id] = (rev.page_blob, rev.content)
        if rev.attachment_blob is not None:
            self.emit(BLOB, rev.attachment_blob, rev.attachment_data)


# --- where the git view of a wiki stands --------------------------------------------------------------

_locks: dict[tuple, threading.Lock] = collections.defaultdict(threading.Lock)
_locks_lock = threading.Lock()   # guards _locks and the caches below
_snapshots: collections.OrderedDict = collections.OrderedDict()
CACHED_WIKIS = 8


def _cache_key(inst: store.Instance, wiki_id: int) -> tuple[str, int]:
    """A wiki's key in this process's locks and caches: its database (SQLite file or PostgreSQL
    URL; tests run several instances in one process) and its id."""
    return str(inst.cfg.database_location), wiki_id


def wiki_lock(inst: store.Instance, wiki_id: int) -> threading.Lock:
    """One git operation per wiki at a time in this process (they share its cached snapshot)."""
    with _locks_lock:
        return _locks[_cache_key(inst, wiki_id)]


def _mapped_head(db: sqlite3.Connection, wiki_id: int) -> tuple[int, bytes | None]:
    """(seq, commit id) of the newest revision git has seen, (0, None) for none."""
    row = db.execute("SELECT revision_seq, commit_id FROM git_revisions WHERE wiki_id = ? "
                     "ORDER BY revision_seq DESC LIMIT 1", (wiki_id,)).fetchone()
    return (row[0], row[1].encode()) if row else (0, None)


def _latest_seq(db: sqlite3.Connection, wiki_id: int) -> int:
    row = db.execute("SELECT max(seq) FROM revisions WHERE wiki_id = ?", (wiki_id,)).fetchone()
    return row[0] or 0


def _commit_seq(db: sqlite3.Connection, wiki_id: int, commit_id: bytes) -> int | None:
    row = db.execute("SELECT revision_seq FROM git_revisions WHERE wiki_id = ? AND commit_id = ?",
                     (wiki_id, commit_id.decode("ascii", "replace"))).fetchone()
    return row[0] if row else None


def snapshot_at(inst: store.Instance, db: sqlite3.Connection, wiki_id: int, seq: int, head: bytes | None) -> Snapshot:
    """The git view of the wiki right after revision `seq` (a commit `head`): this process's cached
    one if it is that, else built from the database in time proportional to the wiki's pages."""
    key = _cache_key(inst, wiki_id)
    with _locks_lock:
        cached = _snapshots.pop(key, None)
    if cached is not None and cached.seq == seq and cached.head == head:
        return cached
    snapshot = Snapshot(wiki_id)
    snapshot.seq, snapshot.head = seq, head
    if seq == 0:
        return snapshot
    for row in db.execute(
            "SELECT r.page_id, r.kind, r.path, r.seq, g.page_blob FROM pages p "
            "JOIN revisions r ON r.seq = (SELECT max(seq) FROM revisions WHERE page_id = p.id AND seq <= ?) "
            "JOIN git_revisions g ON g.revision_seq = r.seq WHERE p.wiki_id = ?", (seq, wiki_id)):
        snapshot.pages[row["page_id"]] = PageState(row["path"], bytes.fromhex(row["page_blob"]), row["seq"],
                                                   row["kind"] != "delete")
    for row in db.execute(
            "SELECT r.page_id, r.attachment, r.seq, g.attachment_blob FROM revisions r "
            "JOIN git_revisions g ON g.revision_seq = r.seq "
            "WHERE r.wiki_id = ? AND r.kind = 'attachment' AND r.seq <= ? ORDER BY r.seq", (wiki_id, seq)):
        files = snapshot.pages[row["page_id"]].files
        if row["attachment_blob"]:
            files[row["attachment"].casefold()] = (row["attachment"], bytes.fromhex(row["attachment_blob"]), row["seq"])
        else:
            files.pop(row["attachment"].casefold(), None)
    for page in snapshot.pages.values():
        if page.live:
            snapshot.place(page)
    snapshot.tree_id()
    return snapshot


def keep_snapshot(inst: store.Instance, snapshot: Snapshot) -> None:
    with _locks_lock:
        _snapshots[_cache_key(inst, snapshot.wiki_id)] = snapshot
        while len(_snapshots) > CACHED_WIKIS:
            _snapshots.popitem(last=False)


# The objects the last catch-up of each wiki added (at most this many bytes): exactly what a client
# holding the head before it needs, as most fetches do, and for a wiki's first clone all of them.
_increments: collections.OrderedDict = collections.OrderedDict()
MAX_INCREMENT_BYTES = 64 << 20
CACHED_INCREMENTS = 4


def bring_up_to_date(inst: store.Instance, wiki_id: int, packing: bool = False) -> bytes | None:
    """Give every revision git has not seen yet its commit (kept in git_revisions) and return the
    head commit's id. Costs work in proportion to those revisions (plus, once per process, the
    wiki's pages to rebuild its snapshot). With `packing`, the objects they add are kept for the
    fetch that follows. Call with wiki_lock held."""
    db = inst.db()
    with store.read_snapshot(db):
        seq, head = _mapped_head(db, wiki_id)
        latest = _latest_seq(db, wiki_id)
        if latest == seq:
            return head
        replay = Replay(snapshot_at(inst, db, wiki_id, seq, head), packing=packing)
        for rev in _revisions(db, wiki_id, seq, latest, with_bytes=packing):
            replay.step(rev)
    with store.transaction(db):
        db.executemany("INSERT INTO git_revisions (revision_seq, wiki_id, page_blob, attachment_blob, commit_id, "
                       "commit_raw) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", replay.rows)
        seq, head = _mapped_head(db, wiki_id)
    if replay.snapshot.seq == seq and replay.snapshot.head == head:
        keep_snapshot(inst, replay.snapshot)
        if packing and replay.size <= MAX_INCREMENT_BYTES:
            replay.end = head
            with _locks_lock:
                _increments[_cache_key(inst, wiki_id)] = replay
                while len(_increments) > CACHED_INCREMENTS:
                    _increments.popitem(last=False)
    return head


def plan_pack(inst: store.Instance, wiki_id: int, have_seq: int, have: bytes | None) -> Replay:
    """The objects a client holding commit `have` (revision have_seq; 0 and None for nothing)
    needs to reach the head git has seen: the last catch-up's when it started there, else the
    replay of the revisions since."""
    db = inst.db()
    with store.read_snapshot(db):
        seq, head = _mapped_head(db, wiki_id)
        increment = _increments.get(_cache_key(inst, wiki_id))
        if increment is not None and increment.start == have and increment.end == head:
            return increment
        replay = Replay(snapshot_at(inst, db, wiki_id, have_seq, have), packing=True)
        for rev in _revisions(db, wiki_id, have_seq, seq, with_bytes=True):
            replay.step(rev)
    keep_snapshot(inst, replay.snapshot)
    return replay


# --- fetch: what dulwich's upload-pack handler reads ---------------------------------------------------

class _Whole:
    """A whole object as dulwich's pack writer reads it: type_num, as_raw_chunks() and
    sha().digest() (it is its own digest)."""
    __slots__ = ("type_num", "_raw", "_id")

    def __init__(self, type_num: int, raw: bytes, object_id: bytes):
        self.type_num, self._raw, self._id = type_num, raw, object_id

    def as_raw_chunks(self) -> list[bytes]:
        return [self._raw]

    def sha(self):
        return self

    def digest(self) -> bytes:
        return self._id


class WikiObjects:
    """The object store dulwich's upload-pack sees: the wiki's commits (from git_revisions) while
    it negotiates what the client has, then the objects of the planned pack."""

    def __init__(self, repo: "WikiRepo"):
        self.repo = repo
        self.plan: Replay | None = None

    def _commit_raw(self, object_id) -> bytes | None:
        row = self.repo.db.execute("SELECT commit_raw FROM git_revisions WHERE wiki_id = ? AND commit_id = ?",
                                   (self.repo.wiki_id, bytes(object_id).decode("ascii", "replace"))).fetchone()
        return bytes(row[0]) if row else None

    def __contains__(self, object_id) -> bool:
        return _commit_seq(self.repo.db, self.repo.wiki_id, bytes(object_id)) is not None

    def __getitem__(self, object_id):
        if self.plan is not None:
            binary = bytes.fromhex(object_id.decode())
            planned = self.plan.objects[binary]
            if planned.raw is None:   # a delta: its base is in the same pack, so it goes as one
                raise KeyError(object_id)
            return _Whole(planned.type_num, planned.raw, binary)
        raw = self._commit_raw(object_id)
        if raw is None:
            raise KeyError(object_id)
        return Commit.from_raw_string(COMMIT, raw, sha=object_id)

    def common_commits(self, graph_walker) -> list[tuple[int, bytes]]:
        """The client's haves that are commits of ours, acked as found, each with the seq of its
        revision (one lookup per have)."""
        known = []
        sha = next(graph_walker)
        while sha:
            seq = _commit_seq(self.repo.db, self.repo.wiki_id, sha)
            if seq is not None:
                known.append((seq, sha))
                graph_walker.ack(sha)
            sha = next(graph_walker)
        return known

    def iter_unpacked_subset(self, shas, *, include_comp=False, allow_missing=False, convert_ofs_delta=True):
        """The planned deltas (dulwich sends them as they are when their base is in the pack too)."""
        for object_id, planned in self.plan.objects.items():
            if planned.delta is not None and object_id.hex().encode() in shas:
                yield UnpackedObject(REF_DELTA, delta_base=planned.base, decomp_chunks=[planned.delta], sha=object_id)


class WikiRepo:
    """A wiki as the repository dulwich's handlers serve: refs HEAD -> main, and its objects (no
    hooks: a push's checks are Push's)."""
    object_format = SHA1
    hooks: dict = {}

    def __init__(self, inst: store.Instance, wiki_id: int, head: bytes | None):
        self.inst, self.db, self.wiki_id = inst, inst.db(), wiki_id
        self.refs = DictRefsContainer({})
        if head is not None:
            self.refs.set_symbolic_ref(b"HEAD", MAIN)
            self.refs[MAIN] = head
        self.object_store = WikiObjects(self)

    def get_refs(self) -> dict:
        return self.refs.as_dict()

    def get_peeled(self, ref: bytes):
        return self.refs[ref]

    def find_missing_objects(self, determine_wants, graph_walker, progress, *, get_tagged=None, depth=None):
        wants = determine_wants(self.get_refs(), depth)
        if not wants:
            return []
        have_seq, have = max(self.object_store.common_commits(graph_walker), default=(0, None))
        self.object_store.plan = plan_pack(self.inst, self.wiki_id, have_seq, have)
        return [(object_id.hex().encode(), None) for object_id in self.object_store.plan.objects]


class _Backend:
    def __init__(self, repo):
        self.repo = repo

    def open_repository(self, path):
        return self.repo


class WikiUploadPack(UploadPackHandler):
    """upload-pack without shallow clones and partial-clone filters: a full clone is what git
    access is for."""

    def capabilities(self):
        return [c for c in super().capabilities() if c not in (CAPABILITY_SHALLOW, CAPABILITY_FILTER)]


# --- push: pushed commits become revisions ---------------------------------------------------------------

class Refused(Exception):
    """Why a pushed ref update is refused: `reason` goes on git's report-status line (short, shown
    in brackets), `message` is the sentence the person sees in their terminal."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


# What reading a damaged or incomplete pack raises (KeyError: a delta's base is not in the wiki).
UNREADABLE_PACK = (OSError, ValueError, KeyError, AssertionError, zlib.error, ChecksumMismatch, ApplyDeltaError,
                   ObjectFormatException)
PULL_FIRST = Refused("fetch first", "pull first: the wiki changed since your last fetch. Run `git pull --rebase`, "
                                    "then push again.")


class PushObjects(MemoryObjectStore):
    """The pushed pack's objects, with the wiki's current tree behind them: a thin pack's deltas,
    and the folders a commit left unchanged, refer to it."""

    def __init__(self, db: sqlite3.Connection, snapshot: Snapshot):
        super().__init__()
        self._db, self._snapshot = db, snapshot
        self._head = dict(snapshot.index())   # the tree the push starts from, as the snapshot moves on

    def pushed(self, object_id: bytes):
        """An object the push itself sent, or None."""
        found = self._data.get(object_id)
        return found.copy() if found is not None else None

    def __getitem__(self, name):
        object_id = self._to_hexsha(name)
        if object_id in self._data:
            return self._data[object_id].copy()
        binary = bytes.fromhex(object_id.decode())
        found = read_object(self._db, self._head.get(binary) or self._snapshot.index().get(binary))
        if found is None:
            raise KeyError(name)
        return ShaFile.from_raw_string(found[0], found[1], sha=object_id)

    def __contains__(self, name) -> bool:
        try:
            self[name]
        except KeyError:
            return False
        return True


@dataclasses.dataclass(frozen=True)
class GitFile:
    """A file of the repository as robotwtf reads it: the page it is (`filename` None) or the
    page it is attached to."""
    path: str
    page: str
    filename: str | None


def read_git_file(path: bytes) -> GitFile:
    """Where a file of the repository lives in the wiki: `A/B.md` is page A/B, `A/B/x.png` is the
    attachment x.png of page A/B. Refused when the path can't be a page's or attachment's."""
    try:
        text = path.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("path not UTF-8", f"{path!r}: file paths must be UTF-8.") from None
    if text.endswith(PAGE_SUFFIX):
        return GitFile(text, _page_path(text, text[:-len(PAGE_SUFFIX)]), None)
    folder, _, name = text.rpartition("/")
    if not folder:
        raise Refused("not a page", f"{text}: files at the top of the wiki must be pages (NAME.md); an attachment "
                                    "goes in its page's folder (Page.md, Page/file.png).")
    return GitFile(text, _page_path(text, folder), _as_stored(text, name, store.sanitize_filename, "bad file name",
                                                               "attachment"))


def _page_path(git_path: str, path: str) -> str:
    return _as_stored(git_path, path, store.validate_page_path, "bad path", "page", " (trimmed, Unicode NFC)")


def _as_stored(git_path: str, value: str, normalise, reason: str, what: str, how: str = "") -> str:
    """`value` if robotwtf stores it exactly as pushed; refused with the reason otherwise."""
    try:
        kept = normalise(value)
    except store.BadInput as e:
        raise Refused(reason, f"{git_path}: {e.message}") from None
    if kept != value:
        raise Refused(reason, f"{git_path}: robotwtf would keep this {what} as '{kept}'{how}; rename it to that "
                              "and commit again.")
    return value


def _check_mode(path: bytes, mode: int) -> None:
    kind = mode & 0o170000
    shown = path.decode("utf-8", "replace")
    if kind == 0o120000:
        raise Refused("symlink refused", f"{shown} is a symbolic link; robotwtf stores files only (never links).")
    if kind == 0o160000:
        raise Refused("submodule refused", f"{shown} is a submodule; robotwtf stores files only.")
    if mode == 0o100755:
        raise Refused("executable refused", f"{shown} is executable; robotwtf stores plain files. Run "
                                            f"`git update-index --chmod=-x '{shown}'`, commit, and push again.")
    if mode != FILE_MODE:
        raise Refused("mode refused", f"{shown} has file mode {mode:o}; robotwtf stores plain files (100644).")


def page_text_of(file: GitFile, data: bytes) -> str:
    """A pushed page's text, exactly as robotwtf would store it, or Refused saying why not."""
    if len(data) > store.MAX_PAGE_BYTES:
        raise Refused("page too large", f"{file.path} is {len(data)} bytes; a page is at most {store.MAX_PAGE_BYTES} "
                                        "bytes. Split it into several pages.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Refused("page not UTF-8", f"{file.path} is not valid UTF-8 (bad byte at offset {e.start}); pages are "
                                        "UTF-8 text.") from None
    if "\r\n" in text:
        raise Refused("CRLF line endings", f"{file.path} has Windows line endings; robotwtf stores pages with LF. "
                                           "Run `git config core.autocrlf input`, `git add --renormalize .`, commit "
                                           "and push again.")
    try:
        store.validate_content(text)
    except store.RobotError as e:
        raise Refused("bad page", f"{file.path}: {e.message}") from None
    return text


def revision_message(commit: Commit) -> str:
    """A commit's message as a revision's: printable, at most the store's length."""
    text = commit.message.decode("utf-8", "replace").replace("\r\n", "\n")
    text = store.CONTENT_CONTROL_RE.sub("", text)
    text = "".join(c for c in text if c not in store.BIDI_CONTROLS).strip()
    return text[:store.MAX_MESSAGE_CHARS].strip()


@dataclasses.dataclass
class CommitPlan:
    """The store writes one pushed commit needs, in the order they are applied."""
    deleted: list = dataclasses.field(default_factory=list)     # page GitFiles
    renamed: list = dataclasses.field(default_factory=list)     # (old GitFile, new GitFile, text or None)
    written: list = dataclasses.field(default_factory=list)     # (GitFile, text), existing pages
    created: list = dataclasses.field(default_factory=list)     # (GitFile, text)
    detached: list = dataclasses.field(default_factory=list)    # attachment GitFiles removed
    attached: list = dataclasses.field(default_factory=list)    # (GitFile, bytes, blob id)


def _path(entry) -> bytes | None:
    """A tree change side's path; None for the missing side of an addition or deletion."""
    return entry.path if entry is not None else None


def plan_commit(objects: PushObjects, parent_tree: bytes, commit: Commit) -> CommitPlan:
    """What changed from the parent's tree to the commit's, as page and attachment writes (with
    git's own rename detection: 50 % similar). An attachment that moves along with its renamed
    page is no change: it follows the page."""
    plan = CommitPlan()
    removed, added = [], []   # (GitFile, blob id)
    detector = RenameDetector(objects, rename_threshold=50)
    for change in tree_changes(objects, parent_tree, commit.tree, rename_detector=detector):
        if _path(change.new) is not None:
            _check_mode(change.new.path, change.new.mode)
        old = read_git_file(change.old.path) if _path(change.old) is not None and change.type != CHANGE_COPY else None
        new = read_git_file(change.new.path) if _path(change.new) is not None else None
        if change.type == CHANGE_RENAME and old.filename is None and new.filename is None:
            same = change.old.sha == change.new.sha
            plan.renamed.append((old, new, None if same else page_text_of(new, objects[change.new.sha].data)))
        elif change.type == CHANGE_MODIFY and new.filename is None:
            plan.written.append((new, page_text_of(new, objects[change.new.sha].data)))
        elif change.type == CHANGE_MODIFY:
            added.append((new, change.new.sha))
        else:
            removed += [(old, change.old.sha)] if old is not None else []
            added += [(new, change.new.sha)] if new is not None else []
    moved = {store.path_key(old.page): new.page for old, new, _ in plan.renamed}
    deleted = {store.path_key(file.page) for file, _ in removed if file.filename is None}

    def page_after(file: GitFile) -> str:
        return moved.get(store.path_key(file.page), file.page)

    left = {(store.path_key(page_after(f)), f.filename, sha) for f, sha in removed if f.filename is not None}
    for file, sha in added:
        if file.filename is None:
            plan.created.append((file, page_text_of(file, objects[sha].data)))
        elif (store.path_key(file.page), file.filename, sha) in left:
            left.discard((store.path_key(file.page), file.filename, sha))
        else:
            data = objects[sha].data
            if len(data) > store.MAX_ATTACHMENT_BYTES:
                raise Refused("file too large", f"{file.path} is {len(data)} bytes; attachments are at most "
                                                f"{store.MAX_ATTACHMENT_BYTES} bytes (10 MB).")
            plan.attached.append((file, data))
    for file, sha in removed:
        if file.filename is None:
            plan.deleted.append(file)
        elif (store.path_key(page_after(file)), file.filename, sha) in left \
                and store.path_key(file.page) not in deleted:
            plan.detached.append(GitFile(file.path, page_after(file), file.filename))
    return plan


class Push:
    """One push to a wiki by the holder of a personal access token."""

    def __init__(self, inst: store.Instance, wiki: sqlite3.Row, caller: store.TokenCaller, head: bytes | None):
        self.inst, self.db, self.wiki, self.caller, self.head = inst, inst.db(), wiki, caller, head
        self.author = store.Author.git(caller.user_did, caller.name)

    def receive(self, handler: ReceivePackHandler, commands: list) -> list[tuple[bytes, bytes]]:
        """Report-status lines for git's ref update commands: main may move forward, nothing else
        changes. The person sees each refusal's sentence as a `remote:` line."""
        def say(text: str) -> None:
            if handler.has_capability(CAPABILITY_SIDE_BAND_64K):
                handler.proto.write_sideband(SIDE_BAND_CHANNEL_PROGRESS, text.encode() + b"\n")

        verdicts: dict[bytes, Refused | None] = {}
        update = None
        for old, new, ref in commands:
            try:
                self._check_command(old, new, ref)
                update = (old, new)
            except Refused as refusal:
                verdicts[ref] = refusal
        unpack = b"ok"
        if update is not None:
            snapshot = self._head_snapshot()
            objects = PushObjects(self.db, snapshot)
            try:
                objects.add_thin_pack(handler.proto.read, getattr(handler.proto, "recv", None),
                                      max_input_size=self.inst.cfg.max_body_bytes)
            except UNREADABLE_PACK as e:
                log.info("git: unreadable push to %s: %s", self.wiki["slug"], e)
                unpack = b"error " + str(e).replace("\n", " ")[:200].encode()
                verdicts[MAIN] = Refused("unpacker error", "robotwtf could not read the pushed objects; try again.")
            else:
                try:
                    verdicts[MAIN] = None
                    say(self._apply(objects, snapshot, *update))
                except Refused as refusal:
                    verdicts[MAIN] = refusal
        statuses = [(b"unpack", unpack)]
        for _, _, ref in commands:
            refusal = verdicts.get(ref)
            if refusal is not None:
                say(refusal.message)
            statuses.append((ref, b"ok" if refusal is None else refusal.reason.encode()))
        return statuses

    def _check_command(self, old: bytes, new: bytes, ref: bytes) -> None:
        if ref != MAIN:
            if ref.startswith(b"refs/tags/"):
                raise Refused("tags are not kept", "robotwtf keeps one branch, main, and no tags; push main only "
                                                   "(git push origin main).")
            raise Refused("only main is kept", "robotwtf keeps one branch, main: push your work to it "
                                               "(git push origin HEAD:main).")
        if new == ZERO_ID:
            raise Refused("main can't be deleted", "The wiki's main branch can't be deleted.")
        if old != self.head:
            raise PULL_FIRST

    def _head_snapshot(self) -> Snapshot:
        with store.read_snapshot(self.db):
            seq, head = _mapped_head(self.db, self.wiki["id"])
            return snapshot_at(self.inst, self.db, self.wiki["id"], seq, head)

    def _new_commits(self, objects: PushObjects, old: bytes, new: bytes) -> list[Commit]:
        """The pushed commits from main's head to `new`, oldest first: each must add to the one
        before (a straight line, no merges)."""
        chain, object_id = [], new
        while object_id != old:
            commit = objects.pushed(object_id)
            if commit is None:
                raise Refused("non-fast-forward", "main was rewritten (a force push?): robotwtf keeps every revision, "
                                                  "so a push may only add commits on top of the wiki's main. Run "
                                                  "`git pull --rebase`, then push again.")
            if not isinstance(commit, Commit):
                raise Refused("not a commit", "main must point at a commit.")
            if len(commit.parents) != 1:
                raise Refused("merge commit refused", f"commit {object_id[:10].decode()} is a merge; robotwtf keeps a "
                                                      "straight history. Run `git pull --rebase` (or rebase onto "
                                                      "origin/main) and push again.")
            if len(chain) >= MAX_PUSH_COMMITS:
                raise Refused("too many commits", f"A push may add at most {MAX_PUSH_COMMITS} commits; push in parts.")
            chain.append(commit)
            object_id = commit.parents[0]
        return chain[::-1]

    def _apply(self, objects: PushObjects, snapshot: Snapshot, old: bytes, new: bytes) -> str:
        """Every pushed commit as revisions, all in one transaction: any refusal leaves the wiki as
        it was. Each commit's tree must be exactly what robotwtf then shows (so the pusher's commit
        ids are the wiki's)."""
        wiki_id = self.wiki["id"]
        chain = self._new_commits(objects, old, new)
        plans, parent_tree = [], snapshot.tree_id().hex().encode()
        for commit in chain:
            plans.append(plan_commit(objects, parent_tree, commit))
            parent_tree = commit.tree
        made = 0
        with store.transaction(self.db):
            seq, head = _mapped_head(self.db, wiki_id)
            if head != old or _latest_seq(self.db, wiki_id) != seq or snapshot.head != head:
                raise PULL_FIRST
            replay = Replay(snapshot, packing=False)
            before = seq
            for commit, plan in zip(chain, plans):
                self._write(plan, revision_message(commit))
                after = _latest_seq(self.db, wiki_id)
                revisions = list(_revisions(self.db, wiki_id, before, after, with_bytes=False))
                before = after
                if not revisions:
                    raise Refused("empty commit", f"commit {commit.id[:10].decode()} changes no file; robotwtf keeps "
                                                  "only commits that change the wiki. Drop it (git rebase -i) and "
                                                  "push again.")
                for rev in revisions:
                    replay.step(rev, pushed=True)
                tree = snapshot.tree_id().hex().encode()
                if tree != commit.tree:
                    raise Refused("tree not kept as pushed", self._difference(objects, tree, commit))
                replay.rows[-1][4:] = [commit.id.decode(), commit.as_raw_string()]
                snapshot.head = commit.id
                made += len(revisions)
            self.db.executemany("INSERT INTO git_revisions (revision_seq, wiki_id, page_blob, attachment_blob, "
                                "commit_id, commit_raw) VALUES (?, ?, ?, ?, ?, ?)", replay.rows)
        keep_snapshot(self.inst, snapshot)
        return f"robotwtf: {len(chain)} commit(s) saved as {made} revision(s) of {self.wiki['slug']}."

    def _write(self, plan: CommitPlan, message: str) -> None:
        """One commit's changes through the storage API, in an order that frees paths before they
        are reused and gives attachments their pages first."""
        db, wiki_id, author, quotas = self.db, self.wiki["id"], self.author, self.inst.cfg.quotas
        steps = [*((f, lambda f=f: store.delete_page(db, wiki_id, f.page, author=author, message=message))
                   for f in plan.deleted),
                 *((new, lambda old=old, new=new, text=text: self._rename(old, new, text, message))
                   for old, new, text in plan.renamed),
                 *((f, lambda f=f, text=text: store.write_page(
                     db, wiki_id, f.page, text, store.page_info(db, wiki_id, f.page).revision, author=author,
                     quotas=quotas, message=message)) for f, text in plan.written),
                 *((f, lambda f=f, text=text: store.write_page(db, wiki_id, f.page, text, author=author, quotas=quotas,
                                                               message=message)) for f, text in plan.created),
                 *((f, lambda f=f: store.delete_attachment(db, wiki_id, f.page, f.filename, author=author,
                                                           message=message)) for f in plan.detached),
                 *((f, lambda f=f, data=data: store.put_attachment(db, wiki_id, f.page, f.filename, data, author=author,
                                                                   quotas=quotas, message=message))
                   for f, data in plan.attached)]
        for file, step in steps:
            try:
                step()
            except store.RobotError as e:
                raise Refused(e.code.replace("_", " "), f"{file.path}: {e.message}") from None

    def _rename(self, old: GitFile, new: GitFile, text: str | None, message: str) -> None:
        db, wiki_id = self.db, self.wiki["id"]
        moved = store.rename_page(db, wiki_id, old.page, new.page, author=self.author, message=message,
                                  rewrite_links=False)
        if text is not None:
            store.write_page(db, wiki_id, new.page, text, moved.revision, author=self.author,
                             quotas=self.inst.cfg.quotas, message=message)

    @staticmethod
    def _difference(objects: PushObjects, ours: bytes, commit: Commit) -> str:
        """The first file where the pushed tree and the one robotwtf would keep differ, in words."""
        for change in tree_changes(objects, ours, commit.tree):
            if _path(change.old) is None:
                where = (f"{change.new.path.decode('utf-8', 'replace')} is in your commit but robotwtf would not "
                         "keep it there")
            elif _path(change.new) is None:
                where = f"{change.old.path.decode('utf-8', 'replace')} is missing from your commit"
            else:
                where = f"{change.new.path.decode('utf-8', 'replace')} would be kept differently"
            return (f"commit {commit.id[:10].decode()}: {where}. An attachment needs its page's .md file beside its "
                    "folder, and can't be named like a sub-page's folder.")
        return f"commit {commit.id[:10].decode()} can't be kept as pushed."


class WikiReceivePack(ReceivePackHandler):
    """receive-pack whose ref updates are pushes to the wiki (no atomic pushes: there is one ref)."""
    push: Push

    def capabilities(self):
        return [c for c in super().capabilities() if c != CAPABILITY_ATOMIC]

    def _receive_max_input_size(self) -> int:
        return self.push.inst.cfg.max_body_bytes

    def _apply_pack(self, refs):
        return self.push.receive(self, refs)


# --- HTTP: git's smart protocol (info/refs, git-upload-pack, git-receive-pack) -------------------------

NO_REPOSITORY = ("There is no git repository here: the wiki does not exist, its git access is off, or your "
                 "token gives you no access to it.")


class HttpRefusal(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _challenge(message: str) -> HttpRefusal:
    """401 with a Basic challenge: git asks for (or sends) credentials only after one."""
    return HttpRefusal(401, message, {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'})


@dataclasses.dataclass(frozen=True)
class GitAccess:
    wiki: sqlite3.Row
    scopes: frozenset
    caller: store.TokenCaller | None


def _presented_token(authorization: str | None) -> str | None:
    """The token in an Authorization header: HTTP Basic's password (any user name; the user name
    when the password is empty) or a Bearer token. None without the header."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise _challenge("The Authorization header is not valid HTTP Basic credentials.") from None
        return password or user
    raise _challenge("Send a personal access token as the password (HTTP Basic) or as Authorization: Bearer.")


def authorize(inst: store.Instance, slug: str, write: bool) -> GitAccess:
    """Who may do what with the wiki's repository (CONTRACT §7). Without credentials, a private
    wiki, a wiki with git off and one that does not exist all get the same 401 challenge; with
    credentials, all three and "no access" get the same 404."""
    db = inst.db()
    wiki = db.execute("SELECT wikis.* FROM wikis JOIN git_access ON git_access.wiki_id = wikis.id WHERE slug = ?",
                      (slug,)).fetchone()
    public = wiki is not None and wiki["visibility"] == "public"
    token = _presented_token(bottle.request.get_header("Authorization"))
    if token is None:
        if public and not write:
            return GitAccess(wiki, frozenset({"wiki:read"}), None)
        raise _challenge("Sign in with a personal access token of this wiki as the password (any user name).")
    if not token.startswith(store.PERSONAL_TOKEN_PREFIX):
        raise _challenge("Git takes personal access tokens (from your account's apps page or `robotwtf token "
                         "create`); the tokens MCP apps get work only on the MCP endpoint.")
    try:
        caller = store.personal_token_caller(db, token)
    except store.Unauthorized as refusal:
        raise _challenge(refusal.message) from None
    own = wiki is not None and caller.wiki_id == wiki["id"] and bool(caller.scopes)
    scopes = (caller.scopes if own else frozenset()) | (frozenset({"wiki:read"}) if public else frozenset())
    if not scopes:
        raise HttpRefusal(404, NO_REPOSITORY)
    if write and "wiki:write" not in scopes:
        raise HttpRefusal(403, "Your access to this wiki is read-only (a viewer, or a token without wiki:write), "
                               "so you can't push to it.")
    if not write and "wiki:read" not in scopes:
        raise HttpRefusal(403, "This token can't read the wiki (it lacks wiki:read); make one that can.")
    return GitAccess(wiki, scopes, caller if own else None)


def _limit(inst: store.Instance, access: GitAccess, write: bool) -> None:
    """Fetches are reads with their own generous limit; a push also counts as one write."""
    key = f"git:token:{access.caller.token_id}" if access.caller else f"git:ip:{web.client_ip()}"
    try:
        inst.limiter.hit(key, inst.cfg.git_per_minute, "Too many git requests; wait a minute.")
        if write:
            inst.limiter.hit(key + ":writes", inst.cfg.writes_per_minute,
                             "Too many changes in a short time; wait a minute, then push again.")
    except store.RateLimited as limited:
        raise HttpRefusal(429, limited.message, {"Retry-After": str(limited.retry_after)}) from None


def _request_body(limit: int) -> bytes:
    """The POST body, un-gzipped if git compressed it (it does for long fetch negotiations)."""
    body = bottle.request.body.read()
    if bottle.request.get_header("Content-Encoding", "").lower() in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error:
            raise HttpRefusal(400, "The request body is not valid gzip.") from None
        if len(body) > limit or inflater.unconsumed_tail:
            raise HttpRefusal(413, "The request is too large.")
    return body


def _answer(work):
    """Run one git request; refusals and protocol errors become plain-text answers git shows."""
    try:
        return work()
    except HttpRefusal as refusal:
        return _plain(refusal.status, refusal.message, refusal.headers)
    except (GitProtocolError, HangupException) as e:
        return _plain(400, f"Git protocol error: {e}")


def _plain(status: int, message: str, headers: dict | None = None) -> bottle.HTTPResponse:
    return bottle.HTTPResponse(message + "\n", status, {"Content-Type": "text/plain; charset=utf-8",
                                                      "Cache-Control": "no-store", **(headers or {})})


def _result(service: str, kind: str, body: bytes) -> bottle.HTTPResponse:
    return bottle.HTTPResponse(body, 200, {"Content-Type": f"application/x-{service}-{kind}",
                                           "Cache-Control": "no-cache, max-age=0, must-revalidate",
                                           "Expires": "Fri, 01 Jan 1980 00:00:00 GMT", "Pragma": "no-cache"})


def info_refs(slug: str):
    """GET …/info/refs?service=…: the ref advertisement (after giving new revisions their commits)."""
    def work():
        service = bottle.request.query.get("service", "")
        if service not in SERVICES:
            raise HttpRefusal(400, "robotwtf serves git's smart HTTP protocol only; use git 1.6.6 or newer.")
        inst, write = web.instance(), service == "git-receive-pack"
        access = authorize(inst, slug, write)
        _limit(inst, access, write=False)
        with wiki_lock(inst, access.wiki["id"]):
            head = bring_up_to_date(inst, access.wiki["id"], packing=not write)
        out = io.BytesIO()
        proto = ReceivableProtocol(io.BytesIO().read, out.write)
        handler_class = WikiReceivePack if write else WikiUploadPack
        handler = handler_class(_Backend(WikiRepo(inst, access.wiki["id"], head)), [""], proto,
                                stateless_rpc=True, advertise_refs=True)
        proto.write_pkt_line(f"# service={service}\n".encode())
        proto.write_pkt_line(None)
        handler.handle()
        return _result(service, "advertisement", out.getvalue())
    return _answer(work)


def _service(slug: str, service: str):
    inst, write = web.instance(), service == "git-receive-pack"
    if bottle.request.content_type != f"application/x-{service}-request":
        raise HttpRefusal(415, f"A {service} request must be sent as application/x-{service}-request.")
    access = authorize(inst, slug, write)
    _limit(inst, access, write)
    body = _request_body(inst.cfg.max_body_bytes)
    out = io.BytesIO()
    proto = ReceivableProtocol(io.BytesIO(body).read, out.write)
    wiki_id = access.wiki["id"]
    with wiki_lock(inst, wiki_id):
        head = _mapped_head(inst.db(), wiki_id)[1]
        repo = WikiRepo(inst, wiki_id, head)
        if write:
            handler = WikiReceivePack(_Backend(repo), [""], proto, stateless_rpc=True)
            handler.push = Push(inst, access.wiki, access.caller, head)
        else:
            handler = WikiUploadPack(_Backend(repo), [""], proto, stateless_rpc=True)
        handler.handle()
    return _result(service, "result", out.getvalue())


def upload_pack(slug: str):
    """POST …/git-upload-pack: a fetch or clone."""
    return _answer(lambda: _service(slug, "git-upload-pack"))


def receive_pack(slug: str):
    """POST …/git-receive-pack: a push."""
    return _answer(lambda: _service(slug, "git-receive-pack"))


# --- the owner's switch -------------------------------------------------------------------------------------

@web.requires_member("owner")
def settings_git(wiki: web.WikiAccess):
    """POST /w/<slug>/-/settings/git: turn git access on or off from the settings page."""
    store.set_git_access(web.instance().db(), wiki.id, web.form_text("git") == "on")
    return web.redirect(wiki.url("settings") + "#git")
