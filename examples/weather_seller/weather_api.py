"""A small, existing weather API: the seller's product, before Pact.

Every call is a new observation (the reading number and the time move on, the temperature
drifts), as real weather data does. An unknown city is a 404. Run it alone with
``uvicorn weather_api:app --port 8100``.
"""

from __future__ import annotations

import itertools
import random
import time
from typing import Any

from fastapi import FastAPI, HTTPException

CITIES = {"NYC": 12.0, "LON": 9.5, "TYO": 16.0, "SYD": 21.0, "ZÜRICH": 8.0}
_readings = itertools.count(1)

app = FastAPI(title="Weather API")


def observe(city: str) -> dict[str, Any]:
    """The current observation for ``city``; raises ``KeyError`` for an unknown one."""
    base = CITIES[city.upper()]
    return {
        "city": city.upper(),
        "reading": next(_readings),
        "observed_at_ms": time.time_ns() // 1_000_000,
        "temperature_c": round(base + random.uniform(-3, 3), 2),
    }


@app.get("/weather/{city}")
async def weather(city: str) -> dict[str, Any]:
    try:
        return observe(city)
    except KeyError:
        raise HTTPException(status_code=404, detail=f"no station in {city}") from None
