"""What the system tests send the gateway: espeak-ng sentences at one input rate, sessions, requests."""

from __future__ import annotations

import functools

import grpc
import numpy as np

from harness.conversation import Conversation
from harness.recordings import espeak
from services.common.audio import resample
from voice.v1 import gateway_pb2

RATE = 16000


@functools.cache
def say(text: str) -> np.ndarray:
    """`text` spoken by espeak-ng at RATE (made once per test run)."""
    speech, rate = espeak(text)
    samples = resample(speech, rate, RATE)
    samples.flags.writeable = False
    return samples


def open_session(stub, listen: bool = False, **config) -> Conversation:
    """A session; `listen` plays each reply at real time and reports playback, as a client does."""
    return Conversation(stub, gateway_pb2.SessionConfig(input_sample_rate_hz=RATE, **config), listen=listen)


async def stream(stub, requests: list[gateway_pb2.ConverseRequest], timeout: float = 60):
    """Send all requests, collect all events; returns (event kinds, error or None)."""
    async def it():
        for request in requests:
            yield request

    kinds, events = [], []
    try:
        async for message in stub.Converse(it(), timeout=timeout):
            kind = message.WhichOneof("payload")
            kinds.append(kind)
            events.append(getattr(message, kind))
    except grpc.aio.AioRpcError as err:
        return kinds, events, err
    return kinds, events, None
