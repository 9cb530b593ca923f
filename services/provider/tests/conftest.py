from __future__ import annotations

import os
from typing import Any

import pytest
from fixtures.provider import FakeClock, FakeSettlement


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build their settings explicitly; the developer's PACT_PROVIDER_* must not leak in."""
    for name in list(os.environ):
        if name.startswith("PACT_PROVIDER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settlement() -> FakeSettlement:
    return FakeSettlement()


REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def redis_store_url() -> Any:
    """The machine's Redis (``TEST_REDIS_URL``) and a key prefix of this test's own; its keys
    are deleted afterwards. A Redis that does not answer fails the test: never a skip."""
    import uuid

    from redis import asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:  # any connection failure
        await client.aclose()
        pytest.fail(f"Redis is required at {REDIS_URL} (TEST_REDIS_URL): {exc}")
    prefix = f"pact-test:{uuid.uuid4().hex}:"
    try:
        yield REDIS_URL, prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
