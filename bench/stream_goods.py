"""The streaming bench's seller (``PACT_PROVIDER_STREAM_MODULE=bench.stream_goods``): one
32-byte chunk per tick, without end (the buyer decides how many ticks it buys)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

CHUNK = b"0123456789abcdef0123456789abcdef"


async def STREAM_HANDLER(request: Any) -> AsyncIterator[bytes]:  # noqa: N802 - the contract
    while True:
        yield CHUNK
