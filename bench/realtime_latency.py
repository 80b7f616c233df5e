"""The OpenAI Realtime endpoint against the gRPC API, one session at a time (`make bench-realtime`):
the same real recordings spoken at real time into each, turns alternating between them, in one run.

Per turn, at the client: from the end-of-speech event (gRPC `speech_ended`, Realtime
`input_audio_buffer.speech_stopped`) to the first reply audio (`response_audio`,
`response.output_audio.delta`); and the gateway's own `e2e_ms` for the turn (gRPC `turn_completed`,
Realtime `response.done` timings).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from openai import AsyncOpenAI

from bench.conversation_material import material
from bench.report import write_results
from bench.sessions import VOXTRAL_ENV
from harness.conversation import Conversation
from harness.stack import Stack
from services.common.audio import resample
from services.common.latency import percentile
from tools.fetch_models import ENGLISH_VOXTRAL_DIR
from tools.models.english import build_english_voxtral
from voice.v1 import gateway_pb2, gateway_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
TAIL_MS = 2500  # silence after each question, at real time


async def grpc_turn(target: str, clip: np.ndarray) -> dict[str, float]:
    async with grpc.aio.insecure_channel(target) as channel:
        conv = Conversation(gateway_pb2_grpc.GatewayServiceStub(channel),
                            gateway_pb2.SessionConfig(input_sample_rate_hz=16000), timeout=120)
        await conv.send(clip, pace=1.0)
        await conv.silence(TAIL_MS, pace=1.0)
        done = await conv.wait_for("turn_completed", timeout=60)
        await conv.finish()
    kinds = [k for k, _ in conv.events]
    ended = conv.event_times[kinds.index("speech_ended")]
    first = conv.event_times[kinds.index("response_audio")]
    return {"client_ms": (first - ended) * 1000, "e2e_ms": done.metrics.e2e_ms}


async def realtime_turn(base: str, clip: np.ndarray) -> dict[str, float]:
    pcm = resample(clip, 16000, 24000).astype("<i2")
    pcm = np.concatenate([pcm, np.zeros(24000 * TAIL_MS // 1000, "<i2")])
    seen: dict[str, float] = {}
    timings: dict[str, Any] = {}
    statuses: list[str] = []
    conn_manager: Any = AsyncOpenAI(api_key="bench", websocket_base_url=base).realtime.connect(model="voxtral")
    async with conn_manager as conn:
        async def read() -> None:
            async for event in conn:
                seen.setdefault(event.type, time.monotonic())
                if event.type == "response.done" and event.response.status == "completed":
                    timings.update(event.response.model_extra.get("timings") or {})
                    return
                if event.type == "response.done":  # a sound judged no turn, say: the question's reply follows
                    statuses.append(event.response.status)
                    seen.pop("response.output_audio.delta", None)

        reader = asyncio.ensure_future(read())
        step = 2400  # 100 ms
        start = time.monotonic()
        for n, i in enumerate(range(0, len(pcm), step)):
            await asyncio.sleep(max(0.0, start + n * 0.1 - time.monotonic()))
            await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i:i + step].tobytes()).decode())
        try:
            await asyncio.wait_for(reader, 60)
        except TimeoutError:
            return {"client_ms": float("nan"), "e2e_ms": float("nan"), "failed": 1.0}
    return {"client_ms": (seen["response.output_audio.delta"] - seen["input_audio_buffer.speech_stopped"]) * 1000,
            "e2e_ms": float(timings.get("e2e_ms", float("nan")))}


def p50(values: list[float]) -> float | None:
    answered = [v for v in values if v == v]  # NaN: a turn with no reply
    return percentile(answered, 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=8, help="turns per path")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    clips = [np.clip(c.x * 32767, -32768, 32767).astype(np.int16) for c in material(args.turns, 0)["questions"]]
    stack = Stack(build_english_voxtral(ENGLISH_VOXTRAL_DIR), voxtral_env=VOXTRAL_ENV)
    rows: dict[str, list[dict[str, float]]] = {"grpc": [], "realtime": []}
    try:
        base = f"ws://127.0.0.1:{stack.web_port}/v1"
        for n in range(args.turns):
            clip = clips[n % len(clips)]
            rows["grpc"].append(asyncio.run(grpc_turn(stack.gateway, clip)))
            rows["realtime"].append(asyncio.run(realtime_turn(base, clip)))
            print(n, rows["grpc"][-1], rows["realtime"][-1], flush=True)
    finally:
        stack.stop()
    table: list[dict[str, Any]] = [
        {"path": path, "turns": len(r), "failed": sum(int(x.get("failed", 0)) for x in r),
         "speech_end_to_first_audio_ms_p50": p50([x["client_ms"] for x in r]),
         "e2e_ms_p50": p50([x["e2e_ms"] for x in r])} for path, r in rows.items()]
    grpc_e2e = table[0]["e2e_ms_p50"]
    summary = {
        "benchmark": "realtime_latency",
        "device": f"CPU ({platform.machine()}, {os.cpu_count()} cores), every service on the same machine",
        "method": "real recordings at real time, one session per turn, turns alternating between the paths",
        "realtime_first_delta_after_speech_stopped_ms_p50": table[1]["speech_end_to_first_audio_ms_p50"],
        "grpc_e2e_ms_p50": grpc_e2e,
        "ratio": round(table[1]["speech_end_to_first_audio_ms_p50"] / grpc_e2e, 3)
        if grpc_e2e and table[1]["speech_end_to_first_audio_ms_p50"] else None,
        "goal": "realtime first delta within 5% of the gRPC path's e2e_ms",
        **{f"{path}_turns": r for path, r in rows.items()},
    }
    write_results(args.out, "realtime_latency", summary, table, list(table[0]))


if __name__ == "__main__":
    main()
