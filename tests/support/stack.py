"""The running system shared by the system tests, and a way back to it after a fault test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from harness.stack import Stack
from voice.v1 import gateway_pb2_grpc


def running(english_voxtral: Path, **gateway: str) -> Iterator[Stack]:
    """A system on the small English Voxtral, stopped after its tests; `gateway`: settings of its own."""
    # Tests send audio faster than real time, a load no admission should learn from: off here,
    # and proven on its own in test_capacity_system.py and test_admission.py.
    system = Stack(english_voxtral, None, None, None, GATEWAY_ADMISSION__ENABLED="false", **gateway)
    yield system
    system.stop()


@pytest.fixture(scope="session")
def stack(english_voxtral: Path) -> Iterator[Stack]:
    """One running system shared by the system tests."""
    yield from running(english_voxtral)


@pytest.fixture
def faulty_stack(stack: Stack) -> Iterator[Stack]:
    """The shared system for a test that breaks a part of it: put back as it was afterwards."""
    yield stack
    stack.restore()


@pytest_asyncio.fixture(loop_scope="module")
async def gateway(stack: Stack):
    """A GatewayService stub on the shared system."""
    async with grpc.aio.insecure_channel(stack.gateway) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)
