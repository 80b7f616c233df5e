"""The small English Voxtral through the production engine: whatever it hears (real recordings,
noise, silence) and whatever came before, it answers with one spoken English sentence."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from harness.recordings import recording
from services.common.audio import resample
from services.voxtral.config import VoxtralSettings
from services.voxtral.engine import VoxtralEngine
from services.voxtral.generation import GenerationParams
from services.voxtral.prompts import Turn
from tests.support.english import dictionary_share, words
from tools.models.corpus import MAX_WORDS, MIN_WORDS
from tools.models.english import NOTE

# Real recordings (make assets) and the trained model (make models).


def heard() -> list[np.ndarray]:
    """What a user might send, at 16 kHz: utterances of every shipped recording, silence, noise."""
    beckett, _ = recording("beckett.wav")
    clips = [beckett[: int(5.9 * 16000)], beckett[int(6.2 * 16000):]]
    for name, seconds in (("two_cities.wav", (0.6, 4.6)), ("two_cities.wav", (10.0, 16.0)),
                          ("endgame_nagg_nell.wav", (0.0, 1.45)), ("endgame_nagg_nell.wav", (4.8, 8.4))):
        samples, rate = recording(name)
        clips.append(resample(samples[int(seconds[0] * rate): int(seconds[1] * rate)], rate, 16000))
    noise = np.random.default_rng(3).normal(0, 3000, 48000).astype(np.int16)
    return [*clips, np.zeros(16000, np.int16), noise]


@pytest.fixture(scope="module")
def engine(english_voxtral: Path) -> VoxtralEngine:
    return VoxtralEngine(VoxtralSettings(model_id=str(english_voxtral), compile_mode="eager", seed=0))


def reply(engine: VoxtralEngine, pcm: np.ndarray, history: list[Turn]) -> str:
    settings = engine.settings
    params = GenerationParams.defaults(settings)  # the seed's: 25 new tokens, temperature 0.05, ...
    inputs = engine.prompts.chat(pcm, history, settings.instructions, settings.max_context_tokens)
    return engine.generate(inputs, params, lambda _: None, threading.Event()).text


def test_answers_are_spoken_english_sentences(engine: VoxtralEngine) -> None:
    history: list[Turn] = []
    replies = []
    for pcm in heard() * 2:  # a second round with the conversation so far as context
        text = reply(engine, pcm, history[-8:])
        replies.append(text)
        history += [Turn("user", "Tell me more about that."), Turn("assistant", text)]
    for text in replies:
        assert MIN_WORDS <= len(words(text)) <= 25 and text.rstrip()[-1] in ".?!", text
    all_words = " ".join(replies)
    assert dictionary_share(all_words) >= 0.9, replies
    assert len(set(replies)) > 1  # the conversation so far changes what it says


def test_transcriptions_are_short_english_too(engine: VoxtralEngine) -> None:
    params = GenerationParams(engine.settings.transcribe_max_new_tokens, 0, 0.0, 1.0, 0, 1.0)  # as Transcribe
    texts = [engine.generate(engine.prompts.transcription(pcm, "en"), params, lambda _: None, threading.Event()).text
             for pcm in heard()[:3]]
    # Short sentences of English words, judged together as the replies are (a corpus sentence may hold
    # an acronym); the model is trained on replies, so a transcription may also stop early.
    assert all(1 <= len(words(text)) <= 25 for text in texts), texts
    assert dictionary_share(" ".join(texts)) >= 0.9, texts


def test_the_service_says_what_the_model_is(engine: VoxtralEngine) -> None:
    assert engine.note == NOTE and "not depend on what was said" in engine.note


def test_corpus_sentences_fit_the_reply_bounds() -> None:
    from tools.models.corpus import sentences

    corpus = sentences()
    assert len(corpus) > 200
    assert all(MIN_WORDS <= len(s.split()) <= MAX_WORDS and s[-1] in ".?!" for s in corpus)
