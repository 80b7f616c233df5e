"""End-to-end latency (`make bench`): the whole stack vs an in-process baseline, and a
concurrency sweep. Sessions play real recordings in real time through GatewayService.Converse.

- Per stage p50/p95 of the design's metrics, as the gateway measured them, plus client-side
  mouth-to-ear: first reply audio received minus when the last voiced sample was sent.
- Baseline: the same engines (Voxtral, clause splitting, Kokoro) called directly in this
  process, no gRPC, no Redis; overhead ratio = e2e_ms(stack) / e2e_ms(baseline), one run.
- Sweep: 1, 4, 16 (and more by flag) sessions: p95 e2e and overhead, errors, CPU and memory
  per service. Optimisations in effect are read from the services themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format

from bench.report import write_results
from bench.sessions import VOXTRAL_ENV, one_session, proc_usage, utterances
from harness.stack import Stack
from services.common.clauses import ClauseSplitter
from services.common.latency import METRICS, median, percentile
from services.gateway.config import GatewaySettings
from tools.fetch_models import ENGLISH_VOXTRAL_DIR
from tools.models.english import build_english_voxtral
from voice.v1 import (
    gateway_pb2_grpc,
    tts_pb2,
    tts_pb2_grpc,
    vad_pb2,
    vad_pb2_grpc,
    voxtral_pb2,
    voxtral_pb2_grpc,
)

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"voxtral_ttft_ms": 100.0, "e2e_ms": 300.0}  # the seed's goals, GPU figures


def pct(values: list[float], q: float) -> float:
    found = percentile(values, q)
    return float("nan") if found is None else found


async def run_level(target: str, sessions: int, turns: int, speech: list[np.ndarray],
                    pids: dict[str, int]) -> dict[str, Any]:
    out: dict[str, list] = {"turns": [], "mouth_to_ear_ms": [], "errors": [], "stalls_ms": []}
    before = {name: proc_usage(pid) for name, pid in pids.items()}
    started = time.monotonic()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        await asyncio.gather(*(one_session(stub, speech, turns, i, out) for i in range(sessions)))
    wall = time.monotonic() - started
    row: dict[str, Any] = {"sessions": sessions, "turns": len(out["turns"]), "errors": len(out["errors"])}
    for name in METRICS:
        values = [t[name] for t in out["turns"] if name in t]
        row[f"{name}_p50"], row[f"{name}_p95"] = pct(values, 50), pct(values, 95)
    row["mouth_to_ear_p50"], row["mouth_to_ear_p95"] = pct(out["mouth_to_ear_ms"], 50), pct(out["mouth_to_ear_ms"], 95)
    # A client playing each reply at real time: how often it ran out of audio inside a reply.
    row["stalls"] = len(out["stalls_ms"])
    row["stall_ms_total"] = round(sum(out["stalls_ms"]), 1)
    for name, pid in pids.items():
        cpu, rss = proc_usage(pid)
        row[f"{name}_cpu_pct"] = round(100 * (cpu - before[name][0]) / wall, 1)
        row[f"{name}_rss_mb"] = round(rss)
    row["first_errors"] = sorted(set(out["errors"]))[:3]
    row["overhead_ms_values"] = [round(t["overhead_ms"], 1) for t in out["turns"] if "overhead_ms" in t]
    return row


def baseline(model: Path, speech: list[np.ndarray], runs: int) -> list[float]:
    """The same engines in one process: Voxtral streaming into the clause splitter, Kokoro on the
    first clause as soon as it exists. Returns e2e_ms per turn (from the utterance's end)."""
    from services.tts.config import TtsSettings
    from services.tts.engine import OnnxEngine
    from services.tts.phonemes import shared_phonemizer
    from services.tts.synthesizer import Synthesizer
    from services.tts.voices import VoiceBank
    from services.voxtral.config import VoxtralSettings
    from services.voxtral.engine import VoxtralEngine
    from services.voxtral.generation import GenerationParams

    vsettings = VoxtralSettings(model_id=str(model), compile_mode=VOXTRAL_ENV["VOXTRAL_COMPILE_MODE"],
                                max_new_tokens=int(VOXTRAL_ENV["VOXTRAL_MAX_NEW_TOKENS"]), seed=0)
    engine = VoxtralEngine(vsettings)
    engine.warm_up()
    tsettings = TtsSettings(backend="onnx")
    synth = Synthesizer(tsettings, OnnxEngine(tsettings.models_dir / tsettings.onnx_model,
                                              tsettings.models_dir / tsettings.voices_file,
                                              tsettings.onnx_threads, tsettings.onnx_spinning),
                        VoiceBank(tsettings.models_dir / tsettings.voices_file), shared_phonemizer())
    shared_phonemizer().warm_up()
    params = GenerationParams.defaults(vsettings)
    gateway = GatewaySettings(auth_disabled=True)
    pool = ThreadPoolExecutor(2)
    times = []
    for i in range(runs):
        utterance = speech[i % len(speech)]
        first: list[str] = []
        ready = threading.Event()
        splitter = ClauseSplitter(first_words=gateway.first_clause_words, first_clause_s=gateway.first_clause_s,
                                  growth=gateway.clause_growth)  # as the gateway cuts

        def on_delta(delta: str, first: list[str] = first, splitter: ClauseSplitter = splitter,
                     ready: threading.Event = ready) -> None:
            if not first and (clauses := splitter.push(delta)):
                first.append(clauses[0])
                ready.set()

        started = time.perf_counter()
        inputs = engine.prompts.chat(utterance, [], vsettings.instructions, vsettings.max_context_tokens)
        generation = pool.submit(engine.generate, inputs, params, on_delta, threading.Event())
        if not ready.wait(30):
            raise RuntimeError("the baseline produced no clause")
        synth.render(first[0], tsettings.default_voice, 1.0)
        times.append((time.perf_counter() - started) * 1000)
        generation.result()
    return times


def read_optimisations(stack: Stack) -> dict[str, Any]:
    import grpc as sync_grpc

    with sync_grpc.insecure_channel(stack.services["voxtral"].target) as ch:
        vox = voxtral_pb2_grpc.VoxtralServiceStub(ch).GetInfo(voxtral_pb2.GetInfoRequest(), timeout=5)
    with sync_grpc.insecure_channel(stack.services["tts"].target) as ch:
        tts = tts_pb2_grpc.TtsServiceStub(ch).ListVoices(tts_pb2.ListVoicesRequest(), timeout=5)
    with sync_grpc.insecure_channel(stack.services["vad"].target) as ch:
        vad = vad_pb2_grpc.VadServiceStub(ch).GetInfo(vad_pb2.VadServiceGetInfoRequest(), timeout=5)
    return {
        "voxtral": {"model": vox.model_id, "dtype": vox.dtype, "device": vox.device, "kv_cache": vox.kv_cache,
                    "compile_mode": vox.compile_mode, "attention": vox.attention,
                    "max_new_tokens": vox.generation_defaults.max_new_tokens},
        "tts": {"backend": tts.backend, "voice": tts.default_voice},
        "vad": json_format.MessageToDict(vad.defaults, preserving_proto_field_name=True),
    }


def plot(rows: list[dict[str, Any]], baseline_ms: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['sessions']} session{'s' if r['sessions'] != 1 else ''}" for r in rows]

    def ms(row: dict[str, Any], key: str) -> float:
        value = float(row[key])
        return 0.0 if np.isnan(value) else value

    first_clause = [ms(r, "first_clause_ms_p50") for r in rows]
    tts = [ms(r, "tts_ttfb_ms_p50") for r in rows]
    rest = [max(0.0, ms(r, "e2e_ms_p50") - a - b) for r, a, b in zip(rows, first_clause, tts, strict=True)]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(labels, first_clause, label="Voxtral to first clause (p50)", color="#7b61ff")
    ax.bar(labels, tts, bottom=first_clause, label="TTS first audio (p50)", color="#00a37a")
    ax.bar(labels, rest, bottom=[a + b for a, b in zip(first_clause, tts, strict=True)], label="rest of e2e (p50)",
           color="#e8710a")
    # A level without a completed turn has no p95: it gets no dot (matplotlib cannot place an all-NaN one).
    measured = [(label, float(r["e2e_ms_p95"])) for label, r in zip(labels, rows, strict=True)
                if not np.isnan(float(r["e2e_ms_p95"]))]
    if measured:
        ax.scatter([m[0] for m in measured], [m[1] for m in measured], color="black", zorder=3, label="e2e p95")
    for label, row in zip(labels, rows, strict=True):
        if not row["turns"]:
            ax.annotate("no turn completed\n(TTS deadlines)", (label, 0), ha="center", va="bottom", fontsize=8)
    ax.axhline(baseline_ms, color="grey", linestyle="--", label="in-process baseline e2e (p50)")
    ax.set_ylabel("milliseconds after end of speech")
    ax.set_title("End-to-end latency by stage (CPU, small English Voxtral, Kokoro ONNX)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--turns", type=int, default=16, help="turns per session")
    parser.add_argument("--baseline-runs", type=int, default=16)
    parser.add_argument("--tts-timeout-s", type=float, default=3.0,
                        help="the TTS service's bound on one clause (the seed's 3 s by default)")
    parser.add_argument("--smoke", action="store_true", help="one session, one turn, one baseline run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    if args.smoke:
        args.levels, args.turns, args.baseline_runs = "1", 1, 1
    speech = utterances()
    model = build_english_voxtral(ENGLISH_VOXTRAL_DIR)  # a no-op once `make models` has trained it
    base = baseline(model, speech, args.baseline_runs)
    timeout = str(args.tts_timeout_s)  # the TTS service's bound and the gateway's deadline alike
    stack = Stack(model, voxtral_env=VOXTRAL_ENV, tts_env={"TTS_TIMEOUT_S": timeout},
                  GATEWAY_TTS_TIMEOUT_S=timeout)
    try:
        optimisations = read_optimisations(stack)
        pids = {name: svc.proc.pid for name, svc in stack.services.items()}
        rows = []
        for level in (int(x) for x in args.levels.split(",")):
            row = asyncio.run(run_level(stack.gateway, level, args.turns, speech, pids))
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        stack.stop()
    base_p50 = median(base)
    for row in rows:
        row["overhead_ratio"] = round(float(row["e2e_ms_p50"]) / base_p50, 2)
    summary = {
        "benchmark": "e2e_latency",
        "device": f"CPU ({platform.machine()}, {os.cpu_count()} cores), every service on the same machine",
        "models": "small Voxtral trained here to answer in English (real architecture) + real Kokoro-82M int8 ONNX",
        "caution": "a CPU run with a small model is no evidence about a GPU: the seed's targets are GPU figures",
        "seed_targets_ms": TARGETS,
        "tts_timeout_s": args.tts_timeout_s,
        "baseline_e2e_ms_p50": round(base_p50, 1),
        "baseline_e2e_ms": [round(b, 1) for b in base],
        "optimisations_in_effect": optimisations,
        "levels": rows,
    }
    columns = ["sessions", "turns", "errors", "endpoint_ms_p50", "voxtral_ttft_ms_p50", "first_clause_ms_p50",
               "tts_ttfb_ms_p50", "e2e_ms_p50", "e2e_ms_p95", "overhead_ms_p50", "overhead_ms_p95",
               "mouth_to_ear_p50", "stalls", "overhead_ratio", "voxtral_cpu_pct", "tts_cpu_pct", "gateway_cpu_pct",
               "gateway_rss_mb"]
    name = "e2e_latency_smoke" if args.smoke else "e2e_latency"
    write_results(args.out, name, summary, rows, columns)
    if not args.smoke:
        plot(rows, base_p50, args.out / "e2e_latency.png")
    for row in rows:
        print(f"{row['sessions']:>3} sessions: e2e p50 {row['e2e_ms_p50']} ms (target < {TARGETS['e2e_ms']:.0f}), "
              f"Voxtral first token p50 {row['voxtral_ttft_ms_p50']} ms (target < {TARGETS['voxtral_ttft_ms']:.0f}), "
              f"overhead ratio {row['overhead_ratio']}, errors {row['errors']}  [CPU, small model: not a GPU figure]")
    if args.smoke and (rows[0]["errors"] or not rows[0]["turns"]):
        raise SystemExit(f"smoke run failed: {rows[0]['turns']} turns, errors {rows[0].get('first_errors')}")


if __name__ == "__main__":
    main()
