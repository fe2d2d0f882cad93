"""The docs' flag and environment tables cover every flag and variable the code reads, the
README stays a landing page, and every relative link in README.md and docs/ leads somewhere.

Read from the parsers and the source, so a new flag without a row in the docs fails here.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from fsclient.cli import build_parser as client_parser
from fsserver.config import build_parser as server_parser

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
README_MAX_LINES = 250


def _read(relative: str) -> str:
    path = REPO / relative
    assert path.is_file(), f"{relative} is missing"
    return path.read_text()


def _section(relative: str, title: str) -> str:
    """The text of `relative` under `## title`, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", _read(relative), re.M | re.S)
    assert match, f"{relative} has no '## {title}' section"
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
    section = _section("docs/operations.md", "Server configuration")
    documented = _documented_options(_table_cells(section))
    missing = _long_options(server_parser()) - documented
    assert not missing, (
        f"server flags missing from docs/operations.md 'Server configuration': {missing}"
    )


def test_every_cli_flag_has_a_row() -> None:
    documented = _documented_options(_table_cells(_read("docs/cli.md")))
    missing = _long_options(client_parser()) - documented
    assert not missing, f"fsclient flags missing from docs/cli.md: {missing}"


def _variables_read(folder: Path, prefix: str) -> set[str]:
    found: set[str] = set()
    for source in folder.rglob("*.py"):
        found |= set(re.findall(rf"\b{prefix}_[A-Z][A-Z0-9_]*\b", source.read_text()))
    return found


@pytest.mark.parametrize(
    ("folder", "prefix", "doc"),
    [
        ("client/fsclient", "FSCLIENT", "docs/cli.md"),
        ("tests", "FACESEARCH", "docs/development.md"),
    ],
)
def test_every_environment_variable_is_documented(folder: str, prefix: str, doc: str) -> None:
    variables = _variables_read(REPO / folder, prefix)
    assert variables, f"no {prefix}_* variable found in {folder}: the pattern is stale"
    text = _read(doc)
    # Named in code spans: `NAME`, or `NAME=value`.
    missing = {name for name in variables if not re.search(rf"`{name}[`=]", text)}
    assert not missing, f"environment variables missing from {doc}: {missing}"


def test_server_flags_have_environment_variables_as_documented() -> None:
    # Every flag reads FSSERVER_<FLAG>; the docs say so once rather than per row.
    assert "FSSERVER_<FLAG>" in _section("docs/operations.md", "Server configuration")


def test_readme_is_a_landing_page() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines, more than {README_MAX_LINES}: move detail into docs/"
    )


# [text](target) and ![alt](target), with an optional "title"; <target> too.
_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def _relative_links(path: Path) -> list[str]:
    text = _FENCE.sub("", path.read_text())  # code blocks hold no links
    text = re.sub(r"`[^`\n]*`", "", text)  # nor do code spans
    targets = [match.group(1) for match in _LINK.finditer(text)]
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:|#", t, re.I)]


def _markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_lead_somewhere(path: Path) -> None:
    broken = [
        target
        for target in _relative_links(path)
        if not (path.parent / target.split("#", 1)[0].split("?", 1)[0]).exists()
    ]
    assert not broken, f"{path.relative_to(REPO)} links to files that do not exist: {broken}"


def test_the_link_check_sees_links() -> None:
    # Guards the pattern above: README links into docs/, so it must find some.
    links = _relative_links(README)
    assert "docs/cli.md" in links and "docs/matches.png" in links, links
