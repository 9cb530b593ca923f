"""Commit → reveal through the settlement API, right after settlement locked the funds.

Stateless by construction: the payload comes from a deterministic handler and the nonce is an
HMAC of the intent id under the provider's key, so any replica handling a resent ACCEPT makes
the very same commitment, and settlement's idempotency turns the repeat into a no-op.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from pact_schema import PROTOCOL_VERSION, Keypair, commit_hash_hex, now_ms, sign_message

from pact_provider.errors import SettlementUnavailable
from pact_provider.fulfilment.handlers import FulfilmentRequest, HandlerBook
from pact_provider.negotiation.service import SettledAgreement
from pact_provider.observability import Logger
from pact_provider.settlement_client import SettlementGateway, SettlementRefused

__all__ = ["Fulfiller"]

_NONCE_CONTEXT = b"pact-provider/fulfilment-nonce/1:"
_COMMITTABLE = frozenset({"locked"})
_REVEALABLE = frozenset({"locked", "committed"})


class Fulfiller:
    """The ``after_settlement`` hook: deliver with hash_reveal and report it in the ACCEPT ack."""

    def __init__(
        self,
        *,
        keypair: Keypair,
        settlement: SettlementGateway,
        handlers: HandlerBook,
        log: Logger,
        message_ttl_ms: int = 60_000,
    ) -> None:
        self._keypair = keypair
        self._settlement = settlement
        self._handlers = handlers
        self._log = log
        self._ttl = message_ttl_ms

    def _nonce(self, intent_id: str) -> bytes:
        return hmac.new(
            self._keypair.seed, _NONCE_CONTEXT + intent_id.encode("utf-8"), hashlib.sha256
        ).digest()[:16]

    def _sign(self, message_type: str, intent_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        sent = now_ms()
        message = {
            "protocol_version": PROTOCOL_VERSION,
            "type": message_type,
            "intent_id": intent_id,
            "sent_at_ms": sent,
            "expires_at_ms": sent + self._ttl,
            **fields,
        }
        return sign_message(message, self._keypair, signed_at_ms=sent)

    async def __call__(self, agreement: SettledAgreement) -> Mapping[str, Any]:
        terms = agreement.terms
        intent_id = agreement.accept.intent_id
        if agreement.accept.settlement_mode != "hash_reveal" or terms is None:
            return {"delivery": {"status": "not_offered"}}
        handler = self._handlers.for_intent(terms.intent_type)
        if handler is None:
            return {"delivery": {"status": "not_offered"}}
        payload = await handler(
            FulfilmentRequest(
                intent_id=intent_id,
                intent_type=terms.intent_type,
                scope=terms.scope,
                buyer_key=terms.buyer_key,
            )
        )
        payload_b64 = base64.b64encode(payload).decode("ascii")
        nonce_b64 = base64.b64encode(self._nonce(intent_id)).decode("ascii")
        commit_hash = commit_hash_hex(payload_b64, nonce_b64)
        delivery: dict[str, Any] = {
            "proof_type": "hash_reveal",
            "commit_hash_hex": commit_hash,
            "payload_b64": payload_b64,
            "nonce_b64": nonce_b64,
        }
        state = agreement.settlement.state
        try:
            if state in _COMMITTABLE:
                record = await self._settlement.commit(
                    intent_id,
                    self._sign("COMMIT", intent_id, {"commit_hash_hex": commit_hash}),
                    idempotency_key=f"commit-{intent_id}-{commit_hash}",
                )
                state = record.state
            if state in _REVEALABLE:
                record = await self._settlement.reveal(
                    intent_id,
                    self._sign(
                        "REVEAL",
                        intent_id,
                        {
                            "payload_b64": delivery["payload_b64"],
                            "nonce_b64": delivery["nonce_b64"],
                        },
                    ),
                    idempotency_key=f"reveal-{intent_id}-{commit_hash}",
                )
                state = record.state
        except (SettlementRefused, SettlementUnavailable) as exc:
            detail = str(exc.detail)
            self._log.warning(
                "pact.fulfilment.incomplete", intent_id=intent_id, state=state, detail=detail
            )
            return {
                "settlement": {**agreement.settlement.summary(), "state": state},
                "delivery": {
                    **delivery,
                    "status": "incomplete",
                    "detail": f"{detail}; resend the same ACCEPT to retry the delivery",
                },
            }
        self._log.info(
            "pact.fulfilment.delivered", intent_id=intent_id, state=state, commit=commit_hash
        )
        return {
            "settlement": {**agreement.settlement.summary(), "state": state},
            "delivery": {**delivery, "status": "delivered"},
        }
