"""End of turn with Smart Turn v3.2 on real recordings: the production Endpointer and the real
model, answers applied where the stream stands when they are asked (deterministic), then the
service over gRPC: model files checked at start, probabilities on the wire, GetInfo."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from harness import speech_set as ss
from services.common.channels import open_channel
from services.vad import models
from services.vad.config import MODELS_DIR, VadSettings
from services.vad.endpointer import Ask, Endpointer, EndpointerConfig, EventKind, SpeechEvent
from services.vad.server import vad_service
from services.vad.smart_turn import WINDOW_SAMPLES, DecisionPool, SmartTurn
from services.vad.turn_policy import Detector, EndReason, TurnPolicy
from tests.support.serving import serve
from voice.v1 import audio_pb2, vad_pb2, vad_pb2_grpc

RATE = ss.RATE
POLICY = TurnPolicy()
CONFIG = EndpointerConfig(sample_rate_hz=RATE, detector=Detector.SMART_TURN, snr_db=VadSettings().snr_db,
                          floor_window_ms=VadSettings().floor_window_ms, policy=POLICY)


@pytest.fixture(scope="module")
def model() -> SmartTurn:
    return SmartTurn(models.verified(MODELS_DIR, models.SMART_TURN))


def play(audio: np.ndarray, model: SmartTurn, config: EndpointerConfig = CONFIG) -> tuple[list[SpeechEvent], list[Ask]]:
    endpointer = Endpointer(config)
    pcm = ss.pcm16(audio)
    events: list[SpeechEvent] = []
    asks: list[Ask] = []
    for i in range(0, len(pcm), 640):
        for item in endpointer.push(pcm[i : i + 640]):
            if isinstance(item, Ask):
                asks.append(item)
                events += endpointer.answer(item, model.probability(item.audio))
            else:
                events.append(item)
    return events + endpointer.finish(), asks


def ended(events: list[SpeechEvent]) -> list[SpeechEvent]:
    return [e for e in events if e.kind is EventKind.ENDED]


def with_tail(name: str, speech: np.ndarray, tail: np.ndarray) -> tuple[np.ndarray, int]:
    lead = ss.loop(ss.room_tone(name), RATE // 2)
    return np.concatenate([lead, speech, tail]), len(lead) + len(speech)


@pytest.mark.parametrize(("name", "prefix"), [("endgame_nagg_nell.wav", "We have still that resource"),
                                              ("beckett.wav", "No matter")])
def test_a_complete_sentence_ends_well_before_800_ms_of_silence(model, name: str, prefix: str) -> None:
    s = ss.sentence(name, prefix)
    audio, true_end = with_tail(name, ss.audio(name)[s.start : s.end], ss.loop(ss.room_tone(name), 2 * RATE))
    events, _ = play(audio, model)
    (end,) = ended(events)
    assert end.reason is EndReason.MODEL and end.probability is not None and end.probability >= POLICY.threshold_start
    assert (end.decided_at_sample - true_end) * 1000 / RATE < 500, "the turn waited as long as the silence rule"


@pytest.mark.parametrize(("name", "prefix", "word"), [("endgame_nagg_nell.wav", "Do you remember", "that"),
                                                      ("endgame_nagg_nell.wav", "You thought", "in")])
def test_a_sentence_cut_mid_phrase_by_a_1_2_s_pause_does_not_end(model, name: str, prefix: str, word: str) -> None:
    s = ss.sentence(name, prefix)
    x, tone = ss.audio(name), ss.room_tone(name)
    cut = ss.cut_after(name, s, word)
    speech = np.concatenate([x[s.start : cut], ss.loop(tone, RATE * 12 // 10), x[cut : s.end]])
    audio, true_end = with_tail(name, speech, ss.loop(tone, 2 * RATE))
    events, asks = play(audio, model)
    assert [e.decided_at_sample >= true_end for e in ended(events)] == [True], events
    assert asks, "the model was never asked in the pause"
    paused = [e for e in events if e.kind is EventKind.PAUSED]
    assert paused and all(e.probability is not None and e.probability < POLICY.threshold_start for e in paused)
    kinds = [e.kind for e in events]
    assert kinds.index(EventKind.PAUSED) < kinds.index(EventKind.RESUMED)  # the user went on after the pause
    hinted, _ = play(audio, model, dataclasses.replace(CONFIG, hint_at_ask=True))
    hints = [e for e in hinted if e.kind is EventKind.PAUSED and e.probability is None]
    assert hints and hints[0] is next(e for e in hinted if e.kind is EventKind.PAUSED)  # before each answer


def test_the_fallback_ends_a_turn_whose_last_words_sound_unfinished(model) -> None:
    name = "endgame_nagg_nell.wav"
    s = ss.sentence(name, "Do you remember")
    cut = ss.cut_after(name, s, "that")
    audio, voice_end = with_tail(name, ss.audio(name)[s.start : cut], ss.loop(ss.room_tone(name), 3 * RATE))
    events, _ = play(audio, model)
    (end,) = ended(events)
    assert end.reason is EndReason.FALLBACK
    silence_ms = (end.decided_at_sample - end.end_sample) * 1000 / RATE
    assert POLICY.clean_fallback_ms <= silence_ms <= POLICY.fallback_ms + 40


@pytest.mark.parametrize("kind", ["white", "coloured"])
def test_noise_rising_after_speech_still_ends_the_turn(model, kind: str) -> None:
    name = "beckett.wav"
    s = ss.sentence(name, "Ever tried")
    tail = ss.white(3 * RATE, -35) if kind == "white" else ss.coloured_like(ss.room_tone(name), 3 * RATE, -45)
    audio, true_end = with_tail(name, ss.audio(name)[s.start : s.end], tail)
    seed_like = EndpointerConfig(sample_rate_hz=RATE)
    seed_ends = [e for e in play(audio, model, seed_like)[0] if e.kind is EventKind.ENDED
                 and e.reason is not EndReason.INPUT_END]
    assert not seed_ends, "the seed's detector already ends this: the case tests nothing"
    events, _ = play(audio, model)
    ends = [e for e in ended(events) if e.reason is not EndReason.INPUT_END]
    assert ends and ends[0].decided_at_sample - true_end < POLICY.fallback_ms * RATE // 1000 + RATE // 2


def test_an_utterance_longer_than_8_s_is_judged_on_its_last_8_s(model) -> None:
    x = ss.audio("two_cities.wav")
    long_speech = x[: 20 * RATE]
    assert model.probability(long_speech) == pytest.approx(model.probability(long_speech[-WINDOW_SAMPLES:]), abs=1e-6)
    _, asks = play(np.concatenate([long_speech, np.zeros(RATE, np.float32)]), model)
    assert asks and all(len(a.audio) <= WINDOW_SAMPLES + POLICY.fallback_ms * RATE // 1000 for a in asks)


async def test_the_decision_pool_is_bounded(model) -> None:
    pool = DecisionPool(model, workers=1, max_pending=1)
    audio = ss.audio("beckett.wav")[: 2 * RATE]
    first, second = await asyncio.gather(pool.probability(audio), pool.probability(audio))
    assert first[0] is not None and second == (None, 0.0)
    assert pool.refused == 1
    pool.close()


# --- the service -------------------------------------------------------------------------------

VAD = vad_pb2.DESCRIPTOR.services_by_name["VadService"]


@pytest.fixture
async def vad() -> AsyncIterator[vad_pb2_grpc.VadServiceStub]:
    settings = VadSettings(port=0, grace_s=0)
    server, target = await serve(settings, vad_service(settings))
    channel = open_channel(target, VAD)
    yield vad_pb2_grpc.VadServiceStub(channel)
    await channel.close()
    await server.stop(0)


async def test_the_service_sends_the_probability_and_the_reason(vad) -> None:
    name = "endgame_nagg_nell.wav"
    s = ss.sentence(name, "We have still that resource")
    audio, _ = with_tail(name, ss.audio(name)[s.start : s.end], ss.loop(ss.room_tone(name), 2 * RATE))
    pcm = ss.pcm16(audio)
    config = vad_pb2.StreamDetectRequest(config=vad_pb2.VadConfig(format=audio_pb2.AudioFormat(
        sample_rate_hz=RATE, encoding=audio_pb2.AUDIO_ENCODING_PCM16LE, channels=1)))

    async def requests():
        yield config
        for i in range(0, len(pcm), 3200):  # 100 ms a message, in real time: the model answers mid-stream
            yield vad_pb2.StreamDetectRequest(audio=pcm[i : i + 3200])
            await asyncio.sleep(0.1)

    events = [r.event async for r in vad.StreamDetect(requests(), timeout=60)]
    (end,) = [e for e in events if e.type == vad_pb2.SPEECH_EVENT_TYPE_ENDED]
    assert end.end_reason == vad_pb2.END_OF_TURN_REASON_MODEL
    assert end.HasField("end_of_turn_probability") and end.end_of_turn_probability >= POLICY.threshold_start


async def test_get_info_reports_the_detector_and_the_model_files(vad) -> None:
    info = (await vad.GetInfo(vad_pb2.VadServiceGetInfoRequest(), timeout=5)).end_of_turn
    assert info.detector == vad_pb2.END_OF_TURN_DETECTOR_SMART_TURN
    assert info.backend == vad_pb2.VOICE_BACKEND_WEBRTC
    assert info.smart_turn_sha256 == models.SMART_TURN.sha256 and info.silero_sha256 == models.SILERO.sha256
    assert info.threshold_start == pytest.approx(POLICY.threshold_start) and info.fallback_ms == POLICY.fallback_ms


async def test_an_unknown_detector_is_refused_naming_the_choices(vad) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await vad.StreamDetect(iter([vad_pb2.StreamDetectRequest(config=vad_pb2.VadConfig(
            format=audio_pb2.AudioFormat(sample_rate_hz=RATE, encoding=audio_pb2.AUDIO_ENCODING_PCM16LE, channels=1),
            detector=vad_pb2.EndOfTurnDetector.ValueType(7)))]), timeout=10).read()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "END_OF_TURN_DETECTOR_SILENCE" in (err.value.details() or "")


@pytest.mark.parametrize("damage", ["missing", "wrong"])
def test_the_service_refuses_to_start_without_its_model_files(tmp_path: Path, damage: str) -> None:
    for m in models.FILES:
        shutil.copy2(MODELS_DIR / m.name, tmp_path / m.name)
    target = tmp_path / models.SMART_TURN.name
    if damage == "missing":
        target.unlink()
    else:
        target.write_bytes(target.read_bytes()[:-1] + b"\x00")
    env = {**os.environ, "VAD_MODELS_DIR": str(tmp_path), "VAD_PORT": "0"}
    done = subprocess.run([sys.executable, "-m", "services.vad"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "make models" in done.stderr and models.SMART_TURN.name in done.stderr
