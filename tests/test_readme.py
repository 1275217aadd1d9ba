"""README.md's tables are checked against the code, so they cannot drift."""

from __future__ import annotations

import argparse
import re

import robotwtf
import robotwtf_store
from conftest import ROOT

README = (ROOT / "README.md").read_text()


def table_rows(heading: str) -> list[list[str]]:
    section = README.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in section.splitlines() if line.startswith("|") and not line.startswith("|---")][1:]


def test_configuration_table_matches_settings():
    rows = {row[2].strip("`"): row for row in table_rows("Configuration")}
    assert set(rows) == {s.env for s in robotwtf_store.SETTINGS}
    for setting in robotwtf_store.SETTINGS:
        flag = rows[setting.env][1].strip("`")
        assert flag == (setting.flag or ""), setting.name
        if setting.default is not None and not isinstance(setting.default, bool):
            assert f"`{setting.default}`" in rows[setting.env][3], setting.name


def subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
    names = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = subcommands(sub, f"{prefix}{name} ")
                names |= nested or {f"{prefix}{name}"}
    return names


def test_cli_table_lists_every_command():
    documented = {re.sub(r" [A-Z\[].*", "", row[0].strip("`")) for row in table_rows("Operator CLI")}
    assert documented == subcommands(robotwtf.build_parser())
