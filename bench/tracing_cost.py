"""What tracing costs a turn (`make bench-tracing`): two systems side by side, one with tracing off
(the default) and one exporting every span to an OTLP receiver, the same real recordings spoken
at real time, turns alternating between them, one session at a time, in one run.

Per turn: the gateway's `e2e_ms` (speech-ended to first reply audio) and, at the client, from the
`speech_ended` event to the first `response_audio`."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from bench.conversation_material import material
from bench.realtime_latency import grpc_turn, p50
from bench.report import write_results
from bench.sessions import VOXTRAL_ENV
from harness.otlp_receiver import exporting_to, receiving
from harness.stack import Stack
from tools.fetch_models import ENGLISH_VOXTRAL_DIR
from tools.models.english import build_english_voxtral

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=10, help="turns per system")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    clips = [np.clip(c.x * 32767, -32768, 32767).astype(np.int16) for c in material(args.turns, 0)["questions"]]
    model = build_english_voxtral(ENGLISH_VOXTRAL_DIR)
    rows: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    with receiving() as (received, port):
        stacks = {"off": Stack(model, voxtral_env=VOXTRAL_ENV)}
        try:
            stacks["on"] = Stack(model, voxtral_env=VOXTRAL_ENV, every_env=exporting_to(port))
            for n in range(args.turns):
                clip = clips[n % len(clips)]
                order = ("off", "on") if n % 2 == 0 else ("on", "off")  # neither always goes first
                for path in order:
                    rows[path].append(asyncio.run(grpc_turn(stacks[path].gateway, clip)))
                print(n, rows["off"][-1], rows["on"][-1], flush=True)
        finally:
            for stack in stacks.values():
                stack.stop()
        spans = len(received.spans)
    table: list[dict[str, Any]] = [
        {"tracing": path, "turns": len(r), "e2e_ms_p50": p50([x["e2e_ms"] for x in r]),
         "speech_end_to_first_audio_ms_p50": p50([x["client_ms"] for x in r])} for path, r in rows.items()]
    off, on = table[0]["e2e_ms_p50"], table[1]["e2e_ms_p50"]
    summary = {
        "benchmark": "tracing_cost",
        "device": f"CPU ({platform.machine()}, {os.cpu_count()} cores), every service on the same machine",
        "method": "two systems (tracing off; tracing on, OTLP to a receiver), real recordings at real time, "
                  "one session per turn, turns alternating",
        "e2e_ms_p50_off": off, "e2e_ms_p50_on": on,
        "ratio_on_to_off": round(on / off, 3) if off and on else None,
        "spans_received": spans,
        **{f"{path}_turns": r for path, r in rows.items()},
    }
    write_results(args.out, "tracing_cost", summary, table, list(table[0]))


if __name__ == "__main__":
    main()
