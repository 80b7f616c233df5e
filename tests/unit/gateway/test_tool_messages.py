"""Tools on the wire: the gRPC messages and the WebSocket JSON (the proto's) to the engine's inputs
and events, and back."""

from __future__ import annotations

import json

from services.common.tools import ToolCall
from services.gateway.engine.events import ToolCalled
from services.gateway.engine.inputs import ToolResult, Update
from services.gateway.messages import session_request, to_input
from services.gateway.web import event_json, read_frame
from voice.v1 import gateway_pb2, voxtral_pb2

CLOCK = voxtral_pb2.Tool(name="get_time", description="The time", parameters_json='{"type": "object"}')


def test_tools_declared_in_the_session_config() -> None:
    request = session_request(gateway_pb2.SessionConfig(input_sample_rate_hz=16000, tools=[CLOCK]))
    assert request.tools == (("get_time", "The time", '{"type": "object"}'),)


def test_a_tool_result_and_an_update_are_inputs() -> None:
    result = to_input(gateway_pb2.ConverseRequest(tool_result=gateway_pb2.ToolResult(call_id="abc123XYZ",
                                                                                       output="10:42")))
    assert result == ToolResult("abc123XYZ", "10:42")
    kept = to_input(gateway_pb2.ConverseRequest(update=gateway_pb2.SessionUpdate(voice="bf_emma")))
    assert kept == Update(voice="bf_emma")  # tools untouched unless replaced
    cleared = to_input(gateway_pb2.ConverseRequest(update=gateway_pb2.SessionUpdate(replace_tools=True)))
    assert cleared == Update(tools=())


def test_the_websocket_speaks_the_same_json() -> None:
    frame = read_frame(json.dumps({"tool_result": {"call_id": "abc123XYZ", "output": "{\"time\": \"10:42\"}"}}))
    assert frame == ToolResult("abc123XYZ", '{"time": "10:42"}')
    event = event_json(ToolCalled("t1", (ToolCall("abc123XYZ", "get_time", {"city": "Paris"}),)))
    assert event["type"] == "tool_called" and event["turn_id"] == "t1"
    assert event["calls"] == [{"id": "abc123XYZ", "name": "get_time", "arguments_json": '{"city":"Paris"}'}]
