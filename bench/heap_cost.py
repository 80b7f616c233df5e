"""What the allocator set-up of services.common.heap costs each stage's model (`make bench-heap`):
Voxtral's generation, Kokoro's synthesis and Smart Turn's decision, each timed in a fresh process
with glibc's default (adaptive mmap threshold) and with keep_heap_small(), the two alternating
round by round on the same machine; the ratio heap/default is the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.report import write_results
from services.common.latency import percentile

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
REPLY = "I am not yet capable of feeling sadness, but I can try."


def voxtral(calls: int) -> list[float]:
    from bench.voxtral_generation import prepared
    from services.voxtral.config import VoxtralSettings

    engine, inputs, params = prepared(VoxtralSettings(model_id=str(MODELS / "voxtral-english"), seed=0), 20)
    engine.warm_up()
    return timed(lambda: engine.generate(inputs, params, lambda _: None, threading.Event()), calls)


def kokoro(calls: int) -> list[float]:
    from kokoro_onnx import Kokoro

    model = Kokoro(str(MODELS / "kokoro" / "kokoro-v1.0.int8.onnx"), str(MODELS / "kokoro" / "voices-v1.0.npz"))
    model.create("Warm up.", voice="af_heart")
    return timed(lambda: model.create(REPLY, voice="af_heart"), calls)


def smart_turn(calls: int) -> list[float]:
    from harness.speech_set import audio as recorded
    from services.vad.smart_turn import SmartTurn

    model = SmartTurn(MODELS / "turn" / "smart-turn-v3.2-cpu.onnx")
    audio = recorded("beckett.wav")[: 16000 * 6]
    model.probability(audio)
    return timed(lambda: model.probability(audio), calls)


STAGES: dict[str, tuple[Callable[[int], list[float]], int]] = {
    "voxtral generate (20 tokens)": (voxtral, 9), "kokoro synthesis (one sentence)": (kokoro, 5),
    "smart turn decision": (smart_turn, 15)}


def timed(call: Callable[[], object], calls: int) -> list[float]:
    walls = []
    for _ in range(calls):
        began = time.perf_counter()
        call()
        walls.append((time.perf_counter() - began) * 1000)
    return walls


def child(stage: str, heap: bool) -> None:
    """One process: the allocator as asked, then the stage's calls; prints their times as JSON."""
    if heap:
        from services.common.heap import keep_heap_small

        if not keep_heap_small():
            raise SystemExit("keep_heap_small() is not available here (not glibc)")
    run, calls = STAGES[stage]
    print(json.dumps(run(calls)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--child", nargs=2, metavar=("STAGE", "HEAP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1] == "heap")
        return
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows = []
    for stage in STAGES:
        times: dict[str, list[float]] = {"default": [], "heap": []}
        for _ in range(args.rounds):
            for kind in times:  # alternating, so a slow spell of the machine falls on both
                out = subprocess.run([sys.executable, "-m", "bench.heap_cost", "--child", stage, kind], env=env,
                                     cwd=ROOT, check=True, capture_output=True, text=True).stdout
                times[kind] += json.loads(out.strip().splitlines()[-1])
        default, heap = percentile(times["default"], 50), percentile(times["heap"], 50)
        if default is None or heap is None:
            raise SystemExit(f"{stage}: no calls timed")
        rows.append({"stage": stage, "default_ms_p50": default, "small_heap_ms_p50": heap,
                     "small_heap_vs_default": round(heap / default, 2), "calls": len(times["default"])})
        print(rows[-1], flush=True)
    summary = {"benchmark": "heap_cost", "device": f"CPU ({platform.machine()}, {os.cpu_count()} cores)",
               "what": "services.common.heap.keep_heap_small() against glibc's default, per stage model",
               "levels": rows}
    write_results(args.out, "heap_cost", summary, rows,
                  ["stage", "default_ms_p50", "small_heap_ms_p50", "small_heap_vs_default", "calls"])


if __name__ == "__main__":
    main()
