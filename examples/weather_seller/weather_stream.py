"""The weather API sold as a paid live feed (``PACT_PROVIDER_STREAM_MODULE=weather_stream``).

The provider imports this module and, for every stream a buyer starts (an ACCEPT with
``settlement_mode: streaming``, then ``POST /pact/stream``), iterates ``STREAM_HANDLER``: one
chunk per tick, each signed and sent only while the buyer's signed vouchers keep up. The
seller never counts money here; the provider stops asking for chunks when the buyer stops
paying, and settlement pays the seller exactly the highest voucher.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator

from pact_provider.streaming.service import StreamRequest
from weather_api import CITIES, observe


async def weather_feed(request: StreamRequest) -> AsyncIterator[bytes]:
    """A new observation per tick, going round the stations."""
    for tick, city in enumerate(itertools.cycle(sorted(CITIES))):
        yield json.dumps({"tick": tick, **observe(city)}).encode()


STREAM_HANDLER = weather_feed
