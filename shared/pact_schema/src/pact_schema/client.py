"""Async buyer client: signs messages, verifies every reply, binds ACCEPTs to the quote."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import httpx
from pydantic import BaseModel

from pact_schema.clock import Clock, now_ms
from pact_schema.commit import reveal_matches
from pact_schema.envelope import (
    EnvelopeError,
    VerifiedEnvelope,
    sign_message,
    verify_envelope,
)
from pact_schema.keys import Keypair, check_public_key
from pact_schema.messages import (
    PROTOCOL_VERSION,
    Accept,
    Ask,
    Bid,
    Constraints,
    Intent,
    MessageValidationError,
    Reject,
    SettlementMode,
)
from pact_schema.money import format_amount
from pact_schema.quote import BUYER_KEY_FIELD, QUOTE_FIELD

__all__ = ["NegotiationResult", "Outcome", "PactClient", "PactClientError", "ProviderHTTPError"]

Outcome = Literal["QUOTED", "ACCEPTED", "REJECTED", "FAILED_IDENTITY"]


class PactClientError(Exception):
    """The negotiation could not be carried out (transport, bad reply, identity)."""


class ProviderHTTPError(PactClientError):
    """The provider answered with an HTTP error (usually an RFC 9457 problem document)."""

    def __init__(self, status_code: int, problem: dict[str, Any] | None, text: str) -> None:
        detail = (problem or {}).get("detail") or (problem or {}).get("title") or text[:200]
        super().__init__(f"provider answered HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.problem = problem


@dataclass
class NegotiationResult:
    intent_id: str
    outcome: Outcome
    price: Decimal | None = None
    reject_code: str | None = None
    reason: str | None = None
    transcript: list[dict[str, Any]] = field(default_factory=list)
    accept_reply: dict[str, Any] | None = None
    payload: bytes | None = None
    """The delivered payload, when the provider delivered with hash_reveal."""
    delivery_verified: bool | None = None
    """True when sha256(payload_b64 + nonce_b64) equals the provider's commitment; None: no
    delivery."""
    notes: list[str] = field(default_factory=list)
    """What the negotiation did differently from what was asked (a BID not sent, ...)."""

    @property
    def delivery(self) -> dict[str, Any] | None:
        if self.accept_reply is None:
            return None
        value = self.accept_reply["message"].get("delivery")
        return value if isinstance(value, dict) else None

    @property
    def settlement(self) -> dict[str, Any] | None:
        """The settlement summary the provider attached to its ACCEPT acknowledgement."""
        if self.accept_reply is None:
            return None
        value = self.accept_reply["message"].get("settlement")
        return value if isinstance(value, dict) else None

    def to_json(self) -> dict[str, Any]:
        return {
            "intent_id": self.intent_id,
            "outcome": self.outcome,
            "price": None if self.price is None else format_amount(self.price),
            "reject_code": self.reject_code,
            "reason": self.reason,
            "transcript": self.transcript,
            "accept_reply": self.accept_reply,
            "delivery_verified": self.delivery_verified,
            "payload_b64": None
            if self.payload is None
            else base64.b64encode(self.payload).decode(),
            "notes": list(self.notes),
        }


DEFAULT_DELIVERY_WINDOW_MS = 60_000
DELIVERY_SLACK_MS = 30_000


def _default_delivery_window(ask: Ask) -> int:
    stated = ask.extras.get("min_delivery_window_ms")
    if isinstance(stated, int) and not isinstance(stated, bool) and stated > 0:
        return stated + DELIVERY_SLACK_MS
    return DEFAULT_DELIVERY_WINDOW_MS


class PactClient:
    """Talks to one provider's ``POST /pact`` as a buyer agent.

    ``provider_key`` pins the provider's public key; without it the key that signs the first
    ASK is pinned for the rest of the negotiation. ``clock`` stamps the messages (tests give a
    clock they control).
    """

    def __init__(
        self,
        provider_url: str,
        keypair: Keypair,
        *,
        provider_key: str | None = None,
        http: httpx.AsyncClient | None = None,
        timeout_s: float = 10.0,
        clock: Clock = now_ms,
    ) -> None:
        self.provider_url = provider_url.rstrip("/")
        self.clock = clock
        self.keypair = keypair
        self.provider_key = None if provider_key is None else check_public_key(provider_key)
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout_s)

    async def __aenter__(self) -> PactClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def send(
        self, message: BaseModel | dict[str, Any]
    ) -> tuple[dict[str, Any], VerifiedEnvelope]:
        """Sign and POST one message; return the sent envelope and the verified reply."""
        envelope = sign_message(message, self.keypair, signed_at_ms=self.clock())
        try:
            response = await self._http.post(f"{self.provider_url}/pact", json=envelope)
        except httpx.HTTPError as exc:
            raise PactClientError(f"cannot reach provider at {self.provider_url}: {exc}") from exc
        if response.status_code != 200:
            problem = None
            if response.headers.get("content-type", "").startswith("application/problem+json"):
                try:
                    body = response.json()
                except ValueError:
                    body = None
                problem = body if isinstance(body, dict) else None
            raise ProviderHTTPError(response.status_code, problem, response.text)
        try:
            reply = verify_envelope(response.json())
        except (EnvelopeError, ValueError) as exc:
            raise PactClientError(f"provider reply does not verify: {exc}") from exc
        if self.provider_key is None:
            self.provider_key = reply.signer
        elif reply.signer != self.provider_key:
            raise PactClientError("provider reply is signed by an unexpected key")
        if reply.message_raw.get("intent_id") != envelope["message"]["intent_id"]:
            raise PactClientError("provider reply is for a different intent_id")
        return envelope, reply

    async def negotiate(
        self,
        *,
        intent: str,
        scope: str | dict[str, Any],
        max_price: Decimal,
        latency_ms: int = 500,
        freshness_sec: int = 60,
        settlement_mode: SettlementMode = "hash_reveal",
        urgent: bool | None = None,
        intent_ttl_ms: int = 60_000,
        bids: Sequence[Decimal] = (),
        accept: bool = False,
        challenge_window_ms: int = 5_000,
        delivery_window_ms: int | None = None,
        intent_id: str | None = None,
    ) -> NegotiationResult:
        """INTENT → ASK, optional BID rounds, and (with ``accept``) ACCEPT bound to the quote.

        ``delivery_window_ms`` (the ACCEPT's deadline, from now): by default the ASK's
        ``min_delivery_window_ms`` plus ``DELIVERY_SLACK_MS`` (the provider refuses a deadline
        it cannot meet), or ``DEFAULT_DELIVERY_WINDOW_MS`` when the ASK states none.
        """
        intent_id = intent_id or f"intent-{uuid.uuid4()}"
        result = NegotiationResult(intent_id=intent_id, outcome="REJECTED")
        sent = self.clock()
        intent_msg = Intent(
            protocol_version=PROTOCOL_VERSION,
            type="INTENT",
            intent_id=intent_id,
            intent=intent,
            scope=scope,
            constraints=Constraints(latency_ms=latency_ms, freshness_sec=freshness_sec),
            max_price=max_price,
            settlement_mode=settlement_mode,
            urgent=urgent,
            sent_at_ms=sent,
            expires_at_ms=sent + intent_ttl_ms,
        )
        quote = await self._exchange(result, intent_msg)
        if quote is None:
            return result
        for bid_price in bids:
            if quote[1].price <= bid_price:
                # Nothing to win by offering at least what is asked: not sent, and said so.
                result.notes.append(
                    f"BID {format_amount(bid_price)} not sent: the ASK is already "
                    f"{format_amount(quote[1].price)}, at or below it"
                )
                continue
            sent = self.clock()
            bid = Bid(
                protocol_version=PROTOCOL_VERSION,
                type="BID",
                intent_id=intent_id,
                price=bid_price,
                unit=quote[1].unit,
                latency_ms=quote[1].latency_ms,
                valid_for_ms=quote[1].valid_for_ms,
                bond_required=quote[1].bond_required,
                sent_at_ms=sent,
                expires_at_ms=sent + quote[1].valid_for_ms,
                **{QUOTE_FIELD: quote[0]},
            )
            quote = await self._exchange(result, bid)
            if quote is None:
                return result
        ask_envelope, ask = quote
        if ask.price > max_price:
            result.reason = (
                f"quoted price {format_amount(ask.price)} exceeds max_price "
                f"{format_amount(max_price)}"
            )
            return result
        result.price = ask.price
        if not accept:
            result.outcome = "QUOTED"
            return result
        if delivery_window_ms is None:
            delivery_window_ms = _default_delivery_window(ask)
        sent = self.clock()
        accept_msg = Accept(
            protocol_version=PROTOCOL_VERSION,
            type="ACCEPT",
            intent_id=intent_id,
            agreed_price=ask.price,
            settlement_mode=settlement_mode,
            proof_type=settlement_mode,
            challenge_window_ms=challenge_window_ms,
            delivery_deadline_ms=sent + delivery_window_ms,
            sent_at_ms=sent,
            expires_at_ms=min(ask.expires_at_ms, sent + intent_ttl_ms),
            **{QUOTE_FIELD: ask_envelope},
        )
        if accept_msg.expires_at_ms <= sent:
            result.reason = "the quote expired before it could be accepted"
            return result
        _, reply = await self._send_logged(result, accept_msg)
        parsed = self._parse_reply(reply)
        if isinstance(parsed, Accept):
            result.outcome = "ACCEPTED"
            result.accept_reply = reply.raw
            self._check_delivery(result)
        elif isinstance(parsed, Reject):
            result.reject_code, result.reason = parsed.code, parsed.reason
        else:
            raise PactClientError(f"unexpected reply to ACCEPT: {parsed.type}")
        return result

    @staticmethod
    def _check_delivery(result: NegotiationResult) -> None:
        delivery = result.delivery
        if delivery is None or "payload_b64" not in delivery:
            return
        payload_b64, nonce_b64 = delivery.get("payload_b64"), delivery.get("nonce_b64")
        if not isinstance(payload_b64, str) or not isinstance(nonce_b64, str):
            result.delivery_verified = False
            return
        try:
            payload = base64.b64decode(payload_b64, validate=True)
        except (binascii.Error, ValueError):
            result.delivery_verified = False
            return
        result.payload = payload
        commitment = str(delivery.get("commit_hash_hex", ""))
        result.delivery_verified = reveal_matches(commitment, payload_b64, nonce_b64)

    async def _send_logged(
        self, result: NegotiationResult, message: BaseModel
    ) -> tuple[dict[str, Any], VerifiedEnvelope]:
        envelope, reply = await self.send(message)
        result.transcript.extend([envelope, reply.raw])
        return envelope, reply

    @staticmethod
    def _parse_reply(reply: VerifiedEnvelope) -> Any:
        try:
            return reply.parse()
        except MessageValidationError as exc:
            raise PactClientError(f"provider reply is not a valid pact/1.0 message: {exc}") from exc

    async def _exchange(
        self, result: NegotiationResult, message: Intent | Bid
    ) -> tuple[dict[str, Any], Ask] | None:
        """Send an INTENT or BID; return the verified ASK, or record the REJECT and return None."""
        _, reply = await self._send_logged(result, message)
        parsed = self._parse_reply(reply)
        if isinstance(parsed, Reject):
            result.reject_code, result.reason = parsed.code, parsed.reason
            return None
        if not isinstance(parsed, Ask):
            raise PactClientError(f"expected ASK or REJECT, got {parsed.type}")
        if parsed.extras.get(BUYER_KEY_FIELD) not in (None, self.keypair.public_key_b58):
            result.outcome = "FAILED_IDENTITY"
            result.reason = "the ASK was made for a different buyer key"
            return None
        return reply.raw, parsed
