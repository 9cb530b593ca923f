"""PactSeller: routes of an existing FastAPI app become priced intents served by the standalone
provider's engine, mounted on that app and started with it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI, HTTPException
from fixtures.provider import BUYER, PROVIDER, FakeClock, intent_message, reply_of, signed
from pact_provider.config import ConfigError
from pact_provider.fulfilment.handlers import FulfilmentError, FulfilmentRequest
from pact_provider.seller import PactSeller, route_handler
from pydantic import BaseModel


def _request(scope: Any) -> FulfilmentRequest:
    return FulfilmentRequest("intent-1", "weather.data", scope, BUYER.public_key_b58)


class Observation(BaseModel):
    city: str
    days: int


async def test_a_string_scope_is_the_first_required_parameter_an_object_scope_by_name() -> None:
    async def forecast(city: str, days: int = 1) -> dict[str, Any]:
        return {"city": city, "days": days}

    handler = route_handler(forecast)
    assert orjson.loads(await handler(_request("NYC"))) == {"city": "NYC", "days": 1}
    by_name = await handler(_request({"city": "LON", "days": 3, "ignored": True}))
    assert orjson.loads(by_name) == {"city": "LON", "days": 3}
    with pytest.raises(FulfilmentError, match="does not fit the sold route"):
        await handler(_request({"days": 3}))


async def test_plain_functions_models_and_bytes_are_payloads() -> None:
    def sync_model(city: str) -> Observation:
        return Observation(city=city, days=2)

    async def raw(city: str) -> bytes:
        return b"\x00raw"

    assert orjson.loads(await route_handler(sync_model)(_request("TYO"))) == {
        "city": "TYO",
        "days": 2,
    }
    assert await route_handler(raw)(_request("TYO")) == b"\x00raw"


async def test_an_http_exception_refunds_instead_of_delivering() -> None:
    async def weather(city: str) -> dict[str, Any]:
        raise HTTPException(status_code=404, detail="no station")

    with pytest.raises(FulfilmentError, match="HTTP 404"):
        await route_handler(weather)(_request("ATLANTIS"))


async def test_mounted_on_the_app_it_offers_exactly_what_is_sold() -> None:
    app = FastAPI()
    seller = PactSeller(settlement_url=None)

    @seller.sell("weather.data", price="0.00008", latency_ms=2000, freshness_sec=30)
    @app.get("/weather/{city}")
    async def weather(city: str) -> dict[str, str]:
        return {"city": city}

    seller.app(keypair=PROVIDER, clock=FakeClock())  # built once; mount() serves this one
    seller.mount(app)
    book = seller.price_book()
    assert book.prices == {"weather.data": Decimal("0.00008")}
    assert book.restricted
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://seller") as http,
    ):
        assert (await http.get("/weather/NYC")).json() == {"city": "NYC"}  # still free
        known = (await http.get("/pact-provider/.well-known/pact-provider")).json()
        sold = await http.post("/pact-provider/pact", json=signed(intent_message()))
        unsold = await http.post(
            "/pact-provider/pact", json=signed(intent_message(intent="data.query"))
        )
    assert known["intents"] == {"weather.data": "0.00008"}
    assert known["latency_ms"]["intents"] == {"weather.data": 2000}
    assert known["freshness_sec"]["intents"] == {"weather.data": 30}
    assert reply_of(sold)["type"] == "ASK"
    assert reply_of(unsold)["code"] == "INTENT_NOT_ALLOWED"


def test_nothing_sold_or_a_bad_price_is_refused() -> None:
    seller = PactSeller()
    with pytest.raises(ConfigError, match="nothing is sold"):
        seller.app()
    with pytest.raises(ConfigError, match="positive decimal"):
        seller.sell("weather.data", price="-1")
    with pytest.raises(ConfigError, match=r"the price of 'weather\.data'"):
        seller.sell("weather.data", price="1e-5")
    with pytest.raises(ConfigError, match="latency_ms"):
        seller.sell("weather.data", price="1", latency_ms=-5)
    with pytest.raises(ConfigError, match="freshness_sec"):
        seller.sell("weather.data", price="1", freshness_sec=-1)
