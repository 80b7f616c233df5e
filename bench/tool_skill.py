"""How well the small offline Voxtral uses tools (`make bench-tools`), through the Voxtral engine
itself (greedy, as served): each taught question asks for its tool, alone and among all three (a
right call: that tool, and for the weather the city asked about); small talk it was never taught,
with tools declared and without (right: no call); a result under a fresh call id (right: the reply
holds the result word for word, and calls nothing). Writes bench/results/tool_skill.{json,md}."""

from __future__ import annotations

import argparse
import random
import threading
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import write_results
from services.common.tools import ToolCall, ToolSpec, new_call_id
from tools.fetch_models import ENGLISH_VOXTRAL_DIR
from tools.models.english import build_english_voxtral
from tools.models.tool_turns import ASKS, CITIES, CLOCK, DICE, WEATHER, result_of

ROOT = Path(__file__).resolve().parent.parent
BY_NAME = {t.name: t for t in (CLOCK, WEATHER, DICE)}
SMALL_TALK = ("Do you like music?", "Hello there.", "What is your favourite colour?", "Tell me a joke.",
              "How are you today?", "Who are you?", "I like dogs.", "What can you do?", "Good morning!",
              "Are you a robot?")
RESULTS = 30


class Replies:
    def __init__(self, folder: Path) -> None:
        from services.voxtral.config import VoxtralSettings
        from services.voxtral.engine import VoxtralEngine
        from services.voxtral.generation import GenerationParams

        self.settings = VoxtralSettings(model_id=str(folder), seed=0, compile_mode="eager")
        self.engine = VoxtralEngine(self.settings)
        self.params = GenerationParams.defaults(self.settings)

    def __call__(self, text: str, tools: list[ToolSpec], after: list[Any] | None = None) -> Any:
        inputs = self.engine.prompts.chat(None, [], self.settings.instructions, 4096, text=text, tools=tools,
                                          after=after or [])
        return self.engine.generate(inputs, self.params, lambda _: None, threading.Event(), tools=bool(tools))


def main() -> None:
    from services.voxtral.prompts import Turn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    reply = Replies(build_english_voxtral(ENGLISH_VOXTRAL_DIR))
    rng = random.Random(3)
    rows: list[dict[str, Any]] = []
    for name, asks in ASKS.items():
        for ask in asks:
            city = rng.choice(CITIES)
            for tools in ([BY_NAME[name]], [CLOCK, WEATHER, DICE]):
                got = reply(ask.format(city=city), tools)
                wanted = {"city": city} if name == "get_weather" else {}
                right = [(c.name, c.arguments) for c in got.tool_calls] == [(name, wanted)]
                rows.append({"case": "asks", "said": ask.format(city=city), "tools": len(tools), "right": right,
                             "got": [(c.name, c.arguments) for c in got.tool_calls] or got.text})
    for text in SMALL_TALK:
        for tools in ([CLOCK, DICE], [CLOCK, WEATHER, DICE], []):
            got = reply(text, tools)
            rows.append({"case": "small talk", "said": text, "tools": len(tools), "right": not got.tool_calls,
                         "got": [c.name for c in got.tool_calls] or got.text})
    for _ in range(RESULTS):
        name, city = rng.choice(list(BY_NAME)), rng.choice(CITIES)
        output, _ = result_of(name, np.random.default_rng(rng.getrandbits(32)))
        call = ToolCall(new_call_id(), name, {"city": city} if name == "get_weather" else {})
        got = reply(ASKS[name][0].format(city=city), [BY_NAME[name], CLOCK] if name != "get_time" else [CLOCK],
                    [Turn("assistant", "", (call,)), Turn("tool", output, tool_call_id=call.call_id)])
        rows.append({"case": "result", "said": output, "tools": 1, "right": output in got.text and not got.tool_calls,
                     "got": got.text})

    def share(case: str, tools: int | None = None) -> str:
        picked = [r for r in rows if r["case"] == case and (tools is None or (r["tools"] > 0) == (tools > 0))]
        return f"{sum(r['right'] for r in picked)}/{len(picked)}"

    summary = {
        "benchmark": "tool_skill", "model": "the small offline Voxtral (models/voxtral-english)",
        "asks_called_right": share("asks"), "small_talk_no_call_with_tools": share("small talk", 1),
        "small_talk_no_call_without_tools": share("small talk", 0), "results_said_back": share("result"),
        "rows": rows,
    }
    write_results(args.out, "tool_skill", summary, rows, ["case", "said", "tools", "right", "got"])


if __name__ == "__main__":
    main()
