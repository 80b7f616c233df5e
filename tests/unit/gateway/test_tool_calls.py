"""A reply that calls a client tool, on the fake stages: it says what it had to say, asks the client
(tool_called), waits for the result and goes on with it; a result that never comes, a barge-in, a
client that leaves, a call the model got wrong and a model that calls on and on each end the reply
cleanly, and the session goes on."""

from __future__ import annotations

import asyncio
import json

import pytest

from services.common.errors import InvalidArgument, Status
from services.common.tools import ToolCall
from services.gateway.engine.events import (
    ErrorEvent,
    Interrupted,
    ResponseText,
    SessionStarted,
    ToolCalled,
    TurnCompleted,
    TurnEnded,
)
from services.gateway.engine.inputs import SessionRequest, ToolResult, Update, UserText
from services.gateway.engine.vocabulary import BargeInMode, Stage, TurnOutcome
from tests.support.engine_client import RATE, Client, engine, talks
from tests.support.fake_stages import FakeStages

CLOCK = ("get_time", "The time now in a city",
         json.dumps({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}))
PARIS = ToolCall("call00001", "get_time", {"city": "Paris"})
ROME = ToolCall("call00002", "get_time", {"city": "Rome"})


def session(stages: FakeStages, *rounds: tuple[ToolCall, ...] | str, barge_in: BargeInMode | None = None,
            **settings: float) -> Client:
    stages.tool_rounds = list(rounds)
    return Client(engine(stages, None, None, **settings), SessionRequest(RATE, tools=(CLOCK,), barge_in=barge_in))


def responds(stages: FakeStages) -> list[dict]:
    return [c.args for c in stages.of(Stage.VOXTRAL, "respond")]


async def test_a_call_is_asked_for_and_the_reply_goes_on_with_its_result(stages: FakeStages) -> None:
    client = session(stages, (PARIS,))
    client.send(UserText("What time is it in Paris?"))
    called = await client.wait_for(ToolCalled)
    assert called.calls == (PARIS,)
    client.send(ToolResult(PARIS.call_id, '{"time": "10:50"}'))
    done = await client.wait_for(TurnCompleted)
    await client.end()
    assert done.heard_text == "Let me look. It is ten to eleven."
    first, second = responds(stages)
    assert first["tools"] == ["get_time"] and first["after"] == []
    assert [(t.role, t.tool_calls, t.tool_call_id, t.text) for t in second["after"]] == [
        ("assistant", (PARIS,), "", ""), ("tool", (), PARIS.call_id, '{"time": "10:50"}')]
    said = "".join(e.delta for e in client.of(ResponseText))
    assert "get_time" not in said and not client.of(ErrorEvent)


async def test_the_calls_and_results_are_kept_with_the_exchange_for_later_replies(stages: FakeStages) -> None:
    client = session(stages, (PARIS,))
    client.send(UserText("What time is it in Paris?"))
    await client.wait_for(ToolCalled)
    client.send(ToolResult(PARIS.call_id, "10:50"))
    await client.wait_for(TurnCompleted)
    client.send(UserText("Thanks!"))
    await client.wait_for(TurnCompleted, 2)
    await client.end()
    later = stages.histories[-1]
    assert [(t.role, t.text, t.tool_calls) for t in later] == [
        ("user", "What time is it in Paris?", ()), ("assistant", "", (PARIS,)), ("tool", "10:50", ()),
        ("assistant", "Let me look. It is ten to eleven.", ())]
    session_id = client.of(SessionStarted)[0].session_id
    kept = await client.engine.store.context(session_id)
    assert kept[0].tools[0]["calls"][0]["arguments"] == {"city": "Paris"}


async def test_several_calls_in_one_round_wait_for_every_result(stages: FakeStages) -> None:
    client = session(stages, (PARIS, ROME))
    client.send(UserText("Paris and Rome?"))
    assert (await client.wait_for(ToolCalled)).calls == (PARIS, ROME)  # asked for together
    client.send(ToolResult(ROME.call_id, "09:50"))  # answered in any order
    await asyncio.sleep(0.05)
    assert not client.of(TurnCompleted)
    client.send(ToolResult(PARIS.call_id, "10:50"))
    await client.wait_for(TurnCompleted)
    await client.end()
    after = responds(stages)[1]["after"]
    assert [t.text for t in after[1:]] == ["10:50", "09:50"]  # the results in call order


async def test_a_reply_may_call_again_after_a_result(stages: FakeStages) -> None:
    client = session(stages, (PARIS,), (ROME,))
    client.send(UserText("Paris, then Rome?"))
    await client.wait_for(ToolCalled)
    client.send(ToolResult(PARIS.call_id, "10:50"))
    await client.wait_for(ToolCalled, 2)
    client.send(ToolResult(ROME.call_id, "09:50"))
    await client.wait_for(TurnCompleted)
    await client.end()
    assert len(responds(stages)[2]["after"]) == 4


async def test_a_result_that_never_comes_ends_the_reply_and_the_session_goes_on(stages: FakeStages) -> None:
    client = session(stages, (PARIS,), tool_timeout_s=0.2)
    client.send(UserText("What time is it in Paris?"))
    ended = await client.wait_for(TurnEnded)
    assert ended.outcome is TurnOutcome.FAILED and ended.reason == "tool get_time gave no result within 0.2 s"
    error = client.of(ErrorEvent)[0]
    assert error.code is Status.DEADLINE_EXCEEDED and error.session_continues
    client.send(ToolResult(PARIS.call_id, "10:50"))  # too late: dropped, no error
    client.send(UserText("Never mind."))
    await client.wait_for(TurnCompleted)
    await client.end()
    assert len(client.of(ErrorEvent)) == 1


async def test_talking_over_the_wait_ends_the_reply_and_a_late_result_is_dropped(stages: FakeStages) -> None:
    client = session(stages, (PARIS,), barge_in=BargeInMode.CANCEL)
    client.send(UserText("What time is it in Paris?"))
    await client.wait_for(ToolCalled)
    await talks(client, stages, 300)
    stopped = await client.wait_for(Interrupted)
    client.send(ToolResult(PARIS.call_id, "10:50"))
    await asyncio.sleep(0.05)
    await client.end()
    assert stopped.turn_id == client.of(ToolCalled)[0].turn_id and not client.of(ErrorEvent)
    assert len(responds(stages)) == 1
    session_id = client.of(SessionStarted)[0].session_id
    kept = await client.engine.store.context(session_id)
    assert kept[0].tools == []  # a call cut short is not kept: it could not be put back in a prompt


async def test_the_end_of_input_during_the_wait_ends_the_reply_at_once(stages: FakeStages) -> None:
    client = session(stages, (PARIS,))
    client.send(UserText("What time is it in Paris?"))
    await client.wait_for(ToolCalled)
    await client.end()  # no result can come now
    ended = client.of(TurnEnded)[0]
    assert ended.outcome is TurnOutcome.FAILED and "before tool get_time gave its result" in ended.reason


async def test_a_client_that_vanishes_during_the_wait_leaves_nothing_running(stages: FakeStages) -> None:
    client = session(stages, (PARIS,))
    client.send(UserText("What time is it in Paris?"))
    await client.wait_for(ToolCalled)
    client.send(None)  # type: ignore[arg-type]  # the stream just ends: the connection is gone
    await asyncio.wait_for(client.task, 5)
    assert not client.task.exception()


async def test_a_call_the_model_got_wrong_is_an_error_and_the_session_goes_on(stages: FakeStages) -> None:
    client = session(stages, "the arguments of get_time do not fit its parameters at city: 3 is not a string")
    client.send(UserText("What time is it?"))
    ended = await client.wait_for(TurnEnded)
    assert ended.outcome is TurnOutcome.FAILED and "do not fit its parameters" in ended.reason
    assert client.of(ErrorEvent)[0].code is Status.INTERNAL and not client.of(ToolCalled)
    client.send(UserText("Hello?"))
    await client.wait_for(TurnCompleted)
    await client.end()


async def test_a_model_that_calls_on_and_on_is_stopped(stages: FakeStages) -> None:
    client = session(stages, (PARIS,), (ROME,), max_tool_rounds=1)
    client.send(UserText("Paris, then Rome?"))
    await client.wait_for(ToolCalled)
    client.send(ToolResult(PARIS.call_id, "10:50"))
    ended = await client.wait_for(TurnEnded)
    await client.end()
    assert ended.outcome is TurnOutcome.FAILED and "the limit is 1" in ended.reason and len(client.of(ToolCalled)) == 1


async def test_a_slow_tool_gets_the_filler_said_once(stages: FakeStages) -> None:
    client = session(stages, (PARIS,), tool_filler_after_ms=50)
    client.send(UserText("What time is it in Paris?"))
    await client.wait_for(ToolCalled)
    await asyncio.sleep(0.3)
    client.send(ToolResult(PARIS.call_id, "10:50"))
    done = await client.wait_for(TurnCompleted)
    await client.end()
    spoken = [c.args["text"] for c in stages.of(Stage.TTS, "synthesize")]
    assert spoken.count("One moment.") == 1 and "One moment." in done.heard_text


async def test_a_quick_tool_gets_no_filler(stages: FakeStages) -> None:
    client = session(stages, (PARIS,), tool_filler_after_ms=5000)
    client.send(UserText("What time is it in Paris?"))
    await client.wait_for(ToolCalled)
    client.send(ToolResult(PARIS.call_id, "10:50"))
    await client.wait_for(TurnCompleted)
    await client.end()
    assert "One moment." not in [c.args["text"] for c in stages.of(Stage.TTS, "synthesize")]


@pytest.mark.parametrize(("result", "message"), [
    (ToolResult("nobody123", "10:50"), "names no call that a reply is waiting for"),
    (ToolResult("", "10:50"), "call_id is required"),
    (ToolResult(PARIS.call_id, "x" * 8001), "the limit is 8000"),
])
async def test_a_bad_result_is_an_error_and_the_wait_goes_on(stages: FakeStages, result: ToolResult,
                                                             message: str) -> None:
    client = session(stages, (PARIS,))
    client.send(UserText("What time is it in Paris?"))
    await client.wait_for(ToolCalled)
    client.send(result)
    error = await client.wait_for(ErrorEvent)
    client.send(ToolResult(PARIS.call_id, "10:50"))
    await client.wait_for(TurnCompleted)
    await client.end()
    assert error.code is Status.INVALID_ARGUMENT and message in error.message


async def test_tools_can_be_declared_later_and_taken_away(stages: FakeStages) -> None:
    stages.tool_rounds = [(PARIS,)]
    client = Client(engine(stages), SessionRequest(RATE))
    client.send(UserText("Hello"))
    await client.wait_for(TurnCompleted)
    client.send(Update(tools=(CLOCK,)))
    client.send(UserText("What time is it in Paris?"))
    await client.wait_for(ToolCalled)
    client.send(ToolResult(PARIS.call_id, "10:50"))
    await client.wait_for(TurnCompleted, 2)
    client.send(Update(tools=()))
    client.send(UserText("Bye"))
    await client.wait_for(TurnCompleted, 3)
    await client.end()
    assert [r["tools"] for r in responds(stages)] == [[], ["get_time"], ["get_time"], []]


async def test_a_bad_declaration_is_refused_at_the_start(stages: FakeStages) -> None:
    client = Client(engine(stages), SessionRequest(RATE, tools=(("get time", "", "{}"),)))
    with pytest.raises(InvalidArgument, match=r"tools\[0\]\.name"):
        await asyncio.wait_for(client.task, 5)
