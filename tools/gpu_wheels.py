"""The wheels a GPU machine without a network needs for bench/gpu/run.sh (`make gpu-wheels`): the
packages the Voxtral service imports beyond what that machine's image holds (torch, numpy, and the
like are there), at the versions this project's environment runs, for Python 3.12 on x86-64."""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

# What the Voxtral service and the benchmark import that the GPU image lacks (or holds at another
# version than this project's), with what those need in turn.
PACKAGES = [
    "pydantic", "pydantic-core", "pydantic-settings", "python-dotenv", "typing-inspection", "annotated-types",
    "pydantic-extra-types", "pycountry",
    "grpcio", "grpcio-health-checking", "grpcio-reflection", "protobuf", "googleapis-common-protos",
    "opentelemetry-api", "opentelemetry-sdk", "opentelemetry-semantic-conventions", "opentelemetry-proto",
    "opentelemetry-exporter-otlp-proto-common", "opentelemetry-exporter-otlp-proto-grpc",
    "opentelemetry-instrumentation", "opentelemetry-instrumentation-grpc", "wrapt",
    "transformers", "huggingface-hub", "mistral-common", "soundfile", "soxr", "cffi", "pycparser",
    "jsonschema", "jsonschema-specifications", "referencing", "rpds-py", "httpx2", "httpcore2", "truststore",
]
PLATFORMS = ["manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_27_x86_64", "manylinux_2_28_x86_64",
             "manylinux_2_34_x86_64", "manylinux1_x86_64", "any"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dest", type=Path, default=Path(".whl"))
    args = parser.parse_args()
    args.dest.mkdir(exist_ok=True)
    pinned = [f"{name}=={version(name)}" for name in PACKAGES]
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
               "3.12", "--implementation", "cp", "--abi", "cp312", "--abi", "abi3", "--abi", "none",
               *(f"--platform={p}" for p in PLATFORMS), "-d", str(args.dest), *pinned]
    subprocess.run(command, check=True)
    wheels = sorted(args.dest.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels) / 2**20
    print(f"{len(wheels)} wheels in {args.dest}/ ({size:.1f} MiB): carry it to the GPU machine with the source")


if __name__ == "__main__":
    main()
