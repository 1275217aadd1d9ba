"""Git access (issue 13, CONTRACT §7): Debian's real `git` client over real HTTP against a real
robotwtf server: clone, pull and push; every refused push with the exact sentence the person sees
and nothing applied; who may fetch and push; commit ids that survive a restart and a restore."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import robotwtf_git
import robotwtf_store as store
from conftest import CLI, base_env, database_for, start_server
from mcp_client import Endpoint
from oauth_flow import World, csrf_of

TESTER = {"GIT_AUTHOR_NAME": "Tess Tester", "GIT_AUTHOR_EMAIL": "tess@example.invalid",
          "GIT_COMMITTER_NAME": "Tess Tester", "GIT_COMMITTER_EMAIL": "tess@example.invalid"}


def git_env() -> dict:
    """git with no user or system configuration, no credential helper and no prompts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="",
               SSH_ASKPASS="", **TESTER)
    return env


def git(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    assert shutil.which("git"), "these tests need Debian's git client: apt-get install git"
    result = subprocess.run(["git", "-c", "credential.helper=", "-c", "init.defaultBranch=main",
                             "-c", "core.autocrlf=false", *args], cwd=cwd, env=git_env(),
                            capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("git") / "data")
    yield World(srv)
    srv.stop()


class Wiki:
    """A wiki with git access on, its owner, and a personal access token of theirs."""

    def __init__(self, world: World, public: bool = False):
        self.world, self.db = world, world.db
        self.owner = world.person()
        self.slug = world.wiki(self.owner)
        self.id = store.get_wiki(self.db, self.slug)["id"]
        if public:
            store.update_wiki(self.db, self.id, visibility="public")
        store.set_git_access(self.db, self.id, True)
        self.token = self.token_for(self.owner, name="laptop")
        self.author = store.Author.token(self.owner, "pytest")

    def token_for(self, did: str, scope: str = "wiki:read wiki:write", name: str = "git") -> str:
        return store.create_personal_token(self.db, did, self.slug, store.parse_scopes(scope), name)

    def url(self, token: str | None = "") -> str:
        server = self.world.server.url
        token = self.token if token == "" else token
        return server.replace("http://", f"http://x:{token}@") + f"/w/{self.slug}.git" if token \
            else f"{server}/w/{self.slug}.git"

    def clone(self, where: Path, token: str | None = "") -> Path:
        git("clone", "-q", self.url(token), str(where), cwd=where.parent)
        return where

    def revisions(self) -> list:
        return self.db.execute("SELECT seq, kind, path, attachment, via, message FROM revisions WHERE wiki_id = ? "
                               "ORDER BY seq", (self.id,)).fetchall()

    def pages(self) -> dict[str, str]:
        return {p.path: store.read_page(self.db, self.id, p.path).content for p in store.list_pages(self.db, self.id)}

    def files(self, path: str) -> dict[str, bytes]:
        return {a.filename: store.get_attachment(self.db, self.id, path, a.filename).data
                for a in store.list_attachments(self.db, self.id, path)}

    def write(self, path: str, content: str) -> None:
        """A change made outside git (what the browser and MCP tools call)."""
        row = self.db.execute("SELECT revision_id FROM pages WHERE wiki_id = ? AND path = ? AND deleted_at IS NULL",
                              (self.id, path)).fetchone()
        store.write_page(self.db, self.id, path, content, row[0] if row else "", author=self.author,
                         quotas=self.world.inst.cfg.quotas)


def commit_all(repo: Path, message: str) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)


def push(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return git("push", *args, cwd=repo, check=check)


def head(repo: Path, ref: str = "HEAD") -> str:
    return git("rev-parse", ref, cwd=repo).stdout.strip()


def remote_head(repo: Path) -> str:
    return git("ls-remote", "origin", "refs/heads/main", cwd=repo).stdout.split()[0]


def tracked(repo: Path) -> dict[str, bytes]:
    names = git("ls-files", "-z", cwd=repo).stdout.split("\0")
    return {name: (repo / name).read_bytes() for name in names if name}


# --- clone -------------------------------------------------------------------------------------------

def test_clone_shows_the_default_pages_with_every_revision_as_a_commit(world, tmp_path):
    wiki = Wiki(world)
    repo = wiki.clone(tmp_path / "clone")
    assert tracked(repo) == {f"{path}.md": content.encode() for path, content in wiki.pages().items()}
    assert git("symbolic-ref", "HEAD", cwd=repo).stdout.strip() == "refs/heads/main"
    log = git("log", "--reverse", "--format=%an <%ae>%n%s%n%b%x00", cwd=repo).stdout.split("\0")[:-1]
    revisions = wiki.revisions()
    assert len(log) == len(revisions) == 3
    user = store.get_user(wiki.db, wiki.owner)
    email = wiki.owner.removeprefix("did:").replace(":", ".") + "@did.invalid"
    for entry, revision in zip(log, revisions):
        author, subject = entry.strip().split("\n")[:2]
        assert author == f"{user['username']} <{email}>"
        assert subject == revision["message"]
    git("fsck", "--strict", cwd=repo)


def test_clone_of_an_empty_wiki(world, tmp_path):
    wiki = Wiki(world)
    for path in list(wiki.pages()):
        store.delete_page(wiki.db, wiki.id, path, author=wiki.author)
    repo = wiki.clone(tmp_path / "clone")
    assert tracked(repo) == {}
    assert int(git("rev-list", "--count", "HEAD", cwd=repo).stdout) == 6


def test_clone_of_a_thousand_pages_with_history_and_attachments(world, tmp_path):
    wiki = Wiki(world)
    quotas, author = world.inst.cfg.quotas, wiki.author
    for i in range(1000):
        store.write_page(wiki.db, wiki.id, f"Area {i % 7}/Page {i:04d}", f"# Page {i}\n\nSee [[Home]].\n",
                         author=author, quotas=quotas)
    for i in range(0, 1000, 9):
        wiki.write(f"Area {i % 7}/Page {i:04d}", f"# Page {i}\n\nEdited.\n")
    for i in range(1, 1000, 50):
        store.rename_page(wiki.db, wiki.id, f"Area {i % 7}/Page {i:04d}", f"Moved/Page {i:04d}", author=author)
    for i in range(2, 1000, 100):
        store.delete_page(wiki.db, wiki.id, f"Area {i % 7}/Page {i:04d}", author=author)
    for version in (b"diagram, first version\n", b"diagram, second version\n"):
        store.put_attachment(wiki.db, wiki.id, "Area 3/Page 0003", "diagram.svg", version, author=author,
                             quotas=quotas)
    store.put_attachment(wiki.db, wiki.id, "Home", "notes.md", b"an attachment named like a page", author=author,
                         quotas=quotas)
    repo = wiki.clone(tmp_path / "clone")
    expected = {f"{path}.md": content.encode() for path, content in wiki.pages().items()}
    expected["Area 3/Page 0003/diagram.svg"] = b"diagram, second version\n"
    assert tracked(repo) == expected   # Home/notes.md is left out: it would read as a page
    assert int(git("rev-list", "--count", "HEAD", cwd=repo).stdout) == len(wiki.revisions())
    assert git("show", "HEAD~2:Area 3/Page 0003/diagram.svg", cwd=repo).stdout == "diagram, first version\n"
    git("fsck", "--strict", cwd=repo)


def test_attachments_written_before_git_was_turned_on_are_in_the_clone(world, tmp_path):
    wiki = Wiki(world)
    store.set_git_access(wiki.db, wiki.id, False)
    quotas = world.inst.cfg.quotas
    wiki.write("Plants", "# Plants\n")
    for name, data in [("Ärger.txt", b"first"), ("Ärger.txt", b"second"), ("photo.png", b"\x89PNG photo")]:
        store.put_attachment(wiki.db, wiki.id, "Plants", name, data, author=wiki.author, quotas=quotas)
    store.set_git_access(wiki.db, wiki.id, True)
    files = tracked(wiki.clone(tmp_path / "clone"))
    assert files["Plants/Ärger.txt"] == b"second" and files["Plants/photo.png"] == b"\x89PNG photo"


def test_an_attachment_named_like_a_sub_pages_folder_is_left_out(world, tmp_path):
    wiki = Wiki(world)
    quotas = world.inst.cfg.quotas
    wiki.write("Plants", "# Plants\n")
    store.put_attachment(wiki.db, wiki.id, "Plants", "Tomato", b"a file called Tomato", author=wiki.author,
                         quotas=quotas)
    repo = wiki.clone(tmp_path / "before")
    assert tracked(repo)["Plants/Tomato"] == b"a file called Tomato"
    wiki.write("Plants/Tomato/Seeds", "# Seeds\n")
    git("pull", "-q", cwd=repo)
    files = tracked(repo)
    assert "Plants/Tomato" not in files and files["Plants/Tomato/Seeds.md"] == b"# Seeds\n"
    assert wiki.files("Plants") == {"Tomato": b"a file called Tomato"}   # still in the wiki


# --- push and pull -----------------------------------------------------------------------------------

def test_push_becomes_revisions_seen_in_the_browser_and_by_mcp(world, tmp_path):
    wiki = Wiki(world)
    repo = wiki.clone(tmp_path / "clone")
    before = len(wiki.revisions())
    (repo / "Home.md").write_text((repo / "Home.md").read_text() + "\nA line from my editor.\n")
    (repo / "Ideas.md").write_text("# Ideas\n\nSee [[Home]].\n")
    commit_all(repo, "Notes from the train")
    pushed = push(repo)
    assert "robotwtf: 1 commit(s) saved as 2 revision(s)" in pushed.stderr
    assert remote_head(repo) == head(repo)
    new = wiki.revisions()[before:]
    assert [(r["kind"], r["path"], r["via"], r["message"]) for r in new] == [
        ("update", "Home", "git:laptop", "Notes from the train"),
        ("create", "Ideas", "git:laptop", "Notes from the train")]
    assert wiki.pages()["Ideas"] == "# Ideas\n\nSee [[Home]].\n"
    assert "Ideas" in store.page_links(wiki.db, wiki.id, "Home").linked_from
    assert [hit.path for hit in store.search_pages(wiki.db, wiki.id, "editor")] == ["Home"]
    browser = world.browser(wiki.owner)
    history = browser.get(f"{world.server.url}/w/{wiki.slug}/-/history/Home")
    assert history.status_code == 200 and "Notes from the train" in history.text
    mcp = Endpoint(f"{world.server.url}/w/{wiki.slug}/mcp", wiki.token)
    latest = mcp.ok("get_history", path="Ideas")["structuredContent"]["history"][0]
    assert latest["message"] == "Notes from the train" and latest["via"] == "git:laptop"


def test_pull_after_a_browser_edit(world, tmp_path):
    wiki = Wiki(world)
    repo = wiki.clone(tmp_path / "clone")
    browser = world.browser(wiki.owner)
    form = browser.get(f"{world.server.url}/w/{wiki.slug}/-/edit/Home").text
    csrf_token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form).group(1)
    base = re.search(r'name="base_revision" value="([0-9a-f]+)"', form).group(1)
    saved = browser.post(f"{world.server.url}/w/{wiki.slug}/-/edit/Home", allow_redirects=False,
                         data={"csrf_token": csrf_token, "base_revision": base, "content": "# Home\n\nFrom the browser.\n",
                               "message": "Browser edit"})
    assert saved.status_code == 303, saved.text
    git("pull", "-q", cwd=repo)
    assert (repo / "Home.md").read_text() == "# Home\n\nFrom the browser.\n"
    assert git("log", "-1", "--format=%s", cwd=repo).stdout.strip() == "Browser edit"


def test_a_stale_push_is_refused_then_pull_rebase_and_push_keep_both(world, tmp_path):
    wiki = Wiki(world)
    repo = wiki.clone(tmp_path / "clone")
    (repo / "Mine.md").write_text("# Mine\n")
    commit_all(repo, "Mine")
    wiki.write("Theirs", "# Theirs\n")
    refused = push(repo, check=False)
    assert refused.returncode != 0 and "[rejected]" in refused.stderr
    assert "Mine" not in wiki.pages()
    git("pull", "-q", "--rebase", cwd=repo)
    push(repo)
    assert {"Mine", "Theirs"} <= set(wiki.pages())
    assert remote_head(repo) == head(repo)


# A browser edit, written by a separate process while git is between its fetch and its push.
RACER = """import sys
sys.path.insert(0, sys.argv[1])
import robotwtf_store as store
db = store.open_database(sys.argv[2] if store.is_postgres_url(sys.argv[2]) else store.Path(sys.argv[2]), create=False)
wiki = store.get_wiki(db, sys.argv[3])
store.write_page(db, wiki["id"], "Racer", "# Racer\\n", author=store.Author(sys.argv[4], "web"),
                 quotas=store.Quotas(100, 10**9, 10))
"""


def test_a_change_between_fetch_and_push_is_never_merged_silently(world, tmp_path):
    """git's pre-push hook runs after the server advertised main and before the pack is sent:
    a browser edit made there is exactly the race the server must catch."""
    wiki = Wiki(world)
    repo = wiki.clone(tmp_path / "clone")
    racer = tmp_path / "racer.py"
    racer.write_text(RACER)
    hook = repo / ".git" / "hooks" / "pre-push"
    hook.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{racer}' '{Path(store.__file__).parent}' "
                    f"'{database_for(world.server.data)}' '{wiki.slug}' '{wiki.owner}'\n")
    hook.chmod(0o755)
    (repo / "Mine.md").write_text("# Mine\n")
    commit_all(repo, "Mine")
    refused = push(repo, check=False)
    assert refused.returncode != 0
    assert "remote: pull first: the wiki changed since your last fetch" in refused.stderr
    assert re.search(r"\[rejected\] +main -> main \(fetch first\)", refused.stderr), refused.stderr
    assert "Mine" not in wiki.pages() and "Racer" in wiki.pages()
    hook.unlink()
    git("pull", "-q", "--rebase", cwd=repo)
    push(repo)
    assert {"Mine", "Racer"} <= set(wiki.pages())


def test_add_change_delete_and_rename_pages_and_attachments(world, tmp_path):
    wiki = Wiki(world)
    quotas = world.inst.cfg.quotas
    wiki.write("Plants", "# Plants\n\nSee [[Plants/Tomato]].\n")
    wiki.write("Plants/Tomato", "# Tomato\n\n" + "A red fruit that grows on a vine.\n" * 20)
    wiki.write("Old", "# Old\n")
    for name, data in (("photo.png", b"\x89PNG\r\n\x1a\nphoto"), ("notes.txt", b"seed notes\n"),
                       ("Spare.TXT", b"spare\n")):
        store.put_attachment(wiki.db, wiki.id, "Plants/Tomato", name, data, author=wiki.author, quotas=quotas)
    repo = wiki.clone(tmp_path / "clone")
    git("rm", "-q", "Old.md", "Plants/Tomato/notes.txt", cwd=repo)
    git("mv", "Plants/Tomato.md", "Plants/Red Tomato.md", cwd=repo)    # the page moves...
    git("mv", "Plants/Tomato", "Plants/Red Tomato", cwd=repo)          # ...and its attachments with it
    git("mv", "Plants/Red Tomato/Spare.TXT", "Plants/Red Tomato/spare.txt", cwd=repo)
    (repo / "Plants/Red Tomato/photo.png").write_bytes(b"\x89PNG\r\n\x1a\nbetter photo")
    (repo / "Plants.md").write_text("# Plants\n\nSee [[Plants/Red Tomato]].\n")
    (repo / "Plants/Red Tomato/seeds.csv").write_bytes(b"variety,days\ncherry,60\n")
    commit_all(repo, "Reorganise the tomato")
    push(repo)
    pages = wiki.pages()
    assert "Plants/Tomato" not in pages and "Old" not in pages
    assert pages["Plants/Red Tomato"].startswith("# Tomato")
    assert wiki.files("Plants/Red Tomato") == {"photo.png": b"\x89PNG\r\n\x1a\nbetter photo",
                                               "seeds.csv": b"variety,days\ncherry,60\n", "spare.txt": b"spare\n"}
    kinds = [(r["kind"], r["path"]) for r in wiki.revisions()[-9:]]
    assert ("rename", "Plants/Red Tomato") in kinds and ("delete", "Old") in kinds
    history = store.page_history(wiki.db, wiki.id, "Plants/Red Tomato", limit=50)
    assert [r.kind for r in history][-1] == "create"    # the history followed the rename
    fresh = wiki.clone(tmp_path / "fresh")
    assert head(fresh) == head(repo) and tracked(fresh) == tracked(repo)


def _bad_push(wiki: Wiki, repo: Path, *args: str) -> str:
    """Push; it must be refused and change nothing. Returns what git printed."""
    before, remote = wiki.revisions(), remote_head(repo)
    refused = push(repo, *args, check=False)
    assert refused.returncode != 0, refused.stderr
    assert wiki.revisions() == before and remote_head(repo) == remote
    return refused.stderr


def make_page(repo: Path, name: str, data: bytes = b"# fine\n") -> None:
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_bytes(data)


BAD_COMMITS = {
    "page path with a reserved start": (lambda r: make_page(r, "-x.md"), "has a segment starting with '-'"),
    "reserved top page": (lambda r: make_page(r, "mcp.md"), "'mcp' is reserved at the top of a wiki"),
    "link syntax in a path": (lambda r: make_page(r, "a|b.md"), "may not contain [ ] | # or \\"),
    "top-level file": (lambda r: make_page(r, "notes.txt"), "files at the top of the wiki must be pages"),
    "attachment without page": (lambda r: make_page(r, "Nowhere/x.png", b"png"), "Page not found: 'Nowhere'"),
    "hidden folder": (lambda r: make_page(r, "Home/.secret/x.md"), "hidden names such as '.git' are not allowed"),
    "not UTF-8": (lambda r: make_page(r, "Latin.md", "caf\xe9\n".encode("latin-1")),
                  "Latin.md is not valid UTF-8 (bad byte at offset 3)"),
    "CRLF": (lambda r: make_page(r, "Dos.md", b"one\r\ntwo\r\n"), "Dos.md has Windows line endings"),
    "control character": (lambda r: make_page(r, "Bell.md", b"ding\x07\n"), "control character U+0007 on line 1"),
    "page too large": (lambda r: make_page(r, "Big.md", b"x" * (store.MAX_PAGE_BYTES + 1)),
                       f"Big.md is {store.MAX_PAGE_BYTES + 1} bytes; a page is at most"),
    "attachment too large": (lambda r: make_page(r, "Home/big.bin", os.urandom(store.MAX_ATTACHMENT_BYTES + 1)),
                             "attachments are at most 10485760 bytes"),
    "attachment name": (lambda r: make_page(r, "Home/ spaced.txt", b"x"), "rename it to that"),
    "symlink": (lambda r: os.symlink("/etc/passwd", r / "leak.md"), "leak.md is a symbolic link"),
    "executable": (lambda r: (make_page(r, "run.md"), (r / "run.md").chmod(0o755)), "run.md is executable"),
    "attachment of a deleted page": (lambda r: (make_page(r, "Home/x.png", b"png"), (r / "Home.md").unlink()),
                                     "Home/x.png: Page 'Home' was deleted"),
}


@pytest.mark.parametrize("case", BAD_COMMITS)
def test_a_bad_commit_is_refused_with_nothing_applied(world, tmp_path, case):
    wiki = Wiki(world)
    repo = wiki.clone(tmp_path / "clone")
    make, message = BAD_COMMITS[case]
    make_page(repo, "Good first.md", b"# A good page in the same push\n")
    commit_all(repo, "good")
    make(repo)
    commit_all(repo, "bad")
    printed = _bad_push(wiki, repo)
    assert "remote: " in printed and message in printed, printed
    assert "Good first" not in wiki.pages()


def test_a_page_deleted_without_its_attachments_is_refused(world, tmp_path):
    wiki = Wiki(world)
    store.put_attachment(wiki.db, wiki.id, "Home", "logo.svg", b"<svg/>", author=wiki.author,
                         quotas=world.inst.cfg.quotas)
    repo = wiki.clone(tmp_path / "clone")
    git("rm", "-q", "Home.md", cwd=repo)
    git("commit", "-q", "-m", "orphan the logo", cwd=repo)
    printed = _bad_push(wiki, repo)
    assert "Home/logo.svg is in your commit but robotwtf would not keep it there" in printed, printed


def git_input(repo: Path, stdin: str, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, env=git_env(), input=stdin, capture_output=True, text=True,
                            timeout=60, check=True)
    return result.stdout.strip()


@pytest.mark.parametrize("name, message", [
    (".git", "'.git' has a segment starting with '.'; hidden names such as '.git' are not allowed"),
    ("..", "'..' has a '.' or '..' segment; page paths can't climb folders")])
def test_a_path_out_of_the_wiki_is_refused(world, tmp_path, name, message):
    """git's own commands won't make these paths, but a crafted tree can carry them."""
    wiki = Wiki(world)
    repo = wiki.clone(tmp_path / "clone")
    blob = git_input(repo, "[core]\n\tbare = false\n", "hash-object", "-w", "--stdin")
    folder = git_input(repo, f"100644 blob {blob}\tconfig\n", "mktree")
    listing = git("ls-tree", "HEAD", cwd=repo).stdout
    root = git_input(repo, listing + f"040000 tree {folder}\t{name}\n", "mktree")
    commit = git_input(repo, "", "commit-tree", root, "-p", "HEAD", "-m", "escape")
    git("update-ref", "refs/heads/main", commit, cwd=repo)
    printed = _bad_push(wiki, repo)
    assert f"remote: {name}/config: {message}" in printed, printed


def test_a_submodule_is_refused(world, tmp_path):
    wiki = Wiki(world)
    repo = wiki.clone(tmp_path / "clone")
    git("update-index", "--add", "--cacheinfo", f"160000,{head(repo)},vendored", cwd=repo)
    git("commit", "-q", "-m", "submodule", cwd=repo)
    assert "vendored is a submodule" in _bad_push(wiki, repo)


def test_force_push_merge_other_refs_and_deleting_main_are_refused(world, tmp_path):
    wiki = Wiki(world)
    repo = wiki.clone(tmp_path / "clone")
    make_page(repo, "Ours.md")
    commit_all(repo, "ours")
    push(repo)
    git("reset", "-q", "--hard", "HEAD~2", cwd=repo)
    make_page(repo, "Rewritten.md")
    commit_all(repo, "rewritten history")
    printed = _bad_push(wiki, repo, "--force")
    assert "remote: main was rewritten (a force push?)" in printed and re.search(r"main -> main \(non-fast-forward\)",
                                                                                  printed), printed
    git("fetch", "-q", cwd=repo)
    git("reset", "-q", "--hard", "origin/main", cwd=repo)
    git("checkout", "-q", "-b", "side", "HEAD~1", cwd=repo)
    make_page(repo, "Side.md")
    commit_all(repo, "side")
    git("checkout", "-q", "main", cwd=repo)
    make_page(repo, "Main.md")
    commit_all(repo, "main")
    git("merge", "-q", "--no-edit", "side", cwd=repo)
    assert "is a merge; robotwtf keeps a straight history" in _bad_push(wiki, repo)
    assert "robotwtf keeps one branch, main" in _bad_push(wiki, repo, "origin", "side")
    git("tag", "v1", cwd=repo)
    assert "and no tags" in _bad_push(wiki, repo, "origin", "v1")
    assert "The wiki's main branch can't be deleted" in _bad_push(wiki, repo, "origin", ":main")
    git("commit", "-q", "--allow-empty", "-m", "nothing", cwd=repo)
    git("reset", "-q", "--hard", "origin/main", cwd=repo)
    git("commit", "-q", "--allow-empty", "-m", "nothing", cwd=repo)
    assert "changes no file" in _bad_push(wiki, repo)


def test_a_push_over_a_quota_is_refused_whole(tmp_path):
    srv = start_server(tmp_path / "data", env_extra={"ROBOTWTF_MAX_PAGES_PER_WIKI": "5"})
    try:
        wiki = Wiki(World(srv))
        repo = wiki.clone(tmp_path / "clone")
        for name in ("One", "Two", "Three"):
            make_page(repo, f"{name}.md")
        commit_all(repo, "three more pages than fit")
        printed = _bad_push(wiki, repo)
        assert "This wiki has reached its limit of 5 pages" in printed
        assert set(wiki.pages()) == {"Home", "Getting Started", "Agent Guide"}
    finally:
        srv.stop()


def test_pushes_count_as_writes_for_the_rate_limit(tmp_path):
    srv = start_server(tmp_path / "data", env_extra={"ROBOTWTF_WRITES_PER_MINUTE": "1"})
    try:
        wiki = Wiki(World(srv))
        repo = wiki.clone(tmp_path / "clone")
        for name in ("First", "Second"):
            make_page(repo, f"{name}.md")
            commit_all(repo, name)
            if name == "First":
                push(repo)
        printed = _bad_push(wiki, repo)
        assert "429" in printed and "First" in wiki.pages() and "Second" not in wiki.pages()
        answer = requests.post(f"{srv.url}/w/{wiki.slug}.git/git-receive-pack", auth=("x", wiki.token), data=b"0000",
                               headers={"Content-Type": "application/x-git-receive-pack-request"}, timeout=30)
        assert answer.status_code == 429 and int(answer.headers["Retry-After"]) >= 1
        assert answer.text == "Too many changes in a short time; wait a minute, then push again.\n"
    finally:
        srv.stop()


# --- who may fetch and push ----------------------------------------------------------------------------

def info_refs(world, slug: str, auth=None, service: str = "git-upload-pack") -> requests.Response:
    return requests.get(f"{world.server.url}/w/{slug}.git/info/refs", params={"service": service}, auth=auth,
                        timeout=30)


def test_without_credentials_private_off_and_missing_wikis_look_the_same(world):
    private = Wiki(world)
    off = Wiki(world)
    store.set_git_access(off.db, off.id, False)
    answers = [info_refs(world, slug) for slug in (private.slug, off.slug, "no-such-wiki", "Bad_Slug")]
    for answer in answers:
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="robotwtf git", charset="UTF-8"'
    assert len({a.text for a in answers}) == 1


def test_with_credentials_off_missing_and_no_access_are_the_same_404(world, tmp_path):
    wiki, other = Wiki(world), Wiki(world)
    off = Wiki(world)
    store.set_git_access(off.db, off.id, False)
    answers = [info_refs(world, slug, ("x", token)) for slug, token in
               ((off.slug, off.token), ("no-such-wiki", wiki.token), (other.slug, wiki.token))]
    assert {a.status_code for a in answers} == {404} and len({a.text for a in answers}) == 1
    cloned = git("clone", other.url(wiki.token), str(tmp_path / "x"), cwd=tmp_path, check=False)
    assert cloned.returncode != 0 and "not found" in cloned.stderr
    assert info_refs(world, wiki.slug, ("anyone", wiki.token)).status_code == 200
    bearer = requests.get(f"{world.server.url}/w/{wiki.slug}.git/info/refs?service=git-upload-pack",
                          headers={"Authorization": f"Bearer {wiki.token}"}, timeout=30)
    assert bearer.status_code == 200 and bearer.headers["Content-Type"] == "application/x-git-upload-pack-advertisement"


def test_no_token_is_challenged_and_git_says_so(world, tmp_path):
    wiki = Wiki(world)
    cloned = git("clone", wiki.url(None), str(tmp_path / "x"), cwd=tmp_path, check=False)
    assert cloned.returncode != 0 and "could not read Username" in cloned.stderr
    wrong = git("clone", wiki.url("rwpat_wrong"), str(tmp_path / "y"), cwd=tmp_path, check=False)
    assert wrong.returncode != 0 and "Authentication failed" in wrong.stderr


def test_a_viewer_can_fetch_but_not_push(world, tmp_path):
    wiki = Wiki(world)
    viewer = world.person()
    world.set_role(wiki.slug, viewer, "viewer")
    repo = wiki.clone(tmp_path / "clone", token=wiki.token_for(viewer, "wiki:read"))
    make_page(repo, "Sneaky.md")
    commit_all(repo, "sneaky")
    printed = _bad_push(wiki, repo)
    assert "403" in printed
    answer = info_refs(world, wiki.slug, ("x", wiki.token_for(viewer, "wiki:read")), "git-receive-pack")
    assert answer.status_code == 403 and "read-only" in answer.text


def test_a_lost_role_ends_git_access_at_once(world, tmp_path):
    wiki = Wiki(world)
    editor = world.person()
    world.set_role(wiki.slug, editor, "editor")
    token = wiki.token_for(editor)
    assert info_refs(world, wiki.slug, ("x", token)).status_code == 200
    world.set_role(wiki.slug, editor, None)
    assert info_refs(world, wiki.slug, ("x", token)).status_code == 404


def test_an_oauth_access_token_is_refused(world):
    wiki = Wiki(world)
    access_token = world.flow(wiki.owner, wiki.slug).tokens()["access_token"]
    for auth in (("x", access_token),):
        answer = info_refs(world, wiki.slug, auth)
        assert answer.status_code == 401 and "work only on the MCP endpoint" in answer.text
    bearer = requests.get(f"{world.server.url}/w/{wiki.slug}.git/info/refs?service=git-upload-pack",
                          headers={"Authorization": f"Bearer {access_token}"}, timeout=30)
    assert bearer.status_code == 401


def test_a_public_wiki_clones_without_a_token_but_push_needs_one(world, tmp_path):
    wiki = Wiki(world, public=True)
    repo = wiki.clone(tmp_path / "clone", token=None)
    assert "Home.md" in tracked(repo)
    assert info_refs(world, wiki.slug, service="git-receive-pack").status_code == 401
    store.set_git_access(wiki.db, wiki.id, False)
    assert info_refs(world, wiki.slug).status_code == 401


def test_git_answers_whatever_the_host_header(world):
    wiki = Wiki(world)
    answer = requests.get(f"{world.server.url}/w/{wiki.slug}.git/info/refs?service=git-upload-pack",
                          auth=("x", wiki.token), headers={"Host": "other.example"}, allow_redirects=False, timeout=30)
    assert answer.status_code == 200


# --- the owner's switch -------------------------------------------------------------------------------

def test_the_owner_turns_git_on_and_off_in_settings_and_on_the_cli(world):
    owner = world.person()
    slug = world.wiki(owner)
    wiki_id = store.get_wiki(world.db, slug)["id"]
    token = store.create_personal_token(world.db, owner, slug, frozenset(store.SCOPES), "git")
    browser = world.browser(owner)
    page = browser.get(f"{world.server.url}/w/{slug}/-/settings")
    assert "Git access is off" in page.text
    assert info_refs(world, slug, ("x", token)).status_code == 404
    csrf_token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text).group(1)
    turned = browser.post(f"{world.server.url}/w/{slug}/-/settings/git", data={"csrf_token": csrf_token, "git": "on"},
                          allow_redirects=False)
    assert turned.status_code == 303 and store.git_access_enabled(world.db, wiki_id)
    page = browser.get(f"{world.server.url}/w/{slug}/-/settings")
    assert f"git clone {world.server.url}/w/{slug}.git" in page.text
    assert info_refs(world, slug, ("x", token)).status_code == 200
    printed = world.server.cli("wiki", "git", slug, "off").stdout
    assert printed.strip() == f"git access to {slug} is off"
    assert info_refs(world, slug, ("x", token)).status_code == 404
    editor = world.person()
    world.set_role(slug, editor, "editor")
    other = world.browser(editor)
    refused = other.post(f"{world.server.url}/w/{slug}/-/settings/git",
                         data={"csrf_token": csrf_of(other.get(f"{world.server.url}/")), "git": "on"},
                         allow_redirects=False)
    assert refused.status_code == 403 and not store.git_access_enabled(world.db, wiki_id)
    assert "Only the wiki&#039;s owners can do that." in refused.text


# --- commit ids that never change ------------------------------------------------------------------------

def test_commit_ids_survive_a_restart_and_a_backup_restore(tmp_path):
    srv = start_server(tmp_path / "data")
    world = World(srv)
    wiki = Wiki(world)
    store.put_attachment(wiki.db, wiki.id, "Home", "logo.png", b"\x89PNG\r\n\x1a\nlogo", author=wiki.author,
                         quotas=world.inst.cfg.quotas)
    repo = wiki.clone(tmp_path / "first")
    make_page(repo, "Pushed.md")
    make_page(repo, "Home/extra.txt", b"extra\n")
    commit_all(repo, "pushed")
    push(repo)
    wiki.write("After", "# written after the push\n")
    git("pull", "-q", cwd=repo)
    ids = git("rev-list", "HEAD", cwd=repo).stdout
    srv.stop()
    srv = start_server(tmp_path / "data")
    try:
        wiki.world = World(srv)
        assert git("rev-list", "HEAD", cwd=wiki.clone(tmp_path / "after-restart")).stdout == ids
        srv.cli("backup", str(tmp_path / "backup.tar.gz"))
    finally:
        srv.stop()
    restore_cli = CLI(tmp_path / "restored", base_env(tmp_path / "restored"))
    restore_cli("restore", str(tmp_path / "backup.tar.gz"))
    srv = start_server(tmp_path / "restored")
    try:
        wiki.world = World(srv)
        assert git("rev-list", "HEAD", cwd=wiki.clone(tmp_path / "after-restore")).stdout == ids
    finally:
        srv.stop()


# --- the pieces -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("base, target, has_delta", [
    (b"", b"new", False), (b"same", b"same", False), (b"abc" * 30000, b"abc" * 30000 + b"tail", True),
    (b"head middle tail" * 5000, b"head MIDDLE tail" + b"head middle tail" * 4999, True),
    (os.urandom(70000), os.urandom(10), False), (b"x" * 200000, b"x" * 100000 + b"y" + b"x" * 100000, True)])
def test_deltas_rebuild_their_target(base, target, has_delta):
    """A delta where one saves room, none where it cannot; a delta rebuilds its target."""
    from dulwich.pack import apply_delta
    delta = robotwtf_git.make_delta(base, target)
    assert (delta is not None) == has_delta
    assert delta is None or (b"".join(apply_delta(base, delta)) == target and len(delta) < len(target))
