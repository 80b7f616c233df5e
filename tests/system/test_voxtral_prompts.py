"""Model inputs from PCM: audio tokens for the utterance's length, history in order, bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.recordings import recording
from services.common.errors import InvalidArgument
from services.voxtral.config import VoxtralSettings
from services.voxtral.generation import GenerationParams
from services.voxtral.prompts import CHARS_PER_TOKEN, PromptBuilder, Turn, normalise_history
from tools.models.tiny import AUDIO_TOKEN_ID, BEGIN_AUDIO_ID, TRANSCRIBE_ID

# A real recording (make assets).


@pytest.fixture(scope="module")
def builder(tiny_voxtral: Path) -> PromptBuilder:
    from transformers import AutoProcessor

    return PromptBuilder(AutoProcessor.from_pretrained(tiny_voxtral), AUDIO_TOKEN_ID)


def speech(seconds: float) -> np.ndarray:
    samples, rate = recording("beckett.wav")
    assert rate == 16000
    return np.resize(samples, int(seconds * 16000))


@pytest.mark.parametrize(("seconds", "audio_tokens"), [(0.5, 375), (4.0, 375), (30.0, 375), (31.0, 750)])
def test_audio_tokens_cover_the_utterance_in_30_s_windows(builder: PromptBuilder, seconds: float,
                                                         audio_tokens: int) -> None:
    inputs = builder.chat(speech(seconds), [], "", 4096)
    assert inputs.audio_tokens == audio_tokens
    start = inputs.tokens.index(BEGIN_AUDIO_ID)
    assert inputs.tokens[start + 1 : start + 1 + audio_tokens] == [AUDIO_TOKEN_ID] * audio_tokens
    assert inputs.features is not None and inputs.features.shape == (audio_tokens // 375, 128, 3000)


def test_history_in_order_then_audio_then_instructions(builder: PromptBuilder) -> None:
    history = [Turn("user", "What is the capital of France?"), Turn("assistant", "Paris."),
               Turn("user", "And of Spain?"), Turn("assistant", "Madrid.")]
    inputs = builder.chat(speech(2.0), history, "Answer briefly.", 4096)
    text = builder.tokenizer.decode(inputs.tokens, special_token_policy=_keep())
    order = [text.index(s) for s in ("What is the capital of France?", "Paris.", "And of Spain?", "Madrid.",
                                     "[BEGIN_AUDIO]", "Answer briefly.")]
    assert order == sorted(order)
    assert text.startswith("<s>[INST]What is the capital of France?[/INST]Paris.</s>[INST]")
    assert text.endswith("Answer briefly.[/INST]")


def test_history_is_normalised_to_alternating_turns() -> None:
    turns = normalise_history([Turn("assistant", "ignored first"), Turn("user", "a"), Turn("user", "b"),
                               Turn("assistant", ""), Turn("assistant", "c"), Turn("system", "dropped")])
    assert turns == [Turn("user", "a b"), Turn("assistant", "c")]


def test_oldest_exchanges_go_first_when_the_prompt_is_too_long(builder: PromptBuilder) -> None:
    history = [Turn("user" if i % 2 == 0 else "assistant", f"turn number {i} " + "word " * 40) for i in range(10)]
    full = builder.chat(speech(1.0), history, "", 8192)
    limited = builder.chat(speech(1.0), history, "", len(full.tokens) - 50)
    assert limited.dropped_turns >= 1 and len(limited.tokens) <= len(full.tokens) - 50
    text = builder.tokenizer.decode(limited.tokens, special_token_policy=_keep())
    assert "turn number 9" in text and "turn number 0" not in text
    with pytest.raises(InvalidArgument, match="the context holds 100"):
        builder.chat(speech(1.0), [], "", 100)


def test_a_huge_history_costs_no_more_than_a_full_context(builder: PromptBuilder,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    history = [Turn("user" if i % 2 == 0 else "assistant", f"turn {i} " + "word " * 8) for i in range(20_000)]
    assert sum(len(t.text) for t in history) > 800_000
    encoded_chars: list[int] = []
    encode = builder.tokenizer.encode_chat_completion

    def counting(request):  # the text each encoding had to tokenise
        encoded_chars.append(sum(len(m.content) if isinstance(m.content, str) else
                                 sum(len(getattr(c, "text", "")) for c in m.content) for m in request.messages))
        return encode(request)

    monkeypatch.setattr(builder.tokenizer, "encode_chat_completion", counting)
    inputs = builder.chat(speech(1.0), history, "", 2048)
    assert len(inputs.tokens) <= 2048 and inputs.dropped_turns > 19_000
    assert len(encoded_chars) <= 16  # a binary search over what fits, not one encoding per dropped turn
    assert max(encoded_chars) <= 2048 * CHARS_PER_TOKEN * 2  # only what could fit is ever tokenised
    text = builder.tokenizer.decode(inputs.tokens, special_token_policy=_keep())
    assert "turn 19999" in text or "turn 19998" in text


def test_transcription_request_ends_with_the_language_and_transcribe(builder: PromptBuilder) -> None:
    inputs = builder.transcription(speech(3.0), "fr")
    assert inputs.tokens[-1] == TRANSCRIBE_ID and inputs.audio_tokens == 375
    assert builder.tokenizer.decode(inputs.tokens, special_token_policy=_keep()).endswith("lang:fr[TRANSCRIBE]")


def test_generation_bounds() -> None:
    defaults = GenerationParams.defaults(VoxtralSettings())
    assert defaults == GenerationParams(25, 2, 0.05, 0.9, 30, 1.2)  # the seed's values
    assert defaults.generate_kwargs()["do_sample"] is True
    greedy = defaults.override(512, temperature=0.0).generate_kwargs()
    assert greedy["do_sample"] is False and greedy["top_k"] is None
    with pytest.raises(InvalidArgument, match=r"max_new_tokens=600 \(use 1 to 512\).*top_p=0"):
        defaults.override(512, max_new_tokens=600, top_p=0.0)
    with pytest.raises(InvalidArgument, match="min_new_tokens=30"):
        defaults.override(512, min_new_tokens=30)


def _keep():
    from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy

    return SpecialTokenPolicy.KEEP
