"""User items a Realtime client creates or commits, and what response.create then answers: the
committed audio (manual turns) or the typed text messages since the last response."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from services.gateway.engine.inputs import Commit, Input, ToolResult, UserText, check_text, check_tool_result
from services.gateway.realtime.formats import ClientError

# A client's own item id (GA keeps it): word characters and dashes, at most this long.
ITEM_ID = re.compile(r"[\w-]{1,64}")


def new_item_id() -> str:
    return "item_" + secrets.token_hex(12)


@dataclass(frozen=True)
class UserMessage:
    """A checked conversation.item.create: its audio parts (base64, undecoded) or its text."""

    audio: list[Any]
    text: str
    item_id: str = ""  # the client's, when it named one


def user_message(item: Any) -> UserMessage:
    """ClientError naming the field, unless `item` is a user message of audio parts or of text parts."""
    if not isinstance(item, dict) or item.get("type", "message") != "message" or item.get("role") != "user":
        raise ClientError("only user messages can be created (item.type message, item.role user)", "item")
    item_id = item.get("id", "")
    if item_id != "" and not (isinstance(item_id, str) and ITEM_ID.fullmatch(item_id)):
        raise ClientError("item.id must be up to 64 letters, digits, _ or -", "item.id")
    content = item.get("content")
    if not isinstance(content, list) or not content:
        raise ClientError("item.content must be a list of input_audio or input_text parts", "item.content")
    kinds = set()
    for n, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("input_audio", "input_text"):
            raise ClientError(f"item.content[{n}].type must be input_audio or input_text (images and files are "
                              "not read here)", f"item.content[{n}].type")
        if kind == "input_text" and not isinstance(part.get("text"), str):
            raise ClientError(f"item.content[{n}].text must be a string", f"item.content[{n}].text")
        kinds.add(kind)
    if len(kinds) > 1:
        raise ClientError("a message is audio or text, not both: create one item of each", "item.content")
    if kinds == {"input_audio"}:
        return UserMessage([part.get("audio") for part in content], "", item_id)
    text = "\n".join(part["text"] for part in content)
    problem = check_text(UserText(text))
    if problem:
        raise ClientError(problem, "item.content")
    return UserMessage([], text, item_id)


@dataclass(frozen=True)
class FunctionOutput:
    """A checked function_call_output item: the result of the model's call `call_id`."""

    item_id: str
    call_id: str
    output: str


def function_output(item: dict[str, Any]) -> FunctionOutput:
    """ClientError naming the field, unless `item` is a function_call_output with a call id and a string output."""
    unknown = sorted(set(item) - {"type", "id", "object", "call_id", "output", "status"})
    if unknown:
        raise ClientError(f"item.{unknown[0]} is not supported in a function_call_output", f"item.{unknown[0]}")
    item_id = item.get("id") or new_item_id()
    if not (isinstance(item_id, str) and ITEM_ID.fullmatch(item_id)):
        raise ClientError("item.id must be up to 64 letters, digits, _ or -", "item.id")
    call_id, output = item.get("call_id"), item.get("output")
    if not isinstance(call_id, str) or not call_id:
        raise ClientError("item.call_id must name the function call it answers", "item.call_id")
    if not isinstance(output, str):
        raise ClientError("item.output must be a string (JSON is usual)", "item.output")
    problem = check_tool_result(ToolResult(call_id, output))
    if problem:
        raise ClientError(problem.replace("tool_result.", "item."), "item.output")
    return FunctionOutput(item_id, call_id, output)


@dataclass
class Pending:
    """What waits for response.create: a committed audio item, or typed messages (their ids, texts)."""

    commit: bool = False
    texts: list[tuple[str, str]] = field(default_factory=list)

    def add_text(self, item_id: str, text: str) -> None:
        if self.commit:
            raise ClientError("committed audio waits for response.create: ask for its response before typing",
                              "item", code="conversation_already_has_pending_audio")
        joined = "\n".join([*(t for _, t in self.texts), text])
        problem = check_text(UserText(joined))
        if problem:
            raise ClientError(f"the messages waiting for a response: {problem}", "item.content")
        self.texts.append((item_id, text))

    def add_commit(self) -> None:
        if self.texts:
            raise ClientError("typed messages wait for response.create: ask for their response before committing "
                              "audio", code="conversation_already_has_pending_text")
        self.commit = True

    def clear(self) -> None:
        self.commit, self.texts = False, []

    def respond(self) -> tuple[Input, str | None]:
        """The engine input that answers what waits, and the user item the reply answers (the last
        typed one; None for a commit, whose item is known already)."""
        if self.texts:
            item, text = self.texts[-1][0], "\n".join(t for _, t in self.texts)
            self.clear()
            return UserText(text), item
        if self.commit:
            self.clear()
            return Commit(), None
        raise ClientError("nothing to respond to: commit audio (input_audio_buffer.commit) or create a user text "
                          "message first", code="input_audio_buffer_commit_empty")
