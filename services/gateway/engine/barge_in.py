"""Speech over a reply: the reply pauses at once (reply_paused) while the speech is judged. A
sound with little voice, no words or only a backchannel is no turn: the reply resumes where the
listener stopped hearing it (reply_resumed). Anything else, or speech that goes on past the
timeout, is a turn: the reply is cancelled in every stage (interrupted)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
from opentelemetry import trace

from services.gateway.config import GatewaySettings
from services.gateway.engine.events import Event, ReplyPaused, ReplyResumed
from services.gateway.engine.reply import Reply
from services.gateway.engine.stages import StageError, Stages, VadEvent
from services.gateway.engine.tasks import TaskSet
from services.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)
# Input this quiet over the last QUIET_WINDOW_MS is not speech going on: past the timeout, the
# VAD's judgement (late when its end-of-turn model is slow) is awaited up to one timeout more.
QUIET_DBFS = -60.0
QUIET_WINDOW_MS = 300
QUIET_RECHECK_S = 0.1


class BargeIn:
    """One session's judge of speech over its replies. It reads the session's state through
    `answering` and `listening`, and cancels a reply through `stop_answer`."""

    def __init__(self, settings: GatewaySettings, stages: Stages, session_id: str,
                 emit: Callable[[Event], Awaitable[None]], tasks: TaskSet,
                 utterance: Callable[[int, int], np.ndarray], input_level: Callable[[float], float],
                 answering: Callable[[], Reply | None],
                 listening: Callable[[], Listening | None], stop_answer: Callable[[], Awaitable[None]],
                 metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.stages = stages
        self.session_id = session_id
        self.emit = emit
        self.tasks = tasks
        self.utterance = utterance
        self.input_level = input_level  # dBFS of the last ms of input
        self.answering = answering
        self.listening = listening
        self.stop_answer = stop_answer

    async def pause(self, listening: Listening, turn: Reply) -> None:
        """Speech over the reply: its audio stops until the speech is known to be a turn or not."""
        listening.over, listening.dismissed = turn, False
        heard_ms = turn.playout.pause()
        await self.emit(ReplyPaused(turn.turn_id, heard_ms))
        listening.stop_timer()
        listening.timer = self.tasks.spawn(self._judge_by_time(listening))

    async def _judge_by_time(self, listening: Listening) -> None:
        timeout = self.settings.barge_in_timeout_ms / 1000
        await asyncio.sleep(timeout)
        loop = asyncio.get_running_loop()
        backstop = loop.time() + timeout
        while self.input_level(QUIET_WINDOW_MS) < QUIET_DBFS and loop.time() < backstop:
            await asyncio.sleep(QUIET_RECHECK_S)  # the voice stopped: its judgement is on its way
        listening.timer = None
        if self.listening() is listening and listening.over is not None and not listening.dismissed:
            await self._take_turn(listening)  # still talking: that is a turn

    async def judge(self, listening: Listening, event: VadEvent) -> None:
        """The speech over a reply has paused or ended: a turn (the reply is cancelled) or not (it
        resumes where the listener stopped hearing it)."""
        turn = listening.over
        if turn is None or listening.dismissed:
            return
        listening.stop_timer()
        if await self._is_turn(listening, event):
            await self._take_turn(listening)
            return
        listening.dismissed = True
        self.metrics.barge_ins.labels(result="resumed").inc()
        if self.answering() is turn and not turn.task.done():
            await self.emit(ReplyResumed(turn.turn_id, turn.playout.resume(), listening.turn_id))

    async def _is_turn(self, listening: Listening, event: VadEvent) -> bool:
        if event.voiced_ms < self.settings.barge_in_min_voiced_ms:
            return False
        utterance = self.utterance(listening.start_sample, event.end_sample)
        try:
            words = await self.stages.transcribe(utterance, self.session_id, listening.turn_id)
        except StageError as err:
            log.warning("speech over a reply could not be transcribed; taken as a turn", extra={"error": str(err)})
            return True
        return not is_backchannel(words, self.settings.backchannels)

    async def _take_turn(self, listening: Listening) -> None:
        listening.stop_timer()
        turn, listening.over = listening.over, None
        if turn is not None and self.answering() is turn:
            self.metrics.barge_ins.labels(result="interrupted").inc()
            await self.stop_answer()


@dataclass
class Listening:
    """Speech has started and not ended yet. Over a reply (`over`), it is judged: not a turn
    (`dismissed`: the reply resumed and the speech is not answered) or a turn (the reply cancelled)."""

    turn_id: str
    start_sample: int
    span: trace.Span = trace.INVALID_SPAN  # the turn's trace, from the start of the speech
    over: Reply | None = None  # the reply this speech paused
    dismissed: bool = False
    timer: asyncio.Task[None] | None = None  # ends the judging: speech this long is a turn

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def is_backchannel(words: str, backchannels: tuple[str, ...]) -> bool:
    """Are `words` nothing, or only listening sounds ("mm-hm", "yeah, okay")? Compared without case
    or punctuation; every part between commas must be one of `backchannels`."""
    known = {normal(b) for b in backchannels}
    parts = [normal(part) for part in re.split(r"[,.;!?]+", words)]
    parts = [part for part in parts if part]
    if not parts:
        return True
    return all(part in known or all(word in known for word in part.split()) for part in parts)


def normal(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s-]", " ", text.lower()).replace("-", " ").split())
