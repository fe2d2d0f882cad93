"""Regenerate the checked-in Python stubs from protos/ (`make proto`).

protoc writes `from facesearch.v1 import facesearch_pb2` into the gRPC module; the stubs
live inside the `fsproto` package, so that import is rewritten to an absolute one under
it. tests/test_packaging.py (test_checked_in_stubs_are_fresh) runs this into a temp dir
and diffs the result.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO_FILES = ["facesearch/v1/facesearch.proto"]
STUB_ROOT = ROOT / "client" / "fsproto"
PACKAGE_PREFIX = "fsproto"


def generate(out_dir: Path) -> list[Path]:
    """Write *_pb2.py, *_pb2.pyi and *_pb2_grpc.py under out_dir; return the files."""
    from grpc_tools import protoc  # dev dependency only

    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(PROTO_ROOT / f) for f in PROTO_FILES),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    written = []
    for path in sorted(out_dir.rglob("*.py*")):
        text = path.read_text()
        fixed = re.sub(
            r"^from facesearch\.v1 import",
            f"from {PACKAGE_PREFIX}.facesearch.v1 import",
            text,
            flags=re.MULTILINE,
        )
        if fixed != text:
            path.write_text(fixed)
        written.append(path)
    for package in {p.parent for p in written} | {out_dir / "facesearch"}:
        while package != out_dir.parent and package.is_relative_to(out_dir):
            (package / "__init__.py").touch()
            package = package.parent
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=STUB_ROOT)
    args = parser.parse_args()
    for path in generate(args.out):
        print(path.relative_to(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
