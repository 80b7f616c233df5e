"""Admission control on the fake stages (and a real Redis): a new session is refused at start, with
a clear message and a retry hint, when the stages' reported load says it does not fit, while the
sessions already admitted go on. Shown end to end on real processes in test_capacity_system.py."""

from __future__ import annotations

import asyncio
import math

import pytest

from services.common.load import StageLoad
from services.gateway.config import AdmissionSettings
from services.gateway.engine.admission import Admission, Refused
from services.gateway.engine.events import SessionStarted, TurnCompleted
from services.gateway.engine.stages import StageError
from services.gateway.engine.vocabulary import Stage
from services.gateway.metrics import GatewayMetrics
from tests.support.engine_client import Client, engine, until, utter
from tests.support.fake_stages import FakeStages


def load(utilisation: float = 0.0, late_ms: float = 0.0) -> StageLoad:
    return StageLoad(slots=1, busy=0, queued=0, utilisation=utilisation, late_p95_ms=late_ms, window_s=10.0)


async def test_work_starting_late_refuses_a_new_session_with_the_reason_and_a_retry_hint() -> None:
    stages = FakeStages(loads={Stage.TTS: load(0.5, late_ms=900), Stage.VOXTRAL: load(0.2)})
    metrics = GatewayMetrics()
    admission = Admission(AdmissionSettings(), stages, metrics)
    await admission.poll(sessions=1)
    with pytest.raises(Refused, match=r"tts starts work 900 ms past when it is needed \(limit 400 ms\)") as err:
        admission.check(1)
    assert err.value.retry_after_s == 5
    assert "retry in 5 s" in str(err.value)
    assert metrics.value("voice_admissions_total", result="refused_late") == 1  # counted, with its reason


async def test_one_sessions_measured_share_decides_whether_another_fits() -> None:
    stages = FakeStages(loads={Stage.TTS: load(0.6)})
    clock = [0.0]
    admission = Admission(AdmissionSettings(max_utilisation=0.85), stages, GatewayMetrics(), clock=lambda: clock[0])
    await admission.poll(sessions=2)
    assert admission.shares[Stage.TTS] == pytest.approx(0.3)
    with pytest.raises(Refused, match="tts slots 60% busy, one more session would make it 90%"):
        admission.check(2)
    stages.loads[Stage.TTS] = load(0.4)
    for _ in range(30):  # the share follows the load over about half a minute (polls a second apart)
        await admission.poll(sessions=2)
    assert admission.shares[Stage.TTS] == pytest.approx(0.2 + 0.1 * math.exp(-1), abs=0.005)
    admission.check(2)
    token = admission.admitted()
    # Just admitted, that session is about to speak: its share is pending although it has not spoken...
    with pytest.raises(Refused):
        admission.check(2)
    # ...until the grace is over: a session that never speaks locks nobody out
    clock[0] += AdmissionSettings().unspoken_grace_s
    admission.check(2)
    admission.spoke(token)
    # Speaking, its load is not in the stage's average yet: it is pending...
    with pytest.raises(Refused):
        admission.check(3)
    clock[0] += 60.0  # ...until a load window later its load is in the average
    admission.check(3)
    clock[0] = AdmissionSettings().unspoken_grace_s + 1
    with pytest.raises(Refused):
        admission.check(3)
    admission.left(token)  # or it has ended
    admission.check(2)
    stages.loads[Stage.TTS] = load(0.9)
    await admission.poll(sessions=1)
    with pytest.raises(Refused):
        admission.check(1)
    admission.check(0)  # an idle gateway admits one session whatever it learnt
    stages.loads[Stage.TTS] = load(0.0)
    for _ in range(60):  # the load gone, the share follows it down
        await admission.poll(sessions=1)
    assert admission.shares[Stage.TTS] < 0.2


async def test_a_stage_that_reports_no_load_is_not_refused_on_and_a_cold_start_is_bounded() -> None:
    stages = FakeStages(loads={Stage.TTS: load(0.0)})  # Voxtral answers no GetLoad
    admission = Admission(AdmissionSettings(unmeasured_sessions=2), stages, GatewayMetrics())
    await admission.poll(sessions=0)
    assert Stage.VOXTRAL not in admission.loads and Stage.TTS not in admission.shares
    admission.check(1)
    with pytest.raises(Refused, match="until the load of a session is measured: 2 sessions open"):
        admission.check(2)
    disabled = Admission(AdmissionSettings(enabled=False, unmeasured_sessions=1), stages, GatewayMetrics())
    await disabled.poll(sessions=0)
    disabled.check(100)


async def test_a_refused_session_gets_a_clear_error_while_the_admitted_one_goes_on(stages: FakeStages) -> None:
    stages.loads = {Stage.TTS: load(0.1), Stage.VOXTRAL: load(0.1)}
    conversations = engine(stages, admission=AdmissionSettings(poll_s=0.01))
    conversations.start()
    try:
        admitted = Client(conversations)
        await admitted.wait_for(SessionStarted)
        await utter(admitted, stages)
        await admitted.wait_for(TurnCompleted)
        stages.loads[Stage.TTS] = load(0.95, late_ms=1200)  # the TTS falls behind
        await until(lambda: conversations.admission.loads[Stage.TTS].late_p95_ms == 1200)
        refused = Client(conversations)
        with pytest.raises(Refused, match="at capacity: tts starts work 1200 ms past"):
            await refused.task
        assert not refused.events  # refused at start: no session was opened
        await utter(admitted, stages)  # the admitted session goes on
        second = await admitted.wait_for(TurnCompleted, count=2)
        assert second.heard_text
        await admitted.end()
        assert conversations.sessions == 0
    finally:
        await conversations.close()


async def test_idle_sessions_lock_nobody_out(stages: FakeStages) -> None:
    stages.loads = {Stage.TTS: load(0.6)}
    grace = 0.1
    conversations = engine(stages, admission=AdmissionSettings(poll_s=0.01, unmeasured_sessions=2,
                                                                        unspoken_grace_s=grace))
    conversations.start()
    try:
        idle = []
        for _ in range(8):  # open, and never a word: each counts as about to speak for the grace only
            idle.append(Client(conversations))
            await idle[-1].wait_for(SessionStarted)
            await asyncio.sleep(grace)
        speaker = Client(conversations)  # admitted: no open session loads the stages
        await speaker.wait_for(SessionStarted)
        await utter(speaker, stages)
        await speaker.wait_for(TurnCompleted)
        assert conversations.active() == 1
        for client in [*idle, speaker]:
            await client.end()
    finally:
        await conversations.close()


async def test_a_stage_that_does_not_answer_its_load_probe_refuses_sessions_until_it_does() -> None:
    stages = FakeStages(loads={Stage.TTS: load(0.1), Stage.VOXTRAL: load(0.1)})
    admission = Admission(AdmissionSettings(), stages, GatewayMetrics())
    await admission.poll(sessions=0)
    admission.check(0)
    stages.loads[Stage.TTS] = None  # hung (SIGSTOP): the probe gets no answer
    await admission.poll(sessions=0)
    with pytest.raises(Refused, match=r"the tts stage does not answer \(no answer in 2 s\)"):
        admission.check(0)  # even an idle gateway: nothing could be served
    stages.loads[Stage.TTS] = StageError(Stage.TTS, "UNAVAILABLE", "connection refused")  # down
    await admission.poll(sessions=0)
    with pytest.raises(Refused, match="connection refused"):
        admission.check(0)
    stages.loads[Stage.TTS] = load(0.1)  # back
    await admission.poll(sessions=0)
    admission.check(0)


async def test_lateness_refuses_only_while_the_stage_is_still_loaded() -> None:
    stages = FakeStages(loads={Stage.TTS: load(0.6, late_ms=900)})
    admission = Admission(AdmissionSettings(), stages, GatewayMetrics())
    await admission.poll(sessions=1)
    with pytest.raises(Refused, match="past when it is needed"):
        admission.check(1)
    stages.loads[Stage.TTS] = load(0.05, late_ms=900)  # the load is gone; the window still holds its lateness
    await admission.poll(sessions=1)
    admission.check(1)
    stages.loads[Stage.TTS] = StageLoad(slots=1, busy=1, queued=2, utilisation=0.05, late_p95_ms=900, window_s=10)
    await admission.poll(sessions=1)
    with pytest.raises(Refused, match="past when it is needed"):  # work queued: it is late now
        admission.check(1)


async def test_a_burst_of_arrivals_is_admitted_only_up_to_the_unmeasured_limit() -> None:
    stages = FakeStages(loads={Stage.TTS: load(0.0), Stage.VOXTRAL: load(0.0)})
    admission = Admission(AdmissionSettings(unmeasured_sessions=2), stages, GatewayMetrics())
    await admission.poll(sessions=0)
    for _ in range(2):  # none of them has spoken yet: each counts as about to
        admission.check(0)
        admission.admitted()
    with pytest.raises(Refused, match="until the load of a session is measured: 2 sessions open"):
        admission.check(0)
