"""The reference HTTP adapter's provider endpoints, on our quote binding and settlement.

The reference SDK's adapter (``packages/provider-adapter``) is a demo that signs whatever it is
sent: ``/commit`` and ``/reveal`` take the payload *from the buyer*. Here every answer is a
statement about a trade settlement holds, and the two promises of our provider keep holding:
no payload leaves the provider unless settlement recorded it as delivered, and nobody gets
goods without a locked, settled payment.

* ``POST /quote``: the request is unsigned, so there is no key to bind the ASK to: it is an
  *open* quote (``open_quote: true``) bound to its intent id, at the price an INTENT with the
  same fields would get. Any buyer may accept it once for that intent id: by carrying it in the
  ACCEPT's ``quote`` field, or, with the quote store, by a bare ACCEPT at exactly its price and
  mode. A BID against it gets a quote bound to the bidder. Refusals are signed REJECTs in
  ``envelope``.
* ``POST /commit``: the COMMIT of the trade settlement holds for the intent id (the
  commitment our provider sent it when it delivered), signed afresh. The request's
  ``payload_b64`` and ``nonce_b64`` are ignored: this provider never commits to bytes it did
  not produce. Only once settlement recorded the COMMIT (``committed`` or later).
* ``POST /reveal``: a REVEAL of the delivery settlement recorded (``delivered`` or
  ``released``), signed, to a caller who shows it already holds it: ``payload_b64`` and
  ``nonce_b64`` must hash to the recorded commitment (the buyer received them in the ACCEPT
  acknowledgement). ``ok`` says whether the caller's ``commit_hash_hex`` is that commitment
  (``ok: false, code: FAILED_PROOF`` when not). Nothing is revealed to anyone else: an unsigned
  request cannot show who is asking.
* ``POST /stream/chunk``: the signed STREAM_CHUNK ``seq`` of a stream of that intent running
  on this replica (one of its last 256, answered by the endpoint from the streamer); any other
  request is a signed REJECT ``SETTLEMENT_MODE_NOT_ALLOWED`` (streams are opened with
  ``POST /pact/stream`` and paid with vouchers, docs/protocol.md "Streaming").
* ``GET /health``: ``{ok, sellerId, seller_pubkey_b58}``.

Unsigned requests name an intent id, which is unique per buyer only: when several buyers used
it, ``buyer_public_key_b58`` (our extension) says whose trade is meant (409 otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pact_schema import (
    PROTOCOL_VERSION,
    FailureCode,
    Intent,
    Keypair,
    MessageValidationError,
    parse_message,
    reveal_matches,
    sign_message,
)
from pact_schema.keys import KeyFormatError, check_public_key
from pact_schema.text import is_intent_id

from pact_provider.errors import ProviderError
from pact_provider.negotiation.service import Decision, Negotiator
from pact_provider.settlement_client import SettlementGateway, SettlementRecord

__all__ = ["ReferenceAdapter", "ReferenceProblemError"]

COMMITTED = frozenset({"committed", "delivered", "released"})
DELIVERED = frozenset({"delivered", "released"})
ENDED_UNDELIVERED = frozenset({"refunded", "slashed", "failed"})
_HEX = frozenset("0123456789abcdefABCDEF")


class ReferenceProblemError(ProviderError):
    """A request the adapter cannot answer with a signed statement (problem document)."""


def _bad_request(detail: str) -> ReferenceProblemError:
    return ReferenceProblemError(detail, code="REQUEST_MALFORMED", status=400)


def _text_field(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise _bad_request(f"{name} must be a string")
    return value


def _intent_id(body: Mapping[str, Any]) -> str:
    value = body.get("intent_id")
    if not is_intent_id(value):
        raise _bad_request(
            "intent_id must be 1-128 characters of A-Z a-z 0-9 . _ : - (the first a letter or "
            "digit)"
        )
    assert isinstance(value, str)
    return value


def _buyer(body: Mapping[str, Any]) -> str | None:
    value = body.get("buyer_public_key_b58")
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad_request("buyer_public_key_b58 must be a base58 public key")
    try:
        check_public_key(value)
    except KeyFormatError as exc:
        raise _bad_request(f"buyer_public_key_b58: {exc}") from exc
    return value


class ReferenceAdapter:
    """What the reference adapter's endpoints answer; no HTTP here."""

    def __init__(
        self,
        *,
        negotiator: Negotiator,
        settlement: SettlementGateway | None,
        keypair: Keypair,
        trusted_keys: frozenset[str],
        clock: Callable[[], int],
        message_ttl_ms: int,
        quote_valid_for_ms: int,
        settlement_modes: frozenset[str],
    ) -> None:
        self._negotiator = negotiator
        self._settlement = settlement
        self._keypair = keypair
        self._trusted = trusted_keys
        self._clock = clock
        self._ttl = message_ttl_ms
        self._valid_for = quote_valid_for_ms
        self._mode = "hash_reveal" if "hash_reveal" in settlement_modes else min(settlement_modes)

    # --- quote ------------------------------------------------------------------------------

    async def quote(self, body: Any) -> Decision:
        """``ProviderQuoteRequest`` → a signed open ASK, or a signed REJECT."""
        if not isinstance(body, dict):
            raise _bad_request("the body must be a JSON object (ProviderQuoteRequest)")
        raw_id = body.get("intent_id")
        intent_id = raw_id if isinstance(raw_id, str) else "unknown"
        missing = [
            k for k in ("intent_id", "intent_type", "max_price", "constraints") if k not in body
        ]
        if missing:
            return self._negotiator.refuse(
                "QUOTE",
                intent_id,
                FailureCode.SCHEMA_VALIDATION_FAILED.value,
                f"a quote request needs {', '.join(missing)}",
            )
        now = self._clock()
        as_intent: dict[str, Any] = {
            "protocol_version": PROTOCOL_VERSION,
            "type": "INTENT",
            "intent_id": body["intent_id"],
            "intent": body["intent_type"],
            "scope": body.get("scope", ""),
            "constraints": body["constraints"],
            "max_price": body["max_price"],
            "settlement_mode": body.get("settlement_mode", self._mode),
            "sent_at_ms": now,
            "expires_at_ms": now + self._valid_for,
        }
        if body.get("urgent") is not None:
            as_intent["urgent"] = body["urgent"]
        try:
            intent = parse_message(as_intent)
        except MessageValidationError as exc:
            detail = exc.detail.replace("intent:", "intent_type:")
            return self._negotiator.refuse("QUOTE", intent_id, exc.code.value, detail)
        assert isinstance(intent, Intent)
        return await self._negotiator.quote(intent)

    # --- commit and reveal ------------------------------------------------------------------

    async def _trade(self, body: Any, what: str) -> SettlementRecord:
        if not isinstance(body, dict):
            raise _bad_request(f"the body must be a JSON object ({what})")
        intent_id = _intent_id(body)
        buyer = _buyer(body)
        if self._settlement is None:
            raise ReferenceProblemError(
                "no settlement service is configured for this provider",
                code="SETTLEMENT_FAILED",
                status=409,
            )
        record = await self._settlement.find(buyer, intent_id)
        if record is None or record.seller not in self._trusted:
            raise ReferenceProblemError(
                f"this provider holds no trade for intent_id {intent_id!r}"
                + ("" if buyer is None else " and that buyer"),
                code="NOT_FOUND",
                status=404,
            )
        return record

    @staticmethod
    def _not_yet(record: SettlementRecord, needed: str) -> ReferenceProblemError:
        if record.state in ENDED_UNDELIVERED:
            return ReferenceProblemError(
                f"settlement {record.id} ended {record.state} "
                f"({record.failure_code or 'no code'}): nothing was delivered and the buyer "
                "keeps its money",
                code=record.failure_code or FailureCode.SETTLEMENT_FAILED.value,
                status=409,
            )
        return ReferenceProblemError(
            f"settlement {record.id} is {record.state}: {needed}; the delivery runs when the "
            "buyer's ACCEPT reaches POST /pact (resend the same ACCEPT to continue it)",
            code="NOT_DELIVERED",
            status=409,
        )

    def _sign(self, message_type: str, intent_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        sent = self._clock()
        message = {
            "protocol_version": PROTOCOL_VERSION,
            "type": message_type,
            "intent_id": intent_id,
            "sent_at_ms": sent,
            "expires_at_ms": sent + self._ttl,
            **fields,
        }
        return sign_message(message, self._keypair, signed_at_ms=sent)

    async def commit(self, body: Any) -> dict[str, Any]:
        """``CommitRequest`` → ``{envelope}``: the signed COMMIT settlement recorded."""
        record = await self._trade(body, "CommitRequest")
        if record.state not in COMMITTED or record.commit_hash_hex is None:
            raise self._not_yet(record, "no COMMIT is recorded yet")
        envelope = self._sign(
            "COMMIT", body["intent_id"], {"commit_hash_hex": record.commit_hash_hex.lower()}
        )
        return {"envelope": envelope}

    async def reveal(self, body: Any) -> dict[str, Any]:
        """``RevealRequest`` → ``{envelope, ok[, code, reason]}`` for a caller who holds the
        delivery settlement recorded."""
        record = await self._trade(body, "RevealRequest")
        payload_b64 = _text_field(body, "payload_b64")
        nonce_b64 = _text_field(body, "nonce_b64")
        claimed = _text_field(body, "commit_hash_hex")
        if len(claimed) != 64 or not set(claimed) <= _HEX:
            raise _bad_request("commit_hash_hex must be 64 hex characters")
        if record.state not in DELIVERED or record.commit_hash_hex is None:
            raise self._not_yet(record, "settlement has not recorded a delivery")
        if not reveal_matches(record.commit_hash_hex, payload_b64, nonce_b64):
            raise ReferenceProblemError(
                "payload_b64 and nonce_b64 must be the delivery this trade made (sent in the "
                "ACCEPT acknowledgement): this provider reveals a delivery only to a caller "
                "who shows it, never to an unsigned request",
                code="REVEAL_NOT_PROVEN",
                status=403,
            )
        envelope = self._sign(
            "REVEAL", body["intent_id"], {"payload_b64": payload_b64, "nonce_b64": nonce_b64}
        )
        if claimed.lower() == record.commit_hash_hex.lower():
            return {"envelope": envelope, "ok": True}
        return {
            "envelope": envelope,
            "ok": False,
            "code": FailureCode.FAILED_PROOF.value,
            "reason": "the REVEAL does not hash to the commit_hash_hex sent: it proves the "
            f"commitment settlement recorded, {record.commit_hash_hex.lower()}",
        }

    # --- streaming and health ---------------------------------------------------------------

    def stream_chunk(self, body: Any) -> Decision:
        raw_id = body.get("intent_id") if isinstance(body, dict) else None
        return self._negotiator.refuse(
            "STREAM_CHUNK",
            raw_id if isinstance(raw_id, str) else "unknown",
            FailureCode.SETTLEMENT_MODE_NOT_ALLOWED.value,
            "no stream of this intent running here has sent that chunk: a stream is opened with "
            "POST /pact/stream (a signed STREAM_START) and paid with vouchers; this endpoint "
            "re-serves the chunks a running stream sent",
        )

    def health(self) -> dict[str, Any]:
        key = self._keypair.public_key_b58
        return {"ok": True, "sellerId": key, "seller_pubkey_b58": key}
