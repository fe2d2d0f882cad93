"""The folder tree is the design (docs/architecture.md): arrows point down, gRPC stays at the
edge, and modules stay small enough to read. Read from the source's import lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SERVER = REPO / "server" / "fsserver"
CLIENT = REPO / "client" / "fsclient"
# The parts, top to bottom: a part may import the parts below it, never one above. The two
# edges (gRPC's api/ and http/) share the top: the server assembles both.
LAYERS = [("api", "http"), "catalog", "collection", "shards", "storage", "faces"]
# Shared vocabulary every part may use.
COMMON = {"config", "contract", "errors", "admission", "logs"}
MAX_LINES = 430
# One method or one converter per RPC and message: long by nature, flat by design.
LONG_BY_NATURE = {CLIENT / "client.py", CLIENT / "convert.py"}


def _modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _part(path: Path) -> str:
    relative = path.relative_to(SERVER)
    return relative.parts[0].removesuffix(".py")


@pytest.mark.parametrize("path", _modules(SERVER), ids=lambda p: str(p.relative_to(SERVER)))
def test_grpc_and_generated_code_stay_at_the_edge(path: Path) -> None:
    if _part(path) == "api":
        return
    wire = {
        name
        for name in _imports(path)
        if name.split(".")[0] in {"grpc", "grpc_health", "grpc_reflection", "fsproto"}
        or name.startswith("fsclient.convert")
        or name.startswith("fsclient._proto")
    }
    assert not wire, f"{path.relative_to(REPO)} imports {sorted(wire)} below the gRPC edge"


@pytest.mark.parametrize("path", _modules(SERVER), ids=lambda p: str(p.relative_to(SERVER)))
def test_parts_import_only_the_parts_below_them(path: Path) -> None:
    part = _part(path)
    levels = [{layer} if isinstance(layer, str) else set(layer) for layer in LAYERS]
    level = next((i for i, parts in enumerate(levels) if part in parts), None)
    if level is None:
        return
    above = set().union(*levels[:level])
    upward = {
        name
        for name in _imports(path)
        if name.startswith("fsserver.") and name.split(".")[1] in above
    }
    assert not upward, f"{path.relative_to(REPO)} ({part}) imports upward: {sorted(upward)}"


@pytest.mark.parametrize(
    "path",
    [*_modules(SERVER), *_modules(CLIENT)],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_modules_stay_readable(path: Path) -> None:
    if path in LONG_BY_NATURE:
        return
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)} has {lines} lines; split it by concern"


def test_the_client_needs_nothing_of_the_server() -> None:
    for path in _modules(CLIENT):
        server = {name for name in _imports(path) if name.split(".")[0] == "fsserver"}
        assert not server, f"{path.relative_to(REPO)} imports {sorted(server)}"
