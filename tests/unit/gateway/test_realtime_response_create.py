"""response.create's `response` object as GA clients send it (Pipecat always sends one): every GA
field accepted when its value has the GA type, an error naming the field otherwise."""

from __future__ import annotations

import pytest

from services.gateway.realtime.client_events import check_response
from services.gateway.realtime.formats import ClientError
from services.gateway.realtime.response_fields import BETA_RESPONSE_FIELDS

GA_RESPONSE = {
    "output_modalities": ["audio"], "instructions": "Be brief.", "conversation": "auto", "tool_choice": "auto",
    "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"}}, "tools": [],
    "max_output_tokens": "inf", "input": [], "metadata": {"topic": "x"}, "prompt": None,
}


@pytest.mark.parametrize("response", [None, {}, GA_RESPONSE, {"max_output_tokens": 200},
                                      {"output_modalities": ["audio", "text"]}, {"metadata": None}])
def test_a_ga_response_object_is_accepted(response: dict | None) -> None:
    check_response(response)


@pytest.mark.parametrize(("response", "param"), [
    ([], "response"),
    ({"output_modalities": ["video"]}, "response.output_modalities"),
    ({"instructions": 3}, "response.instructions"),
    ({"max_output_tokens": 0}, "response.max_output_tokens"),
    ({"max_output_tokens": True}, "response.max_output_tokens"),
    ({"temperature": 0.5}, "response.temperature"),
])
def test_a_value_of_the_wrong_type_is_an_error_naming_it(response: object, param: str) -> None:
    with pytest.raises(ClientError) as err:
        check_response(response)
    assert err.value.param == param


BETA_RESPONSE = {"modalities": ["audio", "text"], "instructions": "Be brief.", "voice": "alloy",
                 "output_audio_format": "pcm16", "temperature": 0.8, "max_response_output_tokens": 200,
                 "tools": [], "tool_choice": "auto", "conversation": "auto", "input": [], "metadata": None}


def test_a_beta_response_object_is_accepted_from_a_beta_client_and_checked_by_the_beta_types() -> None:
    check_response(BETA_RESPONSE, BETA_RESPONSE_FIELDS)
    with pytest.raises(ClientError) as err:
        check_response({"output_audio_format": "wav"}, BETA_RESPONSE_FIELDS)
    assert err.value.param == "response.output_audio_format"
    with pytest.raises(ClientError):  # a beta field is no GA field
        check_response({"modalities": ["audio"]})
