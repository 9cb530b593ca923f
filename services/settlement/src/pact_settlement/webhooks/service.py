"""Stripe webhooks: verify, then let Stripe's *current* state advance the settlement.

An event is a hint, never the truth: events arrive late, twice, and out of order, and their
``data.object`` is a snapshot from when they were sent. So, after the signature checks out:

1. a duplicate event id (already processed) is acknowledged and nothing else happens;
2. the PaymentIntent named by the event is **retrieved** from Stripe; the settlement is the one
   its (current) ``metadata.settlement_id`` names, and it must be bound to that PaymentIntent;
3. a pending rail operation of the settlement is resolved — only when the rail's own records
   give a definite answer — through the executor's reconcile path (the same one the reconciler
   takes, so the planned transition, receipt and events are written exactly as they would be
   later); an answer that is not final yet is left to the operation's owner / the reconciler;
4. with nothing pending, a hold that disappeared underneath us (Stripe cancelled an expired
   authorisation, or someone cancelled it in the dashboard) ends the settlement ``refunded``
   with ``FAILED_ESCROW`` — a lapsed hold is never silent; a capture before delivery is logged
   as an anomaly for an operator;
5. the event id is recorded with what happened (``webhook_events``, unique per event).

Processing is idempotent, so a redelivery after a failure (5xx → Stripe retries) is harmless.
Nothing is recorded when processing fails, so Stripe's retry is processed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import structlog
from pact_schema import FailureCode
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pact_settlement.accounts.service import credit_topup
from pact_settlement.config import SettlementSettings
from pact_settlement.kit.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    SettlementError,
)
from pact_settlement.kit.ids import new_id
from pact_settlement.kit.observability import Metrics
from pact_settlement.kit.time import session_now
from pact_settlement.rails.base import RailError, RailOpStatus, RailStep
from pact_settlement.rails.bindings import RailBindingRepository
from pact_settlement.rails.clients import RailClients
from pact_settlement.rails.registry import get_rail
from pact_settlement.rails.repository import RailOperationRepository
from pact_settlement.rails.stripe.errors import StripeGatewayError, StripeRequestError
from pact_settlement.rails.stripe.gateway import StripeGateway
from pact_settlement.rails.stripe.results import PaymentStatus, StripePaymentState
from pact_settlement.rails.stripe.topups import TOPUP_PURPOSE
from pact_settlement.settlements.rail_steps import (
    PlannedTransition,
    RailStepExecutor,
    StepPlan,
    TransitionApplier,
    rail_view,
)
from pact_settlement.settlements.repository import SettlementRepository
from pact_settlement.settlements.state_machine import SettlementEventType
from pact_settlement.webhooks.models import WebhookEvent
from pact_settlement.webhooks.repository import WebhookEventRepository
from pact_settlement.webhooks.schemas import WebhookAck

__all__ = ["RailUnavailableError", "StripeWebhookService"]

SOURCE: Final = "stripe"
ACTOR: Final = "stripe-webhook"
#: Settlement states in which the buyer's card authorisation must still be held.
HOLDING: Final = frozenset({"locked", "committed", "delivered"})

log = structlog.get_logger(__name__)


class RailUnavailableError(SettlementError):
    """Stripe (or the database) could not be asked now: 503, so Stripe redelivers later."""

    status = 503
    title = "Rail unavailable"
    default_code = FailureCode.SETTLEMENT_FAILED

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": "5"})


@dataclass(frozen=True, slots=True)
class Outcome:
    outcome: str
    settlement_id: str | None = None
    object_id: str | None = None
    detail: str | None = None


class StripeWebhookService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        settings: SettlementSettings,
        metrics: Metrics,
        clients: RailClients,
        applier: TransitionApplier | None = None,
    ) -> None:
        self.maker = sessionmaker
        self.settings = settings
        self.metrics = metrics
        self.clients = clients
        self.applier = applier or TransitionApplier()

    # ------------------------------------------------------------------------------ entry

    async def receive(self, payload: bytes, signature: str | None) -> WebhookAck:
        event = self._verify(payload, signature)
        event_id, event_type = str(event["id"]), str(event["type"])
        async with self.maker() as session:
            seen = await WebhookEventRepository.from_session(session).get_by_event(SOURCE, event_id)
        if seen is not None:
            log.info("webhook.stripe.duplicate", event_id=event_id, event_type=event_type)
            return WebhookAck(
                event_id=event_id, outcome="duplicate", settlement_id=seen.settlement_id
            )
        outcome = await self._process(event)
        if not await self._record(event, outcome):
            return WebhookAck(
                event_id=event_id, outcome="duplicate", settlement_id=outcome.settlement_id
            )
        log.info(
            "webhook.stripe.processed",
            event_id=event_id,
            event_type=event_type,
            outcome=outcome.outcome,
            settlement_id=outcome.settlement_id,
            payment_intent=outcome.object_id,
            detail=outcome.detail,
        )
        return WebhookAck(
            event_id=event_id, outcome=outcome.outcome, settlement_id=outcome.settlement_id
        )

    def _verify(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        if "stripe" not in self.settings.enabled_rails:
            raise NotFoundError("the stripe rail is not enabled")
        secret = self.settings.stripe.webhook_secret
        if secret is None or not secret.get_secret_value():
            log.error("webhook.stripe.no_secret", detail="PACT_SETTLEMENT_STRIPE_WEBHOOK_SECRET")
            raise BadRequestError(
                "no Stripe webhook secret is configured: the event cannot be verified",
                code=FailureCode.FAILED_IDENTITY,
            )
        try:
            return StripeGateway.verify_webhook(
                payload,
                signature,
                secret.get_secret_value(),
                tolerance_s=self.settings.stripe.webhook_tolerance_s,
            )
        except StripeGatewayError as exc:
            log.warning("webhook.stripe.rejected", reason=str(exc)[:300])
            raise BadRequestError(str(exc), code=FailureCode.FAILED_IDENTITY) from exc

    async def _record(self, event: dict[str, Any], outcome: Outcome) -> bool:
        """Remember the event id; ``False`` when a concurrent delivery recorded it first."""
        async with self.maker() as session:
            session.add(
                WebhookEvent(
                    id=new_id("whe"),
                    source=SOURCE,
                    event_id=str(event["id"]),
                    event_type=str(event["type"])[:100],
                    object_id=outcome.object_id,
                    settlement_id=outcome.settlement_id,
                    outcome=outcome.outcome,
                    detail=outcome.detail,
                    received_at=session_now(session),
                )
            )
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()
                return False
        return True

    # ------------------------------------------------------------------------- process

    async def _process(self, event: dict[str, Any]) -> Outcome:
        if not str(event["type"]).startswith("payment_intent."):
            return Outcome("ignored", detail="not a payment_intent event")
        obj = event["data"]["object"]
        pi_id = obj.get("id") if obj.get("object") == "payment_intent" else None
        if not isinstance(pi_id, str) or not pi_id:
            return Outcome("ignored", detail="the event names no PaymentIntent")
        current = await self._retrieve(pi_id)
        if current is None:
            return Outcome("ignored", object_id=pi_id, detail="unknown PaymentIntent")
        if current.metadata.get("pact_purpose") == TOPUP_PURPOSE:
            return await self._topup(current)
        return await self._advance(current)

    async def _topup(self, current: StripePaymentState) -> Outcome:
        """A balance top-up charged through ``POST /v1/accounts/{id}/topups``: make sure it
        is credited (exactly once) even if the request that charged it never finished."""
        pi_id, agent_id = current.payment_intent_id, current.metadata.get("agent_id", "")
        if current.status is not PaymentStatus.CAPTURED:
            return Outcome("no_change", None, pi_id, f"top-up {current.stripe_status}")
        if current.currency != self.settings.stripe.currency:
            log.error(
                "webhook.stripe.topup_currency", payment_intent=pi_id, currency=current.currency
            )
            return Outcome("anomaly", None, pi_id, f"top-up in {current.currency}")
        async with self.maker() as session:
            _, created = await credit_topup(
                session, agent_id, current.amount, current.currency.upper(), pi_id
            )
            await session.commit()
        return Outcome("credited" if created else "no_change", None, pi_id, f"top-up of {agent_id}")

    async def _retrieve(self, pi_id: str) -> StripePaymentState | None:
        try:
            return await self.clients.stripe().retrieve(pi_id)
        except StripeRequestError as exc:
            if exc.http_status == 404:
                return None
            raise RailUnavailableError(f"Stripe refused to show {pi_id}: {exc}") from exc
        except StripeGatewayError as exc:
            raise RailUnavailableError(f"Stripe is unavailable: {exc}") from exc

    async def _advance(self, current: StripePaymentState) -> Outcome:
        pi_id = current.payment_intent_id
        async with self.maker() as session:
            settlement_id = current.settlement_id
            bindings = RailBindingRepository.from_session(session)
            if not settlement_id:
                bound = await bindings.by_external_id("stripe", pi_id)
                settlement_id = bound.settlement_id if bound else None
            settlement = (
                await SettlementRepository.from_session(session).get_by_id(settlement_id)
                if settlement_id
                else None
            )
            binding = await bindings.get_for(settlement.id) if settlement else None
            ops = (
                await RailOperationRepository.from_session(session).for_settlement(settlement.id)
                if settlement
                else []
            )
        if settlement is None or settlement.rail != "stripe" or binding is None:
            return Outcome("ignored", settlement_id, pi_id, "no stripe settlement of ours")
        if binding.external_id and binding.external_id != pi_id:
            if current.status in (PaymentStatus.AUTHORIZED, PaymentStatus.CAPTURED):
                log.error(
                    "webhook.stripe.stray_payment_intent",
                    settlement_id=settlement.id,
                    payment_intent=pi_id,
                    bound=binding.external_id,
                    stripe_status=current.stripe_status,
                )
                return Outcome(
                    "anomaly", settlement.id, pi_id, f"not the bound {binding.external_id}"
                )
            return Outcome("ignored", settlement.id, pi_id, f"not the bound {binding.external_id}")

        pending = [op for op in ops if op.status == RailOpStatus.PENDING.value]
        if pending:
            return await self._resolve_pending(settlement, pending, pi_id)
        if current.status is PaymentStatus.CANCELED and settlement.state in HOLDING:
            return await self._hold_lost(settlement.id, pi_id)
        if current.status is PaymentStatus.CAPTURED and settlement.state in ("locked", "committed"):
            log.error(
                "webhook.stripe.captured_before_delivery",
                settlement_id=settlement.id,
                payment_intent=pi_id,
                state=settlement.state,
            )
            return Outcome("anomaly", settlement.id, pi_id, "captured before delivery")
        state = f"{settlement.state}/{current.stripe_status}"
        return Outcome("no_change", settlement.id, pi_id, state)

    async def _resolve_pending(self, settlement: Any, pending: list[Any], pi_id: str) -> Outcome:
        outcomes: list[str] = []
        for op in pending:
            async with self.maker() as session:
                rail = get_rail(
                    op.rail, settings=self.settings, session=session, clients=self.clients
                )
                try:
                    report = await rail.status(
                        rail_view(settlement), idempotency_key=op.idempotency_key
                    )
                except RailError as exc:
                    raise RailUnavailableError(
                        f"cannot read the {op.step} from Stripe: {exc}"
                    ) from exc
            if report.status not in (RailOpStatus.SUCCEEDED, RailOpStatus.FAILED):
                outcomes.append(f"{op.step}:pending")
                continue
            async with self.maker() as session:
                done = await RailStepExecutor(
                    session,
                    settings=self.settings,
                    metrics=self.metrics,
                    applier=self.applier,
                    clients=self.clients,
                ).reconcile(op.id)
                await session.commit()
            outcomes.append(f"{op.step}:{done.status.value}")
        resolved = not any(o.endswith((":pending", ":in_flight")) for o in outcomes)
        return Outcome(
            "resolved" if resolved else "pending", settlement.id, pi_id, ", ".join(outcomes)
        )

    async def _hold_lost(self, settlement_id: str, pi_id: str) -> Outcome:
        detail = (
            f"the card authorisation ({pi_id}) was canceled outside the service (expired, or "
            "canceled on Stripe); the buyer was not charged"
        )
        log.error("webhook.stripe.hold_lost", settlement_id=settlement_id, payment_intent=pi_id)
        plan = StepPlan(
            step=RailStep.REFUND,
            on_succeeded=PlannedTransition(
                SettlementEventType.REFUNDED,
                failure_code=FailureCode.FAILED_ESCROW,
                failure_detail=detail,
                reason=detail,
                data={"payment_intent": pi_id, "source": "stripe webhook"},
            ),
            actor=ACTOR,
        )
        async with self.maker() as session:
            row = await SettlementRepository.from_session(session).get_by_id(
                settlement_id, for_update=True
            )
            if row is None or row.state not in HOLDING:
                return Outcome("no_change", settlement_id, pi_id, "already settled")
            try:
                done = await RailStepExecutor(
                    session,
                    settings=self.settings,
                    metrics=self.metrics,
                    applier=self.applier,
                    clients=self.clients,
                ).run(row, plan)
            except ConflictError as exc:  # another step started meanwhile: it will see the state
                await session.rollback()
                return Outcome("pending", settlement_id, pi_id, exc.detail)
            await session.commit()
        outcome = "refunded" if done.status.value == "succeeded" else "pending"
        return Outcome(outcome, settlement_id, pi_id, detail)
