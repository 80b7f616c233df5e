"""SessionStore against a real redis-server process, including Redis dying and coming back."""

from __future__ import annotations

import asyncio
import logging

import pytest

from harness.local_redis import RedisProcess
from services.common.settings import RedisSettings
from services.common.store import STORE_FAILURES, Claim, Exchange, SessionStore

METRICS = {"endpoint_ms": 800.0, "voxtral_ttft_ms": 90.0, "first_clause_ms": 120.0, "tts_ttfb_ms": 60.0,
           "e2e_ms": 210.0, "turn_ms": 1500.0, "overhead_ms": 5.0}


async def known(store: SessionStore, session_id: str) -> bool:
    """Whether the store holds the session's record (what a resume checks)."""
    return bool(await store.redis.exists(f"voice:session:{session_id}:meta"))


@pytest.fixture
async def store(redis_server: RedisProcess):
    s = SessionStore(RedisSettings(url=redis_server.url, session_ttl_s=600))
    yield s
    await s.close()


async def test_context_keeps_last_five_exchanges_in_order_with_ttl(store: SessionStore) -> None:
    assert await store.claim("s1", "holder", "owner", resume=False) is Claim.OK
    for i in range(8):
        assert await store.append_exchange("s1", Exchange(user=f"u{i}", assistant=f"a{i}", turn_id=f"t{i}"))
    context = await store.context("s1")
    assert [e.user for e in context] == ["u3", "u4", "u5", "u6", "u7"]
    assert context[-1] == Exchange(user="u7", assistant="a7", turn_id="t7")
    for kind in ("meta", "context"):
        ttl = await store.redis.ttl(f"voice:session:s1:{kind}")
        assert 590 < ttl <= 600
    assert await store.context("other") == []


async def test_reset_context_and_session_exists(store: SessionStore) -> None:
    assert await known(store, "s2") is False
    await store.claim("s2", "holder", "owner", resume=False)
    await store.append_exchange("s2", Exchange(user="hi", assistant="hello"))
    assert await known(store, "s2") is True
    assert await store.reset_context("s2")
    assert await store.context("s2") == []


async def test_turn_records_keep_last_twenty_and_feed_stage_streams(store: SessionStore) -> None:
    for i in range(25):
        assert await store.record_turn("s3", f"t{i}", {**METRICS, "e2e_ms": float(i)})
    turns = await store.turns("s3")
    assert [t["turn_id"] for t in turns] == [f"t{i}" for i in range(5, 25)]
    assert turns[-1]["e2e_ms"] == 24.0 and turns[-1]["voxtral_ttft_ms"] == 90.0
    assert 0 < await store.redis.ttl("voice:session:s3:turns") <= 600
    for name in METRICS:
        assert await store.redis.xlen(f"voice:stage:{name}") == 25
    newest = await store.redis.xrevrange("voice:stage:e2e_ms", count=1)
    assert newest
    last = newest[0][1]
    assert last == {"session_id": "s3", "turn_id": "t24", "ms": "24.000"}


async def test_unknown_metric_name_is_refused(store: SessionStore) -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        await store.record_turn("s", "t", {"latency": 1.0})


async def test_redis_killed_calls_degrade_fast_then_resume(redis_server: RedisProcess, store: SessionStore,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="services.common.store")
    await store.claim("s4", "holder", "owner", resume=False)
    await store.append_exchange("s4", Exchange(user="before", assistant="outage"))
    failures_before = STORE_FAILURES.labels(op="context")._value.get()

    redis_server.stop()
    calls = {
        "context": lambda: store.context("s4"),
        "append": lambda: store.append_exchange("s4", Exchange(user="lost", assistant="lost")),
        "record": lambda: store.record_turn("s4", "t1", METRICS),
        "turns": lambda: store.turns("s4"),
        "claim": lambda: store.claim("s4", "other", "owner", resume=True),
        "ping": store.ping,
    }
    results = {}
    for name, call in calls.items():  # each bounded by the store's budget: an answer, not a hang
        results[name] = await call()
    assert results == {"context": [], "append": False, "record": False, "turns": [], "claim": Claim.UNREACHABLE,
                       "ping": False}
    assert store.failures >= len(calls)
    assert STORE_FAILURES.labels(op="context")._value.get() == failures_before + 1
    outage_logs = [r for r in caplog.records if r.getMessage() == "redis unavailable; going on without it"]
    assert len(outage_logs) == 1  # logged once per outage, counted every time

    redis_server.start()  # same port, empty (no persistence)
    for _ in range(100):  # the next calls simply try again (a loaded host may miss the first's budget)
        if await store.append_exchange("s4", Exchange(user="after", assistant="restart")):
            break
        await asyncio.sleep(0.05)
    assert any(r.getMessage() == "redis reachable again" for r in caplog.records)
    assert set(e.user for e in await store.context("s4")) == {"after"}  # what was written before is gone
    assert await store.record_turn("s4", "t2", METRICS)
    assert [t["turn_id"] for t in await store.turns("s4")][-1] == "t2"


async def test_redis_stalled_calls_still_return_within_budget(redis_server: RedisProcess,
                                                              store: SessionStore) -> None:
    import signal

    await store.ping()
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)  # accepts connections, never answers
    try:
        async with asyncio.timeout(5):  # bounded by the store's budget, far below this: no hang
            assert await store.context("s5") == []
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    assert await store.append_exchange("s5", Exchange(user="u", assistant="a"))


async def test_every_write_keeps_the_session_record_after_redis_lost_it(store: SessionStore) -> None:
    await store.claim("s9", "holder", "owner", resume=False)
    await store.redis.flushall()  # a Redis restarted without persistence
    assert await known(store, "s9") is False
    await store.append_exchange("s9", Exchange(user="hi", assistant="hello"))
    assert await known(store, "s9") is True
    await store.redis.flushall()
    await store.record_turn("s9", "t1", METRICS)
    assert await known(store, "s9") is True
    assert await store.context("never-written") == []
    assert await known(store, "never-written") is False  # reading creates no session
