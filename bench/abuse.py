"""What hostile clients can do to a gateway (`make bench-abuse`), on the whole system as real processes.

Flood: three clients (one API key) send the largest audio messages the gateway takes, as fast as it takes them, for
20 s, while a normal client (another key) holds a conversation in real time: the gateway's resident
memory growth (peak over the start) and whether every normal turn was answered. Realtime flood: one
client sends 10 s `input_audio_buffer.append` events as fast as the socket takes them for 20 s, then
closes: memory growth, and how long its session outlives it. gRPC flood: 32 sessions of one key
flood at once: memory growth, and what stays after they end. Lockout: one client opens 256 sessions
that never speak; can another client still start one? Aliases: one key from 8 addresses takes all
it can; can another key still start one? Trickle: a session that sends one sample now and then is
closed at the idle timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import numpy as np

from bench.conversation_material import material
from bench.report import write_results
from bench.sessions import VOXTRAL_ENV, proc_usage
from harness.conversation import ENDS_TURN_MS, Conversation
from harness.hostile_clients import flooder as ws_flooder
from harness.hostile_clients import masked_frame
from harness.stack import Stack
from services.gateway.config import GatewaySettings
from tools.fetch_models import ENGLISH_VOXTRAL_DIR
from tools.models.english import build_english_voxtral
from voice.v1 import gateway_pb2, gateway_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
HOSTILE, NORMAL = "h" * 40, "n" * 40
CONFIG = gateway_pb2.ConverseRequest(config=gateway_pb2.SessionConfig(input_sample_rate_hz=16000))
# The largest audio message the gateway takes by default (less the message's own framing).
MESSAGE_BYTES = GatewaySettings(auth_disabled=True).max_message_bytes - 1024


def auth(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


async def flooder(target: str, stop: asyncio.Event, sent: list[int]) -> str:
    """One client sending audio as fast as it is taken; returns how its call ended."""
    async with grpc.aio.insecure_channel(target) as channel:
        async def requests():
            yield CONFIG
            chunk = gateway_pb2.ConverseRequest(audio=bytes(MESSAGE_BYTES))
            while not stop.is_set():
                yield chunk
                sent[0] += MESSAGE_BYTES

        call = gateway_pb2_grpc.GatewayServiceStub(channel).Converse(requests(), metadata=auth(HOSTILE), timeout=300)
        try:
            async for _ in call:
                if stop.is_set():
                    break
        except grpc.aio.AioRpcError as err:
            return err.code().name
        call.cancel()
        return "OK"


async def normal_client(target: str, clip: np.ndarray, stop: asyncio.Event) -> dict[str, Any]:
    """Speaks, waits for the reply to end, speaks again, until the flood stops."""
    async with grpc.aio.insecure_channel(target) as channel:
        conv = Conversation(gateway_pb2_grpc.GatewayServiceStub(channel), CONFIG.config, timeout=300, listen=True,
                            metadata=auth(NORMAL))
        turns = 0
        while not stop.is_set() and not conv.closed:
            await conv.send(clip, pace=1.0)
            await conv.silence(ENDS_TURN_MS, pace=1.0)
            deadline = time.monotonic() + 30
            while len(conv.of("turn_completed")) + len(conv.of("interrupted")) <= turns and not conv.closed \
                    and time.monotonic() < deadline:
                await conv.silence(100, pace=1.0)
            turns += 1
        await conv.finish(30)
        done = conv.of("turn_completed")
        errors = [e.message for e in conv.of("error")]
        return {"normal_turns": turns, "normal_turns_completed": len(done), "normal_errors": errors,
                "normal_e2e_ms": [round(t.metrics.e2e_ms) for t in done],
                "normal_session_ok": bool(done) and len(done) == turns and not errors and conv.error is None}


async def flood(stack: Stack, clip: np.ndarray, seconds: float) -> dict[str, Any]:
    pid = stack.services["gateway"].proc.pid
    _, baseline = proc_usage(pid)
    stop = asyncio.Event()
    sent = [0]
    peak = baseline
    normal = asyncio.ensure_future(normal_client(stack.gateway, clip, stop))
    flooders = [asyncio.ensure_future(flooder(stack.gateway, stop, sent)) for _ in range(3)]
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        await asyncio.sleep(0.25)
        peak = max(peak, proc_usage(pid)[1])
    stop.set()
    ends = await asyncio.gather(*flooders)
    result = await normal
    await asyncio.sleep(3)
    _, after = proc_usage(pid)
    return {
        "flood_seconds": seconds,
        "flood_clients": 3,
        "flood_message_bytes": MESSAGE_BYTES,
        "flood_audio_taken_x_realtime": round(sent[0] / 2 / 16000 / seconds, 1),
        "flood_call_ends": sorted(ends),
        "rss_start_mb": round(baseline),
        "rss_peak_mb": round(peak),
        "rss_after_mb": round(after),
        "flood_rss_growth_mb": round(peak - baseline, 1),
        **result,
    }


async def idle_lockout(stack: Stack, offered: int) -> dict[str, Any]:
    never = asyncio.Event()

    async def config_only():
        yield CONFIG
        await never.wait()

    async with grpc.aio.insecure_channel(stack.gateway) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        calls = [stub.Converse(config_only(), metadata=auth(HOSTILE), timeout=120) for _ in range(offered)]
        firsts = await asyncio.gather(*(call.read() for call in calls))
        admitted = sum(first.HasField("session_started") for first in firsts)
        async with grpc.aio.insecure_channel(stack.gateway) as other_channel:
            other = gateway_pb2_grpc.GatewayServiceStub(other_channel).Converse(
                config_only(), metadata=auth(NORMAL), timeout=30)
            other_first = await other.read()
            other.cancel()
        for call in calls:
            call.cancel()
    return {"idle_sessions_offered": offered, "idle_admitted": admitted, "idle_refused": offered - admitted,
            "idle_lockout": not other_first.HasField("session_started")}


def realtime_flooder(port: int, seconds: float) -> tuple[socket.socket, int]:
    """A Realtime client sending 10 s appends as fast as the socket takes them: (its socket, audio s sent)."""
    event = {"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(480_000)).decode()}
    sock, frames = ws_flooder(port, masked_frame(json.dumps(event)), seconds, HOSTILE)
    return sock, frames * 10


async def open_sessions(port: int) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as reply:
        return int((await reply.json())["sessions"])


async def realtime_flood(stack: Stack, seconds: float) -> dict[str, Any]:
    pid = stack.services["gateway"].proc.pid
    _, baseline = proc_usage(pid)
    flooding = asyncio.ensure_future(asyncio.to_thread(realtime_flooder, stack.web_port, seconds))
    peak = baseline
    while not flooding.done():
        await asyncio.sleep(0.25)
        peak = max(peak, proc_usage(pid)[1])
    sock, audio_s = flooding.result()
    # The socket stays open (and unread) as long as the flood ran on, then the client closes.
    sock.close()
    closed = time.monotonic()
    while await open_sessions(stack.web_port) and time.monotonic() - closed < 120:
        await asyncio.sleep(0.05)
    gone_s = time.monotonic() - closed
    peak = max(peak, proc_usage(pid)[1])
    return {"realtime_flood_seconds": seconds, "realtime_flood_audio_sent_s": audio_s,
            "realtime_flood_rss_growth_mb": round(peak - baseline, 1),
            "realtime_flood_session_gone_s": round(gone_s, 2)}


async def grpc_flood(stack: Stack, sessions: int, seconds: float) -> dict[str, Any]:
    pid = stack.services["gateway"].proc.pid
    _, baseline = proc_usage(pid)
    stop = asyncio.Event()
    sent = [0]
    floods = [asyncio.ensure_future(flooder(stack.gateway, stop, sent)) for _ in range(sessions)]
    peak, started = baseline, time.monotonic()
    while time.monotonic() - started < seconds:
        await asyncio.sleep(0.25)
        peak = max(peak, proc_usage(pid)[1])
    stop.set()
    ends = await asyncio.gather(*floods)
    while await open_sessions(stack.web_port):
        await asyncio.sleep(0.1)
    await asyncio.sleep(3)
    _, after = proc_usage(pid)
    return {f"grpc_flood{sessions}_call_ends": sorted(set(ends)),
            f"grpc_flood{sessions}_rss_growth_mb": round(peak - baseline, 1),
            f"grpc_flood{sessions}_rss_after_growth_mb": round(after - baseline, 1)}


async def alias_hold(stack: Stack, addresses: int, limit: int) -> dict[str, Any]:
    """One key opens sessions from `addresses` loopback addresses until refused; then another key tries."""
    url = f"http://127.0.0.1:{stack.web_port}/v1/realtime"
    held: list[tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]] = []
    refused = 0
    try:
        for n in range(limit):
            host = f"127.0.0.{2 + n % addresses}"
            http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(host, 0)))
            try:
                ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {HOSTILE}"})
                held.append((http, ws))
            except aiohttp.WSServerHandshakeError:
                refused += 1
                await http.close()
        async with aiohttp.ClientSession() as http:
            try:
                async with http.ws_connect(url, headers={"Authorization": f"Bearer {NORMAL}"}) as ws:
                    other = json.loads((await ws.receive(timeout=10)).data)["type"] == "session.created"
            except aiohttp.WSServerHandshakeError:
                other = False
    finally:
        for http, ws in held:
            await ws.close()
            await http.close()
    return {"alias_addresses": addresses, "alias_held": len(held), "alias_refused": refused,
            "alias_lockout": not other}


async def idle_trickle(stack: Stack, timeout_s: float) -> dict[str, Any]:
    """A session sending one sample every timeout/3: closed at the idle timeout (an error event)?"""
    async with grpc.aio.insecure_channel(stack.gateway) as channel:
        async def requests():
            yield CONFIG
            while True:
                await asyncio.sleep(timeout_s / 3)
                yield gateway_pb2.ConverseRequest(audio=b"\x00\x00")

        call = gateway_pb2_grpc.GatewayServiceStub(channel).Converse(requests(), metadata=auth(HOSTILE),
                                                                     timeout=timeout_s * 4)
        started = time.monotonic()
        closed = False
        try:
            async for message in call:
                if message.HasField("error") and not message.error.session_continues:
                    closed = True
                    break
        except grpc.aio.AioRpcError:
            pass
        call.cancel()
    return {"idle_timeout_s": timeout_s, "idle_trickle_closed": closed,
            "idle_trickle_closed_after_s": round(time.monotonic() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle", type=int, default=256)
    parser.add_argument("--idle-timeout", type=float, default=6.0, help="the gateway's idle timeout here (s)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    clip = material(4, 0)["questions"][0]
    pcm = np.clip(clip.x * 32767, -32768, 32767).astype(np.int16)
    model = build_english_voxtral(ENGLISH_VOXTRAL_DIR)
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys"
        keys.write_text(f"{HOSTILE}\n{NORMAL}\n")
        stack = Stack(model, voxtral_env=VOXTRAL_ENV, GATEWAY_AUTH_DISABLED="false",
                      GATEWAY_API_KEY_FILE=str(keys), GATEWAY_ADMISSION__ENABLED="false",
                      GATEWAY_IDLE_TIMEOUT_S=str(args.idle_timeout))
        try:
            flooded = asyncio.run(flood(stack, pcm, args.seconds))
            realtime = asyncio.run(realtime_flood(stack, args.seconds))
            grpc32 = asyncio.run(grpc_flood(stack, 32, args.seconds))
            locked = asyncio.run(idle_lockout(stack, args.idle))
            aliases = asyncio.run(alias_hold(stack, 8, 256))
            trickle = asyncio.run(idle_trickle(stack, args.idle_timeout))
        finally:
            stack.stop()
    summary: dict[str, Any] = {
        "benchmark": "abuse",
        "device": f"CPU ({platform.machine()}, {os.cpu_count()} cores), every service on the same machine",
        "gateway_limits": "default settings (GATEWAY_IDLE_TIMEOUT_S excepted)",
        **flooded, **realtime, **grpc32, **locked, **aliases, **trickle,
        "goals": {"flood_rss_growth_mb": "<= 100", "normal_session_ok": True, "idle_lockout": False,
                  "realtime_flood_rss_growth_mb": "<= 100", "realtime_flood_session_gone_s": "<= 2",
                  "grpc_flood32_rss_growth_mb": "<= 100", "grpc_flood32_rss_after_growth_mb": "<= 20",
                  "alias_lockout": False, "idle_trickle_closed": True},
    }
    columns = ["flood_rss_growth_mb", "normal_session_ok", "realtime_flood_rss_growth_mb",
               "realtime_flood_session_gone_s", "grpc_flood32_rss_growth_mb", "grpc_flood32_rss_after_growth_mb",
               "idle_lockout", "alias_lockout", "idle_trickle_closed"]
    write_results(args.out, "abuse", summary, [{k: summary[k] for k in columns}], columns)


if __name__ == "__main__":
    main()
