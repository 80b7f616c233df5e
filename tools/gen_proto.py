"""Generate the voice.v1 Python code and type stubs from proto/ (the only way they are made)."""

from __future__ import annotations

import argparse
import shutil
import sys
import sysconfig
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
DEFAULT_OUT = ROOT / "gen"


def _plugin(name: str) -> str:
    """Path of a protoc plugin installed beside this interpreter (mypy-protobuf)."""
    found = shutil.which(name, path=sysconfig.get_path("scripts"))
    if found is None:
        raise SystemExit(f"{name} not found: install the dev extra (mypy-protobuf)")
    return found


def generate(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{Path(grpc_tools.__file__).parent / '_proto'}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *[str(p.relative_to(PROTO_ROOT)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    packages = {p.parent.relative_to(PROTO_ROOT) for p in protos}
    for pkg in packages:
        for level in [pkg, *pkg.parents][:-1]:
            (out / level / "__init__.py").touch()
        (out / pkg / "py.typed").touch()
    return sorted(p for p in out.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    if args.out.exists() and args.out == DEFAULT_OUT:
        shutil.rmtree(args.out / "voice", ignore_errors=True)
    files = generate(args.out)
    print(f"generated {len(files)} files under {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
