"""Audio waiting for the VAD is bounded in bytes, per session and per process: a client that sends
faster than the VAD takes audio is slowed down (its input is not read), nothing is dropped, and
every byte is given back when the session ends. On the fake stages; test_gateway_bad_input.py
floods the real gateway."""

from __future__ import annotations

import asyncio

from services.gateway.engine.budget import AudioBudget, ByteBudget
from services.gateway.engine.events import SessionStarted
from services.gateway.metrics import GatewayMetrics
from tests.support.engine_client import Client, engine, until
from tests.support.fake_stages import FakeStages


async def test_a_budget_waits_for_room_and_one_holder_always_fits() -> None:
    budget = ByteBudget(1000, "session")
    assert not await budget.take(600)
    second = asyncio.create_task(budget.take(600))
    await asyncio.sleep(0.01)
    assert not second.done() and budget.held == 600
    budget.give(600)
    assert await second and budget.held == 600  # it waited
    budget.give(600)
    assert not await budget.take(5000)  # bigger than the budget, alone: it fits
    budget.give(5000)
    assert budget.held == 0


async def test_a_session_waits_for_the_process_budget_too() -> None:
    process = ByteBudget(1000, "process")
    first = AudioBudget(ByteBudget(10_000, "session"), process, "a", GatewayMetrics())
    second = AudioBudget(ByteBudget(10_000, "session"), process, "b", GatewayMetrics())
    await first.take(900)
    waiting = asyncio.create_task(second.take(900))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    waiting.cancel()  # a session that ends while waiting holds nothing
    await asyncio.gather(waiting, return_exceptions=True)
    assert second.session.held == 0 and process.held == 900
    first.give(900)
    assert process.held == 0


async def test_a_client_faster_than_the_vad_is_slowed_and_loses_nothing(stages: FakeStages) -> None:
    conversations = engine(stages, session_audio_bytes=64 * 1024)
    client = Client(conversations)
    await client.wait_for(SessionStarted)
    await until(lambda: stages.streams)
    stages.vad.taking.clear()  # the VAD lags
    for _ in range(40):
        client.audio(1000)  # 40 s of audio at once: 1.28 MB
    await until(lambda: conversations.audio_budget.held > 0)
    await asyncio.sleep(0.05)
    assert conversations.audio_budget.held <= 64 * 1024 + 32_000  # the budget (and one message past it)
    assert client._inputs.qsize() > 20  # the rest is not read from the client yet
    assert conversations.metrics.value("voice_audio_throttled_total", reason="budget") > 0
    stages.vad.taking.set()
    await stages.vad.heard(client.sent)  # every sample reaches the VAD: nothing dropped
    await client.end()
    assert conversations.audio_budget.held == 0


async def test_a_session_that_ends_with_audio_queued_gives_its_bytes_back(stages: FakeStages) -> None:
    conversations = engine(stages, session_audio_bytes=64 * 1024)
    client = Client(conversations)
    await client.wait_for(SessionStarted)
    await until(lambda: stages.streams)
    stages.vad.taking.clear()
    for _ in range(10):
        client.audio(1000)
    await until(lambda: conversations.audio_budget.held > 0)
    client.task.cancel()  # the client goes away
    await asyncio.gather(client.task, return_exceptions=True)
    assert conversations.audio_budget.held == 0


async def test_audio_beyond_the_burst_waits_for_the_speed_limit() -> None:
    from services.gateway.engine.budget import AudioSpeedLimit

    now = [0.0]
    metrics = GatewayMetrics()
    budget = AudioBudget(ByteBudget(10**6, "session"), ByteBudget(10**7, "process"), "s", metrics)
    pace = AudioSpeedLimit(16000, speed=4.0, burst_s=2.0, budget=budget, clock=lambda: now[0])
    await pace.take(32000)  # a 2 s recording at once: the burst
    assert pace.tokens == 0
    now[0] += 0.5  # half a second later: 2 s of audio more may come (4x real time)
    await pace.take(32000)
    assert metrics.value("voice_audio_throttled_total", reason="speed") == 0
    now[0] += 0.25
    waiting = asyncio.create_task(pace.take(32000))  # 2 s more after 0.25 s: only 1 s has come back
    await asyncio.sleep(0)
    assert not waiting.done()
    assert metrics.value("voice_audio_throttled_total", reason="speed") == 1
    waiting.cancel()
