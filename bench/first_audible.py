"""Time to the first audible reply sample for the conversation benchmark: the engine called
directly, the TTS service as the gateway uses it, and Pipecat's Kokoro service as the peer."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import grpc

from services.common.clauses import ClauseSplitter
from services.gateway.config import GatewaySettings
from services.gateway.engine.playout import first_audible
from services.tts.config import TtsSettings
from services.tts.edges import audible_span
from voice.v1 import tts_pb2, tts_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
THREE_SENTENCES = ("The river is calm this morning and the light on the water is soft. You could walk to the old "
                   "bridge before the crowds arrive. Bring a warm coat, because the wind off the water is cold.")


def direct_first_audible(texts: list[str]) -> list[float]:
    """Each text's first clause synthesised in this process with the engine the service uses, to
    its first audible sample: the one computation no system can skip."""
    from services.tts.phonemes import shared_phonemizer
    from services.tts.server import load_engine
    from services.tts.synthesizer import Synthesizer
    from services.tts.voices import VoiceBank

    settings = TtsSettings(backend="onnx")
    synthesizer = Synthesizer(settings, load_engine(settings), VoiceBank(settings.models_dir / settings.voices_file),
                              shared_phonemizer())
    synthesizer.render("Warming up.", settings.default_voice, 1.0)
    out = []
    for text in texts:
        began = time.perf_counter()
        audio = synthesizer.edges(synthesizer.render(text, settings.default_voice, settings.default_speed),
                                  pause_after=False)
        computed = (time.perf_counter() - began) * 1000
        span = audible_span(audio)
        out.append(computed + (span[0] / 24 if span else 0.0))
    return out


def tts_first_audible(target: str, text: str, runs: int) -> list[float]:
    """The reply's first clause (as the gateway cuts it) through the TTS service, to its first
    audible sample received."""
    settings = GatewaySettings(auth_disabled=True)
    splitter = ClauseSplitter(first_words=settings.first_clause_words, first_clause_s=settings.first_clause_s,
                              growth=settings.clause_growth)
    clauses: list[str] = []
    for n, word in enumerate(text.split()):  # as Voxtral's deltas come: a word at a time
        clauses += splitter.push(word if n == 0 else " " + word)
    first = (clauses or list(splitter.flush()))[0]
    out = []
    with grpc.insecure_channel(target) as channel:
        stub = tts_pb2_grpc.TtsServiceStub(channel)
        for run in range(runs + 1):  # the first run is a warm-up, as the peer's
            if not run:
                list(stub.Synthesize(tts_pb2.SynthesizeRequest(text=first)))
                continue
            began = time.perf_counter()
            for chunk in stub.Synthesize(tts_pb2.SynthesizeRequest(text=first)):
                index = first_audible(chunk.audio)
                if index is not None:
                    out.append((time.perf_counter() - began) * 1000 + index * 1000 / chunk.sample_rate_hz)
                    break
    return out


def pipecat_first_audible(text: str, runs: int) -> list[float] | None:
    if not PEER_PYTHON.exists():
        print(f"pipecat row left out: {PEER_PYTHON} is missing (make bench-conversation builds it)", flush=True)
        return None
    settings = TtsSettings()
    model = settings.models_dir / settings.onnx_model
    voices = settings.models_dir / settings.voices_file
    done = subprocess.run([str(PEER_PYTHON), str(ROOT / "bench" / "peer_pipecat_tts.py"), str(model), str(voices),
                           settings.default_voice, str(runs), text], capture_output=True, text=True, check=True,
                          timeout=600)
    return json.loads(done.stdout.strip().splitlines()[-1])
