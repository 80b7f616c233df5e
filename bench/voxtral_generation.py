"""Voxtral generation speed in one run (`make bench-voxtral`): time to first token and decode
tokens/s for eager decoding (dynamic cache), a static KV cache, and compiled decoding on the
static cache, as ratios to eager. Defaults to the small random-weight Voxtral on this machine's
device; `--model` takes a real checkpoint (hub id or folder) where one is available.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.report import write_results
from harness.recordings import recording
from services.common.latency import percentile
from services.voxtral.config import VoxtralSettings
from services.voxtral.engine import VoxtralEngine
from services.voxtral.generation import GenerationParams
from services.voxtral.prompts import ModelInputs
from tools.models.tiny import build_tiny_voxtral

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = [("eager, dynamic cache", False, "eager"), ("static cache", True, "eager"),
            ("static cache + torch.compile", True, "reduce-overhead")]


def prepared(settings: VoxtralSettings, tokens: int) -> tuple[VoxtralEngine, ModelInputs, GenerationParams]:
    """An engine (not yet warmed up), 4 s of beckett.wav as its prompt, and parameters for exactly
    `tokens` new tokens."""
    engine = VoxtralEngine(settings)
    samples, _ = recording("beckett.wav")
    inputs = engine.prompts.chat(samples[: 16000 * 4], [], settings.instructions, settings.max_context_tokens)
    params = GenerationParams.defaults(settings).override(4096, max_new_tokens=tokens, min_new_tokens=tokens)
    return engine, inputs, params


def measure(model: str, static: bool, mode: str, tokens: int, runs: int, dtype: str) -> dict[str, Any]:
    settings = VoxtralSettings(model_id=model, static_cache=static, compile_mode=mode, dtype=dtype, seed=0)
    engine, inputs, params = prepared(settings, tokens)
    started = time.perf_counter()
    in_effect = engine.warm_up()
    warm_s = time.perf_counter() - started
    ttft, rate = [], []
    for _ in range(runs):
        result = engine.generate(inputs, params, lambda _: None, threading.Event())
        ttft.append(result.prefill_ms)
        rate.append((result.completion_tokens - 1) / (result.decode_ms / 1000))
    return {"compile_mode": in_effect, "kv_cache": engine.kv_cache, "device": engine.device, "dtype": engine.dtype,
            "warm_up_s": round(warm_s, 1), "ttft_ms": percentile(ttft, 50),
            "tokens_per_s": percentile(rate, 50)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="", help="hub id or folder; default: a fresh small random Voxtral")
    parser.add_argument("--tokens", type=int, default=25, help="new tokens per reply (seed: 25)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(build_tiny_voxtral(Path(tmp) / "tiny"))
        label = args.model or "small random-weight Voxtral (8.4M params, real architecture)"
        rows = []
        for name, static, mode in VARIANTS:
            row = {"variant": name, **measure(model, static, mode, args.tokens, args.runs, args.dtype)}
            rows.append(row)
            print(row, flush=True)
    base = rows[0]
    for row in rows:
        row["ttft_vs_eager"] = round(float(row["ttft_ms"]) / float(base["ttft_ms"]), 2)
        row["speed_vs_eager"] = round(float(row["tokens_per_s"]) / float(base["tokens_per_s"]), 2)
    device = rows[0]["device"]
    if device == "cpu":
        device = f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    else:
        import torch

        device = torch.cuda.get_device_name(0)
    summary = {"benchmark": "voxtral_generation", "device": device, "model": label, "new_tokens": args.tokens,
               "runs": args.runs, "note": "a small random model on a CPU says nothing about the 3B model on a GPU",
               "levels": rows}
    write_results(args.out, "voxtral_generation", summary, rows,
                  ["variant", "compile_mode", "kv_cache", "dtype", "ttft_ms", "tokens_per_s", "ttft_vs_eager",
                   "speed_vs_eager", "warm_up_s"])


if __name__ == "__main__":
    main()
