"""Every MCP tool over real HTTP: what it does, what it tells the model, and each way it fails
(a tool result with isError and a next step, nothing stored)."""

from __future__ import annotations

import itertools

import pytest

from mcp_client import LEGACY, b64, make_wiki, text

ARM = """---
title: Robot Arm
category: hardware
tags: [robots, servo]
---
# Robot Arm

Built from [[Parts/Servo]] and [[Parts/Frame|the frame]]; see [[Home]].

## Setup

Bolt the base down.

### Wiring

Red to red.

## Notes

The servo hums.
"""
ARM_NUMBERS = itertools.count(1)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


@pytest.fixture(scope="module")
def wiki(tmp_path_factory):
    from conftest import start_server

    server = start_server(tmp_path_factory.mktemp("tools") / "data")
    try:
        yield make_wiki(server)
    finally:
        server.stop()


@pytest.fixture
def arm(wiki):
    """A fresh page (with its own path per test) holding ARM; yields (path, revision)."""
    path = f"Projects/Arm {next(ARM_NUMBERS)}"
    result = wiki.mcp.ok("write_note", path=path, content=ARM, commit_message="Describe the arm")
    return path, result["structuredContent"]["revision"]


def unchanged(wiki, call):
    """Run `call` and assert it stored nothing; returns its result."""
    before = wiki.stored()
    result = call()
    assert wiki.stored() == before
    return result


# --- read_note ------------------------------------------------------------------------------------

def test_read_note_shows_metadata_links_and_revision(wiki, arm):
    path, revision = arm
    wiki.mcp.ok("write_note", path="Parts/Servo", content="Used by [[" + path + "]].")
    result = wiki.mcp.ok("read_note", path=path.lower())
    body = text(result)
    assert body.startswith(f"# Robot Arm\nPath: {path}\nRevision: {revision}\n")
    assert "Metadata: category: hardware | tags: robots, servo" in body
    assert "Links to: [[Home]], [[Parts/Frame]] (missing), [[Parts/Servo]]" in body
    assert f"Linked from: [[Parts/Servo]]" in body
    assert body.endswith("---\n" + ARM)
    structured = result["structuredContent"]
    assert structured["revision"] == structured["content_revision"] == revision
    assert structured["content"] == ARM and structured["tags"] == ["robots", "servo"]
    assert {"path": "Parts/Frame", "exists": False} in structured["links_to"]


def test_read_note_section_and_old_revision(wiki, arm):
    path, first = arm
    second = wiki.mcp.ok("edit_note", path=path, revision=first, old_string="Red to red.",
                         new_string="Red to red, black to black.")["structuredContent"]["revision"]
    section = wiki.mcp.ok("read_note", path=path, section="setup > wiring")
    assert "Section: Robot Arm > Setup > Wiring" in text(section)
    assert section["structuredContent"]["content"] == "### Wiring\n\nRed to red, black to black.\n\n"
    whole_setup = wiki.mcp.ok("read_note", path=path, section="Setup")["structuredContent"]["content"]
    assert whole_setup.startswith("## Setup") and "### Wiring" in whole_setup and "## Notes" not in whole_setup
    old = wiki.mcp.ok("read_note", path=path, revision=first[:7])
    assert "Red to red.\n" in old["structuredContent"]["content"]
    assert old["structuredContent"]["content_revision"] == first
    assert old["structuredContent"]["revision"] == second
    assert f"the current one is {second}" in text(old)


def test_read_note_failures(wiki, arm):
    path, revision = arm
    assert "Page not found: 'Nowhere'" in wiki.mcp.fails("read_note", path="Nowhere")
    assert "Use list_notes or search_notes to find pages" in wiki.mcp.fails("read_note", path="Nowhere")
    assert "Available sections:\n  - Robot Arm\n  - Robot Arm > Setup" in wiki.mcp.fails(
        "read_note", path=path, section="Teardown")
    assert "at least 7 characters" in wiki.mcp.fails("read_note", path=path, revision=revision[:4])
    assert "not a revision id" in wiki.mcp.fails("read_note", path=path, revision="zzzzzzzzz")
    assert "No revision" in wiki.mcp.fails("read_note", path=path, revision="0000000000")


@pytest.mark.parametrize("path", ["../etc/passwd", "a/../b", "/etc/passwd", ".git/config", "a//b", "x\x00y",
                                  "r\u202eevil", "mcp/x", "-/settings", "a" * 300])
def test_path_traversal_and_odd_paths_are_refused(wiki, path):
    unchanged(wiki, lambda: wiki.mcp.fails("write_note", path=path, content="pwned"))
    unchanged(wiki, lambda: wiki.mcp.fails("upload_attachment", path=path, filename="a.txt", content=b64(b"a")))
    assert wiki.mcp.fails("read_note", path=path)


# --- write_note and edit_note ----------------------------------------------------------------------

def test_write_note_creates_then_replaces_with_the_revision(wiki):
    created = wiki.mcp.ok("write_note", path="Journal", content="day 1", commit_message="Start a journal")
    revision = created["structuredContent"]["revision"]
    assert text(created) == f"Created Journal\nRevision: {revision}"
    assert created["structuredContent"] == {"path": "Journal", "revision": revision, "kind": "create"}
    replaced = wiki.mcp.ok("write_note", path="journal", content="day 2", revision=revision)
    assert replaced["structuredContent"]["kind"] == "update"
    assert text(replaced).startswith("Updated Journal\nRevision: ")
    same = wiki.mcp.ok("write_note", path="Journal", content="day 2", revision=replaced["structuredContent"]["revision"])
    assert same["structuredContent"]["kind"] == "none"


def test_write_note_failures_store_nothing(wiki, arm):
    path, revision = arm
    exists = unchanged(wiki, lambda: wiki.mcp.fails("write_note", path=path.upper(), content="overwrite!"))
    assert "already exists" in exists and "pass its revision" in exists
    stale = unchanged(wiki, lambda: wiki.mcp.fails("write_note", path="Home", content="x", revision=revision))
    assert "not a revision of page 'Home'" in stale and "Read it again" in stale
    missing = unchanged(wiki, lambda: wiki.mcp.fails("write_note", path="Ghost", content="x", revision=revision))
    assert "write it without a revision" in missing
    control = unchanged(wiki, lambda: wiki.mcp.fails("write_note", path="Ctl", content="bell\x07"))
    assert "control character U+0007" in control


def test_stale_revision_is_a_conflict_that_keeps_the_newer_text(wiki, arm):
    path, first = arm
    wiki.mcp.ok("edit_note", path=path, revision=first, old_string="hums", new_string="sings")
    for tool, arguments in [("write_note", {"content": "old view"}),
                            ("edit_note", {"old_string": "Bolt", "new_string": "Glue"})]:
        conflict = unchanged(wiki, lambda: wiki.mcp.fails(tool, path=path, revision=first, **arguments))
        assert f"changed since revision {first}" in conflict and "Read it again" in conflict
    assert "The servo sings." in wiki.mcp.ok("read_note", path=path)["structuredContent"]["content"]


def test_edit_note_replaces_exactly_one_occurrence(wiki, arm):
    path, revision = arm
    edited = wiki.mcp.ok("edit_note", path=path, revision=revision[:7], old_string="Bolt the base down.",
                         new_string="Bolt the base down firmly.", commit_message="Be firm")
    new_revision = edited["structuredContent"]["revision"]
    assert text(edited) == f"Edited {path}\nRevision: {new_revision}"
    assert "firmly" in wiki.mcp.ok("read_note", path=path)["structuredContent"]["content"]
    history = wiki.mcp.ok("get_history", path=path)["structuredContent"]["history"]
    assert history[0]["message"] == "Be firm" and history[0]["via"] == "token:laptop"
    deleted = wiki.mcp.ok("edit_note", path=path, revision=new_revision, old_string=" firmly", new_string="")
    assert "firmly" not in wiki.mcp.ok("read_note", path=path)["structuredContent"]["content"]
    assert deleted["structuredContent"]["kind"] == "update"


def test_edit_note_ambiguous_or_missing_text_stores_nothing(wiki, arm):
    path, revision = arm
    ambiguous = unchanged(wiki, lambda: wiki.mcp.fails("edit_note", path=path, revision=revision,
                                                       old_string="servo", new_string="motor"))
    assert "occurs 2 times" in ambiguous and "surrounding text" in ambiguous
    missing = unchanged(wiki, lambda: wiki.mcp.fails("edit_note", path=path, revision=revision,
                                                     old_string="laser", new_string="x"))
    assert "was not found" in missing
    assert "Invalid arguments" in wiki.mcp.fails("edit_note", path=path, revision=revision, old_string="",
                                                 new_string="x")


# --- listing, searching, links, history -------------------------------------------------------------

def test_list_notes_filters_combine(wiki, arm):
    path, _ = arm
    wiki.mcp.ok("write_note", path="Projects/Cart", content="---\ncategory: hardware\ntags: [wheels]\n---\nA cart.")
    everything = wiki.mcp.ok("list_notes")["structuredContent"]
    assert {"Home", path, "Projects/Cart"} <= {note["path"] for note in everything["notes"]}
    both = wiki.mcp.ok("list_notes", prefix=path.lower(), category="HARDWARE", tag="servo")
    assert [note["path"] for note in both["structuredContent"]["notes"]] == [path]
    assert text(both).startswith(f"Found 1 notes matching prefix='{path.lower()}', category='HARDWARE', tag='servo':")
    assert wiki.mcp.ok("list_notes", prefix=path, tag="wheels")["structuredContent"]["count"] == 0
    assert "- " + path + " — Robot Arm (category: hardware; tags: robots, servo;" in text(both)
    future = wiki.mcp.ok("list_notes", updated_since="2999-01-01")
    assert future["structuredContent"] == {"count": 0, "notes": []}
    assert "(none)" in text(future)
    recent = wiki.mcp.ok("list_notes", prefix="Projects/", updated_since="2020-01-01T00:00:00Z")
    assert recent["structuredContent"]["count"] >= 2
    assert "not a date" in wiki.mcp.fails("list_notes", updated_since="yesterday-ish")


def test_search_notes_ranks_and_highlights(wiki, arm):
    path, _ = arm
    wiki.mcp.ok("write_note", path="Servo Notes", content="servo servo servo: all about servos")
    found = wiki.mcp.ok("search_notes", query="servo")
    results = found["structuredContent"]["results"]
    assert results[0]["path"] == "Servo Notes"  # title and text match rank above text only
    assert path in [result["path"] for result in results]
    assert "**servo**" in results[0]["snippet"].lower()
    assert text(found).startswith(f'{len(results)} results for "servo"')
    assert "1. Servo Notes (score: " in text(found)
    phrase = wiki.mcp.ok("search_notes", query='"base down"')["structuredContent"]["results"]
    assert path in [result["path"] for result in phrase]
    assert "Servo Notes" not in [result["path"] for result in phrase]
    assert wiki.mcp.ok("search_notes", query="serv*")["structuredContent"]["results"]


@pytest.mark.parametrize("query", ['"', "*", "NEAR(", "-", "AND OR NOT", "a:b", "((("])
def test_search_syntax_is_just_text(wiki, query):
    result = wiki.mcp.ok("search_notes", query=query)
    assert result["structuredContent"]["query"] == query


def test_search_without_matches_suggests_what_to_do(wiki):
    result = wiki.mcp.ok("search_notes", query="xylophonic")
    assert result["structuredContent"]["results"] == []
    assert "No pages match" in text(result) and "list_notes" in text(result)


def test_get_links_and_find_orphaned_notes(wiki, arm):
    path, revision = arm
    wiki.mcp.ok("write_note", path="Lonely", content="nobody links here")
    links = wiki.mcp.ok("get_links", path=path)
    assert links["structuredContent"]["revision"] == revision
    assert "Links to (3):\n- [[Home]]\n- [[Parts/Frame]] (missing page)" in text(links)
    backlinks = wiki.mcp.ok("get_links", path="Home")["structuredContent"]["linked_from"]
    assert path in backlinks
    orphans = wiki.mcp.ok("find_orphaned_notes")
    assert "Lonely" in orphans["structuredContent"]["orphans"]
    assert "Home" not in orphans["structuredContent"]["orphans"]
    assert "- [[Lonely]]" in text(orphans)
    assert "Page not found" in wiki.mcp.fails("get_links", path="Nowhere")


def test_recent_changes_and_history_say_who_and_through_what(wiki, arm):
    path, revision = arm
    recent = wiki.mcp.ok("get_recent_changes", limit=3)
    changes = recent["structuredContent"]["changes"]
    assert len(changes) <= 3 and changes[0]["revision"] == revision
    assert changes[0] == {**changes[0], "path": path, "kind": "create", "author": "alice.test", "via": "token:laptop",
                          "message": "Describe the arm"}
    assert f"- {revision} | " in text(recent) and f"| {path} | create | @alice.test via token:laptop" in text(recent)
    history = wiki.mcp.ok("get_history", path=path, limit=1)
    assert history["structuredContent"]["revision"] == revision
    assert text(history).startswith(f"History of {path} (1 revision, newest first):\nRevision: {revision}")
    assert "Page not found" in wiki.mcp.fails("get_history", path="Never/Existed")


# --- rename and delete -----------------------------------------------------------------------------------

def test_rename_note_rewrites_backlinks_and_reports_them(wiki, arm):
    path, _ = arm
    wiki.mcp.ok("write_note", path="Index", content=f"See [[{path}]] and [[{path}|the arm]].")
    renamed = wiki.mcp.ok("rename_note", path=path, new_path="Hardware/Arm", commit_message="Tidy")
    structured = renamed["structuredContent"]
    assert structured["path"] == "Hardware/Arm" and structured["old_path"] == path
    assert structured["updated_backlinks"] == ["Index"]
    assert f"Renamed {path} to Hardware/Arm" in text(renamed) and "- [[Index]]" in text(renamed)
    index = wiki.mcp.ok("read_note", path="Index")["structuredContent"]["content"]
    assert index == "See [[Hardware/Arm]] and [[Hardware/Arm|the arm]]."
    history = wiki.mcp.ok("get_history", path="Hardware/Arm")["structuredContent"]["history"]
    assert [change["kind"] for change in history] == ["rename", "create"]
    wiki.mcp.ok("write_note", path="Solo", content="alone")
    quiet = wiki.mcp.ok("rename_note", path="Solo", new_path="Solo Page")
    assert quiet["structuredContent"]["updated_backlinks"] == []
    assert "No other page linked to it" in text(quiet)


def test_rename_note_failures_store_nothing(wiki, arm):
    path, _ = arm
    taken = unchanged(wiki, lambda: wiki.mcp.fails("rename_note", path=path, new_path="Home"))
    assert "already exists" in taken
    assert "Page not found" in unchanged(wiki, lambda: wiki.mcp.fails("rename_note", path="Ghost", new_path="G2"))
    assert "climb" in unchanged(wiki, lambda: wiki.mcp.fails("rename_note", path=path, new_path="../outside"))


def test_delete_note_keeps_history(wiki, arm):
    path, revision = arm
    deleted = wiki.mcp.ok("delete_note", path=path, commit_message="Obsolete")
    assert deleted["structuredContent"]["kind"] == "delete"
    assert "history keeps its content" in text(deleted)
    gone = wiki.mcp.fails("read_note", path=path)
    assert "was deleted" in gone
    history = wiki.mcp.ok("get_history", path=path)
    assert history["structuredContent"]["deleted"] is True
    assert [change["kind"] for change in history["structuredContent"]["history"]] == ["delete", "create"]
    assert path not in [note["path"] for note in wiki.mcp.ok("list_notes")["structuredContent"]["notes"]]
    assert "was deleted" in unchanged(wiki, lambda: wiki.mcp.fails("delete_note", path=path))


# --- attachments ---------------------------------------------------------------------------------------------

def test_attachments_upload_list_download_delete(wiki, arm):
    path, _ = arm
    uploaded = wiki.mcp.ok("upload_attachment", path=path, filename="diagram.png", content=b64(PNG),
                           commit_message="Add the wiring diagram")
    attachment = uploaded["structuredContent"]["attachment"]
    assert attachment["filename"] == "diagram.png" and attachment["size"] == len(PNG)
    assert attachment["content_type"] == "image/png"
    assert f"Uploaded diagram.png to {path} ({len(PNG)} bytes, image/png)" in text(uploaded)
    listed = wiki.mcp.ok("list_attachments", path=path)
    assert [item["filename"] for item in listed["structuredContent"]["attachments"]] == ["diagram.png"]
    assert listed["structuredContent"]["revision"] == uploaded["structuredContent"]["revision"]
    downloaded = wiki.mcp.ok("download_attachment", path=path, filename="DIAGRAM.png")
    assert downloaded["structuredContent"]["content"] == b64(PNG)
    assert text(downloaded).endswith("Content (base64):\n" + b64(PNG))
    removed = wiki.mcp.ok("delete_attachment", path=path, filename="diagram.png")
    assert removed["structuredContent"]["attachment"]["filename"] == "diagram.png"
    assert wiki.mcp.ok("list_attachments", path=path)["structuredContent"]["attachments"] == []
    kinds = [change["kind"] for change in wiki.mcp.ok("get_history", path=path)["structuredContent"]["history"]]
    assert kinds[:2] == ["attachment", "attachment"]


def test_upload_accepts_wrapped_base64_and_cleans_file_names(wiki, arm):
    path, _ = arm
    wrapped = "\n".join(b64(b"hello world " * 20)[i:i + 76] for i in range(0, 320, 76))
    uploaded = wiki.mcp.ok("upload_attachment", path=path, filename="../../etc/passwd", content=wrapped)
    assert uploaded["structuredContent"]["attachment"]["filename"] == "passwd"
    assert "'../../etc/passwd' is stored as 'passwd'" in text(uploaded)
    assert not (wiki.server.data / "etc").exists()
    assert wiki.mcp.ok("download_attachment", path=path, filename="passwd")["structuredContent"]["content"] == \
        b64(b"hello world " * 20)


@pytest.mark.parametrize("content", ["not base64!", "QUJD=A", "QQ", "QUJD\x00", "Zm9v_-8"])
def test_invalid_base64_stores_nothing(wiki, arm, content):
    path, _ = arm
    failure = unchanged(wiki, lambda: wiki.mcp.fails("upload_attachment", path=path, filename="x.bin", content=content))
    assert "not valid base64" in failure


def test_attachment_failures(wiki, arm):
    path, _ = arm
    assert "Page not found" in unchanged(wiki, lambda: wiki.mcp.fails(
        "upload_attachment", path="Ghost", filename="a.txt", content=b64(b"a")))
    assert "no attachment 'nothing.txt'" in wiki.mcp.fails("download_attachment", path=path, filename="nothing.txt")
    assert "no attachment" in unchanged(wiki, lambda: wiki.mcp.fails("delete_attachment", path=path,
                                                                       filename="nothing.txt"))
    assert "usable characters" in unchanged(wiki, lambda: wiki.mcp.fails(
        "upload_attachment", path=path, filename="../..", content=b64(b"a")))
    assert "Page not found" in wiki.mcp.fails("list_attachments", path="Ghost")


# --- the same tools in the handshake era --------------------------------------------------------------------

@pytest.mark.parametrize("era", [LEGACY, "2025-06-18", "2025-03-26"])
def test_tools_work_in_every_handshake_version(wiki, era):
    written = wiki.mcp.call("write_note", era=era, path=f"Era {era}", content="hello")
    assert written["isError"] is False
    assert ("structuredContent" in written) is (era != "2025-03-26")
    assert "Revision: " in text(written)
    failed = wiki.mcp.call("read_note", era=era, path="Nowhere")
    assert failed["isError"] is True and "Page not found" in text(failed)
