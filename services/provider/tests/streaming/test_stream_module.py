"""STREAM_MODULE: an operator's stream handler, loaded by name, or a clear refusal."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pact_provider.config import ConfigError
from pact_provider.streaming.service import StreamRequest, load_stream_handler


def test_the_modules_stream_handler_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ticker_seller.py").write_text(
        "async def STREAM_HANDLER(request):\n"
        "    for n in range(3):\n"
        "        yield f'{request.intent_id}:{n}'.encode()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    handler = load_stream_handler("ticker_seller")
    request = StreamRequest("intent-1", "buyer", Decimal("0.05"), 100, 50)

    async def collect() -> list[bytes]:
        return [chunk async for chunk in handler(request)]

    import asyncio

    assert asyncio.run(collect()) == [b"intent-1:0", b"intent-1:1", b"intent-1:2"]


@pytest.mark.parametrize(
    ("source", "message"),
    [(None, "cannot import"), ("STREAM_HANDLER = 5\n", "must be an async generator")],
)
def test_a_module_without_a_handler_is_refused_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str | None, message: str
) -> None:
    if source is not None:
        (tmp_path / "broken_seller.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=message):
        load_stream_handler("broken_seller" if source is not None else "no_such_seller_module")
