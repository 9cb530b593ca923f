"""Drive a settlement through the delivery API (COMMIT, REVEAL) and the app's sweeper."""

from __future__ import annotations

import base64
from typing import Any

from pact_schema import PROTOCOL_VERSION, commit_hash_hex, now_ms, sign_message
from pact_settlement.workers.sweeper import Sweeper

__all__ = ["PAYLOAD", "commit", "reveal", "sweeper"]

PAYLOAD = b'{"temp_c": 12.5, "city": "Lisbon"}'
NONCE = b"rail-nonce-0001"
COMMIT_HASH = commit_hash_hex(base64.b64encode(PAYLOAD).decode(), base64.b64encode(NONCE).decode())


def _signed(kind: str, intent_id: str, signer: Any, **fields: Any) -> dict[str, Any]:
    sent = now_ms()
    message = {
        "protocol_version": PROTOCOL_VERSION,
        "type": kind,
        "intent_id": intent_id,
        "sent_at_ms": sent,
        "expires_at_ms": sent + 60_000,
        **fields,
    }
    return sign_message(message, signer)


async def _post(api: Any, intent_id: str, what: str, envelope: dict[str, Any]) -> Any:
    headers = {**api.provider_auth, "Idempotency-Key": f"{what}-{intent_id}"}
    return await api.client.post(
        f"/v1/settlements/{intent_id}/{what}", json={what: envelope}, headers=headers
    )


async def commit(api: Any, pact: Any, intent_id: str) -> dict[str, Any]:
    response = await _post(
        api,
        intent_id,
        "commit",
        _signed("COMMIT", intent_id, pact.provider, commit_hash_hex=COMMIT_HASH),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def reveal(api: Any, pact: Any, intent_id: str, payload: bytes = PAYLOAD) -> Any:
    envelope = _signed(
        "REVEAL",
        intent_id,
        pact.provider,
        payload_b64=base64.b64encode(payload).decode(),
        nonce_b64=base64.b64encode(NONCE).decode(),
    )
    return await _post(api, intent_id, "reveal", envelope)


def sweeper(app: Any) -> Sweeper:
    state = app.state.settlement
    return Sweeper(
        state.sessionmaker,
        settings=state.settings,
        metrics=state.metrics,
        applier=state.applier,
        clock=state.clock,
        clients=state.rail_clients,
    )
