"""GatewayService gRPC surface: requests to session calls, session events to messages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from services.common.audio import check_sample_rate
from services.common.errors import InvalidArgument, ResourceExhausted, ServiceError, Unavailable
from services.common.latency import summarize
from services.common.server import ServiceSpec
from services.common.store import SessionStore
from services.gateway import events as ev
from services.gateway.auth import ApiKeyInterceptor
from services.gateway.config import GatewaySettings
from services.gateway.metrics import SESSIONS
from services.gateway.session import ConversationSession, SessionConfig
from services.gateway.stages import StageError, Stages
from voice.v1 import gateway_pb2, gateway_pb2_grpc

log = logging.getLogger(__name__)
DRAIN_ON_ERROR_S = 0.25
SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name


def session_config(config: gateway_pb2.SessionConfig, settings: GatewaySettings, voices: set[str]) -> SessionConfig:
    if config.input_sample_rate_hz == 0:
        raise InvalidArgument("config.input_sample_rate_hz is required: an integer from 8000 to 48000 Hz")
    check_sample_rate(config.input_sample_rate_hz, what="input_sample_rate_hz")
    output = config.output_sample_rate_hz or settings.default_output_rate_hz
    check_sample_rate(output, what="output_sample_rate_hz")
    if config.voice and voices and config.voice not in voices:
        raise InvalidArgument(f"voice {config.voice!r} is unknown: the TTS offers {', '.join(sorted(voices))}")
    speed = config.speed if config.HasField("speed") else None
    if speed is not None and not 0.5 <= speed <= 2.0:
        raise InvalidArgument(f"speed={speed:g} is out of range: use 0.5 to 2.0")
    end_silence = config.end_silence_ms if config.HasField("end_silence_ms") else settings.default_end_silence_ms
    if not 100 <= end_silence <= 10000:
        raise InvalidArgument(f"end_silence_ms={end_silence} is out of range: use 100 to 10000")
    if len(config.instructions) > settings.max_instructions_chars:
        raise InvalidArgument(f"instructions have {len(config.instructions)} characters; "
                              f"the limit is {settings.max_instructions_chars}")
    return SessionConfig(config.input_sample_rate_hz, output, config.voice, speed, end_silence,
                         config.instructions, config.session_id)


def to_message(event: ev.Event) -> gateway_pb2.ConverseResponse:
    match event:
        case ev.SessionStarted():
            return gateway_pb2.ConverseResponse(session_started=gateway_pb2.SessionStarted(
                session_id=event.session_id, resumed=event.resumed, context_exchanges=event.context_exchanges))
        case ev.SpeechStarted():
            return gateway_pb2.ConverseResponse(speech_started=gateway_pb2.SpeechStarted(
                turn_id=event.turn_id, start_sample=event.start_sample))
        case ev.SpeechEnded():
            return gateway_pb2.ConverseResponse(speech_ended=gateway_pb2.SpeechEnded(
                turn_id=event.turn_id, start_sample=event.start_sample, end_sample=event.end_sample))
        case ev.ResponseText():
            return gateway_pb2.ConverseResponse(response_text=gateway_pb2.ResponseText(
                turn_id=event.turn_id, delta=event.delta))
        case ev.ResponseAudio():
            return gateway_pb2.ConverseResponse(response_audio=gateway_pb2.ResponseAudio(
                turn_id=event.turn_id, audio=event.pcm, sample_rate_hz=event.sample_rate_hz, text=event.text))
        case ev.TurnCompleted():
            return gateway_pb2.ConverseResponse(turn_completed=gateway_pb2.TurnCompleted(
                turn_id=event.turn_id, user_text=event.user_text, assistant_text=event.assistant_text,
                metrics=gateway_pb2.TurnMetrics(**event.metrics)))
        case ev.Interrupted():
            return gateway_pb2.ConverseResponse(interrupted=gateway_pb2.Interrupted(
                turn_id=event.turn_id, spoken_text=event.spoken_text))
        case ev.ErrorEvent():
            return gateway_pb2.ConverseResponse(error=gateway_pb2.Error(
                code=gateway_pb2.ErrorCode.Value(f"ERROR_CODE_{event.code}"), message=event.message,
                session_continues=event.session_continues, turn_id=event.turn_id))
    raise TypeError(f"no message for {event!r}")


class GatewayServicer(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.stages = Stages(settings)
        self.store = SessionStore(settings.redis)
        self.sessions = 0
        self.draining = False
        self.closing: set[asyncio.Event] = set()  # one per open session: set to end it

    async def Converse(self, request_iterator: AsyncIterator[gateway_pb2.ConverseRequest],
                       context: grpc.aio.ServicerContext) -> None:
        try:
            await self.converse(request_iterator, context.write)
        except ServiceError:
            # Read what the client already sent before closing, so it gets our status, not a failed write.
            async def drain() -> None:
                async for _ in request_iterator:
                    pass

            with contextlib.suppress(TimeoutError, grpc.aio.AioRpcError):
                await asyncio.wait_for(drain(), DRAIN_ON_ERROR_S)
            raise

    async def converse(self, requests: AsyncIterator[gateway_pb2.ConverseRequest],
                       write: Callable[[gateway_pb2.ConverseResponse], Awaitable[None]]) -> None:
        """One session, whatever carries it (gRPC here, the WebSocket bridge in web.py)."""
        if self.draining:
            raise Unavailable("this gateway is shutting down: connect again (any replica) and resume the session")
        if self.sessions >= self.settings.max_sessions:
            raise ResourceExhausted(f"the gateway holds its maximum of {self.settings.max_sessions} sessions")
        self.sessions += 1
        SESSIONS.inc()
        lock = asyncio.Lock()
        closing = asyncio.Event()
        self.closing.add(closing)

        async def emit(event: ev.Event) -> None:
            async with lock:  # one writer at a time: turn, VAD reader and request loop all emit
                await write(to_message(event))

        session: ConversationSession | None = None
        try:
            first = await anext(aiter(requests), None)
            if first is None:
                return
            if first.WhichOneof("payload") != "config":
                raise InvalidArgument("the first message must be the session config (input_sample_rate_hz etc.)")
            self.stages.connect()
            voices = await self._voices()
            session = ConversationSession(self.settings, self.stages, self.store,
                                          session_config(first.config, self.settings, voices), emit)
            await emit(await session.start())
            await session.listen()
            serving = asyncio.ensure_future(self._serve_requests(session, requests, emit))
            shutdown = asyncio.ensure_future(closing.wait())
            await asyncio.wait({serving, shutdown}, return_when=asyncio.FIRST_COMPLETED)
            shutdown.cancel()
            if not serving.done():  # shutting down: the turn in flight finishes, then the session ends
                serving.cancel()
                await asyncio.gather(serving, return_exceptions=True)
                await session.finish_turn()
                await emit(ev.ErrorEvent("UNAVAILABLE", "this gateway is shutting down: connect again and resume "
                                         f"session {session.session_id}", session_continues=False))
                return
            serving.result()
            await session.end_of_input()
        finally:
            self.closing.discard(closing)
            if session is not None:
                await session.close()
            self.sessions -= 1
            SESSIONS.dec()

    async def _serve_requests(self, session: ConversationSession,
                              requests: AsyncIterator[gateway_pb2.ConverseRequest],
                              emit: Callable[[ev.Event], Awaitable[None]]) -> None:
        async for request in requests:
            kind = request.WhichOneof("payload")
            if kind == "audio":
                await session.audio(request.audio)
            elif kind == "control":
                action = request.control
                if action == gateway_pb2.CONTROL_ACTION_INTERRUPT:
                    await session.interrupt()
                elif action == gateway_pb2.CONTROL_ACTION_RESET_CONTEXT:
                    await session.reset_context()
                elif action == gateway_pb2.CONTROL_ACTION_END_OF_INPUT:
                    return
                else:
                    await emit(ev.ErrorEvent("INVALID_ARGUMENT", f"unknown control action {action}: use "
                                             "INTERRUPT, RESET_CONTEXT or END_OF_INPUT"))
            elif kind == "config":
                await emit(ev.ErrorEvent("INVALID_ARGUMENT", "the session is configured already: "
                                         "send the config once, first"))
            else:
                await emit(ev.ErrorEvent("INVALID_ARGUMENT", "empty request: set audio or control"))

    async def drain(self, grace_s: float) -> None:
        """SIGTERM: refuse new sessions; let each session finish its turn in flight, then end it."""
        self.draining = True
        for closing in list(self.closing):
            closing.set()
        deadline = asyncio.get_running_loop().time() + grace_s
        while self.sessions and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)

    async def _voices(self) -> set[str]:
        """The TTS's voices, to check a session's voice early; empty (no check) while the TTS is down."""
        try:
            return await self.stages.voices()
        except StageError as err:
            log.warning("cannot list voices; the session's voice is checked at its first reply",
                        extra={"error": str(err)})
            return set()

    async def GetSessionMetrics(self, request: gateway_pb2.GetSessionMetricsRequest,
                                context: grpc.aio.ServicerContext) -> gateway_pb2.GetSessionMetricsResponse:
        if not request.session_id:
            raise InvalidArgument("session_id is required")
        turns = await self.store.turns(request.session_id)
        summary = summarize(turns)
        return gateway_pb2.GetSessionMetricsResponse(
            session_id=request.session_id, turns=len(turns),
            stages=[gateway_pb2.StageLatency(metric=name, p50_ms=p50, p95_ms=p95, samples=n)
                    for name, (p50, p95, n) in summary.items()])

    async def close(self) -> None:
        await self.stages.close()
        await self.store.close()


def gateway_service(settings: GatewaySettings) -> ServiceSpec:
    from services.gateway.web import WebBridge

    servicer = GatewayServicer(settings)
    key = settings.key()
    bridge = WebBridge(settings, servicer, key) if settings.web_enabled else None

    async def warm_up() -> None:
        servicer.stages.connect()
        if not await servicer.store.ping():
            log.warning("redis unreachable at start; sessions go on without context until it is back")
        if bridge is not None:
            await bridge.start()

    async def close() -> None:
        if bridge is not None:
            await bridge.stop()
        await servicer.close()

    if key is None:
        log.warning("API keys are off (GATEWAY_AUTH_DISABLED): anyone who reaches this port can talk")
    return ServiceSpec(
        SERVICE_NAME, lambda server: gateway_pb2_grpc.add_GatewayServiceServicer_to_server(servicer, server),
        warm_up, close, servicer, interceptors=(ApiKeyInterceptor(key, SERVICE_NAME),) if key else (),
        drain=servicer.drain,
    )
