"""The endpointing logic, no network: real recordings, espeak-ng gaps, chunking, silence, noise."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from harness.recordings import espeak, recording, silence
from services.common.audio import resample
from services.common.errors import InvalidArgument
from services.vad.endpointer import Endpointer, EndpointerConfig, EventKind, SpeechEvent

# Pauses a listener hears (seconds): quiet stretches of each recording, checked against the
# speech recogniser's word timestamps (faster-whisper tiny.en) and by ear.
PAUSES = {
    "beckett.wav": [(5.52, 6.66), (8.70, 10.0)],  # "...Try again." | "Fail again. Fail better." | end
    "two_cities.wav": [(16.65, 17.55), (28.26, 29.10), (41.61, 42.90), (43.14, 44.40)],
    "endgame_nagg_nell.wav": [(0.96, 1.47), (1.83, 2.40), (3.33, 3.84), (4.20, 4.83), (8.10, 8.67),
                              (11.37, 12.00), (14.04, 14.64), (16.98, 17.61), (18.81, 19.35), (19.80, 20.37),
                              (21.90, 22.41), (23.13, 23.76), (27.42, 27.93), (28.20, 28.30)],
}
END_SILENCE_MS = {"beckett.wav": 800, "two_cities.wav": 800, "endgame_nagg_nell.wav": 500}
EXPECTED_TURNS = {"beckett.wav": 2, "two_cities.wav": 4, "endgame_nagg_nell.wav": 14}
# A frame of VAD granularity before a measured quiet stretch begins.
TOLERANCE_S = 0.15


def run(samples: np.ndarray, config: EndpointerConfig, chunk_bytes: int) -> list[SpeechEvent]:
    endpointer = Endpointer(config)
    data = samples.tobytes()
    events: list[SpeechEvent] = []
    for i in range(0, len(data), chunk_bytes):
        events += [e for e in endpointer.push(data[i : i + chunk_bytes]) if isinstance(e, SpeechEvent)]
    return events + endpointer.finish()



@pytest.mark.parametrize("name", sorted(PAUSES))
def test_turns_end_in_the_pauses_a_listener_hears(name: str) -> None:
    samples, rate = recording(name)
    config = EndpointerConfig(sample_rate_hz=rate, end_silence_ms=END_SILENCE_MS[name])
    events = run(samples, config, rate // 50 * 2)
    ended = [e for e in events if e.kind is EventKind.ENDED]
    assert len(ended) == EXPECTED_TURNS[name]
    for event in ended:
        at = event.end_sample / rate
        assert any(start - TOLERANCE_S <= at <= end for start, end in PAUSES[name]), f"turn ended at {at:.2f}s"
        assert event.decided_at_sample - event.end_sample <= rate * (config.end_silence_ms + config.frame_ms) / 1000
    # Every utterance starts, ends once, and the next starts after it.
    kinds = [e.kind for e in events if e.kind in (EventKind.STARTED, EventKind.ENDED)]
    assert kinds == [EventKind.STARTED, EventKind.ENDED] * len(ended)
    starts = [e.start_sample for e in events if e.kind is EventKind.STARTED]
    assert all(a.end_sample <= b for a, b in zip(ended, starts[1:], strict=False))



@pytest.mark.parametrize("name", sorted(PAUSES))
def test_same_events_whatever_the_chunking(name: str) -> None:
    samples, rate = recording(name)
    config = EndpointerConfig(sample_rate_hz=rate)
    twenty_ms = rate // 50 * 2
    reference = run(samples, config, twenty_ms)
    assert reference
    assert run(samples, config, 7) == reference
    assert run(samples, config, rate * 2) == reference



@pytest.mark.parametrize("rate", [8000, 24000, 44100, 48000])
def test_offsets_are_on_the_input_timeline(rate: int) -> None:
    """Whatever rate comes in (resampled or analysed natively), offsets count input samples."""
    speech, espeak_rate = espeak("Offsets count the caller's own samples.")
    audio = np.concatenate([silence(espeak_rate, 700), speech, silence(espeak_rate, 1500)])
    reference = [e for e in run(audio, EndpointerConfig(sample_rate_hz=espeak_rate), 882)]
    events = run(resample(audio, espeak_rate, rate), EndpointerConfig(sample_rate_hz=rate), 998)
    assert [e.kind for e in events] == [e.kind for e in reference] != []
    for a, b in zip(reference, events, strict=False):
        assert abs(a.end_sample / espeak_rate - b.end_sample / rate) <= 0.061
        assert abs(a.start_sample / espeak_rate - b.start_sample / rate) <= 0.061
    ended = events[-1]
    assert abs(ended.end_sample / rate - (0.7 + len(speech) / espeak_rate)) <= 0.061



@pytest.mark.parametrize("end_silence_ms", [800, 300, 100])
def test_espeak_gaps_endpoint_within_end_silence_plus_one_frame(end_silence_ms: int) -> None:
    phrases = [espeak(t) for t in ("Hello there.", "How are you today?", "Tell me a story.")]
    rate = phrases[0][1]
    gap_ms = end_silence_ms + 400  # each gap is long enough to end the turn
    parts, speech_ends = [], []
    for speech, _ in phrases:
        parts += [silence(rate, 500), speech]
        speech_ends.append(sum(len(p) for p in parts))
        parts.append(silence(rate, gap_ms))
    audio = np.concatenate(parts)
    config = EndpointerConfig(sample_rate_hz=rate, end_silence_ms=end_silence_ms)
    ended = [e for e in run(audio, config, 441 * 2) if e.kind is EventKind.ENDED]
    assert len(ended) == len(phrases)
    frame = rate * config.frame_ms // 1000
    for event, true_end in zip(ended, speech_ends, strict=False):
        # The last voiced frame ends within two frames of where the speech really ends...
        assert abs(event.end_sample - true_end) <= 2 * frame
        # ...and the end is decided no later than end silence + one frame after it.
        assert event.decided_at_sample - event.end_sample <= rate * end_silence_ms // 1000 + frame + 1


def test_short_pause_gives_a_hint_not_an_end() -> None:
    (a, rate), (b, _) = espeak("Well, let me think."), espeak("Yes, that works.")
    audio = np.concatenate([silence(rate, 300), a, silence(rate, 400), b, silence(rate, 1200)])
    kinds = [e.kind for e in run(audio, EndpointerConfig(sample_rate_hz=rate), 882)]
    assert kinds[0] is EventKind.STARTED and kinds[-1] is EventKind.ENDED
    assert kinds.count(EventKind.ENDED) == 1
    assert EventKind.PAUSED in kinds and EventKind.RESUMED in kinds


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_silence_and_low_noise_give_no_events(rate: int) -> None:
    rng = np.random.default_rng(7)
    quiet = np.zeros(rate * 5, dtype=np.int16)
    hiss = (rng.normal(0, 60, rate * 5)).astype(np.int16)  # about -55 dBFS of white noise
    for audio in (quiet, hiss):
        assert run(audio, EndpointerConfig(sample_rate_hz=rate), 640) == []


def test_voiced_run_shorter_than_min_speech_gives_no_events() -> None:
    speech, rate = espeak("Hello there, how are you?")
    blip = speech[: rate * 150 // 1000]  # 150 ms of speech
    audio = np.concatenate([silence(rate, 500), blip, silence(rate, 1500)])
    assert run(audio, EndpointerConfig(sample_rate_hz=rate), 882) == []
    assert run(audio, EndpointerConfig(sample_rate_hz=rate, min_speech_ms=60), 882) != []


@pytest.mark.parametrize(("field", "value", "message"), [
    ("sample_rate_hz", 96000, "8000 to 48000"),
    ("aggressiveness", 4, "use 0, 1, 2 or 3"),
    ("frame_ms", 25, "use 10, 20 or 30"),
    ("end_silence_ms", 50, "use 100 to 10000"),
])
def test_bad_config_names_what_is_accepted(field: str, value: int, message: str) -> None:
    kwargs: dict[str, Any] = {"sample_rate_hz": 16000, field: value}
    with pytest.raises(InvalidArgument, match=message):
        EndpointerConfig(**kwargs)
