"""Talking with the system as a person does (`make bench-conversation`): real recordings played in
real time over their own room tone, each reply played out at real time by the bench client (which
reports its playback position), and what a listener meets read from the audio as played.

- mouth_to_ear_ms: the true end of the user's speech (energy over the recording's noise floor) to
  the first audible reply sample played, with its parts; speculation on and off in the same run.
- junction_gap_ms, leading_silence_ms, stalls: the replies' silences as heard.
- barge_in_stop_ms, heard_text_error_words: a full sentence spoken over a reply; the reply's
  played audio is transcribed with the real recogniser to count words kept as said but not heard.
- false_interruption_resumed: coughs, backchannels cut from real recordings and door-like
  transients over a reply.
- first_clause_compute_ms: the replies' first clauses synthesised directly with the engine in this
  run; mouth_to_ear_overhead_ms is mouth-to-ear minus that.
- first_audible_vs_pipecat: a three-sentence reply through the TTS path vs Pipecat 1.14's
  KokoroTTSService (bench/peer_pipecat_tts.py, its own environment) on the same model and voice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench.conversation_material import Clip, material
from bench.first_audible import THREE_SENTENCES, direct_first_audible, pipecat_first_audible, tts_first_audible
from bench.playback import (
    first_audible_at,
    junction_gaps_ms,
    last_sound_at,
    leading_silence_ms,
    of_reply,
    played_audio,
)
from bench.report import write_results
from bench.sessions import VOXTRAL_ENV
from harness import speech_set as ss
from harness.conversation import Conversation
from harness.stack import Stack
from services.common.audio import resample
from services.common.latency import median, percentile
from tools.fetch_models import ENGLISH_VOXTRAL_DIR
from tools.models.english import build_english_voxtral
from voice.v1 import gateway_pb2, gateway_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
RATE = ss.RATE
ROOM = "beckett.wav"  # whose room tone fills the silences
GOALS = {"mouth_to_ear_overhead_ms_p50": 500, "first_audible_vs_pipecat": 0.75, "stalls": 0,
         "junction_gap_ms_max": 350, "leading_silence_ms_max": 100, "barge_in_stop_ms_p95": 300,
         "heard_text_error_words_max": 1, "false_interruption_resumed": 0.9}



def stats(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95),
            "max": round(max(values), 1) if values else None, "n": len(values)}


class Talk:
    """One session: speech and room tone at real time, replies played by the client as heard."""

    def __init__(self, stub: gateway_pb2_grpc.GatewayServiceStub) -> None:
        self.conv = Conversation(stub, gateway_pb2.SessionConfig(input_sample_rate_hz=RATE), timeout=1800,
                                 listen=True)
        self.tone = ss.room_tone(ROOM)
        self.fed = 0  # input samples queued so far

    async def say(self, x: np.ndarray) -> int:
        """Send `x` with room tone under it; returns the input offset of its first sample."""
        start = self.fed
        mixed = x + ss.loop(self.tone, len(x))
        await self.conv.send(np.frombuffer(ss.pcm16(mixed), dtype=np.int16), pace=1.0)
        self.fed += len(x)
        return start

    async def quiet(self, ms: int) -> None:
        await self.say(np.zeros(RATE * ms // 1000, np.float32))

    async def until(self, done: Callable[[], bool], limit_s: float = 90) -> bool:
        deadline = time.monotonic() + limit_s
        while not done():
            if time.monotonic() > deadline or self.conv.closed:
                return False
            await self.quiet(100)  # a microphone keeps sending while the user listens
        return True

    async def until_more(self, kinds: tuple[str, ...], than: int) -> bool:
        """Until there are more events of these kinds than `than`."""
        return await self.until(lambda: self.count(kinds) > than)

    async def until_turn(self, turn_id: str, kinds: tuple[str, ...]) -> bool:
        """Until reply `turn_id` has an event of these kinds."""
        return await self.until(lambda: any(self.event_time(k, turn_id) is not None for k in kinds))

    def count(self, kinds: tuple[str, ...]) -> int:
        return sum(len(self.conv.of(kind)) for kind in kinds)

    def event_time(self, kind: str, turn_id: str) -> float | None:
        for (k, event), at in zip(self.conv.events, self.conv.event_times, strict=True):
            if k == kind and getattr(event, "turn_id", None) == turn_id:
                return at
        return None

    def last(self, kind: str) -> Any:
        found = self.conv.of(kind)
        return found[-1] if found else None

    def reply(self, turn_id: str) -> list:
        assert self.conv.listener is not None
        return of_reply(self.conv.listener.log, turn_id)

    def playing_for(self, seconds: float) -> str | None:
        """The reply playing now, if it has been audible at least `seconds`."""
        listener = self.conv.listener
        if listener is None or not listener.playing():
            return None
        turn_id = listener.log[-1].turn_id
        return turn_id if self.audible_for(turn_id, seconds) else None

    def audible_for(self, turn_id: str, seconds: float) -> bool:
        first = first_audible_at(self.reply(turn_id))
        return first is not None and time.monotonic() - first >= seconds


async def turns_run(stub: gateway_pb2_grpc.GatewayServiceStub, clips: list[Clip]) -> list[dict[str, Any]]:
    talk = Talk(stub)
    rows: list[dict[str, Any]] = []
    await talk.quiet(500)
    for clip in clips:
        done = talk.count(("turn_completed", "error"))
        start = await talk.say(clip.x)
        ok = await talk.until_more(("turn_completed", "error"), done)
        await talk.quiet(600)
        completed = talk.last("turn_completed")
        if not ok or completed is None:
            rows.append({"clip": clip.name, "error": "no reply"})
            continue
        turn_id = completed.turn_id
        pieces = talk.reply(turn_id)
        spoken_end = talk.conv.when_sent(start + clip.end)
        heard = first_audible_at(pieces)
        ended = talk.event_time("speech_ended", turn_id)
        m = completed.metrics
        row: dict[str, Any] = {"clip": clip.name, "reply": completed.heard_text,
                               "first_clause": next((p.text for p in pieces if p.text), "")}
        if spoken_end is not None and heard is not None and ended is not None:
            row.update(mouth_to_ear_ms=(heard - spoken_end) * 1000, end_of_turn_wait_ms=(ended - spoken_end) * 1000,
                       voxtral_ms=m.first_clause_ms, tts_ms=m.tts_ttfb_ms, first_audible_ms=m.first_audible_ms,
                       gateway_ms=m.first_audible_ms - m.first_clause_ms - m.tts_ttfb_ms,
                       client_ms=(heard - ended) * 1000 - m.first_audible_ms)
        row["leading_silence_ms"] = leading_silence_ms(pieces)
        row["junction_gaps_ms"] = junction_gaps_ms(pieces)
        rows.append(row)
    assert talk.conv.listener is not None
    stalls = list(talk.conv.listener.stalls)
    await talk.conv.finish(timeout=120)
    rows.append({"stalls_s": stalls})
    return rows


async def overs_run(stub: gateway_pb2_grpc.GatewayServiceStub, questions: list[Clip], overs: list[Clip],
                    expect_turn: bool) -> list[dict[str, Any]]:
    """Each question gets a reply; once it has been audible 0.4 s, `over` is played over it."""
    from harness.asr import timed_words

    talk = Talk(stub)
    rows: list[dict[str, Any]] = []
    await talk.quiet(500)
    for n, over in enumerate(overs):
        question = questions[n % len(questions)]
        ended_before = talk.count(("speech_ended",))
        await talk.say(question.x)
        if not await talk.until_more(("speech_ended",), ended_before):
            rows.append({"sound": over.name, "error": "the question never ended"})
            continue
        # The sound lands on whichever reply is playing once one has been audible 0.4 s (a pause in
        # a long question may have been answered, and that reply cut by the rest of the question).
        await talk.until(lambda: talk.playing_for(0.4) is not None)
        turn_id = talk.playing_for(0.4)
        if turn_id is None:
            rows.append({"sound": over.name, "error": "no reply was playing"})
            continue
        start = await talk.say(over.x)
        onset = talk.conv.when_sent(start + over.onset)
        await talk.until_turn(turn_id, ("turn_completed", "interrupted"))
        if expect_turn:  # the interruption is a turn: wait for its own reply
            await talk.until_more(("turn_completed",), talk.count(("turn_completed",)))
        await talk.quiet(600)
        stopped = next((e for e in talk.conv.of("interrupted") if e.turn_id == turn_id), None)
        row: dict[str, Any] = {"sound": over.name, "interrupted": stopped is not None,
                               "paused": talk.event_time("reply_paused", turn_id) is not None,
                               "resumed": talk.event_time("reply_resumed", turn_id) is not None,
                               "completed": talk.event_time("turn_completed", turn_id) is not None}
        pieces = talk.reply(turn_id)
        if stopped is not None and onset is not None:
            last = last_sound_at(pieces)
            row["barge_in_stop_ms"] = max(0.0, (last - onset) * 1000) if last is not None else 0.0
            played = played_audio(pieces).astype(np.float32) / 32768
            heard_words = timed_words(resample((played * 32767).astype(np.int16), pieces[0].rate_hz, RATE)
                                      .astype(np.float32) / 32768) if played.size else []
            kept = stopped.heard_text.split()
            row.update(kept_as_said=stopped.heard_text, recognised=" ".join(w.text for w in heard_words),
                       heard_text_error_words=max(0, len(kept) - len(heard_words)))
        rows.append(row)
    await talk.conv.finish(timeout=120)
    return rows


def resumed_share(rows: list[dict[str, Any]]) -> str:
    return f"{sum(not r['interrupted'] and r['completed'] for r in rows)}/{len(rows)}"


def speculations(metrics_port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("voice_speculations_total{"):
            result = line.split('result="')[1].split('"')[0]
            out[result] = float(line.rsplit(" ", 1)[1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--interruptions", type=int, default=4)
    parser.add_argument("--tts-runs", type=int, default=5)
    parser.add_argument("--voxtral-threads", type=int, default=0,
                        help="OMP_NUM_THREADS for the Voxtral process (0: torch's default, every core)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    clips = material(args.turns, args.interruptions)
    model = build_english_voxtral(ENGLISH_VOXTRAL_DIR)
    threads = {"OMP_NUM_THREADS": str(args.voxtral_threads)} if args.voxtral_threads else {}
    stack = Stack(model, voxtral_env={**VOXTRAL_ENV, **threads}, tts_env={"TTS_TIMEOUT_S": "3"},
                  GATEWAY_TTS_TIMEOUT_S="3")
    try:
        async def run(work: Callable[[gateway_pb2_grpc.GatewayServiceStub], Any]) -> Any:
            async with grpc.aio.insecure_channel(stack.gateway) as ch:  # one per event loop
                return await work(gateway_pb2_grpc.GatewayServiceStub(ch))

        # The TTS paths first, on an idle stack, ours before and after Pipecat's.
        ours = tts_first_audible(stack.services["tts"].target, THREE_SENTENCES, args.tts_runs)
        peer = pipecat_first_audible(THREE_SENTENCES, args.tts_runs)
        ours += tts_first_audible(stack.services["tts"].target, THREE_SENTENCES, args.tts_runs)
        before = speculations(stack.metrics_port)
        on = asyncio.run(run(lambda stub: turns_run(stub, clips["questions"])))
        after = speculations(stack.metrics_port)
        print("speculation on:", json.dumps(on[:-1], default=str)[:2000], flush=True)
        barge = asyncio.run(run(lambda stub: overs_run(stub, clips["questions"], clips["interruptions"], True)))
        print("interruptions:", json.dumps(barge), flush=True)
        false = asyncio.run(run(lambda stub: overs_run(stub, clips["questions"], clips["sounds"], False)))
        print("sounds:", json.dumps(false), flush=True)
        stack.reconfigure("gateway", GATEWAY_SPECULATE="false")
        off = asyncio.run(run(lambda stub: turns_run(stub, clips["questions"])))
        print("speculation off:", json.dumps(off[:-1], default=str)[:2000], flush=True)
    finally:
        stack.stop()
    turns = [r for r in on[:-1] if "mouth_to_ear_ms" in r]
    computed = direct_first_audible([r["first_clause"] for r in turns])
    m2e = [r["mouth_to_ear_ms"] for r in turns]
    overhead = [r["mouth_to_ear_ms"] - c for r, c in zip(turns, computed, strict=True)]
    real = [r for r in barge if "interrupted" in r]
    sounds = [r for r in false if "interrupted" in r]
    stalls = on[-1]["stalls_s"] + off[-1]["stalls_s"]
    summary: dict[str, Any] = {
        "benchmark": "conversation",
        "device": f"CPU ({platform.machine()}, {os.cpu_count()} cores), every service on the same machine",
        "models": "small Voxtral trained here to answer in English + real Kokoro-82M int8 ONNX; one session",
        "voxtral_threads": args.voxtral_threads or "torch default",
        "mouth_to_ear_ms": stats(m2e),
        "mouth_to_ear_parts_ms_p50": {part: percentile([r[part] for r in turns], 50) for part in
                                      ("end_of_turn_wait_ms", "voxtral_ms", "tts_ms", "gateway_ms", "client_ms")},
        "first_clause_compute_ms": stats(computed),
        "mouth_to_ear_overhead_ms": stats(overhead),
        "junction_gap_ms": stats([g for r in on[:-1] + off[:-1] for g in r.get("junction_gaps_ms", [])]),
        "leading_silence_ms": stats([r["leading_silence_ms"] for r in on[:-1] + off[:-1]
                                     if r.get("leading_silence_ms") is not None]),
        "barge_in_stop_ms": stats([r["barge_in_stop_ms"] for r in real if "barge_in_stop_ms" in r]),
        "heard_text_error_words": stats([float(r["heard_text_error_words"]) for r in real
                                         if "heard_text_error_words" in r]),
        "real_interruptions_cancelled": f"{sum(r['interrupted'] for r in real)}/{len(real)}",
        "false_interruption_resumed": round(sum(not r["interrupted"] and r["completed"] for r in sounds)
                                            / len(sounds), 2) if sounds else None,
        "false_interruptions": {kind: resumed_share([r for r in sounds if kind in r["sound"].lower()])
                                for kind in ("cough", "yes", "door")},
        "speculation": {**{k: after.get(k, 0) - before.get(k, 0) for k in ("started", "used", "wasted")},
                        "mouth_to_ear_ms_p50_on": percentile(m2e, 50),
                        "mouth_to_ear_ms_p50_off": percentile([r["mouth_to_ear_ms"] for r in off[:-1]
                                                        if "mouth_to_ear_ms" in r], 50)},
        "first_audible_vs_pipecat": round(median(ours) / median(peer), 2) if peer else None,
        "first_audible_ms_tts_path": stats(ours),
        "first_audible_ms_pipecat": stats(peer) if peer else None,
        "stalls": {"count": len(stalls), "total_ms": round(sum(stalls) * 1000, 1)},
        "goals": GOALS,
        "skipped": [r for r in barge + false if "error" in r],
    }
    rows = [{"clip": r["clip"][:40], **{k: round(r[k], 1) for k in ("mouth_to_ear_ms", "end_of_turn_wait_ms",
                                                                      "voxtral_ms", "tts_ms", "gateway_ms",
                                                                      "client_ms", "leading_silence_ms")
                                         if r.get(k) is not None},
             "junction_max_ms": round(max(r["junction_gaps_ms"]), 1) if r.get("junction_gaps_ms") else ""}
            for r in turns]
    write_results(args.out, "conversation", summary, rows,
                  ["clip", "mouth_to_ear_ms", "end_of_turn_wait_ms", "voxtral_ms", "tts_ms", "gateway_ms",
                   "client_ms", "leading_silence_ms", "junction_max_ms"])
    print(json.dumps({k: v for k, v in summary.items() if k != "skipped"}, indent=1))


if __name__ == "__main__":
    main()
