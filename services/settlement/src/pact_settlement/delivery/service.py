"""hash_reveal delivery (docs/protocol.md: payment only on verifiable proof; objective slashing).

* **COMMIT** (seller): records ``commit_hash_hex`` = sha256(payload_b64 + nonce_b64) against a
  ``locked`` settlement → ``committed``. The same commitment again is a no-op (200); a
  different one after a commitment was recorded is refused (409).
* **REVEAL** (seller): sha256(payload_b64 + nonce_b64) (the reference SDK's rule: the two
  base64 texts, not the decoded bytes) is compared with the
  commitment. Match before the delivery deadline → ``delivered`` (``delivered_at`` = now,
  ``challenge_ends_at`` = now + ``challenge_window_ms``; a zero window releases at once, in
  this request). Mismatch → refund + slash, ``FAILED_PROOF``; after the deadline → refund +
  slash, ``DELIVERY_DEADLINE_MISSED``. Only the digest and the payload's size and sha256 are
  kept; the REVEAL envelope itself goes into the transcript only when its canonical JSON is
  at most ``TRANSCRIPT_MAX_ENVELOPE_BYTES``.
* **Challenge** (buyer, a signed REJECT): only while ``delivered`` and before
  ``challenge_ends_at``. Decided from this service's own records: ``FAILED_PROOF`` → the
  stored REVEAL (or its digest) against the COMMIT; ``DELIVERY_DEADLINE_MISSED`` →
  ``delivered_at`` after the deadline; ``LATENCY_BREACH`` → ``delivered_at - locked_at`` above
  the quote's ``latency_ms``. Upheld → refund + slash with that code; not upheld → 422
  ``CHALLENGE_REJECTED``, state unchanged, the challenge and verdict recorded. The same
  challenge envelope again gets the same answer.

Commit and reveal take an ``Idempotency-Key`` whose request fingerprint is the *content*
(intent, signer, commitment or reveal digest), not the envelope bytes: a provider that
re-signs the same delivery after a restart is making the same request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NotRequired, TypedDict, Unpack

import structlog
from pact_schema import (
    EnvelopeError,
    EnvelopeFailure,
    FailureCode,
    MessageValidationError,
    VerifiedEnvelope,
    canonical_json,
    commit_hash_hex,
    verify_envelope,
)
from pact_schema.messages import Commit, Message, Reject, Reveal
from sqlalchemy.ext.asyncio import AsyncSession

from pact_settlement.config import SettlementSettings
from pact_settlement.db.locks import lock_names
from pact_settlement.idempotency.service import MAX_KEY_LENGTH, IdempotencyService, fingerprint
from pact_settlement.kit.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    ProblemCode,
    SettlementError,
    UnprocessableError,
)
from pact_settlement.kit.observability import Metrics
from pact_settlement.kit.time import from_ms, to_ms
from pact_settlement.rails.clients import RailClients
from pact_settlement.receipts.service import delivery_latency_ms
from pact_settlement.settlements.lifecycle import Lifecycle, LifecycleApplier
from pact_settlement.settlements.lookup import find_settlement
from pact_settlement.settlements.models import Settlement
from pact_settlement.settlements.rail_steps import PlannedTransition
from pact_settlement.settlements.repository import (
    SettlementEventRepository,
    SettlementRepository,
)
from pact_settlement.settlements.schemas import SettlementRead
from pact_settlement.settlements.state_machine import (
    SettlementEventType,
    SettlementState,
    note,
)
from pact_settlement.transcripts.repository import OMITTED, TranscriptRepository

__all__ = [
    "ABORT_CODES",
    "CHALLENGE_CODES",
    "ChallengeRejectedError",
    "ChallengeWindowClosedError",
    "DeliveryService",
]

log = structlog.get_logger(__name__)
S, E = SettlementState, SettlementEventType

COMMIT_SCOPE = "settlements.commit"
REVEAL_SCOPE = "settlements.reveal"
CHALLENGE_CODES = (
    FailureCode.FAILED_PROOF,
    FailureCode.DELIVERY_DEADLINE_MISSED,
    FailureCode.LATENCY_BREACH,
)
ABORT_CODES = (FailureCode.FULFILMENT_FAILED, FailureCode.DELIVERY_WINDOW_TOO_SHORT)
_IDENTITY_FAILURES = {
    EnvelopeFailure.BAD_HASH,
    EnvelopeFailure.HASH_MISMATCH,
    EnvelopeFailure.BAD_KEY,
    EnvelopeFailure.BAD_SIGNATURE,
}


class ChallengeWindowClosedError(ConflictError):
    def __init__(self, detail: str, **kwargs: Any) -> None:
        super().__init__(detail, code=FailureCode.CHALLENGE_WINDOW_CLOSED, **kwargs)


class ChallengeRejectedError(UnprocessableError):
    title = "Challenge rejected"

    def __init__(self, detail: str, **kwargs: Any) -> None:
        super().__init__(detail, code=FailureCode.CHALLENGE_REJECTED, **kwargs)


@dataclass(frozen=True, slots=True)
class _Verdict:
    upheld: bool
    finding: str


@dataclass(frozen=True, slots=True)
class _SellerStep:
    """What differs between the seller's COMMIT and REVEAL on their one shared path."""

    kind: str  # the message type
    scope: str  # the idempotency scope
    field: str  # the settlement column the message's digest is recorded in


_COMMIT = _SellerStep("COMMIT", COMMIT_SCOPE, "commit_hash_hex")
_REVEAL = _SellerStep("REVEAL", REVEAL_SCOPE, "reveal_hash_hex")


@dataclass(frozen=True, slots=True)
class _Proof:
    """The content a COMMIT or REVEAL carries: the commitment digest (and, for a REVEAL, the
    decoded payload and nonce it hashes from)."""

    digest: str
    payload: bytes = b""
    nonce: bytes = b""


def _proof_of(message: Message) -> _Proof:
    if isinstance(message, Commit):
        return _Proof(message.commit_hash_hex.lower())
    assert isinstance(message, Reveal)
    return _Proof(*reveal_digest(message))


def _b64(value: str, field: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise UnprocessableError(
            f"{field} is not standard base64: {exc}", code=FailureCode.SCHEMA_VALIDATION_FAILED
        ) from exc


def reveal_digest(reveal: Reveal) -> tuple[str, bytes, bytes]:
    """The REVEAL's commitment (sha256 of ``payload_b64 + nonce_b64``, the reference rule),
    with the decoded payload and nonce (both must be standard base64)."""
    payload = _b64(reveal.payload_b64, "payload_b64")
    nonce = _b64(reveal.nonce_b64, "nonce_b64")
    return commit_hash_hex(reveal.payload_b64, reveal.nonce_b64), payload, nonce


class SellerStepCall(TypedDict):
    """Who is calling a seller step, and under which idempotency key."""

    idempotency_key: str
    actor: str
    request_id: NotRequired[str | None]


class DeliveryService:
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
        self.settings = settings
        self.metrics = metrics
        self.applier = applier
        self.now_ms = now_ms
        self.settlements = SettlementRepository.from_session(session)
        self.events = SettlementEventRepository.from_session(session)
        self.transcripts = TranscriptRepository.from_session(session)
        self.idempotency = IdempotencyService(session)
        self.lifecycle = Lifecycle(
            session, settings=settings, metrics=metrics, applier=applier, clients=clients
        )

    # ------------------------------------------------------------------ helpers

    def now(self) -> datetime:
        return from_ms(self.now_ms())

    async def read(self, settlement: Settlement) -> SettlementRead:
        return SettlementRead.of(settlement, await self.events.for_settlement(settlement.id))

    @staticmethod
    def _verify(
        raw: Any, *, expected: str, what: str, identity_status: int
    ) -> tuple[VerifiedEnvelope, Message]:
        try:
            envelope = verify_envelope(raw)
        except EnvelopeError as exc:
            if exc.failure in _IDENTITY_FAILURES:
                error_cls = ForbiddenError if identity_status == 403 else UnprocessableError
                raise error_cls(
                    f"{what} envelope: {exc}", code=FailureCode.FAILED_IDENTITY
                ) from exc
            raise UnprocessableError(
                f"{what} envelope: {exc}", code=FailureCode.SCHEMA_VALIDATION_FAILED
            ) from exc
        try:
            message = envelope.parse()
        except MessageValidationError as exc:
            raise UnprocessableError(f"{what} message: {exc.detail}", code=exc.code) from exc
        if message.type != expected:
            raise UnprocessableError(
                f"expected a {expected} message, got {message.type}",
                code=FailureCode.UNEXPECTED_MESSAGE,
            )
        return envelope, message

    async def _locked_settlement(
        self,
        ref: str,
        message: Message,
        *names: str,
        buyer: str | None = None,
        seller: str | None = None,
    ) -> Settlement:
        """The settlement ``ref`` names, row-locked, after the named locks (idempotency keys);
        the signed message must be for that settlement's intent id."""
        await lock_names(self.session, *names)
        s = await find_settlement(
            self.settlements, ref, buyer=buyer, seller=seller, for_update=True
        )
        if message.intent_id != s.intent_id:
            raise UnprocessableError(
                f"the {message.type} is for intent_id {message.intent_id!r}, not {s.intent_id!r}",
                code=FailureCode.SCHEMA_VALIDATION_FAILED,
            )
        return s

    @staticmethod
    def _check_key(idempotency_key: str) -> None:
        if not idempotency_key or len(idempotency_key) > MAX_KEY_LENGTH:
            raise BadRequestError(
                f"an Idempotency-Key header of 1-{MAX_KEY_LENGTH} characters is required"
            )

    @staticmethod
    def _signed_by(envelope: VerifiedEnvelope, expected: str, role: str, s: Settlement) -> None:
        if envelope.signer != expected:
            raise ForbiddenError(
                f"the envelope must be signed by the settlement's {role} ({expected}); it is "
                f"signed by {envelope.signer}",
                code=FailureCode.FAILED_IDENTITY,
                extra={"intent_id": s.intent_id},
            )

    def _state_error(self, s: Settlement, detail: str) -> ConflictError:
        return ConflictError(
            detail,
            code=ProblemCode.STATE_CONFLICT,
            extra={"intent_id": s.intent_id, "state": s.state},
        )

    async def _deadline_fault(
        self, s: Settlement, *, actor: str, request_id: str | None, values: dict[str, Any]
    ) -> None:
        detail = (
            f"delivery deadline {s.delivery_deadline_ms} passed before the seller delivered "
            f"(now {self.now_ms()})"
        )
        await self._fault(
            s,
            FailureCode.DELIVERY_DEADLINE_MISSED,
            detail,
            actor=actor,
            request_id=request_id,
            values=values,
        )

    async def _fault(
        self,
        s: Settlement,
        code: str,
        detail: str,
        *,
        actor: str,
        request_id: str | None,
        values: dict[str, Any] | None = None,
    ) -> None:
        outcome = await self.lifecycle.fault(
            s, code, detail, actor=actor, request_id=request_id, values=values
        )
        log.info(
            "settlement.fault",
            intent_id=s.intent_id,
            settlement_id=s.id,
            code=code,
            rail_step=outcome.operation.step,
            outcome=outcome.status.value,
        )

    # ------------------------------------------------------- COMMIT and REVEAL

    async def commit(
        self, ref: str, raw: dict[str, Any], **call: Unpack[SellerStepCall]
    ) -> SettlementRead:
        return await self._seller_step(_COMMIT, ref, raw, **call)

    async def reveal(
        self, ref: str, raw: dict[str, Any], **call: Unpack[SellerStepCall]
    ) -> SettlementRead:
        return await self._seller_step(_REVEAL, ref, raw, **call)

    async def _seller_step(
        self,
        step: _SellerStep,
        ref: str,
        raw: dict[str, Any],
        *,
        idempotency_key: str,
        actor: str,
        request_id: str | None = None,
    ) -> SettlementRead:
        """The one path of the seller's COMMIT and REVEAL: verify the envelope, lock the
        settlement it names, answer a repeat of the same content as the settlement is now,
        refuse it in the wrong state, record it (transcript and idempotency key), then move the
        settlement on (or fault it, when it came too late)."""
        self._check_key(idempotency_key)
        envelope, message = self._verify(
            raw, expected=step.kind, what=step.kind.lower(), identity_status=422
        )
        proof = _proof_of(message)
        s = await self._locked_settlement(
            ref, message, f"idem:{step.scope}:{idempotency_key}", seller=envelope.signer
        )
        self._signed_by(envelope, s.seller, "seller", s)
        request_fp = fingerprint(
            {"intent_id": s.intent_id, "signer": envelope.signer, step.field: proof.digest}
        )
        earlier = await self.idempotency.lookup(step.scope, idempotency_key, request_fp)
        if earlier is not None or getattr(s, step.field) == proof.digest:
            return await self.read(s)  # the same content again: the settlement as it is now
        now = self.now()
        timing: dict[str, int | None] = {}
        if step.kind == "COMMIT":
            self._admit_commit(s)
            timing = await self._timing(s, now)
            await self._store_commit(s, envelope, timing)
        else:
            self._admit_reveal(s)
            await self._store_reveal(s, envelope, proof)
        await self.idempotency.record(step.scope, idempotency_key, request_fp, s.id)
        values = {step.field: proof.digest}
        if step.kind == "COMMIT" and s.commit_by_at is not None and now >= s.commit_by_at:
            await self._commit_window_missed(s, actor=actor, request_id=request_id)
        elif to_ms(now) >= s.delivery_deadline_ms:
            await self._deadline_fault(s, actor=actor, request_id=request_id, values=values)
        elif step.kind == "COMMIT":
            await self._committed(s, proof, now, timing, actor=actor, request_id=request_id)
        else:
            await self._revealed(s, proof, now, actor=actor, request_id=request_id)
        return await self.read(s)

    def _admit_commit(self, s: Settlement) -> None:
        if s.commit_hash_hex is not None:
            raise self._state_error(
                s,
                f"a different commitment ({s.commit_hash_hex}) is already recorded for "
                f"{s.intent_id}; a commitment cannot change",
            )
        if s.state != S.LOCKED:
            raise self._state_error(
                s, f"settlement {s.intent_id} is {s.state}; a COMMIT needs it locked"
            )

    def _admit_reveal(self, s: Settlement) -> None:
        if s.state == S.LOCKED:
            raise self._state_error(
                s, f"no COMMIT is recorded for {s.intent_id}; commit before revealing"
            )
        if s.state != S.COMMITTED:
            raise self._state_error(
                s, f"settlement {s.intent_id} is {s.state}; a REVEAL needs it committed"
            )

    async def _timing(self, s: Settlement, now: datetime) -> dict[str, int | None]:
        """The delivery latency (lock to COMMIT, this service's clock) and the quoted one."""
        return {
            "latency_ms": delivery_latency_ms(s.locked_at, now),
            "quoted_latency_ms": await self._quoted_latency_ms(s),
        }

    async def _store_commit(
        self, s: Settlement, envelope: VerifiedEnvelope, timing: dict[str, int | None]
    ) -> None:
        await self.transcripts.store(
            settlement_id=s.id,
            kind="COMMIT",
            envelope=envelope.raw,
            message_hash_hex=envelope.envelope.message_hash_hex,
            signer=envelope.signer,
            detail=dict(timing),
        )

    async def _committed(
        self,
        s: Settlement,
        proof: _Proof,
        now: datetime,
        timing: dict[str, int | None],
        *,
        actor: str,
        request_id: str | None,
    ) -> None:
        await self.applier.transition(
            self.session,
            s,
            PlannedTransition(E.COMMITTED, data={"commit_hash_hex": proof.digest, **timing}),
            actor=actor,
            request_id=request_id,
            values={"commit_hash_hex": proof.digest, "committed_at": now},
        )
        log.info(
            "settlement.committed", intent_id=s.intent_id, commit_hash_hex=proof.digest, **timing
        )

    async def _revealed(
        self, s: Settlement, proof: _Proof, now: datetime, *, actor: str, request_id: str | None
    ) -> None:
        values: dict[str, Any] = {"reveal_hash_hex": proof.digest}
        if proof.digest != s.commit_hash_hex:
            await self._fault(
                s,
                FailureCode.FAILED_PROOF,
                f"the REVEAL hashes to {proof.digest}, not to the committed {s.commit_hash_hex}",
                actor=actor,
                request_id=request_id,
                values=values,
            )
            return
        await self.applier.transition(
            self.session,
            s,
            PlannedTransition(
                E.DELIVERED,
                data={"reveal_hash_hex": proof.digest, "payload_bytes": len(proof.payload)},
            ),
            actor=actor,
            request_id=request_id,
            values={
                **values,
                "delivered_at": now,
                "challenge_ends_at": now + timedelta(milliseconds=s.challenge_window_ms),
            },
        )
        log.info("settlement.delivered", intent_id=s.intent_id, payload_bytes=len(proof.payload))
        if s.challenge_window_ms == 0:
            # No window to wait for: pay the seller now (the sweeper would, a pass later).
            await self.lifecycle.release(s, actor=actor, request_id=request_id)

    async def _commit_window_missed(
        self, s: Settlement, *, actor: str, request_id: str | None
    ) -> None:
        assert s.commit_by_at is not None
        detail = (
            f"no COMMIT by {s.commit_by_at.isoformat()} (the quote's expiry plus the commit "
            "grace): the buyer is refunded and no bond is slashed"
        )
        outcome = await self.lifecycle.cancel(
            s, FailureCode.COMMIT_WINDOW_MISSED, detail, actor=actor, request_id=request_id
        )
        log.info(
            "settlement.commit_window_missed",
            intent_id=s.intent_id,
            settlement_id=s.id,
            outcome=outcome.status.value,
        )

    async def _store_reveal(self, s: Settlement, envelope: VerifiedEnvelope, proof: _Proof) -> None:
        digest, payload, nonce = proof.digest, proof.payload, proof.nonce
        matches = s.commit_hash_hex is not None and digest == s.commit_hash_hex
        text = canonical_json(envelope.raw)
        kept = len(text) <= self.settings.transcript_max_envelope_bytes
        await self.transcripts.store(
            settlement_id=s.id,
            kind="REVEAL",
            envelope=envelope.raw if kept else None,
            message_hash_hex=envelope.envelope.message_hash_hex,
            signer=envelope.signer,
            detail={
                "reveal_hash_hex": digest,
                "matches_commit": matches,
                "payload_bytes": len(payload),
                "payload_sha256": hashlib.sha256(payload).hexdigest(),
                "nonce_bytes": len(nonce),
                "envelope_kept": kept,
                "envelope_bytes": len(text),
                "envelope_sha256": hashlib.sha256(text).hexdigest(),
            },
        )

    # -------------------------------------------------------------------- abort

    async def abort(
        self,
        ref: str,
        raw: dict[str, Any],
        *,
        actor: str,
        request_id: str | None = None,
    ) -> SettlementRead:
        """The seller calls the trade off before delivering (a signed REJECT): the buyer is
        refunded in full at once and the seller's bond is returned, since nothing was
        delivered. Refused once the REVEAL is recorded (the buyer has the goods). Any abort
        after the first answers the settlement as it is: a retry may be signed anew."""
        envelope, message = self._verify(raw, expected="REJECT", what="abort", identity_status=403)
        assert isinstance(message, Reject)
        s = await self._locked_settlement(ref, message, seller=envelope.signer)
        self._signed_by(envelope, s.seller, "seller", s)
        message_hash = envelope.envelope.message_hash_hex.lower()
        if await self.transcripts.latest_of_kind(s.id, "ABORT") is not None:
            return await self.read(s)  # aborted already (a retry may be signed anew)
        code = message.code or FailureCode.FULFILMENT_FAILED
        if code not in ABORT_CODES:
            raise UnprocessableError(
                f"an abort's code must be one of {', '.join(ABORT_CODES)}; got {code!r}",
                code=FailureCode.SCHEMA_VALIDATION_FAILED,
            )
        if s.state not in (S.LOCKED, S.COMMITTED):
            detail = (
                "the funds are still being locked; abort once the lock has resolved"
                if s.state == S.PENDING
                else "the REVEAL is recorded: the buyer has the goods, the challenge window decides"
                if s.state == S.DELIVERED
                else "it has already ended"
            )
            raise self._state_error(s, f"settlement {s.intent_id} is {s.state}: {detail}")
        await self.transcripts.store(
            settlement_id=s.id,
            kind="ABORT",
            envelope=envelope.raw,
            message_hash_hex=message_hash,
            signer=envelope.signer,
            detail={"code": code, "reason": message.reason},
        )
        outcome = await self.lifecycle.cancel(
            s,
            code,
            f"the seller called the trade off before delivering: {message.reason}",
            actor=actor,
            request_id=request_id,
        )
        log.info(
            "settlement.aborted",
            intent_id=s.intent_id,
            settlement_id=s.id,
            code=code,
            outcome=outcome.status.value,
        )
        return await self.read(s)

    # ---------------------------------------------------------------- challenge

    async def challenge(
        self, ref: str, raw: dict[str, Any], *, request_id: str | None = None
    ) -> SettlementRead:
        envelope, message = self._verify(
            raw, expected="REJECT", what="challenge", identity_status=403
        )
        assert isinstance(message, Reject)
        s = await self._locked_settlement(ref, message, buyer=envelope.signer)
        self._signed_by(envelope, s.buyer, "buyer", s)
        intent_id = s.intent_id
        message_hash = envelope.envelope.message_hash_hex.lower()
        seen = await self.transcripts.find(s.id, message_hash)
        if seen is not None:
            return await self._replay_challenge(s, seen.detail or {})
        code = message.code
        if code not in CHALLENGE_CODES:
            raise UnprocessableError(
                f"a challenge's code must be one of {', '.join(CHALLENGE_CODES)} (objective "
                f"grounds only); got {code!r}",
                code=FailureCode.SCHEMA_VALIDATION_FAILED,
            )
        now = self.now()
        if s.state != S.DELIVERED:
            raise ChallengeWindowClosedError(
                f"settlement {intent_id} is {s.state}: challenges are taken only while it is "
                "delivered and its challenge window is open",
                extra={"intent_id": intent_id, "state": s.state},
            )
        assert s.challenge_ends_at is not None
        if now >= s.challenge_ends_at:
            raise ChallengeWindowClosedError(
                f"the challenge window of {intent_id} closed at {s.challenge_ends_at.isoformat()}",
                extra={"intent_id": intent_id, "state": s.state},
            )
        verdict = await self._judge(s, code)
        detail = {
            "code": code,
            "reason": message.reason,
            "verdict": "upheld" if verdict.upheld else "rejected",
            "finding": verdict.finding,
        }
        await self.transcripts.store(
            settlement_id=s.id,
            kind="CHALLENGE",
            envelope=envelope.raw,
            message_hash_hex=message_hash,
            signer=envelope.signer,
            detail=detail,
        )
        self.metrics.challenges.labels(code, detail["verdict"]).inc()
        log.info("settlement.challenge", intent_id=intent_id, **detail)
        if not verdict.upheld:
            await note(
                self.session,
                s,
                "settlement.challenge_rejected",
                actor="buyer",
                reason=verdict.finding,
                data={"code": code, "challenge_hash_hex": message_hash},
                request_id=request_id,
            )
            raise self._rejected(s, code, verdict.finding, persist=True)
        await self._fault(
            s,
            code,
            f"challenge upheld: {verdict.finding}",
            actor="buyer",
            request_id=request_id,
            values={},
        )
        return await self.read(s)

    def _rejected(
        self, s: Settlement, code: str, finding: str, *, persist: bool
    ) -> SettlementError:
        return ChallengeRejectedError(
            f"challenge {code} rejected: {finding}",
            extra={"intent_id": s.intent_id, "state": s.state, "challenge_code": code},
            persist=persist,
        )

    async def _replay_challenge(self, s: Settlement, detail: dict[str, Any]) -> SettlementRead:
        if detail.get("verdict") == "rejected":
            raise self._rejected(
                s, str(detail.get("code")), str(detail.get("finding")), persist=False
            )
        return await self.read(s)

    async def _judge(self, s: Settlement, code: str) -> _Verdict:
        if code == FailureCode.FAILED_PROOF:
            digest = await self._recorded_reveal_digest(s)
            if digest != s.commit_hash_hex:
                return _Verdict(True, f"the REVEAL hashes to {digest}, not {s.commit_hash_hex}")
            return _Verdict(
                False,
                f"sha256(payload_b64 + nonce_b64) of the recorded REVEAL is {digest}, exactly the "
                "committed hash",
            )
        assert s.delivered_at is not None
        delivered_ms = to_ms(s.delivered_at)
        if code == FailureCode.DELIVERY_DEADLINE_MISSED:
            late = delivered_ms > s.delivery_deadline_ms
            return _Verdict(
                late,
                f"delivered at {delivered_ms}, "
                f"{'after' if late else 'before'} the deadline {s.delivery_deadline_ms}",
            )
        quoted = await self._quoted_latency_ms(s)
        latency = delivery_latency_ms(s.locked_at, s.committed_at)
        if latency is None or quoted is None:
            return _Verdict(
                False, "no lock and COMMIT time or quoted latency on record to judge by"
            )
        breach = latency > quoted
        return _Verdict(
            breach,
            f"the COMMIT came {latency} ms after the lock (this service's clock); the quote "
            f"promised {quoted} ms",
        )

    async def _recorded_reveal_digest(self, s: Settlement) -> str | None:
        row = await self.transcripts.latest_of_kind(s.id, "REVEAL")
        if row is not None and row.envelope_json != OMITTED:
            reveal = json.loads(row.envelope_json)["message"]
            return commit_hash_hex(str(reveal["payload_b64"]), str(reveal["nonce_b64"]))
        return s.reveal_hash_hex

    async def _quoted_latency_ms(self, s: Settlement) -> int | None:
        row = await self.transcripts.latest_of_kind(s.id, "ASK")
        if row is None:
            return None
        value = json.loads(row.envelope_json).get("message", {}).get("latency_ms")
        return int(value) if isinstance(value, int | float) else None
