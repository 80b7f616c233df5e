"""The VAD's model files: Smart Turn v3.2 (end of turn) and Silero VAD (voice), both ONNX.

No model hub: both ship inside the pipecat-ai 1.14.0 wheel on PyPI, which `make models` (and the
VAD image's build) downloads without its dependencies, keeping just these two files. The service
checks each file's sha256 before it starts, so a truncated or foreign file is refused by name.

    python -m services.vad.models DIR   # fetch both into DIR
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from services.common.checksum import sha256
from services.common.errors import StartupRefused

WHEEL = "pipecat-ai==1.14.0"


@dataclass(frozen=True)
class ModelFile:
    name: str
    member: str  # path inside the wheel
    sha256: str
    license: str


SMART_TURN = ModelFile(
    "smart-turn-v3.2-cpu.onnx", "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
    "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f", "BSD-2-Clause",
)
SILERO = ModelFile(
    "silero_vad.onnx", "pipecat/audio/vad/data/silero_vad.onnx",
    "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3", "MIT",
)
FILES = (SMART_TURN, SILERO)


class ModelFileError(StartupRefused):
    """A model file is missing or is not the expected one; the message says what to run."""


def verified(directory: Path, model: ModelFile) -> Path:
    """The file's path once its checksum matches; ModelFileError naming `make models` otherwise."""
    path = directory / model.name
    if not path.is_file():
        raise ModelFileError(f"{path} is missing: run `make models` (it fetches {model.name} from {WHEEL})")
    if sha256(path) != model.sha256:
        raise ModelFileError(f"{path} fails its sha256 check (want {model.sha256}): run `make models` again")
    return path


def fetch(directory: Path) -> None:
    """Both files into directory, each checked; files already there and correct are kept."""
    missing = [m for m in FILES if not (directory / m.name).is_file() or sha256(directory / m.name) != m.sha256]
    if not missing:
        print(f"turn models: {directory} (sha256 ok)")
        return
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("pipecat_ai-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            for model in missing:
                data = zf.read(model.member)
                if hashlib.sha256(data).hexdigest() != model.sha256:
                    raise SystemExit(f"{model.name} in {WHEEL} has an unexpected sha256")
                partial = directory / (model.name + ".part")
                partial.write_bytes(data)
                partial.rename(directory / model.name)
    print(f"turn models: {', '.join(m.name for m in missing)} -> {directory} (sha256 ok)")


if __name__ == "__main__":
    fetch(Path(sys.argv[1]))
