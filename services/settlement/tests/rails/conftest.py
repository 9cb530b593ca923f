"""The rail tests' app: ``create_app`` with ready-made rail gateways (eth-tester's chain cannot
be reached by URL). The rail servers and chains are fixtures of ``tests/fixtures/rails.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest


@pytest.fixture
def rail_clients_factory() -> Callable[[Any], Any]:
    """Override to hand the app ready-made gateways: ``settings -> RailClients | None``."""
    return lambda _settings: None


@pytest.fixture
async def app_client(
    settings: Any, clock: Any, rail_clients_factory: Callable[[Any], Any]
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    from pact_settlement.app import create_app

    app = create_app(settings, clock=clock, rail_clients=rail_clients_factory(settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://settlement") as http:
            yield app, http
