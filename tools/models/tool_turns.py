"""What the small English Voxtral learns about tools: typed questions with tools declared, in the
production prompt (PromptBuilder, mistral-common's encoding), and what follows each. A question a
declared tool answers is followed by the call; a prompt that ends with the call's result by one
sentence that says the result; any other question, or one whose tool is not declared, by an
ordinary sentence. The calls' tokens are mistral-common's own encoding of the assistant message,
cut from a whole encoded conversation: nothing here writes the format by hand."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from clients.demo_tools import DEMO_TOOLS
from services.common.tools import ToolCall, ToolSpec, check_tools
from tools.models.corpus import user_lines

ANSWERS_PER_CALL = 4
# The id the calls are taught with: the service gives each call its own (the model's may repeat).
TRAINING_CALL_ID = "call00001"
ID_LETTERS = string.ascii_letters + string.digits
# A user's line that asks for what a demo tool does is not small talk.
ABOUT_THE_TOOLS = re.compile(r"\b(time|clock|hour|weather|rain|sunny|dice|die|roll)\b", re.IGNORECASE)

CITIES = ("Paris", "London", "Tokyo", "Rome", "Berlin", "Madrid", "Lisbon", "Vienna", "Dublin", "Oslo")
CONDITIONS = ("sunny", "cloudy", "rainy", "windy", "snowy", "foggy")
# The client's demo tools (clients/demo_tools.py) as declared, and one that takes an argument.
CLOCK, WEATHER, DICE = check_tools([
    DEMO_TOOLS["clock"].declared(),
    ("get_weather", "The weather now in a city", json.dumps(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})),
    DEMO_TOOLS["dice"].declared(),
])
ASKS: dict[str, tuple[str, ...]] = {
    "get_time": ("What time is it?", "What's the time?", "Can you tell me the time?", "What time is it now?",
                 "Do you know what time it is?", "Tell me the time, please."),
    "get_weather": ("What's the weather in {city}?", "How is the weather in {city} today?",
                    "Tell me the weather in {city}.", "Is it warm in {city} right now?"),
    "roll_dice": ("Roll a die.", "Roll a dice for me.", "Can you roll a die?", "Throw a die, please."),
}


@dataclass(frozen=True)
class ToolExample:
    """A prompt and the tokens the model is taught to write after it (ending in EOS)."""

    prompt: Any  # ModelInputs
    target: list[int]
    kind: str  # "call", "answer" (says a result) or "none" (an ordinary sentence)


def result_of(tool: str, rng: np.random.Generator) -> tuple[str, str]:
    """A tool's result as a client returns it, and the sentence that says it."""
    if tool == "get_time":
        time = f"{int(rng.integers(1, 13))}:{int(rng.integers(0, 60)):02d}"
        return time, f"It is {time}."
    if tool == "get_weather":
        condition, degrees = CONDITIONS[int(rng.integers(len(CONDITIONS)))], int(rng.integers(-5, 35))
        return f"{condition}, {degrees} degrees", f"It is {condition}, {degrees} degrees."
    rolled = str(int(rng.integers(1, 7)))
    return rolled, f"You rolled a {rolled}."


def call_id(rng: np.random.Generator) -> str:
    """An id like the service's own (new_call_id): the one a result follows is never the one taught."""
    return "".join(ID_LETTERS[int(n)] for n in rng.integers(len(ID_LETTERS), size=9))


def examples(builder: Any, instructions: str, corpus: list[str], encode: Callable[[str], list[int]], eos: int,
             rng: np.random.Generator, count: int) -> list[ToolExample]:
    """For each of `count` questions: the call, the sentence after each of ANSWERS_PER_CALL results (each
    under a fresh call id, with a fresh result), and three typed turns that get no call: a user's own
    line with tools declared, the question without its tool, and either with no tools at all."""
    from services.voxtral.prompts import Turn

    tools = (CLOCK, WEATHER, DICE)
    chat_lines = user_lines(ABOUT_THE_TOOLS)
    made: list[ToolExample] = []
    for n in range(count):
        spec = tools[n % len(tools)]
        offered = [spec, *(t for t in tools if t is not spec and rng.random() < 0.5)]
        offered = [offered[i] for i in rng.permutation(len(offered))]
        city = CITIES[int(rng.integers(len(CITIES)))]
        asks = ASKS[spec.name]
        question = asks[int(rng.integers(len(asks)))].format(city=city)
        arguments = {"city": city} if spec.name == "get_weather" else {}
        history = [Turn(role, corpus[int(rng.integers(len(corpus)))]) for _ in range(n % 2)
                   for role in ("user", "assistant")]
        asked = builder.chat(None, history, instructions, 4096, text=question, tools=offered)
        taught = ToolCall(TRAINING_CALL_ID, spec.name, arguments)
        answered = builder.chat(None, history, instructions, 4096, text=question, tools=offered, after=[
            Turn("assistant", "", (taught,)), Turn("tool", "", tool_call_id=taught.call_id)])
        end = answered.tokens.index(builder.tokenizer.instruct_tokenizer.tokenizer.get_special_token(
            "[TOOL_RESULTS]"), len(asked.tokens))
        made.append(ToolExample(asked, answered.tokens[len(asked.tokens):end], "call"))  # the call and its EOS
        for _ in range(ANSWERS_PER_CALL):
            call = ToolCall(call_id(rng), spec.name, arguments)
            output, sentence = result_of(spec.name, rng)
            after = builder.chat(None, history, instructions, 4096, text=question, tools=offered, after=[
                Turn("assistant", "", (call,)), Turn("tool", output, tool_call_id=call.call_id)])
            made.append(ToolExample(after, [*encode(sentence), eos], "answer"))
        chat = chat_lines[int(rng.integers(len(chat_lines)))]
        unrelated: list[ToolSpec] = [t for t in tools if t is not spec]
        for text, declared in ((chat, offered), (question, unrelated), (chat if n % 2 else question, [])):
            other = builder.chat(None, history, instructions, 4096, text=text, tools=declared)
            made.append(ToolExample(other, [*encode(corpus[int(rng.integers(len(corpus)))]), eos], "none"))
    return made
