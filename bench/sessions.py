"""What the load benchmarks share: the real utterances they speak, one paced conversation that
records its turns, the Voxtral settings they run with, and a process's CPU and memory."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from google.protobuf import json_format

from harness.conversation import Conversation
from harness.recordings import recording
from services.common.audio import resample
from voice.v1 import gateway_pb2

VOXTRAL_ENV = {"VOXTRAL_COMPILE_MODE": "reduce-overhead", "VOXTRAL_MAX_NEW_TOKENS": "25",
               "VOXTRAL_TRANSCRIBE_MAX_NEW_TOKENS": "32"}


def utterances() -> list[np.ndarray]:
    """Single utterances cut from the real recordings at pauses (16 kHz)."""
    beckett, _ = recording("beckett.wav")
    cities, cities_rate = recording("two_cities.wav")
    endgame, endgame_rate = recording("endgame_nagg_nell.wav")
    cuts = [beckett[: int(5.9 * 16000)], beckett[int(6.2 * 16000):],
            resample(cities[int(0.6 * cities_rate): int(4.6 * cities_rate)], cities_rate, 16000),
            resample(endgame[: int(1.45 * endgame_rate)], endgame_rate, 16000),
            resample(endgame[int(4.8 * endgame_rate): int(8.4 * endgame_rate)], endgame_rate, 16000)]
    return [np.ascontiguousarray(c) for c in cuts]


async def one_session(stub, speech: list[np.ndarray], turns: int, offset: int, out: dict[str, list]) -> None:
    conv = Conversation(stub, gateway_pb2.SessionConfig(input_sample_rate_hz=16000), timeout=600)
    try:
        await conv.silence(200, pace=1.0)
        for turn in range(turns):
            done_before = len(conv.of("turn_completed")) + len(conv.of("error"))
            await conv.send(speech[(offset + turn) % len(speech)], pace=1.0)
            deadline = time.monotonic() + 60
            while len(conv.of("turn_completed")) + len(conv.of("error")) <= done_before and not conv.closed:
                if time.monotonic() > deadline:
                    out["errors"].append("no reply within 60 s")
                    break
                await conv.silence(100, pace=1.0)  # a microphone keeps sending while the user listens
            await conv.silence(300, pace=1.0)
        await conv.finish(timeout=120)
    except Exception as exc:  # noqa: BLE001 (a benchmark counts failures instead of stopping)
        out["errors"].append(f"{type(exc).__name__}: {exc}")
        conv.cancel()
    out["errors"] += [f"{e.code}: {e.message}" for e in conv.of("error")]
    if conv.error is not None:
        out["errors"].append(f"{conv.error.code().name}: {conv.error.details()}")
    ended = {e.turn_id: e for e in conv.of("speech_ended")}
    first_audio: dict[str, float] = {}
    chunks: dict[str, list[tuple[float, float]]] = {}  # per reply: (arrival, seconds of audio)
    for (kind, event), at in zip(conv.events, conv.event_times, strict=True):
        if kind == "response_audio":
            first_audio.setdefault(event.turn_id, at)
            chunks.setdefault(event.turn_id, []).append((at, len(event.audio) / 2 / event.sample_rate_hz))
    for reply in chunks.values():
        out["stalls_ms"] += [gap * 1000 for gap in playback_stalls(reply)]
    for done in conv.of("turn_completed"):
        out["turns"].append(json_format.MessageToDict(done.metrics, preserving_proto_field_name=True))
        sent = conv.when_sent(ended[done.turn_id].end_sample - 1) if done.turn_id in ended else None
        if sent is not None and done.turn_id in first_audio:
            out["mouth_to_ear_ms"].append((first_audio[done.turn_id] - sent) * 1000)


def playback_stalls(chunks: list[tuple[float, float]], tolerance_s: float = 0.02) -> list[float]:
    """The gaps (seconds) a client playing one reply at real time meets: it starts playing the first
    chunk as it arrives, and a chunk that arrives after everything before it has been played is a
    stall (beyond `tolerance_s`, one packet's jitter)."""
    gaps: list[float] = []
    clock: float | None = None  # when what has arrived so far has been played
    for arrival, seconds in chunks:
        if clock is not None and arrival > clock + tolerance_s:
            gaps.append(arrival - clock)
        clock = max(clock if clock is not None else arrival, arrival) + seconds
    return gaps


def proc_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds, resident MB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS")) / 1024
    return cpu, rss
