"""Pre-signed INTENT bodies: N distinct envelopes, one compact JSON document per line.

Each INTENT has its own ``intent_id`` and ``scope`` (alternately a string and an object), one of
the price book's intent types, varying constraints (so every pricing multiplier is exercised),
``sent_at_ms`` = the generation time and a generous expiry. Buyers are a handful of fixed keys.
Signing uses ``pact_schema.sign_message`` (JavaScript-exact canonical JSON, checked against the
reference SDK's golden vectors in the pact_schema tests), so the bodies are byte-for-byte what a
JavaScript buyer would send.

Because the bodies are signed before the run, the provider under test must allow a clock skew as
long as the whole run: run it with ``PACT_PROVIDER_MAX_CLOCK_SKEW_MS`` (``CLOCK_SKEW_MS`` here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pact_schema import Keypair, now_ms, sign_message

INTENT_TYPES = ("weather.data", "compute.inference", "data.query")
BUYERS = tuple(Keypair(bytes((b + i) % 256 for b in range(32))) for i in range(1, 9))
EXPIRY_MS = 3_600_000  # an hour: generous, the run is minutes
CLOCK_SKEW_MS = 600_000  # the provider's largest allowed MAX_CLOCK_SKEW_MS (10 minutes)
MAX_PRICE = 0.01  # far above any price, so every INTENT is answered with an ASK


def intent_message(i: int, now: int, run: str) -> dict[str, Any]:
    scope: str | dict[str, Any] = (
        f"city-{i % 977}" if i % 2 == 0 else {"region": f"r{i % 31}", "cell": i, "tags": ["b"]}
    )
    message: dict[str, Any] = {
        "protocol_version": "pact/1.0",
        "type": "INTENT",
        "intent_id": f"bench-{run}-{i:07d}",
        "intent": INTENT_TYPES[i % len(INTENT_TYPES)],
        "scope": scope,
        "constraints": {"latency_ms": 20 + (i * 7) % 180, "freshness_sec": 5 + (i * 3) % 55},
        "max_price": MAX_PRICE,
        "settlement_mode": "hash_reveal",  # the mode every provider offers by default
        "sent_at_ms": now,
        "expires_at_ms": now + EXPIRY_MS,
    }
    if i % 5 == 0:
        message["urgent"] = True
    return message


def intent_bodies(n: int, *, now: int | None = None, run: str = "r") -> list[bytes]:
    now = now_ms() if now is None else now
    out = []
    for i in range(n):
        envelope = sign_message(
            intent_message(i, now, run), BUYERS[i % len(BUYERS)], signed_at_ms=now
        )
        out.append(json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode())
    return out


def write_bodies(path: Path, n: int, *, run: str = "r") -> int:
    """Write ``n`` signed INTENT bodies to ``path`` (one per line); returns the signing time."""
    now = now_ms()
    bodies = intent_bodies(n, now=now, run=run)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(bodies) + b"\n")
    return now
