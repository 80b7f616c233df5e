"""Tools in Voxtral's prompt and the model's calls read back, with the real Tekken tokenizer the
service loads (mistral-common encodes and reads both; nothing here writes the format by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy

from services.common.tools import CALL_ID, ToolCall, check_tools
from services.voxtral.engine import _DeltaStreamer
from services.voxtral.prompts import PromptBuilder, Turn
from tools.models.tiny import AUDIO_TOKEN_ID

CLOCK = check_tools([("get_time", "The time now in a city", json.dumps(
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}))])


@pytest.fixture(scope="module")
def builder(tiny_voxtral: Path) -> PromptBuilder:
    from transformers import AutoProcessor

    return PromptBuilder(AutoProcessor.from_pretrained(tiny_voxtral), AUDIO_TOKEN_ID)


def text_of(builder: PromptBuilder, tokens: list[int]) -> str:
    return builder.tokenizer.decode(tokens, special_token_policy=SpecialTokenPolicy.KEEP)


def generated(builder: PromptBuilder, text: str) -> list[int]:
    """Tokens as the model would write them: the [TOOL_CALLS] control token, then `text`."""
    raw = builder.tokenizer.instruct_tokenizer.tokenizer
    return [builder.tool_token, *raw.encode(text, bos=False, eos=False)]


def test_declared_tools_and_a_finished_call_are_in_the_prompt_in_order(builder: PromptBuilder) -> None:
    call = ToolCall("abc123XYZ", "get_time", {"city": "Paris"})
    after = [Turn("assistant", "", (call,)), Turn("tool", '{"time": "10:42"}', tool_call_id=call.call_id)]
    inputs = builder.chat(None, [], "", 4096, text="What time is it in Paris?", tools=CLOCK, after=after)
    text = text_of(builder, inputs.tokens)
    order = [text.index(s) for s in ("[AVAILABLE_TOOLS]", '"name": "get_time"', "What time is it in Paris?",
                                     "[TOOL_CALLS]", '"city": "Paris"', "[TOOL_RESULTS]", "10:42")]
    assert order == sorted(order)


def test_earlier_calls_stay_in_the_history(builder: PromptBuilder) -> None:
    call = ToolCall("abc123XYZ", "get_time", {"city": "Rome"})
    history = [Turn("user", "Time in Rome?"), Turn("assistant", "", (call,)),
               Turn("tool", "09:15", tool_call_id=call.call_id), Turn("assistant", "It is a quarter past nine.")]
    text = text_of(builder, builder.chat(None, history, "", 4096, text="Thanks!", tools=CLOCK).tokens)
    order = [text.index(s) for s in ("Time in Rome?", "[TOOL_CALLS]", "09:15", "a quarter past nine", "Thanks!")]
    assert order == sorted(order)


def test_a_call_the_model_writes_is_read_and_never_handed_on_as_text(builder: PromptBuilder) -> None:
    said: list[str] = []
    streamer = _DeltaStreamer(builder, said.append, set(), builder.tool_token)
    streamer.put(torch.tensor([[1, 2, 3]]))  # the prompt comes first
    tokens = builder.tokenizer.instruct_tokenizer.tokenizer.encode("Let me check. ", bos=False, eos=False)
    tokens += generated(builder, '[{"name": "get_time", "arguments": {"city": "Paris"}}]')
    for token in tokens:
        streamer.put(torch.tensor([token]))
    streamer.end()
    assert "".join(said) == "Let me check. " and "get_time" not in streamer.text
    calls, error = builder.tool_calls(streamer.calls)
    assert error == "" and [(c.name, c.arguments) for c in calls] == [("get_time", {"city": "Paris"})]
    assert CALL_ID.match(calls[0].call_id)


def test_several_calls_in_one_reply(builder: PromptBuilder) -> None:
    calls, error = builder.tool_calls(generated(builder, '[{"name": "get_time", "arguments": {"city": "Paris"}}, '
                                                         '{"name": "get_time", "arguments": {"city": "Rome"}}]'))
    assert error == "" and [c.arguments["city"] for c in calls] == ["Paris", "Rome"]
    assert len({c.call_id for c in calls}) == 2


@pytest.mark.parametrize("written", ['[{"name": "get_time", "arguments": {"city": "Par', "not json at all",
                                     '{"name": "get_time"}', '[{"name": "get_time", "arguments": "Paris"}]', "[]"])
def test_a_malformed_call_is_an_error_not_a_crash(builder: PromptBuilder, written: str) -> None:
    calls, error = builder.tool_calls(generated(builder, written))
    assert calls == [] and error


def test_without_tools_the_tool_token_is_text_as_before(builder: PromptBuilder) -> None:
    said: list[str] = []
    streamer = _DeltaStreamer(builder, said.append, set())
    streamer.put(np.array([1]))
    for token in generated(builder, "Hello"):
        streamer.put(torch.tensor([token]))
    streamer.end()
    assert "Hello" in "".join(said) and not streamer.calls


def test_a_call_left_unanswered_in_the_history_is_left_out(builder: PromptBuilder) -> None:
    call = ToolCall("abc123XYZ", "get_time", {"city": "Rome"})
    history = [Turn("user", "Time in Rome?"), Turn("assistant", "", (call,)), Turn("assistant", "Let me"),
               Turn("tool", "stray", tool_call_id="zzz999zzz")]
    text = text_of(builder, builder.chat(None, history, "", 4096, text="Hello?", tools=CLOCK).tokens)
    assert "[TOOL_CALLS]" not in text and "stray" not in text and "Let me" in text
