"""Tool declarations and the model's calls, checked once (services/common/tools.py)."""

from __future__ import annotations

import json

import pytest

from services.common.errors import InvalidArgument
from services.common.tools import (
    MAX_PARAMETERS_BYTES,
    MAX_PARAMETERS_DEPTH,
    MAX_TOOLS,
    ToolCall,
    check_call,
    check_tools,
)

WEATHER = ("get_weather", "The weather in a city", json.dumps({
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
    "required": ["city"]}))


def nested(levels: int) -> str:
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return json.dumps(schema)


def test_a_good_declaration_is_kept_as_declared() -> None:
    [tool] = check_tools([WEATHER])
    assert tool.name == "get_weather" and tool.parameters["required"] == ["city"]
    [dice] = check_tools([("roll_dice", "", "")])  # no parameters: an object with none
    assert dice.parameters == {"type": "object", "properties": {}}


@pytest.mark.parametrize(("declared", "message"), [
    ([("get weather", "", "{}")], r"tools\[0\]\.name"),
    ([("x" * 65, "", "{}")], r"tools\[0\]\.name"),
    ([WEATHER, ("f", "d" * 1025, "{}")], r"tools\[1\]\.description has 1025 characters"),
    ([("f", "", "{not json")], r"tools\[0\]\.parameters is not JSON"),
    ([("f", "", '{"type": "string"}')], r"tools\[0\]\.parameters must be a JSON Schema of an object"),
    ([("f", "", '[1, 2]')], r"tools\[0\]\.parameters must be"),
    ([("f", "", '{"type": "object", "properties": {"a": {"type": "strnig"}}}')], r"no valid JSON Schema"),
    ([("f", "", nested(MAX_PARAMETERS_DEPTH))], r"nests \d+ levels deep"),
    ([("f", "", json.dumps({"type": "object", "description": "x" * MAX_PARAMETERS_BYTES}))], r"bytes of JSON"),
    ([("f", "", "{}"), ("f", "", "{}")], r"f declared more than once"),
    ([(f"f{i}", "", "{}") for i in range(MAX_TOOLS + 1)], rf"{MAX_TOOLS + 1} tools declared"),
])
def test_a_bad_declaration_is_refused_naming_the_field(declared: list[tuple[str, str, str]], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        check_tools(declared)


@pytest.mark.parametrize(("call", "why"), [
    (ToolCall("a" * 9, "get_weather", {"city": "Paris"}), ""),
    (ToolCall("a" * 9, "get_weather", {"city": "Paris", "days": 2}), ""),
    (ToolCall("a" * 9, "get_time", {}), "not a declared tool"),
    (ToolCall("a" * 9, "get_weather", {}), "'city' is a required property"),
    (ToolCall("a" * 9, "get_weather", {"city": "Paris", "days": 0}), "at days"),
    (ToolCall("a" * 9, "get_weather", {"city": "x" * 20000}), "over 16384 bytes"),
])
def test_a_call_is_checked_against_its_declaration(call: ToolCall, why: str) -> None:
    result = check_call(call, check_tools([WEATHER]))
    assert (why in result and bool(result)) if why else result == ""
