"""Talk to the gateway from the command line: stream a WAV in real time, save the spoken reply.

    python -m clients.converse question.wav --out reply.wav [--target host:port]
    python -m clients.converse --say "What time is it?" --tool clock --tool dice --out reply.wav

Prints every event as it comes and a table of each turn's latency metrics. Replies are played on
the clock as a speaker would (paused and dropped on reply_paused and interrupted), their position
is reported to the gateway, and --out holds the audio as it was played.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import soundfile as sf

from clients.demo_tools import DEMO_TOOLS
from clients.listener import Listener
from services.common.latency import METRICS
from services.common.limits import END_OF_TURN_FALLBACK_MS
from voice.v1 import gateway_pb2, gateway_pb2_grpc, voxtral_pb2

CHUNK_MS = 20


REPORT_EVERY_S = 0.2


async def requests(audio: np.ndarray, rate: int, args: argparse.Namespace,
                   reports: asyncio.Queue[gateway_pb2.PlaybackReport], listener: Listener, ended: asyncio.Event,
                   tools: ClientTools):
    config = gateway_pb2.SessionConfig(input_sample_rate_hz=rate, output_sample_rate_hz=args.output_rate,
                                       voice=args.voice, instructions=args.instructions, session_id=args.session,
                                       tools=tools.declared())
    if args.end_silence_ms:
        config.end_silence_ms = args.end_silence_ms
    yield gateway_pb2.ConverseRequest(config=config)
    if args.say:
        yield gateway_pb2.ConverseRequest(text=args.say)
    step = rate * CHUNK_MS // 1000
    # Trailing silence lets the VAD hear the end of the last utterance.
    padded = np.concatenate([audio, np.zeros(int(rate * args.tail_s), dtype=np.int16)])
    started = reported = time.monotonic()
    for n, i in enumerate(range(0, len(padded), step)):
        if ended.is_set():  # the gateway said the session is over: stop sending (half-close)
            return
        if args.realtime:
            await asyncio.sleep(max(0.0, started + n * CHUNK_MS / 1000 * args.realtime - time.monotonic()))
        yield gateway_pb2.ConverseRequest(audio=padded[i:i + step].tobytes())
        while not reports.empty():
            yield gateway_pb2.ConverseRequest(playback=reports.get_nowait())
        for result in tools.results():
            yield gateway_pb2.ConverseRequest(tool_result=result)
        if listener.playing() and time.monotonic() - reported >= REPORT_EVERY_S:
            reported = time.monotonic()
            if (position := listener.position()) is not None:
                yield gateway_pb2.ConverseRequest(playback=gateway_pb2.PlaybackReport(
                    turn_id=position[0], played_ms=position[1]))
    while args.say and not tools.typed_turn_over.is_set() and not ended.is_set():  # its tools' results come first
        for result in tools.results():
            yield gateway_pb2.ConverseRequest(tool_result=result)
        await asyncio.sleep(CHUNK_MS / 1000)
    yield gateway_pb2.ConverseRequest(control=gateway_pb2.CONTROL_ACTION_END_OF_INPUT)


class ClientTools:
    """The demo tools offered (--tool), run here when the model calls them."""

    def __init__(self, names: list[str]) -> None:
        self.tools = {DEMO_TOOLS[n].name: DEMO_TOOLS[n] for n in names}
        self._results: list[gateway_pb2.ToolResult] = []
        self.typed_turn = ""
        self.typed_turn_over = asyncio.Event()

    def declared(self) -> list[voxtral_pb2.Tool]:
        return [voxtral_pb2.Tool(name=t.name, description=t.description, parameters_json=json.dumps(t.parameters))
                for t in self.tools.values()]

    def call(self, event: gateway_pb2.ToolCalled) -> None:
        for call in event.calls:
            tool = self.tools.get(call.name)
            output = tool.run(json.loads(call.arguments_json or "{}")) if tool else f"no tool named {call.name}"
            print(f"tool_called     {call.name}({call.arguments_json}) -> {output!r}")
            self._results.append(gateway_pb2.ToolResult(call_id=call.id, output=output))

    def on(self, kind: str, event: Any) -> None:
        """Follow the events: run the tools called, and know when the typed turn is over."""
        if kind == "tool_called":
            self.call(event)
        if kind == "text_turn":
            self.typed_turn = event.turn_id
        if kind == "turn_ended" and event.turn_id == self.typed_turn:
            self.typed_turn_over.set()

    def results(self) -> list[gateway_pb2.ToolResult]:
        taken, self._results = self._results, []
        return taken


def describe(kind: str, event: object) -> str | None:
    """One line for an event a person reading along wants (text deltas and the completed-turn summary
    are said by the audio's clauses and turn_ended)."""
    if kind in ("response_text", "turn_completed", "tool_called"):
        return None
    if kind == "turn_ended":
        assert isinstance(event, gateway_pb2.TurnEnded)
        outcome = gateway_pb2.TurnOutcome.Name(event.outcome).removeprefix("TURN_OUTCOME_").lower()
        reason = f" ({event.reason})" if event.reason else ""
        user = repr(event.user_text) if event.user_text_known else "(not transcribed)"
        return f"turn_ended      {outcome}{reason}  user={user} heard={event.heard_text!r}"
    fields = " ".join(str(event).split())
    return f"{kind:15} {fields}"


def metrics_table(turns: list[tuple[str, gateway_pb2.TurnMetrics]]) -> str:
    width = max(len(name) for name in METRICS) + 2
    header = "turn      " + "".join(f"{name:>{width}}" for name in METRICS)
    rows = [f"{turn_id[:8]:10}" + "".join(f"{getattr(m, name):{width}.1f}" for name in METRICS)
            for turn_id, m in turns]
    return "\n".join([header, *rows])


def question(wav: Path | None) -> tuple[np.ndarray, int]:
    """The WAV's first channel and rate; with none (a typed turn alone), no audio at 16 kHz."""
    if wav is None:
        return np.zeros(0, dtype=np.int16), 16000
    audio, rate = sf.read(wav, dtype="int16", always_2d=True)
    return audio[:, 0], rate


async def converse(args: argparse.Namespace) -> int:
    audio, rate = question(args.wav)
    tools = ClientTools(args.tool)
    listener = Listener()
    reports: asyncio.Queue[gateway_pb2.PlaybackReport] = asyncio.Queue()
    reply_rate = args.output_rate or 24000
    turns: list[tuple[str, gateway_pb2.TurnMetrics]] = []
    ended = asyncio.Event()
    farewell: gateway_pb2.Error | None = None  # the last error, said in band before the call ends
    if args.tls_ca:
        channel = grpc.aio.secure_channel(args.target, grpc.ssl_channel_credentials(args.tls_ca.read_bytes()))
    else:
        channel = grpc.aio.insecure_channel(args.target)
    metadata = (("authorization", f"Bearer {args.api_key}"),) if args.api_key else ()
    async with channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        try:
            async for message in stub.Converse(requests(audio, rate, args, reports, listener, ended, tools),
                                               timeout=args.timeout, metadata=metadata):
                kind = message.WhichOneof("payload")
                event = getattr(message, kind)
                if kind == "error" and not event.session_continues:
                    farewell = event
                    ended.set()
                if kind == "response_audio":
                    listener.audio(event.turn_id, event.audio, event.sample_rate_hz, event.offset_ms)
                    reply_rate = event.sample_rate_hz
                    if event.text:
                        print(f"response_audio  at {event.offset_ms / 1000:5.2f} s  {event.text!r}")
                    continue
                if kind in ("reply_paused", "interrupted"):
                    stopped = listener.stop()  # drop what is queued; tell the gateway where playback stopped
                    if stopped is not None and stopped[0] == event.turn_id:
                        reports.put_nowait(gateway_pb2.PlaybackReport(turn_id=stopped[0], played_ms=stopped[1]))
                if kind == "turn_ended" and event.metrics.e2e_ms:
                    turns.append((event.turn_id, event.metrics))
                tools.on(kind, event)
                line = describe(kind, event)
                if line:
                    print(line)
        except grpc.aio.AioRpcError as err:
            if farewell is not None:  # the gateway's own word, whatever the transport made of the end
                print(f"error: {gateway_pb2.ErrorCode.Name(farewell.code).removeprefix('ERROR_CODE_')}: "
                      f"{farewell.message}", file=sys.stderr)
            else:
                print(f"error: {err.code().name}: {err.details()}", file=sys.stderr)
            return 1
    if turns:
        print("\n" + metrics_table(turns))
    played = b"".join(piece.pcm for piece in listener.log)
    if args.out and played:
        sf.write(args.out, np.frombuffer(played, dtype="<i2"), reply_rate)
        print(f"\nwrote {args.out} ({len(played) / 2 / reply_rate:.2f} s of reply audio, as played)")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wav", type=Path, nargs="?", help="mono or stereo WAV (first channel is sent), 8-48 kHz PCM")
    parser.add_argument("--say", default="", help="a typed turn, sent first (the reply is awaited before the end)")
    parser.add_argument("--tool", action="append", default=[], choices=sorted(DEMO_TOOLS),
                        help="offer the model a tool this client runs (repeatable)")
    parser.add_argument("--out", type=Path, help="where to write the reply audio (WAV)")
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--api-key", default=os.environ.get("VOICE_API_KEY", ""),
                        help="the gateway's key (default: $VOICE_API_KEY)")
    parser.add_argument("--tls-ca", type=Path, help="CA certificate (PEM) when the gateway serves TLS")
    parser.add_argument("--voice", default="")
    parser.add_argument("--instructions", default="")
    parser.add_argument("--session", default="", help="a session id to resume")
    parser.add_argument("--output-rate", type=int, default=0)
    parser.add_argument("--end-silence-ms", type=int, default=0)
    parser.add_argument("--realtime", type=float, default=1.0,
                        help="1 plays the file in real time; 0.5 twice as fast; 0 as fast as possible")
    parser.add_argument("--tail-s", type=float, default=END_OF_TURN_FALLBACK_MS / 1000 + 0.4,
                        help="silence sent after the file (enough for the VAD's fallback to end the turn)")
    parser.add_argument("--timeout", type=float, default=300.0)
    raise SystemExit(asyncio.run(converse(parser.parse_args())))


if __name__ == "__main__":
    main()
