"""The weather API sold as a fulfilment module (``PACT_PROVIDER_FULFILMENT_MODULE=weather_module``).

The provider imports this module and calls ``HANDLERS[intent_type](request)`` once per paid
call, after the buyer's funds locked; the bytes returned are committed and revealed.
"""

from __future__ import annotations

import json

from pact_provider.fulfilment.handlers import FulfilmentError, FulfilmentRequest, Handler
from weather_api import observe


async def weather_data(request: FulfilmentRequest) -> bytes:
    """``scope``: a city (``"NYC"``) or ``{"city": "NYC", ...}``."""
    scope = request.scope
    city = scope.get("city") if isinstance(scope, dict) else scope
    if not isinstance(city, str):
        raise FulfilmentError('scope must be a city such as "NYC" or {"city": "NYC"}')
    try:
        return json.dumps(observe(city)).encode()
    except KeyError:
        raise FulfilmentError(f"no station in {city}") from None


HANDLERS: dict[str, Handler] = {"weather.data": weather_data}
