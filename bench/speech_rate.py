"""How fast Kokoro speaks (`make bench-speech-rate`): letters per second of audio at speed 1.0 over
the English corpus, with the default voice and the service's own rendering. The gateway's clause
budget estimates how long a clause takes to say with this rate (services/common/clauses.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.report import write_results
from services.common.clauses import LETTERS_PER_S
from services.common.latency import median
from services.tts.config import TtsSettings
from services.tts.phonemes import shared_phonemizer
from services.tts.server import load_engine
from services.tts.synthesizer import Synthesizer
from services.tts.voices import VoiceBank
from tools.models.corpus import SOURCE, sentences

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sentences", type=int, default=40)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    settings = TtsSettings(backend="onnx")
    voices = VoiceBank(settings.models_dir / settings.voices_file)
    synthesizer = Synthesizer(settings, load_engine(settings), voices, shared_phonemizer())
    corpus = sentences()
    picked = corpus[:: max(1, len(corpus) // args.sentences)][: args.sentences]
    rows: list[dict[str, Any]] = []
    for text in picked:
        seconds = len(synthesizer.render(text, settings.default_voice, 1.0)) / 24000
        letters = sum(c.isalpha() for c in text)
        rows.append({"text": text, "letters": letters, "seconds": round(seconds, 3),
                     "letters_per_s": round(letters / seconds, 2)})
    rate = sum(r["letters"] for r in rows) / sum(r["seconds"] for r in rows)
    per = sorted(r["letters_per_s"] for r in rows)
    summary = {"benchmark": "speech_rate", "voice": settings.default_voice, "speed": 1.0, "corpus": SOURCE,
               "sentences": len(rows), "letters_per_s": round(rate, 2),
               "letters_per_s_p10_p50_p90": [per[len(per) // 10], median(per), per[9 * len(per) // 10]],
               "constant_in_use": LETTERS_PER_S, "rows": rows}
    write_results(args.out, "speech_rate", summary, rows, ["text", "letters", "seconds", "letters_per_s"])
    print(f"Kokoro at speed 1.0: {rate:.2f} letters/s over {len(rows)} sentences (constant in use: {LETTERS_PER_S})")


if __name__ == "__main__":
    main()
