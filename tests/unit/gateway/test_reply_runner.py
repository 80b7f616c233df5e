"""ReplyRunner alone: what counts as heard when a turn is cut off mid-clause, writes cut by a
cancellation, the pace it learns. The stages here are scripted in-process stand-ins; the
end-to-end barge-in test uses the real services."""

from __future__ import annotations

import asyncio
import gc

import numpy as np
import pytest

from services.gateway.config import GatewaySettings
from services.gateway.engine.events import ResponseAudio
from services.gateway.engine.pace import SynthesisPace
from services.gateway.engine.playout import Playout
from services.gateway.engine.runner import ReplyProgress, ReplyRequest, ReplyRunner
from services.gateway.engine.stages import ReplyDelta, SpeechChunk


class ScriptedStages:
    """Voxtral says one sentence; TTS speaks it in two chunks, the second only when released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def respond(self, *args, **kwargs):
        yield ReplyDelta("Paris is lovely today, you should go and walk by the river.", 5.0)

    async def synthesize(self, text, *args, **kwargs):
        yield SpeechChunk(b"\x01\x00" * 240, "Paris is lovely today,", 3.0)
        await self.release.wait()
        yield SpeechChunk(b"\x02\x00" * 240, "you should go and walk by the river.", 3.0)


def request() -> ReplyRequest:
    return ReplyRequest("t1", "s1", np.zeros(1600, np.int16), [], "", "af_heart", None, 24000,
                       ended_at=0.0, endpoint_ms=1.0)


def progress() -> ReplyProgress:
    return ReplyProgress(Playout(24000, lead_ms=200, piece_ms=40))


async def cut_when(stages, emit, moment: asyncio.Event, played_ms: float | None = None) -> ReplyProgress:
    """Run a turn and cancel it (a barge-in) at `moment`, the client having played `played_ms`;
    returns what it had done."""
    done = progress()
    runner = ReplyRunner(GatewaySettings(auth_disabled=True), stages, emit)
    task = asyncio.create_task(runner.run(request(), done))
    await moment.wait()
    if played_ms is not None:
        done.playout.report(played_ms)
    done.playout.pause()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return done


async def test_a_turn_cut_after_its_first_clause_was_played_keeps_that_clause() -> None:
    stages = ScriptedStages()
    sent: list[str] = []
    first_sent = asyncio.Event()

    async def emit(event) -> None:
        if isinstance(event, ResponseAudio):
            sent.append(event.text)
            first_sent.set()

    cut = await cut_when(stages, emit, first_sent, played_ms=10.0)  # all of the first chunk's 10 ms
    assert sent == ["Paris is lovely today,"]
    assert cut.heard_text == "Paris is lovely today," and cut.cut_off


async def test_a_chunk_being_written_when_the_turn_is_cut_still_goes_out_whole() -> None:
    stages = ScriptedStages()
    stages.release.set()
    sent: list[str] = []
    writing = asyncio.Event()
    gate = asyncio.Event()

    async def emit(event) -> None:
        if isinstance(event, ResponseAudio):
            writing.set()
            await gate.wait()  # a slow client: the write is in progress when the cancel lands
            sent.append(event.text)

    await cut_when(stages, emit, writing)
    gate.set()
    await asyncio.sleep(0.01)
    assert sent == ["Paris is lovely today,"]


class SlowTextStages(ScriptedStages):
    """Voxtral's first clause comes at once, the rest only when `more` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release.set()
        self.more = asyncio.Event()

    async def respond(self, *args, **kwargs):
        yield ReplyDelta("Paris is lovely today, ", 5.0)
        await self.more.wait()
        yield ReplyDelta("you should go.", 9.0)


async def test_voxtral_is_called_free_only_once_the_text_is_done_and_synthesised() -> None:
    stages = SlowTextStages()
    order: list[str] = []

    async def emit(event) -> None:
        if isinstance(event, ResponseAudio):
            order.append("audio")

    runner = ReplyRunner(GatewaySettings(auth_disabled=True), stages, emit)  # type: ignore[arg-type]  # scripted stand-in
    task = asyncio.create_task(runner.run(request(), progress(), lambda: order.append("free")))
    while "audio" not in order:
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.05)
    assert "free" not in order  # audio is out, but Voxtral is still writing the reply
    stages.more.set()
    await task
    assert order.count("free") == 1 and order.index("free") > 0


async def test_a_failed_write_after_the_cut_is_not_left_unread(caplog) -> None:
    stages = ScriptedStages()
    writing, gate = asyncio.Event(), asyncio.Event()

    async def emit(event) -> None:
        if isinstance(event, ResponseAudio):
            writing.set()
            await gate.wait()
            raise ConnectionError("the client is gone")

    await cut_when(stages, emit, writing)
    gate.set()
    await asyncio.sleep(0.01)
    gc.collect()
    await asyncio.sleep(0)
    assert "exception was never retrieved" not in caplog.text


def test_clause_growth_follows_the_synthesis_speed_measured() -> None:
    pace = SynthesisPace()
    assert pace.growth(2.0) == 2.0  # nothing measured yet: the setting
    one_second = b"\x00\x00" * 24000
    pace.observe(SpeechChunk(one_second, "fast", compute_ms=200.0), 24000)  # 5x real time
    assert pace.growth(2.0) == 2.0
    for _ in range(30):  # the machine slows down: 0.7 s to make a second of speech
        pace.observe(SpeechChunk(one_second, "slow", compute_ms=700.0), 24000)
    assert pace.growth(2.0) == pytest.approx(0.8 / 0.7, rel=0.01)
    for _ in range(30):  # slower than real time: clauses stop growing (they never shrink)
        pace.observe(SpeechChunk(one_second, "slower", compute_ms=1500.0), 24000)
    assert pace.growth(2.0) == 1.0 and pace.growth(0.0) == 0.0


async def test_a_turn_teaches_the_pace_what_it_measured() -> None:
    stages = ScriptedStages()
    stages.release.set()
    pace = SynthesisPace()

    async def emit(event) -> None:
        pass

    await ReplyRunner(GatewaySettings(auth_disabled=True), stages, emit, pace).run(request(), progress())  # type: ignore[arg-type]  # scripted stand-in
    assert pace.rtf == pytest.approx(3.0 / 10.0, rel=0.5)  # 3 ms of compute per 10 ms chunk


async def test_a_reply_whose_text_cannot_be_cut_fails_instead_of_waiting_forever() -> None:
    """Whatever goes wrong before the first clause (here the pace itself), the speaker is told the
    text has ended: the turn fails with that error, it does not hang."""

    class BrokenPace(SynthesisPace):
        def growth(self, setting: float) -> float:
            raise RuntimeError("the pace broke")

    stages = ScriptedStages()
    stages.release.set()

    async def emit(event) -> None:
        pass

    runner = ReplyRunner(GatewaySettings(auth_disabled=True), stages, emit, BrokenPace())  # type: ignore[arg-type]  # scripted stand-in
    with pytest.raises(RuntimeError, match="the pace broke"):
        async with asyncio.timeout(10):
            await runner.run(request(), progress())
