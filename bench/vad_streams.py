"""How many concurrent real-time streams one VAD process on one core sustains (`make bench-vad`).

The VAD service runs as its own process pinned to CPU 0; this client is pinned to CPU 1. Each
stream plays beckett.wav in real time, in 20 ms chunks, starting at a random phase and from a random
point of the audio (so the streams' pauses, and their end-of-turn decisions, are not in step). An event's
delay is its arrival time minus the time the chunk holding its `decided_at_sample` was sent.
A level passes when p99 delay is under 20 ms with no errors; the client's own lateness is
reported so a client-bound run is never mistaken for a server limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench.report import write_results
from bench.sessions import proc_usage
from harness.processes import ServiceProcess
from harness.recordings import recording
from services.common.channels import open_channel
from services.common.latency import percentile
from voice.v1 import audio_pb2, vad_pb2, vad_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
CHUNK_MS = 20
TARGET_P99_MS = 20.0
CLIENT_LATE_LIMIT_MS = 5.0


async def one_stream(stub, audio: bytes, rate: int, seconds: float, phase: float, delays: list[float],
                     lateness: list[float], errors: list[str], model_ends: list[float]) -> None:
    chunk = rate * CHUNK_MS // 1000 * 2
    sent_at: dict[int, float] = {}  # sample index at end of chunk -> send time
    config = vad_pb2.StreamDetectRequest(config=vad_pb2.VadConfig(
        format=audio_pb2.AudioFormat(sample_rate_hz=rate, encoding=audio_pb2.AUDIO_ENCODING_PCM16LE)))
    await asyncio.sleep(phase)
    call = stub.StreamDetect(timeout=seconds + 30)

    async def reader() -> None:
        ends: list[int] = []
        try:
            await read_events(ends)
        except grpc.aio.AioRpcError as err:
            errors.append(f"{err.code().name}: {err.details()}")

    async def read_events(ends: list[int]) -> None:
        async for reply in call:
            now = time.perf_counter()
            if not ends or ends[-1] < max(sent_at):
                ends[:] = sorted(sent_at)
            at = reply.event.decided_at_sample
            idx = np.searchsorted(ends, at)
            # The voice detection's own delay: events decided by the audio itself. A model answer
            # (PAUSED, ENDED by the model) comes when the decision is done: model_end says how long.
            by_audio = reply.event.type != vad_pb2.SPEECH_EVENT_TYPE_PAUSED or \
                not reply.event.HasField("end_of_turn_probability")
            if idx < len(ends) and by_audio and reply.event.end_reason != vad_pb2.END_OF_TURN_REASON_MODEL:
                delays.append((now - sent_at[ends[idx]]) * 1000)
            if reply.event.end_reason == vad_pb2.END_OF_TURN_REASON_MODEL:  # silence the model's answer took
                model_ends.append((at - reply.event.end_sample) * 1000 / rate)

    read = asyncio.ensure_future(reader())
    try:
        await call.write(config)
        start = time.perf_counter()
        position, n = random.Random(phase).randrange(0, len(audio) // chunk) * chunk, 0
        while time.perf_counter() - start < seconds:
            due = start + n * CHUNK_MS / 1000
            wait = due - time.perf_counter()
            lateness.append(max(0.0, -wait) * 1000)
            if wait > 0:
                await asyncio.sleep(wait)
            piece = audio[position : position + chunk]
            if len(piece) < chunk:  # always a whole chunk, across the loop's end too
                piece += audio[: chunk - len(piece)]
            position = (position + chunk) % len(audio)
            await call.write(vad_pb2.StreamDetectRequest(audio=piece))
            sent_at[(n + 1) * chunk // 2] = time.perf_counter()
            n += 1
        await call.done_writing()
        await read
    except grpc.aio.AioRpcError as err:
        errors.append(f"{err.code().name}: {err.details()}")
        await read


async def run_level(target: str, streams: int, seconds: float, audio: bytes, rate: int) -> dict[str, Any]:
    delays: list[float] = []
    lateness: list[float] = []
    errors: list[str] = []
    model_ends: list[float] = []
    vad = vad_pb2.DESCRIPTOR.services_by_name["VadService"]
    async with open_channel(target, vad) as channel:
        stub = vad_pb2_grpc.VadServiceStub(channel)
        rng = random.Random(streams)
        await asyncio.gather(*(one_stream(stub, audio, rate, seconds, rng.uniform(0, 1.0), delays, lateness, errors,
                                          model_ends)
                               for _ in range(streams)))
    late = np.array(lateness) if lateness else np.zeros(1)
    d = np.array(delays) if delays else np.full(1, np.nan)
    return {
        "streams": streams,
        "events": len(delays),
        "delay_p50_ms": percentile(d, 50, 2),
        "delay_p99_ms": percentile(d, 99, 2),
        "client_late_p99_ms": percentile(late, 99, 2),
        "model_end_p50_ms": percentile(model_ends, 50, 1) if model_ends else None,
        "model_end_p99_ms": percentile(model_ends, 99, 1) if model_ends else None,
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
    }


def conversation(samples: np.ndarray, rate: int, listen_s: float) -> np.ndarray:
    """A conversational stream: beckett's six phrases as three turns of two, each followed by
    `listen_s` of silence (the user listening to the reply)."""
    quiet = np.zeros(int(listen_s * rate), dtype=samples.dtype)
    turns = [samples[round(a * rate) : round(b * rate)] for a, b in ((0.0, 2.9), (3.4, 6.2), (6.7, 10.0))]
    return np.concatenate([part for turn in turns for part in (turn, quiet)])


def start_vad(detector: str) -> ServiceProcess:
    """The VAD service pinned to CPU 0."""
    service = ServiceProcess("services.vad", "VAD_", {"VAD_MAX_STREAMS": "10000", "VAD_DETECTOR": detector},
                             launcher=("taskset", "-c", "0"))
    service.wait_serving(30)
    return service


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="100,200,300,400,500,600")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--detector", choices=("smart_turn", "silence"), default="silence")
    parser.add_argument("--conversation", action="store_true",
                        help="turns of speech with pauses, then silence while the reply plays (not continuous talk)")
    parser.add_argument("--name", default="vad_streams", help="results file name")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1 % (os.cpu_count() or 1)})
    samples, rate = recording("beckett.wav")
    if args.conversation:
        samples = conversation(samples, rate, listen_s=6.0)
    vad = start_vad(args.detector)
    pid = vad.proc.pid
    rows = []
    try:
        for level in (int(x) for x in args.levels.split(",")):
            cpu_before, wall_before = proc_usage(pid)[0], time.perf_counter()
            row = asyncio.run(run_level(vad.target, level, args.seconds, samples.tobytes(), rate))
            busy = (proc_usage(pid)[0] - cpu_before) / (time.perf_counter() - wall_before)
            row["vad_cpu_pct"] = round(100 * busy, 1)
            row["passes"] = bool(row["errors"] == 0 and row["delay_p99_ms"] < TARGET_P99_MS)
            # A client that cannot keep real time measures itself, not the service.
            row["client_bound"] = bool(row["client_late_p99_ms"] > CLIENT_LATE_LIMIT_MS)
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        vad.stop()
    passing = [r["streams"] for r in rows if r["passes"]]
    summary = {
        "benchmark": "vad_streams",
        "device": f"{platform.processor() or platform.machine()}, VAD pinned to 1 core",
        "chunk_ms": CHUNK_MS,
        "seconds_per_level": args.seconds,
        "recording": "beckett.wav (16 kHz)" + (", as 3 turns each followed by 6 s of silence" if args.conversation
                                               else ", looped"),
        "detector": args.detector,
        "target": f"p99 event delay < {TARGET_P99_MS:.0f} ms at >= 200 streams",
        "max_streams_passing": max(passing) if passing else 0,
        "levels": rows,
    }
    columns = ["streams", "events", "delay_p50_ms", "delay_p99_ms", "model_end_p50_ms", "model_end_p99_ms",
               "client_late_p99_ms", "client_bound", "vad_cpu_pct", "errors",
               "passes"]
    write_results(args.out, args.name, summary, rows, columns)


if __name__ == "__main__":
    main()
