"""Streaming settlement rules (docs/protocol.md, "Streaming").

* **Checkpoint** (the provider, for the seller): a buyer-signed ``STREAM_VOUCHER`` is
  verified against the settlement (its buyer's signature, its intent and seller, at most the
  locked budget) and, when its ``paid_amount`` is above the recorded one, becomes the
  checkpoint (:func:`state_machine.checkpoint`) and enters the transcript. A lower or equal
  voucher, or the same one again, changes nothing and answers the current checkpoint: the
  voucher is its own idempotency key.
* **Close** (stop): the caller's highest voucher is checkpointed first, then ONE rail step
  releases exactly the recorded voucher's amount and refunds the rest
  (:meth:`Lifecycle.close_stream`). There is no amount in the request: nobody is paid more than
  the highest voucher the buyer signed. The same close again (same Idempotency-Key and
  content) answers the settlement as it is now.
* The sweeper closes a stream nobody closed at its delivery deadline, at the last checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from pact_schema import (
    EnvelopeError,
    FailureCode,
    MessageValidationError,
    StreamStop,
    verify_envelope,
)
from pact_schema.streaming import StreamFailureError, StreamTerms, VerifiedVoucher, verify_voucher
from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.config import SettlementSettings
from pact_settlement.db.locks import lock_names
from pact_settlement.idempotency.service import MAX_KEY_LENGTH, IdempotencyService, fingerprint
from pact_settlement.kit.errors import (
    BadRequestError,
    ConflictError,
    ProblemCode,
    UnprocessableError,
)
from pact_settlement.kit.observability import Metrics
from pact_settlement.rails.clients import RailClients
from pact_settlement.settlements import state_machine
from pact_settlement.settlements.lifecycle import Lifecycle, LifecycleApplier
from pact_settlement.settlements.lookup import find_settlement
from pact_settlement.settlements.models import Settlement
from pact_settlement.settlements.repository import (
    SettlementEventRepository,
    SettlementRepository,
)
from pact_settlement.settlements.schemas import SettlementRead
from pact_settlement.settlements.state_machine import SettlementState
from pact_settlement.streams.schemas import CheckpointRead, CloseBody
from pact_settlement.transcripts.repository import TranscriptRepository

__all__ = ["CLOSE_SCOPE", "StreamService"]

log = structlog.get_logger(__name__)
CLOSE_SCOPE = "settlements.stream_close"


def _buyer_hint(raw: Any) -> str | None:
    """The voucher's signer, unverified: enough to find the settlement an intent id names."""
    if isinstance(raw, dict):
        signer = raw.get("signer_public_key_b58")
        if isinstance(signer, str):
            return signer
    return None


class StreamService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        settings: SettlementSettings,
        metrics: Metrics,
        applier: LifecycleApplier,
        now_ms: Callable[[], int],
        clients: RailClients | None = None,
    ) -> None:
        self.session = session
        self.now_ms = now_ms
        self.settlements = SettlementRepository.from_session(session)
        self.events = SettlementEventRepository.from_session(session)
        self.transcripts = TranscriptRepository.from_session(session)
        self.idempotency = IdempotencyService(session)
        self.lifecycle = Lifecycle(
            session, settings=settings, metrics=metrics, applier=applier, clients=clients
        )

    # ------------------------------------------------------------------ helpers

    async def _streaming_settlement(self, ref: str, *names: str, buyer: str | None) -> Settlement:
        if names:
            await lock_names(self.session, *names)
        s = await find_settlement(self.settlements, ref, buyer=buyer, for_update=True)
        if s.settlement_mode != "streaming":
            raise ConflictError(
                f"settlement {s.intent_id} settles {s.settlement_mode}, not streaming",
                code=ProblemCode.STATE_CONFLICT,
                extra={"intent_id": s.intent_id, "state": s.state},
            )
        return s

    @staticmethod
    def _terms(s: Settlement) -> StreamTerms:
        return StreamTerms(intent_id=s.intent_id, buyer=s.buyer, seller=s.seller, budget=s.amount)

    @staticmethod
    def _verified(raw: Any, s: Settlement) -> VerifiedVoucher:
        try:
            return verify_voucher(raw, StreamService._terms(s))
        except StreamFailureError as exc:
            raise UnprocessableError(
                exc.detail, code=exc.code, extra={"intent_id": s.intent_id}
            ) from exc

    async def _record(
        self, s: Settlement, voucher: VerifiedVoucher, *, actor: str, request_id: str | None
    ) -> bool:
        """Checkpoint ``voucher`` if it is higher than the recorded one."""
        message = voucher.voucher
        raised = await state_machine.checkpoint(
            self.session,
            s,
            paid_amount=message.paid_amount,
            ticks=message.ticks,
            voucher_seq=message.seq,
            voucher_hash_hex=voucher.message_hash_hex,
            actor=actor,
            request_id=request_id,
        )
        if raised:
            await self.transcripts.store(
                settlement_id=s.id,
                kind="STREAM_VOUCHER",
                envelope=voucher.raw,
                message_hash_hex=voucher.message_hash_hex,
                signer=s.buyer,
                detail={"checkpoint": s.stream_checkpoints, "ticks": message.ticks},
            )
        return raised

    # --------------------------------------------------------------- checkpoint

    async def checkpoint(
        self, ref: str, raw: dict[str, Any], *, actor: str, request_id: str | None = None
    ) -> CheckpointRead:
        s = await self._streaming_settlement(ref, buyer=_buyer_hint(raw))
        voucher = self._verified(raw, s)
        if s.state != SettlementState.STREAMING:
            if voucher.message_hash_hex == s.stream_voucher_hash or (
                s.state == SettlementState.PENDING
            ):
                return CheckpointRead.of(s, recorded=False)
            raise ConflictError(
                f"settlement {s.intent_id} is {s.state}: the stream is closed and its "
                "vouchers are settled",
                code=ProblemCode.STATE_CONFLICT,
                extra={"intent_id": s.intent_id, "state": s.state},
            )
        raised = await self._record(s, voucher, actor=actor, request_id=request_id)
        return CheckpointRead.of(s, recorded=raised)

    # -------------------------------------------------------------------- close

    def _stop_envelope(self, raw: Any, s: Settlement) -> tuple[dict[str, Any], str, str]:
        try:
            envelope = verify_envelope(raw)
            message = envelope.parse()
        except EnvelopeError as exc:
            raise UnprocessableError(
                f"stop envelope: {exc}", code=FailureCode.FAILED_IDENTITY
            ) from exc
        except MessageValidationError as exc:
            raise UnprocessableError(f"stop message: {exc.detail}", code=exc.code) from exc
        if not isinstance(message, StreamStop) or message.intent_id != s.intent_id:
            raise UnprocessableError(
                "stop must be a STREAM_STOP for this settlement's intent",
                code=FailureCode.SCHEMA_VALIDATION_FAILED,
            )
        if envelope.signer not in (s.buyer, s.seller):
            raise UnprocessableError(
                "the STREAM_STOP is signed by neither party", code=FailureCode.FAILED_IDENTITY
            )
        return envelope.raw, envelope.envelope.message_hash_hex, envelope.signer

    async def close(
        self,
        ref: str,
        body: CloseBody,
        *,
        idempotency_key: str,
        actor: str,
        request_id: str | None = None,
    ) -> SettlementRead:
        if not idempotency_key or len(idempotency_key) > MAX_KEY_LENGTH:
            raise BadRequestError(
                f"an Idempotency-Key header of 1-{MAX_KEY_LENGTH} characters is required"
            )
        s = await self._streaming_settlement(
            ref, f"idem:{CLOSE_SCOPE}:{idempotency_key}", buyer=_buyer_hint(body.voucher)
        )
        voucher = self._verified(body.voucher, s) if body.voucher is not None else None
        stop = self._stop_envelope(body.stop, s) if body.stop is not None else None
        request_fp = fingerprint(
            {
                "intent_id": s.intent_id,
                "voucher": voucher.message_hash_hex if voucher else None,
                "code": body.code,
                "by": body.by,
            }
        )
        earlier = await self.idempotency.lookup(CLOSE_SCOPE, idempotency_key, request_fp)
        if earlier is not None:
            return await self.read(s)
        if s.state != SettlementState.STREAMING:
            raise ConflictError(
                f"settlement {s.intent_id} is {s.state}; only a streaming settlement closes",
                code=ProblemCode.STATE_CONFLICT,
                extra={"intent_id": s.intent_id, "state": s.state},
            )
        if voucher is not None:
            await self._record(s, voucher, actor=actor, request_id=request_id)
        if stop is not None:
            raw, digest, signer = stop
            if await self.transcripts.find(s.id, digest) is None:
                await self.transcripts.store(
                    settlement_id=s.id,
                    kind="STREAM_STOP",
                    envelope=raw,
                    message_hash_hex=digest,
                    signer=signer,
                )
        await self.idempotency.record(CLOSE_SCOPE, idempotency_key, request_fp, s.id)
        stop_code = None if body.code == "COMPLETED" else body.code
        outcome = await self.lifecycle.close_stream(
            s,
            stop_code=stop_code,
            reason=f"{body.by}: {body.reason}",
            chunks=body.chunks,
            actor=actor,
            request_id=request_id,
        )
        log.info(
            "settlement.stream_closed",
            intent_id=s.intent_id,
            settlement_id=s.id,
            code=body.code,
            by=body.by,
            checkpoints=s.stream_checkpoints,
            outcome=outcome.status.value,
        )
        return await self.read(s)

    async def read(self, s: Settlement) -> SettlementRead:
        return SettlementRead.of(s, await self.events.for_settlement(s.id))
