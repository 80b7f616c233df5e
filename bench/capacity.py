"""How many conversations one machine holds (`make bench-capacity`), with a conversational load:
each simulated user speaks a real recording in real time over room tone, listens to the whole reply
played at real time (bench client playback, reporting its position), thinks 1-3 s and speaks again;
a share of users barge in over the reply instead of waiting for its end.

Offered conversations go up level by level until p95 mouth-to-ear passes 2x the single-session
figure, a turn fails, or the gateway refuses a session (admission says the stages are full); the
last level that passed is the capacity. Then 2x that is offered: the admitted sessions must fail no
turn, the excess must be refused at start. Per level: offered, admitted, refused, turns done and
failed, mouth-to-ear p50/p95, CPU per service; tts_utilisation is the TTS's CPU over the CPU left
to it (cores x wall, less every other process of the run).

A burst: 2x capacity arriving at once (none measured yet when the others arrive); a hung TTS
(SIGSTOP): how many of 6 new sessions are admitted into a pipeline that cannot answer (goal: none).

Also, on the idle stack: how long a slot stays busy after its request is cancelled (a short request
sent at once: its wait for the slot), and the slot hold of a 300-digit string and 299 Arabic
characters under the seed's 3 s budget.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import time
from pathlib import Path
from typing import Any

import grpc

from bench.conversation import Talk
from bench.conversation_material import Clip, material
from bench.playback import first_audible_at
from bench.report import write_results
from bench.sessions import VOXTRAL_ENV, proc_usage
from harness.stack import Stack
from services.common.latency import percentile
from tools.fetch_models import ENGLISH_VOXTRAL_DIR
from tools.models.english import build_english_voxtral
from voice.v1 import gateway_pb2_grpc, tts_pb2, tts_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
LONG = ("The committee met on Tuesday afternoon to discuss the budget for the coming year, and after a long and "
        "careful debate about roads, schools, parks and libraries, it agreed to spend a little more on each.")
DIGITS = "Your number is " + "".join(str(i % 10) for i in range(7, 307)) + "."
ARABIC = ("مرحبا بكم في المدينة القديمة " * 11)[:299]
OUTCOMES = ("turn_completed", "interrupted")


def outcome(talk: Talk, turn_id: str) -> str | None:
    if any(e.dismissed_turn_id == turn_id for e in talk.conv.of("reply_resumed")):
        return "dismissed"  # speech over a reply judged no turn (the reply went on)
    for kind in OUTCOMES:
        if talk.event_time(kind, turn_id) is not None:
            return kind
    if any(getattr(e, "turn_id", "") == turn_id for e in talk.conv.of("error")):
        return "failed"
    return None


async def user(stub: gateway_pb2_grpc.GatewayServiceStub, n: int, clips: list[Clip], turns: int, barges: bool,
               out: dict[str, Any]) -> None:
    rng = random.Random(n)
    talk = Talk(stub)
    await talk.until(lambda: bool(talk.conv.of("session_started")), 15)
    if not talk.conv.of("session_started"):
        code = talk.conv.error.code().name if talk.conv.error is not None else "no answer"
        out["refused" if code == "RESOURCE_EXHAUSTED" else "start_errors"].append(
            talk.conv.error.details() if talk.conv.error is not None else code)
        talk.conv.cancel()
        return
    out["admitted"] += 1
    await talk.quiet(300)
    for k in range(turns):
        barge_after_s = rng.uniform(0.5, 1.5) if barges and k < turns - 1 else None
        await one_turn(talk, clips[(n * 7 + k) % len(clips)], barge_after_s, out)
        if barge_after_s is None:
            await talk.quiet(int(rng.uniform(1000, 3000)))  # thinking
    await talk.until(lambda: all(outcome(talk, e.turn_id) for e in talk.conv.of("speech_ended")), 30)
    for ended in talk.conv.of("speech_ended"):
        result = outcome(talk, ended.turn_id)
        if result != "dismissed":
            out["turns_done" if result in OUTCOMES else "turns_failed"] += 1
    out["failures"] += [f"{e.code}: {e.message}" for e in talk.conv.of("error")]
    try:
        await talk.conv.finish(timeout=120)
    except Exception as exc:  # noqa: BLE001 (a benchmark counts failures instead of stopping)
        out["failures"].append(f"finish: {type(exc).__name__}: {exc}")
        talk.conv.cancel()


async def one_turn(talk: Talk, clip: Clip, barge_after_s: float | None, out: dict[str, Any]) -> None:
    """Say `clip`; wait for its reply to end, or (barging in) until it has been heard `barge_after_s`."""
    ended_before = len(talk.conv.of("speech_ended"))
    start = await talk.say(clip.x)
    spoken_end = talk.conv.when_sent(start + clip.end)

    def turns() -> list[str]:
        return [e.turn_id for e in talk.conv.of("speech_ended")[ended_before:]]

    def last_turn() -> str | None:
        """The clip's turn: the last of its speech that was not dismissed as no turn."""
        kept = [t for t in turns() if outcome(talk, t) != "dismissed"]
        return kept[-1] if kept else None

    def answered() -> bool:  # every piece of speech the clip made is answered, failed or dismissed
        return bool(turns()) and all(outcome(talk, t) is not None for t in turns())

    def heard_enough() -> bool:
        turn = last_turn()
        return turn is not None and barge_after_s is not None and talk.audible_for(turn, barge_after_s)

    await talk.until(lambda: answered() or heard_enough(), 60)
    turn = last_turn()
    first = first_audible_at(talk.reply(turn)) if turn is not None else None
    if first is not None and spoken_end is not None:
        out["mouth_to_ear_ms"].append((first - spoken_end) * 1000)
    if turn is None or (first is None and outcome(talk, turn) is None):
        out["failures"].append(f"no reply to {clip.name[:30]!r}")


def cpu_of(stack: Stack) -> dict[str, float]:
    usage = {name: proc_usage(service.proc.pid)[0] for name, service in stack.services.items()}
    assert stack.redis.proc is not None
    usage["redis"] = proc_usage(stack.redis.proc.pid)[0]
    usage["bench"] = proc_usage(os.getpid())[0]
    return usage


async def level(stack: Stack, offered: int, clips: list[Clip], turns: int, barge_share: float,
                spacing_s: float = 0.5) -> dict[str, Any]:
    out: dict[str, Any] = {"admitted": 0, "refused": [], "start_errors": [], "turns_done": 0, "turns_failed": 0,
                           "mouth_to_ear_ms": [], "failures": []}
    before, started = cpu_of(stack), time.monotonic()
    async with grpc.aio.insecure_channel(stack.gateway) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)

        async def arrive(n: int) -> None:
            await asyncio.sleep(n * spacing_s)  # users arrive half a second apart (or at once)
            await user(stub, n, clips, turns, n < round(offered * barge_share), out)

        await asyncio.gather(*(arrive(n) for n in range(offered)))
    wall = time.monotonic() - started
    after = cpu_of(stack)
    cpu = {name: round((after[name] - before[name]) / wall, 2) for name in after}  # cores busy, on average
    others = sum(v for name, v in cpu.items() if name != "tts")
    m2e = out["mouth_to_ear_ms"]
    row = {"offered": offered, "admitted": out["admitted"], "refused": len(out["refused"]),
           "turns_done": out["turns_done"], "turns_failed": out["turns_failed"],
           "mouth_to_ear_ms_p50": percentile(m2e, 50), "mouth_to_ear_ms_p95": percentile(m2e, 95), "cpu_cores": cpu,
           "tts_utilisation": round(cpu["tts"] / max(0.01, (os.cpu_count() or 1) - others), 2),
           "wall_s": round(wall, 1), "failures": out["failures"][:10] + out["start_errors"][:5],
           "refusals": out["refused"][:3]}
    print(json.dumps(row), flush=True)
    return row


async def slot_holds(tts_target: str, trials: int, slots: int) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(tts_target) as channel:
        stub = tts_pb2_grpc.TtsServiceStub(channel)
        holds: list[float] = []
        for trial in range(trials):
            calls = [stub.Synthesize(tts_pb2.SynthesizeRequest(text=LONG), timeout=60) for _ in range(slots)]
            readers = [asyncio.ensure_future(call.read()) for call in calls]  # every slot busy
            await asyncio.sleep(0.3 + 0.05 * trial)  # somewhere inside the first pieces
            for call in calls:
                call.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            first = await stub.Synthesize(tts_pb2.SynthesizeRequest(text="Okay."), timeout=60).read()
            holds.append(first.queue_ms)
        inputs = {}
        for name, text in (("digits_300", DIGITS), ("arabic_299", ARABIC)):
            started = time.monotonic()
            try:
                chunks = [c async for c in stub.Synthesize(tts_pb2.SynthesizeRequest(text=text), timeout=600)]
                error = None
            except grpc.aio.AioRpcError as err:
                chunks, error = [], f"{err.code().name}: {err.details()}"
            inputs[name] = {"pieces": len(chunks), "longest_hold_ms": round(max((c.compute_ms for c in chunks),
                                                                                default=0.0), 1),
                            "audio_s": round(sum(len(c.audio) for c in chunks) / 2 / 24000, 1),
                            "wall_ms": round((time.monotonic() - started) * 1000, 1), "error": error}
    holding = {"p50": percentile(holds, 50), "p99": percentile(holds, 99), "max": round(max(holds), 1), "n": len(holds)}
    return {"slot_hold_after_cancel_ms": holding, "inputs": inputs}


async def hung_stage(stack: Stack, stage: str, offered: int) -> dict[str, Any]:
    """Freeze a stage (SIGSTOP) until the gateway has had time to probe it, then offer sessions."""
    pid = stack.services[stage].proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(5)  # a poll a second, a probe answered within 2 s or it counts as silent
        admitted, answers = 0, []
        async with grpc.aio.insecure_channel(stack.gateway) as channel:
            stub = gateway_pb2_grpc.GatewayServiceStub(channel)
            for _ in range(offered):
                talk = Talk(stub)

                def answered(talk: Talk = talk) -> bool:
                    return bool(talk.conv.of("session_started")) or talk.conv.error is not None

                await talk.until(answered, 15)
                if talk.conv.of("session_started"):
                    admitted += 1
                elif talk.conv.error is not None:
                    answers.append(f"{talk.conv.error.code().name}: {talk.conv.error.details()}")
                talk.conv.cancel()
    finally:
        os.kill(pid, signal.SIGCONT)
    return {"hung_stage": stage, "hung_stage_offered": offered, "hung_stage_admitted": admitted,
            "hung_stage_refusals": answers[:2]}


def passes(row: dict[str, Any], single_p95: float) -> bool:
    return (row["turns_failed"] == 0 and row["refused"] == 0 and row["mouth_to_ear_ms_p95"] is not None
            and row["mouth_to_ear_ms_p95"] <= 2 * single_p95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=3, help="turns per user per level")
    parser.add_argument("--max-level", type=int, default=12)
    parser.add_argument("--barge-share", type=float, default=0.25)
    parser.add_argument("--settle-s", type=float, default=15.0, help="quiet time between levels")
    parser.add_argument("--cancel-trials", type=int, default=20)
    parser.add_argument("--tts-slots", type=int, default=1, help="TTS_SLOTS")
    parser.add_argument("--tts-threads", type=int, default=0, help="TTS_ONNX_THREADS (0: onnxruntime's default)")
    parser.add_argument("--name", default="capacity", help="results file name")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    clips = material(24, 0)["questions"]
    model = build_english_voxtral(ENGLISH_VOXTRAL_DIR)
    tts_env = {"TTS_TIMEOUT_S": "3", "TTS_SLOTS": str(args.tts_slots), "TTS_ONNX_THREADS": str(args.tts_threads)}
    stack = Stack(model, voxtral_env=VOXTRAL_ENV, tts_env=tts_env, GATEWAY_TTS_TIMEOUT_S="3")
    levels: list[dict[str, Any]] = []
    try:
        holds = asyncio.run(slot_holds(stack.services["tts"].target, args.cancel_trials, args.tts_slots))
        print(json.dumps(holds), flush=True)
        capacity_row: dict[str, Any] | None = None
        for offered in range(1, args.max_level + 1):
            time.sleep(args.settle_s)
            row = asyncio.run(level(stack, offered, clips, args.turns, args.barge_share if offered > 1 else 0.0))
            levels.append(row)
            if offered == 1 and row["mouth_to_ear_ms_p95"] is None:
                raise SystemExit(f"a single session got no reply: {row['failures']}")
            if not passes(row, levels[0]["mouth_to_ear_ms_p95"]):
                break
            capacity_row = row
        capacity = capacity_row["admitted"] if capacity_row is not None else 0
        time.sleep(args.settle_s)
        overload = asyncio.run(level(stack, max(2, 2 * capacity), clips, args.turns, args.barge_share))
        time.sleep(args.settle_s)
        burst = asyncio.run(level(stack, max(2, 2 * capacity), clips, args.turns, args.barge_share, spacing_s=0.0))
        time.sleep(args.settle_s)
        hung = asyncio.run(hung_stage(stack, "tts", 6))
        print(json.dumps(hung), flush=True)
    finally:
        stack.stop()
    summary: dict[str, Any] = {
        "benchmark": "capacity",
        "device": f"CPU ({platform.machine()}, {os.cpu_count()} cores), every service on the same machine",
        "models": "small Voxtral trained here to answer in English + real Kokoro-82M int8 ONNX (TTS budget 3 s)",
        "tts": f"{args.tts_slots} slot(s), onnxruntime threads {args.tts_threads or 'default'}",
        "load_model": f"real recordings at real time, replies played at real time, think 1-3 s, {args.turns} turns "
                      f"per user, {args.barge_share:.0%} of users barge in, arrivals 0.5 s apart",
        "capacity_sessions": capacity,
        "sessions_per_core": round(capacity / (os.cpu_count() or 1), 2),
        "tts_utilisation_at_capacity": capacity_row["tts_utilisation"] if capacity_row else None,
        "single_session_mouth_to_ear_ms_p95": levels[0]["mouth_to_ear_ms_p95"],
        "levels": levels,
        "overload": overload,
        "burst": burst,
        "turns_failed": overload["turns_failed"] + burst["turns_failed"],
        **hung,
        **holds,
        "goals": {"turns_failed": 0, "hung_stage_admitted": 0},
    }
    columns = ["offered", "admitted", "refused", "turns_done", "turns_failed", "mouth_to_ear_ms_p50",
               "mouth_to_ear_ms_p95", "tts_utilisation", "wall_s"]
    rows = [*levels, {**overload, "offered": f"{overload['offered']} (2x)"},
            {**burst, "offered": f"{burst['offered']} (2x, at once)"}]
    write_results(args.out, args.name, summary, [{k: r[k] for k in columns} for r in rows], columns)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("levels",)}, indent=1, default=str))


if __name__ == "__main__":
    main()
