"""What a tool call costs a turn (`make bench-tools`): typed "What time is it?" on the whole stack,
alternating between a session with no tools ("plain": the model answers at once) and one with the
demo tools declared ("tool": the clock is called, its result sent the moment the call arrives), one
session each, in one run.

At the client: plain, from the text sent to the first reply audio; tool, from the result sent to
the first audio of the answer. The round trip's overhead is the second less the first, turn pair by
turn pair, each less its own TTS first-audio time (the turn's `tts_ttfb_ms`: the two first clauses
differ in length): both are then a Voxtral reply up to its first clause, so what is left is the round
trip itself (the event out, the result in, the longer prompt). Then a tool that takes 2 s: from the call
to the first audio of the filler phrase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import grpc

from bench.report import write_results
from bench.sessions import VOXTRAL_ENV
from clients.demo_tools import DEMO_TOOLS
from harness.conversation import Conversation
from harness.stack import Stack
from services.common.latency import percentile
from tools.fetch_models import ENGLISH_VOXTRAL_DIR
from tools.models.english import build_english_voxtral
from voice.v1 import gateway_pb2, gateway_pb2_grpc, voxtral_pb2

ROOT = Path(__file__).resolve().parent.parent
TOOLS = [voxtral_pb2.Tool(name=t.name, description=t.description, parameters_json=json.dumps(t.parameters))
         for t in DEMO_TOOLS.values()]
ASKS_THE_CLOCK = "What time is it?"
SLOW_TOOL_S = 2.0


async def turn(target: str, text: str, tool_delay_s: float | None = None) -> dict[str, float]:
    async with grpc.aio.insecure_channel(target) as channel:
        config = gateway_pb2.SessionConfig(input_sample_rate_hz=16000, tools=TOOLS if tool_delay_s is not None else [])
        conv = Conversation(gateway_pb2_grpc.GatewayServiceStub(channel), config, timeout=120)
        await conv.wait_for("session_started")
        sent = time.monotonic()
        await conv.raw(gateway_pb2.ConverseRequest(text=text))
        out: dict[str, float] = {}
        if tool_delay_s is not None:
            called = await conv.wait_for("tool_called")
            called_at = conv.event_times[[k for k, _ in conv.events].index("tool_called")]
            await asyncio.sleep(tool_delay_s)
            answered = time.monotonic()
            await conv.raw(gateway_pb2.ConverseRequest(tool_result=gateway_pb2.ToolResult(
                call_id=called.calls[0].id, output="10:42")))
            out["call_ms"] = (called_at - sent) * 1000
        ended = await conv.wait_for("turn_ended", timeout=60)
        await conv.finish()
    if ended.outcome != gateway_pb2.TURN_OUTCOME_COMPLETED:
        raise SystemExit(f"{text!r}: the turn ended {ended.outcome} ({ended.reason})")
    audio = [(t, e) for (k, e), t in zip(conv.events, conv.event_times, strict=True) if k == "response_audio"]
    out["tts_ttfb_ms"] = ended.metrics.tts_ttfb_ms  # the turn's first clause: the answer's, with an instant tool
    if tool_delay_s is None:
        out["first_audio_ms"] = (audio[0][0] - sent) * 1000
    elif tool_delay_s == 0:
        out["answer_first_audio_ms"] = (next(t for t, _ in audio if t >= answered) - answered) * 1000
    else:
        filler = next(t for t, e in audio if e.text == "One moment.")
        out["filler_first_audio_ms"] = (filler - called_at) * 1000
    return out


def stats(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    stack = Stack(build_english_voxtral(ENGLISH_VOXTRAL_DIR), voxtral_env=VOXTRAL_ENV)
    try:
        asyncio.run(turn(stack.gateway, ASKS_THE_CLOCK))  # warm every stage
        rows: list[dict[str, Any]] = []
        for n in range(args.turns):
            plain = asyncio.run(turn(stack.gateway, ASKS_THE_CLOCK))
            tool = asyncio.run(turn(stack.gateway, ASKS_THE_CLOCK, 0.0))
            raw = tool["answer_first_audio_ms"] - plain["first_audio_ms"]
            rows.append({"pair": n, "first_audio_ms": plain["first_audio_ms"],
                         "plain_tts_ttfb_ms": plain["tts_ttfb_ms"],
                         "call_ms": tool["call_ms"], "answer_first_audio_ms": tool["answer_first_audio_ms"],
                         "answer_tts_ttfb_ms": tool["tts_ttfb_ms"], "raw_overhead_ms": raw,
                         "overhead_ms": raw - (tool["tts_ttfb_ms"] - plain["tts_ttfb_ms"])})
            rows[-1] = {k: round(v, 1) for k, v in rows[-1].items()}
            print(rows[-1], flush=True)
        slow = [asyncio.run(turn(stack.gateway, ASKS_THE_CLOCK, SLOW_TOOL_S)) for _ in range(3)]
    finally:
        stack.stop()
    summary = {
        "benchmark": "tools", "device": f"CPU ({platform.machine()}, {os.cpu_count()} cores)",
        "what": "typed What time is it?: answered at once with no tools, against a clock call answered at once",
        "plain_first_audio_ms": stats([r["first_audio_ms"] for r in rows]),
        "tool_call_ms": stats([r["call_ms"] for r in rows]),
        "tool_answer_first_audio_ms": stats([r["answer_first_audio_ms"] for r in rows]),
        "tool_round_trip_overhead_ms": stats([r["overhead_ms"] for r in rows]),
        "raw_overhead_ms": stats([r["raw_overhead_ms"] for r in rows]),
        "overhead_note": ("tool_round_trip_overhead_ms: the answer's first audio after the result less the plain "
                          "reply's first audio, each less its own TTS first-audio time (Kokoro takes longer for a "
                          "longer first clause, and the two replies' clauses differ); raw_overhead_ms: without that"),
        "filler_first_audio_ms": stats([s["filler_first_audio_ms"] for s in slow]),
        "slow_tool_s": SLOW_TOOL_S, "rows": rows,
    }
    write_results(args.out, "tools", summary, rows,
                  ["pair", "first_audio_ms", "call_ms", "answer_first_audio_ms", "raw_overhead_ms", "overhead_ms"])


if __name__ == "__main__":
    main()
