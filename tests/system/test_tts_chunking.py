"""The cut that bench/tts_chunking.py makes in the shipped Kokoro graph: stage 1 then stage 2 is
the whole graph (the same audio), and a window of frames gives that window's samples."""

from __future__ import annotations

import numpy as np
import pytest

from bench.tts_chunking import MODELS, SAMPLES_PER_FRAME, SplitKokoro, log_spectral_distance_db, snr_db
from services.tts.engine import OnnxEngine
from services.tts.phonemes import shared_phonemizer
from services.tts.voices import VoiceBank


@pytest.fixture(scope="module")
def split() -> SplitKokoro:
    return SplitKokoro(MODELS / "kokoro-v1.0.int8.onnx", threads=2)


def test_stage_one_then_stage_two_is_the_whole_graph(split: SplitKokoro) -> None:
    engine = OnnxEngine(MODELS / "kokoro-v1.0.int8.onnx", MODELS / "voices-v1.0.npz", threads=2)
    pack = VoiceBank(MODELS / "voices-v1.0.npz").pack("af_heart")
    feed = engine.inputs(shared_phonemizer().phonemize("Sure, I can do that."), pack, 1.0)
    assert feed is not None
    whole = np.asarray(split.whole.run(None, feed)[0]).ravel()
    features, source, style, durations = split.features(feed)
    frames = features.shape[2]
    assert len(whole) == frames * SAMPLES_PER_FRAME and durations.sum() * 2 == frames
    again = split.window(features, source, style, 0, frames)
    assert snr_db(whole, again) > 100 and log_spectral_distance_db(whole, again) == 0.0
    own = split.clause_stats(features, source, style)
    assert len(own) == len(split.stats) == 88
    fed = split.window(features, source, style, 0, frames, own)  # its own statistics fed back: the same
    assert snr_db(whole, fed) > 100
    part = split.window(features, source, style, 10, 40)
    assert len(part) == 30 * SAMPLES_PER_FRAME and np.abs(part).max() > 0.01
