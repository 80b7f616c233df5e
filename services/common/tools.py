"""Functions a client lets the model call (the OpenAI function shape: name, description, JSON-Schema
parameters) and the calls the model makes: checked once here, by the gateway when a session
declares them and by the Voxtral service when a request carries them."""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from services.common.errors import InvalidArgument, echo

# A session's tools: how many, and the size of each part (a declaration rides in every prompt).
MAX_TOOLS = 32
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # as OpenAI's function names
MAX_DESCRIPTION_CHARS = 1024
MAX_PARAMETERS_BYTES = 16 * 1024
MAX_PARAMETERS_DEPTH = 8
# A call's arguments as the model wrote them, and a tool's result as the client returns it.
MAX_ARGUMENTS_BYTES = 16 * 1024
MAX_RESULT_CHARS = 8000
# A call's id as Voxtral's prompt format takes it (mistral-common: nine letters or digits).
CALL_ID = re.compile(r"^[A-Za-z0-9]{9}$")


def new_call_id() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(9))


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]  # a JSON Schema of an object

    def as_json(self) -> str:
        return json.dumps(self.parameters, separators=(",", ":"))


@dataclass(frozen=True)
class ToolCall:
    call_id: str
    name: str
    arguments: dict[str, Any]

    def arguments_json(self) -> str:
        return json.dumps(self.arguments, separators=(",", ":"))


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def check_tool(index: int, name: str, description: str, parameters_json: str) -> ToolSpec:
    """One declaration, or INVALID_ARGUMENT naming the field (`tools[i].name` and so on)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    where = f"tools[{index}]"
    if not NAME.match(name):
        raise InvalidArgument(f"{where}.name={echo(name)} is not a function name: 1 to 64 letters, digits, _ or -")
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidArgument(f"{where}.description has {len(description)} characters; the limit is "
                              f"{MAX_DESCRIPTION_CHARS}")
    if len(parameters_json.encode()) > MAX_PARAMETERS_BYTES:
        raise InvalidArgument(f"{where}.parameters is {len(parameters_json.encode())} bytes of JSON; the limit is "
                              f"{MAX_PARAMETERS_BYTES}")
    try:
        parameters = json.loads(parameters_json) if parameters_json.strip() else {"type": "object", "properties": {}}
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{where}.parameters is not JSON: {exc}") from None
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        raise InvalidArgument(f"{where}.parameters must be a JSON Schema of an object ({{\"type\": \"object\", ...}})")
    if depth(parameters) > MAX_PARAMETERS_DEPTH:
        raise InvalidArgument(f"{where}.parameters nests {depth(parameters)} levels deep; the limit is "
                              f"{MAX_PARAMETERS_DEPTH}")
    try:
        Draft202012Validator.check_schema(parameters)
    except SchemaError as exc:
        raise InvalidArgument(f"{where}.parameters is no valid JSON Schema: {exc.message}") from None
    return ToolSpec(name, description, {"type": "object", **parameters})


def check_tools(declared: Sequence[tuple[str, str, str]]) -> list[ToolSpec]:
    """(name, description, parameters as JSON) per tool: checked, names unique."""
    if len(declared) > MAX_TOOLS:
        raise InvalidArgument(f"{len(declared)} tools declared; the limit is {MAX_TOOLS}")
    tools = [check_tool(i, *spec) for i, spec in enumerate(declared)]
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InvalidArgument(f"tool names must be unique: {', '.join(twice)} declared more than once")
    return tools


def check_call(call: ToolCall, tools: Sequence[ToolSpec]) -> str:
    """Why the model's call does not fit the declared tools ("" when it does)."""
    from jsonschema import Draft202012Validator

    spec = next((t for t in tools if t.name == call.name), None)
    if spec is None:
        return f"the model called {echo(call.name)}, which is not a declared tool"
    if len(call.arguments_json().encode()) > MAX_ARGUMENTS_BYTES:
        return f"the arguments of {call.name} are over {MAX_ARGUMENTS_BYTES} bytes"
    error = next(iter(Draft202012Validator(spec.parameters).iter_errors(call.arguments)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(the arguments)"
        return f"the arguments of {call.name} do not fit its parameters at {where}: {error.message}"
    return ""


class ToolTurn(Protocol):
    """A conversation turn as far as calls go (the gateway's HistoryTurn, Voxtral's Turn)."""

    @property
    def role(self) -> str: ...
    @property
    def tool_calls(self) -> tuple[ToolCall, ...]: ...
    @property
    def tool_call_id(self) -> str: ...


T = TypeVar("T", bound=ToolTurn)


def answered(turns: Sequence[T]) -> list[T]:
    """The turns less any call whose results do not all follow it, and less results of no call kept:
    mistral-common refuses an unanswered call, so one cut short is neither kept nor prompted."""
    kept: list[T] = []
    for n, turn in enumerate(turns):
        if turn.tool_calls:
            results = {t.tool_call_id for t in turns[n + 1:] if t.role == "tool"}
            if not {c.call_id for c in turn.tool_calls} <= results:
                continue
        if turn.role == "tool" and not any(c.call_id == turn.tool_call_id for t in kept for c in t.tool_calls):
            continue
        kept.append(turn)
    return kept
