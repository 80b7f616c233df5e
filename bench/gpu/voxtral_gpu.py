"""Voxtral at its real size on a GPU, in one prepared run (`bench/gpu/run.sh`).

The model is Voxtral-Mini-3B-2507's shape (`VoxtralConfig()`: a 30-layer 3072-wide Llama with GQA 8
and the 32-layer Whisper-large encoder) with RANDOM weights, saved like a checkpoint and loaded
through the production engine (services/voxtral/engine.py, VoxtralSettings): real compute and
memory, meaningless words. Every reply is exactly `--tokens` new tokens (min_new_tokens too), so
timings compare. Measured in one run, warm-up excluded: first token for 1, 3 and 10 s of audio
after a two-exchange history, and decode tokens/s, for eager decoding (dynamic cache), a static
KV cache, and the static cache compiled (the seed's "reduce-overhead", with its fallbacks); GPU
memory; then the Voxtral gRPC service on the same GPU with 1, 4, 16 and 64 concurrent `Respond`
streams (its slot pool as configured): first token p50/p95 and tokens/s.

`--small` runs the same code on this machine's CPU with the small random Voxtral (the rehearsal
and the test that keeps the kit from rotting between GPU draws).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from services.common.latency import percentile
from services.voxtral.config import VoxtralSettings
from services.voxtral.engine import VoxtralEngine
from services.voxtral.generation import GenerationParams
from services.voxtral.prompts import Turn

ROOT = Path(__file__).resolve().parents[2]
AUDIO_S = (1.0, 3.0, 10.0)
HISTORY = [Turn("user", "What's the weather like in Paris today?"),
           Turn("assistant", "It is sunny and mild, about eighteen degrees."),
           Turn("user", "And tomorrow?"), Turn("assistant", "Rain in the morning, clearing by noon.")]
# (name, KV cache, compile mode): the seed's setting last.
VARIANTS = {"eager": ("dynamic", "eager"), "static": ("static", "eager"), "compiled": ("static", "reduce-overhead")}
STREAM_LEVELS = (1, 4, 16, 64)
WEIGHTS_NOTE = "RANDOM weights at Voxtral-Mini-3B-2507's real shape: real compute and memory, meaningless text"


def speech(seconds: float) -> np.ndarray:
    """A voiced-like signal of `seconds` at 16 kHz (random weights make the content irrelevant)."""
    t = np.arange(int(seconds * 16000)) / 16000
    return (np.sin(2 * np.pi * 180 * t) * np.sin(2 * np.pi * 3 * t) * 8000).astype(np.int16)


def build_model(folder: Path, small: bool, dtype: str) -> Path:
    """The model folder: the small random Voxtral, or the real-size one with random weights."""
    from services.voxtral.engine import NOTE_FILE
    from tools.models.tiny import AUDIO_TOKEN_ID, build_tiny_voxtral, save_processor, tekken_v7

    if small:
        return build_tiny_voxtral(folder)
    import torch
    from transformers import VoxtralConfig, VoxtralForConditionalGeneration

    save_processor(folder, tekken_v7())
    config = VoxtralConfig(audio_token_id=AUDIO_TOKEN_ID)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))  # made in its serving dtype: no fp32 copy on the way
    try:
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = VoxtralForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.pad_token_id = 11
    model.save_pretrained(folder, safe_serialization=True)
    (folder / NOTE_FILE).write_text(WEIGHTS_NOTE)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return folder


def summary(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95)}


def measure_variant(engine: VoxtralEngine, name: str, tokens: int, runs: int) -> dict[str, Any]:
    kv_cache, mode = VARIANTS[name]
    engine.kv_cache = kv_cache
    started = time.perf_counter()
    if mode == "eager":
        engine._configure("eager")  # noqa: SLF001 (the engine's own switch, as warm_up uses it)
        in_effect = "eager"
        warm = engine.prompts.chat(speech(1.0), [], "", engine.settings.max_context_tokens)
        for _ in range(2):
            engine.generate(warm, params(engine, 3), lambda _: None, threading.Event())
    else:
        in_effect = engine.warm_up()  # the seed's mode first, then its fallbacks
    warm_s = time.perf_counter() - started
    row: dict[str, Any] = {"variant": name, "kv_cache": kv_cache, "compile_mode_asked": mode,
                           "compile_mode_in_effect": in_effect, "fallback_fired": in_effect != mode,
                           "warm_up_s": round(warm_s, 1)}
    rates: list[float] = []
    for seconds in AUDIO_S:
        inputs = engine.prompts.chat(speech(seconds), HISTORY, engine.settings.instructions,
                                     engine.settings.max_context_tokens)
        firsts = []
        for _ in range(runs):
            result = engine.generate(inputs, params(engine, tokens), lambda _: None, threading.Event())
            firsts.append(result.prefill_ms)
            if result.completion_tokens > 1 and result.decode_ms > 0:
                rates.append((result.completion_tokens - 1) / (result.decode_ms / 1000))
        row[f"first_token_ms_{seconds:g}s"] = summary(firsts)
        row[f"prompt_tokens_{seconds:g}s"] = len(inputs.tokens)
    row["tokens_per_s"] = percentile(rates, 50)
    return row


def params(engine: VoxtralEngine, tokens: int) -> GenerationParams:
    return GenerationParams.defaults(engine.settings).override(4096, max_new_tokens=tokens, min_new_tokens=tokens)


async def service_levels(settings: VoxtralSettings, levels: tuple[int, ...], tokens: int) -> dict[str, Any]:
    """The Voxtral gRPC service in this process, on the same device: `n` concurrent Respond streams."""
    import grpc

    from services.common.server import GrpcServer
    from services.voxtral.server import voxtral_service
    from voice.v1 import voxtral_pb2, voxtral_pb2_grpc

    server = GrpcServer(settings, [voxtral_service(settings)])
    port = await server.start()
    await server.warm_up()
    audio = speech(3.0).tobytes()
    roles = {"user": voxtral_pb2.ROLE_USER, "assistant": voxtral_pb2.ROLE_ASSISTANT}
    history = [voxtral_pb2.ConversationTurn(role=roles[t.role], text=t.text) for t in HISTORY]
    results: dict[str, Any] = {}
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}",
                                             options=[("grpc.max_send_message_length", 8 << 20)]) as channel:
            stub = voxtral_pb2_grpc.VoxtralServiceStub(channel)

            async def one() -> tuple[float | None, int, float, str]:
                request = voxtral_pb2.RespondRequest(
                    audio=audio, sample_rate_hz=16000, history=history,
                    generation=voxtral_pb2.GenerationOptions(max_new_tokens=tokens, min_new_tokens=tokens))
                started, first, count = time.perf_counter(), None, 0
                try:
                    async for message in stub.Respond(request, timeout=600):
                        if message.text_delta and first is None:
                            first = (time.perf_counter() - started) * 1000
                        if message.HasField("stats"):
                            count = message.stats.completion_tokens
                except grpc.aio.AioRpcError as err:
                    return None, 0, time.perf_counter() - started, err.code().name
                return first, count, time.perf_counter() - started, "OK"

            await one()  # the channel and the service warm
            for n in levels:
                started = time.perf_counter()
                done = await asyncio.gather(*(one() for _ in range(n)))
                wall = time.perf_counter() - started
                served = [d for d in done if d[3] == "OK"]
                results[f"service_streams_{n}"] = {
                    "first_token_ms": summary([d[0] for d in served if d[0] is not None]),
                    "tokens_per_s_total": round(sum(d[1] for d in served) / wall, 1),
                    "tokens_per_s_per_stream": percentile([d[1] / d[2] for d in served if d[2] > 0], 50),
                    "served": len(served), "refused": sorted({d[3] for d in done if d[3] != "OK"}),
                }
                print(json.dumps({f"service_streams_{n}": results[f"service_streams_{n}"]}), flush=True)
    finally:
        await server.stop(0)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="the small random Voxtral on the CPU (a rehearsal)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--tokens", type=int, default=25, help="new tokens per reply (the seed's 25)")
    parser.add_argument("--runs", type=int, default=5, help="timed replies per audio length and variant")
    parser.add_argument("--variants", default="eager,static,compiled")
    parser.add_argument("--levels", default=",".join(map(str, STREAM_LEVELS)), help="concurrent streams")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    import torch

    from bench.report import write_results

    cuda = torch.cuda.is_available() and not args.small
    dtype = args.dtype if cuda else "float32"
    device = torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    out: dict[str, Any] = {"benchmark": "gpu", "device": device, "dtype": dtype, "new_tokens": args.tokens,
                           "runs": args.runs, "model": "small random Voxtral (rehearsal)" if args.small else
                           WEIGHTS_NOTE, "torch": torch.__version__}
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("GPU_BENCH_TMP")) as tmp:
        started = time.perf_counter()
        folder = build_model(Path(tmp) / "voxtral", args.small, dtype)
        out["build_s"] = round(time.perf_counter() - started, 1)
        settings = VoxtralSettings(model_id=str(folder), dtype=dtype, device="cuda" if cuda else "cpu",
                                   static_cache=True, compile_mode="reduce-overhead", seed=0, port=0, metrics_port=0,
                                   max_new_tokens_limit=max(args.tokens, 25))
        started = time.perf_counter()
        engine = VoxtralEngine(settings)
        out["load_s"] = round(time.perf_counter() - started, 1)
        for name in args.variants.split(","):
            row = measure_variant(engine, name, args.tokens, args.runs)
            rows.append(row)
            print(json.dumps(row), flush=True)
            for seconds in AUDIO_S:
                out[f"first_token_ms_{seconds:g}s_{name}"] = row[f"first_token_ms_{seconds:g}s"]
            out[f"tokens_per_s_{name}"] = row["tokens_per_s"]
        out["variants"] = rows
        if cuda:
            out["gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        del engine
        if cuda:
            torch.cuda.empty_cache()
        levels = tuple(int(n) for n in args.levels.split(",") if n)
        # The service as deployed: compiled, unless this run leaves compiling out (a quick rehearsal).
        served = settings if "compiled" in args.variants else settings.model_copy(update={"compile_mode": "eager"})
        out["service_compile_mode"] = served.compile_mode
        out.update(asyncio.run(service_levels(served, levels, args.tokens)))
    base = out.get("tokens_per_s_eager")
    for name in VARIANTS:
        if base and out.get(f"tokens_per_s_{name}"):
            out[f"speed_vs_eager_{name}"] = round(out[f"tokens_per_s_{name}"] / base, 2)
    columns = ["variant", "compile_mode_in_effect", "first_token_ms_1s", "first_token_ms_3s", "first_token_ms_10s",
               "tokens_per_s", "warm_up_s"]
    table = [{k: (v["p50"] if isinstance(v, dict) else v) for k, v in row.items() if k in columns} for row in rows]
    write_results(args.out, "gpu" if not args.small else "gpu_rehearsal", out, table, columns)
    print(f"\n{device}, {dtype}, {out['model']}")
    print(f"{'variant':10} {'mode':16} {'1 s':>8} {'3 s':>8} {'10 s':>8} {'tok/s':>8}  (first token p50, ms)")
    for row in table:
        print(f"{row['variant']:10} {row['compile_mode_in_effect']:16} {row['first_token_ms_1s']!s:>8} "
              f"{row['first_token_ms_3s']!s:>8} {row['first_token_ms_10s']!s:>8} {row['tokens_per_s']!s:>8}")
    for n in levels:
        level = out[f"service_streams_{n}"]
        print(f"service, {n:>2} streams: first token p50 {level['first_token_ms']['p50']} p95 "
              f"{level['first_token_ms']['p95']} ms, {level['tokens_per_s_total']} tok/s in all, "
              f"served {level['served']}, refused {level['refused']}")


if __name__ == "__main__":
    main()
