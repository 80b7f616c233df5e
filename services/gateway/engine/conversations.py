"""Every conversation of one gateway: admission, the loop over a session's typed inputs, drain.
The adapters call `converse` with the inputs they read and a function that sends one event."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from services.common import heap
from services.common.errors import InvalidArgument, ResourceExhausted, Status, Unavailable
from services.gateway.config import GatewaySettings
from services.gateway.engine.activity import Activity, next_input
from services.gateway.engine.admission import Admission
from services.gateway.engine.budget import ByteBudget
from services.gateway.engine.caller import Caller
from services.gateway.engine.client_limits import ClientSessions
from services.gateway.engine.emitter import Emitter
from services.gateway.engine.ends import Idle, Stalled
from services.gateway.engine.events import ErrorEvent, Event
from services.gateway.engine.inputs import (
    Audio,
    ClearAudio,
    Commit,
    ControlInput,
    Input,
    PlaybackReport,
    SessionRequest,
    ToolResult,
    Unreadable,
    Update,
    UserText,
    check_playback,
    check_text,
    check_tool_result,
    configure,
    updated,
)
from services.gateway.engine.pace import SynthesisPace
from services.gateway.engine.session import ConversationSession
from services.gateway.engine.stages import StageError, Stages
from services.gateway.engine.store import Store
from services.gateway.engine.vocabulary import Control
from services.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)


# A session that spoke this recently counts as loading the stages (admission control).
ACTIVE_S = 60.0


class ConversationEngine:
    def __init__(self, settings: GatewaySettings, stages: Stages, store: Store,
                 metrics: GatewayMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or GatewayMetrics()  # the process's, from the composition root; a test's own
        self.stages = stages
        self.store = store
        self.sessions = 0
        self.draining = False
        self._closing: set[asyncio.Event] = set()  # one per open session: set to end it
        self.pace = SynthesisPace()  # how fast the TTS speaks, learnt from every session's clauses
        self.admission = Admission(settings.admission, stages, self.metrics)
        self.audio_budget = ByteBudget(settings.process_audio_bytes, "process")  # every session's VAD audio
        self._live: dict[int, ConversationSession] = {}  # by admission token
        self.clients = ClientSessions(settings)
        self._watch: asyncio.Future[None] | None = None
        self._ending: set[asyncio.Future[None]] = set()  # sessions' cleanups under way

    async def converse(self, inputs: AsyncIterator[Input], send: Callable[[Event], Awaitable[None]],
                       caller: Caller) -> None:
        """One session, whatever carries it. Raises a ServiceError when the session cannot start, or
        Stalled when its client stops reading."""
        admitted = self.admit(caller)
        self.sessions += 1
        self.clients.opened(caller)
        self.metrics.sessions.inc()
        closing = asyncio.Event()
        self._closing.add(closing)
        emit = Emitter(send, self.settings.write_timeout_s, self.metrics)
        stalled, write_timeout_s = emit.stalled, emit.write_timeout_s

        session: ConversationSession | None = None
        waits: list[asyncio.Future[Any]] = []
        try:
            activity = Activity(self.settings.idle_timeout_s, self.metrics)
            first = await next_input(inputs, activity)
            if first is None:
                return
            if not isinstance(first, SessionRequest):
                raise InvalidArgument("the first message must be the session config (input_sample_rate_hz etc.)")
            self.stages.connect()
            config = configure(first, self.settings, await self.voices())
            activity.rate_hz = config.input_rate_hz
            session = ConversationSession(self.settings, self.stages, self.store, config, emit, self.metrics,
                                          self.pace, self.audio_budget, caller.identity)
            self._live[admitted] = session
            await emit(await session.start())
            await session.listen()
            serving = asyncio.ensure_future(self._serve(session, inputs, emit, activity))
            shutdown = asyncio.ensure_future(closing.wait())
            stall = asyncio.ensure_future(stalled.wait())
            waits += [serving, shutdown, stall]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            shutdown.cancel()
            if stalled.is_set():
                log.warning("client stopped reading: session closed", extra={
                    "session_id": session.session_id, "client": caller.client, "write_timeout_s": write_timeout_s})
                raise Stalled(f"nothing sent to the client could be delivered for {write_timeout_s:g} s (it reads "
                              "nothing): the session is closed")
            if not serving.done():  # shutting down: the turn in flight finishes, then the session ends
                serving.cancel()
                await asyncio.gather(serving, return_exceptions=True)
                await session.finish_turn()
                await emit(ErrorEvent(Status.UNAVAILABLE, "this gateway is shutting down: connect again and "
                                      f"resume session {session.session_id}", session_continues=False))
                return
            try:
                serving.result()
            except Idle as idle:
                await emit(ErrorEvent(Status.DEADLINE_EXCEEDED, str(idle), session_continues=False))
                return
            await session.end_of_input()
        finally:
            # Cleanup runs to its end even when the caller is cancelled again meanwhile (a client gone
            # just as its session stalls): nothing of the session may stay counted or running.
            ending = asyncio.ensure_future(self._end(waits, closing, session, caller, admitted))
            self._ending.add(ending)
            ending.add_done_callback(self._ending.discard)
            await asyncio.shield(ending)

    async def _end(self, waits: list[asyncio.Future[Any]], closing: asyncio.Event,
                   session: ConversationSession | None, caller: Caller, admitted: int) -> None:
        for wait in waits:  # a session cancelled by its client leaves neither behind
            wait.cancel()
        try:
            await asyncio.gather(*waits, return_exceptions=True)
            if session is not None:
                await session.close()
        finally:
            self._closing.discard(closing)
            self.sessions -= 1
            self.clients.closed(caller)
            self._live.pop(admitted, None)
            self.admission.left(admitted)
            self.metrics.sessions.dec()
            heap.trim()  # what the session held goes back to the system

    def check_admission(self, caller: Caller) -> None:
        """Raise ResourceExhausted (with a retry hint) when a new session does not fit now."""
        if self.draining:
            raise Unavailable("this gateway is shutting down: connect again (any replica) and resume the session")
        self.clients.check(caller)
        if self.sessions >= self.settings.max_sessions:
            raise ResourceExhausted(f"the gateway holds its maximum of {self.settings.max_sessions} sessions")
        self.admission.check(self.active())

    def admit(self, caller: Caller) -> int:
        self.check_admission(caller)
        return self.admission.admitted()

    def active(self) -> int:
        """Sessions that spoke within the last minute: the ones that load the stages. An open session
        that never speaks (a page left open, an idle or hostile client) loads nothing."""
        now = time.monotonic()
        active = 0
        for token, session in self._live.items():
            if session.spoke_at is not None and now - session.spoke_at <= ACTIVE_S:
                self.admission.spoke(token)
                active += 1
        return active

    def start(self) -> None:
        """Start reading the stages' load (admission control)."""
        if self._watch is None and self.settings.admission.enabled:
            self._watch = asyncio.ensure_future(self.admission.run(self.active))

    async def _serve(self, session: ConversationSession, inputs: AsyncIterator[Input],
                     emit: Callable[[Event], Awaitable[None]], activity: Activity) -> None:
        """Until the client's end of input (or its stream ends); Idle when it is inactive for long."""
        while (item := await next_input(inputs, activity)) is not None:
            match item:
                case Audio():
                    await session.audio(item.pcm)  # waits while the audio budget is full
                case ControlInput(action=Control.INTERRUPT):
                    await session.interrupt()
                case ControlInput(action=Control.RESET_CONTEXT):
                    await session.reset_context()
                case ControlInput(action=Control.END_OF_INPUT):
                    return
                case SessionRequest():
                    await emit(ErrorEvent(Status.INVALID_ARGUMENT, "the session is configured already: "
                                          "send the config once, first"))
                case Commit():
                    await session.commit()
                case UserText():
                    problem = check_text(item)
                    if problem:
                        await emit(ErrorEvent(Status.INVALID_ARGUMENT, problem))
                    else:
                        await session.say(item.text)
                case ClearAudio():
                    session.clear_audio()
                case Update():
                    try:
                        session.update(updated(session.config, item, self.settings, await self.voices()))
                    except InvalidArgument as exc:
                        await emit(ErrorEvent(Status.INVALID_ARGUMENT, str(exc)))
                case ToolResult():
                    problem = check_tool_result(item) or session.tool_result(item)
                    if problem:
                        await emit(ErrorEvent(Status.INVALID_ARGUMENT, problem))
                case PlaybackReport():
                    problem = check_playback(item)
                    if problem:
                        await emit(ErrorEvent(Status.INVALID_ARGUMENT, problem))
                    else:
                        await session.playback(item)
                case Unreadable():
                    await emit(ErrorEvent(Status.INVALID_ARGUMENT, item.message))

    async def drain(self, grace_s: float) -> None:
        """Shutting down: refuse new sessions; each session finishes its turn in flight, then ends."""
        self.draining = True
        for closing in list(self._closing):
            closing.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while self.sessions and loop.time() < deadline:
            await asyncio.sleep(0.05)

    async def voices(self) -> set[str]:
        """The TTS's voices, to check a session's voice early; empty (no check) while the TTS is down."""
        try:
            return await self.stages.voices()
        except StageError as err:
            log.warning("cannot list voices; the session's voice is checked at its first reply",
                        extra={"error": str(err)})
            return set()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        await self.stages.close()
        await self.store.close()
