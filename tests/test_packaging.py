"""The contract and the distribution: fresh stubs, a standalone proto, a thin client."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parent.parent
STUBS = REPO / "client" / "fsproto"


def _load_generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_proto", REPO / "scripts" / "gen_proto.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checked_in_stubs_are_fresh(tmp_path: Path) -> None:
    generated = _load_generator().generate(tmp_path)
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in generated}
    fresh.update(
        {p.relative_to(tmp_path): b"" for p in tmp_path.rglob("facesearch/**/__init__.py")}
    )
    # The package's own __init__.py (its docstring) and py.typed are written by hand.
    checked_in = {
        p.relative_to(STUBS): p.read_bytes()
        for p in (STUBS / "facesearch").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    stale = sorted(str(p) for p in fresh if checked_in.get(p) != fresh[p])
    assert not stale, f"stubs are stale, run `make proto`: {stale}"
    assert set(checked_in) == set(fresh), "extra files under fsproto/facesearch"


def test_the_proto_compiles_standalone(tmp_path: Path) -> None:
    from grpc_tools import protoc

    out = tmp_path / "descriptor.pb"
    args = ["protoc", f"-I{REPO / 'protos'}", f"--descriptor_set_out={out}"]
    assert protoc.main([*args, "facesearch/v1/facesearch.proto"]) == 0
    assert out.stat().st_size > 0


def test_the_thin_client_needs_no_server_stack() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    base = {
        d.split(">")[0].split("=")[0].split("<")[0] for d in pyproject["project"]["dependencies"]
    }
    assert base == {"grpcio", "protobuf", "numpy"}
    code = (
        "import sys, fsclient, fsclient.cli, fsclient.format;"
        "heavy = {'deepface', 'tensorflow', 'voyager', 'cv2', 'dlib', 'fsserver', 'ray'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"


def test_the_default_server_does_not_import_ray(tmp_path: Path) -> None:
    """Ray is an optional extra: only --backend ray may import it."""
    code = (
        "import sys; from pathlib import Path;"
        "from fsserver.config import Config; from fsserver.api.server import FaceSearchServer;"
        f"s = FaceSearchServer(Config(listen='127.0.0.1:0', data_dir=Path({str(tmp_path)!r}),"
        " dim=4, model='', detector='')).start();"
        "s.stop(); print('ray' in sys.modules)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.strip()
    assert loaded == "False"


def test_pip_install_dot_is_the_thin_client_alone(tmp_path: Path) -> None:
    """`pip install .` in a fresh virtualenv brings grpcio, protobuf and numpy, nothing more,
    and the installed `fsclient` runs there."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    install = [*pip, "install", "--quiet", "-c", str(REPO / "constraints.txt"), str(REPO)]
    subprocess.run(install, check=True, capture_output=True, timeout=600)
    listed = subprocess.run(
        [*pip, "list", "--format=json", "--exclude", "pip", "--exclude", "setuptools"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {p["name"].lower().replace("-", "_") for p in json.loads(listed)}
    # typing_extensions comes with grpcio.
    assert names == {"facesearch", "grpcio", "protobuf", "numpy", "typing_extensions"}, names
    top_level = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "from importlib.metadata import files;"
            "print(sorted({f.parts[0] for f in files('facesearch')"
            " if not f.parts[0].endswith('.dist-info') and f.parts[0] != '..'}))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.strip()
    # Import names are not generic: no top-level server, client or protos module
    # (fsproto: the generated stubs, which client and server both import).
    assert top_level == "['fsclient', 'fsproto', 'fsserver']", top_level
    shown = subprocess.run(
        [str(venv / "bin" / "fsclient"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0 and "query" in shown.stdout
    server = subprocess.run(
        [str(venv / "bin" / "fsserver"), "--dim", "4"], capture_output=True, text=True, timeout=60
    )
    assert server.returncode == 1
    assert "pip install 'facesearch[server]'" in server.stderr
