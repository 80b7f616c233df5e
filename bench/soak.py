"""Soak (`make soak`; CI runs `make soak-short`): sessions x turns of real recordings played in
real time through the whole stack. Fails (exit 1) on any error, a session or task left behind,
or a service whose resident memory grew by 50 MB or more after warm-up. Stability, not speed:
the TTS deadline is raised so a 2-core machine's queueing is not counted as a fault."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc

from bench.report import write_results
from bench.sessions import VOXTRAL_ENV, one_session, proc_usage, utterances
from harness.stack import Stack
from tools.fetch_models import ENGLISH_VOXTRAL_DIR
from tools.models.english import build_english_voxtral
from voice.v1 import gateway_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
GROWTH_LIMIT_MB = 50.0


def gauge(stack: Stack, name: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=5).read().decode()
    return next(float(line.split()[-1]) for line in body.splitlines() if line.startswith(f"{name} "))


async def round_of_turns(stack: Stack, sessions: int, turns: int) -> dict[str, list]:
    out: dict[str, list] = {"turns": [], "mouth_to_ear_ms": [], "errors": [], "stalls_ms": []}
    speech = utterances()
    async with grpc.aio.insecure_channel(stack.gateway) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        await asyncio.gather(*(one_session(stub, speech, turns, i, out) for i in range(sessions)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--turns", type=int, default=25)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    model = build_english_voxtral(ENGLISH_VOXTRAL_DIR)  # a no-op once `make models` has trained it
    stack = Stack(model, voxtral_env=VOXTRAL_ENV, tts_env={"TTS_TIMEOUT_S": "60", "TTS_MAX_QUEUE": "64"},
                  GATEWAY_TTS_TIMEOUT_S="60", GATEWAY_VOXTRAL_TIMEOUT_S="60",
                  # A soak holds more sessions than this machine would admit, on purpose: leaks show under load.
                  GATEWAY_ADMISSION__ENABLED="false")
    try:
        started = time.monotonic()
        warm = asyncio.run(round_of_turns(stack, args.sessions, 1))  # warm-up: every path once
        pids = {name: svc.proc.pid for name, svc in stack.services.items()}
        rss_warm = {name: proc_usage(pid)[1] for name, pid in pids.items()}
        tasks_warm = gauge(stack, "voice_event_loop_tasks")
        soak = asyncio.run(round_of_turns(stack, args.sessions, args.turns))
        time.sleep(2)  # background bookkeeping (transcripts, Redis writes) settles
        rss_end = {name: proc_usage(pid)[1] for name, pid in pids.items()}
        sessions_left = gauge(stack, "voice_sessions_active")
        tasks_end = gauge(stack, "voice_event_loop_tasks")
    finally:
        stack.stop()
    rows: list[dict[str, Any]] = [
        {"service": name, "rss_after_warm_up_mb": round(rss_warm[name], 1), "rss_end_mb": round(rss_end[name], 1),
         "growth_mb": round(rss_end[name] - rss_warm[name], 1)} for name in pids]
    errors = warm["errors"] + soak["errors"]
    summary = {
        "benchmark": "soak", "sessions": args.sessions, "turns_per_session": args.turns,
        "turns_completed": len(soak["turns"]), "errors": len(errors), "first_errors": sorted(set(errors))[:5],
        "sessions_left_open": sessions_left, "gateway_tasks_after_warm_up": tasks_warm,
        "gateway_tasks_at_end": tasks_end, "minutes": round((time.monotonic() - started) / 60, 1),
    }
    print(json.dumps(summary), flush=True)
    write_results(args.out, f"soak_{args.sessions}x{args.turns}", summary, rows,
                  ["service", "rss_after_warm_up_mb", "rss_end_mb", "growth_mb"])
    problems = []
    if errors:
        problems.append(f"{len(errors)} errors: {sorted(set(errors))[:3]}")
    if len(soak["turns"]) != args.sessions * args.turns:
        problems.append(f"{len(soak['turns'])} of {args.sessions * args.turns} turns completed")
    if sessions_left:
        problems.append(f"{sessions_left} sessions left open")
    if tasks_end > tasks_warm:
        problems.append(f"gateway tasks grew from {tasks_warm} to {tasks_end}")
    problems += [f"{r['service']} grew {r['growth_mb']} MB" for r in rows if r["growth_mb"] >= GROWTH_LIMIT_MB]
    if problems:
        print("soak failed: " + "; ".join(problems), file=sys.stderr)
        raise SystemExit(1)
    print("soak passed")


if __name__ == "__main__":
    main()
