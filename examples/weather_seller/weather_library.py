"""The weather API selling itself: the provider as a library, mounted on the existing app.

``uvicorn weather_library:app --port 8100`` serves the free API as before plus the Pact provider
at ``/pact-provider`` (``POST /pact-provider/pact``, ``/pact-provider/.well-known/pact-provider``).
Settlement URL, token and signing key come from the usual ``PACT_PROVIDER_*`` settings.
"""

from __future__ import annotations

from pact_provider.seller import PactSeller
from weather_api import app, weather

seller = PactSeller()
seller.sell("weather.data", price="0.00008", latency_ms=2000)(weather)
seller.mount(app, path="/pact-provider")
