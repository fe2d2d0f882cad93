"""The README's flag and environment tables cover every flag and variable the code reads.

Read from the parsers and the source, so a new flag without a README row fails here.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from fsclient.cli import build_parser as client_parser
from fsserver.config import build_parser as server_parser

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def _section(title: str) -> str:
    """The README text under `## title`, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.M | re.S)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def _table_cells(text: str) -> set[str]:
    """Every `code` span in the table rows of `text`."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return {span for row in rows for span in re.findall(r"`([^`]+)`", row)}


def _long_options(parser: argparse.ArgumentParser) -> set[str]:
    options: set[str] = set()
    for action in parser._actions:
        options |= {o for o in action.option_strings if o.startswith("--") and o != "--help"}
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                options |= _long_options(sub)
    return options


def _documented_options(cells: set[str]) -> set[str]:
    # A cell may hold a flag with its value, e.g. `--dim N` or `--tls-ca PEM`.
    return {cell.split()[0] for cell in cells if cell.startswith("--")}


def test_every_server_flag_has_a_row() -> None:
    documented = _documented_options(_table_cells(_section("Server configuration")))
    missing = _long_options(server_parser()) - documented
    assert not missing, f"server flags missing from README 'Server configuration': {missing}"


def test_every_cli_flag_has_a_row() -> None:
    documented = _documented_options(_table_cells(_section("CLI")))
    missing = _long_options(client_parser()) - documented
    assert not missing, f"fsclient flags missing from README 'CLI': {missing}"


def _variables_read(folder: Path, prefix: str) -> set[str]:
    found: set[str] = set()
    for source in folder.rglob("*.py"):
        found |= set(re.findall(rf"\b{prefix}_[A-Z][A-Z0-9_]*\b", source.read_text()))
    return found


@pytest.mark.parametrize(
    ("folder", "prefix"),
    [
        ("client/fsclient", "FSCLIENT"),
        ("tests", "FACESEARCH"),
    ],
)
def test_every_environment_variable_is_documented(folder: str, prefix: str) -> None:
    variables = _variables_read(REPO / folder, prefix)
    assert variables, f"no {prefix}_* variable found in {folder}: the pattern is stale"
    # Named in code spans: `NAME`, or `NAME=value`.
    missing = {name for name in variables if not re.search(rf"`{name}[`=]", README)}
    assert not missing, f"environment variables missing from README: {missing}"


def test_server_flags_have_environment_variables_as_documented() -> None:
    # Every flag reads FSSERVER_<FLAG>; the README says so once rather than per row.
    assert "FSSERVER_<FLAG>" in _section("Server configuration")
