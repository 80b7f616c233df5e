"""Tools a client can offer the model, run in the client itself: the demo of `--tool` (the CLI) and
of the page. Each is declared as OpenAI declares a function and answers with a short text."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DemoTool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[dict[str, Any]], str]

    def declared(self) -> tuple[str, str, str]:
        return self.name, self.description, json.dumps(self.parameters)


def clock(_: dict[str, Any]) -> str:
    now = time.localtime()
    return f"{now.tm_hour % 12 or 12}:{now.tm_min:02d}"


def dice(_: dict[str, Any]) -> str:
    return str(random.randint(1, 6))


NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
DEMO_TOOLS = {
    "clock": DemoTool("get_time", "The current local time", NO_PARAMETERS, clock),
    "dice": DemoTool("roll_dice", "Roll a die and say what came up", NO_PARAMETERS, dice),
}
