"""TTS latency in one run (`make bench-tts`): service overhead, clause streaming, RTF per backend.

- Time to first audio of TtsService over gRPC (its own process) vs a direct in-process call
  doing the same work for the first clause (misaki G2P + kokoro-onnx). Target: overhead < 5%.
- Time to first audio with clause streaming vs synthesising the whole reply first.
  Target: streaming at most 0.35 of it.
- Real-time factor per backend: onnx on the real int8 weights; kokoro (PyTorch) on random
  weights whose durations are matched to the real model's, so compute per second of speech compares.
Medians over interleaved repetitions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import torch

from bench.report import write_results
from harness.processes import ServiceProcess
from services.common.channels import open_channel
from services.common.clauses import split_clauses
from services.common.latency import median
from services.tts.config import TtsSettings
from services.tts.engine import KMODEL_PARTS, OnnxEngine, TorchEngine
from services.tts.phonemes import shared_phonemizer
from voice.v1 import tts_pb2, tts_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
REPLY = ("Sure, I can help with that. The train to London leaves at nine o'clock from platform four. "
         "You should arrive about an hour and a half later.")
VOICE = "af_heart"


def start_service() -> ServiceProcess:
    service = ServiceProcess("services.tts", "TTS_", {"TTS_BACKEND": "onnx", "TTS_TIMEOUT_S": "60"})
    service.wait_serving()
    return service


async def service_first_audio_ms(stub: tts_pb2_grpc.TtsServiceStub, text: str) -> float:
    started = time.perf_counter()
    call = stub.Synthesize(tts_pb2.SynthesizeRequest(text=text, voice=VOICE), timeout=60)
    await call.read()
    elapsed = (time.perf_counter() - started) * 1000
    while await call.read() != grpc.aio.EOF:  # let the service finish: it must compete with nothing measured next
        pass
    return elapsed


def direct_first_audio_ms(engine: OnnxEngine, pack: np.ndarray, text: str) -> float:
    started = time.perf_counter()
    phonemes = shared_phonemizer().phonemize(split_clauses(text)[0])
    engine.synthesize(phonemes, pack, 1.0)
    return (time.perf_counter() - started) * 1000


def whole_reply_ms(engine: OnnxEngine, pack: np.ndarray, text: str) -> float:
    started = time.perf_counter()
    engine.synthesize(shared_phonemizer().phonemize(text), pack, 1.0)
    return (time.perf_counter() - started) * 1000


def rtf(engine, pack: np.ndarray, phonemes: str, speech_s: float, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        engine.synthesize(phonemes, pack, 1.0)
        times.append(time.perf_counter() - started)
    return median(times) / speech_s


def random_kokoro(folder: Path, phonemes: str, pack: np.ndarray, target_s: float) -> TorchEngine:
    """A random-weight KModel whose total duration matches the real model's for `phonemes`."""
    from kokoro import KModel

    torch.manual_seed(0)
    empty = folder / "empty.pth"
    torch.save({}, empty)
    model = KModel(repo_id="hexgrad/Kokoro-82M", config=str(folder / "config.json"), model=str(empty))
    weights = folder / "kokoro-v1_0.pth"
    low, high = -12.0, 4.0
    for _ in range(8):  # bisect the duration bias until the speech lasts as long as the real model's
        bias = (low + high) / 2
        with torch.no_grad():
            model.predictor.duration_proj.linear_layer.bias.fill_(bias)
        torch.save({p: getattr(model, p).state_dict() for p in KMODEL_PARTS}, weights)
        engine = TorchEngine(folder / "config.json", weights, "cpu")
        seconds = len(engine.synthesize(phonemes, pack, 1.0)) / 24000
        low, high = (bias, high) if seconds < target_s else (low, bias)
    return engine


async def main_async(runs: int, out: Path) -> None:
    settings = TtsSettings()
    folder = settings.models_dir
    engine = OnnxEngine(folder / settings.onnx_model, folder / settings.voices_file, settings.onnx_threads,
                        settings.onnx_spinning)  # as the service builds it
    pack = np.load(folder / settings.voices_file)[VOICE]
    shared_phonemizer().warm_up()
    tts = start_service()
    service_ms, direct_ms, whole_ms = [], [], []
    try:
        async with open_channel(tts.target, tts_pb2.DESCRIPTOR.services_by_name["TtsService"]) as ch:
            stub = tts_pb2_grpc.TtsServiceStub(ch)
            await service_first_audio_ms(stub, REPLY)
            direct_first_audio_ms(engine, pack, REPLY)
            for _ in range(runs):
                service_ms.append(await service_first_audio_ms(stub, REPLY))
                direct_ms.append(direct_first_audio_ms(engine, pack, REPLY))
                whole_ms.append(whole_reply_ms(engine, pack, REPLY))
    finally:
        tts.stop()
    service, direct, whole = (median(x) for x in (service_ms, direct_ms, whole_ms))
    phonemes = shared_phonemizer().phonemize(REPLY)
    speech_s = len(engine.synthesize(phonemes, pack, 1.0)) / 24000
    onnx_rtf = rtf(engine, pack, phonemes, speech_s, runs)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("config.json", settings.voices_file):
            (Path(tmp) / name).write_bytes((folder / name).read_bytes())
        torch_engine = random_kokoro(Path(tmp), phonemes, pack, speech_s)
        torch_rtf = rtf(torch_engine, pack, phonemes, speech_s, runs)
    rows: list[dict[str, Any]] = [
        {"measure": "first audio, service over gRPC (ms)", "value": round(service, 1), "target": ""},
        {"measure": "first audio, direct G2P + kokoro-onnx on the first clause (ms)", "value": round(direct, 1),
         "target": ""},
        {"measure": "service overhead", "value": f"{(service - direct) / direct:+.1%}", "target": "< 5%"},
        {"measure": "whole reply synthesised first (ms)", "value": round(whole, 1), "target": ""},
        {"measure": "streaming first audio / whole reply", "value": round(service / whole, 3), "target": "<= 0.35"},
        {"measure": "RTF onnx (int8, real weights)", "value": round(onnx_rtf, 3), "target": ""},
        {"measure": "RTF kokoro (PyTorch fp32, random weights, matched durations)", "value": round(torch_rtf, 3),
         "target": ""},
    ]
    for row in rows:
        print(f"{row['measure']:>70}: {row['value']}")
    summary = {"benchmark": "tts_latency", "device": f"CPU ({platform.machine()}, {os.cpu_count()} cores)",
               "reply": REPLY, "speech_s": round(speech_s, 2), "runs": runs, "rows": rows,
               "samples_ms": {"service": service_ms, "direct": direct_ms, "whole": whole_ms}}
    write_results(out, "tts_latency", summary, rows, ["measure", "value", "target"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    asyncio.run(main_async(args.runs, args.out))


if __name__ == "__main__":
    main()
