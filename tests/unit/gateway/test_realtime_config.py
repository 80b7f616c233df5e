"""What a Realtime session's turn detection asks of the engine (one module, no server)."""

from __future__ import annotations

import pytest

from services.gateway.engine.vocabulary import BargeInMode, Detector
from services.gateway.realtime.config import RealtimeConfig, apply


@pytest.mark.parametrize(("detection", "detector", "end_silence_ms", "fallback_ms", "manual"), [
    ({"type": "server_vad", "silence_duration_ms": 500}, Detector.SILENCE, 500, None, False),
    ({"type": "server_vad"}, None, None, None, False),  # the VAD's default decides
    ({"type": "semantic_vad", "eagerness": "high"}, None, None, 2000, False),
    (None, None, None, None, True),  # manual commits
])
def test_turn_detection_becomes_the_sessions_end_of_turn(detection: dict | None, detector: Detector | None,
                                                        end_silence_ms: int | None, fallback_ms: int | None,
                                                        manual: bool) -> None:
    config = apply(RealtimeConfig(), {"audio": {"input": {"turn_detection": detection}}})
    request = config.request("")
    assert request.end_of_turn_detector is detector and request.end_silence_ms == end_silence_ms
    assert request.end_of_turn_fallback_ms == fallback_ms and request.manual_turns is manual


@pytest.mark.parametrize("value", [None, {"type": "near_field"}, {"type": "far_field"}])
def test_noise_reduction_that_ga_allows_is_accepted(value: dict | None) -> None:
    assert apply(RealtimeConfig(), {"audio": {"input": {"noise_reduction": value}}}) == RealtimeConfig()


@pytest.mark.parametrize("value", [{"type": "studio"}, {"type": "near_field", "gain": 2}, "near_field", 1])
def test_noise_reduction_that_ga_refuses_is_an_error_naming_the_field(value: object) -> None:
    from services.gateway.realtime.formats import ClientError

    with pytest.raises(ClientError) as err:
        apply(RealtimeConfig(), {"audio": {"input": {"noise_reduction": value}}})
    assert err.value.param == "session.audio.input.noise_reduction"


@pytest.mark.parametrize(("detection", "mode"), [
    ({"type": "server_vad"}, BargeInMode.CANCEL),  # GA: interrupt_response true cancels at speech start
    ({"type": "semantic_vad", "interrupt_response": False}, BargeInMode.OFF),
    ({"type": "server_vad", "pause_on_speech": True}, BargeInMode.PAUSE),  # this gateway's extension
    (None, None),  # manual commits: no speech is detected
])
def test_interrupt_response_sets_what_speech_over_a_reply_does(detection: dict | None,
                                                               mode: BargeInMode | None) -> None:
    config = apply(RealtimeConfig(), {"audio": {"input": {"turn_detection": detection}}})
    assert config.request("").barge_in is mode
    if detection is not None:
        assert config.describe("s")["audio"]["input"]["turn_detection"].get("pause_on_speech", False) is (
            mode is BargeInMode.PAUSE)


@pytest.mark.parametrize("beta", [
    {"turn_detection": {"type": "server_vad", "silence_duration_ms": 500}},  # no format or modality named
    {"instructions": "Be brief.", "input_audio_noise_reduction": {"type": "near_field"},
     "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}, "input_audio_transcription": None},
])
def test_a_beta_session_is_read_whichever_of_its_fields_it_sends(beta: dict) -> None:
    ga = {"audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}}
    assert apply(RealtimeConfig(), beta).turn_detection == apply(RealtimeConfig(), ga).turn_detection
