from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.local_redis import RedisProcess

# No test may reach a model hub: each missed download would retry for ~23 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    """A real redis-server on an ephemeral loopback port, killed after the test."""
    server = RedisProcess()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# Shared fixtures, imported here so that every test module sees them.
from tests.support.engine_client import redis, stages  # noqa: E402,F401  (fixtures are found by name)
from tests.support.stack import faulty_stack, gateway, stack  # noqa: E402,F401  (fixtures are found by name)
from tests.support.tls import certificate  # noqa: E402,F401  (fixtures are found by name)
from tests.support.voxtral import english_voxtral, tiny_voxtral  # noqa: E402,F401  (fixtures are found by name)
